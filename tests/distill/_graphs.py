"""Small ONNX graphs for the distillation tests (random weights, fixed seeds)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _f(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _model(nodes, inputs, outputs, inits, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


def mlp(n_in=32, hidden=16, classes=3, seed=0, batch="N", softmax=False):
    """features -> Gemm -> Relu -> MatMul + Add (-> Softmax)."""
    r = np.random.default_rng(seed)
    inits = [_f("w1", r.normal(0, 0.3, (n_in, hidden))), _f("b1", r.normal(0, 0.1, hidden)),
             _f("w2", r.normal(0, 0.3, (hidden, classes))), _f("b2", r.normal(0, 0.1, classes))]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["m"], name="fc2"),
             helper.make_node("Add", ["m", "b2"], ["logits"], name="bias2")]
    out = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1))
        out = "probs"
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, n_in])],
                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, classes])], inits)


def embedding_bag(vocab=50, dim=8, length=6, classes=4, seed=0):
    """ids -> Gather -> ReduceMean(axis 1) -> Gemm(transB) -> Tanh -> Gemm."""
    r = np.random.default_rng(seed)
    inits = [_f("emb", r.normal(0, 0.5, (vocab, dim))), _f("w1", r.normal(0, 0.4, (12, dim))),
             _f("b1", r.normal(0, 0.1, 12)), _f("w2", r.normal(0, 0.4, (12, classes))),
             _f("b2", r.normal(0, 0.1, classes))]
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"], name="gather"),
             helper.make_node("ReduceMean", ["e"], ["bag"], name="mean", axes=[1], keepdims=0),
             helper.make_node("Gemm", ["bag", "w1", "b1"], ["h"], name="fc1", transB=1, alpha=0.5, beta=2.0),
             helper.make_node("Tanh", ["h"], ["t"], name="tanh"),
             helper.make_node("Gemm", ["t", "w2", "b2"], ["logits"], name="fc2")]
    return _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", length])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)


def convnet(classes=5, seed=0, batch=1):
    """x[1,3,8,8] -> Conv(pads, stride) -> BatchNorm -> Relu -> MaxPool -> Conv 1x1 -> GlobalAveragePool
    -> Flatten -> Reshape to [1, 6] -> Gemm, a static batch 1 as edgec.prune exports it."""
    r = np.random.default_rng(seed)
    inits = [_f("cw", r.normal(0, 0.3, (4, 3, 3, 3))), _f("cb", r.normal(0, 0.1, 4)),
             _f("g", r.uniform(0.5, 1.5, 4)), _f("be", r.normal(0, 0.1, 4)), _f("mu", r.normal(0, 0.1, 4)),
             _f("var", r.uniform(0.5, 1.5, 4)), _f("cw2", r.normal(0, 0.3, (6, 4, 1, 1))),
             numpy_helper.from_array(np.array([batch, 6], dtype=np.int64), "shape"),
             _f("w", r.normal(0, 0.3, (6, classes))), _f("b", r.normal(0, 0.1, classes))]
    nodes = [helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              strides=[1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["bn"], name="bn", epsilon=1e-3),
             helper.make_node("Relu", ["bn"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p", "cw2"], ["c2"], name="conv2", kernel_shape=[1, 1]),
             helper.make_node("GlobalAveragePool", ["c2"], ["gp"], name="gap"),
             helper.make_node("Flatten", ["gp"], ["f"], name="flatten"),
             helper.make_node("Reshape", ["f", "shape"], ["f2"], name="reshape"),
             helper.make_node("Gemm", ["f2", "w", "b"], ["logits"], name="fc")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])], inits)


def ort_run(model, feeds):
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]
