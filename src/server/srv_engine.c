/* Running one request: prompt (chat template or raw text) -> tokens -> generation, with every
 * piece of output turned into SSE chunks or a final JSON body on the job. */
#include "server/srv_engine.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/status.h"
#include "server/srv_sse.h"
#include "text/chat.h"
#include "text/chat_parse.h"

/* For GGUFs without tokenizer.chat_template: ChatML, which every Qwen model speaks. */
static const char g_chatml[] =
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

static void turn_take(srv_engine *e) {
    if (e->independent) return;
    pthread_mutex_lock(&e->turn_mu);
    unsigned long long ticket = e->turn_next++;
    while (e->turn_serving != ticket) pthread_cond_wait(&e->turn_cv, &e->turn_mu);
    pthread_mutex_unlock(&e->turn_mu);
}

static void turn_give(srv_engine *e) {
    if (e->independent) return;
    pthread_mutex_lock(&e->turn_mu);
    e->turn_serving++;
    pthread_cond_broadcast(&e->turn_cv);
    pthread_mutex_unlock(&e->turn_mu);
}

int srv_engine_open(srv_engine *e, const dflash_model_params *mp, const dflash_session_params *sp, int n_sessions,
                    const char *model_name, srv_metrics *metrics) {
    memset(e, 0, sizeof *e);
    e->metrics = metrics;
    if (pthread_mutex_init(&e->turn_mu, NULL) != 0) return df_fail(DF_ERR_NOMEM, "server: mutex");
    if (pthread_cond_init(&e->turn_cv, NULL) != 0) {
        pthread_mutex_destroy(&e->turn_mu);
        return df_fail(DF_ERR_NOMEM, "server: condition variable");
    }
    e->turn_ready = true;
    int rc = dflash_model_load(mp, &e->model);
    if (rc != 0) return rc;
    if (!dflash_model_has_tokenizer(e->model)) {
        rc = df_fail(DF_ERR_UNSUPPORTED, "%s has no tokenizer: a server needs text in and out", mp->path);
        goto fail;
    }
    char *src = dflash_model_chat_template(e->model);
    rc = src ? df_jinja_parse(src, strlen(src), &e->tmpl) : df_jinja_parse(g_chatml, sizeof g_chatml - 1, &e->tmpl);
    if (rc != 0) df_fail_context(rc, "%s: tokenizer.chat_template", mp->path);
    free(src);
    if (rc != 0) goto fail;
    e->model_name = strdup(model_name);
    e->sessions = calloc((size_t)n_sessions, sizeof *e->sessions);
    if (!e->model_name || !e->sessions) {
        rc = df_fail(DF_ERR_NOMEM, "server: out of memory");
        goto fail;
    }
    e->n_sessions = n_sessions;
    e->independent = true;
    for (int i = 0; i < n_sessions; i++) {
        if ((rc = dflash_session_create(e->model, sp, &e->sessions[i])) != 0) goto fail;
        e->independent &= dflash_session_is_independent(e->sessions[i]);
    }
    return 0;
fail:
    srv_engine_close(e);
    return rc;
}

void srv_engine_close(srv_engine *e) {
    for (int i = 0; i < e->n_sessions; i++) dflash_session_free(e->sessions[i]);
    free(e->sessions);
    df_jinja_free(e->tmpl);
    free(e->model_name);
    dflash_model_free(e->model);
    if (e->turn_ready) {
        pthread_cond_destroy(&e->turn_cv);
        pthread_mutex_destroy(&e->turn_mu);
    }
    memset(e, 0, sizeof *e);
}

/* ---- one run ---------------------------------------------------------------------------- */

typedef struct run {
    srv_engine *e;
    srv_job *j;
    const srv_request *req;
    char id[48];
    long long created;
    df_chat_parser *parser; /* chat only */
    char *text;             /* completion: all output text (non-streaming reply) */
    size_t len, cap;
    bool oom;
} run;

static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t fresh_random(void) {
    static atomic_ullong counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ mix64(atomic_fetch_add(&counter, 1)));
}

/* {id, object, created, model, choices: [choice]} */
static json_t *envelope(const run *r, const char *object, json_t *choice) {
    json_t *choices = json_array();
    if (choice) json_array_append_new(choices, choice);
    return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", r->id, "object", object, "created", (json_int_t)r->created,
                     "model", r->e->model_name, "choices", choices);
}

static bool chat_chunk(run *r, json_t *delta, const char *finish) {
    json_t *choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "delta", delta, "logprobs", "finish_reason",
                               finish ? json_string(finish) : json_null());
    return srv_sse_event(r->j, envelope(r, "chat.completion.chunk", choice));
}

static bool completion_chunk(run *r, const char *text, size_t len, const char *finish) {
    json_t *choice = json_pack("{s:o, s:i, s:n, s:o}", "text", srv_json_text(text, len), "index", 0, "logprobs",
                               "finish_reason", finish ? json_string(finish) : json_null());
    return srv_sse_event(r->j, envelope(r, "text_completion", choice));
}

static void on_delta(void *user, const df_chat_delta *d) {
    run *r = user;
    json_t *delta = NULL;
    switch (d->kind) {
    case DF_CHAT_DELTA_REASONING:
        delta = json_pack("{s:o}", "reasoning_content", srv_json_text(d->text, d->len));
        break;
    case DF_CHAT_DELTA_CONTENT:
        delta = json_pack("{s:o}", "content", srv_json_text(d->text, d->len));
        break;
    case DF_CHAT_DELTA_TOOL_START:
        delta = json_pack("{s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "tool_calls", "index", d->tool_index, "id",
                          d->tool_id, "type", "function", "function", "name", d->tool_name, "arguments", "");
        break;
    case DF_CHAT_DELTA_TOOL_ARGS:
        delta = json_pack("{s:[{s:i, s:{s:o}}]}", "tool_calls", "index", d->tool_index, "function", "arguments",
                          srv_json_text(d->text, d->len));
        break;
    }
    if (!delta || !chat_chunk(r, delta, NULL)) r->oom = true;
}

static int on_token(void *user, int32_t token, const char *text, size_t len) {
    run *r = user;
    /* Between two tokens no forward is running: let the other sessions have a turn. */
    turn_give(r->e);
    turn_take(r->e);
    if (atomic_load(&r->j->cancel) || r->oom) return 1;
    if (len == 0) return 0;
    if (r->parser) {
        if (df_chat_parser_feed(r->parser, text, len, r->req->stream ? on_delta : NULL, r) != DF_OK) r->oom = true;
    } else if (r->req->stream) {
        if (!completion_chunk(r, text, len, NULL)) r->oom = true;
    } else {
        if (r->len + len + 1 > r->cap) {
            size_t cap = (r->len + len + 1) * 2;
            char *p = realloc(r->text, cap);
            if (!p) return r->oom = true, 1;
            r->text = p;
            r->cap = cap;
        }
        memcpy(r->text + r->len, text, len);
        r->len += len;
    }
    return r->oom ? 1 : 0;
}

static json_t *usage(const dflash_gen_stats *st) {
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", st->n_prompt, "completion_tokens", st->n_gen,
                     "total_tokens", st->n_prompt + st->n_gen);
}

/* The prompt as text: the chat template's rendering, or the completion prompt. */
static bool build_prompt(run *r, char **prompt, srv_error *err) {
    const srv_request *q = r->req;
    if (q->kind == SRV_COMPLETION) {
        *prompt = strdup(q->prompt);
        return *prompt ? true : srv_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    df_chat_options opt = df_chat_default_options();
    opt.extra = q->template_kwargs;
    size_t len;
    if (df_chat_render(r->e->tmpl, q->messages, q->tools, &opt, prompt, &len) != DF_OK)
        return srv_bad_field(err, "messages", "the chat template could not render these messages: %s",
                             df_last_error());
    return true;
}

static void finish_reply(run *r, const dflash_gen_stats *st) {
    const srv_request *q = r->req;
    bool tools = r->parser && df_chat_parser_tool_count(r->parser) > 0;
    const char *finish = tools ? "tool_calls"
                         : st->stop == DFLASH_STOP_LENGTH || st->stop == DFLASH_STOP_CONTEXT ? "length"
                                                                                               : "stop";
    bool ok = true;
    if (q->stream) {
        ok = q->kind == SRV_CHAT ? chat_chunk(r, json_object(), finish) : completion_chunk(r, "", 0, finish);
        if (ok && q->include_usage) {
            json_t *last = envelope(r, q->kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion", NULL);
            if (last) json_object_set_new(last, "usage", usage(st));
            ok = srv_sse_event(r->j, last);
        }
        ok = ok && srv_sse_done(r->j);
    } else if (q->kind == SRV_CHAT) {
        json_t *choice = json_pack("{s:i, s:o, s:n, s:s}", "index", 0, "message", df_chat_parser_message(r->parser),
                                   "logprobs", "finish_reason", finish);
        json_t *body = envelope(r, "chat.completion", choice);
        if (body) json_object_set_new(body, "usage", usage(st));
        ok = srv_json_body(r->j, body);
    } else {
        json_t *choice = json_pack("{s:o, s:i, s:n, s:s}", "text", srv_json_text(r->text ? r->text : "", r->len),
                                   "index", 0, "logprobs", "finish_reason", finish);
        json_t *body = envelope(r, "text_completion", choice);
        if (body) json_object_set_new(body, "usage", usage(st));
        ok = srv_json_body(r->j, body);
    }
    if (!ok) r->oom = true;
}

void srv_engine_run(void *engine, int worker, srv_job *j) {
    srv_engine *e = engine;
    dflash_session *s = e->sessions[worker];
    const srv_request *q = &j->req;
    run r = {.e = e, .j = j, .req = q, .created = (long long)time(NULL)};
    snprintf(r.id, sizeof r.id, "%s-%016llx", q->kind == SRV_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)fresh_random());
    srv_error err;
    char *prompt = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    const char *param = q->kind == SRV_CHAT ? "messages" : "prompt";
    if (!build_prompt(&r, &prompt, &err)) goto failed;
    turn_take(e);
    int tok_rc = dflash_tokenize(e->model, prompt, strlen(prompt), true, &ids, &n_ids);
    turn_give(e);
    if (tok_rc != 0) {
        srv_fail(&err, 500, "server_error", NULL, NULL, "tokenization failed: %s", dflash_last_error());
        goto failed;
    }
    int32_t n_ctx = dflash_session_n_ctx(s);
    if (n_ids == 0) {
        srv_bad_field(&err, param, "'%s' is empty: there is nothing to generate from", param);
        goto failed;
    }
    if (n_ids >= (size_t)n_ctx) {
        srv_fail(&err, 400, "invalid_request_error", "context_length_exceeded", param,
                 "This model's context is %d tokens; the prompt has %zu, which leaves no room to generate",
                 (int)n_ctx, n_ids);
        goto failed;
    }
    if (q->kind == SRV_CHAT) {
        df_chat_parse_options po = {.starts_in_reasoning = df_chat_prompt_opens_reasoning(prompt, strlen(prompt)),
                                    .tools = q->tools, .id_seed = fresh_random()};
        if (df_chat_parser_new(&po, &r.parser) != DF_OK) {
            srv_fail(&err, 500, "server_error", NULL, NULL, "out of memory");
            goto failed;
        }
    }
    turn_take(e);
    int reset_rc = dflash_session_reset(s);
    turn_give(e);
    if (reset_rc != 0) {
        srv_fail(&err, 500, "server_error", NULL, NULL, "session reset failed: %s", dflash_last_error());
        goto failed;
    }

    dflash_gen_params gp = dflash_gen_default_params();
    gp.n_predict = q->max_tokens;
    gp.temperature = q->temperature;
    gp.top_k = q->top_k;
    gp.top_p = q->top_p;
    gp.min_p = q->min_p;
    gp.seed = q->has_seed ? q->seed : fresh_random();
    gp.stop = (const char *const *)q->stop;
    gp.n_stop = q->n_stop;
    gp.ignore_eos = q->ignore_eos;

    srv_job_set_state(j, SRV_JOB_STARTED);
    if (q->stream && q->kind == SRV_CHAT)
        r.oom |= !chat_chunk(&r, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL);
    dflash_gen_stats st;
    memset(&st, 0, sizeof st);
    turn_take(e);
    int rc = dflash_generate(s, ids, n_ids, &gp, on_token, &r, &st);
    turn_give(e);
    if (rc == 0 && r.parser && df_chat_parser_finish(r.parser, q->stream ? on_delta : NULL, &r) != DF_OK) r.oom = true;
    if (rc != 0 || r.oom) {
        /* The reply is a 200 already when streaming: say what happened in the stream. */
        srv_fail(&err, 500, "server_error", NULL, NULL, "generation failed: %s",
                 rc != 0 ? dflash_last_error() : "out of memory");
        if (q->stream) {
            char *body = srv_error_json(&err);
            json_t *obj = body ? json_loads(body, 0, NULL) : NULL;
            free(body);
            srv_sse_event(j, obj);
            srv_sse_done(j);
            srv_job_set_state(j, SRV_JOB_DONE);
        } else {
            srv_job_fail(j, &err);
        }
    } else {
        if (!atomic_load(&j->cancel)) {
            finish_reply(&r, &st);
        } else if (!q->stream) { /* the client is gone or the server is stopping */
            srv_fail(&err, 503, "server_error", "generation_cancelled", NULL,
                     "the generation was cancelled (the client left or the server is shutting down)");
            srv_job_fail(j, &err);
        }
        if (r.oom && !q->stream) {
            srv_fail(&err, 500, "server_error", NULL, NULL, "out of memory");
            srv_job_fail(j, &err);
        }
        srv_job_set_state(j, SRV_JOB_DONE);
    }
    if (e->metrics)
        srv_metrics_generation(e->metrics, st.n_prompt, st.n_gen, st.prefill_s, st.decode_s, st.n_verify,
                               st.mean_accept_len, rc == 0 && st.stop == DFLASH_STOP_CALLBACK);
    goto done;
failed:
    srv_job_fail(j, &err);
done:
    df_chat_parser_free(r.parser);
    free(r.text);
    free(prompt);
    free(ids);
}
