"""How the example's settings were chosen: the same pipeline on a validation split held out from train.

    python examples/text_classification/validate.py [--seeds 0,1] [--mode plain|distill|both]
           [--students '[{"wdim": 32, "filters": 64}, {"filters": 0}]'] [--out DIR]

600 training questions are held out (``numpy.random.default_rng(123).permutation``); the teacher,
the transfer set (word-dropout copies) and the students are built from the other 4852 exactly as
run.py does with the full settings, and each student is scored on the 600. The test split is never
read. Each element of --students overrides run.FULL["student"] (student sizes) and may also carry
``epochs`` (plain training), ``distill_epochs``, ``temperature`` and ``alpha``. The teacher's logits
are cached in OUT (one file per seed). Prints one line per (seed, student) and the means.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from edgec.distill import distill, teacher_logits  # noqa: E402

import models  # noqa: E402
import run  # noqa: E402
from tokenizer import MAX_TOKENS, STUDENT_BUCKETS, TEACHER_VOCAB, Featurizer  # noqa: E402

VAL_SIZE, VAL_SEED = 600, 123


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="trec6", choices=["trec6", "sms_spam"])
    ap.add_argument("--data-root", default=str(run.DATA_ROOT))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--mode", default="both", choices=["plain", "distill", "both"])
    ap.add_argument("--students", default='[{}]', help="JSON list of overrides of run.FULL['student']")
    ap.add_argument("--out", default=str(run.REPO / "build" / "example" / "text_classification_val"))
    args = ap.parse_args(argv)
    cfg = run.FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels, texts = run.read_tsv(Path(args.data_root) / args.dataset / "train.tsv")
    classes = sorted(set(labels))
    y = np.array([classes.index(c) for c in labels], dtype=np.int64)
    perm = np.random.default_rng(VAL_SEED).permutation(len(texts))
    val_idx, tr_idx = perm[:VAL_SIZE], perm[VAL_SIZE:]
    fz = Featurizer(STUDENT_BUCKETS, TEACHER_VOCAB, MAX_TOKENS)
    feats, ids = fz.features(texts), fz.token_ids(texts)
    train = {"features": feats[tr_idx], "ids": ids[tr_idx], "labels": y[tr_idx]}
    val = {"features": feats[val_idx], "ids": ids[val_idx]}
    y_val = y[val_idx]
    tr_texts = [texts[i] for i in tr_idx]
    aug_texts = run.word_dropout_copies(tr_texts, cfg["transfer_copies"], cfg["word_dropout"], seed=0)
    aug = {"features": fz.features(aug_texts), "ids": fz.token_ids(aug_texts)}
    run.log(f"{args.dataset}: {len(tr_idx)} train / {len(val_idx)} validation questions (test split unused)")

    students = json.loads(args.students)
    scores: dict[tuple[int, str], list[float]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        if args.mode != "plain":
            cache = out / f"teacher_logits_seed{seed}.npy"
            if cache.is_file():
                t_logits = np.load(cache)
            else:
                t = time.perf_counter()
                teacher = distill(None, models.teacher(TEACHER_VOCAB, MAX_TOKENS, STUDENT_BUCKETS, len(classes),
                                                       seed=seed, **cfg["teacher"]),
                                  train, alpha=0.0, epochs=cfg["teacher_epochs"], lr=cfg["lr"], seed=seed,
                                  progress=False)
                acc = run.ort_accuracy(teacher, val, y_val)
                run.log(f"seed {seed}: teacher validation accuracy {acc:.4f} ({time.perf_counter() - t:.0f} s)")
                scores.setdefault((-1, "teacher"), []).append(acc)
                t_logits = np.concatenate([teacher_logits(teacher, train), teacher_logits(
                    teacher, dict(aug, labels=np.zeros(len(aug_texts), np.int64)))])
                np.save(cache, t_logits)
            transfer = {k: np.concatenate([train[k], aug[k]]) for k in ("features", "ids")}
            transfer["labels"] = np.concatenate([train["labels"], t_logits[len(tr_texts):].argmax(1)])
        for i, over in enumerate(students):
            over = dict(over)
            epochs = over.pop("epochs", cfg["student_epochs"])
            d_epochs = over.pop("distill_epochs", cfg["distill_epochs"])
            temperature = over.pop("temperature", cfg["temperature"])
            alpha = over.pop("alpha", cfg["alpha"])
            kw = dict(cfg["student"], **over)
            student0 = models.student(STUDENT_BUCKETS, len(classes), seed=seed, vocab=TEACHER_VOCAB,
                                      max_tokens=MAX_TOKENS, **kw)
            line = []
            if args.mode in ("plain", "both"):
                plain = distill(None, student0, train, alpha=0.0, epochs=epochs, lr=cfg["lr"], seed=seed,
                                progress=False)
                scores.setdefault((i, "plain"), []).append(run.ort_accuracy(plain, val, y_val))
                line.append(f"plain {scores[(i, 'plain')][-1]:.4f}")
            if args.mode in ("distill", "both"):
                dist = distill(t_logits, student0, transfer, temperature=temperature, alpha=alpha, epochs=d_epochs,
                               lr=cfg["lr"], seed=seed, progress=False)
                scores.setdefault((i, "distilled"), []).append(run.ort_accuracy(dist, val, y_val))
                line.append(f"distilled {scores[(i, 'distilled')][-1]:.4f}")
            run.log(f"seed {seed}: student {students[i]}: " + ", ".join(line))
    run.log("--- means over seeds")
    for (i, kind), accs in scores.items():
        who = "teacher" if i < 0 else f"student {students[i]}"
        run.log(f"{who} {kind if i >= 0 else ''}: {100 * np.mean(accs):.2f} % ({len(accs)} seed(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
