"""int8 kernels (edgec/backend/kernels/quant.py) built by build_kernels for the host target and
run with TVM's runtime: outputs must equal the integer-only numpy references of
edgec/ops/quant.py bit for bit. Cases cover per-tensor and per-channel multipliers (including
m = 0 and large shifts), uint8 and int8 activations, nonzero zero points, fused clamps,
broadcasting, strides/pads/dilations/groups/depthwise for qconv, both qdense paths."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.quant.qmath import quantize_multiplier, qrange

from ..backend._harness import Case, build_cases, check

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


def _dense(id_, m, n, k, dt="uint8", out="uint8", per_channel=True, bias=True, clamp=None):
    x, w = _act((m, k), dt), _w((n, k))
    b = RNG.integers(-20000, 20000, n).astype(np.int32) if bias else None
    zx = int(RNG.integers(*qrange(dt)))
    attrs = {"x_zero_point": zx, **_req(n if per_channel else 1, out, clamp=clamp, lo=1e-5, hi=2e-3, zero=True)}
    return Case(id_, "qdense", attrs, [x, w, b])


def _conv(id_, xs, ws, strides, pads, dil=None, group=1, dt="uint8", out="uint8", per_channel=True, bias=True):
    x, w = _act(xs, dt), _w(ws)
    r = len(xs) - 2
    b = RNG.integers(-5000, 5000, ws[0]).astype(np.int32) if bias else None
    zx = int(RNG.integers(*qrange(dt)))
    attrs = {"strides": strides, "pads": pads, "dilations": dil or (1,) * r, "group": group, "x_zero_point": zx,
             **_req(ws[0] if per_channel else 1, out, lo=1e-5, hi=5e-3, zero=True)}
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


def _qdense_script(target_name: str, m: int, n: int, k: int, dt: str = "uint8") -> str:
    from edgec.backend.kernels.registry import KERNELS, KernelSpec, TensorType
    from edgec.targets import load_target
    attrs = {"x_zero_point": 3, "multiplier": (2 ** 30,), "shift": (-8,), "out_zero_point": 0, "qmin": 0, "qmax": 255,
             "out_dtype": "uint8"}
    spec = KernelSpec("qdense", attrs, (TensorType(dt, (m, k)), TensorType("int8", (n, k)), TensorType("int32", (n,))),
                      (TensorType("uint8", (m, n)),), load_target(target_name))
    return KERNELS["qdense"](spec).script()


def test_vnni_chosen_by_target():
    """vpdpbusd on the x86_64 (AVX-512 VNNI) target for fitting shapes; the portable schedule
    for int8 activations, odd shapes and targets without VNNI."""
    assert "vpdpbusd" in _qdense_script("x86_64", 8, 64, 32)
    assert "vpdpbusd" not in _qdense_script("x86_64", 8, 60, 32)
    assert "vpdpbusd" not in _qdense_script("x86_64", 8, 64, 30)
    assert "vpdpbusd" not in _qdense_script("x86_64", 8, 64, 32, "int8")
    assert "vpdpbusd" not in _qdense_script("x86_64-avx2", 8, 64, 32)
