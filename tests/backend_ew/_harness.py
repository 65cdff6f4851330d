"""Compile one kernel generator's PrimFunc for the host target and run it with TVM's runtime.

``check(op, inputs, attrs)`` is the usual test: it normalizes the attributes with the op
registry, runs the numpy reference (edgec/ops, the contract), compiles and runs the
kernel on the same inputs, and compares (floats within a tolerance, everything else
exactly).
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from edgec.backend.kernels import elementwise, reduce, tensor  # noqa: E402,F401  (register kernels)
from edgec.backend.kernels.registry import KERNELS, KernelSpec, TensorType  # noqa: E402
from edgec.ir import ops as op_registry  # noqa: E402
from edgec.targets import load_target  # noqa: E402

# default tolerances per float dtype (rtol, atol)
TOL = {"float16": (2e-3, 1e-4), "float32": (1e-5, 1e-6), "float64": (1e-10, 1e-12)}


@functools.lru_cache(maxsize=None)
def host():
    return load_target("host")


def spec_for(op: str, attrs: dict[str, Any], inputs: Sequence[np.ndarray | None],
             out_types: Sequence[tuple[str, tuple[int, ...]]]) -> KernelSpec:
    ins = tuple(None if a is None else TensorType(str(a.dtype), tuple(a.shape)) for a in inputs)
    outs = tuple(TensorType(d, tuple(int(x) for x in s)) for d, s in out_types)
    return KernelSpec(op, dict(attrs), ins, outs, host())


def build(spec: KernelSpec):
    """The generator's PrimFunc compiled for the host target (a tvm Executable)."""
    func = KERNELS[spec.op](spec)
    mod = tvm.IRModule({"k": func.with_attr("global_symbol", "k")})
    return tvm.compile(mod, target=host().tvm_target())


def run(op: str, attrs: dict[str, Any], inputs: Sequence[np.ndarray | None],
        out_types: Sequence[tuple[str, tuple[int, ...]]]) -> list[np.ndarray]:
    ex = build(spec_for(op, attrs, inputs, out_types))
    args = [tvm.runtime.tensor(np.array(a, order="C")) for a in inputs if a is not None]
    # outputs start as garbage so a kernel that skips elements cannot pass by accident
    outs = [tvm.runtime.tensor(_garbage(d, s)) for d, s in out_types]
    ex["k"](*args, *outs)
    return [o.numpy() for o in outs]


def _garbage(dtype: str, shape) -> np.ndarray:
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(b"\xa5" * n, dtype=dtype).reshape(shape).copy()


def reference(op: str, inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]):
    opdef = op_registry.get(op)
    full = opdef.normalize_attrs(attrs)
    with np.errstate(all="ignore"):   # nan/inf inputs are deliberate
        return full, [np.asarray(w) for w in opdef.reference(*inputs, **full)]


def check(op: str, inputs: Sequence[np.ndarray | None], attrs: dict[str, Any] | None = None,
          rtol: float | None = None, atol: float | None = None) -> list[np.ndarray]:
    """Kernel output == reference output (floats within TOL or the given rtol/atol)."""
    full, want = reference(op, inputs, attrs or {})
    got = run(op, full, inputs, [(str(w.dtype), w.shape) for w in want])
    for k, (g, w) in enumerate(zip(got, want)):
        assert_same(g, w, rtol, atol, what=f"{op} {full} output {k} inputs "
                                           f"{[(None if a is None else (str(a.dtype), a.shape)) for a in inputs]}")
    return got


def assert_same(got: np.ndarray, want: np.ndarray, rtol: float | None = None, atol: float | None = None,
                what: str = "") -> None:
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if want.dtype.kind == "f":
        r, a = TOL[str(want.dtype)]
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   rtol=r if rtol is None else rtol, atol=a if atol is None else atol,
                                   equal_nan=True, err_msg=what)
        # an infinity must be the same infinity
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=what)
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def rand(rng: np.random.Generator, shape, dtype: str, lo: float = -5, hi: float = 5) -> np.ndarray:
    """Random array: floats uniform in [lo, hi), ints in [lo, hi] clipped to the dtype."""
    shape = tuple(shape)
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if np.dtype(dtype).kind == "f":
        return np.asarray(rng.uniform(lo, hi, size=shape)).astype(dtype)
    info = np.iinfo(dtype)
    lo_i, hi_i = max(int(lo), int(info.min)), min(int(hi), int(info.max))
    return np.asarray(rng.integers(lo_i, hi_i, size=shape, endpoint=True, dtype=np.int64 if lo_i < 0 else np.uint64)
                      ).astype(dtype)


# finite float32 values that exercise edges: zeros, halves, tiny, huge
SPECIAL_F32 = np.array([0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 1e-7, -1e-7, 1e-30, 3e38, -3e38,
                        88.5, -88.5, 100.0, -100.0, 1.0, -1.0], np.float32)
NONFINITE = np.array([np.nan, np.inf, -np.inf], np.float32)
