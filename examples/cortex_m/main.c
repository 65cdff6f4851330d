/* edgec example firmware: run a compiled model on a Cortex-M with the core runtime API only
 * (no hosted layer, no malloc in edgec, no file system).
 *
 *   model blob   edgec_model_blob[] (model_blob.c, const: stays in flash)
 *   kernels      edgec_model_kernels, edgec_kernels_bind (libmodel.a: TVM objects + kernel glue)
 *   runtime      libedgec_runtime.a (runtime_c/src core, built for the target)
 *   arena        a static array of EDGEC_MODEL_ARENA_SIZE bytes (model_blob.h)
 *   inputs       edgec_fw_inputs[] (model_input.c, generated from .npy files)
 *
 * Prints, over semihosting, one line per fact so a host program can parse it:
 *   edgec-fw: arena <needed> <available>
 *   edgec-fw: output <index> <name> <dtype code> <dtype bits> <element count>
 *   edgec-fw: data <index> <hex of each element's bits> ...       (up to 8 elements per line)
 *   edgec-fw: value <index> <first elements as %.9g>               (float32 outputs)
 *   edgec-fw: status <EDGEC_OK | EDGEC_ERR_...>
 * and exits with the status (0 on success). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "edgec/edgec.h"
#include "model_blob.h"
#include "model_input.h"

static uint8_t g_arena[EDGEC_MODEL_ARENA_SIZE] __attribute__((aligned(64)));

static void log_message(void* user, edgec_status_t status, const char* message) {
  (void)user;
  printf("edgec-fw: log %s: %s\n", edgec_status_str(status), message);
}

static void print_output(uint32_t index, const edgec_tensor_info_t* info, const uint8_t* data) {
  uint64_t count = 1;
  uint64_t i;
  uint32_t width = (uint32_t)info->dtype_bits / 8u;
  int32_t d;
  for (d = 0; d < info->ndim; ++d) count *= (uint64_t)info->shape[d];
  printf("edgec-fw: output %lu %s %ld %ld %lu\n", (unsigned long)index, info->name, (long)info->dtype_code,
         (long)info->dtype_bits, (unsigned long)count);
  for (i = 0; i < count; ++i) {
    const uint8_t* p = data + i * width;
    if (i % 8u == 0u) printf("edgec-fw: data %lu", (unsigned long)index);
    if (width == 8u) {
      uint32_t lo, hi;
      memcpy(&lo, p, 4);
      memcpy(&hi, p + 4, 4);
      printf(" %08lx%08lx", (unsigned long)hi, (unsigned long)lo);
    } else if (width == 4u) {
      uint32_t v;
      memcpy(&v, p, 4);
      printf(" %08lx", (unsigned long)v);
    } else if (width == 2u) {
      uint16_t v;
      memcpy(&v, p, 2);
      printf(" %04x", (unsigned)v);
    } else {
      printf(" %02x", (unsigned)p[0]);
    }
    if (i % 8u == 7u || i + 1u == count) printf("\n");
  }
  if (info->dtype_code == 2 && info->dtype_bits == 32) {
    printf("edgec-fw: value %lu", (unsigned long)index);
    for (i = 0; i < count && i < 8u; ++i) {
      float f;
      memcpy(&f, data + i * 4u, 4);
      printf(" %.9g", (double)f);
    }
    printf("\n");
  }
}

static edgec_status_t run_model(void) {
  static edgec_model_t model;
  static edgec_session_t session;
  edgec_session_options_t options;
  edgec_backend_hooks_t hooks;
  edgec_status_t st;
  size_t need = 0;
  uint32_t n_in = 0, n_out = 0, k;

  st = edgec_model_init_with_log(&model, edgec_model_blob, EDGEC_MODEL_BLOB_SIZE, &edgec_model_kernels,
                                 log_message, NULL);
  if (st != EDGEC_OK) return st;
  st = edgec_model_arena_size(&model, 1, &need);
  if (st != EDGEC_OK) return st;
  printf("edgec-fw: arena %lu %lu\n", (unsigned long)need, (unsigned long)sizeof(g_arena));
  edgec_session_options_init(&options);
  options.log = log_message;
  st = edgec_session_init(&session, &model, g_arena, sizeof(g_arena), &options);
  if (st != EDGEC_OK) return st;
  /* single-threaded hooks: workspace from the arena, parallel loops run inline */
  st = edgec_session_backend_hooks(&session, &hooks);
  if (st != EDGEC_OK) return st;
  edgec_kernels_bind(&hooks);

  st = edgec_model_input_count(&model, &n_in);
  if (st != EDGEC_OK) return st;
  if (n_in != edgec_fw_num_inputs) {
    printf("edgec-fw: log the model has %lu inputs, the firmware holds %lu\n", (unsigned long)n_in,
           (unsigned long)edgec_fw_num_inputs);
    return EDGEC_ERR_INVALID_ARGUMENT;
  }
  for (k = 0; k < n_in; ++k) {
    edgec_tensor_info_t info;
    void* dst = NULL;
    st = edgec_model_input_info(&model, k, &info);
    if (st == EDGEC_OK) st = edgec_session_input_data(&session, k, &dst);
    if (st != EDGEC_OK) return st;
    if (info.nbytes != edgec_fw_inputs[k].nbytes) {
      printf("edgec-fw: log input %s needs %lu bytes, the firmware holds %lu\n", info.name,
             (unsigned long)info.nbytes, (unsigned long)edgec_fw_inputs[k].nbytes);
      return EDGEC_ERR_INVALID_ARGUMENT;
    }
    memcpy(dst, edgec_fw_inputs[k].data, edgec_fw_inputs[k].nbytes);
  }

  st = edgec_session_run(&session);
  edgec_kernels_bind(NULL);
  if (st != EDGEC_OK) return st;

  st = edgec_model_output_count(&model, &n_out);
  for (k = 0; st == EDGEC_OK && k < n_out; ++k) {
    edgec_tensor_info_t info;
    void* data = NULL;
    st = edgec_model_output_info(&model, k, &info);
    if (st == EDGEC_OK) st = edgec_session_output_data(&session, k, &data);
    if (st == EDGEC_OK) print_output(k, &info, (const uint8_t*)data);
  }
  edgec_session_deinit(&session);
  edgec_model_deinit(&model);
  return st;
}

int main(void) {
  edgec_status_t st = run_model();
  printf("edgec-fw: status %s\n", edgec_status_str(st));
  return (int)st;
}
