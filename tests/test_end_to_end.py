"""One real model, end to end, through each way a user runs edgec, checked against onnxruntime.

The model is the bundled example (tests/data/models/sms_spam_mlp.onnx, made by
tools/make_example_model.py) at features=1x1024, fed with featurized SMS messages:
- the Python API: ``edgec.compile`` -> ``edgec.load`` -> ``Model.run``;
- the CLI: ``python -m edgec.cli compile | run | verify | inspect`` in a subprocess;
- the C example program runtime_c/examples/run_model.c, built by the top-level
  CMakeLists.txt with cmake into a temporary build folder, run on the Python-compiled artifact.
These need the compiled artifact: with EDGEC_TEST_ENGINE=reference they are skipped with that reason.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import assert_close, run_ort

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "tests" / "data" / "models" / "sms_spam_mlp.onnx"
SHAPE = {"features": (1, 1024)}
OUT = "probs"
TEXTS = ["Are you coming to dinner tonight? Mum says 7.",
         "URGENT! You have WON a £1000 prize. Call 09061234567 now to claim, T&Cs apply.",
         "ok"]
TOL = 1e-5  # max abs error relative to max(1, max|want|); the outputs are probabilities

pytestmark = pytest.mark.compiled


def _example_tool():
    spec = importlib.util.spec_from_file_location("make_example_model", REPO / "tools" / "make_example_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def model() -> Path:
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} is missing; run `python tools/make_example_model.py`", pytrace=False)
    return MODEL


@pytest.fixture(scope="module")
def feeds_list() -> list[dict[str, np.ndarray]]:
    tool = _example_tool()
    return [{"features": tool.featurize(t)[None, :]} for t in TEXTS]


@pytest.fixture(scope="module")
def expected(model, feeds_list) -> list[np.ndarray]:
    want = [run_ort(model, f)[OUT] for f in feeds_list]
    # the example really classifies: the spam text is spam, the others ham
    assert [int(w.argmax()) for w in want] == [0, 1, 0]
    return want


@pytest.fixture(scope="module")
def artifact(model, tmp_path_factory) -> Path:
    import edgec
    return edgec.compile(model, target="host", input_shapes=SHAPE, output_dir=tmp_path_factory.mktemp("e2e") / "art")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _cli(*args, cwd: Path, expect: int | None = 0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgec.cli", *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    if expect is not None and proc.returncode != expect:
        pytest.fail(f"`edgec {' '.join(map(str, args))}` exited {proc.returncode}, expected {expect}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}", pytrace=False)
    return proc


# -- Python API ------------------------------------------------------------------------------

def test_python_api(artifact, feeds_list, expected):
    import edgec
    from edgec.errors import EdgecError
    assert Path(artifact).is_dir()
    manifest = json.loads((Path(artifact) / "manifest.json").read_text())
    assert [i["name"] for i in manifest["inputs"]] == ["features"]
    m = edgec.load(artifact, threads=1)
    assert [(t.name, np.dtype(t.dtype).name, tuple(t.shape)) for t in m.inputs] == [("features", "float32", (1, 1024))]
    assert [(t.name, np.dtype(t.dtype).name, tuple(t.shape)) for t in m.outputs] == [(OUT, "float32", (1, 2))]
    for k, (f, w) in enumerate(zip(feeds_list, expected)):
        got = m.run(f)
        assert list(got) == [OUT]
        assert_close(got[OUT], w, rel=TOL, what=f"text {k}")
    # the same session again, in reverse order: no state leaks between runs
    for k in reversed(range(len(feeds_list))):
        assert_close(m.run(feeds_list[k])[OUT], expected[k], rel=TOL, what=f"text {k} (rerun)")
    with pytest.raises(EdgecError):  # a wrong shape is a clear error, not a crash
        m.run({"features": np.zeros((1, 1000), np.float32)})


# -- CLI -------------------------------------------------------------------------------------

def test_cli_compile_run_verify_inspect(model, feeds_list, expected, tmp_path):
    out = tmp_path / "out"
    _cli("compile", model, "--target", "host", "--input-shape", "features=1,1024", "-o", out, cwd=tmp_path)
    assert (out / "manifest.json").is_file()

    for k, (f, w) in enumerate(zip(feeds_list, expected)):
        np.save(tmp_path / f"input_{k}.npy", f["features"])
        res = tmp_path / f"results_{k}"
        _cli("run", out, "--input", f"features=input_{k}.npy", "-o", res, cwd=tmp_path)
        files = sorted(p.name for p in res.iterdir())
        assert files == [f"{OUT}.npy"], f"`edgec run` wrote {files}, expected one .npy per output"
        assert_close(np.load(res / f"{OUT}.npy"), w, rel=TOL, what=f"`edgec run` text {k}")

    proc = _cli("verify", out, model, cwd=tmp_path)
    assert proc.stdout.strip(), "`edgec verify` printed nothing"

    # verify must be able to fail: the same graph with other weights differs
    import onnx
    from onnx import numpy_helper
    other = onnx.load(str(model))
    for init in other.graph.initializer:
        if init.name == "fc2.bias":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + np.float32([3.0, -3.0]), init.name))
    onnx.save(other, str(tmp_path / "other.onnx"))
    proc = _cli("verify", out, tmp_path / "other.onnx", cwd=tmp_path, expect=None)
    assert proc.returncode != 0, f"`edgec verify` passed an artifact against a different model:\n{proc.stdout}"

    proc = _cli("inspect", out, cwd=tmp_path)
    assert "features" in proc.stdout and OUT in proc.stdout, proc.stdout


def test_cli_error_is_one_clear_line(tmp_path):
    proc = _cli("compile", tmp_path / "missing.onnx", "-o", tmp_path / "o", cwd=tmp_path, expect=None)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "missing.onnx" in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


# -- C example program -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def run_model_exe(tmp_path_factory) -> Path:
    """Build runtime_c/examples/run_model.c with the top-level CMakeLists into a temp folder."""
    if not (REPO / "CMakeLists.txt").is_file():
        pytest.fail(f"{REPO}/CMakeLists.txt is missing: cannot build the C example", pytrace=False)
    if shutil.which("cmake") is None:
        pytest.fail("cmake not found on PATH: needed to build runtime_c/examples/run_model.c", pytrace=False)
    build = tmp_path_factory.mktemp("cmake-build")
    for cmd in (["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build), "--target", "run_model", "-j", "2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}",
                        pytrace=False)
    exes = [p for p in build.rglob("run_model") if p.is_file() and os.access(p, os.X_OK)]
    if len(exes) != 1:
        pytest.fail(f"expected one run_model executable under {build}, found {exes}", pytrace=False)
    return exes[0]


def test_c_run_model(run_model_exe, artifact, feeds_list, expected, tmp_path):
    for k, (f, w) in enumerate(zip(feeds_list, expected)):
        inp = tmp_path / f"input_{k}.npy"
        np.save(inp, f["features"])
        outdir = tmp_path / f"out_{k}"
        cmd = [str(run_model_exe), str(artifact), str(inp), "-o", str(outdir)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            pytest.fail(f"`{' '.join(cmd)}` exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}",
                        pytrace=False)
        path = outdir / f"{OUT}.npy"
        if not path.is_file():
            found = sorted(p.name for p in outdir.iterdir()) if outdir.is_dir() else "no folder"
            pytest.fail(f"run_model did not write {path.name} (one <output name>.npy per output); found {found}",
                        pytrace=False)
        assert_close(np.load(path), w, rel=TOL, what=f"run_model text {k}")


def test_c_run_model_rejects_bad_input(run_model_exe, artifact, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((1, 1000), np.float32))
    proc = subprocess.run([str(run_model_exe), str(artifact), str(bad), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, "run_model accepted an input of the wrong shape"
    assert proc.returncode > 0, f"run_model crashed (signal {-proc.returncode}) on a wrong-shape input"
    assert proc.stderr.strip(), "run_model gave no message for a wrong-shape input"


# -- benchmark script (structure only: nothing about speed is asserted) -----------------------

def test_bench_script_smoke(model, run_model_exe, kernel_cache_dir, tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_fp32.py"), str(model), "--input-shape", "features=1,1024",
           "--runs", "3", "--warmup", "1", "--run-model", str(run_model_exe), "--cache-dir", str(kernel_cache_dir),
           "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert proc.returncode == 0, f"bench_fp32.py exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    res = json.loads(out.read_text())["results"]
    assert [r["model"] for r in res] == ["sms_spam_mlp"]
    r = res[0]
    for part in ("edgec_python", "edgec_c", "onnxruntime"):
        assert "median_ms" in r[part], (part, r[part])
        assert r[part]["median_ms"] > 0
        if part != "edgec_c" or r[part].get("p90_ms") is not None:  # run_model may print no p90
            assert r[part]["median_ms"] <= r[part]["p90_ms"]
    assert r["compile_s"] > 0 and r["max_abs_error_vs_onnxruntime"] <= TOL
    assert "| sms_spam_mlp |" in proc.stdout
