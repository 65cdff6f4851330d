"""Kernel generators for the tensor (data movement) op group (docs/ops.md, edgec/ops/tensor.py).

Every kernel is one ``te.compute`` per output that reads its input at computed indices,
scheduled by ``injective_schedule`` (elementwise.py); reshape is a copy over flat views
and transpose is tiled when the innermost axis moves.

Index safety: gather/gather_elements normalize negative indices (+ axis size) and then
clamp into [0, size-1], so an out-of-range index never reads outside the data buffer
(the result for such an index is the clamped element). concat and pad select between
sources with ``if_then_else``, which only evaluates the taken branch's load.
"""
from __future__ import annotations

from typing import Sequence

import tvm
from tvm import te

from ...errors import CompileError
from .common import PARALLEL_MIN_ELEMS, placeholder, placeholders, prim_func
from .elementwise import bcast_load, const, dt, flat_prim_func, injective_schedule, numel, out_dtype, out_shape
from .registry import KernelSpec, kernel

tir = tvm.tirx


def _ints(spec: KernelSpec, name: str) -> list[int]:
    v = spec.attrs.get(name)
    if v is None:
        raise CompileError(f"{spec.op}: missing attribute {name!r}")
    return [int(a) for a in v]


def _axis(spec: KernelSpec, rank: int, name: str = "axis") -> int:
    a = int(spec.attrs.get(name, 0))
    if a < 0:
        a += rank
    if not 0 <= a < max(rank, 1):
        raise CompileError(f"{spec.op}: {name}={spec.attrs.get(name)} out of range for rank {rank}")
    return a


def _check_out(spec: KernelSpec, shape: Sequence[int], i: int = 0) -> None:
    got = out_shape(spec, i)
    if tuple(int(d) for d in shape) != got:
        raise CompileError(f"{spec.op}: computed output shape {list(shape)} != declared {list(got)}")


# ----------------------------------------------------------------------------- reshape


@kernel("reshape")
def reshape(spec: KernelSpec):
    t = spec.inputs[0]
    shape = out_shape(spec)
    n_in, n_out = numel(t.shape), numel(shape)
    if n_in != n_out or t.dtype != out_dtype(spec):
        raise CompileError(f"reshape: input {t.dtype}{list(t.shape)} ({n_in} elements) cannot become "
                           f"{out_dtype(spec)}{list(shape)} ({n_out} elements)")
    xf = te.placeholder((n_in,), t.dtype, name="x")
    return flat_prim_func(spec, [xf], [te.compute((n_in,), lambda i: xf[i], name="y")], [t.shape, shape])


# ----------------------------------------------------------------------------- transpose


def _transpose_schedule(perm: Sequence[int]):
    """Tile the two axes that swap memory order so both reads and writes stay in cache.

    The output axis ``p = perm.index(rank-1)`` walks the input's contiguous axis, the last
    output axis ``q`` the output's. T x T tiles over (p, q), the row loop of a tile unrolled
    and its columns vectorized (gathered reads from T input lines held in L1). T = 8 for
    4- and 8-byte types, 16 for narrower ones (measured: larger tiles were slower; staging
    a tile in a local buffer was faster on 2-D shapes but needs heap workspace).
    """
    rank = len(perm)

    def schedule(sch: tvm.s_tir.Schedule, spec: KernelSpec) -> None:
        blk = sch.get_sblock("y")
        loops = sch.get_loops(blk)
        shape = out_shape(spec)
        p = list(perm).index(rank - 1)
        q = rank - 1
        dtype = out_dtype(spec)
        tile = 8 if tvm.DataType(dtype).bits >= 32 else 16
        if shape[p] < tile or shape[q] < tile:
            injective_schedule(sch, spec)
            return
        po, pi = sch.split(loops[p], [None, tile])
        qo, qi = sch.split(loops[q], [None, tile])
        outer = [lp for k, lp in enumerate(loops) if k not in (p, q)]
        sch.reorder(*outer, po, qo, pi, qi)
        fused = sch.fuse(*outer, po, qo)
        sch.unroll(pi)
        total = 1
        for d in shape:
            total *= d
        if total >= PARALLEL_MIN_ELEMS:
            sch.parallel(fused)
        if shape[q] % tile == 0:
            sch.vectorize(qi)
    return schedule


@kernel("transpose")
def transpose(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    rank = len(x.shape)
    perm = spec.attrs.get("perm")
    perm = list(range(rank))[::-1] if perm is None else [int(p) % max(rank, 1) for p in perm]
    if sorted(perm) != list(range(rank)):
        raise CompileError(f"transpose: perm {perm} is not a permutation of {rank} axes")
    shape = [int(x.shape[p]) for p in perm]
    _check_out(spec, shape)
    inv = [perm.index(k) for k in range(rank)]
    y = te.compute(tuple(shape), lambda *i: x(*[i[inv[k]] for k in range(rank)]), name="y")
    moved = rank >= 2 and perm[-1] != rank - 1
    return prim_func(spec, [x], [y], _transpose_schedule(perm) if moved else injective_schedule)


# ----------------------------------------------------------------------------- concat / split


@kernel("concat")
def concat(spec: KernelSpec):
    xs = placeholders(spec)
    if not xs:
        raise CompileError("concat: no inputs")
    rank = len(xs[0].shape)
    axis = _axis(spec, rank)
    shape = list(out_shape(spec))
    sizes = [int(x.shape[axis]) for x in xs]
    offs = [sum(sizes[:k]) for k in range(len(xs))]
    for x in xs:
        if dt(x) != dt(xs[0]) or len(x.shape) != rank or any(
                int(x.shape[k]) != shape[k] for k in range(rank) if k != axis):
            raise CompileError(f"concat: inputs {[list(map(int, x.shape)) for x in xs]} do not "
                               f"concatenate on axis {axis} into {shape}")
    if sum(sizes) != shape[axis]:
        raise CompileError(f"concat: sizes {sizes} along axis {axis} do not add up to {shape[axis]}")
    parts = [(x, off, n) for x, off, n in zip(xs, offs, sizes) if n > 0]

    def body(*i):
        j = i[axis]

        def load(k):
            x, off, _ = parts[k]
            idx = list(i)
            idx[axis] = j - off
            return x(*idx)
        expr = load(len(parts) - 1)
        for k in range(len(parts) - 2, -1, -1):
            _, off, n = parts[k]
            expr = tir.if_then_else(j < off + n, load(k), expr)
        return expr
    if not parts:  # every input is empty along the axis: the output is empty too
        y = te.compute(tuple(shape), lambda *i: const(0, dt(xs[0])), name="y")
    else:
        y = te.compute(tuple(shape), body, name="y")
    return prim_func(spec, xs, [y], injective_schedule)


def _shifted(x: te.Tensor, axis: int, off: int):
    def body(*i):
        idx = list(i)
        idx[axis] = idx[axis] + off
        return x(*idx)
    return body


@kernel("split")
def split(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    rank = len(x.shape)
    axis = _axis(spec, rank)
    sizes = _ints(spec, "sizes")
    if sum(sizes) != int(x.shape[axis]) or len(sizes) != len(spec.outputs):
        raise CompileError(f"split: sizes {sizes} do not split axis {axis} of {list(map(int, x.shape))} "
                           f"into {len(spec.outputs)} outputs")
    outs = []
    off = 0
    for k, n in enumerate(sizes):
        shape = [int(d) for d in x.shape]
        shape[axis] = n
        _check_out(spec, shape, k)

        outs.append(te.compute(tuple(shape), _shifted(x, axis, off), name=f"y{k}"))
        off += n
    return prim_func(spec, [x], outs, injective_schedule)


# ----------------------------------------------------------------------------- slice


@kernel("slice")
def slice_(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    rank = len(x.shape)
    starts, steps = _ints(spec, "starts"), _ints(spec, "steps")
    shape = [int(d) for d in spec.attrs.get("out_shape", out_shape(spec))]
    if len(starts) != rank or len(steps) != rank or len(shape) != rank:
        raise CompileError(f"slice: starts {starts}, steps {steps}, out_shape {shape} need {rank} entries")
    _check_out(spec, shape)
    for k in range(rank):
        n = int(x.shape[k])
        if shape[k] > 0 and (steps[k] == 0 or not 0 <= starts[k] < n
                             or not 0 <= starts[k] + (shape[k] - 1) * steps[k] < n):
            raise CompileError(f"slice: axis {k}: start {starts[k]}, step {steps[k]}, {shape[k]} elements "
                               f"leave the input extent {n}")
    y = te.compute(tuple(shape), lambda *i: x(*[starts[k] + i[k] * steps[k] for k in range(rank)]), name="y")
    return prim_func(spec, [x], [y], injective_schedule)


# ----------------------------------------------------------------------------- gather


def _safe_index(v, n: int):
    """Index value -> int32 position in [0, n-1]: negative counts from the end, then clamped."""
    d = dt(v)
    v = tir.Select(v < const(0, d), v + const(n, d), v)
    v = tir.Max(tir.Min(v, const(max(n - 1, 0), d)), const(0, d))
    return v.astype("int32") if d != "int32" else v


@kernel("gather")
def gather(spec: KernelSpec):
    data, ind = placeholder(spec, 0, "data"), placeholder(spec, 1, "indices")
    if dt(ind) not in ("int32", "int64"):
        raise CompileError(f"gather: indices dtype {dt(ind)} is not int32/int64")
    rank = len(data.shape)
    axis = _axis(spec, rank)
    n = int(data.shape[axis])
    irank = len(ind.shape)
    shape = [int(d) for d in data.shape[:axis]] + [int(d) for d in ind.shape] + [int(d) for d in data.shape[axis + 1:]]
    _check_out(spec, shape)
    if n == 0 and 0 not in shape:
        raise CompileError("gather: cannot gather from an empty axis")

    def body(*i):
        pre, mid, post = i[:axis], i[axis:axis + irank], i[axis + irank:]
        return data(*pre, _safe_index(ind(*mid), n), *post)
    y = te.compute(tuple(shape), body, name="y")
    return prim_func(spec, [data, ind], [y], injective_schedule)


@kernel("gather_elements")
def gather_elements(spec: KernelSpec):
    data, ind = placeholder(spec, 0, "data"), placeholder(spec, 1, "indices")
    if dt(ind) not in ("int32", "int64"):
        raise CompileError(f"gather_elements: indices dtype {dt(ind)} is not int32/int64")
    rank = len(data.shape)
    axis = _axis(spec, rank)
    if len(ind.shape) != rank:
        raise CompileError(f"gather_elements: indices rank {len(ind.shape)} != data rank {rank}")
    n = int(data.shape[axis])
    shape = [int(d) for d in ind.shape]
    _check_out(spec, shape)
    for k in range(rank):
        if k != axis and shape[k] > int(data.shape[k]):
            raise CompileError(f"gather_elements: indices shape {shape} exceeds data shape "
                               f"{list(map(int, data.shape))} on axis {k}")
    if n == 0 and 0 not in shape:
        raise CompileError("gather_elements: cannot gather from an empty axis")

    def body(*i):
        idx = list(i)
        idx[axis] = _safe_index(ind(*i), n)
        return data(*idx)
    y = te.compute(tuple(shape), body, name="y")
    return prim_func(spec, [data, ind], [y], injective_schedule)


# ----------------------------------------------------------------------------- pad


def _pad_source(o, n: int, before: int, mode: str):
    """(index into a length-``n`` axis, in-range condition or None) for output position ``o``.

    ``before`` is the (non-negative) padding in front of the cropped axis.
    """
    src = o - before
    if mode == "constant":
        return src, tir.And(src >= 0, src < n)
    if mode == "edge":
        return tir.max(tir.min(src, n - 1), 0), None
    if mode == "wrap":
        return tir.floormod(src, n), None
    if mode == "reflect":
        if n == 1:
            return 0 * src, None
        period = 2 * (n - 1)
        m = tir.floormod(src, period)
        return tir.Select(m < n, m, period - m), None
    raise CompileError(f"pad: unknown mode {mode!r} (constant, reflect, edge, wrap)")


@kernel("pad")
def pad(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    rank = len(x.shape)
    pads = _ints(spec, "pads")
    mode = str(spec.attrs.get("mode", "constant"))
    if len(pads) != 2 * rank:
        raise CompileError(f"pad: {len(pads)} pads for rank {rank} (need begin..., end...)")
    in_shape = [int(d) for d in x.shape]
    # negative pads crop first (as onnxruntime does); then the axis is padded
    crop_lo = [max(0, -pads[k]) for k in range(rank)]
    crop_n = [in_shape[k] - crop_lo[k] - max(0, -pads[rank + k]) for k in range(rank)]
    before = [max(0, pads[k]) for k in range(rank)]
    shape = [crop_n[k] + before[k] + max(0, pads[rank + k]) for k in range(rank)]
    if any(c < 0 for c in crop_n):
        raise CompileError(f"pad: pads {pads} crop more than the input {in_shape}")
    _check_out(spec, shape)
    for k in range(rank):
        if mode != "constant" and crop_n[k] == 0 and shape[k] > 0:
            raise CompileError(f"pad: mode {mode!r} cannot pad an empty axis {k}")
    dtype = dt(x)
    value = spec.attrs.get("value", 0.0) or 0
    if dtype == "bool":
        fill = const(bool(value), "bool")
    elif dtype.startswith("float"):
        fill = const(float(value), dtype)
    else:
        fill = const(int(value), dtype)

    def body(*i):
        idx, conds = [], []
        for k in range(rank):
            if before[k] == 0 and crop_n[k] == shape[k]:
                idx.append(i[k] + crop_lo[k])
                continue
            s, c = _pad_source(i[k], crop_n[k], before[k], mode)
            idx.append(s + crop_lo[k])
            if c is not None:
                conds.append(c)
        if not conds:
            return x(*idx)
        cond = conds[0]
        for c in conds[1:]:
            cond = tir.And(cond, c)
        return tir.if_then_else(cond, x(*idx), fill)
    y = te.compute(tuple(shape), body, name="y")
    return prim_func(spec, [x], [y], injective_schedule)


# ----------------------------------------------------------------------------- expand / tile


@kernel("expand")
def expand(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    shape = out_shape(spec)
    y = te.compute(shape, bcast_load(x, shape), name="y")
    return prim_func(spec, [x], [y], injective_schedule)


@kernel("tile")
def tile(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    reps = _ints(spec, "repeats")
    in_shape = [int(d) for d in x.shape]
    rank = max(len(in_shape), len(reps))
    full_in = [1] * (rank - len(in_shape)) + in_shape
    full_reps = [1] * (rank - len(reps)) + reps
    shape = [a * r for a, r in zip(full_in, full_reps)]
    _check_out(spec, shape)
    off = rank - len(in_shape)

    def body(*i):
        return x(*[i[off + k] if full_reps[off + k] == 1 else tir.floormod(i[off + k], in_shape[k])
                   for k in range(len(in_shape))])
    y = te.compute(tuple(shape), body, name="y")
    return prim_func(spec, [x], [y], injective_schedule)
