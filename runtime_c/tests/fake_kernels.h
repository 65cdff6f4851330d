/* Kernels written by hand in C against the packed ABI, checking their arguments the way
 * TVM-generated ones do (count, type index 7, dtype, ndim, shape, CPU, compact, aligned).
 *
 * Errors go to fk_raise(); by default that forwards to edgec_session_kernel_error on
 * fk_session. Define FK_RAISE_TVM before including to use TVMFFIErrorSetRaisedFromCStrParts
 * (the generated glue's) instead. */
#ifndef EDGEC_TESTS_FAKE_KERNELS_H_
#define EDGEC_TESTS_FAKE_KERNELS_H_

#include <stdint.h>

#include "../src/internal.h"

static int fk_calls = 0;

#if defined(FK_RAISE_TVM)
void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t num_parts);
static void fk_raise(const char* kind, const char* msg) {
  const char* parts[2];
  parts[0] = msg;
  parts[1] = NULL; /* NULL parts are skipped */
  TVMFFIErrorSetRaisedFromCStrParts(kind, parts, 2);
}
#else
static edgec_session_t* fk_session = NULL;
static void fk_raise(const char* kind, const char* msg) {
  const char* parts[1];
  parts[0] = msg;
  if (fk_session != NULL) edgec_session_kernel_error(fk_session, kind, parts, 1);
}
#endif

/* Checks |num_args| f32 tensors of one shape; returns their element count, or -1. */
static int64_t fk_check(const void* args, int32_t num_args, int32_t want_args, edgec_dltensor_t** out) {
  const edgec_ffi_any_t* a = (const edgec_ffi_any_t*)args;
  int64_t n = 1;
  int32_t i, d;
  if (num_args != want_args || a == NULL) {
    fk_raise("TypeError", "wrong number of arguments");
    return -1;
  }
  for (i = 0; i < num_args; ++i) {
    edgec_dltensor_t* t;
    if (a[i].type_index != EDGEC_FFI_DLTENSOR_PTR || a[i].v.v_ptr == NULL) {
      fk_raise("TypeError", "argument is not a DLTensor*");
      return -1;
    }
    t = (edgec_dltensor_t*)a[i].v.v_ptr;
    if (t->dtype.code != 2 || t->dtype.bits != 32 || t->dtype.lanes != 1) {
      fk_raise("TypeError", "expected float32");
      return -1;
    }
    if (t->device.device_type != EDGEC_DL_CPU || t->strides != NULL || t->byte_offset != 0 ||
        t->data == NULL || ((uintptr_t)t->data % 64) != 0) {
      fk_raise("ValueError", "bad tensor layout");
      return -1;
    }
    out[i] = t;
    if (i > 0 && t->ndim != out[0]->ndim) {
      fk_raise("ValueError", "ndim mismatch");
      return -1;
    }
    for (d = 0; d < t->ndim; ++d) {
      if (i > 0 && t->shape[d] != out[0]->shape[d]) {
        fk_raise("ValueError", "shape mismatch");
        return -1;
      }
    }
  }
  for (d = 0; d < out[0]->ndim; ++d) n *= out[0]->shape[d];
  return n;
}

static int32_t fk_add_f32(void* self, const void* args, int32_t num_args, void* result) {
  edgec_dltensor_t* t[3] = {0, 0, 0};
  int64_t n = fk_check(args, num_args, 3, t), i;
  (void)self;
  (void)result;
  ++fk_calls;
  if (n < 0) return -1;
  for (i = 0; i < n; ++i) ((float*)t[2]->data)[i] = ((const float*)t[0]->data)[i] + ((const float*)t[1]->data)[i];
  return 0;
}

static int32_t fk_mul_f32(void* self, const void* args, int32_t num_args, void* result) {
  edgec_dltensor_t* t[3] = {0, 0, 0};
  int64_t n = fk_check(args, num_args, 3, t), i;
  (void)self;
  (void)result;
  ++fk_calls;
  if (n < 0) return -1;
  for (i = 0; i < n; ++i) ((float*)t[2]->data)[i] = ((const float*)t[0]->data)[i] * ((const float*)t[1]->data)[i];
  return 0;
}

static int32_t fk_fail(void* self, const void* args, int32_t num_args, void* result) {
  (void)self;
  (void)args;
  (void)num_args;
  (void)result;
  ++fk_calls;
  fk_raise("RuntimeError", "fake kernel always fails");
  return -1;
}

#endif /* EDGEC_TESTS_FAKE_KERNELS_H_ */
