"""PP-OCR direction classifier (tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx, 1x3x48x192)
in int8, on random inputs: "realistic" random images are uniform 8-bit pixels through the model's
own preprocessing (p / 255 - 0.5) / 0.5 (the inputs the model sees in deployment are 8-bit
pixels, so its input takes exactly these 256 values per element).

- compiled with the defaults (minmax ranges, bias correction; chosen on other images, seeds 2
  and 3: 390/400 against 385/400 for mse), calibrated on 64 such images (seed 0), run by the C
  runtime: every node but the final Softmax is int8 (the 18 hard-swish chains
  h * clip(h + 3, 0, 6) / 6 are fused into their convs' requantization, the 9
  squeeze-excitation gates hard_sigmoid(conv) folded into their convs' clamp), the artifact
  reproduces the reference interpreter on the quantized graph, and top-1 agrees with the fp32
  artifact on 963 of 1000 fresh images (96.3%; seeds 10-14, 96.0 / 97.0 / 96.5 / 94.5 / 97.5 per
  200) and on 188/200 of the original test set (seed 1, 94.0%, mean |dp| 0.0140; 94.0% and
  0.0153 before the fusion). The issue's 95% holds for the rate, not for every draw of 200: one
  draw has a sampling spread of +-1.4 points;
- slow: the other calibration methods, and N(0, 1) inputs (calibrated on N(0, 1)), with the
  reference interpreter;
- slow: ``weight_rounding="gptq"`` (error-compensating weight rounding, edgec.quant.weight_rounding)
  with the reference interpreter: 194/200 = 97.0% on the test images, mean |dp| 0.0154. It is NOT
  the default: on the validation images (seeds 2, 3) it gave 386/400 like nearest rounding (mse; mean
  |dp| 0.0171 / 0.0147 vs 0.0181 / 0.0164), 373 vs 388 (minmax), 385 vs 380 (percentile), so the
  test figure's +6 is not supported by the data the settings are chosen on (docs/quantization.md,
  section 6);
- slow: the accuracy-aware mode (validation: 200 images, seed 2, where full int8 already agrees
  on 97.5%): with a 2-point budget 21 of 82 layers go back to float (test 194/200), with 1 point
  34 (197/200). The agreement on 200 validation images moves by +-1.5 points from one candidate to
  the next (k = 1..8 float layers: 97.5, 96.0, 96.0, 96.0, 95.5, 97.5, 96.0, 96.5%), so a budget
  near that noise buys many float layers (docs/quantization.md, section 10).
(The gptq and calibration-method figures above were measured before the hard-swish fusion.)"""
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


FRESH_SEEDS = (10, 11, 12, 13, 14)     # 5 x 200 images never used to choose any setting


@pytest.mark.tvm
def test_ppocr_cls_int8(repo_root, tmp_path):
    model = _model(repo_root)
    calib = {"x": _images(0, 64)}
    opts = dict(input_shapes=SHAPES, quantize="int8", calib=calib)     # the defaults: minmax ranges
    i8 = edgec.compile(model, output_dir=tmp_path / "int8", **opts)
    f32 = edgec.compile(model, input_shapes=SHAPES, output_dir=tmp_path / "fp32")
    q = json.loads((i8 / "report.json").read_text())["quantization"]
    assert q["calibration"]["method"] == "minmax"
    assert q["bias_correction"]["layers"] == 54 and q["bias_correction"]["samples"] == 64
    assert q["weight_rounding"] == {"method": "nearest"}   # the default (gptq: the slow test below)
    floats = [layer for layer in q["layers"] if layer["precision"] == "float"]
    # the classifier's bias add feeds only the float softmax, so it stays float (one rounding less)
    assert [(layer["op"], layer["choice"]) for layer in floats] == [
        ("add", "float (its result only feeds float ops)"), ("softmax", "float (no int8 rule)")], floats
    choices = [layer["choice"] for layer in q["layers"]]
    # the 18 hard swishes are fused into their convs, the 9 hard sigmoids folded into theirs
    assert choices.count("qlut") == 0 and choices.count("qconv") == 53
    # 18 hard swishes x 4 nodes, 15 relu and the 9 clip(0, 1) left by the hard sigmoid folds
    assert sum(c.startswith("fused into Conv") for c in choices) == 18 * 4 + 15 + 9
    assert q["size"]["int8_constant_bytes"] < 0.3 * q["size"]["fp32_constant_bytes"]
    mi, mf = edgec.load(i8), edgec.load(f32)
    graph, _ = prepare_graph(model, **opts)
    assert [n.op for n in graph.nodes].count("quantize") == 1
    assert sum(n.attrs.get("act") == "hard_swish" for n in graph.nodes if n.op == "qconv") == 18
    name = graph.outputs[0]

    def agreement(xs, check_reference=0):
        agree, diffs = 0, []
        for k, x in enumerate(xs):
            a = mi.run({"x": x[None]})[name]
            b = mf.run({"x": x[None]})[name]
            if k < check_reference:   # the C runtime computes exactly the reference's int8 graph
                np.testing.assert_allclose(a, run_graph(graph, {"x": x[None]})[name], rtol=0, atol=1e-6)
            agree += int(a.argmax() == b.argmax())
            diffs.append(np.abs(a - b).mean())
        return agree, float(np.mean(diffs))

    agree, dp = agreement(_images(1, N_TEST), check_reference=5)
    fresh = [agreement(_images(seed, N_TEST)) for seed in FRESH_SEEDS]
    total = sum(a for a, _ in fresh)
    n_fresh = N_TEST * len(FRESH_SEEDS)
    print(f"\nPP-OCR cls int8 (defaults: minmax, bias correction, 64 calibration images) vs fp32, top-1 agreement "
          f"on random 8-bit images: test set (seed 1) {agree}/{N_TEST} = {agree / N_TEST:.1%}, mean |dp| {dp:.4f}; "
          f"{n_fresh} fresh images {total}/{n_fresh} = {total / n_fresh:.1%} (per 200: "
          f"{', '.join(f'{a / N_TEST:.1%}' for a, _ in fresh)}); constants int8/fp32 {q['size']['ratio']:.3f}")
    # measured: seed 1 188/200 (94.0%), mean |dp| 0.0140; fresh 963/1000 (96.3%: 96.0, 97.0, 96.5,
    # 94.5, 97.5 per 200). A draw of 200 has a sampling spread of +-1.4 points around the rate
    # (the images whose fp32 margin |p0 - p1| is below the int8 noise decide it), so the rate is
    # asserted on the 1000 fresh images and the seed-1 set keeps a regression floor
    assert total >= 0.95 * n_fresh
    assert agree >= 0.93 * N_TEST
    assert dp < 0.016


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


@pytest.mark.slow
def test_ppocr_cls_int8_gptq_weight_rounding(repo_root):
    """The gptq option on the CI test's setting (mse, bias correction, 64 calibration images seed 0,
    200 test images seed 1), reference interpreter: measured 194/200 (nearest rounding: 188/200),
    mean |dp| 0.0154 (0.0153). Not the default (module doc); the floor guards the option only."""
    model = _model(repo_root)
    g32, _ = prepare_graph(model, input_shapes=SHAPES)
    g8, info = prepare_graph(model, input_shapes=SHAPES, quantize="int8", calib={"x": _images(0, 64)},
                             calib_method="mse", weight_rounding="gptq")
    wr = info["weight_rounding"]
    # the 40 layers with at least 4 input rows per weight column (the SE 1x1 convs and the classifier,
    # one row per image, keep nearest rounding)
    assert wr["method"] == "gptq" and wr["layers"] == 40 and wr["samples"] == 64 and wr["changed_weights"] > 0
    assert info["bias_correction"]["layers"] == 54
    name = g32.outputs[0]
    agree, diffs = 0, []
    for x in _images(1, N_TEST):
        a, b = run_graph(g8, {"x": x[None]})[name], run_graph(g32, {"x": x[None]})[name]
        agree += int(a.argmax() == b.argmax())
        diffs.append(np.abs(a - b).mean())
    print(f"\nPP-OCR cls int8, gptq weight rounding ({wr['seconds']:.1f} s, {wr['changed_weights']} weights changed): "
          f"top-1 agreement {agree}/{N_TEST} = {agree / N_TEST:.1%}, mean |dp| {np.mean(diffs):.4f}")
    assert agree >= 0.94 * N_TEST
    assert np.mean(diffs) < 0.018


@pytest.mark.slow
@pytest.mark.parametrize("budget, max_float, max_dp", [(0.02, 26, 0.010), (0.01, 40, 0.008)])
def test_ppocr_cls_int8_accuracy_aware(repo_root, budget, max_float, max_dp):
    """The accuracy-aware mode (edgec.quant.accuracy) on the CI test's setting, with a budget of
    top-1 agreement with fp32 on 200 OTHER random images (seed 2; never the test images), reference
    interpreter (bit-exact with the C runtime). Measured (minmax, after the hard-swish fusion; full
    int8: 97.5% on the validation images, 188/200 on the test images):
    - 2 points: no prefix up to 8 layers reaches 98% (the drop is not monotone: 97.5, 96.0, ...),
      the bisection lands on 21 of 82 layers in float; 16 evaluations, ~600 s on a loaded 2-core
      box; test images 194/200, mean |dp| 0.0062;
    - 1 point: 34 layers (99.0%); 17 evaluations, ~460 s; test images 197/200, mean |dp| 0.0046.
    Slow (minutes: the 82-layer sensitivity pass alone takes ~200 s on a loaded box)."""
    model = _model(repo_root)
    g32, _ = prepare_graph(model, input_shapes=SHAPES)
    g8, info = prepare_graph(model, input_shapes=SHAPES, quantize="int8", calib={"x": _images(0, 64)},
                             val={"x": _images(2, 200)}, max_accuracy_drop=budget)
    a = info["accuracy"]
    assert a["budget_met"] and a["final_drop"] <= budget + 1e-9 and not a["labels"] and a["val_samples"] == 200
    n_float = len(a["fallback_layers"])
    n_layers = len(a["sensitivity"]["layers"])
    assert n_layers == 82 and 1 <= n_float <= max_float, a["fallback_layers"]
    # bounded search: 2 + min(P, L - 1) + ceil(log2(L - P)) with P = 8, L = 82
    assert a["evaluations"] <= 2 + 8 + 7 and a["search_plan"]["prefix_evaluations"] == 8
    precision = {row["node"]: row["precision"] for row in info["layers"]}
    assert all(precision[name] == "float" for name in a["fallback_layers"])
    name = g32.outputs[0]
    agree, diffs = 0, []
    for x in _images(1, N_TEST):
        p8, p32 = run_graph(g8, {"x": x[None]})[name], run_graph(g32, {"x": x[None]})[name]
        agree += int(p8.argmax() == p32.argmax())
        diffs.append(np.abs(p8 - p32).mean())
    print(f"\nPP-OCR cls int8, accuracy-aware ({100 * budget:g} point(s) on 200 seed-2 images): {n_float} of "
          f"{n_layers} layers in float ({', '.join(a['fallback_layers'][:6])}{', ...' if n_float > 6 else ''}), "
          f"{a['evaluations']} evaluations, {a['seconds']:.0f} s; test top-1 agreement {agree}/{N_TEST} = "
          f"{agree / N_TEST:.1%}, mean |dp| {np.mean(diffs):.4f}")
    assert agree >= 0.95 * N_TEST
    assert np.mean(diffs) < max_dp
