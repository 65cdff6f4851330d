"""Unstructured magnitude pruning: exact sparsities, threshold property, numerics, compressed size."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import edgec
from edgec.frontend.onnx_export import export_onnx
from edgec.frontend.onnx_import import import_onnx
from edgec.ir.verify import verify
from edgec.passes.prune_weights import PruneWeightsOptions, PruneWeightsOptionsError, prune_weights
from edgec.reference import run_graph
from tests.prune._models import mobilenet_like, resnet_like

_WEIGHTED = ("conv", "dense")


def _weights(graph):
    return {n.name: graph.values[n.inputs[1]].const for n in graph.nodes if n.op in _WEIGHTED}


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.9])
def test_layer_scope_reaches_the_ratio_in_every_layer(ratio):
    graph = import_onnx(resnet_like()[0])
    pruned, report = prune_weights(graph, PruneWeightsOptions(ratio=ratio))
    verify(pruned)
    before, after = _weights(graph), _weights(pruned)
    for name, w in after.items():
        assert np.count_nonzero(w == 0) == round(ratio * w.size)
        kept = w != 0
        np.testing.assert_array_equal(w[kept], before[name][kept])          # survivors unchanged
        assert np.abs(before[name][~kept]).max() <= np.abs(w[kept]).min()  # the smallest went
    assert {r.name: r.zeros_after for r in report.layers} == {k: int(np.count_nonzero(v == 0)) for k, v in after.items()}
    assert [n.op for n in pruned.nodes] == [n.op for n in graph.nodes]


def test_global_scope_one_threshold():
    graph = import_onnx(resnet_like()[0])
    pruned, report = prune_weights(graph, PruneWeightsOptions(ratio=0.6, scope="global"))
    before, after = _weights(graph), _weights(pruned)
    total = sum(w.size for w in after.values())
    zeros = sum(int(np.count_nonzero(w == 0)) for w in after.values())
    assert zeros == round(0.6 * total)
    assert report.sparsity == pytest.approx(zeros / total)
    cut = max(np.abs(before[k][after[k] == 0]).max() for k in after if np.any(after[k] == 0))
    alive = min(np.abs(after[k][after[k] != 0]).min() for k in after)
    assert cut <= alive
    sp = [r.sparsity for r in report.layers]
    assert max(sp) - min(sp) > 0.05      # layers end up with different sparsities


def test_per_layer_ratio_and_skip():
    graph = import_onnx(resnet_like()[0])
    _, report = prune_weights(graph, PruneWeightsOptions(ratio=0.5, per_layer={"b2c2": 0.8}, skip={"fc"}))
    rows = {r.name: r for r in report.layers}
    assert rows["b2c2"].sparsity == pytest.approx(0.8, abs=1e-3)
    assert rows["stem"].sparsity == pytest.approx(0.5, abs=2e-3)
    assert "fc" not in rows


@pytest.mark.parametrize("builder", [resnet_like, mobilenet_like])
def test_outputs_match_onnxruntime_and_blob_compresses(builder):
    graph = import_onnx(builder(seed=7)[0])
    pruned, report = prune_weights(graph, PruneWeightsOptions(ratio=0.5))
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got = ort.InferenceSession(export_onnx(pruned).SerializeToString(), so).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, run_graph(pruned, {"x": x})[pruned.outputs[0]], rtol=1e-4, atol=1e-5)
    assert report.compressed_bytes_after < 0.75 * report.compressed_bytes_before


def test_ratio_zero_and_python_api(tmp_path):
    model = resnet_like()[0]
    graph = import_onnx(model)
    pruned, report = prune_weights(graph, PruneWeightsOptions(ratio=0.0))
    assert [n.inputs for n in pruned.nodes] == [n.inputs for n in graph.nodes]
    assert report.compressed_bytes_after == report.compressed_bytes_before
    proto, rep = edgec.prune(model, ratio=0.5, mode="unstructured", output=tmp_path / "p.onnx")
    assert (tmp_path / "p.onnx").is_file() and rep.sparsity == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("kw", [{"ratio": 1.5}, {"scope": "model"}, {"scope": "global", "per_layer": {"a": 0.1}}])
def test_bad_options(kw):
    with pytest.raises(PruneWeightsOptionsError):
        PruneWeightsOptions(**kw)
