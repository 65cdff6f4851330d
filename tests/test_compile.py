"""The compile driver: all-at-once unsupported errors, atomic output folders, the report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.errors import CompileError, ModelFormatError, ShapeError, UnsupportedModelError

MODELS = Path(__file__).parent / "data" / "models"


def _model(nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _unsupported_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok_relu"),
        helper.make_node("Hardmax", ["a"], ["b"], name="first_bad"),       # no converter
        helper.make_node("LeakyRelu", ["b"], ["c"], name="after_bad", alpha=0.1),
        helper.make_node("Elu", ["c"], ["d"], name="elu", alpha=1.0),
        helper.make_node("TopK", ["d", "k"], ["y", "idx"], name="second_bad"),  # no converter
    ]
    k = numpy_helper.from_array(np.array([1], np.int64), "k")
    return _model(nodes, [x], [y], [k])


def test_unsupported_ops_are_all_listed_and_nothing_is_written(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UnsupportedModelError) as info:
        edgec.compile(_unsupported_model(), output_dir=out)
    msg = str(info.value)
    assert {it.node for it in info.value.items} == {"first_bad", "second_bad"}
    assert "Hardmax" in msg and "TopK" in msg and "opset 13" in msg
    assert not out.exists()
    assert not list(tmp_path.iterdir()), "no temporary folder may be left behind"


def test_failed_compile_keeps_the_previous_artifact(tmp_path):
    out = tmp_path / "out"
    edgec.compile(MODELS / "sms_spam_mlp.onnx", input_shapes={"features": (1, 1024)}, output_dir=out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(UnsupportedModelError):
        edgec.compile(_unsupported_model(), output_dir=out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_refuses_to_overwrite_a_folder_that_is_not_an_artifact(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(CompileError, match="not an edgec artifact"):
        edgec.compile(MODELS / "sms_spam_mlp.onnx", input_shapes={"features": (1, 1024)}, output_dir=out)
    assert (out / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_malformed_and_unbound_models(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 this is not a protobuf \xff\xff")
    with pytest.raises(ModelFormatError, match="bad.onnx"):
        edgec.compile(bad, output_dir=tmp_path / "o1")
    with pytest.raises(ModelFormatError, match="no such file"):
        edgec.compile(tmp_path / "missing.onnx", output_dir=tmp_path / "o2")
    with pytest.raises(ShapeError, match="features.*--input-shape"):
        edgec.compile(MODELS / "sms_spam_mlp.onnx", output_dir=tmp_path / "o3")
    with pytest.raises(ShapeError, match="dim 1 is 1024"):
        edgec.compile(MODELS / "sms_spam_mlp.onnx", input_shapes={"features": (1, 1000)}, output_dir=tmp_path / "o4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_report_is_a_bill_of_materials(tmp_path):
    out = edgec.compile(MODELS / "ch_ppocr_mobile_v2.0_cls_infer.onnx", input_shapes={"x": (1, 3, 48, 192)},
                        output_dir=tmp_path / "ppocr")
    rep = json.loads((out / "report.json").read_text())
    s = rep["summary"]
    assert s["arena_lower_bound_bytes"] <= s["arena_bytes"] <= 2 * s["arena_lower_bound_bytes"]
    assert s["constant_bytes"] == sum(
        len(t.data) for t in __import__("edgec.artifact.blob", fromlist=["read_blob"]).read_blob(
            (out / "model.edgec").read_bytes()).tensors if t.storage == "const")
    assert s["macs"] == sum(layer["macs"] for layer in rep["layers"]) > 10_000_000
    convs = [layer for layer in rep["layers"] if layer["op"] == "conv"]
    assert convs and all(layer["macs"] > 0 and layer["weight_bytes"] > 0 and layer["kernel_code_bytes"] > 0
                         for layer in convs)
    assert s["kernel_code_bytes"] > 0 and s["library_file_bytes"] >= s["kernel_code_bytes"]
    assert s["blob_bytes"] == (out / "model.edgec").stat().st_size
    text = (out / "report.txt").read_text()
    assert "arena" in text and "lower bound" in text and "conv" in text
    man = json.loads((out / "manifest.json").read_text())
    assert man["inputs"] == [{"name": "x", "dtype": "float32", "shape": [1, 3, 48, 192]}]


def test_reshape_runs_no_kernel(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    shape = numpy_helper.from_array(np.array([6, 4], np.int64), "s")
    m = _model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Reshape", ["a", "s"], ["b"]),
                helper.make_node("Sigmoid", ["b"], ["y"])], [x], [y], [shape])
    out = edgec.compile(m, output_dir=tmp_path / "o")
    rep = json.loads((out / "report.json").read_text())
    assert [(layer["op"], layer["alias"]) for layer in rep["layers"]] == [("relu", False), ("reshape", True),
                                                                          ("sigmoid", False)]
    xs = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    with edgec.load(out) as art:
        got = art.run({"x": xs})["y"]
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-np.maximum(xs, 0).reshape(6, 4))), rtol=1e-6)


def test_an_artifact_for_missing_cpu_features_is_refused_at_load(tmp_path):
    """The manifest lists the target's CPU features; loading on a CPU without one of them is an
    ArtifactError naming it (not an illegal instruction in the first kernel)."""
    from edgec.errors import ArtifactError
    from edgec.targets import load_target
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    out = edgec.compile(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y]), output_dir=tmp_path / "a")
    man_path = out / "manifest.json"
    man = json.loads(man_path.read_text())
    assert man["requires_cpu_flags"] == list(load_target("host").requires_cpu_flags)
    with edgec.load(out) as m:     # this CPU has them (the host target)
        np.testing.assert_array_equal(m.run({"x": -np.ones((2, 3), np.float32)})["y"], np.zeros((2, 3), np.float32))
    man["requires_cpu_flags"] = man["requires_cpu_flags"] + ["edgec_no_such_cpu_flag"]
    man_path.write_text(json.dumps(man))
    with pytest.raises(ArtifactError, match="needs the CPU features edgec_no_such_cpu_flag that this CPU lacks"):
        edgec.load(out)
