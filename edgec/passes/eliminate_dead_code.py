"""Dead-code elimination: drop nodes whose outputs nothing uses, and values nothing references.

Preconditions: none.
Effect: removes every node none of whose outputs reaches a graph output; removes unused
values (constants included). Graph inputs are kept even when unused (they are the model's
interface).
Example:
    before  %a = relu(x); %b = exp(x); outputs (a)
    after   %a = relu(x)
Tests: tests/passes/test_eliminate_dead_code.py
"""
from __future__ import annotations

from ..ir.graph import Graph


def eliminate_dead_code(graph: Graph, options=None) -> Graph:
    live = set(graph.outputs)
    kept = []
    for n in reversed(graph.nodes):
        if any(o in live for o in n.outputs):
            kept.append(n)
            live.update(i for i in n.inputs if i)
    kept.reverse()
    used = live | set(graph.inputs) | {o for n in kept for o in n.outputs}
    values = {k: v for k, v in graph.values.items() if k in used}
    return Graph(kept, values, list(graph.inputs), list(graph.outputs), graph.name, dict(graph.meta))
