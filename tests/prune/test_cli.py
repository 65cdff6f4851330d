"""`edgec prune` on the command line."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from edgec.cli import main
from tests.prune._models import inception_like


def test_prune_cli_channel_and_unstructured(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save(inception_like()[0], str(src))
    out = tmp_path / "p.onnx"
    assert main(["prune", str(src), "--ratio", "0.5", "--mode", "channel", "--norm", "l2",
                 "--per-layer", "br2=0.25", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "br2" in text and "12->9" in text and "fewer" in text
    x = np.zeros((1, 4, 12, 12), np.float32)
    assert ort.InferenceSession(str(out)).run(None, {"x": x})[0].shape == (1, 5)
    assert main(["prune", str(src), "--mode", "unstructured", "--scope", "global", "-o", str(out)]) == 0
    assert "global sparsity 50.0%" in capsys.readouterr().out


def test_prune_cli_errors(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save(inception_like()[0], str(src))
    assert main(["prune", str(src), "--per-layer", "nosuch=0.3", "-o", str(tmp_path / "p.onnx")]) == 1
    assert "nosuch" in capsys.readouterr().err
    assert main(["prune", str(src), "--ratio", "1.0", "-o", str(tmp_path / "p.onnx")]) == 1
    assert "ratio must be in [0, 1)" in capsys.readouterr().err
