/* Kernel workspace: one LIFO bump allocator per thread slot over the session's workspace
 * region (workspace_size bytes each, from the blob header), and the single-threaded
 * backend hooks built on it.
 *
 * alloc rounds the request up to 64 bytes, pushes its start on the slot's stack and bumps
 * the top; free marks the entry and pops every freed entry from the top, so memory comes
 * back in LIFO order (TVM frees in reverse allocation order) and an out-of-order free is
 * still accepted. A full region or stack gives NULL: the kernel then fails cleanly.
 */
#include "internal.h"

static edgec_workspace_t* slot(edgec_session_t* session, uint32_t thread_index) {
  if (session == NULL || session->state != EDGEC_SESSION_STATE) return NULL;
  if (thread_index >= session->options.num_threads) return NULL;
  return (edgec_workspace_t*)session->workspaces + thread_index;
}

void edgec_workspace_reset(edgec_session_t* session) {
  uint32_t i;
  edgec_workspace_t* ws = (edgec_workspace_t*)session->workspaces;
  for (i = 0; i < session->options.num_threads; ++i) {
    ws[i].top = 0;
    ws[i].depth = 0;
  }
}

void* edgec_session_workspace_alloc(edgec_session_t* session, uint32_t thread_index, uint64_t nbytes) {
  edgec_workspace_t* ws = slot(session, thread_index);
  uint64_t size, end;
  if (ws == NULL || ws->depth >= EDGEC_WORKSPACE_MAX_DEPTH) return NULL;
  if (!edgec_align64_u64(nbytes, &size) || !edgec_add_u64(ws->top, size, &end) || end > ws->size) return NULL;
  ws->stack[ws->depth].start = ws->top;
  ws->stack[ws->depth].freed = 0;
  ws->depth += 1;
  ws->top = end;
  return ws->base + ws->stack[ws->depth - 1].start;
}

int32_t edgec_session_workspace_free(edgec_session_t* session, uint32_t thread_index, void* ptr) {
  edgec_workspace_t* ws = slot(session, thread_index);
  uint32_t i;
  if (ws == NULL || ptr == NULL) return -1;
  for (i = ws->depth; i > 0; --i) {
    edgec_ws_slot_t* e = &ws->stack[i - 1];
    if (!e->freed && ws->base + e->start == (uint8_t*)ptr) {
      e->freed = 1;
      while (ws->depth > 0 && ws->stack[ws->depth - 1].freed) {
        ws->depth -= 1;
        ws->top = ws->stack[ws->depth].start;
      }
      return 0;
    }
  }
  return -1;
}

/*===----------------------------------------------------------------------===*/
/* Single-threaded hooks                                                      */
/*===----------------------------------------------------------------------===*/

static void hook_error(void* user, const char* kind, const char* const* parts, int32_t num_parts) {
  edgec_session_kernel_error((edgec_session_t*)user, kind, parts, num_parts);
}

static void* hook_alloc(void* user, uint64_t nbytes) {
  return edgec_session_workspace_alloc((edgec_session_t*)user, 0, nbytes);
}

static int32_t hook_free(void* user, void* ptr) {
  return edgec_session_workspace_free((edgec_session_t*)user, 0, ptr);
}

edgec_status_t edgec_session_backend_hooks(edgec_session_t* session, edgec_backend_hooks_t* out_hooks) {
  if (out_hooks == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  memset(out_hooks, 0, sizeof(*out_hooks));
  if (session == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  if (session->state != EDGEC_SESSION_STATE) return EDGEC_ERR_FAILED_PRECONDITION;
  out_hooks->user = session;
  out_hooks->error = hook_error;
  out_hooks->parallel_launch = NULL; /* the glue runs parallel lambdas inline */
  out_hooks->parallel_barrier = NULL;
  out_hooks->alloc_workspace = hook_alloc;
  out_hooks->free_workspace = hook_free;
  return EDGEC_OK;
}
