"""Fixtures of the bare-metal (Cortex-M) target tests: artifacts compiled once per session."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMS = REPO / "tests" / "data" / "models" / "sms_spam_mlp.onnx"
SMS_SHAPES = {"features": (1, 1024)}
CORTEX_M = ("cortex-m7", "cortex-m4")

_lock = threading.Lock()


def missing_tools(target_name: str) -> str:
    """'' when the target's compiler, binutils and emulator are installed, else what is missing."""
    from edgec.artifact.firmware import tool
    from edgec.targets import load_target
    t = load_target(target_name)
    tools = [t.cc, tool(t, "ar"), tool(t, "size"), t.emulator[0] if t.emulator else ""]
    missing = [x for x in tools if x and shutil.which(x) is None]
    if not missing:
        return ""
    return f"{', '.join(missing)} not installed ({t.extra.get('install_hint')}; scripts/setup.sh --test does it)"


def need_tools(target_name: str) -> None:
    why = missing_tools(target_name)
    if why:
        pytest.skip(f"target {target_name}: {why}")


@pytest.fixture(scope="session")
def baremetal_artifact(tmp_path_factory):
    """compile(target) -> the sms model's artifact folder for ``target``, compiled once per session."""
    import edgec
    done: dict[str, Path] = {}

    def compile_once(target: str) -> Path:
        need_tools(target)
        with _lock:
            if target not in done:
                out = tmp_path_factory.mktemp(f"sms-{target}") / "art"
                done[target] = edgec.compile(SMS, target=target, input_shapes=SMS_SHAPES, output_dir=out)
            return done[target]
    return compile_once
