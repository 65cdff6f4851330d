"""The comparison helpers the whole-model tests rely on fail when they should."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close, max_abs_error, output_scale, run_ort


def test_assert_close_scale_is_max_of_one_and_max_abs_want():
    want = np.array([0.5, -200.0], np.float32)
    assert output_scale(want) == 200.0
    assert output_scale(np.array([1e-3], np.float32)) == 1.0
    assert_close(want + np.float32([0, 0.019]), want, rel=1e-4)          # 0.019 <= 1e-4 * 200
    with pytest.raises(pytest.fail.Exception, match="max abs error"):
        assert_close(want + np.float32([0, 0.03]), want, rel=1e-4)
    with pytest.raises(pytest.fail.Exception, match="max abs error"):
        assert_close(np.float32([2e-4]), np.float32([0.0]), rel=1e-4)     # small outputs: absolute 1e-4


def test_assert_close_checks_shape_dtype_nan_and_ints():
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(pytest.fail.Exception, match="shape"):
        assert_close(a.reshape(3, 2), a)
    with pytest.raises(pytest.fail.Exception, match="dtype"):
        assert_close(a.astype(np.float64), a)
    with pytest.raises(pytest.fail.Exception, match="NaN"):
        assert_close(np.float32([np.nan, 1]), np.float32([0, 1]))
    assert_close(np.float32([np.nan, np.inf]), np.float32([np.nan, np.inf]))
    with pytest.raises(pytest.fail.Exception, match="exact"):
        assert_close(np.int64([1, 2]), np.int64([1, 3]), rel=1.0)
    assert max_abs_error(np.float32([1, np.inf]), np.float32([1, -np.inf])) == float("inf")


def test_run_ort_returns_outputs_by_name(tmp_path):
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["z"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    out = run_ort(m, {"x": np.float32([-1, 0, 2])})
    assert list(out) == ["y", "z"]
    np.testing.assert_array_equal(out["y"], [0, 0, 2])
    np.testing.assert_array_equal(out["z"], [1, 0, -2])
