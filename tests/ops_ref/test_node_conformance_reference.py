"""ONNX backend node tests through edgec's frontend and the numpy reference interpreter.

Every test folder of /work/shared/data/onnx-node (EDGEC_ONNX_NODE_DATA) whose model imports
(edgec claims it) must reproduce the stored outputs (see node_runner.compare). Tests the
importer rejects with UnsupportedModelError, or with another EdgecError such as a zero-sized
input shape, are counted, not failed; any other exception is a failure. The counts are printed
at the end of the session (conftest.py) and kept in ``SUMMARY``.
"""
from __future__ import annotations

import collections
import traceback

import pytest

from tests.ops_ref.node_runner import data_dir, iter_node_tests, run_node_test

SUMMARY: dict[str, object] = {}


def test_node_conformance_reference():
    root = data_dir()
    if not (root / "INDEX.tsv").is_file():
        pytest.fail(f"ONNX node test data not found at {root}; set EDGEC_ONNX_NODE_DATA", pytrace=False)
    counts = collections.Counter()
    failures = []
    tests = list(iter_node_tests(root))
    counts["not-tensor"] = len(list(iter_node_tests(root, tensor_only=False))) - len(tests)
    for path in tests:
        try:
            r = run_node_test(path)
        except Exception as e:  # a crash in the importer or a reference is a bug, not "unsupported"
            counts["failed"] += 1
            tb = traceback.extract_tb(e.__traceback__)[-1]
            failures.append(f"{path.name}: {type(e).__name__}: {e} (at {tb.filename}:{tb.lineno})")
            continue
        counts[r.status] += 1
        if r.status == "failed":
            failures.append(f"{r.name}: {r.detail}")
    claimed = counts["passed"] + counts["failed"]
    SUMMARY.update(claimed=claimed, passed=counts["passed"], failed=counts["failed"],
                   unsupported=counts["unsupported"], rejected=counts["rejected"], not_tensor=counts["not-tensor"])
    line = (f"node conformance (reference): claimed {claimed}, passed {counts['passed']}, "
            f"failed {counts['failed']}, unsupported {counts['unsupported']}, "
            f"rejected (other EdgecError) {counts['rejected']}")
    print(line)
    assert claimed > 0, "no node test was claimed"
    assert not failures, line + "\n" + "\n".join(failures)
