"""The cffi binding: declarations come from edgec.h; the Python blob reader and the C
loader accept and reject exactly the same blobs."""
from __future__ import annotations

import re
import struct
import zlib

import pytest

from edgec.artifact.blob import read_blob, write_blob
from edgec.errors import ArtifactError
from edgec.runtime import _build
from edgec.runtime._lib import ffi_lib

from runtime_helpers import ROOT, addadd_model

HEADER = ROOT / "runtime_c" / "include" / "edgec" / "edgec.h"


def test_every_header_function_is_bound():
    ffi, lib = ffi_lib()
    text = HEADER.read_text()
    glue = text[text.index("EDGEC_GLUE_DECLS_BEGIN"):text.index("EDGEC_GLUE_DECLS_END")]
    declared = set(re.findall(r"\b(edgec_[a-z0-9_]+)\s*\(", text)) - set(re.findall(r"\b(edgec_[a-z0-9_]+)\s*\(", glue))
    declared = {n for n in declared if not n.endswith("_t")}
    assert len(declared) > 30
    missing = [n for n in sorted(declared) if not hasattr(lib, n)]
    assert not missing
    assert not hasattr(lib, "edgec_kernels_bind")  # defined by kernels.so, not the runtime
    assert lib.EDGEC_KERNEL_ABI_VERSION == 1 and lib.EDGEC_MAX_NDIM == 8
    assert ffi.sizeof("edgec_kernel_table_t") == 16 and ffi.sizeof("edgec_backend_hooks_t") == 48


def test_cdef_strips_preprocessor_and_cplusplus():
    cdef = _build.header_cdef(HEADER.read_text())
    code = re.sub(r"/\*.*?\*/", "", cdef, flags=re.S)
    assert not [line for line in code.splitlines() if line.strip().startswith("#")]
    assert 'extern "C"' not in code and "edgec_kernels_bind" not in code


def test_status_strings():
    ffi, lib = ffi_lib()
    names = [ffi.string(lib.edgec_status_str(i)).decode() for i in range(9)]
    assert names[0] == "EDGEC_OK" and names[6] == "EDGEC_ERR_KERNEL" and names[8] == "EDGEC_ERR_INTERNAL"


def _c_accepts(ffi, lib, data: bytes, names) -> bool:
    raw = ffi.new("uint8_t[]", len(data) + 64)
    addr = int(ffi.cast("uintptr_t", raw))
    blob = raw + (-addr % 64)
    ffi.memmove(blob, data, len(data))
    entries = ffi.new("edgec_kernel_entry_t[]", len(names))
    keep = [ffi.new("char[]", n if isinstance(n, bytes) else n.encode()) for n in names]
    for i, n in enumerate(keep):
        entries[i].name = n
        entries[i].fn = ffi.cast("edgec_kernel_fn_t", 0x1000)  # resolved, never called
    table = ffi.new("edgec_kernel_table_t*", {"entries": entries, "count": len(names), "abi_version": 1})
    model = ffi.new("edgec_model_t*")
    status = lib.edgec_model_init(model, blob, len(data), table)
    assert status in (0, 2), status
    return status == 0


def _raw_kernel_names(data: bytes) -> list[bytes]:
    n_kernels = struct.unpack_from("<I", data, 60)[0]
    kernels_off, strings_off = struct.unpack_from("<Q", data, 104)[0], struct.unpack_from("<Q", data, 128)[0]
    names = []
    for i in range(n_kernels):
        start = strings_off + struct.unpack_from("<I", data, kernels_off + 8 * i)[0]
        names.append(data[start:data.index(b"\0", start)])
    return names


def _py_accepts(data: bytes) -> bool:
    try:
        read_blob(data)
        return True
    except ArtifactError:
        return False


def test_python_reader_agrees_with_c_loader():
    """Every byte of a valid blob set to several values, checksum recomputed: the C loader
    and read_blob must agree on each mutant."""
    ffi, lib = ffi_lib()
    model = addadd_model()
    data = write_blob(model)
    assert _c_accepts(ffi, lib, data, model.kernels) and _py_accepts(data)
    disagreements, accepted = [], 0
    for i in range(16, len(data)):
        for value in {0x00, 0xFF, data[i] ^ 0x01, data[i] ^ 0x80} - {data[i]}:
            b = bytearray(data)
            b[i] = value
            struct.pack_into("<I", b, 8, zlib.crc32(bytes(b[16:])))
            py_ok = _py_accepts(bytes(b))
            # kernel names are resolved by C only: give it the names the mutant now carries
            names = _raw_kernel_names(bytes(b)) if py_ok else model.kernels
            c_ok = _c_accepts(ffi, lib, bytes(b), names)
            accepted += c_ok
            if c_ok != py_ok:
                disagreements.append((i, value, c_ok, py_ok))
    assert not disagreements[:10]
    assert accepted > 0


@pytest.mark.parametrize("size", [0, 100, 159])
def test_c_rejects_short_blobs(size):
    ffi, lib = ffi_lib()
    assert not _c_accepts(ffi, lib, write_blob(addadd_model())[:size], ["add_f32"])
