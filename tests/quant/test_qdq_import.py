"""QDQ import (edgec/frontend/onnx_ops/quant.py): one-node ONNX models with constant scales and
zero points, imported and run with the reference interpreter, against onnxruntime: bit-exact for
QuantizeLinear, DequantizeLinear, MatMulInteger and ConvInteger; within one quantum (onnxruntime
requantizes in float, rounding half to even) for QLinearConv and QLinearMatMul."""
from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgec.errors import UnsupportedModelError  # noqa: E402
from edgec.frontend.onnx_import import import_onnx  # noqa: E402
from edgec.reference import run_graph  # noqa: E402

RNG = np.random.default_rng(7)
_T = {np.dtype("float32"): TensorProto.FLOAT, np.dtype("uint8"): TensorProto.UINT8,
      np.dtype("int8"): TensorProto.INT8, np.dtype("int32"): TensorProto.INT32}


def model(op, inputs: dict, consts: dict, out_type, attrs=None, opset=13, order=None):
    """A one-node model: ``inputs`` are runtime graph inputs, ``consts`` initializers; ``order`` the
    node's input names ("" for an absent one)."""
    names = order or list(inputs) + list(consts)
    node = helper.make_node(op, names, ["y"], **(attrs or {}))
    ins = [helper.make_tensor_value_info(k, _T[v.dtype], v.shape) for k, v in inputs.items()]
    g = helper.make_graph([node], "g", ins,
                          [helper.make_tensor_value_info("y", out_type, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def both(m, feeds):
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    g = import_onnx(m)
    got = run_graph(g, feeds)[g.outputs[0]]
    assert got.dtype == want.dtype and got.shape == want.shape
    return g, got, want


def within_one(got, want, exact_frac=0.97):
    d = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert d.max() <= 1 and (d == 0).mean() >= exact_frac, (d.max(), (d == 0).mean())


def f32(x):
    return np.asarray(x, np.float32)


@pytest.mark.parametrize("dt, zp", [(np.uint8, 128), (np.int8, -5)])
def test_quantize_linear_per_tensor(dt, zp):
    x = RNG.normal(size=(2, 3, 5)).astype(np.float32) * 2
    x.flat[:4] = [0.5 * 0.03, 1.5 * 0.03, -2.5 * 0.03, 1e9]  # ties and saturation
    m = model("QuantizeLinear", {"x": x}, {"s": f32(0.03), "z": np.asarray(zp, dt)}, _T[np.dtype(dt)])
    g, got, want = both(m, {"x": x})
    np.testing.assert_array_equal(got, want)
    assert [n.op for n in g.nodes] == ["quantize"]


def test_quantize_linear_per_axis_and_dequantize_per_axis():
    x = RNG.normal(size=(2, 4, 3)).astype(np.float32)
    s, z = f32([0.01, 0.02, 0.05, 0.1]), np.asarray([0, 10, 128, 255], np.uint8)
    _, got, want = both(model("QuantizeLinear", {"x": x}, {"s": s, "z": z}, TensorProto.UINT8, {"axis": 1}), {"x": x})
    np.testing.assert_array_equal(got, want)
    q = RNG.integers(-128, 128, size=(3, 4)).astype(np.int8)
    s, z = f32([0.5, 0.25, 0.125]), np.asarray([1, -2, 3], np.int8)
    _, got, want = both(model("DequantizeLinear", {"q": q}, {"s": s, "z": z}, TensorProto.FLOAT, {"axis": 0}), {"q": q})
    np.testing.assert_array_equal(got, want)


def test_dequantize_linear_int32_without_zero_point():
    q = RNG.integers(-10 ** 6, 10 ** 6, size=(7,)).astype(np.int32)
    _, got, want = both(model("DequantizeLinear", {"q": q}, {"s": f32(0.0003)}, TensorProto.FLOAT), {"q": q})
    np.testing.assert_array_equal(got, want)


def _qlinearconv(x, w, sw, zw, b, attrs, zx=120, sx=0.02, sy=0.06, zy=110, ydt=np.uint8):
    consts = {"sx": f32(sx), "zx": np.asarray(zx, x.dtype), "w": w, "sw": sw, "zw": zw, "sy": f32(sy),
              "zy": np.asarray(zy, ydt)}
    order = ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy"]
    if b is not None:
        consts["b"] = b
        order.append("b")
    return model("QLinearConv", {"x": x}, consts, _T[np.dtype(ydt)], attrs, order=order)


@pytest.mark.parametrize("attrs, groups", [({"pads": [1, 1, 1, 1], "strides": [1, 1]}, 1),
                                           ({"pads": [0, 1, 2, 1], "strides": [2, 1], "dilations": [1, 2]}, 1),
                                           ({"auto_pad": "SAME_UPPER", "group": 2}, 2),
                                           ({"pads": [1, 1, 1, 1], "group": 6}, 6)])
def test_qlinearconv_per_channel(attrs, groups):
    x = RNG.integers(0, 256, size=(1, 6, 9, 9)).astype(np.uint8)
    w = RNG.integers(-127, 128, size=(6, 6 // groups, 3, 3)).astype(np.int8)
    sw = RNG.uniform(0.002, 0.01, size=6).astype(np.float32)
    b = RNG.integers(-4000, 4000, size=6).astype(np.int32)
    m = _qlinearconv(x, w, sw, np.zeros(6, np.int8), b, attrs)
    g, got, want = both(m, {"x": x})
    within_one(got, want)
    assert [n.op for n in g.nodes] == ["qconv"]


def test_qlinearconv_int8_activations_per_tensor_no_bias():
    x = RNG.integers(-128, 128, size=(2, 3, 6, 6)).astype(np.int8)
    w = RNG.integers(-127, 128, size=(4, 3, 2, 2)).astype(np.int8)
    m = _qlinearconv(x, w, f32(0.004), np.asarray(0, np.int8), None, {}, zx=-3, zy=-10, ydt=np.int8)
    _, got, want = both(m, {"x": x})
    within_one(got, want)


def test_qlinearconv_uint8_weights_with_zero_point_128():
    x = RNG.integers(0, 256, size=(1, 3, 6, 6)).astype(np.uint8)
    w = RNG.integers(0, 256, size=(4, 3, 3, 3)).astype(np.uint8)
    m = _qlinearconv(x, w, f32(0.004), np.asarray(128, np.uint8), None, {"pads": [1, 1, 1, 1]})
    g, got, want = both(m, {"x": x})
    within_one(got, want)
    assert g.values[g.nodes[0].inputs[1]].dtype == "int8"


def test_qlinearconv_with_weight_zero_point_is_unsupported():
    x = RNG.integers(0, 256, size=(1, 2, 4, 4)).astype(np.uint8)
    w = RNG.integers(-127, 128, size=(2, 2, 1, 1)).astype(np.int8)
    m = _qlinearconv(x, w, f32([0.01, 0.01]), np.asarray([0, 3], np.int8), None, {})
    with pytest.raises(UnsupportedModelError, match="zero point 0"):
        import_onnx(m)


def _qlinearmatmul(a, b, a_in=True, b_in=False, sb=0.01, zb=0, sy=0.5, zy=100, ydt=np.uint8):
    consts = {"sa": f32(0.02), "za": np.asarray(128 if a.dtype == np.uint8 else 0, a.dtype), "sb": f32(sb),
              "zb": np.asarray(zb, b.dtype), "sy": f32(sy), "zy": np.asarray(zy, ydt)}
    inputs = {"a": a}
    (inputs if b_in else consts)["b"] = b
    return model("QLinearMatMul", inputs, consts, _T[np.dtype(ydt)],
                 order=["a", "sa", "za", "b", "sb", "zb", "sy", "zy"])


def test_qlinearmatmul_constant_b_per_column_becomes_qdense():
    a = RNG.integers(0, 256, size=(2, 5, 16)).astype(np.uint8)
    b = RNG.integers(-127, 128, size=(16, 7)).astype(np.int8)
    sb = RNG.uniform(0.005, 0.02, size=7).astype(np.float32)
    m = _qlinearmatmul(a, b, sb=sb, zb=np.zeros(7, np.int8))
    g, got, want = both(m, {"a": a})
    within_one(got, want)
    assert [n.op for n in g.nodes] == ["reshape", "qdense", "reshape"]


@pytest.mark.parametrize("adt", [np.uint8, np.int8])
def test_qlinearmatmul_runtime_operands(adt):
    lo, hi = (0, 256) if adt == np.uint8 else (-128, 128)
    a = RNG.integers(lo, hi, size=(3, 4, 8)).astype(adt)
    b = RNG.integers(lo, hi, size=(3, 8, 5)).astype(adt)
    m = _qlinearmatmul(a, b, b_in=True, zb=3, sy=2.0, zy=-7 if adt == np.int8 else 100, ydt=adt)
    g, got, want = both(m, {"a": a, "b": b})
    within_one(got, want)
    assert [n.op for n in g.nodes] == ["qmatmul"]


def test_qlinearmatmul_constant_b_with_zero_point_uses_qmatmul():
    a = RNG.integers(0, 256, size=(4, 8)).astype(np.uint8)
    b = RNG.integers(0, 256, size=(8, 3)).astype(np.uint8)
    g, got, want = both(_qlinearmatmul(a, b, zb=77, sy=1.0), {"a": a})
    within_one(got, want)
    assert [n.op for n in g.nodes] == ["qmatmul"]


def test_matmul_integer_exact():
    a = RNG.integers(0, 256, size=(2, 3, 20)).astype(np.uint8)
    b = RNG.integers(-128, 128, size=(20, 6)).astype(np.int8)
    m = model("MatMulInteger", {"a": a, "b": b}, {"za": np.asarray(17, np.uint8), "zb": np.asarray(-3, np.int8)},
              TensorProto.INT32)
    _, got, want = both(m, {"a": a, "b": b})
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("attrs", [{"pads": [1, 1, 1, 1]}, {"strides": [2, 2]}])
def test_conv_integer_exact(attrs):
    x = RNG.integers(0, 256, size=(1, 3, 7, 7)).astype(np.uint8)
    w = RNG.integers(0, 256, size=(4, 3, 3, 3)).astype(np.uint8)
    m = model("ConvInteger", {"x": x}, {"w": w, "zx": np.asarray(9, np.uint8), "zw": np.asarray(128, np.uint8)},
              TensorProto.INT32, attrs, order=["x", "w", "zx", "zw"])
    _, got, want = both(m, {"x": x})
    np.testing.assert_array_equal(got, want)


def test_qdq_weights_stay_integer_until_fused_or_folded():
    """DequantizeLinear on constant int8 weights stays an int8 constant + dequantize at import (for
    edgec.passes.fuse_qdq); a conv whose output is not quantized is not fused, and fold_constants
    then folds the weights into float, as onnxruntime computes them."""
    x = RNG.normal(size=(1, 2, 5, 5)).astype(np.float32)
    wq = RNG.integers(-127, 128, size=(3, 2, 3, 3)).astype(np.int8)
    sw = RNG.uniform(0.01, 0.02, size=3).astype(np.float32)
    nodes = [helper.make_node("DequantizeLinear", ["wq", "sw"], ["w"], axis=0),
             helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("Conv", ["xd", "w"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(a, n) for n, a in
                           [("wq", wq), ("sw", sw), ("sx", f32(0.05)), ("zx", np.asarray(128, np.uint8))]])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    ir, got, want = both(m, {"x": x})
    assert [n.op for n in ir.nodes] == ["dequantize", "quantize", "dequantize", "conv"]
    assert ir.values[ir.nodes[0].inputs[0]].dtype == "int8" and ir.nodes[0].attrs["axis"] == 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    from edgec.passes import run_pipeline
    g = run_pipeline(ir)
    assert [n.op for n in g.nodes] == ["quantize", "dequantize", "conv"]
    assert g.values[g.nodes[2].inputs[1]].dtype == "float32"
    np.testing.assert_allclose(run_graph(g, {"x": x})[g.outputs[0]], want, rtol=1e-5, atol=1e-5)
