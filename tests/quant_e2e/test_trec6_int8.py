"""int8 on real text: TREC question classification (6 classes, /work/shared/data/textcls/trec6,
5 452 train / 500 test questions). A hashed 0/1 unigram+bigram MLP (2048 -> 64 -> 6, Softmax) is
trained in numpy in the setup (tools/train_small_models.py, seed 0, a few seconds), quantized
with calibration on the whole train split, and evaluated on the test split:

- for each calibration method (minmax, percentile, entropy), with the reference interpreter:
  int8 accuracy at most 1.0 point below fp32 (the figures are printed);
- compiled (minmax, uint8 activations) and run by the C runtime: the same bound, every layer but
  the final Softmax in int8, the artifact equal to the reference interpreter on the quantized
  graph, and the model blob about 4x smaller."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgec
from edgec.compiler import prepare_graph
from edgec.reference import run_graph
from tests.quant_e2e._realdata import METHODS, float_graph, predict, quantized_graph, run_artifact, tools_module
from tests.shared_data import shared_data

DATA = shared_data("textcls", "trec6")
EVAL_BATCH = 100


@pytest.fixture(scope="module")
def trec6(tmp_path_factory):
    if not (DATA / "train.tsv").is_file():
        pytest.fail(f"{DATA} is not available (set EDGEC_SHARED_DIR to the shared folder)", pytrace=False)
    tools = tools_module()
    xtr, ytr, xte, yte = tools.trec6_data(DATA)
    params = tools.train_mlp(xtr, ytr, classes=6)
    d = tmp_path_factory.mktemp("trec6")
    import onnx
    onnx.save(tools.mlp_onnx(params), str(d / "trec6_mlp.onnx"))
    onnx.save(tools.mlp_onnx(params, softmax=False), str(d / "trec6_logits.onnx"))
    g32 = float_graph(d / "trec6_mlp.onnx", "features", (EVAL_BATCH, xtr.shape[1]))
    acc32 = float((predict(g32, "features", xte, EVAL_BATCH) == yte).mean())
    assert acc32 == float((tools.mlp_predict(params, xte) == yte).mean())   # the ONNX is the trained model
    return {"model": d / "trec6_mlp.onnx", "xtr": xtr, "xte": xte, "yte": yte, "acc32": acc32, "dir": d}


@pytest.mark.parametrize("method", METHODS)
def test_trec6_accuracy_per_calibration_method(trec6, method):
    qg = quantized_graph(trec6["model"], "features", trec6["xtr"], EVAL_BATCH, method)
    ops = {n.op for n in qg.nodes}
    # the last dense only feeds the float softmax: qdense_dequant (no 8-bit logits, no dequantize)
    assert ops == {"quantize", "qdense", "qdense_dequant", "softmax"}
    acc8 = float((predict(qg, "features", trec6["xte"], EVAL_BATCH) == trec6["yte"]).mean())
    acc32 = trec6["acc32"]
    print(f"\ntrec6 ({len(trec6['yte'])} test questions) {method}: fp32 {100 * acc32:.2f}% int8 {100 * acc8:.2f}% "
          f"(drop {100 * (acc32 - acc8):+.2f} points)")
    assert acc32 > 0.75
    assert acc32 - acc8 <= 0.010 + 1e-9


@pytest.mark.tvm
def test_trec6_compiled_int8(trec6):
    d = trec6["dir"]
    shapes = {"features": (1, trec6["xtr"].shape[1])}
    np.savez(d / "calib.npz", features=trec6["xtr"])
    model = str(trec6["model"])
    f32 = edgec.compile(model, input_shapes=shapes, output_dir=d / "fp32")
    i8 = edgec.compile(model, input_shapes=shapes, output_dir=d / "int8", quantize="int8", calib=d / "calib.npz")
    xte, yte = trec6["xte"], trec6["yte"]
    p32 = run_artifact(edgec.load(f32), "features", xte, "probs")
    p8 = run_artifact(edgec.load(i8), "features", xte, "probs")
    acc32, acc8 = float((p32.argmax(1) == yte).mean()), float((p8.argmax(1) == yte).mean())
    q = json.loads((i8 / "report.json").read_text())["quantization"]
    blob32, blob8 = (f32 / "model.edgec").stat().st_size, (i8 / "model.edgec").stat().st_size
    print(f"\ntrec6 on the C runtime (minmax, {q['calibration']['samples']} calibration questions): "
          f"fp32 {100 * acc32:.2f}% int8 {100 * acc8:.2f}%; constants int8/fp32 {q['size']['ratio']:.3f}, "
          f"blob {blob8} B / {blob32} B = {blob8 / blob32:.3f}")
    assert acc32 == trec6["acc32"]
    assert acc32 - acc8 <= 0.010 + 1e-9
    assert q["calibration"]["samples"] == len(trec6["xtr"])
    assert [layer["node"] for layer in q["layers"] if layer["precision"] == "float"] == ["softmax"]
    assert q["size"]["ratio"] < 0.27 and blob8 < 0.3 * blob32
    # the integer part is bit-exact: the model without its Softmax (output: the dequantized int8
    # logits) on the C runtime gives exactly what the reference interpreter gives on the quantized graph
    logits = str(d / "trec6_logits.onnx")
    il = edgec.compile(logits, input_shapes=shapes, output_dir=d / "int8_logits", quantize="int8",
                       calib=d / "calib.npz")
    graph, _ = prepare_graph(logits, input_shapes=shapes, quantize="int8", calib=d / "calib.npz")
    got = run_artifact(edgec.load(il), "features", xte, "logits")
    want = np.concatenate([run_graph(graph, {"features": xte[i:i + 1]})["logits"] for i in range(len(xte))])
    np.testing.assert_array_equal(got, want)
    assert np.unique(got).size > 100
    assert np.array_equal(got.argmax(1), p8.argmax(1))
