"""Fixtures of the runtime tests (helpers live in runtime_helpers.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from runtime_helpers import make_artifact


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("artifact"))
