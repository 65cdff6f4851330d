"""Run an edgec Graph node by node through ``OpDef.reference``.

- ``feeds`` must give every graph input with its exact dtype and shape (a wrong name,
  a missing input, a wrong shape or dtype raises ``RuntimeInputError``);
- constants come from ``Value.const``;
- each node's results are checked against the types the graph declares for its outputs, so a
  reference that disagrees with its op's ``infer`` fails loudly (``ReferenceRunError``) instead
  of silently feeding a wrong tensor downstream.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import EdgecError, RuntimeInputError
from ..ir.graph import Graph
from ..ir.ops import get as get_op


class ReferenceRunError(EdgecError):
    """An op's reference implementation failed or returned a tensor of the wrong type."""


def _check_feeds(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    unknown = set(feeds) - set(graph.inputs)
    if unknown:
        raise RuntimeInputError(f"unknown input(s) {sorted(unknown)}; the graph's inputs are {graph.inputs}")
    env: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        if name not in feeds:
            raise RuntimeInputError(f"input {name!r} is missing")
        v = graph.values[name]
        a = np.asarray(feeds[name])
        if a.dtype.name != v.dtype:
            raise RuntimeInputError(f"input {name!r}: dtype {a.dtype.name}, expected {v.dtype}")
        if tuple(a.shape) != tuple(v.shape):
            raise RuntimeInputError(f"input {name!r}: shape {list(a.shape)}, expected {list(v.shape)}")
        env[name] = a
    return env


def run_graph(graph: Graph, feeds: Mapping[str, np.ndarray], keep_all: bool = False) -> dict[str, np.ndarray]:
    """Evaluate ``graph`` on ``feeds``; returns {output name: array} (every value if ``keep_all``)."""
    env = _check_feeds(graph, feeds)
    for v in graph.values.values():
        if v.const is not None:
            env[v.name] = v.const
    for node in graph.nodes:
        opdef = get_op(node.op)
        args = [env[i] if i else None for i in node.inputs]
        try:
            results = opdef.reference(*args, **node.attrs)
        except (ValueError, TypeError, IndexError, ArithmeticError) as e:
            raise ReferenceRunError(f"node {node.name!r} ({node.op}): reference failed: {type(e).__name__}: {e}") from e
        if len(results) != len(node.outputs):
            raise ReferenceRunError(f"node {node.name!r} ({node.op}): reference gave {len(results)} outputs, "
                                 f"the node has {len(node.outputs)}")
        for o, r in zip(node.outputs, results):
            r = np.asarray(r)
            want = graph.values[o]
            if r.dtype.name != want.dtype or tuple(r.shape) != tuple(want.shape):
                raise ReferenceRunError(f"node {node.name!r} ({node.op}): output {o!r} is {r.dtype.name}{list(r.shape)}, "
                                     f"the graph declares {want.dtype}{list(want.shape)}")
            env[o] = r
    if keep_all:
        return env
    return {name: env[name] for name in graph.outputs}
