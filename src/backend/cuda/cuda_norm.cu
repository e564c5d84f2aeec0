/* RMSNorm (plain, per head, gated) and the per-head L2 norm. A row belongs to a group of
 * threads: a block of NORM_BLOCK threads for the model-wide rows (n_embd: thousands of
 * elements; one warp walking 5120 elements was ~65 us, bound by one load round trip per
 * element), a warp for head rows (<= 256 elements). Each thread sums the squares of its
 * elements in a fixed order, a fixed butterfly adds the lanes and the warps add in warp
 * order, and the reciprocal root is taken in double as on the CPU (cpu_norm.c):
 * s = (float)(1 / sqrt(ss / dim + eps)), then y = x * s * w. A row's result depends on that
 * row alone, whatever the number of rows. y may equal x: each thread loads the elements it
 * writes before writing them. */
#include "backend/cuda/cuda_internal.h"

enum { NORM_WARPS = 4, NORM_BLOCK = 256, NORM_UNROLL = 4 };

/* The sum of squares of this thread's elements i = first, first + step, ... (< dim), in
 * NORM_UNROLL partial sums (element first + j step goes to sum j % NORM_UNROLL), so that
 * NORM_UNROLL loads are in flight at a time. */
__device__ __forceinline__ float partial_squares(const float *x, int dim, int first, int step) {
    float s[NORM_UNROLL] = {0.0f, 0.0f, 0.0f, 0.0f};
    int i = first;
    for (; i + (NORM_UNROLL - 1) * step < dim; i += NORM_UNROLL * step) {
        float v[NORM_UNROLL];
#pragma unroll
        for (int u = 0; u < NORM_UNROLL; u++) v[u] = x[i + u * step];
#pragma unroll
        for (int u = 0; u < NORM_UNROLL; u++) s[u] = fmaf(v[u], v[u], s[u]);
    }
#pragma unroll
    for (int u = 0; u < NORM_UNROLL - 1; u++)
        if (i + u * step < dim) s[u] = fmaf(x[i + u * step], x[i + u * step], s[u]);
    return (s[0] + s[1]) + (s[2] + s[3]);
}

__device__ __forceinline__ float scale_of(float ss, int dim, float eps, bool mean) {
    double m = (double)ss;
    if (mean) m /= (double)dim;
    return (float)(1.0 / sqrt(m + (double)eps));
}

/* The scale of a row owned by one warp (all lanes get the same value). */
__device__ __forceinline__ float row_scale(const float *x, int dim, float eps, bool mean) {
    float ss = cu_warp_sum(partial_squares(x, dim, threadIdx.x % 32, 32));
    ss = __shfl_sync(0xffffffffu, ss, 0); /* lane 0's order, for every lane */
    return scale_of(ss, dim, eps, mean);
}

/* y[i] = x[i] * s * w[i] (* silu(z[i]) when z) for this thread's elements, NORM_UNROLL
 * loads in flight. */
__device__ __forceinline__ void scale_row(const float *x, const float *z, const float *w, float *y, float s,
                                          int dim, int first, int step) {
    int i = first;
    for (; i + (NORM_UNROLL - 1) * step < dim; i += NORM_UNROLL * step) {
        float v[NORM_UNROLL], wv[NORM_UNROLL], zv[NORM_UNROLL];
#pragma unroll
        for (int u = 0; u < NORM_UNROLL; u++) {
            v[u] = x[i + u * step];
            wv[u] = w ? w[i + u * step] : 1.0f;
            zv[u] = z ? z[i + u * step] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < NORM_UNROLL; u++) {
            const float r = w ? v[u] * s * wv[u] : v[u] * s;
            y[i + u * step] = z ? r * cu_silu(zv[u]) : r;
        }
    }
    for (; i < dim; i += step) {
        const float r = w ? x[i] * s * w[i] : x[i] * s;
        y[i] = z ? r * cu_silu(z[i]) : r;
    }
}

/* One block per row (model-wide rows). z: the gated form (else NULL). */
__global__ void __launch_bounds__(NORM_BLOCK) rmsnorm_block_kernel(const float *x, long long xs, const float *z,
                                                                   long long zs, float *y, long long ys, int dim,
                                                                   const float *w, float eps) {
    __shared__ float part[NORM_BLOCK / 32];
    __shared__ float scale;
    const long long row = blockIdx.x;
    const float *xr = x + row * xs;
    const float ss = cu_warp_sum(partial_squares(xr, dim, threadIdx.x, NORM_BLOCK));
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0.0f;
        for (int k = 0; k < NORM_BLOCK / 32; k++) t += part[k];
        scale = scale_of(t, dim, eps, true);
    }
    __syncthreads();
    scale_row(xr, z ? z + row * zs : NULL, w, y + row * ys, scale, dim, threadIdx.x, NORM_BLOCK);
}

/* One warp per row (short rows: the gated norm's rows are head_v_dim long). */
__global__ void rmsnorm_rows_kernel(const float *x, long long xs, const float *z, long long zs, float *y,
                                    long long ys, int n_rows, int dim, const float *w, float eps, int gated) {
    const int row = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= n_rows) return;
    const float *xr = x + (long long)row * xs;
    const float s = row_scale(xr, dim, eps, true);
    scale_row(xr, gated ? z + (long long)row * zs : NULL, w, y + (long long)row * ys, s, dim, lane, 32);
}

/* In place over a heads view: RMSNorm with a shared weight, or the L2 norm (sum, no weight). */
__global__ void norm_heads_kernel(cu_heads h, const float *w, float eps, int l2) {
    const int item = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (item >= h.n_tok * h.n_head) return;
    float *row = cu_head_ptr(h, item / h.n_head, item % h.n_head);
    const float s = row_scale(row, h.dim, eps, !l2);
    scale_row(row, NULL, l2 ? NULL : w, row, s, h.dim, lane, 32);
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
    if (dim > 512)
        rmsnorm_block_kernel<<<(unsigned)n_rows, NORM_BLOCK, 0, cb->stream>>>(x, xs, NULL, 0, y, ys, (int)dim, w,
                                                                               eps);
    else
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
    if (dim > 512)
        rmsnorm_block_kernel<<<(unsigned)n_rows, NORM_BLOCK, 0, cb->stream>>>(x, xs, z, zs, y, ys, (int)dim, w, eps);
    else
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
