from dataclasses import replace

import pytest

from edgec.errors import ShapeError
from edgec.ir.verify import VerifyError, verify
from edgec.passes import infer_shapes, run_pipeline

from ._graphs import builder, finish


def test_restores_stale_types():
    b = builder({"x": ("float32", (2, 5))})
    a = b.emit("relu", ["x"], name="a")[0]
    g = finish(b, ["x"], [a])
    g.values[a] = replace(g.values[a], shape=(7,))
    with pytest.raises(VerifyError):
        verify(g)
    out = infer_shapes(g)
    verify(out)
    assert out.values[a].shape == (2, 5)
    assert g.values[a].shape == (7,)  # the input graph is not mutated


def test_inconsistent_graph_is_a_shape_error():
    b = builder({"x": ("float32", (2, 5)), "z": ("float32", (3, 5))})
    a = b.emit("relu", ["x"], name="a")[0]
    y = b.emit("relu", ["z"], name="y")[0]
    g = finish(b, ["x", "z"], [y])
    bad = [n if n.name != "y" else replace(n, op="add", inputs=("x", "z")) for n in g.nodes]
    g.nodes = bad
    with pytest.raises(ShapeError, match="do not broadcast"):
        infer_shapes(g)


def test_pipeline_dumps_every_step(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEC_DUMP_IR", str(tmp_path))
    monkeypatch.setenv("EDGEC_VERIFY", "1")
    b = builder({"x": ("float32", (2, 5))})
    a = b.emit("relu", ["x"], name="a")[0]
    g = finish(b, ["x"], [a])
    run_pipeline(g)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files[0] == "00_import.txt" and "03_fold_constants.txt" in files and "02_fuse_qdq.txt" in files
    assert "relu(x)" in (tmp_path / files[-1]).read_text()
