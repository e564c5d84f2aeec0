/* RMSNorm (plain, per head, gated) and the per-head L2 norm. Each row is independent, so
 * rows are cut into contiguous ranges, one per task. The sum of squares is taken in float
 * with 8 (scalar) or 32 (AVX2) partial sums and the reciprocal root in double; this is as
 * accurate as HF's float32 mean for the row lengths of real models. */
#include "backend/cpu/cpu_internal.h"

/* ---- plain RMSNorm over rows ---- */

typedef struct {
    const float *x, *z, *w;
    float *y;
    int64_t x_stride, z_stride, y_stride, n_rows, dim;
    float eps;
} norm_rows_ctx;

static void rmsnorm_task(void *p, int task, int n_tasks) {
    const norm_rows_ctx *c = p;
    const df_cpu_kernels *K = df_cpu_kernels_get();
    int64_t lo, hi;
    df_cpu_task_range(c->n_rows, task, n_tasks, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * c->x_stride;
        const double ms = (double)K->sumsq_f32(x, c->dim) / (double)c->dim;
        const float s = (float)(1.0 / sqrt(ms + (double)c->eps));
        K->scale_mul_f32(c->y + r * c->y_stride, x, s, c->w, c->dim);
    }
}

static df_status check_rows(const char *kernel, const void *x, int64_t x_stride, const void *y,
                            int64_t y_stride, int64_t n_rows, int64_t dim, float eps) {
    if (!x || !y) return df_fail(DF_ERR_INVALID, "%s: x or y is NULL", kernel);
    if (n_rows <= 0 || dim <= 0)
        return df_fail(DF_ERR_INVALID, "%s: %lld rows of %lld elements, expected positive sizes",
                       kernel, (long long)n_rows, (long long)dim);
    if (n_rows > 1 && (x_stride < dim || y_stride < dim))
        return df_fail(DF_ERR_INVALID, "%s: row strides %lld / %lld are smaller than dim %lld", kernel,
                       (long long)x_stride, (long long)y_stride, (long long)dim);
    if (!(eps >= 0.0f)) return df_fail(DF_ERR_INVALID, "%s: eps %g is not >= 0", kernel, (double)eps);
    return DF_OK;
}

df_status df_cpu_rmsnorm(df_pool *pool, const float *x, int64_t x_stride, float *y,
                         int64_t y_stride, int64_t n_rows, int64_t dim, const float *w, float eps) {
    DF_TRY(check_rows("rmsnorm", x, x_stride, y, y_stride, n_rows, dim, eps));
    norm_rows_ctx c = {.x = x, .w = w, .y = y, .x_stride = x_stride, .y_stride = y_stride,
                       .n_rows = n_rows, .dim = dim, .eps = eps};
    df_pool_run(pool, rmsnorm_task, &c, df_cpu_task_count(pool, n_rows, 3 * dim));
    return DF_OK;
}

/* ---- gated RMSNorm (GDN output) ---- */

static void rmsnorm_gated_task(void *p, int task, int n_tasks) {
    const norm_rows_ctx *c = p;
    const df_cpu_kernels *K = df_cpu_kernels_get();
    int64_t lo, hi;
    df_cpu_task_range(c->n_rows, task, n_tasks, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * c->x_stride, *z = c->z + r * c->z_stride;
        float *y = c->y + r * c->y_stride;
        const double ms = (double)K->sumsq_f32(x, c->dim) / (double)c->dim;
        const float s = (float)(1.0 / sqrt(ms + (double)c->eps));
        K->scale_mul_f32(y, x, s, c->w, c->dim);
        K->silu_mul_f32(y, z, y, c->dim);
    }
}

df_status df_cpu_rmsnorm_gated(df_pool *pool, const float *x, int64_t x_stride, const float *z,
                               int64_t z_stride, float *y, int64_t y_stride, int64_t n_rows,
                               int64_t dim, const float *w, float eps) {
    DF_TRY(check_rows("rmsnorm_gated", x, x_stride, y, y_stride, n_rows, dim, eps));
    if (!z) return df_fail(DF_ERR_INVALID, "rmsnorm_gated: z is NULL");
    if (n_rows > 1 && z_stride < dim)
        return df_fail(DF_ERR_INVALID, "rmsnorm_gated: z stride %lld is smaller than dim %lld",
                       (long long)z_stride, (long long)dim);
    norm_rows_ctx c = {.x = x, .z = z, .w = w, .y = y, .x_stride = x_stride, .z_stride = z_stride,
                       .y_stride = y_stride, .n_rows = n_rows, .dim = dim, .eps = eps};
    df_pool_run(pool, rmsnorm_gated_task, &c, df_cpu_task_count(pool, n_rows, 20 * dim));
    return DF_OK;
}

/* ---- per-head norms over a view ---- */

typedef struct {
    const df_cpu_heads *x;
    const float *w;
    float eps;
    bool l2; /* L2 norm (sum, no weight) instead of RMSNorm (mean, weight) */
} norm_heads_ctx;

static void norm_heads_task(void *p, int task, int n_tasks) {
    const norm_heads_ctx *c = p;
    const df_cpu_heads *x = c->x;
    const df_cpu_kernels *K = df_cpu_kernels_get();
    int64_t lo, hi;
    df_cpu_task_range(x->n_tok * x->n_head, task, n_tasks, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *row = df_head_ptr(x, i / x->n_head, i % x->n_head);
        double ss = (double)K->sumsq_f32(row, x->dim);
        if (!c->l2) ss /= (double)x->dim;
        const float s = (float)(1.0 / sqrt(ss + (double)c->eps));
        K->scale_mul_f32(row, row, s, c->l2 ? NULL : c->w, x->dim);
    }
}

df_status df_cpu_rmsnorm_heads(df_pool *pool, const df_cpu_heads *x, const float *w, float eps) {
    DF_TRY(df_cpu_check_heads("rmsnorm_heads", "x", x));
    if (!(eps >= 0.0f)) return df_fail(DF_ERR_INVALID, "rmsnorm_heads: eps %g is not >= 0", (double)eps);
    norm_heads_ctx c = {x, w, eps, false};
    df_pool_run(pool, norm_heads_task, &c, df_cpu_task_count(pool, x->n_tok * x->n_head, 3 * x->dim));
    return DF_OK;
}

df_status df_cpu_l2norm_heads(df_pool *pool, const df_cpu_heads *x, float eps) {
    DF_TRY(df_cpu_check_heads("l2norm_heads", "x", x));
    if (!(eps >= 0.0f)) return df_fail(DF_ERR_INVALID, "l2norm_heads: eps %g is not >= 0", (double)eps);
    norm_heads_ctx c = {x, NULL, eps, true};
    df_pool_run(pool, norm_heads_task, &c, df_cpu_task_count(pool, x->n_tok * x->n_head, 3 * x->dim));
    return DF_OK;
}
