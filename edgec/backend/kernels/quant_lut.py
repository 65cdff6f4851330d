"""qlut (a 256-entry byte table lookup) with byte shuffles on x86 (AVX-512BW and AVX2).

A vector of V bytes (V = 64 on AVX-512BW, 32 on AVX2) is looked up with 16 in-lane shuffles:
``pshufb(T_h, lo)`` looks up the low nibble in the 16-entry slice T_h = table[16h : 16h + 16]
(replicated into every 128-bit lane), and the result keeps, per byte, the one whose h equals
the high nibble (AVX-512: 15 compare-to-mask + masked pshufb; AVX2: compare + vpblendvb). The
tables are compile-time constant vectors. The elements after the last whole vector are looked up
one at a time (a select tree over the table). A plain table load per element (the portable
kernel) is ~1.3 cycles/byte on Zen 4; this is ~0.6 (AVX-512BW).

Faster still would be AVX-512 VBMI (``vpermi2b``: 128-entry two-register tables, 2 of them and a
blend per vector); the x86_64 target lists ``+avx512vbmi`` since session 10 (for the depthwise
kernels), this kernel does not use it yet.
"""
from __future__ import annotations

import tvm

tir = tvm.tirx


def lut_vector_bytes(target) -> tuple[int, str] | None:
    """(bytes per vector, pshufb intrinsic) for the target, or None (portable kernel)."""
    tv = getattr(target, "tvm", None) or {}
    mattr = list(tv.get("mattr", [])) if isinstance(tv, dict) else []
    if not str(tv.get("mtriple", "")).startswith("x86_64"):
        return None
    if getattr(target, "schedule", "") == "x86_avx512" and "+avx512bw" in mattr:
        return 64, "llvm.x86.avx512.pshuf.b.512"
    if "+avx2" in mattr:
        return 32, "llvm.x86.avx2.pshuf.b"
    return None


def _cvec(vals, dtype: str):
    """A constant vector (LLVM folds the shuffle of constants into one constant)."""
    return tir.Shuffle([tir.const(int(v), dtype) for v in vals], [tir.const(i, "int32") for i in range(len(vals))])


def _select_tree(idx, vals, dtype):
    def tree(lo, hi):
        if hi - lo == 1 or len(set(vals[lo:hi])) == 1:
            return tir.const(vals[lo], dtype)
        mid = (lo + hi) // 2
        return tir.Select(idx < mid, tree(lo, mid), tree(mid, hi))
    return tree(0, len(vals))


def qlut_shuffle(shape, in_dtype: str, out_dtype: str, table, vbytes: int, intrin: str):
    """PrimFunc ``(x, y)``: y = table[x - dtype_min(x)] elementwise; ``table`` holds 256 ints
    (out_dtype values), entry 0 for x = 0 (uint8) or -128 (int8)."""
    total = 1
    for d in shape:
        total *= int(d)
    V = vbytes
    x = tir.decl_buffer(shape, in_dtype, name="x")
    y = tir.decl_buffer(shape, out_dtype, name="y")
    xf = tir.decl_buffer((total,), in_dtype, name="xf", data=x.data)
    yf = tir.decl_buffer((total,), out_dtype, name="yf", data=y.data)
    # table bytes as int8 (the shuffle's element type), entries in index order 0..255
    tbytes = [((int(v) + 128) % 256) - 128 for v in table]
    stmts = [tir.DeclBuffer(xf, data=x.data), tir.DeclBuffer(yf, data=y.data)]
    nvec = total // V

    def index_u8(v):
        u = v if in_dtype == "uint8" else tir.reinterpret(f"uint8x{V}", v)
        if in_dtype == "int8":   # x - (-128) = x + 128 = x with the top bit flipped
            u = u ^ tir.Broadcast(tir.const(0x80, "uint8"), V)
        return u

    def vector_store(i):
        u = index_u8(tir.BufferLoad(xf, [tir.Ramp(i * V, 1, V)]))
        lo = tir.reinterpret(f"int8x{V}", u & tir.Broadcast(tir.const(15, "uint8"), V))
        hi = tir.shift_right(u, tir.Broadcast(tir.const(4, "uint8"), V))
        res = None
        for h in range(16):
            sl = tbytes[16 * h:16 * h + 16]
            t = tir.call_llvm_pure_intrin(f"int8x{V}", intrin, _cvec(sl * (V // 16), "int8"), lo)
            res = t if res is None else tir.Select(hi == tir.Broadcast(tir.const(h, "uint8"), V), t, res)
        return tir.BufferStore(yf, tir.reinterpret(f"{out_dtype}x{V}", res), [tir.Ramp(i * V, 1, V)])

    if nvec >= 512:
        # big tensors: parallel chunks of 64 vectors (the runtime's thread pool, if any)
        o = tir.Var("o", "int32")
        j = tir.Var("j", "int32")
        body = tir.For(j, 0, 64, tir.ForKind.SERIAL,
                       tir.IfThenElse(o * 64 + j < nvec, vector_store(o * 64 + j), None))
        stmts.append(tir.For(o, 0, -(-nvec // 64), tir.ForKind.PARALLEL, body))
    elif nvec:
        i = tir.Var("i", "int32")
        stmts.append(tir.For(i, 0, nvec, tir.ForKind.SERIAL, vector_store(i)))
    if total % V:
        k = tir.Var("k", "int32")
        xv = tir.BufferLoad(xf, [k])
        idx = tir.Cast("int32", xv) + (128 if in_dtype == "int8" else 0)
        stmts.append(tir.For(k, nvec * V, total - nvec * V, tir.ForKind.SERIAL,
                             tir.BufferStore(yf, _select_tree(idx, [int(v) for v in table], out_dtype), [k])))
    return tir.PrimFunc([x, y], tir.SeqStmt(stmts)).with_attr("tirx.noalias", True)
