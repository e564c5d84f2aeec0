/* A persistent pool of worker threads for data-parallel kernels. df_pool_run() hands out
 * task indices 0..n_tasks-1 to the workers and to the calling thread, and returns when all
 * have finished. Workers are created once, not per call; between runs they spin for a
 * while (a run then starts within a fraction of a microsecond), then sleep.
 *
 * Which thread runs which task is not fixed, but it is stable: the caller takes tasks from
 * the front (0, 1, ...) and the workers from the back, so with two threads each runs the
 * same tasks run after run (data a task writes stays in its core's cache) unless one falls
 * behind, when the other takes over its tasks. */
#ifndef DF_BASE_THREADPOOL_H
#define DF_BASE_THREADPOOL_H

#include "base/status.h"

typedef struct df_pool df_pool;
typedef void (*df_task_fn)(void *ctx, int task, int n_tasks);

/* n_threads counts the caller: 1 means no extra threads. 0 picks the number of online CPUs. */
df_status df_pool_create(int n_threads, df_pool **out);
void df_pool_destroy(df_pool *pool);
int df_pool_size(const df_pool *pool);

/* Not reentrant: one run at a time per pool. A NULL pool runs the tasks on the caller. */
void df_pool_run(df_pool *pool, df_task_fn fn, void *ctx, int n_tasks);

#endif
