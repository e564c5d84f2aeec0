/* The Jinja parser: tokens to a syntax tree, by recursive descent over Jinja2's grammar.
 * Expression precedence, loosest first (as Jinja2 has it, not as Python does):
 *   a if b else c  <  or  <  and  <  not  <  comparisons and `in` (chained like Python)
 *   <  + -  <  ~  <  * / // %  <  **  <  unary - +  <  filters |f and tests `is t`
 *   <  postfix .attr [item] (call)  <  literals, names, ( ) [ ] { }
 * Unknown tags, filters and tests are rejected here, with their line and column, so that a
 * template we cannot render fails when it is loaded rather than on some later request. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "text/jinja_internal.h"

typedef struct parser {
    dj_arena *a;
    const dj_token *t;
    size_t n, i;
    int depth;
    int loops; /* enclosing for loops, for break/continue */
} parser;

typedef struct nvec {
    dj_node **v;
    size_t n, cap;
} nvec;

#define TRY DF_TRY

static df_status oom(void) { return df_fail(DF_ERR_NOMEM, "chat template: out of memory while parsing"); }

static const dj_token *peek(const parser *P) { return &P->t[P->i]; }
static const dj_token *peek_at(const parser *P, size_t k) {
    return P->i + k < P->n ? &P->t[P->i + k] : &P->t[P->n - 1];
}
static const dj_token *advance(parser *P) {
    const dj_token *t = &P->t[P->i];
    if (P->i + 1 < P->n) P->i++;
    return t;
}
static bool tok_is_op(const dj_token *t, dj_op op) { return t->type == DJ_T_OP && t->op == op; }
static bool tok_is_name(const dj_token *t, const char *name) {
    return t->type == DJ_T_NAME && dj_str_eqc(t->s, name);
}

static const char *tok_desc(const dj_token *t, char buf[48]) {
    switch (t->type) {
    case DJ_T_EOF: return "end of template";
    case DJ_T_TEXT: return "template text";
    case DJ_T_VAR_BEGIN: return "'{{'";
    case DJ_T_VAR_END: return "'}}'";
    case DJ_T_BLOCK_BEGIN: return "'{%'";
    case DJ_T_BLOCK_END: return "'%}'";
    case DJ_T_NAME:
        snprintf(buf, 48, "'%.*s'", (int)(t->s.n > 40 ? 40 : t->s.n), t->s.p);
        return buf;
    case DJ_T_INT:
    case DJ_T_FLOAT: return "a number";
    case DJ_T_STRING: return "a string";
    case DJ_T_OP: return "an operator";
    }
    return "?";
}

static df_status perr(const dj_token *t, df_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static df_status perr(const dj_token *t, df_status st, const char *fmt, ...) {
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dj_syntax_error(st, t->line, t->col, "%s", msg);
}

static df_status unexpected(const dj_token *t, const char *wanted) {
    char buf[48];
    return perr(t, DF_ERR_FORMAT, "expected %s, found %s", wanted, tok_desc(t, buf));
}

static df_status expect_op(parser *P, dj_op op, const char *what) {
    if (!tok_is_op(peek(P), op)) return unexpected(peek(P), what);
    advance(P);
    return DF_OK;
}

static df_status expect_block_end(parser *P) {
    if (peek(P)->type != DJ_T_BLOCK_END) return unexpected(peek(P), "'%}'");
    advance(P);
    return DF_OK;
}

static df_status new_node(parser *P, dj_kind kind, const dj_token *at, dj_node **out) {
    dj_node *nd = dj_arena_zalloc(P->a, sizeof *nd);
    if (!nd) return oom();
    nd->kind = kind;
    nd->line = at->line;
    nd->col = at->col;
    *out = nd;
    return DF_OK;
}

static df_status nvec_push(parser *P, nvec *v, dj_node *nd) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        dj_node **nv = dj_arena_alloc(P->a, cap * sizeof *nv);
        if (!nv) return oom();
        if (v->n) memcpy(nv, v->v, v->n * sizeof *nv);
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = nd;
    return DF_OK;
}

static dj_nodes nvec_done(nvec *v) { return (dj_nodes){v->v, v->n}; }

static df_status enter(parser *P) {
    if (++P->depth > DJ_MAX_PARSE_DEPTH)
        return perr(peek(P), DF_ERR_FORMAT, "the template nests deeper than %d levels", DJ_MAX_PARSE_DEPTH);
    return DF_OK;
}

static df_status parse_expr(parser *P, dj_node **out);
static df_status parse_or(parser *P, dj_node **out);
static df_status parse_unary(parser *P, bool with_filter, dj_node **out);
static df_status parse_primary(parser *P, dj_node **out);
static df_status parse_postfix(parser *P, dj_node *nd, dj_node **out);

/* ---- expressions ---- */

/* `(args)` of a call, filter or test: positional then keyword arguments. */
static df_status parse_call_args(parser *P, dj_nodes *out) {
    const dj_token *open = peek(P);
    TRY(expect_op(P, DJ_OP_LPAREN, "'('"));
    nvec v = {0};
    bool kw_seen = false;
    while (!tok_is_op(peek(P), DJ_OP_RPAREN)) {
        if (v.n) {
            TRY(expect_op(P, DJ_OP_COMMA, "',' or ')'"));
            if (tok_is_op(peek(P), DJ_OP_RPAREN)) break;
        }
        const dj_token *t = peek(P);
        if (tok_is_op(t, DJ_OP_MUL) || tok_is_op(t, DJ_OP_POW))
            return perr(t, DF_ERR_UNSUPPORTED, "argument unpacking (* or **) is not supported");
        if (t->type == DJ_T_NAME && tok_is_op(peek_at(P, 1), DJ_OP_ASSIGN)) {
            dj_node *kw = NULL;
            TRY(new_node(P, DJ_E_KWARG, t, &kw));
            kw->name = t->s;
            advance(P);
            advance(P);
            TRY(parse_expr(P, &kw->a));
            TRY(nvec_push(P, &v, kw));
            kw_seen = true;
            continue;
        }
        if (kw_seen) return perr(t, DF_ERR_FORMAT, "a positional argument follows a keyword argument");
        dj_node *e = NULL;
        TRY(parse_expr(P, &e));
        TRY(nvec_push(P, &v, e));
        if (peek(P)->type == DJ_T_EOF) return unexpected(open, "a closed argument list");
    }
    advance(P);
    *out = nvec_done(&v);
    return DF_OK;
}

static bool ends_tuple(const dj_token *t) {
    return t->type == DJ_T_VAR_END || t->type == DJ_T_BLOCK_END || t->type == DJ_T_EOF ||
           tok_is_op(t, DJ_OP_RPAREN) || tok_is_op(t, DJ_OP_ASSIGN) || tok_is_name(t, "if") ||
           tok_is_name(t, "in") || tok_is_name(t, "recursive");
}

/* An expression, or several separated by commas (a tuple without brackets), as after
 * `{% set x =` or `{% for x in`. */
static df_status parse_tuple(parser *P, bool with_condexpr, bool primary_only, dj_node **out) {
    const dj_token *start = peek(P);
    nvec v = {0};
    bool is_tuple = false;
    for (;;) {
        if (v.n) {
            if (!tok_is_op(peek(P), DJ_OP_COMMA)) break;
            advance(P);
            is_tuple = true;
            if (ends_tuple(peek(P))) break;
        }
        dj_node *e = NULL;
        if (primary_only) TRY(parse_primary(P, &e));
        else if (with_condexpr) TRY(parse_expr(P, &e));
        else TRY(parse_or(P, &e));
        TRY(nvec_push(P, &v, e));
    }
    if (!is_tuple) {
        *out = v.v[0];
        return DF_OK;
    }
    dj_node *t = NULL;
    TRY(new_node(P, DJ_E_TUPLE, start, &t));
    t->args = nvec_done(&v);
    *out = t;
    return DF_OK;
}

static df_status parse_primary(parser *P, dj_node **out) {
    TRY(enter(P));
    const dj_token *t = peek(P);
    dj_node *nd = NULL;
    switch (t->type) {
    case DJ_T_NAME: {
        advance(P);
        static const struct {
            const char *name;
            int kind; /* 0 none, 1 true, 2 false */
        } consts[] = {{"true", 1}, {"True", 1}, {"false", 2}, {"False", 2}, {"none", 0}, {"None", 0}};
        for (size_t k = 0; k < sizeof consts / sizeof consts[0]; k++) {
            if (dj_str_eqc(t->s, consts[k].name)) {
                TRY(new_node(P, DJ_E_CONST, t, &nd));
                nd->value = consts[k].kind == 0 ? dj_none() : dj_bool(consts[k].kind == 1);
                *out = nd;
                P->depth--;
                return DF_OK;
            }
        }
        TRY(new_node(P, DJ_E_NAME, t, &nd));
        nd->name = t->s;
        break;
    }
    case DJ_T_STRING: {
        advance(P);
        dj_str s = t->s;
        if (peek(P)->type == DJ_T_STRING) { /* adjacent literals concatenate */
            size_t total = s.n;
            for (size_t k = P->i; k < P->n && P->t[k].type == DJ_T_STRING; k++) total += P->t[k].s.n;
            char *p = dj_arena_alloc(P->a, total + 1);
            if (!p) return oom();
            memcpy(p, s.p, s.n);
            size_t o = s.n;
            while (peek(P)->type == DJ_T_STRING) {
                const dj_token *u = advance(P);
                memcpy(p + o, u->s.p, u->s.n);
                o += u->s.n;
            }
            p[o] = '\0';
            s = (dj_str){p, o};
        }
        TRY(new_node(P, DJ_E_CONST, t, &nd));
        nd->value = dj_strv(s);
        break;
    }
    case DJ_T_INT:
        advance(P);
        TRY(new_node(P, DJ_E_CONST, t, &nd));
        nd->value = dj_int(t->i);
        break;
    case DJ_T_FLOAT:
        advance(P);
        TRY(new_node(P, DJ_E_CONST, t, &nd));
        nd->value = dj_float(t->f);
        break;
    case DJ_T_OP:
        if (t->op == DJ_OP_LPAREN) {
            advance(P);
            if (tok_is_op(peek(P), DJ_OP_RPAREN)) {
                advance(P);
                TRY(new_node(P, DJ_E_TUPLE, t, &nd));
                break;
            }
            TRY(parse_tuple(P, true, false, &nd));
            TRY(expect_op(P, DJ_OP_RPAREN, "')'"));
            break;
        }
        if (t->op == DJ_OP_LBRACKET || t->op == DJ_OP_LBRACE) {
            bool is_dict = t->op == DJ_OP_LBRACE;
            dj_op close = is_dict ? DJ_OP_RBRACE : DJ_OP_RBRACKET;
            advance(P);
            nvec v = {0};
            while (!tok_is_op(peek(P), close)) {
                if (v.n) {
                    TRY(expect_op(P, DJ_OP_COMMA, is_dict ? "',' or '}'" : "',' or ']'"));
                    if (tok_is_op(peek(P), close)) break;
                }
                dj_node *e = NULL;
                TRY(parse_expr(P, &e));
                TRY(nvec_push(P, &v, e));
                if (is_dict) {
                    TRY(expect_op(P, DJ_OP_COLON, "':'"));
                    TRY(parse_expr(P, &e));
                    TRY(nvec_push(P, &v, e));
                }
            }
            advance(P);
            TRY(new_node(P, is_dict ? DJ_E_DICT : DJ_E_LIST, t, &nd));
            nd->args = nvec_done(&v);
            break;
        }
        /* fall through */
    default: return unexpected(t, "an expression");
    }
    P->depth--;
    *out = nd;
    return DF_OK;
}

/* `[...]`: an index, or a slice start:stop:step with any part left out. */
static df_status parse_subscript(parser *P, dj_node *obj, const dj_token *at, dj_node **out) {
    dj_node *parts[3] = {NULL, NULL, NULL};
    bool is_slice = false;
    for (int k = 0; k < 3; k++) {
        const dj_token *t = peek(P);
        if (!tok_is_op(t, DJ_OP_COLON) && !tok_is_op(t, DJ_OP_RBRACKET)) TRY(parse_expr(P, &parts[k]));
        if (k < 2 && tok_is_op(peek(P), DJ_OP_COLON)) {
            advance(P);
            is_slice = true;
            continue;
        }
        break;
    }
    TRY(expect_op(P, DJ_OP_RBRACKET, "']'"));
    dj_node *nd = NULL;
    if (is_slice) {
        TRY(new_node(P, DJ_E_SLICE, at, &nd));
        nd->a = obj;
        nd->b = parts[0];
        nd->c = parts[1];
        nd->d = parts[2];
    } else {
        if (!parts[0]) return unexpected(peek(P), "an index");
        TRY(new_node(P, DJ_E_ITEM, at, &nd));
        nd->a = obj;
        nd->b = parts[0];
    }
    *out = nd;
    return DF_OK;
}

static df_status parse_postfix(parser *P, dj_node *nd, dj_node **out) {
    for (;;) {
        const dj_token *t = peek(P);
        if (tok_is_op(t, DJ_OP_DOT)) {
            advance(P);
            const dj_token *attr = advance(P);
            dj_node *x = NULL;
            if (attr->type == DJ_T_NAME) {
                TRY(new_node(P, DJ_E_ATTR, t, &x));
                x->name = attr->s;
            } else if (attr->type == DJ_T_INT) { /* foo.0 is foo[0] */
                dj_node *k = NULL;
                TRY(new_node(P, DJ_E_CONST, attr, &k));
                k->value = dj_int(attr->i);
                TRY(new_node(P, DJ_E_ITEM, t, &x));
                x->b = k;
            } else {
                return unexpected(attr, "an attribute name after '.'");
            }
            x->a = nd;
            nd = x;
        } else if (tok_is_op(t, DJ_OP_LBRACKET)) {
            advance(P);
            TRY(parse_subscript(P, nd, t, &nd));
        } else if (tok_is_op(t, DJ_OP_LPAREN)) {
            dj_node *x = NULL;
            TRY(new_node(P, DJ_E_CALL, t, &x));
            x->line = nd->line; /* errors point at the callee, not at "(" */
            x->col = nd->col;
            x->a = nd;
            TRY(parse_call_args(P, &x->args));
            nd = x;
        } else {
            break;
        }
    }
    *out = nd;
    return DF_OK;
}

static bool can_start_test_arg(const dj_token *t) {
    if (t->type == DJ_T_NAME) {
        static const char *const kw[] = {"else", "or", "and", "if", "is", "not", "in"};
        for (size_t k = 0; k < sizeof kw / sizeof kw[0]; k++)
            if (dj_str_eqc(t->s, kw[k])) return false;
        return true;
    }
    return t->type == DJ_T_STRING || t->type == DJ_T_INT || t->type == DJ_T_FLOAT ||
           tok_is_op(t, DJ_OP_LBRACKET) || tok_is_op(t, DJ_OP_LBRACE);
}

/* Filters (|f, |f(args)) and tests (is t, is not t, is t(args), is t arg) after an operand. */
static df_status parse_filters(parser *P, dj_node *nd, dj_node **out) {
    for (;;) {
        const dj_token *t = peek(P);
        if (tok_is_op(t, DJ_OP_PIPE)) {
            advance(P);
            const dj_token *name = advance(P);
            if (name->type != DJ_T_NAME) return unexpected(name, "a filter name after '|'");
            const dj_filter_def *f = dj_find_filter(name->s);
            if (!f)
                return perr(name, DF_ERR_UNSUPPORTED, "no filter named '%.*s'", (int)(name->s.n > 60 ? 60 : name->s.n), name->s.p);
            dj_node *x = NULL;
            TRY(new_node(P, DJ_E_FILTER, name, &x));
            x->name = name->s;
            x->impl = f;
            x->a = nd;
            if (tok_is_op(peek(P), DJ_OP_LPAREN)) TRY(parse_call_args(P, &x->args));
            nd = x;
        } else if (tok_is_name(t, "is")) {
            advance(P);
            bool negate = false;
            if (tok_is_name(peek(P), "not")) {
                advance(P);
                negate = true;
            }
            const dj_token *name = advance(P);
            if (name->type != DJ_T_NAME) return unexpected(name, "a test name after 'is'");
            const dj_test_def *test = dj_find_test(name->s);
            if (!test)
                return perr(name, DF_ERR_UNSUPPORTED, "no test named '%.*s'", (int)(name->s.n > 60 ? 60 : name->s.n), name->s.p);
            dj_node *x = NULL;
            TRY(new_node(P, DJ_E_TEST, name, &x));
            x->name = name->s;
            x->impl = test;
            x->op = negate;
            x->a = nd;
            if (tok_is_op(peek(P), DJ_OP_LPAREN)) {
                TRY(parse_call_args(P, &x->args));
            } else if (can_start_test_arg(peek(P))) {
                dj_node *arg = NULL;
                TRY(parse_primary(P, &arg));
                TRY(parse_postfix(P, arg, &arg));
                dj_node **one = dj_arena_alloc(P->a, sizeof *one);
                if (!one) return oom();
                one[0] = arg;
                x->args = (dj_nodes){one, 1};
            }
            nd = x;
        } else {
            break;
        }
    }
    *out = nd;
    return DF_OK;
}

static df_status parse_unary(parser *P, bool with_filter, dj_node **out) {
    TRY(enter(P));
    const dj_token *t = peek(P);
    dj_node *nd = NULL;
    if (tok_is_op(t, DJ_OP_SUB) || tok_is_op(t, DJ_OP_ADD)) {
        advance(P);
        TRY(new_node(P, t->op == DJ_OP_SUB ? DJ_E_NEG : DJ_E_POS, t, &nd));
        TRY(parse_unary(P, false, &nd->a));
    } else {
        TRY(parse_primary(P, &nd));
        TRY(parse_postfix(P, nd, &nd));
    }
    if (with_filter) TRY(parse_filters(P, nd, &nd));
    P->depth--;
    *out = nd;
    return DF_OK;
}

typedef df_status (*level_fn)(parser *P, dj_node **out);

static df_status binary_level(parser *P, level_fn next, const dj_op *ops, size_t nops, dj_node **out) {
    dj_node *left = NULL;
    TRY(next(P, &left));
    for (;;) {
        const dj_token *t = peek(P);
        dj_op found = DJ_OP_NONE;
        for (size_t k = 0; k < nops; k++)
            if (tok_is_op(t, ops[k])) found = ops[k];
        if (found == DJ_OP_NONE) break;
        advance(P);
        dj_node *x = NULL;
        TRY(new_node(P, DJ_E_BIN, t, &x));
        x->op = found;
        x->a = left;
        TRY(next(P, &x->b));
        left = x;
    }
    *out = left;
    return DF_OK;
}

static df_status parse_unary_f(parser *P, dj_node **out) { return parse_unary(P, true, out); }
static df_status parse_pow(parser *P, dj_node **out) {
    static const dj_op ops[] = {DJ_OP_POW};
    return binary_level(P, parse_unary_f, ops, 1, out);
}
static df_status parse_math2(parser *P, dj_node **out) {
    static const dj_op ops[] = {DJ_OP_MUL, DJ_OP_DIV, DJ_OP_FLOORDIV, DJ_OP_MOD};
    return binary_level(P, parse_pow, ops, 4, out);
}
static df_status parse_concat(parser *P, dj_node **out) {
    static const dj_op ops[] = {DJ_OP_TILDE};
    return binary_level(P, parse_math2, ops, 1, out);
}
static df_status parse_math1(parser *P, dj_node **out) {
    static const dj_op ops[] = {DJ_OP_ADD, DJ_OP_SUB};
    return binary_level(P, parse_concat, ops, 2, out);
}

static df_status parse_compare(parser *P, dj_node **out) {
    const dj_token *start = peek(P);
    dj_node *first = NULL;
    TRY(parse_math1(P, &first));
    nvec operands = {0};
    dj_op ops[64];
    size_t nops = 0;
    for (;;) {
        const dj_token *t = peek(P);
        dj_op op = DJ_OP_NONE;
        if (t->type == DJ_T_OP && (t->op == DJ_OP_EQ || t->op == DJ_OP_NE || t->op == DJ_OP_LT ||
                                   t->op == DJ_OP_LE || t->op == DJ_OP_GT || t->op == DJ_OP_GE)) {
            op = t->op;
            advance(P);
        } else if (tok_is_name(t, "in")) {
            op = DJ_OP_IN;
            advance(P);
        } else if (tok_is_name(t, "not") && tok_is_name(peek_at(P, 1), "in")) {
            op = DJ_OP_NOTIN;
            advance(P);
            advance(P);
        } else {
            break;
        }
        if (nops == sizeof ops / sizeof ops[0]) return perr(t, DF_ERR_FORMAT, "too many chained comparisons");
        if (!operands.n) TRY(nvec_push(P, &operands, first));
        ops[nops++] = op;
        dj_node *e = NULL;
        TRY(parse_math1(P, &e));
        TRY(nvec_push(P, &operands, e));
    }
    if (!nops) {
        *out = first;
        return DF_OK;
    }
    dj_node *x = NULL;
    TRY(new_node(P, DJ_E_COMPARE, start, &x));
    x->args = nvec_done(&operands);
    x->ops = dj_arena_alloc(P->a, nops * sizeof *x->ops);
    if (!x->ops) return oom();
    memcpy(x->ops, ops, nops * sizeof *x->ops);
    *out = x;
    return DF_OK;
}

static df_status parse_not(parser *P, dj_node **out) {
    const dj_token *t = peek(P);
    if (tok_is_name(t, "not")) {
        TRY(enter(P));
        advance(P);
        dj_node *x = NULL;
        TRY(new_node(P, DJ_E_NOT, t, &x));
        TRY(parse_not(P, &x->a));
        P->depth--;
        *out = x;
        return DF_OK;
    }
    return parse_compare(P, out);
}

static df_status logic_level(parser *P, level_fn next, const char *word, dj_kind kind, dj_node **out) {
    dj_node *left = NULL;
    TRY(next(P, &left));
    while (tok_is_name(peek(P), word)) {
        const dj_token *t = advance(P);
        dj_node *x = NULL;
        TRY(new_node(P, kind, t, &x));
        x->a = left;
        TRY(next(P, &x->b));
        left = x;
    }
    *out = left;
    return DF_OK;
}

static df_status parse_and(parser *P, dj_node **out) { return logic_level(P, parse_not, "and", DJ_E_AND, out); }
static df_status parse_or(parser *P, dj_node **out) { return logic_level(P, parse_and, "or", DJ_E_OR, out); }

/* a if b else c; `else` may be left out (the value is then undefined when b is false). */
static df_status parse_expr(parser *P, dj_node **out) {
    TRY(enter(P));
    dj_node *e = NULL;
    TRY(parse_or(P, &e));
    while (tok_is_name(peek(P), "if")) {
        const dj_token *t = advance(P);
        dj_node *x = NULL;
        TRY(new_node(P, DJ_E_COND, t, &x));
        x->a = e;
        TRY(parse_or(P, &x->b));
        if (tok_is_name(peek(P), "else")) {
            advance(P);
            TRY(parse_expr(P, &x->c));
        }
        e = x;
    }
    P->depth--;
    *out = e;
    return DF_OK;
}

/* ---- statements ---- */

static const char *const g_end_tags[] = {"endif", "endfor", "else", "elif", "endmacro", "endset",
                                         "endfilter", "endwith", "endgeneration", "endraw",
                                         "endcall", "endblock", NULL};

static df_status parse_body(parser *P, const char *const *ends, const dj_token *opener,
                            const char *opener_name, dj_nodes *out, const dj_token **end_name);

/* The target of set/for: a name, names separated by commas, or (with_namespace) ns.attr. */
static df_status parse_target(parser *P, bool with_namespace, dj_node **out) {
    const dj_token *t = peek(P);
    if (with_namespace && t->type == DJ_T_NAME && tok_is_op(peek_at(P, 1), DJ_OP_DOT) &&
        peek_at(P, 2)->type == DJ_T_NAME) {
        dj_node *obj = NULL, *x = NULL;
        TRY(new_node(P, DJ_E_NAME, t, &obj));
        obj->name = t->s;
        advance(P);
        const dj_token *dot = advance(P);
        const dj_token *attr = advance(P);
        TRY(new_node(P, DJ_E_ATTR, dot, &x));
        x->a = obj;
        x->name = attr->s;
        *out = x;
        return DF_OK;
    }
    dj_node *nd = NULL;
    TRY(parse_tuple(P, false, true, &nd));
    bool ok = nd->kind == DJ_E_NAME;
    if (nd->kind == DJ_E_TUPLE) {
        ok = nd->args.n > 0;
        for (size_t k = 0; k < nd->args.n; k++)
            if (nd->args.v[k]->kind != DJ_E_NAME) ok = false;
    }
    if (!ok) return perr(t, DF_ERR_FORMAT, "can only assign to a name, names separated by commas or a namespace attribute");
    *out = nd;
    return DF_OK;
}

static df_status parse_if(parser *P, const dj_token *opener, dj_node **out) {
    dj_node *root = NULL;
    TRY(new_node(P, DJ_S_IF, opener, &root));
    dj_node *cur = root;
    for (;;) {
        TRY(parse_expr(P, &cur->a));
        TRY(expect_block_end(P));
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        const dj_token *end = NULL;
        TRY(parse_body(P, ends, opener, "if", &cur->body, &end));
        if (tok_is_name(end, "elif")) {
            dj_node *next = NULL;
            TRY(new_node(P, DJ_S_IF, end, &next));
            dj_node **one = dj_arena_alloc(P->a, sizeof *one);
            if (!one) return oom();
            one[0] = next;
            cur->orelse = (dj_nodes){one, 1};
            cur = next;
            continue;
        }
        if (tok_is_name(end, "else")) {
            TRY(expect_block_end(P));
            static const char *const ends2[] = {"endif", NULL};
            TRY(parse_body(P, ends2, opener, "if", &cur->orelse, &end));
        }
        break;
    }
    TRY(expect_block_end(P));
    *out = root;
    return DF_OK;
}

static df_status parse_for(parser *P, const dj_token *opener, dj_node **out) {
    dj_node *nd = NULL;
    TRY(new_node(P, DJ_S_FOR, opener, &nd));
    TRY(parse_target(P, false, &nd->a));
    if (!tok_is_name(peek(P), "in")) return unexpected(peek(P), "'in'");
    advance(P);
    TRY(parse_tuple(P, false, false, &nd->b));
    if (tok_is_name(peek(P), "if")) {
        advance(P);
        TRY(parse_expr(P, &nd->c));
    }
    if (tok_is_name(peek(P), "recursive")) return perr(peek(P), DF_ERR_UNSUPPORTED, "recursive loops are not supported");
    TRY(expect_block_end(P));
    static const char *const ends[] = {"endfor", "else", NULL};
    const dj_token *end = NULL;
    P->loops++;
    TRY(parse_body(P, ends, opener, "for", &nd->body, &end));
    P->loops--;
    if (tok_is_name(end, "else")) {
        TRY(expect_block_end(P));
        static const char *const ends2[] = {"endfor", NULL};
        TRY(parse_body(P, ends2, opener, "for", &nd->orelse, &end));
    }
    TRY(expect_block_end(P));
    *out = nd;
    return DF_OK;
}

static df_status parse_set(parser *P, const dj_token *opener, dj_node **out) {
    dj_node *target = NULL;
    TRY(parse_target(P, true, &target));
    dj_node *nd = NULL;
    if (tok_is_op(peek(P), DJ_OP_ASSIGN)) {
        advance(P);
        TRY(new_node(P, DJ_S_SET, opener, &nd));
        nd->a = target;
        TRY(parse_tuple(P, true, false, &nd->b));
        TRY(expect_block_end(P));
    } else {
        if (tok_is_op(peek(P), DJ_OP_PIPE)) return perr(peek(P), DF_ERR_UNSUPPORTED, "filters on a block {%% set %%} are not supported");
        TRY(expect_block_end(P));
        TRY(new_node(P, DJ_S_SETBLOCK, opener, &nd));
        nd->a = target;
        static const char *const ends[] = {"endset", NULL};
        const dj_token *end = NULL;
        TRY(parse_body(P, ends, opener, "set", &nd->body, &end));
        TRY(expect_block_end(P));
    }
    *out = nd;
    return DF_OK;
}

static df_status parse_macro(parser *P, const dj_token *opener, dj_node **out) {
    const dj_token *name = advance(P);
    if (name->type != DJ_T_NAME) return unexpected(name, "a macro name");
    dj_node *nd = NULL;
    TRY(new_node(P, DJ_S_MACRO, opener, &nd));
    nd->name = name->s;
    TRY(expect_op(P, DJ_OP_LPAREN, "'('"));
    nvec params = {0};
    bool defaults = false;
    while (!tok_is_op(peek(P), DJ_OP_RPAREN)) {
        if (params.n) {
            TRY(expect_op(P, DJ_OP_COMMA, "',' or ')'"));
            if (tok_is_op(peek(P), DJ_OP_RPAREN)) break;
        }
        const dj_token *p = advance(P);
        if (p->type != DJ_T_NAME) return unexpected(p, "a parameter name");
        for (size_t k = 0; k < params.n; k++)
            if (dj_str_eq(params.v[k]->name, p->s))
                return perr(p, DF_ERR_FORMAT, "duplicate parameter '%.*s'", (int)(p->s.n > 60 ? 60 : p->s.n), p->s.p);
        dj_node *param = NULL;
        if (tok_is_op(peek(P), DJ_OP_ASSIGN)) {
            advance(P);
            TRY(new_node(P, DJ_E_KWARG, p, &param));
            TRY(parse_expr(P, &param->a));
            defaults = true;
        } else {
            if (defaults) return perr(p, DF_ERR_FORMAT, "a parameter without a default follows one with a default");
            TRY(new_node(P, DJ_E_NAME, p, &param));
        }
        param->name = p->s;
        TRY(nvec_push(P, &params, param));
    }
    advance(P);
    nd->args = nvec_done(&params);
    TRY(expect_block_end(P));
    static const char *const ends[] = {"endmacro", NULL};
    const dj_token *end = NULL;
    int loops = P->loops;
    P->loops = 0; /* break/continue cannot leave a macro */
    TRY(parse_body(P, ends, opener, "macro", &nd->body, &end));
    P->loops = loops;
    if (peek(P)->type == DJ_T_NAME) advance(P); /* {% endmacro name %} */
    TRY(expect_block_end(P));
    *out = nd;
    return DF_OK;
}

static df_status parse_filter_block(parser *P, const dj_token *opener, dj_node **out) {
    const dj_token *name = advance(P);
    if (name->type != DJ_T_NAME) return unexpected(name, "a filter name");
    const dj_filter_def *f = dj_find_filter(name->s);
    if (!f) return perr(name, DF_ERR_UNSUPPORTED, "no filter named '%.*s'", (int)(name->s.n > 60 ? 60 : name->s.n), name->s.p);
    dj_node *nd = NULL, *filter = NULL;
    TRY(new_node(P, DJ_S_FILTERBLOCK, opener, &nd));
    TRY(new_node(P, DJ_E_FILTER, name, &filter));
    filter->name = name->s;
    filter->impl = f;
    if (tok_is_op(peek(P), DJ_OP_LPAREN)) TRY(parse_call_args(P, &filter->args));
    nd->a = filter;
    TRY(expect_block_end(P));
    static const char *const ends[] = {"endfilter", NULL};
    const dj_token *end = NULL;
    TRY(parse_body(P, ends, opener, "filter", &nd->body, &end));
    TRY(expect_block_end(P));
    *out = nd;
    return DF_OK;
}

static df_status parse_with(parser *P, const dj_token *opener, dj_node **out) {
    dj_node *nd = NULL;
    TRY(new_node(P, DJ_S_WITH, opener, &nd));
    nvec sets = {0};
    while (peek(P)->type != DJ_T_BLOCK_END) {
        if (sets.n) TRY(expect_op(P, DJ_OP_COMMA, "',' or '%}'"));
        dj_node *s = NULL;
        TRY(new_node(P, DJ_S_SET, peek(P), &s));
        TRY(parse_target(P, false, &s->a));
        TRY(expect_op(P, DJ_OP_ASSIGN, "'='"));
        TRY(parse_expr(P, &s->b));
        TRY(nvec_push(P, &sets, s));
    }
    advance(P);
    nd->args = nvec_done(&sets);
    static const char *const ends[] = {"endwith", NULL};
    const dj_token *end = NULL;
    TRY(parse_body(P, ends, opener, "with", &nd->body, &end));
    TRY(expect_block_end(P));
    *out = nd;
    return DF_OK;
}

/* After "{%": one statement, including its body and end tag. */
static df_status parse_statement(parser *P, const dj_token *opener, dj_node **out) {
    const dj_token *t = advance(P);
    if (t->type != DJ_T_NAME) return unexpected(t, "a tag name after '{%'");
    TRY(enter(P));
    df_status st;
    dj_node *nd = NULL;
    if (dj_str_eqc(t->s, "if")) st = parse_if(P, opener, &nd);
    else if (dj_str_eqc(t->s, "for")) st = parse_for(P, opener, &nd);
    else if (dj_str_eqc(t->s, "set")) st = parse_set(P, opener, &nd);
    else if (dj_str_eqc(t->s, "macro")) st = parse_macro(P, opener, &nd);
    else if (dj_str_eqc(t->s, "filter")) st = parse_filter_block(P, opener, &nd);
    else if (dj_str_eqc(t->s, "with")) st = parse_with(P, opener, &nd);
    else if (dj_str_eqc(t->s, "break") || dj_str_eqc(t->s, "continue")) {
        bool brk = dj_str_eqc(t->s, "break");
        if (!P->loops) return perr(t, DF_ERR_FORMAT, "'%s' outside of a for loop", brk ? "break" : "continue");
        st = new_node(P, brk ? DJ_S_BREAK : DJ_S_CONTINUE, opener, &nd);
        if (st == DF_OK) st = expect_block_end(P);
    } else if (dj_str_eqc(t->s, "generation")) {
        st = new_node(P, DJ_S_GENERATION, opener, &nd);
        if (st == DF_OK) st = expect_block_end(P);
        static const char *const ends[] = {"endgeneration", NULL};
        const dj_token *end = NULL;
        if (st == DF_OK) st = parse_body(P, ends, opener, "generation", &nd->body, &end);
        if (st == DF_OK) st = expect_block_end(P);
    } else {
        for (size_t k = 0; g_end_tags[k]; k++)
            if (dj_str_eqc(t->s, g_end_tags[k]))
                return perr(t, DF_ERR_FORMAT, "unexpected '{%% %s %%}' with no open tag it could close", g_end_tags[k]);
        static const char *const known[] = {"call", "include", "extends", "block", "import", "from",
                                            "do", "autoescape", "trans", "pluralize", NULL};
        for (size_t k = 0; known[k]; k++)
            if (dj_str_eqc(t->s, known[k]))
                return perr(t, DF_ERR_UNSUPPORTED, "the {%% %s %%} tag is not supported", known[k]);
        return perr(t, DF_ERR_UNSUPPORTED, "unknown tag '%.*s'", (int)(t->s.n > 60 ? 60 : t->s.n), t->s.p);
    }
    if (st != DF_OK) return st;
    P->depth--;
    *out = nd;
    return DF_OK;
}

/* Statements up to one of `ends` (NULL: up to the end of the template). On return the
 * "{%" and the end tag's name are consumed and *end_name is the name token. */
static df_status parse_body(parser *P, const char *const *ends, const dj_token *opener,
                            const char *opener_name, dj_nodes *out, const dj_token **end_name) {
    nvec v = {0};
    for (;;) {
        const dj_token *t = peek(P);
        if (t->type == DJ_T_EOF) {
            if (ends)
                return perr(opener, DF_ERR_FORMAT, "'{%% %s %%}' is never closed (expected '{%% %s %%}')",
                            opener_name, ends[0]);
            break;
        }
        if (t->type == DJ_T_TEXT) {
            advance(P);
            dj_node *nd = NULL;
            TRY(new_node(P, DJ_S_TEXT, t, &nd));
            nd->value = dj_strv(t->s);
            TRY(nvec_push(P, &v, nd));
            continue;
        }
        if (t->type == DJ_T_VAR_BEGIN) {
            advance(P);
            if (peek(P)->type == DJ_T_VAR_END) return unexpected(peek(P), "an expression");
            dj_node *nd = NULL;
            TRY(new_node(P, DJ_S_OUTPUT, t, &nd));
            TRY(parse_tuple(P, true, false, &nd->a));
            if (peek(P)->type != DJ_T_VAR_END) return unexpected(peek(P), "'}}'");
            advance(P);
            TRY(nvec_push(P, &v, nd));
            continue;
        }
        if (t->type == DJ_T_BLOCK_BEGIN) {
            const dj_token *name = peek_at(P, 1);
            for (size_t k = 0; ends && ends[k]; k++) {
                if (tok_is_name(name, ends[k])) {
                    advance(P);
                    advance(P);
                    *end_name = name;
                    *out = nvec_done(&v);
                    return DF_OK;
                }
            }
            advance(P);
            dj_node *nd = NULL;
            TRY(parse_statement(P, t, &nd));
            TRY(nvec_push(P, &v, nd));
            continue;
        }
        return unexpected(t, "text, '{{' or '{%'");
    }
    *out = nvec_done(&v);
    return DF_OK;
}

df_status dj_parse(dj_arena *a, const dj_tokens *toks, dj_nodes *out) {
    parser P = {.a = a, .t = toks->v, .n = toks->n};
    const dj_token *end = NULL;
    return parse_body(&P, NULL, NULL, NULL, out, &end);
}
