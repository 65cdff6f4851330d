#!/usr/bin/env python3
"""Train the two small float models of the int8 real-data accuracy tests, in numpy, seeded, in seconds.

    python tools/train_small_models.py trec6  -o trec6_mlp.onnx     # question type, 6 classes
    python tools/train_small_models.py digits -o digits_cnn.onnx    # scikit-learn's 8x8 digits

The tests (tests/quant_e2e/test_trec6_int8.py, test_digits_int8.py) import this file and train
the models in their setup; the command line writes the same ONNX files and prints the float
test accuracy.

**trec6** (/work/shared/data/textcls/trec6/{train,test}.tsv, label<TAB>question, 5 452 / 500):
``featurize`` lower-cases the question; tokens are runs of ``[a-z]``, runs of digits (``<num>``) and
``? ' ` , .``; a start marker ``<s>`` is put in front so the first words ("how many", "who is")
form their own bigrams; every unigram and bigram sets bucket ``zlib.crc32(utf-8) % 2048`` to 1
(0/1 presence, not normalized: with L2-normalized features, entropy calibration clips the input
range to 0.126 of its 0.408 maximum and the int8 model loses 2.4 points, see docs/quantization.md).
Model: input ``features`` float32 [N, 2048],
``Gemm(2048->64) -> Relu -> Gemm(64->6) -> Softmax``, output ``probs`` [N, 6] (``TREC_LABELS``
order). Adam, batch 64, 12 epochs, seed 0.

**digits** (``sklearn.datasets.load_digits``: 1 797 images 8x8, values 0..16): pixels / 16, a
seeded split of 1 437 train / 360 test images (``digits_split``). Model: input ``image`` float32
[N, 1, 8, 8], ``Conv(1->16, 3x3, pad 1) -> Relu -> AveragePool(3x3, stride 2, pad 1,
count_include_pad=0) -> Flatten -> Gemm(256->10) -> Softmax``, output ``probs`` [N, 10]. The conv
is trained as a matmul on 3x3 patches and the pooling as the linear map the avg_pool reference
computes (so the exported ONNX is exactly the trained function). Adam, batch 64, 40 epochs, seed 0.
"""
from __future__ import annotations

import argparse
import re
import sys
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TREC_LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
TREC_BUCKETS = 2048
_TOKEN = re.compile(r"[a-z]+|[0-9]+|[?'`,.]")


# -- data ----------------------------------------------------------------------------------------

def read_tsv(path) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        label, _, text = line.partition("\t")
        labels.append(label)
        texts.append(text)
    return texts, labels


def featurize(text: str, buckets: int = TREC_BUCKETS, normalize: bool = False) -> np.ndarray:
    """float32 [buckets]: hashed unigram+bigram presence (with a start marker), 0/1 (L2-normalized
    with ``normalize``)."""
    toks = ["<s>"] + ["<num>" if t.isdigit() else t for t in _TOKEN.findall(text.lower())]
    grams = toks[1:] + [f"{a} {b}" for a, b in zip(toks, toks[1:])]
    v = np.zeros(buckets, np.float32)
    for g in grams:
        v[zlib.crc32(g.encode("utf-8")) % buckets] = 1.0
    n = float(np.linalg.norm(v))
    return v / n if normalize and n > 0 else v


def trec6_data(folder, normalize: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): features float32 [n, 2048], labels int64 (TREC_LABELS)."""
    out = []
    for split in ("train", "test"):
        texts, labels = read_tsv(Path(folder) / f"{split}.tsv")
        out.append(np.stack([featurize(t, normalize=normalize) for t in texts]))
        out.append(np.array([TREC_LABELS.index(lab) for lab in labels], np.int64))
    return tuple(out)


def digits_split(seed: int = 0, n_test: int = 360):
    """(x_train [n,1,8,8], y_train, x_test, y_test) from scikit-learn's bundled digits, pixels / 16."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


# -- training ------------------------------------------------------------------------------------

def _one_blas_thread():
    """Small matmuls run far faster on one BLAS thread than on several fighting over a busy box."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1)


class _Adam:
    def __init__(self, params: dict[str, np.ndarray], lr: float):
        self.p, self.lr, self.t = params, lr, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        b1, b2 = 0.9, 0.999
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            mh = self.m[k] / (1 - b1 ** self.t)
            vh = self.v[k] / (1 - b2 ** self.t)
            self.p[k] -= (self.lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)


def _softmax_grad(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return (p / len(y)).astype(np.float32)


def train_mlp(x, y, classes: int, hidden: int = 64, epochs: int = 12, lr: float = 1e-3, seed: int = 0,
              batch: int = 64) -> dict[str, np.ndarray]:
    """Gemm -> Relu -> Gemm, softmax cross-entropy. Returns {"w1" [H,F], "b1", "w2" [C,H], "b2"}."""
    rng = np.random.default_rng(seed)
    f = x.shape[1]
    p = {"w1": (rng.normal(size=(hidden, f)) * np.sqrt(2.0 / f)).astype(np.float32),
         "b1": np.zeros(hidden, np.float32),
         "w2": (rng.normal(size=(classes, hidden)) * np.sqrt(1.0 / hidden)).astype(np.float32),
         "b2": np.zeros(classes, np.float32)}
    opt = _Adam(p, lr)
    with _one_blas_thread():
        _mlp_epochs(p, opt, x, y, epochs, batch, rng)
    return p


def _mlp_epochs(p, opt, x, y, epochs, batch, rng) -> None:
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for i0 in range(0, len(x), batch):
            b = order[i0:i0 + batch]
            xb, yb = x[b], y[b]
            h = xb @ p["w1"].T + p["b1"]
            a = np.maximum(h, 0)
            d2 = _softmax_grad(a @ p["w2"].T + p["b2"], yb)
            da = d2 @ p["w2"]
            dh = da * (h > 0)
            opt.step({"w2": d2.T @ a, "b2": d2.sum(0), "w1": dh.T @ xb, "b1": dh.sum(0)})


def mlp_predict(p, x) -> np.ndarray:
    return (np.maximum(x @ p["w1"].T + p["b1"], 0) @ p["w2"].T + p["b2"]).argmax(1)


POOL = {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "dilations": (1, 1), "count_include_pad": 0}


def _pool_matrix() -> np.ndarray:
    """The avg_pool of POOL on an 8x8 plane as a [16, 64] matrix (from edgec's own reference)."""
    from edgec.ops.nn import avg_pool
    eye = np.eye(64, dtype=np.float32).reshape(64, 1, 8, 8)
    (out,) = avg_pool(eye, **POOL)
    return out.reshape(64, 16).T.copy()


def _patches(x: np.ndarray) -> np.ndarray:
    """[N, 1, 8, 8] -> [N, 64, 9] 3x3 patches (zero padding 1), tap index di * 3 + dj."""
    xp = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)))
    return np.stack([xp[:, i:i + 8, j:j + 8].reshape(len(x), 64) for i in range(3) for j in range(3)], axis=2)


def train_cnn(x, y, channels: int = 16, epochs: int = 40, lr: float = 3e-3, seed: int = 0,
              batch: int = 64) -> dict[str, np.ndarray]:
    """conv3x3 -> relu -> avg_pool(POOL) -> flatten (NCHW) -> dense(10). Returns ONNX-shaped weights:
    {"wc" [C,1,3,3], "bc" [C], "wd" [10, C*16], "bd" [10]}."""
    rng = np.random.default_rng(seed)
    pool = _pool_matrix()
    c = channels
    w1 = (rng.normal(size=(9, c)) * np.sqrt(2.0 / 9)).astype(np.float32)
    p = {"w1": w1, "b1": np.zeros(c, np.float32),
         "w2": (rng.normal(size=(c * 16, 10)) * np.sqrt(1.0 / (c * 16))).astype(np.float32),
         "b2": np.zeros(10, np.float32)}
    opt = _Adam(p, lr)
    with _one_blas_thread():
        _cnn_epochs(p, opt, _patches(x), y, pool, c, epochs, batch, rng)
    return {"wc": np.ascontiguousarray(p["w1"].T.reshape(c, 1, 3, 3)), "bc": p["b1"],
            "wd": np.ascontiguousarray(p["w2"].T), "bd": p["b2"]}


def _cnn_epochs(p, opt, pat, y, pool, c, epochs, batch, rng) -> None:
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for i0 in range(0, len(y), batch):
            b = order[i0:i0 + batch]
            n = len(b)
            pb, yb = pat[b], y[b]
            z = pb @ p["w1"] + p["b1"]                         # [n, 64, C]
            a = np.maximum(z, 0)
            pooled = np.einsum("qp,npc->nqc", pool, a)          # [n, 16, C]
            feat = pooled.transpose(0, 2, 1).reshape(n, c * 16)  # NCHW flatten
            dl = _softmax_grad(feat @ p["w2"] + p["b2"], yb)
            dfeat = dl @ p["w2"].T
            dpooled = dfeat.reshape(n, c, 16).transpose(0, 2, 1)
            dz = np.einsum("qp,nqc->npc", pool, dpooled) * (z > 0)
            opt.step({"w2": feat.T @ dl, "b2": dl.sum(0), "w1": np.einsum("npk,npc->kc", pb, dz),
                      "b1": dz.sum((0, 1))})


def cnn_predict(w, x) -> np.ndarray:
    c = w["wc"].shape[0]
    z = _patches(x) @ w["wc"].reshape(c, 9).T + w["bc"]
    pooled = np.einsum("qp,npc->nqc", _pool_matrix(), np.maximum(z, 0))
    feat = pooled.transpose(0, 2, 1).reshape(len(x), c * 16)
    return (feat @ w["wd"].T + w["bd"]).argmax(1)


# -- ONNX ----------------------------------------------------------------------------------------

def mlp_onnx(p: dict[str, np.ndarray], input_name: str = "features", softmax: bool = True):
    """The MLP as ONNX: output ``probs`` (or, with ``softmax=False``, the ``logits``)."""
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(p[k].astype(np.float32), k) for k in ("w1", "b1", "w2", "b2")]
    nodes = [helper.make_node("Gemm", [input_name, "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["a"], name="relu1"),
             helper.make_node("Gemm", ["a", "w2", "b2"], ["logits"], name="fc2", transB=1),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)][:4 if softmax else 3]
    out = "probs" if softmax else "logits"
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                                                       ["N", p["w1"].shape[1]])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", p["w2"].shape[0]])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def cnn_onnx(w: dict[str, np.ndarray], softmax: bool = True):
    """The CNN as ONNX: output ``probs`` (or, with ``softmax=False``, the ``logits``)."""
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(w[k].astype(np.float32), k) for k in ("wc", "bc", "wd", "bd")]
    nodes = [helper.make_node("Conv", ["image", "wc", "bc"], ["c1"], name="conv1", kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("AveragePool", ["r1"], ["p1"], name="pool1", kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1], count_include_pad=0),
             helper.make_node("Flatten", ["p1"], ["f"], name="flatten", axis=1),
             helper.make_node("Gemm", ["f", "wd", "bd"], ["logits"], name="fc", transB=1),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)][:6 if softmax else 5]
    out = "probs" if softmax else "logits"
    g = helper.make_graph(nodes, "digits_cnn",
                          [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", choices=["trec6", "digits"])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--data", default=None, help="trec6 folder (default: the shared data folder)")
    args = ap.parse_args(argv)
    import onnx
    if args.which == "trec6":
        sys.path.insert(0, str(REPO))
        from tests.shared_data import shared_data
        xtr, ytr, xte, yte = trec6_data(args.data or shared_data("textcls", "trec6"))
        p = train_mlp(xtr, ytr, classes=6)
        acc = float((mlp_predict(p, xte) == yte).mean())
        model = mlp_onnx(p)
    else:
        xtr, ytr, xte, yte = digits_split()
        w = train_cnn(xtr, ytr)
        acc = float((cnn_predict(w, xte) == yte).mean())
        model = cnn_onnx(w)
    onnx.save(model, args.output)
    print(f"{args.which}: float test accuracy {100 * acc:.2f}% -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
