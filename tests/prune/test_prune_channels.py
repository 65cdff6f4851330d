"""Structured pruning: validity, MACs against a hand count, numerics in edgec and onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.frontend.onnx_export import export_onnx
from edgec.frontend.onnx_import import import_onnx
from edgec.ir.printer import print_graph
from edgec.ir.verify import verify
from edgec.passes import run_pipeline
from edgec.passes.prune_channels import PruneOptions, PruneOptionsError, prune_channels
from edgec.reference import run_graph
from tests.prune._models import inception_like, mobilenet_like, resnet_like

BUILDERS = {"resnet": resnet_like, "inception": inception_like, "mobilenet": mobilenet_like}


def _x(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _conv_macs(cin, cout, k, hw, groups=1):
    return cout * hw * hw * (cin // groups) * k * k


def _resnet_macs(c16: int, c32: int) -> dict[str, int]:
    """Per layer MACs of resnet_like with c16 / c32 channels left in its two stages (hand count)."""
    return {"stem": _conv_macs(3, c16, 3, 16), "b1c1": _conv_macs(c16, c16, 3, 16),
            "b1c2": _conv_macs(c16, c16, 3, 16), "b2c1": _conv_macs(c16, c32, 3, 8),
            "b2c2": _conv_macs(c32, c32, 3, 8), "b2sc": _conv_macs(c16, c32, 1, 8),
            "b3c1": _conv_macs(c32, c32, 3, 8), "b3c2": _conv_macs(c32, c32, 3, 8), "fc": c32 * 10}


def _inception_macs(s, b1, b2, b3, mix) -> dict[str, int]:
    return {"stem": _conv_macs(4, s, 3, 12), "br1": _conv_macs(s, b1, 1, 12), "br2": _conv_macs(s, b2, 3, 12),
            "br3": _conv_macs(s, b3, 1, 12), "mix": _conv_macs(b1 + b2 + b3 + s, mix, 1, 12), "fc": mix * 5}


def _mobilenet_macs(c1, p1, p2) -> dict[str, int]:
    return {"c1": _conv_macs(3, c1, 3, 8), "dw1": _conv_macs(c1, c1, 3, 8, c1), "pw1": _conv_macs(c1, p1, 1, 8),
            "dw2": _conv_macs(p1, p1, 3, 8, p1), "pw2": _conv_macs(p1, p2, 1, 8), "fc": p2 * 64 * 10}


EXPECTED = {  # (before, after ratio 0.5)
    "resnet": (_resnet_macs(16, 32), _resnet_macs(8, 16)),
    "inception": (_inception_macs(8, 8, 12, 4, 16), _inception_macs(4, 4, 6, 2, 8)),
    "mobilenet": (_mobilenet_macs(16, 24, 32), _mobilenet_macs(8, 12, 16)),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_macs_fall_by_the_hand_counted_amount(name):
    model, _ = BUILDERS[name]()
    graph = import_onnx(model)
    pruned, report = prune_channels(graph, PruneOptions(ratio=0.5))
    verify(pruned)
    before, after = EXPECTED[name]
    assert report.macs_before == sum(before.values())
    assert report.macs_after == sum(after.values())
    rows = {r.name: r for r in report.layers}
    for layer in ("stem", "b1c1", "b2sc", "br2", "br3", "pw1", "fc"):
        if layer in rows:
            assert (rows[layer].macs_before, rows[layer].macs_after) == (before[layer], after[layer])
    assert report.macs_after < 0.4 * report.macs_before
    # outputs keep their shapes; the classifier's outputs are never pruned
    assert [pruned.values[o].shape for o in pruned.outputs] == [graph.values[o].shape for o in graph.outputs]
    assert rows["fc"].channels_after == rows["fc"].channels_before


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_exported_pruned_model_matches_reference(name):
    model, _ = BUILDERS[name](seed=3)
    graph = import_onnx(model)
    pruned, _ = prune_channels(graph, PruneOptions(ratio=0.5, norm="l2"))
    x = _x(graph.values["x"].shape)
    want = run_graph(pruned, {"x": x})[pruned.outputs[0]]
    got = _ort(export_onnx(pruned), x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_pruning_dead_channels_changes_nothing(name):
    """Half of every layer's filters are zero: they are the ones removed, and the function is unchanged."""
    model, _ = BUILDERS[name](seed=5, dead=True)
    pruned, report = prune_channels(import_onnx(model), PruneOptions(ratio=0.5))
    x = _x(tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim))
    np.testing.assert_allclose(_ort(export_onnx(pruned), x), _ort(model, x), rtol=1e-5, atol=1e-5)
    assert report.macs_after < report.macs_before


def test_after_default_pipeline_batchnorm_folded():
    model, _ = resnet_like(seed=2)
    graph = run_pipeline(import_onnx(model))
    assert not any(n.op == "batch_norm" for n in graph.nodes)
    pruned, report = prune_channels(graph, PruneOptions(ratio=0.5))
    verify(pruned)
    assert report.macs_after == sum(EXPECTED["resnet"][1].values())
    x = _x((1, 3, 16, 16))
    np.testing.assert_allclose(_ort(export_onnx(pruned), x), run_graph(pruned, {"x": x})[pruned.outputs[0]],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.compiled
@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_compiled_artifact_matches_onnxruntime(name, tmp_path):
    model, _ = BUILDERS[name](seed=4)
    proto, report = edgec.prune(model, ratio=0.5)
    assert report.macs_after < report.macs_before
    x = _x((1, 3, 16, 16))
    with edgec.load(edgec.compile(proto, output_dir=tmp_path / "art")) as m:
        got = list(m.run({"x": x}).values())[0]
    np.testing.assert_allclose(got, _ort(proto, x), rtol=1e-4, atol=1e-5)


def test_ratio_zero_changes_nothing():
    model, _ = inception_like()
    graph = import_onnx(model)
    pruned, report = prune_channels(graph, PruneOptions(ratio=0.0))
    assert print_graph(pruned) == print_graph(graph)
    for n_old, n_new in zip(graph.nodes, pruned.nodes):
        for a, b in zip(n_old.inputs, n_new.inputs):
            assert a == b
    assert report.macs_after == report.macs_before
    assert all(r.channels_after == r.channels_before for r in report.layers)


def _two_conv_model(norms: np.ndarray, out_is_first: bool = False):
    """x[1,2,5,5] -> conv a (len(norms) filters, filter j has L1 norm norms[j]) -> relu -> conv b (3) -> y."""
    c = len(norms)
    wa = np.zeros((c, 2, 3, 3), np.float32)
    wa[:, 0, 1, 1] = norms
    wb = np.random.default_rng(0).standard_normal((3, c, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(wa, "wa"), numpy_helper.from_array(wb, "wb")]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="a", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["a"], ["r"], name="r"),
             helper.make_node("Conv", ["r", "wb"], ["y"], name="b", kernel_shape=[1, 1])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5, 5])]
    if out_is_first:
        outs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, c, 5, 5]))
    g = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
                          outs, initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_smallest_norm_filters_go_and_consumers_are_rewired():
    norms = np.array([5.0, 0.1, 3.0, 0.2, 4.0, 0.3], np.float32)
    graph = import_onnx(_two_conv_model(norms))
    pruned, report = prune_channels(graph, PruneOptions(ratio=0.5))
    conv_a, conv_b = [n for n in pruned.nodes if n.op == "conv"]
    np.testing.assert_array_equal(pruned.values[conv_a.inputs[1]].const[:, 0, 1, 1], [5.0, 3.0, 4.0])
    wb = graph.values[[n for n in graph.nodes if n.op == "conv"][1].inputs[1]].const
    np.testing.assert_array_equal(pruned.values[conv_b.inputs[1]].const, wb[:, [0, 2, 4]])
    assert [(r.name, r.channels_before, r.channels_after) for r in report.layers] == [("a", 6, 3), ("b", 3, 3)]


def test_channels_feeding_graph_outputs_are_kept():
    graph = import_onnx(_two_conv_model(np.arange(1, 7, dtype=np.float32), out_is_first=True))
    pruned, report = prune_channels(graph, PruneOptions(ratio=0.5))
    assert report.macs_after == report.macs_before
    assert any("graph output" in why for why in report.skipped_groups)


def test_per_layer_skip_and_min_channels():
    model, _ = resnet_like()
    graph = import_onnx(model)
    _, rep = prune_channels(graph, PruneOptions(ratio=0.5, per_layer={"b1c1": 0.25}, skip={"b3c1"}, min_channels=10))
    rows = {r.name: r.channels_after for r in rep.layers}
    assert rows["b1c1"] == 12          # 16 * 0.75
    assert rows["b3c1"] == 32          # skipped
    assert rows["stem"] == 10          # 16 * 0.5 = 8 < min_channels
    assert rows["b2c2"] == rows["b2sc"] == rows["b3c2"] == 16   # one residual group


def test_add_of_two_concats_is_kept_whole_and_valid():
    """A group fed by two derivations (add(concat, concat)) is skipped; the rest still prunes."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []
    for k in range(4):
        inits.append(numpy_helper.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), f"w{k}"))
        nodes.append(helper.make_node("Conv", ["x", f"w{k}"], [f"c{k}"], name=f"c{k}", kernel_shape=[1, 1]))
    inits.append(numpy_helper.from_array(rng.standard_normal((6, 8, 1, 1)).astype(np.float32), "wo"))
    nodes += [helper.make_node("Concat", ["c0", "c1"], ["k0"], axis=1), helper.make_node("Concat", ["c2", "c3"], ["k1"], axis=1),
              helper.make_node("Add", ["k0", "k1"], ["s"]), helper.make_node("Conv", ["s", "wo"], ["y"], name="o", kernel_shape=[1, 1])]
    g = helper.make_graph(nodes, "cc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 4, 4])], initializer=inits)
    graph = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    pruned, report = prune_channels(graph, PruneOptions(ratio=0.5))
    verify(pruned)
    assert report.macs_after == report.macs_before
    assert len(report.skipped_groups) == 5


@pytest.mark.parametrize("kw", [{"ratio": 1.0}, {"ratio": -0.1}, {"norm": "l3"}, {"min_channels": 0},
                                {"per_layer": {"a": 2.0}}])
def test_bad_options(kw):
    with pytest.raises(PruneOptionsError):
        PruneOptions(**kw)


def _mlp_model(dead: bool):
    """x[4,16] -> MatMul W1[16,32] + b1 -> Relu -> Gemm 32->24 -> Relu -> Gemm 24->3 (y)."""
    rng = np.random.default_rng(11)
    w1, b1 = rng.standard_normal((16, 32)).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    w2, b2 = rng.standard_normal((24, 32)).astype(np.float32), rng.standard_normal(24).astype(np.float32)
    w3 = rng.standard_normal((24, 3)).astype(np.float32)
    if dead:
        w1[:, ::2], b1[::2], w2[12:], b2[12:] = 0, 0, 0, 0
    inits = [numpy_helper.from_array(a, n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2), ("w3", w3))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m"], name="fc1"), helper.make_node("Add", ["m", "b1"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Gemm", ["r", "w2", "b2"], ["h"], name="fc2", transB=1),
             helper.make_node("Relu", ["h"], ["r2"]), helper.make_node("Gemm", ["r2", "w3"], ["y"], name="fc3")]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("dead", [False, True])
def test_mlp_matmul_and_gemm_neurons(dead):
    model = _mlp_model(dead)
    pruned, report = prune_channels(import_onnx(model), PruneOptions(ratio=0.5))
    verify(pruned)
    assert [(r.name, r.channels_after) for r in report.layers] == [("fc1", 16), ("fc2", 12), ("fc3", 3)]
    assert report.macs_after == 4 * (16 * 16 + 16 * 12 + 12 * 3)
    x = _x((4, 16)).reshape(4, 16)
    got = ort.InferenceSession(export_onnx(pruned).SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, run_graph(pruned, {"x": x})[pruned.outputs[0]], rtol=1e-4, atol=1e-4)
    if dead:
        np.testing.assert_allclose(got, ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0],
                                   rtol=1e-5, atol=1e-4)


def test_squeeze_excitation_scale_joins_the_group():
    """mul(x, sigmoid(conv(relu(conv(gap(x)))))): the expanding 1x1 conv shares x's channel set."""
    rng = np.random.default_rng(2)
    ws = {"w0": (8, 3, 3, 3), "wr": (2, 8, 1, 1), "we": (8, 2, 1, 1), "wo": (4, 8, 1, 1)}
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in ws.items()]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c"], name="c0", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Conv", ["g", "wr"], ["r0"], name="reduce"), helper.make_node("Relu", ["r0"], ["r"]),
             helper.make_node("Conv", ["r", "we"], ["e"], name="expand"), helper.make_node("Sigmoid", ["e"], ["s"]),
             helper.make_node("Mul", ["c", "s"], ["m"]), helper.make_node("Conv", ["m", "wo"], ["y"], name="out")]
    g = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    pruned, report = prune_channels(import_onnx(model), PruneOptions(ratio=0.5))
    verify(pruned)
    rows = {r.name: r.channels_after for r in report.layers}
    assert rows == {"c0": 4, "reduce": 1, "expand": 4, "out": 4}
    x = _x((1, 3, 6, 6))
    np.testing.assert_allclose(_ort(export_onnx(pruned), x), run_graph(pruned, {"x": x})[pruned.outputs[0]],
                               rtol=1e-4, atol=1e-5)
