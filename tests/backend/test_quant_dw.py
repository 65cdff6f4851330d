"""int8 depthwise qconv on the channels-in-lanes kernel (edgec/backend/kernels/quant_dw.py):
bit-exact against the numpy reference ``edgec.ops.quant.qconv`` for the benchmark shapes
(DS-CNN, PP-OCR classifier, MobileNetV2, reduced where the full size only costs build time) and
edge cases (channel counts that are not a multiple of the lanes, fewer channels than lanes,
stride 2 and (2, 1), asymmetric padding, dilation, 1-D, batch 2, no bias, int8 activations and
outputs, per-tensor multipliers, right shifts below 32 / of exactly 32 / above 32 (the three
epilogue forms), row bands, even and odd kernel widths (tap pairs with and without a zero
weight), kernel rows that read the top / bottom padding for some, all or none of the output rows,
fused hard swish with uint8 and int8 activations), on the AVX-512 VNNI host target and on the
x86_64-avx2 target and an AVX-512 VNNI target without VBMI (run on this host)."""
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
    ks = tuple(k) if isinstance(k, tuple) else (k,) * r
    # small: pixels near mid-range, weights in [-2, 2], small biases (accumulators of a few
    # hundred, for multipliers >= 0.5, i.e. right shifts n <= 31)
    x = (RNG.integers(120, 136, size=(batch, c, *hw)) if small
         else RNG.integers(*qrange(dt), size=(batch, c, *hw), endpoint=True)).astype(dt)
    w = RNG.integers(-2, 3, (c, 1) + ks).astype(np.int8) if small else \
        RNG.integers(-128, 128, (c, 1) + ks).astype(np.int8)
    b = RNG.integers(-(30 if small else 3000), 30 if small else 3000, c).astype(np.int32) if bias else None
    n_m = c if per_channel else 1
    mults = [quantize_multiplier(float(s)) for s in np.exp(RNG.uniform(np.log(scale[0]), np.log(scale[1]), n_m))]
    lo, hi = qrange(out)
    st = stride if isinstance(stride, tuple) else (stride,) * r
    attrs = {"strides": st, "pads": pads if pads is not None else tuple((v - 1) // 2 for v in ks) * 2,
             "dilations": (dil,) * r, "group": c, "x_zero_point": int(RNG.integers(*qrange(dt))),
             "multiplier": tuple(m for m, _ in mults), "shift": tuple(s for _, s in mults),
             "out_zero_point": int(RNG.integers(lo, hi + 1)), "qmin": lo, "qmax": hi, "out_dtype": out}
    if zps is not None:          # (x zero point, out zero point, qmax[, qmin]): MobileNetV2's ReLU6 clamp
        attrs.update(x_zero_point=zps[0], out_zero_point=zps[1], qmax=zps[2])
        if len(zps) > 3:
            attrs.update(qmin=zps[3])
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
    _dw("shift_32", 24, (6, 9), 3, scale=(0.26, 0.49), small=True, zps=(128, 128, 255)),   # n = 32 exactly
    _dw("relu_qmin_above_zp", 32, (7, 12), 3, zps=(17, 3, 250, 10)),        # a clamp above the zero point
    # tap pairs: even kernel widths (no zero weight), a 7-wide kernel, dilation with int8 pixels
    _dw("k3x2_even", 20, (7, 11), (3, 2), pads=(1, 0, 1, 1)),
    _dw("k3x7_odd_19c", 19, (5, 30), (3, 7), pads=(1, 3, 1, 3)),
    _dw("i8_5x5_dil2_s2", 20, (11, 23), 5, stride=2, dil=2, pads=(4, 4, 4, 4), dt="int8", out="int8"),
    _dw("i8_k4_s21", 16, (8, 21), (4, 4), stride=(2, 1), pads=(2, 1, 1, 2), dt="int8"),
    _dw("conv1d_k4_s2", 40, (28,), 4, stride=2, pads=(1, 2)),
    # kernel rows in the top / bottom padding: of every output row (1-row input), of some (int8
    # pixels with a negative zero point: the padding pairs)
    _dw("rows_h1_all_pad", 48, (1, 40), 3),
    _dw("rows_i8_pad", 24, (2, 30), 5, dt="int8", zps=(-37, 0, 127)),
    # multipliers of 64-200 (right shifts of 23-25) to an int32 output: with the acc_bound, the
    # pre-shift would be 9-10 (weights beyond int16 once shifted): the plain form
    _dw("big_mult_i32", 16, (5, 7), 3, out="int32", scale=(64, 200), small=True, zps=(128, 0, 2 ** 31 - 1)),
    # a tile of one pixel: resnet50-light's 7x7 depthwise on its 7x7 map without padding (1x1 out)
    _dw("k7_on_7x7_to_1x1", 40, (7, 7), 7, pads=(0, 0, 0, 0), per_channel=False),
]


def _hswish(id_, c, hw, k, stride=1, dt="uint8", hi32=False):
    """A depthwise conv with a fused hard swish (PP-OCR's), attributes as the quantization pass
    makes them (tests/backend/test_quant_hard_swish.py; ``hi32``: first-step right shifts >= 33)."""
    from .test_quant_hard_swish import _act_attrs
    x = RNG.integers(*qrange(dt), size=(1, c, *hw), endpoint=True).astype(dt)
    w = RNG.integers(-127, 128, (c, 1, k, k)).astype(np.int8)
    b = RNG.integers(-2000, 2000, c).astype(np.int32)
    st = stride if isinstance(stride, tuple) else (stride, stride)
    base = {"strides": st, "pads": ((k - 1) // 2,) * 4, "dilations": (1, 1), "group": c,
            "x_zero_point": int(RNG.integers(*qrange(dt)))}
    return Case(id_, "qconv", _act_attrs("qconv", [x, w, b], base, hi32=hi32)[0], [x, w, b])


CASES += [_hswish("hswish_ocr_200c", 200, (2, 96), 5), _hswish("hswish_s21_104c", 104, (3, 24), 5, stride=(2, 1)),
          _hswish("hswish_i8_3x3_19c", 19, (6, 10), 3, dt="int8"),
          _hswish("hswish_i8_hi32", 40, (3, 20), 5, dt="int8", hi32=True)]


def _bounded(case):
    """The case with the ``acc_bound`` the compiler sets (quantize_int8.annotate_acc_bounds: the
    largest |acc| any input gives): right shifts below 33 then run as ``acc << k`` with n + k."""
    x, w, b = case.inputs
    lo, hi = qrange(str(x.dtype))
    bound = np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(axis=1) * max(abs(lo), abs(hi))
    if b is not None:
        bound = bound + np.abs(b.astype(np.int64))
    return Case(case.id + "_bound", case.op, dict(case.attrs, acc_bound=int(bound.max())), case.inputs)


# bounded: the bias in the accumulators' initial value, acc << k from weights shifted by k (k = 0,
# 1, 3 here; 10 for big_mult_i32: the plain form)
CASES += [_bounded(c) for c in CASES if c.id in ("hswish_ocr_200c", "hswish_i8_3x3_19c", "shift_32", "dscnn_64c_25x5",
                                                 "k7_on_7x7_to_1x1", "big_mult_i32")]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("qdw"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    check(case, runner.run(case))
    assert np.unique(case.reference()[0]).size > 8, "the output must vary for exactness to mean something"


BY_ID = {c.id: c for c in CASES}
AVX2_CASES = [BY_ID[i] for i in ("dscnn_64c_25x5", "ocr_5x5_s21_104c", "mb_relu6_zp0_s2", "i8_in_i8_out",
                                 "shift_below_32", "shift_32", "hswish_s21_104c", "hswish_i8_hi32", "k3x2_even",
                                 "i8_5x5_dil2_s2", "rows_i8_pad", "hswish_ocr_200c_bound", "shift_32_bound")]


def _no_vbmi():
    """The x86_64 target without AVX-512 VBMI (a Cascade Lake's AVX-512 VNNI): the kernels'
    transposes on unpack shuffles instead of byte permutes."""
    import dataclasses
    from edgec.targets import load_target
    t = load_target("x86_64")
    tv = dict(t.tvm, mattr=[m for m in t.tvm["mattr"] if m != "+avx512vbmi"])
    return dataclasses.replace(t, name="x86_64-novbmi", tvm=tv,
                               requires_cpu_flags=tuple(f for f in t.requires_cpu_flags if f != "avx512vbmi"))


def test_bit_exact_without_vbmi(tmp_path):
    """The same kernel on an AVX-512 VNNI target without VBMI (the unpack transposes), run on this
    host: the cases that take the 64-byte permutes on x86_64 (16-channel blocks, a 3x3 kernel's
    9-tap weight transpose, channel counts that are not a multiple of 16, int32 outputs)."""
    tgt = _no_vbmi()
    if not tgt.host_can_run():
        pytest.skip("this host cannot run AVX-512 VNNI code")
    ids = ("dscnn_64c_25x5", "mb_3x3_s2_96c", "odd_19c", "hswish_ocr_200c", "i8_in_i8_out", "big_mult_i32",
           "conv1d_s2_k3", "k7_on_7x7_to_1x1", "dscnn_64c_25x5_bound")
    cases = [Case(i + "_novbmi", BY_ID[i].op, BY_ID[i].attrs, BY_ID[i].inputs) for i in ids]
    r = build_cases(cases, tmp_path, target=tgt)
    for c in cases:
        check(c, r.run(c))


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


def _with_target(spec, target):
    import dataclasses
    return dataclasses.replace(spec, target=target)


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
    """Tap pairs on vpdpwssds (VNNI) / vpmaddwd (AVX2) for uint8 and int8 activations, 512-bit vs
    256-bit lanes, the register transposes (punpck), the epilogue's unsigned 32 x 32 -> 64-bit
    products of |acc| (vpmuludq, right shifts >= 33, a rounding tie reachable), signed ones of acc
    (vpmuldq: no tie reachable, or shifts below 33 in int64 lanes); a 5x5 kernel
    takes 15 pair instructions per pixel (5 rows x 3 pairs), not 25, fewer for the rows in the
    padding."""
    from edgec.backend.kernels.quant_dw import dwconv_lanes_fits
    from edgec.backend.kernels.quant_isa import target_isa
    from edgec.targets import load_target
    vnni = target_isa(load_target("x86_64"))
    if vnni is None or vnni.name != "vnni":
        pytest.skip("the x86_64 target has no VNNI ISA here")
    # DS-CNN's 3x3 on uint8: tap quads on vpdpbusd (one per kernel row and pixel), no tap pairs;
    # its multipliers reach no rounding tie (quant.py _hi32_signed_ok): the signed products of
    # acc itself (vpmuldq), no |acc| (vpabsd) and no sign to put back
    from edgec.backend.kernels.quant import _hi32_signed_ok
    assert _hi32_signed_ok(BY_ID["dscnn_64c_25x5"].attrs) and not _hi32_signed_ok(BY_ID["ocr_5x5_200c_2x96"].attrs)
    a = _asm(_spec(BY_ID["dscnn_64c_25x5"], "x86_64"))
    assert "vpdpbusd" in a and "vpdpwssds" not in a and "zmm" in a
    assert "vpmuldq" in a and "vpmuludq" not in a and "vpabsd" not in a
    # the transposes (input, weights, output) and the tap-quad window on VBMI byte permutes, no
    # interleaves and no byte inserts (the 9-tap weight transpose); unpacks without VBMI
    assert "vpermt2b" in a or "vpermi2b" in a
    assert "punpcklbw" not in a and "punpckhbw" not in a and "vpinsrb" not in a
    nv = _asm(_with_target(_spec(BY_ID["dscnn_64c_25x5"], "x86_64"), _no_vbmi()))
    assert "punpcklbw" in nv and "vpermt2b" not in nv and "vpermi2b" not in nv
    # 5 taps a row: pairs; ties reachable: the unsigned products of |acc|
    a5 = _asm(_spec(BY_ID["ocr_5x5_200c_2x96"], "x86_64"))
    assert "vpdpwssds" in a5 and "vpdpbusd" not in a5 and "vpmuludq" in a5 and "vpabsd" in a5
    a2 = _asm(_spec(BY_ID["dscnn_64c_25x5"], "x86_64-avx2"))
    assert "vpmaddwd" in a2 and "vpmuldq" in a2 and "zmm" not in a2 and "vpdpwssd" not in a2
    i8 = _asm(_spec(BY_ID["i8_in_i8_out"], "x86_64"))
    assert "vpdpwssds" in i8 and "vpmulld" not in i8
    # a fused ReLU (qmin >= zero point): products of max(acc, 0), no sign (vpabsd) to put back
    relu = _asm(_spec(BY_ID["mb_relu6_zp0_s2"], "x86_64"))
    assert "vpmuludq" in relu and "vpabsd" not in relu
    # right shifts of 32: the 64-bit sums (vpaddq) of the int64 form
    lo = _asm(_spec(BY_ID["shift_32"], "x86_64"))
    assert "vpmuldq" in lo and "vpmuludq" not in lo and "vpaddq" in lo
    # the same with the compiler's acc_bound: acc << k, the 32-bit form (signed: no tie reachable)
    lo = _asm(_spec(BY_ID["shift_32_bound"], "x86_64"))
    assert "vpmuldq" in lo and "vpmuludq" not in lo and "vpaddq" not in lo
    # 5x5 on tiles of 8 pixels: a kernel row's taps are 3 pairs x 8 = 24 instructions, its
    # padding-row form 3 (pack(zp, zp) times the weight pairs). 3 input rows to 2 output rows at
    # stride 2: row 2 is always inside (taps), rows 0, 1, 3, 4 are inside for one output row (both
    # forms); PP-OCR's 2 input rows: rows 0 and 4 are always padding, 1 and 3 both, 2 taps
    k5 = _asm(_spec(BY_ID["ocr_5x5_s21_104c"], "x86_64"))
    assert k5.count("vpdpwssds") == 24 + 4 * (24 + 3)
    k5 = _asm(_spec(BY_ID["ocr_5x5_200c_2x96"], "x86_64"))
    assert k5.count("vpdpwssds") == 2 * 3 + 2 * (24 + 3) + 24
    # no lanes kernel where the dispatch must not take it: generic/aarch64 (no x86 ISA), groups
    # other than the channel count, an unsupported activation dtype
    assert not dwconv_lanes_fits(None, "uint8", 16, 16, 16, 2)
    from edgec.backend.kernels.quant_isa import isa_by_name
    assert not dwconv_lanes_fits(isa_by_name("sdot"), "uint8", 16, 16, 16, 2)
    assert not dwconv_lanes_fits(target_isa(load_target("x86_64")), "uint8", 4, 16, 16, 2)
    assert not dwconv_lanes_fits(target_isa(load_target("x86_64")), "int32", 16, 16, 16, 2)
    assert dwconv_lanes_fits(target_isa(load_target("x86_64")), "uint8", 16, 16, 16, 1)
