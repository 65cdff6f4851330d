/* Links the core runtime with -Wl,--wrap=malloc,calloc,realloc,free and runs a full
 * load + session + run: the wrappers count calls made from the linked objects, and the
 * count must stay 0. The test first proves the wrapping is in effect by calling malloc
 * itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob_builder.h"
#include "expect.h"
#include "fake_kernels.h"

static int g_heap_calls = 0;
static void* volatile g_sink; /* keeps the compiler from eliding malloc/free */

void* __real_malloc(size_t n);
void* __real_calloc(size_t n, size_t m);
void* __real_realloc(void* p, size_t n);
void __real_free(void* p);
void* __wrap_malloc(size_t n);
void* __wrap_calloc(size_t n, size_t m);
void* __wrap_realloc(void* p, size_t n);
void __wrap_free(void* p);

void* __wrap_malloc(size_t n) { ++g_heap_calls; return __real_malloc(n); }
void* __wrap_calloc(size_t n, size_t m) { ++g_heap_calls; return __real_calloc(n, m); }
void* __wrap_realloc(void* p, size_t n) { ++g_heap_calls; return __real_realloc(p, n); }
void __wrap_free(void* p) { ++g_heap_calls; __real_free(p); }

static uint8_t g_storage[4096 + 64];
static uint8_t g_arena[8192];
static const edgec_kernel_entry_t kEntries[2] = {{"add_f32", fk_add_f32}, {"mul_f32", fk_mul_f32}};
static const edgec_kernel_table_t kTable = {kEntries, 2, EDGEC_KERNEL_ABI_VERSION};

int main(void) {
  tb_model_t m;
  tb_layout_t l;
  edgec_model_t model;
  edgec_session_t s;
  edgec_backend_hooks_t hooks;
  uint8_t* blob = tb_align64(g_storage);
  size_t size, need = 0;
  float* x = NULL;
  uint64_t ns[2];
  void* p;

  g_sink = malloc(16); /* the wrapper must see this one */
  free(g_sink);
  EXPECT_EQ_LL(g_heap_calls, 2);
  g_heap_calls = 0;

  tb_addmul(&m);
  size = tb_build(&m, blob, sizeof(g_storage) - 64, &l);
  EXPECT_STATUS(edgec_model_init(&model, blob, size, &kTable), EDGEC_OK);
  EXPECT_STATUS(edgec_model_arena_size(&model, 1, &need), EDGEC_OK);
  EXPECT_STATUS(edgec_session_init(&s, &model, g_arena, sizeof(g_arena), NULL), EDGEC_OK);
  EXPECT_STATUS(edgec_session_backend_hooks(&s, &hooks), EDGEC_OK);
  EXPECT_STATUS(edgec_session_input_data(&s, 0, (void**)&x), EDGEC_OK);
  x[0] = 1.0f;
  EXPECT_STATUS(edgec_session_run(&s), EDGEC_OK);
  EXPECT_STATUS(edgec_session_run_profiled(&s, ns, 2), EDGEC_ERR_UNSUPPORTED);
  p = edgec_session_workspace_alloc(&s, 0, 64);
  EXPECT(p != NULL);
  EXPECT_EQ_LL(edgec_session_workspace_free(&s, 0, p), 0);
  EXPECT_STATUS(edgec_model_init(&model, blob, size - 1, &kTable), EDGEC_ERR_BAD_MODEL);
  edgec_session_deinit(&s);
  edgec_model_deinit(&model);
  EXPECT_EQ_LL(g_heap_calls, 0);
  return expect_report("test_no_malloc");
}
