"""Calibration: the range (rmin, rmax) of every float activation of a graph, from sample data.

    cal = create_calibrator(CalibrationOptions(method="percentile", percentile=99.99))
    cal.collect(graph, feeds)            # may be called again with more data (streaming)
    ranges = cal.compute()               # {value name: (rmin, rmax)}
    # or in one call:  ranges = calibrate(graph, feeds, options)

The lifecycle is onnxruntime's (collect, then compute) but over the edgec IR: each feed dict
is run through the float graph with the numpy reference interpreter
(``edgec.reference.run_graph(..., keep_all=True)``), and every non-constant float value (the
graph inputs and every node output) updates a fixed-size statistic. Memory does not grow with
the number of samples: a calibrator holds, per value, a min and max (MinMax) or a histogram
of ``2 * num_bins`` int64 counts (Percentile, Entropy).

Histogram (``StreamingHistogram``)
- Covers [-H, H) with ``num_bins`` bins on each side of zero (bin width w = H / num_bins),
  where H is a power of two: the smallest 2^k > max|x| seen so far (at least 2^-32).
- When a larger |x| arrives, H doubles (as often as needed) and each pair of adjacent bins
  merges into one. Bin edges are multiples of w and 0 is always an edge, so merging is exact.
- A value x falls in bin floor(x / w) (computed exactly in float64; |x| < H always).
  Since floor(floor(y) / 2) = floor(y / 2) and H depends only on the largest |x| ever seen,
  the final histogram is the same whatever the order and batching of the data: one batch of
  100 samples and ten batches of 10 give identical counts.
- The exact min and max seen are kept too; a threshold never widens the range beyond them.

Methods (``CalibrationOptions.method``)
- ``minmax``: (min, max) over all samples.
- ``percentile``: ``percentile_mode="abs"``: the threshold t is the ``percentile``-th
  percentile of |x|, and the range is (max(min, -t), min(max, t)); ``"tails"``: rmin is the
  (100 - p)-th and rmax the p-th percentile of x itself. A percentile is read off the
  histogram as the upper edge of the first bin where the cumulative count reaches p% of the
  total (the lower edge for the low tail), so it is conservative by at most one bin.
- ``entropy`` (TensorRT's KL-divergence calibration): on the |x| histogram (B = num_bins bins),
  for every candidate i in [max(L, f + L), B] (L = ``entropy_levels``, 128 for int8; f = the
  first non-empty bin, so that at least L bins above it are kept: a tensor whose values all
  lie away from 0, e.g. a hard-sigmoid output in [0.34, 0.9], would otherwise be clipped at
  i = L into one bin, KL = 0, and its range collapse to (min, min)):
    P = the first i bins, with the counts of all bins >= i added to bin i - 1 (clipping);
    Q = the first i bins merged into L equal groups (group j covers bins
        floor(j*i/L) .. floor((j+1)*i/L) - 1), each group's total spread evenly over its
        bins that are non-zero in the histogram (zero bins stay zero);
    both normalized; Q gets eps = 1e-10 where P > 0 and Q = 0 (then renormalized);
    KL(P || Q) = sum over P > 0 of P * ln(P / Q).
  The threshold is t = i* x w for the i* of least KL (the smallest i on ties) and the range
  is (max(min, -t), min(max, t)). Candidates are taken only up to the last non-empty bin
  (if that is bin max(L, f + L) or lower, t is its upper edge); a candidate with no mass below bin i has
  an infinite divergence. Values that are exactly 0 are left out of the |x| histogram first: 0 is represented
  exactly at any threshold (it is the zero point), and the spike of zeros after a ReLU would
  otherwise dominate the divergence and pull the threshold far down. A histogram that is flat
  within every group, or sparse (isolated non-empty bins), is represented exactly by Q at
  every i, so its threshold keeps every value.
- ``mse``: the |x| threshold t that minimizes the expected squared error of 8-bit quantization,
  estimated on the histogram: for every candidate t = j * w (j = 1 .. the last non-empty |x|
  bin), the range is (max(min, -t), min(max, t)) widened to hold 0, the step is
  s = (hi - lo) / 255, and
    MSE(t) = [sum over bins outside [lo, hi] of n_k (c_k - nearest bound)^2
              + (number of non-zero values inside) * s^2 / 12] / total
  (c_k the bin centre; values exactly 0 are exact, the zero point). The clipping error of the
  tails and the rounding error of the body are balanced, per tensor; O(num_bins) per value with
  prefix sums. The smallest t on ties.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np

from ..errors import EdgecError
from ..ir import dtypes
from ..ir.graph import Graph
from ..reference import run_graph

METHODS = ("minmax", "percentile", "entropy", "mse")
_H_MIN_EXP = -32  # the histogram range starts at 2^-32 at least


class CalibrationError(EdgecError):
    """Calibration cannot proceed: bad options, no data, or non-finite activations."""


ProgressFn = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class CalibrationOptions:
    """How activation ranges are measured.

    method          "minmax", "percentile", "entropy" or "mse" (see the module docstring)
    percentile      for "percentile": the percentage of values kept, in [50, 100]
    percentile_mode for "percentile": "abs" (percentile of |x|, the same threshold on both sides)
                    or "tails" (the low and the high percentile of x separately)
    num_bins        histogram bins on each side of zero (even, >= 2 * entropy_levels for
                    "entropy"); memory per value is 2 * num_bins int64
    entropy_levels  for "entropy": the number of quantized levels on one side (128 for int8)
    progress_every  with no progress callback, print a line to stderr every this many samples
    quiet           print nothing
    """
    method: str = "minmax"
    percentile: float = 99.99
    percentile_mode: str = "abs"
    num_bins: int = 2048
    entropy_levels: int = 128
    progress_every: int = 100
    quiet: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise CalibrationError(f"unknown calibration method {self.method!r}; expected one of {', '.join(METHODS)}")
        if isinstance(self.percentile, bool) or not isinstance(self.percentile, (int, float)) \
                or not (50.0 <= float(self.percentile) <= 100.0):
            raise CalibrationError(f"percentile must be in [50, 100], got {self.percentile}")
        if self.percentile_mode not in ("abs", "tails"):
            raise CalibrationError(f"percentile_mode must be 'abs' or 'tails', got {self.percentile_mode!r}")
        if not (isinstance(self.num_bins, int) and self.num_bins >= 2 and self.num_bins % 2 == 0):
            raise CalibrationError(f"num_bins must be an even integer >= 2, got {self.num_bins!r}")
        if not (isinstance(self.entropy_levels, int) and self.entropy_levels >= 2):
            raise CalibrationError(f"entropy_levels must be an integer >= 2, got {self.entropy_levels!r}")
        if self.method == "entropy" and self.num_bins < 2 * self.entropy_levels:
            raise CalibrationError(f"entropy calibration needs num_bins >= 2 * entropy_levels "
                                   f"({2 * self.entropy_levels}), got {self.num_bins}")
        if not (isinstance(self.progress_every, int) and self.progress_every >= 1):
            raise CalibrationError(f"progress_every must be an integer >= 1, got {self.progress_every!r}")


# -- streaming histogram ----------------------------------------------------------------------

class StreamingHistogram:
    """Fixed-size histogram over [-H, H] (H a power of two) that doubles H as data grows.

    ``counts`` has 2 * num_bins entries: bin k covers [(k - num_bins) * w, (k - num_bins + 1) * w)
    with w = H / num_bins. See the module docstring for the merge rule.
    """

    def __init__(self, num_bins: int):
        if num_bins < 2 or num_bins % 2:
            raise ValueError("num_bins must be even and >= 2")
        self.num_bins = num_bins
        self.counts = np.zeros(2 * num_bins, np.int64)
        self.exp = _H_MIN_EXP  # H = 2^exp
        self.total = 0
        self.zeros = 0  # how many of the values were exactly 0 (they are also counted in a bin)
        self.min = math.inf
        self.max = -math.inf

    @property
    def H(self) -> float:
        return math.ldexp(1.0, self.exp)

    @property
    def bin_width(self) -> float:
        return self.H / self.num_bins

    def _double(self) -> None:
        """H -> 2H: bins (2i, 2i+1) merge into bin num_bins/2 + i."""
        B = self.num_bins
        merged = self.counts.reshape(B, 2).sum(axis=1)
        self.counts = np.zeros(2 * B, np.int64)
        self.counts[B // 2: B // 2 + B] = merged
        self.exp += 1

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x).ravel()
        if x.size == 0:
            return
        x = x.astype(np.float64)
        lo, hi = float(x.min()), float(x.max())
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        amax = max(-lo, hi)
        if amax > 0:
            need = math.frexp(amax)[1]  # 2^(need-1) <= amax < 2^need: every |x| < H = 2^need
            while self.exp < need:
                self._double()
        B = self.num_bins
        idx = np.floor(x * (B / self.H)).astype(np.int64) + B  # exact: power-of-two scaling, B < 2^29
        np.clip(idx, 0, 2 * B - 1, out=idx)  # a no-op (|x| < H), kept as a guard
        self.counts += np.bincount(idx, minlength=2 * B)
        self.total += x.size
        self.zeros += int(np.count_nonzero(x == 0))

    def abs_counts(self) -> np.ndarray:
        """The histogram of |x|: num_bins bins over [0, H] (bin j: [j*w, (j+1)*w))."""
        B = self.num_bins
        return self.counts[B:] + self.counts[:B][::-1]

    def abs_percentile(self, p: float) -> float:
        """Upper edge of the first |x| bin where the cumulative count reaches p% of the total."""
        c = np.cumsum(self.abs_counts())
        k = int(np.searchsorted(c, c[-1] * (p / 100.0), side="left"))
        return (min(k, self.num_bins - 1) + 1) * self.bin_width

    def percentile(self, p: float) -> float:
        """The p-th percentile of x: an upper bin edge for p >= 50, a lower bin edge below."""
        c = np.cumsum(self.counts)
        B = self.num_bins
        w = self.bin_width
        if p >= 50.0:
            k = int(np.searchsorted(c, c[-1] * (p / 100.0), side="left"))
            return (min(k, 2 * B - 1) + 1 - B) * w
        # low tail: the lower edge of the first bin where more than p% lie at or below
        k = int(np.searchsorted(c, c[-1] * (p / 100.0), side="right"))
        return (min(k, 2 * B - 1) - B) * w


def entropy_threshold(abs_counts: np.ndarray, bin_width: float, levels: int = 128) -> float:
    """TensorRT-style KL threshold over an |x| histogram (see the module docstring).

    Evaluated for blocks of candidates at once (``entropy_divergences``)."""
    hist = np.asarray(abs_counts, np.float64)
    nz = np.flatnonzero(hist)
    if nz.size == 0:
        return 0.0
    last = int(nz[-1]) + 1  # candidates beyond the last non-empty bin change nothing
    # at least ``levels`` bins above the first non-empty one: a histogram that sits away from 0
    # is never clipped into (nearly) one bin, where KL is 0 but every value becomes one value
    first = max(int(levels), int(nz[0]) + int(levels))
    if last <= first:
        return last * bin_width
    cands = np.arange(first, last + 1)
    kl = entropy_divergences(hist, cands, levels)
    return float(cands[int(np.argmin(kl))]) * bin_width  # argmin: the smallest i on ties


def entropy_divergences(hist: np.ndarray, cands: np.ndarray, levels: int, eps: float = 1e-10,
                        block: int = 32) -> np.ndarray:
    """KL(P_i || Q_i) for every candidate bin count i in ``cands`` (all >= levels, <= len(hist)).

    P_i: hist[:i] with the mass of hist[i:] added to bin i - 1, normalized (its sum is the total).
    Q_i: bin k < i belongs to group g = ceil((k + 1) * L / i) - 1 (the group j whose range
    floor(j*i/L) .. floor((j+1)*i/L) - 1 holds k); each group's total is spread evenly over its
    non-zero bins, normalized by sum(hist[:i]). Only bin i - 1 can have P > 0 = Q (when it is
    empty but clipped mass lands there): it gets eps and Q is renormalized by 1 + eps.
    """
    hist = np.asarray(hist, np.float64)
    L = int(levels)
    total = hist.sum()
    csum = np.concatenate([[0.0], np.cumsum(hist)])
    nzc = np.concatenate([[0], np.cumsum(hist > 0)])
    nzmask = hist > 0
    out = np.empty(len(cands))
    j = np.arange(L + 1)
    for b0 in range(0, len(cands), block):
        ii = np.asarray(cands[b0:b0 + block], np.int64)[:, None]  # [C, 1]
        W = int(ii.max())
        k = np.arange(W)[None, :]  # [1, W]
        inside = k < ii  # [C, W]
        edges = (j[None, :] * ii) // L  # [C, L + 1]
        sums = csum[edges[:, 1:]] - csum[edges[:, :-1]]
        cnt = nzc[edges[:, 1:]] - nzc[edges[:, :-1]]
        per_bin = np.divide(sums, cnt, out=np.zeros_like(sums), where=cnt > 0)
        g = np.minimum(((k + 1) * L + ii - 1) // ii - 1, L - 1)  # [C, W], clamped outside the range
        q = np.take_along_axis(per_bin, g, axis=1) * (nzmask[None, :W] & inside)
        empty = csum[ii[:, 0]] == 0  # no mass below bin i at all: Q_i undefined, never chosen
        q /= np.where(empty, 1.0, csum[ii[:, 0]])[:, None]  # sum of Q_i before smoothing = sum(hist[:i])
        p = np.where(inside, hist[None, :W], 0.0)
        last = (ii[:, 0] - 1)
        rows = np.arange(len(last))
        p[rows, last] += total - csum[ii[:, 0]]
        p /= total
        fix = (p[rows, last] > 0) & (q[rows, last] == 0)
        q[rows[fix], last[fix]] = eps
        q[fix] /= 1.0 + eps
        pos = p > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(pos, p * np.log(np.where(pos, p, 1.0) / np.where(pos, q, 1.0)), 0.0)
        out[b0:b0 + block] = np.where(empty, np.inf, terms.sum(axis=1))
    return out


# -- calibrators ---------------------------------------------------------------------------------

def calibration_values(graph: Graph) -> list[str]:
    """Names of the values calibration measures: float graph inputs and float node outputs."""
    names = [n for n in graph.inputs if dtypes.is_float(graph.values[n].dtype)]
    for node in graph.nodes:
        for o in node.outputs:
            v = graph.values.get(o)
            if o and v is not None and v.const is None and dtypes.is_float(v.dtype) and o not in names:
                names.append(o)
    return names


class Calibrator:
    """Base: ``collect`` streams samples through the float graph, ``compute`` gives the ranges.

    Subclasses implement ``_observe(name, array)`` (update the statistic of one value) and
    ``_range(name) -> (rmin, rmax)``. ``observe`` can be called directly with arrays (tests,
    or activations computed elsewhere).
    """

    def __init__(self, options: CalibrationOptions | None = None):
        self.options = options or CalibrationOptions()
        self.num_samples = 0
        self._names: list[str] = []

    # -- public lifecycle --
    def collect(self, graph: Graph, batches: Iterable[Mapping[str, np.ndarray]],
                progress: ProgressFn | None = None) -> int:
        """Run every feed dict of ``batches`` through ``graph`` and update the statistics.

        Returns the number of samples (feed dicts) seen in this call. ``progress(done, total)``
        is called after each sample (total from ``len(batches)`` or ``batches.total`` when
        known, else None); without it a line goes to stderr every ``options.progress_every``
        samples and at the end, unless ``options.quiet``.
        """
        names = calibration_values(graph)
        for n in names:
            if n not in self._names:
                self._names.append(n)
        total = getattr(batches, "total", None)
        if total is None and hasattr(batches, "__len__"):
            total = len(batches)  # type: ignore[arg-type]
        seen = 0
        t0 = time.monotonic()
        for feeds in batches:
            env = run_graph(graph, feeds, keep_all=True)
            for n in names:
                self.observe(n, env[n])
            seen += 1
            self.num_samples += 1
            if progress is not None:
                progress(seen, total)
            elif not self.options.quiet and seen % self.options.progress_every == 0:
                self._print_progress(seen, total, t0)
        if progress is None and not self.options.quiet and seen % self.options.progress_every != 0:
            self._print_progress(seen, total, t0)
        return seen

    def observe(self, name: str, array: np.ndarray) -> None:
        a = np.asarray(array)
        if a.size and not np.all(np.isfinite(a)):
            raise CalibrationError(f"value {name!r} has NaN or infinite entries on calibration sample "
                                   f"{self.num_samples}; check the data or the model")
        if name not in self._names:
            self._names.append(name)
        self._observe(name, a)

    def compute(self) -> dict[str, tuple[float, float]]:
        """{value name: (rmin, rmax)} with rmin <= rmax (not yet widened to hold 0)."""
        if self.num_samples == 0 and not self._has_data():
            raise CalibrationError("no calibration samples were collected")
        out = {}
        for n in self._names:
            if self._seen(n):
                lo, hi = self._range(n)
                out[n] = (float(lo), float(hi))
        return out

    # -- to implement --
    def _observe(self, name: str, a: np.ndarray) -> None:
        raise NotImplementedError

    def _range(self, name: str) -> tuple[float, float]:
        raise NotImplementedError

    def _seen(self, name: str) -> bool:
        raise NotImplementedError

    def _has_data(self) -> bool:
        return any(self._seen(n) for n in self._names)

    def _print_progress(self, seen: int, total: int | None, t0: float) -> None:
        dt = time.monotonic() - t0
        of = f"/{total}" if total is not None else ""
        print(f"calibration ({self.options.method}): {seen}{of} samples, {dt:.1f}s", file=sys.stderr, flush=True)


class MinMaxCalibrator(Calibrator):
    """The running min and max of every value."""

    def __init__(self, options: CalibrationOptions | None = None):
        super().__init__(options or CalibrationOptions(method="minmax"))
        self._mm: dict[str, list[float]] = {}

    def _observe(self, name, a):
        if a.size == 0:
            return
        lo, hi = float(a.min()), float(a.max())
        cur = self._mm.get(name)
        self._mm[name] = [lo, hi] if cur is None else [min(cur[0], lo), max(cur[1], hi)]

    def _seen(self, name):
        return name in self._mm

    def _range(self, name):
        return tuple(self._mm[name])


class _HistogramCalibrator(Calibrator):
    def __init__(self, options: CalibrationOptions):
        super().__init__(options)
        self.histograms: dict[str, StreamingHistogram] = {}

    def _observe(self, name, a):
        h = self.histograms.get(name)
        if h is None:
            h = self.histograms[name] = StreamingHistogram(self.options.num_bins)
        h.add(a)

    def _seen(self, name):
        h = self.histograms.get(name)
        return h is not None and h.total > 0

    def _clip(self, h: StreamingHistogram, t: float) -> tuple[float, float]:
        return max(h.min, -t), min(h.max, t)


class PercentileCalibrator(_HistogramCalibrator):
    """Clip the rarest values: a percentile of |x| ("abs") or of each tail ("tails")."""

    def __init__(self, options: CalibrationOptions | None = None):
        super().__init__(options or CalibrationOptions(method="percentile"))

    def _range(self, name):
        h = self.histograms[name]
        p = float(self.options.percentile)
        if self.options.percentile_mode == "abs":
            return self._clip(h, h.abs_percentile(p))
        lo = max(h.min, h.percentile(100.0 - p))
        hi = min(h.max, h.percentile(p))
        return min(lo, hi), max(lo, hi)


class EntropyCalibrator(_HistogramCalibrator):
    """The |x| threshold of least KL divergence between the float and the quantized distribution."""

    def __init__(self, options: CalibrationOptions | None = None):
        super().__init__(options or CalibrationOptions(method="entropy"))

    def _range(self, name):
        h = self.histograms[name]
        hist = h.abs_counts()
        hist[0] -= h.zeros  # exact zeros are represented exactly whatever the threshold
        t = entropy_threshold(hist, h.bin_width, self.options.entropy_levels)
        return self._clip(h, t)


def mse_threshold(counts: np.ndarray, bin_width: float, vmin: float, vmax: float, zeros: int = 0,
                  steps: int = 255) -> float:
    """The |x| threshold of least expected 8-bit quantization MSE over a signed histogram
    (``StreamingHistogram.counts``: 2B bins, bin k covers [(k - B) w, (k - B + 1) w)); see the
    module docstring. ``zeros`` values exactly 0 carry no rounding error."""
    n = np.asarray(counts, np.float64)
    B = n.size // 2
    w = float(bin_width)
    total = n.sum()
    if total == 0:
        return 0.0
    amax = max(-float(vmin), float(vmax), 0.0)
    jmax = max(1, min(B, int(math.ceil(amax / w))))
    c = (np.arange(2 * B) - B + 0.5) * w
    t = np.arange(1, jmax + 1) * w  # candidates
    hi = np.maximum(np.minimum(float(vmax), t), 0.0)
    lo = np.minimum(np.maximum(float(vmin), -t), 0.0)
    # prefix sums of n, n c, n c^2 (index i: bins < i)
    S0 = np.concatenate([[0.0], np.cumsum(n)])
    S1 = np.concatenate([[0.0], np.cumsum(n * c)])
    S2 = np.concatenate([[0.0], np.cumsum(n * c * c)])
    # bins whose centre is above hi: k >= khi; below lo: k < klo
    khi = np.clip(np.floor(hi / w + B - 0.5).astype(np.int64) + 1, 0, 2 * B)
    klo = np.clip(np.ceil(lo / w + B - 0.5).astype(np.int64), 0, 2 * B)
    up0, up1, up2 = S0[-1] - S0[khi], S1[-1] - S1[khi], S2[-1] - S2[khi]
    dn0, dn1, dn2 = S0[klo], S1[klo], S2[klo]
    clip_err = (up2 - 2 * hi * up1 + hi * hi * up0) + (dn2 - 2 * lo * dn1 + lo * lo * dn0)
    inside = np.maximum(total - up0 - dn0 - zeros, 0.0)
    step = (hi - lo) / steps
    mse = (np.maximum(clip_err, 0.0) + inside * step * step / 12.0) / total
    return float(t[int(np.argmin(mse))])


class MSECalibrator(_HistogramCalibrator):
    """The |x| threshold of least expected quantization MSE (clipping vs rounding error)."""

    def __init__(self, options: CalibrationOptions | None = None):
        super().__init__(options or CalibrationOptions(method="mse"))

    def _range(self, name):
        h = self.histograms[name]
        t = mse_threshold(h.counts, h.bin_width, h.min, h.max, h.zeros)
        return self._clip(h, t)


_CLASSES = {"minmax": MinMaxCalibrator, "percentile": PercentileCalibrator, "entropy": EntropyCalibrator,
            "mse": MSECalibrator}


def create_calibrator(options: CalibrationOptions | None = None) -> Calibrator:
    options = options or CalibrationOptions()
    return _CLASSES[options.method](options)


def calibrate(graph: Graph, batches: Iterable[Mapping[str, np.ndarray]], options: CalibrationOptions | None = None,
              progress: ProgressFn | None = None) -> dict[str, tuple[float, float]]:
    """One call: create the calibrator for ``options``, collect ``batches``, compute the ranges."""
    cal = create_calibrator(options)
    cal.collect(graph, batches, progress=progress)
    return cal.compute()


__all__ = ["CalibrationOptions", "CalibrationError", "Calibrator", "MinMaxCalibrator", "PercentileCalibrator",
           "EntropyCalibrator", "MSECalibrator", "StreamingHistogram", "entropy_threshold", "mse_threshold", "entropy_divergences", "create_calibrator", "calibrate",
           "calibration_values", "METHODS"]
