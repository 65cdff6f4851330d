"""Kernel generators for the elementwise op group (docs/ops.md, edgec/ops/elementwise.py),
plus the helpers the tensor and reduce generators share (dtype helpers, broadcasting,
casts, vectorizable float math, the injective schedule, flat views).

Structure: ``pointwise`` builds one ``te.compute``. When every input has the output's
shape or a single element, it computes over flat 1-D views of the buffers
(``flat_prim_func``): one loop, vectorized and split for threads whatever the shape.
Otherwise (real broadcasting) it computes over the real shapes with
``injective_schedule``.

Numerics (the numpy references in edgec/ops are the contract):
- float16 is computed in float32 and rounded once at the end.
- float32 exp, expm1, log, log1p, tanh (and so sigmoid, softplus, elu, selu, gelu) are
  inline polynomial code that vectorizes, within a few ulp (tests check rtol 1e-5 down to
  denormal magnitudes); erf is ``topi.fast_erf`` (< 3e-7 relative), gelu uses erfc in
  its negative tail. float64 calls libm. TVM's own tanh loses all relative precision near
  0 and libm calls are one scalar call per element, hence the inline code.
- max/min, relu, clip, prelu, sign, reductions propagate NaN like numpy (selects on a
  bit-level NaN test: ``te.max`` depends on the operand order, ``x != x`` is folded away
  by TVM's simplifier and ``tir.isnan`` stops the vectorizer).
- round is half-to-even (``nearbyint``).
- integer div/mod never trap: a zero divisor gives 0 (like the reference) and MIN / -1
  wraps (x86 would raise SIGFPE).
- float -> int casts go through int32 (8/16-bit targets) or int64 (uint32), as the C casts
  numpy compiles to, so negative floats wrap into unsigned types as numpy does on x86;
  NaN, inf and out-of-range values give unspecified results. -> bool is ``x != 0``
  (NaN -> True).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import tvm
from tvm import te, topi

from ...errors import CompileError
from .common import PARALLEL_MIN_ELEMS, placeholder, prim_func, vector_lanes
from .registry import KernelSpec, kernel

tir = tvm.tirx
PrimExpr = tvm.ir.expr.Expr  # only used in annotations

# ----------------------------------------------------------------------------- helpers


def dt(e) -> str:
    """dtype name of a PrimExpr or te.Tensor (0.27 exposes PrimType via .ty / .dtype)."""
    if isinstance(e, te.Tensor):
        return str(e.dtype)
    return str(e.ty) if hasattr(e, "ty") else str(e.dtype)


def is_float(dtype: str) -> bool:
    return dtype.startswith("float")


def is_uint(dtype: str) -> bool:
    return dtype.startswith("uint")


def is_int(dtype: str) -> bool:
    """Signed or unsigned integer (bool is not an integer here)."""
    return dtype.startswith("int") or dtype.startswith("uint")


def const(value, dtype: str) -> PrimExpr:
    return tir.const(value, dtype)


def out_shape(spec: KernelSpec, i: int = 0) -> tuple[int, ...]:
    return tuple(int(d) for d in spec.outputs[i].shape)


def out_dtype(spec: KernelSpec, i: int = 0) -> str:
    return spec.outputs[i].dtype


def bcast_indices(in_shape: Sequence[int], out_shape_: Sequence[int], idx: Sequence[PrimExpr]) -> list:
    """numpy broadcasting: indices into ``in_shape`` for output indices ``idx`` (right-aligned)."""
    off = len(out_shape_) - len(in_shape)
    if off < 0:
        raise CompileError(f"cannot broadcast shape {list(in_shape)} to {list(out_shape_)}")
    res = []
    for k, d in enumerate(in_shape):
        od = out_shape_[off + k]
        if int(d) == int(od):
            res.append(idx[off + k])
        elif int(d) == 1:
            res.append(0)
        else:
            raise CompileError(f"cannot broadcast shape {list(in_shape)} to {list(out_shape_)}")
    return res


def bcast_load(t: te.Tensor, out_shape_: Sequence[int]) -> Callable[..., PrimExpr]:
    """``f(*out_idx)`` loading ``t`` broadcast to ``out_shape_``."""
    shape = [int(d) for d in t.shape]

    def load(*idx):
        return t(*bcast_indices(shape, out_shape_, idx))
    return load


def is_nan(v: PrimExpr) -> PrimExpr:
    """NaN test on the bits: ``v != v`` is folded to False by TVM's simplifier and
    ``tir.isnan`` stops the vectorizer; |bits| > bits(inf) is neither."""
    d = dt(v)
    if d == "float16":
        v, d = v.astype("float32"), "float32"
    it = "int64" if d == "float64" else "int32"
    mask, inf_bits = ((1 << 63) - 1, 0x7FF << 52) if it == "int64" else (0x7FFFFFFF, 0x7F800000)
    return (tir.reinterpret(it, v) & const(mask, it)) > const(inf_bits, it)


def is_inf(v: PrimExpr) -> PrimExpr:
    return tir.EQ(te.abs(v), const(float("inf"), dt(v)))


# ----------------------------------------------------------------------------- float math


def let(value: PrimExpr, body: Callable[[PrimExpr], PrimExpr], name: str = "t") -> PrimExpr:
    """``body(v)`` with ``value`` bound once to a variable (a Let): expressions used several
    times are then computed once instead of being copied into every use (which made the
    generated code, and its compile time, grow exponentially with nesting)."""
    if isinstance(value, (tir.Var, tir.IntImm, tir.FloatImm)):
        return body(value)
    var = tir.Var(name, dt(value))
    return tir.Let(var, value, body(var))

#
# float32 exp and tanh are computed inline (vectorizable, about 1-3 ulp) instead of calling
# libm once per element; float64 uses libm.


def exp(v: PrimExpr) -> PrimExpr:
    """e**v. float32: Cody-Waite range reduction, degree-7 Taylor polynomial on
    |r| <= ln2/2 (truncation < 1e-8 relative), scaling by two exact powers of two so that
    overflow gives inf and underflow is gradual. NaN -> NaN, -inf -> 0, inf -> inf."""
    d = dt(v)
    if d != "float32":
        return te.exp(v)
    return let(v, _exp_f32, "ex")


def _exp_f32(v: PrimExpr) -> PrimExpr:
    d = "float32"
    hi, lo = 89.0, -104.0            # e**89 > FLT_MAX, e**-104 < smallest denormal / 2
    xc = tir.Select(v > const(hi, d), const(hi, d), tir.Select(v < const(lo, d), const(lo, d), v))

    def with_n(n):
        # ln2 = 0.693359375 - 2.12194440054690582e-4 (the first part has 9 significant bits:
        # n * it is exact)
        r = xc - n * const(0.693359375, d) - n * const(-2.12194440054690582e-4, d)

        def poly(r):
            p = const(1.0 / 5040.0, d)
            for k in (720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0):
                p = p * r + const(1.0 / k, d)
            return p
        p = let(r, poly, "r")
        ni = n.astype("int32")                       # in [-150, 129]
        a = tir.shift_right(ni, const(1, "int32"))
        b = ni - a
        s1 = tir.reinterpret(d, tir.shift_left(a + const(127, "int32"), const(23, "int32")))
        s2 = tir.reinterpret(d, tir.shift_left(b + const(127, "int32"), const(23, "int32")))
        return p * s1 * s2
    res = let(te.floor(xc * const(1.4426950408889634, d) + const(0.5, d)), with_n, "n")
    res = tir.Select(v > const(hi, d), const(float("inf"), d), tir.Select(v < const(lo, d), const(0.0, d), res))
    return tir.Select(is_nan(v), v, res)


def log(v: PrimExpr) -> PrimExpr:
    """Natural log. float32: v = 2**e * m with m in [sqrt(1/2), sqrt(2)), log(m) =
    2 atanh(s), s = (m-1)/(m+1), |s| < 0.172, odd series to s**11 (truncation < 2e-10);
    denormals are scaled by 2**24 first. 0 -> -inf, < 0 -> NaN, inf -> inf, NaN -> NaN.
    float64: libm."""
    d = dt(v)
    if d != "float32":
        return te.log(v)
    return let(v, _log_f32, "lv")


def _log_f32(v: PrimExpr) -> PrimExpr:
    d, i32 = "float32", "int32"
    tiny = v < const(1.1754943508222875e-38, d)            # below the smallest normal
    scaled = tir.Select(tiny, v * const(16777216.0, d), v)  # * 2**24

    def with_bits(bits):
        e = tir.shift_right(bits, const(23, i32)) - const(127, i32)
        m = tir.reinterpret(d, (bits & const(0x7FFFFF, i32)) | const(0x3F800000, i32))   # [1, 2)
        big = m > const(1.4142135623730951, d)
        m = tir.Select(big, m * const(0.5, d), m)
        e = e + tir.Select(big, const(1, i32), const(0, i32)) - tir.Select(tiny, const(24, i32), const(0, i32))
        ef = e.astype(d)

        def series(s):
            s2 = s * s
            p = const(1.0 / 11, d)
            for k in (9.0, 7.0, 5.0, 3.0, 1.0):
                p = p * s2 + const(1.0 / k, d)
            # e*ln2 split as for exp: the high part times e is exact
            return ef * const(0.693359375, d) + (ef * const(-2.12194440054690582e-4, d) + const(2.0, d) * s * p)
        return let((m - const(1.0, d)) / (m + const(1.0, d)), series, "ls")
    res = let(tir.reinterpret(i32, scaled), with_bits, "lb")
    res = tir.Select(tir.EQ(v, const(0.0, d)), const(float("-inf"), d), res)
    res = tir.Select(v < const(0.0, d), const(float("nan"), d), res)
    return tir.Select(tir.Or(is_nan(v), tir.EQ(v, const(float("inf"), d))), v, res)


def log1p(v: PrimExpr) -> PrimExpr:
    """log(1 + v), accurate near 0: with u = 1 + v rounded, log(u) * v / (u - 1) cancels the
    rounding of u (u == 1 gives v). float64: libm."""
    d = dt(v)
    if d != "float32":
        return tir.log1p(v)

    def body(v):
        return let(v + const(1.0, d), lambda u: tir.Select(
            tir.EQ(u, const(1.0, d)), v, log(u) * (v / (u - const(1.0, d)))), "u")
    return let(v, body, "l1")


def expm1(v: PrimExpr) -> PrimExpr:
    """e**v - 1, accurate near 0. float32: Taylor polynomial (to v**9) below |v| = 0.5,
    else exp(v) - 1; float64: libm."""
    d = dt(v)
    if d != "float32":
        return tir.call_pure_extern(d, "expm1", v)

    def body(v):
        p = const(1.0 / 362880.0, d)
        for k in (40320.0, 5040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0):
            p = p * v + const(1.0 / k, d)
        return tir.Select(te.abs(v) < const(0.5, d), v * p, exp(v) - const(1.0, d))
    return let(v, body, "em")


def tanh(v: PrimExpr) -> PrimExpr:
    """tanh. float32: odd Taylor polynomial (to x**11) below |x| = 0.3, else
    (1 - e)/(1 + e) with e = exp(-2|x|); < 3e-7 relative everywhere. float64: libm."""
    d = dt(v)
    if d != "float32":
        return tir.call_pure_extern(d, "tanh", v)

    def body(v):
        ax = te.abs(v)
        big = let(exp(const(-2.0, d) * ax), lambda e: (const(1.0, d) - e) / (const(1.0, d) + e), "e")
        big = let(big, lambda b: tir.Select(v < const(0.0, d), -b, b), "th")
        x2 = v * v
        coefs = (1.0, -1.0 / 3, 2.0 / 15, -17.0 / 315, 62.0 / 2835, -1382.0 / 155925)
        p = const(coefs[-1], d)
        for c in reversed(coefs[:-1]):
            p = p * x2 + const(c, d)
        return tir.Select(ax < const(0.3, d), v * p, big)
    return let(v, body, "tv")


def nan_max(a: PrimExpr, b: PrimExpr) -> PrimExpr:
    """numpy.maximum: NaN in either operand gives NaN (for floats)."""
    if not is_float(dt(a)):
        return tir.Select(a < b, b, a)
    return tir.Select(tir.Or(a >= b, is_nan(a)), a, b)


def nan_min(a: PrimExpr, b: PrimExpr) -> PrimExpr:
    if not is_float(dt(a)):
        return tir.Select(b < a, b, a)
    return tir.Select(tir.Or(a <= b, is_nan(a)), a, b)


def bool_ne(p: PrimExpr, q: PrimExpr) -> PrimExpr:
    """p xor q for bool expressions (``p != q`` on bools miscompiles to an fcmp)."""
    return tir.Or(tir.And(p, tir.Not(q)), tir.And(tir.Not(p), q))


def to_bool(v: PrimExpr) -> PrimExpr:
    if dt(v) == "bool":
        return v
    if is_float(dt(v)):   # LLVM's NE on floats is "ordered": NaN would give False
        return tir.Or(tir.NE(v, const(0, dt(v))), is_nan(v))
    return tir.NE(v, const(0, dt(v)))


def cast(v: PrimExpr, to: str) -> PrimExpr:
    """numpy ``astype`` semantics (see the module docstring for float -> int)."""
    src = dt(v)
    if src == to:
        return v
    if to == "bool":
        return to_bool(v)
    if src == "bool":
        return tir.Select(v, const(1, to), const(0, to))
    if is_float(src) and is_int(to):
        bits = tvm.DataType(to).bits
        if src == "float16":
            v = v.astype("float32")
        if to == "uint64":
            two63 = const(2.0 ** 63, dt(v))
            high = (v - two63).astype("int64").astype("uint64") + const(1 << 63, "uint64")
            low = v.astype("int64").astype("uint64")
            return tir.Select(v >= two63, high, low)
        if to in ("int32", "int64"):
            return v.astype(to)
        via = "int64" if (to == "uint32") else "int32"
        assert bits <= 32
        return v.astype(via).astype(to)
    return v.astype(to)


def _check_dtype(spec: KernelSpec, dtype: str, allowed: str) -> None:
    ok = {"float": is_float(dtype), "num": dtype != "bool", "bool": dtype == "bool",
          "int": is_int(dtype), "any": True}[allowed]
    if not ok:
        kinds = {"float": "a float", "num": "a numeric", "bool": "a bool", "int": "an integer"}
        raise CompileError(f"{spec.op}: dtype {dtype} is not supported (needs {kinds[allowed]} dtype)")


def attr(spec: KernelSpec, name: str, default=None):
    v = spec.attrs.get(name, default)
    return default if v is None and default is not None else v


# ----------------------------------------------------------------------------- schedule


def injective_schedule(sch: tvm.s_tir.Schedule, spec: KernelSpec) -> None:
    """Schedule for injective kernels (elementwise, data movement).

    Producer stages are inlined. Then per block: when the innermost extent is a multiple
    of the vector width, all loops are fused and split into (parallel, vectorized);
    otherwise the outer loops are fused (parallel) and the innermost loop is left for
    LLVM's loop vectorizer. Fusing across a row whose length is not a multiple of the
    vector width makes every vector lane decompose its index with div/mod (10-16x slower
    than the plain row loop, measured on (16,512,7,7) and (8,64,56,56) float32).
    """
    root = sch.get_sblock("root")
    blocks = list(sch.get_child_blocks(root))
    n_in = sum(1 for t in spec.inputs if t is not None)
    out_names = {p.name for p in sch.mod["main"].params[n_in:]}
    for b in blocks:
        if any(w.source.name in out_names for w in sch.get(b).writes):
            continue
        try:
            sch.compute_inline(b)
        except Exception:  # noqa: BLE001  (a stage that cannot be inlined stays: still correct)
            pass
    for b in sch.get_child_blocks(root):
        _schedule_rows(sch, b, spec)


def _schedule_rows(sch: tvm.s_tir.Schedule, block, spec: KernelSpec) -> None:
    loops = sch.get_loops(block)
    if not loops or any(iv.iter_type != 0 for iv in sch.get(block).iter_vars):
        return
    extents = [int(sch.get(lp).extent) for lp in loops]
    total = 1
    for e in extents:
        total *= e
    if total == 0:
        return
    write = sch.get(block).writes[0].source.dtype
    lanes = vector_lanes(spec, str(write))
    par = total >= PARALLEL_MIN_ELEMS
    if extents[-1] % lanes == 0 or len(loops) == 1:
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        if total % lanes == 0 and total >= 2 * lanes:
            fused, inner = sch.split(fused, [None, lanes])
            sch.vectorize(inner)
        if par and int(sch.get(fused).extent) >= 2:
            sch.parallel(fused)
        return
    outer = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
    if par and int(sch.get(outer).extent) >= 2:
        sch.parallel(outer)


def numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def flat_prim_func(spec: KernelSpec, ins: Sequence[te.Tensor], outs: Sequence[te.Tensor],
                   shapes: Sequence[Sequence[int]], schedule: Callable = None) -> tvm.tirx.PrimFunc:
    """PrimFunc over ``ins + outs`` computed on flat (1-D) tensors, whose parameters have
    the real ``shapes`` (one per tensor, same element counts): each flat tensor becomes a
    view (DeclBuffer) of its parameter's data. A flat loop vectorizes and splits for
    threads whatever the shape; the runtime still checks the real shapes."""
    func = te.create_prim_func(list(ins) + list(outs))
    params, decls = [], []
    for prm, shape in zip(func.params, shapes):
        shape = tuple(int(d) for d in shape)
        if tuple(int(d) for d in prm.shape) == shape:
            params.append(prm)
            continue
        full = tir.decl_buffer(shape, str(prm.dtype), name=prm.name)
        params.append(full)
        decls.append(tir.DeclBuffer(prm, data=full.data))
    if decls:
        realize = func.body
        rb = realize.block
        block = tvm.s_tir.SBlock(rb.iter_vars, rb.reads, rb.writes, rb.name_hint, tir.SeqStmt(decls + [rb.body]),
                                 rb.init, rb.alloc_buffers, rb.match_buffers, rb.annotations)
        func = tir.PrimFunc(params, tvm.s_tir.SBlockRealize(realize.iter_values, realize.predicate, block),
                            func.ret_type, func.attrs)
    sch = tvm.s_tir.Schedule(func)
    (schedule or injective_schedule)(sch, spec)
    return sch.mod["main"]


def pointwise(spec: KernelSpec, names: Sequence[str], body: Callable[..., PrimExpr], name: str = "y"):
    """Kernel y[i] = body(in0[i'], in1[i''], ...) with numpy broadcasting of the inputs.

    When every input has the output's shape or a single element (the common case) the
    kernel runs over flat views (see ``flat_prim_func``); otherwise over the real shapes.
    """
    oshape, odt = out_shape(spec), out_dtype(spec)
    types = [t for t in spec.inputs if t is not None]
    n = numel(oshape)
    if n > 0 and all(tuple(t.shape) == oshape or numel(t.shape) == 1 for t in types):
        phs = [te.placeholder((numel(t.shape),), t.dtype, name=nm) for t, nm in zip(types, names)]

        def flat_body(i):
            return _as(body(*[p[i] if int(p.shape[0]) == n else p[0] for p in phs]), odt)
        y = te.compute((n,), flat_body, name=name)
        return flat_prim_func(spec, phs, [y], [t.shape for t in types] + [oshape])
    phs = [placeholder(spec, k, nm) for k, nm in zip([k for k, t in enumerate(spec.inputs) if t is not None], names)]
    loads = [bcast_load(p, oshape) for p in phs]
    y = te.compute(oshape, lambda *i: _as(body(*[ld(*i) for ld in loads]), odt), name=name)
    return prim_func(spec, phs, [y], injective_schedule)


def _as(v: PrimExpr, dtype: str) -> PrimExpr:
    return v if dt(v) == dtype else v.astype(dtype)


# ----------------------------------------------------------------------------- copy


@kernel("copy")
def copy(spec: KernelSpec):
    x = spec.inputs[0]
    if tuple(x.shape) != out_shape(spec) or x.dtype != out_dtype(spec):
        raise CompileError(f"copy: input {x.dtype}{list(x.shape)} != output {out_dtype(spec)}{list(out_shape(spec))}")
    return pointwise(spec, ["x"], lambda v: v)


# ----------------------------------------------------------------------------- unary


def _unary(op: str, fn: Callable[[PrimExpr, KernelSpec], PrimExpr], allowed: str = "float",
           widen_f16: bool = True) -> None:
    """Register ``op`` as y = fn(x) with y of the output dtype."""
    def gen(spec: KernelSpec):
        _check_dtype(spec, spec.inputs[0].dtype, allowed)

        def body(v):
            if widen_f16 and dt(v) == "float16":
                v = v.astype("float32")
            return fn(v, spec)
        return pointwise(spec, ["x"], body)
    gen.__name__ = op
    kernel(op)(gen)


def _zero(v):
    return const(0, dt(v))


def _one(v):
    return const(1, dt(v))


def _sigmoid(v: PrimExpr) -> PrimExpr:
    def body(v):
        # e = exp(-|x|) is in (0, 1]: never overflows
        return let(exp(-te.abs(v)), lambda e: let(
            _one(v) / (_one(v) + e), lambda s: tir.Select(v >= _zero(v), s, e * s), "s"), "e")
    return let(v, body, "sv")


def _unary_tensor(op: str, tfn: Callable[[te.Tensor, KernelSpec], te.Tensor]) -> None:
    """Register a float op built from tensor stages: y = tfn(x widened to float32 if f16)."""
    def gen(spec: KernelSpec):
        t = spec.inputs[0]
        _check_dtype(spec, t.dtype, "float")
        odt = out_dtype(spec)
        n = numel(t.shape)
        x = te.placeholder((n,), t.dtype, name="x")     # flat: a unary op needs no shape
        xf = x if dt(x) != "float16" else te.compute(x.shape, lambda i: x[i].astype("float32"), name="xf")
        r = tfn(xf, spec)
        if dt(r) != odt:
            r = te.compute(x.shape, lambda i: r[i].astype(odt), name="y")
        return flat_prim_func(spec, [x], [r], [t.shape, t.shape])
    gen.__name__ = op
    kernel(op)(gen)


def erf_tensor(t: te.Tensor) -> te.Tensor:
    """erf of a float tensor. float32: ``topi.fast_erf`` (vectorizable, < 3e-7 relative
    against float64 erf) with NaN passed through (fast_erf maps NaN to 1); else libm."""
    if dt(t) == "float32":
        e = topi.fast_erf(t)
        return te.compute(t.shape, lambda *i: tir.Select(is_nan(t(*i)), t(*i), e(*i)), name="erf")
    return te.compute(t.shape, lambda *i: te.erf(t(*i)), name="erf")


# erfc(z) = t * exp(-z*z + g(t)) with t = 1/(1 + z/2), z in [0, 10]: g is a degree-10
# polynomial (highest power first) fitted by least squares to log(erfc(z)/t) + z*z on 20001
# points of t in [1/6, 1] (numpy.polyfit against scipy.special.erfc); |error| < 3e-8, and
# under 6e-7 when evaluated in float32.
_ERFC_G = (-0.1490838858542054, 1.0162230061730624, -2.9077022941259303, 4.4259929692497915,
           -3.7408622549065584, 1.793615181590621, -0.768370957865618, 0.24228637388813157,
           0.3514931281720376, 1.0019945890871371, -1.2655858491505705)


def erfc_nonneg(z: PrimExpr, z2: PrimExpr) -> PrimExpr:
    """erfc(z) for float32 z >= 0 (``z2`` = z*z, computed by the caller as accurately as it
    can: its rounding error is the result's relative error). About 1e-6 relative."""
    d = dt(z)

    def body(t):
        g = const(_ERFC_G[0], d)
        for c in _ERFC_G[1:]:
            g = g * t + const(c, d)
        return t * exp(g - z2)
    return let(z, lambda z: tir.Select(z > const(10.0, d), const(0.0, d), let(
        const(1.0, d) / (const(1.0, d) + const(0.5, d) * z), body, "et")), "ez")


def _gelu_tensor(t: te.Tensor, spec: KernelSpec) -> te.Tensor:
    d = dt(t)
    half, one = const(0.5, d), const(1.0, d)
    approx = attr(spec, "approximate", "none")
    if approx == "tanh":
        k = const(math.sqrt(2.0 / math.pi), d)
        return te.compute(t.shape, lambda *i: let(t(*i), lambda x: half * x * (one + tanh(
            k * (x + const(0.044715, d) * x * x * x))), "gx"), name="gelu")
    if approx != "none":
        raise CompileError(f"gelu: approximate={approx!r} is not 'none' or 'tanh'")
    if d != "float32":
        # x * Phi(x) = x/2 * erfc(-x/sqrt(2)): no cancellation in the negative tail
        return te.compute(t.shape, lambda *i: half * t(*i) * tir.call_pure_extern(
            d, "erfc", t(*i) * const(-1.0 / math.sqrt(2.0), d)), name="gelu")

    def body(x):
        e = erfc_nonneg(te.abs(x) * const(1.0 / math.sqrt(2.0), d), half * x * x)
        # x < 0: x/2 * erfc(|x|/sqrt2); x >= 0: x * (1 - erfc(x/sqrt2)/2)
        return let(e, lambda e: tir.Select(x < const(0.0, d), half * x * e, x * (one - half * e)), "ge")
    return te.compute(t.shape, lambda *i: let(t(*i), body, "gx"), name="gelu")


def _sign(v: PrimExpr) -> PrimExpr:
    one, zero = _one(v), _zero(v)
    if is_uint(dt(v)):
        return tir.Select(v > zero, one, zero)
    r = tir.Select(v > zero, one, tir.Select(v < zero, const(-1, dt(v)), zero))
    return tir.Select(is_nan(v), v, r) if is_float(dt(v)) else r


def _softplus(v: PrimExpr) -> PrimExpr:
    # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), no overflow for large x
    return let(v, lambda v: tir.Select(v > _zero(v), v, _zero(v)) + log1p(exp(-te.abs(v))), "sp")


def _round(v: PrimExpr) -> PrimExpr:
    return tir.nearbyint(v) if is_float(dt(v)) else v


def _floor(v: PrimExpr) -> PrimExpr:
    return te.floor(v) if is_float(dt(v)) else v


def _ceil(v: PrimExpr) -> PrimExpr:
    return te.ceil(v) if is_float(dt(v)) else v


def _abs(v: PrimExpr) -> PrimExpr:
    if is_uint(dt(v)) or dt(v) == "bool":
        return v
    if is_float(dt(v)):
        return te.abs(v)
    return tir.Select(v < _zero(v), _zero(v) - v, v)


def _neg(v: PrimExpr) -> PrimExpr:
    return _zero(v) - v


def _relu(v: PrimExpr) -> PrimExpr:
    return tir.Select(v < _zero(v), _zero(v), v)


def _hard_sigmoid_expr(v: PrimExpr, alpha: float, beta: float) -> PrimExpr:
    t = const(alpha, dt(v)) * v + const(beta, dt(v))
    return nan_min(nan_max(t, _zero(v)), _one(v))


def _elu_neg(v: PrimExpr, alpha: float) -> PrimExpr:
    return const(alpha, dt(v)) * expm1(v)


def _clip(v: PrimExpr, spec: KernelSpec) -> PrimExpr:
    lo, hi = spec.attrs.get("min"), spec.attrs.get("max")
    if lo is not None:
        lo_c = _clip_bound(lo, dt(v))
        v = tir.Select(v < lo_c, lo_c, v)
    if hi is not None:
        hi_c = _clip_bound(hi, dt(v))
        v = tir.Select(v > hi_c, hi_c, v)
    return v


def _clip_bound(b, dtype: str) -> PrimExpr:
    if is_float(dtype):
        return const(float(b), dtype)
    info = tvm.DataType(dtype)
    lo = 0 if is_uint(dtype) else -(1 << (info.bits - 1))
    hi = (1 << info.bits) - 1 if is_uint(dtype) else (1 << (info.bits - 1)) - 1
    # a bound outside the dtype's range clamps nothing on that side
    b = math.floor(b) if float(b) >= 0 else math.ceil(b)
    return const(min(max(int(b), lo), hi), dtype)


_unary("relu", lambda v, s: _relu(v), "num")
_unary("sigmoid", lambda v, s: _sigmoid(v))
_unary("tanh", lambda v, s: tanh(v))
_unary_tensor("erf", lambda t, s: erf_tensor(t))
_unary("sqrt", lambda v, s: te.sqrt(v))
_unary("exp", lambda v, s: exp(v))
_unary("log", lambda v, s: log(v))
_unary("sin", lambda v, s: te.sin(v))
_unary("cos", lambda v, s: te.cos(v))
_unary("abs", lambda v, s: _abs(v), "num")
_unary("neg", lambda v, s: _neg(v), "num")
_unary("reciprocal", lambda v, s: _one(v) / v)
_unary("floor", lambda v, s: _floor(v), "num")
_unary("ceil", lambda v, s: _ceil(v), "num")
_unary("round", lambda v, s: _round(v), "num")
_unary("sign", lambda v, s: _sign(v), "num")
_unary("softplus", lambda v, s: _softplus(v))
_unary("softsign", lambda v, s: v / (_one(v) + te.abs(v)))
_unary("hard_swish", lambda v, s: v * _hard_sigmoid_expr(v, 1.0 / 6.0, 0.5))
_unary("not", lambda v, s: tir.Not(v), "bool")
_unary("leaky_relu", lambda v, s: tir.Select(v < _zero(v), const(float(attr(s, "alpha", 0.01)), dt(v)) * v, v))
_unary("elu", lambda v, s: tir.Select(v > _zero(v), v, _elu_neg(v, float(attr(s, "alpha", 1.0)))))
_unary("selu", lambda v, s: const(float(attr(s, "gamma", 1.05070102214813232421875)), dt(v)) * tir.Select(
    v > _zero(v), v, _elu_neg(v, float(attr(s, "alpha", 1.67326319217681884765625)))))
_unary("hard_sigmoid", lambda v, s: _hard_sigmoid_expr(v, float(attr(s, "alpha", 0.2)), float(attr(s, "beta", 0.5))))
_unary_tensor("gelu", _gelu_tensor)
_unary("clip", _clip, "num")


@kernel("cast")
def cast_kernel(spec: KernelSpec):
    to = out_dtype(spec)
    want = attr(spec, "to", to)
    if str(want) != to:
        raise CompileError(f"cast: attribute to={want!r} disagrees with the output dtype {to}")
    return pointwise(spec, ["x"], lambda v: cast(v, to))


# ----------------------------------------------------------------------------- binary


def _int_div(a: PrimExpr, b: PrimExpr) -> PrimExpr:
    """C division (truncation toward zero) that never traps: b == 0 -> 0, MIN / -1 wraps."""
    zero, one = _zero(a), _one(a)
    if is_uint(dt(a)):
        safe = tir.Select(tir.EQ(b, zero), one, b)
        return tir.Select(tir.EQ(b, zero), zero, tir.truncdiv(a, safe))
    m1 = const(-1, dt(a))
    safe = tir.Select(tir.Or(tir.EQ(b, zero), tir.EQ(b, m1)), one, b)
    q = tir.truncdiv(a, safe)
    return tir.Select(tir.EQ(b, zero), zero, tir.Select(tir.EQ(b, m1), zero - a, q))


def _int_mod(a: PrimExpr, b: PrimExpr, fmod: bool) -> PrimExpr:
    """fmod=1: C remainder (sign of a); fmod=0: numpy/python mod (sign of b). b == 0 -> 0."""
    zero, one = _zero(a), _one(a)
    if is_uint(dt(a)):
        safe = tir.Select(tir.EQ(b, zero), one, b)
        return tir.Select(tir.EQ(b, zero), zero, tir.truncmod(a, safe))
    m1 = const(-1, dt(a))
    safe = tir.Select(tir.Or(tir.EQ(b, zero), tir.EQ(b, m1)), one, b)
    r = tir.truncmod(a, safe)  # remainder by 1 is 0, which is also the answer for -1
    if not fmod:
        r = tir.Select(tir.And(tir.NE(r, zero), bool_ne(r < zero, safe < zero)), r + safe, r)
    return r


def _float_mod(a: PrimExpr, b: PrimExpr, fmod: bool) -> PrimExpr:
    r = tir.call_pure_extern(dt(a), "fmodf" if dt(a) == "float32" else "fmod", a, b)
    if fmod:
        return r
    zero = _zero(a)
    # numpy.mod: the result takes the divisor's sign
    fixed = tir.Select(tir.And(tir.NE(r, zero), bool_ne(r < zero, b < zero)), r + b, r)
    return tir.Select(tir.EQ(r, zero), tir.copysign(zero, b), fixed)


def _pow(a: PrimExpr, b: PrimExpr, out: str) -> PrimExpr:
    if is_float(dt(a)):
        return te.power(a, b.astype(dt(a)) if dt(b) != dt(a) else b)
    # integer base: exact in float64 for every representable int32 result
    r = te.power(a.astype("float64"), b.astype("float64"))
    return cast(r, out)


def _binary_expr(op: str, a: PrimExpr, b: PrimExpr, spec: KernelSpec) -> PrimExpr:
    typ = dt(a)
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "div":
        return a / b if is_float(typ) else _int_div(a, b)
    if op == "max":
        return nan_max(a, b)
    if op == "min":
        return nan_min(a, b)
    if op == "mod":
        fmod = bool(int(attr(spec, "fmod", 0)))
        return _float_mod(a, b, fmod) if is_float(typ) else _int_mod(a, b, fmod)
    if op == "equal":
        return tir.Not(bool_ne(a, b)) if typ == "bool" else tir.EQ(a, b)
    if op == "less":
        return a < b
    if op == "less_equal":
        return a <= b
    if op == "greater":
        return a > b
    if op == "greater_equal":
        return a >= b
    if op == "and":
        return tir.And(to_bool(a), to_bool(b))
    if op == "or":
        return tir.Or(to_bool(a), to_bool(b))
    if op == "xor":
        return bool_ne(to_bool(a), to_bool(b))
    raise AssertionError(op)


_ARITH = ("add", "sub", "mul", "div", "max", "min", "mod")
_COMPARE = ("equal", "less", "less_equal", "greater", "greater_equal")
_LOGIC = ("and", "or", "xor")


def _check_same(spec: KernelSpec, *idx: int) -> None:
    dts = [spec.inputs[k].dtype for k in idx]
    if len(set(dts)) != 1:
        raise CompileError(f"{spec.op}: input dtypes differ ({', '.join(dts)})")


def _widen(*vs: PrimExpr) -> list:
    return [v.astype("float32") if dt(v) == "float16" else v for v in vs]


def _register_binary(op: str) -> None:
    def gen(spec: KernelSpec):
        _check_same(spec, 0, 1)
        typ = spec.inputs[0].dtype
        if op in _LOGIC:
            _check_dtype(spec, typ, "bool")
        elif typ == "bool" and op in _ARITH:
            raise CompileError(f"{op}: dtype bool is not supported")
        return pointwise(spec, ["a", "b"], lambda va, vb: _binary_expr(op, *_widen(va, vb), spec))
    gen.__name__ = op
    kernel(op)(gen)


for _op in _ARITH + _COMPARE + _LOGIC:
    _register_binary(_op)


@kernel("pow")
def pow_kernel(spec: KernelSpec):
    _check_dtype(spec, spec.inputs[0].dtype, "num")
    _check_dtype(spec, spec.inputs[1].dtype, "num")
    odt = out_dtype(spec)
    return pointwise(spec, ["a", "b"], lambda va, vb: _pow(*_widen(va, vb), odt))


@kernel("where")
def where(spec: KernelSpec):
    _check_same(spec, 1, 2)
    return pointwise(spec, ["cond", "a", "b"], lambda c, a, b: tir.Select(to_bool(c), a, b))


@kernel("prelu")
def prelu(spec: KernelSpec):
    _check_same(spec, 0, 1)
    _check_dtype(spec, spec.inputs[0].dtype, "num")

    def body(vx, vs):
        vx, vs = _widen(vx, vs)
        return tir.Select(vx < _zero(vx), vs * vx, vx)
    return pointwise(spec, ["x", "slope"], body)
