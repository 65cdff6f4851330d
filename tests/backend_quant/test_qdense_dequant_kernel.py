"""qdense_dequant kernels (edgec/backend/kernels/quant.py: qdense's schedules with a float
epilogue y = float32(acc + bias) * scale[n]) against the numpy reference of edgec/ops/quant.py,
bit for bit (tolerance 0 on the float32 outputs): the GEMV (few rows), the packed dot-product
schedule (AVX2 vpmaddwd / VNNI, 16+ rows), the portable schedules (int8 activations, the generic
x86-64 target), per-channel and per-tensor scales, with and without bias, the MiniLM shape."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.quant.qmath import qrange
from edgec.targets import load_target

from ..backend._harness import Case, build_for_target, check
from .test_quant_kernels import GENERIC

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(77)


def _case(id_, m, n, k, dt="uint8", per_channel=True, bias=True):
    lo, hi = qrange(dt)
    x = RNG.integers(lo, hi + 1, (m, k)).astype(dt)
    w = RNG.integers(-127, 128, (n, k)).astype(np.int8)
    b = RNG.integers(-300000, 300000, n).astype(np.int32) if bias else None
    s = np.exp(RNG.uniform(np.log(1e-7), np.log(1e-3), n if per_channel else 1)).astype(np.float32)
    attrs = {"x_zero_point": int(RNG.integers(lo, hi + 1)), "scale": tuple(float(v) for v in s)}
    return Case(id_, "qdense_dequant", attrs, [x, w, b], rtol=0.0, atol=0.0)


CASES = [
    _case("dq_gemv_1x64x200", 1, 64, 200),
    _case("dq_gemv_3x37x130_pt", 3, 37, 130, per_channel=False),
    _case("dq_packed_16x64x96", 16, 64, 96),
    _case("dq_packed_odd_17x37x33_nobias", 17, 37, 33, bias=False),
    _case("dq_packed_minilm_128x384x1536", 128, 384, 1536),
    _case("dq_portable_i8_20x24x48", 20, 24, 48, "int8"),
    _case("dq_portable_small_k", 5, 10, 7),
]


@pytest.fixture(scope="module", params=["host", "x86_64-avx2", "generic"])
def runner(request, tmp_path_factory):
    target = GENERIC if request.param == "generic" else load_target(request.param)
    return build_for_target(CASES, tmp_path_factory, target, "qdense_dequant_" + request.param)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    got = runner.run(case)
    check(case, got)
    np.testing.assert_array_equal(got[0].view(np.int32), case.reference()[0].view(np.int32), err_msg=case.id)


def test_cases_are_not_trivial():
    for c in CASES:
        out = c.reference()[0]
        assert out.dtype == np.float32 and np.unique(out).size > out.size // 2, c.id


def test_reference_is_dequantized_accumulator():
    """qdense_dequant == dequantize(per axis 1, zero point 0) of the int32-output qdense."""
    from edgec.ir import ops as irops
    c = CASES[2]
    x, w, b = c.inputs
    (acc,) = irops.get("qdense").reference(x, w, b, x_zero_point=c.attrs["x_zero_point"], multiplier=(2 ** 30,),
                                           shift=(1,), out_zero_point=0, qmin=-(2 ** 31), qmax=2 ** 31 - 1,
                                           out_dtype="int32")
    (want,) = irops.get("dequantize").reference(acc, scale=c.attrs["scale"], zero_point=0, axis=1)
    np.testing.assert_array_equal(c.reference()[0], want)
