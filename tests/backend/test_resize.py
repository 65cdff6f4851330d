"""resize kernels built by build_kernels, run with TVM's runtime, against the numpy reference
(every mode x coordinate transformation, nearest rounding modes, cubic with exclude_outside,
tf_crop_and_resize with extrapolation, integer nearest, 3-D) and, for a sample, onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

from ._harness import Case, build_cases, check, rand

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(5)
X = rand(RNG, 1, 2, 5, 6)
BASE = dict(nearest_mode="round_prefer_floor", cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0,
            roi=())
COORD = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
         "tf_half_pixel_for_nn")
SCALES = {"up": (1, 1, 2.0, 1.5), "down": (1, 1, 0.6, 0.5), "frac": (1, 1, 1.7, 2.3)}


def _resize(id_, x, scales, out=None, **attrs):
    out = out or tuple(int(np.floor(d * s)) for d, s in zip(x.shape, scales))
    return Case(id_, "resize", {**BASE, **attrs, "scales": scales, "out_shape": out}, [x], rtol=2e-6, atol=2e-6)


# every mode x coordinate transformation x scale kind: the fast set takes a rotating third of
# them (each mode and each transformation appears with every scale kind across modes), the
# slow test the rest
MATRIX = [_resize(f"{mode}_{ctm}_{sk}", X, sc, mode=mode, coordinate_transformation_mode=ctm)
          for mode in ("nearest", "linear", "cubic") for ctm in COORD for sk, sc in SCALES.items()]
FAST = [c for i, c in enumerate(MATRIX)
        if i % len(SCALES) == (i // len(SCALES) + i // (len(SCALES) * len(COORD))) % len(SCALES)]
SLOW = [c for c in MATRIX if c not in FAST]
CASES = list(FAST)
CASES += [
    _resize(f"nearest_{nm}", X, (1, 1, 2.5, 1.5), (1, 2, 12, 9), mode="nearest", nearest_mode=nm,
            coordinate_transformation_mode="asymmetric")
    for nm in ("round_prefer_ceil", "floor", "ceil")
]
CASES += [
    _resize("cubic_exclude", X, (1, 1, 1.6, 0.7), (1, 2, 8, 4), mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5,
            coordinate_transformation_mode="half_pixel"),
    _resize("crop_inside", X, (1, 1, 0.8, 1.5), (1, 2, 3, 9), mode="linear", extrapolation_value=10.0,
            coordinate_transformation_mode="tf_crop_and_resize", roi=(0, 0, 0.4, 0.6, 1, 1, 0.6, 0.8)),
    _resize("crop_outside", X, (1, 1, 0.8, 1.5), (1, 2, 3, 9), mode="linear", extrapolation_value=10.0,
            coordinate_transformation_mode="tf_crop_and_resize", roi=(0, 0, -0.2, 0.6, 1, 1, 0.6, 1.3)),
    _resize("crop_nearest_1", X, (1, 1, 1, 1), (1, 2, 1, 1), mode="nearest",
            coordinate_transformation_mode="tf_crop_and_resize", roi=(0, 0, 0.2, 0.2, 1, 1, 0.8, 0.9)),
    _resize("int_nearest", RNG.integers(0, 9, (5,)).astype(np.int32), (2.0,), mode="nearest",
            coordinate_transformation_mode="asymmetric"),
    _resize("linear_3d", rand(RNG, 1, 1, 3, 4, 5), (1, 1, 1.5, 2.0, 0.8), mode="linear",
            coordinate_transformation_mode="align_corners"),
    _resize("linear_channels", rand(RNG, 1, 4, 3, 3), (1, 0.5, 1, 1), mode="linear",
            coordinate_transformation_mode="half_pixel"),
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("resize"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_resize_matches_reference(runner, case):
    check(case, runner.run(case))


@pytest.mark.slow
def test_resize_full_matrix(tmp_path):
    runner = build_cases(SLOW, tmp_path)
    for case in SLOW:
        check(case, runner.run(case))


def _ort_resize(case: Case) -> np.ndarray:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    a = case.attrs
    x = case.inputs[0]
    y = case.reference()[0]
    inits = [helper.make_tensor("roi", TensorProto.FLOAT, [0], []),
             helper.make_tensor("scales", TensorProto.FLOAT, [len(a["scales"])], list(a["scales"]))]
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode=a["mode"],
                            coordinate_transformation_mode=a["coordinate_transformation_mode"],
                            nearest_mode=a["nearest_mode"], cubic_coeff_a=a["cubic_coeff_a"],
                            exclude_outside=a["exclude_outside"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y.shape)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("cid", [c.id for c in FAST if "tf_half" not in c.id and "symmetric" not in c.id])
def test_resize_matches_onnxruntime(runner, cid):
    case = next(c for c in CASES if c.id == cid)
    np.testing.assert_allclose(runner.run(case)[0], _ort_resize(case), rtol=1e-5, atol=1e-5)
