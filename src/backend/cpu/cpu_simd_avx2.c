/* AVX2 + FMA + F16C versions of the inner loops in cpu_simd.c. Every function carries a
 * target attribute instead of the file being built with -mavx2, so the library still runs
 * on CPUs without AVX2: these are only reached after df_cpu_simd_best() saw the features. */
#include "backend/cpu/cpu_internal.h"

#ifdef DF_CPU_HAVE_AVX2_BUILD

#include <immintrin.h>
#include <string.h>

#define DF_AVX2 __attribute__((target("avx2,fma,f16c")))

DF_AVX2 static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

DF_AVX2 static inline __m256 load_f16x8(const df_fp16 *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

DF_AVX2 static inline __m256 load_bf16x8(const df_bf16 *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

DF_AVX2 static float dot_f32_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

DF_AVX2 static float dot_f16_avx2(const df_fp16 *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_f16x8(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(load_f16x8(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_f16x8(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_f16x8(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_f16x8(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += df_fp16_to_f32(a[i]) * b[i];
    return s;
}

DF_AVX2 static float dot_bf16_avx2(const df_bf16 *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_bf16x8(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(load_bf16x8(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_bf16x8(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_bf16x8(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_bf16x8(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += df_bf16_to_f32(a[i]) * b[i];
    return s;
}

DF_AVX2 static void axpy_f32_avx2(float *y, float a, const float *x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

DF_AVX2 static void axpy_f16_avx2(float *y, float a, const df_fp16 *x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load_f16x8(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * df_fp16_to_f32(x[i]);
}

DF_AVX2 static void scale_f32_avx2(float *y, float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] *= a;
}

/* df_attn_block_ref with dot_*_avx2 and axpy_*_avx2: the scores, the maximum and the weights
 * exactly as there; then the weighted sum of V rows with the loops swapped (64 columns at a
 * time over all rows, in row order), which applies to each element the same fused
 * multiply-adds in the same order as one axpy per row, with the columns' sums in registers
 * instead of stored and loaded again for every row. */
DF_AVX2 static void attn_block_avx2(const float *q, int64_t d, float scale, bool f16, const void *kbase,
                                    const void *vbase, const int64_t *off, int64_t nb, float *s, float *m,
                                    float *l, float *o) {
    enum { MAX_ROWS = 256 };
    if (nb > MAX_ROWS) {
        df_attn_block_ref(&df_cpu_kernels_avx2, q, d, scale, f16, kbase, vbase, off, nb, s, m, l, o);
        return;
    }
    const df_fp16 *k16 = kbase, *v16 = vbase;
    const float *k32 = kbase, *v32 = vbase;
    float mb = -INFINITY;
    for (int64_t b = 0; b < nb; b++) {
        s[b] = (f16 ? dot_f16_avx2(k16 + off[b], q, d) : dot_f32_avx2(k32 + off[b], q, d)) * scale;
        if (s[b] > mb) mb = s[b];
    }
    if (mb > *m) {
        if (*l > 0.0f) {
            const float r = expf(*m - mb);
            scale_f32_avx2(o, r, d);
            *l *= r;
        }
        *m = mb;
    }
    float pw[MAX_ROWS];
    for (int64_t b = 0; b < nb; b++) {
        pw[b] = expf(s[b] - *m);
        *l += pw[b];
    }
    /* 64 columns at a time: eight independent chains of fused multiply-adds, one per 8
     * columns, in registers across the rows */
    int64_t i = 0;
    for (; i + 64 <= d; i += 64) {
        /* named, not an array: at -O2 an array of accumulators stays on the stack */
        __m256 a0 = _mm256_loadu_ps(o + i), a1 = _mm256_loadu_ps(o + i + 8), a2 = _mm256_loadu_ps(o + i + 16),
               a3 = _mm256_loadu_ps(o + i + 24), a4 = _mm256_loadu_ps(o + i + 32), a5 = _mm256_loadu_ps(o + i + 40),
               a6 = _mm256_loadu_ps(o + i + 48), a7 = _mm256_loadu_ps(o + i + 56);
#define DF_ATTN_ACC8(LOAD, base)                                    \
    do {                                                            \
        a0 = _mm256_fmadd_ps(p, LOAD((base)), a0);                  \
        a1 = _mm256_fmadd_ps(p, LOAD((base) + 8), a1);              \
        a2 = _mm256_fmadd_ps(p, LOAD((base) + 16), a2);             \
        a3 = _mm256_fmadd_ps(p, LOAD((base) + 24), a3);             \
        a4 = _mm256_fmadd_ps(p, LOAD((base) + 32), a4);             \
        a5 = _mm256_fmadd_ps(p, LOAD((base) + 40), a5);             \
        a6 = _mm256_fmadd_ps(p, LOAD((base) + 48), a6);             \
        a7 = _mm256_fmadd_ps(p, LOAD((base) + 56), a7);             \
    } while (0)
        if (f16)
            for (int64_t b = 0; b < nb; b++) {
                const __m256 p = _mm256_set1_ps(pw[b]);
                DF_ATTN_ACC8(load_f16x8, v16 + off[b] + i);
            }
        else
            for (int64_t b = 0; b < nb; b++) {
                const __m256 p = _mm256_set1_ps(pw[b]);
                DF_ATTN_ACC8(_mm256_loadu_ps, v32 + off[b] + i);
            }
#undef DF_ATTN_ACC8
        _mm256_storeu_ps(o + i, a0);
        _mm256_storeu_ps(o + i + 8, a1);
        _mm256_storeu_ps(o + i + 16, a2);
        _mm256_storeu_ps(o + i + 24, a3);
        _mm256_storeu_ps(o + i + 32, a4);
        _mm256_storeu_ps(o + i + 40, a5);
        _mm256_storeu_ps(o + i + 48, a6);
        _mm256_storeu_ps(o + i + 56, a7);
    }
    for (; i + 8 <= d; i += 8) {
        __m256 acc = _mm256_loadu_ps(o + i);
        for (int64_t b = 0; b < nb; b++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(pw[b]),
                                  f16 ? load_f16x8(v16 + off[b] + i) : _mm256_loadu_ps(v32 + off[b] + i), acc);
        _mm256_storeu_ps(o + i, acc);
    }
    /* the tail columns: one axpy's scalar tail per row, in row order */
    if (i < d) {
        for (int64_t b = 0; b < nb; b++) {
            if (f16) axpy_f16_avx2(o + i, pw[b], v16 + off[b] + i, d - i);
            else axpy_f32_avx2(o + i, pw[b], v32 + off[b] + i, d - i);
        }
    }
}

DF_AVX2 static float sumsq_f32_avx2(const float *x, int64_t n) { return dot_f32_avx2(x, x, n); }

DF_AVX2 static void scale_mul_f32_avx2(float *y, const float *x, float s, const float *w, int64_t n) {
    const __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    if (w) {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs),
                                                  _mm256_loadu_ps(w + i)));
        for (; i < n; i++) y[i] = x[i] * s * w[i];
    } else {
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
        for (; i < n; i++) y[i] = x[i] * s;
    }
}

/* ---- small GEMM: C += alpha A B, register blocks of 4 rows x 16 columns ---- */

DF_AVX2 static void gemm_4x16(int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                              int64_t ldb, float *C, int64_t ldc) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00;
    __m256 c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    for (int64_t k = 0; k < K; k++) {
        const __m256 b0 = _mm256_loadu_ps(B + k * ldb), b1 = _mm256_loadu_ps(B + k * ldb + 8);
        __m256 a = _mm256_broadcast_ss(A + k);
        c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(A + lda + k);
        c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(A + 2 * lda + k);
        c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(A + 3 * lda + k);
        c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
    }
    const __m256 va = _mm256_set1_ps(alpha);
    __m256 acc[8] = {c00, c01, c10, c11, c20, c21, c30, c31};
    for (int r = 0; r < 4; r++) {
        float *c = C + r * ldc;
        _mm256_storeu_ps(c, _mm256_fmadd_ps(va, acc[2 * r], _mm256_loadu_ps(c)));
        _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(va, acc[2 * r + 1], _mm256_loadu_ps(c + 8)));
    }
}

DF_AVX2 static void gemm_1x16(int64_t K, float alpha, const float *A, const float *B, int64_t ldb,
                              float *C) {
    __m256 c0 = _mm256_setzero_ps(), c1 = c0;
    for (int64_t k = 0; k < K; k++) {
        const __m256 a = _mm256_broadcast_ss(A + k);
        c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(B + k * ldb), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(B + k * ldb + 8), c1);
    }
    const __m256 va = _mm256_set1_ps(alpha);
    _mm256_storeu_ps(C, _mm256_fmadd_ps(va, c0, _mm256_loadu_ps(C)));
    _mm256_storeu_ps(C + 8, _mm256_fmadd_ps(va, c1, _mm256_loadu_ps(C + 8)));
}

DF_AVX2 static void gemm_1x8(int64_t K, float alpha, const float *A, const float *B, int64_t ldb,
                             float *C) {
    __m256 c0 = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k++)
        c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(A + k), _mm256_loadu_ps(B + k * ldb), c0);
    _mm256_storeu_ps(C, _mm256_fmadd_ps(_mm256_set1_ps(alpha), c0, _mm256_loadu_ps(C)));
}

DF_AVX2 static void gemm_f32_avx2(int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                                  int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc) {
    const int64_t N16 = N / 16 * 16, N8 = N / 8 * 8;
    int64_t i = 0;
    for (; i + 4 <= M; i += 4)
        for (int64_t j = 0; j < N16; j += 16)
            gemm_4x16(K, alpha, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc);
    for (; i < M; i++)
        for (int64_t j = 0; j < N16; j += 16) gemm_1x16(K, alpha, A + i * lda, B + j, ldb, C + i * ldc + j);
    for (i = 0; i < M; i++) {
        if (N8 > N16) gemm_1x8(K, alpha, A + i * lda, B + N16, ldb, C + i * ldc + N16);
        for (int64_t j = N8; j < N; j++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) s += A[i * lda + k] * B[k * ldb + j];
            C[i * ldc + j] += alpha * s;
        }
    }
}

/* ---- one GDN token for one head: blocks of 16 columns of S, kept in registers ---- */

/* Captured states are written once per token and read back only on a rollback, long after:
 * f32 captures with aligned rows go out with non-temporal stores, which skip reading the
 * destination lines into the cache first (a 16-token verify of a 48-head layer writes 50 MB
 * of f32 state; measured on a 16-core Xeon: 0.89 -> 0.61 ms per layer). Not f16 captures:
 * the step writes 16 halves (32 bytes) of a row at a time, and non-temporal partial lines
 * were 8x slower than plain stores. A store fence at the end of each kernel call orders the
 * streamed lines before the results are handed to another thread. */
static inline bool cap_streamable(const void *cap, int64_t dv, bool cap_f16) {
    return !cap_f16 && (uintptr_t)cap % 32 == 0 && dv % 8 == 0;
}

DF_AVX2 static inline void store_cap8(void *cap, bool cap_f16, bool nt, int64_t off, __m256 s) {
    if (cap_f16) {
        __m128i h = _mm256_cvtps_ph(s, _MM_FROUND_TO_NEAREST_INT);
        if (nt) _mm_stream_si128((__m128i *)((df_fp16 *)cap + off), h);
        else _mm_storeu_si128((__m128i *)((df_fp16 *)cap + off), h);
    } else {
        if (nt) _mm256_stream_ps((float *)cap + off, s);
        else _mm256_storeu_ps((float *)cap + off, s);
    }
}

DF_AVX2 static inline void store_cap16(void *cap, bool cap_f16, bool nt, int64_t off, __m256 s0, __m256 s1) {
    store_cap8(cap, cap_f16, nt, off, s0);
    store_cap8(cap, cap_f16, nt, off + 8, s1);
}

DF_AVX2 static void gdn_step_avx2(float *S, int64_t dk, int64_t dv, const float *q, const float *k,
                                  const float *v, float decay, float beta, float *o, void *cap,
                                  bool cap_f16) {
    const int64_t dv16 = dv / 16 * 16;
    const __m256 vdecay = _mm256_set1_ps(decay), vbeta = _mm256_set1_ps(beta);
    const bool nt = cap && cap_streamable(cap, dv, cap_f16);
    for (int64_t j = 0; j < dv16; j += 16) {
        /* read pass: kv = S^T k over this block, 4 rows at a time for independent chains */
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        int64_t r = 0;
        for (; r + 4 <= dk; r += 4) {
            const float *row = S + r * dv + j;
            __m256 kr = _mm256_broadcast_ss(k + r);
            a0 = _mm256_fmadd_ps(kr, _mm256_loadu_ps(row), a0);
            a1 = _mm256_fmadd_ps(kr, _mm256_loadu_ps(row + 8), a1);
            kr = _mm256_broadcast_ss(k + r + 1);
            b0 = _mm256_fmadd_ps(kr, _mm256_loadu_ps(row + dv), b0);
            b1 = _mm256_fmadd_ps(kr, _mm256_loadu_ps(row + dv + 8), b1);
            kr = _mm256_broadcast_ss(k + r + 2);
            c0 = _mm256_fmadd_ps(kr, _mm256_loadu_ps(row + 2 * dv), c0);
            c1 = _mm256_fmadd_ps(kr, _mm256_loadu_ps(row + 2 * dv + 8), c1);
            kr = _mm256_broadcast_ss(k + r + 3);
            d0 = _mm256_fmadd_ps(kr, _mm256_loadu_ps(row + 3 * dv), d0);
            d1 = _mm256_fmadd_ps(kr, _mm256_loadu_ps(row + 3 * dv + 8), d1);
        }
        for (; r < dk; r++) {
            const float *row = S + r * dv + j;
            const __m256 kr = _mm256_broadcast_ss(k + r);
            a0 = _mm256_fmadd_ps(kr, _mm256_loadu_ps(row), a0);
            a1 = _mm256_fmadd_ps(kr, _mm256_loadu_ps(row + 8), a1);
        }
        const __m256 kv0 = _mm256_add_ps(_mm256_add_ps(a0, b0), _mm256_add_ps(c0, d0));
        const __m256 kv1 = _mm256_add_ps(_mm256_add_ps(a1, b1), _mm256_add_ps(c1, d1));
        /* delta = beta * (v - decay * kv) */
        const __m256 del0 = _mm256_mul_ps(vbeta, _mm256_fnmadd_ps(vdecay, kv0, _mm256_loadu_ps(v + j)));
        const __m256 del1 = _mm256_mul_ps(vbeta, _mm256_fnmadd_ps(vdecay, kv1, _mm256_loadu_ps(v + j + 8)));
        /* update pass: S = decay S + k delta^T; o += q_r S_r, two rows at a time */
        __m256 o0 = _mm256_setzero_ps(), o1 = o0, p0 = o0, p1 = o0;
        for (r = 0; r + 2 <= dk; r += 2) {
            float *row = S + r * dv + j;
            __m256 s0 = _mm256_fmadd_ps(_mm256_broadcast_ss(k + r), del0, _mm256_mul_ps(vdecay, _mm256_loadu_ps(row)));
            __m256 s1 = _mm256_fmadd_ps(_mm256_broadcast_ss(k + r), del1, _mm256_mul_ps(vdecay, _mm256_loadu_ps(row + 8)));
            _mm256_storeu_ps(row, s0);
            _mm256_storeu_ps(row + 8, s1);
            __m256 qr = _mm256_broadcast_ss(q + r);
            o0 = _mm256_fmadd_ps(qr, s0, o0);
            o1 = _mm256_fmadd_ps(qr, s1, o1);
            if (cap) store_cap16(cap, cap_f16, nt, r * dv + j, s0, s1);
            row += dv;
            s0 = _mm256_fmadd_ps(_mm256_broadcast_ss(k + r + 1), del0, _mm256_mul_ps(vdecay, _mm256_loadu_ps(row)));
            s1 = _mm256_fmadd_ps(_mm256_broadcast_ss(k + r + 1), del1, _mm256_mul_ps(vdecay, _mm256_loadu_ps(row + 8)));
            _mm256_storeu_ps(row, s0);
            _mm256_storeu_ps(row + 8, s1);
            qr = _mm256_broadcast_ss(q + r + 1);
            p0 = _mm256_fmadd_ps(qr, s0, p0);
            p1 = _mm256_fmadd_ps(qr, s1, p1);
            if (cap) store_cap16(cap, cap_f16, nt, (r + 1) * dv + j, s0, s1);
        }
        for (; r < dk; r++) {
            float *row = S + r * dv + j;
            const __m256 s0 = _mm256_fmadd_ps(_mm256_broadcast_ss(k + r), del0, _mm256_mul_ps(vdecay, _mm256_loadu_ps(row)));
            const __m256 s1 = _mm256_fmadd_ps(_mm256_broadcast_ss(k + r), del1, _mm256_mul_ps(vdecay, _mm256_loadu_ps(row + 8)));
            _mm256_storeu_ps(row, s0);
            _mm256_storeu_ps(row + 8, s1);
            const __m256 qr = _mm256_broadcast_ss(q + r);
            o0 = _mm256_fmadd_ps(qr, s0, o0);
            o1 = _mm256_fmadd_ps(qr, s1, o1);
            if (cap) store_cap16(cap, cap_f16, nt, r * dv + j, s0, s1);
        }
        _mm256_storeu_ps(o + j, _mm256_add_ps(o0, p0));
        _mm256_storeu_ps(o + j + 8, _mm256_add_ps(o1, p1));
    }
    if (dv16 < dv) df_cpu_gdn_cols_scalar(S, dk, dv, dv16, dv, q, k, v, decay, beta, o, cap, cap_f16);
    if (nt) _mm_sfence();
}

DF_AVX2 static void rank1_decay_avx2(float *S, int64_t dk, int64_t dv, const float *k, const float *u,
                                     float decay, void *cap, bool cap_f16) {
    const __m256 vdecay = _mm256_set1_ps(decay);
    const bool nt = cap && cap_streamable(cap, dv, cap_f16);
    for (int64_t r = 0; r < dk; r++) {
        float *row = S + r * dv;
        const __m256 kr = _mm256_broadcast_ss(k + r);
        int64_t j = 0;
        for (; j + 8 <= dv; j += 8) {
            const __m256 s = _mm256_fmadd_ps(kr, _mm256_loadu_ps(u + j), _mm256_mul_ps(vdecay, _mm256_loadu_ps(row + j)));
            _mm256_storeu_ps(row + j, s);
            if (cap) store_cap8(cap, cap_f16, nt, r * dv + j, s);
        }
        for (; j < dv; j++) {
            row[j] = decay * row[j] + k[r] * u[j];
            if (!cap) continue;
            if (cap_f16) ((df_fp16 *)cap)[r * dv + j] = df_f32_to_fp16(row[j]);
            else ((float *)cap)[r * dv + j] = row[j];
        }
    }
    if (nt) _mm_sfence();
}

/* ---- float-weight matmul tiles ---- */

/* 8 weights of row p starting at i, as floats; kind is a compile-time constant at every call. */
DF_AVX2 static inline __attribute__((always_inline)) __m256 load_w8(int kind, const char *p, int64_t i) {
    if (kind == DF_TYPE_F16) return load_f16x8((const df_fp16 *)p + i);
    if (kind == DF_TYPE_BF16) return load_bf16x8((const df_bf16 *)p + i);
    return _mm256_loadu_ps((const float *)p + i);
}

DF_AVX2 static inline __attribute__((always_inline)) float load_w1(int kind, const char *p, int64_t i) {
    if (kind == DF_TYPE_F16) return df_fp16_to_f32(((const df_fp16 *)p)[i]);
    if (kind == DF_TYPE_BF16) return df_bf16_to_f32(((const df_bf16 *)p)[i]);
    return ((const float *)p)[i];
}

/* The tail of one (row, token) pair: its lanes summed, then the last n % 8 elements. Every
 * tile shape ends each pair through this, so a pair's arithmetic is the same in all shapes:
 * one 8-lane FMA chain over i = 0, 8, 16, ..., then this. */
DF_AVX2 static inline __attribute__((always_inline)) float pair_finish(int kind, __m256 acc, const char *w,
                                                                       const float *x, int64_t i, int64_t n) {
    float sum = hsum256(acc);
    for (; i < n; i++) sum += load_w1(kind, w, i) * x[i];
    return sum;
}

/* 4 rows x 2 tokens: eight independent chains; each W vector is loaded and converted once
 * for both tokens, each x vector once for four rows. */
DF_AVX2 static inline __attribute__((always_inline)) void tile_4x2(int kind, const char *w, size_t wsb,
                                                                   const float *x, int64_t xs, int64_t n,
                                                                   float *y, int64_t ys) {
    const char *w0 = w, *w1 = w + wsb, *w2 = w + 2 * wsb, *w3 = w + 3 * wsb;
    const float *x0 = x, *x1 = x + xs;
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v0 = _mm256_loadu_ps(x0 + i), v1 = _mm256_loadu_ps(x1 + i);
        __m256 wv = load_w8(kind, w0, i);
        a00 = _mm256_fmadd_ps(wv, v0, a00); a01 = _mm256_fmadd_ps(wv, v1, a01);
        wv = load_w8(kind, w1, i);
        a10 = _mm256_fmadd_ps(wv, v0, a10); a11 = _mm256_fmadd_ps(wv, v1, a11);
        wv = load_w8(kind, w2, i);
        a20 = _mm256_fmadd_ps(wv, v0, a20); a21 = _mm256_fmadd_ps(wv, v1, a21);
        wv = load_w8(kind, w3, i);
        a30 = _mm256_fmadd_ps(wv, v0, a30); a31 = _mm256_fmadd_ps(wv, v1, a31);
    }
    y[0] = pair_finish(kind, a00, w0, x0, i, n); y[ys] = pair_finish(kind, a01, w0, x1, i, n);
    y[1] = pair_finish(kind, a10, w1, x0, i, n); y[ys + 1] = pair_finish(kind, a11, w1, x1, i, n);
    y[2] = pair_finish(kind, a20, w2, x0, i, n); y[ys + 2] = pair_finish(kind, a21, w2, x1, i, n);
    y[3] = pair_finish(kind, a30, w3, x0, i, n); y[ys + 3] = pair_finish(kind, a31, w3, x1, i, n);
}

/* 4 rows x 1 token (decode): four chains. */
DF_AVX2 static inline __attribute__((always_inline)) void tile_4x1(int kind, const char *w, size_t wsb,
                                                                   const float *x, int64_t n, float *y) {
    const char *w0 = w, *w1 = w + wsb, *w2 = w + 2 * wsb, *w3 = w + 3 * wsb;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(load_w8(kind, w0, i), v, a0);
        a1 = _mm256_fmadd_ps(load_w8(kind, w1, i), v, a1);
        a2 = _mm256_fmadd_ps(load_w8(kind, w2, i), v, a2);
        a3 = _mm256_fmadd_ps(load_w8(kind, w3, i), v, a3);
    }
    y[0] = pair_finish(kind, a0, w0, x, i, n);
    y[1] = pair_finish(kind, a1, w1, x, i, n);
    y[2] = pair_finish(kind, a2, w2, x, i, n);
    y[3] = pair_finish(kind, a3, w3, x, i, n);
}

/* 1 row x 1 token: the leftovers. */
DF_AVX2 static inline __attribute__((always_inline)) float tile_1x1(int kind, const char *w, const float *x,
                                                                    int64_t n) {
    __m256 a = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) a = _mm256_fmadd_ps(load_w8(kind, w, i), _mm256_loadu_ps(x + i), a);
    return pair_finish(kind, a, w, x, i, n);
}

#define MM_TILE_FOR_KIND(KIND)                                                                  \
    do {                                                                                        \
        if (nr == 4 && nt == 2) tile_4x2(KIND, wb, wsb, x, xs, n, y, ys);                       \
        else if (nr == 4) tile_4x1(KIND, wb, wsb, x, n, y);                                     \
        else                                                                                    \
            for (int r = 0; r < nr; r++)                                                        \
                for (int t = 0; t < nt; t++)                                                    \
                    y[t * ys + r] = tile_1x1(KIND, wb + (size_t)r * wsb, x + t * xs, n);        \
    } while (0)

DF_AVX2 static void mm_tile_avx2(df_type wt, const void *w, size_t wsb, int nr, const float *x,
                                 int64_t xs, int nt, int64_t n, float *y, int64_t ys) {
    const char *wb = w;
    switch (wt) {
    case DF_TYPE_F16: MM_TILE_FOR_KIND(DF_TYPE_F16); break;
    case DF_TYPE_BF16: MM_TILE_FOR_KIND(DF_TYPE_BF16); break;
    default: MM_TILE_FOR_KIND(DF_TYPE_F32); break;
    }
}

/* ---- activations: e^x, SiLU and sigmoid, 8 floats at a time ---- */

/* e^x by Cephes's expf: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two parts so that
 * n ln2 is exact), e^r by a degree-6 polynomial, 2^n from exponent bits; about 1 ulp.
 * Below ln(2^-126) the result is 0 (no denormals), above ln(FLT_MAX) +inf, NaN stays NaN:
 * what SiLU and sigmoid need of it. */
DF_AVX2 static inline __m256 exp256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654475f), hi = _mm256_set1_ps(88.72283905f);
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    /* n <= 127 keeps 2^n a normal float; e^r then reaches 2 at the top of the range */
    const __m256 n = _mm256_min_ps(_mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                   _mm256_set1_ps(127.0f));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 er = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(er, _mm256_castsi256_ps(bits));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/* sigmoid (silu false) or silu of 8 floats, times m */
DF_AVX2 static inline __m256 act256(bool silu, __m256 a, __m256 m) {
    const __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f), exp256(_mm256_sub_ps(_mm256_setzero_ps(), a)));
    const __m256 v = _mm256_div_ps(silu ? a : _mm256_set1_ps(1.0f), den);
    return _mm256_mul_ps(v, m);
}

/* The tail (n % 8 elements) goes through the same vector code from a padded copy, so an
 * element's result does not depend on where the array ends. Multiplying by 1 when b is NULL
 * is exact. */
DF_AVX2 static inline __attribute__((always_inline)) void act_f32(bool silu, float *y, const float *a,
                                                                  const float *b, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, act256(silu, _mm256_loadu_ps(a + i), b ? _mm256_loadu_ps(b + i) : one));
    if (i == n) return;
    float ta[8] = {0}, tb[8] = {1, 1, 1, 1, 1, 1, 1, 1}, ty[8];
    memcpy(ta, a + i, (size_t)(n - i) * sizeof(float));
    if (b) memcpy(tb, b + i, (size_t)(n - i) * sizeof(float));
    _mm256_storeu_ps(ty, act256(silu, _mm256_loadu_ps(ta), _mm256_loadu_ps(tb)));
    memcpy(y + i, ty, (size_t)(n - i) * sizeof(float));
}

DF_AVX2 static void silu_mul_f32_avx2(float *y, const float *a, const float *b, int64_t n) {
    act_f32(true, y, a, b, n);
}

DF_AVX2 static void sigmoid_mul_f32_avx2(float *y, const float *a, const float *b, int64_t n) {
    act_f32(false, y, a, b, n);
}

/* ---- argmax ---- */

/* Two passes: the largest value (NaN lanes drop out: vmaxps returns its second operand, the
 * running maximum), then the first element equal to it. Equal to the scalar scan, including
 * -0 against +0 (they compare equal, and the scan keeps the first of equal values) and -inf
 * rows; -1 when nothing equals the maximum, i.e. every element is NaN. */
DF_AVX2 static int64_t argmax_f32_avx2(const float *x, int64_t n) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
    }
    float lanes[8], mx = -INFINITY;
    _mm256_storeu_ps(lanes, _mm256_max_ps(m0, m1));
    for (int k = 0; k < 8; k++) mx = lanes[k] > mx ? lanes[k] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    const __m256 vm = _mm256_set1_ps(mx);
    for (i = 0; i + 8 <= n; i += 8) {
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), vm, _CMP_EQ_OQ));
        if (hit) return i + __builtin_ctz((unsigned)hit);
    }
    for (; i < n; i++)
        if (x[i] == mx) return i;
    return -1;
}

const df_cpu_kernels df_cpu_kernels_avx2 = {
    .dot_f32 = dot_f32_avx2,
    .dot_f16 = dot_f16_avx2,
    .dot_bf16 = dot_bf16_avx2,
    .axpy_f32 = axpy_f32_avx2,
    .axpy_f16 = axpy_f16_avx2,
    .scale_f32 = scale_f32_avx2,
    .sumsq_f32 = sumsq_f32_avx2,
    .scale_mul_f32 = scale_mul_f32_avx2,
    .gemm_f32 = gemm_f32_avx2,
    .gdn_step = gdn_step_avx2,
    .rank1_decay = rank1_decay_avx2,
    .mm_tile = mm_tile_avx2,
    .silu_mul_f32 = silu_mul_f32_avx2,
    .sigmoid_mul_f32 = sigmoid_mul_f32_avx2,
    .argmax_f32 = argmax_f32_avx2,
    .attn_block = attn_block_avx2,
};

const df_cpu_kernels df_cpu_kernels_avx512 = {
    .dot_f32 = dot_f32_avx2,
    .dot_f16 = dot_f16_avx2,
    .dot_bf16 = dot_bf16_avx2,
    .axpy_f32 = axpy_f32_avx2,
    .axpy_f16 = axpy_f16_avx2,
    .scale_f32 = scale_f32_avx2,
    .sumsq_f32 = sumsq_f32_avx2,
    .scale_mul_f32 = scale_mul_f32_avx2,
    .gemm_f32 = gemm_f32_avx2,
    .gdn_step = df_cpu_gdn_step_avx512,
    .rank1_decay = rank1_decay_avx2,
    .mm_tile = mm_tile_avx2,
    .silu_mul_f32 = df_cpu_silu_mul_f32_avx512,
    .sigmoid_mul_f32 = df_cpu_sigmoid_mul_f32_avx512,
    .argmax_f32 = argmax_f32_avx2,
    .attn_block = attn_block_avx2,
};

#endif /* DF_CPU_HAVE_AVX2_BUILD */
