"""The integer global average pool (``qglobal_avg_pool``, kernels/quant_pool.py): bit-exact with
the numpy reference on the VNNI host, an AVX2-only target and a generic (SSE2, portable
TE reduction) x86-64 target, for channel sizes that take each
part of the psadbw sum (whole 64- / 32-byte steps, 16-byte steps, the masked last 16 bytes,
fewer than 16 bytes as scalars), uint8 and int8 inputs (extreme values: all 0 / 255, -128 / 127),
1-D and 2-D maps, a batch of 2, per-tensor requantization with a clamp and the largest map the
op allows in a parallel launch. The quantization pass and the QDQ importer emit the op for a
global average pool; the QDQ exporter writes it back as GlobalAveragePool."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.quant.qmath import qrange, quantize_multiplier

from ._harness import Case, build_for_target, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(2027)


def _case(id_, shape, dt="uint8", out="uint8", fill=None, qmin=None, scale_out=None):
    lo, hi = qrange(dt)
    x = (np.full(shape, fill, dt) if fill is not None
         else RNG.integers(lo, hi, size=shape, endpoint=True).astype(dt))
    count = int(np.prod(shape[2:]))
    s_in = 0.02
    s_out = scale_out or 0.015
    m, s = quantize_multiplier(s_in / (count * s_out))
    olo, ohi = qrange(out)
    attrs = {"x_zero_point": int(RNG.integers(lo // 2, hi // 2 + 1)), "multiplier": (m,), "shift": (s,),
             "out_zero_point": int(RNG.integers(olo // 2, ohi // 2 + 1)),
             "qmin": olo if qmin is None else qmin, "qmax": ohi, "out_dtype": out}
    return Case(id_, "qglobal_avg_pool", attrs, [x])


CASES = [
    _case("ppocr_se", (1, 200, 2, 96)),                         # 192 bytes: three 64-byte steps
    _case("ppocr_se3", (1, 88, 3, 96)),                         # 288: 4 x 64 + 2 x 16
    _case("dscnn", (1, 64, 25, 5)),                             # 125: 64 + 3 x 16 + masked 13
    _case("mnv2_7x7", (1, 1280, 7, 7), "int8", "int8"),         # 49: 3 x 16 + masked 1
    _case("small_map", (2, 5, 3, 3)),                           # 9 bytes: scalars; batch of 2
    _case("tiny_1d", (1, 3, 1), "int8", "int8"),                # one position
    _case("exact_16", (1, 7, 4, 4), "int8", "uint8"),           # 16: one 16-byte step
    _case("rest_17", (1, 4, 17), "uint8", "int8"),               # 17: 16 + masked 1
    _case("all_255", (1, 6, 11, 13), fill=255, qmin=10),        # 143: the largest sums, a clamp
    _case("all_min_int8", (1, 6, 70), "int8", "int8", fill=-128),
    _case("all_max_int8", (1, 6, 70), "int8", "int8", fill=127),
    _case("big_parallel", (1, 96, 56, 56)),                     # 3136 bytes a channel, parallel
]


@pytest.fixture(scope="module", params=["host", "x86_64-avx2", "generic"])
def runner(request, tmp_path_factory):
    from edgec.targets import load_target
    from tests.backend_quant.test_quant_kernels import GENERIC
    target = GENERIC if request.param == "generic" else load_target(request.param)
    return build_for_target(CASES, tmp_path_factory, target, f"qgap_{request.param}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    check(case, runner.run(case))


def test_reference_is_the_rounded_mean():
    """The op's reference against the float mean: within half an output quantum (plus the
    multiplier's relative error) wherever the clamp does not act."""
    from edgec.ir.ops import get
    c = _case("ref", (2, 8, 6, 5), scale_out=0.05)
    a = c.attrs
    (y,) = get("qglobal_avg_pool").reference(*c.inputs, **a)
    x = c.inputs[0].astype(np.float64)
    mean = (x - a["x_zero_point"]).mean(axis=(2, 3), keepdims=True) * 0.02 / 0.05 + a["out_zero_point"]
    inside = (mean > a["qmin"]) & (mean < a["qmax"])
    assert y.shape == (2, 8, 1, 1) and inside.sum() > 8
    assert np.abs(y[inside] - mean[inside]).max() <= 0.5 + 1e-6


def test_op_refuses_bad_attributes():
    from edgec.ir.ops import get
    op = get("qglobal_avg_pool")
    c = _case("bad", (1, 4, 3, 3))
    from edgec.ir.graph import Value
    x = Value("x", "uint8", (1, 4, 3, 3))
    with pytest.raises(ValueError, match="x_zero_point"):
        op.infer([x], {**c.attrs, "x_zero_point": 300})
    with pytest.raises(ValueError, match="N, C, spatial"):
        op.infer([Value("x", "uint8", (4, 9))], c.attrs)
    with pytest.raises(ValueError, match="out_dtype"):
        op.infer([x], {**c.attrs, "out_dtype": "float32"})
