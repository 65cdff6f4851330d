"""Fixtures of the hosted ARM target tests (helpers live in arm_helpers.py)."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.targets_arm.arm_helpers import need_tools

_lock = threading.Lock()


@pytest.fixture(scope="session")
def arm_artifact(tmp_path_factory):
    """compile(model_path, target, input_shapes) -> artifact folder, compiled once per session."""
    import edgec
    done: dict[tuple, Path] = {}

    def compile_once(model: Path, target: str, input_shapes: dict) -> Path:
        need_tools(target)
        key = (str(model), target, tuple(sorted((k, tuple(v)) for k, v in input_shapes.items())))
        with _lock:
            if key not in done:
                out = tmp_path_factory.mktemp(f"{Path(model).stem}-{target}") / "art"
                done[key] = edgec.compile(model, target=target, input_shapes=input_shapes, output_dir=out)
            return done[key]
    return compile_once
