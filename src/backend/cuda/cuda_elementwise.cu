/* Elementwise ops (residual add, SwiGLU), argmax over rows (greedy decoding reads only these
 * ids back, never the logits), and the f16 -> f32 state restore. */
#include "backend/cuda/cuda_internal.h"

__global__ void add_kernel(const float *a, const float *b, float *y, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = a[i] + b[i];
}

__global__ void swiglu_kernel(const float *g, const float *u, float *y, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = cu_silu(g[i]) * u[i];
}

static unsigned ew_grid(int64_t n) {
    const int64_t b = (n + 255) / 256;
    return (unsigned)(b < 65536 ? b : 65536);
}

df_status cu_add(df_backend *be, const float *a, const float *b, float *y, int64_t n) {
    cu_backend *cb = cu_impl(be);
    if (!a || !b || !y) return df_fail(DF_ERR_INVALID, "add: an input or the output is NULL");
    if (n < 0) return df_fail(DF_ERR_INVALID, "add: negative length %lld", (long long)n);
    if (n == 0) return DF_OK;
    DF_TRY(cu_enter(cb, "add"));
    add_kernel<<<ew_grid(n), 256, 0, cb->stream>>>(a, b, y, n);
    return cu_check_launch(cb, "add");
}

df_status cu_swiglu(df_backend *be, const float *gate, const float *up, float *y, int64_t n) {
    cu_backend *cb = cu_impl(be);
    if (!gate || !up || !y) return df_fail(DF_ERR_INVALID, "swiglu: an input or the output is NULL");
    if (n < 0) return df_fail(DF_ERR_INVALID, "swiglu: negative length %lld", (long long)n);
    if (n == 0) return DF_OK;
    DF_TRY(cu_enter(cb, "swiglu"));
    swiglu_kernel<<<ew_grid(n), 256, 0, cb->stream>>>(gate, up, y, n);
    return cu_check_launch(cb, "swiglu");
}

/* ---- argmax ---- */

enum { ARGMAX_THREADS = 1024 }; /* one block per row: a 248k vocabulary row in ~250 loads per thread */

/* b beats a: larger value, or the same value at a smaller index (the first maximum wins, as
 * on the CPU). Index -1 is "nothing yet" (NaN entries are skipped). */
__device__ __forceinline__ bool better(float bv, int bi, float av, int ai) {
    if (bi < 0) return false;
    if (ai < 0) return true;
    return bv > av || (bv == av && bi < ai);
}

/* One block per row. out[r] = -1 for a row of only NaN: the CPU op refuses such a row; here
 * the id is on the device, and -1 makes the next forward refuse it as a token id. */
__global__ void argmax_kernel(const float *x, int n, long long stride, int32_t *out) {
    const float *row = x + (long long)blockIdx.x * stride;
    float bv = 0.0f;
    int bi = -1;
    for (int i = threadIdx.x; i < n; i += ARGMAX_THREADS) {
        const float v = row[i];
        if (v != v) continue;
        if (bi < 0 || v > bv) {
            bv = v;
            bi = i;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (better(ov, oi, bv, bi)) {
            bv = ov;
            bi = oi;
        }
    }
    __shared__ float sv[ARGMAX_THREADS / 32];
    __shared__ int si[ARGMAX_THREADS / 32];
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < ARGMAX_THREADS / 32; w++)
            if (better(sv[w], si[w], bv, bi)) {
                bv = sv[w];
                bi = si[w];
            }
        out[blockIdx.x] = bi;
    }
}

df_status cu_argmax_rows(df_backend *be, const float *x, int64_t n_rows, int64_t n, int64_t stride,
                         int32_t *out) {
    cu_backend *cb = cu_impl(be);
    if (!x || !out) return df_fail(DF_ERR_INVALID, "argmax_rows: x or out is NULL");
    if (n_rows <= 0 || n <= 0 || (n_rows > 1 && stride < n) || n > ((int64_t)1 << 30) || n_rows > (1 << 30))
        return df_fail(DF_ERR_INVALID, "argmax_rows: %lld rows of %lld (stride %lld) is not a valid shape",
                       (long long)n_rows, (long long)n, (long long)stride);
    DF_TRY(cu_enter(cb, "argmax_rows"));
    argmax_kernel<<<(unsigned)n_rows, ARGMAX_THREADS, 0, cb->stream>>>(x, (int)n, stride, out);
    return cu_check_launch(cb, "argmax_rows");
}

/* ---- state restore ---- */

__global__ void f16_to_f32_kernel(const __half *src, float *dst, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        dst[i] = __half2float(src[i]);
}

df_status cu_state_to_f32(df_backend *be, float *dst, const void *src, df_state_type type, int64_t n) {
    cu_backend *cb = cu_impl(be);
    if (!dst || !src) return df_fail(DF_ERR_INVALID, "state_to_f32: NULL pointer");
    if (n < 0) return df_fail(DF_ERR_INVALID, "state_to_f32: negative length %lld", (long long)n);
    if (type != DF_STATE_F32 && type != DF_STATE_F16)
        return df_fail(DF_ERR_INVALID, "state_to_f32: unknown state type %d", (int)type);
    if (n == 0) return DF_OK;
    DF_TRY(cu_enter(cb, "state_to_f32"));
    if (type == DF_STATE_F32) {
        cudaError_t e = cudaMemcpyAsync(dst, src, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, cb->stream);
        if (e != cudaSuccess) return cu_fail(e, "state_to_f32", "cudaMemcpyAsync");
        cb->last_op = "state_to_f32";
        return DF_OK;
    }
    f16_to_f32_kernel<<<ew_grid(n), 256, 0, cb->stream>>>((const __half *)src, dst, n);
    return cu_check_launch(cb, "state_to_f32");
}
