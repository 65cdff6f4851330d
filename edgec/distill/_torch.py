"""The one place edgec imports torch (an optional extra: ``pip install edgec[distill]``)."""
from __future__ import annotations

from ..errors import EdgecError

TORCH_VERSION = "2.13.0"


class DistillDependencyError(EdgecError):
    """torch (the ``distill`` extra) is not installed."""


def require_torch():
    """Import and return torch, or raise a ``DistillDependencyError`` saying how to install it."""
    try:
        import torch
    except ImportError as e:
        raise DistillDependencyError(
            f"distillation trains the student with PyTorch, which is not installed ({e}); "
            f"install the extra with `pip install edgec[distill]` (torch=={TORCH_VERSION}), "
            f"or `pip install torch=={TORCH_VERSION}`") from None
    return torch
