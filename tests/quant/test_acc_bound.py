"""``acc_bound`` (edgec/ops/quant.py module doc): the compiler annotates every qconv / qdense of
the final graph with the largest |accumulator| any input can give, computed from its constant
weights and (bias-corrected) bias; the bound holds on the inputs that make the accumulator
extreme, and the reference rejects a node whose accumulator exceeds it."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.compiler import prepare_graph
from edgec.ir import ops as irops
from edgec.quant.qmath import qrange

from .test_fused_hard_swish import _model

_IDENT = {"multiplier": (2 ** 30,), "shift": (1,), "out_zero_point": 0, "qmin": -2 ** 31, "qmax": 2 ** 31 - 1,
          "out_dtype": "int32"}


def _acc(n, x, w, b):
    base = {k: v for k, v in n.attrs.items() if not k.startswith("act") and k != "acc_bound"}
    return irops.get(n.op).reference(x, w, b, **dict(base, **_IDENT))[0].astype(np.int64)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("target", ["x86_64", "aarch64"])
def test_bounds_annotated_and_hold(dense, target):
    rng = np.random.default_rng(3)
    model = _model(rng, "onnx", dense=dense)
    xs = [2, 32] if dense else [1, 4, 9, 11]
    calib = {"x": [rng.standard_normal(xs).astype(np.float32) for _ in range(8)]}
    g, _ = prepare_graph(model, target=target, quantize="int8", calib=calib)
    nodes = [n for n in g.nodes if n.op in ("qconv", "qdense")]
    assert len(nodes) == (1 if dense else 2)   # (the dense model's last layer is a qdense_dequant)
    for n in nodes:
        bound = n.attrs["acc_bound"]
        w = g.values[n.inputs[1]].const
        b = g.values[n.inputs[2]].const
        dt = g.values[n.inputs[0]].dtype
        lo, hi = qrange(dt)
        # the extreme input of each channel: every x at the end of its range that the sign of its
        # weight (times the sign of the bias) favours, as one channel's interior pixel reads it
        worst = 0
        for c in range(w.shape[0]):
            wc = w[c].astype(np.int64)
            sign = 1 if b[c] >= 0 else -1
            pick = np.where(wc * sign > 0, hi, lo)
            worst = max(worst, abs(int((wc * pick).sum()) + int(b[c])))
        assert 0 < worst <= bound
        assert bound == int((np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(1) * max(abs(lo), hi)
                             + np.abs(b.astype(np.int64))).max())
        # constant extreme inputs through the reference (which checks the bound)
        for fill in (lo, hi):
            acc = _acc(n, np.full(g.values[n.inputs[0]].shape, fill, dt), w, b)
            assert np.abs(acc).max() <= bound


def test_reference_rejects_a_wrong_bound():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (1, 8, 5, 5)).astype(np.uint8)
    w = rng.integers(-127, 128, (4, 8, 3, 3)).astype(np.int8)
    b = rng.integers(-500, 500, 4).astype(np.int32)
    attrs = dict(strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1, x_zero_point=3,
                 multiplier=(2 ** 30,), shift=(-10,), out_zero_point=0, qmin=0, qmax=255, out_dtype="uint8")
    op = irops.get("qconv")
    peak = int(np.abs(op.reference(x, w, b, **dict(attrs, **_IDENT))[0].astype(np.int64)).max())
    op.reference(x, w, b, **op.normalize_attrs(dict(attrs, acc_bound=peak)))
    with pytest.raises(ValueError, match="exceeds the node's acc_bound"):
        op.reference(x, w, b, **op.normalize_attrs(dict(attrs, acc_bound=peak - 1)))
    from edgec.ir.graph import Value
    ins = [Value(f"i{k}", str(a.dtype), a.shape) for k, a in enumerate((x, w, b))]
    with pytest.raises(ValueError, match="acc_bound must be"):
        op.infer(ins, op.normalize_attrs(dict(attrs, acc_bound=-1)))
