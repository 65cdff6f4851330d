"""Distillation on real text (TREC-6, seeded, well under 2 minutes).

Setting: a teacher (a wide bag-of-n-grams MLP) is trained on all 5452 labelled questions; the
student (embedding bag -> dense -> relu -> dense) has only the first 400 labels. Trained without
the teacher it sees those 400 questions; distilled, it also learns from the teacher's softened
outputs on the other (unlabelled) questions (their labels are the teacher's argmax), the
transfer set of Hinton et al. The distilled student must beat the plain one on the test split;
if not, the assertion message gives both accuracies and the teacher's.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the distill extra (torch==2.13.0) is not installed")
ort = pytest.importorskip("onnxruntime")

from edgec.distill import distill, teacher_logits  # noqa: E402
from tests.shared_data import shared_data  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples" / "text_classification"))
import models  # noqa: E402
from tokenizer import Featurizer  # noqa: E402

DATA = shared_data("textcls", "trec6")
BUCKETS = 4096
LABELLED = 400


def _read(path):
    rows = [line.rstrip("\n").split("\t", 1) for line in open(path, encoding="utf-8") if line.strip()]
    return [r[0] for r in rows], [r[1] for r in rows]


def _accuracy(model, x, y):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return float((sess.run(None, {"features": x})[0].argmax(1) == y).mean())


@pytest.mark.skipif(not (DATA / "train.tsv").is_file(), reason=f"shared data set missing: {DATA}")
def test_distilled_student_beats_plain_student_on_trec6():
    tr_l, tr_t = _read(DATA / "train.tsv")
    te_l, te_t = _read(DATA / "test.tsv")
    classes = sorted(set(tr_l))
    fz = Featurizer(buckets=BUCKETS)
    x_tr, x_te = fz.features(tr_t), fz.features(te_t)
    y_tr = np.array([classes.index(c) for c in tr_l])
    y_te = np.array([classes.index(c) for c in te_l])

    teacher = distill(None, models.student(BUCKETS, len(classes), embed=128, hidden=128, seed=1),
                      {"features": x_tr, "labels": y_tr}, alpha=0.0, epochs=6, seed=1, progress=False)
    t_acc = _accuracy(teacher, x_te, y_te)

    labelled = {"features": x_tr[:LABELLED], "labels": y_tr[:LABELLED]}
    transfer_logits = teacher_logits(teacher, {"features": x_tr, "labels": y_tr})
    transfer = {"features": x_tr,
                "labels": np.concatenate([y_tr[:LABELLED], transfer_logits[LABELLED:].argmax(1)])}
    student = models.student(BUCKETS, len(classes), embed=32, hidden=32, seed=0)
    plain = distill(None, student, labelled, alpha=0.0, epochs=30, seed=0, progress=False)
    distilled = distill(transfer_logits, student, transfer, temperature=4.0, alpha=0.7, epochs=4, seed=0,
                        progress=False)
    p_acc, d_acc = _accuracy(plain, x_te, y_te), _accuracy(distilled, x_te, y_te)
    assert d_acc > p_acc, (f"distillation did not help: distilled {d_acc:.3f} <= plain {p_acc:.3f} "
                           f"(teacher {t_acc:.3f}); the teacher is too weak or the transfer set too small")
    assert t_acc > 0.75, f"teacher accuracy {t_acc:.3f}: the teacher failed to train"
