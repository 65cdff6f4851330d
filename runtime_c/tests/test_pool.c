/* The hosted thread pool: every task id runs exactly once for any task count, failures
 * are reported, nested launches run inline, barriers synchronize, thread slots are
 * distinct; many back-to-back launches (the spin/sleep handoff) lose no wakeup. */
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
  EXPECT(j.slot[0] == 0 && j.slot[1] == 1 && j.slot[2] == 2);

  /* more tasks than threads, and a failing task */
  reset(&j, pool);
  j.fail_task = 5;
  EXPECT_EQ_LL(edgec_pool_launch(pool, task, &j, 7), -1);
  for (i = 0; i < 7; ++i) EXPECT(j.runs[i] == 1 && j.num_task_seen[i] == 7 && j.slot[i] == (uint32_t)(i % 3));

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
  reset(&j, pool);
  j.barrier_before = 1;
  EXPECT_EQ_LL(edgec_pool_launch(pool, task, &j, 5), -1); /* 5 tasks on 3 threads: refused */
  EXPECT_EQ_LL(j.barrier_rc, -1);

  /* a one-thread pool runs everything inline */
  reset(&j, one);
  EXPECT_EQ_LL(edgec_pool_launch(one, task, &j, 4), 0);
  for (i = 0; i < 4; ++i) EXPECT(j.runs[i] == 1 && j.slot[i] == 0 && j.num_task_seen[i] == 4);
  EXPECT_EQ_LL(edgec_pool_launch(one, NULL, &j, 4), -1);

  /* back to back, with pauses that let the workers fall asleep */
  ok = 1;
  for (k = 0; k < 3000; ++k) {
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
