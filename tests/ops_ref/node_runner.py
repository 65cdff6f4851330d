"""Run the ONNX backend node tests (onnx v1.22.0 `backend/test/data/node`) through edgec.

    for path in iter_node_tests():                       # every test folder, sorted
        model, inputs, outputs = load_node_test(path)    # model.onnx, {name: array}, [array, ...]
        result = run_node_test(path)                     # NodeResult: status + detail

``input_N.pb`` belongs to the N-th graph input that is not an initializer and
``output_N.pb`` to the N-th graph output (as in onnx's own runner). Tests whose .pb files
hold sequences or optionals raise ``NotTensorData``.

A test is *claimed* when ``import_onnx`` accepts its model with the input shapes of its
input .pb files; ``run_node_test`` then runs the graph with the numpy reference interpreter
and compares every output with ``compare`` (floats rtol 1e-3, atol 1e-5, NaNs in place;
everything else exactly; same dtype and shape).

The data folder defaults to shared/data/onnx-node (tests/shared_data.py); EDGEC_ONNX_NODE_DATA overrides it.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np



class NotTensorData(Exception):
    """A test input or output is a sequence/optional value, not a tensor."""


def data_dir() -> Path:
    from tests.shared_data import shared_data
    return Path(os.environ.get("EDGEC_ONNX_NODE_DATA") or shared_data("onnx-node"))


def iter_node_tests(root: Path | None = None, tensor_only: bool = True) -> Iterator[Path]:
    """Test folders (containing model.onnx), sorted by name; ``tensor_only`` skips the ones
    INDEX.tsv marks as using sequence or optional values."""
    root = Path(root or data_dir())
    skip = set()
    index = root / "INDEX.tsv"
    if tensor_only and index.is_file():
        with open(index, newline="") as f:
            skip = {row["test"] for row in csv.DictReader(f, delimiter="\t") if row["pb_kinds"] != "tensor"}
    for d in sorted(root.iterdir()):
        if d.is_dir() and (d / "model.onnx").is_file() and d.name not in skip:
            yield d


def _read_tensor(path: Path) -> np.ndarray:
    import onnx
    from onnx import numpy_helper
    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(t)


def _numbered(ds: Path, prefix: str) -> list[Path]:
    files = sorted(ds.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    if [int(p.stem.split("_")[1]) for p in files] != list(range(len(files))):
        raise ValueError(f"{ds}: {prefix}_N.pb files are not numbered 0..{len(files) - 1}")
    return files


def load_node_test(path: Path | str) -> tuple[Path, dict[str, np.ndarray], list[np.ndarray]]:
    """(model path, {graph input name: array}, [expected output arrays in graph order])."""
    import onnx
    path = Path(path)
    model_path = path / "model.onnx"
    model = onnx.load(str(model_path))
    inits = {t.name for t in model.graph.initializer}
    in_vis = [vi for vi in model.graph.input if vi.name not in inits]
    out_vis = list(model.graph.output)
    for vi in in_vis + out_vis:
        if vi.type.WhichOneof("value") != "tensor_type":
            raise NotTensorData(f"{path.name}: {vi.name!r} is a {vi.type.WhichOneof('value')}")
    ds = path / "test_data_set_0"
    in_files, out_files = _numbered(ds, "input"), _numbered(ds, "output")
    if len(in_files) > len(in_vis) or len(out_files) != len(out_vis):
        raise ValueError(f"{path.name}: {len(in_files)}/{len(out_files)} input/output .pb files for "
                         f"{len(in_vis)}/{len(out_vis)} graph inputs/outputs")
    inputs = {vi.name: _read_tensor(p) for vi, p in zip(in_vis, in_files)}
    outputs = [_read_tensor(p) for p in out_files]
    return model_path, inputs, outputs


def compare(got: np.ndarray, want: np.ndarray, rtol: float = 1e-3, atol: float = 1e-5) -> str | None:
    """None when ``got`` matches ``want``, else a one-line reason.

    Same shape and dtype; floats: |got - want| <= atol + rtol * |want| with NaNs where ``want``
    has them and equal infinities (float16 outputs: rtol at least 2^-8, i.e. 4 float16 ulps, since
    the stored outputs often come from float32 math rounded once); integers and bools exactly."""
    got, want = np.asarray(got), np.asarray(want)
    if want.dtype == np.float16:
        rtol = max(rtol, 2.0 ** -8)
    if got.shape != want.shape:
        return f"shape {list(got.shape)}, expected {list(want.shape)}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype}, expected {want.dtype}"
    if want.dtype.kind == "f":
        g, w = got.astype(np.float64), want.astype(np.float64)
        ok = np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
        if ok.all():
            return None
        bad = np.argwhere(~ok)
        idx = tuple(int(i) for i in bad[0])
        return (f"{len(bad)} of {want.size} elements differ beyond rtol {rtol:g}/atol {atol:g}; "
                f"first at {idx}: got {g[idx]!r}, expected {w[idx]!r}")
    bad = np.argwhere(got != want)
    if len(bad) == 0:
        return None
    idx = tuple(int(i) for i in bad[0])
    return f"{len(bad)} of {want.size} elements differ; first at {idx}: got {got[idx]!r}, expected {want[idx]!r}"


def compare_all(got: Sequence[np.ndarray], want: Sequence[np.ndarray], rtol: float = 1e-3,
                atol: float = 1e-5) -> list[str]:
    """Reasons for every mismatching output (empty when all match)."""
    if len(got) != len(want):
        return [f"{len(got)} outputs, expected {len(want)}"]
    return [f"output {k}: {r}" for k, (g, w) in enumerate(zip(got, want)) if (r := compare(g, w, rtol, atol))]


@dataclass(frozen=True)
class NodeResult:
    """Outcome of one node test: status is 'passed', 'failed', 'unsupported' (UnsupportedModelError),
    'rejected' (another EdgecError from the importer, e.g. a zero-sized input) or 'not-tensor'."""
    name: str
    status: str
    detail: str = ""


def run_node_test(path: Path | str) -> NodeResult:
    """Import the test's model with its input shapes, run it with the reference interpreter and
    compare with the stored outputs. Errors that are not EdgecErrors propagate (they are bugs)."""
    from edgec.errors import EdgecError, UnsupportedModelError
    from edgec.frontend.onnx_import import import_onnx
    from edgec.reference import run_graph

    path = Path(path)
    try:
        model_path, inputs, outputs = load_node_test(path)
    except NotTensorData as e:
        return NodeResult(path.name, "not-tensor", str(e))
    shapes = {k: tuple(v.shape) for k, v in inputs.items()}
    try:
        graph = import_onnx(str(model_path), input_shapes=shapes)
    except UnsupportedModelError as e:
        first = e.items[0] if e.items else None
        return NodeResult(path.name, "unsupported", str(first) if first else str(e))
    except EdgecError as e:
        return NodeResult(path.name, "rejected", f"{type(e).__name__}: {e}")
    try:
        got = run_graph(graph, inputs)
    except EdgecError as e:
        return NodeResult(path.name, "failed", f"run_graph: {type(e).__name__}: {e}")
    problems = compare_all([got[o] for o in graph.outputs], outputs)
    return NodeResult(path.name, "failed" if problems else "passed", "; ".join(problems))
