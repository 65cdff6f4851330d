"""Converters for ONNX tensor ops: shape manipulation, data movement and constant producers.

Shape-determining inputs (Reshape's shape, Slice's starts, Pad's pads, ...) must be
constants after folding; the converters resolve ONNX's conventions (-1 and 0 in
Reshape, negative axes, Slice clamping, Split's default sizes) into the normalized
attributes of docs/ops.md. Shape, Size, Constant, ConstantOfShape and Range always
produce constants.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import dtypes
from ...ops._common import broadcast_shape
from ..registry import ConvertContext, converter


# -- helpers --------------------------------------------------------------------------------------

def _ints_input(ctx: ConvertContext, i: int, what: str) -> list[int] | None:
    """Constant integer input ``i`` as a list of Python ints (None when absent)."""
    arr = ctx.const(i, what)
    if arr is None:
        return None
    if arr.dtype.kind not in "iu":
        ctx.unsupported(f"{what} must be an integer tensor, got {arr.dtype}")
    if arr.ndim > 1:
        ctx.unsupported(f"{what} must be 1-D, got shape {list(arr.shape)}")
    return [int(v) for v in arr.reshape(-1)]


def _norm_axes(ctx: ConvertContext, axes, rank: int, what: str = "axes") -> list[int]:
    out = []
    for a in axes:
        a = int(a)
        if not -rank <= a < rank:
            ctx.unsupported(f"{what} value {a} is out of range for rank {rank}")
        out.append(a % rank)
    if len(set(out)) != len(out):
        ctx.unsupported(f"{what} {list(axes)} repeat an axis")
    return out


def _reshape_to(ctx: ConvertContext, x: str, shape) -> str:
    """``x`` reshaped to ``shape`` (no node when the shape does not change)."""
    shape = tuple(int(d) for d in shape)
    if tuple(ctx.builder.values[x].shape) == shape:
        return x
    return ctx.emit1("reshape", [x], {"shape": shape})


# -- reshape family -------------------------------------------------------------------------------

@converter("Reshape", since=5)
def reshape(ctx: ConvertContext) -> None:
    ctx.check_attrs({"allowzero": lambda v: v in (0, 1)})
    spec = _ints_input(ctx, 1, "shape")
    allowzero = int(ctx.attr("allowzero", 0))
    in_shape = ctx.shape(0)
    out: list[int] = []
    infer_at = None
    for k, d in enumerate(spec):
        if d == 0 and not allowzero:
            if k >= len(in_shape):
                ctx.unsupported(f"shape {spec}: 0 at position {k} copies a dim the input {list(in_shape)} does not have")
            out.append(in_shape[k])
        elif d == -1:
            if infer_at is not None:
                ctx.unsupported(f"shape {spec} has more than one -1")
            infer_at = k
            out.append(1)
        elif d < -1:
            ctx.unsupported(f"shape {spec} has a negative dim {d}")
        else:
            out.append(d)
    total = math.prod(in_shape)
    if infer_at is not None:
        known = math.prod(out)
        if known == 0 or total % known:
            ctx.unsupported(f"cannot infer the -1 in {spec} for input shape {list(in_shape)}")
        out[infer_at] = total // known
    if math.prod(out) != total:
        ctx.unsupported(f"cannot reshape {list(in_shape)} into {spec}")
    ctx.set_output(0, _reshape_to(ctx, ctx.input(0), out))


@converter("Flatten", since=1)
def flatten(ctx: ConvertContext) -> None:
    ctx.check_attrs({"axis": None})
    shape = ctx.shape(0)
    r = len(shape)
    axis = int(ctx.attr("axis", 1))
    if not -r <= axis <= r:
        ctx.unsupported(f"axis {axis} is out of range for rank {r}")
    if axis < 0:
        axis += r
    out = (math.prod(shape[:axis]), math.prod(shape[axis:]))
    ctx.set_output(0, _reshape_to(ctx, ctx.input(0), out))


def _squeeze(ctx: ConvertContext, axes) -> None:
    shape = ctx.shape(0)
    if axes is None or len(axes) == 0:
        keep = [d for d in shape if d != 1]
    else:
        axes = _norm_axes(ctx, axes, len(shape))
        for a in axes:
            if shape[a] != 1:
                ctx.unsupported(f"cannot squeeze axis {a} of size {shape[a]} (shape {list(shape)})")
        keep = [d for k, d in enumerate(shape) if k not in axes]
    ctx.set_output(0, _reshape_to(ctx, ctx.input(0), keep))


@converter("Squeeze", since=1)
def squeeze_1(ctx: ConvertContext) -> None:
    ctx.check_attrs({"axes": None})
    _squeeze(ctx, ctx.attr("axes"))


@converter("Squeeze", since=13)
def squeeze_13(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    _squeeze(ctx, _ints_input(ctx, 1, "axes"))


def _unsqueeze(ctx: ConvertContext, axes) -> None:
    if axes is None:
        ctx.unsupported("axes are required")
    shape = list(ctx.shape(0))
    r = len(shape) + len(axes)
    axes = set(_norm_axes(ctx, axes, r))
    it = iter(shape)
    out = [1 if k in axes else next(it) for k in range(r)]
    ctx.set_output(0, _reshape_to(ctx, ctx.input(0), out))


@converter("Unsqueeze", since=1)
def unsqueeze_1(ctx: ConvertContext) -> None:
    ctx.check_attrs({"axes": None})
    _unsqueeze(ctx, ctx.attr("axes"))


@converter("Unsqueeze", since=13)
def unsqueeze_13(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    _unsqueeze(ctx, _ints_input(ctx, 1, "axes"))


# -- transpose, concat, split ---------------------------------------------------------------------

@converter("Transpose", since=1)
def transpose(ctx: ConvertContext) -> None:
    ctx.check_attrs({"perm": None})
    r = len(ctx.shape(0))
    perm = ctx.attr("perm")
    perm = list(range(r))[::-1] if perm is None else _norm_axes(ctx, perm, r, "perm")
    if len(perm) != r:
        ctx.unsupported(f"perm {perm} has {len(perm)} entries for rank {r}")
    if perm == list(range(r)):
        ctx.set_output(0, ctx.input(0))
    else:
        ctx.set_output(0, ctx.emit1("transpose", [ctx.input(0)], {"perm": tuple(perm)}))


@converter("Concat", since=4)
def concat(ctx: ConvertContext) -> None:
    ctx.check_attrs({"axis": None})
    if not ctx.has_attr("axis"):
        ctx.unsupported("attribute axis is required")
    names = ctx.inputs()
    if not names or "" in names:
        ctx.unsupported("every input must be present")
    r = len(ctx.shape(0))
    (axis,) = _norm_axes(ctx, [ctx.attr("axis")], r, "axis")
    if len(names) == 1:
        ctx.set_output(0, names[0])
    else:
        ctx.set_output(0, ctx.emit1("concat", names, {"axis": axis}))


def _split(ctx: ConvertContext, sizes, num_outputs: int | None = None) -> None:
    shape = ctx.shape(0)
    (axis,) = _norm_axes(ctx, [ctx.attr("axis", 0)], len(shape), "axis")
    dim = shape[axis]
    n_out = len(ctx.node.output)
    if sizes is None:
        if num_outputs is not None:
            if num_outputs != n_out:
                ctx.unsupported(f"num_outputs={num_outputs} but the node has {n_out} outputs")
            chunk = -(-dim // num_outputs)
            sizes = [chunk] * (num_outputs - 1) + [dim - chunk * (num_outputs - 1)]
            if sizes[-1] < 0:
                ctx.unsupported(f"cannot split {dim} into {num_outputs} chunks of {chunk}")
        else:
            if dim % n_out:
                ctx.unsupported(f"cannot split dim {dim} evenly into {n_out} outputs")
            sizes = [dim // n_out] * n_out
    sizes = [int(s) for s in sizes]
    if len(sizes) != n_out or sum(sizes) != dim or min(sizes) < 0:
        ctx.unsupported(f"split sizes {sizes} do not cover dim {dim} with {n_out} outputs")
    if n_out == 1:
        ctx.set_output(0, ctx.input(0))
        return
    outs = ctx.emit("split", [ctx.input(0)], {"axis": axis, "sizes": tuple(sizes)}, n_outputs=n_out)
    ctx.set_outputs(outs)


@converter("Split", since=2)
def split_2(ctx: ConvertContext) -> None:
    ctx.check_attrs({"axis": None, "split": None})
    _split(ctx, ctx.attr("split"))


@converter("Split", since=13)
def split_13(ctx: ConvertContext) -> None:
    ctx.check_attrs({"axis": None})
    _split(ctx, _ints_input(ctx, 1, "split"))


@converter("Split", since=18)
def split_18(ctx: ConvertContext) -> None:
    ctx.check_attrs({"axis": None, "num_outputs": None})
    sizes = _ints_input(ctx, 1, "split")
    num = ctx.attr("num_outputs")
    if sizes is not None and num is not None:
        ctx.unsupported("split and num_outputs are both given")
    _split(ctx, sizes, None if num is None else int(num))


# -- slice ----------------------------------------------------------------------------------------

def _slice_count(start: int, end: int, step: int, dim: int) -> tuple[int, int]:
    """ONNX Slice clamping of one axis; returns (first index, element count)."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start = min(max(start, 0), dim)
        end = min(max(end, 0), dim)
    else:
        start = min(max(start, 0), dim - 1)
        end = min(max(end, -1), dim - 1)
    n = max(0, -(-(end - start) // step))
    return (start if n else 0), n


def _slice(ctx: ConvertContext, starts, ends, axes, steps) -> None:
    shape = list(ctx.shape(0))
    r = len(shape)
    if starts is None or ends is None:
        ctx.unsupported("starts and ends are required")
    if axes is None:
        axes = list(range(len(starts)))
    if steps is None:
        steps = [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        ctx.unsupported(f"starts {starts}, ends {ends}, axes {axes}, steps {steps} differ in length")
    axes = _norm_axes(ctx, axes, r)
    first, step, out = [0] * r, [1] * r, list(shape)
    for s, e, a, p in zip(starts, ends, axes, steps):
        if p == 0:
            ctx.unsupported(f"step 0 on axis {a}")
        first[a], out[a] = _slice_count(int(s), int(e), int(p), shape[a])
        step[a] = int(p)
    if out == shape and all(p == 1 for p in step):
        ctx.set_output(0, ctx.input(0))
        return
    attrs = {"starts": tuple(first), "steps": tuple(step), "out_shape": tuple(out)}
    ctx.set_output(0, ctx.emit1("slice", [ctx.input(0)], attrs))


@converter("Slice", since=1)
def slice_1(ctx: ConvertContext) -> None:
    ctx.check_attrs({"starts": None, "ends": None, "axes": None})
    _slice(ctx, ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes"), None)


@converter("Slice", since=10)
def slice_10(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    _slice(ctx, _ints_input(ctx, 1, "starts"), _ints_input(ctx, 2, "ends"),
           _ints_input(ctx, 3, "axes"), _ints_input(ctx, 4, "steps"))


# -- gather ---------------------------------------------------------------------------------------

@converter("Gather", since=1)
def gather(ctx: ConvertContext) -> None:
    ctx.check_attrs({"axis": None})
    (axis,) = _norm_axes(ctx, [ctx.attr("axis", 0)], len(ctx.shape(0)), "axis")
    ctx.set_output(0, ctx.emit1("gather", [ctx.input(0), ctx.input(1)], {"axis": axis}))


@converter("GatherElements", since=11)
def gather_elements(ctx: ConvertContext) -> None:
    ctx.check_attrs({"axis": None})
    (axis,) = _norm_axes(ctx, [ctx.attr("axis", 0)], len(ctx.shape(0)), "axis")
    ctx.set_output(0, ctx.emit1("gather_elements", [ctx.input(0), ctx.input(1)], {"axis": axis}))


# -- pad, expand, tile ----------------------------------------------------------------------------

_PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad(ctx: ConvertContext, pads, value, axes=None) -> None:
    shape = ctx.shape(0)
    r = len(shape)
    mode = ctx.attr("mode", "constant")
    if pads is None:
        ctx.unsupported("pads are required")
    if axes is None:
        axes = list(range(r))
    axes = _norm_axes(ctx, axes, r)
    if len(pads) != 2 * len(axes):
        ctx.unsupported(f"pads {list(pads)} must have 2 entries per padded axis ({len(axes)} axes)")
    full = [0] * (2 * r)
    for k, a in enumerate(axes):
        full[a], full[r + a] = int(pads[k]), int(pads[len(axes) + k])
    if not any(full):
        ctx.set_output(0, ctx.input(0))
        return
    dt = ctx.dtype(0)
    value = 0 if value is None else value
    value = float(value) if dtypes.is_float(dt) else int(value)
    ctx.set_output(0, ctx.emit1("pad", [ctx.input(0)], {"pads": tuple(full), "mode": mode, "value": value}))


@converter("Pad", since=2)
def pad_2(ctx: ConvertContext) -> None:
    ctx.check_attrs({"pads": None, "mode": lambda m: m in _PAD_MODES, "value": None})
    _pad(ctx, ctx.attr("pads"), ctx.attr("value", 0.0))


def _pad_value(ctx: ConvertContext):
    arr = ctx.const(2, "constant_value")
    if arr is None:
        return None
    if arr.size != 1:
        ctx.unsupported(f"constant_value must be a single value, got shape {list(arr.shape)}")
    return arr.reshape(()).item()


@converter("Pad", since=11)
def pad_11(ctx: ConvertContext) -> None:
    ctx.check_attrs({"mode": lambda m: m in _PAD_MODES})
    _pad(ctx, _ints_input(ctx, 1, "pads"), _pad_value(ctx))


@converter("Pad", since=18)
def pad_18(ctx: ConvertContext) -> None:
    ctx.check_attrs({"mode": lambda m: m in _PAD_MODES})
    _pad(ctx, _ints_input(ctx, 1, "pads"), _pad_value(ctx), _ints_input(ctx, 3, "axes"))


@converter("Expand", since=8)
def expand(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    spec = _ints_input(ctx, 1, "shape")
    if any(d < 0 for d in spec):
        ctx.unsupported(f"shape {spec} has negative dims")
    out = broadcast_shape(ctx.shape(0), tuple(spec))
    if out == tuple(ctx.shape(0)):
        ctx.set_output(0, ctx.input(0))
    else:
        ctx.set_output(0, ctx.emit1("expand", [ctx.input(0)], {"shape": out}))


@converter("Tile", since=6)
def tile(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    reps = _ints_input(ctx, 1, "repeats")
    if len(reps) != len(ctx.shape(0)) or any(n < 0 for n in reps):
        ctx.unsupported(f"repeats {reps} must be one non-negative count per axis of {list(ctx.shape(0))}")
    if all(n == 1 for n in reps):
        ctx.set_output(0, ctx.input(0))
    else:
        ctx.set_output(0, ctx.emit1("tile", [ctx.input(0)], {"repeats": tuple(reps)}))


# -- constant producers ---------------------------------------------------------------------------

@converter("Shape", since=1)
def shape(ctx: ConvertContext) -> None:
    ctx.check_attrs({"start": None, "end": None})
    dims = list(ctx.shape(0))
    start = int(ctx.attr("start", 0))
    end = ctx.attr("end")
    dims = dims[start:] if end is None else dims[start:int(end)]
    ctx.set_output(0, ctx.add_const(np.array(dims, dtype=np.int64)))


@converter("Size", since=1)
def size(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, ctx.add_const(np.array(math.prod(ctx.shape(0)), dtype=np.int64)))


_CONSTANT_ATTRS = ("value", "value_float", "value_floats", "value_int", "value_ints")


@converter("Constant", since=1)
def constant(ctx: ConvertContext) -> None:
    ctx.check_attrs({k: None for k in _CONSTANT_ATTRS})
    given = [k for k in _CONSTANT_ATTRS if ctx.has_attr(k)]
    if len(given) != 1:
        ctx.unsupported(f"exactly one value attribute is required, got {given}")
    key = given[0]
    v = ctx.attr(key)
    if key == "value":
        arr = np.asarray(v)
        if arr.dtype.name not in dtypes.SUPPORTED:
            ctx.unsupported(f"a constant of dtype {arr.dtype} is not supported")
    elif key in ("value_float", "value_floats"):
        arr = np.asarray(v, dtype=np.float32)
    else:
        arr = np.asarray(v, dtype=np.int64)
    ctx.set_output(0, ctx.add_const(arr))


@converter("ConstantOfShape", since=9)
def constant_of_shape(ctx: ConvertContext) -> None:
    ctx.check_attrs({"value": None})
    dims = _ints_input(ctx, 0, "shape")
    if any(d < 0 for d in dims):
        ctx.unsupported(f"shape {dims} has negative dims")
    v = ctx.attr("value")
    fill = np.zeros((), np.float32) if v is None else np.asarray(v)
    if fill.size != 1:
        ctx.unsupported(f"value must have one element, got shape {list(fill.shape)}")
    if fill.dtype.name not in dtypes.SUPPORTED:
        ctx.unsupported(f"value dtype {fill.dtype} is not supported")
    ctx.set_output(0, ctx.add_const(np.full(dims, fill.reshape(()), dtype=fill.dtype)))


@converter("Range", since=11)
def range_(ctx: ConvertContext) -> None:
    ctx.check_attrs({"stash_type": None})
    start, limit, delta = (ctx.const(i, n) for i, n in enumerate(("start", "limit", "delta")))
    dt = start.dtype
    if not all(a.size == 1 for a in (start, limit, delta)):
        ctx.unsupported("start, limit and delta must be scalars")
    start, limit, delta = (a.reshape(()).item() for a in (start, limit, delta))
    if delta == 0:
        ctx.unsupported("delta is 0")
    if dt.kind in "iu":
        n = max(0, -(-(limit - start) // delta))
        arr = start + np.arange(n, dtype=np.int64) * delta
    else:
        with np.errstate(all="ignore"):  # the count is computed in the input dtype, as onnxruntime does
            count = np.ceil((dt.type(limit) - dt.type(start)) / dt.type(delta))
        if not np.isfinite(count):
            ctx.unsupported(f"range({start}, {limit}, {delta}) has no finite length")
        n = max(0, int(count))
        arr = start + np.arange(n, dtype=np.float64) * delta
    ctx.set_output(0, ctx.add_const(arr.astype(dt)))
