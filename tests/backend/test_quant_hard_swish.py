"""qconv / qdense with a fused hard swish (``act="hard_swish"``, edgec/ops/quant.py module doc):
every kernel path (VNNI pointwise conv, depthwise 3x3 / 5x5, grouped and 1-D convs on the
portable schedule, the dense GEMV and the packed dense) is bit-exact with the numpy reference,
on the VNNI host and on an AVX2-only target; the reference itself is within one output quantum
of hard_swish computed in float64 from the same accumulators."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.ir import ops as irops
from edgec.passes.quantize_int8 import _hard_swish_attrs, _hard_swish_final
from edgec.quant.qmath import quantize_multiplier, qrange

from ._harness import Case, build_cases, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(1234)
_IDENTITY = {"multiplier": (2 ** 30,), "shift": (1,), "out_zero_point": 0, "qmin": -2 ** 31, "qmax": 2 ** 31 - 1,
             "out_dtype": "int32"}


def _act_attrs(op, inputs, base, out="uint8", hi32=False):
    """Requantization + fused hard swish attributes whose pre-activation h spans about [-6, 9]
    (both bends of the hard swish and the linear part), with output qparams of [-0.375, 9].
    ``hi32``: fewer fraction bits, every first-step multiplier below 1/8 (the 32-bit multiply-high
    form runs); else the most fraction bits (shifts of 28-34: the int64 and narrowed forms)."""
    acc = irops.get(op).reference(*inputs, **base, **_IDENTITY)[0].astype(np.float64)
    axes = tuple(a for a in range(acc.ndim) if a != 1)
    peak = np.maximum(np.abs(acc).max(axis=axes), 1.0)
    real = RNG.uniform(6.0, 9.0, peak.shape) / peak            # h = acc * real
    lo, hi = qrange(out)
    s_y = (9.0 + 0.375) / (hi - lo)
    z_y = int(lo + round(0.375 / s_y))
    act = _hard_swish_attrs(s_y, z_y, lo, hi)
    if hi32:
        # fewer fraction bits, so that every first-step multiplier is below 1/8 (right shifts >= 33):
        # the kernels' 32-bit multiply-high form (the pass does this down to HSWISH_MIN_FRAC_BITS)
        f = min(act["act_frac_bits"], int(np.floor(np.log2(0.124 / real.max()))))
        hmax = int(np.ceil((act["act_hmax"] / 2 ** act["act_frac_bits"]) * 2 ** f))
        act = dict(act, act_frac_bits=f, act_hmin=-3 * 2 ** f, act_hmax=hmax,
                   **_hard_swish_final(f, max(3 * 2 ** f, hmax) * 6 * 2 ** f, 2.0 ** (-2 * f) / (6.0 * s_y)))
    mults = [quantize_multiplier(float(r) * 2.0 ** act["act_frac_bits"]) for r in real]
    return dict(base, multiplier=tuple(m for m, _ in mults), shift=tuple(s for _, s in mults),
                out_zero_point=z_y, qmin=lo, qmax=hi, out_dtype=out, **act), real, s_y, z_y


def _conv(id_, c, m, hw, k, stride, pads, group=1, dt="uint8", out="uint8", hi32=False):
    x = RNG.integers(*qrange(dt), size=(1, c, *hw), endpoint=True).astype(dt)
    w = RNG.integers(-127, 128, (m, c // group, *k)).astype(np.int8)
    b = RNG.integers(-2000, 2000, m).astype(np.int32)
    r = len(hw)
    base = {"strides": (stride,) * r, "pads": pads, "dilations": (1,) * r, "group": group,
            "x_zero_point": int(RNG.integers(*qrange(dt)))}
    attrs, real, s_y, z_y = _act_attrs("qconv", [x, w, b], base, out, hi32)
    return Case(id_, "qconv", attrs, [x, w, b]), real, s_y, z_y


def _dense(id_, rows, k, n, out="uint8", hi32=False):
    x = RNG.integers(0, 256, (rows, k)).astype(np.uint8)
    w = RNG.integers(-127, 128, (n, k)).astype(np.int8)
    b = RNG.integers(-2000, 2000, n).astype(np.int32)
    attrs, real, s_y, z_y = _act_attrs("qdense", [x, w, b], {"x_zero_point": 131}, out, hi32)
    return Case(id_, "qdense", attrs, [x, w, b]), real, s_y, z_y


BUILT = [
    _conv("pw_16_to_40", 16, 40, (6, 20), (1, 1), 1, (0, 0, 0, 0)),                    # VNNI pointwise
    _conv("conv3x3_s2", 8, 24, (13, 17), (3, 3), 2, (1, 1, 1, 1)),                     # VNNI 3x3
    _conv("dw3x3_dscnn", 64, 64, (25, 5), (3, 3), 1, (1, 1, 1, 1), group=64),          # depthwise, 5 wide
    _conv("dw5x5_ppocr", 40, 40, (2, 96), (5, 5), 1, (2, 2, 2, 2), group=40),          # depthwise 5x5
    _conv("dw3x3_s2_i8", 24, 24, (12, 96), (3, 3), 2, (1, 1, 1, 1), group=24, dt="int8", out="int8"),
    _conv("grouped", 12, 18, (7, 9), (3, 3), 1, (1, 1, 1, 1), group=3),                # portable schedule
    _conv("conv1d", 6, 10, (33,), (3,), 1, (1, 1)),
    _dense("gemv_1row", 1, 200, 48),
    _dense("dense_32rows", 32, 96, 40),
    # the pass's choice of fraction bits: every first-step shift >= 33, the multiply-high forms
    _conv("pw_16_to_40_hi32", 16, 40, (6, 20), (1, 1), 1, (0, 0, 0, 0), hi32=True),
    _conv("conv3x3_s2_hi32", 8, 24, (13, 17), (3, 3), 2, (1, 1, 1, 1), hi32=True),
    _conv("dw5x5_hi32", 40, 40, (2, 96), (5, 5), 1, (2, 2, 2, 2), group=40, hi32=True),
    _conv("dw3x3_dscnn_hi32", 64, 64, (25, 5), (3, 3), 1, (1, 1, 1, 1), group=64, hi32=True),
    _dense("gemv_1row_hi32", 1, 2048, 48, hi32=True),
]
CASES = [c for c, *_ in BUILT]


def test_reference_within_one_quantum_of_float_hard_swish():
    for case, real, s_y, z_y in BUILT:
        if case.id.endswith("_hi32"):   # every first-step shift >= 33: the multiply-high form
            assert min(31 - sh for sh in case.attrs["shift"]) >= 33, case.id
        a = case.attrs
        base = {k: v for k, v in a.items() if k not in _IDENTITY and not k.startswith("act")}
        acc = irops.get(case.op).reference(*case.inputs, **base, **_IDENTITY)[0].astype(np.float64)
        shape = [1] * acc.ndim
        shape[1] = -1
        h = acc * real.reshape(shape)
        want = np.clip(np.round(h * np.clip(h + 3, 0, 6) / 6 / s_y) + z_y, a["qmin"], a["qmax"])
        got = case.reference()[0].astype(np.float64)
        assert np.abs(got - want).max() <= 1, case.id
        # rounding ties of h only: with F fraction bits h is off by at most 2^-(F+1), so more outputs
        # land on the other side of a tie when F is small (the multiply-high cases, F = 7-10)
        assert np.mean(got == want) > (0.97 if a["act_frac_bits"] >= 10 else 0.9), case.id
        assert np.unique(got).size > 12 and (got == z_y).any() and (h < -3).any() and (h > 3).any(), case.id


def test_act_attribute_validation():
    case = CASES[0]
    bad = [({"act": "gelu"}, "act must be one of"),
           ({"act_hmax": case.attrs["act_hmin"]}, "act_hmin < act_hmax"),
           ({"act_frac_bits": 30}, "act_frac_bits"),
           ({"act_hmax": 2 ** 26}, "could leave int32"),
           ({"act_multiplier": 0}, "act_multiplier"),
           ({"act_right_shift": 0}, "act_right_shift"),
           ({"act_pre_shift": 31}, "act_pre_shift"),
           ({"act_multiplier": 2 ** 20}, "final step could leave int32"),
           ({"act_pre_shift": 0}, "final step could leave int32")]
    from edgec.ir.graph import Value
    ins = [Value(f"i{k}", str(a.dtype), a.shape) for k, a in enumerate(case.inputs)]
    for change, msg in bad:
        with pytest.raises(ValueError, match=msg):
            irops.get("qconv").infer(ins, irops.get("qconv").normalize_attrs(dict(case.attrs, **change)))


@pytest.fixture(scope="module", params=["host", "x86_64-avx2"])
def runner(request, tmp_path_factory):
    from edgec.targets import load_target
    return build_cases(CASES, tmp_path_factory.mktemp(f"hswish_{request.param}"), target=load_target(request.param))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    check(case, runner.run(case))


@pytest.mark.parametrize("s_y,z_y,out", [(0.01, 37, "uint8"), (9.375 / 255, 10, "uint8"), (0.1, 4, "uint8"),
                                         (0.5, 1, "uint8"), (0.05, -120, "int8")])
def test_final_step_within_a_hundredth_of_a_quantum(s_y, z_y, out):
    """The last step (q = p >> s rounded, one 32-bit multiply and shift) against the real value
    h * t / (6 s_y 2^2F) over EVERY pre-activation h the attributes allow: never more than 0.51
    of a quantum away (exact rounding: 0.5), and on the nearest integer for 99 % of them or more."""
    from edgec.ops.quant import hard_swish_tail
    lo, hi = qrange(out)
    a = dict(_hard_swish_attrs(s_y, z_y, lo, hi, 0.0005), out_zero_point=z_y, qmin=lo, qmax=hi)
    f = a["act_frac_bits"]
    h = np.arange(a["act_hmin"], a["act_hmax"] + 1, dtype=np.int64)
    t = np.clip(h + 3 * 2 ** f, 0, 6 * 2 ** f)
    ideal = h.astype(np.float64) * t / (6.0 * s_y * 2.0 ** (2 * f)) + z_y
    got = hard_swish_tail(h, a)
    inside = (ideal > lo) & (ideal < hi)
    err = np.abs(got[inside] - ideal[inside])
    assert err.max() <= 0.51, err.max()
    assert np.mean(got[inside] == np.round(ideal[inside])) > 0.99
    assert (got[ideal <= lo] == lo).all() and (got[ideal >= hi] == hi).all()
