/* CPU kernels made faster for speculative decoding keep their bits:
 * - the fused attention block of the SIMD kernel tables (df_cpu_kernels.attn_block) equals the
 *   block written over the same table's dot and axpy loops (df_attn_block_ref), which is what
 *   the attention kernels computed before: f16 and f32 caches, head dims with and without a
 *   tail of columns, blocks of 1..64 rows in scattered order, a running maximum that moves or
 *   not;
 * - the GDN conv's taps give at every SIMD level the bits of one float multiply and one float
 *   add per tap, in tap order (what the portable loop computes; the test is built without FMA
 *   contraction, x86-64's baseline has none), and the whole op matches a double-precision
 *   definition to float accuracy.
 * Random data, never zeros. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "base/rng.h"

static void restore_level(void) { df_cpu_simd_set(df_cpu_simd_best()); }

static void check_level(df_cpu_simd level) {
    cr_assert_eq(df_cpu_simd_set(level), DF_OK);
    const df_cpu_kernels *K = df_cpu_kernels_get();
    df_rng r;
    df_rng_seed(&r, 21 + (uint64_t)level);
    enum { ROWS = 96, MAXD = 200 };
    static const int64_t dims[] = {64, 72, 128, 200, 5};
    float *k32 = malloc(sizeof(float) * ROWS * MAXD), *v32 = malloc(sizeof(float) * ROWS * MAXD);
    df_fp16 *k16 = malloc(sizeof(df_fp16) * ROWS * MAXD), *v16 = malloc(sizeof(df_fp16) * ROWS * MAXD);
    for (int i = 0; i < ROWS * MAXD; i++) {
        k32[i] = df_rng_normal(&r);
        v32[i] = df_rng_normal(&r);
        k16[i] = df_f32_to_fp16(k32[i]);
        v16[i] = df_f32_to_fp16(v32[i]);
    }
    int n_cases = 0;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        const int64_t d = dims[di];
        float q[MAXD], o_ref[MAXD], o_got[MAXD], s_ref[64], s_got[64];
        int64_t off[64];
        for (int f16 = 0; f16 < 2; f16++)
            for (int nb = 1; nb <= 64; nb += (nb < 8 ? 1 : 13)) {
                for (int64_t i = 0; i < d; i++) q[i] = df_rng_normal(&r);
                for (int b = 0; b < nb; b++) off[b] = (int64_t)df_rng_below(&r, ROWS) * d;
                /* a running state from an earlier block: small (the maximum moves) or large */
                const float m0 = n_cases % 2 ? -1.0f : 40.0f, l0 = df_rng_uniform(&r, 0.5f, 3.0f);
                for (int64_t i = 0; i < d; i++) o_ref[i] = o_got[i] = df_rng_normal(&r);
                float m_ref = m0, l_ref = l0, m_got = m0, l_got = l0;
                const float scale = 1.0f / sqrtf((float)d);
                const void *kb = f16 ? (const void *)k16 : (const void *)k32;
                const void *vb = f16 ? (const void *)v16 : (const void *)v32;
                df_attn_block_ref(K, q, d, scale, f16, kb, vb, off, nb, s_ref, &m_ref, &l_ref, o_ref);
                K->attn_block(q, d, scale, f16, kb, vb, off, nb, s_got, &m_got, &l_got, o_got);
                cr_expect(memcmp(o_ref, o_got, (size_t)d * sizeof(float)) == 0,
                          "level %d d=%lld %s nb=%d: outputs differ", (int)level, (long long)d, f16 ? "f16" : "f32",
                          nb);
                cr_expect(m_ref == m_got && l_ref == l_got, "level %d d=%lld nb=%d: m %g/%g l %g/%g", (int)level,
                          (long long)d, nb, (double)m_ref, (double)m_got, (double)l_ref, (double)l_got);
                cr_expect(memcmp(s_ref, s_got, (size_t)nb * sizeof(float)) == 0, "level %d: scores differ",
                          (int)level);
                n_cases++;
            }
    }
    cr_expect(n_cases > 100);
    free(k32);
    free(v32);
    free(k16);
    free(v16);
}

Test(cpu_spec_kernels, attn_block_equals_reference_every_level, .fini = restore_level) {
    for (int level = DF_CPU_SIMD_SCALAR; level <= (int)df_cpu_simd_best(); level++)
        check_level((df_cpu_simd)level);
}

/* conv1d_silu of random inputs at one SIMD level: out, and the state it leaves. */
static void conv_at(df_cpu_simd level, df_pool *pool, const float *x, int64_t T, int64_t C, const float *w,
                    int64_t K, const float *state0, float *out, float *state) {
    cr_assert_eq(df_cpu_simd_set(level), DF_OK);
    memcpy(state, state0, sizeof(float) * (size_t)((K - 1) * C));
    cr_assert_eq(df_cpu_conv1d_silu(pool, x, C, T, C, w, K, state, out, C, NULL), DF_OK, "%s", df_last_error());
}

Test(cpu_spec_kernels, conv_taps_bitwise_every_level, .fini = restore_level) {
    df_pool *pool;
    cr_assert_eq(df_pool_create(2, &pool), DF_OK);
    df_rng r;
    df_rng_seed(&r, 77);
    static const int64_t channels[] = {1024, 37, 8};
    static const int64_t toks[] = {1, 3, 16};
    const int64_t K = 4;
    int n_checked = 0;
    for (size_t ci = 0; ci < 3; ci++)
        for (size_t ti = 0; ti < 3; ti++) {
            const int64_t C = channels[ci], T = toks[ti];
            const size_t nx = (size_t)(T * C), ns = (size_t)((K - 1) * C);
            float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * (size_t)(C * K));
            float *s0 = malloc(sizeof(float) * ns), *st = malloc(sizeof(float) * ns);
            float *out = malloc(sizeof(float) * nx), *want = malloc(sizeof(float) * nx);
            for (size_t i = 0; i < nx; i++) x[i] = df_rng_normal(&r);
            for (int64_t i = 0; i < C * K; i++) w[i] = df_rng_normal(&r) * 0.5f;
            for (size_t i = 0; i < ns; i++) s0[i] = df_rng_normal(&r);
            for (int level = DF_CPU_SIMD_SCALAR; level <= (int)df_cpu_simd_best(); level++) {
                conv_at((df_cpu_simd)level, pool, x, T, C, w, K, s0, out, st);
                /* the taps in float, tap by tap, then this level's SiLU */
                for (int64_t t = 0; t < T; t++) {
                    for (int64_t c = 0; c < C; c++) {
                        float acc = 0.0f;
                        for (int64_t j = 0; j < K; j++) {
                            const int64_t i = t - (K - 1) + j;
                            const float in = i >= 0 ? x[i * C + c] : s0[(K - 1 + i) * C + c];
                            const float prod = w[c * K + j] * in;
                            acc = acc + prod;
                        }
                        want[t * C + c] = acc;
                    }
                    df_cpu_kernels_get()->silu_mul_f32(want + t * C, want + t * C, NULL, C);
                }
                size_t n_diff = 0;
                for (size_t i = 0; i < nx; i++) n_diff += memcmp(&out[i], &want[i], sizeof(float)) != 0;
                cr_expect_eq(n_diff, 0, "level %d C=%lld T=%lld: %zu of %zu outputs differ", level, (long long)C,
                             (long long)T, n_diff, nx);
                /* the new state is the last K-1 inputs */
                for (int64_t rr = 0; rr < K - 1; rr++) {
                    const int64_t i = T - (K - 1) + rr;
                    const float *src = i >= 0 ? x + i * C : s0 + (K - 1 + i) * C;
                    cr_expect(memcmp(st + rr * C, src, sizeof(float) * (size_t)C) == 0, "level %d: state row %lld",
                              level, (long long)rr);
                }
                /* and the definition, to float accuracy */
                for (int64_t t = 0; t < T; t++)
                    for (int64_t c = 0; c < C; c++) {
                        double acc = 0.0;
                        for (int64_t j = 0; j < K; j++) {
                            const int64_t i = t - (K - 1) + j;
                            acc += (double)w[c * K + j] * (i >= 0 ? x[i * C + c] : s0[(K - 1 + i) * C + c]);
                        }
                        const double def = acc / (1.0 + exp(-acc));
                        cr_expect(fabs(out[t * C + c] - def) <= 1e-4 * (1.0 + fabs(def)), "t=%lld c=%lld: %g vs %g",
                                  (long long)t, (long long)c, (double)out[t * C + c], def);
                    }
                n_checked++;
            }
            free(x);
            free(w);
            free(s0);
            free(st);
            free(out);
            free(want);
        }
    cr_expect(n_checked >= 9);
    df_pool_destroy(pool);
}
