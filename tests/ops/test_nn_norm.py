"""Compiled-path run of tests/ops_ref/test_nn_norm.py (see conftest.py)."""
from tests.ops_ref.test_nn_norm import *  # noqa: F401,F403
