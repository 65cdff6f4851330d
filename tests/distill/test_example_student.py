"""The example's student with its word-order branch (token ids -> Gather -> Conv 1x3 -> Relu ->
GlobalMaxPool, concatenated with the embedding bag), small sizes: the torch converter computes it
like onnxruntime, trains it, channel pruning rewires the Concat, and int8 keeps every node in int8
on the C runtime."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch", reason="the distill extra (torch==2.13.0) is not installed")

import edgec  # noqa: E402
from edgec.distill import distill  # noqa: E402
from edgec.distill.torch_graph import OnnxModule  # noqa: E402

from tests.helpers import engine  # noqa: E402

from . import _graphs  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "text_classification"))
import models  # noqa: E402

BUCKETS, VOCAB, L, CLASSES = 256, 100, 12, 4
SHAPES = {"ids": (1, L), "features": (1, BUCKETS)}


def _student(seed=0):
    return models.student(BUCKETS, CLASSES, embed=16, hidden=16, seed=seed, vocab=VOCAB, max_tokens=L, wdim=8,
                          filters=12)


def _data(n, seed):
    """A task that needs word order: two adjacent marker words; the class is which pair and which of the
    two comes first. The bag of the words alone cannot tell 'a b' from 'b a'."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(10, VOCAB, size=(n, L)).astype(np.int64)
    labels = rng.integers(0, CLASSES, size=n).astype(np.int64)
    for i, y in enumerate(labels):
        pair, first = divmod(int(y), 2)
        a, b = (1 + 2 * pair, 2 + 2 * pair)
        p = int(rng.integers(0, L - 1))
        q = p + 1                                 # adjacent: within the 1x3 convolution's reach
        ids[i, p], ids[i, q] = (a, b) if first == 0 else (b, a)
    feats = np.zeros((n, BUCKETS), np.float32)
    for i in range(n):
        feats[i, ids[i] % BUCKETS] = 1.0
    return {"ids": ids, "features": feats, "labels": labels}


def test_hybrid_student_matches_onnxruntime():
    model = _student()
    d = _data(9, seed=1)
    feeds = {"ids": d["ids"], "features": d["features"]}
    with torch.no_grad():
        got = OnnxModule(model)(feeds)["logits"].numpy()
    np.testing.assert_allclose(got, _graphs.ort_run(model, feeds), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def trained_and_pruned():
    train, test = _data(1200, seed=2), _data(300, seed=3)
    trained = distill(None, _student(), train, alpha=0.0, epochs=12, lr=3e-3, seed=0, progress=False)
    pruned, report = edgec.prune(trained, ratio=0.5, mode="channel", input_shapes=SHAPES)
    return train, test, trained, pruned, report


def test_hybrid_student_learns_word_order_and_prunes(trained_and_pruned):
    _, test, trained, pruned, report = trained_and_pruned
    feeds = {"ids": test["ids"], "features": test["features"]}
    acc = (_graphs.ort_run(trained, feeds).argmax(1) == test["labels"]).mean()
    assert acc > 0.9, acc
    # the same student without the word-order branch (filters=0) cannot tell 'a b' from 'b a'
    bag = distill(None, models.student(BUCKETS, CLASSES, embed=16, hidden=16, seed=0), trained_and_pruned[0],
                  alpha=0.0, epochs=12, lr=3e-3, seed=0, progress=False)
    bag_acc = (_graphs.ort_run(bag, {"features": test["features"]}).argmax(1) == test["labels"]).mean()
    assert bag_acc < 0.65 < acc, (bag_acc, acc)
    dims = {i.name: list(i.dims) for i in pruned.graph.initializer}
    conv_w = next(v for k, v in dims.items() if k.startswith("conv.weight"))
    assert conv_w[0] == 6                                             # 12 filters -> 6
    fc1_w = next(v for k, v in dims.items() if k.startswith("fc1") and len(v) == 2)
    assert 6 + 8 in fc1_w                                             # concat of 6 conv + 8 bag channels
    assert report.macs_after < report.macs_before
    out = _graphs.ort_run(pruned, {"ids": test["ids"][:1], "features": test["features"][:1]})
    assert out.shape == (1, CLASSES)


@pytest.mark.skipif(engine() != "edgec", reason="compiles an int8 artifact and runs the C runtime")
def test_hybrid_student_int8_on_the_c_runtime(trained_and_pruned, tmp_path):
    train, test, _, pruned, _ = trained_and_pruned
    calib = tmp_path / "calib.npz"
    np.savez(calib, ids=train["ids"][:128], features=train["features"][:128])
    art = edgec.compile(pruned, target="host", input_shapes=SHAPES, output_dir=tmp_path / "int8", quantize="int8",
                        calib=str(calib))
    q = json.loads((Path(art) / "report.json").read_text())["quantization"]
    int8 = {layer["node"] for layer in q["layers"] if layer["precision"] == "int8"}
    assert q["float_nodes"] == 0 and int8 >= {"word_embedding", "conv", "maxpool", "concat", "embed", "fc1", "fc2"}
    m = edgec.load(art, threads=1)
    try:
        got = np.concatenate([m.run({"ids": test["ids"][i:i + 1], "features": test["features"][i:i + 1]})["logits"]
                              for i in range(100)])
    finally:
        m.close()
    # the pruned graph is frozen for batch 1 (static shapes): onnxruntime runs it sample by sample too
    want = np.concatenate([_graphs.ort_run(pruned, {"ids": test["ids"][i:i + 1], "features": test["features"][i:i + 1]})
                           for i in range(100)])
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max()
