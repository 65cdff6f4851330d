"""distill(): seeded determinism, data checks, the CLI, torch kept out of the compiler, and real data."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgec.errors import EdgecError

from . import _graphs

REPO = Path(__file__).resolve().parents[2]


def test_compiler_and_runtime_never_import_torch():
    code = ("import sys, edgec, edgec.compiler, edgec.runtime, edgec.cli, edgec.distill, edgec.distill.cli;"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_missing_torch_says_how_to_install(monkeypatch):
    from edgec.distill import DistillDependencyError, require_torch
    monkeypatch.setitem(sys.modules, "torch", None)          # makes `import torch` fail
    with pytest.raises(DistillDependencyError, match=r"pip install edgec\[distill\].*torch==2\.13\.0"):
        require_torch()


torch = pytest.importorskip("torch", reason="the distill extra (torch==2.13.0) is not installed")
pytest.importorskip("onnxruntime")

from edgec.distill import DistillDataError, add_distill_parser, cmd_distill, distill, teacher_logits  # noqa: E402


def _toy_data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 32)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)
    return {"x": x, "labels": y}


def _weights(model):
    return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}


def test_same_seed_same_weights_other_seed_other_weights():
    data = _toy_data()
    teacher = _graphs.mlp(hidden=24, seed=7, softmax=True)
    runs = [distill(teacher, _graphs.mlp(), data, epochs=2, batch_size=16, seed=s, progress=False) for s in (3, 3, 4)]
    a, b, c = (_weights(r) for r in runs)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    assert any(not np.array_equal(a[k], v) for k, v in _weights(_graphs.mlp()).items())


def test_training_lowers_the_loss_and_keeps_the_graph(capsys):
    data = _toy_data(256)
    hist = []
    out = distill(None, _graphs.mlp(), data, alpha=0.0, epochs=10, lr=1e-2, batch_size=32, seed=0, history=hist)
    assert hist[-1].loss < hist[0].loss * 0.8 and hist[-1].train_accuracy > 0.75
    assert "distill: epoch 10/10" in capsys.readouterr().err
    assert [n.op_type for n in out.graph.node] == [n.op_type for n in _graphs.mlp().graph.node]


def test_teacher_logits_of_a_softmax_teacher_are_log_probabilities():
    data = _toy_data(10)
    teacher = _graphs.mlp(seed=5, softmax=True)
    probs = _graphs.ort_run(teacher, {"x": data["x"]})
    np.testing.assert_allclose(teacher_logits(teacher, data), np.log(probs), rtol=1e-5, atol=1e-6)


def test_data_errors_are_clear(tmp_path):
    student = _graphs.mlp()
    with pytest.raises(DistillDataError, match="'labels'"):
        distill(None, student, {"x": np.zeros((4, 32), np.float32)}, alpha=0.0, progress=False)
    with pytest.raises(DistillDataError, match="needs input 'x'"):
        distill(None, student, {"y": np.zeros((4, 32), np.float32), "labels": np.zeros(4, np.int64)}, alpha=0.0)
    with pytest.raises(DistillDataError, match="samples on axis 0"):
        distill(None, student, {"x": np.zeros((5, 32), np.float32), "labels": np.zeros(4, np.int64)}, alpha=0.0)
    with pytest.raises(DistillDataError, match=r"labels must be in \[0, 3\)"):
        distill(None, student, {"x": np.zeros((4, 32), np.float32), "labels": np.full(4, 7)}, alpha=0.0,
                progress=False)
    with pytest.raises(EdgecError, match="a teacher is needed"):
        distill(None, student, _toy_data(), alpha=0.5)
    with pytest.raises(DistillDataError, match="no such data file"):
        distill(None, student, tmp_path / "missing.npz", alpha=0.0)


def test_cli_writes_the_trained_student(tmp_path):
    data = _toy_data()
    np.savez(tmp_path / "train.npz", **data)
    onnx.save(_graphs.mlp(hidden=24, seed=7), tmp_path / "t.onnx")
    onnx.save(_graphs.mlp(), tmp_path / "s.onnx")
    p = argparse.ArgumentParser()
    add_distill_parser(p.add_subparsers(dest="cmd"))
    a = p.parse_args(["distill", "--teacher", str(tmp_path / "t.onnx"), "--student", str(tmp_path / "s.onnx"),
                      "--data", str(tmp_path / "train.npz"), "--epochs", "2", "--seed", "1", "--quiet",
                      "-o", str(tmp_path / "out.onnx")])
    assert cmd_distill(a) == 0
    want = distill(str(tmp_path / "t.onnx"), str(tmp_path / "s.onnx"), str(tmp_path / "train.npz"), epochs=2, seed=1,
                   progress=False)
    assert onnx.load(tmp_path / "out.onnx").SerializeToString() == want.SerializeToString()
