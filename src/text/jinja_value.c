/* Values of the Jinja interpreter: containers, truth, equality, ordering, and the three
 * ways Python turns a value into text (str, repr, json.dumps). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "text/chat_json.h"
#include "text/jinja_internal.h"

void dj_format_float(double f, char out[40]) { df_json_format_double(f, out); }

bool dj_fail(dj_ctx *c, const dj_node *at, df_status st, const char *fmt, ...) {
    if (c->failed) return false; /* the first error is the one worth reporting */
    c->failed = true;
    c->st = st;
    c->err_line = at ? at->line : 0;
    c->err_col = at ? at->col : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return false;
}

bool dj_fail_nomem(dj_ctx *c, const dj_node *at) {
    return dj_fail(c, at, DF_ERR_INVALID,
                   "the template used more than its memory limit (%zu bytes)", c->lim.max_memory);
}

bool dj_charge(dj_ctx *c, const dj_node *at, uint64_t n) {
    c->steps += n;
    if (c->steps > c->lim.max_steps)
        return dj_fail(c, at, DF_ERR_INVALID, "the template exceeded its evaluation budget (%llu steps)",
                       (unsigned long long)c->lim.max_steps);
    return true;
}

const char *dj_type_name(dj_value v) {
    switch (v.type) {
    case DJ_UNDEF: return "undefined";
    case DJ_NONE: return "NoneType";
    case DJ_BOOL: return "bool";
    case DJ_INT: return "int";
    case DJ_FLOAT: return "float";
    case DJ_STR: return "str";
    case DJ_LIST: return "list";
    case DJ_DICT: return "dict";
    case DJ_NS: return "Namespace";
    case DJ_FUNC: return "function";
    case DJ_LOOP: return "LoopContext";
    }
    return "?";
}

bool dj_truthy(dj_value v) {
    switch (v.type) {
    case DJ_UNDEF:
    case DJ_NONE: return false;
    case DJ_BOOL: return v.u.b;
    case DJ_INT: return v.u.i != 0;
    case DJ_FLOAT: return v.u.f != 0;
    case DJ_STR: return v.u.s.n > 0;
    case DJ_LIST: return v.u.list->n > 0;
    case DJ_DICT: return v.u.dict->n > 0;
    case DJ_NS:
    case DJ_FUNC:
    case DJ_LOOP: return true;
    }
    return false;
}

static bool is_intlike(dj_value v) { return v.type == DJ_INT || v.type == DJ_BOOL; }
static bool is_number(dj_value v) { return is_intlike(v) || v.type == DJ_FLOAT; }
static int64_t as_int(dj_value v) { return v.type == DJ_BOOL ? (int64_t)v.u.b : v.u.i; }
static double as_double(dj_value v) { return v.type == DJ_FLOAT ? v.u.f : (double)as_int(v); }

/* Python compares an int with a float exactly, not after rounding the int to a double. */
static bool int_float_equal(int64_t i, double f) {
    if (!(f == f) || f != floor(f) || f < -9223372036854775808.0 || f >= 9223372036854775808.0)
        return false;
    return (int64_t)f == i;
}

bool dj_equal(dj_value a, dj_value b, int depth) {
    if (depth > DJ_MAX_VALUE_DEPTH) return false;
    if (is_number(a) && is_number(b)) {
        if (is_intlike(a) && is_intlike(b)) return as_int(a) == as_int(b);
        if (a.type == DJ_FLOAT && b.type == DJ_FLOAT) return a.u.f == b.u.f;
        if (a.type == DJ_FLOAT) return int_float_equal(as_int(b), a.u.f);
        return int_float_equal(as_int(a), b.u.f);
    }
    if (a.type != b.type) return false;
    switch (a.type) {
    case DJ_UNDEF:
    case DJ_NONE: return true;
    case DJ_STR: return dj_str_eq(a.u.s, b.u.s);
    case DJ_LIST:
        if (a.u.list->n != b.u.list->n || a.u.list->tuple != b.u.list->tuple) return false;
        for (size_t i = 0; i < a.u.list->n; i++)
            if (!dj_equal(a.u.list->v[i], b.u.list->v[i], depth + 1)) return false;
        return true;
    case DJ_DICT:
        if (a.u.dict->n != b.u.dict->n) return false;
        for (size_t i = 0; i < a.u.dict->n; i++) {
            const dj_value *o = dj_dict_get(b.u.dict, a.u.dict->e[i].key);
            if (!o || !dj_equal(a.u.dict->e[i].val, *o, depth + 1)) return false;
        }
        return true;
    case DJ_NS: return a.u.dict == b.u.dict;
    case DJ_FUNC: return a.u.fn == b.u.fn;
    case DJ_LOOP: return a.u.loop == b.u.loop;
    default: return false;
    }
}

static int cmp3(int x) { return x < 0 ? -1 : x > 0 ? 1 : 0; }

static bool compare_depth(dj_ctx *c, const dj_node *at, dj_value a, dj_value b, int *cmp,
                          int depth) {
    if (depth > DJ_MAX_VALUE_DEPTH) return dj_fail(c, at, DF_ERR_INVALID, "values nest too deeply to compare");
    if (is_number(a) && is_number(b)) {
        if (is_intlike(a) && is_intlike(b)) {
            int64_t x = as_int(a), y = as_int(b);
            *cmp = x < y ? -1 : x > y;
        } else {
            double x = as_double(a), y = as_double(b);
            *cmp = x < y ? -1 : x > y;
        }
        return true;
    }
    if (a.type == DJ_STR && b.type == DJ_STR) {
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int r = n ? memcmp(a.u.s.p, b.u.s.p, n) : 0; /* UTF-8 byte order is code point order */
        *cmp = r ? cmp3(r) : (a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n);
        return true;
    }
    if (a.type == DJ_LIST && b.type == DJ_LIST) {
        size_t n = a.u.list->n < b.u.list->n ? a.u.list->n : b.u.list->n;
        for (size_t i = 0; i < n; i++) {
            if (dj_equal(a.u.list->v[i], b.u.list->v[i], depth + 1)) continue;
            return compare_depth(c, at, a.u.list->v[i], b.u.list->v[i], cmp, depth + 1);
        }
        *cmp = a.u.list->n < b.u.list->n ? -1 : a.u.list->n > b.u.list->n;
        return true;
    }
    return dj_fail(c, at, DF_ERR_INVALID, "cannot order a value of type %s against one of type %s",
                   dj_type_name(a), dj_type_name(b));
}

bool dj_compare(dj_ctx *c, const dj_node *at, dj_value a, dj_value b, int *cmp) {
    return compare_depth(c, at, a, b, cmp, 0);
}

/* ---- containers ---- */

dj_list *dj_list_new(dj_ctx *c, size_t cap) {
    dj_list *l = dj_arena_alloc(c->arena, sizeof *l);
    if (!l) return NULL;
    l->n = 0;
    l->cap = cap;
    l->v = NULL;
    l->tuple = false;
    if (cap) {
        size_t bytes;
        if (!df_mul_size(cap, sizeof(dj_value), &bytes)) return NULL;
        l->v = dj_arena_alloc(c->arena, bytes);
        if (!l->v) return NULL;
    }
    return l;
}

bool dj_list_push(dj_ctx *c, dj_list *l, dj_value v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4, bytes;
        if (!df_mul_size(cap, sizeof(dj_value), &bytes)) return false;
        dj_value *nv = dj_arena_alloc(c->arena, bytes);
        if (!nv) return false;
        if (l->n) memcpy(nv, l->v, l->n * sizeof(dj_value));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return true;
}

dj_dict *dj_dict_new(dj_ctx *c) { return dj_arena_zalloc(c->arena, sizeof(dj_dict)); }

static uint64_t hash_str(dj_str s) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < s.n; i++) h = (h ^ (unsigned char)s.p[i]) * 1099511628211ull;
    return h;
}

static bool dict_reindex(dj_arena *a, dj_dict *d) {
    size_t ns = 16;
    while (ns < d->cap * 2) ns *= 2;
    uint32_t *slots = dj_arena_zalloc(a, ns * sizeof(uint32_t));
    if (!slots) return false;
    for (size_t i = 0; i < d->n; i++) {
        size_t k = hash_str(d->e[i].key) & (ns - 1);
        while (slots[k]) k = (k + 1) & (ns - 1);
        slots[k] = (uint32_t)(i + 1);
    }
    d->slots = slots;
    d->nslots = ns;
    return true;
}

static ptrdiff_t dict_find(const dj_dict *d, dj_str key) {
    if (d->slots) {
        size_t k = hash_str(key) & (d->nslots - 1);
        while (d->slots[k]) {
            size_t i = d->slots[k] - 1;
            if (dj_str_eq(d->e[i].key, key)) return (ptrdiff_t)i;
            k = (k + 1) & (d->nslots - 1);
        }
        return -1;
    }
    for (size_t i = 0; i < d->n; i++)
        if (dj_str_eq(d->e[i].key, key)) return (ptrdiff_t)i;
    return -1;
}

const dj_value *dj_dict_get(const dj_dict *d, dj_str key) {
    ptrdiff_t i = dict_find(d, key);
    return i < 0 ? NULL : &d->e[i].val;
}

bool dj_dict_set(dj_arena *a, dj_dict *d, dj_str key, dj_value v) {
    ptrdiff_t i = dict_find(d, key);
    if (i >= 0) {
        d->e[i].val = v;
        return true;
    }
    if (d->n >= UINT32_MAX - 1) return false;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4, bytes;
        if (!df_mul_size(cap, sizeof(dj_entry), &bytes)) return false;
        dj_entry *ne = dj_arena_alloc(a, bytes);
        if (!ne) return false;
        if (d->n) memcpy(ne, d->e, d->n * sizeof(dj_entry));
        d->e = ne;
        d->cap = cap;
        if (d->cap > 8 && !dict_reindex(a, d)) return false;
    }
    d->e[d->n].key = key;
    d->e[d->n].val = v;
    d->n++;
    if (d->slots) {
        size_t k = hash_str(key) & (d->nslots - 1);
        while (d->slots[k]) k = (k + 1) & (d->nslots - 1);
        d->slots[k] = (uint32_t)d->n;
    }
    return true;
}

bool dj_str_dup(dj_ctx *c, const char *p, size_t n, dj_str *out) {
    char *q = dj_arena_alloc(c->arena, n + 1);
    if (!q) return dj_fail_nomem(c, NULL);
    if (n) memcpy(q, p, n);
    q[n] = '\0';
    *out = (dj_str){q, n};
    return true;
}

bool dj_str_from_buf(dj_ctx *c, const dj_buf *b, dj_str *out) {
    if (b->overflow) return false;
    *out = b->p ? (dj_str){b->p, b->n} : DJ_LIT("");
    return true;
}

/* ---- JSON input ---- */

bool dj_from_json(dj_ctx *c, const json_t *j, dj_value *out, int depth) {
    if (depth > 1000) return dj_fail(c, NULL, DF_ERR_INVALID, "the context nests deeper than 1000 levels");
    switch (json_typeof(j)) {
    case JSON_NULL: *out = dj_none(); return true;
    case JSON_TRUE: *out = dj_bool(true); return true;
    case JSON_FALSE: *out = dj_bool(false); return true;
    case JSON_INTEGER: *out = dj_int(json_integer_value(j)); return true;
    case JSON_REAL: *out = dj_float(json_real_value(j)); return true;
    case JSON_STRING:
        *out = dj_strv((dj_str){json_string_value(j), json_string_length(j)});
        return true;
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        dj_list *l = dj_list_new(c, n);
        if (!l) return dj_fail_nomem(c, NULL);
        for (size_t i = 0; i < n; i++) {
            if (!dj_from_json(c, json_array_get(j, i), &l->v[i], depth + 1)) return false;
            l->n++;
        }
        *out = (dj_value){.type = DJ_LIST, .u.list = l};
        return true;
    }
    case JSON_OBJECT: {
        dj_dict *d = dj_dict_new(c);
        if (!d) return dj_fail_nomem(c, NULL);
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)j, key, val) {
            dj_value v = {0};
            if (!dj_from_json(c, val, &v, depth + 1)) return false;
            if (!dj_dict_set(c->arena, d, (dj_str){key, strlen(key)}, v)) return dj_fail_nomem(c, NULL);
        }
        *out = (dj_value){.type = DJ_DICT, .u.dict = d};
        return true;
    }
    }
    return dj_fail(c, NULL, DF_ERR_INVALID, "unknown JSON value type");
}

/* ---- text forms ---- */

static bool put(dj_ctx *c, const dj_node *at, dj_buf *b, const char *s, size_t n) {
    if (dj_buf_put(b, s, n)) return true;
    if (b->nomem) return dj_fail_nomem(c, at);
    return dj_fail(c, at, DF_ERR_INVALID, "the template produced more than %zu bytes", b->limit);
}

static bool puts_(dj_ctx *c, const dj_node *at, dj_buf *b, const char *s) {
    return put(c, at, b, s, strlen(s));
}

/* Code points Python's repr() escapes besides ASCII controls: C1 controls, NBSP, the soft
 * hyphen, other space separators, line/paragraph separators and common format characters.
 * (Python consults the full Unicode database; these are the ones met in practice.) */
static bool repr_escapes(uint32_t cp) {
    if (cp < 0x20 || cp == 0x7F) return true;
    if (cp >= 0x80 && cp <= 0xA0) return true;
    if (cp == 0xAD || cp == 0x1680 || cp == 0x3000 || cp == 0xFEFF) return true;
    if (cp >= 0x2000 && cp <= 0x200F) return true;
    if (cp >= 0x2028 && cp <= 0x202F) return true;
    if (cp >= 0x205F && cp <= 0x2064) return true;
    if (cp >= 0xE000 && cp <= 0xF8FF) return true;
    return false;
}

static bool write_str_repr(dj_ctx *c, const dj_node *at, dj_buf *b, dj_str s) {
    char q = '\'';
    if (memchr(s.p, '\'', s.n) && !memchr(s.p, '"', s.n)) q = '"';
    if (!put(c, at, b, &q, 1)) return false;
    size_t i = 0;
    while (i < s.n) {
        size_t start = i;
        uint32_t cp = dj_utf8_next(s.p, s.n, &i);
        char tmp[16];
        const char *esc = NULL;
        if (cp == (uint32_t)q || cp == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)cp;
            tmp[2] = '\0';
            esc = tmp;
        } else if (cp == '\n') {
            esc = "\\n";
        } else if (cp == '\r') {
            esc = "\\r";
        } else if (cp == '\t') {
            esc = "\\t";
        } else if (repr_escapes(cp)) {
            if (cp <= 0xFF) snprintf(tmp, sizeof tmp, "\\x%02x", cp);
            else snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            esc = tmp;
        }
        if (esc) {
            if (!puts_(c, at, b, esc)) return false;
        } else if (!put(c, at, b, s.p + start, i - start)) {
            return false;
        }
    }
    return put(c, at, b, &q, 1);
}

static bool write_scalar(dj_ctx *c, const dj_node *at, dj_buf *b, dj_value v) {
    char tmp[48];
    switch (v.type) {
    case DJ_NONE: return puts_(c, at, b, "None");
    case DJ_BOOL: return puts_(c, at, b, v.u.b ? "True" : "False");
    case DJ_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i);
        return puts_(c, at, b, tmp);
    case DJ_FLOAT:
        dj_format_float(v.u.f, tmp);
        return puts_(c, at, b, tmp);
    default: return false;
    }
}

bool dj_write_repr(dj_ctx *c, const dj_node *at, dj_buf *b, dj_value v, int depth) {
    if (depth > DJ_MAX_VALUE_DEPTH)
        return dj_fail(c, at, DF_ERR_INVALID, "a value nests too deeply (or contains itself) to print");
    switch (v.type) {
    case DJ_UNDEF: return puts_(c, at, b, "Undefined");
    case DJ_NONE:
    case DJ_BOOL:
    case DJ_INT:
    case DJ_FLOAT: return write_scalar(c, at, b, v);
    case DJ_STR: return write_str_repr(c, at, b, v.u.s);
    case DJ_LIST: {
        bool t = v.u.list->tuple;
        if (!puts_(c, at, b, t ? "(" : "[")) return false;
        for (size_t i = 0; i < v.u.list->n; i++) {
            if (i && !puts_(c, at, b, ", ")) return false;
            if (!dj_write_repr(c, at, b, v.u.list->v[i], depth + 1)) return false;
        }
        if (t && v.u.list->n == 1 && !puts_(c, at, b, ",")) return false;
        return puts_(c, at, b, t ? ")" : "]");
    }
    case DJ_NS:
        if (!puts_(c, at, b, "<Namespace ")) return false;
        /* fall through */
    case DJ_DICT:
        if (!puts_(c, at, b, "{")) return false;
        for (size_t i = 0; i < v.u.dict->n; i++) {
            if (i && !puts_(c, at, b, ", ")) return false;
            if (!write_str_repr(c, at, b, v.u.dict->e[i].key) || !puts_(c, at, b, ": ") ||
                !dj_write_repr(c, at, b, v.u.dict->e[i].val, depth + 1))
                return false;
        }
        if (!puts_(c, at, b, "}")) return false;
        return v.type == DJ_NS ? puts_(c, at, b, ">") : true;
    case DJ_FUNC:
        if (!puts_(c, at, b, "<function ")) return false;
        if (!puts_(c, at, b, v.u.fn->name ? v.u.fn->name : "?")) return false;
        return puts_(c, at, b, ">");
    case DJ_LOOP: {
        char tmp[64];
        snprintf(tmp, sizeof tmp, "<LoopContext %zu/%zu>", v.u.loop->i + 1, v.u.loop->n);
        return puts_(c, at, b, tmp);
    }
    }
    return false;
}

bool dj_write_str(dj_ctx *c, const dj_node *at, dj_buf *b, dj_value v, int depth) {
    switch (v.type) {
    case DJ_UNDEF: return true;
    case DJ_STR: return put(c, at, b, v.u.s.p, v.u.s.n);
    default: return dj_write_repr(c, at, b, v, depth);
    }
}

static bool write_json_string(dj_ctx *c, const dj_node *at, dj_buf *b, dj_str s, bool ascii) {
    if (!puts_(c, at, b, "\"")) return false;
    size_t i = 0;
    while (i < s.n) {
        size_t start = i;
        uint32_t cp = dj_utf8_next(s.p, s.n, &i);
        char tmp[16];
        const char *esc = NULL;
        switch (cp) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (cp < 0x20 || (ascii && cp > 0x7E && cp != 0x7F)) {
                if (cp >= 0x10000) { /* ensure_ascii writes a surrogate pair */
                    uint32_t v = cp - 0x10000;
                    snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
                } else {
                    snprintf(tmp, sizeof tmp, "\\u%04x", cp);
                }
                esc = tmp;
            }
        }
        if (esc) {
            if (!puts_(c, at, b, esc)) return false;
        } else if (!put(c, at, b, s.p + start, i - start)) {
            return false;
        }
    }
    return puts_(c, at, b, "\"");
}

static bool json_newline(dj_ctx *c, const dj_node *at, dj_buf *b, const dj_json_opts *o, int level) {
    if (!puts_(c, at, b, "\n")) return false;
    for (int i = 0; i < level; i++) {
        if (o->indent_str.p) {
            if (!put(c, at, b, o->indent_str.p, o->indent_str.n)) return false;
        } else {
            for (int k = 0; k < o->indent; k++)
                if (!puts_(c, at, b, " ")) return false;
        }
    }
    return true;
}

static int key_order(const void *x, const void *y) {
    const dj_entry *a = *(const dj_entry *const *)x, *b = *(const dj_entry *const *)y;
    size_t n = a->key.n < b->key.n ? a->key.n : b->key.n;
    int r = n ? memcmp(a->key.p, b->key.p, n) : 0;
    if (r) return r;
    return a->key.n < b->key.n ? -1 : a->key.n > b->key.n;
}

bool dj_write_json(dj_ctx *c, const dj_node *at, dj_buf *b, dj_value v, const dj_json_opts *o,
                   int level) {
    if (level > DJ_MAX_VALUE_DEPTH)
        return dj_fail(c, at, DF_ERR_INVALID, "a value nests too deeply (or contains itself) for tojson");
    bool pretty = o->indent >= 0 || o->indent_str.p;
    char tmp[48];
    switch (v.type) {
    case DJ_NONE: return puts_(c, at, b, "null");
    case DJ_BOOL: return puts_(c, at, b, v.u.b ? "true" : "false");
    case DJ_INT: return write_scalar(c, at, b, v);
    case DJ_FLOAT:
        if (isnan(v.u.f)) return puts_(c, at, b, "NaN");
        if (isinf(v.u.f)) return puts_(c, at, b, v.u.f < 0 ? "-Infinity" : "Infinity");
        dj_format_float(v.u.f, tmp);
        return puts_(c, at, b, tmp);
    case DJ_STR: return write_json_string(c, at, b, v.u.s, o->ensure_ascii);
    case DJ_LIST: {
        if (v.u.list->n == 0) return puts_(c, at, b, "[]");
        if (!puts_(c, at, b, "[")) return false;
        for (size_t i = 0; i < v.u.list->n; i++) {
            if (i && !put(c, at, b, o->item_sep.p, o->item_sep.n)) return false;
            if (pretty && !json_newline(c, at, b, o, level + 1)) return false;
            if (!dj_write_json(c, at, b, v.u.list->v[i], o, level + 1)) return false;
        }
        if (pretty && !json_newline(c, at, b, o, level)) return false;
        return puts_(c, at, b, "]");
    }
    case DJ_DICT: {
        const dj_dict *d = v.u.dict;
        if (d->n == 0) return puts_(c, at, b, "{}");
        const dj_entry **order = dj_arena_alloc(c->arena, d->n * sizeof *order);
        if (!order) return dj_fail_nomem(c, at);
        for (size_t i = 0; i < d->n; i++) order[i] = &d->e[i];
        if (o->sort_keys) qsort(order, d->n, sizeof *order, key_order);
        if (!puts_(c, at, b, "{")) return false;
        for (size_t i = 0; i < d->n; i++) {
            if (i && !put(c, at, b, o->item_sep.p, o->item_sep.n)) return false;
            if (pretty && !json_newline(c, at, b, o, level + 1)) return false;
            if (!write_json_string(c, at, b, order[i]->key, o->ensure_ascii)) return false;
            if (!put(c, at, b, o->key_sep.p, o->key_sep.n)) return false;
            if (!dj_write_json(c, at, b, order[i]->val, o, level + 1)) return false;
        }
        if (pretty && !json_newline(c, at, b, o, level)) return false;
        return puts_(c, at, b, "}");
    }
    default:
        return dj_fail(c, at, DF_ERR_INVALID, "tojson: a value of type %s is not JSON serializable",
                       dj_type_name(v));
    }
}

bool dj_to_str(dj_ctx *c, const dj_node *at, dj_value v, dj_str *out) {
    if (v.type == DJ_STR) {
        *out = v.u.s;
        return true;
    }
    if (v.type == DJ_UNDEF) {
        *out = DJ_LIT("");
        return true;
    }
    dj_buf b;
    dj_buf_init(&b, c->arena, c->lim.max_output);
    if (!dj_write_str(c, at, &b, v, 0)) return false;
    return dj_str_from_buf(c, &b, out) || dj_fail_nomem(c, at);
}
