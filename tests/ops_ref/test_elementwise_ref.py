"""Elementwise converters + references against onnxruntime (one-node models, runtime inputs)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.ops_ref._harness import assert_match, check, node_model, rand, run_ort, run_ref

SHAPES = [(), (7,), (2, 3, 4)]

# (ONNX op, IR op, opsets, attrs, input range)
UNARY = [
    ("Relu", "relu", (7, 14), {}, (-3, 3)),
    ("Sigmoid", "sigmoid", (7, 13), {}, (-20, 20)),
    ("Tanh", "tanh", (7, 13), {}, (-5, 5)),
    ("Erf", "erf", (9, 13), {}, (-3, 3)),
    ("Sqrt", "sqrt", (7, 13), {}, (0, 9)),
    ("Exp", "exp", (7, 13), {}, (-10, 10)),
    ("Log", "log", (7, 13), {}, (0.01, 100)),
    ("Abs", "abs", (7, 13), {}, (-3, 3)),
    ("Neg", "neg", (7, 13), {}, (-3, 3)),
    ("Reciprocal", "reciprocal", (7, 13), {}, (0.5, 3)),
    ("Floor", "floor", (7, 13), {}, (-3, 3)),
    ("Ceil", "ceil", (7, 13), {}, (-3, 3)),
    ("Sign", "sign", (9, 13), {}, (-3, 3)),
    ("Sin", "sin", (7, 22), {}, (-6, 6)),
    ("Cos", "cos", (7, 22), {}, (-6, 6)),
    ("Softplus", "softplus", (7, 22), {}, (-30, 30)),
    ("Softsign", "softsign", (7, 22), {}, (-5, 5)),
    ("HardSwish", "hard_swish", (14, 22), {}, (-5, 5)),
    ("LeakyRelu", "leaky_relu", (7, 16), {}, (-3, 3)),
    ("LeakyRelu", "leaky_relu", (16,), {"alpha": 0.2}, (-3, 3)),
    ("Elu", "elu", (7, 22), {}, (-3, 3)),
    ("Elu", "elu", (7,), {"alpha": 0.5}, (-3, 3)),
    ("Selu", "selu", (7, 22), {}, (-3, 3)),
    ("Selu", "selu", (7,), {"alpha": 1.5, "gamma": 2.0}, (-3, 3)),
    ("HardSigmoid", "hard_sigmoid", (7, 22), {}, (-6, 6)),
    ("HardSigmoid", "hard_sigmoid", (7,), {"alpha": 0.3, "beta": 0.4}, (-6, 6)),
    ("Gelu", "gelu", (20,), {}, (-4, 4)),
    ("Gelu", "gelu", (20,), {"approximate": "tanh"}, (-4, 4)),
]


@pytest.mark.parametrize("op,ir,opsets,attrs,rng", UNARY, ids=[f"{u[0]}-{u[3]}" for u in UNARY])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_unary_float32(op, ir, opsets, attrs, rng, shape):
    x = rand(shape, "float32", seed=len(shape), low=rng[0], high=rng[1])
    for opset in opsets:
        check(node_model(op, {"x": x}, attrs=attrs, opset=opset), {"x": x}, expect_ops=[ir])


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "Exp", "Abs", "Neg", "Floor", "Ceil", "Sqrt", "Relu", "Round"])
def test_unary_float64(op):
    x = rand((3, 5), "float64", seed=1, low=0.1 if op == "Sqrt" else -4, high=4)
    check(node_model(op, {"x": x}, opset=13 if op != "Round" else 11), {"x": x})


def test_round_half_to_even():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999997, -3.7, 2.2], dtype=np.float32)
    g = check(node_model("Round", {"x": x}, opset=11), {"x": x}, expect_ops=["round"])
    from edgec.reference import run_graph
    assert run_graph(g, {"x": x})["y"].tolist() == [-2, -2, -0, 0, 2, 2, 4, 0, -4, 2]


# onnxruntime has no int64 Relu kernel
UNARY_INT = [(op, dt) for op in ("Abs", "Neg", "Sign") for dt in ("int8", "int32", "int64")] + \
    [("Relu", "int8"), ("Relu", "int32"), ("Abs", "uint8"), ("Sign", "uint16")]


@pytest.mark.parametrize("op,dtype", UNARY_INT)
def test_unary_int(op, dtype):
    x = rand((4, 6), dtype, seed=2, low=-100, high=100)
    check(node_model(op, {"x": x}, opset=14), {"x": x})


def test_not():
    x = rand((3, 4), "bool", seed=3)
    check(node_model("Not", {"x": x}, opset=7), {"x": x}, expect_ops=["not"])


@pytest.mark.parametrize("opset", [7, 10, 12, 13, 22])
def test_dropout_is_identity_with_mask(opset):
    x = rand((2, 5), "float32")
    model = node_model("Dropout", {"x": x}, outputs=("y", "mask"), attrs={"ratio": 0.3} if opset < 12 else {},
                       opset=opset)
    graph, (y, mask) = run_ref(model, {"x": x})
    assert [n.op for n in graph.nodes] == ["copy", "copy"]
    assert_match(y, run_ort(model, {"x": x})[0])
    # ONNX (and its reference implementation) define the inference mask as all ones; onnxruntime
    # returns all False for Dropout-10, so the mask is checked against the spec here
    assert mask.dtype == (np.float32 if opset < 10 else np.bool_) and mask.shape == x.shape and mask.all()


def test_dropout_training_mode():
    x = rand((2, 5), "float32")
    feeds = {"x": x}
    off = node_model("Dropout", feeds, consts={"r": np.array(0.5, np.float32), "t": np.array(False)},
                     outputs=("y", "mask"), opset=13)
    check(off, feeds)
    from edgec.errors import UnsupportedModelError
    from edgec.frontend.onnx_import import import_onnx
    on = node_model("Dropout", feeds, consts={"r": np.array(0.5, np.float32), "t": np.array(True)}, opset=13)
    with pytest.raises(UnsupportedModelError, match="training_mode"):
        import_onnx(on)


# -- clip -----------------------------------------------------------------------------------------

def test_clip_6_attrs():
    x = rand((3, 4), "float32")
    check(node_model("Clip", {"x": x}, attrs={"min": -1.0, "max": 0.5}, opset=7), {"x": x}, expect_ops=["clip"])
    check(node_model("Clip", {"x": x}, attrs={"max": 0.5}, opset=7), {"x": x}, expect_ops=["clip"])


@pytest.mark.parametrize("dtype", ["float32", "int32", "int8", "float64"])
@pytest.mark.parametrize("bounds", [(-1, 2), (None, 1), (-2, None), (2, -1)], ids=str)
def test_clip_const_bounds(dtype, bounds):
    x = rand((3, 4), dtype, low=-4, high=4)
    consts, names = {}, ["x"]
    for name, b in zip(("lo", "hi"), bounds):
        if b is not None:
            consts[name] = np.array(b, dtype=dtype)
        names.append(name if b is not None else "")
    while names[-1] == "":
        names.pop()
    check(node_model("Clip", {"x": x}, consts=consts, inputs=names, opset=13), {"x": x}, expect_ops=["clip"])


@pytest.mark.parametrize("bounds", [(-1.0, 2.0), (1.0, -1.0)], ids=str)
def test_clip_runtime_bounds(bounds):
    x = rand((3, 4), "float32")
    feeds = {"x": x, "lo": np.array(bounds[0], np.float32), "hi": np.array(bounds[1], np.float32)}
    check(node_model("Clip", feeds, opset=13), feeds, expect_ops=["max", "min"])
    feeds2 = {"x": x, "lo": np.array(bounds[0], np.float32)}
    check(node_model("Clip", feeds2, consts={"hi": np.array(bounds[1], np.float32)}, opset=12), feeds2,
          expect_ops=["max", "clip"])


# -- cast -----------------------------------------------------------------------------------------

CAST_PAIRS = [("float32", "int32"), ("float32", "int8"), ("float32", "bool"), ("float32", "float16"),
              ("float32", "float64"), ("float64", "float32"), ("int32", "float32"), ("int64", "int32"),
              ("int32", "int8"), ("int32", "uint8"), ("bool", "float32"), ("bool", "int64"), ("uint8", "float32"),
              ("int64", "bool"), ("float16", "float32"), ("int8", "int64")]


@pytest.mark.parametrize("src,dst", CAST_PAIRS, ids=[f"{a}->{b}" for a, b in CAST_PAIRS])
def test_cast(src, dst):
    import onnx.helper as h
    low, high = (-100, 100) if src != "uint8" else (0, 255)
    if dst == "uint8":
        low = 0
    if dst == "int8" and src.startswith("float"):
        low, high = -100, 100
    x = rand((3, 7), src, seed=4, low=low, high=high)
    if src.startswith("float"):
        x[0, :3] = [0.0, -0.0, 2.5]
    to = h.np_dtype_to_tensor_dtype(np.dtype(dst))
    for opset in (9, 13, 19):
        check(node_model("Cast", {"x": x}, attrs={"to": to}, opset=opset), {"x": x}, expect_ops=["cast"])


def test_cast_like_and_noop_cast():
    x = rand((2, 3), "float32")
    like = np.zeros((1,), np.int64)
    check(node_model("CastLike", {"x": x}, consts={"like": like}, opset=15), {"x": x}, expect_ops=["cast"])
    check(node_model("Cast", {"x": x}, attrs={"to": 1}, opset=13), {"x": x}, expect_ops=["copy"])


def test_cast_to_unsupported_type_is_reported():
    from edgec.errors import UnsupportedModelError
    from edgec.frontend.onnx_import import import_onnx
    x = rand((2,), "float32")
    with pytest.raises(UnsupportedModelError, match="bfloat16"):
        import_onnx(node_model("Cast", {"x": x}, attrs={"to": 16}, opset=13))


# -- binary ---------------------------------------------------------------------------------------

BROADCAST = [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (2, 3)), ((2, 1, 4), (3, 1))]
ARITH = [("Add", "add"), ("Sub", "sub"), ("Mul", "mul"), ("Div", "div"), ("Max", "max"), ("Min", "min")]


@pytest.mark.parametrize("op,ir", ARITH)
@pytest.mark.parametrize("shapes", BROADCAST, ids=str)
def test_binary_float(op, ir, shapes):
    a = rand(shapes[0], "float32", seed=5)
    b = rand(shapes[1], "float32", seed=6)
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, 1.0, b).astype(np.float32)
    for opset in (8, 13) if op in ("Max", "Min") else (7, 13, 14):
        check(node_model(op, {"a": a, "b": b}, opset=opset), {"a": a, "b": b}, expect_ops=[ir])


@pytest.mark.parametrize("dtype", ["int32", "int64", "int8", "uint8", "float64"])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min"])
def test_binary_other_dtypes(op, dtype):
    a = rand((4, 5), dtype, seed=7, low=-50, high=50)
    b = rand((5,), dtype, seed=8, low=-9, high=9)
    if op == "Div":
        b[b == 0] = 3
    check(node_model(op, {"a": a, "b": b}, opset=14), {"a": a, "b": b})


def test_integer_division_truncates_and_overflow_wraps():
    a = np.array([7, -7, 7, -7, 1, -1, 0, 127, -128], np.int8)
    b = np.array([2, 2, -2, -2, 3, 3, 5, 2, 3], np.int8)
    for op in ("Div", "Add", "Mul", "Sub"):
        check(node_model(op, {"a": a, "b": b}, opset=14), {"a": a, "b": b})


@pytest.mark.parametrize("fmod", [0, 1])
@pytest.mark.parametrize("dtype", ["int32", "int64", "int8", "uint8"])
def test_mod_int(fmod, dtype):
    a = rand((4, 6), dtype, seed=9, low=-30, high=30)
    b = rand((6,), dtype, seed=10, low=-7, high=7)
    b[b == 0] = 4
    check(node_model("Mod", {"a": a, "b": b}, attrs={"fmod": fmod}, opset=13), {"a": a, "b": b}, expect_ops=["mod"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mod_float_fmod(dtype):
    a = rand((4, 6), dtype, seed=11, low=-10, high=10)
    b = rand((4, 6), dtype, seed=12, low=0.5, high=3)
    b[::2] *= -1
    check(node_model("Mod", {"a": a, "b": b}, attrs={"fmod": 1}, opset=10), {"a": a, "b": b}, expect_ops=["mod"])


POW_TYPES = [("float32", "float32"), ("float32", "int64"), ("int32", "int32"), ("int64", "int64"),
             ("int32", "float32"), ("float64", "float64"), ("float32", "int32")]


@pytest.mark.parametrize("ta,tb", POW_TYPES, ids=[f"{a}^{b}" for a, b in POW_TYPES])
def test_pow(ta, tb):
    a = rand((3, 4), ta, seed=13, low=1 if ta.startswith("float") else -5, high=4)
    b = rand((4,), tb, seed=14, low=-2 if tb.startswith("float") else 0, high=3)
    opset = 7 if ta == tb and ta.startswith("float") else 15
    check(node_model("Pow", {"a": a, "b": b}, opset=opset), {"a": a, "b": b}, expect_ops=["pow"])


def test_pow_int_negative_exponent_truncates():
    a = np.array([2, -2, 1, -1, 3, 4], np.int64)
    b = np.array([-1, -1, -3, -3, 2, 0], np.int64)
    check(node_model("Pow", {"a": a, "b": b}, opset=15), {"a": a, "b": b})


COMPARE = [("Equal", 11), ("Equal", 19), ("Less", 9), ("Greater", 9), ("LessOrEqual", 12), ("GreaterOrEqual", 16)]


@pytest.mark.parametrize("op,opset", COMPARE, ids=[f"{o}-{s}" for o, s in COMPARE])
@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
def test_compare(op, opset, dtype):
    a = rand((3, 4), dtype, seed=15, low=-3, high=3)
    b = rand((4,), dtype, seed=16, low=-3, high=3)
    b[0] = a[0, 0]
    check(node_model(op, {"a": a, "b": b}, opset=opset), {"a": a, "b": b})


def test_equal_7_int():
    a, b = rand((3, 4), "int64", seed=1, low=-2, high=2), rand((3, 4), "int64", seed=2, low=-2, high=2)
    check(node_model("Equal", {"a": a, "b": b}, opset=7), {"a": a, "b": b}, expect_ops=["equal"])


def test_equal_bool():
    a, b = rand((3, 4), "bool", seed=1), rand((3, 4), "bool", seed=2)
    check(node_model("Equal", {"a": a, "b": b}, opset=13), {"a": a, "b": b}, expect_ops=["equal"])


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_logic(op):
    a, b = rand((3, 4), "bool", seed=1), rand((4,), "bool", seed=2)
    check(node_model(op, {"a": a, "b": b}, opset=7), {"a": a, "b": b}, expect_ops=[op.lower()])


@pytest.mark.parametrize("dtype", ["float32", "int64", "uint8"])
def test_where(dtype):
    c = rand((3, 1, 4), "bool", seed=3)
    a = rand((2, 4), dtype, seed=4)
    b = rand((3, 2, 1), dtype, seed=5)
    for opset in (9, 16):
        check(node_model("Where", {"c": c, "a": a, "b": b}, opset=opset), {"c": c, "a": a, "b": b},
              expect_ops=["where"])


@pytest.mark.parametrize("slope_shape", [(1,), (3, 1, 1), (4,), (2, 3, 5, 4)], ids=str)
def test_prelu(slope_shape):
    x = rand((2, 3, 5, 4), "float32", seed=6)
    s = rand(slope_shape, "float32", seed=7, low=0, high=1)
    for opset in (7, 9, 16):
        check(node_model("PRelu", {"x": x, "s": s}, opset=opset), {"x": x, "s": s}, expect_ops=["prelu"])


# -- variadic -------------------------------------------------------------------------------------

@pytest.mark.parametrize("op,ir", [("Sum", "add"), ("Max", "max"), ("Min", "min"), ("Mean", "add")])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_variadic(op, ir, n):
    shapes = [(2, 3, 4), (4,), (3, 1), (1, 1, 1)][:n]
    feeds = {f"x{k}": rand(s, "float32", seed=20 + k) for k, s in enumerate(shapes)}
    g = check(node_model(op, feeds, opset=8 if n > 1 else 7), feeds)
    want = ["copy"] if n == 1 else [ir] * (n - 1) + (["mul"] if op == "Mean" else [])
    assert [x.op for x in g.nodes] == want


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_variadic_int(op):
    feeds = {f"x{k}": rand((2, 5), "int32", seed=30 + k, low=-9, high=9) for k in range(3)}
    check(node_model(op, feeds, opset=13), feeds)


# -- float16 --------------------------------------------------------------------------------------

FP16_UNARY = ["Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Abs", "Neg", "Floor", "Ceil", "Round", "Erf",
              "LeakyRelu", "Elu", "HardSigmoid", "HardSwish", "Softplus", "Gelu", "Reciprocal", "Sign", "Sin", "Cos"]


@pytest.mark.parametrize("op", FP16_UNARY)
def test_unary_float16(op):
    x = rand((3, 5), "float16", seed=8, low=0.1, high=3)
    x[0, :2] = [-1.5, -0.25]
    if op in ("Log", "Sqrt"):
        x = np.abs(x)
    check(node_model(op, {"x": x}, opset=20), {"x": x})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Equal", "Less"])
def test_binary_float16(op):
    a = rand((3, 4), "float16", seed=9, low=0.5, high=2)
    b = rand((4,), "float16", seed=10, low=0.5, high=2)
    check(node_model(op, {"a": a, "b": b}, opset=20), {"a": a, "b": b})


# -- activations lowered to several IR ops ---------------------------------------------------------

@pytest.mark.parametrize("op,opset,attrs,ops", [
    ("Celu", 12, {}, ["elu"]),
    ("Celu", 12, {"alpha": 0.5}, ["div", "elu", "mul"]),
    ("ThresholdedRelu", 10, {}, ["greater", "where"]),
    ("ThresholdedRelu", 22, {"alpha": 0.3}, ["greater", "where"]),
    ("Mish", 18, {}, ["softplus", "tanh", "mul"]),
], ids=str)
def test_composite_activations(op, opset, attrs, ops):
    x = rand((3, 7), "float32", seed=12, low=-4, high=4)
    check(node_model(op, {"x": x}, attrs=attrs, opset=opset), {"x": x}, expect_ops=ops)
