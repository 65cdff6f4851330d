"""Text classification from end to end: teacher, student, distillation, pruning, int8, C runtime.

    python examples/text_classification/run.py [--quick] [--dataset trec6|sms_spam] [--out DIR]

Trains (per seed) a large teacher (wide word embedding + CNN + bag of n-grams, ~8.7 M parameters)
and a deployable student (an embedding bag of n-grams, concatenated with a small word embedding ->
one 1x3 convolution -> relu -> global max pool that sees word order; -> dense -> relu -> dense) on
hashed features a device can reproduce (tokenizer.py, featurize.c), then: the student trained plain (labels only);
the student distilled from the teacher (edgec.distill) through a transfer set (the labelled
texts plus word-dropout copies labelled by the teacher); the distilled student pruned
(edgec.prune, channel mode, 25 % in the full run) and fine-tuned by distillation; that model quantized to int8
(edgec.compile(quantize="int8"), calibrated on training samples) and run on the C runtime.
Prints one table and writes OUT/results.json (one object per row, keyed by the column names)
and OUT/results_meta.json (settings, timings, pruning report). --quick: 1 seed, fewer epochs (CI).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import edgec  # noqa: E402
from edgec.distill import distill, teacher_logits  # noqa: E402

import models  # noqa: E402
from tokenizer import MAX_TOKENS, STUDENT_BUCKETS, TEACHER_VOCAB, Featurizer  # noqa: E402



def default_data_root() -> Path:
    """$EDGEC_SHARED_DIR/data/textcls, else shared/ beside the repository, else /work/shared."""
    import os
    env = os.environ.get("EDGEC_SHARED_DIR")
    for base in ([Path(env)] if env else []) + [REPO.parent / "shared", Path("/work/shared")]:
        if (base / "data" / "textcls").is_dir():
            return base / "data" / "textcls"
    return REPO.parent / "shared" / "data" / "textcls"


DATA_ROOT = default_data_root()

# The student's sizes and the distillation settings were chosen on a validation split (validate.py), never
# on the test split; figures in docs/distillation.md.
FULL = dict(seeds=[0, 1, 2], teacher_epochs=8, student_epochs=10, distill_epochs=12, finetune_epochs=6, lr=1e-3, finetune_lr=1e-3,
            temperature=4.0, alpha=0.7, prune_ratio=0.25, calib_samples=512, latency_runs=300,
            teacher=dict(dim=128, filters=128, bag=256, hidden=256),
            student=dict(embed=128, hidden=128, wdim=32, filters=64), transfer_copies=2, word_dropout=0.25)
QUICK = dict(seeds=[0], teacher_epochs=3, student_epochs=5, distill_epochs=2, finetune_epochs=1, lr=2e-3, finetune_lr=1e-3,
             temperature=4.0, alpha=0.7, prune_ratio=0.5, calib_samples=128, latency_runs=50,
             teacher=dict(dim=64, filters=64, bag=128, hidden=128),
             student=dict(embed=96, hidden=96, wdim=16, filters=32), transfer_copies=1, word_dropout=0.25)

COLUMNS = ["model", "parameters", "artifact bytes", "test accuracy mean", "test accuracy std",
           "test accuracy per seed", "latency edgec 1 thread (ms)", "latency onnxruntime 1 thread (ms)"]


def read_tsv(path: Path):
    labels, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            label, text = line.split("\t", 1)
            labels.append(label)
            texts.append(text)
    return labels, texts


def log(msg: str) -> None:
    print(msg, flush=True)


def ort_session(model: onnx.ModelProto):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def model_feeds(model: onnx.ModelProto, arrays: dict) -> dict:
    names = [i.name for i in model.graph.input if i.name not in {x.name for x in model.graph.initializer}]
    return {n: arrays[n] for n in names}


def ort_accuracy(model: onnx.ModelProto, arrays: dict, labels: np.ndarray) -> float:
    sess = ort_session(model)
    feeds = model_feeds(model, arrays)
    static = any(isinstance(i.shape[0], int) for i in sess.get_inputs())
    step = 1 if static else 256
    preds = []
    for s in range(0, len(labels), step):
        preds.append(sess.run(None, {k: v[s:s + step] for k, v in feeds.items()})[0].argmax(1))
    return float((np.concatenate(preds) == labels).mean())


def runtime_accuracy(art, arrays: dict, labels: np.ndarray) -> float:
    m = edgec.load(art, threads=1)
    try:
        names = [i.name for i in m.inputs] if hasattr(m.inputs[0], "name") else list(m.inputs)
        out = [int(np.argmax(next(iter(m.run({n: arrays[n][i:i + 1] for n in names}).values()))))
               for i in range(len(labels))]
    finally:
        m.close()
    return float((np.array(out) == labels).mean())


def word_dropout_copies(texts: list[str], copies: int, p: float, seed: int) -> list[str]:
    """The distillation transfer set: ``copies`` versions of every text with each whitespace-separated
    word dropped with probability ``p`` (at least one word kept), seeded."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(copies):
        for text in texts:
            words = text.split()
            kept = [w for w in words if rng.random() >= p]
            out.append(" ".join(kept or words[:1]))
    return out


def median_ms(fn, runs: int) -> float:
    for _ in range(max(5, runs // 10)):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def runtime_latency(art, feed: dict, runs: int) -> float:
    m = edgec.load(art, threads=1)
    try:
        return median_ms(lambda: m.run(feed), runs)
    finally:
        m.close()


def ort_latency(model: onnx.ModelProto, feed: dict, runs: int) -> float:
    sess = ort_session(model)
    return median_ms(lambda: sess.run(None, feed), runs)


def artifact_bytes(path: Path) -> int:
    """Bytes of what is deployed: the model blob and the kernel library the manifest names, plus the
    manifest; everything else in the folder (kernel objects, reports, the IR dump) is not counted."""
    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text())
    files = [path / "manifest.json"] + [path / manifest["files"][k] for k in ("blob", "library")
                                        if k in manifest.get("files", {})]
    return int(sum(f.stat().st_size for f in files))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, fewer epochs (CI)")
    ap.add_argument("--dataset", default="trec6", choices=["trec6", "sms_spam"])
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--out", default=str(REPO / "build" / "example" / "text_classification"))
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    root = Path(args.data_root) / args.dataset
    tr_labels, tr_texts = read_tsv(root / "train.tsv")
    te_labels, te_texts = read_tsv(root / "test.tsv")
    classes = sorted(set(tr_labels))
    cls = {c: i for i, c in enumerate(classes)}
    fz = Featurizer(STUDENT_BUCKETS, TEACHER_VOCAB, MAX_TOKENS)
    t = time.perf_counter()
    train = {"features": fz.features(tr_texts), "ids": fz.token_ids(tr_texts),
             "labels": np.array([cls[c] for c in tr_labels], dtype=np.int64)}
    test = {"features": fz.features(te_texts), "ids": fz.token_ids(te_texts)}
    y_test = np.array([cls[c] for c in te_labels], dtype=np.int64)
    timings["featurize"] = time.perf_counter() - t
    log(f"{args.dataset}: {len(tr_texts)} train / {len(te_texts)} test texts, {len(classes)} classes {classes}; "
        f"featurized in {timings['featurize']:.1f} s")
    aug_texts = word_dropout_copies(tr_texts, cfg["transfer_copies"], cfg["word_dropout"], seed=0)
    aug = {"features": fz.features(aug_texts), "ids": fz.token_ids(aug_texts)}
    rng = np.random.default_rng(0)
    calib_idx = rng.choice(len(tr_texts), size=min(cfg["calib_samples"], len(tr_texts)), replace=False)
    calib_path = out / "calib.npz"
    np.savez(calib_path, features=train["features"][calib_idx], ids=train["ids"][calib_idx])

    acc = {k: [] for k in ("teacher", "plain", "distilled", "pruned", "int8")}
    keep = {}
    prune_report = None
    V = STUDENT_BUCKETS
    student_kw = dict(cfg["student"], vocab=TEACHER_VOCAB, max_tokens=MAX_TOKENS)
    shapes1 = {"features": (1, STUDENT_BUCKETS)}                    # the student's inputs, batch 1
    if student_kw.get("filters"):
        shapes1 = {"ids": (1, MAX_TOKENS), **shapes1}
    for seed in cfg["seeds"]:
        ts = time.perf_counter()
        log(f"--- seed {seed}")
        t = time.perf_counter()
        teacher = distill(None, models.teacher(TEACHER_VOCAB, MAX_TOKENS, V, len(classes), seed=seed, **cfg["teacher"]), train,
                          alpha=0.0, epochs=cfg["teacher_epochs"], lr=cfg["lr"], seed=seed)
        timings[f"seed{seed} teacher train"] = time.perf_counter() - t
        acc["teacher"].append(ort_accuracy(teacher, test, y_test))
        # transfer set: the labelled questions, plus word-dropout copies labelled by the teacher
        t_logits = np.concatenate([teacher_logits(teacher, train),
                                   teacher_logits(teacher, dict(aug, labels=np.zeros(len(aug_texts), np.int64)))])
        transfer = {k: np.concatenate([train[k], aug[k]]) for k in ("features", "ids")}
        transfer["labels"] = np.concatenate([train["labels"], t_logits[len(tr_texts):].argmax(1)])
        log(f"teacher: test accuracy {acc['teacher'][-1]:.4f} ({timings[f'seed{seed} teacher train']:.0f} s)")

        student0 = models.student(V, len(classes), seed=seed, **student_kw)
        plain = distill(None, student0, train, alpha=0.0, epochs=cfg["student_epochs"], lr=cfg["lr"], seed=seed,
                        progress=False)
        acc["plain"].append(ort_accuracy(plain, test, y_test))
        dist = distill(t_logits, student0, transfer, temperature=cfg["temperature"], alpha=cfg["alpha"],
                       epochs=cfg["distill_epochs"], lr=cfg["lr"], seed=seed, progress=False)
        acc["distilled"].append(ort_accuracy(dist, test, y_test))
        log(f"student plain {acc['plain'][-1]:.4f}, distilled {acc['distilled'][-1]:.4f}")

        pruned0, report = edgec.prune(dist, ratio=cfg["prune_ratio"], mode="channel", input_shapes=shapes1)
        pruned = distill(t_logits, pruned0, transfer, temperature=cfg["temperature"], alpha=cfg["alpha"],
                         epochs=cfg["finetune_epochs"], lr=cfg["finetune_lr"], seed=seed, progress=False)
        acc["pruned"].append(ort_accuracy(pruned, test, y_test))
        if prune_report is None:
            prune_report = report.table()
        t = time.perf_counter()
        art8 = edgec.compile(pruned, target="host", input_shapes=shapes1, output_dir=out / f"seed{seed}" / "int8",
                             quantize="int8", calib=str(calib_path))
        timings[f"seed{seed} int8 compile"] = time.perf_counter() - t
        acc["int8"].append(runtime_accuracy(art8, test, y_test))
        log(f"pruned+fine-tuned {acc['pruned'][-1]:.4f} (without fine-tuning {ort_accuracy(pruned0, test, y_test):.4f})"
            f", int8 on the C runtime {acc['int8'][-1]:.4f}")
        timings[f"seed{seed} total"] = time.perf_counter() - ts
        if seed == cfg["seeds"][0]:
            keep = dict(teacher=teacher, plain=plain, distilled=dist, pruned=pruned, int8=art8)
            for key in ("teacher", "plain", "distilled", "pruned"):   # the float models, for benchmarks/suite.py
                onnx.save(keep[key], out / f"seed{seed}" / f"{key}.onnx")

    # sizes and latencies of the first seed's models
    log("--- compiling the fp32 rows and measuring latencies (first seed's models)")
    sample = {"features": test["features"][:1], "ids": test["ids"][:1]}
    rows = []
    names = {"teacher": "teacher fp32", "plain": "student plain fp32", "distilled": "student distilled fp32",
             "pruned": "distilled + pruned + fine-tuned fp32", "int8": "+ int8 (C runtime)"}
    runtime_check = {}
    for key in ("teacher", "plain", "distilled", "pruned", "int8"):
        if key == "int8":
            art, model = keep["int8"], keep["pruned"]
            ort_ms = None  # the int8 artifact is edgec's own format; onnxruntime runs the fp32 model (row above)
        else:
            model = keep[key]
            shapes = {"ids": (1, MAX_TOKENS), "features": (1, V)} if key == "teacher" else shapes1
            shapes = {k: v for k, v in shapes.items() if k in model_feeds(model, sample)}
            t = time.perf_counter()
            art = edgec.compile(model, target="host", input_shapes=shapes, output_dir=out / f"seed{cfg['seeds'][0]}" / key)
            timings[f"fp32 compile {key}"] = time.perf_counter() - t
            ort_ms = ort_latency(model, model_feeds(model, sample), cfg["latency_runs"])
            # the compiled fp32 artifact gives the same predictions as onnxruntime
            runtime_check[key] = runtime_accuracy(art, test, y_test)
        feed = model_feeds(model, sample)
        a = np.array(acc[key]) * 100
        rows.append({
            "model": names[key],
            "parameters": models.parameter_count(model),
            "artifact bytes": artifact_bytes(art),
            "test accuracy mean": round(float(a.mean()), 2),
            "test accuracy std": round(float(a.std()), 2),
            "test accuracy per seed": [round(float(x), 2) for x in a],
            "latency edgec 1 thread (ms)": round(runtime_latency(art, feed, cfg["latency_runs"]), 4),
            "latency onnxruntime 1 thread (ms)": None if ort_ms is None else round(ort_ms, 4),
        })
    timings["total"] = time.perf_counter() - t_start

    fmt = [("model", 38, "s"), ("parameters", 11, "d"), ("artifact bytes", 15, "d"), ("test accuracy mean", 9, ".2f"),
           ("test accuracy std", 6, ".2f"), ("latency edgec 1 thread (ms)", 13, ".4f"),
           ("latency onnxruntime 1 thread (ms)", 12, ".4f")]
    heads = ["model", "params", "artifact bytes", "acc %", "± std", "edgec ms", "ort ms"]
    print()
    print("  ".join(f"{h:<{w}}" if c == "model" else f"{h:>{w}}" for h, (c, w, _) in zip(heads, fmt)))
    for r in rows:
        cells = []
        for c, w, f in fmt:
            v = r[c]
            cells.append(f"{v:<{w}}" if c == "model" else (f"{'-':>{w}}" if v is None else f"{v:>{w}{f}}"))
        print("  ".join(cells))
    t, s = rows[0], rows[-1]
    ratio = t["artifact bytes"] / s["artifact bytes"]
    gap = t["test accuracy mean"] - s["test accuracy mean"]
    print(f"\nint8 student vs teacher: {ratio:.1f}x smaller artifact, {t['parameters'] / s['parameters']:.1f}x fewer "
          f"parameters, accuracy {gap:+.2f} pt below the teacher "
          f"(goal: >= 10x smaller, within 1 pt: {'met' if ratio >= 10 and gap <= 1.0 else 'NOT met'})")
    print(f"seeds {cfg['seeds']}; accuracies: fp32 rows by onnxruntime, int8 on the C runtime; "
          f"total {timings['total']:.0f} s")

    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    meta = {"dataset": args.dataset, "quick": args.quick, "config": cfg, "classes": classes,
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "fp32_artifact_accuracy_first_seed": runtime_check, "prune_report": prune_report,
            "size_ratio_teacher_over_int8": ratio, "accuracy_gap_pt": gap}
    (out / "results_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
