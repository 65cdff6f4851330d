"""Compile the bundled SMS spam classifier with edgec and run it on real messages.

    python examples/sms_spam/run_example.py [--out build/example/sms_spam]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import edgec  # noqa: E402
from make_example_model import LABELS, featurize  # noqa: E402

MODEL = REPO / "tests" / "data" / "models" / "sms_spam_mlp.onnx"
DATASET = REPO.parent / "shared" / "data" / "textcls" / "sms_spam" / "test.tsv"


def read_tsv(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        return [tuple(line.rstrip("\n").split("\t", 1)) for line in f if line.strip()]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "build" / "example" / "sms_spam"))
    args = ap.parse_args()

    t = time.perf_counter()
    art = edgec.compile(MODEL, target="host", input_shapes={"features": (1, 1024)}, output_dir=args.out)
    print(f"compiled {MODEL.name} -> {art} in {time.perf_counter() - t:.2f} s")
    print((Path(art) / "report.txt").read_text())

    m = edgec.load(art)
    print(f"{'label':<6} {'edgec':<6} {'P(spam)':>8}  message")
    for label, text in read_tsv(Path(__file__).with_name("messages.tsv")):
        probs = m.run({"features": featurize(text)[None, :]})["probs"][0]
        pred = LABELS[int(np.argmax(probs))]
        print(f"{label:<6} {pred:<6} {probs[1]:>8.4f}  {text[:70]}")

    # the same artifact against onnxruntime
    try:
        import onnxruntime as ort
        sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
        x = featurize(read_tsv(Path(__file__).with_name("messages.tsv"))[0][1])[None, :]
        err = float(np.abs(sess.run(None, {"features": x})[0] - m.run({"features": x})["probs"]).max())
        print(f"\nmax |edgec - onnxruntime| on a message: {err:.2e}")
    except ImportError:
        print("\n(onnxruntime not installed: skipping the comparison)")

    if DATASET.is_file():
        rows = read_tsv(DATASET)
        correct = sum(LABELS[int(np.argmax(m.run({"features": featurize(text)[None, :]})["probs"][0]))] == label
                      for label, text in rows)
        print(f"accuracy of the compiled model on the test split: {correct}/{len(rows)} = {correct / len(rows):.4f}")
    m.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
