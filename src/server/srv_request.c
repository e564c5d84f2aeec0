/* Request bodies of /v1/chat/completions and /v1/completions, validated field by field.
 *
 * What is accepted follows OpenAI's API: null means absent; unknown fields are ignored (clients
 * send many we have no use for, e.g. user, logit_bias); a field we know with the wrong type or
 * an out-of-range value is a 400 naming it, because silently ignoring a sampling setting gives
 * the caller output they did not ask for. */
#include "server/srv_request.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_roles[] = {"system", "developer", "user", "assistant", "tool"};

/* A field that is present and not null. */
static json_t *field(const json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static bool get_number(const json_t *body, const char *key, double lo, double hi, float *out, srv_error *e) {
    json_t *v = field(body, key);
    if (!v) return true;
    if (!json_is_number(v)) return srv_bad_field(e, key, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return srv_bad_field(e, key, "'%s' must be between %g and %g, got %g", key, lo, hi, d);
    *out = (float)d;
    return true;
}

static bool get_int(const json_t *body, const char *key, long long lo, long long hi, long long *out,
                    bool *present, srv_error *e) {
    json_t *v = field(body, key);
    if (present) *present = v != NULL;
    if (!v) return true;
    /* 5.0 is an integer to JSON's eye and to Python clients. */
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v)) d = json_real_value(v);
    else return srv_bad_field(e, key, "'%s' must be an integer", key);
    /* Beyond 2^63 a double no longer converts to long long. */
    if (d < (double)lo || d > (double)hi || fabs(d) >= 9.0e18)
        return srv_bad_field(e, key, "'%s' must be between %lld and %lld", key, lo, hi);
    *out = json_is_integer(v) ? (long long)json_integer_value(v) : (long long)d;
    return true;
}

static bool get_bool(const json_t *body, const char *key, bool *out, srv_error *e) {
    json_t *v = field(body, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return srv_bad_field(e, key, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return true;
}

static char *dup_str(const json_t *s) {
    size_t n = json_string_length(s);
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, json_string_value(s), n);
        p[n] = '\0';
    }
    return p;
}

static bool no_memory(srv_error *e) {
    return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
}

static bool parse_stop(const json_t *body, srv_request *r, srv_error *e) {
    json_t *v = field(body, "stop");
    if (!v) return true;
    json_t *one = json_is_string(v) ? v : NULL;
    if (!one && !json_is_array(v)) return srv_bad_field(e, "stop", "'stop' must be a string or an array of strings");
    size_t n = one ? 1 : json_array_size(v);
    if (n > SRV_MAX_STOP) return srv_bad_field(e, "stop", "'stop' has %zu strings; at most %d", n, SRV_MAX_STOP);
    for (size_t i = 0; i < n; i++) {
        json_t *s = one ? one : json_array_get(v, i);
        if (!json_is_string(s)) return srv_bad_field(e, "stop", "stop[%zu] must be a string", i);
        if (json_string_length(s) == 0) return srv_bad_field(e, "stop", "stop[%zu] is empty", i);
        if (strlen(json_string_value(s)) != json_string_length(s))
            return srv_bad_field(e, "stop", "stop[%zu] contains a NUL character", i);
        if (!(r->stop[r->n_stop] = dup_str(s))) return no_memory(e);
        r->n_stop++;
    }
    return true;
}

/* Content as the templates want it: a string. OpenAI also allows an array of parts; text
 * parts are joined, anything else (images, audio) this text-only server cannot take. */
static bool flatten_content(json_t *msg, size_t i, srv_error *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    json_t *c = json_object_get(msg, "content");
    if (!c || json_is_null(c) || json_is_string(c)) return true;
    if (!json_is_array(c)) return srv_bad_field(e, param, "'%s' must be a string, an array of parts or null", param);
    size_t total = 0;
    json_t *part;
    size_t k;
    json_array_foreach(c, k, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type))
            return srv_bad_field(e, param, "%s[%zu] must be an object with a string 'type'", param, k);
        if (strcmp(json_string_value(type), "text") != 0)
            return srv_bad_field(e, param, "%s[%zu]: parts of type '%s' are not supported (text only)", param, k,
                                 json_string_value(type));
        if (!json_is_string(text)) return srv_bad_field(e, param, "%s[%zu].text must be a string", param, k);
        total += json_string_length(text);
    }
    char *buf = malloc(total + 1);
    if (!buf) return no_memory(e);
    size_t off = 0;
    json_array_foreach(c, k, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(buf + off, json_string_value(text), json_string_length(text));
        off += json_string_length(text);
    }
    json_t *s = json_stringn_nocheck(buf, total);
    free(buf);
    if (!s || json_object_set_new(msg, "content", s) != 0) return no_memory(e);
    return true;
}

static bool parse_messages(const json_t *body, srv_request *r, srv_error *e) {
    json_t *v = field(body, "messages");
    if (!v) return srv_bad_field(e, "messages", "'messages' is required");
    if (!json_is_array(v)) return srv_bad_field(e, "messages", "'messages' must be an array");
    if (json_array_size(v) == 0) return srv_bad_field(e, "messages", "'messages' must not be empty");
    /* A deep copy: flattening rewrites content, and the request outlives the body. */
    if (!(r->messages = json_deep_copy(v))) return no_memory(e);
    json_t *msg;
    size_t i;
    json_array_foreach(r->messages, i, msg) {
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(msg)) return srv_bad_field(e, param, "'%s' must be an object", param);
        json_t *role = json_object_get(msg, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_is_string(role)) return srv_bad_field(e, param, "'%s' must be a string", param);
        bool known = false;
        for (size_t k = 0; k < sizeof g_roles / sizeof g_roles[0]; k++)
            known |= strcmp(json_string_value(role), g_roles[k]) == 0;
        if (!known)
            return srv_bad_field(e, param, "'%s' must be one of system, developer, user, assistant, tool", param);
        json_t *calls = json_object_get(msg, "tool_calls");
        snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
        if (calls && !json_is_null(calls) && !json_is_array(calls))
            return srv_bad_field(e, param, "'%s' must be an array", param);
        if (!flatten_content(msg, i, e)) return false;
    }
    return true;
}

static bool parse_tools(const json_t *body, srv_request *r, srv_error *e) {
    json_t *v = field(body, "tools");
    if (v) {
        if (!json_is_array(v)) return srv_bad_field(e, "tools", "'tools' must be an array");
        json_t *t;
        size_t i;
        json_array_foreach(v, i, t) {
            char param[64];
            snprintf(param, sizeof param, "tools[%zu]", i);
            json_t *type = json_object_get(t, "type"), *fn = json_object_get(t, "function");
            if (!json_is_object(t) || !json_is_string(type) || strcmp(json_string_value(type), "function") != 0)
                return srv_bad_field(e, param, "'%s' must be an object with type \"function\"", param);
            snprintf(param, sizeof param, "tools[%zu].function.name", i);
            if (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name")))
                return srv_bad_field(e, param, "'%s' must be a string", param);
        }
    }
    /* tool_choice: "none" hides the tools from the model; "auto", "required" and a named
     * function are accepted and leave the choice to the model (no constrained decoding). */
    json_t *tc = field(body, "tool_choice");
    bool none = false;
    if (tc) {
        if (json_is_string(tc)) {
            const char *s = json_string_value(tc);
            if (strcmp(s, "none") && strcmp(s, "auto") && strcmp(s, "required"))
                return srv_bad_field(e, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or an object");
            none = !strcmp(s, "none");
        } else if (json_is_object(tc)) {
            json_t *fn = json_object_get(tc, "function");
            if (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name")))
                return srv_bad_field(e, "tool_choice", "'tool_choice.function.name' must be a string");
        } else {
            return srv_bad_field(e, "tool_choice", "'tool_choice' must be a string or an object");
        }
    }
    if (v && json_array_size(v) > 0 && !none) r->tools = json_incref(v);
    json_t *kw = field(body, "chat_template_kwargs");
    if (kw) {
        if (!json_is_object(kw)) return srv_bad_field(e, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
        r->template_kwargs = json_incref(kw);
    }
    return true;
}

static bool parse_prompt(const json_t *body, srv_request *r, srv_error *e) {
    json_t *v = field(body, "prompt");
    if (!v) return srv_bad_field(e, "prompt", "'prompt' is required");
    /* The legacy API allows a batch of prompts; one choice per request is all we serve. */
    if (json_is_array(v) && json_array_size(v) == 1 && json_is_string(json_array_get(v, 0))) v = json_array_get(v, 0);
    if (!json_is_string(v)) return srv_bad_field(e, "prompt", "'prompt' must be a string");
    if (strlen(json_string_value(v)) != json_string_length(v))
        return srv_bad_field(e, "prompt", "'prompt' contains a NUL character");
    if (!(r->prompt = dup_str(v))) return no_memory(e);
    return true;
}

static bool parse_fields(const json_t *body, const char *served_model, srv_request *r, srv_error *e) {
    json_t *model = field(body, "model");
    if (model && !json_is_string(model)) return srv_bad_field(e, "model", "'model' must be a string");
    if (model && served_model && strcmp(json_string_value(model), served_model) != 0)
        return srv_fail(e, 404, "invalid_request_error", "model_not_found", "model",
                        "The model '%.200s' does not exist; this server serves '%.200s'",
                        json_string_value(model), served_model);
    if (r->kind == SRV_CHAT ? !parse_messages(body, r, e) || !parse_tools(body, r, e) : !parse_prompt(body, r, e))
        return false;

    long long n;
    bool present;
    if (!get_int(body, "n", 1, 1, &n, NULL, e)) return false;
    if (!get_int(body, "max_tokens", 1, INT32_MAX, &n, &present, e)) return false;
    if (present) r->max_tokens = (int32_t)n;
    if (!get_int(body, "max_completion_tokens", 1, INT32_MAX, &n, &present, e)) return false;
    if (present) r->max_tokens = (int32_t)n;
    if (!get_number(body, "temperature", 0, 2, &r->temperature, e)) return false;
    if (!get_number(body, "top_p", 0, 1, &r->top_p, e)) return false;
    if (field(body, "top_p") && r->top_p <= 0) return srv_bad_field(e, "top_p", "'top_p' must be greater than 0");
    if (!get_int(body, "top_k", -1, INT32_MAX, &n, &present, e)) return false;
    if (present) r->top_k = n < 0 ? 0 : (int32_t)n;
    if (!get_number(body, "min_p", 0, 1, &r->min_p, e)) return false;
    if (!get_int(body, "seed", INT64_MIN, INT64_MAX, &n, &r->has_seed, e)) return false;
    if (r->has_seed) r->seed = (uint64_t)n;
    /* Accepted for compatibility, not applied: penalties. Their range is still checked. */
    float ignored;
    if (!get_number(body, "presence_penalty", -2, 2, &ignored, e)) return false;
    if (!get_number(body, "frequency_penalty", -2, 2, &ignored, e)) return false;
    if (!parse_stop(body, r, e)) return false;
    if (!get_bool(body, "stream", &r->stream, e)) return false;
    if (!get_bool(body, "ignore_eos", &r->ignore_eos, e)) return false;
    json_t *so = field(body, "stream_options");
    if (so) {
        if (!json_is_object(so)) return srv_bad_field(e, "stream_options", "'stream_options' must be an object");
        json_t *iu = field(so, "include_usage");
        if (iu && !json_is_boolean(iu))
            return srv_bad_field(e, "stream_options.include_usage", "'stream_options.include_usage' must be a boolean");
        r->include_usage = json_is_true(iu);
    }
    return true;
}

bool srv_request_parse(const char *body, size_t len, srv_kind kind, const char *served_model,
                       srv_request *r, srv_error *e) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = -1;
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return srv_bad_field(e, NULL, "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                             je.column);
    bool ok = json_is_object(root) ? parse_fields(root, served_model, r, e)
                                   : srv_bad_field(e, NULL, "the body must be a JSON object");
    json_decref(root);
    if (!ok) srv_request_free(r);
    return ok;
}

void srv_request_free(srv_request *r) {
    json_decref(r->messages);
    json_decref(r->tools);
    json_decref(r->template_kwargs);
    free(r->prompt);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}
