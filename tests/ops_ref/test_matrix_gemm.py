"""Gemm and MatMul: edgec frontend + numpy reference vs onnxruntime, and the IR they become."""
from __future__ import annotations

import numpy as np
import pytest

from tests.ops_ref.test_nn_harness import check_node, rand


@pytest.mark.parametrize("c_shape", [None, (5,), (1, 5), (), (1,), (1, 1), (4, 5), (4, 1)])
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 2.0), (1.5, 0.0)])
def test_gemm_constant_b(c_shape, trans_a, trans_b, alpha, beta):
    rng = np.random.default_rng(60)
    a = rand(rng, *((3, 4) if trans_a else (4, 3)))
    b = rand(rng, *((5, 3) if trans_b else (3, 5)))
    consts, order = {"b": b}, ["a", "b"]
    if c_shape is not None:
        consts["c"] = rand(rng, *c_shape)
        order.append("c")
    attrs = {"alpha": alpha, "beta": beta, "transA": trans_a, "transB": trans_b}
    g = check_node("Gemm", {"a": a}, consts, attrs, opset=13, input_order=order)
    ops = sorted(n.op for n in g.nodes)
    full_c = c_shape in ((4, 5), (4, 1)) and beta != 0.0
    want = ["dense"] + (["transpose"] if trans_a else []) + (["add"] if full_c else [])
    assert ops == sorted(want)
    dense = next(n for n in g.nodes if n.op == "dense")
    w = g.values[dense.inputs[1]]
    assert w.const is not None and w.shape == (5, 3)          # [N, K] with alpha folded in
    has_bias = c_shape is not None and not full_c and beta != 0.0
    assert (dense.inputs[2] != "") == has_bias


@pytest.mark.parametrize("c_shape", [None, (5,), (4, 5)])
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 1), (0, 1)])
def test_gemm_runtime_b(c_shape, trans_a, trans_b):
    rng = np.random.default_rng(61)
    feeds = {"a": rand(rng, *((3, 4) if trans_a else (4, 3))), "b": rand(rng, *((5, 3) if trans_b else (3, 5)))}
    if c_shape is not None:
        feeds["c"] = rand(rng, *c_shape)
    g = check_node("Gemm", feeds, attrs={"alpha": 0.7, "beta": 1.3, "transA": trans_a, "transB": trans_b}, opset=11)
    assert ("dense" if trans_b else "matmul") in {n.op for n in g.nodes}


@pytest.mark.parametrize("opset", [7, 9, 11])
def test_gemm_older_opsets(opset):
    rng = np.random.default_rng(62)
    check_node("Gemm", {"a": rand(rng, 2, 6)}, {"b": rand(rng, 7, 6), "c": rand(rng, 7)},
               {"transB": 1, "beta": 0.5}, opset=opset, expect_ops=("dense",))


def test_gemm_constant_c_matrix_folds_beta():
    rng = np.random.default_rng(63)
    g = check_node("Gemm", {"a": rand(rng, 3, 4)}, {"b": rand(rng, 4, 2), "c": rand(rng, 3, 2)}, {"beta": 0.25},
                   opset=13, expect_ops=("dense", "add"))
    add = next(n for n in g.nodes if n.op == "add")
    assert g.values[add.inputs[1]].const is not None      # beta * C folded to one constant


@pytest.mark.parametrize("a_shape,b_shape", [
    ((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 5)),
    ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 1, 3, 4), (5, 4, 2)),
])
def test_matmul(a_shape, b_shape):
    rng = np.random.default_rng(64)
    check_node("MatMul", {"a": rand(rng, *a_shape), "b": rand(rng, *b_shape)}, opset=13, expect_ops=("matmul",))


def test_matmul_constant_b_int32():
    rng = np.random.default_rng(65)
    a = rng.integers(-50, 50, (3, 4)).astype(np.int32)
    b = rng.integers(-50, 50, (4, 2)).astype(np.int32)
    check_node("MatMul", {"a": a}, {"b": b}, opset=13, expect_ops=("matmul",))


def test_matrix_macs():
    from edgec.ir.graph import Value
    from edgec.ir.ops import get
    a, b = Value("a", "float32", (2, 3, 4)), Value("b", "float32", (4, 5))
    (dt, shape), = get("matmul").infer([a, b], {})
    assert shape == (2, 3, 5)
    assert get("matmul").macs([a, b], [Value("y", dt, shape)], {}) == 2 * 3 * 5 * 4
    x, w = Value("x", "float32", (8, 16)), Value("w", "float32", (10, 16))
    (dt, shape), = get("dense").infer([x, w, None], {})
    assert shape == (8, 10) and get("dense").macs([x, w, None], [Value("y", dt, shape)], {}) == 8 * 10 * 16


def test_dense_rejects_bad_bias():
    from edgec.ir.graph import Value
    from edgec.ir.ops import get
    with pytest.raises(ValueError, match="bias"):
        get("dense").infer([Value("x", "float32", (2, 3)), Value("w", "float32", (4, 3)),
                            Value("b", "float32", (3,))], {})
