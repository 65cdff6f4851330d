"""Kernel generators for the quant op group (docs/ops.md "quant", edgec/ops/quant.py).

Every kernel is bit-exact with the integer-only numpy reference:

- accumulation (qconv, qdense, qmatmul) in int32: operands are widened to int32 before the
  multiply, the zero-point correction of qconv/qdense is already folded into the int32 bias;
- requantization in int64 with exactly ``edgec.quant.qmath.requantize``'s rounding, written
  branch-free: with p = acc * m (|p| < 2^62) and n = 31 - shift,
      r = (p + 2^(n-1) + (p >> 63)) >> n          (arithmetic shifts)
  which equals sign(p) * ((|p| + 2^(n-1)) >> n): for p < 0,
  -floor((2^(n-1) - p) / 2^n) = floor((p + 2^(n-1) - 1) / 2^n). Then + zero point, clamp.
  The packed qconv (``quant_conv.conv_isa``) uses the same bits in 32-bit lanes where the shifts
  allow: ``requant_hi32`` (n in [33, 62]: a multiply-high of |acc|), its signed form
  ``hi32s_finish`` where no accumulator can land on a rounding tie (``_hi32_signed_ok``), or the
  int32 clamp of ``requant_expr(narrow=True)`` (n >= 31);
- quantize divides in float32 and rounds half to even (``nearbyint``), NaN gives the zero
  point; dequantize converts (q - z) (int64) to float32 once and multiplies by the float32 scale.

Per-channel multipliers/shifts are compile-time constants copied once per call (whole constant
vectors) into two small int32 tables (``_req_tables``) that the epilogue reads by channel; the
product m * acc is a 32 x 32 -> 64-bit one (both sign-extended int32; a bias is added as a second
such product). Per-axis scales of quantize/dequantize are selected by a balanced tree of selects
(depth log2(C)); the per-tensor case is plain constants.

Where things run (the target's mattr, ``quant_isa.target_isa``): on x86_64 (AVX-512 VNNI) and
x86_64-avx2, qdense and qconv (groups = 1) with uint8 activations run on the packed dot-product
kernels of ``quant_conv`` (vpdpbusd / vpmovzxbw + vpmaddwd), qdense with few rows on the
unpacked GEMV ``quant_conv.dense_gemv_isa`` (weights read in place; also on aarch64 ``+dotprod``
with int8 activations, on ``sdot``), depthwise convs with kernel width
>= 5 on VNNI too; qlut uses byte shuffles (``quant_lut``); qmatmul with uint8 left operands and
16+ rows on any AVX2 target runs ``quant_conv.matmul_isa`` (vpmaddwd on the int16 differences
``a - z_a``, ``b - z_b``); qdense_dequant shares qdense's schedules with a float epilogue. Everything else uses the portable
schedules, which reuse the float kernels' machinery (``_nn_sched.conv_direct`` reading
uint8/int8 and computing in int32, ``gemm_nn``, ``dense_nt``, ``elementwise.pointwise``) and
are valid on every target. qadd/qmul/requantize of 8-bit inputs compute in int32 up to the
requantization product (bounds checked from the attributes; int64 otherwise).

Pre-packed weights: the ``prepack_rule`` functions below (``quant_conv.PREPACK``) tell the build
which constant weights a kernel reads in a packed layout (VNNI ``conv_isa`` / ``dense_isa``,
the [K, N] sparse-input qdense); the spec then has ``w_layout`` / ``w_shape`` and input 1 is the
packed array (edgec/backend/build.py ``node_packing``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tvm
from tvm import te

from ...ops.quant import hard_swish_p_bound
from ._nn_sched import cast, conv_direct, dense_nt, dtype_of, gemm_nn, scheduled
from .common import PARALLEL_MIN_ELEMS, placeholder, prim_func
from .elementwise import flat_prim_func, is_nan, pointwise
from .matrix import DENSE_GEMM_MIN_ROWS, _bcast_index
from .nn import conv_problem
from .quant_conv import (Packing, conv_isa, conv_isa_fits, conv_isa_taps, conv_w_block, conv_w_packed_shape,
                         dense_gemv_fits, dense_gemv_isa, dense_isa, dense_w_packed_shape, matmul_isa,
                         pack_conv_weights, pack_dense_weights, packing_attrs, prepack_rule,
                         weight_shape)
from .quant_dw import dwconv_lanes, dwconv_lanes_fits
from .quant_dw_rows import dwconv_rows, dwconv_rows_fits
from .quant_isa import has_vbmi, target_isa
from .quant_lut import lut_vector_bytes, qlut_shuffle
from .registry import KernelSpec, TensorType, kernel

tir = tvm.tirx

I32_MIN, I32_MAX = -(2 ** 31), 2 ** 31 - 1
# the 32-bit requantization of conv_isa and of the depthwise kernels (quant_dw, quant_dw_rows)
# with the signed multiply-high where no accumulator can land on a rounding tie
# (_hi32_signed_ok); off: always the |acc| form (the same bits)
HI32_SIGNED = True


def _tuple(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def _i64(v: int):
    return tir.const(int(v), "int64")


def select_const(idx, values: Sequence, dtype: str):
    """``values[idx]`` for a compile-time table: constants for one value (or all equal), else a
    balanced tree of selects on ``idx`` (depth ceil(log2(len(values))))."""
    vals = list(values)
    if len(set(vals)) == 1:
        return tir.const(vals[0], dtype)

    def tree(lo: int, hi: int):
        if hi - lo == 1:
            return tir.const(vals[lo], dtype)
        if len(set(vals[lo:hi])) == 1:
            return tir.const(vals[lo], dtype)
        mid = (lo + hi) // 2
        return tir.Select(idx < mid, tree(lo, mid), tree(mid, hi))
    return tree(0, len(vals))


def requant_expr(acc, m, n, zero_point: int, qmin: int, qmax: int, out_dtype: str, narrow: bool = False):
    """qmath.requantize on one value: ``acc`` an integer expression (widened to int64) or a pair
    (acc, bias) summed in int64, ``m`` the multiplier and ``n = 31 - shift`` the right shift
    (integer expressions or ints). ``narrow``: every n is >= 31 (the caller checked it), so the
    rounded quotient fits int32 and the clamp runs in int32."""
    # the multiplier first: a table read then precedes the accumulator in the block order that
    # te.create_prim_func derives, so the tables are filled before the loops that read them
    # m < 2^31 and acc an int32 (or narrower) sign-extended: LLVM multiplies 32 x 32 -> 64 bits
    # (vpmuldq / smull) instead of a full 64-bit product
    mm = cast(m, "int64") if not isinstance(m, int) else _i64(m)
    if isinstance(acc, tuple):
        # acc + bias as m*acc + m*bias: two 32 x 32 -> 64-bit products (|each| < 2^62, exact),
        # where m * (acc + bias) would be a full 64-bit multiply
        p = mm * cast(acc[0], "int64") + mm * cast(acc[1], "int64")
    else:
        a64 = cast(acc, "int64")
        p = mm * a64
    if isinstance(n, int):
        nn = _i64(n)
        half = _i64(1 << (n - 1))
    else:
        nn = cast(n, "int64")
        half = tir.shift_left(_i64(1), nn - _i64(1))
    # sign(p) = sign(acc) as m >= 0 (qmath: m = 0 or m in [2^30, 2^31)); for m = 0, p = 0 and
    # (2^(n-1) - 1) >> n = 0 either way. Taking it from acc keeps the product off that path
    sign = tir.shift_right(a64 if not isinstance(acc, tuple) else p, _i64(63))
    r = tir.shift_right(p + half + sign, nn)
    if narrow:
        # n >= 31: |r| < 2^31, so the rest is int32 arithmetic (LLVM narrows once, then 16 lanes
        # per vector instead of 8); clamped before the zero point is added (no overflow)
        r = cast(r, "int32")
        r = tir.max(tir.min(r, tir.const(qmax - zero_point, "int32")), tir.const(qmin - zero_point, "int32"))
        return cast(r + tir.const(zero_point, "int32"), out_dtype)
    r = r + _i64(zero_point)
    r = tir.max(tir.min(r, _i64(qmax)), _i64(qmin))
    return cast(r, out_dtype)


def requant_hi32(acc, m, n, zero_point: int, qmin: int, qmax: int, out_dtype: str):
    """``requant_expr`` for an int32 ``acc`` when every right shift n is in [33, 63], in 32-bit
    lanes but one multiply-high: with a = |acc| (as uint32, 2^31 for INT32_MIN) and
    p = a * m < 2^62, the reference's (p + 2^(n-1)) >> n equals
    (hi32(p) + 2^(n-33)) >> (n-32): the low 32 bits of 2^(n-1) are zero, so adding it never
    carries out of them, and floor(floor(p / 2^32) / 2^k) = floor(p / 2^(32+k)). The sign of p
    is the sign of acc (m >= 0) and is put back after the shift (round half away from zero).
    LLVM turns hi32(zext a * zext m) into one multiply-high of 16 lanes (two vpmuludq and a
    shuffle on AVX-512) instead of widening to int64 lanes."""
    mu = cast(m, "uint64") if not isinstance(m, int) else tir.const(m, "uint64")
    neg = acc < tir.const(0, "int32")
    absu = abs_u32(acc)
    hi = cast(tir.shift_right(mu * cast(absu, "uint64"), tir.const(32, "uint64")), "uint32")
    return hi32_finish(hi, neg, n, zero_point, qmin, qmax, out_dtype)


def abs_u32(acc):
    """|acc| of an int32 as uint32 (2^31 for INT32_MIN): (u ^ s) + (s & 1) with s = acc >> 31 as
    uint32, which never overflows (0u - u would: TVM's simplifier folds it to 0 assuming no
    unsigned wrap-around, and -acc overflows int32 for INT32_MIN)."""
    s = tir.reinterpret("uint32", tir.shift_right(acc, tir.const(31, "int32")))
    return tir.bitwise_xor(tir.reinterpret("uint32", acc), s) + tir.bitwise_and(s, tir.const(1, "uint32"))


def hi32_finish(hi, neg, n, zero_point: int, qmin: int, qmax: int, out_dtype: str):
    """The end of ``requant_hi32`` from ``hi = hi32(|acc| * m)`` (uint32) and ``neg = acc < 0``
    (None: qmin >= zero point and hi was computed from max(acc, 0))."""
    if isinstance(n, int):
        k, c = tir.const(n - 32, "uint32"), tir.const(1 << (n - 33), "uint32")
    else:
        nu = cast(n, "uint32")
        k, c = nu - tir.const(32, "uint32"), tir.shift_left(tir.const(1, "uint32"), nu - tir.const(33, "uint32"))
    qu = tir.shift_right(hi + c, k)
    if neg is None and out_dtype == "uint8" and 0 <= zero_point <= qmin <= qmax <= 255:
        # neg None, uint8 output: q = qu is in [0, 2^30) (hi < 2^30 as |acc| <= 2^31 and
        # m < 2^31, c <= 2^30, k >= 1), so q + zero point never wraps and the clamp to qmax is an
        # unsigned min that the narrowing store does for qmax = 255 (vpmovusdb: no vpmaxsd /
        # vpminsd per vector); below by qmin >= zero point
        r = qu + tir.const(zero_point, "uint32") if zero_point else qu
        r = tir.min(r, tir.const(qmax, "uint32"))
        if qmin > zero_point:
            r = tir.max(r, tir.const(qmin, "uint32"))
        return cast(r, out_dtype)
    q = tir.reinterpret("int32", qu)
    # neg None: the caller knows negative values clamp to qmin (hi = 0 there, so q = 0)
    r = q if neg is None else tir.Select(neg, tir.const(0, "int32") - q, q)
    r = tir.max(tir.min(r, tir.const(qmax - zero_point, "int32")), tir.const(qmin - zero_point, "int32"))
    return cast(r + tir.const(zero_point, "int32"), out_dtype)


def hi32s_finish(hi, n, zero_point: int, qmin: int, qmax: int, out_dtype: str):
    """The signed form of ``hi32_finish``: ``hi = hi32(acc * m)`` of the signed product (int32,
    floor(acc * m / 2^32); ``quant_isa.mulhi_intrin(signed=True)``), then (hi + 2^(n-33)) >> (n-32)
    (arithmetic) = floor((acc * m + 2^(n-1)) / 2^n): rounding half up, which is the reference's
    half away from zero wherever the product is not exactly on a tie (``_hi32_signed_ok``).
    |hi| < 2^30 (|acc| <= 2^31, m < 2^31), so hi + 2^(n-33) < 2^31 and the result plus any
    8-bit zero point fit int32. Six instructions fewer per vector than the |acc| form on AVX-512
    (no absolute value, no sign put back: 13 -> 7 in PP-OCR's 32 -> 200 pointwise conv)."""
    if isinstance(n, int):
        k, c = tir.const(n - 32, "int32"), tir.const(1 << (n - 33), "int32")
    else:
        # n - 32 clamped to [1, 31] (it is there: n in [33, 63]): TVM 0.27's integer-bound analysis
        # of an arithmetic right shift by an unbounded amount (a table read) is unsound, it
        # took the result for [-1, 0] and dropped every clamp after it
        ni = cast(n, "int32")
        k = tir.max(tir.min(ni - tir.const(32, "int32"), tir.const(31, "int32")), tir.const(1, "int32"))
        c = tir.shift_left(tir.const(1, "int32"), k - tir.const(1, "int32"))
    r = tir.shift_right(hi + c, k)
    if out_dtype == "uint8" and 0 <= qmin <= qmax <= 255:
        return _u8_clamp(r + tir.const(zero_point, "int32") if zero_point else r, qmin, qmax)
    r = tir.max(tir.min(r, tir.const(qmax - zero_point, "int32")), tir.const(qmin - zero_point, "int32"))
    return cast(r + tir.const(zero_point, "int32"), out_dtype) if zero_point else cast(r, out_dtype)


def _u8_clamp(y, qmin: int, qmax: int, lanes: int = 1):
    """uint8 of the int32 ``y`` clamped to [qmin, qmax] (0 <= qmin <= qmax <= 255): a signed max
    with qmin, then the upper clamp as an unsigned min, which the narrowing store does for
    qmax = 255 (vpmovusdb: one instruction fewer than a signed min and vpmovdb). ``lanes`` > 1:
    ``y`` is an int32 vector of that many lanes (written TIR) and so is the result."""
    if lanes > 1:
        c = lambda v, t: tir.Broadcast(tir.const(int(v), t), lanes)  # noqa: E731
        y = tir.reinterpret(f"uint32x{lanes}", tir.Max(y, c(qmin, "int32")))
        return tir.Cast(f"uint8x{lanes}", tir.Min(y, c(qmax, "uint32")))
    y = tir.reinterpret("uint32", tir.max(y, tir.const(qmin, "int32")))
    return cast(tir.min(y, tir.const(qmax, "uint32")), "uint8")


def _v2(m: int) -> int:
    """The number of trailing zero bits of m > 0."""
    return (m & -m).bit_length() - 1


def _hi32_signed_ok(attrs) -> bool:
    """No accumulator of the node lands exactly on a rounding tie of its (first) requantization,
    so rounding half up (``hi32s_finish``) gives the reference's half away from zero: for every
    channel m = 0 or 2^(n - 1 - v2(m)) > max |acc| (the node's ``acc_bound``, else 2^31). A tie
    acc * m = (j + 1/2) 2^n needs v2(acc) = n - 1 - v2(m), so |acc| >= 2^(n - 1 - v2(m)). The
    same holds for acc * 2^pre with n + pre (``_acc_pre_shift``). The quantization pass makes a
    fused hard swish's multipliers odd for this (edgec/passes/quantize_int8.py)."""
    bound = attrs.get("acc_bound")
    big = int(bound) if bound is not None else 2 ** 31
    for m, s in zip(_tuple(attrs["multiplier"]), _tuple(attrs["shift"])):
        m, e = int(m), 31 - int(s) - 1
        if m and (e - _v2(m) < 0 or (1 << (e - _v2(m))) <= big):
            return False
    return _clamp_i32_ok(attrs)


def _req_params(attrs, idx=None):
    """(m expr/int, n expr/int) for the node's (per-channel) multiplier and shift."""
    ms = [int(v) for v in _tuple(attrs["multiplier"])]
    ns = [31 - int(v) for v in _tuple(attrs["shift"])]
    if len(ms) == 1 or len(set(zip(ms, ns))) == 1:
        return ms[0], ns[0]
    if idx is None:
        raise ValueError("per-channel multipliers need a channel index")
    return select_const(idx, ms, "int64"), select_const(idx, ns, "int64")


def _requant_node(acc, attrs, idx=None, tables=None, narrow: bool = False):
    """Requantize ``acc`` with the node's attributes; ``tables`` (from ``_req_tables``) holds the
    per-channel multipliers/shifts in buffers read at ``idx``. ``narrow`` (``acc`` an int32
    expression): the 32-bit lane forms when every shift allows them, ``requant_hi32``
    (``_hi32_ok``) or else the int32 tail of ``requant_expr`` (``_narrow_ok``)."""
    if tables is not None:
        m, n = tables[0][idx], tables[1][idx]
    else:
        m, n = _req_params(attrs, idx)
    zp, qmin, qmax, dt = int(attrs["out_zero_point"]), int(attrs["qmin"]), int(attrs["qmax"]), str(attrs["out_dtype"])
    if attrs.get("act", "none") == "hard_swish":
        return _hard_swish_requant(acc, m, n, attrs)
    if narrow and _hi32_ok(attrs) and not isinstance(acc, tuple):
        return requant_hi32(acc, m, n, zp, qmin, qmax, dt)
    return requant_expr(acc, m, n, zp, qmin, qmax, dt, narrow=narrow and _narrow_ok(attrs))


def _hard_swish_requant(acc, m, n, attrs):
    """A fused hard swish (edgec/ops/quant.py module doc): h = the requantization of ``acc`` to
    fixed point (F fraction bits, clamped to [act_hmin, act_hmax]), t = clamp(h + 3, 0, 6),
    p = h * t (|p| < 2^31: int32 lanes), then ONE rounding of p / (6 s_y) to the output."""
    # the same 32-bit forms as a plain requantization where the shifts allow them (_narrow_ok,
    # requant_hi32): every right shift of the first step >= 31 keeps h in int32 lanes; p is an
    # int32 expression, and the second step's shift is usually in [33, 62]
    lo, hi = int(attrs["act_hmin"]), int(attrs["act_hmax"])
    if _hi32_ok(attrs) and not isinstance(acc, tuple):
        h = requant_hi32(acc, m, n, 0, lo, hi, "int32")
    else:
        h = requant_expr(acc, m, n, 0, lo, hi, "int32", narrow=_narrow_ok(attrs))
    return _hard_swish_tail(h, attrs)


def _hard_swish_tail(h, attrs, lanes: int = 1):
    """From the fixed-point pre-activation h (int32): t = clamp(h + 3, 0, 6), p = h * t, then the
    final step in int32 lanes (edgec/ops/quant.py ``hard_swish_tail``): q = (p + 2^(s-1)) >> s,
    y = (q * M + 2^(n-1)) >> n, clamped, + zero point. The attributes' checks guarantee that no
    step leaves int32 (one 32-bit multiply, no 64-bit product). ``lanes`` > 1: h is an int32 vector
    of that many lanes (written TIR, quant_dw) and so is the result."""
    if lanes > 1:
        i32 = lambda v: tir.Broadcast(tir.const(int(v), "int32"), lanes)  # noqa: E731
    else:
        i32 = lambda v: tir.const(int(v), "int32")  # noqa: E731
    f = int(attrs["act_frac_bits"])
    t = tir.max(tir.min(h + i32(3 << f), i32(6 << f)), i32(0))
    ps, mm, rs = int(attrs["act_pre_shift"]), int(attrs["act_multiplier"]), int(attrs["act_right_shift"])
    q = h * t
    if ps:
        q = tir.shift_right(q + i32(1 << (ps - 1)), i32(ps))
    zp, qmin, qmax, dt = int(attrs["out_zero_point"]), int(attrs["qmin"]), int(attrs["qmax"]), str(attrs["out_dtype"])
    if dt == "uint8" and 0 <= qmin <= qmax <= 255:
        # the zero point inside the rounding constant where the sum stays in int32 (zp * 2^n is a
        # multiple of 2^n: the same floor), else added after the shift; then the uint8 clamp as a
        # signed max and the narrowing store's unsigned saturation (_u8_clamp)
        qb = (hard_swish_p_bound(attrs) + (1 << ps >> 1)) >> ps
        cz = (1 << (rs - 1)) + (zp << rs)
        if qb * mm + cz < 2 ** 31 and cz - qb * mm >= -(2 ** 31):
            r = tir.shift_right(q * i32(mm) + i32(cz), i32(rs))
        else:
            r = tir.shift_right(q * i32(mm) + i32(1 << (rs - 1)), i32(rs)) + i32(zp)
        return _u8_clamp(r, qmin, qmax, lanes)
    r = tir.shift_right(q * i32(mm) + i32(1 << (rs - 1)), i32(rs))
    r = tir.max(tir.min(r, i32(qmax - zp)), i32(qmin - zp))
    r = r + i32(zp)
    return tir.Cast(f"{dt}x{lanes}", r) if lanes > 1 else cast(r, dt)


def _hi32_finish(hi, neg, attrs, idx, tables, pre: int = 0, signed: bool = False):
    """The end of the 32-bit requantization of ``conv_isa`` / ``requant_hi32`` for the node's
    attributes; ``signed``: ``hi`` is the signed multiply-high (``hi32s_finish``, neg unused)."""
    n = tables[1][idx] if tables is not None else _req_params(attrs, idx)[1]
    if pre:
        n = n + pre if isinstance(n, int) else n + tir.const(pre, dtype_of(n))
    if signed:
        if attrs.get("act", "none") == "hard_swish":
            h = hi32s_finish(hi, n, 0, int(attrs["act_hmin"]), int(attrs["act_hmax"]), "int32")
            return _hard_swish_tail(h, attrs)
        return hi32s_finish(hi, n, int(attrs["out_zero_point"]), int(attrs["qmin"]), int(attrs["qmax"]),
                            str(attrs["out_dtype"]))
    if attrs.get("act", "none") == "hard_swish":
        # the multiply-high gives the fixed-point pre-activation h, then the hard swish
        h = hi32_finish(hi, neg, n, 0, int(attrs["act_hmin"]), int(attrs["act_hmax"]), "int32")
        return _hard_swish_tail(h, attrs)
    return hi32_finish(hi, neg, n, int(attrs["out_zero_point"]), int(attrs["qmin"]), int(attrs["qmax"]),
                       str(attrs["out_dtype"]))


def _hi32_ok(attrs) -> bool:
    """Every right shift n = 31 - shift is in [33, 63] (``requant_hi32``; with a fused hard swish,
    the shifts of its first step, to the fixed-point pre-activation)."""
    return all(33 <= 31 - int(v) <= 63 for v in _tuple(attrs["shift"])) and _clamp_i32_ok(attrs)


def _acc_pre_shift(attrs) -> int:
    """k > 0 when the node's ``acc_bound`` lets ``requant_hi32`` run on ``acc << k`` with right
    shifts ``n + k`` (the smallest n + k is 33, the largest at most 63, |acc| * 2^k < 2^31); these
    are the reference's bits: (acc 2^k m + 2^(n+k-1) - [acc < 0]) >> (n + k) =
    (acc m + 2^(n-1) - [acc < 0]) >> n. 0 otherwise (no bound, shifts already >= 33)."""
    bound = attrs.get("acc_bound")
    ns = [31 - int(v) for v in _tuple(attrs["shift"])]
    if bound is None or min(ns) >= 33 or not _clamp_i32_ok(attrs):
        return 0
    k = 33 - min(ns)
    if max(ns) + k > 63 or (int(bound) << k) >= 2 ** 31:
        return 0
    return k


def _hi32_low_clamp(attrs) -> bool:
    """Every negative accumulator requantizes to qmin (qmin >= the output zero point, a fused ReLU):
    the multiply-high of max(acc, 0) then needs no sign. Never with a fused hard swish (h < 0
    matters there)."""
    return attrs.get("act", "none") == "none" and int(attrs["qmin"]) - int(attrs["out_zero_point"]) >= 0


def _narrow_ok(attrs) -> bool:
    """Every right shift n = 31 - shift is >= 31 (multipliers below 1, the usual case): then
    |round(acc * m / 2^n)| < 2^31 for any int32 acc and m < 2^31, and the result fits int32."""
    return all(31 - int(v) >= 31 for v in _tuple(attrs["shift"])) and _clamp_i32_ok(attrs)


def _clamp_i32_ok(attrs) -> bool:
    """qmin - zero point and qmax - zero point (the int32 clamp bounds) fit int32 (not so for
    an int32 output with its whole range)."""
    z = int(attrs["out_zero_point"])
    return all(I32_MIN <= int(attrs[k]) - z <= I32_MAX for k in ("qmin", "qmax"))


def _req_tables(attrs, channels: int, force: bool = False):
    """Per-channel (multiplier, right shift) as two int32 buffers of ``channels`` entries, filled
    once per call (a select tree per entry), or None when one pair serves every channel. Reading a
    table in the epilogue is ~20x cheaper than evaluating the select tree per output element."""
    ms = [int(v) for v in _tuple(attrs["multiplier"])]
    ns = [31 - int(v) for v in _tuple(attrs["shift"])]
    if not force and (len(ms) == 1 or len(set(zip(ms, ns))) == 1):
        return None
    if len(ms) == 1:
        ms, ns = ms * channels, ns * channels
    mt = te.placeholder((channels,), "int32", name="req_m")
    nt = te.placeholder((channels,), "int32", name="req_n")
    return _ReqTables(mt, nt, ms, ns)


def _const_fill(buf, vals, lanes: int = 16) -> list:
    """Stores writing the compile-time ``vals`` into ``buf``: whole vectors of constants (LLVM
    keeps each as one constant in the object and copies it), the rest one by one. Much cheaper
    per call than a loop over a select tree (TVM 0.27 has no constant buffers)."""
    out = []
    whole = len(vals) - len(vals) % lanes
    for i in range(0, whole, lanes):
        vec = tir.Shuffle([tir.const(int(v), "int32") for v in vals[i:i + lanes]],
                          [tir.const(j, "int32") for j in range(lanes)])
        out.append(tir.BufferStore(buf, vec, [tir.Ramp(tir.const(i, "int32"), 1, lanes)]))
    for i in range(whole, len(vals)):
        out.append(tir.BufferStore(buf, tir.const(int(vals[i]), "int32"), [tir.const(i, "int32")]))
    return out


class _ReqTables(tuple):
    """(m table, n table) placeholders plus their values; ``with_tables`` turns them from
    parameters into buffers of the kernel filled at its start."""

    def __new__(cls, mt, nt, ms, ns):
        obj = super().__new__(cls, (mt, nt))
        obj.values = (ms, ns)
        return obj


def with_tables(spec: KernelSpec, ins: Sequence[te.Tensor], outs: Sequence[te.Tensor], schedule, tables):
    """``scheduled(...)`` for a kernel whose epilogue reads ``tables``: they are extra parameters
    while scheduling (so no block produces them and compute-at moves are not blocked), then become
    buffers of the root block, filled by a loop before everything else."""
    if tables is None:
        return scheduled(spec, ins, outs, schedule)
    func = scheduled(spec, list(ins) + list(tables), outs, schedule)
    n_in, n_tab = len(ins), len(tables)
    params = list(func.params)
    bufs = params[n_in:n_in + n_tab]   # 0.27: PrimFunc parameters are the Buffers themselves
    keep = params[:n_in] + params[n_in + n_tab:]
    fills = []
    for buf, vals in zip(bufs, tables.values):
        fills.extend(_const_fill(buf, vals))
    realize = func.body
    rb = realize.block
    block = tvm.s_tir.SBlock(rb.iter_vars, rb.reads, rb.writes, rb.name_hint, tir.SeqStmt(fills + [rb.body]),
                             rb.init, list(rb.alloc_buffers) + bufs, rb.match_buffers, rb.annotations)
    body = tvm.s_tir.SBlockRealize(realize.iter_values, realize.predicate, block)
    return tir.PrimFunc(keep, body, func.ret_type, func.attrs)


# -- quantize / dequantize / requantize ------------------------------------------------------------

def _axis_params(spec: KernelSpec, key: str):
    return [v for v in _tuple(spec.attrs[key])]


def _quantize_value(x, s, z, qmin: int, qmax: int, out_dtype: str):
    q = x / s
    r = tir.nearbyint(q) + cast(z, "float32")
    r = tir.max(tir.min(r, tir.const(float(qmax), "float32")), tir.const(float(qmin), "float32"))
    return tir.Select(is_nan(q), cast(z, out_dtype), cast(r, out_dtype))


@kernel("quantize")
def quantize(spec: KernelSpec):
    from ...quant.qmath import qrange
    out_dtype = spec.outputs[0].dtype
    qmin, qmax = qrange(out_dtype)
    scales = [float(v) for v in _axis_params(spec, "scale")]
    zps = [int(v) for v in _axis_params(spec, "zero_point")]
    axis = spec.attrs.get("axis")
    if axis is None or (len(set(scales)) == 1 and len(set(zps)) == 1):
        s, z = tir.const(scales[0], "float32"), tir.const(zps[0], "int32")
        return pointwise(spec, ["x"], lambda v: _quantize_value(v, s, z, qmin, qmax, out_dtype))
    x = placeholder(spec, 0, "x")
    c = int(x.shape[axis])
    scales = scales * c if len(scales) == 1 else scales
    zps = zps * c if len(zps) == 1 else zps

    def body(*i):
        s = select_const(i[axis], scales, "float32")
        z = select_const(i[axis], zps, "int32")
        return _quantize_value(x(*i), s, z, qmin, qmax, out_dtype)
    y = te.compute(tuple(int(d) for d in x.shape), body, name="y")
    return prim_func(spec, [x], [y])


def _dequantize_value(q, s, z):
    # 8-bit and 16-bit (q - z) fit int32, and int32 -> float32 is one instruction everywhere.
    # An int64 -> float32 conversion is a libgcc call (__aeabi_l2f) on 32-bit ARM, and LLVM
    # (TVM 0.27, armv7a-linux-gnueabihf, float ABI hard) reads its result from s0 where the
    # run-time ABI returns it in r0: every value came out NaN (docs/targets.md).
    wide = "int32" if dtype_of(q) in ("int8", "uint8", "int16", "uint16") else "int64"
    return cast(cast(q, wide) - cast(z, wide), "float32") * s


@kernel("dequantize")
def dequantize(spec: KernelSpec):
    scales = [float(v) for v in _axis_params(spec, "scale")]
    zps = [int(v) for v in _axis_params(spec, "zero_point")]
    axis = spec.attrs.get("axis")
    if axis is None or (len(set(scales)) == 1 and len(set(zps)) == 1):
        s, z = tir.const(scales[0], "float32"), _i64(zps[0])
        return pointwise(spec, ["x"], lambda v: _dequantize_value(v, s, z))
    x = placeholder(spec, 0, "x")
    c = int(x.shape[axis])
    scales = scales * c if len(scales) == 1 else scales
    zps = zps * c if len(zps) == 1 else zps

    def body(*i):
        return _dequantize_value(x(*i), select_const(i[axis], scales, "float32"), select_const(i[axis], zps, "int64"))
    y = te.compute(tuple(int(d) for d in x.shape), body, name="y")
    return prim_func(spec, [x], [y])


def _fits_i32(bound: int) -> bool:
    return bound <= I32_MAX


def _round_shift(p, n: int):
    """qmath's rounding of p / 2^n (p int64, n >= 1): (p + 2^(n-1) + (p >> 63)) >> n."""
    return tir.shift_right(p + _i64(1 << (n - 1)) + tir.shift_right(p, _i64(63)), _i64(n))


def _bound_after(bound: int, m: int, n: int) -> int:
    """Upper bound of |round(acc * m / 2^n)| for |acc| <= bound."""
    return (bound * m >> n) + 1


@kernel("requantize")
def requantize(spec: KernelSpec):
    a = spec.attrs
    x_dtype = spec.inputs[0].dtype
    if x_dtype in ("uint8", "int8"):
        # x - z fits int32 for 8-bit x: the multiply is then int32 x int32 -> int64 (vpmuldq)
        zi = tir.const(int(a["in_zero_point"]), "int32")
        return pointwise(spec, ["x"], lambda v: _requant_node(cast(v, "int32") - zi, a))
    zi = _i64(int(a["in_zero_point"]))
    return pointwise(spec, ["x"], lambda v: _requant_node(cast(v, "int64") - zi, a))


# -- qadd / qmul -----------------------------------------------------------------------------------

@kernel("qadd")
def qadd(spec: KernelSpec):
    """Each side (v - z) << left_shift is an int32 when |v - z| << left_shift < 2^31 (8-bit inputs,
    left_shift <= 23); its requantization multiplies int32 x int32 into int64 and needs no clamp
    when the bound of its result is inside int32; the sum is int32 when both bounds add up below
    2^31. Otherwise (never with the pass's attributes) the int64 form of the reference."""
    a = spec.attrs
    lsv = int(a["left_shift"])
    dmax = [max(abs(lo - z), abs(hi - z)) for z, (lo, hi) in
            ((int(a["a_zero_point"]), _qrange(spec.inputs[0].dtype)), (int(a["b_zero_point"]), _qrange(spec.inputs[1].dtype)))]
    ms = (int(a["a_multiplier"]), int(a["b_multiplier"]))
    ns = (31 - int(a["a_shift"]), 31 - int(a["b_shift"]))
    bounds = [_bound_after(d << lsv, m, n) for d, m, n in zip(dmax, ms, ns)]
    narrow = all(_fits_i32(d << lsv) for d in dmax) and _fits_i32(sum(bounds)) and all(1 <= n <= 62 for n in ns)
    if narrow:
        zs = (tir.const(int(a["a_zero_point"]), "int32"), tir.const(int(a["b_zero_point"]), "int32"))
        # the signed multiply-high forms (16 int32 lanes, no 64-bit lanes) where no value lands
        # on a rounding tie (_qadd_side_hi32s, _hi32_signed_ok with the sum's bound)
        sides = [_qadd_side_hi32s(d, m, n, lsv) if QADD_HI32S else None for d, m, n in zip(dmax, ms, ns)]
        final_s = QADD_HI32S and _hi32_signed_ok({**a, "acc_bound": sum(bounds)}) and _hi32_ok(a)

        def side32(v, z, m, n, hs):
            if hs is not None:      # (d << L) * m, its high word, rounded by the shift to n - ls + L
                big, n2 = hs
                t = tir.shift_left(cast(v, "int32") - z, tir.const(big, "int32"))
                return hi32s_finish(_mulhi_s32(t, m), n2, 0, I32_MIN, I32_MAX, "int32")
            t = tir.shift_left(cast(v, "int32") - z, tir.const(lsv, "int32"))
            return cast(_round_shift(_i64(m) * cast(t, "int64"), n), "int32")

        def body32(x, y):
            acc = side32(x, zs[0], ms[0], ns[0], sides[0]) + side32(y, zs[1], ms[1], ns[1], sides[1])
            if final_s:
                m, n = _req_params(a)
                return hi32s_finish(_mulhi_s32(acc, m), n, int(a["out_zero_point"]), int(a["qmin"]), int(a["qmax"]),
                                    str(a["out_dtype"]))
            return _requant_node(acc, a, narrow=QADD_HI32S)
        return pointwise(spec, ["a", "b"], body32)

    za, zb = _i64(a["a_zero_point"]), _i64(a["b_zero_point"])
    ls = _i64(lsv)

    def side(v, z, m, s):
        t = tir.shift_left(cast(v, "int64") - z, ls)
        return cast(requant_expr(t, int(m), 31 - int(s), 0, I32_MIN, I32_MAX, "int32"), "int64")

    def body(x, y):
        acc = side(x, za, a["a_multiplier"], a["a_shift"]) + side(y, zb, a["b_multiplier"], a["b_shift"])
        return _requant_node(acc, a)
    return pointwise(spec, ["a", "b"], body)


# qmatmul's requantization in 32-bit lanes (False: the int64 lanes of before; the same bits)
QMATMUL_I32 = True

# qadd's requantizations on the signed multiply-high where no tie is reachable (False: the int64
# lanes of before; the same bits, for measurements)
QADD_HI32S = True


def _mulhi_s32(t, m: int):
    """floor(t * m / 2^32) of an int32 expression t and a constant m (|m| < 2^31) as int32: LLVM
    makes the sign-extended product's high word one vpmuldq pair and a shuffle per 16 lanes."""
    return cast(tir.shift_right(cast(t, "int64") * _i64(m), _i64(32)), "int32")


def _qadd_side_hi32s(dmax: int, m: int, n: int, ls: int):
    """(L, n') for one side of qadd, round(((v - z) << ls) * m / 2^n) with |v - z| <= dmax, in the
    signed multiply-high form, or None. The same quotient is ((v - z) << L) * m / 2^n' with
    n' = n - ls + L; L = 31 - bitlen(dmax) keeps (v - z) << L in int32 and n' in [33, 63] is
    ``hi32s_finish``'s range. Rounding half up (the form) equals the reference's half away from
    zero unless a product lands on a tie: (v - z) * m * 2^L = (j + 1/2) 2^n', i.e. v2(v - z) =
    e = n - ls - 1 - v2(m). No non-zero |v - z| <= dmax has that when m = 0, e < 0 (the quotient
    is exact) or 2^e > dmax."""
    if dmax <= 0:
        return None
    big = 31 - dmax.bit_length()
    n2 = n - ls + big
    if big < 0 or not 33 <= n2 <= 63:
        return None
    if m:
        e = n - ls - 1 - _v2(m)
        if 0 <= e and (1 << e) <= dmax:
            return None
    return big, n2


def _qrange(dtype: str) -> tuple[int, int]:
    from ...quant.qmath import qrange
    return qrange(dtype)


@kernel("qmul")
def qmul(spec: KernelSpec):
    """(a - za) * (b - zb) is at most 255 * 255 (8-bit inputs): an int32 product, requantized in
    32-bit lanes where the shift allows (``_requant_node(narrow=True)``, the same bits). A side
    broadcast over trailing axes (a squeeze-excitation gate [N, C, 1, 1] times the feature map
    [N, C, H, W]) runs as rows (``_qmul_rows``)."""
    a = spec.attrs
    za, zb = tir.const(int(a["a_zero_point"]), "int32"), tir.const(int(a["b_zero_point"]), "int32")
    eight = all(t.dtype in ("uint8", "int8") for t in spec.inputs)

    def body(x, y):
        return _requant_node((cast(x, "int32") - za) * (cast(y, "int32") - zb), a, narrow=eight)
    split = _row_broadcast(spec)
    if split is not None:
        return _qmul_rows(spec, split, body)
    return pointwise(spec, ["a", "b"], body)


def _row_broadcast(spec: KernelSpec):
    """(rows, cols, full input index) when one input has the output's shape and the other the
    output's leading axes up to some axis and ones after it (cols = the product of those trailing
    axes, at least 16): e.g. [1, C, H, W] and [1, C, 1, 1]. None otherwise."""
    oshape = tuple(int(d) for d in spec.outputs[0].shape)
    shapes = [tuple(int(d) for d in t.shape) for t in spec.inputs]
    if len(shapes) != 2:
        return None
    for full, part in ((0, 1), (1, 0)):
        if shapes[full] != oshape or len(shapes[part]) != len(oshape):
            continue
        k = len(oshape)
        while k > 0 and shapes[part][k - 1] == 1:
            k -= 1
        if k == len(oshape) or shapes[part][:k] != oshape[:k]:
            continue
        rows = cols = 1
        for d in oshape[:k]:
            rows *= d
        for d in oshape[k:]:
            cols *= d
        if cols >= 16:
            return rows, cols, full
    return None


def _qmul_rows(spec: KernelSpec, split, body):
    """y[r, j] = body(a[r, j], b[r]) (or the sides swapped): the broadcast value is loaded once per
    row, the row is vectorized (16-lane blocks and LLVM's loop vectorizer for a tail), rows split
    across threads when the output is large. The flat pointwise form decomposes every lane's flat
    index to find its row (a gather per vector)."""
    rows, cols, full = split
    names = ("a", "b")
    big = te.placeholder((rows, cols), spec.inputs[full].dtype, name=names[full])
    small = te.placeholder((rows,), spec.inputs[1 - full].dtype, name=names[1 - full])
    odt = str(spec.outputs[0].dtype)

    def f(r, j):
        v = body(big[r, j], small[r]) if full == 0 else body(small[r], big[r, j])
        return v if dtype_of(v) == odt else cast(v, odt)
    y = te.compute((rows, cols), f, name="y")
    ins = [big, small] if full == 0 else [small, big]
    shapes = [tuple(int(d) for d in t.shape) for t in spec.inputs] + [tuple(int(d) for d in spec.outputs[0].shape)]

    def schedule(sch, spec_) -> None:
        blk = sch.get_sblock("y")
        r, j = sch.get_loops(blk)
        if cols % 16 == 0:
            _, ji = sch.split(j, [None, 16])
            sch.vectorize(ji)
        if rows * cols >= PARALLEL_MIN_ELEMS and rows >= 2:
            sch.parallel(r)
    return flat_prim_func(spec, ins, [y], shapes, schedule)


# -- qlut ------------------------------------------------------------------------------------------

@kernel("qlut")
def qlut(spec: KernelSpec):
    from ...quant.qmath import qrange
    x = placeholder(spec, 0, "x")
    out_dtype = spec.outputs[0].dtype
    lo = qrange(str(x.dtype))[0]
    table = [int(v) for v in _tuple(spec.attrs["table"])]
    shuffle = lut_vector_bytes(spec.target)
    if shuffle is not None:
        return qlut_shuffle(tuple(int(d) for d in x.shape), str(x.dtype), out_dtype, table, *shuffle)
    tab = te.compute((256,), lambda i: select_const(i, table, "int32").astype(out_dtype), name="table")
    shape = tuple(int(d) for d in x.shape)
    y = te.compute(shape, lambda *i: tab[cast(x(*i), "int32") - lo], name="y")

    def schedule(sch, spec_) -> None:
        blk = sch.get_sblock("y")
        loops = sch.get_loops(blk)
        total = 1
        for d in shape:
            total *= d
        if loops and total >= (1 << 15):
            outer = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
            if len(loops) == 1:
                outer, _ = sch.split(outer, [None, 1024])
            sch.parallel(outer)
    return scheduled(spec, [x], [y], schedule)


# -- qdense / qmatmul / qconv ----------------------------------------------------------------------

def _i32(e):
    return cast(e, "int32")


def _scale_table(scales, channels: int):
    """Per-channel float32 scales as one int32 buffer of their bit patterns (filled once per call
    like the requantization tables, read back with a reinterpret), or None when one scale serves
    every channel."""
    import numpy as np
    vals = [float(v) for v in _tuple(scales)]
    if len(set(vals)) == 1:
        return None
    bits = np.asarray(vals, np.float32).view(np.int32)
    st = te.placeholder((channels,), "int32", name="deq_scale")
    return _OneTable(st, [int(b) for b in bits])


class _OneTable(tuple):
    """One constant int32 table (``with_tables``)."""

    def __new__(cls, t, vals):
        obj = super().__new__(cls, (t,))
        obj.values = (vals,)
        return obj


# -- compile-time weight packing (quant_conv.PREPACK): the artifact stores the weights of the
# packed VNNI conv / dense kernels in their layout (int8, as stored); the spec then carries
# ``w_layout`` (the layout's name) and ``w_shape`` (the weights' original shape), input 1 is the
# packed tensor and the kernel reads it in place. AVX2 widens the weights to int16: not stored
# packed (twice the bytes), packed per call as before.
def _qconv_isa(spec: KernelSpec, isa) -> bool:
    """qconv's dispatch takes conv_isa."""
    x = spec.inputs[0]
    return (isa is not None and bool(isa.px)
            and conv_isa_fits(x.dtype, int(spec.attrs.get("group", 1)), len(x.shape) - 2))


def _long_epilogue(attrs) -> bool:
    """conv_isa ranks its tiles for a long epilogue (quant_conv ``_rank_tiles``): the requantization
    in int64 lanes (no 32-bit form: ``_hi32_ok`` / ``_acc_pre_shift``), or a fused hard swish. The
    pre-packing and the kernel must agree (the weights' channel blocks)."""
    return (not _hi32_ok(attrs) and not _acc_pre_shift(attrs)) or attrs.get("act", "none") == "hard_swish"


@prepack_rule("qconv")
def _qconv_prepack(spec: KernelSpec) -> dict[int, Packing]:
    w = spec.inputs[1] if len(spec.inputs) > 1 else None
    if spec.attrs.get("w_layout") or w is None:
        return {}
    isa = target_isa(spec.target)
    if not _qconv_isa(spec, isa) or w.dtype != isa.w_dtype:
        return {}
    attrs = spec.attrs
    c = int(spec.inputs[0].shape[1])
    kw = int(w.shape[-1])
    taps = conv_isa_taps(c, kw, isa)
    blk = conv_w_block(isa, c, tuple(w.shape), attrs, tuple(spec.outputs[0].shape), _long_epilogue(attrs))
    layout = f"{isa.name}_conv{'_taps' if taps else ''}_o{blk}g{isa.group}"
    shape = conv_w_packed_shape(isa, c, w.shape, blk)
    return {1: Packing(layout, TensorType(w.dtype, shape), lambda a: pack_conv_weights(a, isa, taps, blk),
                       packing_attrs(layout, w.shape))}


def _dense_isa_fits(spec: KernelSpec, isa) -> bool:
    """qdense's dispatch takes the packed dense_isa (not the sparse GEMV, not the unpacked GEMV)."""
    from .quant_sparse import _llvm_hosted, sparse_gemv_fits
    x, w = spec.inputs[0], spec.inputs[1]
    if isa is None or x.dtype != isa.x_dtype or len(x.shape) != 2:
        return False
    m, k = (int(d) for d in x.shape)
    if w.dtype == "int8" and sparse_gemv_fits(spec.attrs, m, k) and _llvm_hosted(spec.target):
        return False
    return (not dense_gemv_fits(isa, m, k) and bool(isa.oc)
            and m >= (4 if isa.name == "vnni" else 16))


def _kn_fits(spec: KernelSpec) -> bool:
    """qdense (not qdense_dequant) with calibration evidence of a sparse input whose weights are
    worth storing as [K, N] (quant_sparse.sparse_kn_fits), on a hosted LLVM target."""
    from .quant_sparse import _llvm_hosted, sparse_kn_fits
    x, w = spec.inputs[0], spec.inputs[1]
    if spec.op != "qdense" or w.dtype != "int8" or x.dtype not in ("uint8", "int8") or len(x.shape) != 2:
        return False
    m, k = (int(d) for d in x.shape)
    return sparse_kn_fits(spec.attrs, m, k, int(w.shape[0])) and _llvm_hosted(spec.target)


def _transpose_kn(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a).T)


def _qdense_prepack(spec: KernelSpec) -> dict[int, Packing]:
    w = spec.inputs[1] if len(spec.inputs) > 1 else None
    if spec.attrs.get("w_layout") or w is None or spec.inputs[0] is None or len(w.shape) != 2:
        return {}
    if _kn_fits(spec):
        from .quant_sparse import KN_LAYOUT
        n, k = (int(d) for d in w.shape)
        return {1: Packing(KN_LAYOUT, TensorType("int8", (k, n)), _transpose_kn, packing_attrs(KN_LAYOUT, w.shape))}
    isa = target_isa(spec.target)
    if not _dense_isa_fits(spec, isa) or w.dtype != isa.w_dtype:
        return {}
    n, k = (int(d) for d in w.shape)
    layout = f"{isa.name}_dense{isa.lanes}x{isa.group}"
    return {1: Packing(layout, TensorType(w.dtype, dense_w_packed_shape(isa, n, k)),
                       lambda a: pack_dense_weights(a, isa), packing_attrs(layout, w.shape))}


prepack_rule("qdense")(_qdense_prepack)
prepack_rule("qdense_dequant")(_qdense_prepack)


@kernel("qdense")
def qdense(spec: KernelSpec):
    from .quant_sparse import KN_LAYOUT, sparse_kn_qdense, sparse_qdense
    if spec.attrs.get("w_layout") == KN_LAYOUT:
        # weights stored [K, N] (_qdense_prepack): the one-pass sparse GEMV
        n, k = weight_shape(spec)
        if tuple(int(d) for d in spec.inputs[1].shape) != (k, n) or int(spec.inputs[0].shape[-1]) != k:
            raise ValueError(f"qdense: [K, N] weights of shape {list(spec.inputs[1].shape)} for w_shape [{n}, {k}] "
                             f"and input {list(spec.inputs[0].shape)}")
        return sparse_kn_qdense(spec)
    # a sparse input (calibration evidence): skip its zeros
    sparse = None if spec.attrs.get("w_layout") else sparse_qdense(spec)
    if sparse is not None:
        return sparse
    a = spec.attrs
    n = weight_shape(spec)[0]
    tables = _req_tables(a, n)

    def epi(acc, bias_j, j):
        return _requant_node(acc if bias_j is None else (acc, bias_j), a, j, tables)
    return _qdense_kernel(spec, epi, tables)


@kernel("qdense_dequant")
def qdense_dequant(spec: KernelSpec):
    """qdense's schedules (packed ISA dot products, GEMV, portable) with a float epilogue:
    y = float32(acc + bias) * scale[j], bit-exact with the reference (int32 sum, one rounding
    int32 -> float32 to nearest even, one float32 product)."""
    n = weight_shape(spec)[0]
    scales = [float(v) for v in _tuple(spec.attrs["scale"])]
    table = _scale_table(scales, n)

    def epi(acc, bias_j, j):
        if bias_j is not None:
            acc = acc + bias_j
        s = tir.reinterpret("float32", table[0][j]) if table is not None else tir.const(scales[0], "float32")
        return s * cast(acc, "float32")
    return _qdense_kernel(spec, epi, table)


def _qdense_kernel(spec: KernelSpec, epilogue, tables):
    """qdense's schedule choice; ``epilogue(acc_int32, bias[j] or None, j)`` makes the output."""
    x = placeholder(spec, 0, "x")
    w = placeholder(spec, 1, "w")
    has_bias = len(spec.inputs) > 2 and spec.inputs[2] is not None
    bias = placeholder(spec, 2, "bias") if has_bias else None
    m, k = (int(d) for d in x.shape)
    n = weight_shape(spec)[0]

    def epi(acc, i, j):
        return epilogue(acc, bias[j] if bias is not None else None, j)

    isa = target_isa(spec.target)
    if spec.attrs.get("w_layout"):
        # the weights are stored in dense_isa's layout (_qdense_prepack): read in place
        if not _dense_isa_fits(spec, isa) or spec.attrs["w_layout"] != f"{isa.name}_dense{isa.lanes}x{isa.group}":
            raise ValueError(f"qdense: weights in layout {spec.attrs['w_layout']!r} but the kernel is not "
                             f"dense_isa on this target")
        out, sched = dense_isa(isa, m, n, k, x, w, epi, w_packed=True)
        return with_tables(spec, [x, w] + ([bias] if bias is not None else []), [out], sched, tables)
    if isa is not None and str(x.dtype) != isa.x_dtype:
        isa = None
    gemv = dense_gemv_fits(isa, m, k)
    # the weights are packed on every call (N*K bytes, twice that as int16 for AVX2): with few
    # rows the unpacked GEMV (dense_gemv_isa, quant_conv.GEMV_MAX_ROWS) is faster, or the
    # portable one when K is below one dot block (measured: packing pays from 4 rows on VNNI
    # against the portable GEMV, from 16 on AVX2)
    if gemv:
        out, sched = dense_gemv_isa(isa, m, n, k, x, w, epi)
    elif isa is not None and isa.oc and m >= (4 if isa.name == "vnni" else 16):
        out, sched = dense_isa(isa, m, n, k, x, w, epi)
    elif m >= DENSE_GEMM_MIN_ROWS:
        out, sched = gemm_nn((), m, n, k, lambda bi, i, kk: _i32(x[i, kk]), lambda bi, kk, j: _i32(w[j, kk]),
                             "int32", spec.target, lambda acc, bi, i, j: epi(acc, i, j), (m, n),
                             lambda idx: ([], idx[0], idx[1]), b_transposed=True)
    else:
        out, sched = dense_nt(m, n, k, x, w, "int32", spec.target, epi)
    return with_tables(spec, [x, w] + ([bias] if bias is not None else []), [out], sched, tables)


@kernel("qmatmul")
def qmatmul(spec: KernelSpec):
    a = placeholder(spec, 0, "a")
    b = placeholder(spec, 1, "b")
    attrs = spec.attrs
    za, zb = tir.const(int(attrs["a_zero_point"]), "int32"), tir.const(int(attrs["b_zero_point"]), "int32")
    ash = tuple(int(d) for d in a.shape)
    bsh = tuple(int(d) for d in b.shape)
    out_shape = tuple(int(d) for d in spec.outputs[0].shape)
    m, k, n = ash[-2], ash[-1], bsh[-1]
    abatch, bbatch = ash[:-2], bsh[:-2]
    batch = out_shape[:-2]
    nb = len(batch)

    def a_fn(bi, mm, kk):
        return _i32(a[tuple(_bcast_index(abatch, batch, bi)) + (mm, kk)]) - za

    def b_fn(bi, kk, nn):
        return _i32(b[tuple(_bcast_index(bbatch, batch, bi)) + (kk, nn)]) - zb

    # |acc| <= k * max|a - za| * max|b - zb|: the 32-bit requantization forms where that fits int32
    # (the signed multiply-high where no accumulator can land on a tie), else the int64 lanes
    dmax = [max(abs(lo - int(attrs[z])), abs(hi - int(attrs[z]))) for z, (lo, hi) in
            (("a_zero_point", _qrange(str(a.dtype))), ("b_zero_point", _qrange(str(b.dtype))))]
    bound = k * dmax[0] * dmax[1]
    one = len(set(zip(_tuple(attrs["multiplier"]), _tuple(attrs["shift"])))) == 1
    signed = (QMATMUL_I32 and one and bound < 2 ** 31 and _hi32_ok(attrs)
              and _hi32_signed_ok({**attrs, "acc_bound": bound}))

    def epi(acc):
        if signed:
            mq, nq = _req_params(attrs)
            return hi32s_finish(_mulhi_s32(acc, mq), nq, int(attrs["out_zero_point"]), int(attrs["qmin"]),
                                int(attrs["qmax"]), str(attrs["out_dtype"]))
        return _requant_node(acc, attrs, narrow=QMATMUL_I32 and bound < 2 ** 31)

    isa = target_isa(spec.target)
    avx2 = isa is not None and isa.name in ("vnni", "avx2")
    if avx2 and str(a.dtype) == "uint8" and m >= 16 and 2 <= k and k * 255 * 255 < 2 ** 31:
        # vpmaddwd on (a - za) and (b - zb) as int16 (also on VNNI targets, which have AVX2: the
        # differences do not fit vpdpbusd's 8-bit operands)
        from .quant_isa import isa_by_name
        za_i = int(attrs["a_zero_point"])
        out, sched = matmul_isa(
            isa_by_name("avx2"), batch, m, n, k,
            lambda bi, mm, kk: a[tuple(_bcast_index(abatch, batch, bi)) + (mm, kk)],
            lambda bi, kk, nn: b[tuple(_bcast_index(bbatch, batch, bi)) + (kk, nn)], za_i, int(attrs["b_zero_point"]),
            lambda acc, mm, nn: epi(acc))
        return scheduled(spec, [a, b], [out], sched)
    out, sched = gemm_nn(batch, m, n, k, a_fn, b_fn, "int32", spec.target,
                         lambda acc, bi, mm, nn: epi(acc), out_shape,
                         lambda idx: (list(idx[:nb]), idx[nb], idx[nb + 1]))
    return scheduled(spec, [a, b], [out], sched)


@kernel("qconv")
def qconv(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    w = placeholder(spec, 1, "w")
    has_bias = len(spec.inputs) > 2 and spec.inputs[2] is not None
    b = placeholder(spec, 2, "bias") if has_bias else None
    attrs = spec.attrs
    w_shape = weight_shape(spec)
    oc = w_shape[0]
    tables = _req_tables(attrs, oc)

    def epi(acc, nn, o, sp):
        if b is not None:
            acc = (acc, b[o])
        return _requant_node(acc, attrs, o, tables)

    isa = target_isa(spec.target)
    out_shape = tuple(int(d) for d in spec.outputs[0].shape)
    rank = len(x.shape) - 2
    packed = bool(attrs.get("w_layout"))
    if packed and not _qconv_isa(spec, isa):
        raise ValueError(f"qconv: weights in layout {attrs['w_layout']!r} but the kernel is not conv_isa on "
                         f"this target")
    if _qconv_isa(spec, isa):
        # the bias is added to the int32 accumulator (the reference's acc + bias fits int32),
        # the requantization in 32-bit lanes where the shifts allow it
        hi32 = None
        pre = 0 if _hi32_ok(attrs) else _acc_pre_shift(attrs)
        if _hi32_ok(attrs) or pre:
            # the multiply-high on its tensor intrinsic reads the multiplier from a table,
            # also when one multiplier serves every channel; with ``pre`` > 0 it multiplies
            # acc * 2^pre and every right shift grows by pre (the same bits, acc_bound)
            if tables is None:
                tables = _req_tables(attrs, oc, force=True)
            # signed: no accumulator on a rounding tie, the signed multiply-high of acc itself
            # (_hi32_signed_ok; a ReLU's max(acc, 0) form is as short and stays)
            low = _hi32_low_clamp(attrs)
            signed = HI32_SIGNED and not low and _hi32_signed_ok(attrs)
            hi32 = (tables[0], lambda hi, neg, o: _hi32_finish(hi, neg, attrs, o, tables, pre, signed=signed),
                    low, pre, "signed" if signed else "abs")
        out, sched = conv_isa(isa, x, w, b, attrs, out_shape,
                              lambda acc, o: _requant_node(acc, attrs, o, tables, narrow=True), hi32,
                              w_shape=w_shape if packed else None, long_epilogue=_long_epilogue(attrs))
    elif dwconv_rows_fits(isa, str(x.dtype), int(attrs.get("group", 1)), int(x.shape[1]), oc, rank,
                          int(w.shape[2]), int(w.shape[-1]), attrs["strides"], out_shape[-1], attrs["dilations"],
                          str(attrs["out_dtype"]), str(attrs.get("act", "none")), out_shape[-2],
                          min(31 - int(v) for v in _tuple(attrs["shift"]))):
        # large depthwise planes: width in the lanes, 4 taps per vpdpbusd (quant_dw_rows)
        out, sched = dwconv_rows(isa, x, w, b, attrs, out_shape, tables, epi, vbmi=has_vbmi(spec.target))
    elif dwconv_lanes_fits(isa, str(x.dtype), int(attrs.get("group", 1)), int(x.shape[1]), oc, rank,
                           int(w.shape[-1]), out_shape[-1], str(attrs.get("act", "none"))):
        out, sched = dwconv_lanes(isa, x, w, b, attrs, out_shape, tables, epi, vbmi=has_vbmi(spec.target))
    else:
        # int32 accumulation of uint8/int8 loads; padding reads the input zero point (real 0)
        prob = conv_problem(spec, x, w, fill=tir.const(int(attrs["x_zero_point"]), str(x.dtype)),
                            dtype=str(x.dtype))
        out, sched = conv_direct(prob, spec.target, epi, str(attrs["out_dtype"]))
    return with_tables(spec, [x, w] + ([b] if b is not None else []), [out], sched, tables)
