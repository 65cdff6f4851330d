"""One-node ONNX models through edgec's frontend and numpy reference, checked against onnxruntime.

    check_node("Conv", {"x": x}, {"w": w}, attrs={"strides": [2, 2]}, opset=13, expect_ops=("conv",))

builds a model with one ``op_type`` node (runtime inputs fed, constants as initializers, absent
optional inputs as ""), imports it with ``import_onnx``, verifies the IR, evaluates it with
``edgec.reference.run_graph`` and compares every output with onnxruntime (graph optimizations
off) at ``rel`` times the output scale (tests.helpers.assert_close). Runtime inputs keep the op
from being folded; ``expect_ops`` checks which IR ops the converter emitted.

The tests in this file check the harness itself.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pytest

from tests.helpers import assert_close, run_ort


def make_model(op_type: str, inputs: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray] | None = None,
               attrs: Mapping | None = None, opset: int = 13, input_order: Sequence[str] | None = None,
               n_outputs: int = 1, out_dtype=None, output_names: Sequence[str] | None = None):
    """A one-node ONNX ModelProto (outputs without shapes; onnxruntime validates it).
    ``input_order`` lists the node's inputs ("" = absent); by default the runtime inputs, then
    the constants, in dict order."""
    from onnx import helper, numpy_helper
    consts = dict(consts or {})
    order = list(input_order) if input_order is not None else list(inputs) + list(consts)
    first = next(iter(inputs.values())) if inputs else next(iter(consts.values()))
    dt = helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype or first.dtype))
    outs = list(output_names) if output_names is not None else [f"y{k}" for k in range(n_outputs)]
    node = helper.make_node(op_type, order, outs, **dict(attrs or {}))
    g_inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                for k, v in inputs.items()]
    g_outputs = [helper.make_tensor_value_info(o, dt, None) for o in outs if o]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    graph = helper.make_graph([node], f"{op_type.lower()}_test", g_inputs, g_outputs, inits)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    return model


def run_edgec_reference(model, feeds: Mapping[str, np.ndarray]):
    """(graph, {output name: array}) through import_onnx + verify + run_graph."""
    from edgec.frontend.onnx_import import import_onnx
    from edgec.ir.verify import verify
    from edgec.reference import run_graph
    graph = import_onnx(model, input_shapes={k: v.shape for k, v in feeds.items()})
    verify(graph)
    return graph, run_graph(graph, dict(feeds))


def run_onnx_reference(model, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnx.reference.ReferenceEvaluator: the oracle where onnxruntime rejects a valid model."""
    from onnx.reference import ReferenceEvaluator
    ev = ReferenceEvaluator(model)
    return dict(zip(ev.output_names, ev.run(None, dict(feeds))))


def check_node(op_type: str, inputs: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray] | None = None,
               attrs: Mapping | None = None, opset: int = 13, expect_ops: Sequence[str] | None = None,
               rel: float = 1e-4, oracle: str = "ort", **model_kw):
    """Run a one-node model through edgec's reference and onnxruntime (or ``oracle="onnx"``: the
    ONNX reference evaluator); fail on any difference. Returns the imported graph."""
    model = make_model(op_type, inputs, consts, attrs, opset, **model_kw)
    want = run_ort(model, inputs) if oracle == "ort" else run_onnx_reference(model, inputs)
    graph, got = run_edgec_reference(model, inputs)
    assert len(graph.outputs) == len(want)
    for (name, w), g_name in zip(want.items(), graph.outputs):
        assert_close(got[g_name], w, rel=rel, what=f"{op_type} output {name!r}")
    if expect_ops is not None:
        ops = sorted({n.op for n in graph.nodes})
        assert ops == sorted(set(expect_ops)), f"{op_type} became IR ops {ops}, expected {sorted(set(expect_ops))}"
    return graph


def unsupported_reason(op_type: str, inputs, consts=None, attrs=None, opset: int = 13, **model_kw) -> str:
    """The importer's message for a model it must reject (fails if it is accepted)."""
    from edgec.errors import UnsupportedModelError
    from edgec.frontend.onnx_import import import_onnx
    model = make_model(op_type, inputs, consts, attrs, opset, **model_kw)
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(model, input_shapes={k: v.shape for k, v in inputs.items()})
    return str(info.value)


def rand(rng: np.random.Generator, *shape, dtype=np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


# -- self-tests ------------------------------------------------------------------------------------------
def test_harness_passes_a_matching_op():
    rng = np.random.default_rng(0)
    g = check_node("Softmax", {"x": rand(rng, 3, 5)}, attrs={"axis": 1}, opset=13, expect_ops=("softmax",))
    assert [n.op for n in g.nodes] == ["softmax"]


def test_harness_fails_on_a_wrong_reference(monkeypatch):
    from dataclasses import replace

    from edgec.ir import ops
    good = ops.get("softmax")
    wrong = replace(good, reference=lambda x, axis: (good.reference(x, axis=axis)[0] * 1.01,))
    monkeypatch.setitem(ops.OPS, "softmax", wrong)
    rng = np.random.default_rng(0)
    with pytest.raises(pytest.fail.Exception, match="max abs error"):
        check_node("Softmax", {"x": rand(rng, 3, 5)}, attrs={"axis": 1}, opset=13)


def test_harness_fails_on_unexpected_ops():
    rng = np.random.default_rng(0)
    with pytest.raises(AssertionError, match="became IR ops"):
        check_node("Softmax", {"x": rand(rng, 3, 5)}, attrs={"axis": 1}, opset=13, expect_ops=("log_softmax",))
