"""Shared pytest configuration for every edgec test.

Switches (environment or command line):
- ``EDGEC_TEST_ENGINE=edgec|reference`` (default ``edgec``): how tests that run whole models
  execute them (see tests/helpers.py). ``reference`` needs no TVM and no C compiler; tests
  that can only mean the compiled artifact (CLI, C program) are skipped with that reason.
- ``--run-slow`` or ``EDGEC_SLOW=1``: run every test marked ``slow``; without it a deterministic
  sample of them runs (every Nth test id, N = ``EDGEC_SLOW_SAMPLE``, default 3) and the rest is
  deselected and counted in the summary.
- ``EDGEC_TUNING_RECORDS``: unless set, points at a file that does not exist, so the user's
  ``edgec tune`` records never change what a test builds.
- ``EDGEC_CACHE_DIR``: the kernel cache. Unless set by the user, every test session gets a
  fresh one under pytest's base temp folder, shared by all xdist workers, so a kernel
  compiled by one test is reused by the next.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `import edgec` and `from tests.helpers import ...` from any cwd
    sys.path.insert(0, str(REPO))

from tests.conformance import tally as _tally  # noqa: E402
from tests.helpers import engine as _engine  # noqa: E402

_SLOW_REASON = "slow test: run with --run-slow or EDGEC_SLOW=1"
_COMPILED_REASON = "needs the compiled artifact; EDGEC_TEST_ENGINE=reference was chosen"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (same as EDGEC_SLOW=1)")


def run_slow(config) -> bool:
    return bool(config.getoption("--run-slow")) or os.environ.get("EDGEC_SLOW", "") not in ("", "0")


def pytest_configure(config):
    config.addinivalue_line("markers", "compiled: needs the compiled artifact (edgec engine), not the "
                                       "numpy reference (CLI, C runtime)")
    _engine()  # a typo in EDGEC_TEST_ENGINE is a usage error, not a silent default


def _sample_every() -> int:
    try:
        return max(1, int(os.environ.get("EDGEC_SLOW_SAMPLE", "3")))
    except ValueError:
        raise pytest.UsageError("EDGEC_SLOW_SAMPLE must be an integer >= 1") from None


def pytest_collection_modifyitems(config, items):
    """Without --run-slow, run a deterministic sample of the slow tests (every Nth by test id,
    N = EDGEC_SLOW_SAMPLE, default 3) and deselect the rest: they are reported as deselected,
    never as skipped or passed."""
    slow = run_slow(config)
    reference = _engine() == "reference"
    if not slow:
        every = _sample_every()
        slow_ids = sorted(item.nodeid for item in items if "slow" in item.keywords)
        keep = set(slow_ids[::every])
        dropped = [item for item in items if "slow" in item.keywords and item.nodeid not in keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if item not in dropped]
            config._edgec_slow_deselected = len(dropped)
    for item in items:
        if "compiled" in item.keywords and reference:
            item.add_marker(pytest.mark.skip(reason=_COMPILED_REASON))


def pytest_runtest_logreport(report):
    _tally.record(report)


def pytest_sessionfinish(session):
    # an xdist worker hands its count of deselected slow tests to the controller
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["edgec_slow_deselected"] = getattr(session.config, "_edgec_slow_deselected", 0)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    n = getattr(node, "workeroutput", {}).get("edgec_slow_deselected", 0)
    node.config._edgec_slow_deselected = max(getattr(node.config, "_edgec_slow_deselected", 0), n)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    _tally.summary(terminalreporter)
    skipped = terminalreporter.stats.get("skipped", [])
    reasons = [r.longrepr[2] if isinstance(r.longrepr, tuple) else str(r.longrepr) for r in skipped]
    n_slow = getattr(config, "_edgec_slow_deselected", 0)
    n_ref = sum(_COMPILED_REASON in s for s in reasons)
    if n_slow or n_ref:
        terminalreporter.write_sep("-", "edgec")
    if n_slow:
        terminalreporter.write_line(f"{n_slow} slow test(s) deselected (a sample of 1 in {_sample_every()} ran): "
                                    f"{_SLOW_REASON}")
    if n_ref:
        terminalreporter.write_line(f"{n_ref} test(s) not run: {_COMPILED_REASON}")


@pytest.fixture(scope="session")
def engine() -> str:
    """'edgec' or 'reference' (EDGEC_TEST_ENGINE)."""
    return _engine()


@pytest.fixture(scope="session", autouse=True)
def kernel_cache_dir(tmp_path_factory) -> Path:
    """The session-wide kernel cache (EDGEC_CACHE_DIR), shared by xdist workers."""
    preset = os.environ.get("EDGEC_CACHE_DIR")
    if preset:
        path = Path(preset)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # workers get <base>/popen-gwN; share the parent
        base = base.parent
    path = base / "edgec-kernel-cache"
    path.mkdir(parents=True, exist_ok=True)
    os.environ["EDGEC_CACHE_DIR"] = str(path)
    try:
        yield path
    finally:
        os.environ.pop("EDGEC_CACHE_DIR", None)


@pytest.fixture(scope="session", autouse=True)
def tuning_records_isolated(tmp_path_factory):
    """No test reads the user's tuning records (~/.cache/edgec/tuning.json): EDGEC_TUNING_RECORDS
    points at a file that does not exist unless the user set it (tests that tune pass their own)."""
    if os.environ.get("EDGEC_TUNING_RECORDS"):
        yield
        return
    os.environ["EDGEC_TUNING_RECORDS"] = str(tmp_path_factory.getbasetemp() / "no-tuning-records.json")
    try:
        yield
    finally:
        os.environ.pop("EDGEC_TUNING_RECORDS", None)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
