"""Compile-time weight packing (edgec.backend.build.node_packing, kernels.quant_conv.PREPACK):
the int8 VNNI conv_isa / dense_isa kernels read their weights stored in the packed layout.

- the numpy packing functions against the layout's definition, element by element;
- one-node kernels built packed (weights as graph constants) and unpacked (weights as runtime
  inputs: the per-call packing stage) compute the reference's bits, for every register tile the
  generator offers on a conv whose output channels are not a multiple of the tile;
- which specs pack (VNNI int8 only; not AVX2's int16 weights, not runtime weights, not the GEMV);
- a whole artifact: packed constants shared between nodes, the originals not stored, the report's
  constant bytes equal to the blob's, the same output bits as an artifact built unpacked.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgec.quant.qmath import qrange
from edgec.targets import load_target

from ._harness import Case, build_cases, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(77)


def _vnni_host():
    from edgec.backend.kernels.quant_isa import target_isa
    t = load_target("host")
    isa = target_isa(t)
    if isa is None or isa.name != "vnni":
        pytest.skip("pre-packing applies to the VNNI kernels; this host has no AVX-512 VNNI")
    return t, isa


def _req(count, out_dtype="uint8"):
    from edgec.quant.qmath import quantize_multiplier
    reals = np.exp(RNG.uniform(np.log(1e-5), np.log(5e-3), count))
    ms = [quantize_multiplier(float(r)) for r in reals]
    lo, hi = qrange(out_dtype)
    return {"multiplier": tuple(m for m, _ in ms), "shift": tuple(s for _, s in ms),
            "out_zero_point": int(RNG.integers(lo, hi + 1)), "qmin": lo, "qmax": hi, "out_dtype": out_dtype}


def _conv(id_, xs, ws, strides, pads, dil=None, bias=True):
    x = RNG.integers(0, 256, xs).astype(np.uint8)
    w = RNG.integers(-127, 128, ws).astype(np.int8)
    b = RNG.integers(-5000, 5000, ws[0]).astype(np.int32) if bias else None
    r = len(xs) - 2
    attrs = {"strides": strides, "pads": pads, "dilations": dil or (1,) * r, "group": 1,
             "x_zero_point": int(RNG.integers(0, 256)), **_req(ws[0])}
    return Case(id_, "qconv", attrs, [x, w, b])


def _dense(id_, m, n, k, op="qdense", bias=True):
    x = RNG.integers(0, 256, (m, k)).astype(np.uint8)
    w = RNG.integers(-127, 128, (n, k)).astype(np.int8)
    b = RNG.integers(-20000, 20000, n).astype(np.int32) if bias else None
    attrs = {"x_zero_point": int(RNG.integers(0, 256))}
    if op == "qdense":
        attrs.update(_req(n))
    else:
        attrs["scale"] = tuple(float(v) for v in RNG.uniform(1e-4, 1e-3, n))
    return Case(id_, op, attrs, [x, w, b])


# conv_isa's layouts: channels in the group (C % 4 == 0 and not, C % 16 == 0: the 1x1 copy that
# was a vector copy), width taps in the group (one and two input channels), 1-D; output channels
# not a multiple of the tile (the clamped last tile), strides, dilation; dense_isa with N, K not
# multiples of 16 / 4, qdense_dequant
CASES = [
    _conv("pw_c32", (1, 32, 7, 9), (40, 32, 1, 1), (1, 1), (0, 0, 0, 0)),
    _conv("c3x3_odd", (1, 9, 10, 13), (33, 9, 3, 3), (1, 1), (1, 1, 1, 1)),
    _conv("c3x3_s2_dil", (1, 8, 15, 14), (20, 8, 3, 3), (2, 2), (1, 2, 0, 1), dil=(2, 1), bias=False),
    _conv("taps_c1", (1, 1, 25, 10), (19, 1, 10, 4), (2, 2), (4, 1, 5, 2)),
    _conv("taps_c2_oc7", (1, 2, 12, 10), (7, 2, 3, 3), (1, 1), (1, 1, 1, 1)),
    _conv("c1d", (2, 6, 30), (11, 6, 4), (3,), (1, 2)),
    _dense("dense_odd", 17, 37, 33),
    _dense("dense_16", 12, 64, 128, bias=False),
    _dense("dequant_odd", 12, 21, 70, op="qdense_dequant"),
]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    _vnni_host()
    return build_cases(CASES, tmp_path_factory.mktemp("prepack_on"), prepack=True)


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    _vnni_host()
    return build_cases(CASES, tmp_path_factory.mktemp("prepack_off"), prepack=False)


def _wpk_reference(w: np.ndarray, G: int, taps: bool, B: int) -> np.ndarray:
    """The layout by its definition (conv_isa's former ``wpk`` stage with the output channels in
    blocks of B), one element at a time."""
    w4 = w[:, :, None, :] if w.ndim == 3 else w
    o, c, kh, kw = w4.shape
    ob = -(-o // B)
    if taps:
        c4 = -(-(c * kw) // G)
        out = np.zeros((ob, c4, kh, B, G), w.dtype)
        for a, cg, h, oi, g in np.ndindex(*out.shape):
            t, oo = cg * G + g, a * B + oi
            if t < c * kw and oo < o:
                out[a, cg, h, oi, g] = w4[oo, t // kw, h, t % kw]
        return out
    c4 = -(-c // G)
    out = np.zeros((ob, c4, kh, kw, B, G), w.dtype)
    for a, cg, h, k, oi, g in np.ndindex(*out.shape):
        oo = a * B + oi
        if cg * G + g < c and oo < o:
            out[a, cg, h, k, oi, g] = w4[oo, cg * G + g, h, k]
    return out


@pytest.mark.parametrize("shape,taps,block", [((5, 7, 3, 3), False, 1), ((20, 16, 1, 1), False, 16),
                                              ((9, 6, 3, 3), False, 4), ((3, 2, 3, 3), True, 2),
                                              ((33, 1, 10, 4), True, 8), ((3, 5, 4), False, 3), ((2, 1, 3), True, 1)])
def test_pack_conv_weights_is_the_layout(shape, taps, block):
    from edgec.backend.kernels.quant_conv import conv_w_packed_shape, pack_conv_weights
    from edgec.backend.kernels.quant_isa import isa_by_name
    isa = isa_by_name("vnni")
    w = RNG.integers(-128, 128, shape).astype(np.int8)
    got = pack_conv_weights(w, isa, taps, block)
    np.testing.assert_array_equal(got, _wpk_reference(w, isa.group, taps, block))
    assert got.flags.c_contiguous
    assert got.shape == conv_w_packed_shape(isa, shape[1], shape, block)


def test_pack_dense_weights_is_the_layout():
    from edgec.backend.kernels.quant_conv import pack_dense_weights
    from edgec.backend.kernels.quant_isa import isa_by_name
    isa = isa_by_name("vnni")
    L, G = isa.lanes, isa.group
    w = RNG.integers(-128, 128, (37, 33)).astype(np.int8)
    got = pack_dense_weights(w, isa)
    assert got.shape == (3, 9, L, G)
    for a, b, c, d in np.ndindex(*got.shape):
        row, col = a * L + c, b * G + d
        assert got[a, b, c, d] == (w[row, col] if row < 37 and col < 33 else 0)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_packed_and_unpacked_kernels_bit_exact(packed, unpacked, case):
    assert packed.packed_inputs(case) and list(packed.packed_inputs(case)) == [1]
    assert not unpacked.packed_inputs(case)
    want = case.reference()
    got_p, got_u = packed.run(case), unpacked.run(case)
    check(case, got_p)
    check(case, got_u)
    assert np.unique(want[0]).size > 2, case.id
    # the packed kernel has no weight-packing stage: its spec says so, and its kernel differs
    assert packed.kernel_of[case.id] != unpacked.kernel_of[case.id]


def test_every_tile_reads_the_packed_weights(tmp_path):
    """Tiles are tuned, the layout is not: every tile the generator offers for a conv with 33
    output channels (clamped last tile) and for a dense with 37 outputs gives the same bits."""
    from edgec.backend import tuning
    from edgec.backend.build import build_kernels, node_packing
    from edgec.backend.kernels.registry import KERNELS
    from ._harness import Runner, case_graph
    import subprocess
    import tvm
    tgt, _ = _vnni_host()
    cases = [c for c in CASES if c.id in ("c3x3_odd", "dense_odd")]
    g = case_graph(cases, const_weights=True)
    offers_of = {}
    for node in g.nodes:
        spec, packs = node_packing(g, node, tgt, prepack=True)
        assert packs
        with tuning.explore() as offers:
            KERNELS[node.op](spec)
        offers_of[node.name] = offers["tile"]
    assert len(offers_of["c3x3_odd"]) >= 3
    for k in range(max(len(v) for v in offers_of.values())):
        recs = tuning.TuningRecords(None)
        for node in g.nodes:
            spec, _ = node_packing(g, node, tgt, prepack=True)
            tiles = offers_of[node.name]
            recs.add(spec, {"config": {"tile": tiles[min(k, len(tiles) - 1)]}})
        wd = tmp_path / f"t{k}"
        lib = build_kernels(g, tgt, wd, cache=None, records=recs, prepack=True)
        assert lib.tuned_nodes == len(cases)
        so = wd / "t.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), *map(str, lib.objects), "-lm"], check=True)
        runner = Runner(lib, tvm.runtime.load_module(str(so)), cases, g, tgt)
        for c in cases:
            assert runner.packed_inputs(c) == {1: lib.calls[cases.index(c)].packed[0][1]}
            check(c, runner.run(c))


def test_what_packs():
    from edgec.backend import tuning
    from edgec.backend.build import node_packing
    from edgec.backend.kernels.registry import KERNELS
    from ._harness import case_graph
    tgt, isa = _vnni_host()
    avx2 = load_target("x86_64-avx2")
    convs = [c for c in CASES if c.op == "qconv"]
    g_const = case_graph(convs, const_weights=True)
    g_rt = case_graph(convs, const_weights=False)
    for node_c, node_r in zip(g_const.nodes, g_rt.nodes):
        spec, packs = node_packing(g_const, node_c, tgt, prepack=True)
        assert set(packs) == {1} and spec.attrs["w_layout"] == packs[1].layout
        assert spec.attrs["w_shape"] == tuple(g_const.values[node_c.inputs[1]].shape)
        assert spec.inputs[1] == packs[1].packed and spec.inputs[1].dtype == "int8"
        # the graph keeps the original weights
        assert g_const.values[node_c.inputs[1]].const.shape == spec.attrs["w_shape"]
        # channels in blocks of the default register tile's channels (the cost model's, not tuned)
        with tuning.explore() as offers:
            KERNELS["qconv"](spec)
        assert spec.inputs[1].shape[-2] == offers["tile"][0][0]
        # runtime weights, AVX2 (int16 weights: no doubling of the artifact), prepack off: no packing
        assert node_packing(g_rt, node_r, tgt, prepack=True)[1] == {}
        assert node_packing(g_const, node_c, avx2, prepack=True)[1] == {}
        plain, none = node_packing(g_const, node_c, tgt, prepack=False)
        assert none == {} and "w_layout" not in plain.attrs
    # the GEMV (few rows) reads the weights in place already: nothing to pack
    gemv = [_dense("gemv", 2, 16, 128)]
    g = case_graph(gemv, const_weights=True)
    assert node_packing(g, g.nodes[0], tgt, prepack=True)[1] == {}


def test_env_switch(monkeypatch):
    from edgec.backend.build import node_spec, prepack_enabled
    from ._harness import case_graph
    tgt, _ = _vnni_host()
    g = case_graph(CASES[:1], const_weights=True)
    monkeypatch.setenv("EDGEC_PREPACK", "0")
    assert not prepack_enabled() and "w_layout" not in node_spec(g, g.nodes[0], tgt).attrs
    monkeypatch.delenv("EDGEC_PREPACK")
    assert prepack_enabled() and "w_layout" in node_spec(g, g.nodes[0], tgt).attrs


def _shared_weight_graph():
    """x -> qconv(w) -> qconv(w) (the same constant) -> qconv(w2) -> y."""
    from edgec.ir.graph import Graph, Node, Value
    w = RNG.integers(-127, 128, (16, 16, 3, 3)).astype(np.int8)
    w2 = RNG.integers(-127, 128, (12, 16, 1, 1)).astype(np.int8)
    b = RNG.integers(-3000, 3000, 16).astype(np.int32)
    values = {
        "x": Value("x", "uint8", (1, 16, 6, 6)), "w": Value("w", "int8", w.shape, const=w),
        "w2": Value("w2", "int8", w2.shape, const=w2), "b": Value("b", "int32", b.shape, const=b),
        "a": Value("a", "uint8", (1, 16, 6, 6)), "c": Value("c", "uint8", (1, 16, 6, 6)),
        "y": Value("y", "uint8", (1, 12, 6, 6)),
    }
    base = {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1, "x_zero_point": 3,
            "multiplier": (1518500250,), "shift": (-9,), "out_zero_point": 5, "qmin": 0, "qmax": 255,
            "out_dtype": "uint8"}
    pw = dict(base, pads=(0, 0, 0, 0))
    nodes = [Node("qconv", ("x", "w", "b"), ("a",), dict(base), "conv_a"),
             Node("qconv", ("a", "w", "b"), ("c",), dict(base), "conv_b"),
             Node("qconv", ("c", "w2", ""), ("y",), pw, "conv_c")]
    from edgec.ir import ops as irops
    for n in nodes:
        n.attrs.update(irops.get(n.op).normalize_attrs(dict(n.attrs)))
    return Graph(nodes, values, ["x"], ["y"], name="shared")


def test_artifact_stores_packed_weights_once(tmp_path, monkeypatch):
    from edgec.artifact.blob import read_blob
    from edgec.compiler import compile_model
    import edgec
    _vnni_host()
    g = _shared_weight_graph()
    arts = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("EDGEC_PREPACK", mode)
        arts[mode] = compile_model(g, target="host", output_dir=tmp_path / f"art{mode}",
                                   cache_dir=tmp_path / "cache", tuning=False)
    blob_p = read_blob((arts["1"] / "model.edgec").read_bytes())
    blob_u = read_blob((arts["0"] / "model.edgec").read_bytes())
    consts_p = {t.name: t for t in blob_p.tensors if t.storage == "const"}
    consts_u = {t.name: t for t in blob_u.tensors if t.storage == "const"}
    assert set(consts_u) == {"w", "w2", "b"}
    # one packed tensor for the two convs reading w, none of the originals
    assert len(consts_p) == 3 and "b" in consts_p
    pw = next(n for n in consts_p if n.startswith("w#vnni_conv_o"))
    pw2 = next(n for n in consts_p if n.startswith("w2#vnni_conv_o"))
    assert blob_p.ops[0].args[1] == blob_p.ops[1].args[1] == [t.name for t in blob_p.tensors].index(pw)
    block = consts_p[pw].shape[-2]
    assert consts_p[pw].shape == (-(-16 // block), 4, 3, 3, block, 4)
    np.testing.assert_array_equal(np.frombuffer(consts_p[pw].data, np.int8).reshape(consts_p[pw].shape),
                                  _wpk_reference(g.values["w"].const, 4, False, block))
    np.testing.assert_array_equal(np.frombuffer(consts_p[pw2].data, np.int8).reshape(consts_p[pw2].shape),
                                  _wpk_reference(g.values["w2"].const, 4, False, consts_p[pw2].shape[-2]))
    # the report's constants are what the blob stores
    for mode, consts in (("1", consts_p), ("0", consts_u)):
        rep = json.loads((arts[mode] / "report.json").read_text())
        assert rep["summary"]["constant_bytes"] == sum(t.nbytes for t in consts.values())
        assert rep["summary"]["parameters"] == sum(int(np.prod(t.shape)) for t in consts.values())
    # the graph's constants are untouched, and both artifacts compute the same bits
    assert g.values["w"].const.shape == (16, 16, 3, 3)
    x = RNG.integers(0, 256, (1, 16, 6, 6)).astype(np.uint8)
    with edgec.load(arts["1"]) as a, edgec.load(arts["0"]) as b:
        ya, yb = a.run({"x": x})["y"], b.run({"x": x})["y"]
    np.testing.assert_array_equal(ya, yb)
    from edgec.reference.interpreter import run_graph
    np.testing.assert_array_equal(ya, run_graph(g, {"x": x})["y"])
    assert np.unique(ya).size > 2


def test_tune_sees_packed_specs():
    """edgec tune keys its records by the packed spec (node_spec), as build_kernels applies them."""
    from edgec.backend.build import node_spec
    from edgec.tune import _one_node_graph
    tgt, _ = _vnni_host()
    g = _shared_weight_graph()
    one = _one_node_graph(g, g.nodes[0])
    assert one.inputs == ["x"]
    spec = node_spec(one, one.nodes[0], tgt)
    blk = spec.inputs[1].shape[-2]
    assert spec.attrs["w_layout"] == f"vnni_conv_o{blk}g4" and spec.inputs[1].shape == (-(-16 // blk), 4, 3, 3, blk, 4)


def test_records_of_the_unpacked_spec_still_apply(tmp_path):
    """Tuning records written before pre-packing (keyed by the unpacked spec) are applied to the
    packed kernel: the same tile candidates."""
    from edgec.backend import tuning
    from edgec.backend.build import build_kernels, node_packing
    from edgec.backend.kernels.registry import KERNELS
    from ._harness import case_graph
    tgt, _ = _vnni_host()
    cases = [c for c in CASES if c.id == "c3x3_odd"]
    g = case_graph(cases, const_weights=True)
    plain, _ = node_packing(g, g.nodes[0], tgt, prepack=False)
    with tuning.explore() as offers:
        KERNELS["qconv"](plain)
    recs = tuning.TuningRecords(None)
    recs.add(plain, {"config": {"tile": offers["tile"][1]}})
    lib = build_kernels(g, tgt, tmp_path, cache=None, records=recs, prepack=True)
    assert lib.tuned_nodes == 1 and lib.calls[0].packed
