"""End to end through cffi: hand-written packed-ABI kernels + generated glue -> kernels.so,
write_blob -> model.edgec, edgec.runtime.load -> run."""
from __future__ import annotations

import ctypes
import subprocess

import numpy as np
import pytest

import edgec
from edgec.errors import ArtifactError, RuntimeFailure, RuntimeInputError
from edgec.runtime import Model, RuntimeOptionError, TensorInfo, load

from runtime_helpers import B_CONST, SHAPE, addadd_model, c_compiler, make_artifact


def _a(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


def test_kernels_so_needs_only_libc(artifact):
    out = subprocess.run(["nm", "-D", "--undefined-only", str(artifact / "kernels.so")],
                         capture_output=True, text=True, check=True).stdout
    assert "TVMFFI" not in out and "__TVMBackend" not in out
    defined = subprocess.run(["nm", "-D", "--defined-only", str(artifact / "kernels.so")],
                             capture_output=True, text=True, check=True).stdout
    assert "edgec_model_kernels" in defined and "edgec_kernels_bind" in defined
    # the TVM hooks are hidden: a libtvm_ffi loaded in the process cannot interpose them
    assert "TVMFFIErrorSetRaisedFromCStrParts" not in defined and "__TVMBackendParallelLaunch" not in defined


def test_describe_and_run(artifact):
    with load(artifact) as m:
        assert isinstance(m, Model)
        assert m.inputs == [TensorInfo("a", "float32", SHAPE)]
        assert m.outputs == [TensorInfo("y", "float32", SHAPE), TensorInfo("s", "float32", SHAPE)]
        assert m.op_names == ["first_add", "second_add"]
        assert m.op_kernels == ["add_f32", "add_par_f32"]
        assert m.arena_bytes >= 384 + 256
        a = _a()
        out = m.run({"a": a})
        assert set(out) == {"y", "s"}
        np.testing.assert_array_equal(out["s"], a + B_CONST)
        np.testing.assert_array_equal(out["y"], (a + B_CONST) + a)
        assert out["y"].dtype == np.float32 and out["y"].shape == SHAPE
        # a non-contiguous input is accepted and copied correctly
        big = np.asfortranarray(_a(1))
        np.testing.assert_array_equal(m.run({"a": big})["s"], big + B_CONST)
        assert "a: float32[2, 3, 4]" in repr(m)
    assert m.closed


def test_via_package_load(artifact):
    m = edgec.load(artifact)
    np.testing.assert_array_equal(m.run({"a": _a(2)})["s"], _a(2) + B_CONST)
    m.close()
    m.close()  # idempotent


def test_copies_and_views(artifact):
    with load(artifact) as m:
        first = m.run({"a": _a(3)})
        view = m.run({"a": _a(3)}, copy=False)["s"]
        assert not view.flags.owndata
        np.testing.assert_array_equal(view, first["s"])
        m.run({"a": _a(4)})
        np.testing.assert_array_equal(view, _a(4) + B_CONST)      # views see the next run
        np.testing.assert_array_equal(first["s"], _a(3) + B_CONST)  # copies do not


def test_profiled(artifact):
    with load(artifact) as m:
        outputs, ns = m.run_profiled({"a": _a()})
        assert len(ns) == 2 and all(isinstance(t, int) and t >= 0 for t in ns)
        np.testing.assert_array_equal(outputs["s"], _a() + B_CONST)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads(artifact, threads):
    lib = ctypes.CDLL(str(artifact / "kernels.so"))  # same handle as the runtime's dlopen
    with load(artifact, threads=threads) as m:
        a = _a(threads)
        np.testing.assert_array_equal(m.run({"a": a})["y"], (a + B_CONST) + a)
        assert ctypes.c_int.in_dll(lib, "last_num_task").value == threads


def test_two_models_share_the_library(artifact):
    with load(artifact, threads=2) as m1, load(artifact, threads=1) as m2:
        for seed in range(3):
            np.testing.assert_array_equal(m1.run({"a": _a(seed)})["y"], (_a(seed) + B_CONST) + _a(seed))
            np.testing.assert_array_equal(m2.run({"a": _a(seed + 10)})["y"], (_a(seed + 10) + B_CONST) + _a(seed + 10))


def test_input_errors(artifact):
    with load(artifact) as m:
        with pytest.raises(RuntimeInputError, match=r"missing input\(s\) \['a'\].*a: float32\[2, 3, 4\]"):
            m.run({})
        with pytest.raises(RuntimeInputError, match=r"unknown input\(s\) \['b'\]"):
            m.run({"a": _a(), "b": _a()})
        with pytest.raises(RuntimeInputError, match=r"input 'a': wrong dtype: expected float32\[2, 3, 4\], "
                                                    r"got float64\[2, 3, 4\]"):
            m.run({"a": _a().astype(np.float64)})
        with pytest.raises(RuntimeInputError, match=r"input 'a': wrong shape: expected float32\[2, 3, 4\], "
                                                    r"got float32\[3, 2, 4\]"):
            m.run({"a": _a().reshape(3, 2, 4)})
        with pytest.raises(RuntimeInputError, match="dict"):
            m.run([_a()])
        # state is intact after the errors
        np.testing.assert_array_equal(m.run({"a": _a()})["s"], _a() + B_CONST)


def test_kernel_failure_names_the_op(tmp_path):
    d = make_artifact(tmp_path / "fails", addadd_model(second_kernel=2))
    with load(d) as m:
        with pytest.raises(RuntimeFailure) as e:
            m.run({"a": _a()})
        assert e.value.status_name == "EDGEC_ERR_KERNEL"
        msg = str(e.value)
        assert "op 1 'second_add' (kernel 'always_fails')" in msg
        assert "RuntimeError: this kernel always fails (from the test kernel)" in msg
        with pytest.raises(RuntimeFailure):  # still usable, fails the same way
            m.run({"a": _a()})


def test_workspace_exhaustion_is_a_kernel_error(tmp_path):
    d = make_artifact(tmp_path / "nows", addadd_model(workspace_size=0))
    with load(d) as m:
        with pytest.raises(RuntimeFailure, match="MemoryError: no workspace"):
            m.run({"a": _a()})


def test_load_errors(tmp_path, artifact):
    with pytest.raises(ArtifactError, match="does not exist"):
        load(tmp_path / "nowhere")
    with pytest.raises(RuntimeOptionError):
        load(artifact, threads=0)
    with pytest.raises(RuntimeOptionError):
        load(artifact, threads=1.5)
    # corrupt blob
    bad = make_artifact(tmp_path / "corrupt")
    data = bytearray((bad / "model.edgec").read_bytes())
    data[200] ^= 0xFF
    (bad / "model.edgec").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        load(bad)
    # missing blob, missing library
    (bad / "model.edgec").unlink()
    with pytest.raises(ArtifactError, match="model.edgec"):
        load(bad)
    nolib = tmp_path / "nolib"
    nolib.mkdir()
    (nolib / "model.edgec").write_bytes((artifact / "model.edgec").read_bytes())
    with pytest.raises(ArtifactError, match="kernels.so"):
        load(nolib)
    # a blob naming a kernel the library lacks
    model = addadd_model()
    model.kernels = ["add_f32", "not_in_library", "always_fails"]
    other = make_artifact(tmp_path / "other", model)
    with pytest.raises(ArtifactError, match="not_in_library"):
        load(other)
    # the model.edgec path works as well as the folder
    with load(artifact / "model.edgec") as m:
        assert m.path == artifact


def test_closed_model_refuses_to_run(artifact):
    m = load(artifact)
    m.close()
    with pytest.raises(RuntimeFailure, match="closed"):
        m.run({"a": _a()})


def test_compiler_available():
    assert c_compiler()


def test_concurrent_runs_from_python_threads(artifact):
    """Two models on one kernel library, driven from two Python threads at once: runs are
    serialized per library and each run rebinds its own hooks (workspace, thread pool)."""
    import threading
    errors = []
    with load(artifact, threads=2) as m1, load(artifact, threads=3) as m2:
        def work(m, seed):
            try:
                for k in range(30):
                    a = _a(seed + k)
                    np.testing.assert_array_equal(m.run({"a": a})["y"], (a + B_CONST) + a)
            except Exception as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=work, args=(m, 100 * i)) for i, m in enumerate([m1, m2, m1])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
