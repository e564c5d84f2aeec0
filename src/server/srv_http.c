/* libmicrohttpd glue: bodies, authentication, size limits, and turning a srv_reply into an
 * HTTP response (a buffer, an SSE stream, or a wait for a finished generation).
 *
 * MHD runs a thread per connection, so a handler may block while its job is queued or
 * generating. While it waits it polls the socket: a client that hung up cancels its
 * generation at the next token instead of burning a session to the end. */
#define _GNU_SOURCE /* POLLRDHUP */
#include <microhttpd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "server/srv_http.h"

#define WAIT_SLICE_MS 50

typedef struct conn_ctx {
    char *body;
    size_t len, cap;
    bool too_large;
    bool denied;
} conn_ctx;

typedef struct stream_ctx {
    srv_job *job;
    int fd;
} stream_ctx;

/* True when the peer closed its end (or the socket broke). */
static bool peer_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return true;
    if (p.revents & POLLIN) {
        char c;
        return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }
    return false;
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static enum MHD_Result send_buffer(srv_server *s, struct MHD_Connection *c, const char *url, srv_reply *r) {
    static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
    if (!r->body) {
        r->status = 500;
        r->content_type = "application/json";
    }
    struct MHD_Response *resp =
        r->body ? MHD_create_response_from_buffer(strlen(r->body), r->body, MHD_RESPMEM_MUST_FREE)
                : MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(r->body);
        return MHD_NO;
    }
    r->body = NULL; /* MHD owns it now */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    if (r->retry_after) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (r->status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    srv_metrics_request(s->metrics, srv_route_name(url), r->status);
    return ret;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *sc = cls;
    for (;;) {
        bool done;
        size_t n = srv_job_take(sc->job, buf, max, WAIT_SLICE_MS, &done);
        if (n > 0) return (ssize_t)n;
        if (done) return MHD_CONTENT_READER_END_OF_STREAM;
        if (peer_gone(sc->fd)) {
            atomic_store(&sc->job->cancel, 1);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls) {
    stream_ctx *sc = cls;
    atomic_store(&sc->job->cancel, 1); /* a no-op when it finished */
    srv_job_release(sc->job);
    free(sc);
}

/* Waits for the job to reach `st`, cancelling it if the client leaves. False: client gone. */
static bool wait_for(srv_job *j, srv_job_state st, int fd) {
    while (srv_job_wait(j, st, WAIT_SLICE_MS) < st) {
        if (peer_gone(fd)) {
            atomic_store(&j->cancel, 1);
            return false;
        }
    }
    return true;
}

static enum MHD_Result send_job(srv_server *s, struct MHD_Connection *c, const char *url, srv_job *j) {
    int fd = conn_fd(c);
    srv_reply r = {0};
    bool stream = j->req.stream;
    if (!wait_for(j, stream ? SRV_JOB_STARTED : SRV_JOB_DONE, fd)) {
        srv_job_release(j);
        srv_metrics_request(s->metrics, srv_route_name(url), 499); /* nginx's "client closed request" */
        return MHD_NO;
    }
    pthread_mutex_lock(&j->mu);
    bool failed = j->failed;
    srv_error err = j->err;
    pthread_mutex_unlock(&j->mu);
    if (failed) {
        srv_job_release(j);
        srv_reply_error(&r, &err);
        return send_buffer(s, c, url, &r);
    }
    if (!stream) { /* the whole body is in the job */
        r.status = 200;
        r.content_type = "application/json";
        pthread_mutex_lock(&j->mu);
        r.body = malloc(j->out_len + 1);
        if (r.body) {
            memcpy(r.body, j->out ? j->out : "", j->out_len);
            r.body[j->out_len] = '\0';
        }
        pthread_mutex_unlock(&j->mu);
        srv_job_release(j);
        return send_buffer(s, c, url, &r);
    }
    stream_ctx *sc = malloc(sizeof *sc);
    struct MHD_Response *resp = NULL;
    if (sc) {
        *sc = (stream_ctx){j, fd};
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, sc, stream_free);
    }
    if (!resp) {
        atomic_store(&j->cancel, 1);
        srv_job_release(j);
        free(sc);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    srv_metrics_request(s->metrics, srv_route_name(url), 200);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    srv_server *s = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) { /* first call: headers only */
        if (!(cc = calloc(1, sizeof *cc))) return MHD_NO;
        *con_cls = cc;
        if (s->cfg.api_key && !srv_route_is_public(url))
            cc->denied = !srv_auth_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
                                      s->cfg.api_key);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body) cc->too_large = true;
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body: keep it unless it will be refused anyway */
        if (!cc->denied && !cc->too_large) {
            if (cc->len + *upload_size > s->cfg.max_body) {
                cc->too_large = true;
            } else {
                if (cc->len + *upload_size + 1 > cc->cap) {
                    size_t cap = (cc->len + *upload_size + 1) * 2;
                    if (cap > s->cfg.max_body + 1) cap = s->cfg.max_body + 1;
                    char *p = realloc(cc->body, cap);
                    if (!p) return MHD_NO;
                    cc->body = p;
                    cc->cap = cap;
                }
                memcpy(cc->body + cc->len, upload, *upload_size);
                cc->len += *upload_size;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    srv_reply r;
    srv_error e;
    if (cc->denied) {
        srv_fail(&e, 401, "invalid_request_error", "invalid_api_key", NULL,
                 "missing or wrong API key: send 'Authorization: Bearer <key>'");
        srv_reply_error(&r, &e);
    } else if (cc->too_large) {
        srv_fail(&e, 413, "invalid_request_error", "request_too_large", NULL,
                 "the request body is larger than the limit of %zu bytes", s->cfg.max_body);
        srv_reply_error(&r, &e);
    } else {
        srv_route(s, method, url, cc->body, cc->len, &r);
    }
    if (r.job) return send_job(s, c, url, r.job);
    return send_buffer(s, c, url, &r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    conn_ctx *cc = *con_cls;
    if (!cc) return;
    free(cc->body);
    free(cc);
    *con_cls = NULL;
}

struct MHD_Daemon *srv_http_start(srv_server *s, const struct sockaddr *addr, bool ipv6) {
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ipv6) flags |= MHD_USE_IPv6;
    return MHD_start_daemon(flags, (uint16_t)s->cfg.port, NULL, NULL, on_request, s,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_SOCK_ADDR, addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)256,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                            MHD_OPTION_END);
}

int srv_http_port(struct MHD_Daemon *d) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : -1;
}
