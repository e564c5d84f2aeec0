/* The activation layouts of the multi-token dots (see mdot.h): each column is quantized by
 * the type's own vec_dot_type quantizer (df_quant_q8_0 / df_quant_q8_K), one block at a time,
 * and the quants and scales are then laid out the way the kernels load them. Going through
 * the reference quantizers keeps the integer quants and scales exactly those of the scalar
 * path, so the SIMD kernels and the reference differ only in float summation order. */
#include <string.h>

#include "base/alloc.h"
#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/mdot.h"

/* n + per_block * (n / block) bytes; false on a bad n. */
static bool layout_bytes(int64_t n, int64_t block, size_t per_block, size_t *out) {
    if (n < 0 || n % block != 0 || (uint64_t)n > SIZE_MAX / 2) return false;
    const uint64_t nb = (uint64_t)(n / block);
    if (nb > (SIZE_MAX - (size_t)n) / per_block) return false;
    *out = (size_t)n + (size_t)nb * per_block;
    return true;
}

bool df_mdot_act_bytes_q8s(int64_t n, size_t *out) { return layout_bytes(n, DF_QK8_0, sizeof(float), out); }
/* Q8M and Q4M: the mirrored quants (2 zero bytes per block and plane facing the weights'
 * scale), padding to a multiple of 4 (df_mdot_mirrored_scales_offset), then d and the
 * accumulator start per block. */
static bool mirrored_bytes(int64_t n, int planes, size_t *out) {
    size_t b;
    /* validates n and bounds the sizes: the padded quants are at most 2 bytes more */
    if (!layout_bytes(n, DF_QK8_0, (size_t)(2 * planes) + sizeof(float) + sizeof(int32_t) + 2, &b)) return false;
    *out = df_mdot_mirrored_scales_offset(n, planes) + (size_t)(n / DF_QK8_0) * (sizeof(float) + sizeof(int32_t));
    return true;
}
bool df_mdot_act_bytes_q8m(int64_t n, size_t *out) { return mirrored_bytes(n, 1, out); }
bool df_mdot_act_bytes_q4m(int64_t n, size_t *out) { return mirrored_bytes(n, 2, out); }
bool df_mdot_act_bytes_q8ks(int64_t n, size_t *out) {
    return layout_bytes(n, DF_QK_K, sizeof(float) + 16 * sizeof(int16_t) + 8 * sizeof(float) + 8 * sizeof(int16_t), out);
}

/* Q8S, and with sums (not NULL) the Q8R extras: the block sums of the quants. */
static void quant_q8_blocks(const float *x, void *a, int64_t n, int32_t *sums) {
    int8_t *qs = a;
    float *d = (float *)(qs + n);
    df_block_q8_0 b;
    for (int64_t i = 0; i < n / DF_QK8_0; i++) {
        df_quant_q8_0(x + i * DF_QK8_0, &b, DF_QK8_0);
        memcpy(qs + i * DF_QK8_0, b.qs, DF_QK8_0);
        d[i] = df_fp16_to_f32(b.d);
        if (sums) {
            int32_t s = 0;
            for (int j = 0; j < DF_QK8_0; j++) s += b.qs[j];
            sums[i] = s;
        }
    }
}

void df_mdot_quant_q8s(const float *x, void *a, int64_t n) { quant_q8_blocks(x, a, n, NULL); }

/* Q8M (planes 1, 34-byte blocks) and Q4M (planes 2, 18-byte blocks): the quants of block i,
 * element e, go to plane e / (32 / planes) at offset i * block_bytes + 2 + e % (32 / planes). */
static void quant_mirrored(const float *x, void *a, int64_t n, int planes, int32_t corr_scale) {
    const int64_t nb = n / DF_QK8_0;
    const int per = DF_QK8_0 / planes;
    const size_t block_bytes = 2 + (size_t)per, plane_bytes = block_bytes * (size_t)nb;
    uint8_t *o = a;
    const size_t scales = df_mdot_mirrored_scales_offset(n, planes);
    memset(o + plane_bytes * (size_t)planes, 0, scales - plane_bytes * (size_t)planes);
    float *d = (float *)(o + scales);
    int32_t *corr = (int32_t *)(d + nb);
    df_block_q8_0 b;
    for (int64_t i = 0; i < nb; i++) {
        df_quant_q8_0(x + i * DF_QK8_0, &b, DF_QK8_0);
        int32_t s = 0;
        for (int j = 0; j < DF_QK8_0; j++) s += b.qs[j];
        for (int p = 0; p < planes; p++) {
            uint8_t *blk = o + (size_t)p * plane_bytes + (size_t)i * block_bytes;
            blk[0] = blk[1] = 0;
            memcpy(blk + 2, b.qs + p * per, (size_t)per);
        }
        d[i] = df_fp16_to_f32(b.d);
        corr[i] = corr_scale * s;
    }
}

void df_mdot_quant_q8m(const float *x, void *a, int64_t n) { quant_mirrored(x, a, n, 1, -128); }
void df_mdot_quant_q4m(const float *x, void *a, int64_t n) { quant_mirrored(x, a, n, 2, -8); }

void df_mdot_quant_q8ks(const float *x, void *a, int64_t n) {
    const int64_t nsb = n / DF_QK_K;
    int8_t *qs = a;
    float *d = (float *)(qs + n);
    int16_t *bsums = (int16_t *)(d + nsb);
    float *ysum = (float *)(bsums + 16 * nsb);
    int16_t *b32 = (int16_t *)(ysum + 8 * nsb);
    df_block_q8_K b;
    for (int64_t i = 0; i < nsb; i++) {
        df_quant_q8_K(x + i * DF_QK_K, &b, DF_QK_K);
        memcpy(qs + i * DF_QK_K, b.qs, DF_QK_K);
        d[i] = b.d;
        memcpy(bsums + 16 * i, b.bsums, sizeof b.bsums);
        for (int j = 0; j < 8; j++) {
            const int s = b.bsums[2 * j] + b.bsums[2 * j + 1]; /* |s| <= 32 * 127: fits int16 */
            b32[8 * i + j] = (int16_t)s;
            ysum[8 * i + j] = b.d * (float)s;
        }
    }
}
