"""int8 models cross-compiled for aarch64, aarch64-dotprod and armv7, run under qemu user mode:
outputs bit-identical (np.array_equal) to the x86-64 artifact of the same quantized model.

docs/quantization.md section 2: uint8 activations on x86 and int8 on ARM give the same real
outputs bit for bit, because every kernel's integer arithmetic is exact and the requantization
is integer-only. These tests hold the compiled artifacts to that: the SMS spam MLP calibrated
on real messages, a small conv net (conv, depthwise conv, residual add, pooling, dense) and,
marked slow, the PP-OCR direction classifier. All targets use the same calibration samples.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
import edgec.runtime
from tests.targets_arm.arm_helpers import PPOCR, SMS, need_tools, seeded, sms_data

pytestmark = pytest.mark.compiled

INT8_TARGETS = ("aarch64", "aarch64-dotprod", "armv7")
_lock = threading.Lock()


def small_convnet(path: Path) -> None:
    """conv 3x3 + relu -> depthwise conv 3x3 + hard swish (fused into the qconv) -> add (residual) -> maxpool 2x2 ->
    global average pool -> flatten -> dense (Gemm) 16 -> 10."""
    rng = np.random.default_rng(42)
    w = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=16),
        helper.make_node("HardSwish", ["c2"], ["r2"]),
        helper.make_node("Add", ["r1", "r2"], ["s"]),
        helper.make_node("MaxPool", ["s"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1),
    ]
    inits = {"w1": w(16, 3, 3, 3), "b1": w(16), "w2": w(16, 1, 3, 3), "b2": w(16), "w3": w(10, 16), "b3": w(10)}
    g = helper.make_graph(nodes, "small_convnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), str(path))


@pytest.fixture(scope="module")
def int8_case(tmp_path_factory):
    """case(name) -> (model path, input shapes, calibration feeds, test feeds)."""
    d = tmp_path_factory.mktemp("int8-models")
    cases: dict[str, tuple] = {}

    def get(name: str):
        with _lock:
            if name not in cases:
                if name == "sms":
                    calib, tests = sms_data()
                    cases[name] = (SMS, {"features": (1, 1024)}, calib, tests)
                elif name == "convnet":
                    path = d / "small_convnet.onnx"
                    small_convnet(path)
                    shape = (1, 3, 16, 16)
                    calib = [{"x": seeded(shape, 100 + k)} for k in range(16)]
                    tests = [{"x": seeded(shape, 200 + k)} for k in range(3)]
                    cases[name] = (path, {"x": shape}, calib, tests)
                elif name == "ppocr":
                    if not PPOCR.is_file():
                        pytest.fail(f"{PPOCR} is missing (see tests/data/models/SOURCE.md)", pytrace=False)
                    shape = (1, 3, 48, 192)
                    calib = [{"x": seeded(shape, 300 + k)} for k in range(8)]
                    tests = [{"x": seeded(shape, 400 + k)} for k in range(2)]
                    cases[name] = (PPOCR, {"x": shape}, calib, tests)
            return cases[name]
    return get


@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory, int8_case):
    """compile(name, target) -> artifact folder of the int8 model, compiled once per module."""
    done: dict[tuple, Path] = {}

    def compile_once(name: str, target: str) -> Path:
        path, shapes, calib, _ = int8_case(name)
        with _lock:
            if (name, target) not in done:
                out = tmp_path_factory.mktemp(f"{name}-int8-{target}") / "art"
                done[(name, target)] = edgec.compile(path, target=target, input_shapes=shapes, quantize="int8",
                                                     calib=calib, output_dir=out)
            return done[(name, target)]
    return compile_once


_host_results: dict[str, list[dict]] = {}


def host_outputs(int8_case, int8_artifact, name: str) -> list[dict]:
    """Outputs of the x86-64 (host) int8 artifact on the case's test feeds."""
    if name not in _host_results:
        _, _, _, tests = int8_case(name)
        with edgec.runtime.load(int8_artifact(name, "host")) as m:
            _host_results[name] = [m.run(f) for f in tests]
    return _host_results[name]


def _check_bit_identical(int8_case, int8_artifact, name: str, target: str) -> None:
    need_tools(target)
    _, _, _, tests = int8_case(name)
    want = host_outputs(int8_case, int8_artifact, name)
    art = int8_artifact(name, target)
    rep = json.loads((art / "report.json").read_text())
    assert "quantization" in rep, "the artifact is not quantized"
    with edgec.runtime.load(art, emulate=True) as m:
        assert isinstance(m, edgec.runtime.EmulatedModel)
        for k, (feeds, w) in enumerate(zip(tests, want)):
            got = m.run(feeds)
            assert list(got) == list(w)
            for out in w:
                assert got[out].dtype == w[out].dtype and got[out].shape == w[out].shape
                assert np.array_equal(got[out], w[out]), (
                    f"{name} int8 on {target}, sample {k}, output {out!r}: differs from the x86-64 artifact "
                    f"(max |diff| {np.abs(got[out].astype(np.float64) - w[out]).max():.3g})")
    # the samples are informative: they do not all give the same output
    assert any(not np.array_equal(want[0][o], w[o]) for w in want[1:] for o in w)


@pytest.mark.parametrize("target", INT8_TARGETS)
def test_sms_int8_bit_identical_to_x86(int8_case, int8_artifact, target):
    _check_bit_identical(int8_case, int8_artifact, "sms", target)


@pytest.mark.parametrize("target", INT8_TARGETS)
def test_convnet_int8_bit_identical_to_x86(int8_case, int8_artifact, target):
    _check_bit_identical(int8_case, int8_artifact, "convnet", target)


def test_convnet_int8_really_is_int8(int8_case, int8_artifact):
    """The conv net's convolutions (the hard swish fused into one), the add and the dense run as
    integer kernels on ARM."""
    need_tools("armv7")
    from edgec.artifact.blob import read_blob
    m = read_blob((int8_artifact("convnet", "armv7") / "model.edgec").read_bytes())
    kernels = " ".join(m.kernels)
    for op in ("qconv", "qadd", "qdense"):
        assert f"k_{op}_" in kernels, (op, kernels)
    assert "k_conv_" not in kernels and "k_dense_" not in kernels and "k_qlut_" not in kernels


@pytest.mark.slow
@pytest.mark.parametrize("target", INT8_TARGETS)
def test_ppocr_int8_bit_identical_to_x86(int8_case, int8_artifact, target):
    _check_bit_identical(int8_case, int8_artifact, "ppocr", target)


@pytest.mark.parametrize("target", ["aarch64", "armv7"])
def test_sparse_qdense_kn_under_qemu(tmp_path, target):
    """A bag-of-words qdense (int8 activations, as on ARM, with evidence of a sparse input) stores
    its weights [K, N] on the ARM targets too; under qemu its outputs are the reference's bits for
    all-zero, sparse and dense rows."""
    from edgec.artifact.blob import read_blob
    from edgec.compiler import compile_model
    from edgec.ir import ops as irops
    from edgec.ir.graph import Graph, Node, Value
    from edgec.quant.qmath import quantize_multiplier
    from edgec.reference.interpreter import run_graph
    need_tools(target)
    rng = np.random.default_rng(7)
    k, n = 1536, 24
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    b = rng.integers(-40000, 40000, n).astype(np.int32)
    mult = [quantize_multiplier(v) for v in rng.uniform(0.0004, 0.001, n)]
    attrs = irops.get("qdense").normalize_attrs({
        "x_zero_point": -5, "multiplier": tuple(m for m, _ in mult), "shift": tuple(s for _, s in mult),
        "out_zero_point": -3, "qmin": -128, "qmax": 127, "out_dtype": "int8", "input_density": 0.01})
    g = Graph([Node("qdense", ("x", "w", "b"), ("y",), attrs, "bag")],
              {"x": Value("x", "int8", (1, k)), "w": Value("w", "int8", w.shape, const=w),
               "b": Value("b", "int32", b.shape, const=b), "y": Value("y", "int8", (1, n))}, ["x"], ["y"], name="bag")
    art = compile_model(g, target=target, output_dir=tmp_path / "art", tuning=False)
    names = {t.name for t in read_blob((art / "model.edgec").read_bytes()).tensors}
    assert "w#kn" in names and "w" not in names
    feeds = []
    for nnz in (0, 15, k):
        x = np.zeros((1, k), np.int8)
        pos = rng.choice(k, nnz, replace=False)
        x[0, pos] = rng.integers(-128, 128, nnz)
        feeds.append(x)
    with edgec.runtime.load(art, emulate=True) as m:
        for x in feeds:
            np.testing.assert_array_equal(m.run({"x": x})["y"], run_graph(g, {"x": x})["y"])
