"""The C side built with CMake in a temp dir: the CTest suite passes, and the run_model
example runs an artifact made by write_blob + render_kernel_glue. Also: the runtime core
never touches the heap (source grep)."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from runtime_helpers import B_CONST, ROOT, SHAPE, make_artifact

CORE_SOURCES = sorted(p for p in (ROOT / "runtime_c" / "src").glob("*.[ch]") if not p.name.startswith("hosted"))


def test_core_sources_never_allocate():
    assert {p.name for p in CORE_SOURCES} >= {"model.c", "session.c", "workspace.c", "status.c", "crc32.c"}
    heap = re.compile(r"\b(malloc|calloc|realloc|free|aligned_alloc|posix_memalign)\s*\(")
    offenders = []
    for path in CORE_SOURCES:
        code = re.sub(r"/\*.*?\*/|//[^\n]*", "", path.read_text(), flags=re.S)  # comments may say "malloc"
        offenders += [f"{path.name}: {m.group(0)}" for m in heap.finditer(code)]
    assert not offenders


@pytest.fixture(scope="module")
def cmake_build(tmp_path_factory):
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    build = tmp_path_factory.mktemp("cmake")
    # sanitizers on: the fuzz test and everything else run under ASan + UBSan
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                    "-DEDGEC_SANITIZE=ON"], check=True, capture_output=True, text=True)
    r = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return build


def test_ctest(cmake_build):
    r = subprocess.run(["ctest", "--output-on-failure"], cwd=cmake_build, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-5000:]
    for name in ("test_model_load", "test_session", "test_fuzz", "test_pool", "test_no_malloc", "test_core_symbols",
                 "test_glue", "test_hosted"):
        assert name in r.stdout


def _npy(path, arr):
    np.save(path, arr)
    return str(path)


def test_run_model(cmake_build, tmp_path):
    art = make_artifact(tmp_path / "art")
    run_model = cmake_build / "run_model"
    a = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    out = tmp_path / "out"
    r = subprocess.run([str(run_model), str(art), _npy(tmp_path / "a.npy", a), "-o", str(out),
                        "--threads", "2", "--bench", "5", "--profile"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"output y: float32[2, 3, 4] -> {out}/y.npy" in r.stdout
    assert "output s: float32[2, 3, 4]" in r.stdout
    assert re.search(r"bench: 5 runs, 2 thread\(s\): p50 [0-9.]+ us", r.stdout)
    assert "op 1 second_add (add_par_f32):" in r.stdout
    np.testing.assert_array_equal(np.load(out / "s.npy"), a + B_CONST)
    np.testing.assert_array_equal(np.load(out / "y.npy"), (a + B_CONST) + a)


def test_run_model_npy_versions_and_errors(cmake_build, tmp_path):
    art = make_artifact(tmp_path / "art")
    run_model = str(cmake_build / "run_model")
    a = np.arange(24, dtype=np.float32).reshape(SHAPE)
    # a version 2.0 header is read too
    v2 = tmp_path / "a2.npy"
    with open(v2, "wb") as f:
        np.lib.format.write_array(f, a, version=(2, 0))
    r = subprocess.run([run_model, str(art), str(v2), "-o", str(tmp_path / "o2")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "o2" / "s.npy"), a + B_CONST)
    # dtype, shape, count and usage errors
    cases = [
        ([_npy(tmp_path / "d.npy", a.astype(np.float64))], "dtype"),
        ([_npy(tmp_path / "s.npy", a.reshape(4, 3, 2))], "shape does not match input 'a'"),
        ([str(v2), str(v2)], "1 input(s), 2 file(s)"),
        ([str(tmp_path / "missing.npy")], "cannot open"),
    ]
    for extra, message in cases:
        r = subprocess.run([run_model, str(art), *extra, "-o", str(tmp_path / "o3")], capture_output=True, text=True)
        assert r.returncode == 1 and message in r.stderr, (extra, r.stderr)
    r = subprocess.run([run_model, str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert r.returncode == 1 and "cannot open model blob" in r.stderr
    r = subprocess.run([run_model], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
    # no inputs: zeros
    r = subprocess.run([run_model, str(art), "-o", str(tmp_path / "o4")], capture_output=True, text=True)
    assert r.returncode == 0 and "using zeros" in r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "o4" / "s.npy"), B_CONST)
