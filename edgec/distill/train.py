"""The distillation trainer: teacher logits (onnxruntime), the loss, the seeded training loop."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..errors import EdgecError, ModelFormatError
from ._torch import require_torch

LABELS_KEY = "labels"


class DistillDataError(EdgecError):
    """The training data (npz) is missing an input or the labels, or its arrays disagree."""


@dataclass
class DistillResult:
    """Per-epoch record of a run (``history`` argument of ``distill``)."""
    epoch: int
    loss: float
    train_accuracy: float
    seconds: float


def _load_model(model) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    path = Path(model)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - onnx raises several types on garbage
        raise ModelFormatError(f"{path}: cannot read the ONNX model ({e})") from None


def load_data(data) -> dict[str, np.ndarray]:
    """The training set: a .npz path or a dict of arrays, one per model input (first axis = samples)
    plus ``labels`` (int class ids). Checks that every array has the same number of samples."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise DistillDataError(f"{path}: no such data file")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    elif isinstance(data, dict):
        arrays = {k: np.asarray(v) for k, v in data.items()}
    else:
        raise DistillDataError(f"data must be a .npz path or a dict of arrays, got {type(data).__name__}")
    if LABELS_KEY not in arrays:
        raise DistillDataError(f"the training data has no {LABELS_KEY!r} array (has {sorted(arrays)})")
    labels = arrays[LABELS_KEY]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DistillDataError(f"{LABELS_KEY!r} must be a 1-D integer array of class ids, got "
                               f"{labels.dtype}{list(labels.shape)}")
    n = len(labels)
    bad = {k: v.shape for k, v in arrays.items() if v.ndim == 0 or v.shape[0] != n}
    if bad:
        raise DistillDataError(f"every array needs {n} samples on axis 0 (as {LABELS_KEY!r}); these differ: {bad}")
    if n == 0:
        raise DistillDataError("the training data is empty")
    return arrays


def _graph_inputs(model: onnx.ModelProto):
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _np_dtype(value_info):
    return onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type)


def _select_inputs(model: onnx.ModelProto, arrays: dict, role: str) -> dict[str, np.ndarray]:
    out = {}
    for vi in _graph_inputs(model):
        if vi.name not in arrays:
            raise DistillDataError(f"the {role} model needs input {vi.name!r}, which the training data lacks "
                                   f"(has {sorted(k for k in arrays if k != LABELS_KEY)})")
        out[vi.name] = np.ascontiguousarray(arrays[vi.name].astype(_np_dtype(vi), copy=False))
    return out


def _final_softmax(model: onnx.ModelProto) -> str | None:
    producer = {o: n for n in model.graph.node for o in n.output}
    node = producer.get(model.graph.output[0].name)
    return node.op_type if node is not None and node.op_type in ("Softmax", "LogSoftmax") else None


def teacher_logits(teacher, data, batch_size: int = 256) -> np.ndarray:
    """The teacher's logits [N, classes] on the training data, run by onnxruntime. A teacher ending in
    Softmax gives log-probabilities (equal to its logits up to a per-sample constant, which the
    softmax of the distillation loss ignores). ``teacher`` may also be the logits array itself."""
    arrays = load_data(data) if not isinstance(data, dict) or LABELS_KEY in data else data
    if isinstance(teacher, np.ndarray):
        logits = teacher.astype(np.float32)
    else:
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgecError("running the teacher needs onnxruntime: `pip install onnxruntime`") from None
        model = _load_model(teacher)
        feeds = _select_inputs(model, arrays, "teacher")
        n = len(next(iter(feeds.values())))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        dim0 = {i.name: i.shape[0] for i in sess.get_inputs()}
        fixed = {d for d in dim0.values() if isinstance(d, int)}
        step = min(fixed) if fixed else batch_size
        parts = []
        for s in range(0, n, step):
            chunk = {k: v[s:s + step] for k, v in feeds.items()}
            m = len(next(iter(chunk.values())))
            if fixed and m < step:  # pad the last chunk of a fixed-batch teacher
                chunk = {k: np.concatenate([v, np.repeat(v[-1:], step - m, axis=0)]) for k, v in chunk.items()}
            parts.append(sess.run([sess.get_outputs()[0].name], chunk)[0][:m])
        logits = np.concatenate(parts).astype(np.float32)
        kind = _final_softmax(model)
        if kind == "Softmax":
            logits = np.log(np.maximum(logits, 1e-30)).astype(np.float32)
    n = len(arrays[LABELS_KEY])
    if logits.ndim != 2 or logits.shape[0] != n:
        raise DistillDataError(f"teacher logits must be [samples={n}, classes], got {list(logits.shape)}")
    return logits


def distillation_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y), averaged over the batch.
    ``teacher_logits`` is ignored (may be None) when alpha == 0."""
    torch = require_torch()
    F = torch.nn.functional
    ce = F.cross_entropy(student_logits, labels)
    if alpha == 0:
        return ce
    T = float(temperature)
    log_ps = F.log_softmax(student_logits / T, dim=1)
    log_pt = F.log_softmax(teacher_logits / T, dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1).mean()
    return alpha * T * T * kl + (1.0 - alpha) * ce


def distill(teacher, student, data, temperature: float = 4.0, alpha: float = 0.7, epochs: int = 10,
            lr: float = 1e-3, batch_size: int = 64, seed: int = 0, progress: bool = True,
            weight_decay: float = 0.0, threads: int | None = 1, output=None, history: list | None = None
            ) -> onnx.ModelProto:
    """Train the ONNX ``student`` (path, bytes or ModelProto) on ``data`` (npz path or dict: one array
    per model input, first axis = samples, plus ``labels``) with the loss
    ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels)``, where ``t`` are
    the logits of ``teacher`` (an ONNX model run by onnxruntime, or a precomputed [N, classes]
    array; ``None`` is allowed with ``alpha=0``: plain training on the labels). Adam (``lr``,
    ``weight_decay``), ``epochs`` passes in mini-batches shuffled with ``seed``; torch is seeded
    and runs on ``threads`` threads (deterministic: the same seed gives the same weights).
    Returns the student ModelProto with the trained initializers (same graph); ``output`` also
    saves it. ``progress`` prints one line per epoch on stderr; ``history`` (a list) receives a
    ``DistillResult`` per epoch."""
    torch = require_torch()
    from .torch_graph import OnnxModule

    if not 0.0 <= float(alpha) <= 1.0:
        raise EdgecError(f"alpha must be in [0, 1], got {alpha}")
    if float(temperature) <= 0:
        raise EdgecError(f"temperature must be > 0, got {temperature}")
    if int(epochs) < 0 or int(batch_size) < 1:
        raise EdgecError(f"epochs must be >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    arrays = load_data(data)
    labels = arrays[LABELS_KEY].astype(np.int64)
    student_model = _load_model(student)
    feeds = _select_inputs(student_model, arrays, "student")
    if alpha > 0:
        if teacher is None:
            raise EdgecError("a teacher is needed when alpha > 0 (alpha=0 trains on the labels only)")
        t_logits = teacher_logits(teacher, arrays)
    else:
        t_logits = None

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        torch.manual_seed(int(seed))
        module = OnnxModule(student_model)
        n_classes = None
        params = [p for p in module.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=float(lr), weight_decay=float(weight_decay))
        rng = np.random.default_rng(int(seed))
        x_all = {k: torch.from_numpy(v) for k, v in feeds.items()}
        y_all = torch.from_numpy(labels)
        t_all = torch.from_numpy(t_logits) if t_logits is not None else None
        n = len(labels)
        for epoch in range(1, int(epochs) + 1):
            t0 = time.perf_counter()
            module.train()
            order = torch.from_numpy(rng.permutation(n))
            total, correct = 0.0, 0
            for s in range(0, n, int(batch_size)):
                idx = order[s:s + int(batch_size)]
                logits = module.logits({k: v[idx] for k, v in x_all.items()})
                if n_classes is None:
                    n_classes = logits.shape[1]
                    if int(labels.max()) >= n_classes or int(labels.min()) < 0:
                        raise DistillDataError(f"labels must be in [0, {n_classes}) for a student with "
                                               f"{n_classes} outputs, got [{labels.min()}, {labels.max()}]")
                    if t_all is not None and t_all.shape[1] != n_classes:
                        raise DistillDataError(f"the teacher has {t_all.shape[1]} classes, the student {n_classes}")
                loss = distillation_loss(logits, t_all[idx] if t_all is not None else None, y_all[idx],
                                         temperature, alpha)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == y_all[idx]).sum())
            rec = DistillResult(epoch, total / n, correct / n, time.perf_counter() - t0)
            if history is not None:
                history.append(rec)
            if progress:
                print(f"distill: epoch {epoch}/{epochs}  loss {rec.loss:.4f}  train acc {rec.train_accuracy:.4f}"
                      f"  ({rec.seconds:.1f} s)", file=sys.stderr, flush=True)
        module.eval()
        trained = module.to_onnx()
    finally:
        torch.set_num_threads(old_threads)
    if output is not None:
        onnx.save(trained, str(output))
    return trained
