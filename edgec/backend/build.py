"""Build the kernels of a graph: one TVM kernel per distinct (op, attrs, types, target).

    lib = build_kernels(graph, load_target("x86_64"), Path("out"), cache=KernelCache())
    lib.calls[i]       # KernelCall(kernel="k_conv_1a2b3c4d5e6f", args=("x", "w", "b", "y")) for graph.nodes[i]
    lib.library        # out/kernels.so (hosted targets), None for bare-metal targets
    lib.objects        # out/kernels/<kernel>.o, one per distinct kernel
    lib.glue           # out/kernels/kernel_glue.c (edgec.artifact.glue.render_kernel_glue)

Steps
1. Every node becomes a ``KernelSpec`` (op, attrs, input/output types, target). Nodes whose
   op has no generator are collected and reported together (CompileError).
2. Identical specs share one kernel, named ``k_<op>_<first 12 hex of spec.key()>``; the
   name only depends on the spec, so a cached object keeps the right symbol.
3. Each distinct kernel not in the cache is generated (TE + schedule), lowered with TVM's
   default TIR pipeline for ``target.tvm_target()``, measured (workspace) and compiled by
   TVM's LLVM backend into ``<name>.o``. Kernels compile on ``jobs`` threads (TVM releases
   the GIL while lowering and in LLVM). Kernels are not batched into one module: a
   single-kernel compile of a small kernel takes ~30 ms, ten in one module ~150 ms, so
   batching saves little and would tie cache entries together.
4. ``kernel_glue.c`` is written and, for hosted targets, linked with the objects by
   ``target.cc`` into ``kernels.so``.

Workspace (``KernelLibrary.workspace_bytes``)
   Measured, not estimated: after the host lowering passes (``LowerTVMBuiltin``) every
   buffer TVM moves off the stack is a ``TVMBackendAllocWorkspace(dev, id, nbytes, ..)``
   call with a constant size in the lowered TIR. A kernel's need is the sum of all of
   its calls, each rounded up to 64 bytes as the runtime's allocator does: an upper bound
   for one thread whatever the nesting (allocations inside a parallel loop are made by the
   thread running that iteration; allocations in sequential loops are freed before the
   next iteration, so summing over-counts, never under-counts). Kernels whose workspace
   calls cannot be read this way fail the build rather than under-report.

Code size (``KernelLibrary.code_bytes``)
   Bytes of the executable sections of the kernel's object (ELF section headers),
   without the weak float16 conversion helpers TVM puts in every object
   (``.text.tvm.fp16.conv``, kept once by the linker).
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CompileError, TargetError
from .cache import KernelCache

# the runtime's workspace allocator rounds every request up to this many bytes
WORKSPACE_ALIGN = 64
_SHARED_TEXT_SECTIONS = (b".text.tvm.fp16.conv",)
_WS_CALL = re.compile(r"TVMBackendAllocWorkspace\(")
_WS_CONST = re.compile(r"TVMBackendAllocWorkspace\(\s*1\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*,\s*"
                       r"T\.uint64\((\d+)\)")


@dataclass(frozen=True)
class KernelCall:
    kernel: str
    args: tuple[str, ...]


@dataclass
class KernelLibrary:
    calls: list[KernelCall]
    kernels: list[str]
    library: Path | None
    objects: list[Path]
    glue: Path
    code_bytes: dict[str, int]
    workspace_bytes: int
    # per kernel: workspace bytes of one call (max of these is ``workspace_bytes``)
    kernel_workspace: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    compiled: int = 0
    seconds: float = 0.0


@dataclass
class _Job:
    name: str
    spec: Any
    node: Any
    node_index: int


def kernel_name(spec) -> str:
    return f"k_{spec.op}_{spec.key()[:12]}"


def _cache_key(job: "_Job") -> str:
    """The object's symbol is part of what is cached: spec key and kernel name."""
    return f"{job.spec.key()}|{job.name}"


def node_spec(graph, node, target):
    """The KernelSpec of ``node`` in ``graph`` for ``target``."""
    from .kernels.registry import KernelSpec, TensorType
    ins = []
    for name in node.inputs:
        if not name:
            ins.append(None)
        else:
            v = graph.values[name]
            ins.append(TensorType(v.dtype, tuple(int(d) for d in v.shape)))
    outs = []
    for name in node.outputs:
        v = graph.values[name]
        outs.append(TensorType(v.dtype, tuple(int(d) for d in v.shape)))
    return KernelSpec(node.op, dict(node.attrs), tuple(ins), tuple(outs), target)


def _node_label(node, index: int) -> str:
    return node.name or f"#{index}"


def _describe(spec) -> str:
    ins = ", ".join("-" if t is None else f"{t.dtype}{list(t.shape)}" for t in spec.inputs)
    outs = ", ".join(f"{t.dtype}{list(t.shape)}" for t in spec.outputs)
    return f"inputs ({ins}) -> ({outs})"


def _short_error(e: BaseException) -> str:
    """The informative line of a (possibly huge) TVM error message."""
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("Error message:", "ValueError", "TypeError", "InternalError", "RuntimeError",
                          "ScheduleError", "Check failed", "AssertionError")):
            return f"{type(e).__name__}: {ln[:400]}"
    return f"{type(e).__name__}: {(lines[-1] if lines else text)[:400]}"


def _lower(func, name: str, tvm_target):
    """Lower one PrimFunc exactly as ``tvm.compile`` does for a TIR module; returns the host
    IRModule after the finalization passes and the device modules."""
    import tvm
    from tvm.tirx.build import split_host_device_mods
    from .kernels._nn_sched import NO_TIR_CSE_ATTR
    no_cse = bool(func.attrs is not None and NO_TIR_CSE_ATTR in func.attrs and func.attrs[NO_TIR_CSE_ATTR])
    if no_cse:
        func = func.without_attr(NO_TIR_CSE_ATTR)
    mod = tvm.IRModule({name: func.with_attr("global_symbol", name)})
    mod = tvm.tirx.transform.BindTarget(tvm_target.with_host(tvm_target))(mod)
    pipeline, finalize_host, finalize_device = tvm.tirx.get_default_tir_pipeline(tvm_target)
    with tvm.transform.PassContext(config={"tirx.disable_cse_tir": True} if no_cse else {}):
        mod = pipeline(mod)
    host, devices = split_host_device_mods(mod)
    host = finalize_host()(host)
    devices = {t: finalize_device()(m) for t, m in devices.items()}
    return host, devices


def workspace_of(host_mod) -> int:
    """Per-thread workspace bytes of a lowered host module (see the module docstring)."""
    text = host_mod.script()
    calls = len(_WS_CALL.findall(text))
    sizes = [int(s) for s in _WS_CONST.findall(text)]
    if len(sizes) != calls:
        raise CompileError(f"cannot bound the TVM workspace: {calls - len(sizes)} allocation(s) of "
                           f"non-constant size")
    return sum(-(-s // WORKSPACE_ALIGN) * WORKSPACE_ALIGN for s in sizes)


def compile_spec(spec, name: str, out_path: Path) -> dict[str, int]:
    """Generate, lower and compile one kernel into ``out_path``; returns its metadata
    (``code_bytes``, ``workspace_bytes``)."""
    from tvm.tirx.build import tir_to_runtime
    from .kernels.registry import KERNELS
    func = KERNELS[spec.op](spec)
    tvm_target = spec.target.tvm_target()
    host, devices = _lower(func, name, tvm_target)
    ws = workspace_of(host)
    rt = tir_to_runtime(host, devices, tvm_target)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp.o")
    rt.write_to_file(str(tmp))
    tmp.replace(out_path)
    return {"code_bytes": elf_code_bytes(out_path), "workspace_bytes": ws}


def elf_code_bytes(path: Path) -> int:
    """Bytes in the executable sections of an ELF relocatable object (0 if not ELF)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or len(data) < 52:
        return 0
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x2E)

    def section(i):
        off = shoff + i * shentsize
        if is64:
            nm, typ, flags = struct.unpack_from(end + "IIQ", data, off)
            offset, size = struct.unpack_from(end + "QQ", data, off + 0x18)
        else:
            nm, typ, flags, _addr, offset, size = struct.unpack_from(end + "IIIIII", data, off)
        return nm, typ, flags, offset, size

    _, _, _, str_off, str_size = section(shstrndx)
    names = data[str_off:str_off + str_size]
    total = 0
    for i in range(shnum):
        nm, typ, flags, _, size = section(i)
        if typ == 8 or not flags & 0x4:   # SHT_NOBITS, or not SHF_EXECINSTR
            continue
        sname = names[nm:names.index(b"\0", nm)]
        if sname in _SHARED_TEXT_SECTIONS:
            continue
        total += size
    return total


def build_kernels(graph, target, workdir: Path, cache: KernelCache | None = None, jobs: int = 2) -> KernelLibrary:
    """Compile the kernels of ``graph`` for ``target`` into ``workdir`` (see the module docstring)."""
    t0 = time.time()
    from . import kernels as kernel_pkg
    from ..artifact.glue import render_kernel_glue
    workdir = Path(workdir)
    kdir = workdir / "kernels"
    kdir.mkdir(parents=True, exist_ok=True)

    missing = []
    names_taken: set[str] = set()
    jobs_by_key: dict[str, _Job] = {}
    calls: list[KernelCall] = []
    for i, node in enumerate(graph.nodes):
        if node.op not in kernel_pkg.KERNELS:
            missing.append(f"  - node {_node_label(node, i)!r}: op {node.op!r}")
            calls.append(KernelCall("", ()))
            continue
        spec = node_spec(graph, node, target)
        key = spec.key()
        if key not in jobs_by_key:
            name = kernel_name(spec)
            if name in names_taken:      # two specs sharing 48 bits of hash: lengthen the name
                name = f"k_{spec.op}_{key[:32]}"
            names_taken.add(name)
            jobs_by_key[key] = _Job(name, spec, node, i)
        args = tuple(n for n in node.inputs if n) + tuple(node.outputs)
        calls.append(KernelCall(jobs_by_key[key].name, args))
    if missing:
        hint = ""
        if kernel_pkg.IMPORT_ERRORS:
            hint = "\n(kernel modules that failed to import: " + "; ".join(
                f"{g}: {e}" for g, e in sorted(kernel_pkg.IMPORT_ERRORS.items())) + ")"
        raise CompileError(f"no kernel generator for {len(missing)} node(s):\n" + "\n".join(missing) + hint)

    if target.hosted:
        target.check_toolchain()

    order = list(jobs_by_key.values())
    metas: dict[str, dict[str, int]] = {}
    hits = 0
    todo: list[_Job] = []
    for job in order:
        dst = kdir / f"{job.name}.o"
        hit = cache.get(_cache_key(job)) if cache is not None else None
        if hit is not None:
            shutil.copyfile(hit.object, dst)
            metas[job.name] = {"code_bytes": int(hit.meta["code_bytes"]),
                               "workspace_bytes": int(hit.meta["workspace_bytes"])}
            hits += 1
        else:
            todo.append(job)

    errors: list[str] = []
    lock = threading.Lock()

    def run(job: _Job) -> None:
        dst = kdir / f"{job.name}.o"
        try:
            meta = compile_spec(job.spec, job.name, dst)
        except CompileError as e:
            with lock:
                errors.append(f"node {_node_label(job.node, job.node_index)!r} ({job.spec.op}, "
                              f"{_describe(job.spec)}): {e}")
            return
        except Exception as e:  # noqa: BLE001  (TVM raises many types; all become CompileError)
            with lock:
                errors.append(f"node {_node_label(job.node, job.node_index)!r} ({job.spec.op}, "
                              f"{_describe(job.spec)}): kernel generation failed: {_short_error(e)}")
            return
        if cache is not None:
            cache.put(_cache_key(job), dst, meta)
        with lock:
            metas[job.name] = meta

    if todo:
        import tvm  # noqa: F401  (import once, before the threads)
        if jobs <= 1 or len(todo) == 1:
            for job in todo:
                run(job)
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(run, todo))
    if errors:
        raise CompileError(f"{len(errors)} kernel(s) failed to build:\n" + "\n".join(f"  - {e}" for e in errors))

    names = [job.name for job in order]
    objects = [kdir / f"{n}.o" for n in names]
    glue = kdir / "kernel_glue.c"
    glue.write_text(render_kernel_glue(names))
    library = None
    if target.hosted:
        library = workdir / "kernels.so"
        _link(target, glue, objects, library)
    code = {n: metas[n]["code_bytes"] for n in names}
    ws = {n: metas[n]["workspace_bytes"] for n in names}
    return KernelLibrary(calls=calls, kernels=names, library=library, objects=objects, glue=glue,
                         code_bytes=code, workspace_bytes=max(ws.values(), default=0), kernel_workspace=ws,
                         cache_hits=hits, compiled=len(todo), seconds=time.time() - t0)


def _link(target, glue: Path, objects: list[Path], out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    cmd = [target.cc, *target.cflags, *target.ldflags, "-o", str(tmp), str(glue),
           *[str(o) for o in objects], *target.libs]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise TargetError(f"target {target.name}: C compiler {target.cc!r} not found; install it") from None
    if res.returncode != 0:
        raise CompileError(f"linking {out.name} failed ({' '.join(cmd[:3])} ...):\n{res.stderr.strip()[:2000]}")
    tmp.replace(out)
