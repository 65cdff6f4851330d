"""Compiled-path run of tests/ops_ref/test_matrix_gemm.py (see conftest.py)."""
from tests.ops_ref.test_matrix_gemm import *  # noqa: F401,F403
