/* The traits table: one row per GGUF tensor type id, with block geometry and names checked
 * against ggml's own table, and the row kernels we provide for it.
 *
 * Two copies exist: the scalar table (portable C kernels, the reference) and the dispatched
 * table, which is the scalar one with AVX2+FMA dot products swapped in when the CPU has them.
 * The dispatched copy is built once, on first use, under pthread_once. */
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>

#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/types.h"

#define PLAIN(nm, sz) {.name = nm, .block_size = 1, .type_size = sz, .is_quantized = false}
#define DESCRIBED(nm, bs, sz) {.name = nm, .block_size = bs, .type_size = sz, .is_quantized = true}

static const df_type_traits scalar_table[DF_TYPE_COUNT] = {
    [DF_TYPE_F32] = {.name = "f32", .block_size = 1, .type_size = sizeof(float),
                     .to_float = df_dequant_f32, .from_float = df_quant_f32,
                     .vec_dot_type = DF_TYPE_F32, .vec_dot = df_dot_f32_f32},
    [DF_TYPE_F16] = {.name = "f16", .block_size = 1, .type_size = sizeof(df_fp16),
                     .to_float = df_dequant_f16, .from_float = df_quant_f16,
                     .vec_dot_type = DF_TYPE_F32, .vec_dot = df_dot_f16_f32},
    [DF_TYPE_BF16] = {.name = "bf16", .block_size = 1, .type_size = sizeof(df_bf16),
                      .to_float = df_dequant_bf16, .from_float = df_quant_bf16,
                      .vec_dot_type = DF_TYPE_F32, .vec_dot = df_dot_bf16_f32},
    [DF_TYPE_F64] = {.name = "f64", .block_size = 1, .type_size = sizeof(double),
                     .to_float = df_dequant_f64, .vec_dot_type = DF_TYPE_F32,
                     .vec_dot = df_dot_f64_f32},
    [DF_TYPE_I8] = PLAIN("i8", 1),
    [DF_TYPE_I16] = PLAIN("i16", 2),
    [DF_TYPE_I32] = PLAIN("i32", 4),
    [DF_TYPE_I64] = PLAIN("i64", 8),

    [DF_TYPE_Q4_0] = {.name = "q4_0", .block_size = DF_QK4_0, .type_size = sizeof(df_block_q4_0),
                      .is_quantized = true, .to_float = df_dequant_q4_0, .from_float = df_quant_q4_0,
                      .vec_dot_type = DF_TYPE_Q8_0, .vec_dot = df_dot_q4_0_q8_0},
    [DF_TYPE_Q4_1] = {.name = "q4_1", .block_size = DF_QK4_1, .type_size = sizeof(df_block_q4_1),
                      .is_quantized = true, .to_float = df_dequant_q4_1, .from_float = df_quant_q4_1,
                      .vec_dot_type = DF_TYPE_Q8_0, .vec_dot = df_dot_q4_1_q8_0},
    [DF_TYPE_Q5_0] = {.name = "q5_0", .block_size = DF_QK5_0, .type_size = sizeof(df_block_q5_0),
                      .is_quantized = true, .to_float = df_dequant_q5_0, .from_float = df_quant_q5_0,
                      .vec_dot_type = DF_TYPE_Q8_0, .vec_dot = df_dot_q5_0_q8_0},
    [DF_TYPE_Q5_1] = {.name = "q5_1", .block_size = DF_QK5_1, .type_size = sizeof(df_block_q5_1),
                      .is_quantized = true, .to_float = df_dequant_q5_1, .from_float = df_quant_q5_1,
                      .vec_dot_type = DF_TYPE_Q8_0, .vec_dot = df_dot_q5_1_q8_0},
    [DF_TYPE_Q8_0] = {.name = "q8_0", .block_size = DF_QK8_0, .type_size = sizeof(df_block_q8_0),
                      .is_quantized = true, .to_float = df_dequant_q8_0, .from_float = df_quant_q8_0,
                      .vec_dot_type = DF_TYPE_Q8_0, .vec_dot = df_dot_q8_0_q8_0},
    /* activation-only formats: no dot of their own (they are the right-hand side). Q8_1 is
     * here for completeness (ggml's CPU and CUDA kernels use it); our dots pair with Q8_0. */
    [DF_TYPE_Q8_1] = {.name = "q8_1", .block_size = DF_QK8_1, .type_size = sizeof(df_block_q8_1),
                      .is_quantized = true, .to_float = df_dequant_q8_1, .from_float = df_quant_q8_1,
                      .vec_dot_type = DF_TYPE_Q8_1},
    [DF_TYPE_Q8_K] = {.name = "q8_K", .block_size = DF_QK_K, .type_size = sizeof(df_block_q8_K),
                      .is_quantized = true, .to_float = df_dequant_q8_K, .from_float = df_quant_q8_K,
                      .vec_dot_type = DF_TYPE_Q8_K},

    [DF_TYPE_Q2_K] = {.name = "q2_K", .block_size = DF_QK_K, .type_size = sizeof(df_block_q2_K),
                      .is_quantized = true, .to_float = df_dequant_q2_K, .from_float = df_quant_q2_K,
                      .vec_dot_type = DF_TYPE_Q8_K, .vec_dot = df_dot_q2_K_q8_K},
    [DF_TYPE_Q3_K] = {.name = "q3_K", .block_size = DF_QK_K, .type_size = sizeof(df_block_q3_K),
                      .is_quantized = true, .to_float = df_dequant_q3_K, .from_float = df_quant_q3_K,
                      .vec_dot_type = DF_TYPE_Q8_K, .vec_dot = df_dot_q3_K_q8_K},
    [DF_TYPE_Q4_K] = {.name = "q4_K", .block_size = DF_QK_K, .type_size = sizeof(df_block_q4_K),
                      .is_quantized = true, .to_float = df_dequant_q4_K, .from_float = df_quant_q4_K,
                      .vec_dot_type = DF_TYPE_Q8_K, .vec_dot = df_dot_q4_K_q8_K},
    [DF_TYPE_Q5_K] = {.name = "q5_K", .block_size = DF_QK_K, .type_size = sizeof(df_block_q5_K),
                      .is_quantized = true, .to_float = df_dequant_q5_K, .from_float = df_quant_q5_K,
                      .vec_dot_type = DF_TYPE_Q8_K, .vec_dot = df_dot_q5_K_q8_K},
    [DF_TYPE_Q6_K] = {.name = "q6_K", .block_size = DF_QK_K, .type_size = sizeof(df_block_q6_K),
                      .is_quantized = true, .to_float = df_dequant_q6_K, .from_float = df_quant_q6_K,
                      .vec_dot_type = DF_TYPE_Q8_K, .vec_dot = df_dot_q6_K_q8_K},

    [DF_TYPE_IQ4_NL] = {.name = "iq4_nl", .block_size = DF_QK4_NL, .type_size = sizeof(df_block_iq4_nl),
                        .is_quantized = true, .to_float = df_dequant_iq4_nl, .from_float = df_quant_iq4_nl,
                        .vec_dot_type = DF_TYPE_Q8_0, .vec_dot = df_dot_iq4_nl_q8_0},
    [DF_TYPE_IQ4_XS] = {.name = "iq4_xs", .block_size = DF_QK_K, .type_size = sizeof(df_block_iq4_xs),
                        .is_quantized = true, .to_float = df_dequant_iq4_xs, .from_float = df_quant_iq4_xs,
                        .vec_dot_type = DF_TYPE_Q8_K, .vec_dot = df_dot_iq4_xs_q8_K},

    /* described only: sizes and names, so files holding them can be read and inspected */
    [DF_TYPE_IQ2_XXS] = DESCRIBED("iq2_xxs", DF_QK_K, DF_BYTES_IQ2_XXS),
    [DF_TYPE_IQ2_XS] = DESCRIBED("iq2_xs", DF_QK_K, DF_BYTES_IQ2_XS),
    [DF_TYPE_IQ2_S] = DESCRIBED("iq2_s", DF_QK_K, DF_BYTES_IQ2_S),
    [DF_TYPE_IQ3_XXS] = DESCRIBED("iq3_xxs", DF_QK_K, DF_BYTES_IQ3_XXS),
    [DF_TYPE_IQ3_S] = DESCRIBED("iq3_s", DF_QK_K, DF_BYTES_IQ3_S),
    [DF_TYPE_IQ1_S] = DESCRIBED("iq1_s", DF_QK_K, DF_BYTES_IQ1_S),
    [DF_TYPE_IQ1_M] = DESCRIBED("iq1_m", DF_QK_K, DF_BYTES_IQ1_M),
    [DF_TYPE_TQ1_0] = DESCRIBED("tq1_0", DF_QK_K, DF_BYTES_TQ1_0),
    [DF_TYPE_TQ2_0] = DESCRIBED("tq2_0", DF_QK_K, DF_BYTES_TQ2_0),
    [DF_TYPE_MXFP4] = DESCRIBED("mxfp4", DF_QK_MXFP4, DF_BYTES_MXFP4),
    [DF_TYPE_NVFP4] = DESCRIBED("nvfp4", DF_QK_NVFP4, DF_BYTES_NVFP4),
    [DF_TYPE_Q1_0] = DESCRIBED("q1_0", DF_QK1_0, DF_BYTES_Q1_0),
    [DF_TYPE_Q2_0] = DESCRIBED("q2_0", DF_QK2_0, DF_BYTES_Q2_0),
};

static df_type_traits dispatch_table[DF_TYPE_COUNT];
static const char *simd_name = "scalar";
static pthread_once_t dispatch_once = PTHREAD_ONCE_INIT;

static void build_dispatch_table(void) {
    for (int t = 0; t < DF_TYPE_COUNT; t++) dispatch_table[t] = scalar_table[t];
    if (getenv("DFLASH_NO_SIMD") || !df_cpu_has_avx2_fma()) return;
    simd_name = "avx2";
    dispatch_table[DF_TYPE_F32].vec_dot = df_dot_f32_f32_avx2;
    dispatch_table[DF_TYPE_F16].vec_dot = df_dot_f16_f32_avx2;
    dispatch_table[DF_TYPE_Q4_0].vec_dot = df_dot_q4_0_q8_0_avx2;
    dispatch_table[DF_TYPE_Q8_0].vec_dot = df_dot_q8_0_q8_0_avx2;
    dispatch_table[DF_TYPE_Q4_K].vec_dot = df_dot_q4_K_q8_K_avx2;
    dispatch_table[DF_TYPE_Q5_K].vec_dot = df_dot_q5_K_q8_K_avx2;
    dispatch_table[DF_TYPE_Q6_K].vec_dot = df_dot_q6_K_q8_K_avx2;
}

/* A row exists for exactly the ids GGUF defines; the gaps (retired ids) have no name. */
const df_type_traits *df_type_get_scalar(uint32_t type_id) {
    if (type_id >= DF_TYPE_COUNT || scalar_table[type_id].name == NULL) return NULL;
    return &scalar_table[type_id];
}

const df_type_traits *df_type_get(uint32_t type_id) {
    if (type_id >= DF_TYPE_COUNT || scalar_table[type_id].name == NULL) return NULL;
    pthread_once(&dispatch_once, build_dispatch_table);
    return &dispatch_table[type_id];
}

const char *df_quant_simd_name(void) {
    pthread_once(&dispatch_once, build_dispatch_table);
    return simd_name;
}

bool df_type_valid(uint32_t type_id) { return df_type_get_scalar(type_id) != NULL; }

const char *df_type_name(uint32_t type_id) {
    const df_type_traits *t = df_type_get_scalar(type_id);
    return t ? t->name : "unknown";
}

int df_type_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < DF_TYPE_COUNT; t++)
        if (scalar_table[t].name && strcasecmp(scalar_table[t].name, name) == 0) return t;
    return -1;
}

bool df_type_row_size(df_type t, int64_t n, size_t *out) {
    const df_type_traits *tr = df_type_get_scalar((uint32_t)t);
    if (!tr || !out || n < 0 || n % tr->block_size != 0) return false;
    const uint64_t blocks = (uint64_t)(n / tr->block_size);
    if (blocks > SIZE_MAX / tr->type_size) return false;
    *out = (size_t)blocks * tr->type_size;
    return true;
}
