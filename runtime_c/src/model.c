/* edgec_model_*: validation of an untrusted blob (docs/artifact.md) and read-only
 * accessors over it. Everything is checked once here; sessions trust the model after. */
#include "internal.h"

/*===----------------------------------------------------------------------===*/
/* Failure reporting                                                          */
/*===----------------------------------------------------------------------===*/

typedef struct vctx_t {
  edgec_log_fn_t log;
  void* user;
} vctx_t;

/* Logs "edgec: invalid model blob: <kind> <index>: <what>" and returns |status|. */
static edgec_status_t fail(const vctx_t* v, edgec_status_t status, const char* kind, uint64_t index,
                           const char* what) {
#if EDGEC_LOG_ENABLED
  if (v->log != NULL) {
    edgec_msg_t m;
    edgec_msg_init(&m);
    edgec_msg_str(&m, status == EDGEC_ERR_BAD_MODEL ? "invalid model blob: " : "cannot load model: ");
    if (kind != NULL) {
      edgec_msg_str(&m, kind);
      edgec_msg_str(&m, " ");
      edgec_msg_u64(&m, index);
      edgec_msg_str(&m, ": ");
    }
    edgec_msg_str(&m, what);
    edgec_msg_emit(&m, v->log, v->user, status);
  }
#else
  (void)v;
  (void)kind;
  (void)index;
  (void)what;
#endif
  return status;
}

/*===----------------------------------------------------------------------===*/
/* Accessors (valid once the blob is validated)                               */
/*===----------------------------------------------------------------------===*/

void edgec_read_tensor(const edgec_model_t* model, uint32_t index, edgec_tensor_entry_t* out) {
  const uint8_t* p = model->tensors + (size_t)index * EDGEC_TENSOR_ENTRY;
  out->name = edgec_rd_u32(p + 0);
  out->dtype_code = p[4];
  out->dtype_bits = p[5];
  out->ndim = p[6];
  out->storage = p[7];
  out->flags = edgec_rd_u32(p + 8);
  out->shape_index = edgec_rd_u32(p + 12);
  out->offset = edgec_rd_u64(p + 16);
  out->nbytes = edgec_rd_u64(p + 24);
}

void edgec_read_op(const edgec_model_t* model, uint32_t index, edgec_op_entry_t* out) {
  const uint8_t* p = model->ops + (size_t)index * EDGEC_OP_ENTRY;
  out->kernel = edgec_rd_u32(p + 0);
  out->first_arg = edgec_rd_u32(p + 4);
  out->num_args = edgec_rd_u32(p + 8);
  out->name = edgec_rd_u32(p + 12);
}

int64_t edgec_read_dim(const edgec_model_t* model, uint32_t dim_index) {
  return (int64_t)edgec_rd_u64(model->shapes + (size_t)dim_index * 8);
}

const char* edgec_model_string(const edgec_model_t* model, uint32_t offset) {
  return model->strings + offset;
}

static uint32_t read_arg(const edgec_model_t* model, uint32_t index) {
  return edgec_rd_u32(model->args + (size_t)index * 4);
}

static uint32_t read_io(const edgec_model_t* model, uint64_t index) {
  return edgec_rd_u32(model->io + (size_t)index * 4);
}

edgec_kernel_fn_t edgec_resolve_kernel(const edgec_kernel_table_t* table, const char* name, uint32_t hint) {
  uint32_t i;
  if (table == NULL || table->entries == NULL) return NULL;
  if (hint < table->count && table->entries[hint].name != NULL &&
      strcmp(table->entries[hint].name, name) == 0) {
    return table->entries[hint].fn;
  }
  for (i = 0; i < table->count; ++i) {
    if (table->entries[i].name != NULL && strcmp(table->entries[i].name, name) == 0) {
      return table->entries[i].fn;
    }
  }
  return NULL;
}

/*===----------------------------------------------------------------------===*/
/* Validation                                                                 */
/*===----------------------------------------------------------------------===*/

/* A section of |count| entries of |entry| bytes at |off| lies after the header, inside
 * |total| bytes, and is |align|-aligned. */
static int section_ok(uint64_t off, uint64_t count, uint64_t entry, uint64_t align, uint64_t total) {
  uint64_t bytes, end;
  if (!edgec_mul_u64(count, entry, &bytes) || !edgec_add_u64(off, bytes, &end)) return 0;
  return off >= EDGEC_HEADER_SIZE && end <= total && off % align == 0;
}

/* |offset| starts a NUL-terminated string inside the strings section. */
static int string_ok(const edgec_model_t* model, uint32_t offset) {
  if ((uint64_t)offset >= model->strings_size) return 0;
  return memchr(model->strings + offset, 0, (size_t)(model->strings_size - offset)) != NULL;
}

static int dtype_ok(uint8_t code, uint8_t bits) {
  switch (code) {
    case 0: /* int */
    case 1: /* uint */
      return bits == 8 || bits == 16 || bits == 32 || bits == 64;
    case 2: /* float */
      return bits == 16 || bits == 32 || bits == 64;
    case 6: /* bool */
      return bits == 8;
    default:
      return 0;
  }
}

static edgec_status_t check_header(const vctx_t* v, const uint8_t* b, size_t size) {
  static const uint8_t kMagic[8] = {'E', 'D', 'G', 'E', 'C', 'M', 'D', 'L'};
  uint64_t total;
  if (size < EDGEC_HEADER_SIZE) return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0, EDGEC_TEXT("truncated header"));
  if (memcmp(b, kMagic, sizeof(kMagic)) != 0) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0, EDGEC_TEXT("bad magic (not an edgec model)"));
  }
  if (edgec_rd_u16(b + EDGEC_H_VERSION_MAJOR) != EDGEC_BLOB_VERSION_MAJOR ||
      edgec_rd_u16(b + EDGEC_H_VERSION_MINOR) > EDGEC_BLOB_VERSION_MINOR) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0,
                EDGEC_TEXT("unsupported blob version (this runtime reads 1.0)"));
  }
  if (edgec_rd_u32(b + EDGEC_H_HEADER_SIZE) != EDGEC_HEADER_SIZE) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0, EDGEC_TEXT("header_size is not 160"));
  }
  total = edgec_rd_u64(b + EDGEC_H_TOTAL_SIZE);
  if (total != (uint64_t)size) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0,
                EDGEC_TEXT("total_size differs from the blob size (truncated or padded)"));
  }
  if (edgec_crc32(0, b + 16, size - 16) != edgec_rd_u32(b + EDGEC_H_CRC)) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0, EDGEC_TEXT("checksum mismatch (corrupt blob)"));
  }
  return EDGEC_OK;
}

/* Reads counts and section offsets into |m| and checks every section's bounds. */
static edgec_status_t check_sections(const vctx_t* v, edgec_model_t* m, const uint8_t* b, size_t size) {
  const uint64_t total = (uint64_t)size;
  const uint64_t tensors_off = edgec_rd_u64(b + EDGEC_H_TENSORS_OFF);
  const uint64_t ops_off = edgec_rd_u64(b + EDGEC_H_OPS_OFF);
  const uint64_t args_off = edgec_rd_u64(b + EDGEC_H_ARGS_OFF);
  const uint64_t kernels_off = edgec_rd_u64(b + EDGEC_H_KERNELS_OFF);
  const uint64_t io_off = edgec_rd_u64(b + EDGEC_H_IO_OFF);
  const uint64_t shapes_off = edgec_rd_u64(b + EDGEC_H_SHAPES_OFF);
  const uint64_t strings_off = edgec_rd_u64(b + EDGEC_H_STRINGS_OFF);
  const uint64_t consts_off = edgec_rd_u64(b + EDGEC_H_CONSTS_OFF);
  uint64_t num_io;

  m->arena_size = edgec_rd_u64(b + EDGEC_H_ARENA_SIZE);
  m->workspace_size = edgec_rd_u64(b + EDGEC_H_WORKSPACE_SIZE);
  m->num_tensors = edgec_rd_u32(b + EDGEC_H_N_TENSORS);
  m->num_ops = edgec_rd_u32(b + EDGEC_H_N_OPS);
  m->num_args = edgec_rd_u32(b + EDGEC_H_N_ARGS);
  m->num_kernels = edgec_rd_u32(b + EDGEC_H_N_KERNELS);
  m->num_inputs = edgec_rd_u32(b + EDGEC_H_N_INPUTS);
  m->num_outputs = edgec_rd_u32(b + EDGEC_H_N_OUTPUTS);
  m->num_dims = edgec_rd_u32(b + EDGEC_H_N_DIMS);
  m->strings_size = edgec_rd_u64(b + EDGEC_H_STRINGS_SIZE);
  m->consts_size = edgec_rd_u64(b + EDGEC_H_CONSTS_SIZE);
  num_io = (uint64_t)m->num_inputs + m->num_outputs;

  if (!section_ok(tensors_off, m->num_tensors, EDGEC_TENSOR_ENTRY, 8, total)) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0, EDGEC_TEXT("tensor table out of bounds or misaligned"));
  }
  if (!section_ok(ops_off, m->num_ops, EDGEC_OP_ENTRY, 1, total)) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0, EDGEC_TEXT("op table out of bounds"));
  }
  if (!section_ok(args_off, m->num_args, 4, 1, total)) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0, EDGEC_TEXT("argument array out of bounds"));
  }
  if (!section_ok(kernels_off, m->num_kernels, EDGEC_KERNEL_ENTRY, 1, total)) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0, EDGEC_TEXT("kernel table out of bounds"));
  }
  if (!section_ok(io_off, num_io, 4, 1, total)) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0, EDGEC_TEXT("input/output list out of bounds"));
  }
  if (!section_ok(shapes_off, m->num_dims, 8, 8, total)) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0, EDGEC_TEXT("shape array out of bounds or misaligned"));
  }
  if (!section_ok(strings_off, m->strings_size, 1, 1, total)) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0, EDGEC_TEXT("string section out of bounds"));
  }
  if (!section_ok(consts_off, m->consts_size, 1, EDGEC_ALIGNMENT, total)) {
    return fail(v, EDGEC_ERR_BAD_MODEL, NULL, 0, EDGEC_TEXT("constants section out of bounds or misaligned"));
  }
  /* Every section fits in |size|, a size_t: the casts below cannot truncate. */
  m->tensors = b + (size_t)tensors_off;
  m->ops = b + (size_t)ops_off;
  m->args = b + (size_t)args_off;
  m->kernel_names = b + (size_t)kernels_off;
  m->io = b + (size_t)io_off;
  m->shapes = b + (size_t)shapes_off;
  m->strings = (const char*)b + (size_t)strings_off;
  m->consts = b + (size_t)consts_off;
  return EDGEC_OK;
}

static edgec_status_t check_tensors(const vctx_t* v, const edgec_model_t* m) {
  uint32_t i, d;
  for (i = 0; i < m->num_tensors; ++i) {
    edgec_tensor_entry_t t;
    uint64_t count = 1, bytes, end, limit;
    edgec_read_tensor(m, i, &t);
    if (!string_ok(m, t.name)) return fail(v, EDGEC_ERR_BAD_MODEL, "tensor", i, EDGEC_TEXT("name out of bounds"));
    if (!dtype_ok(t.dtype_code, t.dtype_bits)) {
      return fail(v, EDGEC_ERR_BAD_MODEL, "tensor", i, EDGEC_TEXT("unknown dtype"));
    }
    if (t.ndim > EDGEC_MAX_NDIM) return fail(v, EDGEC_ERR_BAD_MODEL, "tensor", i, EDGEC_TEXT("ndim > 8"));
    if ((uint64_t)t.shape_index + t.ndim > m->num_dims) {
      return fail(v, EDGEC_ERR_BAD_MODEL, "tensor", i, EDGEC_TEXT("shape index out of bounds"));
    }
    for (d = 0; d < t.ndim; ++d) {
      const int64_t dim = edgec_read_dim(m, t.shape_index + d);
      if (dim < 0) return fail(v, EDGEC_ERR_BAD_MODEL, "tensor", i, EDGEC_TEXT("negative dimension"));
      if (!edgec_mul_u64(count, (uint64_t)dim, &count)) {
        return fail(v, EDGEC_ERR_BAD_MODEL, "tensor", i, EDGEC_TEXT("element count overflows"));
      }
    }
    if (!edgec_mul_u64(count, t.dtype_bits / 8u, &bytes)) {
      return fail(v, EDGEC_ERR_BAD_MODEL, "tensor", i, EDGEC_TEXT("byte size overflows"));
    }
    if (bytes != t.nbytes) {
      return fail(v, EDGEC_ERR_BAD_MODEL, "tensor", i, EDGEC_TEXT("nbytes differs from shape x element size"));
    }
    if (t.offset % EDGEC_ALIGNMENT != 0) {
      return fail(v, EDGEC_ERR_BAD_MODEL, "tensor", i, EDGEC_TEXT("offset not 64-byte aligned"));
    }
    if (t.storage == EDGEC_STORAGE_ARENA) {
      limit = m->arena_size;
    } else if (t.storage == EDGEC_STORAGE_CONST) {
      limit = m->consts_size;
      if ((t.flags & (EDGEC_FLAG_INPUT | EDGEC_FLAG_OUTPUT)) != 0) {
        return fail(v, EDGEC_ERR_BAD_MODEL, "tensor", i, EDGEC_TEXT("constant flagged as graph input/output"));
      }
    } else {
      return fail(v, EDGEC_ERR_BAD_MODEL, "tensor", i, EDGEC_TEXT("unknown storage"));
    }
    if (!edgec_add_u64(t.offset, t.nbytes, &end) || end > limit) {
      return fail(v, EDGEC_ERR_BAD_MODEL, "tensor", i,
                  t.storage == EDGEC_STORAGE_ARENA ? EDGEC_TEXT("bytes outside the arena")
                                                   : EDGEC_TEXT("bytes outside the constants section"));
    }
  }
  return EDGEC_OK;
}

static edgec_status_t check_ops(const vctx_t* v, const edgec_model_t* m) {
  uint32_t i, a;
  for (i = 0; i < m->num_ops; ++i) {
    edgec_op_entry_t op;
    edgec_read_op(m, i, &op);
    if (op.kernel >= m->num_kernels) {
      return fail(v, EDGEC_ERR_BAD_MODEL, "op", i, EDGEC_TEXT("kernel index out of range"));
    }
    if (op.num_args > EDGEC_MAX_OP_ARGS) return fail(v, EDGEC_ERR_BAD_MODEL, "op", i, EDGEC_TEXT("more than 32 args"));
    if ((uint64_t)op.first_arg + op.num_args > m->num_args) {
      return fail(v, EDGEC_ERR_BAD_MODEL, "op", i, EDGEC_TEXT("args outside the argument array"));
    }
    if (!string_ok(m, op.name)) return fail(v, EDGEC_ERR_BAD_MODEL, "op", i, EDGEC_TEXT("name out of bounds"));
    for (a = 0; a < op.num_args; ++a) {
      if (read_arg(m, op.first_arg + a) >= m->num_tensors) {
        return fail(v, EDGEC_ERR_BAD_MODEL, "op", i, EDGEC_TEXT("argument is not a tensor index"));
      }
    }
  }
  return EDGEC_OK;
}

static edgec_status_t check_kernels(const vctx_t* v, const edgec_model_t* m) {
  uint32_t i;
  for (i = 0; i < m->num_kernels; ++i) {
    const uint32_t name = edgec_rd_u32(m->kernel_names + (size_t)i * EDGEC_KERNEL_ENTRY);
    if (!string_ok(m, name)) return fail(v, EDGEC_ERR_BAD_MODEL, "kernel", i, EDGEC_TEXT("name out of bounds"));
    if (edgec_resolve_kernel(m->kernels, edgec_model_string(m, name), i) == NULL) {
#if EDGEC_LOG_ENABLED
      if (v->log != NULL) {
        edgec_msg_t msg;
        edgec_msg_init(&msg);
        edgec_msg_str(&msg, "invalid model blob: kernel '");
        edgec_msg_str(&msg, edgec_model_string(m, name));
        edgec_msg_str(&msg, "' is not in the kernel table (blob and kernel library do not match)");
        edgec_msg_emit(&msg, v->log, v->user, EDGEC_ERR_BAD_MODEL);
      }
#endif
      return EDGEC_ERR_BAD_MODEL;
    }
  }
  return EDGEC_OK;
}

static edgec_status_t check_io(const vctx_t* v, const edgec_model_t* m) {
  uint64_t i;
  const uint64_t num_io = (uint64_t)m->num_inputs + m->num_outputs;
  for (i = 0; i < num_io; ++i) {
    const uint32_t t = read_io(m, i);
    const uint32_t want = i < m->num_inputs ? EDGEC_FLAG_INPUT : EDGEC_FLAG_OUTPUT;
    edgec_tensor_entry_t e;
    if (t >= m->num_tensors) return fail(v, EDGEC_ERR_BAD_MODEL, "input/output", i, EDGEC_TEXT("not a tensor index"));
    edgec_read_tensor(m, t, &e);
    if (e.storage != EDGEC_STORAGE_ARENA) {
      return fail(v, EDGEC_ERR_BAD_MODEL, "input/output", i, EDGEC_TEXT("not an arena tensor"));
    }
    if ((e.flags & want) == 0) {
      return fail(v, EDGEC_ERR_BAD_MODEL, "input/output", i, EDGEC_TEXT("tensor lacks the input/output flag"));
    }
  }
  return EDGEC_OK;
}

edgec_status_t edgec_model_init_with_log(edgec_model_t* model, const void* blob, size_t blob_size,
                                         const edgec_kernel_table_t* kernels, edgec_log_fn_t log,
                                         void* log_user) {
  vctx_t v;
  edgec_model_t m;
  edgec_status_t st;
  v.log = log;
  v.user = log_user;
  if (model == NULL) return fail(&v, EDGEC_ERR_INVALID_ARGUMENT, NULL, 0, EDGEC_TEXT("model is NULL"));
  memset(model, 0, sizeof(*model));
  if (blob == NULL || kernels == NULL) {
    return fail(&v, EDGEC_ERR_INVALID_ARGUMENT, NULL, 0, EDGEC_TEXT("blob or kernel table is NULL"));
  }
  if (((uintptr_t)blob % EDGEC_ALIGNMENT) != 0) {
    return fail(&v, EDGEC_ERR_INVALID_ARGUMENT, NULL, 0, EDGEC_TEXT("blob is not 64-byte aligned"));
  }
  if (kernels->abi_version != EDGEC_KERNEL_ABI_VERSION) {
    return fail(&v, EDGEC_ERR_UNSUPPORTED, NULL, 0, EDGEC_TEXT("kernel table has another ABI version (want 1)"));
  }
  if (kernels->count > 0 && kernels->entries == NULL) {
    return fail(&v, EDGEC_ERR_INVALID_ARGUMENT, NULL, 0, EDGEC_TEXT("kernel table has no entries"));
  }
  memset(&m, 0, sizeof(m));
  m.blob = (const uint8_t*)blob;
  m.blob_size = blob_size;
  m.kernels = kernels;
  st = check_header(&v, m.blob, blob_size);
  if (st == EDGEC_OK) st = check_sections(&v, &m, m.blob, blob_size);
  if (st == EDGEC_OK) st = check_tensors(&v, &m);
  if (st == EDGEC_OK) st = check_ops(&v, &m);
  if (st == EDGEC_OK) st = check_kernels(&v, &m);
  if (st == EDGEC_OK) st = check_io(&v, &m);
  if (st != EDGEC_OK) return st;
  m.state = EDGEC_MODEL_STATE;
  *model = m;
  return EDGEC_OK;
}

edgec_status_t edgec_model_init(edgec_model_t* model, const void* blob, size_t blob_size,
                                const edgec_kernel_table_t* kernels) {
  return edgec_model_init_with_log(model, blob, blob_size, kernels, NULL, NULL);
}

void edgec_model_deinit(edgec_model_t* model) {
  if (model != NULL) memset(model, 0, sizeof(*model));
}

/*===----------------------------------------------------------------------===*/
/* Queries                                                                    */
/*===----------------------------------------------------------------------===*/

static int model_ok(const edgec_model_t* model) {
  return model != NULL && model->state == EDGEC_MODEL_STATE;
}

static edgec_status_t count_of(const edgec_model_t* model, uint32_t n, uint32_t* out_count) {
  if (out_count == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  *out_count = 0;
  if (model == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  if (!model_ok(model)) return EDGEC_ERR_FAILED_PRECONDITION;
  *out_count = n;
  return EDGEC_OK;
}

edgec_status_t edgec_model_input_count(const edgec_model_t* model, uint32_t* out_count) {
  return count_of(model, model != NULL ? model->num_inputs : 0, out_count);
}

edgec_status_t edgec_model_output_count(const edgec_model_t* model, uint32_t* out_count) {
  return count_of(model, model != NULL ? model->num_outputs : 0, out_count);
}

edgec_status_t edgec_model_op_count(const edgec_model_t* model, uint32_t* out_count) {
  return count_of(model, model != NULL ? model->num_ops : 0, out_count);
}

static edgec_status_t io_info(const edgec_model_t* model, uint32_t io_index, edgec_tensor_info_t* out_info) {
  edgec_tensor_entry_t t;
  uint32_t d;
  edgec_read_tensor(model, read_io(model, io_index), &t);
  out_info->name = edgec_model_string(model, t.name);
  out_info->dtype_code = t.dtype_code;
  out_info->dtype_bits = t.dtype_bits;
  out_info->ndim = t.ndim;
  for (d = 0; d < t.ndim; ++d) out_info->shape[d] = edgec_read_dim(model, t.shape_index + d);
  out_info->nbytes = t.nbytes;
  return EDGEC_OK;
}

edgec_status_t edgec_model_input_info(const edgec_model_t* model, uint32_t index,
                                      edgec_tensor_info_t* out_info) {
  if (out_info == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  memset(out_info, 0, sizeof(*out_info));
  if (model == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  if (!model_ok(model)) return EDGEC_ERR_FAILED_PRECONDITION;
  if (index >= model->num_inputs) return EDGEC_ERR_INVALID_ARGUMENT;
  return io_info(model, index, out_info);
}

edgec_status_t edgec_model_output_info(const edgec_model_t* model, uint32_t index,
                                       edgec_tensor_info_t* out_info) {
  if (out_info == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  memset(out_info, 0, sizeof(*out_info));
  if (model == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  if (!model_ok(model)) return EDGEC_ERR_FAILED_PRECONDITION;
  if (index >= model->num_outputs) return EDGEC_ERR_INVALID_ARGUMENT;
  return io_info(model, model->num_inputs + index, out_info);
}

edgec_status_t edgec_model_find_input(const edgec_model_t* model, const char* name, uint32_t* out_index) {
  uint32_t i;
  if (out_index == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  *out_index = 0;
  if (model == NULL || name == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  if (!model_ok(model)) return EDGEC_ERR_FAILED_PRECONDITION;
  for (i = 0; i < model->num_inputs; ++i) {
    edgec_tensor_entry_t t;
    edgec_read_tensor(model, read_io(model, i), &t);
    if (strcmp(edgec_model_string(model, t.name), name) == 0) {
      *out_index = i;
      return EDGEC_OK;
    }
  }
  return EDGEC_ERR_INVALID_ARGUMENT;
}

edgec_status_t edgec_model_op_name(const edgec_model_t* model, uint32_t index, const char** out_name,
                                   const char** out_kernel_name) {
  edgec_op_entry_t op;
  if (out_name != NULL) *out_name = NULL;
  if (out_kernel_name != NULL) *out_kernel_name = NULL;
  if (model == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  if (!model_ok(model)) return EDGEC_ERR_FAILED_PRECONDITION;
  if (index >= model->num_ops) return EDGEC_ERR_INVALID_ARGUMENT;
  edgec_read_op(model, index, &op);
  if (out_name != NULL) *out_name = edgec_model_string(model, op.name);
  if (out_kernel_name != NULL) {
    *out_kernel_name =
        edgec_model_string(model, edgec_rd_u32(model->kernel_names + (size_t)op.kernel * EDGEC_KERNEL_ENTRY));
  }
  return EDGEC_OK;
}
