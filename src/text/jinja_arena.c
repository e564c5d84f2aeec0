/* The arena, bounded buffers and UTF-8 helpers of the Jinja interpreter. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "text/jinja_internal.h"

struct dj_block {
    dj_block *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

enum { DJ_BLOCK_MIN = 16 * 1024 };

void dj_arena_init(dj_arena *a, size_t limit) {
    a->head = NULL;
    a->used = 0;
    a->limit = limit;
}

void *dj_arena_alloc(dj_arena *a, size_t n) {
    size_t need;
    if (!df_add_size(n, 15, &need)) return NULL;
    need &= ~(size_t)15;
    if (need == 0) need = 16;
    size_t total;
    if (!df_add_size(a->used, need, &total)) return NULL;
    if (a->limit && total > a->limit) return NULL;
    dj_block *b = a->head;
    if (!b || b->cap - b->used < need) {
        /* Blocks grow with the arena so that a big render makes few of them; one oversized
         * request gets a block of its own size. */
        size_t cap = DJ_BLOCK_MIN;
        if (b && b->cap < (size_t)64 << 20) cap = b->cap * 2;
        if (a->limit && cap > a->limit - a->used) cap = a->limit - a->used; /* >= need */
        if (cap < need) cap = need;
        size_t bytes;
        if (!df_add_size(sizeof(dj_block), cap, &bytes)) return NULL;
        dj_block *nb = malloc(bytes);
        if (!nb) return NULL;
        nb->cap = cap;
        nb->used = 0;
        nb->next = b;
        a->head = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    a->used = total;
    return p;
}

void *dj_arena_zalloc(dj_arena *a, size_t n) {
    void *p = dj_arena_alloc(a, n);
    if (p) memset(p, 0, n);
    return p;
}

void dj_arena_release(dj_arena *a) {
    dj_block *b = a->head;
    while (b) {
        dj_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->used = 0;
}

bool dj_str_eq(dj_str a, dj_str b) { return a.n == b.n && (a.n == 0 || !memcmp(a.p, b.p, a.n)); }

bool dj_str_eqc(dj_str a, const char *c) {
    size_t n = strlen(c);
    return a.n == n && !memcmp(a.p, c, n);
}

/* ---- buffers ---- */

void dj_buf_init(dj_buf *b, dj_arena *a, size_t limit) {
    b->arena = a;
    b->p = NULL;
    b->n = b->cap = 0;
    b->limit = limit;
    b->overflow = false;
    b->nomem = false;
}

bool dj_buf_put(dj_buf *b, const char *s, size_t n) {
    if (b->overflow) return false;
    if (n == 0) return true;
    if (n > b->limit || b->n > b->limit - n) {
        b->overflow = true;
        return false;
    }
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n + 1) {
            if (cap > SIZE_MAX / 4) {
                b->overflow = b->nomem = true;
                return false;
            }
            cap *= 2;
        }
        char *p = dj_arena_alloc(b->arena, cap);
        if (!p) {
            b->overflow = b->nomem = true;
            return false;
        }
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

bool dj_buf_putc(dj_buf *b, char c) { return dj_buf_put(b, &c, 1); }

bool dj_buf_puts(dj_buf *b, const char *s) { return dj_buf_put(b, s, strlen(s)); }

bool dj_buf_printf(dj_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return false;
    if ((size_t)n >= sizeof tmp) n = (int)sizeof tmp - 1;
    return dj_buf_put(b, tmp, (size_t)n);
}

/* ---- UTF-8 ---- */

uint32_t dj_utf8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s;
    size_t k = *i;
    uint32_t c = u[k];
    size_t len = 1;
    uint32_t min = 0;
    if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        c &= 0x07;
        min = 0x10000;
    } else if (c >= 0xE0) {
        len = 3;
        c &= 0x0F;
        min = 0x800;
    } else if (c >= 0xC2 && c < 0xE0) {
        len = 2;
        c &= 0x1F;
        min = 0x80;
    }
    if (len > 1) {
        if (n - k < len) len = 0;
        for (size_t j = 1; len && j < len; j++) {
            if ((u[k + j] & 0xC0) != 0x80) len = 0;
            else c = (c << 6) | (u[k + j] & 0x3F);
        }
        if (len && (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))) len = 0;
        if (!len) { /* malformed: the byte stands for itself */
            *i = k + 1;
            return u[k];
        }
        *i = k + len;
        return c;
    }
    *i = k + 1;
    return u[k];
}

size_t dj_utf8_put(char out[4], uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t dj_utf8_count(const char *s, size_t n) {
    size_t i = 0, count = 0;
    while (i < n) {
        dj_utf8_next(s, n, &i);
        count++;
    }
    return count;
}

bool dj_is_space(uint32_t c) {
    /* Python's str.isspace(): bidirectional class WS, B or S, or category Zs. */
    if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return true;
    if (c < 0x85) return false;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
