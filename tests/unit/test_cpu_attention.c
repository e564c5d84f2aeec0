/* Gated causal attention over a KV cache: against a double-precision reference (softmax with
 * the max subtracted, GQA by repeat_interleave, sigmoid gate), with F16 and F32 caches,
 * prefilled history and several block boundaries of the online softmax; plus the property
 * speculative decoding relies on: a token gives the same bits inside a verify batch as
 * decoded alone. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "base/rng.h"
#include "helpers/pools.h"

TestSuite(cpu_attention, .init = test_pools_create, .fini = test_pools_destroy);

static int simd_levels(df_cpu_simd out[2]) {
    out[0] = DF_CPU_SIMD_SCALAR;
    if (df_cpu_simd_best() >= DF_CPU_SIMD_AVX2) {
        out[1] = DF_CPU_SIMD_AVX2;
        return 2;
    }
    return 1;
}

static float *rand_floats(df_rng *r, size_t n, float scale) {
    float *p = malloc(n * sizeof(float) + 1);
    cr_assert(p);
    for (size_t i = 0; i < n; i++) p[i] = df_rng_normal(r) * scale;
    return p;
}

typedef struct {
    int64_t n_ctx, n_head, n_kv, d;
    df_kv_type type;
    void *k, *v;
} test_cache;

static void cache_init(test_cache *c, int64_t n_ctx, int64_t n_kv, int64_t d, df_kv_type type) {
    c->n_ctx = n_ctx;
    c->n_kv = n_kv;
    c->d = d;
    c->type = type;
    const size_t es = type == DF_KV_F16 ? 2 : 4;
    c->k = calloc((size_t)(n_ctx * n_kv * d), es);
    c->v = calloc((size_t)(n_ctx * n_kv * d), es);
}

static double cache_get(const test_cache *c, const void *base, int64_t row, int64_t h, int64_t i) {
    const int64_t off = (row * c->n_kv + h) * c->d + i;
    return c->type == DF_KV_F16 ? df_fp16_to_f32(((const df_fp16 *)base)[off]) : ((const float *)base)[off];
}

static df_cpu_kv_cache as_cpu_cache(test_cache *c) {
    df_cpu_kv_cache kc = {c->k, c->v, c->type, c->n_ctx, c->n_kv, c->d};
    return kc;
}

/* out[t][h][:] from the cache contents, in double */
static void ref_attention(const test_cache *c, const df_cpu_heads *q, const df_cpu_heads *gate,
                          int64_t pos0, bool causal, double *out) {
    const int64_t nh = q->n_head, d = c->d, group = nh / c->n_kv;
    double *s = malloc(sizeof(double) * (size_t)(pos0 + q->n_tok));
    for (int64_t t = 0; t < q->n_tok; t++)
        for (int64_t h = 0; h < nh; h++) {
            const int64_t kvh = h / group, n_vis = causal ? pos0 + t + 1 : pos0 + q->n_tok;
            const float *qv = q->data + t * q->tok_stride + h * q->head_stride;
            double m = -INFINITY, sum = 0.0;
            for (int64_t j = 0; j < n_vis; j++) {
                double dot = 0.0;
                for (int64_t i = 0; i < d; i++) dot += qv[i] * cache_get(c, c->k, j, kvh, i);
                s[j] = dot / sqrt((double)d);
                if (s[j] > m) m = s[j];
            }
            for (int64_t j = 0; j < n_vis; j++) sum += (s[j] = exp(s[j] - m));
            double *o = out + (t * nh + h) * d;
            for (int64_t i = 0; i < d; i++) {
                double acc = 0.0;
                for (int64_t j = 0; j < n_vis; j++) acc += s[j] * cache_get(c, c->v, j, kvh, i);
                o[i] = acc / sum;
                if (gate) {
                    const double g = gate->data[t * gate->tok_stride + h * gate->head_stride + i];
                    o[i] /= 1.0 + exp(-g);
                }
            }
        }
    free(s);
}

/* Random history rows 0..pos0-1 written through df_cpu_kv_write. */
static void fill_history(test_cache *c, df_rng *rng, int64_t pos0) {
    if (pos0 == 0) return;
    float *k = rand_floats(rng, (size_t)(pos0 * c->n_kv * c->d), 1.0f);
    float *v = rand_floats(rng, (size_t)(pos0 * c->n_kv * c->d), 1.0f);
    df_cpu_heads hk = df_cpu_heads_packed(k, pos0, c->n_kv, c->d), hv = df_cpu_heads_packed(v, pos0, c->n_kv, c->d);
    df_cpu_kv_cache kc = as_cpu_cache(c);
    cr_assert_eq(df_cpu_kv_write(NULL, &kc, &hk, &hv, 0), DF_OK, "%s", df_last_error());
    for (int64_t j = 0; j < pos0; j++)
        for (int64_t h = 0; h < c->n_kv; h++)
            for (int64_t i = 0; i < c->d; i++) {
                const float want = k[(j * c->n_kv + h) * c->d + i];
                const double got = cache_get(c, c->k, j, h, i);
                if (c->type == DF_KV_F32) cr_assert(got == want);
                else cr_assert(got == df_fp16_to_f32(df_f32_to_fp16(want)), "kv_write did not round to f16");
            }
    free(k);
    free(v);
}

typedef struct {
    int64_t n_tok, n_head, n_kv, d, pos0;
    bool causal, gated;
    float q_scale; /* larger queries make peaked softmaxes */
} attn_case;

static void run_case(const attn_case *ac, df_kv_type type, uint64_t seed) {
    df_rng rng;
    df_rng_seed(&rng, seed);
    const int64_t n_ctx = ac->pos0 + ac->n_tok + 3, d = ac->d, nh = ac->n_head;
    /* q_proj layout: per head [q | gate] */
    const int64_t qs = nh * 2 * d;
    float *qg = rand_floats(&rng, (size_t)(ac->n_tok * qs), ac->q_scale);
    df_cpu_heads q = {qg, ac->n_tok, nh, d, qs, 2 * d};
    df_cpu_heads gate = {qg + d, ac->n_tok, nh, d, qs, 2 * d};
    float *kn = rand_floats(&rng, (size_t)(ac->n_tok * ac->n_kv * d), 1.0f);
    float *vn = rand_floats(&rng, (size_t)(ac->n_tok * ac->n_kv * d), 1.0f);
    df_cpu_heads hk = df_cpu_heads_packed(kn, ac->n_tok, ac->n_kv, d), hv = df_cpu_heads_packed(vn, ac->n_tok, ac->n_kv, d);
    double *ref = malloc(sizeof(double) * (size_t)(ac->n_tok * nh * d));
    const size_t out_n = (size_t)(ac->n_tok * nh * d);
    float *o1 = malloc(sizeof(float) * out_n), *o2 = malloc(sizeof(float) * out_n);

    df_cpu_simd levels[2];
    const int nl = simd_levels(levels);
    for (int l = 0; l < nl; l++) {
        cr_assert_eq(df_cpu_simd_set(levels[l]), DF_OK);
        test_cache c1, c2;
        cache_init(&c1, n_ctx, ac->n_kv, d, type);
        cache_init(&c2, n_ctx, ac->n_kv, d, type);
        df_rng hist;
        df_rng_seed(&hist, seed + 1);
        fill_history(&c1, &hist, ac->pos0);
        df_rng_seed(&hist, seed + 1);
        fill_history(&c2, &hist, ac->pos0);
        df_cpu_kv_cache k1 = as_cpu_cache(&c1), k2 = as_cpu_cache(&c2);
        df_cpu_attn_args a = {.q = q, .gate = ac->gated ? &gate : NULL, .k_new = &hk, .v_new = &hv,
                              .cache = &k1, .pos0 = ac->pos0, .causal = ac->causal,
                              .out = df_cpu_heads_packed(o1, ac->n_tok, nh, d)};
        cr_assert_eq(df_cpu_attention(g_pool1, &a), DF_OK, "%s", df_last_error());
        a.cache = &k2;
        a.out.data = o2;
        cr_assert_eq(df_cpu_attention(g_pool2, &a), DF_OK);
        cr_assert(memcmp(o1, o2, sizeof(float) * out_n) == 0, "pools of 1 and 2 threads disagree");
        ref_attention(&c1, &q, ac->gated ? &gate : NULL, ac->pos0, ac->causal, ref);
        for (size_t i = 0; i < out_n; i++)
            cr_assert(fabs(o1[i] - ref[i]) <= 2e-6 + 2e-5 * fabs(ref[i]),
                      "%s cache, %s: out[%zu] = %.8g, reference %.8g (n_tok %lld, pos0 %lld, d %lld)",
                      type == DF_KV_F16 ? "f16" : "f32", df_cpu_simd_name(levels[l]), i, (double)o1[i], ref[i],
                      (long long)ac->n_tok, (long long)ac->pos0, (long long)d);
        free(c1.k); free(c1.v); free(c2.k); free(c2.v);
    }
    free(qg);
    free(kn);
    free(vn);
    free(ref);
    free(o1);
    free(o2);
}

Test(cpu_attention, matches_reference) {
    const attn_case cases[] = {
        {1, 4, 2, 16, 0, true, true, 1.0f},
        {5, 4, 2, 64, 0, true, true, 1.0f},
        {3, 8, 2, 256, 40, true, true, 1.0f},   /* Qwen3.5 head dim, with history */
        {70, 2, 1, 32, 0, true, false, 1.0f},   /* more rows than one softmax block */
        {9, 4, 4, 24, 130, true, true, 6.0f},   /* peaked scores across blocks */
        {6, 4, 2, 16, 20, false, true, 1.0f},   /* non-causal (drafter blocks) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_case(&cases[i], DF_KV_F32, 100 + i);
        run_case(&cases[i], DF_KV_F16, 200 + i);
    }
}

/* The same inputs through an F16 and an F32 cache: close (half precision K/V), not equal. */
Test(cpu_attention, f16_cache_close_to_f32_cache) {
    df_rng rng;
    df_rng_seed(&rng, 7);
    const int64_t n_tok = 12, nh = 4, nkv = 2, d = 64, pos0 = 30, n_ctx = 64;
    test_cache c16, c32;
    cache_init(&c16, n_ctx, nkv, d, DF_KV_F16);
    cache_init(&c32, n_ctx, nkv, d, DF_KV_F32);
    df_rng h;
    df_rng_seed(&h, 8);
    fill_history(&c16, &h, pos0);
    df_rng_seed(&h, 8);
    fill_history(&c32, &h, pos0);
    float *q = rand_floats(&rng, (size_t)(n_tok * nh * d), 1.0f);
    float *k = rand_floats(&rng, (size_t)(n_tok * nkv * d), 1.0f), *v = rand_floats(&rng, (size_t)(n_tok * nkv * d), 1.0f);
    df_cpu_heads hk = df_cpu_heads_packed(k, n_tok, nkv, d), hv = df_cpu_heads_packed(v, n_tok, nkv, d);
    float *o16 = malloc(sizeof(float) * (size_t)(n_tok * nh * d)), *o32 = malloc(sizeof(float) * (size_t)(n_tok * nh * d));
    df_cpu_kv_cache k16 = as_cpu_cache(&c16), k32 = as_cpu_cache(&c32);
    df_cpu_attn_args a = {.q = df_cpu_heads_packed(q, n_tok, nh, d), .k_new = &hk, .v_new = &hv, .cache = &k16,
                          .pos0 = pos0, .causal = true, .out = df_cpu_heads_packed(o16, n_tok, nh, d)};
    cr_assert_eq(df_cpu_attention(g_pool2, &a), DF_OK);
    a.cache = &k32;
    a.out.data = o32;
    cr_assert_eq(df_cpu_attention(g_pool2, &a), DF_OK);
    double maxdiff = 0.0;
    for (int64_t i = 0; i < n_tok * nh * d; i++) {
        const double dd = fabs((double)o16[i] - o32[i]);
        if (dd > maxdiff) maxdiff = dd;
    }
    cr_assert(maxdiff < 5e-3, "f16 and f32 caches differ by %g", maxdiff);
    cr_assert(maxdiff > 0.0, "an f16 cache that rounds nothing is suspicious");
    free(c16.k); free(c16.v); free(c32.k); free(c32.v);
    free(q); free(k); free(v); free(o16); free(o32);
}

/* A verify batch of n tokens computes each token exactly as n one-token decode steps do. */
Test(cpu_attention, batch_equals_one_token_steps) {
    df_rng rng;
    df_rng_seed(&rng, 9);
    const int64_t n_tok = 16, nh = 4, nkv = 2, d = 64, pos0 = 100, n_ctx = 128;
    df_cpu_simd levels[2];
    const int nl = simd_levels(levels);
    for (int l = 0; l < nl; l++) {
        cr_assert_eq(df_cpu_simd_set(levels[l]), DF_OK);
        for (int type = 0; type < 2; type++) {
            test_cache cb, cs;
            cache_init(&cb, n_ctx, nkv, d, (df_kv_type)type);
            cache_init(&cs, n_ctx, nkv, d, (df_kv_type)type);
            df_rng h;
            df_rng_seed(&h, 10);
            fill_history(&cb, &h, pos0);
            df_rng_seed(&h, 10);
            fill_history(&cs, &h, pos0);
            float *qg = rand_floats(&rng, (size_t)(n_tok * nh * 2 * d), 1.0f);
            float *k = rand_floats(&rng, (size_t)(n_tok * nkv * d), 1.0f), *v = rand_floats(&rng, (size_t)(n_tok * nkv * d), 1.0f);
            float *ob = malloc(sizeof(float) * (size_t)(n_tok * nh * d)), *os = malloc(sizeof(float) * (size_t)(n_tok * nh * d));
            df_cpu_kv_cache kb = as_cpu_cache(&cb), ks = as_cpu_cache(&cs);
            df_cpu_heads q = {qg, n_tok, nh, d, nh * 2 * d, 2 * d}, g = q;
            g.data = qg + d;
            df_cpu_heads hk = df_cpu_heads_packed(k, n_tok, nkv, d), hv = df_cpu_heads_packed(v, n_tok, nkv, d);
            df_cpu_attn_args a = {.q = q, .gate = &g, .k_new = &hk, .v_new = &hv, .cache = &kb, .pos0 = pos0,
                                  .causal = true, .out = df_cpu_heads_packed(ob, n_tok, nh, d)};
            cr_assert_eq(df_cpu_attention(g_pool2, &a), DF_OK);
            for (int64_t t = 0; t < n_tok; t++) {
                df_cpu_heads q1 = q, g1 = g, k1 = hk, v1 = hv;
                q1.data += t * q.tok_stride; q1.n_tok = 1;
                g1.data += t * g.tok_stride; g1.n_tok = 1;
                k1.data += t * hk.tok_stride; k1.n_tok = 1;
                v1.data += t * hv.tok_stride; v1.n_tok = 1;
                df_cpu_attn_args s = {.q = q1, .gate = &g1, .k_new = &k1, .v_new = &v1, .cache = &ks,
                                      .pos0 = pos0 + t, .causal = true,
                                      .out = df_cpu_heads_packed(os + t * nh * d, 1, nh, d)};
                cr_assert_eq(df_cpu_attention(g_pool1, &s), DF_OK);
            }
            cr_assert(memcmp(ob, os, sizeof(float) * (size_t)(n_tok * nh * d)) == 0,
                      "%s cache: batched attention differs from one-token steps", type ? "f32" : "f16");
            free(cb.k); free(cb.v); free(cs.k); free(cs.v);
            free(qg); free(k); free(v); free(ob); free(os);
        }
    }
}

Test(cpu_attention, bad_arguments_are_refused) {
    test_cache c;
    cache_init(&c, 8, 2, 16, DF_KV_F16);
    float q[3 * 16 * 16] = {0.5f}, o[3 * 16 * 16];
    df_cpu_kv_cache kc = as_cpu_cache(&c);
    df_cpu_attn_args a = {.q = df_cpu_heads_packed(q, 3, 4, 16), .cache = &kc, .pos0 = 6, .causal = true,
                          .out = df_cpu_heads_packed(o, 3, 4, 16)};
    cr_assert_eq(df_cpu_attention(NULL, &a), DF_ERR_INVALID); /* rows 6..8 of 8 */
    cr_assert(strstr(df_last_error(), "cache of 8 rows") != NULL, "%s", df_last_error());
    a.pos0 = 0;
    a.q = df_cpu_heads_packed(q, 3, 3, 16);
    a.out = df_cpu_heads_packed(o, 3, 3, 16);
    cr_assert_eq(df_cpu_attention(NULL, &a), DF_ERR_MISMATCH); /* 3 heads over 2 KV heads */
    a.q = df_cpu_heads_packed(q, 3, 4, 8);
    a.out = df_cpu_heads_packed(o, 3, 4, 8);
    cr_assert_eq(df_cpu_attention(NULL, &a), DF_ERR_MISMATCH); /* head dim */
    a.q = df_cpu_heads_packed(q, 3, 4, 16);
    a.out = df_cpu_heads_packed(o, 2, 4, 16);
    cr_assert_eq(df_cpu_attention(NULL, &a), DF_ERR_MISMATCH);
    a.out = df_cpu_heads_packed(o, 3, 4, 16);
    df_cpu_heads k1 = df_cpu_heads_packed(q, 3, 2, 16);
    a.k_new = &k1;
    cr_assert_eq(df_cpu_attention(NULL, &a), DF_ERR_INVALID); /* v_new missing */
    a.k_new = NULL;
    kc.type = (df_kv_type)7;
    cr_assert_eq(df_cpu_attention(NULL, &a), DF_ERR_INVALID);
    cr_assert_eq(df_cpu_attention(NULL, NULL), DF_ERR_INVALID);
    free(c.k);
    free(c.v);
}
