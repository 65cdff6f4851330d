"""edgec.reference.run_graph, op schemas/inference of the elementwise/tensor/reduce groups, and
converter error reporting."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgec.errors import RuntimeInputError, UnsupportedModelError
from edgec.frontend.onnx_import import import_onnx
from edgec.frontend.registry import GraphBuilder, build_graph
from edgec.ir.graph import Value
from edgec.ir.ops import get
from edgec.ir.verify import verify
from edgec.reference import ReferenceRunError, run_graph
from tests.ops_ref._harness import node_model, rand


def _graph():
    """y = relu(x + c) * x ; z = transpose(y); with fold off so every node stays."""
    b = GraphBuilder(fold=False)
    b.values["x"] = Value("x", "float32", (2, 3))
    c = b.add_const(np.arange(3, dtype=np.float32) - 1, "c")
    s = b.emit("add", ["x", c])[0]
    r = b.emit("relu", [s])[0]
    y = b.emit("mul", [r, "x"], outputs=["y"])[0]
    z = b.emit("transpose", [y], {"perm": (1, 0)}, outputs=["z"])[0]
    return build_graph(b, ["x"], [y, z], "g")


def test_run_graph_multi_output():
    g = _graph()
    verify(g)
    x = rand((2, 3))
    out = run_graph(g, {"x": x})
    y = np.maximum(x + (np.arange(3, dtype=np.float32) - 1), 0) * x
    assert list(out) == ["y", "z"]
    np.testing.assert_allclose(out["y"], y, rtol=1e-6)
    np.testing.assert_array_equal(out["z"], y.T)
    every = run_graph(g, {"x": x}, keep_all=True)
    assert {"x", "c", "y", "z"} <= set(every)


@pytest.mark.parametrize("feeds,match", [
    ({}, "missing"),
    ({"x": np.zeros((2, 3), np.float32), "w": np.zeros(1)}, "unknown input"),
    ({"x": np.zeros((3, 2), np.float32)}, "shape"),
    ({"x": np.zeros((2, 3), np.float64)}, "dtype"),
])
def test_run_graph_rejects_bad_feeds(feeds, match):
    with pytest.raises(RuntimeInputError, match=match):
        run_graph(_graph(), feeds)


def test_run_graph_catches_reference_type_mismatch():
    g = _graph()
    g.values["y"] = replace(g.values["y"], dtype="float64")
    with pytest.raises(ReferenceRunError, match="declares float64"):
        run_graph(g, {"x": rand((2, 3))})


def test_run_graph_reports_failing_reference():
    b = GraphBuilder(fold=False)
    b.values["i"] = Value("i", "int64", (2,))
    t = b.add_const(np.arange(4, dtype=np.float32), "t")
    b.emit("gather", [t, "i"], {"axis": 0}, outputs=["y"])
    g = build_graph(b, ["i"], ["y"], "g")
    np.testing.assert_array_equal(run_graph(g, {"i": np.array([3, -4])})["y"], [3.0, 0.0])
    with pytest.raises(ReferenceRunError, match="out of range"):
        run_graph(g, {"i": np.array([0, 4])})


# -- op schemas and inference ---------------------------------------------------------------------

def _v(dtype, shape, name="v"):
    return Value(name, dtype, tuple(shape))


@pytest.mark.parametrize("op,inputs,attrs,match", [
    ("add", [_v("float32", (2,)), _v("int32", (2,))], {}, "one dtype"),
    ("add", [_v("float32", (2,)), _v("float32", (3,))], {}, "broadcast"),
    ("sqrt", [_v("int32", (2,))], {}, "not supported"),
    ("not", [_v("float32", (2,))], {}, "not supported"),
    ("and", [_v("int8", (2,)), _v("int8", (2,))], {}, "not supported"),
    ("where", [_v("int8", (2,)), _v("float32", (2,)), _v("float32", (2,))], {}, "condition"),
    ("prelu", [_v("float32", (2, 3)), _v("float32", (2, 1, 3))], {}, "does not broadcast"),
    ("reshape", [_v("float32", (2, 3))], {"shape": (4, 2)}, "cannot reshape"),
    ("transpose", [_v("float32", (2, 3))], {"perm": (0, 0)}, "permutation"),
    ("concat", [_v("float32", (2, 3)), _v("float32", (3, 3))], {"axis": 1}, "differ outside"),
    ("split", [_v("float32", (5,))], {"axis": 0, "sizes": (2, 2)}, "add up"),
    ("slice", [_v("float32", (5,))], {"starts": (3,), "steps": (1,), "out_shape": (3,)}, "leave the axis"),
    ("slice", [_v("float32", (5,))], {"starts": (0,), "steps": (0,), "out_shape": (1,)}, "step 0"),
    ("gather", [_v("float32", (5,)), _v("float32", (2,))], {"axis": 0}, "indices"),
    ("pad", [_v("float32", (3,))], {"pads": (3, 0), "mode": "reflect", "value": 0.0}, "reflect"),
    ("pad", [_v("float32", (3,))], {"pads": (-2, -2), "mode": "constant", "value": 0.0}, "negative pads"),
    ("expand", [_v("float32", (3,))], {"shape": (2,)}, "broadcast"),
    ("reduce_sum", [_v("float32", (2, 3))], {"axes": (1, 0), "keepdims": 1}, "sorted"),
    ("reduce_sum", [_v("float32", (2, 3))], {"axes": (), "keepdims": 1}, "non-empty"),
    ("reduce_sum", [_v("bool", (2, 3))], {"axes": (0,), "keepdims": 1}, "not supported"),
    ("argmax", [_v("float32", (2, 3))], {"axis": 2, "keepdims": 1, "select_last_index": 0}, "axis"),
    ("cast", [_v("float32", (2,))], {"to": "bfloat16"}, "target"),
    ("gelu", [_v("float32", (2,))], {"approximate": "erf"}, "approximate"),
])
def test_infer_rejects(op, inputs, attrs, match):
    opdef = get(op)
    with pytest.raises(ValueError, match=match):
        opdef.infer(inputs, opdef.normalize_attrs(attrs))


def test_registered_ops_and_groups():
    from edgec.ir.ops import all_ops
    ops = all_ops()
    want = {
        "elementwise": "copy relu sigmoid tanh erf sqrt exp log abs neg reciprocal floor ceil round sign sin cos "
                       "softplus softsign hard_swish not leaky_relu elu selu hard_sigmoid gelu clip cast add sub mul "
                       "div pow max min mod equal less less_equal greater greater_equal and or xor where prelu",
        "tensor": "reshape transpose concat split slice gather gather_elements pad expand tile",
        "reduce": "reduce_sum reduce_mean reduce_max reduce_min reduce_prod reduce_l2 reduce_sum_square "
                  "reduce_log_sum_exp argmax argmin",
    }
    for group, names in want.items():
        for name in names.split():
            assert ops[name].group == group, name
            assert ops[name].doc, f"{name} has no docstring"
    assert ops["reshape"].view and not ops["transpose"].view
    assert ops["concat"].arity == (1, None)
    assert not ops["copy"].foldable


def test_integer_reference_semantics():
    ref = lambda op, *a, **k: get(op).reference(*a, **k)[0]  # noqa: E731
    a = np.array([7, -7, 7, -7, 5], np.int32)
    b = np.array([2, 2, -2, -2, 0], np.int32)
    assert ref("div", a, b).tolist() == [3, -3, -3, 3, 0]
    assert ref("mod", a, b, fmod=0).tolist() == [1, 1, -1, -1, 0]
    assert ref("mod", a, b, fmod=1).tolist() == [1, -1, 1, -1, 0]
    assert ref("pow", np.array([2, 3], np.int64), np.array([-1, 2], np.int64)).tolist() == [0, 9]
    assert ref("pow", np.array([2.0], np.float32), np.array([3], np.int64)).dtype == np.float32
    assert ref("cast", np.array([-1.7, 2.9, 0.0]), to="int32").tolist() == [-1, 2, 0]
    assert ref("cast", np.array([-1.7, 0.0]), to="bool").tolist() == [True, False]
    assert ref("reduce_mean", np.array([[-3, -4], [3, 4]], np.int32), axes=(1,), keepdims=0).tolist() == [-3, 3]
    assert ref("reduce_max", np.zeros((2, 0), np.float32), axes=(1,), keepdims=0).tolist() == [-np.inf, -np.inf]
    assert ref("reduce_sum", np.zeros((0,), np.int64), axes=(0,), keepdims=0).shape == ()
    assert ref("round", np.array([0.5, 1.5, 2.5, -0.5], np.float32)).tolist() == [0, 2, 2, -0]


# -- converter error reporting --------------------------------------------------------------------

def test_unknown_attribute_is_reported():
    x = rand((2, 3))
    with pytest.raises(UnsupportedModelError, match="attribute 'bogus'"):
        import_onnx(node_model("Relu", {"x": x}, attrs={"bogus": 1}, opset=13))


def test_bad_attribute_value_is_reported():
    x = rand((2, 3))
    with pytest.raises(UnsupportedModelError, match="approximate"):
        import_onnx(node_model("Gelu", {"x": x}, attrs={"approximate": "fast"}, opset=20))


def test_type_errors_are_reported_with_the_node():
    a, b = rand((2, 3)), rand((2, 3), "int32")
    with pytest.raises(UnsupportedModelError, match=r"Add.*one dtype"):
        import_onnx(node_model("Add", {"a": a, "b": b}, opset=13))
    with pytest.raises(UnsupportedModelError, match="Sqrt"):
        import_onnx(node_model("Sqrt", {"x": rand((2,), "int32")}, opset=13))


def test_every_problem_is_listed_once():
    import onnx
    from onnx import helper
    nodes = [helper.make_node("Sqrt", ["x"], ["a"]), helper.make_node("Relu", ["x"], ["b"], bogus=1),
             helper.make_node("Abs", ["a"], ["c"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.INT32, [2])],
                          [onnx.ValueInfoProto(name="b"), onnx.ValueInfoProto(name="c")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(m)
    assert [it.op for it in e.value.items] == ["Sqrt", "Relu"]


# -- converter versions ---------------------------------------------------------------------------

COVERED = ("Identity Dropout Relu LeakyRelu PRelu Elu Selu Sigmoid HardSigmoid HardSwish Tanh Erf Gelu Softplus "
           "Softsign Sqrt Exp Log Abs Neg Reciprocal Floor Ceil Round Sign Sin Cos Not Clip Cast CastLike Add Sub "
           "Mul Div Pow Mod Max Min Sum Mean Equal Less LessOrEqual Greater GreaterOrEqual And Or Xor Where Reshape "
           "Flatten Squeeze Unsqueeze Transpose Concat Split Slice Gather GatherElements Pad Expand Tile Shape Size "
           "Constant ConstantOfShape Range ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ReduceL2 "
           "ReduceSumSquare ReduceLogSumExp ArgMax ArgMin ReduceL1 ReduceLogSum Celu ThresholdedRelu Mish").split()

# the version where an op's signature changed: the converter in effect there must be a newer one
SIGNATURE_CHANGES = {"Clip": 11, "Squeeze": 13, "Unsqueeze": 13, "Split": 13, "Slice": 10, "Pad": 11,
                     "ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18, "ReduceProd": 18,
                     "ReduceL2": 18, "ReduceSumSquare": 18, "ReduceLogSumExp": 18, "Dropout": 12, "ReduceL1": 18,
                     "ReduceLogSum": 18}


def test_every_opset_maps_to_a_converter():
    import onnx.defs
    from edgec.frontend import onnx_ops  # noqa: F401  (registers converters)
    from edgec.frontend.registry import find_converter
    for op in COVERED:
        seen = {}
        for opset in range(7, onnx.defs.onnx_opset_version() + 1):
            try:
                version = onnx.defs.get_schema(op, opset, "").since_version
            except Exception:  # the op does not exist yet at this opset
                continue
            fn = find_converter(op, version)
            assert fn is not None, f"{op} version {version} (opset {opset}) has no converter"
            seen[version] = fn
        assert seen, f"{op} never exists between opset 7 and today"
        if op in SIGNATURE_CHANGES:
            v = SIGNATURE_CHANGES[op]
            before = [fn for ver, fn in seen.items() if ver < v]
            after = [fn for ver, fn in seen.items() if ver >= v]
            assert before and after and set(before).isdisjoint(after), op
