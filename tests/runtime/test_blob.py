"""edgec.artifact.blob: write/read round trip, and read_blob rejects what the C loader rejects."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from edgec.artifact.blob import (HEADER_SIZE, BlobModel, BlobOp, BlobTensor, read_blob, write_blob)
from edgec.errors import ArtifactError

from runtime_helpers import addadd_model


def _model() -> BlobModel:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    idx = np.array([2, 0, 1], dtype=np.int64)
    return BlobModel(
        tensors=[
            BlobTensor("x", "float32", (1, 5), is_input=True, offset=0),
            BlobTensor("w", "float32", (3, 5), "const", data=w),
            BlobTensor("idx", "int64", (3,), "const", data=idx.tobytes()),
            BlobTensor("flag", "bool", (), "const", data=b"\x01"),
            BlobTensor("h", "float16", (1, 3), offset=64),
            BlobTensor("y", "uint8", (1, 3), is_output=True, offset=128),
            BlobTensor("empty", "int32", (0, 4), offset=192),
        ],
        ops=[BlobOp(0, [0, 1, 4], "dense"), BlobOp(1, [4, 2, 3, 5], "gather/quant"), BlobOp(0, [], "noargs")],
        kernels=["dense_f32", "gather"], inputs=[0], outputs=[5], arena_size=192, workspace_size=4096)


def test_round_trip():
    m = _model()
    data = write_blob(m)
    assert data[:8] == b"EDGECMDL"
    assert struct.unpack_from("<I", data, 8)[0] == zlib.crc32(data[16:])
    back = read_blob(data)
    # constants were placed by the writer, 64-aligned, in tensor order
    consts = [t for t in back.tensors if t.storage == "const"]
    assert [t.offset for t in consts] == [0, 64, 128]
    for orig, got in zip(m.tensors, back.tensors):
        if orig.storage == "const":
            orig.offset = got.offset
    assert back == m
    assert write_blob(back) == data
    np.testing.assert_array_equal(np.frombuffer(back.tensors[1].data, np.float32).reshape(3, 5),
                                  np.frombuffer(m.tensors[1].data, np.float32).reshape(3, 5))
    assert back.tensors[6].nbytes == 0 and back.tensors[3].shape == ()


def test_layout_matches_the_doc():
    data = write_blob(_model())
    (total, arena, ws) = struct.unpack_from("<QQQ", data, 24)
    assert total == len(data) and arena == 192 and ws == 4096
    n_tensors, n_ops, n_args, n_kernels, n_in, n_out, n_dims = struct.unpack_from("<7I", data, 48)
    assert (n_tensors, n_ops, n_args, n_kernels, n_in, n_out, n_dims) == (7, 3, 7, 2, 1, 1, 11)
    offs = struct.unpack_from("<10Q", data, 80)
    assert offs[0] == HEADER_SIZE and offs[0] % 8 == 0 and offs[5] % 8 == 0 and offs[8] % 64 == 0
    # tensor 1 entry: storage const, qparam none
    name, code, bits, ndim, storage, flags, shape_index, offset, nbytes, qp = struct.unpack_from(
        "<IBBBBIIQQI", data, offs[0] + 48)
    assert (code, bits, ndim, storage, flags, nbytes, qp) == (2, 32, 2, 1, 0, 60, 0xFFFFFFFF)
    assert data[offs[6] + name:].split(b"\0")[0] == b"w"


# ---- corruptions: (patch on a valid blob, message) ---------------------------------------

def _offsets(data: bytes) -> dict:
    keys = ["tensors", "ops", "args", "kernels", "io", "shapes", "strings", "strings_size", "consts", "consts_size"]
    return dict(zip(keys, struct.unpack_from("<10Q", data, 80)))


def _patch(data: bytes, fmt: str, off: int, value, fix_crc: bool = True) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, off, value)
    if fix_crc:
        struct.pack_into("<I", b, 8, zlib.crc32(bytes(b[16:])))
    return bytes(b)


def _t(o, i, field):  # offset of tensor i's field
    return o["tensors"] + 48 * i + field


def _op(o, i, field):
    return o["ops"] + 24 * i + field


CORRUPTIONS = [
    ("truncated", lambda d, o: d[:-1], "total_size"),
    ("header only", lambda d, o: d[:100], "truncated"),
    ("bad magic", lambda d, o: b"X" + d[1:], "magic"),
    ("major 2", lambda d, o: _patch(d, "<H", 16, 2), "version 2.0"),
    ("minor 1", lambda d, o: _patch(d, "<H", 18, 1), "version 1.1"),
    ("header size", lambda d, o: _patch(d, "<I", 20, 128), "header_size"),
    ("bad crc", lambda d, o: _patch(d, "<B", o["strings"], 0x41, fix_crc=False), "checksum"),
    ("tensors out of bounds", lambda d, o: _patch(d, "<Q", 80, len(d)), "tensor section"),
    ("tensors in the header", lambda d, o: _patch(d, "<Q", 80, 8), "tensor section"),
    ("tensors misaligned", lambda d, o: _patch(d, "<Q", 80, o["tensors"] + 4), "tensor section"),
    ("args overflow", lambda d, o: _patch(d, "<Q", 96, 2**64 - 4), "argument section"),
    ("consts misaligned", lambda d, o: _patch(d, "<Q", 144, o["consts"] - 8), "constants section"),
    ("strings too long", lambda d, o: _patch(d, "<Q", 136, 2**64 - 1), "string section"),
    ("name out of strings", lambda d, o: _patch(d, "<I", _t(o, 0, 0), o["strings_size"]), "tensor 0: name"),
    ("unterminated string", lambda d, o: _patch(d, "<B", o["strings"] + o["strings_size"] - 1, 0x41),
     "not NUL-terminated"),
    ("arena overflow", lambda d, o: _patch(d, "<Q", _t(o, 2, 16), 384), "outside the arena"),
    ("small arena", lambda d, o: _patch(d, "<Q", 32, 300), "outside the arena"),
    ("const out of bounds", lambda d, o: _patch(d, "<Q", _t(o, 1, 16), 64), "outside the constants"),
    ("misaligned offset", lambda d, o: _patch(d, "<Q", _t(o, 0, 16), 8), "not 64-byte aligned"),
    ("bad dtype code", lambda d, o: _patch(d, "<B", _t(o, 0, 4), 3), "unknown dtype"),
    ("bad dtype bits", lambda d, o: _patch(d, "<B", _t(o, 0, 5), 12), "unknown dtype"),
    ("ndim 9", lambda d, o: _patch(d, "<B", _t(o, 0, 6), 9), "ndim 9"),
    ("unknown storage", lambda d, o: _patch(d, "<B", _t(o, 0, 7), 2), "unknown storage"),
    ("nbytes mismatch", lambda d, o: _patch(d, "<Q", _t(o, 0, 24), 20), "nbytes 20"),
    ("negative dim", lambda d, o: _patch(d, "<q", o["shapes"], -2), "negative dimension"),
    ("overflowing dims", lambda d, o: _patch(_patch(d, "<q", o["shapes"], 2**62), "<q", o["shapes"] + 8, 4),
     "nbytes|overflow"),
    ("shape index", lambda d, o: _patch(d, "<I", _t(o, 3, 12), 11), "shape index"),
    ("const as input", lambda d, o: _patch(d, "<I", _t(o, 1, 8), 1), "graph input or output"),
    ("arg out of range", lambda d, o: _patch(d, "<I", o["args"] + 4, 4), "not a tensor index"),
    ("kernel index", lambda d, o: _patch(d, "<I", _op(o, 0, 0), 3), "kernel index 3"),
    ("33 args", lambda d, o: _patch(d, "<I", _op(o, 0, 8), 33), "33 args"),
    ("args outside", lambda d, o: _patch(d, "<I", _op(o, 1, 4), 5), "outside the argument array"),
    ("op name", lambda d, o: _patch(d, "<I", _op(o, 1, 12), 0xFFFFFF00), "op 1: name"),
    ("kernel name", lambda d, o: _patch(d, "<I", o["kernels"], 0xFFFF), "kernel 0: name"),
    ("output is const", lambda d, o: _patch(d, "<I", o["io"] + 4, 1), "not an arena tensor"),
    ("input out of range", lambda d, o: _patch(d, "<I", o["io"], 9), "not a tensor index"),
    ("input not flagged", lambda d, o: _patch(d, "<I", o["io"], 2), "lacks the is_input flag"),
    ("n_inputs too big", lambda d, o: _patch(d, "<I", 64, 1000), "input/output section"),
]


@pytest.mark.parametrize("what,patch,message", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_read_rejects(what, patch, message):
    data = write_blob(addadd_model())
    read_blob(data)
    with pytest.raises(ArtifactError, match=message):
        read_blob(patch(data, _offsets(data)))


def test_every_single_byte_flip_is_caught_or_harmless():
    data = write_blob(_model())
    for i in range(len(data)):
        b = bytearray(data)
        b[i] ^= 0x5A
        if 12 <= i < 16:          # reserved word: not covered by the checksum
            read_blob(bytes(b))
            continue
        with pytest.raises(ArtifactError):
            read_blob(bytes(b))


# ---- writer validation ------------------------------------------------------------------

def _bad(**changes) -> BlobModel:
    m = addadd_model()
    for path, value in changes.items():
        target, attr = m, path
        if "__" in path:
            idx, attr = path.split("__")
            target = m.tensors[int(idx[1:])]
        setattr(target, attr, value)
    return m


@pytest.mark.parametrize("changes,message", [
    ({"t0__dtype": "complex64"}, "unknown dtype 'complex64'"),
    ({"t0__offset": 32}, "not 64-byte aligned"),
    ({"t2__offset": 320}, "outside the arena"),
    ({"t1__data": b"\0" * 4}, "exactly 96 bytes"),
    ({"t1__data": None}, "no data"),
    ({"t0__nbytes": 7}, "nbytes 7"),
    ({"t0__storage": "rom"}, "unknown storage"),
    ({"t1__is_input": True}, "constant cannot be a graph input"),
    ({"t0__shape": (1,) * 9}, "ndim 9"),
    ({"t3__is_output": False}, "lacks the is_output flag"),
    ({"t2__is_input": True}, "flagged as input but not in inputs"),
    ({"kernels": ["add_f32", "add_f32", "x"]}, "not unique"),
    ({"kernels": ["add_f32", ""]}, "non-empty"),
    ({"inputs": [1]}, "not an arena tensor"),
    ({"arena_size": -1}, "arena_size"),
])
def test_write_rejects(changes, message):
    with pytest.raises(ArtifactError, match=message):
        write_blob(_bad(**changes))


def test_write_rejects_bad_ops():
    m = addadd_model()
    m.ops[0] = BlobOp(5, [0, 1, 2], "first_add")
    with pytest.raises(ArtifactError, match="kernel index 5"):
        write_blob(m)
    m.ops[0] = BlobOp(0, [0, 1, 9], "first_add")
    with pytest.raises(ArtifactError, match="argument 9"):
        write_blob(m)
    m.ops[0] = BlobOp(0, [0] * 33, "first_add")
    with pytest.raises(ArtifactError, match="33 args"):
        write_blob(m)
    m.ops[0] = BlobOp(0, [0, 1, 2], "bad\0name")
    with pytest.raises(ArtifactError, match="NUL"):
        write_blob(m)
