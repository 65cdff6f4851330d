"""PP-OCR direction classifier (tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx, 1x3x48x192)
in int8: calibrated on 64 random images (uniform 8-bit pixels with the model's preprocessing
(p / 255 - 0.5) / 0.5), compiled, run by the C runtime on 50 other random images. Checks: it
compiles with most nodes in int8, the artifact reproduces edgec.reference.run_graph on the
quantized graph (the float ops at the boundary within float32 rounding), and top-1 agrees with
the fp32 artifact on >= 90% of the inputs (the figure is printed)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgec
from edgec.compiler import prepare_graph
from edgec.reference import run_graph

pytestmark = pytest.mark.tvm

SHAPES = {"x": (1, 3, 48, 192)}


def _images(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 3, 48, 192)).astype(np.float32) / 255 - 0.5) / 0.5


def test_ppocr_cls_int8(repo_root, tmp_path):
    model = str(repo_root / "tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
    calib = {"x": _images(0, 64)}
    i8 = edgec.compile(model, input_shapes=SHAPES, output_dir=tmp_path / "int8", quantize="int8", calib=calib)
    f32 = edgec.compile(model, input_shapes=SHAPES, output_dir=tmp_path / "fp32")
    q = json.loads((i8 / "report.json").read_text())["quantization"]
    assert q["int8_nodes"] > 3 * q["float_nodes"]
    assert q["size"]["int8_constant_bytes"] < 0.4 * q["size"]["fp32_constant_bytes"]
    mi, mf = edgec.load(i8), edgec.load(f32)
    graph, _ = prepare_graph(model, input_shapes=SHAPES, quantize="int8", calib=calib)
    name = graph.outputs[0]
    xs = _images(1, 50)
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
    print(f"\nPP-OCR cls int8 vs fp32 on 50 random images: top-1 agreement {agree}/50 = {agree / 50:.0%}, "
          f"mean |dp| {diff.mean():.4f}, max {diff.max():.4f}; constants int8/fp32 {q['size']['ratio']:.3f}")
    assert agree >= 45
