"""The signed multiply-high requantization of conv_isa and the depthwise kernels (quant_dw's
channels in the lanes, quant_dw_rows' width in the lanes; edgec/backend/kernels/quant.py
``hi32s_finish``, ``_hi32_signed_ok``, quant_dw ``_Rq``): where no accumulator can land exactly on a rounding tie, rounding half up
(one signed multiply-high, an arithmetic shift) gives the reference's half away from zero; where
a tie is reachable the kernel keeps the |acc| form. Both are bit-exact with the numpy reference,
on the VNNI host and on an AVX2-only target, including accumulators built to sit on the ties."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.backend.kernels.quant import _hi32_signed_ok
from edgec.passes.quantize_int8 import _hard_swish_attrs, _odd_multiplier
from edgec.quant.qmath import quantize_multiplier, requantize

from ._harness import Case, build_cases, case_asm, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(77)


def _acc_bound(x_dtype: str, w: np.ndarray, b: np.ndarray) -> int:
    """The largest |acc| any input can give (the pass's ``acc_bound``, per output channel)."""
    lo, hi = (0, 255) if x_dtype == "uint8" else (-128, 127)
    wf = w.reshape(w.shape[0], -1).astype(np.int64)
    top = np.where(wf > 0, wf * hi, wf * lo).sum(axis=1) + b
    bot = np.where(wf > 0, wf * lo, wf * hi).sum(axis=1) + b
    return int(max(np.abs(top).max(), np.abs(bot).max()))


def test_half_up_equals_half_away_without_ties():
    """The identity the signed form rests on, over every accumulator of a range: with
    2^(n - 1 - v2(m)) > max |acc| the two roundings agree; one step below, they do not."""
    acc = np.arange(-70000, 70001, dtype=np.int64)
    for m, n in [(2 ** 30 + 1, 33), (1518159873, 33), (2 ** 31 - 1, 40), (1833730049, 31)]:
        half_up = (acc * m + (1 << (n - 1))) >> n
        ref = requantize(acc, m, 31 - n, 0, -2 ** 31, 2 ** 31 - 1).astype(np.int64)
        np.testing.assert_array_equal(half_up, ref)
        assert _hi32_signed_ok({"multiplier": (m,), "shift": (31 - n,), "acc_bound": 70000, "out_zero_point": 0,
                                "qmin": -128, "qmax": 127})
    # m = 2^30 * 3 / 2 (v2 = 29), n = 33: acc * m / 2^n = 3 acc / 16, ties at acc = 8 (mod 16)
    m, n = 3 << 29, 33
    half_up = (acc * m + (1 << (n - 1))) >> n
    ref = requantize(acc, m, 31 - n, 0, -2 ** 31, 2 ** 31 - 1).astype(np.int64)
    assert (half_up != ref).sum() > 0 and np.all(acc[half_up != ref] % 16 == 8)
    assert not _hi32_signed_ok({"multiplier": (m,), "shift": (31 - n,), "acc_bound": 70000, "out_zero_point": 0,
                                "qmin": -128, "qmax": 127})
    # below the first tie (8) every accumulator is safe
    assert _hi32_signed_ok({"multiplier": (m,), "shift": (31 - n,), "acc_bound": 7, "out_zero_point": 0,
                            "qmin": -128, "qmax": 127})


def test_odd_multiplier():
    assert _odd_multiplier(1518159872, -1) == (1518159873, -1)
    assert _odd_multiplier(1518159873, 2) == (1518159873, 2)
    assert _odd_multiplier(0, 0) == (0, 0)
    assert _odd_multiplier(2 ** 31 - 2, 0)[0] == 2 ** 31 - 1


def _tie_conv(id_, m: int, n: int, out: str = "int8"):
    """A 16 -> 32 pointwise conv whose accumulators are x[0] + bias[o]: every value of
    [bias, bias + 255], negative ones on the ties of m / 2^n included."""
    x = RNG.integers(0, 256, (1, 16, 6, 20)).astype(np.uint8)
    x[0, 0].flat[:256] = np.arange(256)
    w = np.zeros((32, 16, 1, 1), np.int8)
    w[:, 0] = 1
    b = RNG.integers(-400, -100, 32).astype(np.int32)
    zp, (lo, hi) = (0, (-128, 127)) if out == "int8" else (128, (0, 255))
    attrs = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": 1, "x_zero_point": 0,
             "multiplier": (m,), "shift": (31 - n,), "out_zero_point": zp, "qmin": lo, "qmax": hi, "out_dtype": out,
             "acc_bound": _acc_bound("uint8", w, b)}
    return Case(id_, "qconv", attrs, [x, w, b])


def _hswish_conv(id_, c, m, hw, odd: bool, frac_bits: int):
    """A pointwise conv with a fused hard swish, the pass's attributes (odd multipliers when
    ``odd``) and acc_bound; ``frac_bits`` low enough for shifts >= 33, or the pass's minimum
    with the accumulator pre-shift (PP-OCR's 32 -> 200: shifts 31-33)."""
    x = RNG.integers(0, 256, (1, c, *hw)).astype(np.uint8)
    w = RNG.integers(-127, 128, (m, c, 1, 1)).astype(np.int8)
    b = RNG.integers(-3000, 3000, m).astype(np.int32)
    bound = _acc_bound("uint8", w, b)
    s_y, z_y = (9.0 + 0.375) / 255, 10
    act = _hard_swish_attrs(s_y, z_y, 0, 255)
    # per-channel real multipliers putting h = acc * real over about [-6, 9] for typical inputs
    acc = (x.reshape(c, -1).astype(np.int64).T @ w.reshape(m, c).T.astype(np.int64) + b).T
    real = RNG.uniform(6.0, 9.0, m) / np.maximum(np.abs(acc).max(axis=1), 1)
    f = frac_bits
    hmax = int(np.ceil((act["act_hmax"] / 2 ** act["act_frac_bits"]) * 2 ** f))
    from edgec.passes.quantize_int8 import _hard_swish_final
    act = dict(act, act_frac_bits=f, act_hmin=-3 * 2 ** f, act_hmax=hmax,
               **_hard_swish_final(f, max(3 * 2 ** f, hmax) * 6 * 2 ** f, 2.0 ** (-2 * f) / (6.0 * s_y)))
    mults = [quantize_multiplier(float(r) * 2.0 ** f) for r in real]
    if odd:
        mults = [_odd_multiplier(*mm) for mm in mults]
    else:   # even multipliers with 12+ trailing zeros, as float32 scales give
        mults = [((mm >> 12) << 12, sh) for mm, sh in mults]
    attrs = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": 1, "x_zero_point": 0,
             "multiplier": tuple(mm for mm, _ in mults), "shift": tuple(sh for _, sh in mults),
             "out_zero_point": z_y, "qmin": 0, "qmax": 255, "out_dtype": "uint8", "acc_bound": bound, **act}
    return Case(id_, "qconv", attrs, [x, w, b])


def _dw_conv(id_, c, hw, k, odd: bool, act: str = "none", out: str = "uint8", stride: int = 1):
    """A depthwise conv (quant_dw's channels in the lanes, or quant_dw_rows' width in the lanes
    on large planes) with acc_bound, no ReLU: a plain requantization (int8 / uint8 with the zero
    point mid-range) or the pass's fused hard swish; odd multipliers or even ones with enough
    trailing zeros that ties are reachable (the |acc| form)."""
    x = RNG.integers(0, 256, (1, c, *hw)).astype(np.uint8)
    w = RNG.integers(-127, 128, (c, 1, k, k)).astype(np.int8)
    b = RNG.integers(-3000, 3000, c).astype(np.int32)
    bound = _acc_bound("uint8", w, b)
    p = k // 2
    base = {"strides": (stride, stride), "pads": (p, p, p, p), "dilations": (1, 1), "group": c, "x_zero_point": 0,
            "acc_bound": bound}
    peak = np.maximum(np.abs(w.reshape(c, -1).astype(np.int64)).sum(axis=1) * 128, 1)
    if act == "hard_swish":
        s_y, z_y = (9.0 + 0.375) / 255, 10
        a = _hard_swish_attrs(s_y, z_y, 0, 255, acc_scale=float((RNG.uniform(6.0, 9.0, c) / peak).max()))
        real = RNG.uniform(6.0, 9.0, c) / peak * 2.0 ** a["act_frac_bits"]
        base.update(a, out_zero_point=z_y, qmin=0, qmax=255, out_dtype="uint8")
    else:
        real = RNG.uniform(100.0, 140.0, c) / peak
        lo, hi = (0, 255) if out == "uint8" else (-128, 127)
        base.update(out_zero_point=(lo + hi + 1) // 2, qmin=lo, qmax=hi, out_dtype=out)
    mults = [quantize_multiplier(float(r)) for r in real]
    z = 12 if act == "hard_swish" else 24       # trailing zeros: 2^(n - 1 - z) below acc_bound
    mults = [_odd_multiplier(mm, sh) if odd else ((mm >> z) << z, sh) for mm, sh in mults]
    base.update(multiplier=tuple(mm for mm, _ in mults), shift=tuple(sh for _, sh in mults))
    return Case(id_, "qconv", base, [x, w, b])


CASES = [
    _tie_conv("ties_reachable_int8", 3 << 29, 33),            # v2 = 29: ties at acc = 8 (mod 16)
    _tie_conv("ties_reachable_uint8", 3 << 29, 34, out="uint8"),
    _tie_conv("odd_int8", (3 << 29) + 1, 33),
    _tie_conv("odd_uint8", (3 << 29) + 1, 34, out="uint8"),
    _hswish_conv("hswish_odd_pre_shift", 32, 200, (2, 96), odd=True, frac_bits=12),
    _hswish_conv("hswish_odd_hi32", 32, 48, (2, 40), odd=True, frac_bits=7),
    _hswish_conv("hswish_even", 32, 48, (2, 40), odd=False, frac_bits=12),
    # depthwise: PP-OCR's 5x5 with the hard swish (channels in the lanes, accumulator pre-shift)
    _dw_conv("dw5x5_hswish_odd", 40, (2, 96), 5, odd=True, act="hard_swish"),
    _dw_conv("dw5x5_hswish_even", 40, (2, 96), 5, odd=False, act="hard_swish"),
    _dw_conv("dw3x3_odd_int8", 48, (14, 14), 3, odd=True, out="int8"),
    _dw_conv("dw3x3_odd_uint8", 48, (14, 14), 3, odd=True),
    # a large plane: quant_dw_rows (the width in the lanes)
    _dw_conv("dw3x3_rows_odd", 16, (56, 56), 3, odd=True),
    _dw_conv("dw3x3_rows_even", 16, (56, 56), 3, odd=False),
]
SIGNED = {"ties_reachable_int8": False, "ties_reachable_uint8": False, "odd_int8": True, "odd_uint8": True,
          "hswish_odd_pre_shift": True, "hswish_odd_hi32": True, "hswish_even": False,
          "dw5x5_hswish_odd": True, "dw5x5_hswish_even": False, "dw3x3_odd_int8": True, "dw3x3_odd_uint8": True,
          "dw3x3_rows_odd": True, "dw3x3_rows_even": False}


def test_cases_take_the_intended_path():
    for case in CASES:
        assert _hi32_signed_ok(case.attrs) == SIGNED[case.id], case.id
    acc = np.clip(CASES[0].inputs[0][0, 0].astype(np.int64)[None] + CASES[0].inputs[2][:, None, None], None, None)
    # the tie cases really reach ties with negative accumulators
    assert ((acc < 0) & (acc % 16 == 8)).sum() > 100


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_signed_form_in_the_assembly(case):
    asm = case_asm(case, "host")
    assert "vpdpbusd" in asm or "vpdpwssd" in asm, case.id
    if SIGNED[case.id]:
        assert "vpmuldq" in asm and "vpmuludq" not in asm, case.id
    else:
        assert "vpmuludq" in asm, case.id


@pytest.fixture(scope="module", params=["host", "x86_64-avx2"])
def runner(request, tmp_path_factory):
    from edgec.targets import load_target
    return build_cases(CASES, tmp_path_factory.mktemp(f"hi32s_{request.param}"), target=load_target(request.param))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    check(case, runner.run(case))
