#include "tools/membw.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "backend/backend.h"
#include "base/threadpool.h"

typedef struct job {
    const uint64_t *src;
    uint64_t *dst;
    size_t n;             /* words */
    uint64_t sums[1024];  /* one per task, so the reads cannot be optimised away */
} job;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void read_task(void *ctx, int t, int n_tasks) {
    job *j = ctx;
    size_t lo = j->n * (size_t)t / (size_t)n_tasks, hi = j->n * (size_t)(t + 1) / (size_t)n_tasks;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = lo;
    for (; i + 4 <= hi; i += 4) {
        a ^= j->src[i];
        b ^= j->src[i + 1];
        c ^= j->src[i + 2];
        d ^= j->src[i + 3];
    }
    for (; i < hi; i++) a ^= j->src[i];
    j->sums[t] = a ^ b ^ c ^ d;
}

static void copy_task(void *ctx, int t, int n_tasks) {
    job *j = ctx;
    size_t lo = j->n * (size_t)t / (size_t)n_tasks, hi = j->n * (size_t)(t + 1) / (size_t)n_tasks;
    memcpy(j->dst + lo, j->src + lo, (hi - lo) * sizeof(uint64_t));
}

int membw_measure(size_t bytes, int n_threads, membw_result *out) {
    df_pool *pool;
    if (df_pool_create(n_threads, &pool) != DF_OK) return -1;
    size_t n = bytes / sizeof(uint64_t);
    uint64_t *src = df_alloc_aligned(n * sizeof(uint64_t)), *dst = df_alloc_aligned(n * sizeof(uint64_t));
    if (!src || !dst) {
        df_free_aligned(src);
        df_free_aligned(dst);
        df_pool_destroy(pool);
        return -1;
    }
    for (size_t i = 0; i < n; i++) src[i] = i * 0x9e3779b97f4a7c15ull; /* touch every page */
    memset(dst, 1, n * sizeof(uint64_t));
    job *j = calloc(1, sizeof *j);
    j->src = src;
    j->dst = dst;
    j->n = n;
    int tasks = df_pool_size(pool);
    /* Best of several passes: the ceiling, as a roofline should be. */
    double best_read = 1e30, best_copy = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_s();
        df_pool_run(pool, read_task, j, tasks);
        double t1 = now_s();
        df_pool_run(pool, copy_task, j, tasks);
        double t2 = now_s();
        if (t1 - t0 < best_read) best_read = t1 - t0;
        if (t2 - t1 < best_copy) best_copy = t2 - t1;
    }
    out->read_gbs = (double)(n * sizeof(uint64_t)) / best_read / 1e9;
    out->copy_gbs = 2.0 * (double)(n * sizeof(uint64_t)) / best_copy / 1e9;
    free(j);
    df_free_aligned(src);
    df_free_aligned(dst);
    df_pool_destroy(pool);
    return 0;
}

int membw_measure_backend(struct df_backend *be, size_t bytes, membw_result *out) {
    void *a = NULL, *b = NULL;
    int rc = -1;
    if (be->ops->alloc(be, bytes, &a) != DF_OK || be->ops->alloc(be, bytes, &b) != DF_OK) goto done;
    double best = 1e30;
    for (int r = 0; r < 6; r++) {
        if (be->ops->sync(be) != DF_OK) goto done;
        double t0 = now_s();
        if (be->ops->copy(be, b, a, bytes) != DF_OK || be->ops->sync(be) != DF_OK) goto done;
        double t = now_s() - t0;
        if (r > 0 && t < best) best = t;  /* the first copy warms up */
    }
    out->copy_gbs = 2.0 * (double)bytes / best / 1e9;
    out->read_gbs = out->copy_gbs / 2.0;
    rc = 0;
done:
    if (a) be->ops->free(be, a);
    if (b) be->ops->free(be, b);
    return rc;
}
