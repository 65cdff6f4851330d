"""fuse_activation's residual form: conv -> add(residual) [-> relu / clip] becomes one conv with
the optional fourth input ``residual`` (edgec/passes/fuse_activation.py, edgec/ops/nn.py)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.ir import ops as irops
from edgec.passes import fuse_activation as fa
from edgec.reference import run_graph

RNG = np.random.default_rng(61)


def _w(name, *shape):
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.3).astype(np.float32), name)


def _model(shape=(1, 8, 6, 6), broadcast_res=False, extra_output=False, second_use=False):
    """x -> conv0 -> relu -> conv1 -> add(conv1, relu0) -> relu -> conv2 (1x1) -> add(x, conv2) ->
    conv3 (depthwise) -> add(conv3, r) where r is [1, C, 1, 1] when ``broadcast_res``."""
    c = shape[1]
    inits = [_w("w0", c, c, 3, 3), _w("b0", c), _w("w1", c, c, 3, 3), _w("b1", c), _w("w2", c, c, 1, 1),
             _w("w3", c, 1, 3, 3), _w("b3", c)]
    if not broadcast_res:
        inits.append(_w("r", *shape))
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1], name="conv0"),
        helper.make_node("Relu", ["c0"], ["a0"], name="relu0"),
        helper.make_node("Conv", ["a0", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Add", ["c1", "a0"], ["s1"], name="add1"),
        helper.make_node("Relu", ["s1"], ["a1"], name="relu1"),
        helper.make_node("Conv", ["a1", "w2"], ["c2"], name="conv2"),            # no bias
        helper.make_node("Add", ["x", "c2"], ["s2"], name="add2"),               # residual first
        helper.make_node("Conv", ["s2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], group=c, name="conv3"),
        helper.make_node("Add", ["c3", "r"], ["y"], name="add3"),
    ]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_output:
        outs.append(helper.make_tensor_value_info("c1", TensorProto.FLOAT, None))
    if second_use:
        nodes.append(helper.make_node("Mul", ["c2", "c2"], ["sq"], name="sq"))
        outs.append(helper.make_tensor_value_info("sq", TensorProto.FLOAT, None))
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))]
    if broadcast_res:     # a runtime [1, C, 1, 1] operand (a constant one would fold into the bias)
        ins.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, c, 1, 1]))
    g = helper.make_graph(nodes, "m", ins, outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _unfused(m):
    from edgec.frontend.onnx_import import import_onnx
    from edgec.passes import default_pipeline, run_pipeline
    return run_pipeline(import_onnx(m), default_pipeline())


def _feeds(shape=(1, 8, 6, 6), broadcast_res=False):
    f = {"x": RNG.standard_normal(shape).astype(np.float32)}
    if broadcast_res:
        f["r"] = RNG.standard_normal((1, shape[1], 1, 1)).astype(np.float32)
    return f


def test_residual_adds_fuse_and_compute_the_same():
    from edgec.ir.verify import verify
    g0 = _unfused(_model())
    g1 = fa.fuse_activation(g0)
    verify(g1)
    ops = [n.op for n in g1.nodes]
    assert "add" not in ops and ops.count("conv") == 4
    convs = {n.name: n for n in g1.nodes}
    assert convs["conv1"].inputs[3] == convs["conv1"].inputs[0]     # the relu's output, read twice
    assert convs["conv1"].attrs["act_min"] == 0.0                 # the relu after the add fused too
    assert convs["conv2"].inputs[2] == "" and convs["conv2"].inputs[3] == "x"
    assert convs["conv3"].attrs["group"] == 8 and convs["conv3"].attrs["act_min"] is None
    feeds = _feeds()
    want = run_graph(g0, feeds)
    got = run_graph(g1, feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])             # the same float32 operations


def test_fused_conv_takes_the_place_of_the_add():
    """add(convA(x), convB(x)) with convB after convA: convA fuses with convB's output as its
    residual, so it must run where the add was, after convB."""
    from edgec.frontend.onnx_import import import_onnx
    from edgec.ir.verify import verify
    inits = [_w("wa", 4, 4, 3, 3), _w("wb", 4, 4, 1, 1)]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["ca"], pads=[1, 1, 1, 1], name="convA"),
             helper.make_node("Conv", ["x", "wb"], ["cb"], name="convB"),
             helper.make_node("Add", ["ca", "cb"], ["y"], name="add")]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    g0 = import_onnx(m)
    g1 = fa.fuse_activation(g0)
    verify(g1)
    assert [(n.name, n.op) for n in g1.nodes] == [("convB", "conv"), ("convA", "conv")]
    assert g1.nodes[1].inputs[3] == g1.nodes[0].outputs[0]
    feeds = _feeds((1, 4, 5, 5))
    np.testing.assert_array_equal(run_graph(g1, feeds)["y"], run_graph(g0, feeds)["y"])


@pytest.mark.parametrize("kw,unfused_adds", [
    (dict(broadcast_res=True), {"add3"}),        # [1, C, 1, 1] residual: a broadcast, kept
    (dict(extra_output=True), {"add1"}),         # the conv's output is a graph output
    (dict(second_use=True), {"add2"}),           # the conv's output has another consumer
])
def test_not_fused(kw, unfused_adds):
    g0 = _unfused(_model(**kw))
    g1 = fa.fuse_activation(g0)
    assert {n.name for n in g1.nodes if n.op == "add"} == unfused_adds
    feeds = _feeds(broadcast_res=kw.get("broadcast_res", False))
    want, got = run_graph(g0, feeds), run_graph(g1, feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_switch_and_int8_graphs_keep_the_add(monkeypatch):
    g0 = _unfused(_model())
    monkeypatch.setattr(fa, "FUSE_RESIDUAL", False)
    assert sum(n.op == "add" for n in fa.fuse_activation(g0).nodes) == 3


def test_residual_shape_is_checked():
    from edgec.ir.graph import Value
    op = irops.get("conv")
    attrs = op.normalize_attrs(dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1)))
    x = Value("x", "float32", (1, 2, 4, 4))
    w = Value("w", "float32", (3, 2, 1, 1))
    assert op.infer([x, w, None, Value("r", "float32", (1, 3, 4, 4))], attrs) == [("float32", (1, 3, 4, 4))]
    with pytest.raises(ValueError, match="residual"):
        op.infer([x, w, None, Value("r", "float32", (1, 3, 1, 1))], attrs)
    with pytest.raises(ValueError, match="dtype"):
        op.infer([x, w, None, Value("r", "float16", (1, 3, 4, 4))], attrs)
    xa = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    wa = RNG.standard_normal((3, 2, 1, 1)).astype(np.float32)
    ra = RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)
    (y,) = op.reference(xa, wa, None, ra, **{**attrs, "act_min": 0.0})
    np.testing.assert_allclose(y, np.maximum(np.einsum("oc,nchw->nohw", wa[:, :, 0, 0], xa) + ra, 0), rtol=1e-5,
                               atol=1e-6)


def test_compiled_model_matches_onnxruntime(tmp_path):
    """End to end through the kernels (3x3 direct convolutions, a 1x1 GEMM, a depthwise with a
    residual) and the C runtime, against onnxruntime."""
    import edgec
    import onnx
    import onnxruntime as ort
    m = _model(shape=(1, 8, 7, 7))
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    edgec.compile(str(path), output_dir=tmp_path / "art", tuning=False)
    feeds = _feeds((1, 8, 7, 7))
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with edgec.load(tmp_path / "art", threads=1) as mod:
        got = mod.run(feeds)
    got = got["y"] if isinstance(got, dict) else got[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    import json
    rep = json.loads((tmp_path / "art" / "report.json").read_text())
    assert [l["op"] for l in rep["layers"]].count("add") == 0


def test_fused_graph_exports_to_onnx():
    """``edgec.export_onnx`` writes a conv with a residual as Conv -> Add [-> Clip]: onnxruntime
    runs the export to the fused graph's results (and never sees the residual as a bias)."""
    import onnxruntime as ort

    from edgec.frontend.onnx_export import export_onnx
    g1 = fa.fuse_activation(_unfused(_model()))
    assert any(n.op == "conv" and len(n.inputs) > 3 and n.inputs[3] for n in g1.nodes)
    proto = export_onnx(g1)
    types = [n.op_type for n in proto.graph.node]
    assert types.count("Conv") == 4 and types.count("Add") == 3 and "Clip" in types
    feeds = _feeds()
    want = run_graph(g1, feeds)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds)
    np.testing.assert_allclose(got[0], want[g1.outputs[0]], rtol=1e-5, atol=1e-5)
