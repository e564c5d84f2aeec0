/* Token ids -> bytes, whole or streamed. */
#include <string.h>

#include "text/tokenizer_internal.h"
#include "text/utf8.h"

df_status df_tokenizer_piece(const df_tokenizer *t, int32_t id, unsigned flags, const char **data, size_t *len) {
    if (id < 0 || (size_t)id >= t->n_tokens) {
        *data = "";
        *len = 0;
        return df_fail(DF_ERR_INVALID, "token id %d is outside the vocabulary (0..%zu)", (int)id, t->n_tokens - 1);
    }
    uint8_t k = t->kind[id];
    /* Control, unknown and unused tokens are markup, not text: hidden unless asked for
     * (Hugging Face's skip_special_tokens; llama.cpp's `special` flag). */
    if (!(flags & DF_DETOK_SPECIAL) && (k == DF_TOKEN_CONTROL || k == DF_TOKEN_UNKNOWN || k == DF_TOKEN_UNUSED)) {
        *data = "";
        *len = 0;
        return DF_OK;
    }
    *data = t->piece_pool.data + t->piece_off[id];
    *len = t->piece_len[id];
    return DF_OK;
}

df_status df_tokenizer_decode(const df_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, df_bytes *out) {
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t len;
        df_status st = df_tokenizer_piece(t, ids[i], flags, &p, &len);
        if (st != DF_OK) return df_fail_context(st, "decode: position %zu", i);
        DF_TRY(df_bytes_append(out, p, len));
    }
    return DF_OK;
}

void df_detok_stream_init(df_detok_stream *s, const df_tokenizer *tok, unsigned flags) {
    memset(s, 0, sizeof *s);
    s->tok = tok;
    s->flags = flags;
}

df_status df_detok_stream_push(df_detok_stream *s, int32_t id, df_bytes *out) {
    const char *p;
    size_t len;
    DF_TRY(df_tokenizer_piece(s->tok, id, s->flags, &p, &len));
    return df_utf8_stream_push(&s->utf8, (const uint8_t *)p, len, out);
}

df_status df_detok_stream_flush(df_detok_stream *s, df_bytes *out) { return df_utf8_stream_flush(&s->utf8, out); }
