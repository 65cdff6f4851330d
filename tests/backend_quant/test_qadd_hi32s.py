"""qadd on the signed multiply-high (edgec/backend/kernels/quant.py ``_qadd_side_hi32s``): every
pair of 8-bit inputs (65536, exhaustive) bit-exact against the numpy reference for the attribute
sets the quantization pass makes (resnet50's residual adds: one side an exact power of two, ReLU
clamps), for uint8 and int8, for sides whose ties are reachable (the int64 form kept) and for
a final multiplier on a tie; the tie analysis itself; the instructions (vpmuldq, no 64-bit
multiplies) and the same bits with the forms switched off."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.quant.qmath import qrange

from ..backend._harness import Case, build_cases, case_asm, check

pytestmark = pytest.mark.tvm


def _all_pairs(dt):
    lo, hi = qrange(dt)
    v = np.arange(lo, hi + 1)
    a, b = np.meshgrid(v, v, indexing="ij")
    return a.reshape(1, 256, 256).astype(dt), b.reshape(1, 256, 256).astype(dt)


def _qadd(id_, am, ash, bm, bsh, m, sh, za=132, zb=130, zo=0, qmin=0, qmax=255, dt="uint8", out="uint8", ls=20):
    a, b = _all_pairs(dt)
    attrs = {"a_zero_point": za, "b_zero_point": zb, "a_multiplier": am, "a_shift": ash, "b_multiplier": bm,
             "b_shift": bsh, "left_shift": ls, "multiplier": (m,), "shift": (sh,), "out_zero_point": zo,
             "qmin": qmin, "qmax": qmax, "out_dtype": out}
    return Case(id_, "qadd", attrs, [a, b])


CASES = [
    # resnet50 n14 (the pass's attributes): a side at scale ratio ~0.53, b exactly 1/2, ReLU
    _qadd("resnet_n14", 1138288949, -2, 1 << 30, 0, 1086742304, -17),
    # no ReLU, a zero point mid-range, both sides odd multipliers
    _qadd("mid_zp", 1518500249, -1, 1346047587, 0, 1250000001, -16, za=10, zb=250, zo=128),
    # int8 in and out
    _qadd("int8", 1431655765, -1, 1789569707, -1, 1610612735, -15, za=-3, zb=7, zo=-5, qmin=-128, qmax=127,
          dt="int8", out="int8"),
    # ties reachable on side a: e = n - ls - 1 - v2(m) = 33 - 20 - 1 - 8 = 4, 2^4 <= 255 (m = 2^8 * odd):
    # the int64 form stays for it
    _qadd("side_tie", 1073742080, -2, 1 << 30, 0, 1086742304, -17),
    # the final multiplier on a tie (m = 2^30, n = 48: 2^(47 - 30) <= the sum's bound): int64 form
    _qadd("final_tie", 1138288949, -2, 1 << 30, 0, 1 << 30, -17),
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("qadd_s"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_pair_bit_exact(runner, case):
    check(case, runner.run(case))


def test_tie_analysis():
    from edgec.backend.kernels.quant import _hi32_signed_ok, _qadd_side_hi32s
    # (dmax, m, n, ls) -> (L, n') or None
    assert _qadd_side_hi32s(255, 1138288949, 33, 20) == (23, 36)      # odd m: e = 12, 2^12 > 255
    assert _qadd_side_hi32s(255, 1 << 30, 31, 20) == (23, 34)         # e < 0: exact
    assert _qadd_side_hi32s(255, 1073742080, 33, 20) is None           # e = 4: ties
    assert _qadd_side_hi32s(132, 1138288949, 33, 20) == (23, 36)
    assert _qadd_side_hi32s(255, 1138288949, 20 + 9, 20) is None       # n' = 32 < 33
    # a tie really is reached there: v - z = -16 on side_tie's a gives (-16 << 20) * m / 2^33 = j + 1/2
    m, n, ls = 1073742080, 33, 20
    p = (-16 << ls) * m
    assert p % (1 << n) == 1 << (n - 1)
    fin = CASES[-1].attrs
    assert not _hi32_signed_ok({**fin, "acc_bound": 1 << 29})


def test_instructions_and_switch(tmp_path, monkeypatch):
    """resnet50's qadd: 16-lane signed multiply-high (vpmuldq), no 64-bit multiply (vpmullq) and no
    64-bit arithmetic shift; QADD_HI32S = False gives the int64 lanes (vpmullq) and the same bits."""
    from edgec.backend.kernels import quant
    from edgec.targets import load_target
    if load_target("host").name != "x86_64":
        pytest.skip("the AVX-512 target is not this host's")
    a = case_asm(CASES[0], "x86_64")
    assert "vpmuldq" in a and "vpmullq" not in a and "vpsraq" not in a
    monkeypatch.setattr(quant, "QADD_HI32S", False)
    monkeypatch.setenv("EDGEC_CACHE_DIR", str(tmp_path / "kc"))
    assert "vpmullq" in case_asm(CASES[0], "x86_64")
    r = build_cases(CASES[:3], tmp_path / "off")
    for c in CASES[:3]:
        check(c, r.run(c))
