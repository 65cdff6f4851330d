"""Accuracy-aware int8: keep the most quantization-sensitive layers in float until the accuracy
drop on validation data is within a budget.

    val = load_validation("val.npz", graph)                     # inputs + optional "labels"
    qgraph, section = accuracy_aware_quantize(graph, ranges, QuantizeOptions(...), val, max_drop=0.01)

Validation data (``load_validation``): the model inputs with the per-sample rules of calibration
data (edgec/quant/data.py: a .npz, a folder of .npy, a dict of arrays, or an iterable of feed
dicts), plus, optionally, integer labels under the key ``labels`` (or ``labels_key``): one per
sample, or one per prediction when a sample's first output holds several rows. With labels the
metric is the top-1 accuracy of the first output (argmax over its last axis); without labels it
is the top-1 agreement with the fp32 model (fp32 scores 1.0 by definition).

The search (``accuracy_aware_quantize``):
1. evaluate fp32 and the fully quantized graph on all validation samples (2 evaluations); if
   the drop is within the budget nothing falls back (step 2 still runs: the report lists it);
2. one sensitivity pass over S samples, S = min(N, ``sensitivity_samples`` (64),
   max(8, 16 N / L)) (so that it costs at most about 8 full evaluations): the first S
   (``sensitivity_selection="first"``, the default) or the S with the smallest fp32 top-1
   margin ("margin"; not better on PP-OCR, docs/quantization.md section 10):
   for every quantizable layer (a node the full int8 graph computes in integers, together with
   the relu/clip fused into it), the graph with ONLY that layer in int8 is run and its first
   output compared with fp32: sensitivity = relative RMS error ||y_q - y|| / ||y||. The nodes
   before the layer are the fp32 graph's own, so their values are taken from the cached fp32 run
   and only the rest of the graph is re-run: about L/2 forward passes of the subset in all;
3. the layers sorted by sensitivity (most sensitive first); the prefixes of that ranking of
   k = 1, 2, ..., P layers (P = ``prefix_evaluations``, 8, at most L - 1) are evaluated in turn
   and the first within the budget is kept: the drop is not monotone in k on real models, so a
   bisection alone can jump over a small k that meets it; 4. only if no k <= P does: the smallest
   k in (P, L] by bisection (k = L is the fp32 graph itself, which always meets it).
   Full evaluations: at most 2 + min(P, L - 1) + ceil(log2(L - P)) (+ 1 when only k = L meets it).
Each evaluated candidate is the graph the compiler would return (quantized and finished from the
compile graph, so the bias correction sees the same samples), re-batched for the evaluation; the
graph returned is the evaluated candidate itself.
Evaluations run the numpy reference (``edgec.reference``), batched when the graph still
computes the same outputs with its inputs' first axis multiplied by the batch (checked on the
first samples; otherwise one sample at a time).
Tests: tests/quant/test_accuracy_aware.py
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..errors import EdgecError
from ..ir.graph import Graph
from ..ir.ops import get as get_op
from .data import (CalibrationDataError, EmptyCalibrationDataError, _from_arrays, _from_iterable, input_infos)

log = logging.getLogger("edgec.quant")


class ValidationDataError(CalibrationDataError):
    """Validation data does not fit the model (labels missing, of the wrong count or type, ...)."""


class AccuracyOptionsError(EdgecError):
    """A bad option of the accuracy-aware mode (budget, sample counts)."""


@dataclass
class ValidationData:
    """All validation samples in memory: ``inputs`` {name: [N, *input shape]}, ``labels``
    (int64 [N, P] or None), ``source`` (for the report)."""
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str
    labels_key: str = "labels"

    @property
    def count(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])


def _stack(feeds, where: str) -> dict[str, np.ndarray]:
    cols: dict[str, list[np.ndarray]] = {}
    for feed in feeds:
        for k, v in feed.items():
            cols.setdefault(k, []).append(v)
    if not cols:
        raise EmptyCalibrationDataError(f"{where}: no validation sample")
    return {k: np.stack(v) for k, v in cols.items()}


def load_validation(source, graph: Graph, labels_key: str = "labels") -> ValidationData:
    """Read validation data (see the module docstring) for ``graph``'s inputs.

    Errors (``CalibrationDataError`` subclasses, messages starting with "validation data"):
    missing/unknown input names, wrong shapes or dtypes, unequal sample counts, no samples, and
    ``ValidationDataError`` for labels that are not integers or not one per sample.
    """
    infos = input_infos(graph)
    if labels_key in infos:
        raise ValidationDataError(f"validation data: the labels key {labels_key!r} is also an input name of the "
                                  f"model; give the labels another name (--val-labels NAME)")
    labels = None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        where = f"validation data {path}"
        if path.is_dir():
            files = sorted(path.glob("*.npy"))
            if not files:
                raise EmptyCalibrationDataError(f"{where}: the folder holds no .npy file")
            arrays = {}
            for f in files:
                try:
                    arrays[f.name[:-len(".npy")]] = np.load(f, mmap_mode="r", allow_pickle=False)
                except (ValueError, OSError) as e:
                    raise ValidationDataError(f"{f}: not a readable .npy array ({e})") from None
        elif path.is_file():
            try:
                npz = np.load(path, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise ValidationDataError(f"{where}: not a readable .npz file ({e})") from None
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValidationDataError(f"{where}: expected a .npz archive (one array per input, plus "
                                          f"{labels_key!r}) or a folder of .npy files")
            arrays = {k: npz[k] for k in npz.files}
        else:
            raise ValidationDataError(f"{where}: no such file or folder")
        labels = arrays.pop(labels_key, None)
        feeds = _from_arrays(arrays, infos, where)
    elif isinstance(source, Mapping):
        where = "validation data"
        arrays = {k: np.asarray(v) for k, v in source.items()}
        labels = arrays.pop(labels_key, None)
        feeds = _from_arrays(arrays, infos, where)
    elif isinstance(source, Iterable):
        where = "validation data"
        items = list(source)
        has = [labels_key in f for f in items if isinstance(f, Mapping)]
        if any(has) and not all(has):
            raise ValidationDataError(f"{where}: some samples have {labels_key!r} and some do not")
        if any(has):
            labels = np.stack([np.asarray(f[labels_key]) for f in items])
            items = [{k: v for k, v in f.items() if k != labels_key} for f in items]
        feeds = _from_iterable(items, infos)
    else:
        raise ValidationDataError(f"validation data must be a .npz path, a folder, a dict of arrays or an iterable "
                                  f"of feed dicts, got {type(source).__name__}")
    inputs = _stack(feeds, where)
    n = int(next(iter(inputs.values())).shape[0])
    if labels is not None:
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise ValidationDataError(f"{where}: labels {labels_key!r} must be integers (class indices), got "
                                      f"{labels.dtype.name}")
        if labels.ndim == 0 or labels.shape[0] != n:
            raise ValidationDataError(f"{where}: {n} sample(s) but {labels.shape[0] if labels.ndim else 'a scalar'} "
                                      f"label(s) under {labels_key!r}: give one label per sample")
        labels = labels.reshape(n, -1).astype(np.int64)
    return ValidationData(inputs, labels, where if not isinstance(source, (str, os.PathLike)) else str(source),
                          labels_key)


# -- running graphs over the validation set -------------------------------------------------------

def _rebatch(graph: Graph, factor: int) -> Graph | None:
    """``graph`` with every input's first axis multiplied by ``factor`` (shapes re-inferred), or
    None when its shapes do not allow it. A reshape whose target keeps its input's first axis
    (``[1, 200]`` of a ``[1, 200, 1, 1]``, the usual flatten before a classifier) gets that axis
    scaled too; whether the result really computes sample by sample is checked by the caller."""
    from ..ir.graph import Node
    from ..passes import infer_shapes
    g = graph.copy()
    for name in g.inputs:
        v = g.values[name]
        if not v.shape:
            return None
        g.values[name] = replace(v, shape=(v.shape[0] * factor, *v.shape[1:]))
    nodes = []
    for n in g.nodes:
        shp = n.attrs.get("shape") if n.op == "reshape" else None
        src = graph.values[n.inputs[0]].shape if shp and n.inputs else ()
        if src and int(shp[0]) == src[0] > 0:
            n = Node(n.op, n.inputs, n.outputs, {**n.attrs, "shape": (int(shp[0]) * factor, *shp[1:])}, n.name)
        nodes.append(n)
    g.nodes = nodes
    try:
        g = infer_shapes(g)
    except (EdgecError, ValueError, TypeError, IndexError):
        return None
    for o, o0 in zip(g.outputs, graph.outputs):
        s, s0 = g.values[o].shape, graph.values[o0].shape
        if not s0 or tuple(s) != (s0[0] * factor, *s0[1:]):
            return None
    return g


def _run_nodes(graph: Graph, env: dict[str, np.ndarray], start: int = 0) -> dict[str, np.ndarray]:
    """Run ``graph.nodes[start:]`` on ``env`` (inputs, constants and the values of the earlier
    nodes already there), like edgec.reference.run_graph without its per-node type checks."""
    for node in graph.nodes[start:]:
        args = [env[i] if i else None for i in node.inputs]
        for o, r in zip(node.outputs, get_op(node.op).reference(*args, **node.attrs)):
            env[o] = np.asarray(r)
    return env


def _const_env(graph: Graph) -> dict[str, np.ndarray]:
    return {v.name: v.const for v in graph.values.values() if v.const is not None}


class _Evaluator:
    """Runs graphs (built from a float graph of batch 1 sample) over the validation samples,
    ``batch`` samples per call when the graph allows it."""

    def __init__(self, graph: Graph, val: ValidationData, batch: int, trusted: bool = False):
        self.graph = graph
        self.val = val
        self.n = val.count
        self.batch = 1
        self.bgraph = graph
        # the fewest chunks of at most ``batch`` samples, as even as possible (the last chunk is
        # padded with repeated samples, so this bounds the wasted work to chunks - 1 samples)
        b = -(-self.n // -(-self.n // max(1, batch)))
        if b > 1:
            bg = _rebatch(graph, b)
            if bg is not None and (trusted or self._same_outputs(graph, bg, b)):
                self.batch, self.bgraph = b, bg
            else:
                log.info("accuracy-aware int8: the graph does not run batched; evaluating one sample at a time")

    def _same_outputs(self, g1: Graph, gb: Graph, b: int) -> bool:
        """The batched graph gives the per-sample graph's outputs (within float rounding) on
        samples taken from the first ``b``: no op mixes samples."""
        from ..reference import run_graph
        try:
            got = run_graph(gb, self._feed(0, b))
        except EdgecError:
            return False
        for k in sorted({0, 1, b // 2, b - 1}):        # a few samples, first, middle and last rows
            one = run_graph(g1, {n: a[k] for n, a in self.val.inputs.items()})
            for o, o1 in zip(gb.outputs, g1.outputs):
                w = one[o1]
                rows = w.shape[0]
                g = got[o][k * rows:(k + 1) * rows]
                if g.shape != w.shape:
                    return False
                if w.dtype.kind == "f":
                    tol = 1e-4 * max(float(np.abs(w).max()) if w.size else 0.0, 1e-3)
                    if not np.allclose(g, w, rtol=0, atol=tol):
                        return False
                elif not np.array_equal(g, w):
                    return False
        return True

    def _feed(self, lo: int, b: int) -> dict[str, np.ndarray]:
        """Samples lo..lo+b-1 concatenated on the first axis (the last one repeated to fill ``b``)."""
        idx = np.minimum(np.arange(lo, lo + b), self.n - 1)
        return {name: a[idx].reshape(b * a.shape[1], *a.shape[2:]) if b > 1 else a[lo]
                for name, a in self.val.inputs.items()}

    def chunks(self, count: int):
        for lo in range(0, count, self.batch):
            yield lo, min(self.batch, count - lo)

    def first_output(self, graph: Graph, count: int) -> np.ndarray:
        """The first output of ``graph`` (a graph made from self.bgraph) on samples [0, count):
        [count, *output shape of one sample]."""
        out = graph.outputs[0]
        parts = []
        for lo, m in self.chunks(count):
            env = _run_nodes(graph, {**_const_env(graph), **self._feed(lo, self.batch)})
            parts.append(self.per_sample(env[out])[:m])
        return np.concatenate(parts)

    def per_sample(self, y: np.ndarray) -> np.ndarray:
        """An output of one batched run, [batch * rows, ...] -> [batch, rows, ...]."""
        return y.reshape(self.batch, -1, *y.shape[1:])


def _top1(y: np.ndarray) -> np.ndarray:
    """Predictions per sample: argmax over the last axis, [N, P]."""
    n = y.shape[0]
    if y.ndim == 1 or y.shape[-1] < 2:
        raise ValidationDataError(f"the model's first output has shape {list(y.shape[1:])} per sample: top-1 "
                                  f"accuracy needs class scores on its last axis (at least 2)")
    return y.reshape(n, -1, y.shape[-1]).argmax(-1).reshape(n, -1)


def _margins(y: np.ndarray) -> np.ndarray:
    """Per sample: the smallest, over its predictions, gap between the two highest scores of the
    last axis (float64, [N])."""
    n = y.shape[0]
    z = np.sort(y.reshape(n, -1, y.shape[-1]).astype(np.float64), axis=-1)
    return (z[..., -1] - z[..., -2]).min(axis=1)


SELECTIONS = ("first", "margin")


def _check_options(max_drop, sensitivity_samples=64, batch=64, prefix_evaluations=8) -> None:
    if max_drop is not None and (isinstance(max_drop, bool) or not isinstance(max_drop, (int, float))
                                 or not math.isfinite(max_drop) or not 0 <= max_drop < 1):
        raise AccuracyOptionsError(f"max_accuracy_drop must be a fraction in [0, 1) (0.01 = 1 point), got {max_drop!r}")
    for nm, v in (("sensitivity_samples", sensitivity_samples), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise AccuracyOptionsError(f"{nm} must be a positive integer, got {v!r}")
    if isinstance(prefix_evaluations, bool) or not isinstance(prefix_evaluations, int) or prefix_evaluations < 0:
        raise AccuracyOptionsError(f"prefix_evaluations must be a non-negative integer, got {prefix_evaluations!r}")


def quantizable_layers(qmeta: dict) -> dict[str, list[str]]:
    """{layer: nodes falling back with it}: each node the full int8 graph computes in integers,
    with the relu/clip fused into it (a fused activation left alone in int8 would keep the
    quantization of the layer's output)."""
    layers: dict[str, list[str]] = {}
    for row in qmeta["layers"]:
        if row["precision"] != "int8":
            continue
        ch = row["choice"]
        if ch.startswith("fused into "):
            layers.setdefault(ch[len("fused into "):], []).append(row["node"])
        else:
            layers.setdefault(row["node"], []).insert(0, row["node"])
    return layers


def _common_prefix(a: Graph, b: Graph) -> int:
    """Number of leading nodes of ``b`` identical to ``a``'s (same op, inputs, outputs, attrs)."""
    k = 0
    for x, y in zip(a.nodes, b.nodes):
        if (x.op, x.inputs, x.outputs, x.name) != (y.op, y.inputs, y.outputs, y.name):
            break
        try:
            if dict(x.attrs) != dict(y.attrs):
                break
        except ValueError:
            break
        k += 1
    return k


def accuracy_aware_quantize(graph: Graph, ranges: dict, options, val: ValidationData, max_drop: float | None,
                            finish: Callable[[Graph], Graph] | None = None, sensitivity_samples: int = 64,
                            batch: int = 64, progress: Callable[[str], None] | None = None,
                            prefix_evaluations: int = 8, sensitivity_selection: str = "first"
                            ) -> tuple[Graph, dict[str, Any]]:
    """Quantize ``graph`` (fp32, after the default pipeline) with ``ranges`` and ``options``
    (a QuantizeOptions; its ``fallback_nodes`` are kept in float in every candidate), falling back
    the most sensitive layers to float until the drop on ``val`` is at most ``max_drop`` (a
    fraction: 0.01 = 1 point of accuracy; None: only measure and report, nothing falls back).

    ``finish`` post-processes each quantized graph (the compiler's infer_shapes + dead code
    elimination); ``progress`` receives one line per step (the compiler prints them on stderr).
    Returns the quantized graph (of ``graph``'s shapes) and the report section
    (see the module docstring and docs/quantization.md)."""
    from ..passes.quantize_int8 import quantize_int8
    _check_options(max_drop, sensitivity_samples, batch, prefix_evaluations)
    if sensitivity_selection not in SELECTIONS:
        raise AccuracyOptionsError(f"sensitivity_selection must be one of {', '.join(SELECTIONS)}, "
                                   f"got {sensitivity_selection!r}")
    finish = finish or (lambda g: g)
    t0 = time.perf_counter()
    base_fallback = frozenset(options.fallback_nodes)

    def build(g: Graph, fallback: Iterable[str]) -> Graph:
        return finish(quantize_int8(g, ranges, replace(options, fallback_nodes=base_fallback | frozenset(fallback))))

    ev = _Evaluator(graph, val, batch)
    n = val.count
    labels = val.labels
    evaluations = 0
    y32 = ev.first_output(ev.bgraph, n)
    p32 = _top1(y32)
    if labels is not None and labels.shape != p32.shape:
        raise ValidationDataError(f"validation data {val.source}: {labels.shape[1]} label(s) per sample under "
                                  f"{val.labels_key!r}, but the first output {graph.outputs[0]!r} gives "
                                  f"{p32.shape[1]} prediction(s) per sample")
    ref = labels if labels is not None else p32
    evaluations += 1

    say = progress or (lambda msg: None)

    def metric_of(g: Graph, what: str) -> float:
        nonlocal evaluations
        evaluations += 1
        te = time.perf_counter()
        mm = float((_top1(ev.first_output(g, n)) == ref).mean())
        say(f"accuracy-aware int8: {what}: {100 * mm:.2f}% (drop {100 * (m32 - mm):.2f} points; "
            f"{time.perf_counter() - te:.1f} s)")
        return mm

    m32 = float((p32 == ref).mean())
    say(f"accuracy-aware int8: fp32 {100 * m32:.2f}% on {n} validation sample(s) "
        f"({'labels' if labels is not None else 'agreement with fp32, no labels'}; {time.perf_counter() - t0:.1f} s)")
    built: dict[frozenset, Graph] = {}

    def candidate(fallback: Iterable[str]) -> Graph:
        """The graph the compiler would return with ``fallback`` in float (quantized and finished
        from the compile graph itself, so that a data-dependent ``finish`` such as the bias
        correction sees exactly the samples it sees there), re-batched for the evaluation."""
        key = frozenset(fallback)
        g1 = built[key] = build(graph, key)
        if ev.batch == 1:
            return g1
        gb = _rebatch(g1, ev.batch)
        if gb is None:
            raise EdgecError(f"accuracy-aware int8: the quantized graph of {graph.name!r} does not re-batch "
                             f"although its fp32 graph does (please report this)")
        return gb

    full_b = candidate(())
    m8 = metric_of(full_b, "full int8")
    # the binomial standard error of a top-1 rate on n samples: candidates whose metrics differ by
    # less than ~2 of it are told apart by a few samples near a tie, not by their accuracy
    std_err = math.sqrt(max(m8 * (1.0 - m8), 1.0 / n) / n)
    if max_drop is not None and m32 - m8 > max_drop + 1e-12 and max_drop < 2 * std_err:
        msg = (f"the budget ({100 * max_drop:g} point(s)) is below twice the sampling error of the metric on "
               f"{n} validation sample(s) ({100 * std_err:.2f} points): candidates differ by noise there, so "
               f"the search may keep many layers in float; more validation samples make it meaningful")
        say(f"accuracy-aware int8: note: {msg}")
        log.warning("accuracy-aware int8: %s", msg)
    layers = quantizable_layers(full_b.meta["quantization"])
    names = list(layers)
    search = [{"float_layers": 0, "metric": m8, "drop": m32 - m8}]
    sens: dict[str, dict[str, float]] = {}
    t_sens = 0.0
    s_count = 0
    chosen: list[str] = []
    final_metric = m8
    status = "met with every layer in int8"
    over = max_drop is not None and m32 - m8 > max_drop + 1e-12
    n_prefix, bisected = 0, False
    if names:
        # one sensitivity pass (also when int8 already meets the budget: the report lists it): each
        # layer alone in int8, on a subset, re-running only the nodes past the prefix shared with fp32
        ts = time.perf_counter()
        # S samples; L layers re-run about half the graph each: at most ~8 full evaluations' work
        s = min(n, sensitivity_samples, max(8, -(-16 * n // len(names))))
        if s < n and sensitivity_selection == "margin":
            # the S samples whose fp32 top-1 is closest to changing (smallest gap between the two
            # highest scores, the smallest over a sample's predictions): the ones whose top-1 the
            # metric can lose, so the error that matters is measured where it matters
            sel = np.sort(np.argsort(_margins(y32), kind="stable")[:s])
        else:
            sel = np.arange(s)
        sub = ValidationData({k: a[sel] for k, a in val.inputs.items()}, None, val.source, val.labels_key)
        es = _Evaluator(graph, sub, batch, trusted=ev.batch > 1) if s < n else ev
        singles = {}
        for name in names:
            others = [x for other in names if other != name for x in layers[other]]
            g1 = build(es.bgraph, others)
            singles[name] = (g1, _common_prefix(es.bgraph, g1))
        sse = {name: 0.0 for name in names}
        flips = {name: 0 for name in names}
        ssy = 0.0
        out = es.bgraph.outputs[0]
        for lo, m in es.chunks(s):
            feed = es._feed(lo, es.batch)
            env32 = _run_nodes(es.bgraph, {**_const_env(es.bgraph), **feed})
            y32b = es.per_sample(env32[out])[:m]
            y = y32b.reshape(m, -1).astype(np.float64)
            ssy += float((y ** 2).sum())
            top = _top1(y32b)
            for name, (g1, k) in singles.items():
                env = {v: env32[v] for nd in g1.nodes[:k] for v in nd.outputs}
                env.update(_const_env(g1))
                env.update(feed)
                yq = es.per_sample(_run_nodes(g1, env, k)[out])[:m]
                sse[name] += float(((yq.reshape(m, -1).astype(np.float64) - y) ** 2).sum())
                flips[name] += int((_top1(yq) != top).sum())
        npred = s * p32.shape[1]
        s_count = s
        for name in names:
            sens[name] = {"sensitivity": math.sqrt(sse[name] / ssy) if ssy > 0 else math.sqrt(sse[name]),
                          "flips": flips[name] / npred}
        t_sens = time.perf_counter() - ts
        say(f"accuracy-aware int8: sensitivity of {len(names)} layer(s) on {s} sample(s): {t_sens:.1f} s")
        order = sorted(names, key=lambda x: (-sens[x]["sensitivity"], -sens[x]["flips"], names.index(x)))
        for rank, name in enumerate(order, 1):
            sens[name]["rank"] = rank
    if over and names:
        # 1) prefixes of the ranking, k = 1, 2, ..., P (P = prefix_evaluations, at most L - 1):
        #    the smallest k within the budget wins; 2) only if none is: bisection over k in (P, L]
        #    (bad at P (measured, or k = 0), good at L: the fp32 graph)
        results = {}

        def trial(k: int) -> bool:
            fb = [x for name in order[:k] for x in layers[name]]
            mm = metric_of(candidate(fb), f"{k} most sensitive layer(s) in float")
            results[k] = mm
            search.append({"float_layers": k, "metric": mm, "drop": m32 - mm})
            return m32 - mm <= max_drop + 1e-12

        k = None
        p = min(prefix_evaluations, len(order) - 1)
        for kk in range(1, p + 1):
            n_prefix = kk
            if trial(kk):
                k = kk
                break
        if k is None:
            bisected = True
            lo, hi = p, len(order)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if trial(mid):
                    hi = mid
                else:
                    lo = mid
            k = hi
        chosen = order[:k]
        if k == len(order):
            final_metric = metric_of(candidate([x for name in chosen for x in layers[name]]),
                                     "every layer in float")
            search.append({"float_layers": k, "metric": final_metric, "drop": m32 - final_metric})
            status = "met only with every layer in float: no layer stays in int8"
            log.warning("accuracy-aware int8: a drop of at most %g is met only with every layer in float; the "
                        "model is not quantized (int8 alone drops %.4f)", max_drop, m32 - m8)
        else:
            final_metric = results[k]
            status = f"met with {k} of {len(order)} layer(s) in float"
    elif over:
        status = "not met: no layer is computed in int8"
    fallback = [x for name in chosen for x in layers[name]]
    qgraph = built[frozenset(fallback)]         # the evaluated candidate, in the compile graph's shapes
    plan = {"prefix_evaluations": prefix_evaluations, "prefixes_tried": n_prefix, "bisection": bisected}
    section = {
        "metric": (f"top-1 accuracy of output {graph.outputs[0]!r} against labels {val.labels_key!r}"
                   if labels is not None else
                   f"top-1 agreement of output {graph.outputs[0]!r} with the fp32 model (no labels given)"),
        "labels": labels is not None,
        "val_source": val.source, "val_samples": n, "max_drop": None if max_drop is None else float(max_drop),
        "fp32": m32, "int8": m8, "final": final_metric, "int8_drop": m32 - m8, "final_drop": m32 - final_metric,
        "budget_met": None if max_drop is None else m32 - final_metric <= max_drop + 1e-12,
        "status": status if max_drop is not None else "measured only (no max_drop given)",
        "fallback_layers": chosen,
        "sensitivity": {"measure": f"relative RMS error of output {graph.outputs[0]!r} with only that layer in int8",
                        "samples": s_count, "seconds": round(t_sens, 3),
                        "selection": (f"the {s_count} of {n} samples with the smallest fp32 top-1 margin"
                                      if s_count < n and sensitivity_selection == "margin"
                                      else f"the first {s_count} of {n} samples"),
                        "layers": sens},
        "std_error": std_err,
        "evaluations": evaluations, "batch": ev.batch, "search": search, "search_plan": plan,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return qgraph, section


__all__ = ["load_validation", "accuracy_aware_quantize", "quantizable_layers", "ValidationData",
           "ValidationDataError", "AccuracyOptionsError"]
