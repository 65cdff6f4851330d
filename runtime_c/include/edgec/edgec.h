/* edgec runtime: the only public header (C99).
 *
 * Run a compiled edgec model from caller-owned memory, firmware style:
 *
 *   #include "edgec/edgec.h"         // edgec_model_kernels, edgec_kernels_bind: kernel_glue.c
 *   static uint8_t arena[64 * 1024];  // any alignment
 *
 *   edgec_model_t model; edgec_session_t session; edgec_backend_hooks_t hooks;
 *   edgec_status_t st = edgec_model_init(&model, blob, blob_size,    // blob 64-aligned
 *                                        &edgec_model_kernels);
 *   size_t need = 0;
 *   if (st == EDGEC_OK) st = edgec_model_arena_size(&model, 1, &need);
 *   if (st == EDGEC_OK && need > sizeof(arena)) st = EDGEC_ERR_ARENA_TOO_SMALL;
 *   if (st == EDGEC_OK) st = edgec_session_init(&session, &model, arena, sizeof(arena), NULL);
 *   if (st == EDGEC_OK) st = edgec_session_backend_hooks(&session, &hooks);
 *   if (st == EDGEC_OK) edgec_kernels_bind(&hooks);
 *   void* x = NULL;
 *   if (st == EDGEC_OK) st = edgec_session_input_data(&session, 0, &x);
 *   // ... fill |x| (see edgec_model_input_info for its dtype and shape) ...
 *   if (st == EDGEC_OK) st = edgec_session_run(&session);
 *   if (st != EDGEC_OK) printf("edgec: %s\n", edgec_status_str(st));
 *
 * On a hosted system (Linux), edgec_hosted_load() does all of the above from an artifact
 * folder (model.edgec + kernels.so) and adds a thread pool.
 *
 * Ownership: the runtime core never allocates. Every object lives in caller storage
 * (edgec_model_t, edgec_session_t) and borrows the caller's memory: the blob must outlive
 * the model, the model and the arena must outlive the session. Constants stay in the blob,
 * read-only. Only the hosted layer (edgec_hosted_*) allocates, opens files and starts threads.
 *
 * Thread-safety: models are immutable after init and may be shared between threads.
 * Sessions are thread-compatible: one thread at a time per session. The generated kernel
 * glue holds one set of hooks per kernel library, so two sessions using the same kernel
 * library must not run at the same time (edgec_hosted_run serializes this itself).
 *
 * Errors: every fallible call returns an edgec_status_t (EDGEC_OK == 0). Out parameters
 * (|out_*|) are cleared on entry. Details go to an optional log callback, never to a global
 * buffer. Building the runtime with EDGEC_STRIP_ERROR_STRINGS removes every message string.
 *
 * This header is parsed by cffi: keep declarations free of macros; preprocessor lines
 * are stripped before parsing.
 */
#ifndef EDGEC_EDGEC_H_
#define EDGEC_EDGEC_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*===----------------------------------------------------------------------===*/
/* Constants and status codes                                                 */
/*===----------------------------------------------------------------------===*/

enum {
  EDGEC_BLOB_VERSION_MAJOR = 1,  /* a blob of another major version is rejected */
  EDGEC_BLOB_VERSION_MINOR = 0,  /* blobs with minor <= this are accepted */
  EDGEC_KERNEL_ABI_VERSION = 1,  /* edgec_kernel_table_t.abi_version this runtime accepts */
  EDGEC_MAX_NDIM = 8,            /* most dimensions of a tensor */
  EDGEC_MAX_OP_ARGS = 32,        /* most tensors passed to one kernel */
  EDGEC_ALIGNMENT = 64,          /* alignment of blob, constants, activations, workspace */
  EDGEC_WORKSPACE_MAX_DEPTH = 32, /* most live workspace allocations per thread */
  EDGEC_MAX_THREADS = 1024       /* most threads of a session */
};

typedef enum edgec_status_t {
  /* Success. */
  EDGEC_OK = 0,
  /* A NULL pointer, an index out of range, or a misaligned blob given by the caller. */
  EDGEC_ERR_INVALID_ARGUMENT = 1,
  /* The blob is corrupt or not an edgec blob of this major version: magic, version,
   * checksum, a bound, an alignment, or a kernel name the kernel table does not have. */
  EDGEC_ERR_BAD_MODEL = 2,
  /* Valid request this runtime cannot serve: kernel ABI version, missing clock. */
  EDGEC_ERR_UNSUPPORTED = 3,
  /* The arena given to edgec_session_init is smaller than edgec_model_arena_size. */
  EDGEC_ERR_ARENA_TOO_SMALL = 4,
  /* Wrong call order: object not initialized, or used after deinit. */
  EDGEC_ERR_FAILED_PRECONDITION = 5,
  /* A kernel returned non-zero (its message, if any, went to the log callback). */
  EDGEC_ERR_KERNEL = 6,
  /* Hosted layer: a file is missing or unreadable, or the kernel library cannot be opened. */
  EDGEC_ERR_IO = 7,
  /* A bug or resource failure inside the runtime (thread creation, allocation). */
  EDGEC_ERR_INTERNAL = 8
} edgec_status_t;

/* Returns a static string naming |status| ("EDGEC_OK", ...), or "" when the runtime was
 * built with EDGEC_STRIP_ERROR_STRINGS. Never NULL. */
const char* edgec_status_str(edgec_status_t status);

/* Log callback: receives one NUL-terminated message per event, with the status it
 * explains. May be called from a worker thread when a kernel fails inside a parallel
 * region; the message is only valid during the call. */
typedef void (*edgec_log_fn_t)(void* user, edgec_status_t status, const char* message);

/* Monotonic clock in nanoseconds, supplied by the caller for profiled runs. */
typedef uint64_t (*edgec_clock_fn_t)(void* user);

/*===----------------------------------------------------------------------===*/
/* Kernel ABI (generated kernel_glue.c re-declares these types identically)   */
/*===----------------------------------------------------------------------===*/

/* A TVM packed function: |args| points at |num_args| 16-byte TVMFFIAny values of type
 * index 7 (DLTensor*), |result| at one TVMFFIAny (type index 0). Returns 0 on success. */
typedef int32_t (*edgec_kernel_fn_t)(void* self, const void* args, int32_t num_args, void* result);

/* One kernel: |name| without the "__tvm_ffi_" prefix, and its function. */
typedef struct edgec_kernel_entry_t {
  const char* name;
  edgec_kernel_fn_t fn;
} edgec_kernel_entry_t;

/* The table the compiler generates (const edgec_kernel_table_t edgec_model_kernels). */
typedef struct edgec_kernel_table_t {
  const edgec_kernel_entry_t* entries;
  uint32_t count;
  uint32_t abi_version; /* EDGEC_KERNEL_ABI_VERSION */
} edgec_kernel_table_t;

/* TVM's parallel lambda; |penv| is a TVMParallelGroupEnv* {void* sync_handle; int32_t
 * num_task;} whose num_task tells the lambda how many tasks share the loop. */
typedef int32_t (*edgec_parallel_lambda_t)(int32_t task_id, void* penv, void* cdata);

/* What the generated kernel glue forwards TVM's backend calls to. Any hook may be NULL:
 * then errors are dropped, parallel launches run inline as one task (task 0, num_task 1),
 * barriers succeed for one task, and workspace allocation fails (returns NULL).
 * - error: a kernel failed; |parts| (entries may be NULL) concatenated form the message.
 * - parallel_launch: run |lambda| for task ids 0..n-1 exactly once each, n = |num_task|
 *   or the number of threads when |num_task| <= 0; set penv->num_task = n; return 0, or
 *   -1 if any task returned non-zero.
 * - parallel_barrier: wait until every task of the launch reached the barrier.
 * - alloc_workspace / free_workspace: scratch memory for the calling thread, LIFO. */
typedef struct edgec_backend_hooks_t {
  void* user;
  void (*error)(void* user, const char* kind, const char* const* parts, int32_t num_parts);
  int32_t (*parallel_launch)(void* user, edgec_parallel_lambda_t lambda, void* cdata, int32_t num_task);
  int32_t (*parallel_barrier)(void* user, int32_t task_id, void* penv);
  void* (*alloc_workspace)(void* user, uint64_t nbytes);
  int32_t (*free_workspace)(void* user, void* ptr);
} edgec_backend_hooks_t;

/* EDGEC_GLUE_DECLS_BEGIN (defined by the generated kernel_glue.c, not by the runtime) */
/* The compiled model's kernels. */
extern const edgec_kernel_table_t edgec_model_kernels;
/* Installs |hooks| (copied) for every kernel of this kernel library; NULL removes them. */
void edgec_kernels_bind(const edgec_backend_hooks_t* hooks);
/* EDGEC_GLUE_DECLS_END */

/*===----------------------------------------------------------------------===*/
/* Model: a validated view of a blob                                          */
/*===----------------------------------------------------------------------===*/

/* A loaded model. Caller storage; fields are private. Immutable after init: thread-safe
 * to read from many threads. Borrows the blob and the kernel table. */
typedef struct edgec_model_t {
  const uint8_t* blob;
  size_t blob_size;
  const edgec_kernel_table_t* kernels;
  const uint8_t* tensors;
  const uint8_t* ops;
  const uint8_t* args;
  const uint8_t* kernel_names;
  const uint8_t* io;
  const uint8_t* shapes;
  const char* strings;
  const uint8_t* consts;
  uint64_t strings_size;
  uint64_t consts_size;
  uint64_t arena_size;
  uint64_t workspace_size;
  uint32_t num_tensors;
  uint32_t num_ops;
  uint32_t num_args;
  uint32_t num_kernels;
  uint32_t num_inputs;
  uint32_t num_outputs;
  uint32_t num_dims;
  uint32_t state;
} edgec_model_t;

/* Description of one model input or output. |name| points into the blob. */
typedef struct edgec_tensor_info_t {
  const char* name;
  int32_t dtype_code;  /* DLPack: 0 int, 1 uint, 2 float, 6 bool */
  int32_t dtype_bits;  /* 8, 16, 32 or 64 */
  int32_t ndim;        /* <= EDGEC_MAX_NDIM */
  int32_t reserved;
  int64_t shape[8];    /* first |ndim| entries are used */
  uint64_t nbytes;
} edgec_tensor_info_t;

/* Validates |blob| (|blob_size| bytes, 64-byte aligned) completely, as listed in
 * docs/artifact.md, and resolves its kernel names in |kernels| once. On success |model|
 * borrows |blob| and |kernels|; nothing is copied. On failure |model| is cleared and
 * unusable. Returns EDGEC_ERR_BAD_MODEL for a corrupt blob, EDGEC_ERR_UNSUPPORTED for a
 * kernel table of another ABI version, EDGEC_ERR_INVALID_ARGUMENT for NULL or a misaligned
 * blob. */
edgec_status_t edgec_model_init(edgec_model_t* model, const void* blob, size_t blob_size,
                                const edgec_kernel_table_t* kernels);

/* Same as edgec_model_init; a failure is also explained through |log| (may be NULL). */
edgec_status_t edgec_model_init_with_log(edgec_model_t* model, const void* blob, size_t blob_size,
                                         const edgec_kernel_table_t* kernels, edgec_log_fn_t log,
                                         void* log_user);

/* Clears |model|. It must not be used by any session afterwards. */
void edgec_model_deinit(edgec_model_t* model);

/* Bytes of arena a session of |model| with |num_threads| threads (0 means 1) needs:
 * runtime bookkeeping, the planned activations and one workspace per thread, each
 * 64-aligned, plus slack to align an arena of any alignment. Stored in |out_size|. */
edgec_status_t edgec_model_arena_size(const edgec_model_t* model, uint32_t num_threads,
                                      size_t* out_size);

/* Number of graph inputs / outputs / ops of |model|, stored in |out_count|. */
edgec_status_t edgec_model_input_count(const edgec_model_t* model, uint32_t* out_count);
edgec_status_t edgec_model_output_count(const edgec_model_t* model, uint32_t* out_count);
edgec_status_t edgec_model_op_count(const edgec_model_t* model, uint32_t* out_count);

/* Describes input / output number |index| in |out_info|. */
edgec_status_t edgec_model_input_info(const edgec_model_t* model, uint32_t index,
                                      edgec_tensor_info_t* out_info);
edgec_status_t edgec_model_output_info(const edgec_model_t* model, uint32_t index,
                                       edgec_tensor_info_t* out_info);

/* Finds the input named |name|; EDGEC_ERR_INVALID_ARGUMENT if there is none. */
edgec_status_t edgec_model_find_input(const edgec_model_t* model, const char* name,
                                      uint32_t* out_index);

/* Name of op |index| (the IR node) and of the kernel it calls; both point into the blob. */
edgec_status_t edgec_model_op_name(const edgec_model_t* model, uint32_t index,
                                   const char** out_name, const char** out_kernel_name);

/*===----------------------------------------------------------------------===*/
/* Session: a model bound to an arena                                         */
/*===----------------------------------------------------------------------===*/

/* Options of edgec_session_init; get defaults from edgec_session_options_init. */
typedef struct edgec_session_options_t {
  uint32_t num_threads;   /* workspace slots (threads that may run kernels); 0 means 1 */
  uint32_t reserved;
  edgec_log_fn_t log;     /* kernel errors and failing ops; may be NULL */
  void* log_user;
  edgec_clock_fn_t clock; /* needed by edgec_session_run_profiled; may be NULL */
  void* clock_user;
} edgec_session_options_t;

/* A model bound to an arena. Caller storage; fields are private. Thread-compatible. */
typedef struct edgec_session_t {
  const edgec_model_t* model;
  uint8_t* base;          /* arena, aligned */
  void* calls;            /* per-op prepared calls */
  void* tensors;          /* DLTensor per tensor */
  void* workspaces;       /* per-thread workspace stacks */
  uint8_t* activations;
  edgec_session_options_t options;
  uint32_t current_op;
  uint32_t state;
} edgec_session_t;

/* Fills |out_options| with defaults: one thread, no log, no clock. */
void edgec_session_options_init(edgec_session_options_t* out_options);

/* Binds |model| to |arena| (|arena_size| bytes, any alignment; contents overwritten and
 * zeroed). |options| may be NULL for defaults. Returns EDGEC_ERR_ARENA_TOO_SMALL when
 * |arena_size| is below edgec_model_arena_size(model, options->num_threads). */
edgec_status_t edgec_session_init(edgec_session_t* session, const edgec_model_t* model, void* arena,
                                  size_t arena_size, const edgec_session_options_t* options);

/* Clears |session|; the arena may be reused afterwards. */
void edgec_session_deinit(edgec_session_t* session);

/* Data of input / output number |index| in the arena (64-aligned, the tensor's nbytes,
 * C order). Inputs are read by the next run; outputs are valid until the next run. */
edgec_status_t edgec_session_input_data(edgec_session_t* session, uint32_t index, void** out_data);
edgec_status_t edgec_session_output_data(edgec_session_t* session, uint32_t index, void** out_data);

/* Runs every op in order. Returns EDGEC_ERR_KERNEL (and logs the op) if a kernel fails;
 * the session stays usable. The kernels' backend hooks must be bound (see
 * edgec_session_backend_hooks) when kernels use workspace or report errors. */
edgec_status_t edgec_session_run(edgec_session_t* session);

/* Like edgec_session_run, and stores each op's duration in nanoseconds, measured with
 * the session's clock, in |out_ns_per_op| (|capacity| >= op count entries).
 * EDGEC_ERR_UNSUPPORTED if the session has no clock. */
edgec_status_t edgec_session_run_profiled(edgec_session_t* session, uint64_t* out_ns_per_op,
                                          uint32_t capacity);

/* Single-threaded hooks serving |session|: kernel errors go to its log, workspace comes
 * from thread slot 0, parallel launches run inline. Pass them to edgec_kernels_bind. */
edgec_status_t edgec_session_backend_hooks(edgec_session_t* session,
                                           edgec_backend_hooks_t* out_hooks);

/* Building blocks for multi-threaded hooks. |thread_index| < the session's num_threads
 * names the calling thread's workspace slot; each slot must be used by one thread at a
 * time. Allocations are LIFO bump allocations rounded up to 64 bytes; alloc returns NULL
 * when the slot's workspace_size is exhausted. free returns 0, or -1 for an unknown
 * pointer. */
void* edgec_session_workspace_alloc(edgec_session_t* session, uint32_t thread_index, uint64_t nbytes);
int32_t edgec_session_workspace_free(edgec_session_t* session, uint32_t thread_index, void* ptr);
/* Sends a kernel's error message (TVM's kind + parts) to the session's log, naming the
 * op that is running. */
void edgec_session_kernel_error(edgec_session_t* session, const char* kind,
                                const char* const* parts, int32_t num_parts);

/*===----------------------------------------------------------------------===*/
/* Hosted layer (Linux/POSIX: files, dlopen, pthreads, malloc)                */
/*===----------------------------------------------------------------------===*/

/* A model loaded from an artifact folder with its own arena and thread pool. Opaque.
 * Thread-compatible; runs of models sharing one kernels.so are serialized internally. */
typedef struct edgec_hosted_t edgec_hosted_t;

typedef struct edgec_hosted_options_t {
  uint32_t num_threads;  /* threads running kernels, the caller included; 0 means 1 */
  uint32_t reserved;
  edgec_log_fn_t log;    /* load failures, kernel errors; may be NULL */
  void* log_user;
} edgec_hosted_options_t;

/* Fills |out_options| with defaults: one thread, no log. */
void edgec_hosted_options_init(edgec_hosted_options_t* out_options);

/* Loads <|dir|>/model.edgec into 64-aligned memory, opens <|dir|>/kernels.so (RTLD_LOCAL),
 * validates, allocates the arena, binds the hooks and starts |num_threads| - 1 workers.
 * EDGEC_ERR_IO for a missing or unreadable file or library, EDGEC_ERR_BAD_MODEL for a
 * corrupt blob or a library without the edgec kernel table. Free with edgec_hosted_free. */
edgec_status_t edgec_hosted_load(const char* dir, uint32_t num_threads, edgec_hosted_t** out_hosted);

/* Same with options (|options| NULL means defaults). */
edgec_status_t edgec_hosted_load_with_options(const char* dir, const edgec_hosted_options_t* options,
                                              edgec_hosted_t** out_hosted);

/* Stops the workers, closes the library and frees everything. NULL is ignored. */
void edgec_hosted_free(edgec_hosted_t* hosted);

/* The model and session inside |hosted| (owned by it), for the accessors above. */
edgec_status_t edgec_hosted_model(edgec_hosted_t* hosted, const edgec_model_t** out_model);
edgec_status_t edgec_hosted_session(edgec_hosted_t* hosted, edgec_session_t** out_session);

/* Bytes of arena |hosted| allocated (edgec_model_arena_size for its thread count). */
edgec_status_t edgec_hosted_arena_size(edgec_hosted_t* hosted, size_t* out_size);

/* Runs the model (edgec_session_run with this model's hooks bound). */
edgec_status_t edgec_hosted_run(edgec_hosted_t* hosted);

/* Profiled run; durations from CLOCK_MONOTONIC. See edgec_session_run_profiled. */
edgec_status_t edgec_hosted_run_profiled(edgec_hosted_t* hosted, uint64_t* out_ns_per_op,
                                         uint32_t capacity);

#ifdef __cplusplus
}
#endif

#endif /* EDGEC_EDGEC_H_ */
