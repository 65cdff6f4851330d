"""Converters for ONNX quantization ops: QuantizeLinear, DequantizeLinear, QLinearConv,
QLinearMatMul, ConvInteger, MatMulInteger -> the quant group of the IR (docs/ops.md).

Scales and zero points must be constants. Weights of QLinearConv / ConvInteger (and the right
operand of QLinearMatMul when it becomes a qdense) must be constants with zero point 0 (int8), or
uint8 with zero point 128 (converted exactly to int8 with zero point 0); the activation zero-point
correction is folded into the int32 bias. Requantization multipliers are computed here from the
float32 scales (``quantize_multiplier(s_x * s_w[c] / s_y)``): onnxruntime multiplies in float and
rounds half to even, so results agree within one quantum.
A DequantizeLinear of a constant (the int8 weights and int32 biases of a QDQ model) stays an
integer constant + ``dequantize`` node so that ``edgec.passes.fuse_qdq`` can read the exact integers
and scales (``fold_constants`` folds into float what the fusion leaves); the QDQ activation pairs
stay as quantize / dequantize nodes until that pass.
"""
from __future__ import annotations

import numpy as np

from ...quant.qmath import qrange, quantize_multiplier
from ..registry import ConvertContext, converter
from .nn import _ints, _spatial_rank, _window_pads

_ACT = ("uint8", "int8")
_I32 = (-(2 ** 31), 2 ** 31 - 1)
_IDENTITY = quantize_multiplier(1.0)


def _qparams(ctx: ConvertContext, si: int, zi: int, what: str, zp_dtype_default: str = "uint8"):
    """(scale float32 array, zero point int64 array, zero-point dtype) of inputs si / zi."""
    s = np.asarray(ctx.const(si, f"{what} scale"), np.float32)
    if s.dtype != np.float32 or ctx.dtype(si) != "float32":
        ctx.unsupported(f"{what} scale must be float32, got {ctx.dtype(si)}")
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        ctx.unsupported(f"{what} scale must be positive and finite")
    if ctx.has_input(zi):
        z = ctx.const(zi, f"{what} zero point")
        zdt = ctx.dtype(zi)
    else:
        z, zdt = np.zeros(s.shape, np.int64), zp_dtype_default
    return s.reshape(-1), np.asarray(z, np.int64).reshape(-1), zdt


def _param_attr(a: np.ndarray, cast):
    return cast(a[0]) if a.size == 1 else tuple(cast(v) for v in a)


def _axis(ctx: ConvertContext, rank: int, n: int) -> int | None:
    if n == 1:
        return None
    axis = int(ctx.attr("axis", 1))
    if not -rank <= axis < rank:
        ctx.unsupported(f"axis={axis} is out of range for rank {rank}")
    return axis % rank


@converter("QuantizeLinear", since=10)
def quantize_linear(ctx: ConvertContext) -> None:
    ctx.check_attrs({"axis": None, "saturate": lambda v: int(v) == 1, "block_size": lambda v: int(v) == 0,
                     "output_dtype": lambda v: int(v) == 0})
    ctx.require_dtype(0, ["float32"])
    s, z, zdt = _qparams(ctx, 1, 2, "output")
    if zdt not in _ACT:
        ctx.unsupported(f"quantized type {zdt} (uint8 and int8 are supported)")
    axis = _axis(ctx, len(ctx.shape(0)), max(s.size, z.size))
    ctx.set_output(0, ctx.emit1("quantize", [ctx.input(0)], {"scale": _param_attr(s, float),
                                                             "zero_point": _param_attr(z, int),
                                                             "dtype": zdt, "axis": axis}))


@converter("DequantizeLinear", since=10)
def dequantize_linear(ctx: ConvertContext) -> None:
    ctx.check_attrs({"axis": None, "block_size": lambda v: int(v) == 0})
    ctx.require_dtype(0, ["uint8", "int8", "int32"])
    s, z, _ = _qparams(ctx, 1, 2, "input", ctx.dtype(0))
    axis = _axis(ctx, len(ctx.shape(0)), max(s.size, z.size))
    attrs = {"scale": _param_attr(s, float), "zero_point": _param_attr(z, int), "axis": axis}
    b = ctx.builder
    if ctx.value(0).const is not None:
        # constant integer weights / bias: kept as integer constant + dequantize (not folded here), so
        # edgec.passes.fuse_qdq reads the exact integers and scales; fold_constants folds what it leaves
        fold, b.fold = b.fold, False
        try:
            out = ctx.emit1("dequantize", [ctx.input(0)], attrs)
        finally:
            b.fold = fold
    else:
        out = ctx.emit1("dequantize", [ctx.input(0)], attrs)
    ctx.set_output(0, out)


def _int8_weights(ctx: ConvertContext, w: np.ndarray, wdt: str, zw: np.ndarray, what: str) -> np.ndarray:
    """Constant weights as int8 with zero point 0 (uint8 weights with zero point 128 shift exactly)."""
    if wdt == "int8" and np.all(zw == 0):
        return w.astype(np.int8)
    if wdt == "uint8" and np.all(zw == 128):
        return (w.astype(np.int16) - 128).astype(np.int8)
    ctx.unsupported(f"{what} must be int8 with zero point 0 or uint8 with zero point 128 "
                    f"(got {wdt}, zero point(s) {sorted(set(zw.tolist()))[:4]})")


def _zero_point(ctx: ConvertContext, i: int, dtype: str, what: str) -> int:
    if not ctx.has_input(i):
        return 0
    z = np.asarray(ctx.const(i, what)).reshape(-1)
    if z.size != 1:
        ctx.unsupported(f"{what} must be per tensor")
    return int(z[0])


def _requant(ms_shifts, zo: int, lo: int, hi: int, dt: str) -> dict:
    ms, ss = zip(*ms_shifts)
    if len(set(ms_shifts)) == 1:
        ms, ss = ms[:1], ss[:1]
    return {"multiplier": tuple(int(m) for m in ms), "shift": tuple(int(s) for s in ss), "out_zero_point": int(zo),
            "qmin": int(lo), "qmax": int(hi), "out_dtype": dt}


def _multipliers(ctx: ConvertContext, reals) -> list[tuple[int, int]]:
    try:
        return [quantize_multiplier(float(r)) for r in reals]
    except Exception as e:  # noqa: BLE001  (QuantizationError: reported as unsupported)
        ctx.unsupported(str(e))


def _conv_geometry(ctx: ConvertContext, w_index: int):
    r = _spatial_rank(ctx)
    w_shape = ctx.shape(w_index)
    if len(w_shape) != r + 2:
        ctx.unsupported(f"weight of shape {list(w_shape)} does not match an input with {r} spatial axes")
    ks = list(w_shape[2:])
    given = ctx.attr("kernel_shape")
    if given is not None and [int(k) for k in given] != ks:
        ctx.unsupported(f"kernel_shape={list(given)} disagrees with the weight's spatial shape {ks}")
    strides = _ints(ctx, "strides", r, 1)
    dilations = _ints(ctx, "dilations", r, 1)
    pads = _window_pads(ctx, ctx.shape(0)[2:], ks, strides, dilations)
    return {"strides": strides, "pads": pads, "dilations": dilations, "group": int(ctx.attr("group", 1))}


_CONV_ATTRS = {"auto_pad": None, "dilations": None, "group": None, "kernel_shape": None, "pads": None, "strides": None}


def _folded_bias(ctx: ConvertContext, bias: np.ndarray | None, wq: np.ndarray, zx: int) -> str:
    acc = np.zeros(wq.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64)
    b = acc - zx * wq.reshape(wq.shape[0], -1).astype(np.int64).sum(1)
    if np.any(np.abs(b) > _I32[1]):
        ctx.unsupported("the bias with the zero-point correction overflows int32")
    return ctx.add_const(b.astype(np.int32))


@converter("QLinearConv", since=10)
def qlinear_conv(ctx: ConvertContext) -> None:
    ctx.check_attrs(_CONV_ATTRS)
    ctx.require_dtype(0, list(_ACT))
    sx, zx_a, _ = _qparams(ctx, 1, 2, "x")
    if sx.size != 1 or zx_a.size != 1:
        ctx.unsupported("x must be quantized per tensor")
    w = ctx.const(3, "w")
    sw, zw, _ = _qparams(ctx, 4, 5, "w", ctx.dtype(3))
    sy, zy, ydt = _qparams(ctx, 6, 7, "y")
    if sy.size != 1 or zy.size != 1:
        ctx.unsupported("y must be quantized per tensor")
    wq = _int8_weights(ctx, w, ctx.dtype(3), zw, "w")
    m = wq.shape[0]
    if sw.size not in (1, m):
        ctx.unsupported(f"w scale has {sw.size} entries for {m} output channels")
    if ctx.has_input(8):
        ctx.require_dtype(8, ["int32"])
    bias = ctx.const(8, "bias") if ctx.has_input(8) else None
    zx = int(zx_a[0])
    geo = _conv_geometry(ctx, 3)
    reals = [float(sx[0]) * float(s) / float(sy[0]) for s in np.broadcast_to(sw, (m,))]
    lo, hi = qrange(ydt)
    attrs = dict(geo, x_zero_point=zx, **_requant(_multipliers(ctx, reals), int(zy[0]), lo, hi, ydt))
    wn = ctx.add_const(wq)
    ctx.set_output(0, ctx.emit1("qconv", [ctx.input(0), wn, _folded_bias(ctx, bias, wq, zx)], attrs))


@converter("ConvInteger", since=10)
def conv_integer(ctx: ConvertContext) -> None:
    ctx.check_attrs(_CONV_ATTRS)
    ctx.require_dtype(0, list(_ACT))
    zx = _zero_point(ctx, 2, ctx.dtype(0), "x zero point")
    w = ctx.const(1, "w")
    zw = np.asarray(ctx.const(3, "w zero point") if ctx.has_input(3) else np.zeros(1, np.int64)).reshape(-1)
    wq = _int8_weights(ctx, w, ctx.dtype(1), zw, "w")
    geo = _conv_geometry(ctx, 1)
    attrs = dict(geo, x_zero_point=zx, **_requant([_IDENTITY], 0, *_I32, "int32"))
    wn = ctx.add_const(wq)
    ctx.set_output(0, ctx.emit1("qconv", [ctx.input(0), wn, _folded_bias(ctx, None, wq, zx)], attrs))


def _dense_via_reshape(ctx: ConvertContext, a: str, wq: np.ndarray, bias: str, attrs: dict) -> str:
    """a[..., K] @ W[K, N] as qdense on a [-1, K] view (w given as [N, K])."""
    shape = ctx.shape(0)
    k = shape[-1]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    x = a if len(shape) == 2 else ctx.emit1("reshape", [a], {"shape": (rows, k)})
    y = ctx.emit1("qdense", [x, ctx.add_const(wq), bias], attrs)
    if len(shape) != 2:
        y = ctx.emit1("reshape", [y], {"shape": tuple(shape[:-1]) + (wq.shape[0],)})
    return y


@converter("QLinearMatMul", since=10)
def qlinear_matmul(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.require_dtype(0, list(_ACT))
    ctx.require_dtype(3, list(_ACT))
    sa, za, _ = _qparams(ctx, 1, 2, "a")
    sb, zb, _ = _qparams(ctx, 4, 5, "b")
    sy, zy, ydt = _qparams(ctx, 6, 7, "y")
    if sa.size != 1 or za.size != 1 or sy.size != 1 or zy.size != 1:
        ctx.unsupported("a and y must be quantized per tensor")
    if len(ctx.shape(0)) < 2 or len(ctx.shape(3)) < 2:
        ctx.unsupported("1-D operands are not supported")
    lo, hi = qrange(ydt)
    b = ctx.value(3)
    dense_ok = (b.const is not None and len(b.shape) == 2 and
                ((b.dtype == "int8" and np.all(zb == 0)) or (b.dtype == "uint8" and np.all(zb == 128))))
    if dense_ok:
        n = b.shape[1]
        if sb.size not in (1, n):
            ctx.unsupported(f"b scale has {sb.size} entries for {n} columns")
        wq = _int8_weights(ctx, np.ascontiguousarray(b.const.T), b.dtype, zb, "b")
        reals = [float(sa[0]) * float(s) / float(sy[0]) for s in np.broadcast_to(sb, (n,))]
        attrs = dict(x_zero_point=int(za[0]), **_requant(_multipliers(ctx, reals), int(zy[0]), lo, hi, ydt))
        ctx.set_output(0, _dense_via_reshape(ctx, ctx.input(0), wq, _folded_bias(ctx, None, wq, int(za[0])), attrs))
        return
    if sb.size != 1 or zb.size != 1:
        ctx.unsupported("a runtime b must be quantized per tensor")
    attrs = dict(a_zero_point=int(za[0]), b_zero_point=int(zb[0]),
                 **_requant(_multipliers(ctx, [float(sa[0]) * float(sb[0]) / float(sy[0])]), int(zy[0]), lo, hi, ydt))
    ctx.set_output(0, ctx.emit1("qmatmul", [ctx.input(0), ctx.input(3)], attrs))


@converter("MatMulInteger", since=10)
def matmul_integer(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.require_dtype(0, list(_ACT))
    ctx.require_dtype(1, list(_ACT))
    if len(ctx.shape(0)) < 2 or len(ctx.shape(1)) < 2:
        ctx.unsupported("1-D operands are not supported")
    za = _zero_point(ctx, 2, ctx.dtype(0), "a zero point (per-row a zero points are not supported)")
    if ctx.has_input(3) and np.asarray(ctx.const(3, "b zero point")).size != 1:
        ctx.unsupported("per-column b zero points are not supported")
    zb = _zero_point(ctx, 3, ctx.dtype(1), "b zero point")
    attrs = dict(a_zero_point=za, b_zero_point=zb, **_requant([_IDENTITY], 0, *_I32, "int32"))
    ctx.set_output(0, ctx.emit1("qmatmul", [ctx.input(0), ctx.input(1)], attrs))
