/* AVX-512 versions of the few inner loops where the wider vectors pay: the GDN step and the
 * SiLU / sigmoid activations. The AVX-512 level's kernel table (df_cpu_kernels_avx512, in
 * cpu_simd_avx2.c) is the AVX2 table with these entries replaced. Target attributes per function, as in cpu_simd_avx2.c: only
 * reached after df_cpu_simd_best() saw the features. */
#include "backend/cpu/cpu_internal.h"

#ifdef DF_CPU_HAVE_AVX2_BUILD

#include <immintrin.h>

#define DF_AVX512F __attribute__((target("avx2,fma,f16c,avx512f,avx512vl")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* As in cpu_simd_avx2.c: f32 captures with aligned rows are streamed (written once, read back
 * only on a rollback); f16 captures are not (partial non-temporal lines are slow). */
static bool cap_streamable(const void *cap, int64_t dv, bool cap_f16) {
    return !cap_f16 && (uintptr_t)cap % 64 == 0 && dv % 16 == 0;
}

DF_AVX512F ALWAYS_INLINE void store_cap16(void *cap, bool cap_f16, bool nt, int64_t off, __m512 s) {
    if (cap_f16) {
        _mm256_storeu_si256((__m256i *)((df_fp16 *)cap + off), _mm512_cvtps_ph(s, _MM_FROUND_TO_NEAREST_INT));
    } else if (nt) {
        _mm512_stream_ps((float *)cap + off, s);
    } else {
        _mm512_storeu_ps((float *)cap + off, s);
    }
}

/* Columns [j, j + 16 nv) of one step (nv = 1 or 2 vectors per row; a compile-time constant
 * at each call). The read pass keeps four rows' products apart so the FMA chains overlap;
 * the update pass writes each row of S once and accumulates o = S^T q from two chains. */
DF_AVX512F ALWAYS_INLINE void gdn_cols(int nv, float *S, int64_t dk, int64_t dv, int64_t j, const float *q,
                                       const float *k, const float *v, float decay, float beta, float *o,
                                       void *cap, bool cap_f16, bool nt) {
    __m512 acc[4][2];
    for (int a = 0; a < 4; a++) acc[a][0] = acc[a][1] = _mm512_setzero_ps();
    int64_t r = 0;
    for (; r + 4 <= dk; r += 4)
        for (int a = 0; a < 4; a++) {
            const float *row = S + (r + a) * dv + j;
            const __m512 kr = _mm512_set1_ps(k[r + a]);
            for (int u = 0; u < nv; u++) acc[a][u] = _mm512_fmadd_ps(kr, _mm512_loadu_ps(row + 16 * u), acc[a][u]);
        }
    for (; r < dk; r++) {
        const float *row = S + r * dv + j;
        const __m512 kr = _mm512_set1_ps(k[r]);
        for (int u = 0; u < nv; u++) acc[0][u] = _mm512_fmadd_ps(kr, _mm512_loadu_ps(row + 16 * u), acc[0][u]);
    }
    const __m512 vdecay = _mm512_set1_ps(decay), vbeta = _mm512_set1_ps(beta);
    __m512 del[2], o_even[2], o_odd[2];
    for (int u = 0; u < nv; u++) {
        const __m512 kv = _mm512_add_ps(_mm512_add_ps(acc[0][u], acc[1][u]), _mm512_add_ps(acc[2][u], acc[3][u]));
        /* delta = beta * (v - decay * kv) */
        del[u] = _mm512_mul_ps(vbeta, _mm512_fnmadd_ps(vdecay, kv, _mm512_loadu_ps(v + j + 16 * u)));
        o_even[u] = o_odd[u] = _mm512_setzero_ps();
    }
    /* o from two chains, even and odd rows (written out twice rather than indexed by r % 2:
     * an accumulator picked at run time lives on the stack, a store-to-load chain per row) */
    for (r = 0; r < dk; r++) {
        float *row = S + r * dv + j;
        const __m512 kr = _mm512_set1_ps(k[r]), qr = _mm512_set1_ps(q[r]);
        for (int u = 0; u < nv; u++) {
            const __m512 s = _mm512_fmadd_ps(kr, del[u], _mm512_mul_ps(vdecay, _mm512_loadu_ps(row + 16 * u)));
            _mm512_storeu_ps(row + 16 * u, s);
            o_even[u] = _mm512_fmadd_ps(qr, s, o_even[u]);
            if (cap) store_cap16(cap, cap_f16, nt, r * dv + j + 16 * u, s);
        }
        if (++r == dk) break;
        row += dv;
        const __m512 kr1 = _mm512_set1_ps(k[r]), qr1 = _mm512_set1_ps(q[r]);
        for (int u = 0; u < nv; u++) {
            const __m512 s = _mm512_fmadd_ps(kr1, del[u], _mm512_mul_ps(vdecay, _mm512_loadu_ps(row + 16 * u)));
            _mm512_storeu_ps(row + 16 * u, s);
            o_odd[u] = _mm512_fmadd_ps(qr1, s, o_odd[u]);
            if (cap) store_cap16(cap, cap_f16, nt, r * dv + j + 16 * u, s);
        }
    }
    for (int u = 0; u < nv; u++) _mm512_storeu_ps(o + j + 16 * u, _mm512_add_ps(o_even[u], o_odd[u]));
}

DF_AVX512F void df_cpu_gdn_step_avx512(float *S, int64_t dk, int64_t dv, const float *q, const float *k,
                                       const float *v, float decay, float beta, float *o, void *cap,
                                       bool cap_f16) {
    const bool nt = cap && cap_streamable(cap, dv, cap_f16);
    int64_t j = 0;
    for (; j + 32 <= dv; j += 32) gdn_cols(2, S, dk, dv, j, q, k, v, decay, beta, o, cap, cap_f16, nt);
    for (; j + 16 <= dv; j += 16) gdn_cols(1, S, dk, dv, j, q, k, v, decay, beta, o, cap, cap_f16, nt);
    if (j < dv) df_cpu_gdn_cols_scalar(S, dk, dv, j, dv, q, k, v, decay, beta, o, cap, cap_f16);
    if (nt) _mm_sfence();
}

/* ---- activations, 16 floats at a time ---- */

/* exp256 of cpu_simd_avx2.c on 16 lanes: the same operations lane for lane (the same
 * constants, rounding, fused multiply-adds and blends), so the AVX2 and AVX-512 levels give
 * the same bits. */
DF_AVX512F ALWAYS_INLINE __m512 exp512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654475f), hi = _mm512_set1_ps(88.72283905f);
    const __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    const __m512 n = _mm512_min_ps(_mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                   _mm512_set1_ps(127.0f));
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 er = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    __m512 y = _mm512_mul_ps(er, _mm512_castsi512_ps(bits));
    y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), _mm512_setzero_ps());
    y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), _mm512_set1_ps(INFINITY));
    return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

DF_AVX512F ALWAYS_INLINE __m512 act512(bool silu, __m512 a, __m512 m) {
    const __m512 den = _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), a)));
    return _mm512_mul_ps(_mm512_div_ps(silu ? a : _mm512_set1_ps(1.0f), den), m);
}

/* The tail runs masked: its lanes go through the same operations as full vectors. */
DF_AVX512F ALWAYS_INLINE void act_f32(bool silu, float *y, const float *a, const float *b, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, act512(silu, _mm512_loadu_ps(a + i), b ? _mm512_loadu_ps(b + i) : one));
    if (i == n) return;
    const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
    const __m512 ta = _mm512_maskz_loadu_ps(k, a + i), tb = b ? _mm512_mask_loadu_ps(one, k, b + i) : one;
    _mm512_mask_storeu_ps(y + i, k, act512(silu, ta, tb));
}

DF_AVX512F void df_cpu_silu_mul_f32_avx512(float *y, const float *a, const float *b, int64_t n) {
    act_f32(true, y, a, b, n);
}

DF_AVX512F void df_cpu_sigmoid_mul_f32_avx512(float *y, const float *a, const float *b, int64_t n) {
    act_f32(false, y, a, b, n);
}

#endif /* DF_CPU_HAVE_AVX2_BUILD */
