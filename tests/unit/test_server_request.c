/* The server's pure parts: request parsing and validation (every field, every error naming
 * its field with the right status), the error object, the API-key check, routes' names,
 * metrics text, and the queue refusing when full (the 503 path) with a blocking worker. */
#include <criterion/criterion.h>

#ifdef DFLASH_HAVE_MHD
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/srv_metrics.h"
#include "server/srv_pool.h"
#include "server/srv_request.h"
#include "server/srv_routes.h"

static bool parse(const char *body, srv_kind kind, srv_request *r, srv_error *e) {
    return srv_request_parse(body, strlen(body), kind, "served-model", r, e);
}

/* Random values in range, written into the body, must come back out of the parser. */
Test(server_request, chat_fields_round_trip) {
    srand(12345);
    for (int it = 0; it < 50; it++) {
        double temp = (rand() % 2001) / 1000.0, top_p = (1 + rand() % 1000) / 1000.0, min_p = (rand() % 1001) / 1000.0;
        int top_k = 1 + rand() % 500, max_tokens = 1 + rand() % 100000;
        long long seed = ((long long)rand() << 20) ^ rand();
        char body[1024];
        snprintf(body, sizeof body,
                 "{\"model\":\"served-model\",\"messages\":[{\"role\":\"user\",\"content\":\"q%d\"}],"
                 "\"temperature\":%.3f,\"top_p\":%.3f,\"min_p\":%.3f,\"top_k\":%d,\"max_tokens\":%d,\"seed\":%lld,"
                 "\"stop\":[\"s%d\",\"t\"],\"stream\":%s,\"stream_options\":{\"include_usage\":true}}",
                 it, temp, top_p, min_p, top_k, max_tokens, seed, it, it % 2 ? "true" : "false");
        srv_request r;
        srv_error e;
        cr_assert(parse(body, SRV_CHAT, &r, &e), "%s: %s", body, e.message);
        cr_expect_float_eq(r.temperature, (float)temp, 1e-6);
        cr_expect_float_eq(r.top_p, (float)top_p, 1e-6);
        cr_expect_float_eq(r.min_p, (float)min_p, 1e-6);
        cr_expect_eq(r.top_k, top_k);
        cr_expect_eq(r.max_tokens, max_tokens);
        cr_expect(r.has_seed);
        cr_expect_eq(r.seed, (uint64_t)seed);
        cr_expect_eq(r.n_stop, 2);
        char want[16];
        snprintf(want, sizeof want, "s%d", it);
        cr_expect_str_eq(r.stop[0], want);
        cr_expect_str_eq(r.stop[1], "t");
        cr_expect_eq(r.stream, it % 2 == 1);
        cr_expect(r.include_usage);
        cr_expect_not(r.ignore_eos);
        cr_expect_eq(json_array_size(r.messages), 1);
        srv_request_free(&r);
    }
}

Test(server_request, defaults_and_nulls) {
    srv_request r;
    srv_error e;
    cr_assert(parse("{\"messages\":[{\"role\":\"user\",\"content\":null}],\"temperature\":null,\"stop\":null,"
                    "\"max_tokens\":null,\"model\":null}",
                    SRV_CHAT, &r, &e), "%s", e.message);
    cr_expect_float_eq(r.temperature, 1.0f, 0);
    cr_expect_float_eq(r.top_p, 1.0f, 0);
    cr_expect_eq(r.max_tokens, -1);
    cr_expect_eq(r.n_stop, 0);
    cr_expect_not(r.stream);
    cr_expect_not(r.has_seed);
    cr_expect_null(r.tools);
    srv_request_free(&r);
}

Test(server_request, max_completion_tokens_and_single_stop) {
    srv_request r;
    srv_error e;
    cr_assert(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_completion_tokens\":77,"
                    "\"stop\":\"END\",\"ignore_eos\":true}", SRV_CHAT, &r, &e), "%s", e.message);
    cr_expect_eq(r.max_tokens, 77);
    cr_expect(r.ignore_eos);
    cr_assert_eq(r.n_stop, 1);
    cr_expect_str_eq(r.stop[0], "END");
    srv_request_free(&r);
}

Test(server_request, content_parts_are_joined) {
    srv_request r;
    srv_error e;
    cr_assert(parse("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"ab\"},"
                    "{\"type\":\"text\",\"text\":\"\\u00e9c\"}]}]}", SRV_CHAT, &r, &e), "%s", e.message);
    json_t *c = json_object_get(json_array_get(r.messages, 0), "content");
    cr_assert(json_is_string(c));
    cr_expect_str_eq(json_string_value(c), "ab\xc3\xa9" "c");
    srv_request_free(&r);
}

Test(server_request, tools_and_tool_choice) {
    const char *tools = "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]";
    char body[512];
    srv_request r;
    srv_error e;
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s}", tools);
    cr_assert(parse(body, SRV_CHAT, &r, &e), "%s", e.message);
    cr_assert(json_is_array(r.tools));
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(json_array_get(r.tools, 0), "function"), "name")),
                     "get_weather");
    srv_request_free(&r);
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s,\"tool_choice\":\"none\"}", tools);
    cr_assert(parse(body, SRV_CHAT, &r, &e), "%s", e.message);
    cr_expect_null(r.tools, "tool_choice none must hide the tools");
    srv_request_free(&r);
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s,\"tool_choice\":{\"type\":\"function\","
             "\"function\":{\"name\":\"get_weather\"}}}", tools);
    cr_assert(parse(body, SRV_CHAT, &r, &e), "%s", e.message);
    srv_request_free(&r);
}

Test(server_request, completion_prompt) {
    srv_request r;
    srv_error e;
    cr_assert(parse("{\"prompt\":\"def f(\"}", SRV_COMPLETION, &r, &e), "%s", e.message);
    cr_expect_str_eq(r.prompt, "def f(");
    srv_request_free(&r);
    cr_assert(parse("{\"prompt\":[\"one\"]}", SRV_COMPLETION, &r, &e), "%s", e.message);
    cr_expect_str_eq(r.prompt, "one");
    srv_request_free(&r);
}

typedef struct bad_case {
    srv_kind kind;
    const char *body;
    int status;
    const char *param;   /* "" for none */
    const char *in_msg;  /* a substring the message must hold */
} bad_case;

static const bad_case g_bad[] = {
    {SRV_CHAT, "{\"messages\":[", 400, "", "not valid JSON"},
    {SRV_CHAT, "", 400, "", "not valid JSON"},
    {SRV_CHAT, "[1,2]", 400, "", "JSON object"},
    {SRV_CHAT, "{\"messages\":[],\"messages\":[]}", 400, "", "not valid JSON"},
    {SRV_CHAT, "{}", 400, "messages", "required"},
    {SRV_CHAT, "{\"messages\":{}}", 400, "messages", "array"},
    {SRV_CHAT, "{\"messages\":[]}", 400, "messages", "empty"},
    {SRV_CHAT, "{\"messages\":[3]}", 400, "messages[0]", "object"},
    {SRV_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", 400, "messages[0].role", "string"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"},{\"role\":\"robot\"}]}", 400, "messages[1].role", "one of"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages[0].content", "string"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400,
     "messages[0].content", "image_url"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":{}}]}", 400, "messages[0].tool_calls", "array"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"model\":\"gpt-4\"}", 404, "model", "gpt-4"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"model\":7}", 400, "model", "string"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"temperature\":\"hot\"}", 400, "temperature", "number"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"temperature\":2.5}", 400, "temperature", "between"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"temperature\":-0.1}", 400, "temperature", "between"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"top_p\":0}", 400, "top_p", "greater than 0"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"top_p\":1.5}", 400, "top_p", "between"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"min_p\":2}", 400, "min_p", "between"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"top_k\":1.5}", 400, "top_k", "integer"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"top_k\":-5}", 400, "top_k", "between"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"max_tokens\":0}", 400, "max_tokens", "between"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"max_tokens\":\"10\"}", 400, "max_tokens", "integer"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"max_completion_tokens\":-3}", 400, "max_completion_tokens", "between"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"seed\":1e300}", 400, "seed", "between"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"n\":2}", 400, "n", "between"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"stop\":5}", 400, "stop", "string"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"stop\":[\"a\",3]}", 400, "stop", "stop[1]"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"stop\":[\"\"]}", 400, "stop", "empty"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\","
               "\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}", 400, "stop", "at most"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"stream\":1}", 400, "stream", "boolean"},
    {SRV_COMPLETION, "{\"prompt\":\"x\",\"ignore_eos\":\"yes\"}", 400, "ignore_eos", "boolean"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"stream_options\":[]}", 400, "stream_options", "object"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"stream_options\":{\"include_usage\":\"yes\"}}", 400,
     "stream_options.include_usage", "boolean"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"tools\":{}}", 400, "tools", "array"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"tools\":[{\"type\":\"retrieval\"}]}", 400, "tools[0]", "function"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"tools\":[{\"type\":\"function\",\"function\":{}}]}", 400,
     "tools[0].function.name", "string"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"tool_choice\":\"always\"}", 400, "tool_choice", "auto"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"tool_choice\":3}", 400, "tool_choice", "string"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"chat_template_kwargs\":[]}", 400, "chat_template_kwargs", "object"},
    {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"presence_penalty\":3}", 400, "presence_penalty", "between"},
    {SRV_COMPLETION, "{}", 400, "prompt", "required"},
    {SRV_COMPLETION, "{\"prompt\":42}", 400, "prompt", "string"},
    {SRV_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", 400, "prompt", "string"},
    {SRV_COMPLETION, "{\"prompt\":\"a\\u0000b\"}", 400, "", "not valid JSON"}, /* NUL in a string */
};

Test(server_request, errors_name_the_field) {
    for (size_t i = 0; i < sizeof g_bad / sizeof g_bad[0]; i++) {
        const bad_case *c = &g_bad[i];
        srv_request r;
        srv_error e;
        memset(&e, 0, sizeof e);
        cr_assert_not(parse(c->body, c->kind, &r, &e), "accepted: %s", c->body);
        cr_expect_eq(e.status, c->status, "%s: status %d, want %d", c->body, e.status, c->status);
        cr_expect_str_eq(e.param, c->param, "%s: param '%s', want '%s'", c->body, e.param, c->param);
        cr_expect(strstr(e.message, c->in_msg) != NULL, "%s: message '%s' lacks '%s'", c->body, e.message, c->in_msg);
        if (c->param[0]) cr_expect(strstr(e.message, c->param) != NULL, "%s: message '%s' does not name '%s'", c->body,
                                   e.message, c->param);
        cr_expect_str_eq(e.type, "invalid_request_error");
        if (c->status == 404) cr_expect_str_eq(e.code, "model_not_found");
        /* nothing to free, and freeing a zeroed request is harmless */
        srv_request_free(&r);
    }
}

Test(server_request, error_object_shape) {
    srv_error e;
    srv_bad_field(&e, "messages[0].role", "'%s' is bad", "messages[0].role");
    char *s = srv_error_json(&e);
    cr_assert_not_null(s);
    json_t *j = json_loads(s, 0, NULL);
    cr_assert_not_null(j, "%s", s);
    json_t *err = json_object_get(j, "error");
    cr_assert(json_is_object(err));
    cr_expect_str_eq(json_string_value(json_object_get(err, "message")), "'messages[0].role' is bad");
    cr_expect_str_eq(json_string_value(json_object_get(err, "type")), "invalid_request_error");
    cr_expect_str_eq(json_string_value(json_object_get(err, "param")), "messages[0].role");
    cr_expect(json_is_null(json_object_get(err, "code")));
    cr_expect_eq(json_object_size(err), 4);
    json_decref(j);
    free(s);
    srv_fail(&e, 503, "server_error", "server_overloaded", NULL, "busy");
    s = srv_error_json(&e);
    j = json_loads(s, 0, NULL);
    err = json_object_get(j, "error");
    cr_expect(json_is_null(json_object_get(err, "param")));
    cr_expect_str_eq(json_string_value(json_object_get(err, "code")), "server_overloaded");
    json_decref(j);
    free(s);
}

Test(server_request, api_key_check) {
    cr_expect(srv_auth_ok("Bearer s3cret-KEY", "s3cret-KEY"));
    cr_expect_not(srv_auth_ok(NULL, "s3cret-KEY"));
    cr_expect_not(srv_auth_ok("s3cret-KEY", "s3cret-KEY"));
    cr_expect_not(srv_auth_ok("Bearer s3cret-KE", "s3cret-KEY"));
    cr_expect_not(srv_auth_ok("Bearer s3cret-KEYY", "s3cret-KEY"));
    cr_expect_not(srv_auth_ok("Bearer s3cret-KEx", "s3cret-KEY"));
    cr_expect_not(srv_auth_ok("Bearer ", "s3cret-KEY"));
    cr_expect_not(srv_auth_ok("bearer s3cret-KEY", "s3cret-KEY"));
}

Test(server_request, route_names) {
    cr_expect_str_eq(srv_route_name("/v1/chat/completions"), "/v1/chat/completions");
    cr_expect_str_eq(srv_route_name("/v1/chat/completions/x"), "other");
    cr_expect_str_eq(srv_route_name("/health"), "/health");
    cr_expect(srv_route_is_public("/health"));
    cr_expect_not(srv_route_is_public("/metrics"));
    cr_expect_not(srv_route_is_public("/v1/models"));
}

Test(server_request, metrics_text) {
    srv_metrics *m = srv_metrics_new();
    cr_assert_not_null(m);
    srand(99);
    int n200 = 1 + rand() % 20, n400 = 1 + rand() % 20;
    for (int i = 0; i < n200; i++) srv_metrics_request(m, "/v1/completions", 200);
    for (int i = 0; i < n400; i++) srv_metrics_request(m, "/v1/completions", 400);
    int p1 = 10 + rand() % 100, p2 = 10 + rand() % 100, g1 = 1 + rand() % 50, g2 = 1 + rand() % 50;
    srv_metrics_generation(m, p1, g1, 0.5, 2.0, 4, 3.0, false);
    srv_metrics_generation(m, p2, g2, 0.5, 2.0, 12, 2.0, true);
    srv_metrics_busy(m, 1);
    srv_metrics_queue_depth(m, 3);
    char *t = srv_metrics_render(m, 4, 9);
    cr_assert_not_null(t);
    char want[128];
    snprintf(want, sizeof want, "dflash_requests_total{route=\"/v1/completions\",status=\"200\"} %d\n", n200);
    cr_expect(strstr(t, want) != NULL, "missing %s in\n%s", want, t);
    snprintf(want, sizeof want, "dflash_requests_total{route=\"/v1/completions\",status=\"400\"} %d\n", n400);
    cr_expect(strstr(t, want) != NULL, "missing %s", want);
    snprintf(want, sizeof want, "dflash_prompt_tokens_total %d\n", p1 + p2);
    cr_expect(strstr(t, want) != NULL, "missing %s", want);
    snprintf(want, sizeof want, "dflash_generated_tokens_total %d\n", g1 + g2);
    cr_expect(strstr(t, want) != NULL, "missing %s", want);
    /* (4*3 + 12*2) / 16 = 2.25 */
    cr_expect(strstr(t, "dflash_spec_mean_accept_length 2.2500\n") != NULL, "%s", t);
    cr_expect(strstr(t, "dflash_queue_depth 3\n") != NULL);
    cr_expect(strstr(t, "dflash_generations_cancelled_total 1\n") != NULL);
    cr_expect(strstr(t, "dflash_sessions_busy 1\n") != NULL);
    cr_expect(strstr(t, "dflash_sessions 4\n") != NULL);
    free(t);
    srv_metrics_free(m);
}

/* ---- the queue: full means refused ---------------------------------------------------- */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started;
    bool open;
} gate;

static void blocking_run(void *ctx, int worker, srv_job *j) {
    gate *g = ctx;
    pthread_mutex_lock(&g->mu);
    g->started++;
    pthread_cond_broadcast(&g->cv);
    /* Timed waits: the pool's shutdown cancels through the job's flag, not this gate. */
    while (!g->open && !atomic_load(&j->cancel)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
    srv_job_append(j, "ok", 2);
    srv_job_set_state(j, SRV_JOB_DONE);
}

static srv_job *new_job(void) {
    srv_request r;
    srv_error e;
    cr_assert(srv_request_parse("{\"prompt\":\"p\"}", 14, SRV_COMPLETION, NULL, &r, &e), "%s", e.message);
    srv_job *j = srv_job_new(&r);
    cr_assert_not_null(j);
    return j;
}

Test(server_request, full_queue_refuses_then_drains) {
    gate g = {.started = 0, .open = false};
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    srv_pool *p = srv_pool_new(1, 2, blocking_run, &g, NULL);
    cr_assert_not_null(p);
    srv_job *a = new_job(), *b = new_job(), *c = new_job(), *d = new_job();
    cr_assert(srv_pool_submit(p, a));
    pthread_mutex_lock(&g.mu); /* a is running (the worker holds it) before we fill the queue */
    while (g.started < 1) pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    cr_assert(srv_pool_submit(p, b));
    cr_assert(srv_pool_submit(p, c));
    cr_expect_eq(srv_pool_depth(p), 2);
    cr_expect_not(srv_pool_submit(p, d), "a full queue must refuse");
    srv_job_release(d);
    srv_job_release(d);
    pthread_mutex_lock(&g.mu);
    g.open = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    srv_job *all[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        while (srv_job_wait(all[i], SRV_JOB_DONE, 1000) != SRV_JOB_DONE) {
        }
        char buf[8];
        bool done = false;
        size_t n = srv_job_take(all[i], buf, sizeof buf, 10, &done);
        cr_expect_eq(n, 2);
        cr_expect(done);
        cr_expect_eq(memcmp(buf, "ok", 2), 0);
        srv_job_release(all[i]);
    }
    srv_pool_shutdown(p);
    srv_pool_free(p);
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
}

Test(server_request, shutdown_fails_queued_jobs_with_503) {
    gate g = {.started = 0, .open = false};
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    srv_pool *p = srv_pool_new(1, 4, blocking_run, &g, NULL);
    cr_assert_not_null(p);
    srv_job *a = new_job(), *b = new_job();
    cr_assert(srv_pool_submit(p, a));
    pthread_mutex_lock(&g.mu);
    while (g.started < 1) pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    cr_assert(srv_pool_submit(p, b));
    /* The running job is cancelled, the queued one failed. */
    srv_pool_shutdown(p);
    cr_expect(atomic_load(&a->cancel));
    cr_expect_eq(srv_job_wait(b, SRV_JOB_DONE, 1000), SRV_JOB_DONE);
    cr_expect(b->failed);
    cr_expect_eq(b->err.status, 503);
    srv_job *late = new_job();
    cr_expect_not(srv_pool_submit(p, late), "a closed pool must refuse");
    srv_job_release(late);
    srv_job_release(late);
    srv_job_release(a);
    srv_job_release(b);
    srv_pool_free(p);
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
}

#else
Test(server_request, skipped_without_libmicrohttpd) { cr_skip_test("built without libmicrohttpd: no server"); }
#endif
