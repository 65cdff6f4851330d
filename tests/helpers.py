"""Shared helpers for tests that run whole models: edgec vs onnxruntime vs stored outputs.

    from tests.helpers import run_edgec, run_ort, assert_close

    want = run_ort(model, feeds)                       # {onnx output name: array}
    got = run_edgec(model, feeds, tmp_path)            # same keys, same order
    for k in want:
        assert_close(got[k], want[k], rel=1e-4)

``run_edgec`` follows the engine chosen with ``EDGEC_TEST_ENGINE`` (see tests/conftest.py):
- ``edgec`` (default): ``edgec.compile`` to an artifact under ``tmp_path``, ``edgec.load``
  with one thread, ``Model.run``. Kernels are compiled through the session-wide cache
  (``EDGEC_CACHE_DIR``, set by conftest).
- ``reference``: ``import_onnx`` + the numpy reference interpreter (``edgec.reference.run_graph``):
  no TVM, no C compiler. Checks the frontend and the op semantics only.

Outputs always come back keyed by the ONNX graph's output names in graph order, whatever
names the artifact gives them, so results from edgec, onnxruntime and stored .pb files line
up by position.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pytest

ENGINES = ("edgec", "reference")


def engine() -> str:
    """The engine selected by EDGEC_TEST_ENGINE (default ``edgec``)."""
    name = os.environ.get("EDGEC_TEST_ENGINE", "edgec").strip() or "edgec"
    if name not in ENGINES:
        raise pytest.UsageError(f"EDGEC_TEST_ENGINE={name!r}: expected one of {', '.join(ENGINES)}")
    return name


def load_proto(model):
    """An onnx.ModelProto from a path, bytes or ModelProto (external data not loaded)."""
    import onnx
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    return onnx.load(str(model), load_external_data=False)


def graph_io_names(model) -> tuple[list[str], list[str]]:
    """(runtime input names, output names) of an ONNX model, initializers excluded."""
    proto = load_proto(model)
    inits = {t.name for t in proto.graph.initializer}
    return [vi.name for vi in proto.graph.input if vi.name not in inits], [vo.name for vo in proto.graph.output]


def _model_arg(model):
    """What to hand to edgec/onnxruntime: a str path for paths, else the object itself."""
    return str(model) if isinstance(model, Path) else model


def _by_onnx_names(onnx_outputs: Sequence[str], names: Sequence[str], values: Mapping[str, np.ndarray],
                   who: str) -> dict[str, np.ndarray]:
    """Key ``values`` (produced under ``names``, in graph order) by the ONNX output names."""
    if len(names) != len(onnx_outputs):
        pytest.fail(f"{who} produced {len(names)} outputs {list(names)}, the ONNX model has "
                    f"{len(onnx_outputs)} {list(onnx_outputs)}", pytrace=False)
    missing = [n for n in names if n not in values]
    if missing:
        pytest.fail(f"{who}: outputs {missing} are declared but missing from the results {sorted(values)}", pytrace=False)
    return {o: np.asarray(values[n]) for o, n in zip(onnx_outputs, names)}


def _missing(*specs: str) -> str:
    """'' when every ``module:attr`` imports, else what is missing (for a clear failure)."""
    import importlib
    for spec in specs:
        mod, attr = spec.split(":")
        try:
            m = importlib.import_module(mod)
        except ImportError as e:
            return f"cannot import {mod}: {e}"
        if not hasattr(m, attr):
            return f"{mod} has no {attr}()"
    return ""


def prepare_edgec(model, tmp_path: Path, input_shapes: Mapping[str, Sequence[int]],
                  threads: int = 1) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """Compile (or import, in reference mode) once; returns ``run(feeds) -> {ONNX output name: array}``.

    With the edgec engine the artifact is written to ``tmp_path / "art"``.
    """
    _, onnx_outputs = graph_io_names(model)
    input_shapes = {k: tuple(int(d) for d in v) for k, v in input_shapes.items()}
    if engine() == "reference":
        missing = _missing("edgec.frontend.onnx_import:import_onnx", "edgec.reference:run_graph")
        if missing:
            pytest.fail(f"reference engine unavailable ({missing}); edgec.reference.run_graph is needed "
                        f"for EDGEC_TEST_ENGINE=reference", pytrace=False)
        from edgec.frontend.onnx_import import import_onnx
        from edgec.reference import run_graph
        graph = import_onnx(_model_arg(model), input_shapes=input_shapes)

        def run_reference(feeds):
            outs = run_graph(graph, {k: np.asarray(v, order="C") for k, v in feeds.items()})
            if not isinstance(outs, Mapping):  # a sequence in graph output order
                outs = dict(zip(graph.outputs, outs))
            return _by_onnx_names(onnx_outputs, graph.outputs, outs, "edgec reference")
        return run_reference

    import edgec
    missing = _missing("edgec.compiler:compile_model", "edgec.runtime:load")
    if missing:
        pytest.fail(f"edgec engine unavailable ({missing}); run with EDGEC_TEST_ENGINE=reference to check "
                    f"the frontend and reference semantics only", pytrace=False)
    art = edgec.compile(_model_arg(model), target="host", input_shapes=input_shapes,
                        output_dir=Path(tmp_path) / "art")
    m = edgec.load(art, threads=threads)
    names = [t.name for t in m.outputs]

    def run_compiled(feeds):
        outs = m.run({k: np.asarray(v, order="C") for k, v in feeds.items()})
        return _by_onnx_names(onnx_outputs, names, outs, "edgec")
    return run_compiled


def run_edgec(model, feeds: Mapping[str, np.ndarray], tmp_path: Path,
              input_shapes: Mapping[str, Sequence[int]] | None = None,
              threads: int = 1) -> dict[str, np.ndarray]:
    """Run ``model`` on ``feeds`` with the selected engine; {ONNX output name: array}.

    ``input_shapes`` defaults to the shapes of ``feeds``.
    """
    if input_shapes is None:
        input_shapes = {k: np.shape(v) for k, v in feeds.items()}
    return prepare_edgec(model, tmp_path, input_shapes, threads=threads)(feeds)


def ort_session(model, threads: int = 1, optimize: bool = False):
    """An onnxruntime CPU session: one thread, sequential, graph optimizations off unless asked."""
    try:
        import onnxruntime as ort
    except ImportError as e:  # a test dependency (pip install edgec[test])
        pytest.fail(f"onnxruntime is needed as the reference for this test: {e}", pytrace=False)
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # no warnings about unused initializers
    src = str(model) if isinstance(model, (str, Path)) else load_proto(model).SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def run_ort(model, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime (CPU, graph optimizations disabled, one thread); {output name: array}."""
    sess = ort_session(model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(feeds))))


def max_abs_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| where ``want`` is finite; inf when NaN positions or infinities differ."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        return float("inf")
    inf_w = np.isinf(want)
    if not np.array_equal(got[inf_w], want[inf_w]):
        return float("inf")
    fin = np.isfinite(want)
    return float(np.max(np.abs(got[fin] - want[fin]))) if fin.any() else 0.0


def output_scale(want: np.ndarray) -> float:
    """max(1, max |want|) over finite elements: the scale relative tolerances refer to."""
    w = np.abs(np.asarray(want, dtype=np.float64))
    w = w[np.isfinite(w)]
    return max(1.0, float(w.max())) if w.size else 1.0


def assert_close(got: Any, want: Any, rel: float = 1e-4, what: str = "output") -> float:
    """Fail unless ``got`` matches ``want``: same shape and dtype, and for floats
    max abs error <= rel * max(1, max|want|) (NaN where want is NaN, infs equal); integer and
    bool outputs must match exactly. Returns the max abs error."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        pytest.fail(f"{what}: shape {got.shape}, expected {want.shape}", pytrace=False)
    if got.dtype != want.dtype:
        pytest.fail(f"{what}: dtype {got.dtype}, expected {want.dtype}", pytrace=False)
    if not np.issubdtype(want.dtype, np.floating):
        bad = got != want
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            pytest.fail(f"{what}: {int(bad.sum())} of {want.size} elements differ (exact match required); "
                        f"first at {idx}: got {got[idx]!r}, expected {want[idx]!r}", pytrace=False)
        return 0.0
    err = max_abs_error(got, want)
    tol = rel * output_scale(want)
    if not err <= tol:
        if np.isinf(err):
            pytest.fail(f"{what}: NaN/inf positions differ from the expected output", pytrace=False)
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        diff[~np.isfinite(diff)] = 0
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
        pytest.fail(f"{what}: max abs error {err:.3g} > {tol:.3g} (rel {rel:g} x scale {output_scale(want):.4g}); "
                    f"worst at {idx}: got {got[idx]!r}, expected {want[idx]!r}", pytrace=False)
    return err


def seeded_inputs(model, shapes: Mapping[str, Sequence[int]], seed: int,
                  low: float = -1.0, high: float = 1.0) -> dict[str, np.ndarray]:
    """Uniform random float32 feeds for every runtime input of ``model`` (fixed seed)."""
    rng = np.random.default_rng(seed)
    names, _ = graph_io_names(model)
    missing = [n for n in names if n not in shapes]
    if missing:
        pytest.fail(f"no shape given for inputs {missing}", pytrace=False)
    return {n: rng.uniform(low, high, size=tuple(shapes[n])).astype(np.float32) for n in names}


__all__ = ["engine", "prepare_edgec", "run_edgec", "run_ort", "ort_session", "assert_close", "max_abs_error",
           "output_scale", "seeded_inputs", "load_proto", "graph_io_names"]
