"""The quant op group (edgec/ops/quant.py): bit-exact against integer references written here
independently (Python big integers for the rounding, float64 convolutions of exact small
integers for the accumulators), against onnxruntime's QLinearConv (within one quantum: it
rounds a float product half to even), and type inference errors."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.ir.graph import Value
from edgec.ir.ops import get
from edgec.quant.qmath import quantize_multiplier

RNG = np.random.default_rng(1234)


def ref(op, *arrays, **attrs):
    opdef = get(op)
    attrs = opdef.normalize_attrs(attrs)
    ins = [None if a is None else Value(f"i{k}", a.dtype.name, a.shape) for k, a in enumerate(arrays)]
    ((dt, shape),) = opdef.infer(ins, attrs)
    (y,) = opdef.reference(*arrays, **attrs)
    assert y.dtype.name == dt and tuple(y.shape) == tuple(shape)
    return y


def exact_requant(acc, m, shift, zo, lo, hi):
    """The documented rounding, in Python integers: one rounding of acc*m/2^n, ties away from 0."""
    acc = np.asarray(acc, np.int64)
    m = np.broadcast_to(np.asarray(m, np.int64), acc.shape)
    shift = np.broadcast_to(np.asarray(shift, np.int64), acc.shape)
    out = np.empty(acc.shape, np.int64)
    for idx in np.ndindex(*acc.shape):
        p = int(acc[idx]) * int(m[idx])
        n = 31 - int(shift[idx])
        r = (abs(p) + (1 << (n - 1))) >> n
        out[idx] = min(max((r if p >= 0 else -r) + zo, lo), hi)
    return out


def _mults(reals):
    ms, ss = zip(*(quantize_multiplier(r) for r in reals))
    return tuple(ms), tuple(ss)


def _q(dtype, shape):
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    return RNG.integers(lo, hi + 1, size=shape).astype(dtype)


def _conv_f64(x, w, strides, pads, dilations, group):
    (y,) = get("conv").reference(x.astype(np.float64), w.astype(np.float64), None, strides=strides, pads=pads,
                                 dilations=dilations, group=group)
    return y


CONV_CASES = [
    # x shape, w shape, strides, pads, dilations, group
    ((1, 3, 7, 7), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 4, 9, 8), (6, 2, 3, 2), (2, 1), (0, 1, 2, 0), (1, 2), 2),
    ((1, 5, 6, 6), (5, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 5),  # depthwise
    ((1, 3, 11), (2, 3, 4), (3,), (2, 1), (2,), 1),                   # 1-D
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dt", ["uint8", "int8"])
def test_qconv_bit_exact(case, dt):
    xs, ws, strides, pads, dil, group = case
    x = _q(dt, xs)
    w = RNG.integers(-127, 128, size=ws).astype(np.int8)
    zx = 131 if dt == "uint8" else 3
    b_true = RNG.integers(-5000, 5000, size=ws[0]).astype(np.int64)
    wsum = w.astype(np.int64).reshape(ws[0], -1).sum(1)
    b_fold = (b_true - zx * wsum).astype(np.int32)
    ms, ss = _mults(RNG.uniform(1e-4, 5e-3, size=ws[0]))
    zo, lo, hi = (7, 7, 255) if dt == "uint8" else (-20, -20, 127)   # a fused ReLU clamp
    y = ref("qconv", x, w, b_fold, strides=strides, pads=pads, dilations=dil, group=group, x_zero_point=zx,
            multiplier=ms, shift=ss, out_zero_point=zo, qmin=lo, qmax=hi, out_dtype=dt)
    acc = _conv_f64(x.astype(np.int64) - zx, w, strides, pads, dil, group)  # zero padding = real 0
    acc = np.rint(acc).astype(np.int64) + b_true.reshape((1, -1) + (1,) * (len(xs) - 2))
    shp = (1, -1) + (1,) * (len(xs) - 2)
    want = exact_requant(acc, np.reshape(ms, shp), np.reshape(ss, shp), zo, lo, hi)
    assert y.dtype == np.dtype(dt)
    np.testing.assert_array_equal(y.astype(np.int64), want)
    assert y.min() >= lo


def test_qconv_per_tensor_multiplier_and_no_bias():
    x = _q("uint8", (1, 2, 5, 5))
    w = RNG.integers(-127, 128, size=(3, 2, 3, 3)).astype(np.int8)
    (m,), (s,) = _mults([0.002])
    y = ref("qconv", x, w, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), x_zero_point=0, multiplier=(m,),
            shift=(s,), out_zero_point=100, qmin=0, qmax=255, out_dtype="uint8")
    acc = np.rint(_conv_f64(x, w, (1, 1), (0, 0, 0, 0), (1, 1), 1)).astype(np.int64)
    np.testing.assert_array_equal(y, exact_requant(acc, m, s, 100, 0, 255))


def test_qconv_matches_onnxruntime_qlinearconv():
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    x = _q("uint8", (1, 4, 8, 8))
    w = RNG.integers(-127, 128, size=(5, 4, 3, 3)).astype(np.int8)
    sx, zx, sy, zy = np.float32(0.02), 120, np.float32(0.05), 110
    sw = RNG.uniform(0.001, 0.01, size=5).astype(np.float32)
    b = RNG.integers(-3000, 3000, size=5).astype(np.int32)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (np.array(sx), "sx"), (np.array(zx, np.uint8), "zx"), (w, "w"), (sw, "sw"), (np.zeros(5, np.int8), "zw"),
        (np.array(sy), "sy"), (np.array(zy, np.uint8), "zy"), (b, "b")]]
    node = helper.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"], ["y"],
                            pads=[1, 1, 1, 1], strides=[1, 1])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ms, ss = _mults([float(sx) * float(s) / float(sy) for s in sw])
    b_fold = (b.astype(np.int64) - zx * w.astype(np.int64).reshape(5, -1).sum(1)).astype(np.int32)
    y = ref("qconv", x, w, b_fold, strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), x_zero_point=zx,
            multiplier=ms, shift=ss, out_zero_point=zy, qmin=0, qmax=255, out_dtype="uint8")
    diff = np.abs(y.astype(np.int64) - want.astype(np.int64))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.97


@pytest.mark.parametrize("dt", ["uint8", "int8"])
def test_qdense_bit_exact(dt):
    x = _q(dt, (5, 37))
    w = RNG.integers(-127, 128, size=(6, 37)).astype(np.int8)
    b = RNG.integers(-10000, 10000, size=6).astype(np.int32)
    ms, ss = _mults(RNG.uniform(1e-4, 1e-2, size=6))
    zo = 5 if dt == "uint8" else -3
    lo, hi = (0, 255) if dt == "uint8" else (-128, 127)
    y = ref("qdense", x, w, b, x_zero_point=9, multiplier=ms, shift=ss, out_zero_point=zo, qmin=lo, qmax=hi,
            out_dtype=dt)
    acc = np.array([[sum(int(x[i, k]) * int(w[j, k]) for k in range(37)) + int(b[j]) for j in range(6)]
                    for i in range(5)])
    np.testing.assert_array_equal(y, exact_requant(acc, np.array(ms)[None], np.array(ss)[None], zo, lo, hi))
    assert get("qdense").macs([Value("x", dt, (5, 37)), Value("w", "int8", (6, 37))], [], {}) == 5 * 6 * 37


def test_qmatmul_bit_exact_with_broadcast():
    a = _q("uint8", (2, 3, 4, 8))
    b = _q("int8", (8, 5)).reshape(1, 1, 8, 5)
    (m,), (s,) = _mults([0.0007])
    y = ref("qmatmul", a, b, a_zero_point=128, b_zero_point=-4, multiplier=(m,), shift=(s,), out_zero_point=3,
            qmin=0, qmax=255, out_dtype="uint8")
    acc = np.rint(np.matmul(a.astype(np.float64) - 128, b.astype(np.float64) + 4)).astype(np.int64)
    assert y.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(y, exact_requant(acc, m, s, 3, 0, 255))
    assert get("qmatmul").macs([Value("a", "uint8", a.shape), Value("b", "int8", b.shape)],
                               [Value("y", "uint8", y.shape)], {}) == y.size * 8


def test_qmul_bit_exact_and_close_to_real():
    a, b = _q("uint8", (3, 4)), _q("uint8", (4,))
    sa, za, sb, zb, so, zo = 0.03, 100, 0.02, 7, 0.4, 60
    (m,), (s,) = _mults([sa * sb / so])
    y = ref("qmul", a, b, a_zero_point=za, b_zero_point=zb, multiplier=(m,), shift=(s,), out_zero_point=zo,
            qmin=0, qmax=255, out_dtype="uint8")
    acc = (a.astype(np.int64) - za) * (b.astype(np.int64) - zb)
    np.testing.assert_array_equal(y, exact_requant(acc, m, s, zo, 0, 255))
    real = sa * (a - za.__float__()) * sb * (b - float(zb))
    assert np.abs(so * (y.astype(np.float64) - zo) - np.clip(real, -so * zo, so * (255 - zo))).max() <= 0.5 * so + 1e-6


@pytest.mark.parametrize("dt", ["uint8", "int8"])
def test_qadd_exact_formula_and_within_one_quantum(dt):
    a, b = _q(dt, (4, 6)), _q(dt, (1, 6))
    lo, hi = (0, 255) if dt == "uint8" else (-128, 127)
    sa, za, sb, zb, so, zo = 0.05, lo + 90, 0.013, lo + 200, 0.06, lo + 128
    twice = 2 * max(sa, sb)
    ma, sha = quantize_multiplier(sa / twice)
    mb, shb = quantize_multiplier(sb / twice)
    m, sh = quantize_multiplier(twice / (2 ** 20 * so))
    y = ref("qadd", a, b, a_zero_point=za, b_zero_point=zb, a_multiplier=ma, a_shift=sha, b_multiplier=mb,
            b_shift=shb, left_shift=20, multiplier=(m,), shift=(sh,), out_zero_point=zo, qmin=lo, qmax=hi,
            out_dtype=dt)
    ai = exact_requant((a.astype(np.int64) - za) << 20, ma, sha, 0, -2 ** 31, 2 ** 31 - 1)
    bi = exact_requant((b.astype(np.int64) - zb) << 20, mb, shb, 0, -2 ** 31, 2 ** 31 - 1)
    np.testing.assert_array_equal(y, exact_requant(ai + np.broadcast_to(bi, ai.shape), m, sh, zo, lo, hi))
    real = sa * (a.astype(np.float64) - za) + sb * (b.astype(np.float64) - zb)
    ideal = np.clip(np.rint(real / so) + zo, lo, hi)
    assert np.abs(y.astype(np.int64) - ideal).max() <= 1


def test_requantize_op_int32_and_uint8_inputs():
    acc = RNG.integers(-2 ** 20, 2 ** 20, size=(50,)).astype(np.int32)
    (m,), (s,) = _mults([1.7e-4])
    y = ref("requantize", acc, in_zero_point=-1000, multiplier=(m,), shift=(s,), out_zero_point=-5, qmin=-128,
            qmax=127, out_dtype="int8")
    np.testing.assert_array_equal(y, exact_requant(acc.astype(np.int64) + 1000, m, s, -5, -128, 127))
    x = _q("uint8", (20,))
    (m,), (s,) = _mults([0.75])
    y = ref("requantize", x, in_zero_point=128, multiplier=(m,), shift=(s,), out_zero_point=0, qmin=-128, qmax=127,
            out_dtype="int8")
    np.testing.assert_array_equal(y, exact_requant(x.astype(np.int64) - 128, m, s, 0, -128, 127))


def test_quantize_dequantize_ops():
    x = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    q = ref("quantize", x, scale=0.02, zero_point=-3, dtype="int8")
    want = np.clip(np.rint(x / np.float32(0.02)) - 3, -128, 127)
    np.testing.assert_array_equal(q, want)
    r = ref("dequantize", q, scale=0.02, zero_point=-3)
    np.testing.assert_array_equal(r, (q.astype(np.int64) + 3).astype(np.float32) * np.float32(0.02))
    inside = (q > -128) & (q < 127)
    assert r.dtype == np.float32 and np.abs(r - x)[inside].max() <= 0.01 + 1e-6
    qa = ref("quantize", x, scale=(0.01, 0.02, 0.03), zero_point=(128, 100, 0), dtype="uint8", axis=1)
    np.testing.assert_array_equal(qa[:, 1], np.clip(np.rint(x[:, 1] / np.float32(0.02)) + 100, 0, 255))
    ra = ref("dequantize", qa, scale=(0.01, 0.02, 0.03), zero_point=(128, 100, 0), axis=1)
    np.testing.assert_array_equal(ra[:, 2], (qa[:, 2].astype(np.float32) * np.float32(0.03)))
    i32 = np.array([-7, 0, 9], np.int32)
    np.testing.assert_array_equal(ref("dequantize", i32, scale=0.5, zero_point=0), [-3.5, 0, 4.5])


@pytest.mark.parametrize("dt", ["uint8", "int8"])
def test_qlut(dt):
    table = tuple(int(v) for v in RNG.integers(-128, 128, size=256))
    x = _q(dt, (3, 7))
    y = ref("qlut", x, table=table, out_dtype="int8")
    off = 0 if dt == "uint8" else 128
    np.testing.assert_array_equal(y, np.array(table)[x.astype(np.int64) + off])


@pytest.mark.parametrize("op, inputs, attrs, match", [
    ("qdense", [Value("x", "float32", (2, 3)), Value("w", "int8", (4, 3))],
     dict(x_zero_point=0, multiplier=(2 ** 30,), shift=(0,), out_zero_point=0, qmin=0, qmax=255, out_dtype="uint8"),
     "input must be one of"),
    ("qdense", [Value("x", "uint8", (2, 3)), Value("w", "int8", (4, 3))],
     dict(x_zero_point=0, multiplier=(2 ** 30, 2 ** 30), shift=(0, 0), out_zero_point=0, qmin=0, qmax=255,
          out_dtype="uint8"), "per-channel"),
    ("qdense", [Value("x", "uint8", (2, 3)), Value("w", "int8", (4, 3))],
     dict(x_zero_point=0, multiplier=(12345,), shift=(0,), out_zero_point=0, qmin=0, qmax=255, out_dtype="uint8"),
     "quantize_multiplier"),
    ("qdense", [Value("x", "uint8", (2, 3)), Value("w", "int8", (4, 3)), Value("b", "float32", (4,))],
     dict(x_zero_point=0, multiplier=(2 ** 30,), shift=(0,), out_zero_point=0, qmin=0, qmax=255, out_dtype="uint8"),
     "int32"),
    ("qconv", [Value("x", "int8", (1, 2, 5, 5)), Value("w", "int8", (3, 2, 3, 3))],
     dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), x_zero_point=0, multiplier=(2 ** 30,), shift=(0,),
          out_zero_point=0, qmin=0, qmax=300, out_dtype="int8"), "qmax"),
    ("qlut", [Value("x", "uint8", (3,))], dict(table=(0,) * 255, out_dtype="uint8"), "256"),
    ("quantize", [Value("x", "float32", (3,))], dict(scale=0.1, zero_point=300, dtype="uint8"), "zero point"),
    ("quantize", [Value("x", "float32", (3,))], dict(scale=-0.1, zero_point=0, dtype="uint8"), "positive"),
])
def test_infer_rejects(op, inputs, attrs, match):
    opdef = get(op)
    with pytest.raises(ValueError, match=match):
        opdef.infer(inputs, opdef.normalize_attrs(attrs))


def test_group_and_docs():
    from edgec.ir.ops import all_ops
    ops = all_ops()
    for name in "quantize dequantize requantize qconv qdense qmatmul qadd qmul qlut".split():
        assert ops[name].group == "quant" and ops[name].doc
    for name in ("qconv", "qdense", "qmatmul"):
        assert ops[name].macs is not None
