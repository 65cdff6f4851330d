"""Unstructured magnitude pruning: set the smallest-magnitude weights of conv / dense / matmul
layers to zero, per layer or over one global threshold, and report the sparsity reached.

Preconditions: a float graph with constant weights (straight from the importer or after the
default pipeline).
Effect: the weight constant (input 1) of every conv, conv_transpose, dense, and matmul with a
constant right operand gets its ``k = round(ratio * size)`` smallest |w| set to 0.0 (a fresh
constant; a weight shared by several layers is pruned once, by its first user's ratio). With
``scope="global"`` one threshold is chosen over all those weights together (the ``k`` smallest of
the union go, with ``k`` from ``ratio``), so layers end up with different sparsities; with
``scope="layer"`` every layer reaches its own ratio (``per_layer`` overrides it by node name).
Ties at the threshold are broken by position (lowest flat index first), so exactly ``k`` weights
go. Biases, BatchNorm parameters and every other constant are never touched; nodes, shapes and
names do not change.
What it buys in edgec today: nothing at run time. The kernels are dense, so a zero costs what
any other weight costs (same MACs, same latency, same blob size: constants are stored raw).
It buys a smaller artifact after generic compression (zip/zlib/gzip of the blob or of the
.onnx): runs of zeros compress well. ``PruneWeightsReport.compressed_bytes_*`` measures this
(zlib level 9 over the raw weight bytes of the pruned layers); see docs/pruning.md for figures.
Invariants after: verify() holds; the graph structure is unchanged; ratio 0 changes nothing.
Options: ``PruneWeightsOptions`` (ratio, scope "layer"|"global", per_layer {node: ratio}, skip).
Example (ratio 0.5, layer scope):
    before  const w: float32[4,2] = [[.1,-2],[3,.2],[-.3,4],[5,-.05]]
    after   const w_sparse: float32[4,2] = [[0,-2],[3,0],[0,4],[5,0]]
Tests: tests/prune/test_prune_weights.py
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

from ..errors import EdgecError
from ..ir.graph import Graph, NameGen, Node, const_value


class PruneWeightsOptionsError(EdgecError):
    pass


@dataclass(frozen=True)
class PruneWeightsOptions:
    """``ratio``: fraction of weights set to zero, in [0, 1]; ``scope``: "layer" (every layer
    reaches ``ratio``) or "global" (one magnitude threshold over all layers); ``per_layer``: node
    name -> ratio (layer scope only); ``skip``: node names left dense."""
    ratio: float = 0.5
    scope: str = "layer"
    per_layer: Mapping[str, float] = field(default_factory=dict)
    skip: frozenset = field(default_factory=frozenset)

    def __post_init__(self):
        if self.scope not in ("layer", "global"):
            raise PruneWeightsOptionsError(f"scope must be 'layer' or 'global', got {self.scope!r}")
        for name, r in [("ratio", self.ratio)] + [(f"per_layer[{k!r}]", v) for k, v in dict(self.per_layer).items()]:
            if not 0.0 <= float(r) <= 1.0:
                raise PruneWeightsOptionsError(f"{name} must be in [0, 1], got {r}")
        if self.per_layer and self.scope == "global":
            raise PruneWeightsOptionsError("per_layer ratios need scope='layer'")
        object.__setattr__(self, "per_layer", dict(self.per_layer))
        object.__setattr__(self, "skip", frozenset(self.skip))


@dataclass(frozen=True)
class LayerSparsity:
    name: str
    op: str
    weights: int
    zeros_before: int
    zeros_after: int

    @property
    def sparsity(self) -> float:
        return self.zeros_after / self.weights if self.weights else 0.0


@dataclass
class PruneWeightsReport:
    layers: list[LayerSparsity]
    compressed_bytes_before: int   # zlib -9 of the pruned layers' weights, before
    compressed_bytes_after: int    # ... and after
    raw_bytes: int                 # their uncompressed size (unchanged by pruning)

    @property
    def sparsity(self) -> float:
        total = sum(r.weights for r in self.layers)
        return sum(r.zeros_after for r in self.layers) / total if total else 0.0

    def table(self) -> str:
        rows = [f"{'layer':<28} {'op':<7} {'weights':>10} {'sparsity':>9}"]
        for r in self.layers:
            rows.append(f"{r.name[:28]:<28} {r.op:<7} {r.weights:>10,} {100 * r.sparsity:>8.1f}%")
        rows.append(f"global sparsity {100 * self.sparsity:.1f}%; weights {self.raw_bytes:,} B raw, zlib "
                    f"{self.compressed_bytes_before:,} B -> {self.compressed_bytes_after:,} B")
        return "\n".join(rows) + "\n"


_WEIGHTED = ("conv", "conv_transpose", "dense", "matmul")


def _layers(g: Graph, skip) -> list[Node]:
    seen, out = set(), []
    for n in g.nodes:
        if n.op in _WEIGHTED and len(n.inputs) > 1 and n.name not in skip:
            w = g.values[n.inputs[1]]
            if w.const is not None and w.dtype.startswith("float") and n.inputs[1] not in seen:
                seen.add(n.inputs[1])
                out.append(n)
    return out


def _smallest(mag: np.ndarray, k: int) -> np.ndarray:
    """Flat indices of the k smallest entries (ties: lowest index first)."""
    return np.argsort(mag, kind="stable")[:k]


def prune_weights(graph: Graph, options: PruneWeightsOptions | None = None) -> tuple[Graph, PruneWeightsReport]:
    """Zero the smallest weights; returns the new graph and a ``PruneWeightsReport``."""
    opts = options or PruneWeightsOptions()
    layers = _layers(graph, opts.skip)
    weights = [np.asarray(graph.values[n.inputs[1]].const) for n in layers]
    masks = [np.zeros(w.size, bool) for w in weights]
    if opts.scope == "global":
        mag = np.concatenate([np.abs(w.reshape(-1)).astype(np.float64) for w in weights]) if weights else np.zeros(0)
        k = int(round(opts.ratio * mag.size))
        flat = np.zeros(mag.size, bool)
        flat[_smallest(mag, k)] = True
        off = 0
        for j, w in enumerate(weights):
            masks[j] = flat[off:off + w.size]
            off += w.size
    else:
        for j, (n, w) in enumerate(zip(layers, weights)):
            k = int(round(float(opts.per_layer.get(n.name, opts.ratio)) * w.size))
            masks[j][_smallest(np.abs(w.reshape(-1)).astype(np.float64), k)] = True

    g = graph.copy()
    names = NameGen(g.values)
    rows, before, after = [], [], []
    renamed: dict[int, str] = {}
    for j, (n, w, m) in enumerate(zip(layers, weights, masks)):
        new = w.reshape(-1).copy()
        new[m] = 0
        new = new.reshape(w.shape)
        before.append(w.tobytes())
        after.append(new.tobytes())
        rows.append(LayerSparsity(n.name or n.outputs[0], n.op, int(w.size), int(np.count_nonzero(w == 0)),
                                  int(np.count_nonzero(new == 0))))
        if m.any():
            wname = names(f"{n.inputs[1]}_sparse")
            g.values[wname] = const_value(wname, new)
            renamed[id(n)] = wname
    old_w = {}
    nodes = []
    for n in graph.nodes:
        if id(n) in renamed:
            old_w[n.inputs[1]] = renamed[id(n)]
        if n.op in _WEIGHTED and len(n.inputs) > 1 and n.inputs[1] in old_w:
            ins = list(n.inputs)
            ins[1] = old_w[n.inputs[1]]
            n = replace(n, inputs=tuple(ins))
        nodes.append(n)
    g.nodes = nodes
    used = {i for n in g.nodes for i in n.inputs if i}
    g.values = {k: v for k, v in g.values.items() if not (v.const is not None and k not in used and k in old_w)}
    report = PruneWeightsReport(rows, len(zlib.compress(b"".join(before), 9)), len(zlib.compress(b"".join(after), 9)),
                                sum(len(b) for b in before))
    return g, report


__all__ = ["prune_weights", "PruneWeightsOptions", "PruneWeightsReport", "LayerSparsity",
           "PruneWeightsOptionsError"]
