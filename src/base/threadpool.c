/* The thread pool. A decode step of a small model posts a few hundred runs of a few
 * microseconds each, so what matters is what a run costs beyond its tasks: posting it,
 * waking the workers and knowing that it is over. Here that is one atomic store, one
 * compare-and-swap per task and a counter of finished tasks; workers spin between runs, and
 * sleep on a condition variable only after a long idle spell.
 *
 * The run word. Everything a thread needs to decide whether there is work is one 64-bit
 * atomic: run number | task count | the unclaimed tasks, as the range [lo, hi) (16 bits
 * each). The caller claims tasks from the front (lo up), the workers from the back (hi
 * down), each with a compare-and-swap that names the run, so a claim can only take a task
 * of the run it read. With two threads this gives each the same tasks run after run (the
 * caller the first ones, the worker the last ones) while a late thread's share is simply
 * taken by the other: the data a task writes (a GDN head's state, a range of output rows)
 * stays in the cache of the core that wrote it, instead of crossing to the other core's
 * cache whenever the tasks happen to be dealt the other way round.
 *
 * The caller writes a run's function and context before it publishes the run word
 * (release), and cannot rewrite them before every task of that run has finished, so a
 * successful claim always reads the right ones, even when the worker woke up late and the
 * run it was woken for is long gone (it then simply works on the current one, or on
 * nothing).
 *
 * The end of a run is counted in finished tasks, not in workers that checked in: a worker
 * that is slow to wake (descheduled by a busy machine) never holds up a run it took no
 * task of, because the caller runs whatever tasks are left itself. */
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Idle workers spin this long after a run before they start yielding the core between
 * checks (a run posted to a spinning worker starts within a fraction of a microsecond; a
 * sleeping one needs a system call and tens of microseconds to wake on a VM) ... */
#define SPIN_NS 200000
/* ... and go to sleep after this long without a run. */
#define SLEEP_NS 5000000
/* The caller waits for the workers' last tasks spinning for this long, then yields the
 * core between checks (a worker that lost its core to another process needs it back). */
#define WAIT_SPIN_NS 100000

#define MAX_TASKS 0xffff

/* run (bits 48..63) | n (32..47) | lo (16..31) | hi (0..15) */
#define WORD(run, n, lo, hi) ((uint64_t)(run) << 48 | (uint64_t)(n) << 32 | (uint64_t)(lo) << 16 | (uint64_t)(hi))
#define RUN_OF(w) ((unsigned)((w) >> 48))
#define COUNT_OF(w) ((unsigned)((w) >> 32) & 0xffffu)
#define LO_OF(w) ((unsigned)((w) >> 16) & 0xffffu)
#define HI_OF(w) ((unsigned)(w) & 0xffffu)

struct df_pool {
    int n_threads;      /* including the caller */
    pthread_t *threads; /* n_threads - 1 workers */
    /* the current run, written before its run word is published */
    df_task_fn fn;
    void *ctx;
    unsigned run; /* the caller's run counter (low 16 bits go into the run word) */
    /* Each hot atomic on a cache line of its own: the caller writes the run word once per
     * run and every thread claims tasks from it; finished tasks are counted apart so the
     * caller's polling does not steal the run word's line from the workers. */
    _Alignas(64) atomic_uint_fast64_t word;
    _Alignas(64) atomic_int done;
    _Alignas(64) atomic_int sleepers; /* workers blocked (or about to block) on `wake` */
    atomic_int shutdown;
    pthread_mutex_t mu;
    pthread_cond_t wake;
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Claims and runs tasks, from the front (the caller) or from the back (workers), until the
 * run it finds in the word has none left. */
static void drain(df_pool *p, bool front) {
    uint64_t w = atomic_load_explicit(&p->word, memory_order_acquire);
    for (;;) {
        const unsigned lo = LO_OF(w), hi = HI_OF(w);
        if (lo >= hi) return;
        const uint64_t next = front ? w + ((uint64_t)1 << 16) : w - 1;
        if (!atomic_compare_exchange_weak_explicit(&p->word, &w, next, memory_order_acquire,
                                                   memory_order_acquire))
            continue; /* w now holds the current word */
        p->fn(p->ctx, (int)(front ? lo : hi - 1), (int)COUNT_OF(w));
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        w = next;
    }
}

/* Waits until the run word names a run other than `seen` (or shutdown): spin, then spin
 * yielding the core, then sleep. Returns the run it saw. */
static unsigned wait_for_run(df_pool *p, unsigned seen) {
    int64_t start = 0;
    for (unsigned i = 1;; i++) {
        const unsigned r = RUN_OF(atomic_load_explicit(&p->word, memory_order_relaxed));
        if (r != seen || atomic_load_explicit(&p->shutdown, memory_order_relaxed)) return r;
        cpu_relax();
        if (i % 64) continue;
        /* every ~64 pauses (a microsecond or two): look at the clock */
        const int64_t t = now_ns();
        if (!start) start = t;
        if (t - start >= SLEEP_NS) break;
        if (t - start >= SPIN_NS) sched_yield();
    }
    /* Sleep. sleepers is raised before the run word is read again and the caller reads
     * sleepers after it publishes a run (both sequentially consistent): either this thread
     * sees the new run, or the caller sees a sleeper and broadcasts under the mutex, which
     * this thread holds until pthread_cond_wait releases it. */
    unsigned r;
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    while ((r = RUN_OF(atomic_load(&p->word))) == seen && !atomic_load(&p->shutdown))
        pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return r;
}

static void *worker_main(void *arg) {
    df_pool *p = arg;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_run(p, seen);
        if (atomic_load(&p->shutdown)) break;
        drain(p, false);
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
    df_pool *p = aligned_alloc(64, (sizeof *p + 63) / 64 * 64);
    if (!p) return df_fail(DF_ERR_NOMEM, "thread pool: out of memory");
    memset(p, 0, sizeof *p);
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    atomic_init(&p->word, WORD(0, 0, 0, 0));
    atomic_init(&p->done, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->shutdown, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            p->n_threads = 1;
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

static void run_inline(df_task_fn fn, void *ctx, int n_tasks) {
    for (int t = 0; t < n_tasks; t++) fn(ctx, t, n_tasks);
}

void df_pool_run(df_pool *p, df_task_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        run_inline(fn, ctx, n_tasks);
        return;
    }
    /* More tasks than the run word counts: no kernel asks for that many; run them here. */
    if (n_tasks > MAX_TASKS) {
        run_inline(fn, ctx, n_tasks);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->run = (p->run + 1) & 0xffffu;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->word, WORD(p->run, n_tasks, 0, n_tasks), memory_order_seq_cst);
    if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }

    drain(p, true);

    int64_t start = 0;
    for (unsigned i = 1; atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks; i++) {
        cpu_relax();
        if (i % 64) continue;
        const int64_t t = now_ns();
        if (!start) start = t;
        if (t - start >= WAIT_SPIN_NS) sched_yield();
    }
}

void df_pool_destroy(df_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->shutdown, 1);
    p->run = (p->run + 1) & 0xffffu;
    atomic_store(&p->word, WORD(p->run, 0, 0, 0));
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    if (p->threads)
        for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p);
}
