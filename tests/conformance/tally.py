"""Tally of the ONNX node conformance run, printed at the end of the session.

Called from the root tests/conftest.py: under pytest-xdist only the root conftest is loaded in
the controlling process, where reports arrive and the summary is printed.

Each node test records ``node_status`` = "claimed", and the unsupported-models test records
"unsupported:<count>", as user properties;
reports reach this hook in the controlling process also under pytest-xdist. A node test
whose report carries no status failed before classification (for example a crashed xdist
worker): it counts as claimed and not passed.
"""
from __future__ import annotations

_NODE_TEST = "test_onnx_node.py::test_node["
_results: dict[str, dict] = {}


_unsupported: dict[str, str] = {}


def record(report) -> None:
    for k, v in report.user_properties:
        if k == "node_status" and str(v).startswith("unsupported:"):
            _unsupported[report.nodeid] = str(v).split(":", 1)[1]
    if _NODE_TEST not in report.nodeid:
        return
    r = _results.setdefault(report.nodeid, {"status": None, "failed": False, "passed_call": False})
    for k, v in report.user_properties:
        if k == "node_status":
            r["status"] = v
    if report.failed:
        r["failed"] = True
    if report.when == "call" and report.passed:
        r["passed_call"] = True


def summary(terminalreporter) -> None:
    if not _results:
        return
    unsupported = sum(int(v) for v in _unsupported.values())
    claimed = [r for r in _results.values() if r["status"] == "claimed" or r["failed"]]
    passed = sum(1 for r in claimed if r["passed_call"] and not r["failed"])
    terminalreporter.write_sep("-", "onnx node conformance")
    terminalreporter.write_line(f"node conformance: claimed {len(claimed)}, passed {passed}, unsupported {unsupported}")
