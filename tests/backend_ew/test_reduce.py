"""Reduction kernels (edgec/backend/kernels/reduce.py) against the numpy references.

The references accumulate floats in float64; the kernels accumulate float32 in float32
(in vector lanes), so sums get an absolute tolerance scaled by the number of terms.
"""
from __future__ import annotations

import numpy as np
import pytest

from ._harness import check, rand, run

pytestmark = pytest.mark.tvm

REDUCE = ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_l2",
          "reduce_sum_square", "reduce_log_sum_exp"]

# (shape, axes): inner axis long (vector partial stage, with and without tail), kept inner
# axis (vectorized rows), several axes, all axes, rank 1
CASES = [((4, 6, 40), (2,)), ((3, 100), (1,)), ((5, 128), (1,)), ((2, 3, 130), (1, 2)),
         ((64, 8, 20), (0,)), ((6, 50, 24), (1,)), ((4, 6, 40), (0, 2)), ((3, 4, 5), (0, 1, 2)),
         ((77,), (0,)), ((4, 1, 7), (1,))]


def _input(op: str, rng, shape, dtype="float32"):
    if op == "reduce_prod":      # keep products in range: factors near 1
        return rand(rng, shape, dtype, 0.9, 1.1)
    return rand(rng, shape, dtype, -3, 3)


@pytest.mark.parametrize("op", REDUCE)
def test_reduce_float32(op):
    rng = np.random.default_rng(REDUCE.index(op))
    for k, (shape, axes) in enumerate(CASES):
        x = _input(op, rng, shape)
        n = int(np.prod([shape[a] for a in axes]))
        check(op, [x], {"axes": axes, "keepdims": k % 2}, atol=1e-6 * n)


def test_reduce_large_parallel():
    rng = np.random.default_rng(20)
    x = rand(rng, (512, 768), "float32")
    for op in ("reduce_mean", "reduce_max", "reduce_log_sum_exp"):
        check(op, [x], {"axes": (1,), "keepdims": 1}, atol=1e-4)
    check("reduce_sum", [x], {"axes": (0,), "keepdims": 0}, atol=1e-3)
    check("reduce_sum", [x], {"axes": (0, 1), "keepdims": 0}, atol=1e-2)


def test_max_min_nan_inf_and_identities():
    x = np.full((4, 70), -np.inf, np.float32)
    x[1, 5] = np.nan          # NaN propagates (also from the vector partial stage)
    x[2, 69] = np.nan         # ... and from the tail
    x[3, :] = np.inf
    for op in ("reduce_max", "reduce_min", "reduce_log_sum_exp", "reduce_sum"):
        check(op, [x], {"axes": (1,), "keepdims": 0})
    got = run("reduce_max", {"axes": (1,), "keepdims": 0}, [x], [("float32", (4,))])[0]
    assert got[0] == -np.inf and np.isnan(got[1]) and np.isnan(got[2]) and got[3] == np.inf


def test_log_sum_exp_no_overflow():
    x = np.array([[1000.0, 1000.0, 999.0], [-1000.0, -1001.0, -np.inf], [-np.inf] * 3], np.float32)
    check("reduce_log_sum_exp", [x], {"axes": (1,), "keepdims": 1})


def test_empty_reduction_gives_identity():
    x = np.zeros((3, 0, 2), np.float32)
    for op in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_log_sum_exp"):
        check(op, [x], {"axes": (1,), "keepdims": 0})


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8", "uint32"])
def test_reduce_integers(dtype):
    rng = np.random.default_rng(5)
    x = rand(rng, (3, 70), dtype, -120, 120)
    for k, op in enumerate(("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod",
                            "reduce_sum_square", "reduce_l2")):
        check(op, [x], {"axes": (1,), "keepdims": 1})
        if k < 3:
            check(op, [x], {"axes": (0,), "keepdims": 0})


def test_reduce_other_float_dtypes_and_bool():
    rng = np.random.default_rng(6)
    x16 = rand(rng, (5, 90), "float16")
    for op in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_l2"):
        check(op, [x16], {"axes": (1,), "keepdims": 0}, rtol=3e-3, atol=2e-2)
    x64 = rand(rng, (4, 70), "float64")
    for op in ("reduce_sum", "reduce_log_sum_exp", "reduce_min"):
        check(op, [x64], {"axes": (1,), "keepdims": 0})
    b = rand(rng, (6, 40), "bool")
    b[0] = False
    b[1] = True
    for op in ("reduce_max", "reduce_min"):
        check(op, [b], {"axes": (1,), "keepdims": 0})
        check(op, [b], {"axes": (0,), "keepdims": 1})


@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_argmax_argmin(op):
    rng = np.random.default_rng(7)
    x = np.round(rand(rng, (6, 9, 70), "float32", -3, 3))   # many ties
    for axis in range(3):
        for keepdims, last in ((axis % 2, 0), (1 - axis % 2, 1)):
            check(op, [x], {"axis": axis, "keepdims": keepdims, "select_last_index": last})
    xi = rand(rng, (5, 33), "int8", -3, 3)
    check(op, [xi], {"axis": 1, "keepdims": 0, "select_last_index": 1})
    check(op, [rand(rng, (50,), "uint8", 0, 5)], {"axis": 0, "keepdims": 1, "select_last_index": 0})


def test_argmax_nan_and_large():
    x = np.zeros((3, 80), np.float32)
    x[0, [7, 50]] = np.nan
    x[1, 79] = np.nan
    x[2, :] = -np.inf
    for op in ("argmax", "argmin"):
        for last in (0, 1):
            check(op, [x], {"axis": 1, "keepdims": 0, "select_last_index": last})
    rng = np.random.default_rng(8)
    check("argmax", [rand(rng, (300, 1000), "float32")], {"axis": 1, "keepdims": 0, "select_last_index": 0})
    check("argmax", [rand(rng, (2, 21, 64, 64), "float32")], {"axis": 1, "keepdims": 1, "select_last_index": 0})
