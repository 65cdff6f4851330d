"""Fuse the QDQ patterns of a pre-quantized ONNX model (onnxruntime / PyTorch QDQ export) into
integer ops.

Preconditions: an imported graph with shapes inferred and *before* ``fold_constants``: the
importer keeps a DequantizeLinear of a constant (int8 weights, int32 bias) as an integer constant +
``dequantize`` so that this pass reads the exact integers and scales.
Effect: each float node ``N`` whose activation inputs are ``dequantize(x_q)`` (per tensor, uint8 or
int8) and whose only consumer is a per-tensor ``quantize`` (optionally through one relu/clip) is
replaced by one integer node (or a few) producing that ``quantize``'s output value; the
``quantize`` / ``relu`` / ``clip`` disappear, the ``dequantize`` nodes left without consumers are
removed by ``eliminate_dead_code``. What does not match stays float between its
``dequantize`` / ``quantize`` nodes, exactly as onnxruntime runs it, with the reason recorded.
A graph without ``quantize`` / ``dequantize`` nodes is returned unchanged.

| pattern (DQ = dequantize, Q = quantize) | result |
|---|---|
| DQ(x), DQ(w const), [DQ(b int32) / float b] -> conv / dense / matmul [-> add(DQ(b))] [-> relu/clip] -> Q | qconv / qdense (matmul with a constant [K, N] operand: qdense on w.T, through reshapes for rank > 2) |
| DQ(a), DQ(b) -> matmul -> Q (both runtime) | qmatmul |
| DQ(a), DQ(b) -> add / mul [-> relu/clip] -> Q | qadd / qmul; a one-element constant operand: qlut of the other (exact) |
| DQ(x...) -> concat -> Q | concat (inputs with other qparams requantized first) |
| DQ(x) -> reshape / transpose / max_pool / global_max_pool / slice / depth_to_space / space_to_depth -> Q | the same op on integers (+ requantize when Q's qparams differ) |
| DQ(x) -> global_avg_pool -> Q | qglobal_avg_pool |
| DQ(x) -> avg_pool -> Q | depthwise qconv with all-one weights (count_include_pad or no padding) |
| DQ(x) -> unary elementwise f (sigmoid, hard_swish, relu, clip, ...) -> Q | qlut ``table[i] = quantize(f(dequantize(i)))`` |

Weights: int8 with zero point 0 or uint8 with zero point 128 (shifted exactly to int8), per tensor
or per output channel. Bias: int32 with zero point 0; its scale should be ``s_x * s_w[c]`` (float32
product, as onnxruntime exports it); another scale (or a float bias) is requantized with
``quantize_bias``. The activation zero-point correction is folded into the bias. Multipliers:
``quantize_multiplier(float32(float32(s_x * s_w[c]) / s_y))`` (the float32 values onnxruntime
computes), requantization in fixed point (docs/quantization.md section 3): results agree with
onnxruntime within one quantum.
``graph.meta["quantization"]`` is filled as by ``quantize_int8`` (source "qdq").
Example:
    before  %x_q = quantize(x); %xd = dequantize(x_q); %wd = dequantize(w_i8) {axis=0};
            %bd = dequantize(b_i32) {axis=0}; %c = conv(xd, wd, bd); %r_q = quantize(c)
    after   %x_q = quantize(x); %r_q = qconv(x_q, w_i8, b_fold) {multiplier=..., ...}
Tests: tests/quant/test_qdq_fusion.py
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from ..errors import EdgecError
from ..ir.graph import Graph, NameGen, Node, QParams, Value, const_value, freeze_attrs
from ..ir.ops import get as get_op
from ..quant.qmath import QuantizationError, dequantize, qrange, quantize, quantize_multiplier

_ACT = ("uint8", "int8")
_I32_MAX = 2 ** 31 - 1
_LEFT_SHIFT = 20
_PASS_THROUGH = ("reshape", "transpose", "max_pool", "global_max_pool", "slice", "depth_to_space",
                 "space_to_depth")
_LUT_OPS = ("sigmoid", "tanh", "hard_swish", "hard_sigmoid", "gelu", "elu", "leaky_relu", "softplus", "erf", "exp",
            "selu", "softsign", "relu", "clip", "neg", "abs")


ROUNDINGS = ("fixed", "onnxruntime")
ROUNDING_ENV = "EDGEC_QDQ_ROUNDING"


class FuseQDQOptionsError(EdgecError):
    pass


@dataclass(frozen=True)
class FuseQDQOptions:
    """``rounding``: "fixed" (default): the integer-only requantization of docs/quantization.md
    section 3 everywhere. "onnxruntime": conv / dense / matmul outputs are requantized as
    onnxruntime's CPU kernels do (int32 accumulator -> float32, times the float32 multiplier, round
    half to even): the integer kernel returns the int32 accumulator and a ``cast`` / ``mul`` /
    ``quantize`` (/ ``clip``) epilogue follows; bit-exact with onnxruntime but not integer-only.
    Without options, the environment variable ``EDGEC_QDQ_ROUNDING`` gives the rounding."""
    rounding: str = "fixed"

    def __post_init__(self):
        if self.rounding not in ROUNDINGS:
            raise FuseQDQOptionsError(f"rounding must be one of {list(ROUNDINGS)}, got {self.rounding!r}")


class NotFusable(Exception):
    """A pattern that does not apply: the node stays float (the message is the reason)."""


def _tuple(v) -> tuple:
    return v if isinstance(v, tuple) else (v,)


class _Fuser:
    def __init__(self, graph: Graph, options: FuseQDQOptions):
        self.opt = options
        self.g = graph
        self.prod = graph.producers()
        self.cons = graph.consumers()
        self.names = NameGen(graph.values)
        self.new_values: dict[str, Value] = {}
        self.removed: set[int] = set()          # ids of nodes replaced by a fusion
        self.replace: dict[int, list[Node]] = {}  # id of the anchor node -> nodes emitted in its place
        self.layers: dict[int, dict] = {}
        self.per_channel = False

    # -- the graph around a node ------------------------------------------------------------------
    def value(self, name: str) -> Value:
        return self.new_values.get(name) or self.g.values[name]

    def act(self, name: str) -> tuple[str, float, int, str]:
        """Input ``name`` = dequantize(x_q), per tensor, x_q a uint8/int8 value: (x_q, scale, zp, dtype)."""
        d = self.prod.get(name)
        if d is None or d.op != "dequantize":
            raise NotFusable(f"input {name!r} is not the output of a DequantizeLinear")
        src = self.g.values[d.inputs[0]]
        if src.dtype not in _ACT:
            raise NotFusable(f"input {name!r} is dequantized from {src.dtype}")
        s, z = _tuple(d.attrs["scale"]), _tuple(d.attrs["zero_point"])
        if len(set(s)) != 1 or len(set(z)) != 1:
            raise NotFusable(f"input {name!r} is quantized per axis (activations must be per tensor)")
        return d.inputs[0], float(np.float32(s[0])), int(z[0]), src.dtype

    def const_dq(self, name: str):
        """Input ``name`` = dequantize(constant integers): (integers, scales[float32], zps[int64], axis)."""
        d = self.prod.get(name)
        if d is None or d.op != "dequantize" or self.g.values[d.inputs[0]].const is None:
            raise NotFusable(f"{name!r} is not a DequantizeLinear of a constant")
        q = self.g.values[d.inputs[0]].const
        s = np.asarray(_tuple(d.attrs["scale"]), np.float32)
        z = np.asarray(_tuple(d.attrs["zero_point"]), np.int64)
        return q, s, z, d.attrs["axis"]

    def single_consumer(self, name: str) -> Node | None:
        c = self.cons.get(name, [])
        if len(c) != 1 or name in self.g.outputs:
            return None
        return c[0]

    def out_q(self, node: Node, allow_act: bool = True):
        """The quantize after ``node`` (through one relu/clip when ``allow_act``):
        (Q node, act node or None, out scale, out zp, out dtype)."""
        nxt = self.single_consumer(node.outputs[0])
        act = None
        if allow_act and nxt is not None and nxt.op in ("relu", "clip") and id(nxt) not in self.removed:
            act = nxt
            nxt = self.single_consumer(nxt.outputs[0])
        if nxt is None or nxt.op != "quantize":
            raise NotFusable("the output is not quantized (no single QuantizeLinear consumer)")
        s, z = _tuple(nxt.attrs["scale"]), _tuple(nxt.attrs["zero_point"])
        if len(s) != 1 or len(z) != 1:
            raise NotFusable("the output is quantized per axis")
        return nxt, act, float(np.float32(s[0])), int(z[0]), nxt.attrs["dtype"]

    def clamp(self, act: Node | None, s: float, z: int, dt: str) -> tuple[int, int]:
        lo, hi = qrange(dt)
        if act is None:
            return lo, hi
        if act.op == "relu":
            return max(lo, min(hi, z)), hi
        a, b = lo, hi
        if act.attrs["min"] is not None:
            a = int(np.clip(z + np.rint(float(act.attrs["min"]) / s), lo, hi))
        if act.attrs["max"] is not None:
            b = int(np.clip(z + np.rint(float(act.attrs["max"]) / s), lo, hi))
        if not a < b:
            raise NotFusable("the clip range is under one quantum")
        return a, b

    # -- emitting ---------------------------------------------------------------------------------
    def const(self, base: str, array: np.ndarray) -> str:
        name = self.names(base)
        self.new_values[name] = const_value(name, array)
        return name

    def node(self, out: list[Node], op: str, inputs, attrs, outputs=None, name: str = "") -> str:
        """Append one node to ``out`` (types inferred); returns its (first) output name."""
        opdef = get_op(op)
        attrs = freeze_attrs(opdef.normalize_attrs(dict(attrs)))
        types = opdef.infer([self.value(i) if i else None for i in inputs], attrs)
        if outputs is None:
            outputs = [self.names(f"{name}_{op}")]
        for o, (dt, shp) in zip(outputs, types):
            old = self.g.values.get(o)
            if old is not None and (old.dtype != dt or tuple(old.shape) != tuple(shp)):
                raise NotFusable(f"{op} would give {dt}{list(shp)} for {o!r}, the graph has {old.dtype}{list(old.shape)}")
            self.new_values[o] = Value(o, dt, tuple(int(d) for d in shp), qparams=old.qparams if old else None)
        out.append(Node(op, tuple(inputs), tuple(outputs), attrs, name or outputs[0]))
        return outputs[0]


def _req(ms, z, lo, hi, dt) -> dict:
    m, s = zip(*ms)
    if len(set(ms)) == 1:
        m, s = m[:1], s[:1]
    return {"multiplier": tuple(int(v) for v in m), "shift": tuple(int(v) for v in s), "out_zero_point": int(z),
            "qmin": int(lo), "qmax": int(hi), "out_dtype": dt}


def _mult(real) -> tuple[int, int]:
    return quantize_multiplier(float(real))


_I32_IDENTITY = {"multiplier": (2 ** 30,), "shift": (1,), "out_zero_point": 0, "qmin": -(2 ** 31),
                 "qmax": 2 ** 31 - 1, "out_dtype": "int32"}


def _emit_requantized(f: _Fuser, out: list[Node], op: str, inputs, attrs: dict, reals: np.ndarray, z_o: int, lo: int,
                      hi: int, odt: str, output: str | None, name: str, channel_axis: int) -> str:
    """``op`` (qconv / qdense / qmatmul) with its output requantized by the float32 multipliers
    ``reals`` (one per channel along ``channel_axis``, or one): in fixed point inside the op
    ("fixed"), or onnxruntime's way ("onnxruntime": int32 out, cast, float32 mul, quantize, clip)."""
    try:
        ms = [_mult(r) for r in reals]
    except QuantizationError as e:
        raise NotFusable(str(e)) from None
    if f.opt.rounding == "fixed":
        return f.node(out, op, inputs, dict(attrs, **_req(ms, z_o, lo, hi, odt)),
                      outputs=[output] if output else None, name=name)
    acc = f.node(out, op, inputs, dict(attrs, **_I32_IDENTITY), name=f"{name}_acc")
    rank = len(f.value(acc).shape)
    shp = [1] * rank
    if len(set(reals.tolist())) > 1:
        shp[channel_axis] = reals.size
    else:
        reals = reals[:1]
    fl = f.node(out, "cast", [acc], {"to": "float32"}, name=f"{name}_float")
    mc = f.const(f"{name}_multiplier", reals.astype(np.float32).reshape(shp))
    prod = f.node(out, "mul", [fl, mc], {}, name=f"{name}_scaled")
    full = qrange(odt)
    narrow = (lo, hi) != full
    y = f.node(out, "quantize", [prod], {"scale": 1.0, "zero_point": z_o, "dtype": odt, "axis": None},
               outputs=[output] if output and not narrow else None, name=f"{name}_round")
    if narrow:
        y = f.node(out, "clip", [y], {"min": lo, "max": hi}, outputs=[output] if output else None, name=f"{name}_clamp")
    return y


def _int8_weights(q: np.ndarray, z: np.ndarray) -> np.ndarray:
    if q.dtype == np.int8 and np.all(z == 0):
        return q
    if q.dtype == np.uint8 and np.all(z == 128):
        return (q.astype(np.int16) - 128).astype(np.int8)
    raise NotFusable(f"weights must be int8 with zero point 0 or uint8 with zero point 128 "
                     f"(got {q.dtype}, zero point(s) {sorted(set(z.tolist()))[:4]})")


def _weights(f: _Fuser, name: str, channels: int, channel_axis: int):
    """Constant DQ weights -> (int8 array, float32 scales [channels])."""
    q, s, z, axis = f.const_dq(name)
    wq = _int8_weights(q, z)
    if s.size == 1:
        return wq, np.full(channels, s[0], np.float32)
    if axis != channel_axis or s.size != channels:
        raise NotFusable(f"weight scales along axis {axis} ({s.size}) are not per output channel")
    f.per_channel = True
    return wq, s


def _bias(f: _Fuser, name: str | None, s_x: float, s_w: np.ndarray) -> np.ndarray:
    """int32 bias (as int64) at scale float32(s_x * s_w[c])."""
    m = s_w.size
    if not name:
        return np.zeros(m, np.int64)
    want = (np.float32(s_x) * s_w).astype(np.float32)
    v = f.g.values[name]
    if v.const is not None and v.dtype == "float32":
        real = v.const.reshape(-1)
    else:
        q, s, z, _ = f.const_dq(name)
        if q.dtype != np.int32 or np.any(z != 0):
            raise NotFusable("the bias must be int32 with zero point 0")
        q = np.broadcast_to(q.reshape(-1), (m,)).astype(np.int64)
        s = np.broadcast_to(s, (m,))
        if np.array_equal(s, want):
            return q
        real = dequantize(q, s, np.zeros(m, np.int64))
    if real.size not in (1, m):
        raise NotFusable(f"the bias has {real.size} values for {m} channels")
    real = np.broadcast_to(real.astype(np.float64), (m,))
    b = np.rint(real / want.astype(np.float64))
    if np.any(np.abs(b) > _I32_MAX):
        raise NotFusable("the bias does not fit int32 at scale s_x * s_w")
    return b.astype(np.int64)


def _linear(f: _Fuser, anchor: Node, op: str, x: str, wq: np.ndarray, s_w: np.ndarray, bias: np.ndarray,
            extra: dict, tail: Node) -> tuple[list[Node], list[Node], str]:
    """qconv / qdense of dequantized x with int8 weights wq [M, ...]; ``tail`` is the last float node
    of the pattern (the node whose output is quantized)."""
    xq, s_x, z_x, xdt = f.act(x)
    qn, act, s_o, z_o, odt = f.out_q(tail)
    lo, hi = f.clamp(act, s_o, z_o, odt)
    k = int(np.prod(wq.shape[1:]))
    wsum = wq.reshape(wq.shape[0], -1).astype(np.int64).sum(1)
    b = bias - z_x * wsum
    xlo, xhi = qrange(xdt)
    bound = k * max(abs(xlo - z_x), abs(xhi - z_x)) * 128 + int(np.abs(b).max(initial=0))
    if bound > _I32_MAX:
        raise NotFusable(f"the int32 accumulator could overflow (reduction length {k})")
    s_xw = (np.float32(s_x) * s_w).astype(np.float32)
    reals = (s_xw / np.float32(s_o)).astype(np.float32)
    wn = f.const(f"{anchor.name}_wq", wq)
    f.new_values[wn] = replace(f.new_values[wn], qparams=QParams(tuple(float(v) for v in s_w), (0,) * len(s_w), 0))
    bn = f.const(f"{anchor.name}_bq", b.astype(np.int32))
    attrs = dict(extra, x_zero_point=z_x)
    out: list[Node] = []
    xin = f.value(xq)
    if op == "qdense" and len(xin.shape) != 2:
        rows = int(np.prod(xin.shape[:-1]))
        r = f.node(out, "reshape", [xq], {"shape": (rows, xin.shape[-1])}, name=f"{anchor.name}_flat")
        y = _emit_requantized(f, out, "qdense", [r, wn, bn], attrs, reals, z_o, lo, hi, odt, None, anchor.name, 1)
        f.node(out, "reshape", [y], {"shape": tuple(f.g.values[qn.outputs[0]].shape)}, outputs=[qn.outputs[0]],
               name=f"{anchor.name}_unflat")
    else:
        _emit_requantized(f, out, op, [xq, wn, bn], attrs, reals, z_o, lo, hi, odt, qn.outputs[0], anchor.name, 1)
    return out, [n for n in (act, qn) if n is not None], odt


def _bias_add(f: _Fuser, node: Node, n_out: int):
    """A following ``add(node_out, DQ(bias const [N]))`` (Gemm with a runtime C, MatMul + Add)."""
    nxt = f.single_consumer(node.outputs[0])
    if nxt is None or nxt.op != "add":
        return None, node
    other = nxt.inputs[1] if nxt.inputs[0] == node.outputs[0] else nxt.inputs[0]
    v = f.g.values[other]
    d = f.prod.get(other)
    is_dq_const = d is not None and d.op == "dequantize" and f.g.values[d.inputs[0]].const is not None
    if not (is_dq_const or v.const is not None) or v.size != n_out or tuple(f.g.values[nxt.outputs[0]].shape) != \
            tuple(f.g.values[node.outputs[0]].shape):
        return None, node
    return other, nxt


def rule_conv(f: _Fuser, node: Node):
    m = f.g.values[node.inputs[1]].shape[0]
    wq, s_w = _weights(f, node.inputs[1], m, 0)
    _, s_x, _, _ = f.act(node.inputs[0])
    bias = _bias(f, node.inputs[2] if len(node.inputs) > 2 else None, s_x, s_w)
    extra = {k: node.attrs[k] for k in ("strides", "pads", "dilations", "group")}
    out, fused, odt = _linear(f, node, "qconv", node.inputs[0], wq, s_w, bias, extra, node)
    return out, fused, "qconv"


def rule_dense(f: _Fuser, node: Node):
    n = f.g.values[node.inputs[1]].shape[0]
    wq, s_w = _weights(f, node.inputs[1], n, 0)
    _, s_x, _, _ = f.act(node.inputs[0])
    bname = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    tail = node
    add = None
    if bname is None:
        bname, tail = _bias_add(f, node, n)
        add = tail if tail is not node else None
    bias = _bias(f, bname, s_x, s_w)
    out, fused, _ = _linear(f, node, "qdense", node.inputs[0], wq, s_w, bias, {}, tail)
    return out, ([add] if add else []) + fused, "qdense"


def rule_matmul(f: _Fuser, node: Node):
    a, b = node.inputs
    bd = f.prod.get(b)
    if bd is not None and bd.op == "dequantize" and f.g.values[bd.inputs[0]].const is not None:
        bv = f.g.values[b]
        if len(bv.shape) != 2:
            raise NotFusable("a constant right operand must be 2-D")
        k, n = bv.shape
        q, s, z, axis = f.const_dq(b)
        wq = np.ascontiguousarray(_int8_weights(q, z).T)
        if s.size == 1:
            s_w = np.full(n, s[0], np.float32)
        elif axis == 1 and s.size == n:
            s_w, f.per_channel = s, True
        else:
            raise NotFusable(f"weight scales along axis {axis} are not per output column")
        _, s_x, _, _ = f.act(a)
        bname, tail = _bias_add(f, node, n)
        bias = _bias(f, bname, s_x, s_w)
        out, fused, _ = _linear(f, node, "qdense", a, wq, s_w, bias, {}, tail)
        return out, ([tail] if tail is not node else []) + fused, "qdense"
    aq, s_a, z_a, _ = f.act(a)
    bq, s_b, z_b, _ = f.act(b)
    qn, act, s_o, z_o, odt = f.out_q(node)
    lo, hi = f.clamp(act, s_o, z_o, odt)
    real = np.asarray([np.float32(np.float32(s_a) * np.float32(s_b)) / np.float32(s_o)], np.float32)
    out: list[Node] = []
    _emit_requantized(f, out, "qmatmul", [aq, bq], {"a_zero_point": z_a, "b_zero_point": z_b}, real, z_o, lo, hi, odt,
                      qn.outputs[0], node.name, 0)
    return out, [n for n in (act, qn) if n is not None], "qmatmul"


def _operand(f: _Fuser, name: str):
    """A binary op operand: a dequantized activation or a per-tensor DQ of a constant."""
    d = f.prod.get(name)
    if d is not None and d.op == "dequantize" and f.g.values[d.inputs[0]].const is not None:
        q, s, z, _ = f.const_dq(name)
        if q.dtype.name not in _ACT or s.size != 1 or z.size != 1:
            raise NotFusable(f"constant operand {name!r} is not uint8/int8 per tensor")
        return d.inputs[0], float(s[0]), int(z[0])
    q, s, z, _ = f.act(name)
    return q, s, z


def _fma32(a, b, c) -> np.ndarray:
    """float32 fused multiply-add of float32 operands, one rounding: the float64 product of a float32
    and an 8-bit integer value is exact, and so is its sum with a float32 of the ranges met here."""
    return (np.float64(a) * np.float64(b) + np.float64(c)).astype(np.float32)


def ort_qlinear_add(a, b, s_a, z_a, s_b, z_b, s_c, z_c, dtype, scalar: str | None = None) -> np.ndarray:
    """onnxruntime's QLinearAdd on x86-64 with AVX2 (MLAS), bit for bit: ratios r = float32(s / s_c),
    a constant part F = float32(z_c) - fma(r_a, z_a, r_b * z_b), then round_half_even(fma(a, r_a,
    fma(b, r_b, F))) saturated to ``dtype``; with a one-element operand (``scalar`` "a" or "b") its
    term is added to F first without fusion. ``a`` / ``b`` are integer arrays (broadcast together)."""
    f32 = np.float32
    ra, rb = f32(f32(s_a) / f32(s_c)), f32(f32(s_b) / f32(s_c))
    fixed = f32(f32(z_c) - _fma32(ra, f32(z_a), f32(rb * f32(z_b))))
    fa, fb = np.asarray(a).astype(f32), np.asarray(b).astype(f32)
    if scalar == "b":
        v = _fma32(fa, ra, f32(fixed + f32(fb * rb)))
    elif scalar == "a":
        v = _fma32(fb, rb, f32(fixed + f32(fa * ra)))
    else:
        v = _fma32(fa, ra, _fma32(fb, rb, fixed))
    lo, hi = qrange(dtype)
    return np.clip(np.rint(v).astype(np.int64), lo, hi)


def _ort_add(f: _Fuser, node: Node, aq: str, s_a, z_a, bq: str, s_b, z_b, qn: Node, lo: int, hi: int, s_o, z_o,
             odt: str) -> list[Node]:
    """QLinearAdd as onnxruntime computes it, from tables: a one-element constant operand makes a
    256-entry qlut of the other; two operands of one shape index a 256 x 256 table (gather)."""
    va, vb = f.value(aq), f.value(bq)
    out: list[Node] = []
    grid_a = np.arange(qrange(va.dtype)[0], qrange(va.dtype)[0] + 256)
    grid_b = np.arange(qrange(vb.dtype)[0], qrange(vb.dtype)[0] + 256)
    if vb.const is not None and vb.size == 1 or va.const is not None and va.size == 1:
        scalar = "b" if vb.const is not None and vb.size == 1 else "a"
        x, grid = (aq, grid_a) if scalar == "b" else (bq, grid_b)
        other = int((vb if scalar == "b" else va).const.reshape(-1)[0])
        args = (grid, other) if scalar == "b" else (other, grid)
        table = np.clip(ort_qlinear_add(*args, s_a, z_a, s_b, z_b, s_o, z_o, odt, scalar), lo, hi)
        if tuple(f.value(x).shape) != tuple(f.g.values[qn.outputs[0]].shape):
            raise NotFusable("a scalar operand broadcasting the other one")
        f.node(out, "qlut", [x], {"table": tuple(int(t) for t in table), "out_dtype": odt}, outputs=[qn.outputs[0]],
               name=node.name)
        return out
    if tuple(va.shape) != tuple(vb.shape):
        raise NotFusable("onnxruntime rounding: broadcasting add of two tensors")
    table = np.clip(ort_qlinear_add(grid_a[:, None], grid_b[None, :], s_a, z_a, s_b, z_b, s_o, z_o, odt), lo, hi)
    tn = f.const(f"{node.name}_table", table.astype(odt).reshape(-1))
    ia = f.node(out, "cast", [aq], {"to": "int32"}, name=f"{node.name}_a32")
    ib = f.node(out, "cast", [bq], {"to": "int32"}, name=f"{node.name}_b32")
    row = f.node(out, "mul", [ia, f.const(f"{node.name}_256", np.asarray(256, np.int32))], {}, name=f"{node.name}_row")
    off = -256 * int(grid_a[0]) - int(grid_b[0])
    idx = f.node(out, "add", [row, ib], {}, name=f"{node.name}_idx")
    if off:
        idx = f.node(out, "add", [idx, f.const(f"{node.name}_off", np.asarray(off, np.int32))], {},
                     name=f"{node.name}_idx0")
    f.node(out, "gather", [tn, idx], {"axis": 0}, outputs=[qn.outputs[0]], name=node.name)
    return out


def _scalar_const_lut(f: _Fuser, node: Node, aq: str, s_a, z_a, bq: str, s_b, z_b, qn: Node, lo: int, hi: int, s_o,
                     z_o, odt: str, combine) -> list[Node] | None:
    """An add/mul with a one-element constant operand (``x + 3`` of hard-swish): a 256-entry qlut of
    the other operand with the exact result, ``round_half_even(combine(r_a, r_b) / s_o) + z_o`` in
    rational arithmetic (the QuantizeLinear of the exact real value). None when it does not apply."""
    va, vb = f.value(aq), f.value(bq)
    if vb.const is not None and vb.size == 1:
        x, (s_x, z_x), c = aq, (s_a, z_a), (float(s_b) * (int(vb.const.reshape(-1)[0]) - z_b))
    elif va.const is not None and va.size == 1:
        x, (s_x, z_x), c = bq, (s_b, z_b), (float(s_a) * (int(va.const.reshape(-1)[0]) - z_a))
    else:
        return None
    if tuple(f.value(x).shape) != tuple(f.g.values[qn.outputs[0]].shape):
        return None
    xlo = qrange(f.value(x).dtype)[0]
    cf, sx, so = Fraction(c), Fraction(float(s_x)), Fraction(float(s_o))
    table = []
    for i in range(xlo, xlo + 256):
        v = combine(sx * (i - z_x), cf) / so
        table.append(min(hi, max(lo, round(v) + z_o)))     # Fraction.__round__: half to even
    out: list[Node] = []
    f.node(out, "qlut", [x], {"table": tuple(table), "out_dtype": odt}, outputs=[qn.outputs[0]], name=node.name)
    return out


def rule_add(f: _Fuser, node: Node):
    aq, s_a, z_a = _operand(f, node.inputs[0])
    bq, s_b, z_b = _operand(f, node.inputs[1])
    qn, act, s_o, z_o, odt = f.out_q(node)
    lo, hi = f.clamp(act, s_o, z_o, odt)
    if f.opt.rounding == "onnxruntime":
        out = _ort_add(f, node, aq, s_a, z_a, bq, s_b, z_b, qn, lo, hi, s_o, z_o, odt)
        return out, [n for n in (act, qn) if n is not None], out[-1].op
    out = _scalar_const_lut(f, node, aq, s_a, z_a, bq, s_b, z_b, qn, lo, hi, s_o, z_o, odt, lambda x, c: x + c)
    if out is not None:
        return out, [n for n in (act, qn) if n is not None], "qlut"
    twice = 2.0 * max(s_a, s_b)
    out: list[Node] = []
    f.node(out, "qadd", [aq, bq], {"a_zero_point": z_a, "b_zero_point": z_b, "a_multiplier": _mult(s_a / twice)[0],
                                   "a_shift": _mult(s_a / twice)[1], "b_multiplier": _mult(s_b / twice)[0],
                                   "b_shift": _mult(s_b / twice)[1], "left_shift": _LEFT_SHIFT,
                                   **_req([_mult(twice / (2 ** _LEFT_SHIFT * s_o))], z_o, lo, hi, odt)},
           outputs=[qn.outputs[0]], name=node.name)
    return out, [n for n in (act, qn) if n is not None], "qadd"


def rule_mul(f: _Fuser, node: Node):
    aq, s_a, z_a = _operand(f, node.inputs[0])
    bq, s_b, z_b = _operand(f, node.inputs[1])
    qn, act, s_o, z_o, odt = f.out_q(node)
    lo, hi = f.clamp(act, s_o, z_o, odt)
    real = np.float32(np.float32(s_a) * np.float32(s_b)) / np.float32(s_o)
    out: list[Node] = []
    if f.opt.rounding == "onnxruntime":
        # onnxruntime's QLinearMul (MLAS, x86): round_half_even(float32(float32(a - z_a) * (b - z_b)) * ratio):
        # the product of the two 9-bit differences is exact in float32
        fa = f.node(out, "cast", [aq], {"to": "float32"}, name=f"{node.name}_a")
        fa = f.node(out, "sub", [fa, f.const(f"{node.name}_za", np.asarray(z_a, np.float32))], {}, name=f"{node.name}_da")
        fb = f.node(out, "cast", [bq], {"to": "float32"}, name=f"{node.name}_b")
        fb = f.node(out, "sub", [fb, f.const(f"{node.name}_zb", np.asarray(z_b, np.float32))], {}, name=f"{node.name}_db")
        p = f.node(out, "mul", [fa, fb], {}, name=f"{node.name}_prod")
        p = f.node(out, "mul", [p, f.const(f"{node.name}_ratio", np.asarray(real, np.float32))], {},
                   name=f"{node.name}_scaled")
        narrow = (lo, hi) != qrange(odt)
        y = f.node(out, "quantize", [p], {"scale": 1.0, "zero_point": z_o, "dtype": odt, "axis": None},
                   outputs=None if narrow else [qn.outputs[0]], name=f"{node.name}_round")
        if narrow:
            f.node(out, "clip", [y], {"min": lo, "max": hi}, outputs=[qn.outputs[0]], name=f"{node.name}_clamp")
        return out, [n for n in (act, qn) if n is not None], "mul (onnxruntime rounding)"
    lut = _scalar_const_lut(f, node, aq, s_a, z_a, bq, s_b, z_b, qn, lo, hi, s_o, z_o, odt, lambda x, c: x * c)
    if lut is not None:
        return lut, [n for n in (act, qn) if n is not None], "qlut"
    f.node(out, "qmul", [aq, bq], {"a_zero_point": z_a, "b_zero_point": z_b, **_req([_mult(real)], z_o, lo, hi, odt)},
           outputs=[qn.outputs[0]], name=node.name)
    return out, [n for n in (act, qn) if n is not None], "qmul"


def _requant_to(f: _Fuser, out: list[Node], src: str, s_i: float, z_i: int, s_o: float, z_o: int, odt: str,
                name: str, output: str | None = None) -> str:
    lo, hi = qrange(odt)
    return f.node(out, "requantize", [src], {"in_zero_point": z_i, **_req([_mult(s_i / s_o)], z_o, lo, hi, odt)},
                  outputs=[output] if output else None, name=name)


def rule_pass_through(f: _Fuser, node: Node):
    xq, s_i, z_i, idt = f.act(node.inputs[0])
    qn, _, s_o, z_o, odt = f.out_q(node, allow_act=False)
    out: list[Node] = []
    if (s_i, z_i, idt) == (s_o, z_o, odt):
        f.node(out, node.op, [xq], dict(node.attrs), outputs=[qn.outputs[0]], name=node.name)
    else:
        y = f.node(out, node.op, [xq], dict(node.attrs), name=node.name)
        _requant_to(f, out, y, s_i, z_i, s_o, z_o, odt, f"{node.name}_requantize", qn.outputs[0])
    return out, [qn], node.op


def rule_concat(f: _Fuser, node: Node):
    qn, _, s_o, z_o, odt = f.out_q(node, allow_act=False)
    out: list[Node] = []
    ins = []
    for k, i in enumerate(node.inputs):
        iq, s_i, z_i = _operand(f, i)
        if (s_i, z_i, f.value(iq).dtype) != (s_o, z_o, odt):
            iq = _requant_to(f, out, iq, s_i, z_i, s_o, z_o, odt, f"{node.name}_requantize{k}")
        ins.append(iq)
    f.node(out, "concat", ins, dict(node.attrs), outputs=[qn.outputs[0]], name=node.name)
    return out, [qn], "concat"


def rule_global_avg_pool(f: _Fuser, node: Node):
    xq, s_i, z_i, _ = f.act(node.inputs[0])
    qn, _, s_o, z_o, odt = f.out_q(node, allow_act=False)
    shape = f.value(xq).shape
    count = int(np.prod(shape[2:]))
    if count * 255 >= 2 ** 31:
        raise NotFusable("spatial size too large for an int32 sum")
    out: list[Node] = []
    lo, hi = qrange(odt)
    f.node(out, "qglobal_avg_pool", [xq], {"x_zero_point": z_i,
                                           **_req([_mult(s_i / (count * s_o))], z_o, lo, hi, odt)},
           outputs=[qn.outputs[0]], name=node.name)
    return out, [qn], "qglobal_avg_pool"


def rule_avg_pool(f: _Fuser, node: Node):
    xq, s_i, z_i, _ = f.act(node.inputs[0])
    if any(node.attrs["pads"]) and not node.attrs["count_include_pad"]:
        raise NotFusable("padding without count_include_pad: the divisor varies at the borders")
    qn, _, s_o, z_o, odt = f.out_q(node, allow_act=False)
    c = f.value(xq).shape[1]
    kernel = tuple(node.attrs["kernel"])
    count = int(np.prod(kernel))
    w = np.ones((c, 1) + kernel, np.int8)
    bias = np.full(c, -z_i * count, np.int64)
    lo, hi = qrange(odt)
    attrs = {"strides": node.attrs["strides"], "pads": node.attrs["pads"], "dilations": node.attrs["dilations"],
             "group": c, "x_zero_point": z_i, **_req([_mult(s_i / (count * s_o))], z_o, lo, hi, odt)}
    out: list[Node] = []
    f.node(out, "qconv", [xq, f.const(f"{node.name}_ones", w), f.const(f"{node.name}_bq", bias.astype(np.int32))],
           attrs, outputs=[qn.outputs[0]], name=node.name)
    return out, [qn], "qconv"


def rule_lut(f: _Fuser, node: Node):
    xq, s_i, z_i, idt = f.act(node.inputs[0])
    qn, _, s_o, z_o, odt = f.out_q(node, allow_act=False)
    lo = qrange(idt)[0]
    grid = np.arange(lo, lo + 256).astype(idt)
    (fy,) = get_op(node.op).reference(dequantize(grid, np.float32(s_i), z_i), **node.attrs)
    table = quantize(np.asarray(fy, np.float32), np.float32(s_o), z_o, odt)
    out: list[Node] = []
    f.node(out, "qlut", [xq], {"table": tuple(int(t) for t in table), "out_dtype": odt}, outputs=[qn.outputs[0]],
           name=node.name)
    return out, [qn], "qlut"


RULES = {
    "conv": rule_conv, "dense": rule_dense, "matmul": rule_matmul, "add": rule_add, "mul": rule_mul,
    "concat": rule_concat, "global_avg_pool": rule_global_avg_pool, "avg_pool": rule_avg_pool,
    **{op: rule_pass_through for op in _PASS_THROUGH},
    **{op: rule_lut for op in _LUT_OPS},
}


def fuse_qdq(graph: Graph, options: FuseQDQOptions | None = None) -> Graph:
    """Rewrite the QDQ patterns of ``graph`` into integer ops (see the module doc)."""
    if options is None:
        options = FuseQDQOptions(rounding=os.environ.get(ROUNDING_ENV, "") or "fixed")
    if not isinstance(options, FuseQDQOptions):
        raise FuseQDQOptionsError(f"options must be a FuseQDQOptions, got {type(options).__name__}")
    if not any(n.op in ("quantize", "dequantize") for n in graph.nodes):
        return graph
    f = _Fuser(graph, options)
    q_nodes = {id(n) for n in graph.nodes if n.op in ("quantize", "dequantize")}
    fused_into: dict[int, str] = {}
    for node in graph.nodes:
        if id(node) in q_nodes or id(node) in f.removed:
            continue
        rule = RULES.get(node.op)
        if rule is None:
            f.layers[id(node)] = {"node": node.name, "op": node.op, "precision": "float", "choice": "float (no int8 rule)"}
            continue
        saved = dict(f.new_values), set(f.names.taken), f.per_channel
        try:
            emitted, fused, choice = rule(f, node)
        except (NotFusable, QuantizationError) as e:
            f.new_values, f.names.taken, f.per_channel = saved[0], saved[1], saved[2]
            f.layers[id(node)] = {"node": node.name, "op": node.op, "precision": "float", "choice": f"float ({e})"}
            continue
        f.replace[id(node)] = emitted
        f.layers[id(node)] = {"node": node.name, "op": node.op, "precision": "int8", "choice": choice}
        for n in fused:
            f.removed.add(id(n))
            if n.op != "quantize":
                fused_into[id(n)] = node.name
    nodes: list[Node] = []
    layers = []
    for node in graph.nodes:
        if id(node) in f.removed:
            if id(node) in fused_into:
                layers.append({"node": node.name, "op": node.op, "precision": "int8",
                               "choice": f"fused into {fused_into[id(node)]}"})
            continue
        if id(node) in f.layers:
            layers.append(f.layers[id(node)])
        nodes.extend(f.replace.get(id(node), [node]))
    values = dict(graph.values)
    values.update(f.new_values)
    # the values the fused float nodes produced are gone
    produced = {o for n in nodes for o in n.outputs}
    for n in graph.nodes:
        if id(n) in f.removed or id(n) in f.replace:
            for o in n.outputs:
                if o not in produced:
                    values.pop(o, None)
    # qparams on every quantized activation (the outputs of the model's QuantizeLinear nodes)
    for q in graph.nodes:
        if q.op == "quantize" and q.outputs[0] in values:
            v = values[q.outputs[0]]
            values[v.name] = replace(v, qparams=QParams(tuple(float(s) for s in _tuple(q.attrs["scale"])),
                                                        tuple(int(z) for z in _tuple(q.attrs["zero_point"])),
                                                        q.attrs["axis"]))
    out = Graph(nodes, values, list(graph.inputs), list(graph.outputs), graph.name, dict(graph.meta))
    act_dtypes = sorted({n.attrs["dtype"] for n in graph.nodes if n.op == "quantize"})
    vinfo = {}
    for v in values.values():
        if v.const is not None:
            continue
        if v.qparams is not None:
            vinfo[v.name] = {"dtype": v.dtype, "scale": list(v.qparams.scale), "zero_point": list(v.qparams.zero_point),
                             "axis": v.qparams.axis}
        elif v.dtype == "float32":
            vinfo[v.name] = {"dtype": "float32"}
    # the model's constants as a float model would hold them (dequantized ones at 4 bytes an element)
    dq_src = {n.inputs[0] for n in graph.nodes if n.op == "dequantize" and graph.values[n.inputs[0]].const is not None}
    used = {i for n in graph.nodes for i in n.inputs if i and graph.values[i].const is not None}
    fp32_bytes = sum(graph.values[c].size * 4 if c in dq_src else graph.values[c].nbytes for c in used)
    out.meta["quantization"] = {
        "source": "qdq", "rounding": options.rounding,
        "activation_dtype": act_dtypes[0] if len(act_dtypes) == 1 else ("mixed" if act_dtypes else "none"),
        "per_channel": f.per_channel, "values": vinfo, "layers": layers, "fp32_constant_bytes": int(fp32_bytes),
        "int8_nodes": sum(1 for layer in layers if layer["precision"] == "int8"),
        "float_nodes": sum(1 for layer in layers if layer["precision"] == "float"),
    }
    return out


__all__ = ["fuse_qdq", "FuseQDQOptions", "FuseQDQOptionsError", "NotFusable", "RULES", "ROUNDING_ENV"]
