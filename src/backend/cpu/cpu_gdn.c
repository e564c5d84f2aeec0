/* The Gated DeltaNet recurrence in its step form: one token at a time, per value head.
 *
 * Per head the state S is [d_k][d_v] (HF's recurrent_state layout): row r belongs to key
 * component r. With that layout all three products of a step (S^T k, the rank-1 update
 * k delta^T and S^T q) walk S row by row, contiguous in d_v, and the SIMD step
 * (df_cpu_kernels.gdn_step) fuses them so each token streams S through the cache once.
 *
 * Mapping to HF's torch_recurrent_gated_delta_rule: S = S * exp(g); kv = S^T k;
 * delta = (v - kv) * beta; S = S + k delta^T; o = S^T (q / sqrt(d_k)). Here the decay is
 * folded into the update (kv = decay * S^T k; S = decay * S + k delta^T) and the query
 * scale is applied to o; both change only rounding. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

df_status df_cpu_gdn_check(const char *kernel, const df_cpu_gdn_args *a) {
    if (!a) return df_fail(DF_ERR_INVALID, "%s: args is NULL", kernel);
    DF_TRY(df_cpu_check_heads(kernel, "q", &a->q));
    DF_TRY(df_cpu_check_heads(kernel, "k", &a->k));
    DF_TRY(df_cpu_check_heads(kernel, "v", &a->v));
    DF_TRY(df_cpu_check_heads(kernel, "out", &a->out));
    if (a->q.n_tok != a->k.n_tok || a->q.n_head != a->k.n_head || a->q.dim != a->k.dim)
        return df_fail(DF_ERR_MISMATCH, "%s: q [%lld][%lld][%lld] and k [%lld][%lld][%lld] differ", kernel,
                       (long long)a->q.n_tok, (long long)a->q.n_head, (long long)a->q.dim,
                       (long long)a->k.n_tok, (long long)a->k.n_head, (long long)a->k.dim);
    if (a->v.n_tok != a->q.n_tok)
        return df_fail(DF_ERR_MISMATCH, "%s: v has %lld tokens, q has %lld", kernel,
                       (long long)a->v.n_tok, (long long)a->q.n_tok);
    if (a->v.n_head % a->k.n_head)
        return df_fail(DF_ERR_MISMATCH, "%s: %lld value heads is not a multiple of %lld key heads", kernel,
                       (long long)a->v.n_head, (long long)a->k.n_head);
    if (a->out.n_tok != a->v.n_tok || a->out.n_head != a->v.n_head || a->out.dim != a->v.dim)
        return df_fail(DF_ERR_MISMATCH, "%s: out shape does not match v [%lld][%lld][%lld]", kernel,
                       (long long)a->v.n_tok, (long long)a->v.n_head, (long long)a->v.dim);
    if (a->k.dim > 4096 || a->v.dim > 4096)
        return df_fail(DF_ERR_INVALID, "%s: head dims %lld / %lld exceed 4096", kernel,
                       (long long)a->k.dim, (long long)a->v.dim);
    if (!a->g || !a->beta || !a->state)
        return df_fail(DF_ERR_INVALID, "%s: g, beta or state is NULL", kernel);
    if (a->capture && a->capture_type != DF_STATE_F32 && a->capture_type != DF_STATE_F16)
        return df_fail(DF_ERR_INVALID, "%s: unknown capture type %d", kernel, (int)a->capture_type);
    if (a->head_map != DF_GDN_HEADS_GROUPED && a->head_map != DF_GDN_HEADS_TILED)
        return df_fail(DF_ERR_INVALID, "%s: unknown head map %d", kernel, (int)a->head_map);
    if (!(a->q_scale >= 0.0f) || !isfinite(a->q_scale))
        return df_fail(DF_ERR_INVALID, "%s: q_scale %g is not a finite number >= 0", kernel, (double)a->q_scale);
    return DF_OK;
}

void df_cpu_gdn_state_begin(const df_cpu_gdn_args *a, int64_t h0, int64_t h1) {
    const size_t hs = (size_t)(a->k.dim * a->v.dim), n = (size_t)(h1 - h0) * hs;
    const float *from = (a->state_in ? a->state_in : a->state) + (size_t)h0 * hs;
    float *save = a->state_save ? a->state_save + (size_t)h0 * hs : NULL, *to = a->state + (size_t)h0 * hs;
    if (save && save != from) memmove(save, from, n * sizeof(float));
    if (to != from) memmove(to, from, n * sizeof(float));
}

typedef struct {
    const df_cpu_gdn_args *a;
    float q_scale;
} gdn_ctx;

static void gdn_recurrent_task(void *p, int task, int n_tasks) {
    const gdn_ctx *c = p;
    const df_cpu_gdn_args *a = c->a;
    const df_cpu_kernels *K = df_cpu_kernels_get();
    const int64_t nv = a->v.n_head, dk = a->k.dim, dv = a->v.dim, hs = dk * dv;
    const bool cap_f16 = a->capture_type == DF_STATE_F16;
    const size_t cap_elem = cap_f16 ? sizeof(df_fp16) : sizeof(float);
    int64_t lo, hi;
    df_cpu_task_range(nv, task, n_tasks, &lo, &hi);
    df_cpu_gdn_state_begin(a, lo, hi);
    for (int64_t h = lo; h < hi; h++) {
        const int64_t kh = df_gdn_key_head(a, h);
        float *S = a->state + h * hs;
        for (int64_t t = 0; t < a->v.n_tok; t++) {
            const int64_t gi = t * nv + h;
            void *cap = a->capture ? (char *)a->capture + (size_t)(t * nv + h) * (size_t)hs * cap_elem : NULL;
            float *o = df_head_ptr(&a->out, t, h);
            K->gdn_step(S, dk, dv, df_head_ptr(&a->q, t, kh), df_head_ptr(&a->k, t, kh),
                        df_head_ptr(&a->v, t, h), expf(a->g[gi]), a->beta[gi], o, cap, cap_f16);
            K->scale_f32(o, c->q_scale, dv);
        }
    }
}

df_status df_cpu_gdn_recurrent(df_pool *pool, const df_cpu_gdn_args *args) {
    DF_TRY(df_cpu_gdn_check("gdn_recurrent", args));
    gdn_ctx c = {args, df_gdn_q_scale(args)};
    const int64_t nv = args->v.n_head;
    df_pool_run(pool, gdn_recurrent_task, &c,
                df_cpu_task_count(pool, nv, args->v.n_tok * args->k.dim * args->v.dim * 4));
    return DF_OK;
}
