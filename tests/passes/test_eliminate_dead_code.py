import numpy as np

from edgec.ir.verify import verify
from edgec.passes import eliminate_dead_code

from ._graphs import builder, finish


def test_removes_unused_nodes_and_constants():
    b = builder({"x": ("float32", (2, 3))})
    c = b.add_const(np.ones((2, 3), np.float32), "unused_c")
    a = b.emit("relu", ["x"], name="a")[0]
    b.emit("add", ["x", c], name="dead")
    g = finish(b, ["x"], [a])
    g.values[c] = b.values[c]  # keep the constant so DCE must remove it
    out = eliminate_dead_code(g)
    verify(out)
    assert [n.name for n in out.nodes] == ["a"]
    assert c not in out.values
    assert "x" in out.inputs


def test_keeps_everything_reaching_an_output():
    b = builder({"x": ("float32", (2, 3))})
    a = b.emit("relu", ["x"], name="a")[0]
    y = b.emit("add", [a, "x"], name="y")[0]
    g = finish(b, ["x"], [y])
    out = eliminate_dead_code(g)
    assert [n.name for n in out.nodes] == ["a", "y"]
