"""The uint8 ReLU tail of the int8 requantization (DS-CNN's layers, issue 6): with a fused ReLU
(qmin >= the output zero point) and a uint8 output, the multiply-high forms finish in unsigned
32-bit lanes (quant.py ``hi32_finish`` with no sign, quant_dw.py ``_Rq.apply(u8=True)``): q + zp
then an unsigned min with qmax (the saturating narrowing store for qmax = 255), an unsigned max
with qmin above the zero point. Bit-exact against the numpy reference for DS-CNN's pointwise
(conv_isa), first conv (width taps) and depthwise (channels in lanes) shapes, with zero points 0
and above 0, qmax 255 and below, qmin above the zero point, per-channel and per-tensor
multipliers, right shifts >= 33 (the multiply-high) and the pre-shifted accumulator (acc_bound),
on the AVX-512 VNNI host target and on x86_64-avx2; plus the instruction the tail is for."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.quant.qmath import quantize_multiplier

from ._harness import Case, build_cases, case_asm, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(2611)


def _conv(id_, x_shape, w_shape, strides, pads, zps=(0, 0, 0, 255), group=1, scale=(2e-3, 1.2e-2),
          per_channel=True, bound=False):
    """zps = (x zero point, out zero point, qmin, qmax) of a uint8 -> uint8 conv with a ReLU clamp."""
    x = RNG.integers(0, 256, size=x_shape).astype(np.uint8)
    w = RNG.integers(-128, 128, w_shape).astype(np.int8)
    oc = w_shape[0]
    b = RNG.integers(-30000, 30000, oc).astype(np.int32)
    k = int(np.prod(w_shape[1:]))
    sc = np.exp(RNG.uniform(np.log(scale[0]), np.log(scale[1]), oc if per_channel else 1)) / np.sqrt(k)
    mults = [quantize_multiplier(float(s)) for s in sc]
    xz, oz, lo, hi = zps
    attrs = {"strides": strides, "pads": pads, "dilations": (1, 1), "group": group, "x_zero_point": xz,
             "multiplier": tuple(m for m, _ in mults), "shift": tuple(s for _, s in mults),
             "out_zero_point": oz, "qmin": lo, "qmax": hi, "out_dtype": "uint8"}
    if bound:       # as quantize_int8.annotate_acc_bounds sets it (the pre-shifted accumulator)
        attrs["acc_bound"] = int((np.abs(w.astype(np.int64)).reshape(oc, -1).sum(axis=1) * 255
                                  + np.abs(b.astype(np.int64))).max())
    return Case(id_, "qconv", attrs, [x, w, b])


CASES = [
    _conv("pw_64_25x5", (1, 64, 25, 5), (64, 64, 1, 1), (1, 1), (0, 0, 0, 0)),
    _conv("pw_64_25x5_bound", (1, 64, 25, 5), (64, 64, 1, 1), (1, 1), (0, 0, 0, 0), bound=True),
    _conv("pw_zp_qmax", (1, 48, 9, 7), (40, 48, 1, 1), (1, 1), (0, 0, 0, 0), zps=(7, 12, 12, 200)),
    _conv("pw_qmin_above_zp", (1, 32, 6, 11), (36, 32, 1, 1), (1, 1), (0, 0, 0, 0), zps=(128, 5, 20, 255),
          per_channel=False),
    _conv("first_10x4_s2", (1, 1, 49, 10), (64, 1, 10, 4), (2, 2), (4, 1, 5, 1), scale=(1e-2, 4e-2)),
    _conv("dw_64_25x5", (1, 64, 25, 5), (64, 1, 3, 3), (1, 1), (1, 1, 1, 1), group=64, scale=(4e-3, 2e-2)),
    _conv("dw_64_25x5_bound", (1, 64, 25, 5), (64, 1, 3, 3), (1, 1), (1, 1, 1, 1), group=64,
          scale=(4e-3, 2e-2), bound=True),
    _conv("dw_zp_qmax_19c", (1, 19, 8, 6), (19, 1, 3, 3), (1, 1), (1, 1, 1, 1), group=19, zps=(9, 30, 30, 180),
          scale=(4e-3, 2e-2)),
    _conv("dw_qmin_above_zp", (1, 24, 7, 9), (24, 1, 3, 3), (2, 2), (1, 1, 1, 1), group=24,
          zps=(100, 3, 10, 250), scale=(4e-3, 2e-2), per_channel=False),
]


def _varied(case):
    out = case.reference()[0]
    lo, hi = case.attrs["qmin"], case.attrs["qmax"]
    # a clamp bound is reached and many levels in between: the tail's min / max matter
    return np.unique(out).size > 16 and ((out == lo).any() or (out == hi).any())


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("dscnn_tail"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    assert _varied(case), case.id
    check(case, runner.run(case))


def test_bit_exact_avx2_target(tmp_path):
    from edgec.targets import load_target
    cases = [Case(c.id + "_avx2", c.op, c.attrs, c.inputs) for c in CASES]
    r = build_cases(cases, tmp_path, target=load_target("x86_64-avx2"))
    for c in cases:
        check(c, r.run(c))


def test_saturating_store():
    """qmax = 255, zero point 0: the clamp is the unsigned saturating narrowing store, no signed
    min / max after the shift (the depthwise and pointwise DS-CNN kernels on the VNNI host)."""
    from edgec.backend.kernels.quant_isa import target_isa
    from edgec.targets import load_target
    isa = target_isa(load_target("x86_64"))
    if isa is None or isa.name != "vnni":
        pytest.skip("the x86_64 target has no VNNI ISA here")
    by = {c.id: c for c in CASES}
    dw = case_asm(by["dw_64_25x5"], "x86_64")
    assert "vpmovusdb" in dw and "vpminsd" not in dw
    pw = case_asm(by["pw_64_25x5"], "x86_64")
    assert "vpmovusdb" in pw and "vpminsd" not in pw
