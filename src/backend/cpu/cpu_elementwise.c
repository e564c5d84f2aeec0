/* Elementwise activations, the residual add, row softmax and argmax, and the GDN gates.
 * These are memory-bound or expf-bound; they are threaded over contiguous element ranges
 * once a call is large enough (a 16-token SwiGLU of a 17408-wide FFN is ~280k expf). */
#include <math.h>

#include "backend/cpu/cpu_internal.h"

typedef enum { EW_ADD, EW_SILU, EW_SWIGLU, EW_SIGMOID, EW_SOFTPLUS } ew_op;

typedef struct {
    ew_op op;
    const float *a, *b;
    float *y;
    int64_t n;
} ew_ctx;

static inline float softplusf(float x) {
    /* torch.nn.functional.softplus with beta 1, threshold 20: linear above the threshold,
     * where log1p(exp(x)) already equals x in float. */
    return x > 20.0f ? x : log1pf(expf(x));
}

static void ew_task(void *p, int task, int n_tasks) {
    const ew_ctx *c = p;
    int64_t lo, hi;
    df_cpu_task_range(c->n, task, n_tasks, &lo, &hi);
    const float *a = c->a, *b = c->b;
    float *y = c->y;
    switch (c->op) {
    case EW_ADD:
        for (int64_t i = lo; i < hi; i++) y[i] = a[i] + b[i];
        break;
    case EW_SILU:
        df_cpu_kernels_get()->silu_mul_f32(y + lo, a + lo, NULL, hi - lo);
        break;
    case EW_SWIGLU:
        df_cpu_kernels_get()->silu_mul_f32(y + lo, a + lo, b + lo, hi - lo);
        break;
    case EW_SIGMOID:
        df_cpu_kernels_get()->sigmoid_mul_f32(y + lo, a + lo, NULL, hi - lo);
        break;
    case EW_SOFTPLUS:
        for (int64_t i = lo; i < hi; i++) y[i] = softplusf(a[i]);
        break;
    }
}

static df_status ew_run(df_pool *pool, const char *name, ew_op op, const float *a, const float *b,
                        float *y, int64_t n, int64_t cost) {
    if (!a || !y || ((op == EW_ADD || op == EW_SWIGLU) && !b))
        return df_fail(DF_ERR_INVALID, "%s: an input or the output is NULL", name);
    if (n < 0) return df_fail(DF_ERR_INVALID, "%s: negative length %lld", name, (long long)n);
    if (n == 0) return DF_OK;
    ew_ctx c = {op, a, b, y, n};
    /* one task per ~16k elements at least: ranges stay long enough to stream well */
    int n_tasks = df_cpu_task_count(pool, (n + 4095) / 4096, 4096 * cost);
    df_pool_run(pool, ew_task, &c, n_tasks);
    return DF_OK;
}

df_status df_cpu_add(df_pool *pool, const float *a, const float *b, float *y, int64_t n) {
    return ew_run(pool, "add", EW_ADD, a, b, y, n, 1);
}
df_status df_cpu_silu(df_pool *pool, const float *x, float *y, int64_t n) {
    return ew_run(pool, "silu", EW_SILU, x, NULL, y, n, 20);
}
df_status df_cpu_swiglu(df_pool *pool, const float *gate, const float *up, float *y, int64_t n) {
    return ew_run(pool, "swiglu", EW_SWIGLU, gate, up, y, n, 20);
}
df_status df_cpu_sigmoid(df_pool *pool, const float *x, float *y, int64_t n) {
    return ew_run(pool, "sigmoid", EW_SIGMOID, x, NULL, y, n, 20);
}
df_status df_cpu_softplus(df_pool *pool, const float *x, float *y, int64_t n) {
    return ew_run(pool, "softplus", EW_SOFTPLUS, x, NULL, y, n, 40);
}

/* ---- softmax over rows ---- */

typedef struct {
    float *x;
    int64_t n_rows, n, stride;
    int bad_row; /* set atomically by any task that meets an unusable row */
} softmax_ctx;

static void softmax_task(void *p, int task, int n_tasks) {
    softmax_ctx *c = p;
    int64_t lo, hi;
    df_cpu_task_range(c->n_rows, task, n_tasks, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        float *x = c->x + r * c->stride;
        float m = -INFINITY;
        bool has_nan = false;
        for (int64_t i = 0; i < c->n; i++) {
            if (isnan(x[i])) has_nan = true;
            else if (x[i] > m) m = x[i];
        }
        if (has_nan || m == -INFINITY || m == INFINITY) {
            __atomic_store_n(&c->bad_row, 1, __ATOMIC_RELAXED);
            continue;
        }
        double sum = 0.0;
        for (int64_t i = 0; i < c->n; i++) {
            x[i] = expf(x[i] - m);
            sum += x[i];
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < c->n; i++) x[i] *= inv;
    }
}

df_status df_cpu_softmax_rows(df_pool *pool, float *x, int64_t n_rows, int64_t n, int64_t stride) {
    if (!x) return df_fail(DF_ERR_INVALID, "softmax: x is NULL");
    if (n_rows <= 0 || n <= 0 || (n_rows > 1 && stride < n))
        return df_fail(DF_ERR_INVALID, "softmax: %lld rows of %lld (stride %lld) is not a valid shape",
                       (long long)n_rows, (long long)n, (long long)stride);
    softmax_ctx c = {x, n_rows, n, stride, 0};
    df_pool_run(pool, softmax_task, &c, df_cpu_task_count(pool, n_rows, 30 * n));
    if (c.bad_row)
        return df_fail(DF_ERR_INVALID, "softmax: a row contains NaN or +inf, or is all -inf");
    return DF_OK;
}

/* ---- argmax ---- */

static int64_t argmax_row(const float *x, int64_t n) { return df_cpu_kernels_get()->argmax_f32(x, n); }

df_status df_cpu_argmax(const float *x, int64_t n, int64_t *out) {
    if (!x || !out) return df_fail(DF_ERR_INVALID, "argmax: x or out is NULL");
    if (n <= 0) return df_fail(DF_ERR_INVALID, "argmax: empty row (%lld elements)", (long long)n);
    const int64_t i = argmax_row(x, n);
    if (i < 0) return df_fail(DF_ERR_INVALID, "argmax: all %lld elements are NaN", (long long)n);
    *out = i;
    return DF_OK;
}

typedef struct {
    const float *x;
    int64_t n_rows, n, stride;
    int64_t *out;
} argmax_ctx;

static void argmax_task(void *p, int task, int n_tasks) {
    const argmax_ctx *c = p;
    int64_t lo, hi;
    df_cpu_task_range(c->n_rows, task, n_tasks, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) c->out[r] = argmax_row(c->x + r * c->stride, c->n);
}

df_status df_cpu_argmax_rows(df_pool *pool, const float *x, int64_t n_rows, int64_t n,
                             int64_t stride, int64_t *out) {
    if (!x || !out) return df_fail(DF_ERR_INVALID, "argmax_rows: x or out is NULL");
    if (n_rows <= 0 || n <= 0 || (n_rows > 1 && stride < n))
        return df_fail(DF_ERR_INVALID, "argmax_rows: %lld rows of %lld (stride %lld) is not a valid shape",
                       (long long)n_rows, (long long)n, (long long)stride);
    argmax_ctx c = {x, n_rows, n, stride, out};
    df_pool_run(pool, argmax_task, &c, df_cpu_task_count(pool, n_rows, n));
    for (int64_t r = 0; r < n_rows; r++)
        if (out[r] < 0) return df_fail(DF_ERR_INVALID, "argmax_rows: row %lld is all NaN", (long long)r);
    return DF_OK;
}

/* ---- GDN gates ---- */

df_status df_cpu_gdn_gates(const float *a, const float *b, const float *dt_bias, const float *ssm_a,
                           int64_t n_tok, int64_t n_v_head, float *g, float *beta) {
    if (!a || !b || !dt_bias || !ssm_a || !g || !beta)
        return df_fail(DF_ERR_INVALID, "gdn_gates: an input or output is NULL");
    if (n_tok <= 0 || n_v_head <= 0)
        return df_fail(DF_ERR_INVALID, "gdn_gates: shape [%lld][%lld] is not positive",
                       (long long)n_tok, (long long)n_v_head);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t h = 0; h < n_v_head; h++) {
            const int64_t i = t * n_v_head + h;
            g[i] = ssm_a[h] * softplusf(a[i] + dt_bias[h]);
            beta[i] = df_sigmoidf(b[i]);
        }
    return DF_OK;
}
