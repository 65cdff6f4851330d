"""Structured pruning: remove whole conv filters and dense output neurons (smallest L1/L2 norm) and
rewire every consumer so the graph stays valid and smaller.

Preconditions: a float graph with static shapes and constant weights (straight from the importer,
or after the default pipeline). Channels are axis 1 of every tensor (NCHW, and [M, N] for dense).
Effect:
- A *channel group* is a set of values that must keep the same channel set. Groups are built by
  union over the ops that pass channels through unchanged: unary elementwise ops, clip, cast,
  batch_norm / instance_norm / prelu (their per-channel parameters are sliced), binary ops
  (add, mul, ... whose non-constant operands all carry the channel axis are one group: a
  residual ``add`` makes every member of the residual chain one group; a per-channel constant
  operand is sliced, a scalar one is kept), max/avg/global pools, pad (no padding of axes 0 and
  1), copy, and depthwise convs (group == channels, one filter each: a depthwise conv's channels
  follow its producer's; its filters and bias are sliced and its ``group`` rewritten).
- *Sources* are conv (group 1), dense, and matmul with a constant 2-D right operand: their output
  neurons can be removed. A group holding several sources (residual adds) is pruned as one: the
  channel score is the sum over its sources of each source's norms divided by that source's
  largest norm, so every member layer counts alike; the union of those decisions is a single
  kept set for all members.
- Consumers that only read channels are rewired: the input channels of a following conv /
  dense / matmul (weight columns sliced), a ``concat`` along axis 1 (the output's kept set is the
  inputs' kept sets shifted by their offsets), a flattening ``reshape`` [N, C, *S] -> [N, C*prod(S)]
  (feature ``c*prod(S) + s`` is kept when channel ``c`` is; this covers flatten after global
  pooling and flatten of a feature map into a classifier).
- Never touched: a group that feeds a graph output, contains a graph input, or reaches any other
  op (softmax over channels, transpose, layer_norm, grouped non-depthwise conv, a reshape that is
  not a flatten, conv_transpose, ...) keeps all its channels. A group fed by a concat or a flatten
  keeps what its derivation gives; if such a group also contains a source, or two derivations
  (``add(concat1, concat2)``), it is skipped (kept whole), and so are the inputs of its
  derivation. Layers in ``skip`` keep their group whole.
- Number kept per group: ``max(min_channels, round(C * (1 - ratio)))`` (never more than C), where
  ratio is the smallest ratio of the group's sources (``per_layer`` overrides ``ratio`` by node
  name). Kept channels stay in their original order.
Invariants after: verify() holds; with ratio 0 the graph is returned unchanged (the same object
contents); the output shapes are unchanged.
Options: ``PruneOptions`` (ratio, norm "l1"|"l2", per_layer {node name: ratio}, min_channels,
skip: node names).
Example (ratio 0.5):
    before  %a: float32[1,8,6,6] = conv(x, w0, b0) {...}
            %r: float32[1,8,6,6] = relu(a)
            %y: float32[1,4,6,6] = conv(r, w1, b1) {...}
    after   %a: float32[1,4,6,6] = conv(x, w0_pruned, b0_pruned) {...}
            %r: float32[1,4,6,6] = relu(a)
            %y: float32[1,4,6,6] = conv(r, w1_pruned, b1) {...}
Tests: tests/prune/test_prune_channels.py
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

from ..errors import EdgecError
from ..ir.graph import Graph, NameGen, Node, const_value
from ..ir.ops import get as get_op
from .infer_shapes import infer_shapes


class PruneOptionsError(EdgecError):
    pass


@dataclass(frozen=True)
class PruneOptions:
    """``ratio``: fraction of channels to remove in each group, in [0, 1); ``norm``: "l1" or "l2"
    filter norm; ``per_layer``: node name -> ratio, overrides ``ratio`` for that layer;
    ``min_channels``: never keep fewer channels than this in a group; ``skip``: node names whose
    group is never pruned."""
    ratio: float = 0.5
    norm: str = "l1"
    per_layer: Mapping[str, float] = field(default_factory=dict)
    min_channels: int = 1
    skip: frozenset = field(default_factory=frozenset)

    def __post_init__(self):
        if self.norm not in ("l1", "l2"):
            raise PruneOptionsError(f"norm must be 'l1' or 'l2', got {self.norm!r}")
        for name, r in [("ratio", self.ratio)] + [(f"per_layer[{k!r}]", v) for k, v in dict(self.per_layer).items()]:
            if not 0.0 <= float(r) < 1.0:
                raise PruneOptionsError(f"{name} must be in [0, 1), got {r}")
        if int(self.min_channels) < 1:
            raise PruneOptionsError(f"min_channels must be >= 1, got {self.min_channels}")
        object.__setattr__(self, "per_layer", dict(self.per_layer))
        object.__setattr__(self, "skip", frozenset(self.skip))


@dataclass(frozen=True)
class LayerPrune:
    """One row of the report: a source layer's output channels and MACs before and after."""
    name: str
    op: str
    channels_before: int
    channels_after: int
    macs_before: int
    macs_after: int


@dataclass
class PruneReport:
    layers: list[LayerPrune]
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    skipped_groups: list[str]   # why some groups kept every channel

    def table(self) -> str:
        rows = [f"{'layer':<28} {'op':<7} {'channels':>12} {'MACs before':>14} {'MACs after':>14}"]
        for r in self.layers:
            rows.append(f"{r.name[:28]:<28} {r.op:<7} {f'{r.channels_before}->{r.channels_after}':>12} "
                        f"{r.macs_before:>14,} {r.macs_after:>14,}")
        red = 1.0 - self.macs_after / self.macs_before if self.macs_before else 0.0
        rows.append(f"total MACs {self.macs_before:,} -> {self.macs_after:,} ({100 * red:.1f}% fewer); "
                    f"parameters {self.params_before:,} -> {self.params_after:,}")
        return "\n".join(rows) + "\n"


# ops whose output has the same channels as their (non-constant) input(s)
_PASS_UNARY = {"relu", "sigmoid", "tanh", "erf", "sqrt", "exp", "log", "abs", "neg", "reciprocal", "floor", "ceil",
               "round", "sign", "sin", "cos", "softplus", "softsign", "hard_swish", "leaky_relu", "elu", "selu",
               "hard_sigmoid", "gelu", "clip", "cast", "copy", "max_pool", "avg_pool", "global_avg_pool",
               "global_max_pool"}
_PASS_BINARY = {"add", "sub", "mul", "div", "max", "min", "pow", "prelu"}
_PER_CHANNEL = {"batch_norm", "instance_norm"}


class _UF:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _is_depthwise(g: Graph, n: Node) -> bool:
    x, w = g.values[n.inputs[0]], g.values[n.inputs[1]]
    c = x.shape[1]
    return int(n.attrs["group"]) == c > 1 and w.shape[0] == c and w.shape[1] == 1


def _source_kind(g: Graph, n: Node) -> bool:
    """conv group 1, dense, matmul [M,K] @ const [K,N] with constant weights."""
    if n.op == "conv":
        return int(n.attrs["group"]) == 1 and g.values[n.inputs[1]].const is not None
    if n.op == "dense":
        return g.values[n.inputs[1]].const is not None
    if n.op == "matmul":
        a, b = g.values[n.inputs[0]], g.values[n.inputs[1]]
        return b.const is not None and len(a.shape) == 2 and len(b.shape) == 2
    return False


def _bias(n: Node) -> str:
    return n.inputs[2] if len(n.inputs) > 2 else ""


class _Analysis:
    """Channel groups of a graph: which values share a channel set, who may decide it."""

    def __init__(self, g: Graph):
        self.g = g
        self.uf = _UF()
        self.blocked: dict[str, str] = {}          # value -> reason (resolved to groups later)
        self.sources: dict[str, Node] = {}         # output value -> source node
        self.derived: dict[str, Node] = {}         # output value -> concat / flatten node
        self._walk()

    def _tracked(self, name: str) -> bool:
        v = self.g.values.get(name) if name else None
        return v is not None and v.const is None and len(v.shape) >= 2

    def block(self, name: str, why: str) -> None:
        if self._tracked(name):
            self.blocked.setdefault(name, why)

    def _walk(self) -> None:
        g = self.g
        for name in g.inputs:
            self.block(name, f"graph input {name!r}")
        for name in g.outputs:
            self.block(name, f"feeds graph output {name!r}")
        for n in g.nodes:
            ins = [i for i in n.inputs if self._tracked(i)]
            out = n.outputs[0] if n.outputs else ""
            why = f"{n.op} node {n.name!r}"
            if n.op in ("conv", "dense", "matmul") and _source_kind(g, n):
                self.sources[out] = n                 # input side: weight columns are sliced
                if n.op != "conv" and len(g.values[n.inputs[0]].shape) != 2:
                    self.block(n.inputs[0], why)
            elif n.op == "conv" and _is_depthwise(g, n) and g.values[n.inputs[1]].const is not None \
                    and (not _bias(n) or g.values[_bias(n)].const is not None):
                self.uf.union(n.inputs[0], out)
            elif n.op in _PASS_UNARY or n.op in _PER_CHANNEL:
                if n.op in _PER_CHANNEL and any(g.values[i].const is None for i in n.inputs[1:] if i):
                    self._block_node(n, why)
                else:
                    self.uf.union(n.inputs[0], out)
            elif n.op == "pad" and all(p == 0 for k, p in enumerate(n.attrs["pads"])
                                       if k % (len(n.attrs["pads"]) // 2) < 2):
                self.uf.union(n.inputs[0], out)
            elif n.op in _PASS_BINARY:
                self._binary(n, why)
            elif n.op == "concat" and int(n.attrs["axis"]) == 1 and self._tracked(out):
                self.derived[out] = n
            elif n.op == "reshape" and self._is_flatten(n):
                self.derived[out] = n
            else:
                self._block_node(n, why)

    def _block_node(self, n: Node, why: str) -> None:
        for i in list(n.inputs) + list(n.outputs):
            self.block(i, why)

    def _binary(self, n: Node, why: str) -> None:
        g = self.g
        out = g.values[n.outputs[0]]
        if len(out.shape) < 2:
            return self._block_node(n, why)
        for i in n.inputs:
            v = g.values[i]
            if v.const is not None:
                c = v.const
                # right-aligned broadcast: the constant's dim on the channel axis must be 1 or C
                k = c.ndim - (len(out.shape) - 1)
                if c.ndim > len(out.shape) or (k >= 0 and c.shape[k] not in (1, out.shape[1])):
                    return self._block_node(n, why)
            elif len(v.shape) != len(out.shape) or v.shape[1] != out.shape[1]:
                return self._block_node(n, why)
        for i in n.inputs:
            if g.values[i].const is None:
                self.uf.union(i, n.outputs[0])

    def _is_flatten(self, n: Node) -> bool:
        x = self.g.values[n.inputs[0]]
        shape = tuple(n.attrs["shape"])
        return len(x.shape) >= 2 and shape == (x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64)))


def _norms(g: Graph, n: Node, norm: str) -> np.ndarray:
    w = np.asarray(g.values[n.inputs[1]].const, np.float64)
    rows = w.T if n.op == "matmul" else w          # one row per output channel
    rows = rows.reshape(rows.shape[0], -1)
    return np.abs(rows).sum(axis=1) if norm == "l1" else np.sqrt((rows * rows).sum(axis=1))


def _plan(g: Graph, an: _Analysis, opts: PruneOptions) -> tuple[dict[str, np.ndarray], list[str]]:
    """Kept channel indices per group root (only groups that change), and why groups were skipped."""
    uf = an.uf
    blocked: dict[str, str] = {}
    for name, why in an.blocked.items():
        blocked.setdefault(uf.find(name), why)
    src_by_root: dict[str, list[Node]] = {}
    for out, n in an.sources.items():
        src_by_root.setdefault(uf.find(out), []).append(n)
    der_by_root: dict[str, list[Node]] = {}
    for out, n in an.derived.items():
        der_by_root.setdefault(uf.find(out), []).append(n)
    for root, ders in der_by_root.items():
        if len(ders) > 1 or root in src_by_root:
            blocked.setdefault(root, f"{ders[0].op} node {ders[0].name!r} joins another channel source")
    changed = True
    while changed:   # a derived group kept whole needs whole inputs
        changed = False
        for root, ders in der_by_root.items():
            if root not in blocked:
                continue
            for d in ders:
                for i in d.inputs:
                    r = uf.find(i)
                    if an._tracked(i) and r not in blocked:
                        blocked[r] = f"input of {d.op} node {d.name!r}, whose output keeps every channel"
                        changed = True
    for root, srcs in src_by_root.items():
        for n in srcs:
            if n.name in opts.skip:
                blocked.setdefault(root, f"layer {n.name!r} is in the skip list")

    keep: dict[str, np.ndarray] = {}
    for root, srcs in sorted(src_by_root.items()):
        if root in blocked:
            continue
        c = g.values[root].shape[1]
        ratio = min(float(opts.per_layer.get(n.name, opts.ratio)) for n in srcs)
        n_keep = min(c, max(int(opts.min_channels), int(round(c * (1.0 - ratio)))))
        if n_keep >= c:
            continue
        score = np.zeros(c)
        for n in srcs:
            s = _norms(g, n, opts.norm)
            score += s / s.max() if s.max() > 0 else s
        order = np.argsort(-score, kind="stable")   # ties: the lower index wins
        keep[root] = np.sort(order[:n_keep])
    # derived groups in topological order
    for n in g.nodes:
        out = n.outputs[0] if n.outputs else ""
        if out not in an.derived or uf.find(out) in blocked:
            continue

        def kept(name: str) -> np.ndarray:
            return keep.get(uf.find(name), np.arange(g.values[name].shape[1]))
        if n.op == "concat":
            parts, off = [], 0
            for i in n.inputs:
                parts.append(kept(i) + off)
                off += g.values[i].shape[1]
            k = np.concatenate(parts)
        else:  # flatten
            x = g.values[n.inputs[0]]
            per = int(np.prod(x.shape[2:], dtype=np.int64))
            k = (kept(n.inputs[0])[:, None] * per + np.arange(per)[None, :]).reshape(-1)
        if len(k) < g.values[out].shape[1]:
            keep[uf.find(out)] = k
    skipped = sorted({f"{', '.join(n.name for n in src_by_root[r])}: {why}" for r, why in blocked.items()
                      if r in src_by_root})
    return keep, skipped


def _slice(g: Graph, names: NameGen, cname: str, idx: np.ndarray, axis: int) -> str:
    v = g.values[cname]
    new = names(f"{cname}_pruned")
    g.values[new] = const_value(new, np.take(v.const, idx, axis=axis))
    return new


def _macs(g: Graph, n: Node) -> int:
    opdef = get_op(n.op)
    if opdef.macs is None:
        return 0
    return int(opdef.macs([g.values[i] if i else None for i in n.inputs], [g.values[o] for o in n.outputs], n.attrs))


def _params(g: Graph) -> int:
    used = {i for n in g.nodes for i in n.inputs if i}
    return sum(g.values[k].size for k in used if g.values[k].const is not None)


def prune_channels(graph: Graph, options: PruneOptions | None = None) -> tuple[Graph, PruneReport]:
    """Remove low-norm output channels; returns the new graph and a ``PruneReport``."""
    opts = options or PruneOptions()
    an = _Analysis(graph)
    keep, skipped = _plan(graph, an, opts)
    uf = an.uf

    def kept(name: str):
        return keep.get(uf.find(name)) if an._tracked(name) else None

    g = graph.copy()
    names = NameGen(g.values)
    nodes: list[Node] = []
    for n in graph.nodes:
        ins = list(n.inputs)
        attrs = dict(n.attrs)
        out = n.outputs[0] if n.outputs else ""
        k_in, k_out = kept(n.inputs[0]) if n.inputs else None, kept(out)
        if out in an.sources:
            w_axis_in, w_axis_out = (0, 1) if n.op == "matmul" else (1, 0)
            if k_in is not None:
                ins[1] = _slice(g, names, ins[1], k_in, w_axis_in)
            if k_out is not None:
                ins[1] = _slice(g, names, ins[1], k_out, w_axis_out)
                if _bias(n):
                    ins[2] = _slice(g, names, ins[2], k_out, 0)
        elif n.op == "conv" and k_out is not None:   # depthwise, follows its producer
            ins[1] = _slice(g, names, ins[1], k_out, 0)
            if _bias(n):
                ins[2] = _slice(g, names, ins[2], k_out, 0)
            attrs["group"] = len(k_out)
        elif n.op in _PER_CHANNEL and k_out is not None:
            ins[1:] = [_slice(g, names, i, k_out, 0) if i else i for i in ins[1:]]
        elif n.op in _PASS_BINARY and k_out is not None:
            rank = len(g.values[out].shape)
            for j, i in enumerate(ins):
                c = g.values[i].const
                if c is None:
                    continue
                ax = c.ndim - (rank - 1)
                if ax >= 0 and c.shape[ax] > 1:
                    ins[j] = _slice(g, names, i, k_out, ax)
        elif n.op == "reshape" and k_out is not None:
            attrs["shape"] = (attrs["shape"][0], len(k_out))
        nodes.append(replace(n, inputs=tuple(ins), attrs=attrs) if (ins != list(n.inputs) or attrs != n.attrs) else n)
    g.nodes = nodes
    g = infer_shapes(g) if keep else g
    used = {i for n in g.nodes for i in n.inputs if i} | set(g.outputs) | set(g.inputs) | \
        {o for n in g.nodes for o in n.outputs}
    g.values = {k: v for k, v in g.values.items() if k in used}

    layers = []
    for old, new in zip(graph.nodes, g.nodes):
        out = old.outputs[0] if old.outputs else ""
        if out in an.sources:
            layers.append(LayerPrune(old.name or out, old.op, graph.values[out].shape[1], g.values[out].shape[1],
                                     _macs(graph, old), _macs(g, new)))
    report = PruneReport(layers, sum(_macs(graph, n) for n in graph.nodes), sum(_macs(g, n) for n in g.nodes),
                         _params(graph), _params(g), skipped)
    return g, report


__all__ = ["prune_channels", "PruneOptions", "PruneReport", "LayerPrune", "PruneOptionsError"]
