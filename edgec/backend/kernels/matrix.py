"""Kernel generators for the matrix op group (docs/ops.md, edgec/ops/matrix.py).

matmul  numpy semantics: 1-D operands are promoted (and the promoted axis dropped from the
        output), leading batch axes broadcast. Computed by ``_nn_sched.gemm_nn``: register
        tiles of rows of ``a`` (broadcast) x vectors along the columns of ``b``.
dense   y[M,N] = x[M,K] @ w[N,K].T + bias. Both operands are contiguous along K, so the
        kernel keeps vector partial sums over K (``_nn_sched.dense_nt``) and needs no
        transposed copy of the weights.

Integer matmul accumulates in its own dtype and wraps, like the numpy reference.
"""
from __future__ import annotations

import tvm

from ._nn_sched import cast, dense_nt, dtype_of, gemm_nn, scheduled
from .common import placeholder
from .registry import KernelSpec, kernel

tir = tvm.tirx

# from this many rows of x on, dense copies w transposed (N*K work) and runs the GEMM kernel
DENSE_GEMM_MIN_ROWS = 32


def _bcast_index(shape: tuple[int, ...], batch: tuple[int, ...], bi: list) -> list:
    """Indices into the batch axes ``shape`` (right-aligned against ``batch``) for batch index ``bi``."""
    off = len(batch) - len(shape)
    return [0 if shape[i] == 1 and batch[off + i] != 1 else bi[off + i] for i in range(len(shape))]


@kernel("matmul")
def matmul(spec: KernelSpec):
    a = placeholder(spec, 0, "a")
    b = placeholder(spec, 1, "b")
    ash = tuple(int(d) for d in a.shape)
    bsh = tuple(int(d) for d in b.shape)
    out_shape = tuple(int(d) for d in spec.outputs[0].shape)
    out_dtype = spec.outputs[0].dtype
    a1, b1 = len(ash) == 1, len(bsh) == 1
    pa = (1,) + ash if a1 else ash
    pb = bsh + (1,) if b1 else bsh
    m, k = pa[-2], pa[-1]
    n = pb[-1]
    abatch, bbatch = pa[:-2], pb[:-2]
    nb = max(len(abatch), len(bbatch))
    batch = tuple(max(x, y) for x, y in zip((1,) * (nb - len(abatch)) + abatch, (1,) * (nb - len(bbatch)) + bbatch))

    def a_fn(bi, mm, kk):
        idx = _bcast_index(abatch, batch, bi)
        return a[tuple(idx) + ((kk,) if a1 else (mm, kk))]

    def b_fn(bi, kk, nn):
        idx = _bcast_index(bbatch, batch, bi)
        return b[tuple(idx) + ((kk,) if b1 else (kk, nn))]

    def out_index(idx):
        # output = batch + (m if a is 2-D+) + (n if b is 2-D+)
        bi = list(idx[:nb])
        rest = list(idx[nb:])
        mm = 0 if a1 else rest.pop(0)
        nn = 0 if b1 else rest.pop(0)
        return bi, mm, nn

    def epi(acc, bi, mm, nn):
        return cast(acc, out_dtype)

    out, sched = gemm_nn(batch, m, n, k, a_fn, b_fn, str(a.dtype), spec.target, epi, out_shape, out_index)
    return scheduled(spec, [a, b], [out], sched)


@kernel("dense")
def dense(spec: KernelSpec):
    from .sparse_dense import KN_F32, sparse_kn_dense
    if spec.attrs.get("w_layout") == KN_F32:
        # one row, weights stored [K + 1, N] (the pre-packing below): the zero entries of x skipped
        return sparse_kn_dense(spec)
    x = placeholder(spec, 0, "x")
    w = placeholder(spec, 1, "w")
    has_bias = len(spec.inputs) > 2 and spec.inputs[2] is not None
    bias = placeholder(spec, 2, "bias") if has_bias else None
    m, k = (int(d) for d in x.shape)
    n = int(w.shape[0])
    out_dtype = spec.outputs[0].dtype

    def epi(acc, i, j):
        if bias is not None:
            acc = acc + cast(bias[j], dtype_of(acc))
        return cast(acc, out_dtype)

    if m >= DENSE_GEMM_MIN_ROWS:
        out, sched = gemm_nn((), m, n, k, lambda bi, i, kk: x[i, kk], lambda bi, kk, j: w[j, kk], str(x.dtype),
                             spec.target, lambda acc, bi, i, j: epi(acc, i, j), (m, n),
                             lambda idx: ([], idx[0], idx[1]), b_transposed=True)
    else:
        out, sched = dense_nt(m, n, k, x, w, str(x.dtype), spec.target, epi)
    return scheduled(spec, [x, w] + ([bias] if bias is not None else []), [out], sched)


def _dense_prepack(spec: KernelSpec) -> dict:
    """float32 GEMV rows of a bag-of-words size (sparse_dense.sparse_dense_fits): the constant
    weights stored [K + 1, N] for the sparse-input kernel."""
    from .quant_conv import Packing, packing_attrs
    from .registry import TensorType
    from .sparse_dense import KN_F32, pack_kn_f32, sparse_dense_fits
    ins = spec.inputs
    if spec.attrs.get("w_layout") or len(ins) < 2 or ins[0] is None or ins[1] is None:
        return {}
    if not sparse_dense_fits(spec.target, ins[0].shape, ins[1].shape, str(ins[1].dtype)) or ins[0].dtype != "float32":
        return {}
    n, k = (int(d) for d in ins[1].shape)
    return {1: Packing(KN_F32, TensorType("float32", (k + 1, n)), pack_kn_f32, packing_attrs(KN_F32, ins[1].shape))}


def _register_prepack() -> None:
    from .quant_conv import prepack_rule
    prepack_rule("dense")(_dense_prepack)


_register_prepack()
