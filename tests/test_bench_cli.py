"""`edgec bench`: the table, the JSON keys the issue names, the onnxruntime comparison (fp32,
and int8 through the artifact's own QDQ export), the per-op profile, and its errors.

Nothing here judges speed: the tests check that each figure exists, is positive and is
consistent with the others (percentiles ordered, the profile's shares summing to 1)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgec
from edgec.cli import main

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "tests" / "data" / "models" / "sms_spam_mlp.onnx"
SHAPES = {"features": [1, 1024]}

pytestmark = pytest.mark.tvm


def _calib(n: int = 16):
    rng = np.random.default_rng(0)
    return [{"features": (rng.random((1, 1024)) < 0.02).astype(np.float32)} for _ in range(n)]


@pytest.fixture(scope="module")
def fp32_art(tmp_path_factory, kernel_cache_dir):
    return edgec.compile(str(MODEL), input_shapes=SHAPES, output_dir=tmp_path_factory.mktemp("b") / "fp32",
                         cache_dir=kernel_cache_dir)


@pytest.fixture(scope="module")
def int8_art(tmp_path_factory, kernel_cache_dir):
    return edgec.compile(str(MODEL), input_shapes=SHAPES, output_dir=tmp_path_factory.mktemp("b") / "int8",
                         cache_dir=kernel_cache_dir, quantize="int8", calib=_calib())


def _check_engine(d: dict) -> None:
    assert 0 < d["p50_ms"] <= d["p90_ms"] <= d["p99_ms"]
    assert d["throughput_per_s"] > 0


def test_bench_compare_profile_json(fp32_art, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["bench", str(fp32_art), "--runs", "20", "--warmup", "2", "--compare", "onnxruntime",
               "--profile", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "edgec fp32" in text and "onnxruntime fp32" in text and "per-op time" in text
    r = json.loads(out.read_text())
    for key in ("model", "threads", "runs"):
        assert key in r
    assert r["threads"] == 1 and r["runs"] == 20
    _check_engine(r["edgec"])
    _check_engine(r["onnxruntime"])
    # the source model was found through the manifest (path + sha256), not given
    assert Path(r["source_model"]).resolve() == MODEL.resolve()
    assert r["ratio_onnxruntime"] == pytest.approx(r["edgec"]["p50_ms"] / r["onnxruntime"]["p50_ms"])
    prof = r["profile"]
    with edgec.load(fp32_art) as m:
        assert [p["name"] for p in prof] == list(m.op_names)
    assert sum(p["share"] for p in prof) == pytest.approx(1.0, abs=1e-6)
    dense = [p for p in prof if p["op"] == "dense"]
    assert dense and all(p["macs"] > 0 and p["gops"] > 0 for p in dense)
    assert r["sizes"]["blob_bytes"] > 0 and r["sizes"]["arena_bytes"] > 0


def test_bench_int8_compares_with_onnxruntime_int8(int8_art, tmp_path):
    out = tmp_path / "r8.json"
    assert main(["bench", str(int8_art), "--runs", "10", "--warmup", "1", "--compare", "onnxruntime",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["precision"] == "int8"
    _check_engine(r["onnxruntime_int8"])
    assert "QDQ" in r["onnxruntime_int8"]["precision"]


def test_bench_needs_a_source_model(tmp_path, kernel_cache_dir, capsys):
    import onnx
    art = edgec.compile(onnx.load(str(MODEL)), input_shapes=SHAPES, output_dir=tmp_path / "mem",
                        cache_dir=kernel_cache_dir)
    assert main(["bench", str(art), "--runs", "2", "--compare", "onnxruntime"]) == 1
    assert "give it with --onnx" in capsys.readouterr().err
    assert main(["bench", str(art), "--runs", "2", "--compare", "onnxruntime", "--onnx", str(MODEL)]) == 0


def test_bench_changed_source_is_not_used(fp32_art, tmp_path, capsys):
    """A manifest's source whose file changed since the compile is not trusted."""
    import shutil
    model = tmp_path / "m.onnx"
    shutil.copy(MODEL, model)
    art = edgec.compile(str(model), input_shapes=SHAPES, output_dir=tmp_path / "a")
    model.write_bytes(model.read_bytes() + b"\0")
    assert main(["bench", str(art), "--runs", "2", "--compare", "onnxruntime"]) == 1
    assert "no source model" in capsys.readouterr().err


@pytest.mark.parametrize("args, msg", [
    (["--runs", "0"], "--runs must be at least 1"),
    (["--compare", "tflite"], "unknown --compare engine"),
    (["--compare", "onnxruntime", "--onnx", "/nonexistent.onnx"], "no such file"),
])
def test_bench_errors(fp32_art, capsys, args, msg):
    assert main(["bench", str(fp32_art), *args]) == 1
    assert msg in capsys.readouterr().err
