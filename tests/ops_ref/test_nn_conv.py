"""Conv and ConvTranspose: edgec frontend + numpy reference vs onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

from tests.ops_ref.test_nn_harness import check_node, rand, unsupported_reason

# (input shape, weight shape, attrs); weights are constants, bias optional
CONV_CASES = [
    ((1, 3, 9, 9), (4, 3, 3, 3), {}),
    ((2, 3, 9, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 3, 10, 11), (5, 3, 3, 2), {"strides": [2, 3], "pads": [1, 0, 2, 1]}),
    ((1, 4, 12, 12), (6, 2, 3, 3), {"group": 2, "dilations": [2, 1], "pads": [2, 1, 2, 1]}),
    ((1, 6, 11, 11), (6, 1, 3, 3), {"group": 6, "strides": [2, 2], "pads": [1, 1, 1, 1]}),     # depthwise
    ((1, 4, 9, 9), (8, 1, 5, 5), {"group": 4, "pads": [2, 2, 2, 2]}),                          # multiplier 2
    ((1, 3, 7, 7), (2, 3, 1, 1), {"strides": [2, 2]}),                                         # pointwise
    ((1, 3, 13, 11), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 3, 13, 11), (4, 3, 4, 4), {"auto_pad": "SAME_LOWER", "strides": [3, 2]}),
    ((1, 3, 13, 11), (4, 3, 4, 2), {"auto_pad": "SAME_UPPER", "strides": [1, 2]}),
    ((1, 3, 13, 11), (4, 3, 3, 3), {"auto_pad": "VALID", "strides": [2, 2]}),
    ((1, 3, 9, 9), (4, 3, 3, 3), {"kernel_shape": [3, 3], "pads": [0, 1, 0, 1]}),
    ((2, 4, 17), (6, 2, 5), {"group": 2, "strides": [2], "pads": [2, 1], "dilations": [2]}),   # 1-D
    ((1, 2, 6, 7, 5), (3, 2, 3, 2, 3), {"pads": [1, 0, 1, 1, 1, 0], "strides": [1, 2, 1]}),    # 3-D
    ((1, 4, 6, 6, 6), (4, 1, 3, 3, 3), {"group": 4, "auto_pad": "SAME_UPPER"}),                # 3-D depthwise
]


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("x_shape,w_shape,attrs", CONV_CASES)
def test_conv(x_shape, w_shape, attrs, with_bias):
    rng = np.random.default_rng(1)
    consts = {"w": rand(rng, *w_shape)}
    if with_bias:
        consts["b"] = rand(rng, w_shape[0])
    check_node("Conv", {"x": rand(rng, *x_shape)}, consts, attrs, opset=11, expect_ops=("conv",))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_conv_same_with_dilations(auto_pad):
    # onnxruntime refuses dilations with SAME padding: the ONNX reference evaluator is the oracle
    rng = np.random.default_rng(5)
    check_node("Conv", {"x": rand(rng, 1, 2, 9, 8)}, {"w": rand(rng, 3, 2, 3, 2)},
               {"auto_pad": auto_pad, "dilations": [2, 3], "strides": [2, 1]}, opset=11, oracle="onnx",
               expect_ops=("conv",))


def test_conv_runtime_weight_opset22():
    rng = np.random.default_rng(2)
    check_node("Conv", {"x": rand(rng, 1, 2, 8, 8), "w": rand(rng, 3, 2, 3, 3)}, {"b": rand(rng, 3)},
               {"pads": [1, 1, 1, 1]}, opset=22, expect_ops=("conv",))


def test_conv_rejects_mismatched_kernel_shape():
    rng = np.random.default_rng(3)
    why = unsupported_reason("Conv", {"x": rand(rng, 1, 3, 8, 8)}, {"w": rand(rng, 4, 3, 3, 3)},
                             {"kernel_shape": [2, 2]}, opset=11)
    assert "kernel_shape" in why


# (input shape, weight shape, attrs)
CONVT_CASES = [
    ((1, 2, 5, 5), (2, 3, 3, 3), {}),
    ((2, 2, 4, 5), (2, 3, 3, 3), {"strides": [2, 2]}),
    ((1, 2, 4, 5), (2, 3, 3, 3), {"strides": [2, 3], "pads": [1, 0, 0, 2]}),
    ((1, 2, 4, 4), (2, 3, 3, 3), {"strides": [2, 2], "output_padding": [1, 1]}),
    ((1, 2, 4, 4), (2, 3, 3, 3), {"strides": [3, 2], "output_padding": [2, 1], "pads": [1, 1, 0, 0]}),
    ((1, 4, 5, 5), (4, 2, 3, 3), {"group": 2, "strides": [2, 2], "dilations": [2, 1]}),
    ((1, 4, 5, 5), (4, 1, 4, 4), {"group": 4, "strides": [2, 2], "pads": [1, 1, 1, 1]}),           # depthwise
    ((1, 2, 4, 5), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [9, 11]}),
    ((1, 2, 4, 5), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [8, 10]}),
    ((1, 2, 4, 5), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [10, 12]}),                   # > natural
    ((1, 2, 4, 5), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [10, 12], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 4, 5), (2, 3, 3, 3), {"strides": [3, 2], "output_shape": [9, 7], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 4, 5), (2, 3, 4, 4), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 4, 5), (2, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 4, 5), (2, 3, 3, 3), {"strides": [2, 1], "auto_pad": "VALID"}),
    ((2, 3, 7), (3, 2, 4), {"strides": [3], "pads": [1, 2], "dilations": [2]}),                     # 1-D
    ((1, 2, 3, 4, 3), (2, 2, 3, 2, 3), {"strides": [2, 1, 2], "pads": [1, 0, 0, 0, 1, 1]}),         # 3-D
]


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("x_shape,w_shape,attrs", CONVT_CASES)
def test_conv_transpose(x_shape, w_shape, attrs, with_bias):
    rng = np.random.default_rng(4)
    consts = {"w": rand(rng, *w_shape)}
    if with_bias:
        consts["b"] = rand(rng, w_shape[1] * attrs.get("group", 1))
    check_node("ConvTranspose", {"x": rand(rng, *x_shape)}, consts, attrs, opset=11, expect_ops=("conv_transpose",))


def test_conv_transpose_rejects_unreachable_output_shape():
    rng = np.random.default_rng(8)
    why = unsupported_reason("ConvTranspose", {"x": rand(rng, 1, 2, 4, 5)}, {"w": rand(rng, 2, 3, 3, 3)},
                             {"strides": [2, 2], "output_shape": [12, 13]}, opset=11)
    assert "output_shape" in why


def test_conv_macs():
    from edgec.ir.graph import Value
    from edgec.ir.ops import get
    x, w = Value("x", "float32", (1, 4, 8, 8)), Value("w", "float32", (6, 2, 3, 3))
    attrs = {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 2}
    (dt, shape), = get("conv").infer([x, w, None], attrs)
    y = Value("y", dt, shape)
    assert get("conv").macs([x, w, None], [y], attrs) == 6 * 8 * 8 * 2 * 9
    xt, wt = Value("x", "float32", (1, 4, 5, 5)), Value("w", "float32", (4, 3, 2, 2))
    tattrs = {"strides": (2, 2), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": 2, "output_padding": (0, 0)}
    (dt, shape), = get("conv_transpose").infer([xt, wt, None], tattrs)
    assert shape == (1, 6, 10, 10)
    assert get("conv_transpose").macs([xt, wt, None], [Value("y", dt, shape)], tattrs) == 4 * 25 * 3 * 4


def test_conv_float64():
    rng = np.random.default_rng(6)
    check_node("Conv", {"x": rand(rng, 1, 4, 7, 7, dtype=np.float64)}, {"w": rand(rng, 4, 2, 3, 3, dtype=np.float64)},
               {"group": 2, "pads": [1, 1, 1, 1]}, opset=11, rel=1e-9, oracle="onnx", expect_ops=("conv",))


def test_conv_rejects_four_spatial_axes_and_integers():
    rng = np.random.default_rng(7)
    why = unsupported_reason("Conv", {"x": rand(rng, 1, 1, 3, 3, 3, 3)}, {"w": rand(rng, 1, 1, 2, 2, 2, 2)}, opset=11)
    assert "1 to 3 spatial axes" in why
    xi = rng.integers(-3, 3, (1, 1, 4, 4)).astype(np.int32)
    why = unsupported_reason("Conv", {"x": xi}, {"w": np.ones((1, 1, 2, 2), np.int32)}, opset=11)
    assert "int32" in why
