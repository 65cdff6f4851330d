"""Compiled-path run of tests/ops_ref/test_tensor_ref.py (see conftest.py)."""
from tests.ops_ref.test_tensor_ref import *  # noqa: F401,F403
