"""int8 on real images: scikit-learn's bundled 8x8 digits (1 797 images, a seeded split of 1 437
train / 360 test). A small CNN (Conv 3x3 1->16 -> Relu -> AveragePool 3x3/2 pad 1 without counting
the padding -> Flatten -> Gemm 256->10 -> Softmax) is trained in numpy in the setup
(tools/train_small_models.py, seed 0, seconds), quantized with calibration on the whole train split
and evaluated on the test split:

- for each calibration method (minmax, percentile, entropy), with the reference interpreter:
  int8 accuracy at most 1.0 point below fp32 (figures printed);
- compiled (minmax) and run by the C runtime: the same bound; everything but the Softmax in
  int8 (the average pool as a depthwise qconv with unit weights, a mul by the constant
  lcm/count table and a requantize: its border windows have 4, 6 or 9 taps), the artifact equal
  to the reference interpreter on the quantized graph."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgec
from edgec.compiler import prepare_graph
from edgec.reference import run_graph
from tests.quant_e2e._realdata import METHODS, float_graph, predict, quantized_graph, run_artifact, tools_module

pytest.importorskip("sklearn", reason="scikit-learn (the `test` extra) provides the digits images")

EVAL_BATCH = 120


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    import onnx
    tools = tools_module()
    xtr, ytr, xte, yte = tools.digits_split()
    w = tools.train_cnn(xtr, ytr)
    d = tmp_path_factory.mktemp("digits")
    onnx.save(tools.cnn_onnx(w), str(d / "digits_cnn.onnx"))
    onnx.save(tools.cnn_onnx(w, softmax=False), str(d / "digits_logits.onnx"))
    g32 = float_graph(d / "digits_cnn.onnx", "image", (EVAL_BATCH, 1, 8, 8))
    acc32 = float((predict(g32, "image", xte, EVAL_BATCH) == yte).mean())
    assert acc32 == float((tools.cnn_predict(w, xte) == yte).mean())   # the ONNX is the trained model
    return {"model": d / "digits_cnn.onnx", "xtr": xtr, "xte": xte, "yte": yte, "acc32": acc32, "dir": d}


@pytest.mark.parametrize("method", METHODS)
def test_digits_accuracy_per_calibration_method(digits, method):
    qg = quantized_graph(digits["model"], "image", digits["xtr"], EVAL_BATCH, method)
    ops = sorted({n.op for n in qg.nodes})
    # the classifier only feeds the float softmax: qdense_dequant (no 8-bit logits, no dequantize)
    assert ops == ["mul", "qconv", "qdense_dequant", "quantize", "requantize", "reshape", "softmax"]
    acc8 = float((predict(qg, "image", digits["xte"], EVAL_BATCH) == digits["yte"]).mean())
    acc32 = digits["acc32"]
    print(f"\ndigits ({len(digits['yte'])} test images) {method}: fp32 {100 * acc32:.2f}% int8 {100 * acc8:.2f}% "
          f"(drop {100 * (acc32 - acc8):+.2f} points)")
    assert acc32 > 0.93
    assert acc32 - acc8 <= 0.010 + 1e-9


@pytest.mark.tvm
def test_digits_compiled_int8(digits):
    d = digits["dir"]
    shapes = {"image": (1, 1, 8, 8)}
    np.savez(d / "calib.npz", image=digits["xtr"])
    model = str(digits["model"])
    f32 = edgec.compile(model, input_shapes=shapes, output_dir=d / "fp32")
    i8 = edgec.compile(model, input_shapes=shapes, output_dir=d / "int8", quantize="int8", calib=d / "calib.npz")
    xte, yte = digits["xte"], digits["yte"]
    p32 = run_artifact(edgec.load(f32), "image", xte, "probs")
    p8 = run_artifact(edgec.load(i8), "image", xte, "probs")
    acc32, acc8 = float((p32.argmax(1) == yte).mean()), float((p8.argmax(1) == yte).mean())
    q = json.loads((i8 / "report.json").read_text())["quantization"]
    print(f"\ndigits on the C runtime (minmax, {q['calibration']['samples']} calibration images): "
          f"fp32 {100 * acc32:.2f}% int8 {100 * acc8:.2f}%; constants int8/fp32 {q['size']['ratio']:.3f}")
    assert acc32 == digits["acc32"]
    assert acc32 - acc8 <= 0.010 + 1e-9
    layers = {layer["node"]: layer for layer in q["layers"]}
    assert [n for n, layer in layers.items() if layer["precision"] == "float"] == ["softmax"]
    assert layers["pool1"]["choice"] == "requantize" and layers["relu1"]["choice"] == "fused into conv1"
    assert q["size"]["ratio"] < 0.3
    # the integer part is bit-exact: the model without its Softmax (output: the dequantized int8
    # logits) on the C runtime gives exactly what the reference interpreter gives on the quantized graph
    logits = str(d / "digits_logits.onnx")
    il = edgec.compile(logits, input_shapes=shapes, output_dir=d / "int8_logits", quantize="int8",
                       calib=d / "calib.npz")
    graph, _ = prepare_graph(logits, input_shapes=shapes, quantize="int8", calib=d / "calib.npz")
    got = run_artifact(edgec.load(il), "image", xte, "logits")
    want = np.concatenate([run_graph(graph, {"image": xte[i:i + 1]})["logits"] for i in range(len(xte))])
    np.testing.assert_array_equal(got, want)
    assert np.unique(got).size > 100
    assert np.array_equal(got.argmax(1), p8.argmax(1))
