/* Loading a lucebox-style drafter GGUF (arch "qwen35-dflash-draft", as written by lucebox's
 * convert_dflash_to_gguf.py / quantize_draft_q8.py): metadata first, then every tensor bound
 * by name with its shape checked. Keys and names: docs/DFLASH_DRAFTER.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/dflash_internal.h"

#define A DF_DFLASH_ARCH

static df_status get_i64(const df_gguf *g, const char *suffix, int64_t *out, bool required) {
    char key[128];
    snprintf(key, sizeof key, A ".%s", suffix);
    df_status st = df_gguf_get_i64(g, key, out);
    if (st == DF_ERR_NOT_FOUND && !required) {
        df_clear_error();
        return DF_OK;
    }
    return st;
}

/* The sliding-window pattern: one bool per layer. */
static df_status read_pattern(const df_gguf *g, df_dflash_hparams *hp) {
    const char *key = A ".attention.sliding_window_pattern";
    if (!df_gguf_has(g, key)) return DF_OK;
    df_gguf_value arr;
    DF_TRY(df_gguf_get_arr(g, key, &arr));
    if (arr.elem_type != DF_GGUF_BOOL)
        return df_fail(DF_ERR_FORMAT, "%s: %s holds %s, expected bool", df_gguf_name(g), key,
                       df_gguf_type_name(arr.elem_type));
    if ((int64_t)arr.count != hp->n_layer)
        return df_fail(DF_ERR_FORMAT, "%s: %s has %llu entries for %lld layers", df_gguf_name(g), key,
                       (unsigned long long)arr.count, (long long)hp->n_layer);
    for (int64_t l = 0; l < hp->n_layer; l++) {
        df_gguf_value e;
        bool b = false;
        if (!df_gguf_arr_elem(&arr, (uint64_t)l, &e) || !df_gguf_value_as_bool(&e, &b))
            return df_fail(DF_ERR_FORMAT, "%s: %s entry %lld is unreadable", df_gguf_name(g), key,
                           (long long)l);
        hp->sliding[l] = b;
    }
    return DF_OK;
}

df_status df_dflash_read_hparams_gguf(const df_gguf *g, df_dflash_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    const char *name = df_gguf_name(g);
    const char *arch;
    size_t arch_len;
    DF_TRY(df_gguf_get_str(g, "general.architecture", &arch, &arch_len));
    if (arch_len != strlen(A) || memcmp(arch, A, arch_len) != 0)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: general.architecture is '%.*s', expected '" A "'",
                       name, (int)(arch_len > 64 ? 64 : arch_len), arch);
    DF_TRY(get_i64(g, "block_count", &hp->n_layer, true));
    DF_TRY(get_i64(g, "embedding_length", &hp->n_embd, true));
    DF_TRY(get_i64(g, "feed_forward_length", &hp->n_ff, true));
    DF_TRY(get_i64(g, "attention.head_count", &hp->n_head, true));
    DF_TRY(get_i64(g, "attention.head_count_kv", &hp->n_head_kv, true));
    if (hp->n_layer <= 0 || hp->n_layer > DF_DFLASH_MAX_LAYERS)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: " A ".block_count is %lld, expected 1..%d", name,
                       (long long)hp->n_layer, DF_DFLASH_MAX_LAYERS);
    if (hp->n_head <= 0)
        return df_fail(DF_ERR_FORMAT, "%s: " A ".attention.head_count is %lld", name,
                       (long long)hp->n_head);
    hp->head_dim = hp->n_embd / hp->n_head;
    DF_TRY(get_i64(g, "attention.key_length", &hp->head_dim, false));
    int64_t v_len = hp->head_dim;
    DF_TRY(get_i64(g, "attention.value_length", &v_len, false));
    if (v_len != hp->head_dim)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: " A ".attention.value_length %lld differs from "
                       "key_length %lld", name, (long long)v_len, (long long)hp->head_dim);
    hp->rms_eps = 1e-6f;
    df_status st = df_gguf_get_f32(g, A ".attention.layer_norm_rms_epsilon", &hp->rms_eps);
    if (st == DF_ERR_NOT_FOUND) df_clear_error();
    else DF_TRY(st);
    /* No default: a drafter with the wrong base drafts badly without any error (seed 004). */
    if (!df_gguf_has(g, A ".rope.freq_base"))
        return df_fail(DF_ERR_NOT_FOUND, "%s: no " A ".rope.freq_base (the drafter's rope_theta); "
                       "refusing to guess it", name);
    DF_TRY(df_gguf_get_f32(g, A ".rope.freq_base", &hp->rope_theta));
    DF_TRY(get_i64(g, "context_length", &hp->n_ctx_train, false));
    DF_TRY(get_i64(g, "vocab_size", &hp->n_vocab, false));
    hp->block_size = DF_DFLASH_DEFAULT_BLOCK;
    DF_TRY(get_i64(g, "dflash.block_size", &hp->block_size, false));
    if (!df_gguf_has(g, A ".dflash.mask_token_id"))
        return df_fail(DF_ERR_NOT_FOUND, "%s: no " A ".dflash.mask_token_id: the drafter's MASK "
                       "token must be given", name);
    int64_t mask;
    DF_TRY(get_i64(g, "dflash.mask_token_id", &mask, true));
    if (mask < 0 || mask > INT32_MAX)
        return df_fail(DF_ERR_FORMAT, "%s: " A ".dflash.mask_token_id is %lld", name, (long long)mask);
    hp->mask_token_id = (int32_t)mask;

    /* Capture layers: the count, and the list in newer files. */
    DF_TRY(get_i64(g, "dflash.n_target_layers", &hp->n_capture, false));
    if (df_gguf_has(g, A ".dflash.target_layer_ids")) {
        size_t n = 0;
        DF_TRY(df_gguf_get_arr_i32(g, A ".dflash.target_layer_ids", hp->layer_ids,
                                   DF_DFLASH_MAX_CAPTURE, &n));
        if (n == 0)
            return df_fail(DF_ERR_FORMAT, "%s: " A ".dflash.target_layer_ids is empty", name);
        if (hp->n_capture == 0) hp->n_capture = (int64_t)n;
        if ((int64_t)n != hp->n_capture)
            return df_fail(DF_ERR_MISMATCH, "%s: " A ".dflash.target_layer_ids has %zu entries but "
                           A ".dflash.n_target_layers is %lld", name, n, (long long)hp->n_capture);
        hp->n_layer_ids = (int)n;
    }
    if (hp->n_capture == 0)
        return df_fail(DF_ERR_NOT_FOUND, "%s: neither " A ".dflash.n_target_layers nor "
                       A ".dflash.target_layer_ids", name);

    /* Sliding-window layers: lucebox files carry the window and a per-layer pattern; such
     * layers are causal inside the block, full layers are not (no key for causality). */
    DF_TRY(get_i64(g, "attention.sliding_window", &hp->sliding_window, false));
    DF_TRY(read_pattern(g, hp));
    bool any = false;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        hp->causal[l] = hp->sliding[l];
        any |= hp->sliding[l];
    }
    if (any && hp->sliding_window <= 0)
        return df_fail(DF_ERR_FORMAT, "%s: " A ".attention.sliding_window_pattern marks sliding "
                       "layers but " A ".attention.sliding_window is %lld", name,
                       (long long)hp->sliding_window);
    if (!any) hp->sliding_window = 0;
    return df_dflash_validate_hparams(hp, name);
}

/* ---- tensors ---- */

typedef struct binder {
    df_dflash_draft *d;
    const df_gguf *g;
    bool *used;
} binder;

/* Binds the first of the names present (lucebox accepts a few spellings), checking shape
 * [ne0, ne1] (ne1 == 0: a vector, which must be f32). */
static df_status bind(binder *b, const char *const *names, int64_t ne0, int64_t ne1, df_weight *out) {
    const df_gguf *g = b->g;
    const df_gguf_tensor *t = NULL;
    for (int i = 0; names[i] && !t; i++) t = df_gguf_find_tensor(g, names[i]);
    if (!t) return df_fail(DF_ERR_NOT_FOUND, "%s: tensor '%s' is missing", df_gguf_name(g), names[0]);
    const int64_t want1 = ne1 ? ne1 : 1;
    if (t->ne[0] != ne0 || t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1)
        return df_fail(DF_ERR_MISMATCH, "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], "
                       "expected [%lld, %lld]", df_gguf_name(g), t->name, (long long)t->ne[0],
                       (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                       (long long)ne0, (long long)want1);
    const df_type_traits *tt = df_type_get(t->type);
    if (!tt || !tt->to_float)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which dflash cannot "
                       "compute with", df_gguf_name(g), t->name, df_type_name(t->type));
    if (ne1 == 0 && t->type != DF_TYPE_F32)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; 1-D tensors must be f32",
                       df_gguf_name(g), t->name, df_type_name(t->type));
    df_weight host = {.type = (df_type)t->type, .ne = {t->ne[0], want1, 1, 1},
                      .data = t->data, .size = t->size, .name = t->name};
    DF_TRY(b->d->be->ops->bind_weight(b->d->be, &host, out));
    b->used[t - df_gguf_tensor_at(g, 0)] = true;
    return DF_OK;
}

static df_status bind_one(binder *b, const char *name, int64_t ne0, int64_t ne1, df_weight *out) {
    const char *names[] = {name, NULL};
    return bind(b, names, ne0, ne1, out);
}

static df_status bind_layer(binder *b, int64_t l) {
    const df_dflash_hparams *hp = &b->d->hp;
    df_dflash_layer *L = &b->d->layers[l];
    const int64_t E = hp->n_embd, D = hp->head_dim, F = hp->n_ff;
    const int64_t qd = hp->n_head * D, kvd = hp->n_head_kv * D;
    char n1[96], n2[96];
#define B(suffix, ne0, ne1, field)                                   \
    do {                                                             \
        snprintf(n1, sizeof n1, "blk.%lld." suffix, (long long)l);   \
        DF_TRY(bind_one(b, n1, (ne0), (ne1), &L->field));            \
    } while (0)
    B("attn_norm.weight", E, 0, attn_norm);
    snprintf(n1, sizeof n1, "blk.%lld.ffn_norm.weight", (long long)l);
    snprintf(n2, sizeof n2, "blk.%lld.post_attention_norm.weight", (long long)l);
    const char *ffn_norm[] = {n1, n2, NULL};
    DF_TRY(bind(b, ffn_norm, E, 0, &L->ffn_norm));
    B("attn_q.weight", E, qd, wq);
    B("attn_k.weight", E, kvd, wk);
    B("attn_v.weight", E, kvd, wv);
    B("attn_output.weight", qd, E, wo);
    B("attn_q_norm.weight", D, 0, q_norm);
    B("attn_k_norm.weight", D, 0, k_norm);
    B("ffn_gate.weight", E, F, ffn_gate);
    B("ffn_up.weight", E, F, ffn_up);
    B("ffn_down.weight", F, E, ffn_down);
#undef B
    return DF_OK;
}

static df_status bind_all(binder *b) {
    const df_dflash_hparams *hp = &b->d->hp;
    const int64_t E = hp->n_embd;
    const char *fc[] = {"dflash.fc.weight", "dflash_fc.weight", NULL};
    const char *hn[] = {"dflash.hidden_norm.weight", "dflash_hidden_norm.weight", NULL};
    df_status st = bind(b, fc, hp->n_capture * E, E, &b->d->fc);
    if (st == DF_ERR_MISMATCH)
        return df_fail_context(st, A ".dflash.n_target_layers = %lld capture layers of %lld",
                               (long long)hp->n_capture, (long long)E);
    DF_TRY(st);
    DF_TRY(bind(b, hn, E, 0, &b->d->hidden_norm));
    DF_TRY(bind_one(b, "output_norm.weight", E, 0, &b->d->output_norm));
    for (int64_t l = 0; l < hp->n_layer; l++) DF_TRY(bind_layer(b, l));
    for (uint64_t i = 0; i < df_gguf_n_tensors(b->g); i++)
        if (!b->used[i])
            return df_fail(DF_ERR_FORMAT, "%s: unexpected tensor '%s' for a drafter of %lld layers",
                           df_gguf_name(b->g), df_gguf_tensor_at(b->g, i)->name,
                           (long long)hp->n_layer);
    return DF_OK;
}

df_status df_dflash_draft_load_gguf(const df_gguf *g, df_backend *be, df_dflash_draft **out) {
    *out = NULL;
    df_dflash_hparams hp;
    DF_TRY(df_dflash_read_hparams_gguf(g, &hp));
    df_dflash_draft *d;
    DF_TRY(df_dflash_alloc(be, df_gguf_name(g), &hp, &d));
    uint64_t n = df_gguf_n_tensors(g);
    binder b = {d, g, calloc(n ? n : 1, sizeof(bool))};
    df_status st = b.used ? bind_all(&b) : df_fail(DF_ERR_NOMEM, "%s: out of memory", d->source);
    if (st == DF_OK) st = df_dflash_finish_load(d);
    free(b.used);
    if (st != DF_OK) {
        df_dflash_draft_free(d);
        return st;
    }
    *out = d;
    return DF_OK;
}
