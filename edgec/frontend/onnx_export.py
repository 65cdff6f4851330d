"""edgec IR (fp32) -> ONNX, so that a graph changed by a pass (a pruned model) can be saved and run
in onnxruntime or any other ONNX tool.

    proto = export_onnx(graph)              # onnx.ModelProto, opset 20
    onnx.save(proto, "pruned.onnx")

- Covers the ops that appear in CNN / MLP graphs: conv, conv_transpose, dense (-> Gemm transB=1),
  matmul, batch_norm, instance_norm, layer_norm, lrn, the unary and binary elementwise ops, clip,
  cast, copy (-> Identity), prelu, where, max/avg/global pools, concat, split, slice, pad, reshape
  (Flatten, Squeeze and Unsqueeze all became reshape on import), transpose, depth_to_space,
  space_to_depth, softmax / log_softmax, the reduce ops, argmax / argmin, gather. They are written
  whatever the dtype, so edgec/frontend/qdq_export.py reuses them for integer tensors. Anything
  else (the int8 ops: qdq_export.py; resize, ...) raises
  ``OnnxExportError`` naming every unsupported node at once.
- Node names are kept, made distinct where the IR repeats one (onnxruntime rejects duplicates).
- Constants become initializers; graph inputs and outputs keep their names, dtypes and the
  static shapes of the IR.
- Import then export is not the identity on the ONNX side (Gemm alpha is folded, Flatten is a
  Reshape, ...) but computes the same function.
"""
from __future__ import annotations

import numpy as np

from ..errors import EdgecError
from ..ir.graph import Graph, NameGen, Node

OPSET = 20


class OnnxExportError(EdgecError):
    """The graph holds ops (or dtypes) that export_onnx cannot write as ONNX."""


_UNARY = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "erf": "Erf", "sqrt": "Sqrt", "exp": "Exp",
          "log": "Log", "abs": "Abs", "neg": "Neg", "reciprocal": "Reciprocal", "floor": "Floor", "ceil": "Ceil",
          "round": "Round", "sign": "Sign", "sin": "Sin", "cos": "Cos", "softplus": "Softplus",
          "softsign": "Softsign", "hard_swish": "HardSwish", "not": "Not", "copy": "Identity"}
_UNARY_ATTRS = {"leaky_relu": "LeakyRelu", "elu": "Elu", "selu": "Selu", "hard_sigmoid": "HardSigmoid",
                "gelu": "Gelu"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "max": "Max", "min": "Min",
           "equal": "Equal", "less": "Less", "less_equal": "LessOrEqual", "greater": "Greater",
           "greater_equal": "GreaterOrEqual", "and": "And", "or": "Or", "xor": "Xor", "where": "Where",
           "prelu": "PRelu", "matmul": "MatMul", "gather": "Gather", "gather_elements": "GatherElements"}
_REDUCE = {"reduce_sum": "ReduceSum", "reduce_mean": "ReduceMean", "reduce_max": "ReduceMax",
           "reduce_min": "ReduceMin", "reduce_prod": "ReduceProd", "reduce_l2": "ReduceL2",
           "reduce_sum_square": "ReduceSumSquare", "reduce_log_sum_exp": "ReduceLogSumExp"}


class _Writer:
    def __init__(self, graph: Graph):
        self.g = graph
        self.nodes = []
        self.inits = []
        self.names = NameGen(graph.values)
        self.node_names = NameGen(())   # ONNX (onnxruntime) wants distinct node names

    def const(self, base: str, array) -> str:
        from onnx import numpy_helper
        name = self.names(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def emit(self, op_type: str, inputs, outputs, name: str, **attrs) -> None:
        from onnx import helper
        name = self.node_names(name or f"{op_type}_{outputs[0]}")
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=name, **attrs))


def _write_node(w: _Writer, n: Node) -> None:
    a, ins, outs = n.attrs, list(n.inputs), list(n.outputs)
    op = n.op
    if op in _UNARY:
        w.emit(_UNARY[op], ins, outs, n.name)
    elif op in _UNARY_ATTRS:
        w.emit(_UNARY_ATTRS[op], ins, outs, n.name, **dict(a))
    elif op in _BINARY:
        w.emit(_BINARY[op], ins, outs, n.name, **({"axis": int(a["axis"])} if "axis" in a else {}))
    elif op == "mod":
        w.emit("Mod", ins, outs, n.name, fmod=int(a["fmod"]))
    elif op == "conv":
        k = tuple(w.g.values[ins[1]].shape[2:])
        lo, hi = a.get("act_min"), a.get("act_max")
        residual = ins[3] if len(ins) > 3 and ins[3] else None
        base = n.name or outs[0]
        act = lo is not None or hi is not None
        conv_out = outs if not act and residual is None else [w.names(f"{base}_conv")]
        w.emit("Conv", [i for i in ins[:3] if i], conv_out, n.name, kernel_shape=list(k), strides=list(a["strides"]),
               pads=list(a["pads"]), dilations=list(a["dilations"]), group=int(a["group"]))
        if residual is not None:     # a fused residual add (edgec.passes.fuse_activation) as ONNX Add
            sum_out = [w.names(f"{base}_preact")] if act else outs
            w.emit("Add", conv_out + [residual], sum_out, f"{base}_residual")
            conv_out = sum_out
        if act:     # a fused relu / clip (edgec.passes.fuse_activation) as ONNX Clip
            dt = np.dtype(w.g.values[outs[0]].dtype)
            bounds = [w.const(f"{n.name or outs[0]}_min", np.asarray(lo, dt)) if lo is not None else "",
                      w.const(f"{n.name or outs[0]}_max", np.asarray(hi, dt)) if hi is not None else ""]
            while bounds and not bounds[-1]:
                bounds.pop()
            w.emit("Clip", conv_out + bounds, outs, f"{n.name or outs[0]}_act")
    elif op == "conv_transpose":
        if any(int(v) < 0 for v in a["pads"]):
            raise KeyError(op)   # an output_shape beyond the natural one: no ONNX attribute form
        k = tuple(w.g.values[ins[1]].shape[2:])
        w.emit("ConvTranspose", [i for i in ins if i], outs, n.name, kernel_shape=list(k), strides=list(a["strides"]),
               pads=list(a["pads"]), dilations=list(a["dilations"]), group=int(a["group"]),
               output_padding=list(a["output_padding"]))
    elif op == "depth_to_space":
        w.emit("DepthToSpace", ins, outs, n.name, blocksize=int(a["blocksize"]), mode=str(a["mode"]))
    elif op == "space_to_depth":
        if a["mode"] == "DCR":   # ONNX SpaceToDepth has no mode: it is the inverse of DCR
            w.emit("SpaceToDepth", ins, outs, n.name, blocksize=int(a["blocksize"]))
        else:                    # CRD: the same moves written out
            nb, c, hh, ww = w.g.values[ins[0]].shape
            b = int(a["blocksize"])
            base = n.name or outs[0]
            t1, t2 = w.names(f"{base}_split"), w.names(f"{base}_moved")
            w.emit("Reshape", [ins[0], w.const(f"{base}_shape1", np.asarray((nb, c, hh // b, b, ww // b, b), np.int64))],
                   [t1], f"{base}_reshape1")
            w.emit("Transpose", [t1], [t2], f"{base}_transpose", perm=[0, 1, 3, 5, 2, 4])
            w.emit("Reshape", [t2, w.const(f"{base}_shape2", np.asarray((nb, c * b * b, hh // b, ww // b), np.int64))],
                   outs, n.name)
    elif op == "dense":
        w.emit("Gemm", [i for i in ins if i], outs, n.name, transB=1)
    elif op == "batch_norm":
        w.emit("BatchNormalization", ins, outs, n.name, epsilon=float(a["epsilon"]))
    elif op == "instance_norm":
        w.emit("InstanceNormalization", ins, outs, n.name, epsilon=float(a["epsilon"]))
    elif op == "layer_norm":
        w.emit("LayerNormalization", [i for i in ins if i], outs, n.name, axis=int(a["axis"]),
               epsilon=float(a["epsilon"]))
    elif op == "clip":
        dt = np.dtype(w.g.values[ins[0]].dtype)
        lo = w.const(f"{n.name or outs[0]}_min", np.asarray(a["min"], dt)) if a["min"] is not None else ""
        hi = w.const(f"{n.name or outs[0]}_max", np.asarray(a["max"], dt)) if a["max"] is not None else ""
        w.emit("Clip", [ins[0], lo, hi] if hi else ([ins[0], lo] if lo else ins[:1]), outs, n.name)
    elif op == "cast":
        from onnx import helper
        w.emit("Cast", ins, outs, n.name, to=int(helper.np_dtype_to_tensor_dtype(np.dtype(a["to"]))))
    elif op in ("max_pool", "avg_pool"):
        extra = {"count_include_pad": int(a["count_include_pad"])} if op == "avg_pool" else {}
        w.emit("MaxPool" if op == "max_pool" else "AveragePool", ins, outs[:1], n.name,
               kernel_shape=list(a["kernel"]), strides=list(a["strides"]), pads=list(a["pads"]),
               dilations=list(a["dilations"]), **extra)
    elif op == "lrn":
        w.emit("LRN", ins, outs, n.name, size=int(a["size"]), alpha=float(a["alpha"]), beta=float(a["beta"]),
               bias=float(a["bias"]))
    elif op == "global_avg_pool":
        w.emit("GlobalAveragePool", ins, outs, n.name)
    elif op == "global_max_pool":
        w.emit("GlobalMaxPool", ins, outs, n.name)
    elif op in ("softmax", "log_softmax"):
        w.emit("Softmax" if op == "softmax" else "LogSoftmax", ins, outs, n.name, axis=int(a["axis"]))
    elif op == "concat":
        w.emit("Concat", ins, outs, n.name, axis=int(a["axis"]))
    elif op == "reshape":
        shape = w.const(f"{n.name or outs[0]}_shape", np.asarray(a["shape"], np.int64))
        w.emit("Reshape", [ins[0], shape], outs, n.name)
    elif op == "transpose":
        w.emit("Transpose", ins, outs, n.name, perm=list(a["perm"]))
    elif op == "split":
        sizes = w.const(f"{n.name or outs[0]}_split", np.asarray(a["sizes"], np.int64))
        w.emit("Split", [ins[0], sizes], outs, n.name, axis=int(a["axis"]))
    elif op == "slice":
        starts = np.asarray(a["starts"], np.int64)
        steps = np.asarray(a["steps"], np.int64)
        ends = starts + np.asarray(a["out_shape"], np.int64) * steps
        ends = np.where(ends < 0, np.iinfo(np.int64).min, ends)   # a negative step running past index 0
        base = n.name or outs[0]
        w.emit("Slice", [ins[0], w.const(f"{base}_starts", starts), w.const(f"{base}_ends", ends),
                         w.const(f"{base}_axes", np.arange(len(starts), dtype=np.int64)),
                         w.const(f"{base}_steps", steps)], outs, n.name)
    elif op == "pad":
        pads = w.const(f"{n.name or outs[0]}_pads", np.asarray(a["pads"], np.int64))
        dt = np.dtype(w.g.values[ins[0]].dtype)
        value = w.const(f"{n.name or outs[0]}_value", np.asarray(a["value"], dt))
        w.emit("Pad", [ins[0], pads, value], outs, n.name, mode=str(a["mode"]))
    elif op == "expand":
        w.emit("Expand", [ins[0], w.const(f"{n.name or outs[0]}_shape", np.asarray(a["shape"], np.int64))], outs, n.name)
    elif op == "tile":
        w.emit("Tile", [ins[0], w.const(f"{n.name or outs[0]}_repeats", np.asarray(a["repeats"], np.int64))], outs, n.name)
    elif op in _REDUCE:
        axes = w.const(f"{n.name or outs[0]}_axes", np.asarray(a["axes"], np.int64))
        w.emit(_REDUCE[op], [ins[0], axes], outs, n.name, keepdims=int(a["keepdims"]))
    elif op in ("argmax", "argmin"):
        w.emit("ArgMax" if op == "argmax" else "ArgMin", ins, outs, n.name, axis=int(a["axis"]),
               keepdims=int(a["keepdims"]), select_last_index=int(a["select_last_index"]))
    else:
        raise KeyError(op)


def export_onnx(graph: Graph, opset: int = OPSET):
    """The ONNX ModelProto computing what ``graph`` computes (static shapes, one default-domain opset)."""
    import onnx
    from onnx import helper, numpy_helper

    w = _Writer(graph)
    bad = []
    for n in graph.nodes:
        try:
            _write_node(w, n)
        except KeyError:
            bad.append(f"{n.name or n.outputs[0]!r} ({n.op})")
    if bad:
        raise OnnxExportError(f"cannot export to ONNX: {len(bad)} node(s) with unsupported ops: " + ", ".join(bad))
    used = {i for n in graph.nodes for i in n.inputs if i}
    for name in sorted(used):
        v = graph.values[name]
        if v.const is not None:
            w.inits.append(numpy_helper.from_array(np.asarray(v.const), name))

    def info(name: str):
        v = graph.values[name]
        try:
            code = helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype))
        except (KeyError, ValueError, TypeError):
            raise OnnxExportError(f"value {name!r}: dtype {v.dtype} has no ONNX type") from None
        return helper.make_tensor_value_info(name, code, list(v.shape))

    g = helper.make_graph(w.nodes, graph.name or "graph", [info(i) for i in graph.inputs],
                          [info(o) for o in graph.outputs], initializer=w.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgec")
    model.ir_version = min(model.ir_version, 10)   # readable by onnxruntime releases that cap the IR version
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise OnnxExportError(f"exported model does not pass onnx.checker: {e}") from None
    return model


__all__ = ["export_onnx", "OnnxExportError", "OPSET"]
