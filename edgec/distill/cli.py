"""`edgec distill`: the command-line front of ``edgec.distill.distill``."""
from __future__ import annotations


def add_distill_parser(subparsers):
    d = subparsers.add_parser("distill", help="train an ONNX student on a teacher's softened outputs and the labels")
    d.add_argument("--teacher", required=False, default=None, help="teacher .onnx (run by onnxruntime); "
                   "optional with --alpha 0 (plain training)")
    d.add_argument("--student", required=True, help="student .onnx whose weights are trained (graph unchanged)")
    d.add_argument("--data", required=True, help=".npz: one array per model input (first axis = samples) + 'labels'")
    d.add_argument("--temperature", type=float, default=4.0, help="softmax temperature T (default 4)")
    d.add_argument("--alpha", type=float, default=0.7, help="weight of the distillation term (default 0.7)")
    d.add_argument("--epochs", type=int, default=10)
    d.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    d.add_argument("--batch-size", type=int, default=64)
    d.add_argument("--weight-decay", type=float, default=0.0)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    d.add_argument("-o", "--output", required=True, help="trained student .onnx to write")
    d.set_defaults(fn=cmd_distill)
    return d


def cmd_distill(a) -> int:
    from .train import distill
    distill(a.teacher, a.student, a.data, temperature=a.temperature, alpha=a.alpha, epochs=a.epochs, lr=a.lr,
            batch_size=a.batch_size, seed=a.seed, progress=not a.quiet, weight_decay=a.weight_decay,
            output=a.output)
    print(f"wrote {a.output}")
    return 0
