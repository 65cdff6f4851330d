import numpy as np
import pytest

from edgec.ir.verify import verify
from edgec.passes import eliminate_dead_code, simplify
from edgec.reference import run_graph

from ._graphs import builder, finish, rng


def _same_function(g0, g1, feeds, rtol=1e-5):
    a, b = run_graph(g0, feeds), run_graph(g1, feeds)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=rtol, atol=rtol * max(1.0, float(np.abs(a[k]).max())))


def _conv_attrs(k=3, group=1):
    return {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": group}


def _bn_consts(b, r, c):
    scale = b.add_const(r.uniform(0.5, 2, c).astype(np.float32), "s")
    shift = b.add_const(r.standard_normal(c).astype(np.float32), "b")
    mean = b.add_const(r.standard_normal(c).astype(np.float32), "m")
    var = b.add_const(r.uniform(0.1, 2, c).astype(np.float32), "v")
    return [scale, shift, mean, var]


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("group", [1, 2])
def test_batch_norm_folds_into_conv(with_bias, group):
    r = rng(1)
    b = builder({"x": ("float32", (1, 4, 6, 6))})
    w = b.add_const(r.standard_normal((8, 4 // group, 3, 3)).astype(np.float32), "w")
    bias = b.add_const(r.standard_normal(8).astype(np.float32), "bias") if with_bias else ""
    c = b.emit("conv", ["x", w, bias], _conv_attrs(group=group), name="conv")[0]
    y = b.emit("batch_norm", [c] + _bn_consts(b, r, 8), {"epsilon": 1e-3}, name="bn")[0]
    g = finish(b, ["x"], [y])
    out = eliminate_dead_code(simplify(g))
    verify(out)
    assert [n.op for n in out.nodes] == ["conv"]
    assert out.outputs == [y] and out.nodes[0].outputs == (y,)
    _same_function(g, out, {"x": r.standard_normal((1, 4, 6, 6)).astype(np.float32)})


def test_batch_norm_folds_into_grouped_conv_transpose():
    r = rng(2)
    b = builder({"x": ("float32", (1, 4, 5, 5))})
    w = b.add_const(r.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")  # C_in=4, M/group=3, group=2 -> M=6
    attrs = {"strides": (2, 2), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 2, "output_padding": (1, 1)}
    c = b.emit("conv_transpose", ["x", w, ""], attrs, name="ct")[0]
    y = b.emit("batch_norm", [c] + _bn_consts(b, r, 6), {"epsilon": 1e-5}, name="bn")[0]
    g = finish(b, ["x"], [y])
    out = eliminate_dead_code(simplify(g))
    verify(out)
    assert [n.op for n in out.nodes] == ["conv_transpose"]
    _same_function(g, out, {"x": r.standard_normal((1, 4, 5, 5)).astype(np.float32)})


def test_constant_mul_add_fold_into_dense():
    r = rng(3)
    b = builder({"x": ("float32", (2, 16))})
    w = b.add_const(r.standard_normal((8, 16)).astype(np.float32), "w")
    d = b.emit("dense", ["x", w, ""], name="fc")[0]
    m = b.emit("mul", [d, b.add_const(r.standard_normal(8).astype(np.float32), "k")], name="scale")[0]
    y = b.emit("add", [b.add_const(r.standard_normal((1, 8)).astype(np.float32), "t"), m], name="shift")[0]
    z = b.emit("sub", [y, b.add_const(np.float32(0.5), "h")], name="sub")[0]
    g = finish(b, ["x"], [z])
    out = eliminate_dead_code(simplify(g))
    verify(out)
    assert [n.op for n in out.nodes] == ["dense"]
    _same_function(g, out, {"x": r.standard_normal((2, 16)).astype(np.float32)})


def test_no_fold_when_conv_output_has_two_users_or_is_an_output():
    r = rng(4)
    b = builder({"x": ("float32", (1, 2, 4, 4))})
    w = b.add_const(r.standard_normal((2, 2, 3, 3)).astype(np.float32), "w")
    c = b.emit("conv", ["x", w, ""], _conv_attrs(), name="conv")[0]
    y = b.emit("batch_norm", [c] + _bn_consts(b, r, 2), {"epsilon": 1e-5}, name="bn")[0]
    g = finish(b, ["x"], [y, c])
    out = simplify(g)
    assert [n.op for n in out.nodes] == ["conv", "batch_norm"]


def test_per_element_constant_is_not_folded():
    r = rng(5)
    b = builder({"x": ("float32", (1, 2, 4, 4))})
    w = b.add_const(r.standard_normal((2, 2, 3, 3)).astype(np.float32), "w")
    c = b.emit("conv", ["x", w, ""], _conv_attrs(), name="conv")[0]
    y = b.emit("add", [c, b.add_const(r.standard_normal((1, 2, 4, 4)).astype(np.float32), "k")], name="add")[0]
    g = finish(b, ["x"], [y])
    assert [n.op for n in simplify(g).nodes] == ["conv", "add"]


def test_reshape_and_transpose_chains():
    r = rng(6)
    b = builder({"x": ("float32", (2, 3, 4))})
    a = b.emit("reshape", ["x"], {"shape": (6, 4)}, name="r1")[0]
    a = b.emit("reshape", [a], {"shape": (24,)}, name="r2")[0]
    a = b.emit("reshape", [a], {"shape": (24,)}, name="r3")[0]       # no-op
    t = b.emit("reshape", [a], {"shape": (2, 3, 4)}, name="r4")[0]
    t = b.emit("transpose", [t], {"perm": (1, 2, 0)}, name="t1")[0]
    t = b.emit("transpose", [t], {"perm": (2, 0, 1)}, name="t2")[0]   # composes to identity
    y = b.emit("relu", [t], name="y")[0]
    g = finish(b, ["x"], [y])
    out = eliminate_dead_code(simplify(g))
    verify(out)
    # reshapes collapse into one that restores x's own shape, so it vanishes; transposes cancel
    assert [n.op for n in out.nodes] == ["relu"]
    _same_function(g, out, {"x": r.standard_normal((2, 3, 4)).astype(np.float32)})


def test_reshape_chain_to_new_shape_keeps_one_reshape():
    r = rng(7)
    b = builder({"x": ("float32", (2, 3, 4))})
    a = b.emit("reshape", ["x"], {"shape": (6, 4)}, name="r1")[0]
    a = b.emit("reshape", [a], {"shape": (4, 6)}, name="r2")[0]
    t = b.emit("transpose", [a], {"perm": (1, 0)}, name="t1")[0]
    t = b.emit("transpose", [t], {"perm": (1, 0)}, name="t2")[0]
    y = b.emit("transpose", [t], {"perm": (1, 0)}, name="t3")[0]
    g = finish(b, ["x"], [y])
    out = eliminate_dead_code(simplify(g))
    verify(out)
    assert [n.op for n in out.nodes] == ["reshape", "transpose"]
    assert out.nodes[0].inputs == ("x",) and out.nodes[0].attrs["shape"] == (4, 6)
    _same_function(g, out, {"x": r.standard_normal((2, 3, 4)).astype(np.float32)})


@pytest.mark.parametrize("op", ["conv", "dense"])
def test_hard_sigmoid_affine_folds_into_producer(op):
    """hard_sigmoid(conv(x)) -> clip(conv'(x), 0, 1) with w' = alpha w, b' = alpha b + beta
    (the squeeze-excitation gate of MobileNetV3 / PP-OCR)."""
    r = rng(7)
    if op == "conv":
        b = builder({"x": ("float32", (1, 4, 5, 5))})
        w = b.add_const(r.standard_normal((6, 4, 3, 3)).astype(np.float32), "w")
        bias = b.add_const(r.standard_normal(6).astype(np.float32), "bias")
        c = b.emit("conv", ["x", w, bias], _conv_attrs(), name="conv")[0]
        feeds = {"x": r.standard_normal((1, 4, 5, 5)).astype(np.float32)}
    else:
        b = builder({"x": ("float32", (2, 8))})
        w = b.add_const(r.standard_normal((5, 8)).astype(np.float32), "w")
        c = b.emit("dense", ["x", w, ""], {}, name="fc")[0]
        feeds = {"x": r.standard_normal((2, 8)).astype(np.float32)}
    y = b.emit("hard_sigmoid", [c], {"alpha": 0.25, "beta": 0.4}, name="hs")[0]
    g = finish(b, ["x"], [y])
    out = eliminate_dead_code(simplify(g))
    verify(out)
    assert [n.op for n in out.nodes] == [op, "clip"]
    assert dict(out.nodes[1].attrs) == {"min": 0.0, "max": 1.0} and out.outputs == [y]
    got = run_graph(out, feeds)[y]
    assert 0 < np.mean((got > 0) & (got < 1)) < 1   # both the linear part and the bounds are exercised
    _same_function(g, out, feeds)


def test_hard_sigmoid_not_folded_when_conv_output_is_shared_or_slope_not_positive():
    r = rng(8)
    for alpha, shared in ((0.2, True), (-0.5, False), (0.0, False)):
        b = builder({"x": ("float32", (1, 2, 4, 4))})
        w = b.add_const(r.standard_normal((3, 2, 3, 3)).astype(np.float32), "w")
        c = b.emit("conv", ["x", w, ""], _conv_attrs(), name="conv")[0]
        y = b.emit("hard_sigmoid", [c], {"alpha": alpha, "beta": 0.5}, name="hs")[0]
        outs = [y, c] if shared else [y]
        g = finish(b, ["x"], outs)
        out = eliminate_dead_code(simplify(g))
        assert [n.op for n in out.nodes] == ["conv", "hard_sigmoid"], (alpha, shared)
        _same_function(g, out, {"x": r.standard_normal((1, 2, 4, 4)).astype(np.float32)})
