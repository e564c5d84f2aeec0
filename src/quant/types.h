/* Tensor element types, numbered exactly as GGUF files number them (ggml's type ids), and
 * the traits table that every consumer uses: block geometry, names, and the row kernels.
 *
 * A quantized row of n elements is n / block_size blocks of type_size bytes each. */
#ifndef DF_QUANT_TYPES_H
#define DF_QUANT_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
    DF_TYPE_TQ1_0 = 34,
    DF_TYPE_TQ2_0 = 35,
    DF_TYPE_MXFP4 = 39,
    DF_TYPE_COUNT = 40,
} df_type;

/* Dequantize n elements (a multiple of block_size) from src to dst. */
typedef void (*df_dequant_fn)(const void *src, float *dst, int64_t n);
/* Quantize n elements (a multiple of block_size) from src to dst. */
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

/* NULL for an id that is not a known type (including the retired 4 and 5). */
const df_type_traits *df_type_get(uint32_t type_id);
bool df_type_valid(uint32_t type_id);
const char *df_type_name(uint32_t type_id); /* "unknown" for an invalid id */
/* Looks a type up by name, case-insensitively ("q4_k", "Q4_K", "bf16"); -1 if none. */
int df_type_from_name(const char *name);

/* Bytes for a row of n elements; false if n is not a multiple of the block size or the
 * result overflows. */
bool df_type_row_size(df_type t, int64_t n, size_t *out);

#endif
