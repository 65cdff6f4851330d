"""Build the artifact's runner program: ``bin/run_model`` for a hosted target.

    exe = build_runner(load_target("aarch64"), Path("out/bin/run_model"))
    # qemu-aarch64 -L /usr/aarch64-linux-gnu out/bin/run_model out/ x.npy -o results/

The runner is runtime_c/examples/run_model.c linked with the whole C runtime (core +
hosted layer: runtime_c/src/*.c) by the target's C compiler (``target.cc`` and
``target.cflags``, plus ``-ldl -lpthread`` and ``target.libs``). It is an ordinary
dynamically linked program of the target: it loads ``model.edgec`` and dlopens
``kernels.so`` from the artifact folder given on its command line, reads its inputs from
.npy files and writes one .npy per output (see run_model.c). A foreign-target artifact
carries it so that the artifact can be run on the device without anything else, and here
under the target's emulator (``edgec run --emulate``, ``edgec.runtime.load(..., emulate=True)``).

Built runners are cached (``<cache>/runners/<key>/run_model``): the key hashes the C sources,
the compiler (name and ``--version``) and the flags, so any change rebuilds.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import CompileError, TargetError

RUNNER_PATH = "bin/run_model"
_LIBS = ("-ldl", "-lpthread")


_SYSROOT_SIGNS = ("No such file or directory", "no include path in which to search", "cannot find -l",
                  "cannot find crt", "cannot read spec file", "cannot find Scrt1.o", "cannot find crt1.o")


def sysroot_hint(target, stderr: str) -> str:
    """When a compiler failed because the target's C library or headers are missing (the
    compiler is there, its libc6-dev-*-cross / libnewlib package is not), the sentence saying
    what to install; '' otherwise."""
    if not any(sign in stderr for sign in _SYSROOT_SIGNS):
        return ""
    hint = target.extra.get("install_hint") or f"apt-get install {target.cc}"
    return (f"\n{target.cc} is installed but cannot find the target's C library or headers: install the "
            f"target's libc development files (Debian: {hint})")


def runtime_dir() -> Path:
    """runtime_c/ of this checkout (or of an sdist); CompileError if it is not there."""
    from ..runtime import _build
    if not _build.have_sources():
        raise CompileError(f"the C runtime sources ({_build.RUNTIME}) are not available, so no runner can be "
                           f"built for a foreign target; install edgec from a source checkout")
    return _build.RUNTIME


def runner_sources() -> list[Path]:
    rt = runtime_dir()
    return sorted((rt / "src").glob("*.c")) + [rt / "examples" / "run_model.c"]


def runner_command(target, out: Path) -> list[str]:
    """The compiler command line that builds the runner into ``out``."""
    rt = runtime_dir()
    flags = [f for f in target.cflags if f not in ("-shared",)]
    return [target.cc, *flags, "-std=c99", f"-I{rt / 'include'}", "-o", str(out),
            *[str(p) for p in runner_sources()], *_LIBS, *target.libs]


def _cc_version(cc: str) -> str:
    try:
        res = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return res.stdout.splitlines()[0] if res.stdout else ""


def runner_key(target) -> str:
    from ..runtime import _build
    h = hashlib.sha256()
    h.update(_build.source_hash().encode())
    h.update((runtime_dir() / "examples" / "run_model.c").read_bytes())
    h.update("\0".join([target.cc, _cc_version(target.cc), *target.cflags, *_LIBS, *target.libs]).encode())
    return h.hexdigest()[:40]


def build_runner(target, out: Path, cache_dir: str | os.PathLike | None = None) -> Path:
    """Build (or copy from the cache) the runner of ``target`` into ``out``; returns ``out``.

    TargetError if the target's compiler is missing, CompileError if the build fails."""
    if shutil.which(target.cc) is None:
        target.check_toolchain()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cached = None
    if cache_dir is not None:
        cached = Path(cache_dir) / "runners" / runner_key(target) / "run_model"
        if cached.is_file():
            shutil.copy2(cached, out)
            return out
    tmp = out.with_name(out.name + ".tmp")
    cmd = runner_command(target, tmp)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise TargetError(f"target {target.name}: C compiler {target.cc!r} not found; install it "
                          f"(Debian: {target.extra.get('install_hint')})") from None
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise CompileError(f"building the runner for {target.name} failed ({target.cc} ...):\n"
                           f"{res.stderr.strip()[:2000]}{sysroot_hint(target, res.stderr)}")
    tmp.chmod(0o755)
    tmp.replace(out)
    if cached is not None:
        try:   # a cache that cannot be written is not an error
            cached.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".tmp-", dir=str(cached.parent))
            os.close(fd)
            shutil.copy2(out, name)
            os.replace(name, cached)
        except OSError:
            pass
    return out
