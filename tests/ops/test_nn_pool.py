"""Compiled-path run of tests/ops_ref/test_nn_pool.py (see conftest.py)."""
from tests.ops_ref.test_nn_pool import *  # noqa: F401,F403
