"""Error-compensating int8 weight rounding (GPTQ / OBQ, Frantar et al. 2022) as a post-pass on a
quantized graph.

``quantize_int8`` rounds every weight to the nearest multiple of its channel's scale. Rounding a
weight column is an error on the layer output that the *other* columns can partly cancel: with
``H = sum_samples X X^T`` (X: the layer's actual input, dequantized, on the quantized network; for a
conv the im2col patches, one H per group), the columns are quantized one at a time and each one's
rounding error is spread over the columns not yet quantized along the rows of the Cholesky factor
of ``H^-1`` (the optimal update of Optimal Brain Quantization). The per-channel scales, the int8
range [-127, 127], the integer ops and their attributes are unchanged: only the int8 weight
constants and (for the zero-point fold ``b - z_x * sum_k w[c, k]``) the int32 biases move, so the
kernels and the bit-exactness of the C runtime are untouched.

``target="float"`` (the default) aims each layer at the *float* network's output rather than at its
own float weights applied to the quantized input: the weights first become the least-squares
solution ``V = W C^T H^-1`` (``C = sum X_q X_f^T`` with X_f the layer's input on the float network),
which also compensates the activation rounding of the layers upstream; V is then rounded as above.
``target="weights"`` is plain GPTQ (each layer's own float weights on its quantized input).

Layers seen at fewer input rows than ``min_rows_per_column`` times their reduction length (the SE
1x1 convs and the classifier of a CNN: one row per sample) keep nearest rounding
(``few_rows="nearest"``, the default) or get plain GPTQ (``few_rows="weights"``): with fewer rows
than columns H is singular and the compensation pushes the error into directions the calibration
samples do not see (PP-OCR: the SE layers' calibration error fell 100x; the float-target least
squares on them raised the validation mean |dp| from 0.0167 / 0.0149 to 0.0188 / 0.0166).

Measured on PP-OCR (docs/quantization.md, section 8): every layer's output error on new images
drops by 1-14 dB, but the network's top-1 agreement with float does not improve beyond the noise
of the validation images, which is why ``QuantizeOptions.weight_rounding`` defaults to "nearest".

Layers are processed in graph order, each on the quantized network's inputs computed with the
already re-rounded layers upstream (node by node over all samples, as bias correction does).
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.ops import get as get_op
from .qmath import INT8_WEIGHT_QMAX

_LINEAR_Q = ("qconv", "qdense", "qdense_dequant")   # the same x / w / bias / x_zero_point layout
TARGETS = ("float", "weights")


def _targets(qgraph: Graph, float_graph: Graph) -> dict[str, Node]:
    """qconv / qdense that stand for a float conv / dense / matmul (not the unit-weight qconv of an
    avg_pool), with a per-channel-scaled int8 weight used by no other node: {name: float node}."""
    fnodes = {n.name: n for n in float_graph.nodes}
    uses: dict[str, int] = {}
    for n in qgraph.nodes:
        for v in n.inputs:
            if v:
                uses[v] = uses.get(v, 0) + 1
    out = {}
    for n in qgraph.nodes:
        f = fnodes.get(n.name)
        if n.op not in _LINEAR_Q or f is None or f.op not in ("conv", "dense", "matmul") or len(n.inputs) < 3:
            continue
        x, w, b = (qgraph.values.get(v) if v else None for v in n.inputs[:3])
        if x is None or w is None or b is None or x.qparams is None or w.qparams is None or w.const is None \
                or b.const is None or uses.get(n.inputs[1], 0) != 1 or uses.get(n.inputs[2], 0) != 1:
            continue
        if float_graph.values[f.inputs[1]].const is None:
            continue
        out[n.name] = f
    return out


def _float_weight(float_graph: Graph, fnode: Node) -> np.ndarray:
    """The float weight in the layout of the int8 one: conv [O, C/g, k...], dense [N, K],
    matmul x @ W -> W.T."""
    w = np.asarray(float_graph.values[fnode.inputs[1]].const, np.float64)
    return np.ascontiguousarray(w.T) if fnode.op == "matmul" else w


def _patches(node: Node, x: np.ndarray, pad_value, ks: tuple = ()) -> np.ndarray:
    """The layer's input as rows of its reduction: [groups, rows, K] (K = C/g * prod(kernel) for a
    conv, in the weight's [C/g, k...] order, ``ks`` the kernel shape; dense: one group, K = in features)."""
    if node.op != "qconv":
        return x.reshape(1, -1, x.shape[-1])
    r = x.ndim - 2
    pads, strides, dil, group = node.attrs["pads"], node.attrs["strides"], node.attrs["dilations"], node.attrs["group"]
    if any(pads):
        widths = [(0, 0), (0, 0)] + [(pads[i], pads[r + i]) for i in range(r)]
        x = np.pad(x, widths, mode="constant", constant_values=pad_value)
    span = tuple((k - 1) * d + 1 for k, d in zip(ks, dil))
    win = np.lib.stride_tricks.sliding_window_view(x, span, axis=tuple(range(2, 2 + r)))
    # [N, C, P1.., s1..]: stride on the positions, dilation inside the window
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
              + tuple(slice(None, None, d) for d in dil)]
    n, c = x.shape[:2]
    cg = c // group
    pos = win.shape[2:2 + r]
    win = win.reshape((n, group, cg) + pos + tuple(ks))
    # -> [group, N, P.., cg, k..]
    perm = (1, 0) + tuple(range(3, 3 + r)) + (2,) + tuple(range(3 + r, 3 + 2 * r))
    return win.transpose(perm).reshape(group, -1, cg * int(np.prod(ks)))


def gptq_round(w: np.ndarray, scale: np.ndarray, h: np.ndarray, damp: float = 0.01,
               act_order: bool = True, qmax: int = INT8_WEIGHT_QMAX) -> np.ndarray:
    """Round ``w`` [G, O, K] (G independent groups, O output channels of K columns) to integers in
    [-qmax, qmax] with per-channel ``scale`` [G, O], compensating each column's rounding error in the
    columns not yet rounded (OBQ/GPTQ) for the quadratic form ``h`` [G, K, K] (sum of x x^T).
    ``damp`` * the mean of h's diagonal is added to the diagonal; ``act_order`` rounds the columns of
    largest h[i, i] first. Returns int8 [G, O, K]."""
    w = np.array(w, np.float64)
    h = np.array(h, np.float64)
    g, o, k = w.shape
    s = np.asarray(scale, np.float64).reshape(g, o)
    diag = np.einsum("gii->gi", h)
    dead = diag <= 0
    idx = np.nonzero(dead)
    # an input that is always 0 on the samples: its column is rounded to nearest and passes no error
    # on (H stays block diagonal there); its weight is kept, new inputs may not be 0
    h[idx[0], idx[1], idx[1]] = 1.0
    mean = np.einsum("gii->gi", h).mean(axis=1)
    h[:, np.arange(k), np.arange(k)] += (damp * mean)[:, None]
    if act_order:
        perm = np.argsort(-np.einsum("gii->gi", h), axis=1, kind="stable")
    else:
        perm = np.broadcast_to(np.arange(k), (g, k))
    gi = np.arange(g)[:, None, None]
    h = h[gi, perm[:, :, None], perm[:, None, :]]
    w = np.take_along_axis(w, perm[:, None, :], axis=2)
    u = None
    for attempt in range(6):
        try:
            hinv = np.linalg.inv(h)
            u = np.swapaxes(np.linalg.cholesky(hinv), 1, 2)   # hinv = u^T u, u upper triangular
            break
        except np.linalg.LinAlgError:
            h[:, np.arange(k), np.arange(k)] += (damp * 10 ** (attempt + 1) * mean)[:, None]
    if u is None:
        q = np.clip(np.rint(w / s[:, :, None]), -qmax, qmax)
    else:
        q = np.empty_like(w)
        for i in range(k):
            col = w[:, :, i]
            qi = np.clip(np.rint(col / s), -qmax, qmax)
            q[:, :, i] = qi
            err = (col - qi * s) / u[:, i, i][:, None]
            if i + 1 < k:
                w[:, :, i + 1:] -= err[:, :, None] * u[:, None, i, i + 1:]
    out = np.empty_like(q)
    np.put_along_axis(out, perm[:, None, :], q, axis=2)
    return out.astype(np.int8)


def gptq_weight_rounding(qgraph: Graph, float_graph: Graph, feeds, max_samples: int | None = None,
                         damp: float = 0.01, target: str = "float", min_rows_per_column: float = 4.0,
                         act_order: bool = True, few_rows: str = "nearest") -> dict:
    """Re-round the int8 weights of every qconv / qdense of ``qgraph`` (in place, graph order) that
    stands for a float conv / dense / matmul of ``float_graph`` (same node name), on the calibration
    ``feeds`` (feed dicts of ``qgraph``'s inputs). See the module doc. Returns {node name: number of
    int8 weights changed} for the layers re-rounded (not those left at nearest rounding)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if few_rows not in ("nearest", "weights"):
        raise ValueError(f"few_rows must be 'nearest' or 'weights', got {few_rows!r}")
    from ..passes.quantize_int8 import run_node_by_node, take_samples
    samples = take_samples(feeds, max_samples)
    targets = _targets(qgraph, float_graph)
    if not samples or not targets:
        return {}
    # float side (only when aiming at the float output): the float network advanced node by node over
    # all samples just far enough to produce each target layer's input (memory: its live values only)
    fside = _FloatSide(float_graph, samples, [f.inputs[0] for f in targets.values()]) if target == "float" else None
    done: dict[str, int] = {}
    for node, envs, consts in run_node_by_node(qgraph, samples):
        if node.name in targets:
            fin = targets[node.name].inputs[0]
            changed = _round_layer(qgraph, node, targets[node.name], float_graph, consts,
                                   [env[node.inputs[0]] for env in envs],
                                   fside.take(fin) if fside is not None else [], damp, target,
                                   min_rows_per_column, act_order, few_rows)
            if changed is not None:
                done[node.name] = changed
    return done


class _FloatSide:
    """The float network on all samples, evaluated lazily in node order: ``take(name)`` runs nodes
    until ``name`` exists and returns its per-sample arrays. Values are dropped after their last
    use, except the requested ones, which are kept until taken."""

    def __init__(self, graph: Graph, samples: list, wanted: list):
        self.g = graph
        self.envs = [dict(s) for s in samples]
        self.consts = {v.name: v.const for v in graph.values.values() if v.const is not None}
        self.pos = 0
        self.pinned = _count(wanted)     # {name: times it will be taken}
        self.last_use: dict[str, int] = {}
        for i, n in enumerate(graph.nodes):
            for v in n.inputs:
                if v:
                    self.last_use[v] = i

    def take(self, name: str) -> list:
        while name not in self.envs[0] and name not in self.consts:
            if self.pos >= len(self.g.nodes):
                raise KeyError(f"{name} is not computed by the float graph")
            node = self.g.nodes[self.pos]
            opdef = get_op(node.op)
            for env in self.envs:
                args = [(env[v] if v in env else self.consts[v]) if v else None for v in node.inputs]
                for o, r in zip(node.outputs, opdef.reference(*args, **node.attrs)):
                    env[o] = np.asarray(r)
                for v in node.inputs:
                    if v and self.last_use.get(v) == self.pos and v not in self.pinned and v in env:
                        del env[v]
            self.pos += 1
        if name in self.consts:
            return [self.consts[name]] * len(self.envs)
        out = [env[name] for env in self.envs]
        self.pinned[name] -= 1
        if self.pinned[name] <= 0:
            del self.pinned[name]
            if self.last_use.get(name, -1) < self.pos:
                for env in self.envs:
                    env.pop(name, None)
        return out


def _count(names) -> dict:
    out: dict = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return out


def _one_blas_thread():
    """Many small products: BLAS threads cost more than they give (and the box may be shared)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _accumulate(node: Node, xqs: list, xfs: list, s_x: float, z_x: int, ks: tuple, h: np.ndarray,
                c: np.ndarray | None) -> int:
    """h += sum X_q X_q^T (and c += sum X_q X_f^T) over the samples; returns the number of rows.
    Not centered: bias correction removes a mean error afterwards, but only on average over the
    positions (the padded border rows of a conv see another mean); centering both sums made
    PP-OCR much worse (mean |dp| 0.055 instead of 0.016)."""
    rows = 0
    for j, xq in enumerate(xqs):
        p = _patches(node, (np.asarray(xq, np.float64) - z_x) * s_x, 0.0, ks)
        pt = np.swapaxes(p, 1, 2)
        h += pt @ p
        rows += p.shape[1]
        if c is not None:
            c += pt @ _patches(node, np.asarray(xfs[j], np.float64), 0.0, ks)
    return rows


def _round_layer(qgraph: Graph, node: Node, fnode: Node, float_graph: Graph, consts: dict, xqs: list,
                 xfs: list, damp: float, target: str, min_rows_per_column: float, act_order: bool,
                 few_rows: str = "nearest") -> int | None:
    x, wname, bname = node.inputs[:3]
    xv = qgraph.values[x]
    s_x, z_x = float(xv.qparams.scale[0]), int(xv.qparams.zero_point[0])
    wq = consts[wname]
    o = wq.shape[0]
    s_w = np.broadcast_to(np.asarray(qgraph.values[wname].qparams.scale, np.float64), (o,))
    wf = _float_weight(float_graph, fnode)
    if wf.shape != wq.shape:
        return None
    group = node.attrs.get("group", 1) if node.op == "qconv" else 1
    og = o // group
    kk = wq.size // o
    h = np.zeros((group, kk, kk))
    c = np.zeros((group, kk, kk)) if target == "float" else None
    with _one_blas_thread():
        rows = _accumulate(node, xqs, xfs, s_x, z_x, wq.shape[2:], h, c)
    if rows < min_rows_per_column * kk and few_rows == "nearest":
        return None
    w = wf.reshape(group, og, kk)
    if c is not None and rows >= min_rows_per_column * kk:
        # least-squares weights on the quantized input for the float output: V = W C^T H^-1
        # ridge towards W (not towards 0): min |X_q V - X_f W|^2 + lam |V - W|^2
        lam = damp * np.maximum(np.einsum("gii->gi", h).mean(axis=1), 1e-30)
        rhs = np.einsum("gok,glk->gol", w, c) + lam[:, None, None] * w      # W C^T + lam W: [g, og, kk]
        hd = h.copy()
        hd[:, np.arange(kk), np.arange(kk)] += lam[:, None]
        w = np.swapaxes(np.linalg.solve(hd, np.swapaxes(rhs, 1, 2)), 1, 2)
    new = gptq_round(w, s_w.reshape(group, og), h, damp=damp, act_order=act_order).reshape(wq.shape)
    b = consts[bname].astype(np.int64)
    axes = tuple(range(1, wq.ndim))
    new_b = b + z_x * (wq.astype(np.int64).sum(axis=axes) - new.astype(np.int64).sum(axis=axes))
    if kk * 255 * 128 + int(np.abs(new_b).max()) >= 2 ** 31:
        return None
    new_b = new_b.astype(np.int32)
    consts[wname], consts[bname] = new, new_b
    qgraph.values[wname] = replace(qgraph.values[wname], const=new)
    qgraph.values[bname] = replace(qgraph.values[bname], const=new_b)
    return int(np.count_nonzero(new != wq))


def apply_weight_rounding(qgraph: Graph, float_graph: Graph, feeds, samples: int = 64, **kw) -> Graph:
    """``gptq_weight_rounding`` on the first ``samples`` feeds, recorded in
    ``qgraph.meta["quantization"]["weight_rounding"]`` ({"method", "layers", "samples", "seconds"})."""
    t0 = time.perf_counter()
    kept = []
    for feed in feeds:
        if len(kept) >= samples:
            break
        kept.append(feed)
    done = gptq_weight_rounding(qgraph, float_graph, kept, **kw)
    qgraph.meta.setdefault("quantization", {})["weight_rounding"] = {
        "method": "gptq", "layers": len(done), "samples": len(kept),
        "changed_weights": int(sum(done.values())), "seconds": round(time.perf_counter() - t0, 3)}
    return qgraph


__all__ = ["gptq_round", "gptq_weight_rounding", "apply_weight_rounding", "TARGETS"]
