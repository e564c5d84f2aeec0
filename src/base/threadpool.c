#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* A decode step posts a few hundred small runs; waking a sleeping thread costs a system
 * call and tens of microseconds on a VM, so workers spin this many times (a few hundred
 * microseconds) after a run before going to sleep. */
#define SPIN_ROUNDS 20000

struct df_pool {
    int n_threads;          /* including the caller */
    pthread_t *threads;     /* n_threads - 1 workers */
    pthread_mutex_t mu;
    pthread_cond_t wake;    /* a new run (or shutdown) was posted */
    atomic_ulong generation;  /* bumped (release) after a run's fields are set */
    atomic_int running_workers; /* workers still inside the current run */
    atomic_int sleepers;    /* workers blocked on `wake` */
    atomic_int shutdown;
    /* the current run; written before generation is bumped */
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

/* Waits until generation differs from seen (or shutdown): spin first, then sleep. */
static unsigned long wait_for_run(df_pool *p, unsigned long seen) {
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        unsigned long g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen || atomic_load_explicit(&p->shutdown, memory_order_relaxed)) return g;
        if (i % 256 == 255) sched_yield(); /* let a busy machine's other work in */
        else cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    unsigned long g;
    while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
           !atomic_load(&p->shutdown))
        pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg) {
    df_pool *p = arg;
    unsigned long seen = 0;
    for (;;) {
        seen = wait_for_run(p, seen);
        if (atomic_load(&p->shutdown)) break;
        drain(p);
        atomic_fetch_sub_explicit(&p->running_workers, 1, memory_order_release);
    }
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
    atomic_init(&p->generation, 0);
    atomic_init(&p->running_workers, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->shutdown, 0);
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
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&p->running_workers, p->n_threads - 1, memory_order_relaxed);
    /* Publishing the new generation under the mutex means a worker deciding to sleep either
     * sees it or is already waiting when the broadcast comes. */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    if (atomic_load(&p->sleepers) > 0) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    drain(p);

    /* The workers' shares are short: spin until the last one is out, but yield the core once
     * the wait is long (a worker that lost its core to another process needs it back). */
    for (int spins = 0; atomic_load_explicit(&p->running_workers, memory_order_acquire) > 0; spins++) {
        if (spins < 2000) cpu_relax();
        else sched_yield();
    }
}

void df_pool_destroy(df_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->shutdown, 1);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    if (p->threads)
        for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p);
}
