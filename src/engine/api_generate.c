/* Sessions and the public generation entry points (the loop is engine/generate.c). */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/generate.h"

dflash_session_params dflash_session_default_params(void) {
    dflash_session_params p = {.n_ctx = 0, .max_batch = 0, .kv_f32 = false, .block_size = 0,
                               .no_spec = false, .capture_f16 = false, .n_threads = 0, .sync_phases = false};
    return p;
}

int dflash_session_create(dflash_model *m, const dflash_session_params *p, dflash_session **out) {
    *out = NULL;
    int64_t n_ctx = p->n_ctx > 0 ? p->n_ctx : m->target->hp.n_ctx_train;
    if (p->n_ctx <= 0 && n_ctx > 4096) n_ctx = 4096;
    int64_t max_batch = p->max_batch > 0 ? p->max_batch : 256;
    if (max_batch > n_ctx) max_batch = n_ctx;
    dflash_session *s = calloc(1, sizeof *s);
    if (!s) return df_fail(DF_ERR_NOMEM, "session: out of memory");
    s->m = m;
    df_backend *be = m->be;
    df_status st = DF_OK;
    if (p->n_threads > 0 && be->ops->lane_create)
        st = be->ops->lane_create(be, p->n_threads, &s->lane);
    if (st == DF_OK)
        st = df_qwen35_state_create(m->target, n_ctx, max_batch, p->kv_f32 ? DF_KV_F32 : DF_KV_F16,
                                    &s->st);
    if (st == DF_OK && m->draft && !p->no_spec) {
        int64_t block = p->block_size > 0 ? p->block_size
                                          : df_spec_default_block(be, (int)m->draft->hp.block_size);
        if (block > m->draft->hp.block_size)
            st = df_fail(DF_ERR_INVALID, "block size %lld is larger than the drafter's %lld",
                         (long long)block, (long long)m->draft->hp.block_size);
        if (st == DF_OK) st = df_dflash_drafter_create(m->draft, m->target, n_ctx, block, &s->drafter);
        if (st == DF_OK) st = df_spec_create(s->st, &s->drafter->base, (int)block,
                                             p->capture_f16 ? DF_STATE_F16 : DF_STATE_F32, &s->spec);
        if (st == DF_OK) s->spec->sync_phases = p->sync_phases;
    }
    if (st != DF_OK) {
        dflash_session_free(s);
        return (int)st;
    }
    *out = s;
    return 0;
}

void dflash_session_free(dflash_session *s) {
    if (!s) return;
    df_spec_free(s->spec);
    df_dflash_drafter_free(s->drafter);
    df_qwen35_state_free(s->st);
    if (s->lane) s->m->be->ops->lane_free(s->m->be, s->lane);
    free(s);
}

bool dflash_session_is_independent(const dflash_session *s) { return s->lane != NULL; }

/* Runs the calling thread's ops on the session's own lane for the length of a call. */
static void lane_enter(dflash_session *s) {
    if (s->lane) s->m->be->ops->lane_bind(s->m->be, s->lane);
}

static void lane_leave(dflash_session *s) {
    if (s->lane) s->m->be->ops->lane_bind(s->m->be, NULL);
}

int dflash_session_reset(dflash_session *s) {
    lane_enter(s);
    if (s->drafter) s->drafter->base.reset(s->drafter->base.self);
    int rc = (int)df_qwen35_state_reset(s->st);
    lane_leave(s);
    return rc;
}

dflash_gen_params dflash_gen_default_params(void) {
    dflash_gen_params p = {.n_predict = 128, .temperature = 0.0f, .top_k = 0, .top_p = 1.0f,
                           .min_p = 0.0f, .seed = 0, .stop = NULL, .n_stop = 0,
                           .ignore_eos = false};
    return p;
}

int dflash_generate(dflash_session *s, const int32_t *prompt, size_t n_prompt,
                    const dflash_gen_params *p, dflash_token_fn cb, void *user,
                    dflash_gen_stats *stats) {
    dflash_gen_stats local;
    df_gen_request r = {.prompt = prompt, .n_prompt = n_prompt, .p = p, .cb = cb, .user = user,
                        .tok = s->m->tok, .eog = s->m->eog, .n_eog = s->m->n_eog};
    lane_enter(s);
    int rc = (int)df_generate(s->st, s->spec, &r, stats ? stats : &local);
    lane_leave(s);
    return rc;
}

int dflash_generate_text(dflash_session *s, const char *prompt, const dflash_gen_params *p,
                         dflash_token_fn cb, void *user, dflash_gen_stats *stats) {
    int32_t *ids;
    size_t n;
    int rc = dflash_tokenize(s->m, prompt, strlen(prompt), true, &ids, &n);
    if (rc != 0) return rc;
    rc = dflash_generate(s, ids, n, p, cb, user, stats);
    free(ids);
    return rc;
}
