"""PP-OCR direction classifier (tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx, 1x3x48x192)
in int8, on random inputs: "realistic" random images are uniform 8-bit pixels through the model's
own preprocessing (p / 255 - 0.5) / 0.5 (the inputs the model sees in deployment are 8-bit
pixels, so its input takes exactly these 256 values per element).

- compiled, calibrated (MSE-optimal ranges, bias correction on: the defaults chosen on other
  images, seeds 2 and 3, never on the test images) on 64 such images (seed 0), run by the C
  runtime on 200 others (seed 1): every node but the final Softmax is int8 (the 18 hard-swish
  chains h * clip(h + 3, 0, 6) / 6 are one lookup table each), the artifact reproduces the
  reference interpreter on the quantized graph, and top-1 agrees with the fp32 artifact (the
  figure and mean |dp| are printed: 188/200 = 94.0%, mean |dp| 0.0153; the issue's target is
  95%, not reached);
- slow: the other calibration methods, and N(0, 1) inputs (calibrated on N(0, 1)), with the
  reference interpreter."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgec
from edgec.compiler import prepare_graph
from edgec.reference import run_graph

SHAPES = {"x": (1, 3, 48, 192)}
N_TEST = 200


def _images(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 3, 48, 192)).astype(np.float32) / 255 - 0.5) / 0.5


def _gaussian(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, 48, 192)).astype(np.float32)


def _model(repo_root) -> str:
    return str(repo_root / "tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")


@pytest.mark.tvm
def test_ppocr_cls_int8(repo_root, tmp_path):
    model = _model(repo_root)
    calib = {"x": _images(0, 64)}
    opts = dict(input_shapes=SHAPES, quantize="int8", calib=calib, calib_method="mse")
    i8 = edgec.compile(model, output_dir=tmp_path / "int8", **opts)
    f32 = edgec.compile(model, input_shapes=SHAPES, output_dir=tmp_path / "fp32")
    q = json.loads((i8 / "report.json").read_text())["quantization"]
    assert q["bias_correction"]["layers"] == 54 and q["bias_correction"]["samples"] == 64
    floats = [layer for layer in q["layers"] if layer["precision"] == "float"]
    # the classifier's bias add feeds only the float softmax, so it stays float (one rounding less)
    assert [(layer["op"], layer["choice"]) for layer in floats] == [
        ("add", "float (its result only feeds float ops)"), ("softmax", "float (no int8 rule)")], floats
    choices = [layer["choice"] for layer in q["layers"]]
    assert choices.count("qlut") == 27 and choices.count("qconv") == 53
    assert q["size"]["int8_constant_bytes"] < 0.3 * q["size"]["fp32_constant_bytes"]
    mi, mf = edgec.load(i8), edgec.load(f32)
    graph, _ = prepare_graph(model, **opts)
    assert [n.op for n in graph.nodes].count("quantize") == 1
    name = graph.outputs[0]
    xs = _images(1, N_TEST)
    agree, pi, pf = 0, [], []
    for k, x in enumerate(xs):
        a = mi.run({"x": x[None]})[name]
        b = mf.run({"x": x[None]})[name]
        if k < 5:
            np.testing.assert_allclose(a, run_graph(graph, {"x": x[None]})[name], rtol=0, atol=1e-6)
        agree += int(a.argmax() == b.argmax())
        pi.append(a)
        pf.append(b)
    diff = np.abs(np.concatenate(pi) - np.concatenate(pf))
    print(f"\nPP-OCR cls int8 (mse + bias correction, 64 calibration images) vs fp32 on {N_TEST} random 8-bit images: "
          f"top-1 agreement {agree}/{N_TEST} = {agree / N_TEST:.1%}, mean |dp| {diff.mean():.4f}, "
          f"max {diff.max():.4f}; constants int8/fp32 {q['size']['ratio']:.3f}")
    # measured 188/200 (94.0%), mean |dp| 0.0153: the 95% is not reached (docs/quantization.md,
    # section 8); this floor guards against regressions only
    assert agree >= 0.93 * N_TEST
    assert diff.mean() < 0.018


def _agreement(model, calib, xs, method):
    g32, _ = prepare_graph(model, input_shapes=SHAPES)
    g8, _ = prepare_graph(model, input_shapes=SHAPES, quantize="int8", calib=calib, calib_method=method)
    name = g32.outputs[0]
    agree = sum(int(run_graph(g8, {"x": x[None]})[name].argmax() == run_graph(g32, {"x": x[None]})[name].argmax())
                for x in xs)
    return agree


@pytest.mark.slow
@pytest.mark.parametrize("inputs, method, floor", [("pixels", "minmax", 0.90), ("pixels", "percentile", 0.90),
                                                   ("pixels", "entropy", 0.90), ("gaussian", "mse", 0.85),
                                                   ("gaussian", "minmax", 0.85)])
def test_ppocr_cls_int8_agreement_variants(repo_root, inputs, method, floor):
    """Reference interpreter, 200 inputs, bias correction on: measured 184/200 (pixels, minmax),
    186/200 (percentile), 188/200 (entropy; 91/200 before the calibration fix). N(0,1) inputs are
    not images: many sit at fp32 probability margins below the int8 noise."""
    gen = _images if inputs == "pixels" else _gaussian
    model = _model(repo_root)
    agree = _agreement(model, {"x": gen(0, 64)}, gen(1, N_TEST), method)
    print(f"\nPP-OCR cls int8 ({method}, {inputs}) top-1 agreement {agree}/{N_TEST} = {agree / N_TEST:.1%}")
    assert agree >= floor * N_TEST
