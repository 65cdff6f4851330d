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

Pre-packed constants (``node_packing``, ``KernelLibrary.constants``)
   Kernels that would re-pack a weight on every call (int8 ``conv_isa`` / ``dense_isa`` on VNNI)
   read it stored in their layout instead: a per-op rule (``kernels.quant_conv.PREPACK``) maps an
   unpacked spec to ``{input index: Packing}`` (layout name, packed type, numpy packing function,
   attrs ``w_layout`` / ``w_shape`` telling the generator). It applies to graph constants only;
   the spec's input type becomes the packed one, the call's argument the packed constant
   ``<constant>#<layout>`` (one per constant and layout, shared by the calls that read it), which
   ``edgec.compiler._blob_model`` writes instead of the original (the original only if another
   call reads it). The graph, the reference and ``quantized_graph.npz`` keep the originals.
   ``EDGEC_PREPACK=0`` (or ``build_kernels(prepack=False)``) turns it off: same bits.

Workspace (``KernelLibrary.workspace_bytes``)
   Measured, not estimated: after the host lowering passes (``LowerTVMBuiltin``) every
   buffer TVM moves off the stack is a ``TVMBackendAllocWorkspace(dev, id, nbytes, ..)``
   call with a constant size in the lowered TIR. A kernel's need is the sum of all of
   its calls, each rounded up to 64 bytes as the runtime's allocator does: an upper bound
   for one thread whatever the nesting (allocations inside a parallel loop are made by the
   thread running that iteration; allocations in sequential loops are freed before the
   next iteration, so summing over-counts, never under-counts). Kernels whose workspace
   calls cannot be read this way fail the build rather than under-report.

Emit modes (``emit``)
   ``"shared"`` (hosted targets): the objects linked into ``kernels.so``. ``"static"``
   (bare-metal targets): the TVM objects, archived into ``libmodel.a`` by
   edgec.artifact.firmware. ``"c"``: each kernel as C99/C11 source ``kernels/<name>.c``
   (TVM's ``c`` code generator, with vectorized loops left scalar, which plain C cannot
   express) plus ``kernels/edgec_kernel.h``, the few TVM/DLPack declarations they use, so
   that a user's own compiler builds them with no TVM headers; the glue then also defines
   ``TVMBackendAllocWorkspace``/``TVMBackendFreeWorkspace``/``TVMBackendParallelLaunch``/
   ``TVMBackendParallelBarrier``, which C kernels call by name. A target whose ``[tvm]
   kind`` is ``"c"`` (generic-c) can only emit C; ``default_emit(target)`` picks
   ``"c"``, ``"shared"`` or ``"static"``.

Code size (``KernelLibrary.code_bytes``)
   Bytes of the executable sections of the kernel's object (ELF section headers),
   without the weak float16 conversion helpers TVM puts in every object
   (``.text.tvm.fp16.conv``, kept once by the linker).
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import CompileError, TargetError
from .cache import KernelCache

# kernel generators (TE + schedule, Python) run one at a time; lowering and LLVM run in parallel
_GENERATE_LOCK = threading.Lock()
# the runtime's workspace allocator rounds every request up to this many bytes
WORKSPACE_ALIGN = 64
_SHARED_TEXT_SECTIONS = (b".text.tvm.fp16.conv",)
_WS_CALL = re.compile(r"TVMBackendAllocWorkspace\(")
_WS_CONST = re.compile(r"TVMBackendAllocWorkspace\(\s*1\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*,\s*"
                       r"T\.uint64\((\d+)\)")


EMIT_MODES = ("shared", "static", "c")
C_SOURCE_VERSION = 3    # bump when c_kernel_source changes: cached C sources are keyed by it
KERNEL_HEADER = "edgec_kernel.h"


def is_c_target(target) -> bool:
    """True for targets whose kernels TVM can only emit as C source (``[tvm] kind = "c"``)."""
    return str((target.tvm or {}).get("kind", "llvm")) == "c"


def default_emit(target) -> str:
    if is_c_target(target):
        return "c"
    return "shared" if target.hosted else "static"


def check_emit(target, emit: str | None) -> str:
    """The emit mode to use for ``target`` (``None``: its default); CompileError when the
    target cannot produce it."""
    if emit is None:
        return default_emit(target)
    if emit not in EMIT_MODES:
        raise CompileError(f"unknown emit mode {emit!r}; expected one of {', '.join(EMIT_MODES)}")
    if is_c_target(target) and emit != "c":
        raise CompileError(f"target {target.name} generates C source only (TVM kind \"c\"): use emit \"c\", "
                           f"not {emit!r}")
    if target.hosted and emit != "shared":
        raise CompileError(f"emit {emit!r} is for bare-metal targets (cortex-m4, cortex-m7, generic-c); hosted target "
                           f"{target.name} builds kernels.so (emit \"shared\")")
    if not target.hosted and emit == "shared":
        raise CompileError(f"target {target.name} is bare metal (no dynamic loading): use emit \"static\" or \"c\"")
    return emit


# Declarations the C kernels of TVM's "c" target need, instead of TVM's headers: layouts of
# DLPack 1.x's DLTensor and tvm-ffi's TVMFFIAny (identical to runtime_c/include/edgec/edgec.h's
# edgec_dltensor_t and edgec_ffi_any_t) and the backend functions (defined by kernel_glue.c).
KERNEL_HEADER_SOURCE = """\
/* Generated by edgec (edgec/backend/build.py): the declarations edgec's C-source kernels use
 * in place of TVM's headers. Needs C11 (anonymous unions; GCC and Clang also accept them in C99). */
#ifndef EDGEC_KERNEL_H_
#define EDGEC_KERNEL_H_
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TVM_DLL

typedef struct { int32_t device_type; int32_t device_id; } DLDevice;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
typedef struct {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
} DLTensor;
typedef struct {
  int32_t type_index;
  union { uint32_t zero_padding; uint32_t small_str_len; };
  union { int64_t v_int64; double v_float64; void* v_ptr; const char* v_c_str; uint64_t v_uint64; char v_bytes[8]; };
} TVMFFIAny;
typedef struct { void* sync_handle; int32_t num_task; } TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv* penv, void* cdata);

void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t num_parts);
void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint);
int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr);
int TVMBackendParallelLaunch(FTVMParallelLambda flambda, void* cdata, int num_task);
int TVMBackendParallelBarrier(int task_id, TVMParallelGroupEnv* penv);
#endif
"""

# appended to kernel_glue.c when the kernels are C source: TVM's C code calls these by name
GLUE_C_BACKEND = """
/*---- TVM backend API called by name from C-source kernels (emit c) ----*/
typedef struct { void* sync_handle; int32_t num_task; } edgec_glue_c_env_t;
void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint);
int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr);
int TVMBackendParallelLaunch(edgec_glue_tvm_lambda_t flambda, void* cdata, int num_task);
int TVMBackendParallelBarrier(int task_id, edgec_glue_parallel_env_t* penv);
void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint) {
  return edgec_glue_alloc_workspace(device_type, device_id, nbytes, dtype_code_hint, dtype_bits_hint);
}
int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr) {
  return edgec_glue_free_workspace(device_type, device_id, ptr);
}
int TVMBackendParallelLaunch(edgec_glue_tvm_lambda_t flambda, void* cdata, int num_task) {
  return edgec_glue_parallel_launch(flambda, cdata, num_task);
}
int TVMBackendParallelBarrier(int task_id, edgec_glue_parallel_env_t* penv) {
  return edgec_glue_parallel_barrier(task_id, penv);
}
"""

_C_INCLUDES = re.compile(r'^(#define TVM_EXPORTS|#include "tvm/[^"]+")\n', re.M)
_C_LIBCTX = "void* __tvm_ffi__library_ctx = NULL;\n"
# TVM's C printer writes non-finite constants as the bare words inf / inff / nan / nanf
_C_NONFINITE = [(re.compile(r"(?<![\w.\"])inff\b"), "INFINITY"),
                (re.compile(r"(?<![\w.\"])inf\b(?!\s*\()"), "((double)INFINITY)"),
                (re.compile(r"(?<![\w.\"])nanf\b(?!\s*\()"), "NAN"),
                (re.compile(r"(?<![\w.\"])nan\b(?!\s*\()"), "((double)NAN)")]
_C_MAIN = "// CodegenC: NOTE: Auto-generated entry function"
# a vector of constants stored at once (quant kernels' tables): *(int32_t16*)(p + 16) = int32_t16(1, 2, ...);
_C_VEC_CONST_STORE = re.compile(r"\*\((?P<t>(?:u?int(?:8|16|32|64)_t|float|double)(?P<n>\d+))\*\)\((?P<ptr>\w+) \+ "
                                r"(?P<off>\d+)\) = (?P=t)\((?P<vals>[-0-9.e+f, ]+)\);")
_C_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_C_VECTOR_TYPE = re.compile(r"\b(?:u?int(?:8|16|32|64)_t|float|double|half)(?:2|3|4|8|16|32|64)\b")


def _scalar_const_stores(m: "re.Match") -> str:
    vals = [v.strip() for v in m.group("vals").split(",")]
    if len(vals) != int(m.group("n")):
        return m.group(0)
    ptr, off = m.group("ptr"), int(m.group("off"))
    return " ".join(f"{ptr}[{off + i}] = {v};" for i, v in enumerate(vals))


def c_kernel_source(src: str, name: str) -> str:
    """TVM's C source of kernel ``name`` made self-contained and linkable with other kernels:
    TVM's includes become ``edgec_kernel.h``, and the per-file ``__tvm_ffi__library_ctx``
    and ``__tvm_ffi_main`` (same symbol in every file) are dropped."""
    if f"__tvm_ffi_{name}(" not in src:
        raise CompileError(f"TVM's C code for {name} has no entry __tvm_ffi_{name}")
    body, n = _C_INCLUDES.subn("", src)
    if n == 0:
        raise CompileError(f"TVM's C code for {name}: unexpected preamble (no tvm/ includes)")
    cut = body.find(_C_MAIN)
    if cut >= 0:
        body = body[:cut].rstrip() + "\n"
    body = body.replace(_C_LIBCTX, "")
    for pat, rep in _C_NONFINITE:
        body = pat.sub(rep, body)
    body = _C_VEC_CONST_STORE.sub(_scalar_const_stores, body)
    vec = _C_VECTOR_TYPE.search(_C_STRING.sub('""', body))   # not in messages ("... float32")
    if vec:
        raise CompileError(f"TVM's C code for {name} uses vector type {vec.group(0)!r}, which C cannot express; "
                           f"this kernel cannot be emitted as C")
    if "__tvm_ffi__library_ctx" in body or "__tvm_ffi_main" in body:
        raise CompileError(f"TVM's C code for {name} uses the module context; it cannot be emitted as C")
    lines = body.split("\n", 1)
    head = lines[0] if lines[0].startswith("//") else ""
    rest = lines[1] if head else body
    return (f"/* Generated by edgec from TVM's C code generator: kernel {name}. */\n"
            + (f"/* {head[2:].strip()} */\n" if head else "")
            + f'#include "{KERNEL_HEADER}"\n' + rest)


@dataclass(frozen=True)
class KernelCall:
    kernel: str
    args: tuple[str, ...]
    # constant inputs stored pre-packed: (input index, layout name) pairs; the arg at that input's
    # position is then the packed constant's name (``packed_name``, in KernelLibrary.constants)
    packed: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class PackedConst:
    """A constant stored in a kernel's layout (pre-packed): ``source`` (the graph constant it is
    made from), ``layout``, and the packed array (what the artifact stores)."""
    name: str
    source: str
    layout: str
    data: Any            # numpy array

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


@dataclass
class KernelLibrary:
    calls: list[KernelCall]
    kernels: list[str]
    library: Path | None
    objects: list[Path]          # TVM objects (emit shared/static) or C sources (emit c)
    glue: Path
    code_bytes: dict[str, int]
    workspace_bytes: int
    # per kernel: workspace bytes of one call (max of these is ``workspace_bytes``)
    kernel_workspace: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    compiled: int = 0
    seconds: float = 0.0
    emit: str = "shared"
    header: Path | None = None   # kernels/edgec_kernel.h (emit c)
    tuned_nodes: int = 0         # nodes whose kernel uses tuning records' choices
    # pre-packed constants by name (the calls' args refer to them; see node_packing)
    constants: dict[str, PackedConst] = field(default_factory=dict)


@dataclass
class _Job:
    name: str
    spec: Any
    node: Any
    node_index: int


def kernel_name(spec) -> str:
    return f"k_{spec.op}_{spec.key()[:12]}"


def _cache_key(job: "_Job", emit: str = "shared") -> str:
    """The object's symbol is part of what is cached: spec key and kernel name (and, for C
    source, that it is C)."""
    return f"{job.spec.key()}|{job.name}" + (f"|c-source-{C_SOURCE_VERSION}" if emit == "c" else "")


def prepack_enabled() -> bool:
    """Compile-time weight packing is on unless ``EDGEC_PREPACK=0`` (for measurements: the
    kernels then pack their weights on every call, as before; the same bits)."""
    return os.environ.get("EDGEC_PREPACK", "1") != "0"


def packed_name(source: str, layout: str) -> str:
    """Name of the pre-packed form of constant ``source`` (one per constant and layout: nodes
    reading the same constant in the same layout share it)."""
    return f"{source}#{layout}"


def node_packing(graph, node, target, prepack: bool | None = None):
    """``(spec, {input index: Packing})``: the KernelSpec of ``node`` with its constant inputs that
    a kernel reads in a packed layout replaced by the packed type (and the layout in the attrs,
    ``kernels.quant_conv.Packing.attrs``), and those packings. Packing is a backend decision: the
    graph keeps the original constants. It is a pure function of the unpacked spec (op, attrs,
    types, target ISA) and applies only to graph constants. ``prepack``: None follows
    ``prepack_enabled()``."""
    spec = _plain_spec(graph, node, target)
    if not (prepack_enabled() if prepack is None else prepack):
        return spec, {}
    from .kernels.quant_conv import prepack as prepack_rules
    packs = {i: p for i, p in prepack_rules(spec).items()
             if node.inputs[i] and graph.values[node.inputs[i]].const is not None}
    if not packs:
        return spec, {}
    ins = list(spec.inputs)
    attrs = dict(spec.attrs)
    for i, p in packs.items():
        ins[i] = p.packed
        attrs.update(dict(p.attrs))
    return replace(spec, attrs=attrs, inputs=tuple(ins)), packs


def node_spec(graph, node, target, prepack: bool | None = None):
    """The KernelSpec of ``node`` in ``graph`` for ``target`` (with its pre-packed constant
    inputs, ``node_packing``)."""
    return node_packing(graph, node, target, prepack)[0]


def _plain_spec(graph, node, target):
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


def _lower(func, name: str, tvm_target, config: dict | None = None):
    """Lower one PrimFunc exactly as ``tvm.compile`` does for a TIR module (plus the pass
    ``config``); returns the host IRModule after the finalization passes and the device modules."""
    import tvm
    from tvm.tirx.build import split_host_device_mods
    from .kernels._nn_sched import NO_TIR_CSE_ATTR
    no_cse = bool(func.attrs is not None and NO_TIR_CSE_ATTR in func.attrs and func.attrs[NO_TIR_CSE_ATTR])
    if no_cse:
        func = func.without_attr(NO_TIR_CSE_ATTR)
    mod = tvm.IRModule({name: func.with_attr("global_symbol", name)})
    mod = tvm.tirx.transform.BindTarget(tvm_target.with_host(tvm_target))(mod)
    pipeline, finalize_host, finalize_device = tvm.tirx.get_default_tir_pipeline(tvm_target)
    cfg = dict(config or {})
    if no_cse:
        cfg["tirx.disable_cse_tir"] = True
    with tvm.transform.PassContext(config=cfg):
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


def compile_spec(spec, name: str, out_path: Path, emit: str = "shared") -> dict[str, int]:
    """Generate, lower and compile one kernel into ``out_path`` (an object, or C source for
    ``emit="c"``); returns its metadata (``code_bytes``: 0 for C source, ``workspace_bytes``)."""
    import tvm
    from tvm.tirx.build import tir_to_runtime
    from .kernels.registry import KERNELS
    from .tuning import applying
    with _GENERATE_LOCK, applying(spec.tuning):   # generators share TVM's registries: one at a time
        func = KERNELS[spec.op](spec)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if emit == "c":
        # scheduled for the target (tiling, unrolling), generated as C: vectorized loops stay scalar
        c_target = tvm.target.Target({"kind": "c"})
        host, devices = _lower(func, name, c_target, {"tirx.disable_vectorize": True})
        ws = workspace_of(host)
        with tvm.transform.PassContext(config={"tirx.disable_vectorize": True}):
            rt = tir_to_runtime(host, devices, c_target)
        src = c_kernel_source(rt.inspect_source(), name)
        tmp = out_path.with_name(out_path.name + ".tmp")
        tmp.write_text(src)
        tmp.replace(out_path)
        return {"code_bytes": 0, "workspace_bytes": ws}
    tvm_target = spec.target.tvm_target()
    host, devices = _lower(func, name, tvm_target)
    ws = workspace_of(host)
    rt = tir_to_runtime(host, devices, tvm_target)
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


def build_kernels(graph, target, workdir: Path, cache: KernelCache | None = None, jobs: int = 2,
                  emit: str | None = None, records=None, prepack: bool | None = None) -> KernelLibrary:
    """Compile the kernels of ``graph`` for ``target`` into ``workdir`` (see the module docstring);
    ``emit``: "shared" | "static" | "c" (None: ``default_emit(target)``); ``records``: a
    TuningRecords (edgec.backend.tuning) whose measured choices the kernels are generated with;
    ``prepack``: store the weights of the packed kernels pre-packed (``node_packing``; None:
    ``prepack_enabled()``): the calls then name the packed constants (``KernelLibrary.constants``)."""
    t0 = time.time()
    emit = check_emit(target, emit)
    ext = ".c" if emit == "c" else ".o"
    from . import kernels as kernel_pkg
    from ..artifact.glue import render_kernel_glue
    workdir = Path(workdir)
    kdir = workdir / "kernels"
    kdir.mkdir(parents=True, exist_ok=True)

    missing = []
    tuned = 0
    names_taken: set[str] = set()
    jobs_by_key: dict[str, _Job] = {}
    calls: list[KernelCall] = []
    constants: dict[str, PackedConst] = {}
    for i, node in enumerate(graph.nodes):
        if node.op not in kernel_pkg.KERNELS:
            missing.append(f"  - node {_node_label(node, i)!r}: op {node.op!r}")
            calls.append(KernelCall("", ()))
            continue
        spec, packs = node_packing(graph, node, target, prepack)
        inputs = list(node.inputs)
        for j, p in sorted(packs.items()):
            pname = packed_name(node.inputs[j], p.layout)
            while pname in graph.values:     # a graph value already has that name
                pname += "#"
            if pname not in constants:
                src = graph.values[node.inputs[j]].const
                data = p.pack(src)
                if str(data.dtype) != p.packed.dtype or tuple(data.shape) != tuple(p.packed.shape):
                    raise CompileError(f"node {_node_label(node, i)!r}: packing {node.inputs[j]!r} into layout "
                                       f"{p.layout} gave {data.dtype}{list(data.shape)}, not "
                                       f"{p.packed.dtype}{list(p.packed.shape)}")
                constants[pname] = PackedConst(pname, node.inputs[j], p.layout, data)
            inputs[j] = pname
        if records is not None:
            tuned_spec = records.apply(spec)
            if packs and not tuned_spec.tuning:
                # records measured before the weights were stored packed (keyed by the unpacked
                # spec): the same tile candidates, so the same choice
                cfg = records.config_for(_plain_spec(graph, node, target))
                if cfg:
                    from .tuning import spec_tuning
                    tuned_spec = replace(spec, tuning=spec_tuning(cfg))
            spec = tuned_spec
            tuned += bool(spec.tuning)
        key = spec.key()
        if key not in jobs_by_key:
            name = kernel_name(spec)
            if name in names_taken:      # two specs sharing 48 bits of hash: lengthen the name
                name = f"k_{spec.op}_{key[:32]}"
            names_taken.add(name)
            jobs_by_key[key] = _Job(name, spec, node, i)
        args = tuple(n for n in inputs if n) + tuple(node.outputs)
        calls.append(KernelCall(jobs_by_key[key].name, args, tuple((j, p.layout) for j, p in sorted(packs.items()))))
    if missing:
        hint = ""
        if kernel_pkg.IMPORT_ERRORS:
            hint = "\n(kernel modules that failed to import: " + "; ".join(
                f"{g}: {e}" for g, e in sorted(kernel_pkg.IMPORT_ERRORS.items())) + ")"
        raise CompileError(f"no kernel generator for {len(missing)} node(s):\n" + "\n".join(missing) + hint)

    if emit == "shared":
        target.check_toolchain()

    order = list(jobs_by_key.values())
    metas: dict[str, dict[str, int]] = {}
    hits = 0
    todo: list[_Job] = []
    for job in order:
        dst = kdir / f"{job.name}{ext}"
        hit = cache.get(_cache_key(job, emit)) if cache is not None else None
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
        dst = kdir / f"{job.name}{ext}"
        try:
            meta = compile_spec(job.spec, job.name, dst, emit)
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
            cache.put(_cache_key(job, emit), dst, meta)
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
    objects = [kdir / f"{n}{ext}" for n in names]
    glue = kdir / "kernel_glue.c"
    header = None
    if emit == "c":
        glue.write_text(render_kernel_glue(names) + GLUE_C_BACKEND)
        header = kdir / KERNEL_HEADER
        header.write_text(KERNEL_HEADER_SOURCE)
    else:
        glue.write_text(render_kernel_glue(names))
    library = None
    if emit == "shared":
        library = workdir / "kernels.so"
        _link(target, glue, objects, library)
    code = {n: metas[n]["code_bytes"] for n in names}
    ws = {n: metas[n]["workspace_bytes"] for n in names}
    return KernelLibrary(calls=calls, kernels=names, library=library, objects=objects, glue=glue,
                         code_bytes=code, workspace_bytes=max(ws.values(), default=0), kernel_workspace=ws,
                         cache_hits=hits, compiled=len(todo), seconds=time.time() - t0, emit=emit, header=header,
                         tuned_nodes=tuned, constants=constants)


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
