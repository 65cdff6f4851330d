"""Attention in int8 on the C runtime: softmax(q k^T / 4) v with [1, 2, 16, 8] heads (ONNX
MatMul / Transpose / Div / Softmax / MatMul), calibrated on 32 samples. Both matmuls have two
runtime operands and become qmatmul (batch axes), the division a requantize, the transpose a
pass-through on bytes; the softmax stays float between a dequantize and a quantize. The artifact
must reproduce the reference interpreter on the quantized graph (the float softmax may move a
quantize by one step: within one output quantum, >= 99% identical) and stay close to fp32."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgec
from edgec.compiler import prepare_graph
from edgec.reference import run_graph

pytestmark = pytest.mark.tvm

SHAPE = (1, 2, 16, 8)


def _model(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2], name="kt"),
             helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
             helper.make_node("Div", ["s", "four"], ["sc"], name="scale"),
             helper.make_node("Softmax", ["sc"], ["p"], axis=-1, name="softmax"),
             helper.make_node("MatMul", ["p", "v"], ["o"], name="pv")]
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(SHAPE)) for n in "qkv"]
    g = helper.make_graph(nodes, "attn", ins, [helper.make_tensor_value_info("o", TensorProto.FLOAT, list(SHAPE))],
                          [numpy_helper.from_array(np.array(4.0, np.float32), "four")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_attention_int8(tmp_path):
    _model(tmp_path / "attn.onnx")
    rng = np.random.default_rng(0)
    calib = {n: rng.normal(size=(32,) + SHAPE[1:]).astype(np.float32) for n in "qkv"}
    opts = dict(quantize="int8", calib=calib)
    out = edgec.compile(str(tmp_path / "attn.onnx"), output_dir=tmp_path / "art", **opts)
    f32 = edgec.compile(str(tmp_path / "attn.onnx"), output_dir=tmp_path / "fp32")
    graph, _ = prepare_graph(str(tmp_path / "attn.onnx"), **opts)
    q = json.loads((out / "report.json").read_text())["quantization"]
    choices = {layer["node"]: layer["choice"] for layer in q["layers"]}
    assert choices["qk"] == choices["pv"] == "qmatmul" and choices["scale"] == "requantize"
    assert choices["softmax"].startswith("float")
    deq = next(n for n in graph.nodes if n.op == "dequantize" and n.outputs[0] == "o")
    step = deq.attrs["scale"]
    mi, mf = edgec.load(out), edgec.load(f32)
    same, total, worst = 0, 0, 0.0
    for k in range(8):
        feeds = {n: rng.normal(size=SHAPE).astype(np.float32) for n in "qkv"}
        got = mi.run(feeds)["o"]
        want = run_graph(graph, feeds)["o"]
        assert np.abs(got - want).max() <= step * 1.0001
        same += int((got == want).sum())
        total += got.size
        worst = max(worst, float(np.abs(got - mf.run(feeds)["o"]).max()))
    print(f"\nattention int8: {same}/{total} outputs identical to the reference, max |int8 - fp32| {worst:.4f} "
          f"(output step {step:.4f})")
    assert same >= 0.99 * total
    assert worst <= 12 * step
