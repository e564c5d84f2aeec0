/* The Jinja evaluator: runs the syntax tree against a context, writing the output.
 *
 * Scoping follows Jinja2: {% set %} writes to the innermost scope; a for loop body gets a
 * fresh scope each iteration (so a variable set in one iteration does not leak into the
 * next, nor out of the loop — which is why templates use namespace()); a macro call gets
 * its own scope whose parent is the scope the macro was defined in; `if` makes no scope.
 * Scopes live in the render's arena rather than on the C stack because a macro defined
 * inside a loop or a macro may escape (say, into a namespace) and outlive the frame. */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "text/jinja_internal.h"

enum { FLOW_NEXT, FLOW_BREAK, FLOW_CONTINUE };

static bool exec_body(dj_ctx *c, dj_scope *s, const dj_nodes *body, int *flow);

static bool enter(dj_ctx *c, const dj_node *at) {
    if (++c->depth > c->lim.max_depth)
        return dj_fail(c, at, DF_ERR_INVALID, "the template nests deeper than %d levels (runaway recursion?)",
                       c->lim.max_depth);
    return dj_charge(c, at, 1);
}

static dj_scope *new_scope(dj_ctx *c, dj_scope *parent) {
    dj_scope *s = dj_arena_zalloc(c->arena, sizeof *s);
    if (s) s->parent = parent;
    return s;
}

static dj_value lookup(const dj_scope *s, dj_str name) {
    for (; s; s = s->parent) {
        const dj_value *v = dj_dict_get(&s->vars, name);
        if (v) return *v;
    }
    return dj_undef(name);
}

static bool assign(dj_ctx *c, const dj_node *at, dj_scope *s, dj_str name, dj_value v) {
    return dj_dict_set(c->arena, &s->vars, name, v) || dj_fail_nomem(c, at);
}

static bool fail_undefined(dj_ctx *c, const dj_node *at, dj_value v, const char *doing) {
    if (v.u.s.n)
        return dj_fail(c, at, DF_ERR_INVALID, "'%.*s' is undefined (%s)", (int)(v.u.s.n > 80 ? 80 : v.u.s.n),
                       v.u.s.p, doing);
    return dj_fail(c, at, DF_ERR_INVALID, "a value is undefined (%s)", doing);
}

static bool out_put(dj_ctx *c, const dj_node *at, const char *s, size_t n) {
    if (dj_buf_put(c->out, s, n)) return true;
    if (c->out->nomem) return dj_fail_nomem(c, at);
    return dj_fail(c, at, DF_ERR_INVALID, "the template produced more than %zu bytes", c->out->limit);
}

/* ---- attribute and item access ---- */

static bool bind_method(dj_ctx *c, const dj_node *at, dj_value self, dj_native_fn fn, const char *name,
                        dj_value *out) {
    dj_func *f = dj_arena_zalloc(c->arena, sizeof *f);
    if (!f) return dj_fail_nomem(c, at);
    f->name = name;
    f->native = fn;
    f->self = self;
    *out = (dj_value){.type = DJ_FUNC, .u.fn = f};
    return true;
}

static bool loop_field(const dj_loop *l, dj_str name, dj_value *out) {
    size_t i = l->i, n = l->n;
    if (dj_str_eqc(name, "index")) *out = dj_int((int64_t)i + 1);
    else if (dj_str_eqc(name, "index0")) *out = dj_int((int64_t)i);
    else if (dj_str_eqc(name, "revindex")) *out = dj_int((int64_t)(n - i));
    else if (dj_str_eqc(name, "revindex0")) *out = dj_int((int64_t)(n - i - 1));
    else if (dj_str_eqc(name, "first")) *out = dj_bool(i == 0);
    else if (dj_str_eqc(name, "last")) *out = dj_bool(i + 1 == n);
    else if (dj_str_eqc(name, "length")) *out = dj_int((int64_t)n);
    else if (dj_str_eqc(name, "depth")) *out = dj_int(1);
    else if (dj_str_eqc(name, "depth0")) *out = dj_int(0);
    else if (dj_str_eqc(name, "previtem")) *out = i > 0 ? l->items[i - 1] : dj_undef(DJ_LIT("loop.previtem"));
    else if (dj_str_eqc(name, "nextitem")) *out = i + 1 < n ? l->items[i + 1] : dj_undef(DJ_LIT("loop.nextitem"));
    else return false;
    return true;
}

static bool get_attr(dj_ctx *c, const dj_node *at, dj_value obj, dj_str name, dj_value *out) {
    dj_native_fn fn;
    switch (obj.type) {
    case DJ_UNDEF: return fail_undefined(c, at, obj, "reading an attribute of it");
    case DJ_DICT:
        /* Python looks up attributes before keys: d.items is the method even if d has a key
         * "items"; d['items'] is the key. */
        if (dj_find_method(obj, name, &fn)) return bind_method(c, at, obj, fn, "dict method", out);
        /* fall through */
    case DJ_NS: {
        const dj_value *v = dj_dict_get(obj.u.dict, name);
        *out = v ? *v : dj_undef(name);
        return true;
    }
    case DJ_STR:
        if (dj_find_method(obj, name, &fn)) return bind_method(c, at, obj, fn, "str method", out);
        *out = dj_undef(name);
        return true;
    case DJ_LOOP:
        if (loop_field(obj.u.loop, name, out)) return true;
        if (dj_find_method(obj, name, &fn)) return bind_method(c, at, obj, fn, "loop method", out);
        *out = dj_undef(name);
        return true;
    default: *out = dj_undef(name); return true;
    }
}

static bool get_item(dj_ctx *c, const dj_node *at, dj_value obj, dj_value key, dj_value *out) {
    if (obj.type == DJ_UNDEF) return fail_undefined(c, at, obj, "indexing it");
    if ((obj.type == DJ_LIST || obj.type == DJ_STR) && (key.type == DJ_INT || key.type == DJ_BOOL)) {
        int64_t k = key.type == DJ_BOOL ? key.u.b : key.u.i;
        if (obj.type == DJ_LIST) {
            int64_t n = (int64_t)obj.u.list->n;
            if (k < 0) k += n;
            *out = k >= 0 && k < n ? obj.u.list->v[k] : dj_undef(DJ_LIT("list index"));
            return true;
        }
        dj_str s = obj.u.s;
        if (!dj_charge(c, at, s.n / 64)) return false;
        int64_t n = (int64_t)dj_utf8_count(s.p, s.n);
        if (k < 0) k += n;
        if (k < 0 || k >= n) {
            *out = dj_undef(DJ_LIT("string index"));
            return true;
        }
        size_t i = 0;
        for (int64_t j = 0; j < k; j++) dj_utf8_next(s.p, s.n, &i);
        size_t start = i;
        dj_utf8_next(s.p, s.n, &i);
        *out = dj_strv((dj_str){s.p + start, i - start});
        return true;
    }
    if (key.type == DJ_STR) {
        if (obj.type == DJ_DICT || obj.type == DJ_NS) {
            const dj_value *v = dj_dict_get(obj.u.dict, key.u.s);
            if (v) {
                *out = *v;
                return true;
            }
        }
        if (obj.type == DJ_NS) {
            *out = dj_undef(key.u.s);
            return true;
        }
        return get_attr(c, at, obj, key.u.s, out);
    }
    *out = dj_undef(DJ_LIT("item"));
    return true;
}

/* ---- arithmetic ---- */

static bool is_num(dj_value v) { return v.type == DJ_INT || v.type == DJ_BOOL || v.type == DJ_FLOAT; }
static int64_t ival(dj_value v) { return v.type == DJ_BOOL ? (int64_t)v.u.b : v.u.i; }
static double fval(dj_value v) { return v.type == DJ_FLOAT ? v.u.f : (double)ival(v); }

static const char *op_text(int op) {
    switch (op) {
    case DJ_OP_ADD: return "+";
    case DJ_OP_SUB: return "-";
    case DJ_OP_MUL: return "*";
    case DJ_OP_DIV: return "/";
    case DJ_OP_FLOORDIV: return "//";
    case DJ_OP_MOD: return "%";
    case DJ_OP_POW: return "**";
    case DJ_OP_TILDE: return "~";
    default: return "?";
    }
}

static bool overflow(dj_ctx *c, const dj_node *at) {
    return dj_fail(c, at, DF_ERR_INVALID, "integer overflow");
}

static bool repeat(dj_ctx *c, const dj_node *at, dj_value seq, int64_t times, dj_value *out) {
    if (times < 0) times = 0;
    if (seq.type == DJ_STR) {
        size_t total;
        if (!df_mul_size(seq.u.s.n, (size_t)times, &total) || total > c->lim.max_output)
            return dj_fail(c, at, DF_ERR_INVALID, "string repetition longer than %zu bytes", c->lim.max_output);
        if (!dj_charge(c, at, total / 64)) return false;
        char *p = dj_arena_alloc(c->arena, total + 1);
        if (!p) return dj_fail_nomem(c, at);
        for (int64_t k = 0; k < times; k++) memcpy(p + (size_t)k * seq.u.s.n, seq.u.s.p, seq.u.s.n);
        p[total] = '\0';
        *out = dj_strv((dj_str){p, total});
        return true;
    }
    size_t total;
    if (!df_mul_size(seq.u.list->n, (size_t)times, &total) || total > c->lim.max_iterations)
        return dj_fail(c, at, DF_ERR_INVALID, "list repetition too long");
    if (!dj_charge(c, at, total)) return false;
    dj_list *l = dj_list_new(c, total);
    if (!l) return dj_fail_nomem(c, at);
    for (int64_t k = 0; k < times; k++)
        for (size_t i = 0; i < seq.u.list->n; i++) l->v[l->n++] = seq.u.list->v[i];
    *out = (dj_value){.type = DJ_LIST, .u.list = l};
    return true;
}

static bool arith(dj_ctx *c, const dj_node *at, int op, dj_value a, dj_value b, dj_value *out) {
    if (a.type == DJ_UNDEF) return fail_undefined(c, at, a, "in arithmetic");
    if (b.type == DJ_UNDEF) return fail_undefined(c, at, b, "in arithmetic");
    if (is_num(a) && is_num(b)) {
        bool ints = a.type != DJ_FLOAT && b.type != DJ_FLOAT;
        int64_t x = ival(a), y = ival(b), r;
        double fx = fval(a), fy = fval(b);
        switch (op) {
        case DJ_OP_ADD:
            if (!ints) break;
            if (__builtin_add_overflow(x, y, &r)) return overflow(c, at);
            *out = dj_int(r);
            return true;
        case DJ_OP_SUB:
            if (!ints) break;
            if (__builtin_sub_overflow(x, y, &r)) return overflow(c, at);
            *out = dj_int(r);
            return true;
        case DJ_OP_MUL:
            if (!ints) break;
            if (__builtin_mul_overflow(x, y, &r)) return overflow(c, at);
            *out = dj_int(r);
            return true;
        case DJ_OP_DIV:
            if (fy == 0) return dj_fail(c, at, DF_ERR_INVALID, "division by zero");
            *out = dj_float(fx / fy);
            return true;
        case DJ_OP_FLOORDIV:
        case DJ_OP_MOD:
            if (ints) {
                if (y == 0) return dj_fail(c, at, DF_ERR_INVALID, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) {
                    if (op == DJ_OP_MOD) {
                        *out = dj_int(0);
                        return true;
                    }
                    return overflow(c, at);
                }
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) { /* Python rounds toward -infinity */
                    q--;
                    m += y;
                }
                *out = dj_int(op == DJ_OP_MOD ? m : q);
                return true;
            }
            if (fy == 0) return dj_fail(c, at, DF_ERR_INVALID, "float division or modulo by zero");
            if (op == DJ_OP_FLOORDIV) {
                *out = dj_float(floor(fx / fy));
            } else {
                double m = fmod(fx, fy);
                if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
                else if (m == 0) m = copysign(0.0, fy);
                *out = dj_float(m);
            }
            return true;
        case DJ_OP_POW:
            if (ints && y >= 0) {
                int64_t acc = 1, base = x;
                for (int64_t e = y; e > 0; e >>= 1) {
                    if ((e & 1) && __builtin_mul_overflow(acc, base, &acc)) return overflow(c, at);
                    if (e > 1 && __builtin_mul_overflow(base, base, &base)) return overflow(c, at);
                }
                *out = dj_int(acc);
                return true;
            }
            if (fx == 0 && fy < 0) return dj_fail(c, at, DF_ERR_INVALID, "0.0 cannot be raised to a negative power");
            {
                double p = pow(fx, fy);
                if (isnan(p) && !isnan(fx) && !isnan(fy))
                    return dj_fail(c, at, DF_ERR_INVALID, "a negative number raised to a fractional power");
                *out = dj_float(p);
            }
            return true;
        }
        /* float +, -, * */
        *out = dj_float(op == DJ_OP_ADD ? fx + fy : op == DJ_OP_SUB ? fx - fy : fx * fy);
        return true;
    }
    if (op == DJ_OP_ADD && a.type == DJ_STR && b.type == DJ_STR) {
        size_t n;
        if (!df_add_size(a.u.s.n, b.u.s.n, &n) || n > c->lim.max_output)
            return dj_fail(c, at, DF_ERR_INVALID, "string longer than %zu bytes", c->lim.max_output);
        if (!dj_charge(c, at, n / 64)) return false;
        char *p = dj_arena_alloc(c->arena, n + 1);
        if (!p) return dj_fail_nomem(c, at);
        if (a.u.s.n) memcpy(p, a.u.s.p, a.u.s.n);
        if (b.u.s.n) memcpy(p + a.u.s.n, b.u.s.p, b.u.s.n);
        p[n] = '\0';
        *out = dj_strv((dj_str){p, n});
        return true;
    }
    if (op == DJ_OP_ADD && a.type == DJ_LIST && b.type == DJ_LIST) {
        if (a.u.list->tuple != b.u.list->tuple)
            return dj_fail(c, at, DF_ERR_INVALID, "can only concatenate a %s to a %s", a.u.list->tuple ? "tuple" : "list",
                           a.u.list->tuple ? "tuple" : "list");
        size_t n = a.u.list->n + b.u.list->n;
        if (!dj_charge(c, at, n)) return false;
        dj_list *l = dj_list_new(c, n);
        if (!l) return dj_fail_nomem(c, at);
        if (a.u.list->n) memcpy(l->v, a.u.list->v, a.u.list->n * sizeof(dj_value));
        if (b.u.list->n) memcpy(l->v + a.u.list->n, b.u.list->v, b.u.list->n * sizeof(dj_value));
        l->n = n;
        l->tuple = a.u.list->tuple;
        *out = (dj_value){.type = DJ_LIST, .u.list = l};
        return true;
    }
    if (op == DJ_OP_MUL) {
        if ((a.type == DJ_STR || a.type == DJ_LIST) && (b.type == DJ_INT || b.type == DJ_BOOL))
            return repeat(c, at, a, ival(b), out);
        if ((b.type == DJ_STR || b.type == DJ_LIST) && (a.type == DJ_INT || a.type == DJ_BOOL))
            return repeat(c, at, b, ival(a), out);
    }
    if (op == DJ_OP_MOD && a.type == DJ_STR)
        return dj_fail(c, at, DF_ERR_UNSUPPORTED, "%%-formatting of strings is not supported");
    return dj_fail(c, at, DF_ERR_INVALID, "unsupported operand types for %s: %s and %s", op_text(op),
                   dj_type_name(a), dj_type_name(b));
}

static bool concat(dj_ctx *c, const dj_node *at, dj_value a, dj_value b, dj_value *out) {
    dj_str x = {0}, y = {0};
    if (!dj_to_str(c, at, a, &x) || !dj_to_str(c, at, b, &y)) return false;
    return arith(c, at, DJ_OP_ADD, dj_strv(x), dj_strv(y), out);
}

/* `needle in hay`, as Python's `in`. */
bool dj_contains(dj_ctx *c, const dj_node *at, dj_value needle, dj_value hay, bool *out) {
    switch (hay.type) {
    case DJ_UNDEF: *out = false; return true; /* Undefined iterates as empty */
    case DJ_STR:
        if (needle.type != DJ_STR)
            return dj_fail(c, at, DF_ERR_INVALID, "'in <string>' requires a string on the left, not %s",
                           dj_type_name(needle));
        if (!dj_charge(c, at, hay.u.s.n / 64)) return false;
        if (needle.u.s.n == 0) *out = true;
        else *out = memmem(hay.u.s.p, hay.u.s.n, needle.u.s.p, needle.u.s.n) != NULL;
        return true;
    case DJ_LIST:
        if (!dj_charge(c, at, hay.u.list->n)) return false;
        *out = false;
        for (size_t i = 0; i < hay.u.list->n && !*out; i++) *out = dj_equal(needle, hay.u.list->v[i], 0);
        return true;
    case DJ_DICT:
        *out = needle.type == DJ_STR && dj_dict_get(hay.u.dict, needle.u.s) != NULL;
        return true;
    default:
        return dj_fail(c, at, DF_ERR_INVALID, "argument of type %s is not iterable", dj_type_name(hay));
    }
}

static bool compare_op(dj_ctx *c, const dj_node *at, dj_op op, dj_value a, dj_value b, bool *out) {
    int cmp;
    switch (op) {
    case DJ_OP_EQ: *out = dj_equal(a, b, 0); return true;
    case DJ_OP_NE: *out = !dj_equal(a, b, 0); return true;
    case DJ_OP_IN: return dj_contains(c, at, a, b, out);
    case DJ_OP_NOTIN:
        if (!dj_contains(c, at, a, b, out)) return false;
        *out = !*out;
        return true;
    default: break;
    }
    if (a.type == DJ_UNDEF) return fail_undefined(c, at, a, "in a comparison");
    if (b.type == DJ_UNDEF) return fail_undefined(c, at, b, "in a comparison");
    if (!dj_compare(c, at, a, b, &cmp)) return false;
    switch (op) {
    case DJ_OP_LT: *out = cmp < 0; break;
    case DJ_OP_LE: *out = cmp <= 0; break;
    case DJ_OP_GT: *out = cmp > 0; break;
    case DJ_OP_GE: *out = cmp >= 0; break;
    default: *out = false;
    }
    return true;
}

/* ---- calls ---- */

enum { ARGS_ON_STACK = 8 };

typedef struct argbuf {
    dj_value pos_s[ARGS_ON_STACK], kw_s[ARGS_ON_STACK];
    dj_str name_s[ARGS_ON_STACK];
    dj_args args;
} argbuf;

static bool eval_args(dj_ctx *c, dj_scope *s, const dj_nodes *nodes, argbuf *ab) {
    size_t nkw = 0;
    for (size_t i = 0; i < nodes->n; i++) nkw += nodes->v[i]->kind == DJ_E_KWARG;
    size_t npos = nodes->n - nkw;
    dj_value *pos = ab->pos_s, *kw = ab->kw_s;
    dj_str *names = ab->name_s;
    if (npos > ARGS_ON_STACK && !(pos = dj_arena_alloc(c->arena, npos * sizeof *pos))) return dj_fail_nomem(c, NULL);
    if (nkw > ARGS_ON_STACK && (!(kw = dj_arena_alloc(c->arena, nkw * sizeof *kw)) ||
                                !(names = dj_arena_alloc(c->arena, nkw * sizeof *names))))
        return dj_fail_nomem(c, NULL);
    size_t ip = 0, ik = 0;
    for (size_t i = 0; i < nodes->n; i++) {
        const dj_node *a = nodes->v[i];
        if (a->kind == DJ_E_KWARG) {
            for (size_t k = 0; k < ik; k++)
                if (dj_str_eq(names[k], a->name))
                    return dj_fail(c, a, DF_ERR_INVALID, "keyword argument '%.*s' given twice",
                                   (int)(a->name.n > 60 ? 60 : a->name.n), a->name.p);
            names[ik] = a->name;
            if (!dj_eval(c, s, a->a, &kw[ik])) return false;
            ik++;
        } else {
            if (!dj_eval(c, s, a, &pos[ip])) return false;
            ip++;
        }
    }
    ab->args = (dj_args){pos, npos, names, kw, nkw};
    return true;
}

static bool call_macro(dj_ctx *c, const dj_node *at, const dj_func *fn, const dj_args *a, dj_value *out) {
    const dj_node *m = fn->macro;
    const dj_nodes *params = &m->args;
    char mname[64];
    snprintf(mname, sizeof mname, "%.*s", (int)(m->name.n > 60 ? 60 : m->name.n), m->name.p);
    if (a->npos > params->n)
        return dj_fail(c, at, DF_ERR_INVALID, "macro '%s' takes not more than %zu argument(s)", mname, params->n);
    for (size_t k = 0; k < a->nkw; k++) {
        bool known = false;
        for (size_t p = a->npos; p < params->n; p++) known |= dj_str_eq(params->v[p]->name, a->kwname[k]);
        if (!known)
            return dj_fail(c, at, DF_ERR_INVALID, "macro '%s' takes no keyword argument '%.*s' (or got it twice)",
                           mname, (int)(a->kwname[k].n > 60 ? 60 : a->kwname[k].n), a->kwname[k].p);
    }
    if (!enter(c, at)) return false;
    dj_scope *ms = new_scope(c, fn->closure);
    if (!ms) return dj_fail_nomem(c, at);
    /* Bind every parameter before evaluating defaults, so that a default never sees an
     * outer variable of the same name as a parameter. */
    bool *pending = NULL;
    if (params->n && !(pending = dj_arena_zalloc(c->arena, params->n))) return dj_fail_nomem(c, at);
    for (size_t p = 0; p < params->n; p++) {
        const dj_node *param = params->v[p];
        dj_value v = dj_undef(param->name);
        if (p < a->npos) {
            v = a->pos[p];
        } else {
            bool found = false;
            for (size_t k = 0; k < a->nkw; k++)
                if (dj_str_eq(a->kwname[k], param->name)) {
                    v = a->kw[k];
                    found = true;
                }
            if (!found && param->kind == DJ_E_KWARG) pending[p] = true;
        }
        if (!assign(c, at, ms, param->name, v)) return false;
    }
    for (size_t p = 0; p < params->n; p++) {
        if (!pending[p]) continue;
        dj_value v = {0};
        if (!dj_eval(c, ms, params->v[p]->a, &v) || !assign(c, at, ms, params->v[p]->name, v)) return false;
    }
    dj_buf capture;
    dj_buf_init(&capture, c->arena, c->lim.max_output);
    dj_buf *saved = c->out;
    c->out = &capture;
    int flow = FLOW_NEXT;
    bool ok = exec_body(c, ms, &m->body, &flow);
    c->out = saved;
    c->depth--;
    if (!ok) return false;
    dj_str s = {0};
    if (!dj_str_from_buf(c, &capture, &s)) return dj_fail_nomem(c, at);
    *out = dj_strv(s);
    return true;
}

bool dj_call_value(dj_ctx *c, const dj_node *at, dj_value fn, const dj_args *a, dj_value *out) {
    if (fn.type == DJ_UNDEF) return fail_undefined(c, at, fn, "calling it");
    if (fn.type != DJ_FUNC)
        return dj_fail(c, at, DF_ERR_INVALID, "a value of type %s is not callable", dj_type_name(fn));
    if (fn.u.fn->macro) return call_macro(c, at, fn.u.fn, a, out);
    return fn.u.fn->native(c, at, fn.u.fn->self, a, out);
}

static bool eval_call(dj_ctx *c, dj_scope *s, const dj_node *n, dj_value *out) {
    argbuf ab;
    const dj_node *callee = n->a;
    if (callee->kind == DJ_E_ATTR) {
        /* obj.method(...): call the method without allocating a bound method */
        dj_value obj = {0};
        if (!dj_eval(c, s, callee->a, &obj)) return false;
        dj_native_fn fn;
        if (dj_find_method(obj, callee->name, &fn)) { /* methods come before keys, as in Python */
            if (!eval_args(c, s, &n->args, &ab)) return false;
            return fn(c, n, obj, &ab.args, out);
        }
        dj_value f = {0};
        if (!get_attr(c, callee, obj, callee->name, &f)) return false;
        if (!eval_args(c, s, &n->args, &ab)) return false;
        return dj_call_value(c, n, f, &ab.args, out);
    }
    dj_value f = {0};
    if (!dj_eval(c, s, callee, &f)) return false;
    if (!eval_args(c, s, &n->args, &ab)) return false;
    return dj_call_value(c, n, f, &ab.args, out);
}

/* ---- expressions ---- */

static bool eval_expr(dj_ctx *c, dj_scope *s, const dj_node *n, dj_value *out) {
    switch (n->kind) {
    case DJ_E_CONST: *out = n->value; return true;
    case DJ_E_NAME: *out = lookup(s, n->name); return true;
    case DJ_E_LIST:
    case DJ_E_TUPLE: {
        dj_list *l = dj_list_new(c, n->args.n);
        if (!l) return dj_fail_nomem(c, n);
        l->tuple = n->kind == DJ_E_TUPLE;
        for (size_t i = 0; i < n->args.n; i++) {
            if (!dj_eval(c, s, n->args.v[i], &l->v[i])) return false;
            l->n++;
        }
        *out = (dj_value){.type = DJ_LIST, .u.list = l};
        return true;
    }
    case DJ_E_DICT: {
        dj_dict *d = dj_dict_new(c);
        if (!d) return dj_fail_nomem(c, n);
        for (size_t i = 0; i + 1 < n->args.n; i += 2) {
            dj_value k = {0}, v = {0};
            if (!dj_eval(c, s, n->args.v[i], &k) || !dj_eval(c, s, n->args.v[i + 1], &v)) return false;
            if (k.type != DJ_STR)
                return dj_fail(c, n->args.v[i], DF_ERR_UNSUPPORTED, "dict keys must be strings here, not %s",
                               dj_type_name(k));
            if (!dj_dict_set(c->arena, d, k.u.s, v)) return dj_fail_nomem(c, n);
        }
        *out = (dj_value){.type = DJ_DICT, .u.dict = d};
        return true;
    }
    case DJ_E_ATTR: {
        dj_value obj = {0};
        if (!dj_eval(c, s, n->a, &obj)) return false;
        return get_attr(c, n, obj, n->name, out);
    }
    case DJ_E_ITEM: {
        dj_value obj = {0}, key = {0};
        if (!dj_eval(c, s, n->a, &obj) || !dj_eval(c, s, n->b, &key)) return false;
        return get_item(c, n, obj, key, out);
    }
    case DJ_E_SLICE: {
        dj_value obj = {0}, parts[3] = {0};
        const dj_node *pn[3] = {n->b, n->c, n->d};
        if (!dj_eval(c, s, n->a, &obj)) return false;
        for (int k = 0; k < 3; k++) {
            parts[k] = dj_none();
            if (pn[k] && !dj_eval(c, s, pn[k], &parts[k])) return false;
        }
        return dj_slice(c, n, obj, &parts[0], &parts[1], &parts[2], out);
    }
    case DJ_E_CALL: return eval_call(c, s, n, out);
    case DJ_E_FILTER: {
        dj_value in = {0};
        argbuf ab;
        if (!dj_eval(c, s, n->a, &in) || !eval_args(c, s, &n->args, &ab)) return false;
        return ((const dj_filter_def *)n->impl)->fn(c, n, in, &ab.args, out);
    }
    case DJ_E_TEST: {
        dj_value in = {0};
        argbuf ab;
        bool r;
        if (!dj_eval(c, s, n->a, &in) || !eval_args(c, s, &n->args, &ab)) return false;
        if (!((const dj_test_def *)n->impl)->fn(c, n, in, &ab.args, &r)) return false;
        *out = dj_bool(n->op ? !r : r);
        return true;
    }
    case DJ_E_NOT: {
        dj_value v = {0};
        if (!dj_eval(c, s, n->a, &v)) return false;
        *out = dj_bool(!dj_truthy(v));
        return true;
    }
    case DJ_E_NEG:
    case DJ_E_POS: {
        dj_value v = {0};
        if (!dj_eval(c, s, n->a, &v)) return false;
        if (v.type == DJ_UNDEF) return fail_undefined(c, n, v, "in arithmetic");
        if (v.type == DJ_FLOAT) {
            *out = dj_float(n->kind == DJ_E_NEG ? -v.u.f : v.u.f);
            return true;
        }
        if (v.type == DJ_INT || v.type == DJ_BOOL) {
            int64_t i = ival(v);
            if (n->kind == DJ_E_NEG && i == INT64_MIN) return overflow(c, n);
            *out = dj_int(n->kind == DJ_E_NEG ? -i : i);
            return true;
        }
        return dj_fail(c, n, DF_ERR_INVALID, "bad operand type for unary %s: %s", n->kind == DJ_E_NEG ? "-" : "+",
                       dj_type_name(v));
    }
    case DJ_E_BIN: {
        dj_value a = {0}, b = {0};
        if (!dj_eval(c, s, n->a, &a) || !dj_eval(c, s, n->b, &b)) return false;
        if (n->op == DJ_OP_TILDE) return concat(c, n, a, b, out);
        return arith(c, n, n->op, a, b, out);
    }
    case DJ_E_AND:
    case DJ_E_OR: {
        dj_value a = {0};
        if (!dj_eval(c, s, n->a, &a)) return false;
        if (dj_truthy(a) == (n->kind == DJ_E_OR)) {
            *out = a;
            return true;
        }
        return dj_eval(c, s, n->b, out);
    }
    case DJ_E_COMPARE: {
        dj_value left = {0};
        if (!dj_eval(c, s, n->args.v[0], &left)) return false;
        for (size_t k = 0; k + 1 < n->args.n; k++) {
            dj_value right = {0};
            bool r;
            if (!dj_eval(c, s, n->args.v[k + 1], &right)) return false;
            if (!compare_op(c, n, n->ops[k], left, right, &r)) return false;
            if (!r) {
                *out = dj_bool(false);
                return true;
            }
            left = right;
        }
        *out = dj_bool(true);
        return true;
    }
    case DJ_E_COND: {
        dj_value t = {0};
        if (!dj_eval(c, s, n->b, &t)) return false;
        if (dj_truthy(t)) return dj_eval(c, s, n->a, out);
        if (n->c) return dj_eval(c, s, n->c, out);
        *out = dj_undef(DJ_LIT("conditional expression"));
        return true;
    }
    case DJ_E_KWARG:
        return dj_fail(c, n, DF_ERR_INVALID, "a keyword argument outside of a call");
    default: return dj_fail(c, n, DF_ERR_INVALID, "internal error: a statement where an expression belongs");
    }
}

bool dj_eval(dj_ctx *c, dj_scope *s, const dj_node *n, dj_value *out) {
    if (!enter(c, n)) return false;
    bool ok = eval_expr(c, s, n, out);
    c->depth--;
    return ok;
}

/* ---- statements ---- */

static bool bind_target(dj_ctx *c, dj_scope *s, const dj_node *target, dj_value v) {
    if (target->kind == DJ_E_NAME) return assign(c, target, s, target->name, v);
    if (target->kind == DJ_E_TUPLE) {
        dj_list *items = NULL;
        if (v.type == DJ_LIST) items = v.u.list;
        else if (v.type == DJ_STR) {
            if (!dj_iterate(c, target, v, &items)) return false;
        } else {
            return dj_fail(c, target, DF_ERR_INVALID, "cannot unpack a value of type %s", dj_type_name(v));
        }
        if (items->n != target->args.n)
            return dj_fail(c, target, DF_ERR_INVALID, "expected %zu values to unpack, got %zu", target->args.n,
                           items->n);
        for (size_t i = 0; i < items->n; i++)
            if (!assign(c, target, s, target->args.v[i]->name, items->v[i])) return false;
        return true;
    }
    if (target->kind == DJ_E_ATTR) { /* {% set ns.attr = v %} */
        dj_value obj = lookup(s, target->a->name);
        if (obj.type != DJ_NS)
            return dj_fail(c, target, DF_ERR_INVALID, "cannot assign an attribute of a %s (only of a namespace)",
                           dj_type_name(obj));
        return dj_dict_set(c->arena, obj.u.dict, target->name, v) || dj_fail_nomem(c, target);
    }
    return dj_fail(c, target, DF_ERR_INVALID, "cannot assign to this expression");
}

static bool capture_body(dj_ctx *c, dj_scope *s, const dj_nodes *body, const dj_node *at, dj_str *out) {
    dj_buf b;
    dj_buf_init(&b, c->arena, c->lim.max_output);
    dj_buf *saved = c->out;
    c->out = &b;
    int flow = FLOW_NEXT;
    bool ok = exec_body(c, s, body, &flow);
    c->out = saved;
    if (!ok) return false;
    return dj_str_from_buf(c, &b, out) || dj_fail_nomem(c, at);
}

static bool exec_for(dj_ctx *c, dj_scope *s, const dj_node *n) {
    dj_value seq = {0};
    if (!dj_eval(c, s, n->b, &seq)) return false;
    dj_list *items = NULL;
    if (!dj_iterate(c, n->b, seq, &items)) return false;
    dj_scope *ls = new_scope(c, s);
    dj_scope *is = new_scope(c, ls);
    if (!ls || !is) return dj_fail_nomem(c, n);
    if (n->c) { /* {% for x in xs if cond %}: the loop sees only the items that pass */
        dj_list *kept = dj_list_new(c, items->n);
        if (!kept) return dj_fail_nomem(c, n);
        for (size_t i = 0; i < items->n; i++) {
            dj_value t = {0};
            is->vars.n = 0;
            is->vars.slots = NULL;
            if (!bind_target(c, is, n->a, items->v[i]) || !dj_eval(c, is, n->c, &t)) return false;
            if (dj_truthy(t)) kept->v[kept->n++] = items->v[i];
        }
        items = kept;
    }
    if (items->n == 0) {
        int flow = FLOW_NEXT;
        return exec_body(c, s, &n->orelse, &flow);
    }
    dj_loop *lp = dj_arena_zalloc(c->arena, sizeof *lp);
    if (!lp) return dj_fail_nomem(c, n);
    lp->items = items->v;
    lp->n = items->n;
    if (!assign(c, n, ls, DJ_LIT("loop"), (dj_value){.type = DJ_LOOP, .u.loop = lp})) return false;
    for (size_t i = 0; i < items->n; i++) {
        if (++c->iterations > c->lim.max_iterations)
            return dj_fail(c, n, DF_ERR_INVALID, "the template ran more than %llu loop iterations",
                           (unsigned long long)c->lim.max_iterations);
        lp->i = i;
        /* A fresh scope per iteration, reusing the storage (a macro that captured the old
         * one stays memory-safe; it just sees the newer bindings). */
        is->vars.n = 0;
        is->vars.slots = NULL;
        if (!bind_target(c, is, n->a, items->v[i])) return false;
        int flow = FLOW_NEXT;
        if (!exec_body(c, is, &n->body, &flow)) return false;
        if (flow == FLOW_BREAK) break;
    }
    return true;
}

static bool exec_stmt(dj_ctx *c, dj_scope *s, const dj_node *n, int *flow) {
    switch (n->kind) {
    case DJ_S_TEXT: return out_put(c, n, n->value.u.s.p, n->value.u.s.n);
    case DJ_S_OUTPUT: {
        dj_value v = {0};
        if (!dj_eval(c, s, n->a, &v)) return false;
        if (v.type == DJ_STR) return out_put(c, n, v.u.s.p, v.u.s.n);
        if (!dj_write_str(c, n, c->out, v, 0)) return false;
        return true;
    }
    case DJ_S_IF: {
        dj_value t = {0};
        if (!dj_eval(c, s, n->a, &t)) return false;
        return exec_body(c, s, dj_truthy(t) ? &n->body : &n->orelse, flow);
    }
    case DJ_S_FOR: return exec_for(c, s, n);
    case DJ_S_SET: {
        dj_value v = {0};
        if (!dj_eval(c, s, n->b, &v)) return false;
        return bind_target(c, s, n->a, v);
    }
    case DJ_S_SETBLOCK: {
        dj_str text = {0};
        if (!capture_body(c, s, &n->body, n, &text)) return false;
        return bind_target(c, s, n->a, dj_strv(text));
    }
    case DJ_S_MACRO: {
        dj_func *f = dj_arena_zalloc(c->arena, sizeof *f);
        if (!f) return dj_fail_nomem(c, n);
        f->name = "macro";
        f->macro = n;
        f->closure = s;
        return assign(c, n, s, n->name, (dj_value){.type = DJ_FUNC, .u.fn = f});
    }
    case DJ_S_BREAK: *flow = FLOW_BREAK; return true;
    case DJ_S_CONTINUE: *flow = FLOW_CONTINUE; return true;
    case DJ_S_FILTERBLOCK: {
        dj_str text = {0};
        argbuf ab;
        dj_value v = {0};
        if (!capture_body(c, s, &n->body, n, &text) || !eval_args(c, s, &n->a->args, &ab)) return false;
        if (!((const dj_filter_def *)n->a->impl)->fn(c, n->a, dj_strv(text), &ab.args, &v)) return false;
        return dj_write_str(c, n, c->out, v, 0);
    }
    case DJ_S_WITH: {
        dj_scope *ws = new_scope(c, s);
        if (!ws) return dj_fail_nomem(c, n);
        for (size_t i = 0; i < n->args.n; i++) {
            dj_value v = {0};
            const dj_node *set = n->args.v[i];
            if (!dj_eval(c, s, set->b, &v) || !bind_target(c, ws, set->a, v)) return false;
        }
        return exec_body(c, ws, &n->body, flow);
    }
    case DJ_S_GENERATION: return exec_body(c, s, &n->body, flow);
    default: return dj_fail(c, n, DF_ERR_INVALID, "internal error: an expression where a statement belongs");
    }
}

static bool exec_body(dj_ctx *c, dj_scope *s, const dj_nodes *body, int *flow) {
    for (size_t i = 0; i < body->n; i++) {
        const dj_node *n = body->v[i];
        if (!enter(c, n)) return false;
        bool ok = exec_stmt(c, s, n, flow);
        c->depth--;
        if (!ok) return false;
        if (*flow != FLOW_NEXT) return true;
    }
    return true;
}

/* ---- entry points ---- */

df_jinja_limits df_jinja_default_limits(void) {
    return (df_jinja_limits){
        .max_output = (size_t)64 << 20,
        .max_memory = (size_t)512 << 20,
        .max_iterations = 10000000,
        .max_steps = 2000000000ull,
        .max_depth = 400,
    };
}

df_status df_jinja_parse(const char *src, size_t len, df_jinja_template **out) {
    *out = NULL;
    if (!src && len) return df_fail(DF_ERR_INVALID, "chat template: NULL source");
    df_jinja_template *t = calloc(1, sizeof *t);
    if (!t) return df_fail(DF_ERR_NOMEM, "chat template: out of memory");
    dj_arena_init(&t->arena, 0);
    dj_tokens toks;
    df_status st = dj_lex(&t->arena, src ? src : "", len, &toks);
    if (st == DF_OK) st = dj_parse(&t->arena, &toks, &t->body);
    if (st != DF_OK) {
        df_jinja_free(t);
        return st;
    }
    *out = t;
    return DF_OK;
}

void df_jinja_free(df_jinja_template *t) {
    if (!t) return;
    dj_arena_release(&t->arena);
    free(t);
}

df_status df_jinja_render(const df_jinja_template *t, const json_t *context, const df_jinja_limits *limits,
                          char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!t) return df_fail(DF_ERR_INVALID, "chat template: NULL template");
    if (context && !json_is_object(context))
        return df_fail(DF_ERR_INVALID, "chat template: the context must be a JSON object");
    dj_arena arena;
    dj_ctx c = {0};
    c.lim = limits ? *limits : df_jinja_default_limits();
    if (c.lim.max_depth <= 0) c.lim.max_depth = 1;
    dj_arena_init(&arena, c.lim.max_memory);
    c.arena = &arena;

    dj_scope *globals = new_scope(&c, NULL);
    dj_scope *ctx = globals ? new_scope(&c, globals) : NULL;
    dj_scope *top = ctx ? new_scope(&c, ctx) : NULL;
    dj_buf buf;
    dj_buf_init(&buf, &arena, c.lim.max_output);
    c.out = &buf;
    bool ok = top && dj_make_globals(&c, &globals->vars);
    if (!top) dj_fail_nomem(&c, NULL);
    if (ok && context) {
        dj_value v = {0};
        ok = dj_from_json(&c, context, &v, 0);
        if (ok) ctx->vars = *v.u.dict;
    }
    int flow = FLOW_NEXT;
    if (ok) ok = exec_body(&c, top, &t->body, &flow);
    df_status st = DF_OK;
    if (!ok) {
        if (!c.failed) dj_fail(&c, NULL, DF_ERR_INVALID, "rendering failed");
        if (c.err_line)
            st = df_fail(c.st, "chat template line %u column %u: %s", c.err_line, c.err_col, c.err);
        else
            st = df_fail(c.st, "chat template: %s", c.err);
    } else {
        char *res = malloc(buf.n + 1);
        if (!res) {
            st = df_fail(DF_ERR_NOMEM, "chat template: out of memory for the %zu-byte result", buf.n);
        } else {
            if (buf.n) memcpy(res, buf.p, buf.n);
            res[buf.n] = '\0';
            *out = res;
            if (out_len) *out_len = buf.n;
        }
    }
    dj_arena_release(&arena);
    return st;
}
