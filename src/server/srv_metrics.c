/* Prometheus counters: a fixed table of (route, status) series and a few totals, under one
 * mutex (requests are milliseconds to seconds apart; contention is not a concern). */
#include "server/srv_metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct series {
    const char *route; /* static strings only */
    int status;
    uint64_t count;
} series;

struct srv_metrics {
    pthread_mutex_t mu;
    series req[SRV_METRICS_MAX_SERIES];
    int n_req;
    uint64_t overflow; /* requests past the table (more (route, status) pairs than fit) */
    int64_t prompt_tokens, gen_tokens, generations, cancelled;
    double prefill_s, decode_s;
    int64_t verifies;
    double accepted; /* sum of tokens committed over verifies */
    int64_t queue_depth;
    int64_t busy;
};

srv_metrics *srv_metrics_new(void) {
    srv_metrics *m = calloc(1, sizeof *m);
    if (m && pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

void srv_metrics_free(srv_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void srv_metrics_request(srv_metrics *m, const char *route, int status) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_req && (m->req[i].status != status || strcmp(m->req[i].route, route) != 0)) i++;
    if (i == m->n_req && m->n_req < SRV_METRICS_MAX_SERIES) m->req[m->n_req++] = (series){route, status, 0};
    if (i < m->n_req) m->req[i].count++;
    else m->overflow++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_generation(srv_metrics *m, int64_t n_prompt, int64_t n_gen, double prefill_s, double decode_s,
                            int64_t n_verify, double mean_accept_len, bool cancelled) {
    pthread_mutex_lock(&m->mu);
    m->cancelled += cancelled;
    m->prompt_tokens += n_prompt;
    m->gen_tokens += n_gen;
    m->generations++;
    m->prefill_s += prefill_s;
    m->decode_s += decode_s;
    m->verifies += n_verify;
    m->accepted += (double)n_verify * mean_accept_len;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_queue_depth(srv_metrics *m, int64_t depth) {
    pthread_mutex_lock(&m->mu);
    m->queue_depth = depth;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_busy(srv_metrics *m, int delta) {
    pthread_mutex_lock(&m->mu);
    m->busy += delta;
    pthread_mutex_unlock(&m->mu);
}

typedef struct text {
    char *s;
    size_t len, cap;
    int oom;
} text;

__attribute__((format(printf, 2, 3))) static void put(text *t, const char *fmt, ...) {
    if (t->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n + 1;
        char *p = realloc(t->s, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
}

char *srv_metrics_render(srv_metrics *m, int parallel, int queue_capacity) {
    text t = {malloc(4096), 0, 4096, 0};
    if (!t.s) return NULL;
    t.s[0] = '\0';
    pthread_mutex_lock(&m->mu);
    put(&t, "# HELP dflash_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE dflash_requests_total counter\n");
    for (int i = 0; i < m->n_req; i++)
        put(&t, "dflash_requests_total{route=\"%s\",status=\"%d\"} %llu\n", m->req[i].route, m->req[i].status,
            (unsigned long long)m->req[i].count);
    if (m->overflow) put(&t, "dflash_requests_total{route=\"overflow\",status=\"0\"} %llu\n", (unsigned long long)m->overflow);
    put(&t, "# HELP dflash_prompt_tokens_total Prompt tokens processed.\n# TYPE dflash_prompt_tokens_total counter\n"
            "dflash_prompt_tokens_total %lld\n", (long long)m->prompt_tokens);
    put(&t, "# HELP dflash_generated_tokens_total Tokens generated.\n# TYPE dflash_generated_tokens_total counter\n"
            "dflash_generated_tokens_total %lld\n", (long long)m->gen_tokens);
    put(&t, "# HELP dflash_generations_total Generations finished.\n# TYPE dflash_generations_total counter\n"
            "dflash_generations_total %lld\n", (long long)m->generations);
    put(&t, "# HELP dflash_generations_cancelled_total Generations stopped early: the client left or the server stopped.\n"
            "# TYPE dflash_generations_cancelled_total counter\ndflash_generations_cancelled_total %lld\n",
        (long long)m->cancelled);
    put(&t, "# HELP dflash_prefill_tokens_per_second Prompt tokens per second of prefill, over all requests.\n"
            "# TYPE dflash_prefill_tokens_per_second gauge\ndflash_prefill_tokens_per_second %.3f\n",
        m->prefill_s > 0 ? (double)m->prompt_tokens / m->prefill_s : 0.0);
    put(&t, "# HELP dflash_decode_tokens_per_second Generated tokens per second of decoding, over all requests.\n"
            "# TYPE dflash_decode_tokens_per_second gauge\ndflash_decode_tokens_per_second %.3f\n",
        m->decode_s > 0 ? (double)m->gen_tokens / m->decode_s : 0.0);
    put(&t, "# HELP dflash_spec_verifies_total Speculative verify passes.\n# TYPE dflash_spec_verifies_total counter\n"
            "dflash_spec_verifies_total %lld\n", (long long)m->verifies);
    put(&t, "# HELP dflash_spec_mean_accept_length Tokens committed per verify pass (speculative decoding).\n"
            "# TYPE dflash_spec_mean_accept_length gauge\ndflash_spec_mean_accept_length %.4f\n",
        m->verifies > 0 ? m->accepted / (double)m->verifies : 0.0);
    put(&t, "# HELP dflash_queue_depth Requests waiting for a session.\n# TYPE dflash_queue_depth gauge\n"
            "dflash_queue_depth %lld\n", (long long)m->queue_depth);
    put(&t, "# HELP dflash_queue_capacity Requests that may wait before 503.\n# TYPE dflash_queue_capacity gauge\n"
            "dflash_queue_capacity %d\n", queue_capacity);
    put(&t, "# HELP dflash_sessions_busy Sessions generating now.\n# TYPE dflash_sessions_busy gauge\n"
            "dflash_sessions_busy %lld\n", (long long)m->busy);
    put(&t, "# HELP dflash_sessions Sessions (--parallel).\n# TYPE dflash_sessions gauge\ndflash_sessions %d\n",
        parallel);
    pthread_mutex_unlock(&m->mu);
    if (t.oom) {
        free(t.s);
        return NULL;
    }
    return t.s;
}
