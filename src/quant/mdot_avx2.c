/* AVX2 multi-token dots (see mdot.h): per weight block, the decode (nibbles, high bits,
 * scales, fp16 -> f32) is done once and its vectors stay in registers while up to MDOT_COLS
 * columns are multiplied with them. Four columns per pass: four accumulators plus the shared
 * decode fit the 16 ymm registers.
 *
 * Every column runs the same instructions in the same order whatever the number of columns
 * in its pass: that is what makes a token's result independent of its batch (mdot.h). The
 * int8 products use the sign trick of dot_avx2.c (|x| times y with x's sign), exact like the
 * rest of the integer sums; only the per-block float scaling rounds.
 *
 * Each function carries a target attribute (the file is not built with -mavx2), so the
 * library runs on CPUs without AVX2; mdot.c hands these out only after checking the CPU. */
#include "quant/mdot.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kernels.h"

#define DF_AVX2 __attribute__((target("avx2,fma,f16c")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

enum { MDOT_COLS = 4, PREFETCH_BYTES = 2048 };

DF_AVX2 ALWAYS_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

DF_AVX2 ALWAYS_INLINE float h2f(df_fp16 h) { return _cvtsh_ss(h); }

/* The weight stream runs ahead of use by PREFETCH_BYTES; past the end of a row this reaches
 * into the next row, which is the next one the task reads. */
DF_AVX2 ALWAYS_INLINE void prefetch_lines(const void *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) _mm_prefetch((const char *)p + PREFETCH_BYTES + off, _MM_HINT_T0);
}

/* Runs group(k) for every row and every pass of k <= MDOT_COLS columns; each pass sees its
 * row (wr), its activations (ag), outputs (yg) and whether it is the first pass over the row
 * (pf: prefetch only then, the later passes find the row in L1). */
#define FOR_EACH_PASS(GROUP)                                                                 \
    for (int64_t r = 0; r < nr; r++)                                                         \
    for (int c0 = 0; c0 < nc; c0 += MDOT_COLS) {                                             \
        const void *wr = (const uint8_t *)w + (size_t)r * ws;                                \
        const uint8_t *ag = (const uint8_t *)a + (size_t)c0 * as;                            \
        float *yg = y + (int64_t)c0 * ys + r;                                                \
        const bool pf = c0 == 0;                                                             \
        switch (nc - c0 < MDOT_COLS ? nc - c0 : MDOT_COLS) {                                 \
        case 1: GROUP(1); break;                                                             \
        case 2: GROUP(2); break;                                                             \
        case 3: GROUP(3); break;                                                             \
        default: GROUP(4); break;                                                            \
        }                                                                                    \
    }

/* ---- Q8_0 and Q4_0 against Q8S activations ------------------------------------------- */

DF_AVX2 ALWAYS_INLINE void legacy_group(const void *w, bool q4, const uint8_t *a, size_t as, const int nc,
                                        int64_t n, float *y, int64_t ys, bool pf) {
    const int64_t nb = n / DF_QK8_0;
    __m256 acc[MDOT_COLS];
    const int8_t *qy[MDOT_COLS];
    const float *dy[MDOT_COLS];
    for (int c = 0; c < nc; c++) {
        acc[c] = _mm256_setzero_ps();
        qy[c] = (const int8_t *)(a + (size_t)c * as);
        dy[c] = (const float *)(qy[c] + n);
    }
    const __m256i ones = _mm256_set1_epi16(1), low4 = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
    for (int64_t b = 0; b < nb; b++) {
        __m256i xq;
        float dxs;
        if (q4) {
            const df_block_q4_0 *x = (const df_block_q4_0 *)w + b;
            if (pf) prefetch_lines(x, 1);
            /* low nibbles are elements 0..15, high nibbles 16..31 */
            const __m128i packed = _mm_loadu_si128((const __m128i *)x->qs);
            xq = _mm256_inserti128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1);
            xq = _mm256_sub_epi8(_mm256_and_si256(xq, low4), eight);
            dxs = h2f(x->d);
        } else {
            const df_block_q8_0 *x = (const df_block_q8_0 *)w + b;
            if (pf) prefetch_lines(x, 1);
            xq = _mm256_loadu_si256((const __m256i *)x->qs);
            dxs = h2f(x->d);
        }
        const __m256i xa = _mm256_sign_epi8(xq, xq);
        const __m256 dx = _mm256_set1_ps(dxs);
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) {
            const __m256i yq = _mm256_loadu_si256((const __m256i *)(qy[c] + b * DF_QK8_0));
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(xa, _mm256_sign_epi8(yq, xq)), ones);
            const __m256 dxy = _mm256_mul_ps(dx, _mm256_broadcast_ss(dy[c] + b));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), dxy, acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) y[c * ys] = hsum(acc[c]);
}

DF_AVX2 DF_MDOT_DECLARE(df_mdot_q8_0_avx2) {
#define GROUP(k) legacy_group(wr, false, ag, as, k, n, yg, ys, pf)
    FOR_EACH_PASS(GROUP)
#undef GROUP
}

DF_AVX2 DF_MDOT_DECLARE(df_mdot_q4_0_avx2) {
#define GROUP(k) legacy_group(wr, true, ag, as, k, n, yg, ys, pf)
    FOR_EACH_PASS(GROUP)
#undef GROUP
}

/* ---- K-quants against Q8KS activations ------------------------------------------------- */

/* Where the parts of a Q8KS column of n elements start (mdot.h). */
typedef struct {
    const int8_t *qs;
    const float *d;
    const int16_t *bsums;
    const float *ysum;
} q8ks_view;

ALWAYS_INLINE q8ks_view q8ks_at(const uint8_t *a, int64_t n) {
    const int64_t nsb = n / DF_QK_K;
    q8ks_view v;
    v.qs = (const int8_t *)a;
    v.d = (const float *)(a + n);
    v.bsums = (const int16_t *)(v.d + nsb);
    v.ysum = (const float *)(v.bsums + 16 * nsb);
    return v;
}

/* The 6-bit scales and mins of a Q4_K/Q5_K block, one byte each (sub-block j in byte j),
 * unpacked four at a time (the layout is described at df_k4_scale_min). */
ALWAYS_INLINE void k4_scales_mins(const uint8_t *s, uint64_t *scales, uint64_t *mins) {
    uint32_t w[3];
    memcpy(w, s, sizeof w);
    const uint32_t sc_lo = w[0] & 0x3f3f3f3fu, mn_lo = w[1] & 0x3f3f3f3fu;
    const uint32_t sc_hi = (w[2] & 0x0f0f0f0fu) | ((w[0] >> 6) & 0x03030303u) << 4;
    const uint32_t mn_hi = ((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 6) & 0x03030303u) << 4;
    *scales = sc_lo | (uint64_t)sc_hi << 32;
    *mins = mn_lo | (uint64_t)mn_hi << 32;
}

/* Q4_K (qh NULL) and Q5_K: per 64-element chunk, the low nibbles (sub-block 2k) and high
 * nibbles (2k+1) times the activations, weighted by the 6-bit scales; the mins are applied in
 * float, as the shared dmin * min times each column's d * (sum of the sub-block's quants). */
DF_AVX2 ALWAYS_INLINE void q45k_group(const void *w, bool five, const uint8_t *a, size_t as, const int nc,
                                      int64_t n, float *y, int64_t ys, bool pf) {
    const int64_t nsb = n / DF_QK_K;
    __m256 acc[MDOT_COLS];
    q8ks_view av[MDOT_COLS];
    for (int c = 0; c < nc; c++) {
        acc[c] = _mm256_setzero_ps();
        av[c] = q8ks_at(a + (size_t)c * as, n);
    }
    const __m256i low4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < nsb; i++) {
        df_fp16 dh, dminh;
        const uint8_t *scales, *qs, *qh = NULL;
        if (five) {
            const df_block_q5_K *x = (const df_block_q5_K *)w + i;
            if (pf) prefetch_lines(x, sizeof *x);
            dh = x->d, dminh = x->dmin, scales = x->scales, qs = x->qs, qh = x->qh;
        } else {
            const df_block_q4_K *x = (const df_block_q4_K *)w + i;
            if (pf) prefetch_lines(x, sizeof *x);
            dh = x->d, dminh = x->dmin, scales = x->scales, qs = x->qs;
        }
        uint64_t sc8, mn8;
        k4_scales_mins(scales, &sc8, &mn8);
        const __m256i hbits = five ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
        __m256i sumi[MDOT_COLS];
        for (int c = 0; c < nc; c++) sumi[c] = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            const __m256i packed = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
            __m256i lo = _mm256_and_si256(packed, low4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
            if (five) {
                /* bit 2k (low) / 2k+1 (high) of each qh byte is the quant's bit 4 */
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * k), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * k + 1), one), 4));
            }
            const __m256i s_lo = _mm256_set1_epi16((int16_t)((sc8 >> (16 * k)) & 0xff));
            const __m256i s_hi = _mm256_set1_epi16((int16_t)((sc8 >> (16 * k + 8)) & 0xff));
#pragma GCC unroll 8
            for (int c = 0; c < nc; c++) {
                const int8_t *yq = av[c].qs + i * DF_QK_K + 64 * k;
                const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)yq)), s_lo);
                const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(yq + 32))), s_hi);
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(plo, phi));
            }
        }
        const __m256 dx = _mm256_set1_ps(h2f(dh));
        const __m256 wm = _mm256_mul_ps(_mm256_set1_ps(h2f(dminh)),
                                        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn8))));
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) {
            const __m256 dxy = _mm256_mul_ps(dx, _mm256_broadcast_ss(av[c].d + i));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[c]), dxy, acc[c]);
            acc[c] = _mm256_fnmadd_ps(wm, _mm256_loadu_ps(av[c].ysum + 8 * i), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) y[c * ys] = hsum(acc[c]);
}

DF_AVX2 DF_MDOT_DECLARE(df_mdot_q4_K_avx2) {
#define GROUP(k) q45k_group(wr, false, ag, as, k, n, yg, ys, pf)
    FOR_EACH_PASS(GROUP)
#undef GROUP
}

DF_AVX2 DF_MDOT_DECLARE(df_mdot_q5_K_avx2) {
#define GROUP(k) q45k_group(wr, true, ag, as, k, n, yg, ys, pf)
    FOR_EACH_PASS(GROUP)
#undef GROUP
}

/* Q6_K: quants 0..63 stored +32, so sum((q - 32) * y * scale) is the unsigned product minus
 * 32 * sum(scale_j * bsum_j), which one madd of the bsums folds into the same integer sum. */
DF_AVX2 ALWAYS_INLINE void q6k_group(const void *w, const uint8_t *a, size_t as, const int nc, int64_t n,
                                     float *y, int64_t ys, bool pf) {
    const int64_t nsb = n / DF_QK_K;
    __m256 acc[MDOT_COLS];
    q8ks_view av[MDOT_COLS];
    for (int c = 0; c < nc; c++) {
        acc[c] = _mm256_setzero_ps();
        av[c] = q8ks_at(a + (size_t)c * as, n);
    }
    const __m256i low4 = _mm256_set1_epi8(15), bits45 = _mm256_set1_epi8(0x30);
    for (int64_t i = 0; i < nsb; i++) {
        const df_block_q6_K *x = (const df_block_q6_K *)w + i;
        if (pf) prefetch_lines(x, sizeof *x);
        const int8_t *sc = x->scales;
        const __m256i nsc = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc)),
                                               _mm256_set1_epi16(-32));
        __m256i sumi[MDOT_COLS];
        for (int c = 0; c < nc; c++)
            sumi[c] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(av[c].bsums + 16 * i)), nsc);
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
            /* in half h, element l, l+32, l+64, l+96 (l < 32): low nibble of ql[l], of ql[l+32],
             * high nibble of ql[l], of ql[l+32]; top two bits from bit pairs 0..3 of qh[l] */
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), bits45));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), bits45));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), _mm256_and_si256(hb, bits45));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                                   _mm256_and_si256(_mm256_srli_epi16(hb, 2), bits45));
            for (int k = 0; k < 4; k++) {
                const __m256i scv = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(sc[8 * h + 2 * k])),
                                                            _mm_set1_epi16(sc[8 * h + 2 * k + 1]), 1);
#pragma GCC unroll 8
                for (int c = 0; c < nc; c++) {
                    const __m256i yq = _mm256_loadu_si256((const __m256i *)(av[c].qs + i * DF_QK_K + 128 * h + 32 * k));
                    sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], yq), scv));
                }
            }
        }
        const __m256 dx = _mm256_set1_ps(h2f(x->d));
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) {
            const __m256 dxy = _mm256_mul_ps(dx, _mm256_broadcast_ss(av[c].d + i));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[c]), dxy, acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) y[c * ys] = hsum(acc[c]);
}

DF_AVX2 DF_MDOT_DECLARE(df_mdot_q6_K_avx2) {
#define GROUP(k) q6k_group(wr, ag, as, k, n, yg, ys, pf)
    FOR_EACH_PASS(GROUP)
#undef GROUP
}

#else /* not x86: never handed out (mdot.c checks the CPU), but the table links */

static void no_kernel(float *y, int64_t nr, int nc, int64_t ys) {
    for (int c = 0; c < nc; c++)
        for (int64_t r = 0; r < nr; r++) y[c * ys + r] = 0.0f;
}
DF_MDOT_DECLARE(df_mdot_q8_0_avx2) { no_kernel(y, nr, nc, ys); }
DF_MDOT_DECLARE(df_mdot_q4_0_avx2) { no_kernel(y, nr, nc, ys); }
DF_MDOT_DECLARE(df_mdot_q4_K_avx2) { no_kernel(y, nr, nc, ys); }
DF_MDOT_DECLARE(df_mdot_q5_K_avx2) { no_kernel(y, nr, nc, ys); }
DF_MDOT_DECLARE(df_mdot_q6_K_avx2) { no_kernel(y, nr, nc, ys); }

#endif
