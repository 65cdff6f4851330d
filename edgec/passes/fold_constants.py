"""Constant folding: evaluate nodes whose inputs are all constants with the op's numpy reference.

Preconditions: shapes inferred.
Effect: each foldable node whose inputs are all constant is removed and its outputs become
constants (computed by ``OpDef.reference``, the single source of op semantics). Repeats
until nothing changes, so chains (Shape -> Gather -> Concat -> Reshape) fold completely.
Nodes with ``foldable=False`` (``copy``) and nodes producing graph outputs of such ops stay.
Graph outputs that become constants keep a ``copy`` node so the runtime still writes them.
Invariants after: no foldable node has only constant inputs.
Options: ``max_bytes`` (FoldOptions): results larger than this stay computed at run time,
so folding never blows the blob up (e.g. an Expand of a scalar to a huge tensor).
Example:
    before  %s: int64[2] = reshape(c0) {shape=(2,)}     (c0 const)
            %y: float32[2,3] = add(x, s2)
    after   const s: int64[2]
Tests: tests/passes/test_fold_constants.py
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.graph import Graph, NameGen, Node, Value, const_value
from ..ir.ops import get


@dataclass(frozen=True)
class FoldOptions:
    max_bytes: int = 64 << 20   # never materialize a folded constant larger than this


def fold_constants(graph: Graph, options: FoldOptions | None = None) -> Graph:
    opts = options or FoldOptions()
    g = graph.copy()
    nodes: list[Node] = []
    for n in g.nodes:
        opdef = get(n.op)
        ins = [g.values[i] if i else None for i in n.inputs]
        if (opdef.foldable and ins and all(v is None or v.const is not None for v in ins)
                and sum(g.values[o].nbytes for o in n.outputs) <= opts.max_bytes):
            results = opdef.reference(*[v.const if v is not None else None for v in ins], **n.attrs)
            for o, r in zip(n.outputs, results):
                r = np.asarray(r)
                want = g.values[o]
                if r.dtype.name != want.dtype or tuple(r.shape) != tuple(want.shape):
                    raise AssertionError(f"fold {n.name}: reference gave {r.dtype}{r.shape}, expected {want}")
                g.values[o] = const_value(o, r)
            continue
        nodes.append(n)
    g.nodes = nodes
    # graph outputs must stay runtime tensors
    names = NameGen(g.values)
    for k, out in enumerate(list(g.outputs)):
        v = g.values[out]
        if v.const is not None:
            src = names(f"{out}_const")
            g.values[src] = const_value(src, v.const)
            g.values[out] = Value(out, v.dtype, v.shape)
            g.nodes.append(Node("copy", (src,), (out,), {}, f"{out}_copy"))
    return g
