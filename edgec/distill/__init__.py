"""Knowledge distillation: train an ONNX student on a teacher's softened outputs plus the labels.

    from edgec.distill import distill
    trained = distill("teacher.onnx", "student.onnx", "train.npz", temperature=4.0, alpha=0.7,
                      epochs=10, seed=0)            # -> onnx.ModelProto, same graph, trained weights

Training uses PyTorch, an optional extra (``pip install edgec[distill]``, torch==2.13.0); torch is
imported only when ``distill`` (or the converter in ``edgec.distill.torch_graph``) is used, never by
the compiler or the runtime. See docs/distillation.md.
"""
from __future__ import annotations

from ._torch import DistillDependencyError, require_torch
from .train import DistillDataError, DistillResult, distill, load_data, teacher_logits

__all__ = ["distill", "teacher_logits", "load_data", "DistillResult", "DistillDataError", "DistillDependencyError",
           "require_torch", "cmd_distill", "add_distill_parser"]


def cmd_distill(args) -> int:
    from .cli import cmd_distill as _cmd
    return _cmd(args)


def add_distill_parser(subparsers):
    from .cli import add_distill_parser as _add
    return _add(subparsers)
