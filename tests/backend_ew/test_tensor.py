"""Tensor (data movement) kernels (edgec/backend/kernels/tensor.py) against the numpy references."""
from __future__ import annotations

import numpy as np
import pytest

from ._harness import check, rand, run

pytestmark = pytest.mark.tvm

DTYPES = ["float32", "int8", "bool", "int64", "float16", "uint16"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_reshape(dtype):
    rng = np.random.default_rng(0)
    x = rand(rng, (6, 35, 4), dtype)
    for shape in [(210, 4), (840,), (2, 3, 5, 7, 4), (1, 840, 1)]:
        check("reshape", [x], {"shape": shape})
    check("reshape", [rand(rng, (), dtype)], {"shape": (1, 1)})
    check("reshape", [rand(rng, (1, 1), dtype)], {"shape": ()})


@pytest.mark.parametrize("perm", [(1, 0), (0, 2, 1), (2, 0, 1), (1, 2, 0), (0, 1, 2), (0, 2, 3, 1), (3, 1, 2, 0)])
def test_transpose(perm):
    rng = np.random.default_rng(len(perm))
    shape = {2: (37, 50), 3: (3, 40, 19), 4: (2, 5, 33, 18)}[len(perm)]
    check("transpose", [rand(rng, shape, "float32")], {"perm": perm})


def test_transpose_large_tiled_and_dtypes():
    rng = np.random.default_rng(1)
    check("transpose", [rand(rng, (256, 320), "float32")], {"perm": (1, 0)})       # tiled + parallel
    check("transpose", [rand(rng, (4, 64, 96), "int8")], {"perm": (0, 2, 1)})
    check("transpose", [rand(rng, (70, 3, 33), "bool")], {"perm": (2, 1, 0)})
    check("transpose", [rand(rng, (3, 200, 72), "float16")], {"perm": (1, 2, 0)})


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_concat(axis):
    rng = np.random.default_rng(axis)
    shapes = []
    for n in (3, 1, 17, 4):
        s = [2, 5, 6]
        s[axis] = n
        shapes.append(tuple(s))
    xs = [rand(rng, s, "float32") for s in shapes]
    check("concat", xs, {"axis": axis})
    check("concat", xs[:1], {"axis": axis})
    check("concat", [rand(rng, s, "int32") for s in shapes[:2]], {"axis": axis})


def test_concat_empty_input_and_large():
    rng = np.random.default_rng(3)
    check("concat", [rand(rng, (2, 0, 3), "float32"), rand(rng, (2, 4, 3), "float32")], {"axis": 1})
    check("concat", [rand(rng, (64, 300), "float32"), rand(rng, (64, 212), "float32"),
                     rand(rng, (64, 1), "float32")], {"axis": 1})
    check("concat", [rand(rng, (5,), "bool"), rand(rng, (7,), "bool")], {"axis": 0})


def test_split():
    rng = np.random.default_rng(4)
    x = rand(rng, (4, 10, 6), "float32")
    check("split", [x], {"axis": 1, "sizes": (3, 3, 4)})
    check("split", [x], {"axis": 2, "sizes": (1, 0, 5)})
    check("split", [x], {"axis": 0, "sizes": (4,)})
    check("split", [rand(rng, (9,), "int64")], {"axis": 0, "sizes": (2, 7)})


def test_slice():
    rng = np.random.default_rng(5)
    x = rand(rng, (7, 9, 11), "float32")
    check("slice", [x], {"starts": (0, 0, 0), "steps": (1, 1, 1), "out_shape": (7, 9, 11)})
    check("slice", [x], {"starts": (1, 2, 3), "steps": (2, 3, 1), "out_shape": (3, 3, 8)})
    check("slice", [x], {"starts": (6, 8, 10), "steps": (-1, -2, -3), "out_shape": (7, 5, 4)})
    check("slice", [x], {"starts": (2, 0, 0), "steps": (1, 1, 1), "out_shape": (0, 9, 11)})
    check("slice", [rand(rng, (20,), "int8")], {"starts": (19,), "steps": (-7,), "out_shape": (3,)})


def test_gather():
    rng = np.random.default_rng(6)
    data = rand(rng, (5, 7, 3), "float32")
    for axis in range(3):
        n = data.shape[axis]
        for k, ishape in enumerate([(4,), (2, 3), ()]):
            idx = rng.integers(-n, n, size=ishape).astype(("int32", "int64")[(axis + k) % 2])
            check("gather", [data, np.asarray(idx)], {"axis": axis})
    check("gather", [rand(rng, (10,), "bool"), np.array([[-1, 0], [9, -10]], "int32")], {"axis": 0})
    check("gather", [rand(rng, (300, 64), "float32"), rng.integers(-300, 300, (2, 500))], {"axis": 0})


def test_gather_out_of_range_is_clamped_not_read_out_of_bounds():
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    idx = np.array([-100, -4, 3, 4, 1 << 30], np.int64)
    got = run("gather", {"axis": 1}, [data, idx], [("float32", (3, 5))])[0]
    np.testing.assert_array_equal(got, data[:, [0, 0, 3, 3, 3]])
    idx = np.array([[5, -9, 2, 0]], np.int32)
    got = run("gather_elements", {"axis": 0}, [data, idx], [("float32", (1, 4))])[0]
    np.testing.assert_array_equal(got, [[8, 1, 10, 3]])


def test_gather_elements():
    rng = np.random.default_rng(7)
    data = rand(rng, (4, 5, 6), "float32")
    for axis in range(3):
        ishape = [3, 4, 5]
        ishape[axis] = 7
        n = data.shape[axis]
        idx = rng.integers(-n, n, size=ishape)
        check("gather_elements", [data, idx.astype((np.int64, np.int32)[axis % 2])], {"axis": axis})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad(mode):
    rng = np.random.default_rng(8)
    x = rand(rng, (3, 5, 6), "float32")
    for pads in [(0, 1, 2, 1, 0, 3), (1, 0, 0, 0, 2, 0), (0, -1, 2, 0, 3, -2), (2, 4, 5, 2, 4, 5), (0, 0, 0, 0, 0, 0)]:
        if mode == "reflect" and max(pads) >= 4:
            continue
        check("pad", [x], {"pads": pads, "mode": mode, "value": 1.5})
    check("pad", [rand(rng, (4, 7), "int32")], {"pads": (1, 2, 3, 1), "mode": mode, "value": 7.0})


def test_pad_wrap_with_crop_and_large():
    rng = np.random.default_rng(9)
    x = rand(rng, (6, 9), "float32")
    check("pad", [x], {"pads": (-2, 3, 1, -4), "mode": "wrap", "value": 0.0})
    check("pad", [x], {"pads": (-2, 3, 1, -4), "mode": "reflect", "value": 0.0})
    check("pad", [rand(rng, (1, 8, 120, 120), "float32")], {"pads": (0, 0, 1, 1, 0, 0, 1, 1),
                                                            "mode": "constant", "value": 0.0})
    check("pad", [rand(rng, (5,), "bool")], {"pads": (2, 1), "mode": "constant", "value": 1.0})


def test_expand_and_tile():
    rng = np.random.default_rng(10)
    x = rand(rng, (3, 1, 5), "float32")
    check("expand", [x], {"shape": (2, 3, 4, 5)})
    check("expand", [x], {"shape": (3, 1, 5)})
    check("expand", [rand(rng, (), "int8")], {"shape": (4, 2)})
    check("expand", [rand(rng, (1, 1), "bool")], {"shape": (3, 300, 200)})
    check("tile", [x], {"repeats": (2, 3, 1)})
    check("tile", [x], {"repeats": (1, 1, 1)})
    check("tile", [rand(rng, (2, 3), "int64")], {"repeats": (3, 0)})
    check("tile", [rand(rng, (7,), "float16")], {"repeats": (5,)})
