"""Converter registry and conversion context for the ONNX frontend.

A converter turns one ONNX node into edgec IR nodes. Converters are versioned like
ONNX ops: ``@converter("Softmax", since=13)`` applies to opset >= 13 until a converter
with a higher ``since`` exists. They live in ``edgec/frontend/onnx_ops/<group>.py``.

    @converter("LeakyRelu", since=6)
    def leaky_relu(ctx: ConvertContext) -> None:
        ctx.emit("leaky_relu", [ctx.input(0)], attrs={"alpha": ctx.attr("alpha", 0.01)})

The importer calls converters in topological order. ``ctx.emit`` infers output types at
once and, when every input is a constant and the op is foldable, folds the node through
the op's reference implementation instead of emitting it. So by the time a Reshape's
converter runs, a Shape -> Gather -> Concat chain feeding it has already become a
constant, and ``ctx.const(1)`` returns it.

A converter signals an unsupported construct with ``ctx.unsupported("reason")``: the
importer records it with the node, op and opset and carries on, so that one error lists
every problem in the model.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..ir import dtypes
from ..ir.graph import Graph, NameGen, Node, Value, const_value, freeze_attrs
from ..ir.ops import get as get_op

# op_type -> list of (since, fn), sorted by since
CONVERTERS: dict[str, list[tuple[int, Callable]]] = {}


def converter(op_type: str, since: int = 1, domain: str = ""):
    def deco(fn: Callable) -> Callable:
        key = f"{domain}::{op_type}" if domain else op_type
        lst = CONVERTERS.setdefault(key, [])
        if any(s == since for s, _ in lst):
            raise ValueError(f"converter {key} since {since} registered twice")
        lst.append((since, fn))
        lst.sort(key=lambda t: t[0])
        return fn
    return deco


def find_converter(op_type: str, opset: int, domain: str = "") -> Callable | None:
    key = f"{domain}::{op_type}" if domain else op_type
    best = None
    for since, fn in CONVERTERS.get(key, []):
        if since <= opset:
            best = fn
    return best


class Unsupported(Exception):
    """Raised inside a converter by ``ctx.unsupported``; caught and recorded by the importer."""


class GraphBuilder:
    """Accumulates nodes and values; shared by the frontend and by passes that rebuild graphs."""

    def __init__(self, values: dict[str, Value] | None = None, fold: bool = True):
        self.values: dict[str, Value] = dict(values or {})
        self.nodes: list[Node] = []
        self.names = NameGen(self.values)
        self.fold = fold

    def add_const(self, array: np.ndarray, base: str = "const") -> str:
        name = self.names(base)
        self.values[name] = const_value(name, np.asarray(array))
        return name

    def emit(self, op: str, inputs: Sequence[str], attrs: dict[str, Any] | None = None,
             outputs: Sequence[str] | None = None, n_outputs: int = 1, name: str = "") -> list[str]:
        """Add one node (or fold it); returns the output value names."""
        opdef = get_op(op)
        attrs = freeze_attrs(opdef.normalize_attrs(dict(attrs or {})))
        ins = [self.values[i] if i else None for i in inputs]
        types = opdef.infer(ins, attrs)
        if outputs is None:
            outputs = [self.names(f"{name or op}_out{k}" if len(types) > 1 else (name or op)) for k in range(len(types))]
        else:
            outputs = list(outputs)
            for o in outputs:
                self.names.taken.add(o)
        if len(outputs) != len(types):
            raise ValueError(f"{op}: {len(outputs)} output names for {len(types)} outputs")
        if self.fold and opdef.foldable and ins and all(v is None or v.const is not None for v in ins):
            arrays = [v.const if v is not None else None for v in ins]
            results = opdef.reference(*arrays, **attrs)
            for o, r, (dt, shp) in zip(outputs, results, types):
                r = np.asarray(r)
                if r.dtype.name != dt or tuple(r.shape) != tuple(shp):
                    raise AssertionError(f"{op} reference gave {r.dtype}{r.shape}, infer said {dt}{shp}")
                self.values[o] = const_value(o, r)
            return outputs
        for o, (dt, shp) in zip(outputs, types):
            self.values[o] = Value(o, dt, tuple(int(d) for d in shp))
        self.nodes.append(Node(op, tuple(inputs), tuple(outputs), attrs, name or outputs[0]))
        return outputs


class ConvertContext:
    """What a converter sees: the ONNX node, its inputs as IR values, and an emitter."""

    def __init__(self, builder: GraphBuilder, node, opset: int, rename: dict[str, str]):
        self.builder = builder
        self.node = node
        self.opset = opset
        self.rename = rename  # ONNX value name -> IR value name
        self._attrs = {a.name: a for a in node.attribute}

    # -- node inputs -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.node.name or (self.node.output[0] if self.node.output else self.node.op_type)

    @property
    def n_inputs(self) -> int:
        return len(self.node.input)

    def has_input(self, i: int) -> bool:
        return i < len(self.node.input) and self.node.input[i] != ""

    def input(self, i: int) -> str:
        """IR name of input ``i`` ("" when absent)."""
        if not self.has_input(i):
            return ""
        return self.rename[self.node.input[i]]

    def inputs(self) -> list[str]:
        return [self.input(i) for i in range(self.n_inputs)]

    def value(self, i: int) -> Value | None:
        return self.builder.values[self.input(i)] if self.has_input(i) else None

    def shape(self, i: int) -> tuple[int, ...]:
        return self.value(i).shape

    def dtype(self, i: int) -> str:
        return self.value(i).dtype

    def const(self, i: int, what: str = "") -> np.ndarray | None:
        """The constant value of input ``i`` (None when absent); unsupported when it is not constant."""
        v = self.value(i)
        if v is None:
            return None
        if v.const is None:
            self.unsupported(f"input {i} ({what or self.node.input[i]}) must be a constant "
                             f"(after folding), got a runtime tensor")
        return v.const

    # -- attributes --------------------------------------------------------------------------
    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def attr(self, name: str, default: Any = None) -> Any:
        import onnx
        a = self._attrs.get(name)
        if a is None:
            return default
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            return v.decode()
        if isinstance(v, list):
            return [x.decode() if isinstance(x, bytes) else x for x in v]
        if isinstance(v, onnx.TensorProto):
            from onnx import numpy_helper
            return numpy_helper.to_array(v)
        return v

    def check_attrs(self, allowed: dict[str, Any]) -> None:
        """Mark unsupported any attribute not in ``allowed`` or whose value is not the allowed one.

        ``allowed`` maps attribute name -> None (any value is handled) or a predicate.
        """
        for name in self._attrs:
            if name not in allowed:
                self.unsupported(f"attribute {name!r} is not supported")
            check = allowed[name]
            if check is not None and not check(self.attr(name)):
                self.unsupported(f"attribute {name}={self.attr(name)!r} is not supported")

    # -- emitting ----------------------------------------------------------------------------
    def emit(self, op: str, inputs: Sequence[str], attrs: dict[str, Any] | None = None,
             n_outputs: int = 1) -> list[str]:
        return self.builder.emit(op, inputs, attrs, n_outputs=n_outputs, name=self.name)

    def emit1(self, op: str, inputs: Sequence[str], attrs: dict[str, Any] | None = None) -> str:
        return self.emit(op, inputs, attrs)[0]

    def add_const(self, array, dtype: str | None = None) -> str:
        arr = np.asarray(array, dtype=dtype) if dtype else np.asarray(array)
        return self.builder.add_const(arr, base=f"{self.name}_c")

    def set_output(self, i: int, ir_name: str) -> None:
        """Bind ONNX output ``i`` of this node to IR value ``ir_name``."""
        if i < len(self.node.output) and self.node.output[i]:
            self.rename[self.node.output[i]] = ir_name

    def set_outputs(self, ir_names: Sequence[str]) -> None:
        for i, n in enumerate(ir_names):
            self.set_output(i, n)

    def unsupported(self, reason: str):
        raise Unsupported(reason)

    def require_dtype(self, i: int, allowed: Sequence[str]) -> None:
        v = self.value(i)
        if v is not None and v.dtype not in allowed:
            self.unsupported(f"input {i} has dtype {v.dtype}; supported: {', '.join(allowed)}")


def build_graph(builder: GraphBuilder, inputs: list[str], outputs: list[str], name: str,
                meta: dict | None = None) -> Graph:
    used = set(inputs) | set(outputs) | {i for n in builder.nodes for i in n.inputs if i} \
        | {o for n in builder.nodes for o in n.outputs}
    values = {k: v for k, v in builder.values.items() if k in used}
    return Graph(list(builder.nodes), values, list(inputs), list(outputs), name, dict(meta or {}))


__all__ = ["converter", "find_converter", "ConvertContext", "GraphBuilder", "Unsupported", "build_graph",
           "dtypes"]
