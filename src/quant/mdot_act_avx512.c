/* AVX-512 version of the Q8M activation layout (mdot.h), the one the AVX-512 Q8_0 kernels
 * read: byte for byte what df_mdot_quant_q8m (mdot_act.c, the definition) and its AVX2
 * version write; the unit test compares all three on random data with NaNs, infinities,
 * zeros and exact halves. Quantizing the activations is serial work in front of every
 * matmul, so it matters at the batch sizes of a verify.
 *
 * Where the time went in the AVX2 version: each block's scale is a chain of scalar steps
 * (horizontal max, two divisions, an fp16 round trip in software). Here a row's scales are
 * computed 16 blocks at a time in vector registers (the same IEEE operations per lane: one
 * division by 127, one reciprocal, the F16C round trip, which rounds to nearest even like
 * df_f32_to_fp16), and each block's 32 quants take two 16-lane vectors.
 *
 * How each step matches the reference: see mdot_act_avx2.c; in short, NaN lanes drop out of
 * the maximum (vmaxps returns its second operand), clamping to [-127, 127] turns NaN into
 * -127, and rounding half away from zero is truncation plus one step away from zero when
 * the dropped part is at least 1/2 (exact). */
#include "quant/mdot.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"

#define DF_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

DF_AVX512 ALWAYS_INLINE __m512 abs512(__m512 v) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
}

/* 16 floats times id, clamped, rounded half away from zero, as int32 */
DF_AVX512 ALWAYS_INLINE __m512i quant16(__m512 x, __m512 id) {
    const __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x, id), _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 away = _mm512_cmp_ps_mask(abs512(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    /* one step toward v's sign: +1 or -1 (v's sign bit on 1.0) */
    const __m512 step = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)), _mm512_castps_si512(_mm512_set1_ps(1.0f))));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, away, t, step));
}

DF_AVX512 void df_mdot_quant_q8m_avx512(const float *x, void *a, int64_t n) {
    const int64_t nb = n / DF_QK8_0;
    uint8_t *o = a;
    const size_t scales = df_mdot_mirrored_scales_offset(n, 1);
    memset(o + 34 * nb, 0, scales - (size_t)(34 * nb)); /* the padding before d */
    float *d = (float *)(o + scales);
    int32_t *c128 = (int32_t *)(d + nb);
    for (int64_t b0 = 0; b0 < nb; b0 += 16) {
        const int m = nb - b0 < 16 ? (int)(nb - b0) : 16;
        /* the blocks' absolute maxima, NaN ignored (the running max is vmaxps' second operand) */
        float amax[16] = {0};
        for (int k = 0; k < m; k++) {
            const float *xb = x + (b0 + k) * DF_QK8_0;
            const __m512 mx = _mm512_max_ps(abs512(_mm512_loadu_ps(xb + 16)), _mm512_max_ps(abs512(_mm512_loadu_ps(xb)), _mm512_setzero_ps()));
            amax[k] = _mm512_reduce_max_ps(mx);
        }
        /* d = amax / 127, id = 1 / d (0 for d = 0), and d as the fp16 the reference stores */
        const __m512 dv = _mm512_div_ps(_mm512_loadu_ps(amax), _mm512_set1_ps(127.0f));
        const __mmask16 nz = _mm512_cmp_ps_mask(dv, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        float id[16];
        _mm512_storeu_ps(id, _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0f), dv));
        const __m512 dh = _mm512_cvtph_ps(_mm512_cvtps_ph(dv, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        _mm512_mask_storeu_ps(d + b0, (__mmask16)((1u << m) - 1), dh);
        for (int k = 0; k < m; k++) {
            const int64_t b = b0 + k;
            const float *xb = x + b * DF_QK8_0;
            const __m512 ids = _mm512_set1_ps(id[k]);
            const __m512i q0 = quant16(_mm512_loadu_ps(xb), ids), q1 = quant16(_mm512_loadu_ps(xb + 16), ids);
            uint8_t *ob = o + 34 * b;
            ob[0] = ob[1] = 0;
            _mm_storeu_si128((__m128i *)(ob + 2), _mm512_cvtsepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(ob + 18), _mm512_cvtsepi32_epi8(q1));
            c128[b] = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        }
    }
}

#else

void df_mdot_quant_q8m_avx512(const float *x, void *a, int64_t n) { df_mdot_quant_q8m(x, a, n); }

#endif
