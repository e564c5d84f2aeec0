#include "engine/spec.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t ssm_elems(const df_qwen35_hparams *hp) {
    return (size_t)(hp->n_v_head * hp->d_k * hp->d_v);
}

static size_t conv_elems(const df_qwen35_hparams *hp) {
    return (size_t)((hp->conv_kernel - 1) * df_qwen35_conv_channels(hp));
}

/* The CPU backend, whose verify is compute-bound: it takes a shorter default block (spec.h). */
static bool on_cpu(const df_backend *be) { return be->ops->name && !strcmp(be->ops->name, "cpu"); }

/* Replay wherever the states are f32 (see spec.h): the per-token states of a verify cost more
 * to write than the accepted tokens cost to run again, on a CPU and on a GPU. f16 states
 * exist only as captures. */
static df_spec_rollback choose_rollback(df_state_type state_type) {
    const char *env = getenv("DFLASH_SPEC_ROLLBACK");
    if (env && !strcmp(env, "capture")) return DF_ROLLBACK_CAPTURE;
    if (env && !strcmp(env, "replay")) return DF_ROLLBACK_REPLAY;
    return state_type == DF_STATE_F32 ? DF_ROLLBACK_REPLAY : DF_ROLLBACK_CAPTURE;
}

int df_spec_default_block(const df_backend *be, int drafter_block) {
    return on_cpu(be) && drafter_block > DF_SPEC_CPU_BLOCK ? DF_SPEC_CPU_BLOCK : drafter_block;
}

/* n_gdn backend buffers of `bytes` each, in a NULL-terminated array (typed: a float ** is
 * not written through a void ** here). */
static df_status alloc_f32_layers(df_backend *be, int n_gdn, size_t bytes, float ***out) {
    float **arr = calloc((size_t)n_gdn + 1, sizeof *arr);
    *out = arr;
    if (!arr) return df_fail(DF_ERR_NOMEM, "speculative decoding: out of memory");
    for (int g = 0; g < n_gdn; g++) {
        void *p;
        DF_TRY(be->ops->alloc(be, bytes, &p));
        arr[g] = p;
    }
    return DF_OK;
}

/* The same as one buffer, layer after layer (arr[g] = arr[0] + g * bytes): what the model
 * copies for all layers at once (the saved conv states, the conv inputs: qwen35_forward.c). */
static df_status alloc_f32_slices(df_backend *be, int n_gdn, size_t bytes, float ***out) {
    float **arr = calloc((size_t)n_gdn + 1, sizeof *arr);
    *out = arr;
    if (!arr) return df_fail(DF_ERR_NOMEM, "speculative decoding: out of memory");
    if (n_gdn == 0) return DF_OK;
    void *p;
    DF_TRY(be->ops->alloc(be, bytes * (size_t)n_gdn, &p));
    for (int g = 0; g < n_gdn; g++) arr[g] = (float *)((char *)p + (size_t)g * bytes);
    return DF_OK;
}

static df_status alloc_rollback(df_spec *sp, int block) {
    const df_qwen35_state *st = sp->st;
    const df_qwen35_hparams *hp = &st->m->hp;
    df_backend *be = st->m->be;
    const int n = st->n_gdn;
    const size_t f = sizeof(float), B = (size_t)block;
    if (sp->rollback == DF_ROLLBACK_CAPTURE) {
        const size_t elem = sp->state_type == DF_STATE_F16 ? 2 : 4;
        sp->gdn_state = calloc((size_t)n + 1, sizeof *sp->gdn_state);
        if (!sp->gdn_state) return df_fail(DF_ERR_NOMEM, "speculative decoding: out of memory");
        for (int g = 0; g < n; g++) DF_TRY(be->ops->alloc(be, B * ssm_elems(hp) * elem, &sp->gdn_state[g]));
        return alloc_f32_layers(be, n, B * conv_elems(hp) * f, &sp->conv_state);
    }
    const size_t C = (size_t)df_qwen35_conv_channels(hp), H = (size_t)hp->n_v_head;
    DF_TRY(alloc_f32_layers(be, n, ssm_elems(hp) * f, &sp->rp_ssm));
    DF_TRY(alloc_f32_slices(be, n, conv_elems(hp) * f, &sp->rp_conv));
    DF_TRY(alloc_f32_slices(be, n, B * C * f, &sp->rp_qkv_in));
    DF_TRY(alloc_f32_layers(be, n, B * C * f, &sp->rp_qkv));
    DF_TRY(alloc_f32_layers(be, n, B * H * f, &sp->rp_gate));
    return alloc_f32_layers(be, n, B * H * f, &sp->rp_beta);
}

static void free_f32_layers(df_backend *be, int n_gdn, float **bufs) {
    if (!bufs) return;
    for (int g = 0; g < n_gdn; g++)
        if (bufs[g]) be->ops->free(be, bufs[g]);
    free(bufs);
}

static void free_f32_slices(df_backend *be, float **bufs) {
    if (!bufs) return;
    if (bufs[0]) be->ops->free(be, bufs[0]);
    free(bufs);
}

df_status df_spec_create(df_qwen35_state *st, df_drafter *d, int block, df_state_type state_type,
                         df_spec **out) {
    *out = NULL;
    const df_qwen35 *m = st->m;
    const df_qwen35_hparams *hp = &m->hp;
    df_backend *be = m->be;
    if (block < 2 || block > d->block_size || block > DF_SPEC_MAX_BLOCK || block > st->max_batch)
        return df_fail(DF_ERR_INVALID,
                       "speculative decoding: block size %d must be in 2..%d (the drafter's block, "
                       "at most %d and the state's batch of %lld)",
                       block, d->block_size, DF_SPEC_MAX_BLOCK, (long long)st->max_batch);
    if (d->n_features < 1 || d->n_features > DF_SPEC_MAX_FEATURES)
        return df_fail(DF_ERR_INVALID, "speculative decoding: drafter reads %d target layers", d->n_features);
    for (int i = 0; i < d->n_features; i++)
        if (d->feature_layers[i] < 0 || d->feature_layers[i] >= hp->n_layer)
            return df_fail(DF_ERR_MISMATCH, "drafter reads target layer %d; the target has %lld layers",
                           d->feature_layers[i], (long long)hp->n_layer);
    df_spec *sp = calloc(1, sizeof *sp);
    if (!sp) return df_fail(DF_ERR_NOMEM, "speculative decoding: out of memory");
    sp->st = st;
    sp->d = d;
    sp->block = block;
    sp->state_type = state_type;
    sp->rollback = choose_rollback(state_type);
    df_status rc = DF_OK;
    for (int i = 0; i < d->n_features && rc == DF_OK; i++)
        rc = be->ops->alloc(be, (size_t)(st->max_batch * hp->n_embd) * sizeof(float), (void **)&sp->hidden[i]);
    if (rc == DF_OK) rc = alloc_rollback(sp, block);
    if (rc != DF_OK) {
        df_spec_free(sp);
        return rc;
    }
    sp->cap_features = (df_qwen35_capture){.n_hidden = d->n_features, .hidden_layers = d->feature_layers,
                                           .hidden = sp->hidden};
    sp->cap_verify = sp->cap_features;
    if (sp->rollback == DF_ROLLBACK_REPLAY) {
        sp->cap_verify.replay = true;
        sp->cap_verify.ssm_before = sp->rp_ssm;
        sp->cap_verify.conv_before = sp->rp_conv;
        sp->cap_verify.qkv_in = sp->rp_qkv_in;
        sp->cap_verify.qkv = sp->rp_qkv;
        sp->cap_verify.gate = sp->rp_gate;
        sp->cap_verify.beta = sp->rp_beta;
    } else {
        sp->cap_verify.gdn = true;
        sp->cap_verify.gdn_state = sp->gdn_state;
        sp->cap_verify.conv_state = sp->conv_state;
        sp->cap_verify.state_type = state_type;
    }
    *out = sp;
    return DF_OK;
}

void df_spec_free(df_spec *sp) {
    if (!sp) return;
    df_backend *be = sp->st->m->be;
    const int n = sp->st->n_gdn;
    for (int i = 0; i < DF_SPEC_MAX_FEATURES; i++)
        if (sp->hidden[i]) be->ops->free(be, sp->hidden[i]);
    if (sp->gdn_state)
        for (int g = 0; g < n; g++)
            if (sp->gdn_state[g]) be->ops->free(be, sp->gdn_state[g]);
    free(sp->gdn_state);
    /* after replays rp_ssm holds some of the state's original buffers and the state some of
     * these: each side frees what it holds (df_qwen35_replay) */
    float **f32[] = {sp->conv_state, sp->rp_ssm, sp->rp_qkv, sp->rp_gate, sp->rp_beta};
    for (size_t i = 0; i < sizeof f32 / sizeof f32[0]; i++) free_f32_layers(be, n, f32[i]);
    free_f32_slices(be, sp->rp_conv);
    free_f32_slices(be, sp->rp_qkv_in);
    free(sp);
}

static df_status feed_drafter(void *ctx, int64_t n_tokens) {
    df_spec *sp = ctx;
    return sp->d->append_context(sp->d->self, sp->hidden, n_tokens);
}

df_status df_spec_prefill(df_spec *sp, const int32_t *ids, size_t n) {
    return df_qwen35_prefill(sp->st, ids, n, &sp->cap_features, feed_drafter, sp);
}

df_status df_spec_verify(df_spec *sp, int32_t bonus, int *n_match) {
    df_qwen35_state *st = sp->st;
    const int B = sp->block;
    if (st->n_past + B > st->n_ctx)
        return df_fail(DF_ERR_INVALID, "speculative decoding: no room for a block of %d at %lld of %lld tokens",
                       B, (long long)st->n_past, (long long)st->n_ctx);
    double t0 = now_s();
    sp->tokens[0] = bonus;
    DF_TRY(sp->d->propose(sp->d->self, bonus, B - 1, sp->tokens + 1));
    double t1 = now_s();
    sp->verify_base = st->n_past;
    DF_TRY(df_qwen35_forward(st, sp->tokens, B, DF_LOGITS_ALL, &sp->cap_verify));
    /* The target's own tokens: the only thing a verify reads back from the backend. */
    DF_TRY(sp->st->m->be->ops->download(sp->st->m->be, sp->target, st->argmax, (size_t)B * sizeof(int32_t)));
    double t2 = now_s();
    int k = 0;
    while (k < B - 1 && sp->tokens[k + 1] == sp->target[k]) k++;
    *n_match = k;
    sp->stats.n_verify++;
    sp->stats.t_draft += t1 - t0;
    sp->stats.t_verify += t2 - t1;
    return DF_OK;
}

df_status df_spec_commit(df_spec *sp, int n) {
    df_qwen35_state *st = sp->st;
    if (n < 1 || n > sp->block)
        return df_fail(DF_ERR_INVALID, "speculative decoding: cannot commit %d of %d tokens", n, sp->block);
    double t0 = now_s();
    st->n_past = sp->verify_base + n;
    if (n < sp->block && sp->rollback == DF_ROLLBACK_REPLAY) {
        /* The live state ran to the end of the block: run the first n tokens again from the
         * state the verify started from. */
        DF_TRY(df_qwen35_replay(st, &sp->cap_verify, n));
    } else if (n < sp->block) {
        /* The live state ran to the end of the block: take token n-1's from the capture. */
        DF_TRY(df_qwen35_restore_capture(st, &sp->cap_verify, n));
    }
    DF_TRY(sp->d->append_context(sp->d->self, sp->hidden, n));
    /* The rollback and the drafter's commit are queued work on a GPU: without this wait
     * their time shows up in the next drafter step. */
    if (sp->sync_phases) DF_TRY(st->m->be->ops->sync(st->m->be));
    sp->stats.accept_hist[n - 1]++;
    sp->stats.n_accepted += n - 1;
    sp->stats.t_commit += now_s() - t0;
    return DF_OK;
}
