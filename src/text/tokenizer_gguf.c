/* The tokenizer in GGUF metadata: loading from tokenizer.ggml.* keys, and writing them.
 *
 * Keys (llama.cpp's names and conventions, src/llama-vocab.cpp and convert_hf_to_gguf.py):
 *   tokenizer.ggml.model        "gpt2" = byte-level BPE (the only model we accept)
 *   tokenizer.ggml.pre          the split pattern by name: "qwen2", "qwen35"
 *   tokenizer.ggml.tokens       [string] every token's text, by id
 *   tokenizer.ggml.token_type   [i32] df_token_kind per id (1 normal, 3 control, 4 user-defined, 5 unused)
 *   tokenizer.ggml.merges       [string] "left right", in rank order
 *   tokenizer.ggml.bos_token_id / eos_token_id / padding_token_id   u32
 *   tokenizer.ggml.add_bos_token / add_eos_token                    bool
 *   tokenizer.chat_template     string
 * The Qwen pre-tokenizers come with NFC normalisation (their tokenizer.json files say so),
 * which we apply although llama.cpp does not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "format/gguf_write.h"
#include "text/tokenizer_internal.h"

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_TYPES "tokenizer.ggml.token_type"
#define KEY_MERGES "tokenizer.ggml.merges"
#define KEY_BOS "tokenizer.ggml.bos_token_id"
#define KEY_EOS "tokenizer.ggml.eos_token_id"
#define KEY_PAD "tokenizer.ggml.padding_token_id"
#define KEY_ADD_BOS "tokenizer.ggml.add_bos_token"
#define KEY_ADD_EOS "tokenizer.ggml.add_eos_token"
#define KEY_TEMPLATE "tokenizer.chat_template"

/* A string-valued key compared with an expected set; absent / non-string is an error. */
static df_status get_name(const df_gguf *g, const char *key, char *buf, size_t cap) {
    const char *s;
    size_t len;
    df_status st = df_gguf_get_str(g, key, &s, &len);
    if (st == DF_ERR_NOT_FOUND)
        return df_fail(DF_ERR_NOT_FOUND, "%s: %s is missing: not a GGUF with a tokenizer", df_gguf_name(g), key);
    if (st != DF_OK) return st;
    if (len >= cap) len = cap - 1;
    memcpy(buf, s, len);
    buf[len] = 0;
    return DF_OK;
}

static df_status get_special_id(const df_gguf *g, const char *key, size_t n_tokens, int32_t *out) {
    uint32_t id;
    df_status st = df_gguf_get_u32(g, key, &id);
    if (st == DF_ERR_NOT_FOUND) return DF_OK;
    if (st != DF_OK) return st;
    if (id >= n_tokens)
        return df_fail(DF_ERR_FORMAT, "%s: %s = %u is outside the vocabulary of %zu tokens", df_gguf_name(g), key, id,
                       n_tokens);
    *out = (int32_t)id;
    return DF_OK;
}

static df_status get_flag(const df_gguf *g, const char *key, bool *out) {
    df_status st = df_gguf_get_bool(g, key, out);
    return st == DF_ERR_NOT_FOUND ? DF_OK : st;
}

static df_status load_tokens(const df_gguf *g, df_tokenizer **out) {
    const char *name = df_gguf_name(g);
    df_gguf_value tokens, types = {0};
    DF_TRY(df_gguf_get_arr(g, KEY_TOKENS, &tokens));
    if (tokens.elem_type != DF_GGUF_STRING)
        return df_fail(DF_ERR_FORMAT, "%s: %s holds %s elements, expected strings", name, KEY_TOKENS,
                       df_gguf_type_name(tokens.elem_type));
    df_status st = df_gguf_get_arr(g, KEY_TYPES, &types);
    bool have_types = st == DF_OK;
    if (st != DF_OK && st != DF_ERR_NOT_FOUND) return st;
    if (have_types) {
        if (types.elem_type != DF_GGUF_I32 && types.elem_type != DF_GGUF_U32)
            return df_fail(DF_ERR_FORMAT, "%s: %s holds %s elements, expected i32", name, KEY_TYPES,
                           df_gguf_type_name(types.elem_type));
        if (types.count != tokens.count)
            return df_fail(DF_ERR_FORMAT, "%s: %s has %llu entries but %s has %llu", name, KEY_TYPES,
                           (unsigned long long)types.count, KEY_TOKENS, (unsigned long long)tokens.count);
    }
    if (tokens.count > INT32_MAX)
        return df_fail(DF_ERR_FORMAT, "%s: %s has %llu entries, more than int32 ids", name, KEY_TOKENS,
                       (unsigned long long)tokens.count);
    df_tokenizer *t = NULL;
    DF_TRY(df_tok_build_begin(&t, (size_t)tokens.count));
    df_gguf_iter it;
    df_gguf_value e;
    df_gguf_iter_init(&it, &tokens);
    st = DF_OK;
    for (size_t id = 0; df_gguf_iter_next(&it, &e); id++) {
        int64_t kind = DF_TOKEN_NORMAL;
        if (have_types) {
            df_gguf_value k;
            if (!df_gguf_arr_elem(&types, id, &k) || !df_gguf_value_as_i64(&k, &kind) || kind < 0 || kind > DF_TOKEN_BYTE) {
                st = df_fail(DF_ERR_FORMAT, "%s: %s[%zu] = %lld is not a token type (0..6)", name, KEY_TYPES, id,
                             (long long)kind);
                break;
            }
        }
        if (e.size == 0) {
            st = df_fail(DF_ERR_FORMAT, "%s: %s[%zu] is empty", name, KEY_TOKENS, id);
            break;
        }
        st = df_tok_build_token(t, (int32_t)id, (const char *)e.data, (size_t)e.size, (df_token_kind)kind, 0);
        if (st != DF_OK) break;
    }
    if (st == DF_OK) st = df_tok_build_index(t, name);
    if (st != DF_OK) {
        df_tokenizer_free(t);
        return st;
    }
    *out = t;
    return DF_OK;
}

static df_status load_merges(const df_gguf *g, df_tokenizer *t) {
    const char *name = df_gguf_name(g);
    df_gguf_value merges;
    df_status st = df_gguf_get_arr(g, KEY_MERGES, &merges);
    if (st == DF_ERR_NOT_FOUND) return df_fail(DF_ERR_NOT_FOUND, "%s: %s is missing", name, KEY_MERGES);
    if (st != DF_OK) return st;
    if (merges.elem_type != DF_GGUF_STRING)
        return df_fail(DF_ERR_FORMAT, "%s: %s holds %s elements, expected strings", name, KEY_MERGES,
                       df_gguf_type_name(merges.elem_type));
    if (merges.count > INT32_MAX) return df_fail(DF_ERR_FORMAT, "%s: %s: too many merges", name, KEY_MERGES);
    DF_TRY(df_merge_map_init(&t->merges, (size_t)merges.count));
    df_gguf_iter it;
    df_gguf_value e;
    df_gguf_iter_init(&it, &merges);
    char where[96];
    for (size_t i = 0; df_gguf_iter_next(&it, &e); i++) {
        const char *s = (const char *)e.data;
        size_t len = (size_t)e.size;
        /* Split at the first space after the first byte, as llama.cpp does. */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp)
            return df_fail(DF_ERR_FORMAT, "%s: %s[%zu] \"%.*s\" has no space between its halves", name, KEY_MERGES, i,
                           (int)(len > 64 ? 64 : len), s);
        snprintf(where, sizeof where, "%s: %s[%zu]", name, KEY_MERGES, i);
        size_t al = (size_t)(sp - s);
        DF_TRY(df_tok_build_merge(t, s, al, sp + 1, len - al - 1, (int32_t)i, where));
    }
    return DF_OK;
}

df_status df_tokenizer_from_gguf(const df_gguf *g, df_tokenizer **out) {
    *out = NULL;
    const char *name = df_gguf_name(g);
    char model[32], pre[32];
    DF_TRY(get_name(g, KEY_MODEL, model, sizeof model));
    if (strcmp(model, "gpt2"))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: %s = \"%s\" is not supported (only \"gpt2\", byte-level BPE)", name,
                       KEY_MODEL, model);
    df_status st = get_name(g, KEY_PRE, pre, sizeof pre);
    if (st != DF_OK) return df_fail_context(st, "the pre-tokenizer must be named (qwen2 or qwen35)");
    const char *pattern = df_tok_pattern_of(pre);
    if (!pattern)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: %s = \"%s\" is not supported (known: \"qwen2\", \"qwen35\")", name, KEY_PRE,
                       pre);
    df_tokenizer *t = NULL;
    DF_TRY(load_tokens(g, &t));
    st = load_merges(g, t);
    if (st == DF_OK) st = get_special_id(g, KEY_BOS, t->n_tokens, &t->bos);
    if (st == DF_OK) st = get_special_id(g, KEY_EOS, t->n_tokens, &t->eos);
    if (st == DF_OK) st = get_special_id(g, KEY_PAD, t->n_tokens, &t->pad);
    if (st == DF_OK) st = get_flag(g, KEY_ADD_BOS, &t->add_bos);
    if (st == DF_OK) st = get_flag(g, KEY_ADD_EOS, &t->add_eos);
    if (st == DF_OK && t->add_bos && t->bos < 0)
        st = df_fail(DF_ERR_FORMAT, "%s: %s is true but %s is not set", name, KEY_ADD_BOS, KEY_BOS);
    if (st == DF_OK && t->add_eos && t->eos < 0)
        st = df_fail(DF_ERR_FORMAT, "%s: %s is true but %s is not set", name, KEY_ADD_EOS, KEY_EOS);
    if (st == DF_OK) {
        t->nfc = true;
        st = df_tok_build_finish(t, pattern);
    }
    if (st != DF_OK) {
        df_tokenizer_free(t);
        return st;
    }
    *out = t;
    return DF_OK;
}

/* ---- writing -------------------------------------------------------------------------------- */

void df_tok_gguf_opts_init(df_tok_gguf_opts *o) {
    memset(o, 0, sizeof *o);
    o->bos_id = o->eos_id = o->pad_id = -1;
    o->add_bos = o->add_eos = -1;
}

df_status df_tokenizer_write_gguf(const df_tokenizer *t, df_gguf_writer *w, const df_tok_gguf_opts *o) {
    df_tok_gguf_opts defaults;
    if (!o) {
        df_tok_gguf_opts_init(&defaults);
        o = &defaults;
    }
    const char *pre = o->pre ? o->pre : t->pre_name;
    if (!pre)
        return df_fail(DF_ERR_UNSUPPORTED, "tokenizer: its split pattern is neither qwen2's nor qwen35's, so no "
                                           "tokenizer.ggml.pre names it: \"%s\"", t->pattern);
    if (!df_tok_pattern_of(pre))
        return df_fail(DF_ERR_INVALID, "tokenizer: pre-tokenizer \"%s\" is not one we can name (qwen2, qwen35)", pre);
    if (o->n_vocab < 0 || (o->n_vocab > 0 && (size_t)o->n_vocab < t->n_tokens) || o->n_vocab > INT32_MAX)
        return df_fail(DF_ERR_INVALID, "tokenizer: n_vocab %lld is less than the %zu tokens it must hold",
                       (long long)o->n_vocab, t->n_tokens);
    size_t n = o->n_vocab > 0 ? (size_t)o->n_vocab : t->n_tokens;
    const int32_t ids[3] = {o->bos_id, o->eos_id, o->pad_id};
    for (int i = 0; i < 3; i++)
        if (ids[i] >= (int64_t)n)
            return df_fail(DF_ERR_INVALID, "tokenizer: special token id %d is outside the %zu tokens", (int)ids[i], n);

    df_status st = DF_OK;
    const char **strs = calloc(n, sizeof *strs);
    size_t *lens = calloc(n, sizeof *lens);
    int32_t *types = calloc(n, sizeof *types);
    char *pads = n > t->n_tokens ? malloc((n - t->n_tokens) * 24) : NULL;
    if (!strs || !lens || !types || (n > t->n_tokens && !pads)) {
        st = df_fail(DF_ERR_NOMEM, "tokenizer: out of memory writing %zu tokens", n);
        goto done;
    }
    for (size_t id = 0; id < n; id++) {
        if (id < t->n_tokens) {
            strs[id] = t->text_pool.data + t->text_off[id];
            lens[id] = t->text_len[id];
            types[id] = t->kind[id];
        } else {
            char *p = pads + (id - t->n_tokens) * 24;
            lens[id] = (size_t)snprintf(p, 24, "[PAD%zu]", id);
            strs[id] = p;
            types[id] = DF_TOKEN_UNUSED;
        }
    }
    st = df_gguf_writer_add_str(w, KEY_MODEL, "gpt2");
    if (st == DF_OK) st = df_gguf_writer_add_str(w, KEY_PRE, pre);
    if (st == DF_OK) st = df_gguf_writer_add_arr_str(w, KEY_TOKENS, strs, lens, n);
    if (st == DF_OK) st = df_gguf_writer_add_arr(w, KEY_TYPES, DF_GGUF_I32, types, n);
    if (st != DF_OK) goto done;

    /* Merges as "left right" strings, in rank order, in one buffer. */
    free(strs);
    free(lens);
    strs = calloc(t->n_merges ? t->n_merges : 1, sizeof *strs);
    lens = calloc(t->n_merges ? t->n_merges : 1, sizeof *lens);
    df_bytes pool = {0};
    size_t *offs = calloc(t->n_merges ? t->n_merges : 1, sizeof *offs);
    if (!strs || !lens || !offs) st = df_fail(DF_ERR_NOMEM, "tokenizer: out of memory writing merges");
    for (size_t i = 0; st == DF_OK && i < t->n_merges; i++) {
        int32_t a = t->merge_pairs[2 * i], b = t->merge_pairs[2 * i + 1];
        offs[i] = pool.len;
        st = df_bytes_append(&pool, t->text_pool.data + t->text_off[a], t->text_len[a]);
        if (st == DF_OK) st = df_bytes_append(&pool, " ", 1);
        if (st == DF_OK) st = df_bytes_append(&pool, t->text_pool.data + t->text_off[b], t->text_len[b]);
        lens[i] = pool.len - offs[i];
    }
    for (size_t i = 0; st == DF_OK && i < t->n_merges; i++) strs[i] = pool.data + offs[i];
    if (st == DF_OK) st = df_gguf_writer_add_arr_str(w, KEY_MERGES, strs, lens, t->n_merges);
    df_bytes_free(&pool);
    free(offs);
    if (st != DF_OK) goto done;

    if (o->bos_id >= 0) st = df_gguf_writer_add_u32(w, KEY_BOS, (uint32_t)o->bos_id);
    if (st == DF_OK && o->eos_id >= 0) st = df_gguf_writer_add_u32(w, KEY_EOS, (uint32_t)o->eos_id);
    if (st == DF_OK && o->pad_id >= 0) st = df_gguf_writer_add_u32(w, KEY_PAD, (uint32_t)o->pad_id);
    if (st == DF_OK && o->add_bos >= 0) st = df_gguf_writer_add_bool(w, KEY_ADD_BOS, o->add_bos != 0);
    if (st == DF_OK && o->add_eos >= 0) st = df_gguf_writer_add_bool(w, KEY_ADD_EOS, o->add_eos != 0);
    if (st == DF_OK && o->chat_template) st = df_gguf_writer_add_str(w, KEY_TEMPLATE, o->chat_template);
done:
    free(strs);
    free(lens);
    free(types);
    free(pads);
    return st;
}
