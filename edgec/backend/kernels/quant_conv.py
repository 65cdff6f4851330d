"""int8 qconv / qdense on the x86 integer dot-product instructions (quant_isa.py).

Both are exact int32 accumulations followed by the epilogue that quant.py gives (bias,
requantization), so they are bit-exact with edgec/ops/quant.py like the portable schedules.

qdense (``dense_isa``): ``acc[m, n] = sum_k x[m, k] w[n, k]`` with the weights packed into
[ceil(N/L), ceil(K/G), L, G] (zero padded; stored so in the artifact when they are a constant on
VNNI, ``pack_dense_weights``, else packed per call): one ``oc`` intrinsic computes L outputs x G k-steps
from G broadcast activations. K not a multiple of G: the activations are copied into a
zero-padded [M, ceil(K/G)*G] buffer. Tiles of mr rows x jt vectors.

qdense with few rows (``dense_gemv_isa``, a GEMV: up to 8 rows on VNNI, 15 on AVX2): no packing, the weights are read in
their [N, K] layout; per output, L int32 lanes accumulate the ``dot`` intrinsic over K in blocks
of L*G bytes (64 for VNNI, 16 for AVX2), then one horizontal sum, the scalar K tail, the epilogue.

qmatmul (``matmul_isa``, AVX2): per batch index the same packed layout and tiles as dense_isa with
int16 on both sides: ``a - z_a`` copied to [M, K] int16, ``b - z_b`` packed to [N/8, K/2, 8, 2].

qconv (``conv_isa``, groups == 1, 1-D and 2-D): lanes are output *pixels* of one output channel,
the weights of that channel are broadcast. The input is copied once per call into a packed
uint8 buffer

    xq[n, c/G, plane, f, g] = x[n, (c/G)*G + g, row(f) - pad_top, col(f) - pad_left]   (zero point outside)

where a plane is one (row phase, column phase) of the strides (one plane for stride 1) and
``f = q_h * Wq + q_w`` flattens the plane's rows of width ``Wq = OW + ((KW-1)*DW)//SW``. The
output pixel (oh, ow) is computed at flattened position ``p = oh * Wq + ow`` and tap (kh, kw)
reads ``xq[.., plane(kh, kw), p + (kh*DH//SH)*Wq + (kw*DW)//SW, :]``: for every tap, L
consecutive output positions read L*G contiguous bytes, whatever the kernel size, stride or
dilation. Positions with ``ow >= OW`` (the Wq - OW columns between rows) are computed and
dropped: waste (KW-1)/Wq of the lanes for a stride-1 KxK conv, none for 1x1. A 1x1 stride-1
conv without padding on whole groups of channels copies ``xq`` as one loop over the flat
positions (a G-way byte interleave LLVM vectorizes), partitioned at H*W from the zero-point fill
of the positions that pad the last tile. Weights that are graph constants are stored pre-packed in the
artifact (``prepack``, VNNI int8: edgec.backend.build.node_packing) as [ceil(O/B), C/G, KH, KW,
B, G] with B the default tile's channel count (``conv_w_block``) and read in place; otherwise
(runtime weights, AVX2's int16 weights, ``EDGEC_PREPACK=0``) they are packed per call into
[ceil(O/mr)*mr, C/G, KH, KW, G] (zero for padded channels), and a one-channel width-tap conv
with KW = G (DS-CNN's first conv) reads its int8 weights in place ([O, 1, KH, G] is that layout).
The register tile is mr output channels x nw vectors of L positions; per step nw vector loads,
mr broadcasts, mr*nw dot instructions. Per tile of nw*L positions the accumulators stay in registers (the tile is
kept under 1 KiB; they start from the bias, ``BIAS_INIT``) and are requantized right after the reduction (the
32-bit multiply-high form of quant.requant_hi32 on the ``quant_isa.mulhi_intrin`` intrinsic
where the shifts allow it) into the bytes of one channel tile, then copied into the NCHW
output. With fewer input channels than G (``conv_isa_taps``) a group holds G consecutive
(channel, width tap) pairs instead: xq[n, t/G, row phase, f, g] with rows of OW positions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import tvm
from tvm import te

from ..tuning import tunable
from ._nn_sched import PARALLEL_MIN_MACS, cast
from .quant_isa import Isa, mulhi_intrin

tir = tvm.tirx


def _ceil_to(v: int, m: int) -> int:
    return -(-v // m) * m


# -- compile-time weight packing (prepack) -----------------------------------------------------------
@dataclass(frozen=True)
class Packing:
    """How one constant input of a kernel is stored in the artifact: ``layout`` (a name, part of
    the packed constant's name), ``packed`` (its TensorType in the kernel's signature), ``pack``
    (numpy: original array -> packed array, exactly what the kernel's per-call packing stage
    computes) and ``attrs`` (added to the node's attrs in the KernelSpec: they tell the generator
    that the input is already packed and what its original shape was)."""
    layout: str
    packed: Any                        # registry.TensorType
    pack: Callable[[np.ndarray], np.ndarray] = field(compare=False)
    attrs: tuple = ()                  # sorted (name, value) pairs


# op -> rule(spec) -> {input index: Packing}; the rules of qconv / qdense live in quant.py, next
# to the dispatch they mirror (a rule packs exactly when the generator would take the packed path)
PREPACK: dict[str, Callable] = {}


def prepack_rule(op: str):
    def deco(fn: Callable) -> Callable:
        PREPACK[op] = fn
        return fn
    return deco


def packing_attrs(layout: str, w_shape) -> tuple:
    """``Packing.attrs`` of a packed weight input: its layout's name and its original shape."""
    return (("w_layout", layout), ("w_shape", tuple(int(d) for d in w_shape)))


def weight_shape(spec) -> tuple[int, ...]:
    """The original shape of the weights (input 1) of a spec, stored packed or not."""
    if spec.attrs.get("w_layout"):
        return tuple(int(d) for d in spec.attrs["w_shape"])
    return tuple(int(d) for d in spec.inputs[1].shape)


def prepack(spec) -> dict:
    """``{input index: Packing}`` for an (unpacked) KernelSpec: the inputs the kernel would pack on
    every call if they were not stored packed. A pure function of the spec (op, attrs, types,
    target ISA), never of a tuned choice. Empty when nothing applies."""
    rule = PREPACK.get(spec.op)
    return rule(spec) if rule is not None else {}


def conv_isa_geometry(isa: Isa, c: int, w_shape: tuple, attrs, out_shape) -> tuple[bool, int, int]:
    """(taps, positions, steps) of conv_isa for C input channels, weights of shape ``w_shape``
    ([O, C, KH, KW] or [O, C, KW]) and output ``out_shape``: the inputs of its tile ranking."""
    G = isa.group
    if len(w_shape) == 3:
        kh, kw = 1, int(w_shape[2])
        sw, dw = int(attrs["strides"][0]), int(attrs["dilations"][0])
        oh, ow = 1, int(out_shape[2])
    else:
        kh, kw = int(w_shape[2]), int(w_shape[3])
        sw, dw = int(attrs["strides"][1]), int(attrs["dilations"][1])
        oh, ow = int(out_shape[2]), int(out_shape[3])
    taps = conv_isa_taps(c, kw, isa)
    if taps:
        return True, oh * ow, -(-(c * kw) // G) * kh
    return False, oh * (ow + ((kw - 1) * dw) // sw), -(-c // G) * kh * kw


def conv_w_block(isa: Isa, c: int, w_shape: tuple, attrs, out_shape, wide_epilogue: bool) -> int:
    """Output channels per block of conv_isa's stored (pre-packed) weights: the channels of the
    default register tile (the cost model's first, ``_rank_tiles``), so that the default tile reads
    the B*G weights of one reduction step as one contiguous run and its whole weight panel as one
    sequential stream. A pure function of the spec: a tuned tile with other channel counts reads
    the same layout (by block and channel within it). Measured on Zen 4, int8, 1 thread: reading
    the per-channel rows [O, C/G, KH, KW, G] in place (mr streams C*KH*KW bytes apart) made
    resnet50's 1x1 convs with 1-2 MiB of weights 30 % slower than the per-call copy; blocks of 16
    channels made MobileNetV2's 14x14 pointwise convs (tiles of fewer channels: 4x the cache
    lines per tile) 25-30 % slower."""
    taps, positions, steps = conv_isa_geometry(isa, c, w_shape, attrs, out_shape)
    return int(_rank_tiles(isa, int(w_shape[0]), positions, steps, taps=taps, wide_epilogue=wide_epilogue)[0][0])


def conv_w_packed_shape(isa: Isa, c: int, w_shape: tuple, block: int) -> tuple[int, ...]:
    """conv_isa's stored weights: [ceil(O/B), ceil(C/G), KH, KW, B, G] (B = ``block``), or with
    width taps in the group (``conv_isa_taps``) [ceil(O/B), ceil(C*KW/G), KH, B, G] (KH = 1 for
    1-D convs); zero in the padded channels and group slots. Channels of a register tile beyond
    the stored ones read the last stored channel (their outputs are dropped)."""
    G = isa.group
    oc = int(w_shape[0])
    ob = -(-oc // block)
    kh, kw = (1, int(w_shape[2])) if len(w_shape) == 3 else (int(w_shape[2]), int(w_shape[3]))
    if conv_isa_taps(c, kw, isa):
        return (ob, -(-(c * kw) // G), kh, block, G)
    return (ob, -(-c // G), kh, kw, block, G)


def pack_conv_weights(w: np.ndarray, isa: Isa, taps: bool, block: int) -> np.ndarray:
    """The stored layout of ``conv_w_packed_shape`` from the [O, C, KH, KW] (or [O, C, KW])
    weights: ``wpk[o // B, cg, kh, kw, o % B, g] = w[o, cg*G + g, kh, kw]`` (the per-call ``wpk``
    stage's values, channels in blocks of B); ``taps``: slot t = c * KW + kw of group t // G,
    ``wpk[o // B, t // G, kh, o % B, t % G] = w[o, t // KW, kh, t % KW]``."""
    G, B = isa.group, block
    w4 = w[:, :, None, :] if w.ndim == 3 else w
    o, c, kh, kw = w4.shape
    ob = -(-o // B)
    if taps:
        t = np.ascontiguousarray(w4.transpose(0, 2, 1, 3)).reshape(o, kh, c * kw)
        c4 = -(-(c * kw) // G)
        p = np.zeros((ob * B, kh, c4 * G), w.dtype)
        p[:o, :, :c * kw] = t
        return np.ascontiguousarray(p.reshape(ob, B, kh, c4, G).transpose(0, 3, 2, 1, 4))
    c4 = -(-c // G)
    p = np.zeros((ob * B, c4 * G, kh, kw), w.dtype)
    p[:o, :c] = w4
    return np.ascontiguousarray(p.reshape(ob, B, c4, G, kh, kw).transpose(0, 2, 4, 5, 1, 3))


def dense_w_packed_shape(isa: Isa, n: int, k: int) -> tuple[int, ...]:
    """dense_isa's packed weights [ceil(N/L), ceil(K/G), L, G] (zero padded)."""
    L, G = isa.lanes, isa.group
    return (-(-n // L), -(-k // G), L, G)


def pack_dense_weights(w: np.ndarray, isa: Isa) -> np.ndarray:
    """numpy form of dense_isa's ``wp`` stage: wp[a, b, c, d] = w[a*L + c, b*G + d], zero outside."""
    L, G = isa.lanes, isa.group
    n, k = w.shape
    npad, kp = _ceil_to(n, L), _ceil_to(k, G)
    p = np.zeros((npad, kp), w.dtype)
    p[:n, :k] = w
    return np.ascontiguousarray(p.reshape(npad // L, L, kp // G, G).transpose(0, 2, 1, 3))


# -- dense -----------------------------------------------------------------------------------------
def dense_isa(isa: Isa, m: int, n: int, k: int, x: te.Tensor, w: te.Tensor, epilogue: Callable,
              w_packed: bool = False):
    """``w_packed``: ``w`` is already [ceil(N/L), ceil(K/G), L, G] (``pack_dense_weights``, stored
    so in the artifact): read in place, no per-call packing."""
    L, G = isa.lanes, isa.group
    kp = _ceil_to(k, G)
    npad = _ceil_to(n, L)
    nvec = npad // L
    # (rows, vector columns) of the register tile: the default first, then the other exact fits
    tiles = []
    for mr_ in (4, 2, 1):
        if m % mr_:
            continue
        for jt_ in range(min(max(1, isa.max_acc // mr_), 8), 0, -1):
            if nvec % jt_ == 0 and (mr_ * jt_ <= isa.max_acc):
                tiles.append((mr_, jt_))
    first = next(v for v in (4, 2, 1) if m % v == 0)
    jt0 = next(v for v in range(min(max(1, isa.max_acc // first), 4), 0, -1) if nvec % v == 0)
    tiles.remove((first, jt0))
    mr, jt = tunable("tile", [(first, jt0)] + tiles)
    if kp != k:
        xk = te.compute((m, kp), lambda i, c: tir.if_then_else(c < k, x[i, tir.min(c, k - 1)],
                                                              tir.const(0, x.dtype)), name="xk")
    else:
        xk = x

    def wval(a, b, c, d):
        row, col = a * L + c, b * G + d
        ok = tir.all(row < n, col < k) if (npad != n or kp != k) else None
        v = cast(w[tir.min(row, n - 1), tir.min(col, k - 1)], isa.w_dtype)
        return v if ok is None else tir.if_then_else(ok, v, tir.const(0, isa.w_dtype))
    wp = w if w_packed else te.compute((npad // L, kp // G, L, G), wval, name="wp")
    rk = te.reduce_axis((0, kp), name="rk")
    acc = te.compute((m, npad), lambda i, j: te.sum(cast(xk[i, rk], "int32") * cast(wp[j // L, rk // G, j % L, rk % G],
                                                                                    "int32"), axis=rk), name="acc")
    out = te.compute((m, n), lambda i, j: epilogue(acc[i, j], i, j), name="out")

    def schedule(sch, spec) -> None:
        b = sch.get_sblock("acc")
        i, j, kk = sch.get_loops(b)
        io, ii = sch.split(i, [None, mr])
        jo, jt_, ji = sch.split(j, [None, jt, L])
        ko, ki = sch.split(kk, [None, G])
        # the weight panel of one column tile (K*jt*L bytes) stays in cache across the row tiles
        sch.reorder(jo, io, ko, ii, jt_, ji, ki)
        b_out = sch.get_sblock("out")
        sch.reverse_compute_at(b_out, io)
        ol = sch.get_loops(b_out)
        if n % L == 0:
            _, v = sch.split(ol[-1], [None, L])
            sch.vectorize(v)
        par = m * n * k >= PARALLEL_MIN_MACS and (m // mr) * (nvec // jt) >= 2
        if par:
            sch.parallel(sch.fuse(jo, io))
        sch.decompose_reduction(b, ko)
        sch.tensorize(ji, isa.oc)
        sch.unroll(jt_)
        sch.unroll(ii)
        if not w_packed:
            pl = sch.get_loops(sch.get_sblock("wp"))
            sch.vectorize(pl[-1])
            if n * k >= (1 << 16):
                sch.parallel(pl[0])
        if kp != k:
            xl = sch.get_loops(sch.get_sblock("xk"))
            if m >= 2:
                sch.parallel(xl[0]) if m * k >= (1 << 16) else None

    return out, schedule


def matmul_isa(isa: Isa, batch: tuple, m: int, n: int, k: int, a_fn: Callable, b_fn: Callable, za: int, zb: int,
               epilogue: Callable):
    """qmatmul (activation x activation) on AVX2's vpmaddwd with int16 on both sides
    (``quant_isa.AVX2_OC16``; ``isa`` must be the AVX2 one): per batch index,
    ``acc[i, j] = sum_k (a[i, k] - za) * (b[k, j] - zb)``, both differences in [-255, 255] (exact in
    int16; 2 x 255 x 255 fits an int32 lane), ``a - za`` copied per call into [M, K] int16 (K
    zero-padded to pairs) and ``b - zb`` packed into [N/8, K/2, 8, 2] int16 (zero padded). The
    register tile is mr rows x jt vectors of 8 outputs, as dense_isa. ``a_fn(bi, i, kk)`` /
    ``b_fn(bi, kk, j)`` read the operands (bi: the batch indices); ``epilogue(acc, i, j)``.
    Returns (out, schedule)."""
    from .quant_isa import AVX2_OC16
    L, G = isa.lanes, isa.group
    kp = _ceil_to(k, G)
    npad = _ceil_to(n, L)
    nvec = npad // L
    nb = len(batch)
    mr = next(v for v in (4, 2, 1) if m % v == 0)
    jt = next(v for v in range(min(max(1, isa.max_acc // mr), 4), 0, -1) if nvec % v == 0)
    zac, zbc = tir.const(za, "int32"), tir.const(zb, "int32")
    xk = te.compute((*batch, m, kp), lambda *i: tir.if_then_else(
        i[-1] < k, cast(cast(a_fn(list(i[:nb]), i[-2], tir.min(i[-1], k - 1)), "int32") - zac, "int16"),
        tir.const(0, "int16")), name="xk")

    def wval(*i):
        bi, (a, b, c, d) = list(i[:nb]), i[nb:]
        row, col = a * L + c, b * G + d
        v = cast(cast(b_fn(bi, tir.min(col, k - 1), tir.min(row, n - 1)), "int32") - zbc, "int16")
        ok = tir.all(row < n, col < k) if (npad != n or kp != k) else None
        return v if ok is None else tir.if_then_else(ok, v, tir.const(0, "int16"))
    wp = te.compute((*batch, npad // L, kp // G, L, G), wval, name="wp")
    rk = te.reduce_axis((0, kp), name="rk")
    acc = te.compute((*batch, m, npad), lambda *i: te.sum(
        cast(xk[(*i[:nb], i[nb], rk)], "int32") * cast(wp[(*i[:nb], i[nb + 1] // L, rk // G, i[nb + 1] % L, rk % G)],
                                                       "int32"), axis=rk), name="acc")
    out = te.compute((*batch, m, n), lambda *i: epilogue(acc[i], i[nb], i[nb + 1]), name="out")

    def schedule(sch, spec) -> None:
        b = sch.get_sblock("acc")
        loops = sch.get_loops(b)
        bl, (i, j, kk) = loops[:nb], loops[nb:]
        io, ii = sch.split(i, [None, mr])
        jo, jt_, ji = sch.split(j, [None, jt, L])
        ko, ki = sch.split(kk, [None, G])
        sch.reorder(*bl, jo, io, ko, ii, jt_, ji, ki)
        b_out = sch.get_sblock("out")
        sch.reverse_compute_at(b_out, io)
        ol = sch.get_loops(b_out)
        if n % L == 0:
            _, v = sch.split(ol[-1], [None, L])
            sch.vectorize(v)
        total = 1
        for d in batch:
            total *= d
        if nb and total >= 2 and total * m * n * k >= PARALLEL_MIN_MACS:
            sch.parallel(sch.fuse(*bl) if nb > 1 else bl[0])
        sch.decompose_reduction(b, ko)
        sch.tensorize(ji, AVX2_OC16)
        sch.unroll(jt_)
        sch.unroll(ii)
        for name in ("wp", "xk"):
            pl = sch.get_loops(sch.get_sblock(name))
            sch.vectorize(pl[-1])

    return out, schedule


# dense_gemv_isa below this many rows, the packed dense_isa from it. Measured on Zen 4 (one thread,
# 1x..16x 1024->1024 and 8192->64): the per-call weight packing costs more than the GEMV saves
# up to 8 rows on VNNI (8x8192->64: 28 us vs 105 us; 8x1024->1024: a tie), and the AVX2 GEMV
# beats the portable schedule that served 4..15 rows there (12x1024->1024: 271 us vs 764 us)
# SDOT (aarch64 +dotprod): not measured on hardware; the same bound as VNNI (beyond it the
# portable schedules, as before)
GEMV_MAX_ROWS = {"vnni": 9, "avx2": 16, "sdot": 9}
GEMV_OUTPUTS = 4         # outputs per step of dense_gemv_isa (one activation block load serves them)


def dense_gemv_fits(isa: Isa | None, m: int, k: int) -> bool:
    """The unpacked GEMV: an ISA with a ``dot`` intrinsic (VNNI, AVX2, SDOT), fewer than
    GEMV_MAX_ROWS[isa] rows, at least one whole block of L*G reduction elements."""
    return (isa is not None and bool(isa.dot) and m < GEMV_MAX_ROWS.get(isa.name, 0)
            and k >= isa.lanes * isa.group)


def dense_gemv_isa(isa: Isa, m: int, n: int, k: int, x: te.Tensor, w: te.Tensor, epilogue: Callable):
    """qdense with few rows on the vector x vector ``dot`` intrinsic, weights in their own [N, K]
    layout (nothing packed per call). Per output (i, j): L int32 lanes accumulate ``dot`` over the
    K // (L*G) whole blocks of B = L*G bytes (x[i, kb:kb+B] as isa.x_dtype, w[j, kb:kb+B] as int8),
    then the lanes are summed, the K % B tail (fewer than B products) is added as a scalar loop,
    then the epilogue. A step does ``nr`` outputs x all m rows (each weight block is loaded once
    for the m rows, each activation block once for the nr outputs). Returns (out, schedule)."""
    L, G = isa.lanes, isa.group
    blk = L * G
    kb = k // blk
    k0 = kb * blk
    tail = k - k0
    # registers: m*nr accumulators, m activation and nr weight vectors (AVX2 widens both into
    # registers; VNNI reads the weights from memory) within 16 ymm (AVX2) or 32 zmm, one spare
    # (SDOT: 32 NEON registers)
    regs = 32 if isa.name in ("vnni", "sdot") else 16
    top = max(v for v in range(1, max(1, min(GEMV_OUTPUTS, n)) + 1) if v == 1 or m * v + m + v < regs)
    nr = next(v for v in range(top, 0, -1) if n % v == 0)
    if nr < max(3, top - 1):
        nr = top             # a ragged last step (clamped rows) beats steps of 1 or 2 outputs
    npad = _ceil_to(n, nr)
    jc = (lambda j: tir.min(j, n - 1)) if npad != n else (lambda j: j)
    rb = te.reduce_axis((0, kb), name="rb")
    rg = te.reduce_axis((0, G), name="rg")
    part = te.compute((m, npad, L), lambda i, j, l: te.sum(
        cast(x[i, rb * blk + l * G + rg], "int32") * cast(w[jc(j), rb * blk + l * G + rg], "int32"), axis=[rb, rg]),
        name="part")
    rl = te.reduce_axis((0, L), name="rl")
    lanes = te.compute((m, npad), lambda i, j: te.sum(part[i, j, rl], axis=rl), name="lanes")
    if tail:
        rt = te.reduce_axis((0, tail), name="rt")
        tsum = te.compute((m, npad), lambda i, j: te.sum(
            cast(x[i, k0 + rt], "int32") * cast(w[jc(j), k0 + rt], "int32"), axis=rt), name="tail")
        out = te.compute((m, n), lambda i, j: epilogue(lanes[i, j] + tsum[i, j], i, j), name="out")
    else:
        out = te.compute((m, n), lambda i, j: epilogue(lanes[i, j], i, j), name="out")

    def schedule(sch, spec) -> None:
        b_out = sch.get_sblock("out")
        oi, oj = sch.get_loops(b_out)
        # steps of nr outputs for all rows: [j / nr, i, j % nr]
        ojo, oji = sch.split(oj, [None, nr])
        sch.reorder(ojo, oi, oji)
        if m * n * k >= PARALLEL_MIN_MACS and npad // nr >= 2:
            sch.parallel(ojo)
        for name in (("tail",) if tail else ()) + ("lanes", "part"):
            sch.compute_at(sch.get_sblock(name), ojo, preserve_unit_loops=True)
        b_part = sch.get_sblock("part")
        pi, pj, pl, pb, pg = sch.get_loops(b_part)[-5:]
        sch.reorder(pb, pi, pj, pl, pg)
        sch.decompose_reduction(b_part, pb)
        sch.tensorize(pl, isa.dot)
        sch.unroll(pj)
        sch.unroll(pi)

    return out, schedule


# -- conv ------------------------------------------------------------------------------------------
# the flat 1x1 input copy and the in-place weights of one-channel width-tap convs (conv_isa);
# False restores the row-split copy / the packed weights (same bits; for measurements)
FLAT_PACK = True
DIRECT_W = True
BIAS_INIT = True


def conv_isa_fits(x_dtype: str, groups: int, rank: int) -> bool:
    return x_dtype == "uint8" and groups == 1 and rank in (1, 2)


def _rank_tiles(isa: Isa, oc: int, positions: int, steps: int, taps: bool = False,
                wide_epilogue: bool = False) -> list[tuple[int, int]]:
    """Register tiles (mr, nw), least estimated cycles first: tiles x steps x (max(dot instructions
    / 2, loads) + 1) + stores. The first is the default; ``edgec tune`` measures the others.
    Width-tap layouts whose positions fit 8 vectors (7..8) with few steps put (1, all vectors)
    first: one channel per tile, one position tile (measured on Zen 4, DS-CNN's first conv, 125
    positions x 10 steps: 2.6 us against 2.9 us for the cost model's (4, 2)). ``wide_epilogue``
    (the requantization runs in int64 lanes, no multiply-high form; or a fused hard swish)
    with at most 8 steps on VNNI puts (1, 6) first where that pads
    the positions by at most 12 %."""
    L = isa.lanes
    nvec = -(-positions // L)
    first = None
    if taps and steps <= 16 and 6 < nvec <= 8 and nvec <= isa.max_acc:
        first = (1, nvec)
    elif (wide_epilogue and not taps and L == 16 and steps <= 8
          and _ceil_to(positions, 6 * L) <= 1.12 * positions):
        # few reduction steps (C <= 32 on a 1x1) and the int64-lane requantization: it dominates
        # the tile and holds more per-channel constants, so one channel x 6 vectors beats the
        # cost model's choice (measured on Zen 4 in the PP-OCR model: the 32->200 pointwise
        # convs with the fused hard swish 3-7 % faster in two runs, 16->88 / 16->104 0-8 %).
        # With the multiply-high form (MobileNetV2's ReLU6 expand convs) it did not help:
        # 24->144 on 56x56 9 % slower, 16->96 on 112x112 unchanged. With a fused hard swish in
        # 32-bit lanes (the signed multiply-high, odd multipliers) it does: PP-OCR's 32->200
        # 15.2 -> 13.3 us, 16->88 7.3-7.5 -> 7.2-7.3 us
        first = (1, 6)
    ranked = _cost_ranked(isa, oc, positions, steps)
    if first is None:
        return ranked
    return [first] + [t for t in ranked if t != first]


def _cost_ranked(isa: Isa, oc: int, positions: int, steps: int) -> list[tuple[int, int]]:
    """``_rank_tiles``' cost model alone."""
    L = isa.lanes
    cands = []
    for nw in range(1, 7):
        if nw > 1 and (nw - 1) * L >= positions:
            break
        pt = -(-positions // (nw * L))
        for mr in range(1, 17):
            if mr * nw > isa.max_acc:
                break
            if mr > 1 and mr - 1 >= oc:
                break
            ot = -(-oc // mr)
            cost = ot * pt * (steps * (max(mr * nw / 2.0, (nw + mr) / 2.0) + 1.0) + mr * nw * 4)
            cands.append((cost, len(cands), (mr, nw)))
    # few reduction steps per output vector: the requantization right after the reduction
    # dominates and needs registers (multiplier, shift, rounding constants per channel) beside
    # the accumulators; larger tiles then spill (measured on Zen 4: 1x1 convs with 16..64 input
    # channels 1.1-1.3x faster with 4-8 accumulators than with 16-20)
    cap = 6 if steps <= 4 else 8 if steps <= 16 else isa.max_acc
    # the accumulators of a position tile are a local buffer: from 1 KiB on, TVM moves it off
    # the stack into a workspace allocation per tile (then no registers: 160->960 1x1 on 7x7
    # 13x slower)
    cap = min(cap, (1024 - 1) // (4 * L))
    cands.sort(key=lambda c: (c[2][0] * c[2][1] > cap, round(c[0], 6), c[1]))
    return [c[2] for c in cands] or [(1, 1)]


def _choose_tile(isa: Isa, oc: int, positions: int, steps: int, top: int = 8, taps: bool = False,
                 wide_epilogue: bool = False) -> tuple[int, int]:
    """The register tile: the cost model's best, or the measured choice of ``edgec tune`` among the
    ``top`` best (edgec.backend.tuning)."""
    return tunable("tile", _rank_tiles(isa, oc, positions, steps, taps, wide_epilogue)[:top])


def conv_isa_taps(c: int, kw: int, isa: Isa) -> bool:
    """Group G consecutive (channel, width tap) pairs per dot instruction instead of G channels:
    when the channels are fewer than G (a first layer on 1 or 2 input channels), and that cuts the
    dot instructions per output vector at least 1.5x (DS-CNN's 1 channel x 10x4 kernel: 4x)."""
    G = isa.group
    chan = -(-c // G) * kw
    taps = -(-(c * kw) // G)
    return c < G and kw > 1 and 2 * chan >= 3 * taps


def _bias_init(sch, b_init, bias: te.Tensor, acc_o: Callable) -> None:
    """The init block of conv_isa's reduction (``acc[nn, o, p] = 0`` from decompose_reduction; TE's
    ``te.sum(init=...)`` does not survive create_prim_func) rewritten to ``acc[nn, o, p] =
    bias[acc_o(o)]``, declared to read the bias."""
    blk = sch.get(b_init)
    st = blk.body
    if not isinstance(st, tir.BufferStore) or len(st.indices) != 3:
        raise ValueError("conv_isa: unexpected init block")
    func = sch.mod["main"]
    # (TVM 0.27: PrimFunc parameters are the Buffers themselves)
    bbuf = next(b for b in func.params if isinstance(b, tir.Buffer) and b.name == bias.op.name)
    v_o = st.indices[1]
    body = tir.BufferStore(st.buffer, tir.BufferLoad(bbuf, [acc_o(v_o)]), st.indices)
    reads = [tir.BufferRegion(bbuf, [tvm.ir.Range(0, int(bbuf.shape[0]))])]
    new = tvm.s_tir.SBlock(blk.iter_vars, reads, blk.writes, blk.name_hint, body, blk.init,
                           blk.alloc_buffers, blk.match_buffers, blk.annotations)
    sch.state.replace(sch.get_sref(b_init), new, {blk: new})


def conv_isa(isa: Isa, x: te.Tensor, w: te.Tensor, bias: te.Tensor | None, attrs, out_shape,
             requant: Callable, hi32=None, w_shape: tuple | None = None, long_epilogue: bool | None = None):
    """``requant(acc, oc)`` -> output value, ``acc`` the int32 accumulator with the bias already
    added (int32). ``hi32 = (m_table, finish, low_clamp, pre)``: the requantization as
    ``quant.requant_hi32`` in three steps, |acc << pre| as uint32 (``pre`` > 0: the node's
    ``acc_bound`` allows it, quant.py ``_acc_pre_shift``), its multiply-high by the channel's
    multiplier (``m_table[oc]``, int32) on the ``quant_isa.mulhi_intrin`` tensor intrinsic, then
    ``finish(hi, acc < 0, oc)``; ``low_clamp``: negative accumulators all clamp to qmin, then
    max(acc, 0) replaces |acc| and ``finish`` gets None for the sign. ``hi32[4]`` (optional,
    "signed"): no accumulator lands on a rounding tie (quant.py ``_hi32_signed_ok``), the
    multiply-high is the signed one of acc << pre itself (``quant_isa.mulhi_intrin(signed=True)``) and
    ``finish`` gets None for the sign. ``w_shape``: ``w`` is
    already packed (``pack_conv_weights``, stored so in the artifact) and this is its original
    shape; the kernel reads it in place (channels of the last tile beyond O read channel O - 1,
    their outputs are dropped). ``long_epilogue``: ``_rank_tiles``' ``wide_epilogue`` (None: no
    ``hi32``; the caller's pre-packing must rank the tiles the same way). Returns (out, schedule)."""
    L, G = isa.lanes, isa.group
    r = len(x.shape) - 2
    n, c = int(x.shape[0]), int(x.shape[1])
    packed_w = w_shape is not None
    wsh = tuple(int(d) for d in (w_shape if packed_w else w.shape))
    oc = wsh[0]
    if r == 1:
        h, wd = 1, int(x.shape[2])
        kh, kw = 1, wsh[2]
        sh, sw = 1, int(attrs["strides"][0])
        dh, dw = 1, int(attrs["dilations"][0])
        pt, pl = 0, int(attrs["pads"][0])
        oh, ow = 1, int(out_shape[2])
    else:
        h, wd = int(x.shape[2]), int(x.shape[3])
        kh, kw = wsh[2], wsh[3]
        sh, sw = (int(v) for v in attrs["strides"])
        dh, dw = (int(v) for v in attrs["dilations"])
        pt, pl = int(attrs["pads"][0]), int(attrs["pads"][1])
        oh, ow = int(out_shape[2]), int(out_shape[3])
    zp = int(attrs["x_zero_point"])
    taps = conv_isa_taps(c, kw, isa)
    # planes: phase of a tap along an axis = (t*d) % s, a multiple of gcd(d, s); plane index
    # ((t*d) % s) // gcd: an expression of the tap the tensorized region analysis sees as a point
    gh, gw = math.gcd(dh, sh), math.gcd(dw, sw)
    nph = max(((t * dh) % sh) // gh for t in range(kh)) + 1
    if taps:
        # groups of G (channel, width tap) pairs t = c * KW + kw: the width taps live in the group,
        # the planes are rows of OW positions (no halo columns), one plane per row phase
        npw = 1
        c4 = -(-(c * kw) // G)
        wq = ow
        steps = c4 * kh
    else:
        npw = max(((t * dw) % sw) // gw for t in range(kw)) + 1
        c4 = -(-c // G)
        wq = ow + ((kw - 1) * dw) // sw
        steps = c4 * kh * kw
    positions = oh * wq
    wide = (hi32 is None) if long_epilogue is None else long_epilogue
    mr, nw = _choose_tile(isa, oc, positions, steps, taps=taps, wide_epilogue=wide)
    ocp = _ceil_to(oc, mr)
    pp = _ceil_to(positions, nw * L)
    maxoff = (((kh - 1) * dh) // sh) * wq + (0 if taps else ((kw - 1) * dw) // sw)
    fh = -(-(pp + maxoff) // wq)

    # the flat copy (1x1, stride 1, no padding, whole channel groups; FLAT_PACK switches it off)
    flat = (FLAT_PACK and not taps and kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0
            and c % G == 0 and oh == h and ow == wd)

    def inside(row, col):
        return [row >= 0, row < h, col >= 0, col < wd]

    if taps:
        def xval(nn, cg, ih, f, g):
            qh, qw = f // wq, f % wq
            t = cg * G + g
            ch, tw = t // kw, t % kw
            row = qh * sh + ih * gh - pt
            col = qw * sw + tw * dw - pl
            conds = inside(row, col) + ([t < c * kw] if c4 * G != c * kw else [])
            src = (nn, tir.min(ch, c - 1)) + ((row, col) if r == 2 else (col,))
            return tir.if_then_else(tir.all(*conds), x[src], tir.const(zp, "uint8"))
        xq = te.compute((n, c4, nph, fh * wq, G), xval, name="xq")
    elif flat:
        # 1x1, stride 1, no padding: position f is input pixel f of the channel (rows of W), the
        # copy is a G-way byte interleave of G channel rows, one loop over f that LLVM
        # vectorizes (f // W * W + f % W folds to f); positions from H*W on read the zero point
        hw = h * wd

        def xval(nn, cg, ih, iw, f, g):
            ch = cg * G + g
            src = (nn, ch) + ((f // wd, f % wd) if r == 2 else (f,))
            return tir.if_then_else(f < hw, x[src], tir.const(zp, "uint8"))
        xq = te.compute((n, c4, 1, 1, pp, G), xval, name="xq")
    else:
        def xval(nn, cg, ih, iw, f, g):
            qh, qw = f // wq, f % wq
            row = qh * sh + ih * gh - pt
            col = qw * sw + iw * gw - pl
            ch = cg * G + g
            conds = inside(row, col) + ([ch < c] if c % G else [])
            src = (nn, tir.min(ch, c - 1)) + ((row, col) if r == 2 else (col,))
            return tir.if_then_else(tir.all(*conds), x[src], tir.const(zp, "uint8"))
        xq = te.compute((n, c4, nph, npw, fh * wq, G), xval, name="xq")

    # the weights of a 1x1 conv are already in the packed layout when C is a multiple of G (G
    # consecutive input channels of one output channel are G consecutive bytes): the per-call
    # packing is then a vectorized copy (int8; AVX2's int16 weights: a widening copy)
    ident_w = not taps and kh == 1 and kw == 1 and c % 16 == 0
    # the weights read in place, no packing at all (int8 weights, no padded output channels):
    # one input channel whose KW width taps are exactly one group ([O, 1, KH, G] is the packed
    # layout: DS-CNN's first conv; 2560 bytes moved one by one per call before). (A 1x1 conv's
    # w[o, cg*G + g] region does not match the tensor intrinsic's buffer; it keeps its vector copy)
    direct_w = (not packed_w and DIRECT_W and isa.w_dtype == str(w.dtype) and ocp == oc
                and taps and c == 1 and kw == G)
    blk = int(w.shape[-2]) if packed_w else 1
    if packed_w and tuple(int(d) for d in w.shape) != conv_w_packed_shape(isa, c, wsh, blk):
        raise ValueError(f"conv_isa: packed weights {list(w.shape)} are not the layout of {list(wsh)}")
    if conv_isa_geometry(isa, c, wsh, attrs, out_shape) != (taps, positions, steps):
        raise ValueError("conv_isa: conv_isa_geometry disagrees with the kernel's geometry")
    # stored channels: whole blocks; a tile beyond them (a tuned mr that B does not divide) is clamped
    stored = _ceil_to(oc, blk)
    w_o = (lambda o: tir.min(o, stored - 1)) if ocp > stored else (lambda o: o)

    def wsrc(o, rc, rh, rw, rg):
        """the packed weight [o, group rc, tap (rh, rw), rg] (rw unused with width taps)"""
        if packed_w:
            ob, oi = (w_o(o), 0) if blk == 1 else (w_o(o) // blk, w_o(o) % blk)
            return w[ob, rc, rh, oi, rg] if taps else w[ob, rc, rh, rw, oi, rg]
        if not direct_w:
            return wpk[o, rc, rh, rg] if taps else wpk[o, rc, rh, rw, rg]
        return w[(o, 0) + ((rh, rg) if r == 2 else (rg,))]
    if taps and not packed_w:
        def wval(o, cg, a, g):
            t = cg * G + g
            conds = ([o < oc] if ocp != oc else []) + ([t < c * kw] if c4 * G != c * kw else [])
            tc = tir.min(t, c * kw - 1)
            idx = (tir.min(o, oc - 1), tc // kw) + ((a, tc % kw) if r == 2 else (tc % kw,))
            v = cast(w[idx], isa.w_dtype)
            return tir.if_then_else(tir.all(*conds), v, tir.const(0, isa.w_dtype)) if conds else v
        wpk = te.compute((ocp, c4, kh, G), wval, name="wpk")
    elif not packed_w:
        def wval(o, cg, a, b, g):
            ch = cg * G + g
            conds = ([o < oc] if ocp != oc else []) + ([ch < c] if c % G else [])
            idx = (tir.min(o, oc - 1), tir.min(ch, c - 1)) + ((a, b) if r == 2 else (b,))
            v = cast(w[idx], isa.w_dtype)
            return tir.if_then_else(tir.all(*conds), v, tir.const(0, isa.w_dtype)) if conds else v
        wpk = te.compute((ocp, c4, kh, kw, G), wval, name="wpk")

    rc = te.reduce_axis((0, c4), name="rc")
    rh = te.reduce_axis((0, kh), name="rh")
    rg = te.reduce_axis((0, G), name="rg")

    if taps:
        def acc_f(nn, o, p):
            xv = xq[nn, rc, ((rh * dh) % sh) // gh, p + ((rh * dh) // sh) * wq, rg]
            prod = cast(xv, "int32") * cast(wsrc(o, rc, rh, None, rg), "int32")
            return te.sum(prod, axis=[rc, rh, rg])
    else:
        rw = te.reduce_axis((0, kw), name="rw")

        def acc_f(nn, o, p):
            off = ((rh * dh) // sh) * wq + (rw * dw) // sw
            xv = xq[nn, rc, ((rh * dh) % sh) // gh, ((rw * dw) % sw) // gw, p + off, rg]
            prod = cast(xv, "int32") * cast(wsrc(o, rc, rh, rw, rg), "int32")
            return te.sum(prod, axis=[rc, rh, rw, rg])
    acc = te.compute((n, ocp, pp), acc_f, name="acc")
    acc_o = (lambda o: tir.min(o, oc - 1)) if ocp != oc else (lambda o: o)
    # BIAS_INIT: the bias is the accumulators' initial value (the schedule rewrites the init
    # block that decompose_reduction makes, ``_bias_init``): the reference's acc + bias fits int32
    # (it raises otherwise) and the dot instructions wrap (no saturation), so the int32 sum is
    # exact in any order; one broadcast per channel and tile instead of a vpaddd per vector.
    # Otherwise acc + bias in int32 after the reduction (the same exact wrapping sum); one vpaddd
    # instead of a second 64-bit product. Added as uint32: LLVM would widen a signed
    # no-overflow sum into two int64 operands, and the product would need a full 64-bit multiply
    init_b = BIAS_INIT and bias is not None
    hi32_signed = hi32 is not None and len(hi32) > 4 and hi32[4] == "signed"

    def accb(nn, o, p):
        if bias is None or init_b:
            return acc[nn, o, p]
        return tir.reinterpret("int32", tir.reinterpret("uint32", acc[nn, o, p])
                               + tir.reinterpret("uint32", bias[acc_o(o)]))
    if hi32 is None:
        req = te.compute((n, ocp, pp), lambda nn, o, p: requant(accb(nn, o, p), acc_o(o)), name="req")
    else:
        mt, finish, low_clamp, pre = hi32[:4]
        from .quant import abs_u32

        def accs(nn, o, p):     # acc * 2^pre: |acc| * 2^pre < 2^31 (acc_bound), the same bits after
            a = accb(nn, o, p)
            return tir.shift_left(a, tir.const(pre, "int32")) if pre else a
        if hi32_signed:
            # round half up = the reference's half away from zero (no ties): the signed product
            # of acc itself, no |acc| and no sign to put back
            ab = te.compute((n, ocp, pp), lambda nn, o, p: accs(nn, o, p), name="absacc")
        elif low_clamp:
            # every negative acc ends at qmin (qmin >= the zero point, e.g. a fused ReLU): the
            # multiply-high of max(acc, 0) gives 0 there, and no sign is put back
            ab = te.compute((n, ocp, pp), lambda nn, o, p: tir.reinterpret(
                "uint32", tir.max(accs(nn, o, p), tir.const(0, "int32"))), name="absacc")
        else:
            ab = te.compute((n, ocp, pp), lambda nn, o, p: abs_u32(accs(nn, o, p)), name="absacc")
        if hi32_signed:
            hi = te.compute((n, ocp, pp), lambda nn, o, p: cast(tir.shift_right(
                cast(mt[acc_o(o)], "int64") * cast(ab[nn, o, p], "int64"), tir.const(32, "int64")), "int32"),
                name="mulhi")
        else:
            hi = te.compute((n, ocp, pp), lambda nn, o, p: cast(tir.shift_right(
                cast(mt[acc_o(o)], "uint64") * cast(ab[nn, o, p], "uint64"), tir.const(32, "uint64")), "uint32"),
                name="mulhi")
        req = te.compute((n, ocp, pp), lambda nn, o, p: finish(
            hi[nn, o, p], None if low_clamp or hi32_signed else accb(nn, o, p) < tir.const(0, "int32"), acc_o(o)),
            name="req")

    def out_f(nn, o, *sp):
        p = sp[0] * wq + sp[1] if r == 2 else sp[0]
        # the never-taken branch makes the region this block reads [0, pp) for every channel
        # tile, so that compute_at gives req whole vectors of positions to tile
        return tir.if_then_else(p < 0, req[nn, o, pp - 1], req[nn, o, p])
    out = te.compute(tuple(int(d) for d in out_shape), out_f, name="out")
    macs = n * oc * oh * ow * c * kh * kw

    def schedule(sch, spec) -> None:
        b_x = sch.get_sblock("xq")
        if not flat:
            # the packed input row by row of the planes (the split removes the div/mod of f)
            sch.split(sch.get_loops(b_x)[-2], [None, wq])
        b_acc, b_req, b_out = sch.get_sblock("acc"), sch.get_sblock("req"), sch.get_sblock("out")
        ol = sch.get_loops(b_out)
        oo, _ = sch.split(ol[1], [None, mr])
        if macs >= PARALLEL_MIN_MACS and n * (ocp // mr) >= 2:
            oo = sch.fuse(ol[0], oo)
            sch.parallel(oo)
        # one channel tile: per tile of nw*L positions, the reduction into mr x nw accumulator
        # vectors (registers), then at once their requantization into bytes
        sch.compute_at(b_req, oo, preserve_unit_loops=True)
        rl = sch.get_loops(b_req)
        r_o, r_p = rl[-2], rl[-1]
        rpo, rpt, rpv = sch.split(r_p, [None, nw, L])
        sch.reorder(rpo, r_o, rpt, rpv)
        steps_hi = ("mulhi", "absacc") if hi32 is not None else ()
        for name in steps_hi:
            sch.compute_at(sch.get_sblock(name), rpo, preserve_unit_loops=True)
        sch.compute_at(b_acc, rpo, preserve_unit_loops=True)
        for name in steps_hi:
            bl = sch.get_loops(sch.get_sblock(name))
            _, t_, v_ = sch.split(bl[-1], [None, nw, L])
            if name == "mulhi":
                sch.tensorize(v_, mulhi_intrin(L, signed=hi32_signed))
            else:
                sch.vectorize(v_)
            sch.unroll(t_)
            sch.unroll(bl[-2])
        sch.vectorize(rpv)
        sch.unroll(rpt)
        sch.unroll(r_o)
        loops = sch.get_loops(b_acc)
        nred = 3 if taps else 4
        o_l, p_l = loops[-2 - nred], loops[-1 - nred]
        red = loops[-nred:]
        pt_, pv = sch.split(p_l, [nw, L])
        sch.reorder(*red[:-1], o_l, pt_, pv, red[-1])
        b_init = sch.decompose_reduction(b_acc, red[0])
        if init_b:
            _bias_init(sch, b_init, bias, acc_o)
        sch.tensorize(pv, isa.px)
        sch.unroll(pt_)
        sch.unroll(o_l)
        il = sch.get_loops(b_init)
        sch.vectorize(il[-1])
        sch.unroll(il[-2])
        sch.unroll(il[-3])
        if ow % L == 0:
            _, v = sch.split(sch.get_loops(b_out)[-1], [None, L])
            sch.vectorize(v)
        elif wq == ow and r == 2:
            # rows without halo: one contiguous run of OH*OW bytes per channel, which LLVM
            # vectorizes as one loop (OW alone is too short a loop)
            sch.fuse(*sch.get_loops(b_out)[-2:])
        # copies: the packed input row by row (LLVM vectorizes the interleave), the weights
        xl = sch.get_loops(b_x)
        sch.unroll(xl[-1])
        if flat and h * wd < pp:
            # positions [0, H*W) and [H*W, pp) as two loops: the condition folds in each, the
            # copy loop is a plain interleave (LLVM vectorizes it), the other fills pp - H*W
            # positions with the zero point
            sch.loop_partition(xl[-2], [h * wd])
        if n * c4 >= 2 and n * c * fh * wq >= (1 << 16) and macs >= PARALLEL_MIN_MACS:
            sch.parallel(sch.fuse(xl[0], xl[1]))
        if direct_w or packed_w:
            return
        wl = sch.get_loops(sch.get_sblock("wpk"))
        if ident_w:
            # per output channel one contiguous run of C weights (fusing the channel loop too
            # would leave a division by C in the index: gathers unless C is a power of two)
            _, wv = sch.split(sch.fuse(*wl[1:]), [None, 64 if c % 64 == 0 else 16])
            sch.vectorize(wv)
        else:
            sch.unroll(wl[-1])

    return out, schedule
