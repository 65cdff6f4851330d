"""Bare-metal artifacts (``hosted = false`` targets, e.g. cortex-m7) and their example firmware.

At compile time (``package_baremetal``, called by edgec.compiler) the artifact folder gets,
next to ``model.edgec`` and ``kernels/`` (TVM objects + ``kernel_glue.c``):

| file | what |
|---|---|
| ``libmodel.a`` | the kernel objects + ``kernel_glue.o`` (``edgec_model_kernels``, ``edgec_kernels_bind``) |
| ``libedgec_runtime.a`` | the runtime core (runtime_c/src: crc32, model, session, status, workspace) for the target |
| ``model_blob.c`` / ``model_blob.h`` | the blob as a 64-byte aligned ``const uint8_t edgec_model_blob[]`` (flash) |
| ``include/edgec/edgec.h`` | the runtime's public header |

With kernels emitted as C (``emit="c"``: ``kernels/<name>.c`` + ``kernels/edgec_kernel.h``,
see edgec.backend.build) the sources stay in the artifact for the user's own toolchain, the
runtime core's sources are copied to ``runtime/`` (src/*.c, internal.h), and libmodel.a is
still built from them here (so the footprint is measured the same way).

all built with the target's toolchain (``target.cc``/``cflags``, ``ar`` and ``size`` from the
same prefix unless ``[toolchain] ar``/``size`` name them), and a ``footprint`` section in the
report measured with the toolchain's ``size`` tool.

``build_firmware`` links examples/cortex_m/ (reset handler, vector table, linker script,
main.c) with those files and a generated ``model_input.c`` (the input tensors as const
arrays); ``run_firmware`` runs the ELF under the target's emulator (qemu-system-arm with
semihosting) and parses what main.c prints: every output element as the hex of its bits, so
results compare exactly. ``FirmwareModel`` wraps both behind the ``Model`` interface
(``edgec.runtime.load(out, emulate=True)``, ``edgec run/verify --emulate``).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import ArtifactError, CompileError, RuntimeFailure, TargetError

LIB_MODEL = "libmodel.a"
LIB_RUNTIME = "libedgec_runtime.a"
BLOB_C = "model_blob.c"
BLOB_H = "model_blob.h"
BLOB_SYMBOL = "edgec_model_blob"
CORE_SOURCES = ("crc32.c", "model.c", "session.c", "status.c", "workspace.c")
EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "cortex_m"
FIRMWARE_SOURCES = ("startup.c", "main.c")
LINKER_SCRIPT = "mps2.ld"
RUN_TIMEOUT_S = 120

# Sizes of the runtime's bookkeeping structs on 32-bit ARM EABI (runtime_c/src/internal.h):
# edgec_call_t, edgec_ffi_any_t, edgec_dltensor_t, int64_t, edgec_workspace_t. The firmware
# checks its static arena against edgec_model_arena_size at run time (and the tests compare).
_ILP32_SIZES = {"call": 20, "any": 16, "dltensor": 40, "dim": 8, "workspace": 32 + 32 * 16}
# the same on a 64-bit (LP64) machine: generic-c's arena must fit both
_LP64_SIZES = {"call": 32, "any": 16, "dltensor": 48, "dim": 8, "workspace": 32 + 32 * 16}


def _align64(v: int) -> int:
    return -(-v // 64) * 64


def session_arena_bytes(n_ops: int, n_args: int, n_tensors: int, n_dims: int, arena_size: int,
                        workspace_size: int, threads: int = 1, lp64: bool = False) -> int:
    """``edgec_model_arena_size(model, threads)`` on a 32-bit ARM target (runtime_c/src/session.c),
    or on a 64-bit one with ``lp64``."""
    s = _LP64_SIZES if lp64 else _ILP32_SIZES
    cursor = 0
    for count, size in ((n_ops, s["call"]), (n_args, s["any"]), (n_tensors, s["dltensor"]), (n_dims, s["dim"]),
                        (threads, s["workspace"]), (1, arena_size), (threads, _align64(workspace_size))):
        cursor = _align64(cursor) + count * size
    return _align64(cursor) + 64


def tool(target, name: str) -> str:
    """The target toolchain's ``ar``/``size``/``objcopy``: ``[toolchain] <name>`` or the
    compiler's prefix (``arm-none-eabi-gcc`` -> ``arm-none-eabi-size``)."""
    tc = target.extra.get("toolchain") or {}
    if tc.get(name):
        return str(tc[name])
    cc = target.cc
    return cc[:-3] + name if cc.endswith("gcc") else name


def check_tools(target) -> None:
    """TargetError naming the packages when the compiler, ar or size is missing."""
    for t in (target.cc, tool(target, "ar"), tool(target, "size")):
        if shutil.which(t) is None:
            raise TargetError(f"target {target.name}: {t!r} not found; install it "
                              f"(Debian: {target.extra.get('install_hint') or 'apt-get install ' + target.cc})")


def _run(cmd: list[str], what: str, cwd: Path | None = None, target=None) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    except FileNotFoundError:
        raise TargetError(f"{cmd[0]!r} not found") from None
    if res.returncode != 0:
        hint = ""
        if target is not None:
            from .runner import sysroot_hint
            hint = sysroot_hint(target, res.stderr)
        raise CompileError(f"{what} failed ({' '.join(cmd[:4])} ...):\n{res.stderr.strip()[:2000]}{hint}")
    return res.stdout


def target_cflags(target) -> list[str]:
    return [f for f in target.cflags if f not in ("-shared", "-fPIC")] + ["-std=c99"]


def kernel_c_cflags(target, kernel_dir: Path) -> list[str]:
    """Flags for the C-source kernels: C11 (anonymous unions in edgec_kernel.h), no warnings
    about TVM's generated code."""
    return [f for f in target_cflags(target) if not f.startswith("-std=")] + ["-std=c11", "-w", f"-I{kernel_dir}"]


def runs_natively(target) -> bool:
    """A bare-metal-style target whose example program runs on this machine (generic-c built
    with the host compiler: ``[firmware] run_native = true``)."""
    return bool((target.extra.get("firmware") or {}).get("run_native", False))


def runtime_dir() -> Path:
    from ..runtime import _build
    if not _build.have_sources():
        raise CompileError(f"the C runtime sources ({_build.RUNTIME}) are not available, so the runtime cannot be "
                           f"built for a bare-metal target; install edgec from a source checkout")
    return _build.RUNTIME


# ---------------------------------------------------------------------------------------------
# compile time
# ---------------------------------------------------------------------------------------------

def render_blob_sources(blob: bytes, arena_bytes: int, header: str = BLOB_H) -> tuple[str, str]:
    """(model_blob.c, model_blob.h): the blob as a 64-aligned const array (it stays in flash)."""
    n = len(blob)
    guard = "EDGEC_MODEL_BLOB_H_"
    h = (f"/* Generated by edgec: the model blob as a const array (docs/artifact.md). */\n"
         f"#ifndef {guard}\n#define {guard}\n#include <stdint.h>\n\n"
         f"#define EDGEC_MODEL_BLOB_SIZE {n}u\n"
         f"/* edgec_model_arena_size(model, 1) on 32-bit ARM: size of the caller's arena for one thread */\n"
         f"#define EDGEC_MODEL_ARENA_SIZE {arena_bytes}u\n\n"
         f"extern const uint8_t {BLOB_SYMBOL}[EDGEC_MODEL_BLOB_SIZE];\n\n#endif\n")
    hexes = blob.hex()
    rows = []
    for i in range(0, n, 24):
        chunk = hexes[2 * i:2 * min(n, i + 24)]
        rows.append(",".join("0x" + chunk[j:j + 2] for j in range(0, len(chunk), 2)))
    c = (f"/* Generated by edgec: {n} bytes of model blob, 64-byte aligned, read-only (flash). */\n"
         f'#include "{header}"\n\n'
         f"__attribute__((aligned(64))) const uint8_t {BLOB_SYMBOL}[EDGEC_MODEL_BLOB_SIZE] = {{\n"
         + ",\n".join(rows) + "\n};\n")
    return c, h


def parse_size(text: str) -> dict[str, dict[str, int]]:
    """``size`` (Berkeley format) output -> {file name: {text, data, bss}}."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[1:]:
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        name = Path(parts[5].split(" (ex ")[0].strip()).name
        out[name] = {"text": int(parts[0]), "data": int(parts[1]), "bss": int(parts[2])}
    return out


def _sum(rows) -> dict[str, int]:
    rows = list(rows)
    return {k: sum(r[k] for r in rows) for k in ("text", "data", "bss")}


def package_baremetal(target, outdir: Path, lib, blob: bytes, blob_model) -> dict:
    """Writes libmodel.a, libedgec_runtime.a, model_blob.c/h and include/ into ``outdir``
    (see the module docstring); returns the report's footprint section."""
    check_tools(target)
    outdir = Path(outdir)
    cflags = target_cflags(target)
    cc, ar, size = target.cc, tool(target, "ar"), tool(target, "size")
    rt = runtime_dir()
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=outdir))
    try:
        glue_o = Path(lib.glue).with_suffix(".o")
        _run([cc, *cflags, "-c", str(lib.glue), "-o", str(glue_o)], "compiling kernel_glue.c")
        if getattr(lib, "emit", "static") == "c":
            from ..backend.build import elf_code_bytes
            kflags = kernel_c_cflags(target, Path(lib.glue).parent)
            objects = []
            for src in map(Path, lib.objects):
                o = build / (src.stem + ".o")
                _run([cc, *kflags, "-c", str(src), "-o", str(o)], f"compiling kernels/{src.name}")
                objects.append(o)
                lib.code_bytes[src.stem] = elf_code_bytes(o)   # the report's kernel code column
            _copy_runtime_sources(rt, outdir / "runtime")
        else:
            objects = [Path(o) for o in lib.objects]
        _run([ar, "rcs", str(outdir / LIB_MODEL), *map(str, objects), str(glue_o)], f"creating {LIB_MODEL}")

        rt_objs = []
        for src in CORE_SOURCES:
            o = build / (Path(src).stem + ".o")
            _run([cc, *cflags, f"-I{rt / 'include'}", "-c", str(rt / "src" / src), "-o", str(o)],
                 f"compiling runtime_c/src/{src}", target=target)
            rt_objs.append(o)
        _run([ar, "rcs", str(outdir / LIB_RUNTIME), *map(str, rt_objs)], f"creating {LIB_RUNTIME}")
        inc = outdir / "include" / "edgec"
        inc.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rt / "include" / "edgec" / "edgec.h", inc / "edgec.h")

        m = blob_model
        counts = (len(m.ops), sum(len(op.args) for op in m.ops), len(m.tensors), sum(len(t.shape) for t in m.tensors),
                  m.arena_size, m.workspace_size)
        arena = session_arena_bytes(*counts)
        if str((target.tvm or {}).get("kind")) == "c":   # generic C: 32- or 64-bit, whichever needs more
            arena = max(arena, session_arena_bytes(*counts, lp64=True))
        c_src, h_src = render_blob_sources(blob, arena)
        (outdir / BLOB_C).write_text(c_src)
        (outdir / BLOB_H).write_text(h_src)
        blob_o = build / "model_blob.o"
        _run([cc, *cflags, f"-I{outdir}", "-c", str(outdir / BLOB_C), "-o", str(blob_o)], f"compiling {BLOB_C}")

        sizes = parse_size(_run([size, *map(str, rt_objs), *map(str, objects), str(glue_o), str(blob_o)],
                                f"{size}"))
        rt_rows = {o.name: sizes[o.name] for o in rt_objs}
        k_rows = [sizes[o.name] for o in objects]
        fp = {
            "tool": size, "cflags": cflags,
            "runtime": {**_sum(rt_rows.values()), "objects": rt_rows},
            "kernels": {**_sum(k_rows), "count": len(k_rows)},
            "glue": sizes[glue_o.name],
            "blob": sizes[blob_o.name],
            "arena_bytes": arena,
            "arena_parts": {"activations": int(m.arena_size), "workspace": int(m.workspace_size),
                            "bookkeeping": arena - int(m.arena_size) - _align64(int(m.workspace_size))},
        }
        parts = [fp["runtime"], fp["kernels"], fp["glue"], fp["blob"]]
        fp["flash_bytes"] = sum(p["text"] + p["data"] for p in parts)
        fp["ram_bytes"] = sum(p["data"] + p["bss"] for p in parts) + arena
        return fp
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _copy_runtime_sources(rt: Path, dst: Path) -> None:
    """runtime/src (the core's .c files and internal.h) and runtime/include/edgec/edgec.h."""
    (dst / "src").mkdir(parents=True, exist_ok=True)
    for src in (*CORE_SOURCES, "internal.h"):
        shutil.copyfile(rt / "src" / src, dst / "src" / src)
    (dst / "include" / "edgec").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(rt / "include" / "edgec" / "edgec.h", dst / "include" / "edgec" / "edgec.h")


def format_footprint(fp: dict) -> list[str]:
    def row(label, p):
        return f"  {label:<22} {p['text']:>10,} {p['data']:>8,} {p['bss']:>8,}"
    lines = [f"footprint ({fp['tool']}, {' '.join(fp['cflags'])})",
             f"  {'':<22} {'text':>10} {'data':>8} {'bss':>8}",
             row("runtime core", fp["runtime"]),
             row(f"kernels ({fp['kernels']['count']})", fp["kernels"]),
             row("kernel glue", fp["glue"]),
             row("model blob", fp["blob"]),
             f"  arena {fp['arena_bytes']:,} B (activations {fp['arena_parts']['activations']:,}, workspace "
             f"{fp['arena_parts']['workspace']:,}, runtime bookkeeping {fp['arena_parts']['bookkeeping']:,})",
             f"  flash {fp['flash_bytes']:,} B, RAM {fp['ram_bytes']:,} B (without the application, libc, stack)"]
    return lines


# ---------------------------------------------------------------------------------------------
# the example firmware
# ---------------------------------------------------------------------------------------------

def render_input_source(arrays: list[np.ndarray]) -> str:
    """model_input.c: each input's bytes as a 64-aligned const array and the table main.c reads."""
    out = ["/* Generated by edgec.artifact.firmware: the firmware's input tensors. */",
           "#include <stdint.h>", '#include "model_input.h"', ""]
    for k, a in enumerate(arrays):
        b = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        body = ",".join(f"0x{x:02x}" for x in b) or "0"
        out.append(f"__attribute__((aligned(64))) static const uint8_t edgec_fw_input{k}[{max(len(b), 1)}] = {{{body}}};")
    out.append(f"const edgec_fw_input_t edgec_fw_inputs[{max(len(arrays), 1)}] = {{")
    for k, a in enumerate(arrays):
        out.append(f"    {{edgec_fw_input{k}, {a.nbytes}u}},")
    if not arrays:
        out.append("    {0, 0u},")
    out.append("};")
    out.append(f"const uint32_t edgec_fw_num_inputs = {len(arrays)}u;")
    return "\n".join(out) + "\n"


_LINE = re.compile(r"^edgec-fw: (\w+) ?(.*)$")


def parse_firmware_output(stdout: str) -> dict:
    """What main.c printed: {"status": name, "arena": n, "outputs": {index: (name, code, bits, bytes)}, "logs": [...]}."""
    res: dict = {"status": None, "arena": None, "outputs": {}, "logs": []}
    meta: dict[int, tuple] = {}
    data: dict[int, list[str]] = {}
    for line in stdout.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        kind, rest = m.group(1), m.group(2).split()
        if kind == "status":
            res["status"] = rest[0] if rest else None
        elif kind == "arena":
            res["arena"] = (int(rest[0]), int(rest[1]))
        elif kind == "output":
            meta[int(rest[0])] = (rest[1], int(rest[2]), int(rest[3]), int(rest[4]))
        elif kind == "data":
            data.setdefault(int(rest[0]), []).extend(rest[1:])
        elif kind == "log":
            res["logs"].append(m.group(2))
    for k, (name, code, bits, count) in meta.items():
        words = data.get(k, [])
        if len(words) != count:
            raise RuntimeFailure(8, "EDGEC_ERR_INTERNAL", f"firmware printed {len(words)} of {count} elements of "
                                                          f"output {name!r}")
        udt = np.dtype(f"<u{bits // 8}")
        res["outputs"][k] = (name, code, bits, np.array([int(w, 16) for w in words], dtype=udt))
    return res


class Firmware:
    """Builds the example firmware of one bare-metal artifact (objects that do not depend on
    the inputs are compiled once, in ``workdir``) and runs it under the target's emulator."""

    def __init__(self, artifact: Path, target, workdir: Path, example_dir: Path = EXAMPLE_DIR):
        self.artifact = Path(artifact).resolve()
        self.target = target
        self.workdir = Path(workdir)
        self.example = Path(example_dir)
        self._objects: list[Path] | None = None
        if not all((self.example / f).is_file() for f in (*FIRMWARE_SOURCES, LINKER_SCRIPT, "model_input.h")):
            raise CompileError(f"the example firmware sources ({self.example}) are not available; install edgec "
                               f"from a source checkout")
        for f in (LIB_MODEL, LIB_RUNTIME, BLOB_C, BLOB_H):
            if not (self.artifact / f).is_file():
                raise ArtifactError(f"artifact {str(self.artifact)!r} has no {f}: it is not a bare-metal artifact "
                                    f"of this edgec version (recompile it)")

    def _cflags(self) -> list[str]:
        return [*target_cflags(self.target), f"-I{self.artifact / 'include'}", f"-I{self.artifact}",
                f"-I{self.example}", f"-I{self.workdir}"]

    def _compile(self, src: Path, obj: Path) -> Path:
        _run([self.target.cc, *self._cflags(), "-Wall", "-c", str(src), "-o", str(obj)], f"compiling {src.name}")
        return obj

    def objects(self) -> list[Path]:
        if self._objects is None:
            check_tools(self.target)
            self.workdir.mkdir(parents=True, exist_ok=True)
            sources = [s for s in FIRMWARE_SOURCES if not (runs_natively(self.target) and s == "startup.c")]
            objs = [self._compile(self.example / s, self.workdir / (Path(s).stem + ".o")) for s in sources]
            objs.append(self._compile(self.artifact / BLOB_C, self.workdir / "model_blob.o"))
            self._objects = objs
        return self._objects

    def build(self, arrays: list[np.ndarray], elf: Path) -> Path:
        """Links the firmware with ``arrays`` as its inputs into ``elf``."""
        objs = self.objects()
        src = self.workdir / "model_input.c"
        src.write_text(render_input_source(arrays))
        inp = self._compile(src, self.workdir / "model_input.o")
        flags = target_cflags(self.target)
        if runs_natively(self.target):   # a program of this machine: main.c and the libraries, no startup code
            cmd = [self.target.cc, *flags, "-o", str(elf), *map(str, objs), str(inp),
                   str(self.artifact / LIB_MODEL), str(self.artifact / LIB_RUNTIME), *self.target.libs]
        else:
            cmd = [self.target.cc, *flags, "--specs=rdimon.specs", "-nostartfiles", "-T",
                   str(self.example / LINKER_SCRIPT), "-Wl,--gc-sections", "-o", str(elf), *map(str, objs), str(inp),
                   str(self.artifact / LIB_MODEL), str(self.artifact / LIB_RUNTIME), *self.target.libs]
        _run(cmd, "linking the firmware", target=self.target)
        return elf

    def emulator(self) -> list[str]:
        if runs_natively(self.target):
            return []
        emu = list(self.target.emulator)
        if not emu:
            raise TargetError(f"target {self.target.name}: no emulator configured; run the firmware on the board")
        if shutil.which(emu[0]) is None:
            raise TargetError(f"target {self.target.name}: emulator {emu[0]!r} not found; install it "
                              f"(Debian: {self.target.extra.get('install_hint')})")
        return emu

    def run(self, elf: Path, timeout: float = RUN_TIMEOUT_S) -> tuple[dict, str]:
        """Runs ``elf`` under the emulator; returns (parsed output, stdout)."""
        cmd = [*self.emulator(), str(elf)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            raise RuntimeFailure(8, "EDGEC_ERR_INTERNAL", f"{cmd[0]} did not finish within {timeout:.0f} s (a fault "
                                                          f"locks the core up); output so far:\n{out[-2000:]}") from None
        parsed = parse_firmware_output(res.stdout)
        return parsed, res.stdout


# ---------------------------------------------------------------------------------------------
# Model-like wrapper
# ---------------------------------------------------------------------------------------------

class FirmwareModel:
    """A bare-metal artifact run as the example firmware under qemu-system-arm: each ``run``
    links a firmware holding the inputs and runs it. Same ``inputs``, ``outputs``, ``run``,
    ``close`` and context-manager interface as ``edgec.runtime.Model``."""

    def __init__(self, path, threads: int | None = None, manifest: dict | None = None):
        from ..runtime.emulated import _target_of, read_manifest
        from ..runtime.model import TensorInfo, _artifact_dir
        self.path = _artifact_dir(path)
        self.manifest = manifest if manifest is not None else read_manifest(self.path)
        if self.manifest is None:
            raise ArtifactError(f"artifact {str(self.path)!r} has no manifest.json: cannot tell how to run it")
        if threads not in (None, 1):
            raise TargetError(f"a bare-metal artifact runs on one thread (threads={threads!r})")
        self.threads = 1
        self.target_name = str(self.manifest.get("target", "?"))
        tgt = None
        path = (self.manifest.get("run") or {}).get("target_path")
        if path and Path(path).is_file():   # the very file it was compiled with (a custom board file)
            from ..targets import load_target
            try:
                tgt = load_target(path)
            except TargetError:
                tgt = None
        if tgt is None:
            tgt = _target_of(self.manifest)
        if tgt is None:
            raise TargetError(f"target {self.target_name!r} of {str(self.path)!r} is unknown to this edgec: "
                              f"cannot tell how to build and emulate its firmware")
        self.target = tgt
        self.inputs = [TensorInfo(str(t["name"]), str(t["dtype"]), tuple(int(d) for d in t["shape"]))
                       for t in self.manifest["inputs"]]
        self.outputs = [TensorInfo(str(t["name"]), str(t["dtype"]), tuple(int(d) for d in t["shape"]))
                        for t in self.manifest["outputs"]]
        self._input_index = {t.name: i for i, t in enumerate(self.inputs)}
        self._tmp = tempfile.TemporaryDirectory(prefix="edgec-fw-")
        self.firmware = Firmware(self.path, tgt, Path(self._tmp.name))
        self.firmware.emulator()
        self._lock = threading.Lock()
        self._closed = False
        self.last_stdout = ""
        self.last_run: dict = {}

    def _check_feeds(self, feeds) -> list[np.ndarray]:
        from ..runtime.model import Model   # Model's checks only read .inputs and ._input_index
        return Model._check_feeds(self, feeds)

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, feeds: dict, copy: bool = True) -> dict[str, np.ndarray]:
        arrays = self._check_feeds(feeds)
        with self._lock:
            if self._closed:
                raise RuntimeFailure(5, "EDGEC_ERR_FAILED_PRECONDITION", f"model {str(self.path)!r} is closed")
            elf = self.firmware.build(arrays, Path(self._tmp.name) / "firmware.elf")
            parsed, stdout = self.firmware.run(elf)
            self.last_stdout, self.last_run = stdout, parsed
        st = parsed["status"]
        if st != "EDGEC_OK":
            from ..runtime.model import _STATUS_NAMES
            code = _STATUS_NAMES.index(st) if st in _STATUS_NAMES else 8
            logs = "; ".join(parsed["logs"])
            raise RuntimeFailure(code, st or "EDGEC_ERR_INTERNAL",
                                 f"firmware run failed with {st or 'no status line'}" + (f": {logs}" if logs else "")
                                 + ("" if st else f"\n{stdout[-2000:]}"))
        outs = {}
        for k, info in enumerate(self.outputs):
            if k not in parsed["outputs"]:
                raise RuntimeFailure(8, "EDGEC_ERR_INTERNAL", f"the firmware printed no output {info.name!r}")
            _name, _code, _bits, words = parsed["outputs"][k]
            arr = words.view(np.dtype(info.dtype).newbyteorder("<")).astype(info.dtype)
            if arr.size != int(np.prod(info.shape)):
                raise RuntimeFailure(8, "EDGEC_ERR_INTERNAL", f"output {info.name!r}: {arr.size} elements printed")
            outs[info.name] = arr.reshape(info.shape)
        return outs

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._tmp.cleanup()

    def __enter__(self) -> "FirmwareModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(map(str, self.inputs))
        outs = ", ".join(map(str, self.outputs))
        return f"<edgec FirmwareModel {str(self.path)!r}: ({ins}) -> ({outs}); target {self.target_name}>"
