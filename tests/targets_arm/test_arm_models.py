"""Real models cross-compiled for aarch64 and armv7, run under qemu, against onnxruntime fp32.

The SMS-spam MLP (features 1x1024) and the PP-OCR direction classifier (1x3x48x192): the
artifact holds target binaries (kernels.so and bin/run_model of the right ELF machine), and
the emulated run matches onnxruntime within 1e-4 x the output scale.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgec.runtime
from tests.helpers import assert_close, run_ort
from tests.targets_arm.arm_helpers import ARM_TARGETS, ELF_MACHINE, PPOCR, SMS, elf_machine, seeded

pytestmark = pytest.mark.compiled

MODELS = {
    "sms": (SMS, {"features": (1, 1024)}),
    "ppocr": (PPOCR, {"x": (1, 3, 48, 192)}),
}


@pytest.mark.parametrize("target", ARM_TARGETS)
@pytest.mark.parametrize("model_key", sorted(MODELS))
def test_model_under_qemu_matches_onnxruntime(arm_artifact, target, model_key):
    path, shapes = MODELS[model_key]
    if not path.is_file():
        pytest.fail(f"{path} is missing (see tests/data/models/SOURCE.md)", pytrace=False)
    art = arm_artifact(path, target, shapes)
    with edgec.runtime.load(art, emulate=True) as m:
        assert isinstance(m, edgec.runtime.EmulatedModel)
        assert [(i.name, i.shape) for i in m.inputs] == [(k, v) for k, v in shapes.items()]
        for seed in (0, 1):
            feeds = {k: seeded(v, seed) for k, v in shapes.items()}
            got = m.run(feeds)
            want = run_ort(path, feeds)
            assert list(got) == list(want)
            for k in want:
                assert_close(got[k], want[k], rel=1e-4, what=f"{target} {model_key} seed {seed} {k!r}")
        # different inputs give different outputs: the runner really reads the .npy files
        zeros = m.run({k: np.zeros(v, np.float32) for k, v in shapes.items()})
        assert any(not np.array_equal(zeros[k], got[k]) for k in got)


@pytest.mark.parametrize("target", ARM_TARGETS)
def test_artifact_holds_target_binaries_and_says_so(arm_artifact, target):
    art = arm_artifact(SMS, target, {"features": (1, 1024)})
    machine = ELF_MACHINE[target]
    assert elf_machine(art / "kernels.so") == machine
    runner = art / "bin" / "run_model"
    assert elf_machine(runner) == machine
    assert runner.stat().st_mode & 0o111
    man = json.loads((art / "manifest.json").read_text())
    assert man["target"] == target and man["hosted"] is True
    assert man["arch"] == {"aarch64": "aarch64", "armv7": "arm"}[target]
    assert man["files"]["runner"] == "bin/run_model"
    assert man["run"]["emulator"][0] in ("qemu-aarch64", "qemu-arm")
    rep = json.loads((art / "report.json").read_text())
    assert rep["target"] == target
    assert rep["summary"]["runner_file_bytes"] == runner.stat().st_size
    assert "runner" in (art / "report.txt").read_text()


def test_dotprod_target_runs_under_qemu_cpu_max(arm_artifact):
    """aarch64-dotprod objects may hold Armv8.2 instructions: its emulator runs them (-cpu max)."""
    shapes = {"features": (1, 1024)}
    art = arm_artifact(SMS, "aarch64-dotprod", shapes)
    assert elf_machine(art / "kernels.so") == ELF_MACHINE["aarch64"]
    feeds = {"features": seeded(shapes["features"], 5)}
    with edgec.runtime.load(art, emulate=True) as m:
        assert "max" in m.emulator
        got = m.run(feeds)
    assert_close(got["probs"], run_ort(SMS, feeds)["probs"], rel=1e-4)
