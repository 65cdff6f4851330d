"""matrix ops (see docs/ops.md): matmul, dense."""
from __future__ import annotations

import numpy as np

from ..ir.ops import register
from ._common import broadcast_shape

_NUMERIC = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
            "uint64")


def _matmul_infer(inputs, attrs):
    a, b = inputs
    if a.dtype != b.dtype:
        raise ValueError(f"matmul: dtype mismatch {a.dtype} vs {b.dtype}")
    if a.dtype not in _NUMERIC:
        raise ValueError(f"matmul: dtype {a.dtype} is not supported")
    if not a.shape or not b.shape:
        raise ValueError(f"matmul: scalar operands are not allowed ({list(a.shape)} @ {list(b.shape)})")
    ash = (1,) + a.shape if len(a.shape) == 1 else a.shape
    bsh = b.shape + (1,) if len(b.shape) == 1 else b.shape
    if ash[-1] != bsh[-2]:
        raise ValueError(f"matmul: inner dims differ: {list(a.shape)} @ {list(b.shape)}")
    batch = broadcast_shape(ash[:-2], bsh[:-2])
    out = batch + ((ash[-2],) if len(a.shape) > 1 else ()) + ((bsh[-1],) if len(b.shape) > 1 else ())
    return [(a.dtype, out)]


def _matmul_macs(inputs, outputs, attrs) -> int:
    return int(np.prod(outputs[0].shape, dtype=np.int64)) * int(inputs[0].shape[-1])


@register("matmul", group="matrix", infer=_matmul_infer, arity=(2, 2), macs=_matmul_macs)
def matmul(a, b):
    """y = a @ b with numpy semantics: 1-D operands are promoted and the promoted axis removed;
    leading (batch) axes broadcast. Integer products wrap in the operands' dtype."""
    return (np.matmul(a, b).astype(a.dtype, copy=False),)


def _dense_infer(inputs, attrs):
    x, w, bias = (list(inputs) + [None])[:3]
    if len({v.dtype for v in (x, w, bias) if v is not None}) != 1:
        raise ValueError(f"dense: inputs must share one dtype, got {[v.dtype for v in (x, w, bias) if v is not None]}")
    if x.dtype not in _NUMERIC:
        raise ValueError(f"dense: dtype {x.dtype} is not supported")
    if len(x.shape) != 2 or len(w.shape) != 2:
        raise ValueError(f"dense: x and w must be 2-D, got {list(x.shape)} and {list(w.shape)}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"dense: x {list(x.shape)} and w {list(w.shape)} disagree on K")
    if bias is not None and tuple(bias.shape) != (w.shape[0],):
        raise ValueError(f"dense: bias must have shape [{w.shape[0]}], got {list(bias.shape)}")
    return [(x.dtype, (x.shape[0], w.shape[0]))]


def _dense_macs(inputs, outputs, attrs) -> int:
    m, k = inputs[0].shape
    return int(m) * int(inputs[1].shape[0]) * int(k)


@register("dense", group="matrix", infer=_dense_infer, arity=(2, 3), macs=_dense_macs)
def dense(x, w, bias=None):
    """y[M,N] = x[M,K] @ w[N,K].T + bias[N] (bias optional)."""
    y = np.matmul(x, w.T)
    if bias is not None:
        y = y + bias
    return (y.astype(x.dtype, copy=False),)
