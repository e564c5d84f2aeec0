/* Python-compatible JSON number formatting and a compact JSON writer for Jansson values. */
#include "text/chat_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void df_json_format_double(double f, char out[40]) {
    if (isnan(f)) {
        strcpy(out, "nan");
        return;
    }
    if (isinf(f)) {
        strcpy(out, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        strcpy(out, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    /* The shortest precision whose correctly rounded decimal reads back exactly. */
    char sci[48];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(sci, sizeof sci, "%.*e", prec - 1, f);
        if (strtod(sci, NULL) == f) break;
    }
    const char *p = sci;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < sizeof digits - 1) digits[nd++] = *p;
    int exp = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';

    char *o = out;
    if (neg) *o++ = '-';
    if (exp >= -4 && exp < 16) {
        if (exp >= 0) {
            size_t intlen = (size_t)exp + 1;
            for (size_t i = 0; i < intlen; i++) *o++ = i < nd ? digits[i] : '0';
            *o++ = '.';
            if (nd > intlen) {
                memcpy(o, digits + intlen, nd - intlen);
                o += nd - intlen;
            } else {
                *o++ = '0';
            }
        } else {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -exp - 1; i++) *o++ = '0';
            memcpy(o, digits, nd);
            o += nd;
        }
        *o = '\0';
        return;
    }
    *o++ = digits[0];
    if (nd > 1) {
        *o++ = '.';
        memcpy(o, digits + 1, nd - 1);
        o += nd - 1;
    }
    int e = exp < 0 ? -exp : exp; /* |exp| <= 324 */
    *o++ = 'e';
    *o++ = exp < 0 ? '-' : '+';
    if (e >= 100) *o++ = (char)('0' + e / 100);
    *o++ = (char)('0' + e / 10 % 10);
    *o++ = (char)('0' + e % 10);
    *o = '\0';
}

typedef struct jbuf {
    char *p;
    size_t n, cap;
    bool bad;
} jbuf;

static void jput(jbuf *b, const char *s, size_t n) {
    if (b->bad) return;
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap - b->n < n + 1) {
            if (cap > ((size_t)1 << 40)) {
                b->bad = true;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->bad = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void jput_string(jbuf *b, const char *s, size_t n) {
    jput(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                esc = tmp;
            }
        }
        if (esc) {
            jput(b, s + i - run, run);
            run = 0;
            jput(b, esc, strlen(esc));
        } else {
            run++;
        }
    }
    jput(b, s + n - run, run);
    jput(b, "\"", 1);
}

static void jdump(jbuf *b, const json_t *v, int depth, bool spaced) {
    if (depth > 512) {
        b->bad = true;
        return;
    }
    char tmp[48];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        jput(b, "{", 1);
        const char *key;
        json_t *val;
        bool first = true;
        json_object_foreach((json_t *)v, key, val) {
            if (!first) jput(b, spaced ? ", " : ",", spaced ? 2 : 1);
            first = false;
            jput_string(b, key, strlen(key));
            jput(b, spaced ? ": " : ":", spaced ? 2 : 1);
            jdump(b, val, depth + 1, spaced);
        }
        jput(b, "}", 1);
        break;
    }
    case JSON_ARRAY:
        jput(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) jput(b, spaced ? ", " : ",", spaced ? 2 : 1);
            jdump(b, json_array_get(v, i), depth + 1, spaced);
        }
        jput(b, "]", 1);
        break;
    case JSON_STRING: jput_string(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER:
        snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        jput(b, tmp, strlen(tmp));
        break;
    case JSON_REAL:
        if (!isfinite(json_real_value(v))) {
            b->bad = true;
            return;
        }
        df_json_format_double(json_real_value(v), tmp);
        jput(b, tmp, strlen(tmp));
        break;
    case JSON_TRUE: jput(b, "true", 4); break;
    case JSON_FALSE: jput(b, "false", 5); break;
    case JSON_NULL: jput(b, "null", 4); break;
    }
}

char *df_json_dumps(const json_t *v, bool spaced) {
    jbuf b = {0};
    if (!v) return NULL;
    jdump(&b, v, 0, spaced);
    if (b.bad) {
        free(b.p);
        return NULL;
    }
    if (!b.p) jput(&b, "", 0);
    return b.p;
}
