"""Compiled-path run of tests/ops_ref/test_nn_resize.py (see conftest.py)."""
from tests.ops_ref.test_nn_resize import *  # noqa: F401,F403
