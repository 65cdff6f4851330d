/* Hosted layer: loads an artifact folder (model.edgec + kernels.so) on a POSIX system.
 *
 * This file may allocate, open files and libraries, and start threads; the runtime core
 * (model.c, session.c, workspace.c) does none of that.
 *
 * The generated glue keeps one set of backend hooks per kernel library, and dlopen
 * returns the same handle for the same file, so loaded libraries are kept in a small
 * registry: each entry has a mutex held while one of its models runs, and remembers
 * which model's hooks are bound, rebinding when another model of the same library runs.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* madvise */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hosted_internal.h"
#include "internal.h"

typedef void (*bind_fn_t)(const edgec_backend_hooks_t* hooks);

typedef struct lib_entry_t {
  void* dl;
  uint32_t refs;
  bind_fn_t bind;
  const edgec_hosted_t* bound;
  pthread_mutex_t run_mu;
  struct lib_entry_t* next;
} lib_entry_t;

struct edgec_hosted_t {
  uint8_t* blob;
  size_t blob_size;
  void* dl;
  lib_entry_t* lib;
  const edgec_kernel_table_t* table;
  edgec_model_t model;
  edgec_session_t session;
  uint8_t* arena;
  size_t arena_size;
  edgec_pool_t* pool;
  edgec_backend_hooks_t hooks;
  edgec_log_fn_t log;
  void* log_user;
};

static pthread_mutex_t g_libs_mu = PTHREAD_MUTEX_INITIALIZER;
static lib_entry_t* g_libs = NULL;

/*===----------------------------------------------------------------------===*/
/* Helpers                                                                    */
/*===----------------------------------------------------------------------===*/

static edgec_status_t hosted_fail(const edgec_hosted_options_t* o, edgec_status_t st, const char* what,
                                  const char* path, const char* detail) {
#if EDGEC_LOG_ENABLED
  if (o->log != NULL) {
    edgec_msg_t m;
    edgec_msg_init(&m);
    edgec_msg_str(&m, what);
    if (path != NULL) {
      edgec_msg_str(&m, " '");
      edgec_msg_str(&m, path);
      edgec_msg_str(&m, "'");
    }
    if (detail != NULL) {
      edgec_msg_str(&m, ": ");
      edgec_msg_str(&m, detail);
    }
    edgec_msg_emit(&m, o->log, o->log_user, st);
  }
#else
  (void)o;
  (void)what;
  (void)path;
  (void)detail;
#endif
  return st;
}

static char* join_path(const char* dir, const char* file) {
  const size_t a = strlen(dir), b = strlen(file);
  char* p = (char*)malloc(a + b + 2);
  if (p == NULL) return NULL;
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, file, b + 1);
  return p;
}

/* Blocks of at least this many bytes (the weights of a large model, its arena) are 2 MiB-aligned
 * and, where the system has transparent huge pages in "madvise" mode, asked to be backed by huge
 * pages: a model streams its weights once per run, and with 4 KiB pages every 4 KiB is a TLB
 * miss and a point where the hardware prefetchers stop. */
enum { HUGE_MIN_BYTES = 4u << 20, HUGE_PAGE_BYTES = 2u << 20 };

/* |size| bytes aligned to EDGEC_ALIGNMENT (to 2 MiB for large blocks, with MADV_HUGEPAGE where
 * defined; the advice is a hint and its failure is ignored), or NULL. Released with free(). */
static void* alloc_block(size_t size) {
  void* p = NULL;
  if (size >= HUGE_MIN_BYTES && size <= SIZE_MAX - HUGE_PAGE_BYTES) {
    const size_t rounded = (size + HUGE_PAGE_BYTES - 1) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    if (posix_memalign(&p, HUGE_PAGE_BYTES, rounded) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
  }
  return posix_memalign(&p, EDGEC_ALIGNMENT, size > 0 ? size : 1) == 0 ? p : NULL;
}

/* Reads |path| into 64-aligned memory. */
static edgec_status_t read_file(const edgec_hosted_options_t* o, const char* path, uint8_t** out_data,
                                size_t* out_size) {
  struct stat st;
  uint8_t* data = NULL;
  size_t done = 0;
  int fd;
  *out_data = NULL;
  *out_size = 0;
  fd = open(path, O_RDONLY);
  if (fd < 0) return hosted_fail(o, EDGEC_ERR_IO, "cannot open model blob", path, strerror(errno));
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return hosted_fail(o, EDGEC_ERR_IO, "model blob is not a regular file", path, NULL);
  }
  if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX - EDGEC_ALIGNMENT ||
      (data = (uint8_t*)alloc_block((size_t)st.st_size + EDGEC_ALIGNMENT)) == NULL) {
    close(fd);
    return hosted_fail(o, EDGEC_ERR_INTERNAL, "cannot allocate memory for", path, NULL);
  }
  while (done < (size_t)st.st_size) {
    const ssize_t got = read(fd, data + done, (size_t)st.st_size - done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const char* why = got < 0 ? strerror(errno) : "file shrank while reading";
      close(fd);
      free(data);
      return hosted_fail(o, EDGEC_ERR_IO, "cannot read model blob", path, why);
    }
    done += (size_t)got;
  }
  close(fd);
  *out_data = data;
  *out_size = done;
  return EDGEC_OK;
}

static uint64_t monotonic_ns(void* user) {
  struct timespec ts;
  (void)user;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*===----------------------------------------------------------------------===*/
/* Hooks                                                                      */
/*===----------------------------------------------------------------------===*/

static void hook_error(void* user, const char* kind, const char* const* parts, int32_t num_parts) {
  edgec_session_kernel_error(&((edgec_hosted_t*)user)->session, kind, parts, num_parts);
}

static int32_t hook_launch(void* user, edgec_parallel_lambda_t lambda, void* cdata, int32_t num_task) {
  return edgec_pool_launch(((edgec_hosted_t*)user)->pool, lambda, cdata, num_task);
}

static int32_t hook_barrier(void* user, int32_t task_id, void* penv) {
  return edgec_pool_barrier(((edgec_hosted_t*)user)->pool, task_id, penv);
}

static void* hook_alloc(void* user, uint64_t nbytes) {
  edgec_hosted_t* h = (edgec_hosted_t*)user;
  return edgec_session_workspace_alloc(&h->session, edgec_pool_thread_index(h->pool), nbytes);
}

static int32_t hook_free(void* user, void* ptr) {
  edgec_hosted_t* h = (edgec_hosted_t*)user;
  return edgec_session_workspace_free(&h->session, edgec_pool_thread_index(h->pool), ptr);
}

/*===----------------------------------------------------------------------===*/
/* Library registry                                                           */
/*===----------------------------------------------------------------------===*/

static lib_entry_t* lib_acquire(void* dl, bind_fn_t bind) {
  lib_entry_t* e;
  pthread_mutex_lock(&g_libs_mu);
  for (e = g_libs; e != NULL; e = e->next) {
    if (e->dl == dl) break;
  }
  if (e == NULL) {
    e = (lib_entry_t*)calloc(1, sizeof(*e));
    if (e != NULL && pthread_mutex_init(&e->run_mu, NULL) != 0) {
      free(e);
      e = NULL;
    }
    if (e != NULL) {
      e->dl = dl;
      e->bind = bind;
      e->next = g_libs;
      g_libs = e;
    }
  }
  if (e != NULL) e->refs += 1;
  pthread_mutex_unlock(&g_libs_mu);
  return e;
}

static void lib_release(lib_entry_t* e, const edgec_hosted_t* h) {
  lib_entry_t** p;
  pthread_mutex_lock(&g_libs_mu);
  pthread_mutex_lock(&e->run_mu);
  if (e->bound == h) {
    e->bind(NULL);
    e->bound = NULL;
  }
  pthread_mutex_unlock(&e->run_mu);
  e->refs -= 1;
  if (e->refs == 0) {
    for (p = &g_libs; *p != NULL; p = &(*p)->next) {
      if (*p == e) {
        *p = e->next;
        break;
      }
    }
    pthread_mutex_destroy(&e->run_mu);
    free(e);
  }
  pthread_mutex_unlock(&g_libs_mu);
}

/*===----------------------------------------------------------------------===*/
/* Load / free                                                                */
/*===----------------------------------------------------------------------===*/

void edgec_hosted_options_init(edgec_hosted_options_t* out_options) {
  if (out_options == NULL) return;
  memset(out_options, 0, sizeof(*out_options));
  out_options->num_threads = 1;
}

edgec_status_t edgec_hosted_load(const char* dir, uint32_t num_threads, edgec_hosted_t** out_hosted) {
  edgec_hosted_options_t o;
  edgec_hosted_options_init(&o);
  o.num_threads = num_threads;
  return edgec_hosted_load_with_options(dir, &o, out_hosted);
}

/* Opens the kernel library and finds the glue's symbols. */
static edgec_status_t open_kernels(edgec_hosted_t* h, const edgec_hosted_options_t* o, const char* path,
                                   bind_fn_t* out_bind) {
  void* sym;
  *out_bind = NULL;
  h->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h->dl == NULL) {
    struct stat st;
    const char* err = dlerror();
    return hosted_fail(o, EDGEC_ERR_IO,
                       stat(path, &st) == 0 ? "cannot load kernel library" : "kernel library missing", path, err);
  }
  h->table = (const edgec_kernel_table_t*)dlsym(h->dl, "edgec_model_kernels");
  sym = dlsym(h->dl, "edgec_kernels_bind");
  if (h->table == NULL || sym == NULL) {
    return hosted_fail(o, EDGEC_ERR_BAD_MODEL, "kernel library lacks edgec_model_kernels/edgec_kernels_bind",
                       path, NULL);
  }
  /* POSIX guarantees dlsym results convert to function pointers. */
  memcpy(out_bind, &sym, sizeof(sym));
  return EDGEC_OK;
}

edgec_status_t edgec_hosted_load_with_options(const char* dir, const edgec_hosted_options_t* options,
                                              edgec_hosted_t** out_hosted) {
  edgec_hosted_options_t o;
  edgec_session_options_t so;
  edgec_hosted_t* h;
  edgec_status_t st;
  bind_fn_t bind = NULL;
  char* path = NULL;

  if (out_hosted == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  *out_hosted = NULL;
  if (options != NULL) {
    o = *options;
  } else {
    edgec_hosted_options_init(&o);
  }
  if (o.num_threads == 0) o.num_threads = 1;
  if (dir == NULL) return hosted_fail(&o, EDGEC_ERR_INVALID_ARGUMENT, "artifact folder is NULL", NULL, NULL);
  if (o.num_threads > EDGEC_MAX_THREADS) {
    return hosted_fail(&o, EDGEC_ERR_INVALID_ARGUMENT, "too many threads (max 1024)", NULL, NULL);
  }
  h = (edgec_hosted_t*)calloc(1, sizeof(*h));
  if (h == NULL) return EDGEC_ERR_INTERNAL;
  h->log = o.log;
  h->log_user = o.log_user;

  path = join_path(dir, "model.edgec");
  st = path != NULL ? read_file(&o, path, &h->blob, &h->blob_size) : EDGEC_ERR_INTERNAL;
  free(path);
  if (st == EDGEC_OK) {
    path = join_path(dir, "kernels.so");
    st = path != NULL ? open_kernels(h, &o, path, &bind) : EDGEC_ERR_INTERNAL;
    free(path);
  }
  if (st == EDGEC_OK) st = edgec_model_init_with_log(&h->model, h->blob, h->blob_size, h->table, o.log, o.log_user);
  if (st == EDGEC_OK) st = edgec_model_arena_size(&h->model, o.num_threads, &h->arena_size);
  if (st == EDGEC_OK) {
    h->arena = (uint8_t*)alloc_block(h->arena_size);
    if (h->arena == NULL) st = hosted_fail(&o, EDGEC_ERR_INTERNAL, "cannot allocate the arena", dir, NULL);
  }
  if (st == EDGEC_OK) {
    edgec_session_options_init(&so);
    so.num_threads = o.num_threads;
    so.log = o.log;
    so.log_user = o.log_user;
    so.clock = monotonic_ns;
    st = edgec_session_init(&h->session, &h->model, h->arena, h->arena_size, &so);
  }
  if (st == EDGEC_OK) {
    st = edgec_pool_create(o.num_threads, &h->pool);
    if (st != EDGEC_OK) hosted_fail(&o, st, "cannot start worker threads", NULL, NULL);
  }
  if (st == EDGEC_OK) {
    h->lib = lib_acquire(h->dl, bind);
    if (h->lib == NULL) st = EDGEC_ERR_INTERNAL;
  }
  if (st != EDGEC_OK) {
    edgec_hosted_free(h);
    return st;
  }
  h->hooks.user = h;
  h->hooks.error = hook_error;
  h->hooks.parallel_launch = hook_launch;
  h->hooks.parallel_barrier = hook_barrier;
  h->hooks.alloc_workspace = hook_alloc;
  h->hooks.free_workspace = hook_free;
  *out_hosted = h;
  return EDGEC_OK;
}

void edgec_hosted_free(edgec_hosted_t* hosted) {
  if (hosted == NULL) return;
  if (hosted->lib != NULL) lib_release(hosted->lib, hosted);
  edgec_pool_destroy(hosted->pool);
  edgec_session_deinit(&hosted->session);
  edgec_model_deinit(&hosted->model);
  if (hosted->dl != NULL) dlclose(hosted->dl);
  free(hosted->arena);
  free(hosted->blob);
  free(hosted);
}

/*===----------------------------------------------------------------------===*/
/* Accessors and runs                                                         */
/*===----------------------------------------------------------------------===*/

edgec_status_t edgec_hosted_model(edgec_hosted_t* hosted, const edgec_model_t** out_model) {
  if (out_model == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  *out_model = NULL;
  if (hosted == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  *out_model = &hosted->model;
  return EDGEC_OK;
}

edgec_status_t edgec_hosted_session(edgec_hosted_t* hosted, edgec_session_t** out_session) {
  if (out_session == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  *out_session = NULL;
  if (hosted == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  *out_session = &hosted->session;
  return EDGEC_OK;
}

edgec_status_t edgec_hosted_arena_size(edgec_hosted_t* hosted, size_t* out_size) {
  if (out_size == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  *out_size = 0;
  if (hosted == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  *out_size = hosted->arena_size;
  return EDGEC_OK;
}

static edgec_status_t hosted_run(edgec_hosted_t* h, uint64_t* out_ns_per_op, uint32_t capacity) {
  edgec_status_t st;
  if (h == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  pthread_mutex_lock(&h->lib->run_mu);
  if (h->lib->bound != h) {
    h->lib->bind(&h->hooks);
    h->lib->bound = h;
  }
  st = out_ns_per_op != NULL ? edgec_session_run_profiled(&h->session, out_ns_per_op, capacity)
                             : edgec_session_run(&h->session);
  pthread_mutex_unlock(&h->lib->run_mu);
  return st;
}

edgec_status_t edgec_hosted_run(edgec_hosted_t* hosted) {
  return hosted_run(hosted, NULL, 0);
}

edgec_status_t edgec_hosted_run_profiled(edgec_hosted_t* hosted, uint64_t* out_ns_per_op, uint32_t capacity) {
  if (out_ns_per_op == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  return hosted_run(hosted, out_ns_per_op, capacity);
}
