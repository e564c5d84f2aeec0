/* Windowed attention over a ring KV cache (the drafter's sliding-window layers); the
 * contract is in cpu_draft_ops.h.
 *
 * Same arithmetic as df_cpu_attention (online softmax, the accumulator is the output row,
 * one task per run of (token, head) pairs), but the rows are walked by position: blocks of
 * WIN_BLOCK positions aligned to multiples of WIN_BLOCK, clipped to the visible range, each
 * position mapped to its ring row. Aligning on absolute positions is what makes a drafter
 * step give the same bits whether its context was committed in one call or in many. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_draft_ops.h"
#include "backend/cpu/cpu_internal.h"

enum { WIN_BLOCK = 64 };

typedef struct {
    const df_cpu_window_attn_args *a;
    float scale;
    int64_t group; /* query heads per KV head */
} win_ctx;

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The half-open range of positions the query at position p sees. */
static void visible(const df_cpu_window_attn_args *a, int64_t p, int64_t *lo, int64_t *hi) {
    *lo = a->window > 0 ? max64(0, p - a->window + 1) : 0;
    *hi = a->causal ? p + 1 : a->kv_end;
}

static void attend_one(const win_ctx *c, const df_cpu_kernels *K, int64_t t, int64_t h) {
    const df_cpu_window_attn_args *a = c->a;
    const df_cpu_kv_cache *kc = a->cache;
    const int64_t d = kc->head_dim, kvh = h / c->group, ring = kc->n_ctx;
    const int64_t row_stride = kc->n_kv_head * d;
    const float *q = df_head_ptr(&a->q, t, h);
    float *o = df_head_ptr(&a->out, t, h);
    const bool f16 = kc->type == DF_KV_F16;
    const size_t elem = f16 ? sizeof(df_fp16) : sizeof(float);
    const void *kb = (const char *)kc->k + (size_t)(kvh * d) * elem;
    const void *vb = (const char *)kc->v + (size_t)(kvh * d) * elem;
    int64_t lo, hi;
    visible(a, a->q_pos0 + t, &lo, &hi);

    memset(o, 0, (size_t)d * sizeof(float));
    float s[WIN_BLOCK];
    int64_t off[WIN_BLOCK];
    float m = -INFINITY, l = 0.0f;
    for (int64_t j0 = lo - lo % WIN_BLOCK; j0 < hi; j0 += WIN_BLOCK) {
        const int64_t b0 = max64(j0, lo), nb = min64(j0 + WIN_BLOCK, hi) - b0;
        for (int64_t b = 0; b < nb; b++) off[b] = ((b0 + b) % ring) * row_stride;
        df_attn_online_block(K, q, d, c->scale, f16, kb, vb, off, nb, s, &m, &l, o);
    }
    /* l >= 1: the argument checks guarantee at least one visible position. */
    K->scale_f32(o, 1.0f / l, d);
}

static void win_task(void *p, int task, int n_tasks) {
    const win_ctx *c = p;
    const df_cpu_kernels *K = df_cpu_kernels_get();
    const int64_t nh = c->a->q.n_head;
    int64_t lo, hi;
    df_cpu_task_range(c->a->q.n_tok * nh, task, n_tasks, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) attend_one(c, K, i / nh, i % nh);
}

static df_status check_args(const df_cpu_window_attn_args *a) {
    static const char *K = "attention_window";
    if (!a) return df_fail(DF_ERR_INVALID, "%s: args is NULL", K);
    const df_cpu_kv_cache *c = a->cache;
    if (!c || !c->k || !c->v) return df_fail(DF_ERR_INVALID, "%s: cache or its K/V buffer is NULL", K);
    if (c->type != DF_KV_F16 && c->type != DF_KV_F32)
        return df_fail(DF_ERR_INVALID, "%s: unknown cache type %d", K, (int)c->type);
    if (c->n_ctx <= 0 || c->n_kv_head <= 0 || c->head_dim <= 0 || c->n_ctx > ((int64_t)1 << 31) ||
        c->n_kv_head > 4096 || c->head_dim > 65536)
        return df_fail(DF_ERR_INVALID, "%s: cache shape [%lld][%lld][%lld] is not valid", K,
                       (long long)c->n_ctx, (long long)c->n_kv_head, (long long)c->head_dim);
    DF_TRY(df_cpu_check_heads(K, "q", &a->q));
    DF_TRY(df_cpu_check_heads(K, "out", &a->out));
    if (a->out.n_tok != a->q.n_tok || a->out.n_head != a->q.n_head || a->out.dim != a->q.dim)
        return df_fail(DF_ERR_MISMATCH, "%s: out [%lld][%lld][%lld] does not match q [%lld][%lld][%lld]", K,
                       (long long)a->out.n_tok, (long long)a->out.n_head, (long long)a->out.dim,
                       (long long)a->q.n_tok, (long long)a->q.n_head, (long long)a->q.dim);
    if (a->q.dim != c->head_dim)
        return df_fail(DF_ERR_MISMATCH, "%s: q head dim %lld, cache head dim %lld", K,
                       (long long)a->q.dim, (long long)c->head_dim);
    if (a->q.n_head % c->n_kv_head)
        return df_fail(DF_ERR_MISMATCH, "%s: %lld query heads is not a multiple of %lld KV heads", K,
                       (long long)a->q.n_head, (long long)c->n_kv_head);
    if (a->window < 0 || a->window > ((int64_t)1 << 31))
        return df_fail(DF_ERR_INVALID, "%s: window %lld is not in 0..2^31", K, (long long)a->window);
    if (a->q_pos0 < 0 || a->kv_end > ((int64_t)1 << 40) || a->q_pos0 > a->kv_end - a->q.n_tok)
        return df_fail(DF_ERR_INVALID, "%s: queries at positions %lld..%lld are not all below the "
                       "written end %lld", K, (long long)a->q_pos0,
                       (long long)(a->q_pos0 + a->q.n_tok - 1), (long long)a->kv_end);
    if (!(a->scale >= 0.0f) || !isfinite(a->scale))
        return df_fail(DF_ERR_INVALID, "%s: scale %g is not a finite number >= 0", K, (double)a->scale);
    /* The first query's range starts lowest: the ring must still hold it. Every query sees
     * at least itself (causal) or every written row of the block (not causal). */
    int64_t lo, hi;
    visible(a, a->q_pos0, &lo, &hi);
    if (lo < a->kv_end - c->n_ctx)
        return df_fail(DF_ERR_INVALID, "%s: the query at position %lld needs position %lld, but a "
                       "ring of %lld rows written up to %lld holds only %lld..", K,
                       (long long)a->q_pos0, (long long)lo, (long long)c->n_ctx,
                       (long long)a->kv_end, (long long)(a->kv_end - c->n_ctx));
    return DF_OK;
}

df_status df_cpu_attention_window(df_pool *pool, const df_cpu_window_attn_args *args) {
    DF_TRY(check_args(args));
    const df_cpu_window_attn_args *a = args;
    const df_cpu_kv_cache *kc = a->cache;
    win_ctx c = {a, a->scale > 0.0f ? a->scale : (float)(1.0 / sqrt((double)kc->head_dim)),
                 a->q.n_head / kc->n_kv_head};
    int64_t rows = a->kv_end;
    if (a->window > 0 && a->window < rows) rows = a->window;
    df_pool_run(pool, win_task, &c,
                df_cpu_task_count(pool, a->q.n_tok * a->q.n_head, rows * kc->head_dim * 4));
    return DF_OK;
}
