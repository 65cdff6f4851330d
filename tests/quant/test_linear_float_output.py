"""The quantization pass on transformer-shaped linear layers (edgec/passes/quantize_int8.py):

- a MatMul of a rank-3 activation with a constant [K, N] weight becomes a per-channel ``qdense``
  on the [rows, K] view (reshapes on bytes), with the following constant bias add fused into its
  int32 bias (and a ReLU after it fused into the clamp);
- a linear layer whose result only feeds float ops (a bias add into a residual add into a
  LayerNorm, a softmax, a graph output) becomes ``qdense_dequant``: the int32 accumulator times
  ``s_x * s_w[c]`` in float32, no 8-bit rounding of its output (BERT's FFN down-projection, whose
  outlier channels no per-tensor 8-bit scale holds); the bias add then stays float;
- the empirical bias correction compares a fused layer with the float value its accumulator
  stands for (the bias add's output), channels last;
- QDQ export: MatMulInteger + int32 bias + per-axis DequantizeLinear, run by onnxruntime.
Reference interpreter only (the kernels: tests/backend_quant/test_qdense_dequant_kernel.py)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edgec.ir.verify import verify
from edgec.passes.quantize_int8 import QuantizeOptions, quantize_int8
from edgec.quant import CalibrationOptions, calibrate
from edgec.reference import run_graph
from tests.passes._graphs import builder, finish

S, D, F = 6, 16, 32


def block_graph(outlier: float = 40.0, rank: int = 3):
    """x[1, S, D] (or [S, D] with ``rank=2``) -> layer_norm -> (matmul W1 + b1 -> relu) -> matmul W2 + b2 -> + residual ->
    layer_norm; W2 gives channel 3 of the down-projection an outlier range (~``outlier`` x)."""
    rng = np.random.default_rng(5)
    shape = (1, S, D) if rank == 3 else (S, D)
    b = builder({"x": ("float32", shape)})
    g1 = b.add_const(np.ones(D, np.float32), "g1")
    be1 = b.add_const(np.zeros(D, np.float32), "be1")
    (h,) = b.emit("layer_norm", ["x", g1, be1], {"axis": rank - 1, "epsilon": 1e-5}, name="ln1")
    w1 = (rng.normal(size=(D, F)) * 0.3).astype(np.float32)
    (m1,) = b.emit("matmul", [h, b.add_const(w1, "w1")], name="up")
    (a1,) = b.emit("add", [b.add_const((rng.normal(size=F) * 0.1).astype(np.float32), "b1"), m1], name="up_bias")
    (r1,) = b.emit("relu", [a1], name="act")
    w2 = (rng.normal(size=(F, D)) * 0.2).astype(np.float32)
    w2[:, 3] *= outlier
    (m2,) = b.emit("matmul", [r1, b.add_const(w2, "w2")], name="down")
    (a2,) = b.emit("add", [b.add_const((rng.normal(size=D) * 0.1).astype(np.float32), "b2"), m2], name="down_bias")
    (res,) = b.emit("add", [h, a2], name="residual")
    g2 = b.add_const(np.ones(D, np.float32), "g2")
    be2 = b.add_const(np.zeros(D, np.float32), "be2")
    (y,) = b.emit("layer_norm", [res, g2, be2], {"axis": rank - 1, "epsilon": 1e-5}, name="ln2")
    return finish(b, ["x"], [y], "block")


def feeds(n, seed, rank=3):
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(size=(1, S, D)[3 - rank:]).astype(np.float32)} for _ in range(n)]


@pytest.fixture(scope="module")
def block():
    g = block_graph()
    return g, calibrate(g, feeds(24, 0), CalibrationOptions(method="minmax", quiet=True))


def test_structure(block):
    g, ranges = block
    qg = quantize_int8(g, ranges, QuantizeOptions())
    verify(qg)
    c = Counter(n.op for n in qg.nodes)
    assert c["qdense"] == 1 and c["qdense_dequant"] == 1 and c["matmul"] == 0 and c["qmatmul"] == 0
    assert c["relu"] == 0 and c["qadd"] == 0
    layers = {la["node"]: la for la in qg.meta["quantization"]["layers"]}
    assert layers["up"]["choice"] == "qdense"
    assert layers["up_bias"]["choice"] == "fused into up" and layers["act"]["choice"] == "fused into up"
    assert layers["down"]["choice"] == "qdense_dequant"
    # the down-projection's bias add and the residual add stay float (they only feed float ops)
    assert layers["down_bias"]["precision"] == "float" and layers["residual"]["precision"] == "float"
    up = next(n for n in qg.nodes if n.op == "qdense")
    down = next(n for n in qg.nodes if n.op == "qdense_dequant")
    # rank 3 -> [rows, K] views; per-channel weights; relu = the clamp at the output zero point
    assert qg.values[up.inputs[0]].shape == (S, D) and qg.values[down.inputs[0]].shape == (S, F)
    assert qg.values[up.outputs[0]].dtype == "uint8" and qg.values[down.outputs[0]].dtype == "float32"
    assert len(set(qg.values[up.inputs[1]].qparams.scale)) == F
    assert up.attrs["qmin"] == up.attrs["out_zero_point"]
    # qdense_dequant's scale is s_x * s_w[c] (float32 product), per channel
    s_x = qg.values[down.inputs[0]].qparams.scale[0]
    s_w = np.asarray(qg.values[down.inputs[1]].qparams.scale, np.float32)
    np.testing.assert_array_equal(np.asarray(down.attrs["scale"], np.float32), np.float32(s_x) * s_w)
    # the fused bias of "up": b1 quantized with s_x * s_w, minus the zero-point fold
    b1 = g.values["b1"].const
    xs, xz = qg.values[up.inputs[0]].qparams.scale[0], up.attrs["x_zero_point"]
    sw = np.asarray(qg.values[up.inputs[1]].qparams.scale, np.float32)
    wsum = qg.values[up.inputs[1]].const.astype(np.int64).sum(1)
    bq = qg.values[up.inputs[2]].const.astype(np.int64) + xz * wsum
    np.testing.assert_array_equal(bq, np.rint(b1 / (np.float32(xs) * sw)).astype(np.int64))


def test_float_output_keeps_outlier_channels(block):
    """The down-projection's float output: its error is the input/weight rounding only; with an
    8-bit output (the old rule) the ordinary channels are lost under the outlier channel's scale."""
    g, ranges = block
    qg = quantize_int8(g, ranges, QuantizeOptions())
    down = next(n for n in qg.nodes if n.op == "qdense_dequant")
    test = feeds(8, 3)
    errs, errs8 = [], []
    lo, hi = ranges["down"]
    step8 = (max(hi, 0) - min(lo, 0)) / 255
    for f in test:
        fe, qe = run_graph(g, f, keep_all=True), run_graph(qg, f, keep_all=True)
        want = fe["down"].reshape(S, D)
        got = qe[down.outputs[0]]
        small = [c for c in range(D) if c != 3]
        errs.append(np.abs(got[:, small] - want[:, small]).max())
        errs8.append(step8 / 2)
    assert max(errs) < 0.25 * min(errs8), (max(errs), min(errs8))
    # whole block: close to float (relative RMS error, the 8-bit input of "down" included)
    for f in test:
        a, b = run_graph(qg, f)[g.outputs[0]], run_graph(g, f)[g.outputs[0]]
        assert np.linalg.norm(a - b) < 0.06 * np.linalg.norm(b)


def test_graph_output_and_consumers_decide():
    """A dense feeding an int8 op (sigmoid: a lookup table) keeps its 8-bit output; one feeding only
    a graph output or a softmax gets the float output; a relu after it keeps qdense."""
    rng = np.random.default_rng(2)
    b = builder({"x": ("float32", (4, 8))})
    w = b.add_const((rng.normal(size=(5, 8)) * 0.4).astype(np.float32), "w")
    bias = b.add_const((rng.normal(size=5) * 0.1).astype(np.float32), "bias")
    (d1,) = b.emit("dense", ["x", w, bias], name="to_sigmoid")
    (s1,) = b.emit("sigmoid", [d1], name="sig")
    (d2,) = b.emit("dense", ["x", w, bias], name="to_softmax")
    (s2,) = b.emit("softmax", [d2], {"axis": 1}, name="sm")
    (d3,) = b.emit("dense", ["x", w, bias], name="to_output")
    (d4,) = b.emit("dense", ["x", w, bias], name="to_relu")
    (r4,) = b.emit("relu", [d4], name="relu")
    g = finish(b, ["x"], [s1, s2, d3, r4], "heads")
    fs = [{"x": rng.normal(size=(4, 8)).astype(np.float32)} for _ in range(16)]
    ranges = calibrate(g, fs, CalibrationOptions(quiet=True))
    qg = quantize_int8(g, ranges, QuantizeOptions())
    verify(qg)
    choice = {la["node"]: la["choice"] for la in qg.meta["quantization"]["layers"]}
    assert choice["to_sigmoid"] == "qdense" and choice["to_relu"] == "qdense"
    assert choice["to_softmax"] == "qdense_dequant" and choice["to_output"] == "qdense_dequant"
    for f in fs[:4]:
        want, got = run_graph(g, f), run_graph(qg, f)
        for o in g.outputs:
            np.testing.assert_allclose(got[o], want[o], atol=0.08)


def test_bias_correction_uses_the_fused_value():
    """With the bias add fused, the accumulator stands for the bias add's output: after the
    correction the mean accumulator per channel matches it within half a unit (not the bias-free
    matmul output, which a correction would subtract the bias to match). On [rows, features]
    (rank 2); layers over the positions of a sequence (rank 3) are left out of the correction
    (padded positions would dominate its means)."""
    from edgec.passes.quantize_int8 import _int_accumulator
    g3 = block_graph()
    cal3 = feeds(8, 1)
    r3 = calibrate(g3, cal3, CalibrationOptions(method="minmax", quiet=True))
    q3 = quantize_int8(g3, r3, QuantizeOptions(), calib_feeds=iter(cal3))
    assert q3.meta["quantization"]["bias_correction"]["layers"] == 0
    assert sorted(q3.meta["quantization"]["no_bias_correction"]) == ["down", "up"]
    g = block_graph(rank=2)
    cal = feeds(16, 1, rank=2)
    ranges = calibrate(g, cal, CalibrationOptions(method="minmax", quiet=True))
    plain = quantize_int8(g, ranges, QuantizeOptions())
    qg = quantize_int8(g, ranges, QuantizeOptions(), calib_feeds=iter(cal))
    assert qg.meta["quantization"]["bias_correction"]["layers"] == 2
    assert qg.meta["quantization"]["accumulators"] == {"up": "up_bias", "down": "down"}
    assert qg.meta["quantization"]["no_bias_correction"] == []
    fenvs = [run_graph(g, f, keep_all=True) for f in cal]
    qenvs = [run_graph(qg, f, keep_all=True) for f in cal]
    for node in qg.nodes:
        if node.op not in ("qdense", "qdense_dequant"):
            continue
        x, w, bname = node.inputs[:3]
        assert not np.array_equal(qg.values[bname].const, plain.values[bname].const)
        s_x = qg.values[x].qparams.scale[0]
        s_w = np.asarray(qg.values[w].qparams.scale, np.float64)
        acc = np.concatenate([_int_accumulator(node, e[x], qg.values[w].const, qg.values[bname].const) for e in qenvs])
        fv = qg.meta["quantization"]["accumulators"][node.name]
        y = np.concatenate([e[fv].reshape(-1, e[fv].shape[-1]) for e in fenvs]).astype(np.float64)
        diff = acc.mean(0) - y.mean(0) / (s_x * s_w)
        assert np.all(np.abs(diff) <= 0.5 + 1e-6), (node.name, diff)


def test_uint8_and_int8_activations_agree(block):
    g, ranges = block
    q8 = quantize_int8(g, ranges, QuantizeOptions(activation_dtype="uint8"))
    s8 = quantize_int8(g, ranges, QuantizeOptions(activation_dtype="int8"))
    for f in feeds(4, 9):
        np.testing.assert_array_equal(run_graph(q8, f)[g.outputs[0]], run_graph(s8, f)[g.outputs[0]])


def test_qdq_export_runs_in_onnxruntime(block, tmp_path):
    """MatMulInteger + int32 Add + per-axis DequantizeLinear for qdense_dequant: onnxruntime (both
    optimization levels) gives edgec's float output to float32 rounding; the layer alone, fed
    edgec's input, is bit-exact (the same integer sum, one float32 product)."""
    import onnx
    import onnxruntime as ort
    from edgec.frontend.qdq_export import export_qdq, to_qdq_model
    from edgec.ir.graph import Graph
    g, ranges = block
    qg = quantize_int8(g, ranges, QuantizeOptions())
    path = tmp_path / "block.onnx"
    proto = export_qdq(qg, path)
    onnx.checker.check_model(onnx.load(str(path)))
    ops = [n.op_type for n in proto.graph.node]
    assert "MatMulInteger" in ops and "Gemm" in ops and "LayerNormalization" in ops
    down = next(n for n in qg.nodes if n.op == "qdense_dequant")
    vals = {k: qg.values[k] for k in list(down.inputs) + list(down.outputs)}
    single = to_qdq_model(Graph([down], vals, [down.inputs[0]], list(down.outputs), "one", dict(qg.meta)))
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        one = ort.InferenceSession(single.SerializeToString(), so, providers=["CPUExecutionProvider"])
        for f in feeds(4, 11):
            want = run_graph(qg, f, keep_all=True)
            np.testing.assert_allclose(sess.run(None, f)[0], want[g.outputs[0]], rtol=0, atol=2e-5)
            (got,) = one.run(None, {down.inputs[0]: want[down.inputs[0]]})
            if level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL:
                np.testing.assert_array_equal(got, want[down.outputs[0]])
            else:   # onnxruntime may fuse it (MatMulIntegerToFloat): float32 rounding only
                np.testing.assert_allclose(got, want[down.outputs[0]], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("x,w,attrs,match", [
    (("uint8", (4, 8)), ("int8", (3, 9)), {"x_zero_point": 0, "scale": 0.1}, "must be"),
    (("float32", (4, 8)), ("int8", (3, 8)), {"x_zero_point": 0, "scale": 0.1}, "input must be"),
    (("uint8", (4, 8)), ("int8", (3, 8)), {"x_zero_point": 300, "scale": 0.1}, "x_zero_point"),
    (("uint8", (4, 8)), ("int8", (3, 8)), {"x_zero_point": 0, "scale": (0.1, 0.2)}, "per-channel"),
    (("uint8", (4, 8)), ("int8", (3, 8)), {"x_zero_point": 0, "scale": (0.1, 0.0, 0.2)}, "positive"),
    (("int8", (4, 8)), ("uint8", (3, 8)), {"x_zero_point": 0, "scale": 0.1}, "weight"),
])
def test_qdense_dequant_rejects(x, w, attrs, match):
    from edgec.ir.graph import Value
    from edgec.ir.ops import get
    op = get("qdense_dequant")
    ins = [Value("x", *x), Value("w", *w)]
    with pytest.raises(ValueError, match=match):
        op.infer(ins, op.normalize_attrs(attrs))


def test_qdense_dequant_op():
    from edgec.ir.graph import Value
    from edgec.ir.ops import get
    op = get("qdense_dequant")
    assert op.group == "quant" and op.doc and op.macs is not None
    attrs = op.normalize_attrs({"x_zero_point": 3, "scale": (0.5, 0.25)})
    [(dt, shape)] = op.infer([Value("x", "uint8", (4, 3)), Value("w", "int8", (2, 3)), Value("b", "int32", (2,))],
                             attrs)
    assert (dt, tuple(shape)) == ("float32", (4, 2))
    x = np.array([[1, 2, 3]], np.uint8)
    w = np.array([[1, -1, 2], [3, 0, -4]], np.int8)
    (y,) = op.reference(x, w, np.array([10, -3], np.int32), **attrs)
    np.testing.assert_array_equal(y, np.array([[(1 - 2 + 6 + 10) * 0.5, (3 - 12 - 3) * 0.25]], np.float32))
