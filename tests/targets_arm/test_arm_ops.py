"""One-node ONNX models cross-compiled for aarch64 and armv7, run under qemu, against onnxruntime.

Ops whose code differs most between targets: direct and grouped convolution with stride and
padding (register-tiled NEON schedule), pooling, softmax (expf from the target's libm),
resize (float coordinate arithmetic), gather with int64 indices fed as an input (a non-float
.npy through the runner), matmul against a constant, and an erf-based activation.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec.runtime
from tests.helpers import assert_close, run_ort
from tests.targets_arm.arm_helpers import ARM_TARGETS, seeded

pytestmark = pytest.mark.compiled

F = TensorProto.FLOAT


def _model(node, inputs, inits=(), opset=13) -> onnx.ModelProto:
    ins = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    out = helper.make_tensor_value_info("y", F, None)
    g = helper.make_graph([node], node.op_type.lower(), ins, [out],
                          [numpy_helper.from_array(v, k) for k, v in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _w(shape, seed):
    return seeded(shape, seed, -0.5, 0.5)


def conv():
    x = ("x", F, [1, 6, 17, 19])
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 0, 1, 2], kernel_shape=[3, 3])
    return _model(node, [x], [("w", _w((8, 6, 3, 3), 1)), ("b", _w((8,), 2))]), {"x": seeded((1, 6, 17, 19), 3)}


def conv_grouped():
    x = ("x", F, [1, 8, 12, 12])
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=4, pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    return _model(node, [x], [("w", _w((8, 2, 3, 3), 4))]), {"x": seeded((1, 8, 12, 12), 5)}


def maxpool():
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    return _model(node, [("x", F, [1, 4, 15, 13])]), {"x": seeded((1, 4, 15, 13), 6)}


def avgpool():
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 3], strides=[2, 2], pads=[0, 1, 0, 1],
                            count_include_pad=0)
    return _model(node, [("x", F, [1, 3, 10, 11])]), {"x": seeded((1, 3, 10, 11), 7)}


def softmax():
    node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    return _model(node, [("x", F, [2, 5, 37])]), {"x": seeded((2, 5, 37), 8, -6, 6)}


def resize():
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear",
                            coordinate_transformation_mode="half_pixel")
    scales = np.array([1, 1, 2, 1.5], np.float32)
    return _model(node, [("x", F, [1, 2, 7, 8])], [("scales", scales)]), {"x": seeded((1, 2, 7, 8), 9)}


def gather():
    node = helper.make_node("Gather", ["x", "idx"], ["y"], axis=1)
    idx = np.array([[3, 0], [9, 4], [-1, 2]], np.int64)
    return (_model(node, [("x", F, [4, 10, 6]), ("idx", TensorProto.INT64, [3, 2])]),
            {"x": seeded((4, 10, 6), 10), "idx": idx})


def matmul():
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    return _model(node, [("x", F, [3, 37])], [("w", _w((37, 23), 11))]), {"x": seeded((3, 37), 12)}


def erf():
    node = helper.make_node("Erf", ["x"], ["y"])
    return _model(node, [("x", F, [5, 33])]), {"x": seeded((5, 33), 13, -3, 3)}


CASES = {f.__name__: f for f in (conv, conv_grouped, maxpool, avgpool, softmax, resize, gather, matmul, erf)}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("arm-ops")
    files = {}
    for name, make in CASES.items():
        model, feeds = make()
        path = d / f"{name}.onnx"
        onnx.save(model, str(path))
        files[name] = (path, feeds)
    return files


@pytest.mark.parametrize("target", ARM_TARGETS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_one_node_op_under_qemu(arm_artifact, model_files, target, case):
    path, feeds = model_files[case]
    art = arm_artifact(path, target, {k: v.shape for k, v in feeds.items()})
    want = run_ort(path, feeds)["y"]
    with edgec.runtime.load(art, emulate=True) as m:
        got = m.run(feeds)["y"]
    assert_close(got, want, rel=1e-4, what=f"{case} on {target}")
