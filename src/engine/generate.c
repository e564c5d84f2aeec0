#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/sampling.h"
#include "model/graph_cache.h"
#include "engine/stop_strings.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct gen {
    const df_gen_request *r;
    df_detok_stream detok;
    df_stop_matcher stop;
    df_bytes piece;
    int32_t n_gen;
    dflash_stop_reason reason;
    float *logits; /* host copy of the logits row, for sampling (NULL when greedy) */
} gen;

static bool is_eog(const gen *g, int32_t tok) {
    if (g->r->p->ignore_eos) return false;
    for (int i = 0; i < g->r->n_eog; i++)
        if (g->r->eog[i] == tok) return true;
    return false;
}

/* Emits one generated token (already known not to be end-of-generation): detokenize, run
 * the stop strings, call back. Returns true when generation must end after it. */
static bool emit(gen *g, int32_t token, df_status *rc) {
    const df_gen_request *r = g->r;
    const char *text = "";
    size_t len = 0;
    bool done = false;
    g->n_gen++;
    if (r->tok) {
        df_bytes_clear(&g->piece);
        *rc = df_detok_stream_push(&g->detok, token, &g->piece);
        bool hit = false;
        if (*rc == DF_OK)
            *rc = df_stop_push(&g->stop, g->piece.data ? g->piece.data : "", g->piece.len, &text, &len, &hit);
        if (*rc != DF_OK) return true;
        if (hit) {
            g->reason = DFLASH_STOP_STRING;
            done = true;
        }
    }
    if (r->cb && r->cb(r->user, token, text, len) != 0) {
        g->reason = DFLASH_STOP_CALLBACK;
        done = true;
    }
    if (!done && r->p->n_predict >= 0 && g->n_gen >= r->p->n_predict) {
        g->reason = DFLASH_STOP_LENGTH;
        done = true;
    }
    return done;
}

/* At the end: what the detokenizer and the stop matcher still hold. */
static df_status finish(gen *g) {
    const df_gen_request *r = g->r;
    if (!r->tok || g->reason == DFLASH_STOP_STRING) return DF_OK;
    df_bytes_clear(&g->piece);
    DF_TRY(df_detok_stream_flush(&g->detok, &g->piece));
    const char *text;
    size_t len;
    bool hit = false;
    DF_TRY(df_stop_push(&g->stop, g->piece.data ? g->piece.data : "", g->piece.len, &text, &len, &hit));
    if (len && r->cb) r->cb(r->user, -1, text, len);
    if (!hit) {
        df_stop_flush(&g->stop, &text, &len);
        if (len && r->cb) r->cb(r->user, -1, text, len);
    }
    return DF_OK;
}

/* The greedy token of the last forward. The argmax and logits live in backend memory (a
 * GPU's, possibly): greedy decoding reads back one id, sampling one row of logits. */
static df_status last_argmax(df_qwen35_state *st, int32_t *tok) {
    df_backend *be = st->m->be;
    return be->ops->download(be, tok, st->argmax, sizeof *tok);
}

/* Autoregressive decoding from the logits the prefill left. */
static df_status decode_ar(df_qwen35_state *st, gen *g, df_sampler *sampler) {
    df_backend *be = st->m->be;
    for (;;) {
        if (g->r->p->n_predict >= 0 && g->n_gen >= g->r->p->n_predict) {
            g->reason = DFLASH_STOP_LENGTH;
            return DF_OK;
        }
        int32_t tok;
        if (df_sampler_is_greedy(sampler)) {
            DF_TRY(last_argmax(st, &tok));
        } else {
            DF_TRY(be->ops->download(be, g->logits, st->logits, (size_t)st->m->hp.n_vocab * sizeof(float)));
            DF_TRY(df_sampler_sample(sampler, g->logits, &tok));
        }
        if (is_eog(g, tok)) {
            g->reason = DFLASH_STOP_EOS;
            return DF_OK;
        }
        df_status rc = DF_OK;
        if (emit(g, tok, &rc)) return rc;
        if (st->n_past >= st->n_ctx) {
            g->reason = DFLASH_STOP_CONTEXT;
            return DF_OK;
        }
        DF_TRY(df_qwen35_forward(st, &tok, 1, DF_LOGITS_LAST, NULL));
    }
}

/* Chain speculative decoding (greedy) from the logits the prefill left. Tokens of a block
 * are emitted one by one with the same checks as AR, and only what was emitted (up to the
 * end-of-generation token, which is not) stays committed. When the context has no room for
 * a whole block, the rest runs AR. */
static df_status decode_spec(df_spec *sp, gen *g, df_sampler *greedy) {
    df_qwen35_state *st = sp->st;
    int32_t pending;
    DF_TRY(last_argmax(st, &pending));
    for (;;) {
        if (g->r->p->n_predict >= 0 && g->n_gen >= g->r->p->n_predict) {
            g->reason = DFLASH_STOP_LENGTH;
            return DF_OK;
        }
        if (is_eog(g, pending)) {
            g->reason = DFLASH_STOP_EOS;
            return DF_OK;
        }
        if (st->n_past + sp->block > st->n_ctx) {
            /* Finish autoregressively: the pending token goes through the AR loop. */
            df_status rc = DF_OK;
            if (emit(g, pending, &rc)) return rc;
            if (st->n_past >= st->n_ctx) {
                g->reason = DFLASH_STOP_CONTEXT;
                return DF_OK;
            }
            DF_TRY(df_qwen35_forward(st, &pending, 1, DF_LOGITS_LAST, NULL));
            return decode_ar(st, g, greedy);
        }
        int n_match;
        DF_TRY(df_spec_verify(sp, pending, &n_match));
        /* sp->tokens[0..n_match] are the target's own greedy tokens; emit them in order. */
        int keep = 0;
        bool done = false;
        df_status rc = DF_OK;
        for (int j = 0; j <= n_match && !done; j++) {
            int32_t tok = sp->tokens[j];
            if (j > 0 && is_eog(g, tok)) {
                g->reason = DFLASH_STOP_EOS;
                done = true;
                break;
            }
            keep = j + 1;
            done = emit(g, tok, &rc);
        }
        if (rc != DF_OK) return rc;
        DF_TRY(df_spec_commit(sp, keep));
        if (done) return DF_OK;
        pending = sp->target[n_match];
    }
}

df_status df_generate(df_qwen35_state *st, df_spec *spec, const df_gen_request *r,
                      dflash_gen_stats *stats) {
    const dflash_gen_params *p = r->p;
    memset(stats, 0, sizeof *stats);
    if (r->n_prompt == 0) return df_fail(DF_ERR_INVALID, "generate: empty prompt");
    if ((int64_t)r->n_prompt + st->n_past > st->n_ctx)
        return df_fail(DF_ERR_INVALID,
                       "generate: the prompt (%zu tokens) does not fit the context (%lld of %lld tokens free)",
                       r->n_prompt, (long long)(st->n_ctx - st->n_past), (long long)st->n_ctx);
    df_sampling_params sp = {.temperature = p->temperature, .top_k = p->top_k, .top_p = p->top_p,
                             .min_p = p->min_p, .seed = p->seed};
    df_sampler sampler;
    DF_TRY(df_sampler_init(&sampler, &sp, (int)st->m->hp.n_vocab));
    const bool use_spec = spec && df_sampler_is_greedy(&sampler);

    gen g = {.r = r, .reason = DFLASH_STOP_LENGTH};
    if (!df_sampler_is_greedy(&sampler)) {
        g.logits = malloc((size_t)st->m->hp.n_vocab * sizeof(float));
        if (!g.logits) {
            df_sampler_free(&sampler);
            return df_fail(DF_ERR_NOMEM, "generate: out of memory");
        }
    }
    if (r->tok) df_detok_stream_init(&g.detok, r->tok, 0);
    df_stop_init(&g.stop, p->stop, p->n_stop);
    df_spec_stats before = use_spec ? spec->stats : (df_spec_stats){0};
    const int64_t replayed_before = df_graph_cache_replays(st->graphs);

    double t0 = now_s();
    df_status rc = use_spec ? df_spec_prefill(spec, r->prompt, r->n_prompt)
                            : df_qwen35_prefill(st, r->prompt, r->n_prompt, NULL, NULL, NULL);
    /* A GPU prefill returns before it is done; wait, so that prefill_s measures it. */
    if (rc == DF_OK) rc = st->m->be->ops->sync(st->m->be);
    double t1 = now_s();
    if (rc == DF_OK) rc = use_spec ? decode_spec(spec, &g, &sampler) : decode_ar(st, &g, &sampler);
    double t2 = now_s();
    if (rc == DF_OK) rc = finish(&g);

    stats->n_prompt = (int32_t)r->n_prompt;
    stats->n_gen = g.n_gen;
    stats->prefill_s = t1 - t0;
    stats->decode_s = t2 - t1;
    stats->prefill_tok_s = stats->prefill_s > 0 ? (double)r->n_prompt / stats->prefill_s : 0.0;
    /* The first token comes from the prefill's logits; decode speed counts the rest. */
    stats->decode_tok_s = stats->decode_s > 0 && g.n_gen > 1 ? (double)(g.n_gen - 1) / stats->decode_s : 0.0;
    stats->stop = g.reason;
    stats->n_replayed = df_graph_cache_replays(st->graphs) - replayed_before;
    if (use_spec) {
        const df_spec_stats *a = &spec->stats;
        stats->n_verify = a->n_verify - before.n_verify;
        int64_t committed = (a->n_accepted - before.n_accepted) + stats->n_verify;
        stats->mean_accept_len = stats->n_verify ? (double)committed / (double)stats->n_verify : 0.0;
        for (int i = 0; i < DF_SPEC_MAX_BLOCK && i < 32; i++)
            stats->accept_hist[i] = a->accept_hist[i] - before.accept_hist[i];
        stats->draft_s = a->t_draft - before.t_draft;
        stats->verify_s = a->t_verify - before.t_verify;
    }
    df_stop_free(&g.stop);
    df_bytes_free(&g.piece);
    df_sampler_free(&sampler);
    free(g.logits);
    return rc;
}
