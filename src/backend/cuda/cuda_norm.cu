/* RMSNorm (plain, per head, gated) and the per-head L2 norm: one warp per row. Each lane sums
 * the squares of its elements in order, a fixed butterfly adds the lanes, and the reciprocal
 * root is taken in double as on the CPU (cpu_norm.c): s = (float)(1 / sqrt(ss / dim + eps)),
 * then y = x * s * w. A row's result depends on that row alone. */
#include "backend/cuda/cuda_internal.h"

enum { NORM_WARPS = 4 };

/* The scale of one row (all lanes get the same value). mean: divide the sum by dim. */
__device__ __forceinline__ float row_scale(const float *x, int dim, float eps, bool mean) {
    const int lane = threadIdx.x % 32;
    /* four partial sums per lane: shorter dependency chains for long rows */
    float s4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int k = 0;
    for (int i = lane; i < dim; i += 32, k = (k + 1) & 3) s4[k] = fmaf(x[i], x[i], s4[k]);
    float ss = (s4[0] + s4[1]) + (s4[2] + s4[3]);
    ss = cu_warp_sum(ss);
    ss = __shfl_sync(0xffffffffu, ss, 0); /* lane 0's order, for every lane */
    double m = (double)ss;
    if (mean) m /= (double)dim;
    return (float)(1.0 / sqrt(m + (double)eps));
}

/* mode 0: y = x * s * w (w may be NULL); mode 1: the gated form, y = x * s * w * silu(z). */
__global__ void rmsnorm_rows_kernel(const float *x, long long xs, const float *z, long long zs, float *y,
                                    long long ys, int n_rows, int dim, const float *w, float eps, int gated) {
    const int row = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= n_rows) return;
    const float *xr = x + (long long)row * xs;
    float *yr = y + (long long)row * ys;
    const float s = row_scale(xr, dim, eps, true);
    /* every lane has read its elements of x before any writes y (y may equal x) */
    __syncwarp();
    if (gated) {
        const float *zr = z + (long long)row * zs;
        for (int i = lane; i < dim; i += 32) {
            const float v = w ? xr[i] * s * w[i] : xr[i] * s;
            yr[i] = v * cu_silu(zr[i]);
        }
    } else {
        for (int i = lane; i < dim; i += 32) yr[i] = w ? xr[i] * s * w[i] : xr[i] * s;
    }
}

/* In place over a heads view: RMSNorm with a shared weight, or the L2 norm (sum, no weight). */
__global__ void norm_heads_kernel(cu_heads h, const float *w, float eps, int l2) {
    const int item = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (item >= h.n_tok * h.n_head) return;
    float *row = cu_head_ptr(h, item / h.n_head, item % h.n_head);
    const float s = row_scale(row, h.dim, eps, !l2);
    __syncwarp();
    for (int i = lane; i < h.dim; i += 32) row[i] = (!l2 && w) ? row[i] * s * w[i] : row[i] * s;
}

static df_status check_rows(const char *op, const void *x, int64_t xs, const void *y, int64_t ys,
                            int64_t n_rows, int64_t dim, float eps) {
    if (!x || !y) return df_fail(DF_ERR_INVALID, "%s: x or y is NULL", op);
    if (n_rows <= 0 || dim <= 0 || n_rows > ((int64_t)1 << 30) || dim > ((int64_t)1 << 30))
        return df_fail(DF_ERR_INVALID, "%s: %lld rows of %lld elements, expected positive sizes", op,
                       (long long)n_rows, (long long)dim);
    if (n_rows > 1 && (xs < dim || ys < dim))
        return df_fail(DF_ERR_INVALID, "%s: row strides %lld / %lld are smaller than dim %lld", op,
                       (long long)xs, (long long)ys, (long long)dim);
    if (!(eps >= 0.0f)) return df_fail(DF_ERR_INVALID, "%s: eps %g is not >= 0", op, (double)eps);
    return DF_OK;
}

df_status cu_rmsnorm(df_backend *be, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows,
                     int64_t dim, const float *w, float eps) {
    cu_backend *cb = cu_impl(be);
    DF_TRY(check_rows("rmsnorm", x, xs, y, ys, n_rows, dim, eps));
    DF_TRY(cu_enter(cb, "rmsnorm"));
    rmsnorm_rows_kernel<<<cu_blocks(n_rows, NORM_WARPS), NORM_WARPS * 32, 0, cb->stream>>>(
        x, xs, NULL, 0, y, ys, (int)n_rows, (int)dim, w, eps, 0);
    return cu_check_launch(cb, "rmsnorm");
}

df_status cu_rmsnorm_gated(df_backend *be, const float *x, int64_t xs, const float *z, int64_t zs,
                           float *y, int64_t ys, int64_t n_rows, int64_t dim, const float *w, float eps) {
    cu_backend *cb = cu_impl(be);
    DF_TRY(check_rows("rmsnorm_gated", x, xs, y, ys, n_rows, dim, eps));
    if (!z) return df_fail(DF_ERR_INVALID, "rmsnorm_gated: z is NULL");
    if (n_rows > 1 && zs < dim)
        return df_fail(DF_ERR_INVALID, "rmsnorm_gated: z stride %lld is smaller than dim %lld",
                       (long long)zs, (long long)dim);
    DF_TRY(cu_enter(cb, "rmsnorm_gated"));
    rmsnorm_rows_kernel<<<cu_blocks(n_rows, NORM_WARPS), NORM_WARPS * 32, 0, cb->stream>>>(
        x, xs, z, zs, y, ys, (int)n_rows, (int)dim, w, eps, 1);
    return cu_check_launch(cb, "rmsnorm_gated");
}

static df_status norm_heads(cu_backend *cb, const char *op, const df_heads *x, const float *w, float eps,
                            int l2) {
    DF_TRY(cu_check_heads(op, "x", x));
    if (!(eps >= 0.0f)) return df_fail(DF_ERR_INVALID, "%s: eps %g is not >= 0", op, (double)eps);
    DF_TRY(cu_enter(cb, op));
    const int64_t items = x->n_tok * x->n_head;
    norm_heads_kernel<<<cu_blocks(items, NORM_WARPS), NORM_WARPS * 32, 0, cb->stream>>>(cu_heads_of(x), w,
                                                                                         eps, l2);
    return cu_check_launch(cb, op);
}

df_status cu_rmsnorm_heads(df_backend *be, const df_heads *x, const float *w, float eps) {
    return norm_heads(cu_impl(be), "rmsnorm_heads", x, w, eps, 0);
}

df_status cu_l2norm_heads(df_backend *be, const df_heads *x, float eps) {
    return norm_heads(cu_impl(be), "l2norm_heads", x, NULL, eps, 1);
}
