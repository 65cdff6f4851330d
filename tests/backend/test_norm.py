"""softmax, log_softmax, layer_norm, instance_norm, batch_norm, lrn, depth_to_space and
space_to_depth kernels built by build_kernels, run with TVM's runtime, against the numpy
references."""
from __future__ import annotations

import numpy as np
import pytest

from ._harness import Case, build_cases, check, rand

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(3)
R = lambda *s, **kw: rand(RNG, *s, **kw)  # noqa: E731

CASES = [
    Case("softmax_ax1", "softmax", {"axis": 1}, [R(2, 5, 3, 4)]),
    Case("softmax_last_vec", "softmax", {"axis": 3}, [R(2, 5, 3, 32)]),
    Case("softmax_last_odd", "softmax", {"axis": 1}, [R(4, 37, scale=5.0)]),
    Case("softmax_ax0", "softmax", {"axis": 0}, [R(6, 7)]),
    Case("softmax_1d", "softmax", {"axis": 0}, [R(50)]),
    Case("log_softmax_ax0", "log_softmax", {"axis": 0}, [R(6, 7)]),
    Case("log_softmax_last", "log_softmax", {"axis": 1}, [R(3, 64)]),
    Case("log_softmax_mid", "log_softmax", {"axis": 1}, [R(2, 9, 16)]),
    Case("softmax_f64", "softmax", {"axis": 1}, [R(3, 10, dtype="float64")], rtol=1e-12, atol=1e-14),
    Case("layer_norm_2d", "layer_norm", {"axis": 2, "epsilon": 1e-5}, [R(2, 3, 8, 4), R(8, 4), R(4)]),
    Case("layer_norm_nobias", "layer_norm", {"axis": 1, "epsilon": 1e-3}, [R(5, 768), R(768), None]),
    Case("layer_norm_odd", "layer_norm", {"axis": 1, "epsilon": 1e-5}, [R(3, 21), R(21), R(21)]),
    Case("layer_norm_axis0", "layer_norm", {"axis": 0, "epsilon": 1e-5}, [R(4, 6), R(1, 6), R(4, 1)]),
    Case("instance_norm", "instance_norm", {"epsilon": 1e-5}, [R(2, 3, 5, 7), R(3), R(3)]),
    Case("instance_norm_vec", "instance_norm", {"epsilon": 1e-2}, [R(1, 4, 8, 8, scale=3.0), R(4), R(4)]),
    Case("batch_norm", "batch_norm", {"epsilon": 1e-5},
         [R(2, 3, 5, 7), R(3), R(3), R(3), np.abs(R(3)) + 0.1]),
    Case("batch_norm_1d", "batch_norm", {"epsilon": 1e-3}, [R(4, 6), R(6), R(6), R(6), np.abs(R(6))]),
    Case("lrn3", "lrn", {"size": 3, "alpha": 1e-3, "beta": 0.75, "bias": 1.0}, [R(2, 5, 4, 4)]),
    Case("lrn4_even", "lrn", {"size": 4, "alpha": 2e-3, "beta": 0.5, "bias": 2.0}, [R(1, 7, 3, 3)]),
    Case("d2s_dcr", "depth_to_space", {"blocksize": 2, "mode": "DCR"}, [R(1, 8, 3, 4)]),
    Case("d2s_crd", "depth_to_space", {"blocksize": 2, "mode": "CRD"}, [R(2, 8, 3, 4)]),
    Case("s2d_dcr", "space_to_depth", {"blocksize": 2, "mode": "DCR"}, [R(1, 3, 4, 6)]),
    Case("s2d_crd", "space_to_depth", {"blocksize": 3, "mode": "CRD"}, [R(1, 2, 6, 3)]),
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("norm"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_reference(runner, case):
    check(case, runner.run(case))


def test_softmax_rows_sum_to_one(runner):
    case = next(c for c in CASES if c.id == "softmax_last_odd")
    np.testing.assert_allclose(runner.run(case)[0].sum(axis=1), 1.0, rtol=1e-6)


def test_depth_space_roundtrip(runner):
    d2s = next(c for c in CASES if c.id == "d2s_dcr")
    y = runner.run(d2s)[0]
    s2d = Case("s2d_rt", "space_to_depth", {"blocksize": 2, "mode": "DCR"}, [y])
    np.testing.assert_array_equal(s2d.reference()[0], d2s.inputs[0])
