"""Compiled-path run of tests/ops_ref/test_reduce_ref.py (see conftest.py)."""
from tests.ops_ref.test_reduce_ref import *  # noqa: F401,F403
