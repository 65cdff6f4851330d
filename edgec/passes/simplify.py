"""Algebraic simplification: fold BatchNorm and constant scale/shift into conv/dense weights,
collapse reshape and transpose chains, drop no-op nodes.

Preconditions: shapes inferred, constants folded (run after ``fold_constants``).
Effect (repeated until nothing changes):
1. ``batch_norm(conv(x, w, b))`` with constant parameters and a conv output used only by the
   batch_norm becomes ``conv(x, w', b')`` with ``s = scale / sqrt(var + eps)``,
   ``w' = w * s`` (per output channel) and ``b' = (b - mean) * s + bias``. Same for dense
   (channel = last axis of the output) and conv_transpose.
2. ``mul(conv(...), c)`` and ``add(conv(...), c)`` (also ``sub``, and either operand order for
   mul/add) where ``c`` is a constant broadcasting along the output channel only fold into
   the weights and bias. Same for dense.
3. ``hard_sigmoid(conv(...))`` (alpha, beta; the conv output used only there) becomes
   ``clip(conv'(...), 0, 1)`` with ``w' = alpha w`` and ``b' = alpha b + beta``: the affine part
   of the hard sigmoid folds into the weights like rule 2, and the clip is what is left (fused
   into the conv's clamp later, edgec/passes/fuse_activation.py). In int8 the conv's own
   requantization then gives the [0, 1] output directly: one rounding instead of two and no
   lookup table (the squeeze-excitation gates of MobileNetV3 / PP-OCR). Same for dense.
4. ``reshape(reshape(x))`` -> ``reshape(x)``; ``reshape`` to the input's own shape, ``transpose``
   with the identity permutation and ``cast`` to the same dtype disappear;
   ``transpose(transpose(x))`` -> one transpose.
Never touched: a value that is a graph output keeps its producer and its name; float
semantics change only by reassociation of the folded products (within fp32 rounding).
Invariants after: verify() holds; the graph computes the same function.
Options: none.
Example:
    before  %c: float32[1,8,4,4] = conv(x, w, _) {...}
            %y: float32[1,8,4,4] = batch_norm(c, s, b, m, v) {epsilon=1e-05}
    after   %y: float32[1,8,4,4] = conv(x, w_bn, b_bn) {...}
Tests: tests/passes/test_simplify.py
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..ir import dtypes
from ..ir.graph import Graph, NameGen, Node, const_value

_WEIGHTED = ("conv", "dense", "conv_transpose")


def simplify(graph: Graph, options=None) -> Graph:
    g = graph.copy()
    for _ in range(100):
        if not _step(g):
            break
    return g


def _step(g: Graph) -> bool:
    consumers = g.consumers()
    producers = g.producers()
    outputs = set(g.outputs)
    names = NameGen(g.values)

    def single_use(v: str) -> bool:
        return v not in outputs and len(consumers.get(v, [])) == 1

    for idx, n in enumerate(g.nodes):
        # 1 + 2: fold into the weighted producer
        if n.op in ("batch_norm", "mul", "add", "sub") and n.inputs:
            folded = _fold_into_producer(g, n, producers, single_use, names)
            if folded:
                return True
        if n.op == "hard_sigmoid" and _fold_hard_sigmoid(g, n, producers, single_use, names):
            return True
        # 4: no-ops and chains
        x = n.inputs[0] if n.inputs else ""
        xv = g.values.get(x)
        if n.op == "reshape" and xv is not None:
            if tuple(xv.shape) == tuple(g.values[n.outputs[0]].shape) and _can_bypass(g, n, outputs):
                _bypass(g, n, x)
                return True
            p = producers.get(x)
            if p is not None and p.op == "reshape" and single_use(x):
                g.nodes[idx] = replace(n, inputs=(p.inputs[0],))
                g.nodes.remove(p)
                del g.values[x]
                return True
        if n.op == "transpose" and xv is not None:
            perm = tuple(n.attrs["perm"])
            if perm == tuple(range(len(perm))) and _can_bypass(g, n, outputs):
                _bypass(g, n, x)
                return True
            p = producers.get(x)
            if p is not None and p.op == "transpose" and single_use(x):
                inner = tuple(p.attrs["perm"])
                composed = tuple(inner[k] for k in perm)
                g.nodes[idx] = replace(n, inputs=(p.inputs[0],), attrs={"perm": composed})
                g.nodes.remove(p)
                del g.values[x]
                return True
        if n.op == "cast" and xv is not None and xv.dtype == n.attrs["to"] and _can_bypass(g, n, outputs):
            _bypass(g, n, x)
            return True
    return False


def _can_bypass(g: Graph, n: Node, outputs: set[str]) -> bool:
    return n.outputs[0] not in outputs


def _bypass(g: Graph, n: Node, src: str) -> None:
    """Remove ``n`` and make its consumers read ``src`` instead of its output."""
    out = n.outputs[0]
    g.nodes.remove(n)
    g.nodes[:] = [replace(m, inputs=tuple(src if i == out else i for i in m.inputs)) if out in m.inputs else m
                  for m in g.nodes]
    del g.values[out]


def _channel_vector(c: np.ndarray, out_shape: tuple[int, ...], axis: int) -> np.ndarray | None:
    """If constant ``c`` broadcast against ``out_shape`` varies only along ``axis``, its per-channel vector."""
    rank = len(out_shape)
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + tuple(c.shape)
    for k, d in enumerate(shape):
        if k != axis and d != 1:
            return None
        if k == axis and d not in (1, out_shape[axis]):
            return None
    vec = np.asarray(c, dtype=np.float64).reshape(shape)
    vec = np.broadcast_to(vec, tuple(out_shape[axis] if k == axis else 1 for k in range(rank)))
    return vec.reshape(-1).copy()


def _fold_hard_sigmoid(g: Graph, n: Node, producers, single_use, names) -> bool:
    """Rule 3: the affine part of ``n`` (a hard_sigmoid) into its weighted producer, a clip(0, 1) left."""
    out = g.values[n.outputs[0]]
    p = producers.get(n.inputs[0])
    if not dtypes.is_float(out.dtype) or p is None or p.op not in _WEIGHTED or not single_use(n.inputs[0]):
        return False
    alpha, beta = float(n.attrs["alpha"]), float(n.attrs["beta"])
    if not alpha > 0:
        return False  # a zero or negative slope would turn the clip's bounds around
    shape = g.values[n.inputs[0]].shape
    channels = shape[-1] if p.op == "dense" else shape[1]
    if _fold_affine(g, p, np.full(channels, alpha), np.full(channels, beta), names) is None:
        return False
    g.nodes[g.nodes.index(n)] = replace(n, op="clip", attrs={"min": 0.0, "max": 1.0})
    return True


def _fold_into_producer(g: Graph, n: Node, producers, single_use, names) -> bool:
    out = g.values[n.outputs[0]]
    if not dtypes.is_float(out.dtype):
        return False
    # which input is the producer's output, which the constant
    if n.op == "batch_norm":
        src = n.inputs[0]
        params = [g.values[i] for i in n.inputs[1:5]]
        if any(p.const is None for p in params):
            return False
    else:
        a, b = n.inputs
        av, bv = g.values[a], g.values[b]
        if bv.const is not None and av.const is None:
            src, cval = a, bv.const
        elif av.const is not None and bv.const is None and n.op in ("mul", "add"):
            src, cval = b, av.const
        else:
            return False
        if tuple(g.values[src].shape) != tuple(out.shape):
            return False  # the constant would broadcast the result to a bigger shape
    p = producers.get(src)
    if p is None or p.op not in _WEIGHTED or not single_use(src):
        return False
    src_shape = g.values[src].shape
    axis = len(src_shape) - 1 if p.op == "dense" else 1
    channels = src_shape[axis]
    if n.op == "batch_norm":
        scale, shift, mean, var = (np.asarray(v.const, np.float64).reshape(-1) for v in params)
        s = scale / np.sqrt(var + float(n.attrs["epsilon"]))
        mul_vec, add_vec = s, shift - mean * s
    else:
        vec = _channel_vector(cval, tuple(src_shape), axis)
        if vec is None:
            return False
        if n.op == "mul":
            mul_vec, add_vec = vec, np.zeros(channels)
        elif n.op == "add":
            mul_vec, add_vec = np.ones(channels), vec
        else:  # sub: x - c
            mul_vec, add_vec = np.ones(channels), -vec
    if mul_vec.shape[0] != channels:
        return False
    new_p = _fold_affine(g, p, mul_vec, add_vec, names)
    if new_p is None:
        return False
    result = n.outputs[0]
    g.nodes[g.nodes.index(new_p)] = replace(new_p, outputs=(result,))
    g.nodes.remove(n)
    del g.values[src]
    return True


def _fold_affine(g: Graph, p: Node, mul_vec: np.ndarray, add_vec: np.ndarray, names) -> Node | None:
    """Replace weighted node ``p`` (constant weights and bias) by one computing ``p(x) * mul_vec +
    add_vec`` per output channel (same outputs); returns the new node, or None (nothing changed)."""
    w = g.values[p.inputs[1]]
    bias_name = p.inputs[2] if len(p.inputs) > 2 else ""
    bias = g.values[bias_name] if bias_name else None
    if w.const is None or (bias is not None and bias.const is None):
        return None
    out_dtype = g.values[p.outputs[0]].dtype
    channels = mul_vec.shape[0]
    wc = np.asarray(w.const, np.float64)
    if p.op == "conv_transpose":
        group = int(p.attrs["group"])
        cin, mg = wc.shape[0], wc.shape[1]
        wg = wc.reshape((group, cin // group, mg) + wc.shape[2:])
        sg = mul_vec.reshape((group, 1, mg) + (1,) * (wc.ndim - 2))
        new_w = (wg * sg).reshape(wc.shape)
    else:  # conv [M, C/g, ...] and dense [N, K]: output channel is axis 0 of the weight
        new_w = wc * mul_vec.reshape((-1,) + (1,) * (wc.ndim - 1))
    old_b = np.asarray(bias.const, np.float64).reshape(-1) if bias is not None else np.zeros(channels)
    new_b = old_b * mul_vec + add_vec
    wname = names(f"{p.inputs[1]}_folded")
    bname = names(f"{bias_name or p.name + '_bias'}_folded")
    g.values[wname] = const_value(wname, new_w.astype(w.dtype))
    g.values[bname] = const_value(bname, new_b.astype(out_dtype))
    new_p = replace(p, inputs=(p.inputs[0], wname, bname))
    g.nodes[g.nodes.index(p)] = new_p
    return new_p
