/* edgec_session_*: lays a validated model into the caller's arena and runs its ops.
 *
 * Arena map (every part 64-aligned, offsets from the aligned base; edgec_arena_layout):
 *
 *   | calls[n_ops] | args[n_args] | DLTensor[n_tensors] | shapes[n_dims] |
 *   | workspace stacks[threads] | activations (arena_size) | workspace[threads] |
 *
 * The first five parts are bookkeeping written once by edgec_session_init; the kernels
 * only ever see the activations, the constants (in the blob) and the workspaces.
 */
#include "internal.h"

/*===----------------------------------------------------------------------===*/
/* Layout                                                                     */
/*===----------------------------------------------------------------------===*/

/* Appends a part of |count| x |size| bytes at the next 64-aligned offset. */
static int place(uint64_t* cursor, uint64_t count, uint64_t size, uint64_t* out_offset) {
  uint64_t start, bytes;
  if (!edgec_align64_u64(*cursor, &start) || !edgec_mul_u64(count, size, &bytes) ||
      !edgec_add_u64(start, bytes, cursor)) {
    return 0;
  }
  *out_offset = start;
  return 1;
}

edgec_status_t edgec_arena_layout(const edgec_model_t* model, uint32_t num_threads,
                                  edgec_arena_layout_t* out_layout) {
  edgec_arena_layout_t l;
  uint64_t cursor = 0;
  int ok;
  memset(out_layout, 0, sizeof(*out_layout));
  if (num_threads == 0) num_threads = 1;
  if (num_threads > EDGEC_MAX_THREADS) return EDGEC_ERR_INVALID_ARGUMENT;
  memset(&l, 0, sizeof(l));
  ok = edgec_align64_u64(model->workspace_size, &l.workspace_stride) &&
       place(&cursor, model->num_ops, sizeof(edgec_call_t), &l.calls) &&
       place(&cursor, model->num_args, sizeof(edgec_ffi_any_t), &l.args) &&
       place(&cursor, model->num_tensors, sizeof(edgec_dltensor_t), &l.tensors) &&
       place(&cursor, model->num_dims, sizeof(int64_t), &l.shapes) &&
       place(&cursor, num_threads, sizeof(edgec_workspace_t), &l.workspaces) &&
       place(&cursor, 1, model->arena_size, &l.activations) &&
       place(&cursor, num_threads, l.workspace_stride, &l.workspace_data) &&
       edgec_align64_u64(cursor, &l.end) && edgec_add_u64(l.end, EDGEC_ALIGNMENT, &l.required);
  if (!ok || l.required > (uint64_t)SIZE_MAX) return EDGEC_ERR_UNSUPPORTED;
  *out_layout = l;
  return EDGEC_OK;
}

edgec_status_t edgec_model_arena_size(const edgec_model_t* model, uint32_t num_threads, size_t* out_size) {
  edgec_arena_layout_t l;
  edgec_status_t st;
  if (out_size == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  *out_size = 0;
  if (model == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  if (model->state != EDGEC_MODEL_STATE) return EDGEC_ERR_FAILED_PRECONDITION;
  st = edgec_arena_layout(model, num_threads, &l);
  if (st == EDGEC_OK) *out_size = (size_t)l.required;
  return st;
}

/*===----------------------------------------------------------------------===*/
/* Init                                                                       */
/*===----------------------------------------------------------------------===*/

void edgec_session_options_init(edgec_session_options_t* out_options) {
  if (out_options == NULL) return;
  memset(out_options, 0, sizeof(*out_options));
  out_options->num_threads = 1;
}

static void log_arena_too_small(const edgec_session_options_t* o, uint64_t need, uint64_t got) {
#if EDGEC_LOG_ENABLED
  if (o->log != NULL) {
    edgec_msg_t m;
    edgec_msg_init(&m);
    edgec_msg_str(&m, "arena too small: requested ");
    edgec_msg_u64(&m, need);
    edgec_msg_str(&m, " bytes, available ");
    edgec_msg_u64(&m, got);
    edgec_msg_str(&m, ", missing ");
    edgec_msg_u64(&m, need - got);
    edgec_msg_emit(&m, o->log, o->log_user, EDGEC_ERR_ARENA_TOO_SMALL);
  }
#else
  (void)o;
  (void)need;
  (void)got;
#endif
}

edgec_status_t edgec_session_init(edgec_session_t* session, const edgec_model_t* model, void* arena,
                                  size_t arena_size, const edgec_session_options_t* options) {
  edgec_session_options_t o;
  edgec_arena_layout_t l;
  edgec_status_t st;
  uint8_t* base;
  edgec_call_t* calls;
  edgec_ffi_any_t* args;
  edgec_dltensor_t* tensors;
  int64_t* shapes;
  edgec_workspace_t* ws;
  uint32_t i, a;

  if (session == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  memset(session, 0, sizeof(*session));
  if (model == NULL || arena == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  if (model->state != EDGEC_MODEL_STATE) return EDGEC_ERR_FAILED_PRECONDITION;
  if (options != NULL) {
    o = *options;
  } else {
    edgec_session_options_init(&o);
  }
  if (o.num_threads == 0) o.num_threads = 1;
  st = edgec_arena_layout(model, o.num_threads, &l);
  if (st != EDGEC_OK) return st;
  if ((uint64_t)arena_size < l.required) {
    log_arena_too_small(&o, l.required, (uint64_t)arena_size);
    return EDGEC_ERR_ARENA_TOO_SMALL;
  }

  base = (uint8_t*)arena + ((EDGEC_ALIGNMENT - ((uintptr_t)arena % EDGEC_ALIGNMENT)) % EDGEC_ALIGNMENT);
  memset(base, 0, (size_t)l.end);
  calls = (edgec_call_t*)(void*)(base + l.calls);
  args = (edgec_ffi_any_t*)(void*)(base + l.args);
  tensors = (edgec_dltensor_t*)(void*)(base + l.tensors);
  shapes = (int64_t*)(void*)(base + l.shapes);
  ws = (edgec_workspace_t*)(void*)(base + l.workspaces);

  for (i = 0; i < model->num_dims; ++i) shapes[i] = edgec_read_dim(model, i);
  for (i = 0; i < model->num_tensors; ++i) {
    edgec_tensor_entry_t e;
    edgec_dltensor_t* t = &tensors[i];
    edgec_read_tensor(model, i, &e);
    t->data = e.storage == EDGEC_STORAGE_CONST ? (void*)(uintptr_t)(model->consts + e.offset)
                                               : (void*)(base + l.activations + e.offset);
    t->device.device_type = EDGEC_DL_CPU;
    t->device.device_id = 0;
    t->ndim = e.ndim;
    t->dtype.code = e.dtype_code;
    t->dtype.bits = e.dtype_bits;
    t->dtype.lanes = 1;
    t->shape = shapes + e.shape_index;
    t->strides = NULL;
    t->byte_offset = 0;
  }
  for (i = 0; i < model->num_args; ++i) {
    const uint32_t tensor = edgec_rd_u32(model->args + (size_t)i * 4);
    args[i].type_index = EDGEC_FFI_DLTENSOR_PTR;
    args[i].zero_padding = 0;
    args[i].v.v_ptr = &tensors[tensor];
  }
  for (i = 0; i < model->num_ops; ++i) {
    edgec_op_entry_t op;
    const char* kernel_name;
    edgec_read_op(model, i, &op);
    kernel_name =
        edgec_model_string(model, edgec_rd_u32(model->kernel_names + (size_t)op.kernel * EDGEC_KERNEL_ENTRY));
    calls[i].fn = edgec_resolve_kernel(model->kernels, kernel_name, op.kernel);
    if (calls[i].fn == NULL) return EDGEC_ERR_INTERNAL; /* resolved by edgec_model_init */
    calls[i].args = args + op.first_arg;
    calls[i].num_args = (int32_t)op.num_args;
    calls[i].name = op.name;
    calls[i].kernel = op.kernel;
    for (a = 0; a < op.num_args; ++a) EDGEC_DCHECK(calls[i].args[a].v.v_ptr != NULL);
  }
  for (i = 0; i < o.num_threads; ++i) {
    ws[i].base = base + l.workspace_data + (uint64_t)i * l.workspace_stride;
    ws[i].size = l.workspace_stride;
  }

  session->model = model;
  session->base = base;
  session->calls = calls;
  session->tensors = tensors;
  session->workspaces = ws;
  session->activations = base + l.activations;
  session->options = o;
  session->current_op = UINT32_MAX;
  session->state = EDGEC_SESSION_STATE;
  return EDGEC_OK;
}

void edgec_session_deinit(edgec_session_t* session) {
  if (session != NULL) memset(session, 0, sizeof(*session));
}

/*===----------------------------------------------------------------------===*/
/* I/O                                                                        */
/*===----------------------------------------------------------------------===*/

static edgec_status_t io_data(edgec_session_t* session, uint32_t io_index, uint32_t limit, uint32_t index,
                              void** out_data) {
  const edgec_model_t* m;
  const edgec_dltensor_t* tensors;
  if (out_data == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  *out_data = NULL;
  if (session == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  if (session->state != EDGEC_SESSION_STATE) return EDGEC_ERR_FAILED_PRECONDITION;
  if (index >= limit) return EDGEC_ERR_INVALID_ARGUMENT;
  m = session->model;
  tensors = (const edgec_dltensor_t*)session->tensors;
  *out_data = tensors[edgec_rd_u32(m->io + (size_t)io_index * 4)].data;
  return EDGEC_OK;
}

edgec_status_t edgec_session_input_data(edgec_session_t* session, uint32_t index, void** out_data) {
  const uint32_t n = session != NULL && session->model != NULL ? session->model->num_inputs : 0;
  return io_data(session, index, n, index, out_data);
}

edgec_status_t edgec_session_output_data(edgec_session_t* session, uint32_t index, void** out_data) {
  const uint32_t n_in = session != NULL && session->model != NULL ? session->model->num_inputs : 0;
  const uint32_t n = session != NULL && session->model != NULL ? session->model->num_outputs : 0;
  return io_data(session, n_in + index, n, index, out_data);
}

/*===----------------------------------------------------------------------===*/
/* Run                                                                        */
/*===----------------------------------------------------------------------===*/

#if EDGEC_LOG_ENABLED
/* Appends "op <i> '<name>' (kernel '<kernel>')" for the op |index| to |m|. */
static void describe_op(edgec_msg_t* m, const edgec_model_t* model, const edgec_call_t* call, uint32_t index) {
  edgec_msg_str(m, "op ");
  edgec_msg_u64(m, index);
  edgec_msg_str(m, " '");
  edgec_msg_str(m, edgec_model_string(model, call->name));
  edgec_msg_str(m, "' (kernel '");
  edgec_msg_str(m, edgec_model_string(model, edgec_rd_u32(model->kernel_names +
                                                          (size_t)call->kernel * EDGEC_KERNEL_ENTRY)));
  edgec_msg_str(m, "')");
}
#endif

static edgec_status_t kernel_failed(edgec_session_t* s, const edgec_call_t* call, uint32_t index, int32_t rc) {
#if EDGEC_LOG_ENABLED
  if (s->options.log != NULL) {
    edgec_msg_t m;
    edgec_msg_init(&m);
    describe_op(&m, s->model, call, index);
    edgec_msg_str(&m, " failed: kernel returned ");
    edgec_msg_i64(&m, rc);
    edgec_msg_emit(&m, s->options.log, s->options.log_user, EDGEC_ERR_KERNEL);
  }
#else
  (void)s;
  (void)call;
  (void)index;
  (void)rc;
#endif
  return EDGEC_ERR_KERNEL;
}

static edgec_status_t run(edgec_session_t* s, uint64_t* ns) {
  const edgec_call_t* calls;
  uint32_t i, n;
  if (s == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  if (s->state != EDGEC_SESSION_STATE) return EDGEC_ERR_FAILED_PRECONDITION;
  calls = (const edgec_call_t*)s->calls;
  n = s->model->num_ops;
  edgec_workspace_reset(s);
  for (i = 0; i < n; ++i) {
    edgec_ffi_any_t result;
    uint64_t t0 = 0;
    int32_t rc;
    result.type_index = EDGEC_FFI_NONE;
    result.zero_padding = 0;
    result.v.v_int64 = 0;
    s->current_op = i;
    if (ns != NULL) t0 = s->options.clock(s->options.clock_user);
    rc = calls[i].fn(NULL, calls[i].args, calls[i].num_args, &result);
    if (ns != NULL) ns[i] = s->options.clock(s->options.clock_user) - t0;
    if (rc != 0) {
      s->current_op = UINT32_MAX;
      return kernel_failed(s, &calls[i], i, rc);
    }
  }
  s->current_op = UINT32_MAX;
  return EDGEC_OK;
}

edgec_status_t edgec_session_run(edgec_session_t* session) {
  return run(session, NULL);
}

edgec_status_t edgec_session_run_profiled(edgec_session_t* session, uint64_t* out_ns_per_op, uint32_t capacity) {
  if (session == NULL || out_ns_per_op == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  if (session->state != EDGEC_SESSION_STATE) return EDGEC_ERR_FAILED_PRECONDITION;
  if (capacity < session->model->num_ops) return EDGEC_ERR_INVALID_ARGUMENT;
  memset(out_ns_per_op, 0, (size_t)capacity * sizeof(uint64_t));
  if (session->options.clock == NULL) return EDGEC_ERR_UNSUPPORTED;
  return run(session, out_ns_per_op);
}

/*===----------------------------------------------------------------------===*/
/* Kernel errors                                                              */
/*===----------------------------------------------------------------------===*/

void edgec_session_kernel_error(edgec_session_t* session, const char* kind, const char* const* parts,
                                int32_t num_parts) {
#if EDGEC_LOG_ENABLED
  edgec_msg_t m;
  int32_t i;
  if (session == NULL || session->state != EDGEC_SESSION_STATE || session->options.log == NULL) return;
  edgec_msg_init(&m);
  if (session->current_op < session->model->num_ops) {
    const edgec_call_t* calls = (const edgec_call_t*)session->calls;
    describe_op(&m, session->model, &calls[session->current_op], session->current_op);
    edgec_msg_str(&m, ": ");
  } else {
    edgec_msg_str(&m, "kernel error: ");
  }
  edgec_msg_str(&m, kind != NULL ? kind : "Error");
  edgec_msg_str(&m, ": ");
  for (i = 0; parts != NULL && i < num_parts; ++i) {
    if (parts[i] != NULL) edgec_msg_str(&m, parts[i]);
  }
  edgec_msg_emit(&m, session->options.log, session->options.log_user, EDGEC_ERR_KERNEL);
#else
  (void)session;
  (void)kind;
  (void)parts;
  (void)num_parts;
#endif
}
