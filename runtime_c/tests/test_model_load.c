/* edgec_model_init: a valid blob loads and every kind of corruption is rejected with the
 * right status (docs/artifact.md, "What the runtime validates at load"). */
#include <stdio.h>
#include <string.h>

#include "blob_builder.h"
#include "expect.h"
#include "fake_kernels.h"

static uint8_t g_storage[4096 + 64];
static uint8_t* g_blob;
static size_t g_size;
static tb_layout_t g_layout;
static char g_last_log[EDGEC_LOG_LINE];

static const edgec_kernel_entry_t kEntries[2] = {{"add_f32", fk_add_f32}, {"mul_f32", fk_mul_f32}};
static const edgec_kernel_table_t kTable = {kEntries, 2, EDGEC_KERNEL_ABI_VERSION};

static void capture_log(void* user, edgec_status_t status, const char* message) {
  (void)user;
  (void)status;
  strncpy(g_last_log, message, sizeof(g_last_log) - 1);
}

/* Rebuilds the pristine standard blob. */
static void fresh(void) {
  tb_model_t m;
  tb_addmul(&m);
  g_blob = tb_align64(g_storage);
  g_size = tb_build(&m, g_blob, sizeof(g_storage) - 64, &g_layout);
}

static edgec_status_t load_size(size_t size) {
  edgec_model_t model;
  g_last_log[0] = '\0';
  return edgec_model_init_with_log(&model, g_blob, size, &kTable, capture_log, NULL);
}

static edgec_status_t load(void) { return load_size(g_size); }

/* Patches a field and fixes the checksum so that validation reaches the field. */
static void patch8(uint64_t off, uint8_t v) { g_blob[off] = v; tb_fix_crc(g_blob, g_size); }
static void patch32(uint64_t off, uint32_t v) { tb_w32(g_blob + off, v); tb_fix_crc(g_blob, g_size); }
static void patch64(uint64_t off, uint64_t v) { tb_w64(g_blob + off, v); tb_fix_crc(g_blob, g_size); }
static uint64_t tensor_field(uint32_t t, uint32_t field) { return g_layout.tensors + 48u * t + field; }
static uint64_t op_field(uint32_t op, uint32_t field) { return g_layout.ops + 24u * op + field; }

static int log_has(const char* needle) { return strstr(g_last_log, needle) != NULL; }

static void test_valid(void) {
  edgec_model_t model;
  edgec_tensor_info_t info;
  uint32_t n = 99;
  const char *name = NULL, *kernel = NULL;
  fresh();
  EXPECT(g_size > 160 && g_size % 64 != 1);
  EXPECT_STATUS(edgec_model_init(&model, g_blob, g_size, &kTable), EDGEC_OK);
  EXPECT_STATUS(edgec_model_input_count(&model, &n), EDGEC_OK);
  EXPECT_EQ_LL(n, 1);
  EXPECT_STATUS(edgec_model_output_count(&model, &n), EDGEC_OK);
  EXPECT_EQ_LL(n, 1);
  EXPECT_STATUS(edgec_model_op_count(&model, &n), EDGEC_OK);
  EXPECT_EQ_LL(n, 2);
  EXPECT_STATUS(edgec_model_input_info(&model, 0, &info), EDGEC_OK);
  EXPECT(strcmp(info.name, "x") == 0);
  EXPECT_EQ_LL(info.dtype_code, 2);
  EXPECT_EQ_LL(info.dtype_bits, 32);
  EXPECT_EQ_LL(info.ndim, 2);
  EXPECT_EQ_LL(info.shape[0], 2);
  EXPECT_EQ_LL(info.shape[1], 3);
  EXPECT_EQ_LL(info.nbytes, 24);
  EXPECT_STATUS(edgec_model_output_info(&model, 0, &info), EDGEC_OK);
  EXPECT(strcmp(info.name, "y") == 0);
  EXPECT_STATUS(edgec_model_output_info(&model, 1, &info), EDGEC_ERR_INVALID_ARGUMENT);
  EXPECT(info.name == NULL);
  EXPECT_STATUS(edgec_model_op_name(&model, 1, &name, &kernel), EDGEC_OK);
  EXPECT(strcmp(name, "mul") == 0 && strcmp(kernel, "mul_f32") == 0);
  EXPECT_STATUS(edgec_model_find_input(&model, "x", &n), EDGEC_OK);
  EXPECT_EQ_LL(n, 0);
  EXPECT_STATUS(edgec_model_find_input(&model, "nope", &n), EDGEC_ERR_INVALID_ARGUMENT);
  edgec_model_deinit(&model);
  EXPECT_STATUS(edgec_model_op_count(&model, &n), EDGEC_ERR_FAILED_PRECONDITION);
  EXPECT_EQ_LL(n, 0);
}

static void test_arguments(void) {
  edgec_model_t model;
  static const edgec_kernel_table_t kOtherAbi = {kEntries, 2, 2};
  fresh();
  EXPECT_STATUS(edgec_model_init(NULL, g_blob, g_size, &kTable), EDGEC_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(edgec_model_init(&model, NULL, g_size, &kTable), EDGEC_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(edgec_model_init(&model, g_blob, g_size, NULL), EDGEC_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(edgec_model_init(&model, g_blob, g_size, &kOtherAbi), EDGEC_ERR_UNSUPPORTED);
  /* misaligned: the same bytes 8 bytes further */
  memmove(g_blob + 8, g_blob, g_size);
  EXPECT_STATUS(edgec_model_init(&model, g_blob + 8, g_size, &kTable), EDGEC_ERR_INVALID_ARGUMENT);
  EXPECT(model.state == 0);
}

static void test_header(void) {
  fresh();
  EXPECT_STATUS(load_size(g_size - 1), EDGEC_ERR_BAD_MODEL); /* truncated */
  EXPECT_LOG(log_has("total_size"));
  EXPECT_STATUS(load_size(100), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("truncated"));
  EXPECT_STATUS(load_size(0), EDGEC_ERR_BAD_MODEL);
  fresh();
  g_blob[0] = 'X';
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("magic"));
  fresh();
  patch8(16, 2); /* major 2 */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("version"));
  fresh();
  patch8(18, 1); /* minor 1 > 0 */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch32(20, 128);
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  g_blob[g_layout.strings] ^= 0x20; /* no crc fix */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("checksum"));
  fresh();
  g_blob[8] ^= 1; /* the crc itself */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
}

static void test_sections(void) {
  fresh();
  patch64(80, g_size); /* tensors past the end */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("tensor table"));
  fresh();
  patch64(80, 8); /* tensors inside the header */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch64(80, g_layout.tensors + 4); /* misaligned tensor table */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch32(48, 0xFFFFFFFFu); /* n_tensors: 48 x 4G entries */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch64(96, UINT64_MAX - 3); /* args_off + size overflows */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch64(120, UINT64_MAX - 7); /* shapes_off overflows */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch64(136, UINT64_MAX); /* strings_size */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch64(144, g_layout.consts - 8); /* consts misaligned */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("constants"));
  fresh();
  patch64(152, g_layout.consts_size + 64); /* consts past the end */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch32(72, 100); /* n_dims past the end */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch32(64, 1000); /* n_inputs */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
}

static void test_strings(void) {
  fresh();
  patch32(tensor_field(0, 0), (uint32_t)g_layout.strings_size); /* name past the strings */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("tensor 0") && log_has("name"));
  fresh();
  patch8(g_layout.strings + g_layout.strings_size - 1, 'Z'); /* last string unterminated */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch32(op_field(1, 12), 0xFFFFFF00u);
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("op 1"));
}

static void test_tensors(void) {
  fresh();
  patch64(tensor_field(2, 16), 192); /* t: bytes out of the arena */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("tensor 2") && log_has("arena"));
  fresh();
  patch64(32, 150); /* arena_size smaller than y's end */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch64(tensor_field(1, 16), 64); /* c: bytes out of the constants */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("constants"));
  fresh();
  patch64(tensor_field(0, 16), 8); /* misaligned offset */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("aligned"));
  fresh();
  patch64(tensor_field(0, 16), UINT64_MAX - 63); /* offset + nbytes overflows */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch8(tensor_field(0, 4), 3); /* dtype code 3 */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("dtype"));
  fresh();
  patch8(tensor_field(0, 5), 12); /* 12 bits */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch8(tensor_field(0, 4), 6); /* bool of 32 bits */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch8(tensor_field(0, 6), 9); /* ndim 9 */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("ndim"));
  fresh();
  patch8(tensor_field(0, 7), 2); /* unknown storage */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch64(tensor_field(0, 24), 20); /* nbytes mismatch */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("nbytes"));
  fresh();
  patch64(g_layout.shapes, (uint64_t)-2); /* negative dim */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("negative"));
  fresh();
  patch64(g_layout.shapes, (uint64_t)1 << 62); /* 2^62 x 3 elements overflows */
  patch64(g_layout.shapes + 8, 5);
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("overflow"));
  fresh();
  patch64(g_layout.shapes, (uint64_t)1 << 62); /* 2^62 elements x 4 bytes overflows */
  patch64(g_layout.shapes + 8, 1);
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("overflow"));
  fresh();
  patch32(tensor_field(3, 12), 7); /* shape index 7 + 2 dims > 8 */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch32(tensor_field(1, 8), 1); /* constant flagged as input */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
}

static void test_ops(void) {
  fresh();
  patch32(g_layout.args + 4, 4); /* arg names tensor 4 of 4 */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("not a tensor index"));
  fresh();
  patch32(op_field(0, 0), 2); /* kernel index 2 of 2 */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("kernel index"));
  fresh();
  patch32(op_field(0, 8), 33); /* 33 args */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch32(op_field(1, 4), 5); /* args 5..7 of 6 */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch32(op_field(1, 4), 0xFFFFFFFFu); /* first_arg + n overflows 32 bits */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
}

static void test_kernels_and_io(void) {
  edgec_model_t model;
  static const edgec_kernel_entry_t kOnlyAdd[1] = {{"add_f32", fk_add_f32}};
  static const edgec_kernel_table_t kAddTable = {kOnlyAdd, 1, EDGEC_KERNEL_ABI_VERSION};
  static const edgec_kernel_entry_t kSwapped[2] = {{"mul_f32", fk_mul_f32}, {"add_f32", fk_add_f32}};
  static const edgec_kernel_table_t kSwappedTable = {kSwapped, 2, EDGEC_KERNEL_ABI_VERSION};
  fresh();
  g_last_log[0] = '\0';
  EXPECT_STATUS(edgec_model_init_with_log(&model, g_blob, g_size, &kAddTable, capture_log, NULL),
                EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("'mul_f32'"));
  EXPECT_STATUS(edgec_model_init(&model, g_blob, g_size, &kSwappedTable), EDGEC_OK); /* order free */
  fresh();
  patch32(g_layout.kernels, 0xFFFFu); /* kernel name out of bounds */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch32(g_layout.io + 4, 1); /* output is the constant */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  EXPECT_LOG(log_has("arena tensor"));
  fresh();
  patch32(g_layout.io, 9); /* input index out of range */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
  fresh();
  patch32(g_layout.io, 2); /* input without the input flag */
  EXPECT_STATUS(load(), EDGEC_ERR_BAD_MODEL);
}

int main(void) {
  test_valid();
  test_arguments();
  test_header();
  test_sections();
  test_strings();
  test_tensors();
  test_ops();
  test_kernels_and_io();
  return expect_report("test_model_load");
}
