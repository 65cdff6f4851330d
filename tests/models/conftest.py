"""Prints the numeric errors the whole-model tests saw, at the end of the session."""
from __future__ import annotations

_rows: list[str] = []


def pytest_runtest_logreport(report):
    if report.when != "call":
        return
    for key, value in report.user_properties:
        if key == "light_error":
            name, what, err, scale = value
            _rows.append(f"light_{name} {what}: max abs error {err:.3g}, scale {scale:.4g}, "
                         f"rel {err / scale:.3g} ({report.outcome})")
        elif key == "ppocr_error":
            seed, out, err = value
            _rows.append(f"ppocr_cls seed {seed} {out}: max abs error vs onnxruntime {err:.3g} ({report.outcome})")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _rows:
        terminalreporter.write_sep("-", "whole-model errors")
        for r in sorted(_rows):
            terminalreporter.write_line(r)
