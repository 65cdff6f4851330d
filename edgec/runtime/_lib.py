"""Finds the compiled C runtime (``edgec.runtime._edgec_c``) and returns its ``ffi, lib``.

An installed package uses the extension built by ``pip install``. In a source checkout the
extension's embedded source hash is compared with the C sources: if the sources changed
since it was built (or it was never built), the extension is compiled once into a cache
folder (``$EDGEC_RUNTIME_BUILD_DIR``, default ``~/.cache/edgec/runtime``) keyed by that hash,
and loaded from there.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from ..errors import EdgecError

_lock = threading.Lock()
_loaded = None


def _cache_dir() -> Path:
    root = os.environ.get("EDGEC_RUNTIME_BUILD_DIR")
    return Path(root) if root else Path.home() / ".cache" / "edgec" / "runtime"


def _import_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules[name] = mod
    return mod


def _build_cached(digest: str):
    from . import _build
    name = f"_edgec_c_{digest[:16]}"
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for found in cache.glob(f"{name}.*.so"):
        return _import_path(name, found)
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=cache))
    try:
        so = Path(_build.make_ffibuilder(name, absolute=True).compile(tmpdir=str(tmp)))
        target = cache / so.name
        os.replace(so, target)           # atomic: concurrent builders all end with one file
    except Exception as e:              # a compiler problem: say what and where
        raise EdgecError(f"cannot build the edgec C runtime extension in {tmp}: {e}") from e
    shutil.rmtree(tmp, ignore_errors=True)
    return _import_path(name, target)


def _find():
    try:
        from . import _edgec_c as built
    except ImportError:
        built = None
    from . import _build
    if _build.have_sources():
        digest = _build.source_hash()
        if built is not None and built.ffi.string(built.lib.edgec_py_source_hash()).decode() == digest:
            return built
        return _build_cached(digest)
    if built is None:
        raise EdgecError("the edgec C runtime extension (edgec.runtime._edgec_c) is not built and the C "
                         "sources are not available; reinstall edgec with `pip install .`")
    return built


def ffi_lib():
    """(ffi, lib) of the C runtime, loading it on first use; registers the log callback."""
    global _loaded
    with _lock:
        if _loaded is None:
            mod = _find()
            ffi, lib = mod.ffi, mod.lib

            @ffi.def_extern(name="_edgec_py_log")
            def _log(user, status, message):
                sink = ffi.from_handle(user)
                sink.append((int(status), ffi.string(message).decode("utf-8", "replace")))

            _loaded = (ffi, lib)
        return _loaded
