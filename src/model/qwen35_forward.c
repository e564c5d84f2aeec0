/* The qwen35 forward pass, written once against the backend op table.
 *
 *   x = embed(ids)
 *   for each layer:  x += mixer(attn_norm(x))      mixer = Gated DeltaNet or gated attention
 *                    x += ffn(post_attn_norm(x))   ffn = down(silu(gate(h)) * up(h))
 *   logits = output(output_norm(x))
 *
 * Every op computes token t the same way whatever the number of tokens in the call (the
 * GDN recurrence uses its step form for short calls), so a verify of B tokens reproduces B
 * decode steps exactly; only long prefills use the chunked GDN form. */
#include <string.h>

#include "model/graph_cache.h"
#include "model/qwen35.h"

#define L2NORM_EPS 1e-6f

#define OPS (be->ops)

static size_t ssm_bytes(const df_qwen35_hparams *hp) {
    return (size_t)(hp->n_v_head * hp->d_k * hp->d_v) * sizeof(float);
}

static size_t conv_state_bytes(const df_qwen35_hparams *hp) {
    return (size_t)((hp->conv_kernel - 1) * df_qwen35_conv_channels(hp)) * sizeof(float);
}

/* Whether the n_gdn per-layer buffers of arr are slices of one buffer, stride floats apart
 * (then the rollback moves all layers' rows with one copy). */
static bool one_buffer(float *const *arr, int n_gdn, int64_t stride) {
    const uintptr_t base = (uintptr_t)arr[0], step = (uintptr_t)stride * sizeof(float);
    for (int g = 1; g < n_gdn; g++)
        if ((uintptr_t)arr[g] != base + (uintptr_t)g * step) return false;
    return n_gdn > 0;
}

/* conv_saved: the call saved every layer's conv state already (forward_body). */
static df_status gdn_mixer(df_qwen35_state *s, int64_t l, int64_t T,
                           const df_qwen35_capture *cap, bool conv_saved) {
    const df_qwen35 *m = s->m;
    const df_qwen35_hparams *hp = &m->hp;
    const df_qwen35_layer *L = &m->layers[l];
    df_backend *be = m->be;
    const int64_t C = df_qwen35_conv_channels(hp);
    const int64_t qk = hp->n_k_head * hp->d_k, vd = hp->n_v_head * hp->d_v;
    const int gi = s->gdn_index[l];
    /* A replay capture takes the recurrence inputs where they are computed: no copies. */
    const bool replay = cap && cap->replay;
    float *qkv = replay ? cap->qkv_in[gi] : s->wide_a, *conv = replay ? cap->qkv[gi] : s->wide_b;
    float *gate = replay ? cap->gate[gi] : s->g, *beta = replay ? cap->beta[gi] : s->beta;
    float *z = s->mid_a, *core = s->mid_b;
    /* the recurrent state is saved by the recurrence itself (state_save, below) */
    if (replay && !conv_saved) DF_TRY(OPS->copy(be, cap->conv_before[gi], s->conv[l], conv_state_bytes(hp)));

    const df_weight *in_w[4] = {&L->wqkv, &L->wgate, &L->wbeta, &L->walpha};
    float *const in_y[4] = {qkv, z, s->gate_b, s->gate_a};
    DF_TRY(df_backend_matmuls(be, s->h, T, 4, in_w, in_y));

    float *conv_cap = cap && cap->gdn ? cap->conv_state[gi] : NULL;
    DF_TRY(OPS->conv1d_silu(be, qkv, C, T, C, L->conv1d.data, hp->conv_kernel, s->conv[l], conv,
                            C, conv_cap));

    df_heads q = {conv, T, hp->n_k_head, hp->d_k, C, hp->d_k};
    df_heads k = {conv + qk, T, hp->n_k_head, hp->d_k, C, hp->d_k};
    df_heads v = {conv + 2 * qk, T, hp->n_v_head, hp->d_v, C, hp->d_v};
    DF_TRY(OPS->l2norm_heads(be, &q, L2NORM_EPS));
    DF_TRY(OPS->l2norm_heads(be, &k, L2NORM_EPS));
    DF_TRY(OPS->gdn_gates(be, s->gate_a, s->gate_b, L->dt_bias.data, L->ssm_a.data, T,
                          hp->n_v_head, gate, beta));

    df_gdn_args args = {
        .q = q, .k = k, .v = v, .g = gate, .beta = beta, .state = s->ssm[l],
        .out = {core, T, hp->n_v_head, hp->d_v, vd, hp->d_v},
        .capture = cap && cap->gdn ? cap->gdn_state[gi] : NULL,
        .capture_type = cap ? cap->state_type : DF_STATE_F32,
        .head_map = DF_GDN_HEADS_TILED,
        .q_scale = 0.0f,
        .state_save = replay ? cap->ssm_before[gi] : NULL,
    };
    if (T >= s->gdn_chunked_min) DF_TRY(OPS->gdn_chunked(be, &args));
    else DF_TRY(OPS->gdn_recurrent(be, &args));

    DF_TRY(OPS->rmsnorm_gated(be, core, hp->d_v, z, hp->d_v, core, hp->d_v, T * hp->n_v_head,
                              hp->d_v, L->ssm_norm.data, hp->rms_eps));
    return OPS->matmul(be, core, T, &L->ssm_out, s->proj);
}

static df_status attention_mixer(df_qwen35_state *s, int64_t l, int64_t T) {
    const df_qwen35 *m = s->m;
    const df_qwen35_hparams *hp = &m->hp;
    const df_qwen35_layer *L = &m->layers[l];
    df_backend *be = m->be;
    const int64_t D = hp->head_dim, H = hp->n_head, Hkv = hp->n_head_kv;
    float *qg = s->wide_a, *kbuf = s->wide_b, *vbuf = s->mid_a, *out = s->mid_b;

    const df_weight *qkv_w[3] = {&L->wq, &L->wk, &L->wv};
    float *const qkv_y[3] = {qg, kbuf, vbuf};
    DF_TRY(df_backend_matmuls(be, s->h, T, 3, qkv_w, qkv_y));

    /* Per head the q projection holds [q | gate]. */
    df_heads q = {qg, T, H, D, 2 * H * D, 2 * D};
    df_heads gate = {qg + D, T, H, D, 2 * H * D, 2 * D};
    df_heads k = {kbuf, T, Hkv, D, Hkv * D, D};
    df_heads v = {vbuf, T, Hkv, D, Hkv * D, D};
    DF_TRY(OPS->rmsnorm_heads(be, &q, L->q_norm.data, hp->rms_eps));
    DF_TRY(OPS->rmsnorm_heads(be, &k, L->k_norm.data, hp->rms_eps));
    DF_TRY(OPS->rope(be, &q, s->pos, m->inv_freq, hp->rot_dim));
    DF_TRY(OPS->rope(be, &k, s->pos, m->inv_freq, hp->rot_dim));

    df_attn_args args = {
        .q = q, .gate = &gate, .k_new = &k, .v_new = &v, .cache = &s->kv[l],
        .pos0 = s->n_past, .pos = s->pos, .causal = true, .scale = 0.0f,
        .out = {out, T, H, D, H * D, D},
    };
    DF_TRY(OPS->attention(be, &args));
    return OPS->matmul(be, out, T, &L->wo, s->proj);
}

static df_status ffn(df_qwen35_state *s, int64_t l, int64_t T) {
    const df_qwen35 *m = s->m;
    const df_qwen35_layer *L = &m->layers[l];
    df_backend *be = m->be;
    const int64_t F = m->hp.n_ff;
    const df_weight *ffn_w[2] = {&L->ffn_gate, &L->ffn_up};
    float *const ffn_y[2] = {s->wide_a, s->wide_b};
    DF_TRY(df_backend_matmuls(be, s->h, T, 2, ffn_w, ffn_y));
    DF_TRY(OPS->swiglu(be, s->wide_a, s->wide_b, s->wide_a, T * F));
    return OPS->matmul(be, s->wide_a, T, &L->ffn_down, s->proj);
}

typedef struct forward_call {
    df_qwen35_state *s;
    int64_t T;
    df_logits_mode mode;
    const df_qwen35_capture *cap;
} forward_call;

static df_status forward_body(void *call);

/* What a recording of this forward bakes in: token count, logits mode and the capture
 * buffers (the state's own buffers are the cache's, which lives in the state). 0: do not
 * record (long calls take other kernels: the chunked GDN form, cuBLAS). The capture's
 * per-layer arrays are allocated once per speculative session and never refilled, so their
 * addresses and first entries identify them. */
static int graph_key(const forward_call *c, uintptr_t key[DF_GRAPH_KEY_WORDS]) {
    const df_qwen35_capture *cap = c->cap;
    if (c->T > DF_QWEN35_GRAPH_MAX_TOKENS || c->T >= c->s->gdn_chunked_min) return 0;
    if (cap && 8 + 2 * cap->n_hidden > DF_GRAPH_KEY_WORDS) return 0;
    int n = 0;
    key[n++] = (uintptr_t)c->T;
    key[n++] = (uintptr_t)c->mode;
    key[n++] = cap ? 1 + (uintptr_t)cap->n_hidden : 0;
    if (!cap) return n;
    key[n++] = (uintptr_t)cap->gdn | (uintptr_t)cap->replay << 1;
    key[n++] = (uintptr_t)cap->state_type;
    key[n++] = cap->replay ? (uintptr_t)cap->qkv_in : (uintptr_t)cap->gdn_state;
    key[n++] = cap->gdn && cap->gdn_state ? (uintptr_t)cap->gdn_state[0]
               : cap->replay && cap->qkv_in ? (uintptr_t)cap->qkv_in[0] : 0;
    key[n++] = cap->gdn && cap->conv_state ? (uintptr_t)cap->conv_state[0]
               : cap->replay && cap->ssm_before ? (uintptr_t)cap->ssm_before[0] : 0;
    for (int i = 0; i < cap->n_hidden; i++) {
        key[n++] = (uintptr_t)cap->hidden_layers[i];
        key[n++] = (uintptr_t)cap->hidden[i];
    }
    return n;
}

df_status df_qwen35_forward(df_qwen35_state *s, const int32_t *ids, int64_t T,
                            df_logits_mode mode, const df_qwen35_capture *cap) {
    const df_qwen35 *m = s->m;
    const df_qwen35_hparams *hp = &m->hp;
    df_backend *be = m->be;
    if (T <= 0 || T > s->max_batch)
        return df_fail(DF_ERR_INVALID, "qwen35 forward: %lld tokens (the state takes 1..%lld)",
                       (long long)T, (long long)s->max_batch);
    if (s->n_past + T > s->n_ctx)
        return df_fail(DF_ERR_INVALID, "qwen35 forward: context full (%lld + %lld > %lld tokens)",
                       (long long)s->n_past, (long long)T, (long long)s->n_ctx);
    if (mode == DF_LOGITS_ALL && T > s->logit_rows)
        return df_fail(DF_ERR_INVALID, "qwen35 forward: logits for %lld tokens asked, at most %lld",
                       (long long)T, (long long)s->logit_rows);
    if (cap && cap->replay && (cap->gdn || T >= s->gdn_chunked_min))
        return df_fail(DF_ERR_INVALID, "qwen35 forward: a replay capture is for calls of fewer than "
                       "%lld tokens (the recurrent form, which the replay repeats) without per-token "
                       "states; this call has %lld", (long long)s->gdn_chunked_min, (long long)T);
    for (int64_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= hp->n_vocab)
            return df_fail(DF_ERR_INVALID, "qwen35 forward: token id %d outside the vocabulary (%lld)",
                           ids[t], (long long)hp->n_vocab);

    int32_t pos_host[DF_QWEN35_MAX_LOGIT_ROWS];
    DF_TRY(OPS->upload(be, s->ids, ids, (size_t)T * sizeof(int32_t)));
    for (int64_t t0 = 0; t0 < T; t0 += DF_QWEN35_MAX_LOGIT_ROWS) {
        int64_t n = T - t0 < DF_QWEN35_MAX_LOGIT_ROWS ? T - t0 : DF_QWEN35_MAX_LOGIT_ROWS;
        for (int64_t i = 0; i < n; i++) pos_host[i] = (int32_t)(s->n_past + t0 + i);
        DF_TRY(OPS->upload(be, s->pos + t0, pos_host, (size_t)n * sizeof(int32_t)));
    }
    forward_call call = {s, T, mode, cap};
    uintptr_t key[DF_GRAPH_KEY_WORDS];
    const int n_key = graph_key(&call, key);
    if (n_key > 0) DF_TRY(df_graph_cache_run(s->graphs, key, n_key, forward_body, &call));
    else DF_TRY(forward_body(&call));
    s->n_past += T;
    return DF_OK;
}

/* Everything after the uploads. It must not depend on n_past except through the position
 * buffer (attention's pos0 is checked on the host but read from s->pos where it matters), so
 * that a recording of it replays at any position. */
static df_status forward_body(void *call) {
    const forward_call *c = call;
    df_qwen35_state *s = c->s;
    const int64_t T = c->T;
    const df_logits_mode mode = c->mode;
    const df_qwen35_capture *cap = c->cap;
    const df_qwen35 *m = s->m;
    const df_qwen35_hparams *hp = &m->hp;
    df_backend *be = m->be;
    const int64_t E = hp->n_embd;
    DF_TRY(OPS->get_rows(be, &m->tok_embd, s->ids, T, s->x));
    /* A replay capture keeps every GDN layer's conv state from before the call: one copy
     * when its buffers are one (the speculative session's are), else one per layer. */
    const int64_t conv_n = (int64_t)(conv_state_bytes(hp) / sizeof(float));
    const bool conv_saved = cap && cap->replay && one_buffer(cap->conv_before, s->n_gdn, conv_n);
    if (conv_saved)
        DF_TRY(OPS->copy(be, cap->conv_before[0], s->conv_all, (size_t)s->n_gdn * conv_state_bytes(hp)));

    for (int64_t l = 0; l < hp->n_layer; l++) {
        const df_qwen35_layer *L = &m->layers[l];
        DF_TRY(OPS->rmsnorm(be, s->x, E, s->h, E, T, E, L->attn_norm.data, hp->rms_eps));
        if (L->kind == DF_LAYER_GDN) DF_TRY(gdn_mixer(s, l, T, cap, conv_saved));
        else DF_TRY(attention_mixer(s, l, T));
        DF_TRY(OPS->add(be, s->x, s->proj, s->x, T * E));
        DF_TRY(OPS->rmsnorm(be, s->x, E, s->h, E, T, E, L->post_attn_norm.data, hp->rms_eps));
        DF_TRY(ffn(s, l, T));
        DF_TRY(OPS->add(be, s->x, s->proj, s->x, T * E));
        /* Capture layer ids are matched in any order; usually few and ascending. */
        if (cap)
            for (int i = 0; i < cap->n_hidden; i++)
                if (cap->hidden_layers[i] == l) {
                    DF_TRY(OPS->copy(be, cap->hidden[i], s->x, (size_t)(T * E) * sizeof(float)));
                }
    }
    if (mode == DF_LOGITS_NONE) return DF_OK;
    const int64_t first = mode == DF_LOGITS_LAST ? T - 1 : 0;
    const int64_t rows = T - first;
    DF_TRY(OPS->rmsnorm(be, s->x + first * E, E, s->h, E, rows, E, m->output_norm.data,
                        hp->rms_eps));
    DF_TRY(OPS->matmul(be, s->h, rows, &m->output, s->logits));
    return OPS->argmax_rows(be, s->logits, rows, hp->n_vocab, hp->n_vocab, s->argmax);
}

/* ---- rollback after a verify ---- */

typedef struct rollback_call {
    df_qwen35_state *s;
    df_qwen35_capture *cap;
    int64_t n;
} rollback_call;

/* Replay: the conv state from the saved rows and the n tokens' inputs, the recurrent state
 * from the saved one, then the recurrence of the n tokens again (df_qwen35_replay). */
static df_status replay_body(void *call) {
    const rollback_call *c = call;
    df_qwen35_state *s = c->s;
    df_qwen35_capture *cap = c->cap;
    const int64_t n = c->n;
    const df_qwen35_hparams *hp = &s->m->hp;
    df_backend *be = s->m->be;
    const int64_t C = df_qwen35_conv_channels(hp), keep = hp->conv_kernel - 1;
    const int64_t qk = hp->n_k_head * hp->d_k, vd = hp->n_v_head * hp->d_v;
    const size_t row = (size_t)C * sizeof(float), conv_pitch = (size_t)keep * row;
    /* The conv state is the last K-1 inputs: of the saved rows, those the n tokens did not
     * push out, then the newest of the n tokens' inputs. With each kind of buffer one buffer
     * (the speculative session's), two strided copies do it for every layer. */
    const int64_t from_old = keep > n ? keep - n : 0, from_new = keep - from_old;
    const uintptr_t in_gap = s->n_gdn > 1 ? (uintptr_t)cap->qkv_in[1] - (uintptr_t)cap->qkv_in[0] : 0;
    const int64_t in_stride = in_gap % sizeof(float) || in_gap > ((uintptr_t)1 << 40) ? 0 : (int64_t)(in_gap / sizeof(float));
    const bool batched = one_buffer(cap->conv_before, s->n_gdn, keep * C) && in_stride >= n * C &&
                         one_buffer(cap->qkv_in, s->n_gdn, in_stride);
    if (batched) {
        if (from_old)
            DF_TRY(OPS->copy_2d(be, s->conv_all, conv_pitch, cap->conv_before[0] + (keep - from_old) * C, conv_pitch,
                                (size_t)from_old * row, (size_t)s->n_gdn));
        DF_TRY(OPS->copy_2d(be, s->conv_all + from_old * C, conv_pitch, cap->qkv_in[0] + (n - from_new) * C,
                            (size_t)in_stride * sizeof(float), (size_t)from_new * row, (size_t)s->n_gdn));
    }
    for (int64_t l = 0; l < hp->n_layer; l++) {
        const int gi = s->gdn_index[l];
        if (gi < 0) continue;
        if (!batched && from_old)
            DF_TRY(OPS->copy(be, s->conv[l], cap->conv_before[gi] + (keep - from_old) * C,
                             (size_t)from_old * row));
        if (!batched)
            DF_TRY(OPS->copy(be, s->conv[l] + from_old * C, cap->qkv_in[gi] + (n - from_new) * C,
                             (size_t)from_new * row));
        /* The saved state becomes the live one. Unrecorded, by swapping the two buffers (the
         * one the forward ran to the end of the call is free for the next save); a recorded
         * forward has the state's addresses baked in, so with graphs the recurrence reads the
         * saved state (state_in) and writes the live one. */
        const float *from = NULL;
        if (s->graphs) {
            from = cap->ssm_before[gi];
        } else {
            float *live = s->ssm[l];
            s->ssm[l] = cap->ssm_before[gi];
            cap->ssm_before[gi] = live;
        }
        /* The recurrence over the same q, k, v, gate and beta, in the same kernel as the
         * forward: the state after token n-1 comes out bit for bit. Its outputs go to scratch
         * (the forward already produced them). */
        float *conv = cap->qkv[gi];
        df_gdn_args args = {
            .q = {conv, n, hp->n_k_head, hp->d_k, C, hp->d_k},
            .k = {conv + qk, n, hp->n_k_head, hp->d_k, C, hp->d_k},
            .v = {conv + 2 * qk, n, hp->n_v_head, hp->d_v, C, hp->d_v},
            .g = cap->gate[gi], .beta = cap->beta[gi], .state = s->ssm[l],
            .out = {s->mid_b, n, hp->n_v_head, hp->d_v, vd, hp->d_v},
            .capture = NULL, .capture_type = DF_STATE_F32,
            .head_map = DF_GDN_HEADS_TILED,
            .q_scale = 0.0f,
            .state_in = from,
        };
        /* The forward took the recurrent form for calls shorter than gdn_chunked_min; a
         * replay is always shorter than the call it replays. */
        DF_TRY(OPS->gdn_recurrent(be, &args));
    }
    return DF_OK;
}

/* Capture: token n-1's recurrent and conv state, copied back from the per-token capture. */
static df_status restore_body(void *call) {
    const rollback_call *c = call;
    df_qwen35_state *s = c->s;
    const df_qwen35_capture *cap = c->cap;
    const df_qwen35_hparams *hp = &s->m->hp;
    df_backend *be = s->m->be;
    const size_t ssm_n = ssm_bytes(hp) / sizeof(float), conv_n = conv_state_bytes(hp) / sizeof(float);
    const size_t elem = cap->state_type == DF_STATE_F16 ? 2 : 4;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        const int gi = s->gdn_index[l];
        if (gi < 0) continue;
        const char *ssm = (const char *)cap->gdn_state[gi] + (size_t)(c->n - 1) * ssm_n * elem;
        DF_TRY(OPS->state_to_f32(be, s->ssm[l], ssm, cap->state_type, (int64_t)ssm_n));
        DF_TRY(OPS->copy(be, s->conv[l], cap->conv_state[gi] + (size_t)(c->n - 1) * conv_n,
                         conv_n * sizeof(float)));
    }
    return DF_OK;
}

/* Key words of a rollback recording: a tag no forward key starts with (those start with a
 * token count), the kind, n and the capture's buffers (allocated once per session). */
#define ROLLBACK_KEY_TAG ((uintptr_t)0x524f4c4cu)

static df_status rollback(df_qwen35_state *s, df_qwen35_capture *cap, int64_t n) {
    rollback_call call = {s, cap, n};
    df_status (*body)(void *) = cap->replay ? replay_body : restore_body;
    uintptr_t key[6] = {ROLLBACK_KEY_TAG, (uintptr_t)cap->replay, (uintptr_t)n, (uintptr_t)cap->state_type,
                        cap->replay ? (uintptr_t)cap->ssm_before[0] : (uintptr_t)cap->gdn_state[0],
                        cap->replay ? (uintptr_t)cap->qkv_in[0] : (uintptr_t)cap->conv_state[0]};
    return df_graph_cache_run(s->graphs, key, 6, body, &call);
}

df_status df_qwen35_replay(df_qwen35_state *s, df_qwen35_capture *cap, int64_t n) {
    if (!cap || !cap->replay)
        return df_fail(DF_ERR_INVALID, "qwen35 replay: the capture kept no replay inputs");
    if (n < 1 || n > s->max_batch)
        return df_fail(DF_ERR_INVALID, "qwen35 replay: %lld tokens (1..%lld)", (long long)n,
                       (long long)s->max_batch);
    return rollback(s, cap, n);
}

df_status df_qwen35_restore_capture(df_qwen35_state *s, df_qwen35_capture *cap, int64_t n) {
    if (!cap || !cap->gdn || !cap->gdn_state || !cap->conv_state)
        return df_fail(DF_ERR_INVALID, "qwen35 restore: the capture kept no per-token states");
    if (n < 1 || n > s->max_batch)
        return df_fail(DF_ERR_INVALID, "qwen35 restore: token %lld of a call (1..%lld)", (long long)n,
                       (long long)s->max_batch);
    return rollback(s, cap, n);
}

df_status df_qwen35_prefill(df_qwen35_state *s, const int32_t *ids, size_t n,
                            const df_qwen35_capture *capture,
                            df_status (*on_chunk)(void *ctx, int64_t n_tokens), void *ctx) {
    for (size_t i = 0; i < n;) {
        size_t chunk = n - i < (size_t)s->max_batch ? n - i : (size_t)s->max_batch;
        bool last = i + chunk == n;
        DF_TRY(df_qwen35_forward(s, ids + i, (int64_t)chunk, last ? DF_LOGITS_LAST : DF_LOGITS_NONE,
                                 capture));
        if (on_chunk) DF_TRY(on_chunk(ctx, (int64_t)chunk));
        i += chunk;
    }
    return DF_OK;
}
