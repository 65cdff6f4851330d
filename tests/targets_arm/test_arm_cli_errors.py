"""Running foreign artifacts from the command line, and the errors a user meets with them:
unknown target, missing cross compiler, missing emulator, loading a foreign artifact
without emulation, a corrupt artifact under the emulator."""
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
from edgec.errors import ArtifactError, RuntimeInputError, TargetError
from edgec.targets import TARGETS_DIR, host_arch, load_target
from tests.helpers import assert_close, run_ort
from tests.targets_arm.arm_helpers import REPO, SMS, need_tools, seeded

pytestmark = pytest.mark.compiled

SHAPES = {"features": (1, 1024)}


def _cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "edgec.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd or REPO)


@pytest.fixture(scope="module")
def sms_a64(arm_artifact):
    return arm_artifact(SMS, "aarch64", SHAPES)


def test_shipped_arm_targets_describe_their_toolchain():
    for name, cc, qemu, triple in [("aarch64", "aarch64-linux-gnu-gcc", "qemu-aarch64", "aarch64-linux-gnu"),
                                   ("aarch64-dotprod", "aarch64-linux-gnu-gcc", "qemu-aarch64", "aarch64-linux-gnu"),
                                   ("armv7", "arm-linux-gnueabihf-gcc", "qemu-arm", "armv7a-linux-gnueabihf")]:
        t = load_target(name)
        # the vendor field may be spelled out (armv7a-unknown-linux-gnueabihf: docs/targets.md)
        mtriple = t.tvm["mtriple"].replace("-unknown-", "-")
        assert (t.cc, t.emulator[0], mtriple, t.hosted, t.vector_bits) == (cc, qemu, triple, True, 128)
        assert t.is_foreign() == (host_arch() != t.arch) and "qemu-user" in t.extra["install_hint"]
    assert "+dotprod" in load_target("aarch64-dotprod").tvm["mattr"]
    assert "-cpu" in load_target("aarch64-dotprod").emulator
    assert load_target("armv7").tvm["mfloat-abi"] == "hard"


def test_unknown_target_names_the_arm_ones():
    with pytest.raises(TargetError, match=r"unknown target 'armv9-xyz'.*aarch64.*armv7"):
        load_target("armv9-xyz")


def test_missing_cross_compiler_names_the_debian_packages(tmp_path):
    board = tmp_path / "board.toml"
    board.write_text((TARGETS_DIR / "aarch64.toml").read_text()
                     .replace('cc = "aarch64-linux-gnu-gcc"', 'cc = "aarch64-nowhere-gcc"'))
    out = tmp_path / "out"
    with pytest.raises(TargetError, match=r"aarch64-nowhere-gcc.*gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"):
        edgec.compile(SMS, target=str(board), input_shapes=SHAPES, output_dir=out)
    assert not out.exists()
    res = _cli("compile", SMS, "--target", board, "--input-shape", "features=1,1024", "-o", out)
    assert res.returncode == 1 and "gcc-aarch64-linux-gnu" in res.stderr and "Traceback" not in res.stderr


def test_foreign_artifact_without_emulate_is_a_clear_error(sms_a64):
    for load in (edgec.load, edgec.runtime.load):
        with pytest.raises(ArtifactError, match=r"built for aarch64.*run it on the device or pass --emulate / emulate=True"):
            load(sms_a64)
    res = _cli("run", sms_a64)
    assert res.returncode == 1 and "--emulate" in res.stderr and "Traceback" not in res.stderr
    res = _cli("bench", sms_a64)
    assert res.returncode == 1 and "bench it on the device" in res.stderr and "Traceback" not in res.stderr


def test_missing_emulator_names_the_debian_packages(sms_a64, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(sms_a64, art)
    man = json.loads((art / "manifest.json").read_text())
    man["run"]["emulator"] = ["qemu-nowhere-aarch64"]
    (art / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(TargetError, match=r"qemu-nowhere-aarch64.*qemu-user"):
        edgec.runtime.load(art, emulate=True)


def test_cli_run_and_verify_under_emulation(sms_a64, tmp_path):
    x = seeded(SHAPES["features"], 21)
    np.save(tmp_path / "x.npy", x)
    res = _cli("run", sms_a64, "--emulate", "--input", f"features={tmp_path / 'x.npy'}", "-o", tmp_path / "res")
    assert res.returncode == 0, res.stderr
    assert_close(np.load(tmp_path / "res" / "probs.npy"), run_ort(SMS, {"features": x})["probs"], rel=1e-4)
    res = _cli("verify", sms_a64, SMS, "--emulate", "--seed", "3")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "outputs match onnxruntime" in res.stdout


def test_emulated_model_checks_inputs_like_the_native_one(sms_a64):
    with edgec.runtime.load(sms_a64, emulate=True) as m:
        with pytest.raises(RuntimeInputError, match="missing input"):
            m.run({})
        with pytest.raises(RuntimeInputError, match="wrong shape"):
            m.run({"features": np.zeros((1, 1023), np.float32)})
        with pytest.raises(RuntimeInputError, match="wrong dtype"):
            m.run({"features": np.zeros((1, 1024), np.float64)})
        assert "aarch64" in repr(m)


def test_corrupt_artifact_under_emulation_is_an_artifact_error(sms_a64, tmp_path):
    need_tools("aarch64")
    art = tmp_path / "art"
    shutil.copytree(sms_a64, art)
    blob = bytearray((art / "model.edgec").read_bytes())
    blob[-1] ^= 0xFF                              # breaks the checksum
    (art / "model.edgec").write_bytes(bytes(blob))
    m = edgec.runtime.load(art, emulate=True)
    with pytest.raises(ArtifactError, match="EDGEC_ERR_BAD_MODEL"):
        m.run({"features": np.zeros((1, 1024), np.float32)})
