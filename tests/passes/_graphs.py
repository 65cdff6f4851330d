"""Small IR graphs built directly (no ONNX) for pass tests."""
from __future__ import annotations

import numpy as np

from edgec.frontend.registry import GraphBuilder, build_graph
from edgec.ir.graph import Value


def builder(inputs: dict[str, tuple[str, tuple[int, ...]]], fold: bool = False) -> GraphBuilder:
    b = GraphBuilder(fold=fold)
    for name, (dt, shape) in inputs.items():
        b.values[name] = Value(name, dt, shape)
        b.names.taken.add(name)
    return b


def finish(b: GraphBuilder, inputs, outputs, name="g"):
    return build_graph(b, list(inputs), list(outputs), name)


def rng(seed=0):
    return np.random.default_rng(seed)
