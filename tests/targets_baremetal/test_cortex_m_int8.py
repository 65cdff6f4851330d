"""The int8 SMS spam MLP on Cortex-M7: the example firmware (examples/cortex_m/), run in
qemu-system-arm, prints outputs bit-identical to the x86-64 (host) int8 artifact of the same
quantized model (same calibration), and its footprint shows the int8 constants."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgec
import edgec.runtime
from edgec.artifact import firmware as fw
from tests.targets_arm.arm_helpers import sms_data
from tests.targets_baremetal.conftest import SMS, SMS_SHAPES, need_tools

pytestmark = pytest.mark.compiled


@pytest.fixture(scope="module")
def int8_pair(tmp_path_factory):
    """(cortex-m7 artifact, host artifact, test feeds) of the int8 SMS model."""
    need_tools("cortex-m7")
    calib, tests = sms_data()
    d = tmp_path_factory.mktemp("sms-int8")
    opts = dict(input_shapes=SMS_SHAPES, quantize="int8", calib=calib)
    m7 = edgec.compile(SMS, target="cortex-m7", output_dir=d / "m7", **opts)
    host = edgec.compile(SMS, target="host", output_dir=d / "host", **opts)
    return m7, host, tests


def test_int8_firmware_prints_host_outputs(int8_pair):
    m7, host, tests = int8_pair
    with edgec.runtime.load(host) as hm:
        want = [hm.run(f)["probs"] for f in tests]
    with edgec.runtime.load(m7, emulate=True) as m:
        assert isinstance(m, fw.FirmwareModel)
        for k, (feeds, w) in enumerate(zip(tests, want)):
            got = m.run(feeds)["probs"]
            assert got.dtype == w.dtype and got.shape == w.shape
            assert np.array_equal(got, w), f"sample {k}: firmware {got.ravel()} != host {w.ravel()}"
            parsed = m.last_run
            assert parsed["arena"][0] == parsed["arena"][1]
    assert any(not np.array_equal(want[0], w) for w in want[1:])     # informative samples


def test_int8_artifact_is_int8_and_smaller(int8_pair, baremetal_artifact):
    m7, _, _ = int8_pair
    rep = json.loads((m7 / "report.json").read_text())
    assert "quantization" in rep
    kernels = sorted(p.name for p in (m7 / "kernels").glob("k_*.o"))
    assert any(k.startswith("k_qdense_") for k in kernels) and not any(k.startswith("k_dense_") for k in kernels)
    fp32 = json.loads((baremetal_artifact("cortex-m7") / "report.json").read_text())["footprint"]
    fp = rep["footprint"]
    # 1024x64 + 64x2 weights: int8 constants are about a quarter of the float ones
    assert fp["blob"]["text"] < 0.3 * fp32["blob"]["text"]
    # the float input and its quantized copy are both activations: the arena does not shrink
    assert fp["arena_parts"]["activations"] == rep["summary"]["arena_bytes"]
