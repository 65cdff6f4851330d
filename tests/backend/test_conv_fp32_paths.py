"""The float32 conv / global-pool paths of the performance work (edgec/backend/kernels/nn.py,
_nn_sched.py), against the numpy references:

- 1x1 convolutions run as a GEMM over an image's flattened pixels (rows too short to fill
  vectors: DS-CNN's 25x5, MobileNetV2's 14x14 and 7x7), with the small-image tile (all the
  pixels in one row of half-width vectors) and the GEMM's own tile choice; batch > 1, no bias;
- float depthwise convolutions with the one-channel, several-rows tile (row counts that do and
  do not divide the output, stride 2, a 5x5 kernel, width 7 with 8-lane vectors);
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


def _conv(id_, xs, ws, strides=(1, 1), pads=(0, 0, 0, 0), group=1, bias=True):
    x = rand(RNG, *xs)
    w = rand(RNG, *ws)
    b = rand(RNG, ws[0]) if bias else None
    tol = 2e-6 * np.sqrt(int(np.prod(ws[1:])))
    return Case(id_, "conv", dict(strides=strides, pads=pads, dilations=(1, 1), group=group), [x, w, b],
                rtol=tol, atol=tol)


# (case, expected path): "small" = the small-image GEMM tile, "gemm" = GEMM with its own tile,
# "direct" = the direct convolution, ("dw", lanes, rows) = the depthwise tile
CASES = [
    (_conv("pw_25x5", (1, 64, 25, 5), (64, 64, 1, 1)), "gemm"),
    (_conv("pw_14x14", (1, 24, 14, 14), (40, 24, 1, 1)), "gemm"),
    (_conv("pw_7x7", (1, 40, 7, 7), (30, 40, 1, 1)), "small"),
    (_conv("pw_6x6_batch_nobias", (2, 17, 6, 6), (5, 17, 1, 1), bias=False), "small"),
    (_conv("pw_3x9_batch", (2, 8, 3, 9), (7, 8, 1, 1)), "small"),
    (_conv("pw_wide_rows", (1, 8, 4, 32), (6, 8, 1, 1)), "direct"),
    (_conv("dw_7x7", (1, 10, 7, 7), (10, 1, 3, 3), pads=(1, 1, 1, 1), group=10), ("dw", 8, 7)),
    (_conv("dw_25x5", (1, 6, 25, 5), (6, 1, 3, 3), pads=(1, 1, 1, 1), group=6), ("dw", 8, 5)),
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
    oh = [(x.shape[2 + i] + case.attrs["pads"][i] + case.attrs["pads"][2 + i] - w.shape[2 + i])
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


@pytest.mark.parametrize("xs,ws,pads,lo,hi", [
    ((1, 16, 7, 7), (24, 16, 1, 1), (0, 0, 0, 0), 0.0, 6.0),      # small-image GEMM tile
    ((1, 16, 14, 14), (8, 16, 1, 1), (0, 0, 0, 0), 0.0, None),    # GEMM, relu only
    ((1, 6, 9, 11), (5, 6, 3, 3), (1, 1, 1, 1), -0.5, 0.5),       # direct convolution
    ((1, 6, 9, 11), (6, 1, 3, 3), (1, 1, 1, 1), None, 1.0),       # depthwise
])
def test_fused_clamp_epilogue(xs, ws, pads, lo, hi):
    """attrs act_min / act_max clamp the biased sums (a relu or clip fused into the conv)."""
    import tvm
    from edgec.backend.kernels.registry import KERNELS
    group = xs[1] if ws[1] == 1 and xs[1] > 1 else 1
    case = _conv("act", xs, ws, pads=pads, group=group)
    spec = _spec(case)
    attrs = dict(spec.attrs)
    if lo is not None:
        attrs["act_min"] = lo
    if hi is not None:
        attrs["act_max"] = hi
    spec = KernelSpec(spec.op, attrs, spec.inputs, spec.outputs, spec.target)
    func = KERNELS["conv"](spec).with_attr("global_symbol", "k")
    lib = tvm.compile(tvm.IRModule({"k": func}), target=spec.target.tvm_target())
    x, w, b = case.inputs
    want = np.clip(case.reference()[0], lo, hi)
    got = tvm.runtime.tensor(np.zeros(spec.outputs[0].shape, "float32"))
    lib["k"](*(tvm.runtime.tensor(a) for a in (x, w, b)), got)
    np.testing.assert_allclose(got.numpy(), want, rtol=case.rtol, atol=case.atol)
    assert (lo is None or got.numpy().min() >= lo) and (hi is None or got.numpy().max() <= hi)
