/* Jinja filters (x|name) and tests (x is name), with Jinja2's semantics under transformers:
 * `tojson` is json.dumps(x, ensure_ascii=False, indent=None, separators=None,
 * sort_keys=False) with those positional parameters, not Jinja2's own HTML-safe tojson. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_internal.h"

#define FILTER(name) static bool name(dj_ctx *c, const dj_node *at, dj_value in, const dj_args *a, dj_value *out)
#define TEST(name) static bool name(dj_ctx *c, const dj_node *at, dj_value in, const dj_args *a, bool *out)

static const char *const kw_none[] = {NULL};

static bool list_value(dj_list *l, dj_value *out) {
    *out = (dj_value){.type = DJ_LIST, .u.list = l};
    return true;
}

static bool str_of(dj_ctx *c, const dj_node *at, dj_value v, dj_str *s) { return dj_to_str(c, at, v, s); }

/* ---- strings ---- */

FILTER(f_safe) {
    if (!dj_check_args(c, at, "safe", a, 0, kw_none)) return false;
    *out = in;
    return true;
}

FILTER(f_string) {
    if (!dj_check_args(c, at, "string", a, 0, kw_none)) return false;
    dj_str s = {0};
    if (!str_of(c, at, in, &s)) return false;
    *out = dj_strv(s);
    return true;
}

FILTER(f_trim) {
    static const char *const kw[] = {"chars", NULL};
    if (!dj_check_args(c, at, "trim", a, 1, kw)) return false;
    dj_str s = {0}, r = {0};
    if (!str_of(c, at, in, &s)) return false;
    const dj_value *chars = dj_arg(a, 0, "chars");
    if (!dj_strip(c, s, chars, true, true, &r)) return false;
    *out = dj_strv(r);
    return true;
}

static bool case_filter(dj_ctx *c, const dj_node *at, dj_value in, const dj_args *a, dj_value *out, int mode,
                        const char *name) {
    if (!dj_check_args(c, at, name, a, 0, kw_none)) return false;
    dj_str s = {0}, r = {0};
    if (!str_of(c, at, in, &s) || !dj_upper_lower(c, s, mode, &r)) return false;
    *out = dj_strv(r);
    return true;
}
FILTER(f_lower) { return case_filter(c, at, in, a, out, 0, "lower"); }
FILTER(f_upper) { return case_filter(c, at, in, a, out, 1, "upper"); }
FILTER(f_title) { return case_filter(c, at, in, a, out, 2, "title"); }
FILTER(f_capitalize) { return case_filter(c, at, in, a, out, 3, "capitalize"); }

FILTER(f_replace) {
    static const char *const kw[] = {"old", "new", "count", NULL};
    if (!dj_check_args(c, at, "replace", a, 3, kw)) return false;
    const dj_value *o = dj_arg(a, 0, "old"), *n = dj_arg(a, 1, "new"), *cnt = dj_arg(a, 2, "count");
    dj_str s = {0}, os = {0}, ns = {0}, r = {0};
    if (!o || !n) return dj_fail(c, at, DF_ERR_INVALID, "replace needs the old and the new string");
    if (!str_of(c, at, in, &s) || !str_of(c, at, *o, &os) || !str_of(c, at, *n, &ns)) return false;
    int64_t count = -1;
    if (cnt && cnt->type != DJ_NONE) {
        if (cnt->type != DJ_INT) return dj_fail(c, at, DF_ERR_INVALID, "replace: count must be an integer");
        count = cnt->u.i;
    }
    if (!dj_replace(c, at, s, os, ns, count, &r)) return false;
    *out = dj_strv(r);
    return true;
}

FILTER(f_escape) {
    if (!dj_check_args(c, at, "escape", a, 0, kw_none)) return false;
    dj_str s = {0};
    if (!str_of(c, at, in, &s)) return false;
    dj_buf b;
    dj_buf_init(&b, c->arena, c->lim.max_output);
    for (size_t i = 0; i < s.n; i++) {
        const char *rep = NULL;
        switch (s.p[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&#34;"; break;
        case '\'': rep = "&#39;"; break;
        }
        if (!(rep ? dj_buf_puts(&b, rep) : dj_buf_putc(&b, s.p[i]))) return dj_fail_nomem(c, at);
    }
    dj_str r = {0};
    if (!dj_str_from_buf(c, &b, &r)) return dj_fail_nomem(c, at);
    *out = dj_strv(r);
    return true;
}

FILTER(f_indent) {
    static const char *const kw[] = {"width", "first", "blank", NULL};
    if (!dj_check_args(c, at, "indent", a, 3, kw)) return false;
    const dj_value *w = dj_arg(a, 0, "width"), *first = dj_arg(a, 1, "first"), *blank = dj_arg(a, 2, "blank");
    dj_str pad = DJ_LIT("    ");
    if (w && w->type == DJ_STR) {
        pad = w->u.s;
    } else if (w) {
        if (w->type != DJ_INT || w->u.i < 0 || w->u.i > 1000)
            return dj_fail(c, at, DF_ERR_INVALID, "indent: width must be a string or an integer in 0..1000");
        char *p = dj_arena_alloc(c->arena, (size_t)w->u.i + 1);
        if (!p) return dj_fail_nomem(c, at);
        memset(p, ' ', (size_t)w->u.i);
        pad = (dj_str){p, (size_t)w->u.i};
    }
    dj_str s = {0};
    if (!str_of(c, at, in, &s)) return false;
    /* Jinja2 appends "\n" and splits lines the way str.splitlines() does. */
    dj_str sn = {0};
    {
        char *p = dj_arena_alloc(c->arena, s.n + 2);
        if (!p) return dj_fail_nomem(c, at);
        memcpy(p, s.p, s.n);
        p[s.n] = '\n';
        p[s.n + 1] = '\0';
        sn = (dj_str){p, s.n + 1};
    }
    dj_list *lines = NULL;
    if (!dj_splitlines(c, at, sn, false, &lines)) return false;
    dj_buf b;
    dj_buf_init(&b, c->arena, c->lim.max_output);
    bool ok = true;
    for (size_t i = 0; i < lines->n && ok; i++) {
        dj_str line = lines->v[i].u.s;
        if (i) ok = dj_buf_putc(&b, '\n');
        bool do_pad = i == 0 ? (first && dj_truthy(*first)) : (line.n > 0 || (blank && dj_truthy(*blank)));
        if (do_pad) ok = ok && dj_buf_put(&b, pad.p, pad.n);
        ok = ok && dj_buf_put(&b, line.p, line.n);
    }
    if (lines->n == 0 && first && dj_truthy(*first)) ok = dj_buf_put(&b, pad.p, pad.n);
    dj_str r = {0};
    if (!ok || !dj_str_from_buf(c, &b, &r)) return b.nomem ? dj_fail_nomem(c, at) : dj_fail(c, at, DF_ERR_INVALID, "indent: result too long");
    *out = dj_strv(r);
    return true;
}

/* ---- JSON ---- */

FILTER(f_tojson) {
    static const char *const kw[] = {"ensure_ascii", "indent", "separators", "sort_keys", NULL};
    if (!dj_check_args(c, at, "tojson", a, 4, kw)) return false;
    const dj_value *ea = dj_arg(a, 0, "ensure_ascii"), *ind = dj_arg(a, 1, "indent"),
                   *sep = dj_arg(a, 2, "separators"), *sk = dj_arg(a, 3, "sort_keys");
    dj_json_opts o = {.indent = -1};
    o.ensure_ascii = ea && dj_truthy(*ea);
    o.sort_keys = sk && dj_truthy(*sk);
    if (ind && ind->type != DJ_NONE) {
        if (ind->type == DJ_STR) {
            o.indent_str = ind->u.s;
        } else if (ind->type == DJ_INT) {
            if (ind->u.i > 1000) return dj_fail(c, at, DF_ERR_INVALID, "tojson: indent larger than 1000");
            o.indent = ind->u.i < 0 ? 0 : (int)ind->u.i;
        } else {
            return dj_fail(c, at, DF_ERR_INVALID, "tojson: indent must be an integer or a string");
        }
    }
    bool pretty = o.indent >= 0 || o.indent_str.p;
    o.item_sep = pretty ? DJ_LIT(",") : DJ_LIT(", ");
    o.key_sep = DJ_LIT(": ");
    if (sep && sep->type != DJ_NONE) {
        if (sep->type != DJ_LIST || sep->u.list->n != 2 || sep->u.list->v[0].type != DJ_STR ||
            sep->u.list->v[1].type != DJ_STR)
            return dj_fail(c, at, DF_ERR_INVALID, "tojson: separators must be a pair of strings");
        o.item_sep = sep->u.list->v[0].u.s;
        o.key_sep = sep->u.list->v[1].u.s;
    }
    dj_buf b;
    dj_buf_init(&b, c->arena, c->lim.max_output);
    if (!dj_write_json(c, at, &b, in, &o, 0)) return false;
    dj_str r = {0};
    if (!dj_str_from_buf(c, &b, &r)) return dj_fail_nomem(c, at);
    *out = dj_strv(r);
    return true;
}

/* ---- sequences ---- */

static bool length_of(dj_ctx *c, const dj_node *at, dj_value v, int64_t *n) {
    switch (v.type) {
    case DJ_UNDEF: *n = 0; return true;
    case DJ_STR:
        if (!dj_charge(c, at, v.u.s.n / 64)) return false;
        *n = (int64_t)dj_utf8_count(v.u.s.p, v.u.s.n);
        return true;
    case DJ_LIST: *n = (int64_t)v.u.list->n; return true;
    case DJ_DICT: *n = (int64_t)v.u.dict->n; return true;
    case DJ_LOOP: *n = (int64_t)v.u.loop->n; return true;
    default: return dj_fail(c, at, DF_ERR_INVALID, "a value of type %s has no length", dj_type_name(v));
    }
}

FILTER(f_length) {
    if (!dj_check_args(c, at, "length", a, 0, kw_none)) return false;
    int64_t n = 0;
    if (!length_of(c, at, in, &n)) return false;
    *out = dj_int(n);
    return true;
}

FILTER(f_list) {
    if (!dj_check_args(c, at, "list", a, 0, kw_none)) return false;
    dj_list *l = NULL;
    return dj_iterate(c, at, in, &l) && list_value(l, out);
}

FILTER(f_first) {
    if (!dj_check_args(c, at, "first", a, 0, kw_none)) return false;
    dj_list *l = NULL;
    if (!dj_iterate(c, at, in, &l)) return false;
    *out = l->n ? l->v[0] : dj_undef(DJ_LIT("first item"));
    return true;
}

FILTER(f_last) {
    if (!dj_check_args(c, at, "last", a, 0, kw_none)) return false;
    dj_list *l = NULL;
    if (!dj_iterate(c, at, in, &l)) return false;
    *out = l->n ? l->v[l->n - 1] : dj_undef(DJ_LIT("last item"));
    return true;
}

FILTER(f_reverse) {
    if (!dj_check_args(c, at, "reverse", a, 0, kw_none)) return false;
    dj_list *l = NULL;
    if (!dj_iterate(c, at, in, &l)) return false;
    dj_list *r = dj_list_new(c, l->n);
    if (!r) return dj_fail_nomem(c, at);
    for (size_t i = l->n; i-- > 0;) r->v[r->n++] = l->v[i];
    if (in.type != DJ_STR) return list_value(r, out);
    dj_buf b;
    dj_buf_init(&b, c->arena, c->lim.max_output);
    for (size_t i = 0; i < r->n; i++)
        if (!dj_buf_put(&b, r->v[i].u.s.p, r->v[i].u.s.n)) return dj_fail_nomem(c, at);
    dj_str s = {0};
    if (!dj_str_from_buf(c, &b, &s)) return dj_fail_nomem(c, at);
    *out = dj_strv(s);
    return true;
}

FILTER(f_items) {
    if (!dj_check_args(c, at, "items", a, 0, kw_none)) return false;
    if (in.type == DJ_UNDEF) {
        dj_list *l = dj_list_new(c, 0);
        return l ? list_value(l, out) : dj_fail_nomem(c, at);
    }
    if (in.type != DJ_DICT)
        return dj_fail(c, at, DF_ERR_INVALID, "items: can only get item pairs from a mapping, not %s", dj_type_name(in));
    return dj_dict_items(c, at, in.u.dict, out);
}

/* An attribute path "a.b.0" of map/sort/selectattr: keys, then list indices. */
static bool attr_path(dj_ctx *c, const dj_node *at, dj_value item, const dj_value *attr, dj_value *out) {
    if (!attr || attr->type == DJ_NONE) {
        *out = item;
        return true;
    }
    if (attr->type == DJ_INT) {
        *out = item.type == DJ_LIST && attr->u.i >= 0 && (uint64_t)attr->u.i < item.u.list->n
                   ? item.u.list->v[attr->u.i]
                   : dj_undef(DJ_LIT("attribute"));
        return true;
    }
    if (attr->type != DJ_STR) return dj_fail(c, at, DF_ERR_INVALID, "an attribute name must be a string");
    dj_str path = attr->u.s;
    dj_value v = item;
    size_t i = 0;
    while (i <= path.n) {
        size_t j = i;
        while (j < path.n && path.p[j] != '.') j++;
        dj_str part = {path.p + i, j - i};
        bool digits = part.n > 0;
        int64_t idx = 0;
        for (size_t k = 0; k < part.n; k++) {
            if (part.p[k] < '0' || part.p[k] > '9' || idx > 100000000) digits = false;
            else idx = idx * 10 + (part.p[k] - '0');
        }
        if (v.type == DJ_DICT || v.type == DJ_NS) {
            const dj_value *x = dj_dict_get(v.u.dict, part);
            v = x ? *x : dj_undef(part);
        } else if (v.type == DJ_LIST && digits) {
            v = (size_t)idx < v.u.list->n ? v.u.list->v[idx] : dj_undef(part);
        } else {
            v = dj_undef(part);
        }
        i = j + 1;
    }
    *out = v;
    return true;
}

FILTER(f_join) {
    static const char *const kw[] = {"d", "attribute", NULL};
    if (!dj_check_args(c, at, "join", a, 2, kw)) return false;
    const dj_value *dv = dj_arg(a, 0, "d"), *attr = dj_arg(a, 1, "attribute");
    dj_str sep = DJ_LIT("");
    if (dv && !str_of(c, at, *dv, &sep)) return false;
    dj_list *l = NULL;
    if (!dj_iterate(c, at, in, &l)) return false;
    dj_buf b;
    dj_buf_init(&b, c->arena, c->lim.max_output);
    for (size_t i = 0; i < l->n; i++) {
        dj_value v = {0};
        if (!attr_path(c, at, l->v[i], attr, &v)) return false;
        if (i && !dj_buf_put(&b, sep.p, sep.n)) return dj_fail_nomem(c, at);
        if (!dj_write_str(c, at, &b, v, 0)) return false;
    }
    dj_str s = {0};
    if (!dj_str_from_buf(c, &b, &s)) return dj_fail_nomem(c, at);
    *out = dj_strv(s);
    return true;
}

FILTER(f_default) {
    static const char *const kw[] = {"default_value", "boolean", NULL};
    if (!dj_check_args(c, at, "default", a, 2, kw)) return false;
    const dj_value *dv = dj_arg(a, 0, "default_value"), *boolean = dj_arg(a, 1, "boolean");
    bool use = in.type == DJ_UNDEF || (boolean && dj_truthy(*boolean) && !dj_truthy(in));
    *out = use ? (dv ? *dv : dj_strv(DJ_LIT(""))) : in;
    return true;
}

/* Ordering for sort/unique/min/max: strings compare case-insensitively unless asked. */
typedef struct sort_ctx {
    dj_ctx *c;
    const dj_node *at;
    bool case_sensitive;
} sort_ctx;

static bool lowered(sort_ctx *sc, dj_value v, dj_value *out) {
    if (v.type != DJ_STR || sc->case_sensitive) {
        *out = v;
        return true;
    }
    dj_str s = {0};
    if (!dj_upper_lower(sc->c, v.u.s, 0, &s)) return false;
    *out = dj_strv(s);
    return true;
}

static bool sort_cmp(sort_ctx *sc, dj_value x, dj_value y, int *cmp) {
    dj_value lx = {0}, ly = {0};
    if (!lowered(sc, x, &lx) || !lowered(sc, y, &ly)) return false;
    return dj_compare(sc->c, sc->at, lx, ly, cmp);
}

/* A stable merge sort of (key, item) pairs, keyed by keys[]. */
static bool merge_sort(sort_ctx *sc, dj_value *keys, dj_value *items, size_t n, bool reverse) {
    if (n < 2) return true;
    dj_value *tk = dj_arena_alloc(sc->c->arena, n * sizeof *tk), *ti = dj_arena_alloc(sc->c->arena, n * sizeof *ti);
    if (!tk || !ti) return dj_fail_nomem(sc->c, sc->at);
    for (size_t width = 1; width < n; width *= 2) {
        if (!dj_charge(sc->c, sc->at, n)) return false;
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int cmp;
                if (!sort_cmp(sc, keys[i], keys[j], &cmp)) return false;
                bool take_right = reverse ? cmp < 0 : cmp > 0;
                if (take_right) {
                    tk[k] = keys[j];
                    ti[k++] = items[j++];
                } else {
                    tk[k] = keys[i];
                    ti[k++] = items[i++];
                }
            }
            while (i < mid) {
                tk[k] = keys[i];
                ti[k++] = items[i++];
            }
            while (j < hi) {
                tk[k] = keys[j];
                ti[k++] = items[j++];
            }
        }
        memcpy(keys, tk, n * sizeof *tk);
        memcpy(items, ti, n * sizeof *ti);
    }
    return true;
}

FILTER(f_sort) {
    static const char *const kw[] = {"reverse", "case_sensitive", "attribute", NULL};
    if (!dj_check_args(c, at, "sort", a, 3, kw)) return false;
    const dj_value *rev = dj_arg(a, 0, "reverse"), *cs = dj_arg(a, 1, "case_sensitive"), *attr = dj_arg(a, 2, "attribute");
    dj_list *l = NULL;
    if (!dj_iterate(c, at, in, &l)) return false;
    dj_list *r = dj_list_new(c, l->n);
    dj_value *keys = dj_arena_alloc(c->arena, (l->n + 1) * sizeof *keys);
    if (!r || !keys) return dj_fail_nomem(c, at);
    for (size_t i = 0; i < l->n; i++) {
        r->v[r->n++] = l->v[i];
        if (!attr_path(c, at, l->v[i], attr, &keys[i])) return false;
    }
    sort_ctx sc = {c, at, cs && dj_truthy(*cs)};
    if (!merge_sort(&sc, keys, r->v, r->n, rev && dj_truthy(*rev))) return false;
    return list_value(r, out);
}

FILTER(f_dictsort) {
    static const char *const kw[] = {"case_sensitive", "by", "reverse", NULL};
    if (!dj_check_args(c, at, "dictsort", a, 3, kw)) return false;
    const dj_value *cs = dj_arg(a, 0, "case_sensitive"), *by = dj_arg(a, 1, "by"), *rev = dj_arg(a, 2, "reverse");
    if (in.type != DJ_DICT) return dj_fail(c, at, DF_ERR_INVALID, "dictsort needs a mapping, not %s", dj_type_name(in));
    int pos = 0;
    if (by) {
        if (by->type == DJ_STR && dj_str_eqc(by->u.s, "value")) pos = 1;
        else if (!(by->type == DJ_STR && dj_str_eqc(by->u.s, "key")))
            return dj_fail(c, at, DF_ERR_INVALID, "dictsort: 'by' must be 'key' or 'value'");
    }
    dj_value items = {0};
    if (!dj_dict_items(c, at, in.u.dict, &items)) return false;
    dj_list *l = items.u.list;
    dj_value *keys = dj_arena_alloc(c->arena, (l->n + 1) * sizeof *keys);
    if (!keys) return dj_fail_nomem(c, at);
    for (size_t i = 0; i < l->n; i++) keys[i] = l->v[i].u.list->v[pos];
    sort_ctx sc = {c, at, cs && dj_truthy(*cs)};
    if (!merge_sort(&sc, keys, l->v, l->n, rev && dj_truthy(*rev))) return false;
    *out = items;
    return true;
}

FILTER(f_unique) {
    static const char *const kw[] = {"case_sensitive", "attribute", NULL};
    if (!dj_check_args(c, at, "unique", a, 2, kw)) return false;
    const dj_value *cs = dj_arg(a, 0, "case_sensitive"), *attr = dj_arg(a, 1, "attribute");
    dj_list *l = NULL;
    if (!dj_iterate(c, at, in, &l)) return false;
    sort_ctx sc = {c, at, cs && dj_truthy(*cs)};
    dj_list *r = dj_list_new(c, l->n);
    dj_value *seen = dj_arena_alloc(c->arena, (l->n + 1) * sizeof *seen);
    if (!r || !seen) return dj_fail_nomem(c, at);
    if (!dj_charge(c, at, (uint64_t)l->n * l->n / 16)) return false;
    for (size_t i = 0; i < l->n; i++) {
        dj_value k = {0}, lk = {0};
        if (!attr_path(c, at, l->v[i], attr, &k) || !lowered(&sc, k, &lk)) return false;
        bool dup = false;
        for (size_t j = 0; j < r->n && !dup; j++) dup = dj_equal(seen[j], lk, 0);
        if (!dup) {
            seen[r->n] = lk;
            r->v[r->n++] = l->v[i];
        }
    }
    return list_value(r, out);
}

static bool min_max(dj_ctx *c, const dj_node *at, dj_value in, const dj_args *a, dj_value *out, bool want_max) {
    static const char *const kw[] = {"case_sensitive", "attribute", NULL};
    if (!dj_check_args(c, at, want_max ? "max" : "min", a, 2, kw)) return false;
    const dj_value *cs = dj_arg(a, 0, "case_sensitive"), *attr = dj_arg(a, 1, "attribute");
    dj_list *l = NULL;
    if (!dj_iterate(c, at, in, &l)) return false;
    if (!l->n) {
        *out = dj_undef(DJ_LIT("min/max of an empty sequence"));
        return true;
    }
    sort_ctx sc = {c, at, cs && dj_truthy(*cs)};
    size_t best = 0;
    dj_value bk = {0};
    if (!attr_path(c, at, l->v[0], attr, &bk)) return false;
    for (size_t i = 1; i < l->n; i++) {
        dj_value k = {0};
        int cmp;
        if (!attr_path(c, at, l->v[i], attr, &k) || !sort_cmp(&sc, k, bk, &cmp)) return false;
        if (want_max ? cmp > 0 : cmp < 0) {
            best = i;
            bk = k;
        }
    }
    *out = l->v[best];
    return true;
}
FILTER(f_min) { return min_max(c, at, in, a, out, false); }
FILTER(f_max) { return min_max(c, at, in, a, out, true); }

FILTER(f_sum) {
    static const char *const kw[] = {"attribute", "start", NULL};
    if (!dj_check_args(c, at, "sum", a, 2, kw)) return false;
    const dj_value *attr = dj_arg(a, 0, "attribute"), *start = dj_arg(a, 1, "start");
    dj_list *l = NULL;
    if (!dj_iterate(c, at, in, &l)) return false;
    dj_value acc = start ? *start : dj_int(0);
    for (size_t i = 0; i < l->n; i++) {
        dj_value v = {0};
        if (!attr_path(c, at, l->v[i], attr, &v)) return false;
        bool fa = acc.type == DJ_FLOAT || v.type == DJ_FLOAT;
        if ((acc.type != DJ_INT && acc.type != DJ_FLOAT && acc.type != DJ_BOOL) ||
            (v.type != DJ_INT && v.type != DJ_FLOAT && v.type != DJ_BOOL))
            return dj_fail(c, at, DF_ERR_INVALID, "sum: cannot add %s and %s", dj_type_name(acc), dj_type_name(v));
        if (fa) {
            double x = acc.type == DJ_FLOAT ? acc.u.f : (double)(acc.type == DJ_BOOL ? acc.u.b : acc.u.i);
            double y = v.type == DJ_FLOAT ? v.u.f : (double)(v.type == DJ_BOOL ? v.u.b : v.u.i);
            acc = dj_float(x + y);
        } else {
            int64_t r, x = acc.type == DJ_BOOL ? acc.u.b : acc.u.i, y = v.type == DJ_BOOL ? v.u.b : v.u.i;
            if (__builtin_add_overflow(x, y, &r)) return dj_fail(c, at, DF_ERR_INVALID, "integer overflow");
            acc = dj_int(r);
        }
    }
    *out = acc;
    return true;
}

/* map('filter', args...) or map(attribute='a.b', default=x) */
FILTER(f_map) {
    dj_list *l = NULL;
    if (!dj_iterate(c, at, in, &l)) return false;
    dj_list *r = dj_list_new(c, l->n);
    if (!r) return dj_fail_nomem(c, at);
    if (a->npos >= 1) {
        if (a->pos[0].type != DJ_STR) return dj_fail(c, at, DF_ERR_INVALID, "map: the filter name must be a string");
        const dj_filter_def *f = dj_find_filter(a->pos[0].u.s);
        if (!f)
            return dj_fail(c, at, DF_ERR_UNSUPPORTED, "map: no filter named '%.*s'",
                           (int)(a->pos[0].u.s.n > 60 ? 60 : a->pos[0].u.s.n), a->pos[0].u.s.p);
        dj_args rest = *a;
        rest.pos++;
        rest.npos--;
        for (size_t i = 0; i < l->n; i++)
            if (!f->fn(c, at, l->v[i], &rest, &r->v[r->n++])) return false;
        return list_value(r, out);
    }
    static const char *const kw[] = {"attribute", "default", NULL};
    if (!dj_check_args(c, at, "map", a, 0, kw)) return false;
    const dj_value *attr = dj_arg(a, SIZE_MAX, "attribute"), *def = dj_arg(a, SIZE_MAX, "default");
    if (!attr) return dj_fail(c, at, DF_ERR_INVALID, "map needs a filter name or attribute=");
    for (size_t i = 0; i < l->n; i++) {
        dj_value v = {0};
        if (!attr_path(c, at, l->v[i], attr, &v)) return false;
        r->v[r->n++] = v.type == DJ_UNDEF && def ? *def : v;
    }
    return list_value(r, out);
}

/* select/reject(test, args...) and selectattr/rejectattr(attr, test, args...) */
static bool select_common(dj_ctx *c, const dj_node *at, dj_value in, const dj_args *a, dj_value *out, bool keep,
                          bool by_attr) {
    if (a->nkw) return dj_fail(c, at, DF_ERR_INVALID, "select/reject filters take positional arguments only");
    size_t k = 0;
    const dj_value *attr = NULL;
    if (by_attr) {
        if (a->npos < 1) return dj_fail(c, at, DF_ERR_INVALID, "selectattr/rejectattr need an attribute name");
        attr = &a->pos[k++];
    }
    const dj_test_def *test = NULL;
    if (k < a->npos) {
        if (a->pos[k].type != DJ_STR) return dj_fail(c, at, DF_ERR_INVALID, "the test name must be a string");
        test = dj_find_test(a->pos[k].u.s);
        if (!test)
            return dj_fail(c, at, DF_ERR_UNSUPPORTED, "no test named '%.*s'", (int)(a->pos[k].u.s.n > 60 ? 60 : a->pos[k].u.s.n),
                           a->pos[k].u.s.p);
        k++;
    }
    dj_args rest = {a->pos + k, a->npos - k, NULL, NULL, 0};
    dj_list *l = NULL;
    if (!dj_iterate(c, at, in, &l)) return false;
    dj_list *r = dj_list_new(c, l->n);
    if (!r) return dj_fail_nomem(c, at);
    for (size_t i = 0; i < l->n; i++) {
        dj_value v = {0};
        bool t;
        if (!attr_path(c, at, l->v[i], attr, &v)) return false;
        if (test) {
            if (!test->fn(c, at, v, &rest, &t)) return false;
        } else {
            t = dj_truthy(v);
        }
        if (t == keep) r->v[r->n++] = l->v[i];
    }
    return list_value(r, out);
}
FILTER(f_select) { return select_common(c, at, in, a, out, true, false); }
FILTER(f_reject) { return select_common(c, at, in, a, out, false, false); }
FILTER(f_selectattr) { return select_common(c, at, in, a, out, true, true); }
FILTER(f_rejectattr) { return select_common(c, at, in, a, out, false, true); }

/* ---- numbers ---- */

FILTER(f_abs) {
    if (!dj_check_args(c, at, "abs", a, 0, kw_none)) return false;
    if (in.type == DJ_FLOAT) *out = dj_float(fabs(in.u.f));
    else if (in.type == DJ_INT && in.u.i != INT64_MIN) *out = dj_int(in.u.i < 0 ? -in.u.i : in.u.i);
    else if (in.type == DJ_BOOL) *out = dj_int(in.u.b);
    else return dj_fail(c, at, DF_ERR_INVALID, "abs: bad operand type %s", dj_type_name(in));
    return true;
}

static bool parse_number_str(dj_str s, bool want_int, int base, int64_t *iv, double *fv) {
    char buf[128];
    size_t b = 0, e = s.n;
    while (b < e && (s.p[b] == ' ' || (s.p[b] >= 9 && s.p[b] <= 13))) b++;
    while (e > b && (s.p[e - 1] == ' ' || (s.p[e - 1] >= 9 && s.p[e - 1] <= 13))) e--;
    size_t o = 0;
    for (size_t i = b; i < e; i++) {
        if (s.p[i] == '_') continue;
        if (o >= sizeof buf - 1) return false;
        buf[o++] = s.p[i];
    }
    buf[o] = '\0';
    if (!o) return false;
    char *end;
    if (want_int) {
        errno = 0;
        long long v = strtoll(buf, &end, base);
        if (*end == '\0' && errno == 0) {
            *iv = v;
            return true;
        }
        return false;
    }
    double d = strtod(buf, &end);
    if (*end != '\0') return false;
    *fv = d;
    return true;
}

FILTER(f_int) {
    static const char *const kw[] = {"default", "base", NULL};
    if (!dj_check_args(c, at, "int", a, 2, kw)) return false;
    const dj_value *def = dj_arg(a, 0, "default"), *basev = dj_arg(a, 1, "base");
    int base = 10;
    if (basev) {
        if (basev->type != DJ_INT || basev->u.i < 2 || basev->u.i > 36)
            return dj_fail(c, at, DF_ERR_INVALID, "int: base must be an integer in 2..36");
        base = (int)basev->u.i;
    }
    dj_value d = def ? *def : dj_int(0);
    switch (in.type) {
    case DJ_INT: *out = in; return true;
    case DJ_BOOL: *out = dj_int(in.u.b); return true;
    case DJ_FLOAT:
        if (!(in.u.f > -9.2e18 && in.u.f < 9.2e18)) *out = d;
        else *out = dj_int((int64_t)in.u.f);
        return true;
    case DJ_STR: {
        int64_t iv = 0;
        double fv = 0;
        if (parse_number_str(in.u.s, true, base, &iv, &fv)) *out = dj_int(iv);
        else if (parse_number_str(in.u.s, false, 10, &iv, &fv) && fv > -9.2e18 && fv < 9.2e18) *out = dj_int((int64_t)fv);
        else *out = d;
        return true;
    }
    default: *out = d; return true;
    }
}

FILTER(f_float) {
    static const char *const kw[] = {"default", NULL};
    if (!dj_check_args(c, at, "float", a, 1, kw)) return false;
    const dj_value *def = dj_arg(a, 0, "default");
    dj_value d = def ? *def : dj_float(0.0);
    switch (in.type) {
    case DJ_FLOAT: *out = in; return true;
    case DJ_INT: *out = dj_float((double)in.u.i); return true;
    case DJ_BOOL: *out = dj_float(in.u.b); return true;
    case DJ_STR: {
        int64_t iv = 0;
        double fv = 0;
        *out = parse_number_str(in.u.s, false, 10, &iv, &fv) ? dj_float(fv) : d;
        return true;
    }
    default: *out = d; return true;
    }
}

FILTER(f_round) {
    static const char *const kw[] = {"precision", "method", NULL};
    if (!dj_check_args(c, at, "round", a, 2, kw)) return false;
    const dj_value *pv = dj_arg(a, 0, "precision"), *mv = dj_arg(a, 1, "method");
    int64_t prec = 0;
    if (pv) {
        if (pv->type != DJ_INT || pv->u.i < -300 || pv->u.i > 300)
            return dj_fail(c, at, DF_ERR_INVALID, "round: precision must be an integer");
        prec = pv->u.i;
    }
    int method = 0; /* common */
    if (mv) {
        if (mv->type == DJ_STR && dj_str_eqc(mv->u.s, "ceil")) method = 1;
        else if (mv->type == DJ_STR && dj_str_eqc(mv->u.s, "floor")) method = 2;
        else if (!(mv->type == DJ_STR && dj_str_eqc(mv->u.s, "common")))
            return dj_fail(c, at, DF_ERR_INVALID, "round: method must be common, ceil or floor");
    }
    if (in.type != DJ_FLOAT && in.type != DJ_INT && in.type != DJ_BOOL)
        return dj_fail(c, at, DF_ERR_INVALID, "round: bad operand type %s", dj_type_name(in));
    double x = in.type == DJ_FLOAT ? in.u.f : (double)(in.type == DJ_BOOL ? in.u.b : in.u.i);
    double m = pow(10.0, (double)prec);
    double y = x * m;
    y = method == 1 ? ceil(y) : method == 2 ? floor(y) : nearbyint(y); /* Python rounds half to even */
    *out = dj_float(y / m);
    return true;
}

/* ---- the filter table ---- */

static const dj_filter_def g_filters[] = {
    {"abs", f_abs},           {"capitalize", f_capitalize}, {"count", f_length},   {"d", f_default},
    {"default", f_default},   {"dictsort", f_dictsort},     {"e", f_escape},       {"escape", f_escape},
    {"first", f_first},       {"float", f_float},           {"indent", f_indent},  {"int", f_int},
    {"items", f_items},       {"join", f_join},             {"last", f_last},      {"length", f_length},
    {"list", f_list},         {"lower", f_lower},           {"map", f_map},        {"max", f_max},
    {"min", f_min},           {"reject", f_reject},         {"rejectattr", f_rejectattr},
    {"replace", f_replace},   {"reverse", f_reverse},       {"round", f_round},    {"safe", f_safe},
    {"select", f_select},     {"selectattr", f_selectattr}, {"sort", f_sort},      {"string", f_string},
    {"sum", f_sum},           {"title", f_title},           {"tojson", f_tojson},  {"trim", f_trim},
    {"unique", f_unique},     {"upper", f_upper},
};

const dj_filter_def *dj_find_filter(dj_str name) {
    for (size_t i = 0; i < sizeof g_filters / sizeof g_filters[0]; i++)
        if (dj_str_eqc(name, g_filters[i].name)) return &g_filters[i];
    return NULL;
}

/* ---- tests ---- */

static bool one_arg(dj_ctx *c, const dj_node *at, const char *name, const dj_args *a, const dj_value **v) {
    if (a->nkw || a->npos != 1) return dj_fail(c, at, DF_ERR_INVALID, "the test '%s' takes exactly one argument", name);
    *v = &a->pos[0];
    return true;
}

static bool no_arg(dj_ctx *c, const dj_node *at, const char *name, const dj_args *a) {
    if (a->nkw || a->npos) return dj_fail(c, at, DF_ERR_INVALID, "the test '%s' takes no argument", name);
    return true;
}

#define SIMPLE_TEST(fn, name, expr)                      \
    TEST(fn) {                                           \
        if (!no_arg(c, at, name, a)) return false;       \
        *out = (expr);                                   \
        return true;                                     \
    }

SIMPLE_TEST(t_defined, "defined", in.type != DJ_UNDEF)
SIMPLE_TEST(t_undefined, "undefined", in.type == DJ_UNDEF)
SIMPLE_TEST(t_none, "none", in.type == DJ_NONE)
SIMPLE_TEST(t_boolean, "boolean", in.type == DJ_BOOL)
SIMPLE_TEST(t_true, "true", in.type == DJ_BOOL && in.u.b)
SIMPLE_TEST(t_false, "false", in.type == DJ_BOOL && !in.u.b)
SIMPLE_TEST(t_integer, "integer", in.type == DJ_INT)
SIMPLE_TEST(t_float, "float", in.type == DJ_FLOAT)
SIMPLE_TEST(t_number, "number", in.type == DJ_INT || in.type == DJ_FLOAT || in.type == DJ_BOOL)
SIMPLE_TEST(t_string, "string", in.type == DJ_STR)
SIMPLE_TEST(t_mapping, "mapping", in.type == DJ_DICT)
/* Jinja2's Undefined has __len__ and __getitem__, __iter__ and __call__: it passes these. */
SIMPLE_TEST(t_sequence, "sequence", in.type == DJ_STR || in.type == DJ_LIST || in.type == DJ_DICT || in.type == DJ_UNDEF)
SIMPLE_TEST(t_iterable, "iterable",
            in.type == DJ_STR || in.type == DJ_LIST || in.type == DJ_DICT || in.type == DJ_UNDEF || in.type == DJ_LOOP)
SIMPLE_TEST(t_callable, "callable", in.type == DJ_FUNC || in.type == DJ_UNDEF || in.type == DJ_LOOP)
SIMPLE_TEST(t_escaped, "escaped", false)

static bool case_test(dj_ctx *c, const dj_node *at, dj_value in, const dj_args *a, bool *out, bool upper) {
    if (!no_arg(c, at, upper ? "upper" : "lower", a)) return false;
    dj_str s = {0};
    if (!dj_to_str(c, at, in, &s)) return false;
    bool cased = false, ok = true;
    for (size_t i = 0; i < s.n; i++) {
        char ch = s.p[i];
        if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') {
            cased = true;
            if ((ch < 'a') != upper) ok = false;
        }
    }
    *out = cased && ok;
    return true;
}
TEST(t_lower) { return case_test(c, at, in, a, out, false); }
TEST(t_upper) { return case_test(c, at, in, a, out, true); }

static bool parity(dj_ctx *c, const dj_node *at, dj_value in, const dj_args *a, bool *out, int want) {
    if (!no_arg(c, at, want ? "odd" : "even", a)) return false;
    if (in.type == DJ_INT || in.type == DJ_BOOL) {
        int64_t v = in.type == DJ_BOOL ? in.u.b : in.u.i;
        *out = (v & 1) == want;
    } else if (in.type == DJ_FLOAT) {
        double m = fmod(in.u.f, 2.0);
        if (m < 0) m += 2.0;
        *out = m == (double)want;
    } else {
        return dj_fail(c, at, DF_ERR_INVALID, "odd/even need a number, not %s", dj_type_name(in));
    }
    return true;
}
TEST(t_odd) { return parity(c, at, in, a, out, 1); }
TEST(t_even) { return parity(c, at, in, a, out, 0); }

TEST(t_divisibleby) {
    const dj_value *d = NULL;
    if (!one_arg(c, at, "divisibleby", a, &d)) return false;
    if ((in.type != DJ_INT && in.type != DJ_BOOL) || (d->type != DJ_INT && d->type != DJ_BOOL))
        return dj_fail(c, at, DF_ERR_INVALID, "divisibleby needs integers");
    int64_t x = in.type == DJ_BOOL ? in.u.b : in.u.i, y = d->type == DJ_BOOL ? d->u.b : d->u.i;
    if (y == 0) return dj_fail(c, at, DF_ERR_INVALID, "divisibleby(0)");
    *out = y == -1 || x % y == 0;
    return true;
}

static bool cmp_test(dj_ctx *c, const dj_node *at, dj_value in, const dj_args *a, bool *out, int kind,
                     const char *name) {
    const dj_value *o = NULL;
    if (!one_arg(c, at, name, a, &o)) return false;
    if (kind == 0) {
        *out = dj_equal(in, *o, 0);
        return true;
    }
    if (kind == 1) {
        *out = !dj_equal(in, *o, 0);
        return true;
    }
    int cmp;
    if (in.type == DJ_UNDEF || o->type == DJ_UNDEF)
        return dj_fail(c, at, DF_ERR_INVALID, "the test '%s' compares an undefined value", name);
    if (!dj_compare(c, at, in, *o, &cmp)) return false;
    switch (kind) {
    case 2: *out = cmp < 0; break;
    case 3: *out = cmp <= 0; break;
    case 4: *out = cmp > 0; break;
    default: *out = cmp >= 0; break;
    }
    return true;
}
TEST(t_eq) { return cmp_test(c, at, in, a, out, 0, "eq"); }
TEST(t_ne) { return cmp_test(c, at, in, a, out, 1, "ne"); }
TEST(t_lt) { return cmp_test(c, at, in, a, out, 2, "lt"); }
TEST(t_le) { return cmp_test(c, at, in, a, out, 3, "le"); }
TEST(t_gt) { return cmp_test(c, at, in, a, out, 4, "gt"); }
TEST(t_ge) { return cmp_test(c, at, in, a, out, 5, "ge"); }

TEST(t_in) {
    const dj_value *seq = NULL;
    if (!one_arg(c, at, "in", a, &seq)) return false;
    return dj_contains(c, at, in, *seq, out);
}

TEST(t_sameas) {
    const dj_value *o = NULL;
    if (!one_arg(c, at, "sameas", a, &o)) return false;
    if (in.type != o->type) *out = false;
    else if (in.type == DJ_LIST) *out = in.u.list == o->u.list;
    else if (in.type == DJ_DICT || in.type == DJ_NS) *out = in.u.dict == o->u.dict;
    else *out = dj_equal(in, *o, 0);
    return true;
}

TEST(t_filter) {
    const dj_value *n = NULL;
    if (!one_arg(c, at, "filter", a, &n)) return false;
    *out = n->type == DJ_STR && dj_find_filter(n->u.s) != NULL;
    return true;
}

TEST(t_test) {
    const dj_value *n = NULL;
    if (!one_arg(c, at, "test", a, &n)) return false;
    *out = n->type == DJ_STR && dj_find_test(n->u.s) != NULL;
    return true;
}

static const dj_test_def g_tests[] = {
    {"boolean", t_boolean},   {"callable", t_callable}, {"defined", t_defined},   {"divisibleby", t_divisibleby},
    {"eq", t_eq},             {"equalto", t_eq},        {"escaped", t_escaped},   {"even", t_even},
    {"false", t_false},       {"filter", t_filter},     {"float", t_float},       {"ge", t_ge},
    {"greaterthan", t_gt},    {"gt", t_gt},             {"in", t_in},             {"integer", t_integer},
    {"iterable", t_iterable}, {"le", t_le},             {"lessthan", t_lt},       {"lower", t_lower},
    {"lt", t_lt},             {"mapping", t_mapping},   {"ne", t_ne},             {"none", t_none},
    {"number", t_number},     {"odd", t_odd},           {"sameas", t_sameas},     {"sequence", t_sequence},
    {"string", t_string},     {"test", t_test},         {"true", t_true},         {"undefined", t_undefined},
    {"upper", t_upper},
};

const dj_test_def *dj_find_test(dj_str name) {
    for (size_t i = 0; i < sizeof g_tests / sizeof g_tests[0]; i++)
        if (dj_str_eqc(name, g_tests[i].name)) return &g_tests[i];
    return NULL;
}
