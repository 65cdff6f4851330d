"""DS-CNN (benchmarks/models.py ``dscnn``, the issue 6 latency model) in int8 end to end: the C
runtime's output equals the reference interpreter on the same quantized graph (its 64-channel
3x3 depthwise convs take the tap-quad kernel, the pointwise / first conv the packed conv_isa with
the bias as the accumulators' initial value and the unsigned ReLU tail), and ``Model.run``'s
one-input fast path behaves as the general path (results, a non-contiguous input, wrong dtype /
shape / names, a closed model)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import edgec
from edgec.compiler import prepare_graph
from edgec.errors import RuntimeFailure, RuntimeInputError
from edgec.reference import run_graph

SHAPES = {"input": (1, 1, 49, 10)}


def _dscnn(repo_root, tmp_path) -> str:
    spec = importlib.util.spec_from_file_location("edgec_bench_models", repo_root / "benchmarks" / "models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import onnx
    path = tmp_path / "dscnn.onnx"
    onnx.save(mod.dscnn(), path)
    return str(path)


@pytest.fixture(scope="module")
def dscnn_int8(repo_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dscnn_e2e")
    model = _dscnn(repo_root, tmp)
    rng = np.random.default_rng(0)
    opts = dict(input_shapes=SHAPES, quantize="int8", calib={"input": rng.standard_normal((32, 1, 49, 10)).astype(np.float32)})
    art = edgec.compile(model, output_dir=tmp / "int8", tuning=False, **opts)
    graph, _ = prepare_graph(model, **opts)
    return art, graph


@pytest.mark.tvm
def test_matches_reference(dscnn_int8):
    art, graph = dscnn_int8
    dw = [n for n in graph.nodes if n.op == "qconv" and int(n.attrs.get("group", 1)) > 1]
    assert len(dw) == 4 and all(n.attrs.get("acc_bound") is not None for n in dw)
    name = graph.outputs[0]
    rng = np.random.default_rng(1)
    with edgec.load(art) as m:
        for _ in range(6):
            x = (rng.standard_normal(SHAPES["input"]) * rng.uniform(0.5, 3.0)).astype(np.float32)
            got = m.run({"input": x})[name]
            np.testing.assert_allclose(got, run_graph(graph, {"input": x})[name], rtol=0, atol=1e-6)


@pytest.mark.tvm
def test_run_fast_path(dscnn_int8):
    art, graph = dscnn_int8
    name = graph.outputs[0]
    rng = np.random.default_rng(2)
    x = rng.standard_normal(SHAPES["input"]).astype(np.float32)
    m = edgec.load(art)
    want = m.run_profiled({"input": x})[0][name]          # the general path
    np.testing.assert_array_equal(m.run({"input": x})[name], want)
    view = m.run({"input": x}, copy=False)[name]
    np.testing.assert_array_equal(view, want)
    # a non-contiguous array of the right dtype and shape: copied through a contiguous one
    big = np.zeros((1, 1, 49, 20), np.float32)
    big[..., ::2] = x
    nc = big[..., ::2]
    assert not nc.flags.c_contiguous
    np.testing.assert_array_equal(m.run({"input": nc})[name], want)
    # a byte-swapped float32 array is not the input's dtype object: the general path converts or refuses
    with pytest.raises(RuntimeInputError):
        m.run({"input": x.astype(">f4")})
    with pytest.raises(RuntimeInputError):
        m.run({"input": x.astype(np.float64)})
    with pytest.raises(RuntimeInputError):
        m.run({"input": x[..., :5]})
    with pytest.raises(RuntimeInputError):
        m.run({"wrong": x})
    with pytest.raises(RuntimeInputError):
        m.run({"input": x, "extra": x})
    m.close()
    with pytest.raises(RuntimeFailure):
        m.run({"input": x})
