"""Shared helpers for op definitions."""
from __future__ import annotations

import numpy as np


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """numpy broadcasting of static shapes; ValueError naming the shapes when they do not broadcast."""
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"shapes {[list(s) for s in shapes]} do not broadcast") from None


def same_as_input(i: int = 0):
    """infer function: one output with the dtype and shape of input ``i``."""
    def infer(inputs, attrs):
        return [(inputs[i].dtype, inputs[i].shape)]
    return infer


def norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0
