"""The float32 convolution paths of issue 6 (fp32 at or below onnxruntime) against the numpy
reference: the GEMM with tail columns (``_nn_sched.gemm_tail_columns``, chosen by
``nn._pointwise_gemm`` through ``_nn_sched.choose_tail_gemm_tile``):

- pixels = whole 16-lane vectors + 1, 2, 3 or 4 columns (7x7, 5x10, 5x7, 14x14), one and several
  column tiles per row tile, batch 2, no bias, a fused clamp, k a multiple of 16 and of 8 only
  (8-lane dot products for the tail), MobileNetV2's and resnet50's real 7x7 / 14x14 shapes;
- through the C runtime (an ONNX Conv + Relu compiled by edgec), on 1 and 2 threads;
- the im2col form (``nn._conv_im2col_tail``) of 3x3 convolutions and strided 1x1 ones whose
  output is 7x7 or 14x14: padding, stride 2, dilation 2 with asymmetric pads, batch 2,
  resnet50's 512-channel 3x3 on 7x7; and where it must not be taken (past L2, no tail, groups);
- the GEMM whose last vector overlaps the one before (``_nn_sched.gemm_overlap_last``: DS-CNN's
  125 pixels, 14x14 with few input channels, batch 2, no bias, a clamp);
- the 7 x 8-lane full-row tile of direct convolutions with rows of 56 columns
  (``_nn_sched._full_row_8lane``);
- the AVX2 target keeps the padded small-image tile and still computes the right thing; the
  aarch64 target compiles (the path is not taken there).

Each case also checks the tile the generator picks, so a change of the selection rules cannot
silently turn these into tests of another path.
"""
from __future__ import annotations

import numpy as np
import pytest
from tvm import te

from edgec.backend.kernels import _nn_sched
from edgec.backend.kernels import nn as nnk
from edgec.backend.kernels.registry import KernelSpec, TensorType
from edgec.targets import load_target

from ._harness import Case, build_cases, check, host_target, rand

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(20261128)


def _conv(id_, xs, ws, bias=True, act=None, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1)):
    x = rand(RNG, *xs)
    w = rand(RNG, *ws)
    b = rand(RNG, ws[0]) if bias else None
    tol = 2e-6 * np.sqrt(int(np.prod(ws[1:])))
    attrs = dict(strides=strides, pads=pads, dilations=dilations, group=1)
    if act is not None:
        attrs["act_min"], attrs["act_max"] = act
    return Case(id_, "conv", attrs, [x, w, b], rtol=tol, atol=tol)


# (case, expected tile: (nw, mr, tail, k_lanes)) on the AVX-512 host target (16 lanes)
CASES = [
    (_conv("tail1_7x7", (1, 128, 7, 7), (24, 128, 1, 1)), (3, 8, 1, 16)),
    (_conv("tail4_14x14", (1, 128, 14, 14), (16, 128, 1, 1)), (6, 4, 4, 16)),
    (_conv("tail2_5x10_batch_nobias", (2, 144, 5, 10), (12, 144, 1, 1), bias=False), (3, 6, 2, 16)),
    (_conv("tail3_5x7_k8", (1, 136, 5, 7), (10, 136, 1, 1)), (2, 5, 3, 8)),
    (_conv("tail1_clamp", (1, 160, 7, 7), (16, 160, 1, 1), act=(0.0, 6.0)), (3, 8, 1, 16)),
    (_conv("mnv2_320_1280_7x7", (1, 320, 7, 7), (1280, 320, 1, 1), act=(0.0, 6.0)), (3, 8, 1, 16)),
    (_conv("r50_1024_256_14x14", (1, 1024, 14, 14), (256, 1024, 1, 1)), (6, 4, 4, 16)),
]


# (case, expected tile) of the im2col form (3x3 kernels, strided 1x1) on the host target
IM2COL = [
    (_conv("im2col_3x3_7x7", (1, 16, 7, 7), (24, 16, 3, 3), pads=(1, 1, 1, 1)), (3, 8, 1, 16)),
    (_conv("im2col_3x3_s2_14_to_7_batch", (2, 16, 14, 14), (16, 16, 3, 3), strides=(2, 2), pads=(1, 1, 1, 1),
           act=(0.0, None)), (3, 8, 1, 16)),
    (_conv("im2col_1x1_s2_14_to_7", (1, 128, 14, 14), (32, 128, 1, 1), strides=(2, 2)), (3, 8, 1, 16)),
    (_conv("im2col_1x1_s2_28_to_14_nobias", (1, 128, 28, 28), (16, 128, 1, 1), strides=(2, 2), bias=False),
     (6, 4, 4, 16)),
    (_conv("im2col_3x3_dil2_asym_pads", (1, 16, 8, 8), (16, 16, 3, 3), pads=(1, 2, 2, 1), dilations=(2, 2)),
     (3, 8, 1, 16)),
    (_conv("r50_512_3x3_7x7", (1, 512, 7, 7), (512, 512, 3, 3), pads=(1, 1, 1, 1)), (3, 8, 1, 16)),
]


def _out_shape(case: Case):
    x, w, _ = case.inputs
    a = case.attrs
    sp = [(x.shape[2 + i] + a["pads"][i] + a["pads"][2 + i] - a["dilations"][i] * (w.shape[2 + i] - 1) - 1)
          // a["strides"][i] + 1 for i in range(2)]
    return (x.shape[0], w.shape[0], *sp)


def _spec(case: Case, target=None) -> KernelSpec:
    x, w, b = case.inputs
    ins = [TensorType("float32", tuple(x.shape)), TensorType("float32", tuple(w.shape))]
    ins.append(TensorType("float32", tuple(b.shape)) if b is not None else None)
    return KernelSpec("conv", dict(case.attrs), tuple(ins), (TensorType("float32", _out_shape(case)),),
                      target or host_target())


def _plan(case: Case, target=None):
    x = te.placeholder(case.inputs[0].shape, "float32", name="x")
    w = te.placeholder(case.inputs[1].shape, "float32", name="w")
    return nnk._pointwise_gemm(_spec(case, target), x, w)


def _im2col_plan(case: Case, target=None):
    x = te.placeholder(case.inputs[0].shape, "float32", name="x")
    w = te.placeholder(case.inputs[1].shape, "float32", name="w")
    spec = _spec(case, target)
    if nnk._pointwise_gemm(spec, x, w) is not None:
        return "pointwise"
    return nnk._im2col_tail_plan(spec, x, w)


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    if host_target().vector_bits != 512:
        pytest.fail("these cases pin the tiles chosen for the AVX-512 host target")
    # the channels-in-lanes form (test_conv_oc_lanes.py) would take the 14x14 / 7x7 cases whose
    # output channels are whole vectors; these forms still serve the others (O % 16 != 0, 1x1
    # convs on rows of 7, AVX2): built with it off, in a private kernel cache (the cache key of an
    # unpacked spec does not see the switch)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nnk, "OC_LANES", False)
        mp.setenv("EDGEC_CACHE_DIR", str(tmp_path_factory.mktemp("fp32_tail_cache")))
        return build_cases([c for c, _ in CASES + IM2COL], tmp_path_factory.mktemp("fp32_tail"))


@pytest.mark.parametrize("case,tile", CASES, ids=lambda v: v.id if isinstance(v, Case) else "")
def test_tail_gemm_matches_reference(runner, case, tile):
    plan = _plan(case)
    assert isinstance(plan, _nn_sched.TailGemmTile)
    assert (plan.lanes, plan.nw, plan.mr, plan.tail, plan.k_lanes) == (16, *tile)
    check(case, runner.run(case))


@pytest.mark.parametrize("case,tile", IM2COL, ids=lambda v: v.id if isinstance(v, Case) else "")
def test_im2col_tail_gemm_matches_reference(runner, case, tile):
    plan = _im2col_plan(case)
    assert isinstance(plan, _nn_sched.TailGemmTile)
    assert (plan.lanes, plan.nw, plan.mr, plan.tail, plan.k_lanes) == (16, *tile)
    check(case, runner.run(case))


@pytest.mark.parametrize("xs,ws,kw,why", [
    ((1, 256, 14, 14), (256, 256, 3, 3), dict(pads=(1, 1, 1, 1)), "im2col copy of 1.8 MB: past L2"),
    ((1, 16, 28, 28), (16, 16, 3, 3), dict(pads=(1, 1, 1, 1)), "784 pixels: no tail"),
    ((1, 8, 7, 7), (16, 8, 3, 3), dict(pads=(1, 1, 1, 1)), "k = 72 below TAIL_GEMM_MIN_K"),
])
def test_im2col_not_chosen(xs, ws, kw, why):
    assert _im2col_plan(_conv("no_im2col", xs, ws, **kw)) is None, why


def test_im2col_grouped_and_avx2_not_chosen():
    grouped = _conv("grouped", (1, 32, 7, 7), (32, 16, 3, 3), pads=(1, 1, 1, 1))
    grouped.attrs["group"] = 2
    assert _im2col_plan(grouped) is None
    assert _im2col_plan(IM2COL[0][0], load_target("x86_64-avx2")) is None


# (case, expected tile (nw, mr)) of the overlapping-last-vector GEMM (pixels not whole vectors)
OVERLAP = [
    (_conv("overlap_dscnn_pw_25x5", (1, 64, 25, 5), (64, 64, 1, 1), act=(0.0, None)), (4, 4)),
    (_conv("overlap_25x5_batch_nobias", (2, 24, 25, 5), (16, 24, 1, 1), bias=False), (4, 4)),
    (_conv("overlap_14x14_k96", (1, 96, 14, 14), (576, 96, 1, 1)), (1, 16)),
    (_conv("overlap_6x11_66px", (1, 8, 6, 11), (12, 8, 1, 1)), (1, 12)),
]


@pytest.fixture(scope="module")
def overlap_runner(tmp_path_factory):
    return build_cases([c for c, _ in OVERLAP], tmp_path_factory.mktemp("fp32_overlap"))


@pytest.mark.parametrize("case,tile", OVERLAP, ids=lambda v: v.id if isinstance(v, Case) else "")
def test_overlap_last_vector_matches_reference(overlap_runner, case, tile):
    """1x1 convs whose pixels are not whole 16-lane vectors and that no tail tile takes: the
    GEMM reads X directly, its last vector shifted back to end at the last pixel."""
    spec = _spec(case)
    assert _plan(case) is False
    x3 = case.inputs[0].shape
    hw = int(np.prod(x3[2:]))
    got = _nn_sched.choose_overlap_gemm_tile(case.inputs[1].shape[0], hw, x3[1], "float32", spec.target)
    assert got == _nn_sched.OverlapGemmTile(16, *tile)
    assert hw % 16 and hw > 16
    check(case, overlap_runner.run(case))


def test_overlap_not_chosen():
    t = host_target()
    assert _nn_sched.choose_overlap_gemm_tile(64, 128, 64, "float32", t) is None     # whole vectors
    assert _nn_sched.choose_overlap_gemm_tile(64, 12, 64, "float32", t) is None      # under one vector
    assert _nn_sched.choose_overlap_gemm_tile(17, 125, 64, "float32", t) is None     # 17 rows: no tile divides
    assert _nn_sched.choose_overlap_gemm_tile(1, 125, 64, "float32", t) is None      # 1 row
    assert _nn_sched.choose_overlap_gemm_tile(64, 125, 64, "float16", t) is None
    assert _nn_sched.choose_overlap_gemm_tile(64, 125, 64, "float32", load_target("x86_64-avx2")) is None


ROW56 = [
    _conv("row56_3x3", (1, 8, 6, 56), (16, 8, 3, 3), pads=(1, 1, 1, 1)),
    _conv("row56_3x3_batch_clamp_nobias", (2, 4, 5, 58), (6, 4, 3, 3), bias=False, act=(0.0, 1.0)),
    _conv("row56_1x3_s2_rows", (1, 4, 9, 56), (10, 4, 1, 3), strides=(2, 1), pads=(0, 1, 0, 1)),
]


@pytest.fixture(scope="module")
def row56_runner(tmp_path_factory):
    return build_cases(ROW56, tmp_path_factory.mktemp("fp32_row56"))


def _direct_tile(case: Case, target=None):
    x = te.placeholder(case.inputs[0].shape, "float32", name="x")
    w = te.placeholder(case.inputs[1].shape, "float32", name="w")
    spec = _spec(case, target)
    return _nn_sched._choose_conv_tile(_nn_sched._subsample_pointwise(nnk.conv_problem(spec, x, w)), spec.target)


@pytest.mark.parametrize("case", ROW56, ids=lambda c: c.id)
def test_row56_tile_matches_reference(row56_runner, case):
    """Rows of 56 columns (resnet50's 56x56 3x3): one tile of 7 x 8 lanes, 2 channels."""
    assert _out_shape(case)[-1] == 56
    assert _direct_tile(case) == _nn_sched.ConvTile(8, 7, 1, 2, False, True)
    check(case, row56_runner.run(case))


def test_row56_tile_not_chosen_elsewhere():
    odd = _conv("row56_odd_oc", (1, 8, 6, 56), (15, 8, 3, 3), pads=(1, 1, 1, 1))
    assert _direct_tile(odd) != _nn_sched.ConvTile(8, 7, 1, 2, False, True)
    narrow = _conv("row28", (1, 8, 6, 28), (16, 8, 3, 3), pads=(1, 1, 1, 1))
    assert _direct_tile(narrow).nw * _direct_tile(narrow).lanes != 56
    assert _direct_tile(ROW56[0], load_target("x86_64-avx2")) != _nn_sched.ConvTile(8, 7, 1, 2, False, True)


def test_tail_columns_are_exercised():
    """The tail columns of every case carry values of their own (not zeros, not copies of the
    last vector column), so a wrong tail cannot pass."""
    for case, (_, _, tail, _) in CASES + IM2COL:
        out = case.reference()[0].reshape(case.inputs[0].shape[0], case.inputs[1].shape[0], -1)
        last = out[..., -tail:]
        assert np.abs(last).max() > 0.1, case.id
        assert not np.allclose(last, out[..., -tail - 1:-1]), case.id


@pytest.mark.parametrize("xs,ws,why", [
    ((1, 96, 14, 14), (576, 96, 1, 1), "k below TAIL_GEMM_MIN_K"),
    ((1, 128, 4, 12), (16, 128, 1, 1), "48 pixels: no tail"),
    ((1, 128, 5, 5), (16, 128, 1, 1), "25 pixels: a tail of 9"),
    ((1, 132, 7, 7), (16, 132, 1, 1), "k not a multiple of 8"),
    ((1, 128, 7, 7), (13, 128, 1, 1), "13 rows: no tile height divides them"),
])
def test_tail_gemm_not_chosen(xs, ws, why):
    case = _conv("no_tail", xs, ws)
    assert not isinstance(_plan(case), _nn_sched.TailGemmTile), why


def _onnx_conv_relu(path, xs, ws, w, b, pads):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    out = (xs[0], ws[0], xs[2] + pads[0] + pads[2] - ws[2] + 1, xs[3] + pads[1] + pads[3] - ws[3] + 1)
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["y0"], kernel_shape=list(ws[2:]), pads=list(pads)),
             helper.make_node("Relu", ["y0"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(xs))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out))],
                              [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("xs,ws,pads", [
    ((1, 320, 7, 7), (1280, 320, 1, 1), (0, 0, 0, 0)),     # MobileNetV2's last 1x1: tail GEMM
    ((1, 128, 7, 7), (128, 128, 3, 3), (1, 1, 1, 1)),      # 3x3 on 7x7: im2col + tail GEMM
], ids=["pw_320_1280_7x7", "im2col_3x3_128_7x7"])
def test_runtime_threads(tmp_path, threads, xs, ws, pads):
    """A Conv + Relu compiled by edgec and run by the C runtime on 1 and 2 threads: both convs
    have more than 2^21 MACs, so their row tiles (and the im2col copy) run in parallel."""
    import edgec
    x, w, b = rand(RNG, *xs), rand(RNG, *ws, scale=0.1), rand(RNG, ws[0])
    _onnx_conv_relu(tmp_path / "m.onnx", xs, ws, w, b, pads)
    edgec.compile(str(tmp_path / "m.onnx"), output_dir=tmp_path / "art", tuning=False)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh, ow = xp.shape[2] - ws[2] + 1, xp.shape[3] - ws[3] + 1
    want = np.zeros((xs[0], ws[0], oh, ow))
    for ky in range(ws[2]):
        for kx in range(ws[3]):
            want += np.einsum("oc,nchw->nohw", w[:, :, ky, kx].astype(np.float64), xp[:, :, ky:ky + oh, kx:kx + ow])
    want = np.maximum(want + b[None, :, None, None], 0.0)
    with edgec.load(tmp_path / "art", threads=threads) as m:
        got = m.run({"x": x})
        got = np.asarray(got["y"] if isinstance(got, dict) else got[0])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_avx2_keeps_padded_tile(tmp_path):
    """x86_64-avx2 (16 vector registers): the small-image tile of padded 8-lane vectors, correct."""
    avx2 = load_target("x86_64-avx2")
    case = _conv("avx2_7x7", (1, 128, 7, 7), (24, 128, 1, 1))
    assert not isinstance(_plan(case, avx2), _nn_sched.TailGemmTile)
    if not avx2.host_can_run():
        pytest.skip("this host cannot run x86_64-avx2 code")
    check(case, build_cases([case], tmp_path, target=avx2).run(case))


def test_aarch64_compiles():
    """aarch64 (4 float lanes): the tail path is not taken; the 1x1 conv on 7x7 still lowers."""
    from edgec.backend.build import _lower
    from edgec.backend.kernels.registry import KERNELS
    target = load_target("aarch64")
    case = CASES[0][0]
    assert not isinstance(_plan(case, target), _nn_sched.TailGemmTile)
    spec = _spec(case, target)
    host, _ = _lower(KERNELS["conv"](spec), "k", spec.target.tvm_target())
    assert host is not None


def test_streaming_gemv_parallel_decision():
    """A float GEMV whose weights (>= 2 MiB) stream from memory runs its tiles in parallel whatever
    its MAC count (the text student's 16384 -> 96 embedding: 1.57 M MACs, under the 2^21 of the
    general rule; 2 threads 0.088 -> 0.056 ms, onnxruntime 0.064); small weights and int8 do not."""
    assert _nn_sched._streams_weights(1, 96, 16384, "float32")            # 6 MiB
    assert _nn_sched._streams_weights(1, 1000, 1280, "float32")           # MobileNetV2's classifier, 5 MiB
    assert not _nn_sched._streams_weights(1, 64, 1024, "float32")         # 256 KiB: stays in L2
    assert not _nn_sched._streams_weights(1, 96, 16384, "int32")          # the int8 GEMV has its own rules
    assert not _nn_sched._streams_weights(64, 96, 16384, "float32")       # many rows: the GEMM rules
    from edgec.backend.kernels.registry import KERNELS
    spec = KernelSpec("dense", {}, (TensorType("float32", (1, 16384)), TensorType("float32", (96, 16384)), None),
                      (TensorType("float32", (1, 96)),), host_target())
    assert "T.parallel" in KERNELS["dense"](spec).script()


@pytest.mark.parametrize("threads", [1, 2])
def test_streaming_gemv_runtime_threads(tmp_path, threads):
    """The parallel GEMV through the C runtime on 1 and 2 threads, against numpy."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import edgec
    x, w, b = rand(RNG, 1, 16384), rand(RNG, 16384, 96, scale=0.02), rand(RNG, 96)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "B"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16384])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 96])],
                              [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    edgec.compile(str(tmp_path / "m.onnx"), output_dir=tmp_path / "art", tuning=False)
    with edgec.load(tmp_path / "art", threads=threads) as m:
        got = m.run({"x": x})["y"]
    np.testing.assert_allclose(got, x.astype(np.float64) @ w.astype(np.float64) + b, rtol=1e-4, atol=1e-4)


def test_chunked_gemm_nn_matmul(tmp_path):
    """A float matmul whose output passes ``GEMM_CHUNK_MIN_OUT_BYTES`` runs ``gemm_nn`` in column
    chunks (``_nn_sched._gemm_column_chunk``; the k order of every sum unchanged): batch 2 of
    [320, 64] @ [64, 1024] against numpy."""
    a = rand(RNG, 2, 320, 64)
    b = rand(RNG, 64, 1024)
    tile = _nn_sched._choose_gemm_tile(320, 1024, 64, "float32", host_target())
    mp = -(-320 // tile.mr) * tile.mr
    np_ = -(-1024 // (tile.nw * tile.lanes)) * tile.nw * tile.lanes
    assert _nn_sched._gemm_column_chunk(mp, np_, 64, tile.nw * tile.lanes, "float32") > 1
    case = Case("chunked_matmul", "matmul", {}, [a, b], rtol=1e-5, atol=1e-5)
    got = build_cases([case], tmp_path).run(case)[0]
    np.testing.assert_allclose(got, np.matmul(a, b), rtol=1e-5, atol=1e-5)
