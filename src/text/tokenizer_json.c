/* Loading a Hugging Face tokenizer.json (the `tokenizers` library's serialisation).
 *
 * Accepted shape (what the Qwen models ship):
 *   model:         {type: "BPE", vocab: {text: id}, merges: ["a b", ...] or [["a","b"], ...],
 *                   byte_fallback: false, ignore_merges, no subword prefix / suffix}
 *   added_tokens:  [{id, content, special, lstrip, rstrip, ...}]
 *   normalizer:    null, NFC, or a Sequence of NFC
 *   pre_tokenizer: Sequence[Split{pattern: {Regex}, behavior: "Isolated", invert: false},
 *                            ByteLevel{add_prefix_space: false, use_regex: false}]
 *   decoder:       null or ByteLevel
 * Everything else is refused, naming the field: a tokenizer we would silently get wrong is
 * worse than none. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mapfile.h"
#include "text/tokenizer_internal.h"

typedef struct json_tok {
    const char *text;
    size_t len;
    uint8_t kind;
    uint8_t flags;
} json_tok;

static const char *type_of(json_t *obj) {
    json_t *t = json_object_get(obj, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

static bool json_flag(json_t *obj, const char *key) { return json_is_true(json_object_get(obj, key)); }

static df_status check_normalizer(json_t *norm, const char *name, bool *nfc) {
    *nfc = false;
    if (!norm || json_is_null(norm)) return DF_OK;
    const char *type = type_of(norm);
    if (type && !strcmp(type, "NFC")) {
        *nfc = true;
        return DF_OK;
    }
    if (type && !strcmp(type, "Sequence")) {
        json_t *list = json_object_get(norm, "normalizers");
        size_t i;
        json_t *n;
        if (!json_is_array(list)) return df_fail(DF_ERR_FORMAT, "%s: normalizer.normalizers is not an array", name);
        json_array_foreach(list, i, n) {
            const char *t = type_of(n);
            if (!t || strcmp(t, "NFC"))
                return df_fail(DF_ERR_UNSUPPORTED, "%s: normalizer.normalizers[%zu].type \"%s\" is not supported (only NFC)",
                               name, i, t ? t : "?");
            *nfc = true;
        }
        return DF_OK;
    }
    return df_fail(DF_ERR_UNSUPPORTED, "%s: normalizer.type \"%s\" is not supported (only NFC)", name, type ? type : "?");
}

static df_status check_byte_level(json_t *bl, const char *name, const char *field) {
    if (json_flag(bl, "add_prefix_space"))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: %s.add_prefix_space true is not supported", name, field);
    if (json_flag(bl, "use_regex"))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: %s.use_regex true (the GPT-2 split) is not supported", name, field);
    return DF_OK;
}

static df_status get_pattern(json_t *pre, const char *name, const char **pattern) {
    *pattern = NULL;
    const char *type = pre ? type_of(pre) : NULL;
    if (!type || strcmp(type, "Sequence"))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: pre_tokenizer.type \"%s\" is not supported (expected Sequence[Split, ByteLevel])",
                       name, type ? type : "?");
    json_t *list = json_object_get(pre, "pretokenizers");
    if (!json_is_array(list) || json_array_size(list) != 2)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers must be [Split, ByteLevel]", name);
    json_t *split = json_array_get(list, 0), *bl = json_array_get(list, 1);
    const char *st = type_of(split), *bt = type_of(bl);
    if (!st || strcmp(st, "Split"))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[0].type \"%s\" is not supported (expected Split)",
                       name, st ? st : "?");
    if (!bt || strcmp(bt, "ByteLevel"))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[1].type \"%s\" is not supported (expected ByteLevel)",
                       name, bt ? bt : "?");
    DF_TRY(check_byte_level(bl, name, "pre_tokenizer.pretokenizers[1]"));
    json_t *behavior = json_object_get(split, "behavior");
    if (!json_is_string(behavior) || strcmp(json_string_value(behavior), "Isolated"))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[0].behavior must be \"Isolated\"", name);
    if (json_flag(split, "invert"))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[0].invert true is not supported", name);
    json_t *re = json_object_get(json_object_get(split, "pattern"), "Regex");
    if (!json_is_string(re))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[0].pattern.Regex is missing (a String pattern is not supported)",
                       name);
    *pattern = json_string_value(re);
    return DF_OK;
}

static df_status check_model(json_t *model, const char *name, bool *ignore_merges) {
    *ignore_merges = false;
    const char *type = type_of(model);
    if (type && strcmp(type, "BPE"))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: model.type \"%s\" is not supported (only BPE)", name, type);
    if (json_flag(model, "byte_fallback"))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: model.byte_fallback true is not supported", name);
    const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(model, affixes[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
            return df_fail(DF_ERR_UNSUPPORTED, "%s: model.%s must be empty", name, affixes[i]);
    }
    *ignore_merges = json_flag(model, "ignore_merges");
    return DF_OK;
}

/* Splits a merge entry into its two halves: "a b" (split at the first space after the first
 * byte, as llama.cpp does) or ["a", "b"]. */
static df_status merge_halves(json_t *m, size_t i, const char *name, const char **a, size_t *al, const char **b,
                              size_t *bl) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t len = json_string_length(m);
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp) return df_fail(DF_ERR_FORMAT, "%s: model.merges[%zu] \"%s\" has no space between its halves", name, i, s);
        *a = s;
        *al = (size_t)(sp - s);
        *b = sp + 1;
        *bl = len - *al - 1;
        return DF_OK;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *al = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *bl = json_string_length(json_array_get(m, 1));
        return DF_OK;
    }
    return df_fail(DF_ERR_FORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", name, i);
}

static df_status build(json_t *root, const char *name, df_tokenizer **out) {
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return df_fail(DF_ERR_FORMAT, "%s: \"model\" is missing or not an object", name);
    bool ignore_merges = false, nfc = false;
    DF_TRY(check_model(model, name, &ignore_merges));
    DF_TRY(check_normalizer(json_object_get(root, "normalizer"), name, &nfc));
    const char *pattern;
    DF_TRY(get_pattern(json_object_get(root, "pre_tokenizer"), name, &pattern));
    json_t *decoder = json_object_get(root, "decoder");
    if (decoder && !json_is_null(decoder)) {
        const char *dt = type_of(decoder);
        if (!dt || strcmp(dt, "ByteLevel"))
            return df_fail(DF_ERR_UNSUPPORTED, "%s: decoder.type \"%s\" is not supported (only ByteLevel)", name, dt ? dt : "?");
    }
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return df_fail(DF_ERR_FORMAT, "%s: model.vocab is missing or not an object", name);
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_array(merges)) return df_fail(DF_ERR_FORMAT, "%s: model.merges is missing or not an array", name);
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return df_fail(DF_ERR_FORMAT, "%s: added_tokens is not an array", name);

    /* The id range: the largest id named anywhere. */
    json_int_t max_id = -1;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= INT32_MAX)
            return df_fail(DF_ERR_FORMAT, "%s: model.vocab[\"%s\"] is not an id in 0..2^31-2", name, key);
        if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id"), *content = json_object_get(v, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= INT32_MAX)
            return df_fail(DF_ERR_FORMAT, "%s: added_tokens[%zu].id is missing or not an id in 0..2^31-2", name, i);
        if (!json_is_string(content) || json_string_length(content) == 0)
            return df_fail(DF_ERR_FORMAT, "%s: added_tokens[%zu].content is missing or empty", name, i);
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) return df_fail(DF_ERR_FORMAT, "%s: model.vocab is empty", name);
    size_t n = (size_t)max_id + 1;
    /* Ids must be (nearly) dense: the table is sized by the largest id, so a hostile file with
     * a handful of tokens and an id near 2^31 would otherwise ask for tens of gigabytes. */
    size_t n_named = json_object_size(vocab) + json_array_size(added);
    if (n > 4 * n_named + 4096)
        return df_fail(DF_ERR_FORMAT, "%s: token ids go up to %lld for only %zu tokens; ids must be dense",
                       name, (long long)max_id, n_named);

    json_tok *toks = calloc(n, sizeof *toks);
    char *pads = NULL;
    df_tokenizer *t = NULL;
    df_status st = DF_OK;
    if (!toks) return df_fail(DF_ERR_NOMEM, "%s: out of memory for %zu tokens", name, n);
    json_object_foreach(vocab, key, v) {
        size_t id = (size_t)json_integer_value(v);
        if (toks[id].text) {
            st = df_fail(DF_ERR_FORMAT, "%s: model.vocab gives id %zu to both \"%s\" and \"%s\"", name, id, toks[id].text, key);
            goto done;
        }
        toks[id] = (json_tok){key, strlen(key), DF_TOKEN_NORMAL, 0};
    }
    json_array_foreach(added, i, v) {
        size_t id = (size_t)json_integer_value(json_object_get(v, "id"));
        json_t *content = json_object_get(v, "content");
        const char *text = json_string_value(content);
        size_t len = json_string_length(content);
        if (toks[id].text && (toks[id].len != len || memcmp(toks[id].text, text, len))) {
            st = df_fail(DF_ERR_FORMAT, "%s: added_tokens[%zu] gives id %zu to \"%s\", already \"%s\"", name, i, id, text,
                         toks[id].text);
            goto done;
        }
        uint8_t flags = (json_flag(v, "lstrip") ? DF_ADDED_LSTRIP : 0) | (json_flag(v, "rstrip") ? DF_ADDED_RSTRIP : 0);
        toks[id] = (json_tok){text, len, json_flag(v, "special") ? DF_TOKEN_CONTROL : DF_TOKEN_USER_DEFINED, flags};
    }

    st = df_tok_build_begin(&t, n);
    /* Ids nobody names become unused padding, spelt like llama.cpp's converter does. */
    size_t n_gaps = 0;
    for (size_t id = 0; id < n; id++) n_gaps += !toks[id].text;
    if (st == DF_OK && n_gaps && !(pads = malloc(n_gaps * 24))) st = df_fail(DF_ERR_NOMEM, "%s: out of memory", name);
    char *pad = pads;
    for (size_t id = 0; st == DF_OK && id < n; id++) {
        if (!toks[id].text) {
            int len = snprintf(pad, 24, "[PAD%zu]", id);
            toks[id] = (json_tok){pad, (size_t)len, DF_TOKEN_UNUSED, 0};
            pad += 24;
        }
        st = df_tok_build_token(t, (int32_t)id, toks[id].text, toks[id].len, toks[id].kind, toks[id].flags);
    }
    if (st == DF_OK) st = df_tok_build_index(t, name);
    if (st == DF_OK) st = df_merge_map_init(&t->merges, json_array_size(merges));
    char where[64];
    for (i = 0; st == DF_OK && i < json_array_size(merges); i++) {
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if (i >= INT32_MAX) {
            st = df_fail(DF_ERR_FORMAT, "%s: too many merges", name);
            break;
        }
        st = merge_halves(json_array_get(merges, i), i, name, &a, &al, &b, &bl);
        snprintf(where, sizeof where, "model.merges[%zu]", i);
        if (st == DF_OK) st = df_tok_build_merge(t, a, al, b, bl, (int32_t)i, where);
        if (st != DF_OK) st = df_fail_context(st, "%s", name);
    }
    if (st == DF_OK) {
        t->nfc = nfc;
        t->ignore_merges = ignore_merges;
        st = df_tok_build_finish(t, pattern);
        if (st != DF_OK) st = df_fail_context(st, "%s", name);
    }
done:
    free(toks);
    free(pads);
    if (st != DF_OK) {
        df_tokenizer_free(t);
        return st;
    }
    *out = t;
    return DF_OK;
}

df_status df_tokenizer_from_json(const char *json, size_t len, const char *name, df_tokenizer **out) {
    *out = NULL;
    json_error_t err;
    json_t *root = json_loadb(json, len, 0, &err);
    if (!root) return df_fail(DF_ERR_FORMAT, "%s: line %d, column %d: %s", name, err.line, err.column, err.text);
    df_status st = json_is_object(root) ? build(root, name, out)
                                        : df_fail(DF_ERR_FORMAT, "%s: the top level is not an object", name);
    json_decref(root);
    return st;
}

df_status df_tokenizer_load_json(const char *path, df_tokenizer **out) {
    *out = NULL;
    char *buf;
    size_t size;
    DF_TRY(df_read_file(path, (size_t)1 << 30, &buf, &size));
    df_status st = df_tokenizer_from_json(buf, size, path, out);
    free(buf);
    return st;
}
