#!/usr/bin/env python3
"""fp32 latency of edgec beside onnxruntime, one thread, same inputs.

    python benchmarks/bench_fp32.py                         # PP-OCR classifier + resnet50 (light)
    python benchmarks/bench_fp32.py model.onnx --input-shape x=1,3,224,224 --runs 100
    python benchmarks/bench_fp32.py --models ppocr_cls --no-c --json out.json

For each model: compile with ``edgec.compile`` (wall time, with a fresh kernel cache unless
``--cache-dir`` is given, so the number is a cold compile), then time, on the same seeded
inputs,
- edgec through Python (``edgec.load(art, threads=1).run``),
- edgec through the C example program (``run_model <art> <inputs> --bench N``; built from
  the top-level CMakeLists.txt into a temporary folder, or ``--run-model PATH``); its own
  first run is the warm-up, and it reports what it prints (p90 is n/a when it prints none),
- onnxruntime CPU with intra_op_num_threads=1, inter_op_num_threads=1, sequential execution
  and its default graph optimizations.
Each timing is ``--warmup`` untimed runs, then median and p90 of ``--runs`` timed runs.
Prints a markdown table with ratios (edgec time / onnxruntime time: below 1 means edgec
is faster) and writes everything, machine details included, to a JSON file.

Nothing here asserts anything about speed; a part that cannot run is reported as such in
the table and the JSON (and makes the exit status 1), the others still run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass
class Spec:
    name: str
    path: Path
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # empty: the model's static shapes


def _light(name: str) -> Path:
    import onnx
    return Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def builtin_specs() -> dict[str, Spec]:
    return {
        "ppocr_cls": Spec("ppocr_cls", REPO / "tests" / "data" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx",
                          {"x": (1, 3, 48, 192)}),
        "resnet50_light": Spec("resnet50_light", _light("resnet50")),
    }


def parse_shapes(specs: list[str]) -> dict[str, tuple[int, ...]]:
    out = {}
    for s in specs or []:
        name, _, dims = s.rpartition("=")
        if not name:
            raise SystemExit(f"--input-shape {s!r}: expected name=d0,d1,...")
        out[name] = tuple(int(d) for d in dims.replace("x", ",").split(",") if d)
    return out


def model_inputs(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{input name: (shape, dtype)}: bound shapes first, else the model's static dims."""
    import onnx
    from onnx import helper
    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    out = {}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        if vi.name in shapes:
            out[vi.name] = (tuple(shapes[vi.name]), dt)
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        if any(d is None for d in dims):
            raise SystemExit(f"{path}: input {vi.name!r} has dynamic dims {dims}; give --input-shape {vi.name}=...")
        out[vi.name] = (tuple(dims), dt)
    return out


def make_feeds(inputs, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (shape, dt) in inputs.items():
        if dt.kind == "f":
            feeds[name] = rng.uniform(-1, 1, size=shape).astype(dt)
        elif dt.kind in "iu":
            feeds[name] = rng.integers(0, 8, size=shape).astype(dt)
        elif dt.kind == "b":
            feeds[name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise SystemExit(f"cannot generate inputs of dtype {dt} for {name!r}")
    return feeds


def stats(times_ms: list[float]) -> dict[str, float]:
    t = np.asarray(times_ms, dtype=np.float64)
    return {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
            "min_ms": float(t.min()), "runs": int(t.size)}


def time_fn(fn, warmup: int, runs: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return stats(times)


def ort_session(path: Path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def build_run_model(build_dir: Path) -> Path:
    if not (REPO / "CMakeLists.txt").is_file():
        raise RuntimeError(f"{REPO}/CMakeLists.txt is missing")
    if shutil.which("cmake") is None:
        raise RuntimeError("cmake not found on PATH")
    for cmd in (["cmake", "-S", str(REPO), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build_dir), "--target", "run_model", "-j", "2"]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    exes = [p for p in build_dir.rglob("run_model") if p.is_file() and os.access(p, os.X_OK)]
    if len(exes) != 1:
        raise RuntimeError(f"expected one run_model executable under {build_dir}, found {exes}")
    return exes[0]


_NUM = r"([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)"
_UNIT_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "ns": 1e-6, "s": 1e3}


def parse_c_bench(text: str) -> dict[str, float | None]:
    """median (and p90 when printed) in ms from ``run_model --bench`` output.

    Accepts a JSON object line with median_ms|p50_ms (and p90_ms), or text such as
    ``bench: 50 runs, 1 thread(s): p50 812.3 us, min ...`` (median or p50; units ns, us,
    µs, ms or s). p90 is None when the program does not print it."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            med = d.get("median_ms", d.get("p50_ms"))
            if med is not None:
                p90 = d.get("p90_ms")
                return {"median_ms": float(med), "p90_ms": None if p90 is None else float(p90)}

    def find(key: str) -> float | None:
        m = re.search(rf"(?:{key})\s*[:=]?\s*{_NUM}\s*(ms|us|µs|ns|s)\b", text, re.I)
        return float(m.group(1)) * _UNIT_MS[m.group(2).lower()] if m else None
    med = find("median|p50")
    if med is None:
        raise ValueError(f"cannot find the median/p50 latency in run_model --bench output:\n{text[-1500:]}")
    return {"median_ms": med, "p90_ms": find("p90")}


def bench_model(spec: Spec, args, work: Path, run_model: Path | None, c_error: str | None) -> dict:
    import edgec
    res: dict = {"model": spec.name, "path": str(spec.path)}
    if not spec.path.is_file():
        res["error"] = f"{spec.path} not found"
        return res
    inputs = model_inputs(spec.path, spec.shapes)
    res["inputs"] = {k: {"shape": list(s), "dtype": d.name} for k, (s, d) in inputs.items()}
    feeds = make_feeds(inputs, args.seed)

    sess = ort_session(spec.path)
    ort_out = sess.run(None, feeds)
    res["onnxruntime"] = time_fn(lambda: sess.run(None, feeds), args.warmup, args.runs)

    art = work / spec.name
    t0 = time.perf_counter()
    try:
        art = edgec.compile(str(spec.path), target=args.target, input_shapes={k: s for k, (s, _) in inputs.items()},
                            output_dir=art)
    except Exception as e:  # report and go on with the next model
        res["error"] = f"compile failed: {type(e).__name__}: {e}"
        return res
    res["compile_s"] = time.perf_counter() - t0
    report = Path(art) / "report.json"
    if report.is_file():
        rep = json.loads(report.read_text())
        res["compile_report_s"] = rep.get("compile_time")
        res["report_summary"] = rep.get("summary")

    m = edgec.load(art, threads=1)
    got = m.run(feeds)
    names = [t.name for t in m.outputs]
    res["max_abs_error_vs_onnxruntime"] = max(
        float(np.max(np.abs(np.asarray(got[n], np.float64) - np.asarray(w, np.float64)))) if np.size(w) else 0.0
        for n, w in zip(names, ort_out))
    res["edgec_python"] = time_fn(lambda: m.run(feeds), args.warmup, args.runs)

    if run_model is None:
        res["edgec_c"] = {"error": c_error or "skipped (--no-c)"}
    else:
        files = []
        for k, (name, arr) in enumerate(feeds.items()):
            f = work / f"{spec.name}_input_{k}.npy"
            np.save(f, arr)
            files.append(str(f))
        cmd = [str(run_model), str(art), *files, "-o", str(work / f"{spec.name}_c_out"), "--bench", str(args.runs)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            res["edgec_c"] = {"error": f"`{' '.join(cmd)}` exited {p.returncode}: {(p.stderr or p.stdout)[-800:]}"}
        else:
            try:
                res["edgec_c"] = parse_c_bench(p.stdout + "\n" + p.stderr)
            except ValueError as e:
                res["edgec_c"] = {"error": str(e)}
    return res


def _ms(d) -> str:
    if not (isinstance(d, dict) and "median_ms" in d):
        return "n/a"
    p90 = d.get("p90_ms")
    return f"{d['median_ms']:.3f} / " + (f"{p90:.3f}" if p90 is not None else "n/a")


def _ratio(a, b) -> str:
    if isinstance(a, dict) and isinstance(b, dict) and "median_ms" in a and "median_ms" in b and b["median_ms"] > 0:
        return f"{a['median_ms'] / b['median_ms']:.2f}x"
    return "n/a"


def table(results: list[dict]) -> str:
    rows = ["| model | compile (s) | edgec Python median / p90 (ms) | edgec C median / p90 (ms) | "
            "onnxruntime median / p90 (ms) | Python / ORT | C / ORT | max abs err vs ORT |",
            "|---|---|---|---|---|---|---|---|"]
    notes = []
    for r in results:
        if "error" in r and "edgec_python" not in r:
            rows.append(f"| {r['model']} | n/a | n/a | n/a | {_ms(r.get('onnxruntime'))} | n/a | n/a | n/a |")
            notes.append(f"- {r['model']}: {r['error']}")
            continue
        c = r.get("edgec_c", {})
        if "error" in c:
            notes.append(f"- {r['model']}, C: {c['error'].splitlines()[0]}")
        rows.append(f"| {r['model']} | {r['compile_s']:.1f} | {_ms(r['edgec_python'])} | {_ms(c)} | "
                    f"{_ms(r['onnxruntime'])} | {_ratio(r['edgec_python'], r['onnxruntime'])} | "
                    f"{_ratio(c, r['onnxruntime'])} | {r['max_abs_error_vs_onnxruntime']:.3g} |")
    return "\n".join(rows + ([""] + notes if notes else []))


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": platform.processor()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpus"] = os.cpu_count()
    for mod in ("numpy", "onnx", "onnxruntime", "tvm"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as e:  # an absent package is worth recording, not fatal
            info[mod] = f"unavailable ({type(e).__name__})"
    import edgec
    info["edgec"] = edgec.__version__
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path, help="extra ONNX models to benchmark")
    ap.add_argument("--models", default=None,
                    help="comma-separated built-in models (ppocr_cls, resnet50_light); default: both, "
                         "or none when model paths are given")
    ap.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                    help="bind input shapes of the extra models")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default="host")
    ap.add_argument("--cache-dir", type=Path, default=None, help="kernel cache to use (default: a fresh one)")
    ap.add_argument("--no-c", action="store_true", help="do not build or time the C run_model program")
    ap.add_argument("--run-model", type=Path, default=None, help="an already built run_model executable")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "bench_fp32.json")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        raise SystemExit("--runs must be >= 1 and --warmup >= 0")

    builtins = builtin_specs()
    names = args.models.split(",") if args.models else ([] if args.paths else list(builtins))
    unknown = [n for n in names if n not in builtins]
    if unknown:
        raise SystemExit(f"unknown built-in models {unknown}; known: {sorted(builtins)}")
    specs = [builtins[n] for n in names]
    shapes = parse_shapes(args.input_shape)
    specs += [Spec(p.stem, p, shapes) for p in args.paths]

    with tempfile.TemporaryDirectory(prefix="edgec-bench-") as tmp:
        work = Path(tmp)
        os.environ["EDGEC_CACHE_DIR"] = str(args.cache_dir or work / "kernel-cache")
        run_model, c_error = args.run_model, None
        if run_model is None and not args.no_c:
            try:
                run_model = build_run_model(work / "build")
            except RuntimeError as e:
                c_error = f"run_model not built: {e}"
        results = []
        for spec in specs:
            print(f"== {spec.name} ({spec.path})", file=sys.stderr, flush=True)
            results.append(bench_model(spec, args, work, run_model, c_error))

    out = {"benchmark": "fp32", "threads": 1, "runs": args.runs, "warmup": args.warmup, "seed": args.seed,
           "target": args.target, "machine": machine(), "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(table(results))
    print(f"\nwrote {args.json}")
    def failed(r: dict) -> bool:
        return "error" in r or ("error" in r.get("edgec_c", {}) and not args.no_c)
    return 1 if any(failed(r) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
