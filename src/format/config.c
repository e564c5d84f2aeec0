#include "format/config.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mapfile.h"

struct df_config {
    char *name;
    json_t *root;
};

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown JSON value";
}

/* ---- opening ----------------------------------------------------------------------------- */

df_status df_config_parse(const char *text, size_t len, const char *name, df_config **out) {
    *out = NULL;
    if (!name) name = "<config>";
    if (!text && len) return df_fail(DF_ERR_INVALID, "%s: text is NULL", name);
    json_error_t err;
    json_t *root = json_loadb(text ? text : "", len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!root)
        return df_fail(DF_ERR_FORMAT, "%s: line %d column %d: %s", name, err.line, err.column, err.text);
    if (!json_is_object(root)) {
        df_status st = df_fail(DF_ERR_FORMAT, "%s: the top level is %s, expected an object", name,
                               json_kind(root));
        json_decref(root);
        return st;
    }
    df_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg || !(cfg->name = strdup(name))) {
        free(cfg);
        json_decref(root);
        return df_fail(DF_ERR_NOMEM, "%s: out of memory", name);
    }
    cfg->root = root;
    *out = cfg;
    return DF_OK;
}

df_status df_config_open(const char *path, df_config **out) {
    *out = NULL;
    if (!path) return df_fail(DF_ERR_INVALID, "df_config_open: path is NULL");
    char *text = NULL;
    size_t len = 0;
    DF_TRY(df_read_file(path, DF_CONFIG_MAX_BYTES, &text, &len));
    df_status st = df_config_parse(text, len, path, out);
    free(text);
    return st;
}

void df_config_close(df_config *cfg) {
    if (!cfg) return;
    json_decref(cfg->root);
    free(cfg->name);
    free(cfg);
}

const char *df_config_name(const df_config *cfg) { return cfg ? cfg->name : "<null>"; }

/* ---- path lookup ------------------------------------------------------------------------- */

/* Parses a segment made only of digits as an array index; false for anything else. */
static bool parse_index(const char *s, size_t len, size_t *out) {
    if (len == 0 || len > 18) return false;
    size_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* Walks the dotted path. DF_OK with *out set (possibly a JSON null); DF_ERR_NOT_FOUND when a
 * segment is absent; DF_ERR_FORMAT when a segment that must be an object or array is not. */
static df_status lookup(const df_config *cfg, const char *path, json_t **out) {
    *out = NULL;
    if (!cfg || !path || !*path)
        return df_fail(DF_ERR_INVALID, "%s: empty field path", df_config_name(cfg));
    json_t *node = cfg->root;
    const char *seg = path;
    char small[128];
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        if (len == 0)
            return df_fail(DF_ERR_INVALID, "%s: field path '%s' has an empty segment", cfg->name, path);
        int prefix = (int)(seg - path) - 1; /* the path up to the container, for messages */
        json_t *next = NULL;
        size_t idx;
        if (json_is_object(node)) {
            char *key = len < sizeof small ? small : malloc(len + 1);
            if (!key) return df_fail(DF_ERR_NOMEM, "%s: out of memory", cfg->name);
            memcpy(key, seg, len);
            key[len] = '\0';
            next = json_object_get(node, key);
            if (key != small) free(key);
        } else if (json_is_array(node) && parse_index(seg, len, &idx)) {
            next = json_array_get(node, idx);
        } else {
            return df_fail(DF_ERR_FORMAT, "%s: %s: %.*s is %s, expected %s", cfg->name, path,
                           prefix > 0 ? prefix : 4, prefix > 0 ? path : "root", json_kind(node),
                           json_is_array(node) ? "an object (or an array index in the path)" : "an object");
        }
        if (!next) return df_fail(DF_ERR_NOT_FOUND, "%s: %s: missing", cfg->name, path);
        node = next;
        if (!dot) break;
        seg = dot + 1;
    }
    *out = node;
    return DF_OK;
}

/* Like lookup, but a null value counts as missing; for the strict getters. */
static df_status lookup_present(const df_config *cfg, const char *path, json_t **out) {
    DF_TRY(lookup(cfg, path, out));
    if (json_is_null(*out)) return df_fail(DF_ERR_NOT_FOUND, "%s: %s: missing (null)", cfg->name, path);
    return DF_OK;
}

bool df_config_has(const df_config *cfg, const char *path) {
    json_t *v;
    return lookup(cfg, path, &v) == DF_OK && !json_is_null(v);
}

/* ---- conversions ------------------------------------------------------------------------- */

static df_status type_error(const df_config *cfg, const char *path, long idx, const char *want,
                            const json_t *v) {
    if (idx >= 0)
        return df_fail(DF_ERR_FORMAT, "%s: %s[%ld]: expected %s, found %s", cfg->name, path, idx, want,
                       json_kind(v));
    return df_fail(DF_ERR_FORMAT, "%s: %s: expected %s, found %s", cfg->name, path, want, json_kind(v));
}

static df_status to_int(const df_config *cfg, const char *path, long idx, const json_t *v, int64_t *out) {
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return DF_OK;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* 2^63 is exactly representable; the range is [-2^63, 2^63). */
        if (isfinite(d) && d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
            *out = (int64_t)d;
            return DF_OK;
        }
        if (idx >= 0)
            return df_fail(DF_ERR_FORMAT, "%s: %s[%ld]: expected an integer, found the real number %g",
                           cfg->name, path, idx, d);
        return df_fail(DF_ERR_FORMAT, "%s: %s: expected an integer, found the real number %g", cfg->name,
                       path, d);
    }
    return type_error(cfg, path, idx, "an integer", v);
}

static df_status to_float(const df_config *cfg, const char *path, long idx, const json_t *v, double *out) {
    if (!json_is_number(v)) return type_error(cfg, path, idx, "a number", v);
    *out = json_number_value(v);
    return DF_OK;
}

static df_status to_str(const df_config *cfg, const char *path, long idx, const json_t *v, const char **out) {
    if (!json_is_string(v)) return type_error(cfg, path, idx, "a string", v);
    *out = json_string_value(v);
    return DF_OK;
}

/* ---- scalar getters ---------------------------------------------------------------------- */

df_status df_config_get_int(const df_config *cfg, const char *path, int64_t *out) {
    json_t *v;
    DF_TRY(lookup_present(cfg, path, &v));
    return to_int(cfg, path, -1, v, out);
}

df_status df_config_get_float(const df_config *cfg, const char *path, double *out) {
    json_t *v;
    DF_TRY(lookup_present(cfg, path, &v));
    return to_float(cfg, path, -1, v, out);
}

df_status df_config_get_bool(const df_config *cfg, const char *path, bool *out) {
    json_t *v;
    DF_TRY(lookup_present(cfg, path, &v));
    if (!json_is_boolean(v)) return type_error(cfg, path, -1, "a boolean", v);
    *out = json_is_true(v);
    return DF_OK;
}

df_status df_config_get_str(const df_config *cfg, const char *path, const char **out) {
    json_t *v;
    DF_TRY(lookup_present(cfg, path, &v));
    return to_str(cfg, path, -1, v, out);
}

/* Runs a strict getter; a missing or null field turns into the default. */
#define GET_OR(getter, def)                                      \
    do {                                                         \
        df_status st_ = getter;                                  \
        if (st_ == DF_ERR_NOT_FOUND) {                           \
            *out = (def);                                        \
            return DF_OK;                                        \
        }                                                        \
        return st_;                                              \
    } while (0)

df_status df_config_get_int_or(const df_config *cfg, const char *path, int64_t def, int64_t *out) {
    GET_OR(df_config_get_int(cfg, path, out), def);
}

df_status df_config_get_float_or(const df_config *cfg, const char *path, double def, double *out) {
    GET_OR(df_config_get_float(cfg, path, out), def);
}

df_status df_config_get_bool_or(const df_config *cfg, const char *path, bool def, bool *out) {
    GET_OR(df_config_get_bool(cfg, path, out), def);
}

df_status df_config_get_str_or(const df_config *cfg, const char *path, const char *def, const char **out) {
    GET_OR(df_config_get_str(cfg, path, out), def);
}

/* ---- arrays ------------------------------------------------------------------------------ */

static df_status get_array(const df_config *cfg, const char *path, json_t **out) {
    DF_TRY(lookup_present(cfg, path, out));
    if (!json_is_array(*out)) return type_error(cfg, path, -1, "an array", *out);
    return DF_OK;
}

df_status df_config_array_len(const df_config *cfg, const char *path, size_t *n) {
    json_t *a;
    DF_TRY(get_array(cfg, path, &a));
    *n = json_array_size(a);
    return DF_OK;
}

/* One body for the three element types: allocate, convert each element, free on error. */
#define GET_ARRAY(elem_type, convert)                                                        \
    do {                                                                                     \
        json_t *a;                                                                           \
        DF_TRY(get_array(cfg, path, &a));                                                    \
        size_t len = json_array_size(a);                                                     \
        elem_type *buf = NULL;                                                               \
        if (len) {                                                                           \
            buf = calloc(len, sizeof *buf);                                                  \
            if (!buf) return df_fail(DF_ERR_NOMEM, "%s: %s: out of memory", cfg->name, path); \
        }                                                                                    \
        for (size_t i = 0; i < len; i++) {                                                   \
            df_status st_ = convert(cfg, path, (long)i, json_array_get(a, i), &buf[i]);      \
            if (st_ != DF_OK) {                                                              \
                free((void *)buf);                                                           \
                return st_;                                                                  \
            }                                                                                \
        }                                                                                    \
        *out = buf;                                                                          \
        *n = len;                                                                            \
        return DF_OK;                                                                        \
    } while (0)

df_status df_config_get_int_array(const df_config *cfg, const char *path, int64_t **out, size_t *n) {
    GET_ARRAY(int64_t, to_int);
}

df_status df_config_get_float_array(const df_config *cfg, const char *path, double **out, size_t *n) {
    GET_ARRAY(double, to_float);
}

df_status df_config_get_str_array(const df_config *cfg, const char *path, const char ***out, size_t *n) {
    GET_ARRAY(const char *, to_str);
}
