/* The on-disk block layouts of the GGUF quantized tensor types, byte for byte as llama.cpp's
 * ggml writes them (ggml-common.h is the authority; the layouts below were checked against it
 * field by field and every struct size is asserted).
 *
 * A row of n elements of a block type is n / QK blocks laid end to end; fp16 fields hold raw
 * IEEE half bits (little-endian, like everything in GGUF). Kernels access blocks through these
 * structs, so a row must sit at the struct's natural alignment: 2 bytes for every weight type,
 * 4 bytes for Q8_K (whose scale is a float). GGUF tensor data is aligned far beyond that.
 *
 * Conventions used in the comments: "type-0" formats decode as x = d * q, "type-1" formats as
 * x = d * q + m (or d * q - dmin * m for the K-quants). */
#ifndef DF_QUANT_BLOCKS_H
#define DF_QUANT_BLOCKS_H

#include <stdint.h>

#include "base/fp16.h"

/* The CUDA backend includes this header from C++, where the C11 keyword is spelled
 * static_assert. */
#if defined(__cplusplus) && !defined(_Static_assert)
#define _Static_assert static_assert
#endif

#define DF_QK4_0 32
#define DF_QK4_1 32
#define DF_QK5_0 32
#define DF_QK5_1 32
#define DF_QK8_0 32
#define DF_QK8_1 32
#define DF_QK4_NL 32
#define DF_QK_K 256           /* super-block size of the K-quants and most IQ types */
#define DF_K_SCALE_SIZE 12    /* 8 six-bit scales + 8 six-bit mins packed in 12 bytes */

/* ---- legacy formats: one scale per 32 elements --------------------------------------- */

/* 4.5 bpw. x[j] = d * ((qs[j] & 15) - 8) for j < 16, d * ((qs[j-16] >> 4) - 8) for j >= 16. */
typedef struct {
    df_fp16 d;
    uint8_t qs[DF_QK4_0 / 2];
} df_block_q4_0;
_Static_assert(sizeof(df_block_q4_0) == 18, "q4_0 block is 18 bytes");

/* 5 bpw. Like q4_0 without the -8, plus a min: x = d * nibble + m. */
typedef struct {
    df_fp16 d;
    df_fp16 m;
    uint8_t qs[DF_QK4_1 / 2];
} df_block_q4_1;
_Static_assert(sizeof(df_block_q4_1) == 20, "q4_1 block is 20 bytes");

/* 5.5 bpw. Bit j of the little-endian u32 qh is the 5th bit of element j; x = d * (q - 16). */
typedef struct {
    df_fp16 d;
    uint8_t qh[4];
    uint8_t qs[DF_QK5_0 / 2];
} df_block_q5_0;
_Static_assert(sizeof(df_block_q5_0) == 22, "q5_0 block is 22 bytes");

/* 6 bpw. q5_0's bit layout, decoded as x = d * q + m. */
typedef struct {
    df_fp16 d;
    df_fp16 m;
    uint8_t qh[4];
    uint8_t qs[DF_QK5_1 / 2];
} df_block_q5_1;
_Static_assert(sizeof(df_block_q5_1) == 24, "q5_1 block is 24 bytes");

/* 8.5 bpw. x[j] = d * qs[j]. Also the activation format for the 32-element types. */
typedef struct {
    df_fp16 d;
    int8_t qs[DF_QK8_0];
} df_block_q8_0;
_Static_assert(sizeof(df_block_q8_0) == 34, "q8_0 block is 34 bytes");

/* 9 bpw. q8_0 plus s = d * sum(qs), which lets type-1 dots fold the min in one multiply. */
typedef struct {
    df_fp16 d;
    df_fp16 s;
    int8_t qs[DF_QK8_1];
} df_block_q8_1;
_Static_assert(sizeof(df_block_q8_1) == 36, "q8_1 block is 36 bytes");

/* ---- K-quants: 256-element super-blocks with quantized sub-block scales ----------------- */

/* 2.625 bpw, type-1. 16 sub-blocks of 16; scales[e/16]: low nibble scale, high nibble min.
 * Element e = 128h + 32k + l (h < 2, k < 4, l < 32) is bits 2k..2k+1 of qs[32h + l];
 * x = d * scale * q - dmin * min. */
typedef struct {
    uint8_t scales[DF_QK_K / 16];
    uint8_t qs[DF_QK_K / 4];
    df_fp16 d;
    df_fp16 dmin;
} df_block_q2_K;
_Static_assert(sizeof(df_block_q2_K) == 84, "q2_K block is 84 bytes");

/* 3.4375 bpw, type-0. 2 low bits in qs (q2_K's layout), the high bit in hmask, 16 six-bit
 * signed scales (stored +32) packed in 12 bytes. */
typedef struct {
    uint8_t hmask[DF_QK_K / 8];
    uint8_t qs[DF_QK_K / 4];
    uint8_t scales[12];
    df_fp16 d;
} df_block_q3_K;
_Static_assert(sizeof(df_block_q3_K) == 110, "q3_K block is 110 bytes");

/* 4.5 bpw, type-1. 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min. */
typedef struct {
    df_fp16 d;
    df_fp16 dmin;
    uint8_t scales[DF_K_SCALE_SIZE];
    uint8_t qs[DF_QK_K / 2];
} df_block_q4_K;
_Static_assert(sizeof(df_block_q4_K) == 144, "q4_K block is 144 bytes");

/* 5.5 bpw, type-1. q4_K plus one high bit per element in qh. */
typedef struct {
    df_fp16 d;
    df_fp16 dmin;
    uint8_t scales[DF_K_SCALE_SIZE];
    uint8_t qh[DF_QK_K / 8];
    uint8_t qs[DF_QK_K / 2];
} df_block_q5_K;
_Static_assert(sizeof(df_block_q5_K) == 176, "q5_K block is 176 bytes");

/* 6.5625 bpw, type-0. 16 sub-blocks of 16 with int8 scales; 4 low bits in ql, 2 high in qh. */
typedef struct {
    uint8_t ql[DF_QK_K / 2];
    uint8_t qh[DF_QK_K / 4];
    int8_t scales[DF_QK_K / 16];
    df_fp16 d;
} df_block_q6_K;
_Static_assert(sizeof(df_block_q6_K) == 210, "q6_K block is 210 bytes");

/* Activation format for the K-quant dots: float scale, int8 quants, and the sums of each
 * group of 16 quants (what type-1 dots need to apply the mins without touching qs). */
typedef struct {
    float d;
    int8_t qs[DF_QK_K];
    int16_t bsums[DF_QK_K / 16];
} df_block_q8_K;
_Static_assert(sizeof(df_block_q8_K) == 292, "q8_K block is 292 bytes");

/* ---- non-linear 4-bit: nibbles index a fixed 16-entry table --------------------------- */

typedef struct {
    df_fp16 d;
    uint8_t qs[DF_QK4_NL / 2];
} df_block_iq4_nl;
_Static_assert(sizeof(df_block_iq4_nl) == 18, "iq4_nl block is 18 bytes");

/* 4.25 bpw. 8 sub-blocks of 32 with 6-bit signed scales (stored +32): the low 4 bits in
 * scales_l (two per byte, even sub-block in the low nibble), the high 2 bits in scales_h
 * (sub-block ib at bit 2*ib). */
typedef struct {
    df_fp16 d;
    uint16_t scales_h;
    uint8_t scales_l[DF_QK_K / 64];
    uint8_t qs[DF_QK_K / 2];
} df_block_iq4_xs;
_Static_assert(sizeof(df_block_iq4_xs) == 136, "iq4_xs block is 136 bytes");

/* The IQ4_NL / IQ4_XS code book (ggml's kvalues_iq4nl): a non-uniform 4-bit grid. */
extern const int8_t df_iq4nl_values[16];

/* Sizes of the types we only describe (no kernels): block geometry, so that a GGUF holding
 * them can be sized, skipped and inspected. From ggml-common.h's structs. */
#define DF_BYTES_IQ2_XXS (2 + DF_QK_K / 8 * 2)                 /* 66 */
#define DF_BYTES_IQ2_XS (2 + DF_QK_K / 8 * 2 + DF_QK_K / 32)   /* 74 */
#define DF_BYTES_IQ2_S (2 + DF_QK_K / 4 + DF_QK_K / 16)        /* 82 */
#define DF_BYTES_IQ3_XXS (2 + 3 * DF_QK_K / 8)                 /* 98 */
#define DF_BYTES_IQ3_S (2 + 13 * DF_QK_K / 32 + DF_QK_K / 64)  /* 110 */
#define DF_BYTES_IQ1_S (2 + DF_QK_K / 8 + DF_QK_K / 16)        /* 50 */
#define DF_BYTES_IQ1_M (DF_QK_K / 8 + DF_QK_K / 16 + DF_QK_K / 32) /* 56 */
#define DF_BYTES_TQ1_0 (2 + DF_QK_K / 64 + (DF_QK_K - 4 * DF_QK_K / 64) / 5) /* 54 */
#define DF_BYTES_TQ2_0 (2 + DF_QK_K / 4)                       /* 66 */
#define DF_QK_MXFP4 32
#define DF_BYTES_MXFP4 (1 + DF_QK_MXFP4 / 2)                   /* 17: E8M0 exponent + nibbles */
#define DF_QK_NVFP4 64
#define DF_BYTES_NVFP4 (DF_QK_NVFP4 / 16 + DF_QK_NVFP4 / 2)    /* 36: 4 UE4M3 scales + nibbles */
#define DF_QK1_0 128
#define DF_BYTES_Q1_0 (2 + DF_QK1_0 / 8)                       /* 18 */
#define DF_QK2_0 64
#define DF_BYTES_Q2_0 (2 + DF_QK2_0 / 4)                       /* 18 */
_Static_assert(DF_BYTES_IQ2_XXS == 66 && DF_BYTES_IQ2_XS == 74 && DF_BYTES_IQ2_S == 82, "iq2 sizes");
_Static_assert(DF_BYTES_IQ3_XXS == 98 && DF_BYTES_IQ3_S == 110, "iq3 sizes");
_Static_assert(DF_BYTES_IQ1_S == 50 && DF_BYTES_IQ1_M == 56, "iq1 sizes");
_Static_assert(DF_BYTES_TQ1_0 == 54 && DF_BYTES_TQ2_0 == 66, "ternary sizes");
_Static_assert(DF_BYTES_MXFP4 == 17 && DF_BYTES_NVFP4 == 36, "fp4 sizes");
_Static_assert(DF_BYTES_Q1_0 == 18 && DF_BYTES_Q2_0 == 18, "q1_0 / q2_0 sizes");

#endif
