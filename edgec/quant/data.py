"""Calibration data: from a .npz, a folder of .npy files, or Python feed dicts, to feed dicts.

    feeds = load_calibration("calib.npz", graph)          # or a folder, or an iterable
    for feed in feeds: ...                                 # {input name: array of the input's shape}
    feeds.total                                            # number of samples (None for iterables)

Layout (the same for .npz and for a folder)
- One array per graph input, named after the input: the .npz key, or ``<name>.npy`` in the
  folder. Every array's first axis indexes samples; all arrays must have the same length N >= 1.
- Sample k of input ``x`` is ``array[k]`` and must have exactly the shape of ``x`` as the
  graph declares it (batch dimension included: an input of shape [4, 1024] takes samples of
  shape [4, 1024]), OR, only when the input's first dimension is 1, that shape without it
  (an input [1, 3, 32, 32] accepts an array [N, 3, 32, 32] as well as [N, 1, 3, 32, 32]).
  Which one is meant is decided by the array's rank alone, so it is never ambiguous.
- Every graph input must be present; names that are not graph inputs are an error too.
- Dtypes: the array's dtype must be of the same kind as the input's (float for float,
  signed/unsigned integer for integer, bool for bool). Within a kind, values are cast to the
  input's dtype (float64 data for a float32 input is fine); integer values that do not fit
  the input's dtype are an error. Anything else (e.g. uint8 pixels for a float input) is an
  error: preprocess the data as the model expects it.
- Folders are read with memory mapping, so a large data set is not loaded at once. A single
  ``.npy`` file stands for the input named like the file (``x.npy`` -> input ``x``).
A Python iterable yields feed dicts ({input name: array}) with the same per-sample rules; it
is consumed lazily, and its errors are raised on the offending sample.
``random_calibration`` makes synthetic samples and logs a warning: accuracy is then unknown.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from ..errors import EdgecError
from ..ir.graph import Graph, Value

log = logging.getLogger("edgec.quant")


class CalibrationDataError(EdgecError):
    """Calibration data does not fit the model (base class of the specific errors below)."""


class CalibrationNameError(CalibrationDataError):
    """An input of the model has no data, or the data names something that is not an input."""


class CalibrationShapeError(CalibrationDataError):
    """A sample's shape is not the input's shape (nor, for a leading 1, the shape without it)."""


class CalibrationDtypeError(CalibrationDataError):
    """A sample's dtype cannot stand for the input's dtype."""


class EmptyCalibrationDataError(CalibrationDataError):
    """The data holds no sample at all."""


class CalibrationCountError(CalibrationDataError):
    """The arrays of different inputs hold different numbers of samples."""


InputInfos = Any  # Graph | Mapping[str, Value | (shape, dtype)] | Iterable[Value]


def input_infos(infos: InputInfos) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Normalize a Graph, a mapping {name: Value or (shape, dtype)}, or Values into
    {name: (shape, numpy dtype)} in input order."""
    if isinstance(infos, Graph):
        return {n: (tuple(infos.values[n].shape), np.dtype(infos.values[n].dtype)) for n in infos.inputs}
    out = {}
    items = infos.items() if isinstance(infos, Mapping) else ((v.name, v) for v in infos)
    for name, info in items:
        if isinstance(info, Value):
            out[name] = (tuple(info.shape), np.dtype(info.dtype))
        else:
            shape, dt = info
            out[name] = (tuple(int(d) for d in shape), np.dtype(dt))
    if not out:
        raise CalibrationDataError("the model has no inputs to calibrate")
    return out


def _check_kind(name: str, have: np.dtype, want: np.dtype, where: str) -> None:
    kinds = {"f": "float", "i": "integer", "u": "integer", "b": "bool"}
    if kinds.get(have.kind, have.kind) != kinds.get(want.kind, want.kind):
        raise CalibrationDtypeError(f"{where}: input {name!r} is {want.name}, the data is {have.name}; "
                                    f"give {kinds.get(want.kind, want.name)} data (preprocessed as the model expects)")


def _cast(name: str, a: np.ndarray, want: np.dtype, where: str) -> np.ndarray:
    _check_kind(name, a.dtype, want, where)
    if a.dtype == want:
        return a
    if want.kind in "iu" and a.size:
        info = np.iinfo(want)
        lo, hi = int(a.min()), int(a.max())
        if lo < info.min or hi > info.max:
            raise CalibrationDtypeError(f"{where}: input {name!r} is {want.name}, the data holds values in "
                                        f"[{lo}, {hi}] that do not fit")
    return a.astype(want)


def _sample_ndim_mode(name: str, arr_shape: tuple[int, ...], shape: tuple[int, ...], where: str) -> bool:
    """Check an array of samples [N, ...]; True when samples omit the leading 1."""
    if len(arr_shape) == len(shape) + 1 and tuple(arr_shape[1:]) == shape:
        return False
    if shape and shape[0] == 1 and len(arr_shape) == len(shape) and tuple(arr_shape[1:]) == shape[1:]:
        return True
    alt = f" or [N, {', '.join(map(str, shape[1:]))}]" if shape and shape[0] == 1 else ""
    raise CalibrationShapeError(f"{where}: input {name!r} has shape {list(shape)}, so its data must be an array "
                                f"[N, {', '.join(map(str, shape))}]{alt} (N samples); got {list(arr_shape)}")


def _fit_sample(name: str, a, shape: tuple[int, ...], want: np.dtype, where: str) -> np.ndarray:
    """One sample given in a feed dict: the input's shape, or that shape without a leading 1."""
    a = np.asarray(a)
    if tuple(a.shape) != shape:
        if shape and shape[0] == 1 and tuple(a.shape) == shape[1:]:
            a = a.reshape(shape)
        else:
            alt = f" (or {list(shape[1:])})" if shape and shape[0] == 1 else ""
            raise CalibrationShapeError(f"{where}: input {name!r} must be {list(shape)}{alt}, got {list(a.shape)}")
    return np.ascontiguousarray(_cast(name, a, want, where))


class CalibrationFeeds:
    """An iterator of feed dicts; ``total`` is the number of samples when known (else None)."""

    def __init__(self, it: Iterator[dict[str, np.ndarray]], total: int | None, source: str):
        self._it = it
        self.total = total
        self.source = source

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return next(self._it)

    def __repr__(self) -> str:
        return f"CalibrationFeeds({self.source}, total={self.total})"


def _from_arrays(arrays: Mapping[str, Any], infos, where: str) -> CalibrationFeeds:
    names = set(arrays)
    missing = [n for n in infos if n not in names]
    unknown = sorted(names - set(infos))
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"no data for input(s) {missing}")
        if unknown:
            parts.append(f"{unknown} are not inputs of the model")
        raise CalibrationNameError(f"{where}: " + "; ".join(parts) + f" (the model's inputs: {list(infos)})")
    modes, counts = {}, {}
    for n, (shape, dt) in infos.items():
        a = arrays[n]
        _check_kind(n, a.dtype, dt, where)
        modes[n] = _sample_ndim_mode(n, tuple(a.shape), shape, where)
        counts[n] = int(a.shape[0])
    if len(set(counts.values())) > 1:
        raise CalibrationCountError(f"{where}: inputs have different numbers of samples: "
                                    + ", ".join(f"{n}: {c}" for n, c in counts.items()))
    total = next(iter(counts.values()))
    if total == 0:
        raise EmptyCalibrationDataError(f"{where}: the arrays hold 0 samples")

    def gen():
        for k in range(total):
            feed = {}
            for n, (shape, dt) in infos.items():
                s = np.asarray(arrays[n][k])
                feed[n] = np.ascontiguousarray(_cast(n, s.reshape(shape), dt, f"{where}, sample {k}"))
            yield feed
    return CalibrationFeeds(gen(), total, where)


def _from_iterable(items: Iterable[Mapping[str, Any]], infos) -> CalibrationFeeds:
    total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    if total == 0:
        raise EmptyCalibrationDataError("calibration data: the iterable holds no sample")

    def gen():
        k = -1
        for k, feed in enumerate(items):
            where = f"calibration sample {k}"
            if not isinstance(feed, Mapping):
                raise CalibrationDataError(f"{where}: expected a dict {{input name: array}}, got {type(feed).__name__}")
            missing = [n for n in infos if n not in feed]
            unknown = sorted(set(feed) - set(infos))
            if missing or unknown:
                raise CalibrationNameError(f"{where}: " + (f"missing input(s) {missing}" if missing else "")
                                           + ("; " if missing and unknown else "")
                                           + (f"{unknown} are not inputs of the model" if unknown else "")
                                           + f" (the model's inputs: {list(infos)})")
            yield {n: _fit_sample(n, feed[n], shape, dt, where) for n, (shape, dt) in infos.items()}
        if k < 0:
            raise EmptyCalibrationDataError("calibration data: the iterable holds no sample")
    return CalibrationFeeds(gen(), total, "iterable")


def load_calibration(source, infos: InputInfos) -> CalibrationFeeds:
    """Calibration samples as feed dicts, from a .npz path, a folder of .npy files, a mapping
    {input name: array of samples}, or an iterable of feed dicts (see the module docstring).

    Array sources are checked completely before the first sample is returned (names, shapes,
    dtype kinds, sample counts, emptiness); iterables are checked sample by sample.
    """
    infos = input_infos(infos)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(path.glob("*.npy"))
            if not files:
                raise EmptyCalibrationDataError(f"{path}: the folder holds no .npy file")
            arrays = {}
            for f in files:
                try:
                    arrays[f.name[:-len(".npy")]] = np.load(f, mmap_mode="r", allow_pickle=False)
                except (ValueError, OSError) as e:
                    raise CalibrationDataError(f"{f}: not a readable .npy array ({e})") from None
            return _from_arrays(arrays, infos, str(path))
        if not path.is_file():
            raise CalibrationDataError(f"{path}: no such file or folder")
        try:
            npz = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise CalibrationDataError(f"{path}: not a readable .npz file ({e})") from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            arrays = {path.stem: npz}  # a single .npy file: named after the file
        else:
            if not npz.files:
                raise EmptyCalibrationDataError(f"{path}: the archive holds no array")
            arrays = {k: npz[k] for k in npz.files}
        return _from_arrays(arrays, infos, str(path))
    if isinstance(source, Mapping):
        arrays = {k: np.asarray(v) for k, v in source.items()}
        return _from_arrays(arrays, infos, "calibration arrays")
    if isinstance(source, Iterable):
        return _from_iterable(source, infos)
    raise CalibrationDataError(f"calibration data must be a .npz path, a folder, a dict of arrays or an iterable "
                               f"of feed dicts, got {type(source).__name__}")


def random_calibration(infos: InputInfos, n: int, seed: int = 0, int_high: int = 2) -> CalibrationFeeds:
    """``n`` synthetic samples: float inputs ~ N(0, 1), integer inputs uniform in [0, int_high),
    bool inputs uniform. Logs a warning: a model calibrated on them has unknown accuracy."""
    infos = input_infos(infos)
    if n < 1:
        raise EmptyCalibrationDataError(f"random calibration needs at least 1 sample, asked for {n}")
    log.warning("calibrating on %d random samples: the accuracy of the quantized model is unknown; "
                "give real data (.npz or a folder of .npy) to measure ranges that match deployment", n)
    rng = np.random.default_rng(seed)

    def gen():
        for _ in range(n):
            feed = {}
            for name, (shape, dt) in infos.items():
                if dt.kind == "f":
                    feed[name] = rng.standard_normal(shape).astype(dt)
                elif dt.kind in "iu":
                    feed[name] = rng.integers(0, int_high, shape).astype(dt)
                else:
                    feed[name] = rng.integers(0, 2, shape).astype(dt)
            yield feed
    return CalibrationFeeds(gen(), n, f"random (seed {seed})")


__all__ = ["load_calibration", "random_calibration", "input_infos", "CalibrationFeeds", "CalibrationDataError",
           "CalibrationNameError", "CalibrationShapeError", "CalibrationDtypeError", "EmptyCalibrationDataError",
           "CalibrationCountError"]
