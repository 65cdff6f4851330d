"""The teacher and the student of the example, written directly as ONNX graphs (random weights);
edgec.distill trains them (its torch converter) and writes the weights back.

teacher: ids[N,L] -> Gather(embedding [32768, 128]) -> Transpose -> Unsqueeze -> two Convs (1x3, 1x5,
         128 filters each) -> Relu -> GlobalMaxPool -> Flatten;  features[N,16384] -> Gemm(256) -> Relu;
         Concat -> Dropout -> Gemm(256) -> Relu -> Dropout -> Gemm(classes)          (~8.7 M parameters)
student: features[N,16384] -> Gemm(embed, 128, no bias: an embedding bag);
         ids[N,L] -> Gather(word table [32768, 32]) -> Transpose -> Unsqueeze -> Conv 1x3 (64 filters)
         -> Relu -> GlobalMaxPool -> Flatten (word order);
         Concat -> Gemm(128) -> Relu -> Gemm(classes)                                   (~3.2 M parameters)
         (filters=0: the embedding bag alone, ~2.1 M parameters)
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _init(name, arr):
    return numpy_helper.from_array(np.ascontiguousarray(arr.astype(np.float32)), name)


def _he(rng, fan_in, shape):
    lim = np.sqrt(6.0 / fan_in)
    return rng.uniform(-lim, lim, size=shape)


def _glorot(rng, fan_in, fan_out, shape):
    lim = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-lim, lim, size=shape)


def _model(nodes, inputs, outputs, inits, name):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgec-example")
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


def student(buckets: int, classes: int, embed: int = 64, hidden: int = 64, seed: int = 0, vocab: int = 0,
            max_tokens: int = 0, wdim: int = 0, filters: int = 0, kernel: int = 3) -> onnx.ModelProto:
    """The student. ``filters == 0``: the embedding bag alone. Otherwise also a word-order branch on
    the token ids: ids -> Gather(word table [vocab, wdim]) -> Conv 1 x ``kernel`` (``filters``) -> Relu
    -> GlobalMaxPool, concatenated with the bag before the hidden layer."""
    rng = np.random.default_rng(seed)
    inits = [_init("embed.weight", rng.normal(0.0, 0.05, size=(buckets, embed)))]
    nodes = [helper.make_node("Gemm", ["features", "embed.weight"], ["bag"], name="embed")]
    inputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", buckets])]
    width, fc1_in = embed, "bag"
    if filters:
        inits += [_init("wemb.weight", rng.normal(0.0, 0.1, size=(vocab, wdim))),
                  numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
                  _init("conv.weight", _he(rng, wdim * kernel, (filters, wdim, 1, kernel))),
                  _init("conv.bias", np.zeros(filters))]
        nodes += [helper.make_node("Gather", ["wemb.weight", "ids"], ["e"], name="word_embedding"),
                  helper.make_node("Transpose", ["e"], ["et"], name="to_channels", perm=[0, 2, 1]),
                  helper.make_node("Unsqueeze", ["et", "axis2"], ["e4"], name="to_nchw"),
                  helper.make_node("Conv", ["e4", "conv.weight", "conv.bias"], ["c"], name="conv",
                                   kernel_shape=[1, kernel], pads=[0, kernel // 2, 0, kernel // 2]),
                  helper.make_node("Relu", ["c"], ["rc"], name="relu_conv"),
                  helper.make_node("GlobalMaxPool", ["rc"], ["p"], name="maxpool"),
                  helper.make_node("Flatten", ["p"], ["fp"], name="flatten"),
                  helper.make_node("Concat", ["fp", "bag"], ["cat"], name="concat", axis=1)]
        inputs.insert(0, helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", max_tokens]))
        width, fc1_in = embed + filters, "cat"
    inits += [
        _init("fc1.weight", _he(rng, width, (width, hidden))),
        _init("fc1.bias", np.zeros(hidden)),
        _init("fc2.weight", _glorot(rng, hidden, classes, (hidden, classes))),
        _init("fc2.bias", np.zeros(classes)),
    ]
    nodes += [
        helper.make_node("Gemm", [fc1_in, "fc1.weight", "fc1.bias"], ["h1"], name="fc1"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("Gemm", ["r1", "fc2.weight", "fc2.bias"], ["logits"], name="fc2"),
    ]
    return _model(nodes, inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
                  inits, "student")


def teacher(vocab: int, max_tokens: int, buckets: int, classes: int, dim: int = 128, filters: int = 128,
            kernels=(3, 5), bag: int = 256, hidden: int = 256, dropout: float = 0.5, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [_init("emb.weight", rng.normal(0.0, 0.1, size=(vocab, dim))),
             numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
             _init("bag.weight", rng.normal(0.0, 0.05, size=(buckets, bag))),
             _init("bag.bias", np.zeros(bag))]
    nodes = [helper.make_node("Gather", ["emb.weight", "ids"], ["e"], name="embedding"),
             helper.make_node("Transpose", ["e"], ["et"], name="to_channels", perm=[0, 2, 1]),
             helper.make_node("Unsqueeze", ["et", "axis2"], ["e4"], name="to_nchw")]
    pooled = []
    for k in kernels:
        inits += [_init(f"conv{k}.weight", _he(rng, dim * k, (filters, dim, 1, k))),
                  _init(f"conv{k}.bias", np.zeros(filters))]
        nodes += [helper.make_node("Conv", ["e4", f"conv{k}.weight", f"conv{k}.bias"], [f"c{k}"], name=f"conv{k}",
                                   kernel_shape=[1, k], pads=[0, k // 2, 0, k // 2]),
                  helper.make_node("Relu", [f"c{k}"], [f"rc{k}"], name=f"relu_conv{k}"),
                  helper.make_node("GlobalMaxPool", [f"rc{k}"], [f"p{k}"], name=f"maxpool{k}"),
                  helper.make_node("Flatten", [f"p{k}"], [f"f{k}"], name=f"flatten{k}")]
        pooled.append(f"f{k}")
    width = filters * len(kernels) + bag
    inits += [_init("fc1.weight", _he(rng, width, (width, hidden))), _init("fc1.bias", np.zeros(hidden)),
              _init("fc2.weight", _glorot(rng, hidden, classes, (hidden, classes))), _init("fc2.bias", np.zeros(classes)),
              numpy_helper.from_array(np.array(dropout, dtype=np.float32), "drop_ratio")]
    nodes += [helper.make_node("Gemm", ["features", "bag.weight", "bag.bias"], ["b"], name="bag"),
              helper.make_node("Relu", ["b"], ["rb"], name="relu_bag"),
              helper.make_node("Concat", pooled + ["rb"], ["cat"], name="concat", axis=1),
              helper.make_node("Dropout", ["cat", "drop_ratio"], ["d1"], name="dropout1"),
              helper.make_node("Gemm", ["d1", "fc1.weight", "fc1.bias"], ["h"], name="fc1"),
              helper.make_node("Relu", ["h"], ["rh"], name="relu1"),
              helper.make_node("Dropout", ["rh", "drop_ratio"], ["d2"], name="dropout2"),
              helper.make_node("Gemm", ["d2", "fc2.weight", "fc2.bias"], ["logits"], name="fc2")]
    return _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", max_tokens]),
                          helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", buckets])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits, "teacher")


def parameter_count(model: onnx.ModelProto) -> int:
    return int(sum(np.prod(i.dims) for i in model.graph.initializer
                   if i.data_type == TensorProto.FLOAT and len(i.dims) > 0))
