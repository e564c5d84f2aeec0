/* Assembling a tokenizer from its parts, shared by the tokenizer.json and GGUF loaders, and
 * the small accessors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "text/tokenizer_internal.h"
#include "text/utf8.h"

/* llama.cpp's own spellings of the same two patterns ((?i:...) written out as [sS] ...) */
#define LLAMA_QWEN2_PATTERN                                                                   \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define LLAMA_QWEN35_PATTERN                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}" \
    "\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

const char *df_tok_pre_name_of(const char *pattern) {
    if (!pattern) return NULL;
    if (!strcmp(pattern, DF_PRE_QWEN2_PATTERN) || !strcmp(pattern, LLAMA_QWEN2_PATTERN)) return "qwen2";
    if (!strcmp(pattern, DF_PRE_QWEN35_PATTERN) || !strcmp(pattern, LLAMA_QWEN35_PATTERN)) return "qwen35";
    return NULL;
}

const char *df_tok_pattern_of(const char *pre_name) {
    /* The tokenizer.json spelling, (?i:...) included, so that a GGUF converted from a
     * tokenizer.json tokenizes exactly like it. */
    if (!strcmp(pre_name, "qwen2")) return DF_PRE_QWEN2_PATTERN;
    if (!strcmp(pre_name, "qwen35")) return DF_PRE_QWEN35_PATTERN;
    return NULL;
}

df_status df_tok_build_begin(df_tokenizer **out, size_t n_tokens) {
    *out = NULL;
    if (n_tokens == 0) return df_fail(DF_ERR_FORMAT, "the vocabulary is empty");
    if (n_tokens > INT32_MAX) return df_fail(DF_ERR_FORMAT, "%zu tokens: more than int32 ids can name", n_tokens);
    df_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return df_fail(DF_ERR_NOMEM, "tokenizer: out of memory");
    t->n_tokens = n_tokens;
    t->text_off = calloc(n_tokens, sizeof *t->text_off);
    t->text_len = calloc(n_tokens, sizeof *t->text_len);
    t->piece_off = calloc(n_tokens, sizeof *t->piece_off);
    t->piece_len = calloc(n_tokens, sizeof *t->piece_len);
    t->kind = calloc(n_tokens, 1);
    t->added_flags = calloc(n_tokens, 1);
    t->bos = t->eos = t->pad = -1;
    for (int i = 0; i < 256; i++) t->byte_to_id[i] = -1;
    if (!t->text_off || !t->text_len || !t->piece_off || !t->piece_len || !t->kind || !t->added_flags) {
        df_tokenizer_free(t);
        return df_fail(DF_ERR_NOMEM, "tokenizer: out of memory for %zu tokens", n_tokens);
    }
    *out = t;
    return DF_OK;
}

df_status df_tok_build_token(df_tokenizer *t, int32_t id, const char *text, size_t len, df_token_kind kind,
                             unsigned added_flags) {
    if (t->text_pool.len > UINT32_MAX - len - 1)
        return df_fail(DF_ERR_NOMEM, "token texts exceed 4 GiB");
    t->text_off[id] = (uint32_t)t->text_pool.len;
    t->text_len[id] = (uint32_t)len;
    DF_TRY(df_bytes_append(&t->text_pool, text, len));
    DF_TRY(df_bytes_append(&t->text_pool, "", 1)); /* keep each text NUL-terminated */
    t->kind[id] = (uint8_t)kind;
    t->added_flags[id] = (uint8_t)added_flags;
    return DF_OK;
}

static bool is_added_kind(uint8_t k) {
    return k == DF_TOKEN_CONTROL || k == DF_TOKEN_USER_DEFINED || k == DF_TOKEN_UNKNOWN;
}

df_status df_tok_build_index(df_tokenizer *t, const char *where) {
    DF_TRY(df_strmap_init(&t->by_text, t->n_tokens));
    for (size_t id = 0; id < t->n_tokens; id++) {
        const char *text = t->text_pool.data + t->text_off[id];
        size_t len = t->text_len[id];
        int32_t prev;
        DF_TRY(df_strmap_put(&t->by_text, text, len, (int32_t)id, &prev));
        if (prev >= 0)
            return df_fail(DF_ERR_FORMAT, "%s: token %zu \"%.*s\" duplicates token %d", where, id,
                           (int)(len > 64 ? 64 : len), text, (int)prev);
        /* The bytes a token stands for: normal tokens are spelt in the byte-level alphabet;
         * added tokens are literal text. A normal token with a character outside the
         * alphabet decodes to its literal text, as Hugging Face's ByteLevel decoder does. */
        size_t start = t->piece_pool.len;
        if (is_added_kind(t->kind[id]) || !df_byte_level_decode(text, len, &t->piece_pool))
            DF_TRY(df_bytes_append(&t->piece_pool, text, len));
        if (t->piece_pool.len > UINT32_MAX) return df_fail(DF_ERR_NOMEM, "%s: token pieces exceed 4 GiB", where);
        t->piece_off[id] = (uint32_t)start;
        t->piece_len[id] = (uint32_t)(t->piece_pool.len - start);
    }
    for (int b = 0; b < 256; b++) {
        uint8_t enc[4];
        size_t n = df_utf8_encode(df_byte_to_cp((uint8_t)b), enc);
        int32_t id = df_strmap_get(&t->by_text, enc, n);
        if (id < 0)
            return df_fail(DF_ERR_FORMAT, "%s: the vocabulary lacks the byte-level token \"%.*s\" for byte 0x%02x", where,
                           (int)n, (const char *)enc, b);
        t->byte_to_id[b] = id;
    }
    return DF_OK;
}

df_status df_tok_build_merge(df_tokenizer *t, const char *left, size_t left_len, const char *right,
                             size_t right_len, int32_t rank, const char *where) {
    if (!t->merges.slots) {
        /* First merge: size the table once (the loaders know the count, but a few resizes
         * would also be fine). */
        DF_TRY(df_merge_map_init(&t->merges, 1024));
    }
    int32_t a = df_strmap_get(&t->by_text, left, left_len);
    int32_t b = df_strmap_get(&t->by_text, right, right_len);
    if (a < 0 || b < 0)
        return df_fail(DF_ERR_FORMAT, "%s: merge %d \"%.*s %.*s\": \"%.*s\" is not in the vocabulary", where, (int)rank,
                       (int)left_len, left, (int)right_len, right, a < 0 ? (int)left_len : (int)right_len,
                       a < 0 ? left : right);
    char small[256];
    char *joined = small;
    size_t n = left_len + right_len;
    if (n > sizeof small && !(joined = malloc(n))) return df_fail(DF_ERR_NOMEM, "tokenizer: out of memory");
    memcpy(joined, left, left_len);
    memcpy(joined + left_len, right, right_len);
    int32_t m = df_strmap_get(&t->by_text, joined, n);
    if (joined != small) free(joined);
    if (m < 0)
        return df_fail(DF_ERR_FORMAT, "%s: merge %d \"%.*s %.*s\": the merged token is not in the vocabulary", where,
                       (int)rank, (int)left_len, left, (int)right_len, right);
    if ((size_t)rank != t->n_merges) return df_fail(DF_ERR_INVALID, "%s: merges must be added in rank order", where);
    DF_TRY(df_merge_map_put(&t->merges, a, b, rank, m));
    if (t->n_merges == t->merge_cap) {
        size_t cap = t->merge_cap ? t->merge_cap * 2 : 1024, bytes;
        if (!df_mul_size(cap, 2 * sizeof *t->merge_pairs, &bytes)) return df_fail(DF_ERR_NOMEM, "too many merges");
        int32_t *p = realloc(t->merge_pairs, bytes);
        if (!p) return df_fail(DF_ERR_NOMEM, "tokenizer: out of memory for merges");
        t->merge_pairs = p;
        t->merge_cap = cap;
    }
    t->merge_pairs[2 * t->n_merges] = a;
    t->merge_pairs[2 * t->n_merges + 1] = b;
    t->n_merges++;
    return DF_OK;
}

df_status df_tok_build_finish(df_tokenizer *t, const char *pattern) {
    if (!t->merges.slots) DF_TRY(df_merge_map_init(&t->merges, 16));
    t->pattern = strdup(pattern);
    if (!t->pattern) return df_fail(DF_ERR_NOMEM, "tokenizer: out of memory");
    t->pre_name = df_tok_pre_name_of(pattern);
    DF_TRY(df_pretok_compile(pattern, &t->pretok));
    for (size_t id = 0; id < t->n_tokens; id++) {
        if (!is_added_kind(t->kind[id])) continue;
        /* Matches must fall on character boundaries, or the stretches between them would
         * not be well-formed UTF-8. */
        if (!df_utf8_valid((const uint8_t *)t->text_pool.data + t->text_off[id], t->text_len[id]))
            return df_fail(DF_ERR_FORMAT, "added token %zu is not well-formed UTF-8", id);
        DF_TRY(df_added_matcher_add(&t->added, t->text_pool.data + t->text_off[id], t->text_len[id], (int32_t)id));
    }
    return DF_OK;
}

void df_tokenizer_free(df_tokenizer *t) {
    if (!t) return;
    df_bytes_free(&t->text_pool);
    df_bytes_free(&t->piece_pool);
    free(t->text_off);
    free(t->text_len);
    free(t->piece_off);
    free(t->piece_len);
    free(t->kind);
    free(t->added_flags);
    df_strmap_free(&t->by_text);
    df_merge_map_free(&t->merges);
    free(t->merge_pairs);
    df_added_matcher_free(&t->added);
    df_pretok_free(t->pretok);
    free(t->pattern);
    free(t);
}

size_t df_tokenizer_n_tokens(const df_tokenizer *t) { return t->n_tokens; }

df_token_kind df_tokenizer_kind(const df_tokenizer *t, int32_t id) {
    if (id < 0 || (size_t)id >= t->n_tokens) return DF_TOKEN_UNDEFINED;
    return (df_token_kind)t->kind[id];
}

const char *df_tokenizer_text(const df_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= t->n_tokens) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->text_len[id];
    return t->text_pool.data + t->text_off[id];
}

int32_t df_tokenizer_find(const df_tokenizer *t, const char *text, size_t len) {
    return df_strmap_get(&t->by_text, text, len);
}

int32_t df_tokenizer_bos(const df_tokenizer *t) { return t->bos; }
int32_t df_tokenizer_eos(const df_tokenizer *t) { return t->eos; }
int32_t df_tokenizer_pad(const df_tokenizer *t) { return t->pad; }
const char *df_tokenizer_pre_name(const df_tokenizer *t) { return t->pre_name; }
const char *df_tokenizer_pattern(const df_tokenizer *t) { return t->pattern; }
