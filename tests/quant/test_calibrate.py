"""Calibration: histogram mechanics, known-answer distributions, streaming equivalence, fixed
memory, and a real graph (the bundled SMS spam MLP) run through the reference interpreter."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.errors import EdgecError
from edgec.quant.calibrate import (CalibrationError, CalibrationOptions, EntropyCalibrator, MinMaxCalibrator,
                                   PercentileCalibrator, StreamingHistogram, calibrate, calibration_values,
                                   create_calibrator, entropy_threshold)

MODEL = "tests/data/models/sms_spam_mlp.onnx"


def _ranges(method, x, **kw):
    cal = create_calibrator(CalibrationOptions(method=method, quiet=True, **kw))
    cal.observe("x", x)
    return cal.compute()["x"]


# -- histogram --------------------------------------------------------------------------------

def test_histogram_counts_and_growth():
    h = StreamingHistogram(8)
    h.add(np.float32([0.1, -0.1, 0.0]))
    assert h.H == 0.125 and h.total == 3 and h.counts.sum() == 3
    # bins of width 1/64: 0.1 -> bin 8 + 6, -0.1 -> bin 8 - 7, 0 -> bin 8
    assert h.counts[14] == 1 and h.counts[1] == 1 and h.counts[8] == 1
    h.add(np.float32([3.0]))  # H grows to 4 by five doublings, merging pairs each time
    assert h.H == 4.0 and h.counts.sum() == 4 and h.counts.shape == (16,)
    direct = StreamingHistogram(8)
    direct.add(np.float32([0.1, -0.1, 0.0, 3.0]))
    np.testing.assert_array_equal(h.counts, direct.counts)
    assert (h.min, h.max) == (np.float32(-0.1), 3.0)
    np.testing.assert_array_equal(h.abs_counts(), h.counts[8:] + h.counts[:8][::-1])
    # a power of two stays strictly inside [-H, H)
    p = StreamingHistogram(8)
    p.add(np.float32([-2.0, 2.0]))
    assert p.H == 4.0 and p.counts[4] == 1 and p.counts[12] == 1


def test_streaming_equivalence_exact():
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((10, 7)).astype(np.float32) * (1 + 3 * (k == 7)) for k in range(10)]
    one = StreamingHistogram(256)
    one.add(np.concatenate(data))
    ten = StreamingHistogram(256)
    for d in data:
        ten.add(d)
    rev = StreamingHistogram(256)
    for d in reversed(data):
        rev.add(d)
    np.testing.assert_array_equal(one.counts, ten.counts)
    np.testing.assert_array_equal(one.counts, rev.counts)
    for method in ("minmax", "percentile", "entropy"):
        a = create_calibrator(CalibrationOptions(method=method, quiet=True))
        b = create_calibrator(CalibrationOptions(method=method, quiet=True))
        a.observe("x", np.concatenate(data))
        for d in data:
            b.observe("x", d)
        assert a.compute() == b.compute()


def test_memory_does_not_grow():
    rng = np.random.default_rng(1)
    cal = PercentileCalibrator(CalibrationOptions(method="percentile", num_bins=512, quiet=True))
    for k in range(200):
        cal.observe("x", rng.standard_normal(1000) * (1 + k / 10))
    h = cal.histograms["x"]
    assert h.counts.shape == (1024,) and h.total == 200_000 and h.counts.sum() == 200_000


# -- known answers -----------------------------------------------------------------------------

def test_minmax_exact():
    x = np.float32([-3.5, 0.25, 7.0, 1.0])
    assert _ranges("minmax", x) == (-3.5, 7.0)


def test_uniform_known_answers():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, 200_000).astype(np.float32)
    lo, hi = _ranges("percentile", x, percentile=99.0)
    assert abs(hi - 0.99) < 2 / 2048 + 5e-3 and lo == -hi  # |x| is uniform on [0, 1]
    lo, hi = _ranges("percentile", x, percentile=99.0, percentile_mode="tails")
    assert abs(hi - 0.98) < 5e-3 and abs(lo + 0.98) < 5e-3
    # entropy: clipping a uniform distribution only hurts, the threshold is (near) the max
    lo, hi = _ranges("entropy", x)
    assert hi > 0.97 and lo < -0.97


def test_gaussian_with_outliers():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(100_000).astype(np.float32)
    x[:5] = [60, -55, 70, 58, 64]
    mm = _ranges("minmax", x)
    assert mm == (-55.0, 70.0)
    lo, hi = _ranges("percentile", x, percentile=99.99)
    assert 3.0 < hi < 5.5 and -5.5 < lo < -3.0  # the 0.005% outliers are clipped
    lo, hi = _ranges("entropy", x)
    assert 2.0 < hi < 10.0 and -10.0 < lo < -2.0  # well below the max
    assert hi == -lo  # one |x| threshold, inside the measured range on both sides


def test_percentile_of_relu_output_keeps_zero_floor():
    rng = np.random.default_rng(4)
    x = np.maximum(rng.standard_normal(50_000), 0).astype(np.float32)
    for method in ("percentile", "entropy"):
        lo, hi = _ranges(method, x)
        assert lo == 0.0 and 2.0 < hi <= x.max()
    lo, hi = _ranges("percentile", x, percentile_mode="tails")
    assert lo == 0.0 and hi > 2.0


def test_entropy_keeps_values_away_from_zero():
    """A tensor whose values all lie away from 0 (a hard-sigmoid output in [0.34, 0.9], the PP-OCR
    SE gates) kept its range; before the fix the smallest candidate (128 bins, all the mass clipped
    into one bin, KL = 0) collapsed it to (0.345, 0.345)."""
    rng = np.random.default_rng(7)
    x = np.clip(rng.normal(0.6, 0.08, 50_000), 0.34, 0.9).astype(np.float32)
    lo, hi = _ranges("entropy", x)
    assert lo == np.float32(x.min())
    assert hi >= np.quantile(x, 0.999) and hi <= x.max()
    # a shifted, wide body: the threshold lies above at least 128 occupied bins
    y = (5.0 + rng.uniform(0, 1, 20_000)).astype(np.float32)
    lo, hi = _ranges("entropy", y)
    assert lo == np.float32(y.min()) and hi > 5.9
    # direct: a histogram that starts at bin 700 gets a threshold of at least 700 + 128 bins
    hist = np.zeros(2048)
    hist[700:900] = 100.0
    hist[1500] = 1.0
    assert entropy_threshold(hist, 1.0, 128) >= 828


def test_mse_threshold_balances_clipping_and_rounding():
    from edgec.quant.calibrate import mse_threshold
    rng = np.random.default_rng(8)
    # uniform: any clipping costs more than it saves, the threshold is (near) the max
    x = rng.uniform(-1, 1, 100_000).astype(np.float32)
    lo, hi = _ranges("mse", x)
    assert hi > 0.97 and lo < -0.97
    # a gaussian body with 5 far outliers in 100 000: clipping them (5 * 56^2 / 1e5 = 0.16) costs
    # more than the coarser step (0.47^2 / 12 = 0.018): MSE keeps them (unlike percentile)
    g = rng.standard_normal(100_000).astype(np.float32)
    g[:5] = [60, -55, 70, 58, 64]
    lo, hi = _ranges("mse", g)
    assert hi > 55.0 and lo == np.float32(-55.0)
    # laplace(1), 200 000 samples: clipped below the max (the 8-bit optimum is near 10 b)
    lap = rng.laplace(size=200_000).astype(np.float32)
    lo, hi = _ranges("mse", lap)
    assert 6.0 < hi < 0.95 * float(np.abs(lap).max()) and lo == -hi
    # one-sided data away from 0 keeps its bulk (no collapse as entropy had)
    s = np.clip(rng.normal(0.6, 0.08, 50_000), 0.34, 0.9).astype(np.float32)
    lo, hi = _ranges("mse", s)
    assert lo == np.float32(s.min()) and hi > 0.8
    # the histogram estimate against a brute-force MSE of real 8-bit quantization
    g = lap
    h = StreamingHistogram(2048)
    h.add(g)
    t = mse_threshold(h.counts, h.bin_width, h.min, h.max, h.zeros)

    def real_mse(th):
        a, b = max(float(g.min()), -th), min(float(g.max()), th)
        step = (b - a) / 255
        q = np.clip(np.rint((g - a) / step), 0, 255) * step + a
        return float(((q - g) ** 2).mean())
    cands = np.linspace(2.0, float(np.abs(g).max()), 300)
    best = cands[int(np.argmin([real_mse(c) for c in cands]))]
    assert real_mse(t) <= 1.1 * real_mse(best)


def test_entropy_threshold_direct():
    k = np.arange(1024)
    hist = np.round(1e6 * np.exp(-0.5 * (k / 60.0) ** 2))  # a gaussian body, non-empty up to ~k=330
    hist[1000] = 1.0  # a lone outlier
    t = entropy_threshold(hist, 1.0, 128)
    assert 150 <= t < 400
    sparse = np.zeros(512)
    sparse[:100] = 1000.0
    sparse[400] = 1.0  # a flat body is represented exactly at any i: everything is kept
    assert entropy_threshold(sparse, 1.0, 128) == 401.0
    assert entropy_threshold(np.zeros(256), 1.0) == 0.0
    small = np.zeros(256)
    small[:50] = 1
    assert entropy_threshold(small, 0.5) == 25.0  # fewer bins than levels: keep everything


def test_constant_zero_tensor():
    for method in ("minmax", "percentile", "entropy"):
        assert _ranges(method, np.zeros(100, np.float32)) == (0.0, 0.0)


def test_options_validation():
    for kw in ({"method": "kl"}, {"percentile": 30}, {"percentile_mode": "both"}, {"num_bins": 7},
               {"method": "entropy", "num_bins": 128}, {"progress_every": 0}, {"percentile": "99"}):
        with pytest.raises(CalibrationError):
            CalibrationOptions(**kw)
    with pytest.raises(Exception):
        CalibrationOptions().method = "entropy"  # frozen
    assert issubclass(CalibrationError, EdgecError)


def test_errors():
    cal = MinMaxCalibrator()
    with pytest.raises(CalibrationError, match="no calibration samples"):
        cal.compute()
    with pytest.raises(CalibrationError, match="'y'"):
        cal.observe("y", np.float32([1.0, np.nan]))


# -- a real graph --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spam_graph(repo_root):
    from edgec.frontend.onnx_import import import_onnx
    from edgec.passes import run_pipeline
    return run_pipeline(import_onnx(repo_root / MODEL, input_shapes={"features": (1, 1024)}))


def _featurized(repo_root, n):
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_example_model", repo_root / "tools/make_example_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    texts = ["Free entry in 2 a wkly comp to win FA Cup final tkts, text FA to 87121",
             "Ok lar... Joking wif u oni...", "Are we meeting for lunch tomorrow?",
             "URGENT! You have won a 1 week FREE membership in our 100,000 prize Jackpot! Txt CLAIM",
             "I'll call you later, in a meeting now", "WINNER!! claim your prize reward now, call 09061701461"]
    return [{"features": mod.featurize(t)[None, :]} for t in (texts * n)[:n]]


def test_calibrate_real_graph(spam_graph, repo_root):
    from edgec.reference import run_graph
    feeds = _featurized(repo_root, 12)
    names = calibration_values(spam_graph)
    assert names == ["features", "fc1", "relu1", "fc2", "probs"]
    seen = []
    ranges = calibrate(spam_graph, feeds, CalibrationOptions(method="minmax"), progress=lambda k, t: seen.append((k, t)))
    assert seen[-1] == (12, 12) and len(seen) == 12
    assert set(ranges) == set(names)
    envs = [run_graph(spam_graph, f, keep_all=True) for f in feeds]
    for n in names:
        allv = np.concatenate([e[n].ravel() for e in envs])
        assert ranges[n] == (float(allv.min()), float(allv.max()))
    assert ranges["relu1"][0] == 0.0 and 0.0 <= ranges["probs"][0] and ranges["probs"][1] <= 1.0
    # histogram methods stay inside the min/max range
    for method in ("percentile", "entropy"):
        r = calibrate(spam_graph, feeds, CalibrationOptions(method=method, quiet=True))
        for n in names:
            assert ranges[n][0] <= r[n][0] <= r[n][1] <= ranges[n][1]


def test_collect_streams_and_reports_progress(spam_graph, capsys):
    rng = np.random.default_rng(5)
    feeds = [{"features": np.abs(rng.standard_normal((1, 1024))).astype(np.float32) * 0.05} for _ in range(10)]
    a = EntropyCalibrator(CalibrationOptions(method="entropy", progress_every=4))
    assert a.collect(spam_graph, iter(feeds[:5])) == 5  # an iterator: no total known
    assert a.collect(spam_graph, feeds[5:]) == 5
    err = capsys.readouterr().err
    assert "calibration (entropy): 4 samples" in err and "5/5 samples" in err
    b = EntropyCalibrator(CalibrationOptions(method="entropy", quiet=True))
    b.collect(spam_graph, feeds)
    assert capsys.readouterr().err == ""
    assert a.num_samples == b.num_samples == 10
    assert a.compute() == b.compute()


def test_collect_rejects_bad_feeds(spam_graph):
    from edgec.errors import RuntimeInputError
    cal = MinMaxCalibrator(CalibrationOptions(quiet=True))
    with pytest.raises(RuntimeInputError):
        cal.collect(spam_graph, [{"features": np.zeros((2, 1024), np.float32)}])


def test_integer_inputs_are_not_calibrated(tmp_path):
    """A graph with an int64 input (token ids -> embedding): only float values get ranges;
    the data comes from a folder of .npy files."""
    from onnx import TensorProto, helper, numpy_helper

    from edgec.frontend.onnx_import import import_onnx
    from edgec.passes import run_pipeline
    from edgec.quant.data import load_calibration
    emb = np.arange(30, dtype=np.float32).reshape(10, 3) - 12.0
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"]), helper.make_node("Relu", ["e"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3])],
                          [numpy_helper.from_array(emb, "emb")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    graph = run_pipeline(import_onnx(model))
    names = calibration_values(graph)
    assert "ids" not in names and len(names) == 2
    d = tmp_path / "calib"
    d.mkdir()
    np.save(d / "ids.npy", np.array([[0, 1, 2, 3], [4, 5, 6, 9]], np.int64)[:, None, :])  # 2 samples [1, 4]
    ranges = calibrate(graph, load_calibration(d, graph), CalibrationOptions(quiet=True))
    assert set(ranges) == set(names)
    gathered = [n for n in names if n != graph.outputs[0]][0]
    assert ranges[gathered] == (-12.0, 17.0)  # rows 0..6 and 9 of emb
    assert ranges[graph.outputs[0]] == (0.0, 17.0)


def _kl_loop(hist, i, L, eps=1e-10):
    """Straightforward per-candidate KL, written from the docstring (the oracle of the vectorized one)."""
    hist = np.asarray(hist, np.float64)
    p = hist[:i].copy()
    p[i - 1] += hist[i:].sum()
    q = np.zeros(i)
    for j in range(L):
        a, b = (j * i) // L, ((j + 1) * i) // L
        seg = hist[a:b]
        n = np.count_nonzero(seg)
        if n:
            q[a:b] = np.where(seg > 0, seg.sum() / n, 0.0)
    if q.sum() == 0:
        return np.inf
    p, q = p / p.sum(), q / q.sum()
    q = np.where((p > 0) & (q == 0), eps, q)
    q /= q.sum()
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def test_entropy_divergences_match_loop():
    from edgec.quant.calibrate import entropy_divergences
    rng = np.random.default_rng(9)
    for trial in range(6):
        n = int(rng.integers(200, 700))
        hist = np.round(rng.exponential(50, n) * (rng.random(n) < 0.7))
        if trial == 1:
            hist[: n // 2] = 0  # no mass below many candidates: their divergence is infinite
        if trial == 2:
            hist[n - 1] = 3
            hist[n - 30: n - 1] = 0  # isolated outlier after a gap: P > 0 = Q at bin i - 1
        L = int(rng.choice([16, 64, 128]))
        cands = np.arange(L, n + 1)
        got = entropy_divergences(hist, cands, L, block=int(rng.integers(1, 100)))
        want = np.array([_kl_loop(hist, i, L) for i in cands])
        assert np.array_equal(np.isinf(got), np.isinf(want))
        f = np.isfinite(want)
        np.testing.assert_allclose(got[f], want[f], rtol=1e-9, atol=1e-12)


def test_minmax_agrees_with_onnxruntime_calibrator(spam_graph, repo_root, tmp_path):
    """onnxruntime's MinMaxCalibrater on the ONNX model and ours on the IR: the same ranges for
    the values both know by name."""
    pytest.importorskip("onnxruntime")
    from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator as ort_create_calibrator
    rng = np.random.default_rng(10)
    feeds = [{"features": (np.abs(rng.standard_normal((1, 1024))) * 0.05).astype(np.float32)} for _ in range(10)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    cal = ort_create_calibrator(str(repo_root / MODEL), [], augmented_model_path=str(tmp_path / "aug.onnx"),
                                calibrate_method=CalibrationMethod.MinMax)
    cal.collect_data(Reader())
    theirs = {k: (float(v.range_value[0][0]), float(v.range_value[1][0])) for k, v in cal.compute_data().data.items()}
    ours = calibrate(spam_graph, feeds, CalibrationOptions(quiet=True))
    common = set(theirs) & set(ours)
    assert {"features", "fc1", "relu1", "probs"} <= common
    assert ours["features"] == theirs["features"]  # the data itself: bit-exact
    for n in common:  # computed values: the two float implementations agree to rounding
        assert ours[n] == pytest.approx(theirs[n], rel=1e-5, abs=1e-7), n
