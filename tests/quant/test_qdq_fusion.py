"""Pre-quantized QDQ models (onnxruntime.quantization.quantize_static, QuantFormat.QDQ) compile to
integer ops (edgec.passes.fuse_qdq) and match onnxruntime's own int8 output within one quantum
(|diff| <= 1 output scale) on >= 99% of the elements.

Small float models are built here, quantized with a seeded CalibrationDataReader (per-channel and
per-tensor weights, uint8 and int8 activations), then
- the prepared graph (``edgec.compiler.prepare_graph``, what ``edgec.compile`` builds) has no float
  conv / dense / matmul left and its ``meta["quantization"]`` says so;
- its outputs (reference interpreter; the int8 kernels are bit-exact with it, tests/backend_quant)
  agree with onnxruntime running the QDQ model;
- a few are compiled and run by the C runtime (``edgec.load(dir).run``) with the same check, and the
  report's quantization section; the PP-OCR classifier quantized per channel is the issue's CI check.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
oq = pytest.importorskip("onnxruntime.quantization")
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import edgec  # noqa: E402
from edgec.compiler import prepare_graph  # noqa: E402
from edgec.passes import fuse_qdq  # noqa: E402
from edgec.passes.fuse_qdq import ROUNDING_ENV, FuseQDQOptions, FuseQDQOptionsError  # noqa: E402
from edgec.reference import run_graph  # noqa: E402

FLOAT_LINEAR = {"conv", "dense", "matmul", "conv_transpose"}


# -- float models --------------------------------------------------------------------------------

def _model(nodes, inputs, outputs, inits, opset=13):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in inputs],
                          [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in outputs],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _w(rng, *shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return rng.normal(size=shape).astype(np.float32) * (scale or 1.0 / np.sqrt(fan_in))


def conv_relu(rng):
    """conv + relu -> max_pool -> flatten -> gemm (transB=1)."""
    inits = {"w": _w(rng, 8, 3, 3, 3), "b": _w(rng, 8, scale=0.1), "g": _w(rng, 10, 128), "gb": _w(rng, 10, scale=0.1)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "g", "gb"], ["y"], transB=1)]
    return _model(nodes, [("x", [1, 3, 8, 8])], ["y"], inits), {"x": (1, 3, 8, 8)}


def depthwise(rng):
    """pointwise conv -> depthwise 3x3 stride 2 + relu6 (Clip) -> pointwise conv."""
    inits = {"w1": _w(rng, 16, 4, 1, 1), "b1": _w(rng, 16, scale=0.1), "wd": _w(rng, 16, 1, 3, 3),
             "bd": _w(rng, 16, scale=0.1), "w2": _w(rng, 6, 16, 1, 1), "lo": np.float32(0), "hi": np.float32(6)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"]),
             helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("Conv", ["ar", "wd", "bd"], ["d"], group=16, pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Clip", ["d", "lo", "hi"], ["dc"]),
             helper.make_node("Conv", ["dc", "w2"], ["y"])]
    return _model(nodes, [("x", [1, 4, 10, 10])], ["y"], inits), {"x": (1, 4, 10, 10)}


def mlp(rng):
    """gemm (transB=1) + relu -> gemm (transB=0) -> sigmoid."""
    inits = {"w1": _w(rng, 32, 20), "b1": _w(rng, 32, scale=0.1), "w2": _w(rng, 32, 12).reshape(32, 12),
             "b2": _w(rng, 12, scale=0.1)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["y"])]
    return _model(nodes, [("x", [4, 20])], ["y"], inits), {"x": (4, 20)}


def matmuls(rng):
    """3-D x @ constant W + bias (MatMul + Add), then an activation x activation MatMul."""
    inits = {"w": _w(rng, 16, 16), "b": _w(rng, 16, scale=0.1)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["h"]),
             helper.make_node("Transpose", ["h"], ["ht"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["h", "ht"], ["y"])]
    return _model(nodes, [("x", [2, 6, 16])], ["y"], inits), {"x": (2, 6, 16)}


def add_mul_concat(rng):
    """two conv branches -> add, mul, concat -> global average pool and average pool."""
    inits = {"w1": _w(rng, 6, 3, 3, 3), "w2": _w(rng, 6, 3, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w2"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["s"]),
             helper.make_node("Mul", ["a", "b"], ["p"]),
             helper.make_node("Concat", ["s", "p", "a"], ["c"], axis=1),
             helper.make_node("AveragePool", ["c"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["c"], ["y1"]),
             helper.make_node("Reshape", ["ap", "shape"], ["y2"])]
    m = _model(nodes, [("x", [1, 3, 8, 8])], ["y1", "y2"], inits)
    m.graph.initializer.append(numpy_helper.from_array(np.asarray([1, -1], np.int64), "shape"))
    return m, {"x": (1, 3, 8, 8)}


def residual(rng):
    """conv-relu-conv + identity skip -> relu -> conv stride 2 + hardsigmoid gate -> global pool -> gemm."""
    inits = {"w0": _w(rng, 8, 3, 3, 3), "b0": _w(rng, 8, scale=0.1), "w1": _w(rng, 8, 8, 3, 3),
             "b1": _w(rng, 8, scale=0.1), "w2": _w(rng, 8, 8, 3, 3), "b2": _w(rng, 8, scale=0.1),
             "w3": _w(rng, 12, 8, 1, 1), "g": _w(rng, 5, 12), "gb": _w(rng, 5, scale=0.1)}
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["s0"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["s0"], ["r0"]),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r0"], ["sum"]),
             helper.make_node("Relu", ["sum"], ["rs"]),
             helper.make_node("Conv", ["rs", "w3"], ["c3"], strides=[2, 2]),
             helper.make_node("HardSigmoid", ["c3"], ["hs"]),
             helper.make_node("Mul", ["c3", "hs"], ["gated"]),
             helper.make_node("GlobalAveragePool", ["gated"], ["gp"]),
             helper.make_node("Flatten", ["gp"], ["fl"]),
             helper.make_node("Gemm", ["fl", "g", "gb"], ["y"], transB=1)]
    return _model(nodes, [("x", [1, 3, 12, 12])], ["y"], inits), {"x": (1, 3, 12, 12)}


MODELS = {f.__name__: f for f in (conv_relu, depthwise, mlp, matmuls, add_mul_concat, residual)}


# -- quantization with onnxruntime ---------------------------------------------------------------

class _Reader(oq.CalibrationDataReader):
    def __init__(self, shapes, n, seed):
        rng = np.random.default_rng(seed)
        self.items = iter([{k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()} for _ in range(n)])

    def get_next(self):
        return next(self.items, None)


def quantize_qdq(float_model, shapes, path, per_channel=True, activation="uint8", n_calib=16, seed=0):
    """quantize_static(QuantFormat.QDQ, weights QInt8) into ``path``; returns the path."""
    src = path.with_suffix(".float.onnx")
    onnx.save(float_model, str(src)) if not isinstance(float_model, str) else None
    oq.quantize_static(str(src) if not isinstance(float_model, str) else float_model, str(path),
                       _Reader(shapes, n_calib, seed), quant_format=oq.QuantFormat.QDQ, per_channel=per_channel,
                       activation_type=oq.QuantType.QUInt8 if activation == "uint8" else oq.QuantType.QInt8,
                       weight_type=oq.QuantType.QInt8)
    return path


def output_scales(path) -> dict[str, float]:
    """Scale of the DequantizeLinear producing each graph output of a QDQ model."""
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    outs = {o.name for o in m.graph.output}
    return {n.output[0]: float(inits[n.input[1]].reshape(-1)[0]) for n in m.graph.node
            if n.op_type == "DequantizeLinear" and n.output[0] in outs}


def agreement(path, shapes, run, n=8, seed=1, make=None):
    """Fraction of output elements within one output scale of onnxruntime's, and the max |diff| in quanta."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scales = output_scales(path)
    rng = np.random.default_rng(seed)
    ok, total, worst = 0, 0, 0.0
    for _ in range(n):
        feeds = {k: (make(rng) if make else rng.normal(size=s).astype(np.float32)) for k, s in shapes.items()}
        want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        got = run(feeds)
        for name, w in want.items():
            d = np.abs(got[name].astype(np.float64) - w.astype(np.float64)) / scales[name]
            ok += int((d <= 1.0 + 1e-3).sum())
            total += d.size
            worst = max(worst, float(d.max()))
    return ok / total, worst


def _float_linear_left(graph):
    return [n for n in graph.nodes if n.op in FLOAT_LINEAR]


# -- tests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rounding", ["fixed", "onnxruntime"])
@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
@pytest.mark.parametrize("activation", ["uint8", "int8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_qdq_model_fuses_and_matches_onnxruntime(name, activation, per_channel, rounding, tmp_path, monkeypatch):
    monkeypatch.setenv(ROUNDING_ENV, rounding)
    float_model, shapes = MODELS[name](np.random.default_rng(11))
    path = quantize_qdq(float_model, shapes, tmp_path / f"{name}.qdq.onnx", per_channel, activation)
    graph, _ = prepare_graph(str(path))
    assert not _float_linear_left(graph), _float_linear_left(graph)
    q = graph.meta["quantization"]
    assert q["source"] == "qdq" and q["activation_dtype"] == activation and q["int8_nodes"] > 0
    assert q["rounding"] == rounding
    assert q["per_channel"] == per_channel
    int_ops = {n.op for n in graph.nodes}
    assert int_ops & {"qconv", "qdense", "qmatmul"}
    frac, worst = agreement(path, shapes, lambda feeds: run_graph(graph, feeds))
    print(f"\n{name} {activation} {'per-channel' if per_channel else 'per-tensor'} {rounding}: "
          f"{frac:.2%} of elements within one quantum of onnxruntime (max {worst:.2f} quanta); "
          f"{q['int8_nodes']} int8 / {q['float_nodes']} float layers")
    assert frac >= 0.99


def test_rounding_modes(tmp_path, monkeypatch):
    """"fixed" requantizes inside the integer op; "onnxruntime" returns the int32 accumulator and
    rounds float32(acc) * float32(multiplier) half to even (cast, mul, quantize), as onnxruntime's
    CPU kernels do; a bad mode is refused."""
    fm, shapes = MODELS["conv_relu"](np.random.default_rng(11))
    path = str(quantize_qdq(fm, shapes, tmp_path / "m.onnx"))
    from edgec.frontend.onnx_import import import_onnx
    from edgec.passes import infer_shapes
    g = infer_shapes(import_onnx(path))
    fixed = fuse_qdq(g, FuseQDQOptions("fixed"))
    ort_like = fuse_qdq(g, FuseQDQOptions("onnxruntime"))
    conv = next(n for n in fixed.nodes if n.op == "qconv")
    assert conv.attrs["out_dtype"] == "uint8"
    ops = [n.op for n in ort_like.nodes if n.op not in ("dequantize",)]
    assert ops[:5] == ["quantize", "qconv", "cast", "mul", "quantize"]
    acc = next(n for n in ort_like.nodes if n.op == "qconv")
    assert acc.attrs["out_dtype"] == "int32" and acc.attrs["multiplier"] == (2 ** 30,)
    with pytest.raises(FuseQDQOptionsError):
        FuseQDQOptions("float")
    monkeypatch.setenv(ROUNDING_ENV, "nearest")
    with pytest.raises(FuseQDQOptionsError, match="rounding"):
        fuse_qdq(g)


def test_expected_integer_ops(tmp_path, monkeypatch):
    monkeypatch.delenv(ROUNDING_ENV, raising=False)
    """The patterns map to the documented ops: conv+relu -> qconv with the relu in its clamp,
    gemm -> qdense, matmul with a constant -> qdense (through reshapes), activation matmul ->
    qmatmul, add/mul -> qadd/qmul, avg pool -> depthwise qconv, global pool -> qglobal_avg_pool,
    hardsigmoid -> qlut, reshape/flatten/transpose/max_pool on integers."""
    ops = {}
    for name in ("conv_relu", "matmuls", "add_mul_concat", "residual"):
        fm, shapes = MODELS[name](np.random.default_rng(11))
        g, _ = prepare_graph(str(quantize_qdq(fm, shapes, tmp_path / f"{name}.onnx")))
        ops[name] = [n.op for n in g.nodes]
    assert ops["conv_relu"] == ["quantize", "qconv", "max_pool", "reshape", "qdense", "dequantize"]
    assert {"qdense", "qmatmul", "transpose", "reshape"} <= set(ops["matmuls"])
    assert {"qadd", "qmul", "concat", "qconv", "requantize", "reshape"} <= set(ops["add_mul_concat"])
    assert {"qadd", "qmul", "qlut", "qglobal_avg_pool"} <= set(ops["residual"])
    for o in ops.values():
        assert not set(o) & FLOAT_LINEAR


def test_unsupported_weight_zero_point_stays_float(tmp_path, monkeypatch):
    """An int8 weight with a non-zero zero point cannot be a symmetric qconv: the conv stays float
    between its DequantizeLinear / QuantizeLinear (as onnxruntime runs it) and the report says why."""
    rng = np.random.default_rng(3)
    wq = rng.integers(-100, 100, size=(4, 2, 3, 3)).astype(np.int8)
    f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["w"]),
             helper.make_node("Conv", ["xd", "w"], ["c"]),
             helper.make_node("QuantizeLinear", ["c", "sy", "zy"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "sy", "zy"], ["y"])]
    inits = [numpy_helper.from_array(a, k) for k, a in
             [("sx", f32(0.05)), ("zx", np.asarray(128, np.uint8)), ("wq", wq), ("sw", f32(0.01)),
              ("zw", np.asarray(3, np.int8)), ("sy", f32(0.2)), ("zy", np.asarray(120, np.uint8))]]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    monkeypatch.delenv(ROUNDING_ENV, raising=False)
    path = tmp_path / "zw.onnx"
    onnx.save(m, str(path))
    graph, _ = prepare_graph(str(path))
    assert [n.op for n in graph.nodes] == ["quantize", "dequantize", "conv", "quantize", "dequantize"]
    (layer,) = graph.meta["quantization"]["layers"]
    assert layer["precision"] == "float" and "zero point" in layer["choice"]
    x = rng.normal(size=(1, 2, 6, 6)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(run_graph(graph, {"x": x})["y"], want, rtol=0, atol=0.2 * 1.001)


def _binary_qdq(op, dt, sa, za, sb, zb, sc, zc, b_const=None):
    """DQ(a) op DQ(b) -> Q over every (a, b) pair: a [256, 256] grid, or b a one-element constant."""
    t = TensorProto.UINT8 if dt == np.uint8 else TensorProto.INT8
    nodes = [helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["ad"]),
             helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["bd"]),
             helper.make_node(op, ["ad", "bd"], ["c"]),
             helper.make_node("QuantizeLinear", ["c", "sc", "zc"], ["y"])]
    inits = [numpy_helper.from_array(np.float32(v), k) for k, v in (("sa", sa), ("sb", sb), ("sc", sc))]
    inits += [numpy_helper.from_array(np.asarray(v, dt), k) for k, v in (("za", za), ("zb", zb), ("zc", zc))]
    ins = [helper.make_tensor_value_info("a", t, [256, 256])]
    if b_const is None:
        ins.append(helper.make_tensor_value_info("b", t, [256, 256]))
    else:
        inits.append(numpy_helper.from_array(np.asarray([b_const], dt), "b"))
    g = helper.make_graph(nodes, "g", ins, [helper.make_tensor_value_info("y", t, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("op", ["Add", "Mul"])
def test_onnxruntime_rounding_of_add_mul_is_bit_exact(op, tmp_path, monkeypatch):
    """Every pair of uint8/int8 inputs, scales chosen near ties (ratios like 0.5, 1.5, 1/3): the
    "onnxruntime" rounding reproduces QLinearAdd / QLinearMul bit for bit; "fixed" is within one."""
    rng = np.random.default_rng(5)
    for trial in range(4):
        dt = np.uint8 if trial % 2 == 0 else np.int8
        lo, hi = (0, 255) if dt == np.uint8 else (-128, 127)
        sc = np.float32(rng.uniform(0.01, 0.05))
        sa = np.float32(sc * rng.choice([0.5, 0.75, 1.5, 2.5]) * (1 + rng.normal() * 1e-7))
        sb = np.float32(sc * rng.choice([0.5, 1.0, 0.3333333]) * (1 + rng.normal() * 1e-7))
        if op == "Mul":
            sc = np.float32(sa * sb * rng.choice([16.0, 40.0, 64.5]))
        za, zb, zc = (int(rng.integers(lo, hi + 1)) for _ in range(3))
        path = tmp_path / f"{op}{trial}.onnx"
        onnx.save(_binary_qdq(op, dt, sa, za, sb, zb, sc, zc), str(path))
        a, b = np.meshgrid(np.arange(lo, hi + 1), np.arange(lo, hi + 1), indexing="ij")
        feeds = {"a": a.astype(dt), "b": b.astype(dt)}
        want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0].astype(int)
        for rounding in ("onnxruntime", "fixed"):
            monkeypatch.setenv(ROUNDING_ENV, rounding)
            graph, _ = prepare_graph(str(path))
            assert "dequantize" not in {n.op for n in graph.nodes}
            assert all(graph.values[n.outputs[0]].dtype == "int32" for n in graph.nodes if n.op == "add")
            got = run_graph(graph, feeds)["y"].astype(int)
            d = np.abs(got - want)
            if rounding == "onnxruntime":
                np.testing.assert_array_equal(got, want)
            else:
                assert d.max() <= 1, (trial, d.max())


def test_scalar_constant_add_is_a_correctly_rounded_lut(tmp_path, monkeypatch):
    """hard-swish's x + 3 as onnxruntime quantizes it: 3 = 255 * (3/255), output scale 6/255, so
    x = 0 gives exactly 127.5 (a tie). Both roundings give a qlut equal to onnxruntime on all inputs."""
    path = tmp_path / "x3.onnx"
    onnx.save(_binary_qdq("Add", np.uint8, 0.0505, 110, 3 / 255, 0, 6 / 255, 0, b_const=255), str(path))
    a = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"a": a})[0]
    for rounding in ("onnxruntime", "fixed"):
        monkeypatch.setenv(ROUNDING_ENV, rounding)
        graph, _ = prepare_graph(str(path))
        assert [n.op for n in graph.nodes] == ["qlut", "dequantize"] or [n.op for n in graph.nodes] == ["qlut"]
        np.testing.assert_array_equal(run_graph(graph, {"a": a})["y"], want)


def test_float_model_is_untouched():
    fm, _ = MODELS["conv_relu"](np.random.default_rng(11))
    from edgec.frontend.onnx_import import import_onnx
    g = import_onnx(fm)
    assert fuse_qdq(g) is g
    g2, _ = prepare_graph(fm)
    assert "quantization" not in g2.meta and {n.op for n in g2.nodes} & {"conv", "dense"}


@pytest.mark.tvm
@pytest.mark.parametrize("activation, rounding", [("uint8", "fixed"), ("int8", "onnxruntime")])
def test_compiled_residual_matches_onnxruntime(activation, rounding, tmp_path, monkeypatch):
    """edgec.compile on the QDQ file, run by the C runtime: integer kernels, same agreement."""
    monkeypatch.setenv(ROUNDING_ENV, rounding)
    fm, shapes = MODELS["residual"](np.random.default_rng(11))
    path = quantize_qdq(fm, shapes, tmp_path / "res.qdq.onnx", True, activation)
    out = edgec.compile(str(path), output_dir=tmp_path / "out")
    report = json.loads((out / "report.json").read_text())
    ops = {layer["op"] for layer in report["layers"]}
    assert not ops & FLOAT_LINEAR and "qconv" in ops and "qdense" in ops
    model = edgec.load(out)
    frac, worst = agreement(path, shapes, model.run)
    print(f"\ncompiled residual {activation} {rounding}: {frac:.2%} within one quantum of onnxruntime (max {worst:.2f})")
    assert frac >= 0.99


# -- PP-OCR direction classifier quantized by onnxruntime ----------------------------------------

PP_SHAPES = {"x": (1, 3, 48, 192)}


def _pp_image(rng):
    return (rng.integers(0, 256, PP_SHAPES["x"]).astype(np.float32) / 255 - 0.5) / 0.5


class _ImageReader(oq.CalibrationDataReader):
    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.items = iter([{"x": _pp_image(rng)} for _ in range(n)])

    def get_next(self):
        return next(self.items, None)


@pytest.fixture(scope="module")
def ppocr_qdq(repo_root, tmp_path_factory):
    """The classifier as onnxruntime's documented flow makes it: quant_pre_process (BatchNorm folded
    into the convs; its symbolic shape inference fails on this model's Concat, so it is skipped),
    opset 13 (per-axis DequantizeLinear needs it), quantize_static QDQ per channel, uint8
    activations, int8 weights, calibrated on 16 random images."""
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process
    d = tmp_path_factory.mktemp("ppocr_qdq")
    src = str(repo_root / "tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
    quant_pre_process(src, str(d / "pre.onnx"), skip_symbolic_shape=True)
    onnx.save(version_converter.convert_version(onnx.load(str(d / "pre.onnx")), 13), str(d / "pre13.onnx"))
    oq.quantize_static(str(d / "pre13.onnx"), str(d / "qdq.onnx"), _ImageReader(16, 0), quant_format=oq.QuantFormat.QDQ,
                       per_channel=True, activation_type=oq.QuantType.QUInt8, weight_type=oq.QuantType.QInt8)
    return d / "qdq.onnx"


def _pp_agreement(run, n, seed=2):
    """Over n random images: fraction of output elements (softmax probabilities, quantized with
    scale 1/255 by the model) within one quantum of onnxruntime's, max |diff| in quanta, top-1 agreement."""
    return agreement_top1(run, n, seed)


def agreement_top1(run, n, seed):
    sess = ort.InferenceSession(str(_PP["path"]), providers=["CPUExecutionProvider"])
    scale = output_scales(_PP["path"])
    (name, s), = scale.items()
    rng = np.random.default_rng(seed)
    ok = total = top1 = 0
    worst = 0.0
    for _ in range(n):
        x = _pp_image(rng)
        got, want = run({"x": x})[name], sess.run(None, {"x": x})[0]
        d = np.abs(got.astype(np.float64) - want) / s
        ok += int((d <= 1.0 + 1e-3).sum())
        total += d.size
        worst = max(worst, float(d.max()))
        top1 += int(got.argmax() == want.argmax())
    return ok / total, worst, top1


_PP: dict = {}


@pytest.mark.slow
def test_ppocr_qdq_fixed_point_rounding(ppocr_qdq, monkeypatch):
    """The default (integer-only) requantization on the PP-OCR classifier: every conv / gemm is
    qconv / qdense. edgec rounds acc * M exactly; onnxruntime rounds float32(float32(acc) * M), which
    is off by one near ties (acc 5595: exact 21.4999992, float32 21.5, rounded to 22): a handful of
    such one-quantum differences per image compound through 53 convs, so the outputs track
    onnxruntime only approximately (the figure is printed; the reference interpreter stands for
    the kernels, which are bit-exact with it: tests/backend_quant)."""
    monkeypatch.setenv(ROUNDING_ENV, "fixed")
    _PP["path"] = ppocr_qdq
    graph, _ = prepare_graph(str(ppocr_qdq), input_shapes=PP_SHAPES)
    assert not _float_linear_left(graph)
    q = graph.meta["quantization"]
    assert q["int8_nodes"] > 5 * q["float_nodes"] and q["rounding"] == "fixed"
    n = 40
    frac, worst, top1 = _pp_agreement(lambda feeds: run_graph(graph, feeds), n)
    print(f"\nPP-OCR cls QDQ per-channel, fixed-point rounding: {frac:.2%} of output elements within one quantum "
          f"of onnxruntime int8 (max {worst:.0f} quanta), top-1 agreement {top1}/{n}; "
          f"{q['int8_nodes']} int8 / {q['float_nodes']} float layers")
    assert frac >= 0.8 and top1 >= 0.9 * n


@pytest.mark.tvm
def test_ppocr_qdq_per_channel_matches_onnxruntime(ppocr_qdq, tmp_path, monkeypatch):
    """Issue 3's check: the PP-OCR classifier quantized by quantize_static (QDQ, per channel) compiles
    with every conv / gemm on integer kernels and, with onnxruntime's rounding of the requantization,
    matches onnxruntime's int8 output within one quantum on >= 99% of the elements (C runtime,
    100 random images; the artifact also reproduces the reference interpreter)."""
    monkeypatch.setenv(ROUNDING_ENV, "onnxruntime")
    _PP["path"] = ppocr_qdq
    graph, _ = prepare_graph(str(ppocr_qdq), input_shapes=PP_SHAPES)
    assert not _float_linear_left(graph)
    out = edgec.compile(str(ppocr_qdq), input_shapes=PP_SHAPES, output_dir=tmp_path / "out")
    report = json.loads((out / "report.json").read_text())
    ops = [layer["op"] for layer in report["layers"]]
    assert ops.count("qconv") == 53 and "qdense" in ops and not set(ops) & FLOAT_LINEAR
    model = edgec.load(out)
    name = graph.outputs[0]
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = _pp_image(rng)
        np.testing.assert_allclose(model.run({"x": x})[name], run_graph(graph, {"x": x})[name], rtol=0, atol=1e-6)
    n = 100
    frac, worst, top1 = _pp_agreement(model.run, n)
    print(f"\nPP-OCR cls QDQ per-channel, onnxruntime rounding, C runtime: {frac:.2%} of output elements within "
          f"one quantum of onnxruntime int8 (max {worst:.0f} quanta), top-1 agreement {top1}/{n}")
    assert frac >= 0.99
