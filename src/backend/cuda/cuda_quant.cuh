/* Device-side decoding of the GGUF weight types the CUDA backend computes with: 8 consecutive
 * elements of a row at a time (e % 8 == 0), which is the unit of the matmul, of get_rows and
 * of the f16 dequantization in front of cuBLAS. One decoder per type, so the three cannot
 * disagree about where a bit lives. The layouts are those of quant/blocks.h; the arithmetic
 * follows the CPU's df_dequant_* (quant/quant_k.c, quant/quant_legacy.c) operation for
 * operation, so a dequantized weight is the same float on both backends.
 *
 * Type-1 formats (x = d * q + m) round the product and the sum separately (__fmul_rn,
 * __fadd_rn), as the CPU's plain C does, instead of letting the compiler fuse them.
 *
 * Alignment: a tensor's device copy starts on a 256-byte boundary and rows are whole blocks,
 * so a block starts at a multiple of its size. Types whose block size is odd in 4 (Q4_0 18,
 * Q5_0 22, Q8_0 34, Q3_K 110, Q6_K 210 bytes) are read 16 bits at a time. */
#ifndef DF_BACKEND_CUDA_QUANT_CUH
#define DF_BACKEND_CUDA_QUANT_CUH

#include "backend/cuda/cuda_internal.h"

__device__ __forceinline__ float cu_f16(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float cu_bf16(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }

__device__ __forceinline__ uint16_t cu_ld16(const uint8_t *p) { return *(const uint16_t *)p; }
/* 4 bytes from a 2-byte aligned address. */
__device__ __forceinline__ uint32_t cu_ld32_a2(const uint8_t *p) {
    const uint16_t *q = (const uint16_t *)p;
    return (uint32_t)q[0] | (uint32_t)q[1] << 16;
}
__device__ __forceinline__ void cu_ld8_a2(const uint8_t *p, uint8_t b[8]) {
    const uint16_t *q = (const uint16_t *)p;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint16_t v = q[i];
        b[2 * i] = (uint8_t)v;
        b[2 * i + 1] = (uint8_t)(v >> 8);
    }
}
__device__ __forceinline__ void cu_ld8_a8(const uint8_t *p, uint8_t b[8]) {
    const uint2 v = *(const uint2 *)p;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        b[i] = (uint8_t)(v.x >> (8 * i));
        b[4 + i] = (uint8_t)(v.y >> (8 * i));
    }
}

/* The Q4_K / Q5_K 6-bit scale and min of sub-block j (df_k4_scale_min). */
__device__ __forceinline__ void cu_k4_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

template <int T> struct cu_dq;

template <> struct cu_dq<DF_TYPE_F32> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const float4 *p = (const float4 *)((const float *)row + e);
        const float4 a = p[0], b = p[1];
        o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w;
        o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
    }
    static __device__ __forceinline__ float dec1(const uint8_t *row, int e) { return ((const float *)row)[e]; }
};

template <> struct cu_dq<DF_TYPE_F16> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const uint4 v = *(const uint4 *)((const uint16_t *)row + e);
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            o[2 * i] = cu_f16((uint16_t)w[i]);
            o[2 * i + 1] = cu_f16((uint16_t)(w[i] >> 16));
        }
    }
    static __device__ __forceinline__ float dec1(const uint8_t *row, int e) {
        return cu_f16(((const uint16_t *)row)[e]);
    }
};

template <> struct cu_dq<DF_TYPE_BF16> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const uint4 v = *(const uint4 *)((const uint16_t *)row + e);
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            o[2 * i] = cu_bf16((uint16_t)w[i]);
            o[2 * i + 1] = cu_bf16((uint16_t)(w[i] >> 16));
        }
    }
    static __device__ __forceinline__ float dec1(const uint8_t *row, int e) {
        return cu_bf16(((const uint16_t *)row)[e]);
    }
};

/* Q4_0: x[j] = d * ((qs[j] & 15) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8). */
template <> struct cu_dq<DF_TYPE_Q4_0> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const uint8_t *b = row + (e / 32) * 18;
        const int j = e % 32;
        const float d = cu_f16(cu_ld16(b));
        uint8_t q[8];
        cu_ld8_a2(b + 2 + (j % 16), q);
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = d * (float)((j < 16 ? (q[i] & 15) : (q[i] >> 4)) - 8);
    }
};

/* Q4_1: x = d * nibble + m. */
template <> struct cu_dq<DF_TYPE_Q4_1> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const uint8_t *b = row + (e / 32) * 20;
        const int j = e % 32;
        const uint32_t dm = *(const uint32_t *)b;
        const float d = cu_f16((uint16_t)dm), m = cu_f16((uint16_t)(dm >> 16));
        uint8_t q[8];
        const uint32_t *p = (const uint32_t *)(b + 4 + (j % 16));
        const uint32_t w0 = p[0], w1 = p[1];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            q[i] = (uint8_t)(w0 >> (8 * i));
            q[4 + i] = (uint8_t)(w1 >> (8 * i));
        }
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = __fadd_rn(__fmul_rn(d, (float)(j < 16 ? (q[i] & 15) : (q[i] >> 4))), m);
    }
};

/* Q5_0: the 5th bit of element j is bit j of the little-endian u32 qh; x = d * (q - 16). */
template <> struct cu_dq<DF_TYPE_Q5_0> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const uint8_t *b = row + (e / 32) * 22;
        const int j = e % 32;
        const float d = cu_f16(cu_ld16(b));
        const uint32_t qh = cu_ld32_a2(b + 2);
        uint8_t q[8];
        cu_ld8_a2(b + 6 + (j % 16), q);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int nib = j < 16 ? (q[i] & 15) : (q[i] >> 4);
            o[i] = d * (float)((nib | (int)((qh >> (j + i)) & 1) << 4) - 16);
        }
    }
};

/* Q5_1: q5_0's bits, x = d * q + m. */
template <> struct cu_dq<DF_TYPE_Q5_1> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const uint8_t *b = row + (e / 32) * 24;
        const int j = e % 32;
        const uint32_t dm = *(const uint32_t *)b;
        const float d = cu_f16((uint16_t)dm), m = cu_f16((uint16_t)(dm >> 16));
        const uint32_t qh = *(const uint32_t *)(b + 4);
        uint8_t q[8];
        cu_ld8_a8(b + 8 + (j % 16), q);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int nib = j < 16 ? (q[i] & 15) : (q[i] >> 4);
            o[i] = __fadd_rn(__fmul_rn(d, (float)(nib | (int)((qh >> (j + i)) & 1) << 4)), m);
        }
    }
};

/* Q8_0: x = d * qs. */
template <> struct cu_dq<DF_TYPE_Q8_0> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const uint8_t *b = row + (e / 32) * 34;
        const float d = cu_f16(cu_ld16(b));
        uint8_t q[8];
        cu_ld8_a2(b + 2 + e % 32, q);
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = d * (float)(int8_t)q[i];
    }
};

/* Q2_K: element e = 128h + 32k + l is bits 2k..2k+1 of qs[32h + l]; sub-block e / 16 has
 * scale (low nibble) and min (high nibble): x = d * sc * q - dmin * m. */
template <> struct cu_dq<DF_TYPE_Q2_K> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const uint8_t *b = row + (e / 256) * 84;
        const int i = e % 256, h = i / 128, k = (i % 128) / 32, l = i % 32;
        const uint32_t dd = *(const uint32_t *)(b + 80);
        const float d = cu_f16((uint16_t)dd), dmin = cu_f16((uint16_t)(dd >> 16));
        const uint8_t s = b[i / 16];
        const float dl = d * (float)(s & 15), ml = dmin * (float)(s >> 4);
        uint8_t q[8];
        const uint32_t *p = (const uint32_t *)(b + 16 + 32 * h + l);
        const uint32_t w0 = p[0], w1 = p[1];
#pragma unroll
        for (int t = 0; t < 4; t++) {
            q[t] = (uint8_t)(w0 >> (8 * t));
            q[4 + t] = (uint8_t)(w1 >> (8 * t));
        }
#pragma unroll
        for (int t = 0; t < 8; t++) o[t] = __fsub_rn(__fmul_rn(dl, (float)((q[t] >> (2 * k)) & 3)), ml);
    }
};

/* Q3_K: the low two bits as Q2_K, the third bit (clear means -4) is bit 4h + k of hmask[l];
 * 16 six-bit scales stored +32. x = (d * scale) * q. */
template <> struct cu_dq<DF_TYPE_Q3_K> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const uint8_t *b = row + (e / 256) * 110;
        const int i = e % 256, h = i / 128, k = (i % 128) / 32, l = i % 32, j = i / 16;
        const float d = cu_f16(cu_ld16(b + 108));
        const uint8_t *s = b + 96;
        const int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
        const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        const float dl = d * (float)((lo | hi << 4) - 32);
        uint8_t q[8], hm[8];
        cu_ld8_a2(b + 32 + 32 * h + l, q);
        cu_ld8_a2(b + l, hm);
#pragma unroll
        for (int t = 0; t < 8; t++) {
            const int v = ((q[t] >> (2 * k)) & 3) - (((hm[t] >> (4 * h + k)) & 1) ? 0 : 4);
            o[t] = dl * (float)v;
        }
    }
};

/* Q4_K: chunk c = e / 64 of 32 bytes holds elements 64c.. in its low nibbles and 64c+32.. in
 * its high ones; sub-block e / 32 has a 6-bit scale and min: x = (d * sc) * q - dmin * m. */
template <> struct cu_dq<DF_TYPE_Q4_K> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const uint8_t *b = row + (e / 256) * 144;
        const int i = e % 256, c = i / 64, hi = (i % 64) >= 32, l = i % 32;
        const uint32_t dd = *(const uint32_t *)b;
        const float d = cu_f16((uint16_t)dd), dmin = cu_f16((uint16_t)(dd >> 16));
        int sc, m;
        cu_k4_scale_min(b + 4, i / 32, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        uint8_t q[8];
        cu_ld8_a8(b + 16 + 32 * c + l, q);
#pragma unroll
        for (int t = 0; t < 8; t++) o[t] = __fsub_rn(__fmul_rn(dl, (float)(hi ? q[t] >> 4 : q[t] & 15)), ml);
    }
};

/* Q5_K: Q4_K plus bit 2c (low nibbles) or 2c + 1 (high) of qh[l] as the 5th bit. */
template <> struct cu_dq<DF_TYPE_Q5_K> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const uint8_t *b = row + (e / 256) * 176;
        const int i = e % 256, c = i / 64, hi = (i % 64) >= 32, l = i % 32;
        const uint32_t dd = *(const uint32_t *)b;
        const float d = cu_f16((uint16_t)dd), dmin = cu_f16((uint16_t)(dd >> 16));
        int sc, m;
        cu_k4_scale_min(b + 4, i / 32, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        uint8_t q[8], qh[8];
        cu_ld8_a8(b + 48 + 32 * c + l, q);
        cu_ld8_a8(b + 16 + l, qh);
        const int shift = 2 * c + hi;
#pragma unroll
        for (int t = 0; t < 8; t++) {
            const int v = (hi ? q[t] >> 4 : q[t] & 15) | ((qh[t] >> shift) & 1) << 4;
            o[t] = __fsub_rn(__fmul_rn(dl, (float)v), ml);
        }
    }
};

/* Q6_K: half h = e / 128; quarter j of the half takes the low (j < 2) or high nibble of
 * ql[64h + 32(j & 1) + l] and bits 2j..2j+1 of qh[32h + l]; stored +32; int8 scales per 16:
 * x = (d * scale) * q. */
template <> struct cu_dq<DF_TYPE_Q6_K> {
    static __device__ __forceinline__ void dec8(const uint8_t *row, int e, float o[8]) {
        const uint8_t *b = row + (e / 256) * 210;
        const int i = e % 256, h = i / 128, j = (i % 128) / 32, l = i % 32;
        const float d = cu_f16(cu_ld16(b + 208));
        const float ds = d * (float)(int8_t)b[192 + i / 16];
        uint8_t ql[8], qh[8];
        cu_ld8_a2(b + 64 * h + 32 * (j & 1) + l, ql);
        cu_ld8_a2(b + 128 + 32 * h + l, qh);
#pragma unroll
        for (int t = 0; t < 8; t++) {
            const int nib = j >= 2 ? ql[t] >> 4 : ql[t] & 15;
            const int v = (nib | ((qh[t] >> (2 * j)) & 3) << 4) - 32;
            o[t] = ds * (float)v;
        }
    }
};

/* Calls F(cu_dq<TYPE>) for a weight type the backend supports; returns false otherwise. */
#define CU_DISPATCH_TYPE(type, CALL)                                   \
    switch (type) {                                                    \
    case DF_TYPE_F32: CALL(DF_TYPE_F32); break;                        \
    case DF_TYPE_F16: CALL(DF_TYPE_F16); break;                        \
    case DF_TYPE_BF16: CALL(DF_TYPE_BF16); break;                      \
    case DF_TYPE_Q4_0: CALL(DF_TYPE_Q4_0); break;                      \
    case DF_TYPE_Q4_1: CALL(DF_TYPE_Q4_1); break;                      \
    case DF_TYPE_Q5_0: CALL(DF_TYPE_Q5_0); break;                      \
    case DF_TYPE_Q5_1: CALL(DF_TYPE_Q5_1); break;                      \
    case DF_TYPE_Q8_0: CALL(DF_TYPE_Q8_0); break;                      \
    case DF_TYPE_Q2_K: CALL(DF_TYPE_Q2_K); break;                      \
    case DF_TYPE_Q3_K: CALL(DF_TYPE_Q3_K); break;                      \
    case DF_TYPE_Q4_K: CALL(DF_TYPE_Q4_K); break;                      \
    case DF_TYPE_Q5_K: CALL(DF_TYPE_Q5_K); break;                      \
    case DF_TYPE_Q6_K: CALL(DF_TYPE_Q6_K); break;                      \
    default: break;                                                    \
    }

#endif
