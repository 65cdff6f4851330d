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


def sms_spam_features():
    """The SMS spam splits through the bundled model's featurizer (tools/make_example_model.py):
    (train features, test features, test labels), float32 [N, 1024] and int64 [N]. Fails the
    calling test, with the way to fix it, when the shared data is missing."""
    import importlib.util

    import numpy as np
    import pytest
    data = shared_data("textcls", "sms_spam")
    if not (data / "train.tsv").is_file():
        pytest.fail(f"{data} is not available (set EDGEC_SHARED_DIR to the shared folder)", pytrace=False)
    spec = importlib.util.spec_from_file_location("make_example_model", REPO / "tools" / "make_example_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    train, _ = mod.read_tsv(data / "train.tsv")
    test, y = mod.read_tsv(data / "test.tsv")

    def feat(texts):
        return np.stack([mod.featurize(t) for t in texts]).astype(np.float32)
    return feat(train), feat(test), np.asarray(y, np.int64)
