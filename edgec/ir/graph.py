"""The edgec IR: a plain, typed, static-shape graph.

    Value  a named tensor: dtype, static shape, optional constant ndarray, optional qparams
    Node   op name (a key of edgec.ir.ops.OPS), input value names, output value names, attrs
    Graph  nodes in topological order, values by name, graph inputs and outputs

Conventions
- Single assignment: every value is produced by exactly one node, or is a graph input,
  or is a constant (``Value.const`` set). Constants are never produced by nodes.
- An absent optional input is the empty string "".
- Attributes are normalized by the frontend (see docs/ops.md): plain Python ints, floats,
  strings, tuples of those. No ONNX objects survive into the IR.
- Passes never mutate a Graph they receive; they build a new one (``Graph.copy`` and the
  helpers below make that cheap: Values and Nodes are immutable and shared).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

import numpy as np

from . import dtypes


@dataclass(frozen=True)
class QParams:
    """Affine quantization parameters: real = scale * (q - zero_point).

    ``axis`` is None for per-tensor, else the channel axis of per-channel scales.
    """
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None


@dataclass(frozen=True, eq=False)
class Value:
    name: str
    dtype: str
    shape: tuple[int, ...]
    const: np.ndarray | None = None
    qparams: QParams | None = None

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def nbytes(self) -> int:
        return dtypes.nbytes(self.dtype, self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    def __repr__(self) -> str:
        c = " const" if self.const is not None else ""
        return f"Value({self.name!r}, {self.dtype}{list(self.shape)}{c})"


def freeze_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Normalize attribute values: lists become tuples, numpy scalars become Python scalars."""
    def norm(v):
        if isinstance(v, (list, tuple)):
            return tuple(norm(x) for x in v)
        if isinstance(v, np.ndarray):
            return tuple(norm(x) for x in v.tolist()) if v.ndim else norm(v.item())
        if isinstance(v, np.generic):
            return v.item()
        return v
    return {k: norm(v) for k, v in sorted(attrs.items())}


@dataclass(frozen=True, eq=False)
class Node:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""

    def __repr__(self) -> str:
        return f"Node({self.name!r}: {self.op}({', '.join(self.inputs)}) -> {', '.join(self.outputs)})"


@dataclass
class Graph:
    nodes: list[Node]
    values: dict[str, Value]
    inputs: list[str]
    outputs: list[str]
    name: str = "graph"
    # free-form metadata carried along by passes (e.g. source opset, producer)
    meta: dict[str, Any] = field(default_factory=dict)

    # -- queries -------------------------------------------------------------------------
    def value(self, name: str) -> Value:
        return self.values[name]

    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def constants(self) -> list[Value]:
        return [v for v in self.values.values() if v.const is not None]

    def copy(self) -> "Graph":
        return Graph(list(self.nodes), dict(self.values), list(self.inputs), list(self.outputs),
                     self.name, dict(self.meta))

    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)


class NameGen:
    """Fresh names that do not collide with existing values: ``base``, ``base_1``, ..."""

    def __init__(self, taken: Iterable[str]):
        self.taken = set(taken)
        self.counter = itertools.count(1)

    def __call__(self, base: str) -> str:
        if base not in self.taken:
            self.taken.add(base)
            return base
        while True:
            name = f"{base}_{next(self.counter)}"
            if name not in self.taken:
                self.taken.add(name)
                return name


def const_value(name: str, array: np.ndarray) -> Value:
    array = np.asarray(array)
    if array.dtype.name not in dtypes.SUPPORTED:
        raise TypeError(f"constant {name!r}: dtype {array.dtype} is not supported")
    array = np.require(array, requirements="C").copy() if not array.flags.c_contiguous else array.copy()
    array.setflags(write=False)
    return Value(name, array.dtype.name, tuple(int(d) for d in array.shape), const=array)


def with_const(value: Value, array: np.ndarray) -> Value:
    return replace(const_value(value.name, array), qparams=value.qparams)
