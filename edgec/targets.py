"""Target descriptions: one TOML file per device family in ``targets/``.

A target names the TVM target (a dict), the C toolchain, how to run a binary there, the
default thread count and the schedule family. ``load_target("x86_64")`` finds
``targets/x86_64.toml`` (or takes a path to a .toml file). ``"host"`` picks the best x86-64
file whose required CPU flags this machine has. See docs/targets.md.
"""
from __future__ import annotations

import json
import platform
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TargetError

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"
_PACKAGED = Path(__file__).resolve().parent / "_targets"


@dataclass(frozen=True)
class Target:
    name: str
    tvm: dict[str, Any]
    description: str = ""
    hosted: bool = True
    vector_bits: int = 128
    schedule: str = "generic"
    threads: int = 1
    cc: str = "gcc"
    cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    libs: tuple[str, ...] = ()
    emulator: tuple[str, ...] = ()
    requires_cpu_flags: tuple[str, ...] = ()
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def tvm_target(self):
        import tvm
        return tvm.target.Target(dict(self.tvm))

    def cache_key(self) -> str:
        return json.dumps({"tvm": self.tvm, "schedule": self.schedule, "vector_bits": self.vector_bits}, sort_keys=True)

    def check_toolchain(self) -> None:
        if shutil.which(self.cc) is None:
            raise TargetError(f"target {self.name}: C compiler {self.cc!r} not found; install it "
                              f"(Debian: {self.extra.get('install_hint') or 'apt-get install ' + self.cc})")

    def host_can_run(self) -> bool:
        if self.emulator:
            return shutil.which(self.emulator[0]) is not None
        return not missing_cpu_flags(self.requires_cpu_flags)

    @property
    def arch(self) -> str:
        """The CPU family of the TVM triple: ``x86_64``, ``aarch64``, ``arm``, ``riscv64``, ..."""
        return triple_arch(str(self.tvm.get("mtriple", "")))

    def is_foreign(self) -> bool:
        """True when this machine cannot run the target's code natively (another CPU family):
        a hosted foreign artifact carries a runner program to run under the emulator."""
        return self.arch != host_arch()

    def check_emulator(self) -> None:
        """TargetError naming the packages to install when the emulator is missing."""
        if not self.emulator:
            raise TargetError(f"target {self.name}: no emulator configured ([run] emulator in {self.path or 'its file'}); "
                              f"run the artifact on the device")
        if shutil.which(self.emulator[0]) is None:
            raise TargetError(f"target {self.name}: emulator {self.emulator[0]!r} not found; install it "
                              f"(Debian: {self.extra.get('install_hint') or 'apt-get install qemu-user'})")


def _dirs() -> list[Path]:
    return [d for d in (TARGETS_DIR, _PACKAGED) if d.is_dir()]


def available_targets() -> list[str]:
    names = set()
    for d in _dirs():
        names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def host_cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def missing_cpu_flags(required) -> list[str]:
    """The flags of ``required`` (/proc/cpuinfo names) this CPU does not list (all of them when
    its flags cannot be read)."""
    flags = host_cpu_flags()
    return [str(f) for f in required if str(f) not in flags]


def triple_arch(triple: str) -> str:
    """Normalized CPU family of an LLVM triple or of ``platform.machine()``."""
    a = triple.split("-", 1)[0].lower()
    if a in ("x86_64", "amd64", "x64"):
        return "x86_64"
    if a in ("aarch64", "arm64", "aarch64_be"):
        return "aarch64"
    if a.startswith(("arm", "thumb")):
        return "arm"
    if a in ("i386", "i486", "i586", "i686", "x86"):
        return "x86"
    return a


def host_arch() -> str:
    return triple_arch(platform.machine())


def host_target_name() -> str:
    if platform.machine() in ("x86_64", "AMD64"):
        # the x86_64 target's own requires_cpu_flags decide (AVX-512 with VNNI and VBMI): one list
        if load_target("x86_64").host_can_run():
            return "x86_64"
        return "x86_64-avx2"
    if platform.machine() in ("aarch64", "arm64"):
        return "aarch64"
    raise TargetError(f"no host target for machine {platform.machine()!r}; give --target")


def load_target(name_or_path: str | Path | Target = "host") -> Target:
    if isinstance(name_or_path, Target):
        return name_or_path
    s = str(name_or_path)
    if s == "host":
        s = host_target_name()
    p = Path(s)
    if not (p.suffix == ".toml" and p.is_file()):
        p = None
        for d in _dirs():
            cand = d / f"{s}.toml"
            if cand.is_file():
                p = cand
                break
        if p is None:
            raise TargetError(f"unknown target {s!r}; available: {', '.join(available_targets())} "
                              f"(or a path to a target .toml file)")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{p}: invalid TOML: {e}") from None
    try:
        tc = data.get("toolchain", {})
        run = data.get("run", {})
        known = {"name", "description", "hosted", "vector_bits", "schedule", "threads", "tvm", "toolchain", "run"}
        return Target(
            name=data.get("name", p.stem), tvm=dict(data["tvm"]), description=data.get("description", ""),
            hosted=bool(data.get("hosted", True)), vector_bits=int(data.get("vector_bits", 128)),
            schedule=str(data.get("schedule", "generic")), threads=int(data.get("threads", 1)),
            cc=tc.get("cc", "gcc"), cflags=tuple(tc.get("cflags", ())), ldflags=tuple(tc.get("ldflags", ())),
            libs=tuple(tc.get("libs", ())), emulator=tuple(run.get("emulator", ())),
            requires_cpu_flags=tuple(run.get("requires_cpu_flags", ())), path=str(p),
            extra={k: v for k, v in data.items() if k not in known} | {"install_hint": tc.get("install_hint", f"apt-get install {tc.get('cc', 'gcc')}"),
                                                                       "toolchain": dict(tc)},
        )
    except KeyError as e:
        raise TargetError(f"{p}: missing field {e}") from None
