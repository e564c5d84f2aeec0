/* y[t][o] = sum_i x[t][i] * W[o][i] for weights of any supported GGUF type. Three paths:
 *
 * 1. Up to DF_CUDA_SMALL_BATCH tokens, Q4_K / Q5_K / Q6_K / Q8_0 / Q4_0 weights (sm_80+):
 *    cuda_mmq.cu. The activations are quantized once per call to int8 blocks of 32 with an f32
 *    scale (cuda_quantize_act.cu), and int8 tensor cores (mma.sync m16n8k32 / m16n8k16) take
 *    the dot products straight from the GGUF blocks: a warp owns 16 rows, every token of the
 *    call rides along in columns of 8, so the weights are read once per call whatever the
 *    token count. The result is the f32 sum of the dequantized weights times activations
 *    rounded to 1/254 of their block's largest magnitude (~4e-3 of the largest output on
 *    random rows; the CPU's q8_K / q8_0 dots round the same way). DFLASH_CUDA_MMQ=0 sends
 *    these types to path 2, for before / after timings.
 *    Measured (H100, tests/gpu/cuda_ops_check --bench, Qwen3.6-27B Q4_K_M shapes, weights
 *    rotated past the L2): all of a token's matmuls 11.8-12.1 ms at 1 token (1.31-1.35 TB/s,
 *    44% of the 3.0 TB/s copy bandwidth; large Q4_K 50-54%, the Q6_K LM head 69%) against
 *    21.5 ms for path 2; 16 tokens cost 1.36x one (path 2: 3.05x).
 *
 * 2. Up to DF_CUDA_SMALL_BATCH tokens, the other types (f32 / f16 / bf16 and the remaining
 *    quants): a weight-streaming kernel in f32. A block owns MM_R rows; its MM_WARPS warps
 *    split each row's units of 8 elements between them (warp w takes units w*32 + lane,
 *    stepping by MM_WARPS * 32). Each unit is decoded once (cuda_quant.cuh) for the MM_R rows
 *    and dotted with the matching 8 activations of every token of a group of NT tokens, so W
 *    leaves memory once per group of NT tokens. Weights are not converted and activations are
 *    not quantized: the result is the f32 dot product of the dequantized weights with the f32
 *    activations. It runs at ~0.7 TB/s on large matrices (f32 FMA on decoded blocks is the
 *    limit), and 16 tokens cost ~3x one. Measured earlier on the 0.8B shapes: NT = 16 against
 *    NT = 8 made a 16-token forward 5% faster; this layout against one warp per row, 2-2.5x
 *    faster for the narrow matrices (1024 outputs).
 *
 * Batch invariance of both (a 16-token verify reproduces 16 decode steps bit for bit): the
 * result for (row, token) is a fixed sequence of float operations that depends on the matrix
 * alone (path 1: exact int32 sums per block, then explicit _rn steps in block order and a fixed
 * order over the K split; path 2: FMAs over the units a lane owns, a fixed butterfly over the
 * lanes and a sum over the warps in warp order); the token's place in the call and the number
 * of tokens change only which thread computes it. The path is chosen by the weight, never by
 * the token count.
 *
 * 3. Above DF_CUDA_SMALL_BATCH tokens (prefill): rows are dequantized to f32 in chunks and
 *    multiplied by cuBLAS (TF32 tensor cores; f32 weights stay exact f32). */

#include "backend/cuda/cuda_mmq.cuh"
#include "backend/cuda/cuda_quant.cuh"

enum { MM_WARPS = 4, MM_R = 4, NT = 16 };
/* Most weight elements dequantized per cuBLAS chunk: 16 Mi floats (64 MiB of scratch). */
#define MM_CHUNK_ELEMS ((int64_t)16 << 20)

template <bool VEC>
__device__ __forceinline__ void load_x8(const float *p, float v[8]) {
    if (VEC) {
        const float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = p[i];
    }
}

template <int T, bool VEC>
__global__ void __launch_bounds__(MM_WARPS * 32)
mmv_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int n_in, int n_out,
                 const float *__restrict__ x, int n_tok, float *__restrict__ y) {
    __shared__ float red[MM_WARPS][MM_R][NT];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row0 = blockIdx.x * MM_R;
    const int units = n_in / 8;
    const uint8_t *wr[MM_R];
#pragma unroll
    for (int r = 0; r < MM_R; r++) wr[r] = w + (size_t)min(row0 + r, n_out - 1) * row_bytes;

    for (int t0 = 0; t0 < n_tok; t0 += NT) {
        const int nt = min(NT, n_tok - t0);
        float acc[MM_R][NT];
#pragma unroll
        for (int r = 0; r < MM_R; r++)
#pragma unroll
            for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
        for (int u = warp * 32 + lane; u < units; u += MM_WARPS * 32) {
            float wv[MM_R][8];
#pragma unroll
            for (int r = 0; r < MM_R; r++) cu_dq<T>::dec8(wr[r], u * 8, wv[r]);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t >= nt) break;
                float xv[8];
                load_x8<VEC>(x + (size_t)(t0 + t) * n_in + u * 8, xv);
#pragma unroll
                for (int r = 0; r < MM_R; r++) {
                    float a = acc[r][t];
#pragma unroll
                    for (int i = 0; i < 8; i++) a = fmaf(wv[r][i], xv[i], a);
                    acc[r][t] = a;
                }
            }
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t >= nt) break;
#pragma unroll
            for (int r = 0; r < MM_R; r++) {
                const float v = cu_warp_sum(acc[r][t]);
                if (lane == 0) red[warp][r][t] = v;
            }
        }
        __syncthreads();
        if (threadIdx.x < MM_R * NT) {
            const int r = threadIdx.x / NT, t = threadIdx.x % NT;
            if (t < nt && row0 + r < n_out) {
                float v = red[0][r][t];
#pragma unroll
                for (int k = 1; k < MM_WARPS; k++) v += red[k][r][t];
                y[(size_t)(t0 + t) * n_out + row0 + r] = v;
            }
        }
        __syncthreads();
    }
}

/* Float weights whose rows are not a multiple of 8 long: one warp per row, one element per
 * lane step, the same per-token sequence whatever n_tok. */
template <int T>
__global__ void mmv_any_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int n_in, int n_out,
                               const float *__restrict__ x, int n_tok, float *__restrict__ y) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row = blockIdx.x * MM_WARPS + warp;
    if (row >= n_out) return;
    const uint8_t *wr = w + (size_t)row * row_bytes;
    for (int t = 0; t < n_tok; t++) {
        const float *xt = x + (size_t)t * n_in;
        float a = 0.0f;
        for (int i = lane; i < n_in; i += 32) a = fmaf(cu_dq<T>::dec1(wr, i), xt[i], a);
        a = cu_warp_sum(a);
        if (lane == 0) y[(size_t)t * n_out + row] = a;
    }
}

static df_status matmul_small(cu_backend *cb, const float *x, int n_tok, const df_weight *w, size_t row_bytes,
                              float *y) {
    const int n_in = (int)w->ne[0], n_out = (int)w->ne[1];
    const uint8_t *wd = (const uint8_t *)w->data;
    if (n_in % 8 == 0) {
        const bool vec = (uintptr_t)x % 16 == 0;
        const unsigned grid = cu_blocks(n_out, MM_R);
#define LAUNCH(T)                                                                                                  \
    do {                                                                                                           \
        if (vec) mmv_kernel<T, true><<<grid, MM_WARPS * 32, 0, cb->stream>>>(wd, row_bytes, n_in, n_out, x, n_tok, y); \
        else mmv_kernel<T, false><<<grid, MM_WARPS * 32, 0, cb->stream>>>(wd, row_bytes, n_in, n_out, x, n_tok, y); \
    } while (0)
        CU_DISPATCH_TYPE(w->type, LAUNCH)
#undef LAUNCH
        return cu_check_launch(cb, "matmul");
    }
    const unsigned grid = cu_blocks(n_out, MM_WARPS);
    switch (w->type) {
    case DF_TYPE_F32: mmv_any_kernel<DF_TYPE_F32><<<grid, MM_WARPS * 32, 0, cb->stream>>>(wd, row_bytes, n_in, n_out, x, n_tok, y); break;
    case DF_TYPE_F16: mmv_any_kernel<DF_TYPE_F16><<<grid, MM_WARPS * 32, 0, cb->stream>>>(wd, row_bytes, n_in, n_out, x, n_tok, y); break;
    case DF_TYPE_BF16: mmv_any_kernel<DF_TYPE_BF16><<<grid, MM_WARPS * 32, 0, cb->stream>>>(wd, row_bytes, n_in, n_out, x, n_tok, y); break;
    default:
        return df_fail(DF_ERR_INVALID, "matmul: %s: rows of %d %s elements are not whole blocks",
                       w->name ? w->name : "weight", n_in, df_type_name(w->type));
    }
    return cu_check_launch(cb, "matmul");
}

static df_status blas_status(cublasStatus_t s, const char *name) {
    if (s == CUBLAS_STATUS_SUCCESS) return DF_OK;
    return df_fail(DF_ERR_INVALID, "cuda matmul: %s: cuBLAS GEMM failed (status %d)", name, (int)s);
}

/* y [n_tok][n_out] = x [n_tok][n_in] W^T, column-major as cuBLAS sees it: C (n_out x n_tok,
 * ldc n_out) = op(A) B with A = W (n_in x rows, lda n_in, transposed) and B = x (n_in x n_tok). */
static df_status matmul_gemm(cu_backend *cb, const float *x, int n_tok, const df_weight *w, float *y) {
    const int n_in = (int)w->ne[0], n_out = (int)w->ne[1];
    const char *name = w->name ? w->name : "weight";
    const float one = 1.0f, zero = 0.0f;
    if (w->type == DF_TYPE_F32) {
        /* Exact f32: these are reference-grade weights (the transformers fixtures). */
        return blas_status(cublasGemmEx(cb->blas, CUBLAS_OP_T, CUBLAS_OP_N, n_out, n_tok, n_in, &one,
                                        w->data, CUDA_R_32F, n_in, x, CUDA_R_32F, n_in, &zero, y,
                                        CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT),
                           name);
    }
    if (n_in % 8)
        return df_fail(DF_ERR_INVALID, "matmul: %s: rows of %d elements cannot be dequantized", name, n_in);
    int64_t chunk = MM_CHUNK_ELEMS / n_in;
    if (chunk < 1) chunk = 1;
    if (chunk > n_out) chunk = n_out;
    void *buf;
    DF_TRY(cu_wscratch(cb, (size_t)chunk * (size_t)n_in * sizeof(float), "matmul", &buf));
    for (int64_t r0 = 0; r0 < n_out; r0 += chunk) {
        const int rows = (int)(n_out - r0 < chunk ? n_out - r0 : chunk);
        DF_TRY(cu_dequant_rows(cb, w, r0, rows, (float *)buf));
        DF_TRY(blas_status(cublasGemmEx(cb->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n_tok, n_in, &one, buf,
                                        CUDA_R_32F, n_in, x, CUDA_R_32F, n_in, &zero, y + r0, CUDA_R_32F,
                                        n_out, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
                           name));
    }
    return cu_check_launch(cb, "matmul (cuBLAS)");
}

/* The checks every matmul makes; row_bytes out. */
static df_status check_matmul(const float *x, int64_t n_tok, const df_weight *w, const float *y, size_t *row_bytes) {
    if (!x || !w || !w->data || !y) return df_fail(DF_ERR_INVALID, "matmul: x, w or y is NULL");
    const char *name = w->name ? w->name : "weight";
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    if (n_tok <= 0 || n_in <= 0 || n_out <= 0 || n_in > ((int64_t)1 << 30) || n_out > ((int64_t)1 << 30) ||
        n_tok > ((int64_t)1 << 24))
        return df_fail(DF_ERR_INVALID, "matmul: %s: shape x [%lld][%lld], W [%lld][%lld] is not valid", name,
                       (long long)n_tok, (long long)n_in, (long long)n_out, (long long)n_in);
    if (!cu_type_supported(w->type))
        return df_fail(DF_ERR_UNSUPPORTED, "matmul: %s: no CUDA kernel for weights of type %s", name,
                       df_type_name(w->type));
    if (!df_type_row_size(w->type, n_in, row_bytes))
        return df_fail(DF_ERR_INVALID, "matmul: %s: a row of %lld elements is not a whole number of %s blocks",
                       name, (long long)n_in, df_type_name(w->type));
    return DF_OK;
}

df_status cu_matmul(df_backend *be, const float *x, int64_t n_tok, const df_weight *w, float *y) {
    cu_backend *cb = cu_impl(be);
    size_t row_bytes;
    DF_TRY(check_matmul(x, n_tok, w, y, &row_bytes));
    const int64_t n_in = w->ne[0];
    DF_TRY(cu_enter(cb, "matmul"));
    if (n_tok <= DF_CUDA_SMALL_BATCH && cu_mmq_supported(cb, w))
        return cu_mmq(cb, x, (int)n_tok, w, row_bytes, y);
    if (n_tok <= DF_CUDA_SMALL_BATCH || (n_in % 8 && w->type != DF_TYPE_F32))
        return matmul_small(cb, x, (int)n_tok, w, row_bytes, y);
    return matmul_gemm(cb, x, (int)n_tok, w, y);
}

/* Weights that read the same x (q/k/v, gate/up, the GDN in-projections): the int8 path
 * quantizes x once for all of them and runs those of one type in one launch; anything else
 * is one cu_matmul each. Same results. */
enum { DF_MATMUL_MANY_MAX = 8 };
df_status cu_matmul_many(df_backend *be, const float *x, int64_t n_tok, int n, const df_weight *const *w,
                         float *const *y) {
    cu_backend *cb = cu_impl(be);
    bool shared = n_tok <= DF_CUDA_SMALL_BATCH && n > 0;
    for (int i = 0; i < n && shared; i++) {
        size_t row_bytes;
        DF_TRY(check_matmul(x, n_tok, w[i], y[i], &row_bytes));
        shared = cu_mmq_supported(cb, w[i]) && w[i]->ne[0] == w[0]->ne[0];
    }
    if (!shared) {
        for (int i = 0; i < n; i++) DF_TRY(cu_matmul(be, x, n_tok, w[i], y[i]));
        return DF_OK;
    }
    DF_TRY(cu_enter(cb, "matmul"));
    cu_mmq_act act;
    DF_TRY(cu_mmq_prepare(cb, x, (int)n_tok, (int)w[0]->ne[0], &act));
    for (int i = 0; i < n; i += DF_MATMUL_MANY_MAX) {
        const int k = n - i < DF_MATMUL_MANY_MAX ? n - i : DF_MATMUL_MANY_MAX;
        size_t row_bytes[DF_MATMUL_MANY_MAX];
        for (int j = 0; j < k; j++) df_type_row_size(w[i + j]->type, w[i + j]->ne[0], &row_bytes[j]);
        DF_TRY(cu_mmq_run(cb, &act, k, w + i, row_bytes, y + i));
    }
    return DF_OK;
}
