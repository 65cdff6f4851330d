"""Cortex-M (bare metal): the artifact (static libraries, blob as a C array, footprint) and
the example firmware (examples/cortex_m/) run under qemu-system-arm, compared with
onnxruntime and with the x86-64 artifact."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import edgec
import edgec.runtime
from edgec.artifact import firmware as fw
from edgec.errors import ArtifactError, RuntimeFailure, TargetError
from edgec.targets import TARGETS_DIR, load_target
from tests.helpers import assert_close, run_ort
from tests.targets_baremetal.conftest import CORTEX_M, REPO, SMS, SMS_SHAPES

pytestmark = pytest.mark.compiled

CPU_FLAGS = {"cortex-m7": ("cortex-m7", "fpv5-d16", "mps2-an500"), "cortex-m4": ("cortex-m4", "fpv4-sp-d16", "mps2-an386")}


def features(seed: int) -> np.ndarray:
    """A plausible hashed bag of words: a few small non-negative counts."""
    rng = np.random.default_rng(seed)
    return rng.poisson(0.03, size=SMS_SHAPES["features"]).astype(np.float32)


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "edgec.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=REPO)


def test_cortex_m_target_files():
    for name, (cpu, fpu, board) in CPU_FLAGS.items():
        t = load_target(name)
        assert not t.hosted and t.arch == "arm" and t.is_foreign()
        # "thumbv7em-none-eabi" or the full "thumbv7em-unknown-none-eabihf" (docs/targets.md: 32-bit ARM triples)
        assert t.tvm["mtriple"].startswith("thumbv7em-") and t.tvm["mcpu"] == cpu and t.tvm["mfloat-abi"] == "hard"
        assert t.cc == "arm-none-eabi-gcc" and fw.tool(t, "ar") == "arm-none-eabi-ar"
        assert f"-mcpu={cpu}" in t.cflags and f"-mfpu={fpu}" in t.cflags and "-mfloat-abi=hard" in t.cflags
        assert t.emulator[:3] == ("qemu-system-arm", "-M", board) and "-semihosting" in t.emulator
        for pkg in ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm"):
            assert pkg in t.extra["install_hint"]


def test_missing_toolchain_names_the_packages(tmp_path):
    board = tmp_path / "board.toml"
    board.write_text((TARGETS_DIR / "cortex-m7.toml").read_text()
                     .replace('cc = "arm-none-eabi-gcc"', 'cc = "arm-nowhere-eabi-gcc"'))
    out = tmp_path / "out"
    with pytest.raises(TargetError, match=r"arm-nowhere-eabi-gcc.*gcc-arm-none-eabi libnewlib-arm-none-eabi "
                                          r"qemu-system-arm"):
        edgec.compile(SMS, target=board, input_shapes=SMS_SHAPES, output_dir=out)
    assert not out.exists()
    res = _cli("compile", SMS, "--target", board, "--input-shape", "features=1,1024", "-o", out)
    assert res.returncode == 1 and "gcc-arm-none-eabi" in res.stderr and "Traceback" not in res.stderr


def test_parse_firmware_output_widths():
    text = ("noise\nedgec-fw: arena 100 128\nedgec-fw: output 0 y 0 64 2\nedgec-fw: data 0 ffffffffffffffff 0000000000000002\n"
            "edgec-fw: output 1 b 1 8 3\nedgec-fw: data 1 01 ff 7f\nedgec-fw: status EDGEC_OK\n")
    r = fw.parse_firmware_output(text)
    assert r["status"] == "EDGEC_OK" and r["arena"] == (100, 128)
    assert r["outputs"][0][3].view(np.int64).tolist() == [-1, 2]
    assert r["outputs"][1][3].tolist() == [1, 255, 127]
    with pytest.raises(RuntimeFailure, match="printed 1 of 3"):
        fw.parse_firmware_output("edgec-fw: output 0 y 2 32 3\nedgec-fw: data 0 3f800000\n")


def test_blob_sources_are_aligned_const_arrays():
    c, h = fw.render_blob_sources(bytes(range(50)), 4096)
    assert "__attribute__((aligned(64))) const uint8_t edgec_model_blob[EDGEC_MODEL_BLOB_SIZE]" in c
    assert "#define EDGEC_MODEL_BLOB_SIZE 50u" in h and "#define EDGEC_MODEL_ARENA_SIZE 4096u" in h
    values = [int(v, 16) for v in c.split("{", 1)[1].split("}", 1)[0].replace("\n", "").split(",")]
    assert values == list(range(50))


@pytest.mark.parametrize("target", CORTEX_M)
def test_artifact_contents_and_footprint(baremetal_artifact, target):
    out = baremetal_artifact(target)
    for f in ("libmodel.a", "libedgec_runtime.a", "model_blob.c", "model_blob.h", "include/edgec/edgec.h",
              "kernels/kernel_glue.c", "model.edgec"):
        assert (out / f).is_file(), f
    assert not (out / "kernels.so").exists()
    members = subprocess.run(["arm-none-eabi-ar", "t", str(out / "libmodel.a")], capture_output=True,
                             text=True, check=True).stdout.split()
    kernels = sorted(p.name for p in (out / "kernels").glob("k_*.o"))
    assert sorted(members) == sorted(kernels + ["kernel_glue.o"]) and len(kernels) == 4
    rt = subprocess.run(["arm-none-eabi-ar", "t", str(out / "libedgec_runtime.a")], capture_output=True,
                        text=True, check=True).stdout.split()
    assert sorted(rt) == ["crc32.o", "model.o", "session.o", "status.o", "workspace.o"]   # no hosted layer
    attrs = subprocess.run(["readelf", "-A", str(out / "kernels" / kernels[0])], capture_output=True, text=True).stdout
    assert "v7E-M" in attrs and "VFP registers" in attrs    # thumb, hard-float ABI

    blob = (out / "model.edgec").read_bytes()
    h = (out / "model_blob.h").read_text()
    assert f"#define EDGEC_MODEL_BLOB_SIZE {len(blob)}u" in h
    rep = json.loads((out / "report.json").read_text())
    fp = rep["footprint"]
    assert fp["tool"] == "arm-none-eabi-size"
    assert fp["blob"]["text"] == len(blob) and fp["blob"]["data"] == fp["blob"]["bss"] == 0   # in flash
    assert 2_000 < fp["runtime"]["text"] < 64_000 and fp["runtime"]["data"] == 0 and fp["runtime"]["bss"] == 0
    assert fp["kernels"]["count"] == 4 and fp["kernels"]["text"] >= rep["summary"]["kernel_code_bytes"] > 0
    assert fp["arena_parts"]["activations"] == rep["summary"]["arena_bytes"]
    assert f"#define EDGEC_MODEL_ARENA_SIZE {fp['arena_bytes']}u" in h
    assert "footprint (arm-none-eabi-size" in (out / "report.txt").read_text()
    man = json.loads((out / "manifest.json").read_text())
    assert man["hosted"] is False and man["files"]["model_library"] == "libmodel.a"


@pytest.mark.parametrize("target", CORTEX_M)
def test_sms_firmware_matches_onnxruntime_and_host(baremetal_artifact, target, tmp_path):
    out = baremetal_artifact(target)
    x = features(7)
    with edgec.runtime.load(out, emulate=True) as m:
        assert isinstance(m, fw.FirmwareModel)
        got = m.run({"features": x})["probs"]
        parsed = m.last_run
        # the static arena (model_blob.h, computed by the compiler) is exactly what the runtime asks for
        assert parsed["arena"][0] == parsed["arena"][1] == json.loads((out / "report.json").read_text())["footprint"]["arena_bytes"]
        got2 = m.run({"features": features(8)})["probs"]
    want = run_ort(SMS, {"features": x})["probs"]
    assert_close(got, want, rel=1e-4, what=f"{target} probs")
    assert_close(got2, run_ort(SMS, {"features": features(8)})["probs"], rel=1e-4)
    assert float(want.min()) > 1e-6      # an informative input: the softmax is not saturated
    host = edgec.compile(SMS, target="host", input_shapes=SMS_SHAPES, output_dir=tmp_path / "host")
    with edgec.runtime.load(host) as hm:
        h = hm.run({"features": x})["probs"]
    assert_close(got, h, rel=1e-4, what=f"{target} vs host")
    same = np.array_equal(got.view(np.uint32), h.view(np.uint32))
    print(f"{target}: probs {got.ravel().tolist()} bits {'identical to' if same else 'differ from'} the host artifact")


def test_cli_run_emulate_and_errors(baremetal_artifact, tmp_path):
    out = baremetal_artifact("cortex-m7")
    x = features(3)
    np.save(tmp_path / "x.npy", x)
    res = _cli("run", out, "--input", f"features={tmp_path / 'x.npy'}", "-o", tmp_path / "res", "--emulate")
    assert res.returncode == 0, res.stderr
    assert_close(np.load(tmp_path / "res" / "probs.npy"), run_ort(SMS, {"features": x})["probs"])
    res = _cli("run", out, "--input", f"features={tmp_path / 'x.npy'}")
    assert res.returncode == 1 and "bare-metal" in res.stderr and "--emulate" in res.stderr
    res = _cli("verify", out, SMS, "--emulate")
    assert res.returncode == 0 and "outputs match onnxruntime" in res.stdout, res.stdout + res.stderr
    with pytest.raises(ArtifactError, match="bare-metal cortex-m7"):
        edgec.runtime.load(out)


def test_firmware_reports_a_corrupt_blob(baremetal_artifact, tmp_path):
    """The target-side runtime validates the blob (crc32): a flipped constant byte fails the run."""
    src = baremetal_artifact("cortex-m7")
    out = tmp_path / "art"
    shutil.copytree(src, out)
    blob = bytearray((out / "model.edgec").read_bytes())
    blob[-100] ^= 0x40
    c, h = fw.render_blob_sources(bytes(blob), int(json.loads((out / "report.json").read_text())["footprint"]["arena_bytes"]))
    (out / "model_blob.c").write_text(c)
    with edgec.runtime.load(out, emulate=True) as m:
        with pytest.raises(RuntimeFailure, match="EDGEC_ERR_BAD_MODEL") as e:
            m.run({"features": features(1)})
    assert "checksum mismatch" in str(e.value)


def test_missing_emulator_names_the_packages(tmp_path):
    """A board file whose emulator is not installed: compiling works, emulating says what to install."""
    from tests.targets_baremetal.conftest import need_tools
    need_tools("cortex-m7")
    board = tmp_path / "board.toml"
    board.write_text((TARGETS_DIR / "cortex-m7.toml").read_text()
                     .replace('name = "cortex-m7"', 'name = "my-board"')
                     .replace('"qemu-system-arm", "-M"', '"qemu-system-nowhere", "-M"'))
    out = edgec.compile(SMS, target=board, input_shapes=SMS_SHAPES, output_dir=tmp_path / "out")
    with pytest.raises(TargetError, match=r"qemu-system-nowhere.*gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"):
        edgec.runtime.load(out, emulate=True)
