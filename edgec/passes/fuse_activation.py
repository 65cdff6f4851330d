"""Fuse a float conv's relu / clip into the conv (attrs ``act_min`` / ``act_max``).

Preconditions: shapes inferred; quantization done (the int8 pass has its own fusion into the
requantization clamp and reads float convs without these attributes, so this pass runs after it:
``edgec.compile`` and ``prepare_graph`` run it last, never inside the default pipeline).
Effect: ``y = relu(conv(x, w, b))`` becomes ``y = conv(x, w, b) {act_min=0}`` and
``y = clip(conv(...)) {min=lo, max=hi}`` becomes ``conv(...) {act_min=lo, act_max=hi}``, when the
conv's output feeds only that activation and is not a graph output, the conv has no fused
activation yet, and the dtypes match. The conv kernel clamps in its epilogue, so the activation no
longer re-reads and re-writes the whole tensor (MobileNetV2: 35 clips, DS-CNN: 9 relus).
First, a residual add: ``y = add(conv(x, w, b), r)`` (either operand order) becomes
``y = conv(x, w, b, r)`` (the conv's optional fourth input, added after the bias) when ``r`` has
the output's shape and dtype (no broadcast), the conv's output feeds only that add and is not a
graph output, the conv has no residual nor fused activation yet, and the graph has no int8 ops
(``edgec export-qdq`` writes float convs back as ONNX Conv, which has no residual input). The
fused conv takes the add's place in the node order, where ``r`` is already computed. A relu /
clip after the add then fuses as above (resnet50: conv -> add -> relu, 16 times).
Invariants after: verify() holds; the graph computes exactly the same values (the residual added
to the biased sum in the conv's accumulation dtype, as the add did; a clamp after that, with
clip's semantics: max first, then min; relu = clamp below at 0).
Options: none.
Example:
    before  %c: float32[1,8,4,4] = conv(x, w, b) {...}
            %y: float32[1,8,4,4] = clip(c) {min=0.0, max=6.0}
    after   %y: float32[1,8,4,4] = conv(x, w, b) {..., act_min=0.0, act_max=6.0}
    before  %c: float32[1,8,4,4] = conv(x, w, b) {...}
            %s: float32[1,8,4,4] = add(c, r)
            %y: float32[1,8,4,4] = relu(s)
    after   %y: float32[1,8,4,4] = conv(x, w, b, r) {..., act_min=0.0}
Tests: tests/passes/test_fuse_activation.py, tests/passes/test_fuse_residual.py
"""
from __future__ import annotations

from dataclasses import replace

from ..ir.graph import Graph


def _bounds(node) -> tuple[float | None, float | None] | None:
    if node.op == "relu":
        return 0.0, None
    if node.op == "clip":
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
        if len([i for i in node.inputs if i]) != 1:
            return None           # runtime bounds: not a constant clamp
        return (None if lo is None else float(lo)), (None if hi is None else float(hi))
    return None


# conv -> add(residual) fuses into the conv (False: only relu / clip fuse)
FUSE_RESIDUAL = True
# ops of an int8 graph (edgec.frontend.qdq_export.QUANT_OPS): such graphs keep their adds apart
_INT8_OPS = frozenset({"quantize", "dequantize", "requantize", "qconv", "qdense", "qdense_dequant", "qmatmul",
                       "qadd", "qmul", "qlut", "qglobal_avg_pool"})


def _fuse_residual(g: Graph) -> Graph:
    if not FUSE_RESIDUAL or any(n.op in _INT8_OPS for n in g.nodes):
        return g
    consumers = g.consumers()
    producer = {o: n for n in g.nodes for o in n.outputs}
    outputs = set(g.outputs)
    fused: dict[int, object] = {}     # id(add) -> the fused conv
    drop: set[int] = set()
    gone: list[str] = []              # the convs' own outputs, no longer computed
    for add in g.nodes:
        if add.op != "add" or len(add.inputs) != 2 or not all(add.inputs):
            continue
        y = g.values[add.outputs[0]]
        for ci in (0, 1):
            c_name, r_name = add.inputs[ci], add.inputs[1 - ci]
            conv = producer.get(c_name)
            if (conv is None or conv.op != "conv" or id(conv) in drop or c_name == r_name
                    or c_name in outputs or len(consumers.get(c_name, [])) != 1
                    or conv.attrs.get("act_min") is not None or conv.attrs.get("act_max") is not None
                    or (len(conv.inputs) > 3 and conv.inputs[3])):
                continue
            cv, rv = g.values[c_name], g.values[r_name]
            if not (cv.dtype == rv.dtype == y.dtype and tuple(cv.shape) == tuple(rv.shape) == tuple(y.shape)):
                continue
            ins = list(conv.inputs) + [""] * (3 - len(conv.inputs))
            fused[id(add)] = replace(conv, inputs=tuple(ins[:3]) + (r_name,), outputs=add.outputs)
            drop.add(id(conv))
            gone.append(c_name)
            break
    if not fused:
        return g
    out = g.copy()
    for name in gone:
        del out.values[name]
    # the fused conv sits where the add was: after the residual's producer
    out.nodes = [fused.get(id(n), n) for n in g.nodes if id(n) not in drop]
    return out


def fuse_activation(graph: Graph, options=None) -> Graph:
    g = _fuse_residual(graph).copy()
    consumers = g.consumers()
    outputs = set(g.outputs)
    drop: set[int] = set()
    for i, node in enumerate(g.nodes):
        if node.op != "conv" or node.attrs.get("act_min") is not None or node.attrs.get("act_max") is not None:
            continue
        y = node.outputs[0]
        users = consumers.get(y, [])
        if y in outputs or len(users) != 1:
            continue
        act = users[0]
        b = _bounds(act)
        if b is None or act.inputs[0] != y or g.values[act.outputs[0]].dtype != g.values[y].dtype:
            continue
        lo, hi = b
        g.nodes[i] = replace(node, outputs=(act.outputs[0],), attrs={**dict(node.attrs), "act_min": lo, "act_max": hi})
        drop.add(id(act))
        del g.values[y]
    if drop:
        g.nodes = [n for n in g.nodes if id(n) not in drop]
    return g


__all__ = ["fuse_activation"]
