/* Tensor element types, numbered exactly as GGUF files number them (ggml's type ids), and
 * the traits table that every consumer uses: block geometry, names, and the row kernels.
 *
 * A quantized row of n elements is n / block_size blocks of type_size bytes each. */
#ifndef DF_QUANT_TYPES_H
#define DF_QUANT_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum df_type {
    DF_TYPE_F32 = 0,
    DF_TYPE_F16 = 1,
    DF_TYPE_Q4_0 = 2,
    DF_TYPE_Q4_1 = 3,
    /* 4, 5: Q4_2 and Q4_3, removed from the format long ago */
    DF_TYPE_Q5_0 = 6,
    DF_TYPE_Q5_1 = 7,
    DF_TYPE_Q8_0 = 8,
    DF_TYPE_Q8_1 = 9,
    DF_TYPE_Q2_K = 10,
    DF_TYPE_Q3_K = 11,
    DF_TYPE_Q4_K = 12,
    DF_TYPE_Q5_K = 13,
    DF_TYPE_Q6_K = 14,
    DF_TYPE_Q8_K = 15,
    DF_TYPE_IQ2_XXS = 16,
    DF_TYPE_IQ2_XS = 17,
    DF_TYPE_IQ3_XXS = 18,
    DF_TYPE_IQ1_S = 19,
    DF_TYPE_IQ4_NL = 20,
    DF_TYPE_IQ3_S = 21,
    DF_TYPE_IQ2_S = 22,
    DF_TYPE_IQ4_XS = 23,
    DF_TYPE_I8 = 24,
    DF_TYPE_I16 = 25,
    DF_TYPE_I32 = 26,
    DF_TYPE_I64 = 27,
    DF_TYPE_F64 = 28,
    DF_TYPE_IQ1_M = 29,
    DF_TYPE_BF16 = 30,
    /* 31..33: Q4_0_4_4/4_8/8_8, repacked layouts that GGUF files no longer carry */
    DF_TYPE_TQ1_0 = 34,
    DF_TYPE_TQ2_0 = 35,
    /* 36..38: the IQ4_NL_4_4/4_8/8_8 repacked types, removed from the format like 31..33 */
    DF_TYPE_MXFP4 = 39,
    DF_TYPE_NVFP4 = 40,
    DF_TYPE_Q1_0 = 41,
    DF_TYPE_Q2_0 = 42,
    DF_TYPE_COUNT = 43,
} df_type;

/* The row kernels. n is the element count and must be a multiple of block_size (check it
 * with df_type_row_size first); a kernel handles n / block_size whole blocks and never touches
 * bytes beyond them. Rows must sit at their block's natural alignment (2 bytes; 4 for Q8_K,
 * F32 and the wide integer types), which GGUF's data alignment guarantees. Kernels are
 * thread-safe and allocation-free; callers split work by rows.
 *
 * Pairing chosen for vec_dot (x is a weight row of the type, y the activations converted
 * with vec_dot_type's from_float):
 *   F32, F16, BF16, F64                   -> F32 (no activation rounding at all)
 *   Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL  -> Q8_0 (the _1 types sum the activation quants
 *                                            themselves instead of trusting Q8_1's fp16 s)
 *   Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS  -> Q8_K
 * On x86-64 CPUs with AVX2, FMA and F16C the table's vec_dot for F32, F16, Q4_0, Q8_0, Q4_K,
 * Q5_K and Q6_K is a SIMD kernel picked at run time; df_type_get_scalar gives the portable C
 * ones, which are the reference. Both agree to float rounding (integer sums are exact in
 * both). A dot returns a float; the caller owns any further accumulation. */

/* Dequantize n elements from src to dst. */
typedef void (*df_dequant_fn)(const void *src, float *dst, int64_t n);
/* Quantize n elements from src to dst. */
typedef void (*df_quant_fn)(const float *src, void *dst, int64_t n);
/* Dot product of a row of this type with a row of vec_dot_type, n elements. */
typedef float (*df_vec_dot_fn)(const void *x, const void *y, int64_t n);

typedef struct df_type_traits {
    const char *name;        /* as llama.cpp prints it: "q4_K", "f16", ... */
    int block_size;          /* elements per block (1 for plain types) */
    size_t type_size;        /* bytes per block */
    bool is_quantized;
    df_dequant_fn to_float;  /* NULL where not supported (integer types) */
    df_quant_fn from_float;  /* NULL where we do not quantize to this type */
    df_type vec_dot_type;    /* the companion type activations are converted to */
    df_vec_dot_fn vec_dot;   /* NULL where not provided */
} df_type_traits;

/* NULL for an id that is not a known type (including the retired 4, 5, 31..33, 36..38). */
const df_type_traits *df_type_get(uint32_t type_id);
/* The same table with only the portable scalar kernels: the reference the SIMD ones are
 * tested against. */
const df_type_traits *df_type_get_scalar(uint32_t type_id);
/* "avx2" when df_type_get hands out AVX2+FMA kernels, else "scalar". Setting the environment
 * variable DFLASH_NO_SIMD (to anything) before the first call forces "scalar". */
const char *df_quant_simd_name(void);
bool df_type_valid(uint32_t type_id);
const char *df_type_name(uint32_t type_id); /* "unknown" for an invalid id */
/* Looks a type up by name, case-insensitively ("q4_k", "Q4_K", "bf16"); -1 if none. */
int df_type_from_name(const char *name);

/* Bytes for a row of n elements; false if n is not a multiple of the block size or the
 * result overflows. */
bool df_type_row_size(df_type t, int64_t n, size_t *out);

#ifdef __cplusplus
}
#endif

#endif
