/* Methods of str, dict and loop values, the global functions (range, namespace, dict,
 * raise_exception, strftime_now), and the string and sequence helpers filters share.
 * Semantics are Python's: strip('\n') strips only newlines, split() with no separator
 * splits on runs of whitespace, lengths and indices count code points. Case mapping
 * (upper, lower, title, capitalize) covers ASCII letters only and leaves other text as is. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/jinja_internal.h"

const dj_value *dj_arg(const dj_args *a, size_t i, const char *name) {
    if (i < a->npos) return &a->pos[i];
    if (name)
        for (size_t k = 0; k < a->nkw; k++)
            if (dj_str_eqc(a->kwname[k], name)) return &a->kw[k];
    return NULL;
}

bool dj_check_args(dj_ctx *c, const dj_node *at, const char *callee, const dj_args *a, size_t npos,
                   const char *const *names) {
    if (a->npos > npos)
        return dj_fail(c, at, DF_ERR_INVALID, "%s takes at most %zu positional argument(s), got %zu", callee, npos,
                       a->npos);
    for (size_t k = 0; k < a->nkw; k++) {
        bool ok = false;
        for (size_t j = 0; names && names[j]; j++) ok |= dj_str_eqc(a->kwname[k], names[j]);
        if (!ok)
            return dj_fail(c, at, DF_ERR_INVALID, "%s got an unexpected keyword argument '%.*s'", callee,
                           (int)(a->kwname[k].n > 60 ? 60 : a->kwname[k].n), a->kwname[k].p);
    }
    return true;
}

static bool want_str(dj_ctx *c, const dj_node *at, const dj_value *v, const char *what, dj_str *out) {
    if (!v || v->type != DJ_STR)
        return dj_fail(c, at, DF_ERR_INVALID, "%s must be a string, not %s", what, v ? dj_type_name(*v) : "missing");
    *out = v->u.s;
    return true;
}

static bool want_int(dj_ctx *c, const dj_node *at, const dj_value *v, const char *what, int64_t *out) {
    if (!v || (v->type != DJ_INT && v->type != DJ_BOOL))
        return dj_fail(c, at, DF_ERR_INVALID, "%s must be an integer, not %s", what, v ? dj_type_name(*v) : "missing");
    *out = v->type == DJ_BOOL ? v->u.b : v->u.i;
    return true;
}

/* ---- string helpers ---- */

static bool in_set(uint32_t cp, dj_str set) {
    for (size_t i = 0; i < set.n;)
        if (dj_utf8_next(set.p, set.n, &i) == cp) return true;
    return false;
}

bool dj_strip(dj_ctx *c, dj_str s, const dj_value *chars, bool left, bool right, dj_str *out) {
    bool ws = !chars || chars->type == DJ_NONE || chars->type == DJ_UNDEF;
    if (!ws && chars->type != DJ_STR)
        return dj_fail(c, NULL, DF_ERR_INVALID, "strip arg must be None or str, not %s", dj_type_name(*chars));
    size_t i = 0, begin = 0, end = s.n;
    if (left) {
        while (i < s.n) {
            size_t k = i;
            uint32_t cp = dj_utf8_next(s.p, s.n, &k);
            if (ws ? !dj_is_space(cp) : !in_set(cp, chars->u.s)) break;
            i = k;
        }
        begin = i;
    }
    if (right) {
        /* backwards, one code point at a time: cost proportional to what is stripped */
        while (end > begin) {
            size_t start = end - 1;
            while (start > begin && end - start < 4 && ((unsigned char)s.p[start] & 0xC0) == 0x80) start--;
            size_t k = start;
            uint32_t cp = dj_utf8_next(s.p, end, &k);
            if (k != end) { /* not one well-formed code point: the last byte stands alone */
                start = end - 1;
                k = start;
                cp = dj_utf8_next(s.p, end, &k);
            }
            if (ws ? !dj_is_space(cp) : !in_set(cp, chars->u.s)) break;
            end = start;
        }
    }
    *out = (dj_str){s.p + begin, end - begin};
    return true;
}

bool dj_replace(dj_ctx *c, const dj_node *at, dj_str s, dj_str old, dj_str new_, int64_t count, dj_str *out) {
    if (count == 0 || (old.n && (s.n < old.n || !memmem(s.p, s.n, old.p, old.n)))) {
        *out = s;
        return true;
    }
    if (!dj_charge(c, at, s.n / 64 + 1)) return false;
    dj_buf b;
    dj_buf_init(&b, c->arena, c->lim.max_output);
    int64_t done = 0;
    bool ok = true;
    if (old.n == 0) { /* Python inserts `new` before every code point and at the end */
        size_t i = 0;
        while (ok) {
            if (count < 0 || done < count) {
                ok = dj_buf_put(&b, new_.p, new_.n);
                done++;
            }
            if (i >= s.n) break;
            size_t k = i;
            dj_utf8_next(s.p, s.n, &k);
            ok = ok && dj_buf_put(&b, s.p + i, k - i);
            i = k;
        }
    } else {
        size_t i = 0;
        while (ok && i < s.n) {
            const char *hit = (count < 0 || done < count) ? memmem(s.p + i, s.n - i, old.p, old.n) : NULL;
            if (!hit) {
                ok = dj_buf_put(&b, s.p + i, s.n - i);
                break;
            }
            size_t at_i = (size_t)(hit - s.p);
            ok = dj_buf_put(&b, s.p + i, at_i - i) && dj_buf_put(&b, new_.p, new_.n);
            done++;
            i = at_i + old.n;
        }
    }
    if (!ok) {
        if (b.nomem) return dj_fail_nomem(c, at);
        return dj_fail(c, at, DF_ERR_INVALID, "replace() result longer than %zu bytes", b.limit);
    }
    return dj_str_from_buf(c, &b, out) || dj_fail_nomem(c, at);
}

static bool is_ascii_alpha(uint32_t cp) { return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z'; }
static bool is_letterish(uint32_t cp) { return is_ascii_alpha(cp) || (cp >= 0xC0 && !dj_is_space(cp)); }

bool dj_upper_lower(dj_ctx *c, dj_str s, int mode, dj_str *out) {
    char *p = dj_arena_alloc(c->arena, s.n + 1);
    if (!p) return dj_fail_nomem(c, NULL);
    if (!dj_charge(c, NULL, s.n / 64)) return false;
    bool prev_letter = false, first = true;
    size_t i = 0;
    while (i < s.n) {
        size_t start = i;
        uint32_t cp = dj_utf8_next(s.p, s.n, &i);
        if (is_ascii_alpha(cp)) {
            bool up;
            switch (mode) {
            case 0: up = false; break;
            case 1: up = true; break;
            case 2: up = !prev_letter; break;
            default: up = first; break;
            }
            p[start] = (char)(up ? (cp & ~0x20u) : (cp | 0x20u));
        } else {
            memcpy(p + start, s.p + start, i - start);
        }
        prev_letter = is_letterish(cp);
        first = false;
    }
    p[s.n] = '\0';
    *out = (dj_str){p, s.n};
    return true;
}

bool dj_iterate(dj_ctx *c, const dj_node *at, dj_value v, dj_list **out) {
    switch (v.type) {
    case DJ_LIST: *out = v.u.list; return dj_charge(c, at, v.u.list->n / 8);
    case DJ_UNDEF:
        *out = dj_list_new(c, 0);
        return *out || dj_fail_nomem(c, at);
    case DJ_STR: {
        dj_list *l = dj_list_new(c, v.u.s.n);
        if (!l) return dj_fail_nomem(c, at);
        if (!dj_charge(c, at, v.u.s.n)) return false;
        for (size_t i = 0; i < v.u.s.n;) {
            size_t start = i;
            dj_utf8_next(v.u.s.p, v.u.s.n, &i);
            l->v[l->n++] = dj_strv((dj_str){v.u.s.p + start, i - start});
        }
        *out = l;
        return true;
    }
    case DJ_DICT: {
        dj_list *l = dj_list_new(c, v.u.dict->n);
        if (!l) return dj_fail_nomem(c, at);
        if (!dj_charge(c, at, v.u.dict->n)) return false;
        for (size_t i = 0; i < v.u.dict->n; i++) l->v[l->n++] = dj_strv(v.u.dict->e[i].key);
        *out = l;
        return true;
    }
    default: return dj_fail(c, at, DF_ERR_INVALID, "a value of type %s is not iterable", dj_type_name(v));
    }
}

/* Python's slice index adjustment (PySlice_AdjustIndices). */
static int64_t adjust(int64_t i, int64_t n, int64_t step) {
    if (i < 0) {
        i += n;
        if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= n) {
        i = step < 0 ? n - 1 : n;
    }
    return i;
}

bool dj_slice(dj_ctx *c, const dj_node *at, dj_value v, const dj_value *start, const dj_value *stop,
              const dj_value *step, dj_value *out) {
    if (v.type == DJ_UNDEF) return dj_fail(c, at, DF_ERR_INVALID, "slicing an undefined value");
    if (v.type != DJ_LIST && v.type != DJ_STR)
        return dj_fail(c, at, DF_ERR_INVALID, "a value of type %s cannot be sliced", dj_type_name(v));
    int64_t idx[3] = {0, 0, 1};
    bool given[3];
    const dj_value *parts[3] = {start, stop, step};
    for (int k = 0; k < 3; k++) {
        given[k] = parts[k] && parts[k]->type != DJ_NONE;
        if (given[k] && !want_int(c, at, parts[k], "a slice index", &idx[k])) return false;
    }
    int64_t st = given[2] ? idx[2] : 1;
    if (st == 0) return dj_fail(c, at, DF_ERR_INVALID, "slice step cannot be zero");
    if (st == INT64_MIN) st = -INT64_MAX;

    /* Strings slice by code point: collect the offsets once. */
    size_t *offs = NULL;
    int64_t n = 0;
    if (v.type == DJ_LIST) {
        n = (int64_t)v.u.list->n;
    } else {
        n = (int64_t)dj_utf8_count(v.u.s.p, v.u.s.n);
        offs = dj_arena_alloc(c->arena, ((size_t)n + 1) * sizeof *offs);
        if (!offs) return dj_fail_nomem(c, at);
        size_t i = 0, k = 0;
        while (i < v.u.s.n) {
            offs[k++] = i;
            dj_utf8_next(v.u.s.p, v.u.s.n, &i);
        }
        offs[k] = v.u.s.n;
    }
    if (!dj_charge(c, at, (uint64_t)n / 8)) return false;
    int64_t b = given[0] ? adjust(idx[0], n, st) : (st < 0 ? n - 1 : 0);
    int64_t e = given[1] ? adjust(idx[1], n, st) : (st < 0 ? -1 : n);
    if (v.type == DJ_LIST) {
        dj_list *l = dj_list_new(c, 0);
        if (!l) return dj_fail_nomem(c, at);
        l->tuple = v.u.list->tuple;
        for (int64_t i = b; st > 0 ? i < e : i > e; i += st) {
            if (!dj_list_push(c, l, v.u.list->v[i])) return dj_fail_nomem(c, at);
            if (st > 0 ? i > INT64_MAX - st : i < INT64_MIN - st) break;
        }
        *out = (dj_value){.type = DJ_LIST, .u.list = l};
        return true;
    }
    if (st == 1) {
        *out = dj_strv(b < e ? (dj_str){v.u.s.p + offs[b], offs[e] - offs[b]} : DJ_LIT(""));
        return true;
    }
    dj_buf buf;
    dj_buf_init(&buf, c->arena, c->lim.max_output);
    for (int64_t i = b; st > 0 ? i < e : i > e; i += st) {
        if (!dj_buf_put(&buf, v.u.s.p + offs[i], offs[i + 1] - offs[i])) return dj_fail_nomem(c, at);
        if (st > 0 ? i > INT64_MAX - st : i < INT64_MIN - st) break;
    }
    dj_str s = {0};
    if (!dj_str_from_buf(c, &buf, &s)) return dj_fail_nomem(c, at);
    *out = dj_strv(s);
    return true;
}

/* ---- str methods ---- */

#define METHOD(name) static bool name(dj_ctx *c, const dj_node *at, dj_value self, const dj_args *a, dj_value *out)

static bool no_args(dj_ctx *c, const dj_node *at, const char *name, const dj_args *a) {
    return dj_check_args(c, at, name, a, 0, NULL);
}

static bool strip_common(dj_ctx *c, const dj_node *at, dj_value self, const dj_args *a, dj_value *out,
                         bool l, bool r, const char *name) {
    static const char *const kw[] = {"chars", NULL};
    if (!dj_check_args(c, at, name, a, 1, kw)) return false;
    dj_str s = {0};
    if (!dj_strip(c, self.u.s, dj_arg(a, 0, "chars"), l, r, &s)) {
        c->err_line = at->line;
        c->err_col = at->col;
        return false;
    }
    *out = dj_strv(s);
    return true;
}
METHOD(m_strip) { return strip_common(c, at, self, a, out, true, true, "strip()"); }
METHOD(m_lstrip) { return strip_common(c, at, self, a, out, true, false, "lstrip()"); }
METHOD(m_rstrip) { return strip_common(c, at, self, a, out, false, true, "rstrip()"); }

static bool split_common(dj_ctx *c, const dj_node *at, dj_value self, const dj_args *a, dj_value *out,
                         bool from_right) {
    static const char *const kw[] = {"sep", "maxsplit", NULL};
    if (!dj_check_args(c, at, from_right ? "rsplit()" : "split()", a, 2, kw)) return false;
    const dj_value *sepv = dj_arg(a, 0, "sep");
    const dj_value *maxv = dj_arg(a, 1, "maxsplit");
    int64_t maxsplit = -1;
    if (maxv && !want_int(c, at, maxv, "maxsplit", &maxsplit)) return false;
    dj_str s = self.u.s;
    if (!dj_charge(c, at, s.n / 16 + 1)) return false;
    dj_list *l = dj_list_new(c, 0);
    if (!l) return dj_fail_nomem(c, at);
    if (!sepv || sepv->type == DJ_NONE) {
        /* runs of whitespace separate; no empty strings at the ends */
        size_t *bounds = dj_arena_alloc(c->arena, (s.n + 1) * 2 * sizeof *bounds);
        if (!bounds) return dj_fail_nomem(c, at);
        size_t nw = 0, i = 0;
        while (i < s.n) {
            size_t k = i;
            uint32_t cp = dj_utf8_next(s.p, s.n, &k);
            if (dj_is_space(cp)) {
                i = k;
                continue;
            }
            size_t ws = i;
            while (i < s.n) {
                k = i;
                cp = dj_utf8_next(s.p, s.n, &k);
                if (dj_is_space(cp)) break;
                i = k;
            }
            bounds[2 * nw] = ws;
            bounds[2 * nw + 1] = i;
            nw++;
        }
        size_t limit = maxsplit < 0 ? nw : (size_t)maxsplit;
        if (maxsplit < 0 || (size_t)maxsplit >= nw) {
            for (size_t w = 0; w < nw; w++)
                if (!dj_list_push(c, l, dj_strv((dj_str){s.p + bounds[2 * w], bounds[2 * w + 1] - bounds[2 * w]})))
                    return dj_fail_nomem(c, at);
        } else if (!from_right) { /* maxsplit words, then the rest of the string */
            for (size_t w = 0; w < limit; w++)
                if (!dj_list_push(c, l, dj_strv((dj_str){s.p + bounds[2 * w], bounds[2 * w + 1] - bounds[2 * w]})))
                    return dj_fail_nomem(c, at);
            size_t rest = bounds[2 * limit];
            if (!dj_list_push(c, l, dj_strv((dj_str){s.p + rest, s.n - rest}))) return dj_fail_nomem(c, at);
        } else { /* the rest of the string first, then maxsplit words */
            size_t first = nw - limit;
            size_t end = bounds[2 * (first - 1) + 1];
            if (!dj_list_push(c, l, dj_strv((dj_str){s.p, end}))) return dj_fail_nomem(c, at);
            for (size_t w = first; w < nw; w++)
                if (!dj_list_push(c, l, dj_strv((dj_str){s.p + bounds[2 * w], bounds[2 * w + 1] - bounds[2 * w]})))
                    return dj_fail_nomem(c, at);
        }
        *out = (dj_value){.type = DJ_LIST, .u.list = l};
        return true;
    }
    dj_str sep = {0};
    if (!want_str(c, at, sepv, "the separator", &sep)) return false;
    if (sep.n == 0) return dj_fail(c, at, DF_ERR_INVALID, "empty separator");
    if (!from_right) {
        size_t i = 0;
        int64_t done = 0;
        for (;;) {
            const char *hit = (maxsplit < 0 || done < maxsplit) ? memmem(s.p + i, s.n - i, sep.p, sep.n) : NULL;
            if (!hit) break;
            size_t h = (size_t)(hit - s.p);
            if (!dj_list_push(c, l, dj_strv((dj_str){s.p + i, h - i}))) return dj_fail_nomem(c, at);
            i = h + sep.n;
            done++;
        }
        if (!dj_list_push(c, l, dj_strv((dj_str){s.p + i, s.n - i}))) return dj_fail_nomem(c, at);
    } else {
        /* collect from the right, then reverse */
        dj_list *rev = dj_list_new(c, 0);
        if (!rev) return dj_fail_nomem(c, at);
        size_t end = s.n;
        int64_t done = 0;
        while (maxsplit < 0 || done < maxsplit) {
            size_t found = SIZE_MAX;
            for (size_t k = end; k >= sep.n; k--)
                if (!memcmp(s.p + k - sep.n, sep.p, sep.n)) {
                    found = k - sep.n;
                    break;
                }
            if (found == SIZE_MAX) break;
            if (!dj_list_push(c, rev, dj_strv((dj_str){s.p + found + sep.n, end - found - sep.n})))
                return dj_fail_nomem(c, at);
            end = found;
            done++;
        }
        if (!dj_list_push(c, rev, dj_strv((dj_str){s.p, end}))) return dj_fail_nomem(c, at);
        for (size_t k = rev->n; k-- > 0;)
            if (!dj_list_push(c, l, rev->v[k])) return dj_fail_nomem(c, at);
    }
    *out = (dj_value){.type = DJ_LIST, .u.list = l};
    return true;
}
METHOD(m_split) { return split_common(c, at, self, a, out, false); }
METHOD(m_rsplit) { return split_common(c, at, self, a, out, true); }

/* Python's str.splitlines() line boundaries; returns the length of the boundary at s[i]. */
static size_t line_break_at(dj_str s, size_t i) {
    unsigned char ch = (unsigned char)s.p[i];
    if (ch == '\r') return i + 1 < s.n && s.p[i + 1] == '\n' ? 2 : 1;
    if (ch == '\n' || ch == '\v' || ch == '\f' || (ch >= 0x1C && ch <= 0x1E)) return 1;
    if (ch >= 0x80) {
        size_t k = i;
        uint32_t cp = dj_utf8_next(s.p, s.n, &k);
        if (cp == 0x85 || cp == 0x2028 || cp == 0x2029) return k - i;
    }
    return 0;
}

bool dj_splitlines(dj_ctx *c, const dj_node *at, dj_str s, bool keepends, dj_list **out) {
    dj_list *l = dj_list_new(c, 0);
    if (!l) return dj_fail_nomem(c, at);
    if (!dj_charge(c, at, s.n / 16)) return false;
    size_t start = 0, i = 0;
    while (i < s.n) {
        size_t br = line_break_at(s, i);
        if (!br) {
            i++;
            continue;
        }
        size_t end = keepends ? i + br : i;
        if (!dj_list_push(c, l, dj_strv((dj_str){s.p + start, end - start}))) return dj_fail_nomem(c, at);
        i += br;
        start = i;
    }
    if (start < s.n && !dj_list_push(c, l, dj_strv((dj_str){s.p + start, s.n - start}))) return dj_fail_nomem(c, at);
    *out = l;
    return true;
}

METHOD(m_splitlines) {
    static const char *const kw[] = {"keepends", NULL};
    if (!dj_check_args(c, at, "splitlines()", a, 1, kw)) return false;
    const dj_value *k = dj_arg(a, 0, "keepends");
    dj_list *l = NULL;
    if (!dj_splitlines(c, at, self.u.s, k && dj_truthy(*k), &l)) return false;
    *out = (dj_value){.type = DJ_LIST, .u.list = l};
    return true;
}

static bool affix(dj_ctx *c, const dj_node *at, dj_value self, const dj_args *a, dj_value *out, bool prefix) {
    const char *name = prefix ? "startswith()" : "endswith()";
    if (!dj_check_args(c, at, name, a, 3, NULL)) return false;
    const dj_value *what = dj_arg(a, 0, NULL);
    if (!what) return dj_fail(c, at, DF_ERR_INVALID, "%s takes at least 1 argument", name);
    dj_str s = self.u.s;
    /* optional start/end in code points */
    int64_t n = -1, lo = 0, hi = 0;
    for (int k = 1; k <= 2; k++) {
        const dj_value *v = dj_arg(a, (size_t)k, NULL);
        if (!v || v->type == DJ_NONE) continue;
        int64_t x = 0;
        if (!want_int(c, at, v, "a start/end index", &x)) return false;
        if (n < 0) {
            n = (int64_t)dj_utf8_count(s.p, s.n);
            hi = n;
        }
        x = x < 0 ? (x + n < 0 ? 0 : x + n) : (x > n ? n : x);
        if (k == 1) lo = x;
        else hi = x;
    }
    if (n >= 0) {
        if (lo > hi) {
            *out = dj_bool(false);
            return true;
        }
        size_t i = 0, b = 0, e = s.n;
        for (int64_t k = 0; k <= n; k++) {
            if (k == lo) b = i;
            if (k == hi) e = i;
            if (i < s.n) dj_utf8_next(s.p, s.n, &i);
        }
        s = (dj_str){s.p + b, e - b};
    }
    const dj_value *cands = what;
    size_t ncand = 1;
    if (what->type == DJ_LIST) {
        cands = what->u.list->v;
        ncand = what->u.list->n;
    }
    bool hit = false;
    for (size_t k = 0; k < ncand && !hit; k++) {
        if (cands[k].type != DJ_STR)
            return dj_fail(c, at, DF_ERR_INVALID, "%s: the argument must be a string or a tuple of strings, not %s",
                           name, dj_type_name(cands[k]));
        dj_str p = cands[k].u.s;
        if (p.n <= s.n) hit = !memcmp(prefix ? s.p : s.p + s.n - p.n, p.p, p.n) || p.n == 0;
    }
    *out = dj_bool(hit);
    return true;
}
METHOD(m_startswith) { return affix(c, at, self, a, out, true); }
METHOD(m_endswith) { return affix(c, at, self, a, out, false); }

METHOD(m_replace) {
    static const char *const kw[] = {"count", NULL};
    if (!dj_check_args(c, at, "replace()", a, 3, kw)) return false;
    dj_str old = {0}, new_ = {0}, s = {0};
    int64_t count = -1;
    const dj_value *cv = dj_arg(a, 2, "count");
    if (!want_str(c, at, dj_arg(a, 0, NULL), "replace()'s first argument", &old) ||
        !want_str(c, at, dj_arg(a, 1, NULL), "replace()'s second argument", &new_))
        return false;
    if (cv && cv->type != DJ_NONE && !want_int(c, at, cv, "count", &count)) return false;
    if (!dj_replace(c, at, self.u.s, old, new_, count, &s)) return false;
    *out = dj_strv(s);
    return true;
}

static bool case_method(dj_ctx *c, const dj_node *at, dj_value self, const dj_args *a, dj_value *out, int mode,
                        const char *name) {
    if (!no_args(c, at, name, a)) return false;
    dj_str s = {0};
    if (!dj_upper_lower(c, self.u.s, mode, &s)) return false;
    *out = dj_strv(s);
    return true;
}
METHOD(m_lower) { return case_method(c, at, self, a, out, 0, "lower()"); }
METHOD(m_upper) { return case_method(c, at, self, a, out, 1, "upper()"); }
METHOD(m_title) { return case_method(c, at, self, a, out, 2, "title()"); }
METHOD(m_capitalize) { return case_method(c, at, self, a, out, 3, "capitalize()"); }

static bool find_common(dj_ctx *c, const dj_node *at, dj_value self, const dj_args *a, dj_value *out, int mode) {
    static const char *const names[] = {"find()", "rfind()", "count()"};
    if (!dj_check_args(c, at, names[mode], a, 1, NULL)) return false;
    dj_str s = self.u.s, sub = {0};
    if (!want_str(c, at, dj_arg(a, 0, NULL), "the substring", &sub)) return false;
    if (!dj_charge(c, at, s.n / 64)) return false;
    if (mode == 2) {
        int64_t n = 0;
        if (sub.n == 0) n = (int64_t)dj_utf8_count(s.p, s.n) + 1;
        else
            for (size_t i = 0; i + sub.n <= s.n;) {
                const char *h = memmem(s.p + i, s.n - i, sub.p, sub.n);
                if (!h) break;
                n++;
                i = (size_t)(h - s.p) + sub.n;
            }
        *out = dj_int(n);
        return true;
    }
    ptrdiff_t pos = -1;
    if (mode == 0) {
        const char *h = sub.n ? memmem(s.p, s.n, sub.p, sub.n) : s.p;
        if (h) pos = h - s.p;
    } else if (sub.n <= s.n) {
        for (size_t k = s.n - sub.n + 1; k-- > 0;)
            if (!memcmp(s.p + k, sub.p, sub.n)) {
                pos = (ptrdiff_t)k;
                break;
            }
    }
    *out = dj_int(pos < 0 ? -1 : (int64_t)dj_utf8_count(s.p, (size_t)pos));
    return true;
}
METHOD(m_find) { return find_common(c, at, self, a, out, 0); }
METHOD(m_rfind) { return find_common(c, at, self, a, out, 1); }
METHOD(m_count) { return find_common(c, at, self, a, out, 2); }

METHOD(m_join) {
    if (!dj_check_args(c, at, "join()", a, 1, NULL)) return false;
    const dj_value *seq = dj_arg(a, 0, NULL);
    if (!seq) return dj_fail(c, at, DF_ERR_INVALID, "join() takes exactly one argument");
    dj_list *items = NULL;
    if (!dj_iterate(c, at, *seq, &items)) return false;
    dj_buf b;
    dj_buf_init(&b, c->arena, c->lim.max_output);
    for (size_t i = 0; i < items->n; i++) {
        if (items->v[i].type != DJ_STR)
            return dj_fail(c, at, DF_ERR_INVALID, "join(): item %zu is a %s, not a string", i, dj_type_name(items->v[i]));
        if ((i && !dj_buf_put(&b, self.u.s.p, self.u.s.n)) || !dj_buf_put(&b, items->v[i].u.s.p, items->v[i].u.s.n))
            return b.nomem ? dj_fail_nomem(c, at) : dj_fail(c, at, DF_ERR_INVALID, "join() result too long");
    }
    dj_str s = {0};
    if (!dj_str_from_buf(c, &b, &s)) return dj_fail_nomem(c, at);
    *out = dj_strv(s);
    return true;
}

static bool str_class(dj_ctx *c, const dj_node *at, dj_value self, const dj_args *a, dj_value *out, int kind) {
    if (!no_args(c, at, "a str predicate", a)) return false;
    dj_str s = self.u.s;
    bool any = false, all = true, cased = false, ok_case = true;
    for (size_t i = 0; i < s.n;) {
        uint32_t cp = dj_utf8_next(s.p, s.n, &i);
        any = true;
        bool digit = cp >= '0' && cp <= '9', alpha = is_letterish(cp);
        switch (kind) {
        case 0: all &= digit; break;
        case 1: all &= alpha; break;
        case 2: all &= digit || alpha; break;
        case 3: all &= dj_is_space(cp); break;
        default:
            if (is_ascii_alpha(cp)) {
                cased = true;
                bool upper = cp < 'a';
                if ((kind == 4 && upper) || (kind == 5 && !upper)) ok_case = false;
            }
        }
    }
    *out = dj_bool(kind >= 4 ? cased && ok_case : any && all);
    return true;
}
METHOD(m_isdigit) { return str_class(c, at, self, a, out, 0); }
METHOD(m_isalpha) { return str_class(c, at, self, a, out, 1); }
METHOD(m_isalnum) { return str_class(c, at, self, a, out, 2); }
METHOD(m_isspace) { return str_class(c, at, self, a, out, 3); }
METHOD(m_islower) { return str_class(c, at, self, a, out, 4); }
METHOD(m_isupper) { return str_class(c, at, self, a, out, 5); }

/* ---- dict methods ---- */

METHOD(m_get) {
    if (!dj_check_args(c, at, "get()", a, 2, NULL)) return false;
    const dj_value *k = dj_arg(a, 0, NULL), *def = dj_arg(a, 1, NULL);
    if (!k) return dj_fail(c, at, DF_ERR_INVALID, "get() takes at least 1 argument");
    const dj_value *v = k->type == DJ_STR ? dj_dict_get(self.u.dict, k->u.s) : NULL;
    *out = v ? *v : def ? *def : dj_none();
    return true;
}

bool dj_dict_items(dj_ctx *c, const dj_node *at, const dj_dict *d, dj_value *out) {
    dj_list *l = dj_list_new(c, d->n);
    if (!l) return dj_fail_nomem(c, at);
    if (!dj_charge(c, at, d->n)) return false;
    for (size_t i = 0; i < d->n; i++) {
        dj_list *pair = dj_list_new(c, 2);
        if (!pair) return dj_fail_nomem(c, at);
        pair->v[0] = dj_strv(d->e[i].key);
        pair->v[1] = d->e[i].val;
        pair->n = 2;
        pair->tuple = true;
        l->v[l->n++] = (dj_value){.type = DJ_LIST, .u.list = pair};
    }
    *out = (dj_value){.type = DJ_LIST, .u.list = l};
    return true;
}

METHOD(m_items) {
    if (!no_args(c, at, "items()", a)) return false;
    return dj_dict_items(c, at, self.u.dict, out);
}

METHOD(m_keys) {
    if (!no_args(c, at, "keys()", a)) return false;
    dj_list *l = NULL;
    if (!dj_iterate(c, at, self, &l)) return false;
    *out = (dj_value){.type = DJ_LIST, .u.list = l};
    return true;
}

METHOD(m_values) {
    if (!no_args(c, at, "values()", a)) return false;
    dj_list *l = dj_list_new(c, self.u.dict->n);
    if (!l) return dj_fail_nomem(c, at);
    for (size_t i = 0; i < self.u.dict->n; i++) l->v[l->n++] = self.u.dict->e[i].val;
    *out = (dj_value){.type = DJ_LIST, .u.list = l};
    return true;
}

/* ---- loop methods ---- */

METHOD(m_cycle) {
    if (!dj_check_args(c, at, "loop.cycle()", a, SIZE_MAX, NULL)) return false;
    if (a->npos == 0) return dj_fail(c, at, DF_ERR_INVALID, "loop.cycle() needs at least one argument");
    *out = a->pos[self.u.loop->i % a->npos];
    return true;
}

typedef struct method_def {
    const char *name;
    dj_native_fn fn;
} method_def;

static const method_def g_str_methods[] = {
    {"strip", m_strip},       {"lstrip", m_lstrip},         {"rstrip", m_rstrip},
    {"split", m_split},       {"rsplit", m_rsplit},         {"splitlines", m_splitlines},
    {"startswith", m_startswith}, {"endswith", m_endswith}, {"replace", m_replace},
    {"lower", m_lower},       {"upper", m_upper},           {"title", m_title},
    {"capitalize", m_capitalize}, {"find", m_find},         {"rfind", m_rfind},
    {"count", m_count},       {"join", m_join},             {"isdigit", m_isdigit},
    {"isalpha", m_isalpha},   {"isalnum", m_isalnum},       {"isspace", m_isspace},
    {"islower", m_islower},   {"isupper", m_isupper},
};

static const method_def g_dict_methods[] = {
    {"get", m_get}, {"items", m_items}, {"keys", m_keys}, {"values", m_values},
};

bool dj_find_method(dj_value self, dj_str name, dj_native_fn *fn) {
    const method_def *table = NULL;
    size_t n = 0;
    if (self.type == DJ_STR) {
        table = g_str_methods;
        n = sizeof g_str_methods / sizeof g_str_methods[0];
    } else if (self.type == DJ_DICT) {
        table = g_dict_methods;
        n = sizeof g_dict_methods / sizeof g_dict_methods[0];
    } else if (self.type == DJ_LOOP && dj_str_eqc(name, "cycle")) {
        *fn = m_cycle;
        return true;
    }
    for (size_t i = 0; i < n; i++)
        if (dj_str_eqc(name, table[i].name)) {
            *fn = table[i].fn;
            return true;
        }
    return false;
}

/* ---- global functions ---- */

METHOD(g_range) {
    if (!dj_check_args(c, at, "range()", a, 3, NULL)) return false;
    int64_t v[3] = {0, 0, 1};
    if (a->npos == 0) return dj_fail(c, at, DF_ERR_INVALID, "range() takes at least 1 argument");
    for (size_t k = 0; k < a->npos; k++)
        if (!want_int(c, at, &a->pos[k], "a range() argument", &v[k])) return false;
    int64_t start = a->npos == 1 ? 0 : v[0], stop = a->npos == 1 ? v[0] : v[1], step = a->npos == 3 ? v[2] : 1;
    if (step == 0) return dj_fail(c, at, DF_ERR_INVALID, "range() step must not be zero");
    /* the length, computed without overflow */
    __int128 len = 0;
    if (step > 0 && start < stop) len = ((__int128)stop - start + step - 1) / step;
    if (step < 0 && start > stop) len = ((__int128)start - stop - step - 1) / -step;
    if (len > (__int128)c->lim.max_iterations)
        return dj_fail(c, at, DF_ERR_INVALID, "range() of %lld items is more than the iteration limit",
                       (long long)(len > INT64_MAX ? INT64_MAX : (int64_t)len));
    if (!dj_charge(c, at, (uint64_t)len)) return false;
    dj_list *l = dj_list_new(c, (size_t)len);
    if (!l) return dj_fail_nomem(c, at);
    for (int64_t i = 0; i < (int64_t)len; i++) l->v[l->n++] = dj_int(start + i * step);
    *out = (dj_value){.type = DJ_LIST, .u.list = l};
    return true;
}

/* namespace(mapping?, **kw) and dict(mapping?, **kw): a fresh dict from both. */
static bool make_mapping(dj_ctx *c, const dj_node *at, const dj_args *a, dj_type type, const char *name,
                         dj_value *out) {
    if (a->npos > 1) return dj_fail(c, at, DF_ERR_INVALID, "%s takes at most 1 positional argument", name);
    dj_dict *d = dj_dict_new(c);
    if (!d) return dj_fail_nomem(c, at);
    if (a->npos == 1) {
        dj_value src = a->pos[0];
        if (src.type == DJ_DICT || src.type == DJ_NS) {
            for (size_t i = 0; i < src.u.dict->n; i++)
                if (!dj_dict_set(c->arena, d, src.u.dict->e[i].key, src.u.dict->e[i].val)) return dj_fail_nomem(c, at);
        } else if (src.type == DJ_LIST) {
            for (size_t i = 0; i < src.u.list->n; i++) {
                dj_value p = src.u.list->v[i];
                if (p.type != DJ_LIST || p.u.list->n != 2 || p.u.list->v[0].type != DJ_STR)
                    return dj_fail(c, at, DF_ERR_INVALID, "%s expects a mapping or (string key, value) pairs", name);
                if (!dj_dict_set(c->arena, d, p.u.list->v[0].u.s, p.u.list->v[1])) return dj_fail_nomem(c, at);
            }
        } else {
            return dj_fail(c, at, DF_ERR_INVALID, "%s expects a mapping, not %s", name, dj_type_name(src));
        }
    }
    for (size_t k = 0; k < a->nkw; k++)
        if (!dj_dict_set(c->arena, d, a->kwname[k], a->kw[k])) return dj_fail_nomem(c, at);
    *out = (dj_value){.type = type, .u.dict = d};
    return true;
}

METHOD(g_namespace) { return make_mapping(c, at, a, DJ_NS, "namespace()", out); }
METHOD(g_dict) { return make_mapping(c, at, a, DJ_DICT, "dict()", out); }

METHOD(g_raise_exception) {
    dj_str msg = DJ_LIT("");
    const dj_value *m = dj_arg(a, 0, NULL);
    if (m && !dj_to_str(c, at, *m, &msg)) return false;
    return dj_fail(c, at, DF_ERR_INVALID, "the template raised an exception: %.*s", (int)(msg.n > 300 ? 300 : msg.n),
                   msg.p);
}

METHOD(g_strftime_now) {
    if (!dj_check_args(c, at, "strftime_now()", a, 1, NULL)) return false;
    dj_str fmt = {0};
    if (!want_str(c, at, dj_arg(a, 0, NULL), "the format", &fmt)) return false;
    if (fmt.n > 200) return dj_fail(c, at, DF_ERR_INVALID, "strftime_now(): format longer than 200 bytes");
    char f[256], res[1024];
    memcpy(f, fmt.p, fmt.n);
    f[fmt.n] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    size_t n = strftime(res, sizeof res, f, &tm);
    dj_str s = {0};
    if (!dj_str_dup(c, res, n, &s)) return false;
    *out = dj_strv(s);
    return true;
}

bool dj_make_globals(dj_ctx *c, dj_dict *globals) {
    static const method_def fns[] = {
        {"range", g_range},
        {"namespace", g_namespace},
        {"dict", g_dict},
        {"raise_exception", g_raise_exception},
        {"strftime_now", g_strftime_now},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        dj_func *f = dj_arena_zalloc(c->arena, sizeof *f);
        if (!f) return dj_fail_nomem(c, NULL);
        f->name = fns[i].name;
        f->native = fns[i].fn;
        if (!dj_dict_set(c->arena, globals, (dj_str){fns[i].name, strlen(fns[i].name)},
                         (dj_value){.type = DJ_FUNC, .u.fn = f}))
            return dj_fail_nomem(c, NULL);
    }
    return true;
}
