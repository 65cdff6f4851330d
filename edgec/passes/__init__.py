"""Graph passes and the named pipelines.

Each pass is ``name(graph, options) -> graph`` in its own file. The default pipeline:

    infer_shapes          recompute types (cheap safety net after import)
    fuse_qdq              QDQ (pre-quantized) models: DQ -> op -> Q patterns into integer ops; runs
                          before fold_constants, which would fold the dequantized weights to float
    fold_constants        evaluate constant subgraphs with the numpy reference
    simplify              BatchNorm/scale/shift into conv and dense; reshape/transpose chains
    eliminate_dead_code   drop what no output needs
    fold_constants        simplify can expose more constant work
    eliminate_dead_code
    infer_shapes          final types for the backend

``EDGEC_DUMP_IR=<dir>`` writes ``NN_<pass>.txt`` after every step; ``EDGEC_VERIFY=1``
runs ``verify`` after every step.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..ir.graph import Graph
from ..ir.printer import print_graph
from ..ir.verify import verify
from .eliminate_dead_code import eliminate_dead_code
from .fold_constants import fold_constants
from .fuse_qdq import fuse_qdq
from .infer_shapes import infer_shapes
from .plan_memory import MemoryPlan, plan_memory
from .simplify import simplify

Pass = Callable[[Graph], Graph]


def default_pipeline(qdq_rounding: str | None = None) -> list[tuple[str, Pass]]:
    """``qdq_rounding``: the requantization rounding of fused QDQ models ("fixed", the default, or
    "onnxruntime"; None: ``EDGEC_QDQ_ROUNDING`` or "fixed"), see edgec.passes.fuse_qdq."""
    from .fuse_qdq import FuseQDQOptions
    fuse = fuse_qdq if qdq_rounding is None else (lambda g: fuse_qdq(g, FuseQDQOptions(rounding=qdq_rounding)))
    return [
        ("infer_shapes", infer_shapes),
        ("fuse_qdq", fuse),
        ("fold_constants", fold_constants),
        ("simplify", simplify),
        ("eliminate_dead_code", eliminate_dead_code),
        ("fold_constants", fold_constants),
        ("eliminate_dead_code", eliminate_dead_code),
        ("infer_shapes", infer_shapes),
    ]


def run_pipeline(graph: Graph, pipeline: list[tuple[str, Pass]] | None = None) -> Graph:
    dump = os.environ.get("EDGEC_DUMP_IR")
    check = os.environ.get("EDGEC_VERIFY") == "1"
    if dump:
        Path(dump).mkdir(parents=True, exist_ok=True)
        (Path(dump) / "00_import.txt").write_text(print_graph(graph))
    for k, (name, fn) in enumerate(pipeline or default_pipeline(), start=1):
        graph = fn(graph)
        if check:
            verify(graph)
        if dump:
            (Path(dump) / f"{k:02d}_{name}.txt").write_text(print_graph(graph))
    return graph


__all__ = ["run_pipeline", "default_pipeline", "infer_shapes", "fold_constants", "fuse_qdq", "simplify",
           "eliminate_dead_code", "plan_memory", "MemoryPlan"]
