"""On-disk cache of compiled kernel objects.

    cache = KernelCache()                       # $EDGEC_CACHE_DIR or ~/.cache/edgec/kernels
    hit = cache.get(spec_key)                   # CachedKernel(object=Path, meta=dict) or None
    cache.put(spec_key, "/tmp/k.o", {"code_bytes": 4710, "workspace_bytes": 0})

An entry is ``<key>.o`` plus ``<key>.json`` (metadata) where ``key`` hashes the kernel
spec's own key (op, attrs, types, target), the TVM version and ``BACKEND_VERSION`` (bump
it whenever kernel generation changes, so stale objects are never reused). Writes go to
a temporary file in the same folder that is then renamed into place, object first and
metadata last; an entry counts only when its metadata exists and names the object's
size, so concurrent writers (pytest-xdist workers, parallel compiles) and interrupted
writes never expose a partial object. Two writers of one key write identical content;
the last rename wins.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Bump when the kernel generators or the build step change what an object contains.
BACKEND_VERSION = "29"


def default_cache_dir() -> Path:
    env = os.environ.get("EDGEC_CACHE_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "edgec" / "kernels"


def _tvm_version() -> str:
    try:
        import tvm
        return str(tvm.__version__)
    except Exception:  # noqa: BLE001  (no TVM: nothing can be compiled, the key just differs)
        return "none"


@dataclass(frozen=True)
class CachedKernel:
    object: Path
    meta: dict[str, Any]


class KernelCache:
    """Compiled kernel objects keyed by kernel spec key + TVM version + backend version."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.dir = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self._tvm = _tvm_version()

    def entry_key(self, spec_key: str) -> str:
        h = hashlib.sha256(f"{spec_key}|tvm={self._tvm}|backend={BACKEND_VERSION}".encode())
        return h.hexdigest()[:40]

    def _paths(self, spec_key: str) -> tuple[Path, Path]:
        k = self.entry_key(spec_key)
        sub = self.dir / k[:2]
        return sub / f"{k}.o", sub / f"{k}.json"

    def get(self, spec_key: str) -> CachedKernel | None:
        obj, meta_path = self._paths(spec_key)
        try:
            meta = json.loads(meta_path.read_text())
            size = obj.stat().st_size
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("object_size") != size or meta.get("spec_key") != spec_key:
            return None
        return CachedKernel(obj, meta)

    def put(self, spec_key: str, object_path: str | os.PathLike, meta: dict[str, Any]) -> CachedKernel | None:
        """Store a copy of ``object_path`` with ``meta``. A cache that cannot be written (read-only
        folder, full disk) is not an error: the build goes on without it and this returns None."""
        obj, meta_path = self._paths(spec_key)
        try:
            data = Path(object_path).read_bytes()
            obj.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(obj, data)
            full = dict(meta, spec_key=spec_key, object_size=len(data), tvm=self._tvm, backend=BACKEND_VERSION)
            _atomic_write(meta_path, json.dumps(full, sort_keys=True).encode())
        except OSError:
            return None
        return CachedKernel(obj, full)

    def clear(self) -> int:
        """Remove every entry; returns the number of files removed."""
        n = 0
        if not self.dir.is_dir():
            return 0
        for p in self.dir.glob("*/*"):
            if p.suffix in (".o", ".json") or p.name.startswith(".tmp"):
                try:
                    p.unlink()
                    n += 1
                except OSError:
                    pass
        return n


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
