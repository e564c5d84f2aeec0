/* The SIMD versions of the CPU inner loops (cpu_simd_avx2.c, cpu_simd_avx512.c) against each
 * other and against references written here: SiLU and sigmoid (a polynomial e^x instead of
 * libm's), argmax, and the AVX-512 GDN step. Where two levels promise the same bits (the
 * AVX2 and AVX-512 activations and GDN steps run the same operations per lane), the
 * comparison is exact; where an element's result must not depend on where an array is cut
 * (speculative verify against decode), that is checked bit for bit too. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "base/rng.h"

static void restore_level(void) { df_cpu_simd_set(df_cpu_simd_best()); }
TestSuite(cpu_simd_levels, .fini = restore_level);

static const df_cpu_kernels *kernels_at(df_cpu_simd level) {
    cr_assert_eq(df_cpu_simd_set(level), DF_OK);
    return df_cpu_kernels_get();
}

static double ref_silu(double x) { return x / (1.0 + exp(-x)); }
static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Inputs that reach every branch of the e^x approximation: the clamps, NaN, infinities,
 * zeros of both signs and the range boundaries, among random values of wide magnitude. */
static float *activation_inputs(df_rng *rng, int64_t n) {
    float *a = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) a[i] = df_rng_normal(rng) * expf(2.0f * df_rng_normal(rng));
    const float special[] = {0.0f, -0.0f, 88.7f, -88.7f, 87.4f, -87.4f, 88.72f, -88.73f, 100.0f,
                             -100.0f, 1e-20f, -1e-20f, 20.0f, -20.0f, 0.6931472f, INFINITY, -INFINITY, NAN};
    for (size_t k = 0; k < sizeof special / sizeof special[0]; k++) a[(int64_t)(k * 37) % n] = special[k];
    return a;
}

Test(cpu_simd_levels, activations_match_reference_and_levels_agree) {
    if (df_cpu_simd_best() < DF_CPU_SIMD_AVX2) {
        cr_log_info("no AVX2 here");
        return;
    }
    df_rng rng;
    df_rng_seed(&rng, 61);
    const int64_t n = 4099; /* not a multiple of 8 or 16: tails on both levels */
    float *a = activation_inputs(&rng, n), *b = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) b[i] = df_rng_normal(&rng);
    float *y2 = malloc(sizeof(float) * (size_t)n), *y5 = malloc(sizeof(float) * (size_t)n);
    for (int silu = 0; silu < 2; silu++)
        for (int mul = 0; mul < 2; mul++) {
            const df_cpu_kernels *K2 = kernels_at(DF_CPU_SIMD_AVX2);
            (silu ? K2->silu_mul_f32 : K2->sigmoid_mul_f32)(y2, a, mul ? b : NULL, n);
            for (int64_t i = 0; i < n; i++) {
                const double r = (silu ? ref_silu(a[i]) : ref_sigmoid(a[i])) * (mul ? b[i] : 1.0);
                if (isnan(a[i])) {
                    cr_assert(isnan(y2[i]), "%s(NaN) = %g", silu ? "silu" : "sigmoid", (double)y2[i]);
                    continue;
                }
                if (isinf(a[i]) && silu && a[i] < 0) continue; /* -inf / inf: NaN, as in libm's formula */
                if (isinf(r)) {
                    cr_assert_eq((double)y2[i], r, "%s(%g)", silu ? "silu" : "sigmoid", (double)a[i]);
                    continue;
                }
                const double err = fabs((double)y2[i] - r);
                cr_assert(err <= 1e-6 * fabs(r) + 1e-30, "%s(%.9g)%s = %.9g, reference %.9g", silu ? "silu" : "sigmoid",
                          (double)a[i], mul ? " * b" : "", (double)y2[i], r);
            }
            /* cut anywhere: the same bits (the tail takes the vector code) */
            memcpy(y5, y2, sizeof(float) * (size_t)n);
            for (int64_t cut = 1; cut < 40; cut += 3) {
                (silu ? K2->silu_mul_f32 : K2->sigmoid_mul_f32)(y5, a, mul ? b : NULL, cut);
                (silu ? K2->silu_mul_f32 : K2->sigmoid_mul_f32)(y5 + cut, a + cut, mul ? b + cut : NULL, n - cut);
                cr_assert(memcmp(y2, y5, sizeof(float) * (size_t)n) == 0, "cut at %lld changes bits", (long long)cut);
            }
            if (df_cpu_simd_best() >= DF_CPU_SIMD_AVX512) {
                const df_cpu_kernels *K5 = kernels_at(DF_CPU_SIMD_AVX512);
                (silu ? K5->silu_mul_f32 : K5->sigmoid_mul_f32)(y5, a, mul ? b : NULL, n);
                cr_assert(memcmp(y2, y5, sizeof(float) * (size_t)n) == 0, "AVX-512 and AVX2 %s differ",
                          silu ? "silu" : "sigmoid");
            }
        }
    free(a);
    free(b);
    free(y2);
    free(y5);
}

Test(cpu_simd_levels, argmax_equals_scalar_scan) {
    df_rng rng;
    df_rng_seed(&rng, 62);
    const df_cpu_kernels *S = kernels_at(DF_CPU_SIMD_SCALAR);
    float x[300];
    for (int trial = 0; trial < 3000; trial++) {
        const int n = 1 + (int)df_rng_below(&rng, 300);
        const int kind = trial % 6;
        for (int i = 0; i < n; i++) {
            x[i] = kind == 0 ? df_rng_normal(&rng)
                 : kind == 1 ? (float)((int)df_rng_below(&rng, 5) - 2)     /* many ties */
                 : kind == 2 ? (df_rng_below(&rng, 2) ? 0.0f : -0.0f)      /* signed zeros */
                 : kind == 3 ? (df_rng_below(&rng, 3) ? NAN : -INFINITY)   /* NaN and -inf only */
                 : kind == 4 ? NAN                                          /* all NaN */
                             : (df_rng_below(&rng, 4) ? df_rng_normal(&rng) : NAN);
        }
        const int64_t want = S->argmax_f32(x, n);
        for (int level = DF_CPU_SIMD_AVX2; level <= (int)df_cpu_simd_best(); level++) {
            const int64_t got = kernels_at((df_cpu_simd)level)->argmax_f32(x, n);
            cr_assert_eq(got, want, "trial %d (kind %d, n %d), level %d: %lld, scalar %lld", trial, kind, n, level,
                         (long long)got, (long long)want);
        }
        /* the scalar scan itself: first largest non-NaN */
        for (int i = 0; i < n; i++)
            if (!isnan(x[i])) {
                cr_assert(want >= 0 && !(x[i] > x[want]) && !isnan(x[want]));
                if (x[i] == x[want]) cr_assert(i >= want, "a tie must go to the first");
            }
        if (kind == 4) cr_assert_eq(want, -1);
    }
    kernels_at(df_cpu_simd_best());
}

/* The AVX-512 GDN step runs the AVX2 step's operations per lane: same bits, with and
 * without captures, for head sizes with 16- and 32-column blocks and a scalar remainder. */
Test(cpu_simd_levels, gdn_step_avx512_equals_avx2) {
    if (df_cpu_simd_best() < DF_CPU_SIMD_AVX512) {
        cr_log_info("no AVX-512 here");
        return;
    }
    df_rng rng;
    df_rng_seed(&rng, 63);
    const int64_t dims[][2] = {{64, 64}, {128, 128}, {48, 80}, {33, 56}, {16, 21}};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        const int64_t dk = dims[di][0], dv = dims[di][1];
        float *S2 = malloc(sizeof(float) * (size_t)(dk * dv)), *S5 = malloc(sizeof(float) * (size_t)(dk * dv));
        float *q = malloc(sizeof(float) * (size_t)dk), *k = malloc(sizeof(float) * (size_t)dk);
        float *v = malloc(sizeof(float) * (size_t)dv), *o2 = malloc(sizeof(float) * (size_t)dv);
        float *o5 = malloc(sizeof(float) * (size_t)dv);
        float *c2 = malloc(sizeof(float) * (size_t)(dk * dv)), *c5 = malloc(sizeof(float) * (size_t)(dk * dv));
        for (int64_t i = 0; i < dk * dv; i++) S2[i] = S5[i] = df_rng_normal(&rng);
        for (int step = 0; step < 6; step++) {
            for (int64_t i = 0; i < dk; i++) q[i] = df_rng_normal(&rng), k[i] = df_rng_normal(&rng) * 0.1f;
            for (int64_t i = 0; i < dv; i++) v[i] = df_rng_normal(&rng);
            const float decay = expf(-df_rng_uniform(&rng, 0.0f, 1.0f)), beta = df_rng_uniform(&rng, 0.0f, 1.0f);
            const bool cap = step % 2, f16 = step % 4 == 3;
            kernels_at(DF_CPU_SIMD_AVX2)->gdn_step(S2, dk, dv, q, k, v, decay, beta, o2, cap ? c2 : NULL, f16);
            kernels_at(DF_CPU_SIMD_AVX512)->gdn_step(S5, dk, dv, q, k, v, decay, beta, o5, cap ? c5 : NULL, f16);
            cr_assert(memcmp(S2, S5, sizeof(float) * (size_t)(dk * dv)) == 0, "state, %lld x %lld step %d",
                      (long long)dk, (long long)dv, step);
            cr_assert(memcmp(o2, o5, sizeof(float) * (size_t)dv) == 0, "output, %lld x %lld step %d", (long long)dk,
                      (long long)dv, step);
            if (cap)
                cr_assert(memcmp(c2, c5, (size_t)(dk * dv) * (f16 ? 2 : 4)) == 0, "capture, step %d", step);
        }
        bool moved = false;
        for (int64_t i = 0; i < dv; i++) moved |= o2[i] != 0.0f;
        cr_assert(moved);
        free(S2), free(S5), free(q), free(k), free(v), free(o2), free(o5), free(c2), free(c5);
    }
    kernels_at(df_cpu_simd_best());
}
