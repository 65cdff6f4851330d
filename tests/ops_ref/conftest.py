"""Prints the reference node-conformance counts at the end of a session that ran them."""
from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    import sys
    mod = sys.modules.get("tests.ops_ref.test_node_conformance_reference")
    s = getattr(mod, "SUMMARY", None)
    if s:
        terminalreporter.write_sep("-", "edgec reference node conformance")
        terminalreporter.write_line(
            f"claimed {s['claimed']}, passed {s['passed']}, failed {s['failed']}, unsupported {s['unsupported']}, "
            f"rejected by the importer (e.g. zero-sized inputs) {s['rejected']}, tests with sequence/optional values (not run) {s['not_tensor']}")
