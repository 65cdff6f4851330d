"""edgec.artifact.glue.render_kernel_glue: valid C99, rejects bad names, and (with TVM)
its strong symbols win over the weak ones in real TVM objects."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from edgec.artifact.blob import BlobModel, BlobOp, BlobTensor, write_blob
from edgec.artifact.glue import render_kernel_glue
from edgec.errors import CompileError, RuntimeFailure

from runtime_helpers import c_compiler


@pytest.mark.parametrize("names", [[], ["k"], ["conv2d_0", "relu_1", "dense__2"]])
def test_glue_is_strict_c99(tmp_path, names):
    src = tmp_path / "kernel_glue.c"
    src.write_text(render_kernel_glue(names))
    subprocess.run([c_compiler(), "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-c", str(src),
                    "-o", str(tmp_path / "glue.o")], check=True, capture_output=True, text=True)
    text = src.read_text()
    assert text.count("#include") == 2 and "<stdint.h>" in text and "<stddef.h>" in text
    for n in names:
        assert f"__tvm_ffi_{n}(" in text and f'{{"{n}", __tvm_ffi_{n}}}' in text
    nm = subprocess.run(["nm", str(tmp_path / "glue.o")], capture_output=True, text=True, check=True).stdout
    for sym in ("__TVMBackendParallelLaunch", "__TVMBackendParallelBarrier", "__TVMBackendAllocWorkspace",
                "__TVMBackendFreeWorkspace", "edgec_model_kernels"):
        assert any(line.split()[-1] == sym and line.split()[-2] in "DdRr" for line in nm.splitlines()), sym
    assert any(line.split()[-2:] == ["T", "edgec_kernels_bind"] for line in nm.splitlines())


@pytest.mark.parametrize("names,message", [
    (["a-b"], "not a C identifier"), (["1x"], "not a C identifier"), ([""], "not a C identifier"),
    (["ok", "ok"], "twice"), ([None], "not a C identifier"),
])
def test_glue_rejects_bad_names(names, message):
    with pytest.raises(CompileError, match=message):
        render_kernel_glue(names)


def _tvm_object(tmp_path, n: int = 256):
    """A TVM kernel par_ws(A, C): C = A * 2 + 1 over f32[n, 64], with the outer loop
    parallel and the 64x64 intermediate in workspace memory (allocated per task)."""
    tvm = pytest.importorskip("tvm")
    from tvm import te
    A = te.placeholder((n, 64), "float32", name="A")
    B = te.compute((n, 64), lambda i, j: A[i, j] * 2.0, name="B")
    C = te.compute((n, 64), lambda i, j: B[i, j] + 1.0, name="C")
    sch = tvm.s_tir.Schedule(te.create_prim_func([A, C]))
    io, _ = sch.split(sch.get_loops(sch.get_sblock("C"))[0], [None, 64])
    sch.parallel(io)
    sch.compute_at(sch.get_sblock("B"), io)
    func = sch.mod["main"].with_attr("global_symbol", "par_ws")
    ex = tvm.compile(tvm.IRModule({"par_ws": func}),
                     target=tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu"}))
    obj = tmp_path / "par_ws.o"
    ex.mod.write_to_file(str(obj))
    return obj


def _nm(path) -> dict[str, str]:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1]: line.split()[-2] for line in out.splitlines() if line.strip()}


@pytest.mark.tvm
@pytest.mark.parametrize("glue_first", [True, False])
def test_glue_overrides_tvm_weak_symbols(tmp_path, glue_first):
    import edgec.runtime
    obj = _tvm_object(tmp_path)
    syms = _nm(obj)
    # TVM's object: weak (V) NULL function pointers, and an undefined error function
    for s in ("__TVMBackendParallelLaunch", "__TVMBackendAllocWorkspace", "__TVMBackendFreeWorkspace"):
        assert syms[s] == "V", (s, syms[s])
    assert syms["TVMFFIErrorSetRaisedFromCStrParts"] == "U"

    art = tmp_path / "art"
    (art / "kernels").mkdir(parents=True)
    glue = art / "kernels" / "kernel_glue.c"
    glue.write_text(render_kernel_glue(["par_ws"]))
    inputs = [str(glue), str(obj)] if glue_first else [str(obj), str(glue)]
    so = art / "kernels.so"
    subprocess.run([c_compiler(), "-shared", "-fPIC", "-O2", *inputs, "-o", str(so)], check=True)
    linked = _nm(so)
    # the glue's strong definitions won: defined data (hidden, hence local 'd'), not weak 'V'
    for s in ("__TVMBackendParallelLaunch", "__TVMBackendAllocWorkspace", "__TVMBackendFreeWorkspace"):
        assert linked[s] in "dD", (s, linked[s])
    assert linked["TVMFFIErrorSetRaisedFromCStrParts"] in "tT"
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True, text=True).stdout
    assert "TVM" not in undefined

    def write(shape, name="model.edgec"):
        (art / name).write_bytes(write_blob(BlobModel(
            tensors=[BlobTensor("A", "float32", shape, is_input=True, offset=0),
                     BlobTensor("C", "float32", shape, is_output=True, offset=65536)],
            ops=[BlobOp(0, [0, 1], "scale_shift")], kernels=["par_ws"], inputs=[0], outputs=[1],
            arena_size=131072, workspace_size=65536)))

    write((256, 64))
    a = np.random.default_rng(0).standard_normal((256, 64)).astype(np.float32)
    for threads in (1, 2):
        with edgec.runtime.load(art, threads=threads) as m:
            np.testing.assert_allclose(m.run({"A": a})["C"], a * 2 + 1, rtol=0, atol=0)
    # TVM's own argument checks report through the glue to Python, naming the op
    write((128, 64))
    with edgec.runtime.load(art) as m:
        with pytest.raises(RuntimeFailure, match=r"op 0 'scale_shift' \(kernel 'par_ws'\).*shape"):
            m.run({"A": a[:128]})
