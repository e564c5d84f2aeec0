/* df_cpu_matmul: y = x W^T for every weight type the quant traits table can quantize and dot,
 * against a double-precision reference built from the dequantized weights and the
 * dequantized activations (so the comparison isolates the matmul's own plumbing: which
 * row meets which token, scratch layout, threading), plus a loose check against the exact
 * float product. Pools of 1 and 2 threads must give the same bits. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "base/alloc.h"
#include "base/rng.h"
#include "helpers/pools.h"

TestSuite(cpu_matmul, .init = test_pools_create, .fini = test_pools_destroy);

static int simd_levels(df_cpu_simd out[2]) {
    out[0] = DF_CPU_SIMD_SCALAR;
    if (df_cpu_simd_best() >= DF_CPU_SIMD_AVX2) {
        out[1] = DF_CPU_SIMD_AVX2;
        return 2;
    }
    return 1;
}

/* A weight type is testable when we can make weights of it and decode both sides. */
static bool testable(df_type t) {
    const df_type_traits *tr = df_type_get_scalar((uint32_t)t);
    if (!tr || !tr->vec_dot || !tr->from_float || !tr->to_float) return false;
    const df_type_traits *act = df_type_get_scalar((uint32_t)tr->vec_dot_type);
    return act && act->to_float && act->from_float;
}

static void check_type(df_type wt, int64_t n_tok, int64_t n_in, int64_t n_out, uint64_t seed) {
    const df_type_traits *tr = df_type_get_scalar((uint32_t)wt);
    const df_type_traits *act = df_type_get_scalar((uint32_t)tr->vec_dot_type);
    df_rng rng;
    df_rng_seed(&rng, seed);
    size_t w_row, a_row;
    cr_assert(df_type_row_size(wt, n_in, &w_row));
    cr_assert(df_type_row_size(tr->vec_dot_type, n_in, &a_row));

    /* weights: random floats through the type's own quantizer */
    float *wf = malloc(sizeof(float) * (size_t)n_in);
    uint8_t *w = df_alloc_aligned(w_row * (size_t)n_out);
    float *wd = malloc(sizeof(float) * (size_t)(n_in * n_out)); /* dequantized */
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) wf[i] = df_rng_normal(&rng) * 0.1f;
        tr->from_float(wf, w + (size_t)o * w_row, n_in);
        tr->to_float(w + (size_t)o * w_row, wd + o * n_in, n_in);
    }
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    for (int64_t i = 0; i < n_tok * n_in; i++) x[i] = df_rng_normal(&rng);
    /* what the activations become after conversion to vec_dot_type */
    float *xd = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    uint8_t *tmp = df_alloc_aligned(a_row);
    for (int64_t t = 0; t < n_tok; t++) {
        act->from_float(x + t * n_in, tmp, n_in);
        act->to_float(tmp, xd + t * n_in, n_in);
    }

    const size_t scratch_size = df_cpu_matmul_scratch_size(wt, n_tok, n_in);
    void *scratch = df_alloc_aligned(scratch_size);
    float *y1 = malloc(sizeof(float) * (size_t)(n_tok * n_out)), *y2 = malloc(sizeof(float) * (size_t)(n_tok * n_out));
    df_cpu_simd levels[2];
    const int nl = simd_levels(levels);
    for (int l = 0; l < nl; l++) {
        cr_assert_eq(df_cpu_simd_set(levels[l]), DF_OK);
        cr_assert_eq(df_cpu_matmul(g_pool1, x, n_tok, n_in, w, wt, n_out, y1, scratch, scratch_size), DF_OK,
                     "%s: %s", tr->name, df_last_error());
        cr_assert_eq(df_cpu_matmul(g_pool2, x, n_tok, n_in, w, wt, n_out, y2, scratch, scratch_size), DF_OK);
        cr_assert(memcmp(y1, y2, sizeof(float) * (size_t)(n_tok * n_out)) == 0,
                  "%s: pools of 1 and 2 threads disagree", tr->name);
        for (int64_t t = 0; t < n_tok; t++)
            for (int64_t o = 0; o < n_out; o++) {
                double ref = 0.0, mag = 0.0, exact = 0.0, mag_exact = 0.0;
                for (int64_t i = 0; i < n_in; i++) {
                    ref += (double)wd[o * n_in + i] * xd[t * n_in + i];
                    mag += fabs((double)wd[o * n_in + i] * xd[t * n_in + i]);
                    exact += (double)wd[o * n_in + i] * x[t * n_in + i];
                    mag_exact += fabs((double)wd[o * n_in + i] * x[t * n_in + i]);
                }
                const double got = y1[t * n_out + o];
                cr_assert(fabs(got - ref) <= 3e-6 * mag + 1e-7,
                          "%s (%s): y[%lld][%lld] = %.8g, reference %.8g (scale %.3g)", tr->name,
                          df_cpu_simd_name(levels[l]), (long long)t, (long long)o, got, ref, mag);
                /* activation rounding (Q8: ~1/254 of each element) bounds the distance to the float product */
                cr_assert(fabs(got - exact) <= 0.02 * mag_exact + 1e-6,
                          "%s: y[%lld][%lld] = %.6g is far from the float product %.6g", tr->name,
                          (long long)t, (long long)o, got, exact);
            }
        /* batch invariance: each token alone gives the bits it got inside the batch, which is
         * what keeps a speculative verify byte-identical to one-token decoding */
        float *y_one = malloc(sizeof(float) * (size_t)n_out);
        for (int64_t t = 0; t < n_tok; t++) {
            cr_assert_eq(df_cpu_matmul(g_pool2, x + t * n_in, 1, n_in, w, wt, n_out, y_one, scratch, scratch_size), DF_OK);
            cr_assert(memcmp(y_one, y1 + t * n_out, sizeof(float) * (size_t)n_out) == 0,
                      "%s (%s): token %lld alone differs from the same token in a batch of %lld", tr->name,
                      df_cpu_simd_name(levels[l]), (long long)t, (long long)n_tok);
        }
        free(y_one);
    }
    free(wf);
    df_free_aligned(w);
    free(wd);
    free(x);
    free(xd);
    df_free_aligned(tmp);
    df_free_aligned(scratch);
    free(y1);
    free(y2);
}

Test(cpu_matmul, every_dot_type_matches_reference) {
    int tested = 0;
    bool saw_q8_0 = false, saw_q4_k = false;
    for (int t = 0; t < DF_TYPE_COUNT; t++) {
        if (!testable((df_type)t)) continue;
        const int64_t toks[] = {1, 3, 17};
        for (size_t i = 0; i < 3; i++) check_type((df_type)t, toks[i], 512, 37, 1000 + (uint64_t)t * 7 + i);
        tested++;
        saw_q8_0 |= t == DF_TYPE_Q8_0;
        saw_q4_k |= t == DF_TYPE_Q4_K;
    }
    cr_assert(tested >= 3, "only %d weight types were testable", tested);
    cr_assert(saw_q8_0 && saw_q4_k, "Q8_0 and Q4_K must be among the tested types");
}

/* Many tokens and a W larger than the per-task L2 budget: token blocks and row blocks. */
Test(cpu_matmul, long_prefill_blocks) {
    check_type(DF_TYPE_F32, 40, 1024, 300, 77);
    check_type(DF_TYPE_F16, 33, 1024, 300, 78);
    check_type(DF_TYPE_Q8_0, 35, 1024, 257, 79);
}

/* Float weights with rows that are not a multiple of 8: every tile shape ends its pairs with
 * a scalar tail, and batch invariance must hold through it. */
Test(cpu_matmul, float_rows_with_tails) {
    check_type(DF_TYPE_F32, 7, 301, 13, 90);
    check_type(DF_TYPE_F16, 5, 37, 9, 91);
    check_type(DF_TYPE_BF16, 3, 4099, 6, 92);
}

Test(cpu_matmul, bad_arguments_are_refused) {
    float x[256] = {0.5f}, y[4];
    float w[1024] = {0.25f};
    uint8_t scratch[4096] __attribute__((aligned(64)));
    /* unknown and retired type ids, and a type without a dot product */
    cr_assert_eq(df_cpu_matmul(NULL, x, 1, 256, w, (df_type)4, 4, y, scratch, sizeof scratch), DF_ERR_UNSUPPORTED);
    cr_assert_eq(df_cpu_matmul(NULL, x, 1, 256, w, DF_TYPE_I32, 4, y, scratch, sizeof scratch), DF_ERR_UNSUPPORTED);
    /* a row that is not whole blocks */
    cr_assert_eq(df_cpu_matmul(NULL, x, 1, 100, w, DF_TYPE_Q4_K, 1, y, scratch, sizeof scratch), DF_ERR_INVALID);
    cr_assert(strstr(df_last_error(), "q4_K") != NULL, "%s", df_last_error());
    /* scratch too small for the quantized activations */
    cr_assert_eq(df_cpu_matmul(NULL, x, 1, 256, w, DF_TYPE_Q8_0, 1, y, scratch, 8), DF_ERR_INVALID);
    cr_assert_eq(df_cpu_matmul(NULL, x, 1, 256, w, DF_TYPE_Q8_0, 1, y, NULL, 0), DF_ERR_INVALID);
    cr_assert(strstr(df_last_error(), "scratch") != NULL);
    cr_assert_eq(df_cpu_matmul(NULL, x, 0, 256, w, DF_TYPE_F32, 1, y, NULL, 0), DF_ERR_INVALID);
    /* float weights need no scratch */
    cr_assert_eq(df_cpu_matmul_scratch_size(DF_TYPE_F16, 16, 256), 0);
    cr_assert_eq(df_cpu_matmul(NULL, x, 1, 256, w, DF_TYPE_F32, 4, y, NULL, 0), DF_OK);
}
