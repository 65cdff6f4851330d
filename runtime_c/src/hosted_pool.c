/* Hosted thread pool for TVM parallel launches (pthreads + GCC/Clang atomics).
 *
 * A launch publishes one job (lambda, closure, n tasks) and bumps a generation counter. The
 * T participants (T-1 workers + the launching thread) then *claim* tasks 0..n-1 one at a
 * time from a shared ticket (the generation in its high 32 bits, the next task in its low
 * 32 bits, advanced by compare-and-swap), so every task runs exactly once, and the launcher
 * returns once all n have finished. A worker that is slow to start (asleep, or descheduled on
 * a core shared with other processes) therefore never delays a launch: the launcher runs
 * the tasks nobody has claimed itself, and a launch on T threads is not slower than on one.
 * A worker that wakes after its job is over finds the ticket on another generation (or at n)
 * and claims nothing. penv->num_task = n tells TVM's lambda how to split its loop; n is the
 * number of threads when the kernel asks for 0 (TVM's parallel loops). A task that waits in a
 * barrier holds its thread, so with n <= T every task of a barrier-using job gets a thread.
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
  /* current job: written before |ticket| and |generation| are published, stable until all
   * of its tasks are done */
  edgec_parallel_lambda_t lambda;
  void* cdata;
  penv_t env;      /* env.num_task is read atomically by claimers */
  uint64_t ticket; /* atomic: (generation & 0xffffffff) << 32 | next unclaimed task */
  uint32_t done;   /* atomic: tasks of the current job finished */
  int failed;      /* atomic */
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

/* Runs the tasks of participant |p| of an inline launch; returns 1 if one failed. */
static int run_share(edgec_parallel_lambda_t lambda, void* cdata, penv_t* env, uint32_t p, uint32_t stride) {
  int failed = 0;
  int32_t t;
  for (t = (int32_t)p; t < env->num_task; t += (int32_t)stride) {
    if (lambda(t, env, cdata) != 0) failed = 1;
  }
  return failed;
}

/* Claims the next task of job |gen|: 1 with its index in |*task| and the job's task count in
 * |*n|, or 0 when the job has no task left (or is over). A successful compare-and-swap saw the
 * ticket unchanged since it was read, so the job was still running when |num_task| was read. */
static int claim(edgec_pool_t* pool, uint64_t gen, int32_t* task, int32_t* n) {
  uint64_t t = LOAD(&pool->ticket);
  for (;;) {
    int32_t num;
    if ((t >> 32) != (gen & 0xffffffffu)) return 0;
    num = LOAD(&pool->env.num_task);
    if ((int64_t)(uint32_t)t >= (int64_t)num) return 0;
    if (__atomic_compare_exchange_n(&pool->ticket, &t, t + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
      *task = (int32_t)(uint32_t)t;
      *n = num;
      return 1;
    }
  }
}

/* Runs tasks of job |gen| until none is left to claim. */
static void run_claimed(edgec_pool_t* pool, uint64_t gen) {
  int32_t t, n;
  while (claim(pool, gen, &t, &n)) {
    if (pool->lambda(t, &pool->env, pool->cdata) != 0) STORE(&pool->failed, 1);
    if (__atomic_add_fetch(&pool->done, 1, __ATOMIC_SEQ_CST) == (uint32_t)n) {
      pthread_mutex_lock(&pool->mu);
      pthread_cond_signal(&pool->done_cv);
      pthread_mutex_unlock(&pool->mu);
    }
  }
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
    run_claimed(pool, gen);
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
  {
    const uint64_t gen = LOAD(&pool->generation) + 1;
    /* First move the ticket to the new generation: until then a worker still holding the last
     * generation could read the ticket at (old, n_old) and the new, larger task count, and
     * claim a task that does not exist. No worker claims on the new generation before it is
     * published below. */
    STORE(&pool->ticket, (gen & 0xffffffffu) << 32);
    pool->lambda = lambda;
    pool->cdata = cdata;
    pool->env.sync_handle = pool;
    STORE(&pool->env.num_task, n);
    pool->barrier_count = 0;
    STORE(&pool->failed, 0);
    STORE(&pool->done, 0);
    STORE(&pool->generation, gen); /* publishes the job */
    if (LOAD(&pool->sleepers) > 0) {
      pthread_mutex_lock(&pool->mu);
      pthread_cond_broadcast(&pool->start_cv);
      pthread_mutex_unlock(&pool->mu);
    }
    run_claimed(pool, gen);
  }
  {
    int spins = 0;
    while (LOAD(&pool->done) < (uint32_t)n && spins++ < SPIN_ITERATIONS) cpu_relax(spins);
  }
  if (LOAD(&pool->done) < (uint32_t)n) {
    pthread_mutex_lock(&pool->mu);
    while (LOAD(&pool->done) < (uint32_t)n) pthread_cond_wait(&pool->done_cv, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
  }
  failed = LOAD(&pool->failed);
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
