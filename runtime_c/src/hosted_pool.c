/* Hosted thread pool for TVM parallel launches (pthreads + GCC/Clang atomics).
 *
 * A launch publishes one job (lambda, closure, n tasks) and bumps a generation counter;
 * each of the T participants (T-1 workers + the launching thread) runs tasks p, p+T,
 * p+2T, ... < n, so every task runs exactly once. The launcher runs its share, then waits
 * until every worker reported back. penv->num_task = n tells TVM's lambda how to split
 * its loop.
 *
 * Waiting spins briefly (a model's next op usually launches within microseconds) and then
 * sleeps on a condition variable; a worker announces itself in |sleepers| before sleeping
 * and the launcher checks it after publishing (both sequentially consistent), so a wakeup
 * is never lost.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "hosted_internal.h"

enum { SPIN_ITERATIONS = 1 << 14, SPINS_PER_YIELD = 256 };

/* One step of a spin-wait; yields the CPU now and then so that a thread we wait for gets
 * to run when there are more threads than cores. */
static void cpu_relax(int spin) {
  if (spin % SPINS_PER_YIELD == SPINS_PER_YIELD - 1) {
    sched_yield();
    return;
  }
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield");
#endif
}

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

typedef struct penv_t {
  void* sync_handle; /* the pool, or NULL for an inline launch */
  int32_t num_task;
} penv_t;

typedef struct worker_t {
  edgec_pool_t* pool;
  uint32_t index;
  pthread_t thread;
} worker_t;

struct edgec_pool_t {
  uint32_t num_threads;
  uint32_t num_started; /* workers running */
  worker_t* workers;    /* num_threads - 1 */
  pthread_mutex_t mu;
  pthread_cond_t start_cv;
  pthread_cond_t done_cv;
  pthread_cond_t barrier_cv;
  uint64_t generation; /* atomic */
  int shutdown;        /* atomic */
  uint32_t sleepers;   /* atomic: workers about to sleep or sleeping on start_cv */
  int busy;            /* a launch is running (a nested launch on the launcher runs inline) */
  /* current job: written before |generation| is bumped */
  edgec_parallel_lambda_t lambda;
  void* cdata;
  penv_t env;
  uint32_t pending; /* atomic: workers still running the job */
  int failed;       /* atomic */
  /* barrier */
  int32_t barrier_count;
  uint64_t barrier_gen;
};

static pthread_key_t g_worker_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static int g_key_ok = 0;

static void make_key(void) {
  g_key_ok = pthread_key_create(&g_worker_key, NULL) == 0;
}

static const worker_t* current_worker(void) {
  return g_key_ok ? (const worker_t*)pthread_getspecific(g_worker_key) : NULL;
}

uint32_t edgec_pool_thread_index(const edgec_pool_t* pool) {
  const worker_t* w = current_worker();
  return (w != NULL && w->pool == pool) ? w->index : 0;
}

/* Runs the tasks of participant |p|; returns 1 if one failed. */
static int run_share(edgec_parallel_lambda_t lambda, void* cdata, penv_t* env, uint32_t p, uint32_t stride) {
  int failed = 0;
  int32_t t;
  for (t = (int32_t)p; t < env->num_task; t += (int32_t)stride) {
    if (lambda(t, env, cdata) != 0) failed = 1;
  }
  return failed;
}

static void* worker_main(void* arg) {
  worker_t* w = (worker_t*)arg;
  edgec_pool_t* pool = w->pool;
  uint64_t seen = 0;
  if (g_key_ok) pthread_setspecific(g_worker_key, w);
  for (;;) {
    uint64_t gen = LOAD(&pool->generation);
    int spins = 0;
    while (gen == seen && !LOAD(&pool->shutdown) && spins++ < SPIN_ITERATIONS) {
      cpu_relax(spins);
      gen = LOAD(&pool->generation);
    }
    if (gen == seen) {
      pthread_mutex_lock(&pool->mu);
      STORE(&pool->sleepers, LOAD(&pool->sleepers) + 1);
      while (!LOAD(&pool->shutdown) && LOAD(&pool->generation) == seen) {
        pthread_cond_wait(&pool->start_cv, &pool->mu);
      }
      STORE(&pool->sleepers, LOAD(&pool->sleepers) - 1);
      gen = LOAD(&pool->generation);
      pthread_mutex_unlock(&pool->mu);
    }
    if (LOAD(&pool->shutdown)) break;
    seen = gen;
    if (run_share(pool->lambda, pool->cdata, &pool->env, w->index, pool->num_threads)) STORE(&pool->failed, 1);
    if (__atomic_sub_fetch(&pool->pending, 1, __ATOMIC_SEQ_CST) == 0) {
      pthread_mutex_lock(&pool->mu);
      pthread_cond_signal(&pool->done_cv);
      pthread_mutex_unlock(&pool->mu);
    }
  }
  return NULL;
}

edgec_status_t edgec_pool_create(uint32_t num_threads, edgec_pool_t** out_pool) {
  edgec_pool_t* pool;
  uint32_t i;
  if (out_pool == NULL) return EDGEC_ERR_INVALID_ARGUMENT;
  *out_pool = NULL;
  if (num_threads == 0) num_threads = 1;
  if (num_threads > EDGEC_MAX_THREADS) return EDGEC_ERR_INVALID_ARGUMENT;
  pthread_once(&g_key_once, make_key);
  pool = (edgec_pool_t*)calloc(1, sizeof(*pool));
  if (pool == NULL) return EDGEC_ERR_INTERNAL;
  pool->num_threads = num_threads;
  if (pthread_mutex_init(&pool->mu, NULL) != 0) {
    free(pool);
    return EDGEC_ERR_INTERNAL;
  }
  pthread_cond_init(&pool->start_cv, NULL);
  pthread_cond_init(&pool->done_cv, NULL);
  pthread_cond_init(&pool->barrier_cv, NULL);
  if (num_threads > 1) {
    pool->workers = (worker_t*)calloc(num_threads - 1, sizeof(worker_t));
    if (pool->workers == NULL) {
      edgec_pool_destroy(pool);
      return EDGEC_ERR_INTERNAL;
    }
    for (i = 0; i + 1 < num_threads; ++i) {
      pool->workers[i].pool = pool;
      pool->workers[i].index = i + 1;
      if (pthread_create(&pool->workers[i].thread, NULL, worker_main, &pool->workers[i]) != 0) {
        edgec_pool_destroy(pool);
        return EDGEC_ERR_INTERNAL;
      }
      pool->num_started += 1;
    }
  }
  *out_pool = pool;
  return EDGEC_OK;
}

void edgec_pool_destroy(edgec_pool_t* pool) {
  uint32_t i;
  if (pool == NULL) return;
  pthread_mutex_lock(&pool->mu);
  STORE(&pool->shutdown, 1);
  pthread_cond_broadcast(&pool->start_cv);
  pthread_mutex_unlock(&pool->mu);
  for (i = 0; i < pool->num_started; ++i) pthread_join(pool->workers[i].thread, NULL);
  pthread_cond_destroy(&pool->start_cv);
  pthread_cond_destroy(&pool->done_cv);
  pthread_cond_destroy(&pool->barrier_cv);
  pthread_mutex_destroy(&pool->mu);
  free(pool->workers);
  free(pool);
}

int32_t edgec_pool_launch(edgec_pool_t* pool, edgec_parallel_lambda_t lambda, void* cdata, int32_t num_task) {
  const uint32_t threads = pool != NULL ? pool->num_threads : 1;
  const int32_t n = num_task > 0 ? num_task : (int32_t)threads;
  const worker_t* w = current_worker();
  int failed;
  if (lambda == NULL) return -1;
  if (pool == NULL || threads == 1 || n == 1 || pool->busy || (w != NULL && w->pool == pool)) {
    penv_t env;
    env.sync_handle = NULL;
    env.num_task = n;
    return run_share(lambda, cdata, &env, 0, 1) ? -1 : 0;
  }
  pool->busy = 1;
  pool->lambda = lambda;
  pool->cdata = cdata;
  pool->env.sync_handle = pool;
  pool->env.num_task = n;
  pool->barrier_count = 0;
  STORE(&pool->failed, 0);
  STORE(&pool->pending, pool->num_started);
  STORE(&pool->generation, LOAD(&pool->generation) + 1); /* publishes the job */
  if (LOAD(&pool->sleepers) > 0) {
    pthread_mutex_lock(&pool->mu);
    pthread_cond_broadcast(&pool->start_cv);
    pthread_mutex_unlock(&pool->mu);
  }

  failed = run_share(lambda, cdata, &pool->env, 0, threads);

  {
    int spins = 0;
    while (LOAD(&pool->pending) > 0 && spins++ < SPIN_ITERATIONS) cpu_relax(spins);
  }
  if (LOAD(&pool->pending) > 0) {
    pthread_mutex_lock(&pool->mu);
    while (LOAD(&pool->pending) > 0) pthread_cond_wait(&pool->done_cv, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
  }
  failed = failed || LOAD(&pool->failed);
  pool->busy = 0;
  return failed ? -1 : 0;
}

int32_t edgec_pool_barrier(edgec_pool_t* pool, int32_t task_id, void* penv) {
  penv_t* env = (penv_t*)penv;
  uint64_t gen;
  (void)task_id;
  if (env == NULL) return -1;
  if (env->num_task <= 1) return 0;
  if (pool == NULL || env->sync_handle != pool || env->num_task > (int32_t)pool->num_threads) return -1;
  pthread_mutex_lock(&pool->mu);
  gen = pool->barrier_gen;
  pool->barrier_count += 1;
  if (pool->barrier_count == env->num_task) {
    pool->barrier_count = 0;
    pool->barrier_gen += 1;
    pthread_cond_broadcast(&pool->barrier_cv);
  } else {
    while (gen == pool->barrier_gen) pthread_cond_wait(&pool->barrier_cv, &pool->mu);
  }
  pthread_mutex_unlock(&pool->mu);
  return 0;
}
