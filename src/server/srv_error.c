/* OpenAI-style error objects. */
#include "server/srv_error.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void fill(srv_error *e, int status, const char *type, const char *code, const char *param,
                 const char *fmt, va_list ap) {
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    vsnprintf(e->message, sizeof e->message, fmt, ap);
}

bool srv_fail(srv_error *e, int status, const char *type, const char *code, const char *param,
              const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fill(e, status, type, code, param, fmt, ap);
    va_end(ap);
    return false;
}

bool srv_bad_field(srv_error *e, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fill(e, 400, "invalid_request_error", NULL, param, fmt, ap);
    va_end(ap);
    return false;
}

char *srv_error_json(const srv_error *e) {
    json_t *inner = json_object();
    json_t *root = json_object();
    if (!inner || !root) {
        json_decref(inner);
        json_decref(root);
        return NULL;
    }
    /* A message cut at its buffer's end may end inside a UTF-8 character: say something. */
    json_t *msg = json_string(e->message);
    json_object_set_new(inner, "message", msg ? msg : json_string("invalid request"));
    json_object_set_new(inner, "type", json_string(e->type ? e->type : "server_error"));
    json_object_set_new(inner, "param", e->param[0] ? json_string(e->param) : json_null());
    json_object_set_new(inner, "code", e->code ? json_string(e->code) : json_null());
    json_object_set_new(root, "error", inner);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}
