"""ONNX -> torch -> ONNX: the torch module computes the ONNX graph exactly, and writes back in place."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch", reason="the distill extra (torch==2.13.0) is not installed")

from edgec.distill.torch_graph import DistillUnsupportedError, OnnxModule  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from . import _graphs  # noqa: E402


def _torch_out(model, feeds, training=False):
    m = OnnxModule(model)
    m.train(training)
    with torch.no_grad():
        return m(feeds)[model.graph.output[0].name].numpy()


@pytest.mark.parametrize("softmax", [False, True])
def test_mlp_matches_onnxruntime(softmax):
    model = _graphs.mlp(softmax=softmax)
    x = np.random.default_rng(1).normal(size=(7, 32)).astype(np.float32)
    np.testing.assert_allclose(_torch_out(model, {"x": x}), _graphs.ort_run(model, {"x": x}), rtol=1e-5, atol=1e-6)


def test_embedding_bag_matches_onnxruntime():
    model = _graphs.embedding_bag()
    ids = np.random.default_rng(2).integers(0, 50, size=(5, 6)).astype(np.int64)
    np.testing.assert_allclose(_torch_out(model, {"ids": ids}), _graphs.ort_run(model, {"ids": ids}),
                               rtol=1e-5, atol=1e-6)


def test_convnet_matches_onnxruntime_and_runs_batched():
    model = _graphs.convnet()
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(4, 1, 3, 8, 8)).astype(np.float32)
    want = np.concatenate([_graphs.ort_run(model, {"x": x}) for x in xs])
    # the graph is frozen for batch 1 (a Reshape to [1, 6]); the module runs a batch of 4
    got = _torch_out(model, {"x": xs[:, 0]})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_write_back_untrained_is_identical():
    for model in (_graphs.mlp(), _graphs.embedding_bag(), _graphs.convnet()):
        assert OnnxModule(model).to_onnx().SerializeToString() == model.SerializeToString()


def test_write_back_after_an_update_keeps_the_graph():
    model = _graphs.mlp(softmax=True)
    m = OnnxModule(model)
    x = torch.from_numpy(np.random.default_rng(4).normal(size=(8, 32)).astype(np.float32))
    loss = m.logits({"x": x}).square().mean()      # logits: the input of the final Softmax
    loss.backward()
    with torch.no_grad():
        for p in m.parameters():
            p -= 0.5 * p.grad
    new = m.to_onnx()
    assert [n.SerializeToString() for n in new.graph.node] == [n.SerializeToString() for n in model.graph.node]
    assert [i.name for i in new.graph.initializer] == [i.name for i in model.graph.initializer]
    changed = [a.name for a, b in zip(new.graph.initializer, model.graph.initializer)
               if not np.array_equal(onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b))]
    assert changed == ["w1", "b1", "w2", "b2"]
    with torch.no_grad():
        want = m({"x": x})["probs"].numpy()
    np.testing.assert_allclose(_graphs.ort_run(new, {"x": x.numpy()}), want, rtol=1e-5, atol=1e-6)


def test_dropout_is_identity_in_eval_and_drops_in_training():
    g = helper.make_graph([helper.make_node("Dropout", ["x", "r"], ["y"], name="drop")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 100])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 100])],
                          [onnx.numpy_helper.from_array(np.array(0.5, dtype=np.float32), "r")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = np.ones((4, 100), dtype=np.float32)
    np.testing.assert_array_equal(_torch_out(model, {"x": x}), x)
    torch.manual_seed(0)
    y = _torch_out(model, {"x": x}, training=True)
    assert 0.3 < (y == 0).mean() < 0.7 and set(np.unique(y)) <= {0.0, 2.0}


def test_unsupported_op_names_the_node():
    g = helper.make_graph([helper.make_node("Sin", ["x"], ["y"], name="my_sin")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(DistillUnsupportedError, match=r"my_sin \(Sin\)"):
        OnnxModule(model)
