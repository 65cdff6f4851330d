"""qconv depthwise (group == channels) on the one-channel, several-rows tile of
``_nn_sched._depthwise_tile`` (uint8/int8 loads, int32 accumulators): bit-exact against the
numpy reference ``edgec.ops.quant.qconv``, and the path each case takes (so a change to the
selection rules cannot silently turn a case into a test of another path)."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.quant.qmath import quantize_multiplier, qrange

from ._harness import Case, build_cases, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(606)


def _dw(id_, c, hw, k, stride, pads, dt="uint8", out="uint8", bias=True):
    x = RNG.integers(*qrange(dt), size=(1, c, *hw), endpoint=True).astype(dt)
    w = RNG.integers(-127, 128, (c, 1, k, k)).astype(np.int8)
    b = RNG.integers(-3000, 3000, c).astype(np.int32) if bias else None
    mults = [quantize_multiplier(float(r)) for r in np.exp(RNG.uniform(np.log(2e-4), np.log(4e-3), c))]
    lo, hi = qrange(out)
    attrs = {"strides": (stride, stride), "pads": pads, "dilations": (1, 1), "group": c,
             "x_zero_point": int(RNG.integers(lo if dt == out else qrange(dt)[0], qrange(dt)[1])),
             "multiplier": tuple(m for m, _ in mults), "shift": tuple(s for _, s in mults),
             "out_zero_point": int(RNG.integers(lo, hi + 1)), "qmin": lo, "qmax": hi, "out_dtype": out}
    return Case(id_, "qconv", attrs, [x, w, b])


# (case, takes the depthwise tile on an AVX-512 host: at width stride 1, 16 or 8 int32 lanes
# divide the output width or one vector holds a row of 9-16 columns at least 3/4 used; at any
# stride, a row of 6-8 columns in one 8-lane vector)
CASES = [
    (_dw("u8_3x3_s1_w32", 5, (9, 32), 3, 1, (1, 1, 1, 1)), True),              # 5 channels, 16 lanes
    (_dw("u8_3x3_s1_w16_nopad", 19, (10, 18), 3, 1, (0, 0, 0, 0)), True),      # 19 channels, 16 wide
    (_dw("i8_3x3_s1_w24", 7, (13, 24), 3, 1, (1, 1, 1, 1), dt="int8", out="int8"), True),   # 8 lanes
    (_dw("u8_3x3_s1_asym_pad", 6, (11, 15), 3, 1, (0, 1, 2, 2)), True),        # 11 rows, 16 wide
    (_dw("i8_5x5_s1_w16", 3, (12, 16), 5, 1, (2, 2, 2, 2), dt="int8", out="int8", bias=False), True),
    (_dw("u8_3x3_s1_w14", 17, (14, 14), 3, 1, (1, 1, 1, 1)), True),            # one 16-lane vector a row
    (_dw("i8_3x3_s1_w7", 21, (7, 7), 3, 1, (1, 1, 1, 1), dt="int8", out="int8"), True),     # 7 of 8 lanes
    (_dw("u8_3x3_s2_14_to_7", 18, (14, 14), 3, 2, (0, 0, 1, 1)), True),        # stride 2, 7 of 8 lanes
    (_dw("u8_5x5_s2_w6", 4, (11, 12), 5, 2, (2, 2, 2, 2), dt="uint8", out="int8"), True),  # 6 columns
    (_dw("u8_3x3_s1_w28", 4, (10, 28), 3, 1, (1, 1, 1, 1)), False),            # 28 wide: general tile
    (_dw("u8_3x3_s1_w5", 12, (25, 5), 3, 1, (1, 1, 1, 1)), False),             # DS-CNN's 5-wide rows
    (_dw("u8_3x3_s2_w56", 6, (16, 56), 3, 2, (1, 1, 1, 1)), False),            # stride 2: general tile
    (_dw("i8_3x3_s2", 9, (13, 17), 3, 2, (0, 1, 1, 0), dt="int8", out="uint8"), True),     # 8 columns
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases([c for c, _ in CASES], tmp_path_factory.mktemp("dw_int8"))


@pytest.mark.parametrize("case", [c for c, _ in CASES], ids=[c.id for c, _ in CASES])
def test_bit_exact(runner, case):
    check(case, runner.run(case))
    assert np.unique(case.reference()[0]).size > 8, "the output must vary for exactness to mean something"


def _tile(case):
    from edgec.backend.kernels._nn_sched import _choose_conv_tile
    from edgec.backend.kernels.common import placeholder
    from edgec.backend.kernels.nn import conv_problem
    from edgec.backend.kernels.registry import KernelSpec, TensorType
    from edgec.targets import load_target
    import tvm
    ins = tuple(None if a is None else TensorType(str(a.dtype), tuple(a.shape)) for a in case.inputs)
    out = case.reference()[0]
    spec = KernelSpec("qconv", case.attrs, ins, (TensorType(str(out.dtype), tuple(out.shape)),), load_target("host"))
    x, w = placeholder(spec, 0, "x"), placeholder(spec, 1, "w")
    prob = conv_problem(spec, x, w, fill=tvm.tirx.const(int(case.attrs["x_zero_point"]), str(x.dtype)),
                        dtype=str(x.dtype))
    return prob, _choose_conv_tile(prob, spec.target, allow_oc_inner=False, oc_exact=True), spec.target


@pytest.mark.parametrize("case,dw", CASES, ids=[c.id for c, _ in CASES])
def test_path(case, dw):
    if int(getattr(_tile(case)[2], "vector_bits", 0) or 0) < 512:
        pytest.skip("the expected paths are those of an AVX-512 host")
    prob, tile, _ = _tile(case)
    ow = prob.out[-1]
    if dw:
        # one channel, one vector of a row, several rows; no partial last vector in a row
        assert (tile.mr, tile.nw) == (1, 1) and tile.nh > 1, tile
        if 6 <= ow <= 8:
            assert tile.lanes == 8, tile
        else:
            assert prob.strides[-1] == 1, prob.strides
            assert tile.lanes in (16, 8) and (ow % tile.lanes == 0 or 4 * ow >= 3 * tile.lanes >= 3 * ow > 24), tile
    else:
        assert not (tile.mr == 1 and tile.nw == 1 and tile.nh > 1), tile


def test_widening_loads_in_asm():
    """The depthwise tile loads uint8 (int8) pixels widened to int32 lanes (vpmovzxbd /
    vpmovsxbd). uint8 products are done on vpmaddwd (the upper 16 bits of both int32 lanes are
    zero or a sign extension LLVM can see through for zero-extended pixels), int8 on vpmulld."""
    from edgec.backend.build import _lower
    from edgec.backend.kernels.registry import KERNELS, KernelSpec, TensorType
    from tvm.tirx.build import tir_to_runtime
    # cases that take conv_direct on the VNNI host (the channels-in-lanes kernel, quant_dw, takes
    # rows narrower than 16 and the large-plane kernel, quant_dw_rows, planes of 8+ rows and 28+
    # columns: u8_3x3_s1_w32 went there in session 6)
    by_id = {c.id: c for c, _ in CASES}
    for case in (by_id[i] for i in ("u8_3x3_s1_w16_nopad", "i8_3x3_s1_w24", "u8_3x3_s1_asym_pad")):
        prob, tile, target = _tile(case)
        if int(getattr(target, "vector_bits", 0) or 0) < 512:
            pytest.skip("AVX-512 host only")
        ins = tuple(None if a is None else TensorType(str(a.dtype), tuple(a.shape)) for a in case.inputs)
        out = case.reference()[0]
        spec = KernelSpec("qconv", case.attrs, ins, (TensorType(str(out.dtype), tuple(out.shape)),), target)
        tt = target.tvm_target()
        host, dev = _lower(KERNELS["qconv"](spec), "k", tt)
        asm = tir_to_runtime(host, dev, tt).inspect_source("asm")
        if case.inputs[0].dtype == np.uint8:
            assert "vpmovzxbd" in asm and "vpmaddwd" in asm, case.id
        else:
            assert "vpmovsxbd" in asm and "vpmulld" in asm, case.id
