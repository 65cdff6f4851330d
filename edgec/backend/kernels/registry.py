"""Kernel generators: one per IR op, producing a scheduled TVM PrimFunc.

    @kernel("relu")
    def relu(spec: KernelSpec) -> tvm.tirx.PrimFunc:
        x = spec.placeholder(0)
        y = te.compute(x.shape, lambda *i: te.max(x(*i), tvm.tirx.const(0, x.dtype)), name="y")
        return spec.prim_func([x], [y])          # default schedule (parallel + vectorize)

The PrimFunc's parameters are the node's non-empty inputs in order, then its outputs
(destination passing). The build step names the function and compiles it; a generator only
decides the computation and its schedule, which may depend on ``spec.target``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

KERNELS: dict[str, Callable] = {}


def kernel(op: str):
    def deco(fn: Callable) -> Callable:
        if op in KERNELS:
            raise ValueError(f"kernel for {op!r} registered twice")
        KERNELS[op] = fn
        return fn
    return deco


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class KernelSpec:
    """What a kernel generator sees of a node: op, attrs, types (no values), and the target."""
    op: str
    attrs: dict[str, Any]
    inputs: tuple[TensorType | None, ...]   # None for an absent optional input
    outputs: tuple[TensorType, ...]
    target: Any                              # edgec.targets.Target
    # measured schedule choices (edgec.backend.tuning): sorted (choice point, value) pairs
    tuning: tuple = ()

    def key(self) -> str:
        """Stable identity of the kernel (for the compile cache): op, attrs, types, target, and the
        tuned choices if any (an untuned spec's key is the tuning records' key)."""
        import hashlib
        import json
        parts = [self.op, sorted((k, repr(v)) for k, v in self.attrs.items()),
                 [None if t is None else [t.dtype, list(t.shape)] for t in self.inputs],
                 [[t.dtype, list(t.shape)] for t in self.outputs],
                 self.target.cache_key()]
        if self.tuning:
            parts.append(repr(self.tuning))
        payload = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()
