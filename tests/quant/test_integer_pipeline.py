"""The pieces together on real data: calibrate the SMS spam MLP on real messages, then run its
first layer (dense + ReLU) with integer arithmetic only (uint8 activations, per-channel int8
weights, int32 bias, fixed-point requantization with ReLU fused as the clamp) and check it
against the float graph. This is the arithmetic the quantization pass and the kernels will use."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import shared_data

from edgec.quant import (CalibrationOptions, calibrate, compute_scale_zp, dequantize, load_calibration, quantize,
                         quantize_bias, quantize_multiplier, quantize_weights_per_channel, requantize)

DATA = shared_data("textcls", "sms_spam")


@pytest.fixture(scope="module")
def setup(repo_root):
    if not (DATA / "train.tsv").is_file():
        pytest.fail(f"{DATA} is not available (set EDGEC_SHARED_DIR to the shared folder)", pytrace=False)
    from edgec.frontend.onnx_import import import_onnx
    from edgec.passes import run_pipeline
    spec = importlib.util.spec_from_file_location("make_example_model", repo_root / "tools/make_example_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    graph = run_pipeline(import_onnx(repo_root / "tests/data/models/sms_spam_mlp.onnx", input_shapes={"features": (1, 1024)}))
    train, _ = mod.read_tsv(DATA / "train.tsv")
    test, _ = mod.read_tsv(DATA / "test.tsv")
    feat = lambda texts: np.stack([mod.featurize(t) for t in texts]).astype(np.float32)  # noqa: E731
    return graph, feat(train[:300]), feat(test[:300])


def _int8_first_layer(graph, ranges, x):
    """relu(x @ W.T + b) with integer arithmetic only; returns (q_out uint8, s_out, z_out)."""
    dense = next(n for n in graph.nodes if n.op == "dense")
    relu = next(n for n in graph.nodes if n.op == "relu")
    w, b = graph.values[dense.inputs[1]].const, graph.values[dense.inputs[2]].const
    s_x, z_x = compute_scale_zp(*ranges[dense.inputs[0]], 0, 255)
    s_o, z_o = compute_scale_zp(*ranges[relu.outputs[0]], 0, 255)
    assert z_o == 0  # a ReLU output: real 0 is the integer 0, so the clamp at z_o is the ReLU
    wq, s_w = quantize_weights_per_channel(w, axis=0)
    bq, _ = quantize_bias(b, s_x, s_w)
    xq = quantize(x, s_x, z_x, "uint8")
    acc = (xq.astype(np.int64) - z_x) @ wq.astype(np.int64).T + bq  # the int32 accumulator
    assert np.abs(acc).max() < 2 ** 31
    ms, shifts = zip(*(quantize_multiplier(float(s_x) * float(sw) / float(s_o)) for sw in s_w))
    q = requantize(acc.astype(np.int32), np.array(ms), np.array(shifts), z_o, z_o, 255)
    return q, s_o, z_o


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_integer_dense_relu_matches_float(setup, method):
    from edgec.reference import run_graph
    graph, train, test = setup
    feeds = load_calibration({"features": train}, graph)
    ranges = calibrate(graph, feeds, CalibrationOptions(method=method, quiet=True))
    q, s_o, z_o = _int8_first_layer(graph, ranges, test)
    assert q.dtype == np.uint8 and q.shape == (len(test), 64)
    envs = [run_graph(graph, {"features": x[None]}, keep_all=True) for x in test]
    relu_f = np.concatenate([e["relu1"] for e in envs])
    probs_f = np.concatenate([e["probs"] for e in envs])
    relu_q = dequantize(q, s_o, z_o)
    if method == "minmax":  # nothing is clipped: the error is a fraction of a quantum on average
        err = np.abs(relu_q - relu_f)
        assert err.mean() < 0.5 * s_o and err.max() < 4 * s_o
    else:  # the clipped methods narrow the ranges of the input and the output
        assert ranges["features"][1] < 1.0 and ranges["relu1"][1] <= float(relu_f.max())
        assert np.abs(relu_q - np.minimum(relu_f, ranges["relu1"][1])).mean() < 2 * s_o
    # the rest of the model in float on the int8 layer's output: the same decisions
    dense2 = [n for n in graph.nodes if n.op == "dense"][1]
    w2, b2 = graph.values[dense2.inputs[1]].const, graph.values[dense2.inputs[2]].const
    logits = relu_q @ w2.T + b2
    agree = np.mean(np.argmax(logits, 1) == np.argmax(probs_f, 1))
    print(f"{method}: int8 first layer agrees with float on {agree:.3f} of {len(test)} test messages")
    assert agree >= 0.99, agree
