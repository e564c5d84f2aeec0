/* AVX2+FMA dot products for the hottest weight types. Each function is compiled for AVX2
 * through a target attribute (the rest of the library stays baseline x86-64) and is only
 * installed in the traits table when the running CPU has AVX2, FMA and F16C; types.c decides.
 * Results match the scalar kernels up to float rounding: every integer inner sum is exact in
 * both, only the order of the float accumulation differs.
 *
 * The int8 products use the usual trick: _mm256_maddubs_epi16 multiplies unsigned by signed
 * bytes, so for signed x we feed |x| and y carrying x's sign (_mm256_sign_epi8). Quants of
 * -128 would not survive that (-(-128) wraps); no quantizer emits them (Q8_0 and Q8_K clamp to
 * +-127) and a hostile file could only make its own dot product wrong, never unsafe. */
#include "quant/kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>
#include <immintrin.h>

#include "quant/blocks.h"

#define DF_AVX2 __attribute__((target("avx2,fma,f16c")))

bool df_cpu_has_avx2_fma(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    return (c & (1u << 29)) != 0; /* F16C */
}

/* fp16 -> f32 in one instruction (exact, like df_fp16_to_f32). */
DF_AVX2 static inline float h2f(df_fp16 h) { return _cvtsh_ss(h); }

DF_AVX2 static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Sum over 32 signed bytes of x*y, as 8 int32 lanes. */
DF_AVX2 static inline __m256i dot_i8_32(__m256i x, __m256i y) {
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* Asks for one block of a weight row that is streamed from memory, some way ahead of use
 * (prefetches of addresses past the row are harmless: they never fault). */
DF_AVX2 static inline void prefetch_ahead(const void *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) _mm_prefetch((const char *)p + off, _MM_HINT_T0);
}

/* Two 128-bit halves into one 256-bit register (lo in the low lane). */
DF_AVX2 static inline __m256i join128(__m128i lo, __m128i hi) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* ---- float types ------------------------------------------------------------------------ */

DF_AVX2 float df_dot_f32_f32_avx2(const void *vx, const void *vy, int64_t n) {
    const float *x = vx, *y = vy;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8 * k), _mm256_loadu_ps(y + i + 8 * k), acc[k]);
    for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc[0]);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++) sum += x[i] * y[i];
    return sum;
}

DF_AVX2 float df_dot_f16_f32_avx2(const void *vx, const void *vy, int64_t n) {
    const df_fp16 *x = vx;
    const float *y = vy;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) {
            const __m256 xf = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 8 * k)));
            acc[k] = _mm256_fmadd_ps(xf, _mm256_loadu_ps(y + i + 8 * k), acc[k]);
        }
    for (; i + 8 <= n; i += 8) {
        const __m256 xf = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        acc[0] = _mm256_fmadd_ps(xf, _mm256_loadu_ps(y + i), acc[0]);
    }
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++) sum += h2f(x[i]) * y[i];
    return sum;
}

/* ---- legacy types ----------------------------------------------------------------------- */

DF_AVX2 float df_dot_q8_0_q8_0_avx2(const void *vx, const void *vy, int64_t n) {
    const df_block_q8_0 *x = vx;
    const df_block_q8_0 *y = vy;
    /* Four independent accumulators: one chain of FMAs would wait on its own latency every
     * block, and decode is meant to be limited by memory, not by that chain. */
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const int64_t nb = n / DF_QK8_0;
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        /* The weight row streams from memory once; ask for it ~2 KiB ahead of use (measured
         * on a 2-core VM: decode went from ~40% to ~55-75% of the read bandwidth). */
        prefetch_ahead(x + i + 64, 4 * sizeof x[i]);
        for (int k = 0; k < 4; k++) {
            const __m256i qx = _mm256_loadu_si256((const __m256i *)x[i + k].qs);
            const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i + k].qs);
            const __m256 d = _mm256_set1_ps(h2f(x[i + k].d) * h2f(y[i + k].d));
            acc[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_32(qx, qy)), acc[k]);
        }
    }
    for (; i < nb; i++) {
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[i].qs);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
        acc[0] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_32(qx, qy)), acc[0]);
    }
    return hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

DF_AVX2 float df_dot_q4_0_q8_0_avx2(const void *vx, const void *vy, int64_t n) {
    const df_block_q4_0 *x = vx;
    const df_block_q8_0 *y = vy;
    const __m256i low4 = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / DF_QK4_0; i++) {
        /* low nibbles are elements 0..15, high nibbles 16..31 */
        const __m128i packed = _mm_loadu_si128((const __m128i *)x[i].qs);
        __m256i qx = join128(packed, _mm_srli_epi16(packed, 4));
        qx = _mm256_sub_epi8(_mm256_and_si256(qx, low4), eight);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_32(qx, qy)), acc);
    }
    return hsum_ps(acc);
}

/* ---- K-quants ----------------------------------------------------------------------------- */

/* Q4_K and Q5_K share everything but the fifth bit: qh == NULL means Q4_K. For each 64-element
 * chunk c, the low nibbles (sub-block 2c) and high nibbles (sub-block 2c+1) are multiplied
 * with the activations as unsigned x signed bytes, then weighted by their 6-bit scales. The
 * mins go through bsums. */
DF_AVX2 static inline __m256i dot_q45_K_block(const uint8_t *scales, const uint8_t *qs,
                                              const uint8_t *qh, const df_block_q8_K *y, int *summ) {
    uint8_t sc[8], mn[8];
    int m = 0;
    for (int j = 0; j < 8; j++) {
        df_k4_scale_min(scales, j, &sc[j], &mn[j]);
        m += mn[j] * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    *summ = m;
    const __m256i low4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    const __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i sumi = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        const __m256i packed = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(packed, low4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
        if (qh) {
            /* bit 2c (low) / 2c+1 (high) of each qh byte becomes the quant's bit 4 */
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c + 1), one), 4));
        }
        const __m256i ylo = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c));
        const __m256i yhi = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c + 32));
        const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ylo), _mm256_set1_epi16(sc[2 * c]));
        const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yhi), _mm256_set1_epi16(sc[2 * c + 1]));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(plo, phi));
    }
    return sumi;
}

/* Q4_K and Q5_K over a row: each super-block's integer sums (exact) are scaled and added in
 * vector form; one horizontal sum at the end instead of one per 256 weights. */
DF_AVX2 static inline float dot_q45_K_row(const void *vx, const void *vy, int64_t n, bool five) {
    const df_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / DF_QK_K; i++) {
        df_fp16 dh, dminh;
        const uint8_t *scales, *qs, *qh = NULL;
        if (five) {
            const df_block_q5_K *x = (const df_block_q5_K *)vx + i;
            prefetch_ahead(x + 8, sizeof *x);
            dh = x->d, dminh = x->dmin, scales = x->scales, qs = x->qs, qh = x->qh;
        } else {
            const df_block_q4_K *x = (const df_block_q4_K *)vx + i;
            prefetch_ahead(x + 8, sizeof *x);
            dh = x->d, dminh = x->dmin, scales = x->scales, qs = x->qs;
        }
        int summ;
        const __m256i sumi = dot_q45_K_block(scales, qs, qh, &y[i], &summ);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(dh)), _mm256_cvtepi32_ps(sumi), acc);
        mins += y[i].d * h2f(dminh) * (float)summ;
    }
    return hsum_ps(acc) - mins;
}

DF_AVX2 float df_dot_q4_K_q8_K_avx2(const void *vx, const void *vy, int64_t n) {
    return dot_q45_K_row(vx, vy, n, false);
}

DF_AVX2 float df_dot_q5_K_q8_K_avx2(const void *vx, const void *vy, int64_t n) {
    return dot_q45_K_row(vx, vy, n, true);
}

DF_AVX2 float df_dot_q6_K_q8_K_avx2(const void *vx, const void *vy, int64_t n) {
    const df_block_q6_K *x = vx;
    const df_block_q8_K *y = vy;
    const __m256i low4 = _mm256_set1_epi8(15), low2 = _mm256_set1_epi8(3);
    /* Per super-block: exact integer sums, scaled in vector form; the -32 offset's part
     * (bias) in scalar. One horizontal sum per row. */
    __m256 acc = _mm256_setzero_ps();
    float offset = 0.0f;
    for (int64_t i = 0; i < n / DF_QK_K; i++) {
        prefetch_ahead(x + i + 8, sizeof x[i]);
        const int8_t *sc = x[i].scales;
        int bias = 0;
        for (int j = 0; j < 16; j++) bias += sc[j] * y[i].bsums[j];
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qhp = x[i].qh + 32 * h;
            const int8_t *qy = y[i].qs + 128 * h;
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)qhp);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_slli_epi16(_mm256_and_si256(hb, low2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, low4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), low2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), low2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), low2), 4));
            for (int k = 0; k < 4; k++) {
                const __m256i yk = _mm256_loadu_si256((const __m256i *)(qy + 32 * k));
                const __m256i scv = join128(_mm_set1_epi16(sc[8 * h + 2 * k]), _mm_set1_epi16(sc[8 * h + 2 * k + 1]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], yk), scv));
            }
        }
        const float d = y[i].d * h2f(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        offset += d * (float)(32 * bias);
    }
    return hsum_ps(acc) - offset;
}

#else /* not x86: never selected, but keep the symbols so tests and the table link */

bool df_cpu_has_avx2_fma(void) { return false; }
float df_dot_f32_f32_avx2(const void *x, const void *y, int64_t n) { return df_dot_f32_f32(x, y, n); }
float df_dot_f16_f32_avx2(const void *x, const void *y, int64_t n) { return df_dot_f16_f32(x, y, n); }
float df_dot_q4_0_q8_0_avx2(const void *x, const void *y, int64_t n) { return df_dot_q4_0_q8_0(x, y, n); }
float df_dot_q8_0_q8_0_avx2(const void *x, const void *y, int64_t n) { return df_dot_q8_0_q8_0(x, y, n); }
float df_dot_q4_K_q8_K_avx2(const void *x, const void *y, int64_t n) { return df_dot_q4_K_q8_K(x, y, n); }
float df_dot_q5_K_q8_K_avx2(const void *x, const void *y, int64_t n) { return df_dot_q5_K_q8_K(x, y, n); }
float df_dot_q6_K_q8_K_avx2(const void *x, const void *y, int64_t n) { return df_dot_q6_K_q8_K(x, y, n); }

#endif
