/* The drafter's hyperparameters from a z-lab config.json, the checks shared with the GGUF
 * reader, the reference's default capture layers, and the fit against a target.
 * docs/DFLASH_DRAFTER.md says where each field comes from and why each check exists. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/dflash_internal.h"

/* ---- the reference default capture layers ------------------------------------------------ */

df_status df_dflash_default_layer_ids(int64_t target_n_layer, int64_t n, int32_t *ids) {
    if (n < 1 || n > DF_DFLASH_MAX_CAPTURE || target_n_layer < 1 || target_n_layer > (1 << 20))
        return df_fail(DF_ERR_INVALID, "dflash: no default capture layers for %lld of %lld layers",
                       (long long)n, (long long)target_n_layer);
    if (n == 1) {
        ids[0] = (int32_t)(target_n_layer / 2);
        return DF_OK;
    }
    /* start + i * span / (n - 1) in doubles, as Python evaluates it, then round() with its
     * ties-to-even (nearbyint in the default rounding mode). */
    const int64_t start = 1, end = target_n_layer - 3, span = end - start;
    for (int64_t i = 0; i < n; i++) {
        double v = (double)start + (double)(i * span) / (double)(n - 1);
        ids[i] = (int32_t)nearbyint(v);
    }
    return DF_OK;
}

/* ---- config.json ---------------------------------------------------------------------------- */

df_status df_dflash_config_rope_theta(const df_config *cfg, float *out) {
    const char *path = df_config_has(cfg, "rope_parameters.rope_theta") ? "rope_parameters.rope_theta"
                       : df_config_has(cfg, "rope_theta")                ? "rope_theta"
                                                                         : NULL;
    if (!path)
        return df_fail(DF_ERR_NOT_FOUND, "%s: no rope_theta (looked for rope_parameters.rope_theta, "
                       "then rope_theta); refusing to guess it, a wrong RoPE base silently ruins "
                       "drafting", df_config_name(cfg));
    double theta;
    DF_TRY(df_config_get_float(cfg, path, &theta));
    if (!(theta > 0.0) || !isfinite((float)theta))
        return df_fail(DF_ERR_FORMAT, "%s: %s is %g, expected a positive number",
                       df_config_name(cfg), path, theta);
    *out = (float)theta;
    return DF_OK;
}

/* The z-lab code reads DFlash fields from dflash_config first, then from the top level. */
static const char *first_present(const df_config *cfg, const char *nested, const char *top) {
    if (df_config_has(cfg, nested)) return nested;
    if (df_config_has(cfg, top)) return top;
    return NULL;
}

static df_status unsupported(const df_config *cfg, const char *what) {
    return df_fail(DF_ERR_UNSUPPORTED, "%s: %s; dflash runs plain DFlashDraftModel drafters only",
                   df_config_name(cfg), what);
}

/* Fields that change the computation in ways this drafter does not implement. */
static df_status refuse_variants(const df_config *cfg) {
    size_t n = 0;
    const char **arch = NULL;
    if (df_config_has(cfg, "architectures")) {
        DF_TRY(df_config_get_str_array(cfg, "architectures", &arch, &n));
        bool ok = false;
        for (size_t i = 0; i < n; i++) ok |= strcmp(arch[i], "DFlashDraftModel") == 0;
        const char *first = n ? arch[0] : "(none)";
        if (!ok) {
            df_status st = df_fail(DF_ERR_UNSUPPORTED, "%s: architectures is [%s%s], expected "
                                   "DFlashDraftModel (DFlash2, Domino and DSpark drafters are not "
                                   "supported)", df_config_name(cfg), first, n > 1 ? ", ..." : "");
            free(arch);
            return st;
        }
        free(arch);
    }
    bool b = false;
    DF_TRY(df_config_get_bool_or(cfg, "attention_bias", false, &b));
    if (b) return unsupported(cfg, "attention_bias is true (biased q/k/v/o projections)");
    const char *s;
    DF_TRY(df_config_get_str_or(cfg, "hidden_act", "silu", &s));
    if (strcmp(s, "silu") != 0) return unsupported(cfg, "hidden_act is not silu");
    static const struct { const char *nested, *top; double neutral; } scalars[] = {
        {"dflash_config.output_multiplier", "output_multiplier", 1.0},
        {"dflash_config.input_embedding_scale", "input_embedding_scale", 1.0},
        {"dflash_config.final_logit_softcapping", "final_logit_softcapping", 0.0},
    };
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
        const char *p = first_present(cfg, scalars[i].nested, scalars[i].top);
        if (!p) continue;
        double v;
        DF_TRY(df_config_get_float(cfg, p, &v));
        if (v != scalars[i].neutral) {
            char what[160];
            snprintf(what, sizeof what, "%s is %g (only %g is supported)", p, v, scalars[i].neutral);
            return unsupported(cfg, what);
        }
    }
    if (df_config_has(cfg, "dflash_config.projector_type"))
        return unsupported(cfg, "dflash_config.projector_type is set");
    if (df_config_has(cfg, "dflash_config.attention_modes"))
        return unsupported(cfg, "dflash_config.attention_modes is set");
    DF_TRY(df_config_get_str_or(cfg, "dflash_config.attention_mode", "gqa", &s));
    if (strcmp(s, "gqa") != 0 && strcmp(s, "mha") != 0)
        return unsupported(cfg, "dflash_config.attention_mode is not gqa");
    DF_TRY(df_config_get_str_or(cfg, "rope_parameters.rope_type", "default", &s));
    if (strcmp(s, "default") != 0) return unsupported(cfg, "rope_parameters.rope_type is not default");
    if (df_config_has(cfg, "rope_scaling")) {
        const char *t = NULL;
        DF_TRY(df_config_get_str_or(cfg, "rope_scaling.rope_type", NULL, &t));
        if (!t) DF_TRY(df_config_get_str_or(cfg, "rope_scaling.type", NULL, &t));
        if (!t || strcmp(t, "default") != 0) return unsupported(cfg, "rope_scaling is set");
    }
    return DF_OK;
}

static df_status layer_kinds(const df_config *cfg, df_dflash_hparams *hp) {
    const char *name = df_config_name(cfg);
    /* Qwen3Config: the window exists only with use_sliding_window; without layer_types,
     * layers from max_window_layers on slide. */
    bool use_sw = false;
    int64_t window = 4096, max_window_layers = 28;
    DF_TRY(df_config_get_bool_or(cfg, "use_sliding_window", false, &use_sw));
    DF_TRY(df_config_get_int_or(cfg, "sliding_window", 4096, &window));
    DF_TRY(df_config_get_int_or(cfg, "max_window_layers", 28, &max_window_layers));
    const int64_t eff = use_sw ? window : 0;
    if (df_config_has(cfg, "layer_types")) {
        const char **types = NULL;
        size_t n = 0;
        DF_TRY(df_config_get_str_array(cfg, "layer_types", &types, &n));
        df_status st = DF_OK;
        if ((int64_t)n != hp->n_layer)
            st = df_fail(DF_ERR_FORMAT, "%s: layer_types has %zu entries for %lld layers", name, n,
                         (long long)hp->n_layer);
        for (size_t i = 0; st == DF_OK && i < n; i++) {
            if (strcmp(types[i], "sliding_attention") == 0) hp->sliding[i] = true;
            else if (strcmp(types[i], "full_attention") != 0)
                st = df_fail(DF_ERR_UNSUPPORTED, "%s: layer_types.%zu is '%s', expected "
                             "full_attention or sliding_attention", name, i, types[i]);
        }
        free(types);
        DF_TRY(st);
    } else {
        for (int64_t i = 0; i < hp->n_layer; i++) hp->sliding[i] = eff > 0 && i >= max_window_layers;
    }
    bool any = false;
    for (int64_t i = 0; i < hp->n_layer; i++) any |= hp->sliding[i];
    if (any && eff <= 0)
        return df_fail(DF_ERR_FORMAT, "%s: sliding_attention layers need use_sliding_window = true "
                       "and a positive sliding_window (found use_sliding_window = %s, "
                       "sliding_window = %lld)", name, use_sw ? "true" : "false", (long long)window);
    hp->sliding_window = any ? eff : 0;
    /* Causality inside the block: an explicit is_causal applies to every layer; otherwise
     * sliding layers are causal and full layers are not (z-lab, SpecForge, SGLang agree). */
    if (df_config_has(cfg, "is_causal")) {
        bool c;
        DF_TRY(df_config_get_bool(cfg, "is_causal", &c));
        for (int64_t i = 0; i < hp->n_layer; i++) hp->causal[i] = c;
    } else {
        for (int64_t i = 0; i < hp->n_layer; i++) hp->causal[i] = hp->sliding[i];
    }
    return DF_OK;
}

static df_status layer_ids(const df_config *cfg, df_dflash_hparams *hp) {
    const char *name = df_config_name(cfg);
    const char *p = first_present(cfg, "dflash_config.target_layer_ids", "target_layer_ids");
    if (p) {
        int64_t *ids = NULL;
        size_t n = 0;
        DF_TRY(df_config_get_int_array(cfg, p, &ids, &n));
        df_status st = DF_OK;
        if (n < 1 || n > DF_DFLASH_MAX_CAPTURE)
            st = df_fail(DF_ERR_FORMAT, "%s: %s has %zu entries, expected 1..%d", name, p, n,
                         DF_DFLASH_MAX_CAPTURE);
        for (size_t i = 0; st == DF_OK && i < n; i++) {
            if (ids[i] < 0 || ids[i] > INT32_MAX)
                st = df_fail(DF_ERR_FORMAT, "%s: %s.%zu is %lld, expected a layer index", name, p, i,
                             (long long)ids[i]);
            else hp->layer_ids[i] = (int32_t)ids[i];
        }
        free(ids);
        DF_TRY(st);
        hp->n_layer_ids = (int)n;
        hp->n_capture = (int64_t)n;
        return DF_OK;
    }
    /* The older z-lab code: one capture layer per draft layer, spread over the target. */
    if (hp->target_n_layer > 0) {
        if (hp->n_layer > DF_DFLASH_MAX_CAPTURE)
            return df_fail(DF_ERR_UNSUPPORTED, "%s: %lld draft layers, at most %d capture layers",
                           name, (long long)hp->n_layer, DF_DFLASH_MAX_CAPTURE);
        DF_TRY(df_dflash_default_layer_ids(hp->target_n_layer, hp->n_layer, hp->layer_ids));
        hp->n_layer_ids = (int)hp->n_layer;
        hp->n_capture = hp->n_layer;
        return DF_OK;
    }
    return df_fail(DF_ERR_NOT_FOUND, "%s: neither dflash_config.target_layer_ids (or "
                   "target_layer_ids) nor num_target_layers: cannot tell which target layers "
                   "feed the drafter", name);
}

df_status df_dflash_read_hparams_config(const df_config *cfg, df_dflash_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    const char *name = df_config_name(cfg);
    DF_TRY(refuse_variants(cfg));
    DF_TRY(df_config_get_int(cfg, "hidden_size", &hp->n_embd));
    DF_TRY(df_config_get_int(cfg, "num_hidden_layers", &hp->n_layer));
    DF_TRY(df_config_get_int(cfg, "intermediate_size", &hp->n_ff));
    DF_TRY(df_config_get_int(cfg, "num_attention_heads", &hp->n_head));
    DF_TRY(df_config_get_int_or(cfg, "num_key_value_heads", hp->n_head, &hp->n_head_kv));
    DF_TRY(df_config_get_int_or(cfg, "head_dim", 128, &hp->head_dim)); /* Qwen3Config's default */
    double eps;
    DF_TRY(df_config_get_float_or(cfg, "rms_norm_eps", 1e-6, &eps));
    hp->rms_eps = (float)eps;
    DF_TRY(df_dflash_config_rope_theta(cfg, &hp->rope_theta));
    DF_TRY(df_config_get_int_or(cfg, "max_position_embeddings", 0, &hp->n_ctx_train));
    DF_TRY(df_config_get_int_or(cfg, "vocab_size", 0, &hp->n_vocab));
    const char *p = first_present(cfg, "dflash_config.num_target_layers", "num_target_layers");
    if (p) DF_TRY(df_config_get_int(cfg, p, &hp->target_n_layer));
    p = first_present(cfg, "dflash_config.block_size", "block_size");
    hp->block_size = DF_DFLASH_DEFAULT_BLOCK;
    if (p) DF_TRY(df_config_get_int(cfg, p, &hp->block_size));
    p = first_present(cfg, "dflash_config.mask_token_id", "mask_token_id");
    if (!p)
        return df_fail(DF_ERR_NOT_FOUND, "%s: no dflash_config.mask_token_id (or mask_token_id): "
                       "the drafter's MASK token must be given", name);
    int64_t mask;
    DF_TRY(df_config_get_int(cfg, p, &mask));
    if (mask < 0 || mask > INT32_MAX)
        return df_fail(DF_ERR_FORMAT, "%s: %s is %lld, expected a token id", name, p, (long long)mask);
    hp->mask_token_id = (int32_t)mask;
    if (hp->n_layer <= 0 || hp->n_layer > DF_DFLASH_MAX_LAYERS)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: num_hidden_layers is %lld, expected 1..%d", name,
                       (long long)hp->n_layer, DF_DFLASH_MAX_LAYERS);
    DF_TRY(layer_kinds(cfg, hp));
    DF_TRY(layer_ids(cfg, hp));
    return df_dflash_validate_hparams(hp, name);
}

/* ---- checks shared by both file kinds ------------------------------------------------------- */

df_status df_dflash_validate_hparams(const df_dflash_hparams *hp, const char *source) {
    static const struct { const char *what; size_t off; int64_t max; } dims[] = {
        {"hidden size", offsetof(df_dflash_hparams, n_embd), 1 << 17},
        {"layer count", offsetof(df_dflash_hparams, n_layer), DF_DFLASH_MAX_LAYERS},
        {"feed-forward size", offsetof(df_dflash_hparams, n_ff), 1 << 20},
        {"attention head count", offsetof(df_dflash_hparams, n_head), 1024},
        {"KV head count", offsetof(df_dflash_hparams, n_head_kv), 1024},
        {"head dim", offsetof(df_dflash_hparams, head_dim), DF_CPU_ROPE_MAX_DIM},
        {"block size", offsetof(df_dflash_hparams, block_size), 1024},
        {"capture layer count", offsetof(df_dflash_hparams, n_capture), DF_DFLASH_MAX_CAPTURE},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        int64_t v;
        memcpy(&v, (const char *)hp + dims[i].off, sizeof v);
        if (v <= 0 || v > dims[i].max)
            return df_fail(DF_ERR_FORMAT, "%s: %s is %lld, expected 1..%lld", source, dims[i].what,
                           (long long)v, (long long)dims[i].max);
    }
    if (hp->n_head % hp->n_head_kv)
        return df_fail(DF_ERR_FORMAT, "%s: %lld attention heads do not divide into %lld KV heads",
                       source, (long long)hp->n_head, (long long)hp->n_head_kv);
    if (hp->head_dim % 2)
        return df_fail(DF_ERR_FORMAT, "%s: head dim %lld is odd; RoPE pairs its halves", source,
                       (long long)hp->head_dim);
    if (hp->block_size < 2)
        return df_fail(DF_ERR_FORMAT, "%s: block size %lld, expected at least 2 (the bonus token "
                       "and one draft)", source, (long long)hp->block_size);
    if (!(hp->rms_eps > 0.0f) || !isfinite(hp->rms_eps))
        return df_fail(DF_ERR_FORMAT, "%s: RMS norm epsilon %g is not a positive number", source,
                       (double)hp->rms_eps);
    if (!(hp->rope_theta > 0.0f) || !isfinite(hp->rope_theta))
        return df_fail(DF_ERR_FORMAT, "%s: rope theta %g is not a positive number", source,
                       (double)hp->rope_theta);
    if (hp->mask_token_id < 0)
        return df_fail(DF_ERR_FORMAT, "%s: mask token id %d is negative", source, hp->mask_token_id);
    if (hp->n_layer_ids != 0 && hp->n_layer_ids != hp->n_capture)
        return df_fail(DF_ERR_FORMAT, "%s: %d target layer ids for %lld capture layers", source,
                       hp->n_layer_ids, (long long)hp->n_capture);
    for (int i = 0; i < hp->n_layer_ids; i++)
        if (hp->layer_ids[i] < 0)
            return df_fail(DF_ERR_FORMAT, "%s: target layer id %d is negative", source, hp->layer_ids[i]);
    bool any = false;
    for (int64_t l = 0; l < hp->n_layer; l++) any |= hp->sliding[l];
    if (any && hp->sliding_window <= 0)
        return df_fail(DF_ERR_FORMAT, "%s: sliding layers without a positive sliding window", source);
    if (hp->sliding_window < 0 || hp->sliding_window > ((int64_t)1 << 30))
        return df_fail(DF_ERR_FORMAT, "%s: sliding window %lld is out of range", source,
                       (long long)hp->sliding_window);
    if (hp->target_n_layer < 0 || hp->n_vocab < 0 || hp->n_ctx_train < 0)
        return df_fail(DF_ERR_FORMAT, "%s: negative target depth, vocabulary or context length", source);
    return DF_OK;
}

/* ---- fit against a target ----------------------------------------------------------------- */

static df_status resolve_ids(const df_dflash_draft *d, const df_qwen35_hparams *t, int32_t *ids) {
    const df_dflash_hparams *hp = &d->hp;
    if (hp->n_layer_ids > 0) {
        memcpy(ids, hp->layer_ids, (size_t)hp->n_layer_ids * sizeof *ids);
        return DF_OK;
    }
    return df_dflash_default_layer_ids(t->n_layer, hp->n_capture, ids);
}

df_status df_dflash_draft_check_target(const df_dflash_draft *d, const df_qwen35_hparams *t) {
    const df_dflash_hparams *hp = &d->hp;
    const char *src = d->source;
    if (hp->n_embd != t->n_embd)
        return df_fail(DF_ERR_MISMATCH, "%s: drafter hidden size %lld, target hidden size %lld: "
                       "the drafter reads the target's hidden states and embeddings", src,
                       (long long)hp->n_embd, (long long)t->n_embd);
    if (hp->mask_token_id >= t->n_vocab)
        return df_fail(DF_ERR_MISMATCH, "%s: mask token %d is outside the target's vocabulary of "
                       "%lld tokens", src, hp->mask_token_id, (long long)t->n_vocab);
    if (hp->n_vocab > 0 && hp->n_vocab != t->n_vocab)
        return df_fail(DF_ERR_MISMATCH, "%s: drafter trained for a vocabulary of %lld tokens, the "
                       "target has %lld", src, (long long)hp->n_vocab, (long long)t->n_vocab);
    if (hp->target_n_layer > 0 && hp->target_n_layer != t->n_layer)
        return df_fail(DF_ERR_MISMATCH, "%s: drafter trained against a target of %lld layers, this "
                       "target has %lld", src, (long long)hp->target_n_layer, (long long)t->n_layer);
    int32_t ids[DF_DFLASH_MAX_CAPTURE];
    DF_TRY(resolve_ids(d, t, ids));
    for (int64_t i = 0; i < hp->n_capture; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_layer)
            return df_fail(DF_ERR_MISMATCH, "%s: capture layer %d is beyond the target's %lld layers",
                           src, ids[i], (long long)t->n_layer);
        /* The reference reads hidden_states[id + 1]; for the last layer transformers puts
         * the final-norm output there, which a residual-stream capture is not. */
        if (ids[i] == t->n_layer - 1)
            return df_fail(DF_ERR_UNSUPPORTED, "%s: capture layer %d is the target's last layer, "
                           "whose reference hidden state is taken after the final norm", src, ids[i]);
    }
    return DF_OK;
}

df_status df_dflash_draft_capture_layers(const df_dflash_draft *d, const df_qwen35_hparams *t,
                                         int32_t *ids) {
    DF_TRY(df_dflash_draft_check_target(d, t));
    return resolve_ids(d, t, ids);
}
