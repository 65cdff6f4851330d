"""Builds the cffi extension edgec.runtime._edgec_c (the C runtime: core + hosted layer).

Everything else about the package is in pyproject.toml. The extension's declarations are
read from runtime_c/include/edgec/edgec.h by edgec/runtime/_build.py.
"""
from setuptools import setup

setup(cffi_modules=["edgec/runtime/_build.py:ffibuilder"])
