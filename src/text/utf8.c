#include "text/utf8.h"

#include <string.h>

static const uint8_t k_replacement[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */

df_utf8_check_result df_utf8_check(const uint8_t *p, size_t n, size_t *len) {
    uint8_t b = p[0];
    if (b < 0x80) {
        *len = 1;
        return DF_UTF8_OK;
    }
    /* Table 3-7: the lead byte fixes the length and the range allowed for the second byte;
     * later bytes are always 80..BF. */
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b == 0xE0) need = 3, lo = 0xA0;          /* no overlong 3-byte forms */
    else if (b >= 0xE1 && b <= 0xEC) need = 3;
    else if (b == 0xED) need = 3, hi = 0x9F;          /* no surrogates */
    else if (b == 0xEE || b == 0xEF) need = 3;
    else if (b == 0xF0) need = 4, lo = 0x90;          /* no overlong 4-byte forms */
    else if (b >= 0xF1 && b <= 0xF3) need = 4;
    else if (b == 0xF4) need = 4, hi = 0x8F;          /* nothing past U+10FFFF */
    else {
        *len = 1;   /* 80..C1, F5..FF can never start a sequence */
        return DF_UTF8_INVALID;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n) {
            *len = i;
            return DF_UTF8_INCOMPLETE;
        }
        uint8_t c = p[i];
        if (c < (i == 1 ? lo : 0x80) || c > (i == 1 ? hi : 0xBF)) {
            *len = i;  /* the well-formed prefix so far is one maximal subpart */
            return DF_UTF8_INVALID;
        }
    }
    *len = need;
    return DF_UTF8_OK;
}

bool df_utf8_valid(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t len;
        if (df_utf8_check(p + i, n - i, &len) != DF_UTF8_OK) return false;
        i += len;
    }
    return true;
}

df_status df_utf8_sanitize(const uint8_t *p, size_t n, df_bytes *out) {
    DF_TRY(df_bytes_reserve(out, n));
    size_t i = 0, run = 0; /* run: start of the pending stretch of good bytes */
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t len;
        if (df_utf8_check(p + i, n - i, &len) == DF_UTF8_OK) {
            i += len;
            continue;
        }
        DF_TRY(df_bytes_append(out, p + run, i - run));
        DF_TRY(df_bytes_append(out, k_replacement, sizeof k_replacement));
        i += len;
        run = i;
    }
    return df_bytes_append(out, p + run, n - run);
}

void df_utf8_stream_init(df_utf8_stream *s) { memset(s, 0, sizeof *s); }

df_status df_utf8_stream_push(df_utf8_stream *s, const uint8_t *p, size_t n, df_bytes *out) {
    if (n == 0) return DF_OK;
    size_t i = 0;
    if (s->n_pending) {
        /* Finish what the held-back bytes started. A sequence is at most 4 bytes, so the
         * pending bytes plus 4 new ones decide every sequence that starts among them; when
         * fewer than 4 new bytes exist, "incomplete" is the true answer. */
        uint8_t tmp[8];
        size_t np = s->n_pending, take = n < 4 ? n : 4;
        memcpy(tmp, s->pending, np);
        memcpy(tmp + np, p, take);
        size_t tl = np + take, pos = 0;
        while (pos < np) {
            size_t len;
            df_utf8_check_result r = df_utf8_check(tmp + pos, tl - pos, &len);
            if (r == DF_UTF8_INCOMPLETE) {
                memmove(s->pending, tmp + pos, tl - pos);
                s->n_pending = (uint8_t)(tl - pos);
                return DF_OK;
            }
            if (r == DF_UTF8_OK) DF_TRY(df_bytes_append(out, tmp + pos, len));
            else DF_TRY(df_bytes_append(out, k_replacement, sizeof k_replacement));
            pos += len;
        }
        s->n_pending = 0;
        i = pos - np;
    }
    size_t run = i;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t len;
        df_utf8_check_result r = df_utf8_check(p + i, n - i, &len);
        if (r == DF_UTF8_OK) {
            i += len;
            continue;
        }
        DF_TRY(df_bytes_append(out, p + run, i - run));
        if (r == DF_UTF8_INCOMPLETE) {
            memcpy(s->pending, p + i, n - i);
            s->n_pending = (uint8_t)(n - i);
            return DF_OK;
        }
        DF_TRY(df_bytes_append(out, k_replacement, sizeof k_replacement));
        i += len;
        run = i;
    }
    return df_bytes_append(out, p + run, n - run);
}

df_status df_utf8_stream_flush(df_utf8_stream *s, df_bytes *out) {
    if (s->n_pending == 0) return DF_OK;
    /* Held-back bytes are always a well-formed prefix: one maximal subpart, one U+FFFD. */
    s->n_pending = 0;
    return df_bytes_append(out, k_replacement, sizeof k_replacement);
}
