"""Build one-node graphs through ``edgec.backend.build_kernels`` and run their kernels.

    cases = [Case("conv_s2", "conv", attrs, [x, w, b]), ...]
    runner = build_cases(cases, tmp_path_factory.mktemp("conv"))   # one build for the module
    got = runner.run(case)                                          # list of output arrays
    check(case, got)                                                # vs the numpy reference

All cases of a test module are compiled by one ``build_kernels`` call (kernels compile on two
threads, through the session's kernel cache). The weights of ops whose kernels may read them
pre-packed (``edgec.backend.kernels.quant_conv.PREPACK``: qconv, qdense, qdense_dequant) are
graph constants there, as in a compiled model, so the build stores them packed where the
kernel's path does; ``Runner.run`` then packs the case's input with the same numpy function
(``edgec.backend.build.node_packing``) and the bit-exact checks cover the packed kernels.
The kernel objects are then linked into a test library *without* the kernel glue, so that
TVM's own runtime (``tvm.runtime.load_module``) fills the kernels' backend function pointers
(thread pool, workspace) and runs them on ``tvm.runtime.tensor`` buffers (64-byte aligned).
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from edgec.backend import KernelCache, build_kernels  # noqa: E402
from edgec.ir import ops as irops  # noqa: E402
from edgec.ir.graph import Graph, Node, Value  # noqa: E402
from edgec.targets import load_target  # noqa: E402


@dataclass
class Case:
    id: str
    op: str
    attrs: dict[str, Any]
    inputs: list[np.ndarray | None]
    rtol: float = 1e-5
    atol: float = 1e-5
    expected: list[np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self):
        self.attrs = irops.get(self.op).normalize_attrs(dict(self.attrs))

    def reference(self) -> list[np.ndarray]:
        if self.expected is None:
            self.expected = [np.asarray(o) for o in irops.get(self.op).reference(*self.inputs, **self.attrs)]
        return self.expected


def host_target():
    return load_target("host")


def _prepack_ops() -> set[str]:
    from edgec.backend import kernels  # noqa: F401  (registers the rules)
    from edgec.backend.kernels.quant_conv import PREPACK
    return set(PREPACK)


def case_graph(cases: Sequence[Case], const_weights: bool = False) -> Graph:
    """One graph holding every case as an independent node (all inputs are graph inputs; with
    ``const_weights``, the inputs after the first of ops with a pre-packing rule are graph
    constants holding the case's arrays)."""
    values: dict[str, Value] = {}
    nodes, inputs, outputs = [], [], []
    packable = _prepack_ops() if const_weights else set()
    for c in cases:
        ins = []
        for i, a in enumerate(c.inputs):
            if a is None:
                ins.append("")
                continue
            name = f"{c.id}__in{i}"
            if c.op in packable and i >= 1:
                values[name] = Value(name, str(a.dtype), tuple(int(d) for d in a.shape), const=np.asarray(a))
                ins.append(name)
                continue
            values[name] = Value(name, str(a.dtype), tuple(int(d) for d in a.shape))
            inputs.append(name)
            ins.append(name)
        outs = []
        for j, o in enumerate(c.reference()):
            name = f"{c.id}__out{j}"
            values[name] = Value(name, str(o.dtype), tuple(int(d) for d in o.shape))
            outputs.append(name)
            outs.append(name)
        nodes.append(Node(c.op, tuple(ins), tuple(outs), dict(c.attrs), c.id))
    return Graph(nodes, values, inputs, outputs, name="cases")


class Runner:
    def __init__(self, lib, module, cases: Sequence[Case], graph: Graph | None = None, target=None):
        self.lib = lib
        self.module = module
        self.kernel_of = {c.id: call.kernel for c, call in zip(cases, lib.calls)}
        self.call_of = {c.id: (call, node) for c, call, node in
                        zip(cases, lib.calls, graph.nodes if graph is not None else [None] * len(cases))}
        self.graph, self.target = graph, target

    def packed_inputs(self, case: Case) -> dict[int, str]:
        """{input index: layout} of the case's inputs that its kernel reads pre-packed."""
        return dict(self.call_of[case.id][0].packed)

    def inputs(self, case: Case) -> list[np.ndarray]:
        """The kernel's input arrays: the case's, packed where the build stored that input packed."""
        call, node = self.call_of[case.id]
        ins = list(case.inputs)
        if call.packed:
            from edgec.backend.build import node_packing
            assert self.graph is not None, "a packed call needs the Runner's graph and target"
            _, packs = node_packing(self.graph, node, self.target, prepack=True)
            assert {j: p.layout for j, p in packs.items()} == dict(call.packed)
            for j in packs:
                ins[j] = packs[j].pack(np.asarray(case.inputs[j]))
        return ins

    def run(self, case: Case) -> list[np.ndarray]:
        fn = self.module[self.kernel_of[case.id]]
        args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in self.inputs(case) if a is not None]
        outs = [tvm.runtime.tensor(np.zeros(o.shape, o.dtype)) for o in case.reference()]
        fn(*args, *outs)
        return [o.numpy() for o in outs]


def build_cases(cases: Sequence[Case], workdir: Path, target=None, jobs: int = 2, prepack: bool = True) -> Runner:
    """Build every case in one build_kernels call. Schedules are strict here: a refused
    schedule step fails the build instead of falling back to plain loops. ``prepack``: weights
    as graph constants, stored pre-packed where the kernel reads them so (module docstring);
    False: every input is a graph input (the kernels' per-call packing)."""
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    target = target or host_target()
    graph = case_graph(cases, const_weights=prepack)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEC_STRICT_SCHEDULES", "1")
        lib = build_kernels(graph, target, workdir, cache=KernelCache(), jobs=jobs, prepack=prepack)
    so = Path(workdir) / "tvm_test_kernels.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), *[str(o) for o in lib.objects], "-lm"],
                   check=True, capture_output=True)
    return Runner(lib, tvm.runtime.load_module(str(so)), cases, graph, target)


def build_for_target(cases: Sequence[Case], tmp_path_factory, target, label: str) -> Runner:
    """``build_cases`` for a module fixture parametrized over targets: the target's code must run on
    this host (an AVX2 or generic x86-64 target does on an AVX-512 one), else the fixture skips."""
    if not target.host_can_run():
        pytest.skip(f"this host cannot run {label} code")
    return build_cases(cases, tmp_path_factory.mktemp(label.replace("-", "_")), target=target)


def check(case: Case, got: Sequence[np.ndarray]) -> None:
    want = case.reference()
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, f"{case.id}: {g.dtype}{g.shape} != {w.dtype}{w.shape}"
        if np.issubdtype(w.dtype, np.floating):
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=case.rtol, atol=case.atol,
                                       equal_nan=True, err_msg=case.id)
        else:
            np.testing.assert_array_equal(g, w, err_msg=case.id)


def case_asm(case: Case, target_name: str) -> str:
    """The assembly of the kernel the generator makes for ``case`` (its op, attrs and input types, no
    pre-packing) on the named target."""
    from edgec.backend.build import _lower
    from edgec.backend.kernels.registry import KERNELS, KernelSpec, TensorType
    from tvm.tirx.build import tir_to_runtime
    ins = tuple(None if a is None else TensorType(str(a.dtype), tuple(a.shape)) for a in case.inputs)
    out = case.reference()[0]
    spec = KernelSpec(case.op, case.attrs, ins, (TensorType(str(out.dtype), tuple(out.shape)),),
                      load_target(target_name))
    tt = spec.target.tvm_target()
    host, dev = _lower(KERNELS[case.op](spec), "k", tt)
    return tir_to_runtime(host, dev, tt).inspect_source("asm")


def rand(rng: np.random.Generator, *shape, dtype: str = "float32", scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dtype)
