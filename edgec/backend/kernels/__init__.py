"""Kernel generators: importing this package registers one generator per IR op in
``registry.KERNELS`` (see registry.py for the generator contract).

The groups follow docs/ops.md. A group module that fails to import does not hide the
others: its error is kept in ``IMPORT_ERRORS`` and reported by the build step for the
nodes whose op then has no generator.
"""
from __future__ import annotations

import importlib

from .registry import KERNELS, KernelSpec, TensorType, kernel  # noqa: F401

GROUPS = ("elementwise", "tensor", "reduce", "matrix", "nn", "quant", "quant_pool")
IMPORT_ERRORS: dict[str, str] = {}

for _group in GROUPS:
    try:
        importlib.import_module(f"{__name__}.{_group}")
    except Exception as _e:  # noqa: BLE001  (keep the other groups usable)
        IMPORT_ERRORS[_group] = f"{type(_e).__name__}: {_e}"
