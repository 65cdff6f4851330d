"""Where the project's shared data lives: ``$EDGEC_SHARED_DIR``, else ``shared/`` beside the
repository (how CI lays out a clone), else /work/shared (a developer machine)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    env = os.environ.get("EDGEC_SHARED_DIR")
    candidates = ([Path(env)] if env else []) + [REPO.parent / "shared", Path("/work/shared")]
    for c in candidates:
        if (c / "data").is_dir():
            return c
    return candidates[0]


def shared_data(*parts: str) -> Path:
    return shared_dir().joinpath("data", *parts)
