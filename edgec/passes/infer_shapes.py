"""Shape inference: recompute every node's output types from its op's ``infer``.

Preconditions: graph inputs and constants have types (the frontend binds input shapes).
Effect: output Values of every node get the dtype and shape their op infers; nothing else changes.
Invariants after: ``verify(graph)`` holds for types.
Options: none.
Example:
    before  %y: float32[0] = relu(x)          (stale type)
    after   %y: float32[1,4] = relu(x)
Tests: tests/passes/test_infer_shapes.py
"""
from __future__ import annotations

from dataclasses import replace

from ..errors import ShapeError
from ..ir.graph import Graph
from ..ir.ops import get


def infer_shapes(graph: Graph, options=None) -> Graph:
    g = graph.copy()
    for n in g.nodes:
        ins = [g.values[i] if i else None for i in n.inputs]
        try:
            types = get(n.op).infer(ins, n.attrs)
        except (ValueError, TypeError, IndexError) as e:
            raise ShapeError(f"node {n.name!r} ({n.op}): {e}") from None
        if len(types) != len(n.outputs):
            raise ShapeError(f"node {n.name!r} ({n.op}): infers {len(types)} outputs, has {len(n.outputs)}")
        for o, (dt, shp) in zip(n.outputs, types):
            v = g.values[o]
            if v.dtype != dt or tuple(v.shape) != tuple(shp):
                g.values[o] = replace(v, dtype=dt, shape=tuple(int(d) for d in shp))
    return g
