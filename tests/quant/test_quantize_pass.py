"""The int8 quantization pass alone (edgec/passes/quantize_int8.py): small graphs built directly,
calibrated with edgec.quant.calibrate, quantized, then checked for IR validity, structure
(op counts and dtypes per node, like onnxruntime's check_op_type_count / check_qtype_by_node_type),
agreement with the float graph through the reference interpreter, the uint8 == int8 activation
equivalence, fallbacks, and accuracy on real data (the SMS spam MLP)."""
from __future__ import annotations

import importlib.util
from collections import Counter

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
    matmul with a constant (-> qdense), relu, avg_pool (-> a depthwise qconv), softmax (no rule:
    a float island) and a conv after it."""
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
    (sm,) = b.emit("softmax", [ap], {"axis": 1}, name="sm")
    geo = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": 1}
    (c,) = b.emit("conv", [sm, _const(b, rng, (3, 2, 1, 1)), ""], geo, name="pw")
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
    assert c["max_pool"] == 1 and c["concat"] == 1 and c["reshape"] == 1
    assert c["requantize"] >= 1 and c["qglobal_avg_pool"] == 1     # concat, global average pool
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
    assert c["transpose"] == 1 and c["avg_pool"] == 0 and c["qconv"] == 2 and c["softmax"] == 1
    assert node_dtypes(qg, "gather") == [(("uint8", "int64"), ("uint8",))]
    assert node_dtypes(qg, "qmatmul") == [(("uint8", "uint8"), ("uint8",))]
    assert node_dtypes(qg, "softmax") == [(("float32",), ("float32",))]
    # the float island: dequantize into softmax, quantize out of it
    prod = {o: n for n in qg.nodes for o in n.outputs}
    sm = next(n for n in qg.nodes if n.op == "softmax")
    assert prod[sm.inputs[0]].op == "dequantize" and prod[prod[sm.inputs[0]].inputs[0]].name == "avg"
    assert prod[next(n for n in qg.nodes if n.name == "pw").inputs[0]].op == "quantize"
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
    # its result is the graph output: the float accumulator output (qdense_dequant), no 8-bit rounding
    assert [n.op for n in quantize_int8(g, ranges, QuantizeOptions()).nodes] == ["quantize", "qdense_dequant"]


def test_bad_options():
    with pytest.raises(EdgecError, match="activation_dtype"):
        QuantizeOptions(activation_dtype="int16")
    with pytest.raises(EdgecError, match="unknown op"):
        QuantizeOptions(fallback_ops={"Conv"})
    assert {"conv", "dense", "matmul", "add", "mul", "relu", "clip", "max_pool", "global_avg_pool", "reshape",
            "transpose", "concat", "sigmoid", "hard_swish", "hard_sigmoid", "tanh", "gather", "avg_pool",
            "div"} <= set(QUANT_RULES)
    assert "softmax" not in QUANT_RULES   # softmax stays float (docs/quantization.md)


# -- avg_pool, division by a constant, elementwise chains, attention ------------------------------

def _single_op_graph(op, attrs, shape, extra_inputs=()):
    b = builder({"x": ("float32", shape)})
    (xr,) = b.emit("relu", ["x"], name="xr")   # a calibrated integer input (relu: zero point at its floor)
    (y,) = b.emit(op, [xr, *extra_inputs(b)] if callable(extra_inputs) else [xr], attrs, name="op")
    return finish(b, ["x"], [y]), y


@pytest.mark.parametrize("pads, strides, kernel, include", [
    ((0, 0, 0, 0), (2, 2), (2, 2), 0),        # no window touches the padding: one divisor
    ((1, 1, 1, 1), (2, 2), (3, 3), 1),        # count_include_pad: one divisor (9)
    ((1, 1, 1, 1), (2, 2), (3, 3), 0),        # border windows divide by 4 or 6: mul by 36/count, requantize
    ((1, 0, 2, 1), (1, 1), (3, 2), 0),        # asymmetric pads, rectangular kernel
])
def test_avg_pool_integer_form(pads, strides, kernel, include):
    """avg_pool becomes a depthwise qconv with unit weights (plus a mul by the constant lcm/count
    table and a requantize when divisors differ). The integer output is the correctly rounded
    s_in * sum(q - z_in) / (count * s_out) (one rounding, ties away from zero), and the real
    output is within half an input quantum plus half an output quantum of fp32."""
    from edgec.ops.nn import _avg_counts
    from edgec.ops._nn_util import window_out_shape
    shape = (1, 3, 7, 9)
    attrs = {"kernel": kernel, "strides": strides, "pads": pads, "dilations": (1, 1), "count_include_pad": include}
    g, y = _single_op_graph("avg_pool", attrs, shape)
    feeds = [{"x": np.random.default_rng(s).normal(size=shape).astype(np.float32)} for s in range(6)]
    qg = quantize_int8(g, calibrate(g, feeds, CalibrationOptions(quiet=True)), QuantizeOptions())
    verify(qg)
    c = op_counts(qg)
    assert c["avg_pool"] == 0 and c["qconv"] == 1
    out = window_out_shape("avg_pool", shape[2:], kernel, strides, pads, (1, 1))
    counts = np.full(out, np.prod(kernel)) if include else _avg_counts(shape[2:], kernel, strides, pads, (1, 1), out)
    assert c["mul"] == c["requantize"] == (0 if len(np.unique(counts)) == 1 else 1)
    qc = next(n for n in qg.nodes if n.op == "qconv")
    assert qc.attrs["group"] == 3 and np.all(qg.values[qc.inputs[1]].const == 1)
    s_in, z_in = qg.values["xr_q"].qparams.scale[0], qg.values["xr_q"].qparams.zero_point[0]
    s_o, z_o = qg.values[y + "_q"].qparams.scale[0], qg.values[y + "_q"].qparams.zero_point[0]
    for f in feeds:
        env = run_graph(qg, f, keep_all=True)
        xq = env["xr_q"].astype(np.int64) - z_in
        xp = np.pad(xq, [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])])
        acc = np.zeros(shape[:2] + out, np.int64)
        for i, j in np.ndindex(*kernel):
            acc += xp[:, :, i:i + strides[0] * out[0]:strides[0], j:j + strides[1] * out[1]:strides[1]]
        exact = acc * (float(s_in) / float(s_o)) / counts         # float64: far finer than one LSB
        got = env[y + "_q"].astype(np.int64) - z_o
        inside = (exact > -z_o - 0.5) & (exact < 255 - z_o + 0.5)
        assert inside.mean() > 0.9
        assert np.abs(got - exact)[inside].max() <= 0.5 + 1e-6   # a single correct rounding
        ref = run_graph(g, f)[y]
        err = np.abs(env[y] - ref)[inside].max()
        assert err <= 0.5 * s_in + 0.5 * s_o + 1e-6, err


def test_avg_pool_rule_in_report_and_counts_table():
    attrs = {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "dilations": (1, 1), "count_include_pad": 0}
    g, y = _single_op_graph("avg_pool", attrs, (1, 2, 6, 6))
    f = {"x": np.random.default_rng(0).normal(size=(1, 2, 6, 6)).astype(np.float32)}
    qg = quantize_int8(g, calibrate(g, [f], CalibrationOptions(quiet=True)), QuantizeOptions())
    layers = {entry["node"]: entry for entry in qg.meta["quantization"]["layers"]}
    assert layers["op"]["precision"] == "int8" and layers["op"]["choice"] == "requantize"
    mul = next(n for n in qg.nodes if n.op == "mul")
    table = qg.values[mul.inputs[1]].const
    assert table.dtype == np.int32 and table.tolist() == [[[[9, 6, 6], [6, 4, 4], [6, 4, 4]]]]  # 36 / count
    assert node_dtypes(qg, "qconv") == [(("uint8", "int8", "int32"), ("int32",))]


def _div_graph(c):
    b = builder({"x": ("float32", (4, 32))})
    (y,) = b.emit("div", ["x", b.add_const(np.float32(c), "c")], name="op")
    return finish(b, ["x"], [y]), y


def test_division_by_a_positive_constant_is_a_rescale():
    g, y = _div_graph(6.0)
    feeds = [{"x": (np.random.default_rng(s).normal(size=(4, 32)) * 4).astype(np.float32)} for s in range(4)]
    qg = quantize_int8(g, calibrate(g, feeds, CalibrationOptions(quiet=True)), QuantizeOptions())
    verify(qg)
    assert [n.op for n in qg.nodes] == ["quantize", "requantize", "dequantize"]
    s_in = qg.nodes[0].attrs["scale"]
    s_o = qg.nodes[-1].attrs["scale"]
    for f in feeds:
        err = np.abs(run_graph(qg, f)[y] - run_graph(g, f)[y]).max()
        assert err <= 0.5 * s_in / 6 + 0.5 * s_o + 1e-6
    # a negative constant stays float
    g2, _ = _div_graph(-2.0)
    qg2 = quantize_int8(g2, calibrate(g2, feeds, CalibrationOptions(quiet=True)), QuantizeOptions())
    assert [n.op for n in qg2.nodes] == ["div"]
    assert "positive scalar constant" in qg2.meta["quantization"]["layers"][0]["choice"]


def _hswish_graph(extra_use: bool = False, pool: bool = True):
    """Paddle's hard-swish: y = h * clip(h + 3, 0, 6) / 6 after a conv (``pool``: after a 1x1
    max_pool of the conv, so that the chain is not fused into the conv's epilogue)."""
    rng = np.random.default_rng(4)
    b = builder({"x": ("float32", (1, 3, 6, 6))})
    geo = {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1}
    (h,) = b.emit("conv", ["x", _const(b, rng, (4, 3, 3, 3)), _const(b, rng, (4,), 0.1)], geo, name="conv")
    if pool:
        (h,) = b.emit("max_pool", [h], {"kernel": (1, 1), "strides": (1, 1), "pads": (0, 0, 0, 0),
                                        "dilations": (1, 1)}, name="pool")
    (a,) = b.emit("add", [h, b.add_const(np.float32(3.0), "three")], name="add3")
    (c,) = b.emit("clip", [a], {"min": 0.0, "max": 6.0}, name="clip6")
    (m,) = b.emit("mul", [h, c], name="mulh")
    (y,) = b.emit("div", [m, b.add_const(np.float32(6.0), "six")], name="div6")
    outs = [y, c] if extra_use else [y]
    return finish(b, ["x"], outs), h, y


def test_elementwise_chain_becomes_one_lookup_table():
    g, h, y = _hswish_graph()
    feeds = _feeds(g, 8, 0)
    qg = quantize_int8(g, calibrate(g, feeds, CalibrationOptions(quiet=True)), QuantizeOptions())
    verify(qg)
    assert [n.op for n in qg.nodes] == ["quantize", "qconv", "max_pool", "qlut", "dequantize"]
    layers = {entry["node"]: entry for entry in qg.meta["quantization"]["layers"]}
    assert layers["add3"]["choice"] == "qlut"
    assert all(layers[n]["choice"] == "fused into add3" for n in ("clip6", "mulh", "div6"))
    # straight after the conv, the same chain is fused into the conv's epilogue instead
    # (act="hard_swish", tests/quant/test_fused_hard_swish.py)
    g0, _, _ = _hswish_graph(pool=False)
    qg0 = quantize_int8(g0, calibrate(g0, feeds, CalibrationOptions(quiet=True)), QuantizeOptions())
    assert [(n.op, n.attrs.get("act")) for n in qg0.nodes if n.op != "quantize"] == [("qconv", "hard_swish"),
                                                                                   ("dequantize", None)]
    # the table is hard_swish of every input level (the op's own formula), within float rounding
    from edgec.ir.ops import get as get_op
    from edgec.quant.qmath import dequantize, quantize
    lut = qg.nodes[3]
    s_h, z_h = qg.values[lut.inputs[0]].qparams.scale[0], qg.values[lut.inputs[0]].qparams.zero_point[0]
    s_y, z_y = qg.nodes[4].attrs["scale"], qg.nodes[4].attrs["zero_point"]
    real = dequantize(np.arange(256).astype(np.uint8), s_h, z_h)
    want = quantize(get_op("hard_swish").reference(real)[0], s_y, z_y, "uint8").astype(int)
    assert np.abs(np.asarray(lut.attrs["table"]) - want).max() <= 1 and np.mean(lut.attrs["table"] == want) > 0.95
    for f in feeds[:4]:   # calibration samples: nothing saturates
        env = run_graph(qg, f, keep_all=True)
        # given the integer h, the table is one rounding of the float chain: half an output quantum
        hq = dequantize(env[lut.inputs[0]], s_h, z_h)
        chain = run_graph(g, f, keep_all=True)
        sub = {h: hq}
        for n in g.nodes[2:]:
            sub[n.outputs[0]] = get_op(n.op).reference(*[sub.get(i, g.values[i].const) for i in n.inputs],
                                                       **n.attrs)[0]
        assert np.abs(env[y] - sub[y]).max() <= 0.5 * s_y + 1e-5
        # against fp32: h's quantization error (conv weights and output rounding, hard-swish slope
        # <= 1.5) plus half an output quantum
        err = np.abs(env[y] - chain[y]).max()
        assert err <= 1.5 * s_h * 1.5 + 0.5 * s_y, err
    # clip's output also a graph output: the chain stops there (add + clip: one table), the mul of
    # two runtime values is a qmul and the division a requantize
    g2, _, _ = _hswish_graph(extra_use=True)
    qg2 = quantize_int8(g2, calibrate(g2, feeds, CalibrationOptions(quiet=True)), QuantizeOptions())
    c2 = op_counts(qg2)
    assert c2["qlut"] == 1 and c2["qadd"] == 0 and c2["qmul"] == 1 and c2["requantize"] == 1
    layers2 = {entry["node"]: entry for entry in qg2.meta["quantization"]["layers"]}
    assert layers2["clip6"]["choice"] == "fused into add3" and layers2["mulh"]["choice"] == "qmul"
    # fuse_activations=False keeps every op separate too
    qg3 = quantize_int8(g, calibrate(g, feeds, CalibrationOptions(quiet=True)), QuantizeOptions(fuse_activations=False))
    assert op_counts(qg3)["qlut"] == 0 and op_counts(qg3)["qmul"] == 1


def test_chain_that_cannot_be_a_table_falls_back_to_the_ops_own_rules():
    g, h, y = _hswish_graph()
    feeds = _feeds(g, 8, 0)
    ranges = calibrate(g, feeds, CalibrationOptions(quiet=True))
    del ranges[y]   # no range for the chain's output: no table; each op uses its own rule
    qg = quantize_int8(g, ranges, QuantizeOptions())
    verify(qg)
    layers = {entry["node"]: entry for entry in qg.meta["quantization"]["layers"]}
    assert layers["add3"]["choice"] == "qadd" and layers["clip6"]["choice"] == "fused into add3"
    assert layers["mulh"]["choice"] == "qmul"
    assert layers["div6"]["precision"] == "float" and "no calibrated range" in layers["div6"]["choice"]
    for f in feeds[:2]:
        assert np.abs(run_graph(qg, f)[y] - run_graph(g, f)[y]).max() < 0.1


def test_new_forms_give_the_same_real_outputs_with_int8_and_uint8_activations():
    attrs = {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "dilations": (1, 1), "count_include_pad": 0}
    g1, y1 = _single_op_graph("avg_pool", attrs, (1, 2, 7, 7))
    g2, _, y2 = _hswish_graph()
    for g, y in ((g1, y1), (g2, y2)):
        feeds = _feeds(g, 6, 0)
        ranges = calibrate(g, feeds, CalibrationOptions(quiet=True))
        qu = quantize_int8(g, ranges, QuantizeOptions(activation_dtype="uint8"))
        qs = quantize_int8(g, ranges, QuantizeOptions(activation_dtype="int8"))
        verify(qs)
        assert [n.op for n in qu.nodes] == [n.op for n in qs.nodes]
        for f in feeds:
            np.testing.assert_array_equal(run_graph(qu, f)[y], run_graph(qs, f)[y])


def test_attention_block_runtime_matmuls():
    """softmax(q k^T / 4) v with [1, 2, 6, 8] heads: both matmuls are qmatmul (two runtime
    operands, batch axes), the scaling a requantize, softmax stays float (documented)."""
    b = builder({"q": ("float32", (1, 2, 6, 8)), "k": ("float32", (1, 2, 6, 8)), "v": ("float32", (1, 2, 6, 8))})
    (kt,) = b.emit("transpose", ["k"], {"perm": (0, 1, 3, 2)}, name="kt")
    (s,) = b.emit("matmul", ["q", kt], name="qk")
    (sc,) = b.emit("div", [s, b.add_const(np.float32(4.0), "four")], name="scale")
    (p,) = b.emit("softmax", [sc], {"axis": 3}, name="softmax")
    (o,) = b.emit("matmul", [p, "v"], name="pv")
    g = finish(b, ["q", "k", "v"], [o])
    feeds = _feeds(g, 16, 0)
    qg = quantize_int8(g, calibrate(g, feeds, CalibrationOptions(quiet=True)), QuantizeOptions())
    verify(qg)
    c = op_counts(qg)
    assert c["qmatmul"] == 2 and c["matmul"] == 0 and c["softmax"] == 1 and c["div"] == 0
    assert node_dtypes(qg, "qmatmul") == [(("uint8", "uint8"), ("uint8",))] * 2
    layers = {entry["node"]: entry for entry in qg.meta["quantization"]["layers"]}
    assert layers["softmax"]["precision"] == "float"
    for f in feeds[:4]:
        ref, got = run_graph(g, f)[o], run_graph(qg, f)[o]
        # relative to the output range: a few quanta through two 8-bit matmuls and a softmax
        assert np.abs(got - ref).max() <= 0.03 * (ref.max() - ref.min()), np.abs(got - ref).max()


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
    # fc2 feeds only the float softmax: qdense_dequant (float output)
    assert op_counts(qg)["qdense"] == 1 and op_counts(qg)["qdense_dequant"] == 1 and op_counts(qg)["dense"] == 0
    acc_q = float(np.mean(_predict(qg, xte, batch) == yte))
    print(f"sms spam {method}: fp32 {100 * acc_f:.2f}% int8 {100 * acc_q:.2f}% on {len(yte)} test messages")
    assert acc_f > 0.95
    assert acc_f - acc_q <= 0.01


# -- empirical bias correction ----------------------------------------------------------------------

def _bc_graph():
    """depthwise conv (coarse per-channel weights: a strong systematic error) -> relu -> conv -> dense."""
    rng = np.random.default_rng(11)
    b = builder({"x": ("float32", (1, 4, 8, 8))})
    geo = {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1)}
    w1 = (rng.normal(size=(4, 1, 3, 3)) * 0.3).astype(np.float32)
    w1[:, 0, 0, 0] = 4.0  # one large tap per channel: the other taps get few int8 levels
    (c1,) = b.emit("conv", ["x", b.add_const(w1, "w1"), _const(b, rng, (4,), 0.1)], dict(geo, group=4), name="dw")
    (r1,) = b.emit("relu", [c1], name="relu1")
    (c2,) = b.emit("conv", [r1, _const(b, rng, (6, 4, 3, 3), 0.2), _const(b, rng, (6,), 0.1)], dict(geo, group=1),
                   name="pw")
    (gp,) = b.emit("global_avg_pool", [c2], name="gap")
    (f,) = b.emit("reshape", [gp], {"shape": (1, 6)}, name="flat")
    (d,) = b.emit("dense", [f, _const(b, rng, (3, 6), 0.5), _const(b, rng, (3,), 0.1)], name="fc")
    return finish(b, ["x"], [d], "bc")


def _bc_feeds(n, seed):
    rng = np.random.default_rng(seed)
    return [{"x": (rng.normal(size=(1, 4, 8, 8)) * 0.5 + 0.3).astype(np.float32)} for _ in range(n)]


def test_bias_correction_matches_the_float_channel_means():
    """After the correction, on the calibration samples, every qconv/qdense's mean accumulator per
    output channel equals the float layer's mean in accumulator units within half a unit (the
    rounding of the correction): each layer is corrected seeing the corrected upstream layers,
    and later corrections do not change its inputs. Only the int32 bias constants change."""
    from edgec.passes.quantize_int8 import _int_accumulator, bias_correction
    g = _bc_graph()
    feeds = _bc_feeds(32, 1)
    ranges = calibrate(g, feeds, CalibrationOptions(method="minmax", quiet=True))
    plain = quantize_int8(g, ranges, QuantizeOptions())
    qg = quantize_int8(g, ranges, QuantizeOptions(), calib_feeds=iter(feeds))
    assert [n.op for n in qg.nodes] == [n.op for n in plain.nodes]
    assert qg.meta["quantization"]["bias_correction"]["layers"] == 3
    assert qg.meta["quantization"]["bias_correction"]["samples"] == 32
    changed = {n for n, v in qg.values.items() if v.const is not None
               and not np.array_equal(v.const, plain.values[n].const)}
    biases = {n.inputs[2] for n in qg.nodes if n.op in ("qconv", "qdense", "qdense_dequant")}
    assert changed and changed <= biases
    # direct call: the second correction of a corrected graph moves nothing
    again = bias_correction(qg, g, feeds)
    assert set(again) == {"dw", "pw", "fc"} and max(again.values()) == 0
    fenvs = [run_graph(g, f, keep_all=True) for f in feeds]
    qenvs = [run_graph(qg, f, keep_all=True) for f in feeds]
    fnodes = {n.name: n for n in g.nodes}
    for node in qg.nodes:
        if node.op not in ("qconv", "qdense", "qdense_dequant"):
            continue
        x, w, bname = node.inputs[:3]
        s_x = qg.values[x].qparams.scale[0]
        s_w = np.asarray(qg.values[w].qparams.scale, np.float64)
        acc = np.stack([_int_accumulator(node, e[x], qg.values[w].const, qg.values[bname].const) for e in qenvs])
        y = np.stack([e[fnodes[node.name].outputs[0]] for e in fenvs]).astype(np.float64)
        axes = tuple(i for i in range(acc.ndim) if i != 2)  # [sample, batch, channel, ...]
        diff = acc.mean(axis=axes) - y.mean(axis=axes) / (s_x * s_w)
        assert np.all(np.abs(diff) <= 0.5 + 1e-6), (node.name, diff)


def test_bias_correction_reduces_the_output_error_on_new_data():
    g = _bc_graph()
    feeds = _bc_feeds(32, 1)
    test = _bc_feeds(64, 2)
    ranges = calibrate(g, feeds, CalibrationOptions(method="minmax", quiet=True))
    out = g.outputs[0]
    ref = np.concatenate([run_graph(g, f)[out] for f in test])
    errs = {}
    for bc in (False, True):
        qg = quantize_int8(g, ranges, QuantizeOptions(bias_correction=bc), calib_feeds=feeds)
        assert ("bias_correction" in qg.meta["quantization"]) == bc
        got = np.concatenate([run_graph(qg, f)[out] for f in test])
        errs[bc] = float(np.abs(got - ref).mean())
    assert errs[True] < 0.8 * errs[False], errs


def test_bias_correction_options():
    with pytest.raises(EdgecError, match="bias_correction_samples"):
        QuantizeOptions(bias_correction_samples=0)
    g = _bc_graph()
    feeds = _bc_feeds(8, 1)
    ranges = calibrate(g, feeds, CalibrationOptions(method="minmax", quiet=True))
    qg = quantize_int8(g, ranges, QuantizeOptions(bias_correction_samples=3), calib_feeds=iter(feeds))
    assert qg.meta["quantization"]["bias_correction"]["samples"] == 3


def test_bias_correction_leaves_avg_pool_tables_alone():
    """The unit-weight qconv an avg_pool becomes sums windows (its accumulator is not in the float
    output's units): bias correction must not touch it; only the real conv is corrected."""
    rng = np.random.default_rng(12)
    b = builder({"x": ("float32", (1, 3, 7, 9))})
    geo = {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1}
    (c,) = b.emit("conv", ["x", _const(b, rng, (4, 3, 3, 3)), _const(b, rng, (4,), 0.1)], geo, name="conv")
    (ap,) = b.emit("avg_pool", [c], {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "dilations": (1, 1),
                                     "count_include_pad": False}, name="pool")
    g = finish(b, ["x"], [ap], "pool")
    feeds = [{"x": np.random.default_rng(s).normal(size=(1, 3, 7, 9)).astype(np.float32)} for s in range(6)]
    ranges = calibrate(g, feeds, CalibrationOptions(quiet=True))
    plain = quantize_int8(g, ranges, QuantizeOptions())
    qg = quantize_int8(g, ranges, QuantizeOptions(), calib_feeds=feeds)
    assert op_counts(qg)["qconv"] == 2 and qg.meta["quantization"]["bias_correction"]["layers"] == 1
    pool_bias = [n.inputs[2] for n in qg.nodes if n.op == "qconv" and n.name != "conv"]
    assert pool_bias and all(np.array_equal(qg.values[v].const, plain.values[v].const) for v in pool_bias)
