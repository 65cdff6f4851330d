"""fuse_activation: a float conv's relu / clip becomes the conv's act_min / act_max clamp."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.compiler import prepare_graph
from edgec.frontend.onnx_export import export_onnx
from edgec.passes.fuse_activation import fuse_activation
from edgec.reference import run_graph


def _model(acts, extra_output=False, clip_runtime=False):
    """x -> conv -> act[0] -> conv -> act[1] ... (3x3, 4 channels); acts: "relu" | (lo, hi) | None."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i, act in enumerate(acts):
        inits += [numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), f"b{i}")]
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], name=f"conv{i}"))
        x = f"c{i}"
        if act == "relu":
            nodes.append(helper.make_node("Relu", [x], [f"a{i}"], name=f"relu{i}"))
            x = f"a{i}"
        elif act is not None:
            lo, hi = act
            ins = [x, "" if lo is None else f"lo{i}", "" if hi is None else f"hi{i}"]
            for nm, v in (("lo", lo), ("hi", hi)):
                if v is not None:
                    inits.append(numpy_helper.from_array(np.array(v, np.float32), f"{nm}{i}"))
            while not ins[-1]:
                ins.pop()
            nodes.append(helper.make_node("Clip", ins, [f"a{i}"], name=f"clip{i}"))
            x = f"a{i}"
    outs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)]
    if extra_output:
        outs.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, None))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])]
    if clip_runtime:
        inputs.append(helper.make_tensor_value_info("hi_rt", TensorProto.FLOAT, []))
        nodes.append(helper.make_node("Clip", [x, "", "hi_rt"], ["z"], name="clip_rt"))
        outs[0] = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "m", inputs, outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _unfused(m):
    """The graph before the lowering (what the default pipeline gives)."""
    from edgec.frontend.onnx_import import import_onnx
    from edgec.passes import default_pipeline, run_pipeline
    return run_pipeline(import_onnx(m), default_pipeline())


def test_relu_and_clip_fuse_and_compute_the_same():
    m = _model(["relu", (0.0, 6.0), (None, 0.5), (-1.0, None)])
    g0 = _unfused(m)
    g = fuse_activation(g0)
    assert [n.op for n in g.nodes] == ["conv"] * 4
    assert [(n.attrs["act_min"], n.attrs["act_max"]) for n in g.nodes] == [(0.0, None), (0.0, 6.0), (None, 0.5),
                                                                           (-1.0, None)]
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 6)).astype(np.float32)
    a, b = run_graph(g0, {"x": x}), run_graph(g, {"x": x})
    np.testing.assert_array_equal(a[g0.outputs[0]], b[g.outputs[0]])
    # what edgec.compile builds is the fused graph
    gp, _ = prepare_graph(m)
    assert [n.op for n in gp.nodes] == ["conv"] * 4


def test_not_fused_when_the_conv_output_is_used_elsewhere_or_bounds_are_inputs():
    g = fuse_activation(_unfused(_model(["relu", None], extra_output=True)))
    assert [n.op for n in g.nodes] == ["conv", "relu", "conv"]
    g = fuse_activation(_unfused(_model([None], clip_runtime=True)))   # imported as a binary min
    assert [n.op for n in g.nodes] == ["conv", "min"]
    # a conv that already carries a clamp keeps the next activation as a node
    g1 = fuse_activation(_unfused(_model(["relu"])))
    g2 = fuse_activation(g1)
    assert [n.op for n in g2.nodes] == ["conv"]


def test_export_writes_the_clamp_back_as_clip():
    ort = pytest.importorskip("onnxruntime")
    m = _model(["relu", (0.0, 6.0), (None, 0.5)])
    g = fuse_activation(_unfused(m))
    proto = export_onnx(g)
    onnx.checker.check_model(proto)
    assert [n.op_type for n in proto.graph.node].count("Clip") == 3
    x = np.random.default_rng(2).standard_normal((1, 4, 6, 6)).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run_graph(g, {"x": x})[g.outputs[0]], want, rtol=1e-5, atol=1e-5)


def test_conv_rejects_bad_clamp_attrs():
    from edgec.ir.ops import get
    from edgec.ir.graph import Value
    infer = get("conv").infer
    x, w = Value("x", "float32", (1, 4, 6, 6)), Value("w", "float32", (4, 4, 3, 3))
    attrs = dict(strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1, act_min="0", act_max=None)
    with pytest.raises(ValueError, match="act_min"):
        infer([x, w, None], attrs)
