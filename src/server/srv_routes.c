/* The routes: /health, /v1/models, /metrics, /v1/chat/completions, /v1/completions. */
#include "server/srv_routes.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/srv_request.h"

static const char *const g_routes[] = {"/health", "/v1/models", "/metrics", "/v1/chat/completions",
                                       "/v1/completions"};

const char *srv_route_name(const char *url) {
    for (size_t i = 0; i < sizeof g_routes / sizeof g_routes[0]; i++)
        if (!strcmp(url, g_routes[i])) return g_routes[i];
    return "other";
}

bool srv_route_is_public(const char *url) { return !strcmp(url, "/health"); }

bool srv_auth_ok(const char *header, const char *key) {
    static const char prefix[] = "Bearer ";
    if (!header || strncmp(header, prefix, sizeof prefix - 1) != 0) return false;
    const char *got = header + sizeof prefix - 1;
    /* Every byte of the key is compared whatever the input, so the time taken says nothing
     * about how much of a guess was right (it depends on the key's length only). */
    size_t klen = strlen(key), glen = strlen(got);
    unsigned char diff = klen != glen;
    for (size_t i = 0; i < klen; i++) diff |= (unsigned char)(key[i] ^ (i < glen ? got[i] : 0));
    return diff == 0;
}

void srv_reply_error(srv_reply *out, const srv_error *e) {
    memset(out, 0, sizeof *out);
    out->status = e->status;
    out->content_type = "application/json";
    out->body = srv_error_json(e);
}

static void reply_json(srv_reply *out, json_t *obj) {
    memset(out, 0, sizeof *out);
    out->status = obj ? 200 : 500;
    out->content_type = "application/json";
    out->body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
}

static void generation(srv_server *s, srv_kind kind, const char *body, size_t len, srv_reply *out) {
    srv_request req;
    srv_error e;
    if (!srv_request_parse(body, len, kind, s->engine.model_name, &req, &e)) {
        srv_reply_error(out, &e);
        return;
    }
    srv_job *j = srv_job_new(&req);
    if (!j) {
        srv_request_free(&req);
        srv_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
        srv_reply_error(out, &e);
        return;
    }
    if (!srv_pool_submit(s->pool, j)) {
        srv_job_release(j); /* the queue's reference */
        srv_job_release(j); /* ours */
        srv_fail(&e, 503, "server_error", "server_overloaded",
                 NULL, "the server is busy (%d requests queued); retry later", s->cfg.queue);
        srv_reply_error(out, &e);
        out->retry_after = true;
        return;
    }
    memset(out, 0, sizeof *out);
    out->status = 200;
    out->job = j;
}

void srv_route(srv_server *s, const char *method, const char *url, const char *body, size_t len, srv_reply *out) {
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    const char *route = srv_route_name(url);
    srv_error e;
    if (!strcmp(route, "other")) {
        srv_fail(&e, 404, "invalid_request_error", "not_found", NULL, "no route %.200s %.200s", method, url);
        srv_reply_error(out, &e);
    } else if (!strcmp(route, "/health") && get) {
        reply_json(out, json_pack("{s:s}", "status", "ok"));
    } else if (!strcmp(route, "/v1/models") && get) {
        reply_json(out, json_pack("{s:s, s:[{s:s, s:s, s:I, s:s}]}", "object", "list", "data", "id",
                                  s->engine.model_name, "object", "model", "created", (json_int_t)time(NULL),
                                  "owned_by", "dflash"));
    } else if (!strcmp(route, "/metrics") && get) {
        memset(out, 0, sizeof *out);
        out->body = srv_metrics_render(s->metrics, s->cfg.parallel, s->cfg.queue);
        out->status = out->body ? 200 : 500;
        out->content_type = "text/plain; version=0.0.4";
    } else if (!strcmp(route, "/v1/chat/completions") && post) {
        generation(s, SRV_CHAT, body, len, out);
    } else if (!strcmp(route, "/v1/completions") && post) {
        generation(s, SRV_COMPLETION, body, len, out);
    } else {
        srv_fail(&e, 405, "invalid_request_error", "method_not_allowed", NULL, "%.200s does not take %.20s", route,
                 method);
        srv_reply_error(out, &e);
    }
}
