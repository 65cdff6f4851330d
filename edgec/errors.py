"""edgec's exception hierarchy.

Every error a user can cause (a bad model, a bad artifact, a bad input) is an
``EdgecError`` subclass whose message names what went wrong and where.
"""
from __future__ import annotations

from dataclasses import dataclass


class EdgecError(Exception):
    """Base class of every error edgec raises on purpose."""


@dataclass(frozen=True)
class UnsupportedItem:
    """One thing the frontend cannot import: a node, its op and opset, and what is missing."""
    node: str
    op: str
    opset: int
    reason: str

    def __str__(self) -> str:
        return f"node {self.node!r} ({self.op}, opset {self.opset}): {self.reason}"


class UnsupportedModelError(EdgecError):
    """The model uses ops, attributes or dtypes edgec does not support. Lists all of them."""

    def __init__(self, items: list[UnsupportedItem], model: str = "model"):
        self.items = list(items)
        lines = "\n".join(f"  - {it}" for it in self.items)
        super().__init__(f"{model}: {len(self.items)} unsupported construct(s):\n{lines}")


class ModelFormatError(EdgecError):
    """The ONNX file cannot be read or is structurally invalid."""


class ShapeError(EdgecError):
    """Shapes are inconsistent, or a dynamic dimension was not bound."""


class CompileError(EdgecError):
    """Kernel generation or linking failed."""


class TargetError(EdgecError):
    """Unknown target, or the target's toolchain is missing."""


class ArtifactError(EdgecError):
    """An artifact folder or model blob is missing, corrupt or of another version."""


class RuntimeInputError(EdgecError):
    """An input given to run() has the wrong name, shape or dtype."""


class RuntimeFailure(EdgecError):
    """The C runtime returned an error status."""

    def __init__(self, status: int, name: str, detail: str = ""):
        self.status = status
        self.status_name = name
        super().__init__(f"edgec runtime error {name} ({status})" + (f": {detail}" if detail else ""))
