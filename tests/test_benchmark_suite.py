"""benchmarks/suite.py end to end on one small model (few runs: the figures are not checked,
only that every engine ran, the ratios were computed and the tables were written)."""
from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.compiled


def test_suite_dscnn_with_tuning(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import suite
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    out = tmp_path / "s"
    rc = suite.main(["--models", "dscnn", "--threads", "1", "--runs", "3", "--warmup", "1", "--eval", "4",
                     "--no-relax", "--no-c", "--tune", "2", "--tune-kernels", "1", "--work", str(tmp_path / "w"),
                     "--out", str(out)])
    assert rc == 0
    doc = json.loads((tmp_path / "s.json").read_text())
    # the int8 peak microbenchmark ran (it writes benchmarks/results/, absent in a fresh clone)
    assert doc["peak"] is not None and (doc["peak"].get("peak_gops_1thread") or 0) > 0, doc["peak"]
    res = doc["results"][0]
    row = res["threads"]["1"]
    for k in ("ort_fp32", "ort_int8", "edgec_fp32", "edgec_int8", "edgec_int8_tuned"):
        assert row[k]["median_ms"] > 0, k
    assert res["tune"]["kernels"] == 1 and "error" not in res["tune"]
    assert res["edgec_int8_accuracy"]["top1_agreement"] >= 0.75
    md = (tmp_path / "s.md").read_text()
    assert "| dscnn | 1 |" in md and "tuned / best ORT" in md
