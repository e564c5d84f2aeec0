/* The CPU kernel the DFlash drafter needs beyond cpu_ops.h: attention of a few query tokens
 * over a KV cache kept as a ring, where each query sees a range of POSITIONS (causal, and a
 * sliding window) rather than "every row below n".
 *
 * Why a separate op: the drafter's sliding-window layers (Qwen3.6 drafters: window 2048 or
 * 4096) keep only the last window of context rows, so their cache is a ring (position p in
 * row p % n_ctx), and each block query sees its own window [p - window + 1, p]. The target's
 * attention op (df_cpu_attention) reads rows 0 .. n-1 of a linear cache, which fits the
 * drafter's full-attention layers but not these. */
#ifndef DF_BACKEND_CPU_DRAFT_OPS_H
#define DF_BACKEND_CPU_DRAFT_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/cpu/cpu_ops.h"

typedef struct df_cpu_window_attn_args {
    df_cpu_heads q;               /* [n_tok][n_head][head_dim], already normed and rotated */
    const df_cpu_kv_cache *cache; /* a ring: position p lives in row p % cache->n_ctx */
    int64_t q_pos0;               /* position of query token 0; token t is at q_pos0 + t */
    int64_t kv_end;               /* rows of positions < kv_end are written; the queries'
                                     own positions must be below it */
    bool causal;                  /* the query at p sees positions <= p; else all < kv_end */
    int64_t window;               /* > 0: the query at p sees positions > p - window only;
                                     0: no window */
    float scale;                  /* 0 means 1 / sqrt(head_dim) */
    df_cpu_heads out;             /* [n_tok][n_head][head_dim]; must not overlap q */
    /* Optional: the queries' positions in backend memory (pos[0] == q_pos0 and kv_end ==
     * q_pos0 + n_tok). A backend that records work for replay reads them when it runs;
     * others use q_pos0 / kv_end. */
    const int32_t *pos;
} df_cpu_window_attn_args;

/* softmax(q K^T * scale) V per (token, head) over the visible positions
 *     [max(0, p - window + 1) (or 0), causal ? p + 1 : kv_end)
 * with query head h reading KV head h / (n_head / n_kv_head). Every position in that range
 * must still be in the ring (kv_end - n_ctx <= the first one), else DF_ERR_INVALID.
 * Rows are visited in increasing POSITION order, in blocks aligned to absolute positions,
 * so a result depends on the positions and their K/V only: not on where the ring starts,
 * how many tokens share the call, or when earlier rows were written. No scratch. */
df_status df_cpu_attention_window(df_pool *pool, const df_cpu_window_attn_args *args);

#endif
