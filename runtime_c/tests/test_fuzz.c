/* Mutates every byte of a valid blob, one at a time, with several values, and loads each
 * mutant twice: as is (the checksum must catch it) and with the checksum recomputed (so
 * validation reaches every field). A mutant that still validates is run with the C
 * kernels. Nothing may crash or read out of bounds (run under ASan/UBSan). */
#include <stdio.h>
#include <string.h>

#include "blob_builder.h"
#include "expect.h"
#include "fake_kernels.h"

static uint8_t g_pristine[4096];
static uint8_t g_storage[4096 + 64];
static uint8_t g_arena[8192 + 64];

static const edgec_kernel_entry_t kEntries[2] = {{"add_f32", fk_add_f32}, {"mul_f32", fk_mul_f32}};
static const edgec_kernel_table_t kTable = {kEntries, 2, EDGEC_KERNEL_ABI_VERSION};

static int g_log_calls = 0;
static void count_log(void* user, edgec_status_t status, const char* message) {
  (void)user;
  (void)status;
  g_log_calls += message != NULL && message[0] != '\0' ? 1 : 0;
}

/* Loads |blob| and, if valid and small enough, runs it. Returns 1 if it validated. */
static int try_blob(const uint8_t* blob, size_t size, int* ran) {
  edgec_model_t model;
  edgec_session_t s;
  edgec_session_options_t o;
  size_t need = 0;
  edgec_status_t st = edgec_model_init_with_log(&model, blob, size, &kTable, count_log, NULL);
  *ran = 0;
  if (st != EDGEC_OK) {
    EXPECT(st == EDGEC_ERR_BAD_MODEL);
    return 0;
  }
  st = edgec_model_arena_size(&model, 1, &need);
  EXPECT(st == EDGEC_OK || st == EDGEC_ERR_UNSUPPORTED);
  edgec_session_options_init(&o);
  o.log = count_log;
  st = edgec_session_init(&s, &model, g_arena, sizeof(g_arena), &o);
  if (need > sizeof(g_arena) || st != EDGEC_OK) {
    EXPECT(st == EDGEC_ERR_ARENA_TOO_SMALL || st == EDGEC_ERR_UNSUPPORTED);
    return 1;
  }
  fk_session = &s;
  st = edgec_session_run(&s);
  EXPECT(st == EDGEC_OK || st == EDGEC_ERR_KERNEL);
  fk_session = NULL;
  *ran = 1;
  return 1;
}

int main(void) {
  static const uint8_t kValues[4] = {0x01, 0x80, 0xFF, 0x00};
  tb_model_t m;
  tb_layout_t l;
  uint8_t* blob = tb_align64(g_storage);
  size_t size, i;
  unsigned v;
  long caught_by_crc = 0, valid = 0, ran = 0, mutants = 0;
  int r;
  tb_addmul(&m);
  size = tb_build(&m, g_pristine, sizeof(g_pristine), &l);
  EXPECT(size > 0);
  memcpy(blob, g_pristine, size);
  EXPECT(try_blob(blob, size, &r) == 1 && r == 1);

  for (i = 0; i < size; ++i) {
    for (v = 0; v < 4; ++v) {
      const uint8_t b = kValues[v] == 0x00 ? 0x00 : (uint8_t)(g_pristine[i] ^ kValues[v]);
      if (b == g_pristine[i]) continue;
      ++mutants;
      memcpy(blob, g_pristine, size);
      blob[i] = b;
      /* as is: only bytes outside the checksummed range [16, size) can pass */
      if (!try_blob(blob, size, &r)) {
        ++caught_by_crc;
      } else {
        EXPECT(i < 16 && i >= 12); /* the reserved word after the crc */
      }
      /* with a fresh checksum */
      if (i >= 16) tb_fix_crc(blob, size);
      valid += try_blob(blob, size, &r);
      ran += r;
    }
  }
  /* truncations at every length */
  for (i = 0; i < size; ++i) {
    memcpy(blob, g_pristine, size);
    EXPECT(try_blob(blob, i, &r) == 0);
  }
  fprintf(stderr, "mutants %ld, rejected as is %ld, valid after crc fix %ld, ran %ld, log lines %d\n",
          mutants, caught_by_crc, valid, ran, g_log_calls);
  EXPECT(caught_by_crc >= mutants - 4 * 4);
  EXPECT(valid > 0 && valid < mutants);
  return expect_report("test_fuzz");
}
