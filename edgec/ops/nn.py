"""nn ops (see docs/ops.md): convolutions, pooling, normalizations, softmax, resize, depth/space.

Layout is ONNX's (NCHW..., OIHW... weights). Every geometric attribute is explicit in the IR
(the frontend resolves auto_pad, ceil_mode, output_shape, Resize sizes/axes), so the references
below are plain floor-mode sliding windows. They loop over kernel taps, never over pixels.
"""
from __future__ import annotations

import numpy as np

from ..ir.ops import REQUIRED, register
from ._nn_util import (COORD_MODES, NEAREST_MODES, RESIZE_MODES, int_tuple, pad_spatial, require_float,
                       resize_coords, resize_taps, window_attrs, window_out_shape, window_slices)

_NUMERIC = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
            "uint64")


def _spatial_rank(op: str, x, lo: int = 1, hi: int = 3) -> int:
    r = len(x.shape) - 2
    if not lo <= r <= hi:
        raise ValueError(f"{op}: input must be [N, C, spatial...] with {lo} to {hi} spatial axes, got {list(x.shape)}")
    return r


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


# -- conv ------------------------------------------------------------------------------------------
# act_min / act_max: a relu or clip fused into the conv (edgec.passes.fuse_activation): the output
# is clamped to [act_min, act_max] after the bias (None: unbounded), as clip does. The optional
# fourth input ``residual`` (the output's shape and dtype; fused by the same pass from
# conv -> add) is added after the bias, before the clamp
_CONV_ATTRS = {"strides": REQUIRED, "pads": REQUIRED, "dilations": REQUIRED, "group": 1,
               "act_min": None, "act_max": None}


def _conv_infer(inputs, attrs):
    x, w, bias, residual = (list(inputs) + [None, None])[:4]
    dt = require_float("conv", x, w, bias, residual)
    r = _spatial_rank("conv", x)
    if len(w.shape) != r + 2:
        raise ValueError(f"conv: weight {list(w.shape)} must have rank {r + 2} for input {list(x.shape)}")
    g = int(attrs["group"])
    for k in ("act_min", "act_max"):
        v = attrs.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or np.isnan(v)):
            raise ValueError(f"conv: attribute {k} must be a number or None, got {v!r}")
    n, c = x.shape[:2]
    m = w.shape[0]
    if g < 1 or c % g or m % g or w.shape[1] * g != c:
        raise ValueError(f"conv: group={g} does not fit input channels {c}, weight {list(w.shape)}")
    if bias is not None and tuple(bias.shape) != (m,):
        raise ValueError(f"conv: bias must have shape [{m}], got {list(bias.shape)}")
    k, s, p, d = window_attrs("conv", r, attrs, kernel=w.shape[2:])
    out = (n, m) + window_out_shape("conv", x.shape[2:], k, s, p, d)
    if residual is not None and tuple(residual.shape) != tuple(out):
        raise ValueError(f"conv: residual must have the output's shape {list(out)}, got {list(residual.shape)}")
    return [(dt, out)]


def _conv_macs(inputs, outputs, attrs) -> int:
    w = inputs[1]
    return _size(outputs[0].shape) * _size(w.shape[1:])


@register("conv", group="nn", infer=_conv_infer, attrs=_CONV_ATTRS, arity=(2, 4), macs=_conv_macs)
def conv(x, w, bias=None, residual=None, *, strides, pads, dilations, group, act_min=None, act_max=None):
    """ONNX Conv with explicit pads (begin..., end...), 1 to 3 spatial axes, grouped; then, when
    given, the optional ``residual`` (the output's shape) added and a clamp to [act_min, act_max]
    (a fused add and relu / clip, with clip's semantics)."""
    n, c = x.shape[:2]
    m, cg, *ks = w.shape
    g, mg = group, m // group
    out = window_out_shape("conv", x.shape[2:], ks, strides, pads, dilations)
    xp = pad_spatial(x, pads, 0)
    # taps first, so that each tap's [g, mg, cg] matrix is contiguous (BLAS-able)
    wt = np.ascontiguousarray(np.moveaxis(w.reshape(g, mg, cg, *ks), (0, 1, 2), (-3, -2, -1)))
    acc = np.zeros((n, g, mg, _size(out)), dtype=x.dtype)
    for tap in np.ndindex(*ks):
        offsets = [t * dd for t, dd in zip(tap, dilations)]
        xs = xp[(slice(None), slice(None)) + window_slices(offsets, strides, out)].reshape(n, g, cg, -1)
        wk = wt[tap]                                    # [g, mg, cg]
        if cg == 1:
            acc += wk[None] * xs                        # depthwise: a broadcast multiply
        else:
            acc += np.matmul(wk, xs)                    # [g, mg, cg] @ [n, g, cg, P]
    if bias is not None:
        acc += bias.reshape(1, g, mg, 1)
    if residual is not None:
        acc += residual.reshape(acc.shape)
    if act_min is not None:
        acc = np.maximum(acc, np.asarray(act_min).astype(acc.dtype))
    if act_max is not None:
        acc = np.minimum(acc, np.asarray(act_max).astype(acc.dtype))
    return (acc.reshape((n, m) + tuple(out)),)


# -- conv_transpose --------------------------------------------------------------------------------
_CONVT_ATTRS = {"strides": REQUIRED, "pads": REQUIRED, "dilations": REQUIRED, "group": 1,
                "output_padding": REQUIRED}


def _convt_geometry(x_shape, w_shape, attrs):
    r = len(x_shape) - 2
    s = int_tuple("conv_transpose", "strides", attrs["strides"], r, 1)
    d = int_tuple("conv_transpose", "dilations", attrs["dilations"], r, 1)
    p = int_tuple("conv_transpose", "pads", attrs["pads"], 2 * r)
    op = int_tuple("conv_transpose", "output_padding", attrs["output_padding"], r, 0)
    ks = w_shape[2:]
    out = tuple(s[i] * (x_shape[2 + i] - 1) + op[i] + (ks[i] - 1) * d[i] + 1 - p[i] - p[r + i] for i in range(r))
    return s, d, p, out


def _convt_infer(inputs, attrs):
    x, w, bias = (list(inputs) + [None])[:3]
    dt = require_float("conv_transpose", x, w, bias)
    r = _spatial_rank("conv_transpose", x)
    if len(w.shape) != r + 2:
        raise ValueError(f"conv_transpose: weight {list(w.shape)} must have rank {r + 2}")
    g = int(attrs["group"])
    n, c = x.shape[:2]
    if g < 1 or c % g or w.shape[0] != c:
        raise ValueError(f"conv_transpose: group={g} does not fit input channels {c}, weight {list(w.shape)}")
    m = w.shape[1] * g
    if bias is not None and tuple(bias.shape) != (m,):
        raise ValueError(f"conv_transpose: bias must have shape [{m}], got {list(bias.shape)}")
    _, _, _, out = _convt_geometry(x.shape, w.shape, attrs)
    if any(o < 1 for o in out):
        raise ValueError(f"conv_transpose: output spatial shape {list(out)} is empty")
    return [(dt, (n, m) + out)]


def _convt_macs(inputs, outputs, attrs) -> int:
    x, w = inputs[0], inputs[1]
    return _size(x.shape) * _size(w.shape[1:])


@register("conv_transpose", group="nn", infer=_convt_infer, attrs=_CONVT_ATTRS, arity=(2, 3),
          macs=_convt_macs)
def conv_transpose(x, w, bias=None, *, strides, pads, dilations, group, output_padding):
    """ONNX ConvTranspose: y[o*s + k*d - pad_begin] += x[o] * w[k]; output_padding extends the end.

    Negative pads (from an output_shape larger than the natural one) grow the output with zeros.
    """
    n, c = x.shape[:2]
    _, mg, *ks = w.shape
    g, cg = group, c // group
    s, d, p, out = _convt_geometry(x.shape, w.shape,
                                   {"strides": strides, "dilations": dilations, "pads": pads,
                                    "output_padding": output_padding})
    r = len(ks)
    in_sp = x.shape[2:]
    xg = x.reshape(n, g, cg, -1)
    # taps first, each tap a contiguous [g, mg, cg] matrix (the transpose of w's [cg, mg] block)
    wt = np.ascontiguousarray(np.moveaxis(w.reshape(g, cg, mg, *ks), (0, 2, 1), (-3, -2, -1)))
    y = np.zeros((n, g, mg) + out, dtype=x.dtype)
    for tap in np.ndindex(*ks):
        src, dst = [], []
        for i in range(r):
            # input index j lands on output o = j*s + tap*d - pad_begin; keep 0 <= o < out
            first = tap[i] * d[i] - p[i]
            lo = max(0, -(first // s[i]))
            hi = min(in_sp[i] - 1, (out[i] - 1 - first) // s[i])
            if lo > hi:
                break
            src.append(slice(lo, hi + 1))
            o0 = first + lo * s[i]
            dst.append(slice(o0, o0 + (hi - lo) * s[i] + 1, s[i]))
        else:
            contrib = np.matmul(wt[tap], xg)            # [g, mg, cg] @ [n, g, cg, P] -> [n, g, mg, P]
            contrib = contrib.reshape((n, g, mg) + tuple(in_sp))
            y[(slice(None),) * 3 + tuple(dst)] += contrib[(slice(None),) * 3 + tuple(src)]
    y = y.reshape((n, g * mg) + out)
    if bias is not None:
        y += bias.reshape((1, -1) + (1,) * r)
    return (y,)


# -- pooling ---------------------------------------------------------------------------------------
_POOL_ATTRS = {"kernel": REQUIRED, "strides": REQUIRED, "pads": REQUIRED, "dilations": REQUIRED}


def _pool_infer(op: str, dtypes_ok):
    def infer(inputs, attrs):
        x = inputs[0]
        if x.dtype not in dtypes_ok:
            raise ValueError(f"{op}: dtype {x.dtype} is not supported")
        r = _spatial_rank(op, x)
        k, s, p, d = window_attrs(op, r, attrs)
        return [(x.dtype, tuple(x.shape[:2]) + window_out_shape(op, x.shape[2:], k, s, p, d))]
    return infer


def _lowest(dtype) -> float | int:
    return -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min


@register("max_pool", group="nn", infer=_pool_infer("max_pool", _NUMERIC), attrs=_POOL_ATTRS)
def max_pool(x, *, kernel, strides, pads, dilations):
    """Floor-mode max pooling; padding is -inf (the dtype's minimum for integers)."""
    out = window_out_shape("max_pool", x.shape[2:], kernel, strides, pads, dilations)
    xp = pad_spatial(x, pads, _lowest(x.dtype))
    y = None
    for tap in np.ndindex(*kernel):
        v = xp[(slice(None), slice(None)) + window_slices([t * d for t, d in zip(tap, dilations)], strides, out)]
        y = v.copy() if y is None else np.maximum(y, v, out=y)
    return (y,)


def _avg_counts(spatial, kernel, strides, pads, dilations, out) -> np.ndarray:
    """Number of in-bounds (unpadded) taps of every output window, as an array of shape ``out``."""
    r = len(spatial)
    counts = np.ones((), dtype=np.int64)
    for i in range(r):
        starts = np.arange(out[i])[:, None] * strides[i] - pads[i] + np.arange(kernel[i])[None, :] * dilations[i]
        c = ((starts >= 0) & (starts < spatial[i])).sum(axis=1)
        counts = np.multiply.outer(counts, c)
    return counts


@register("avg_pool", group="nn", infer=_pool_infer("avg_pool", ("float16", "float32", "float64")),
          attrs={**_POOL_ATTRS, "count_include_pad": 0})
def avg_pool(x, *, kernel, strides, pads, dilations, count_include_pad):
    """Floor-mode average pooling. The divisor is the kernel size when count_include_pad, else the
    number of taps that fall inside the input (so padding never counts)."""
    out = window_out_shape("avg_pool", x.shape[2:], kernel, strides, pads, dilations)
    xp = pad_spatial(x, pads, 0)
    acc = np.zeros(x.shape[:2] + out, dtype=np.float64 if x.dtype == np.float64 else np.float32)
    for tap in np.ndindex(*kernel):
        acc += xp[(slice(None), slice(None)) + window_slices([t * d for t, d in zip(tap, dilations)], strides, out)]
    if count_include_pad:
        acc /= _size(kernel)
    else:
        counts = _avg_counts(x.shape[2:], kernel, strides, pads, dilations, out)
        acc /= np.maximum(counts, 1)
    return (acc.astype(x.dtype, copy=False),)


def _global_infer(op: str, dtypes_ok):
    def infer(inputs, attrs):
        x = inputs[0]
        if x.dtype not in dtypes_ok:
            raise ValueError(f"{op}: dtype {x.dtype} is not supported")
        if len(x.shape) < 3:
            raise ValueError(f"{op}: input must be [N, C, spatial...], got {list(x.shape)}")
        return [(x.dtype, tuple(x.shape[:2]) + (1,) * (len(x.shape) - 2))]
    return infer


@register("global_avg_pool", group="nn", infer=_global_infer("global_avg_pool", ("float16", "float32", "float64")))
def global_avg_pool(x):
    """Mean over every spatial axis, kept as size-1 axes."""
    axes = tuple(range(2, x.ndim))
    acc_dt = np.float64 if x.dtype == np.float64 else np.float32
    return (np.mean(x, axis=axes, keepdims=True, dtype=acc_dt).astype(x.dtype),)


@register("global_max_pool", group="nn", infer=_global_infer("global_max_pool", _NUMERIC))
def global_max_pool(x):
    """Max over every spatial axis, kept as size-1 axes."""
    return (np.max(x, axis=tuple(range(2, x.ndim)), keepdims=True),)


# -- normalizations --------------------------------------------------------------------------------
def _acc(x: np.ndarray) -> np.ndarray:
    """Arithmetic type for statistics: float32, or float64 for float64 input."""
    return x.astype(np.float64 if x.dtype == np.float64 else np.float32, copy=False)


def _lrn_infer(inputs, attrs):
    x = inputs[0]
    dt = require_float("lrn", x)
    if len(x.shape) < 3:
        raise ValueError(f"lrn: input must be [N, C, spatial...], got {list(x.shape)}")
    if int(attrs["size"]) < 1:
        raise ValueError(f"lrn: size must be >= 1, got {attrs['size']}")
    return [(dt, x.shape)]


@register("lrn", group="nn", infer=_lrn_infer, attrs={"size": REQUIRED, "alpha": 1e-4, "beta": 0.75, "bias": 1.0})
def lrn(x, *, size, alpha, beta, bias):
    """y = x / (bias + alpha / size * sum of x^2 over channels [c - (size-1)//2, c + ceil((size-1)/2)])^beta"""
    c = x.shape[1]
    lo = (size - 1) // 2
    hi = size - 1 - lo
    xf = _acc(x)
    sq = np.square(xf)
    padded = np.pad(sq, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    total = np.zeros_like(sq)
    for k in range(size):
        total += padded[:, k:k + c]
    return ((xf / np.power(bias + (alpha / size) * total, beta)).astype(x.dtype),)


def _channel_params_infer(op: str, n_params: int):
    def infer(inputs, attrs):
        x = inputs[0]
        params = inputs[1:1 + n_params]
        dt = require_float(op, x, *params)
        if len(x.shape) < 2:
            raise ValueError(f"{op}: input must be [N, C, ...], got {list(x.shape)}")
        for v in params:
            if v is not None and tuple(v.shape) != (x.shape[1],):
                raise ValueError(f"{op}: per-channel parameters must have shape [{x.shape[1]}], got {list(v.shape)}")
        return [(dt, x.shape)]
    return infer


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


@register("batch_norm", group="nn", infer=_channel_params_infer("batch_norm", 4), attrs={"epsilon": 1e-5},
          arity=(5, 5))
def batch_norm(x, scale, bias, mean, var, *, epsilon):
    """Inference batch normalization over channel axis 1: (x - mean) / sqrt(var + eps) * scale + bias."""
    xf = _acc(x)
    inv = _acc(scale) / np.sqrt(_acc(var) + np.float32(epsilon))
    y = (xf - _per_channel(_acc(mean), x.ndim)) * _per_channel(inv, x.ndim) + _per_channel(_acc(bias), x.ndim)
    return (y.astype(x.dtype, copy=False),)


@register("instance_norm", group="nn", infer=_channel_params_infer("instance_norm", 2), attrs={"epsilon": 1e-5},
          arity=(3, 3))
def instance_norm(x, scale, bias, *, epsilon):
    """Per (n, c): (x - mean) / sqrt(var + eps) * scale[c] + bias[c], statistics over the spatial axes."""
    if x.ndim < 3:
        raise ValueError(f"instance_norm: input must have spatial axes, got {list(x.shape)}")
    xf = _acc(x)
    axes = tuple(range(2, x.ndim))
    mean = xf.mean(axis=axes, keepdims=True)
    var = np.square(xf - mean).mean(axis=axes, keepdims=True)
    y = (xf - mean) / np.sqrt(var + np.float32(epsilon)) * _per_channel(_acc(scale), x.ndim) \
        + _per_channel(_acc(bias), x.ndim)
    return (y.astype(x.dtype, copy=False),)


def _layer_norm_infer(inputs, attrs):
    x, scale, bias = (list(inputs) + [None])[:3]
    dt = require_float("layer_norm", x, scale, bias)
    rank = len(x.shape)
    axis = int(attrs["axis"])
    if not 0 <= axis < rank:
        raise ValueError(f"layer_norm: axis {axis} out of range for rank {rank} (normalized axes are >= 0)")
    norm_shape = x.shape[axis:]
    for name, v in (("scale", scale), ("bias", bias)):
        if v is None:
            continue
        if len(v.shape) > len(norm_shape) or \
                tuple(np.broadcast_shapes(tuple(v.shape), tuple(norm_shape))) != tuple(norm_shape):
            raise ValueError(f"layer_norm: {name} {list(v.shape)} does not broadcast to the normalized "
                             f"shape {list(norm_shape)}")
    return [(dt, x.shape)]


@register("layer_norm", group="nn", infer=_layer_norm_infer, attrs={"axis": REQUIRED, "epsilon": 1e-5},
          arity=(2, 3))
def layer_norm(x, scale, bias=None, *, axis, epsilon):
    """(x - mean) / sqrt(var + eps) * scale + bias, statistics over axes axis..rank-1 (computed in
    float32, ONNX stash_type=1)."""
    xf = _acc(x)
    axes = tuple(range(axis, x.ndim))
    mean = xf.mean(axis=axes, keepdims=True)
    var = np.square(xf - mean).mean(axis=axes, keepdims=True)
    y = (xf - mean) / np.sqrt(var + np.float32(epsilon)) * _acc(scale)
    if bias is not None:
        y = y + _acc(bias)
    return (y.astype(x.dtype, copy=False),)


# -- softmax ---------------------------------------------------------------------------------------
def _softmax_infer(op: str):
    def infer(inputs, attrs):
        x = inputs[0]
        dt = require_float(op, x)
        axis = int(attrs["axis"])
        if not 0 <= axis < max(len(x.shape), 1):
            raise ValueError(f"{op}: axis {axis} out of range for shape {list(x.shape)} (normalized axes are >= 0)")
        return [(dt, x.shape)]
    return infer


@register("softmax", group="nn", infer=_softmax_infer("softmax"), attrs={"axis": REQUIRED})
def softmax(x, *, axis):
    """exp(x - max) / sum(exp(x - max)) along ``axis``."""
    xf = _acc(x)
    e = np.exp(xf - xf.max(axis=axis, keepdims=True))
    return ((e / e.sum(axis=axis, keepdims=True)).astype(x.dtype, copy=False),)


@register("log_softmax", group="nn", infer=_softmax_infer("log_softmax"), attrs={"axis": REQUIRED})
def log_softmax(x, *, axis):
    """(x - max) - log(sum(exp(x - max))) along ``axis``."""
    xf = _acc(x)
    shifted = xf - xf.max(axis=axis, keepdims=True)
    return ((shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))).astype(x.dtype, copy=False),)


# -- resize ----------------------------------------------------------------------------------------
_RESIZE_ATTRS = {"mode": REQUIRED, "coordinate_transformation_mode": "half_pixel",
                 "nearest_mode": "round_prefer_floor", "scales": REQUIRED, "cubic_coeff_a": -0.75,
                 "exclude_outside": 0, "extrapolation_value": 0.0, "roi": (), "out_shape": REQUIRED}


def _resize_infer(inputs, attrs):
    x = inputs[0]
    rank = len(x.shape)
    mode = attrs["mode"]
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize: mode {mode!r} is not one of {RESIZE_MODES}")
    ctm = attrs["coordinate_transformation_mode"]
    if ctm not in COORD_MODES:
        raise ValueError(f"resize: coordinate_transformation_mode {ctm!r} is not supported")
    if attrs["nearest_mode"] not in NEAREST_MODES:
        raise ValueError(f"resize: nearest_mode {attrs['nearest_mode']!r} is not one of {NEAREST_MODES}")
    if mode == "nearest":
        if x.dtype not in _NUMERIC:
            raise ValueError(f"resize: dtype {x.dtype} is not supported")
    else:
        require_float("resize", x)
    out = int_tuple("resize", "out_shape", attrs["out_shape"], rank, 1)
    scales = tuple(float(s) for s in attrs["scales"])
    if len(scales) != rank or any(not s > 0 for s in scales):
        raise ValueError(f"resize: scales must be {rank} positive numbers, got {list(scales)}")
    roi = tuple(attrs["roi"])
    if ctm == "tf_crop_and_resize" and len(roi) != 2 * rank:
        raise ValueError(f"resize: tf_crop_and_resize needs roi with {2 * rank} values, got {list(roi)}")
    return [(x.dtype, out)]


@register("resize", group="nn", infer=_resize_infer, attrs=_RESIZE_ATTRS)
def resize(x, *, mode, coordinate_transformation_mode, nearest_mode, scales, cubic_coeff_a, exclude_outside,
           extrapolation_value, roi, out_shape):
    """ONNX Resize (no antialias) with the output shape and per-axis scales resolved.

    Separable: each axis is interpolated in turn (last axis first, as in the ONNX reference).
    Input coordinates are computed in float32 as onnxruntime does (see _nn_util.resize_coords);
    nearest treats a coordinate within 1e-6 of a half as a tie and leaves axes whose scale is
    exactly 1 untouched; linear and cubic clamp their taps to the edge. ``roi`` (starts...,
    ends...) and ``extrapolation_value`` are used by tf_crop_and_resize only.
    """
    rank = x.ndim
    y = x if mode == "nearest" else _acc(x)
    for axis in reversed(range(rank)):
        n_in, n_out = x.shape[axis], out_shape[axis]
        if mode == "nearest" and scales[axis] == 1.0 and n_in == n_out:
            continue    # an unscaled axis maps onto itself whatever the coordinate mode (as onnxruntime)
        if coordinate_transformation_mode == "tf_crop_and_resize":
            coords = resize_coords("tf_crop_and_resize", n_in, n_out, scales[axis], (roi[axis], roi[rank + axis]))
            outside = (coords < 0) | (coords > n_in - 1)
        else:
            coords = resize_coords(coordinate_transformation_mode, n_in, n_out, scales[axis])
            outside = None
            if n_in == n_out and np.array_equal(coords, np.arange(n_out)):
                continue
        idx, wts = resize_taps(mode, coords, n_in, nearest_mode, cubic_coeff_a, exclude_outside)
        if mode == "nearest":
            y = np.take(y, idx[:, 0], axis=axis)
        else:
            bshape = [1] * rank
            bshape[axis] = n_out
            acc = 0
            for t in range(idx.shape[1]):
                acc = acc + np.take(y, idx[:, t], axis=axis) * wts[:, t].astype(y.dtype).reshape(bshape)
            y = acc
        if outside is not None and outside.any():
            mask = outside.reshape([-1 if a == axis else 1 for a in range(rank)])
            y = np.where(mask, np.asarray(extrapolation_value).astype(y.dtype), y)
    return (np.ascontiguousarray(y).astype(x.dtype, copy=False),)


# -- depth_to_space / space_to_depth ----------------------------------------------------------------
def _d2s_infer(op: str):
    def infer(inputs, attrs):
        x = inputs[0]
        b = int(attrs["blocksize"])
        if attrs["mode"] not in ("DCR", "CRD"):
            raise ValueError(f"{op}: mode must be DCR or CRD, got {attrs['mode']!r}")
        if len(x.shape) != 4 or b < 1:
            raise ValueError(f"{op}: needs a 4-D input and blocksize >= 1, got {list(x.shape)}, blocksize {b}")
        n, c, h, w = x.shape
        if op == "depth_to_space":
            if c % (b * b):
                raise ValueError(f"depth_to_space: channels {c} not divisible by blocksize^2 = {b * b}")
            return [(x.dtype, (n, c // (b * b), h * b, w * b))]
        if h % b or w % b:
            raise ValueError(f"space_to_depth: spatial {h}x{w} not divisible by blocksize {b}")
        return [(x.dtype, (n, c * b * b, h // b, w // b))]
    return infer


_D2S_ATTRS = {"blocksize": REQUIRED, "mode": "DCR"}


@register("depth_to_space", group="nn", infer=_d2s_infer("depth_to_space"), attrs=_D2S_ATTRS)
def depth_to_space(x, *, blocksize, mode):
    """ONNX DepthToSpace: DCR splits channels as (block_h, block_w, c), CRD as (c, block_h, block_w)."""
    n, c, h, w = x.shape
    b = blocksize
    if mode == "DCR":
        t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return (np.ascontiguousarray(t).reshape(n, c // (b * b), h * b, w * b),)


@register("space_to_depth", group="nn", infer=_d2s_infer("space_to_depth"), attrs=_D2S_ATTRS)
def space_to_depth(x, *, blocksize, mode):
    """ONNX SpaceToDepth: the inverse of depth_to_space with the same mode."""
    n, c, h, w = x.shape
    b = blocksize
    t = x.reshape(n, c, h // b, b, w // b, b)
    t = t.transpose(0, 3, 5, 1, 2, 4) if mode == "DCR" else t.transpose(0, 1, 3, 5, 2, 4)
    return (np.ascontiguousarray(t).reshape(n, c * b * b, h // b, w // b),)

