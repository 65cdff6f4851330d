"""Sparse-input float32 GEMV for ``dense``: one row, the weights stored [K, N], the zero input
entries skipped at run time.

The text student's ``embed`` is a bag of words: 1 x 16384 hashed features -> 96, ~76 non-zero
entries per question. The dense GEMV (``_nn_sched.dense_nt``) streams all 6.3 MB of float32
weights per call (~80 us on Zen 4, as onnxruntime's). quant_sparse.py does the int8 form; this is
the float one. Unlike int8 it needs no calibration evidence: a row whose entries are all
non-zero costs what the dense GEMV costs (both read every weight once, contiguously here), so the
kernel decides per block of x at run time.

- **Layout.** When the weights are a graph constant, the compiler stores them transposed
  (edgec.backend.build's pre-packing, layout ``KN_F32``): row k is the N contiguous weights of
  input entry k, and one extra row K holds a flag (``pack_kn_f32``): 1.0 at [K, 0] when some
  weight is not finite, else 0.
- **The sum.** ``acc[j] = sum over k (increasing) of x[k] * w[k, j]``, then ``y[j] = acc[j] +
  bias[j]``. x is tested 16 entries at a time (the OR of their bits: -0.0 and NaN count as
  non-zero); in a block that is not all zero, each entry x[k] != 0 adds x[k] * w[k, :] to the N
  accumulators (vector FMAs of 16 lanes).
- **Exactness.** A skipped entry is x[k] == 0 (+0 or -0), whose products x[k] * w[k, j] are +-0
  for finite weights: adding them changes no sum (the accumulators start at +0, so a sum of only
  zeros is +0 either way). With a weight that is not finite, 0 * inf = NaN must stay: the flag
  row then makes the kernel add every entry (no skip). Rounding: the order of the float sums is
  not dense_nt's (its partial sums over K): results agree to float32 rounding, not bit for bit.
- **Chosen** (``sparse_dense_fits``) for float32 dense with one row, K >= MIN_K, N <= MAX_N (the
  accumulators stay few vectors), a constant weight (the pre-packing) on a hosted LLVM target.
  With ``EDGEC_PREPACK=0`` or runtime weights the node runs dense_nt.

Measured (Zen 4, one thread, the text student's embed, K = 16384, N = 96): see
docs/performance.md, "Kernels, session 10".
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import te

from .common import placeholder

tir = tvm.tirx

KN_F32 = "kn_f32"
MIN_K = 4096
MAX_N = 192
LANES = 16          # float32 lanes per accumulator vector and entries of x per zero test


def sparse_dense_fits(target, x_shape, w_shape, dtype: str) -> bool:
    """float32 dense, one row, a long reduction, few outputs, on a hosted LLVM target (the kernel
    is LLVM vector code; a bare-metal target may be built as C)."""
    if dtype != "float32" or len(x_shape) != 2 or len(w_shape) != 2:
        return False
    m, k = (int(d) for d in x_shape)
    n = int(w_shape[0])
    hosted_llvm = bool(getattr(target, "hosted", False)) and str((target.tvm or {}).get("kind", "llvm")) == "llvm"
    return hosted_llvm and m == 1 and k >= MIN_K and 1 <= n <= MAX_N


def pack_kn_f32(w: np.ndarray) -> np.ndarray:
    """[N, K] float32 weights -> [K + 1, N]: the transpose, then the flag row (1.0 at [K, 0] when
    some weight is not finite, the rest 0)."""
    w = np.asarray(w, dtype=np.float32)
    n, k = w.shape
    out = np.zeros((k + 1, n), np.float32)
    out[:k] = w.T
    out[k, 0] = 0.0 if np.isfinite(w).all() else 1.0
    return out


def _kn_accumulate(xf, wf, af, n: int, k: int) -> list:
    """TIR: af[0:n] = sum over the entries of xf (skipping zeros unless the flag row says not to)
    of xf[k] * wf[k, :] (module doc)."""
    chunks = [(c0, min(LANES, n - c0)) for c0 in range(0, n, LANES)]

    def vec(base, ln):
        return [tir.Ramp(base, 1, ln)] if ln > 1 else [base]

    def add_row(pos, xv):
        out = []
        for c0, ln in chunks:
            idx = vec(tir.const(c0, "int32"), ln)
            wv = tir.BufferLoad(wf, vec(pos * n + c0, ln))
            out.append(tir.BufferStore(af, tir.BufferLoad(af, idx) + wv * (tir.Broadcast(xv, ln) if ln > 1 else xv), idx))
        return tir.SeqStmt(out) if len(out) > 1 else out[0]

    def visit(col, skip: bool):
        xv = tir.Var("xv", "float32")
        # x is +-0 iff its bits without the sign are 0: an integer test (a float compare with 0
        # came out false for a NaN, which must be added: NaN * w = NaN, as numpy)
        nz = tir.bitwise_and(tir.reinterpret("uint32", xv), tir.const(0x7FFFFFFF, "uint32")) != tir.const(0, "uint32")
        body = tir.IfThenElse(nz, add_row(col, xv), None) if skip else add_row(col, xv)
        # (TVM 0.27: LetStmt binds for the statements that follow it in the sequence)
        return tir.SeqStmt([tir.LetStmt(xv, tir.BufferLoad(xf, [col])), body])

    init = [tir.BufferStore(af, tir.Broadcast(tir.const(0.0, "float32"), ln) if ln > 1 else tir.const(0.0, "float32"),
                            vec(tir.const(c0, "int32"), ln)) for c0, ln in chunks]
    # every entry, in order (a weight that is not finite: no skip)
    ka = tir.Var("ka", "int32")
    every = tir.For(ka, 0, k, tir.ForKind.SERIAL, visit(ka, False))
    # blocks of LANES entries: the OR of their bits, then each entry of a block that is not all zero
    skipping = []
    nblk = k // LANES
    if nblk:
        b = tir.Var("b", "int32")
        kk = tir.Var("kk", "int32")
        bits = tir.reinterpret(f"uint32x{LANES}", tir.BufferLoad(xf, [tir.Ramp(b * LANES, 1, LANES)]))
        any_nz = tir.call_llvm_pure_intrin("uint32", "llvm.vector.reduce.or", bits)
        skipping.append(tir.For(b, 0, nblk, tir.ForKind.SERIAL, tir.IfThenElse(
            any_nz != tir.const(0, "uint32"), tir.For(kk, 0, LANES, tir.ForKind.SERIAL, visit(b * LANES + kk, True)),
            None)))
    if k % LANES:
        t = tir.Var("t", "int32")
        skipping.append(tir.For(t, 0, k % LANES, tir.ForKind.SERIAL, visit(nblk * LANES + t, True)))
    flag = tir.BufferLoad(wf, [tir.const(k * n, "int32")])
    skip = tir.SeqStmt(skipping) if len(skipping) > 1 else skipping[0]
    return init + [tir.IfThenElse(flag != tir.const(0.0, "float32"), every, skip)]


def sparse_kn_dense(spec):
    """The PrimFunc for a float32 dense spec whose weights are stored [K + 1, N] (``w_layout`` ==
    KN_F32, ``pack_kn_f32``): ``_kn_accumulate`` replaces the TE reduction ``acc``, then the
    bias (vectors of outputs)."""
    from ._nn_sched import scheduled
    from .quant_sparse import kn_schedule
    x = placeholder(spec, 0, "x")
    w = placeholder(spec, 1, "w")
    has_bias = len(spec.inputs) > 2 and spec.inputs[2] is not None
    bias = placeholder(spec, 2, "bias") if has_bias else None
    m, k = (int(d) for d in x.shape)
    n = int(w.shape[1])
    r = te.reduce_axis((0, k), name="r")
    acc = te.compute((m, n), lambda i, j: te.sum(x[i, r] * w[r, j], axis=r), name="acc")
    out = te.compute((m, n), lambda i, j: acc[i, j] + bias[j] if bias is not None else acc[i, j], name="out")

    schedule = kn_schedule(n, LANES, lambda xf, wf, af: _kn_accumulate(xf, wf, af, n, k))
    return scheduled(spec, [x, w] + ([bias] if bias is not None else []), [out], schedule)


__all__ = ["KN_F32", "MIN_K", "MAX_N", "sparse_dense_fits", "pack_kn_f32", "sparse_kn_dense"]
