#!/usr/bin/env python3
"""Train edgec's bundled example model: an SMS spam classifier (hashed bag of words -> MLP) in ONNX.

    python tools/make_example_model.py                      # tests/data/models/sms_spam_mlp.onnx
    python tools/make_example_model.py -o model.onnx --samples samples/

A real, small model for the README's walk-through (compile, run, verify, bench) and for the
end-to-end tests. Trained with numpy only, on the SMS Spam Collection (CC BY 4.0; see
/work/shared/data/textcls/sms_spam/SOURCE.md), fixed seed, in a few seconds.

Model: input ``features`` float32 [N, 1024] (N is dynamic), the featurized message (below);
``Gemm(1024->64) -> Relu -> Gemm(64->2) -> Softmax``; output ``probs`` float32 [N, 2] with
the labels ["ham", "spam"]. Opset 13. The featurizer and the labels are written into the
model's metadata_props.

Featurizer (``featurize``): lower-case the text; tokens are runs of ``[a-z]``, runs of digits
(written ``<numK>``, K = min(length, 6), so phone numbers and prices generalize) and the
single characters ``£ $ ! ? & / : .``; for every unigram and bigram ("a b"), bucket
``zlib.crc32(utf-8) % 1024`` is set to 1; then the vector is divided by its L2 norm.

``--samples DIR`` also writes ``sample_<i>.npy`` (featurized test messages, [1, 1024]) and
``samples.json`` (their texts and labels), for demos.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = next((p for p in (REPO.parent / "shared" / "data" / "textcls" / "sms_spam",
                         Path("/work/shared/data/textcls/sms_spam")) if p.is_dir()),
            REPO.parent / "shared" / "data" / "textcls" / "sms_spam")
DEFAULT_OUT = REPO / "tests" / "data" / "models" / "sms_spam_mlp.onnx"
LABELS = ["ham", "spam"]
BUCKETS = 1024
HIDDEN = 64
SEED = 0
EPOCHS = 10
BATCH = 64
LR = 1e-3
WEIGHT_DECAY = 0.0
_TOKEN = re.compile(r"[a-z]+|[0-9]+|[£$!?&/:.]")


def tokens(text: str) -> list[str]:
    """Lower-cased words, digit runs as ``<numK>`` (K = min(length, 6)) and single symbols."""
    return [f"<num{min(len(t), 6)}>" if t.isdigit() else t for t in _TOKEN.findall(text.lower())]


def featurize(text: str, buckets: int = BUCKETS) -> np.ndarray:
    """float32 [buckets]: hashed unigram+bigram presence, L2-normalized (zeros for an empty text)."""
    toks = tokens(text)
    grams = toks + [f"{a} {b}" for a, b in zip(toks, toks[1:])]
    v = np.zeros(buckets, np.float32)
    for g in grams:
        v[zlib.crc32(g.encode("utf-8")) % buckets] = 1.0
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def read_tsv(path: Path) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            label, text = line.rstrip("\n").split("\t", 1)
            texts.append(text)
            labels.append(LABELS.index(label))
    return texts, np.array(labels, np.int64)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train(x: np.ndarray, y: np.ndarray, seed: int = SEED) -> dict[str, np.ndarray]:
    """Two-layer MLP, softmax cross-entropy with inverse-frequency class weights, Adam."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    p = {"w1": (rng.standard_normal((d, HIDDEN)) * np.sqrt(2.0 / d)),
         "b1": np.zeros(HIDDEN), "w2": (rng.standard_normal((HIDDEN, 2)) * np.sqrt(1.0 / HIDDEN)),
         "b2": np.zeros(2)}
    counts = np.bincount(y, minlength=2)
    cw = counts.sum() / (2.0 * counts)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    s = {k: np.zeros_like(v) for k, v in p.items()}
    step = 0
    x64 = x.astype(np.float64)
    for _ in range(EPOCHS):
        order = rng.permutation(len(y))
        for i in range(0, len(y), BATCH):
            idx = order[i:i + BATCH]
            xb, yb = x64[idx], y[idx]
            h_pre = xb @ p["w1"] + p["b1"]
            h = np.maximum(h_pre, 0)
            prob = _softmax(h @ p["w2"] + p["b2"])
            wts = cw[yb] / cw[yb].sum()
            dz = prob.copy()
            dz[np.arange(len(yb)), yb] -= 1.0
            dz *= wts[:, None]
            g = {"w2": h.T @ dz, "b2": dz.sum(0)}
            dh = (dz @ p["w2"].T) * (h_pre > 0)
            g["w1"] = xb.T @ dh
            g["b1"] = dh.sum(0)
            step += 1
            for k in p:
                gk = g[k] + WEIGHT_DECAY * p[k] if k.startswith("w") else g[k]
                m[k] = 0.9 * m[k] + 0.1 * gk
                s[k] = 0.999 * s[k] + 0.001 * gk * gk
                p[k] -= LR * (m[k] / (1 - 0.9 ** step)) / (np.sqrt(s[k] / (1 - 0.999 ** step)) + 1e-8)
    return {k: v.astype(np.float32) for k, v in p.items()}


def predict(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    h = np.maximum(x @ p["w1"] + p["b1"], 0)
    return _softmax(h @ p["w2"] + p["b2"])


def to_onnx(p: dict[str, np.ndarray], metadata: dict[str, str]):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(np.ascontiguousarray(p["w1"].T), "fc1.weight"),  # Gemm transB: [out, in]
             numpy_helper.from_array(p["b1"], "fc1.bias"),
             numpy_helper.from_array(np.ascontiguousarray(p["w2"].T), "fc2.weight"),
             numpy_helper.from_array(p["b2"], "fc2.bias")]
    nodes = [helper.make_node("Gemm", ["features", "fc1.weight", "fc1.bias"], ["fc1"], name="fc1", transB=1),
             helper.make_node("Relu", ["fc1"], ["relu1"], name="relu1"),
             helper.make_node("Gemm", ["relu1", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)]
    graph = helper.make_graph(nodes, "sms_spam_mlp",
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", BUCKETS])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="edgec tools/make_example_model.py", producer_version="1")
    model.ir_version = 8
    model.doc_string = "SMS spam classifier: hashed bag of words -> MLP. See tools/make_example_model.py."
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT, help=f"model path (default {DEFAULT_OUT})")
    ap.add_argument("--data", type=Path, default=DATA, help="folder with train.tsv and test.tsv")
    ap.add_argument("--samples", type=Path, default=None, help="also write featurized test messages here")
    ap.add_argument("--n-samples", type=int, default=4)
    args = ap.parse_args(argv)
    import onnx

    tr_text, tr_y = read_tsv(args.data / "train.tsv")
    te_text, te_y = read_tsv(args.data / "test.tsv")
    xtr = np.stack([featurize(t) for t in tr_text])
    xte = np.stack([featurize(t) for t in te_text])
    params = train(xtr, tr_y)
    pred = predict(params, xte).argmax(1)
    acc = float((pred == te_y).mean())
    tp = int(((pred == 1) & (te_y == 1)).sum())
    prec = tp / max(1, int((pred == 1).sum()))
    rec = tp / max(1, int((te_y == 1).sum()))
    meta = {"labels": json.dumps(LABELS),
            "featurizer": f"lowercase; tokens [a-z]+, digit runs as <numK> (K=min(len,6)), single £$!?&/:.; "
                          f"unigrams+bigrams ('a b'); crc32(utf-8) % {BUCKETS} presence; L2-normalized",
            "training_data": "SMS Spam Collection v.1 (CC BY 4.0), train.tsv (4460 messages)",
            "test_accuracy": f"{acc:.4f}", "test_spam_precision": f"{prec:.4f}", "test_spam_recall": f"{rec:.4f}",
            "seed": str(SEED)}
    model = to_onnx(params, meta)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.output))
    print(f"wrote {args.output}: test accuracy {acc:.4f} on {len(te_y)} messages "
          f"(spam precision {prec:.4f}, recall {rec:.4f})")

    if args.output.resolve().parent == DEFAULT_OUT.parent:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from source_md import update_section
        import hashlib
        digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
        update_section(args.output.parent / "SOURCE.md", args.output.name, f"""## {args.output.name}

edgec's bundled example: an SMS spam classifier (ham / spam). Input `features` float32 [N, {BUCKETS}]
(dynamic N), a hashed bag of words (see `featurize` in tools/make_example_model.py); `Gemm({BUCKETS}->{HIDDEN})
-> Relu -> Gemm({HIDDEN}->2) -> Softmax`; output `probs` float32 [N, 2] = P(ham), P(spam). Opset 13.

| | |
|---|---|
| made by | `python tools/make_example_model.py` (numpy training, seed {SEED}, {EPOCHS} epochs of Adam) |
| trained on | SMS Spam Collection v.1, train split (4460 messages), /work/shared/data/textcls/sms_spam |
| test accuracy | {acc:.4f} on the test split ({len(te_y)} messages); spam precision {prec:.4f}, recall {rec:.4f} |
| sha256 | `{digest}` (training uses float64 BLAS; another machine may give slightly different weights) |
| licence | the data is CC BY 4.0 (Almeida, Gómez Hidalgo, Yamakami, DocEng'11); the weights are edgec's (Apache-2.0) |
""")

    if args.samples:
        args.samples.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(SEED)
        picks = list(rng.choice(np.flatnonzero(te_y == 0), args.n_samples // 2, replace=False)) + \
            list(rng.choice(np.flatnonzero(te_y == 1), args.n_samples - args.n_samples // 2, replace=False))
        info = []
        for i, k in enumerate(picks):
            np.save(args.samples / f"sample_{i}.npy", xte[k:k + 1])
            info.append({"file": f"sample_{i}.npy", "text": te_text[k], "label": LABELS[te_y[k]]})
        (args.samples / "samples.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {len(info)} samples to {args.samples}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
