/* CPU float kernels (norms, elementwise, softmax/argmax, RoPE, the GDN short convolution):
 * each against a plain double-precision reference written here, on random data, at every
 * SIMD level this CPU has, and with thread pools of 1 and 2 threads (which must give the
 * same bits: tasks only partition independent rows). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "base/rng.h"
#include "helpers/pools.h"

/* ---- shared test scaffolding ---- */

TestSuite(cpu_ops, .init = test_pools_create, .fini = test_pools_destroy);

/* The SIMD levels to run: scalar always, AVX2 where the CPU has it. */
static int simd_levels(df_cpu_simd out[2]) {
    out[0] = DF_CPU_SIMD_SCALAR;
    if (df_cpu_simd_best() >= DF_CPU_SIMD_AVX2) {
        out[1] = DF_CPU_SIMD_AVX2;
        return 2;
    }
    return 1;
}

static void use_level(df_cpu_simd level) {
    cr_assert_eq(df_cpu_simd_set(level), DF_OK, "%s", df_last_error());
}

static float *rand_floats(df_rng *r, size_t n, float scale) {
    float *p = malloc(n * sizeof(float) + 1);
    cr_assert(p);
    for (size_t i = 0; i < n; i++) p[i] = df_rng_normal(r) * scale;
    return p;
}

static float *copy_floats(const float *src, size_t n) {
    float *p = malloc(n * sizeof(float) + 1);
    cr_assert(p);
    memcpy(p, src, n * sizeof(float));
    return p;
}

/* |got - ref| <= atol + rtol * |ref| everywhere, reporting the first violation. */
static void expect_close(const float *got, const double *ref, size_t n, double rtol, double atol,
                         const char *what) {
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - ref[i]);
        cr_assert(err <= atol + rtol * fabs(ref[i]), "%s: element %zu is %.9g, reference %.9g (err %.3g)",
                  what, i, (double)got[i], ref[i], err);
    }
}

static void expect_same_bits(const void *a, const void *b, size_t bytes, const char *what) {
    cr_assert(memcmp(a, b, bytes) == 0, "%s: results differ between thread pool sizes", what);
}

/* ---- SIMD selection ---- */

Test(cpu_ops, simd_level_selection) {
    const df_cpu_simd best = df_cpu_simd_best();
    cr_assert(best == DF_CPU_SIMD_SCALAR || best == DF_CPU_SIMD_AVX2 || best == DF_CPU_SIMD_AVX512);
    cr_assert_eq(df_cpu_simd_set(DF_CPU_SIMD_SCALAR), DF_OK);
    cr_assert_eq(df_cpu_simd_get(), DF_CPU_SIMD_SCALAR);
    cr_assert_eq(df_cpu_simd_set((df_cpu_simd)5), DF_ERR_INVALID);
    cr_assert_eq(df_cpu_simd_get(), DF_CPU_SIMD_SCALAR, "a refused level must not change the selection");
    if (best >= DF_CPU_SIMD_AVX2) {
        cr_assert_eq(df_cpu_simd_set(DF_CPU_SIMD_AVX2), DF_OK);
        cr_assert_eq(df_cpu_simd_get(), DF_CPU_SIMD_AVX2);
    } else {
        cr_assert_eq(df_cpu_simd_set(DF_CPU_SIMD_AVX2), DF_ERR_UNSUPPORTED);
    }
    cr_assert_str_eq(df_cpu_simd_name(DF_CPU_SIMD_AVX2), "avx2");
    cr_assert_str_eq(df_cpu_simd_name(DF_CPU_SIMD_SCALAR), "scalar");
}

/* ---- RMSNorm ---- */

static void ref_rmsnorm_row(const float *x, const float *w, const float *z, int64_t dim, float eps,
                            double *y) {
    double ss = 0.0;
    for (int64_t i = 0; i < dim; i++) ss += (double)x[i] * x[i];
    const double s = 1.0 / sqrt(ss / (double)dim + eps);
    for (int64_t i = 0; i < dim; i++) {
        y[i] = x[i] * s * (w ? w[i] : 1.0);
        if (z) y[i] *= z[i] / (1.0 + exp(-(double)z[i]));
    }
}

Test(cpu_ops, rmsnorm_matches_reference) {
    const int64_t shapes[][3] = {{1, 7, 7}, {5, 64, 64}, {3, 1000, 1003}, {16, 2048, 2048}};
    df_cpu_simd levels[2];
    const int nl = simd_levels(levels);
    df_rng rng;
    df_rng_seed(&rng, 11);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t rows = shapes[s][0], dim = shapes[s][1], stride = shapes[s][2];
        float *x = rand_floats(&rng, (size_t)(rows * stride), 3.0f);
        float *w = rand_floats(&rng, (size_t)dim, 1.0f);
        double *ref = malloc(sizeof(double) * (size_t)(rows * dim));
        for (int with_w = 0; with_w < 2; with_w++) {
            for (int64_t r = 0; r < rows; r++)
                ref_rmsnorm_row(x + r * stride, with_w ? w : NULL, NULL, dim, 1e-6f, ref + r * dim);
            for (int l = 0; l < nl; l++) {
                use_level(levels[l]);
                float *y1 = calloc((size_t)(rows * dim), sizeof(float));
                float *y2 = calloc((size_t)(rows * dim), sizeof(float));
                cr_assert_eq(df_cpu_rmsnorm(g_pool1, x, stride, y1, dim, rows, dim, with_w ? w : NULL, 1e-6f), DF_OK);
                cr_assert_eq(df_cpu_rmsnorm(g_pool2, x, stride, y2, dim, rows, dim, with_w ? w : NULL, 1e-6f), DF_OK);
                expect_close(y1, ref, (size_t)(rows * dim), 2e-6, 1e-7, "rmsnorm");
                expect_same_bits(y1, y2, sizeof(float) * (size_t)(rows * dim), "rmsnorm");
                /* in place gives the same bits as out of place */
                float *xi = copy_floats(x, (size_t)(rows * stride));
                cr_assert_eq(df_cpu_rmsnorm(NULL, xi, stride, xi, stride, rows, dim, with_w ? w : NULL, 1e-6f), DF_OK);
                for (int64_t r = 0; r < rows; r++)
                    cr_assert(memcmp(xi + r * stride, y1 + r * dim, sizeof(float) * (size_t)dim) == 0,
                              "in-place rmsnorm differs in row %lld", (long long)r);
                free(xi);
                free(y1);
                free(y2);
            }
        }
        free(x);
        free(w);
        free(ref);
    }
}

Test(cpu_ops, rmsnorm_gated_matches_reference) {
    df_cpu_simd levels[2];
    const int nl = simd_levels(levels);
    df_rng rng;
    df_rng_seed(&rng, 12);
    const int64_t rows = 3 * 6, dim = 128; /* 3 tokens x 6 value heads */
    float *x = rand_floats(&rng, (size_t)(rows * dim), 0.5f);
    float *z = rand_floats(&rng, (size_t)(rows * dim), 2.0f);
    float *w = rand_floats(&rng, (size_t)dim, 1.0f);
    double *ref = malloc(sizeof(double) * (size_t)(rows * dim));
    for (int64_t r = 0; r < rows; r++) ref_rmsnorm_row(x + r * dim, w, z + r * dim, dim, 1e-6f, ref + r * dim);
    for (int l = 0; l < nl; l++) {
        use_level(levels[l]);
        float *y1 = malloc(sizeof(float) * (size_t)(rows * dim)), *y2 = malloc(sizeof(float) * (size_t)(rows * dim));
        cr_assert_eq(df_cpu_rmsnorm_gated(g_pool1, x, dim, z, dim, y1, dim, rows, dim, w, 1e-6f), DF_OK);
        cr_assert_eq(df_cpu_rmsnorm_gated(g_pool2, x, dim, z, dim, y2, dim, rows, dim, w, 1e-6f), DF_OK);
        expect_close(y1, ref, (size_t)(rows * dim), 1e-5, 1e-7, "rmsnorm_gated");
        expect_same_bits(y1, y2, sizeof(float) * (size_t)(rows * dim), "rmsnorm_gated");
        free(y1);
        free(y2);
    }
    free(x);
    free(z);
    free(w);
    free(ref);
}

/* The attention q_proj layout: per head [q | gate]; q_norm must touch only the q halves. */
Test(cpu_ops, rmsnorm_heads_on_interleaved_view) {
    df_cpu_simd levels[2];
    const int nl = simd_levels(levels);
    df_rng rng;
    df_rng_seed(&rng, 13);
    const int64_t n_tok = 5, n_head = 4, d = 32, n = n_tok * n_head * 2 * d;
    float *src = rand_floats(&rng, (size_t)n, 2.0f);
    float *w = rand_floats(&rng, (size_t)d, 1.0f);
    double *ref = malloc(sizeof(double) * (size_t)d);
    for (int l = 0; l < nl; l++) {
        use_level(levels[l]);
        float *a = copy_floats(src, (size_t)n), *b = copy_floats(src, (size_t)n);
        df_cpu_heads va = {a, n_tok, n_head, d, n_head * 2 * d, 2 * d}, vb = va;
        vb.data = b;
        cr_assert_eq(df_cpu_rmsnorm_heads(g_pool1, &va, w, 1e-6f), DF_OK);
        cr_assert_eq(df_cpu_rmsnorm_heads(g_pool2, &vb, w, 1e-6f), DF_OK);
        expect_same_bits(a, b, sizeof(float) * (size_t)n, "rmsnorm_heads");
        for (int64_t t = 0; t < n_tok; t++)
            for (int64_t h = 0; h < n_head; h++) {
                const int64_t off = t * n_head * 2 * d + h * 2 * d;
                ref_rmsnorm_row(src + off, w, NULL, d, 1e-6f, ref);
                expect_close(a + off, ref, (size_t)d, 2e-6, 1e-7, "rmsnorm_heads q part");
                cr_assert(memcmp(a + off + d, src + off + d, sizeof(float) * (size_t)d) == 0,
                          "rmsnorm_heads wrote into the gate half of head %lld", (long long)h);
            }
        free(a);
        free(b);
    }
    free(src);
    free(w);
    free(ref);
}

/* The GDN q/k parts of the conv output: token stride = all conv channels. */
Test(cpu_ops, l2norm_heads_on_strided_view) {
    df_cpu_simd levels[2];
    const int nl = simd_levels(levels);
    df_rng rng;
    df_rng_seed(&rng, 14);
    const int64_t n_tok = 4, n_head = 3, d = 24, tok_stride = 200, n = n_tok * tok_stride;
    float *src = rand_floats(&rng, (size_t)n, 0.7f);
    double ref[24];
    for (int l = 0; l < nl; l++) {
        use_level(levels[l]);
        float *a = copy_floats(src, (size_t)n), *b = copy_floats(src, (size_t)n);
        df_cpu_heads va = {a + 10, n_tok, n_head, d, tok_stride, d}, vb = va;
        vb.data = b + 10;
        cr_assert_eq(df_cpu_l2norm_heads(g_pool1, &va, 1e-6f), DF_OK);
        cr_assert_eq(df_cpu_l2norm_heads(g_pool2, &vb, 1e-6f), DF_OK);
        expect_same_bits(a, b, sizeof(float) * (size_t)n, "l2norm_heads");
        for (int64_t t = 0; t < n_tok; t++) {
            for (int64_t h = 0; h < n_head; h++) {
                const float *x = src + 10 + t * tok_stride + h * d;
                double ss = 0.0;
                for (int i = 0; i < d; i++) ss += (double)x[i] * x[i];
                for (int i = 0; i < d; i++) ref[i] = x[i] / sqrt(ss + 1e-6);
                expect_close(a + 10 + t * tok_stride + h * d, ref, (size_t)d, 2e-6, 1e-7, "l2norm_heads");
            }
            /* everything outside the heads is untouched */
            const int64_t lo = t * tok_stride, hi = lo + tok_stride;
            for (int64_t i = lo; i < hi; i++) {
                const int64_t rel = i - lo - 10;
                if (rel >= 0 && rel < n_head * d) continue;
                cr_assert(memcmp(&a[i], &src[i], sizeof(float)) == 0, "l2norm wrote outside its view at %lld", (long long)i);
            }
        }
        free(a);
        free(b);
    }
    free(src);
}

/* ---- elementwise ---- */

static double ref_silu(double x) { return x / (1.0 + exp(-x)); }
static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double ref_softplus(double x) { return x > 20.0 ? x : log1p(exp(x)); }

Test(cpu_ops, elementwise_match_reference) {
    df_rng rng;
    df_rng_seed(&rng, 21);
    const int64_t n = 70001; /* enough to be split into tasks */
    float *a = rand_floats(&rng, (size_t)n, 6.0f), *b = rand_floats(&rng, (size_t)n, 2.0f);
    a[0] = 25.0f; a[1] = -30.0f; a[2] = 19.9f; a[3] = 20.1f; a[4] = -90.0f; a[5] = 88.0f;
    double *ref = malloc(sizeof(double) * (size_t)n);
    float *y1 = malloc(sizeof(float) * (size_t)n), *y2 = malloc(sizeof(float) * (size_t)n);

    for (int64_t i = 0; i < n; i++) ref[i] = (double)a[i] + b[i];
    cr_assert_eq(df_cpu_add(g_pool1, a, b, y1, n), DF_OK);
    cr_assert_eq(df_cpu_add(g_pool2, a, b, y2, n), DF_OK);
    expect_close(y1, ref, (size_t)n, 1e-7, 1e-7, "add");
    expect_same_bits(y1, y2, sizeof(float) * (size_t)n, "add");

    for (int64_t i = 0; i < n; i++) ref[i] = ref_silu(a[i]);
    cr_assert_eq(df_cpu_silu(g_pool1, a, y1, n), DF_OK);
    cr_assert_eq(df_cpu_silu(g_pool2, a, y2, n), DF_OK);
    expect_close(y1, ref, (size_t)n, 1e-6, 1e-30, "silu");
    expect_same_bits(y1, y2, sizeof(float) * (size_t)n, "silu");

    for (int64_t i = 0; i < n; i++) ref[i] = ref_silu(a[i]) * b[i];
    cr_assert_eq(df_cpu_swiglu(g_pool1, a, b, y1, n), DF_OK);
    cr_assert_eq(df_cpu_swiglu(g_pool2, a, b, y2, n), DF_OK);
    expect_close(y1, ref, (size_t)n, 1e-6, 1e-30, "swiglu");
    expect_same_bits(y1, y2, sizeof(float) * (size_t)n, "swiglu");

    for (int64_t i = 0; i < n; i++) ref[i] = ref_sigmoid(a[i]);
    cr_assert_eq(df_cpu_sigmoid(g_pool1, a, y1, n), DF_OK);
    cr_assert_eq(df_cpu_sigmoid(g_pool2, a, y2, n), DF_OK);
    expect_close(y1, ref, (size_t)n, 1e-6, 1e-30, "sigmoid");
    expect_same_bits(y1, y2, sizeof(float) * (size_t)n, "sigmoid");

    for (int64_t i = 0; i < n; i++) ref[i] = ref_softplus(a[i]);
    cr_assert_eq(df_cpu_softplus(g_pool1, a, y1, n), DF_OK);
    cr_assert_eq(df_cpu_softplus(g_pool2, a, y2, n), DF_OK);
    expect_close(y1, ref, (size_t)n, 1e-6, 1e-30, "softplus");
    expect_same_bits(y1, y2, sizeof(float) * (size_t)n, "softplus");

    /* in place */
    float *c = copy_floats(a, (size_t)n);
    cr_assert_eq(df_cpu_swiglu(g_pool2, c, b, c, n), DF_OK);
    for (int64_t i = 0; i < n; i++) ref[i] = ref_silu(a[i]) * b[i];
    expect_close(c, ref, (size_t)n, 1e-6, 1e-30, "swiglu in place");
    free(c);

    cr_assert_eq(df_cpu_add(NULL, NULL, b, y1, n), DF_ERR_INVALID);
    cr_assert_eq(df_cpu_silu(NULL, a, y1, -1), DF_ERR_INVALID);
    cr_assert_eq(df_cpu_silu(NULL, a, y1, 0), DF_OK);
    free(a);
    free(b);
    free(ref);
    free(y1);
    free(y2);
}

Test(cpu_ops, gdn_gates_match_reference) {
    df_rng rng;
    df_rng_seed(&rng, 22);
    const int64_t n_tok = 7, nv = 6;
    float *a = rand_floats(&rng, (size_t)(n_tok * nv), 3.0f), *b = rand_floats(&rng, (size_t)(n_tok * nv), 3.0f);
    float *dt = rand_floats(&rng, (size_t)nv, 1.0f), *A = malloc(sizeof(float) * (size_t)nv);
    for (int64_t h = 0; h < nv; h++) A[h] = -expf(df_rng_uniform(&rng, -4.0f, 2.7f)); /* -exp(A_log) */
    float g[42], beta[42];
    cr_assert_eq(df_cpu_gdn_gates(a, b, dt, A, n_tok, nv, g, beta), DF_OK);
    double rg[42], rb[42];
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t h = 0; h < nv; h++) {
            rg[t * nv + h] = (double)A[h] * ref_softplus((double)a[t * nv + h] + dt[h]);
            rb[t * nv + h] = ref_sigmoid(b[t * nv + h]);
        }
    expect_close(g, rg, 42, 2e-6, 1e-30, "gdn gates g");
    expect_close(beta, rb, 42, 1e-6, 1e-30, "gdn gates beta");
    for (int i = 0; i < 42; i++) cr_assert(g[i] <= 0.0f && beta[i] > 0.0f && beta[i] < 1.0f);
    free(a);
    free(b);
    free(dt);
    free(A);
}

/* ---- softmax and argmax ---- */

Test(cpu_ops, softmax_rows_match_reference) {
    df_rng rng;
    df_rng_seed(&rng, 31);
    const int64_t rows = 9, n = 3001, stride = 3010;
    float *x = rand_floats(&rng, (size_t)(rows * stride), 8.0f);
    x[5] = -INFINITY;
    x[stride + 7] = 80.0f; /* one dominant logit: exp without the max shift would overflow */
    double *ref = malloc(sizeof(double) * (size_t)(rows * n));
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * stride;
        double m = -INFINITY, s = 0.0;
        for (int64_t i = 0; i < n; i++) if (xr[i] > m) m = xr[i];
        for (int64_t i = 0; i < n; i++) s += exp((double)xr[i] - m);
        for (int64_t i = 0; i < n; i++) ref[r * n + i] = exp((double)xr[i] - m) / s;
    }
    float *a = copy_floats(x, (size_t)(rows * stride)), *b = copy_floats(x, (size_t)(rows * stride));
    cr_assert_eq(df_cpu_softmax_rows(g_pool1, a, rows, n, stride), DF_OK);
    cr_assert_eq(df_cpu_softmax_rows(g_pool2, b, rows, n, stride), DF_OK);
    expect_same_bits(a, b, sizeof(float) * (size_t)(rows * stride), "softmax");
    for (int64_t r = 0; r < rows; r++) expect_close(a + r * stride, ref + r * n, (size_t)n, 2e-6, 1e-12, "softmax");
    cr_assert(a[5] == 0.0f, "a -inf logit must get probability 0");
    /* NaN and all -inf rows are refused */
    float bad[4] = {1.0f, NAN, 2.0f, 0.0f};
    cr_assert_eq(df_cpu_softmax_rows(NULL, bad, 1, 4, 4), DF_ERR_INVALID);
    float ninf[3] = {-INFINITY, -INFINITY, -INFINITY};
    cr_assert_eq(df_cpu_softmax_rows(NULL, ninf, 1, 3, 3), DF_ERR_INVALID);
    free(x);
    free(ref);
    free(a);
    free(b);
}

Test(cpu_ops, argmax_first_max_wins_and_skips_nan) {
    float x[8] = {NAN, 1.0f, 3.0f, NAN, 3.0f, -INFINITY, 2.0f, 3.0f};
    int64_t i = -7;
    cr_assert_eq(df_cpu_argmax(x, 8, &i), DF_OK);
    cr_assert_eq(i, 2);
    float y[3] = {-INFINITY, NAN, -INFINITY};
    cr_assert_eq(df_cpu_argmax(y, 3, &i), DF_OK);
    cr_assert_eq(i, 0);
    float z[2] = {NAN, NAN};
    cr_assert_eq(df_cpu_argmax(z, 2, &i), DF_ERR_INVALID);
    cr_assert(strstr(df_last_error(), "NaN") != NULL);
    cr_assert_eq(df_cpu_argmax(x, 0, &i), DF_ERR_INVALID);
    float w[3] = {1.0f, INFINITY, NAN};
    cr_assert_eq(df_cpu_argmax(w, 3, &i), DF_OK);
    cr_assert_eq(i, 1);

    df_rng rng;
    df_rng_seed(&rng, 32);
    const int64_t rows = 6, n = 50000;
    float *big = rand_floats(&rng, (size_t)(rows * n), 1.0f);
    int64_t want[6];
    for (int64_t r = 0; r < rows; r++) {
        int64_t pos = (int64_t)df_rng_below(&rng, (uint32_t)n);
        big[r * n + pos] = 100.0f + (float)r;
        want[r] = pos;
        /* a later tie must not win */
        if (pos + 1 < n) big[r * n + n - 1] = 100.0f + (float)r;
    }
    int64_t got1[6], got2[6];
    cr_assert_eq(df_cpu_argmax_rows(g_pool1, big, rows, n, n, got1), DF_OK);
    cr_assert_eq(df_cpu_argmax_rows(g_pool2, big, rows, n, n, got2), DF_OK);
    for (int r = 0; r < rows; r++) {
        cr_assert_eq(got1[r], want[r], "row %d: %lld, expected %lld", r, (long long)got1[r], (long long)want[r]);
        cr_assert_eq(got2[r], want[r]);
    }
    free(big);
}

/* ---- RoPE ---- */

Test(cpu_ops, rope_inv_freq_matches_formula) {
    float f[64];
    cr_assert_eq(df_cpu_rope_inv_freq(1e7f, 64, f), DF_OK);
    for (int i = 0; i < 32; i++) {
        const double want = pow(1e7, -2.0 * i / 64.0);
        cr_assert(fabs(f[i] - want) <= 3e-7 * want, "inv_freq[%d] = %.9g, expected %.9g", i, (double)f[i], want);
    }
    cr_assert_eq(df_cpu_rope_inv_freq(1e6f, 63, f), DF_ERR_INVALID);
    cr_assert_eq(df_cpu_rope_inv_freq(-1.0f, 64, f), DF_ERR_INVALID);
    cr_assert_eq(df_cpu_rope_inv_freq(1e4f, 0, f), DF_ERR_INVALID);
}

/* Partial NEOX rotation: pairs (i, i + rot/2) of the first rot dims rotate; the rest passes. */
Test(cpu_ops, rope_partial_neox_matches_reference) {
    df_cpu_simd levels[2];
    const int nl = simd_levels(levels);
    df_rng rng;
    df_rng_seed(&rng, 41);
    const int64_t n_tok = 9, n_head = 3, d = 64, head_stride = 2 * d, tok_stride = n_head * head_stride;
    const int64_t rots[] = {16, 64};
    const int64_t n = n_tok * tok_stride;
    int32_t pos[9] = {0, 1, 2, 7, 100, 4095, 32768, 99999, 3};
    for (size_t ri = 0; ri < 2; ri++) {
        const int64_t rot = rots[ri], half = rot / 2;
        float inv[32];
        cr_assert_eq(df_cpu_rope_inv_freq(1e6f, rot, inv), DF_OK);
        float *src = rand_floats(&rng, (size_t)n, 1.0f);
        for (int l = 0; l < nl; l++) {
            use_level(levels[l]);
            float *a = copy_floats(src, (size_t)n), *b = copy_floats(src, (size_t)n);
            df_cpu_heads va = {a, n_tok, n_head, d, tok_stride, head_stride}, vb = va;
            vb.data = b;
            cr_assert_eq(df_cpu_rope(g_pool1, &va, pos, inv, rot), DF_OK);
            cr_assert_eq(df_cpu_rope(g_pool2, &vb, pos, inv, rot), DF_OK);
            expect_same_bits(a, b, sizeof(float) * (size_t)n, "rope");
            double ref[64];
            for (int64_t t = 0; t < n_tok; t++)
                for (int64_t h = 0; h < n_head; h++) {
                    const float *x = src + t * tok_stride + h * head_stride;
                    for (int64_t i = 0; i < d; i++) ref[i] = x[i];
                    for (int64_t i = 0; i < half; i++) {
                        const float ang = (float)pos[t] * inv[i]; /* HF forms the angle in float */
                        const double c = cos((double)ang), s = sin((double)ang);
                        ref[i] = x[i] * c - (double)x[i + half] * s;
                        ref[i + half] = x[i + half] * c + (double)x[i] * s;
                    }
                    const float *got = a + t * tok_stride + h * head_stride;
                    expect_close(got, ref, (size_t)d, 1e-5, 1e-6, "rope");
                    for (int64_t i = rot; i < head_stride; i++)
                        cr_assert(memcmp(&got[i], &x[i], sizeof(float)) == 0, "rope changed element %lld", (long long)i);
                }
            free(a);
            free(b);
        }
        free(src);
    }
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, inv[4] = {1, 1, 1, 1};
    df_cpu_heads v = df_cpu_heads_packed(x, 1, 1, 8);
    cr_assert_eq(df_cpu_rope(NULL, &v, pos, inv, 10), DF_ERR_INVALID);
    cr_assert_eq(df_cpu_rope(NULL, &v, pos, inv, 3), DF_ERR_INVALID);
}

/* ---- the GDN short convolution ---- */

static void ref_conv(const float *x, int64_t n_tok, int64_t C, const float *w, int64_t K,
                     const float *state, double *out) {
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t c = 0; c < C; c++) {
            double s = 0.0;
            for (int64_t j = 0; j < K; j++) {
                const int64_t i = t - (K - 1) + j;
                const double in = i >= 0 ? x[i * C + c] : state[(K - 1 + i) * C + c];
                s += w[c * K + j] * in;
            }
            out[t * C + c] = s / (1.0 + exp(-s));
        }
}

Test(cpu_ops, conv1d_matches_reference_and_updates_state) {
    df_rng rng;
    df_rng_seed(&rng, 51);
    const int64_t C = 300, K = 4;
    const int64_t toks[] = {1, 2, 3, 5, 16, 40};
    float *w = rand_floats(&rng, (size_t)(C * K), 0.5f);
    for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++) {
        const int64_t n_tok = toks[ti];
        float *x = rand_floats(&rng, (size_t)(n_tok * C), 1.0f);
        float *state0 = rand_floats(&rng, (size_t)((K - 1) * C), 1.0f);
        double *ref = malloc(sizeof(double) * (size_t)(n_tok * C));
        ref_conv(x, n_tok, C, w, K, state0, ref);
        float *s1 = copy_floats(state0, (size_t)((K - 1) * C)), *s2 = copy_floats(state0, (size_t)((K - 1) * C));
        float *o1 = malloc(sizeof(float) * (size_t)(n_tok * C)), *o2 = malloc(sizeof(float) * (size_t)(n_tok * C));
        cr_assert_eq(df_cpu_conv1d_silu(g_pool1, x, C, n_tok, C, w, K, s1, o1, C, NULL), DF_OK);
        cr_assert_eq(df_cpu_conv1d_silu(g_pool2, x, C, n_tok, C, w, K, s2, o2, C, NULL), DF_OK);
        expect_close(o1, ref, (size_t)(n_tok * C), 2e-6, 1e-6, "conv1d");
        expect_same_bits(o1, o2, sizeof(float) * (size_t)(n_tok * C), "conv1d out");
        expect_same_bits(s1, s2, sizeof(float) * (size_t)((K - 1) * C), "conv1d state");
        /* the new state is the last K-1 inputs, reaching into the old state for short batches */
        for (int64_t r = 0; r < K - 1; r++)
            for (int64_t c = 0; c < C; c++) {
                const int64_t i = n_tok - (K - 1) + r;
                const float want = i >= 0 ? x[i * C + c] : state0[(K - 1 + i) * C + c];
                cr_assert(s1[r * C + c] == want, "state row %lld channel %lld", (long long)r, (long long)c);
            }
        free(x);
        free(state0);
        free(ref);
        free(s1);
        free(s2);
        free(o1);
        free(o2);
    }
    free(w);
}

/* capture[t] is the state after token t: running t+1 tokens alone leaves that same state;
 * and one batch equals the same tokens fed in two batches. */
Test(cpu_ops, conv1d_capture_and_split_batches) {
    df_rng rng;
    df_rng_seed(&rng, 52);
    const int64_t C = 130, K = 4, n_tok = 11, keep = K - 1;
    float *w = rand_floats(&rng, (size_t)(C * K), 0.5f);
    float *x = rand_floats(&rng, (size_t)(n_tok * 2 * C), 1.0f); /* token stride 2C */
    float *state0 = rand_floats(&rng, (size_t)(keep * C), 1.0f);
    float *cap = malloc(sizeof(float) * (size_t)(n_tok * keep * C));
    float *s = copy_floats(state0, (size_t)(keep * C));
    float *out = malloc(sizeof(float) * (size_t)(n_tok * C));
    cr_assert_eq(df_cpu_conv1d_silu(g_pool2, x, 2 * C, n_tok, C, w, K, s, out, C, cap), DF_OK);
    for (int64_t t = 0; t < n_tok; t++) {
        float *st = copy_floats(state0, (size_t)(keep * C));
        float *o = malloc(sizeof(float) * (size_t)((t + 1) * C));
        cr_assert_eq(df_cpu_conv1d_silu(g_pool1, x, 2 * C, t + 1, C, w, K, st, o, C, NULL), DF_OK);
        cr_assert(memcmp(st, cap + t * keep * C, sizeof(float) * (size_t)(keep * C)) == 0,
                  "capture[%lld] is not the state after %lld tokens", (long long)t, (long long)(t + 1));
        free(st);
        free(o);
    }
    cr_assert(memcmp(s, cap + (n_tok - 1) * keep * C, sizeof(float) * (size_t)(keep * C)) == 0);
    /* split: 4 tokens, then 7 */
    float *s2 = copy_floats(state0, (size_t)(keep * C));
    float *out2 = malloc(sizeof(float) * (size_t)(n_tok * C));
    cr_assert_eq(df_cpu_conv1d_silu(NULL, x, 2 * C, 4, C, w, K, s2, out2, C, NULL), DF_OK);
    cr_assert_eq(df_cpu_conv1d_silu(NULL, x + 4 * 2 * C, 2 * C, 7, C, w, K, s2, out2 + 4 * C, C, NULL), DF_OK);
    cr_assert(memcmp(out, out2, sizeof(float) * (size_t)(n_tok * C)) == 0, "split batches differ");
    cr_assert(memcmp(s, s2, sizeof(float) * (size_t)(keep * C)) == 0);
    cr_assert_eq(df_cpu_conv1d_silu(NULL, x, 2 * C, n_tok, C, w, 0, s2, out2, C, NULL), DF_ERR_INVALID);
    cr_assert_eq(df_cpu_conv1d_silu(NULL, x, 2 * C, n_tok, C, w, K, NULL, out2, C, NULL), DF_ERR_INVALID);
    free(w);
    free(x);
    free(state0);
    free(cap);
    free(s);
    free(out);
    free(s2);
    free(out2);
}
