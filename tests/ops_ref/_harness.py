"""One-node ONNX models, run by onnxruntime and by edgec's frontend + reference interpreter.

    model = node_model("LeakyRelu", {"x": x}, attrs={"alpha": 0.2}, opset=16)
    graph = check(model, {"x": x})        # asserts edgec == onnxruntime, returns the IR graph

Runtime inputs (``feeds``) are graph inputs, so nothing folds away; ``consts`` become
initializers (shape tensors, axes, pads, ...). onnxruntime runs with graph optimizations
disabled. Floats compare with rtol 1e-5 (float16: 1e-3) plus a tiny atol; integers and bools
must match exactly, and dtype and shape must always match.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgec.frontend.onnx_import import import_onnx
from edgec.reference import run_graph


def _vi(name: str, arr: np.ndarray):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape))


def node_model(op_type: str, feeds: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray] | None = None,
               inputs: Sequence[str] | None = None, outputs: Sequence[str] = ("y",), attrs: dict | None = None,
               opset: int = 17) -> onnx.ModelProto:
    """A model with one ``op_type`` node. ``inputs`` lists the node's inputs in order (names from
    ``feeds``/``consts``, "" for an absent optional); by default feeds then consts, in dict order."""
    consts = dict(consts or {})
    if inputs is None:
        inputs = list(feeds) + list(consts)
    node = helper.make_node(op_type, list(inputs), list(outputs), **(attrs or {}))
    graph = helper.make_graph(
        [node], f"{op_type.lower()}_test",
        [_vi(k, np.asarray(v)) for k, v in feeds.items()],
        [onnx.ValueInfoProto(name=o) for o in outputs if o],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = min(helper.find_min_ir_version_for(opsets), 10)
    model.ir_version = max(model.ir_version, 3)
    return model


def run_ort(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, dict(feeds))


def run_ref(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]):
    """(IR graph, [outputs in ONNX graph order]) through import_onnx + run_graph."""
    graph = import_onnx(model)
    got = run_graph(graph, dict(feeds))
    return graph, [got[o] for o in graph.outputs]


def assert_match(got: np.ndarray, want: np.ndarray, rtol: float | None = None, atol: float = 1e-6, what: str = "y"):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, onnxruntime gives {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, onnxruntime gives {want.shape}"
    if want.dtype.kind == "f":
        if rtol is None:
            rtol = 1e-3 if want.dtype == np.float16 else 1e-5
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol,
                                   equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def check(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], rtol: float | None = None, atol: float = 1e-6,
          expect_ops: Sequence[str] | None = None):
    """Assert that edgec's reference gives onnxruntime's outputs; returns the IR graph.

    ``expect_ops``: the IR ops the graph must consist of (in order), to prove nothing was folded
    or dropped by accident."""
    want = run_ort(model, feeds)
    graph, got = run_ref(model, feeds)
    assert len(got) == len(want), f"{len(got)} outputs, onnxruntime gives {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        assert_match(g, w, rtol, atol, what=f"output {k}")
    if expect_ops is not None:
        assert [n.op for n in graph.nodes] == list(expect_ops), str(graph)
    return graph


def rand(shape, dtype="float32", seed: int = 0, low: float = -3.0, high: float = 3.0) -> np.ndarray:
    """Deterministic test data: uniform floats, integers in [low, high], or random bools."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.uniform(low, high, size=shape).astype(dt)
    if dt.kind == "b":
        return rng.random(size=shape) < 0.5
    lo, hi = int(low), int(high)
    if dt.kind == "u":
        lo = max(lo, 0)
    return rng.integers(lo, hi + 1, size=shape).astype(dt)
