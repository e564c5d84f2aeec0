/* Times df_cpu_matmul for a Qwen3.5-27B-sized FFN projection (5120 -> 17408) in several weight
 * types at decode (1 token) and verify (16 token) batch sizes, and reports the weight bytes
 * streamed per second: a verify that reads W once costs about what one decode step costs.
 * Not part of the build or of the tests; build it by hand from this file and every .c file
 * of src/base, src/quant and src/backend/cpu (no other library is needed):
 *
 *   cc -O2 -std=gnu11 -Isrc bench/bench_cpu_matmul.c $SRCS -lpthread -lm -o /tmp/bench_cpu_matmul
 *   /tmp/bench_cpu_matmul [threads] [n_in] [n_out]                                          */
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

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 0;
    const int64_t n_in = argc > 2 ? atoll(argv[2]) : 5120, n_out = argc > 3 ? atoll(argv[3]) : 17408;
    df_pool *pool;
    if (df_pool_create(threads, &pool) != DF_OK) return 1;
    df_rng r;
    df_rng_seed(&r, 1);
    const int64_t max_tok = 64;
    float *x = df_alloc_aligned(sizeof(float) * (size_t)(max_tok * n_in));
    float *y = df_alloc_aligned(sizeof(float) * (size_t)(max_tok * n_out));
    float *row = malloc(sizeof(float) * (size_t)n_in);
    for (int64_t i = 0; i < max_tok * n_in; i++) x[i] = df_rng_normal(&r);
    printf("matmul %lld -> %lld, %d threads, simd %s\n", (long long)n_in, (long long)n_out, df_pool_size(pool),
           df_cpu_simd_name(df_cpu_simd_get()));
    printf("%-6s  %6s  %10s  %10s  %12s\n", "type", "n_tok", "ms/call", "GB/s of W", "us/token");
    const df_type types[] = {DF_TYPE_F16, DF_TYPE_Q8_0, DF_TYPE_Q6_K, DF_TYPE_Q4_K};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const df_type_traits *tr = df_type_get((uint32_t)types[ti]);
        size_t row_bytes;
        if (!tr || !tr->from_float || !df_type_row_size(types[ti], n_in, &row_bytes)) continue;
        uint8_t *w = df_alloc_aligned(row_bytes * (size_t)n_out);
        for (int64_t o = 0; o < n_out; o++) {
            for (int64_t i = 0; i < n_in; i++) row[i] = df_rng_normal(&r) * 0.02f;
            tr->from_float(row, w + (size_t)o * row_bytes, n_in);
        }
        const int64_t toks[] = {1, 4, 16, 64};
        for (size_t k = 0; k < 4; k++) {
            const int64_t n = toks[k];
            const size_t ss = df_cpu_matmul_scratch_size(types[ti], n, n_in);
            void *scratch = ss ? df_alloc_aligned(ss) : NULL;
            if (df_cpu_matmul(pool, x, n, n_in, w, types[ti], n_out, y, scratch, ss) != DF_OK) {
                fprintf(stderr, "%s\n", df_last_error());
                return 1;
            }
            int reps = 0;
            const double t0 = now_s();
            double t1;
            do {
                df_cpu_matmul(pool, x, n, n_in, w, types[ti], n_out, y, scratch, ss);
                reps++;
                t1 = now_s();
            } while (t1 - t0 < 0.5);
            const double s = (t1 - t0) / reps;
            printf("%-6s  %6lld  %10.3f  %10.2f  %12.1f\n", tr->name, (long long)n, s * 1e3,
                   (double)row_bytes * (double)n_out / s / 1e9, s * 1e6 / (double)n);
            df_free_aligned(scratch);
        }
        df_free_aligned(w);
    }
    df_free_aligned(x);
    df_free_aligned(y);
    free(row);
    df_pool_destroy(pool);
    return 0;
}
