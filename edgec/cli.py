"""edgec command line: compile | run | verify | inspect | bench | tune | export-qdq | prune | distill | targets.

    edgec compile model.onnx --target x86_64 --input-shape x=1,3,48,192 -o out/
    edgec run out/ --input x=input.npy -o results/
    edgec verify out/ model.onnx
    edgec verify out_aarch64/ model.onnx --emulate     # a foreign-target artifact under qemu
    edgec inspect out/
    edgec bench out/ --threads 1 --runs 100 --compare onnxruntime --profile --json r.json
    edgec tune model.onnx --quantize int8 --calib calib.npz --trials 8   # measured kernel choices, reused by compile
    edgec export-qdq out_int8/ model_int8.onnx          # an int8 artifact as QDQ ONNX (onnxruntime runs it)
    edgec distill --teacher t.onnx --student s.onnx --data train.npz -o s_trained.onnx   # needs edgec[distill]

Errors a user can cause print one clear message (no traceback) and exit with status 1;
``EDGEC_DEBUG=1`` shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from .errors import EdgecError, RuntimeInputError


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "output"


def load_inputs(specs: list[str], infos) -> dict[str, np.ndarray]:
    """``name=path.npy`` pairs, or bare paths taken in input order; .npz files give several inputs."""
    feeds: dict[str, np.ndarray] = {}
    names = [i.name for i in infos]
    positional = 0
    for spec in specs or []:
        if "=" in spec and not Path(spec).exists():
            name, path = spec.split("=", 1)
        else:
            path = spec
            if path.endswith(".npz"):
                with np.load(path) as z:
                    feeds.update({k: z[k] for k in z.files})
                continue
            if positional >= len(names):
                raise RuntimeInputError(f"more input files than the model's {len(names)} inputs {names}")
            name = names[positional]
            positional += 1
        if not Path(path).is_file():
            raise RuntimeInputError(f"input file {path!r} not found")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except Exception as e:
            raise RuntimeInputError(f"cannot read {path!r} as .npy: {e}") from None
    return feeds


def random_inputs(infos, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs: normal floats, small non-negative ints (valid indices for most tables), random bools."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in infos:
        dt = np.dtype(i.dtype)
        if dt.kind == "f":
            feeds[i.name] = rng.standard_normal(i.shape).astype(dt)
        elif dt.kind in "iu":
            feeds[i.name] = rng.integers(0, 8, size=i.shape).astype(dt)
        elif dt.kind == "b":
            feeds[i.name] = rng.integers(0, 2, size=i.shape).astype(bool)
        else:
            raise RuntimeInputError(f"cannot generate inputs of dtype {dt} for {i.name!r}")
    return feeds


def compare_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rtol: float) -> list[dict]:
    """Per output: max abs error, scale (max |want|), and ok (error <= rtol * scale; exact for ints/bools)."""
    rows = []
    for name, w in want.items():
        g = got[name]
        w = np.asarray(w)
        row = {"name": name, "shape": list(w.shape), "dtype": str(w.dtype)}
        if g.shape != w.shape:
            row.update(ok=False, error=f"shape {g.shape} != {w.shape}")
        elif w.dtype.kind == "f":
            diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
            err = float(np.nanmax(diff)) if diff.size else 0.0
            nan_mismatch = bool(np.any(np.isnan(g) != np.isnan(w)))
            scale = float(np.nanmax(np.abs(w))) if w.size else 0.0
            row.update(max_abs_err=err, scale=scale, ok=(not nan_mismatch) and err <= rtol * max(scale, 1e-3))
        else:
            mism = int(np.count_nonzero(g != w))
            row.update(mismatches=mism, ok=mism == 0)
        rows.append(row)
    return rows


def cmd_compile(a) -> int:
    from .compiler import compile_model
    from .frontend.onnx_import import parse_input_shapes
    quant = {}
    if a.quantize is not None or a.calib is not None or a.val is not None or a.max_accuracy_drop is not None:
        random_calib = a.calib == "random"
        quant = dict(quantize=a.quantize, calib=None if random_calib else a.calib, calib_method=a.calib_method,
                     calib_random=random_calib, calib_samples=a.calib_samples, per_channel=a.per_channel,
                     val=a.val, val_labels=a.val_labels, max_accuracy_drop=a.max_accuracy_drop)
        if random_calib:
            print("edgec compile: warning: calibrating on random inputs: the accuracy of the int8 model is unknown",
                  file=sys.stderr)
    if a.qdq_rounding is not None:
        quant["qdq_rounding"] = a.qdq_rounding
    if a.weight_rounding is not None:
        quant["weight_rounding"] = a.weight_rounding
    if a.prune is not None:
        quant.update(prune=a.prune, prune_mode=a.prune_mode)
    tuning = False if a.no_tuning else a.tuning_records
    out = compile_model(a.model, target=a.target, input_shapes=parse_input_shapes(a.input_shape or []),
                        output_dir=a.output, cache_dir=a.cache_dir, emit=a.emit, tuning=tuning, **quant)
    rep = json.loads((out / "report.json").read_text())
    s = rep["summary"]
    print(f"compiled {a.model} for {rep['target']} -> {out}/")
    q = rep.get("quantization")
    if q:
        src = " (pre-quantized QDQ model, rounding " + q["rounding"] + ")" if q.get("source") == "qdq" else ""
        print(f"  int8{src}: {q['int8_nodes']} node(s) in int8, {q['float_nodes']} in float; constants "
              f"{q['size']['fp32_constant_bytes']:,} B fp32 -> {q['size']['int8_constant_bytes']:,} B int8")
        acc = q.get("accuracy")
        if acc:
            what = "accuracy" if acc["labels"] else "top-1 agreement with fp32 (no labels)"
            print(f"  {what} on {acc['val_samples']} validation sample(s): fp32 {100 * acc['fp32']:.2f}%, "
                  f"int8 {100 * acc['int8']:.2f}%, final {100 * acc['final']:.2f}%; {acc['status']}"
                  + (f"; in float: {', '.join(acc['fallback_layers'])}" if acc["fallback_layers"] else "")
                  + f" ({acc['evaluations']} evaluations, {acc['seconds']:.2f} s)")
    pr = rep.get("pruning")
    if pr and pr["mode"] == "channel":
        print(f"  pruned {pr['ratio']:g} of the channels: MACs {pr['macs_before']:,} -> {pr['macs_after']:,}")
    elif pr:
        print(f"  pruned {pr['ratio']:g} of the weights: sparsity {100 * pr['sparsity']:.1f}%")
    print(f"  {s['ops']} ops, {s['distinct_kernels']} kernels, {s['macs']:,} MACs, {s['parameters']:,} parameters")
    print(f"  arena {s['arena_bytes']:,} B (lower bound {s['arena_lower_bound_bytes']:,} B), "
          f"constants {s['constant_bytes']:,} B, kernel code {s['kernel_code_bytes']:,} B")
    tu = rep.get("tuning") or {}
    if tu.get("tuned_nodes"):
        print(f"  {tu['tuned_nodes']} node(s) built with measured kernel choices from {tu['records']}")
    print(f"  compile time {rep['compile_time']['total_s']:.2f} s")
    return 0


def cmd_run(a) -> int:
    from .runtime import load
    with load(a.artifact, threads=a.threads, emulate=a.emulate) as m:
        feeds = load_inputs(a.input, m.inputs)
        outs = m.run(feeds)
    outdir = Path(a.output) if a.output else None
    if outdir:
        outdir.mkdir(parents=True, exist_ok=True)
    for name, arr in outs.items():
        flat = arr.reshape(-1)
        preview = np.array2string(flat[:8], precision=5, separator=", ")
        print(f"{name}: {arr.dtype}{list(arr.shape)} {preview}{' ...' if flat.size > 8 else ''}")
        if outdir:
            np.save(outdir / f"{_safe_name(name)}.npy", arr)
    if outdir:
        print(f"wrote {len(outs)} output(s) to {outdir}/")
    return 0


def cmd_verify(a) -> int:
    try:
        import onnxruntime as ort
    except ImportError:
        raise EdgecError("edgec verify needs onnxruntime: pip install onnxruntime") from None
    from .runtime import load
    with load(a.artifact, threads=a.threads, emulate=a.emulate) as m:
        feeds = random_inputs(m.inputs, a.seed)
        feeds.update(load_inputs(a.input, m.inputs))
        got = m.run(feeds)
        out_names = [o.name for o in m.outputs]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(a.model), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise EdgecError(f"onnxruntime cannot load {a.model}: {e}") from None
    ort_names = [o.name for o in sess.get_outputs()]
    want = dict(zip(ort_names, sess.run(None, {k: v for k, v in feeds.items()
                                               if k in {i.name for i in sess.get_inputs()}})))
    missing = [n for n in out_names if n not in want]
    if missing:
        raise EdgecError(f"artifact outputs {missing} are not outputs of {a.model} ({ort_names})")
    rows = compare_outputs(got, {n: want[n] for n in out_names}, a.rtol)
    ok = all(r["ok"] for r in rows)
    for r in rows:
        if "max_abs_err" in r:
            detail = f"max |err| {r['max_abs_err']:.3g} (scale {r['scale']:.3g}, tolerance {a.rtol:g} x scale)"
        else:
            detail = r.get("error") or f"{r['mismatches']} mismatching elements"
        print(f"{'OK  ' if r['ok'] else 'FAIL'} {r['name']} {r['dtype']}{r['shape']}: {detail}")
    print("verify: " + ("outputs match onnxruntime" if ok else "outputs DIFFER from onnxruntime"))
    return 0 if ok else 1


def cmd_inspect(a) -> int:
    from .artifact.blob import read_blob
    from .errors import ArtifactError
    d = Path(a.artifact)
    blob_path = d / "model.edgec" if d.is_dir() else d
    if not blob_path.is_file():
        raise ArtifactError(f"{blob_path}: no model blob (is {d} an edgec artifact folder?)")
    bm = read_blob(blob_path.read_bytes())
    report = json.loads((d / "report.json").read_text()) if (d / "report.txt").exists() else None
    if a.json:
        print(json.dumps(report or {}, indent=1))
        return 0
    if report:
        print((d / "report.txt").read_text(), end="")
        print()
    print(f"blob: {blob_path.stat().st_size:,} bytes, {len(bm.tensors)} tensors, {len(bm.ops)} ops, "
          f"{len(bm.kernels)} kernels, arena {bm.arena_size:,} B, workspace {bm.workspace_size:,} B/thread")
    print("inputs:  " + ", ".join(f"{bm.tensors[i].name} {bm.tensors[i].dtype}{list(bm.tensors[i].shape)}" for i in bm.inputs))
    print("outputs: " + ", ".join(f"{bm.tensors[i].name} {bm.tensors[i].dtype}{list(bm.tensors[i].shape)}" for i in bm.outputs))
    if a.tensors:
        print(f"\n{'#':>4} {'tensor':<40} {'dtype':<8} {'shape':<22} {'storage':<6} {'offset':>10} {'bytes':>10}")
        for k, t in enumerate(bm.tensors):
            print(f"{k:>4} {t.name[:40]:<40} {t.dtype:<8} {str(list(t.shape)):<22} {t.storage:<6} {t.offset:>10} {t.nbytes:>10}")
    return 0


def cmd_targets(a) -> int:
    from .targets import available_targets, host_target_name, load_target
    host = host_target_name()
    for name in available_targets():
        t = load_target(name)
        mark = " (host)" if name == host else ""
        print(f"{name:<16} {t.description}{mark}")
    return 0


def cmd_prune(a) -> int:
    from . import prune
    from .frontend.onnx_import import parse_input_shapes
    per_layer = {}
    for spec in a.per_layer or []:
        name, sep, r = spec.rpartition("=")
        try:
            per_layer[name] = float(r)
        except ValueError:
            name = ""
        if not sep or not name:
            raise EdgecError(f"--per-layer {spec!r}: expected NODE_NAME=RATIO")
    _, report = prune(a.model, ratio=a.ratio, mode=a.mode, norm=a.norm, per_layer=per_layer,
                      input_shapes=parse_input_shapes(a.input_shape or []), output=a.output,
                      min_channels=a.min_channels, skip=a.skip or (), scope=a.scope)
    print(report.table(), end="")
    if a.mode == "channel":
        for why in report.skipped_groups:
            print(f"  kept whole: {why}")
    print(f"wrote {a.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgec", description="Compile ONNX models into small artifacts run by a C runtime.")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("compile", help="compile an ONNX model into an artifact folder")
    c.add_argument("model")
    c.add_argument("--target", default="host", help="target name (see `edgec targets`) or a .toml path; default: host")
    c.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...", help="bind an input's shape (repeatable)")
    c.add_argument("-o", "--output", required=True, help="artifact folder to write")
    c.add_argument("--cache-dir", default=None, help="kernel cache (default $EDGEC_CACHE_DIR or ~/.cache/edgec)")
    c.add_argument("--emit", choices=["shared", "static", "c"], default=None,
                   help="kernels as kernels.so (shared: hosted targets), TVM objects in libmodel.a (static: bare-metal "
                        "default) or C source (c: bare metal and generic-c); default: the target's")
    c.add_argument("--quantize", choices=["int8"], default=None, help="quantize the model (needs --calib)")
    c.add_argument("--calib", default=None, metavar="DATA",
                   help="calibration data: a .npz (one array per input, first axis = samples) or a folder of .npy "
                        "files; 'random' calibrates on random inputs (accuracy unknown)")
    c.add_argument("--calib-method", default="minmax", choices=["minmax", "percentile", "entropy", "mse"],
                   help="how activation ranges are measured (default minmax)")
    c.add_argument("--calib-samples", type=int, default=32, help="number of samples for --calib random (default 32)")
    c.add_argument("--weight-rounding", choices=["nearest", "gptq"], default=None,
                   help="int8 weight rounding: 'nearest', or 'gptq' (error-compensating, on the first 64 calibration "
                        "samples; see docs/quantization.md); default: the compiler's (QuantizeOptions)")
    c.add_argument("--val", default=None, metavar="DATA",
                   help="validation data: the model inputs like --calib, plus integer labels (one per sample) under "
                        "'labels'; fp32/int8 accuracy and per-layer sensitivity go into the report (without labels: "
                        "top-1 agreement with fp32)")
    c.add_argument("--val-labels", default="labels", metavar="NAME", help="key of the labels in --val (default labels)")
    c.add_argument("--max-accuracy-drop", type=float, default=None, metavar="FRACTION",
                   help="keep the most quantization-sensitive layers in float until the accuracy drop on --val is at "
                        "most this fraction (0.01 = 1 point)")
    pc = c.add_mutually_exclusive_group()
    pc.add_argument("--per-channel", dest="per_channel", action="store_true", default=True,
                    help="one weight scale per output channel (default)")
    pc.add_argument("--per-tensor", dest="per_channel", action="store_false", help="one weight scale per tensor")
    c.add_argument("--prune", type=float, default=None, metavar="RATIO",
                   help="prune the model first: this fraction of each layer's channels (or weights, see --prune-mode)")
    c.add_argument("--prune-mode", choices=["channel", "unstructured"], default="channel")
    tg = c.add_mutually_exclusive_group()
    tg.add_argument("--tuning-records", default=None, metavar="FILE",
                    help="build the kernels with the measured choices of `edgec tune` in FILE (default: the default "
                         "records file, $EDGEC_TUNING_RECORDS or ~/.cache/edgec/tuning.json, if it exists)")
    tg.add_argument("--no-tuning", action="store_true", help="ignore tuning records (the untuned kernels)")
    c.add_argument("--qdq-rounding", choices=["fixed", "onnxruntime"], default=None,
                   help="a pre-quantized (QDQ) model's requantization: 'fixed' (integer only, the default) or "
                        "'onnxruntime' (float32 epilogues matching onnxruntime's x86 kernels bit for bit)")
    c.set_defaults(fn=cmd_compile)

    r = sub.add_parser("run", help="run an artifact on .npy inputs")
    r.add_argument("artifact")
    r.add_argument("--input", "-i", action="append", metavar="NAME=FILE.npy", help="an input (repeatable); bare files go in input order")
    r.add_argument("-o", "--output", help="folder for one .npy per output")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--emulate", action="store_true", help="run a foreign-target artifact (e.g. aarch64) under its emulator (qemu)")
    r.set_defaults(fn=cmd_run)

    v = sub.add_parser("verify", help="compare an artifact with onnxruntime on generated (or given) inputs")
    v.add_argument("artifact")
    v.add_argument("model")
    v.add_argument("--input", "-i", action="append", metavar="NAME=FILE.npy")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--rtol", type=float, default=1e-4, help="max abs error allowed, relative to the output's max |value|")
    v.add_argument("--threads", type=int, default=1)
    v.add_argument("--emulate", action="store_true", help="run a foreign-target artifact (e.g. aarch64) under its emulator (qemu)")
    v.set_defaults(fn=cmd_verify)

    i = sub.add_parser("inspect", help="show an artifact's ops, tensors and sizes")
    i.add_argument("artifact")
    i.add_argument("--tensors", action="store_true", help="list every tensor")
    i.add_argument("--json", action="store_true", help="print report.json")
    i.set_defaults(fn=cmd_inspect)

    from .bench import add_bench_parser
    add_bench_parser(sub)
    from .frontend.qdq_export import add_export_qdq_parser
    add_export_qdq_parser(sub)
    from .distill import add_distill_parser      # torch is imported only when distill runs
    add_distill_parser(sub)
    from .tune import add_tune_parser
    add_tune_parser(sub)

    pr = sub.add_parser("prune", help="prune an ONNX model (channels or single weights) and save it as ONNX")
    pr.add_argument("model")
    pr.add_argument("--ratio", type=float, default=0.5, help="fraction of channels (or weights) to remove")
    pr.add_argument("--mode", choices=("channel", "unstructured"), default="channel")
    pr.add_argument("--norm", choices=("l1", "l2"), default="l1", help="filter norm ranking channels (channel mode)")
    pr.add_argument("--scope", choices=("layer", "global"), default="layer", help="ratio per layer or one global threshold (unstructured mode)")
    pr.add_argument("--per-layer", nargs="+", metavar="NODE=RATIO", help="per-layer ratios by node name")
    pr.add_argument("--skip", nargs="+", metavar="NODE", help="node names never pruned")
    pr.add_argument("--min-channels", type=int, default=1)
    pr.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...", help="bind an input's shape (repeatable)")
    pr.add_argument("-o", "--output", required=True, help="pruned .onnx to write")
    pr.set_defaults(fn=cmd_prune)

    t = sub.add_parser("targets", help="list the available targets")
    t.set_defaults(fn=cmd_targets)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except EdgecError as e:
        if os.environ.get("EDGEC_DEBUG"):
            raise
        print(f"edgec {args.cmd}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
