"""Hosted ARM targets (aarch64, armv7): cross-built artifacts run under qemu user mode.

Every test here needs the target's cross compiler and qemu (Debian: gcc-aarch64-linux-gnu
libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user, installed by
``scripts/setup.sh --test``); without them the test is skipped and says which packages are
missing. Artifacts are compiled once per session (``arm_artifact`` in conftest.py).
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "data" / "models"
SMS = MODELS / "sms_spam_mlp.onnx"
PPOCR = MODELS / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
ARM_TARGETS = ("aarch64", "armv7")
# ELF e_machine of each target's binaries, and its class (1: 32-bit, 2: 64-bit)
SMS_DATA_PARTS = ("textcls", "sms_spam")
ELF_MACHINE = {"aarch64": (183, 2), "armv7": (40, 1)}

def missing_tools(target_name: str) -> str:
    """'' when the target's compiler and emulator are installed, else what is missing."""
    from edgec.targets import load_target
    t = load_target(target_name)
    missing = [tool for tool in (t.cc, t.emulator[0] if t.emulator else "") if tool and shutil.which(tool) is None]
    if not missing:
        return ""
    return f"{', '.join(missing)} not installed ({t.extra.get('install_hint')}; scripts/setup.sh --test does it)"


def need_tools(target_name: str) -> None:
    """Skip unless the target is foreign here (these tests are about emulation) and its
    cross compiler and emulator are installed."""
    from edgec.targets import load_target
    if not load_target(target_name).is_foreign():
        pytest.skip(f"target {target_name} runs natively on this machine (covered by the native tests)")
    why = missing_tools(target_name)
    if why:
        pytest.skip(f"target {target_name}: {why}")


def elf_machine(path: Path) -> tuple[int, int]:
    """(e_machine, ELF class) of an ELF file."""
    data = Path(path).read_bytes()[:20]
    assert data[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(data[18:20], "little"), data[4]


def seeded(shape, seed: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32)


def _featurizer():
    spec = importlib.util.spec_from_file_location("make_example_model", REPO / "tools" / "make_example_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sms_data() -> tuple[list[dict], list[dict]]:
    """(calibration feeds, test feeds): real messages, hashed as the example model expects."""
    from tests.shared_data import shared_data
    data = shared_data(*SMS_DATA_PARTS)
    if not (data / "train.tsv").is_file():
        pytest.fail(f"{data} is not available (set EDGEC_SHARED_DIR to the shared folder)", pytrace=False)
    mod = _featurizer()
    train, _ = mod.read_tsv(data / "train.tsv")
    test, labels = mod.read_tsv(data / "test.tsv")
    feed = lambda t: {"features": mod.featurize(t).astype(np.float32).reshape(1, 1024)}  # noqa: E731
    # test messages of both classes, so that neither softmax output saturates for all of them
    spam = [i for i, y in enumerate(labels) if y == 1][:2]
    ham = [i for i, y in enumerate(labels) if y == 0][:2]
    return [feed(t) for t in train[:64]], [feed(test[i]) for i in spam + ham]
