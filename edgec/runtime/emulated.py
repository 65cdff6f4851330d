"""Run a foreign-target artifact here, under the target's emulator (qemu user mode).

    m = edgec.runtime.load("out/", emulate=True)     # an aarch64 or armv7 artifact on x86-64
    y = m.run({"x": x})["y"]                         # same interface as edgec.runtime.Model

An artifact compiled for another CPU family carries its runner program (``bin/run_model``,
see edgec.artifact.runner). ``EmulatedModel.run`` writes the inputs as .npy files into a
temporary folder, runs ``<emulator> bin/run_model <artifact> in0.npy ... -o <tmp>`` in a
subprocess and reads back one .npy per output. Each run starts the emulator afresh, so this
is for checking results, not for timing: qemu says nothing about a real core's speed.

``load`` picks the runtime: the in-process C runtime (``Model``) for artifacts this machine
runs natively, ``EmulatedModel`` for foreign ones when ``emulate=True``, and an
ArtifactError telling what to do otherwise.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import ArtifactError, RuntimeFailure, TargetError
from .model import _ARTIFACT_STATUSES, _STATUS_NAMES, MAX_THREADS, Model, RuntimeOptionError, TensorInfo, _artifact_dir


def read_manifest(path: Path) -> dict | None:
    """manifest.json of an artifact folder, None when it has none."""
    f = Path(path) / "manifest.json"
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{f}: unreadable manifest: {e}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{f}: malformed manifest (not a JSON object)")
    return data


def _target_of(manifest: dict):
    """The Target named by a manifest, or None when this installation does not know it."""
    from ..targets import load_target
    try:
        return load_target(manifest.get("target", ""))
    except Exception:  # noqa: BLE001  (an unknown or broken target file: use the manifest alone)
        return None


def artifact_arch(manifest: dict | None) -> str | None:
    """CPU family an artifact was built for (None: unknown, e.g. no manifest)."""
    if manifest is None:
        return None
    if manifest.get("arch"):
        return str(manifest["arch"])
    tgt = _target_of(manifest)
    return tgt.arch if tgt is not None else None


def _check_cpu_flags(p: Path, manifest: dict | None) -> None:
    """An ArtifactError, not an illegal instruction in the first kernel, when the artifact's target
    needs CPU features (its manifest's ``requires_cpu_flags``, /proc/cpuinfo names) this CPU lacks.
    Unchecked where the CPU's flags cannot be read."""
    from ..targets import host_cpu_flags, missing_cpu_flags
    need = (manifest or {}).get("requires_cpu_flags") or []
    if not isinstance(need, list) or not need or not host_cpu_flags():
        return
    missing = missing_cpu_flags(need)
    if missing:
        raise ArtifactError(f"artifact {str(p)!r} is built for target {manifest.get('target', '?')!r}, which needs "
                            f"the CPU features {', '.join(missing)} that this CPU lacks; recompile it for this "
                            f"machine (--target host) or run it on a CPU that has them")


def load(path, threads: int | None = None, emulate: bool = False):
    """A Model for a native artifact; for a foreign one an EmulatedModel (``emulate=True``)
    or an ArtifactError saying to run it on the device or to emulate it."""
    from ..targets import host_arch
    p = _artifact_dir(path)
    manifest = read_manifest(p)
    arch = artifact_arch(manifest)
    hosted = manifest.get("hosted") if manifest else None
    if hosted is not False and (arch is None or arch == host_arch()):
        _check_cpu_flags(p, manifest)
        return Model(p, threads)
    name = str(manifest.get("target") or arch)
    if manifest.get("hosted") is False:   # bare metal: the example firmware under qemu-system-arm
        if not emulate:
            raise ArtifactError(f"artifact {str(p)!r} is a bare-metal {name} artifact: link it into firmware "
                                f"(examples/cortex_m/) or pass --emulate / emulate=True to run it under qemu")
        from ..artifact.firmware import FirmwareModel
        return FirmwareModel(p, threads, manifest)
    if not emulate:
        what = name if name == arch else f"{name} ({arch})"
        raise ArtifactError(f"artifact {str(p)!r} is built for {what}, this machine is {host_arch()}; "
                            f"run it on the device or pass --emulate / emulate=True")
    return EmulatedModel(p, threads, manifest)


_SAFE_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def output_file_name(name: str) -> str:
    """The file name run_model.c gives output ``name``: per byte of the UTF-8 name (at most
    255), bytes outside [A-Za-z0-9._-] become '_'; "." and ".." start with '_' instead."""
    safe = "".join(chr(b) if b in _SAFE_BYTES else "_" for b in name.encode("utf-8")[:255])
    if safe in ("", ".", ".."):
        safe = "_" + safe[1:]
    return safe + ".npy"


def _status_of(text: str) -> tuple[int, str]:
    names = re.findall(r"EDGEC_ERR_[A-Z_]+", text)
    if names and names[-1] in _STATUS_NAMES:
        return _STATUS_NAMES.index(names[-1]), names[-1]
    return 8, "EDGEC_ERR_INTERNAL"


class EmulatedModel:
    """A foreign-target artifact run by its runner program under the target's emulator.
    Same ``inputs``, ``outputs``, ``run``, ``close`` and context-manager interface as Model."""

    def __init__(self, path, threads: int | None = None, manifest: dict | None = None):
        if threads is None:
            threads = 1
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
            raise RuntimeOptionError(f"threads must be an integer in [1, {MAX_THREADS}], got {threads!r}")
        self.path = _artifact_dir(path)
        self.threads = int(threads)
        self.manifest = manifest if manifest is not None else read_manifest(self.path)
        if self.manifest is None:
            raise ArtifactError(f"artifact {str(self.path)!r} has no manifest.json: cannot tell how to run it")
        self.target = str(self.manifest.get("target", "?"))
        rel = (self.manifest.get("files") or {}).get("runner")
        if not rel or not (self.path / rel).is_file():
            raise ArtifactError(f"artifact {str(self.path)!r} (target {self.target}) has no runner program "
                                f"(bin/run_model); recompile it with this version of edgec")
        self.runner = (self.path / rel).resolve()
        run = self.manifest.get("run") or {}
        emulator = list(run.get("emulator") or [])
        hint = run.get("install_hint") or ""
        if not emulator:
            tgt = _target_of(self.manifest)
            if tgt is not None:
                emulator, hint = list(tgt.emulator), tgt.extra.get("install_hint", "")
        if not emulator:
            raise TargetError(f"target {self.target}: no emulator is known for it; run the artifact on the device")
        if shutil.which(emulator[0]) is None:
            raise TargetError(f"target {self.target}: emulator {emulator[0]!r} not found; install it "
                              f"(Debian: {hint or 'apt-get install qemu-user'})")
        self.emulator = emulator
        try:
            self.inputs = [TensorInfo(str(t["name"]), str(t["dtype"]), tuple(int(d) for d in t["shape"]))
                           for t in self.manifest["inputs"]]
            self.outputs = [TensorInfo(str(t["name"]), str(t["dtype"]), tuple(int(d) for d in t["shape"]))
                            for t in self.manifest["outputs"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{self.path / 'manifest.json'}: malformed inputs/outputs ({e})") from None
        self._input_index = {t.name: i for i, t in enumerate(self.inputs)}
        self._lock = threading.Lock()
        self._closed = False
        self.last_stdout = ""

    # Model's input checks only read .inputs and ._input_index: share them.
    _check_feeds = Model._check_feeds

    @property
    def closed(self) -> bool:
        return self._closed

    def command(self, input_files: list[str], outdir: str) -> list[str]:
        """The command line of one run."""
        return [*self.emulator, str(self.runner), str(self.path.resolve()), *input_files, "-o", outdir,
                "--threads", str(self.threads)]

    def run(self, feeds: dict, copy: bool = True) -> dict[str, np.ndarray]:
        """Runs the model under the emulator; returns name -> fresh array for every output.
        ``copy`` is accepted for compatibility with Model.run (results are always fresh)."""
        arrays = self._check_feeds(feeds)
        with self._lock:
            if self._closed:
                raise RuntimeFailure(5, "EDGEC_ERR_FAILED_PRECONDITION", f"model {str(self.path)!r} is closed")
            with tempfile.TemporaryDirectory(prefix="edgec-emu-") as tmp:
                files = []
                for k, arr in enumerate(arrays):
                    f = os.path.join(tmp, f"in{k}.npy")
                    np.save(f, np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False))
                    files.append(f)
                outdir = os.path.join(tmp, "out")
                cmd = self.command(files, outdir)
                try:
                    res = subprocess.run(cmd, capture_output=True, text=True)
                except OSError as e:
                    raise TargetError(f"target {self.target}: cannot start {self.emulator[0]!r}: {e}") from None
                self.last_stdout = res.stdout
                if res.returncode != 0:
                    detail = res.stderr.strip()[-2000:] or f"exit status {res.returncode}"
                    status, name = _status_of(res.stderr)
                    if "cannot load" in res.stderr and status in _ARTIFACT_STATUSES:
                        raise ArtifactError(f"cannot load artifact {str(self.path)!r} under {self.emulator[0]}: {detail}")
                    raise RuntimeFailure(status, name, f"{self.emulator[0]} run of {self.runner.name} failed "
                                                       f"(exit status {res.returncode}): {detail}")
                outs = {}
                for info in self.outputs:
                    f = os.path.join(outdir, output_file_name(info.name))
                    try:
                        arr = np.load(f, allow_pickle=False)
                    except (OSError, ValueError) as e:
                        raise RuntimeFailure(8, "EDGEC_ERR_INTERNAL",
                                             f"the runner wrote no readable output {info.name!r}: {e}") from None
                    if arr.dtype != np.dtype(info.dtype) or arr.shape != info.shape:
                        raise RuntimeFailure(8, "EDGEC_ERR_INTERNAL",
                                             f"output {info.name!r}: the runner wrote {arr.dtype}{list(arr.shape)}, "
                                             f"expected {info.dtype}{list(info.shape)}")
                    outs[info.name] = arr
        return outs

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> "EmulatedModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(map(str, self.inputs))
        outs = ", ".join(map(str, self.outputs))
        state = "closed" if self._closed else f"target {self.target} under {self.emulator[0]}, threads {self.threads}"
        return f"<edgec EmulatedModel {str(self.path)!r}: ({ins}) -> ({outs}); {state}>"
