"""Reduce* and ArgMax/ArgMin converters + references against onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

from tests.ops_ref._harness import check, node_model, rand

REDUCE = [("ReduceSum", "reduce_sum", 13), ("ReduceMean", "reduce_mean", 18), ("ReduceMax", "reduce_max", 18),
          ("ReduceMin", "reduce_min", 18), ("ReduceProd", "reduce_prod", 18), ("ReduceL2", "reduce_l2", 18),
          ("ReduceSumSquare", "reduce_sum_square", 18), ("ReduceLogSumExp", "reduce_log_sum_exp", 18),
          ("ReduceL1", "reduce_sum", 18), ("ReduceLogSum", "reduce_sum", 18)]
# composite reductions: the IR ops before and after the reduction
AROUND = {"ReduceL1": (["abs"], []), "ReduceLogSum": ([], ["log"])}


def _ops(op, ir):
    pre, post = AROUND.get(op, ([], []))
    return pre + [ir] + post
AXES = [None, (0,), (1,), (-1,), (0, 2), (2, 0, 1), (-3, -1)]


def _data(op, dtype="float32", shape=(2, 3, 4)):
    if op in ("ReduceProd", "ReduceLogSum"):
        return rand(shape, dtype, seed=1, low=0.5, high=1.5) if dtype.startswith("float") else \
            rand(shape, dtype, seed=1, low=-2, high=2)
    return rand(shape, dtype, seed=1, low=-3, high=3)


@pytest.mark.parametrize("op,ir,input_since", REDUCE, ids=[r[0] for r in REDUCE])
@pytest.mark.parametrize("axes", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_float(op, ir, input_since, axes, keepdims):
    x = _data(op)
    attrs = {"keepdims": keepdims}
    old = dict(attrs, **({"axes": list(axes)} if axes is not None else {}))
    for opset in (7, 11, input_since - 1):
        check(node_model(op, {"x": x}, attrs=old, opset=opset), {"x": x}, expect_ops=_ops(op, ir))
    consts = {} if axes is None else {"axes": np.array(axes, np.int64)}
    check(node_model(op, {"x": x}, consts=consts, attrs=attrs, opset=input_since), {"x": x}, expect_ops=_ops(op, ir))


@pytest.mark.parametrize("op,ir,input_since", REDUCE, ids=[r[0] for r in REDUCE])
def test_reduce_noop_with_empty_axes(op, ir, input_since):
    x = _data(op)
    for consts in ({}, {"axes": np.zeros((0,), np.int64)}):
        g = check(node_model(op, {"x": x}, consts=consts, attrs={"noop_with_empty_axes": 1}, opset=input_since),
                  {"x": x})
        ops = [n.op for n in g.nodes]
        pre, post = AROUND.get(op, ([], []))
        if ir in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod"):
            assert ops == (pre + post or ["copy"])
        else:
            assert ops == ["reshape", ir]


@pytest.mark.parametrize("op,ir,input_since", REDUCE, ids=[r[0] for r in REDUCE])
def test_reduce_scalar_input(op, ir, input_since):
    x = _data(op, shape=())
    pre, post = AROUND.get(op, ([], []))
    check(node_model(op, {"x": x}, attrs={"keepdims": 1}, opset=input_since), {"x": x},
          expect_ops=pre + ["reshape", ir] + post)


INT_REDUCE = [("ReduceSum", 13, "int32"), ("ReduceSum", 13, "int64"), ("ReduceMax", 18, "int32"),
              ("ReduceMax", 18, "int8"), ("ReduceMin", 18, "uint8"), ("ReduceMin", 18, "int64"),
              ("ReduceProd", 18, "int32"), ("ReduceMean", 18, "int32"), ("ReduceSumSquare", 18, "int64"),
              ("ReduceSum", 13, "float64"), ("ReduceMean", 18, "float64"), ("ReduceL2", 18, "float64")]


@pytest.mark.parametrize("op,opset,dtype", INT_REDUCE, ids=str)
@pytest.mark.parametrize("axes", [(1,), (0, 2)], ids=str)
def test_reduce_other_dtypes(op, opset, dtype, axes):
    x = _data(op, dtype) if op != "ReduceMean" else rand((2, 3, 4), dtype, seed=2, low=-20, high=20)
    check(node_model(op, {"x": x}, consts={"axes": np.array(axes, np.int64)}, attrs={"keepdims": 0}, opset=opset),
          {"x": x})


def test_reduce_max_bool():
    x = rand((3, 4), "bool", seed=5)
    for op in ("ReduceMax", "ReduceMin"):
        check(node_model(op, {"x": x}, consts={"axes": np.array([1], np.int64)}, opset=20), {"x": x})


def test_reduce_log_sum_exp_large_values():
    x = np.array([[1000.0, 1000.0, -1000.0], [-np.inf, 0.0, 1.0]], np.float32)
    check(node_model("ReduceLogSumExp", {"x": x}, attrs={"axes": [1]}, opset=13), {"x": x})


@pytest.mark.parametrize("op,ir", [("ArgMax", "argmax"), ("ArgMin", "argmin")])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("last", [0, 1])
def test_arg(op, ir, axis, keepdims, last):
    x = rand((3, 4, 5), "int32", seed=6, low=-2, high=2)  # many ties
    attrs = {"axis": axis, "keepdims": keepdims, "select_last_index": last}
    for opset in (12, 13):
        check(node_model(op, {"x": x}, attrs=attrs, opset=opset), {"x": x}, expect_ops=[ir])
    if not last and axis >= 0:
        old = {"axis": axis, "keepdims": keepdims}
        check(node_model(op, {"x": x}, attrs=old, opset=7), {"x": x}, expect_ops=[ir])


def test_arg_float_default_attrs():
    x = rand((4, 6), "float32", seed=7)
    for op in ("ArgMax", "ArgMin"):
        check(node_model(op, {"x": x}, opset=13), {"x": x})
