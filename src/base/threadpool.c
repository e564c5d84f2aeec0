#include "base/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct df_pool {
    int n_threads;          /* including the caller */
    pthread_t *threads;     /* n_threads - 1 workers */
    pthread_mutex_t mu;
    pthread_cond_t wake;    /* a new run (or shutdown) was posted */
    pthread_cond_t done;    /* the last worker finished its share */
    unsigned long generation;
    int running_workers;    /* workers still inside the current run */
    int shutdown;
    /* the current run */
    df_task_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next_task;
};

static void drain(df_pool *p) {
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
        if (t >= p->n_tasks) return;
        p->fn(p->ctx, t, p->n_tasks);
    }
}

static void *worker_main(void *arg) {
    df_pool *p = arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->shutdown && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->shutdown) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        drain(p);
        pthread_mutex_lock(&p->mu);
        if (--p->running_workers == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

df_status df_pool_create(int n_threads, df_pool **out) {
    *out = NULL;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 1024) return df_fail(DF_ERR_INVALID, "thread pool: %d threads is too many", n_threads);
    df_pool *p = calloc(1, sizeof *p);
    if (!p) return df_fail(DF_ERR_NOMEM, "thread pool: out of memory");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next_task, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            df_pool_destroy(p);
            return df_fail(DF_ERR_NOMEM, "thread pool: out of memory");
        }
        for (int i = 0; i < n_threads - 1; i++) {
            if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
                p->n_threads = i + 1; /* only i workers exist */
                df_pool_destroy(p);
                return df_fail(DF_ERR_NOMEM, "thread pool: could not start worker %d", i);
            }
        }
    }
    *out = p;
    return DF_OK;
}

int df_pool_size(const df_pool *pool) { return pool ? pool->n_threads : 1; }

void df_pool_run(df_pool *p, df_task_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, n_tasks);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
    p->running_workers = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    drain(p);

    pthread_mutex_lock(&p->mu);
    while (p->running_workers > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void df_pool_destroy(df_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->shutdown = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    if (p->threads)
        for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}
