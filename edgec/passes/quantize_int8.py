"""int8 quantization of a float graph, from calibrated activation ranges.

Preconditions: a float32 graph after the default pipeline (shapes inferred, constants folded,
BatchNorm folded into conv/dense); ``ranges`` maps float value names to calibrated
``(rmin, rmax)`` (``edgec.quant.calibrate``).
Effect: every node with a rule in ``QUANT_RULES`` (and the ranges it needs) is replaced by
integer ops of ``edgec/ops/quant.py`` (or dtype-generic existing ops on uint8/int8 values);
everything else stays float, with ``quantize`` / ``dequantize`` inserted where a float and an
integer part meet. Graph inputs and outputs keep their names and float types (the model's
interface does not change). The quantized version of a value ``v`` is named ``v_q`` (fresh
name); the float version of ``v`` is always named ``v`` (a ``dequantize`` node when ``v`` was
computed in integers). Every integer value carries its ``QParams``. ``graph.meta["quantization"]``
records the options, the precision and qparams of every value and the choice made for every node.
Scheme (docs/quantization.md): int8 symmetric weights (per channel unless ``per_channel=False``),
activations per tensor asymmetric in ``activation_dtype``, int32 bias with the zero-point
correction folded in, integer-only requantization; ReLU/Clip following conv/dense/matmul/add are
fused into the producer's output clamp.
Example:
    before  %h = dense(x, w, b); %r = relu(h); %y = softmax(r)
    after   %x_q = quantize(x); %r_q = qdense(x_q, w_q, b_q) {qmin=z_r, ...}; %r = dequantize(r_q);
            %y = softmax(r)
Tests: tests/quant/test_quantize_pass.py
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from ..errors import EdgecError
from ..frontend.registry import GraphBuilder, build_graph
from ..ir.graph import Graph, Node, QParams
from ..ir.ops import get as get_op
from ..quant.qmath import (QuantizationError, compute_scale_zp, dequantize, qrange, quantize, quantize_bias,
                           quantize_multiplier, quantize_weights_per_channel)


class QuantizeOptionsError(EdgecError):
    pass


@dataclass(frozen=True)
class QuantizeOptions:
    """``activation_dtype``: "uint8" (x86) or "int8" (ARM); ``per_channel``: per-output-channel
    weight scales (else one per tensor); ``fallback_ops``: op names kept in float;
    ``fallback_nodes``: node names kept in float (the accuracy-aware mode's lever);
    ``fuse_activations``: fuse relu/clip into the producer's clamp."""
    activation_dtype: str = "uint8"
    per_channel: bool = True
    fallback_ops: frozenset = field(default_factory=frozenset)
    fallback_nodes: frozenset = field(default_factory=frozenset)
    fuse_activations: bool = True

    def __post_init__(self):
        if self.activation_dtype not in ("uint8", "int8"):
            raise QuantizeOptionsError(f"activation_dtype must be 'uint8' or 'int8', got {self.activation_dtype!r}")
        object.__setattr__(self, "fallback_ops", frozenset(self.fallback_ops))
        from ..ir.ops import all_ops
        unknown = sorted(set(self.fallback_ops) - set(all_ops()))
        if unknown:
            raise QuantizeOptionsError(f"fallback_ops names unknown op(s) {unknown}")
        object.__setattr__(self, "fallback_nodes", frozenset(self.fallback_nodes))


class NotQuantizable(Exception):
    """Raised by a rule to leave its node in float (the reason goes into the report)."""


_LUT_OPS = ("sigmoid", "tanh", "hard_swish", "hard_sigmoid", "gelu", "elu", "leaky_relu", "softplus", "erf", "exp",
            "selu", "softsign")
_PASS_THROUGH = ("reshape", "transpose", "max_pool", "global_max_pool", "slice", "split", "depth_to_space",
                 "space_to_depth")


class _Ctx:
    """State of one quantize_int8 run: the builder, the float/int versions of each value."""

    def __init__(self, graph: Graph, ranges, options: QuantizeOptions):
        self.g = graph
        self.ranges = {k: (float(a), float(b)) for k, (a, b) in ranges.items()}
        self.opt = options
        self.dt = options.activation_dtype
        self.lo, self.hi = qrange(self.dt)
        # graph inputs and constants are available in float under their own names
        vals = {n: graph.values[n] for n in graph.inputs}
        vals.update({v.name: v for v in graph.values.values() if v.const is not None})
        self.b = GraphBuilder(vals, fold=False)
        self.b.names.taken.update(graph.values)
        self.qname: dict[str, str] = {}  # float value -> its integer version
        self.fl: set[str] = set(vals)    # float values available under their own name
        self.layers: list[dict] = []
        self.consumers = graph.consumers()
        self.skip: set[int] = set()       # ids of nodes fused into a producer

    # -- qparams ------------------------------------------------------------------------------
    def act_qparams(self, name: str) -> tuple[float, int]:
        if name not in self.ranges:
            raise NotQuantizable(f"no calibrated range for {name!r}")
        s, z = compute_scale_zp(*self.ranges[name], self.lo, self.hi)
        return float(s), int(z)

    def qp(self, qname: str) -> tuple[float, int]:
        q = self.b.values[qname].qparams
        return q.scale[0], q.zero_point[0]

    def set_q(self, fname: str, qname: str, scale: float, zp: int) -> None:
        self.b.values[qname] = replace(self.b.values[qname], qparams=QParams((float(scale),), (int(zp),)))
        self.qname[fname] = qname

    # -- getting a value in the wanted domain --------------------------------------------------
    def q(self, name: str) -> str:
        """The integer (activation dtype or an earlier choice) version of float value ``name``."""
        if name in self.qname:
            return self.qname[name]
        v = self.g.values[name]
        if v.dtype != "float32":
            raise NotQuantizable(f"{name!r} is {v.dtype}, not float32")
        if v.const is not None:
            arr = v.const
            s, z = compute_scale_zp(float(arr.min()) if arr.size else 0.0, float(arr.max()) if arr.size else 0.0,
                                    self.lo, self.hi)
            qn = self.b.add_const(quantize(arr, s, z, self.dt), name + "_q")
            self.set_q(name, qn, s, z)
            return qn
        s, z = self.act_qparams(name)
        if name not in self.fl:
            raise NotQuantizable(f"{name!r} is not available")
        qn = self.b.names(name + "_q")
        self.b.emit("quantize", [name], {"scale": s, "zero_point": z, "dtype": self.dt}, outputs=[qn],
                    name=f"quantize_{name}")
        self.set_q(name, qn, s, z)
        return qn

    def f(self, name: str) -> str:
        """The float version of ``name`` (a dequantize named ``name`` when it was computed in integers)."""
        if not name or name in self.fl:
            return name
        qn = self.qname[name]
        s, z = self.qp(qn)
        self.b.emit("dequantize", [qn], {"scale": s, "zero_point": z}, outputs=[name], name=f"dequantize_{name}")
        self.fl.add(name)
        return name

    # -- output of a quantized producer --------------------------------------------------------
    def fused_output(self, node: Node) -> tuple[str, int, int, Node | None]:
        """The float value the producer's integer output stands for, and its clamp range: follows
        one relu/clip consumer (fusing it) when the producer's output has no other use."""
        out = node.outputs[0]
        cons = self.consumers.get(out, [])
        if (self.opt.fuse_activations and len(cons) == 1 and out not in self.g.outputs
                and cons[0].op in ("relu", "clip") and cons[0].name not in self.opt.fallback_nodes
                and cons[0].op not in self.opt.fallback_ops and cons[0].outputs[0] in self.ranges):
            act = cons[0]
            s, z = self.act_qparams(act.outputs[0])
            lo, hi = self.clamp_for(act, s, z)
            return act.outputs[0], lo, hi, act
        return out, self.lo, self.hi, None

    def clamp_for(self, act: Node, s: float, z: int) -> tuple[int, int]:
        if act.op == "relu":
            return max(z, self.lo), self.hi
        lo, hi = self.lo, self.hi
        if act.attrs["min"] is not None:
            lo = int(np.clip(z + np.rint(float(act.attrs["min"]) / s), self.lo, self.hi))
        if act.attrs["max"] is not None:
            hi = int(np.clip(z + np.rint(float(act.attrs["max"]) / s), self.lo, self.hi))
        if not lo < hi:
            raise NotQuantizable(f"clip range [{act.attrs['min']}, {act.attrs['max']}] is under one quantum")
        return lo, hi

    def emit_q(self, op, inputs, attrs, fname: str, s: float, z: int, node_name: str) -> str:
        qn = self.b.names(fname + "_q")
        self.b.emit(op, inputs, attrs, outputs=[qn], name=node_name)
        self.set_q(fname, qn, s, z)
        return qn


def _mult(real: float) -> tuple[int, int]:
    return quantize_multiplier(real)


def _req_attrs(ms, shifts, z, lo, hi, dt) -> dict:
    return {"multiplier": tuple(int(m) for m in ms), "shift": tuple(int(s) for s in shifts), "out_zero_point": int(z),
            "qmin": int(lo), "qmax": int(hi), "out_dtype": dt}


def _weights(ctx: _Ctx, w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    if ctx.opt.per_channel:
        return quantize_weights_per_channel(w, axis)
    wq, s = quantize_weights_per_channel(w.reshape(1, -1), 0)
    return wq.reshape(w.shape), np.full(w.shape[axis], s[0], np.float32)


def _linear(ctx: _Ctx, node: Node, op: str, w: np.ndarray, bias: np.ndarray | None, k_axes, extra: dict) -> list[Node]:
    """qconv / qdense: per-channel weights on axis 0, int32 bias with the zero-point fold."""
    x = node.inputs[0]
    xq = ctx.q(x)
    s_x, z_x = ctx.qp(xq)
    fname, lo, hi, fused = ctx.fused_output(node)
    s_o, z_o = ctx.act_qparams(fname)
    wq, s_w = _weights(ctx, w, 0)
    if bias is None:
        bias = np.zeros(w.shape[0], np.float32)
    bq, _ = quantize_bias(bias, s_x, s_w)
    wsum = wq.astype(np.int64).sum(axis=k_axes)
    b_fold = bq.astype(np.int64) - z_x * wsum
    k = int(np.prod([w.shape[a] for a in k_axes]))
    bound = (k * max(abs(ctx.lo - z_x), abs(ctx.hi - z_x)) * 127 + np.abs(bq.astype(np.int64)).max()
             + abs(z_x) * np.abs(wsum).max())
    if bound >= 2 ** 31:
        raise NotQuantizable(f"the int32 accumulator could overflow (reduction length {k})")
    mults = [_mult(float(np.float32(s_x) * sw) / s_o) for sw in s_w]
    ms, shifts = zip(*mults)
    if len(set(mults)) == 1:
        ms, shifts = ms[:1], shifts[:1]
    wn = ctx.b.add_const(wq, node.inputs[1] + "_q")
    ctx.b.values[wn] = replace(ctx.b.values[wn], qparams=QParams(tuple(float(v) for v in s_w), (0,) * len(s_w), 0))
    bname = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else node.name + "_bias"
    bn = ctx.b.add_const(b_fold.astype(np.int32), bname + "_q")
    attrs = dict(extra, x_zero_point=int(z_x), **_req_attrs(ms, shifts, z_o, lo, hi, ctx.dt))
    ctx.emit_q(op, [xq, wn, bn], attrs, fname, s_o, z_o, node.name)
    return [fused] if fused is not None else []


def rule_conv(ctx: _Ctx, node: Node) -> list[Node]:
    w = ctx.g.values[node.inputs[1]]
    b = ctx.g.values[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else None
    if w.const is None or (b is not None and b.const is None):
        raise NotQuantizable("weights or bias are not constant")
    return _linear(ctx, node, "qconv", w.const, None if b is None else b.const, tuple(range(1, w.const.ndim)),
                   {k: node.attrs[k] for k in ("strides", "pads", "dilations", "group")})


def rule_dense(ctx: _Ctx, node: Node) -> list[Node]:
    w = ctx.g.values[node.inputs[1]]
    b = ctx.g.values[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else None
    if w.const is None or (b is not None and b.const is None):
        raise NotQuantizable("weights or bias are not constant")
    return _linear(ctx, node, "qdense", w.const, None if b is None else b.const, (1,), {})


def rule_matmul(ctx: _Ctx, node: Node) -> list[Node]:
    a, b = (ctx.g.values[i] for i in node.inputs)
    if len(a.shape) == 2 and len(b.shape) == 2 and b.const is not None and a.const is None:
        # x @ W with constant W: a dense with per-channel weights W.T
        w = np.ascontiguousarray(b.const.T)
        return _linear(ctx, node, "qdense", w, None, (1,), {})
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise NotQuantizable("1-D matmul operands")
    aq, bq = ctx.q(node.inputs[0]), ctx.q(node.inputs[1])
    (s_a, z_a), (s_b, z_b) = ctx.qp(aq), ctx.qp(bq)
    fname, lo, hi, fused = ctx.fused_output(node)
    s_o, z_o = ctx.act_qparams(fname)
    m, sh = _mult(float(np.float32(s_a) * np.float32(s_b)) / s_o)
    ctx.emit_q("qmatmul", [aq, bq], {"a_zero_point": z_a, "b_zero_point": z_b,
                                     **_req_attrs([m], [sh], z_o, lo, hi, ctx.dt)}, fname, s_o, z_o, node.name)
    return [fused] if fused is not None else []


_LEFT_SHIFT = 20


def rule_add(ctx: _Ctx, node: Node) -> list[Node]:
    aq, bq = ctx.q(node.inputs[0]), ctx.q(node.inputs[1])
    (s_a, z_a), (s_b, z_b) = ctx.qp(aq), ctx.qp(bq)
    fname, lo, hi, fused = ctx.fused_output(node)
    s_o, z_o = ctx.act_qparams(fname)
    twice = 2.0 * max(s_a, s_b)
    ma, sa = _mult(s_a / twice)
    mb, sb = _mult(s_b / twice)
    m, sh = _mult(twice / (2 ** _LEFT_SHIFT * s_o))
    ctx.emit_q("qadd", [aq, bq], {"a_zero_point": z_a, "b_zero_point": z_b, "a_multiplier": ma, "a_shift": sa,
                                  "b_multiplier": mb, "b_shift": sb, "left_shift": _LEFT_SHIFT,
                                  **_req_attrs([m], [sh], z_o, lo, hi, ctx.dt)}, fname, s_o, z_o, node.name)
    return [fused] if fused is not None else []


def rule_mul(ctx: _Ctx, node: Node) -> list[Node]:
    aq, bq = ctx.q(node.inputs[0]), ctx.q(node.inputs[1])
    (s_a, z_a), (s_b, z_b) = ctx.qp(aq), ctx.qp(bq)
    fname, lo, hi, fused = ctx.fused_output(node)
    s_o, z_o = ctx.act_qparams(fname)
    m, sh = _mult(s_a * s_b / s_o)
    ctx.emit_q("qmul", [aq, bq], {"a_zero_point": z_a, "b_zero_point": z_b,
                                  **_req_attrs([m], [sh], z_o, lo, hi, ctx.dt)}, fname, s_o, z_o, node.name)
    return [fused] if fused is not None else []


def rule_relu_clip(ctx: _Ctx, node: Node) -> list[Node]:
    """A standalone relu/clip: an integer clip with the input's qparams (exact: no requantization)."""
    xq = ctx.q(node.inputs[0])
    s, z = ctx.qp(xq)
    lo, hi = ctx.clamp_for(node, s, z)
    ctx.emit_q("clip", [xq], {"min": lo, "max": hi}, node.outputs[0], s, z, node.name)
    return []


def rule_pass_through(ctx: _Ctx, node: Node) -> list[Node]:
    """Ops that only move or select values: same qparams in and out, no requantization."""
    xq = ctx.q(node.inputs[0])
    s, z = ctx.qp(xq)
    outs = [ctx.b.names(o + "_q") for o in node.outputs]
    ctx.b.emit(node.op, [xq], dict(node.attrs), outputs=outs, name=node.name)
    for o, qn in zip(node.outputs, outs):
        ctx.set_q(o, qn, s, z)
    return []


def rule_concat(ctx: _Ctx, node: Node) -> list[Node]:
    out = node.outputs[0]
    s_o, z_o = ctx.act_qparams(out)
    ins = []
    for i in node.inputs:
        iq = ctx.q(i)
        s_i, z_i = ctx.qp(iq)
        if (s_i, z_i) != (s_o, z_o) or ctx.b.values[iq].dtype != ctx.dt:
            m, sh = _mult(s_i / s_o)
            rq = ctx.b.names(i + "_rq")
            ctx.b.emit("requantize", [iq], {"in_zero_point": z_i, **_req_attrs([m], [sh], z_o, ctx.lo, ctx.hi, ctx.dt)},
                       outputs=[rq], name=f"requantize_{i}")
            ctx.b.values[rq] = replace(ctx.b.values[rq], qparams=QParams((s_o,), (z_o,)))
            iq = rq
        ins.append(iq)
    ctx.emit_q("concat", ins, dict(node.attrs), out, s_o, z_o, node.name)
    return []


def rule_lut(ctx: _Ctx, node: Node) -> list[Node]:
    """Any unary float op of one quantized input: a 256-entry table computed with its reference."""
    xq = ctx.q(node.inputs[0])
    s_i, z_i = ctx.qp(xq)
    s_o, z_o = ctx.act_qparams(node.outputs[0])
    in_dt = ctx.b.values[xq].dtype
    lo = qrange(in_dt)[0]
    grid = np.arange(lo, lo + 256).astype(in_dt)
    real = dequantize(grid, s_i, z_i)
    (fy,) = get_op(node.op).reference(real, **node.attrs)
    table = quantize(fy, s_o, z_o, ctx.dt)
    ctx.emit_q("qlut", [xq], {"table": tuple(int(t) for t in table), "out_dtype": ctx.dt}, node.outputs[0],
               s_o, z_o, node.name)
    return []


def rule_global_avg_pool(ctx: _Ctx, node: Node) -> list[Node]:
    """mean = requantize(sum_int32(x) - count * z_in, s_in / (count * s_out)): cast, reduce_sum, requantize."""
    xq = ctx.q(node.inputs[0])
    s_i, z_i = ctx.qp(xq)
    s_o, z_o = ctx.act_qparams(node.outputs[0])
    xv = ctx.b.values[xq]
    axes = tuple(range(2, len(xv.shape)))
    count = int(np.prod(xv.shape[2:]))
    if count * 255 >= 2 ** 31:
        raise NotQuantizable("spatial size too large for an int32 sum")
    (c32,) = ctx.b.emit("cast", [xq], {"to": "int32"}, name=f"{node.name}_cast")
    (acc,) = ctx.b.emit("reduce_sum", [c32], {"axes": axes, "keepdims": 1}, name=f"{node.name}_sum")
    m, sh = _mult(s_i / (count * s_o))
    attrs = {"in_zero_point": count * z_i, **_req_attrs([m], [sh], z_o, ctx.lo, ctx.hi, ctx.dt)}
    ctx.emit_q("requantize", [acc], attrs, node.outputs[0], s_o, z_o, node.name)
    return []


def rule_gather(ctx: _Ctx, node: Node) -> list[Node]:
    """A constant float table gathered by integer indices: the table stored in 8 bits (per tensor)."""
    data, idx = node.inputs
    if ctx.g.values[data].const is None:
        raise NotQuantizable("the gathered table is not constant")
    tq = ctx.q(data)
    s, z = ctx.qp(tq)
    ctx.emit_q("gather", [tq, ctx.f(idx)], dict(node.attrs), node.outputs[0], s, z, node.name)
    return []


Rule = Callable[[_Ctx, Node], list]

QUANT_RULES: dict[str, Rule] = {
    "conv": rule_conv,
    "dense": rule_dense,
    "matmul": rule_matmul,
    "add": rule_add,
    "mul": rule_mul,
    "relu": rule_relu_clip,
    "clip": rule_relu_clip,
    "concat": rule_concat,
    "global_avg_pool": rule_global_avg_pool,
    "gather": rule_gather,
    **{op: rule_pass_through for op in _PASS_THROUGH},
    **{op: rule_lut for op in _LUT_OPS},
}


def quantize_int8(graph: Graph, ranges: dict, options: QuantizeOptions | None = None) -> Graph:
    """Quantize ``graph`` with calibrated ``ranges`` ({float value: (rmin, rmax)}); see the module doc."""
    options = options or QuantizeOptions()
    if not isinstance(options, QuantizeOptions):
        raise QuantizeOptionsError(f"options must be a QuantizeOptions, got {type(options).__name__}")
    ctx = _Ctx(graph, ranges, options)
    fused_into: dict[int, str] = {}
    for node in graph.nodes:
        if id(node) in ctx.skip:
            ctx.layers.append({"node": node.name, "op": node.op, "precision": "int8",
                               "choice": f"fused into {fused_into[id(node)]}"})
            continue
        rule = QUANT_RULES.get(node.op)
        reason = None
        if rule is None:
            reason = "no int8 rule"
        elif node.op in options.fallback_ops or node.name in options.fallback_nodes:
            reason = "fallback requested"
        else:
            mark = (len(ctx.b.nodes), dict(ctx.b.values), dict(ctx.qname), set(ctx.fl), set(ctx.b.names.taken))
            try:
                fused = rule(ctx, node)
            except (NotQuantizable, QuantizationError) as e:
                # roll back whatever the rule emitted before it gave up
                del ctx.b.nodes[mark[0]:]
                ctx.b.values, ctx.qname, ctx.fl = mark[1], mark[2], mark[3]
                ctx.b.names.taken = mark[4]
                reason = str(e)
            else:
                for fn in fused:
                    ctx.skip.add(id(fn))
                    fused_into[id(fn)] = node.name
                ctx.layers.append({"node": node.name, "op": node.op, "precision": "int8",
                                   "choice": ctx.b.nodes[-1].op if len(ctx.b.nodes) > mark[0] else node.op})
                continue
        ins = [ctx.f(i) for i in node.inputs]
        for o in node.outputs:
            ctx.b.values[o] = graph.values[o]
            ctx.b.names.taken.add(o)
        ctx.b.nodes.append(Node(node.op, tuple(ins), node.outputs, node.attrs, node.name))
        ctx.fl.update(node.outputs)
        ctx.layers.append({"node": node.name, "op": node.op, "precision": "float", "choice": f"float ({reason})"})
    outputs = [ctx.f(o) for o in graph.outputs]
    out = build_graph(ctx.b, list(graph.inputs), outputs, graph.name, dict(graph.meta))
    values = {}
    for v in out.values.values():
        if v.qparams is not None:
            values[v.name] = {"dtype": v.dtype, "scale": list(v.qparams.scale),
                              "zero_point": list(v.qparams.zero_point), "axis": v.qparams.axis}
        elif v.dtype == "float32" and v.const is None:
            values[v.name] = {"dtype": "float32"}
    out.meta["quantization"] = {
        "activation_dtype": options.activation_dtype, "per_channel": options.per_channel,
        "values": values, "layers": ctx.layers,
        "int8_nodes": sum(1 for l in ctx.layers if l["precision"] == "int8"),
        "float_nodes": sum(1 for l in ctx.layers if l["precision"] == "float"),
    }
    return out


__all__ = ["quantize_int8", "QuantizeOptions", "QuantizeOptionsError", "QUANT_RULES", "NotQuantizable"]
