"""Elementwise kernels (edgec/backend/kernels/elementwise.py) against the numpy references."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ._harness import NONFINITE, SPECIAL_F32, assert_same, check, rand, run

pytestmark = pytest.mark.tvm

FLOAT_UNARY = ["relu", "sigmoid", "tanh", "erf", "exp", "abs", "neg", "reciprocal", "floor", "ceil",
               "round", "sign", "sin", "cos", "softplus", "softsign", "hard_swish", "leaky_relu", "elu",
               "selu", "hard_sigmoid", "gelu", "sqrt", "log"]
# functions whose input domain is restricted for a meaningful (finite) comparison
POSITIVE = {"sqrt", "log"}


def _unary_input(op: str, rng, shape=(3, 5, 17), dtype="float32") -> np.ndarray:
    x = rand(rng, shape, "float64", -6, 6)
    flat = x.reshape(-1)
    n = min(flat.size, SPECIAL_F32.size + 3)
    if n:  # edge values first, then nonfinite, then the random rest
        flat[:n] = np.concatenate([SPECIAL_F32, NONFINITE])[:n]
    if op in POSITIVE:
        x = np.abs(x) + 1e-3 * (x == 0)
        x.reshape(-1)[: min(3, x.size)] = [0.0, np.inf, np.nan][: min(3, x.size)]
    with np.errstate(over="ignore"):   # 3e38 -> float16 inf is deliberate
        return x.astype(dtype)


@pytest.mark.parametrize("op", FLOAT_UNARY)
def test_float_unary_f32_with_edges(op):
    rng = np.random.default_rng(hash(op) % 2**32)
    check(op, [_unary_input(op, rng)])


@pytest.mark.parametrize("op", ["sigmoid", "tanh", "erf", "exp", "gelu", "elu", "softplus", "selu"])
def test_transcendental_dense_sweep(op):
    """Relative accuracy of the vectorized float32 math over a wide, dense range."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-1e-3, 1e-3, 2048), rng.uniform(-90, 90, 4096),
                        rng.standard_normal(2048) * 1e-6, rng.uniform(-6, 6, 4096),
                        np.linspace(0.25, 0.55, 1024)]).astype(np.float32)
    # the gelu reference computes 1 + erf(x/sqrt2) in float64, which cancels to ~1e-16
    # absolute in the far negative tail (the kernel uses erfc there and is closer to exact)
    check(op, [x], atol=1e-15 if op == "gelu" else 1e-37)


@pytest.mark.parametrize("op,dtype", [("sigmoid", "float16"), ("tanh", "float64"), ("exp", "float64"),
                                      ("erf", "float16"), ("gelu", "float64"), ("elu", "float64"),
                                      ("round", "float64"), ("abs", "float16"), ("softplus", "float16"),
                                      ("hard_swish", "float64"), ("sign", "float16"), ("leaky_relu", "float16")])
def test_float_unary_other_dtypes(op, dtype):
    rng = np.random.default_rng(3)
    check(op, [_unary_input(op, rng, (4, 33), dtype)])


@pytest.mark.parametrize("shape", [(), (1,), (7,), (1000, 129)])
def test_unary_shapes(shape):
    """Rank 0 and 1, odd sizes, and a size large enough for the parallel schedule."""
    rng = np.random.default_rng(5)
    for op in ("sigmoid", "neg"):
        check(op, [rand(rng, shape, "float32")])


def test_gelu_tanh_and_attrs():
    rng = np.random.default_rng(11)
    x = rand(rng, (6, 40), "float32", -8, 8)
    check("gelu", [x], {"approximate": "tanh"})
    check("leaky_relu", [x], {"alpha": 0.3})
    check("elu", [x], {"alpha": 2.0})
    check("selu", [x], {"alpha": 1.5, "gamma": 2.0})
    check("hard_sigmoid", [x], {"alpha": 0.1, "beta": 0.6})


def test_log_over_all_magnitudes():
    """Normal and denormal inputs, around 1 (cancellation) and the special values."""
    x = np.concatenate([np.logspace(-45, 38, 3000), 1 + np.linspace(-1e-3, 1e-3, 1001),
                        [0.0, -0.0, -1.0, np.inf, np.nan, 1.0, 2.0, 0.5]]).astype(np.float32)
    check("log", [x], atol=1e-37)
    check("softplus", [np.concatenate([-x, x])], atol=1e-37)


def test_round_half_to_even_and_floor_ceil():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 3.5, 1e8 + 1, -0.0, 2.4, -2.6], np.float32)
    got = run("round", {}, [x], [("float32", x.shape)])[0]
    np.testing.assert_array_equal(got, np.round(x))
    assert list(got[:6]) == [0.0, 2.0, 2.0, -0.0, -2.0, -2.0]
    check("floor", [x])
    check("ceil", [x])


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8", "uint32"])
def test_integer_unary(dtype):
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype)
    x = rand(rng, (5, 19), dtype, -100, 100)
    x.reshape(-1)[:3] = [info.min, info.max, 0]
    ops = ["abs", "sign"] + (["relu", "neg"] if info.min < 0 else [])
    for op in ops:
        check(op, [x])
    check("clip", [x], {"min": 3, "max": 50})
    check("clip", [x], {"min": 2.7, "max": None})


def test_clip_float_nan_and_bounds():
    x = np.concatenate([SPECIAL_F32, NONFINITE])
    check("clip", [x], {"min": -1.0, "max": 2.0})
    check("clip", [x], {"min": None, "max": 0.25})
    check("clip", [x], {"min": 1.0, "max": -1.0})   # min > max: max everywhere
    check("clip", [x], {"min": None, "max": None})


def test_not_and_bool_copy():
    rng = np.random.default_rng(9)
    b = rand(rng, (3, 37), "bool")
    check("not", [b])
    check("copy", [b])


@pytest.mark.parametrize("dtype", ["float32", "int8", "uint16", "int64", "bool", "float16"])
def test_copy(dtype):
    rng = np.random.default_rng(1)
    for shape in [(), (5,), (3, 4, 9)]:
        check("copy", [rand(rng, shape, dtype)])


# ----------------------------------------------------------------------------- cast

CAST_DTYPES = ["float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16",
               "uint32", "uint64", "bool"]


def _cast_source(src: str, rng) -> np.ndarray:
    if src == "bool":
        return rand(rng, (41,), "bool")
    if np.dtype(src).kind == "f":
        # values every integer dtype can hold after truncation, halves, negative zero
        x = np.concatenate([[0.0, -0.0, 0.5, -0.5, 1.9, -1.9, 2.5, 100.7, 126.9, -127.9],
                            rng.uniform(-120, 120, 31)])
        return x.astype(src)
    x = rand(rng, (41,), src, -120, 120)
    return x


@pytest.mark.parametrize("src", CAST_DTYPES)
def test_cast_all_pairs(src):
    rng = np.random.default_rng(CAST_DTYPES.index(src))
    x = _cast_source(src, rng)
    for to in CAST_DTYPES:
        if x.dtype.kind == "f" and to.startswith("uint"):
            xs = np.abs(x)   # negative floats to unsigned: see test_cast_negative_float_to_unsigned
        else:
            xs = x
        check("cast", [xs], {"to": to})


def test_cast_negative_float_to_unsigned_wraps_like_numpy():
    x = np.array([-1.0, -1.5, -200.0, -300.0, 70000.0, 5.5], np.float32)
    for to in ("uint8", "uint16", "uint32", "uint64", "int8", "int16"):
        got = run("cast", {"to": to}, [x], [(to, x.shape)])[0]
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(got, x.astype(to), err_msg=to)


def test_cast_to_bool_and_big_values():
    x = np.array([0.0, -0.0, np.nan, np.inf, 1e-40, -3.0, 0.25], np.float32)
    got = run("cast", {"to": "bool"}, [x], [("bool", x.shape)])[0]
    np.testing.assert_array_equal(got, [False, False, True, True, True, True, True])
    i = np.array([0, 2, -1, 256, 1 << 40], np.int64)
    check("cast", [i], {"to": "bool"})
    check("cast", [i], {"to": "uint8"})      # int -> narrower int wraps
    big = np.array([1e19, 2.0 ** 63, 2.0 ** 62, 3e9, 1.5e10], np.float64)
    check("cast", [big], {"to": "uint64"})
    check("cast", [np.array([3e9, 4e9], np.float64)], {"to": "uint32"})
    check("cast", [np.array([70000.5, -1e-3, 65504.0, 1e-8], np.float32)], {"to": "float16"})


# ----------------------------------------------------------------------------- binary

BCAST_SHAPES = [((3, 1, 5), (4, 1)), ((), (6,)), ((2, 3, 4), (2, 3, 4)), ((7,), ()), ((1, 9), (5, 1))]
ARITH = ["add", "sub", "mul", "div", "max", "min", "mod", "pow"]
COMPARE = ["equal", "less", "less_equal", "greater", "greater_equal"]


@pytest.mark.parametrize("shapes", BCAST_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_binary_float_broadcasting(shapes):
    rng = np.random.default_rng(len(shapes[0]) * 10 + len(shapes[1]))
    a = rand(rng, shapes[0], "float32", -4, 4)
    b = rand(rng, shapes[1], "float32", -4, 4)
    every = BCAST_SHAPES.index(shapes) < 2        # every op on two shape pairs, a sample on the rest
    for op in ARITH + COMPARE if every else ["add", "div", "pow", "max", "less", "mod"]:
        bb = np.round(b) if op == "pow" else b      # negative bases need integer exponents
        check(op, [a, bb])


def test_binary_float_specials():
    v = np.concatenate([SPECIAL_F32[:10], NONFINITE, [3.0, -3.0]]).astype(np.float32)
    a, b = np.meshgrid(v, v, indexing="ij")
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    for op in ["add", "sub", "mul", "div", "max", "min", "equal", "less", "greater_equal"]:
        check(op, [a, b])
    for fmod in (0, 1):
        check("mod", [a, b], {"fmod": fmod})


def test_max_min_propagate_nan_in_either_operand():
    a = np.array([np.nan, 1.0, np.nan, 2.0] * 8, np.float32)
    b = np.array([1.0, np.nan, np.nan, 3.0] * 8, np.float32)
    for op, want in (("max", np.maximum(a, b)), ("min", np.minimum(a, b))):
        got = run(op, {}, [a, b], [("float32", a.shape)])[0]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_pow_negative_base_and_mixed_dtypes():
    a = np.array([-2.0, -2.0, -0.5, 2.0, 0.0, -3.0, 4.0, -8.0], np.float32)
    b = np.array([3.0, 2.0, -3.0, 0.5, 0.0, 1.5, -0.5, 1.0 / 3], np.float32)
    check("pow", [a, b])
    check("pow", [a, np.array([3, 2, -3, 2, 0, 1, 2, 5], np.int64)])
    ai = np.array([2, -3, 5, 0, 7, -2, 10, 3], np.int32)
    check("pow", [ai, np.array([10, 3, 0, 4, 2, 5, 9, -1], np.int32)])
    check("pow", [ai, np.array([0.5, 2.0, 1.5, 3.0, 1.0, 3.0, 2.0, 2.0], np.float32)])


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "uint32"])
def test_integer_division_and_mod_exhaustive_signs(dtype):
    info = np.iinfo(dtype)
    vals = np.array(sorted({0, 1, 2, 3, 7, 13, int(info.max), int(info.max) - 1}
                           | ({-1, -2, -3, -7, -13, int(info.min), int(info.min) + 1} if info.min < 0 else set())),
                    dtype=np.int64).astype(dtype)
    a, b = np.meshgrid(vals, vals, indexing="ij")
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    check("div", [a, b])
    check("mod", [a, b], {"fmod": 0})
    check("mod", [a, b], {"fmod": 1})
    # the contract, independent of the reference: C truncation, 0 for a zero divisor
    got = run("div", {}, [a, b], [(dtype, a.shape)])[0]
    bits = np.dtype(dtype).itemsize * 8
    for x, y, q in zip(a.ravel().tolist(), b.ravel().tolist(), got.ravel().tolist()):
        want = 0 if y == 0 else (abs(x) // abs(y)) * (1 if (x < 0) == (y < 0) else -1)
        if info.min < 0 and want > info.max:      # MIN / -1 wraps
            want -= 1 << bits
        assert q == want, (x, y, q, want)
    if dtype in ("int32", "uint8"):
        for op in ("add", "sub", "mul", "max", "min") + tuple(COMPARE):
            check(op, [a, b])


def test_logic_and_bool_equal():
    rng = np.random.default_rng(4)
    a, b = rand(rng, (4, 1, 9), "bool"), rand(rng, (5, 9), "bool")
    for op in ("and", "or", "xor", "equal"):
        check(op, [a, b])


def test_where_three_way_broadcast():
    rng = np.random.default_rng(6)
    c = rand(rng, (2, 1, 7), "bool")
    for dtype in ("float32", "int64", "bool", "uint8"):
        check("where", [c, rand(rng, (3, 1), dtype), rand(rng, (7,), dtype)])
    check("where", [rand(rng, (), "bool"), rand(rng, (4,), "float32"), rand(rng, (), "float32")])


def test_prelu():
    rng = np.random.default_rng(8)
    x = rand(rng, (2, 3, 5, 4), "float32")
    x.reshape(-1)[:3] = [np.nan, -0.0, np.inf]
    check("prelu", [x, rand(rng, (3, 1, 1), "float32", 0, 1)])
    check("prelu", [x, rand(rng, (4,), "float32", 0, 1)])
    check("prelu", [x, rand(rng, (), "float32", 0, 1)])
    check("prelu", [rand(rng, (8, 3), "int32", -9, 9), rand(rng, (3,), "int32", 0, 4)])


def test_large_binary_parallel():
    rng = np.random.default_rng(10)
    a = rand(rng, (300, 1030), "float32")
    b = rand(rng, (1030,), "float32")
    check("add", [a, b])
    check("greater", [a, b])
    check("where", [a > 0, a, b])


def test_float16_binary():
    rng = np.random.default_rng(12)
    a, b = rand(rng, (6, 17), "float16"), rand(rng, (17,), "float16")
    for op in ("add", "mul", "div", "max", "less"):
        check(op, [a, b])


def test_exp_overflow_and_underflow_edges():
    x = np.array([88.0, 88.5, 88.72, 88.73, 89.0, 200.0, -87.0, -88.0, -95.0, -103.0, -104.0, -110.0],
                 np.float32)
    got = run("exp", {}, [x], [("float32", x.shape)])[0]
    with np.errstate(over="ignore"):
        want = np.exp(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-44)
    assert got[-1] == 0.0 and math.isinf(got[5])


def test_errors_are_edgec_errors():
    from edgec.errors import CompileError
    with pytest.raises(CompileError, match="sigmoid"):
        run("sigmoid", {}, [np.zeros(3, np.int32)], [("int32", (3,))])
    with pytest.raises(CompileError, match="cast"):
        run("cast", {"to": "int8"}, [np.zeros(3, np.float32)], [("int16", (3,))])
    with pytest.raises(CompileError, match="broadcast"):
        run("add", {}, [np.zeros(3, np.float32), np.zeros(4, np.float32)], [("float32", (4,))])
    assert_same(np.zeros(2, np.float32), np.zeros(2, np.float32))


def test_empty_tensors():
    check("relu", [np.zeros((0, 3), np.float32)])
    check("add", [np.zeros((0, 3), np.float32), np.ones((3,), np.float32)])
    check("cast", [np.zeros((2, 0), np.int8)], {"to": "float32"})


def test_every_op_of_the_three_groups_has_a_kernel():
    from edgec.backend.kernels.registry import KERNELS
    from edgec.ir import ops
    mine = {name for name, d in ops.all_ops().items() if d.group in ("elementwise", "tensor", "reduce")}
    assert mine and not mine - set(KERNELS), sorted(mine - set(KERNELS))
