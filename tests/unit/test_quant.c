/* src/quant: the type table, quantize/dequantize round trips, and dot products.
 *
 * Expected geometry is written out here from ggml's block structs (ggml-common.h); expected
 * dot products come from a double-precision sum over dequantized values (the dequantizers are
 * pinned down independently by the known-answer tests in test_quant_kat.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/fp16.h"
#include "base/rng.h"
#include "quant/kernels.h"
#include "quant/types.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static float *normal_floats(df_rng *r, int64_t n, float mean, float sd) {
    float *x = malloc((size_t)n * sizeof *x);
    cr_assert(x);
    for (int64_t i = 0; i < n; i++) x[i] = mean + sd * df_rng_normal(r);
    return x;
}

static void *row_alloc(df_type t, int64_t n, size_t *bytes) {
    size_t sz = 0;
    cr_assert(df_type_row_size(t, n, &sz), "row size of %s x %lld", df_type_name(t), (long long)n);
    void *p = aligned_alloc(64, (sz + 63) / 64 * 64);
    cr_assert(p);
    if (bytes) *bytes = sz;
    return p;
}

static double rel_rmse(const float *ref, const float *got, int64_t n) {
    double err = 0.0, sig = 0.0;
    for (int64_t i = 0; i < n; i++) {
        err += ((double)ref[i] - got[i]) * ((double)ref[i] - got[i]);
        sig += (double)ref[i] * ref[i];
    }
    return sqrt(err / sig);
}

/* Byte offsets of the fp16 scale fields inside one block, from ggml-common.h's structs. */
typedef struct {
    df_type type;
    int n_fp16;
    int fp16_at[2];
} scale_fields;

static const scale_fields k_scale_fields[] = {
    {DF_TYPE_Q4_0, 1, {0}},     {DF_TYPE_Q4_1, 2, {0, 2}},   {DF_TYPE_Q5_0, 1, {0}},
    {DF_TYPE_Q5_1, 2, {0, 2}},  {DF_TYPE_Q8_0, 1, {0}},      {DF_TYPE_Q2_K, 2, {80, 82}},
    {DF_TYPE_Q3_K, 1, {108}},   {DF_TYPE_Q4_K, 2, {0, 2}},   {DF_TYPE_Q5_K, 2, {0, 2}},
    {DF_TYPE_Q6_K, 1, {208}},   {DF_TYPE_IQ4_NL, 1, {0}},    {DF_TYPE_IQ4_XS, 1, {0}},
};

static void put_fp16(uint8_t *p, float v) {
    const df_fp16 h = df_f32_to_fp16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* A row of n elements of weight type t with every bit random except the fp16 scales, which
 * get finite values of either sign (so the dots see every quant and scale-bit pattern, not
 * just what our quantizers happen to emit). Q8_0 quants avoid -128, which the format allows
 * but no quantizer writes (see dot_avx2.c). */
static void *random_row(df_rng *r, df_type t, int64_t n) {
    size_t bytes;
    uint8_t *p = row_alloc(t, n, &bytes);
    if (t == DF_TYPE_F32 || t == DF_TYPE_F16 || t == DF_TYPE_BF16 || t == DF_TYPE_F64) {
        for (int64_t i = 0; i < n; i++) {
            const float v = df_rng_normal(r);
            if (t == DF_TYPE_F32) ((float *)p)[i] = v;
            if (t == DF_TYPE_F16) ((df_fp16 *)p)[i] = df_f32_to_fp16(v);
            if (t == DF_TYPE_BF16) ((df_bf16 *)p)[i] = df_f32_to_bf16(v);
            if (t == DF_TYPE_F64) ((double *)p)[i] = (double)v;
        }
        return p;
    }
    for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)df_rng_u64(r);
    const df_type_traits *tr = df_type_get(t);
    const scale_fields *sf = NULL;
    for (size_t k = 0; k < sizeof k_scale_fields / sizeof k_scale_fields[0]; k++)
        if (k_scale_fields[k].type == t) sf = &k_scale_fields[k];
    cr_assert(sf, "no scale layout for %s", tr->name);
    for (size_t b = 0; b < bytes / tr->type_size; b++) {
        uint8_t *blk = p + b * tr->type_size;
        for (int f = 0; f < sf->n_fp16; f++) {
            const float mag = df_rng_uniform(r, 0.002f, 0.05f);
            put_fp16(blk + sf->fp16_at[f], df_rng_below(r, 2) ? mag : -mag);
        }
        if (t == DF_TYPE_Q8_0)
            for (int j = 2; j < 34; j++)
                if (blk[j] == 0x80) blk[j] = 0x81;
    }
    return p;
}

/* Weight types that must decode, and the bound on relative RMSE of a quantize/dequantize
 * round trip on N(0,1) data and on N(1, 0.5^2) data (offset data exercises the mins of the
 * type-1 formats). Each bound sits 10-25% above what the format's reference algorithm
 * reaches on this data (measured: q8_0 0.53%, q4_0 8.6%, q4_1 7.8%, q5_0 4.3%, q5_1 3.8%,
 * q2_K 29.6%, q3_K 15.1%, q4_K 7.1%, q5_K 3.6%, q6_K 1.8%, iq4 7.6% on N(0,1)), so a lost bit
 * or a mis-scaled block (errors of 50-100%) fails loudly while float noise does not.
 * Why these levels are right: a b-bit uniform grid scaled to a block's extreme value has
 * rms error ~ step / sqrt(12) with step ~ 2 * max / 2^b; for 32 normal samples max ~ 2.1 sigma,
 * giving ~0.5% at 8 bits, ~8.5% at 4 bits. The K-quants' fitted scales and mins and the IQ
 * grids do better than that bound per bit; Q8_K's one scale per 256 (max ~ 2.9 sigma) does
 * slightly worse than Q8_0. F16/BF16 keep 11/8 significant bits: 2^-11/sqrt(3), 2^-8/sqrt(3). */
typedef struct {
    df_type type;
    double bound_normal;
    double bound_offset;
} roundtrip_case;

static const roundtrip_case k_roundtrip[] = {
    {DF_TYPE_F16, 0.0003, 0.0003},  {DF_TYPE_BF16, 0.0025, 0.0025}, {DF_TYPE_Q8_0, 0.0062, 0.0050},
    {DF_TYPE_Q8_1, 0.0062, 0.0050}, {DF_TYPE_Q8_K, 0.0080, 0.0060}, {DF_TYPE_Q4_0, 0.098, 0.076},
    {DF_TYPE_Q4_1, 0.090, 0.040},   {DF_TYPE_Q5_0, 0.049, 0.038},   {DF_TYPE_Q5_1, 0.044, 0.020},
    {DF_TYPE_Q2_K, 0.33, 0.17},     {DF_TYPE_Q3_K, 0.17, 0.13},     {DF_TYPE_Q4_K, 0.080, 0.038},
    {DF_TYPE_Q5_K, 0.041, 0.019},   {DF_TYPE_Q6_K, 0.020, 0.016},   {DF_TYPE_IQ4_NL, 0.086, 0.074},
    {DF_TYPE_IQ4_XS, 0.087, 0.075},
};
#define N_ROUNDTRIP (sizeof k_roundtrip / sizeof k_roundtrip[0])

/* ---- the table ------------------------------------------------------------------------------- */

/* id, name, elements per block, bytes per block: from ggml's ggml.h enum and its type table. */
static const struct {
    uint32_t id;
    const char *name;
    int block;
    size_t bytes;
} k_geometry[] = {
    {0, "f32", 1, 4},          {1, "f16", 1, 2},          {2, "q4_0", 32, 18},
    {3, "q4_1", 32, 20},       {6, "q5_0", 32, 22},       {7, "q5_1", 32, 24},
    {8, "q8_0", 32, 34},       {9, "q8_1", 32, 36},       {10, "q2_K", 256, 84},
    {11, "q3_K", 256, 110},    {12, "q4_K", 256, 144},    {13, "q5_K", 256, 176},
    {14, "q6_K", 256, 210},    {15, "q8_K", 256, 292},    {16, "iq2_xxs", 256, 66},
    {17, "iq2_xs", 256, 74},   {18, "iq3_xxs", 256, 98},  {19, "iq1_s", 256, 50},
    {20, "iq4_nl", 32, 18},    {21, "iq3_s", 256, 110},   {22, "iq2_s", 256, 82},
    {23, "iq4_xs", 256, 136},  {24, "i8", 1, 1},          {25, "i16", 1, 2},
    {26, "i32", 1, 4},         {27, "i64", 1, 8},         {28, "f64", 1, 8},
    {29, "iq1_m", 256, 56},    {30, "bf16", 1, 2},        {34, "tq1_0", 256, 54},
    {35, "tq2_0", 256, 66},    {39, "mxfp4", 32, 17},     {40, "nvfp4", 64, 36},
    {41, "q1_0", 128, 18},     {42, "q2_0", 64, 18},
};
#define N_GEOMETRY (sizeof k_geometry / sizeof k_geometry[0])

Test(quant_table, geometry_and_names_match_ggml) {
    for (size_t k = 0; k < N_GEOMETRY; k++) {
        const df_type_traits *t = df_type_get(k_geometry[k].id);
        cr_assert(t, "type id %u should exist", k_geometry[k].id);
        cr_expect_str_eq(t->name, k_geometry[k].name, "name of id %u", k_geometry[k].id);
        cr_expect_eq(t->block_size, k_geometry[k].block, "block size of %s", k_geometry[k].name);
        cr_expect_eq(t->type_size, k_geometry[k].bytes, "block bytes of %s", k_geometry[k].name);
        cr_expect_eq(t->is_quantized, k_geometry[k].block > 1, "is_quantized of %s", k_geometry[k].name);
        cr_expect(df_type_valid(k_geometry[k].id));
        cr_expect_str_eq(df_type_name(k_geometry[k].id), k_geometry[k].name);
        cr_expect_eq(df_type_from_name(k_geometry[k].name), (int)k_geometry[k].id);
        /* the scalar table describes the same geometry */
        const df_type_traits *s = df_type_get_scalar(k_geometry[k].id);
        cr_assert(s);
        cr_expect_eq(s->type_size, t->type_size);
        cr_expect_eq(s->block_size, t->block_size);
    }
}

Test(quant_table, invalid_ids_are_refused) {
    for (uint32_t id = 0; id < 200; id++) {
        bool listed = false;
        for (size_t k = 0; k < N_GEOMETRY; k++) listed |= k_geometry[k].id == id;
        if (listed) continue;
        cr_expect_null(df_type_get(id), "id %u must not exist", id);
        cr_expect_null(df_type_get_scalar(id), "id %u must not exist", id);
        cr_expect_not(df_type_valid(id), "id %u", id);
        cr_expect_str_eq(df_type_name(id), "unknown", "id %u", id);
    }
    const uint32_t far[] = {1000, 0x7fffffffu, 0xffffffffu};
    for (size_t k = 0; k < 3; k++) {
        cr_expect_null(df_type_get(far[k]));
        cr_expect_str_eq(df_type_name(far[k]), "unknown");
    }
    size_t sz = 123;
    cr_expect_not(df_type_row_size((df_type)4, 32, &sz));
    cr_expect_not(df_type_row_size((df_type)-1, 32, &sz));
    cr_expect_not(df_type_row_size((df_type)DF_TYPE_COUNT, 32, &sz));
    cr_expect_eq(sz, 123, "a refused row size leaves the output alone");
}

Test(quant_table, names_are_case_insensitive) {
    cr_expect_eq(df_type_from_name("Q4_K"), DF_TYPE_Q4_K);
    cr_expect_eq(df_type_from_name("q4_k"), DF_TYPE_Q4_K);
    cr_expect_eq(df_type_from_name("BF16"), DF_TYPE_BF16);
    cr_expect_eq(df_type_from_name("IQ4_xs"), DF_TYPE_IQ4_XS);
    cr_expect_eq(df_type_from_name("F32"), DF_TYPE_F32);
    cr_expect_eq(df_type_from_name("q4_k_m"), -1, "a file-type mix is not a tensor type");
    cr_expect_eq(df_type_from_name("q4"), -1);
    cr_expect_eq(df_type_from_name(""), -1);
    cr_expect_eq(df_type_from_name("unknown"), -1);
    cr_expect_eq(df_type_from_name(NULL), -1);
}

Test(quant_table, row_sizes) {
    size_t sz = 0;
    cr_expect(df_type_row_size(DF_TYPE_Q4_K, 4096, &sz));
    cr_expect_eq(sz, 16 * 144);
    cr_expect(df_type_row_size(DF_TYPE_Q8_0, 96, &sz));
    cr_expect_eq(sz, 3 * 34);
    cr_expect(df_type_row_size(DF_TYPE_F32, 7, &sz));
    cr_expect_eq(sz, 28);
    cr_expect(df_type_row_size(DF_TYPE_BF16, 0, &sz));
    cr_expect_eq(sz, 0);
    cr_expect(df_type_row_size(DF_TYPE_IQ2_XXS, 512, &sz), "described-only types still have sizes");
    cr_expect_eq(sz, 2 * 66);
    cr_expect(df_type_row_size(DF_TYPE_MXFP4, 64, &sz));
    cr_expect_eq(sz, 34);
    cr_expect_not(df_type_row_size(DF_TYPE_Q4_K, 4095, &sz), "not a multiple of 256");
    cr_expect_not(df_type_row_size(DF_TYPE_Q4_0, 48, &sz), "not a multiple of 32");
    cr_expect_not(df_type_row_size(DF_TYPE_F32, -32, &sz), "negative count");
    cr_expect_not(df_type_row_size(DF_TYPE_F32, INT64_MAX, &sz), "overflow");
    cr_expect_not(df_type_row_size(DF_TYPE_I64, INT64_MAX / 2, &sz), "overflow");
    cr_expect(df_type_row_size(DF_TYPE_I64, INT64_MAX / 8, &sz), "just fits");
    cr_expect_eq(sz, (size_t)(INT64_MAX / 8) * 8);
    cr_expect_not(df_type_row_size(DF_TYPE_F32, 8, NULL), "no output pointer");
}

Test(quant_table, kernels_present_where_promised) {
    const df_type must_decode[] = {DF_TYPE_F32,  DF_TYPE_F16,  DF_TYPE_BF16, DF_TYPE_F64,  DF_TYPE_Q4_0,
                                   DF_TYPE_Q4_1, DF_TYPE_Q5_0, DF_TYPE_Q5_1, DF_TYPE_Q8_0, DF_TYPE_Q2_K,
                                   DF_TYPE_Q3_K, DF_TYPE_Q4_K, DF_TYPE_Q5_K, DF_TYPE_Q6_K, DF_TYPE_IQ4_NL,
                                   DF_TYPE_IQ4_XS};
    for (size_t k = 0; k < sizeof must_decode / sizeof must_decode[0]; k++) {
        const df_type_traits *t = df_type_get(must_decode[k]);
        cr_expect(t->to_float, "%s decodes", t->name);
        cr_expect(t->vec_dot, "%s has a dot product", t->name);
        const df_type_traits *a = df_type_get(t->vec_dot_type);
        cr_assert(a, "%s: companion type exists", t->name);
        cr_expect(a->from_float, "%s: its companion %s can be produced", t->name, a->name);
        cr_expect(a->to_float, "%s: its companion %s can be decoded", t->name, a->name);
        cr_expect_eq(a->block_size, t->block_size, "%s: blocks line up with %s", t->name, a->name);
    }
    const df_type must_encode[] = {DF_TYPE_F16, DF_TYPE_BF16, DF_TYPE_Q8_0, DF_TYPE_Q4_0, DF_TYPE_Q4_K,
                                   DF_TYPE_Q5_K, DF_TYPE_Q6_K, DF_TYPE_Q8_K, DF_TYPE_Q8_1};
    for (size_t k = 0; k < sizeof must_encode / sizeof must_encode[0]; k++)
        cr_expect(df_type_get(must_encode[k])->from_float, "%s encodes", df_type_name(must_encode[k]));
    const df_type opaque[] = {DF_TYPE_I8,     DF_TYPE_I16,   DF_TYPE_I32,     DF_TYPE_I64,   DF_TYPE_IQ2_XXS,
                              DF_TYPE_IQ2_XS, DF_TYPE_IQ2_S, DF_TYPE_IQ3_XXS, DF_TYPE_IQ3_S, DF_TYPE_IQ1_S,
                              DF_TYPE_IQ1_M,  DF_TYPE_TQ1_0, DF_TYPE_TQ2_0,   DF_TYPE_MXFP4, DF_TYPE_NVFP4,
                              DF_TYPE_Q1_0,   DF_TYPE_Q2_0};
    for (size_t k = 0; k < sizeof opaque / sizeof opaque[0]; k++) {
        const df_type_traits *t = df_type_get(opaque[k]);
        cr_expect_null(t->to_float, "%s is described only", t->name);
        cr_expect_null(t->from_float, "%s is described only", t->name);
        cr_expect_null(t->vec_dot, "%s is described only", t->name);
    }
}

Test(quant_table, simd_choice_follows_cpu) {
    const char *want = (df_cpu_has_avx2_fma() && !getenv("DFLASH_NO_SIMD")) ? "avx2" : "scalar";
    cr_expect_str_eq(df_quant_simd_name(), want);
    const df_type scalar_only[] = {DF_TYPE_Q4_1, DF_TYPE_Q2_K, DF_TYPE_IQ4_XS, DF_TYPE_BF16};
    for (size_t k = 0; k < 4; k++)
        cr_expect_eq(df_type_get(scalar_only[k])->vec_dot, df_type_get_scalar(scalar_only[k])->vec_dot);
}

/* ---- round trips ------------------------------------------------------------------------------ */

static void check_roundtrip(float mean, float sd, bool offset) {
    const int64_t n = 256 * 64;
    df_rng r;
    df_rng_seed(&r, offset ? 77 : 76);
    float *x = normal_floats(&r, n, mean, sd);
    float *back = malloc((size_t)n * sizeof *back);
    for (size_t k = 0; k < N_ROUNDTRIP; k++) {
        const df_type_traits *t = df_type_get(k_roundtrip[k].type);
        void *q = row_alloc(k_roundtrip[k].type, n, NULL);
        t->from_float(x, q, n);
        t->to_float(q, back, n);
        const double e = rel_rmse(x, back, n);
        const double bound = offset ? k_roundtrip[k].bound_offset : k_roundtrip[k].bound_normal;
        cr_log_info("round trip %-7s on N(%g, %g^2): relative rmse %.5f (bound %.4f)", t->name, mean, sd, e, bound);
        cr_expect_leq(e, bound, "%s: relative rmse %.5f above %.4f", t->name, e, bound);
        /* and a decoded value is never wildly off, even where the rms is fine */
        double worst = 0.0;
        for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)x[i] - back[i]));
        cr_expect_leq(worst, 40.0 * bound * sd + 1e-3, "%s: worst error %g", t->name, worst);
        free(q);
    }
    free(back);
    free(x);
}

Test(quant_roundtrip, normal_data) { check_roundtrip(0.0f, 1.0f, false); }
Test(quant_roundtrip, offset_data) { check_roundtrip(1.0f, 0.5f, true); }

Test(quant_roundtrip, f32_is_exact_and_f64_decodes) {
    df_rng r;
    df_rng_seed(&r, 5);
    float *x = normal_floats(&r, 1000, 0.0f, 3.0f);
    float y[1000];
    df_type_get(DF_TYPE_F32)->from_float(x, y, 1000);
    cr_expect_eq(memcmp(x, y, sizeof y), 0);
    double d[1000];
    for (int i = 0; i < 1000; i++) d[i] = (double)x[i] * 1.0000001;
    df_type_get(DF_TYPE_F64)->to_float(d, y, 1000);
    for (int i = 0; i < 1000; i++) cr_expect_eq(y[i], (float)d[i]);
    free(x);
}

Test(quant_roundtrip, zero_blocks_decode_to_zero) {
    const int64_t n = 512;
    float *zero = calloc((size_t)n, sizeof(float));
    float back[512];
    for (size_t k = 0; k < N_ROUNDTRIP; k++) {
        const df_type_traits *t = df_type_get(k_roundtrip[k].type);
        void *q = row_alloc(k_roundtrip[k].type, n, NULL);
        t->from_float(zero, q, n);
        for (int i = 0; i < n; i++) back[i] = 1.0f;
        t->to_float(q, back, n);
        for (int i = 0; i < n; i++) cr_expect_eq(back[i], 0.0f, "%s element %d", t->name, i);
        free(q);
    }
    free(zero);
}

/* Constant blocks have no spread; the type-1 formats must still reproduce the constant. */
Test(quant_roundtrip, constant_blocks) {
    const int64_t n = 256;
    float x[256], back[256];
    for (int i = 0; i < n; i++) x[i] = 0.75f;
    const df_type types[] = {DF_TYPE_Q4_0, DF_TYPE_Q4_1, DF_TYPE_Q5_1, DF_TYPE_Q8_0, DF_TYPE_Q4_K,
                             DF_TYPE_Q5_K, DF_TYPE_Q6_K, DF_TYPE_Q8_K, DF_TYPE_IQ4_NL};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const df_type_traits *t = df_type_get(types[k]);
        void *q = row_alloc(types[k], n, NULL);
        t->from_float(x, q, n);
        t->to_float(q, back, n);
        for (int i = 0; i < n; i++) cr_expect_float_eq(back[i], 0.75f, 0.75f * 0.02f, "%s element %d: %g", t->name, i, back[i]);
        free(q);
    }
}

/* Hostile floats (inf, NaN, 1e30) must not crash or trip the sanitizers; the output is
 * unspecified but the kernels stay inside their buffers. */
Test(quant_roundtrip, hostile_floats_are_survived) {
    const int64_t n = 512;
    float x[512], back[512];
    df_rng r;
    df_rng_seed(&r, 9);
    for (int i = 0; i < n; i++) x[i] = df_rng_normal(&r);
    x[3] = INFINITY;
    x[40] = -INFINITY;
    x[100] = NAN;
    x[300] = 1e30f;
    x[301] = -1e30f;
    x[400] = 1e-42f;
    for (int t = 0; t < DF_TYPE_COUNT; t++) {
        const df_type_traits *tr = df_type_get((uint32_t)t);
        if (!tr || !tr->from_float || !tr->to_float) continue;
        void *q = row_alloc((df_type)t, n, NULL);
        tr->from_float(x, q, n);
        tr->to_float(q, back, n);
        free(q);
    }
}

/* Kernels write exactly one row and read nothing past it. */
Test(quant_roundtrip, kernels_stay_inside_their_rows) {
    const int64_t n = 512;
    df_rng r;
    df_rng_seed(&r, 3);
    float *x = normal_floats(&r, n, 0.0f, 1.0f);
    for (int t = 0; t < DF_TYPE_COUNT; t++) {
        const df_type_traits *tr = df_type_get((uint32_t)t);
        if (!tr || !tr->from_float) continue;
        size_t bytes;
        cr_assert(df_type_row_size((df_type)t, n, &bytes));
        uint8_t *q = malloc(bytes + 64);
        memset(q, 0xA5, bytes + 64);
        tr->from_float(x, q, n);
        for (size_t i = bytes; i < bytes + 64; i++) cr_assert_eq(q[i], 0xA5, "%s wrote past its row", tr->name);
        if (tr->to_float) {
            float *back = malloc((size_t)(n + 16) * sizeof(float));
            for (int i = 0; i < n + 16; i++) back[i] = -7.0f;
            tr->to_float(q, back, n);
            for (int i = (int)n; i < n + 16; i++) cr_assert_eq(back[i], -7.0f, "%s decoded past n", tr->name);
            free(back);
        }
        free(q);
    }
    free(x);
}

Test(quant_roundtrip, quantizing_is_deterministic) {
    const int64_t n = 1024;
    df_rng r;
    df_rng_seed(&r, 4);
    float *x = normal_floats(&r, n, 0.2f, 1.0f);
    for (int t = 0; t < DF_TYPE_COUNT; t++) {
        const df_type_traits *tr = df_type_get((uint32_t)t);
        if (!tr || !tr->from_float) continue;
        size_t bytes;
        void *a = row_alloc((df_type)t, n, &bytes), *b = row_alloc((df_type)t, n, NULL);
        memset(a, 1, bytes);
        memset(b, 2, bytes);
        tr->from_float(x, a, n);
        tr->from_float(x, b, n);
        cr_expect_eq(memcmp(a, b, bytes), 0, "%s", tr->name);
        free(a);
        free(b);
    }
    free(x);
}

/* ---- activation formats ---------------------------------------------------------------------- */

Test(quant_activation, q8_K_bsums_and_range) {
    const int64_t n = 256 * 8;
    df_rng r;
    df_rng_seed(&r, 21);
    float *x = normal_floats(&r, n, 0.3f, 2.0f);
    uint8_t *q = row_alloc(DF_TYPE_Q8_K, n, NULL);
    df_type_get(DF_TYPE_Q8_K)->from_float(x, q, n);
    for (int b = 0; b < n / 256; b++) {
        const uint8_t *blk = q + 292 * b;
        float d;
        memcpy(&d, blk, 4);
        float amax = 0.0f;
        for (int e = 0; e < 256; e++) amax = fmaxf(amax, fabsf(x[256 * b + e]));
        cr_expect_float_eq(fabsf(d), amax / 127.0f, amax * 1e-6f, "block %d scale", b);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) {
                const int v = (int8_t)blk[4 + 16 * g + l];
                cr_expect(v >= -127 && v <= 127);
                s += v;
                cr_expect_leq(fabsf(d * (float)v - x[256 * b + 16 * g + l]), 0.5001f * fabsf(d), "nearest quant");
            }
            int16_t bs;
            memcpy(&bs, blk + 260 + 2 * g, 2);
            cr_expect_eq(bs, s, "block %d group %d bsum", b, g);
        }
    }
    free(q);
    free(x);
}

Test(quant_activation, q8_1_sum_field) {
    const int64_t n = 32 * 16;
    df_rng r;
    df_rng_seed(&r, 22);
    float *x = normal_floats(&r, n, 0.5f, 1.0f);
    uint8_t *q = row_alloc(DF_TYPE_Q8_1, n, NULL);
    df_type_get(DF_TYPE_Q8_1)->from_float(x, q, n);
    for (int b = 0; b < n / 32; b++) {
        const uint8_t *blk = q + 36 * b;
        const float d = df_fp16_to_f32((df_fp16)(blk[0] | blk[1] << 8));
        const float s = df_fp16_to_f32((df_fp16)(blk[2] | blk[3] << 8));
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += (int8_t)blk[4 + j];
        cr_expect_float_eq(s, d * (float)sum, fabsf(d * (float)sum) * 2e-3f + 1e-6f, "block %d", b);
    }
    free(q);
    free(x);
}

/* ---- dot products ----------------------------------------------------------------------------- */

/* Checks one table's vec_dot for weight type t on one weight row:
 *  tight: against sum(dequant(x) * dequant(quant(y))) in double, to float-rounding accuracy;
 *  loose: against sum(dequant(x) * y) with y correlated to x (so the true dot is large), to
 *         the accuracy activation quantization allows. */
static void check_dot(const df_type_traits *table_row, df_type t, const void *xq, int64_t n, df_rng *r) {
    const df_type_traits *tr = table_row;
    const df_type_traits *act = df_type_get(tr->vec_dot_type);
    float *xd = malloc((size_t)n * sizeof *xd), *yd = malloc((size_t)n * sizeof *yd);
    tr->to_float(xq, xd, n);
    double xrms = 0.0;
    for (int64_t i = 0; i < n; i++) xrms += (double)xd[i] * xd[i];
    xrms = sqrt(xrms / (double)n);

    /* tight */
    float *y = normal_floats(r, n, 0.0f, 1.0f);
    void *yq = row_alloc(tr->vec_dot_type, n, NULL);
    act->from_float(y, yq, n);
    act->to_float(yq, yd, n);
    double ref = 0.0, mag = 0.0;
    for (int64_t i = 0; i < n; i++) {
        ref += (double)xd[i] * yd[i];
        mag += fabs((double)xd[i] * yd[i]);
    }
    const float got = tr->vec_dot(xq, yq, n);
    cr_expect_leq(fabs(got - ref), 2e-5 * mag + 1e-30, "%s (n=%lld) tight: got %.9g want %.9g (sum|xy| %.6g)", df_type_name(t),
                  (long long)n, got, ref, mag);

    /* loose: y = x + noise of the same size */
    for (int64_t i = 0; i < n; i++) y[i] = xd[i] + (float)xrms * df_rng_normal(r);
    act->from_float(y, yq, n);
    double exact = 0.0;
    for (int64_t i = 0; i < n; i++) exact += (double)xd[i] * y[i];
    const float got2 = tr->vec_dot(xq, yq, n);
    cr_expect_leq(fabs(got2 - exact), 0.01 * fabs(exact), "%s (n=%lld) loose: got %.9g want %.9g", df_type_name(t), (long long)n,
                  got2, exact);
    free(y);
    free(yq);
    free(xd);
    free(yd);
}

static void check_dots_of_table(bool scalar) {
    df_rng r;
    df_rng_seed(&r, scalar ? 1234 : 4321);
    for (int t = 0; t < DF_TYPE_COUNT; t++) {
        const df_type_traits *tr = scalar ? df_type_get_scalar((uint32_t)t) : df_type_get((uint32_t)t);
        if (!tr || !tr->vec_dot) continue;
        const int64_t lengths[] = {256, 4096, tr->block_size == 1 ? 1001 : 256 * 3};
        for (int li = 0; li < 3; li++) {
            const int64_t n = lengths[li];
            /* random bit patterns */
            void *xr = random_row(&r, (df_type)t, n);
            check_dot(tr, (df_type)t, xr, n, &r);
            free(xr);
            /* what our own quantizer makes of normal data */
            if (tr->from_float) {
                float *w = normal_floats(&r, n, 0.1f, 1.0f);
                void *xq = row_alloc((df_type)t, n, NULL);
                tr->from_float(w, xq, n);
                check_dot(tr, (df_type)t, xq, n, &r);
                free(xq);
                free(w);
            }
        }
    }
}

Test(quant_dot, scalar_kernels) { check_dots_of_table(true); }
Test(quant_dot, dispatched_kernels) { check_dots_of_table(false); }

/* The AVX2 kernels against the scalar ones directly (whatever the table picked), on random
 * bit patterns and on quantized data, including float rows whose length is no multiple of 8. */
Test(quant_dot, avx2_matches_scalar) {
    if (!df_cpu_has_avx2_fma()) cr_skip_test("this CPU has no AVX2+FMA+F16C");
    const struct {
        df_type type;
        df_vec_dot_fn simd;
    } pairs[] = {
        {DF_TYPE_F32, df_dot_f32_f32_avx2},   {DF_TYPE_F16, df_dot_f16_f32_avx2},   {DF_TYPE_Q4_0, df_dot_q4_0_q8_0_avx2},
        {DF_TYPE_Q8_0, df_dot_q8_0_q8_0_avx2}, {DF_TYPE_Q4_K, df_dot_q4_K_q8_K_avx2}, {DF_TYPE_Q5_K, df_dot_q5_K_q8_K_avx2},
        {DF_TYPE_Q6_K, df_dot_q6_K_q8_K_avx2},
    };
    df_rng r;
    df_rng_seed(&r, 99);
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        const df_type_traits *s = df_type_get_scalar(pairs[k].type);
        const df_type_traits *act = df_type_get_scalar(s->vec_dot_type);
        for (int trial = 0; trial < 40; trial++) {
            int64_t n = s->block_size * (1 + (int64_t)df_rng_below(&r, 12));
            if (s->block_size == 1) n = 1 + df_rng_below(&r, 300);
            void *x = random_row(&r, pairs[k].type, n);
            if (trial % 2 && s->from_float) {
                float *w = normal_floats(&r, n, 0.0f, 1.0f);
                s->from_float(w, x, n);
                free(w);
            }
            float *y = normal_floats(&r, n, 0.0f, 1.0f);
            void *yq = row_alloc(s->vec_dot_type, n, NULL);
            act->from_float(y, yq, n);
            float *xd = malloc((size_t)n * sizeof *xd), *yd = malloc((size_t)n * sizeof *yd);
            s->to_float(x, xd, n);
            act->to_float(yq, yd, n);
            double mag = 0.0;
            for (int64_t i = 0; i < n; i++) mag += fabs((double)xd[i] * yd[i]);
            const float want = s->vec_dot(x, yq, n), got = pairs[k].simd(x, yq, n);
            cr_expect_leq(fabs((double)got - want), 2e-5 * mag + 1e-30, "%s n=%lld: avx2 %.9g scalar %.9g", s->name, (long long)n, got,
                          want);
            free(x);
            free(y);
            free(yq);
            free(xd);
            free(yd);
        }
    }
}
