"""The accuracy-aware int8 mode (edgec/quant/accuracy.py; docs/quantization.md).

- a seeded MLP whose layer fc3 is made very sensitive to int8 (every output channel has a
  weight of 1000 on an input that is always 0, so per-channel weight scales crush the real
  weights): the search keeps exactly fc3 in float and meets a 1-point budget (the first prefix,
  k = 1: 3 full evaluations, counted independently of the report);
- the same MLP without the outlier: the budget is already met, nothing falls back;
- the search: prefixes k = 1, 2, ... of the sensitivity ranking first (up to
  ``prefix_evaluations``), then a bisection over the rest; a metric made non-monotone in k (as
  PP-OCR's is), where the bisection alone over-shoots to k = 4 and the prefix search keeps k = 1;
  the bisection after a cap of prefixes that all fail;
- the one-pass sensitivities (re-running only past the prefix shared with fp32, batched) equal
  the ones computed directly with run_graph, sample by sample, on "only this layer int8" graphs,
  on all samples, on the first S and on the S smallest-margin ones (``sensitivity_selection``);
- batched and per-sample evaluation give the same search;
- validation data errors (names, shapes, labels) and option errors;
- end to end: `edgec compile --quantize int8 --calib --val --max-accuracy-drop` on the SMS
  spam MLP, and the API form.
"""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.cli import main as cli_main
from edgec.compiler import prepare_graph
from edgec.errors import EdgecError
from edgec.frontend.onnx_import import import_onnx
from edgec.passes import eliminate_dead_code, infer_shapes, run_pipeline
from edgec.passes.quantize_int8 import QuantizeOptions, quantize_int8
from edgec.quant import CalibrationNameError, CalibrationOptions, CalibrationShapeError, calibrate, load_calibration
from edgec.quant import accuracy as acc_mod
from edgec.quant.accuracy import (AccuracyOptionsError, ValidationDataError, accuracy_aware_quantize,
                                  load_validation, quantizable_layers)
from edgec.reference import run_graph

DEPTH = 6


def make_mlp(seed: int = 0, outlier: float | None = 1000.0, sensitive: int = 3, n_in: int = 16, width: int = 32,
             n_out: int = 4) -> onnx.ModelProto:
    """Gemm+Relu x DEPTH (fc0..fc5); with ``outlier``, channel 0 of relu{sensitive-1} is always 0
    (zero weights, bias -1) and every row of fc{sensitive} has ``outlier`` in column 0."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev, d_in = "x", n_in
    for i in range(DEPTH):
        d_out = n_out if i == DEPTH - 1 else width
        w = (rng.standard_normal((d_out, d_in)) / np.sqrt(d_in)).astype(np.float32)
        b = (0.1 * rng.standard_normal(d_out)).astype(np.float32)
        if outlier is not None and i == sensitive - 1:
            w[0], b[0] = 0.0, -1.0
        if outlier is not None and i == sensitive:
            w[:, 0] = outlier
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out], name=f"fc{i}", transB=1))
        if i < DEPTH - 1:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"], name=f"relu{i}"))
            out = f"r{i}"
        prev, d_in = out, d_out
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", n_out])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _finish(g):
    return run_pipeline(g, [("infer_shapes", infer_shapes), ("eliminate_dead_code", eliminate_dead_code)])


def _setup(outlier, n_val=400, wrong=0.05, seed=1):
    graph = run_pipeline(import_onnx(make_mlp(outlier=outlier).SerializeToString(), input_shapes={"x": (1, 16)}))
    rng = np.random.default_rng(seed)
    xc = rng.standard_normal((64, 16)).astype(np.float32)
    xv = rng.standard_normal((n_val, 16)).astype(np.float32)
    ranges = calibrate(graph, load_calibration({"x": xc}, graph), CalibrationOptions(quiet=True))
    y32 = np.stack([run_graph(graph, {"x": xv[i:i + 1]})[graph.outputs[0]][0] for i in range(n_val)]).argmax(1)
    labels = y32.copy()
    flip = rng.random(n_val) < wrong                  # some labels the fp32 model gets wrong
    labels[flip] = (labels[flip] + 1) % 4
    return graph, ranges, xv, labels


@pytest.fixture(scope="module")
def sensitive():
    return _setup(outlier=1000.0)


def _accuracy(g, xv, labels):
    out = g.outputs[0]
    pred = np.array([run_graph(g, {"x": xv[i:i + 1]})[out][0].argmax() for i in range(len(xv))])
    return float((pred == labels).mean())


def test_sensitive_layer_falls_back(sensitive, monkeypatch):
    graph, ranges, xv, labels = sensitive
    calls = []
    orig = acc_mod._Evaluator.first_output

    def counting(self, g, count):
        calls.append(count)
        return orig(self, g, count)
    monkeypatch.setattr(acc_mod._Evaluator, "first_output", counting)
    val = load_validation({"x": xv, "labels": labels}, graph)
    qgraph, s = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, 0.01, finish=_finish)
    print(f"\nsensitive MLP: fp32 {s['fp32']:.4f}, int8 {s['int8']:.4f}, final {s['final']:.4f}; "
          f"{s['evaluations']} evaluations, sensitivity pass {s['sensitivity']['seconds']:.3f} s, "
          f"total {s['seconds']} s")
    assert s["int8_drop"] > 0.5                      # the outlier really breaks int8
    assert s["fallback_layers"] == ["fc3"]
    assert s["budget_met"] and s["final_drop"] <= 0.01
    assert s["sensitivity"]["layers"]["fc3"]["rank"] == 1
    others = [v["sensitivity"] for k, v in s["sensitivity"]["layers"].items() if k != "fc3"]
    assert s["sensitivity"]["layers"]["fc3"]["sensitivity"] > 10 * max(others)
    # the returned graph: fc3 (and its fused relu3) in float, every other layer in int8
    prec = {row["node"]: row["precision"] for row in qgraph.meta["quantization"]["layers"]}
    assert prec["fc3"] == prec["relu3"] == "float"
    assert all(prec[f"fc{i}"] == "int8" for i in range(DEPTH) if i != 3)
    assert tuple(qgraph.values["x"].shape) == (1, 16)           # the compile graph, not the batched one
    # the figures are real: recomputed sample by sample with the reference interpreter
    assert s["fp32"] == pytest.approx(_accuracy(graph, xv, labels), abs=1e-12)
    assert s["final"] == pytest.approx(_accuracy(qgraph, xv, labels), abs=1e-12)
    # bounded work: fp32, full int8 and the first prefix of the ranking (k = 1 meets the budget)
    n_layers = len(s["sensitivity"]["layers"])
    assert n_layers == DEPTH
    full = [c for c in calls if c == len(xv)]
    assert len(full) == s["evaluations"] == 3
    assert [r["float_layers"] for r in s["search"]] == [0, 1]
    assert s["batch"] == 58 and s["sensitivity"]["samples"] == 64     # 7 even chunks of 400; S = 64


def test_budget_met_no_fallback():
    graph, ranges, xv, labels = _setup(outlier=None)
    val = load_validation({"x": xv, "labels": labels}, graph)
    qgraph, s = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, 0.01, finish=_finish)
    assert s["int8_drop"] <= 0.01
    assert s["fallback_layers"] == [] and s["evaluations"] == 2 and s["final"] == s["int8"]
    assert len(s["search"]) == 1
    assert set(s["sensitivity"]["layers"]) == {f"fc{i}" for i in range(DEPTH)}   # still listed
    assert qgraph.meta["quantization"]["float_nodes"] == 0


def test_agreement_without_labels(sensitive):
    graph, ranges, xv, _ = sensitive
    _, s = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), load_validation({"x": xv}, graph), 0.01,
                                   finish=_finish, sensitivity_samples=10)
    assert s["labels"] is False and "agreement" in s["metric"] and s["fp32"] == 1.0
    assert s["sensitivity"]["samples"] == 10 and s["sensitivity"]["layers"]["fc3"]["rank"] == 1
    assert s["fallback_layers"] == ["fc3"] and s["final"] >= 0.99


def test_tight_budget_bisects(sensitive):
    """A zero budget needs more layers in float: the prefixes k = 1, 2, ... of the ranking are
    tried first (at most ``prefix_evaluations``, here L - 1 = 5 at most), then a bisection over
    the rest; the chosen k is the smallest of the evaluated ones that meets the budget, and the
    evaluations stay within 2 + min(P, L - 1) + ceil(log2(L - P)) (+ 1 when only k = L meets it)."""
    graph, ranges, xv, labels = sensitive
    val = load_validation({"x": xv, "labels": labels}, graph)
    for p in (8, 1, 0):
        _, s = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, 0.0, finish=_finish,
                                       prefix_evaluations=p)
        assert s["budget_met"] and s["final_drop"] <= 0
        k = len(s["fallback_layers"])
        assert k >= 1 and s["fallback_layers"][0] == "fc3"
        pp = min(p, DEPTH - 1)
        assert s["evaluations"] <= 3 + pp + math.ceil(math.log2(max(1, DEPTH - pp)))
        tried = [r["float_layers"] for r in s["search"][1:]]
        assert tried[:min(pp, k)] == list(range(1, min(pp, k) + 1))     # the prefixes first, in order
        fails = [r["float_layers"] for r in s["search"] if r["drop"] > 0]
        assert all(f < k for f in fails) and (k - 1) in fails


def _non_monotone(monkeypatch, bad: int):
    """Make every candidate graph with exactly ``bad`` layers in float give shuffled outputs, so the
    metric is not monotone in k (as measured on PP-OCR, docs/quantization.md section 10)."""
    orig = acc_mod._Evaluator.first_output

    def first_output(self, g, count):
        y = orig(self, g, count)
        q = g.meta.get("quantization")
        if q is not None and sum(r["precision"] == "float" and r["op"] == "dense" for r in q["layers"]) == bad:
            y = y[:, :, ::-1]            # reversed class scores: (nearly) every prediction changes
        return y
    monkeypatch.setattr(acc_mod._Evaluator, "first_output", first_output)


def test_prefix_search_avoids_bisection_overshoot(sensitive, monkeypatch):
    """A metric that is not monotone in k: with k = 3 (the bisection's first probe over L = 6)
    failing, the bisection alone (prefix_evaluations=0) over-shoots to k = 4 although k = 1 meets
    the budget; the prefix search tries k = 1 first and keeps fc3 alone in float, in 3 evaluations."""
    graph, ranges, xv, labels = sensitive
    val = load_validation({"x": xv, "labels": labels}, graph)
    _non_monotone(monkeypatch, bad=3)
    _, b = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, 0.01, finish=_finish, prefix_evaluations=0)
    assert [r["float_layers"] for r in b["search"]] == [0, 3, 4]
    assert len(b["fallback_layers"]) == 4 and b["fallback_layers"][0] == "fc3" and b["budget_met"]
    _, a = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, 0.01, finish=_finish)
    assert a["fallback_layers"] == ["fc3"] and a["budget_met"] and a["final_drop"] <= 0.01
    assert [r["float_layers"] for r in a["search"]] == [0, 1] and a["evaluations"] == 3
    assert a["search_plan"] == {"prefix_evaluations": 8, "prefixes_tried": 1, "bisection": False}


def test_prefix_cap_then_bisection(sensitive, monkeypatch):
    """No prefix within the cap meets the budget (k = 1 is made to fail): the bisection runs over
    (P, L] = (1, 6] and finds k = 2, the smallest that meets it."""
    graph, ranges, xv, labels = sensitive
    val = load_validation({"x": xv, "labels": labels}, graph)
    _non_monotone(monkeypatch, bad=1)
    _, a = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, 0.01, finish=_finish, prefix_evaluations=1)
    assert [r["float_layers"] for r in a["search"]] == [0, 1, 3, 2]
    assert len(a["fallback_layers"]) == 2 and a["fallback_layers"][0] == "fc3" and a["budget_met"]
    assert a["evaluations"] == 5 <= 2 + 1 + math.ceil(math.log2(DEPTH - 1))
    assert a["search_plan"] == {"prefix_evaluations": 1, "prefixes_tried": 1, "bisection": True}


def test_sensitivity_equals_direct_computation(sensitive):
    graph, ranges, xv, labels = sensitive
    n = 40
    val = load_validation({"x": xv[:n], "labels": labels[:n]}, graph)
    _, s = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, None, finish=_finish, batch=16)
    assert s["batch"] == 14 and s["status"].startswith("measured only") and s["budget_met"] is None
    full = _finish(quantize_int8(graph, ranges, QuantizeOptions()))
    layers = quantizable_layers(full.meta["quantization"])
    assert layers["fc0"] == ["fc0", "relu0"] and layers["fc5"] == ["fc5"]
    out = graph.outputs[0]
    y = np.stack([run_graph(graph, {"x": xv[i:i + 1]})[out] for i in range(n)]).astype(np.float64)
    for name in layers:
        others = [x for o, nodes in layers.items() if o != name for x in nodes]
        g1 = _finish(quantize_int8(graph, ranges, QuantizeOptions(fallback_nodes=frozenset(others))))
        assert g1.meta["quantization"]["int8_nodes"] == len(layers[name])
        yq = np.stack([run_graph(g1, {"x": xv[i:i + 1]})[out] for i in range(n)]).astype(np.float64)
        want = math.sqrt(((yq - y) ** 2).sum() / (y ** 2).sum())
        assert s["sensitivity"]["layers"][name]["sensitivity"] == pytest.approx(want, rel=1e-4), name


def test_sensitivity_on_smallest_margin_samples(sensitive):
    """S < N: with sensitivity_selection="margin" the sensitivity pass runs on the S samples with
    the smallest fp32 top-1 margin (the ones the metric can lose); "first" (the default) on the
    first S. Both equal the direct computation on those samples."""
    graph, ranges, xv, labels = sensitive
    n, s_n = 120, 12
    val = load_validation({"x": xv[:n], "labels": labels[:n]}, graph)
    out = graph.outputs[0]
    y = np.stack([run_graph(graph, {"x": xv[i:i + 1]})[out] for i in range(n)]).astype(np.float64)
    top2 = np.sort(y[:, 0], axis=1)[:, -2:]
    small = np.sort(np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:s_n])
    full = _finish(quantize_int8(graph, ranges, QuantizeOptions()))
    layers = quantizable_layers(full.meta["quantization"])
    for sel, idx in (("margin", small), ("first", np.arange(s_n))):
        _, s = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, None, finish=_finish,
                                       sensitivity_samples=s_n, sensitivity_selection=sel)
        assert s["sensitivity"]["samples"] == s_n and s["sensitivity"]["selection"].startswith(
            "the 12 of 120 samples with the smallest" if sel == "margin" else "the first 12")
        for name in ("fc3", "fc5"):
            others = [x for o, nodes in layers.items() if o != name for x in nodes]
            g1 = _finish(quantize_int8(graph, ranges, QuantizeOptions(fallback_nodes=frozenset(others))))
            yq = np.stack([run_graph(g1, {"x": xv[i:i + 1]})[out] for i in idx]).astype(np.float64)
            want = math.sqrt(((yq - y[idx]) ** 2).sum() / (y[idx] ** 2).sum())
            assert s["sensitivity"]["layers"][name]["sensitivity"] == pytest.approx(want, rel=1e-4), (sel, name)
    assert not np.array_equal(small, np.arange(s_n))      # the two selections really differ here
    with pytest.raises(AccuracyOptionsError, match="sensitivity_selection"):
        accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, 0.01, sensitivity_selection="random")


def test_batched_equals_per_sample(sensitive):
    graph, ranges, xv, labels = sensitive
    val = load_validation({"x": xv[:100], "labels": labels[:100]}, graph)
    _, a = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, 0.01, finish=_finish, batch=32)
    _, b = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, 0.01, finish=_finish, batch=1)
    assert a["batch"] == 25 and b["batch"] == 1
    assert a["fallback_layers"] == b["fallback_layers"] == ["fc3"]
    assert a["int8"] == b["int8"]            # all integer after the input's quantize: identical
    # float layers: a batched BLAS product rounds differently from a 1-row one, and a last-bit
    # difference can move a downstream quantize by one step: a sample may flip, rarely
    for key in ("fp32", "final"):
        assert abs(a[key] - b[key]) <= 0.02
    for ra, rb in zip(a["search"], b["search"]):
        assert ra["float_layers"] == rb["float_layers"] and abs(ra["metric"] - rb["metric"]) <= 0.02


def test_validation_data_errors(sensitive, tmp_path):
    graph, *_ = sensitive
    x = np.zeros((5, 16), np.float32)
    with pytest.raises(CalibrationNameError, match="validation data.*no data for input"):
        load_validation({"features": x}, graph)
    with pytest.raises(CalibrationShapeError, match="validation data.*'x'"):
        load_validation({"x": np.zeros((5, 17), np.float32)}, graph)
    with pytest.raises(ValidationDataError, match="5 sample.*4 label"):
        load_validation({"x": x, "labels": np.zeros(4, np.int64)}, graph)
    with pytest.raises(ValidationDataError, match="must be integers"):
        load_validation({"x": x, "labels": np.zeros(5, np.float32)}, graph)
    np.savez(tmp_path / "v.npz", x=x, cls=np.zeros(5, np.int64))
    with pytest.raises(CalibrationNameError, match=r"\['cls'\] are not inputs"):   # labels under another key
        load_validation(tmp_path / "v.npz", graph)
    v = load_validation(tmp_path / "v.npz", graph, labels_key="cls")
    assert v.count == 5 and v.labels.shape == (5, 1) and v.source == str(tmp_path / "v.npz")
    with pytest.raises(ValidationDataError, match="no such file"):
        load_validation(tmp_path / "missing.npz", graph)
    with pytest.raises(ValidationDataError, match="also an input name"):
        load_validation({"x": x}, graph, labels_key="x")
    # one label per prediction: [N, 2] labels for one prediction per sample
    val = load_validation({"x": x, "labels": np.zeros((5, 2), np.int64)}, graph)
    with pytest.raises(ValidationDataError, match="2 label"):
        accuracy_aware_quantize(graph, {}, QuantizeOptions(), val, 0.01)
    # an iterable of feed dicts, labels in each
    v = load_validation([{"x": x[i:i + 1], "labels": 3} for i in range(5)], graph)
    assert v.count == 5 and v.labels.ravel().tolist() == [3] * 5


def test_single_score_output_refused():
    graph = run_pipeline(import_onnx(make_mlp(n_out=1).SerializeToString(), input_shapes={"x": (1, 16)}))
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    ranges = calibrate(graph, load_calibration({"x": x}, graph), CalibrationOptions(quiet=True))
    with pytest.raises(ValidationDataError, match=r"shape \[1, 1\] per sample: top-1"):
        accuracy_aware_quantize(graph, ranges, QuantizeOptions(), load_validation({"x": x}, graph), 0.01)


def test_bad_prefix_evaluations(sensitive):
    graph, ranges, xv, _ = sensitive
    for bad in (-1, 2.0, True):
        with pytest.raises(AccuracyOptionsError, match="prefix_evaluations"):
            accuracy_aware_quantize(graph, ranges, QuantizeOptions(), load_validation({"x": xv[:4]}, graph), 0.01,
                                    prefix_evaluations=bad)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 5, float("nan"), True])
def test_bad_budget(sensitive, bad):
    graph, ranges, xv, labels = sensitive
    with pytest.raises(AccuracyOptionsError, match=r"fraction in \[0, 1\)"):
        accuracy_aware_quantize(graph, ranges, QuantizeOptions(), load_validation({"x": xv[:4]}, graph), bad)


@pytest.mark.tvm
@pytest.mark.compiled
def test_compile_falls_back_sensitive_layer(sensitive, tmp_path):
    """edgec.compile with val= and max_accuracy_drop=: the artifact keeps fc3 in float and the C
    runtime reaches the accuracy the report states."""
    _, _, xv, labels = sensitive
    xc = np.random.default_rng(1).standard_normal((64, 16)).astype(np.float32)    # as in _setup
    out = edgec.compile(make_mlp().SerializeToString(), input_shapes={"x": (1, 16)}, output_dir=tmp_path / "a",
                        quantize="int8", calib={"x": xc}, val={"x": xv, "labels": labels}, max_accuracy_drop=0.01)
    rep = json.loads((out / "report.json").read_text())
    q = rep["quantization"]
    assert q["accuracy"]["fallback_layers"] == ["fc3"] and q["accuracy"]["budget_met"]
    rows = {row["node"]: row for row in q["layers"]}
    assert rows["fc3"]["precision"] == "float" and rows["fc3"]["sensitivity_rank"] == 1
    assert rows["fc2"]["precision"] == "int8" and rows["fc2"]["choice"] == "qdense"
    assert [la["op"] for la in rep["layers"]].count("dense") == 1          # fc3, in float
    m = edgec.load(out)
    out_name = m.outputs[0].name
    pred = np.array([m.run({"x": xv[i:i + 1]})[out_name].argmax() for i in range(len(xv))])
    assert float((pred == labels).mean()) == pytest.approx(q["accuracy"]["final"], abs=2 / len(xv))


# -- the compiler and the CLI on the SMS spam MLP ---------------------------------------------------

SHAPES = {"features": (1, 1024)}


@pytest.fixture(scope="module")
def spam(repo_root, tmp_path_factory):
    from tests.shared_data import sms_spam_features
    xtr, x, y = sms_spam_features()
    d = tmp_path_factory.mktemp("spam_acc")
    np.savez(d / "calib.npz", features=xtr[:300])
    np.savez(d / "val.npz", features=x, labels=y)
    np.savez(d / "val_nolabels.npz", features=x)
    return {"model": str(repo_root / "tests/data/models/sms_spam_mlp.onnx"), "calib": d / "calib.npz",
            "val": d / "val.npz", "val_nolabels": d / "val_nolabels.npz", "x": x, "y": y}


@pytest.mark.tvm
@pytest.mark.compiled
def test_cli_end_to_end(spam, tmp_path, capsys):
    out = tmp_path / "a"
    rc = cli_main(["compile", spam["model"], "--input-shape", "features=1,1024", "-o", str(out), "--quantize", "int8",
                   "--calib", str(spam["calib"]), "--val", str(spam["val"]), "--max-accuracy-drop", "0.01"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "accuracy on 1114 validation sample(s)" in stdout
    q = json.loads((out / "report.json").read_text())["quantization"]
    a = q["accuracy"]
    print(f"\nSMS spam: fp32 {a['fp32']:.4f}, int8 {a['int8']:.4f}, final {a['final']:.4f}, "
          f"{a['evaluations']} evaluations, sensitivity {a['sensitivity']['seconds']} s, total {a['seconds']} s")
    assert a["labels"] and a["val_samples"] == 1114 and a["max_drop"] == 0.01 and a["budget_met"]
    assert a["final_drop"] <= 0.01 and a["evaluations"] >= 2
    assert a["fp32"] > 0.9
    layers = {row["node"]: row for row in q["layers"]}
    assert layers["fc1"]["sensitivity"] > 0 and layers["fc2"]["sensitivity"] > 0
    assert {layers["fc1"]["sensitivity_rank"], layers["fc2"]["sensitivity_rank"]} == {1, 2}
    assert layers["softmax"]["sensitivity"] is None
    txt = (out / "report.txt").read_text()
    assert "sensitivity" in txt and "allowed drop 1.00 point(s)" in txt
    # the artifact (C runtime) reaches the accuracy the report states
    m = edgec.load(out)
    pred = np.array([m.run({"features": spam["x"][i:i + 1]})["probs"].argmax() for i in range(len(spam["x"]))])
    assert float((pred == spam["y"]).mean()) == pytest.approx(a["final"], abs=2 / 1114)


def test_api_without_labels(spam):
    graph, info = prepare_graph(spam["model"], input_shapes=SHAPES, quantize="int8", calib=spam["calib"],
                                val=spam["val_nolabels"], max_accuracy_drop=0.0)
    a = info["accuracy"]
    assert not a["labels"] and "agreement" in a["metric"] and a["fp32"] == 1.0
    assert a["budget_met"] and a["final"] == 1.0
    assert info["int8_nodes"] + info["float_nodes"] == len(info["layers"])


def test_cli_errors(spam, tmp_path, capsys):
    base = ["compile", spam["model"], "--input-shape", "features=1,1024", "--quantize", "int8",
            "--calib", str(spam["calib"])]
    rc = cli_main(base + ["-o", str(tmp_path / "a"), "--max-accuracy-drop", "0.01"])
    assert rc == 1 and "needs validation data" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", feats=spam["x"][:10], labels=spam["y"][:10])
    rc = cli_main(base + ["-o", str(tmp_path / "b"), "--val", str(tmp_path / "bad.npz"), "--max-accuracy-drop", "0.01"])
    err = capsys.readouterr().err
    assert rc == 1 and "validation data" in err and "'features'" in err
    np.savez(tmp_path / "cnt.npz", features=spam["x"][:10], labels=spam["y"][:9])
    rc = cli_main(base + ["-o", str(tmp_path / "c"), "--val", str(tmp_path / "cnt.npz")])
    assert rc == 1 and "10 sample(s) but 9 label(s)" in capsys.readouterr().err
    rc = cli_main(base + ["-o", str(tmp_path / "d"), "--val", str(spam["val"]), "--max-accuracy-drop", "1"])
    assert rc == 1 and "0.01 = 1 point" in capsys.readouterr().err
    rc = cli_main(["compile", spam["model"], "--input-shape", "features=1,1024", "-o", str(tmp_path / "e"),
                   "--val", str(spam["val"])])
    assert rc == 1 and "quantize is not set" in capsys.readouterr().err
    assert not any((tmp_path / k).exists() for k in "abcde")
    with pytest.raises(EdgecError, match="needs validation data"):
        edgec.compile(spam["model"], input_shapes=SHAPES, output_dir=tmp_path / "f", quantize="int8",
                      calib=spam["calib"], max_accuracy_drop=0.01)


def test_budget_below_sampling_error_is_reported(sensitive, caplog):
    """A budget under twice the binomial standard error of the int8 metric on the validation set
    is in the noise (PP-OCR: 1 point on 200 images at 97.5%, std error 1.1 points): the search
    still runs, and says so (log warning, progress line, ``std_error`` in the report)."""
    import logging
    graph, ranges, xv, labels = sensitive
    val = load_validation({"x": xv, "labels": labels}, graph)
    lines = []
    with caplog.at_level(logging.WARNING, logger="edgec.quant"):
        _, s = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, 0.0, finish=_finish,
                                       progress=lines.append)
    n, m8 = s["val_samples"], s["int8"]
    assert 0 < m8 < 1 and s["int8_drop"] > 0
    assert s["std_error"] == pytest.approx(math.sqrt(m8 * (1 - m8) / n))
    assert any("below twice the sampling error" in r.getMessage() for r in caplog.records)
    assert any("sampling error" in line for line in lines)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgec.quant"):   # a budget the int8 graph meets: no note
        _, s2 = accuracy_aware_quantize(graph, ranges, QuantizeOptions(), val, 0.99, finish=_finish)
    assert s2["budget_met"] and not any("sampling error" in r.getMessage() for r in caplog.records)
