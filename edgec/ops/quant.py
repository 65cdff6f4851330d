"""quant ops (see docs/ops.md, "quant", and docs/quantization.md): the integer-only int8 op set.

Every quantized op takes uint8/int8 activations (``r = s * (q - z)``), int8 symmetric weights,
int32 biases, and produces uint8/int8 through ``edgec.quant.qmath.requantize`` (fixed-point
multiplier + shift, one rounding half away from zero, then the zero point and the clamp
``[qmin, qmax]``). All the "Prepare" work is done by the compiler: multipliers and shifts are
precomputed ints in the attributes, so the references below (and the kernels) use integers only.

Conventions shared by qconv / qdense:
- the accumulator is ``acc[c] = sum_k x[k] * w[c, k] + bias[c]`` (int32), a *pure* dot product:
  the zero-point correction ``-x_zero_point * sum_k w[c, k]`` is folded into the int32 bias by
  whoever builds the node (the quantization pass, the QDQ importer). ``x_zero_point`` is still an
  attribute because padding must be filled with it (the integer that stands for real 0);
- the output is ``requantize(acc, multiplier[c], shift[c], out_zero_point, qmin, qmax)`` with
  per-output-channel (length M) or per-tensor (length 1) multiplier/shift tuples. A fused ReLU or
  Clip is the clamp range ``[qmin, qmax]``. ``out_dtype`` may also be int32 for these three
  (ONNX ConvInteger / MatMulInteger: multiplier 2^30, shift 1 is the exact identity).
- ``acc_bound`` (optional, set by the compiler from the constant weights and bias,
  ``edgec.passes.quantize_int8.annotate_acc_bounds``): no |acc[c]| exceeds it, for any input.
  It changes no result (the reference checks it); it lets a kernel requantize exactly in 32-bit
  lanes with a right shift below 33 (``acc << k`` then ``n + k``, the same bits).
- ``act="hard_swish"`` (qconv / qdense; the quantization pass fuses a hard-swish consumer):
  the requantization above first gives ``h``, the pre-activation in fixed point with
  ``F = act_frac_bits`` fraction bits (``multiplier[c] = s_x s_w[c] 2^F``, zero point 0, clamped
  to ``[act_hmin, act_hmax]``), then, in integers,
      ``t = clamp(h + 3 * 2^F, 0, 6 * 2^F)``,  ``p = h * t``  (|p| <= P = max(|act_hmin|,
      |act_hmax|) * 6 * 2^F < 2^31 by construction),
      ``q = (p + 2^(s-1)) >> s``  (s = ``act_pre_shift``; q = p for s = 0),
      ``y = clamp(((q * act_multiplier + 2^(n-1)) >> n) + out_zero_point, qmin, qmax)``
  (n = ``act_right_shift``; arithmetic shifts, so both roundings are half up) with
  ``act_multiplier / 2^n ~ 2^(s - 2F) / (6 s_y)``: hard_swish(h) = h * clip(h + 3, 0, 6) / 6.
  The pass takes s so that |q| < 2^16 (a step of 1/256 of an output quantum or finer), and the
  multiplier below 2^15 with the largest n that keeps ``|q| * act_multiplier + 2^(n-1) < 2^31``:
  every step is an int32 operation (one 32-bit multiply, no 64-bit product), and the result is
  within ~0.01 of an output quantum of the exact rounding of h * t / (6 s_y 2^2F), which the
  unfused form (h rounded to 8 bits, then a lookup table rounding again) is far from.
  ``act_hmin = -3 * 2^F`` (every h below gives 0) and ``act_hmax`` at or above the largest h that
  does not saturate the output, so the clamp never changes a result.
"""
from __future__ import annotations

import numpy as np

from ..ir.ops import REQUIRED, register
from ..quant.qmath import dequantize as _dequantize
from ..quant.qmath import qrange, requantize as _requantize
from ..quant.qmath import quantize as _quantize
from ._common import broadcast_shape
from ._nn_util import pad_spatial, window_attrs, window_out_shape
from ._exact import int_conv as _int_conv_ref
from ._exact import int_matmul

ACT = ("uint8", "int8")
_INT_IN = ("uint8", "int8", "int32")

_REQ_ATTRS = {"multiplier": REQUIRED, "shift": REQUIRED, "out_zero_point": REQUIRED, "qmin": REQUIRED,
              "qmax": REQUIRED, "out_dtype": REQUIRED}
# a fused activation after the requantization (qconv / qdense): see the module doc
_ACT_ATTRS = {"act": "none", "act_frac_bits": 0, "act_hmin": 0, "act_hmax": 0, "act_pre_shift": 0,
              "act_multiplier": 0, "act_right_shift": 0, "acc_bound": None}
FUSED_ACTS = ("none", "hard_swish")


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _check_act(op: str, what: str, dtype: str, allowed=ACT) -> None:
    if dtype not in allowed:
        raise ValueError(f"{op}: {what} must be one of {list(allowed)}, got {dtype}")


def _ints(op: str, name: str, v) -> tuple[int, ...]:
    t = v if isinstance(v, tuple) else (v,)
    if not t or any(isinstance(x, bool) or not isinstance(x, int) for x in t):
        raise ValueError(f"{op}: {name} must be an int or a non-empty tuple of ints, got {v!r}")
    return t


def _check_requant(op: str, attrs, channels: int | None = None, out_dtypes=ACT) -> None:
    """Validate the output requantization attributes (channels: allowed per-channel length)."""
    _check_act(op, "out_dtype", attrs["out_dtype"], out_dtypes)
    lo, hi = qrange(attrs["out_dtype"])
    qmin, qmax, zo = attrs["qmin"], attrs["qmax"], attrs["out_zero_point"]
    for k, v in (("qmin", qmin), ("qmax", qmax), ("out_zero_point", zo)):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{op}: {k} must be an int in [{lo}, {hi}] for {attrs['out_dtype']}, got {v!r}")
    if not qmin < qmax:
        raise ValueError(f"{op}: empty clamp range [{qmin}, {qmax}]")
    m = _ints(op, "multiplier", attrs["multiplier"])
    s = _ints(op, "shift", attrs["shift"])
    if len(m) != len(s):
        raise ValueError(f"{op}: {len(m)} multipliers but {len(s)} shifts")
    if len(m) != 1 and len(m) != channels:
        raise ValueError(f"{op}: multiplier/shift need 1 (per-tensor) or {channels} (per-channel) entries, "
                         f"got {len(m)}")
    for mm, ss in zip(m, s):
        if mm != 0 and not 2 ** 30 <= mm <= 2 ** 31 - 1 or mm < 0 or not 1 <= 31 - ss <= 62:
            raise ValueError(f"{op}: (multiplier {mm}, shift {ss}) is not a quantize_multiplier result")


def _requant(acc, attrs_m, attrs_s, zo, qmin, qmax, out_dtype, axis: int | None = None, ndim: int = 0):
    m = np.asarray(attrs_m if isinstance(attrs_m, tuple) else (attrs_m,), np.int64)
    s = np.asarray(attrs_s if isinstance(attrs_s, tuple) else (attrs_s,), np.int64)
    if m.size > 1 and axis is not None:
        shp = [1] * ndim
        shp[axis] = m.size
        m, s = m.reshape(shp), s.reshape(shp)
    else:
        m, s = m.reshape(()), s.reshape(())
    return _requantize(acc, m, s, zo, qmin, qmax, dtype=out_dtype)


def _check_fused_act(op: str, attrs) -> None:
    ab = attrs.get("acc_bound")
    if ab is not None and (isinstance(ab, bool) or not isinstance(ab, int) or not 0 <= ab < 2 ** 31):
        raise ValueError(f"{op}: acc_bound must be None or an int in [0, 2^31), got {ab!r}")
    act = attrs.get("act", "none")
    if act not in FUSED_ACTS:
        raise ValueError(f"{op}: act must be one of {list(FUSED_ACTS)}, got {act!r}")
    if act == "none":
        return
    if attrs["out_dtype"] == "int32":
        raise ValueError(f"{op}: a fused {act} needs an 8-bit output")
    f = attrs["act_frac_bits"]
    if isinstance(f, bool) or not isinstance(f, int) or not 0 <= f <= 24:
        raise ValueError(f"{op}: act_frac_bits must be an int in [0, 24], got {f!r}")
    lo, hi = attrs["act_hmin"], attrs["act_hmax"]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (lo, hi)) or not lo < hi:
        raise ValueError(f"{op}: act_hmin < act_hmax must be ints, got {lo!r}, {hi!r}")
    if max(abs(lo), abs(hi)) * 6 * 2 ** f >= 2 ** 31:
        raise ValueError(f"{op}: h * clamp(h + 3, 0, 6) could leave int32 (act_hmin {lo}, act_hmax {hi}, "
                         f"act_frac_bits {f})")
    ps, mm, rs = attrs["act_pre_shift"], attrs["act_multiplier"], attrs["act_right_shift"]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (ps, mm, rs)) or not (
            0 <= ps <= 30 and 1 <= mm <= 2 ** 30 and 1 <= rs <= 31):
        raise ValueError(f"{op}: act_pre_shift {ps!r} must be in [0, 30], act_multiplier {mm!r} in [1, 2^30], "
                         f"act_right_shift {rs!r} in [1, 31]")
    pb = hard_swish_p_bound(attrs)
    qb = (pb + (1 << ps >> 1)) >> ps
    if pb + (1 << ps >> 1) >= 2 ** 31 or qb * mm + (1 << (rs - 1)) >= 2 ** 31:
        raise ValueError(f"{op}: the hard swish's final step could leave int32 (|q| <= {qb}, act_multiplier {mm}, "
                         f"act_right_shift {rs})")


def hard_swish_p_bound(attrs) -> int:
    """P: the bound of |p| = |h * clamp(h + 3, 0, 6)| (in 2^-2F units) of a fused hard swish."""
    f = int(attrs["act_frac_bits"])
    return max(abs(int(attrs["act_hmin"])), abs(int(attrs["act_hmax"]))) * 6 * 2 ** f


def hard_swish_tail(h, attrs: dict):
    """The fused hard swish from the fixed-point pre-activation h (int64 array, already clamped):
    the output integers (module doc), as an int64 array."""
    f = int(attrs["act_frac_bits"])
    t = np.clip(h + 3 * 2 ** f, 0, 6 * 2 ** f)
    ps, rs = int(attrs["act_pre_shift"]), int(attrs["act_right_shift"])
    q = (h * t + (1 << ps >> 1)) >> ps
    y = ((q * int(attrs["act_multiplier"]) + (1 << (rs - 1))) >> rs) + int(attrs["out_zero_point"])
    return np.clip(y, attrs["qmin"], attrs["qmax"])


def _requant_act(acc, attrs: dict, ndim: int):
    """The output of a qconv / qdense accumulator (axis 1 = channels): the requantization, or
    with ``act="hard_swish"`` the fixed-point pre-activation, the integer hard swish and the
    final requantization (module doc). ``acc_bound`` (when set) is checked: the kernels rely on it."""
    ab = attrs.get("acc_bound")
    if ab is not None and acc.size and int(np.abs(acc).max()) > ab:
        raise ValueError(f"accumulator {int(np.abs(acc).max())} exceeds the node's acc_bound {ab}")
    if attrs.get("act", "none") == "none":
        return _requant(acc, attrs["multiplier"], attrs["shift"], attrs["out_zero_point"], attrs["qmin"],
                        attrs["qmax"], attrs["out_dtype"], axis=1, ndim=ndim)
    h = _requant(acc, attrs["multiplier"], attrs["shift"], 0, attrs["act_hmin"], attrs["act_hmax"], "int32",
                 axis=1, ndim=ndim).astype(np.int64)
    return hard_swish_tail(h, attrs).astype(attrs["out_dtype"])


# -- quantize / dequantize / requantize ------------------------------------------------------------

def _qparam_len(op, attrs, x_shape):
    scale = attrs["scale"] if isinstance(attrs["scale"], tuple) else (attrs["scale"],)
    zp = attrs["zero_point"] if isinstance(attrs["zero_point"], tuple) else (attrs["zero_point"],)
    if any(isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0 for s in scale):
        raise ValueError(f"{op}: scales must be positive numbers, got {attrs['scale']!r}")
    _ints(op, "zero_point", attrs["zero_point"])
    axis = attrs["axis"]
    if axis is None:
        if len(scale) != 1 or len(zp) != 1:
            raise ValueError(f"{op}: per-tensor needs one scale and one zero point (or give an axis)")
    else:
        if not 0 <= axis < len(x_shape):
            raise ValueError(f"{op}: axis {axis} out of range for rank {len(x_shape)}")
        n = x_shape[axis]
        if len(scale) not in (1, n) or len(zp) not in (1, n):
            raise ValueError(f"{op}: per-axis scale/zero_point need {n} entries along axis {axis}")


def _bcast_param(p, n):
    t = p if isinstance(p, tuple) else (p,)
    return np.asarray(t * n if len(t) == 1 and n > 1 else t)


def _quantize_infer(inputs, attrs):
    (x,) = inputs
    _check_act("quantize", "input", x.dtype, ("float32",))
    _check_act("quantize", "dtype", attrs["dtype"])
    _qparam_len("quantize", attrs, x.shape)
    lo, hi = qrange(attrs["dtype"])
    zps = attrs["zero_point"] if isinstance(attrs["zero_point"], tuple) else (attrs["zero_point"],)
    if any(not lo <= z <= hi for z in zps):
        raise ValueError(f"quantize: zero point {attrs['zero_point']!r} out of range for {attrs['dtype']}")
    return [(attrs["dtype"], x.shape)]


@register("quantize", group="quant", infer=_quantize_infer,
          attrs={"scale": REQUIRED, "zero_point": REQUIRED, "dtype": REQUIRED, "axis": None})
def quantize(x, *, scale, zero_point, dtype, axis):
    """ONNX QuantizeLinear: q = saturate(round_half_even(x / scale) + zero_point), x / scale in float32;
    per-tensor (axis None) or per-axis (scale/zero_point tuples along ``axis``)"""
    if axis is None:
        return (_quantize(x, np.float32(scale if not isinstance(scale, tuple) else scale[0]),
                          zero_point if not isinstance(zero_point, tuple) else zero_point[0], dtype),)
    n = x.shape[axis]
    return (_quantize(x, _bcast_param(scale, n).astype(np.float32), _bcast_param(zero_point, n), dtype, axis=axis),)


def _dequantize_infer(inputs, attrs):
    (x,) = inputs
    _check_act("dequantize", "input", x.dtype, _INT_IN)
    _qparam_len("dequantize", attrs, x.shape)
    return [("float32", x.shape)]


@register("dequantize", group="quant", infer=_dequantize_infer,
          attrs={"scale": REQUIRED, "zero_point": REQUIRED, "axis": None})
def dequantize(x, *, scale, zero_point, axis):
    """ONNX DequantizeLinear: r = float32(q - zero_point) * scale (float32 product); input uint8, int8
    or int32; per-tensor or per-axis"""
    if axis is None:
        return (_dequantize(x, np.float32(scale if not isinstance(scale, tuple) else scale[0]),
                            zero_point if not isinstance(zero_point, tuple) else zero_point[0]),)
    n = x.shape[axis]
    return (_dequantize(x, _bcast_param(scale, n).astype(np.float32), _bcast_param(zero_point, n), axis=axis),)


def _requantize_infer(inputs, attrs):
    (x,) = inputs
    _check_act("requantize", "input", x.dtype, _INT_IN)
    _check_requant("requantize", attrs)
    if isinstance(attrs["in_zero_point"], bool) or not isinstance(attrs["in_zero_point"], int):
        raise ValueError(f"requantize: in_zero_point must be an int, got {attrs['in_zero_point']!r}")
    return [(attrs["out_dtype"], x.shape)]


@register("requantize", group="quant", infer=_requantize_infer, attrs={"in_zero_point": REQUIRED, **_REQ_ATTRS})
def requantize(x, *, in_zero_point, multiplier, shift, out_zero_point, qmin, qmax, out_dtype):
    """y = requantize(x - in_zero_point, multiplier, shift, out_zero_point, qmin, qmax): change of
    scale/zero point/type (uint8, int8 or int32 in; per-tensor multiplier); integer only"""
    acc = x.astype(np.int64) - np.int64(in_zero_point)
    return (_requant(acc, multiplier, shift, out_zero_point, qmin, qmax, out_dtype),)


def _qgap_infer(inputs, attrs):
    (x,) = inputs
    _check_act("qglobal_avg_pool", "input", x.dtype)
    _check_requant("qglobal_avg_pool", attrs)
    if len(x.shape) < 3:
        raise ValueError(f"qglobal_avg_pool: input must be [N, C, spatial...], got shape {list(x.shape)}")
    _zp_ok("qglobal_avg_pool", "x_zero_point", attrs["x_zero_point"], x.dtype)
    if _size(x.shape[2:]) * 255 >= 2 ** 31:
        raise ValueError(f"qglobal_avg_pool: {_size(x.shape[2:])} positions per channel overflow the int32 sum")
    return [(attrs["out_dtype"], tuple(x.shape[:2]) + (1,) * (len(x.shape) - 2))]


@register("qglobal_avg_pool", group="quant", infer=_qgap_infer, attrs={"x_zero_point": REQUIRED, **_REQ_ATTRS})
def qglobal_avg_pool(x, *, x_zero_point, multiplier, shift, out_zero_point, qmin, qmax, out_dtype):
    """y[n, c] = requantize(sum over the spatial positions of (x[n, c, ...] - x_zero_point),
    multiplier, shift, ...): the integer global average pool (multiplier / 2^n = s_x / (count s_y));
    the sum is int32 (count * 255 < 2^31), one rounding; output [N, C, 1, ...]"""
    axes = tuple(range(2, x.ndim))
    count = _size(x.shape[2:])
    acc = x.astype(np.int64).sum(axis=axes, keepdims=True) - np.int64(count) * np.int64(x_zero_point)
    return (_requant(acc, multiplier, shift, out_zero_point, qmin, qmax, out_dtype),)


# -- qconv / qdense / qmatmul ----------------------------------------------------------------------

def _weights_bias(op, w, bias, m):
    _check_act(op, "weight", w.dtype, ("int8",))
    if bias is not None and (bias.dtype != "int32" or tuple(bias.shape) != (m,)):
        raise ValueError(f"{op}: bias must be int32[{m}], got {bias.dtype}{list(bias.shape)}")


def _zp_ok(op, name, z, dtype):
    lo, hi = qrange(dtype)
    if isinstance(z, bool) or not isinstance(z, int) or not lo <= z <= hi:
        raise ValueError(f"{op}: {name} must be an int in [{lo}, {hi}] for {dtype}, got {z!r}")


def _qconv_infer(inputs, attrs):
    x, w, bias = (list(inputs) + [None])[:3]
    _check_act("qconv", "input", x.dtype)
    _zp_ok("qconv", "x_zero_point", attrs["x_zero_point"], x.dtype)
    r = len(x.shape) - 2
    if not 1 <= r <= 3 or len(w.shape) != r + 2:
        raise ValueError(f"qconv: input {list(x.shape)} / weight {list(w.shape)} ranks do not fit")
    g = int(attrs["group"])
    n, c = x.shape[:2]
    m = w.shape[0]
    if g < 1 or c % g or m % g or w.shape[1] * g != c:
        raise ValueError(f"qconv: group={g} does not fit input channels {c}, weight {list(w.shape)}")
    _weights_bias("qconv", w, bias, m)
    _check_requant("qconv", attrs, m, _INT_IN)
    _check_fused_act("qconv", attrs)
    k, s, p, d = window_attrs("qconv", r, attrs, kernel=w.shape[2:])
    return [(attrs["out_dtype"], (n, m) + window_out_shape("qconv", x.shape[2:], k, s, p, d))]


def _qconv_macs(inputs, outputs, attrs) -> int:
    return _size(outputs[0].shape) * _size(inputs[1].shape[1:])


@register("qconv", group="quant", infer=_qconv_infer, arity=(2, 3), macs=_qconv_macs, foldable=False,
          attrs={"strides": REQUIRED, "pads": REQUIRED, "dilations": REQUIRED, "group": 1,
                 "x_zero_point": REQUIRED, **_REQ_ATTRS, **_ACT_ATTRS})
def qconv(x, w, bias=None, *, strides, pads, dilations, group, x_zero_point, **req):
    """int8 conv: acc = conv(x padded with x_zero_point, w) + bias (int32, zero-point correction
    folded into bias), then per-channel requantize to out_dtype clamped to [qmin, qmax] (with
    act="hard_swish": the fused integer hard swish, module doc)"""
    xp = pad_spatial(x.astype(np.int64), pads, np.int64(x_zero_point))
    r = x.ndim - 2
    acc = _int_conv_ref(xp, w, bias, strides=strides, pads=(0,) * (2 * r), dilations=dilations, group=group)
    return (_requant_act(acc, req, acc.ndim),)


def _dense_operands(op: str, inputs, attrs):
    """x [M, K] uint8/int8 with its zero point, w int8 [N, K], bias int32 [N] or none (qdense,
    qdense_dequant); returns (x, w)."""
    x, w, bias = (list(inputs) + [None])[:3]
    _check_act(op, "input", x.dtype)
    _zp_ok(op, "x_zero_point", attrs["x_zero_point"], x.dtype)
    if len(x.shape) != 2 or len(w.shape) != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"{op}: x {list(x.shape)} and w {list(w.shape)} must be [M,K] and [N,K]")
    _weights_bias(op, w, bias, w.shape[0])
    return x, w


def _qdense_infer(inputs, attrs):
    x, w = _dense_operands("qdense", inputs, attrs)
    _check_requant("qdense", attrs, w.shape[0], _INT_IN)
    _check_fused_act("qdense", attrs)
    d = attrs.get("input_density")
    if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d <= 1):
        raise ValueError(f"qdense: input_density must be None or a fraction in [0, 1], got {d!r}")
    return [(attrs["out_dtype"], (x.shape[0], w.shape[0]))]


def _qdense_macs(inputs, outputs, attrs) -> int:
    return int(inputs[0].shape[0]) * int(inputs[1].shape[0]) * int(inputs[0].shape[1])


@register("qdense", group="quant", infer=_qdense_infer, arity=(2, 3), macs=_qdense_macs, foldable=False,
          attrs={"x_zero_point": REQUIRED, **_REQ_ATTRS, **_ACT_ATTRS, "input_density": None})
def qdense(x, w, bias=None, *, x_zero_point, input_density=None, **req):
    """int8 dense: acc[M,N] = x @ w.T + bias (int32, zero-point correction folded into bias), then
    per-output-channel requantize to out_dtype clamped to [qmin, qmax] (with act="hard_swish": the
    fused integer hard swish, module doc). ``input_density`` (set by the quantization pass from the
    calibration data: the fraction of input entries that are not 0) only guides the kernel choice
    (edgec/backend/kernels/quant_sparse.py); the result does not depend on it"""
    acc = int_matmul(x, w.T)
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    return (_requant_act(acc, req, 2),)


def _float_scales(op: str, v, channels: int) -> tuple[float, ...]:
    t = v if isinstance(v, tuple) else (v,)
    if (not t or any(isinstance(s, bool) or not isinstance(s, (int, float)) or not np.isfinite(s) or not s > 0
                     for s in t)):
        raise ValueError(f"{op}: scale must be a positive finite number or a tuple of them, got {v!r}")
    if len(t) not in (1, channels):
        raise ValueError(f"{op}: scale needs 1 (per-tensor) or {channels} (per-channel) entries, got {len(t)}")
    return t


def _qdense_dequant_infer(inputs, attrs):
    x, w = _dense_operands("qdense_dequant", inputs, attrs)
    _float_scales("qdense_dequant", attrs["scale"], w.shape[0])
    return [("float32", (x.shape[0], w.shape[0]))]


@register("qdense_dequant", group="quant", infer=_qdense_dequant_infer, arity=(2, 3), macs=_qdense_macs,
          foldable=False, attrs={"x_zero_point": REQUIRED, "scale": REQUIRED})
def qdense_dequant(x, w, bias=None, *, x_zero_point, scale):
    """int8 dense with a float32 output: acc[M,N] = x @ w.T + bias (int32, zero-point correction
    folded into bias, as qdense), then y = float32(acc) * scale[n] (a float32 product, per output
    channel or one scale): ONNX DequantizeLinear of the accumulator with scale s_x * s_w[n], no
    8-bit requantization (onnxruntime's MatMulIntegerToFloat). For a layer whose result only feeds
    float ops (BERT's FFN down-projection before the float residual add)"""
    acc = int_matmul(x, w.T)
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    s = np.asarray(scale if isinstance(scale, tuple) else (scale,), np.float32)
    # |acc| < 2^31 (the pass checks the bound): the int32 -> float32 conversion of the kernels
    return (acc.astype(np.int32).astype(np.float32) * s.reshape(1, -1),)


def _qmatmul_infer(inputs, attrs):
    a, b = inputs
    _check_act("qmatmul", "a", a.dtype)
    _check_act("qmatmul", "b", b.dtype)
    _zp_ok("qmatmul", "a_zero_point", attrs["a_zero_point"], a.dtype)
    _zp_ok("qmatmul", "b_zero_point", attrs["b_zero_point"], b.dtype)
    _check_requant("qmatmul", attrs, None, _INT_IN)
    if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"qmatmul: operands must be rank >= 2 with matching inner dims, got "
                         f"{list(a.shape)} @ {list(b.shape)}")
    batch = broadcast_shape(a.shape[:-2], b.shape[:-2])
    return [(attrs["out_dtype"], batch + (a.shape[-2], b.shape[-1]))]


def _qmatmul_macs(inputs, outputs, attrs) -> int:
    return _size(outputs[0].shape) * int(inputs[0].shape[-1])


@register("qmatmul", group="quant", infer=_qmatmul_infer, arity=(2, 2), macs=_qmatmul_macs, foldable=False,
          attrs={"a_zero_point": REQUIRED, "b_zero_point": REQUIRED, **_REQ_ATTRS})
def qmatmul(a, b, *, a_zero_point, b_zero_point, multiplier, shift, out_zero_point, qmin, qmax, out_dtype):
    """int8 activation x activation matmul (batch axes broadcast): acc = (a - za) @ (b - zb) in
    int32, then per-tensor requantize"""
    acc = int_matmul(a.astype(np.int64) - a_zero_point, b.astype(np.int64) - b_zero_point)
    return (_requant(acc, multiplier, shift, out_zero_point, qmin, qmax, out_dtype),)


# -- qadd / qmul -----------------------------------------------------------------------------------

def _binary_infer(op, extra):
    def infer(inputs, attrs):
        a, b = inputs
        _check_act(op, "a", a.dtype)
        _check_act(op, "b", b.dtype)
        _zp_ok(op, "a_zero_point", attrs["a_zero_point"], a.dtype)
        _zp_ok(op, "b_zero_point", attrs["b_zero_point"], b.dtype)
        _check_requant(op, attrs)
        for k in extra:
            _ints(op, k, attrs[k])
        return [(attrs["out_dtype"], broadcast_shape(a.shape, b.shape))]
    return infer


_QADD_EXTRA = ("a_multiplier", "a_shift", "b_multiplier", "b_shift", "left_shift")


@register("qadd", group="quant", infer=_binary_infer("qadd", _QADD_EXTRA), arity=(2, 2), foldable=False,
          attrs={"a_zero_point": REQUIRED, "b_zero_point": REQUIRED, "a_multiplier": REQUIRED, "a_shift": REQUIRED,
                 "b_multiplier": REQUIRED, "b_shift": REQUIRED, "left_shift": 20, **_REQ_ATTRS})
def qadd(a, b, *, a_zero_point, b_zero_point, a_multiplier, a_shift, b_multiplier, b_shift, left_shift, multiplier,
         shift, out_zero_point, qmin, qmax, out_dtype):
    """int8 add (broadcasting): each input is brought to a common scale in int32,
    a' = requantize((a - za) << left_shift, a_multiplier, a_shift) (likewise b; multipliers <= 1/2),
    then y = requantize(a' + b', multiplier, shift, out_zero_point, qmin, qmax)"""
    i32 = (-(2 ** 31), 2 ** 31 - 1)
    ai = (a.astype(np.int64) - a_zero_point) << left_shift
    bi = (b.astype(np.int64) - b_zero_point) << left_shift
    ar = _requantize(ai, a_multiplier, a_shift, 0, *i32, dtype="int32").astype(np.int64)
    br = _requantize(bi, b_multiplier, b_shift, 0, *i32, dtype="int32").astype(np.int64)
    return (_requant(ar + br, multiplier, shift, out_zero_point, qmin, qmax, out_dtype),)


@register("qmul", group="quant", infer=_binary_infer("qmul", ()), arity=(2, 2), foldable=False,
          attrs={"a_zero_point": REQUIRED, "b_zero_point": REQUIRED, **_REQ_ATTRS})
def qmul(a, b, *, a_zero_point, b_zero_point, multiplier, shift, out_zero_point, qmin, qmax, out_dtype):
    """int8 mul (broadcasting): y = requantize((a - za) * (b - zb), multiplier, shift, out_zero_point,
    qmin, qmax); the product is exact in int32"""
    acc = (a.astype(np.int64) - a_zero_point) * (b.astype(np.int64) - b_zero_point)
    return (_requant(acc, multiplier, shift, out_zero_point, qmin, qmax, out_dtype),)


# -- qlut ------------------------------------------------------------------------------------------

def _qlut_infer(inputs, attrs):
    (x,) = inputs
    _check_act("qlut", "input", x.dtype)
    _check_act("qlut", "out_dtype", attrs["out_dtype"])
    t = _ints("qlut", "table", attrs["table"])
    lo, hi = qrange(attrs["out_dtype"])
    if len(t) != 256 or min(t) < lo or max(t) > hi:
        raise ValueError(f"qlut: table must hold 256 values in [{lo}, {hi}] ({attrs['out_dtype']})")
    return [(attrs["out_dtype"], x.shape)]


@register("qlut", group="quant", infer=_qlut_infer, attrs={"table": REQUIRED, "out_dtype": REQUIRED})
def qlut(x, *, table, out_dtype):
    """y = table[x - dtype_min(x)]: a 256-entry lookup (table[0] is for x = 0 (uint8) or -128 (int8));
    any unary function of one quantized value (sigmoid, tanh, hard_swish, ...) precomputed"""
    idx = x.astype(np.int64) - qrange(x.dtype)[0]
    return (np.asarray(table, dtype=np.int64)[idx].astype(out_dtype),)
