"""Kernel generators for the quant op group (docs/ops.md "quant", edgec/ops/quant.py).

Every kernel is bit-exact with the integer-only numpy reference:

- accumulation (qconv, qdense, qmatmul) in int32: operands are widened to int32 before the
  multiply, the zero-point correction of qconv/qdense is already folded into the int32 bias;
- requantization in int64 with exactly ``edgec.quant.qmath.requantize``'s rounding, written
  branch-free: with p = acc * m (|p| < 2^62) and n = 31 - shift,
      r = (p + 2^(n-1) + (p >> 63)) >> n          (arithmetic shifts)
  which equals sign(p) * ((|p| + 2^(n-1)) >> n): for p < 0,
  -floor((2^(n-1) - p) / 2^n) = floor((p + 2^(n-1) - 1) / 2^n). Then + zero point, clamp;
- quantize divides in float32 and rounds half to even (``nearbyint``), NaN gives the zero
  point; dequantize converts (q - z) (int64) to float32 once and multiplies by the float32 scale.

Per-channel multipliers/shifts are compile-time constants written once per call into two small
int64 tables (``_req_tables``) that the epilogue reads by channel; per-axis scales of
quantize/dequantize are selected by a balanced tree of selects (depth log2(C)); the per-tensor
case is plain constants. qlut reads a 256-entry table built once per call into a small buffer.

The schedules reuse the float kernels' machinery (``_nn_sched.conv_direct``, ``gemm_nn``,
``dense_nt`` computing in int32, ``elementwise.pointwise`` for the elementwise ops): the
portable schedules, valid on every target. On targets of the ``x86_avx512`` schedule family with
``+avx512vnni``, qdense with uint8 activations (N % 16 == 0, K % 4 == 0) runs on vpdpbusd
through our own tensor intrinsic (``_register_vnni``); other shapes use the portable schedule.
"""
from __future__ import annotations

from typing import Sequence

import tvm
from tvm import te

from ._nn_sched import cast, conv_direct, dense_nt, gemm_nn, scheduled
from .common import placeholder, prim_func
from .elementwise import is_nan, pointwise
from .matrix import DENSE_GEMM_MIN_ROWS, _bcast_index
from .nn import conv_problem
from .registry import KernelSpec, kernel

tir = tvm.tirx

I32_MIN, I32_MAX = -(2 ** 31), 2 ** 31 - 1


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


def requant_expr(acc, m, n, zero_point: int, qmin: int, qmax: int, out_dtype: str):
    """qmath.requantize on one value: ``acc`` an integer expression (widened to int64), ``m`` the
    multiplier and ``n = 31 - shift`` the right shift (int64 expressions or ints)."""
    # the multiplier first: a table read then precedes the accumulator in the block order that
    # te.create_prim_func derives, so the tables are filled before the loops that read them
    p = (m if not isinstance(m, int) else _i64(m)) * cast(acc, "int64")
    if isinstance(n, int):
        nn = _i64(n)
        half = _i64(1 << (n - 1))
    else:
        nn = n
        half = tir.shift_left(_i64(1), n - _i64(1))
    r = tir.shift_right(p + half + tir.shift_right(p, _i64(63)), nn) + _i64(zero_point)
    r = tir.max(tir.min(r, _i64(qmax)), _i64(qmin))
    return cast(r, out_dtype)


def _req_params(attrs, idx=None):
    """(m expr/int, n expr/int) for the node's (per-channel) multiplier and shift."""
    ms = [int(v) for v in _tuple(attrs["multiplier"])]
    ns = [31 - int(v) for v in _tuple(attrs["shift"])]
    if len(ms) == 1 or len(set(zip(ms, ns))) == 1:
        return ms[0], ns[0]
    if idx is None:
        raise ValueError("per-channel multipliers need a channel index")
    return select_const(idx, ms, "int64"), select_const(idx, ns, "int64")


def _requant_node(acc, attrs, idx=None, tables=None):
    """Requantize ``acc`` with the node's attributes; ``tables`` (from ``_req_tables``) holds the
    per-channel multipliers/shifts in buffers read at ``idx``."""
    if tables is not None:
        m, n = tables[0][idx], tables[1][idx]
    else:
        m, n = _req_params(attrs, idx)
    return requant_expr(acc, m, n, int(attrs["out_zero_point"]), int(attrs["qmin"]), int(attrs["qmax"]),
                        str(attrs["out_dtype"]))


def _req_tables(attrs, channels: int):
    """Per-channel (multiplier, right shift) as two int64 buffers of ``channels`` entries, filled
    once per call (a select tree per entry), or None when one pair serves every channel. Reading a
    table in the epilogue is ~20x cheaper than evaluating the select tree per output element."""
    ms = [int(v) for v in _tuple(attrs["multiplier"])]
    ns = [31 - int(v) for v in _tuple(attrs["shift"])]
    if len(ms) == 1 or len(set(zip(ms, ns))) == 1:
        return None
    mt = te.placeholder((channels,), "int64", name="req_m")
    nt = te.placeholder((channels,), "int64", name="req_n")
    return _ReqTables(mt, nt, ms, ns)


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
    n_in = len(ins)
    params = list(func.params)
    bufs = params[n_in:n_in + 2]   # 0.27: PrimFunc parameters are the Buffers themselves
    keep = params[:n_in] + params[n_in + 2:]
    fills = []
    for buf, vals in zip(bufs, tables.values):
        c = tir.Var("c", "int32")
        fills.append(tir.For(c, 0, len(vals), tir.ForKind.SERIAL,
                             tir.BufferStore(buf, select_const(c, vals, "int64"), [c])))
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
    return cast(cast(q, "int64") - cast(z, "int64"), "float32") * s


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


@kernel("requantize")
def requantize(spec: KernelSpec):
    a = spec.attrs
    zi = _i64(int(a["in_zero_point"]))
    return pointwise(spec, ["x"], lambda v: _requant_node(cast(v, "int64") - zi, a))


# -- qadd / qmul -----------------------------------------------------------------------------------

@kernel("qadd")
def qadd(spec: KernelSpec):
    a = spec.attrs
    za, zb = _i64(a["a_zero_point"]), _i64(a["b_zero_point"])
    ls = _i64(int(a["left_shift"]))

    def side(v, z, m, s):
        t = tir.shift_left(cast(v, "int64") - z, ls)
        return cast(requant_expr(t, int(m), 31 - int(s), 0, I32_MIN, I32_MAX, "int32"), "int64")

    def body(x, y):
        acc = side(x, za, a["a_multiplier"], a["a_shift"]) + side(y, zb, a["b_multiplier"], a["b_shift"])
        return _requant_node(acc, a)
    return pointwise(spec, ["a", "b"], body)


@kernel("qmul")
def qmul(spec: KernelSpec):
    a = spec.attrs
    za, zb = _i64(a["a_zero_point"]), _i64(a["b_zero_point"])
    return pointwise(spec, ["a", "b"], lambda x, y: _requant_node((cast(x, "int64") - za) * (cast(y, "int64") - zb), a))


# -- qlut ------------------------------------------------------------------------------------------

@kernel("qlut")
def qlut(spec: KernelSpec):
    from ...quant.qmath import qrange
    x = placeholder(spec, 0, "x")
    out_dtype = spec.outputs[0].dtype
    lo = qrange(str(x.dtype))[0]
    table = [int(v) for v in _tuple(spec.attrs["table"])]
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


# -- VNNI (vpdpbusd) u8 x s8 dense for x86 AVX-512 targets -----------------------------------------
VNNI_INTRIN = "edgec_vnni_u8s8i32_16x4"


def _register_vnni() -> str:
    """Our own 16x4 u8 x s8 -> i32 dot-product intrinsic (vpdpbusd). TVM's stock one passes
    int32x16 operands, which LLVM >= 21 rejects (it wants <64 x i8>); this one reinterprets both
    operands to int8x64. vpdpbusd adds four u8*s8 products to each int32 lane without
    saturation, so the result is the exact int32 dot product (the references' arithmetic)."""
    from tvm.s_tir import TensorIntrin
    try:
        TensorIntrin.get(VNNI_INTRIN)
        return VNNI_INTRIN
    except Exception:  # noqa: BLE001  (not registered yet)
        pass
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((16, 4), "int8", offset_factor=1),
             C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((16, 4), "int8", offset_factor=1),
             C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16), dtype="int8x64"),
                B.vload([0, 0], dtype="int8x64"),
                dtype="int32x16")

    TensorIntrin.register(VNNI_INTRIN, desc, impl)
    return VNNI_INTRIN


def _has_vnni(target) -> bool:
    tv = getattr(target, "tvm", None) or {}
    mattr = tv.get("mattr", []) if isinstance(tv, dict) else []
    return getattr(target, "schedule", "") == "x86_avx512" and "+avx512vnni" in list(mattr)


def _use_vnni(spec: KernelSpec, x_dtype: str, n: int, k: int) -> bool:
    return x_dtype == "uint8" and n % 16 == 0 and k % 4 == 0 and _has_vnni(spec.target)


def _dense_vnni(m: int, n: int, k: int, x: te.Tensor, w: te.Tensor, epilogue):
    """acc[m, n] = sum_k x[m, k] * w[n, k] with w repacked per call into [n/16, k/4, 16, 4] so that
    one vpdpbusd computes 16 outputs x 4 k-steps; tiles of mr rows x jt vectors of 16 columns."""
    intrin = _register_vnni()
    mr = next(v for v in (4, 2, 1) if m % v == 0)
    jt = next(v for v in (4, 2, 1) if n % (16 * v) == 0)
    wp = te.compute((n // 16, k // 4, 16, 4), lambda a, b, c, d: w[a * 16 + c, b * 4 + d], name="wp")
    rk = te.reduce_axis((0, k), name="rk")
    acc = te.compute((m, n), lambda i, j: te.sum(_i32(x[i, rk]) * _i32(wp[j // 16, rk // 4, j % 16, rk % 4]),
                                                 axis=rk), name="acc")
    out = te.compute((m, n), lambda i, j: epilogue(acc[i, j], i, j), name="out")

    def schedule(sch, spec) -> None:
        b = sch.get_sblock("acc")
        i, j, kk = sch.get_loops(b)
        io, ii = sch.split(i, [None, mr])
        jo, jt_, ji = sch.split(j, [None, jt, 16])
        ko, ki = sch.split(kk, [None, 4])
        sch.reorder(io, jo, ko, ii, jt_, ji, ki)
        b_out = sch.get_sblock("out")
        sch.reverse_compute_at(b_out, jo)
        ol = sch.get_loops(b_out)
        _, v = sch.split(ol[-1], [None, 16])
        sch.vectorize(v)
        if m * n * k >= (1 << 20) and m // mr * (n // (16 * jt)) >= 2:
            sch.parallel(sch.fuse(io, jo))
        sch.decompose_reduction(b, ko)
        sch.tensorize(ji, intrin)
        sch.unroll(jt_)
        sch.unroll(ii)
        pl = sch.get_loops(sch.get_sblock("wp"))
        sch.vectorize(pl[-1])
        if n * k >= (1 << 16):
            sch.parallel(pl[0])

    return out, schedule


@kernel("qdense")
def qdense(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    w = placeholder(spec, 1, "w")
    has_bias = len(spec.inputs) > 2 and spec.inputs[2] is not None
    bias = placeholder(spec, 2, "bias") if has_bias else None
    m, k = (int(d) for d in x.shape)
    n = int(w.shape[0])
    a = spec.attrs
    tables = _req_tables(a, n)

    def epi(acc, i, j):
        if bias is not None:
            acc = acc + bias[j]
        return _requant_node(acc, a, j, tables)

    if _use_vnni(spec, str(x.dtype), n, k):
        out, sched = _dense_vnni(m, n, k, x, w, epi)
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

    out, sched = gemm_nn(batch, m, n, k, a_fn, b_fn, "int32", spec.target,
                         lambda acc, bi, mm, nn: _requant_node(acc, attrs), out_shape,
                         lambda idx: (list(idx[:nb]), idx[nb], idx[nb + 1]))
    return scheduled(spec, [a, b], [out], sched)


@kernel("qconv")
def qconv(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    w = placeholder(spec, 1, "w")
    has_bias = len(spec.inputs) > 2 and spec.inputs[2] is not None
    b = placeholder(spec, 2, "bias") if has_bias else None
    attrs = spec.attrs
    oc = int(w.shape[0])
    tables = _req_tables(attrs, oc)

    def epi(acc, nn, o, sp):
        if b is not None:
            acc = acc + b[o]
        return _requant_node(acc, attrs, o, tables)

    # int32 accumulation; padding reads the input zero point (it is real 0)
    prob = conv_problem(spec, x, w, load=_i32, fill=tir.const(int(attrs["x_zero_point"]), "int32"), dtype="int32")
    out, sched = conv_direct(prob, spec.target, epi, str(attrs["out_dtype"]))
    return with_tables(spec, [x, w] + ([b] if b is not None else []), [out], sched, tables)
