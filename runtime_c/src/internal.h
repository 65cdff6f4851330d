/* Private declarations of the edgec runtime core: blob layout, DLPack/TVM-FFI structs,
 * checked arithmetic, logging. Not installed; tests may include it. */
#ifndef EDGEC_INTERNAL_H_
#define EDGEC_INTERNAL_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "edgec/edgec.h"

/*===----------------------------------------------------------------------===*/
/* DLPack and TVM-FFI layouts (tvm_ffi/c_api.h, dlpack.h v1.3)                 */
/*===----------------------------------------------------------------------===*/

typedef struct edgec_dl_device_t {
  int32_t device_type; /* kDLCPU = 1 */
  int32_t device_id;
} edgec_dl_device_t;

typedef struct edgec_dl_dtype_t {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} edgec_dl_dtype_t;

typedef struct edgec_dltensor_t {
  void* data;
  edgec_dl_device_t device;
  int32_t ndim;
  edgec_dl_dtype_t dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
} edgec_dltensor_t;

typedef struct edgec_ffi_any_t {
  int32_t type_index;
  uint32_t zero_padding;
  union {
    int64_t v_int64;
    double v_float64;
    void* v_ptr;
    uint64_t v_uint64;
  } v;
} edgec_ffi_any_t;

enum {
  EDGEC_FFI_NONE = 0,
  EDGEC_FFI_DLTENSOR_PTR = 7,
  EDGEC_DL_CPU = 1
};

/* C99 static assertion. */
#define EDGEC_STATIC_ASSERT(cond, name) typedef char edgec_static_assert_##name[(cond) ? 1 : -1]
EDGEC_STATIC_ASSERT(sizeof(edgec_ffi_any_t) == 16, ffi_any_is_16_bytes);
EDGEC_STATIC_ASSERT(offsetof(edgec_ffi_any_t, v) == 8, ffi_any_value_at_8); /* also on 32-bit ABIs */
EDGEC_STATIC_ASSERT(sizeof(edgec_dl_dtype_t) == 4, dl_dtype_is_4_bytes);
/* DLTensor as TVM's generated code reads it (TVM_NOTES: 48 bytes on LP64, 40 on armv7 EABI,
 * where int64 is 8-aligned): checked per ABI that edgec ships targets for. */
#if defined(__x86_64__) || defined(__aarch64__)
EDGEC_STATIC_ASSERT(sizeof(edgec_dltensor_t) == 48 && offsetof(edgec_dltensor_t, byte_offset) == 40, dltensor_lp64);
#elif defined(__arm__)
EDGEC_STATIC_ASSERT(sizeof(edgec_dltensor_t) == 40 && offsetof(edgec_dltensor_t, shape) == 20 &&
                        offsetof(edgec_dltensor_t, byte_offset) == 32,
                    dltensor_arm_eabi);
#endif

/*===----------------------------------------------------------------------===*/
/* Blob layout (docs/artifact.md)                                             */
/*===----------------------------------------------------------------------===*/

enum {
  EDGEC_HEADER_SIZE = 160,
  EDGEC_TENSOR_ENTRY = 48,
  EDGEC_OP_ENTRY = 24,
  EDGEC_KERNEL_ENTRY = 8,
  EDGEC_STORAGE_ARENA = 0,
  EDGEC_STORAGE_CONST = 1,
  EDGEC_FLAG_INPUT = 1,
  EDGEC_FLAG_OUTPUT = 2,
  EDGEC_MODEL_STATE = 0x4d444c31,   /* "MDL1": set by a successful edgec_model_init */
  EDGEC_SESSION_STATE = 0x53455331  /* "SES1": set by a successful edgec_session_init */
};

/* Header field offsets. */
enum {
  EDGEC_H_CRC = 8,
  EDGEC_H_VERSION_MAJOR = 16,
  EDGEC_H_VERSION_MINOR = 18,
  EDGEC_H_HEADER_SIZE = 20,
  EDGEC_H_TOTAL_SIZE = 24,
  EDGEC_H_ARENA_SIZE = 32,
  EDGEC_H_WORKSPACE_SIZE = 40,
  EDGEC_H_N_TENSORS = 48,
  EDGEC_H_N_OPS = 52,
  EDGEC_H_N_ARGS = 56,
  EDGEC_H_N_KERNELS = 60,
  EDGEC_H_N_INPUTS = 64,
  EDGEC_H_N_OUTPUTS = 68,
  EDGEC_H_N_DIMS = 72,
  EDGEC_H_TENSORS_OFF = 80,
  EDGEC_H_OPS_OFF = 88,
  EDGEC_H_ARGS_OFF = 96,
  EDGEC_H_KERNELS_OFF = 104,
  EDGEC_H_IO_OFF = 112,
  EDGEC_H_SHAPES_OFF = 120,
  EDGEC_H_STRINGS_OFF = 128,
  EDGEC_H_STRINGS_SIZE = 136,
  EDGEC_H_CONSTS_OFF = 144,
  EDGEC_H_CONSTS_SIZE = 152
};

/* Little-endian loads, alignment-free. */
static inline uint16_t edgec_rd_u16(const uint8_t* p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t edgec_rd_u32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t edgec_rd_u64(const uint8_t* p) {
  return (uint64_t)edgec_rd_u32(p) | ((uint64_t)edgec_rd_u32(p + 4) << 32);
}

/* A parsed tensor entry. */
typedef struct edgec_tensor_entry_t {
  uint32_t name;
  uint8_t dtype_code;
  uint8_t dtype_bits;
  uint8_t ndim;
  uint8_t storage;
  uint32_t flags;
  uint32_t shape_index;
  uint64_t offset;
  uint64_t nbytes;
} edgec_tensor_entry_t;

/* A parsed op entry. */
typedef struct edgec_op_entry_t {
  uint32_t kernel;
  uint32_t first_arg;
  uint32_t num_args;
  uint32_t name;
} edgec_op_entry_t;

void edgec_read_tensor(const edgec_model_t* model, uint32_t index, edgec_tensor_entry_t* out);
void edgec_read_op(const edgec_model_t* model, uint32_t index, edgec_op_entry_t* out);
int64_t edgec_read_dim(const edgec_model_t* model, uint32_t dim_index);
const char* edgec_model_string(const edgec_model_t* model, uint32_t offset);
/* Looks up |name| in |table|, trying entry |hint| first. NULL when absent. */
edgec_kernel_fn_t edgec_resolve_kernel(const edgec_kernel_table_t* table, const char* name, uint32_t hint);

/* CRC-32 (IEEE 802.3, as zlib's crc32), continuing from |crc| (0 to start). */
uint32_t edgec_crc32(uint32_t crc, const void* data, size_t size);

/*===----------------------------------------------------------------------===*/
/* Checked arithmetic: return 1 on success, 0 on overflow                     */
/*===----------------------------------------------------------------------===*/

static inline int edgec_add_u64(uint64_t a, uint64_t b, uint64_t* out) {
  if (a > UINT64_MAX - b) return 0;
  *out = a + b;
  return 1;
}
static inline int edgec_mul_u64(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > UINT64_MAX / a) return 0;
  *out = a * b;
  return 1;
}
/* Rounds |a| up to a multiple of 64. */
static inline int edgec_align64_u64(uint64_t a, uint64_t* out) {
  if (a > UINT64_MAX - 63) return 0;
  *out = (a + 63) & ~(uint64_t)63;
  return 1;
}

/*===----------------------------------------------------------------------===*/
/* Session internals                                                          */
/*===----------------------------------------------------------------------===*/

/* One prepared kernel call. */
typedef struct edgec_call_t {
  edgec_kernel_fn_t fn;
  edgec_ffi_any_t* args;
  int32_t num_args;
  uint32_t name;   /* op name (string offset) */
  uint32_t kernel; /* kernel index */
} edgec_call_t;

typedef struct edgec_ws_slot_t {
  uint64_t start;
  uint64_t freed;
} edgec_ws_slot_t;

/* One thread's workspace: a LIFO bump allocator over [base, base + size). */
typedef struct edgec_workspace_t {
  uint8_t* base;
  uint64_t size;
  uint64_t top;
  uint32_t depth;
  uint32_t reserved;
  edgec_ws_slot_t stack[EDGEC_WORKSPACE_MAX_DEPTH];
} edgec_workspace_t;

/* Byte offsets of each part of a session arena, relative to the 64-aligned base. */
typedef struct edgec_arena_layout_t {
  uint64_t calls;
  uint64_t args;
  uint64_t tensors;
  uint64_t shapes;
  uint64_t workspaces;
  uint64_t activations;
  uint64_t workspace_data;
  uint64_t workspace_stride; /* workspace_size rounded up to 64 */
  uint64_t end;              /* bytes from the aligned base */
  uint64_t required;         /* end + alignment slack: what the caller must give */
} edgec_arena_layout_t;

edgec_status_t edgec_arena_layout(const edgec_model_t* model, uint32_t num_threads,
                                  edgec_arena_layout_t* out_layout);

/* Resets every thread's workspace to empty (start of each run). */
void edgec_workspace_reset(edgec_session_t* session);

/*===----------------------------------------------------------------------===*/
/* Logging                                                                    */
/*===----------------------------------------------------------------------===*/

enum { EDGEC_LOG_LINE = 512 };

/* A fixed-size message buffer; text that does not fit is cut and ends with "...". */
typedef struct edgec_msg_t {
  char text[EDGEC_LOG_LINE];
  size_t len;
} edgec_msg_t;

void edgec_msg_init(edgec_msg_t* msg);
void edgec_msg_str(edgec_msg_t* msg, const char* s);
void edgec_msg_u64(edgec_msg_t* msg, uint64_t v);
void edgec_msg_i64(edgec_msg_t* msg, int64_t v);
void edgec_msg_emit(const edgec_msg_t* msg, edgec_log_fn_t log, void* user, edgec_status_t status);

#if defined(EDGEC_STRIP_ERROR_STRINGS)
#define EDGEC_LOG_ENABLED 0
#define EDGEC_TEXT(s) ""
#else
#define EDGEC_LOG_ENABLED 1
#define EDGEC_TEXT(s) s
#endif

/* Debug-only invariant check: compiled out with NDEBUG; never aborts, returns INTERNAL. */
#if defined(NDEBUG)
#define EDGEC_DCHECK(cond) ((void)0)
#else
#define EDGEC_DCHECK(cond) \
  do {                     \
    if (!(cond)) return EDGEC_ERR_INTERNAL; \
  } while (0)
#endif

#endif /* EDGEC_INTERNAL_H_ */
