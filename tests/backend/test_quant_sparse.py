"""The sparse-input qdense GEMV (edgec/backend/kernels/quant_sparse.py) against the numpy reference
of edgec/ops/quant.py, bit for bit: dense, sparse, all-zero and overflowing (dense fallback)
inputs, K not a multiple of the 32-byte scan block, N not a multiple of the 8-output chunk,
int8 activations with a non-zero zero point, several rows; the dispatch rule of ``qdense``; an
aarch64 and an AVX2 compile. Kernels are built straight from a KernelSpec (``input_density`` is
set on the spec: the op schema line is the lead's) and run through TVM's runtime."""
from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from edgec.backend.kernels import quant_sparse  # noqa: E402
from edgec.backend.kernels.registry import KERNELS, KernelSpec, TensorType  # noqa: E402
from edgec.ir import ops as irops  # noqa: E402
from edgec.quant.qmath import qrange  # noqa: E402
from edgec.targets import load_target  # noqa: E402

pytestmark = pytest.mark.tvm


def _attrs(rng, n, x_dtype, density, per_channel=True):
    lo, hi = qrange(x_dtype)
    ms = rng.integers(2 ** 30, 2 ** 31 - 1, n if per_channel else 1)
    a = {"x_zero_point": 0 if x_dtype == "uint8" else int(rng.integers(lo, hi + 1)),
         "multiplier": tuple(int(v) for v in ms), "shift": tuple([-11] * len(ms)),
         "out_zero_point": 7, "qmin": 0, "qmax": 255, "out_dtype": "uint8"}
    if density is not None:
        a["input_density"] = density
    return a


def _reference(x, w, b, attrs):
    ref_attrs = {k: v for k, v in attrs.items() if k != "input_density"}
    return np.asarray(irops.get("qdense").reference(x, w, b, **ref_attrs)[0])


def _spec(x, w, b, attrs, target):
    ins = [TensorType(str(x.dtype), x.shape), TensorType("int8", w.shape)]
    ins.append(TensorType("int32", b.shape) if b is not None else None)
    out = TensorType("uint8", (x.shape[0], w.shape[0]))
    return KernelSpec("qdense", dict(attrs), tuple(ins), (out,), target)


_BUILT: dict = {}


def _run(x, w, b, attrs, target=None):
    target = target or load_target("host")
    spec = _spec(x, w, b, attrs, target)
    key = spec.key()
    if key not in _BUILT:
        func = KERNELS["qdense"](spec)
        _BUILT[key] = (tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                                   target=target.tvm_target()), func)
    ex, func = _BUILT[key]
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(x, dev), tvm.runtime.tensor(w, dev)]
    if b is not None:
        args.append(tvm.runtime.tensor(b, dev))
    y = tvm.runtime.tensor(np.zeros((x.shape[0], w.shape[0]), np.uint8), dev)
    ex["main"](*args, y)
    return y.numpy(), func


def _is_sparse_kernel(func) -> bool:
    return any(getattr(p, "name", "") == "x" for p in func.params) and "idx" in func.script()


def _sparse_x(rng, m, k, nnz, dtype="uint8"):
    x = np.zeros((m, k), dtype)
    for i in range(m):
        pos = rng.choice(k, nnz, replace=False)
        x[i, pos] = rng.integers(1, 128, nnz)
    return x


@pytest.mark.parametrize("m,n,k,nnz,bias", [
    (1, 96, 4096, 30, True),          # the text student's shape class
    (1, 21, 1090, 17, True),          # K % 32 != 0 (tail scan), N % 8 != 0 (tail chunk)
    (1, 8, 1024, 0, True),            # all zero: bias and requantization only
    (1, 13, 2051, 30, False),         # no bias, odd K
    (1, 16, 16384, quant_sparse.index_list(16384)[1], True),      # a full index list (256): still sparse
    (1, 16, 16384, quant_sparse.index_list(16384)[1] + 1, True),  # one more: the dense kernel
    (1, 9, 65600, 40, True),                              # K > 2^16: int32 index list
    (1, 9, 65600, quant_sparse.CAP32 + 1, True),          # ... and its overflow
    (1, 12, 1100, 1100, True),        # fully dense input: the dense fallback
])
def test_bit_exact(m, n, k, nnz, bias):
    rng = np.random.default_rng(1000 + m * 7 + n * 3 + k + nnz)
    x = _sparse_x(rng, m, k, nnz)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    b = rng.integers(-40000, 40000, n).astype(np.int32) if bias else None
    attrs = _attrs(rng, n, "uint8", 0.001)      # the evidence says sparse, whatever this input is
    got, func = _run(x, w, b, attrs)
    assert _is_sparse_kernel(func)
    ref = _reference(x, w, b, attrs)
    np.testing.assert_array_equal(got, ref)
    if nnz >= 30:
        assert np.unique(ref).size > 3          # not a saturated, trivially equal output


def _int8_case(rng, k, n, nnz, n_min, density):
    """int8 activations: nnz non-zero entries, n_min of them -128, x_zero_point -37."""
    x = np.zeros((1, k), np.int8)
    pos = rng.choice(k, nnz, replace=False)
    x[0, pos] = rng.integers(-128, 128, nnz)
    x[0, pos[:n_min]] = -128
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    b = rng.integers(-40000, 40000, n).astype(np.int32)
    return x, w, b, {**_attrs(rng, n, "int8", density), "x_zero_point": -37}


def test_int8_activations_nonzero_zero_point():
    """Zero entries are skipped, not zero-point entries: exact for any x_zero_point (the bias
    carries the zero-point fold)."""
    x, w, b, attrs = _int8_case(np.random.default_rng(5), 8192, 24, 50, 10, 0.005)
    got, func = _run(x, w, b, attrs)
    assert _is_sparse_kernel(func)
    np.testing.assert_array_equal(got, _reference(x, w, b, attrs))


def test_per_tensor_requantization():
    rng = np.random.default_rng(6)
    x = _sparse_x(rng, 1, 1536, 20)
    w = rng.integers(-127, 128, (10, 1536)).astype(np.int8)
    b = rng.integers(-40000, 40000, 10).astype(np.int32)
    attrs = _attrs(rng, 10, "uint8", 0.005, per_channel=False)
    got, _ = _run(x, w, b, attrs)
    np.testing.assert_array_equal(got, _reference(x, w, b, attrs))


def test_dispatch_rule():
    fits = quant_sparse.sparse_gemv_fits
    assert fits({"input_density": 0.005}, 1, 16384)
    assert not fits({}, 1, 16384)                                  # no evidence: the dense kernels
    assert not fits({"input_density": None}, 1, 16384)
    assert not fits({"input_density": 0.5}, 1, 16384)              # dense input
    assert not fits({"input_density": 0.01}, 1, 512)               # short K
    assert not fits({"input_density": 0.005}, 2, 16384)            # more than one row
    assert fits({"input_density": 0.0078}, 1, 16384)               # 128 expected non-zeros <= 256 / 2
    assert not fits({"input_density": 0.008}, 1, 16384)            # 131 > 256 / 2
    assert quant_sparse.index_list(16384) == ("uint16", 256)       # K / BREAK_EVEN
    assert quant_sparse.index_list(1 << 16) == ("uint16", quant_sparse.CAP16)
    assert quant_sparse.index_list((1 << 16) + 1) == ("int32", quant_sparse.CAP32)
    assert not fits({"input_density": True}, 1, 16384)


def test_dense_evidence_keeps_the_dense_kernel():
    """Without the attribute (or with a dense one) qdense builds its usual kernel."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (1, 1024)).astype(np.uint8)
    w = rng.integers(-127, 128, (8, 1024)).astype(np.int8)
    b = rng.integers(-40000, 40000, 8).astype(np.int32)
    for density in (None, 0.9):
        attrs = _attrs(rng, 8, "uint8", density)
        got, func = _run(x, w, b, attrs)
        assert not _is_sparse_kernel(func)
        np.testing.assert_array_equal(got, _reference(x, w, b, attrs))


@pytest.mark.parametrize("target_name", ["x86_64-avx2", "aarch64"])
def test_compiles_for_other_targets(tmp_path, target_name):
    from edgec.backend.build import compile_spec
    target = load_target(target_name)
    rng = np.random.default_rng(8)
    x = _sparse_x(rng, 1, 2080, 20)
    w = rng.integers(-127, 128, (20, 2080)).astype(np.int8)
    b = rng.integers(-40000, 40000, 20).astype(np.int32)
    spec = _spec(x, w, b, _attrs(rng, 20, "uint8", 0.005), target)
    meta = compile_spec(spec, "k_sparse", tmp_path / "k.o")
    assert meta["code_bytes"] > 0
    assert meta["workspace_bytes"] == 0            # the index list stays on the stack
    if target_name.startswith("x86_64") and target.host_can_run():    # in-process (aarch64: compile only)
        got, _ = _run(x, w, b, spec.attrs, target)
        np.testing.assert_array_equal(got, _reference(x, w, b, spec.attrs))


@pytest.fixture
def density_schema(monkeypatch):
    """qdense's schema with the ``input_density`` attribute (the one-line change of
    edgec/ops/quant.py this feature needs; a no-op if it is already there)."""
    import dataclasses
    irops._ensure_loaded()
    od = irops.OPS["qdense"]
    if "input_density" not in od.attrs:
        ref = od.reference

        def reference(*args, input_density=None, **kw):
            return ref(*args, **kw)
        monkeypatch.setitem(irops.OPS, "qdense", dataclasses.replace(
            od, attrs={**od.attrs, "input_density": None}, reference=reference))


def test_pass_records_input_density(density_schema):
    """quantize_int8 with calibration feeds sets input_density (fraction of non-zero quantized
    input entries) on a one-row, long-K qdense, and only there."""
    from edgec.passes.quantize_int8 import QuantizeOptions, annotate_input_density, quantize_int8
    from edgec.quant import CalibrationOptions, calibrate
    from tests.passes._graphs import builder, finish
    rng = np.random.default_rng(11)
    k = 2048
    b = builder({"x": ("float32", (1, k)), "h": ("float32", (1, 64))})
    (y,) = b.emit("dense", ["x", b.add_const(rng.normal(size=(16, k)).astype(np.float32) * 0.1, "w"), ""],
                  name="bag")
    (z,) = b.emit("dense", ["h", b.add_const(rng.normal(size=(8, 64)).astype(np.float32), "w2"), ""], name="small")
    (r,) = b.emit("relu", [y], name="r")
    (r2,) = b.emit("relu", [z], name="r2")
    g = finish(b, ["x", "h"], [r, r2])
    feeds = []
    for _ in range(10):
        x = np.zeros((1, k), np.float32)
        x[0, rng.choice(k, 20, replace=False)] = rng.uniform(0.2, 1.0, 20)
        feeds.append({"x": x, "h": rng.normal(size=(1, 64)).astype(np.float32)})
    ranges = calibrate(g, feeds, CalibrationOptions(quiet=True))
    qg = quantize_int8(g, ranges, QuantizeOptions(bias_correction=False), calib_feeds=iter(feeds))
    nodes = {n.name: n for n in qg.nodes}
    assert nodes["bag"].op == "qdense" and nodes["bag"].attrs["input_density"] == round(20 / k, 4)
    assert nodes["small"].attrs.get("input_density") is None          # K = 64: not a candidate
    # the function alone, on dense samples: a dense value (the kernel then keeps the dense path)
    dense = [{"x": rng.uniform(0.2, 1.0, (1, k)).astype(np.float32), "h": f["h"]} for f in feeds]
    assert annotate_input_density(qg, dense) == {"bag": 1.0}
    assert not quant_sparse.sparse_gemv_fits(nodes["bag"].attrs | {"input_density": 1.0}, 1, k)


@pytest.mark.parametrize("nnz", [0, 5, 32, 33, 200])
def test_which_path_runs(nnz):
    """With a stand-in dense body that writes 171 everywhere: a row within the index list (K /
    BREAK_EVEN = 32 entries here) is computed by the sparse path (the reference's bits), a longer
    one runs the dense body."""
    from tvm import te
    from edgec.backend.kernels.quant import _requant_node
    rng = np.random.default_rng(20 + nnz)
    m, n, k = 1, 11, 2048
    cap = quant_sparse.index_list(k)[1]
    assert cap == 32
    x = _sparse_x(rng, m, k, nnz)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    b = rng.integers(-40000, 40000, n).astype(np.int32)
    attrs = _attrs(rng, n, "uint8", 0.001)
    xp = te.placeholder((m, k), "uint8", name="x")
    wp = te.placeholder((n, k), "int8", name="w")
    bp = te.placeholder((n,), "int32", name="bias")
    yp = te.compute((m, n), lambda i, j: tvm.tirx.const(171, "uint8"), name="y")
    standin = te.create_prim_func([xp, wp, bp, yp])
    func = quant_sparse.sparse_gemv(standin, m, n, k, True,
                                    lambda acc, bj, j: _requant_node((acc, bj), attrs, j))
    ex = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                     target=load_target("host").tvm_target())
    dev = tvm.cpu()
    y = tvm.runtime.tensor(np.zeros((m, n), np.uint8), dev)
    ex["main"](tvm.runtime.tensor(x, dev), tvm.runtime.tensor(w, dev), tvm.runtime.tensor(b, dev), y)
    if nnz <= cap:
        np.testing.assert_array_equal(y.numpy(), _reference(x, w, b, attrs))
    else:
        assert (y.numpy() == 171).all()


@pytest.mark.parametrize("target_name", ["cortex-m4", "generic-c"])
def test_bare_metal_and_c_targets_keep_the_dense_kernel(target_name):
    """The scan's vector loads have no C form, and a bare-metal target may be built as C."""
    rng = np.random.default_rng(9)
    x = _sparse_x(rng, 1, 2048, 10, "int8")
    w = rng.integers(-127, 128, (8, 2048)).astype(np.int8)
    b = rng.integers(-40000, 40000, 8).astype(np.int32)
    spec = _spec(x, w, b, _attrs(rng, 8, "int8", 0.005), load_target(target_name))
    assert quant_sparse.sparse_qdense(spec) is None
    host = _spec(x, w, b, spec.attrs, load_target("host"))
    assert quant_sparse.sparse_qdense(host) is not None


# -- the [K, N] form (weights stored transposed at compile time) ----------------------------------------

def _kn_spec(x, w, b, attrs, target):
    """A qdense spec whose weights are stored [K, N] (what the prepack rule gives the kernel)."""
    k, n = w.shape[1], w.shape[0]
    ins = [TensorType(str(x.dtype), x.shape), TensorType("int8", (k, n)),
           TensorType("int32", b.shape) if b is not None else None]
    return KernelSpec("qdense", {**attrs, "w_layout": quant_sparse.KN_LAYOUT, "w_shape": (n, k)}, tuple(ins),
                      (TensorType("uint8", (x.shape[0], n)),), target)


def _run_kn(x, w, b, attrs, target=None):
    target = target or load_target("host")
    func = quant_sparse.sparse_kn_qdense(_kn_spec(x, w, b, attrs, target))
    ex = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target.tvm_target())
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(x, dev), tvm.runtime.tensor(np.ascontiguousarray(w.T), dev)]
    if b is not None:
        args.append(tvm.runtime.tensor(b, dev))
    y = tvm.runtime.tensor(np.zeros((x.shape[0], w.shape[0]), np.uint8), dev)
    ex["main"](*args, y)
    return y.numpy()


@pytest.mark.parametrize("n,k,nnz,bias,per_channel", [
    (64, 1024, 30, True, True),       # the text MLP's fc1 shape class
    (96, 16384, 76, True, True),      # the text student's embed
    (21, 1090, 17, True, True),       # K % 32 != 0 (the tail scan), N % 16 != 0 (a 5-lane chunk)
    (8, 1024, 0, True, True),         # all zero: bias and requantization only
    (13, 2051, 30, False, False),     # no bias, per-tensor requantization
    (1, 1056, 12, True, True),        # one output
    (40, 1100, 1100, True, True),     # a fully dense row: correct, only slower
])
def test_kn_bit_exact(n, k, nnz, bias, per_channel):
    rng = np.random.default_rng(3000 + n + k + nnz)
    x = _sparse_x(rng, 1, k, nnz)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    b = rng.integers(-40000, 40000, n).astype(np.int32) if bias else None
    attrs = _attrs(rng, n, "uint8", 0.001, per_channel=per_channel)
    ref = _reference(x, w, b, attrs)
    np.testing.assert_array_equal(_run_kn(x, w, b, attrs), ref)
    if nnz >= 30:
        assert np.unique(ref).size > 3


def test_kn_int8_activations_and_avx2():
    """int8 activations with a non-zero zero point (zeros skipped, -128 included), on the host and
    compiled for AVX2."""
    x, w, b, attrs = _int8_case(np.random.default_rng(31), 4096, 48, 60, 8, 0.01)
    ref = _reference(x, w, b, attrs)
    for target in (load_target("host"), load_target("x86_64-avx2")):
        if target.host_can_run():
            np.testing.assert_array_equal(_run_kn(x, w, b, attrs, target), ref)


def test_kn_dispatch_rule():
    fits = quant_sparse.sparse_kn_fits
    assert fits({"input_density": 0.029}, 1, 1024, 64)             # the text MLP's fc1
    assert fits({"input_density": 0.0047}, 1, 16384, 96)           # the text student's embed
    assert not fits({}, 1, 1024, 64)                                # no evidence
    assert fits({"input_density": 0.2}, 1, 1024, 64)                # 205 <= K / KN_BREAK_EVEN = 256
    assert not fits({"input_density": 0.3}, 1, 1024, 64)            # 307 > 256
    assert not fits({"input_density": 0.01}, 2, 1024, 64)           # two rows
    assert not fits({"input_density": 0.01}, 1, 512, 64)            # short K
    assert not fits({"input_density": 0.01}, 1, 4096, quant_sparse.KN_MAX_N + 1)   # accumulators off the stack


def test_kn_prepack_rule():
    """qdense with sparse evidence stores its weights [K, N] on hosted LLVM targets; not
    qdense_dequant, not without evidence, not on bare-metal / C targets."""
    from edgec.backend.kernels.quant_conv import prepack
    rng = np.random.default_rng(40)
    x = np.zeros((1, 4096), np.uint8)
    w = rng.integers(-127, 128, (48, 4096)).astype(np.int8)
    b = np.zeros(48, np.int32)
    attrs = _attrs(rng, 48, "uint8", 0.01)
    for name in ("host", "x86_64-avx2", "aarch64", "armv7"):
        p = prepack(_spec(x, w, b, attrs, load_target(name)))
        assert list(p) == [1] and p[1].layout == quant_sparse.KN_LAYOUT and p[1].packed.shape == (4096, 48), name
        np.testing.assert_array_equal(p[1].pack(w), w.T)
        assert dict(p[1].attrs) == {"w_layout": "kn", "w_shape": (48, 4096)}
    no_evidence = {k: v for k, v in attrs.items() if k != "input_density"}
    assert prepack(_spec(x, w, b, no_evidence, load_target("host"))) == {}     # one row: the GEMV, in place
    for name in ("cortex-m4", "generic-c"):
        assert prepack(_spec(x, w, b, attrs, load_target(name))) == {}
    dq = KernelSpec("qdense_dequant", {"x_zero_point": 0, "scale": (0.01,)},
                    (TensorType("uint8", (1, 4096)), TensorType("int8", (48, 4096)), None),
                    (TensorType("float32", (1, 48)),), load_target("host"))
    assert all(p.layout != quant_sparse.KN_LAYOUT for p in prepack(dq).values())


def test_kn_in_a_compiled_model(tmp_path, monkeypatch):
    """A bag-of-words qdense compiled: the blob stores its weights [K, N] (the graph keeps
    [N, K]), the report counts them, and the artifact gives the reference's bits, the same as
    an artifact built without pre-packing (the [N, K] sparse GEMV)."""
    import json

    import edgec
    from edgec.artifact.blob import read_blob
    from edgec.compiler import compile_model
    from edgec.ir.graph import Graph, Node, Value
    from edgec.reference.interpreter import run_graph
    rng = np.random.default_rng(41)
    k, n = 2048, 40
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    b = rng.integers(-40000, 40000, n).astype(np.int32)
    attrs = irops.get("qdense").normalize_attrs(_attrs(rng, n, "uint8", 0.01))
    g = Graph([Node("qdense", ("x", "w", "b"), ("y",), attrs, "bag")],
              {"x": Value("x", "uint8", (1, k)), "w": Value("w", "int8", w.shape, const=w),
               "b": Value("b", "int32", b.shape, const=b), "y": Value("y", "uint8", (1, n))}, ["x"], ["y"], name="bag")
    arts = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("EDGEC_PREPACK", mode)
        arts[mode] = compile_model(g, target="host", output_dir=tmp_path / f"art{mode}", cache_dir=tmp_path / "cache",
                                   tuning=False)
    consts = {t.name: t for t in read_blob((arts["1"] / "model.edgec").read_bytes()).tensors if t.storage == "const"}
    assert set(consts) == {"w#kn", "b"} and consts["w#kn"].shape == (k, n)
    np.testing.assert_array_equal(np.frombuffer(consts["w#kn"].data, np.int8).reshape(k, n), w.T)
    assert g.values["w"].const.shape == (n, k)
    rep = json.loads((arts["1"] / "report.json").read_text())
    assert rep["summary"]["constant_bytes"] == k * n + 4 * n
    with edgec.load(arts["1"]) as a, edgec.load(arts["0"]) as u:
        for nnz in (0, 20, 300):
            x = _sparse_x(rng, 1, k, nnz)
            ya = a.run({"x": x})["y"]
            np.testing.assert_array_equal(ya, u.run({"x": x})["y"])
            np.testing.assert_array_equal(ya, run_graph(g, {"x": x})["y"])


@pytest.mark.parametrize("target_name", ["aarch64", "armv7", "x86_64-avx2"])
def test_kn_compiles_for_other_targets(tmp_path, target_name):
    """The [K, N] kernel (a 64-byte OR reduction per block) compiles for the ARM targets, with no
    workspace (the accumulators stay on the stack)."""
    from edgec.backend.build import compile_spec
    rng = np.random.default_rng(42)
    x = _sparse_x(rng, 1, 2080, 20)
    w = rng.integers(-127, 128, (20, 2080)).astype(np.int8)
    b = rng.integers(-40000, 40000, 20).astype(np.int32)
    meta = compile_spec(_kn_spec(x, w, b, _attrs(rng, 20, "uint8", 0.005), load_target(target_name)), "k_kn",
                        tmp_path / "k.o")
    assert meta["code_bytes"] > 0 and meta["workspace_bytes"] == 0
