"""Helpers shared by kernel generators: placeholders, PrimFunc creation, a default schedule.

The default schedule is for memory-bound kernels (elementwise, data movement, reductions):
inline every injective producer block, then on each remaining block fuse the leading
spatial loops, split them into a parallel outer loop and a vectorized inner loop. Any
schedule step that TVM rejects is skipped: the unscheduled function is still correct.
"""
from __future__ import annotations

from typing import Callable, Sequence

import tvm
from tvm import te

from .registry import KernelSpec

# below this many output elements a kernel is not worth a parallel launch
PARALLEL_MIN_ELEMS = 1 << 15


def placeholder(spec: KernelSpec, i: int, name: str | None = None) -> te.Tensor:
    t = spec.inputs[i]
    if t is None:
        raise ValueError(f"{spec.op}: input {i} is absent")
    return te.placeholder(tuple(t.shape) if t.shape else (), _tvm_dtype(t.dtype), name=name or f"in{i}")


def placeholders(spec: KernelSpec) -> list[te.Tensor]:
    """One placeholder per present input, in order."""
    return [placeholder(spec, i) for i, t in enumerate(spec.inputs) if t is not None]


def _tvm_dtype(dtype: str) -> str:
    return "bool" if dtype == "bool" else dtype


def vector_lanes(spec: KernelSpec, dtype: str) -> int:
    bits = spec.target.vector_bits if hasattr(spec.target, "vector_bits") else 128
    elem = max(8, tvm.DataType(_tvm_dtype(dtype)).bits)
    return max(1, bits // elem)


def prim_func(spec: KernelSpec, ins: Sequence[te.Tensor], outs: Sequence[te.Tensor],
              schedule: Callable | None = None) -> tvm.tirx.PrimFunc:
    """PrimFunc over ``ins + outs``, scheduled by ``schedule(sch, spec)`` or the default schedule."""
    func = te.create_prim_func(list(ins) + list(outs))
    sched = schedule or default_schedule
    sch = tvm.s_tir.Schedule(func)
    try:
        sched(sch, spec)
    except Exception:  # a schedule is an optimization: fall back to the plain loops
        if schedule is not None:
            raise
        return func
    return sch.mod["main"]


def _is_spatial_only(sch, block) -> bool:
    return all(iv.iter_type == 0 for iv in sch.get(block).iter_vars)


def default_schedule(sch: tvm.s_tir.Schedule, spec: KernelSpec) -> None:
    blocks = sch.get_child_blocks(sch.get_sblock("root")) if _has_root(sch) else []
    outputs = set()
    func = sch.mod["main"]
    out_bufs = {p.name for p in func.params[len([t for t in spec.inputs if t is not None]):]}
    for b in blocks:
        blk = sch.get(b)
        if any(w.source.name in out_bufs for w in blk.writes):
            outputs.add(b)
    # inline producers that are pure elementwise/injective
    for b in blocks:
        if b in outputs:
            continue
        if _is_spatial_only(sch, b):
            try:
                sch.compute_inline(b)
            except Exception:
                pass
    for b in sch.get_child_blocks(sch.get_sblock("root")):
        _parallel_vectorize(sch, b, spec)


def _has_root(sch) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except Exception:
        return False


def _parallel_vectorize(sch, block, spec: KernelSpec) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    blk = sch.get(block)
    iter_types = [iv.iter_type for iv in blk.iter_vars]
    # leading loops bound to spatial iter vars (TE keeps iter var order == loop order)
    n_spatial = 0
    for t in iter_types:
        if t != 0:
            break
        n_spatial += 1
    n_spatial = min(n_spatial, len(loops))
    if n_spatial == 0:
        return
    total = 1
    for lp in loops[:n_spatial]:
        ext = sch.get(lp).extent
        if not isinstance(ext, tvm.tirx.IntImm):
            return
        total *= int(ext)
    all_spatial = n_spatial == len(loops)
    out_dtype = spec.outputs[0].dtype
    lanes = vector_lanes(spec, out_dtype)
    if all_spatial and n_spatial > 1 and int(sch.get(loops[-1]).extent) % lanes != 0:
        # fusing across rows whose length is not a multiple of the vector width makes every
        # lane decompose its index with div/mod (10-16x slower): parallelize the outer loops
        # and leave the row loop to LLVM's vectorizer
        outer = sch.fuse(*loops[:-1]) if n_spatial > 2 else loops[0]
        if total >= PARALLEL_MIN_ELEMS and int(sch.get(outer).extent) >= 2:
            sch.parallel(outer)
        return
    fused = sch.fuse(*loops[:n_spatial]) if n_spatial > 1 else loops[0]
    if all_spatial and total >= lanes * 2 and total % lanes == 0:
        outer, inner = sch.split(fused, [None, lanes])
        sch.vectorize(inner)
        fused = outer
        total //= lanes
    if total * (lanes if all_spatial else 1) >= PARALLEL_MIN_ELEMS and total >= 2:
        sch.parallel(fused)
