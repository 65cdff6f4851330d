"""Tap quads of the int8 depthwise lanes kernel (edgec/backend/kernels/quant_dw.py ``QUAD``: uint8
activations on VNNI, kernel width <= 4, width dilation 1, one row band, no pre-shifted weights):
a window entry is the bytes of a kernel row's taps (zero point in the spare bytes, weight 0),
one vpdpbusd per kernel row and pixel, the window built by byte shuffles of 4 consecutive
channel-last pixels of a row (``_quad_window``). Bit-exact against the numpy reference over the
edges of that form: kernel widths 1, 2, 3, 4, rows of exactly 4 pixels, asymmetric and no padding,
strides (2, 2) / (2, 1), height dilation, 1-D, channel counts not a multiple of 16, batch 2, zero
points >= 128 (the zero-point bytes), no bias, the compiler's acc_bound (bias as the initial value),
per-tensor multipliers; and the cases that keep tap pairs (rows narrower than 4, right shifts
below 33 with an acc_bound: pre-shifted weights, int8 activations); on the VNNI host and on
x86_64-avx2 (tap pairs there)."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.quant.qmath import quantize_multiplier, qrange

from ._harness import Case, build_cases, case_asm, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(2811)


def _dw(id_, c, hw, k, stride=1, pads=None, dil=1, dt="uint8", bias=True, batch=1, xzp=None, bound=False,
        scale=(2e-4, 4e-3), per_channel=True, small=False):
    """small: pixels near 128, weights in [-2, 2], the zero-point correction in the bias (as the
    pass folds it): accumulators of a few hundred, for multipliers near 1 (right shifts < 33)."""
    r = len(hw)
    ks = tuple(k) if isinstance(k, tuple) else (k,) * r
    x = (RNG.integers(110, 146, size=(batch, c, *hw)) if small
         else RNG.integers(*qrange(dt), size=(batch, c, *hw), endpoint=True)).astype(dt)
    w = RNG.integers(-2, 3, (c, 1) + ks).astype(np.int8) if small else RNG.integers(-128, 128, (c, 1) + ks).astype(np.int8)
    b = RNG.integers(-3000, 3000, c).astype(np.int32) if bias else None
    if small:
        b = (RNG.integers(-30, 30, c) - 128 * w.reshape(c, -1).sum(axis=1)).astype(np.int32)
    mults = [quantize_multiplier(float(s)) for s in
             np.exp(RNG.uniform(np.log(scale[0]), np.log(scale[1]), c if per_channel else 1))]
    st = stride if isinstance(stride, tuple) else (stride,) * r
    dl = dil if isinstance(dil, tuple) else (dil,) * r
    attrs = {"strides": st, "pads": pads if pads is not None else tuple((v - 1) // 2 for v in ks) * 2,
             "dilations": dl, "group": c,
             "x_zero_point": 128 if small else int(RNG.integers(*qrange(dt))) if xzp is None else xzp,
             "multiplier": tuple(m for m, _ in mults), "shift": tuple(s for _, s in mults),
             "out_zero_point": 128 if small else int(RNG.integers(0, 256)), "qmin": 0, "qmax": 255,
             "out_dtype": "uint8"}
    if bound:       # as quantize_int8.annotate_acc_bounds sets it
        lo, hi = qrange(dt)
        wsum = np.abs(w.astype(np.int64)).reshape(c, -1).sum(axis=1) * max(abs(lo), abs(hi))
        attrs["acc_bound"] = int((wsum + (np.abs(b.astype(np.int64)) if b is not None else 0)).max())
    return Case(id_, "qconv", attrs, [x, w, b])


QUADS = [
    _dw("k3x4_asym", 20, (9, 11), (3, 4), pads=(1, 1, 1, 2)),
    _dw("k3x2", 16, (8, 9), (3, 2), pads=(1, 0, 1, 1)),
    _dw("k3x1", 24, (7, 6), (3, 1), pads=(1, 0, 1, 0)),
    _dw("row_of_4", 32, (10, 4), 3),
    _dw("row_of_4_nopad", 17, (6, 4), 3, pads=(0, 0, 0, 0)),
    _dw("s2", 19, (13, 9), 3, stride=2),
    _dw("s21_k4", 33, (9, 10), (3, 4), stride=(2, 1), pads=(1, 2, 1, 1)),
    _dw("dil_h2", 16, (11, 7), 3, dil=(2, 1), pads=(2, 1, 2, 1)),
    _dw("conv1d_k3", 32, (23,), 3),
    _dw("conv1d_k4_s2", 24, (30,), 4, stride=2, pads=(1, 2)),
    _dw("zp_200_batch2", 21, (6, 8), 3, xzp=200, batch=2),
    _dw("zp_255_nobias", 16, (5, 7), 3, xzp=255, bias=False),
    _dw("dscnn_bound", 64, (25, 5), 3, bound=True, scale=(2e-3, 1e-2)),
    _dw("bound_tensor", 48, (12, 6), 3, bound=True, per_channel=False),
]
PAIRS = [
    _dw("row_of_3", 16, (9, 3), 3),                                        # narrower than 4
    _dw("shift_below_33_bound", 16, (7, 8), 3, bound=True, scale=(0.6, 3.0), small=True),  # pre-shifted weights
    _dw("i8", 19, (6, 9), 3, dt="int8"),
    _dw("k5", 16, (6, 12), 5),
]
CASES = QUADS + PAIRS


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("dw_quads"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    assert np.unique(case.reference()[0]).size > 8
    check(case, runner.run(case))


def test_bit_exact_avx2_target(tmp_path):
    from edgec.targets import load_target
    cases = [Case(c.id + "_avx2", c.op, c.attrs, c.inputs) for c in CASES[::2]]
    r = build_cases(cases, tmp_path, target=load_target("x86_64-avx2"))
    for c in cases:
        check(c, r.run(c))


FORM = ("k3x4_asym", "k3x1", "row_of_4", "conv1d_k3", "s21_k4", "dil_h2", "zp_200_batch2", "dscnn_bound",
        "row_of_3", "shift_below_33_bound", "i8", "k5")


@pytest.mark.parametrize("case", [c for c in CASES if c.id in FORM], ids=lambda c: c.id)
def test_form(case):
    """Quads (vpdpbusd, no vpdpwssds) for the QUADS cases, tap pairs for the others; AVX2 keeps
    pairs."""
    from edgec.backend.kernels.quant_isa import target_isa
    from edgec.targets import load_target
    isa = target_isa(load_target("x86_64"))
    if isa is None or isa.name != "vnni":
        pytest.skip("the x86_64 target has no VNNI ISA here")
    a = case_asm(case, "x86_64")
    if case in QUADS:
        assert "vpdpbusd" in a and "vpdpwssds" not in a
    else:
        assert "vpdpwssds" in a and "vpdpbusd" not in a
    if case.id in ("k3x4_asym", "row_of_3"):
        a2 = case_asm(case, "x86_64-avx2")
        assert "vpmaddwd" in a2 and "vpdpbusd" not in a2
