#include "text/bytes.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

/* Doubling growth; every size goes through the overflow-checked helpers. */
static df_status grow(void **data, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return DF_OK;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (!df_mul_size(ncap, 2, &ncap)) return df_fail(DF_ERR_NOMEM, "buffer size overflows");
    }
    size_t bytes;
    if (!df_mul_size(ncap, elem, &bytes)) return df_fail(DF_ERR_NOMEM, "buffer size overflows");
    void *p = realloc(*data, bytes);
    if (!p) return df_fail(DF_ERR_NOMEM, "out of memory growing a buffer to %zu bytes", bytes);
    *data = p;
    *cap = ncap;
    return DF_OK;
}

df_status df_bytes_reserve(df_bytes *b, size_t extra) {
    size_t need;
    if (!df_add_size(b->len, extra, &need) || !df_add_size(need, 1, &need))
        return df_fail(DF_ERR_NOMEM, "buffer size overflows");
    return grow((void **)&b->data, &b->cap, need, 1);
}

df_status df_bytes_append(df_bytes *b, const void *p, size_t n) {
    DF_TRY(df_bytes_reserve(b, n));
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return DF_OK;
}

df_status df_bytes_append_str(df_bytes *b, const char *s) { return df_bytes_append(b, s, strlen(s)); }

void df_bytes_free(df_bytes *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

df_status df_tokens_reserve(df_tokens *t, size_t extra) {
    size_t need;
    if (!df_add_size(t->n, extra, &need)) return df_fail(DF_ERR_NOMEM, "token buffer size overflows");
    return grow((void **)&t->ids, &t->cap, need, sizeof *t->ids);
}

df_status df_tokens_push(df_tokens *t, int32_t id) {
    if (t->n == t->cap) DF_TRY(df_tokens_reserve(t, 1));
    t->ids[t->n++] = id;
    return DF_OK;
}

df_status df_tokens_append(df_tokens *t, const int32_t *ids, size_t n) {
    DF_TRY(df_tokens_reserve(t, n));
    if (n) memcpy(t->ids + t->n, ids, n * sizeof *ids);
    t->n += n;
    return DF_OK;
}

void df_tokens_free(df_tokens *t) {
    free(t->ids);
    t->ids = NULL;
    t->n = t->cap = 0;
}
