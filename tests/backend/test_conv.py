"""conv and conv_transpose kernels (edgec/backend/kernels/nn.py) built by build_kernels and run
with TVM's runtime, against the numpy references and, for a sample, onnxruntime.

The cases cover every tile path of the direct convolution: padded copy and direct reads,
stride de-interleaving (one copy per phase, phase-summed taps), 1-tap strided kernels
(subsampled input), tiles overhanging channels / rows / columns, groups and depthwise,
dilation, 1-D and 3-D, float16 / float64, and the zero-inserted input of conv_transpose.
Float32 sums of K products get an absolute tolerance of about 1e-6 * sqrt(K) * scale.
"""
from __future__ import annotations

import numpy as np
import pytest

import subprocess

from edgec.backend import build_kernels
from edgec.backend.kernels import _nn_sched

from ._harness import Case, Runner, build_cases, case_graph, check, host_target, rand, tvm

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(20240501)


def _conv(id_, xs, ws, strides, pads, dil, group=1, bias=True, dtype="float32", op="conv", out_pad=None):
    x = rand(RNG, *xs, dtype=dtype)
    w = rand(RNG, *ws, dtype=dtype)
    nb = ws[1] * group if op == "conv_transpose" else ws[0]
    b = rand(RNG, nb, dtype=dtype) if bias else None
    attrs = dict(strides=strides, pads=pads, dilations=dil, group=group)
    if op == "conv_transpose":
        attrs["output_padding"] = out_pad or (0,) * len(strides)
    k = int(np.prod(ws[1:])) * (group if op == "conv_transpose" else 1)
    tol = {"float16": 2e-2, "float64": 1e-10}.get(dtype, 2e-6 * np.sqrt(k))
    return Case(id_, op, attrs, [x, w, b], rtol=tol, atol=tol)


CASES = [
    _conv("basic3x3", (1, 3, 10, 11), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    _conv("nobias_1x1", (2, 16, 7, 7), (32, 16, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), bias=False),
    _conv("direct_exact", (1, 8, 6, 16), (5, 8, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    _conv("asym_pads_s2", (2, 4, 9, 7), (6, 4, 3, 2), (2, 1), (0, 1, 2, 0), (1, 1)),
    _conv("stride_w2_s3", (1, 3, 13, 20), (5, 3, 3, 5), (2, 3), (1, 2, 0, 1), (1, 1)),
    _conv("dilation", (1, 4, 12, 12), (6, 4, 3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
    _conv("dilated_strided", (1, 2, 15, 16), (3, 2, 3, 3), (2, 2), (1, 0, 1, 2), (2, 3)),
    _conv("grouped", (2, 6, 9, 8), (9, 2, 3, 2), (2, 1), (0, 1, 2, 0), (1, 2), group=3),
    _conv("depthwise", (1, 8, 12, 12), (8, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), group=8),
    _conv("depthwise_s2", (1, 16, 14, 13), (16, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), group=16, bias=False),
    _conv("depthwise_mult", (1, 4, 9, 9), (8, 1, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1), group=4),
    _conv("pointwise_s2", (1, 8, 11, 10), (12, 8, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1)),
    _conv("pad_only_end", (1, 3, 5, 5), (2, 3, 2, 2), (1, 1), (0, 0, 3, 1), (1, 1)),
    _conv("big_kernel_s2", (1, 3, 30, 30), (8, 3, 7, 7), (2, 2), (3, 3, 3, 3), (1, 1)),
    _conv("odd_channels", (1, 7, 9, 9), (13, 7, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    _conv("conv1d", (1, 5, 17), (7, 5, 3), (2,), (1, 2), (2,)),
    _conv("conv1d_grouped", (2, 4, 20), (6, 2, 4), (1,), (0, 0), (1,), group=2),
    _conv("conv3d", (1, 3, 5, 6, 7), (4, 3, 2, 3, 2), (1, 2, 1), (0, 1, 1, 1, 0, 0), (1, 1, 2)),
    _conv("f64", (1, 3, 8, 8), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), dtype="float64"),
    _conv("f16", (1, 4, 8, 8), (4, 4, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), dtype="float16"),
    # realistic sizes: the cost model picks the long tiles and the loop orders used on real models
    _conv("mid_oc_inner", (1, 64, 56, 56), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    _conv("mid_s2", (1, 32, 40, 40), (48, 32, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    _conv("mid_pointwise", (1, 96, 14, 14), (40, 96, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    _conv("mid_depthwise", (1, 48, 28, 28), (48, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), group=48),
    _conv("dw_odd_channels", (1, 34, 28, 28), (34, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), group=34),
    _conv("dw_odd_s2", (1, 13, 30, 30), (13, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), group=13),
    _conv("ct_basic", (1, 3, 5, 5), (3, 4, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), op="conv_transpose"),
    _conv("ct_stride", (1, 4, 5, 6), (4, 3, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), op="conv_transpose",
          out_pad=(1, 1)),
    _conv("ct_grouped", (2, 4, 4, 5), (4, 2, 3, 2), (2, 3), (0, 1, 1, 0), (1, 2), group=2,
          op="conv_transpose", out_pad=(1, 0)),
    _conv("ct_neg_pads", (1, 2, 3, 3), (2, 2, 2, 2), (2, 2), (-1, 0, -1, 0), (1, 1), op="conv_transpose",
          bias=False),
    _conv("ct_1d", (1, 3, 7), (3, 2, 4), (3,), (1, 2), (1,), op="conv_transpose", out_pad=(2,)),
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("conv"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_conv_matches_reference(runner, case):
    check(case, runner.run(case))


def _ort_conv(case: Case) -> np.ndarray:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    x, w, b = case.inputs
    r = x.ndim - 2
    y = case.reference()[0]
    op = "Conv" if case.op == "conv" else "ConvTranspose"
    attrs = dict(strides=list(case.attrs["strides"]), pads=list(case.attrs["pads"]),
                 dilations=list(case.attrs["dilations"]), group=case.attrs["group"],
                 kernel_shape=list(w.shape[2:]))
    if case.op == "conv_transpose":
        attrs["output_padding"] = list(case.attrs["output_padding"])
    ins = ["x", "w"] + (["b"] if b is not None else [])
    node = helper.make_node(op, ins, ["y"], **attrs)
    inits = [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel())]
    if b is not None:
        inits.append(helper.make_tensor("b", TensorProto.FLOAT, b.shape, b.ravel()))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y.shape)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    assert r >= 1
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("cid", ["asym_pads_s2", "stride_w2_s3", "dilated_strided", "grouped", "depthwise_s2",
                                 "conv1d", "conv3d", "ct_stride", "ct_grouped", "ct_1d"])
def test_conv_matches_onnxruntime(runner, cid):
    case = next(c for c in CASES if c.id == cid)
    got = runner.run(case)[0]
    want = _ort_conv(case)
    np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)


FORCED = [  # tile (lanes, nw, nh, mr, direct, oc_inner) forced onto one shape: every schedule path
    (16, 1, 1, 13, False, True), (16, 2, 2, 3, False, False), (8, 7, 1, 3, True, True),
    (8, 7, 1, 2, True, False), (8, 1, 7, 3, False, True), (16, 4, 1, 3, False, True), (4, 3, 2, 5, False, False),
]


@pytest.mark.parametrize("tile", FORCED, ids=lambda t: "x".join(map(str, t[:4])) + ("d" if t[4] else "") +
                         ("i" if t[5] else ""))
def test_forced_tiles(tmp_path, tile):
    case = _conv("forced", (1, 12, 14, 56), (20, 12, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1))
    pad = _conv("forced_pad", (1, 6, 9, 21), (7, 6, 3, 3), (1, 2), (1, 1, 1, 1), (1, 1))
    cases = [case] if tile[4] else [case, pad]
    _nn_sched.TILE_OVERRIDE["conv"] = _nn_sched.ConvTile(*tile)
    try:   # no cache: the override changes the kernel, not its spec
        lib = build_kernels(case_graph(cases), host_target(), tmp_path, cache=None)
    finally:
        _nn_sched.TILE_OVERRIDE.pop("conv")
    so = tmp_path / "t.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), *map(str, lib.objects)], check=True)
    runner = Runner(lib, tvm.runtime.load_module(str(so)), cases)
    for c in cases:
        check(c, runner.run(c))


def test_conv_workspace_is_reported(runner):
    """Padded convolutions allocate their input copy from the TVM workspace; the library
    reports at least the size of the biggest copy."""
    lib = runner.lib
    name = runner.kernel_of["basic3x3"]
    # 3 channels x (10 + 2 rows) x (at least 11 + 2 columns) float32
    assert lib.kernel_workspace[name] >= 3 * 12 * 13 * 4
    assert lib.workspace_bytes == max(lib.kernel_workspace.values())
    assert all(v % 64 == 0 for v in lib.kernel_workspace.values())
    assert all(lib.code_bytes[k] > 0 for k in lib.kernels)
