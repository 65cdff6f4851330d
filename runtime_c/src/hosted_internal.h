/* Private declarations of the hosted layer (POSIX): the thread pool. */
#ifndef EDGEC_HOSTED_INTERNAL_H_
#define EDGEC_HOSTED_INTERNAL_H_

#include "edgec/edgec.h"

/* A persistent pool of |num_threads| - 1 worker threads; the launching thread is the
 * remaining participant (slot 0). */
typedef struct edgec_pool_t edgec_pool_t;

edgec_status_t edgec_pool_create(uint32_t num_threads, edgec_pool_t** out_pool);
void edgec_pool_destroy(edgec_pool_t* pool);

/* Runs |lambda| for task ids 0..n-1 exactly once each, n = |num_task| or the thread count
 * when |num_task| <= 0; with one thread, a nested call, or n == 1 the tasks run inline on
 * the caller. Returns 0, or -1 if any task returned non-zero. */
int32_t edgec_pool_launch(edgec_pool_t* pool, edgec_parallel_lambda_t lambda, void* cdata, int32_t num_task);

/* Waits until all tasks of the current launch reach the barrier. Returns -1 when the
 * launch has more tasks than threads (they do not all run at once). */
int32_t edgec_pool_barrier(edgec_pool_t* pool, int32_t task_id, void* penv);

/* The calling thread's slot: 1..n-1 on the pool's workers, 0 on any other thread. */
uint32_t edgec_pool_thread_index(const edgec_pool_t* pool);

#endif /* EDGEC_HOSTED_INTERNAL_H_ */
