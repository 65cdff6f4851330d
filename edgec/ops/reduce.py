"""reduce ops (see docs/ops.md)."""
from __future__ import annotations
