"""int8 kernels (edgec/backend/kernels/quant.py) built by build_kernels for the host target and
run with TVM's runtime: outputs must equal the integer-only numpy references of
edgec/ops/quant.py bit for bit. Cases cover per-tensor and per-channel multipliers (including
m = 0 and large shifts), uint8 and int8 activations, nonzero zero points, fused clamps,
broadcasting, strides/pads/dilations/groups/depthwise for qconv, both qdense paths."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.quant.qmath import quantize_multiplier, qrange

from edgec.targets import Target, load_target

from ..backend._harness import Case, build_cases, build_for_target, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(2024)


def _act(shape, dtype):
    lo, hi = qrange(dtype)
    return RNG.integers(lo, hi + 1, shape).astype(dtype)


def _w(shape):
    return RNG.integers(-127, 128, shape).astype(np.int8)


def _mults(count, lo=1e-4, hi=0.5, zero=False):
    reals = np.exp(RNG.uniform(np.log(lo), np.log(hi), count))
    out = [quantize_multiplier(float(r)) for r in reals]
    if zero and count > 1:
        out[0] = (0, 0)
    return tuple(m for m, _ in out), tuple(s for _, s in out)


def _req(count, out_dtype="uint8", zp=None, clamp=None, **kw):
    m, s = _mults(count, **kw)
    lo, hi = qrange(out_dtype)
    z = int(RNG.integers(lo, hi + 1)) if zp is None else zp
    qmin, qmax = clamp if clamp else (lo, hi)
    return {"multiplier": m, "shift": s, "out_zero_point": z, "qmin": qmin, "qmax": qmax, "out_dtype": out_dtype}


def _dense(id_, m, n, k, dt="uint8", out="uint8", per_channel=True, bias=True, clamp=None, lo=1e-5, hi=2e-3):
    x, w = _act((m, k), dt), _w((n, k))
    b = RNG.integers(-20000, 20000, n).astype(np.int32) if bias else None
    zx = int(RNG.integers(*qrange(dt)))
    attrs = {"x_zero_point": zx, **_req(n if per_channel else 1, out, clamp=clamp, lo=lo, hi=hi, zero=True)}
    return Case(id_, "qdense", attrs, [x, w, b])


def _conv(id_, xs, ws, strides, pads, dil=None, group=1, dt="uint8", out="uint8", per_channel=True, bias=True,
          clamp=None):
    x, w = _act(xs, dt), _w(ws)
    r = len(xs) - 2
    b = RNG.integers(-5000, 5000, ws[0]).astype(np.int32) if bias else None
    zx = int(RNG.integers(*qrange(dt)))
    attrs = {"strides": strides, "pads": pads, "dilations": dil or (1,) * r, "group": group, "x_zero_point": zx,
             **_req(ws[0] if per_channel else 1, out, clamp=clamp, lo=1e-5, hi=5e-3, zero=True)}
    return Case(id_, "qconv", attrs, [x, w, b])


def _binary(id_, op, ash, bsh, dt="uint8", out="uint8"):
    a, b = _act(ash, dt), _act(bsh, dt)
    za, zb = (int(RNG.integers(*qrange(dt))) for _ in range(2))
    attrs = {"a_zero_point": za, "b_zero_point": zb}
    if op == "qadd":
        (ma,), (sa,) = _mults(1, 0.1, 0.5)
        (mb,), (sb,) = _mults(1, 0.1, 0.5)
        attrs.update(a_multiplier=ma, a_shift=sa, b_multiplier=mb, b_shift=sb, left_shift=20,
                     **_req(1, out, lo=1e-7, hi=1e-5))
    else:
        attrs.update(_req(1, out, lo=1e-3, hi=0.05))
    return Case(id_, op, attrs, [a, b])


CASES = [
    # quantize / dequantize / requantize
    Case("quant_u8", "quantize", {"scale": 0.05, "zero_point": 128, "dtype": "uint8"},
         [np.concatenate([RNG.standard_normal(1000).astype(np.float32) * 8,
                          np.array([0.025, -0.025, 0.075, 1e30, -1e30, np.nan, np.inf, -np.inf], np.float32)])]),
    Case("quant_i8_4d", "quantize", {"scale": 0.1, "zero_point": -3, "dtype": "int8"},
         [RNG.standard_normal((2, 3, 5, 7)).astype(np.float32) * 10]),
    Case("quant_axis", "quantize", {"scale": (0.1, 0.02, 0.5), "zero_point": (0, 10, -5), "dtype": "int8", "axis": 1},
         [RNG.standard_normal((2, 3, 4, 9)).astype(np.float32) * 5]),
    Case("dequant_u8", "dequantize", {"scale": 0.037, "zero_point": 131}, [_act((3, 1000), "uint8")]),
    Case("dequant_i32", "dequantize", {"scale": 1e-4, "zero_point": 7},
         [RNG.integers(-2 ** 31, 2 ** 31 - 1, 333).astype(np.int32)]),
    Case("dequant_axis", "dequantize", {"scale": (0.5, 0.25, 0.125, 1.5), "zero_point": (1, 2, 3, 4), "axis": 0},
         [_act((4, 17), "int8")]),
    Case("requant_u8_i8", "requantize", {"in_zero_point": 100, **_req(1, "int8", lo=0.3, hi=2.0)},
         [_act((4, 250), "uint8")]),
    Case("requant_i32_u8", "requantize", {"in_zero_point": -5, **_req(1, "uint8", zp=128, lo=5e-5, hi=1e-4)},
         [RNG.integers(-2 ** 20, 2 ** 20, (1, 8, 3, 3)).astype(np.int32)]),
    # ties (M = 1/2: every odd value is a half, negative ones too) and the longest shift (n = 62)
    Case("requant_ties", "requantize", {"in_zero_point": 0, "multiplier": (2 ** 30,), "shift": (0,),
                                        "out_zero_point": 3, "qmin": -128, "qmax": 127, "out_dtype": "int8"},
         [np.arange(-250, 251, dtype=np.int32)]),
    Case("requant_n62", "requantize", {"in_zero_point": 0, "multiplier": (2 ** 31 - 1,), "shift": (-31,),
                                       "out_zero_point": 0, "qmin": -128, "qmax": 127, "out_dtype": "int8"},
         [np.array([-2 ** 31, -2 ** 31 + 1, -2 ** 30, -1, 0, 1, 2 ** 30, 2 ** 31 - 1] * 3, np.int32)]),
    # qadd / qmul with broadcasting
    _binary("qadd_same", "qadd", (2, 8, 5, 5), (2, 8, 5, 5)),
    _binary("qadd_bcast_i8", "qadd", (2, 8, 5, 5), (1, 8, 1, 1), "int8", "int8"),
    _binary("qmul_same", "qmul", (3, 300), (3, 300)),
    _binary("qmul_bcast", "qmul", (4, 1, 6), (5, 1), "int8", "int8"),
    # qlut
    Case("qlut_u8", "qlut", {"table": tuple(int(v) for v in RNG.integers(0, 256, 256)), "out_dtype": "uint8"},
         [_act((2, 3, 7, 11), "uint8")]),
    Case("qlut_i8_big", "qlut", {"table": tuple(int(v) for v in RNG.integers(-128, 128, 256)), "out_dtype": "int8"},
         [_act((64, 1024), "int8")]),
    # qdense: few rows (vector partial sums) and many rows (GEMM path)
    _dense("qdense_gemv", 1, 10, 7),
    _dense("qdense_tails", 13, 37, 33, per_channel=False),
    _dense("qdense_i8_relu", 5, 24, 64, "int8", "int8", clamp=(-20, 127)),
    _dense("qdense_nobias", 3, 16, 100, bias=False),
    _dense("qdense_gemm", 40, 24, 48),
    _dense("qdense_gemm_tails", 35, 19, 21, "int8", "int8"),
    _dense("qdense_int32_out", 4, 9, 12, out="int32"),
    # VNNI path on x86_64 (uint8 x, N % 16 == 0, K % 4 == 0): row tiles of 4, 2, 1; 4, 2, 1 vectors
    _dense("qdense_vnni_4x64", 8, 128, 96),
    _dense("qdense_vnni_2x32", 6, 96, 36, per_channel=False),
    _dense("qdense_vnni_1x16", 5, 48, 4, bias=False),
    _dense("qdense_vnni_big", 64, 256, 512, clamp=(17, 255)),
    # qmatmul (activation x activation, batch broadcast)
    Case("qmatmul_2d", "qmatmul", {"a_zero_point": 130, "b_zero_point": 7, **_req(1, "uint8", lo=1e-5, hi=1e-3)},
         [_act((9, 20), "uint8"), _act((20, 13), "uint8")]),
    Case("qmatmul_bcast", "qmatmul", {"a_zero_point": -3, "b_zero_point": 12, **_req(1, "int8", lo=1e-5, hi=1e-3)},
         [_act((2, 1, 6, 8), "int8"), _act((3, 8, 17), "int8")]),
    # qconv
    _conv("qconv_3x3_p1", (1, 3, 12, 15), (8, 3, 3, 3), (1, 1), (1, 1, 1, 1)),
    _conv("qconv_s2", (2, 4, 11, 9), (6, 4, 3, 3), (2, 2), (1, 0, 1, 2), per_channel=False),
    _conv("qconv_1x1", (1, 16, 7, 7), (24, 16, 1, 1), (1, 1), (0, 0, 0, 0), dt="int8", out="int8"),
    _conv("qconv_1x1_s2", (1, 8, 10, 10), (12, 8, 1, 1), (2, 2), (0, 0, 0, 0)),
    _conv("qconv_dw", (1, 16, 13, 13), (16, 1, 3, 3), (1, 1), (1, 1, 1, 1), group=16),
    _conv("qconv_dw_s2_5x5", (1, 8, 14, 14), (8, 1, 5, 5), (2, 2), (2, 2, 2, 2), group=8, dt="int8", out="int8"),
    _conv("qconv_group2_dil", (1, 8, 12, 12), (6, 4, 3, 3), (1, 1), (2, 2, 2, 2), dil=(2, 2), group=2, bias=False),
    _conv("qconv_1d", (2, 5, 30), (7, 5, 4), (3,), (1, 2)),
    _conv("qconv_int32_out", (1, 3, 6, 6), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), out="int32"),
]

# the packed dot-product qconv/qdense (VNNI on x86_64, vpmaddwd on x86_64-avx2; portable elsewhere):
# channels not a multiple of the dot group (4 / 2), output channels not a multiple of the register
# tile, positions not a multiple of the vector, strides/dilations (phase planes), 1-D, batch > 1,
# per-tensor and per-channel, fused clamps, int8 activations (portable path on every target)
ISA_CASES = [
    _conv("isa_1x1_odd", (1, 13, 5, 7), (19, 13, 1, 1), (1, 1), (0, 0, 0, 0)),
    _conv("isa_1x1_s2", (2, 16, 9, 11), (24, 16, 1, 1), (2, 2), (0, 0, 0, 0), per_channel=False),
    _conv("isa_3x3_p1", (1, 9, 12, 21), (33, 9, 3, 3), (1, 1), (1, 1, 1, 1)),
    _conv("isa_3x3_s2_asym", (1, 6, 13, 10), (10, 6, 3, 3), (2, 2), (1, 0, 1, 2)),
    _conv("isa_5x5_s21", (1, 4, 11, 17), (7, 4, 5, 5), (2, 1), (2, 2, 2, 2), bias=False),
    _conv("isa_3x3_dil2", (1, 8, 12, 12), (6, 8, 3, 3), (1, 1), (2, 2, 2, 2), dil=(2, 2)),
    _conv("isa_2x3_s3_dil2", (1, 5, 15, 16), (4, 5, 2, 3), (3, 3), (0, 1, 1, 0), dil=(2, 2)),
    _conv("isa_relu", (1, 16, 8, 16), (32, 16, 3, 3), (1, 1), (1, 1, 1, 1), clamp=(40, 255)),
    _conv("isa_1d", (2, 5, 30), (7, 5, 4), (3,), (1, 2)),
    _conv("isa_i8_act", (1, 8, 9, 9), (12, 8, 3, 3), (1, 1), (1, 1, 1, 1), dt="int8", out="int8"),
    _conv("isa_dw", (1, 24, 10, 14), (24, 1, 5, 5), (2, 1), (2, 2, 2, 2), group=24),
    _conv("isa_dw_7x5_dil", (2, 7, 13, 11), (7, 1, 3, 5), (1, 1), (2, 1, 0, 3), dil=(2, 1), group=7,
          per_channel=False),
    _conv("isa_dw_1d", (1, 9, 40), (9, 1, 6), (1,), (3, 2), group=9, clamp=(10, 200)),
    _dense("isa_dense_odd", 17, 37, 33),
    _dense("isa_dense_k2", 16, 8, 2, per_channel=False, bias=False, lo=2e-3, hi=4e-3, clamp=(0, 200)),
    _dense("isa_dense_big", 20, 80, 260),
    _dense("isa_dense_3rows", 3, 48, 64),
    _dense("isa_dense_i8", 4, 32, 64, "int8", "int8"),
    # qlut on byte shuffles (x86): whole vectors + a tail, int8 and uint8, the parallel path
    Case("isa_qlut_i8_tail", "qlut", {"table": tuple(int(v) for v in RNG.integers(-128, 128, 256)),
                                      "out_dtype": "int8"}, [_act((3, 5, 37), "int8")]),
    Case("isa_qlut_u8_big", "qlut", {"table": tuple(int(v) for v in RNG.integers(0, 256, 256)), "out_dtype": "uint8"},
         [_act((1, 40, 30, 31), "uint8")]),
    Case("isa_qlut_u8_to_i8", "qlut", {"table": tuple(int(v) for v in RNG.integers(-128, 128, 256)),
                                       "out_dtype": "int8"}, [np.arange(256, dtype=np.uint8).reshape(4, 64)]),
]
CASES += ISA_CASES


# the unpacked GEMV (quant_conv.dense_gemv_isa: up to 8 rows on VNNI with K >= 64, 15 on AVX2 with
# K >= 16; weights read in their [N, K] layout): 1, 2, 3, 8, 12 rows; N in steps of 4 outputs
# (64, 100), of 3 (6), ragged (37: the last step's rows clamped);
# K whole 64-byte blocks or with a scalar tail (200 = 3 x 64 + 8; 130 = 2 x 64 + 2, not a multiple
# of 4), the text model's 8192; per-tensor and per-channel multipliers, bias or not, clamps
GEMV_CASES = [
    _dense("gemv_1x6x64_pt", 1, 6, 64, per_channel=False),
    _dense("gemv_1x64x8192", 1, 64, 8192, lo=1e-6, hi=5e-5),
    _dense("gemv_1x100x200_relu", 1, 100, 200, clamp=(30, 255)),
    _dense("gemv_1x64x200_pt_nobias", 1, 64, 200, per_channel=False, bias=False),
    _dense("gemv_2x6x200", 2, 6, 200, bias=False),
    _dense("gemv_2x64x64_pt_relu", 2, 64, 64, per_channel=False, clamp=(0, 180)),
    _dense("gemv_2x100x8192", 2, 100, 8192, lo=1e-6, hi=5e-5),
    _dense("gemv_3x37x130_i8out", 3, 37, 130, out="int8", clamp=(-100, 127)),
    _dense("gemv_8x100x200", 8, 100, 200, per_channel=False),      # VNNI: the GEMV's last row count
    _dense("gemv_12x64x96", 12, 64, 96),                            # AVX2 GEMV, VNNI packed
]


@pytest.fixture(scope="module", params=["x86_64", "x86_64-avx2"])
def gemv_runner(request, tmp_path_factory):
    """The GEMV cases on the host target (vpdpbusd on this VNNI machine) and on x86_64-avx2
    (vpmovzxbw/vpmovsxbw + vpmaddwd); elsewhere (other hosts, the generic target) these are
    portable GEMVs, also checked."""
    target = load_target("host" if request.param == "x86_64" else request.param)
    return build_for_target(GEMV_CASES, tmp_path_factory, target, "quant_gemv_" + request.param)


@pytest.mark.parametrize("case", GEMV_CASES, ids=[c.id for c in GEMV_CASES])
def test_gemv_bit_exact(gemv_runner, case):
    check(case, gemv_runner.run(case))
    out = case.reference()[0]
    assert np.unique(out).size > 2, case.id


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("quant"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    check(case, runner.run(case))


def test_cases_are_not_trivial():
    """The outputs vary (not all clamped to one value), so bit-exactness means something."""
    for c in CASES:
        out = c.reference()[0]
        assert np.unique(out).size > 2 or c.id == "requant_n62", c.id


GENERIC = Target(name="generic-x86-64", tvm={"kind": "llvm", "mtriple": "x86_64-linux-gnu"}, vector_bits=128,
                 cflags=("-O2", "-fPIC"), ldflags=("-shared",), libs=("-lm",))


@pytest.fixture(scope="module", params=["x86_64-avx2", "generic"])
def other_runner(request, tmp_path_factory):
    """The packed-kernel cases built for the AVX2 target (AVX2 code: runs on this AVX-512 host)
    and for a generic x86-64 target (SSE2 only: the portable schedules)."""
    target = GENERIC if request.param == "generic" else load_target(request.param)
    return build_for_target(ISA_CASES, tmp_path_factory, target, "quant_" + request.param)


@pytest.mark.parametrize("case", ISA_CASES, ids=[c.id for c in ISA_CASES])
def test_bit_exact_other_targets(other_runner, case):
    check(case, other_runner.run(case))


def _spec(op: str, attrs, ins, out, target_name):
    from edgec.backend.kernels.registry import KernelSpec, TensorType
    from edgec.ir import ops as irops
    attrs = irops.get(op).normalize_attrs(dict(attrs))
    target = GENERIC if target_name == "generic" else load_target(target_name)
    return KernelSpec(op, attrs, tuple(None if t is None else TensorType(*t) for t in ins), (TensorType(*out),), target)


def _asm(spec) -> str:
    from edgec.backend.build import _lower
    from edgec.backend.kernels.registry import KERNELS
    from tvm.tirx.build import tir_to_runtime
    tt = spec.target.tvm_target()
    host, dev = _lower(KERNELS[spec.op](spec), "k", tt)
    return tir_to_runtime(host, dev, tt).inspect_source("asm")


def test_conv_instructions_by_target():
    """qconv with uint8 activations runs on vpdpbusd (x86_64), vpmaddwd on int16 widened with
    vpmovzxbw and never the saturating vpmaddubsw (x86_64-avx2), neither on the generic target;
    a depthwise conv has channels in the lanes: a 3x3 one on uint8 activations takes one vpdpbusd
    per kernel row and pixel (a kernel row's taps as one 4-byte group, quant_dw.QUAD), kernel
    widths >= 5 one vpdpwssds per tap pair (edgec/backend/kernels/quant_dw.py)."""
    attrs = {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1, "x_zero_point": 3,
             "multiplier": (2 ** 30,), "shift": (-8,), "out_zero_point": 0, "qmin": 0, "qmax": 255, "out_dtype": "uint8"}
    ins = [("uint8", (1, 16, 8, 8)), ("int8", (16, 16, 3, 3)), ("int32", (16,))]
    vnni = _asm(_spec("qconv", attrs, ins, ("uint8", (1, 16, 8, 8)), "x86_64"))
    avx2 = _asm(_spec("qconv", attrs, ins, ("uint8", (1, 16, 8, 8)), "x86_64-avx2"))
    gen = _asm(_spec("qconv", attrs, ins, ("uint8", (1, 16, 8, 8)), "generic"))
    assert "vpdpbusd" in vnni
    assert "vpmaddwd" in avx2 and "vpmovzxbw" in avx2 and "vpmaddubsw" not in avx2 and "zmm" not in avx2
    assert "vpdpbusd" not in gen and "vpmaddwd" not in gen and "ymm" not in gen
    dw = _asm(_spec("qconv", {**attrs, "group": 16}, [ins[0], ("int8", (16, 1, 3, 3)), ins[2]],
                    ("uint8", (1, 16, 8, 8)), "x86_64"))
    assert "vpdpbusd" in dw and "vpdpwssds" not in dw
    dw5 = _asm(_spec("qconv", {**attrs, "group": 16, "pads": (2, 2, 2, 2)}, [ins[0], ("int8", (16, 1, 5, 5)), ins[2]],
                     ("uint8", (1, 16, 8, 8)), "x86_64"))
    assert "vpdpwssds" in dw5 and "vpdpbusd" not in dw5


def _qdense_script(target_name: str, m: int, n: int, k: int, dt: str = "uint8") -> str:
    from edgec.backend.kernels.registry import KERNELS, KernelSpec, TensorType
    from edgec.targets import load_target
    attrs = {"x_zero_point": 3, "multiplier": (2 ** 30,), "shift": (-8,), "out_zero_point": 0, "qmin": 0, "qmax": 255,
             "out_dtype": "uint8"}
    spec = KernelSpec("qdense", attrs, (TensorType(dt, (m, k)), TensorType("int8", (n, k)), TensorType("int32", (n,))),
                      (TensorType("uint8", (m, n)),), load_target(target_name))
    return KERNELS["qdense"](spec).script()


def test_vnni_chosen_by_target():
    """Packed vpdpbusd on the x86_64 (AVX-512 VNNI) target from 4 rows when K < 64 (the GEMV
    needs one 64-byte block) and from 9 rows otherwise, for odd shapes too (zero-padded
    packing); packed vpmaddwd on x86_64-avx2 from 16 rows, the AVX2 GEMV below from K >= 16;
    the portable schedule for fewer rows with short K and for int8 activations."""
    assert "vpdpbusd" in _qdense_script("x86_64", 8, 64, 32)
    assert "vpdpbusd" in _qdense_script("x86_64", 8, 60, 30)
    assert "vpdpbusd" not in _qdense_script("x86_64", 3, 64, 32)      # few rows, K < 64: portable GEMV
    assert "vpdpbusd" not in _qdense_script("x86_64", 8, 64, 32, "int8")
    assert "vpdpbusd" not in _qdense_script("x86_64-avx2", 16, 64, 32)
    assert "pmadd.wd" in _qdense_script("x86_64-avx2", 16, 64, 32)
    assert "pmadd" not in _qdense_script("x86_64-avx2", 8, 64, 8)
    assert "pmadd" not in _qdense_script("x86_64-avx2", 16, 64, 32, "int8")
    # the packed copy "wp" from 9 rows on VNNI, not below (GEMV)
    assert '"wp"' in _qdense_script("x86_64", 9, 64, 128) and '"wp"' not in _qdense_script("x86_64", 8, 64, 128)
    assert '"wp"' in _qdense_script("x86_64-avx2", 16, 64, 32)
    assert '"wp"' not in _qdense_script("x86_64-avx2", 15, 64, 32)


def test_gemv_object_code():
    """Fewer than 4 rows with K >= 64 on x86_64: vpdpbusd on the weights as they are (no packed
    copy "wp" in the kernel, no workspace), whatever N and K; on x86_64-avx2 (K >= 16) both
    operands widened to int16 (vpmovzxbw, vpmovsxbw) into vpmaddwd, never vpmaddubsw."""
    attrs = {"x_zero_point": 3, "multiplier": tuple(2 ** 30 + i for i in range(64)), "shift": (-8,) * 64,
             "out_zero_point": 0, "qmin": 0, "qmax": 255, "out_dtype": "uint8"}
    for m, k in ((1, 8192), (2, 200)):
        ins = [("uint8", (m, k)), ("int8", (64, k)), ("int32", (64,))]
        asm = _asm(_spec("qdense", attrs, ins, ("uint8", (m, 64)), "x86_64"))
        assert "vpdpbusd" in asm and "zmm" in asm
        assert "__TVMBackendAllocWorkspace" not in asm
        script = _qdense_script("x86_64", m, 64, k)
        assert "vpdpbusd" in script and '"wp"' not in script and "part_update" in script
    assert "vpdpbusd" in _qdense_script("x86_64", 1, 6, 64)
    assert "vpdpbusd" not in _qdense_script("x86_64", 1, 64, 8192, "int8")
    avx2 = _asm(_spec("qdense", attrs, [("uint8", (1, 200)), ("int8", (64, 200)), ("int32", (64,))],
                      ("uint8", (1, 64)), "x86_64-avx2"))
    assert "vpmaddwd" in avx2 and "vpmovsxbw" in avx2 and "vpmovzxbw" in avx2
    assert "vpmaddubsw" not in avx2 and "zmm" not in avx2 and "__TVMBackendAllocWorkspace" not in avx2
    assert "pmadd.wd" in _qdense_script("x86_64-avx2", 1, 64, 8192)
    assert "pmadd.wd" not in _qdense_script("x86_64-avx2", 1, 64, 8)            # K < 16: portable
