"""Elementwise ops: unary math and activations, binary arithmetic with numpy broadcasting."""
from __future__ import annotations

import numpy as np

from ..ir.ops import register
from ._common import broadcast_shape, same_as_input


@register("copy", group="elementwise", infer=same_as_input(), foldable=False)
def copy(x):
    """y = x (a materialized copy; used where a graph output is a constant, an input or repeated)."""
    return (np.array(x, copy=True),)


@register("relu", group="elementwise", infer=same_as_input())
def relu(x):
    """y = max(x, 0)"""
    return (np.maximum(x, np.zeros((), x.dtype)).astype(x.dtype),)


def _binary_infer(inputs, attrs):
    a, b = inputs
    if a.dtype != b.dtype:
        raise ValueError(f"dtype mismatch {a.dtype} vs {b.dtype}")
    return [(a.dtype, broadcast_shape(a.shape, b.shape))]


@register("add", group="elementwise", infer=_binary_infer, arity=(2, 2))
def add(a, b):
    """y = a + b (numpy broadcasting; integer overflow wraps)"""
    return (np.add(a, b).astype(a.dtype),)
