"""int8 depthwise qconv with the *width* in the vector lanes (x86: AVX-512 VNNI and AVX2), for
large planes: the NCHW layout is kept (no transposes), each task a group of channel planes.

``dwconv_rows`` computes one (batch index, channel) plane at a time, L int32 lanes (16 on the
VNNI host, 8 on AVX2), in bands of output rows (``ob`` = as many as RING = 16 input rows serve):

1. the band's new input rows, zero-point padded, into a ring of RING rows (row r in slot
   r % RING), in one of two forms:
   - *quad words* (VNNI, uint8 pixels): the padded row as bytes (``brow``; the columns outside
     the input hold the zero point from the group's start on, a padding row is all zero point),
     then the row of int32 words ``words[k]`` = bytes (k .. k + 3) (stride 1) or (2k .. 2k + 3)
     (stride 2): per 16 words one 64-byte load, a dword permute and ``vpshufb`` (``_build_words``;
     a loop of its own after the bytes of every row of the band are stored, so its unaligned loads
     read finished stores);
   - *pair words* (AVX2, and int8 pixels on VNNI): the int32 word k = (padded pixel k, k + 1) as
     (low, high) int16 (stride 1: two byte loads, ``vpmovzxbd`` / ``vpmovsxbd``, shift, or), or
     for stride 2 the padded row widened to int16 (``vpmovzxbw``), whose word k is the pair
     (2k, 2k + 1).
2. a tile of L consecutive outputs ox0 .. ox0 + L - 1 of one row: the L words from ox0 + 4q
   (stride 1) / ox0 + 2q (stride 2) of kernel row a's ring row times the broadcast weight quad
   (w[a][4q .. 4q + 3], zero past kw), one ``vpdpbusd`` (u8 x s8, 4 products per lane, not
   saturating) per quad: 3x3 takes 3 instructions per 16 outputs. Pairs: the words from ox0 + 2p
   (stride 1) / entries 2*ox0 + 2p (stride 2) times (w[a][2p], w[a][2p + 1]) on ``vpdpwssds``
   (VNNI) / ``vpmaddwd`` + ``vpaddd`` (AVX2): 6 per tile for 3x3.
3. the requantization on the tile's int32 vector, the channel's multiplier / shift / bias
   broadcast (``_rq_vec``): ``a = acc + bias`` (int32, as the reference requires), then for right
   shifts n >= 33 (every channel) quant.py ``requant_hi32``'s form (unsigned 32 x 32 -> 64-bit
   products of |a|, their high halves, the sign put back; with a ReLU-style clamp, qmin >= the
   output zero point, of max(a, 0) without a sign), else the signed 64-bit products of even and
   odd lanes with quant.py ``requant_expr``'s rounding; a fused hard swish then runs quant.py
   ``_hard_swish_tail`` on the vectors. Narrowed to bytes and stored straight into the NCHW
   output row. A row whose width is not a multiple of L recomputes its last tile at ow - L
   (overlapping stores of the same values); rows narrower than L go through a staging buffer.

The planes are split into CHUNKS groups (the parallel loop; the rings are allocated once per
group). Everything under the group loop is written TIR (vector loads, LLVM intrinsics, shuffles,
stores) that replaces the scheduled block, declared to read / write the same buffers; the TE
definition it replaces (``out`` below: the padded sum of products, then quant.py's epilogue)
states what it computes. Every product and partial sum is exact: a tap sum without the bias is
at most 255 * 128 * kh * kw in magnitude (``vpdpwssds`` never saturates; its saturating form
keeps LLVM from splitting the instruction).
"""
from __future__ import annotations

import tvm
from tvm import te

from ._nn_sched import PARALLEL_MIN_MACS, cast
from .quant_dw import _const_vec, _Rq, _flat, _pair_mac, _replace_loop, _seq
from .quant_isa import Isa

tir = tvm.tirx

LANES = {"vnni": 16, "avx2": 8}
ROWS_MIN_WIDTH = 28     # input columns (out_w * stride) from which dwconv_rows_fits takes the planes (VNNI)
ROWS_MIN_HEIGHT = 8     # input rows (out_h * stride) from which it takes them


def _geom(x, w, attrs, out_shape) -> dict:
    return dict(signed=str(x.dtype) == "int8", n=int(x.shape[0]), c=int(x.shape[1]), h=int(x.shape[2]),
                wd=int(x.shape[3]),
                kh=int(w.shape[2]), kw=int(w.shape[3]), sh=int(attrs["strides"][0]), sw=int(attrs["strides"][1]),
                pt=int(attrs["pads"][0]), pl=int(attrs["pads"][1]), oh=int(out_shape[2]), ow=int(out_shape[3]))


def dwconv_rows_fits(isa: Isa | None, x_dtype: str, groups: int, c: int, oc: int, rank: int,
                     kh: int, kw: int, stride, out_w: int, dilation=(1, 1), out_dtype: str = "uint8",
                     act: str = "none", out_h: int | None = None, min_right_shift: int = 33) -> bool:
    """Depthwise 2-D (one input channel per output channel), uint8/int8 activations and outputs,
    kernels 3x3 / 5x5, strides 1 or 2 on each axis, dilation 1, no activation or a fused hard
    swish, on an x86 ISA, for planes of at least ``ROWS_MIN_HEIGHT`` input rows (out_h * stride;
    PP-OCR's 2-3 row maps stay on ``dwconv_lanes``, which skips the padding rows) and, on the
    VNNI host, at least ``ROWS_MIN_WIDTH`` input columns (out_w * stride). On AVX2 (no 64-bit
    arithmetic shift) only when every right shift n = 31 - shift is >= 32 (``min_right_shift``,
    the usual case: multipliers below 1/2). Measured on Zen 4, 1 thread, against
    ``dwconv_lanes`` (channels in the lanes), MobileNetV2's 3x3 convs on VNNI: 112 wide 1.8x
    (stride 1) / 1.9x (stride 2), 56 wide 1.3-1.5x / 1.8x, 28 wide 1.35x / 1.25x, 14 wide
    1.1x / 0.8x, 7 wide 0.5x (rows of a plane fill few lanes, the per-plane setup dominates);
    AVX2 (8 lanes): 1.2-3.9x at every width; PP-OCR's 2-3 row maps 0.6-1.0x."""
    if not (isa is not None and isa.name in LANES and x_dtype in ("uint8", "int8") and groups == c == oc
            and rank == 2 and out_dtype in ("uint8", "int8") and act in ("none", "hard_swish")):
        return False
    st = tuple(int(v) for v in (stride if isinstance(stride, (tuple, list)) else (stride, stride)))
    dl = tuple(int(v) for v in (dilation if isinstance(dilation, (tuple, list)) else (dilation, dilation)))
    if not ((kh, kw) in ((3, 3), (5, 5)) and all(s in (1, 2) for s in st) and dl == (1, 1)):
        return False
    if out_h is not None and out_h * st[0] < ROWS_MIN_HEIGHT:
        return False
    if isa.name == "avx2":
        return min_right_shift >= 32
    return out_w * st[1] >= ROWS_MIN_WIDTH


def _min_right_shift(attrs) -> int:
    """The smallest right shift n = 31 - shift of the node's (per-channel) requantization."""
    sh = attrs["shift"]
    return min(31 - int(v) for v in (sh if isinstance(sh, (tuple, list)) else (sh,)))


# -- the requantization on vectors of one channel -----------------------------------------------

def _rq_vec(a, m, n, zp: int, lo: int, hi: int, L: int, hi32: bool, n_min: int = 0, signed: bool = False):
    """clamp(round(a * m / 2^n) + zp, lo, hi) on an int32xL vector ``a`` with one (m, n) for every
    lane (ints or int32 scalar expressions): quant_dw's ``_Rq`` stage, on the multiply-high form
    of quant.py ``requant_hi32`` exactly when ``hi32`` (every n >= 33, quant.py ``_hi32_ok``),
    else ``requant_expr``'s; ``n_min``: the smallest n of the node (>= 32: the shift in 32-bit
    lanes). With a ReLU-style clamp (lo >= zp) the multiply-high needs no sign; ``signed``: no
    product lands on a rounding tie (quant.py ``_hi32_signed_ok``), the signed multiply-high."""
    return _Rq(L, m, n, None, zp, lo, hi, n_min, abs_path=hi32, signed=signed).apply(a)


def _epilogue_vec(a, attrs, m, n, L: int, hi32: bool):
    """The node's requantization (or fused hard swish) of the int32xL vector ``a`` (bias added),
    narrowed to the output dtype."""
    from .quant import HI32_SIGNED, _hard_swish_tail, _hi32_signed_ok
    odt = str(attrs["out_dtype"])
    n_min = _min_right_shift(attrs)
    sgn = hi32 and HI32_SIGNED and _hi32_signed_ok(attrs)
    if str(attrs.get("act", "none")) == "hard_swish":
        h = _rq_vec(a, m, n, 0, int(attrs["act_hmin"]), int(attrs["act_hmax"]), L, hi32, n_min=n_min, signed=sgn)
        return _hard_swish_tail(h, attrs, lanes=L)
    r = _rq_vec(a, m, n, int(attrs["out_zero_point"]), int(attrs["qmin"]), int(attrs["qmax"]), L, hi32, n_min,
                signed=sgn)
    return tir.Cast(f"{odt}x{L}", r)


# -- TIR helpers ------------------------------------------------------------------------------------

def _for(name, extent, body_fn):
    v = tir.Var(name, "int32")
    return tir.For(v, 0, extent, tir.ForKind.SERIAL, body_fn(v))


CHUNKS = 16     # groups of planes (parallel tasks), each with one ring allocation
QUADS = True    # the VNNI uint8 path on quad words (vpdpbusd); False: tap pairs everywhere
RING = 16       # input rows kept (a power of two); a band of output rows reads at most RING rows


class _Geo:
    """Sizes of one plane's ring of input rows (``rw`` int16 entries per row). Stride 1: the
    row as int32 *pair words*, word k = (padded pixel k, padded pixel k + 1) (low, high int16), so
    the L words from ox0 + 2p are the tap pairs (2p, 2p + 1) of outputs ox0 .. ox0 + L - 1.
    Stride 2: the padded row itself as int16, whose word k is the pair (2k, 2k + 1)."""

    def __init__(self, g, L: int):
        self.L, self.V = L, 2 * L
        kh, kw, sh, sw, ow, pl, wd = g["kh"], g["kw"], g["sh"], g["sw"], g["ow"], g["pl"], g["wd"]
        self.kwp = (kw + 1) // 2
        ox_max = max(ow - L, 0)             # the last tile's first output
        if sw == 1:
            words = max(ox_max + 2 * (self.kwp - 1) + L, pl + wd)
            self.rw = 2 * (-(-words // L) * L)
        else:
            ent = max(2 * ox_max + 2 * (self.kwp - 1) + self.V, pl + wd)
            self.rw = -(-ent // self.V) * self.V
        self.ob = (RING - kh) // sh + 1     # output rows per band
        self.quads = False


class _GeoQ:
    """Sizes for the *quad words* of the VNNI uint8 path: a byte ring of padded rows (``bw``
    bytes) and a ring of int32 words (``ww`` per row), word k = bytes (padded pixels k .. k + 3)
    for stride 1 (taps 4q .. 4q + 3 of outputs ox0 + j read word ox0 + j + 4q), (2k .. 2k + 3)
    for stride 2 (word ox0 + j + 2q): one ``vpdpbusd`` per 4 taps (3x3: one per kernel row)."""

    def __init__(self, g, L: int, vbmi: bool = False):
        self.L, self.quads, self.vbmi = L, True, vbmi       # vbmi: the words on one vpermb
        kh, kw, sh, sw, ow, pl, wd = g["kh"], g["kw"], g["sh"], g["sw"], g["ow"], g["pl"], g["wd"]
        self.kwq = (kw + 3) // 4
        ox_max = max(ow - L, 0)
        nw = ox_max + (4 if sw == 1 else 2) * (self.kwq - 1) + L
        self.ww = -(-nw // L) * L
        # the word chunks' 64-byte loads from byte (chunk * 16 * stride)
        need = (self.ww - L) * (1 if sw == 1 else 2) + 4 * L
        self.bw = -(-max(need, pl + wd) // 32) * 32 + 32
        self.ob = (RING - kh) // sh + 1


def _zp_pair(zp: int) -> int:
    v = (zp & 0xFFFF) * 0x10001
    return v - (1 << 32) if v >= (1 << 31) else v


def _fill_row(x_buf, ring, slot, nn, cc, r, g, geo: _Geo, zp: int):
    """Padded input row r (0 <= r < hp, padded coordinates) of plane (nn, cc) into ring slot
    ``slot``: the input pixels (a padding row: all zero point; the other entries of a row always
    hold the zero point, ``_ring_init``).
    Stride 2: int16 entries pl .. pl + wd - 1 = the pixels. Stride 1: pair words, words pl ..
    pl + wd - 2 from two byte loads (pixels k - pl and k - pl + 1), the border words pl - 1 and
    pl + wd - 1 (half zero point) as scalars; built in int32 lanes from the input bytes (LLVM
    turns an int16 interleave of a stored row into scalar code)."""
    xf, decl = _flat(x_buf, "x_flat")
    h, wd, pt, pl, c, sw = g["h"], g["wd"], g["pt"], g["pl"], g["c"], g["sw"]
    L, V = geo.L, geo.V
    base = (nn * c + cc) * (h * wd) + (r - pt) * wd
    xld = lambda i, lanes: tir.BufferLoad(xf, [tir.Ramp(base + i, 1, lanes) if lanes > 1 else base + i])  # noqa: E731
    body = []
    if sw == 1:
        nwords = geo.rw // 2
        wv = tir.decl_buffer((RING, nwords), "int32", name="ring_words", data=ring.data)
        body.append(tir.DeclBuffer(wv, data=ring.data))
        zpw = tir.Broadcast(tir.const(_zp_pair(zp), "int32"), L)
        zrow = _for("zc", nwords // L, lambda k: tir.BufferStore(wv, zpw, [slot, tir.Ramp(k * L, 1, L)]))

        def lo16(v, lanes):
            v = tir.Cast(f"int32x{lanes}", v) if lanes > 1 else cast(v, "int32")
            if not g["signed"]:
                return v
            m = tir.const(0xFFFF, "int32")
            return tir.bitwise_and(v, tir.Broadcast(m, lanes) if lanes > 1 else m)

        def hi16(v, lanes):
            v = tir.Cast(f"int32x{lanes}", v) if lanes > 1 else cast(v, "int32")
            s = tir.const(16, "int32")
            return tir.shift_left(v, tir.Broadcast(s, lanes) if lanes > 1 else s)

        def word(i, lanes):                 # words pl + i .. : pixels (i, i + 1)
            return tir.bitwise_or(lo16(xld(i, lanes), lanes), hi16(xld(i + 1, lanes), lanes))

        def wst(k, val, lanes):
            return tir.BufferStore(wv, val, [slot, tir.Ramp(k, 1, lanes) if lanes > 1 else k])
        data = []
        nd = wd - 1                          # words with both pixels inside
        full = nd // L
        if full:
            data.append(_for("dc", full, lambda k: wst(pl + k * L, word(k * L, L), L)))
            if nd % L:
                data.append(wst(pl + nd - L, word(nd - L, L), L))
        elif nd:
            data.append(_for("dp", nd, lambda k: wst(pl + k, word(k, 1), 1)))
        zs = tir.const(zp & 0xFFFF, "int32")
        if pl >= 1:
            data.append(wst(pl - 1, tir.bitwise_or(zs, hi16(xld(0, 1), 1)), 1))
        zhi = ((zp & 0xFFFF) << 16) - ((1 << 32) if zp & 0x8000 else 0)       # zp in the high int16
        data.append(wst(pl + wd - 1, tir.bitwise_or(lo16(xld(wd - 1, 1), 1), tir.const(zhi, "int32")), 1))
    else:
        zv = tir.Broadcast(tir.const(zp, "int16"), V)
        zrow = _for("zc", geo.rw // V, lambda k: tir.BufferStore(ring, zv, [slot, tir.Ramp(k * V, 1, V)]))

        def est(col, val, lanes):
            return tir.BufferStore(ring, val, [slot, tir.Ramp(col, 1, lanes) if lanes > 1 else col])
        data = []
        full = wd // V
        if full:
            data.append(_for("dc", full, lambda k: est(pl + k * V, tir.Cast(f"int16x{V}", xld(k * V, V)), V)))
            if wd % V:
                data.append(est(pl + wd - V, tir.Cast(f"int16x{V}", xld(wd - V, V)), V))
        else:
            data.append(_for("dp", wd, lambda k: est(pl + k, cast(xld(k, 1), "int16"), 1)))
    # the entries outside the input's columns hold the zero point from ``_ring_init`` on, and
    # padding rows rewrite the whole row
    fill = tir.IfThenElse(tir.all(r >= pt, r < pt + h), _seq(data), zrow)
    return tir.SeqStmt([decl] + body + [fill])


def _fill_bytes(x_buf, brow, slot, nn, cc, r, g, geo: _GeoQ, zp: int):
    """Padded input row r of plane (nn, cc) into byte ring slot ``slot``: the input bytes from
    column pl (the other columns keep the zero point from ``_ring_init``), a padding row all zero
    point."""
    xf, decl = _flat(x_buf, "x_flat")
    h, wd, pt, pl, c = g["h"], g["wd"], g["pt"], g["pl"], g["c"]
    base = (nn * c + cc) * (h * wd) + (r - pt) * wd
    B = 32

    def st(col, val, lanes):
        return tir.BufferStore(brow, val, [slot, tir.Ramp(col, 1, lanes) if lanes > 1 else col])
    data = []
    full = wd // B
    if full:
        data.append(_for("dc", full, lambda k: st(pl + k * B, tir.BufferLoad(xf, [tir.Ramp(base + k * B, 1, B)]), B)))
        if wd % B:
            data.append(st(pl + wd - B, tir.BufferLoad(xf, [tir.Ramp(base + wd - B, 1, B)]), B))
    else:
        data.append(_for("dp", wd, lambda k: st(pl + k, tir.BufferLoad(xf, [base + k]), 1)))
    zv = tir.Broadcast(tir.const(zp, "uint8"), B)
    zrow = _for("zc", geo.bw // B, lambda k: st(k * B, zv, B))
    return tir.SeqStmt([decl, tir.IfThenElse(tir.all(r >= pt, r < pt + h), _seq(data), zrow)])


def _build_words(brow, words, slot, geo: _GeoQ, sw: int):
    """The quad words of byte ring slot ``slot``: word k = bytes (k .. k + 3) (stride 1) or
    (2k .. 2k + 3) (stride 2), the first pixel in the low byte. Per 16 words: one 64-byte load,
    ``vpermd`` gives 128-bit lane l the dwords (l .. l + 3) (stride 2: (2l .. 2l + 3)), i.e. the
    bytes from 4l (8l) on, then ``vpshufb`` picks in every lane the bytes (i + t) (stride 2:
    (2i + t)) of its words i < 4, t < 4."""
    L = geo.L
    step = 1 if sw == 1 else 2
    perm = [tir.const(step * l + d, "int32") for l in range(4) for d in range(4)]
    bidx = [tir.const(step * i + t, "int8") for _ in range(4) for i in range(4) for t in range(4)]
    perm_v = _const_vec(perm, "int32")
    byte_v = _const_vec(bidx, "int8")

    def chunk(ci):
        src = tir.BufferLoad(brow, [slot, tir.Ramp(ci * L * step, 1, 4 * L)])           # 64 bytes
        if geo.vbmi and L == 16:
            # VBMI: one byte permute (byte 4i + t = byte step * i + t). With VBMI in the target,
            # LLVM merges the dword permute + vpshufb pair into one shuffle and lowers that to ~10
            # instructions (vpalignr, unpacks, inserts: the 56x56 MobileNetV2 layer 108 -> 159
            # us); so it does a vpermb of a constant index (the constant read as a shuffle mask).
            # The index goes through a vpdpbusd of zeros (idx + 0, which LLVM does not fold),
            # hoisted out of the loops, and the vpermb stays: 108 us again
            idx = _const_vec([tir.const(step * i + t, "int8") for i in range(L) for t in range(4)], "int8")
            z8 = tir.Broadcast(tir.const(0, "int8"), 4 * L)
            idx = tir.reinterpret(f"int8x{4 * L}", tir.call_llvm_pure_intrin(
                f"int32x{L}", "llvm.x86.avx512.vpdpbusd.512", tir.reinterpret(f"int32x{L}", idx), z8, z8))
            q = tir.call_llvm_pure_intrin(f"int8x{4 * L}", "llvm.x86.avx512.permvar.qi.512",
                                          tir.reinterpret(f"int8x{4 * L}", src), idx)
            return tir.BufferStore(words, tir.reinterpret(f"int32x{L}", q), [slot, tir.Ramp(ci * L, 1, L)])
        d = tir.call_llvm_pure_intrin(f"int32x{L}", "llvm.x86.avx512.permvar.si.512",
                                      tir.reinterpret(f"int32x{L}", src), perm_v)
        q = tir.call_llvm_pure_intrin(f"int8x{4 * L}", "llvm.x86.avx512.pshuf.b.512",
                                      tir.reinterpret(f"int8x{4 * L}", d), byte_v)
        return tir.BufferStore(words, tir.reinterpret(f"int32x{L}", q), [slot, tir.Ramp(ci * L, 1, L)])
    return _for("wc", geo.ww // L, chunk)


def _quad_mac(c, a32, w32, L: int):
    """c + the four u8 x s8 products of each int32 lane (``vpdpbusd``, exact: no saturation)."""
    return tir.call_llvm_pure_intrin(f"int32x{L}", "llvm.x86.avx512.vpdpbusd.512", c,
                                     tir.reinterpret(f"int8x{4 * L}", a32), tir.reinterpret(f"int8x{4 * L}", w32))


def _bytes_init(brow, geo: _GeoQ, zp: int):
    """Every byte ring entry = the zero point (once per group of planes)."""
    zv = tir.Broadcast(tir.const(zp, "uint8"), 32)
    return _for("ri", RING, lambda s: _for(
        "rj", geo.bw // 32, lambda k: tir.BufferStore(brow, zv, [s, tir.Ramp(k * 32, 1, 32)])))


def _ring_init(ring, geo: _Geo, zp: int):
    """Every ring entry = the zero point (once per group of planes)."""
    V = geo.V
    zv = tir.Broadcast(tir.const(zp, "int16"), V)
    return _for("ri", RING, lambda s: _for(
        "rj", geo.rw // V, lambda k: tir.BufferStore(ring, zv, [s, tir.Ramp(k * V, 1, V)])))


def _plane(isa_name, x_buf, w_buf, b_buf, mt, nt, out_buf, nn, cc, g, attrs, geo, hi32: bool, ring, stage):
    """Output plane (nn, cc) by bands of ``geo.ob`` output rows: the band's new input rows into
    the ring (loops of their own: LLVM then does not forward the stores into the tiles' unaligned
    loads as scalar code), then per output row tiles of L outputs: quad / pair MACs, the vector
    epilogue, byte stores. ``geo``: ``_GeoQ`` (quad words; ``ring`` = (byte ring, word ring)) or
    ``_Geo`` (pair words; ``ring`` the int16 ring)."""
    from .quant import _req_params
    c, kh, kw, sh, sw, oh, ow = g["c"], g["kh"], g["kw"], g["sh"], g["sw"], g["oh"], g["ow"]
    zp = int(attrs["x_zero_point"])
    L = geo.L
    quads = geo.quads
    if quads:
        brow, words = ring
    wf, wdecl = _flat(w_buf, "w_flat")
    of, odecl = _flat(out_buf, "out_flat")
    lets = []
    # the weight pairs of channel cc: (w[a][2p] & 0xFFFF) | (w[a][2p + 1] << 16) as int32 scalars
    wv = {}
    for a in range(kh):
        if quads:
            # the weight quads: bytes (w[a][4q + t] for t < 4, 0 past kw) as an int32
            for q in range(geo.kwq):
                val = None
                for t in range(4):
                    if 4 * q + t >= kw:
                        continue
                    bt = tir.bitwise_and(cast(tir.BufferLoad(wf, [cc * (kh * kw) + a * kw + 4 * q + t]), "int32"),
                                         tir.const(0xFF, "int32"))
                    bt = tir.shift_left(bt, tir.const(8 * t, "int32")) if t else bt
                    val = bt if val is None else tir.bitwise_or(val, bt)
                v = tir.Var(f"w{a}_{q}", "int32")
                lets.append((v, val))
                wv[a, q] = tir.Broadcast(v, L)
            continue
        for p in range(geo.kwp):
            i0 = cc * (kh * kw) + a * kw + 2 * p
            lo16 = tir.bitwise_and(cast(tir.BufferLoad(wf, [i0]), "int32"), tir.const(0xFFFF, "int32"))
            if 2 * p + 1 < kw:
                val = tir.bitwise_or(lo16, tir.shift_left(cast(tir.BufferLoad(wf, [i0 + 1]), "int32"),
                                                          tir.const(16, "int32")))
            else:
                val = lo16
            v = tir.Var(f"w{a}_{p}", "int32")
            lets.append((v, val))
            wv[a, p] = tir.Broadcast(v, L)
    bias = None
    if b_buf is not None:
        bv = tir.Var("bias_c", "int32")
        lets.append((bv, tir.BufferLoad(b_buf, [cc])))
        bias = tir.Broadcast(bv, L)
    if mt is not None:
        mvar, nvar = tir.Var("m_c", "int32"), tir.Var("n_c", "int32")
        lets += [(mvar, tir.BufferLoad(mt, [cc])), (nvar, tir.BufferLoad(nt, [cc]))]
        m, n = mvar, nvar
    else:
        m, n = (int(v) for v in _req_params(attrs, 0))
    zero = tir.Broadcast(tir.const(0, "int32"), L)
    mask = tir.const(RING - 1, "int32")

    def tile(oy, ox0):
        """The L output bytes of row oy from column ox0 (an expression)."""
        # quads start from the bias: vpdpbusd wraps around (no saturation), so the int32 sum is
        # the reference's acc + bias whatever the partial sums; the saturating pair MACs add it last
        acc = bias if (quads and bias is not None) else zero
        for a in range(kh):
            slot = tir.bitwise_and(oy * sh + a, mask)
            if quads:
                for q in range(geo.kwq):
                    v = tir.BufferLoad(words, [slot, tir.Ramp(ox0 + (4 * q if sw == 1 else 2 * q), 1, L)])
                    acc = _quad_mac(acc, v, wv[a, q], L)
                continue
            for p in range(geo.kwp):
                col = 2 * ox0 + (4 * p if sw == 1 else 2 * p)
                v = tir.BufferLoad(ring, [slot, tir.Ramp(col, 1, geo.V)])
                acc = _pair_mac(isa_name, acc, v, wv[a, p])
        if bias is not None and not quads:
            acc = acc + bias
        return _epilogue_vec(acc, attrs, m, n, L, hi32)

    def fill(r):
        return _fill_row(x_buf, ring, tir.bitwise_and(r, mask), nn, cc, r, g, geo, zp)

    def fill_rows(name, r0, cnt):
        """Input rows r0 .. r0 + cnt - 1 into the ring; quads: the bytes of every row first,
        then the words (separate loops: the words' unaligned byte loads then read rows whose
        stores are done, no store-forwarding stalls)."""
        if not quads:
            return _for(name, cnt, lambda i: fill(r0 + i))
        return tir.SeqStmt([
            _for(name, cnt, lambda i: _fill_bytes(x_buf, brow, tir.bitwise_and(r0 + i, mask), nn, cc, r0 + i, g,
                                                  geo, zp)),
            _for(name + "w", cnt, lambda i: _build_words(brow, words, tir.bitwise_and(r0 + i, mask), geo, sw))])

    def row(oy):
        base = ((nn * c + cc) * oh + oy) * ow
        if ow >= L:
            body = [_for("t", ow // L, lambda t: tir.BufferStore(of, tile(oy, t * L), [tir.Ramp(base + t * L, 1, L)]))]
            if ow % L:
                # the last L outputs again (overlapping stores of the same values)
                body.append(tir.BufferStore(of, tile(oy, tir.const(ow - L, "int32")), [tir.Ramp(base + ow - L, 1, L)]))
            return _seq(body)
        st = tir.BufferStore(stage, tile(oy, tir.const(0, "int32")), [tir.Ramp(0, 1, L)])
        cp = _for("k", ow, lambda k: tir.BufferStore(of, tir.BufferLoad(stage, [k]), [base + k]))
        return tir.SeqStmt([st, cp])

    def band(y0, cnt):
        # input rows y0*sh + kh - sh .. (y0 + cnt - 1)*sh + kh - 1 are new (the earlier ones are
        # in the ring); the band's rows y0*sh .. (y0 + cnt - 1)*sh + kh - 1 fit in RING slots
        r0 = y0 * sh + (kh - sh)
        return tir.SeqStmt([fill_rows("fr", r0, cnt * sh), _for("oy", cnt, lambda j: row(y0 + j))])
    binds = [tir.Bind(v, val) for v, val in lets]
    ob = geo.ob
    stmts = [wdecl, odecl] + binds
    if kh > sh:
        stmts.append(fill_rows("fp", tir.const(0, "int32"), kh - sh))   # the rows before the first new ones
    if oh // ob:
        stmts.append(_for("bd", oh // ob, lambda bi: band(bi * ob, ob)))
    if oh % ob:
        stmts.append(band(tir.const(oh - oh % ob, "int32"), oh % ob))
    return tir.SeqStmt(stmts)


def dwconv_rows(isa: Isa, x: te.Tensor, w: te.Tensor, b: te.Tensor | None, attrs, out_shape, tables, epilogue,
                vbmi: bool = False):
    """Returns (out, schedule), ``dwconv_lanes``'s conventions: ``tables`` quant.py
    ``_req_tables`` result (or None); ``epilogue(acc, n, channel, None)`` quant.py's
    requantization of one accumulator (adds the bias): the TE definition of the output."""
    from .quant import _hi32_ok
    L = LANES[isa.name]
    g = _geom(x, w, attrs, out_shape)
    n, c, h, wd = g["n"], g["c"], g["h"], g["wd"]
    kh, kw, sh, sw, pt, pl, oh, ow = (g[k] for k in ("kh", "kw", "sh", "sw", "pt", "pl", "oh", "ow"))
    assert kh <= RING
    xdt = str(x.dtype)
    zp = int(attrs["x_zero_point"])
    # VNNI with uint8 pixels: quad words on vpdpbusd (4 taps per instruction); else pairs
    quads = isa.name == "vnni" and xdt == "uint8" and QUADS
    geo = _GeoQ(g, L, vbmi) if quads else _Geo(g, L)
    hi32 = _hi32_ok(attrs)

    def pix(nn, cc, r, col):                    # the zero-point padded pixel as int32
        rr, cl = r - pt, col - pl
        inside = tir.all(rr >= 0, rr < h, cl >= 0, cl < wd)
        v = x[nn, cc, tir.max(tir.min(rr, h - 1), 0), tir.max(tir.min(cl, wd - 1), 0)]
        return cast(tir.if_then_else(inside, v, tir.const(zp, xdt)), "int32")

    def outval(nn, cc, y, z):
        acc = None
        for a in range(kh):
            for t in range(kw):
                term = pix(nn, cc, y * sh + a, z * sw + t) * cast(w[cc, 0, a, t], "int32")
                acc = term if acc is None else acc + term
        return epilogue(acc, nn, cc, None)
    out = te.compute(tuple(int(d) for d in out_shape), outval, name="out")
    macs = n * c * oh * ow * kh * kw

    def schedule(sch, spec) -> None:
        b_out = sch.get_sblock("out")
        reads = {r.source.name: r.source for r in sch.get(b_out).reads}
        x_buf, w_buf = reads[x.op.name], reads[w.op.name]
        out_buf = sch.get(b_out).writes[0].source
        b_buf = reads[b.op.name] if b is not None else None
        mt = reads[tables[0].op.name] if tables is not None else None
        nt = reads[tables[1].op.name] if tables is not None else None
        ol = sch.get_loops(b_out)
        top = sch.fuse(ol[0], ol[1])
        # planes in CHUNKS groups: the ring is allocated once per group (a workspace allocation
        # per plane costs ~0.5 us), the groups run on the thread pool
        nc = n * c
        per = -(-nc // CHUNKS)
        po, pi = sch.split(top, [None, per])
        if macs >= PARALLEL_MIN_MACS and nc >= 2:
            sch.parallel(po)
        if quads:
            brow = tir.decl_buffer((RING, geo.bw), "uint8", name="brow")
            words = tir.decl_buffer((RING, geo.ww), "int32", name="words")
            ring, bufs = (brow, words), [brow, words]
        else:
            ring = tir.decl_buffer((RING, geo.rw), "int16", name="ring")
            bufs = [ring]
        stage = tir.decl_buffer((L,), str(attrs["out_dtype"]), name="stage") if ow < L else None
        pv = sch.get(po).loop_var
        ci = tir.Var("ci", "int32")
        tv = pv * per + ci
        nn, cc = (tv // c, tv % c) if n > 1 else (tir.const(0, "int32"), tv)
        body = _plane(isa.name, x_buf, w_buf, b_buf, mt, nt, out_buf, nn, cc, g, attrs, geo, hi32, ring, stage)
        if nc % per:
            body = tir.IfThenElse(tv < nc, body, None)
        init = _bytes_init(brow, geo, zp) if quads else _ring_init(ring, geo, zp)
        body = tir.SeqStmt([init, tir.For(ci, 0, per, tir.ForKind.SERIAL, body)])
        rd = [x_buf, w_buf] + [t for t in (b_buf, mt, nt) if t is not None]
        _replace_loop(sch, pi, body, rd, [out_buf], "rows", alloc=bufs + ([stage] if stage is not None else []))

    return out, schedule


__all__ = ["LANES", "dwconv_rows", "dwconv_rows_fits"]
