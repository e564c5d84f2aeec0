/* The portable versions of the inner loops, the run-time choice between them and the AVX2
 * ones, and the helpers every CPU kernel shares (view checks, task counts).
 *
 * The scalar loops keep 8 independent partial sums where they reduce, which both lets the
 * compiler vectorize them with SSE2 and makes their rounding close to the 8-lane AVX2 code. */
#include <stdatomic.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "quant/mdot.h"

/* ---- scalar loops ---- */

static float hsum8(const float acc[8]) {
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static float dot_f32_scalar(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
    float s = hsum8(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static float dot_f16_scalar(const df_fp16 *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += df_fp16_to_f32(a[i + l]) * b[i + l];
    float s = hsum8(acc);
    for (; i < n; i++) s += df_fp16_to_f32(a[i]) * b[i];
    return s;
}

static float dot_bf16_scalar(const df_bf16 *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += df_bf16_to_f32(a[i + l]) * b[i + l];
    float s = hsum8(acc);
    for (; i < n; i++) s += df_bf16_to_f32(a[i]) * b[i];
    return s;
}

static void axpy_f32_scalar(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void axpy_f16_scalar(float *y, float a, const df_fp16 *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * df_fp16_to_f32(x[i]);
}

static void attn_block_scalar(const float *q, int64_t d, float scale, bool f16, const void *kbase,
                              const void *vbase, const int64_t *off, int64_t nb, float *s, float *m, float *l,
                              float *o) {
    df_attn_block_ref(&df_cpu_kernels_scalar, q, d, scale, f16, kbase, vbase, off, nb, s, m, l, o);
}

static void scale_f32_scalar(float *y, float a, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= a;
}

static float sumsq_f32_scalar(const float *x, int64_t n) { return dot_f32_scalar(x, x, n); }

static void scale_mul_f32_scalar(float *y, const float *x, float s, const float *w, int64_t n) {
    if (w)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * s * w[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * s;
}

static void gemm_f32_scalar(int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                            int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        for (int64_t k = 0; k < K; k++) {
            const float a = alpha * A[i * lda + k];
            const float *b = B + k * ldb;
            for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
        }
    }
}

/* Columns of S are independent in a delta-rule step, so the step runs over blocks of
 * columns: a block of all dk rows (dk * 32 floats) stays in L1 between the read pass
 * (S^T k) and the update pass, and S streams through the cache once per token. */
void df_cpu_gdn_cols_scalar(float *S, int64_t dk, int64_t dv, int64_t j_begin, int64_t j_end,
                            const float *q, const float *k, const float *v, float decay,
                            float beta, float *o, void *cap, bool cap_f16) {
    enum { CB = 32 };
    for (int64_t j0 = j_begin; j0 < j_end; j0 += CB) {
        const int64_t nb = j_end - j0 < CB ? j_end - j0 : CB;
        float kv[CB] = {0}, ov[CB] = {0}, delta[CB];
        for (int64_t r = 0; r < dk; r++) {
            const float *row = S + r * dv + j0;
            const float kr = k[r];
            for (int64_t j = 0; j < nb; j++) kv[j] += kr * row[j];
        }
        for (int64_t j = 0; j < nb; j++) delta[j] = beta * (v[j0 + j] - decay * kv[j]);
        for (int64_t r = 0; r < dk; r++) {
            float *row = S + r * dv + j0;
            const float kr = k[r], qr = q[r];
            for (int64_t j = 0; j < nb; j++) {
                row[j] = decay * row[j] + kr * delta[j];
                ov[j] += qr * row[j];
            }
            if (cap) {
                if (cap_f16) {
                    df_fp16 *c = (df_fp16 *)cap + r * dv + j0;
                    for (int64_t j = 0; j < nb; j++) c[j] = df_f32_to_fp16(row[j]);
                } else {
                    memcpy((float *)cap + r * dv + j0, row, (size_t)nb * sizeof(float));
                }
            }
        }
        memcpy(o + j0, ov, (size_t)nb * sizeof(float));
    }
}

static void gdn_step_scalar(float *S, int64_t dk, int64_t dv, const float *q, const float *k,
                            const float *v, float decay, float beta, float *o, void *cap,
                            bool cap_f16) {
    df_cpu_gdn_cols_scalar(S, dk, dv, 0, dv, q, k, v, decay, beta, o, cap, cap_f16);
}

static void rank1_decay_scalar(float *S, int64_t dk, int64_t dv, const float *k, const float *u,
                               float decay, void *cap, bool cap_f16) {
    for (int64_t r = 0; r < dk; r++) {
        float *row = S + r * dv;
        const float kr = k[r];
        for (int64_t j = 0; j < dv; j++) row[j] = decay * row[j] + kr * u[j];
        if (!cap) continue;
        if (cap_f16) df_f32_to_fp16_row(row, (df_fp16 *)cap + r * dv, (size_t)dv);
        else memcpy((float *)cap + r * dv, row, (size_t)dv * sizeof(float));
    }
}

static void silu_mul_f32_scalar(float *y, const float *a, const float *b, int64_t n) {
    if (b)
        for (int64_t i = 0; i < n; i++) y[i] = df_siluf(a[i]) * b[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] = df_siluf(a[i]);
}

static void sigmoid_mul_f32_scalar(float *y, const float *a, const float *b, int64_t n) {
    if (b)
        for (int64_t i = 0; i < n; i++) y[i] = df_sigmoidf(a[i]) * b[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] = df_sigmoidf(a[i]);
}

static int64_t argmax_f32_scalar(const float *x, int64_t n) {
    int64_t best = -1;
    float bv = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        if (v != v) continue; /* NaN */
        if (best < 0 || v > bv) {
            best = i;
            bv = v;
        }
    }
    return best;
}

static void mm_tile_scalar(df_type wt, const void *w, size_t w_row_bytes, int nr, const float *x,
                           int64_t x_stride, int nt, int64_t n, float *y, int64_t y_stride) {
    for (int r = 0; r < nr; r++) {
        const void *wr = (const char *)w + (size_t)r * w_row_bytes;
        for (int t = 0; t < nt; t++) {
            const float *xt = x + t * x_stride;
            float v;
            switch (wt) {
            case DF_TYPE_F16: v = dot_f16_scalar(wr, xt, n); break;
            case DF_TYPE_BF16: v = dot_bf16_scalar(wr, xt, n); break;
            default: v = dot_f32_scalar(wr, xt, n); break;
            }
            y[t * y_stride + r] = v;
        }
    }
}

const df_cpu_kernels df_cpu_kernels_scalar = {
    .dot_f32 = dot_f32_scalar,
    .dot_f16 = dot_f16_scalar,
    .dot_bf16 = dot_bf16_scalar,
    .axpy_f32 = axpy_f32_scalar,
    .axpy_f16 = axpy_f16_scalar,
    .scale_f32 = scale_f32_scalar,
    .sumsq_f32 = sumsq_f32_scalar,
    .scale_mul_f32 = scale_mul_f32_scalar,
    .gemm_f32 = gemm_f32_scalar,
    .gdn_step = gdn_step_scalar,
    .rank1_decay = rank1_decay_scalar,
    .mm_tile = mm_tile_scalar,
    .silu_mul_f32 = silu_mul_f32_scalar,
    .sigmoid_mul_f32 = sigmoid_mul_f32_scalar,
    .argmax_f32 = argmax_f32_scalar,
    .attn_block = attn_block_scalar,
};

/* ---- the run-time choice ---- */

static atomic_int g_simd_level = -1; /* -1: not chosen yet */

#ifdef DF_CPU_HAVE_AVX2_BUILD
#include <cpuid.h>

/* AVX2, FMA and F16C in the CPU, and YMM state enabled by the OS (XCR0 bits 1 and 2). Read
 * from cpuid directly: clang's __builtin_cpu_supports does not know "f16c". */
static bool cpu_has_avx2_fma_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return false;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 6u) != 6u) return false;
    if (__get_cpuid_max(0, NULL) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    return b & (1u << 5);
}
#endif

df_cpu_simd df_cpu_simd_best(void) {
#ifdef DF_CPU_HAVE_AVX2_BUILD
    if (cpu_has_avx2_fma_f16c())
        return df_mdot_isa_supported(DF_MDOT_AVX512) ? DF_CPU_SIMD_AVX512 : DF_CPU_SIMD_AVX2;
#endif
    return DF_CPU_SIMD_SCALAR;
}

df_cpu_simd df_cpu_simd_get(void) {
    int level = atomic_load_explicit(&g_simd_level, memory_order_relaxed);
    if (level < 0) {
        level = (int)df_cpu_simd_best();
        atomic_store_explicit(&g_simd_level, level, memory_order_relaxed);
    }
    return (df_cpu_simd)level;
}

df_status df_cpu_simd_set(df_cpu_simd level) {
    if (level != DF_CPU_SIMD_SCALAR && level != DF_CPU_SIMD_AVX2 && level != DF_CPU_SIMD_AVX512)
        return df_fail(DF_ERR_INVALID, "cpu simd: unknown level %d", (int)level);
    if (level > df_cpu_simd_best())
        return df_fail(DF_ERR_UNSUPPORTED, "cpu simd: this CPU (or build) lacks %s",
                       level == DF_CPU_SIMD_AVX2 ? "AVX2+FMA+F16C" : "AVX-512 F/BW/VL/VNNI");
    atomic_store_explicit(&g_simd_level, (int)level, memory_order_relaxed);
    return DF_OK;
}

const char *df_cpu_simd_name(df_cpu_simd level) {
    switch (level) {
    case DF_CPU_SIMD_SCALAR: return "scalar";
    case DF_CPU_SIMD_AVX2: return "avx2";
    case DF_CPU_SIMD_AVX512: return "avx512";
    }
    return "unknown";
}

const df_cpu_kernels *df_cpu_kernels_get(void) {
#ifdef DF_CPU_HAVE_AVX2_BUILD
    /* the AVX-512 level differs in the quantized matmul (cpu_matmul.c) and the GDN step */
    const df_cpu_simd level = df_cpu_simd_get();
    if (level == DF_CPU_SIMD_AVX512) return &df_cpu_kernels_avx512;
    if (level == DF_CPU_SIMD_AVX2) return &df_cpu_kernels_avx2;
#endif
    return &df_cpu_kernels_scalar;
}

/* ---- shared helpers ---- */

df_cpu_heads df_cpu_heads_packed(float *data, int64_t n_tok, int64_t n_head, int64_t dim) {
    df_cpu_heads h = {data, n_tok, n_head, dim, n_head * dim, dim};
    return h;
}

/* Sizes stay below 2^31 per dimension so that no product of two of them can overflow. */
#define DF_CPU_DIM_MAX ((int64_t)1 << 31)

df_status df_cpu_check_heads(const char *kernel, const char *name, const df_cpu_heads *h) {
    if (!h || !h->data) return df_fail(DF_ERR_INVALID, "%s: %s is NULL", kernel, name);
    if (h->n_tok <= 0 || h->n_head <= 0 || h->dim <= 0 || h->n_tok > DF_CPU_DIM_MAX ||
        h->n_head > DF_CPU_DIM_MAX || h->dim > DF_CPU_DIM_MAX)
        return df_fail(DF_ERR_INVALID, "%s: %s has shape [%lld][%lld][%lld], expected positive sizes below 2^31",
                       kernel, name, (long long)h->n_tok, (long long)h->n_head, (long long)h->dim);
    if (h->head_stride < h->dim && h->n_head > 1)
        return df_fail(DF_ERR_INVALID, "%s: %s head stride %lld is smaller than its dim %lld", kernel,
                       name, (long long)h->head_stride, (long long)h->dim);
    if (h->n_tok > 1 && (h->tok_stride < 0 || h->tok_stride > DF_CPU_DIM_MAX * 64 ||
                         h->tok_stride < (h->n_head - 1) * h->head_stride + h->dim))
        return df_fail(DF_ERR_INVALID, "%s: %s token stride %lld does not fit %lld heads of stride %lld",
                       kernel, name, (long long)h->tok_stride, (long long)h->n_head,
                       (long long)h->head_stride);
    if (h->head_stride > DF_CPU_DIM_MAX)
        return df_fail(DF_ERR_INVALID, "%s: %s head stride %lld is too large", kernel, name,
                       (long long)h->head_stride);
    return DF_OK;
}

int df_cpu_task_count(df_pool *pool, int64_t items, int64_t cost_per_item) {
    const int n_threads = df_pool_size(pool);
    if (n_threads <= 1 || items <= 1) return 1;
    const double total = (double)items * (double)(cost_per_item > 0 ? cost_per_item : 1);
    if (total < 65536.0) return 1;
    /* at least ~32k operations per task, at most 4 tasks per thread */
    double by_work = total / 32768.0;
    int64_t n = (int64_t)n_threads * 4;
    if ((double)n > by_work) n = (int64_t)by_work;
    if (n > items) n = items;
    if (n < 1) n = 1;
    return (int)n;
}
