"""The quantization pass fuses a hard swish into the conv / dense that produces its input
(``act="hard_swish"``: the pre-activation in fixed point, the hard swish in integers, one 8-bit
rounding; edgec/ops/quant.py module doc), for the ONNX HardSwish op and for Paddle's
h * clip(h + 3, 0, 6) / 6 chain; not when the chain is another function, when the conv output has
another use, or when the conv is kept in float. The QDQ export (Conv -> HardSwish -> Q) runs in
onnxruntime within one quantum of edgec, and the fused form is closer to float than the unfused
8-bit pre-activation + lookup table."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from edgec.compiler import prepare_graph
from edgec.passes.quantize_int8 import HSWISH_MIN_FRAC_BITS
from edgec.reference import run_graph

from .test_qdq_export import check, feeds_for, make_model, onnx_ops, rand


def _model(rng, form="paddle", div=6.0, extra_use=False, dense=False):
    """x -> conv (or matmul + add) -> hard swish (``form``) -> conv -> y."""
    inits = {"w": rand(rng, (12, 4, 3, 3), 0.5), "b": rand(rng, (12,), 0.5), "w2": rand(rng, (6, 12, 1, 1), 0.4)}
    if dense:
        inits = {"w": rand(rng, (32, 24), 0.4), "b": rand(rng, (24,), 0.5), "w2": rand(rng, (24, 5), 0.4)}
        nodes = [h.make_node("MatMul", ["x", "w"], ["m0"]), h.make_node("Add", ["m0", "b"], ["c"])]
        xs, ys = [2, 32], [2, 5]
    else:
        nodes = [h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1])]
        xs, ys = [1, 4, 9, 11], [1, 6, 9, 11]
    if form == "onnx":
        nodes.append(h.make_node("HardSwish", ["c"], ["hs"]))
    else:
        inits.update(three=np.float32(3), zero=np.float32(0), six=np.float32(6), d=np.float32(div))
        nodes += [h.make_node("Add", ["c", "three"], ["a"]), h.make_node("Clip", ["a", "zero", "six"], ["cl"]),
                  h.make_node("Mul", ["c", "cl"], ["m"]), h.make_node("Div", ["m", "d"], ["hs"])]
    nodes.append(h.make_node("MatMul" if dense else "Conv", ["hs", "w2"], ["y"]))
    outputs = {"y": (T.FLOAT, ys)}
    if extra_use:
        outputs["c"] = (T.FLOAT, xs[:1] + [24] if dense else [1, 12, 9, 11])
    return make_model(nodes, {"x": (T.FLOAT, xs)}, outputs, inits)


def _layers(qg):
    return {row["node"]: row["choice"] for row in qg.meta["quantization"]["layers"]}


@pytest.mark.parametrize("form", ["paddle", "onnx"])
@pytest.mark.parametrize("target", ["x86_64", "aarch64"])
def test_conv_hard_swish_fused_and_exported(tmp_path, form, target):
    qg, proto, _ = check(_model(np.random.default_rng(5), form), tmp_path, ["qconv"], target,
                         forbid_ops=("qlut",), label=f"conv+hswish {form}")
    convs = [n for n in qg.nodes if n.op == "qconv"]
    assert [n.attrs["act"] for n in convs] == ["hard_swish", "none"]
    a = convs[0].attrs
    assert a["act_hmin"] == -3 * 2 ** a["act_frac_bits"] and a["act_frac_bits"] >= HSWISH_MIN_FRAC_BITS
    # the fraction bits leave every first-step right shift >= 33 (the 32-bit multiply-high form),
    # unless that would take them below the floor
    assert min(31 - sh for sh in a["shift"]) >= 33 or a["act_frac_bits"] == HSWISH_MIN_FRAC_BITS
    fused = [c for c in _layers(qg).values() if c.startswith("fused into")]
    assert len(fused) == (4 if form == "paddle" else 1)
    assert onnx_ops(proto).count("HardSwish") == 1


def test_dense_hard_swish_fused(tmp_path):
    qg, _, _ = check(_model(np.random.default_rng(6), dense=True), tmp_path, ["qdense"], forbid_ops=("qlut",),
                     label="dense+hswish")
    assert [n.attrs["act"] for n in qg.nodes if n.op == "qdense"][0] == "hard_swish"


@pytest.mark.parametrize("kind", ["not_hard_swish", "extra_use", "fallback"])
def test_not_fused(kind):
    rng = np.random.default_rng(7)
    model = _model(rng, div=5.0 if kind == "not_hard_swish" else 6.0, extra_use=kind == "extra_use")
    calib = feeds_for(model, np.random.default_rng(0), 16)
    if kind == "fallback":   # the chain's division kept in float: the conv cannot take the whole chain
        from edgec.passes.quantize_int8 import QuantizeOptions, quantize_int8
        from edgec.quant import CalibrationOptions, calibrate
        g32, _ = prepare_graph(model)
        div = next(n.name for n in g32.nodes if n.op == "div")
        ranges = calibrate(g32, calib, CalibrationOptions(quiet=True))
        qg = quantize_int8(g32, ranges, QuantizeOptions(fallback_nodes={div}))
        assert _layers(qg)[div].startswith("float")
    else:
        qg, _ = prepare_graph(model, quantize="int8", calib=calib)
    assert all(n.attrs.get("act", "none") == "none" for n in qg.nodes if n.op == "qconv")
    if kind != "fallback":
        assert any(n.op == "qlut" for n in qg.nodes)     # the chain is still one lookup table


def test_fused_is_closer_to_float_than_table():
    """Same calibration, fuse on vs the 8-bit pre-activation + lookup table (fuse of the chain
    into the conv refused by listing the chain's last node as float-kept is not the same graph,
    so compare against quantize_int8 with the consumer lookup forced: hard_swish_consumer off)."""
    from edgec.passes import quantize_int8 as qi
    rng = np.random.default_rng(8)
    model = _model(rng, "onnx")
    calib = feeds_for(model, np.random.default_rng(0), 32)
    test = feeds_for(model, np.random.default_rng(1), 16)
    g32, _ = prepare_graph(model)
    fused, _ = prepare_graph(model, quantize="int8", calib=calib)
    orig = qi._Ctx.hard_swish_consumer
    try:
        qi._Ctx.hard_swish_consumer = lambda self, out: None
        table, _ = prepare_graph(model, quantize="int8", calib=calib)
    finally:
        qi._Ctx.hard_swish_consumer = orig
    assert any(n.op == "qlut" for n in table.nodes) and not any(n.op == "qlut" for n in fused.nodes)

    def err(g):
        return np.mean([np.mean((run_graph(g, f)["y"] - run_graph(g32, f)["y"]) ** 2) for f in test])
    assert err(fused) < 0.8 * err(table), (err(fused), err(table))
