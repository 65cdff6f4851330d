/* Kernels that behave like TVM-generated ones: exported as __tvm_ffi_<name>, packed ABI,
 * errors through TVMFFIErrorSetRaisedFromCStrParts, parallel loops and workspace through
 * TVM's function-pointer variables (defined by the generated kernel glue).
 *   add_f32(a, b, out), mul_f32(a, b, out): elementwise
 *   par_ws(a, b, out): out = a * b, split over tasks by penv->num_task, each task staging
 *                      its chunk in workspace memory, with a barrier when tasks > 1
 *   fail_k: raises RuntimeError */
#include <pthread.h>
#include <stdint.h>

#define FK_RAISE_TVM 1
#include "fake_kernels.h"

typedef struct tsk_penv_t {
  void* sync_handle;
  int32_t num_task;
} tsk_penv_t;
typedef int (*tsk_lambda_t)(int task_id, tsk_penv_t* penv, void* cdata);

extern int (*__TVMBackendParallelLaunch)(tsk_lambda_t, void*, int);
extern int (*__TVMBackendParallelBarrier)(int, tsk_penv_t*);
extern void* (*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int);
extern int (*__TVMBackendFreeWorkspace)(int, int, void*);

/* Statistics of the last par_ws call (read by the tests). */
int tsk_task_runs[64];
int tsk_num_task = 0;
int tsk_distinct_threads = 0;
static pthread_t tsk_threads[64];
static pthread_mutex_t tsk_mu = PTHREAD_MUTEX_INITIALIZER;

int32_t __tvm_ffi_add_f32(void* self, const void* args, int32_t num_args, void* result);
int32_t __tvm_ffi_mul_f32(void* self, const void* args, int32_t num_args, void* result);
int32_t __tvm_ffi_par_ws(void* self, const void* args, int32_t num_args, void* result);
int32_t __tvm_ffi_fail_k(void* self, const void* args, int32_t num_args, void* result);

int32_t __tvm_ffi_add_f32(void* self, const void* args, int32_t num_args, void* result) {
  return fk_add_f32(self, args, num_args, result);
}

int32_t __tvm_ffi_mul_f32(void* self, const void* args, int32_t num_args, void* result) {
  return fk_mul_f32(self, args, num_args, result);
}

int32_t __tvm_ffi_fail_k(void* self, const void* args, int32_t num_args, void* result) {
  return fk_fail(self, args, num_args, result);
}

typedef struct par_closure_t {
  const float* a;
  const float* b;
  float* out;
  int64_t n;
} par_closure_t;

static int par_lambda(int task_id, tsk_penv_t* penv, void* cdata) {
  const par_closure_t* c = (const par_closure_t*)cdata;
  const int64_t chunk = (c->n + penv->num_task - 1) / penv->num_task;
  const int64_t begin = (int64_t)task_id * chunk;
  const int64_t end = begin + chunk < c->n ? begin + chunk : c->n;
  float* tmp;
  int64_t i, k;
  pthread_mutex_lock(&tsk_mu);
  if (task_id >= 0 && task_id < 64) {
    pthread_t me = pthread_self();
    int known = 0;
    tsk_task_runs[task_id] += 1;
    for (k = 0; k < tsk_distinct_threads; ++k) known |= pthread_equal(tsk_threads[k], me);
    if (!known && tsk_distinct_threads < 64) tsk_threads[tsk_distinct_threads++] = me;
  }
  tsk_num_task = penv->num_task;
  pthread_mutex_unlock(&tsk_mu);
  tmp = (float*)__TVMBackendAllocWorkspace(1, 0, (uint64_t)(chunk > 0 ? chunk : 1) * sizeof(float), 2, 32);
  if (tmp == NULL) {
    fk_raise("MemoryError", "workspace exhausted");
    return -1;
  }
  for (i = begin; i < end; ++i) tmp[i - begin] = c->a[i] * c->b[i];
  if (penv->num_task > 1 && __TVMBackendParallelBarrier(task_id, penv) != 0) return -1;
  for (i = begin; i < end; ++i) c->out[i] = tmp[i - begin];
  return __TVMBackendFreeWorkspace(1, 0, tmp);
}

int32_t __tvm_ffi_par_ws(void* self, const void* args, int32_t num_args, void* result) {
  edgec_dltensor_t* t[3] = {0, 0, 0};
  par_closure_t c;
  int k;
  (void)self;
  (void)result;
  c.n = fk_check(args, num_args, 3, t);
  if (c.n < 0) return -1;
  c.a = (const float*)t[0]->data;
  c.b = (const float*)t[1]->data;
  c.out = (float*)t[2]->data;
  pthread_mutex_lock(&tsk_mu);
  for (k = 0; k < 64; ++k) tsk_task_runs[k] = 0;
  tsk_distinct_threads = 0;
  tsk_num_task = 0;
  pthread_mutex_unlock(&tsk_mu);
  return __TVMBackendParallelLaunch(par_lambda, &c, 0);
}
