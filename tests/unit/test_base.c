/* src/base: error values, fp16/bf16 conversion, the RNG, overflow-checked sizes, the thread
 * pool. Expected values come from the formats' definitions (ldexp), not from our code. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "base/alloc.h"
#include "base/fp16.h"
#include "base/rng.h"
#include "base/status.h"
#include "base/threadpool.h"

Test(base, status_messages) {
    cr_assert_eq(df_fail(DF_ERR_FORMAT, "%s: offset %d: bad", "f.gguf", 12), DF_ERR_FORMAT);
    cr_assert_str_eq(df_last_error(), "f.gguf: offset 12: bad");
    cr_assert_eq(df_fail_context(DF_ERR_FORMAT, "loading %s", "m"), DF_ERR_FORMAT);
    cr_assert_str_eq(df_last_error(), "loading m: f.gguf: offset 12: bad");
    df_clear_error();
    cr_assert_str_eq(df_last_error(), "no error");
    cr_assert_str_eq(df_status_name(DF_ERR_NOMEM), "out of memory");
}

/* IEEE half from its fields: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024. */
static double half_value(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

Test(base, fp16_every_value) {
    for (uint32_t h = 0; h < 65536; h++) {
        int e = (h >> 10) & 31;
        float f = df_fp16_to_f32((df_fp16)h);
        if (e == 31) {
            cr_assert((h & 1023) ? isnan(f) : isinf(f), "%04x", h);
            continue;
        }
        cr_assert_eq((double)f, half_value((uint16_t)h), "fp16 %04x -> %g", h, (double)f);
        cr_assert_eq(df_f32_to_fp16(f), (df_fp16)h, "round trip of %04x", h);
    }
}

Test(base, fp16_rounding_to_nearest_even) {
    /* Halfway between 1 and 1 + 2^-10 rounds to even (1); a hair above rounds up. */
    cr_assert_eq(df_f32_to_fp16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    cr_assert_eq(df_f32_to_fp16(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20)), 0x3c01);
    cr_assert_eq(df_f32_to_fp16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02); /* 1.5 ulp -> even 2 */
    cr_assert_eq(df_f32_to_fp16(65520.0f), 0x7c00);                    /* rounds to inf */
    cr_assert_eq(df_f32_to_fp16(65519.0f), 0x7bff);
    cr_assert_eq(df_f32_to_fp16(ldexpf(1.0f, -25)), 0x0000);           /* half the smallest: even */
    cr_assert_eq(df_f32_to_fp16(ldexpf(3.0f, -26)), 0x0001);
    cr_assert(isnan(df_fp16_to_f32(df_f32_to_fp16(NAN))));
}

Test(base, bf16) {
    df_rng r;
    df_rng_seed(&r, 5);
    for (int i = 0; i < 100000; i++) {
        uint32_t bits = (uint32_t)df_rng_u64(&r);
        float f;
        memcpy(&f, &bits, 4);
        if (isnan(f)) continue;
        /* Expected: round to nearest even on the upper 16 bits, from the definition. */
        uint32_t upper = bits >> 16, rest = bits & 0xffff;
        if (rest > 0x8000 || (rest == 0x8000 && (upper & 1))) upper++;
        cr_assert_eq(df_f32_to_bf16(f), (df_bf16)upper, "%08x", bits);
    }
    cr_assert_eq(df_bf16_to_f32(0x3f80), 1.0f);
    cr_assert(isnan(df_bf16_to_f32(df_f32_to_bf16(NAN))));
}

Test(base, rng_reproducible_and_uniform) {
    df_rng a, b;
    df_rng_seed(&a, 42);
    df_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++) cr_assert_eq(df_rng_u64(&a), df_rng_u64(&b));
    int counts[10] = {0};
    for (int i = 0; i < 100000; i++) counts[df_rng_below(&a, 10)]++;
    for (int k = 0; k < 10; k++) cr_assert(counts[k] > 9500 && counts[k] < 10500, "bucket %d: %d", k, counts[k]);
    double sum = 0, sq = 0;
    for (int i = 0; i < 100000; i++) {
        double x = df_rng_normal(&a);
        sum += x;
        sq += x * x;
    }
    cr_assert(fabs(sum / 1e5) < 0.02 && fabs(sq / 1e5 - 1.0) < 0.03);
}

Test(base, overflow_checked_sizes) {
    size_t out;
    cr_assert(df_mul_size(1u << 20, 1u << 10, &out) && out == (size_t)1 << 30);
    cr_assert_not(df_mul_size(SIZE_MAX / 2, 3, &out));
    cr_assert_not(df_add_size(SIZE_MAX, 1, &out));
    cr_assert_eq(df_align_up(33, 32), 64);
    void *p = df_alloc_aligned(100);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % DF_ALIGN, 0);
    df_free_aligned(p);
}

typedef struct count_ctx {
    atomic_int *hits;
    atomic_int total;
} count_ctx;

static void count_task(void *ctx, int t, int n) {
    count_ctx *c = ctx;
    atomic_fetch_add(&c->hits[t], 1);
    atomic_fetch_add(&c->total, 1);
}

Test(base, thread_pool_runs_every_task_once) {
    for (int threads = 1; threads <= 4; threads++) {
        df_pool *pool;
        cr_assert_eq(df_pool_create(threads, &pool), DF_OK);
        cr_assert_eq(df_pool_size(pool), threads);
        for (int run = 0; run < 2000; run++) {
            int n = 1 + run % 37;
            atomic_int hits[37];
            for (int i = 0; i < n; i++) atomic_init(&hits[i], 0);
            count_ctx c = {.hits = hits};
            atomic_init(&c.total, 0);
            df_pool_run(pool, count_task, &c, n);
            cr_assert_eq(atomic_load(&c.total), n, "threads %d run %d", threads, run);
            for (int i = 0; i < n; i++) cr_assert_eq(atomic_load(&hits[i]), 1);
        }
        df_pool_destroy(pool);
    }
    /* A NULL pool runs on the caller. */
    atomic_int hits[3];
    for (int i = 0; i < 3; i++) atomic_init(&hits[i], 0);
    count_ctx c = {.hits = hits};
    atomic_init(&c.total, 0);
    df_pool_run(NULL, count_task, &c, 3);
    cr_assert_eq(atomic_load(&c.total), 3);
}
