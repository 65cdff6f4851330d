"""Quantization arithmetic, in pure numpy. docs/quantization.md explains the scheme.

Affine quantization maps a real number r to an integer q through

    r = s * (q - z)           s > 0 (float32), z an integer with qmin <= z <= qmax

- ``compute_scale_zp``            (rmin, rmax) -> (s, z) for a tensor, range widened to hold 0
- ``quantize`` / ``dequantize``   exactly ONNX QuantizeLinear (round half to even, saturate)
                                  and DequantizeLinear, per-tensor or per-axis
- ``quantize_weights_per_channel`` symmetric int8 in [-127, 127], one scale per output channel
- ``quantize_bias``               int32 bias with scale s_in * s_w[c], overflow checked
- ``quantize_multiplier``         a real requantization multiplier as (m, shift): M = m * 2^(shift-31)
- ``requantize``                  int32 accumulators -> int8/uint8 with integer arithmetic only

The requantization rounding (``requantize``) is ONE rounding of the exact product acc * M,
half away from zero, computed in int64. It is bit-exact in the C runtime with::

    int64_t p = (int64_t)acc * m;                 /* |p| < 2^62: no overflow          */
    int n = 31 - shift;                           /* 1 <= n <= 62                     */
    int64_t h = (int64_t)1 << (n - 1);
    int64_t r = p >= 0 ? (p + h) >> n : -((-p + h) >> n);   /* no shift of a negative */
    r += zero_point;
    q = (int8_t)(r < qmin ? qmin : r > qmax ? qmax : r);
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import EdgecError


class QuantizationError(EdgecError):
    """A quantity cannot be quantized as asked (non-finite range, int32 bias overflow, a
    requantization multiplier out of range, a bad quantized dtype)."""


INT8_WEIGHT_QMIN, INT8_WEIGHT_QMAX = -127, 127  # symmetric weights: -128 is never used

_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535),
           "int32": (-(2 ** 31), 2 ** 31 - 1)}


def qrange(dtype) -> tuple[int, int]:
    """(qmin, qmax) of an integer quantized dtype ("int8", "uint8", "int16", "uint16", "int32")."""
    name = np.dtype(dtype).name
    if name not in _RANGES:
        raise QuantizationError(f"{name} is not a quantized integer dtype (one of {sorted(_RANGES)})")
    return _RANGES[name]


# -- scale and zero point -------------------------------------------------------------------

def compute_scale_zp(rmin: float, rmax: float, qmin: int, qmax: int, symmetric: bool = False) -> tuple[np.float32, int]:
    """Scale and zero point so that [rmin, rmax] maps onto [qmin, qmax] with r = s * (q - z).

    - The range is first widened to hold zero: rmin <- min(rmin, 0), rmax <- max(rmax, 0), so
      that real 0 (padding, ReLU's floor) is exactly representable by the integer z.
    - ``symmetric``: the range becomes [-a, a] with a = max(|rmin|, |rmax|) and
      z = (qmin + qmax + 1) // 2 (0 for int8 [-127, 127] or [-128, 127]; 128 for uint8).
      Then s = 2a / (qmax - qmin).
    - otherwise s = (rmax - rmin) / (qmax - qmin) and z = round_half_even(qmin - rmin / s),
      clamped to [qmin, qmax]  (qmin <= z <= qmax always holds).
    - A degenerate range (both 0) gives s = 1 and the zero point that maps 0 (qmin, or the
      middle when symmetric), so that every later division is well defined.
    s is a float32 (what ONNX and the runtime store); z is computed from that float32 s.
    """
    if not (math.isfinite(rmin) and math.isfinite(rmax)):
        raise QuantizationError(f"cannot quantize a non-finite range [{rmin}, {rmax}]")
    if rmin > rmax:
        raise QuantizationError(f"empty range: rmin {rmin} > rmax {rmax}")
    if not qmin < qmax:
        raise QuantizationError(f"empty integer range [{qmin}, {qmax}]")
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    if symmetric:
        a = max(abs(rmin), abs(rmax))
        rmin, rmax = -a, a
    zero_zp = (qmin + qmax + 1) // 2 if symmetric else qmin  # the zero point of a range [0, 0]
    width = rmax - rmin
    if width == 0:
        return np.float32(1.0), zero_zp
    with np.errstate(over="ignore"):
        scale = np.float32(width / (qmax - qmin))
    if not np.isfinite(scale):
        raise QuantizationError(f"range [{rmin}, {rmax}] is too wide for a float32 scale")
    if scale == 0:  # narrower than float32 can resolve: the tensor is zero for all purposes
        return np.float32(1.0), zero_zp
    if symmetric:
        zp = zero_zp
    else:
        zp = int(np.clip(np.round(qmin - rmin / np.float64(scale)), qmin, qmax))
    return scale, zp


# -- QuantizeLinear / DequantizeLinear ------------------------------------------------------

def _broadcast_param(p, ndim: int, axis: int | None, name: str) -> np.ndarray:
    p = np.asarray(p)
    if p.ndim == 0 or axis is None:
        if p.size != 1:
            raise QuantizationError(f"{name} has {p.size} elements but no axis was given (per-tensor needs 1)")
        return p.reshape(())
    if p.ndim != 1:
        raise QuantizationError(f"per-axis {name} must be 1-D, got shape {list(p.shape)}")
    shape = [1] * ndim
    shape[axis] = p.size
    return p.reshape(shape)


def _norm_axis(axis: int | None, ndim: int) -> int | None:
    if axis is None:
        return None
    if not -ndim <= axis < ndim:
        raise QuantizationError(f"axis {axis} is out of range for a rank-{ndim} tensor")
    return axis % ndim


def quantize(x, scale, zero_point=0, dtype="int8", axis: int | None = None) -> np.ndarray:
    """ONNX QuantizeLinear: q = saturate(round_half_even(x / scale) + zero_point).

    ``x / scale`` is computed in float32 (as onnxruntime does); ``scale`` and ``zero_point``
    are scalars (per-tensor) or 1-D along ``axis`` (per-axis). NaN maps to the zero point.
    """
    x = np.asarray(x, dtype=np.float32)
    qmin, qmax = qrange(dtype)
    ax = _norm_axis(axis, x.ndim)
    s = _broadcast_param(np.asarray(scale, np.float32), x.ndim, ax, "scale")
    z = _broadcast_param(np.asarray(zero_point, np.int64), x.ndim, ax, "zero_point")
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise QuantizationError("quantization scales must be positive and finite")
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.rint(x / s).astype(np.float64)  # half to even, in float32, then exact in f64
    r = np.nan_to_num(r, nan=0.0, posinf=np.inf, neginf=-np.inf)
    return np.clip(r + z, qmin, qmax).astype(np.dtype(dtype))


def dequantize(q, scale, zero_point=0, axis: int | None = None) -> np.ndarray:
    """ONNX DequantizeLinear: r = float32(q - zero_point) * scale (float32 product)."""
    q = np.asarray(q)
    if q.dtype.kind not in "iu":
        raise QuantizationError(f"dequantize needs an integer tensor, got {q.dtype}")
    ax = _norm_axis(axis, q.ndim)
    s = _broadcast_param(np.asarray(scale, np.float32), q.ndim, ax, "scale")
    z = _broadcast_param(np.asarray(zero_point, np.int64), q.ndim, ax, "zero_point")
    return ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


# -- weights and bias -----------------------------------------------------------------------

def quantize_weights_per_channel(w, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 weights: q in [-127, 127], zero point 0.

    scale[c] = max|w[c]| / 127 (float32); a channel that is all zero gets scale 1 (its q are 0).
    Returns (q int8 with w's shape, scales float32 [w.shape[axis]]); w ~= q * scale[c].
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim == 0:
        raise QuantizationError("per-channel quantization needs a tensor of rank >= 1")
    if not np.all(np.isfinite(w)):
        raise QuantizationError("weights contain NaN or infinity")
    ax = _norm_axis(axis, w.ndim)
    other = tuple(i for i in range(w.ndim) if i != ax)
    amax = np.max(np.abs(w), axis=other) if other else np.abs(w)
    scales = (amax.astype(np.float64) / INT8_WEIGHT_QMAX).astype(np.float32)
    scales = np.where(scales > 0, scales, np.float32(1.0)).astype(np.float32)
    q = quantize(w, scales, 0, "int8", axis=ax)
    return np.clip(q, INT8_WEIGHT_QMIN, INT8_WEIGHT_QMAX).astype(np.int8), scales


def quantize_bias(bias, input_scale, weight_scales) -> tuple[np.ndarray, np.ndarray]:
    """int32 bias for an int8 x int8 -> int32 accumulator: b_q[c] = round_half_even(b[c] / s_b[c]).

    s_b[c] = float32(input_scale) * float32(weight_scales[c]) (a float32 product, as
    onnxruntime's quantizer computes it); ``weight_scales`` is a scalar (per-tensor) or one per
    output channel. Zero point 0. Raises QuantizationError naming the channel when |b_q| would
    exceed 2^31 - 1 (a bias far larger than what the input and weight ranges can produce).
    Returns (b_q int32, s_b float32).
    """
    b = np.asarray(bias, dtype=np.float32)
    if b.ndim != 1:
        raise QuantizationError(f"bias must be 1-D, got shape {list(b.shape)}")
    s = (np.float32(input_scale) * np.asarray(weight_scales, np.float32)).astype(np.float32)
    s = np.broadcast_to(s, b.shape).astype(np.float32)
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise QuantizationError("bias scales (input scale * weight scale) must be positive and finite")
    if not np.all(np.isfinite(b)):
        raise QuantizationError("bias contains NaN or infinity")
    q = np.rint(b.astype(np.float64) / s.astype(np.float64))
    lim = 2 ** 31 - 1
    bad = np.flatnonzero(np.abs(q) > lim)
    if bad.size:
        c = int(bad[0])
        raise QuantizationError(f"bias overflows int32 at channel {c}: {float(b[c])!r} / scale {float(s[c])!r} "
                                f"= {q[c]:.4g} ({bad.size} channel(s) overflow)")
    return q.astype(np.int32), s


# -- fixed-point requantization -------------------------------------------------------------

_M_MIN, _M_MAX = 2 ** 30, 2 ** 31 - 1


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """Represent a real multiplier M >= 0 as (m, shift) with M ~= m * 2^(shift - 31).

    - M > 0 is written M = f * 2^e with f in [0.5, 1); m = round_half_even(f * 2^31), so
      m is in [2^30, 2^31 - 1] (if rounding reaches 2^31: m = 2^30, e += 1) and shift = e.
      The relative error |m * 2^(shift-31) - M| / M is at most 2^-31.
    - M < 2^-32 (including 0): (0, 0). For every int32 accumulator |acc * M| < 0.5, so the
      correctly rounded result is 0 anyway.
    - M >= 2^30 cannot be represented with a right shift of at least 1: QuantizationError.
    ``requantize`` shifts right by n = 31 - shift, 1 <= n <= 62.
    """
    M = float(real_multiplier)
    if not math.isfinite(M) or M < 0:
        raise QuantizationError(f"requantization multiplier must be finite and >= 0, got {M!r}")
    if M < 2.0 ** -32:
        return 0, 0
    f, e = math.frexp(M)  # M = f * 2^e, 0.5 <= f < 1, exact
    m = round(f * 2 ** 31)  # exact product; Python rounds half to even
    if m == 2 ** 31:
        m, e = 2 ** 30, e + 1
    if e > 30:
        raise QuantizationError(f"requantization multiplier {M!r} is too large (must be < 2^30)")
    assert _M_MIN <= m <= _M_MAX and 1 <= 31 - e <= 62
    return int(m), int(e)


def multiplier_value(m: int, shift: int) -> float:
    """The real number m * 2^(shift - 31) that (m, shift) stands for (exact in float64)."""
    return math.ldexp(float(m), int(shift) - 31)


def requantize(acc, m, shift, zero_point: int, qmin: int, qmax: int, dtype=None) -> np.ndarray:
    """Integer-only requantization: q = clamp(zero_point + round(acc * m / 2^(31 - shift)), qmin, qmax).

    - ``acc``: int32 accumulators (any integer array whose values fit in int32).
    - ``m``, ``shift``: from ``quantize_multiplier``; scalars, or arrays broadcast against
      ``acc`` (per-channel: shape them so they broadcast along the channel axis).
    - Rounding: the exact product p = acc * m (|p| < 2^62, held in int64) is divided by 2^n,
      n = 31 - shift, ONCE, rounding half away from zero:
          r = sign(p) * ((|p| + 2^(n-1)) >> n)
      so r is the correctly rounded value of acc * M for M = m * 2^(shift-31), ties away from
      zero, with no double rounding. Then the zero point is added and the result saturated.
    - ``dtype``: the output dtype; by default int8 if [qmin, qmax] fits it, else uint8, else int32.
    The C expression that reproduces it bit for bit is in this module's docstring and in
    docs/quantization.md.
    """
    a = np.asarray(acc)
    if a.dtype.kind not in "iu":
        raise QuantizationError(f"requantize needs integer accumulators, got {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < -(2 ** 31) or a.max() > 2 ** 31 - 1):
        raise QuantizationError("accumulators exceed the int32 range")
    m = np.asarray(m, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any((m != 0) & ((m < _M_MIN) | (m > _M_MAX))) or np.any(m < 0):
        raise QuantizationError("multiplier m must be 0 or in [2^30, 2^31 - 1] (use quantize_multiplier)")
    n = 31 - shift
    if np.any((n < 1) | (n > 62)):
        raise QuantizationError("shift must satisfy 1 <= 31 - shift <= 62 (use quantize_multiplier)")
    if dtype is None:
        dtype = "int8" if qmin >= -128 and qmax <= 127 else "uint8" if qmin >= 0 and qmax <= 255 else "int32"
    lo, hi = qrange(dtype)
    if not lo <= qmin < qmax <= hi:
        raise QuantizationError(f"[{qmin}, {qmax}] is not a valid range for {np.dtype(dtype).name}")
    p = a * m
    half = np.left_shift(np.int64(1), n - 1)
    mag = np.right_shift(np.abs(p) + half, n)
    r = np.where(p >= 0, mag, -mag) + np.int64(zero_point)
    return np.clip(r, qmin, qmax).astype(np.dtype(dtype))


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round half away from zero (float64 helper for references and tests)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


__all__ = ["QuantizationError", "qrange", "compute_scale_zp", "quantize", "dequantize",
           "quantize_weights_per_channel", "quantize_bias", "quantize_multiplier", "multiplier_value",
           "requantize", "round_half_away", "INT8_WEIGHT_QMIN", "INT8_WEIGHT_QMAX"]
