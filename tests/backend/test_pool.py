"""Pooling kernels (max_pool, avg_pool, global pools) built by build_kernels, run with TVM's
runtime, against the numpy references and, for a sample, onnxruntime. The ``max_sep_*`` cases
(and ``max_pool_big``) take the separable max pool (``nn._max_pool_separable``: output rows of
16, 8 or 4 lanes, windows wholly in padding, a stride larger than the kernel, batch 2)."""
from __future__ import annotations

import numpy as np
import pytest

from ._harness import Case, build_cases, check, rand

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(7)


def _pool(id_, op, xs, k, s, p, d=None, cip=None, dtype="float32"):
    if dtype.startswith("float"):
        x = rand(RNG, *xs, dtype=dtype)
    else:
        x = RNG.integers(-100, 100, xs).astype(dtype)
    attrs = dict(kernel=k, strides=s, pads=p, dilations=d or (1,) * len(k))
    if cip is not None:
        attrs["count_include_pad"] = cip
    return Case(id_, op, attrs, [x], rtol=1e-6, atol=1e-6)


CASES = []
for op, extra in (("max_pool", [None]), ("avg_pool", [0, 1])):
    for cip in extra:
        t = f"{op}{'' if cip is None else cip}"
        CASES += [
            _pool(f"{t}_3x3s2", op, (2, 3, 11, 13), (3, 3), (2, 2), (1, 1, 1, 1), cip=cip),
            _pool(f"{t}_asym", op, (1, 4, 11, 13), (2, 3), (1, 2), (0, 1, 2, 0), cip=cip),   # windows in padding only
            _pool(f"{t}_dil", op, (1, 2, 12, 12), (3, 2), (2, 1), (1, 0, 1, 1), (2, 1), cip=cip),
            _pool(f"{t}_1d", op, (1, 4, 17), (3,), (2,), (1, 2), cip=cip),
            _pool(f"{t}_3d", op, (1, 2, 5, 6, 7), (2, 2, 2), (2, 1, 2), (0, 1, 0, 1, 0, 1), cip=cip),
            _pool(f"{t}_big", op, (1, 16, 40, 40), (3, 3), (2, 2), (1, 1, 1, 1), cip=cip),
        ]
CASES += [
    _pool("max_int8", "max_pool", (1, 3, 8, 8), (2, 2), (2, 2), (0, 0, 0, 0), dtype="int8"),
    _pool("max_int32_pad", "max_pool", (1, 2, 7, 7), (3, 3), (2, 2), (1, 1, 1, 1), dtype="int32"),
    _pool("max_sep_r50_16", "max_pool", (1, 8, 64, 64), (3, 3), (2, 2), (1, 1, 1, 1)),
    _pool("max_sep_8_batch", "max_pool", (2, 3, 22, 16), (3, 3), (2, 2), (1, 1, 1, 1)),
    _pool("max_sep_pad_only", "max_pool", (1, 2, 9, 12), (2, 3), (1, 2), (0, 4, 2, 1)),
    _pool("max_sep_gaps", "max_pool", (1, 3, 10, 24), (2, 2), (3, 3), (0, 0, 0, 0)),
    Case("gavg", "global_avg_pool", {}, [rand(RNG, 2, 3, 11, 13)], rtol=1e-6, atol=1e-6),
    Case("gavg_vec", "global_avg_pool", {}, [rand(RNG, 1, 64, 8, 8)], rtol=1e-6, atol=1e-6),
    Case("gavg_1d", "global_avg_pool", {}, [rand(RNG, 2, 5, 9)], rtol=1e-6, atol=1e-6),
    Case("gmax", "global_max_pool", {}, [rand(RNG, 2, 3, 11, 13)]),
    Case("gmax_3d", "global_max_pool", {}, [rand(RNG, 1, 4, 3, 4, 8)]),
    Case("gavg_f64", "global_avg_pool", {}, [rand(RNG, 1, 3, 6, 6, dtype="float64")], rtol=1e-12, atol=1e-12),
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("pool"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_pool_matches_reference(runner, case):
    check(case, runner.run(case))


def test_padding_only_windows_give_minus_inf(runner):
    """A max window lying wholly in the end padding is -inf (not the finite float minimum)."""
    case = next(c for c in CASES if c.id == "max_pool_asym")
    got = runner.run(case)[0]
    assert np.isneginf(got[:, :, -1, :]).all()


def test_separable_max_pool_padding_only_windows(runner):
    """Separable form: windows wholly in the left and the bottom padding are -inf."""
    case = next(c for c in CASES if c.id == "max_sep_pad_only")
    got = runner.run(case)[0]
    assert np.isneginf(got[:, :, :, :1]).all() and np.isneginf(got[:, :, -1, :]).all()
    assert np.isfinite(got[:, :, :-1, 1:]).all()


def test_separable_max_pool_choice():
    """Which cases the separable max pool takes (so the cases above test that path)."""
    from tvm import te

    from edgec.backend.kernels import nn as nnk
    from edgec.backend.kernels.registry import KernelSpec, TensorType

    from ._harness import host_target

    def lanes(case):
        x = case.inputs[0]
        y = case.reference()[0]
        spec = KernelSpec(case.op, dict(case.attrs), (TensorType(str(x.dtype), x.shape),),
                          (TensorType(str(y.dtype), y.shape),), host_target())
        return nnk._separable_max_pool_lanes(spec, te.placeholder(x.shape, str(x.dtype), name="x"))
    got = {c.id: lanes(c) for c in CASES if c.op == "max_pool"}
    top = host_target().vector_bits // 32
    assert got["max_sep_r50_16"] == min(16, top)
    assert got["max_sep_8_batch"] == 8
    assert got["max_sep_pad_only"] == 8
    assert got["max_sep_gaps"] == 8
    assert got["max_pool_big"] == 4
    for cid in ("max_pool_3x3s2", "max_pool_dil", "max_pool_1d", "max_pool_3d", "max_int8", "max_int32_pad"):
        assert got[cid] is None, cid          # rows of 7 / dilation / 1-D / 3-D / integers


def _ort_pool(case: Case) -> np.ndarray:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    x = case.inputs[0]
    y = case.reference()[0]
    a = case.attrs
    op = {"max_pool": "MaxPool", "avg_pool": "AveragePool"}[case.op]
    kw = dict(kernel_shape=list(a["kernel"]), strides=list(a["strides"]), pads=list(a["pads"]))
    if case.op == "max_pool":
        kw["dilations"] = list(a["dilations"])
    else:
        kw["count_include_pad"] = a["count_include_pad"]
    node = helper.make_node(op, ["x"], ["y"], **kw)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y.shape)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("cid", ["max_pool_3x3s2", "max_sep_r50_16", "max_sep_8_batch", "max_pool_dil", "max_pool_1d",
                                 "avg_pool0_3x3s2", "avg_pool1_3x3s2", "avg_pool0_3d", "avg_pool1_1d"])
def test_pool_matches_onnxruntime(runner, cid):
    case = next(c for c in CASES if c.id == cid)
    np.testing.assert_allclose(runner.run(case)[0], _ort_pool(case), rtol=1e-6, atol=1e-6)
