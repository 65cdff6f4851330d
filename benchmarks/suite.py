#!/usr/bin/env python3
"""The benchmark suite: edgec fp32/int8 beside onnxruntime fp32/int8 and TVM's Relax flow.

    python benchmarks/suite.py                              # every model, 1 and 2 threads
    python benchmarks/suite.py --models dscnn,ppocr_cls --threads 1 --runs 200
    python benchmarks/suite.py --no-relax --no-c            # faster: skip TVM Relax and the C runner

For each model (``--list`` shows them): compile with edgec in fp32 and in int8 (the model's
own calibration data, below), quantize the float model with onnxruntime's
``quantize_static`` (QDQ, per-channel int8 weights, uint8 activations, the same calibration
samples), and where ``--relax`` build it with TVM's own default Relax flow
(``relax.frontend.onnx.from_onnx`` + ``tvm.compile`` for the host CPU, no tuning). Then, on
the same inputs, for 1 and 2 threads, time every engine through Python (``--warmup``
untimed runs, then the median / p90 of ``--runs``), and edgec also from its C runner
(``run_model --bench``, so the binding's cost shows).

Accuracy of int8 beside fp32 on ``--eval`` fresh inputs of the model's distribution: top-1
agreement with the float model (classifiers) and the mean cosine similarity of the outputs,
for edgec int8 and for onnxruntime int8. An int8 model that is fast but wrong does not count,
so the table prints these beside the times.

Roofline: for the int8 artifact, the op with the most MACs, its median time from the
runtime's profiler, hence its GOP/s (2 ops per MAC), beside the machine's int8 peak from
``benchmarks/int8_peak.py`` (read from ``benchmarks/results/int8_peak.json``, measured when
missing).

Calibration and evaluation data: the text MLP uses real SMS messages (train split for
calibration, test split for evaluation) through its featurizer; the PP-OCR classifier uses
images of uniform random 8-bit pixels with the model's (p / 255 - 0.5) / 0.5 preprocessing;
the BERT-shaped encoder real sentences (TREC and SMS) through its WordPiece tokenizer; the
others (random-weight DS-CNN and MobileNetV2, resnet50-light) standard normal inputs.

Writes ``benchmarks/results/suite.json`` and ``suite.md``. Nothing here asserts speed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_fp32  # noqa: E402  (stats, C runner helpers, machine info)


def _load_module(name: str, path: Path):
    """A module by file path under a name of its own: benchmarks/models.py and the text example's
    models.py must not shadow each other through sys.path."""
    import importlib.util
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod

RESULTS = REPO / "benchmarks" / "results"


@dataclass
class Model:
    name: str
    make: Callable[[Path], Path]                     # writes/returns the float ONNX model
    shapes: dict[str, list[int]]
    data: Callable[[int, int, bool], list[dict[str, np.ndarray]]]   # (seed, n, eval) -> feeds
    classifier: bool = True
    note: str = ""
    calib_n: int = 32
    extra: dict[str, Any] = field(default_factory=dict)


# -- data ----------------------------------------------------------------------------------------

def _normal(shapes):
    def data(seed, n, _eval):
        rng = np.random.default_rng(seed)
        return [{k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()} for _ in range(n)]
    return data


def _images(seed, n, _eval):
    rng = np.random.default_rng(seed)
    return [{"x": ((rng.integers(0, 256, (1, 3, 48, 192)).astype(np.float32) / 255.0 - 0.5) / 0.5)}
            for _ in range(n)]


def _sms(seed, n, is_eval):
    sys.path.insert(0, str(REPO / "tools"))
    import make_example_model as mem
    texts, _ = mem.read_tsv(mem.DATA / ("test.tsv" if is_eval else "train.tsv"))
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
    return [{"features": mem.featurize(texts[i])[None, :].astype(np.float32)} for i in idx]


def _sentences(seed, n, is_eval):
    from tests.shared_data import shared_data
    root = shared_data("textcls")
    split = "test.tsv" if is_eval else "train.tsv"
    lines = []
    for ds in ("trec6", "sms_spam"):
        lines += [ln.split("\t", 1)[1] for ln in (root / ds / split).read_text().splitlines() if "\t" in ln]
    rng = np.random.default_rng(seed)
    return [lines[i] for i in rng.choice(len(lines), size=min(n, len(lines)), replace=False)]


# -- models --------------------------------------------------------------------------------------

def _file(p: Path):
    def make(_work):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found")
        return p
    return make


def _generated(fn_name: str):
    def make(work):
        models = _load_module("edgec_benchmark_models", REPO / "benchmarks" / "models.py")
        out = work / f"{fn_name}.onnx"
        if not out.is_file():
            import onnx
            onnx.save(getattr(models, fn_name)(), out)
        return out
    return make


def _light(name):
    import onnx
    return Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def _bert_make(work):
    """all-MiniLM-L6-v2 (a 6-layer BERT, hidden 384) at seq 128, exported with torch."""
    out = work / "minilm_l6_seq128.onnx"
    if not out.is_file():
        sys.path.insert(0, str(REPO / "tools"))
        import export_minilm
        export_minilm.main([str(out)])
    return out


def _bert_data(seed, n, is_eval):
    sys.path.insert(0, str(REPO / "tools"))
    import export_minilm
    tok = export_minilm.WordPieceTokenizer.from_file(export_minilm.default_model_dir() / "vocab.txt")
    return [tok.encode(s, 128) for s in _sentences(seed, n, is_eval)]


def _trec_questions(seed, n, is_eval):
    """Real TREC-6 questions featurized as the text example's student reads them (features, ids)."""
    from tests.shared_data import shared_data
    tok = _load_module("edgec_example_tokenizer", REPO / "examples" / "text_classification" / "tokenizer.py")
    MAX_TOKENS, STUDENT_BUCKETS, TEACHER_VOCAB, Featurizer = (tok.MAX_TOKENS, tok.STUDENT_BUCKETS, tok.TEACHER_VOCAB,
                                                              tok.Featurizer)
    path = shared_data("textcls") / "trec6" / ("test.tsv" if is_eval else "train.tsv")
    texts = [ln.split("\t", 1)[1] for ln in path.read_text().splitlines() if "\t" in ln]
    rng = np.random.default_rng(seed)
    pick = [texts[i] for i in rng.choice(len(texts), size=min(n, len(texts)), replace=False)]
    fz = Featurizer(STUDENT_BUCKETS, TEACHER_VOCAB, MAX_TOKENS)
    feats, ids = fz.features(pick), fz.token_ids(pick)
    return [{"features": feats[i:i + 1], "ids": ids[i:i + 1]} for i in range(len(pick))]


def _student_make(work):
    p = REPO / "build" / "example" / "text_classification" / "seed0" / "pruned.onnx"
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: run python examples/text_classification/run.py first "
                                f"(it saves the first seed's distilled + pruned + fine-tuned student there)")
    return p


def builtin_models() -> dict[str, Model]:
    ms = [
        Model("text_mlp", _file(REPO / "tests/data/models/sms_spam_mlp.onnx"), {"features": [1, 1024]}, _sms,
              note="SMS spam MLP (hashed bag of words, 1024 -> 64 -> 2)", calib_n=300),
        Model("text_student", _student_make, {}, _trec_questions, calib_n=128,
              note="distilled + pruned + fine-tuned text student (examples/text_classification), real TREC-6 "
                   "questions"),
        Model("dscnn", _generated("dscnn"), {"input": [1, 1, 49, 10]}, _normal({"input": [1, 1, 49, 10]}),
              note="DS-CNN keyword spotting shape, random weights"),
        Model("mobilenet_v2", _generated("mobilenet_v2"), {"input": [1, 3, 224, 224]},
              _normal({"input": [1, 3, 224, 224]}), note="MobileNetV2 1.0 224, random weights", calib_n=16),
        Model("ppocr_cls", _file(REPO / "tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
              {"x": [1, 3, 48, 192]}, _images, note="PP-OCR direction classifier (trained)"),
        Model("resnet50", _generated("resnet50_light_seeded"), {}, None, calib_n=8,
              note="resnet50-light (onnx's light model zoo) with seeded weights in place of its constant fill"),
        Model("bert_minilm", _bert_make, {"input_ids": [1, 128], "attention_mask": [1, 128]}, _bert_data,
              classifier=False, note="all-MiniLM-L6-v2 sentence encoder, seq 128 (trained)", calib_n=64),
    ]
    return {m.name: m for m in ms}


def _model_inputs(path: Path, shapes) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    return bench_fp32.model_inputs(path, {k: tuple(v) for k, v in shapes.items()})


def _default_data(inputs):
    def data(seed, n, _eval):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            f = {}
            for k, (s, dt) in inputs.items():
                f[k] = (rng.standard_normal(s).astype(dt) if np.issubdtype(dt, np.floating)
                        else rng.integers(0, 2, s).astype(dt))
            out.append(f)
        return out
    return data


# -- engines -------------------------------------------------------------------------------------

def _ort(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_quantize(fp32: Path, out: Path, calib: list[dict]) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    def run(src: Path) -> None:
        quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)

    # onnxruntime's recommended pre-processing (shape inference + graph optimisation) first; where
    # the optimised graph gives an invalid QDQ model (PP-OCR: a Conv+Add fusion whose bias is a
    # Reshape output becomes an int32 DequantizeLinear of a non-constant), without the optimisation
    pre = out.with_name(out.stem + "_pre.onnx")
    last: Exception | None = None
    for skip_optimization in (False, True):
        try:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True, skip_optimization=skip_optimization)
            src = pre
        except Exception:
            src = fp32
        try:
            run(src)
            _ort(out, 1)          # loads: the quantized model is valid
            return out
        except Exception as e:  # noqa: BLE001 - reported by the caller after the second try
            last = e
    raise last


def _host_tvm_target() -> dict:
    """The same TVM target dict edgec compiles the host kernels with (a fair comparison)."""
    from edgec.targets import load_target
    return dict(load_target("host").tvm)


def relax_bench(path: Path, shapes, feeds, threads: int, runs: int, warmup: int) -> dict:
    """TVM's own default flow, in a subprocess (TVM_NUM_THREADS is read when its pool starts)."""
    with tempfile.TemporaryDirectory(prefix="edgec-relax-") as td:
        np.savez(Path(td) / "feeds.npz", **feeds)
        code = f"""
import json, time, numpy as np, onnx, tvm
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx
m = onnx.load({str(path)!r})
shapes = {json.dumps({k: list(v) for k, v in shapes.items()})}
t0 = time.perf_counter()
mod = from_onnx(m, shape_dict=shapes, keep_params_in_input=False)
ex = tvm.compile(mod, target=tvm.target.Target({json.dumps(_host_tvm_target())}))
vm = relax.VirtualMachine(ex, tvm.cpu())
compile_s = time.perf_counter() - t0
z = np.load({str(Path(td) / 'feeds.npz')!r})
names = [str(getattr(v, "name_hint", None) or v.name) for v in mod["main"].params]
args = [tvm.runtime.tensor(z[n]) for n in names]
for _ in range({warmup}):
    vm["main"](*args)
ts = []
for _ in range({runs}):
    t = time.perf_counter(); vm["main"](*args); ts.append((time.perf_counter() - t) * 1e3)
print(json.dumps({{"median_ms": float(np.median(ts)), "p90_ms": float(np.percentile(ts, 90)), "compile_s": compile_s}}))
"""
        env = dict(os.environ, TVM_NUM_THREADS=str(threads))
        try:
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
        except subprocess.TimeoutExpired:
            return {"error": "TVM Relax flow timed out (900 s)"}
    if p.returncode != 0:
        tail = [ln for ln in (p.stderr or p.stdout).strip().splitlines() if ln.strip()]
        return {"error": "TVM Relax flow failed: " + (tail[-1][:300] if tail else f"exit {p.returncode}")}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _outputs_agree(ref: list[dict], got: list[dict], classifier: bool) -> dict:
    cos, agree = [], []
    for r, g in zip(ref, got):
        a = np.concatenate([np.asarray(v, np.float64).ravel() for v in r.values()])
        b = np.concatenate([np.asarray(v, np.float64).ravel() for v in g.values()])
        cos.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)))
        if classifier:
            first_r, first_g = next(iter(r.values())), next(iter(g.values()))
            agree.append(bool(np.argmax(first_r) == np.argmax(first_g)))
    out = {"cosine_mean": float(np.mean(cos)), "cosine_min": float(np.min(cos)), "n": len(cos)}
    if classifier:
        out["top1_agreement"] = float(np.mean(agree))
    return out


def _c_bench(run_model: Path | None, art: Path, feeds: dict, threads: int, runs: int, work: Path) -> dict:
    if run_model is None:
        return {"error": "skipped"}
    files = []
    order = [i["name"] for i in json.loads((Path(art) / "manifest.json").read_text())["inputs"]]
    for k, name in enumerate(order):          # run_model takes the input files in the artifact's order
        f = work / f"c_in_{k}.npy"
        np.save(f, feeds[name])
        files.append(str(f))
    cmd = [str(run_model), str(art), *files, "-o", str(work / "c_out"), "--bench", str(runs), "--threads", str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": f"run_model exited {p.returncode}: {(p.stderr or p.stdout)[-300:]}"}
    try:
        return bench_fp32.parse_c_bench(p.stdout + "\n" + p.stderr)
    except ValueError as e:
        return {"error": str(e)}


def _time(fn, warmup, runs):
    return bench_fp32.time_fn(fn, warmup, runs)


def roofline(art: Path, feeds: dict, reps: int = 30) -> dict:
    import edgec
    rep = json.loads((art / "report.json").read_text())
    macs = {l["name"]: (l.get("macs") or 0, l.get("op")) for l in rep.get("layers", [])}
    with edgec.load(art, threads=1) as m:
        per = [m.run_profiled(feeds, copy=False)[1] for _ in range(reps)]
        names = m.op_names
    med = np.median(np.asarray(per, np.float64), axis=0)
    best = max(range(len(names)), key=lambda i: macs.get(names[i], (0, ""))[0])
    n_macs, op = macs.get(names[best], (0, "?"))
    return {"op": names[best], "type": op, "macs": n_macs, "time_us": float(med[best]) / 1e3,
            "gops": 2.0 * n_macs / float(med[best]) if med[best] > 0 else None}


def int8_peak() -> dict | None:
    f = RESULTS / "int8_peak.json"
    if not f.is_file():
        peak_script = REPO / "benchmarks" / "int8_peak.py"
        if not peak_script.is_file():
            return None
        # a fresh clone has no benchmarks/results/ yet: the script would fail to write its figures
        # and the table's "% of int8 peak" column would read "-"
        f.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(peak_script), "--json", str(f)], capture_output=True, text=True)
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def bench_one(spec: Model, args, work: Path, run_model: Path | None) -> dict:
    import edgec
    res: dict[str, Any] = {"model": spec.name, "note": spec.note}
    path = spec.make(work)
    res["path"] = str(path)
    inputs = _model_inputs(path, spec.shapes)
    shapes = {k: list(s) for k, (s, _) in inputs.items()}
    data = spec.data or _default_data(inputs)
    calib = data(1, spec.calib_n, False)
    evals = data(2, args.eval, True)
    feeds = evals[0]

    # float reference outputs (onnxruntime fp32) on the eval set
    sess32 = _ort(path, 1)
    onames = [o.name for o in sess32.get_outputs()]
    ref = [dict(zip(onames, sess32.run(None, f))) for f in evals]

    arts = {}
    for prec in ("fp32", "int8"):
        t0 = time.perf_counter()
        try:
            kw = {"quantize": "int8", "calib": calib} if prec == "int8" else {}
            # the untuned compile (a user's ~/.cache/edgec/tuning.json must not change these rows)
            arts[prec] = Path(edgec.compile(str(path), input_shapes=shapes, output_dir=work / f"{spec.name}_{prec}",
                                            tuning=False, **kw))
            rep = json.loads((arts[prec] / "report.json").read_text())
            res[f"edgec_{prec}_compile_s"] = time.perf_counter() - t0
            res[f"edgec_{prec}_sizes"] = {k: rep["summary"].get(k) for k in ("blob_bytes", "constant_bytes", "arena_bytes",
                                                                             "kernel_code_bytes")}
        except Exception as e:
            res[f"edgec_{prec}_error"] = f"{type(e).__name__}: {str(e)[:400]}"
    if "int8" in arts and args.tune:
        # edgec tune on the int8 kernels, then the tuned artifact (its own records file per run)
        from edgec.tune import tune
        t0 = time.perf_counter()
        try:
            rec = work / f"{spec.name}_tuning.json"
            rep = tune(str(path), input_shapes=shapes, quantize="int8", calib=calib, trials=args.tune,
                       max_kernels=args.tune_kernels, records=rec, progress=lambda m: None)
            arts["int8_tuned"] = Path(edgec.compile(str(path), input_shapes=shapes, quantize="int8", calib=calib,
                                                    output_dir=work / f"{spec.name}_int8_tuned", tuning=rec))
            res["tune"] = {"seconds": time.perf_counter() - t0, "kernels": len(rep["kernels"]), "tuned": rep["tuned"]}
        except Exception as e:
            res["tune"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    if "int8" in arts:
        with edgec.load(arts["int8"], threads=1) as m:
            got = [m.run(f) for f in evals]
        res["edgec_int8_accuracy"] = _outputs_agree(ref, got, spec.classifier)
    if "fp32" in arts:
        with edgec.load(arts["fp32"], threads=1) as m:
            got = [m.run(f) for f in evals]
        res["edgec_fp32_accuracy"] = _outputs_agree(ref, got, spec.classifier)

    qdq = None
    try:
        qdq = ort_quantize(path, work / f"{spec.name}_ort_qdq.onnx", calib)
        s8 = _ort(qdq, 1)
        got = [dict(zip(onames, s8.run(None, f))) for f in evals]
        res["ort_int8_accuracy"] = _outputs_agree(ref, got, spec.classifier)
        res["ort_int8_bytes"] = qdq.stat().st_size
    except Exception as e:
        res["ort_int8_error"] = f"{type(e).__name__}: {str(e)[:300]}"
        qdq = None
    res["fp32_onnx_bytes"] = path.stat().st_size

    res["threads"] = {}
    for th in args.threads:
        row: dict[str, Any] = {}
        s = _ort(path, th)
        row["ort_fp32"] = _time(lambda: s.run(None, feeds), args.warmup, args.runs)
        if qdq is not None:
            s8 = _ort(qdq, th)
            row["ort_int8"] = _time(lambda: s8.run(None, feeds), args.warmup, args.runs)
            del s8
        # each engine runs alone: onnxruntime's intra-op threads spin-wait after a run, and a live
        # session's spinning worker takes the second core from the next engine's threads
        del s
        import gc
        gc.collect()
        for prec, art in arts.items():
            with edgec.load(art, threads=th) as m:
                row[f"edgec_{prec}"] = _time(lambda: m.run(feeds, copy=False), args.warmup, args.runs)
            if run_model is not None:
                row[f"edgec_{prec}_c"] = _c_bench(run_model, art, feeds, th, args.runs, work)
        if args.relax:
            row["tvm_relax"] = relax_bench(path, shapes, feeds, th, max(10, args.runs // 5), 3)
        res["threads"][str(th)] = row
    if "int8" in arts:
        try:
            res["roofline_int8"] = roofline(arts["int8"], feeds)
        except Exception as e:
            res["roofline_int8"] = {"error": f"{type(e).__name__}: {e}"}
    return res


def _ms(d):
    return f"{d['median_ms']:.3f}" if isinstance(d, dict) and "median_ms" in d else "n/a"


def _ratio(a, b):
    if isinstance(a, dict) and isinstance(b, dict) and "median_ms" in a and "median_ms" in b and b["median_ms"] > 0:
        return a["median_ms"] / b["median_ms"]
    return None


def _fmt(r):
    return "n/a" if r is None else f"{r:.2f}x"


def table(results: list[dict], peak: dict | None) -> str:
    tuned = any("edgec_int8_tuned" in row for r in results for row in r.get("threads", {}).values())
    lines = ["| model | threads | edgec fp32 ms | edgec int8 ms | edgec int8 C ms | ORT fp32 ms | ORT int8 ms | "
             "TVM Relax ms | fp32 / ORT fp32 | int8 / best ORT | int8 agree (edgec / ORT) | int8 cosine (edgec / ORT) |"
             + (" edgec int8 tuned ms | tuned / best ORT |" if tuned else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if tuned else "")]
    notes = []
    for r in results:
        if "threads" not in r:
            notes.append(f"- {r['model']}: {r.get('error', 'failed')}")
            continue
        for k in ("edgec_fp32_error", "edgec_int8_error", "ort_int8_error"):
            if k in r:
                notes.append(f"- {r['model']} {k[:-6]}: {r[k]}")
        if "error" in (r.get("tune") or {}):
            notes.append(f"- {r['model']} edgec tune: {r['tune']['error']}")
        a8, o8 = r.get("edgec_int8_accuracy", {}), r.get("ort_int8_accuracy", {})

        def acc(d, key):
            return f"{d[key]:.3f}" if key in d else "-"
        for th, row in r["threads"].items():
            best = min((row[k] for k in ("ort_fp32", "ort_int8") if k in row), key=lambda d: d["median_ms"])
            relax = row.get("tvm_relax", {})
            if "error" in relax and th == "1":
                notes.append(f"- {r['model']} TVM Relax: {relax['error']}")
            lines.append(f"| {r['model']} | {th} | {_ms(row.get('edgec_fp32'))} | {_ms(row.get('edgec_int8'))} | "
                         f"{_ms(row.get('edgec_int8_c'))} | {_ms(row.get('ort_fp32'))} | {_ms(row.get('ort_int8'))} | "
                         f"{_ms(relax)} | {_fmt(_ratio(row.get('edgec_fp32'), row.get('ort_fp32')))} | "
                         f"{_fmt(_ratio(row.get('edgec_int8'), best))} | {acc(a8, 'top1_agreement')} / {acc(o8, 'top1_agreement')} | "
                         f"{acc(a8, 'cosine_mean')} / {acc(o8, 'cosine_mean')} |"
                         + (f" {_ms(row.get('edgec_int8_tuned'))} | {_fmt(_ratio(row.get('edgec_int8_tuned'), best))} |"
                            if tuned else ""))
    lines += ["", "| model | fp32 blob KiB | int8 blob KiB | int8 / fp32 | ORT QDQ file KiB | compile fp32 s | compile int8 s | "
              "largest int8 layer | its GOP/s | % of int8 peak |", "|---|---|---|---|---|---|---|---|---|---|"]
    pk = peak.get("peak_gops_1thread") if peak else None
    for r in results:
        if "threads" not in r:
            continue
        f32 = (r.get("edgec_fp32_sizes") or {}).get("blob_bytes")
        i8 = (r.get("edgec_int8_sizes") or {}).get("blob_bytes")
        rl = r.get("roofline_int8") or {}
        g = rl.get("gops")
        lines.append(f"| {r['model']} | {f32 / 1024 if f32 else float('nan'):.1f} | {i8 / 1024 if i8 else float('nan'):.1f} | "
                     f"{(i8 / f32) if f32 and i8 else float('nan'):.3f} | "
                     f"{r['ort_int8_bytes'] / 1024 if r.get('ort_int8_bytes') else float('nan'):.1f} | "
                     f"{r.get('edgec_fp32_compile_s', float('nan')):.1f} | {r.get('edgec_int8_compile_s', float('nan')):.1f} | "
                     f"{rl.get('op', '-')} ({rl.get('type', '-')}) | {'-' if g is None else f'{g:.1f}'} | "
                     f"{'-' if (g is None or not pk) else f'{100 * g / pk:.0f}%'} |")
    if peak:
        lines += ["", f"int8 peak, one core: {pk} GOP/s ({peak.get('how', '')})"]
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="comma-separated subset (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--eval", type=int, default=50, help="inputs for the int8-vs-fp32 accuracy columns")
    ap.add_argument("--tune", type=int, default=0, metavar="TRIALS",
                    help="also `edgec tune` each model's int8 kernels with this many trials per kernel and time the "
                         "tuned artifact (column 'edgec int8 tuned ms'); default 0: no tuning")
    ap.add_argument("--tune-kernels", type=int, default=None, metavar="N", help="with --tune: only the N heaviest kernels")
    ap.add_argument("--no-relax", dest="relax", action="store_false")
    ap.add_argument("--no-c", dest="c", action="store_false")
    ap.add_argument("--work", type=Path, default=None, help="keep artifacts here (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=RESULTS / "suite")
    args = ap.parse_args(argv)
    specs = builtin_models()
    if args.list:
        for s in specs.values():
            print(f"{s.name:<14} {s.note}")
        return 0
    names = args.models.split(",") if args.models else list(specs)
    unknown = [n for n in names if n not in specs]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; --list shows them")
    args.threads = [int(t) for t in args.threads.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="edgec-suite-"))
    work.mkdir(parents=True, exist_ok=True)
    run_model = None
    if args.c:
        try:
            run_model = bench_fp32.build_run_model(work / "cbuild")
        except Exception as e:
            print(f"C runner unavailable: {e}", file=sys.stderr)
    results = []
    for n in names:
        print(f"== {n}", flush=True)
        try:
            r = bench_one(specs[n], args, work, run_model)
        except Exception as e:
            r = {"model": n, "error": f"{type(e).__name__}: {e}"}
            traceback.print_exc()
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k in ("threads", "edgec_int8_accuracy", "error")},
                         default=str)[:1500], flush=True)
    peak = int8_peak()
    md = table(results, peak)
    print(md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {"machine": bench_fp32.machine(), "args": {k: str(v) for k, v in vars(args).items()},
           "peak": peak, "results": results}
    Path(str(args.out) + ".json").write_text(json.dumps(out, indent=1, default=str))
    Path(str(args.out) + ".md").write_text(md + "\n")
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0 if all("threads" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
