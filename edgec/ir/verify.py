"""Invariant checks of a Graph; run after every pass in tests and under EDGEC_VERIFY=1."""
from __future__ import annotations

from ..errors import EdgecError
from . import dtypes
from .graph import Graph
from .ops import get


class VerifyError(EdgecError):
    pass


def verify(g: Graph, check_shapes: bool = True) -> None:
    """Raise VerifyError if ``g`` breaks an IR invariant.

    Checks: every value referenced exists; single assignment; topological order; no node
    produces a constant; graph outputs are defined; dtypes supported; attrs match the
    op's schema; and (``check_shapes``) each node's output types equal its op's inference.
    """
    defined = set(g.inputs) | {v.name for v in g.values.values() if v.const is not None}
    for name in g.inputs:
        if name not in g.values:
            raise VerifyError(f"graph input {name!r} has no value")
        if g.values[name].const is not None:
            raise VerifyError(f"graph input {name!r} is a constant")
    produced: set[str] = set()
    for idx, n in enumerate(g.nodes):
        try:
            opdef = get(n.op)
        except KeyError as e:
            raise VerifyError(f"node {idx} {n.name!r}: {e}") from None
        for i in n.inputs:
            if i and i not in defined:
                raise VerifyError(f"node {idx} {n.name!r} ({n.op}) uses {i!r} before it is defined")
        lo, hi = opdef.arity
        if len(n.inputs) < lo or (hi is not None and len(n.inputs) > hi):
            raise VerifyError(f"node {n.name!r} ({n.op}): {len(n.inputs)} inputs, expected {opdef.arity}")
        if set(n.attrs) != set(opdef.attrs):
            raise VerifyError(f"node {n.name!r} ({n.op}): attrs {sorted(n.attrs)} != schema {sorted(opdef.attrs)}")
        for o in n.outputs:
            if o in produced or o in defined:
                raise VerifyError(f"value {o!r} assigned twice (node {n.name!r})")
            if o not in g.values:
                raise VerifyError(f"node {n.name!r} output {o!r} has no value")
            if g.values[o].const is not None:
                raise VerifyError(f"node {n.name!r} produces constant {o!r}")
            produced.add(o)
            defined.add(o)
        if check_shapes:
            ins = [g.values[i] if i else None for i in n.inputs]
            got = [(g.values[o].dtype, tuple(g.values[o].shape)) for o in n.outputs]
            want = [(d, tuple(s)) for d, s in opdef.infer(ins, n.attrs)]
            if got != want:
                raise VerifyError(f"node {n.name!r} ({n.op}): output types {got} != inferred {want}")
    for name in g.outputs:
        if name not in defined:
            raise VerifyError(f"graph output {name!r} is never defined")
    for v in g.values.values():
        if v.dtype not in dtypes.SUPPORTED:
            raise VerifyError(f"value {v.name!r} has unsupported dtype {v.dtype}")
