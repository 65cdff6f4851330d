"""edgec tune: choice points, records, the compile path that reuses them, the CLI.

Timings are never asserted (a shared machine): the tests check what tuning records, that a
recorded (non-default) choice is what the kernel is built with, and that it computes the same
bits as the untuned kernel."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.backend import tuning
from edgec.backend.tuning import TuningError, TuningRecords, record_key
from edgec.cli import main as cli_main

pytestmark = pytest.mark.compiled


def _conv_model(path):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((32, 16, 3, 3)) * 0.2).astype(np.float32)
    b = (rng.standard_normal(32) * 0.1).astype(np.float32)
    fw = (rng.standard_normal((10, 32 * 8 * 8)) * 0.05).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1, name="fc")]
    # batch 16: the dense has 16 rows, past the GEMV (which has no choice points) to the tiled kernel
    g = helper.make_graph(nodes, "tune_me", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 16, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 10])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
                           numpy_helper.from_array(fw, "fw")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def _calib():
    return {"x": np.random.default_rng(1).standard_normal((4, 16, 16, 8, 8)).astype(np.float32)}


# -- choice points --------------------------------------------------------------------------------

def test_tunable_default_config_and_explore():
    assert tuning.tunable("tile", [(4, 2), (2, 4)]) == (4, 2)
    with tuning.applying({"tile": [2, 4]}):
        assert tuning.tunable("tile", [(4, 2), (2, 4)]) == (2, 4)
        # a recorded value the generator no longer offers: the default
        assert tuning.tunable("tile", [(4, 2), (1, 1)]) == (4, 2)
    with tuning.explore() as offers:
        tuning.tunable("tile", [(4, 2), (2, 4)])
        tuning.tunable("unroll", [8])
    assert offers == {"tile": [[4, 2], [2, 4]], "unroll": [8]}
    with pytest.raises(ValueError):
        tuning.tunable("tile", [])


def test_records_roundtrip_merge_and_bad_files(tmp_path):
    from edgec.backend.kernels.registry import KernelSpec, TensorType
    from edgec.targets import load_target
    tgt = load_target("host")
    a = KernelSpec("qdense", {"x_zero_point": 3, "multiplier": (5,), "shift": (2,)},
                   (TensorType("uint8", (1, 64)), TensorType("int8", (32, 64))), (TensorType("uint8", (1, 32)),), tgt)
    a2 = KernelSpec("qdense", {"x_zero_point": 7, "multiplier": (9,), "shift": (1,)}, a.inputs, a.outputs, tgt)
    b = KernelSpec("qdense", dict(a.attrs), (TensorType("uint8", (2, 64)), a.inputs[1]),
                   (TensorType("uint8", (2, 32)),), tgt)
    # the records key ignores the requantization constants, not the shapes
    assert record_key(a) == record_key(a2) != record_key(b)
    p = tmp_path / "t.json"
    r = TuningRecords(p)
    r.add(a, {"config": {"tile": [2, 1]}})
    r.save()
    r2 = TuningRecords(p)
    r2.add(b, {"config": {}})
    r2.save()                                  # merges with what is on disk
    r3 = TuningRecords(p)
    assert len(r3) == 2 and r3.config_for(a2) == {"tile": [2, 1]} and r3.config_for(b) == {}
    assert r3.apply(b) is b and r3.apply(a).tuning == (("tile", (2, 1)),)
    assert r3.apply(a).key() != a.key()         # the tuned kernel is cached apart
    assert not list(tmp_path.glob(".*.tmp"))
    p.write_text("{not json")
    with pytest.raises(TuningError, match="not a readable JSON"):
        TuningRecords(p)
    p.write_text(json.dumps({"format": "other", "records": {}}))
    with pytest.raises(TuningError, match="not an edgec tuning file"):
        TuningRecords(p)
    p.write_text(json.dumps({"format": "edgec-tuning", "version": 99, "records": {}}))
    with pytest.raises(TuningError, match="version"):
        TuningRecords(p)
    with pytest.raises(TuningError, match="not found"):
        tuning.resolve_records(tmp_path / "missing.json")


# -- tune and compile -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _conv_model(tmp_path_factory.mktemp("tune") / "m.onnx")


def test_tune_records_and_compile_uses_them(model, tmp_path):
    from edgec.tune import tune
    rec = tmp_path / "rec.json"
    rep = tune(model, quantize="int8", calib=_calib(), trials=3, runs=5, records=rec, progress=lambda m: None)
    assert rep["records"] == str(rec) and rec.is_file()
    ops = sorted(r["op"] for r in rep["kernels"])
    # the classifier's dense feeds the float output: qdense_dequant (float epilogue), same tiles
    assert ops in (["qconv", "qdense"], ["qconv", "qdense_dequant"]), rep["kernels"]
    for r in rep["kernels"]:
        assert r["trials"] >= 2 and r["default_us"] > 0 and r["best_us"] <= r["default_us"]
        assert r["config"] == {} or r["config"] != r["default"]
    # force a non-default tile for every tuned kernel, whatever the timings said: the compile must
    # build with it and compute exactly the untuned bits
    data = json.loads(rec.read_text())
    from edgec.compiler import prepare_graph
    from edgec.backend.build import node_spec
    from edgec.backend.kernels.registry import KERNELS
    from edgec.targets import load_target
    g, _ = prepare_graph(model, quantize="int8", calib=_calib())
    tgt = load_target("host")
    forced = 0
    for node in g.nodes:
        if node.op not in ("qconv", "qdense", "qdense_dequant"):
            continue
        spec = node_spec(g, node, tgt)
        with tuning.explore() as offers:
            KERNELS[node.op](spec)
        alt = offers["tile"][-1]
        assert alt != offers["tile"][0]
        data["records"][record_key(spec)]["config"] = {"tile": alt}
        forced += 1
    rec.write_text(json.dumps(data))
    plain = edgec.compile(model, output_dir=tmp_path / "plain", quantize="int8", calib=_calib(), tuning=False)
    tuned = edgec.compile(model, output_dir=tmp_path / "tuned", quantize="int8", calib=_calib(), tuning=rec)
    rt = json.loads((tuned / "report.json").read_text())["tuning"]
    assert rt == {"records": str(rec), "tuned_nodes": forced}
    kp = {layer["kernel"] for layer in json.loads((plain / "report.json").read_text())["layers"] if layer["kernel"]}
    kt = {layer["kernel"] for layer in json.loads((tuned / "report.json").read_text())["layers"] if layer["kernel"]}
    assert len(kt - kp) == forced
    x = np.random.default_rng(5).standard_normal((16, 16, 8, 8)).astype(np.float32)
    with edgec.load(plain) as a, edgec.load(tuned) as b:
        np.testing.assert_array_equal(a.run({"x": x})["y"], b.run({"x": x})["y"])


def test_tune_cli_and_errors(model, tmp_path, capsys):
    rec = tmp_path / "cli.json"
    np.savez(tmp_path / "calib.npz", x=_calib()["x"])
    assert cli_main(["tune", str(model), "--quantize", "int8", "--calib", str(tmp_path / "calib.npz"),
                     "--trials", "2", "--runs", "3", "--max-kernels", "1", "--records", str(rec),
                     "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "tuned 1 kernel(s)" in out and rec.is_file()
    assert json.loads((tmp_path / "t.json").read_text())["kernels"][0]["trials"] == 2
    assert cli_main(["compile", str(model), "-o", str(tmp_path / "a"), "--quantize", "int8", "--calib",
                     str(tmp_path / "calib.npz"), "--tuning-records", str(rec)]) == 0
    assert cli_main(["compile", str(model), "-o", str(tmp_path / "b"), "--tuning-records",
                     str(tmp_path / "missing.json")]) == 1
    assert "not found" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert cli_main(["tune", str(model), "--trials", "0", "--records", str(rec)]) == 1
    assert "trials must be a positive integer" in capsys.readouterr().err
    assert cli_main(["tune", str(model), "--target", "aarch64", "--records", str(rec)]) == 1
    assert "does not run here" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert cli_main(["compile", str(model), "-o", str(tmp_path / "c"), "--tuning-records", str(bad)]) == 1
    assert "not an edgec tuning file" in capsys.readouterr().err and not (tmp_path / "c").exists()
