"""``edgec tune``: measured choice of the kernels' schedule parameters on this machine.

    edgec tune model.onnx [--target host] [--quantize int8 --calib calib.npz] [--trials 8]
               [--records tuning.json] [--runs 30]

The model is prepared exactly as ``edgec compile`` would (same passes, same quantization), then
for each distinct kernel with choice points (edgec.backend.tuning: today the register tiles of
the int8 conv, depthwise conv and dense kernels on VNNI / AVX2 / SDOT), heaviest first: the
kernel is built alone (a one-node artifact, through the normal compile path and kernel cache)
with its default choice and with up to ``trials - 1`` other candidates in the generator's cost
order, each timed on the C runtime (median of ``runs`` profiled runs of that node), and the
fastest is written to the records file. A candidate must beat the default by ``min_gain``
(default 3 %) to replace it: smaller differences are measurement noise on a shared machine.
Later ``edgec compile`` runs read the records (the default file, or ``--tuning-records``) and
generate those kernels with the measured choice. Records are keyed by the kernel's identity
(op, attributes, shapes, dtypes, target), so one file serves many models and targets.

Only kernels that run on this machine can be timed: a foreign target (aarch64 from x86-64) is
refused; tune on the device.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .backend.tuning import TuningError, TuningRecords, default_records_path, explore, record_key
from .ir.graph import Graph
from .ir.ops import get as get_op


def _kernel_tasks(graph: Graph, tgt) -> list[dict]:
    """Distinct kernels of ``graph`` that have choice points, heaviest (MACs x uses) first."""
    from .backend.build import _GENERATE_LOCK, _describe, node_spec
    from .backend.kernels.registry import KERNELS
    tasks: dict[str, dict] = {}
    for node in graph.nodes:
        if node.op not in KERNELS:
            continue
        spec = node_spec(graph, node, tgt)
        key = record_key(spec)
        if key in tasks:
            tasks[key]["uses"] += 1
            continue
        with _GENERATE_LOCK, explore() as offers:
            KERNELS[node.op](spec)
        if not offers or all(len(v) < 2 for v in offers.values()):
            continue
        opdef = get_op(node.op)
        ins = [graph.values[i] if i else None for i in node.inputs]
        outs = [graph.values[o] for o in node.outputs]
        macs = int(opdef.macs(ins, outs, node.attrs)) if opdef.macs else 0
        tasks[key] = {"key": key, "spec": spec, "node": node, "offers": offers, "macs": macs, "uses": 1,
                      "kernel": _describe(spec)}
    return sorted(tasks.values(), key=lambda t: -t["macs"] * t["uses"])


def _one_node_graph(graph: Graph, node) -> Graph:
    """``node`` alone: its runtime inputs become graph inputs, its constants stay constants."""
    values = {}
    inputs = []
    for name in node.inputs:
        if not name:
            continue
        v = graph.values[name]
        values[name] = v
        if v.const is None and name not in inputs:
            inputs.append(name)
    for name in node.outputs:
        values[name] = graph.values[name]
    return Graph([node], values, inputs, list(node.outputs), name=f"tune_{node.op}", meta={})


def _feeds(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in graph.inputs:
        v = graph.values[name]
        dt = np.dtype(v.dtype)
        if dt.kind == "f":
            feeds[name] = rng.standard_normal(v.shape).astype(dt)
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            lo, hi = (max(info.min, -128), min(info.max, 127)) if dt.itemsize > 1 else (info.min, info.max)
            feeds[name] = rng.integers(lo, hi + 1, size=v.shape).astype(dt)
        else:
            feeds[name] = rng.integers(0, 2, size=v.shape).astype(dt)
    return feeds


def _measure(g: Graph, tgt, config: dict, workdir: Path, runs: int, cache_dir) -> float:
    """Median microseconds of the single op of ``g`` built with ``config`` (C runtime, 1 thread)."""
    from .compiler import compile_model
    from .runtime import load
    records = TuningRecords(None)
    from .backend.build import node_spec
    spec = node_spec(g, g.nodes[0], tgt)
    if config:
        records.add(spec, {"config": config})
    out = compile_model(g, target=tgt, output_dir=workdir, cache_dir=cache_dir, tuning=records)
    m = load(out, threads=1)
    try:
        feeds = _feeds(g)
        for _ in range(3):
            m.run_profiled(feeds, copy=False)
        times = []
        t_end = time.perf_counter() + 2.0      # at most ~2 s per candidate
        for _ in range(runs):
            _, ns = m.run_profiled(feeds, copy=False)
            times.append(sum(ns) / 1e3)
            if time.perf_counter() > t_end and len(times) >= 5:
                break
        return float(np.median(times))
    finally:
        m.close()


def _candidates(offers: dict) -> list[dict]:
    """Configs to try: the default (every choice point at its first candidate), then each choice
    point's alternatives in cost order, one point at a time."""
    default = {k: v[0] for k, v in offers.items()}
    out = [default]
    width = max(len(v) for v in offers.values())
    for i in range(1, width):
        for k, v in offers.items():
            if i < len(v):
                out.append(dict(default, **{k: v[i]}))
    return out


def tune(model, target="host", input_shapes=None, *, trials: int = 8, records: str | Path | None = None,
         runs: int = 30, max_kernels: int | None = None, min_gain: float = 0.03, cache_dir=None,
         progress: Callable[[str], None] | None = None, **prepare_kw) -> dict[str, Any]:
    """Tune the kernels of ``model`` (see the module doc); ``prepare_kw``: the quantization options
    of ``edgec.compile`` (quantize, calib, calib_method, ...). Returns a report; the records are
    saved to ``records`` (default: edgec.backend.tuning.default_records_path())."""
    from .compiler import prepare_graph
    from .targets import load_target
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise TuningError(f"trials must be a positive integer, got {trials!r}")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise TuningError(f"runs must be a positive integer, got {runs!r}")
    if not 0 <= min_gain < 1:
        raise TuningError(f"min_gain must be in [0, 1), got {min_gain!r}")
    tgt = load_target(target)
    if not tgt.hosted or tgt.is_foreign():
        raise TuningError(f"edgec tune times kernels on this machine; target {tgt.name} does not run here "
                          f"(tune on the device, or tune for the host)")
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    path = Path(records) if records is not None else default_records_path()
    store = TuningRecords(path)          # a corrupt file fails here, before any work
    t0 = time.perf_counter()
    graph, _ = prepare_graph(model, target=tgt, input_shapes=input_shapes, **prepare_kw)
    tasks = _kernel_tasks(graph, tgt)
    if max_kernels is not None:
        tasks = tasks[:max_kernels]
    say(f"edgec tune: {len(tasks)} kernel(s) with choice points, up to {trials} trial(s) each")
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-tune-") as tmp:
        for i, task in enumerate(tasks):
            g = _one_node_graph(graph, task["node"])
            cands = _candidates(task["offers"])[:trials]
            timed = []
            for j, cfg in enumerate(cands):
                us = _measure(g, tgt, cfg if j else {}, Path(tmp) / f"k{i}_{j}", runs, cache_dir)
                timed.append((us, j, cfg))
            default_us = timed[0][0]
            best_us, best_j, best_cfg = min(timed, key=lambda t: (t[0], t[1]))
            chosen = best_cfg if best_j and best_us < default_us * (1 - min_gain) else {}
            record = {"op": task["spec"].op, "kernel": task["kernel"], "target": tgt.name,
                      "config": {k: v for k, v in chosen.items()},
                      "default": cands[0], "default_us": round(default_us, 3),
                      "best_us": round(best_us if chosen else default_us, 3), "trials": len(timed)}
            from . import __version__
            record["edgec_version"] = __version__
            store.add(task["spec"], record)
            rows.append(dict(record, node=task["node"].name, macs=task["macs"], uses=task["uses"]))
            gain = default_us / record["best_us"] if record["best_us"] else 1.0
            say(f"  [{i + 1}/{len(tasks)}] {task['node'].name} ({task['spec'].op}, {task['macs']:,} MACs): default "
                f"{default_us:.1f} us, best {record['best_us']:.1f} us ({gain:.2f}x) "
                f"{'with ' + str(chosen) if chosen else '(default kept)'}")
    saved = store.save()
    return {"records": str(saved), "target": tgt.name, "kernels": rows, "seconds": round(time.perf_counter() - t0, 2),
            "tuned": sum(1 for r in rows if r["config"])}


def add_tune_parser(sub) -> None:
    t = sub.add_parser("tune", help="measure the kernels' schedule choices on this machine; later compiles reuse them")
    t.add_argument("model")
    t.add_argument("--target", default="host")
    t.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...", help="bind an input's shape (repeatable)")
    t.add_argument("--quantize", choices=["int8"], default=None, help="tune the int8 kernels (needs --calib, as compile)")
    t.add_argument("--calib", default=None, metavar="DATA", help="calibration data, as for compile ('random' allowed)")
    t.add_argument("--calib-method", default="minmax", choices=["minmax", "percentile", "entropy", "mse"])
    t.add_argument("--trials", type=int, default=8, help="candidates timed per kernel, the default included (default 8)")
    t.add_argument("--runs", type=int, default=30, help="timed runs per candidate (median; default 30)")
    t.add_argument("--max-kernels", type=int, default=None, help="tune only the N heaviest kernels")
    t.add_argument("--records", default=None, help=f"records file to update (default {default_records_path()})")
    t.add_argument("--json", default=None, help="write the tuning report as JSON")
    t.set_defaults(fn=cmd_tune)


def cmd_tune(a) -> int:
    import json
    from .frontend.onnx_import import parse_input_shapes
    kw: dict[str, Any] = {}
    if a.quantize is not None:
        random_calib = a.calib == "random"
        kw = dict(quantize=a.quantize, calib=None if random_calib else a.calib, calib_method=a.calib_method,
                  calib_random=random_calib)
    rep = tune(a.model, target=a.target, input_shapes=parse_input_shapes(a.input_shape or []), trials=a.trials,
               records=a.records, runs=a.runs, max_kernels=a.max_kernels, **kw)
    print(f"tuned {len(rep['kernels'])} kernel(s) in {rep['seconds']:.1f} s: {rep['tuned']} with a faster choice; "
          f"records -> {rep['records']}")
    for r in rep["kernels"]:
        print(f"  {r['node'][:40]:<40} {r['op']:<8} {r['default_us']:>10.1f} us -> {r['best_us']:>10.1f} us  "
              f"{r['config'] or '(default)'}")
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1, default=str) + "\n")
    return 0


__all__ = ["tune", "add_tune_parser", "cmd_tune"]
