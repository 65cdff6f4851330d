"""Quantization arithmetic: scale/zero point, QuantizeLinear/DequantizeLinear (vs onnxruntime),
per-channel weights, int32 bias, and integer-only requantization (vs exact rational arithmetic)."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from edgec.errors import EdgecError
from edgec.quant.qmath import (QuantizationError, compute_scale_zp, dequantize, multiplier_value, quantize,
                               quantize_bias, quantize_multiplier, quantize_weights_per_channel, requantize)


# -- compute_scale_zp ---------------------------------------------------------------------------

@pytest.mark.parametrize("rmin,rmax,qmin,qmax,sym", [
    (-1.0, 3.0, 0, 255, False), (0.0, 6.0, 0, 255, False), (-2.5, -0.5, 0, 255, False),
    (0.3, 7.0, -128, 127, False), (-1.0, 3.0, -128, 127, True), (-5.0, 0.1, -127, 127, True),
    (-1e-3, 2e-3, 0, 255, False), (-1.0, 3.0, 0, 255, True)])
def test_scale_zp_invariants(rmin, rmax, qmin, qmax, sym):
    s, z = compute_scale_zp(rmin, rmax, qmin, qmax, sym)
    assert isinstance(s, np.float32) and s > 0 and isinstance(z, int)
    assert qmin <= z <= qmax
    lo, hi = min(rmin, 0.0), max(rmax, 0.0)
    if sym:
        a = max(-lo, hi)
        lo, hi = -a, a
        assert z == (qmin + qmax + 1) // 2
    # 0 is exact; the ends of the range map within half a step of the integer ends
    assert float(s) * (z - z) == 0.0
    assert math.isclose(float(s), (hi - lo) / (qmax - qmin), rel_tol=1e-6)
    q = quantize(np.array([lo, hi, 0.0], np.float32), s, z, "uint8" if qmin >= 0 else "int8")
    assert int(q[2]) == z
    assert abs(int(q[0]) - qmin) <= 1 and abs(int(q[1]) - qmax) <= 1


def test_scale_zp_known_values():
    s, z = compute_scale_zp(-1.0, 3.0, 0, 255)
    assert s == np.float32(4.0 / 255) and z == 64  # round(255/4) = round(63.75)
    assert compute_scale_zp(0.0, 0.0, 0, 255) == (np.float32(1.0), 0)
    assert compute_scale_zp(0.0, 0.0, 0, 255, True) == (np.float32(1.0), 128)
    assert compute_scale_zp(0.5, 0.5, -128, 127) == (np.float32(0.5 / 255), -128)  # widened to hold 0
    assert compute_scale_zp(0.0, 1e-44, 0, 255) == (np.float32(1.0), 0)  # below float32 resolution


@pytest.mark.parametrize("args", [(float("nan"), 1.0, 0, 255), (0.0, float("inf"), 0, 255), (2.0, 1.0, 0, 255),
                                  (0.0, 1.0, 5, 5), (-3e38, 3e38, 0, 1)])
def test_scale_zp_errors(args):
    with pytest.raises(QuantizationError):
        compute_scale_zp(*args)
    assert issubclass(QuantizationError, EdgecError)


# -- quantize / dequantize vs onnxruntime ---------------------------------------------------------

def _ort_one_node(op, x, scale, zp, axis=None):
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper
    inits = [numpy_helper.from_array(np.asarray(scale, np.float32), "s"), numpy_helper.from_array(np.asarray(zp), "z")]
    attrs = {} if axis is None else {"axis": axis}
    node = helper.make_node(op, ["x", "s", "z"], ["y"], **attrs)
    xin = helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype), list(x.shape))
    out_dt = np.float32 if op == "DequantizeLinear" else np.asarray(zp).dtype
    yout = helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(np.dtype(out_dt)), list(x.shape))
    g = helper.make_graph([node], "g", [xin], [yout], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("dtype,zp", [("uint8", 128), ("uint8", 3), ("int8", 0), ("int8", -7)])
def test_quantize_matches_onnxruntime(dtype, zp):
    rng = np.random.default_rng(0)
    scale = np.float32(0.0371)
    x = (rng.standard_normal(4000) * 3).astype(np.float32)
    ties = ((np.arange(-300, 300) + 0.5) * np.float32(0.25)).astype(np.float32)  # exact .5 ties
    x = np.concatenate([x, ties, np.float32([0, 1e9, -1e9, 1e-30])])
    for s in (scale, np.float32(0.25)):
        got = quantize(x, s, zp, dtype)
        want = _ort_one_node("QuantizeLinear", x, s, np.array(zp, dtype=dtype))
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    # ties go to even
    assert quantize(np.float32([0.5, 1.5, 2.5, -0.5, -1.5]), 1.0, 0, "int8").tolist() == [0, 2, 2, 0, -2]


def test_quantize_per_axis_matches_onnxruntime():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    s = np.float32([0.01, 0.02, 0.05, 0.1, 0.007])
    z = np.array([0, 10, 128, 255, 40], np.uint8)
    np.testing.assert_array_equal(quantize(x, s, z, "uint8", axis=1), _ort_one_node("QuantizeLinear", x, s, z, axis=1))
    q = quantize(x, s, z, "uint8", axis=1)
    np.testing.assert_array_equal(dequantize(q, s, z, axis=1), _ort_one_node("DequantizeLinear", q, s, z, axis=1))


@pytest.mark.parametrize("dtype,zp", [("uint8", 131), ("int8", -3)])
def test_dequantize_matches_onnxruntime(dtype, zp):
    q = np.arange(np.iinfo(dtype).min, np.iinfo(dtype).max + 1).astype(dtype)
    s = np.float32(0.0123)
    got = dequantize(q, s, zp)
    want = _ort_one_node("DequantizeLinear", q, s, np.array(zp, dtype=dtype))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_quantize_errors():
    with pytest.raises(QuantizationError):
        quantize(np.ones(3), 0.0, 0, "int8")
    with pytest.raises(QuantizationError):
        quantize(np.ones(3), 1.0, 0, "float32")
    with pytest.raises(QuantizationError):
        quantize(np.ones((2, 3)), [1.0, 2.0], 0, "int8")  # per-axis scale without axis
    with pytest.raises(QuantizationError):
        dequantize(np.ones(3, np.float32), 1.0, 0)


# -- weights and bias -------------------------------------------------------------------------

def test_weights_per_channel():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * np.float32([10 ** -k for k in range(8)])[:, None, None, None]
    w[5] = 0.0
    q, s = quantize_weights_per_channel(w, axis=0)
    assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (8,)
    assert q.min() >= -127 and q.max() <= 127
    for c in range(8):
        if c == 5:
            assert s[c] == 1.0 and not q[c].any()
            continue
        assert np.abs(q[c]).max() == 127  # the largest weight uses the full range
        err = np.abs(q[c].astype(np.float32) * s[c] - w[c]).max()
        assert err <= s[c] / 2 * (1 + 1e-5)
    # another axis: dense weights [in, out] quantized along axis 1
    q1, s1 = quantize_weights_per_channel(w[:, :, 0, 0].T.copy(), axis=1)
    assert s1.shape == (8,) and np.array_equal(q1.T, quantize_weights_per_channel(w[:, :, 0, 0], 0)[0])
    with pytest.raises(QuantizationError):
        quantize_weights_per_channel(np.float32([1.0, np.nan]), 0)


def test_bias():
    rng = np.random.default_rng(3)
    b = rng.standard_normal(16).astype(np.float32)
    ws = rng.uniform(1e-3, 1e-1, 16).astype(np.float32)
    q, s = quantize_bias(b, 0.02, ws)
    assert q.dtype == np.int32 and s.dtype == np.float32
    np.testing.assert_array_equal(s, np.float32(0.02) * ws)
    assert np.all(np.abs(q * s.astype(np.float64) - b) <= s / 2 + 1e-12)
    q2, s2 = quantize_bias(b, 0.02, ws[0])  # per-tensor weight scale
    assert np.all(s2 == s2[0])
    with pytest.raises(QuantizationError, match="channel 2"):
        quantize_bias(np.float32([0.0, 1.0, 1e6]), 1e-4, 1e-4)


# -- requantization -----------------------------------------------------------------------------

def _exact(acc: int, m: int, shift: int) -> int:
    """round-half-away-from-zero of acc * m / 2^(31 - shift), in rational arithmetic."""
    x = Fraction(acc * m, 2 ** (31 - shift))
    r = math.floor(abs(x) + Fraction(1, 2))
    return r if x >= 0 else -r


def test_quantize_multiplier_representation():
    rng = np.random.default_rng(4)
    reals = np.concatenate([rng.uniform(0.5, 1.0, 300), 10.0 ** rng.uniform(-9, 4, 500),
                            [0.5, 1.0, 1 - 2 ** -40, 2.0 ** -32, 2.0 ** -31, 2.0 ** 29]])
    for M in reals:
        m, shift = quantize_multiplier(float(M))
        assert 2 ** 30 <= m <= 2 ** 31 - 1 and 1 <= 31 - shift <= 62
        assert abs(multiplier_value(m, shift) - M) <= M * 2.0 ** -31
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0 ** -33) == (0, 0)
    assert quantize_multiplier(1 - 2 ** -40) == (2 ** 30, 1)  # rounding up to 2^31 renormalizes
    for bad in (-1.0, float("nan"), float("inf"), 2.0 ** 30):
        with pytest.raises(QuantizationError):
            quantize_multiplier(bad)


def test_requantize_is_exact_rounding_property():
    rng = np.random.default_rng(5)
    checked = 0
    for trial in range(400):
        M = float(10.0 ** rng.uniform(-8, 1.5))
        m, shift = quantize_multiplier(M)
        acc = rng.integers(-(2 ** 31), 2 ** 31, 40, dtype=np.int64)
        lim = min(int(300 / M) + 1, 2 ** 31 - 1)
        acc[:10] = rng.integers(-lim, lim + 1, 10)  # land in (or near) the int8 range
        acc[10] = 2 ** 31 - 1
        acc[11] = -(2 ** 31)
        got = requantize(acc.astype(np.int32), m, shift, 0, -(2 ** 31), 2 ** 31 - 1, dtype="int32")
        for a, g in zip(acc.tolist(), got.tolist()):
            want = _exact(a, m, shift)
            assert g == min(max(want, -(2 ** 31)), 2 ** 31 - 1), (a, m, shift)  # saturated to int32
            q8 = requantize(np.int32([a]), m, shift, 5, -128, 127)[0]  # int8 output: same, + zp, saturated
            assert int(q8) == min(max(want + 5, -128), 127)
            if abs(a * M) < 2 ** 15:  # the multiplier's own error is negligible there
                assert abs(g - a * M) <= 1.0
                assert abs(g - a * M) <= 0.5 + abs(a) * M * 2.0 ** -31 + 1e-9
            checked += 1
    assert checked == 400 * 40


def test_requantize_ties_and_edges():
    # M = 0.5 exactly: m = 2^30, shift = 0 -> ties at odd accumulators, rounded away from zero
    m, shift = quantize_multiplier(0.5)
    assert (m, shift) == (2 ** 30, 0)
    acc = np.array([1, 3, 5, -1, -3, -5, 0, 2, -2], np.int32)
    assert requantize(acc, m, shift, 0, -128, 127).tolist() == [1, 2, 3, -1, -2, -3, 0, 1, -1]
    # multiplier in [0.5, 1), > 1 and tiny
    m, shift = quantize_multiplier(0.75)
    assert requantize(np.int32([2, -2, 100]), m, shift, 0, -128, 127).tolist() == [2, -2, 75]
    m, shift = quantize_multiplier(3.0)
    assert shift == 2 and requantize(np.int32([5, -5, 50]), m, shift, 0, -128, 127).tolist() == [15, -15, 127]
    m, shift = quantize_multiplier(1e-9)
    assert requantize(np.int32([2 ** 31 - 1, -(2 ** 31), 7]), m, shift, 0, -128, 127).tolist() == [2, -2, 0]
    # zero point and saturation, uint8
    m, shift = quantize_multiplier(0.125)
    out = requantize(np.int32([0, 8, -8, 5000, -5000, 12, -12]), m, shift, 128, 0, 255)
    assert out.dtype == np.uint8 and out.tolist() == [128, 129, 127, 255, 0, 130, 126]  # 1.5 -> 2, -1.5 -> -2
    # narrow range and explicit dtype
    assert requantize(np.int32([-10 ** 6]), m, shift, 0, -127, 127).tolist() == [-127]
    # zero multiplier
    assert requantize(np.int32([123456, -5]), 0, 0, 3, 0, 255).tolist() == [3, 3]


def test_requantize_per_channel_broadcast():
    rng = np.random.default_rng(6)
    reals = [0.01, 0.5, 0.9, 2.5]
    ms, shifts = zip(*(quantize_multiplier(r) for r in reals))
    acc = rng.integers(-3000, 3000, (2, 4, 5)).astype(np.int32)
    got = requantize(acc, np.array(ms)[None, :, None], np.array(shifts)[None, :, None], -1, -128, 127)
    for c in range(4):
        np.testing.assert_array_equal(got[:, c], requantize(acc[:, c], ms[c], shifts[c], -1, -128, 127))


def test_requantize_errors():
    with pytest.raises(QuantizationError):
        requantize(np.float32([1.0]), 2 ** 30, 0, 0, -128, 127)
    with pytest.raises(QuantizationError):
        requantize(np.int64([2 ** 31]), 2 ** 30, 0, 0, -128, 127)
    with pytest.raises(QuantizationError):
        requantize(np.int32([1]), 12345, 0, 0, -128, 127)  # m not normalized
    with pytest.raises(QuantizationError):
        requantize(np.int32([1]), 2 ** 30, 31, 0, -128, 127)  # right shift of 0
    with pytest.raises(QuantizationError):
        requantize(np.int32([1]), 2 ** 30, 0, 0, -200, 127, dtype="int8")


def test_uint8_and_int8_activations_are_the_same_numbers():
    rng = np.random.default_rng(7)
    for _ in range(50):
        lo, hi = sorted(rng.uniform(-10, 10, 2))
        su, zu = compute_scale_zp(lo, hi, 0, 255)
        ss, zs = compute_scale_zp(lo, hi, -128, 127)
        assert su == ss and zu == zs + 128
        x = rng.uniform(lo - 1, hi + 1, 200).astype(np.float32)
        qu, qs = quantize(x, su, zu, "uint8"), quantize(x, ss, zs, "int8")
        np.testing.assert_array_equal(qu.astype(np.int32), qs.astype(np.int32) + 128)
        assert np.array_equal(qu, qs.view(np.uint8) ^ np.uint8(0x80))  # the top bit flipped
        np.testing.assert_array_equal(dequantize(qu, su, zu), dequantize(qs, ss, zs))


def test_c_expression_in_docs_is_bit_exact(repo_root, tmp_path):
    """The C requantization in docs/quantization.md, compiled, against requantize()."""
    import re
    import shutil
    import subprocess
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler")
    doc = (repo_root / "docs" / "quantization.md").read_text()
    blocks = re.findall(r"```c\n(.*?)```", doc, re.S)
    assert len(blocks) == 1 and "edgec_requantize" in blocks[0]
    src = tmp_path / "rq.c"
    src.write_text("#include <stdint.h>\n#include <stdio.h>\n" + blocks[0] + """
int main(void) {
    long long acc, m, shift, zp, qmin, qmax;
    while (scanf("%lld %lld %lld %lld %lld %lld", &acc, &m, &shift, &zp, &qmin, &qmax) == 6)
        printf("%d\\n", edgec_requantize((int32_t)acc, (int32_t)m, (int32_t)shift, (int32_t)zp, (int32_t)qmin, (int32_t)qmax));
    return 0;
}
""")
    exe = tmp_path / "rq"
    subprocess.run([gcc, "-std=c99", "-O2", "-Wall", "-Werror", str(src), "-o", str(exe)], check=True)
    rng = np.random.default_rng(8)
    rows, want = [], []
    for _ in range(300):
        m, shift = quantize_multiplier(float(10.0 ** rng.uniform(-10, 3)))
        acc = rng.integers(-(2 ** 31), 2 ** 31, 20, dtype=np.int64)
        acc[:10] //= rng.integers(1, 2 ** 31, 10)  # small accumulators too
        zp, qmin, qmax = (int(rng.integers(-128, 128)), -128, 127) if rng.random() < 0.5 else (int(rng.integers(0, 256)), 0, 255)
        want.extend(requantize(acc.astype(np.int32), m, shift, zp, qmin, qmax).astype(np.int64).tolist())
        rows.extend(f"{a} {m} {shift} {zp} {qmin} {qmax}" for a in acc.tolist())
    for a in (2 ** 31 - 1, -(2 ** 31), 0, 1, -1):  # extremes with a 62-bit shift and with a 1-bit shift
        for M in (2.0 ** -31.5, 2.0 ** 29.5, 0.5):
            m, shift = quantize_multiplier(M)
            rows.append(f"{a} {m} {shift} 0 -2147483648 2147483647")
            want.append(int(requantize(np.int32([a]), m, shift, 0, -(2 ** 31), 2 ** 31 - 1, dtype="int32")[0]))
    out = subprocess.run([str(exe)], input="\n".join(rows) + "\n", capture_output=True, text=True, check=True).stdout
    assert [int(v) for v in out.split()] == want
