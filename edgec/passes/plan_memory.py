"""Static memory planning: one arena, an offset for every runtime tensor.

Preconditions: shapes inferred; the node order is the execution order.
Effect: computes a MemoryPlan; the graph is not changed.

Algorithm (deterministic, not optimal; in the spirit of TFLM's greedy planner):
1. Alias views. A ``reshape`` output shares its input's bytes (no kernel runs for it)
   unless the output is a graph output whose input is a graph input or another graph
   output; such a reshape stays a copy. Aliased values form one buffer.
2. Liveness. A buffer lives from the step of its first producer to the step of its last
   consumer, inclusive. Graph inputs are live from step -1; graph outputs to the end.
   Constants are not planned (they live in the blob).
3. Placement. Buffers sorted by size (largest first, ties by first use, then name) are
   placed one by one at the lowest 64-aligned offset where they do not overlap any
   already-placed buffer whose lifetime intersects theirs.
4. The lower bound is the largest sum of (64-aligned) sizes of buffers live at one step:
   no plan can use less. ``arena_size`` is reported next to it.

Invariants after: two buffers live at the same step never overlap; every offset is
64-aligned; arena_size >= lower_bound.
Tests: tests/passes/test_plan_memory.py
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph
from ..ir.ops import get

ALIGN = 64


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Buffer:
    name: str                 # the root value
    size: int
    first: int
    last: int
    values: list[str] = field(default_factory=list)
    offset: int = -1


@dataclass
class MemoryPlan:
    offsets: dict[str, int]          # value name -> arena offset (every non-constant value)
    arena_size: int
    lower_bound: int
    aliases: dict[str, str]          # view value -> value whose bytes it shares
    buffers: list[Buffer]

    def skipped_nodes(self, graph: Graph) -> set[int]:
        """Indices of nodes that need no kernel (their output is an alias)."""
        return {i for i, n in enumerate(graph.nodes) if n.outputs and n.outputs[0] in self.aliases}


def plan_memory(graph: Graph, options=None) -> MemoryPlan:
    g = graph
    outputs, inputs = set(g.outputs), set(g.inputs)
    root: dict[str, str] = {}
    aliases: dict[str, str] = {}

    def find(v: str) -> str:
        while v in root:
            v = root[v]
        return v

    for n in g.nodes:
        if get(n.op).view and len(n.inputs) == 1 and len(n.outputs) == 1:
            src, dst = n.inputs[0], n.outputs[0]
            sv = g.values[src]
            if sv.const is not None:
                continue
            r = find(src)
            group_has_io = r in inputs or any(find(o) == r for o in outputs)
            if dst in outputs and group_has_io:
                continue  # two interface tensors cannot share bytes: keep the copy
            if dst in outputs and r in inputs:
                continue
            root[dst] = src
            aliases[dst] = src

    steps: dict[str, list[int]] = {}

    def touch(v: str, step: int) -> None:
        r = find(v)
        s = steps.setdefault(r, [step, step])
        s[0] = min(s[0], step)
        s[1] = max(s[1], step)

    for name in g.inputs:
        touch(name, -1)
    end = len(g.nodes)
    for i, n in enumerate(g.nodes):
        for v in n.inputs:
            if v and g.values[v].const is None:
                touch(v, i)
        for v in n.outputs:
            touch(v, i)
    for name in g.outputs:
        touch(name, end)

    members: dict[str, list[str]] = {}
    for v in g.values.values():
        if v.const is None and (v.name in steps or find(v.name) in steps):
            members.setdefault(find(v.name), []).append(v.name)
    buffers = []
    for r, (first, last) in steps.items():
        size = max(_align(max(g.values[m].nbytes, 1)) for m in members.get(r, [r]))
        buffers.append(Buffer(r, size, first, last, sorted(members.get(r, [r]))))

    placed: list[Buffer] = []
    for b in sorted(buffers, key=lambda b: (-b.size, b.first, b.name)):
        conflicts = sorted((p for p in placed if not (p.last < b.first or b.last < p.first)), key=lambda p: p.offset)
        offset = 0
        for p in conflicts:
            if offset + b.size <= p.offset:
                break
            offset = max(offset, p.offset + p.size)
        b.offset = offset
        placed.append(b)

    arena = max((b.offset + b.size for b in placed), default=0)
    lower = 0
    for step in range(-1, end + 1):
        lower = max(lower, sum(b.size for b in placed if b.first <= step <= b.last))
    offsets = {}
    for b in placed:
        for m in b.values:
            offsets[m] = b.offset
    return MemoryPlan(offsets, arena, lower, aliases, sorted(placed, key=lambda b: b.offset))


def check_plan(graph: Graph, plan: MemoryPlan) -> None:
    """Raise AssertionError if two simultaneously live buffers overlap (used by tests and EDGEC_VERIFY)."""
    bs = plan.buffers
    for i, a in enumerate(bs):
        assert a.offset % ALIGN == 0, f"{a.name} misaligned"
        for b in bs[i + 1:]:
            live = not (a.last < b.first or b.last < a.first)
            overlap = a.offset < b.offset + b.size and b.offset < a.offset + a.size
            assert not (live and overlap), f"buffers {a.name} and {b.name} overlap while both live"
    assert plan.arena_size >= plan.lower_bound
