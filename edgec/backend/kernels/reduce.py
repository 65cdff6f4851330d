"""Kernel generators for the reduce op group (docs/ops.md, edgec/ops/reduce.py).

Numerics:
- float16 accumulates in float32; float32 and float64 accumulate in their own type.
- integer sums and products wrap in the input type (numpy's int64 accumulation followed by
  ``astype`` gives the same bits); reduce_mean of integers sums in 64 bits and truncates
  toward zero; reduce_l2 of integers is computed in float64 and truncated.
- reduce_max/min start from -inf/+inf (floats) or the dtype's limits and propagate NaN,
  as numpy does. On bool they are any/all.
- reduce_log_sum_exp subtracts the max over the finite elements (as the ONNX reference
  does), so it neither overflows nor turns an all -inf row into NaN.
- argmax/argmin return int64: the first (or, with select_last_index, the last) position
  of the extreme value; NaN counts as the extreme, as in numpy.

Structure. Reduced axes that form one contiguous block are merged through flat views of
the buffers: x is computed as (L, R) when the block ends the shape, (L, R, T) otherwise
(global average pooling's (N, C, H*W) reduction, argmax over channels, ...).
- Inner reductions ((L, R), or real shapes whose last axis is reduced): when R is long,
  every reduction is split by hand in TE ("rfactor"): a partial stage reduces
  ``x[..., ko*V + v]`` over ``ko`` into V vector lanes, a second stage combines the V
  partials and the ``R % V`` tail. This works for any reducer, including the
  NaN-propagating max/min that TVM's own ``rfactor`` cannot match (a custom reducer can
  only be registered with a Python callback that crashes at interpreter exit). All stages
  of an output element run inside the parallel output loop; partials live on the stack.
- Kept inner axes ((L, R, T)): the output loop over (L, T/Ti) is parallel and every stage
  computes Ti <= 8 vectors of columns there, with the reduction loop outside the
  vectorized columns.
- Other axis sets use the real shape: single-stage reductions move the reduction loops
  outside the trailing kept axes; multi-stage ones run per output element.
"""
from __future__ import annotations

from typing import Callable, Sequence

import tvm
from tvm import te

from ...errors import CompileError
from .common import PARALLEL_MIN_ELEMS, vector_lanes
from .elementwise import (cast, const, dt, exp, flat_prim_func, is_float, is_inf, is_nan, is_uint, numel,
                          out_dtype, out_shape)
from .registry import KernelSpec, kernel

tir = tvm.tirx

# a partial ("_part") stage is only worth it when the reduced row holds this many vectors
MIN_VECTORS_PER_ROW = 4


# ----------------------------------------------------------------------------- helpers


def _axes(spec: KernelSpec, rank: int) -> list[int]:
    """Normalized, sorted reduced axes; none given = all axes (ONNX default)."""
    axes = spec.attrs.get("axes")
    if axes is None or len(axes) == 0:
        return list(range(rank))
    res = set()
    for a in axes:
        a = int(a)
        if not -rank <= a < rank:
            raise CompileError(f"{spec.op}: axis {a} out of range for rank {rank}")
        res.add(a % rank)
    return sorted(res)


class _Reduction:
    """The geometry of one reduction: input shape, reduced axes, output shape."""

    def __init__(self, in_shape: Sequence[int], axes: Sequence[int], keepdims: bool):
        self.in_shape = [int(d) for d in in_shape]
        self.axes = list(axes)
        self.keepdims = keepdims
        if keepdims:
            self.shape = [1 if k in axes else d for k, d in enumerate(self.in_shape)]
        else:
            self.shape = [d for k, d in enumerate(self.in_shape) if k not in axes]
        self.count = 1
        for a in axes:
            self.count *= self.in_shape[a]

    def in_index(self, out_idx: Sequence, red_idx: Sequence) -> list:
        """Input indices from output indices and one index per reduced axis (in axes order)."""
        it_out, it_r = iter(out_idx), iter(red_idx)
        res = []
        for k in range(len(self.in_shape)):
            if k in self.axes:
                if self.keepdims:
                    next(it_out)
                res.append(next(it_r))
            else:
                res.append(next(it_out))
        return res

    @property
    def inner_reduced(self) -> bool:
        return bool(self.axes) and self.axes[-1] == len(self.in_shape) - 1

    @property
    def kept_view(self) -> bool:
        """A (L, R, T) view with T > 1: reduction over the middle axis of a 3-D view."""
        return len(self.in_shape) == 3 and self.axes == [1] and not self.keepdims


def _view(in_shape: Sequence[int], axes: Sequence[int], keepdims: bool) -> _Reduction:
    """The geometry the kernel computes on. Reduced axes that form one contiguous block are
    merged: x is viewed as (L, R) (block at the end) or (L, R, T), so the reduced elements
    of a row are one long contiguous (or T-strided) run whatever the real shape; other
    axis sets keep the real shape."""
    in_shape = [int(d) for d in in_shape]
    if axes and list(axes) == list(range(axes[0], axes[-1] + 1)):
        lead = numel(in_shape[:axes[0]])
        r = numel(in_shape[axes[0]:axes[-1] + 1])
        t = numel(in_shape[axes[-1] + 1:])
        return _Reduction((lead, r) if t == 1 else (lead, r, t), [1], False)
    return _Reduction(in_shape, axes, keepdims)


def _limits(dtype: str):
    """(lowest, highest) value of a dtype: infinities for floats."""
    if is_float(dtype):
        return const(float("-inf"), dtype), const(float("inf"), dtype)
    if dtype == "bool":
        return const(False, "bool"), const(True, "bool")
    bits = tvm.DataType(dtype).bits
    if is_uint(dtype):
        return const(0, dtype), const((1 << bits) - 1, dtype)
    return const(-(1 << (bits - 1)), dtype), const((1 << (bits - 1)) - 1, dtype)


def _reducer(fcombine, fidentity, name: str):
    """``te.comm_reducer`` that remembers its identity (an empty reduction yields it)."""
    r = te.comm_reducer(fcombine, fidentity, name=name)
    r.identity = fidentity
    return r


def _max_reducer(dtype: str):
    if dtype == "bool":
        return _reducer(lambda a, b: tir.Or(a, b), lambda t: const(False, "bool"), name="any")
    if is_float(dtype):
        return _reducer(lambda a, b: tir.Select(tir.Or(a >= b, is_nan(a)), a, b),
                               lambda t: const(float("-inf"), t), name="nanmax")
    lo = _limits(dtype)[0]
    return _reducer(lambda a, b: tir.Select(a < b, b, a), lambda t: lo, name="imax")


def _min_reducer(dtype: str):
    if dtype == "bool":
        return _reducer(lambda a, b: tir.And(a, b), lambda t: const(True, "bool"), name="all")
    if is_float(dtype):
        return _reducer(lambda a, b: tir.Select(tir.Or(a <= b, is_nan(a)), a, b),
                               lambda t: const(float("inf"), t), name="nanmin")
    hi = _limits(dtype)[1]
    return _reducer(lambda a, b: tir.Select(b < a, b, a), lambda t: hi, name="imin")


_sum = _reducer(lambda a, b: a + b, lambda t: const(0, t), name="sum")
_prod = _reducer(lambda a, b: a * b, lambda t: const(1, t), name="prod")


def _acc_dtype(dtype: str) -> str:
    return "float32" if dtype == "float16" else dtype


def _reduce(spec: KernelSpec, red: _Reduction, reducer, val: Callable, acc: str, name: str) -> te.Tensor:
    """te tensor of ``red.shape``: ``reducer`` over ``val(out_idx, in_idx)`` (an ``acc`` value).

    Splits the innermost reduced axis into vector lanes when it is long (module docstring).
    """
    if red.count == 0:  # empty reduction: TVM would drop the block, write the identity
        return te.compute(tuple(red.shape), lambda *o: reducer.identity(acc), name=name)
    lanes = vector_lanes(spec, acc)
    n = red.in_shape[-1] if red.inner_reduced else 0
    other = red.axes[:-1]
    m, tail = (n // lanes, n % lanes) if lanes > 1 else (0, 0)
    if m >= MIN_VECTORS_PER_ROW and (tail == 0 or not other):
        rv_o = [te.reduce_axis((0, red.in_shape[a]), name=f"{name}_r{a}") for a in other]
        ko = te.reduce_axis((0, m), name=f"{name}_ko")

        def part_body(*ol):
            o, lane = ol[:-1], ol[-1]
            return reducer(val(o, red.in_index(o, rv_o + [ko * lanes + lane])), axis=rv_o + [ko])
        part = te.compute(tuple(red.shape) + (lanes,), part_body, name=f"{name}_part")
        j = te.reduce_axis((0, lanes + tail), name=f"{name}_j")

        def combine(*o):
            v = part(*o, j)
            if tail:  # no other reduced axis here: the tail is x[o..., m*lanes + t]
                t_val = val(o, red.in_index(o, [m * lanes + j - lanes]))
                v = tir.if_then_else(j < lanes, v, t_val)
            return reducer(v, axis=j)
        return te.compute(tuple(red.shape), combine, name=name)
    if red.axes:
        rv = [te.reduce_axis((0, red.in_shape[a]), name=f"{name}_r{a}") for a in red.axes]
        return te.compute(tuple(red.shape), lambda *o: reducer(val(o, red.in_index(o, rv)), axis=rv), name=name)
    # rank 0 / nothing to reduce: a reduction over the single element
    k = te.reduce_axis((0, 1), name=f"{name}_r")
    return te.compute(tuple(red.shape), lambda *o: reducer(val(o, list(o)), axis=[k]), name=name)


# ----------------------------------------------------------------------------- schedule


def _is_reduction(sch, block) -> bool:
    return any(iv.iter_type != 0 for iv in sch.get(block).iter_vars)


def _n_spatial(sch, block) -> int:
    return sum(1 for iv in sch.get(block).iter_vars if iv.iter_type == 0)


def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def _work(spec: KernelSpec) -> int:
    n = 1
    for d in spec.inputs[0].shape:
        n *= int(d)
    return n


def _schedule_for(red: _Reduction, lanes: int):
    def schedule(sch: tvm.s_tir.Schedule, spec: KernelSpec) -> None:
        root = sch.get_sblock("root")
        blocks = list(sch.get_child_blocks(root))
        out_block = blocks[-1]
        big = _work(spec) >= PARALLEL_MIN_ELEMS
        if numel(red.shape) == 0:
            return
        if red.kept_view:
            _schedule_kept_view(sch, blocks, lanes, big)
            return
        n_trail = len(red.in_shape) - 1 - red.axes[-1] if red.axes else 0
        single = len(blocks) == 1 or (len(blocks) == 2 and not _is_reduction(sch, blocks[1]))
        if n_trail and single and _is_reduction(sch, blocks[0]):
            _schedule_kept_axis(sch, blocks[0], out_block if len(blocks) == 2 else None, n_trail, lanes, big)
            return
        loops = sch.get_loops(out_block)
        spatial = loops[:_n_spatial(sch, out_block)]
        fused = None
        if spatial:
            fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
            # every other stage runs per output element, where it is consumed
            for b in reversed(blocks[:-1]):
                sch.compute_at(b, fused)
        for b in sch.get_child_blocks(root) if fused is None else blocks[:-1]:
            if sch.get(b).name_hint.endswith("_part"):
                _vectorize_part(sch, b)
        if fused is not None and _extent(sch, fused) >= 2 and big:
            sch.parallel(fused)
    return schedule


def _chunk(t: int, lanes: int) -> int:
    """Columns of a (L, R, T) reduction computed together: up to 8 vectors, dividing T."""
    if t % lanes == 0:
        k = 8
        while t % (lanes * k):
            k //= 2
        return lanes * k
    return max(d for d in range(1, min(t, 128) + 1) if t % d == 0)


def _schedule_kept_view(sch, blocks, lanes: int, big: bool) -> None:
    """(L, R, T) view: the output loop over (L, T/Ti) is fused and parallel; every stage
    computes its Ti columns there (on the stack), with the reduction loop outside the
    vectorized columns."""
    out_block = blocks[-1]
    loops = sch.get_loops(out_block)
    l_loop, t_loop = loops[0], loops[1]
    t = _extent(sch, t_loop)
    ti = _chunk(t, lanes)
    fused = l_loop
    if ti < t:
        to, _ = sch.split(t_loop, [None, ti])
        fused = sch.fuse(l_loop, to)
    for b in reversed(blocks[:-1]):
        sch.compute_at(b, fused)
    for b in blocks:
        _vectorize_columns(sch, b, lanes)
    if big and _extent(sch, fused) >= 2:
        sch.parallel(fused)


def _vectorize_columns(sch, block, lanes: int) -> None:
    """Loops under the fused output loop: [columns..., reductions...] ->
    [reductions..., columns (split by lanes, inner vectorized)]."""
    loops = sch.get_loops(block)[1:]
    n_red = sum(1 for iv in sch.get(block).iter_vars if iv.iter_type != 0)
    cols, reds = loops[:len(loops) - n_red], loops[len(loops) - n_red:]
    if not cols:
        return
    if reds:
        sch.reorder(*reds, *cols)
    c = sch.fuse(*cols) if len(cols) > 1 else cols[0]
    n = _extent(sch, c)
    if n % lanes == 0 and n >= lanes:
        _, inner = sch.split(c, [None, lanes])
        sch.vectorize(inner)


def _vectorize_part(sch, block) -> None:
    """Partial stage: loops [lane, reductions...] -> [reductions..., lane(vectorized)]."""
    loops = sch.get_loops(block)
    n_red = sum(1 for iv in sch.get(block).iter_vars if iv.iter_type != 0)
    lane, reds = loops[-1 - n_red], loops[-n_red:]
    sch.reorder(*reds, lane)
    sch.vectorize(lane)


def _schedule_kept_axis(sch, block, epilogue, n_trail: int, lanes: int, big: bool) -> None:
    """Reduction loops outside the trailing kept axes, which are fused and vectorized."""
    loops = sch.get_loops(block)
    n_sp = _n_spatial(sch, block)
    lead, trail, reds = loops[:n_sp - n_trail], loops[n_sp - n_trail:n_sp], loops[n_sp:]
    sch.reorder(*reds, *trail)
    row_ok = _extent(sch, trail[-1]) % lanes == 0     # else fusing makes lanes div/mod their index
    if row_ok:
        t = sch.fuse(*trail) if len(trail) > 1 else trail[0]
        _, ti = sch.split(t, [None, lanes])
        sch.vectorize(ti)
    f = None
    if lead:
        f = sch.fuse(*lead) if len(lead) > 1 else lead[0]
        if big and _extent(sch, f) >= 2:
            sch.parallel(f)
    if epilogue is not None:
        if f is not None:
            sch.reverse_compute_at(epilogue, f)
        ep = sch.get_loops(epilogue)[1 if f is not None else 0:]
        if ep and row_ok:
            e = sch.fuse(*ep) if len(ep) > 1 else ep[0]
            _, ei = sch.split(e, [None, lanes])
            sch.vectorize(ei)


# ----------------------------------------------------------------------------- reduce_*


def _setup(spec: KernelSpec, axes: Sequence[int] | None = None, keepdims: bool | None = None):
    """(x placeholder in the computed view, its geometry) after checking the real shapes."""
    t = spec.inputs[0]
    rank = len(t.shape)
    axes = _axes(spec, rank) if axes is None else list(axes)
    keepdims = bool(int(spec.attrs.get("keepdims", 1))) if keepdims is None else keepdims
    real = _Reduction(t.shape, axes, keepdims)
    if tuple(real.shape) != out_shape(spec):
        raise CompileError(f"{spec.op}: reducing {list(t.shape)} over axes {axes} (keepdims={int(keepdims)}) "
                           f"gives {real.shape}, output is {list(out_shape(spec))}")
    red = _view(t.shape, axes, keepdims)
    return te.placeholder(tuple(red.in_shape), t.dtype, name="x"), red


def _load(x: te.Tensor, acc: str):
    def val(o, idx):
        v = x(*idx)
        return v if dt(v) == acc else v.astype(acc)
    return val


def _finish(spec: KernelSpec, x: te.Tensor, red: _Reduction, y: te.Tensor) -> tvm.tirx.PrimFunc:
    lanes = vector_lanes(spec, dt(y))
    return flat_prim_func(spec, [x], [y], [spec.inputs[0].shape, out_shape(spec)], _schedule_for(red, lanes))


def _sum_like(spec: KernelSpec, square: bool, mean: bool, sqrt: bool):
    x, red = _setup(spec)
    src, odt = dt(x), out_dtype(spec)
    if src == "bool":
        raise CompileError(f"{spec.op}: bool input is not supported")
    if is_float(src):
        acc = _acc_dtype(src)
    elif mean or sqrt:
        acc = "uint64" if is_uint(src) else "int64"
    else:
        acc = src
    load = _load(x, acc)

    def val(o, idx):
        v = load(o, idx)
        return v * v if square else v
    s = _reduce(spec, red, _sum, val, acc, "acc")
    if not mean and not sqrt and acc == odt:
        return _finish(spec, x, red, s)

    def fin(*o):
        r = s(*o)
        if mean:
            if is_float(acc):
                r = r / const(float(red.count), acc)
            else:
                r = tir.truncdiv(r, const(max(red.count, 1), acc))
        if sqrt:
            r = te.sqrt(r if is_float(acc) else r.astype("float64"))
        return cast(r, odt)
    return _finish(spec, x, red, te.compute(tuple(red.shape), fin, name="y"))


@kernel("reduce_sum")
def reduce_sum(spec: KernelSpec):
    return _sum_like(spec, False, False, False)


@kernel("reduce_sum_square")
def reduce_sum_square(spec: KernelSpec):
    return _sum_like(spec, True, False, False)


@kernel("reduce_mean")
def reduce_mean(spec: KernelSpec):
    return _sum_like(spec, False, True, False)


@kernel("reduce_l2")
def reduce_l2(spec: KernelSpec):
    return _sum_like(spec, True, False, True)


def _with_reducer(spec: KernelSpec, make_reducer: Callable, allow_bool: bool):
    x, red = _setup(spec)
    src, odt = dt(x), out_dtype(spec)
    if src == "bool" and not allow_bool:
        raise CompileError(f"{spec.op}: bool input is not supported")
    acc = _acc_dtype(src)
    s = _reduce(spec, red, make_reducer(acc), _load(x, acc), acc, "acc")
    if acc != odt:
        s = te.compute(tuple(red.shape), lambda *o: cast(s(*o), odt), name="y")
    return _finish(spec, x, red, s)


@kernel("reduce_max")
def reduce_max(spec: KernelSpec):
    return _with_reducer(spec, _max_reducer, True)


@kernel("reduce_min")
def reduce_min(spec: KernelSpec):
    return _with_reducer(spec, _min_reducer, True)


@kernel("reduce_prod")
def reduce_prod(spec: KernelSpec):
    return _with_reducer(spec, lambda acc: _prod, False)


@kernel("reduce_log_sum_exp")
def reduce_log_sum_exp(spec: KernelSpec):
    x, red = _setup(spec)
    src, odt = dt(x), out_dtype(spec)
    if not is_float(src):
        raise CompileError(f"{spec.op}: dtype {src} is not a float dtype")
    acc = _acc_dtype(src)
    load = _load(x, acc)

    def finite(o, idx):
        v = load(o, idx)
        return tir.Select(is_inf(v), const(float("-inf"), acc), v)
    mx = _reduce(spec, red, _max_reducer(acc), finite, acc, "mx")

    def shift(o):
        m = mx(*o)
        return tir.Select(is_inf(m), const(0.0, acc), m)   # no finite element: shift by 0
    s = _reduce(spec, red, _sum, lambda o, idx: exp(load(o, idx) - shift(o)), acc, "acc")
    y = te.compute(tuple(red.shape), lambda *o: cast(te.log(s(*o)) + shift(o), odt), name="y")
    return _finish(spec, x, red, y)


# ----------------------------------------------------------------------------- argmax/argmin


def _arg(spec: KernelSpec, is_max: bool):
    rank = len(spec.inputs[0].shape)
    axis = int(spec.attrs.get("axis", 0))
    if rank == 0 or not -rank <= axis < rank:
        raise CompileError(f"{spec.op}: axis {axis} out of range for rank {rank}")
    axis %= rank
    keepdims = bool(int(spec.attrs.get("keepdims", 1)))
    last = bool(int(spec.attrs.get("select_last_index", 0)))
    n = int(spec.inputs[0].shape[axis])
    x, red = _setup(spec, [axis], keepdims)
    axis = red.axes[0]                       # the reduced axis in the computed view
    if n == 0:
        raise CompileError(f"{spec.op}: cannot reduce an empty axis {axis}")
    if out_dtype(spec) != "int64":
        raise CompileError(f"{spec.op}: output dtype {out_dtype(spec)} is not int64")
    src = dt(x)
    acc = _acc_dtype(src) if src != "bool" else "int8"
    load = _load(x, acc)
    # pass 1: the extreme value (NaN-propagating); pass 2: its first (last) position
    ext = _reduce(spec, red, (_max_reducer if is_max else _min_reducer)(acc), load, acc, "ext")

    def position(o, idx):
        v, e = load(o, idx), ext(*o)
        hit = tir.EQ(v, e)
        if is_float(acc):
            hit = tir.Or(hit, tir.And(is_nan(v), is_nan(e)))
        k = idx[axis]
        k = k.var if isinstance(k, tir.IterVar) else k
        return tir.Select(hit, tir.Cast("int32", k), const(-1 if last else n, "int32"))
    # positions are found in int32 (twice the vector lanes of int64), widened at the end
    pos = _reduce(spec, red, _max_reducer("int32") if last else _min_reducer("int32"), position, "int32", "arg")
    y = te.compute(tuple(red.shape), lambda *o: pos(*o).astype("int64"), name="y")
    return _finish(spec, x, red, y)


@kernel("argmax")
def argmax(spec: KernelSpec):
    return _arg(spec, True)


@kernel("argmin")
def argmin(spec: KernelSpec):
    return _arg(spec, False)
