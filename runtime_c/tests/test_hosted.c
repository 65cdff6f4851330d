/* The hosted layer: edgec_hosted_load on artifact folders written to a temp directory,
 * with kernels.so = generated glue + tvm_style_kernels.c (TEST_KERNELS_SO). Checks load
 * errors, runs with 1 and 3 threads (the parallel kernel must see 3 tasks on 3 threads),
 * two models sharing one kernel library, kernel failures. The hosted layer may use the
 * heap; this test does too. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob_builder.h"
#include "expect.h"

static char g_root[256];
static char g_log[EDGEC_LOG_LINE];

static void capture_log(void* user, edgec_status_t status, const char* message) {
  (void)user;
  (void)status;
  if (g_log[0] == '\0') strncpy(g_log, message, sizeof(g_log) - 1);
}

static void path_of(char* out, size_t cap, const char* dir, const char* file) {
  snprintf(out, cap, "%s/%s%s%s", g_root, dir, file[0] ? "/" : "", file);
}

/* Writes <root>/<dir>/model.edgec (the standard model with kernel 1 = |kernel1|; a
 * corrupt one if |corrupt|) and links kernels.so to |library| (none if NULL). */
static void make_artifact(const char* dir, const char* kernel1, int corrupt, const char* library) {
  static uint8_t blob[4096];
  tb_model_t m;
  tb_layout_t l;
  char path[512];
  size_t size;
  FILE* f;
  tb_addmul(&m);
  m.kernels[1] = kernel1;
  size = tb_build(&m, blob, sizeof(blob), &l);
  if (corrupt) blob[size / 2] ^= 0x40;
  path_of(path, sizeof(path), dir, "");
  mkdir(path, 0700);
  path_of(path, sizeof(path), dir, "model.edgec");
  f = fopen(path, "wb");
  EXPECT(f != NULL);
  if (f == NULL) return;
  EXPECT(fwrite(blob, 1, size, f) == size);
  fclose(f);
  if (library != NULL) {
    path_of(path, sizeof(path), dir, "kernels.so");
    EXPECT(symlink(library, path) == 0);
  }
}

static edgec_status_t load(const char* dir, uint32_t threads, edgec_hosted_t** out) {
  edgec_hosted_options_t o;
  char path[512];
  path_of(path, sizeof(path), dir, "");
  edgec_hosted_options_init(&o);
  o.num_threads = threads;
  o.log = capture_log;
  g_log[0] = '\0';
  return edgec_hosted_load_with_options(path, &o, out);
}

/* Fills x, runs, checks y = (x + c) * x. */
static void run_and_check(edgec_hosted_t* h, float scale) {
  edgec_session_t* s = NULL;
  float *x = NULL, *y = NULL;
  int i;
  EXPECT_STATUS(edgec_hosted_session(h, &s), EDGEC_OK);
  EXPECT_STATUS(edgec_session_input_data(s, 0, (void**)&x), EDGEC_OK);
  if (x == NULL) return;
  for (i = 0; i < 6; ++i) x[i] = scale * (float)(i + 1);
  EXPECT_STATUS(edgec_hosted_run(h), EDGEC_OK);
  EXPECT_STATUS(edgec_session_output_data(s, 0, (void**)&y), EDGEC_OK);
  for (i = 0; y != NULL && i < 6; ++i) EXPECT(y[i] == (x[i] + tb_addmul_c[i]) * x[i]);
}

static void* stat_symbol(const char* name) {
  void* lib = dlopen(TEST_KERNELS_SO, RTLD_NOW | RTLD_NOLOAD);
  void* sym = lib != NULL ? dlsym(lib, name) : NULL;
  if (lib != NULL) dlclose(lib);
  return sym;
}

static void test_load_errors(void) {
  edgec_hosted_t* h = (edgec_hosted_t*)&h;
  EXPECT_STATUS(load("missing", 1, &h), EDGEC_ERR_IO);
  EXPECT(h == NULL);
  EXPECT_LOG(strstr(g_log, "missing/model.edgec") != NULL);
  make_artifact("nolib", "mul_f32", 0, NULL);
  EXPECT_STATUS(load("nolib", 1, &h), EDGEC_ERR_IO);
  EXPECT_LOG(strstr(g_log, "kernels.so") != NULL);
  make_artifact("corrupt", "mul_f32", 1, TEST_KERNELS_SO);
  EXPECT_STATUS(load("corrupt", 1, &h), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(strstr(g_log, "checksum") != NULL);
  make_artifact("nosyms", "mul_f32", 0, TEST_NOKERNELS_SO);
  EXPECT_STATUS(load("nosyms", 1, &h), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(strstr(g_log, "edgec_model_kernels") != NULL);
  make_artifact("unknown", "no_such_kernel", 0, TEST_KERNELS_SO);
  EXPECT_STATUS(load("unknown", 1, &h), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(strstr(g_log, "no_such_kernel") != NULL);
  EXPECT_STATUS(load("unknown", 5000, &h), EDGEC_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(edgec_hosted_load(NULL, 1, &h), EDGEC_ERR_INVALID_ARGUMENT);
  edgec_hosted_free(NULL);
}

static void test_runs(void) {
  edgec_hosted_t *a = NULL, *b = NULL, *f = NULL;
  const edgec_model_t* model = NULL;
  size_t arena = 0;
  uint64_t ns[2] = {0, 0};
  int *num_task, *distinct, *runs;
  make_artifact("par", "par_ws", 0, TEST_KERNELS_SO);
  make_artifact("fail", "fail_k", 0, TEST_KERNELS_SO);

  EXPECT_STATUS(load("par", 1, &a), EDGEC_OK);
  if (a == NULL) return;
  num_task = (int*)stat_symbol("tsk_num_task");
  distinct = (int*)stat_symbol("tsk_distinct_threads");
  runs = (int*)stat_symbol("tsk_task_runs");
  EXPECT(num_task != NULL && distinct != NULL && runs != NULL);
  if (num_task == NULL || distinct == NULL || runs == NULL) return;
  EXPECT_STATUS(edgec_hosted_model(a, &model), EDGEC_OK);
  EXPECT_STATUS(edgec_hosted_arena_size(a, &arena), EDGEC_OK);
  EXPECT(model != NULL && arena > 192);
  run_and_check(a, 1.0f);
  EXPECT_EQ_LL(*num_task, 1);
  EXPECT_STATUS(edgec_hosted_run_profiled(a, ns, 2), EDGEC_OK);
  EXPECT_STATUS(edgec_hosted_run_profiled(a, ns, 1), EDGEC_ERR_INVALID_ARGUMENT);

  /* a second model on the same library, with 3 threads */
  EXPECT_STATUS(load("par", 3, &b), EDGEC_OK);
  if (b == NULL) return;
  run_and_check(b, 2.0f);
  EXPECT_EQ_LL(*num_task, 3);
  EXPECT_EQ_LL(*distinct, 3);
  EXPECT(runs[0] == 1 && runs[1] == 1 && runs[2] == 1 && runs[3] == 0);
  run_and_check(a, -1.0f); /* rebinds a's hooks */
  EXPECT_EQ_LL(*num_task, 1);
  run_and_check(b, 0.5f);
  EXPECT_EQ_LL(*num_task, 3);
  edgec_hosted_free(a);
  run_and_check(b, 3.0f);
  EXPECT_EQ_LL(*distinct, 3);

  EXPECT_STATUS(load("fail", 2, &f), EDGEC_OK);
  if (f != NULL) {
    g_log[0] = '\0';
    EXPECT_STATUS(edgec_hosted_run(f), EDGEC_ERR_KERNEL);
    EXPECT_LOG(strstr(g_log, "RuntimeError: fake kernel always fails") != NULL);
    edgec_hosted_free(f);
  }
  run_and_check(b, 1.0f);
  edgec_hosted_free(b);
}

static void cleanup(void) {
  static const char* kDirs[] = {"nolib", "corrupt", "nosyms", "unknown", "par", "fail"};
  char path[512];
  size_t i;
  for (i = 0; i < sizeof(kDirs) / sizeof(kDirs[0]); ++i) {
    path_of(path, sizeof(path), kDirs[i], "model.edgec");
    unlink(path);
    path_of(path, sizeof(path), kDirs[i], "kernels.so");
    unlink(path);
    path_of(path, sizeof(path), kDirs[i], "");
    rmdir(path);
  }
  rmdir(g_root);
}

int main(void) {
  const char* tmp = getenv("TMPDIR");
  snprintf(g_root, sizeof(g_root), "%s/edgec_hosted_XXXXXX", tmp != NULL ? tmp : "/tmp");
  if (mkdtemp(g_root) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  test_load_errors();
  test_runs();
  cleanup();
  return expect_report("test_hosted");
}
