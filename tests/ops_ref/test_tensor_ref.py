"""Tensor converters + references against onnxruntime (one-node models, runtime data inputs)."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.errors import UnsupportedModelError
from edgec.frontend.onnx_import import import_onnx
from tests.ops_ref._harness import check, node_model, rand

I64 = np.int64


def _ints(*v):
    return np.array(v, dtype=I64)


# -- reshape family -------------------------------------------------------------------------------

RESHAPES = [((2, 3, 4), (4, -1)), ((2, 3, 4), (0, -1)), ((2, 3, 4), (-1,)), ((2, 3, 4), (2, 0, 2, 2)),
            ((6,), (1, 2, 1, 3)), ((1,), ()), ((2, 3, 4), (0, -1, 2))]


@pytest.mark.parametrize("shape,target", RESHAPES, ids=str)
@pytest.mark.parametrize("opset", [7, 13, 14, 21])
def test_reshape(shape, target, opset):
    x = rand(shape)
    check(node_model("Reshape", {"x": x}, consts={"s": np.array(target, I64)}, opset=opset), {"x": x},
          expect_ops=["reshape"])


def test_reshape_allowzero():
    x = rand((2, 3, 4))
    check(node_model("Reshape", {"x": x}, consts={"s": _ints(4, 6)}, attrs={"allowzero": 1}, opset=14), {"x": x},
          expect_ops=["reshape"])
    with pytest.raises(UnsupportedModelError, match="more than one -1"):
        import_onnx(node_model("Reshape", {"x": x}, consts={"s": _ints(-1, -1)}, opset=14))
    with pytest.raises(UnsupportedModelError, match="must be a constant"):
        import_onnx(node_model("Reshape", {"x": x, "s": _ints(4, 6)}, opset=14))


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -3])
def test_flatten(axis):
    x = rand((2, 3, 4))
    for opset in (9, 11, 13) if axis >= 0 else (11, 13):
        check(node_model("Flatten", {"x": x}, attrs={"axis": axis}, opset=opset), {"x": x})


@pytest.mark.parametrize("axes", [None, (2,), (0, 3), (-1,), (0, -1)], ids=str)
def test_squeeze(axes):
    x = rand((1, 3, 1, 1))
    attrs = {} if axes is None else {"axes": list(axes)}
    check(node_model("Squeeze", {"x": x}, attrs=attrs, opset=11), {"x": x}, expect_ops=["reshape"])
    consts = {} if axes is None else {"axes": np.array(axes, I64)}
    check(node_model("Squeeze", {"x": x}, consts=consts, opset=13), {"x": x}, expect_ops=["reshape"])


def test_squeeze_non_unit_axis_is_rejected():
    with pytest.raises(UnsupportedModelError, match="cannot squeeze"):
        import_onnx(node_model("Squeeze", {"x": rand((1, 3))}, attrs={"axes": [1]}, opset=11))


@pytest.mark.parametrize("axes", [(0,), (1, 3), (-1,), (0, 4), (-5, 2)], ids=str)
def test_unsqueeze(axes):
    x = rand((3, 4, 2))
    check(node_model("Unsqueeze", {"x": x}, attrs={"axes": list(axes)}, opset=11), {"x": x}, expect_ops=["reshape"])
    check(node_model("Unsqueeze", {"x": x}, consts={"axes": np.array(axes, I64)}, opset=13), {"x": x},
          expect_ops=["reshape"])


def test_unsqueeze_scalar():
    x = rand(())
    check(node_model("Unsqueeze", {"x": x}, consts={"axes": _ints(0)}, opset=13), {"x": x}, expect_ops=["reshape"])


@pytest.mark.parametrize("perm", [None, (0, 2, 1, 3), (3, 2, 1, 0), (1, 0, 2, 3), (0, 1, 2, 3)], ids=str)
def test_transpose(perm):
    x = rand((2, 3, 4, 5))
    attrs = {} if perm is None else {"perm": list(perm)}
    ops = ["copy"] if perm == (0, 1, 2, 3) else ["transpose"]
    for opset in (7, 13, 21):
        check(node_model("Transpose", {"x": x}, attrs=attrs, opset=opset), {"x": x}, expect_ops=ops)


# -- concat / split -------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("dtype", ["float32", "int64", "bool"])
def test_concat(axis, dtype):
    base = [2, 3, 4]
    feeds = {}
    for k in range(3):
        shp = list(base)
        shp[axis] = k + 1
        feeds[f"x{k}"] = rand(tuple(shp), dtype, seed=k)
    for opset in (7, 11, 13) if axis >= 0 else (11, 13):
        check(node_model("Concat", feeds, attrs={"axis": axis}, opset=opset), feeds, expect_ops=["concat"])


def test_concat_with_constant_input():
    x = rand((2, 3))
    c = rand((2, 2), seed=5)
    check(node_model("Concat", {"x": x}, consts={"c": c}, inputs=["c", "x", "c"], attrs={"axis": 1}, opset=13),
          {"x": x}, expect_ops=["concat"])


@pytest.mark.parametrize("opset", [7, 11])
def test_split_attr(opset):
    x = rand((6, 4))
    check(node_model("Split", {"x": x}, outputs=("a", "b", "c"), opset=opset), {"x": x}, expect_ops=["split"])
    check(node_model("Split", {"x": x}, outputs=("a", "b"), attrs={"axis": 1, "split": [1, 3]}, opset=opset),
          {"x": x}, expect_ops=["split"])
    if opset >= 11:
        check(node_model("Split", {"x": x}, outputs=("a", "b"), attrs={"axis": -2, "split": [4, 2]}, opset=opset),
              {"x": x}, expect_ops=["split"])


def test_split_13_18():
    x = rand((2, 7, 3))
    check(node_model("Split", {"x": x}, consts={"s": _ints(2, 0, 5)}, outputs=("a", "b", "c"), attrs={"axis": 1},
                     opset=13), {"x": x}, expect_ops=["split"])
    check(node_model("Split", {"x": x}, consts={"s": _ints(3, 4)}, outputs=("a", "b"), attrs={"axis": -2},
                     opset=18), {"x": x}, expect_ops=["split"])
    for n in (2, 3, 4):
        outs = tuple(f"o{k}" for k in range(n))
        check(node_model("Split", {"x": x}, outputs=outs, attrs={"axis": 1, "num_outputs": n}, opset=18), {"x": x},
              expect_ops=["split"])


def test_split_uneven_without_sizes_is_rejected():
    with pytest.raises(UnsupportedModelError, match="evenly"):
        import_onnx(node_model("Split", {"x": rand((5,))}, outputs=("a", "b"), opset=13))


# -- slice ----------------------------------------------------------------------------------------

BIG = np.iinfo(np.int64).max
SLICES = [
    # starts, ends, axes, steps
    ((0, 1), (2, 3), None, None),
    ((1,), (BIG,), (1,), None),
    ((-3,), (-1,), (2,), None),
    ((BIG,), (-BIG,), (1,), (-1,)),
    ((-1, 0), (-BIG, 5), (0, 2), (-2, 2)),
    ((5,), (1,), (2,), (-2,)),
    ((0, 0, 0), (-1, -1, -1), (0, 1, 2), (1, 1, 1)),
    ((2,), (2,), (0,), None),
    ((-100,), (100,), (-1,), (3,)),
    ((-100,), (-BIG,), (1,), (-1,)),
    ((1,), (-100,), (2,), (-1,)),
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES, ids=[str(i) for i in range(len(SLICES))])
def test_slice(starts, ends, axes, steps):
    x = rand((3, 4, 6))
    consts = {"s": np.array(starts, I64), "e": np.array(ends, I64)}
    names = ["x", "s", "e"]
    if axes is not None or steps is not None:
        consts["a"] = np.array(axes if axes is not None else range(len(starts)), I64)
        names.append("a")
    if steps is not None:
        consts["st"] = np.array(steps, I64)
        names.append("st")
    for opset in (10, 13):
        check(node_model("Slice", {"x": x}, consts=consts, inputs=names, opset=opset), {"x": x})
    if steps is None and all(abs(v) < 2 ** 31 for v in starts + ends):
        attrs = {"starts": list(starts), "ends": list(ends)}
        if axes is not None:
            attrs["axes"] = list(axes)
        if all(a >= 0 for a in axes or ()):
            check(node_model("Slice", {"x": x}, attrs=attrs, opset=9), {"x": x})


def test_slice_int32_params():
    x = rand((5, 6), "int32")
    consts = {"s": np.array([1, -1], np.int32), "e": np.array([4, 0], np.int32), "a": np.array([0, 1], np.int32),
              "st": np.array([2, -2], np.int32)}
    check(node_model("Slice", {"x": x}, consts=consts, opset=13), {"x": x}, expect_ops=["slice"])


# -- gather ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("idx_shape", [(), (3,), (2, 2)], ids=str)
@pytest.mark.parametrize("idx_dtype", ["int64", "int32"])
def test_gather(axis, idx_shape, idx_dtype):
    x = rand((4, 5, 3))
    dim = x.shape[axis]
    idx = rand(idx_shape, idx_dtype, seed=9, low=-dim, high=dim - 1)
    feeds = {"x": x, "i": idx}
    for opset in (7, 11, 13):
        if axis < 0 and opset < 11 or (opset < 11 and (idx < 0).any()):
            continue
        check(node_model("Gather", feeds, attrs={"axis": axis}, opset=opset), feeds, expect_ops=["gather"])


def test_gather_constant_data_runtime_indices():
    table = rand((10, 4), seed=1)
    idx = np.array([[0, 9], [-1, 3]], I64)
    check(node_model("Gather", {"i": idx}, consts={"t": table}, inputs=["t", "i"], opset=13), {"i": idx},
          expect_ops=["gather"])


def test_gather_out_of_range_constant_index_is_reported():
    x = rand((3, 2))
    with pytest.raises(UnsupportedModelError):
        import_onnx(node_model("Gather", {}, consts={"x": x, "i": _ints(3)}, opset=13))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements(axis):
    x = rand((4, 5), "float32")
    ishape = (3, 5) if axis == 0 else (4, 3) if axis == 1 else (2, 7)
    dim = x.shape[axis]
    idx = rand(ishape, "int64", seed=3, low=-dim, high=dim - 1)
    if axis == -1:
        x = rand((3, 9))
        idx = rand((2, 5), "int64", seed=4, low=-9, high=8)
    feeds = {"x": x, "i": idx}
    check(node_model("GatherElements", feeds, attrs={"axis": axis}, opset=13), feeds, expect_ops=["gather_elements"])
    check(node_model("GatherElements", feeds, attrs={"axis": axis}, opset=11), feeds)


# -- pad ------------------------------------------------------------------------------------------

PADS = [(0, 1, 2, 1, 0, 2), (1, 0, 0, 0, 2, 1), (2, 2, 2, 2, 2, 2)]


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("pads", PADS, ids=str)
def test_pad_2(mode, pads):
    x = rand((3, 4, 5))
    attrs = {"mode": mode, "pads": list(pads)}
    if mode == "constant":
        attrs["value"] = 1.5
    check(node_model("Pad", {"x": x}, attrs=attrs, opset=7), {"x": x}, expect_ops=["pad"])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
def test_pad_11(mode, dtype):
    x = rand((3, 4), dtype)
    consts = {"p": _ints(1, 2, 2, 1)}
    if mode == "constant":
        consts["v"] = np.array(-7, dtype=dtype)
    check(node_model("Pad", {"x": x}, consts=consts, attrs={"mode": mode}, opset=11), {"x": x}, expect_ops=["pad"])
    check(node_model("Pad", {"x": x}, consts={"p": _ints(0, 1, 1, 0)}, attrs={"mode": mode}, opset=13), {"x": x})


def test_pad_negative():
    x = rand((4, 5))
    check(node_model("Pad", {"x": x}, consts={"p": _ints(-1, 2, 1, -2)}, opset=13), {"x": x}, expect_ops=["pad"])
    for mode, pads in (("edge", (-1, 1, 0, -2)), ("reflect", (-1, 2, 1, -2)), ("wrap", (1, -2, -1, 3))):
        check(node_model("Pad", {"x": x}, consts={"p": _ints(*pads)}, attrs={"mode": mode}, opset=19),
              {"x": x}, expect_ops=["pad"])


@pytest.mark.parametrize("axes", [(1,), (-1, 0), (0,)], ids=str)
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_18_19_axes(axes, mode):
    x = rand((3, 4, 5))
    pads = [1 + k for k in range(len(axes))] + [2] * len(axes)
    consts = {"p": np.array(pads, I64), "v": np.array(0.25, np.float32), "a": np.array(axes, I64)}
    inputs = ["x", "p", "v" if mode == "constant" else "", "a"]
    check(node_model("Pad", {"x": x}, consts=consts, inputs=inputs, attrs={"mode": mode}, opset=19), {"x": x},
          expect_ops=["pad"])
    if mode != "wrap":
        check(node_model("Pad", {"x": x}, consts=consts, inputs=inputs, attrs={"mode": mode}, opset=18), {"x": x})


def test_pad_wrap_large():
    x = rand((2, 3))
    check(node_model("Pad", {"x": x}, consts={"p": _ints(1, 3, 2, 2)}, attrs={"mode": "wrap"}, opset=19), {"x": x})


def test_pad_zero_is_identity():
    x = rand((2, 3))
    check(node_model("Pad", {"x": x}, consts={"p": _ints(0, 0, 0, 0)}, opset=13), {"x": x}, expect_ops=["copy"])


# -- expand / tile --------------------------------------------------------------------------------

EXPANDS = [((3, 1), (2, 3, 4)), ((1,), (5,)), ((2, 1, 4), (1, 3, 1)), ((3,), (2, 1, 3)), ((), (2, 2))]


@pytest.mark.parametrize("shape,target", EXPANDS, ids=str)
def test_expand(shape, target):
    x = rand(shape, "float32")
    for opset in (8, 13):
        check(node_model("Expand", {"x": x}, consts={"s": np.array(target, I64)}, opset=opset), {"x": x},
              expect_ops=["expand"])


@pytest.mark.parametrize("reps", [(1, 1, 1), (2, 1, 3), (1, 3, 1), (2, 2, 2)], ids=str)
def test_tile(reps):
    x = rand((2, 3, 1), "int32")
    ops = ["copy"] if reps == (1, 1, 1) else ["tile"]
    for opset in (7, 13):
        check(node_model("Tile", {"x": x}, consts={"r": np.array(reps, I64)}, opset=opset), {"x": x}, expect_ops=ops)


# -- constant producers ---------------------------------------------------------------------------

@pytest.mark.parametrize("start,end", [(None, None), (1, None), (-2, None), (0, -1), (1, 2), (3, 1), (-10, 10)])
def test_shape(start, end):
    x = rand((2, 3, 4))
    attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    g = check(node_model("Shape", {"x": x}, attrs=attrs, opset=15), {"x": x}, expect_ops=["copy"])
    assert g.values[g.outputs[0]].dtype == "int64"
    if not attrs:
        check(node_model("Shape", {"x": x}, opset=7), {"x": x}, expect_ops=["copy"])


def test_size():
    x = rand((2, 3, 4))
    for opset in (7, 13, 21):
        check(node_model("Size", {"x": x}, opset=opset), {"x": x}, expect_ops=["copy"])


CONSTANTS = [
    ("value", np.arange(6, dtype=np.float32).reshape(2, 3)),
    ("value", np.array([1, -2], dtype=np.int32)),
    ("value", np.array(3.5, dtype=np.float64)),
    ("value", np.array([True, False])),
    ("value_float", 2.5),
    ("value_floats", [1.0, 2.0]),
    ("value_int", 7),
    ("value_ints", [3, 4, 5]),
]


@pytest.mark.parametrize("key,val", CONSTANTS, ids=[f"{k}{i}" for i, (k, _) in enumerate(CONSTANTS)])
def test_constant(key, val):
    from onnx import numpy_helper
    attrs = {key: numpy_helper.from_array(val, "c") if key == "value" else val}
    opset = 13 if key == "value" else 12
    check(node_model("Constant", {}, attrs=attrs, opset=opset), {}, expect_ops=["copy"])


def test_constant_feeds_a_node():
    from onnx import helper, numpy_helper
    import onnx
    x = rand((2, 3))
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.float32(2.0).reshape(()), "c")),
             helper.make_node("Mul", ["x", "c"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [2, 3])], [onnx.ValueInfoProto(name="y")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    check(model, {"x": x}, expect_ops=["mul"])


@pytest.mark.parametrize("dims", [(2, 3), (4,), ()], ids=str)
@pytest.mark.parametrize("value", [None, np.array([1.5], np.float32), np.array([7], np.int64), np.array([1], np.int8)],
                         ids=["default", "f32", "i64", "i8"])
def test_constant_of_shape(dims, value):
    from onnx import numpy_helper
    attrs = {} if value is None else {"value": numpy_helper.from_array(value, "v")}
    check(node_model("ConstantOfShape", {}, consts={"s": np.array(dims, I64)}, attrs=attrs, opset=9), {},
          expect_ops=["copy"])


RANGES = [(0, 10, 3, "int64"), (10, 4, -2, "int32"), (1, 1, 1, "int64"), (0.0, 1.0, 0.1, "float32"),
          (-2.5, 3.0, 0.75, "float64"), (5, 1, 1, "int32"), (0.0, 2.0, 0.3, "float32")]


@pytest.mark.parametrize("start,limit,delta,dtype", RANGES, ids=str)
def test_range(start, limit, delta, dtype):
    consts = {"a": np.array(start, dtype), "b": np.array(limit, dtype), "c": np.array(delta, dtype)}
    check(node_model("Range", {}, consts=consts, opset=11), {}, expect_ops=["copy"])


def test_range_needs_constants():
    feeds = {"a": np.array(0, I64)}
    with pytest.raises(UnsupportedModelError, match="must be a constant"):
        import_onnx(node_model("Range", feeds, consts={"b": np.array(5, I64), "c": np.array(1, I64)}, opset=11))


def test_shape_chain_folds_into_reshape():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape folds to one reshape node."""
    import onnx
    from onnx import helper, numpy_helper
    x = rand((2, 3, 4))
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    inits = [numpy_helper.from_array(np.array(0, I64), "zero"), numpy_helper.from_array(_ints(0), "zero1"),
             numpy_helper.from_array(_ints(-1), "minus1")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [2, 3, 4])],
                          [onnx.ValueInfoProto(name="y")], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    graph = check(model, {"x": x}, expect_ops=["reshape"])
    assert graph.values["y"].shape == (2, 12)


def test_noop_reshape_emits_nothing():
    x = rand((2, 3, 4))
    check(node_model("Reshape", {"x": x}, consts={"s": _ints(0, 0, -1)}, opset=13), {"x": x}, expect_ops=["copy"])
