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
from .passes import MemoryPlan, plan_memory, run_pipeline
from .targets import Target, load_target

BLOB_NAME = "model.edgec"
LIB_NAME = "kernels.so"


def compile_model(model, target: str | Target = "host", input_shapes: Mapping[str, Sequence[int]] | None = None,
                  output_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                  name: str | None = None) -> Path:
    t0 = time.perf_counter()
    tgt = load_target(target)
    tgt.check_toolchain()
    if not tgt.hosted:
        from .artifact.firmware import check_tools
        check_tools(tgt)     # cc, ar and size: fail before the kernels are built
    if name is None:
        name = Path(model).stem if isinstance(model, (str, Path)) else "model"
    if output_dir is None:
        output_dir = Path.cwd() / f"{name}.edgec"
    output_dir = Path(output_dir)

    graph = import_onnx(model, input_shapes=input_shapes, name=name)
    t_import = time.perf_counter()
    graph = run_pipeline(graph)
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
        lib = build_kernels(exec_graph, tgt, tmp, cache=cache)
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
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
        (tmp / "report.txt").write_text(format_report(report))
        manifest = {
            "format": "edgec-artifact", "edgec_version": __version__, "blob_version": "1.0",
            "model": name, "target": tgt.name, "target_file": Path(tgt.path).name, "hosted": tgt.hosted,
            "arch": tgt.arch,
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
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _replace_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output_dir


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

    def tensor(name: str) -> int:
        if name in index:
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
            "weight_bytes": sum(v.nbytes for v in ins if v is not None and v.const is not None),
            "output_bytes": sum(v.nbytes for v in outs),
            "kernel_code_bytes": int(lib.code_bytes.get(call.kernel, 0)) if call else 0,
            "output_shapes": [list(v.shape) for v in outs],
            "alias": call is None,
        })
    consts = {i for n in exec_graph.nodes for i in n.inputs if i and graph.values[i].const is not None}
    const_bytes = sum(graph.values[c].nbytes for c in consts)
    params = sum(graph.values[c].size for c in consts)
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
    ct = r.get("compile_time", {})
    if ct:
        lines.append("")
        lines.append("compile time: " + ", ".join(f"{k} {v:.2f}" for k, v in ct.items()))
    return "\n".join(lines) + "\n"
