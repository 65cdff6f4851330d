"""int8 qconv / qdense on the x86 integer dot-product instructions (quant_isa.py).

Both are exact int32 accumulations followed by the epilogue that quant.py gives (bias,
requantization), so they are bit-exact with edgec/ops/quant.py like the portable schedules.

qdense (``dense_isa``): ``acc[m, n] = sum_k x[m, k] w[n, k]`` with the weights packed into
[ceil(N/L), ceil(K/G), L, G] (zero padded): one ``oc`` intrinsic computes L outputs x G k-steps
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
dropped: waste (KW-1)/Wq of the lanes for a stride-1 KxK conv, none for 1x1. Weights are packed
per call into [ceil(O/mr)*mr, C/G, KH, KW, G] (zero for padded channels). The register tile is
mr output channels x nw vectors of L positions; per step nw vector loads, mr broadcasts, mr*nw
dot instructions. The accumulators of one channel tile (mr x all positions) go to a workspace
buffer and the epilogue writes the NCHW output from it.
"""
from __future__ import annotations

import math
from typing import Callable

import tvm
from tvm import te

from ..tuning import tunable
from ._nn_sched import PARALLEL_MIN_MACS, cast
from .quant_isa import Isa

tir = tvm.tirx


def _ceil_to(v: int, m: int) -> int:
    return -(-v // m) * m


# -- dense -----------------------------------------------------------------------------------------
def dense_isa(isa: Isa, m: int, n: int, k: int, x: te.Tensor, w: te.Tensor, epilogue: Callable):
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
    wp = te.compute((npad // L, kp // G, L, G), wval, name="wp")
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
def conv_isa_fits(x_dtype: str, groups: int, rank: int) -> bool:
    return x_dtype == "uint8" and groups == 1 and rank in (1, 2)


def _rank_tiles(isa: Isa, oc: int, positions: int, steps: int) -> list[tuple[int, int]]:
    """Register tiles (mr, nw), least estimated cycles first: tiles x steps x (max(dot instructions
    / 2, loads) + 1) + stores. The first is the default; ``edgec tune`` measures the others."""
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
    cands.sort(key=lambda c: (round(c[0], 6), c[1]))
    return [c[2] for c in cands] or [(1, 1)]


def _choose_tile(isa: Isa, oc: int, positions: int, steps: int, top: int = 8) -> tuple[int, int]:
    """The register tile: the cost model's best, or the measured choice of ``edgec tune`` among the
    ``top`` best (edgec.backend.tuning)."""
    return tunable("tile", _rank_tiles(isa, oc, positions, steps)[:top])


def _flat_epilogue(acc: te.Tensor, epilogue: Callable, oc: int, wq: int, r: int, out_shape) -> te.Tensor:
    """The output of a conv accumulated on flattened positions ``acc[n, ocp, pp]`` (rows ``wq`` wide,
    channels padded to ``ocp``): the epilogue ("req") runs on whole vectors of positions, then the
    valid positions are copied into the NCHW output (bytes)."""
    n, ocp, pp = (int(d) for d in acc.shape)
    acc_o = lambda o: tir.min(o, oc - 1) if ocp != oc else o  # noqa: E731
    req = te.compute((n, ocp, pp), lambda nn, o, p: epilogue(acc[nn, o, p], nn, acc_o(o), None), name="req")

    def out_f(nn, o, *sp):
        p = sp[0] * wq + sp[1] if r == 2 else sp[0]
        # the never-taken branch makes the region this block reads [0, pp) for every channel
        # tile, so that compute_at gives req/acc whole vectors of positions to tile
        return tir.if_then_else(p < 0, req[nn, o, pp - 1], req[nn, o, p])
    return te.compute(tuple(int(d) for d in out_shape), out_f, name="out")


def conv_isa(isa: Isa, x: te.Tensor, w: te.Tensor, attrs, out_shape, epilogue: Callable):
    """``epilogue(acc, n, oc, [oh, ow])`` -> output value. Returns (out, schedule)."""
    L, G = isa.lanes, isa.group
    r = len(x.shape) - 2
    n, c = int(x.shape[0]), int(x.shape[1])
    oc = int(w.shape[0])
    if r == 1:
        h, wd = 1, int(x.shape[2])
        kh, kw = 1, int(w.shape[2])
        sh, sw = 1, int(attrs["strides"][0])
        dh, dw = 1, int(attrs["dilations"][0])
        pt, pl = 0, int(attrs["pads"][0])
        oh, ow = 1, int(out_shape[2])
    else:
        h, wd = int(x.shape[2]), int(x.shape[3])
        kh, kw = int(w.shape[2]), int(w.shape[3])
        sh, sw = (int(v) for v in attrs["strides"])
        dh, dw = (int(v) for v in attrs["dilations"])
        pt, pl = int(attrs["pads"][0]), int(attrs["pads"][1])
        oh, ow = int(out_shape[2]), int(out_shape[3])
    zp = int(attrs["x_zero_point"])
    c4 = -(-c // G)
    # planes: phase of a tap along an axis = (t*d) % s, a multiple of gcd(d, s); plane index
    # ((t*d) % s) // gcd: an expression of the tap the tensorized region analysis sees as a point
    gh, gw = math.gcd(dh, sh), math.gcd(dw, sw)
    nph = max(((t * dh) % sh) // gh for t in range(kh)) + 1
    npw = max(((t * dw) % sw) // gw for t in range(kw)) + 1
    wq = ow + ((kw - 1) * dw) // sw
    positions = oh * wq
    steps = c4 * kh * kw
    mr, nw = _choose_tile(isa, oc, positions, steps)
    ocp = _ceil_to(oc, mr)
    pp = _ceil_to(positions, nw * L)
    maxoff = (((kh - 1) * dh) // sh) * wq + ((kw - 1) * dw) // sw
    fh = -(-(pp + maxoff) // wq)

    def xval(nn, cg, ih, iw, f, g):
        qh, qw = f // wq, f % wq
        ph, pw = ih * gh, iw * gw
        row = qh * sh + ph - pt
        col = qw * sw + pw - pl
        ch = cg * G + g
        conds = [row >= 0, row < h, col >= 0, col < wd]
        if c % G:
            conds.append(ch < c)
        src = (nn, tir.min(ch, c - 1)) + ((row, col) if r == 2 else (col,))
        return tir.if_then_else(tir.all(*conds), x[src], tir.const(zp, "uint8"))
    xq5 = te.compute((n, c4, nph, npw, fh * wq, G), xval, name="xq")

    def wval(o, cg, a, b, g):
        ch = cg * G + g
        conds = []
        if ocp != oc:
            conds.append(o < oc)
        if c % G:
            conds.append(ch < c)
        idx = (tir.min(o, oc - 1), tir.min(ch, c - 1)) + ((a, b) if r == 2 else (b,))
        v = cast(w[idx], isa.w_dtype)
        return tir.if_then_else(tir.all(*conds), v, tir.const(0, isa.w_dtype)) if conds else v
    wq5 = te.compute((ocp, c4, kh, kw, G), wval, name="wpk")

    rc = te.reduce_axis((0, c4), name="rc")
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")
    rg = te.reduce_axis((0, G), name="rg")
    def acc_f(nn, o, p):
        off = ((rh * dh) // sh) * wq + (rw * dw) // sw
        f = p + off
        xv = xq5[nn, rc, ((rh * dh) % sh) // gh, ((rw * dw) % sw) // gw, f, rg]
        return te.sum(cast(xv, "int32") * cast(wq5[o, rc, rh, rw, rg], "int32"), axis=[rc, rh, rw, rg])
    acc = te.compute((n, ocp, pp), acc_f, name="acc")

    out = _flat_epilogue(acc, epilogue, oc, wq, r, out_shape)
    macs = n * oc * oh * ow * c * kh * kw

    def schedule(sch, spec) -> None:
        # the packed input, row by row of the planes (the split removes the div/mod of f)
        b_x = sch.get_sblock("xq")
        sch.split(sch.get_loops(b_x)[4], [None, wq])
        b_acc = sch.get_sblock("acc")
        b_req = sch.get_sblock("req")
        b_out = sch.get_sblock("out")
        ol = sch.get_loops(b_out)
        oo, _ = sch.split(ol[1], [None, mr])
        if macs >= PARALLEL_MIN_MACS and n * (ocp // mr) >= 2:
            oo = sch.fuse(ol[0], oo)
            sch.parallel(oo)
        sch.compute_at(b_req, oo, preserve_unit_loops=True)
        sch.compute_at(b_acc, oo, preserve_unit_loops=True)
        rl = sch.get_loops(b_req)
        _, rv = sch.split(rl[-1], [None, L])
        sch.vectorize(rv)
        loops = sch.get_loops(b_acc)
        o_l, p_l, c_l, h_l, w_l, g_l = loops[-6:]
        po, pt_, pv = sch.split(p_l, [None, nw, L])
        sch.reorder(po, c_l, h_l, w_l, o_l, pt_, pv, g_l)
        oi = o_l
        if ow % L == 0:
            _, v = sch.split(sch.get_loops(b_out)[-1], [None, L])
            sch.vectorize(v)
        sch.decompose_reduction(b_acc, c_l)
        sch.tensorize(pv, isa.px)
        sch.unroll(pt_)
        sch.unroll(oi)
        # copies: the packed input row by row (LLVM vectorizes the interleave), the weights
        xl = sch.get_loops(b_x)
        sch.unroll(xl[-1])
        if n * c4 >= 2 and n * c * fh * wq >= (1 << 16) and macs >= PARALLEL_MIN_MACS:
            sch.parallel(sch.fuse(xl[0], xl[1]))
        wl = sch.get_loops(sch.get_sblock("wpk"))
        sch.unroll(wl[-1])

    return out, schedule


# -- depthwise conv --------------------------------------------------------------------------------
def dwconv_isa_fits(isa: Isa, x_dtype: str, groups: int, c: int, oc: int, kernel, strides, dilations) -> bool:
    """Depthwise (one input channel per output channel), uint8, unit stride and dilation along
    the width (consecutive width taps are consecutive bytes), VNNI, kernel width >= 5. Measured
    on Zen 4: 5x5 200ch 2x96 1.2x faster than the portable int32 schedule; 3x3 (one vpdpbusd
    per row at 3/4 use, the 4x window copy not amortized) and AVX2 (2 taps per vpmaddwd) slower."""
    return (isa.name == "vnni" and x_dtype == "uint8" and groups == c == oc and len(kernel) in (1, 2)
            and int(kernel[-1]) >= 5 and int(strides[-1]) == 1 and int(dilations[-1]) == 1)


def dwconv_isa(isa: Isa, x: te.Tensor, w: te.Tensor, attrs, out_shape, epilogue: Callable):
    """Depthwise conv on the dot instructions: the reduction group is G consecutive *width taps*.

    Per channel, the input plane (rows of width ``Wq = OW + KW - 1``, flattened, one plane per
    row phase of the height stride as in ``conv_isa``) is copied into ``xp``, then into a sliding
    window ``xq[.., f, g] = xp[.., f + g]`` (G bytes per position), so that one dot instruction
    does G width taps of L output positions; weights [C, KH, ceil(KW/G), G] (zero past KW)."""
    L, G = isa.lanes, isa.group
    r = len(x.shape) - 2
    n, c = int(x.shape[0]), int(x.shape[1])
    if r == 1:
        h, wd, kh, kw = 1, int(x.shape[2]), 1, int(w.shape[2])
        sh, dh, pt, pl = 1, 1, 0, int(attrs["pads"][0])
        oh, ow = 1, int(out_shape[2])
    else:
        h, wd, kh, kw = int(x.shape[2]), int(x.shape[3]), int(w.shape[2]), int(w.shape[3])
        sh, dh = int(attrs["strides"][0]), int(attrs["dilations"][0])
        pt, pl = int(attrs["pads"][0]), int(attrs["pads"][1])
        oh, ow = int(out_shape[2]), int(out_shape[3])
    zp = int(attrs["x_zero_point"])
    kq = -(-kw // G)
    gh = math.gcd(dh, sh)
    nph = max(((t * dh) % sh) // gh for t in range(kh)) + 1
    wq = ow + kw - 1
    positions = oh * wq
    mr, nw = _choose_tile(isa, c, positions, kh * kq)
    nw = min(nw, max(1, isa.max_acc // mr))
    ocp = _ceil_to(c, mr)
    pp = _ceil_to(positions, nw * L)
    maxoff = (((kh - 1) * dh) // sh) * wq + (kq - 1) * G
    fh = -(-(pp + maxoff + G) // wq)

    def xpval(nn, cc, ih, f):
        qh, qw = f // wq, f % wq
        row = qh * sh + ih * gh - pt
        col = qw - pl
        conds = [row >= 0, row < h, col >= 0, col < wd]
        if ocp != c:
            conds.append(cc < c)
        src = (nn, tir.min(cc, c - 1)) + ((row, col) if r == 2 else (col,))
        return tir.if_then_else(tir.all(*conds), x[src], tir.const(zp, "uint8"))
    xp = te.compute((n, ocp, nph, fh * wq), xpval, name="xp")
    fq = pp + maxoff
    xq = te.compute((n, ocp, nph, fq, G), lambda nn, cc, ih, f, g: xp[nn, cc, ih, f + g], name="xq")

    def wval(cc, a, b, g):
        t = b * G + g
        conds = [t < kw] if kq * G != kw else []
        if ocp != c:
            conds.append(cc < c)
        idx = (tir.min(cc, c - 1), 0) + ((a, tir.min(t, kw - 1)) if r == 2 else (tir.min(t, kw - 1),))
        v = cast(w[idx], isa.w_dtype)
        return tir.if_then_else(tir.all(*conds), v, tir.const(0, isa.w_dtype)) if conds else v
    wpk = te.compute((ocp, kh, kq, G), wval, name="wpk")
    rh = te.reduce_axis((0, kh), name="rh")
    rq = te.reduce_axis((0, kq), name="rq")
    rg = te.reduce_axis((0, G), name="rg")

    def acc_f(nn, cc, p):
        f = p + ((rh * dh) // sh) * wq + rq * G
        xv = xq[nn, cc, ((rh * dh) % sh) // gh, f, rg]
        return te.sum(cast(xv, "int32") * cast(wpk[cc, rh, rq, rg], "int32"), axis=[rh, rq, rg])
    acc = te.compute((n, ocp, pp), acc_f, name="acc")
    out = _flat_epilogue(acc, epilogue, c, wq, r, out_shape)
    macs = n * c * oh * ow * kh * kw

    def schedule(sch, spec) -> None:
        b_acc, b_req, b_out = sch.get_sblock("acc"), sch.get_sblock("req"), sch.get_sblock("out")
        b_xp, b_xq = sch.get_sblock("xp"), sch.get_sblock("xq")
        ol = sch.get_loops(b_out)
        oo, _ = sch.split(ol[1], [None, mr])
        oo = sch.fuse(ol[0], oo)
        if macs >= PARALLEL_MIN_MACS and n * (ocp // mr) >= 2:
            sch.parallel(oo)
        sch.compute_at(b_req, oo, preserve_unit_loops=True)
        sch.compute_at(b_acc, oo, preserve_unit_loops=True)
        sch.compute_at(b_xq, oo, preserve_unit_loops=True)
        sch.compute_at(b_xp, oo, preserve_unit_loops=True)
        rl = sch.get_loops(b_req)
        _, rv = sch.split(rl[-1], [None, L])
        sch.vectorize(rv)
        loops = sch.get_loops(b_acc)
        n_l, o_l, p_l, h_l, q_l, g_l = loops[-6:]
        po, pt_, pv = sch.split(p_l, [None, nw, L])
        sch.reorder(po, h_l, q_l, o_l, pt_, pv, g_l)
        if ow % L == 0:
            _, v = sch.split(sch.get_loops(b_out)[-1], [None, L])
            sch.vectorize(v)
        sch.decompose_reduction(b_acc, h_l)
        sch.tensorize(pv, isa.px)
        sch.unroll(pt_)
        sch.unroll(o_l)
        # the plane copy row by row (no div/mod), the sliding window with g innermost unrolled
        xl = sch.get_loops(b_xp)
        sch.split(xl[-1], [None, wq])
        ql = sch.get_loops(b_xq)
        sch.unroll(ql[-1])
        wl = sch.get_loops(sch.get_sblock("wpk"))
        sch.unroll(wl[-1])

    return out, schedule
