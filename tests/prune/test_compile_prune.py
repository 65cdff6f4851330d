"""`edgec compile --prune`: the compiled artifact is the pruned model (same outputs as
edgec.prune's ONNX under onnxruntime), its MACs fall, and the report says by how much."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import edgec
from edgec.cli import main
from edgec.errors import EdgecError
from tests.prune._models import resnet_like

pytestmark = pytest.mark.tvm


def test_compile_prune_channel_matches_edgec_prune(tmp_path, kernel_cache_dir, capsys):
    model, _ = resnet_like(seed=3)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    full = json.loads((edgec.compile(str(path), output_dir=tmp_path / "full", cache_dir=kernel_cache_dir)
                       / "report.json").read_text())
    rc = main(["compile", str(path), "--prune", "0.5", "-o", str(tmp_path / "p"), "--cache-dir", str(kernel_cache_dir)])
    assert rc == 0 and "pruned 0.5 of the channels" in capsys.readouterr().out
    rep = json.loads((tmp_path / "p" / "report.json").read_text())
    pr = rep["pruning"]
    assert pr["mode"] == "channel" and pr["macs_after"] < 0.6 * pr["macs_before"]
    assert rep["summary"]["macs"] < 0.6 * full["summary"]["macs"]
    assert "pruning (channels, ratio 0.5)" in (tmp_path / "p" / "report.txt").read_text()

    proto, _ = edgec.prune(model, ratio=0.5, mode="channel")
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in inp.shape]).astype(np.float32)
    want = sess.run(None, {inp.name: x})[0]
    with edgec.load(tmp_path / "p") as m:
        got = m.run({inp.name: x})[m.outputs[0].name]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_compile_prune_unstructured_and_errors(tmp_path, kernel_cache_dir):
    model, _ = resnet_like(seed=4)
    art = edgec.compile(model, output_dir=tmp_path / "u", cache_dir=kernel_cache_dir, prune=0.8,
                        prune_mode="unstructured")
    pr = json.loads((art / "report.json").read_text())["pruning"]
    assert pr["sparsity"] == pytest.approx(0.8, abs=0.02) and pr["zlib_bytes_after"] < pr["zlib_bytes_before"]
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(EdgecError, match="prune must be a ratio"):
            edgec.compile(model, output_dir=tmp_path / "bad", prune=bad)
    with pytest.raises(EdgecError, match="prune_mode"):
        edgec.compile(model, output_dir=tmp_path / "bad", prune=0.5, prune_mode="blocks")
    assert not (tmp_path / "bad").exists()
