"""Compiled-path run of tests/ops_ref/test_nn_conv.py (see conftest.py)."""
from tests.ops_ref.test_nn_conv import *  # noqa: F401,F403
