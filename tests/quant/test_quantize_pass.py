"""The int8 quantization pass alone (edgec/passes/quantize_int8.py): small graphs built directly,
calibrated with edgec.quant.calibrate, quantized, then checked for IR validity, structure
(op counts and dtypes per node, like onnxruntime's check_op_type_count / check_qtype_by_node_type),
agreement with the float graph through the reference interpreter, the uint8 == int8 activation
equivalence, fallbacks, and accuracy on real data (the SMS spam MLP)."""
from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgec.errors import EdgecError
from edgec.ir.verify import verify
from edgec.passes.quantize_int8 import QUANT_RULES, QuantizeOptions, quantize_int8
from edgec.quant import CalibrationOptions, calibrate
from edgec.reference import run_graph
from tests.passes._graphs import builder, finish
from tests.shared_data import shared_data

DATA = shared_data("textcls", "sms_spam")


def op_counts(g) -> Counter:
    return Counter(n.op for n in g.nodes)


def node_dtypes(g, op) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    return [(tuple(g.values[i].dtype for i in n.inputs if i), tuple(g.values[o].dtype for o in n.outputs))
            for n in g.nodes if n.op == op]


def _const(b, rng, shape, scale=0.3):
    return b.add_const((rng.normal(size=shape) * scale).astype(np.float32), "w")


def cnn_graph():
    """conv-relu, max_pool, conv-clip(0,6), add, mul, concat, tanh, global_avg_pool, reshape,
    dense, softmax (no rule: float) and sigmoid (lookup table)."""
    rng = np.random.default_rng(0)
    b = builder({"x": ("float32", (1, 3, 8, 8))})
    geo = {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1}
    (c1,) = b.emit("conv", ["x", _const(b, rng, (8, 3, 3, 3)), _const(b, rng, (8,), 0.1)], geo, name="conv1")
    (r1,) = b.emit("relu", [c1], name="relu1")
    (p,) = b.emit("max_pool", [r1], {"kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0), "dilations": (1, 1)},
                  name="pool")
    (c2,) = b.emit("conv", [p, _const(b, rng, (8, 8, 3, 3), 0.15), _const(b, rng, (8,), 0.1)], geo, name="conv2")
    (k2,) = b.emit("clip", [c2], {"min": 0.0, "max": 6.0}, name="clip2")
    (a,) = b.emit("add", [k2, p], name="add")
    (m,) = b.emit("mul", [a, p], name="mul")
    (cat,) = b.emit("concat", [a, m], {"axis": 1}, name="cat")
    (t,) = b.emit("tanh", [cat], name="tanh")
    (gp,) = b.emit("global_avg_pool", [t], name="gap")
    (f,) = b.emit("reshape", [gp], {"shape": (1, 16)}, name="flat")
    (d,) = b.emit("dense", [f, _const(b, rng, (5, 16), 0.5), _const(b, rng, (5,), 0.1)], name="fc")
    (sm,) = b.emit("softmax", [d], {"axis": 1}, name="probs")
    (sg,) = b.emit("sigmoid", [d], name="sig")
    return finish(b, ["x"], [sm, sg], "cnn")


def seq_graph():
    """gather (int8 embedding table), transpose, activation x activation matmul, reshape,
    matmul with a constant (-> qdense), relu, avg_pool (no rule: float) and a conv after it."""
    rng = np.random.default_rng(1)
    b = builder({"ids": ("int64", (1, 4)), "x": ("float32", (1, 2, 4, 4))})
    (e,) = b.emit("gather", [_const(b, rng, (10, 6), 1.0), "ids"], {"axis": 0}, name="embed")
    (et,) = b.emit("transpose", [e], {"perm": (0, 2, 1)}, name="tr")
    (s,) = b.emit("matmul", [e, et], name="scores")
    (s2,) = b.emit("reshape", [s], {"shape": (4, 4)}, name="r2")
    (y,) = b.emit("matmul", [s2, _const(b, rng, (4, 3), 0.5)], name="proj")
    (yr,) = b.emit("relu", [y], name="proj_relu")
    (xr,) = b.emit("relu", ["x"], name="xrelu")
    (ap,) = b.emit("avg_pool", [xr], {"kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0), "dilations": (1, 1),
                                      "count_include_pad": 0}, name="avg")
    geo = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": 1}
    (c,) = b.emit("conv", [ap, _const(b, rng, (3, 2, 1, 1)), ""], geo, name="pw")
    return finish(b, ["ids", "x"], [yr, c], "seq")


def _feeds(g, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        f = {}
        for name in g.inputs:
            v = g.values[name]
            f[name] = (rng.integers(0, 10, size=v.shape).astype(np.int64) if v.dtype == "int64"
                       else rng.normal(size=v.shape).astype(np.float32))
        out.append(f)
    return out


def _calibrated(g, method="minmax"):
    return calibrate(g, _feeds(g, 24, 0), CalibrationOptions(method=method, quiet=True))


def _out_scale(qg, name):
    prod = {o: n for n in qg.nodes for o in n.outputs}[name]
    if prod.op == "dequantize":
        return prod.attrs["scale"]
    return None


@pytest.fixture(scope="module")
def cnn():
    g = cnn_graph()
    return g, _calibrated(g)


def test_cnn_structure(cnn):
    g, ranges = cnn
    qg = quantize_int8(g, ranges, QuantizeOptions())
    verify(qg)
    c = op_counts(qg)
    assert c["qconv"] == 2 and c["qdense"] == 1 and c["qadd"] == 1 and c["qmul"] == 1
    assert c["relu"] == 0 and c["conv"] == 0 and c["dense"] == 0 and c["add"] == 0 and c["mul"] == 0
    assert c["clip"] == 0  # relu and clip(0, 6) are fused into the convs' clamps
    assert c["qlut"] == 2  # tanh and sigmoid
    assert c["quantize"] == 1 and c["softmax"] == 1 and c["dequantize"] == 2
    assert c["max_pool"] == 1 and c["concat"] == 1 and c["reshape"] == 1 and c["requantize"] >= 2  # gap + concat
    assert node_dtypes(qg, "qconv") == [(("uint8", "int8", "int32"), ("uint8",))] * 2
    assert node_dtypes(qg, "max_pool") == [(("uint8",), ("uint8",))]
    assert node_dtypes(qg, "softmax") == [(("float32",), ("float32",))]
    assert node_dtypes(qg, "qdense") == [(("uint8", "int8", "int32"), ("uint8",))]
    # the fused ReLU is the clamp at the output zero point; clip(0, 6) clamps at the integer for 6
    convs = [n for n in qg.nodes if n.op == "qconv"]
    assert convs[0].attrs["qmin"] == convs[0].attrs["out_zero_point"]
    s2, z2 = qg.values[convs[1].outputs[0]].qparams.scale[0], convs[1].attrs["out_zero_point"]
    assert convs[1].attrs["qmax"] == min(255, z2 + round(6.0 / s2))
    # interface unchanged; every integer activation carries qparams; weights per channel
    assert qg.inputs == g.inputs and qg.outputs == g.outputs
    assert all(qg.values[o].dtype == "float32" for o in qg.outputs)
    for n in qg.nodes:
        for o in n.outputs:
            if qg.values[o].dtype in ("uint8", "int8"):
                assert qg.values[o].qparams is not None, o
    w = qg.values[convs[0].inputs[1]]
    assert w.qparams.axis == 0 and len(w.qparams.scale) == 8 and set(w.qparams.zero_point) == {0}
    assert np.abs(w.const).max() <= 127
    meta = qg.meta["quantization"]
    layers = {entry["node"]: entry for entry in meta["layers"]}
    assert layers["probs"]["precision"] == "float" and "no int8 rule" in layers["probs"]["choice"]
    assert layers["relu1"]["choice"] == "fused into conv1" and layers["conv1"]["precision"] == "int8"
    assert meta["values"]["relu1_q"]["dtype"] == "uint8" and meta["float_nodes"] == 1
    assert g.nodes[0].op == "conv"  # the input graph is untouched


def test_cnn_matches_float(cnn):
    g, ranges = cnn
    qg = quantize_int8(g, ranges, QuantizeOptions())
    for feeds in _feeds(g, 6, 99):
        ref = run_graph(g, feeds)
        got = run_graph(qg, feeds)
        for name in g.outputs:
            assert got[name].dtype == np.float32
            err = np.abs(got[name] - ref[name]).max()
            assert err < 0.06, (name, err)   # outputs in [0, 1]: a few 1/255 quanta through 12 layers
        assert np.array_equal(np.argmax(got["probs"], 1), np.argmax(ref["probs"], 1))


def test_uint8_and_int8_activations_give_the_same_real_outputs(cnn):
    g, ranges = cnn
    qu = quantize_int8(g, ranges, QuantizeOptions(activation_dtype="uint8"))
    qs = quantize_int8(g, ranges, QuantizeOptions(activation_dtype="int8"))
    verify(qs)
    assert node_dtypes(qs, "qconv") == [(("int8", "int8", "int32"), ("int8",))] * 2
    envs_u = run_graph(qu, _feeds(g, 1, 5)[0], keep_all=True)
    envs_s = run_graph(qs, _feeds(g, 1, 5)[0], keep_all=True)
    for name in g.outputs:
        np.testing.assert_array_equal(envs_u[name], envs_s[name])
    np.testing.assert_array_equal(envs_u["relu1_q"].astype(np.int64) - 128, envs_s["relu1_q"])


def test_per_tensor_weights_and_fallbacks(cnn):
    g, ranges = cnn
    qg = quantize_int8(g, ranges, QuantizeOptions(per_channel=False, fallback_ops={"add"}, fallback_nodes={"tanh"}))
    verify(qg)
    c = op_counts(qg)
    assert c["add"] == 1 and c["qadd"] == 0 and c["tanh"] == 1 and c["qlut"] == 1
    w = qg.values[next(n for n in qg.nodes if n.op == "qconv").inputs[1]]
    assert len(set(w.qparams.scale)) == 1
    layers = {entry["node"]: entry for entry in qg.meta["quantization"]["layers"]}
    assert layers["add"]["choice"] == "float (fallback requested)"
    assert node_dtypes(qg, "add") == [(("float32", "float32"), ("float32",))]
    for feeds in _feeds(g, 3, 7):
        ref, got = run_graph(g, feeds), run_graph(qg, feeds)
        assert np.abs(got["sig"] - ref["sig"]).max() < 0.08


def test_missing_range_leaves_the_node_float(cnn):
    g, ranges = cnn
    partial = {k: v for k, v in ranges.items() if k != "fc"}
    qg = quantize_int8(g, partial, QuantizeOptions())
    verify(qg)
    assert op_counts(qg)["dense"] == 1 and op_counts(qg)["qdense"] == 0
    layers = {entry["node"]: entry for entry in qg.meta["quantization"]["layers"]}
    assert "no calibrated range for 'fc'" in layers["fc"]["choice"]
    feeds = _feeds(g, 1, 3)[0]
    assert np.abs(run_graph(qg, feeds)["sig"] - run_graph(g, feeds)["sig"]).max() < 0.06


def test_seq_graph_gather_matmul_and_float_island():
    g = seq_graph()
    ranges = _calibrated(g)
    qg = quantize_int8(g, ranges, QuantizeOptions())
    verify(qg)
    c = op_counts(qg)
    assert c["gather"] == 1 and c["qmatmul"] == 1 and c["qdense"] == 1 and c["matmul"] == 0
    assert c["transpose"] == 1 and c["avg_pool"] == 1 and c["qconv"] == 1
    assert node_dtypes(qg, "gather") == [(("uint8", "int64"), ("uint8",))]
    assert node_dtypes(qg, "qmatmul") == [(("uint8", "uint8"), ("uint8",))]
    assert node_dtypes(qg, "avg_pool") == [(("float32",), ("float32",))]
    # the float island: dequantize into avg_pool, quantize out of it
    prod = {o: n for n in qg.nodes for o in n.outputs}
    avg = next(n for n in qg.nodes if n.op == "avg_pool")
    assert prod[avg.inputs[0]].op == "dequantize"
    assert prod[next(n for n in qg.nodes if n.op == "qconv").inputs[0]].op == "quantize"
    for feeds in _feeds(g, 24, 0)[:4]:  # calibration samples: nothing saturates, only rounding remains
        ref, got = run_graph(g, feeds), run_graph(qg, feeds)
        for name in g.outputs:
            scale = _out_scale(qg, name)
            assert np.abs(got[name] - ref[name]).max() <= 6 * scale, name


@pytest.mark.parametrize("op, attrs", [("sigmoid", {}), ("tanh", {}), ("hard_swish", {}),
                                       ("hard_sigmoid", {"alpha": 0.2, "beta": 0.5}), ("leaky_relu", {"alpha": 0.1})])
def test_lookup_table_ops(op, attrs):
    b = builder({"x": ("float32", (4, 64))})
    (y,) = b.emit(op, ["x"], attrs, name="f")
    g = finish(b, ["x"], [y])
    feeds = [{"x": (np.random.default_rng(s).normal(size=(4, 64)) * 3).astype(np.float32)} for s in range(4)]
    ranges = calibrate(g, feeds, CalibrationOptions(quiet=True))
    qg = quantize_int8(g, ranges, QuantizeOptions())
    verify(qg)
    assert [n.op for n in qg.nodes] == ["quantize", "qlut", "dequantize"]
    s_in = qg.nodes[0].attrs["scale"]
    s_out = qg.nodes[2].attrs["scale"]
    for f in feeds:
        err = np.abs(run_graph(qg, f)[y] - run_graph(g, f)[y]).max()
        # half an input quantum through a slope <= 1.2, plus half an output quantum
        assert err <= 0.6 * s_in * 1.2 + 0.5 * s_out + 1e-6, err


def test_accumulator_overflow_guard_keeps_the_layer_float():
    rng = np.random.default_rng(3)
    k = 70_000  # non-negative inputs (zero point 0): 70000 * 255 * 127 > 2^31, an int32 sum could overflow
    b = builder({"x": ("float32", (1, k))})
    (y,) = b.emit("dense", ["x", b.add_const(rng.normal(size=(2, k)).astype(np.float32), "w"), ""], name="fc")
    g = finish(b, ["x"], [y])
    ranges = calibrate(g, [{"x": np.abs(rng.normal(size=(1, k))).astype(np.float32)}], CalibrationOptions(quiet=True))
    qg = quantize_int8(g, ranges, QuantizeOptions())
    assert [n.op for n in qg.nodes] == ["dense"]
    assert "overflow" in qg.meta["quantization"]["layers"][0]["choice"]
    ranges["x"] = (-1.0, 1.0)  # zero point 128: |q - z| <= 128 and 70000 * 128 * 127 < 2^31 fits
    assert [n.op for n in quantize_int8(g, ranges, QuantizeOptions()).nodes] == ["quantize", "qdense", "dequantize"]


def test_bad_options():
    with pytest.raises(EdgecError, match="activation_dtype"):
        QuantizeOptions(activation_dtype="int16")
    with pytest.raises(EdgecError, match="unknown op"):
        QuantizeOptions(fallback_ops={"Conv"})
    assert {"conv", "dense", "matmul", "add", "mul", "relu", "clip", "max_pool", "global_avg_pool", "reshape",
            "transpose", "concat", "sigmoid", "hard_swish", "hard_sigmoid", "tanh", "gather"} <= set(QUANT_RULES)


# -- real data ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sms(repo_root):
    if not (DATA / "train.tsv").is_file():
        pytest.fail(f"{DATA} is not available (set EDGEC_SHARED_DIR to the shared folder)", pytrace=False)
    from edgec.frontend.onnx_import import import_onnx
    from edgec.passes import run_pipeline
    spec = importlib.util.spec_from_file_location("make_example_model", repo_root / "tools/make_example_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    feat = lambda texts: np.stack([mod.featurize(t) for t in texts]).astype(np.float32)  # noqa: E731
    tr, _ = mod.read_tsv(DATA / "train.tsv")
    te, yte = mod.read_tsv(DATA / "test.tsv")
    batch = 64
    g = run_pipeline(import_onnx(repo_root / "tests/data/models/sms_spam_mlp.onnx",
                                 input_shapes={"features": (batch, 1024)}))
    xtr = feat(tr)
    xtr = xtr[: len(xtr) // batch * batch].reshape(-1, batch, 1024)
    xte, yte = feat(te), np.asarray(yte)
    acc_f = float(np.mean(_predict(g, xte, batch) == yte))
    return g, xtr, xte, yte, batch, acc_f


def _predict(g, x, batch):
    out = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        k = len(xb)
        xb = np.concatenate([xb, np.zeros((batch - k, xb.shape[1]), np.float32)]) if k < batch else xb
        out.append(run_graph(g, {"features": xb})["probs"][:k])
    return np.concatenate(out).argmax(1)


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_sms_spam_accuracy(sms, method):
    g, xtr, xte, yte, batch, acc_f = sms
    ranges = calibrate(g, [{"features": x} for x in xtr], CalibrationOptions(method=method, quiet=True))
    qg = quantize_int8(g, ranges, QuantizeOptions())
    verify(qg)
    assert op_counts(qg)["qdense"] == 2 and op_counts(qg)["dense"] == 0
    acc_q = float(np.mean(_predict(qg, xte, batch) == yte))
    print(f"sms spam {method}: fp32 {100 * acc_f:.2f}% int8 {100 * acc_q:.2f}% on {len(yte)} test messages")
    assert acc_f > 0.95
    assert acc_f - acc_q <= 0.01
