/* The legacy 32-element formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q8_1.
 *
 * Every block splits its 32 elements into two halves: byte j of qs holds element j in its low
 * nibble and element j + 16 in its high nibble. The 5-bit formats keep each element's fifth
 * bit in a 32-bit little-endian mask (bit j for element j).
 *
 * The quantizers follow llama.cpp's reference ones step for step (scale from the extreme
 * value, the same rounding), so that a tensor quantized here comes out as the same bytes as
 * one quantized by llama.cpp from the same floats (the rules are pinned by known-answer
 * tests; no byte comparison against llama.cpp itself has been run). */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/round.h"

static inline uint32_t load_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}
static inline void store_qh(uint8_t qh[4], uint32_t v) {
    qh[0] = (uint8_t)v;
    qh[1] = (uint8_t)(v >> 8);
    qh[2] = (uint8_t)(v >> 16);
    qh[3] = (uint8_t)(v >> 24);
}

/* The signed value of largest magnitude (the first one on ties); 0 for an all-zero block. */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *min_out, float *max_out) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    *min_out = min;
    *max_out = max;
}

/* ---- dequantize ---------------------------------------------------------------------- */

void df_dequant_q4_0(const void *src, float *dst, int64_t n) {
    const df_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / DF_QK4_0; i++, b++, dst += DF_QK4_0) {
        const float d = df_fp16_to_f32(b->d);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)((b->qs[j] & 15) - 8);
            dst[j + 16] = d * (float)((b->qs[j] >> 4) - 8);
        }
    }
}

void df_dequant_q4_1(const void *src, float *dst, int64_t n) {
    const df_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / DF_QK4_1; i++, b++, dst += DF_QK4_1) {
        const float d = df_fp16_to_f32(b->d), m = df_fp16_to_f32(b->m);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)(b->qs[j] & 15) + m;
            dst[j + 16] = d * (float)(b->qs[j] >> 4) + m;
        }
    }
}

void df_dequant_q5_0(const void *src, float *dst, int64_t n) {
    const df_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / DF_QK5_0; i++, b++, dst += DF_QK5_0) {
        const float d = df_fp16_to_f32(b->d);
        const uint32_t qh = load_qh(b->qh);
        for (int j = 0; j < 16; j++) {
            const int lo = (b->qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            const int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = d * (float)(lo - 16);
            dst[j + 16] = d * (float)(hi - 16);
        }
    }
}

void df_dequant_q5_1(const void *src, float *dst, int64_t n) {
    const df_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / DF_QK5_1; i++, b++, dst += DF_QK5_1) {
        const float d = df_fp16_to_f32(b->d), m = df_fp16_to_f32(b->m);
        const uint32_t qh = load_qh(b->qh);
        for (int j = 0; j < 16; j++) {
            const int lo = (b->qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            const int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = d * (float)lo + m;
            dst[j + 16] = d * (float)hi + m;
        }
    }
}

void df_dequant_q8_0(const void *src, float *dst, int64_t n) {
    const df_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / DF_QK8_0; i++, b++, dst += DF_QK8_0) {
        const float d = df_fp16_to_f32(b->d);
        for (int j = 0; j < DF_QK8_0; j++) dst[j] = d * (float)b->qs[j];
    }
}

void df_dequant_q8_1(const void *src, float *dst, int64_t n) {
    const df_block_q8_1 *b = src;
    for (int64_t i = 0; i < n / DF_QK8_1; i++, b++, dst += DF_QK8_1) {
        const float d = df_fp16_to_f32(b->d);
        for (int j = 0; j < DF_QK8_1; j++) dst[j] = d * (float)b->qs[j];
    }
}

/* ---- quantize ------------------------------------------------------------------------ */

/* Q4_0: the extreme value maps to -8 (the one code with no positive twin), so d = max / -8
 * and the other end of the range clips at +7. */
void df_quant_q4_0(const float *src, void *dst, int64_t n) {
    df_block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / DF_QK4_0; i++, b++, src += DF_QK4_0) {
        const float d = signed_absmax(src, DF_QK4_0) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = df_f32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            const int lo = df_trunc_clamp(src[j] * id + 8.5f, 0, 15);
            const int hi = df_trunc_clamp(src[j + 16] * id + 8.5f, 0, 15);
            b->qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

void df_quant_q4_1(const float *src, void *dst, int64_t n) {
    df_block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / DF_QK4_1; i++, b++, src += DF_QK4_1) {
        float min, max;
        min_max(src, DF_QK4_1, &min, &max);
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = df_f32_to_fp16(d);
        b->m = df_f32_to_fp16(min);
        for (int j = 0; j < 16; j++) {
            const int lo = df_trunc_clamp((src[j] - min) * id + 0.5f, 0, 15);
            const int hi = df_trunc_clamp((src[j + 16] - min) * id + 0.5f, 0, 15);
            b->qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

void df_quant_q5_0(const float *src, void *dst, int64_t n) {
    df_block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / DF_QK5_0; i++, b++, src += DF_QK5_0) {
        const float d = signed_absmax(src, DF_QK5_0) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = df_f32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const int lo = df_trunc_clamp(src[j] * id + 16.5f, 0, 31);
            const int hi = df_trunc_clamp(src[j + 16] * id + 16.5f, 0, 31);
            b->qs[j] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            qh |= (uint32_t)(lo >> 4) << j;
            qh |= (uint32_t)(hi >> 4) << (j + 16);
        }
        store_qh(b->qh, qh);
    }
}

void df_quant_q5_1(const float *src, void *dst, int64_t n) {
    df_block_q5_1 *b = dst;
    for (int64_t i = 0; i < n / DF_QK5_1; i++, b++, src += DF_QK5_1) {
        float min, max;
        min_max(src, DF_QK5_1, &min, &max);
        const float d = (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = df_f32_to_fp16(d);
        b->m = df_f32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const int lo = df_trunc_clamp((src[j] - min) * id + 0.5f, 0, 31);
            const int hi = df_trunc_clamp((src[j + 16] - min) * id + 0.5f, 0, 31);
            b->qs[j] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            qh |= (uint32_t)(lo >> 4) << j;
            qh |= (uint32_t)(hi >> 4) << (j + 16);
        }
        store_qh(b->qh, qh);
    }
}

/* Symmetric 8-bit: d = absmax / 127, round half away from zero. */
static float quant_8bit_block(const float *x, int8_t *qs, int *sum) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int s = 0;
    for (int j = 0; j < 32; j++) {
        qs[j] = (int8_t)df_round_away_clamp(x[j] * id, -127, 127);
        s += qs[j];
    }
    *sum = s;
    return d;
}

void df_quant_q8_0(const float *src, void *dst, int64_t n) {
    df_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / DF_QK8_0; i++, b++, src += DF_QK8_0) {
        int sum;
        b->d = df_f32_to_fp16(quant_8bit_block(src, b->qs, &sum));
    }
}

void df_quant_q8_1(const float *src, void *dst, int64_t n) {
    df_block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / DF_QK8_1; i++, b++, src += DF_QK8_1) {
        int sum;
        const float d = quant_8bit_block(src, b->qs, &sum);
        b->d = df_f32_to_fp16(d);
        b->s = df_f32_to_fp16((float)sum * d);
    }
}

/* ---- dot products -------------------------------------------------------------------- */
/* Each block's integer sum is exact; only the per-block scaling and the running sum round. */

float df_dot_q4_0_q8_0(const void *vx, const void *vy, int64_t n) {
    const df_block_q4_0 *x = vx;
    const df_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / DF_QK4_0; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += ((x[i].qs[j] & 15) - 8) * y[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        }
        sum += (float)sumi * (df_fp16_to_f32(x[i].d) * df_fp16_to_f32(y[i].d));
    }
    return sum;
}

/* x = d*q + m against y = dy*qy: sum = d*dy*sum(q*qy) + m*dy*sum(qy). ggml pairs these types
 * with Q8_1, whose s field caches dy*sum(qy) but only to fp16 precision; summing the 32 quants
 * here costs little and keeps the integer part exact, so we pair them with Q8_0. */
float df_dot_q4_1_q8_0(const void *vx, const void *vy, int64_t n) {
    const df_block_q4_1 *x = vx;
    const df_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / DF_QK4_1; i++) {
        int sumi = 0, sumy = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (x[i].qs[j] & 15) * y[i].qs[j];
            sumi += (x[i].qs[j] >> 4) * y[i].qs[j + 16];
            sumy += y[i].qs[j] + y[i].qs[j + 16];
        }
        const float dy = df_fp16_to_f32(y[i].d);
        sum += (float)sumi * (df_fp16_to_f32(x[i].d) * dy) + df_fp16_to_f32(x[i].m) * (dy * (float)sumy);
    }
    return sum;
}

float df_dot_q5_0_q8_0(const void *vx, const void *vy, int64_t n) {
    const df_block_q5_0 *x = vx;
    const df_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / DF_QK5_0; i++) {
        const uint32_t qh = load_qh(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            const int lo = ((x[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4) - 16;
            const int hi = ((x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - 16;
            sumi += lo * y[i].qs[j] + hi * y[i].qs[j + 16];
        }
        sum += (float)sumi * (df_fp16_to_f32(x[i].d) * df_fp16_to_f32(y[i].d));
    }
    return sum;
}

float df_dot_q5_1_q8_0(const void *vx, const void *vy, int64_t n) {
    const df_block_q5_1 *x = vx;
    const df_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / DF_QK5_1; i++) {
        const uint32_t qh = load_qh(x[i].qh);
        int sumi = 0, sumy = 0;
        for (int j = 0; j < 16; j++) {
            const int lo = (x[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            const int hi = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            sumi += lo * y[i].qs[j] + hi * y[i].qs[j + 16];
            sumy += y[i].qs[j] + y[i].qs[j + 16];
        }
        const float dy = df_fp16_to_f32(y[i].d);
        sum += (float)sumi * (df_fp16_to_f32(x[i].d) * dy) + df_fp16_to_f32(x[i].m) * (dy * (float)sumy);
    }
    return sum;
}

float df_dot_q8_0_q8_0(const void *vx, const void *vy, int64_t n) {
    const df_block_q8_0 *x = vx;
    const df_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / DF_QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < DF_QK8_0; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sum += (float)sumi * (df_fp16_to_f32(x[i].d) * df_fp16_to_f32(y[i].d));
    }
    return sum;
}
