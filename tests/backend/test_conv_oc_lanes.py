"""The float convolution with output channels in the vector lanes (nn._conv_oc_lanes) and its
compile-time weight layout ([O/L, KH, KW, C, L], nn._conv_oc_lanes_prepack):

- the numpy packing against the layout's definition, element by element;
- which specs take the form (AVX-512 float32, ungrouped, O a multiple of 16, output rows that are
  not whole vectors: at most one vector, or longer with more than one tap; 1x1 stride-1 convs only
  with a full tile) and that the prepack rule and the dispatch agree;
- kernels built with the weights stored packed (graph constants) and packed per call (runtime
  weights) against the numpy reference: 3x3 / 1x1, strides, asymmetric padding, dilation, a
  residual and a clamp, batch 2, the tiles of rows of 14, 7, 12, 8 and 36 (a tile of part of a row);
- a compiled artifact stores ``w#oc16`` and gives the reference's outputs with packing on and off.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgec.backend.kernels.registry import KernelSpec, TensorType
from edgec.ir import ops as irops
from edgec.targets import load_target

from ._harness import Case, build_cases, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(2026)


def _avx512_host():
    t = load_target("host")
    if t.schedule != "x86_avx512":
        pytest.skip("the lanes form is for AVX-512 targets (32 vector registers); this host has none")
    return t


def _spec(xs, ws, strides=(1, 1), pads=(0, 0, 0, 0), dil=(1, 1), group=1, target=None):
    from edgec.backend.kernels import nn  # noqa: F401  (registers the rule)
    attrs = irops.get("conv").normalize_attrs(dict(strides=strides, pads=pads, dilations=dil, group=group))
    oh = [(xs[2 + i] + pads[i] + pads[2 + i] - dil[i] * (ws[2 + i] - 1) - 1) // strides[i] + 1 for i in range(2)]
    ins = (TensorType("float32", xs), TensorType("float32", ws), TensorType("float32", (ws[0],)))
    return KernelSpec("conv", attrs, ins, (TensorType("float32", (xs[0], ws[0], *oh)),),
                      target or load_target("host"))


def test_pack_is_the_layout():
    from edgec.backend.kernels.nn import pack_oc_lanes
    w = RNG.standard_normal((32, 5, 3, 2)).astype(np.float32)
    p = pack_oc_lanes(w, 16)
    assert p.shape == (2, 3, 2, 5, 16) and p.flags.c_contiguous
    for ob, ky, kx, c, l in np.ndindex(*p.shape):
        assert p[ob, ky, kx, c, l] == w[ob * 16 + l, c, ky, kx]


def test_which_specs_take_the_form():
    from edgec.backend.kernels.nn import _oc_lanes_plan
    from edgec.backend.kernels.quant_conv import prepack
    _avx512_host()
    take = [
        _spec((1, 256, 14, 14), (256, 256, 3, 3), pads=(1, 1, 1, 1)),         # resnet50 stage 3
        _spec((1, 256, 28, 28), (256, 256, 3, 3), (2, 2), (1, 1, 1, 1)),       # its stride-2 entry
        _spec((1, 512, 7, 7), (512, 512, 3, 3), pads=(1, 1, 1, 1)),            # stage 4
        _spec((1, 256, 14, 14), (1024, 256, 1, 1)),                             # 1x1, full tile
        _spec((1, 512, 28, 28), (1024, 512, 1, 1), (2, 2)),                     # strided 1x1
        _spec((1, 64, 56, 56), (64, 64, 3, 3), pads=(1, 1, 1, 1)),              # 56 = 3.5 vectors
        _spec((1, 128, 56, 56), (128, 128, 3, 3), (2, 2), (1, 1, 1, 1)),        # 28 = 1.75 vectors
    ]
    for s in take:
        tile = _oc_lanes_plan(s)
        assert tile is not None, s.inputs
        assert tile.lanes == 16 and tile.obr * tile.pr <= 28
        assert tile.obr * tile.pr + min(tile.obr, tile.pr) + 1 <= 32      # no register spills
        (i, p), = prepack(s).items()
        assert i == 1 and p.layout == "oc16"
        o, c, kh, kw = s.inputs[1].shape
        assert p.packed.shape == (o // 16, kh, kw, c, 16)
    leave = [
        _spec((1, 512, 7, 7), (2048, 512, 1, 1)),                  # 1x1 on rows of 7: 14 accumulators
        _spec((1, 64, 64, 64), (64, 64, 3, 3), pads=(1, 1, 1, 1)),  # rows of whole vectors
        _spec((1, 64, 28, 28), (128, 64, 1, 1)),                    # 1x1 on rows longer than a vector
        _spec((1, 64, 14, 14), (40, 64, 3, 3), pads=(1, 1, 1, 1)),  # O not a multiple of 16
        _spec((1, 64, 14, 14), (64, 1, 3, 3), pads=(1, 1, 1, 1), group=64),   # depthwise
        _spec((1, 8, 14, 14), (64, 8, 3, 3), pads=(1, 1, 1, 1)),    # too few input channels
        _spec((1, 256, 14, 14), (256, 256, 3, 3), pads=(1, 1, 1, 1),
              target=load_target("x86_64-avx2")),                           # AVX2
    ]
    for s in leave:
        assert _oc_lanes_plan(s) is None, s.inputs
        assert prepack(s) == {}


def _case(id_, xs, ws, strides=(1, 1), pads=(0, 0, 0, 0), dil=(1, 1), residual=False, act=(None, None)):
    x = RNG.standard_normal(xs).astype(np.float32)
    w = (RNG.standard_normal(ws) / np.sqrt(ws[1] * ws[2] * ws[3])).astype(np.float32)
    b = RNG.standard_normal(ws[0]).astype(np.float32)
    attrs = dict(strides=strides, pads=pads, dilations=dil, group=1)
    if act[0] is not None:
        attrs["act_min"] = act[0]
    if act[1] is not None:
        attrs["act_max"] = act[1]
    ins = [x, w, b]
    if residual:
        oh = [(xs[2 + i] + pads[i] + pads[2 + i] - dil[i] * (ws[2 + i] - 1) - 1) // strides[i] + 1 for i in range(2)]
        ins.append(RNG.standard_normal((xs[0], ws[0], *oh)).astype(np.float32))
    return Case(id_, "conv", attrs, ins, rtol=1e-4, atol=1e-4)


CASES = [
    _case("c3x3_14", (1, 32, 14, 14), (32, 32, 3, 3), pads=(1, 1, 1, 1), act=(0.0, None)),
    _case("c3x3_7_res", (1, 48, 7, 7), (64, 48, 3, 3), pads=(1, 1, 1, 1), residual=True, act=(0.0, 6.0)),
    _case("c3x3_s2", (1, 16, 28, 27), (32, 16, 3, 3), (2, 2), (1, 1, 1, 1)),
    _case("asym_dil", (2, 20, 16, 15), (48, 20, 3, 2), (1, 2), (2, 0, 1, 1), dil=(2, 1)),
    _case("c1x1_14_res", (1, 64, 14, 14), (128, 64, 1, 1), residual=True, act=(0.0, None)),
    _case("c1x1_s2", (1, 32, 14, 14), (32, 32, 1, 1), (2, 2)),
    _case("c5x5_12", (1, 16, 12, 12), (16, 16, 5, 5), pads=(2, 2, 2, 2)),
    _case("c3x3_wide_36", (1, 24, 10, 36), (32, 24, 3, 3), pads=(1, 1, 1, 1), act=(0.0, None)),
]


@pytest.fixture(scope="module")
def host():
    return _avx512_host()


@pytest.fixture(scope="module")
def packed(host, tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("oc_lanes_packed"))


@pytest.fixture(scope="module")
def unpacked(host, tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("oc_lanes_unpacked"), prepack=False)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_packed_and_per_call_packing_match_the_reference(packed, unpacked, case):
    from edgec.backend.build import node_packing
    from edgec.backend.kernels.nn import _oc_lanes_plan
    call, node = packed.call_of[case.id]
    spec, _ = node_packing(packed.graph, node, packed.target, prepack=False)
    assert _oc_lanes_plan(spec) is not None, "the case must exercise the lanes form"
    assert packed.packed_inputs(case) == {1: "oc16"}
    assert unpacked.packed_inputs(case) == {}
    got_p, got_u = packed.run(case), unpacked.run(case)
    check(case, got_p)
    # the same sums in the same order: the per-call packing stage changes where w is read only
    np.testing.assert_array_equal(got_p[0], got_u[0])


def test_artifact_stores_the_lanes_layout(tmp_path, monkeypatch):
    _avx512_host()
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import edgec
    from edgec.artifact.blob import read_blob
    from edgec.backend.kernels.nn import pack_oc_lanes

    w = (RNG.standard_normal((32, 16, 3, 3)) / 12).astype(np.float32)
    b = RNG.standard_normal(32).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["y"], ["z"])],
        "lanes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 14, 14])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 32, 14, 14])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    x = RNG.standard_normal((1, 16, 14, 14)).astype(np.float32)
    ref = np.maximum(irops.get("conv").reference(x, w, b, strides=(1, 1), pads=(1, 1, 1, 1),
                                                 dilations=(1, 1), group=1)[0], 0)
    outs = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("EDGEC_PREPACK", flag)
        out = tmp_path / f"a{flag}"
        edgec.compile(str(path), output_dir=out, tuning=False)
        blob = read_blob((out / "model.edgec").read_bytes())
        consts = {t.name: t for t in blob.tensors if t.storage == "const"}
        if flag == "1":
            # the packed weights only (the conv is their one reader), in the layout
            assert set(consts) == {"w#oc16", "b"}
            np.testing.assert_array_equal(
                np.frombuffer(consts["w#oc16"].data, np.float32).reshape(consts["w#oc16"].shape),
                pack_oc_lanes(w, 16))
        else:
            assert set(consts) == {"w", "b"}
        rep = json.loads((out / "report.json").read_text())
        assert rep["summary"]["constant_bytes"] == sum(t.nbytes for t in consts.values())
        with edgec.load(out) as model:
            outs[flag] = model.run({"x": x})["z"]
        np.testing.assert_allclose(outs[flag], ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(outs["1"], outs["0"])


# float depthwise stride-2 convolutions: per-channel phase copies one vector long
# (_nn_sched.STRIDED_COPY_ONE_VECTOR: rows of 9-16 outputs are vectorized gathers), longer ones with
# the padding written only at the borders (_nn_sched.STRIDED_BORDER_FILL: left / right columns per
# phase, odd widths, TF-style padding at the end only), and the others
def _dw(id_, c, h, w, s=2, act=(0.0, 6.0), pads=(1, 1, 1, 1)):
    x = RNG.standard_normal((1, c, h, w)).astype(np.float32)
    wt = RNG.standard_normal((c, 1, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(c).astype(np.float32)
    attrs = dict(strides=(s, s), pads=pads, dilations=(1, 1), group=c, act_min=act[0], act_max=act[1])
    return Case(id_, "conv", attrs, [x, wt, b], rtol=1e-5, atol=1e-5)


DW_CASES = [
    _dw("dw_s2_28to14", 24, 28, 28),
    _dw("dw_s2_32to16", 8, 32, 32),
    _dw("dw_s2_odd_17to9", 5, 17, 17),
    _dw("dw_s2_14to7", 16, 14, 14),
    _dw("dw_s2_56to28", 4, 56, 56),
    _dw("dw_s2_odd_75to38", 3, 75, 75, act=(None, None)),
    _dw("dw_s2_tf_same_end", 4, 56, 56, pads=(0, 0, 1, 1)),
    _dw("dw_s2_wide_pad2", 2, 40, 70, pads=(2, 3, 1, 2)),
]


@pytest.mark.parametrize("vec,border", [(True, True), (False, False)])
def test_strided_depthwise_copies(tmp_path, monkeypatch, vec, border):
    from edgec.backend.kernels import _nn_sched
    monkeypatch.setattr(_nn_sched, "STRIDED_COPY_ONE_VECTOR", vec)
    monkeypatch.setattr(_nn_sched, "STRIDED_BORDER_FILL", border)
    monkeypatch.setenv("EDGEC_CACHE_DIR", str(tmp_path / "cache"))   # the key does not see the switch
    runner = build_cases(DW_CASES, tmp_path / "k")
    for case in DW_CASES:
        check(case, runner.run(case))
