"""edgec.ops._exact: float64-BLAS integer matmul/conv equal the int64 results exactly."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.ops._exact import int_conv, int_matmul
from edgec.ops.nn import conv


@pytest.mark.parametrize("shape_a, shape_b", [((7, 300), (300, 5)), ((2, 3, 16, 64), (2, 3, 64, 16)),
                                              ((4, 1, 9, 33), (5, 33, 2))])
def test_int_matmul_exact(shape_a, shape_b):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, shape_a).astype(np.uint8)
    b = rng.integers(-128, 128, shape_b).astype(np.int8)
    np.testing.assert_array_equal(int_matmul(a, b), np.matmul(a.astype(np.int64), b.astype(np.int64)))
    assert int_matmul(a, b).dtype == np.int64


def test_int_matmul_falls_back_past_2_53():
    a = np.array([[2 ** 40 + 1, 3]], np.int64)
    b = np.array([[2 ** 20 + 1], [1]], np.int64)
    want = np.array([[(2 ** 40 + 1) * (2 ** 20 + 1) + 3]], np.int64)     # > 2^53: not exact in float64
    np.testing.assert_array_equal(int_matmul(a, b), want)


@pytest.mark.parametrize("group, strides, dil", [(1, (1, 1), (1, 1)), (4, (2, 1), (1, 2)), (8, (2, 2), (1, 1))])
def test_int_conv_exact(group, strides, dil):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 8, 11, 13)).astype(np.int64)
    w = rng.integers(-128, 128, (16, 8 // group, 3, 3)).astype(np.int64)
    b = rng.integers(-2 ** 20, 2 ** 20, 16).astype(np.int64)
    attrs = dict(strides=strides, pads=(0, 0, 0, 0), dilations=dil, group=group)
    (want,) = conv(x, w, b, **attrs)
    got = int_conv(x.astype(np.uint8), w.astype(np.int8), b.astype(np.int32), **attrs)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64
