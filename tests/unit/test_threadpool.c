/* The thread pool (base/threadpool.c) under the patterns a decode step makes: hundreds of
 * thousands of short runs back to back, alternating functions and contexts (a late worker
 * must never run a task of one run with the function or context of another), runs after
 * idle spells long enough for the workers to fall asleep, and results written by workers
 * read by the caller right after the run. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "base/threadpool.h"

typedef struct {
    int id;              /* which of the two contexts this is */
    int n_tasks;
    atomic_int hits[64]; /* per task */
    long out[64];        /* written by the task, read by the caller after the run */
    atomic_int wrong;    /* tasks that saw a task count other than their run's */
} run_ctx;

static void task_a(void *p, int t, int n) {
    run_ctx *c = p;
    if (c->id != 0 || n != c->n_tasks || t < 0 || t >= n) atomic_fetch_add(&c->wrong, 1);
    atomic_fetch_add(&c->hits[t], 1);
    c->out[t] = 1000L * t + n;
}

static void task_b(void *p, int t, int n) {
    run_ctx *c = p;
    if (c->id != 1 || n != c->n_tasks || t < 0 || t >= n) atomic_fetch_add(&c->wrong, 1);
    atomic_fetch_add(&c->hits[t], 1);
    c->out[t] = -(1000L * t + n);
}

static void reset(run_ctx *c, int id, int n) {
    c->id = id;
    c->n_tasks = n;
    atomic_store(&c->wrong, 0);
    for (int i = 0; i < 64; i++) {
        atomic_store(&c->hits[i], 0);
        c->out[i] = 0;
    }
}

static void check(run_ctx *c, const char *what, long run) {
    cr_assert_eq(atomic_load(&c->wrong), 0, "%s run %ld: a task ran with another run's function or count", what, run);
    for (int t = 0; t < c->n_tasks; t++) {
        cr_assert_eq(atomic_load(&c->hits[t]), 1, "%s run %ld: task %d ran %d times", what, run, t,
                     atomic_load(&c->hits[t]));
        const long want = (c->id ? -1 : 1) * (1000L * t + c->n_tasks);
        cr_assert_eq(c->out[t], want, "%s run %ld: task %d's result is not visible to the caller", what, run, t);
    }
    for (int t = c->n_tasks; t < 64; t++) cr_assert_eq(atomic_load(&c->hits[t]), 0);
}

Test(threadpool, many_short_runs_alternating_contexts) {
    static run_ctx a, b;
    for (int threads = 2; threads <= 3; threads++) {
        df_pool *pool;
        cr_assert_eq(df_pool_create(threads, &pool), DF_OK);
        for (long run = 0; run < 200000; run++) {
            run_ctx *c = run % 2 ? &b : &a;
            const int n = 1 + (int)(run * 7 % 13);
            reset(c, (int)(run % 2), n);
            df_pool_run(pool, run % 2 ? task_b : task_a, c, n);
            check(c, threads == 2 ? "2 threads" : "3 threads", run);
        }
        df_pool_destroy(pool);
    }
}

Test(threadpool, runs_after_the_workers_fell_asleep) {
    static run_ctx a;
    df_pool *pool;
    cr_assert_eq(df_pool_create(2, &pool), DF_OK);
    for (int run = 0; run < 4; run++) {
        /* longer than the pool spins before it sleeps */
        const struct timespec pause = {0, 30 * 1000 * 1000};
        nanosleep(&pause, NULL);
        reset(&a, 0, 8);
        df_pool_run(pool, task_a, &a, 8);
        check(&a, "after sleep", run);
    }
    df_pool_destroy(pool);
    /* created and destroyed without a run, and with the largest task count */
    cr_assert_eq(df_pool_create(4, &pool), DF_OK);
    df_pool_destroy(pool);
    cr_assert_eq(df_pool_create(2, &pool), DF_OK);
    reset(&a, 0, 64);
    df_pool_run(pool, task_a, &a, 64);
    check(&a, "64 tasks", 0);
    df_pool_run(pool, task_a, &a, 0); /* nothing to do */
    df_pool_destroy(pool);
    cr_assert_eq(df_pool_create(2000, &pool), DF_ERR_INVALID);
}
