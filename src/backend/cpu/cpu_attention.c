/* Gated softmax attention of new tokens over a KV cache (the Qwen3.5 full-attention layers),
 * and the write of new K/V rows into that cache.
 *
 * One task handles whole (token, head) pairs. Cache rows are visited in blocks of
 * ATTN_BLOCK: the block's scores are computed first, then the running maximum moves at most
 * once per block (rescaling the accumulator), then the block's values are accumulated with
 * weights exp(score - max). The accumulator is the output row itself, so no scratch is
 * needed. Rows are always visited from 0 upward in the same blocks, so a token's result is
 * the same whether it is decoded alone or inside a verify batch. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

enum { ATTN_BLOCK = 64 };

static df_status check_cache(const char *kernel, const df_cpu_kv_cache *c) {
    if (!c || !c->k || !c->v) return df_fail(DF_ERR_INVALID, "%s: cache or its K/V buffer is NULL", kernel);
    if (c->type != DF_KV_F16 && c->type != DF_KV_F32)
        return df_fail(DF_ERR_INVALID, "%s: unknown cache type %d", kernel, (int)c->type);
    if (c->n_ctx <= 0 || c->n_kv_head <= 0 || c->head_dim <= 0 || c->n_ctx > ((int64_t)1 << 31) ||
        c->n_kv_head > 4096 || c->head_dim > 65536)
        return df_fail(DF_ERR_INVALID, "%s: cache shape [%lld][%lld][%lld] is not valid", kernel,
                       (long long)c->n_ctx, (long long)c->n_kv_head, (long long)c->head_dim);
    return DF_OK;
}

/* ---- writing rows ---- */

typedef struct {
    df_cpu_kv_cache *cache;
    const df_cpu_heads *k, *v;
    int64_t pos0;
} kv_write_ctx;

static void write_row(void *base, df_kv_type type, int64_t off, const float *src, int64_t d) {
    if (type == DF_KV_F16)
        df_f32_to_fp16_row(src, (df_fp16 *)base + off, (size_t)d);
    else
        memcpy((float *)base + off, src, (size_t)d * sizeof(float));
}

static void kv_write_task(void *p, int task, int n_tasks) {
    const kv_write_ctx *c = p;
    const df_cpu_kv_cache *kc = c->cache;
    const int64_t nh = kc->n_kv_head, d = kc->head_dim;
    int64_t lo, hi;
    df_cpu_task_range(c->k->n_tok * nh, task, n_tasks, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        const int64_t t = i / nh, h = i % nh;
        const int64_t off = ((c->pos0 + t) * nh + h) * d;
        write_row(kc->k, kc->type, off, df_head_ptr(c->k, t, h), d);
        write_row(kc->v, kc->type, off, df_head_ptr(c->v, t, h), d);
    }
}

df_status df_cpu_kv_write(df_pool *pool, df_cpu_kv_cache *cache, const df_cpu_heads *k_new,
                          const df_cpu_heads *v_new, int64_t pos0) {
    DF_TRY(check_cache("kv_write", cache));
    DF_TRY(df_cpu_check_heads("kv_write", "k_new", k_new));
    DF_TRY(df_cpu_check_heads("kv_write", "v_new", v_new));
    if (k_new->n_head != cache->n_kv_head || k_new->dim != cache->head_dim ||
        v_new->n_head != cache->n_kv_head || v_new->dim != cache->head_dim ||
        v_new->n_tok != k_new->n_tok)
        return df_fail(DF_ERR_MISMATCH, "kv_write: k_new [%lld][%lld][%lld] / v_new [%lld][%lld][%lld] "
                       "do not match the cache's %lld heads of %lld",
                       (long long)k_new->n_tok, (long long)k_new->n_head, (long long)k_new->dim,
                       (long long)v_new->n_tok, (long long)v_new->n_head, (long long)v_new->dim,
                       (long long)cache->n_kv_head, (long long)cache->head_dim);
    if (pos0 < 0 || pos0 > cache->n_ctx - k_new->n_tok)
        return df_fail(DF_ERR_INVALID, "kv_write: rows %lld..%lld do not fit a cache of %lld rows",
                       (long long)pos0, (long long)(pos0 + k_new->n_tok - 1), (long long)cache->n_ctx);
    kv_write_ctx c = {cache, k_new, v_new, pos0};
    df_pool_run(pool, kv_write_task, &c,
                df_cpu_task_count(pool, k_new->n_tok * cache->n_kv_head, 4 * cache->head_dim));
    return DF_OK;
}

/* ---- attention ---- */

typedef struct {
    const df_cpu_attn_args *a;
    float scale;
    int64_t group; /* query heads per KV head */
} attn_ctx;

static void attend_one(const attn_ctx *c, const df_cpu_kernels *K, int64_t t, int64_t h) {
    const df_cpu_attn_args *a = c->a;
    const df_cpu_kv_cache *kc = a->cache;
    const int64_t d = kc->head_dim, kvh = h / c->group;
    const int64_t row_stride = kc->n_kv_head * d;
    const int64_t n_vis = a->causal ? a->pos0 + t + 1 : a->pos0 + a->q.n_tok;
    const float *q = df_head_ptr(&a->q, t, h);
    float *o = df_head_ptr(&a->out, t, h);
    const bool f16 = kc->type == DF_KV_F16;
    const size_t elem = f16 ? sizeof(df_fp16) : sizeof(float);
    const void *kb = (const char *)kc->k + (size_t)(kvh * d) * elem;
    const void *vb = (const char *)kc->v + (size_t)(kvh * d) * elem;

    memset(o, 0, (size_t)d * sizeof(float));
    float s[ATTN_BLOCK];
    int64_t off[ATTN_BLOCK];
    float m = -INFINITY, l = 0.0f;
    for (int64_t j0 = 0; j0 < n_vis; j0 += ATTN_BLOCK) {
        const int64_t nb = n_vis - j0 < ATTN_BLOCK ? n_vis - j0 : ATTN_BLOCK;
        for (int64_t b = 0; b < nb; b++) off[b] = (j0 + b) * row_stride;
        df_attn_online_block(K, q, d, c->scale, f16, kb, vb, off, nb, s, &m, &l, o);
    }
    K->scale_f32(o, 1.0f / l, d);
    if (a->gate) {
        const float *g = df_head_ptr(a->gate, t, h);
        K->sigmoid_mul_f32(o, g, o, d);
    }
}

static void attn_task(void *p, int task, int n_tasks) {
    const attn_ctx *c = p;
    const df_cpu_kernels *K = df_cpu_kernels_get();
    const int64_t nh = c->a->q.n_head;
    int64_t lo, hi;
    df_cpu_task_range(c->a->q.n_tok * nh, task, n_tasks, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) attend_one(c, K, i / nh, i % nh);
}

static bool same_shape(const df_cpu_heads *a, const df_cpu_heads *b) {
    return a->n_tok == b->n_tok && a->n_head == b->n_head && a->dim == b->dim;
}

df_status df_cpu_attention(df_pool *pool, const df_cpu_attn_args *args) {
    if (!args) return df_fail(DF_ERR_INVALID, "attention: args is NULL");
    const df_cpu_attn_args *a = args;
    DF_TRY(check_cache("attention", a->cache));
    DF_TRY(df_cpu_check_heads("attention", "q", &a->q));
    DF_TRY(df_cpu_check_heads("attention", "out", &a->out));
    const df_cpu_kv_cache *kc = a->cache;
    if (!same_shape(&a->q, &a->out))
        return df_fail(DF_ERR_MISMATCH, "attention: out [%lld][%lld][%lld] does not match q [%lld][%lld][%lld]",
                       (long long)a->out.n_tok, (long long)a->out.n_head, (long long)a->out.dim,
                       (long long)a->q.n_tok, (long long)a->q.n_head, (long long)a->q.dim);
    if (a->gate) {
        DF_TRY(df_cpu_check_heads("attention", "gate", a->gate));
        if (!same_shape(a->gate, &a->q))
            return df_fail(DF_ERR_MISMATCH, "attention: gate shape does not match q");
    }
    if (a->q.dim != kc->head_dim)
        return df_fail(DF_ERR_MISMATCH, "attention: q head dim %lld, cache head dim %lld",
                       (long long)a->q.dim, (long long)kc->head_dim);
    if (a->q.n_head % kc->n_kv_head)
        return df_fail(DF_ERR_MISMATCH, "attention: %lld query heads is not a multiple of %lld KV heads",
                       (long long)a->q.n_head, (long long)kc->n_kv_head);
    if (a->pos0 < 0 || a->pos0 > kc->n_ctx - a->q.n_tok)
        return df_fail(DF_ERR_INVALID, "attention: tokens at rows %lld..%lld do not fit a cache of %lld rows",
                       (long long)a->pos0, (long long)(a->pos0 + a->q.n_tok - 1), (long long)kc->n_ctx);
    if (!(a->scale >= 0.0f) || !isfinite(a->scale))
        return df_fail(DF_ERR_INVALID, "attention: scale %g is not a finite number >= 0", (double)a->scale);
    if ((a->k_new == NULL) != (a->v_new == NULL))
        return df_fail(DF_ERR_INVALID, "attention: k_new and v_new must be given together");
    if (a->k_new) {
        if (a->k_new->n_tok != a->q.n_tok)
            return df_fail(DF_ERR_MISMATCH, "attention: %lld new K rows for %lld query tokens",
                           (long long)a->k_new->n_tok, (long long)a->q.n_tok);
        DF_TRY(df_cpu_kv_write(pool, a->cache, a->k_new, a->v_new, a->pos0));
    }
    attn_ctx c = {a, a->scale > 0.0f ? a->scale : (float)(1.0 / sqrt((double)kc->head_dim)),
                  a->q.n_head / kc->n_kv_head};
    const int64_t avg_rows = a->pos0 + (a->q.n_tok + 1) / 2;
    df_pool_run(pool, attn_task, &c, df_cpu_task_count(pool, a->q.n_tok * a->q.n_head, avg_rows * kc->head_dim * 4));
    return DF_OK;
}
