"""The sparse-input float32 dense (edgec/backend/kernels/sparse_dense.py): one row, constant
weights stored [K + 1, N], zero input entries skipped at run time. Against the numpy reference
(float32 rounding: the sums run in another order than numpy's), for sparse rows, rows without a
zero, signed zeros, NaN / inf inputs, weights that are not finite (the flag row: no skip, 0 * inf
stays NaN), K and N that are not multiples of 16, no bias; the dispatch; the text student's
embed in a compiled artifact."""
from __future__ import annotations

import numpy as np
import pytest

from ._harness import Case, build_cases, check

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(1633)


def _row(k, density, special=None):
    x = np.zeros((1, k), np.float32)
    nz = RNG.choice(k, size=max(1, int(density * k)), replace=False)
    x[0, nz] = RNG.integers(1, 4, nz.size).astype(np.float32)      # bag-of-words counts
    if special:
        for pos, v in special:
            x[0, pos] = v
    return x


def _case(id_, k, n, x, bias=True, w=None, tol=2e-5):
    w = RNG.standard_normal((n, k)).astype(np.float32) * 0.05 if w is None else w
    b = RNG.standard_normal(n).astype(np.float32) if bias else None
    return Case(id_, "dense", {}, [x, w, b], rtol=tol, atol=tol)


W_INF = RNG.standard_normal((40, 4100)).astype(np.float32)
W_INF[3, 17] = np.inf           # x[17] == 0 below: the dense result of output 3 is NaN
W_INF[5, 4099] = -np.inf

CASES = [
    _case("student_embed", 16384, 96, _row(16384, 0.005)),                          # ~80 non-zero
    _case("dense_row", 4096, 96, RNG.standard_normal((1, 4096)).astype(np.float32), tol=1e-4),  # no zero
    _case("odd_k_n_no_bias", 4100, 40, _row(4100, 0.02), bias=False),               # tail of 4 entries, N % 16
    _case("signed_zero_nan_inf", 4096, 32, _row(4096, 0.01, [(5, -0.0), (6, np.nan), (900, np.inf), (4095, -0.0)])),
    _case("all_zero", 8192, 48, np.zeros((1, 8192), np.float32)),                   # the bias alone
    _case("nonfinite_weights", 4100, 40, _row(4100, 0.01, [(17, 0.0), (4099, 0.0)]), w=W_INF),
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("sdense"))


@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")   # numpy's NaN / inf
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matches_the_reference(runner, case):
    got = runner.run(case)
    check(case, got)
    if case.id == "nonfinite_weights":          # 0 * inf kept: NaN where numpy has it, not skipped
        assert np.isnan(got[0][0, 3]) and np.isnan(got[0][0, 5]) and np.isfinite(got[0][0, :3]).all()
    if case.id == "signed_zero_nan_inf":        # NaN input: every output NaN, as numpy
        assert np.isnan(got[0]).all()


def test_dispatch_and_packing():
    """Packed [K + 1, N] with the flag row for float32 one-row GEMVs with K >= 4096 and N <= 192
    on hosted LLVM targets; not for two rows, a short K, many outputs, int types or C targets."""
    from edgec.backend.kernels.registry import KernelSpec, TensorType
    from edgec.backend.kernels.sparse_dense import KN_F32, pack_kn_f32, sparse_dense_fits
    from edgec.backend.kernels.quant_conv import prepack
    from edgec.targets import load_target
    host = load_target("host")
    assert sparse_dense_fits(host, (1, 16384), (96, 16384), "float32")
    assert not sparse_dense_fits(host, (2, 16384), (96, 16384), "float32")
    assert not sparse_dense_fits(host, (1, 2048), (96, 2048), "float32")
    assert not sparse_dense_fits(host, (1, 16384), (1000, 16384), "float32")
    assert not sparse_dense_fits(host, (1, 16384), (96, 16384), "int32")
    assert not sparse_dense_fits(load_target("generic-c"), (1, 16384), (96, 16384), "float32")
    assert not sparse_dense_fits(load_target("cortex-m4"), (1, 16384), (96, 16384), "float32")

    def spec(k, n):
        ins = (TensorType("float32", (1, k)), TensorType("float32", (n, k)), TensorType("float32", (n,)))
        return KernelSpec("dense", {}, ins, (TensorType("float32", (1, n)),), host)
    p = prepack(spec(4096, 64))[1]
    assert p.layout == KN_F32 and tuple(p.packed.shape) == (4097, 64)
    assert not prepack(spec(1024, 64))
    w = RNG.standard_normal((3, 5)).astype(np.float32)
    packed = pack_kn_f32(w)
    np.testing.assert_array_equal(packed[:5], w.T)
    assert not packed[5].any()
    w[1, 2] = np.nan
    assert pack_kn_f32(w)[5, 0] == 1.0 and not pack_kn_f32(w)[5, 1:].any()


def test_text_student_embed_in_an_artifact(tmp_path):
    """A model with the text student's embed shape (1 x 16384 bag of words -> 96, relu, -> 6)
    compiled: the embed runs the sparse-input kernel (its weights stored [K + 1, N] in the blob),
    the outputs match onnxruntime on sparse rows and on a row without zeros."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    import edgec
    from edgec.artifact.blob import read_blob
    w1 = (RNG.standard_normal((96, 16384)) * 0.05).astype(np.float32)
    w2 = RNG.standard_normal((6, 96)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1)], "bow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16384])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "bow.onnx"
    path.write_bytes(model.SerializeToString())
    out = edgec.compile(path, output_dir=tmp_path / "a")
    blob = read_blob((out / "model.edgec").read_bytes())
    assert any(t.name.endswith("#" + "kn_f32") and tuple(t.shape) == (16385, 96) for t in blob.tensors)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with edgec.load(out) as m:
        for x in (_row(16384, 0.005), _row(16384, 0.05), RNG.standard_normal((1, 16384)).astype(np.float32)):
            np.testing.assert_allclose(m.run({"x": x})["y"], sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)
