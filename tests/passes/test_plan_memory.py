import itertools

import numpy as np
import pytest

from edgec.passes.plan_memory import ALIGN, check_plan, plan_memory

from ._graphs import builder, finish


def chain(n, shape=(1, 64)):
    b = builder({"x": ("float32", shape)})
    v = "x"
    for k in range(n):
        v = b.emit("relu", [v], name=f"r{k}")[0]
    return finish(b, ["x"], [v])


def test_chain_reuses_two_buffers():
    g = chain(6, (1, 1000))
    plan = plan_memory(g)
    check_plan(g, plan)
    size = 4000 // ALIGN * ALIGN + ALIGN  # 4000 bytes rounded up to 64
    # a chain of unary ops needs exactly two live buffers at every step
    assert plan.lower_bound == 2 * size
    assert plan.arena_size == 2 * size
    assert all(off % ALIGN == 0 for off in plan.offsets.values())


def test_random_dags_never_overlap_and_are_deterministic():
    r = np.random.default_rng(0)
    for trial in range(30):
        b = builder({"x": ("float32", (4, 8))})
        vals = ["x"]
        for k in range(int(r.integers(3, 25))):
            if len(vals) > 1 and r.random() < 0.5:
                a, c = r.choice(vals, 2, replace=False)
                vals.append(b.emit("add", [a, c], name=f"n{k}")[0])
            else:
                vals.append(b.emit("relu", [r.choice(vals)], name=f"n{k}")[0])
        outs = sorted(set(r.choice(vals[1:], min(2, len(vals) - 1), replace=False)))
        g = finish(b, ["x"], outs)
        p1, p2 = plan_memory(g), plan_memory(g)
        check_plan(g, p1)
        assert p1.offsets == p2.offsets and p1.arena_size == p2.arena_size
        assert p1.lower_bound <= p1.arena_size <= sum(bf.size for bf in p1.buffers)
        # every runtime value has an offset; constants none
        for v in g.values.values():
            assert (v.name in p1.offsets) == (v.const is None)


def test_check_plan_detects_overlap():
    g = chain(3)
    plan = plan_memory(g)
    for bf in plan.buffers:
        bf.offset = 0
    with pytest.raises(AssertionError):
        check_plan(g, plan)


def test_outputs_live_to_the_end():
    b = builder({"x": ("float32", (1, 256))})
    a = b.emit("relu", ["x"], name="a")[0]
    c = b.emit("relu", [a], name="c")[0]
    d = b.emit("relu", [c], name="d")[0]
    g = finish(b, ["x"], [a, d])
    plan = plan_memory(g)
    check_plan(g, plan)
    buf = {bf.name: bf for bf in plan.buffers}
    assert buf["a"].last == len(g.nodes)
    assert plan.offsets["a"] != plan.offsets["d"]
