/* The request queue and the workers that drain it: a bounded FIFO of jobs feeding N threads,
 * each of which owns one generation session. A full queue refuses at once (the caller
 * answers 503), so a burst costs memory bounded by the queue capacity. */
#ifndef DF_SERVER_SRV_POOL_H
#define DF_SERVER_SRV_POOL_H

#include <stdbool.h>

#include "server/srv_job.h"
#include "server/srv_metrics.h"

/* Runs job j on worker `worker` (0..n-1); must end with the job DONE or failed. */
typedef void (*srv_run_fn)(void *ctx, int worker, srv_job *j);

typedef struct srv_pool srv_pool;

/* metrics may be NULL. Returns NULL when threads or memory could not be had. */
srv_pool *srv_pool_new(int n_workers, int capacity, srv_run_fn run, void *ctx, srv_metrics *metrics);
/* Queues j; on success the pool holds the queue's reference of j. False: full or closed. */
bool srv_pool_submit(srv_pool *p, srv_job *j);
int srv_pool_depth(srv_pool *p);
/* Stops taking jobs, fails the queued ones (503), cancels the running ones at their next
 * token and joins the workers. */
void srv_pool_shutdown(srv_pool *p);
void srv_pool_free(srv_pool *p);

#endif
