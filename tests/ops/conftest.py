"""Per-op tests through the whole compiler: ONNX -> edgec.compile -> C runtime, vs onnxruntime.

The test cases are the ones of tests/ops_ref (one-node ONNX models over shapes, attribute values,
dtypes and opsets). There they check the frontend and the numpy reference; here the autouse
fixture below swaps the harnesses' "run edgec" step for the compiled artifact run by the C
runtime through cffi, and the float comparison for the issue's criterion: max abs error within
1e-4 of the output's scale (max |onnxruntime output|). Integers and bools must match exactly.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

import edgec
from edgec.frontend.onnx_import import import_onnx
from tests.ops_ref import _harness, test_nn_harness

REL = 1e-4
_counter = itertools.count()


def _compile_and_run(model, feeds, tmp_path: Path):
    shapes = {k: np.shape(v) for k, v in feeds.items()}
    graph = import_onnx(model, input_shapes=shapes)
    art = edgec.compile(model, target="host", input_shapes=shapes, output_dir=tmp_path / f"art{next(_counter)}")
    with edgec.load(art) as m:
        outs = m.run({k: np.asarray(v) for k, v in feeds.items()})
    return graph, outs


def _assert_match(got, want, rtol=None, atol=1e-6, what="y"):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, onnxruntime gives {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, onnxruntime gives {want.shape}"
    if want.dtype.kind == "f":
        rel = REL if want.dtype != np.float16 else 2e-3
        w = want.astype(np.float64)
        g = got.astype(np.float64)
        assert np.array_equal(np.isnan(g), np.isnan(w)), f"{what}: NaN positions differ"
        finite = np.isfinite(w)
        assert np.array_equal(g[~finite & ~np.isnan(w)], w[~finite & ~np.isnan(w)]), f"{what}: infinities differ"
        if finite.any():
            scale = float(np.abs(w[finite]).max())
            err = float(np.abs(g[finite] - w[finite]).max())
            assert err <= rel * max(scale, 1e-3), f"{what}: max abs error {err:.3g} > {rel} x scale {scale:.3g}"
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.fixture(autouse=True)
def compiled_engine(monkeypatch, tmp_path):
    def run_ref(model, feeds):
        graph, outs = _compile_and_run(model, feeds, tmp_path)
        return graph, [outs[o] for o in graph.outputs]

    def run_edgec_reference(model, feeds):
        return _compile_and_run(model, feeds, tmp_path)

    monkeypatch.setattr(_harness, "run_ref", run_ref)
    monkeypatch.setattr(_harness, "assert_match", _assert_match)
    monkeypatch.setattr(test_nn_harness, "run_edgec_reference", run_edgec_reference)
    yield
