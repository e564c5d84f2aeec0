/* K-quant quantizers: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and the Q8_K activation format.
 *
 * The algorithm is llama.cpp's reference one (no importance matrix), rewritten here:
 *   1. fit each sub-block on its own with a float scale (and a min for type-1 formats) by a
 *      small search over candidate scales, keeping the one with the least weighted error;
 *   2. quantize the sub-block scales (and mins) against one fp16 super-scale per block;
 *   3. re-quantize every element against the scale it will actually be decoded with.
 * Step 3 is what keeps the error low: the rounding of the scales in step 2 is absorbed by
 * choosing each element's quant for the final scale rather than the fitted one.
 *
 * The output is a valid, good-quality encoding; it is not promised to be byte-identical to
 * llama.cpp's (float evaluation order in the searches may differ). */
#include <math.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/round.h"

/* Below this magnitude a group is treated as all zero (its scale would be denormal noise). */
#define GROUP_EPS 1e-15f

/* ---- sub-block fitting ------------------------------------------------------------------- */

/* Symmetric fit with quants in [-nmax, nmax - 1] (stored +nmax in L): x ~ scale * (L - nmax).
 * Starts from the scale that maps the extreme value to -nmax, then tries 18 nearby scales and
 * keeps the quants with the best weighted least-squares fit. Weights default to x^2, which
 * favours the large values that dominate a dot product. Returns the fitted scale. */
static float fit_symmetric(int n, int nmax, const float *x, const float *weights, int8_t *L) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float best_scale = 0.0f, best = 0.0f;
    bool have_best = false;
    for (int step = 0; step <= 18; step++) {
        /* step 0 is the plain extreme-value scale; then offsets -0.9 .. +0.9 */
        const int is = step == 0 ? 0 : (step <= 9 ? step - 10 : step - 9);
        const float iscale = -((float)nmax + 0.1f * (float)is) / max;
        float sumlx = 0.0f, suml2 = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = df_round_clamp(iscale * x[i], -nmax, nmax - 1);
            const float w = weights ? weights[i] : x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        /* the fit error falls by sumlx^2 / suml2: compare without dividing */
        const bool better = !have_best ? true : (suml2 > 0.0f && sumlx * sumlx > best * suml2);
        if (better) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + df_round_clamp(iscale * x[i], -nmax, nmax - 1));
            best_scale = suml2 > 0.0f ? sumlx / suml2 : 0.0f;
            best = best_scale * sumlx;
            have_best = true;
        }
    }
    return best_scale;
}

/* Symmetric 3-bit fit (quants in [-4, 3]) for Q3_K: start from the extreme-value scale, then
 * move single quants to whatever the current least-squares scale prefers while that lowers
 * the x^2-weighted error (a few sweeps of coordinate descent). L is stored +nmax. */
static float fit_q3(int n, int nmax, const float *x, int8_t *L) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = -(float)nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        L[i] = (int8_t)df_round_clamp(iscale * x[i], -nmax, nmax - 1);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)L[i];
        suml2 += w * (float)L[i] * (float)L[i];
    }
    for (int sweep = 0; sweep < 5; sweep++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (!(slx > 0.0f)) continue;
            float sl2 = suml2 - w * (float)L[i] * (float)L[i];
            const int nl = df_round_clamp(x[i] * sl2 / slx, -nmax, nmax - 1);
            if (nl == L[i]) continue;
            slx += w * x[i] * (float)nl;
            sl2 += w * (float)nl * (float)nl;
            if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (int8_t)nl;
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric fit x ~ scale * L - min with L in [0, nmax] and min >= 0 (the range always
 * includes zero). For each candidate inverse scale (nmax + rmin + rdelta*k) / (max - min) it
 * rounds, then solves the weighted least-squares problem for (scale, min) given those quants,
 * and keeps the candidate with the least weighted error (absolute if use_mad, else squared).
 * Returns the scale and stores the min (as a positive number) in *min_out. */
static float fit_asymmetric(int n, int nmax, const float *x, const float *w, uint8_t *L,
                            float *min_out, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0], sum_w = 0.0f, sum_x = 0.0f;
    for (int i = 0; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0.0f) min = 0.0f;
    if (!(max > min)) { /* constant block (or NaN): nothing to spread over the quants */
        memset(L, 0, (size_t)n);
        *min_out = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)df_round_clamp(iscale * (x[i] - min), 0, nmax);
        const float diff = scale * (float)L[i] + min - x[i];
        best_error += w[i] * (use_mad ? fabsf(diff) : diff * diff);
    }
    uint8_t Laux[32];
    for (int k = 0; k <= nstep; k++) {
        iscale = (rmin + rdelta * (float)k + (float)nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = df_round_clamp(iscale * (x[i] - min), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0.0f)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0.0f) { /* the offset must stay <= 0: refit the scale alone */
            this_min = 0.0f;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0.0f;
        for (int i = 0; i < n; i++) {
            const float diff = this_scale * (float)Laux[i] + this_min - x[i];
            err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
        }
        if (err < best_error) {
            memcpy(L, Laux, (size_t)n);
            best_error = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *min_out = -min;
    return scale;
}

/* ---- Q2_K ---------------------------------------------------------------------------------- */

/* Pack 2-bit quants in Q2_K/Q3_K order: element 128h + 32k + l goes to bits 2k of qs[32h + l]. */
static void pack_2bit(const uint8_t L[DF_QK_K], uint8_t qs[DF_QK_K / 4]) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *e = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)(e[0] | e[32] << 2 | e[64] << 4 | e[96] << 6);
        }
}

void df_quant_q2_K(const float *src, void *dst, int64_t n) {
    df_block_q2_K *b = dst;
    uint8_t L[DF_QK_K];
    float weights[16], scales[16], mins[16];
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++, src += DF_QK_K) {
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(src[16 * j + l]);
            scales[j] = fit_asymmetric(16, 3, src + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        /* 4-bit scales and mins against fp16 super-scales */
        memset(b->scales, 0, sizeof b->scales);
        b->d = df_f32_to_fp16(max_scale > 0.0f ? max_scale / 15.0f : 0.0f);
        b->dmin = df_f32_to_fp16(max_min > 0.0f ? max_min / 15.0f : 0.0f);
        for (int j = 0; j < 16; j++) {
            const int ls = max_scale > 0.0f ? df_round_clamp(15.0f / max_scale * scales[j], 0, 15) : 0;
            const int lm = max_min > 0.0f ? df_round_clamp(15.0f / max_min * mins[j], 0, 15) : 0;
            b->scales[j] = (uint8_t)(ls | lm << 4);
        }
        const float d = df_fp16_to_f32(b->d), dmin = df_fp16_to_f32(b->dmin);
        for (int j = 0; j < 16; j++) {
            const float dl = d * (float)(b->scales[j] & 15);
            if (dl == 0.0f) continue;
            const float ml = dmin * (float)(b->scales[j] >> 4);
            for (int l = 0; l < 16; l++) L[16 * j + l] = (uint8_t)df_round_clamp((src[16 * j + l] + ml) / dl, 0, 3);
        }
        pack_2bit(L, b->qs);
    }
}

/* ---- Q3_K ---------------------------------------------------------------------------------- */

void df_quant_q3_K(const float *src, void *dst, int64_t n) {
    df_block_q3_K *b = dst;
    int8_t L[DF_QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++, src += DF_QK_K) {
        float max_scale = 0.0f, amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_q3(16, 4, src + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        /* 6-bit signed scales: the largest maps to -32 (the code without a positive twin) */
        memset(b->scales, 0, sizeof b->scales);
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) {
                const int l = df_round_clamp(iscale * scales[j], -32, 31) + 32;
                if (j < 8) b->scales[j] = (uint8_t)(l & 15);
                else b->scales[j - 8] |= (uint8_t)((l & 15) << 4);
                b->scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            b->d = df_f32_to_fp16(1.0f / iscale);
        } else {
            b->d = df_f32_to_fp16(0.0f);
        }
        const float d = df_fp16_to_f32(b->d);
        for (int j = 0; j < 16; j++) {
            const int low = j < 8 ? b->scales[j] & 15 : b->scales[j - 8] >> 4;
            const int sc = (low | ((b->scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
            const float dl = d * (float)sc;
            if (dl == 0.0f) continue;
            for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(df_round_clamp(src[16 * j + l] / dl, -4, 3) + 4);
        }
        /* the third bit goes to hmask (bit 4h + k of hmask[l] for element 128h + 32k + l) */
        uint8_t low2[DF_QK_K];
        memset(b->hmask, 0, sizeof b->hmask);
        for (int e = 0; e < DF_QK_K; e++) {
            const int v = L[e];
            if (v > 3) b->hmask[e % 32] |= (uint8_t)(1u << (e / 32));
            low2[e] = (uint8_t)(v & 3);
        }
        pack_2bit(low2, b->qs);
    }
}

/* ---- Q4_K / Q5_K --------------------------------------------------------------------------- */

/* Store sub-block j's 6-bit scale and min in the 12-byte packing df_k4_scale_min reads. */
static void k4_pack_scale_min(uint8_t *s, int j, int sc, int m) {
    if (j < 4) {
        s[j] = (uint8_t)((s[j] & 0xc0) | sc);
        s[j + 4] = (uint8_t)((s[j + 4] & 0xc0) | m);
    } else {
        s[j + 4] = (uint8_t)((sc & 15) | (m & 15) << 4);
        s[j - 4] |= (uint8_t)((sc >> 4) << 6);
        s[j] |= (uint8_t)((m >> 4) << 6);
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): fits 8 sub-blocks of 32, stores d, dmin and
 * the packed scales, and leaves the final quants of the 256 elements in L. */
static void quant_q45_K_block(const float *x, int nmax, float rmin, int nstep, df_fp16 *d_out,
                              df_fp16 *dmin_out, uint8_t scales_out[DF_K_SCALE_SIZE],
                              uint8_t L[DF_QK_K]) {
    float weights[32], scales[8], mins[8];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        const float *xb = x + 32 * j;
        /* weight = rms of the sub-block + |x|: large values matter more, small ones still count */
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++) sum_x2 += xb[l] * xb[l];
        const float av_x = sqrtf(sum_x2 / 32.0f);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(xb[l]);
        scales[j] = fit_asymmetric(32, nmax, xb, weights, L + 32 * j, &mins[j], rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    memset(scales_out, 0, DF_K_SCALE_SIZE);
    for (int j = 0; j < 8; j++)
        k4_pack_scale_min(scales_out, j, df_round_clamp(inv_scale * scales[j], 0, 63),
                          df_round_clamp(inv_min * mins[j], 0, 63));
    *d_out = df_f32_to_fp16(max_scale / 63.0f);
    *dmin_out = df_f32_to_fp16(max_min / 63.0f);
    const float d = df_fp16_to_f32(*d_out), dmin = df_fp16_to_f32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        df_k4_scale_min(scales_out, j, &sc, &m);
        const float dl = d * (float)sc;
        if (dl == 0.0f) continue;
        const float ml = dmin * (float)m;
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)df_round_clamp((x[32 * j + l] + ml) / dl, 0, nmax);
    }
}

void df_quant_q4_K(const float *src, void *dst, int64_t n) {
    df_block_q4_K *b = dst;
    uint8_t L[DF_QK_K];
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++, src += DF_QK_K) {
        quant_q45_K_block(src, 15, -1.0f, 20, &b->d, &b->dmin, b->scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) b->qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
    }
}

void df_quant_q5_K(const float *src, void *dst, int64_t n) {
    df_block_q5_K *b = dst;
    uint8_t L[DF_QK_K];
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++, src += DF_QK_K) {
        quant_q45_K_block(src, 31, -0.5f, 15, &b->d, &b->dmin, b->scales, L);
        memset(b->qh, 0, sizeof b->qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                b->qs[32 * c + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
                b->qh[l] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
            }
    }
}

/* ---- Q6_K ---------------------------------------------------------------------------------- */

void df_quant_q6_K(const float *src, void *dst, int64_t n) {
    df_block_q6_K *b = dst;
    int8_t L[DF_QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++, src += DF_QK_K) {
        float max_scale = 0.0f, amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_symmetric(16, 32, src + 16 * j, NULL, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (amax < GROUP_EPS) {
            memset(b, 0, sizeof *b);
            continue;
        }
        /* int8 sub-block scales; the largest maps to -128 */
        const float iscale = -128.0f / max_scale;
        b->d = df_f32_to_fp16(1.0f / iscale);
        for (int j = 0; j < 16; j++) b->scales[j] = (int8_t)df_round_clamp(iscale * scales[j], -128, 127);
        const float d = df_fp16_to_f32(b->d);
        for (int j = 0; j < 16; j++) {
            const float dl = d * (float)b->scales[j];
            if (dl == 0.0f) continue;
            for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(df_round_clamp(src[16 * j + l] / dl, -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
            const int8_t *e = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((e[l] & 15) | (e[l + 64] & 15) << 4);
                ql[l + 32] = (uint8_t)((e[l + 32] & 15) | (e[l + 96] & 15) << 4);
                qh[l] = (uint8_t)((e[l] >> 4) | (e[l + 32] >> 4) << 2 | (e[l + 64] >> 4) << 4 | (e[l + 96] >> 4) << 6);
            }
        }
    }
}

/* ---- Q8_K ---------------------------------------------------------------------------------- */

/* Symmetric 8-bit with a float scale: the extreme value maps to -127 (so d takes the opposite
 * sign of that value, which is harmless), and bsums caches each 16-group's quant sum. */
void df_quant_q8_K(const float *src, void *dst, int64_t n) {
    df_block_q8_K *b = dst;
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++, src += DF_QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int e = 0; e < DF_QK_K; e++)
            if (fabsf(src[e]) > amax) {
                amax = fabsf(src[e]);
                max = src[e];
            }
        if (!(amax > 0.0f) || !isfinite(amax)) {
            /* all zero (or NaN, which never wins the comparison above), or holding an inf
             * that no finite scale can represent: encode zeros rather than garbage */
            memset(b, 0, sizeof *b);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int e = 0; e < DF_QK_K; e++) b->qs[e] = (int8_t)df_round_clamp(iscale * src[e], -127, 127);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += b->qs[16 * g + l];
            b->bsums[g] = (int16_t)s;
        }
        b->d = 1.0f / iscale;
    }
}
