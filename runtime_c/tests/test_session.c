/* edgec_session_*: arena sizing, running the standard model with C kernels that follow
 * the packed ABI, kernel failures, profiling, workspace, call order. No heap. */
#include <stdio.h>
#include <string.h>

#include "blob_builder.h"
#include "expect.h"
#include "fake_kernels.h"

static uint8_t g_storage[4096 + 64];
static uint8_t g_arena[16384 + 64];
static char g_logs[4][EDGEC_LOG_LINE];
static int g_num_logs = 0;

static const edgec_kernel_entry_t kEntries[2] = {{"add_f32", fk_add_f32}, {"mul_f32", fk_mul_f32}};
static const edgec_kernel_table_t kTable = {kEntries, 2, EDGEC_KERNEL_ABI_VERSION};

static void capture_log(void* user, edgec_status_t status, const char* message) {
  (void)user;
  (void)status;
  if (g_num_logs < 4) strncpy(g_logs[g_num_logs++], message, EDGEC_LOG_LINE - 1);
}

static uint64_t fake_clock(void* user) {
  uint64_t* t = (uint64_t*)user;
  *t += 10;
  return *t;
}

/* Builds the standard blob with |workspace_size| and inits |model| with |table|. */
static uint8_t* build(uint64_t workspace_size, size_t* out_size) {
  tb_model_t m;
  tb_layout_t l;
  uint8_t* blob = tb_align64(g_storage);
  tb_addmul(&m);
  m.workspace_size = workspace_size;
  *out_size = tb_build(&m, blob, sizeof(g_storage) - 64, &l);
  return blob;
}

static void fill_x(edgec_session_t* s) {
  float* x = NULL;
  int i;
  EXPECT_STATUS(edgec_session_input_data(s, 0, (void**)&x), EDGEC_OK);
  for (i = 0; i < 6; ++i) x[i] = (float)(i + 1);
}

static void test_run(void) {
  edgec_model_t model;
  edgec_session_t s;
  edgec_session_options_t o;
  size_t size, need1 = 0, need2 = 0;
  uint8_t* blob = build(256, &size);
  float* y = NULL;
  void* x = NULL;
  int i;
  EXPECT_STATUS(edgec_model_init(&model, blob, size, &kTable), EDGEC_OK);
  EXPECT_STATUS(edgec_model_arena_size(&model, 1, &need1), EDGEC_OK);
  EXPECT_STATUS(edgec_model_arena_size(&model, 2, &need2), EDGEC_OK);
  EXPECT(need1 >= 192 + 256 && need1 % 64 == 0);
  EXPECT(need2 >= need1 + 256);
  EXPECT(need2 <= sizeof(g_arena) - 64);

  /* an arena one byte short is refused, with a message */
  edgec_session_options_init(&o);
  o.log = capture_log;
  g_num_logs = 0;
  EXPECT_STATUS(edgec_session_init(&s, &model, g_arena, need1 - 1, &o), EDGEC_ERR_ARENA_TOO_SMALL);
  EXPECT_LOG(g_num_logs == 1 && strstr(g_logs[0], "missing 1") != NULL);
  EXPECT(s.state == 0);

  /* a misaligned arena of exactly the reported size works */
  EXPECT_STATUS(edgec_session_init(&s, &model, g_arena + 1, need1, NULL), EDGEC_OK);
  fk_calls = 0;
  fill_x(&s);
  EXPECT_STATUS(edgec_session_run(&s), EDGEC_OK);
  EXPECT_EQ_LL(fk_calls, 2);
  EXPECT_STATUS(edgec_session_output_data(&s, 0, (void**)&y), EDGEC_OK);
  EXPECT(((uintptr_t)y % 64) == 0);
  for (i = 0; i < 6; ++i) {
    const float xi = (float)(i + 1);
    EXPECT(y[i] == (xi + tb_addmul_c[i]) * xi);
  }
  EXPECT_STATUS(edgec_session_input_data(&s, 0, &x), EDGEC_OK);
  EXPECT(((uintptr_t)x % 64) == 0 && x != (void*)y);
  EXPECT_STATUS(edgec_session_input_data(&s, 1, &x), EDGEC_ERR_INVALID_ARGUMENT);
  EXPECT(x == NULL);
  EXPECT_STATUS(edgec_session_output_data(&s, 1, &x), EDGEC_ERR_INVALID_ARGUMENT);
  /* a second run gives the same result */
  EXPECT_STATUS(edgec_session_run(&s), EDGEC_OK);
  EXPECT(y[5] == (6.0f + 3.0f) * 6.0f);
  edgec_session_deinit(&s);
  EXPECT_STATUS(edgec_session_run(&s), EDGEC_ERR_FAILED_PRECONDITION);
}

static void test_profiled(void) {
  edgec_model_t model;
  edgec_session_t s;
  edgec_session_options_t o;
  size_t size;
  uint8_t* blob = build(0, &size);
  uint64_t ns[3] = {7, 7, 7};
  uint64_t now = 0;
  EXPECT_STATUS(edgec_model_init(&model, blob, size, &kTable), EDGEC_OK);
  EXPECT_STATUS(edgec_session_init(&s, &model, g_arena, sizeof(g_arena), NULL), EDGEC_OK);
  EXPECT_STATUS(edgec_session_run_profiled(&s, ns, 3), EDGEC_ERR_UNSUPPORTED); /* no clock */
  edgec_session_options_init(&o);
  o.clock = fake_clock;
  o.clock_user = &now;
  EXPECT_STATUS(edgec_session_init(&s, &model, g_arena, sizeof(g_arena), &o), EDGEC_OK);
  fill_x(&s);
  EXPECT_STATUS(edgec_session_run_profiled(&s, ns, 1), EDGEC_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(edgec_session_run_profiled(&s, ns, 3), EDGEC_OK);
  EXPECT_EQ_LL(ns[0], 10);
  EXPECT_EQ_LL(ns[1], 10);
  EXPECT_EQ_LL(ns[2], 0);
}

static void test_kernel_failure(void) {
  static const edgec_kernel_entry_t kFailing[2] = {{"add_f32", fk_add_f32}, {"mul_f32", fk_fail}};
  static const edgec_kernel_table_t kFailTable = {kFailing, 2, EDGEC_KERNEL_ABI_VERSION};
  edgec_model_t model;
  edgec_session_t s;
  edgec_session_options_t o;
  size_t size;
  uint8_t* blob = build(0, &size);
  EXPECT_STATUS(edgec_model_init(&model, blob, size, &kFailTable), EDGEC_OK);
  edgec_session_options_init(&o);
  o.log = capture_log;
  EXPECT_STATUS(edgec_session_init(&s, &model, g_arena, sizeof(g_arena), &o), EDGEC_OK);
  fk_session = &s;
  g_num_logs = 0;
  fk_calls = 0;
  EXPECT_STATUS(edgec_session_run(&s), EDGEC_ERR_KERNEL);
  EXPECT_EQ_LL(fk_calls, 2);
  EXPECT_LOG(g_num_logs == 2);
  EXPECT_LOG(strcmp(g_logs[0], "op 1 'mul' (kernel 'mul_f32'): RuntimeError: fake kernel always fails") == 0);
  EXPECT_LOG(strcmp(g_logs[1], "op 1 'mul' (kernel 'mul_f32') failed: kernel returned -1") == 0);
  if (g_num_logs >= 2) fprintf(stderr, "logged: %s | %s\n", g_logs[0], g_logs[1]);
  /* the session stays usable */
  EXPECT_STATUS(edgec_session_run(&s), EDGEC_ERR_KERNEL);
  /* a kernel error outside a run names no op */
  g_num_logs = 0;
  fk_raise("ValueError", "late");
  EXPECT_LOG(g_num_logs == 1 && strcmp(g_logs[0], "kernel error: ValueError: late") == 0);
  fk_session = NULL;
}

static void test_workspace(void) {
  edgec_model_t model;
  edgec_session_t s;
  edgec_session_options_t o;
  edgec_backend_hooks_t hooks;
  size_t size;
  uint8_t* blob = build(256, &size);
  uint8_t *a, *b, *c, *d;
  void* many[EDGEC_WORKSPACE_MAX_DEPTH + 1];
  int i;
  EXPECT_STATUS(edgec_model_init(&model, blob, size, &kTable), EDGEC_OK);
  edgec_session_options_init(&o);
  o.num_threads = 2;
  EXPECT_STATUS(edgec_session_init(&s, &model, g_arena, sizeof(g_arena), &o), EDGEC_OK);
  a = (uint8_t*)edgec_session_workspace_alloc(&s, 0, 100);
  b = (uint8_t*)edgec_session_workspace_alloc(&s, 0, 100);
  c = (uint8_t*)edgec_session_workspace_alloc(&s, 0, 1); /* 2 x 128 used: full */
  EXPECT(a != NULL && b == a + 128 && c == NULL && ((uintptr_t)a % 64) == 0);
  d = (uint8_t*)edgec_session_workspace_alloc(&s, 1, 256); /* slot 1 is separate */
  EXPECT(d != NULL && (d >= a + 256 || d + 256 <= a));
  EXPECT(edgec_session_workspace_alloc(&s, 2, 1) == NULL); /* no slot 2 */
  EXPECT_EQ_LL(edgec_session_workspace_free(&s, 0, a), 0); /* out of order: kept until b goes */
  EXPECT(edgec_session_workspace_alloc(&s, 0, 1) == NULL);
  EXPECT_EQ_LL(edgec_session_workspace_free(&s, 0, a), -1); /* double free */
  EXPECT_EQ_LL(edgec_session_workspace_free(&s, 0, b), 0);
  EXPECT(edgec_session_workspace_alloc(&s, 0, 256) == a); /* everything came back */
  EXPECT_EQ_LL(edgec_session_workspace_free(&s, 0, a + 64), -1);
  EXPECT_EQ_LL(edgec_session_workspace_free(&s, 0, a), 0);
  EXPECT(edgec_session_workspace_alloc(&s, 0, UINT64_MAX) == NULL);
  EXPECT(edgec_session_workspace_alloc(&s, 0, 257) == NULL);
  /* zero-byte allocations still nest, up to the stack depth */
  for (i = 0; i < EDGEC_WORKSPACE_MAX_DEPTH; ++i) {
    many[i] = edgec_session_workspace_alloc(&s, 0, 0);
    EXPECT(many[i] != NULL);
  }
  EXPECT(edgec_session_workspace_alloc(&s, 0, 0) == NULL);
  for (i = EDGEC_WORKSPACE_MAX_DEPTH - 1; i >= 0; --i) EXPECT_EQ_LL(edgec_session_workspace_free(&s, 0, many[i]), 0);

  /* the single-threaded hooks use slot 0 and the session log */
  EXPECT_STATUS(edgec_session_backend_hooks(&s, &hooks), EDGEC_OK);
  EXPECT(hooks.user == &s && hooks.parallel_launch == NULL && hooks.parallel_barrier == NULL);
  a = (uint8_t*)hooks.alloc_workspace(hooks.user, 64);
  EXPECT(a != NULL);
  EXPECT_EQ_LL(hooks.free_workspace(hooks.user, a), 0);
  /* a run starts with empty workspaces */
  EXPECT(edgec_session_workspace_alloc(&s, 0, 256) != NULL);
  EXPECT_STATUS(edgec_session_run(&s), EDGEC_OK);
  EXPECT(edgec_session_workspace_alloc(&s, 0, 256) != NULL);
}

static void test_call_order(void) {
  edgec_model_t model;
  edgec_session_t s;
  edgec_backend_hooks_t hooks;
  size_t need = 5;
  void* p = &need;
  memset(&model, 0, sizeof(model));
  memset(&s, 0, sizeof(s));
  EXPECT_STATUS(edgec_model_arena_size(&model, 1, &need), EDGEC_ERR_FAILED_PRECONDITION);
  EXPECT_EQ_LL(need, 0);
  EXPECT_STATUS(edgec_session_init(&s, &model, g_arena, sizeof(g_arena), NULL), EDGEC_ERR_FAILED_PRECONDITION);
  EXPECT_STATUS(edgec_session_run(&s), EDGEC_ERR_FAILED_PRECONDITION);
  EXPECT_STATUS(edgec_session_run(NULL), EDGEC_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(edgec_session_input_data(&s, 0, &p), EDGEC_ERR_FAILED_PRECONDITION);
  EXPECT(p == NULL);
  EXPECT_STATUS(edgec_session_backend_hooks(&s, &hooks), EDGEC_ERR_FAILED_PRECONDITION);
  EXPECT(hooks.alloc_workspace == NULL);
  EXPECT(edgec_session_workspace_alloc(&s, 0, 1) == NULL);
  EXPECT_STATUS(edgec_session_init(NULL, &model, g_arena, 1, NULL), EDGEC_ERR_INVALID_ARGUMENT);
}

static void test_status_strings(void) {
  int st;
  for (st = EDGEC_OK; st <= EDGEC_ERR_INTERNAL; ++st) {
    const char* s = edgec_status_str((edgec_status_t)st);
#if defined(EDGEC_STRIP_ERROR_STRINGS)
    EXPECT(s != NULL && s[0] == '\0');
#else
    EXPECT(s != NULL && strncmp(s, "EDGEC_", 6) == 0);
#endif
  }
#if !defined(EDGEC_STRIP_ERROR_STRINGS)
  EXPECT(strcmp(edgec_status_str(EDGEC_ERR_KERNEL), "EDGEC_ERR_KERNEL") == 0);
  EXPECT(strcmp(edgec_status_str((edgec_status_t)99), "EDGEC_ERR_UNKNOWN") == 0);
#endif
}

int main(void) {
  test_run();
  test_profiled();
  test_kernel_failure();
  test_workspace();
  test_call_order();
  test_status_strings();
  return expect_report("test_session");
}
