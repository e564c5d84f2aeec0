#include "engine/stop_strings.h"

#include <stdlib.h>
#include <string.h>

void df_stop_init(df_stop_matcher *m, const char *const *stop, int n_stop) {
    memset(m, 0, sizeof *m);
    m->stop = stop;
    m->n_stop = n_stop;
}

void df_stop_free(df_stop_matcher *m) {
    free(m->pending);
    free(m->out);
    memset(m, 0, sizeof *m);
}

/* Longest k such that the last k bytes of s[0..n) are a proper prefix of some stop string. */
static size_t held_suffix(const df_stop_matcher *m, const char *s, size_t n) {
    size_t best = 0;
    for (int i = 0; i < m->n_stop; i++) {
        size_t sl = strlen(m->stop[i]);
        size_t k = sl - 1 < n ? sl - 1 : n;
        for (; k > best; k--)
            if (memcmp(s + n - k, m->stop[i], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

df_status df_stop_push(df_stop_matcher *m, const char *text, size_t len, const char **release,
                       size_t *release_len, bool *hit) {
    *hit = false;
    if (m->len + len + 1 > m->cap) {
        size_t cap = (m->len + len + 1) * 2;
        char *p = realloc(m->pending, cap);
        if (!p) return df_fail(DF_ERR_NOMEM, "stop strings: out of memory");
        m->pending = p;
        m->cap = cap;
    }
    memcpy(m->pending + m->len, text, len);
    m->len += len;
    m->pending[m->len] = '\0';
    if (m->n_stop == 0) {
        *release = m->pending;
        *release_len = m->len;
        m->len = 0;
        return DF_OK;
    }
    /* The earliest occurrence of any stop string wins. */
    size_t cut = m->len;
    for (int i = 0; i < m->n_stop; i++) {
        size_t sl = strlen(m->stop[i]);
        if (sl == 0) continue;
        for (size_t p = 0; p + sl <= m->len && p < cut; p++)
            if (memcmp(m->pending + p, m->stop[i], sl) == 0) {
                cut = p;
                *hit = true;
                break;
            }
    }
    if (*hit) {
        *release = m->pending;
        *release_len = cut;
        m->len = 0;
        return DF_OK;
    }
    size_t keep = held_suffix(m, m->pending, m->len);
    size_t n_out = m->len - keep;
    /* The released head moves to its own buffer so that the held tail can move to the front. */
    if (n_out + 1 > m->out_cap) {
        char *p = realloc(m->out, n_out + 1);
        if (!p) return df_fail(DF_ERR_NOMEM, "stop strings: out of memory");
        m->out = p;
        m->out_cap = n_out + 1;
    }
    memcpy(m->out, m->pending, n_out);
    m->out[n_out] = '\0';
    memmove(m->pending, m->pending + n_out, keep);
    m->len = keep;
    *release = m->out;
    *release_len = n_out;
    return DF_OK;
}

void df_stop_flush(df_stop_matcher *m, const char **release, size_t *release_len) {
    *release = m->pending;
    *release_len = m->len;
    m->len = 0;
}
