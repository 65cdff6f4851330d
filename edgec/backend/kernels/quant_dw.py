"""int8 depthwise qconv with the *channels* in the vector lanes (x86: AVX-512 VNNI and AVX2).

``dwconv_lanes`` works per batch index and block of L channels (L int32 lanes: 16 on the VNNI
host, 8 on AVX2; the last block of a channel count that is not a multiple of L repeats channel
c - 1 in its spare lanes and does not write them back):

1. ``xt0[q, l]``: the block's input planes transposed to channel-last bytes by L x L register
   transposes (log2(L) rounds of unpack shuffles, ``_transpose``; the last L pixels of a plane
   are transposed again when q is not a multiple of L); the weights the same way (``wt0``).
2. ``xt[ih, iw, l]``: the zero-point padded window of *pixel pairs*: each int32 lane holds the
   pixel at iw in its low int16 and the pixel at iw + dilation in its high int16 (sign- or
   zero-extended 8-bit values); ``wt[kh, p, l]`` the weight pairs (w[kh, 2p], w[kh, 2p + 1]), 0 for
   the missing tap of an odd kernel width's last pair. Computed per band of output rows so that
   the window stays in L2; in one band (the usual case) it holds the input rows only, without
   the top / bottom padding rows (which step 3 never reads).
3. ``acc[oh, ow, l] = sum_kh sum_p pair_dot(xt[oh*sh + kh*dh, ow*sw + 2p*dw, l], wt[kh, p, l])``
   (``_pair_dot`` = lo16 * lo16 + hi16 * hi16): a register tile of ``tw`` pixels of a row, one
   ``vpdpwssds`` (VNNI) / ``vpmaddwd`` + ``vpaddd`` (AVX2) per tap *pair* and pixel (5x5: 15
   instead of 25; 3x3: 6 instead of 9), written TIR (``_acc_tile``). A kernel row that lands in
   the top / bottom zero-point padding for the tile's output row (a run-time branch per tile and
   kernel row) is not multiplied pixel by pixel: its window entries are all pack(zp, zp), so its
   contribution is computed once from the weights and added to every accumulator (PP-OCR's 2-row
   maps: 2 of 5 kernel rows are real).
4. the requantization right after the tile, on whole channel vectors (``_req_vectors``): ``a =
   acc + bias`` in int32 (the reference requires it to fit; with the node's ``acc_bound`` the
   bias is the accumulators' initial value instead, and quant.py ``_acc_pre_shift``'s k comes
   from weights shifted by k), then for right shifts n >= 33 (every channel) quant.py
   ``requant_hi32``'s form (unsigned products of |a|, the high halves merged, the sign put back;
   of max(a, 0) and no sign under a fused ReLU), for n = 32 the signed 64-bit products with
   ``(P >> 32) >> (n - 32)``, below 32 ``P >> n`` in int64 (all: the bits of quant.py
   ``requant_expr``); a fused hard swish then runs quant.py ``_hard_swish_tail`` on the vectors.
5. ``out``: the channel-last bytes transposed back to the NCHW planes (register transposes).

Tap quads (``QUAD``; uint8 activations on VNNI, kernel width <= 4, width dilation 1, one row
band, no pre-shifted weights, rows of >= 4 pixels: DS-CNN's 3x3): a window entry ``xt[ih, iw, l]``
holds the bytes of the kernel row's taps (pix(iw + t) for t < KW, the zero point in the spare
bytes, whose weight is 0), ``wt[kh, 0, l]`` the KW weight bytes; step 3 is then one ``vpdpbusd``
per kernel row and pixel (3x3: 3 instead of 6 ``vpdpwssds``; padding rows from pack4(zp) the same
way), and step 2 is written TIR too (``_quad_window``: byte shuffles of 4 consecutive
channel-last pixels of a row). Measured on Zen 4 (DS-CNN 64 channels at 25x5, 1 thread): 2.70 ->
2.35 us per layer.

With AVX-512 VBMI in the target (x86_64), the transposes are byte permutes (``_transpose_vbmi``:
16 x 16 bytes in two rounds of 4 ``vpermi2b``, 64-byte stores into xt0; ``_short_transpose_vbmi``:
a 3x3 kernel's 9 weight taps of 16 channels from the block's 144 contiguous bytes, 2 permutes and a
blend per 4 taps instead of 144 byte inserts); the window's byte shuffle is LLVM's ``vpermt2b``.
DS-CNN's 3x3 (64 channels at 25x5, Zen 4): 2.35 -> 2.21 us from the window, -> 2.03 us with the
transposes.

Steps 1, 3, 4 and 5 are written as TIR statements (vector loads, shuffles, LLVM intrinsics,
stores) that replace the scheduled blocks (``_replace_loop``), declared to read / write the same
regions; the TE definitions they replace state what they compute.
"""
from __future__ import annotations

import tvm
from tvm import te

from ._nn_sched import PARALLEL_MIN_MACS, cast
from .quant_isa import Isa

tir = tvm.tirx

LANES = {"vnni": 16, "avx2": 8}


def _pair_dot(a, b):
    """The dot product of the two int16 halves of int32 lanes a and b: ``lo16(a) * lo16(b) +
    hi16(a) * hi16(b)`` (lo16 = ``(v << 16) >> 16``, hi16 = ``v >> 16``, both sign-extended): the
    TE definition of a tap pair, what one ``vpdpwssds`` / ``vpmaddwd`` lane computes."""
    c16 = tir.const(16, "int32")
    return (tir.shift_right(tir.shift_left(a, c16), c16) * tir.shift_right(tir.shift_left(b, c16), c16)
            + tir.shift_right(a, c16) * tir.shift_right(b, c16))


# tap quads (uint8 activations on VNNI, kernel widths <= 4, width dilation 1): QUAD = False keeps
# the tap pairs (same bits; for measurements)
QUAD = True


def _quad_dot(a, b):
    """The dot product of the four bytes of int32 lanes a (uint8) and b (int8): the TE definition of
    a tap quad, what one ``vpdpbusd`` lane adds."""
    out = None
    for t in range(4):
        xa = tir.bitwise_and(tir.shift_right(a, tir.const(8 * t, "int32")), tir.const(0xFF, "int32"))
        wb = tir.shift_right(tir.shift_left(b, tir.const(24 - 8 * t, "int32")), tir.const(24, "int32"))
        out = xa * wb if out is None else out + xa * wb
    return out


def _quad_mac(isa_name: str, c, a, b):
    """c + quad_dot(a, b) on 16 int32 lanes: one ``vpdpbusd`` (u8 x s8, four products per lane,
    no saturation: |4 * 255 * 128| < 2^31, and the sums wrap, exact where the reference's
    acc + bias fits int32)."""
    a8, b8 = (tir.reinterpret("int8x64", v) for v in (a, b))
    return tir.call_llvm_pure_intrin("int32x16", "llvm.x86.avx512.vpdpbusd.512", c, a8, b8)


def _pack4(vals) -> tir.PrimExpr:
    """int32 lane of four byte values (int32 expressions in [0, 255]): vals[0] in the low byte."""
    u = None
    for t, v in enumerate(vals):
        b = tir.shift_left(cast(v, "uint32"), tir.const(8 * t, "uint32")) if t else cast(v, "uint32")
        u = b if u is None else tir.bitwise_or(u, b)
    return tir.reinterpret("int32", u)


def _quad_window(xt0_buf, xt_buf, nn, bb, rows: int, wd: int, wp: int, pl: int, kw: int, zp: int, L: int):
    """xt[nn, bb, i, iw, l] = the bytes (pix(i, iw + t - pl) for t < kw, else zp; pix the zero-point
    padded input pixel of channel bb*L + l) for the ``rows`` input rows. Per entry one byte shuffle
    of the 4 consecutive channel-last pixels of the row from column min(max(iw - pl, 0), wd - 4)
    (never past the row) and a zero-point vector. Without VBMI in the target (no vpermb) LLVM
    lowers it to ~5 instructions per entry (vpermq / vpshufb / vpor; a two-step vpermt2d +
    vpshufb formulation compiled to the same code)."""
    i = tir.Var("qi", "int32")
    zv = tir.Broadcast(tir.const(zp, "uint8"), L)
    stmts = []
    for iw in range(wp):
        st = min(max(iw - pl, 0), wd - 4)
        cols = [iw + t - pl for t in range(4)]
        vecs = [tir.BufferLoad(xt0_buf, [nn, bb, i * wd + st + j, tir.Ramp(0, 1, L)]) for j in range(4)] + [zv]
        idx = []
        for l in range(L):
            for t in range(4):
                ok = t < kw and 0 <= cols[t] < wd
                idx.append((cols[t] - st) * L + l if ok else 4 * L)
        v = tir.Shuffle(vecs, [tir.const(j, "int32") for j in idx])
        stmts.append(tir.BufferStore(xt_buf, tir.reinterpret(f"int32x{L}", v), [nn, bb, i, iw, tir.Ramp(0, 1, L)]))
    return tir.For(i, 0, rows, tir.ForKind.SERIAL, tir.SeqStmt(stmts))


def dwconv_lanes_fits(isa: Isa | None, x_dtype: str, groups: int, c: int, oc: int, rank: int,
                      kernel_w: int = 3, out_w: int = 1, act: str = "none") -> bool:
    """Depthwise (one input channel per output channel, multiplier 1), 1-D or 2-D, uint8/int8
    activations, on an x86 ISA (VNNI host or AVX2), where it beats the portable width-in-lanes
    schedule (``conv_direct``). Measured on Zen 4, 1 thread: always for kernel widths >= 5
    (PP-OCR 5x5: 1.2-1.4x over the vpdpbusd width-tap kernel in session 5, ~1.5x more since) and
    for rows narrower than 16 (DS-CNN 25x5); for wider rows only when the channels fill the lanes
    and no activation is fused (MobileNetV2 3x3, PP-OCR Conv@10: 32 channels, 1.6x). Re-measured in
    session 6 with tap pairs: PP-OCR's 3x3 layers with 8 / 24 channels and 96-wide rows (ReLU)
    take 6.1 / 6.7 us here against 4.8 / 7.0 us on ``conv_direct`` (with a fused hard swish,
    10.4 / 9.7): not worth a finer rule."""
    if not (isa is not None and isa.name in LANES and x_dtype in ("uint8", "int8") and groups == c == oc
            and rank in (1, 2)):
        return False
    return kernel_w >= 5 or out_w < 16 or (act == "none" and c % LANES[isa.name] == 0)


def _geom(x, w, attrs, out_shape):
    r = len(x.shape) - 2
    if r == 1:
        return dict(h=1, wd=int(x.shape[2]), kh=1, kw=int(w.shape[2]), sh=1, sw=int(attrs["strides"][0]),
                    dh=1, dw=int(attrs["dilations"][0]), pt=0, pl=int(attrs["pads"][0]), oh=1, ow=int(out_shape[2]))
    return dict(h=int(x.shape[2]), wd=int(x.shape[3]), kh=int(w.shape[2]), kw=int(w.shape[3]),
                sh=int(attrs["strides"][0]), sw=int(attrs["strides"][1]), dh=int(attrs["dilations"][0]),
                dw=int(attrs["dilations"][1]), pt=int(attrs["pads"][0]), pl=int(attrs["pads"][1]),
                oh=int(out_shape[2]), ow=int(out_shape[3]))


def _transpose(vecs: list, L: int) -> list:
    """``vecs[i]`` (L vectors of L bytes) -> ``cols[j] = [vecs[0][j], ..., vecs[L-1][j]]``: log2(L)
    rounds of 2-input interleaves of e-byte elements (punpckl/h{bw,wd,dq,qdq} on x86)."""
    # each vector: (expression, [(first row, column) per element]); elements are e bytes
    cur = [(v, [(i, k) for k in range(L)]) for i, v in enumerate(vecs)]
    e = 1
    while e < L:
        ne = L // e
        by_key = {(lab[0][0], tuple(cc for _, cc in lab)): (v, lab) for v, lab in cur}
        nxt = []
        for (r0, cols), (va, la) in sorted(by_key.items()):
            if r0 % (2 * e):
                continue
            vb, lb = by_key[(r0 + e, cols)]
            for half in (0, 1):
                idx, lab = [], []
                for i in range(half * ne // 2, (half + 1) * ne // 2):
                    idx += [i * e + t for t in range(e)] + [L + i * e + t for t in range(e)]
                    lab.append((r0, la[i][1]))
                sh = tir.Shuffle([va, vb], [tir.const(j, "int32") for j in idx])
                nxt.append((sh, lab))
        cur = nxt
        e *= 2
    return [v for v, _ in sorted(cur, key=lambda t: t[1][0][1])]


def _const_vec(vals, dtype: str):
    """A vector of compile-time constants (ints or constant expressions)."""
    vals = [tir.const(v, dtype) if isinstance(v, int) else v for v in vals]
    return tir.Shuffle(vals, [tir.const(j, "int32") for j in range(len(vals))])


def _perm2(t0, t1, idx: list):
    """64 bytes picked from the 128 of two int8x64 tables by constant indices: one ``vpermi2b``."""
    iv = _const_vec(idx, "int8")
    return tir.call_llvm_pure_intrin("int8x64", "llvm.x86.avx512.vpermi2var.qi.512", t0, iv, t1)


def _transpose_vbmi(vecs: list, dt: str) -> list:
    """``_transpose`` of 16 vectors of 16 bytes with AVX-512 VBMI, as 4 blocks of 64 bytes: block m
    holds columns 4m .. 4m + 3, 16 bytes each (byte jj * 16 + r = vecs[r][4m + jj]). The rows are
    concatenated 4 by 4 (``z[k]``: row r at bytes (r % 4) * 16 of z[r // 4]); two rounds of two-table
    byte permutes (``vpermi2b``), 8 in all instead of 64 interleaves: round 1 takes 8 rows x 8
    columns from a pair of z (``w[g][h]``: rows 8g .., columns 8h .., byte c * 8 + r), round 2 a
    block's 4 columns x 16 rows from w[0][h] and w[1][h]."""
    z = [tir.reinterpret("int8x64", tir.Shuffle(vecs[4 * k:4 * k + 4], [tir.const(i, "int32") for i in range(64)]))
         for k in range(4)]
    w = [[_perm2(z[2 * g], z[2 * g + 1], [(r // 4) * 64 + (r % 4) * 16 + 8 * h + c for c in range(8) for r in range(8)])
          for h in range(2)] for g in range(2)]
    blocks = []
    for m in range(4):
        h, c0 = m // 2, 4 * (m % 2)
        blk = _perm2(w[0][h], w[1][h], [(r // 8) * 64 + (c0 + jj) * 8 + r % 8 for jj in range(4) for r in range(16)])
        blocks.append(tir.reinterpret(f"{dt}x64", blk) if dt != "int8" else blk)
    return blocks


def _flat(buf, name: str):
    """A 1-D view of a (compact) kernel parameter."""
    size = 1
    for d in buf.shape:
        size *= int(d)
    flat = tir.decl_buffer((size,), buf.dtype, name=name)
    return flat, tir.DeclBuffer(flat, data=buf.data)


def _in_transpose(x_buf, xt0_buf, nn, bb, c: int, q: int, L: int, vbmi: bool = False):
    """xt0[nn, bb, f, l] = x_plane(channel min(bb*L + l, c-1))[f] for the q pixels of a plane."""
    xf, decl = _flat(x_buf, "x_flat")
    ch = [tir.min(bb * L + l, c - 1) if (c % L) else bb * L + l for l in range(L)]
    base = [(nn * c + cc) * q for cc in ch]
    full = q // L
    body = []

    def block(start):
        vecs = [tir.BufferLoad(xf, [tir.Ramp(base[l] + start, 1, L)]) for l in range(L)]
        if vbmi and L == 16:    # 4 pixels' channel vectors are 64 contiguous bytes of xt0: one store
            return tir.SeqStmt([tir.BufferStore(xt0_buf, blk, [nn, bb, start + 4 * m, tir.Ramp(0, 1, 64)])
                                for m, blk in enumerate(_transpose_vbmi(vecs, str(xf.dtype)))])
        cols = _transpose(vecs, L)
        return tir.SeqStmt([tir.BufferStore(xt0_buf, cols[j], [nn, bb, start + j, tir.Ramp(0, 1, L)])
                            for j in range(L)])
    if full:
        pb = tir.Var("pb", "int32")
        body.append(tir.For(pb, 0, full, tir.ForKind.SERIAL, block(pb * L)))
    if q % L and full:
        body.append(block(tir.const(q - L, "int32")))      # the last L pixels again (overlap)
    elif q % L and vbmi and L == 16 and c % L == 0:
        body.append(_short_transpose_vbmi(xf, xt0_buf, nn, bb, base[0], q))
    elif q % L:
        f = tir.Var("f", "int32")
        st = [tir.BufferStore(xt0_buf, tir.BufferLoad(xf, [base[l] + f]), [nn, bb, f, l]) for l in range(L)]
        body.append(tir.For(f, 0, q, tir.ForKind.SERIAL, tir.SeqStmt(st)))
    return tir.SeqStmt([decl] + body)


def _short_transpose_vbmi(xf, xt0_buf, nn, bb, base, q: int):
    """xt0[nn, bb, f, l] = xf[base + l * q + f] for f < q < 16 (the 16 channels' planes contiguous:
    a weight block, q taps each) with VBMI: the block's 16q bytes as 64-byte tables (the last one
    partial, zero-filled), each 64-byte block of 4 taps x 16 channels from one two-table byte
    permute (``vpermi2b``) per table pair it reads, blended: for a 3x3 kernel 3 blocks of 2 permutes
    and a blend instead of 144 byte inserts."""
    dt = str(xf.dtype)
    n_bytes = 16 * q
    tabs = []
    for k in range(-(-n_bytes // 64)):
        size = min(64, n_bytes - 64 * k)
        v = tir.BufferLoad(xf, [tir.Ramp(base + 64 * k, 1, size)])
        if size < 64:
            v = tir.Shuffle([v, tir.Broadcast(tir.const(0, dt), 64 - size)],
                            [tir.const(i if i < size else size, "int32") for i in range(64)])
        tabs.append(tir.reinterpret("int8x64", v))
    stmts = []
    for m in range(-(-q // 4)):
        nf = min(4, q - 4 * m)
        src = [l * q + 4 * m + jj for jj in range(nf) for l in range(16)]
        res = None
        for pr in sorted({sv // 128 for sv in src}):
            t0 = tabs[2 * pr]
            t1 = tabs[2 * pr + 1] if 2 * pr + 1 < len(tabs) else t0
            perm = _perm2(t0, t1, [sv - 128 * pr if sv // 128 == pr else 0 for sv in src] + [0] * (64 - len(src)))
            if res is None:
                res = perm
            else:
                res = tir.Shuffle([res, perm], [tir.const(i + (64 if i < len(src) and src[i] // 128 == pr else 0),
                                                          "int32") for i in range(64)])
        if dt != "int8":
            res = tir.reinterpret(f"{dt}x64", res)
        if nf < 4:
            res = tir.Shuffle([res], [tir.const(i, "int32") for i in range(16 * nf)])
        stmts.append(tir.BufferStore(xt0_buf, res, [nn, bb, 4 * m, tir.Ramp(0, 1, 16 * nf)]))
    return _seq(stmts)


def _out_transpose(req_buf, out_buf, nn, bb, c: int, oh: int, ow: int, L: int, vbmi: bool = False):
    """out plane (channel bb*L + l < c)[p] = req[nn, bb, p // ow, p % ow, l] for the oh*ow pixels."""
    of, decl = _flat(out_buf, "out_flat")
    p_all = oh * ow
    full = p_all // L
    body = []

    def guard(l, st):
        return tir.IfThenElse(bb * L + l < c, st, None) if c % L else st

    def rq(p, lane):
        return tir.BufferLoad(req_buf, [nn, bb, p // ow, p % ow, lane])
    def block(start):
        vecs = [rq(start + j, tir.Ramp(0, 1, L)) for j in range(L)]
        if vbmi and L == 16 and str(req_buf.dtype) in ("int8", "uint8"):
            blocks = _transpose_vbmi(vecs, str(req_buf.dtype))
            cols = [tir.Shuffle([blocks[l // 4]], [tir.const((l % 4) * 16 + i, "int32") for i in range(16)])
                    for l in range(16)]
        else:
            cols = _transpose(vecs, L)
        return tir.SeqStmt([guard(l, tir.BufferStore(of, cols[l], [tir.Ramp((nn * c + bb * L + l) * p_all + start, 1, L)]))
                            for l in range(L)])
    if full:
        pb = tir.Var("pb", "int32")
        body.append(tir.For(pb, 0, full, tir.ForKind.SERIAL, block(pb * L)))
    if p_all % L and full:
        body.append(block(tir.const(p_all - L, "int32")))  # the last L pixels again (overlap)
    elif p_all % L:
        p = tir.Var("p", "int32")
        st = [guard(l, tir.BufferStore(of, rq(p, l), [(nn * c + bb * L + l) * p_all + p])) for l in range(L)]
        body.append(tir.For(p, 0, p_all, tir.ForKind.SERIAL, tir.SeqStmt(st)))
    return tir.SeqStmt([decl] + body)


class _Rq:
    """One requantization stage on vectors of L int32 lanes: ``m`` / ``n`` / ``half`` each an int,
    a per-lane vector (int32 / int32 / int64 tables: the channels in the lanes, ``dwconv_lanes``)
    or an int32 scalar expression that serves every lane (one channel across the lanes,
    quant_dw_rows); ``half`` None: 2^(n-1) from n. ``zp`` and the clamp [lo, hi] are ints.
    ``apply(a)`` gives ``clamp(round(a * m / 2^n) + zp, lo, hi)`` as int32 lanes with the bits of
    quant.py ``requant_expr``: even and odd lanes multiplied as 32 x 32 -> 64-bit products,
    ``P = p + 2^(n-1) + (p >> 63)``; when every n >= 32 (``n_min``), ``(P >> 32) >> (n - 32)`` in
    int32 (exact: |P| < 2^63; the high words taken by one shuffle), else ``P >> n`` in int64
    clamped before the lanes are merged. ``abs_path`` (default: every n >= 33, the usual case):
    the fewer-instruction form of quant.py ``requant_hi32``: ``q = (hi32(|a| * m) + 2^(n-33)) >>
    (n - 32)`` (unsigned 32 x 32 -> 64-bit products of the even / odd lanes, their high halves
    merged by one shuffle), then ``-q`` where a < 0: the reference's round half away from zero of
    a * m / 2^n (the low 32 bits of 2^(n-1) are zero, so the 64-bit sum never needs them; |a| <=
    2^31, m < 2^31: the sum fits 31 bits). With a fused ReLU (lo >= zp) the products are of
    max(a, 0) and no sign is put back. ``signed`` (with the abs path, no ReLU; the caller checked
    quant.py ``_hi32_signed_ok``: no product lands on a rounding tie): the signed products of a
    itself, ``q = (hi32(a * m) + 2^(n-33)) >> (n - 32)`` (arithmetic), quant.py ``hi32s_finish``'s
    form: no |a|, no sign put back."""

    def __init__(self, L, m, n, half, zp, lo, hi, n_min, abs_path: bool | None = None, signed: bool = False):
        H = L // 2
        self.L, self.H, self.zp, self.lo, self.hi = L, H, zp, lo, hi
        self.i64 = lambda v: tir.Broadcast(v if not isinstance(v, int) else tir.const(int(v), "int64"), H)  # noqa: E731
        b32 = lambda v: tir.Broadcast(v if not isinstance(v, int) else tir.const(int(v), "int32"), L)  # noqa: E731
        ev, od = [2 * j for j in range(H)], [2 * j + 1 for j in range(H)]
        self.hi_path = n_min >= 32
        self.abs_path = n_min >= 33 if abs_path is None else abs_path
        def vec(v) -> bool:     # a per-lane vector, else an int or a scalar expression
            if isinstance(v, int):
                return False
            ty = getattr(v, "ty", None)     # (TE tensor elements have none: scalars)
            return ty is not None and tvm.DataType(str(ty)).lanes > 1

        def eo32(v):            # an int32xL vector -> its even / odd lanes sign-extended to int64xH
            v64 = tir.reinterpret(f"int64x{H}", v)
            return (tir.shift_right(tir.shift_left(v64, self.i64(32)), self.i64(32)),
                    tir.shift_right(v64, self.i64(32)))
        self.eo32 = eo32
        # shift amounts as max(., 0): TVM's integer simplifier mis-bounds ``x >> (n - 32)`` for a
        # loaded n (it folded the clamp after it away); the max keeps the bounds right
        if isinstance(n, int):
            k32 = b32(n - 32) if n >= 32 else None
        elif vec(n):
            k32 = tir.Max(n - b32(32), b32(0))
        else:
            k32 = b32(tir.max(n - 32, 0))
        self.signed = signed and self.abs_path and lo - zp < 0
        # the multipliers sign-extended to the even / odd int64 lanes (m >= 0): the int64 form's
        # and the signed form's factors
        if isinstance(m, int):
            self.mE = self.mO = self.i64(m)
        elif vec(m):
            self.mE, self.mO = eo32(m)
        else:
            self.mE = self.mO = self.i64(cast(m, "int64"))
        if self.abs_path:
            u64 = lambda v: tir.Broadcast(v if not isinstance(v, int) else tir.const(int(v), "uint64"), H)  # noqa: E731
            self.u64 = u64
            if isinstance(m, int):
                self.muE = self.muO = u64(m)
            elif vec(m):
                mv = tir.reinterpret(f"uint64x{H}", m)
                self.muE, self.muO = tir.bitwise_and(mv, u64(0xFFFFFFFF)), tir.shift_right(mv, u64(32))
            else:
                self.muE = self.muO = u64(cast(cast(m, "uint32"), "uint64"))
            self.k = k32
            if isinstance(n, int):
                self.c32 = b32(1 << (n - 33))
            elif vec(n):
                self.c32 = tir.shift_left(b32(1), tir.Max(n - b32(33), b32(0)))
            else:
                self.c32 = b32(tir.shift_left(tir.const(1, "int32"), tir.max(n - 33, 0)))
            return
        if half is None and not isinstance(n, int) and not vec(n):
            n64 = tir.max(cast(n, "int64"), tir.const(1, "int64"))
            half = tir.shift_left(tir.const(1, "int64"), n64 - tir.const(1, "int64"))
        elif half is None and vec(n):
            half = tir.shift_left(tir.Broadcast(tir.const(1, "int64"), L),
                                  tir.Cast(f"int64x{L}", n) - tir.Broadcast(tir.const(1, "int64"), L))
        elif half is None:
            half = 1 << (n - 1)
        if isinstance(half, int) or not vec(half):
            self.cE = self.cO = self.i64(half)
        else:
            self.cE, self.cO = (tir.Shuffle([half], [tir.const(i, "int32") for i in ix]) for ix in (ev, od))
        if self.hi_path:
            self.k = k32
        elif isinstance(n, int):
            self.nE = self.nO = self.i64(n)
        elif vec(n):
            self.nE, self.nO = (tir.Max(v, self.i64(0)) for v in eo32(n))
        else:
            self.nE = self.nO = self.i64(tir.max(cast(n, "int64"), tir.const(1, "int64")))

    def apply(self, a, u8: bool = False):
        """``u8``: the result is stored as uint8 (the caller casts it): with a fused ReLU and
        0 <= zp <= lo <= hi <= 255, or the signed form and 0 <= lo <= hi <= 255, the lanes may
        then come back as uint32 (same values)."""
        L, i64 = self.L, self.i64
        u8_out = u8 and 0 <= self.lo <= self.hi <= 255
        u8 = u8 and 0 <= self.zp <= self.lo <= self.hi <= 255
        b32 = lambda v: tir.Broadcast(tir.const(int(v), "int32"), L)  # noqa: E731
        if self.signed:
            aE, aO = self.eo32(a)
            hE, hO = (tir.reinterpret(f"int32x{L}", v) for v in (aE * self.mE, aO * self.mO))
            hi = tir.Shuffle([hE, hO], [tir.const(j + 1 if j % 2 == 0 else L + j, "int32") for j in range(L)])
            q = tir.shift_right(hi + self.c32, self.k)
            if u8_out:
                # |q| < 2^30: q + zp fits int32; a signed max with lo, then the narrowing store's
                # unsigned saturation for hi = 255 (the caller casts the uint32 lanes to uint8)
                u32 = lambda v: tir.Broadcast(tir.const(int(v), "uint32"), L)  # noqa: E731
                r = tir.Max(q + b32(self.zp) if self.zp else q, b32(self.lo))
                return tir.Min(tir.reinterpret(f"uint32x{L}", r), u32(self.hi))
            r = tir.Max(tir.Min(q, b32(self.hi - self.zp)), b32(self.lo - self.zp))
            return r + b32(self.zp) if self.zp else r
        if self.abs_path:
            # a fused ReLU (qmin >= zero point): every a <= 0 gives qmin, and so does max(a, 0)
            # (q = 0 there): no sign to put back
            relu = self.lo - self.zp >= 0
            if relu:
                ab32 = tir.Max(a, b32(0))
            else:
                sgn = tir.shift_right(a, b32(31))
                ab32 = tir.bitwise_xor(a, sgn) - sgn                    # |a| (as uint32 lanes)
            ab = tir.reinterpret(f"uint64x{self.H}", ab32)
            pE = tir.bitwise_and(ab, self.u64(0xFFFFFFFF)) * self.muE
            pO = tir.shift_right(ab, self.u64(32)) * self.muO
            hE, hO = (tir.reinterpret(f"int32x{L}", v) for v in (pE, pO))
            hi = tir.Shuffle([hE, hO], [tir.const(j + 1 if j % 2 == 0 else L + j, "int32") for j in range(L)])
            if relu and u8:
                # a uint8 output (0 <= zp <= lo): q is in [0, 2^30) (hi < 2^30: |a| < 2^31,
                # m < 2^31; c < 2^30; k >= 1), so q + zp never wraps as uint32 and the clamp to
                # hi is an unsigned min, which the narrowing store does for hi = 255 (vpmovusdb)
                u32 = lambda v: tir.Broadcast(tir.const(int(v), "uint32"), L)  # noqa: E731
                qu = tir.shift_right(tir.reinterpret(f"uint32x{L}", hi + self.c32), tir.reinterpret(f"uint32x{L}", self.k))
                r = qu + u32(self.zp) if self.zp else qu
                r = tir.Min(r, u32(self.hi))
                return tir.Max(r, u32(self.lo)) if self.lo > self.zp else r
            q = tir.shift_right(hi + self.c32, self.k)
            if relu:
                r = tir.Min(q, b32(self.hi - self.zp))
                r = tir.Max(r, b32(self.lo - self.zp)) if self.lo > self.zp else r
            else:
                r = tir.Select(a < b32(0), b32(0) - q, q)
                r = tir.Max(tir.Min(r, b32(self.hi - self.zp)), b32(self.lo - self.zp))
            return r + b32(self.zp) if self.zp else r
        aE, aO = self.eo32(a)
        tE, tO = aE * self.mE, aO * self.mO
        pE = tE + self.cE + tir.shift_right(tE, i64(63))
        pO = tO + self.cO + tir.shift_right(tO, i64(63))
        if self.hi_path:
            # the high words of the 64-bit sums, one shuffle
            hE, hO = (tir.reinterpret(f"int32x{L}", v) for v in (pE, pO))
            r = tir.Shuffle([hE, hO], [tir.const(j + 1 if j % 2 == 0 else L + j, "int32") for j in range(L)])
            r = tir.shift_right(r, self.k)
            r = tir.Max(tir.Min(r, b32(self.hi - self.zp)), b32(self.lo - self.zp))
        else:
            lo, hi = i64(self.lo - self.zp), i64(self.hi - self.zp)
            rE = tir.Max(tir.Min(tir.shift_right(pE, self.nE), hi), lo)
            rO = tir.Max(tir.Min(tir.shift_right(pO, self.nO), hi), lo)
            r = tir.Shuffle([tir.reinterpret(f"int32x{L}", rE), tir.reinterpret(f"int32x{L}", rO)],
                            [tir.const(j if j % 2 == 0 else L + j - 1, "int32") for j in range(L)])
        return r + b32(self.zp) if self.zp else r


def _req_vectors(acc_buf, req_buf, tabs, attrs, consts, nn, bb, y, zs, L: int, n_min: int, fold: bool, kpre: int):
    """The epilogue of the tile on whole channel vectors for the output pixels ``zs`` of row ``y``
    (the TE definition is ``_epilogue_lanes``): ``a = acc + bias`` in int32 (the reference requires
    the biased accumulator to fit int32, qmath.requantize), then one ``_Rq`` stage, or for a fused
    hard swish (edgec/ops/quant.py module doc) h = the first stage to [act_hmin, act_hmax],
    then quant.py ``_hard_swish_tail``. ``fold``: the bias is in ``acc`` already, as is the
    pre-shift ``kpre`` (acc = (acc + bias) << kpre, right shifts n + kpre >= 33: the same bits in
    the 32-bit form; quant.py ``_acc_pre_shift``). ``tabs``: the (mpad, npad, hpad, bpad) buffers,
    None where ``consts`` = (m, n) serve every channel (bpad: no bias)."""
    from .quant import _hard_swish_tail
    mpad, npad, hpad, bpad = tabs
    m, n_ = consts
    ld = lambda t: tir.BufferLoad(t, [tir.Ramp(bb * L, 1, L)])  # noqa: E731
    mv = ld(mpad) if mpad is not None else m
    nv = ld(npad) if npad is not None else n_
    if hpad is not None:
        hv = ld(hpad)
    elif npad is not None:      # (the TE definition reads no hpad table when it uses requant_expr)
        hv = tir.shift_left(tir.Broadcast(tir.const(1, "int64"), L),
                            tir.Cast(f"int64x{L}", nv) - tir.Broadcast(tir.const(1, "int64"), L))
    else:
        hv = 1 << (n_ - 1)
    bv = ld(bpad) if bpad is not None and not fold else None
    if kpre:
        nv = nv + (tir.Broadcast(tir.const(kpre, "int32"), L) if npad is not None else kpre)
        n_min += kpre
    zo, qlo, qhi, odt = int(attrs["out_zero_point"]), int(attrs["qmin"]), int(attrs["qmax"]), str(attrs["out_dtype"])
    act = str(attrs.get("act", "none")) == "hard_swish"
    from .quant import HI32_SIGNED, _hi32_signed_ok
    sgn = HI32_SIGNED and _hi32_signed_ok(attrs)
    if act:
        st1 = _Rq(L, mv, nv, hv, 0, int(attrs["act_hmin"]), int(attrs["act_hmax"]), n_min, signed=sgn)
    else:
        st1 = _Rq(L, mv, nv, hv, zo, qlo, qhi, n_min, signed=sgn)
    out = []
    for z in zs:
        a = tir.BufferLoad(acc_buf, [nn, bb, y, z, tir.Ramp(0, 1, L)])
        if bv is not None:
            a = a + bv
        r = st1.apply(a, u8=not act and odt == "uint8")
        r = _hard_swish_tail(r, attrs, lanes=L) if act else tir.Cast(f"{odt}x{L}", r)
        out.append(tir.BufferStore(req_buf, r, [nn, bb, y, z, tir.Ramp(0, 1, L)]))
    return tir.SeqStmt(out) if len(out) > 1 else out[0]


def _pair_mac(isa_name: str, c, a, b):
    """c + pair_dot(a, b) on int32 lanes: one ``vpdpwssds`` (VNNI) / ``vpmaddwd`` + ``vpaddd``
    (AVX2). The int16 products and their pair sum are exact (|lo * lo + hi * hi| <= 2 * 255 *
    128), and so is the saturating add: every partial sum of a tile is at most 255 * 128 * taps
    in magnitude, or, with the bias and the pre-shift folded in (``dwconv_lanes``), at most the
    node's ``acc_bound`` * 2^k < 2^31. (The saturating form also keeps LLVM from splitting the
    non-saturating ``vpdpwssd`` into ``vpmaddwd`` + ``vpaddd``.)"""
    L = LANES[isa_name]
    a16, b16 = (tir.reinterpret(f"int16x{2 * L}", v) for v in (a, b))
    if isa_name == "vnni":
        return tir.call_llvm_pure_intrin(f"int32x{L}", "llvm.x86.avx512.vpdpwssds.512", c, a16, b16)
    return c + tir.call_llvm_pure_intrin(f"int32x{L}", "llvm.x86.avx2.pmadd.wd", a16, b16)


def _acc_tile(isa_name, xt_buf, wt_buf, acc_buf, nn, bb, y, z0, g, tw: int, kwp: int, zp_pair: int, L: int,
              init=None, row0: int = 0, mac=None):
    """The accumulators of one tile (``tw`` pixels from ``z0`` of output row ``y``; the TE
    definition is ``acc``): per kernel row a, per tap pair p and pixel, one pair MAC of the window
    entry and the pair weights. A kernel row that reads the top / bottom zero-point padding for
    this output row (known per row at run time, a branch per tile and kernel row) reads window
    entries that are all ``zp_pair`` (= pack(zp, zp)): its contribution, the same for every pixel
    of the tile, is computed once from the weights (kwp MACs) and added to each accumulator,
    instead of tw * kwp MACs; rows of the input always take the taps. ``init``: the accumulators'
    initial vector (the shifted bias, see ``dwconv_lanes``), else 0. ``row0``: the padded row of
    the window's first row (``pt`` when it holds the input rows only)."""
    R = tir.Ramp(tir.const(0, "int32"), 1, L)
    zero = tir.Broadcast(tir.const(0, "int32"), L)
    zpv = tir.Broadcast(tir.const(zp_pair, "int32"), L)
    mac = mac or _pair_mac
    acc = [tir.BufferLoad(acc_buf, [nn, bb, y, z0 + i, R]) for i in range(tw)]

    def put(i, v):
        return tir.BufferStore(acc_buf, v, [nn, bb, y, z0 + i, R])
    sh, dh, sw, dw, pt, h, oh = g["sh"], g["dh"], g["sw"], g["dw"], g["pt"], g["h"], g["oh"]
    stmts = [put(i, zero if init is None else init) for i in range(tw)]
    for a in range(g["kh"]):
        wv = [tir.BufferLoad(wt_buf, [bb, a, p, R]) for p in range(kwp)]
        row = y * sh + a * dh                      # window row (input row + pt)
        taps = _seq([put(i, mac(isa_name, acc[i], tir.BufferLoad(
            xt_buf, [nn, bb, row - row0, (z0 + i) * sw + 2 * p * dw, R]), wv[p]))
            for p in range(kwp) for i in range(tw)])
        cv = zero
        for p in range(kwp):
            cv = mac(isa_name, cv, zpv, wv[p])
        pad = _seq([put(i, acc[i] + cv) for i in range(tw)])
        inside = [pt <= yy * sh + a * dh < pt + h for yy in range(oh)]
        if all(inside):
            stmts.append(taps)
        elif not any(inside):
            stmts.append(pad)
        else:
            stmts.append(tir.IfThenElse(tir.all(row >= pt, row < pt + h), taps, pad))
    return _seq(stmts)


def _seq(stmts: list):
    """A statement sequence without its None entries; one statement as itself (TVM rejects a
    SeqStmt of length 1: a tile of one pixel, e.g. a 7x7 depthwise conv on a 7x7 map without
    padding)."""
    stmts = [st for st in stmts if st is not None]
    return stmts[0] if len(stmts) == 1 else tir.SeqStmt(stmts)


def _replace_loop(sch, loop, body, reads, writes, name: str, alloc=None) -> None:
    """Replace ``loop`` (and the blocks under it) by one opaque block running ``body``, declared
    to read / write the whole of ``reads`` / ``writes`` (the last schedule step: nothing is moved
    after it); ``alloc``: buffers the block allocates (quant_dw_rows' rings)."""
    def region(buf):
        if isinstance(buf, tuple) and isinstance(buf[1], list):   # (buffer, [Range per dimension])
            return tir.BufferRegion(buf[0], buf[1])
        if isinstance(buf, tuple):      # (buffer, leading indices): one point there, all of the rest
            buf, lead = buf
            rng = [tvm.ir.Range.from_min_extent(v, 1) for v in lead]
            return tir.BufferRegion(buf, rng + [tvm.ir.Range(0, d) for d in buf.shape[len(lead):]])
        return tir.BufferRegion(buf, [tvm.ir.Range(0, d) for d in buf.shape])
    blk = tvm.s_tir.SBlock([], [region(b) for b in reads], [region(b) for b in writes], name, body,
                           alloc_buffers=alloc or None)
    realize = tvm.s_tir.SBlockRealize([], tir.const(True, "bool"), blk)
    lv = tir.Var("u", "int32")
    sch.state.replace(sch.get_sref(loop), tir.For(lv, 0, 1, tir.ForKind.SERIAL, realize))


def _epilogue_lanes(acc, bp, tables, attrs, ms, ns, cp: int, L: int, clamp, kpre: int = 0):
    """The TE definition of the epilogue that ``_req_vectors`` computes: quant.py's
    ``requant_expr`` / ``_hard_swish_requant`` per lane (the bits of ``_requant_node``) on
    per-channel tables padded to cp entries (``mpad``, ``npad``, ``bpad``: vector loads).
    ``bp`` None: no bias, or it is already in ``acc``; ``kpre``: acc is (acc + bias) << kpre, the
    right shifts n + kpre."""
    from .quant import _hard_swish_requant, requant_expr
    if tables is not None:
        mt = te.compute((cp,), lambda i: tables[0][clamp(i)], name="mpad")
        nt = te.compute((cp,), lambda i: tables[1][clamp(i)], name="npad")
    else:
        mt = nt = None
    zo, qlo, qhi, odt = int(attrs["out_zero_point"]), int(attrs["qmin"]), int(attrs["qmax"]), str(attrs["out_dtype"])
    act = str(attrs.get("act", "none")) == "hard_swish"

    def reqv(nn, bb, y, z, l):
        ch = bb * L + l
        a = acc[nn, bb, y, z, l]
        a = (a, bp[ch]) if bp is not None else a
        m_ = mt[ch] if mt is not None else ms
        n_ = nt[ch] if nt is not None else ns
        if kpre:
            n_ = n_ + kpre
        if act:
            return _hard_swish_requant(a, m_, n_, attrs)
        return requant_expr(a, m_, n_, zo, qlo, qhi, odt)
    return reqv


def dwconv_lanes(isa: Isa, x: te.Tensor, w: te.Tensor, b: te.Tensor | None, attrs, out_shape, tables, epilogue,
                 vbmi: bool = False):
    """Returns (out, schedule). ``tables``: quant.py ``_req_tables`` result (or None);
    ``epilogue(acc, n, channel, None)``: quant.py's requantization of one accumulator (adds the
    bias), used as is for a fused activation."""
    from .quant import _acc_pre_shift, _req_params
    L = LANES[isa.name]
    r = len(x.shape) - 2
    g = _geom(x, w, attrs, out_shape)
    n, c = int(x.shape[0]), int(x.shape[1])
    h, wd, kh, kw = g["h"], g["wd"], g["kh"], g["kw"]
    sh, sw, dh, dw = g["sh"], g["sw"], g["dh"], g["dw"]
    pt, pl, oh, ow = g["pt"], g["pl"], g["oh"], g["ow"]
    xdt = str(x.dtype)
    zp = int(attrs["x_zero_point"])
    cb = -(-c // L)
    cp = cb * L
    hp = (oh - 1) * sh + (kh - 1) * dh + 1
    # register tile: tw output pixels x L channels, tw accumulators (+ kh*kw weight vectors); a
    # row not a multiple of tw (no divisor >= 4) is computed to owp columns (the extra ones read
    # zero-point padding and are not written back)
    regs = 32 if isa.name == "vnni" else 16
    tw_max = max(1, min(8, regs - 4 - (kh * (kw + 1) // 2 if kh * (kw + 1) // 2 <= 12 else 0)))
    tw = next(v for v in range(min(tw_max, ow), 0, -1) if ow % v == 0)
    if tw < 4 and ow > 4:
        tw = min(tw_max, ow)
    owp = -(-ow // tw) * tw
    # taps in pairs along the width: pair p = taps (2p, 2p + 1) (tap 2p + 1 of an odd width's last
    # pair has weight 0 and reads the zero-point padding), window entry iw = pixels (iw, iw + dw)
    kwp = (kw + 1) // 2
    wp = (owp - 1) * sw + 2 * (kwp - 1) * dw + 1
    clamp = (lambda v: tir.min(v, c - 1)) if cp != c else (lambda v: v)

    q = h * wd

    def x0val(nn, bb, f, l):
        src = (nn, clamp(bb * L + l)) + ((f // wd, f % wd) if r == 2 else (f,))
        return x[src]
    # the channel-last copy of the input planes (written by a register transpose, see schedule)
    xt0 = te.compute((n, cb, q, L), x0val, name="xt0")

    def pix(nn, bb, ih, iw, l):     # the zero-point padded pixel, as int32 (int16 range)
        row, col = ih - pt, iw - pl
        conds = [col >= 0, col < wd] + ([row >= 0, row < h] if r == 2 else [])
        f = tir.max(tir.min(row * wd + col, q - 1), 0) if r == 2 else tir.max(tir.min(col, q - 1), 0)
        return cast(tir.if_then_else(tir.all(*conds), xt0[nn, bb, f, l], tir.const(zp, xdt)), "int32")

    def pack(lo, hi, signed):       # int32 lane = (lo: low int16, hi: high int16)
        lo = tir.bitwise_and(lo, tir.const(0xFFFF, "int32")) if signed else lo
        return tir.bitwise_or(lo, tir.shift_left(hi, tir.const(16, "int32")))
    # rows per band: the band's int32 window (rows x wp x L x 4 bytes) within ~96 KB, a divisor of oh
    rows_max = max(1, ((96 << 10) // (wp * L * 4) - (kh - 1) * dh - 1) // sh + 1)
    band = next(v for v in range(min(rows_max, oh), 0, -1) if oh % v == 0)
    zp_pair = (zp & 0xFFFF) * 0x10001                  # pack(zp, zp) as an int32
    zp_pair -= (1 << 32) if zp_pair >= (1 << 31) else 0
    # tap quads (QUAD): uint8 activations on VNNI, kernel width <= 4, width dilation 1, one band,
    # no pre-shifted weights (int8 weights cannot be shifted): a window entry holds the bytes of
    # the KW taps of a row (and the zero point in the spare bytes, weight 0), one ``vpdpbusd`` per
    # kernel row and pixel instead of one ``vpdpwssds`` per tap pair; the window is built by byte
    # shuffles of the channel-last pixels (``_quad_window``)
    pre = (str(attrs.get("act", "none")) in ("none", "hard_swish") and attrs.get("acc_bound") is not None
           and 0 < _acc_pre_shift(attrs) <= 8)
    quad = QUAD and isa.name == "vnni" and xdt == "uint8" and kw <= 4 and dw == 1 and wd >= 4 and band == oh and not pre
    if quad:
        kwp, wp = 1, (owp - 1) * sw + 1
        zp_pair = (zp & 0xFF) * 0x01010101             # the zero point in every byte, as an int32
        zp_pair -= (1 << 32) if zp_pair >= (1 << 31) else 0
    # one band (the window of the whole map): the window holds the input rows only (row ir is
    # padded row ir + pt); the tiles never read the top / bottom padding rows (_acc_tile), and
    # the TE definition of acc reads pack(zp, zp) there
    rows_only = r == 2 and band == oh and (pt > 0 or hp > h)
    row0 = pt if rows_only else 0
    if quad:
        xt = te.compute((n, cb, h if rows_only else hp, wp, L), lambda nn, bb, ih, iw, l: _pack4(
            [pix(nn, bb, ih + row0, iw + t, l) if t < kw else tir.const(zp, "int32") for t in range(4)]), name="xt")
    else:
        xt = te.compute((n, cb, h if rows_only else hp, wp, L), lambda nn, bb, ih, iw, l: pack(
            pix(nn, bb, ih + row0, iw, l), pix(nn, bb, ih + row0, iw + dw, l), xdt == "int8"), name="xt")

    def xpair(nn, bb, row, col, l):      # the window entry of padded row ``row``
        if not rows_only:
            return xt[nn, bb, row, col, l]
        ir = row - pt
        return tir.if_then_else(tir.all(ir >= 0, ir < h), xt[nn, bb, tir.max(tir.min(ir, h - 1), 0), col, l],
                                tir.const(zp_pair, "int32"))

    # the weights: the same transpose of the [c, kh*kw] rows to [cb, kh*kw, L], widened to int32
    kq = kh * kw

    def w0val(_, bb, f, l):
        src = (clamp(bb * L + l), 0) + ((f // kw, f % kw) if r == 2 else (f,))
        return w[src]
    wt0 = te.compute((1, cb, kq, L), w0val, name="wt0")

    act = str(attrs.get("act", "none"))
    # the vector epilogue: no activation or a fused hard swish (others: quant.py's, per lane)
    vec_req = act in ("none", "hard_swish")
    # with the node's acc_bound (every partial sum of bias and taps is within it, < 2^31): the
    # bias is the accumulators' initial value, and acc << k (quant.py _acc_pre_shift: right
    # shifts n + k >= 33, the same bits) comes from weights shifted by k (|w| * 2^k <= 2^15 for
    # k <= 8, so the pairs stay int16; the products and sums are exact)
    fold = vec_req and attrs.get("acc_bound") is not None
    kpre = _acc_pre_shift(attrs) if fold else 0
    if kpre > 8:                # (weights shifted beyond int16: the plain form)
        fold, kpre = False, 0
    if quad and kpre:
        raise ValueError("dwconv_lanes: tap quads with pre-shifted weights")

    def wquad(bb, a, p, l):
        return _pack4([tir.bitwise_and(cast(wt0[0, bb, a * kw + t, l], "int32"), tir.const(0xFF, "int32"))
                       if t < kw else tir.const(0, "int32") for t in range(4)])

    def wpair(bb, a, p, l):
        if quad:
            return wquad(bb, a, p, l)

        def wv(t):
            v = cast(wt0[0, bb, t, l], "int32")
            return tir.shift_left(v, tir.const(kpre, "int32")) if kpre else v
        if kw % 2 == 0:
            return pack(wv(a * kw + 2 * p), wv(a * kw + 2 * p + 1), True)
        t1 = tir.min(a * kw + 2 * p + 1, kq - 1)
        return pack(wv(a * kw + 2 * p), tir.if_then_else(2 * p + 1 < kw, wv(t1), tir.const(0, "int32")), True)
    wt = te.compute((cb, kh, kwp, L), wpair, name="wt")
    # the bias padded to cp entries (vector loads); folded: already shifted by kpre
    bp = te.compute((cp,), lambda i: tir.shift_left(b[clamp(i)], tir.const(kpre, "int32")) if fold and kpre
                    else b[clamp(i)], name="bpad") if b is not None and vec_req else None

    # per-channel epilogue parameters, padded to cp entries (vector loads in the epilogue)
    ms, ns = _req_params(attrs, 0) if tables is None else (None, None)
    shifts = [31 - int(v) for v in (attrs["shift"] if isinstance(attrs["shift"], (tuple, list))
                                    else (attrs["shift"],))]
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kwp), name="rw")

    def acc_init(bb, l):
        return bp[bb * L + l] if fold and bp is not None else None
    acc = te.compute((n, cb, oh, owp, L), lambda nn, bb, y, z, l: te.sum(
        (_quad_dot if quad else _pair_dot)(xpair(nn, bb, y * sh + rh * dh, z * sw + 2 * rw * dw, l),
                                            wt[bb, rh, rw, l]), axis=[rh, rw],
        init=acc_init(bb, l)), name="acc")
    n_min = min(shifts)
    if vec_req:
        reqv = _epilogue_lanes(acc, None if fold else bp, tables, attrs, ms, ns, cp, L, clamp, kpre)
    else:
        def reqv(nn, bb, y, z, l):
            return epilogue(acc[nn, bb, y, z, l], nn, clamp(bb * L + l), None)
    req = te.compute((n, cb, oh, owp, L), reqv, name="req")

    def out_f(nn, ch, *sp):
        y, z = (sp if r == 2 else (0, sp[0]))
        return req[nn, ch // L, y, z, ch % L]
    out = te.compute(tuple(int(d) for d in out_shape), out_f, name="out")
    macs = n * c * oh * ow * kh * kw

    def schedule(sch, spec) -> None:
        # the buffers the vector epilogue reads (taken from their producers before any change)
        tbufs = {}
        for name in ("acc", "mpad", "npad", "bpad"):
            try:
                tbufs[name] = sch.get(sch.get_sblock(name)).writes[0].source
            except Exception:  # noqa: BLE001  (no such block for this node)
                pass
        b_out = sch.get_sblock("out")
        ol = sch.get_loops(b_out)
        co, ci = sch.split(ol[1], [None, L])
        sch.reorder(co, ci)
        top = sch.fuse(ol[0], co)
        if macs >= PARALLEL_MIN_MACS and n * cb >= 2:
            sch.parallel(top)
        b_req, b_acc, b_xt, b_wt = (sch.get_sblock(v) for v in ("req", "acc", "xt", "wt"))
        sch.compute_at(b_req, top, preserve_unit_loops=True)
        sch.compute_at(b_acc, top, preserve_unit_loops=True)
        sch.compute_at(b_wt, top, preserve_unit_loops=True)
        sch.compute_at(b_xt, top, preserve_unit_loops=True)
        # the epilogue by tiles of tw pixels of a row, the accumulation of a tile under it (taps
        # outside, pixels and lanes inside)
        rl = sch.get_loops(b_req)
        yb = None
        if band < oh:
            # bands of output rows: the int32 window copy of a band stays in L2
            yb, _ = sch.split(rl[-3], [None, band])
            rl = sch.get_loops(b_req)
        zo, zi = sch.split(rl[-2], [None, tw])
        sch.compute_at(b_acc, zo, preserve_unit_loops=True)
        if yb is not None:
            sch.compute_at(b_xt, yb, preserve_unit_loops=True)
        sch.vectorize(sch.get_loops(b_req)[-1])
        sch.unroll(zi)
        for blk in ((b_wt,) if quad else (b_xt, b_wt)):
            sch.vectorize(sch.get_loops(blk)[-1])
        for name in ("mpad", "npad", "bpad"):
            try:
                blk = sch.get_sblock(name)
            except Exception:  # noqa: BLE001  (no such block for this node)
                continue
            _, v = sch.split(sch.get_loops(blk)[-1], [None, L])
            sch.vectorize(v)
        # the two transposes: L x L byte blocks in registers (unpack shuffles)
        b_x0 = sch.get_sblock("xt0")
        sch.compute_at(b_x0, top, preserve_unit_loops=True)
        x_buf, out_buf = sch.get(b_x0).reads[0].source, sch.get(b_out).writes[0].source
        xt0_buf = sch.get(b_x0).writes[0].source
        req_buf = sch.get(b_req).writes[0].source
        tv = sch.get(top).loop_var
        nn_e, bb_e = (tv // cb, tv % cb) if n > 1 else (tir.const(0, "int32"), tv)
        _replace_loop(sch, sch.get_loops(b_x0)[-4], _in_transpose(x_buf, xt0_buf, nn_e, bb_e, c, q, L, vbmi),
                      [x_buf], [(xt0_buf, (nn_e, bb_e))], "xt0_t")
        b_w0 = sch.get_sblock("wt0")
        sch.compute_at(b_w0, top, preserve_unit_loops=True)
        w_buf, wt0_buf = sch.get(b_w0).reads[0].source, sch.get(b_w0).writes[0].source
        zero = tir.const(0, "int32")
        _replace_loop(sch, sch.get_loops(b_w0)[-4], _in_transpose(w_buf, wt0_buf, zero, bb_e, c, kq, L, vbmi),
                      [w_buf], [(wt0_buf, (zero, bb_e))], "wt0_t")
        ph = oh if r == 2 else 1
        _replace_loop(sch, ci, _out_transpose(req_buf, out_buf, nn_e, bb_e, c, ph, ow, L, vbmi),
                      [(req_buf, (nn_e, bb_e))], [out_buf],
                      "out_t")

        rl = sch.get_loops(b_req)
        y_v, zo_v = sch.get(rl[-4]).loop_var, sch.get(rl[-3]).loop_var
        if yb is not None:
            y_v = sch.get(rl[-5]).loop_var * band + y_v
        # the accumulation of a tile (pair MACs, padding rows from the weights): written TIR
        al = sch.get_loops(b_acc)
        ki = next(i for i, lp in enumerate(al) if sch.get(lp).same_as(sch.get(zo)))
        xtb, wtb, accb = (sch.get(bk).writes[0].source for bk in (b_xt, b_wt, b_acc))
        nn_a, bb_a = (tv // cb, tv % cb) if n > 1 else (tir.const(0, "int32"), tv)
        z0 = sch.get(zo).loop_var * tw
        init = None
        if fold and "bpad" in tbufs:
            init = tir.BufferLoad(tbufs["bpad"], [tir.Ramp(bb_a * L, 1, L)])
        body = _acc_tile(isa.name, xtb, wtb, accb, nn_a, bb_a, y_v, z0, g, tw, kwp, zp_pair, L, init, row0,
                         mac=_quad_mac if quad else None)
        one = lambda v: tvm.ir.Range.from_min_extent(v, 1)  # noqa: E731
        x_rows = tvm.ir.Range(0, h) if rows_only else tvm.ir.Range.from_min_extent(y_v * sh, (kh - 1) * dh + 1)
        x_rd = [one(nn_a), one(bb_a), x_rows,
                tvm.ir.Range.from_min_extent(z0 * sw, (tw - 1) * sw + 2 * (kwp - 1) * dw + 1), tvm.ir.Range(0, L)]
        a_wr = [one(nn_a), one(bb_a), one(y_v), tvm.ir.Range.from_min_extent(z0, tw), tvm.ir.Range(0, L)]
        w_rd = [one(bb_a)] + [tvm.ir.Range(0, d) for d in wtb.shape[1:]]
        a_rd = [(xtb, x_rd), (wtb, w_rd)] + ([tbufs["bpad"]] if init is not None else [])
        _replace_loop(sch, al[ki + 1], body, a_rd, [(accb, a_wr)], "acc_t")
        if vec_req:
            reqb = sch.get(b_req).writes[0].source
            tabs = (tbufs.get("mpad"), tbufs.get("npad"), None, tbufs.get("bpad"))
            accb = tbufs["acc"]
            z0 = zo_v * tw
            zs = [z0 + i for i in range(tw)]
            nn_r, bb_r = (sch.get(top).loop_var // cb, sch.get(top).loop_var % cb) if n > 1 else (
                tir.const(0, "int32"), sch.get(top).loop_var)
            body = _req_vectors(accb, reqb, tabs, attrs, (ms, ns), nn_r, bb_r, y_v, zs, L, n_min, fold, kpre)
            pt_ = [tvm.ir.Range.from_min_extent(nn_r, 1), tvm.ir.Range.from_min_extent(bb_r, 1),
                   tvm.ir.Range.from_min_extent(y_v, 1), tvm.ir.Range.from_min_extent(z0, tw), tvm.ir.Range(0, L)]
            reads = [(accb, pt_)] + [t for t in tabs if t is not None]
            _replace_loop(sch, rl[-2], body, reads, [(reqb, pt_)], "req_v")
        if quad:
            # the window of tap quads: byte shuffles of the channel-last pixels (written TIR)
            xrows = int(xtb.shape[2])
            _replace_loop(sch, sch.get_loops(b_xt)[-5],
                          _quad_window(xt0_buf, xtb, nn_e, bb_e, xrows, wd, wp, pl, kw, zp, L),
                          [(xt0_buf, (nn_e, bb_e))], [(xtb, (nn_e, bb_e))], "xt_q")

    return out, schedule


__all__ = ["LANES", "dwconv_lanes", "dwconv_lanes_fits"]
