/* A drafting session: the drafter's KV cache and every buffer a commit or a draft step
 * uses, allocated once here; commits and steps never allocate.
 *
 * Cache sizes: a full-attention layer keeps every committed context row plus one block
 * (n_ctx + block rows; position p in row p, it never wraps). A sliding layer only ever
 * reads the last `window` positions before a block query, so it keeps a ring of
 * window + block rows: the block's queries need positions pos0 - window + 1 .. pos0 + B - 1,
 * which is window + B - 1 rows. */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "model/dflash_draft.h"
#include "model/graph_cache.h"

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static df_status balloc(df_backend *be, int64_t n, size_t elem, void **out) {
    size_t bytes;
    if (n < 0 || !df_mul_size((size_t)n, elem, &bytes))
        return df_fail(DF_ERR_NOMEM, "dflash state: buffer size overflows");
    return be->ops->alloc(be, bytes ? bytes : 1, out);
}

#define ALLOC(ptr, n, elem) \
    do { st = balloc(be, (n), (elem), (void **)&(ptr)); if (st != DF_OK) goto fail; } while (0)

df_status df_dflash_state_create_with(const df_dflash_draft *d, const df_weight *tok_embd,
                                      const df_weight *lm_head, int64_t n_ctx, int64_t block_size,
                                      df_kv_type kv_type, df_dflash_state **out) {
    *out = NULL;
    const df_dflash_hparams *hp = &d->hp;
    const int64_t E = hp->n_embd;
    if (block_size == 0) block_size = hp->block_size;
    if (n_ctx <= 0 || n_ctx > ((int64_t)1 << 30) || block_size < 2 || block_size > 1024)
        return df_fail(DF_ERR_INVALID, "dflash state: need 0 < n_ctx (%lld) <= 2^30 and a block of "
                       "2..1024 tokens (%lld)", (long long)n_ctx, (long long)block_size);
    if (kv_type != DF_KV_F16 && kv_type != DF_KV_F32)
        return df_fail(DF_ERR_INVALID, "dflash state: unknown KV type %d", (int)kv_type);
    if (!tok_embd || !lm_head || tok_embd->ne[0] != E || lm_head->ne[0] != E ||
        tok_embd->ne[1] != lm_head->ne[1] || tok_embd->ne[1] <= 0)
        return df_fail(DF_ERR_MISMATCH, "%s: the embedding table and LM head must both be "
                       "[n_vocab][%lld] (the drafter's hidden size)", d->source, (long long)E);
    if (hp->mask_token_id >= tok_embd->ne[1])
        return df_fail(DF_ERR_MISMATCH, "%s: mask token %d is outside the vocabulary of %lld tokens",
                       d->source, hp->mask_token_id, (long long)tok_embd->ne[1]);
    /* The references disagree on a window narrower than the block (right edge of a non-causal
     * window inside the block); with window >= block the window only clips context rows. */
    if (hp->sliding_window > 0 && hp->sliding_window < block_size)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: sliding window %lld is narrower than the block of "
                       "%lld tokens", d->source, (long long)hp->sliding_window, (long long)block_size);

    df_backend *be = d->be;
    df_dflash_state *s = calloc(1, sizeof *s);
    if (!s) return df_fail(DF_ERR_NOMEM, "dflash state: out of memory");
    df_status st = DF_OK;
    s->d = d;
    s->tok_embd = tok_embd;
    s->lm_head = lm_head;
    s->n_vocab = tok_embd->ne[1];
    s->n_ctx = n_ctx;
    s->block_size = block_size;
    s->kv_type = kv_type;
    s->kv = calloc((size_t)hp->n_layer, sizeof *s->kv);
    if (!s->kv) {
        st = df_fail(DF_ERR_NOMEM, "dflash state: out of memory");
        goto fail;
    }
    const size_t kv_elem = kv_type == DF_KV_F16 ? 2 : 4;
    s->chunk = DF_DFLASH_COMMIT_CHUNK;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        df_kv_cache *c = &s->kv[l];
        c->type = kv_type;
        c->n_ctx = n_ctx + block_size;
        if (hp->sliding[l]) c->n_ctx = min64(c->n_ctx, hp->sliding_window + block_size);
        c->n_kv_head = hp->n_head_kv;
        c->head_dim = hp->head_dim;
        /* a commit batch must not lap a ring */
        s->chunk = min64(s->chunk, c->n_ctx);
        ALLOC(c->k, c->n_ctx * hp->n_head_kv * hp->head_dim, kv_elem);
        ALLOC(c->v, c->n_ctx * hp->n_head_kv * hp->head_dim, kv_elem);
    }
    const int64_t R = max64(block_size, s->chunk);
    const int64_t qd = hp->n_head * hp->head_dim, kvd = hp->n_head_kv * hp->head_dim;
    ALLOC(s->ids, R, sizeof(int32_t));
    ALLOC(s->pos, R, sizeof(int32_t));
    ALLOC(s->feat, s->chunk * hp->n_capture * E, sizeof(float));
    ALLOC(s->x, R * E, sizeof(float));
    ALLOC(s->h, R * E, sizeof(float));
    ALLOC(s->proj, R * E, sizeof(float));
    ALLOC(s->q, block_size * qd, sizeof(float));
    ALLOC(s->k, R * kvd, sizeof(float));
    ALLOC(s->v, R * kvd, sizeof(float));
    ALLOC(s->attn, block_size * qd, sizeof(float));
    ALLOC(s->ff_a, block_size * hp->n_ff, sizeof(float));
    ALLOC(s->ff_b, block_size * hp->n_ff, sizeof(float));
    ALLOC(s->logits, (block_size - 1) * s->n_vocab, sizeof(float));
    ALLOC(s->argmax, block_size - 1, sizeof(int32_t));
    st = df_graph_cache_create(be, &s->graphs);
    if (st != DF_OK) goto fail;
    *out = s;
    return DF_OK;
fail:
    df_dflash_state_free(s);
    return st;
}

df_status df_dflash_state_create(const df_dflash_draft *d, const df_qwen35 *target, int64_t n_ctx,
                                 int64_t block_size, df_kv_type kv_type, df_dflash_state **out) {
    *out = NULL;
    DF_TRY(df_dflash_draft_check_target(d, &target->hp));
    return df_dflash_state_create_with(d, &target->tok_embd, &target->output, n_ctx, block_size,
                                       kv_type, out);
}

void df_dflash_state_free(df_dflash_state *s) {
    if (!s) return;
    df_backend *be = s->d->be;
    df_graph_cache_free(s->graphs);
    if (s->kv)
        for (int64_t l = 0; l < s->d->hp.n_layer; l++) {
            be->ops->free(be, s->kv[l].k);
            be->ops->free(be, s->kv[l].v);
        }
    void *bufs[] = {s->ids, s->pos, s->feat, s->x, s->h, s->proj, s->q, s->k, s->v,
                    s->attn, s->ff_a, s->ff_b, s->logits, s->argmax};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->ops->free(be, bufs[i]);
    free(s->kv);
    free(s);
}

void df_dflash_state_reset(df_dflash_state *s) {
    /* Reads are bounded by positions, so stale rows need no clearing. */
    s->n_committed = 0;
}
