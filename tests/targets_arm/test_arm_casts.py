"""64-bit integer <-> float casts on ARM under qemu, exactly as onnxruntime computes them.

On 32-bit ARM these conversions are libgcc calls (__aeabi_l2f, __aeabi_f2lz, ...), whose
arguments and results travel in core registers (base AAPCS) even in a hard-float program.
With a triple that does not name the vendor (``armv7a-linux-gnueabihf``) TVM's LLVM calls
``__floatdisf`` & co. with the VFP calling convention and reads garbage from s0; the target
files give the full ``arch-vendor-os-env`` triple, for which LLVM calls the __aeabi_
functions correctly. One model holds all seven casts (one compile per target).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper

import edgec.runtime
from tests.helpers import run_ort
from tests.targets_arm.arm_helpers import ARM_TARGETS

pytestmark = pytest.mark.compiled

CASTS = [("i64", TP.INT64, "f32", TP.FLOAT), ("i64", TP.INT64, "f64", TP.DOUBLE), ("u64", TP.UINT64, "f32", TP.FLOAT),
         ("u64", TP.UINT64, "f64", TP.DOUBLE), ("f32", TP.FLOAT, "i64", TP.INT64), ("f64", TP.DOUBLE, "i64", TP.INT64),
         ("f32", TP.FLOAT, "u64", TP.UINT64)]
SHAPE = [2, 9]


def feeds() -> dict[str, np.ndarray]:
    i64 = np.array([[0, 1, -1, 2 ** 40 + 3, 123456789012, -5, 2 ** 53 + 1, -(2 ** 62) - 7, 100],
                    [9, -8, 7, 2 ** 63 - 1, -(2 ** 63), 4, 2 ** 31, 2 ** 32 + 1, 2 ** 62 + 12345]], np.int64)
    u64 = np.array([[0, 1, 7, 2 ** 40 + 3, 123456789012, 5, 2 ** 53 + 1, 3, 100],
                    [9, 8, 7, 2 ** 63 + 2 ** 40, 2 ** 64 - 1, 4, 2 ** 31, 2 ** 32 + 1, 2 ** 62 + 12345]], np.uint64)
    f = [[0, 1.5, -2.5, 3e9, 2 ** 40 + 3, -1.2e12, 2 ** 53, 3, 100], [9, 8, -7.75, 6, 5, 4, 3, 2 ** 31, 4.6e18]]
    fu = [[0, 1.5, 2.5, 3e9, 2 ** 40 + 3, 1.2e12, 2 ** 53, 3, 100], [9, 8, 7.75, 6, 5, 4, 1.8e19, 2 ** 31, 4.6e18]]
    return {"i64": i64, "u64": u64, "f32": np.array(f, np.float32), "f64": np.array(f, np.float64),
            "f32u": np.array(fu, np.float32)}


@pytest.fixture(scope="module")
def cast_model(tmp_path_factory):
    nodes, outs, ins = [], [], {}
    types = {"i64": TP.INT64, "u64": TP.UINT64, "f32": TP.FLOAT, "f64": TP.DOUBLE, "f32u": TP.FLOAT}
    for src, _, dst, to in CASTS:
        x = "f32u" if (src, dst) == ("f32", "u64") else src
        ins[x] = types[x]
        nodes.append(helper.make_node("Cast", [x], [f"{src}_to_{dst}"], to=to))
        outs.append(helper.make_tensor_value_info(f"{src}_to_{dst}", to, SHAPE))
    g = helper.make_graph(nodes, "casts", [helper.make_tensor_value_info(k, t, SHAPE) for k, t in ins.items()], outs)
    path = tmp_path_factory.mktemp("casts") / "casts.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("target", ARM_TARGETS)
def test_64bit_int_float_casts_under_qemu(arm_artifact, cast_model, target):
    x = feeds()
    art = arm_artifact(cast_model, target, {k: v.shape for k, v in x.items()})
    want = run_ort(cast_model, x)
    with edgec.runtime.load(art, emulate=True) as m:
        got = m.run(x)
    bad = [f"{k}: got {got[k].ravel()[:6]} want {want[k].ravel()[:6]}" for k in want
           if got[k].dtype != want[k].dtype or not np.array_equal(got[k], want[k])]
    assert not bad, f"{target}: " + "; ".join(bad)
