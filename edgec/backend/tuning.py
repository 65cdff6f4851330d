"""Measured schedule choices: the choice points of the kernel generators and the tuning records.

A generator that picks a schedule parameter with a cost model declares the choice point::

    mr, nw = tunable("tile", ranked)      # ranked: candidates best-first by the cost model

Outside tuning this returns ``ranked[0]`` (the untuned default: a compile without records is
exactly what it was). ``edgec tune`` (edgec.tune) generates each hot kernel once under
``explore()`` to learn its choice points and their candidates, builds and times the kernel with
each candidate on the target, and stores the fastest in a ``TuningRecords`` file; later compiles
look every kernel up there (``record_key``: op, structural attributes, shapes, dtypes, target;
not the requantization constants, so a re-calibrated model keeps its records) and generate it with the recorded choice (``KernelSpec.tuning``, part of the kernel's
cache key). A record whose value is no longer among the generator's candidates (the generator
changed) is ignored: the default is used.

Records file (JSON, written atomically)::

    {"format": "edgec-tuning", "version": 1,
     "records": {"<spec key>": {"op": "qconv", "kernel": "uint8[1, 64, 56, 56], ... -> ...",
                                "target": "x86_64", "config": {"tile": [4, 3]},
                                "default": {"tile": [8, 2]}, "default_us": 812.0, "best_us": 655.1,
                                "trials": 6, "edgec_version": "..."}}}

``config`` is empty when the default was the fastest (kernels keep their untuned identity).
The default file is ``$EDGEC_TUNING_RECORDS`` or ``~/.cache/edgec/tuning.json``.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import EdgecError

FORMAT = "edgec-tuning"
VERSION = 1


class TuningError(EdgecError):
    """A tuning records file cannot be read, or tuning options are invalid."""


def _norm(v: Any) -> Any:
    """JSON-comparable form of a candidate (tuples become lists)."""
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return v


def _denorm(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_denorm(x) for x in v)
    return v


# -- choice points -----------------------------------------------------------------------------------

_state = threading.local()


def _current() -> tuple[dict, dict | None]:
    return getattr(_state, "config", {}), getattr(_state, "offers", None)


def tunable(name: str, candidates: Sequence) -> Any:
    """The value of choice point ``name``: the configured one if it is among ``candidates``, else
    ``candidates[0]`` (the generator's cost-model choice). Under ``explore()`` the candidates are
    recorded."""
    cands = list(candidates)
    if not cands:
        raise ValueError(f"choice point {name!r} without candidates")
    config, offers = _current()
    if offers is not None and name not in offers:
        offers[name] = [_norm(c) for c in cands]
    if name in config:
        want = _norm(config[name])
        for c in cands:
            if _norm(c) == want:
                return c
    return cands[0]


@contextlib.contextmanager
def applying(config) -> Iterator[None]:
    """Generate with ``config`` ({name: value} or KernelSpec.tuning pairs) for the choice points."""
    old = getattr(_state, "config", {})
    _state.config = dict(config or ())
    try:
        yield
    finally:
        _state.config = old


@contextlib.contextmanager
def explore() -> Iterator[dict]:
    """Record the choice points a generation goes through: {name: [candidates, default first]}."""
    old = getattr(_state, "offers", None)
    offers: dict = {}
    _state.offers = offers
    try:
        yield offers
    finally:
        _state.offers = old


def spec_tuning(config: dict) -> tuple:
    """A config dict as the hashable ``KernelSpec.tuning`` (sorted (name, value) pairs)."""
    return tuple(sorted((k, _denorm(_norm(v))) for k, v in config.items()))


# -- records -----------------------------------------------------------------------------------------

# attributes that are numbers the kernel computes with, not the shape of its loops: a re-calibrated
# model (new multipliers, zero points, tables) keeps its tuning records
VALUE_ATTRS = frozenset(("multiplier", "shift", "out_zero_point", "x_zero_point", "a_zero_point", "b_zero_point",
                         "in_zero_point", "qmin", "qmax", "scale", "zero_point", "table", "a_multiplier",
                         "a_shift", "b_multiplier", "b_shift", "act_frac_bits", "act_hmin", "act_hmax",
                         "act_pre_shift", "act_multiplier", "act_right_shift", "acc_bound"))


def record_key(spec) -> str:
    """The records' key of a kernel: op, structural attributes, shapes, dtypes, target."""
    import hashlib
    payload = json.dumps([spec.op, sorted((k, repr(v)) for k, v in spec.attrs.items() if k not in VALUE_ATTRS),
                          [None if t is None else [t.dtype, list(t.shape)] for t in spec.inputs],
                          [[t.dtype, list(t.shape)] for t in spec.outputs], spec.target.cache_key()], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def default_records_path() -> Path:
    env = os.environ.get("EDGEC_TUNING_RECORDS", "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "edgec" / "tuning.json"


class TuningRecords:
    """The tuning records of one file (see the module doc); ``path=None``: in memory only."""

    def __init__(self, path: str | os.PathLike | None = None, records: dict | None = None):
        self.path = None if path is None else Path(path)
        self.records: dict[str, dict] = dict(records or {})
        if self.path is not None and self.path.exists():
            self.records.update(self._read(self.path))

    @staticmethod
    def _read(path: Path) -> dict[str, dict]:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TuningError(f"tuning records {path}: not a readable JSON file ({e}); delete it or pass another "
                              f"file") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("records"), dict):
            raise TuningError(f"tuning records {path}: not an edgec tuning file (format {FORMAT!r} expected)")
        if data.get("version") != VERSION:
            raise TuningError(f"tuning records {path}: version {data.get('version')!r}, this edgec reads {VERSION}")
        recs = data["records"]
        for key, r in recs.items():
            if not isinstance(r, dict) or not isinstance(r.get("config"), dict):
                raise TuningError(f"tuning records {path}: record {key[:16]}... has no config object")
        return recs

    def __len__(self) -> int:
        return len(self.records)

    def config_for(self, spec) -> dict:
        """The recorded choices for ``spec`` (an untuned KernelSpec), {} if none."""
        r = self.records.get(record_key(spec))
        return dict(r["config"]) if r else {}

    def apply(self, spec):
        """``spec`` with its recorded choices (``spec`` itself when there are none)."""
        cfg = self.config_for(spec)
        if not cfg:
            return spec
        from dataclasses import replace
        return replace(spec, tuning=spec_tuning(cfg))

    def add(self, spec, record: dict) -> None:
        self.records[record_key(spec)] = record

    def save(self) -> Path:
        if self.path is None:
            raise TuningError("these tuning records have no file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        on_disk = self._read(self.path) if self.path.exists() else {}
        on_disk.update(self.records)    # records of other models/targets in the same file are kept
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "version": VERSION, "records": on_disk}, indent=1,
                                  sort_keys=True) + "\n")
        tmp.replace(self.path)
        return self.path


def resolve_records(tuning) -> TuningRecords | None:
    """``compile``'s ``tuning`` argument: None -> the default file if it exists; False -> no tuning;
    a path -> that file (must exist); a TuningRecords -> itself."""
    if tuning is False:
        return None
    if isinstance(tuning, TuningRecords):
        return tuning
    if tuning is None or tuning is True:
        p = default_records_path()
        return TuningRecords(p) if p.exists() else None
    p = Path(tuning)
    if not p.is_file():
        raise TuningError(f"tuning records {p} not found (write them with `edgec tune ... --records {p}`)")
    return TuningRecords(p)


__all__ = ["record_key", "VALUE_ATTRS", "tunable", "applying", "explore", "spec_tuning", "TuningRecords", "TuningError", "resolve_records",
           "default_records_path"]
