"""x86 integer dot-product tensor intrinsics for the int8 kernels (quant.py, quant_conv.py).

Every intrinsic is exact (no saturation anywhere): the u8 x s8 products and their sums are the
int32 arithmetic of the references in edgec/ops/quant.py.

``Isa`` describes one instruction set: ``lanes`` int32 accumulators per vector, ``group``
consecutive reduction elements folded into one lane per instruction, the weight storage dtype
(int8 for VNNI, int16 for AVX2: pre-widened so that a pair is one 32-bit broadcast) and two
intrinsics:

- ``px`` ("pixels"): C[L] += sum_g A[L, g] * B[g]; A = L lanes x group uint8 activations
  (contiguous), B = group weights broadcast to every lane (used by qconv: lanes are output
  pixels, the weight of one output channel is broadcast);
- ``oc`` ("output channels"): C[L] += sum_g A[g] * B[L, g]; A = group uint8 activations
  broadcast, B = L x group weights (used by qdense: lanes are output channels).

- ``dot`` (the GEMV of ``quant_conv.dense_gemv_isa``): C[L] += sum_g A[l*G + g] * B[l*G + g];
  both operands are L*G contiguous bytes, uint8 and int8 (a block of one activation row and of one
  weight row, the weights in their [N, K] layout: nothing is repacked); the L lanes are summed
  once at the end of the row.

VNNI (AVX-512, ``+avx512vnni``): L = 16, group = 4, one ``vpdpbusd`` (u8 x s8, four products
summed into each int32 lane without saturation). TVM's stock intrinsic passes int32x16 operands
that LLVM >= 21 rejects; these reinterpret to int8x64.

AVX2 also registers ``AVX2_OC16`` (``oc`` with int16 activations: qmatmul's ``a - z_a`` against
``b - z_b``, both in [-255, 255], one ``vpmaddwd``; 2 x 255 x 255 fits an int32 lane).

AVX2 (``+avx2``): L = 8, group = 2: ``vpmovzxbw`` widens 16 uint8 to int16 (exact), the weights
are int16 already (``dot``: ``vpmovsxbw`` widens 16 int8 weights), ``vpmaddwd`` multiplies int16
pairs and adds each pair into an int32 lane
(255 * 127 * 2 < 2^31: exact), then ``vpaddd``. ``vpmaddubsw`` is not used: its int16 pair sum
saturates (docs/quantization.md section 2).

SDOT (AArch64 ``+dotprod``, Armv8.2-A): L = 4, group = 4, int8 activations (the ARM targets
quantize activations to int8), ``dot`` only: one ``sdot v.4s, v.16b, v.16b`` adds four s8 x s8
products into each of 4 int32 lanes (|4 * 128 * 128| < 2^31: exact, no saturation). ``px`` and
``oc`` are "": qconv and the packed qdense stay on the portable schedules there.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Isa:
    name: str
    lanes: int
    group: int
    w_dtype: str          # weight storage in the packed layouts
    px: str               # intrinsic names
    oc: str
    max_acc: int          # accumulator vectors a register tile may use
    dot: str = ""         # vector x vector intrinsic (GEMV), "" when the ISA has none
    x_dtype: str = "uint8"  # activation dtype the intrinsics read


# TensorIntrin.register raises on a second registration of a name: kernels are generated on
# several threads (build_kernels), so check-and-register happens under this lock
_LOCK = threading.Lock()


def _registered(name: str) -> bool:
    from tvm.s_tir import TensorIntrin
    try:
        TensorIntrin.get(name)
        return True
    except Exception:  # noqa: BLE001  (not registered yet)
        return False


def _register_vnni() -> Isa:
    isa = Isa("vnni", 16, 4, "int8", "edgec_vnni_px_16x4", "edgec_vnni_u8s8i32_16x4", 20, "edgec_vnni_dot_16x4")
    with _LOCK:
        if not _registered(isa.dot):
            _register_vnni_intrins(isa)
    return isa


def _register_vnni_intrins(isa: Isa) -> None:
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def px_desc(A: T.Buffer((16, 4), "uint8", offset_factor=1), B: T.Buffer((4,), "int8", offset_factor=1),
                C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:16, 0:4], B[0:4])
            T.writes(C[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vi, vk], "int32") * T.cast(B[vk], "int32")

    @T.prim_func(s_tir=True)
    def px_impl(A: T.Buffer((16, 4), "uint8", offset_factor=1), B: T.Buffer((4,), "int8", offset_factor=1),
                C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:16, 0:4], B[0:4])
            T.writes(C[0:16])
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"),
                T.reinterpret(A.vload([0, 0], dtype="uint8x64"), dtype="int8x64"),
                T.reinterpret(T.broadcast(T.reinterpret(B.vload([0], "int8x4"), dtype="int32"), 16), dtype="int8x64"),
                dtype="int32x16")

    @T.prim_func(s_tir=True)
    def oc_desc(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((16, 4), "int8", offset_factor=1),
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
    def oc_impl(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((16, 4), "int8", offset_factor=1),
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

    @T.prim_func(s_tir=True)
    def dot_desc(A: T.Buffer((64,), "uint8", offset_factor=1), B: T.Buffer((64,), "int8", offset_factor=1),
                 C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:64], B[0:64])
            T.writes(C[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vi * 4 + vk], "int32") * T.cast(B[vi * 4 + vk], "int32")

    @T.prim_func(s_tir=True)
    def dot_impl(A: T.Buffer((64,), "uint8", offset_factor=1), B: T.Buffer((64,), "int8", offset_factor=1),
                 C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:64], B[0:64])
            T.writes(C[0:16])
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"),
                T.reinterpret(A.vload([0], dtype="uint8x64"), dtype="int8x64"),
                B.vload([0], dtype="int8x64"),
                dtype="int32x16")

    for name, desc, impl in ((isa.oc, oc_desc, oc_impl), (isa.px, px_desc, px_impl), (isa.dot, dot_desc, dot_impl)):
        if not _registered(name):
            TensorIntrin.register(name, desc, impl)


def _register_avx2() -> Isa:
    isa = Isa("avx2", 8, 2, "int16", "edgec_avx2_px_8x2", "edgec_avx2_oc_8x2", 8, "edgec_avx2_dot_8x2")
    with _LOCK:
        if not _registered(isa.dot):
            _register_avx2_intrins(isa)
    return isa


def _register_avx2_intrins(isa: Isa) -> None:
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def px_desc(A: T.Buffer((8, 2), "uint8", offset_factor=1), B: T.Buffer((2,), "int16", offset_factor=1),
                C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:8, 0:2], B[0:2])
            T.writes(C[0:8])
            for i in T.serial(0, 8):
                for k in T.serial(0, 2):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vi, vk], "int32") * T.cast(B[vk], "int32")

    @T.prim_func(s_tir=True)
    def px_impl(A: T.Buffer((8, 2), "uint8", offset_factor=1), B: T.Buffer((2,), "int16", offset_factor=1),
                C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:8, 0:2], B[0:2])
            T.writes(C[0:8])
            C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.Cast("int16x16", A.vload([0, 0], dtype="uint8x16")),
                T.reinterpret(T.broadcast(T.reinterpret(B.vload([0], "int16x2"), dtype="int32"), 8), dtype="int16x16"),
                dtype="int32x8")

    @T.prim_func(s_tir=True)
    def oc_desc(A: T.Buffer((2,), "uint8", offset_factor=1), B: T.Buffer((8, 2), "int16", offset_factor=1),
                C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2], B[0:8, 0:2])
            T.writes(C[0:8])
            for i in T.serial(0, 8):
                for k in T.serial(0, 2):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def oc_impl(A: T.Buffer((2,), "uint8", offset_factor=1), B: T.Buffer((8, 2), "int16", offset_factor=1),
                C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2], B[0:8, 0:2])
            T.writes(C[0:8])
            C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                B.vload([0, 0], dtype="int16x16"),
                T.reinterpret(T.broadcast(T.reinterpret(T.Cast("int16x2", A.vload([0], "uint8x2")), dtype="int32"), 8),
                              dtype="int16x16"),
                dtype="int32x8")

    @T.prim_func(s_tir=True)
    def dot_desc(A: T.Buffer((16,), "uint8", offset_factor=1), B: T.Buffer((16,), "int8", offset_factor=1),
                 C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:16], B[0:16])
            T.writes(C[0:8])
            for i in T.serial(0, 8):
                for k in T.serial(0, 2):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vi * 2 + vk], "int32") * T.cast(B[vi * 2 + vk], "int32")

    @T.prim_func(s_tir=True)
    def dot_impl(A: T.Buffer((16,), "uint8", offset_factor=1), B: T.Buffer((16,), "int8", offset_factor=1),
                 C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:16], B[0:16])
            T.writes(C[0:8])
            C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.Cast("int16x16", A.vload([0], dtype="uint8x16")),
                T.Cast("int16x16", B.vload([0], dtype="int8x16")),
                dtype="int32x8")

    @T.prim_func(s_tir=True)
    def oc16_desc(A: T.Buffer((2,), "int16", offset_factor=1), B: T.Buffer((8, 2), "int16", offset_factor=1),
                  C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2], B[0:8, 0:2])
            T.writes(C[0:8])
            for i in T.serial(0, 8):
                for k in T.serial(0, 2):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def oc16_impl(A: T.Buffer((2,), "int16", offset_factor=1), B: T.Buffer((8, 2), "int16", offset_factor=1),
                  C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2], B[0:8, 0:2])
            T.writes(C[0:8])
            C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                B.vload([0, 0], dtype="int16x16"),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int16x2"), dtype="int32"), 8), dtype="int16x16"),
                dtype="int32x8")

    for name, desc, impl in ((isa.oc, oc_desc, oc_impl), (isa.px, px_desc, px_impl), (isa.dot, dot_desc, dot_impl),
                             (AVX2_OC16, oc16_desc, oc16_impl)):
        if not _registered(name):
            TensorIntrin.register(name, desc, impl)


# AVX2 "oc" with int16 activations too (A int16 pairs broadcast, B int16 [8, 2], one vpmaddwd):
# qmatmul feeds it (a - z_a) and (b - z_b), both in [-255, 255]; 2 x 255 x 255 fits an int32 lane
AVX2_OC16 = "edgec_avx2_oc16_8x2"


def _register_sdot() -> Isa:
    isa = Isa("sdot", 4, 4, "int8", "", "", 0, "edgec_sdot_dot_4x4", "int8")
    with _LOCK:
        if not _registered(isa.dot):
            _register_sdot_intrins(isa)
    return isa


def _register_sdot_intrins(isa: Isa) -> None:
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def dot_desc(A: T.Buffer((16,), "int8", offset_factor=1), B: T.Buffer((16,), "int8", offset_factor=1),
                 C: T.Buffer((4,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:4], A[0:16], B[0:16])
            T.writes(C[0:4])
            for i in T.serial(0, 4):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vi * 4 + vk], "int32") * T.cast(B[vi * 4 + vk], "int32")

    @T.prim_func(s_tir=True)
    def dot_impl(A: T.Buffer((16,), "int8", offset_factor=1), B: T.Buffer((16,), "int8", offset_factor=1),
                 C: T.Buffer((4,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:4], A[0:16], B[0:16])
            T.writes(C[0:4])
            C[T.ramp(T.int32(0), 1, 4)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.sdot.v4i32.v16i8"),
                C.vload([0], dtype="int32x4"),
                A.vload([0], dtype="int8x16"),
                B.vload([0], dtype="int8x16"),
                dtype="int32x4")

    if not _registered(isa.dot):
        TensorIntrin.register(isa.dot, dot_desc, dot_impl)


def mulhi_intrin(lanes: int, signed: bool = False) -> str:
    """The name of a registered intrinsic ``C[l] = hi32(ext(M[0]) * ext(A[l]))`` for ``lanes``
    32-bit lanes, the multiply-high of the 32-bit requantization. Unsigned (``quant.requant_hi32``):
    A and C uint32, zero extensions, M one non-negative int32 multiplier. ``signed``
    (``quant.hi32s_finish``, where no accumulator can land on a rounding tie): A and C int32,
    sign extensions. The impl multiplies the even and the odd lanes as 64-bit lanes extended from
    their low halves, ``(v << 32) >> 32`` and ``v >> 32`` (logical shifts for uint64, arithmetic
    for int64: LLVM two ``vpmuludq`` / ``vpmuldq``) and gathers the high halves with one
    two-source shuffle (``vpermt2d``). The scalar form would be vectorized by widening to
    2 x lanes/2 int64 lanes and narrowing back (10 instructions for 16 lanes instead of 5)."""
    name = f"edgec_mulhi_{'s' if signed else 'u'}32x{lanes}"
    with _LOCK:
        if not _registered(name):
            _register_mulhi(name, lanes, signed)
    return name


def _register_mulhi(name: str, lanes: int, signed: bool) -> None:
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T
    half = lanes // 2
    d32, d64 = ("int32", "int64") if signed else ("uint32", "uint64")
    vec, wide = f"{d32}x{lanes}", f"{d64}x{half}"
    picks = [v for i in range(half) for v in (2 * i + 1, lanes + 2 * i + 1)]
    import tvm
    k32 = tvm.tirx.const(32, d64)

    @T.prim_func(s_tir=True)
    def desc(M: T.Buffer((1,), "int32", offset_factor=1), A: T.Buffer((lanes,), d32, offset_factor=1),
             C: T.Buffer((lanes,), d32, offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(M[0:1], A[0:lanes])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                with T.sblock("update"):
                    vi = T.axis.remap("S", [i])
                    C[vi] = T.Cast(d32, T.shift_right(T.Cast(d64, M[0]) * T.Cast(d64, A[vi]), k32))

    @T.prim_func(s_tir=True)
    def impl(M: T.Buffer((1,), "int32", offset_factor=1), A: T.Buffer((lanes,), d32, offset_factor=1),
             C: T.Buffer((lanes,), d32, offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(M[0:1], A[0:lanes])
            T.writes(C[0:lanes])
            # one expression (no let-bound vectors: TVM would give each a workspace buffer). M is
            # extended through d32 (unsigned: zero-extended, M >= 0, the same value as the
            # description's): with both factors known below 2^32 LLVM multiplies with vpmuludq;
            # a sign-extended M made it a full 64-bit multiply (vpmullq on AVX-512) wherever
            # |acc| was taken (measured gain on Zen 4: within noise, e.g. PP-OCR's 200->32
            # 7.3 -> 7.2 us)
            C[T.ramp(T.int32(0), 1, lanes)] = T.Shuffle([
                T.reinterpret(T.shift_right(T.shift_left(T.reinterpret(A.vload([0], dtype=vec), dtype=wide),
                                                         T.broadcast(k32, half)), T.broadcast(k32, half))
                              * T.broadcast(T.Cast(d64, T.Cast(d32, M[0])), half), dtype=vec),
                T.reinterpret(T.shift_right(T.reinterpret(A.vload([0], dtype=vec), dtype=wide), T.broadcast(k32, half))
                              * T.broadcast(T.Cast(d64, T.Cast(d32, M[0])), half), dtype=vec)], picks)

    TensorIntrin.register(name, desc, impl)


def _mattr(target) -> list[str]:
    tv = getattr(target, "tvm", None) or {}
    return list(tv.get("mattr", [])) if isinstance(tv, dict) else []


def target_isa(target) -> Isa | None:
    """The integer dot-product ISA the target's mattr enables, or None (portable schedules).
    AVX-512 VNNI needs the ``x86_avx512`` schedule family; SDOT an aarch64 triple with
    ``+dotprod`` (and serves only the qdense GEMV of int8 activations)."""
    mattr = _mattr(target)
    triple = str((getattr(target, "tvm", None) or {}).get("mtriple", ""))
    if triple.startswith("aarch64") and "+dotprod" in mattr:
        return _register_sdot()
    if not triple.startswith("x86_64"):
        return None
    if getattr(target, "schedule", "") == "x86_avx512" and "+avx512vnni" in mattr and "+avx512bw" in mattr:
        return _register_vnni()
    if "+avx2" in mattr:
        return _register_avx2()
    return None


def has_vbmi(target) -> bool:
    """AVX-512 VBMI (byte permutes across the whole 64-byte vector: ``vpermb``, ``vpermi2b``) in an
    x86-64 target's mattr."""
    return str((getattr(target, "tvm", None) or {}).get("mtriple", "")).startswith("x86_64") and \
        "+avx512vbmi" in _mattr(target)


def isa_by_name(name: str) -> Isa:
    return {"vnni": _register_vnni, "avx2": _register_avx2, "sdot": _register_sdot}[name]()


__all__ = ["Isa", "target_isa", "isa_by_name", "mulhi_intrin", "has_vbmi"]
