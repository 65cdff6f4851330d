"""int8 end to end on real data: the SMS spam MLP (tests/data/models/sms_spam_mlp.onnx) compiled
with quantize="int8", calibrated on 300 training messages, run by the C runtime over the whole
test split.

- the integer part is bit-exact: the model without its final float Softmax (its output is the
  dequantized int8 logits) gives exactly what edgec.reference.run_graph gives on the quantized
  graph (``edgec.compiler.prepare_graph``: the graph compile_model builds);
- accuracy drop vs the fp32 artifact <= 1.0 point (the figures are printed);
- the model blob is smaller (int8/fp32 ratio printed, and < 0.35);
- the CLI: --quantize int8 --calib calib.npz, --calib random (warning), no data (error)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgec
from edgec.cli import main as cli_main
from edgec.compiler import prepare_graph
from edgec.errors import EdgecError
from edgec.reference import run_graph
from tests.shared_data import sms_spam_features

pytestmark = pytest.mark.tvm

SHAPES = {"features": (1, 1024)}


@pytest.fixture(scope="module")
def spam(repo_root, tmp_path_factory):
    xtr, xte, y = sms_spam_features()
    d = tmp_path_factory.mktemp("spam")
    np.savez(d / "calib.npz", features=xtr[:300])
    return {"model": repo_root / "tests/data/models/sms_spam_mlp.onnx", "calib": d / "calib.npz", "x": xte,
            "y": y, "dir": d}


def _run_all(model, x, out):
    return np.concatenate([model.run({"features": x[i:i + 1]})[out] for i in range(len(x))])


def test_accuracy_and_size(spam):
    d = spam["dir"]
    f32 = edgec.compile(str(spam["model"]), input_shapes=SHAPES, output_dir=d / "fp32")
    i8 = edgec.compile(str(spam["model"]), input_shapes=SHAPES, output_dir=d / "int8", quantize="int8",
                       calib=spam["calib"])
    acc32 = float((_run_all(edgec.load(f32), spam["x"], "probs").argmax(1) == spam["y"]).mean())
    acc8 = float((_run_all(edgec.load(i8), spam["x"], "probs").argmax(1) == spam["y"]).mean())
    blob32 = (f32 / "model.edgec").stat().st_size
    blob8 = (i8 / "model.edgec").stat().st_size
    rep = json.loads((i8 / "report.json").read_text())
    q = rep["quantization"]
    print(f"\nSMS spam test split ({len(spam['y'])} messages): fp32 accuracy {100 * acc32:.2f}%, "
          f"int8 {100 * acc8:.2f}% (drop {100 * (acc32 - acc8):.2f} points); "
          f"blob {blob8} B / {blob32} B = {blob8 / blob32:.3f}")
    assert acc32 > 0.9
    assert acc32 - acc8 <= 0.010
    assert blob8 < 0.35 * blob32
    # the report: per-layer precision and sizes
    layers = {layer["node"]: layer for layer in q["layers"]}
    assert layers["fc1"]["precision"] == "int8" and layers["fc1"]["choice"] == "qdense"
    assert layers["relu1"]["choice"] == "fused into fc1"
    assert layers["softmax"]["precision"] == "float"
    assert q["calibration"] == {**q["calibration"], "method": "minmax", "samples": 300}
    assert q["size"]["int8_constant_bytes"] < 0.3 * q["size"]["fp32_constant_bytes"]
    assert q["size"]["int8_blob_bytes"] == blob8
    assert "quantization int8" in (i8 / "report.txt").read_text()
    ops = [layer["op"] for layer in rep["layers"]]
    # fc2 only feeds the float softmax: its int32 accumulator dequantized per channel (qdense_dequant)
    assert ops.count("qdense") == 1 and ops.count("qdense_dequant") == 1 and ops[0] == "quantize"


def test_integer_part_bit_exact(spam, tmp_path):
    """Without the float softmax the output is the float logits of qdense_dequant (the int32
    accumulator times s_x * s_w[c]): bit-exact on every message."""
    import onnx
    from onnx import TensorProto, helper
    m = onnx.load(str(spam["model"]))
    del m.graph.node[-1]
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2]))
    path = tmp_path / "logits.onnx"
    onnx.save(m, str(path))
    opts = dict(input_shapes=SHAPES, quantize="int8", calib=spam["calib"], calib_method="percentile")
    out = edgec.compile(str(path), output_dir=tmp_path / "art", **opts)
    graph, info = prepare_graph(str(path), **opts)
    assert {n.op for n in graph.nodes} == {"quantize", "qdense", "qdense_dequant"}
    got = _run_all(edgec.load(out), spam["x"], "logits")
    want = np.concatenate([run_graph(graph, {"features": spam["x"][i:i + 1]})["logits"]
                           for i in range(len(spam["x"]))])
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert np.unique(got[:, 0]).size > 20   # many distinct quantized logits: a real comparison
    assert info["calibration"]["method"] == "percentile"


def test_cli_quantize(spam, tmp_path, capsys):
    rc = cli_main(["compile", str(spam["model"]), "--input-shape", "features=1,1024", "-o", str(tmp_path / "a"),
                   "--quantize", "int8", "--calib", str(spam["calib"]), "--calib-method", "entropy", "--per-tensor"])
    assert rc == 0
    q = json.loads((tmp_path / "a" / "report.json").read_text())["quantization"]
    assert q["calibration"]["method"] == "entropy" and q["per_channel"] is False
    assert "int8:" in capsys.readouterr().out
    rc = cli_main(["compile", str(spam["model"]), "--input-shape", "features=1,1024", "-o", str(tmp_path / "r"),
                   "--quantize", "int8", "--calib", "random", "--calib-samples", "4"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "accuracy" in err and "unknown" in err
    q = json.loads((tmp_path / "r" / "report.json").read_text())["quantization"]
    assert q["calibration"]["source"] == "random" and q["calibration"]["samples"] == 4


def test_cli_errors(spam, tmp_path, capsys):
    rc = cli_main(["compile", str(spam["model"]), "--input-shape", "features=1,1024", "-o", str(tmp_path / "n"),
                   "--quantize", "int8"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "calibration data" in err and "--calib" in err
    assert not (tmp_path / "n").exists()
    rc = cli_main(["compile", str(spam["model"]), "--input-shape", "features=1,1024", "-o", str(tmp_path / "m"),
                   "--calib", str(spam["calib"])])
    assert rc == 1 and "quantize" in capsys.readouterr().err
    rc = cli_main(["compile", str(spam["model"]), "--input-shape", "features=1,1024", "-o", str(tmp_path / "x"),
                   "--quantize", "int8", "--calib", str(tmp_path / "missing.npz")])
    assert rc == 1 and "no such file" in capsys.readouterr().err


def test_api_errors(spam, tmp_path):
    model = str(spam["model"])
    with pytest.raises(EdgecError, match="calibration data"):
        edgec.compile(model, input_shapes=SHAPES, output_dir=tmp_path / "a", quantize="int8")
    with pytest.raises(EdgecError, match="quantize must be one of"):
        edgec.compile(model, input_shapes=SHAPES, output_dir=tmp_path / "b", quantize="int4", calib=spam["calib"])
    with pytest.raises(EdgecError, match="unknown calibration method"):
        edgec.compile(model, input_shapes=SHAPES, output_dir=tmp_path / "c", quantize="int8", calib=spam["calib"],
                      calib_method="kl-max")
    with pytest.raises(EdgecError, match="not both"):
        edgec.compile(model, input_shapes=SHAPES, output_dir=tmp_path / "d", quantize="int8", calib=spam["calib"],
                      calib_random=True)
    with pytest.raises(EdgecError, match="shape"):
        edgec.compile(model, input_shapes=SHAPES, output_dir=tmp_path / "e", quantize="int8",
                      calib={"features": np.zeros((3, 7), np.float32)})
    assert not any((tmp_path / k).exists() for k in "abcde")


def test_iterable_calibration(spam, tmp_path):
    """A Python iterable of feed dicts calibrates like the .npz holding the same samples."""
    x = np.load(spam["calib"])["features"]
    g1, _ = prepare_graph(str(spam["model"]), input_shapes=SHAPES, quantize="int8", calib=spam["calib"])
    g2, info = prepare_graph(str(spam["model"]), input_shapes=SHAPES, quantize="int8",
                             calib=({"features": x[i:i + 1]} for i in range(len(x))))
    q1, q2 = g1.meta["quantization"]["values"], g2.meta["quantization"]["values"]
    assert q1 == q2


def test_batched_two_threads_bit_exact(spam, tmp_path):
    """Batch 64 (the qdense is big enough to run its row tiles in parallel: the VNNI kernel on
    AVX-512 VNNI hosts) on two runtime threads: still bit-exact with the reference."""
    import onnx
    from onnx import TensorProto, helper
    m = onnx.load(str(spam["model"]))
    del m.graph.node[-1]
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2]))
    path = tmp_path / "logits.onnx"
    onnx.save(m, str(path))
    x = np.load(spam["calib"])["features"][:256]
    opts = dict(input_shapes={"features": (64, 1024)}, quantize="int8", calib={"features": x.reshape(4, 64, 1024)})
    out = edgec.compile(str(path), output_dir=tmp_path / "art", **opts)
    graph, _ = prepare_graph(str(path), **opts)
    model = edgec.load(out, threads=2)
    xt = spam["x"][:256]
    for k in range(4):
        xb = xt[k * 64:(k + 1) * 64]
        np.testing.assert_array_equal(model.run({"features": xb})["logits"],
                                      run_graph(graph, {"features": xb})["logits"])
