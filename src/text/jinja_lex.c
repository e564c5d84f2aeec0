/* The Jinja lexer: splits template source into text and the tokens inside {{ }} and {% %},
 * applying whitespace control the way Jinja2 does under transformers' settings:
 *   - "\r\n" and "\r" read as "\n", and one trailing newline of the source is dropped;
 *   - {%- / {{- / {#- remove all whitespace before the tag, -%} / -}} / -#} all after it;
 *   - lstrip_blocks: spaces and tabs between the start of a line and a {% or {# tag go,
 *     unless the tag opens with {%+;
 *   - trim_blocks: the first newline after a %} or #} goes, unless the tag ends with +%}.
 * Comments vanish here; {% raw %}...{% endraw %} becomes plain text. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "text/jinja_internal.h"

df_status dj_syntax_error(df_status st, uint32_t line, uint32_t col, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return df_fail(st, "chat template line %u column %u: %s", line, col, msg);
}

typedef struct lexer {
    dj_arena *a;
    const char *s;
    size_t n, pos;
    size_t lc_off, lc_line_start; /* line/column cursor: tokens come in source order */
    uint32_t lc_line;
    dj_token *v;
    size_t nv, cap;
    bool line_starting; /* the previous tag ended with a newline (or we are at the start) */
} lexer;

static void linecol(lexer *L, size_t off, uint32_t *line, uint32_t *col) {
    if (off < L->lc_off) {
        L->lc_off = L->lc_line_start = 0;
        L->lc_line = 1;
    }
    for (size_t i = L->lc_off; i < off && i < L->n; i++) {
        if (L->s[i] == '\n') {
            L->lc_line++;
            L->lc_line_start = i + 1;
        }
    }
    L->lc_off = off;
    *line = L->lc_line;
    *col = (uint32_t)(off - L->lc_line_start + 1);
}

static df_status err_at(lexer *L, size_t off, df_status st, const char *fmt, const char *arg) {
    uint32_t line, col;
    linecol(L, off, &line, &col);
    return dj_syntax_error(st, line, col, fmt, arg);
}

static df_status push(lexer *L, dj_tok_type type, size_t off, dj_token **out) {
    if (L->nv == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        dj_token *v = dj_arena_alloc(L->a, cap * sizeof *v);
        if (!v) return df_fail(DF_ERR_NOMEM, "chat template: out of memory while lexing");
        if (L->nv) memcpy(v, L->v, L->nv * sizeof *v);
        L->v = v;
        L->cap = cap;
    }
    dj_token *t = &L->v[L->nv++];
    memset(t, 0, sizeof *t);
    t->type = type;
    linecol(L, off, &t->line, &t->col);
    if (out) *out = t;
    return DF_OK;
}

/* Whitespace in the sense of Python's \s, for whitespace control. */
static size_t space_at(const char *s, size_t n, size_t i) {
    unsigned char c = (unsigned char)s[i];
    if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
    if (c < 0x80) return 0;
    size_t j = i;
    uint32_t cp = dj_utf8_next(s, n, &j);
    return cp >= 0x80 && dj_is_space(cp) ? j - i : 0;
}

static size_t skip_space(const lexer *L, size_t i) {
    size_t k;
    while (i < L->n && (k = space_at(L->s, L->n, i))) i += k;
    return i;
}

/* The end of s[start, end) once trailing whitespace is removed. */
static size_t rstrip_end(const lexer *L, size_t start, size_t end) {
    size_t e = end;
    while (e > start) {
        size_t b = e - 1;
        while (b > start && ((unsigned char)L->s[b] & 0xC0) == 0x80) b--;
        if (space_at(L->s, L->n, b) != e - b) break;
        e = b;
    }
    return e;
}

/* lstrip_blocks: where the text before a {% or {# tag ends once spaces between the last
 * line start and the tag are dropped. */
static size_t lstrip_end(const lexer *L, size_t start, size_t end) {
    size_t lp = end;
    while (lp > start && L->s[lp - 1] != '\n') lp--;
    if (lp == start && !L->line_starting) return end;
    for (size_t i = lp; i < end;) {
        size_t k = space_at(L->s, L->n, i);
        if (!k || L->s[i] == '\n') return end;
        i += k;
    }
    return lp;
}

static df_status emit_text(lexer *L, size_t start, size_t end) {
    if (end <= start) return DF_OK;
    dj_token *t = NULL;
    DF_TRY(push(L, DJ_T_TEXT, start, &t));
    t->s = (dj_str){L->s + start, end - start};
    return DF_OK;
}

/* After a tag's closing delimiter at L->pos: the sign before it decides what follows. */
static void after_tag(lexer *L, char sign, bool trim_blocks) {
    if (sign == '-') {
        size_t p = skip_space(L, L->pos);
        L->line_starting = p > L->pos && L->s[p - 1] == '\n';
        L->pos = p;
    } else if (sign != '+' && trim_blocks && L->pos < L->n && L->s[L->pos] == '\n') {
        L->pos++;
        L->line_starting = true;
    } else {
        L->line_starting = false;
    }
}

static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string literal at L->pos, decoded with Python's escapes (unknown ones stay as written). */
static df_status lex_string(lexer *L) {
    size_t start = L->pos;
    char q = L->s[L->pos++];
    size_t end = L->pos;
    while (end < L->n && L->s[end] != q) end += L->s[end] == '\\' ? 2 : 1;
    if (end >= L->n) return err_at(L, start, DF_ERR_FORMAT, "unterminated string literal%s", "");
    char *out = dj_arena_alloc(L->a, end - L->pos + 1);
    if (!out) return df_fail(DF_ERR_NOMEM, "chat template: out of memory while lexing");
    size_t o = 0;
    for (size_t i = L->pos; i < end;) {
        char ch = L->s[i];
        if (ch != '\\') {
            out[o++] = ch;
            i++;
            continue;
        }
        char e = L->s[i + 1];
        i += 2;
        uint32_t cp = 0;
        int want = 0;
        switch (e) {
        case '\\': out[o++] = '\\'; continue;
        case '\'': out[o++] = '\''; continue;
        case '"': out[o++] = '"'; continue;
        case 'a': out[o++] = '\a'; continue;
        case 'b': out[o++] = '\b'; continue;
        case 'f': out[o++] = '\f'; continue;
        case 'n': out[o++] = '\n'; continue;
        case 'r': out[o++] = '\r'; continue;
        case 't': out[o++] = '\t'; continue;
        case 'v': out[o++] = '\v'; continue;
        case '\n': continue; /* a backslash-newline joins lines */
        case 'x': want = 2; break;
        case 'u': want = 4; break;
        case 'U': want = 8; break;
        case 'N':
            return err_at(L, i - 2, DF_ERR_UNSUPPORTED, "\\N{...} escapes are not supported%s", "");
        default:
            if (e >= '0' && e <= '7') {
                cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < end && L->s[i] >= '0' && L->s[i] <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(L->s[i++] - '0');
                char tmp[4];
                size_t m = dj_utf8_put(tmp, cp);
                memcpy(out + o, tmp, m); /* \ooo is at most 0777: two bytes, from four */
                o += m;
                continue;
            }
            out[o++] = '\\';
            out[o++] = e;
            continue;
        }
        for (int k = 0; k < want; k++) {
            int h = i < end ? hexval(L->s[i]) : -1;
            if (h < 0) return err_at(L, i, DF_ERR_FORMAT, "truncated \\%s escape in a string literal", e == 'x' ? "x" : e == 'u' ? "u" : "U");
            cp = cp * 16 + (uint32_t)h;
            i++;
        }
        if (cp > 0x10FFFF) return err_at(L, i, DF_ERR_FORMAT, "escape beyond U+10FFFF%s", "");
        /* Escapes never grow the text: \xHH (4 bytes) -> <= 2, \uHHHH (6) -> <= 3,
         * \UHHHHHHHH (10) -> <= 4. */
        char tmp[4];
        size_t m = dj_utf8_put(tmp, cp);
        memcpy(out + o, tmp, m);
        o += m;
    }
    out[o] = '\0';
    dj_token *t = NULL;
    DF_TRY(push(L, DJ_T_STRING, start, &t));
    t->s = (dj_str){out, o};
    L->pos = end + 1;
    return DF_OK;
}

static df_status lex_number(lexer *L) {
    size_t start = L->pos;
    const char *s = L->s;
    size_t i = start;
    bool after_dot = start > 0 && s[start - 1] == '.';
    /* 0x, 0o and 0b integers */
    if (s[i] == '0' && i + 1 < L->n && (s[i + 1] == 'x' || s[i + 1] == 'X' || s[i + 1] == 'o' ||
                                        s[i + 1] == 'O' || s[i + 1] == 'b' || s[i + 1] == 'B')) {
        char kind = (char)(s[i + 1] | 0x20);
        int base = kind == 'x' ? 16 : kind == 'o' ? 8 : 2;
        i += 2;
        uint64_t v = 0;
        size_t digits = 0;
        while (i < L->n) {
            if (s[i] == '_') {
                i++;
                continue;
            }
            int h = hexval(s[i]);
            if (h < 0 || h >= base) break;
            if (v > (uint64_t)INT64_MAX / (uint64_t)base)
                return err_at(L, start, DF_ERR_FORMAT, "integer literal too large%s", "");
            v = v * (uint64_t)base + (uint64_t)h;
            if (v > (uint64_t)INT64_MAX) return err_at(L, start, DF_ERR_FORMAT, "integer literal too large%s", "");
            digits++;
            i++;
        }
        if (!digits) return err_at(L, start, DF_ERR_FORMAT, "malformed integer literal%s", "");
        dj_token *t = NULL;
        DF_TRY(push(L, DJ_T_INT, start, &t));
        t->i = (int64_t)v;
        L->pos = i;
        return DF_OK;
    }
    char buf[128];
    size_t nb = 0;
    bool is_float = false;
#define DIGITS()                                                                              \
    while (i < L->n && (is_digit(s[i]) || (s[i] == '_' && i + 1 < L->n && is_digit(s[i + 1])))) { \
        if (s[i] != '_') {                                                                    \
            if (nb >= sizeof buf - 8) return err_at(L, start, DF_ERR_FORMAT, "number literal too long%s", ""); \
            buf[nb++] = s[i];                                                                 \
        }                                                                                     \
        i++;                                                                                  \
    }
    DIGITS();
    if (!after_dot && i + 1 < L->n && s[i] == '.' && is_digit(s[i + 1])) {
        is_float = true;
        buf[nb++] = s[i++];
        DIGITS();
    }
    if (!after_dot && i < L->n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < L->n && (s[j] == '+' || s[j] == '-')) j++;
        if (j < L->n && is_digit(s[j])) {
            is_float = true;
            buf[nb++] = 'e';
            if (s[i + 1] == '-' || s[i + 1] == '+') buf[nb++] = s[i + 1];
            i = j;
            DIGITS();
        }
    }
#undef DIGITS
    buf[nb] = '\0';
    dj_token *t = NULL;
    if (is_float) {
        DF_TRY(push(L, DJ_T_FLOAT, start, &t));
        t->f = strtod(buf, NULL);
    } else {
        uint64_t v = 0;
        for (size_t k = 0; k < nb; k++) {
            if (v > ((uint64_t)INT64_MAX - (uint64_t)(buf[k] - '0')) / 10)
                return err_at(L, start, DF_ERR_FORMAT, "integer literal too large%s", "");
            v = v * 10 + (uint64_t)(buf[k] - '0');
        }
        DF_TRY(push(L, DJ_T_INT, start, &t));
        t->i = (int64_t)v;
    }
    L->pos = i;
    return DF_OK;
}

static const struct {
    const char *text;
    dj_op op;
} g_ops[] = {
    {"//", DJ_OP_FLOORDIV}, {"**", DJ_OP_POW}, {"==", DJ_OP_EQ}, {"!=", DJ_OP_NE},
    {"<=", DJ_OP_LE},       {">=", DJ_OP_GE},  {"+", DJ_OP_ADD},  {"-", DJ_OP_SUB},
    {"*", DJ_OP_MUL},       {"/", DJ_OP_DIV},  {"%", DJ_OP_MOD},  {"~", DJ_OP_TILDE},
    {"<", DJ_OP_LT},        {">", DJ_OP_GT},   {"(", DJ_OP_LPAREN}, {")", DJ_OP_RPAREN},
    {"[", DJ_OP_LBRACKET},  {"]", DJ_OP_RBRACKET}, {"{", DJ_OP_LBRACE}, {"}", DJ_OP_RBRACE},
    {"=", DJ_OP_ASSIGN},    {".", DJ_OP_DOT},  {":", DJ_OP_COLON}, {"|", DJ_OP_PIPE},
    {",", DJ_OP_COMMA},     {";", DJ_OP_SEMICOLON},
};

/* The inside of {{ }} or {% %}, up to and including its closing delimiter. */
static df_status lex_tag(lexer *L, bool is_var, size_t open_off) {
    int depth = 0;
    for (;;) {
        L->pos = skip_space(L, L->pos);
        if (L->pos >= L->n)
            return err_at(L, open_off, DF_ERR_FORMAT, "'%s' is never closed", is_var ? "{{" : "{%");
        const char *s = L->s + L->pos;
        size_t left = L->n - L->pos;
        if (depth == 0) {
            char sign = 0;
            size_t len = 0;
            if (is_var) {
                if (left >= 3 && !memcmp(s, "-}}", 3)) sign = '-', len = 3;
                else if (left >= 2 && !memcmp(s, "}}", 2)) len = 2;
            } else {
                if (left >= 3 && (s[0] == '-' || s[0] == '+') && !memcmp(s + 1, "%}", 2)) sign = s[0], len = 3;
                else if (left >= 2 && !memcmp(s, "%}", 2)) len = 2;
            }
            if (len) {
                DF_TRY(push(L, is_var ? DJ_T_VAR_END : DJ_T_BLOCK_END, L->pos, NULL));
                L->pos += len;
                after_tag(L, sign, !is_var);
                return DF_OK;
            }
        }
        char ch = s[0];
        if (is_name_start(ch)) {
            size_t k = 1;
            while (k < left && is_name_char(s[k])) k++;
            dj_token *t = NULL;
            DF_TRY(push(L, DJ_T_NAME, L->pos, &t));
            t->s = (dj_str){s, k};
            L->pos += k;
            continue;
        }
        if (is_digit(ch)) {
            DF_TRY(lex_number(L));
            continue;
        }
        if (ch == '\'' || ch == '"') {
            DF_TRY(lex_string(L));
            continue;
        }
        dj_op op = DJ_OP_NONE;
        size_t len = 0;
        for (size_t i = 0; i < sizeof g_ops / sizeof g_ops[0]; i++) {
            size_t m = strlen(g_ops[i].text);
            if (m <= left && !memcmp(s, g_ops[i].text, m)) {
                op = g_ops[i].op;
                len = m;
                break;
            }
        }
        if (!len) {
            char c[2] = {ch, 0};
            if ((unsigned char)ch < 0x20 || (unsigned char)ch >= 0x7F) c[0] = '?';
            return err_at(L, L->pos, DF_ERR_FORMAT, "unexpected character '%s'", c);
        }
        if (op == DJ_OP_LPAREN || op == DJ_OP_LBRACKET || op == DJ_OP_LBRACE) {
            depth++;
        } else if (op == DJ_OP_RPAREN || op == DJ_OP_RBRACKET || op == DJ_OP_RBRACE) {
            if (depth == 0) {
                char c[2] = {ch, 0};
                return err_at(L, L->pos, DF_ERR_FORMAT, "unexpected '%s'", c);
            }
            depth--;
        }
        dj_token *t = NULL;
        DF_TRY(push(L, DJ_T_OP, L->pos, &t));
        t->op = op;
        L->pos += len;
    }
}

/* Matches "{%", an optional sign, spaces, `word`, spaces and the tag end at `off`; returns
 * the offset after the tag (0 when it does not match) and the signs found. */
static size_t match_simple_tag(const lexer *L, size_t off, const char *word, char *open_sign,
                               char *close_sign) {
    if (off + 2 > L->n || memcmp(L->s + off, "{%", 2)) return 0;
    size_t i = off + 2;
    *open_sign = 0;
    if (i < L->n && (L->s[i] == '-' || L->s[i] == '+')) *open_sign = L->s[i++];
    i = skip_space(L, i);
    size_t w = strlen(word);
    if (i + w > L->n || memcmp(L->s + i, word, w)) return 0;
    i += w;
    if (i < L->n && is_name_char(L->s[i])) return 0;
    i = skip_space(L, i);
    *close_sign = 0;
    if (i < L->n && (L->s[i] == '-' || L->s[i] == '+')) *close_sign = L->s[i++];
    if (i + 2 > L->n || memcmp(L->s + i, "%}", 2)) return 0;
    return i + 2;
}

/* {% raw %} at `off` (its text already emitted): everything up to {% endraw %} is text. */
static df_status lex_raw(lexer *L, size_t off, size_t after_open, char open_close_sign) {
    L->pos = after_open;
    if (open_close_sign == '-') L->pos = skip_space(L, L->pos);
    size_t body = L->pos;
    for (size_t i = body; i + 1 < L->n; i++) {
        char os, cs;
        size_t end;
        if (L->s[i] != '{' || !(end = match_simple_tag(L, i, "endraw", &os, &cs))) continue;
        size_t text_end = i;
        if (os == '-') text_end = rstrip_end(L, body, i);
        else if (os != '+') {
            bool saved = L->line_starting;
            L->line_starting = false;
            text_end = lstrip_end(L, body, i);
            L->line_starting = saved;
        }
        DF_TRY(emit_text(L, body, text_end));
        L->pos = end;
        after_tag(L, cs, true);
        return DF_OK;
    }
    return err_at(L, off, DF_ERR_FORMAT, "{%% raw %%} is never closed by {%% endraw %%}%s", "");
}

df_status dj_lex(dj_arena *a, const char *src, size_t len, dj_tokens *out) {
    /* Jinja2 reads "\r\n" and "\r" as "\n" and drops one trailing newline. */
    char *s = dj_arena_alloc(a, len + 1);
    if (!s) return df_fail(DF_ERR_NOMEM, "chat template: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = '\0';

    lexer L = {.a = a, .s = s, .n = n, .lc_line = 1, .line_starting = true};
    while (L.pos < L.n) {
        size_t idx = L.pos;
        while (idx + 1 < L.n && !(L.s[idx] == '{' && (L.s[idx + 1] == '{' || L.s[idx + 1] == '%' ||
                                                      L.s[idx + 1] == '#')))
            idx++;
        if (idx + 1 >= L.n) { /* no tag: the rest is text */
            DF_TRY(emit_text(&L, L.pos, L.n));
            L.pos = L.n;
            break;
        }
        char kind = L.s[idx + 1];
        char sign = idx + 2 < L.n ? L.s[idx + 2] : 0;
        if (sign != '-' && sign != '+') sign = 0;
        size_t text_end = idx;
        if (sign == '-') text_end = rstrip_end(&L, L.pos, idx);
        else if (sign != '+' && kind != '{') text_end = lstrip_end(&L, L.pos, idx);
        DF_TRY(emit_text(&L, L.pos, text_end));
        L.pos = idx + 2 + (sign ? 1 : 0);

        if (kind == '#') {
            const char *end = NULL;
            for (size_t i = L.pos; i + 1 < L.n; i++)
                if (L.s[i] == '#' && L.s[i + 1] == '}') {
                    end = L.s + i;
                    break;
                }
            if (!end) return err_at(&L, idx, DF_ERR_FORMAT, "'{#' comment is never closed%s", "");
            size_t e = (size_t)(end - L.s);
            char close = e > L.pos && (L.s[e - 1] == '-' || L.s[e - 1] == '+') ? L.s[e - 1] : 0;
            L.pos = e + 2;
            after_tag(&L, close, true);
            continue;
        }
        if (kind == '%') {
            char os, cs;
            size_t after = match_simple_tag(&L, idx, "raw", &os, &cs);
            if (after) {
                DF_TRY(lex_raw(&L, idx, after, cs));
                continue;
            }
        }
        DF_TRY(push(&L, kind == '{' ? DJ_T_VAR_BEGIN : DJ_T_BLOCK_BEGIN, idx, NULL));
        DF_TRY(lex_tag(&L, kind == '{', idx));
    }
    DF_TRY(push(&L, DJ_T_EOF, L.n, NULL));
    out->v = L.v;
    out->n = L.nv;
    return DF_OK;
}
