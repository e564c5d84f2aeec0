/* Batch invariance of the quantized matmul (cpu_matmul.c with the multi-token dots of
 * quant/mdot.h), the property that keeps a speculative verify bitwise equal to one-token
 * decoding: for Q8_0, Q4_0, Q4_K, Q5_K and Q6_K weights, at every SIMD level this CPU has,
 * a matmul of 1..33 tokens gives each token bitwise the result of a one-token call, wherever
 * the token sits in the batch. Each result must also match a double-precision dot of the
 * dequantized weights and the dequantized activations (computed here, through the scalar
 * quantizers and decoders), and the scalar level must be exactly the traits table's scalar
 * vec_dot: the plain reference.
 *
 * Weights come two ways: quantized from random floats by the type's own quantizer, and as
 * random bytes (with sane fp16 scales), which reach every bit of the packed scale and
 * high-bit fields, not only the patterns a quantizer tends to emit. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "base/alloc.h"
#include "base/fp16.h"
#include "base/rng.h"
#include "quant/blocks.h"
#include "quant/mdot.h"
#include "helpers/pools.h"

enum { MAX_TOK = 33 };

TestSuite(cpu_matmul_batch, .init = test_pools_create, .fini = test_pools_destroy);

static const df_type k_types[] = {DF_TYPE_Q8_0, DF_TYPE_Q4_0, DF_TYPE_Q4_K, DF_TYPE_Q5_K, DF_TYPE_Q6_K};

/* Every level up to the best this CPU runs. */
static int simd_levels(df_cpu_simd out[3]) {
    int n = 0;
    for (int l = DF_CPU_SIMD_SCALAR; l <= (int)df_cpu_simd_best(); l++) out[n++] = (df_cpu_simd)l;
    return n;
}

/* A random fp16 scale of either sign with magnitude 2^-12 .. 2^-4. */
static df_fp16 random_scale(df_rng *rng) {
    const float m = ldexpf(1.0f + df_rng_uniform(rng, 0.0f, 1.0f), -4 - (int)df_rng_below(rng, 9));
    return df_f32_to_fp16(df_rng_below(rng, 2) ? m : -m);
}

/* One row of random bytes in the block layout of t, then the fp16 fields made finite. */
static void random_bits_row(df_type t, df_rng *rng, uint8_t *row, size_t bytes) {
    for (size_t i = 0; i < bytes; i++) row[i] = (uint8_t)df_rng_u64(rng);
    switch (t) {
    case DF_TYPE_Q8_0:
        for (df_block_q8_0 *b = (df_block_q8_0 *)row; (uint8_t *)b < row + bytes; b++) {
            b->d = random_scale(rng);
            /* -128 has no positive twin: the quantizers never write it, and the AVX2 sign
             * trick assumes so (dot_avx2.c) */
            for (int j = 0; j < DF_QK8_0; j++)
                if (b->qs[j] == -128) b->qs[j] = -127;
        }
        break;
    case DF_TYPE_Q4_0:
        for (df_block_q4_0 *b = (df_block_q4_0 *)row; (uint8_t *)b < row + bytes; b++) b->d = random_scale(rng);
        break;
    case DF_TYPE_Q4_K:
        for (df_block_q4_K *b = (df_block_q4_K *)row; (uint8_t *)b < row + bytes; b++)
            b->d = random_scale(rng), b->dmin = random_scale(rng);
        break;
    case DF_TYPE_Q5_K:
        for (df_block_q5_K *b = (df_block_q5_K *)row; (uint8_t *)b < row + bytes; b++)
            b->d = random_scale(rng), b->dmin = random_scale(rng);
        break;
    case DF_TYPE_Q6_K:
        for (df_block_q6_K *b = (df_block_q6_K *)row; (uint8_t *)b < row + bytes; b++) b->d = random_scale(rng);
        break;
    default: cr_assert_fail("no random layout for %s", df_type_name(t));
    }
}

typedef struct {
    df_type wt;
    int64_t n_in, n_out;
    size_t w_row;
    uint8_t *w;      /* n_out rows */
    float *wd;       /* the rows dequantized */
    float *x;        /* MAX_TOK tokens */
    float *xd;       /* the tokens through the activation quantizer and back */
    double *ref, *mag; /* [MAX_TOK][n_out] */
    void *scratch;
    size_t scratch_size;
} problem;

static void problem_make(problem *p, df_type wt, int64_t n_in, int64_t n_out, bool random_bits, uint64_t seed) {
    const df_type_traits *tr = df_type_get_scalar((uint32_t)wt);
    const df_type_traits *act = df_type_get_scalar((uint32_t)tr->vec_dot_type);
    df_rng rng;
    df_rng_seed(&rng, seed);
    memset(p, 0, sizeof *p);
    p->wt = wt, p->n_in = n_in, p->n_out = n_out;
    cr_assert(df_type_row_size(wt, n_in, &p->w_row));
    p->w = df_alloc_aligned(p->w_row * (size_t)n_out);
    p->wd = malloc(sizeof(float) * (size_t)(n_in * n_out));
    float *wf = malloc(sizeof(float) * (size_t)n_in);
    for (int64_t o = 0; o < n_out; o++) {
        uint8_t *row = p->w + (size_t)o * p->w_row;
        if (random_bits) {
            random_bits_row(wt, &rng, row, p->w_row);
        } else {
            /* rows of different magnitudes, with an outlier now and then */
            const float scale = 0.1f * expf(df_rng_normal(&rng));
            for (int64_t i = 0; i < n_in; i++) wf[i] = df_rng_normal(&rng) * scale;
            wf[df_rng_below(&rng, (uint32_t)n_in)] *= 8.0f;
            tr->from_float(wf, row, n_in);
        }
        tr->to_float(row, p->wd + o * n_in, n_in);
    }
    free(wf);

    p->x = malloc(sizeof(float) * (size_t)(MAX_TOK * n_in));
    p->xd = malloc(sizeof(float) * (size_t)(MAX_TOK * n_in));
    size_t a_row;
    cr_assert(df_type_row_size(tr->vec_dot_type, n_in, &a_row));
    uint8_t *tmp = df_alloc_aligned(a_row);
    for (int64_t t = 0; t < MAX_TOK; t++) {
        const float scale = expf(df_rng_normal(&rng));
        for (int64_t i = 0; i < n_in; i++) p->x[t * n_in + i] = df_rng_normal(&rng) * scale;
        act->from_float(p->x + t * n_in, tmp, n_in);
        act->to_float(tmp, p->xd + t * n_in, n_in);
    }
    df_free_aligned(tmp);

    p->ref = malloc(sizeof(double) * (size_t)(MAX_TOK * n_out));
    p->mag = malloc(sizeof(double) * (size_t)(MAX_TOK * n_out));
    for (int64_t t = 0; t < MAX_TOK; t++)
        for (int64_t o = 0; o < n_out; o++) {
            double r = 0.0, m = 0.0;
            for (int64_t i = 0; i < n_in; i++) {
                const double v = (double)p->wd[o * n_in + i] * p->xd[t * n_in + i];
                r += v;
                m += fabs(v);
            }
            p->ref[t * n_out + o] = r;
            p->mag[t * n_out + o] = m;
        }
    p->scratch_size = df_cpu_matmul_scratch_size(wt, MAX_TOK, n_in);
    cr_assert(p->scratch_size > 0);
    p->scratch = df_alloc_aligned(p->scratch_size);
}

static void problem_free(problem *p) {
    df_free_aligned(p->w);
    free(p->wd);
    free(p->x);
    free(p->xd);
    free(p->ref);
    free(p->mag);
    df_free_aligned(p->scratch);
}

static void matmul(const problem *p, df_pool *pool, int64_t first, int64_t n_tok, float *y) {
    cr_assert_eq(df_cpu_matmul(pool, p->x + first * p->n_in, n_tok, p->n_in, p->w, p->wt, p->n_out, y,
                               p->scratch, p->scratch_size),
                 DF_OK, "%s: %s", df_type_name(p->wt), df_last_error());
}

/* The whole check for one problem at one level. */
static void check_level(const problem *p, df_cpu_simd level) {
    const char *tn = df_type_name(p->wt), *ln = df_cpu_simd_name(level);
    cr_assert_eq(df_cpu_simd_set(level), DF_OK);
    const int64_t n_out = p->n_out;
    float *one = malloc(sizeof(float) * (size_t)(MAX_TOK * n_out));
    float *batch = malloc(sizeof(float) * (size_t)(MAX_TOK * n_out));

    /* each token alone: the decode path */
    for (int64_t t = 0; t < MAX_TOK; t++) matmul(p, g_pool1, t, 1, one + t * n_out);
    for (int64_t t = 0; t < MAX_TOK; t++)
        for (int64_t o = 0; o < n_out; o++) {
            const double got = one[t * n_out + o], ref = p->ref[t * n_out + o], mag = p->mag[t * n_out + o];
            cr_assert(fabs(got - ref) <= 3e-6 * mag + 1e-30,
                      "%s (%s, n_in %lld): y[%lld][%lld] = %.9g, reference %.9g (scale %.3g)", tn, ln,
                      (long long)p->n_in, (long long)t, (long long)o, got, ref, mag);
        }

    /* the scalar level is the traits table's scalar dot, bit for bit */
    if (level == DF_CPU_SIMD_SCALAR) {
        const df_type_traits *tr = df_type_get_scalar((uint32_t)p->wt);
        const df_type_traits *act = df_type_get_scalar((uint32_t)tr->vec_dot_type);
        size_t a_row;
        cr_assert(df_type_row_size(tr->vec_dot_type, p->n_in, &a_row));
        uint8_t *xq = df_alloc_aligned(a_row);
        for (int64_t t = 0; t < MAX_TOK; t += 5) {
            act->from_float(p->x + t * p->n_in, xq, p->n_in);
            for (int64_t o = 0; o < n_out; o++) {
                const float want = tr->vec_dot(p->w + (size_t)o * p->w_row, xq, p->n_in);
                cr_assert(memcmp(&want, one + t * n_out + o, sizeof want) == 0,
                          "%s: the scalar level gives %.9g for y[%lld][%lld], the scalar vec_dot %.9g", tn,
                          (double)one[t * n_out + o], (long long)t, (long long)o, (double)want);
            }
        }
        df_free_aligned(xq);
    }

    /* batches of every size 1..MAX_TOK, starting at different tokens so that a token meets
     * many positions inside the kernels' column groups; two threads split the rows */
    for (int64_t n_tok = 1; n_tok <= MAX_TOK; n_tok++) {
        const int64_t first = (n_tok * 7) % (MAX_TOK - n_tok + 1);
        matmul(p, n_tok % 2 ? g_pool2 : g_pool1, first, n_tok, batch);
        for (int64_t t = 0; t < n_tok; t++)
            for (int64_t o = 0; o < n_out; o++)
                cr_assert(memcmp(batch + t * n_out + o, one + (first + t) * n_out + o, sizeof(float)) == 0,
                          "%s (%s): token %lld at position %lld of a batch of %lld gives y[%lld] = %.9g, "
                          "alone %.9g",
                          tn, ln, (long long)(first + t), (long long)t, (long long)n_tok, (long long)o,
                          (double)batch[t * n_out + o], (double)one[(first + t) * n_out + o]);
    }
    free(one);
    free(batch);
}

static void check_type(df_type wt, int64_t n_in, int64_t n_out, bool random_bits, uint64_t seed) {
    problem p;
    problem_make(&p, wt, n_in, n_out, random_bits, seed);
    df_cpu_simd levels[3];
    const int nl = simd_levels(levels);
    for (int l = 0; l < nl; l++) check_level(&p, levels[l]);
    problem_free(&p);
}

Test(cpu_matmul_batch, quantized_weights) {
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++) {
        const df_type t = k_types[i];
        const bool k = t == DF_TYPE_Q4_K || t == DF_TYPE_Q5_K || t == DF_TYPE_Q6_K;
        /* legacy rows of an odd number of blocks exercise the AVX-512 kernels' lone last block */
        check_type(t, k ? 768 : 224, 23, false, 100 + i);
        check_type(t, k ? 256 : 32, 5, false, 200 + i);
    }
}

Test(cpu_matmul_batch, random_weight_bits) {
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++) {
        const df_type t = k_types[i];
        const bool k = t == DF_TYPE_Q4_K || t == DF_TYPE_Q5_K || t == DF_TYPE_Q6_K;
        check_type(t, k ? 1024 : 288, 17, true, 300 + i);
    }
}

/* More rows than one task's share, so both threads of the pool own rows of every batch. */
Test(cpu_matmul_batch, rows_split_between_threads) {
    check_type(DF_TYPE_Q8_0, 512, 301, false, 400);
    check_type(DF_TYPE_Q6_K, 512, 257, false, 401);
}

/* The levels are ordered and checked: an unknown one is refused, every one up to the best
 * is accepted, and the multi-token kernels exist exactly where their ISA runs. */
Test(cpu_matmul_batch, simd_levels_are_checked) {
    cr_assert_eq(df_cpu_simd_set((df_cpu_simd)7), DF_ERR_INVALID);
    const df_cpu_simd best = df_cpu_simd_best();
    for (int l = DF_CPU_SIMD_SCALAR; l <= (int)best; l++) cr_assert_eq(df_cpu_simd_set((df_cpu_simd)l), DF_OK);
    if (best < DF_CPU_SIMD_AVX512) {
        cr_assert_eq(df_cpu_simd_set(DF_CPU_SIMD_AVX512), DF_ERR_UNSUPPORTED);
        cr_assert(strstr(df_last_error(), "AVX-512") != NULL, "%s", df_last_error());
    }
    cr_assert_eq(df_mdot_get(DF_TYPE_Q4_K, DF_MDOT_AVX512) != NULL, best >= DF_CPU_SIMD_AVX512);
    cr_assert_eq(df_mdot_get(DF_TYPE_Q6_K, DF_MDOT_AVX2) != NULL, best >= DF_CPU_SIMD_AVX2);
    cr_assert_null(df_mdot_get(DF_TYPE_Q3_K, DF_MDOT_AVX2));
    cr_assert_null(df_mdot_get(DF_TYPE_F16, DF_MDOT_AVX512));
    cr_log_info("best SIMD level here: %s", df_cpu_simd_name(best));
}

/* The AVX2 activation quantizers write exactly the bytes of the scalar ones (mdot_act.c, which
 * go through the reference df_quant_q8_0 / df_quant_q8_K), on data with exact halves of the
 * quantization step, values at the clamp, zeros, NaNs, infinities and ties for the largest
 * magnitude. */
Test(cpu_matmul_batch, simd_activation_quantizers_match_scalar) {
    if (!df_mdot_isa_supported(DF_MDOT_AVX2)) {
        cr_log_info("no AVX2 here: nothing to compare");
        return;
    }
    typedef struct {
        const char *name;
        void (*ref)(const float *, void *, int64_t);
        void (*fast)(const float *, void *, int64_t);
        bool (*bytes)(int64_t, size_t *);
        int64_t block;
    } layout;
    const layout layouts[] = {
        {"q8s", df_mdot_quant_q8s, df_mdot_quant_q8s_avx2, df_mdot_act_bytes_q8s, DF_QK8_0},
        {"q8m", df_mdot_quant_q8m, df_mdot_quant_q8m_avx2, df_mdot_act_bytes_q8m, DF_QK8_0},
        {"q4m", df_mdot_quant_q4m, df_mdot_quant_q4m_avx2, df_mdot_act_bytes_q4m, DF_QK8_0},
        {"q8ks", df_mdot_quant_q8ks, df_mdot_quant_q8ks_avx2, df_mdot_act_bytes_q8ks, DF_QK_K},
    };
    df_rng rng;
    df_rng_seed(&rng, 77);
    float *x = malloc(sizeof(float) * 2144);
    for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++) {
        /* an odd block count for the 32-element layouts: Q8M pads before its scales then */
        const int64_t n = layouts[l].block == DF_QK_K ? 2048 : 2144;
        size_t bytes;
        cr_assert(layouts[l].bytes(n, &bytes));
        uint8_t *ra = malloc(bytes), *fa = malloc(bytes);
        for (int trial = 0; trial < 200; trial++) {
            for (int64_t i = 0; i < n; i++) x[i] = df_rng_normal(&rng) * expf(df_rng_normal(&rng));
            /* per block, a few specials: a value that lands on k + 1/2 of the step, a tie of
             * opposite signs for the largest magnitude, a zero block, NaN, inf */
            for (int64_t b = 0; b < n / layouts[l].block; b++) {
                float *xb = x + b * layouts[l].block;
                const int kind = (int)df_rng_below(&rng, 8);
                const int j = (int)df_rng_below(&rng, (uint32_t)layouts[l].block);
                const int k = (int)df_rng_below(&rng, (uint32_t)layouts[l].block);
                if (kind == 0) {
                    xb[0] = 127.0f, xb[j] = 63.5f, xb[k] = -0.5f; /* step exactly 1 */
                    for (int e = 1; e < layouts[l].block; e++)
                        if (e != j && e != k) xb[e] = (float)((int)df_rng_below(&rng, 253) - 126) * 0.5f;
                } else if (kind == 1) {
                    xb[j] = 9.0f, xb[k] = -9.0f;
                } else if (kind == 2) {
                    memset(xb, 0, sizeof(float) * (size_t)layouts[l].block);
                } else if (kind == 3) {
                    xb[j] = NAN;
                } else if (kind == 4) {
                    xb[j] = -INFINITY;
                } else if (kind == 5) {
                    xb[j] = 1e-30f, xb[k] = -1e-38f; /* tiny scales: subnormal fp16 and beyond */
                    for (int e = 0; e < layouts[l].block; e++)
                        if (e != j && e != k) xb[e] *= 1e-33f;
                }
            }
            memset(ra, 0xa5, bytes);
            memset(fa, 0x5a, bytes);
            layouts[l].ref(x, ra, n);
            layouts[l].fast(x, fa, n);
            for (size_t i = 0; i < bytes; i++)
                cr_assert_eq(ra[i], fa[i], "%s, trial %d: byte %zu of %zu is %d, the scalar layout has %d",
                             layouts[l].name, trial, i, bytes, fa[i], ra[i]);
        }
        free(ra);
        free(fa);
    }
    free(x);
}
