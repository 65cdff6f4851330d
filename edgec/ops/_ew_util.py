"""Helpers shared by the elementwise, tensor and reduce op definitions.

- dtype classes (``FLOAT``, ``INT``, ...) and ``check_dtype`` for infer functions;
- ``wide``: the float type a reference computes in (float64), and ``out`` to cast back;
- ``quiet``: numpy error state for references (overflow, division by zero and invalid
  operations produce inf/nan/wrapped values like the C kernels, never warnings).
"""
from __future__ import annotations

import numpy as np

FLOAT = frozenset({"float16", "float32", "float64"})
SINT = frozenset({"int8", "int16", "int32", "int64"})
UINT = frozenset({"uint8", "uint16", "uint32", "uint64"})
INT = SINT | UINT
NUMERIC = FLOAT | INT
SIGNED = FLOAT | SINT
BOOL = frozenset({"bool"})
ALL = NUMERIC | BOOL
INDEX = frozenset({"int32", "int64"})


def check_dtype(op: str, dtype: str, allowed: frozenset, what: str = "input") -> None:
    """ValueError naming the op and the dtype when ``dtype`` is not in ``allowed``."""
    if dtype not in allowed:
        raise ValueError(f"{op}: {what} dtype {dtype} is not supported "
                         f"(supported: {', '.join(sorted(allowed))})")


def check_same_dtype(op: str, values) -> str:
    """The common dtype of ``values`` (IR Values); ValueError when they differ."""
    dts = [v.dtype for v in values]
    if len(set(dts)) != 1:
        raise ValueError(f"{op}: inputs must have one dtype, got {', '.join(dts)}")
    return dts[0]


def quiet():
    """numpy error state for reference kernels: no warnings for inf/nan/overflow/zero division."""
    return np.errstate(all="ignore")


def wide(x: np.ndarray) -> np.ndarray:
    """``x`` as float64, the precision references compute transcendental math in."""
    return np.asarray(x, dtype=np.float64)


def out(r, dtype) -> np.ndarray:
    """``r`` as an ndarray of ``dtype`` (also turns numpy scalars from 0-d math into arrays)."""
    with quiet():
        return np.asarray(r).astype(dtype, copy=False)


def prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def check_ints(op: str, name: str, values, n: int | None = None, minimum: int | None = None) -> tuple[int, ...]:
    """Validate an int-tuple attribute; returns it as a tuple of Python ints."""
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                         for v in values):
        raise ValueError(f"{op}: attribute {name} must be a tuple of ints, got {values!r}")
    values = tuple(int(v) for v in values)
    if n is not None and len(values) != n:
        raise ValueError(f"{op}: attribute {name} has {len(values)} entries, expected {n}")
    if minimum is not None and any(v < minimum for v in values):
        raise ValueError(f"{op}: attribute {name}={values} has entries below {minimum}")
    return values
