"""The model blob, version 1.0 (docs/artifact.md): writer and validating reader.

    model = BlobModel(
        tensors=[BlobTensor("x", "float32", (1, 4), "arena", is_input=True, offset=0),
                 BlobTensor("w", "float32", (1, 4), "const", data=w.tobytes()),
                 BlobTensor("y", "float32", (1, 4), "arena", is_output=True, offset=64)],
        ops=[BlobOp(kernel=0, args=[0, 1, 2], name="add0")],
        kernels=["add_f32"], inputs=[0], outputs=[2], arena_size=128, workspace_size=0)
    data = write_blob(model)          # bytes, checksummed
    again = read_blob(data)           # validates like the C loader; raises ArtifactError

Activation offsets (storage "arena") come from the memory planner; the writer places the
constants itself, each 64-byte aligned, in tensor order, and ignores their given offsets.
``read_blob`` checks exactly what ``edgec_model_init`` checks (except kernel resolution,
which needs the kernel library); ``write_blob`` checks the same before writing, plus that
kernel names are unique and that the is_input/is_output flags match the I/O lists.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import ArtifactError
from ..ir.dtypes import DLPACK

MAGIC = b"EDGECMDL"
VERSION_MAJOR = 1
VERSION_MINOR = 0
HEADER_SIZE = 160
TENSOR_ENTRY = 48
OP_ENTRY = 24
KERNEL_ENTRY = 8
ALIGN = 64
MAX_NDIM = 8
MAX_OP_ARGS = 32
NO_QPARAMS = 0xFFFFFFFF
FLAG_INPUT = 1
FLAG_OUTPUT = 2
_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1

_STORAGE_CODES = {"arena": 0, "const": 1}
_STORAGE_NAMES = {v: k for k, v in _STORAGE_CODES.items()}
_DTYPE_NAMES = {v: k for k, v in DLPACK.items()}

# header: magic, crc, reserved, major, minor, header_size, total, arena, workspace,
# 8 x u32 counts/flags, 10 x u64 section offsets/sizes
_HEADER = struct.Struct("<8sII HHI QQQ IIIIIIII QQQQQQQQQQ")
_TENSOR = struct.Struct("<IBBBBIIQQIIQ")
_OP = struct.Struct("<IIIIII")
_KERNEL = struct.Struct("<II")
assert _HEADER.size == HEADER_SIZE and _TENSOR.size == TENSOR_ENTRY and _OP.size == OP_ENTRY


@dataclass
class BlobTensor:
    """One tensor: an activation in the arena (input, output or intermediate) or a constant."""
    name: str
    dtype: str                      # numpy dtype name: "float32", "int8", "bool", ...
    shape: tuple[int, ...]
    storage: str = "arena"          # "arena" | "const"
    is_input: bool = False
    is_output: bool = False
    offset: int = 0                 # arena offset (64-aligned); for constants, set by write_blob
    nbytes: int | None = None       # computed from dtype and shape when None
    data: bytes | None = None       # constants: exactly nbytes bytes (a numpy array is converted)

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)
        if isinstance(self.data, np.ndarray):
            self.data = np.ascontiguousarray(self.data).tobytes()
        elif self.data is not None and not isinstance(self.data, bytes):
            self.data = bytes(self.data)
        if self.nbytes is None and self.dtype in DLPACK:
            self.nbytes = _element_count(self.shape) * DLPACK[self.dtype][1] // 8


@dataclass
class BlobOp:
    """One kernel call: kernel index, argument tensor indices (inputs then outputs), IR node name."""
    kernel: int
    args: list[int]
    name: str

    def __post_init__(self):
        self.args = [int(a) for a in self.args]


@dataclass
class BlobModel:
    tensors: list[BlobTensor]
    ops: list[BlobOp]
    kernels: list[str]              # kernel names: symbol __tvm_ffi_<name>
    inputs: list[int]               # tensor indices
    outputs: list[int]
    arena_size: int                 # bytes of planned activations
    workspace_size: int = 0         # bytes of kernel workspace per thread (64-byte rounded allocations)


def _element_count(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _align(v: int, a: int = ALIGN) -> int:
    return (v + a - 1) // a * a


def _fail(what: str) -> None:
    raise ArtifactError(f"model blob: {what}")


def _tensor_label(i: int, t: BlobTensor) -> str:
    return f"tensor {i} ({t.name!r})"


# ---------------------------------------------------------------------------------------
# validation shared by the writer and the reader
# ---------------------------------------------------------------------------------------

def _check_u64(value, what: str) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= int(value) <= _U64:
        _fail(f"{what} = {value!r} is not an unsigned 64-bit integer")


def _check_model(m: BlobModel, consts_size: int, writing: bool) -> None:
    """The checks of edgec_model_init (docs/artifact.md), on a decoded model."""
    _check_u64(m.arena_size, "arena_size")
    _check_u64(m.workspace_size, "workspace_size")
    for i, t in enumerate(m.tensors):
        label = _tensor_label(i, t)
        if not isinstance(t.name, str):
            _fail(f"tensor {i}: name {t.name!r} is not a string")
        if t.dtype not in DLPACK:
            _fail(f"{label}: unknown dtype {t.dtype!r} (known: {', '.join(sorted(DLPACK))})")
        if len(t.shape) > MAX_NDIM:
            _fail(f"{label}: ndim {len(t.shape)} > {MAX_NDIM}")
        if any(d < 0 for d in t.shape):
            _fail(f"{label}: negative dimension in shape {t.shape}")
        want = _element_count(t.shape) * DLPACK[t.dtype][1] // 8
        if want > _U64:
            _fail(f"{label}: byte size of shape {t.shape} overflows 64 bits")
        if t.nbytes != want:
            _fail(f"{label}: nbytes {t.nbytes} != {want} (shape {t.shape} x {t.dtype})")
        if t.storage not in _STORAGE_CODES:
            _fail(f"{label}: unknown storage {t.storage!r} (want 'arena' or 'const')")
        _check_u64(t.offset, f"{label}: offset")
        if t.offset % ALIGN:
            _fail(f"{label}: offset {t.offset} is not {ALIGN}-byte aligned")
        if t.storage == "arena":
            if t.offset + t.nbytes > m.arena_size:
                _fail(f"{label}: bytes [{t.offset}, {t.offset + t.nbytes}) outside the arena "
                      f"({m.arena_size} bytes)")
            if writing and t.data is not None:
                _fail(f"{label}: an arena tensor carries constant data")
        else:
            if t.is_input or t.is_output:
                _fail(f"{label}: a constant cannot be a graph input or output")
            if writing:
                if t.data is None or len(t.data) != t.nbytes:
                    got = "no data" if t.data is None else f"{len(t.data)} bytes"
                    _fail(f"{label}: constant needs exactly {t.nbytes} bytes of data, got {got}")
            elif t.offset + t.nbytes > consts_size:
                _fail(f"{label}: bytes [{t.offset}, {t.offset + t.nbytes}) outside the constants "
                      f"section ({consts_size} bytes)")
    n_tensors = len(m.tensors)
    for i, op in enumerate(m.ops):
        if not isinstance(op.name, str):
            _fail(f"op {i}: name {op.name!r} is not a string")
        if not 0 <= op.kernel < len(m.kernels):
            _fail(f"op {i} ({op.name!r}): kernel index {op.kernel} out of range ({len(m.kernels)} kernels)")
        if len(op.args) > MAX_OP_ARGS:
            _fail(f"op {i} ({op.name!r}): {len(op.args)} args > {MAX_OP_ARGS}")
        for a in op.args:
            if not 0 <= a < n_tensors:
                _fail(f"op {i} ({op.name!r}): argument {a} is not a tensor index ({n_tensors} tensors)")
    for i, k in enumerate(m.kernels):
        if not isinstance(k, str) or not k:
            _fail(f"kernel {i}: name {k!r} is not a non-empty string")
    if writing and len(set(m.kernels)) != len(m.kernels):
        _fail(f"kernel names are not unique: {m.kernels}")
    for kind, indices, flag in (("input", m.inputs, "is_input"), ("output", m.outputs, "is_output")):
        for j, ti in enumerate(indices):
            if not 0 <= ti < n_tensors:
                _fail(f"{kind} {j}: {ti} is not a tensor index ({n_tensors} tensors)")
            t = m.tensors[ti]
            if t.storage != "arena":
                _fail(f"{kind} {j}: {_tensor_label(ti, t)} is not an arena tensor")
            if not getattr(t, flag):
                _fail(f"{kind} {j}: {_tensor_label(ti, t)} lacks the {flag} flag")
    if writing:
        for i, t in enumerate(m.tensors):
            if t.is_input and i not in m.inputs:
                _fail(f"{_tensor_label(i, t)} is flagged as input but not in inputs {m.inputs}")
            if t.is_output and i not in m.outputs:
                _fail(f"{_tensor_label(i, t)} is flagged as output but not in outputs {m.outputs}")


# ---------------------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------------------

def write_blob(model: BlobModel) -> bytes:
    """Serializes ``model``: places the constants (64-aligned), writes every section, and
    the CRC-32 of bytes [16, total). Raises ArtifactError for an invalid model."""
    if not isinstance(model, BlobModel):
        raise TypeError(f"write_blob expects a BlobModel, got {type(model).__name__}")
    _check_model(model, consts_size=0, writing=True)

    strings = bytearray()
    string_offsets: dict[str, int] = {}

    def intern(s: str) -> int:
        if s not in string_offsets:
            raw = s.encode("utf-8")
            if b"\0" in raw:
                _fail(f"name {s!r} contains a NUL character")
            string_offsets[s] = len(strings)
            strings.extend(raw + b"\0")
        return string_offsets[s]

    tensor_names = [intern(t.name) for t in model.tensors]
    op_names = [intern(op.name) for op in model.ops]
    kernel_names = [intern(k) for k in model.kernels]
    n_args = sum(len(op.args) for op in model.ops)
    n_dims = sum(len(t.shape) for t in model.tensors)

    cursor = HEADER_SIZE
    tensors_off = cursor
    cursor += TENSOR_ENTRY * len(model.tensors)
    ops_off = cursor
    cursor += OP_ENTRY * len(model.ops)
    args_off = cursor
    cursor += 4 * n_args
    kernels_off = cursor
    cursor += KERNEL_ENTRY * len(model.kernels)
    io_off = cursor
    cursor += 4 * (len(model.inputs) + len(model.outputs))
    shapes_off = _align(cursor, 8)
    cursor = shapes_off + 8 * n_dims
    strings_off = cursor
    cursor += len(strings)
    consts_off = _align(cursor)
    const_offsets: dict[int, int] = {}
    consts_size = 0
    for i, t in enumerate(model.tensors):
        if t.storage == "const":
            const_offsets[i] = _align(consts_size)
            consts_size = const_offsets[i] + t.nbytes
    total = consts_off + consts_size

    for name, value in (("tensors", len(model.tensors)), ("ops", len(model.ops)), ("args", n_args),
                        ("kernels", len(model.kernels)), ("dims", n_dims)):
        if value > _U32:
            _fail(f"too many {name}: {value}")
    if max(string_offsets.values(), default=0) > _U32:
        _fail("string section larger than 4 GiB")

    buf = bytearray(total)
    _HEADER.pack_into(buf, 0, MAGIC, 0, 0, VERSION_MAJOR, VERSION_MINOR, HEADER_SIZE, total,
                      int(model.arena_size), int(model.workspace_size),
                      len(model.tensors), len(model.ops), n_args, len(model.kernels),
                      len(model.inputs), len(model.outputs), n_dims, 0,
                      tensors_off, ops_off, args_off, kernels_off, io_off, shapes_off,
                      strings_off, len(strings), consts_off, consts_size)
    dim = 0
    for i, t in enumerate(model.tensors):
        code, bits = DLPACK[t.dtype]
        flags = (FLAG_INPUT if t.is_input else 0) | (FLAG_OUTPUT if t.is_output else 0)
        offset = const_offsets.get(i, int(t.offset))
        _TENSOR.pack_into(buf, tensors_off + TENSOR_ENTRY * i, tensor_names[i], code, bits, len(t.shape),
                          _STORAGE_CODES[t.storage], flags, dim, offset, t.nbytes, NO_QPARAMS, 0, 0)
        if t.shape:
            struct.pack_into(f"<{len(t.shape)}q", buf, shapes_off + 8 * dim, *t.shape)
        dim += len(t.shape)
        if t.storage == "const":
            start = consts_off + offset
            buf[start:start + t.nbytes] = t.data
    arg = 0
    for i, op in enumerate(model.ops):
        _OP.pack_into(buf, ops_off + OP_ENTRY * i, op.kernel, arg, len(op.args), op_names[i], 0, 0)
        if op.args:
            struct.pack_into(f"<{len(op.args)}I", buf, args_off + 4 * arg, *op.args)
        arg += len(op.args)
    for i, name in enumerate(kernel_names):
        _KERNEL.pack_into(buf, kernels_off + KERNEL_ENTRY * i, name, 0)
    io = list(model.inputs) + list(model.outputs)
    if io:
        struct.pack_into(f"<{len(io)}I", buf, io_off, *io)
    buf[strings_off:strings_off + len(strings)] = strings
    struct.pack_into("<I", buf, 8, zlib.crc32(memoryview(buf)[16:]) & _U32)
    return bytes(buf)


# ---------------------------------------------------------------------------------------
# reader
# ---------------------------------------------------------------------------------------

def read_blob(data: bytes) -> BlobModel:
    """Parses and validates a blob; raises ArtifactError naming the first problem found."""
    data = bytes(data)
    size = len(data)
    if size < HEADER_SIZE:
        _fail(f"truncated: {size} bytes, the header alone is {HEADER_SIZE}")
    (magic, crc, _reserved, major, minor, header_size, total, arena_size, workspace_size,
     n_tensors, n_ops, n_args, n_kernels, n_inputs, n_outputs, n_dims, _flags,
     tensors_off, ops_off, args_off, kernels_off, io_off, shapes_off,
     strings_off, strings_size, consts_off, consts_size) = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        _fail(f"bad magic {magic!r} (not an edgec model)")
    if major != VERSION_MAJOR or minor > VERSION_MINOR:
        _fail(f"version {major}.{minor} is not readable by this edgec (reads {VERSION_MAJOR}.{VERSION_MINOR})")
    if header_size != HEADER_SIZE:
        _fail(f"header_size {header_size} != {HEADER_SIZE}")
    if total != size:
        _fail(f"total_size {total} != {size} bytes given (truncated or padded)")
    if zlib.crc32(memoryview(data)[16:]) & _U32 != crc:
        _fail("checksum mismatch (corrupt blob)")

    def section(name: str, off: int, count: int, entry: int, align: int) -> None:
        end = off + count * entry
        if off < HEADER_SIZE or end > size or off % align:
            _fail(f"{name} section [{off}, {end}) out of bounds ({size} bytes) or not {align}-aligned")

    section("tensor", tensors_off, n_tensors, TENSOR_ENTRY, 8)
    section("op", ops_off, n_ops, OP_ENTRY, 1)
    section("argument", args_off, n_args, 4, 1)
    section("kernel", kernels_off, n_kernels, KERNEL_ENTRY, 1)
    section("input/output", io_off, n_inputs + n_outputs, 4, 1)
    section("shape", shapes_off, n_dims, 8, 8)
    section("string", strings_off, strings_size, 1, 1)
    section("constants", consts_off, consts_size, 1, ALIGN)
    strings = data[strings_off:strings_off + strings_size]

    def string(offset: int, what: str) -> str:
        end = strings.find(b"\0", offset) if offset < strings_size else -1
        if end < 0:
            _fail(f"{what}: name offset {offset} outside the strings section or not NUL-terminated")
        # the C runtime compares names as bytes; undecodable bytes are not an error there either
        return strings[offset:end].decode("utf-8", "replace")

    dims = struct.unpack_from(f"<{n_dims}q", data, shapes_off) if n_dims else ()
    tensors = []
    for i in range(n_tensors):
        (name_off, code, bits, ndim, storage, flags, shape_index, offset, nbytes,
         _q, _r0, _r1) = _TENSOR.unpack_from(data, tensors_off + TENSOR_ENTRY * i)
        name = string(name_off, f"tensor {i}")
        dtype = _DTYPE_NAMES.get((code, bits))
        if dtype is None:
            _fail(f"tensor {i} ({name!r}): unknown dtype (code {code}, bits {bits})")
        if ndim > MAX_NDIM:
            _fail(f"tensor {i} ({name!r}): ndim {ndim} > {MAX_NDIM}")
        if shape_index + ndim > n_dims:
            _fail(f"tensor {i} ({name!r}): shape index {shape_index} + {ndim} dims outside the shape array")
        if storage not in _STORAGE_NAMES:
            _fail(f"tensor {i} ({name!r}): unknown storage {storage}")
        t = BlobTensor(name, dtype, dims[shape_index:shape_index + ndim], _STORAGE_NAMES[storage],
                       is_input=bool(flags & FLAG_INPUT), is_output=bool(flags & FLAG_OUTPUT),
                       offset=offset, nbytes=nbytes)
        tensors.append(t)
    kernels = [string(_KERNEL.unpack_from(data, kernels_off + KERNEL_ENTRY * i)[0], f"kernel {i}")
               for i in range(n_kernels)]
    args = struct.unpack_from(f"<{n_args}I", data, args_off) if n_args else ()
    ops = []
    for i in range(n_ops):
        kernel, first, count, name_off, _f, _r = _OP.unpack_from(data, ops_off + OP_ENTRY * i)
        if count > MAX_OP_ARGS:
            _fail(f"op {i}: {count} args > {MAX_OP_ARGS}")
        if first + count > n_args:
            _fail(f"op {i}: args [{first}, {first + count}) outside the argument array ({n_args})")
        ops.append(BlobOp(kernel, list(args[first:first + count]), string(name_off, f"op {i}")))
    io = struct.unpack_from(f"<{n_inputs + n_outputs}I", data, io_off) if n_inputs + n_outputs else ()
    model = BlobModel(tensors, ops, kernels, list(io[:n_inputs]), list(io[n_inputs:]), arena_size,
                      workspace_size)
    _check_model(model, consts_size=consts_size, writing=False)
    for t in tensors:
        if t.storage == "const":
            t.data = data[consts_off + t.offset:consts_off + t.offset + t.nbytes]
    return model
