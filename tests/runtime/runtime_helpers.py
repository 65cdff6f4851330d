"""Shared by the runtime tests: a C compiler, hand-written packed-ABI kernels, and
artifact folders built from them with render_kernel_glue + write_blob."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgec.artifact.blob import BlobModel, BlobOp, BlobTensor, write_blob
from edgec.artifact.glue import render_kernel_glue

ROOT = Path(__file__).resolve().parents[2]

# Kernels written by hand against TVM's packed calling convention, with their own struct
# definitions (as TVM-generated objects have): no edgec header.
KERNELS_C = r"""
#include <stddef.h>
#include <stdint.h>

typedef struct { int32_t device_type, device_id; } DLDevice;
typedef struct { uint8_t code, bits; uint16_t lanes; } DLDataType;
typedef struct { void* data; DLDevice device; int32_t ndim; DLDataType dtype; int64_t* shape;
                 int64_t* strides; uint64_t byte_offset; } DLTensor;
typedef struct { int32_t type_index; uint32_t zero_padding; union { int64_t v_int64; void* v_ptr; } v; } TVMFFIAny;
typedef struct { void* sync_handle; int32_t num_task; } TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv* penv, void* cdata);

void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t num_parts);
extern int (*__TVMBackendParallelLaunch)(FTVMParallelLambda, void*, int);
extern void* (*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int);
extern int (*__TVMBackendFreeWorkspace)(int, int, void*);

int last_num_task = 0;

static int raise_error(const char* kind, const char* msg) {
  const char* parts[3] = {msg, NULL, " (from the test kernel)"};
  TVMFFIErrorSetRaisedFromCStrParts(kind, parts, 3);
  return -1;
}

/* Three float32 tensors of one shape; returns the element count or -1. */
static int64_t check3(const TVMFFIAny* args, int32_t num_args, DLTensor** t) {
  int64_t n = 1;
  int i, d;
  if (num_args != 3) return raise_error("TypeError", "expected 3 arguments");
  for (i = 0; i < 3; ++i) {
    if (args[i].type_index != 7) return raise_error("TypeError", "argument is not a DLTensor*");
    t[i] = (DLTensor*)args[i].v.v_ptr;
    if (t[i]->dtype.code != 2 || t[i]->dtype.bits != 32 || t[i]->dtype.lanes != 1)
      return raise_error("TypeError", "expected float32");
    if (t[i]->ndim != t[0]->ndim || t[i]->strides != NULL || t[i]->byte_offset != 0 ||
        t[i]->device.device_type != 1 || ((uintptr_t)t[i]->data & 63) != 0)
      return raise_error("ValueError", "bad tensor layout");
    for (d = 0; d < t[i]->ndim; ++d)
      if (t[i]->shape[d] != t[0]->shape[d]) return raise_error("ValueError", "shape mismatch");
  }
  for (d = 0; d < t[0]->ndim; ++d) n *= t[0]->shape[d];
  return n;
}

int32_t __tvm_ffi_add_f32(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  DLTensor* t[3];
  const int64_t n = check3(args, num_args, t);
  int64_t i;
  (void)self; (void)result;
  if (n < 0) return -1;
  for (i = 0; i < n; ++i) ((float*)t[2]->data)[i] = ((float*)t[0]->data)[i] + ((float*)t[1]->data)[i];
  return 0;
}

typedef struct { const float* a; const float* b; float* out; int64_t n; } Closure;

static int add_task(int task_id, TVMParallelGroupEnv* penv, void* cdata) {
  const Closure* c = (const Closure*)cdata;
  const int64_t chunk = (c->n + penv->num_task - 1) / penv->num_task;
  const int64_t begin = task_id * chunk, end = begin + chunk < c->n ? begin + chunk : c->n;
  float* tmp = (float*)__TVMBackendAllocWorkspace(1, 0, (uint64_t)chunk * 4 + 4, 2, 32);
  int64_t i;
  if (tmp == NULL) return raise_error("MemoryError", "no workspace");
  for (i = begin; i < end; ++i) tmp[i - begin] = c->a[i] + c->b[i];
  for (i = begin; i < end; ++i) c->out[i] = tmp[i - begin];
  last_num_task = penv->num_task;
  return __TVMBackendFreeWorkspace(1, 0, tmp);
}

/* Same as add_f32, split over parallel tasks, staging through workspace memory. */
int32_t __tvm_ffi_add_par_f32(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  DLTensor* t[3];
  Closure c;
  (void)self; (void)result;
  c.n = check3(args, num_args, t);
  if (c.n < 0) return -1;
  c.a = (const float*)t[0]->data;
  c.b = (const float*)t[1]->data;
  c.out = (float*)t[2]->data;
  return __TVMBackendParallelLaunch(add_task, &c, 0);
}

int32_t __tvm_ffi_always_fails(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  (void)self; (void)args; (void)num_args; (void)result;
  return raise_error("RuntimeError", "this kernel always fails");
}
"""

KERNEL_NAMES = ["add_f32", "add_par_f32", "always_fails"]
SHAPE = (2, 3, 4)
B_CONST = (np.arange(24, dtype=np.float32).reshape(SHAPE) * 0.25 - 1.0)


def c_compiler() -> str:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    return cc


def build_kernels_so(directory: Path, source: str = KERNELS_C, names=KERNEL_NAMES, extra_objects=()) -> Path:
    """Compiles ``source`` + the generated glue for ``names`` into directory/kernels.so."""
    directory.mkdir(parents=True, exist_ok=True)
    build = directory / "kernels"
    build.mkdir(exist_ok=True)
    (build / "kernels.c").write_text(source)
    (build / "kernel_glue.c").write_text(render_kernel_glue(list(names)))
    out = directory / "kernels.so"
    cmd = [c_compiler(), "-std=c99", "-O2", "-Wall", "-Werror", "-shared", "-fPIC",
           str(build / "kernels.c"), str(build / "kernel_glue.c"), *map(str, extra_objects), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def addadd_model(second_kernel: int = 1, workspace_size: int = 256) -> BlobModel:
    """a (input) + b (const) -> s (output 1); s + a -> y (output 0) with kernel
    ``second_kernel`` (1: parallel add, 2: always fails)."""
    return BlobModel(
        tensors=[
            BlobTensor("a", "float32", SHAPE, "arena", is_input=True, offset=0),
            BlobTensor("b", "float32", SHAPE, "const", data=B_CONST.tobytes()),
            BlobTensor("s", "float32", SHAPE, "arena", is_output=True, offset=128),
            BlobTensor("y", "float32", SHAPE, "arena", is_output=True, offset=256),
        ],
        ops=[BlobOp(0, [0, 1, 2], "first_add"), BlobOp(second_kernel, [2, 0, 3], "second_add")],
        kernels=KERNEL_NAMES, inputs=[0], outputs=[3, 2], arena_size=384, workspace_size=workspace_size)


def make_artifact(directory: Path, model: BlobModel | None = None) -> Path:
    """An artifact folder: model.edgec (from ``model``, default addadd_model()) + kernels.so."""
    build_kernels_so(directory)
    (directory / "model.edgec").write_bytes(write_blob(model or addadd_model()))
    return directory
