"""int8 qdense GEMV on the AArch64 dot-product instruction (``sdot``, target aarch64-dotprod).

quant_isa.target_isa gives the ``sdot`` ISA on aarch64 triples with ``+dotprod``; qdense with
int8 activations, fewer than quant_conv.GEMV_MAX_ROWS["sdot"] rows and K >= 16 then runs
quant_conv.dense_gemv_isa on ``llvm.aarch64.neon.sdot.v4i32.v16i8``. Checked here: the object
code (aarch64-linux-gnu-objdump -d) has ``sdot`` on aarch64-dotprod and not on plain aarch64,
and a one-Gemm int8 model with a K tail and N not a multiple of the output step gives, under
qemu, outputs bit-identical to the x86-64 artifact (the whole-model checks are in
test_int8_arm.py).
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
import edgec.runtime
from tests.targets_arm.arm_helpers import need_tools, seeded

pytestmark = pytest.mark.compiled

OBJDUMP = "aarch64-linux-gnu-objdump"


def _qdense_spec(target_name: str, m: int, n: int, k: int):
    from edgec.backend.kernels.registry import KernelSpec, TensorType
    from edgec.ir import ops as irops
    from edgec.targets import load_target
    attrs = {"x_zero_point": -3, "multiplier": tuple(2 ** 30 + 977 * i for i in range(n)), "shift": (-8,) * n,
             "out_zero_point": 1, "qmin": -128, "qmax": 127, "out_dtype": "int8"}
    attrs = irops.get("qdense").normalize_attrs(attrs)
    ins = (TensorType("int8", (m, k)), TensorType("int8", (n, k)), TensorType("int32", (n,)))
    return KernelSpec("qdense", attrs, ins, (TensorType("int8", (m, n)),), load_target(target_name))


def _disasm(spec, tmp_path) -> str:
    from edgec.backend.build import _lower
    from edgec.backend.kernels.registry import KERNELS
    from tvm.tirx.build import tir_to_runtime
    tt = spec.target.tvm_target()
    host, dev = _lower(KERNELS[spec.op](spec), "k", tt)
    obj = tmp_path / f"qdense_{spec.target.name}.o"
    tir_to_runtime(host, dev, tt).write_to_file(str(obj))
    return subprocess.run([OBJDUMP, "-d", str(obj)], capture_output=True, text=True, check=True).stdout


def _sdot_lines(dis: str) -> list[str]:
    return [ln for ln in dis.splitlines() if "\tsdot\t" in ln]


def test_gemv_object_code_has_sdot(tmp_path):
    if shutil.which(OBJDUMP) is None:
        pytest.skip(f"{OBJDUMP} is not installed (apt-get install binutils-aarch64-linux-gnu)")
    for m, n, k in ((1, 64, 1024), (3, 37, 200)):
        lines = _sdot_lines(_disasm(_qdense_spec("aarch64-dotprod", m, n, k), tmp_path))
        assert lines, f"no sdot in the aarch64-dotprod qdense {m}x{k} -> {n}"
        # sdot vD.4s, vN.16b, vM.16b: 4 int32 lanes, 16 int8 bytes per operand
        assert all(".4s" in ln and ".16b" in ln for ln in lines), lines[:3]
    # no +dotprod (plain aarch64), K below one 16-byte block, or rows beyond the GEMV: no sdot
    assert not _sdot_lines(_disasm(_qdense_spec("aarch64", 1, 64, 1024), tmp_path))
    assert not _sdot_lines(_disasm(_qdense_spec("aarch64-dotprod", 1, 64, 8), tmp_path))
    assert not _sdot_lines(_disasm(_qdense_spec("aarch64-dotprod", 16, 64, 64), tmp_path))


def _gemm_model(path, m: int, n: int, k: int) -> None:
    rng = np.random.default_rng(7)
    w = (rng.standard_normal((n, k)) * 0.2).astype(np.float32)
    b = (rng.standard_normal(n) * 0.2).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
    g = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_sdot_gemv_bit_identical_to_x86(tmp_path):
    """3 rows, K = 200 (12 sdot blocks + an 8-element scalar tail), N = 37 (a ragged last step
    of outputs): the aarch64-dotprod artifact under qemu equals the x86-64 one bit for bit."""
    need_tools("aarch64-dotprod")
    m, n, k = 3, 37, 200
    model = tmp_path / "gemm.onnx"
    _gemm_model(model, m, n, k)
    calib = [{"x": seeded((m, k), 10 + i)} for i in range(8)]
    tests = [{"x": seeded((m, k), 50 + i)} for i in range(3)]
    arts = {t: edgec.compile(model, target=t, input_shapes={"x": (m, k)}, quantize="int8", calib=calib,
                             output_dir=tmp_path / t) for t in ("host", "aarch64-dotprod")}
    with edgec.runtime.load(arts["host"]) as h, edgec.runtime.load(arts["aarch64-dotprod"], emulate=True) as a:
        for feeds in tests:
            want, got = h.run(feeds)["y"], a.run(feeds)["y"]
            assert want.shape == got.shape == (m, n) and got.dtype == want.dtype
            assert np.array_equal(got, want), f"max |diff| {np.abs(got.astype(np.float64) - want).max():.3g}"
            assert np.unique(want).size > n, "the outputs are not informative"
    # the artifact's kernels really contain sdot
    sos = list(arts["aarch64-dotprod"].rglob("*.so"))
    assert sos
    dis = subprocess.run([OBJDUMP, "-d", str(sos[0])], capture_output=True, text=True, check=True).stdout
    assert _sdot_lines(dis)
