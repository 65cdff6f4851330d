"""Tensor (data movement) ops: reshape, transpose, concat, split, slice, gather, pad, expand, tile.

Every shape-determining quantity is a normalized attribute (see docs/ops.md): the
frontend resolves ONNX's -1/0 reshape dims, negative axes, slice clamping, etc.
"""
from __future__ import annotations

import numpy as np

from ..ir.ops import REQUIRED, register
from ._common import broadcast_shape
from ._ew_util import INDEX, check_dtype, check_ints, check_same_dtype, prod


def _axis_in(op: str, axis, rank: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int) or not 0 <= axis < rank:
        raise ValueError(f"{op}: axis {axis!r} must be an int in [0, {rank}) for rank {rank}")
    return axis


# -- reshape --------------------------------------------------------------------------------------

def _reshape_infer(inputs, attrs):
    (x,) = inputs
    shape = check_ints("reshape", "shape", attrs["shape"], minimum=0)
    if prod(shape) != prod(x.shape):
        raise ValueError(f"reshape: cannot reshape {list(x.shape)} ({prod(x.shape)} elements) "
                         f"into {list(shape)} ({prod(shape)} elements)")
    return [(x.dtype, shape)]


@register("reshape", group="tensor", infer=_reshape_infer, attrs={"shape": REQUIRED}, view=True)
def reshape(x, shape):
    """y = x with a new shape (row-major order kept; a view of x's bytes)"""
    return (np.reshape(x, shape),)


# -- transpose ------------------------------------------------------------------------------------

def _transpose_infer(inputs, attrs):
    (x,) = inputs
    perm = check_ints("transpose", "perm", attrs["perm"], n=len(x.shape))
    if sorted(perm) != list(range(len(x.shape))):
        raise ValueError(f"transpose: perm {list(perm)} is not a permutation of 0..{len(x.shape) - 1}")
    return [(x.dtype, tuple(x.shape[p] for p in perm))]


@register("transpose", group="tensor", infer=_transpose_infer, attrs={"perm": REQUIRED})
def transpose(x, perm):
    """y = x with its axes permuted: y.shape[i] = x.shape[perm[i]]"""
    return (np.require(requirements="C", a=np.transpose(x, perm)),)


# -- concat and split -----------------------------------------------------------------------------

def _concat_infer(inputs, attrs):
    if any(v is None for v in inputs):
        raise ValueError("concat: absent inputs are not allowed")
    dt = check_same_dtype("concat", inputs)
    rank = len(inputs[0].shape)
    axis = _axis_in("concat", attrs["axis"], rank)
    shape = list(inputs[0].shape)
    for v in inputs[1:]:
        if len(v.shape) != rank or any(d != e for k, (d, e) in enumerate(zip(v.shape, shape)) if k != axis):
            raise ValueError(f"concat: shapes {[list(v.shape) for v in inputs]} differ outside axis {axis}")
        shape[axis] += v.shape[axis]
    return [(dt, tuple(shape))]


@register("concat", group="tensor", infer=_concat_infer, attrs={"axis": REQUIRED}, arity=(1, None))
def concat(*xs, axis):
    """y = the inputs joined along ``axis``"""
    return (np.concatenate(xs, axis=axis),)


def _split_infer(inputs, attrs):
    (x,) = inputs
    axis = _axis_in("split", attrs["axis"], len(x.shape))
    sizes = check_ints("split", "sizes", attrs["sizes"], minimum=0)
    if not sizes or sum(sizes) != x.shape[axis]:
        raise ValueError(f"split: sizes {list(sizes)} do not add up to dim {axis} of {list(x.shape)}")
    return [(x.dtype, tuple(s if k == axis else d for k, d in enumerate(x.shape))) for s in sizes]


@register("split", group="tensor", infer=_split_infer, attrs={"axis": REQUIRED, "sizes": REQUIRED})
def split(x, axis, sizes):
    """one output per entry of ``sizes``: consecutive pieces of x along ``axis``"""
    bounds = np.cumsum(sizes)[:-1]
    return tuple(np.require(requirements="C", a=p) for p in np.split(x, bounds, axis=axis))


# -- slice ----------------------------------------------------------------------------------------

def _slice_infer(inputs, attrs):
    (x,) = inputs
    r = len(x.shape)
    starts = check_ints("slice", "starts", attrs["starts"], n=r)
    steps = check_ints("slice", "steps", attrs["steps"], n=r)
    out_shape = check_ints("slice", "out_shape", attrs["out_shape"], n=r, minimum=0)
    for k, (s, st, n, d) in enumerate(zip(starts, steps, out_shape, x.shape)):
        if st == 0:
            raise ValueError(f"slice: step 0 on axis {k}")
        if n and not (0 <= s < d and 0 <= s + (n - 1) * st < d):
            raise ValueError(f"slice: axis {k} of size {d}: start {s}, step {st}, {n} elements leave the axis")
    return [(x.dtype, out_shape)]


@register("slice", group="tensor", infer=_slice_infer,
          attrs={"starts": REQUIRED, "steps": REQUIRED, "out_shape": REQUIRED})
def slice_(x, starts, steps, out_shape):
    """y[i0, i1, ...] = x[starts[0] + i0*steps[0], starts[1] + i1*steps[1], ...]"""
    index = []
    for s, st, n in zip(starts, steps, out_shape):
        if n == 0:
            index.append(slice(0, 0))
            continue
        stop = s + n * st
        index.append(slice(s, stop if stop >= 0 else None, st))
    return (np.require(requirements="C", a=x[tuple(index)]),)


# -- gather ---------------------------------------------------------------------------------------

def _gather_infer(inputs, attrs):
    data, idx = inputs
    check_dtype("gather", idx.dtype, INDEX, what="indices")
    axis = _axis_in("gather", attrs["axis"], len(data.shape))
    return [(data.dtype, tuple(data.shape[:axis]) + tuple(idx.shape) + tuple(data.shape[axis + 1:]))]


def _norm_indices(op: str, idx: np.ndarray, dim: int) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    bad = (idx < -dim) | (idx >= dim)
    if bad.any():
        raise IndexError(f"{op}: index {int(idx[bad].flat[0])} out of range for an axis of size {dim}")
    return np.where(idx < 0, idx + dim, idx)


@register("gather", group="tensor", infer=_gather_infer, attrs={"axis": 0}, arity=(2, 2))
def gather(data, indices, axis):
    """y = numpy.take(data, indices, axis); negative indices count from the end"""
    idx = _norm_indices("gather", indices, data.shape[axis])
    return (np.require(requirements="C", a=np.take(data, idx, axis=axis)),)


def _gather_elements_infer(inputs, attrs):
    data, idx = inputs
    check_dtype("gather_elements", idx.dtype, INDEX, what="indices")
    r = len(data.shape)
    axis = _axis_in("gather_elements", attrs["axis"], r)
    if len(idx.shape) != r:
        raise ValueError(f"gather_elements: indices rank {len(idx.shape)} != data rank {r}")
    for k, (i, d) in enumerate(zip(idx.shape, data.shape)):
        if k != axis and i > d:
            raise ValueError(f"gather_elements: indices shape {list(idx.shape)} exceeds data shape "
                             f"{list(data.shape)} on axis {k}")
    return [(data.dtype, tuple(idx.shape))]


@register("gather_elements", group="tensor", infer=_gather_elements_infer, attrs={"axis": 0}, arity=(2, 2))
def gather_elements(data, indices, axis):
    """y[i][j][k] = data[indices[i][j][k]][j][k] (for axis 0; likewise for other axes)"""
    idx = _norm_indices("gather_elements", indices, data.shape[axis])
    view = data[tuple(slice(None) if k == axis else slice(0, n) for k, n in enumerate(idx.shape))]
    return (np.require(requirements="C", a=np.take_along_axis(view, idx, axis=axis)),)


# -- pad ------------------------------------------------------------------------------------------

PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_infer(inputs, attrs):
    (x,) = inputs
    r = len(x.shape)
    pads = check_ints("pad", "pads", attrs["pads"], n=2 * r)
    mode = attrs["mode"]
    if mode not in PAD_MODES:
        raise ValueError(f"pad: mode {mode!r} is not one of {PAD_MODES}")
    v = attrs["value"]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"pad: value must be a number, got {v!r}")
    shape = []
    for k, d in enumerate(x.shape):
        b, e = pads[k], pads[r + k]
        inner = d + min(b, 0) + min(e, 0)
        if inner < 0:
            raise ValueError(f"pad: negative pads {b}, {e} remove more than axis {k} of size {d}")
        grow = max(b, 0) + max(e, 0)
        if grow and mode != "constant" and inner == 0:
            raise ValueError(f"pad: mode {mode!r} cannot pad empty axis {k}")
        if mode == "reflect" and max(b, e) > inner - 1:
            raise ValueError(f"pad: reflect pads {b}, {e} must be smaller than axis {k} of size {inner}")
        shape.append(inner + grow)
    return [(x.dtype, tuple(shape))]


@register("pad", group="tensor", infer=_pad_infer, attrs={"pads": REQUIRED, "mode": "constant", "value": 0.0})
def pad(x, pads, mode, value):
    """ONNX Pad: pads = (begin_0, ..., begin_n, end_0, ..., end_n); negative pads crop first,
    then positive pads add ``value`` (constant), a mirror without the edge (reflect), copies of
    the edge (edge) or the opposite side (wrap)"""
    r = x.ndim
    crop = tuple(slice(-min(pads[k], 0), x.shape[k] + min(pads[r + k], 0)) for k in range(r))
    x_in = x[crop]
    width = [(max(pads[k], 0), max(pads[r + k], 0)) for k in range(r)]
    if mode == "constant":
        y = np.pad(x_in, width, mode="constant", constant_values=np.asarray(value).astype(x.dtype))
    else:
        y = np.pad(x_in, width, mode=mode)
    return (np.require(requirements="C", a=y.astype(x.dtype, copy=False)),)


# -- expand and tile ------------------------------------------------------------------------------

def _expand_infer(inputs, attrs):
    (x,) = inputs
    shape = check_ints("expand", "shape", attrs["shape"], minimum=0)
    if broadcast_shape(x.shape, shape) != shape:
        raise ValueError(f"expand: {list(x.shape)} does not broadcast to {list(shape)}")
    return [(x.dtype, shape)]


@register("expand", group="tensor", infer=_expand_infer, attrs={"shape": REQUIRED})
def expand(x, shape):
    """y = numpy.broadcast_to(x, shape)"""
    return (np.require(requirements="C", a=np.broadcast_to(x, shape)),)


def _tile_infer(inputs, attrs):
    (x,) = inputs
    reps = check_ints("tile", "repeats", attrs["repeats"], n=len(x.shape), minimum=0)
    return [(x.dtype, tuple(d * n for d, n in zip(x.shape, reps)))]


@register("tile", group="tensor", infer=_tile_infer, attrs={"repeats": REQUIRED})
def tile(x, repeats):
    """y = numpy.tile(x, repeats) (one repeat count per axis)"""
    return (np.require(requirements="C", a=np.tile(x, repeats)),)

