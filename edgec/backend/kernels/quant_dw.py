"""int8 depthwise qconv with the *channels* in the vector lanes (x86: AVX-512 VNNI and AVX2).

``dwconv_lanes`` works per batch index and block of L channels (L int32 lanes: 16 on the VNNI
host, 8 on AVX2; the last block of a channel count that is not a multiple of L repeats channel
c - 1 in its spare lanes and does not write them back):

1. ``xt0[q, l]``: the block's input planes transposed to channel-last bytes by L x L register
   transposes (log2(L) rounds of unpack shuffles, ``_transpose``; the last L pixels of a plane
   are transposed again when q is not a multiple of L); the weights the same way (``wt0``).
2. ``xt[ih, iw, l]``: the zero-point padded window, widened to int32 lanes (one vpmovzxbd and
   one store per pixel), computed per band of output rows so that it stays in L2.
3. ``acc[oh, ow, l] = sum_taps xt[oh*sh + kh*dh, ow*sw + kw*dw, l] * w[kh, kw, l]``: a register
   tile of ``tw`` pixels of a row (tw accumulators), one instruction per tap and vector: for
   uint8 pixels ``vpdpwssds`` (VNNI) / ``vpmaddwd`` + add (AVX2) on the int32 lanes, exact since
   the zero-extended pixel leaves the upper int16 of each lane zero (no saturation: |acc| <
   255 * 128 * taps); int8 pixels: vpmulld + add.
4. the requantization right after the tile, on whole channel vectors (``_req_vectors``): for
   right shifts n >= 32 (every channel), ``a = acc + bias`` in int32 (the reference requires it
   to fit), even/odd 32 x 32 -> 64-bit products (vpmuldq, no widening), ``P = p + 2^(n-1) +
   (p >> 63)`` in int64, then ``(P >> 32) >> (n - 32)`` and the clamp in int32: the bits of
   quant.py ``requant_expr``; shifts below 32 use ``requant_expr`` itself, a fused activation
   quant.py's epilogue, both per lane.
5. ``out``: the channel-last bytes transposed back to the NCHW planes (register transposes).

Steps 1, 4 and 5 are written as TIR statements (vector loads, shuffles, stores) that replace the
scheduled blocks (``_replace_loop``), declared to read / write the same regions.
"""
from __future__ import annotations

import threading

import tvm
from tvm import te

from ._nn_sched import PARALLEL_MIN_MACS, cast
from .quant_isa import Isa

tir = tvm.tirx

LANES = {"vnni": 16, "avx2": 8}
_LOCK = threading.Lock()
# tap intrinsics: acc[l] += x[l] * w[l] on int32 lanes whose pixel has its upper 16 bits zero
# (zero-extended uint8), so the int16 pair instructions compute the plain product exactly
TAP_INTRIN = {"vnni": "edgec_dw_wssd_16", "avx2": "edgec_dw_pmaddwd_8"}


def _tap_intrin(isa_name: str) -> str:
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T
    name = TAP_INTRIN[isa_name]
    with _LOCK:
        try:
            TensorIntrin.get(name)
            return name
        except Exception:  # noqa: BLE001  (not registered yet)
            pass
        if isa_name == "vnni":
            @T.prim_func(s_tir=True)
            def desc(A: T.Buffer((16,), "int32", offset_factor=1), B: T.Buffer((16,), "int32", offset_factor=1),
                     C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
                with T.sblock("root"):
                    T.reads(C[0:16], A[0:16], B[0:16])
                    T.writes(C[0:16])
                    for i in T.serial(0, 16):
                        with T.sblock("update"):
                            vi = T.axis.remap("S", [i])
                            C[vi] = C[vi] + A[vi] * B[vi]

            @T.prim_func(s_tir=True)
            def impl(A: T.Buffer((16,), "int32", offset_factor=1), B: T.Buffer((16,), "int32", offset_factor=1),
                     C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
                with T.sblock("root"):
                    T.reads(C[0:16], A[0:16], B[0:16])
                    T.writes(C[0:16])
                    C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                        T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpwssds.512"), C.vload([0], dtype="int32x16"),
                        T.reinterpret(A.vload([0], dtype="int32x16"), dtype="int16x32"),
                        T.reinterpret(B.vload([0], dtype="int32x16"), dtype="int16x32"), dtype="int32x16")
        else:
            @T.prim_func(s_tir=True)
            def desc(A: T.Buffer((8,), "int32", offset_factor=1), B: T.Buffer((8,), "int32", offset_factor=1),
                     C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
                with T.sblock("root"):
                    T.reads(C[0:8], A[0:8], B[0:8])
                    T.writes(C[0:8])
                    for i in T.serial(0, 8):
                        with T.sblock("update"):
                            vi = T.axis.remap("S", [i])
                            C[vi] = C[vi] + A[vi] * B[vi]

            @T.prim_func(s_tir=True)
            def impl(A: T.Buffer((8,), "int32", offset_factor=1), B: T.Buffer((8,), "int32", offset_factor=1),
                     C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
                with T.sblock("root"):
                    T.reads(C[0:8], A[0:8], B[0:8])
                    T.writes(C[0:8])
                    C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                        T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                        T.reinterpret(A.vload([0], dtype="int32x8"), dtype="int16x16"),
                        T.reinterpret(B.vload([0], dtype="int32x8"), dtype="int16x16"), dtype="int32x8")
        TensorIntrin.register(name, desc, impl)
    return name


def dwconv_lanes_fits(isa: Isa | None, x_dtype: str, groups: int, c: int, oc: int, rank: int,
                      kernel_w: int = 3, out_w: int = 1, act: str = "none") -> bool:
    """Depthwise (one input channel per output channel, multiplier 1), 1-D or 2-D, uint8/int8
    activations, on an x86 ISA (VNNI host or AVX2), where it beats the portable width-in-lanes
    schedule (``conv_direct``). Measured on Zen 4, 1 thread: always for kernel widths >= 5
    (PP-OCR 5x5: 1.2-1.4x over the vpdpbusd width-tap kernel) and for rows narrower than 16
    (DS-CNN 25x5: 1.8x); for wider rows only when the channels fill the lanes and no activation
    is fused (MobileNetV2 3x3: 1.1-1.2x); PP-OCR's 3x3 ones (8-32 channels, 96-wide rows, fused
    hard swish) ran 1.3-2x slower here than on ``conv_direct``."""
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


def _flat(buf, name: str):
    """A 1-D view of a (compact) kernel parameter."""
    size = 1
    for d in buf.shape:
        size *= int(d)
    flat = tir.decl_buffer((size,), buf.dtype, name=name)
    return flat, tir.DeclBuffer(flat, data=buf.data)


def _in_transpose(x_buf, xt0_buf, nn, bb, c: int, q: int, L: int):
    """xt0[nn, bb, f, l] = x_plane(channel min(bb*L + l, c-1))[f] for the q pixels of a plane."""
    xf, decl = _flat(x_buf, "x_flat")
    ch = [tir.min(bb * L + l, c - 1) if (c % L) else bb * L + l for l in range(L)]
    base = [(nn * c + cc) * q for cc in ch]
    full = q // L
    body = []

    def block(start):
        vecs = [tir.BufferLoad(xf, [tir.Ramp(base[l] + start, 1, L)]) for l in range(L)]
        cols = _transpose(vecs, L)
        return tir.SeqStmt([tir.BufferStore(xt0_buf, cols[j], [nn, bb, start + j, tir.Ramp(0, 1, L)])
                            for j in range(L)])
    if full:
        pb = tir.Var("pb", "int32")
        body.append(tir.For(pb, 0, full, tir.ForKind.SERIAL, block(pb * L)))
    if q % L and full:
        body.append(block(tir.const(q - L, "int32")))      # the last L pixels again (overlap)
    elif q % L:
        f = tir.Var("f", "int32")
        st = [tir.BufferStore(xt0_buf, tir.BufferLoad(xf, [base[l] + f]), [nn, bb, f, l]) for l in range(L)]
        body.append(tir.For(f, 0, q, tir.ForKind.SERIAL, tir.SeqStmt(st)))
    return tir.SeqStmt([decl] + body)


def _out_transpose(req_buf, out_buf, nn, bb, c: int, oh: int, ow: int, L: int):
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
    """One requantization stage on vectors of L int32 lanes (channels): ``m`` / ``n`` /
    ``half`` either per-lane int32 / int32 / int64 vectors (tables) or ints, ``zp`` and the clamp
    [lo, hi] ints. ``apply(a)`` gives ``clamp(round(a * m / 2^n) + zp, lo, hi)`` as int32 lanes
    with the bits of quant.py ``requant_expr``: even and odd lanes multiplied as 32 x 32 -> 64-bit
    products, ``P = p + 2^(n-1) + (p >> 63)``; when every n >= 32, ``(P >> 32) >> (n - 32)`` in
    int32 (exact: |P| < 2^63), else ``P >> n`` in int64 clamped before the lanes are merged."""

    def __init__(self, L, m, n, half, zp, lo, hi, n_min):
        H = L // 2
        self.L, self.H, self.zp, self.lo, self.hi = L, H, zp, lo, hi
        self.i64 = lambda v: tir.Broadcast(tir.const(int(v), "int64"), H)  # noqa: E731
        ev, od = [2 * j for j in range(H)], [2 * j + 1 for j in range(H)]
        self.hi_path = n_min >= 32

        def eo32(v):            # an int32xL vector -> its even / odd lanes sign-extended to int64xH
            v64 = tir.reinterpret(f"int64x{H}", v)
            return (tir.shift_right(tir.shift_left(v64, self.i64(32)), self.i64(32)),
                    tir.shift_right(v64, self.i64(32)))
        self.eo32 = eo32
        self.mE, self.mO = eo32(m) if not isinstance(m, int) else (self.i64(m), self.i64(m))
        if isinstance(half, int):
            self.cE = self.cO = self.i64(half)
        else:
            self.cE, self.cO = (tir.Shuffle([half], [tir.const(i, "int32") for i in ix]) for ix in (ev, od))
        # shift amounts as max(., 0): TVM's integer simplifier mis-bounds ``x >> (n - 32)`` for a
        # loaded n (it folded the clamp after it away); the max keeps the bounds right
        if self.hi_path:
            self.k = (tir.Broadcast(tir.const(n - 32, "int32"), L) if isinstance(n, int)
                      else tir.Max(n - tir.Broadcast(tir.const(32, "int32"), L), tir.Broadcast(tir.const(0, "int32"), L)))
        elif isinstance(n, int):
            self.nE = self.nO = self.i64(n)
        else:
            self.nE, self.nO = (tir.Max(v, self.i64(0)) for v in eo32(n))

    def apply(self, a):
        L, i64 = self.L, self.i64
        aE, aO = self.eo32(a)
        tE, tO = aE * self.mE, aO * self.mO
        pE = tE + self.cE + tir.shift_right(tE, i64(63))
        pO = tO + self.cO + tir.shift_right(tO, i64(63))
        b32 = lambda v: tir.Broadcast(tir.const(int(v), "int32"), L)  # noqa: E731
        if self.hi_path:
            hE = tir.reinterpret(f"int32x{L}", tir.shift_right(pE, i64(32)))
            hO = tir.reinterpret(f"int32x{L}", pO)
            r = tir.Shuffle([hE, hO], [tir.const(j if j % 2 == 0 else L + j, "int32") for j in range(L)])
            r = tir.shift_right(r, self.k)
            r = tir.Max(tir.Min(r, b32(self.hi - self.zp)), b32(self.lo - self.zp))
        else:
            lo, hi = i64(self.lo - self.zp), i64(self.hi - self.zp)
            rE = tir.Max(tir.Min(tir.shift_right(pE, self.nE), hi), lo)
            rO = tir.Max(tir.Min(tir.shift_right(pO, self.nO), hi), lo)
            r = tir.Shuffle([tir.reinterpret(f"int32x{L}", rE), tir.reinterpret(f"int32x{L}", rO)],
                            [tir.const(j if j % 2 == 0 else L + j - 1, "int32") for j in range(L)])
        return r + b32(self.zp) if self.zp else r


def _req_vectors(acc_buf, req_buf, tabs, attrs, consts, nn, bb, y, zs, L: int, n_min: int):
    """The epilogue of the tile on whole channel vectors for the output pixels ``zs`` of row ``y``
    (the TE definition is ``_epilogue_lanes``): ``a = acc + bias`` in int32 (the reference requires
    the biased accumulator to fit int32, qmath.requantize), then one ``_Rq`` stage, or for a fused
    hard swish (edgec/ops/quant.py module doc) h = the first stage to [act_hmin, act_hmax],
    ``t = clamp(h + 3*2^F, 0, 6*2^F)``, ``p = h * t`` (int32) and the second stage.
    ``tabs``: the (mpad, npad, hpad, bpad) buffers, None where ``consts`` = (m, n) serve every
    channel (bpad: no bias)."""
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
    bv = ld(bpad) if bpad is not None else None
    zo, qlo, qhi, odt = int(attrs["out_zero_point"]), int(attrs["qmin"]), int(attrs["qmax"]), str(attrs["out_dtype"])
    act = str(attrs.get("act", "none")) == "hard_swish"
    if act:
        f = int(attrs["act_frac_bits"])
        st1 = _Rq(L, mv, nv, hv, 0, int(attrs["act_hmin"]), int(attrs["act_hmax"]), n_min)
        an = 31 - int(attrs["act_shift"])
        st2 = _Rq(L, int(attrs["act_multiplier"]), an, 1 << (an - 1), zo, qlo, qhi, an)
    else:
        st1 = _Rq(L, mv, nv, hv, zo, qlo, qhi, n_min)
    b32 = lambda v: tir.Broadcast(tir.const(int(v), "int32"), L)  # noqa: E731
    out = []
    for z in zs:
        a = tir.BufferLoad(acc_buf, [nn, bb, y, z, tir.Ramp(0, 1, L)])
        if bv is not None:
            a = a + bv
        r = st1.apply(a)
        if act:
            t = tir.Max(tir.Min(r + b32(3 << f), b32(6 << f)), b32(0))
            r = st2.apply(r * t)
        out.append(tir.BufferStore(req_buf, tir.Cast(f"{odt}x{L}", r), [nn, bb, y, z, tir.Ramp(0, 1, L)]))
    return tir.SeqStmt(out) if len(out) > 1 else out[0]


def _replace_loop(sch, loop, body, reads, writes, name: str) -> None:
    """Replace ``loop`` (and the blocks under it) by one opaque block running ``body``, declared
    to read / write the whole of ``reads`` / ``writes`` (the last schedule step: nothing is moved
    after it)."""
    def region(buf):
        if isinstance(buf, tuple) and isinstance(buf[1], list):   # (buffer, [Range per dimension])
            return tir.BufferRegion(buf[0], buf[1])
        if isinstance(buf, tuple):      # (buffer, leading indices): one point there, all of the rest
            buf, lead = buf
            rng = [tvm.ir.Range.from_min_extent(v, 1) for v in lead]
            return tir.BufferRegion(buf, rng + [tvm.ir.Range(0, d) for d in buf.shape[len(lead):]])
        return tir.BufferRegion(buf, [tvm.ir.Range(0, d) for d in buf.shape])
    blk = tvm.s_tir.SBlock([], [region(b) for b in reads], [region(b) for b in writes], name, body)
    realize = tvm.s_tir.SBlockRealize([], tir.const(True, "bool"), blk)
    lv = tir.Var("u", "int32")
    sch.state.replace(sch.get_sref(loop), tir.For(lv, 0, 1, tir.ForKind.SERIAL, realize))


def _epilogue_lanes(acc, b, tables, attrs, ms, ns, cp: int, L: int, clamp):
    """The TE definition of the epilogue that ``_req_vectors`` computes: quant.py's
    ``requant_expr`` / ``_hard_swish_requant`` per lane (the bits of ``_requant_node``) on
    per-channel tables padded to cp entries (``mpad``, ``npad``, ``bpad``: vector loads)."""
    from .quant import _hard_swish_requant, requant_expr
    if tables is not None:
        mt = te.compute((cp,), lambda i: tables[0][clamp(i)], name="mpad")
        nt = te.compute((cp,), lambda i: tables[1][clamp(i)], name="npad")
    else:
        mt = nt = None
    bp = te.compute((cp,), lambda i: b[clamp(i)], name="bpad") if b is not None else None
    zo, qlo, qhi, odt = int(attrs["out_zero_point"]), int(attrs["qmin"]), int(attrs["qmax"]), str(attrs["out_dtype"])
    act = str(attrs.get("act", "none")) == "hard_swish"

    def reqv(nn, bb, y, z, l):
        ch = bb * L + l
        a = acc[nn, bb, y, z, l]
        a = (a, bp[ch]) if bp is not None else a
        m_ = mt[ch] if mt is not None else ms
        n_ = nt[ch] if nt is not None else ns
        if act:
            return _hard_swish_requant(a, m_, n_, attrs)
        return requant_expr(a, m_, n_, zo, qlo, qhi, odt)
    return reqv


def dwconv_lanes(isa: Isa, x: te.Tensor, w: te.Tensor, b: te.Tensor | None, attrs, out_shape, tables, epilogue):
    """Returns (out, schedule). ``tables``: quant.py ``_req_tables`` result (or None);
    ``epilogue(acc, n, channel, None)``: quant.py's requantization of one accumulator (adds the
    bias), used as is for a fused activation."""
    from .quant import _req_params
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
    tw_max = max(1, min(8, regs - 4 - (kh * kw if kh * kw <= 12 else 0)))
    tw = next(v for v in range(min(tw_max, ow), 0, -1) if ow % v == 0)
    if tw < 4 and ow > 4:
        tw = min(tw_max, ow)
    owp = -(-ow // tw) * tw
    wp = (owp - 1) * sw + (kw - 1) * dw + 1
    clamp = (lambda v: tir.min(v, c - 1)) if cp != c else (lambda v: v)

    q = h * wd

    def x0val(nn, bb, f, l):
        src = (nn, clamp(bb * L + l)) + ((f // wd, f % wd) if r == 2 else (f,))
        return x[src]
    # the channel-last copy of the input planes (written by a register transpose, see schedule)
    xt0 = te.compute((n, cb, q, L), x0val, name="xt0")

    def xval(nn, bb, ih, iw, l):
        row, col = ih - pt, iw - pl
        conds = [col >= 0, col < wd] + ([row >= 0, row < h] if r == 2 else [])
        f = tir.max(tir.min(row * wd + col, q - 1), 0) if r == 2 else tir.max(tir.min(col, q - 1), 0)
        return cast(tir.if_then_else(tir.all(*conds), xt0[nn, bb, f, l], tir.const(zp, xdt)), "int32")
    xt = te.compute((n, cb, hp, wp, L), xval, name="xt")

    # the weights: the same transpose of the [c, kh*kw] rows to [cb, kh*kw, L], widened to int32
    kq = kh * kw

    def w0val(_, bb, f, l):
        src = (clamp(bb * L + l), 0) + ((f // kw, f % kw) if r == 2 else (f,))
        return w[src]
    wt0 = te.compute((1, cb, kq, L), w0val, name="wt0")
    wt = te.compute((cb, kh, kw, L), lambda bb, a, t, l: cast(wt0[0, bb, a * kw + t, l], "int32"), name="wt")

    # per-channel epilogue parameters, padded to cp entries (vector loads in the epilogue)
    ms, ns = _req_params(attrs, 0) if tables is None else (None, None)
    shifts = [31 - int(v) for v in (attrs["shift"] if isinstance(attrs["shift"], (tuple, list))
                                    else (attrs["shift"],))]
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")
    acc = te.compute((n, cb, oh, owp, L), lambda nn, bb, y, z, l: te.sum(
        cast(xt[nn, bb, y * sh + rh * dh, z * sw + rw * dw, l], "int32") * wt[bb, rh, rw, l], axis=[rh, rw]),
        name="acc")
    n_min = min(shifts)
    act = str(attrs.get("act", "none"))
    # the vector epilogue: no activation or a fused hard swish (others: quant.py's, per lane)
    vec_req = act in ("none", "hard_swish")
    if vec_req:
        reqv = _epilogue_lanes(acc, b, tables, attrs, ms, ns, cp, L, clamp)
    else:
        def reqv(nn, bb, y, z, l):
            return epilogue(acc[nn, bb, y, z, l], nn, clamp(bb * L + l), None)
    req = te.compute((n, cb, oh, owp, L), reqv, name="req")

    def out_f(nn, ch, *sp):
        y, z = (sp if r == 2 else (0, sp[0]))
        return req[nn, ch // L, y, z, ch % L]
    out = te.compute(tuple(int(d) for d in out_shape), out_f, name="out")
    macs = n * c * oh * ow * kh * kw

    # rows per band: the band's int32 window (rows x wp x L x 4 bytes) within ~96 KB, a divisor of oh
    rows_max = max(1, ((96 << 10) // (wp * L * 4) - (kh - 1) * dh - 1) // sh + 1)
    band = next(v for v in range(min(rows_max, oh), 0, -1) if oh % v == 0)

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
        al = sch.get_loops(b_acc)
        z_l, l_l, h_l, w_l = al[-4:]
        sch.reorder(h_l, w_l, z_l, l_l)
        sch.unroll(z_l)
        sch.unroll(w_l)
        sch.unroll(h_l)
        if xdt != "uint8":
            sch.vectorize(l_l)
        sch.decompose_reduction(b_acc, h_l)
        if xdt == "uint8":
            sch.tensorize(l_l, _tap_intrin(isa.name))
        for blk in (b_xt, b_wt):
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
        _replace_loop(sch, sch.get_loops(b_x0)[-4], _in_transpose(x_buf, xt0_buf, nn_e, bb_e, c, q, L),
                      [x_buf], [(xt0_buf, (nn_e, bb_e))], "xt0_t")
        b_w0 = sch.get_sblock("wt0")
        sch.compute_at(b_w0, top, preserve_unit_loops=True)
        w_buf, wt0_buf = sch.get(b_w0).reads[0].source, sch.get(b_w0).writes[0].source
        zero = tir.const(0, "int32")
        _replace_loop(sch, sch.get_loops(b_w0)[-4], _in_transpose(w_buf, wt0_buf, zero, bb_e, c, kq, L),
                      [w_buf], [(wt0_buf, (zero, bb_e))], "wt0_t")
        ph = oh if r == 2 else 1
        _replace_loop(sch, ci, _out_transpose(req_buf, out_buf, nn_e, bb_e, c, ph, ow, L),
                      [(req_buf, (nn_e, bb_e))], [out_buf],
                      "out_t")

        if vec_req:
            rl = sch.get_loops(b_req)
            y_v, zo_v = sch.get(rl[-4]).loop_var, sch.get(rl[-3]).loop_var
            if yb is not None:
                y_v = sch.get(rl[-5]).loop_var * band + y_v
            reqb = sch.get(b_req).writes[0].source
            tabs = (tbufs.get("mpad"), tbufs.get("npad"), None, tbufs.get("bpad"))
            accb = tbufs["acc"]
            z0 = zo_v * tw
            zs = [z0 + i for i in range(tw)]
            nn_r, bb_r = (sch.get(top).loop_var // cb, sch.get(top).loop_var % cb) if n > 1 else (
                tir.const(0, "int32"), sch.get(top).loop_var)
            body = _req_vectors(accb, reqb, tabs, attrs, (ms, ns), nn_r, bb_r, y_v, zs, L, n_min)
            pt_ = [tvm.ir.Range.from_min_extent(nn_r, 1), tvm.ir.Range.from_min_extent(bb_r, 1),
                   tvm.ir.Range.from_min_extent(y_v, 1), tvm.ir.Range.from_min_extent(z0, tw), tvm.ir.Range(0, L)]
            reads = [(accb, pt_)] + [t for t in tabs if t is not None]
            _replace_loop(sch, rl[-2], body, reads, [(reqb, pt_)], "req_v")

    return out, schedule


__all__ = ["LANES", "dwconv_lanes", "dwconv_lanes_fits"]
