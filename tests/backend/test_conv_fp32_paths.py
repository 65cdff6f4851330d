"""The float32 conv / global-pool paths of the performance work (edgec/backend/kernels/nn.py,
_nn_sched.py), against the numpy references:

- 1x1 convolutions run as a GEMM over an image's flattened pixels (rows too short to fill
  vectors: DS-CNN's 25x5, MobileNetV2's 14x14 and 7x7), with the small-image tile (all the
  pixels in one row of half-width vectors) and the GEMM's own tile choice; batch > 1, no bias;
- float depthwise convolutions with the one-channel, several-rows tile (row counts that do and
  do not divide the output, stride 2, a 5x5 kernel);
- float depthwise convolutions over a channel's flattened pixels (``nn._conv_flat_depthwise``:
  rows of at most half a vector, DS-CNN's 25x5 and 7x7; pixels that are and are not whole
  vectors, asymmetric padding, a 5x5 and a 1x3 kernel, batch 2), and the same shapes on the row
  tile with the flat form switched off;
- float dense convolutions on such short rows as im2col + ``gemm_overlap_last``
  (``nn._conv_im2col_overlap``: DS-CNN's first conv 10x4 stride 2, a dilated one, batch 2);
- float dense stride-1 convolutions over flattened pixels in whole-row blocks
  (``nn._conv_flat_dense``: rows of 28, 24 and 20 columns, a 5x5 kernel with asymmetric
  padding, a 1x3 kernel, one input channel, batch 2);
- strided 1x1 convolutions as a subsampling copy + ``gemm_nn`` (``nn._conv_strided_pointwise``:
  stride 2 and (3, 2), batch 2, no bias, a residual; where it is not taken);
- ``gemm_nn`` sweeping pixel columns in chunks (``_nn_sched._gemm_column_chunk``: outputs past
  ``GEMM_CHUNK_MIN_OUT_BYTES``, resnet50's 64 -> 256 1x1 on 56x56 with a residual, forced chunks
  on small shapes with and without a residual);
- strided dense convolutions over the stride phases of the input, flattened, in whole-row
  blocks of the output (``nn._conv_flat_dense_strided``: resnet50's 3x3 stride 2 onto 28 columns,
  an odd input size, stride (2, 1), a 5x5 kernel with asymmetric padding, stride 3 without
  padding, batch 2, no bias; where it is not taken);
- the optional ``residual`` input (a fused add) on every float conv path;
- global average / max pools whose row length is not a multiple of any vector width.

Each case also checks that the kernel generator takes the path it is meant to cover, so a
change of the selection rules cannot silently turn these into tests of another path.
"""
from __future__ import annotations

import numpy as np
import pytest
from tvm import te

from edgec.backend.kernels import _nn_sched
from edgec.backend.kernels import nn as nnk
from edgec.backend.kernels.registry import KernelSpec, TensorType

from ._harness import Case, build_cases, check, host_target, rand

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(20261127)


def _conv(id_, xs, ws, strides=(1, 1), pads=(0, 0, 0, 0), group=1, bias=True, dilations=(1, 1)):
    x = rand(RNG, *xs)
    w = rand(RNG, *ws)
    b = rand(RNG, ws[0]) if bias else None
    tol = 2e-6 * np.sqrt(int(np.prod(ws[1:])))
    return Case(id_, "conv", dict(strides=strides, pads=pads, dilations=dilations, group=group), [x, w, b],
                rtol=tol, atol=tol)


# (case, expected path): "small" = the small-image GEMM tile, "gemm" = GEMM with its own tile,
# "direct" = the direct convolution, ("dw", lanes, rows) = the depthwise tile, ("flat", lanes) =
# the flattened-pixel depthwise form, "im2col_overlap" = im2col + gemm_overlap_last
CASES = [
    (_conv("pw_25x5", (1, 64, 25, 5), (64, 64, 1, 1)), "gemm"),
    (_conv("pw_14x14", (1, 24, 14, 14), (40, 24, 1, 1)), "gemm"),
    (_conv("pw_7x7", (1, 40, 7, 7), (30, 40, 1, 1)), "small"),
    (_conv("pw_6x6_batch_nobias", (2, 17, 6, 6), (5, 17, 1, 1), bias=False), "small"),
    (_conv("pw_3x9_batch", (2, 8, 3, 9), (7, 8, 1, 1)), "small"),
    (_conv("pw_wide_rows", (1, 8, 4, 32), (6, 8, 1, 1)), "direct"),
    (_conv("dw_7x7", (1, 10, 7, 7), (10, 1, 3, 3), pads=(1, 1, 1, 1), group=10), ("flat", 16)),
    (_conv("dw_25x5", (1, 6, 25, 5), (6, 1, 3, 3), pads=(1, 1, 1, 1), group=6), ("flat", 16)),
    (_conv("flat_8x4_whole_vectors", (1, 3, 8, 4), (3, 1, 3, 3), pads=(1, 1, 1, 1), group=3), ("flat", 16)),
    (_conv("flat_9x8_batch_nobias", (2, 5, 9, 8), (5, 1, 3, 3), pads=(1, 1, 1, 1), group=5, bias=False),
     ("flat", 16)),
    (_conv("flat_asym_pads", (1, 4, 11, 6), (4, 1, 3, 3), pads=(2, 0, 0, 2), group=4), ("flat", 16)),
    (_conv("flat_5x5_12x6", (1, 3, 12, 6), (3, 1, 5, 5), pads=(2, 2, 2, 2), group=3), ("flat", 16)),
    (_conv("flat_1x3_7x7", (1, 3, 7, 7), (3, 1, 1, 3), pads=(0, 1, 0, 1), group=3), ("flat", 16)),
    (_conv("dw_s2_25x5", (1, 6, 50, 10), (6, 1, 3, 3), strides=(2, 2), pads=(1, 1, 1, 1), group=6), ("dw", 8, 5)),
    (_conv("i2c_dscnn_first", (1, 1, 49, 10), (64, 1, 10, 4), strides=(2, 2), pads=(4, 1, 5, 2)),
     "im2col_overlap"),
    (_conv("i2c_3x3_25x5_batch_nobias", (2, 6, 25, 5), (16, 6, 3, 3), pads=(1, 1, 1, 1), bias=False),
     "im2col_overlap"),
    (_conv("i2c_dilated_s12", (1, 3, 20, 12), (8, 3, 3, 3), strides=(1, 2), pads=(2, 2, 2, 2), dilations=(2, 2)),
     "im2col_overlap"),
    (_conv("fd_28x28", (1, 5, 8, 28), (6, 5, 3, 3), pads=(1, 1, 1, 1)), ("flat_dense", 7, 3)),
    (_conv("fd_28x28_batch_nobias", (2, 3, 12, 28), (4, 3, 3, 3), pads=(1, 1, 1, 1), bias=False),
     ("flat_dense", 7, 2)),
    (_conv("fd_24_5x5_asym", (1, 4, 6, 24), (8, 4, 5, 5), pads=(3, 1, 1, 3)), ("flat_dense", 3, 8)),
    (_conv("fd_20_1x3", (1, 3, 4, 20), (12, 3, 1, 3), pads=(0, 2, 0, 0)), ("flat_dense", 5, 4)),
    (_conv("fd_28_one_channel", (1, 1, 4, 28), (6, 1, 3, 3), pads=(1, 1, 1, 1)), ("flat_dense", 7, 3)),
    (_conv("spw_s2", (1, 24, 32, 32), (40, 24, 1, 1), strides=(2, 2)), "strided_pw"),
    (_conv("spw_s32_batch_nobias", (2, 8, 48, 31), (12, 8, 1, 1), strides=(3, 2), bias=False), "strided_pw"),
    (_conv("fds_s2_28", (1, 4, 56, 56), (6, 4, 3, 3), strides=(2, 2), pads=(1, 1, 1, 1)), ("flat_dense_s", 7, 3)),
    (_conv("fds_odd_batch_nobias", (2, 3, 55, 55), (4, 3, 3, 3), strides=(2, 2), pads=(1, 1, 1, 1), bias=False),
     ("flat_dense_s", 7, 2)),
    (_conv("fds_s21", (1, 3, 16, 28), (6, 3, 3, 3), strides=(2, 1), pads=(1, 1, 1, 1)), ("flat_dense_s", 7, 3)),
    (_conv("fds_5x5_asym", (1, 3, 48, 48), (8, 3, 5, 5), strides=(2, 2), pads=(2, 2, 1, 1)), ("flat_dense_s", 3, 8)),
    (_conv("fds_parallel", (1, 32, 56, 56), (32, 32, 3, 3), strides=(2, 2), pads=(1, 1, 1, 1)),
     ("flat_dense_s", 7, 2)),       # >= PARALLEL_MIN_MACS: parallel copy and tiles
    (_conv("fds_s3_nopad", (1, 2, 60, 60), (8, 2, 3, 3), strides=(3, 3)), ("flat_dense_s", 5, 4)),
    (_conv("dw_11x9_overhang", (1, 5, 11, 9), (5, 1, 3, 3), pads=(1, 1, 1, 1), group=5, bias=False),
     ("dw", 16, 4)),
    (_conv("dw_s2", (1, 7, 17, 15), (7, 1, 3, 3), strides=(2, 2), pads=(1, 1, 1, 1), group=7), ("dw", 8, 4)),
    (_conv("dw_5x5_w40", (1, 4, 16, 40), (4, 1, 5, 5), pads=(2, 2, 2, 2), group=4), ("dw", 8, 8)),
]
POOLS = [
    Case("gavg_125", "global_avg_pool", {}, [rand(RNG, 1, 64, 25, 5)], rtol=1e-6, atol=1e-6),
    Case("gavg_49_batch", "global_avg_pool", {}, [rand(RNG, 2, 9, 7, 7)], rtol=1e-6, atol=1e-6),
    Case("gmax_25", "global_max_pool", {}, [rand(RNG, 2, 3, 5, 5)]),
    Case("gmax_3", "global_max_pool", {}, [rand(RNG, 1, 4, 3)]),
]


def _spec(case: Case) -> KernelSpec:
    x, w, b = case.inputs
    d = case.attrs["dilations"]
    oh = [(x.shape[2 + i] + case.attrs["pads"][i] + case.attrs["pads"][2 + i] - (w.shape[2 + i] - 1) * d[i] - 1)
          // case.attrs["strides"][i] + 1 for i in range(2)]
    ins = [TensorType("float32", tuple(x.shape)), TensorType("float32", tuple(w.shape))]
    ins.append(TensorType("float32", tuple(b.shape)) if b is not None else None)
    return KernelSpec("conv", dict(case.attrs), tuple(ins),
                      (TensorType("float32", (x.shape[0], w.shape[0], *oh)),), host_target())


def _path(case: Case):
    spec = _spec(case)
    x = te.placeholder(case.inputs[0].shape, "float32", name="x")
    w = te.placeholder(case.inputs[1].shape, "float32", name="w")
    plan = nnk._pointwise_gemm(spec, x, w)
    if plan is False:
        return "gemm"
    if plan is not None:
        return "small"
    if nnk._strided_pointwise_plan(spec, x, w):
        return "strided_pw"
    flat = nnk._flat_depthwise_plan(spec, x, w)
    if flat is not None:
        return ("flat", flat)
    if nnk._im2col_tail_plan(spec, x, w) is not None:
        return "im2col_tail"
    if nnk._im2col_overlap_plan(spec, x, w) is not None:
        return "im2col_overlap"
    dense = nnk._flat_dense_plan(spec, x, w)
    if dense is not None:
        return ("flat_dense", dense[1], dense[2])
    dense = nnk._flat_dense_strided_plan(spec, x, w)
    if dense is not None:
        return ("flat_dense_s", dense[1], dense[2])
    prob = nnk.conv_problem(spec, x, w)
    if prob.groups > 1:
        tile = _nn_sched._choose_conv_tile(_nn_sched._subsample_pointwise(prob), spec.target)
        return ("dw", tile.lanes, tile.nh) if tile.mr == 1 and tile.nw == 1 else "other"
    return "direct"


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    if host_target().vector_bits != 512:
        pytest.fail("these cases pin the paths chosen for the AVX-512 host target")
    return build_cases([c for c, _ in CASES] + POOLS, tmp_path_factory.mktemp("conv_fp32"))


@pytest.mark.parametrize("case,path", CASES, ids=lambda v: v.id if isinstance(v, Case) else "")
def test_conv_path_matches_reference(runner, case, path):
    assert _path(case) == path
    check(case, runner.run(case))


@pytest.mark.parametrize("case", POOLS, ids=lambda c: c.id)
def test_global_pool_with_tail_matches_reference(runner, case):
    check(case, runner.run(case))


def test_small_image_tile_shape():
    """49 pixels: 7 vectors of 8 lanes, 3 output channels (21 accumulators), padded B copy."""
    case = CASES[2][0]
    x = te.placeholder(case.inputs[0].shape, "float32", name="x")
    w = te.placeholder(case.inputs[1].shape, "float32", name="w")
    assert nnk._pointwise_gemm(_spec(case), x, w) == _nn_sched.GemmTile(8, 7, 3, True)


def test_param_shapes_view_checks_size():
    x = te.placeholder((2, 6), "float32", name="x")
    y = te.compute((2, 6), lambda i, j: x[i, j] * 2, name="y")
    func = te.create_prim_func([x, y])
    viewed = _nn_sched.with_param_shapes(func, {0: (2, 2, 3), 1: (2, 3, 2)})
    assert [list(int(d) for d in p.shape) for p in viewed.params] == [[2, 2, 3], [2, 3, 2]]
    with pytest.raises(ValueError, match="differ in size"):
        _nn_sched.with_param_shapes(func, {0: (2, 7)})


def _compile_run(spec: KernelSpec, inputs):
    """Build one conv kernel in this process (no kernel cache: the module flags a test sets are
    what the generator sees) and run it on ``inputs``."""
    import tvm
    from edgec.backend.kernels.registry import KERNELS
    func = KERNELS["conv"](spec).with_attr("global_symbol", "k")
    lib = tvm.compile(tvm.IRModule({"k": func}), target=spec.target.tvm_target())
    got = tvm.runtime.tensor(np.zeros(spec.outputs[0].shape, "float32"))
    lib["k"](*(tvm.runtime.tensor(a) for a in inputs if a is not None), got)
    return got.numpy()


@pytest.mark.parametrize("xs,ws,pads,lo,hi", [
    ((1, 16, 7, 7), (24, 16, 1, 1), (0, 0, 0, 0), 0.0, 6.0),      # small-image GEMM tile
    ((1, 16, 14, 14), (8, 16, 1, 1), (0, 0, 0, 0), 0.0, None),    # GEMM, relu only
    ((1, 6, 9, 11), (5, 6, 3, 3), (1, 1, 1, 1), -0.5, 0.5),       # direct convolution
    ((1, 6, 9, 11), (6, 1, 3, 3), (1, 1, 1, 1), None, 1.0),       # depthwise
    ((1, 6, 25, 5), (6, 1, 3, 3), (1, 1, 1, 1), 0.0, 0.5),        # flat depthwise
    ((1, 6, 25, 5), (16, 6, 3, 3), (1, 1, 1, 1), 0.0, None),      # im2col + overlap GEMM
])
def test_fused_clamp_epilogue(xs, ws, pads, lo, hi):
    """attrs act_min / act_max clamp the biased sums (a relu or clip fused into the conv)."""
    group = xs[1] if ws[1] == 1 and xs[1] > 1 else 1
    case = _conv("act", xs, ws, pads=pads, group=group)
    spec = _spec(case)
    attrs = dict(spec.attrs)
    if lo is not None:
        attrs["act_min"] = lo
    if hi is not None:
        attrs["act_max"] = hi
    spec = KernelSpec(spec.op, attrs, spec.inputs, spec.outputs, spec.target)
    got = _compile_run(spec, case.inputs)
    want = np.clip(case.reference()[0], lo, hi)
    np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)
    assert (lo is None or got.min() >= lo) and (hi is None or got.max() <= hi)


@pytest.mark.parametrize("case", [c for c, _ in CASES if c.id in ("dw_7x7", "dw_25x5", "i2c_dscnn_first",
                                                                   "i2c_dilated_s12", "fd_28x28")], ids=lambda c: c.id)
def test_forms_switched_off_take_the_direct_convolution(case, monkeypatch):
    """``FLAT_DEPTHWISE`` / ``IM2COL_OVERLAP_GEMM`` / ``FLAT_DENSE`` off: the same shapes run on the
    direct convolution's tiles (the row tile for DS-CNN's 25x5 depthwise) and still match."""
    monkeypatch.setattr(nnk, "FLAT_DEPTHWISE", False)
    monkeypatch.setattr(nnk, "IM2COL_OVERLAP_GEMM", False)
    monkeypatch.setattr(nnk, "FLAT_DENSE", False)
    path = _path(case)
    assert path == "direct" or path[0] == "dw", path
    check(case, [_compile_run(_spec(case), case.inputs)])


def _plan(fn, xs, ws, target=None, **conv):
    """``fn(spec, x, w)`` (one of nn.py's path plans) for a conv of input ``xs`` and weights ``ws``
    (``conv``: _conv's strides, pads, dilations, group), on ``target`` (default: the host)."""
    spec = _spec(_conv("p", xs, ws, **conv))
    if target is not None:
        spec = KernelSpec(spec.op, spec.attrs, spec.inputs, spec.outputs, target)
    return fn(spec, te.placeholder(xs, "float32", name="x"), te.placeholder(ws, "float32", name="w"))


def test_flat_depthwise_not_chosen_elsewhere():
    def plan(xs, ws, pads, strides=(1, 1), target=None):
        return _plan(nnk._flat_depthwise_plan, xs, ws, target, strides=strides, pads=pads, group=xs[1])
    from edgec.targets import load_target
    assert plan((1, 4, 25, 5), (4, 1, 3, 3), (1, 1, 1, 1)) == 16
    assert plan((1, 4, 14, 14), (4, 1, 3, 3), (1, 1, 1, 1)) is None            # rows of 14: row tile
    assert plan((1, 4, 25, 5), (4, 1, 3, 3), (0, 0, 0, 0)) is None             # output smaller
    assert plan((1, 4, 26, 6), (4, 1, 3, 3), (1, 1, 1, 1), (2, 2)) is None     # stride 2
    assert plan((1, 4, 3, 4), (4, 1, 3, 3), (1, 1, 1, 1)) is None              # less than a vector
    assert plan((1, 4, 50, 5), (4, 1, 3, 3), (1, 1, 1, 1)) is None             # 16 vectors: too many
    assert plan((1, 4, 25, 5), (4, 1, 3, 3), (1, 1, 1, 1), target=load_target("x86_64-avx2")) is None
    assert plan((1, 4, 12, 4), (4, 1, 3, 3), (1, 1, 1, 1), target=load_target("x86_64-avx2")) == 8


@pytest.mark.parametrize("xs,ws,kw,path", [
    ((1, 24, 25, 5), (16, 24, 1, 1), {}, "gemm"),                                     # overlap GEMM
    ((1, 8, 8, 8), (16, 8, 1, 1), {}, "gemm"),                                        # gemm_nn
    ((1, 16, 7, 7), (24, 16, 1, 1), {}, "small"),
    ((1, 128, 7, 7), (24, 128, 1, 1), {}, "small"),                                   # tail columns GEMM
    ((1, 16, 7, 7), (24, 16, 3, 3), dict(pads=(1, 1, 1, 1)), "im2col_tail"),
    ((1, 6, 25, 5), (16, 6, 3, 3), dict(pads=(1, 1, 1, 1)), "im2col_overlap"),
    ((1, 8, 4, 32), (6, 8, 1, 1), {}, "direct"),
    ((2, 5, 9, 11), (7, 5, 3, 3), dict(pads=(1, 1, 1, 1), bias=False), "direct"),
    ((1, 6, 9, 11), (6, 1, 3, 3), dict(pads=(1, 1, 1, 1), group=6), ("dw", 16, 4)),
    ((1, 6, 25, 5), (6, 1, 3, 3), dict(pads=(1, 1, 1, 1), group=6), ("flat", 16)),
    ((1, 5, 8, 28), (6, 5, 3, 3), dict(pads=(1, 1, 1, 1)), ("flat_dense", 7, 3)),
    ((1, 24, 32, 32), (40, 24, 1, 1), dict(strides=(2, 2)), "strided_pw"),
    ((1, 64, 56, 56), (256, 64, 1, 1), {}, "gemm"),                                 # chunked gemm_nn
    ((1, 4, 56, 56), (6, 4, 3, 3), dict(strides=(2, 2), pads=(1, 1, 1, 1)), ("flat_dense_s", 7, 3)),
], ids=["overlap", "gemm_nn", "small", "tail", "im2col_tail", "im2col_overlap", "direct", "direct_batch_nobias",
        "dw", "flat_dw", "flat_dense", "strided_pw", "gemm_nn_chunked_r50", "flat_dense_strided"])
def test_residual_epilogue(xs, ws, kw, path):
    """A conv's optional fourth input ``residual`` is added after the bias, before the clamp
    (a fused conv -> add -> relu), on every float conv path."""
    case = _conv("res", xs, ws, **kw)
    p = _path(case)
    assert p == path, p
    spec = _spec(case)
    out_t = spec.outputs[0]
    r = rand(RNG, *out_t.shape)
    attrs = dict(spec.attrs, act_min=0.0)
    ins = spec.inputs + (TensorType("float32", tuple(out_t.shape)),)
    spec = KernelSpec(spec.op, attrs, ins, spec.outputs, spec.target)
    got = _compile_run(spec, list(case.inputs) + [r])
    want = np.maximum(case.reference()[0] + r, 0)
    np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)


def test_flat_depthwise_on_avx2_target():
    """8-lane vectors (AVX2, 16 registers): rows of at most 4 columns, at most 12 vectors."""
    from edgec.targets import load_target
    case = _conv("flat_avx2", (1, 5, 12, 4), (5, 1, 3, 3), pads=(1, 1, 1, 1), group=5)
    spec = _spec(case)
    spec = KernelSpec(spec.op, dict(spec.attrs, act_min=0.0), spec.inputs, spec.outputs, load_target("x86_64-avx2"))
    x = te.placeholder(case.inputs[0].shape, "float32", name="x")
    w = te.placeholder(case.inputs[1].shape, "float32", name="w")
    assert nnk._flat_depthwise_plan(spec, x, w) == 8
    got = _compile_run(spec, case.inputs)
    np.testing.assert_allclose(got, np.maximum(case.reference()[0], 0), rtol=case.rtol, atol=case.atol)


def test_flat_dense_not_chosen_elsewhere():
    from edgec.targets import load_target

    def plan(xs, ws, pads, strides=(1, 1), target=None):
        return _plan(nnk._flat_dense_plan, xs, ws, target, strides=strides, pads=pads)
    assert plan((1, 128, 28, 28), (128, 128, 3, 3), (1, 1, 1, 1)) == (16, 7, 2)     # resnet50's 28x28 3x3
    assert plan((1, 8, 14, 14), (8, 8, 3, 3), (1, 1, 1, 1)) is None       # 196 pixels: no whole blocks
    assert plan((1, 8, 8, 56), (8, 8, 3, 3), (1, 1, 1, 1)) is None        # the 56-column row tile
    assert plan((1, 8, 8, 32), (8, 8, 3, 3), (1, 1, 1, 1)) is None        # whole vectors
    assert plan((1, 8, 8, 8), (8, 8, 3, 3), (1, 1, 1, 1)) is None         # short rows
    assert plan((1, 8, 28, 28), (8, 8, 3, 3), (0, 0, 0, 0)) is None       # output smaller
    assert plan((1, 8, 56, 56), (8, 8, 3, 3), (1, 1, 1, 1), (2, 2)) is None
    assert plan((1, 8, 8, 28), (7, 8, 3, 3), (1, 1, 1, 1)) is None        # 7 channels: a 7-accumulator tile
    assert plan((1, 8, 8, 28), (8, 8, 3, 3), (1, 1, 1, 1), target=load_target("x86_64-avx2")) is None


def test_strided_pointwise_plan():
    def plan(xs, ws, strides, pads=(0, 0, 0, 0), group=1):
        return _plan(nnk._strided_pointwise_plan, xs, ws, strides=strides, pads=pads, group=group)
    assert plan((1, 256, 56, 56), (512, 256, 1, 1), (2, 2))               # resnet50's downsampling
    assert not plan((1, 512, 28, 28), (1024, 512, 1, 1), (2, 2))          # 196 pixels: no whole vectors
    assert not plan((1, 8, 14, 14), (12, 8, 1, 1), (1, 1))                # stride 1: the GEMM already
    assert not plan((1, 8, 32, 32), (12, 8, 3, 3), (2, 2), (1, 1, 1, 1))  # 3x3
    assert not plan((1, 8, 32, 32), (8, 1, 1, 1), (2, 2), group=8)        # grouped
    assert not plan((1, 8, 32, 32), (12, 8, 1, 1), (2, 2), (1, 1, 1, 1))  # padded


def test_gemm_column_chunk_choice(monkeypatch):
    # resnet50's 64 -> 256 1x1 at 56x56 (8 x 16 tiles): 3136 pixels = 196 tile columns, 28 a chunk
    assert _nn_sched._gemm_column_chunk(256, 3136, 64, 16, "float32") == 28
    assert _nn_sched._gemm_column_chunk(64, 3136, 256, 16, "float32") == 0     # output < 1 MiB
    assert _nn_sched._gemm_column_chunk(256, 3136, 64, 16, "int32") == 0       # float only
    monkeypatch.setattr(_nn_sched, "GEMM_CHUNK_MIN_OUT_BYTES", 0)
    assert _nn_sched._gemm_column_chunk(256, 3136, 64, 16, "float32") == 0


@pytest.mark.parametrize("xs,ws,residual", [
    ((1, 8, 24, 20), (24, 8, 1, 1), False),
    ((2, 8, 24, 40), (20, 8, 1, 1), True),
    ((1, 8, 24, 24), (16, 8, 1, 1), True),
])
def test_gemm_nn_forced_chunks(xs, ws, residual, monkeypatch):
    """Chunks forced on small shapes (tiny thresholds): the same sums, the residual and clamp kept."""
    monkeypatch.setattr(_nn_sched, "GEMM_CHUNK_MIN_OUT_BYTES", 1)
    case = _conv("chunk", xs, ws)
    assert _path(case) == "gemm"
    spec = _spec(case)
    tile = _nn_sched._choose_gemm_tile(ws[0], xs[2] * xs[3], xs[1], "float32", spec.target)
    monkeypatch.setattr(_nn_sched, "GEMM_CHUNK_B_BYTES", 2 * xs[1] * tile.nw * tile.lanes * 4)    # 2 columns
    mp = -(-ws[0] // tile.mr) * tile.mr
    assert _nn_sched._gemm_column_chunk(mp, xs[2] * xs[3], xs[1], tile.nw * tile.lanes, "float32") > 1
    inputs, want = list(case.inputs), case.reference()[0]
    if residual:
        r = rand(RNG, *want.shape)
        spec = KernelSpec(spec.op, dict(spec.attrs, act_min=0.0), spec.inputs + (TensorType("float32", want.shape),),
                          spec.outputs, spec.target)
        inputs.append(r)
        want = np.maximum(want + r, 0)
    got = _compile_run(spec, inputs)
    np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)


def test_flat_dense_strided_not_chosen_elsewhere():
    from edgec.targets import load_target

    def plan(xs, ws, strides, pads=(1, 1, 1, 1), dilations=(1, 1), target=None):
        return _plan(nnk._flat_dense_strided_plan, xs, ws, target, strides=strides, pads=pads, dilations=dilations)
    assert plan((1, 128, 56, 56), (128, 128, 3, 3), (2, 2)) == (16, 7, 2)     # resnet50's n39
    assert plan((1, 256, 28, 28), (256, 256, 3, 3), (2, 2)) is None           # rows of 14
    assert plan((1, 8, 28, 28), (8, 8, 3, 3), (1, 1)) is None                 # stride 1: _flat_dense_plan
    assert plan((1, 8, 57, 57), (8, 8, 3, 3), (2, 2), (0, 0, 0, 0)) is None   # ow * sw < iw
    assert plan((1, 8, 64, 64), (8, 8, 3, 3), (2, 2)) is None                 # rows of 32: whole vectors
    assert plan((1, 8, 60, 60), (8, 8, 3, 3), (2, 2), dilations=(2, 2)) is None
    assert plan((1, 8, 56, 56), (8, 8, 1, 1), (2, 2), (0, 0, 0, 0)) is None   # 1x1
    assert plan((1, 8, 56, 56), (8, 8, 3, 3), (2, 2), target=load_target("x86_64-avx2")) is None
