"""Single-threaded throughput of the kernels of a ResNet-50-shaped graph (not a pytest module).

    TVM_NUM_THREADS=1 python -m tests.backend.bench_resnet50 [--target x86_64] [--repeat 5]

Builds every kernel with build_kernels (no cache: the build time is part of the report),
runs each distinct conv / dense kernel with TVM's runtime on random data and prints its CPU
time per call, GFLOP/s and the sum over the graph's nodes (each distinct kernel timed once).
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu_seconds(fn, arrs, repeat: int) -> float:
    """Best per-call CPU time of the calling thread (TVM_NUM_THREADS=1 runs the kernel there),
    so that other processes on a shared machine do not inflate it."""
    fn(*arrs)
    best = float("inf")
    for _ in range(repeat):
        n, t0 = 0, time.thread_time()
        while time.thread_time() - t0 < 0.05:
            fn(*arrs)
            n += 1
        best = min(best, (time.thread_time() - t0) / n)
    return best


def main(argv=None) -> None:
    import tvm

    from edgec.backend import build_kernels
    from edgec.targets import load_target
    from tests.backend.resnet50_graph import resnet50_graph

    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="host")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    target = load_target(args.target)
    g = resnet50_graph()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        lib = build_kernels(g, target, Path(d), cache=None, jobs=2)
        build_s = time.time() - t0
        so = Path(d) / "bench.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), *map(str, lib.objects), "-lm"], check=True)
        mod = tvm.runtime.load_module(str(so))
        rng = np.random.default_rng(0)
        timed: dict[str, float] = {}
        total_t = total_flops = 0.0
        print(f"build: {len(lib.kernels)} kernels in {build_s:.2f} s, workspace {lib.workspace_bytes} B")
        print(f"{'node':10s} {'op':6s} {'input':>18s} {'weight':>18s} {'ms':>8s} {'GFLOP/s':>8s}")
        for node, call in zip(g.nodes, lib.calls):
            if node.op not in ("conv", "dense"):
                continue
            vals = [g.values[n] for n in call.args]
            w = vals[1]
            flops = 2 * int(np.prod(vals[-1].shape)) * int(np.prod(w.shape[1:]))
            if call.kernel not in timed:
                arrs = [tvm.runtime.tensor(rng.standard_normal(v.shape).astype(np.float32)) for v in vals]
                timed[call.kernel] = _cpu_seconds(mod[call.kernel], arrs, args.repeat)
                t = timed[call.kernel]
                print(f"{node.name:10s} {node.op:6s} {str(vals[0].shape):>18s} {str(w.shape):>18s} "
                      f"{t * 1e3:8.3f} {flops / t / 1e9:8.1f}")
            total_t += timed[call.kernel]
            total_flops += flops
        print(f"conv+dense total: {total_t * 1e3:.2f} ms, {total_flops / 1e9:.2f} GFLOP, "
              f"{total_flops / total_t / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
