"""Float direct convolutions whose output row fits one register tile but is not a whole number
of vectors (14 or 7 columns in 16/8 lanes): the write-back under the tile is one vectorized
store of the row's length (``_nn_sched.VECTOR_ROW_WRITEBACK``; not for depthwise rows of fewer
than 6 columns, which were slower so). Checked against the
numpy reference with row and channel overhangs, and the path read from the scheduled TIR.
Stride-1 depthwise convolutions on rows of at most 8 columns run over flattened pixels
(``nn.FLAT_DEPTHWISE``, tests/backend/test_conv_fp32_paths.py): the short-row cases here are
strided, and the TIR checks switch that form off."""
from __future__ import annotations

import numpy as np
import pytest

from ._harness import Case, build_cases, check, rand

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(707)


def _conv(id_, c, oc, hw, k, stride, pads, group, bias=True, act=None):
    x = rand(RNG, 1, c, *hw)
    w = rand(RNG, oc, c // group, k, k, scale=0.5)
    b = rand(RNG, oc) if bias else None
    attrs = {"strides": (stride, stride), "pads": pads, "dilations": (1, 1), "group": group}
    if act:
        attrs["act_min"], attrs["act_max"] = act
    return Case(id_, "conv", attrs, [x, w, b], rtol=1e-4, atol=1e-4)


CASES = [
    _conv("dw_14x14", 19, 19, (14, 14), 3, 1, (1, 1, 1, 1), 19),                 # 14 of 16 lanes
    _conv("dw_7x7_relu6", 21, 21, (7, 7), 3, 1, (1, 1, 1, 1), 21, act=(0.0, 6.0)),   # 7 of 8 lanes
    _conv("dw_s2_28_to_14", 6, 6, (28, 28), 3, 2, (0, 0, 1, 1), 6),              # stride 2, 14 columns
    _conv("dw_25x5", 12, 12, (25, 5), 3, 1, (1, 1, 1, 1), 12, bias=False),       # 25 rows: row overhang
    _conv("dw_5x5_kernel_9x11", 5, 5, (9, 11), 5, 1, (2, 2, 2, 2), 5),
    _conv("dense_3x3_7x7", 8, 13, (7, 7), 3, 1, (1, 1, 1, 1), 1),                # 13 channels: channel overhang
    # the two stride-1 cases above run over flattened pixels when built; these strided ones keep
    # the row tile on the same output rows
    _conv("dw_s2_7x7_relu6", 21, 21, (13, 13), 3, 2, (1, 1, 1, 1), 21, act=(0.0, 6.0)),
    _conv("dw_s2_25x5", 12, 12, (49, 10), 3, 2, (1, 1, 1, 1), 12, bias=False),
    _conv("dw_asym_pad_16x20", 3, 3, (16, 20), 3, 1, (2, 0, 0, 1), 3),            # border-only fill, odd pads
    _conv("dw_5x5_pad2_12x9", 4, 4, (12, 9), 5, 1, (2, 2, 2, 2), 4, act=(-1.0, 1.0)),
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return build_cases(CASES, tmp_path_factory.mktemp("row_wb"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matches_reference(runner, case):
    check(case, runner.run(case))


def _out_stores(case, enabled: bool) -> str:
    from edgec.backend.kernels import _nn_sched as ns
    from edgec.backend.kernels.registry import KERNELS, KernelSpec, TensorType
    from edgec.targets import load_target
    ins = tuple(None if a is None else TensorType(str(a.dtype), tuple(a.shape)) for a in case.inputs)
    out = case.reference()[0]
    spec = KernelSpec("conv", case.attrs, ins, (TensorType(str(out.dtype), tuple(out.shape)),), load_target("host"))
    from edgec.backend.kernels import nn as nnk
    old, old_flat = ns.VECTOR_ROW_WRITEBACK, nnk.FLAT_DEPTHWISE
    ns.VECTOR_ROW_WRITEBACK = enabled
    nnk.FLAT_DEPTHWISE = False
    try:
        return KERNELS["conv"](spec).script()
    finally:
        ns.VECTOR_ROW_WRITEBACK, nnk.FLAT_DEPTHWISE = old, old_flat


ONE_VECTOR = CASES[:2] + [c for c in CASES if c.id == "dw_s2_7x7_relu6"]


@pytest.mark.parametrize("case", ONE_VECTOR, ids=[c.id for c in ONE_VECTOR])
def test_row_written_as_one_vector(case):
    ow = case.reference()[0].shape[-1]
    assert f"T.vectorized({ow})" in _out_stores(case, True), "the row's write-back is one vector"
    assert f"T.vectorized({ow})" not in _out_stores(case, False)


@pytest.mark.parametrize("cid", ["dw_25x5", "dw_s2_25x5"])
def test_short_depthwise_rows_stay_scalar(cid):
    case = next(c for c in CASES if c.id == cid)
    assert "T.vectorized(5)" not in _out_stores(case, True)


def test_padded_copy_fills_only_the_border():
    """A depthwise channel's padded copy (``_nn_sched.BORDER_ONLY_FILL``): border and interior
    are separate loops, no fill of the whole buffer (``decompose_padding``'s ``pad_const``)
    before the copy; the 7-column rows (slower so) keep the whole fill."""
    from edgec.backend.kernels import _nn_sched as ns
    case = next(c for c in CASES if c.id == "dw_14x14")
    assert "pad_const" not in _out_stores(case, True) and "_partition" in _out_stores(case, True)
    old = ns.BORDER_ONLY_FILL
    ns.BORDER_ONLY_FILL = False
    try:
        assert "pad_const" in _out_stores(case, True)
    finally:
        ns.BORDER_ONLY_FILL = old
    seven = next(c for c in CASES if c.id == "dw_7x7_relu6")
    assert "pad_const" in _out_stores(seven, True)
