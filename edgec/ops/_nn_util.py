"""Shared geometry and math for the nn and matrix ops (and their ONNX converters).

- window geometry: output sizes of sliding-window ops, SAME padding, ceil-mode padding;
- attribute checks used by the ``infer`` functions (they raise ValueError naming the problem);
- strided window slices used by the conv and pool references;
- Resize: coordinate transforms and per-axis interpolation taps.

The converters import the geometry from here, so that the frontend and the IR agree on it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

FLOAT_DTYPES = ("float16", "float32", "float64")


# -- attribute checks ------------------------------------------------------------------------------
def require_float(op: str, *values) -> str:
    """The common float dtype of ``values`` (None entries skipped); ValueError otherwise."""
    dts = {v.dtype for v in values if v is not None}
    if len(dts) != 1:
        raise ValueError(f"{op}: inputs must share one dtype, got {sorted(dts)}")
    dt = dts.pop()
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"{op}: dtype {dt} is not supported (float16/32/64 only)")
    return dt


def int_tuple(op: str, name: str, value, n: int, minimum: int | None = None) -> tuple[int, ...]:
    """``value`` as a tuple of exactly ``n`` ints, each >= ``minimum``."""
    try:
        t = tuple(int(v) for v in value)
    except TypeError:
        raise ValueError(f"{op}: attribute {name} must be a sequence of ints, got {value!r}") from None
    if len(t) != n:
        raise ValueError(f"{op}: attribute {name} needs {n} values, got {list(t)}")
    if minimum is not None and any(v < minimum for v in t):
        raise ValueError(f"{op}: attribute {name} values must be >= {minimum}, got {list(t)}")
    return t


def window_attrs(op: str, rank: int, attrs, kernel: Sequence[int] | None = None):
    """Validated (kernel, strides, pads, dilations) of a sliding-window op with ``rank`` spatial axes."""
    k = int_tuple(op, "kernel", attrs["kernel"] if kernel is None else kernel, rank, 1)
    s = int_tuple(op, "strides", attrs["strides"], rank, 1)
    p = int_tuple(op, "pads", attrs["pads"], 2 * rank, 0)
    d = int_tuple(op, "dilations", attrs["dilations"], rank, 1)
    return k, s, p, d


# -- window geometry -------------------------------------------------------------------------------
def effective_kernel(k: int, d: int) -> int:
    """Extent of a dilated kernel."""
    return (k - 1) * d + 1


def window_out_size(size: int, k: int, s: int, d: int, pad_begin: int, pad_end: int) -> int:
    """Floor-mode output length of a sliding window (may be <= 0 when the window does not fit)."""
    return (size + pad_begin + pad_end - effective_kernel(k, d)) // s + 1


def window_out_shape(op: str, spatial: Sequence[int], k, s, p, d) -> tuple[int, ...]:
    r = len(spatial)
    out = tuple(window_out_size(spatial[i], k[i], s[i], d[i], p[i], p[r + i]) for i in range(r))
    if any(o < 1 for o in out):
        raise ValueError(f"{op}: window (kernel {list(k)}, dilations {list(d)}) does not fit the input "
                         f"{list(spatial)} with pads {list(p)} (output {list(out)})")
    return out


def same_pads(spatial: Sequence[int], k, s, d, mode: str) -> list[int]:
    """ONNX auto_pad SAME_UPPER / SAME_LOWER pads (begin..., end...): output = ceil(in / stride)."""
    r = len(spatial)
    begin, end = [0] * r, [0] * r
    for i in range(r):
        out = -(-spatial[i] // s[i])
        total = max(0, (out - 1) * s[i] + effective_kernel(k[i], d[i]) - spatial[i])
        small, big = total // 2, total - total // 2
        begin[i], end[i] = (small, big) if mode == "SAME_UPPER" else (big, small)
    return begin + end


def ceil_extra_pads(spatial: Sequence[int], k, s, d, pads) -> list[int]:
    """Extra end padding that turns a ceil-mode pooling into a floor-mode one.

    Ceil mode gives ``ceil((in + pads - dk) / s) + 1`` windows, minus the last one when it would
    start in the end padding (ONNX: "sliding windows that would start in the right padded region
    are ignored"). The returned per-axis amounts make the floor formula give that count.
    """
    r = len(spatial)
    extra = []
    for i in range(r):
        span = spatial[i] + pads[i] + pads[r + i] - effective_kernel(k[i], d[i])
        out = -(-span // s[i]) + 1
        if (out - 1) * s[i] >= spatial[i] + pads[i]:
            out -= 1
        extra.append(max(0, (out - 1) * s[i] - span))
    return extra


def window_slices(offsets: Sequence[int], strides: Sequence[int], out: Sequence[int]) -> tuple[slice, ...]:
    """Slices of the padded input that a kernel tap at ``offsets`` reads for every output position."""
    return tuple(slice(o, o + s * (n - 1) + 1, s) for o, s, n in zip(offsets, strides, out))


def pad_spatial(x: np.ndarray, pads: Sequence[int], value) -> np.ndarray:
    """Pad the spatial axes (2...) of ``x`` with ``value``; ``pads`` is (begin..., end...)."""
    r = x.ndim - 2
    if not any(pads):
        return x
    widths = [(0, 0), (0, 0)] + [(pads[i], pads[r + i]) for i in range(r)]
    return np.pad(x, widths, mode="constant", constant_values=value)


# -- Resize ------------------------------------------------------------------------------------------
COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
               "tf_half_pixel_for_nn", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
RESIZE_MODES = ("nearest", "linear", "cubic")
NEAREST_TIE_EPS = 1e-6


def resize_coords(mode: str, in_len: int, out_len: int, scale: float, roi: tuple[float, float] = (0.0, 1.0)
                  ) -> np.ndarray:
    """Input coordinate of every output position along one axis (ONNX Resize).

    Computed in float32 in onnxruntime's order of operations, so that nearest-neighbour choices
    near integers and halves resolve as onnxruntime does (see ``resize_taps`` for the ties).
    """
    f = np.float32
    xr = np.arange(out_len, dtype=f)
    s, n_in, n_out = f(scale), f(in_len), f(out_len)
    if mode in ("half_pixel", "pytorch_half_pixel"):
        if mode == "pytorch_half_pixel" and out_len == 1:
            return np.zeros(1, f)
        return (xr + f(0.5)) / s - f(0.5)
    if mode == "half_pixel_symmetric":    # (onnxruntime does the last step in double precision)
        adjustment = n_out / (s * n_in)
        offset = (n_in / f(2)) * (f(1) - adjustment)
        return (np.float64(offset) + (xr.astype(np.float64) + 0.5) / np.float64(s) - 0.5).astype(f)
    if mode == "align_corners":
        return xr * (n_in - f(1)) / (n_out - f(1)) if out_len > 1 else np.zeros(1, f)
    if mode == "asymmetric":
        return xr / s
    if mode == "tf_half_pixel_for_nn":
        return (xr + f(0.5)) / s
    if mode == "tf_crop_and_resize":
        start, end = f(roi[0]), f(roi[1])
        if out_len == 1:
            return np.full(1, 0.5 * np.float64(start + end) * np.float64(n_in - f(1)), f)
        return start * (n_in - f(1)) + xr * (end - start) * (n_in - f(1)) / (n_out - f(1))
    raise ValueError(f"resize: unknown coordinate_transformation_mode {mode!r}")


def _cubic_coeffs(t: np.ndarray, a: float) -> np.ndarray:
    """Keys cubic weights of the taps at offsets -1, 0, 1, 2 for fractional positions ``t``."""
    def near(u):   # |u| <= 1
        return ((a + 2) * u - (a + 3)) * u * u + 1

    def far(u):    # 1 < |u| < 2
        return ((a * u - 5 * a) * u + 8 * a) * u - 4 * a
    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def resize_taps(mode: str, coords: np.ndarray, in_len: int, nearest_mode: str, cubic_coeff_a: float,
                exclude_outside: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output position, the input indices (clamped) and weights of its taps: [out, T] each."""
    base = np.floor(coords)
    frac = (coords - base).astype(np.float64)
    base = base.astype(np.int64)
    if mode == "nearest":
        # a coordinate within NEAREST_TIE_EPS of a half is a tie (onnxruntime resolves float32
        # coordinates such as 3.4999998 = 1 / float32(2/7) as the exact half they stand for)
        tie = np.abs(frac - 0.5) < NEAREST_TIE_EPS
        if nearest_mode == "round_prefer_floor":
            idx = base + ((frac > 0.5) & ~tie)
        elif nearest_mode == "round_prefer_ceil":
            idx = base + ((frac > 0.5) | tie)
        elif nearest_mode == "floor":
            idx = base
        elif nearest_mode == "ceil":
            idx = base + (frac > 0)
        else:
            raise ValueError(f"resize: unknown nearest_mode {nearest_mode!r}")
        idx = idx[:, None]
        weights = np.ones(idx.shape)
    elif mode == "linear":
        idx = base[:, None] + np.arange(2)
        weights = np.stack([1 - frac, frac], axis=-1)
    elif mode == "cubic":
        idx = base[:, None] + np.arange(-1, 3)
        weights = _cubic_coeffs(frac, cubic_coeff_a)
        if exclude_outside:
            weights = np.where((idx >= 0) & (idx < in_len), weights, 0.0)
            weights = weights / weights.sum(axis=1, keepdims=True)
    else:
        raise ValueError(f"resize: unknown mode {mode!r}")
    return np.clip(idx, 0, in_len - 1), weights
