"""Reductions over a set of axes, and argmax/argmin along one axis.

``axes`` is normalized by the frontend: sorted, unique, >= 0 and non-empty (ONNX's
"reduce over all axes" lists every axis; its no-op form never reaches the IR).

Reference conventions: float16/float32 inputs accumulate in float64 and round once;
integer sums and products accumulate in the input dtype and wrap; integer means
truncate toward zero; reductions of an empty set give the ONNX identities (sum 0,
prod 1, max -inf or the lowest integer, min +inf or the highest, log_sum_exp -inf).
"""
from __future__ import annotations

import numpy as np

from ..ir.ops import REQUIRED, register
from ._ew_util import ALL, NUMERIC, check_dtype, check_ints, out, quiet, wide


def _reduced_shape(shape, axes, keepdims) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if k in axes else d for k, d in enumerate(shape))
    return tuple(d for k, d in enumerate(shape) if k not in axes)


def _reduce_infer(name: str, allowed: frozenset):
    def infer(inputs, attrs):
        (x,) = inputs
        check_dtype(name, x.dtype, allowed)
        r = len(x.shape)
        axes = check_ints(name, "axes", attrs["axes"])
        if not axes or list(axes) != sorted(set(axes)) or axes[0] < 0 or axes[-1] >= r:
            raise ValueError(f"{name}: axes {list(axes)} must be non-empty, sorted, unique and in [0, {r})")
        if attrs["keepdims"] not in (0, 1):
            raise ValueError(f"{name}: keepdims must be 0 or 1, got {attrs['keepdims']!r}")
        return [(x.dtype, _reduced_shape(x.shape, axes, attrs["keepdims"]))]
    return infer


def _reduce(name: str, allowed: frozenset = NUMERIC):
    return register(name, group="reduce", infer=_reduce_infer(name, allowed),
                    attrs={"axes": REQUIRED, "keepdims": 1})


def _is_float(x: np.ndarray) -> bool:
    return x.dtype.kind == "f"


@_reduce("reduce_sum")
def reduce_sum(x, axes, keepdims):
    """y = sum of x over ``axes``"""
    kd = bool(keepdims)
    if _is_float(x):
        return (out(np.sum(wide(x), axis=axes, keepdims=kd), x.dtype),)
    with quiet():
        return (out(np.sum(x, axis=axes, dtype=x.dtype, keepdims=kd), x.dtype),)


@_reduce("reduce_mean")
def reduce_mean(x, axes, keepdims):
    """y = mean of x over ``axes`` (integers: the sum divided by the count, truncated toward zero)"""
    kd = bool(keepdims)
    with quiet():
        if _is_float(x):
            return (out(np.mean(wide(x), axis=axes, keepdims=kd), x.dtype),)
        n = int(np.prod([x.shape[a] for a in axes]))
        acc = np.int64 if x.dtype.kind == "i" else np.uint64
        s = np.sum(x, axis=axes, dtype=acc, keepdims=kd)
        if n == 0:
            return (out(np.zeros_like(s), x.dtype),)
        q = np.abs(s) // n if x.dtype.kind == "i" else s // n
        return (out(np.where(s < 0, -q, q) if x.dtype.kind == "i" else q, x.dtype),)


def _lowest(dtype: np.dtype):
    if dtype.kind == "f":
        return -np.inf
    if dtype.kind == "b":
        return False
    return np.iinfo(dtype).min


def _highest(dtype: np.dtype):
    if dtype.kind == "f":
        return np.inf
    if dtype.kind == "b":
        return True
    return np.iinfo(dtype).max


@_reduce("reduce_max", ALL)
def reduce_max(x, axes, keepdims):
    """y = max of x over ``axes`` (nan propagates)"""
    return (out(np.max(x, axis=axes, keepdims=bool(keepdims), initial=_lowest(x.dtype)), x.dtype),)


@_reduce("reduce_min", ALL)
def reduce_min(x, axes, keepdims):
    """y = min of x over ``axes`` (nan propagates)"""
    return (out(np.min(x, axis=axes, keepdims=bool(keepdims), initial=_highest(x.dtype)), x.dtype),)


@_reduce("reduce_prod")
def reduce_prod(x, axes, keepdims):
    """y = product of x over ``axes``"""
    kd = bool(keepdims)
    with quiet():
        if _is_float(x):
            return (out(np.prod(wide(x), axis=axes, keepdims=kd), x.dtype),)
        return (out(np.prod(x, axis=axes, dtype=x.dtype, keepdims=kd), x.dtype),)


@_reduce("reduce_l2")
def reduce_l2(x, axes, keepdims):
    """y = sqrt(sum of x^2 over ``axes``) (integers: truncated)"""
    xw = wide(x)
    with quiet():
        return (out(np.sqrt(np.sum(xw * xw, axis=axes, keepdims=bool(keepdims))), x.dtype),)


@_reduce("reduce_sum_square")
def reduce_sum_square(x, axes, keepdims):
    """y = sum of x^2 over ``axes`` (integers wrap)"""
    kd = bool(keepdims)
    with quiet():
        if _is_float(x):
            xw = wide(x)
            return (out(np.sum(xw * xw, axis=axes, keepdims=kd), x.dtype),)
        return (out(np.sum(x * x, axis=axes, dtype=x.dtype, keepdims=kd), x.dtype),)


@_reduce("reduce_log_sum_exp")
def reduce_log_sum_exp(x, axes, keepdims):
    """y = log(sum of exp(x) over ``axes``) (computed as max + log(sum(exp(x - max))))"""
    xw = wide(x)
    with quiet():
        m = np.max(xw, axis=axes, keepdims=True, initial=-np.inf)
        m = np.where(np.isfinite(m), m, 0.0)
        y = np.log(np.sum(np.exp(xw - m), axis=axes, keepdims=True)) + m
        if not keepdims:
            y = np.squeeze(y, axis=axes)
        return (out(y, x.dtype),)


# -- argmax / argmin ------------------------------------------------------------------------------

def _arg_infer(name: str):
    def infer(inputs, attrs):
        (x,) = inputs
        check_dtype(name, x.dtype, NUMERIC)
        r = len(x.shape)
        axis = attrs["axis"]
        if isinstance(axis, bool) or not isinstance(axis, int) or not 0 <= axis < r:
            raise ValueError(f"{name}: axis {axis!r} must be in [0, {r})")
        if x.shape[axis] == 0:
            raise ValueError(f"{name}: axis {axis} of {list(x.shape)} is empty")
        for k in ("keepdims", "select_last_index"):
            if attrs[k] not in (0, 1):
                raise ValueError(f"{name}: {k} must be 0 or 1, got {attrs[k]!r}")
        return [("int64", _reduced_shape(x.shape, (axis,), attrs["keepdims"]))]
    return infer


def _arg(fn, x, axis, keepdims, select_last_index):
    if select_last_index:
        n = x.shape[axis]
        idx = n - 1 - fn(np.flip(x, axis=axis), axis=axis)
    else:
        idx = fn(x, axis=axis)
    if keepdims:
        idx = np.expand_dims(idx, axis)
    return (out(idx, np.int64),)


_ARG_ATTRS = {"axis": REQUIRED, "keepdims": 1, "select_last_index": 0}


@register("argmax", group="reduce", infer=_arg_infer("argmax"), attrs=_ARG_ATTRS)
def argmax(x, axis, keepdims, select_last_index):
    """y = index of the largest x along ``axis`` (first one, or last with select_last_index), int64"""
    return _arg(np.argmax, x, axis, keepdims, select_last_index)


@register("argmin", group="reduce", infer=_arg_infer("argmin"), attrs=_ARG_ATTRS)
def argmin(x, axis, keepdims, select_last_index):
    """y = index of the smallest x along ``axis`` (first one, or last with select_last_index), int64"""
    return _arg(np.argmin, x, axis, keepdims, select_last_index)
