"""int8 depthwise qconv on the width-in-lanes kernel for large planes
(edgec/backend/kernels/quant_dw_rows.py): bit-exact against the numpy reference
``edgec.ops.quant.qconv`` for MobileNetV2's 3x3 shapes scaled down (stride 1 and 2), odd widths
(not a multiple of the 16 / 8 lanes: the overlapping last tile; rows narrower than one tile: the
staging buffer), channel counts 1 and odd, batch 2, no bias, the parallel loop, asymmetric padding, strides (2, 1) /
(1, 2), 5x5 kernels with pads 2, int8 activations and outputs, per-channel and per-tensor
multipliers, right shifts below 32 / of exactly 32 / above 33 (the int64 and multiply-high
epilogues), the ReLU-style clamp (qmin >= output zero point: the unsigned form), a fused hard
swish; on the AVX-512 VNNI host target and on the x86_64-avx2 target (run on this host).

Until quant.py's ``qconv`` dispatches to ``dwconv_rows`` itself, the module fixture routes the
depthwise dispatch of ``qconv`` to it (``_route``) and builds with a private kernel cache (the
cached objects of the other kernels have the same spec keys)."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.quant.qmath import quantize_multiplier, qrange

from ._harness import Case, build_for_target, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(6607)


def _dw(id_, c, hw, k=3, stride=1, pads=None, dt="uint8", out="uint8", bias=True, batch=1,
        scale=(2e-4, 4e-3), per_channel=True, small=False, zps=None, qmin=None):
    ks = (k, k)
    x = (RNG.integers(120, 136, size=(batch, c, *hw)) if small
         else RNG.integers(*qrange(dt), size=(batch, c, *hw), endpoint=True)).astype(dt)
    w = RNG.integers(-2, 3, (c, 1) + ks).astype(np.int8) if small else \
        RNG.integers(-128, 128, (c, 1) + ks).astype(np.int8)
    b = RNG.integers(-(30 if small else 3000), 30 if small else 3000, c).astype(np.int32) if bias else None
    n_m = c if per_channel else 1
    mults = [quantize_multiplier(float(s)) for s in np.exp(RNG.uniform(np.log(scale[0]), np.log(scale[1]), n_m))]
    lo, hi = qrange(out)
    st = stride if isinstance(stride, tuple) else (stride, stride)
    attrs = {"strides": st, "pads": pads if pads is not None else ((k - 1) // 2,) * 4,
             "dilations": (1, 1), "group": c, "x_zero_point": int(RNG.integers(*qrange(dt))),
             "multiplier": tuple(m for m, _ in mults), "shift": tuple(s for _, s in mults),
             "out_zero_point": int(RNG.integers(lo, hi + 1)), "qmin": lo, "qmax": hi, "out_dtype": out}
    if zps is not None:          # (x zero point, out zero point, qmax): MobileNetV2's ReLU6 clamp
        attrs.update(x_zero_point=zps[0], out_zero_point=zps[1], qmax=zps[2])
    if qmin is not None:
        attrs["qmin"] = qmin
    if small and b is not None:  # the zero-point correction folded into the bias, as the pass does
        b = (b - attrs["x_zero_point"] * w.reshape(c, -1).sum(axis=1)).astype(np.int32)
    return Case(id_, "qconv", attrs, [x, w, b])


def _hswish(id_, c, hw, k=3, stride=1, dt="uint8", hi32=False):
    """A fused hard swish, attributes as the quantization pass makes them
    (tests/backend/test_quant_hard_swish.py; ``hi32``: first-step right shifts >= 33)."""
    from .test_quant_hard_swish import _act_attrs
    x = RNG.integers(*qrange(dt), size=(1, c, *hw), endpoint=True).astype(dt)
    w = RNG.integers(-127, 128, (c, 1, k, k)).astype(np.int8)
    b = RNG.integers(-2000, 2000, c).astype(np.int32)
    st = stride if isinstance(stride, tuple) else (stride, stride)
    base = {"strides": st, "pads": ((k - 1) // 2,) * 4, "dilations": (1, 1), "group": c,
            "x_zero_point": int(RNG.integers(*qrange(dt)))}
    return Case(id_, "qconv", _act_attrs("qconv", [x, w, b], base, hi32=hi32)[0], [x, w, b])


CASES = [
    # MobileNetV2 (conv_7 / conv_22 / conv_37 / conv_53, fewer channels and pixels), ReLU6 clamp
    _dw("mb7_s1_relu6", 8, (40, 40), zps=(3, 0, 200)),
    _dw("mb22_s2_relu6", 6, (48, 48), stride=2, zps=(0, 0, 255)),
    _dw("mb37_s1", 11, (28, 28)),
    _dw("mb53_s2_tensor", 9, (28, 28), stride=2, per_channel=False),
    # odd widths / heights, channel counts 1 and odd, exactly one tile, rows narrower than a tile
    _dw("w45_c1", 1, (13, 45)),
    _dw("w35_s2_c3", 3, (9, 35), stride=2),
    _dw("w16_exact", 5, (6, 16)),
    _dw("w17_c7", 7, (5, 17)),
    _dw("w9_stage", 4, (9, 9)),
    _dw("w7_s2_stage", 3, (7, 7), stride=2),
    _dw("h1_rows_pad", 2, (1, 40)),                                 # every kernel row but one is padding
    # geometry: asymmetric pads, strides per axis, batch 2 without bias, 5x5
    _dw("asym_pads", 6, (11, 37), pads=(0, 2, 1, 0)),
    _dw("s21", 5, (12, 33), stride=(2, 1)),
    _dw("s12", 5, (9, 50), stride=(1, 2), pads=(1, 0, 1, 1)),
    _dw("batch2_nobias", 3, (8, 34), batch=2, bias=False),
    _dw("parallel_17c", 17, (40, 44)),                              # >= PARALLEL_MIN_MACS: thread pool, 9 groups
    _dw("k5_s1", 6, (10, 41), k=5),
    _dw("k5_s2", 5, (13, 45), k=5, stride=2),
    # activations / outputs / epilogue forms
    _dw("i8_in_i8_out", 7, (6, 36), dt="int8", out="int8"),
    _dw("i8_k5_s2", 4, (9, 40), k=5, stride=2, dt="int8"),
    _dw("shift_below_32", 6, (10, 30), scale=(0.6, 3.0), small=True, zps=(128, 128, 255)),
    _dw("shift_32", 6, (5, 24), scale=(0.26, 0.49), small=True, zps=(128, 128, 255), per_channel=False),
    _dw("shift_32_33_channels", 7, (9, 30), scale=(0.15, 0.45), small=True, zps=(128, 128, 255)),
    _dw("low_clamp_qmin_above_zp", 5, (7, 33), zps=(9, 5, 230), qmin=20),
    _dw("low_clamp_tensor", 3, (6, 40), stride=2, zps=(60, 0, 255), per_channel=False, scale=(3e-3, 3e-3)),
    _hswish("hswish_s1", 5, (6, 34)),
    _hswish("hswish_hi32_s2", 6, (8, 36), stride=2, hi32=True),
    _hswish("hswish_i8_k5", 3, (5, 21), k=5, dt="int8", hi32=True),
]

AVX2_IDS = ("mb7_s1_relu6", "mb22_s2_relu6", "w35_s2_c3", "w9_stage", "w17_c7", "k5_s1", "i8_in_i8_out",
            "shift_below_32", "shift_32", "shift_32_33_channels", "low_clamp_qmin_above_zp", "hswish_hi32_s2",
            "batch2_nobias")


def _rows_fits(case, isa):
    from edgec.backend.kernels.quant_dw_rows import dwconv_rows_fits
    x, w = case.inputs[0], case.inputs[1]
    a = case.attrs
    out = case.reference()[0]
    return dwconv_rows_fits(isa, str(x.dtype), int(a["group"]), x.shape[1], w.shape[0], x.ndim - 2,
                            w.shape[2], w.shape[3], a["strides"], out.shape[-1], a["dilations"],
                            str(a["out_dtype"]), str(a.get("act", "none")), out.shape[-2],
                            min(31 - int(v) for v in np.atleast_1d(a["shift"])))


def _route(monkeypatch, tmp_path):
    """qconv's depthwise dispatch (``dwconv_lanes_fits`` / ``dwconv_lanes`` in quant.py) sent to
    ``dwconv_rows`` for every case (each one's geometry is supported: asserted per build), with a
    private kernel cache."""
    import edgec.backend.kernels.quant as q
    from edgec.backend.kernels.quant_dw_rows import dwconv_rows
    monkeypatch.setenv("EDGEC_CACHE_DIR", str(tmp_path / "kcache"))
    monkeypatch.setattr(q, "dwconv_lanes_fits", lambda *a, **k: True)
    monkeypatch.setattr(q, "dwconv_lanes", dwconv_rows)


def _build(cases, tmp_path_factory, target_name):
    from edgec.targets import load_target
    target = load_target(target_name)
    d = tmp_path_factory.mktemp("qdwrows_" + target_name.replace("-", "_"))
    with pytest.MonkeyPatch.context() as mp:
        _route(mp, d)
        return build_for_target(cases, tmp_path_factory, target, target_name)


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return _build(CASES, tmp_path_factory, "x86_64")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    check(case, runner.run(case))
    assert np.unique(case.reference()[0]).size > 8, "the output must vary for exactness to mean something"


def test_bit_exact_avx2_target(tmp_path_factory):
    """The same kernel generated for x86_64-avx2 (8 lanes, vpmaddwd pairs), run on this host."""
    by_id = {c.id: c for c in CASES}
    cases = [Case(i + "_avx2", "qconv", by_id[i].attrs, by_id[i].inputs) for i in AVX2_IDS]
    r = _build(cases, tmp_path_factory, "x86_64-avx2")
    for c in cases:
        check(c, r.run(c))


def test_fits():
    """The supported geometry (3x3 / 5x5, strides 1 / 2, dilation 1, uint8/int8 in and out, no
    activation or hard swish, rows of at least L outputs) on the x86 ISAs only."""
    from edgec.backend.kernels.quant_dw_rows import dwconv_rows_fits
    from edgec.backend.kernels.quant_isa import isa_by_name
    vnni, avx2 = isa_by_name("vnni"), isa_by_name("avx2")
    ok = dict(x_dtype="uint8", groups=32, c=32, oc=32, rank=2, kh=3, kw=3, stride=(1, 1), out_w=112)
    assert dwconv_rows_fits(vnni, **ok) and dwconv_rows_fits(avx2, **ok)
    assert dwconv_rows_fits(vnni, **dict(ok, kh=5, kw=5, stride=(2, 2), out_w=16))
    assert not dwconv_rows_fits(None, **ok)
    assert not dwconv_rows_fits(isa_by_name("sdot"), **ok)
    assert not dwconv_rows_fits(vnni, **dict(ok, groups=1))                 # not depthwise
    assert not dwconv_rows_fits(vnni, **dict(ok, oc=64))                    # channel multiplier 2
    assert not dwconv_rows_fits(vnni, **dict(ok, rank=1))
    assert not dwconv_rows_fits(vnni, **dict(ok, kh=3, kw=5))
    assert not dwconv_rows_fits(vnni, **dict(ok, kh=7, kw=7))
    assert not dwconv_rows_fits(vnni, **dict(ok, stride=(3, 3)))
    assert not dwconv_rows_fits(vnni, **ok, dilation=(2, 2))
    assert not dwconv_rows_fits(vnni, **ok, out_dtype="int32")
    assert not dwconv_rows_fits(vnni, **ok, act="relu")
    assert not dwconv_rows_fits(vnni, **dict(ok, x_dtype="int32"))
    assert not dwconv_rows_fits(vnni, **dict(ok, out_w=14))                  # narrow planes: dwconv_lanes
    assert dwconv_rows_fits(vnni, **dict(ok, out_w=14, stride=(2, 2)))       # 28 input columns
    assert dwconv_rows_fits(avx2, **dict(ok, out_w=7))                        # AVX2: every width
    assert not dwconv_rows_fits(vnni, **ok, out_h=3)                         # PP-OCR's 2-3 row maps
    assert not dwconv_rows_fits(vnni, **dict(ok, stride=(2, 1)), out_h=3)
    assert dwconv_rows_fits(vnni, **dict(ok, stride=(2, 1)), out_h=6)        # 12 input rows
    assert dwconv_rows_fits(avx2, **ok, min_right_shift=32)
    assert not dwconv_rows_fits(avx2, **ok, min_right_shift=31)              # 64-bit shifts on AVX2
    assert dwconv_rows_fits(vnni, **ok, min_right_shift=20)


def test_fits_cases():
    """What the dispatch rule takes among the cases: MobileNetV2's planes on both ISAs; on VNNI not
    the narrow (9 columns) or 1-row planes; on AVX2 not right shifts below 32."""
    from edgec.backend.kernels.quant_isa import isa_by_name
    by_id = {c.id: c for c in CASES}
    vnni, avx2 = isa_by_name("vnni"), isa_by_name("avx2")
    for i in ("mb7_s1_relu6", "mb22_s2_relu6", "mb37_s1", "mb53_s2_tensor"):
        assert _rows_fits(by_id[i], vnni) and _rows_fits(by_id[i], avx2), i
    assert not _rows_fits(by_id["w9_stage"], vnni) and _rows_fits(by_id["w9_stage"], avx2)
    assert not _rows_fits(by_id["h1_rows_pad"], vnni) and not _rows_fits(by_id["h1_rows_pad"], avx2)
    assert _rows_fits(by_id["shift_below_32"], vnni) and not _rows_fits(by_id["shift_below_32"], avx2)
    assert _rows_fits(by_id["shift_32_33_channels"], avx2)


def _asm(case, target_name) -> str:
    import edgec.backend.kernels.quant as q
    from edgec.backend.build import _lower
    from edgec.backend.kernels.quant_dw_rows import dwconv_rows
    from edgec.backend.kernels.registry import KERNELS, KernelSpec, TensorType
    from edgec.targets import load_target
    from tvm.tirx.build import tir_to_runtime
    ins = tuple(None if a is None else TensorType(str(a.dtype), tuple(a.shape)) for a in case.inputs)
    out = case.reference()[0]
    spec = KernelSpec("qconv", case.attrs, ins, (TensorType(str(out.dtype), tuple(out.shape)),),
                      load_target(target_name))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(q, "dwconv_lanes_fits", lambda *a, **k: True)
        mp.setattr(q, "dwconv_lanes", dwconv_rows)
        tt = spec.target.tvm_target()
        host, dev = _lower(KERNELS["qconv"](spec), "k", tt)
    return tir_to_runtime(host, dev, tt).inspect_source("asm")


def test_instructions():
    """VNNI with uint8 pixels: quad words built by byte shuffles, 4 taps per vpdpbusd (3x3: 3 per
    tile of 16 outputs, not 9); int8 pixels: tap pairs on vpdpwssds; AVX2: pairs on vpmaddwd (no
    zmm); the multiply-high epilogue on vpmuldq (signed: no rounding tie reachable); no transposes
    (punpck)."""
    from edgec.backend.kernels.quant_isa import target_isa
    from edgec.targets import load_target
    by_id = {c.id: c for c in CASES}
    isa = target_isa(load_target("x86_64"))
    if isa is None or isa.name != "vnni":
        pytest.skip("the x86_64 target has no VNNI ISA here")
    a = _asm(by_id["w16_exact"], "x86_64")       # 6 rows of one tile (LLVM may unroll the rows)
    # (VBMI, the x86_64 target: one more vpdpbusd, of zeros, hides the vpermb index from LLVM)
    n = a.count("vpdpbusd") - ("vpermb" in a)
    # its multipliers reach no rounding tie (quant.py _hi32_signed_ok): the signed multiply-high
    # (the byte gather: a dword permute + vpshufb, or one VBMI byte permute on the x86_64 target)
    assert n in (3, 18) and "vperm" in a and ("vpshufb" in a or "vpermb" in a or "vpermt2b" in a)
    assert "vpmuldq" in a and "vpmuludq" not in a and "zmm" in a
    assert "punpck" not in a and "vpdpwssd" not in a
    i8 = _asm(by_id["i8_in_i8_out"], "x86_64")
    assert "vpdpwssds" in i8 and "vpdpbusd" not in i8
    a2 = _asm(by_id["mb37_s1"], "x86_64-avx2")
    assert "vpmaddwd" in a2 and "vpmuldq" in a2 and "zmm" not in a2 and "vpdpwssd" not in a2
