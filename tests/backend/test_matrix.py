"""matmul and dense kernels (edgec/backend/kernels/matrix.py) built by build_kernels, run with
TVM's runtime, against numpy. Shapes exercise 1-D promotion, batch broadcasting, tile tails
along m and n (clamped rows, padded copy of B), both dense paths (vector partial sums over K
for few rows, transposed copy + GEMM for many) and integer wrap-around."""
from __future__ import annotations

import numpy as np
import pytest

from ._harness import Case, build_cases, check, rand

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(11)


def _mm(id_, ash, bsh, dtype="float32"):
    if dtype.startswith("float"):
        a, b = rand(RNG, *ash, dtype=dtype), rand(RNG, *bsh, dtype=dtype)
    else:
        a = RNG.integers(-9, 10, ash).astype(dtype)
        b = RNG.integers(-9, 10, bsh).astype(dtype)
    k = ash[-1]
    tol = 1e-12 if dtype == "float64" else 2e-6 * np.sqrt(k)
    return Case(id_, "matmul", {}, [a, b], rtol=tol, atol=tol)


def _dense(id_, m, n, k, bias=True):
    x, w = rand(RNG, m, k), rand(RNG, n, k)
    b = rand(RNG, n) if bias else None
    tol = 2e-6 * np.sqrt(k)
    return Case(id_, "dense", {}, [x, w, b], rtol=tol, atol=tol)


CASES = [
    _mm("mm_small", (3, 4), (4, 5)),
    _mm("mm_vec_mat", (4,), (4, 5)),
    _mm("mm_mat_vec", (3, 4), (4,)),
    _mm("mm_dot", (7,), (7,)),
    _mm("mm_batch_bcast", (2, 1, 3, 4), (5, 4, 6)),
    _mm("mm_batch_vec", (2, 3, 4), (4,)),
    _mm("mm_vec_batch", (5,), (2, 5, 3)),
    _mm("mm_tails", (37, 29), (29, 45)),
    _mm("mm_wide", (9, 64), (64, 128)),
    _mm("mm_attention", (1, 2, 16, 8), (1, 2, 8, 16)),
    _mm("mm_int32", (3, 4), (4, 5), "int32"),
    _mm("mm_int8_wrap", (3, 17), (17, 33), "int8"),
    _mm("mm_f64", (6, 9), (9, 7), "float64"),
    _dense("dense_gemv", 1, 10, 7),
    _dense("dense_nobias", 5, 3, 16, bias=False),
    _dense("dense_tails", 13, 37, 33),
    _dense("dense_vec_k", 3, 40, 64),
    _dense("dense_gemm_path", 40, 24, 48),
    _dense("dense_gemm_tails", 35, 19, 21, bias=False),
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("matrix"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matrix_matches_reference(runner, case):
    check(case, runner.run(case))


@pytest.mark.parametrize("case", [c for c in CASES if c.op == "matmul" and c.inputs[0].dtype == np.float32],
                         ids=lambda c: c.id)
def test_matmul_matches_numpy(runner, case):
    want = np.matmul(*case.inputs)
    np.testing.assert_allclose(runner.run(case)[0], want, rtol=case.rtol, atol=case.atol)


def test_dense_gemm_path_uses_workspace(runner):
    """dense with many rows copies w transposed into the workspace; with few rows it does not."""
    lib = runner.lib
    assert lib.kernel_workspace[runner.kernel_of["dense_gemm_path"]] >= 24 * 48 * 4
    assert lib.kernel_workspace[runner.kernel_of["dense_vec_k"]] == 0
