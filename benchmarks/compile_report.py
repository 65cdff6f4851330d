#!/usr/bin/env python3
"""Compile every bundled model and tabulate what the compiler reports: compile time (cold kernel
cache), ops, distinct kernels, arena bytes against the lower bound, constants and code size.

    python benchmarks/compile_report.py [--json out.json]

Models: the bundled SMS-spam MLP, the PP-OCR classifier (1x3x48x192), and the nine "light"
models shipped in the onnx wheel. Correctness is checked by the tests, not here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def models() -> list[tuple[str, Path, dict]]:
    import onnx
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    data = REPO / "tests" / "data" / "models"
    out = [("sms_spam_mlp", data / "sms_spam_mlp.onnx", {"features": (1, 1024)}),
           ("ppocr_cls", data / "ch_ppocr_mobile_v2.0_cls_infer.onnx", {"x": (1, 3, 48, 192)})]
    for p in sorted(light.glob("light_*.onnx")):
        out.append((p.stem[len("light_"):], p, {}))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "compile_report.json"))
    args = ap.parse_args()
    import edgec
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EDGEC_CACHE_DIR"] = str(Path(tmp) / "cache")   # cold: every model compiles its kernels
        for name, path, shapes in models():
            t = time.perf_counter()
            art = edgec.compile(path, input_shapes=shapes, output_dir=Path(tmp) / name)
            wall = time.perf_counter() - t
            s = json.loads((art / "report.json").read_text())["summary"]
            rows.append({"model": name, "compile_s": round(wall, 2), **s})
            os.environ["EDGEC_CACHE_DIR"] = str(Path(tmp) / f"cache-{name}")
    print("| model | compile (s) | ops | kernel calls | distinct kernels | MACs | arena (KiB) | lower bound (KiB) | "
          "arena / bound | constants (KiB) | kernel code (KiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["arena_bytes"] / r["arena_lower_bound_bytes"] if r["arena_lower_bound_bytes"] else 1.0
        print(f"| {r['model']} | {r['compile_s']:.1f} | {r['ops']} | {r['kernel_calls']} | {r['distinct_kernels']} | "
              f"{r['macs']:,} | {r['arena_bytes'] / 1024:.1f} | {r['arena_lower_bound_bytes'] / 1024:.1f} | "
              f"{ratio:.3f} | {r['constant_bytes'] / 1024:.1f} | {r['kernel_code_bytes'] / 1024:.1f} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
