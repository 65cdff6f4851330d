"""The faster int8 conv paths of ``quant_conv.conv_isa`` (issue 6), bit for bit against the numpy
reference of edgec/ops/quant.py, on the VNNI host target and on x86_64-avx2:

- the requantization right after the reduction, per tile of accumulator registers, with the
  bias added in int32 and the 32-bit multiply-high form (``quant.requant_hi32``, every right
  shift n in [33, 62]) on the ``quant_isa.mulhi_intrin`` tensor intrinsic; the int64 forms
  for n in [31, 32] (int32 clamp) and n < 31 (the general one);
- width-tap groups (``quant_conv.conv_isa_taps``: G consecutive (channel, width tap) pairs per
  dot instruction when the channels are fewer than G), e.g. DS-CNN's 1-channel 10x4 stride-2
  first conv, whose weights VNNI reads in place (no per-call packing);
- the flat input interleave of 1x1 stride-1 convs (one unconditional copy loop, the padded
  positions filled apart);
- the benchmark shapes of the issue (MobileNetV2 / PP-OCR / DS-CNN pointwise convs, reduced in
  size where they are large), odd channel counts, strides, paddings, dilations, 1-D, batch 2,
  per-tensor multipliers, clamps, int8 outputs, multiplier 0, and accumulators at the ends of
  the int32 range (|acc + bias| = 2^31 - 1 and acc + bias = -2^31, where |acc| as uint32 is 2^31).
"""
from __future__ import annotations

import numpy as np
import pytest

from edgec.quant.qmath import quantize_multiplier, qrange
from edgec.targets import load_target

from ._harness import Case, build_for_target, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(606)


def _mults(count, lo, hi):
    reals = np.exp(RNG.uniform(np.log(lo), np.log(hi), count))
    out = [quantize_multiplier(float(r)) for r in reals]
    return [m for m, _ in out], [s for _, s in out]


def _conv(id_, xs, ws, strides, pads, dil=None, per_channel=True, bias=True, clamp=None, out="uint8", zp=None,
          scale=None, mults=None, bias_vals=None, w=None):
    """scale: (lo, hi) of the real multipliers (default: outputs spread over the 8-bit range)."""
    x = RNG.integers(0, 256, xs).astype(np.uint8)
    w = RNG.integers(-128, 128, ws).astype(np.int8) if w is None else w
    k = int(np.prod(ws[1:]))
    b = (RNG.integers(-20000, 20000, ws[0]).astype(np.int32) if bias_vals is None else bias_vals) if bias else None
    lo, hi = scale or (0.2 / (k * 90), 3.0 / (k * 90))
    count = ws[0] if per_channel else 1
    m, s = mults or _mults(count, lo, hi)
    olo, ohi = qrange(out)
    z = int(RNG.integers(olo, ohi + 1)) if zp is None else zp
    qmin, qmax = clamp if clamp else (olo, ohi)
    r = len(xs) - 2
    attrs = {"strides": strides, "pads": pads, "dilations": dil or (1,) * r, "group": 1, "x_zero_point": 131,
             "multiplier": tuple(m), "shift": tuple(s), "out_zero_point": z, "qmin": qmin, "qmax": qmax,
             "out_dtype": out}
    return Case(id_, "qconv", attrs, [x, w, b])


def _extreme_case(id_="extreme_acc_hi32", shifts=(-2, -31, -30, -25, -3, -29)):
    """Channels whose acc + bias reach the ends of int32 with the largest multipliers: weights of
    channels 0/1 are zero so that acc + bias is exactly the bias (INT32_MIN, INT32_MAX), the other
    channels have biases near the ends."""
    ws = (6, 8, 1, 1)
    w = RNG.integers(-128, 128, ws).astype(np.int8)
    w[:2] = 0
    bias = np.array([-2 ** 31, 2 ** 31 - 1, 2 ** 31 - 10 ** 6, -2 ** 31 + 10 ** 6, 0, 12345], np.int32)
    mults = ([2 ** 31 - 1, 2 ** 31 - 1, 2 ** 30, 2 ** 31 - 1, 0, 2 ** 30 + 7], list(shifts))
    return _conv(id_, (1, 8, 4, 16), ws, (1, 1), (0, 0, 0, 0), mults=mults, bias_vals=bias,
                 clamp=(-128, 127), out="int8", zp=-3, w=w)


CASES = [
    # the shapes (MobileNetV2 conv_16 at 1/16 of its positions, PP-OCR, DS-CNN)
    _conv("mnv2_pw16_relu", (1, 16, 28, 28), (96, 16, 1, 1), (1, 1), (0, 0, 0, 0), clamp=(0, 255), zp=0),
    _conv("ppocr_pw16x104", (1, 16, 3, 96), (104, 16, 1, 1), (1, 1), (0, 0, 0, 0)),
    _conv("ppocr_pw32x200", (1, 32, 2, 96), (200, 32, 1, 1), (1, 1), (0, 0, 0, 0)),
    _conv("dscnn_pw64", (1, 64, 25, 5), (64, 64, 1, 1), (1, 1), (0, 0, 0, 0)),
    _conv("dscnn_first_taps", (1, 1, 49, 10), (64, 1, 10, 4), (2, 2), (4, 1, 5, 2)),
    # width taps: C*KW not a multiple of G, 2 channels, dilation, 1-D, batch 2, stride 3
    _conv("taps_c1_k3x5", (2, 1, 13, 17), (7, 1, 3, 5), (1, 1), (1, 2, 1, 2), per_channel=False),
    _conv("taps_c2_k3x6_s2", (1, 2, 15, 20), (9, 2, 3, 6), (2, 2), (1, 2, 0, 3)),
    _conv("taps_c1_dil2", (1, 1, 12, 22), (5, 1, 2, 3), (1, 3), (0, 1, 1, 0), dil=(2, 2), bias=False),
    _conv("taps_1d_c1_k8", (2, 1, 61), (12, 1, 8), (2,), (3, 4)),
    # channel groups: odd counts, stride/padding, 3x3, 1-D, per-tensor, no bias
    _conv("pw_odd_s2", (2, 13, 9, 11), (19, 13, 1, 1), (2, 2), (0, 0, 0, 0)),
    _conv("k3_p1_odd", (1, 9, 12, 21), (33, 9, 3, 3), (1, 1), (1, 1, 1, 1), per_channel=False, bias=False),
    _conv("k3_s2_asym", (1, 6, 13, 10), (10, 6, 3, 3), (2, 2), (1, 0, 1, 2), clamp=(30, 200)),
    _conv("k1d_c5", (2, 5, 30), (7, 5, 4), (3,), (1, 2)),
    _conv("pw_c32_oc37", (1, 32, 5, 19), (37, 32, 1, 1), (1, 1), (0, 0, 0, 0)),   # weights copied, padded tile
    _conv("pw_i8_out", (1, 24, 5, 16), (40, 24, 1, 1), (1, 1), (0, 0, 0, 0), out="int8", clamp=(-100, 127)),
    # the other requantization forms: n in [31, 32] (multipliers in [0.5, 2)) ...
    _conv("req_n31_n32", (1, 8, 6, 16), (16, 8, 1, 1), (1, 1), (0, 0, 0, 0), scale=(0.0004, 0.0009),
          mults=([2 ** 30 + 5 * i for i in range(8)] * 2, [0, -1] * 8), bias_vals=np.arange(-8, 8, dtype=np.int32)),
    # ... n < 31 (a multiplier above 1) mixed with n in [33, 46]: the general int64 form
    _conv("req_scale_gt1", (1, 4, 5, 16), (8, 4, 1, 1), (1, 1), (0, 0, 0, 0),
          mults=([2 ** 30] * 8, [1, -3, -5, -7, -9, -11, -13, -15])),
    # n = 62, the largest right shift qmath allows (the fast form's upper end)
    _conv("req_n62", (1, 8, 4, 16), (4, 8, 1, 1), (1, 1), (0, 0, 0, 0), mults=([2 ** 31 - 1] * 4, [-31] * 4),
          bias_vals=np.array([2 ** 31 - 10 ** 6, -2 ** 31 + 10 ** 6, 2 ** 30, -2 ** 30], np.int32), zp=100),
    _extreme_case(),
    _extreme_case("extreme_acc_n31", (0, -31, -30, -1, -3, -29)),     # n = 31 present: the int64 form
    # (drawn last: the cases above keep their random draws)
    # one channel of 4 width taps: the weights read in place on VNNI (2-D and 1-D)
    _conv("taps_c1_k5x4", (1, 1, 20, 12), (16, 1, 5, 4), (1, 2), (2, 1, 2, 2), per_channel=False),
    _conv("taps_1d_c1_k4", (2, 1, 50), (8, 1, 4), (2,), (1, 2)),
    # the flat (unsplit) interleave of 1x1 convs: 1-D, batch 2, positions padded to the tile
    _conv("pw_flat_1d", (2, 8, 37), (12, 8, 1), (1,), (0, 0)),
    _conv("pw_flat_b2", (2, 12, 7, 9), (20, 12, 1, 1), (1, 1), (0, 0, 0, 0), clamp=(0, 255), zp=0),
]


@pytest.fixture(scope="module", params=["x86_64", "x86_64-avx2"])
def runner(request, tmp_path_factory):
    target = load_target("host" if request.param == "x86_64" else request.param)
    return build_for_target(CASES, tmp_path_factory, target, "gemm_" + request.param)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    check(case, runner.run(case))


def test_cases_are_not_trivial():
    for c in CASES:
        out = c.reference()[0]
        assert np.unique(out).size > 2, c.id


def test_extreme_case_reaches_int32_ends():
    """acc + bias of the extreme case is INT32_MIN and INT32_MAX on its first two channels."""
    c = _extreme_case()
    x, w, b = c.inputs
    acc = np.einsum("nchw,oc->nohw", x.astype(np.int64), w[:, :, 0, 0].astype(np.int64)) + b[None, :, None, None]
    assert acc[:, 0].min() == -2 ** 31 and acc[:, 1].max() == 2 ** 31 - 1


def _kernel(case, target_name):
    from edgec.backend.kernels.registry import KERNELS, KernelSpec, TensorType
    ins = tuple(None if a is None else TensorType(str(a.dtype), tuple(a.shape)) for a in case.inputs)
    out = case.reference()[0]
    spec = KernelSpec("qconv", case.attrs, ins, (TensorType(str(out.dtype), tuple(out.shape)),),
                      load_target(target_name))
    return spec, KERNELS["qconv"](spec)


def _asm(case, target_name) -> str:
    from edgec.backend.build import _lower
    from tvm.tirx.build import tir_to_runtime
    spec, func = _kernel(case, target_name)
    tt = spec.target.tvm_target()
    host, dev = _lower(func, "k", tt)
    return tir_to_runtime(host, dev, tt).inspect_source("asm")


def test_paths_chosen():
    """The multiply-high form gathers the high halves with vpermt2d (VNNI) and keeps the
    accumulators in registers (no workspace buffer of accumulators); the width-tap layout packs
    DS-CNN's first conv into one group of 4 taps per kernel row (weights [64, 1, 10, 4])."""
    pw = next(c for c in CASES if c.id == "ppocr_pw16x104")
    asm = _asm(pw, "x86_64")
    assert "vpermt2d" in asm and "vpdpbusd" in asm
    _, func = _kernel(pw, "x86_64")
    text = func.script()
    assert "mulhi" in text and "edgec_mulhi" not in text      # tensorized: the intrinsic's body is inlined
    first = next(c for c in CASES if c.id == "dscnn_first_taps")
    text = _kernel(first, "x86_64")[1].script()
    # VNNI: [64, 1, 10, 4] is the packed layout already, read in place (no per-call copy);
    # AVX2 widens the weights to int16 pairs: [64, 2, 10, 2]
    assert "wpk" not in text and "xq" in text
    assert 'wpk = T.sblock_alloc_buffer((64, 2, 10, 2), "int16")' in _kernel(first, "x86_64-avx2")[1].script()
    # 1x1, stride 1, no padding: the interleave copy is one loop over positions [0, H*W) whose
    # condition folds away once lowered; [H*W, 128) gets the zero point in a loop of its own
    pw64 = next(c for c in CASES if c.id == "dscnn_pw64")
    spec, func = _kernel(pw64, "x86_64")
    assert 'sblock("xq_f0_partition")' in func.script()
    from edgec.backend.build import _lower
    low = _lower(func, "k", spec.target.tvm_target())[0].script()
    copies = [ln for ln in low.splitlines() if ln.strip().startswith("xq[")]
    assert copies and not any("if_then_else" in ln for ln in copies)
    assert any("x_1[" in ln for ln in copies) and any(ln.strip().endswith("= T.uint8(131)") for ln in copies)
    # the int64 forms where a shift is below 33
    for id_ in ("req_n31_n32", "req_scale_gt1"):
        assert "mulhi" not in _kernel(next(c for c in CASES if c.id == id_), "x86_64")[1].script()


def test_aarch64_qconv_compiles():
    """On aarch64 (no px intrinsic) qconv keeps the portable schedule; the shared requantization
    code (the sign taken from the accumulator) still lowers there."""
    first = next(c for c in CASES if c.id == "dscnn_first_taps")
    for name in ("aarch64", "aarch64-dotprod"):
        spec, func = _kernel(first, name)
        from edgec.backend.build import _lower
        host, _ = _lower(func, "k", spec.target.tvm_target())
        assert host is not None
