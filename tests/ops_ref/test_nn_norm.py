"""BatchNormalization, InstanceNormalization, LayerNormalization, LRN, Softmax, LogSoftmax,
DepthToSpace, SpaceToDepth: edgec reference vs onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

from tests.ops_ref.test_nn_harness import check_node, rand, unsupported_reason


def _bn_params(rng, c):
    return {"scale": rand(rng, c), "bias": rand(rng, c), "mean": rand(rng, c),
            "var": rng.uniform(0.5, 2.0, c).astype(np.float32)}


@pytest.mark.parametrize("opset", [7, 9, 14, 15])
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (1, 4, 5, 6), (1, 2, 3, 4, 5)])
def test_batch_norm(shape, opset):
    rng = np.random.default_rng(20)
    check_node("BatchNormalization", {"x": rand(rng, *shape)}, _bn_params(rng, shape[1]), {"epsilon": 1e-3},
               opset=opset, expect_ops=("batch_norm",))


def test_batch_norm_runtime_params():
    rng = np.random.default_rng(21)
    params = _bn_params(rng, 3)
    check_node("BatchNormalization", {"x": rand(rng, 2, 3, 4, 4), **params}, opset=15, expect_ops=("batch_norm",))


def test_batch_norm_training_mode_is_unsupported():
    rng = np.random.default_rng(22)
    why = unsupported_reason("BatchNormalization", {"x": rand(rng, 2, 3, 4)}, _bn_params(rng, 3),
                             {"training_mode": 1}, opset=15)
    assert "training_mode" in why


@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 4, 5, 6), (2, 2, 3, 4, 5)])
def test_instance_norm(shape):
    rng = np.random.default_rng(23)
    consts = {"scale": rand(rng, shape[1]), "bias": rand(rng, shape[1])}
    check_node("InstanceNormalization", {"x": rand(rng, *shape) * 3 + 1}, consts, {"epsilon": 1e-4}, opset=7,
               expect_ops=("instance_norm",))


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("shape,axis,param_shape", [
    ((4, 6), -1, (6,)), ((2, 3, 8), -1, (8,)), ((2, 3, 8), 1, (3, 8)), ((2, 3, 8), -2, (1, 8)),
    ((2, 3, 4, 5), 2, (4, 5)), ((3, 4), 0, (3, 4)),
])
def test_layer_norm(shape, axis, param_shape, with_bias):
    rng = np.random.default_rng(24)
    consts = {"scale": rand(rng, *param_shape)}
    order = ["x", "scale"]
    if with_bias:
        consts["bias"] = rand(rng, *param_shape)
        order.append("bias")
    check_node("LayerNormalization", {"x": rand(rng, *shape) * 2 + 0.5}, consts, {"axis": axis, "epsilon": 1e-5},
               opset=17, input_order=order, expect_ops=("layer_norm",))


@pytest.mark.parametrize("outputs", [["y", "mean", "inv_std"], ["y", "", "inv_std"], ["y", "mean"]])
def test_layer_norm_mean_and_inv_std_outputs(outputs):
    rng = np.random.default_rng(25)
    g = check_node("LayerNormalization", {"x": rand(rng, 2, 3, 4) * 2 + 1}, {"scale": rand(rng, 4)},
                   {"axis": -1, "epsilon": 1e-3}, opset=17, output_names=outputs)
    assert sum(n.op == "layer_norm" for n in g.nodes) == 1


@pytest.mark.parametrize("attrs", [{"size": 3}, {"size": 5, "alpha": 2e-3, "beta": 0.6, "bias": 2.0},
                                   {"size": 1, "alpha": 0.1}])
def test_lrn(attrs):
    rng = np.random.default_rng(26)
    check_node("LRN", {"x": rand(rng, 2, 7, 5, 4) * 3}, attrs=attrs, opset=13, expect_ops=("lrn",))


@pytest.mark.parametrize("size", [2, 4])
def test_lrn_even_size(size):
    # onnxruntime only takes odd sizes (and onnx.reference's LRN loops over the batch axis), so the
    # oracle is the spec's formula: window [c - floor((size-1)/2), c + ceil((size-1)/2)]
    from tests.helpers import assert_close
    from tests.ops_ref.test_nn_harness import make_model, run_edgec_reference
    rng = np.random.default_rng(26)
    x = rand(rng, 2, 6, 3, 3) * 3
    alpha, beta, bias = 0.5, 0.75, 1.0
    want = np.empty_like(x)
    for c in range(6):
        lo, hi = max(0, c - (size - 1) // 2), min(5, c + -(-(size - 1) // 2))
        sq = (x[:, lo:hi + 1].astype(np.float64) ** 2).sum(axis=1)
        want[:, c] = x[:, c] / (bias + alpha / size * sq) ** beta
    model = make_model("LRN", {"x": x}, attrs={"size": size, "alpha": alpha}, opset=13)
    _, got = run_edgec_reference(model, {"x": x})
    assert_close(got["y0"], want)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("shape,axis", [((3, 7), 1), ((3, 7), -1), ((2, 3, 4), 1), ((2, 3, 4), 0), ((2, 3, 4), -1),
                                        ((2, 3, 4, 5), 2), ((5,), 0)])
def test_softmax(op, opset, shape, axis):
    rng = np.random.default_rng(27)
    g = check_node(op, {"x": rand(rng, *shape) * 4}, attrs={"axis": axis}, opset=opset)
    ir = "softmax" if op == "Softmax" else "log_softmax"
    coerced = opset < 13 and axis % len(shape) != len(shape) - 1
    assert sorted(n.op for n in g.nodes) == (sorted([ir, "reshape", "reshape"]) if coerced else [ir])


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset", [7, 13])
def test_softmax_default_axis(op, opset):
    rng = np.random.default_rng(28)
    check_node(op, {"x": rand(rng, 2, 3, 4)}, opset=opset)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("shape,blocksize", [((1, 8, 2, 3), 2), ((2, 18, 3, 2), 3), ((1, 4, 3, 3), 1)])
def test_depth_to_space(shape, blocksize, mode):
    rng = np.random.default_rng(29)
    check_node("DepthToSpace", {"x": rand(rng, *shape)}, attrs={"blocksize": blocksize, "mode": mode}, opset=13,
               expect_ops=("depth_to_space",))


@pytest.mark.parametrize("shape,blocksize", [((1, 2, 4, 6), 2), ((2, 3, 6, 3), 3)])
def test_space_to_depth(shape, blocksize):
    rng = np.random.default_rng(30)
    check_node("SpaceToDepth", {"x": rand(rng, *shape)}, attrs={"blocksize": blocksize}, opset=13,
               expect_ops=("space_to_depth",))


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_space_to_depth_inverts_depth_to_space(mode):
    from edgec.ir.ops import get
    x = np.arange(2 * 12 * 3 * 4, dtype=np.float32).reshape(2, 12, 3, 4)
    (y,) = get("depth_to_space").reference(x, blocksize=2, mode=mode)
    (back,) = get("space_to_depth").reference(y, blocksize=2, mode=mode)
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
@pytest.mark.parametrize("op,attrs,opset", [("Softmax", {"axis": -1}, 13), ("LogSoftmax", {"axis": 1}, 13),
                                            ("MaxPool", {"kernel_shape": [2, 2]}, 12),
                                            ("AveragePool", {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1]}, 11),
                                            ("GlobalAveragePool", {}, 13)])
def test_other_float_dtypes(op, attrs, opset, dtype):
    rng = np.random.default_rng(31)
    rel = 2e-3 if dtype == np.float16 else 1e-6
    # onnxruntime has no float64 average pooling kernels
    oracle = "onnx" if dtype == np.float64 and "Average" in op else "ort"
    check_node(op, {"x": rand(rng, 2, 3, 4, 5, dtype=dtype)}, attrs=attrs, opset=opset, rel=rel, oracle=oracle)
