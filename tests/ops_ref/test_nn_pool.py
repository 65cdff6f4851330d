"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool: edgec reference vs onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

from tests.ops_ref.test_nn_harness import check_node, rand, unsupported_reason

# (input shape, attrs) shared by MaxPool and AveragePool
POOL_CASES = [
    ((1, 3, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((2, 2, 9, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 9, 7), {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 0, 1]}),
    ((1, 2, 9, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 10, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ((1, 2, 6, 6), {"kernel_shape": [3, 3], "strides": [3, 3], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ((1, 2, 2, 2), {"kernel_shape": [1, 1], "strides": [2, 2], "ceil_mode": 1}),            # last window dropped
    ((1, 2, 11, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 11, 9), {"kernel_shape": [4, 2], "strides": [3, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 11, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}),
    ((1, 2, 11, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER", "ceil_mode": 1}),
    ((2, 3, 17), {"kernel_shape": [4], "strides": [3], "pads": [2, 1]}),                       # 1-D
    ((1, 2, 7, 6, 5), {"kernel_shape": [3, 2, 3], "strides": [2, 2, 1], "pads": [1, 0, 1, 1, 1, 0]}),  # 3-D
    ((1, 2, 9, 8, 7), {"kernel_shape": [2, 3, 2], "strides": [2, 2, 2], "ceil_mode": 1}),
]

DILATED_CASES = [
    ((1, 2, 10, 9), {"kernel_shape": [3, 2], "strides": [1, 2], "dilations": [2, 3]}),
    ((1, 2, 10, 9), {"kernel_shape": [2, 2], "strides": [2, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 10, 9), {"kernel_shape": [2, 2], "strides": [2, 2], "dilations": [2, 2], "ceil_mode": 1}),
    ((1, 1, 7, 6, 8), {"kernel_shape": [2, 2, 2], "strides": [1, 1, 2], "dilations": [2, 1, 3]}),
]


@pytest.mark.parametrize("x_shape,attrs", POOL_CASES + DILATED_CASES)
def test_max_pool(x_shape, attrs):
    rng = np.random.default_rng(10)
    check_node("MaxPool", {"x": rand(rng, *x_shape)}, attrs=attrs, opset=12, expect_ops=("max_pool",))


def test_max_pool_uint8():
    rng = np.random.default_rng(11)
    x = rng.integers(0, 255, (1, 2, 7, 7), dtype=np.uint8)
    check_node("MaxPool", {"x": x}, attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]},
               opset=12, expect_ops=("max_pool",))


def test_max_pool_opset8_storage_order_without_indices():
    rng = np.random.default_rng(12)
    check_node("MaxPool", {"x": rand(rng, 1, 2, 6, 6)}, attrs={"kernel_shape": [2, 2], "storage_order": 1},
               opset=8, expect_ops=("max_pool",))


def test_max_pool_indices_output_is_unsupported():
    rng = np.random.default_rng(13)
    why = unsupported_reason("MaxPool", {"x": rand(rng, 1, 1, 4, 4)}, attrs={"kernel_shape": [2, 2]}, opset=12,
                             output_names=["y", "indices"])
    assert "Indices" in why


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("x_shape,attrs", POOL_CASES)
def test_avg_pool(x_shape, attrs, count_include_pad):
    rng = np.random.default_rng(14)
    attrs = dict(attrs, count_include_pad=count_include_pad)
    g = check_node("AveragePool", {"x": rand(rng, *x_shape)}, attrs=attrs, opset=11)
    assert {n.op for n in g.nodes} <= {"avg_pool", "pad"}


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("x_shape,attrs", DILATED_CASES)
def test_avg_pool_dilations(x_shape, attrs, count_include_pad):
    rng = np.random.default_rng(15)
    attrs = dict(attrs, count_include_pad=count_include_pad)
    check_node("AveragePool", {"x": rand(rng, *x_shape)}, attrs=attrs, opset=19)


def test_avg_pool_opset7_default_excludes_pad():
    rng = np.random.default_rng(16)
    check_node("AveragePool", {"x": rand(rng, 1, 2, 5, 5)}, attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
               opset=7, expect_ops=("avg_pool",))


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", [(2, 3, 7), (1, 4, 5, 6), (2, 2, 3, 4, 5)])
def test_global_pools(op, shape):
    rng = np.random.default_rng(17)
    ir = {"GlobalAveragePool": "global_avg_pool", "GlobalMaxPool": "global_max_pool"}[op]
    check_node(op, {"x": rand(rng, *shape)}, opset=13, expect_ops=(ir,))
