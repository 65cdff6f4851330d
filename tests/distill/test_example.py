"""examples/text_classification/run.py --quick runs end to end and writes the table as results.json."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the distill extra (torch==2.13.0) is not installed")
pytest.importorskip("onnxruntime")

from tests.helpers import engine  # noqa: E402
from tests.shared_data import shared_data  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = shared_data("textcls")


@pytest.mark.skipif(not (DATA / "trec6" / "train.tsv").is_file(), reason=f"shared data set missing: {DATA}")
@pytest.mark.skipif(engine() != "edgec", reason="the example compiles artifacts and runs the C runtime")
def test_quick_example_end_to_end(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(REPO / "examples" / "text_classification" / "run.py"), "--quick",
                        "--data-root", str(DATA), "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())
    assert [row["model"] for row in rows] == ["teacher fp32", "student plain fp32", "student distilled fp32",
                                             "distilled + pruned + fine-tuned fp32", "+ int8 (C runtime)"]
    for row in rows:
        assert set(row) == {"model", "parameters", "artifact bytes", "test accuracy mean", "test accuracy std",
                            "test accuracy per seed", "latency edgec 1 thread (ms)",
                            "latency onnxruntime 1 thread (ms)"}
        assert row["test accuracy mean"] > 40.0, row          # 6 classes: chance is ~17-20 %
        assert row["latency edgec 1 thread (ms)"] > 0
    teacher, plain, _, pruned, int8 = rows
    assert pruned["parameters"] < plain["parameters"] < teacher["parameters"]
    assert int8["artifact bytes"] * 10 <= teacher["artifact bytes"]
    assert abs(int8["test accuracy mean"] - pruned["test accuracy mean"]) <= 3.0   # int8 keeps the fp32 accuracy
    # the student's word-order branch (gather of an int8 table, conv, global max pool, concat) runs in int8
    q = json.loads((out / "seed0" / "int8" / "report.json").read_text())["quantization"]
    precision = {layer["node"]: layer["precision"] for layer in q["layers"]}
    for node in ("word_embedding", "conv", "maxpool", "concat", "embed", "fc1", "fc2"):
        assert precision.get(node) == "int8", (node, precision)
    assert q["float_nodes"] == 0, precision
    meta = json.loads((out / "results_meta.json").read_text())
    # the compiled fp32 artifacts predict like onnxruntime
    for key, row in zip(("teacher", "plain", "distilled", "pruned"), rows):
        assert abs(meta["fp32_artifact_accuracy_first_seed"][key] * 100 - row["test accuracy mean"]) <= 0.5
    assert "int8 student vs teacher" in r.stdout
