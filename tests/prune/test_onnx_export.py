"""export_onnx: ONNX -> IR -> ONNX computes the same function; unsupported ops are named."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.frontend.onnx_export import OnnxExportError, export_onnx
from edgec.frontend.onnx_import import import_onnx
from edgec.ir.graph import Graph, Node, Value


def _run(model, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so).run(None, feeds)


def test_mlp_and_tensor_ops_round_trip():
    rng = np.random.default_rng(0)
    c = lambda n, a: numpy_helper.from_array(np.asarray(a), n)  # noqa: E731
    inits = [c("w1", rng.standard_normal((8, 12)).astype(np.float32)), c("b1", rng.standard_normal(12).astype(np.float32)),
             c("w2", rng.standard_normal((12, 6)).astype(np.float32)), c("shape", np.array([2, 3, 2], np.int64)),
             c("lo", np.float32(-0.5)), c("hi", np.float32(0.5)),
             c("st", np.array([1], np.int64)), c("en", np.array([3], np.int64)), c("ax1", np.array([1], np.int64)),
             c("pads", np.array([0, 1, 0, 0, 1, 0], np.int64))]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], alpha=0.5),
             helper.make_node("Sigmoid", ["h"], ["s"]),
             helper.make_node("MatMul", ["s", "w2"], ["m"]),
             helper.make_node("Reshape", ["m", "shape"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
             helper.make_node("Clip", ["t", "lo", "hi"], ["cl"]),
             helper.make_node("Pad", ["cl", "pads"], ["p"], mode="constant"),
             helper.make_node("Slice", ["p", "st", "en", "ax1"], ["sl"]),
             helper.make_node("ReduceMean", ["sl"], ["rm"], axes=[2], keepdims=0),
             helper.make_node("Concat", ["rm", "rm"], ["cc"], axis=1),
             helper.make_node("LeakyRelu", ["cc"], ["lr"], alpha=0.2),
             helper.make_node("Softmax", ["lr"], ["y"], axis=-1)]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((2, 8)).astype(np.float32)
    exported = export_onnx(import_onnx(model))
    np.testing.assert_allclose(_run(exported, {"x": x})[0], _run(model, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_unsupported_ops_are_listed():
    g = Graph([Node("qlut", ("x",), ("t",), {"table": tuple(range(256)), "out_dtype": "uint8"}, "lut1"),
               Node("qlut", ("t",), ("y",), {"table": tuple(range(256)), "out_dtype": "uint8"}, "lut2")],
              {"x": Value("x", "uint8", (1, 4)), "t": Value("t", "uint8", (1, 4)), "y": Value("y", "uint8", (1, 4))},
              ["x"], ["y"])
    with pytest.raises(OnnxExportError, match="2 node.*lut1.*qlut.*lut2"):
        export_onnx(g)
