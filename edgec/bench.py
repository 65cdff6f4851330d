"""``edgec bench``: latency of an artifact beside onnxruntime on the same inputs and threads.

    edgec bench out/ --threads 1 --runs 200 --compare onnxruntime --profile --json r.json

What is timed, for each engine, is one inference call through Python on inputs that are
already in memory: ``edgec.load(out).run(feeds)`` and onnxruntime's
``InferenceSession.run(None, feeds)`` (the same call path a user has). Each engine gets
``warmup`` untimed runs, then ``runs`` timed ones; the figures are percentiles of those runs
and the throughput is runs / their total time.

The onnxruntime side needs the float ONNX model the artifact was compiled from: ``--onnx``,
or the ``source`` recorded in the artifact's manifest when that file still exists with the
same sha256. onnxruntime runs with ``intra_op_num_threads = threads``, one inter-op thread,
sequential execution and its default (full) graph optimizations. For an int8 artifact it
also runs the artifact's own quantization exported as QDQ ONNX (``edgec export-qdq``), which
onnxruntime fuses into its QLinear kernels: the same model, bit for bit in its weights, in
both engines.

Nothing here judges speed; ratios are printed (below 1: edgec is faster).
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError, EdgecError


class BenchError(EdgecError):
    """The benchmark cannot run as asked (missing onnxruntime, no source model, ...)."""


def _stats(times_ms: list[float]) -> dict[str, float]:
    t = np.asarray(times_ms, dtype=np.float64)
    return {"p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99)), "mean_ms": float(t.mean()), "min_ms": float(t.min()),
            "throughput_per_s": float(len(t) / (t.sum() / 1e3)) if t.sum() > 0 else float("inf")}


def _time(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(max(0, warmup)):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def find_source_model(artifact: Path, manifest: dict, onnx_model=None) -> Path | None:
    """The float ONNX model to compare with: the one given, else the manifest's source if unchanged."""
    if onnx_model is not None:
        p = Path(onnx_model)
        if not p.is_file():
            raise BenchError(f"--onnx {p}: no such file")
        return p
    src = manifest.get("source") or {}
    path = src.get("path")
    if not path:
        return None
    p = Path(path)
    if not p.is_absolute():
        p = (artifact / p).resolve()
    if not p.is_file():
        return None
    from .compiler import file_sha256
    if src.get("sha256") and file_sha256(p) != src["sha256"]:
        return None
    return p


def _ort_session(ort, model, threads: int):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, (bytes, str)) else str(model), so,
                                providers=["CPUExecutionProvider"])


def _ort_feeds(sess, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [i.name for i in sess.get_inputs()]
    missing = [n for n in names if n not in feeds]
    if missing:
        raise BenchError(f"the onnxruntime model needs inputs {missing} that the artifact does not have")
    return {n: feeds[n] for n in names}


def bench_artifact(artifact, *, threads: int = 1, runs: int = 100, warmup: int = 10,
                   compare: tuple[str, ...] = (), onnx_model=None, profile: bool = False,
                   seed: int = 0, inputs: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Times an artifact (and onnxruntime when ``compare`` has "onnxruntime"); returns the result dict."""
    from .cli import random_inputs
    from .runtime import load
    from .runtime.emulated import _artifact_dir, artifact_arch, read_manifest
    from .targets import host_arch

    if runs < 1:
        raise BenchError("--runs must be at least 1")
    if threads < 1:
        raise BenchError("--threads must be at least 1")
    unknown = [c for c in compare if c != "onnxruntime"]
    if unknown:
        raise BenchError(f"unknown --compare engine(s) {unknown}; known: onnxruntime")
    adir = _artifact_dir(artifact)
    manifest = read_manifest(adir)
    arch = artifact_arch(manifest)
    if arch is not None and arch != host_arch():
        raise ArtifactError(f"{artifact} is built for {arch}: emulated timings mean nothing, so bench it on the "
                            f"device (bin/run_model <artifact> --bench N)")
    report = {}
    rp = adir / "report.json"
    if rp.is_file():
        try:
            report = json.loads(rp.read_text())
        except ValueError:
            report = {}
    summary = report.get("summary", {})
    quant = report.get("quantization") or None
    res: dict[str, Any] = {
        "model": manifest.get("model", str(artifact)), "artifact": str(adir), "target": manifest.get("target"),
        "threads": threads, "runs": runs, "warmup": warmup,
        "precision": "int8" if quant else "fp32",
        "sizes": {k: summary.get(k) for k in ("blob_bytes", "constant_bytes", "arena_bytes",
                                              "kernel_code_bytes", "library_file_bytes")},
    }
    with load(adir, threads=threads) as m:
        feeds = random_inputs(m.inputs, seed)
        if inputs:
            feeds.update(inputs)
        res["edgec"] = _stats(_time(lambda: m.run(feeds, copy=False), runs, warmup))
        if profile:
            res["profile"] = _profile(m, feeds, report, min(runs, 50))

    if "onnxruntime" in compare:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BenchError("--compare onnxruntime needs onnxruntime: pip install onnxruntime") from None
        src = find_source_model(adir, manifest, onnx_model)
        if src is None:
            raise BenchError(f"no source model to compare with: the manifest of {adir} records none that still "
                             f"exists unchanged; give it with --onnx model.onnx")
        res["source_model"] = str(src)
        sess = _ort_session(ort, src, threads)
        of = _ort_feeds(sess, feeds)
        res["onnxruntime"] = _stats(_time(lambda: sess.run(None, of), runs, warmup))
        res["onnxruntime"]["precision"] = "fp32"
        if quant:
            from .frontend.qdq_export import export_qdq
            with tempfile.TemporaryDirectory(prefix="edgec-bench-") as td:
                qdq = Path(td) / "model_qdq.onnx"
                export_qdq(adir, qdq)
                qs = _ort_session(ort, qdq, threads)
            qf = _ort_feeds(qs, feeds)
            res["onnxruntime_int8"] = _stats(_time(lambda: qs.run(None, qf), runs, warmup))
            res["onnxruntime_int8"]["precision"] = "int8 (QDQ export of this artifact)"
        for key in ("onnxruntime", "onnxruntime_int8"):
            if key in res:
                res["ratio_" + key] = res["edgec"]["p50_ms"] / res[key]["p50_ms"]
    return res


def _profile(m, feeds, report: dict, reps: int) -> list[dict[str, Any]]:
    """Per-op median time over ``reps`` profiled runs, with the report's op type and MACs."""
    per = []
    for _ in range(max(3, reps)):
        _, ns = m.run_profiled(feeds, copy=False)
        per.append(ns)
    med = np.median(np.asarray(per, dtype=np.float64), axis=0)
    layers = {lay.get("name"): lay for lay in report.get("layers", [])}
    total = float(med.sum()) or 1.0
    rows = []
    for name, t in zip(m.op_names, med):
        lay = layers.get(name, {})
        macs = lay.get("macs") or 0
        rows.append({"name": name, "op": lay.get("op", "?"), "time_us": float(t) / 1e3,
                     "share": float(t) / total, "macs": macs,
                     "gops": (2.0 * macs / float(t)) if t > 0 and macs else None})
    return rows


def format_result(r: dict[str, Any], top: int = 25) -> str:
    lines = [f"{r['model']} ({r['precision']}, target {r['target']}): {r['threads']} thread(s), "
             f"{r['runs']} runs after {r['warmup']} warm-up"]
    hdr = f"{'engine':<34} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'inf/s':>9} {'edgec/this':>10}"
    lines += [hdr, "-" * len(hdr)]
    engines = [("edgec", "edgec " + r["precision"])]
    if "onnxruntime" in r:
        engines.append(("onnxruntime", "onnxruntime fp32"))
    if "onnxruntime_int8" in r:
        engines.append(("onnxruntime_int8", "onnxruntime int8 (QDQ)"))
    for key, label in engines:
        s = r[key]
        ratio = "" if key == "edgec" else f"{r['edgec']['p50_ms'] / s['p50_ms']:.2f}x"
        lines.append(f"{label:<34} {s['p50_ms']:>9.3f} {s['p90_ms']:>9.3f} {s['p99_ms']:>9.3f} "
                     f"{s['throughput_per_s']:>9.0f} {ratio:>10}")
    sz = r.get("sizes", {})
    if any(v is not None for v in sz.values()):
        def kb(v):
            return "?" if v is None else f"{v / 1024:.1f} KiB"
        lines.append(f"model blob {kb(sz.get('blob_bytes'))} (constants {kb(sz.get('constant_bytes'))}), "
                     f"arena {kb(sz.get('arena_bytes'))}, kernel code {kb(sz.get('kernel_code_bytes'))}")
    prof = r.get("profile")
    if prof:
        lines.append("")
        lines.append(f"per-op time (median of profiled runs; top {min(top, len(prof))} of {len(prof)} ops)")
        h2 = f"{'op name':<36} {'type':<16} {'us':>9} {'share':>7} {'GOP/s':>8}"
        lines += [h2, "-" * len(h2)]
        for row in sorted(prof, key=lambda x: -x["time_us"])[:top]:
            g = "" if row["gops"] is None else f"{row['gops']:.1f}"
            lines.append(f"{row['name'][:36]:<36} {row['op'][:16]:<16} {row['time_us']:>9.1f} "
                         f"{100 * row['share']:>6.1f}% {g:>8}")
    return "\n".join(lines)


def cmd_bench(a) -> int:
    compare = tuple(c for part in (a.compare or []) for c in part.split(",") if c)
    r = bench_artifact(a.artifact, threads=a.threads, runs=a.runs, warmup=a.warmup, compare=compare,
                       onnx_model=a.onnx, profile=a.profile, seed=a.seed)
    print(format_result(r))
    if a.json:
        out = Path(a.json)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(r, indent=1))
        tmp.replace(out)
        print(f"wrote {out}")
    return 0


def add_bench_parser(sub) -> None:
    b = sub.add_parser("bench", help="measure an artifact's latency (optionally beside onnxruntime)")
    b.add_argument("artifact")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--runs", type=int, default=100)
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    b.add_argument("--compare", action="append", metavar="ENGINE",
                   help="also time this engine on the same inputs and threads (onnxruntime)")
    b.add_argument("--onnx", metavar="MODEL.onnx", help="the float model for --compare (default: the manifest's source)")
    b.add_argument("--profile", action="store_true", help="per-op time table")
    b.add_argument("--json", metavar="FILE", help="write the result as JSON")
    b.set_defaults(fn=cmd_bench)
