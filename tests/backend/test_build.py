"""build_kernels itself: kernel names and dedup, the cache, error reporting, workspace and code
size accounting, and the linked ``kernels.so`` (kernel table + glue) called through ctypes
with the runtime's hooks, as the C runtime does."""
from __future__ import annotations

import ctypes
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from ._harness import Case, case_graph, host_target, rand

tvm = pytest.importorskip("tvm")

from edgec.backend import KernelCache, build_kernels  # noqa: E402
from edgec.backend.build import elf_code_bytes  # noqa: E402
from edgec.backend.cache import BACKEND_VERSION  # noqa: E402
from edgec.backend.kernels import KERNELS  # noqa: E402
from edgec.errors import CompileError, TargetError  # noqa: E402
from edgec.ir.graph import Graph, Node, Value  # noqa: E402

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(17)
CONV_ATTRS = dict(strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1)


def _two_convs_graph() -> Graph:
    """conv -> relu -> conv (same spec as the first) : two distinct kernels, three nodes."""
    vals = {n: Value(n, "float32", s) for n, s in [("x", (1, 4, 8, 8)), ("w", (4, 4, 3, 3)), ("y", (1, 4, 8, 8)),
                                                     ("r", (1, 4, 8, 8)), ("z", (1, 4, 8, 8))]}
    nodes = [Node("conv", ("x", "w", ""), ("y",), CONV_ATTRS, "c1"),
             Node("relu", ("y",), ("r",), {}, "act"),
             Node("conv", ("r", "w", ""), ("z",), CONV_ATTRS, "c2")]
    return Graph(nodes, vals, ["x", "w"], ["z"])


def test_identical_specs_share_a_kernel(tmp_path):
    lib = build_kernels(_two_convs_graph(), host_target(), tmp_path, cache=None)
    assert len(lib.kernels) == 2
    assert lib.calls[0].kernel == lib.calls[2].kernel != lib.calls[1].kernel
    assert lib.calls[0].kernel.startswith("k_conv_") and len(lib.calls[0].kernel) == len("k_conv_") + 12
    assert lib.calls[0].args == ("x", "w", "y")          # the absent bias is not an argument
    assert lib.calls[2].args == ("r", "w", "z")
    assert [p.name for p in lib.objects] == [f"{k}.o" for k in lib.kernels]
    assert all(p.is_file() for p in lib.objects)
    assert lib.glue == tmp_path / "kernels" / "kernel_glue.c"
    assert lib.library == tmp_path / "kernels.so" and lib.library.is_file()
    glue = lib.glue.read_text()
    assert all(f"__tvm_ffi_{k}" in glue for k in lib.kernels)


def test_second_build_hits_the_cache(tmp_path):
    cache = KernelCache(tmp_path / "cache")
    g = _two_convs_graph()
    first = build_kernels(g, host_target(), tmp_path / "a", cache=cache)
    assert (first.cache_hits, first.compiled) == (0, 2)
    second = build_kernels(g, host_target(), tmp_path / "b", cache=cache)
    assert (second.cache_hits, second.compiled) == (2, 0)
    assert second.kernels == first.kernels
    assert second.code_bytes == first.code_bytes
    assert second.workspace_bytes == first.workspace_bytes > 0
    for a, b in zip(first.objects, second.objects):
        assert a.read_bytes() == b.read_bytes()
    # entries: object + metadata naming the spec, the object size, tvm and backend versions
    metas = sorted((tmp_path / "cache").glob("*/*.json"))
    assert len(metas) == 2
    meta = json.loads(metas[0].read_text())
    assert meta["backend"] == BACKEND_VERSION and meta["tvm"] == tvm.__version__
    assert meta["object_size"] == Path(str(metas[0])[:-5] + ".o").stat().st_size


def test_cache_ignores_a_torn_entry(tmp_path):
    cache = KernelCache(tmp_path)
    src = tmp_path / "k.o"
    src.write_bytes(b"\x7fELF" + b"\0" * 60)
    assert cache.put("spec-a", src, {"code_bytes": 1, "workspace_bytes": 0}) is not None
    assert cache.get("spec-a") is not None
    assert cache.get("spec-b") is None
    obj = cache.get("spec-a").object
    obj.write_bytes(b"truncated")                       # object no longer matches its metadata
    assert cache.get("spec-a") is None
    assert not list(tmp_path.glob("*/.tmp-*"))          # no temporary files left behind


def test_cache_key_depends_on_versions(tmp_path, monkeypatch):
    a = KernelCache(tmp_path).entry_key("spec")
    monkeypatch.setattr("edgec.backend.cache.BACKEND_VERSION", BACKEND_VERSION + "x")
    assert KernelCache(tmp_path).entry_key("spec") != a


def test_default_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEC_CACHE_DIR", str(tmp_path / "c"))
    assert KernelCache().dir == tmp_path / "c"


def test_missing_generators_are_listed_together(tmp_path):
    vals = {n: Value(n, "float32", (4,)) for n in "abc"}
    g = Graph([Node("no_such_op", ("a",), ("b",), {}, "n1"), Node("relu", ("b",), ("c",), {}, "n2"),
               Node("other_missing", ("c",), ("a",), {}, "")], vals, ["a"], ["c"])
    with pytest.raises(CompileError) as e:
        build_kernels(g, host_target(), tmp_path)
    msg = str(e.value)
    assert "2 node(s)" in msg and "'n1'" in msg and "no_such_op" in msg and "other_missing" in msg
    assert "'#2'" in msg                                   # unnamed node: its index


@pytest.fixture
def broken_op():
    """A generator whose schedule TVM rejects (vectorizing a reduction loop)."""
    from tvm import te

    from edgec.backend.kernels.common import placeholder, prim_func

    def gen(spec):
        x = placeholder(spec, 0, "x")
        r = te.reduce_axis((0, int(x.shape[0])), "r")
        y = te.compute((1,), lambda i: te.sum(x[r], axis=r), name="y")

        def sched(sch, _spec):
            sch.vectorize(sch.get_loops(sch.get_sblock("y"))[-1])
        return prim_func(spec, [x], [y], sched)
    KERNELS["test_broken"] = gen
    yield "test_broken"
    del KERNELS["test_broken"]


def test_failed_kernel_build_names_node_op_and_shapes(tmp_path, broken_op):
    vals = {"a": Value("a", "float32", (5,)), "b": Value("b", "float32", (1,))}
    g = Graph([Node(broken_op, ("a",), ("b",), {}, "bad_node")], vals, ["a"], ["b"])
    with pytest.raises(CompileError) as e:
        build_kernels(g, host_target(), tmp_path)
    msg = str(e.value)
    assert "'bad_node'" in msg and broken_op in msg and "float32[5]" in msg and "float32[1]" in msg
    assert len(msg) < 2000


def test_missing_compiler_is_a_target_error(tmp_path):
    target = dataclasses.replace(host_target(), cc="edgec-no-such-cc")
    with pytest.raises(TargetError, match="edgec-no-such-cc"):
        build_kernels(_two_convs_graph(), target, tmp_path)


def test_bare_metal_target_gets_objects_and_glue_only(tmp_path):
    target = dataclasses.replace(host_target(), hosted=False, cc="edgec-no-such-cc")
    lib = build_kernels(_two_convs_graph(), target, tmp_path)
    assert lib.library is None and lib.glue.is_file() and all(p.is_file() for p in lib.objects)


def test_code_bytes_match_the_object_text(tmp_path):
    lib = build_kernels(_two_convs_graph(), host_target(), tmp_path)
    for name, obj in zip(lib.kernels, lib.objects):
        assert lib.code_bytes[name] == elf_code_bytes(obj) > 200
    assert elf_code_bytes(lib.glue) == 0                  # not an ELF file


# -- kernels.so through ctypes, with the runtime's hooks ------------------------------------------
class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32), ("dtype", DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class TVMFFIAny(ctypes.Structure):
    _fields_ = [("type_index", ctypes.c_int32), ("zero_padding", ctypes.c_uint32), ("v_ptr", ctypes.c_void_p)]


LAMBDA = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)
ERROR_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int32)
LAUNCH_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, LAMBDA, ctypes.c_void_p, ctypes.c_int32)
BARRIER_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p)
ALLOC_FN = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64)
FREE_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)


class Hooks(ctypes.Structure):
    _fields_ = [("user", ctypes.c_void_p), ("error", ERROR_FN), ("parallel_launch", LAUNCH_FN),
                ("parallel_barrier", BARRIER_FN), ("alloc_workspace", ALLOC_FN), ("free_workspace", FREE_FN)]


class ParallelEnv(ctypes.Structure):
    _fields_ = [("sync_handle", ctypes.c_void_p), ("num_task", ctypes.c_int32)]


def _aligned(a: np.ndarray) -> np.ndarray:
    buf = np.empty(a.nbytes + 64, np.uint8)
    off = (-buf.ctypes.data) % 64
    out = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


class HostedKernels:
    """kernels.so with hooks like the C runtime's: a workspace bump allocator with a byte
    limit, errors collected, parallel loops run as ``tasks`` sequential tasks."""

    def __init__(self, path: Path, workspace_limit: int, tasks: int = 2):
        self.dll = ctypes.CDLL(str(path))
        self.limit, self.used, self.peak, self.tasks = workspace_limit, 0, 0, tasks
        self.live: dict[int, tuple[np.ndarray, int]] = {}
        self.errors: list[str] = []
        self.launches = 0

        def on_error(_user, kind, parts, n):
            self.errors.append(kind.decode() + ": " + "".join(parts[i].decode() for i in range(n)))

        def alloc(_user, nbytes):
            size = -(-nbytes // 64) * 64
            if self.used + size > self.limit:
                return None
            buf = np.empty(size + 64, np.uint8)
            ptr = buf.ctypes.data + (-buf.ctypes.data) % 64
            self.live[ptr] = (buf, size)
            self.used += size
            self.peak = max(self.peak, self.used)
            return ptr

        def free(_user, ptr):
            buf = self.live.pop(ptr, None)
            if buf is None:
                return -1
            self.used -= buf[1]
            return 0

        def launch(_user, lam, cdata, num_task):
            self.launches += 1
            env = ParallelEnv(None, self.tasks)
            rc = 0
            for t in range(self.tasks):
                rc |= lam(t, ctypes.addressof(env), cdata)
            return 0 if rc == 0 else -1

        self._keep = [ERROR_FN(on_error), LAUNCH_FN(launch), BARRIER_FN(lambda u, t, e: 0), ALLOC_FN(alloc),
                      FREE_FN(free)]
        self.hooks = Hooks(None, *self._keep)
        self.dll.edgec_kernels_bind(ctypes.byref(self.hooks))

    def call(self, kernel: str, arrays: list[np.ndarray]) -> int:
        codes = {"f": 2, "i": 0, "u": 1, "b": 6}
        keep, anys = [], (TVMFFIAny * len(arrays))()
        for i, a in enumerate(arrays):
            shape = (ctypes.c_int64 * max(1, a.ndim))(*a.shape)
            dt = DLDataType(codes[a.dtype.kind], a.dtype.itemsize * 8, 1)
            t = DLTensor(a.ctypes.data, DLDevice(1, 0), a.ndim, dt, shape, None, 0)
            keep += [shape, t]
            anys[i] = TVMFFIAny(7, 0, ctypes.addressof(t))
        fn = getattr(self.dll, f"__tvm_ffi_{kernel}")
        fn.restype = ctypes.c_int32
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p]
        return fn(None, anys, len(arrays), None)


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    cases = [
        Case("conv", "conv", dict(CONV_ATTRS), [rand(RNG, 1, 8, 20, 20), rand(RNG, 16, 8, 3, 3), rand(RNG, 16)],
             rtol=1e-5, atol=1e-5),
        # 2.65M MACs: above the float parallel threshold (_nn_sched.FLOAT_PARALLEL_MIN_MACS = 2^19), so its
        # kernel has a parallel loop whatever schedule form it takes
        Case("conv_s2", "conv", dict(strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1), group=1),
             [rand(RNG, 1, 16, 48, 48), rand(RNG, 32, 16, 3, 3), None], rtol=1e-4, atol=1e-4),
        Case("dense", "dense", {}, [rand(RNG, 40, 64), rand(RNG, 48, 64), rand(RNG, 48)], rtol=1e-5, atol=1e-5),
        Case("softmax", "softmax", {"axis": 1}, [rand(RNG, 8, 100)], rtol=1e-6, atol=1e-7),
    ]
    wd = tmp_path_factory.mktemp("hosted")
    lib = build_kernels(case_graph(cases), host_target(), wd, cache=KernelCache())
    return lib, cases


def _run_case(hk: HostedKernels, lib, cases, case_id: str):
    i = next(i for i, c in enumerate(cases) if c.id == case_id)
    case = cases[i]
    ins = [_aligned(a) for a in case.inputs if a is not None]
    outs = [_aligned(np.zeros(o.shape, o.dtype)) for o in case.reference()]
    rc = hk.call(lib.calls[i].kernel, ins + outs)
    return rc, case, outs


@pytest.mark.parametrize("case_id", ["conv", "conv_s2", "dense", "softmax"])
def test_kernels_so_runs_with_runtime_hooks(hosted, case_id):
    lib, cases = hosted
    hk = HostedKernels(lib.library, lib.workspace_bytes)
    rc, case, outs = _run_case(hk, lib, cases, case_id)
    assert rc == 0, hk.errors
    np.testing.assert_allclose(outs[0], case.reference()[0], rtol=case.rtol, atol=case.atol)
    name = lib.calls[cases.index(case)].kernel
    assert hk.peak <= lib.kernel_workspace[name]           # the reported workspace is enough
    assert hk.used == 0                                     # and all of it came back


def test_parallel_kernels_split_work_across_tasks(hosted):
    lib, cases = hosted
    hk = HostedKernels(lib.library, lib.workspace_bytes, tasks=3)
    rc, case, outs = _run_case(hk, lib, cases, "conv_s2")
    assert rc == 0 and hk.launches >= 1
    np.testing.assert_allclose(outs[0], case.reference()[0], rtol=case.rtol, atol=case.atol)


def test_too_little_workspace_fails_cleanly(hosted):
    lib, cases = hosted
    name = lib.calls[0].kernel
    need = lib.kernel_workspace[name]
    assert need > 0
    hk = HostedKernels(lib.library, need - 64)
    rc, _, _ = _run_case(hk, lib, cases, "conv")
    assert rc != 0


def test_bad_arguments_are_reported_not_crashing(hosted):
    lib, cases = hosted
    hk = HostedKernels(lib.library, lib.workspace_bytes)
    i = next(i for i, c in enumerate(cases) if c.id == "softmax")
    x = _aligned(cases[i].inputs[0])
    wrong = _aligned(np.zeros((8, 99), np.float32))
    assert hk.call(lib.calls[i].kernel, [x, wrong]) != 0
    assert any("shape" in e for e in hk.errors)


def test_cache_concurrent_writers_and_readers(tmp_path):
    """Writers racing on one key and readers polling it: a reader sees no entry or a whole one."""
    import threading
    data = bytes(range(256)) * 400
    src = tmp_path / "obj.o"
    src.write_bytes(data)
    seen, stop = [], threading.Event()

    def writer():
        for _ in range(20):
            KernelCache(tmp_path / "c").put("key", src, {"code_bytes": 7, "workspace_bytes": 0})

    def reader():
        while not stop.is_set():
            hit = KernelCache(tmp_path / "c").get("key")
            if hit is not None:
                seen.append(hit.object.read_bytes() == data)

    threads = [threading.Thread(target=writer) for _ in range(3)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads[:3]:
        t.join()
    stop.set()
    threads[3].join()
    assert all(seen)
    assert KernelCache(tmp_path / "c").get("key").object.read_bytes() == data


def _broken_schedule_kernel(spec):
    from tvm import te

    from edgec.backend.kernels._nn_sched import scheduled
    from edgec.backend.kernels.common import placeholder
    x = placeholder(spec, 0, "x")
    r = te.reduce_axis((0, int(x.shape[0])), "r")
    y = te.compute((1,), lambda i: te.sum(x[r], axis=r), name="y")

    def sched(sch, _spec):
        sch.vectorize(sch.get_loops(sch.get_sblock("y"))[-1])
    return scheduled(spec, [x], [y], sched)


def test_refused_schedule_falls_back_to_plain_loops(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEC_STRICT_SCHEDULES", raising=False)
    KERNELS["test_fallback"] = _broken_schedule_kernel
    try:
        vals = {"a": Value("a", "float32", (5,)), "b": Value("b", "float32", (1,))}
        g = Graph([Node("test_fallback", ("a",), ("b",), {}, "n")], vals, ["a"], ["b"])
        with pytest.warns(RuntimeWarning, match="test_fallback schedule failed"):
            lib = build_kernels(g, host_target(), tmp_path, cache=None)
        hk = HostedKernels(lib.library, lib.workspace_bytes)
        x = _aligned(np.arange(5, dtype=np.float32))
        y = _aligned(np.zeros(1, np.float32))
        assert hk.call(lib.kernels[0], [x, y]) == 0 and y[0] == 10.0
        monkeypatch.setenv("EDGEC_STRICT_SCHEDULES", "1")
        with pytest.raises(CompileError, match="'n'"):
            build_kernels(g, host_target(), tmp_path / "strict", cache=None)
    finally:
        del KERNELS["test_fallback"]


@pytest.mark.parametrize("triple,bits", [("armv7a-linux-gnueabihf", 1), ("aarch64-linux-gnu", 2)])
def test_cross_target_objects(tmp_path, triple, bits):
    """Kernels for another triple build into objects (no link: bare metal), with their code
    size read from 32- and 64-bit ELF section headers."""
    base = host_target()
    target = dataclasses.replace(base, name=triple, hosted=False, vector_bits=128, schedule="generic",
                                 tvm={"kind": "llvm", "mtriple": triple})
    lib = build_kernels(_two_convs_graph(), target, tmp_path, cache=None)
    assert lib.library is None
    for name, obj in zip(lib.kernels, lib.objects):
        data = obj.read_bytes()
        assert data[:4] == b"\x7fELF" and data[4] == bits
        assert 200 < lib.code_bytes[name] < len(data)
