"""ONNX backend node tests (onnx v1.22.0 `backend/test/data/node`), end to end through edgec.

One test per node test folder; the data is loaded by tests/ops_ref/node_runner.py
(EDGEC_ONNX_NODE_DATA overrides its default folder). A test is *claimed* when
``import_onnx`` does not raise ``UnsupportedModelError`` for its model with the input shapes
of its input .pb files. A claimed test must compile, run and reproduce every stored output
(floats: rtol 1e-3, atol 1e-5, NaNs in place; integers and bools exactly; same dtypes and
shapes), and fails on any mismatch, error or crash, including an importer that refuses a
valid test model with another error. Unsupported tests are not test items (a skip is not a pass):
they are classified at collection, and one test checks that every one of them is rejected with
an ``UnsupportedModelError`` whose items name the node, op, opset and reason. The session prints ``node conformance: claimed N, passed M, unsupported K``
(tests/conformance/conftest.py).

Claimed tests compile through the session-wide kernel cache (tests/conftest.py) and are
independent, so ``pytest -n 2`` spreads them over workers. With EDGEC_TEST_ENGINE=reference
they run through the numpy reference interpreter instead of the compiled artifact.
"""
from __future__ import annotations

import functools

import pytest

from tests.helpers import run_edgec
from tests.ops_ref.node_runner import NotTensorData, compare, data_dir, iter_node_tests, load_node_test

STATUS = "node_status"  # user property read by conftest.py: "claimed", or the unsupported count


@functools.lru_cache(maxsize=1)
def _classify() -> tuple[list[str], dict[str, str]]:
    """(claimed test names, {unsupported test name: the importer's first reason})."""
    from edgec.errors import UnsupportedModelError
    from edgec.frontend.onnx_import import import_onnx
    claimed, unsupported = [], {}
    for path in iter_node_tests(data_dir(), tensor_only=False):
        try:
            model_path, feeds, _ = load_node_test(path)
            shapes = {k: tuple(v.shape) for k, v in feeds.items()}
        except NotTensorData:
            model_path, shapes = path / "model.onnx", None
        try:
            import_onnx(str(model_path), input_shapes=shapes, name=path.name)
        except UnsupportedModelError as e:
            unsupported[path.name] = str(e.items[0]) if e.items else str(e)
            continue
        except Exception:  # noqa: BLE001  claimed: test_node reports the refusal as a failure
            pass
        claimed.append(path.name)
    return claimed, unsupported


def _cases() -> list:
    if not data_dir().is_dir():
        # collected as one failing test, never silently empty
        return [pytest.param(None, id="node-data-missing")]
    return _classify()[0]


@pytest.mark.parametrize("name", _cases())
def test_node(name, tmp_path, record_property):
    if name is None:
        pytest.fail(f"ONNX node test data not found at {data_dir()}; set EDGEC_ONNX_NODE_DATA to the "
                    f"onnx-node folder (see /work/shared/data/onnx-node/SOURCE.md)", pytrace=False)
    from edgec.errors import EdgecError
    from edgec.frontend.onnx_import import import_onnx

    path = data_dir() / name
    record_property(STATUS, "claimed")
    try:
        model_path, feeds, expected = load_node_test(path)
    except NotTensorData as e:
        pytest.fail(f"edgec imported {name}, but its test data is not tensors: {e}", pytrace=False)
    shapes = {k: tuple(v.shape) for k, v in feeds.items()}
    try:
        import_onnx(str(model_path), input_shapes=shapes, name=name)
    except EdgecError as e:  # a valid ONNX test model refused without saying "unsupported"
        pytest.fail(f"import_onnx refused {name} with {type(e).__name__}: {e} "
                    f"(expected success or UnsupportedModelError)", pytrace=False)
    got = run_edgec(model_path, feeds, tmp_path, input_shapes=shapes)
    problems = [f"output {k}: {why}" for k, (g, w) in enumerate(zip(got.values(), expected))
                if (why := compare(g, w))]
    if problems:
        pytest.fail(f"{name}: " + "; ".join(problems), pytrace=False)


def test_unsupported_models_are_rejected_with_every_reason(record_property):
    """Every unclaimed node test fails to import with one UnsupportedModelError whose items each
    name a node, an op, the opset and a reason (and nothing is left half-imported)."""
    from edgec.errors import UnsupportedModelError
    from edgec.frontend.onnx_import import import_onnx
    if not data_dir().is_dir():
        pytest.fail(f"ONNX node test data not found at {data_dir()}", pytrace=False)
    _, unsupported = _classify()
    record_property(STATUS, f"unsupported:{len(unsupported)}")
    bad = []
    for name in sorted(unsupported):
        path = data_dir() / name
        try:
            model_path, feeds, _ = load_node_test(path)
            shapes = {k: tuple(v.shape) for k, v in feeds.items()}
        except NotTensorData:
            model_path, shapes = path / "model.onnx", None
        with pytest.raises(UnsupportedModelError) as info:
            import_onnx(str(model_path), input_shapes=shapes, name=name)
        for item in info.value.items:
            if not (item.node and item.op and item.reason) or str(item) not in str(info.value):
                bad.append(f"{name}: incomplete item {item!r}")
    assert not bad, "\n".join(bad[:20])
    assert len(unsupported) + len(_classify()[0]) == sum(1 for _ in iter_node_tests(data_dir(), tensor_only=False))
