"""ONNX model -> edgec IR.

    graph = import_onnx("model.onnx", input_shapes={"x": (1, 3, 48, 192)})

- Opsets 7 and newer of the default domain. Each node goes to the converter registered
  for the version of its op in effect at the model's opset (``onnx.defs``), so an op that
  did not change between opsets needs one converter.
- Dynamic dimensions must be bound through ``input_shapes``; an unbound one is an error
  naming the input and the dimension.
- Every unsupported op, attribute or dtype in the model is collected and reported in one
  ``UnsupportedModelError``; nothing partial is returned.
- Constants are folded while importing (see registry.py), so shape arithmetic
  (Shape/Gather/Concat/ConstantOfShape ...) never reaches the IR.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import ModelFormatError, ShapeError, UnsupportedItem, UnsupportedModelError
from ..ir import dtypes
from ..ir.graph import Graph, Value, const_value
from .registry import ConvertContext, GraphBuilder, Unsupported, build_graph, find_converter

MIN_OPSET = 7


def _load(model) -> tuple["onnx.ModelProto", str | None]:  # noqa: F821
    import onnx
    if isinstance(model, onnx.ModelProto):
        return model, None
    if isinstance(model, (bytes, bytearray)):
        try:
            m = onnx.load_from_string(bytes(model))
        except Exception as e:  # protobuf raises DecodeError and friends
            raise ModelFormatError(f"cannot parse ONNX bytes: {e}") from None
        return m, None
    path = Path(model)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelFormatError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    return m, str(path.parent)


def _tensor_to_array(t, base_dir: str | None) -> np.ndarray:
    from onnx import numpy_helper
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data
    if uses_external_data(t):
        if base_dir is None:
            raise ModelFormatError(f"initializer {t.name!r} uses external data but the model was not loaded from a file")
        load_external_data_for_tensor(t, base_dir)
    return numpy_helper.to_array(t)


def _parse_shape(name: str, vi) -> tuple[list, str]:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise ModelFormatError(f"graph input {name!r} is not a tensor")
    dims = []
    if tt.HasField("shape"):
        for d in tt.shape.dim:
            if d.HasField("dim_value") and d.dim_value >= 0:
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or "?")
    else:
        dims = None
    return dims, dtypes.onnx_dtype_name(tt.elem_type)


def import_onnx(model, input_shapes: Mapping[str, Sequence[int]] | None = None, name: str | None = None) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) into an edgec Graph."""
    import onnx
    import onnx.defs

    from . import onnx_ops  # noqa: F401  (registers converters)

    proto, base_dir = _load(model)
    input_shapes = {k: tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()}
    g = proto.graph
    opset = None
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version
    if opset is None:
        # no default-domain op at all (e.g. only ai.onnx.ml or training ops): nothing edgec knows
        others = sorted({imp.domain for imp in proto.opset_import})
        items = [UnsupportedItem(n.name or f"{n.op_type}_{k}", f"{n.domain}.{n.op_type}" if n.domain else n.op_type, 0,
                                 f"domain {n.domain or 'ai.onnx'!r} is not supported (model imports only {others})")
                 for k, n in enumerate(g.node)]
        raise UnsupportedModelError(items or [UnsupportedItem("<model>", "<opset>", 0,
                                                              "model has no opset import for the default ONNX domain")],
                                    name or g.name or "model")
    if opset < MIN_OPSET:
        raise UnsupportedModelError([UnsupportedItem("<model>", "<opset>", opset,
                                                     f"opset {opset} is older than {MIN_OPSET}")], name or g.name)
    max_opset = onnx.defs.onnx_opset_version()
    if opset > max_opset:
        raise UnsupportedModelError([UnsupportedItem("<model>", "<opset>", opset,
                                                     f"opset {opset} is newer than this onnx package knows ({max_opset})")],
                                    name or g.name)

    builder = GraphBuilder()
    rename: dict[str, str] = {}
    problems: list[UnsupportedItem] = []

    init_names = set()
    for t in g.initializer:
        init_names.add(t.name)
        arr = _tensor_to_array(t, base_dir)
        if arr.dtype.name not in dtypes.SUPPORTED:
            problems.append(UnsupportedItem(t.name, "<initializer>", opset, f"dtype {arr.dtype} is not supported"))
            continue
        builder.values[t.name] = const_value(t.name, arr)
        builder.names.taken.add(t.name)
        rename[t.name] = t.name
    for t in g.sparse_initializer:
        problems.append(UnsupportedItem(t.values.name, "<sparse_initializer>", opset, "sparse initializers are not supported"))

    graph_inputs: list[str] = []
    shape_errors: list[str] = []
    poisoned: set[str] = set()  # values whose producer failed: their users are not reported again
    for vi in g.input:
        if vi.name in init_names:
            continue  # an initializer listed as input (IR < 4 style): a constant
        if not vi.type.HasField("tensor_type"):
            kind = vi.type.WhichOneof("value") or "unknown"
            problems.append(UnsupportedItem(vi.name, "<graph input>", opset, f"{kind} inputs are not supported (tensors only)"))
            poisoned.add(vi.name)
            continue
        dims, dt = _parse_shape(vi.name, vi)
        if dt not in dtypes.SUPPORTED:
            problems.append(UnsupportedItem(vi.name, "<graph input>", opset, f"dtype {dt} is not supported"))
            poisoned.add(vi.name)
            continue
        if vi.name in input_shapes:
            bound = input_shapes[vi.name]
            if dims is not None:
                if len(bound) != len(dims):
                    shape_errors.append(f"input {vi.name!r}: given rank {len(bound)} shape {list(bound)}, model has rank {len(dims)} {dims}")
                    continue
                clash = [f"input {vi.name!r}: dim {k} is {d} in the model, given {b}"
                         for k, (b, d) in enumerate(zip(bound, dims)) if isinstance(d, int) and d != b]
                if clash:
                    shape_errors.extend(clash)
                    continue
            if any(b < 0 for b in bound):
                shape_errors.append(f"input {vi.name!r}: dims must be non-negative, given {list(bound)}")
                continue
            shape = tuple(bound)
        else:
            if dims is None:
                shape_errors.append(f"input {vi.name!r}: the model gives no shape; bind it with --input-shape {vi.name}=d0,d1,...")
                continue
            free = [f"{k} ({d})" for k, d in enumerate(dims) if not isinstance(d, int)]
            if free:
                shape_errors.append(f"input {vi.name!r}: dynamic dim(s) {', '.join(free)} of {dims}; "
                                    f"bind them with --input-shape {vi.name}=" + ",".join(str(d) if isinstance(d, int) else "N" for d in dims))
                continue
            shape = tuple(dims)
        if 0 in shape:
            problems.append(UnsupportedItem(vi.name, "<graph input>", opset,
                                            f"zero-sized tensors are not supported (shape {list(shape)})"))
            poisoned.add(vi.name)
            continue
        builder.values[vi.name] = Value(vi.name, dt, shape)
        builder.names.taken.add(vi.name)
        rename[vi.name] = vi.name
        graph_inputs.append(vi.name)
    unknown = set(input_shapes) - {vi.name for vi in g.input}
    if unknown:
        shape_errors.append(f"--input-shape names {sorted(unknown)} are not inputs of the model "
                            f"(inputs: {[vi.name for vi in g.input if vi.name not in init_names]})")
    unbound = {vi.name for vi in g.input} - set(graph_inputs) - init_names
    poisoned.update(unbound)  # their users are reported through the shape error, not as unsupported

    for idx, node in enumerate(g.node):
        node_name = node.name or f"{node.op_type}_{idx}"
        domain = node.domain
        if domain not in ("", "ai.onnx"):
            problems.append(UnsupportedItem(node_name, f"{domain}.{node.op_type}", opset, f"domain {domain!r} is not supported"))
            poisoned.update(node.output)
            continue
        try:
            op_version = onnx.defs.get_schema(node.op_type, opset, "").since_version
        except Exception:
            problems.append(UnsupportedItem(node_name, node.op_type, opset, "not an ONNX op at this opset"))
            poisoned.update(node.output)
            continue
        fn = find_converter(node.op_type, op_version)
        if fn is None:
            problems.append(UnsupportedItem(node_name, node.op_type, opset, f"op {node.op_type} (version {op_version}) is not supported"))
            poisoned.update(node.output)
            continue
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            problems.append(UnsupportedItem(node_name, node.op_type, opset, "subgraph attributes are not supported"))
            poisoned.update(node.output)
            continue
        missing = [i for i in node.input if i and i not in rename]
        if missing:
            if not all(i in poisoned for i in missing):
                bad = [i for i in missing if i not in poisoned]
                problems.append(UnsupportedItem(node_name, node.op_type, opset,
                                                f"input(s) {bad} are not defined before use"))
            poisoned.update(node.output)
            continue
        ctx = ConvertContext(builder, node, op_version, rename)
        try:
            fn(ctx)
        except Unsupported as e:
            problems.append(UnsupportedItem(node_name, node.op_type, opset, str(e)))
            poisoned.update(node.output)
            continue
        except (ValueError, TypeError, IndexError, KeyError) as e:
            # a converter or shape function rejected the node: report it with the node
            problems.append(UnsupportedItem(node_name, node.op_type, opset, f"{type(e).__name__}: {e}"))
            poisoned.update(node.output)
            continue
        for o in node.output:
            if o and o not in rename:
                problems.append(UnsupportedItem(node_name, node.op_type, opset, f"converter did not define output {o!r}"))
                poisoned.add(o)

    if problems:
        raise UnsupportedModelError(problems, name or g.name or "model")
    if shape_errors:
        raise ShapeError("cannot bind input shapes:\n  " + "\n  ".join(shape_errors))

    # graph outputs must be distinct, runtime-produced tensors: copy constants, inputs, repeats
    outputs: list[str] = []
    for vo in g.output:
        if vo.name not in rename:
            raise ModelFormatError(f"graph output {vo.name!r} is never produced")
        ir = rename[vo.name]
        v = builder.values[ir]
        if v.const is not None or ir in graph_inputs or ir in outputs:
            ir = builder.emit("copy", [ir], outputs=[builder.names(vo.name)], name=f"{vo.name}_copy")[0]
        outputs.append(ir)
    # rename the IR value of each output back to its ONNX name where it differs, so users see it
    graph = build_graph(builder, graph_inputs, outputs, name or g.name or "model",
                        meta={"opset": opset, "producer": proto.producer_name,
                              "output_names": [vo.name for vo in g.output]})
    return _rename_outputs(graph, [vo.name for vo in g.output])


def _rename_outputs(graph: Graph, names: list[str]) -> Graph:
    """Make each graph output's IR value carry the ONNX output name (when it is free)."""
    mapping = {}
    taken = set(graph.values)
    for ir, want in zip(graph.outputs, names):
        if ir != want and want not in taken:
            mapping[ir] = want
            taken.add(want)
    if not mapping:
        return graph
    from dataclasses import replace
    r = lambda n: mapping.get(n, n)  # noqa: E731
    nodes = [replace(n, inputs=tuple(r(i) for i in n.inputs), outputs=tuple(r(o) for o in n.outputs)) for n in graph.nodes]
    values = {r(k): replace(v, name=r(k)) for k, v in graph.values.items()}
    return Graph(nodes, values, [r(i) for i in graph.inputs], [r(o) for o in graph.outputs], graph.name, graph.meta)


def parse_input_shapes(specs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Parse CLI ``name=d0,d1,...`` specs (also accepts ``name=d0xd1``)."""
    out = {}
    for s in specs:
        if "=" not in s:
            raise ShapeError(f"--input-shape {s!r}: expected name=d0,d1,...")
        name, dims = s.rsplit("=", 1)
        try:
            out[name] = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise ShapeError(f"--input-shape {s!r}: dims must be integers") from None
    return out


__all__ = ["import_onnx", "parse_input_shapes", "os"]
