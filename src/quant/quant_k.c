/* K-quants: decoding and dot products of Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and Q8_K (the
 * activation format they are dotted with). The quantizers live in quant_k_quantize.c.
 *
 * Each format gets one "unpack" function that turns a block's bit fields into plain integer
 * quants (element order) and sub-block scales. Dequantize and dot are then written against
 * that one walk of the layout, so the two cannot disagree about where a bit lives. The scalar
 * code favours being obviously right; dot_avx2.c has the fast versions of the hot ones.
 *
 * Dots against Q8_K (y = dy * qy, with bsums[g] = sum of qy over elements 16g..16g+15):
 *   type-0 (Q3_K, Q6_K):  d * dy * sum_sub scale_sub * sum(q * qy)
 *   type-1 (Q2_K, Q4_K, Q5_K): the same minus dmin * dy * sum_sub min_sub * sum(qy over sub),
 *   where the last sum comes from bsums without touching qy. All inner sums are exact ints. */
#include <string.h>

#include "quant/blocks.h"
#include "quant/kernels.h"

/* ---- unpacking -------------------------------------------------------------------------- */

/* Q2_K: element e = 128h + 32k + l sits in bits 2k..2k+1 of qs[32h + l]. */
static void q2_K_unpack(const df_block_q2_K *b, uint8_t q[DF_QK_K]) {
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) q[128 * h + 32 * k + l] = (b->qs[32 * h + l] >> (2 * k)) & 3;
}

/* Q3_K: the low two bits as in Q2_K; the third bit of element e = 128h + 32k + l is bit
 * 4h + k of hmask[l], and a clear bit means "subtract 4", giving quants in [-4, 3]. */
static void q3_K_unpack(const df_block_q3_K *b, int8_t q[DF_QK_K], int scale[16]) {
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                const int low = (b->qs[32 * h + l] >> (2 * k)) & 3;
                const int high = (b->hmask[l] >> (4 * h + k)) & 1;
                q[128 * h + 32 * k + l] = (int8_t)(low - (high ? 0 : 4));
            }
    /* 16 six-bit scales: low nibbles in bytes 0..7 (sub-block j < 8 low nibble of byte j,
     * j >= 8 high nibble of byte j - 8), the top two bits in bytes 8..11 (byte 8 + j % 4,
     * bit pair j / 4). Stored with a +32 bias. */
    for (int j = 0; j < 16; j++) {
        const int low = j < 8 ? b->scales[j] & 15 : b->scales[j - 8] >> 4;
        const int high = (b->scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        scale[j] = (low | high << 4) - 32;
    }
}

/* Q4_K: 4 chunks of 32 bytes; chunk c holds elements 64c..64c+31 in its low nibbles and
 * 64c+32..64c+63 in its high nibbles. Q5_K adds bit 2c (low) / 2c+1 (high) of qh[l]. */
static void q4_K_unpack(const uint8_t *qs, const uint8_t *qh, uint8_t q[DF_QK_K]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = qs[32 * c + l] & 15, hi = qs[32 * c + l] >> 4;
            if (qh) {
                lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            q[64 * c + l] = (uint8_t)lo;
            q[64 * c + 32 + l] = (uint8_t)hi;
        }
}

/* Q6_K: two halves of 128 elements, each with 64 bytes of ql and 32 of qh. In half h, for
 * l < 32: elements l, l+32, l+64, l+96 take the low nibble of ql[l], the low nibble of
 * ql[l+32], the high nibble of ql[l], the high nibble of ql[l+32], and bit pairs 0, 1, 2, 3 of
 * qh[l] as their top two bits. Quants are stored with a +32 bias. */
static void q6_K_unpack(const df_block_q6_K *b, int8_t q[DF_QK_K]) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int8_t *o = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
        }
    }
}

/* ---- dequantize ------------------------------------------------------------------------- */

void df_dequant_q2_K(const void *src, float *dst, int64_t n) {
    const df_block_q2_K *b = src;
    uint8_t q[DF_QK_K];
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++) {
        const float d = df_fp16_to_f32(b->d), dmin = df_fp16_to_f32(b->dmin);
        q2_K_unpack(b, q);
        for (int j = 0; j < 16; j++) {
            const float dl = d * (float)(b->scales[j] & 15), ml = dmin * (float)(b->scales[j] >> 4);
            for (int l = 0; l < 16; l++) *dst++ = dl * (float)q[16 * j + l] - ml;
        }
    }
}

void df_dequant_q3_K(const void *src, float *dst, int64_t n) {
    const df_block_q3_K *b = src;
    int8_t q[DF_QK_K];
    int scale[16];
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++) {
        const float d = df_fp16_to_f32(b->d);
        q3_K_unpack(b, q, scale);
        for (int j = 0; j < 16; j++) {
            const float dl = d * (float)scale[j];
            for (int l = 0; l < 16; l++) *dst++ = dl * (float)q[16 * j + l];
        }
    }
}

static void dequant_q45_K(const df_fp16 dh, const df_fp16 dminh, const uint8_t *scales,
                          const uint8_t *q, float *dst) {
    const float d = df_fp16_to_f32(dh), dmin = df_fp16_to_f32(dminh);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        df_k4_scale_min(scales, j, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        for (int l = 0; l < 32; l++) dst[32 * j + l] = dl * (float)q[32 * j + l] - ml;
    }
}

void df_dequant_q4_K(const void *src, float *dst, int64_t n) {
    const df_block_q4_K *b = src;
    uint8_t q[DF_QK_K];
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++, dst += DF_QK_K) {
        q4_K_unpack(b->qs, NULL, q);
        dequant_q45_K(b->d, b->dmin, b->scales, q, dst);
    }
}

void df_dequant_q5_K(const void *src, float *dst, int64_t n) {
    const df_block_q5_K *b = src;
    uint8_t q[DF_QK_K];
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++, dst += DF_QK_K) {
        q4_K_unpack(b->qs, b->qh, q);
        dequant_q45_K(b->d, b->dmin, b->scales, q, dst);
    }
}

void df_dequant_q6_K(const void *src, float *dst, int64_t n) {
    const df_block_q6_K *b = src;
    int8_t q[DF_QK_K];
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++) {
        const float d = df_fp16_to_f32(b->d);
        q6_K_unpack(b, q);
        for (int e = 0; e < DF_QK_K; e++) *dst++ = d * (float)b->scales[e / 16] * (float)q[e];
    }
}

void df_dequant_q8_K(const void *src, float *dst, int64_t n) {
    const df_block_q8_K *b = src;
    for (int64_t i = 0; i < n / DF_QK_K; i++, b++)
        for (int e = 0; e < DF_QK_K; e++) *dst++ = b->d * (float)b->qs[e];
}

/* ---- dot products against Q8_K ---------------------------------------------------------- */

/* sum(q[l] * qy[l]) for l < len: the exact integer inner sums of the dots. */
static inline int dot_u8_i8(const uint8_t *q, const int8_t *qy, int len) {
    int s = 0;
    for (int l = 0; l < len; l++) s += q[l] * qy[l];
    return s;
}
static inline int dot_i8_i8(const int8_t *q, const int8_t *qy, int len) {
    int s = 0;
    for (int l = 0; l < len; l++) s += q[l] * qy[l];
    return s;
}

float df_dot_q2_K_q8_K(const void *vx, const void *vy, int64_t n) {
    const df_block_q2_K *x = vx;
    const df_block_q8_K *y = vy;
    uint8_t q[DF_QK_K];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / DF_QK_K; i++) {
        q2_K_unpack(&x[i], q);
        int sumi = 0, summ = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (x[i].scales[j] & 15) * dot_u8_i8(q + 16 * j, y[i].qs + 16 * j, 16);
            summ += (x[i].scales[j] >> 4) * y[i].bsums[j];
        }
        sum += y[i].d * df_fp16_to_f32(x[i].d) * (float)sumi -
               y[i].d * df_fp16_to_f32(x[i].dmin) * (float)summ;
    }
    return sum;
}

float df_dot_q3_K_q8_K(const void *vx, const void *vy, int64_t n) {
    const df_block_q3_K *x = vx;
    const df_block_q8_K *y = vy;
    int8_t q[DF_QK_K];
    int scale[16];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / DF_QK_K; i++) {
        q3_K_unpack(&x[i], q, scale);
        int sumi = 0;
        for (int j = 0; j < 16; j++) sumi += scale[j] * dot_i8_i8(q + 16 * j, y[i].qs + 16 * j, 16);
        sum += y[i].d * df_fp16_to_f32(x[i].d) * (float)sumi;
    }
    return sum;
}

static float dot_q45_K_block(df_fp16 dh, df_fp16 dminh, const uint8_t *scales, const uint8_t *q,
                             const df_block_q8_K *y) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        df_k4_scale_min(scales, j, &sc, &m);
        sumi += sc * dot_u8_i8(q + 32 * j, y->qs + 32 * j, 32);
        summ += m * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    return y->d * df_fp16_to_f32(dh) * (float)sumi - y->d * df_fp16_to_f32(dminh) * (float)summ;
}

float df_dot_q4_K_q8_K(const void *vx, const void *vy, int64_t n) {
    const df_block_q4_K *x = vx;
    const df_block_q8_K *y = vy;
    uint8_t q[DF_QK_K];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / DF_QK_K; i++) {
        q4_K_unpack(x[i].qs, NULL, q);
        sum += dot_q45_K_block(x[i].d, x[i].dmin, x[i].scales, q, &y[i]);
    }
    return sum;
}

float df_dot_q5_K_q8_K(const void *vx, const void *vy, int64_t n) {
    const df_block_q5_K *x = vx;
    const df_block_q8_K *y = vy;
    uint8_t q[DF_QK_K];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / DF_QK_K; i++) {
        q4_K_unpack(x[i].qs, x[i].qh, q);
        sum += dot_q45_K_block(x[i].d, x[i].dmin, x[i].scales, q, &y[i]);
    }
    return sum;
}

float df_dot_q6_K_q8_K(const void *vx, const void *vy, int64_t n) {
    const df_block_q6_K *x = vx;
    const df_block_q8_K *y = vy;
    int8_t q[DF_QK_K];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / DF_QK_K; i++) {
        q6_K_unpack(&x[i], q);
        int sumi = 0;
        for (int j = 0; j < 16; j++) sumi += x[i].scales[j] * dot_i8_i8(q + 16 * j, y[i].qs + 16 * j, 16);
        sum += y[i].d * df_fp16_to_f32(x[i].d) * (float)sumi;
    }
    return sum;
}
