/* Routing: method + path + body -> a finished reply, or a queued generation job that the
 * HTTP layer then streams or waits for. No HTTP library here. */
#ifndef DF_SERVER_SRV_ROUTES_H
#define DF_SERVER_SRV_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "server/server.h"
#include "server/srv_engine.h"
#include "server/srv_pool.h"

typedef struct srv_server {
    df_server_config cfg;
    srv_engine engine;
    srv_pool *pool;
    srv_metrics *metrics;
} srv_server;

typedef struct srv_reply {
    int status;
    char *body;               /* malloc'd; NULL with a job */
    const char *content_type;
    bool retry_after;         /* 503 from a full queue */
    srv_job *job;             /* a queued generation: the HTTP side's reference */
} srv_reply;

/* The route name metrics count under (a fixed string). */
const char *srv_route_name(const char *url);
/* True when url is served without authentication. */
bool srv_route_is_public(const char *url);
/* Answers one request. body may be NULL for GET. */
void srv_route(srv_server *s, const char *method, const char *url, const char *body, size_t len, srv_reply *out);
/* An error reply from e. */
void srv_reply_error(srv_reply *out, const srv_error *e);
/* Constant-time check of an Authorization header against "Bearer KEY". */
bool srv_auth_ok(const char *header, const char *key);

#endif
