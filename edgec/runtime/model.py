"""``Model``: an artifact folder loaded by the C runtime's hosted layer, run with numpy.

    with edgec.runtime.load("out/", threads=2) as m:
        print(m.inputs)                        # [TensorInfo(name='x', dtype='float32', shape=(1, 4))]
        y = m.run({"x": x})["y"]               # fresh numpy arrays
        outs, ns = m.run_profiled({"x": x})    # + nanoseconds per op (m.op_names)

Inputs are copied into the arena with one memcpy each; outputs come back as copies, or
as views into the arena with ``copy=False`` (valid until the next run or ``close()``).
A Model is safe to share between threads (runs are serialized).
"""
from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ArtifactError, EdgecError, RuntimeFailure, RuntimeInputError
from ._lib import ffi_lib

# DLPack (code, bits) -> numpy dtype name
DTYPES = {
    (2, 32): "float32", (2, 64): "float64", (2, 16): "float16",
    (0, 8): "int8", (0, 16): "int16", (0, 32): "int32", (0, 64): "int64",
    (1, 8): "uint8", (1, 16): "uint16", (1, 32): "uint32", (1, 64): "uint64",
    (6, 8): "bool",
}

MAX_THREADS = 1024

# edgec_status_t values
_OK = 0
_STATUS_NAMES = ["EDGEC_OK", "EDGEC_ERR_INVALID_ARGUMENT", "EDGEC_ERR_BAD_MODEL", "EDGEC_ERR_UNSUPPORTED",
                 "EDGEC_ERR_ARENA_TOO_SMALL", "EDGEC_ERR_FAILED_PRECONDITION", "EDGEC_ERR_KERNEL",
                 "EDGEC_ERR_IO", "EDGEC_ERR_INTERNAL"]
_ARTIFACT_STATUSES = {1, 2, 3, 7}   # invalid argument, bad model, unsupported, io


class RuntimeOptionError(EdgecError, ValueError):
    """An option given to load() (e.g. the thread count) is invalid."""


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: name, numpy dtype name and shape."""
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(map(str, self.shape))}]"


def _status_name(status: int) -> str:
    return _STATUS_NAMES[status] if 0 <= status < len(_STATUS_NAMES) else f"EDGEC_STATUS_{status}"


def _describe(arr: np.ndarray) -> str:
    return f"{arr.dtype.name}[{', '.join(map(str, arr.shape))}]"


def _free_hosted(lib, hosted, log_handle) -> None:
    """Finalizer: frees the C side; |log_handle| is passed only to outlive it."""
    lib.edgec_hosted_free(hosted)


def _artifact_dir(path) -> Path:
    p = Path(os.fspath(path))
    if p.is_file() and p.name == "model.edgec":
        p = p.parent
    if not p.is_dir():
        raise ArtifactError(f"artifact folder {str(p)!r} does not exist")
    return p


class Model:
    """A loaded artifact. Create with ``edgec.runtime.load``."""

    def __init__(self, path, threads: int | None = None):
        if threads is None:
            threads = 1
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
            raise RuntimeOptionError(f"threads must be an integer in [1, {MAX_THREADS}], got {threads!r}")
        self.path = _artifact_dir(path)
        self.threads = int(threads)
        self._ffi, self._lib = ffi, lib = ffi_lib()
        self._lock = threading.Lock()
        self._messages: list[tuple[int, str]] = []
        self._handle = ffi.new_handle(self._messages)

        opts = ffi.new("edgec_hosted_options_t*")
        lib.edgec_hosted_options_init(opts)
        opts.num_threads = self.threads
        opts.log = lib._edgec_py_log
        opts.log_user = self._handle
        out = ffi.new("edgec_hosted_t**")
        status = lib.edgec_hosted_load_with_options(os.fsencode(str(self.path)), opts, out)
        if status != _OK:
            detail = "; ".join(m for _, m in self._messages) or _status_name(status)
            if status in _ARTIFACT_STATUSES:
                raise ArtifactError(f"cannot load artifact {str(self.path)!r}: {detail}")
            raise RuntimeFailure(status, _status_name(status), detail)
        self._hosted = out[0]
        # frees the C side when the Model is closed or collected; keeps the log handle alive
        self._finalizer = weakref.finalize(self, _free_hosted, lib, self._hosted, self._handle)

        model_p = ffi.new("const edgec_model_t**")
        session_p = ffi.new("edgec_session_t**")
        self._check(lib.edgec_hosted_model(self._hosted, model_p))
        self._check(lib.edgec_hosted_session(self._hosted, session_p))
        self._model, self._session = model_p[0], session_p[0]
        arena = ffi.new("size_t*")
        self._check(lib.edgec_hosted_arena_size(self._hosted, arena))
        self.arena_bytes = int(arena[0])

        self.inputs = [self._info(lib.edgec_model_input_info, i)
                       for i in range(self._count(lib.edgec_model_input_count))]
        self.outputs = [self._info(lib.edgec_model_output_info, i)
                        for i in range(self._count(lib.edgec_model_output_count))]
        self._in_ptrs = [self._data(lib.edgec_session_input_data, i) for i in range(len(self.inputs))]
        self._out_views = [self._view(self._data(lib.edgec_session_output_data, i), info)
                           for i, info in enumerate(self.outputs)]
        names, kernels = [], []
        name_p, kernel_p = ffi.new("const char**"), ffi.new("const char**")
        for i in range(self._count(lib.edgec_model_op_count)):
            self._check(lib.edgec_model_op_name(self._model, i, name_p, kernel_p))
            names.append(ffi.string(name_p[0]).decode("utf-8", "replace"))
            kernels.append(ffi.string(kernel_p[0]).decode("utf-8", "replace"))
        self.op_names: list[str] = names
        self.op_kernels: list[str] = kernels
        self._input_index = {t.name: i for i, t in enumerate(self.inputs)}
        # what every run needs, computed once (the per-call cost is part of the latency)
        self._in_fast = [(t.name, np.dtype(t.dtype), t.shape, ptr, t.nbytes)
                         for t, ptr in zip(self.inputs, self._in_ptrs)]
        self._out_items = [(t.name, v) for t, v in zip(self.outputs, self._out_views)]
        self._out_dict = dict(self._out_items)
        # run()'s one-input fast path: (name, dtype, shape, arena pointer, bytes), or None
        self._in_one = self._in_fast[0] if len(self._in_fast) == 1 and self._in_fast[0][4] else None
        self._memmove, self._run_c = ffi.memmove, lib.edgec_hosted_run
        self._open = True

    # ---- C helpers ----------------------------------------------------------------------

    def _check(self, status: int) -> None:
        if status != _OK:
            detail = "; ".join(m for _, m in self._messages)
            self._messages.clear()
            raise RuntimeFailure(status, _status_name(status), detail)

    def _count(self, fn) -> int:
        n = self._ffi.new("uint32_t*")
        self._check(fn(self._model, n))
        return int(n[0])

    def _info(self, fn, i: int) -> TensorInfo:
        info = self._ffi.new("edgec_tensor_info_t*")
        self._check(fn(self._model, i, info))
        dtype = DTYPES[(info.dtype_code, info.dtype_bits)]
        return TensorInfo(self._ffi.string(info.name).decode("utf-8", "replace"), dtype,
                          tuple(int(info.shape[d]) for d in range(info.ndim)))

    def _data(self, fn, i: int):
        p = self._ffi.new("void**")
        self._check(fn(self._session, i, p))
        return p[0]

    def _view(self, ptr, info: TensorInfo) -> np.ndarray:
        arr = np.frombuffer(self._ffi.buffer(ptr, info.nbytes), dtype=info.dtype)
        return arr.reshape(info.shape)

    # ---- public API ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _ensure_open(self) -> None:
        if self.closed:
            raise RuntimeFailure(5, "EDGEC_ERR_FAILED_PRECONDITION", f"model {str(self.path)!r} is closed")

    def _check_feeds(self, feeds) -> list[np.ndarray]:
        if not hasattr(feeds, "keys"):
            raise RuntimeInputError(f"feeds must be a dict of input name -> array, got {type(feeds).__name__}")
        missing = [t.name for t in self.inputs if t.name not in feeds]
        extra = [k for k in feeds if k not in self._input_index]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing input(s) {missing}")
            if extra:
                parts.append(f"unknown input(s) {extra}")
            expected = ", ".join(str(t) for t in self.inputs) or "none"
            raise RuntimeInputError(f"{'; '.join(parts)}; the model's inputs are: {expected}")
        arrays = []
        for info in self.inputs:
            arr = np.asarray(feeds[info.name])
            if arr.dtype != np.dtype(info.dtype) or arr.shape != info.shape:
                what = "dtype" if arr.dtype != np.dtype(info.dtype) else "shape"
                raise RuntimeInputError(f"input {info.name!r}: wrong {what}: expected "
                                        f"{info.dtype}[{', '.join(map(str, info.shape))}], got {_describe(arr)}")
            arrays.append(arr)
        return arrays

    def _arrays(self, feeds) -> list:
        """The feed arrays in input order. Fast path: a dict with exactly the model's input names,
        each an ndarray of the input's dtype and shape, is taken as is (contiguity is left to
        ``_copy_in``); anything else goes through ``_check_feeds``, which converts or raises the
        precise error."""
        fast = self._in_fast
        if type(feeds) is dict and len(feeds) == len(fast):
            arrays = []
            for name, dtype, shape, _, _ in fast:
                arr = feeds.get(name)
                if type(arr) is not np.ndarray or arr.dtype != dtype or arr.shape != shape:
                    break
                arrays.append(arr)
            else:
                return arrays
        return self._check_feeds(feeds)

    def _copy_in(self, arrays) -> None:
        """One memmove per input into the arena; ``ffi.memmove`` refuses an array that is not
        C-contiguous (numpy gives no simple buffer for it), which is then copied through
        ``np.ascontiguousarray``."""
        memmove = self._ffi.memmove
        for (_, _, _, ptr, nbytes), arr in zip(self._in_fast, arrays):
            if nbytes:
                try:
                    memmove(ptr, arr, nbytes)
                except (ValueError, BufferError):
                    memmove(ptr, np.ascontiguousarray(arr), nbytes)

    def _outputs(self, copy: bool) -> dict[str, np.ndarray]:
        if copy:
            return {name: view.copy() for name, view in self._out_items}
        return self._out_dict.copy()        # the caller's own dict of the (shared) arena views

    def _run(self, feeds, copy: bool, profile: bool):
        arrays = self._arrays(feeds)
        with self._lock:
            if not self._open:
                self._ensure_open()
            self._copy_in(arrays)
            self._messages.clear()
            if profile:
                ns = self._ffi.new("uint64_t[]", max(1, len(self.op_names)))
                status = self._lib.edgec_hosted_run_profiled(self._hosted, ns, len(self.op_names))
            else:
                status = self._lib.edgec_hosted_run(self._hosted)
            if status != _OK:
                self._check(status)
            outputs = self._outputs(copy)
            per_op = [int(ns[i]) for i in range(len(self.op_names))] if profile else None
        return outputs, per_op

    def run(self, feeds: dict, copy: bool = True) -> dict[str, np.ndarray]:
        """Runs the model on ``feeds`` (name -> array of exactly the input's dtype and shape).

        Returns name -> array for every output: fresh copies, or with ``copy=False`` views
        into the arena that the next run overwrites. Raises RuntimeInputError for missing,
        unknown or mistyped inputs and RuntimeFailure if the runtime fails (a kernel error
        names the op).
        """
        # _run without the profiling branches, as one frame: this path's cost is per call.
        # One-input models (the usual edge case): the checks of ``_arrays`` inlined (a dict with
        # exactly the input's name, an ndarray of its dtype and shape; the dtype by identity, as
        # numpy's built-in dtypes are singletons, else compared) and one memmove; anything else
        # takes the general path below, which converts or raises the precise error.
        one = self._in_one
        if one is not None and type(feeds) is dict and len(feeds) == 1:
            arr = feeds.get(one[0])
            if (type(arr) is np.ndarray and (arr.dtype is one[1] or arr.dtype == one[1])
                    and arr.shape == one[2]):
                with self._lock:
                    if not self._open:
                        self._ensure_open()
                    try:
                        self._memmove(one[3], arr, one[4])
                    except (ValueError, BufferError):       # not C-contiguous
                        self._memmove(one[3], np.ascontiguousarray(arr), one[4])
                    self._messages.clear()
                    status = self._run_c(self._hosted)
                    if status != _OK:
                        self._check(status)
                    if copy:
                        return {name: view.copy() for name, view in self._out_items}
                    return self._out_dict.copy()
        arrays = self._arrays(feeds)
        with self._lock:
            if not self._open:
                self._ensure_open()
            self._copy_in(arrays)
            self._messages.clear()
            status = self._lib.edgec_hosted_run(self._hosted)
            if status != _OK:
                self._check(status)
            return self._outputs(copy)

    def run_profiled(self, feeds: dict, copy: bool = True) -> tuple[dict[str, np.ndarray], list[int]]:
        """Like ``run``, plus each op's duration in nanoseconds (in ``op_names`` order)."""
        return self._run(feeds, copy, profile=True)

    def close(self) -> None:
        """Frees the runtime (threads, arena, library). Views from ``run(copy=False)`` die too."""
        with self._lock:
            self._open = False
            self._out_views = []
            self._in_ptrs = []
            self._in_fast = []
            self._in_one = None
            self._out_items = []
            self._out_dict = {}
            self._finalizer()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(map(str, self.inputs))
        outs = ", ".join(map(str, self.outputs))
        state = ("closed" if self.closed
                 else f"{len(self.op_names)} ops, arena {self.arena_bytes} B, threads {self.threads}")
        return f"<edgec Model {str(self.path)!r}: ({ins}) -> ({outs}); {state}>"


def load(path, threads: int | None = None) -> Model:
    """Loads an artifact folder (model.edgec + kernels.so); ``threads`` defaults to 1."""
    return Model(path, threads)
