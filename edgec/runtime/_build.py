"""cffi builder of ``edgec.runtime._edgec_c``: the C runtime (core + hosted) as an extension.

Used by setup.py (``cffi_modules=["edgec/runtime/_build.py:ffibuilder"]``) and, in a
source checkout, by ``edgec.runtime._lib`` to rebuild the extension when the C sources
changed since it was built. The declarations come from ``runtime_c/include/edgec/edgec.h``
itself (one source of truth): preprocessor lines, ``#ifdef __cplusplus`` blocks and the
kernel-glue declarations (defined by a model's kernels.so, not by the runtime) are removed.

This file is also executed standalone by cffi's setuptools hook: it imports nothing from
edgec.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import cffi

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime_c"
HEADER = RUNTIME / "include" / "edgec" / "edgec.h"
MODULE = "edgec.runtime._edgec_c"

# What Python adds to the header's declarations: the log callback and the build's hash.
_PY_CDEF = """
extern "Python" void _edgec_py_log(void* user, edgec_status_t status, const char* message);
const char* edgec_py_source_hash(void);
"""


def have_sources() -> bool:
    """True in a source checkout (the C runtime sources sit next to the package)."""
    return HEADER.is_file() and (RUNTIME / "src").is_dir()


def runtime_sources() -> list[Path]:
    return sorted((RUNTIME / "src").glob("*.c"))


def source_hash() -> str:
    """SHA-256 over the header, the runtime sources and this file."""
    h = hashlib.sha256()
    files = [HEADER, Path(__file__).resolve()] + sorted((RUNTIME / "src").glob("*.[ch]"))
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def header_cdef(text: str) -> str:
    """The header's declarations as cffi can parse them."""
    out: list[str] = []
    skip: list[bool] = []        # one entry per open #if: True inside #ifdef __cplusplus
    in_glue = False
    lines = iter(text.splitlines())
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            directive = stripped[1:].strip()
            if directive.startswith("if"):
                skip.append("__cplusplus" in directive)
            elif directive.startswith("endif") and skip:
                skip.pop()
            while line.rstrip().endswith("\\"):
                line = next(lines, "")
            continue
        if any(skip):
            continue
        if "EDGEC_GLUE_DECLS_BEGIN" in line:
            in_glue = True
            continue
        if "EDGEC_GLUE_DECLS_END" in line:
            in_glue = False
            continue
        if not in_glue:
            out.append(line)
    return "\n".join(out) + "\n"


def _source_path(p: Path, absolute: bool) -> str:
    """Relative to the current directory when setuptools builds from the project root (it
    wants relative source paths); absolute for ffi.compile(), which changes directory."""
    if not absolute:
        try:
            return str(p.relative_to(Path.cwd()))
        except ValueError:
            pass
    return str(p)


def make_ffibuilder(module_name: str = MODULE, absolute: bool = False) -> cffi.FFI:
    if not have_sources():
        raise RuntimeError(f"edgec C runtime sources not found under {RUNTIME}")
    ffi = cffi.FFI()
    ffi.cdef(header_cdef(HEADER.read_text()) + _PY_CDEF)
    digest = source_hash()
    ffi.set_source(
        module_name,
        '#include "edgec/edgec.h"\n'
        f'static const char* edgec_py_source_hash(void) {{ return "{digest}"; }}\n',
        sources=[_source_path(p, absolute) for p in runtime_sources()],
        include_dirs=[_source_path(RUNTIME / "include", absolute)],
        libraries=["dl", "pthread"],
        extra_compile_args=["-O2", "-std=gnu99", "-fvisibility=hidden"],
    )
    return ffi


# setuptools' cffi hook runs this file as "__cffi__": always build there (a clear error if
# the sources are missing, e.g. an sdist without runtime_c/); on import, only in a checkout.
ffibuilder = make_ffibuilder() if (__name__ == "__cffi__" or have_sources()) else None

