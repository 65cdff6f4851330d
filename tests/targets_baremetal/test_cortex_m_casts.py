"""64-bit integer <-> float casts on Cortex-M (firmware under qemu-system-arm), exactly as
onnxruntime computes them: libgcc's __aeabi_l2f & co. take and return values in core
registers, which LLVM only knows with the full triple (thumbv7em-unknown-none-eabihf;
tests/targets_arm/test_arm_casts.py explains)."""
from __future__ import annotations

import numpy as np
import pytest

import edgec
import edgec.runtime
from tests.helpers import run_ort
from tests.targets_arm.test_arm_casts import cast_model, feeds  # noqa: F401  (module fixture)
from tests.targets_baremetal.conftest import CORTEX_M, need_tools

pytestmark = pytest.mark.compiled


@pytest.mark.parametrize("target", CORTEX_M)
def test_64bit_int_float_casts_in_firmware(cast_model, target, tmp_path):  # noqa: F811
    need_tools(target)
    x = feeds()
    art = edgec.compile(cast_model, target=target, input_shapes={k: v.shape for k, v in x.items()},
                        output_dir=tmp_path / "art")
    want = run_ort(cast_model, x)
    with edgec.runtime.load(art, emulate=True) as m:
        got = m.run(x)
    bad = [f"{k}: got {got[k].ravel()[:6]} want {want[k].ravel()[:6]}" for k in want
           if got[k].dtype != want[k].dtype or not np.array_equal(got[k], want[k])]
    assert not bad, f"{target}: " + "; ".join(bad)
