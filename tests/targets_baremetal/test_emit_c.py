"""Kernels emitted as C source (emit "c"): the generic-c target, built by hand with the host's
gcc from the artifact's sources only (kernels/*.c, kernel_glue.c, model_blob.c, runtime/src,
examples/cortex_m/main.c) exactly as a user's own toolchain would, and run; compared with the
x86-64 artifact and onnxruntime. Also: C kernels for Cortex-M7 compile with arm-none-eabi-gcc,
and the emit modes a target cannot produce are clear errors."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

import edgec
import edgec.runtime
from edgec.artifact import firmware as fw
from edgec.backend.build import build_kernels, check_emit, default_emit
from edgec.errors import CompileError
from edgec.targets import load_target
from tests.helpers import assert_close, run_ort
from tests.targets_arm.arm_helpers import sms_data
from tests.targets_baremetal.conftest import REPO, SMS, SMS_SHAPES

pytestmark = pytest.mark.compiled


def _need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.fixture(scope="module")
def c_artifacts(tmp_path_factory):
    """fp32 and int8 SMS artifacts for generic-c and for the host (same calibration)."""
    _need("gcc", "ar", "size")
    d = tmp_path_factory.mktemp("emit-c")
    calib, tests = sms_data()
    arts = {}
    for kind, opts in (("fp32", {}), ("int8", {"quantize": "int8", "calib": calib})):
        arts[kind] = (edgec.compile(SMS, target="generic-c", input_shapes=SMS_SHAPES, output_dir=d / f"c-{kind}", **opts),
                      edgec.compile(SMS, target="host", input_shapes=SMS_SHAPES, output_dir=d / f"host-{kind}", **opts))
    return arts, tests


def _build_by_hand(art, arrays, work) -> subprocess.CompletedProcess:
    """gcc on the artifact's C sources (no library edgec built), like a user's firmware build."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "model_input.c").write_text(fw.render_input_source(arrays))
    sources = [*sorted((art / "kernels").glob("*.c")), *sorted((art / "runtime" / "src").glob("*.c")),
               art / "model_blob.c", REPO / "examples" / "cortex_m" / "main.c", work / "model_input.c"]
    exe = work / "model_prog"
    cmd = ["gcc", "-O2", "-std=c11", f"-I{art / 'kernels'}", f"-I{art / 'runtime' / 'include'}", f"-I{art}",
           f"-I{REPO / 'examples' / 'cortex_m'}", "-o", str(exe), *map(str, sources), "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)


def test_generic_c_artifact_is_self_contained_c(c_artifacts):
    arts, _ = c_artifacts
    art = arts["fp32"][0]
    srcs = sorted((art / "kernels").glob("k_*.c"))
    assert len(srcs) == 4 and not list((art / "kernels").glob("k_*.o")) and not (art / "kernels.so").exists()
    for src in srcs:
        text = src.read_text()
        assert '#include "edgec_kernel.h"' in text and '#include "tvm/' not in text
        assert "__tvm_ffi_main" not in text and "float4" not in text
    for f in ("kernels/edgec_kernel.h", "kernels/kernel_glue.c", "model_blob.c", "model_blob.h", "libmodel.a",
              "libedgec_runtime.a", "runtime/src/session.c", "runtime/src/internal.h",
              "runtime/include/edgec/edgec.h"):
        assert (art / f).is_file(), f
    assert "TVMBackendAllocWorkspace(" in (art / "kernels" / "kernel_glue.c").read_text()
    rep = json.loads((art / "report.json").read_text())
    assert rep["target"] == "generic-c" and rep["summary"]["kernel_code_bytes"] > 0
    assert rep["footprint"]["kernels"]["count"] == 4 and rep["footprint"]["tool"] == "size"


def test_generic_c_built_by_hand_matches_host_and_onnxruntime(c_artifacts, tmp_path):
    arts, tests = c_artifacts
    c_art, host = arts["fp32"]
    with edgec.runtime.load(host) as hm:
        for k, feeds in enumerate(tests[:2]):
            res = _build_by_hand(c_art, [feeds["features"]], tmp_path / f"s{k}")
            assert res.returncode == 0, res.stdout + res.stderr
            parsed = fw.parse_firmware_output(res.stdout)
            assert parsed["status"] == "EDGEC_OK" and parsed["arena"][0] <= parsed["arena"][1]
            got = parsed["outputs"][0][3].view(np.float32).reshape(1, 2)
            assert_close(got, hm.run(feeds)["probs"], rel=1e-5, what=f"sample {k} vs host")
            assert_close(got, run_ort(SMS, feeds)["probs"], rel=1e-4, what=f"sample {k} vs onnxruntime")


def test_generic_c_int8_matches_host(c_artifacts):
    """Integer kernels are exact in C as in LLVM; the float tail (dequantize, softmax) may differ
    by a few ulp: TVM's LLVM contracts a*b+c into FMAs, a C compiler decides for itself."""
    arts, tests = c_artifacts
    c_art, host = arts["int8"]
    assert "quantization" in json.loads((c_art / "report.json").read_text())
    assert any(p.name.startswith("k_qdense_") for p in (c_art / "kernels").glob("*.c"))
    with edgec.runtime.load(host) as hm, edgec.runtime.load(c_art, emulate=True) as m:
        assert isinstance(m, fw.FirmwareModel)
        for feeds in tests:
            got, want = m.run(feeds)["probs"], hm.run(feeds)["probs"]
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-9)


def test_cortex_m7_c_kernels_build_with_arm_none_eabi(tmp_path):
    _need("arm-none-eabi-gcc")
    from edgec.frontend.onnx_import import import_onnx
    from edgec.passes import run_pipeline
    t = load_target("cortex-m7")
    assert default_emit(t) == "static" and check_emit(t, "c") == "c"
    g = run_pipeline(import_onnx(SMS, input_shapes=SMS_SHAPES))
    lib = build_kernels(g, t, tmp_path, emit="c")
    assert lib.emit == "c" and lib.library is None and all(p.suffix == ".c" for p in lib.objects)
    flags = fw.kernel_c_cflags(t, tmp_path / "kernels")
    for src in [*lib.objects, lib.glue]:
        obj = tmp_path / (src.stem + ".o")
        res = subprocess.run([t.cc, *flags, "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        hdr = subprocess.run(["readelf", "-h", "-A", str(obj)], capture_output=True, text=True).stdout
        assert "ARM" in hdr and "v7E-M" in hdr


def test_emit_modes_a_target_cannot_produce():
    assert default_emit(load_target("generic-c")) == "c"
    assert default_emit(load_target("aarch64")) == "shared"
    with pytest.raises(CompileError, match="generates C source only"):
        check_emit(load_target("generic-c"), "static")
    with pytest.raises(CompileError, match="bare metal"):
        check_emit(load_target("cortex-m7"), "shared")
    with pytest.raises(CompileError, match="hosted target aarch64"):
        check_emit(load_target("aarch64"), "c")
    with pytest.raises(CompileError, match="unknown emit mode 'so'"):
        check_emit(load_target("cortex-m4"), "so")


def test_cortex_m7_emit_c_firmware_matches_static(baremetal_artifact, tmp_path):
    """edgec.compile(..., emit="c") for Cortex-M7 (needs the compile driver to pass ``emit``
    to build_kernels): the firmware built from the C kernels runs in qemu and prints what the
    firmware from TVM's objects prints, within float rounding."""
    from tests.targets_baremetal.conftest import need_tools
    need_tools("cortex-m7")
    out = edgec.compile(SMS, target="cortex-m7", input_shapes=SMS_SHAPES, output_dir=tmp_path / "c", emit="c")
    assert sorted(p.suffix for p in (out / "kernels").glob("k_*")) == [".c"] * 4
    x = np.random.default_rng(5).poisson(0.03, size=SMS_SHAPES["features"]).astype(np.float32)
    static = baremetal_artifact("cortex-m7")
    with edgec.runtime.load(out, emulate=True) as m, edgec.runtime.load(static, emulate=True) as s:
        assert_close(m.run({"features": x})["probs"], s.run({"features": x})["probs"], rel=1e-5)
