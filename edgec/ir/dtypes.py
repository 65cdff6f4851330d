"""Data types of the edgec IR.

A dtype is a numpy dtype name string ("float32", "int8", ...). This module maps
them to numpy, to ONNX TensorProto codes, and to DLPack (code, bits) as written
into the model blob and expected by TVM-generated kernels.
"""
from __future__ import annotations

import numpy as np

# name -> (DLPack type code, bits). kDLInt=0, kDLUInt=1, kDLFloat=2, kDLBool=6.
DLPACK = {
    "float32": (2, 32),
    "float64": (2, 64),
    "float16": (2, 16),
    "int8": (0, 8),
    "int16": (0, 16),
    "int32": (0, 32),
    "int64": (0, 64),
    "uint8": (1, 8),
    "uint16": (1, 16),
    "uint32": (1, 32),
    "uint64": (1, 64),
    "bool": (6, 8),
}

SUPPORTED = frozenset(DLPACK)

# ONNX TensorProto.DataType -> name
ONNX_TO_NAME = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
}
ONNX_UNSUPPORTED_NAMES = {8: "string", 14: "complex64", 15: "complex128", 16: "bfloat16",
                          17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2",
                          20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1"}


def onnx_dtype_name(code: int) -> str:
    """Name of an ONNX element type code; unknown codes give 'onnx-type-<code>'."""
    if code in ONNX_TO_NAME:
        return ONNX_TO_NAME[code]
    return ONNX_UNSUPPORTED_NAMES.get(code, f"onnx-type-{code}")


def to_numpy(name: str) -> np.dtype:
    return np.dtype(name)


def itemsize(name: str) -> int:
    return np.dtype(name).itemsize


def is_float(name: str) -> bool:
    return name.startswith("float")


def is_int(name: str) -> bool:
    return name.startswith("int") or name.startswith("uint")


def nbytes(name: str, shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n * itemsize(name)
