"""Compiled-path run of tests/ops_ref/test_elementwise_ref.py (see conftest.py)."""
from tests.ops_ref.test_elementwise_ref import *  # noqa: F401,F403
