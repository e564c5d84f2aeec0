/* OpenAI-style error objects: {"error": {"message", "type", "param", "code"}} with the HTTP
 * status they travel with. Pure: no HTTP, no model. */
#ifndef DF_SERVER_SRV_ERROR_H
#define DF_SERVER_SRV_ERROR_H

#include <stdbool.h>

typedef struct srv_error {
    int status;          /* HTTP status: 400, 401, 404, 413, 500, 503 ... */
    const char *type;    /* "invalid_request_error", "authentication_error", "server_error" */
    const char *code;    /* NULL or a short machine code ("model_not_found") */
    char param[64];      /* the offending field ("messages[1].role"); "" when none */
    char message[512];
} srv_error;

/* Fills *e; returns false so parsers can `return srv_fail(...)`. */
bool srv_fail(srv_error *e, int status, const char *type, const char *code, const char *param,
              const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* A 400 invalid_request_error naming `param`. */
bool srv_bad_field(srv_error *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The error object as compact JSON, malloc'd (free() it); NULL when out of memory. */
char *srv_error_json(const srv_error *e);

#endif
