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
fused into the producer's output clamp; a chain of elementwise ops of one runtime value (e.g.
hard-swish written h * clip(h + 3, 0, 6) / 6) becomes one qlut; avg_pool becomes a depthwise
qconv with unit weights (plus a mul by a constant lcm/count table and a requantize when border
windows have fewer taps); a division by a positive scalar constant is a requantize; softmax stays
float. With calibration samples (``calib_feeds``) and ``bias_correction`` on (the default), the
int32 bias of every qconv / qdense is then corrected so that, per output channel, the mean of its
accumulator on the quantized network matches the float layer's mean on the float network
(``bias_correction``; only bias constants change, never the integer ops).
Example:
    before  %h = dense(x, w, b); %r = relu(h); %y = softmax(r)
    after   %x_q = quantize(x); %r_q = qdense(x_q, w_q, b_q) {qmin=z_r, ...}; %r = dequantize(r_q);
            %y = softmax(r)
Tests: tests/quant/test_quantize_pass.py
"""
from __future__ import annotations

import math
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


WEIGHT_ROUNDINGS = ("nearest", "gptq")


@dataclass(frozen=True)
class QuantizeOptions:
    """``activation_dtype``: "uint8" (x86) or "int8" (ARM); ``per_channel``: per-output-channel
    weight scales (else one per tensor); ``fallback_ops``: op names kept in float;
    ``fallback_nodes``: node names kept in float (the accuracy-aware mode's lever);
    ``fuse_activations``: fuse relu/clip into the producer's clamp;
    ``bias_correction``: empirical bias correction of every qconv / qdense (``bias_correction``
    below) when calibration samples are available (``quantize_int8(..., calib_feeds=...)``; the
    compiler passes its calibration data); ``bias_correction_samples``: how many of them are
    used for it (the first ones; they are held in memory, and every sample costs one float and
    one integer run of the graph); ``weight_rounding``: "nearest" (round every weight to its
    channel's scale) or "gptq" (error-compensating rounding on the same samples, before the bias
    correction: edgec.quant.weight_rounding; scales and integer ops unchanged)."""
    activation_dtype: str = "uint8"
    per_channel: bool = True
    fallback_ops: frozenset = field(default_factory=frozenset)
    fallback_nodes: frozenset = field(default_factory=frozenset)
    fuse_activations: bool = True
    bias_correction: bool = True
    bias_correction_samples: int = 64
    weight_rounding: str = "nearest"

    def __post_init__(self):
        if self.activation_dtype not in ("uint8", "int8"):
            raise QuantizeOptionsError(f"activation_dtype must be 'uint8' or 'int8', got {self.activation_dtype!r}")
        object.__setattr__(self, "fallback_ops", frozenset(self.fallback_ops))
        from ..ir.ops import all_ops
        unknown = sorted(set(self.fallback_ops) - set(all_ops()))
        if unknown:
            raise QuantizeOptionsError(f"fallback_ops names unknown op(s) {unknown}")
        object.__setattr__(self, "fallback_nodes", frozenset(self.fallback_nodes))
        if isinstance(self.bias_correction_samples, bool) or not isinstance(self.bias_correction_samples, int) \
                or self.bias_correction_samples < 1:
            raise QuantizeOptionsError(f"bias_correction_samples must be a positive integer, "
                                       f"got {self.bias_correction_samples!r}")
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise QuantizeOptionsError(f"weight_rounding must be one of {list(WEIGHT_ROUNDINGS)}, "
                                       f"got {self.weight_rounding!r}")


class NotQuantizable(Exception):
    """Raised by a rule to leave its node in float (the reason goes into the report)."""


_LUT_OPS = ("sigmoid", "tanh", "hard_swish", "hard_sigmoid", "gelu", "elu", "leaky_relu", "softplus", "erf", "exp",
            "selu", "softsign")
_PASS_THROUGH = ("reshape", "transpose", "max_pool", "global_max_pool", "slice", "split", "depth_to_space",
                 "space_to_depth")


# An activation whose calibrated range reaches beyond this stays float: with 256 levels its step
# would exceed 7800, so values of ordinary magnitude would all collapse to the zero point.
MAX_ACTIVATION_RANGE = 1e6


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
        lo, hi = self.ranges[name]
        if max(abs(lo), abs(hi)) > MAX_ACTIVATION_RANGE:
            # e.g. an attention mask's -3.4e38: 256 levels over it leave every ordinary value at one level
            raise NotQuantizable(f"{name!r} spans [{lo:.3g}, {hi:.3g}]: too wide for 8 bits")
        s, z = compute_scale_zp(lo, hi, self.lo, self.hi)
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
    def fused_output(self, node: Node, out: str | None = None) -> tuple[str, int, int, Node | None]:
        """The float value the producer's integer output stands for, and its clamp range: follows
        one relu/clip consumer (fusing it) when the producer's output has no other use.
        ``out``: the producer's output when it is not ``node.outputs[0]`` (a fused bias add's)."""
        out = node.outputs[0] if out is None else out
        cons = self.consumers.get(out, [])
        if (self.opt.fuse_activations and len(cons) == 1 and out not in self.g.outputs
                and cons[0].op in ("relu", "clip") and cons[0].name not in self.opt.fallback_nodes
                and cons[0].op not in self.opt.fallback_ops and cons[0].outputs[0] in self.ranges):
            act = cons[0]
            s, z = self.act_qparams(act.outputs[0])
            lo, hi = self.clamp_for(act, s, z)
            return act.outputs[0], lo, hi, act
        return out, self.lo, self.hi, None

    def hard_swish_consumer(self, out: str) -> list[Node] | None:
        """The nodes computing hard_swish(out) when that is ``out``'s only use: one ``hard_swish``
        node, or an elementwise chain of ``out`` (``_chain_region``) that is numerically the hard
        swish (Paddle's h * clip(h + 3, 0, 6) / 6), with a calibrated range for its result."""
        cons = self.consumers.get(out, [])
        if not self.opt.fuse_activations or not cons or out in self.g.outputs:
            return None
        if any(c.name in self.opt.fallback_nodes or c.op in self.opt.fallback_ops for c in cons):
            return None
        if len(cons) == 1 and cons[0].op == "hard_swish":
            region = [cons[0]]
        else:
            found = _chain_region(self, cons[0])
            if found is None or found[0] != out or {id(c) for c in cons} - {id(n) for n in found[1]}:
                return None
            region = found[1]
            h = np.concatenate([np.linspace(-8, 8, 4001), np.linspace(-1e3, 1e3, 2001)]).astype(np.float32)
            ref = h.astype(np.float64) * np.clip(h.astype(np.float64) + 3, 0, 6) / 6
            if not np.allclose(_eval_chain(self, out, region, h), ref, rtol=1e-5, atol=1e-6):
                return None
        if region[-1].outputs[0] not in self.ranges:
            return None
        return region

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

    def feeds_only_float(self, node: Node) -> bool:
        """Every use of the node's outputs is float (``value_feeds_only_float``)."""
        return all(self.value_feeds_only_float(out) for out in node.outputs)

    def value_feeds_only_float(self, out: str, _seen: frozenset = frozenset()) -> bool:
        """Every use of ``out`` is float: a graph output, a consumer with no int8 rule (softmax,
        layer_norm, ...) or one kept in float by the options, or an add / mul / reshape whose own
        result only feeds float ops (the add/mul rule keeps those float, a reshape of a float value
        stays float), e.g. a bias add before BERT's residual add before a LayerNorm, or the reshape
        back to [batch, tokens, features] after a Linear exported on [tokens, features]. Other
        pass-through consumers (transpose, max_pool, ...) count as integer ones."""
        memo = self.__dict__.setdefault("_float_memo", {})
        if out in memo:
            return memo[out]
        ok = True
        if out not in self.g.outputs:
            cons = self.consumers.get(out, [])
            if not cons:
                ok = False
            for c in cons:
                if not ok:
                    break
                if c.op not in QUANT_RULES or c.name in self.opt.fallback_nodes or c.op in self.opt.fallback_ops:
                    continue
                if (c.op in ("add", "mul", "reshape") and c.name not in _seen
                        and all(self.value_feeds_only_float(o, _seen | {c.name}) for o in c.outputs)):
                    continue
                ok = False
        memo[out] = ok
        return ok

    def emit_q(self, op, inputs, attrs, fname: str, s: float, z: int, node_name: str) -> str:
        qn = self.b.names(fname + "_q")
        self.b.emit(op, inputs, attrs, outputs=[qn], name=node_name)
        self.set_q(fname, qn, s, z)
        return qn


def _mult(real: float) -> tuple[int, int]:
    return quantize_multiplier(real)


def _odd_multiplier(m: int, shift: int) -> tuple[int, int]:
    """(m | 1, shift): the nearest odd multiplier at or above m (m = 0 stays 0)."""
    return (m | 1 if m else 0), shift


def _req_attrs(ms, shifts, z, lo, hi, dt) -> dict:
    return {"multiplier": tuple(int(m) for m in ms), "shift": tuple(int(s) for s in shifts), "out_zero_point": int(z),
            "qmin": int(lo), "qmax": int(hi), "out_dtype": dt}


def _weights(ctx: _Ctx, w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    if ctx.opt.per_channel:
        return quantize_weights_per_channel(w, axis)
    wq, s = quantize_weights_per_channel(w.reshape(1, -1), 0)
    return wq.reshape(w.shape), np.full(w.shape[axis], s[0], np.float32)


def _linear(ctx: _Ctx, node: Node, op: str, w: np.ndarray, bias: np.ndarray | None, k_axes, extra: dict,
            bias_add: Node | None = None) -> list[Node]:
    """qconv / qdense: per-channel weights on axis 0, int32 bias with the zero-point fold.

    qdense also takes an input of rank > 2 (``x[..., K]``, a MatMul with a constant [K, N]
    operand): it runs on the ``[prod(...), K]`` view (reshapes are free on bytes) and its result
    is reshaped back. ``bias_add``: the add of a constant [N] bias that follows (fused into the
    int32 bias; its output is the layer's output). A qdense whose result only feeds float ops
    (``value_feeds_only_float``: BERT's attention-output and FFN down-projections before the float
    residual add, a classifier before its softmax) becomes ``qdense_dequant``: the int32
    accumulator times ``s_x * s_w[c]`` in float32, with no 8-bit rounding of the output (whose
    outlier channels one per-tensor scale cannot hold)."""
    x = node.inputs[0]
    xq = ctx.q(x)
    s_x, z_x = ctx.qp(xq)
    to_float = op == "qdense" and ctx.value_feeds_only_float(node.outputs[0])
    if to_float or bias_add is None:
        bias_add = None     # a float output keeps a following bias add in float (exact, and cheap)
    else:
        bias = ctx.g.values[_other_input(bias_add, node.outputs[0])].const.reshape(-1).astype(np.float32)
    out = bias_add.outputs[0] if bias_add is not None else node.outputs[0]
    hswish = None if to_float else ctx.hard_swish_consumer(out)
    if to_float:
        fname, lo, hi, fused = out, ctx.lo, ctx.hi, None
        s_o = z_o = None
    elif hswish is not None:
        fname, lo, hi, fused = hswish[-1].outputs[0], ctx.lo, ctx.hi, None
        s_o, z_o = ctx.act_qparams(fname)
    else:
        fname, lo, hi, fused = ctx.fused_output(node, out)
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
    wn = ctx.b.add_const(wq, node.inputs[1] + "_q")
    ctx.b.values[wn] = replace(ctx.b.values[wn], qparams=QParams(tuple(float(v) for v in s_w), (0,) * len(s_w), 0))
    bname = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else (
        bias_add.name if bias_add is not None else node.name) + "_bias"
    bn = ctx.b.add_const(b_fold.astype(np.int32), bname + "_q")
    xshape = ctx.b.values[xq].shape
    out_shape = ctx.g.values[out].shape
    if op == "qdense" and len(xshape) != 2:
        # x[..., K] as [rows, K]: a view on bytes with the same qparams
        (x2,) = ctx.b.emit("reshape", [xq], {"shape": (int(np.prod(xshape[:-1])), int(xshape[-1]))},
                           name=f"{node.name}_rows")
        ctx.b.values[x2] = replace(ctx.b.values[x2], qparams=QParams((float(s_x),), (int(z_x),)))
        xq = x2
    rows = op == "qdense" and tuple(out_shape) != (int(np.prod(xshape[:-1])), w.shape[0])
    if rows:
        # the rows are the positions of a sequence, padding included: the empirical bias correction
        # (a mean over all positions) would fit the padded ones, which the model's output ignores
        # (MiniLM: cos 0.990 -> 0.969 with it), so these layers are left out of it
        ctx.__dict__.setdefault("no_bias_correction", []).append(node.name)
    if to_float:
        acc_scale = np.float32(s_x) * np.asarray(s_w, np.float32)      # float32 product, as quantize_bias
        scale = tuple(float(v) for v in acc_scale)
        attrs = {"x_zero_point": int(z_x), "scale": scale[:1] if len(set(scale)) == 1 else scale}
        if rows:
            (y2,) = ctx.b.emit("qdense_dequant", [xq, wn, bn], attrs, name=node.name)
            ctx.b.emit("reshape", [y2], {"shape": tuple(int(d) for d in out_shape)}, outputs=[out],
                       name=f"{node.name}_unrows")
        else:
            ctx.b.emit("qdense_dequant", [xq, wn, bn], attrs, outputs=[out], name=node.name)
        ctx.fl.add(out)
        _record_accumulator(ctx, node.name, out)
        return [bias_add] if bias_add is not None else []
    act = {}
    if hswish is not None:
        act = _hard_swish_attrs(s_o, z_o, ctx.lo, ctx.hi, float(np.float32(s_x) * np.max(s_w)))
        h_unit = 2.0 ** -act["act_frac_bits"]     # the fixed-point pre-activation's step
        # odd multipliers (m | 1: a relative change below 2^-30): the float32 product s_x * s_w
        # times 2^F leaves m with 7+ trailing zero bits, so accumulators could land exactly on a
        # rounding tie of h; with m odd none can (|acc| < 2^(n-1)), and the kernels round h half up
        # with a signed multiply-high (edgec/backend/kernels/quant.py ``_hi32_signed_ok``)
        mults = [_odd_multiplier(*_mult(float(np.float32(s_x) * sw) / h_unit)) for sw in s_w]
    else:
        mults = [_mult(float(np.float32(s_x) * sw) / s_o) for sw in s_w]
    ms, shifts = zip(*mults)
    if len(set(mults)) == 1:
        ms, shifts = ms[:1], shifts[:1]
    attrs = dict(extra, x_zero_point=int(z_x), **_req_attrs(ms, shifts, z_o, lo, hi, ctx.dt), **act)
    if rows:
        (y2,) = ctx.b.emit(op, [xq, wn, bn], attrs, name=node.name)
        ctx.b.values[y2] = replace(ctx.b.values[y2], qparams=QParams((float(s_o),), (int(z_o),)))
        ctx.emit_q("reshape", [y2], {"shape": tuple(int(d) for d in out_shape)}, fname, s_o, z_o,
                   f"{node.name}_unrows")
    else:
        ctx.emit_q(op, [xq, wn, bn], attrs, fname, s_o, z_o, node.name)
    _record_accumulator(ctx, node.name, out)
    return ([bias_add] if bias_add is not None else []) + ([fused] if fused is not None else []) + (hswish or [])


# the fixed-point pre-activation of a fused hard swish: at most this many fraction bits
HSWISH_MAX_FRAC_BITS, HSWISH_MIN_FRAC_BITS = 16, 12


def _hard_swish_attrs(s_y: float, z_y: int, qlo: int, qhi: int, acc_scale: float | None = None) -> dict:
    """qconv / qdense attributes of a fused hard swish with output qparams (s_y, z_y) (edgec/ops/
    quant.py module doc): F fraction bits for h, as many as keep |h * clamp(h + 3, 0, 6)| < 2^31
    (in 2^-F units) for every h up to the largest output the int8 range holds; h is clamped to
    [-3, y_max + 1] (below -3 the result is 0, above y_max the output saturates: the clamp
    changes no result). ``acc_scale`` (the largest s_x * s_w[c]): F is also lowered until the
    first step's multipliers ``acc_scale * 2^F`` are below 1/8 (right shifts >= 33, so that the
    kernels requantize in 32-bit lanes, quant.requant_hi32), but not below HSWISH_MIN_FRAC_BITS."""
    y_max = max((qhi - z_y) * s_y, 3.0)
    f = HSWISH_MAX_FRAC_BITS
    while f > 0 and math.ceil((y_max + 1) * 2 ** f) * 6 * 2 ** f >= 2 ** 31:
        f -= 1
    if acc_scale is not None and acc_scale > 0:
        # below 1/8 (a hair less, for quantize_multiplier's rounding): a right shift of 33 or more
        f = max(min(f, math.floor(math.log2(0.124 / acc_scale))), min(f, HSWISH_MIN_FRAC_BITS))
    hmax = math.ceil((y_max + 1) * 2 ** f)
    if hmax * 6 * 2 ** f >= 2 ** 31:
        raise NotQuantizable(f"hard swish output range up to {y_max:.3g} is too wide for the fused form")
    return {"act": "hard_swish", "act_frac_bits": f, "act_hmin": -3 * 2 ** f, "act_hmax": hmax,
            **_hard_swish_final(f, max(3 * 2 ** f, hmax) * 6 * 2 ** f, 2.0 ** (-2 * f) / (6.0 * s_y))}


def _hard_swish_final(f: int, p_bound: int, scale: float) -> dict:
    """The last step of a fused hard swish (edgec/ops/quant.py module doc), y = round(q * M / 2^n)
    with q = round(p / 2^s) for the real ``scale`` (output units per unit of p, |p| <= p_bound):
    s makes |q| < 2^16, then the largest right shift n <= 31 whose multiplier M = round(scale *
    2^(s+n)) keeps |q| * M + 2^(n-1) < 2^31 (M about 15 bits: a relative error below 2^-14)."""
    ps = max(0, p_bound.bit_length() - 16)
    qb = (p_bound + (1 << ps >> 1)) >> ps
    for n in range(31, 0, -1):
        m = int(round(scale * 2.0 ** (ps + n)))
        if 1 <= m <= 2 ** 30 and qb * m + (1 << (n - 1)) < 2 ** 31:
            return {"act_pre_shift": ps, "act_multiplier": m, "act_right_shift": n}
    raise NotQuantizable(f"hard swish output scale {scale:.3g} has no 32-bit fixed-point form")


def _record_accumulator(ctx: _Ctx, qnode: str, value: str) -> None:
    """The float value (pre-activation, bias included) that a qconv / qdense accumulator stands
    for, for the bias correction (a fused bias add makes it differ from the node's own output)."""
    ctx.__dict__.setdefault("accumulators", {})[qnode] = value


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


def _other_input(node: Node, name: str) -> str:
    return node.inputs[1] if node.inputs[0] == name else node.inputs[0]


def _bias_add(ctx: _Ctx, node: Node, n: int) -> Node | None:
    """The add of a constant bias of N values that is the only consumer of a matmul's output."""
    out = node.outputs[0]
    cons = ctx.consumers.get(out, [])
    if len(cons) != 1 or out in ctx.g.outputs or cons[0].op != "add":
        return None
    add = cons[0]
    if add.name in ctx.opt.fallback_nodes or "add" in ctx.opt.fallback_ops or len(add.inputs) != 2:
        return None
    other = ctx.g.values[_other_input(add, out)]
    if other.const is None or other.dtype != "float32" or other.const.size != n or other.const.shape[-1:] != (n,):
        return None
    if ctx.g.values[add.outputs[0]].shape != ctx.g.values[out].shape:
        return None
    return add


def rule_matmul(ctx: _Ctx, node: Node) -> list[Node]:
    a, b = (ctx.g.values[i] for i in node.inputs)
    if len(a.shape) >= 2 and len(b.shape) == 2 and b.const is not None and a.const is None:
        # x[..., K] @ W[K, N] with constant W: a dense with per-channel weights W.T on the
        # [rows, K] view of x, with the bias add that follows fused into its int32 bias
        w = np.ascontiguousarray(b.const.T)
        return _linear(ctx, node, "qdense", w, None, (1,), {}, _bias_add(ctx, node, w.shape[0]))
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


def _elementwise_worth_it(ctx: _Ctx, node: Node) -> None:
    """An add/mul whose result only feeds float ops stays float: in integers it would only add an
    8-bit rounding of its output (and of any float input) before being dequantized again. The
    residual adds before a LayerNorm and the attention-mask add before a softmax are such ops."""
    if ctx.feeds_only_float(node):
        raise NotQuantizable("its result only feeds float ops")


def rule_add(ctx: _Ctx, node: Node) -> list[Node]:
    _elementwise_worth_it(ctx, node)
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
    _elementwise_worth_it(ctx, node)
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
    """Ops that only move or select values: same qparams in and out, no requantization. A float
    input stays float (quantizing it here would add a rounding that its float source avoided)."""
    if node.inputs[0] not in ctx.qname and ctx.g.values[node.inputs[0]].const is None:
        raise NotQuantizable("its input is float")
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
    """mean = requantize(sum_int32(x - z_in), s_in / (count * s_out)): one qglobal_avg_pool."""
    xq = ctx.q(node.inputs[0])
    s_i, z_i = ctx.qp(xq)
    s_o, z_o = ctx.act_qparams(node.outputs[0])
    xv = ctx.b.values[xq]
    count = int(np.prod(xv.shape[2:]))
    if count * 255 >= 2 ** 31:
        raise NotQuantizable("spatial size too large for an int32 sum")
    m, sh = _mult(s_i / (count * s_o))
    attrs = {"x_zero_point": z_i, **_req_attrs([m], [sh], z_o, ctx.lo, ctx.hi, ctx.dt)}
    ctx.emit_q("qglobal_avg_pool", [xq], attrs, node.outputs[0], s_o, z_o, node.name)
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


def rule_avg_pool(ctx: _Ctx, node: Node) -> list[Node]:
    """avg_pool as a depthwise qconv with unit weights: acc = sum over the window of (q - z_in)
    (padding holds z_in, i.e. real 0), then one requantization by s_in / (count * s_out).
    When every window has the same divisor (count_include_pad, or no window touches the padding)
    the requantization is the qconv's own epilogue. Otherwise the counts differ near the border:
    with L = lcm of the counts, acc * (L / count) is an exact int32 (a ``mul`` by a constant
    per-position table) and one ``requantize`` by s_in / (L * s_out) rounds it once: the same
    correctly rounded value of s_in * acc / (count * s_out)."""
    from math import lcm
    from ..ops.nn import _avg_counts
    from ..ops._nn_util import window_out_shape
    xq = ctx.q(node.inputs[0])
    s_i, z_i = ctx.qp(xq)
    s_o, z_o = ctx.act_qparams(node.outputs[0])
    xv = ctx.b.values[xq]
    a = node.attrs
    kernel = tuple(a["kernel"])
    k = int(np.prod(kernel))
    c = int(xv.shape[1])
    out = window_out_shape("avg_pool", xv.shape[2:], kernel, a["strides"], a["pads"], a["dilations"])
    counts = (np.full(out, k, np.int64) if a["count_include_pad"]
              else _avg_counts(xv.shape[2:], kernel, a["strides"], a["pads"], a["dilations"], out))
    if counts.min() < 1:
        raise NotQuantizable("a pooling window lies entirely in the padding")
    big = lcm(*sorted(set(int(v) for v in counts.ravel())))
    if k * 255 * big >= 2 ** 31:
        raise NotQuantizable(f"window of {k} taps too large for an int32 sum")
    w = ctx.b.add_const(np.ones((c, 1) + kernel, np.int8), node.name + "_ones")
    bias = ctx.b.add_const(np.full(c, -k * z_i, np.int32), node.name + "_bias_q")
    geo = {"strides": a["strides"], "pads": a["pads"], "dilations": a["dilations"], "group": c, "x_zero_point": z_i}
    if big == int(counts.min()):   # one divisor everywhere
        m, sh = _mult(s_i / (big * s_o))
        ctx.emit_q("qconv", [xq, w, bias], {**geo, **_req_attrs([m], [sh], z_o, ctx.lo, ctx.hi, ctx.dt)},
                   node.outputs[0], s_o, z_o, node.name)
        return []
    i32 = (-(2 ** 31), 2 ** 31 - 1)
    (acc,) = ctx.b.emit("qconv", [xq, w, bias], {**geo, **_req_attrs([2 ** 30], [1], 0, *i32, "int32")},
                        name=f"{node.name}_sum")
    scale = ctx.b.add_const((big // counts).astype(np.int32).reshape((1, 1) + tuple(out)), node.name + "_recip")
    (acc2,) = ctx.b.emit("mul", [acc, scale], name=f"{node.name}_scale")
    m, sh = _mult(s_i / (big * s_o))
    ctx.emit_q("requantize", [acc2], {"in_zero_point": 0, **_req_attrs([m], [sh], z_o, ctx.lo, ctx.hi, ctx.dt)},
               node.outputs[0], s_o, z_o, node.name)
    return []


def _positive_scalar(ctx: _Ctx, name: str) -> float | None:
    v = ctx.g.values[name]
    if v.const is None or v.const.size != 1 or v.dtype != "float32":
        return None
    c = float(v.const.reshape(()))
    return c if np.isfinite(c) and c > 0 else None


def rule_div(ctx: _Ctx, node: Node) -> list[Node]:
    """x / c with a positive scalar constant c: a rescale, requantize(q - z_in, s_in / (c * s_out))
    (one rounding). Other divisions stay float."""
    c = _positive_scalar(ctx, node.inputs[1])
    if c is None or ctx.g.values[node.inputs[0]].const is not None:
        raise NotQuantizable("only a division by a positive scalar constant has an int8 rule")
    xq = ctx.q(node.inputs[0])
    s_i, z_i = ctx.qp(xq)
    fname, lo, hi, fused = ctx.fused_output(node)
    s_o, z_o = ctx.act_qparams(fname)
    m, sh = _mult(float(s_i) / (c * s_o))
    ctx.emit_q("requantize", [xq], {"in_zero_point": z_i, **_req_attrs([m], [sh], z_o, lo, hi, ctx.dt)},
               fname, s_o, z_o, node.name)
    return [fused] if fused is not None else []


# -- elementwise chains of one input: one lookup table --------------------------------------------

_CHAIN_OPS = frozenset(("add", "sub", "mul", "div", "clip", "relu", "neg", "abs") + _LUT_OPS)


def _chain_region(ctx: _Ctx, node: Node) -> tuple[str, list[Node]] | None:
    """The elementwise chain that starts at ``node`` and is a function of ONE runtime float value
    ``h`` (every other operand a scalar constant), e.g. hard-swish as exported by Paddle:
    ``a = h + 3; c = clip(a, 0, 6); m = h * c; y = m / 6``. Grows along single consumers as long
    as the consumer's runtime operands are ``h`` or values of the chain; returns (h, nodes) for
    a chain of at least two nodes whose intermediate values are used nowhere else."""
    def runtime_inputs(n: Node) -> list[str] | None:
        if n.op not in _CHAIN_OPS or len(n.outputs) != 1:
            return None
        rt = []
        for i in n.inputs:
            if not i:
                continue
            v = ctx.g.values[i]
            if v.const is not None:
                if v.const.size != 1 or v.dtype != "float32":
                    return None
            else:
                rt.append(i)
        return rt

    def usable(n: Node) -> bool:
        return n.name not in ctx.opt.fallback_nodes and n.op not in ctx.opt.fallback_ops

    rt = runtime_inputs(node)
    if not rt or len(set(rt)) != 1 or not usable(node):
        return None
    h = rt[0]
    hv = ctx.g.values[h]
    if hv.dtype != "float32" or h not in ctx.ranges:
        return None
    region = [node]
    produced = {node.outputs[0]}
    while True:
        out = region[-1].outputs[0]
        cons = ctx.consumers.get(out, [])
        if len(cons) != 1 or out in ctx.g.outputs:
            break
        nxt = cons[0]
        rt = runtime_inputs(nxt)
        if (rt is None or not usable(nxt) or not set(rt) <= produced | {h}
                or ctx.g.values[nxt.outputs[0]].shape != hv.shape):
            break
        region.append(nxt)
        produced.add(nxt.outputs[0])
    # every intermediate value must be consumed only inside the chain
    inside = {id(n) for n in region}
    for n in region[:-1]:
        o = n.outputs[0]
        if o in ctx.g.outputs or any(id(c) not in inside for c in ctx.consumers.get(o, [])):
            return None
    if len(region) < 2 or ctx.g.values[region[-1].outputs[0]].shape != hv.shape:
        return None
    return h, region


def _eval_chain(ctx: _Ctx, h: str, region: list[Node], hv: np.ndarray) -> np.ndarray:
    """The chain's result (float32, the shape of ``hv``) for the values ``hv`` of its input ``h``,
    computed with the float references of the chain's own ops (its scalar constants honoured)."""
    env = {h: hv}
    for n in region:
        args = [None if not i else env[i] if i in env else ctx.g.values[i].const.reshape(()) for i in n.inputs]
        (y,) = get_op(n.op).reference(*args, **n.attrs)
        env[n.outputs[0]] = np.asarray(y, np.float32).reshape(hv.shape)
    return env[region[-1].outputs[0]]


def rule_chain_lut(ctx: _Ctx, h: str, region: list[Node]) -> list[Node]:
    """The chain as one qlut on h's integer version: ``table[i] = quantize(chain(dequantize(i)))``
    computed with the float references of the chain's own ops (so any constants are honoured)."""
    xq = ctx.q(h)
    s_i, z_i = ctx.qp(xq)
    out = region[-1].outputs[0]
    s_o, z_o = ctx.act_qparams(out)
    in_dt = ctx.b.values[xq].dtype
    lo = qrange(in_dt)[0]
    levels = dequantize(np.arange(lo, lo + 256).astype(in_dt), s_i, z_i).astype(np.float32)
    table = quantize(_eval_chain(ctx, h, region, levels), s_o, z_o, ctx.dt)
    ctx.emit_q("qlut", [xq], {"table": tuple(int(t) for t in table), "out_dtype": ctx.dt}, out, s_o, z_o,
               region[0].name)
    return region[1:]


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
    "avg_pool": rule_avg_pool,
    "div": rule_div,
    "gather": rule_gather,
    **{op: rule_pass_through for op in _PASS_THROUGH},
    **{op: rule_lut for op in _LUT_OPS},
}


def quantize_int8(graph: Graph, ranges: dict, options: QuantizeOptions | None = None, calib_feeds=None) -> Graph:
    """Quantize ``graph`` with calibrated ``ranges`` ({float value: (rmin, rmax)}); see the module doc.

    ``calib_feeds``: calibration feed dicts (an iterable, read once); with
    ``options.bias_correction`` the first ``options.bias_correction_samples`` of them correct the
    int32 biases (``bias_correction``)."""
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
        rules = [QUANT_RULES[node.op]] if node.op in QUANT_RULES else []
        chain = _chain_region(ctx, node) if options.fuse_activations else None
        if chain is not None:   # a whole elementwise chain as one table first, else the op's own rule
            rules.insert(0, lambda c, n, _chain=chain: rule_chain_lut(c, *_chain))
        reason = None
        if not rules:
            reason = "no int8 rule"
        elif node.op in options.fallback_ops or node.name in options.fallback_nodes:
            reason = "fallback requested"
        else:
            for rule in rules:
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
                    reason = None
                    break
            if reason is None:
                for fn in fused:
                    ctx.skip.add(id(fn))
                    fused_into[id(fn)] = node.name
                emitted = ctx.b.nodes[mark[0]:]
                main = [n.op for n in emitted if n.name == node.name]
                ctx.layers.append({"node": node.name, "op": node.op, "precision": "int8",
                                   "choice": main[0] if main else emitted[-1].op if emitted else node.op})
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
        # qconv / qdense node -> the float value its accumulator stands for (bias correction)
        "accumulators": dict(ctx.__dict__.get("accumulators", {})),
        # linear layers over the positions of a sequence (rank > 2 input): no bias correction
        "no_bias_correction": list(ctx.__dict__.get("no_bias_correction", [])),
    }
    density = calib_feeds is not None and bool(_density_candidates(out))
    if density:
        calib_feeds = take_samples(calib_feeds)     # a list: read by both steps below
    if options.bias_correction and calib_feeds is not None:
        apply_bias_correction(out, graph, calib_feeds, options)
    if density:     # on the final (bias-corrected) graph
        annotate_input_density(out, calib_feeds)
    return out


# -- accumulator bounds ------------------------------------------------------------------------------

def annotate_acc_bounds(graph: Graph) -> int:
    """Sets ``acc_bound`` on every qconv / qdense whose weights and bias are constants: the
    largest |acc[c]| = |sum_k x[k] w[c, k] + bias[c]| any input can give (x anywhere in its
    dtype's range), so that kernels may pre-shift the accumulator (edgec/ops/quant.py module
    doc). Run on the final graph (after bias correction and weight rounding). Returns how many
    nodes were annotated."""
    count = 0
    for i, n in enumerate(graph.nodes):
        if n.op not in ("qconv", "qdense") or "acc_bound" not in get_op(n.op).attrs:
            continue
        w = graph.values[n.inputs[1]].const
        b = graph.values[n.inputs[2]].const if len(n.inputs) > 2 and n.inputs[2] else None
        if w is None or (len(n.inputs) > 2 and n.inputs[2] and b is None):
            continue
        lo, hi = qrange(graph.values[n.inputs[0]].dtype)
        xmax = max(abs(lo), abs(hi))
        w64 = np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(axis=1) * xmax
        if b is not None:
            w64 = w64 + np.abs(b.astype(np.int64).reshape(-1))
        bound = int(w64.max()) if w64.size else 0
        if bound < 2 ** 31:
            graph.nodes[i] = replace(n, attrs={**n.attrs, "acc_bound": bound})
            count += 1
    return count


# -- input density (sparse-input qdense) -----------------------------------------------------------

# a qdense with at most this many rows and at least this long a reduction gets ``input_density``
DENSITY_MAX_ROWS, DENSITY_MIN_K, DENSITY_SAMPLES = 1, 1024, 64


def _density_candidates(qgraph: Graph) -> list[int]:
    """Indices of the qdense nodes whose input sparsity could pay (few rows, long K), when the op
    schema has the ``input_density`` attribute."""
    if "input_density" not in get_op("qdense").attrs:
        return []
    out = []
    for i, n in enumerate(qgraph.nodes):
        if n.op == "qdense":
            shape = qgraph.values[n.inputs[0]].shape
            if len(shape) == 2 and shape[0] <= DENSITY_MAX_ROWS and shape[1] >= DENSITY_MIN_K:
                out.append(i)
    return out


def annotate_input_density(qgraph: Graph, samples: list) -> dict:
    """Sets ``input_density`` on every candidate qdense: the fraction of its input entries that
    are not 0 over the first DENSITY_SAMPLES calibration samples (the quantized graph run node by
    node up to the last candidate). Entries equal to 0 contribute nothing to the accumulator
    (the zero-point correction is in the bias), so the kernel may skip them (edgec/backend/
    kernels/quant_sparse.py). Returns {node name: density}."""
    cand = _density_candidates(qgraph)
    samples = take_samples(samples, DENSITY_SAMPLES)
    if not cand or not samples:
        return {}
    found: dict[int, float] = {}
    for i, (node, envs, _) in enumerate(run_node_by_node(qgraph, samples)):
        if i in cand:
            nz = sum(int(np.count_nonzero(env[node.inputs[0]])) for env in envs)
            total = sum(int(env[node.inputs[0]].size) for env in envs)
            found[i] = round(nz / max(1, total), 4)
        if i >= cand[-1]:
            break
    for i, d in found.items():
        n = qgraph.nodes[i]
        qgraph.nodes[i] = replace(n, attrs={**n.attrs, "input_density": d})
    return {qgraph.nodes[i].name: d for i, d in found.items()}


def apply_bias_correction(qgraph: Graph, float_graph: Graph, feeds, options: QuantizeOptions) -> Graph:
    """``bias_correction`` with ``options.bias_correction_samples``, recorded in
    ``qgraph.meta["quantization"]["bias_correction"]`` ({"layers": n, "samples": k, "seconds": t})."""
    import time
    t0 = time.perf_counter()
    samples = take_samples(feeds, options.bias_correction_samples)
    done = bias_correction(qgraph, float_graph, samples)
    qgraph.meta.setdefault("quantization", {})["bias_correction"] = {
        "layers": len(done), "samples": len(samples), "seconds": round(time.perf_counter() - t0, 3)}
    return qgraph


# -- empirical bias correction ---------------------------------------------------------------------

_LINEAR_Q = ("qconv", "qdense", "qdense_dequant")


def _int_accumulator(node: Node, x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The int32 accumulator of a qconv / qdense / qdense_dequant (before its epilogue), as int64."""
    from ..ops._exact import int_conv, int_matmul
    if node.op in ("qdense", "qdense_dequant"):
        return int_matmul(x, w.T) + bias.astype(np.int64)
    from ..ops._nn_util import pad_spatial
    xp = pad_spatial(x.astype(np.int64), node.attrs["pads"], np.int64(node.attrs["x_zero_point"]))
    r = x.ndim - 2
    return int_conv(xp, w, bias, strides=node.attrs["strides"], pads=(0,) * (2 * r),
                    dilations=node.attrs["dilations"], group=node.attrs["group"])


def _channel_sum(a: np.ndarray) -> np.ndarray:
    """Sum over every axis but 1 (the output channel of conv NCHW.. and dense [M, N]), float64."""
    return np.asarray(a, np.float64).sum(axis=tuple(i for i in range(a.ndim) if i != 1))


def take_samples(feeds, max_samples: int | None = None) -> list[dict]:
    """The first ``max_samples`` feed dicts of ``feeds`` (all with None), as numpy arrays."""
    samples = []
    for k, feed in enumerate(feeds):
        if max_samples is not None and k >= max_samples:
            break
        samples.append({n: np.asarray(a) for n, a in feed.items()})
    return samples


def run_node_by_node(qgraph: Graph, samples: list):
    """Run ``qgraph`` over every sample one node at a time (references), values freed after their
    last use. Yields ``(node, envs, consts)`` *before* each node runs: a pass reads the node's
    inputs in ``envs`` (one {value: array} per sample) and may replace constants in ``consts``
    (the node then runs with them), so each layer sees the already-changed layers upstream."""
    last_use: dict[str, int] = {}
    for i, n in enumerate(qgraph.nodes):
        for v in n.inputs:
            if v:
                last_use[v] = i
    keep = set(qgraph.outputs)
    consts = {v.name: v.const for v in qgraph.values.values() if v.const is not None}
    envs = [dict(s) for s in samples]
    for i, node in enumerate(qgraph.nodes):
        yield node, envs, consts
        opdef = get_op(node.op)
        for env in envs:
            args = [(env[v] if v in env else consts[v]) if v else None for v in node.inputs]
            for o, r in zip(node.outputs, opdef.reference(*args, **node.attrs)):
                env[o] = np.asarray(r)
            for v in node.inputs:
                if v and last_use.get(v) == i and v not in keep and v in env:
                    del env[v]


def bias_correction(qgraph: Graph, float_graph: Graph, feeds, max_samples: int | None = None,
                    min_significance: float = 0.0) -> dict:
    """Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization", sec. 4.2, with data).

    For every qconv / qdense of ``qgraph`` (in graph order) whose float original (the node of
    ``float_graph`` with the same name) is known: the mean, per output channel and over the samples
    and positions, of the int32 accumulator computed from the *quantized* network's input is
    compared with the mean of the float layer's pre-activation output on the *float* network,
    expressed in accumulator units (divided by s_x * s_w[c]); the rounded difference is subtracted
    from the int32 bias. The layers are corrected one after the other, each seeing the corrected
    upstream layers (the quantized network is evaluated node by node over all samples). Integer
    math is unchanged: only bias constants move. A layer is left as is when the corrected bias
    could let the accumulator overflow int32. Modifies ``qgraph`` in place; returns
    {node name: max |delta| in accumulator units}.
    """
    from ..reference.interpreter import run_graph as _run
    samples = take_samples(feeds, max_samples)
    if not samples:
        return {}
    fnodes = {n.name: n for n in float_graph.nodes}
    # the float value each accumulator stands for: the node's output, or a fused bias add's
    accs = dict(qgraph.meta.get("quantization", {}).get("accumulators", {}))
    skip = set(qgraph.meta.get("quantization", {}).get("no_bias_correction", []))
    # only the qconv / qdense that stand for a float conv / dense / matmul (not e.g. the unit-weight
    # qconv of an avg_pool, whose accumulator is a window sum) and have a constant bias
    targets = {n.name for n in qgraph.nodes if n.op in _LINEAR_Q and n.name in fnodes and n.name not in skip
               and fnodes[n.name].op in ("conv", "dense", "matmul") and len(n.inputs) > 2 and n.inputs[2]
               and qgraph.values[n.inputs[2]].const is not None and qgraph.values[n.inputs[0]].qparams is not None
               and qgraph.values[n.inputs[1]].qparams is not None}
    if not targets:
        return {}
    qgraph_ops = {n.name: n.op for n in qgraph.nodes if n.name in targets}
    # float side: per-channel means of the pre-activation outputs, one float run per sample
    fmeans: dict[str, list[np.ndarray]] = {name: [] for name in targets}  # per sample, per channel
    for feed in samples:
        env = _run(float_graph, feed, keep_all=True)
        for name in targets:
            y = env[accs.get(name, fnodes[name].outputs[0])]
            if qgraph_ops[name] != "qconv":
                y = y.reshape(-1, y.shape[-1])     # a matmul's [..., N]: channels last
            fmeans[name].append(_channel_sum(y) / (y.size // y.shape[1]))
    # quantized side: node by node over all samples, values freed after their last use
    done: dict[str, int] = {}
    for node, envs, consts in run_node_by_node(qgraph, samples):
        if node.name in targets:
            x, wname, bname = node.inputs[:3]
            w, b = consts[wname], consts[bname]
            s_x = float(qgraph.values[x].qparams.scale[0])
            s_w = np.broadcast_to(np.asarray(qgraph.values[wname].qparams.scale, np.float64), (w.shape[0],))
            diffs = []  # per sample: mean accumulator - float mean in accumulator units, per channel
            for env, fm in zip(envs, fmeans[node.name]):
                acc = _int_accumulator(node, env[x], w, b)
                diffs.append(_channel_sum(acc) / (acc.size // acc.shape[1]) - fm / (s_x * s_w))
            d = np.stack(diffs)
            mean = d.mean(axis=0)
            if min_significance > 0 and len(d) > 1:
                # shrink: a channel whose mean error is within min_significance standard errors
                # of 0 is left alone (its correction would be mostly estimation noise)
                se = d.std(axis=0, ddof=1) / np.sqrt(len(d))
                mean = np.where(np.abs(mean) > min_significance * se, mean, 0.0)
            delta = np.rint(mean).astype(np.int64)
            new_b = b.astype(np.int64) - delta
            k = w.size // w.shape[0]
            if k * 255 * 128 + int(np.abs(new_b).max()) < 2 ** 31:
                new_b = new_b.astype(np.int32)
                consts[bname] = new_b
                qgraph.values[bname] = replace(qgraph.values[bname], const=new_b)
                done[node.name] = int(np.abs(delta).max()) if delta.size else 0
    return done


__all__ = ["quantize_int8", "bias_correction", "apply_bias_correction", "QuantizeOptions", "QuantizeOptionsError", "QUANT_RULES", "NotQuantizable"]
