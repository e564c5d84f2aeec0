/* Times the two Gated DeltaNet forms of the CPU backend (recurrent step vs chunked) for one
 * Qwen3.5 linear-attention layer, with and without per-token state capture, at the batch
 * sizes that matter: 1 (decode), 16 (a speculative verify), 64 and 512 (prefill).
 * Not part of the build or of the tests (timings are never asserted); build it by hand from
 * this file and every .c file of src/base, src/quant and src/backend/cpu:
 *
 *   cc -O2 -std=gnu11 -Isrc bench/bench_cpu_gdn.c $SRCS -lpthread -lm -o /tmp/bench_cpu_gdn
 *   /tmp/bench_cpu_gdn [threads] [n_k_heads] [n_v_heads] [head_dim]
 *
 * Defaults: all CPUs, 16 key heads, 48 value heads, head dim 128 (Qwen3.5-27B's layer). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/cpu/cpu_ops.h"
#include "base/alloc.h"
#include "base/rng.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef df_status (*form_fn)(df_pool *, const df_cpu_gdn_args *, void *, size_t);

static df_status run_recurrent(df_pool *p, const df_cpu_gdn_args *a, void *s, size_t n) {
    (void)s;
    (void)n;
    return df_cpu_gdn_recurrent(p, a);
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 0;
    const int64_t nk = argc > 2 ? atoll(argv[2]) : 16, nv = argc > 3 ? atoll(argv[3]) : 48;
    const int64_t d = argc > 4 ? atoll(argv[4]) : 128;
    df_pool *pool;
    if (df_pool_create(threads, &pool) != DF_OK) return 1;
    const int64_t max_tok = 512, w = 2 * nk * d + nv * d;
    df_rng r;
    df_rng_seed(&r, 1);
    float *qkv = df_alloc_aligned(sizeof(float) * (size_t)(max_tok * w));
    float *g = malloc(sizeof(float) * (size_t)(max_tok * nv)), *beta = malloc(sizeof(float) * (size_t)(max_tok * nv));
    float *state = df_alloc_aligned(sizeof(float) * (size_t)(nv * d * d));
    float *out = df_alloc_aligned(sizeof(float) * (size_t)(max_tok * nv * d));
    for (int64_t i = 0; i < max_tok * w; i++) qkv[i] = df_rng_normal(&r) * 0.1f;
    for (int64_t i = 0; i < max_tok * nv; i++) {
        g[i] = -df_rng_uniform(&r, 0.01f, 1.0f);
        beta[i] = df_rng_uniform(&r, 0.1f, 0.9f);
    }
    for (int64_t i = 0; i < nv * d * d; i++) state[i] = df_rng_normal(&r) * 0.01f;
    const size_t cap_bytes = sizeof(df_fp16) * (size_t)(64 * nv * d * d);
    void *cap = df_alloc_aligned(cap_bytes);
    const size_t scratch_size = df_cpu_gdn_chunked_scratch_size(pool, d, d);
    void *scratch = df_alloc_aligned(scratch_size);

    printf("gdn layer: %lld key heads, %lld value heads, head dim %lld, %d threads, simd %s\n",
           (long long)nk, (long long)nv, (long long)d, df_pool_size(pool), df_cpu_simd_name(df_cpu_simd_get()));
    printf("%6s  %-10s  %-8s  %12s  %12s\n", "n_tok", "form", "capture", "ms/call", "us/token");
    const int64_t toks[] = {1, 16, 64, 512};
    for (size_t ti = 0; ti < 4; ti++) {
        const int64_t n = toks[ti];
        for (int form = 0; form < 2; form++)
            for (int c = 0; c < 3; c++) {
                if (c && n > 64) continue; /* capture is for verify batches */
                df_cpu_gdn_args a = {
                    .q = {qkv, n, nk, d, w, d},
                    .k = {qkv + nk * d, n, nk, d, w, d},
                    .v = {qkv + 2 * nk * d, n, nv, d, w, d},
                    .g = g, .beta = beta, .state = state,
                    .out = df_cpu_heads_packed(out, n, nv, d),
                    .capture = c ? cap : NULL,
                    .capture_type = c == 2 ? DF_STATE_F16 : DF_STATE_F32,
                    .head_map = DF_GDN_HEADS_TILED,
                };
                if (c == 1 && cap_bytes < sizeof(float) * (size_t)(n * nv * d * d)) continue;
                form_fn fn = form == 0 ? run_recurrent : df_cpu_gdn_chunked;
                /* warm up, then repeat for at least 0.3 s */
                if (fn(pool, &a, scratch, scratch_size) != DF_OK) {
                    fprintf(stderr, "%s\n", df_last_error());
                    return 1;
                }
                int reps = 0;
                const double t0 = now_s();
                double t1;
                do {
                    fn(pool, &a, scratch, scratch_size);
                    reps++;
                    t1 = now_s();
                } while (t1 - t0 < 0.3);
                const double ms = (t1 - t0) / reps * 1e3;
                printf("%6lld  %-10s  %-8s  %12.3f  %12.1f\n", (long long)n, form ? "chunked" : "recurrent",
                       c == 0 ? "none" : c == 1 ? "f32" : "f16", ms, ms * 1e3 / (double)n);
            }
    }
    df_free_aligned(qkv);
    free(g);
    free(beta);
    df_free_aligned(state);
    df_free_aligned(out);
    df_free_aligned(cap);
    df_free_aligned(scratch);
    df_pool_destroy(pool);
    return 0;
}
