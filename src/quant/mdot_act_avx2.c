/* AVX2 versions of the activation layouts of mdot_act.c, which stay the definition: every
 * byte written here equals what the scalar functions write (the unit test compares them on
 * random data with NaNs, infinities, zeros and exact halves). The scalar ones go through
 * df_quant_q8_0 / df_quant_q8_K, whose rounding calls (roundf, per element) made quantizing a
 * 16-token batch cost as much as a third of its matmul.
 *
 * How each step matches the reference:
 * - absmax: max over |x| with NaN lanes ignored (vmaxps returns its second operand when one is
 *   NaN, and the running max is that operand), exactly what fmaxf / a strict > comparison do;
 * - the scale and its reciprocal are computed in scalar C from that max, like the reference;
 * - the element products are single multiplies (this file is built with -ffp-contract=off);
 * - clamping before rounding: max(v, -127) turns NaN into -127 like the reference's
 *   !(v > lo) test, then min(v, 127), and rounding a clamped value is rounding then clamping;
 * - Q8_0 rounds half away from zero (roundf): truncate, then step away from zero when the
 *   dropped fraction is at least one half; Q8_K rounds half to even (vcvtps2dq). */
#include "quant/mdot.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/blocks.h"

#define DF_AVX2 __attribute__((target("avx2,fma,f16c")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

DF_AVX2 ALWAYS_INLINE __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/* max of |x| over n floats (n a multiple of 8), NaN ignored */
DF_AVX2 ALWAYS_INLINE float abs_max(const float *x, int n) {
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) m = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + i)), m);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* v clamped to [-127, 127], NaN to -127 */
DF_AVX2 ALWAYS_INLINE __m256 clamp127(__m256 v) {
    return _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
}

/* 32 int32 (four vectors of 8, in order) to 32 bytes */
DF_AVX2 ALWAYS_INLINE void store_i8x32(int8_t *dst, __m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    /* the packs work per 128-bit lane: put the 4-byte groups back in element order */
    _mm256_storeu_si256((__m256i *)dst, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

DF_AVX2 ALWAYS_INLINE int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* One Q8_0 block as df_quant_q8_0 makes it: quants, the fp16 scale as a float, the sum. */
DF_AVX2 ALWAYS_INLINE void q8_0_block(const float *x, int8_t *qs, float *d_out, int32_t *sum) {
    const float amax = abs_max(x, DF_QK8_0);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    *d_out = df_fp16_to_f32(df_f32_to_fp16(d));
    const __m256 ids = _mm256_set1_ps(id), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    __m256i q[4];
    for (int k = 0; k < 4; k++) {
        const __m256 v = clamp127(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), ids));
        const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        /* |v - t| >= 1/2: one step away from zero (the subtraction is exact) */
        const __m256 away = _mm256_cmp_ps(abs_ps(_mm256_sub_ps(v, t)), half, _CMP_GE_OQ);
        const __m256 step = _mm256_and_ps(away, _mm256_or_ps(one, _mm256_and_ps(v, _mm256_set1_ps(-0.0f))));
        q[k] = _mm256_cvttps_epi32(_mm256_add_ps(t, step));
    }
    store_i8x32(qs, q[0], q[1], q[2], q[3]);
    if (sum) *sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
}

DF_AVX2 void df_mdot_quant_q8s_avx2(const float *x, void *a, int64_t n) {
    int8_t *qs = a;
    float *d = (float *)(qs + n);
    for (int64_t i = 0; i < n / DF_QK8_0; i++) q8_0_block(x + i * DF_QK8_0, qs + i * DF_QK8_0, d + i, NULL);
}

DF_AVX2 void df_mdot_quant_q8m_avx2(const float *x, void *a, int64_t n) {
    const int64_t nb = n / DF_QK8_0;
    uint8_t *o = a;
    const size_t scales = df_mdot_mirrored_scales_offset(n, 1);
    memset(o + 34 * nb, 0, scales - (size_t)(34 * nb)); /* the padding before d */
    float *d = (float *)(o + scales);
    int32_t *c128 = (int32_t *)(d + nb);
    for (int64_t i = 0; i < nb; i++) {
        int8_t q[DF_QK8_0];
        int32_t s;
        q8_0_block(x + i * DF_QK8_0, q, d + i, &s);
        o[34 * i] = o[34 * i + 1] = 0;
        memcpy(o + 34 * i + 2, q, DF_QK8_0);
        c128[i] = -128 * s;
    }
}

DF_AVX2 void df_mdot_quant_q4m_avx2(const float *x, void *a, int64_t n) {
    const int64_t nb = n / DF_QK8_0;
    uint8_t *lo = a, *hi = lo + 18 * nb;
    float *d = (float *)(lo + df_mdot_mirrored_scales_offset(n, 2));
    int32_t *c8 = (int32_t *)(d + nb);
    for (int64_t i = 0; i < nb; i++) {
        int8_t q[DF_QK8_0];
        int32_t s;
        q8_0_block(x + i * DF_QK8_0, q, d + i, &s);
        lo[18 * i] = lo[18 * i + 1] = hi[18 * i] = hi[18 * i + 1] = 0;
        memcpy(lo + 18 * i + 2, q, 16);
        memcpy(hi + 18 * i + 2, q + 16, 16);
        c8[i] = -8 * s;
    }
}

DF_AVX2 void df_mdot_quant_q8ks_avx2(const float *x, void *a, int64_t n) {
    const int64_t nsb = n / DF_QK_K;
    int8_t *qs = a;
    float *d = (float *)(qs + n);
    int16_t *bsums = (int16_t *)(d + nsb);
    float *ysum = (float *)(bsums + 16 * nsb);
    int16_t *b32 = (int16_t *)(ysum + 8 * nsb);
    for (int64_t i = 0; i < nsb; i++) {
        const float *src = x + i * DF_QK_K;
        int8_t *q = qs + i * DF_QK_K;
        const float amax = abs_max(src, DF_QK_K);
        if (!(amax > 0.0f) || !isfinite(amax)) {
            /* df_quant_q8_K encodes such a block as zeros */
            memset(q, 0, DF_QK_K);
            d[i] = 0.0f;
            memset(bsums + 16 * i, 0, 16 * sizeof(int16_t));
            for (int j = 0; j < 8; j++) ysum[8 * i + j] = 0.0f, b32[8 * i + j] = 0;
            continue;
        }
        /* the signed value of the first element of largest magnitude */
        float max = 0.0f;
        const __m256 am = _mm256_set1_ps(amax);
        for (int e = 0; e < DF_QK_K; e += 8) {
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(src + e)), am, _CMP_EQ_OQ));
            if (hit) {
                max = src[e + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        d[i] = 1.0f / iscale;
        const __m256 is = _mm256_set1_ps(iscale);
        for (int g = 0; g < 8; g++) {
            __m256i v[4];
            for (int k = 0; k < 4; k++)
                v[k] = _mm256_cvtps_epi32(clamp127(_mm256_mul_ps(_mm256_loadu_ps(src + 32 * g + 8 * k), is)));
            store_i8x32(q + 32 * g, v[0], v[1], v[2], v[3]);
            const int s0 = hsum_i32(_mm256_add_epi32(v[0], v[1])), s1 = hsum_i32(_mm256_add_epi32(v[2], v[3]));
            bsums[16 * i + 2 * g] = (int16_t)s0;
            bsums[16 * i + 2 * g + 1] = (int16_t)s1;
            b32[8 * i + g] = (int16_t)(s0 + s1);
            ysum[8 * i + g] = d[i] * (float)(s0 + s1);
        }
    }
}

#else

void df_mdot_quant_q8s_avx2(const float *x, void *a, int64_t n) { df_mdot_quant_q8s(x, a, n); }
void df_mdot_quant_q8m_avx2(const float *x, void *a, int64_t n) { df_mdot_quant_q8m(x, a, n); }
void df_mdot_quant_q4m_avx2(const float *x, void *a, int64_t n) { df_mdot_quant_q4m(x, a, n); }
void df_mdot_quant_q8ks_avx2(const float *x, void *a, int64_t n) { df_mdot_quant_q8ks(x, a, n); }

#endif
