"""Error-compensating int8 weight rounding (edgec.quant.weight_rounding, GPTQ / OBQ): on random
dense / conv / depthwise layers it lowers the layer output error on the calibration data against
nearest rounding with the same scales; on a small graph it changes only int8 weights and int32
biases (in range, scales, ops and attributes unchanged), lowers the output error against float,
and the compiled artifact reproduces the reference interpreter on the re-rounded graph."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgec
from edgec.errors import EdgecError
from edgec.ir.graph import Node
from edgec.passes.quantize_int8 import QuantizeOptions, quantize_int8
from edgec.quant import CalibrationOptions, calibrate, quantize_weights_per_channel
from edgec.quant.weight_rounding import _patches, gptq_round, gptq_weight_rounding
from edgec.reference import run_graph
from tests.passes._graphs import builder, finish

LINEAR = ("qconv", "qdense", "qdense_dequant")


def _layer_error(p, w, q, s):
    """sum over rows and groups of |x (w - q s)^T|^2: p [G, M, K], w / q [G, O, K], s [G, O]."""
    d = w - q.astype(np.float64) * s[:, :, None]
    return float(((p @ np.swapaxes(d, 1, 2)) ** 2).sum())


@pytest.mark.parametrize("kind", ["dense", "conv", "depthwise"])
def test_gptq_lowers_the_layer_output_error(kind):
    rng = np.random.default_rng(3)
    geo = {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1)}
    if kind == "dense":
        node = Node("qdense", ("x", "w", "b"), ("y",), {}, "d")
        # correlated inputs (as real activations are): a low-rank mix plus noise
        x = rng.normal(size=(256, 6)) @ rng.normal(size=(6, 24)) + 0.1 * rng.normal(size=(256, 24))
        w = rng.normal(size=(16, 24))
    elif kind == "conv":
        node = Node("qconv", ("x", "w", "b"), ("y",), dict(geo, group=1), "c")
        x = np.cumsum(rng.normal(size=(4, 6, 10, 10)), axis=3)      # smooth along the width
        w = rng.normal(size=(8, 6, 3, 3))
    else:
        node = Node("qconv", ("x", "w", "b"), ("y",), dict(geo, group=8), "dw")
        x = np.cumsum(rng.normal(size=(4, 8, 10, 10)), axis=3)
        w = rng.normal(size=(8, 1, 3, 3))
    groups = node.attrs.get("group", 1)
    p = _patches(node, x, 0.0, w.shape[2:])
    qn, s = quantize_weights_per_channel(w.astype(np.float32), 0)
    og, k = w.shape[0] // groups, w.size // w.shape[0]
    wg, sg, qng = w.reshape(groups, og, k), s.reshape(groups, og).astype(np.float64), qn.reshape(groups, og, k)
    h = np.swapaxes(p, 1, 2) @ p
    qg = gptq_round(wg, sg, h, damp=0.01)
    assert qg.dtype == np.int8 and qg.min() >= -127 and qg.max() <= 127
    assert not np.array_equal(qg, qng)
    e_gptq, e_near = _layer_error(p, wg, qg, sg), _layer_error(p, wg, qng, sg)
    assert e_gptq < 0.8 * e_near, (kind, e_gptq, e_near)


def test_patches_are_the_conv_reduction():
    """The im2col rows times the weights give the reference conv (grouped, strided, dilated, 1-D)."""
    from edgec.ops.nn import conv
    rng = np.random.default_rng(0)
    for c, o, g, k, st, dil, pads in [(4, 6, 2, (3, 3), (2, 1), (1, 2), (1, 2, 0, 1)),
                                      (8, 8, 8, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),
                                      (3, 5, 1, (3,), (2,), (1,), (1, 1))]:
        x = rng.normal(size=(2, c) + (9, 11)[:len(k)])
        w = rng.normal(size=(o, c // g) + k)
        node = Node("qconv", ("x", "w", "b"), ("y",), {"pads": pads, "strides": st, "dilations": dil, "group": g}, "n")
        p = _patches(node, x, 0.0, k)
        (y,) = conv(x, w, np.zeros(o), strides=st, pads=pads, dilations=dil, group=g)
        yy = p @ np.swapaxes(w.reshape(g, o // g, -1), 1, 2)           # [g, N * positions, o/g]
        yy = yy.reshape((g, 2) + y.shape[2:] + (o // g,))
        got = np.concatenate([np.moveaxis(yy[j], -1, 1) for j in range(g)], axis=1)
        np.testing.assert_allclose(got, y, atol=1e-12)


def _const(b, rng, shape, scale=0.3):
    return b.add_const((rng.normal(size=shape) * scale).astype(np.float32), "w")


def _graph():
    """conv 3x3 -> relu -> depthwise 3x3 -> relu -> conv 1x1 -> global pool -> dense."""
    rng = np.random.default_rng(5)
    b = builder({"x": ("float32", (1, 3, 12, 12))})
    geo = {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1)}
    (c1,) = b.emit("conv", ["x", _const(b, rng, (8, 3, 3, 3)), _const(b, rng, (8,), 0.1)], dict(geo, group=1),
                   name="c1")
    (r1,) = b.emit("relu", [c1], name="r1")
    (c2,) = b.emit("conv", [r1, _const(b, rng, (8, 1, 3, 3), 0.5), _const(b, rng, (8,), 0.1)], dict(geo, group=8),
                   name="dw")
    (r2,) = b.emit("relu", [c2], name="r2")
    (c3,) = b.emit("conv", [r2, _const(b, rng, (12, 8, 1, 1)), _const(b, rng, (12,), 0.1)],
                   {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": 1}, name="pw")
    (gp,) = b.emit("global_avg_pool", [c3], name="gap")
    (f,) = b.emit("reshape", [gp], {"shape": (1, 12)}, name="flat")
    (d,) = b.emit("dense", [f, _const(b, rng, (4, 12), 0.5), _const(b, rng, (4,), 0.1)], name="fc")
    return finish(b, ["x"], [d], "wr")


def _feeds(n, seed):
    rng = np.random.default_rng(seed)
    # smooth images: neighbouring pixels are correlated, as in real inputs
    return [{"x": np.cumsum(rng.normal(size=(1, 3, 12, 12)), axis=3).astype(np.float32) * 0.4} for _ in range(n)]


@pytest.mark.parametrize("target", ["weights", "float"])
def test_graph_pass_changes_only_weights_and_biases(target):
    g = _graph()
    feeds = _feeds(16, 1)
    ranges = calibrate(g, feeds, CalibrationOptions(method="minmax", quiet=True))
    plain = quantize_int8(g, ranges, QuantizeOptions(bias_correction=False))
    qg = quantize_int8(g, ranges, QuantizeOptions(bias_correction=False))
    done = gptq_weight_rounding(qg, g, feeds, target=target)
    # fc sees one row per sample (16 < 4 x 12 columns): nearest rounding is kept
    assert set(done) == {"c1", "dw", "pw"} and sum(done.values()) > 0
    fc_w = next(n.inputs[1] for n in qg.nodes if n.name == "fc")
    assert np.array_equal(qg.values[fc_w].const, plain.values[fc_w].const)
    again = quantize_int8(g, ranges, QuantizeOptions(bias_correction=False))
    assert set(gptq_weight_rounding(again, g, feeds, target=target, few_rows="weights")) == {"c1", "dw", "pw", "fc"}
    assert [(n.op, n.inputs, n.outputs, n.attrs) for n in qg.nodes] == \
        [(n.op, n.inputs, n.outputs, n.attrs) for n in plain.nodes]
    weights = {n.inputs[1] for n in qg.nodes if n.op in LINEAR}
    biases = {n.inputs[2] for n in qg.nodes if n.op in LINEAR}
    changed = {n for n, v in qg.values.items() if v.const is not None
               and not np.array_equal(v.const, plain.values[n].const)}
    assert changed & weights and changed <= weights | biases
    for name in weights:
        v, p = qg.values[name], plain.values[name]
        assert v.const.dtype == np.int8 and int(np.abs(v.const.astype(np.int32)).max()) <= 127
        assert v.qparams == p.qparams and v.dtype == p.dtype
    for node in qg.nodes:    # the zero-point fold b - z_x * sum(w[c]) follows the new weights
        if node.op in LINEAR:
            x, w, b = node.inputs[:3]
            z = qg.values[x].qparams.zero_point[0]
            axes = tuple(range(1, qg.values[w].const.ndim))
            moved = qg.values[b].const.astype(np.int64) - plain.values[b].const.astype(np.int64)
            dsum = (qg.values[w].const.astype(np.int64).sum(axis=axes)
                    - plain.values[w].const.astype(np.int64).sum(axis=axes))
            np.testing.assert_array_equal(moved, -z * dsum)


def test_graph_output_error_drops_on_calibration_and_new_data():
    g = _graph()
    feeds, test = _feeds(32, 1), _feeds(32, 2)
    ranges = calibrate(g, feeds, CalibrationOptions(method="minmax", quiet=True))
    out = g.outputs[0]
    errs = {}
    for mode in ("nearest", "gptq"):
        qg = quantize_int8(g, ranges, QuantizeOptions(bias_correction=False))
        if mode == "gptq":
            gptq_weight_rounding(qg, g, feeds)
        for name, data in (("calib", feeds), ("test", test)):
            got = np.concatenate([run_graph(qg, f)[out] for f in data])
            ref = np.concatenate([run_graph(g, f)[out] for f in data])
            errs[mode, name] = float(np.sqrt(np.mean((got - ref) ** 2)))
    assert errs["gptq", "calib"] < 0.9 * errs["nearest", "calib"], errs
    assert errs["gptq", "test"] < 0.95 * errs["nearest", "test"], errs


def test_options():
    assert QuantizeOptions().weight_rounding in ("nearest", "gptq")
    assert QuantizeOptions(weight_rounding="gptq").weight_rounding == "gptq"
    with pytest.raises(EdgecError, match="weight_rounding"):
        QuantizeOptions(weight_rounding="adaround")
    with pytest.raises(ValueError, match="target"):
        gptq_weight_rounding(_graph(), _graph(), [], target="nope")
    with pytest.raises(ValueError, match="few_rows"):
        gptq_weight_rounding(_graph(), _graph(), [], few_rows="nope")
    from edgec.cli import build_parser
    assert build_parser().parse_args(["compile", "m.onnx", "-o", "out", "--weight-rounding", "gptq"]).weight_rounding == "gptq"
    assert build_parser().parse_args(["compile", "m.onnx", "-o", "out"]).weight_rounding is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compile", "m.onnx", "-o", "out", "--weight-rounding", "adaround"])


@pytest.mark.tvm
def test_compiled_artifact_is_bit_exact_with_the_reference(tmp_path):
    """Compiled with weight_rounding="gptq": the report records it, and the C runtime reproduces
    the reference interpreter on the artifact's own integer graph bit for bit (the pass changed
    only constants: the kernels are the usual ones)."""
    from edgec.frontend.qdq_export import IR_FILE, load_ir
    g = _graph()
    calib = {"x": np.concatenate([f["x"] for f in _feeds(16, 1)])}
    out = edgec.compile(g, output_dir=tmp_path / "a", quantize="int8", calib=calib, weight_rounding="gptq")
    q = json.loads((out / "report.json").read_text())["quantization"]
    wr = q["weight_rounding"]
    assert wr["method"] == "gptq" and wr["layers"] == 3 and wr["samples"] == 16 and wr["changed_weights"] > 0
    assert q["bias_correction"]["layers"] == 4
    ig = load_ir(out / IR_FILE)
    m = edgec.load(out)
    name = ig.outputs[0]
    for f in _feeds(8, 3):
        np.testing.assert_array_equal(m.run(f)[name], run_graph(ig, f)[name])
    with pytest.raises(EdgecError, match="weight_rounding"):
        edgec.compile(g, output_dir=tmp_path / "b", weight_rounding="gptq")
