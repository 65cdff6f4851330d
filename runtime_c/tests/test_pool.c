/* The hosted thread pool: every task id runs exactly once for any task count, failures
 * are reported, nested launches run inline, barriers synchronize (each task of a barrier job
 * on its own thread), the other threads run the tasks a busy worker cannot claim; many
 * back-to-back launches of changing task counts (the spin/sleep handoff, workers that see a
 * job late) lose no wakeup and run no task twice. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../src/hosted_internal.h"
#include "expect.h"

typedef struct penv_t {
  void* sync_handle;
  int32_t num_task;
} penv_t;

typedef struct job_t {
  edgec_pool_t* pool;
  int runs[64];
  int num_task_seen[64];
  uint32_t slot[64];
  int fail_task;
  int nested;
  int barrier_before;
  int barrier_after_ok;
  int barrier_rc;
  int counter;
} job_t;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static edgec_pool_t* g_held_pool = NULL;

static int32_t inner(int32_t task_id, void* penv, void* cdata) {
  (void)cdata;
  return task_id == 0 && ((penv_t*)penv)->num_task == 3 ? 0 : -1;
}

static int32_t task(int32_t task_id, void* penv, void* cdata) {
  job_t* j = (job_t*)cdata;
  const penv_t* env = (const penv_t*)penv;
  int32_t rc = 0;
  pthread_mutex_lock(&g_mu);
  j->runs[task_id] += 1;
  j->num_task_seen[task_id] = env->num_task;
  j->slot[task_id] = edgec_pool_thread_index(j->pool);
  j->counter += 1;
  pthread_mutex_unlock(&g_mu);
  if (j->nested) rc |= edgec_pool_launch(j->pool, inner, NULL, 3) == 0 ? 0 : -1;
  if (j->barrier_before) {
    int32_t b = edgec_pool_barrier(j->pool, task_id, penv);
    pthread_mutex_lock(&g_mu);
    if (b != 0) j->barrier_rc = b;
    rc |= b;
    if (j->counter == env->num_task) j->barrier_after_ok += 1; /* everyone arrived first */
    pthread_mutex_unlock(&g_mu);
  }
  return task_id == j->fail_task ? -1 : rc;
}

/* Held: the first task a worker claims waits (up to 5 s) until every other task has run.
 * Only a pool whose other threads claim the tasks the held worker has not can finish it in
 * time; one that hands each thread a fixed share would wait for the held worker's share. */
typedef struct held_t {
  int32_t others; /* atomic: tasks finished, the held one excepted */
  int32_t held;   /* atomic */
  int timed_out;
} held_t;

static int32_t held_task(int32_t task_id, void* penv, void* cdata) {
  held_t* h = (held_t*)cdata;
  const int32_t n = ((const penv_t*)penv)->num_task;
  (void)task_id;
  if (edgec_pool_thread_index(g_held_pool) == 0) {
    struct timespec slow = {0, 3 * 1000 * 1000}; /* the workers get time to claim tasks */
    nanosleep(&slow, NULL);
  } else if (__atomic_exchange_n(&h->held, 1, __ATOMIC_SEQ_CST) == 0) {
    int k;
    for (k = 0; k < 5000 && __atomic_load_n(&h->others, __ATOMIC_SEQ_CST) < n - 1; ++k) {
      struct timespec ms = {0, 1000 * 1000};
      nanosleep(&ms, NULL);
    }
    if (__atomic_load_n(&h->others, __ATOMIC_SEQ_CST) < n - 1) h->timed_out = 1;
    return 0;
  }
  __atomic_add_fetch(&h->others, 1, __ATOMIC_SEQ_CST);
  return 0;
}

static void reset(job_t* j, edgec_pool_t* pool) {
  memset(j, 0, sizeof(*j));
  j->pool = pool;
  j->fail_task = -1;
}

int main(void) {
  edgec_pool_t *pool = NULL, *one = NULL;
  job_t j;
  int i, k, ok;
  EXPECT_STATUS(edgec_pool_create(3, &pool), EDGEC_OK);
  EXPECT_STATUS(edgec_pool_create(1, &one), EDGEC_OK);
  if (pool == NULL || one == NULL) return expect_report("test_pool");
  EXPECT_EQ_LL(edgec_pool_thread_index(pool), 0);

  /* default task count = threads, one task per thread */
  reset(&j, pool);
  EXPECT_EQ_LL(edgec_pool_launch(pool, task, &j, 0), 0);
  for (i = 0; i < 3; ++i) EXPECT(j.runs[i] == 1 && j.num_task_seen[i] == 3);
  EXPECT(j.runs[3] == 0);
  for (i = 0; i < 3; ++i) EXPECT(j.slot[i] < 3);

  /* more tasks than threads, and a failing task */
  reset(&j, pool);
  j.fail_task = 5;
  EXPECT_EQ_LL(edgec_pool_launch(pool, task, &j, 7), -1);
  for (i = 0; i < 7; ++i) EXPECT(j.runs[i] == 1 && j.num_task_seen[i] == 7 && j.slot[i] < 3);

  /* nested launches run inline, as 3 sequential tasks */
  reset(&j, pool);
  j.nested = 1;
  EXPECT_EQ_LL(edgec_pool_launch(pool, task, &j, 0), -1); /* inner() fails tasks 1, 2 on purpose */
  for (i = 0; i < 3; ++i) EXPECT_EQ_LL(j.runs[i], 1);

  /* barriers: every task arrives before any leaves */
  reset(&j, pool);
  j.barrier_before = 1;
  EXPECT_EQ_LL(edgec_pool_launch(pool, task, &j, 3), 0);
  EXPECT_EQ_LL(j.barrier_after_ok, 3);
  EXPECT_EQ_LL(j.barrier_rc, 0);
  EXPECT(j.slot[0] != j.slot[1] && j.slot[1] != j.slot[2] && j.slot[0] != j.slot[2]);
  reset(&j, pool);
  j.barrier_before = 1;
  EXPECT_EQ_LL(edgec_pool_launch(pool, task, &j, 5), -1); /* 5 tasks on 3 threads: refused */
  EXPECT_EQ_LL(j.barrier_rc, -1);

  /* a worker held inside a task: the other threads run all the other tasks */
  g_held_pool = pool;
  {
    int held_runs = 0;
    for (k = 0; k < 20 && held_runs < 3; ++k) {
      held_t h;
      memset(&h, 0, sizeof(h));
      EXPECT_EQ_LL(edgec_pool_launch(pool, held_task, &h, 8), 0);
      EXPECT_EQ_LL(h.others + h.held, 8);
      EXPECT_EQ_LL(h.timed_out, 0);
      held_runs += h.held;
    }
    EXPECT(held_runs == 3); /* a worker claimed a task (and was held) in three launches */
  }

  /* a one-thread pool runs everything inline */
  reset(&j, one);
  EXPECT_EQ_LL(edgec_pool_launch(one, task, &j, 4), 0);
  for (i = 0; i < 4; ++i) EXPECT(j.runs[i] == 1 && j.slot[i] == 0 && j.num_task_seen[i] == 4);
  EXPECT_EQ_LL(edgec_pool_launch(one, NULL, &j, 4), -1);

  /* back to back, with pauses that let the workers fall asleep */
  ok = 1;
  for (k = 0; k < 10000; ++k) {
    reset(&j, pool);
    if (k % 500 == 0) {
      struct timespec pause = {0, 20 * 1000 * 1000};
      nanosleep(&pause, NULL);
    }
    if (edgec_pool_launch(pool, task, &j, k % 5 + 1) != 0) ok = 0;
    for (i = 0; i < k % 5 + 1; ++i) ok &= j.runs[i] == 1;
    ok &= j.runs[k % 5 + 1] == 0;
  }
  EXPECT(ok);
  edgec_pool_destroy(pool);
  edgec_pool_destroy(one);
  edgec_pool_destroy(NULL);
  return expect_report("test_pool");
}
