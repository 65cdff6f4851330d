"""int8 depthwise qconv on the channels-in-lanes kernel (edgec/backend/kernels/quant_dw.py):
bit-exact against the numpy reference ``edgec.ops.quant.qconv`` for the benchmark shapes
(DS-CNN, PP-OCR classifier, MobileNetV2, reduced where the full size only costs build time) and
edge cases (channel counts that are not a multiple of the lanes, fewer channels than lanes,
stride 2 and (2, 1), asymmetric padding, dilation, 1-D, batch 2, no bias, int8 activations and
outputs, per-tensor multipliers, right shifts below 32 that take the int64 epilogue, row bands),
on the AVX-512 VNNI host target and on the x86_64-avx2 target (run on this host)."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.quant.qmath import quantize_multiplier, qrange

from ._harness import Case, build_cases, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(6606)


def _dw(id_, c, hw, k, stride=1, pads=None, dil=1, dt="uint8", out="uint8", bias=True, batch=1,
        scale=(2e-4, 4e-3), per_channel=True, small=False, zps=None):
    r = len(hw)
    # small: pixels near mid-range, weights in [-2, 2], small biases (accumulators of a few
    # hundred, for multipliers >= 0.5, i.e. right shifts n <= 31)
    x = (RNG.integers(120, 136, size=(batch, c, *hw)) if small
         else RNG.integers(*qrange(dt), size=(batch, c, *hw), endpoint=True)).astype(dt)
    w = RNG.integers(-2, 3, (c, 1) + (k,) * r).astype(np.int8) if small else \
        RNG.integers(-127, 128, (c, 1) + (k,) * r).astype(np.int8)
    b = RNG.integers(-(30 if small else 3000), 30 if small else 3000, c).astype(np.int32) if bias else None
    n_m = c if per_channel else 1
    mults = [quantize_multiplier(float(s)) for s in np.exp(RNG.uniform(np.log(scale[0]), np.log(scale[1]), n_m))]
    lo, hi = qrange(out)
    st = stride if isinstance(stride, tuple) else (stride,) * r
    attrs = {"strides": st, "pads": pads if pads is not None else ((k - 1) // 2,) * (2 * r),
             "dilations": (dil,) * r, "group": c, "x_zero_point": int(RNG.integers(*qrange(dt))),
             "multiplier": tuple(m for m, _ in mults), "shift": tuple(s for _, s in mults),
             "out_zero_point": int(RNG.integers(lo, hi + 1)), "qmin": lo, "qmax": hi, "out_dtype": out}
    if zps is not None:          # (x zero point, out zero point, qmax): MobileNetV2's ReLU6 clamp
        attrs.update(x_zero_point=zps[0], out_zero_point=zps[1], qmax=zps[2])
    if small and b is not None:  # the zero-point correction folded into the bias, as the pass does
        b = (b - attrs["x_zero_point"] * w.reshape(c, -1).sum(axis=1)).astype(np.int32)
    return Case(id_, "qconv", attrs, [x, w, b])


CASES = [
    _dw("dscnn_64c_25x5", 64, (25, 5), 3),                                   # DS-CNN, 5-wide rows
    _dw("ocr_5x5_200c_2x96", 200, (2, 96), 5),                               # PP-OCR Conv@43/48
    _dw("ocr_5x5_88c_3x96", 88, (3, 96), 5),                                 # PP-OCR Conv@18/23
    _dw("ocr_5x5_s21_104c", 104, (3, 96), 5, stride=(2, 1)),                 # PP-OCR Conv@38
    _dw("ocr_3x3_s21_24c", 24, (12, 96), 3, stride=(2, 1)),                  # PP-OCR Conv@7 (conv_direct)
    _dw("mb_3x3_s2_96c", 96, (28, 28), 3, stride=2),                         # MobileNetV2 conv_22 (smaller)
    _dw("mb_3x3_s1_32c_bands", 32, (56, 56), 3),                             # row bands (56 rows > one band)
    _dw("mb_relu6_zp0_s2", 32, (20, 20), 3, stride=2, zps=(0, 0, 180)),       # zero points 0, clamp [0, 180]
    _dw("mb_relu6_zp0_s1", 48, (9, 9), 3, zps=(0, 0, 255), per_channel=False),
    _dw("odd_19c", 19, (10, 14), 3, pads=(0, 0, 0, 0)),                      # 16 + 3 channels, no padding
    _dw("few_5c_asym", 5, (11, 12), 3, pads=(0, 1, 2, 2)),                   # fewer channels than lanes
    _dw("odd_17c_s2", 17, (13, 17), 3, stride=2, pads=(0, 1, 1, 0)),
    _dw("dil2_5x5", 12, (15, 20), 5, dil=2, pads=(4, 4, 4, 4)),
    _dw("conv1d_k5", 40, (37,), 5, pads=(2, 1)),                             # 1-D
    _dw("batch2_nobias", 24, (7, 9), 3, batch=2, bias=False),
    _dw("batch2_parallel", 32, (24, 24), 3, batch=2),                        # parallel over (batch, block)
    _dw("conv1d_s2_k3", 32, (41,), 3, stride=2, pads=(1, 0)),
    _dw("i8_in_i8_out", 21, (7, 7), 3, dt="int8", out="int8"),               # int8 activations (no pairs)
    _dw("u8_in_i8_out_tensor", 33, (6, 10), 3, out="int8", per_channel=False),   # one multiplier
    _dw("shift_below_32", 20, (5, 6), 3, scale=(0.6, 3.0), small=True, zps=(128, 128, 255)),  # n <= 31
    _dw("shift_below_32_tensor", 8, (4, 4), 3, scale=(1.5, 1.5), per_channel=False, small=True,
        zps=(128, 100, 255)),
]


def _hswish(id_, c, hw, k, stride=1):
    """A depthwise conv with a fused hard swish (PP-OCR's), attributes as the quantization pass
    makes them (tests/backend/test_quant_hard_swish.py)."""
    from .test_quant_hard_swish import _act_attrs
    x = RNG.integers(0, 256, size=(1, c, *hw)).astype(np.uint8)
    w = RNG.integers(-127, 128, (c, 1, k, k)).astype(np.int8)
    b = RNG.integers(-2000, 2000, c).astype(np.int32)
    st = stride if isinstance(stride, tuple) else (stride, stride)
    base = {"strides": st, "pads": ((k - 1) // 2,) * 4, "dilations": (1, 1), "group": c,
            "x_zero_point": int(RNG.integers(0, 256))}
    return Case(id_, "qconv", _act_attrs("qconv", [x, w, b], base)[0], [x, w, b])


CASES += [_hswish("hswish_ocr_200c", 200, (2, 96), 5), _hswish("hswish_s21_104c", 104, (3, 24), 5, stride=(2, 1))]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("qdw"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    check(case, runner.run(case))
    assert np.unique(case.reference()[0]).size > 8, "the output must vary for exactness to mean something"


BY_ID = {c.id: c for c in CASES}
AVX2_CASES = [BY_ID[i] for i in ("dscnn_64c_25x5", "ocr_5x5_s21_104c", "mb_relu6_zp0_s2", "i8_in_i8_out",
                                 "shift_below_32", "hswish_s21_104c")]


def test_bit_exact_avx2_target(tmp_path):
    """The same kernel generated for x86_64-avx2 (8 lanes, vpmaddwd taps), run on this host."""
    from edgec.targets import load_target
    cases = [Case(c.id + "_avx2", c.op, c.attrs, c.inputs) for c in AVX2_CASES]
    r = build_cases(cases, tmp_path, target=load_target("x86_64-avx2"))
    for c in cases:
        check(c, r.run(c))


def _spec(case, target_name):
    from edgec.backend.kernels.registry import KernelSpec, TensorType
    from edgec.targets import load_target
    ins = tuple(None if a is None else TensorType(str(a.dtype), tuple(a.shape)) for a in case.inputs)
    out = case.reference()[0]
    return KernelSpec("qconv", case.attrs, ins, (TensorType(str(out.dtype), tuple(out.shape)),),
                      load_target(target_name))


def _asm(spec) -> str:
    from edgec.backend.build import _lower
    from edgec.backend.kernels.registry import KERNELS
    from tvm.tirx.build import tir_to_runtime
    tt = spec.target.tvm_target()
    host, dev = _lower(KERNELS["qconv"](spec), "k", tt)
    return tir_to_runtime(host, dev, tt).inspect_source("asm")


def _fits(case, isa_name="x86_64"):
    from edgec.backend.kernels.quant_dw import dwconv_lanes_fits
    from edgec.backend.kernels.quant_isa import target_isa
    from edgec.targets import load_target
    x, w = case.inputs[0], case.inputs[1]
    a = case.attrs
    return dwconv_lanes_fits(target_isa(load_target(isa_name)), str(x.dtype), int(a["group"]), x.shape[1],
                             w.shape[0], x.ndim - 2, w.shape[-1], case.reference()[0].shape[-1],
                             str(a.get("act", "none")))


def test_dispatch():
    """Every case but PP-OCR's 3x3 on 24 channels and 96-wide rows runs on the lanes kernel on
    the VNNI target (so the bit-exact tests above test it); the AVX2 cases too."""
    from edgec.backend.kernels.quant_isa import target_isa
    from edgec.targets import load_target
    isa = target_isa(load_target("x86_64"))
    if isa is None or isa.name != "vnni":
        pytest.skip("the x86_64 target has no VNNI ISA here")
    assert [c.id for c in CASES if not _fits(c)] == ["ocr_3x3_s21_24c"]
    assert all(_fits(c, "x86_64-avx2") for c in AVX2_CASES)


def test_path_and_instructions():
    """uint8 taps on vpdpwssds (VNNI) / vpmaddwd (AVX2), 512-bit vs 256-bit lanes, the register
    transposes (punpck) and the 32 x 32 -> 64-bit products (vpmuldq) of the epilogue; int8
    activations multiply in int32 (vpmulld)."""
    from edgec.backend.kernels.quant_dw import dwconv_lanes_fits
    from edgec.backend.kernels.quant_isa import target_isa
    from edgec.targets import load_target
    vnni = target_isa(load_target("x86_64"))
    if vnni is None or vnni.name != "vnni":
        pytest.skip("the x86_64 target has no VNNI ISA here")
    a = _asm(_spec(BY_ID["dscnn_64c_25x5"], "x86_64"))
    assert "vpdpwssds" in a and "vpmuldq" in a and "punpcklbw" in a and "zmm" in a
    a2 = _asm(_spec(BY_ID["dscnn_64c_25x5"], "x86_64-avx2"))
    assert "vpmaddwd" in a2 and "vpmuldq" in a2 and "zmm" not in a2 and "vpdpwssd" not in a2
    i8 = _asm(_spec(BY_ID["i8_in_i8_out"], "x86_64"))
    assert "vpmulld" in i8 and "vpdpwssds" not in i8
    # no lanes kernel where the dispatch must not take it: generic/aarch64 (no x86 ISA), groups
    # other than the channel count, an unsupported activation dtype
    assert not dwconv_lanes_fits(None, "uint8", 16, 16, 16, 2)
    from edgec.backend.kernels.quant_isa import isa_by_name
    assert not dwconv_lanes_fits(isa_by_name("sdot"), "uint8", 16, 16, 16, 2)
    assert not dwconv_lanes_fits(target_isa(load_target("x86_64")), "uint8", 4, 16, 16, 2)
    assert not dwconv_lanes_fits(target_isa(load_target("x86_64")), "int32", 16, 16, 16, 2)
    assert dwconv_lanes_fits(target_isa(load_target("x86_64")), "uint8", 16, 16, 16, 1)
