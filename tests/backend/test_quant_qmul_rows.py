"""qmul with one side broadcast over trailing axes (a squeeze-excitation gate [N, C, 1, 1] times
the feature map [N, C, H, W]) runs as rows (quant.py ``_qmul_rows``): bit-exact with the numpy
reference on the VNNI host and an AVX2-only target, for both operand orders, rows that are and
are not a multiple of the vector, 8-bit types of both signs, and requantization shifts below 31,
at 31-32 and at 33 or more (the int64, int32-tail and multiply-high forms)."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.backend.kernels.quant import _row_broadcast
from edgec.backend.kernels.registry import KernelSpec, TensorType
from edgec.quant.qmath import quantize_multiplier, qrange

from ._harness import Case, build_for_target, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(77)


def _case(id_, ash, bsh, dt="uint8", out="uint8", scale=0.004):
    a = RNG.integers(*qrange(dt), size=ash, endpoint=True).astype(dt)
    b = RNG.integers(*qrange(dt), size=bsh, endpoint=True).astype(dt)
    m, s = quantize_multiplier(scale)
    lo, hi = qrange(out)
    attrs = {"a_zero_point": int(RNG.integers(lo // 2, hi // 2)), "b_zero_point": int(RNG.integers(lo // 2, hi // 2)),
             "multiplier": (m,), "shift": (s,), "out_zero_point": int(RNG.integers(lo // 2, hi // 2)),
             "qmin": lo, "qmax": hi, "out_dtype": out}
    return Case(id_, "qmul", attrs, [a, b])


CASES = [
    _case("se_gate", (1, 40, 3, 96), (1, 40, 1, 1)),
    _case("se_gate_first", (1, 24, 1, 1), (1, 24, 6, 16)),                     # the broadcast side first
    _case("se_rows_35", (2, 12, 5, 7), (2, 12, 1, 1), "int8", "int8"),         # rows not a multiple of 16
    _case("row_bcast_w", (3, 8, 20), (3, 8, 1), scale=0.7),                    # n = 32: the int32 tail
    _case("big_scale", (1, 16, 4, 16), (1, 16, 1, 1), scale=3.0),              # n = 30: int64 products
    _case("small_rows", (1, 32, 3, 5), (1, 32, 1, 1)),                          # rows of 15: plain pointwise
]


def test_row_split_is_chosen_where_it_applies():
    def split(c):
        ins = tuple(TensorType(str(a.dtype), tuple(a.shape)) for a in c.inputs)
        out = TensorType(c.attrs["out_dtype"], tuple(c.reference()[0].shape))
        return _row_broadcast(KernelSpec("qmul", c.attrs, ins, (out,), None))
    got = {c.id: split(c) for c in CASES}
    assert got["se_gate"] == (40, 288, 0)
    assert got["se_gate_first"] == (24, 96, 1)
    assert got["se_rows_35"] == (24, 35, 0)
    assert got["row_bcast_w"] == (24, 20, 0)
    assert got["small_rows"] is None


@pytest.fixture(scope="module", params=["host", "x86_64-avx2"])
def runner(request, tmp_path_factory):
    from edgec.targets import load_target
    return build_for_target(CASES, tmp_path_factory, load_target(request.param), f"qmul_rows_{request.param}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    check(case, runner.run(case))
