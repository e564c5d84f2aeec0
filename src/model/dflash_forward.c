/* The drafter's two passes, written once against the backend op table.
 *
 * commit (context rows, positions c .. c+m-1; run once per accepted target token):
 *     f = hidden_norm(fc(features))
 *     per layer: K = rope(k_norm(wk f)), V = wv f  ->  the layer's cache
 * draft (block [bonus, MASK...], positions c .. c+n-1):
 *     x = target embedding(block)
 *     per layer: h = attn_norm(x)
 *                q = rope(q_norm(wq h)), k = rope(k_norm(wk h)), v = wv h
 *                x += wo(attention(q; context rows + block rows))
 *                x += down(silu(gate(ffn_norm(x))) * up(ffn_norm(x)))
 *     logits of rows 1 .. n-1 = target LM head(output_norm(x))
 *
 * Every projection and norm works row by row, and the attention kernels walk rows by
 * position, so a context row's K/V and a step's logits do not depend on how the context
 * was split into commits: committing incrementally equals committing from scratch, bit
 * for bit. The block rows a step writes into the caches sit at positions >= c, which the
 * next commit overwrites and no read looks at before then. */
#include "model/dflash_draft.h"
#include "model/graph_cache.h"

#define OPS (be->ops)

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static df_status upload_positions(df_dflash_state *s, int64_t pos0, int64_t n) {
    df_backend *be = s->d->be;
    int32_t buf[256];
    for (int64_t t0 = 0; t0 < n; t0 += 256) {
        const int64_t m = min64(n - t0, 256);
        for (int64_t i = 0; i < m; i++) buf[i] = (int32_t)(pos0 + t0 + i);
        DF_TRY(OPS->upload(be, s->pos + t0, buf, (size_t)m * sizeof(int32_t)));
    }
    return DF_OK;
}

/* Writes the rows of the positions in s->pos (uploaded by the caller: pos0 .. pos0 + n - 1)
 * into layer l's ring (n <= ring size, so the rows wrap at most once). The backend reads the
 * position when the work runs, so a recorded draft step replays at any position. */
static df_status ring_write(df_dflash_state *s, int64_t l, const df_heads *k, const df_heads *v) {
    df_backend *be = s->d->be;
    return OPS->kv_write_ring(be, &s->kv[l], k, v, s->pos);
}

/* ---- commit ---- */

/* One commit batch of m <= s->chunk rows: from the target's hidden states (hidden != NULL,
 * rows r0.. of each, packed into s->feat first) or from packed features (feat). */
typedef struct commit_call {
    df_dflash_state *s;
    const float *const *hidden;
    int64_t r0;
    const float *feat;
    int64_t m;
} commit_call;

/* Everything after the position upload: the positions are read from s->pos when the work
 * runs, so a recording replays at any position (one per batch size and source). */
static df_status commit_body(void *ctx) {
    const commit_call *c = ctx;
    df_dflash_state *s = c->s;
    const df_dflash_draft *d = s->d;
    const df_dflash_hparams *hp = &d->hp;
    df_backend *be = d->be;
    const int64_t E = hp->n_embd, D = hp->head_dim, kvd = hp->n_head_kv * D, m = c->m;
    const float *feat = c->feat;
    if (c->hidden) {
        /* fc wants each row's captures side by side, in layer_ids order. */
        const int64_t nc = hp->n_capture;
        const size_t row_bytes = (size_t)E * sizeof(float);
        for (int64_t i = 0; i < nc; i++)
            DF_TRY(OPS->copy_2d(be, s->feat + i * E, (size_t)nc * row_bytes, c->hidden[i] + c->r0 * E, row_bytes,
                                row_bytes, (size_t)m));
        feat = s->feat;
    }
    DF_TRY(OPS->matmul(be, feat, m, &d->fc, s->x));
    DF_TRY(OPS->rmsnorm(be, s->x, E, s->x, E, m, E, d->hidden_norm.data, hp->rms_eps));
    for (int64_t l = 0; l < hp->n_layer; l++) {
        const df_dflash_layer *L = &d->layers[l];
        /* No attn_norm here: the reference projects the fused features directly. */
        const df_weight *kv_w[2] = {&L->wk, &L->wv};
        float *const kv_y[2] = {s->k, s->v};
        DF_TRY(df_backend_matmuls(be, s->x, m, 2, kv_w, kv_y));
        df_heads k = {s->k, m, hp->n_head_kv, D, kvd, D};
        df_heads v = {s->v, m, hp->n_head_kv, D, kvd, D};
        DF_TRY(OPS->rmsnorm_heads(be, &k, L->k_norm.data, hp->rms_eps));
        DF_TRY(OPS->rope(be, &k, s->pos, d->inv_freq, D));
        DF_TRY(ring_write(s, l, &k, &v));
    }
    return DF_OK;
}

/* Key words of a commit recording: a tag no draft key (a block width) can equal, the batch
 * size, and the source's addresses. */
#define COMMIT_KEY_TAG ((uintptr_t)0x434f4d4du)

static df_status commit_batch(df_dflash_state *s, const commit_call *c) {
    DF_TRY(upload_positions(s, s->n_committed, c->m));
    const int64_t n_src = c->hidden ? s->d->hp.n_capture : 0;
    if (n_src > DF_GRAPH_KEY_WORDS - 4) {
        DF_TRY(commit_body((void *)c)); /* more sources than key words: unrecorded */
    } else {
        uintptr_t key[DF_GRAPH_KEY_WORDS] = {COMMIT_KEY_TAG, (uintptr_t)c->m, (uintptr_t)c->r0, (uintptr_t)c->feat};
        for (int64_t i = 0; i < n_src; i++) key[4 + i] = (uintptr_t)c->hidden[i];
        DF_TRY(df_graph_cache_run(s->graphs, key, 4 + (int)n_src, commit_body, (void *)c));
    }
    s->n_committed += c->m;
    return DF_OK;
}

static df_status check_room(const df_dflash_state *s, int64_t n_rows) {
    if (n_rows < 0 || n_rows > s->n_ctx - s->n_committed)
        return df_fail(DF_ERR_INVALID, "dflash commit: %lld rows do not fit (%lld of %lld "
                       "context rows used)", (long long)n_rows, (long long)s->n_committed,
                       (long long)s->n_ctx);
    return DF_OK;
}

df_status df_dflash_state_commit_packed(df_dflash_state *s, const float *feat, int64_t n_rows) {
    DF_TRY(check_room(s, n_rows));
    const int64_t width = s->d->hp.n_capture * s->d->hp.n_embd;
    for (int64_t r0 = 0; r0 < n_rows; r0 += s->chunk) {
        const commit_call c = {s, NULL, 0, feat + r0 * width, min64(n_rows - r0, s->chunk)};
        DF_TRY(commit_batch(s, &c));
    }
    return DF_OK;
}

df_status df_dflash_state_commit(df_dflash_state *s, const float *const *hidden, int64_t n_rows) {
    DF_TRY(check_room(s, n_rows));
    for (int64_t r0 = 0; r0 < n_rows; r0 += s->chunk) {
        const commit_call c = {s, hidden, r0, NULL, min64(n_rows - r0, s->chunk)};
        DF_TRY(commit_batch(s, &c));
    }
    return DF_OK;
}

/* ---- draft ---- */

static df_status attention(df_dflash_state *s, int64_t l, int64_t n, df_heads *q, df_heads *k,
                           df_heads *v) {
    const df_dflash_hparams *hp = &s->d->hp;
    df_backend *be = s->d->be;
    const int64_t D = hp->head_dim, qd = hp->n_head * D, pos0 = s->n_committed;
    const df_heads out = {s->attn, n, hp->n_head, D, qd, D};
    if (!hp->sliding[l]) {
        /* A full layer's cache is linear (row = position), which is the target's attention
         * op exactly: write the block rows at pos0, attend to rows < pos0 + n (causal: to
         * rows <= own position). */
        df_attn_args a = {.q = *q, .gate = NULL, .k_new = k, .v_new = v, .cache = &s->kv[l],
                          .pos0 = pos0, .pos = s->pos, .causal = hp->causal[l], .scale = 0.0f,
                          .out = out};
        return OPS->attention(be, &a);
    }
    DF_TRY(ring_write(s, l, k, v));
    df_window_attn_args a = {.q = *q, .cache = &s->kv[l], .q_pos0 = pos0, .kv_end = pos0 + n,
                             .causal = hp->causal[l], .window = hp->sliding_window,
                             .scale = 0.0f, .out = out, .pos = s->pos};
    return OPS->attention_window(be, &a);
}

typedef struct draft_call {
    df_dflash_state *s;
    int64_t n;
} draft_call;

static df_status draft_body(void *ctx);

df_status df_dflash_state_draft(df_dflash_state *s, int32_t bonus, int64_t n) {
    const df_dflash_draft *d = s->d;
    const df_dflash_hparams *hp = &d->hp;
    df_backend *be = d->be;
    if (n < 2 || n > s->block_size)
        return df_fail(DF_ERR_INVALID, "dflash draft: a block of %lld tokens (the state takes "
                       "2..%lld)", (long long)n, (long long)s->block_size);
    if (bonus < 0 || bonus >= s->n_vocab)
        return df_fail(DF_ERR_INVALID, "dflash draft: bonus token %d outside the vocabulary (%lld)",
                       bonus, (long long)s->n_vocab);
    int32_t ids[1024];
    ids[0] = bonus;
    for (int64_t i = 1; i < n; i++) ids[i] = hp->mask_token_id;
    DF_TRY(OPS->upload(be, s->ids, ids, (size_t)n * sizeof(int32_t)));
    DF_TRY(upload_positions(s, s->n_committed, n));
    /* Everything after the uploads depends on the step only through the id and position
     * buffers (the ring writes and both attention forms take positions from s->pos), so it
     * can be recorded once per block width and replayed. */
    draft_call call = {s, n};
    const uintptr_t key[1] = {(uintptr_t)n};
    return df_graph_cache_run(s->graphs, key, 1, draft_body, &call);
}

static df_status draft_body(void *ctx) {
    const draft_call *c = ctx;
    df_dflash_state *s = c->s;
    const int64_t n = c->n;
    const df_dflash_draft *d = s->d;
    const df_dflash_hparams *hp = &d->hp;
    df_backend *be = d->be;
    const int64_t E = hp->n_embd, D = hp->head_dim, F = hp->n_ff;
    const int64_t qd = hp->n_head * D, kvd = hp->n_head_kv * D;
    DF_TRY(OPS->get_rows(be, s->tok_embd, s->ids, n, s->x));

    for (int64_t l = 0; l < hp->n_layer; l++) {
        const df_dflash_layer *L = &d->layers[l];
        DF_TRY(OPS->rmsnorm(be, s->x, E, s->h, E, n, E, L->attn_norm.data, hp->rms_eps));
        const df_weight *qkv_w[3] = {&L->wq, &L->wk, &L->wv};
        float *const qkv_y[3] = {s->q, s->k, s->v};
        DF_TRY(df_backend_matmuls(be, s->h, n, 3, qkv_w, qkv_y));
        df_heads q = {s->q, n, hp->n_head, D, qd, D};
        df_heads k = {s->k, n, hp->n_head_kv, D, kvd, D};
        df_heads v = {s->v, n, hp->n_head_kv, D, kvd, D};
        DF_TRY(OPS->rmsnorm_heads(be, &q, L->q_norm.data, hp->rms_eps));
        DF_TRY(OPS->rmsnorm_heads(be, &k, L->k_norm.data, hp->rms_eps));
        DF_TRY(OPS->rope(be, &q, s->pos, d->inv_freq, D));
        DF_TRY(OPS->rope(be, &k, s->pos, d->inv_freq, D));
        DF_TRY(attention(s, l, n, &q, &k, &v));
        DF_TRY(OPS->matmul(be, s->attn, n, &L->wo, s->proj));
        DF_TRY(OPS->add(be, s->x, s->proj, s->x, n * E));

        DF_TRY(OPS->rmsnorm(be, s->x, E, s->h, E, n, E, L->ffn_norm.data, hp->rms_eps));
        const df_weight *ffn_w[2] = {&L->ffn_gate, &L->ffn_up};
        float *const ffn_y[2] = {s->ff_a, s->ff_b};
        DF_TRY(df_backend_matmuls(be, s->h, n, 2, ffn_w, ffn_y));
        DF_TRY(OPS->swiglu(be, s->ff_a, s->ff_b, s->ff_a, n * F));
        DF_TRY(OPS->matmul(be, s->ff_a, n, &L->ffn_down, s->proj));
        DF_TRY(OPS->add(be, s->x, s->proj, s->x, n * E));
    }
    /* Row 0 (the bonus) predicts nothing: logits for rows 1 .. n-1 only. */
    DF_TRY(OPS->rmsnorm(be, s->x + E, E, s->h, E, n - 1, E, d->output_norm.data, hp->rms_eps));
    DF_TRY(OPS->matmul(be, s->h, n - 1, s->lm_head, s->logits));
    return OPS->argmax_rows(be, s->logits, n - 1, s->n_vocab, s->n_vocab, s->argmax);
}
