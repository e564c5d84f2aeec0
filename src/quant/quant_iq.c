/* The non-linear 4-bit formats IQ4_NL (32-element blocks, one fp16 scale) and IQ4_XS
 * (256-element super-blocks, eight 6-bit sub-block scales). A nibble does not encode a number
 * directly; it indexes a fixed 16-entry grid that is denser near zero, which suits the
 * bell-shaped distribution of weights better than a uniform grid. Nibble order within a
 * 32-element group is the legacy one: byte j holds element j (low) and element j + 16 (high). */
#include <math.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/round.h"

const int8_t df_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};

/* ---- dequantize ------------------------------------------------------------------------ */

static void decode_group(const uint8_t qs[16], float dl, float *dst) {
    for (int j = 0; j < 16; j++) {
        dst[j] = dl * (float)df_iq4nl_values[qs[j] & 15];
        dst[j + 16] = dl * (float)df_iq4nl_values[qs[j] >> 4];
    }
}

/* The 6-bit scale of IQ4_XS sub-block ib, without its +32 bias. */
static inline int iq4_xs_scale(const df_block_iq4_xs *b, int ib) {
    const int low = (b->scales_l[ib / 2] >> (4 * (ib % 2))) & 15;
    const int high = (b->scales_h >> (2 * ib)) & 3;
    return (low | high << 4) - 32;
}

void df_dequant_iq4_nl(const void *src, float *dst, int64_t n) {
    const df_block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / DF_QK4_NL; i++, b++, dst += DF_QK4_NL)
        decode_group(b->qs, df_fp16_to_f32(b->d), dst);
}

void df_dequant_iq4_xs(const void *src, float *dst, int64_t n) {
    const df_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++) {
        const float d = df_fp16_to_f32(b->d);
        for (int ib = 0; ib < 8; ib++, dst += 32) decode_group(b->qs + 16 * ib, d * (float)iq4_xs_scale(b, ib), dst);
    }
}

/* ---- quantize -------------------------------------------------------------------------- */

/* Midpoints between neighbouring grid values: v belongs to the grid value whose interval
 * (between the midpoints around it) contains it. */
static const float k_midpoints[15] = {-115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
                                      7.0f,    19.0f,  31.5f, 45.5f,  61.0f,  79.0f,  101.0f};

/* Index of the grid value nearest to v (v in grid units): the number of midpoints below v,
 * found by binary search. NaN compares false everywhere and lands on index 0. */
static inline int grid_index(float v) {
    int idx = 0;
    for (int step = 8; step > 0; step >>= 1)
        if (v > k_midpoints[idx + step - 1]) idx += step;
    return idx;
}

/* Fits one group of 32 to d * grid[L]. Candidate inverse scales put the extreme value at
 * grid[0] +- up to `ntry` grid units; each candidate's indices get their weighted
 * least-squares scale, and the best (largest sum(w*x*g)^2 / sum(w*g^2), i.e. least error)
 * wins. Weights are x^2, as in the K-quant reference fits. Returns the scale (0 for a zero
 * group), with indices in L. */
static float fit_grid(const float *x, uint8_t L[32], int ntry) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    memset(L, 0, 32);
    if (!(amax > 1e-15f) || !isfinite(amax)) return 0.0f;
    float best_d = 0.0f, best_num = 0.0f, best_den = 1.0f;
    for (int t = -ntry; t <= ntry; t++) {
        const float id = ((float)t + (float)df_iq4nl_values[0]) / max;
        float sxg = 0.0f, sgg = 0.0f;
        uint8_t Lt[32];
        for (int j = 0; j < 32; j++) {
            Lt[j] = (uint8_t)grid_index(id * x[j]);
            const float g = (float)df_iq4nl_values[Lt[j]], w = x[j] * x[j];
            sxg += w * x[j] * g;
            sgg += w * g * g;
        }
        if (sgg > 0.0f && sxg * sxg * best_den > best_num * sgg) {
            best_num = sxg * sxg;
            best_den = sgg;
            best_d = sxg / sgg;
            memcpy(L, Lt, 32);
        }
    }
    return best_d;
}

/* Picks each element's index for the scale the decoder will use (after fp16 rounding). */
static void requantize_group(const float *x, float d, uint8_t L[32]) {
    if (d == 0.0f) return;
    const float id = 1.0f / d;
    for (int j = 0; j < 32; j++) L[j] = (uint8_t)grid_index(id * x[j]);
}

static void pack_nibbles(const uint8_t L[32], uint8_t qs[16]) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
}

void df_quant_iq4_nl(const float *src, void *dst, int64_t n) {
    df_block_iq4_nl *b = dst;
    uint8_t L[32];
    for (int64_t i = 0; i < n / DF_QK4_NL; i++, b++, src += DF_QK4_NL) {
        b->d = df_f32_to_fp16(fit_grid(src, L, 7));
        requantize_group(src, df_fp16_to_f32(b->d), L);
        pack_nibbles(L, b->qs);
    }
}

void df_quant_iq4_xs(const float *src, void *dst, int64_t n) {
    df_block_iq4_xs *b = dst;
    uint8_t L[DF_QK_K];
    float scales[8];
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++, src += DF_QK_K) {
        float amax = 0.0f, max_scale = 0.0f;
        for (int ib = 0; ib < 8; ib++) {
            scales[ib] = fit_grid(src + 32 * ib, L + 32 * ib, 7);
            if (fabsf(scales[ib]) > amax) {
                amax = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        memset(b, 0, sizeof *b);
        if (amax == 0.0f) continue;
        /* 6-bit signed sub-block scales: the largest maps to -32 */
        const float d = max_scale / -32.0f;
        b->d = df_f32_to_fp16(d);
        const float dh = df_fp16_to_f32(b->d);
        for (int ib = 0; ib < 8; ib++) {
            const int l = dh != 0.0f ? df_round_clamp(scales[ib] / dh, -32, 31) : 0;
            const int ls = l + 32;
            b->scales_l[ib / 2] |= (uint8_t)((ls & 15) << (4 * (ib % 2)));
            b->scales_h |= (uint16_t)((ls >> 4) << (2 * ib));
            requantize_group(src + 32 * ib, dh * (float)l, L + 32 * ib);
            pack_nibbles(L + 32 * ib, b->qs + 16 * ib);
        }
    }
}

/* ---- dot products ---------------------------------------------------------------------- */

static inline int dot_group(const uint8_t qs[16], const int8_t *qy) {
    int s = 0;
    for (int j = 0; j < 16; j++) {
        s += df_iq4nl_values[qs[j] & 15] * qy[j];
        s += df_iq4nl_values[qs[j] >> 4] * qy[j + 16];
    }
    return s;
}

float df_dot_iq4_nl_q8_0(const void *vx, const void *vy, int64_t n) {
    const df_block_iq4_nl *x = vx;
    const df_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / DF_QK4_NL; i++)
        sum += (float)dot_group(x[i].qs, y[i].qs) * (df_fp16_to_f32(x[i].d) * df_fp16_to_f32(y[i].d));
    return sum;
}

float df_dot_iq4_xs_q8_K(const void *vx, const void *vy, int64_t n) {
    const df_block_iq4_xs *x = vx;
    const df_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / DF_QK_K; i++) {
        int sumi = 0;
        for (int ib = 0; ib < 8; ib++) sumi += iq4_xs_scale(&x[i], ib) * dot_group(x[i].qs + 16 * ib, y[i].qs + 32 * ib);
        sum += df_fp16_to_f32(x[i].d) * y[i].d * (float)sumi;
    }
    return sum;
}
