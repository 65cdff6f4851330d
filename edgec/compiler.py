"""The compile driver: ONNX -> IR -> passes -> memory plan -> kernels -> artifact folder.

    compile_model("m.onnx", target="x86_64", input_shapes={"x": (1, 3, 48, 192)}, output_dir="out/")

The artifact folder is assembled in a temporary sibling folder and renamed into place only
when everything succeeded: a failed compile leaves ``output_dir`` as it was (absent, or the
previous artifact).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import __version__
from .errors import CompileError
from .frontend.onnx_import import import_onnx
from .ir.graph import Graph
from .ir.ops import get as get_op
from .passes import MemoryPlan, default_pipeline, plan_memory, run_pipeline
from .targets import Target, load_target

BLOB_NAME = "model.edgec"
LIB_NAME = "kernels.so"


def compile_model(model, target: str | Target = "host", input_shapes: Mapping[str, Sequence[int]] | None = None,
                  output_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                  name: str | None = None, quantize: str | None = None, calib=None, calib_method: str = "minmax",
                  calib_random: bool = False, calib_samples: int = 32, per_channel: bool = True,
                  val=None, val_labels: str = "labels", max_accuracy_drop: float | None = None,
                  qdq_rounding: str | None = None, emit: str | None = None, prune: float | None = None,
                  prune_mode: str = "channel", tuning=None, weight_rounding: str | None = None) -> Path:
    """Compile ``model``; with ``quantize="int8"``, calibrate the float graph on ``calib`` (a .npz
    path, a folder of .npy, a dict of sample arrays or an iterable of feed dicts; see
    edgec.quant.data), or on ``calib_samples`` random samples when ``calib_random`` (accuracy
    unknown: a warning is logged), then quantize it (edgec.passes.quantize_int8).

    With ``val`` (the model inputs in the same layout, plus integer labels under ``val_labels``,
    optional), the accuracy of fp32 and int8 and each layer's sensitivity are measured on it and
    reported; with ``max_accuracy_drop`` too (a fraction: 0.01 = 1 point), the most sensitive
    layers are kept in float until the drop is within it (edgec.quant.accuracy).

    A model already quantized (QuantizeLinear/DequantizeLinear pairs, QLinearConv, ...) compiles
    to integer kernels without ``quantize``; ``qdq_rounding`` picks its requantization rounding:
    "fixed" (integer only, the default) or "onnxruntime" (float32 epilogues that reproduce
    onnxruntime's x86 kernels bit for bit), see edgec.passes.fuse_qdq. ``emit`` ("shared", "static"
    or "c"; default: the target's) says how the kernels are delivered (docs/targets.md).

    ``prune`` (a ratio in [0, 1)) prunes the imported graph first: ``prune_mode="channel"`` removes
    that fraction of each layer's filters/neurons (edgec.passes.prune_channels), "unstructured"
    zeroes that fraction of each layer's weights (edgec.passes.prune_weights); the report gets a
    ``pruning`` section. For fine-tuning after pruning, prune to ONNX (``edgec.prune``), train
    (``edgec distill``), then compile.

    ``tuning``: the measured kernel choices of ``edgec tune`` (edgec.backend.tuning) to build with:
    None (default) uses the default records file if there is one, False none, or a records path.
    ``model`` may also be an edgec IR ``Graph`` (what ``edgec tune`` builds one kernel from)."""
    t0 = time.perf_counter()
    _check_quant_args(quantize, calib, calib_method, calib_random, calib_samples, val, val_labels, max_accuracy_drop)
    tgt = load_target(target)
    tgt.check_toolchain()
    from .backend.build import check_emit
    emit = check_emit(tgt, emit)    # "shared" | "static" | "c"; a mode the target cannot produce fails here
    if not tgt.hosted:
        from .artifact.firmware import check_tools
        check_tools(tgt)     # cc, ar and size: fail before the kernels are built
    if name is None:
        name = Path(model).stem if isinstance(model, (str, Path)) else getattr(model, "name", None) or "model"
    if output_dir is None:
        output_dir = Path.cwd() / f"{name}.edgec"
    output_dir = Path(output_dir)

    from .backend.tuning import resolve_records
    records = resolve_records(tuning)     # a bad records file fails before any work
    graph = model if isinstance(model, Graph) else import_onnx(model, input_shapes=input_shapes, name=name)
    prune_info = None
    if prune is not None:
        graph, prune_info = _prune_graph(graph, prune, prune_mode)
    t_import = time.perf_counter()
    graph = run_pipeline(graph, default_pipeline(qdq_rounding))
    quant_info = _qdq_info(graph, quantize)
    if quantize is not None:
        graph, quant_info = _quantize_graph(graph, tgt, calib, calib_method, calib_random, calib_samples, per_channel,
                                            val, val_labels, max_accuracy_drop, weight_rounding=weight_rounding)
    elif weight_rounding is not None:
        from .passes.quantize_int8 import QuantizeOptionsError
        raise QuantizeOptionsError("weight_rounding was given but quantize is not set (use quantize='int8')")
    graph = _lower(graph)
    plan = plan_memory(graph)
    t_passes = time.perf_counter()

    from .backend import build_kernels
    from .backend.cache import KernelCache

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        skipped = plan.skipped_nodes(graph)
        exec_graph = Graph([n for i, n in enumerate(graph.nodes) if i not in skipped], graph.values,
                           graph.inputs, graph.outputs, graph.name, graph.meta)
        cache = KernelCache(cache_dir) if cache_dir is not None else KernelCache()
        lib = build_kernels(exec_graph, tgt, tmp, cache=cache, emit=emit, records=records)
        t_build = time.perf_counter()
        blob_model = _blob_model(exec_graph, plan, lib)
        from .artifact.blob import write_blob
        blob = write_blob(blob_model)
        (tmp / BLOB_NAME).write_bytes(blob)
        if lib.library is not None and Path(lib.library) != tmp / LIB_NAME:
            shutil.copy2(lib.library, tmp / LIB_NAME)
        footprint = None
        if not tgt.hosted:   # static libraries, the blob as a C array, sizes (edgec.artifact.firmware)
            from .artifact.firmware import package_baremetal
            footprint = package_baremetal(tgt, tmp, lib, blob, blob_model)
        runner = None
        if tgt.hosted and tgt.is_foreign():   # no native run here: ship a runner for device and emulator
            from .artifact.runner import RUNNER_PATH, build_runner
            runner = build_runner(tgt, tmp / RUNNER_PATH, cache_dir=cache.dir)
        timings = {"import_s": t_import - t0, "passes_s": t_passes - t_import, "kernels_s": t_build - t_passes,
                   "total_s": time.perf_counter() - t0}
        report = build_report(graph, exec_graph, plan, lib, tgt, blob_bytes=len(blob), timings=timings,
                              lib_path=tmp / LIB_NAME if (tmp / LIB_NAME).exists() else None, runner_path=runner)
        if footprint is not None:
            report["footprint"] = footprint
        if prune_info is not None:
            report["pruning"] = prune_info
        report["tuning"] = {"records": None if records is None or records.path is None else str(records.path),
                            "tuned_nodes": lib.tuned_nodes}
        if quant_info is not None:
            quant_info["size"]["int8_blob_bytes"] = len(blob)
            report["quantization"] = quant_info
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
        (tmp / "report.txt").write_text(format_report(report))
        manifest = {
            "format": "edgec-artifact", "edgec_version": __version__, "blob_version": "1.0",
            "model": name, "target": tgt.name, "target_file": Path(tgt.path).name, "hosted": tgt.hosted,
            "arch": tgt.arch, "emit": emit, "requires_cpu_flags": list(tgt.requires_cpu_flags),
            "inputs": [_io(graph, n) for n in graph.inputs], "outputs": [_io(graph, n) for n in graph.outputs],
            "files": {"blob": BLOB_NAME, "library": LIB_NAME if (tmp / LIB_NAME).exists() else None},
        }
        if footprint is not None:
            from .artifact import firmware as fw
            manifest["files"].update({"model_library": fw.LIB_MODEL, "runtime_library": fw.LIB_RUNTIME,
                                      "blob_c": fw.BLOB_C, "blob_h": fw.BLOB_H})
            manifest["run"] = {"emulator": list(tgt.emulator), "install_hint": tgt.extra.get("install_hint", ""),
                               "target_path": str(Path(tgt.path).resolve()) if tgt.path else ""}
        if runner is not None:
            manifest["files"]["runner"] = runner.relative_to(tmp).as_posix()
            manifest["run"] = {"emulator": list(tgt.emulator), "install_hint": tgt.extra.get("install_hint", "")}
        from .frontend.qdq_export import IR_FILE, QUANT_OPS, save_ir
        if any(n.op in QUANT_OPS for n in graph.nodes):   # the integer graph, for `edgec export-qdq`
            save_ir(graph, tmp / IR_FILE)
            manifest["files"]["ir"] = IR_FILE
        source = _source_record(model)
        if source is not None:   # for `edgec bench --compare onnxruntime` (used only if unchanged)
            manifest["source"] = source
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _replace_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output_dir


QUANTIZE_MODES = ("int8",)


def prepare_graph(model, target: str | Target = "host", input_shapes: Mapping[str, Sequence[int]] | None = None,
                  name: str | None = None, quantize: str | None = None, calib=None, calib_method: str = "minmax",
                  calib_random: bool = False, calib_samples: int = 32, per_channel: bool = True,
                  val=None, val_labels: str = "labels", max_accuracy_drop: float | None = None,
                  qdq_rounding: str | None = None, weight_rounding: str | None = None
                  ) -> tuple[Graph, dict[str, Any] | None]:
    """The graph ``compile_model`` would plan and build (same steps, same options), and the
    quantization report section (None without ``quantize``): for tests and tools that check an
    artifact against ``edgec.reference.run_graph`` on exactly that graph."""
    _check_quant_args(quantize, calib, calib_method, calib_random, calib_samples, val, val_labels, max_accuracy_drop)
    tgt = load_target(target)
    if name is None:
        name = Path(model).stem if isinstance(model, (str, Path)) else "model"
    graph = run_pipeline(import_onnx(model, input_shapes=input_shapes, name=name), default_pipeline(qdq_rounding))
    qdq = _qdq_info(graph, quantize)
    if quantize is None:
        if weight_rounding is not None:
            from .passes.quantize_int8 import QuantizeOptionsError
            raise QuantizeOptionsError("weight_rounding was given but quantize is not set (use quantize='int8')")
        return _lower(graph), qdq
    graph, info = _quantize_graph(graph, tgt, calib, calib_method, calib_random, calib_samples, per_channel,
                                  val, val_labels, max_accuracy_drop, weight_rounding=weight_rounding)
    return _lower(graph), info


def _lower(graph: Graph) -> Graph:
    """The last passes, after quantization (which must see the float activations as nodes): a
    float conv's relu / clip into the conv (edgec.passes.fuse_activation); then the accumulator
    bounds of the int8 layers (on their final weights and biases)."""
    from .passes.fuse_activation import fuse_activation
    from .passes.quantize_int8 import annotate_acc_bounds
    out = fuse_activation(graph)
    annotate_acc_bounds(out)
    if os.environ.get("EDGEC_VERIFY") == "1":
        from .ir.verify import verify
        verify(out)
    return out


def _check_quant_args(quantize, calib, calib_method, calib_random, calib_samples, val=None, val_labels="labels",
                      max_accuracy_drop=None) -> None:
    """Refuse bad quantization options before any work is done."""
    from .passes.quantize_int8 import QuantizeOptionsError
    from .quant.accuracy import _check_options
    from .quant.calibrate import METHODS
    from .quant.data import CalibrationDataError
    if quantize is None:
        if calib is not None or calib_random:
            raise QuantizeOptionsError("calibration data was given but quantize is not set (use quantize='int8')")
        if val is not None or max_accuracy_drop is not None:
            raise QuantizeOptionsError("validation data / max_accuracy_drop were given but quantize is not set "
                                       "(use quantize='int8')")
        return
    if max_accuracy_drop is not None and val is None:
        raise QuantizeOptionsError("max_accuracy_drop needs validation data to measure the drop on: give val= "
                                   "(--val val.npz: the model inputs and their integer labels under 'labels')")
    if not isinstance(val_labels, str) or not val_labels:
        raise QuantizeOptionsError(f"val_labels must be a non-empty name, got {val_labels!r}")
    _check_options(max_accuracy_drop, 1, 1)
    if quantize not in QUANTIZE_MODES:
        raise QuantizeOptionsError(f"quantize must be one of {list(QUANTIZE_MODES)}, got {quantize!r}")
    if calib_method not in METHODS:
        raise QuantizeOptionsError(f"unknown calibration method {calib_method!r}; expected one of {', '.join(METHODS)}")
    if calib is not None and calib_random:
        raise QuantizeOptionsError("give calibration data or ask for random calibration, not both")
    if calib is None and not calib_random:
        raise CalibrationDataError(
            "int8 quantization needs calibration data: a .npz (one array per input, first axis = samples), "
            "a folder of .npy files, or in Python an iterable of feed dicts (--calib calib.npz); "
            "use random calibration (--calib random, calib_random=True) only if accuracy does not matter")
    if calib_random and (isinstance(calib_samples, bool) or not isinstance(calib_samples, int) or calib_samples < 1):
        raise QuantizeOptionsError(f"calib_samples must be a positive integer, got {calib_samples!r}")


def _quantize_graph(graph: Graph, tgt: Target, calib, calib_method: str, calib_random: bool, calib_samples: int,
                    per_channel: bool, val=None, val_labels: str = "labels",
                    max_accuracy_drop: float | None = None,
                    weight_rounding: str | None = None) -> tuple[Graph, dict[str, Any]]:
    """fp32 graph -> calibrated int8 graph (shapes re-inferred, dead values removed) and the
    report section: scheme, calibration, per-layer precision, constant bytes fp32 vs int8; with
    ``val``, the accuracy-aware search (edgec.quant.accuracy) and each layer's sensitivity."""
    from .passes import eliminate_dead_code, infer_shapes
    from .passes.quantize_int8 import QuantizeOptions, quantize_int8
    from .quant import CalibrationOptions, calibrate, load_calibration, random_calibration
    from .quant.accuracy import accuracy_aware_quantize, load_validation
    # validation data is checked before calibration runs: a wrong file fails fast
    vdata = load_validation(val, graph, val_labels) if val is not None else None
    from .passes.quantize_int8 import _density_candidates, annotate_input_density, apply_bias_correction
    feeds = random_calibration(graph, calib_samples) if calib_random else load_calibration(calib, graph)
    act = "uint8" if tgt.arch == "x86_64" else "int8"
    qopts = QuantizeOptions(activation_dtype=act, per_channel=bool(per_channel),
                            **({} if weight_rounding is None else {"weight_rounding": weight_rounding}))
    # the first samples are kept (bounded) for the bias correction, the weight rounding
    # (edgec.quant.weight_rounding) and the input density of long qdense layers, which need a
    # second pass
    kept: list = []

    class _Keep:
        total = getattr(feeds, "total", None)

        def __iter__(self):
            for f in feeds:
                if len(kept) < qopts.bias_correction_samples:
                    kept.append(f)
                yield f

    t0 = time.perf_counter()
    ranges = calibrate(graph, _Keep(), CalibrationOptions(method=calib_method))
    t_cal = time.perf_counter() - t0

    def finish(g: Graph) -> Graph:
        g = run_pipeline(g, [("infer_shapes", infer_shapes), ("eliminate_dead_code", eliminate_dead_code)])
        if kept and (qopts.bias_correction or qopts.weight_rounding == "gptq"):
            fgraph, fkept = _batched_like(g, graph, kept)
            if qopts.weight_rounding == "gptq":   # before the bias correction, which sees the new weights
                from .quant.weight_rounding import apply_weight_rounding
                apply_weight_rounding(g, fgraph, fkept, samples=qopts.bias_correction_samples)
            if qopts.bias_correction:
                apply_bias_correction(g, fgraph, fkept, qopts)
        if kept and _density_candidates(g):
            # on the final (bias-corrected) graph: the sparse-input qdense kernel's evidence
            annotate_input_density(g, _batched_like(g, graph, kept)[1])
        return g

    accuracy = None
    if vdata is not None:
        import sys
        qgraph, accuracy = accuracy_aware_quantize(graph, ranges, qopts, vdata, max_accuracy_drop, finish=finish,
                                                   progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    else:
        qgraph = finish(quantize_int8(graph, ranges, qopts))
    meta = qgraph.meta.get("quantization", {})
    fp32_bytes = _const_bytes(graph)
    int8_bytes = _const_bytes(qgraph)
    info = {
        "mode": "int8", "activation_dtype": act, "per_channel": bool(per_channel),
        "calibration": {"method": calib_method, "source": "random" if calib_random else
                        (str(calib) if isinstance(calib, (str, os.PathLike)) else type(calib).__name__),
                        "samples": getattr(feeds, "total", None), "seconds": round(t_cal, 3)},
        "bias_correction": meta.get("bias_correction"),
        "weight_rounding": meta.get("weight_rounding") or {"method": "nearest"},
        "int8_nodes": int(meta.get("int8_nodes", 0)), "float_nodes": int(meta.get("float_nodes", 0)),
        "layers": [{"node": layer["node"], "op": layer["op"], "precision": layer["precision"],
                    "choice": layer["choice"]} for layer in meta.get("layers", [])],
        "accuracy": None,
        "size": {"fp32_constant_bytes": fp32_bytes, "int8_constant_bytes": int8_bytes,
                 "ratio": round(int8_bytes / fp32_bytes, 4) if fp32_bytes else None},
    }
    if accuracy is not None:
        sens = accuracy["sensitivity"]["layers"]
        for layer in info["layers"]:
            s = sens.get(layer["node"])
            layer["sensitivity"] = None if s is None else s["sensitivity"]
            layer["sensitivity_rank"] = None if s is None else s["rank"]
        info["accuracy"] = accuracy
    return qgraph, info


def _batched_like(g: Graph, graph: Graph, samples: list) -> tuple[Graph, list]:
    """The float graph and calibration samples in ``g``'s batch: the accuracy-aware search
    evaluates candidates quantized from a re-batched graph (edgec.quant.accuracy), and bias
    correction must run them on batches of samples (the samples cycled to whole batches)."""
    gi, fi = g.values[g.inputs[0]].shape, graph.values[graph.inputs[0]].shape
    if not gi or not fi or gi[0] == fi[0]:
        return graph, samples
    factor = int(gi[0]) // int(fi[0])
    from .quant.accuracy import _rebatch
    bgraph = _rebatch(graph, factor)
    if bgraph is None:
        return graph, samples
    import numpy as np
    n = -(-len(samples) // factor) * factor
    cyc = [samples[k % len(samples)] for k in range(n)]
    batches = [{name: np.concatenate([np.asarray(cyc[i + j][name]) for j in range(factor)], axis=0)
                for name in cyc[0]} for i in range(0, n, factor)]
    return bgraph, batches


def _prune_graph(graph: Graph, ratio, mode: str) -> tuple[Graph, dict[str, Any]]:
    """``compile --prune``: the imported graph pruned, and the report section."""
    from .errors import EdgecError
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= float(ratio) < 1.0:
        raise EdgecError(f"prune must be a ratio in [0, 1), got {ratio!r}")
    if mode == "channel":
        from .passes.prune_channels import PruneOptions, prune_channels
        pruned, rep = prune_channels(graph, PruneOptions(ratio=float(ratio)))
        info = {"mode": mode, "ratio": float(ratio), "macs_before": rep.macs_before, "macs_after": rep.macs_after,
                "params_before": rep.params_before, "params_after": rep.params_after,
                "kept_whole": list(rep.skipped_groups)}
    elif mode == "unstructured":
        from .passes.prune_weights import PruneWeightsOptions, prune_weights
        pruned, rep = prune_weights(graph, PruneWeightsOptions(ratio=float(ratio)))
        info = {"mode": mode, "ratio": float(ratio), "sparsity": rep.sparsity,
                "zlib_bytes_before": rep.compressed_bytes_before, "zlib_bytes_after": rep.compressed_bytes_after}
    else:
        raise EdgecError(f"prune_mode must be 'channel' or 'unstructured', got {mode!r}")
    info["table"] = rep.table()
    return pruned, info


def file_sha256(path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _source_record(model) -> dict[str, str] | None:
    """Absolute path and sha256 of the ONNX file compiled (None for an in-memory model)."""
    if not isinstance(model, (str, Path)) or not Path(model).is_file():
        return None
    return {"path": str(Path(model).resolve()), "sha256": file_sha256(model)}


def _qdq_info(graph: Graph, quantize: str | None) -> dict[str, Any] | None:
    """Report section of a pre-quantized (QDQ) model: what edgec.passes.fuse_qdq made of it."""
    meta = graph.meta.get("quantization")
    if not meta or meta.get("source") != "qdq":
        return None
    if quantize is not None:
        from .passes.quantize_int8 import QuantizeOptionsError
        raise QuantizeOptionsError("the model is already quantized (QuantizeLinear/DequantizeLinear); "
                                   "compile it without --quantize")
    int8_bytes = _const_bytes(graph)
    fp32_bytes = int(meta.get("fp32_constant_bytes", 0))
    return {
        "mode": "int8", "source": "qdq", "activation_dtype": meta["activation_dtype"],
        "per_channel": bool(meta["per_channel"]), "rounding": meta.get("rounding", "fixed"),
        "calibration": {"method": "from the model", "source": "QuantizeLinear/DequantizeLinear", "samples": None,
                        "seconds": 0.0},
        "int8_nodes": int(meta["int8_nodes"]), "float_nodes": int(meta["float_nodes"]),
        "layers": [{k: layer[k] for k in ("node", "op", "precision", "choice")} for layer in meta["layers"]],
        "accuracy": None,
        "size": {"fp32_constant_bytes": fp32_bytes, "int8_constant_bytes": int8_bytes,
                 "ratio": round(int8_bytes / fp32_bytes, 4) if fp32_bytes else None},
    }


def _const_bytes(g: Graph) -> int:
    """Bytes of the constants the graph's nodes read (what the blob stores)."""
    used = {i for n in g.nodes for i in n.inputs if i and g.values[i].const is not None}
    return int(sum(g.values[c].nbytes for c in used))


def _io(g: Graph, name: str) -> dict[str, Any]:
    v = g.values[name]
    return {"name": name, "dtype": v.dtype, "shape": list(v.shape)}


def _replace_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        if not (dst / "manifest.json").exists() and any(dst.iterdir()):
            raise CompileError(f"{dst} exists and is not an edgec artifact folder; refusing to overwrite it")
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(src, dst)


def _blob_model(g: Graph, plan: MemoryPlan, lib):
    from .artifact.blob import BlobModel, BlobOp, BlobTensor
    index: dict[str, int] = {}
    tensors: list = []
    inputs, outputs = set(g.inputs), set(g.outputs)

    packed = lib.constants

    def tensor(name: str) -> int:
        if name in index:
            return index[name]
        if name in packed:
            # a constant stored in its kernel's layout (edgec.backend.build.node_packing); the
            # original is written only if some other call reads it
            p = packed[name]
            t = BlobTensor(name=name, dtype=str(p.data.dtype), shape=tuple(int(d) for d in p.data.shape),
                           storage="const", is_input=False, is_output=False, offset=0, nbytes=p.nbytes,
                           data=p.data.tobytes())
            index[name] = len(tensors)
            tensors.append(t)
            return index[name]
        v = g.values[name]
        if v.const is not None:
            t = BlobTensor(name=name, dtype=v.dtype, shape=tuple(v.shape), storage="const", is_input=False,
                           is_output=False, offset=0, nbytes=v.nbytes, data=v.const.tobytes())
        else:
            t = BlobTensor(name=name, dtype=v.dtype, shape=tuple(v.shape), storage="arena", is_input=name in inputs,
                           is_output=name in outputs, offset=plan.offsets[name], nbytes=v.nbytes, data=None)
        index[name] = len(tensors)
        tensors.append(t)
        return index[name]

    for n in g.inputs:
        tensor(n)
    kernel_index = {k: i for i, k in enumerate(lib.kernels)}
    ops = []
    for node, call in zip(g.nodes, lib.calls):
        ops.append(BlobOp(kernel=kernel_index[call.kernel], args=[tensor(a) for a in call.args], name=node.name))
    for n in g.outputs:
        tensor(n)
    return BlobModel(tensors=tensors, ops=ops, kernels=list(lib.kernels), inputs=[index[n] for n in g.inputs],
                     outputs=[index[n] for n in g.outputs], arena_size=plan.arena_size,
                     workspace_size=int(lib.workspace_bytes))


def build_report(graph: Graph, exec_graph: Graph, plan: MemoryPlan, lib, tgt: Target, blob_bytes: int,
                 timings: dict[str, float], lib_path: Path | None,
                 runner_path: Path | None = None) -> dict[str, Any]:
    """The bill of materials: per layer and for the whole model, from the plan and the built objects."""
    layers = []
    calls = {id(n): c for n, c in zip(exec_graph.nodes, lib.calls)}
    packed = lib.constants

    def const_arg(name: str):
        """(elements, bytes) of a constant kernel argument as the blob stores it, else None."""
        if name in packed:
            return int(packed[name].data.size), packed[name].nbytes
        v = graph.values.get(name)
        return (v.size, v.nbytes) if v is not None and v.const is not None else None

    def weight_bytes(n, call, ins) -> int:
        if call is None:
            return sum(v.nbytes for v in ins if v is not None and v.const is not None)
        return sum(c[1] for a in call.args[:len([i for i in n.inputs if i])] if (c := const_arg(a)) is not None)
    for n in graph.nodes:
        opdef = get_op(n.op)
        ins = [graph.values[i] if i else None for i in n.inputs]
        outs = [graph.values[o] for o in n.outputs]
        macs = int(opdef.macs(ins, outs, n.attrs)) if opdef.macs else 0
        call = calls.get(id(n))
        layers.append({
            "name": n.name, "op": n.op,
            "kernel": call.kernel if call else None,
            "macs": macs,
            "weight_bytes": weight_bytes(n, call, ins),
            "output_bytes": sum(v.nbytes for v in outs),
            "kernel_code_bytes": int(lib.code_bytes.get(call.kernel, 0)) if call else 0,
            "output_shapes": [list(v.shape) for v in outs],
            "alias": call is None,
        })
    # what the blob stores: the constants the calls read (pre-packed ones in their packed form)
    consts = {a: c for call in lib.calls for a in call.args if (c := const_arg(a)) is not None}
    const_bytes = sum(c[1] for c in consts.values())
    params = sum(c[0] for c in consts.values())
    code = sum(int(v) for v in lib.code_bytes.values())
    return {
        "model": graph.name, "target": tgt.name, "edgec_version": __version__,
        "summary": {
            "ops": len(graph.nodes), "kernel_calls": len(exec_graph.nodes), "distinct_kernels": len(lib.kernels),
            "macs": sum(layer["macs"] for layer in layers),
            "parameters": int(params), "constant_bytes": int(const_bytes),
            "arena_bytes": int(plan.arena_size), "arena_lower_bound_bytes": int(plan.lower_bound),
            "workspace_bytes_per_thread": int(lib.workspace_bytes),
            "kernel_code_bytes": int(code),
            "library_file_bytes": int(lib_path.stat().st_size) if lib_path else None,
            "blob_bytes": int(blob_bytes),
            "runner_file_bytes": int(runner_path.stat().st_size) if runner_path else None,
        },
        "inputs": [_io(graph, n) for n in graph.inputs],
        "outputs": [_io(graph, n) for n in graph.outputs],
        "layers": layers,
        "compile_time": {k: round(v, 3) for k, v in timings.items()},
    }


def _format_accuracy(a: dict[str, Any]) -> list[str]:
    """report.txt lines of the accuracy-aware search (edgec.quant.accuracy)."""
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    budget = "none (measured only)" if a["max_drop"] is None else f"{100 * a['max_drop']:.2f} point(s)"
    lines = [f"accuracy on {a['val_samples']} validation sample(s): {a['metric']}",
             f"  fp32 {pct(a['fp32'])}, full int8 {pct(a['int8'])} (drop {100 * a['int8_drop']:.2f}), final "
             f"{pct(a['final'])} (drop {100 * a['final_drop']:.2f}); allowed drop {budget}: {a['status']}",
             f"  float layers: {', '.join(a['fallback_layers']) or 'none'}; {a['evaluations']} full evaluation(s), "
             f"sensitivity pass {a['sensitivity']['seconds']:.2f} s on {a['sensitivity']['samples']} sample(s), "
             f"total {a['seconds']:.2f} s"]
    if not a["labels"]:
        lines.append("  (no labels in the validation data: the metric is agreement with the fp32 model)")
    return lines


def _kb(n) -> str:
    return f"{n / 1024:.1f} KiB" if n is not None else "-"


def format_report(r: dict[str, Any]) -> str:
    s = r["summary"]
    lines = [
        f"edgec {r['edgec_version']}  model {r['model']}  target {r['target']}",
        f"ops {s['ops']} ({s['kernel_calls']} kernel calls, {s['distinct_kernels']} distinct kernels), "
        f"MACs {s['macs']:,}",
        f"parameters {s['parameters']:,} ({_kb(s['constant_bytes'])} of constants)",
        f"arena {_kb(s['arena_bytes'])} (lower bound {_kb(s['arena_lower_bound_bytes'])}), "
        f"workspace {_kb(s['workspace_bytes_per_thread'])} per thread",
        f"kernel code {_kb(s['kernel_code_bytes'])}, kernels.so {_kb(s['library_file_bytes'])}, "
        f"model blob {_kb(s['blob_bytes'])}"
        + (f", runner {_kb(s['runner_file_bytes'])}" if s.get("runner_file_bytes") else ""),
        "",
        f"{'#':>4} {'layer':<32} {'op':<16} {'MACs':>14} {'weights':>11} {'output':>11} {'code':>9}",
    ]
    for k, layer in enumerate(r["layers"]):
        code = "alias" if layer["alias"] else str(layer["kernel_code_bytes"])
        lines.append(f"{k:>4} {layer['name'][:32]:<32} {layer['op']:<16} {layer['macs']:>14,} "
                     f"{layer['weight_bytes']:>11,} {layer['output_bytes']:>11,} {code:>9}")
    if r.get("footprint"):
        from .artifact.firmware import format_footprint
        lines.append("")
        lines.extend(format_footprint(r["footprint"]))
    pr = r.get("pruning")
    if pr:
        lines.append("")
        if pr["mode"] == "channel":
            lines.append(f"pruning (channels, ratio {pr['ratio']:g}): MACs {pr['macs_before']:,} -> {pr['macs_after']:,}, "
                         f"parameters {pr['params_before']:,} -> {pr['params_after']:,}")
        else:
            lines.append(f"pruning (unstructured, ratio {pr['ratio']:g}): sparsity {100 * pr['sparsity']:.1f}%, "
                         f"zlib of the pruned weights {pr['zlib_bytes_before']:,} -> {pr['zlib_bytes_after']:,} B")
        lines.append(pr["table"].rstrip())
    q = r.get("quantization")
    if q:
        sz = q["size"]
        lines.append("")
        if q.get("source") == "qdq":
            lines.append(f"quantization {q['mode']} (pre-quantized QDQ model): activations {q['activation_dtype']}, "
                         f"weights {'per channel' if q['per_channel'] else 'per tensor'}, rounding {q['rounding']}")
        else:
            lines.append(f"quantization {q['mode']}: activations {q['activation_dtype']}, weights "
                         f"{'per channel' if q['per_channel'] else 'per tensor'}, calibration "
                         f"{q['calibration']['method']} on {q['calibration']['samples']} sample(s) "
                         f"({q['calibration']['source']})")
        ratio = f" (int8/fp32 {sz['ratio']:.3f})" if sz.get("ratio") is not None else ""
        lines.append(f"constants fp32 {_kb(sz['fp32_constant_bytes'])} -> int8 {_kb(sz['int8_constant_bytes'])}"
                     f"{ratio}; {q['int8_nodes']} node(s) in int8, {q['float_nodes']} in float")
        acc = q.get("accuracy")
        if acc:
            lines.extend(_format_accuracy(acc))
            lines.append(f"     {'layer':<32} {'op':<16} {'prec':<6} {'sensitivity':>11} {'rank':>5}  choice")
            for layer in q["layers"]:
                sv = layer.get("sensitivity")
                sens = f"{sv:>11.4g} {layer['sensitivity_rank']:>5}" if sv is not None else f"{'-':>11} {'-':>5}"
                lines.append(f"     {layer['node'][:32]:<32} {layer['op']:<16} {layer['precision']:<6} {sens}  "
                             f"{layer['choice']}")
        else:
            for layer in q["layers"]:
                lines.append(f"     {layer['node'][:32]:<32} {layer['op']:<16} {layer['precision']:<6} "
                             f"{layer['choice']}")
    ct = r.get("compile_time", {})
    if ct:
        lines.append("")
        lines.append("compile time: " + ", ".join(f"{k} {v:.2f}" for k, v in ct.items()))
    return "\n".join(lines) + "\n"
