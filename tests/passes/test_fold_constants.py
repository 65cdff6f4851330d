import numpy as np

from edgec.ir.printer import print_graph
from edgec.ir.verify import verify
from edgec.passes import fold_constants

from ._graphs import builder, finish


def test_folds_constant_chain_and_keeps_runtime_nodes():
    b = builder({"x": ("float32", (2, 3))})
    c1 = b.add_const(np.full((2, 3), -2.0, np.float32), "c1")
    c2 = b.add_const(np.full((2, 3), 5.0, np.float32), "c2")
    s = b.emit("add", [c1, c2], name="s")[0]        # constant: 3
    r = b.emit("relu", [s], name="r")[0]            # constant: 3
    y = b.emit("add", ["x", r], name="y")[0]
    g = finish(b, ["x"], [y])
    out = fold_constants(g)
    verify(out)
    assert [n.op for n in out.nodes] == ["add"]
    np.testing.assert_array_equal(out.values[r].const, np.full((2, 3), 3.0, np.float32))
    assert "const r: float32[2,3]" in print_graph(out)


def test_constant_graph_output_gets_a_copy():
    b = builder({"x": ("float32", (2,))})
    c = b.add_const(np.array([1.0, -1.0], np.float32), "c")
    r = b.emit("relu", [c], name="r")[0]
    y = b.emit("relu", ["x"], name="y")[0]
    g = finish(b, ["x"], [y, r])
    out = fold_constants(g)
    verify(out)
    assert out.values[r].const is None
    assert [n.op for n in out.nodes] == ["relu", "copy"]
