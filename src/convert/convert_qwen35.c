/* Qwen3.5 (dense) checkpoints -> "qwen35" GGUF, as llama.cpp's converter writes them
 * (docs/QWEN35_FORMAT.md: §1 metadata, §2 tensors and transforms, §4 the Q4_K_M mix).
 *
 * Checkpoint layouts: Qwen3_5ForCausalLM (model.* + lm_head.weight) and
 * Qwen3_5ForConditionalGeneration (model.language_model.* + lm_head.weight, with the vision
 * tower model.visual.* skipped and the multi-token-prediction head mtp.* dropped, as llama.cpp's
 * single-file converter does). Any other tensor is an error: silently dropping weights would
 * give a model that loads and computes something else. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert_internal.h"

#define ARCH "qwen35"

/* The hyperparameters and the tensor spec are shared with mkmodel (convert_internal.h). */
typedef df_q35_hparams q35_hp;
typedef df_q35_spec q35_spec;

static bool q35_is_full(const q35_hp *hp, int64_t il) { return df_q35_is_full(hp, il); }

/* ---- hyperparameters --------------------------------------------------------------------- */

static df_status positive_int(const df_conv_cfg *c, const char *key, int64_t *out) {
    char buf[192];
    DF_TRY(df_conv_int(c, key, out));
    if (*out <= 0 || *out > INT32_MAX)
        return df_fail(DF_ERR_FORMAT, "%s: %s is %lld, expected a positive count", c->path,
                       df_conv_cfg_path(c, key, buf, sizeof buf), (long long)*out);
    return DF_OK;
}

/* The first of several spellings that is present (llama.cpp's find_hparam); NULL when none. */
static const char *first_present(const df_conv_cfg *c, const char *const *keys, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (df_conv_has(c, keys[i])) return keys[i];
    return NULL;
}

static df_status read_rope(const df_conv_cfg *c, q35_hp *hp) {
    char key[96], buf[192];
    /* rope_parameters, or the older rope_scaling, holds theta, the sections and maybe the factor. */
    const char *rp = df_conv_has(c, "rope_parameters") ? "rope_parameters"
                     : df_conv_has(c, "rope_scaling")  ? "rope_scaling"
                                                       : NULL;
    if (rp) snprintf(key, sizeof key, "%s.rope_theta", rp);
    if (rp && df_conv_has(c, key)) {
        DF_TRY(df_conv_float(c, key, &hp->rope_theta));
    } else if (df_conv_has(c, "rope_theta")) {
        DF_TRY(df_conv_float(c, "rope_theta", &hp->rope_theta));
    } else {
        return df_fail(DF_ERR_NOT_FOUND, "%s: no rope_theta: looked for %s.rope_theta and %s", c->path,
                       df_conv_cfg_path(c, "rope_parameters", buf, sizeof buf),
                       df_conv_cfg_path(c, "rope_theta", key, sizeof key));
    }
    if (!(hp->rope_theta > 0.0))
        return df_fail(DF_ERR_FORMAT, "%s: rope_theta is %g, expected a positive number", c->path, hp->rope_theta);

    /* llama.cpp reads the factor from the top level; transformers keeps it in rope_parameters.
     * Top level first, then rope_parameters, then the Qwen3.5 default. */
    hp->rotary_factor = 0.25;
    if (df_conv_has(c, "partial_rotary_factor")) {
        DF_TRY(df_conv_float(c, "partial_rotary_factor", &hp->rotary_factor));
    } else if (rp) {
        snprintf(key, sizeof key, "%s.partial_rotary_factor", rp);
        DF_TRY(df_conv_float_or(c, key, 0.25, &hp->rotary_factor));
    }
    hp->rot_dim = df_q35_rot_dim(hp->head_dim, hp->rotary_factor);
    if (!(hp->rotary_factor > 0.0) || hp->rot_dim <= 0 || hp->rot_dim > hp->head_dim)
        return df_fail(DF_ERR_FORMAT, "%s: partial_rotary_factor %g gives %lld rotary dims of a %lld-dim head", c->path,
                       hp->rotary_factor, (long long)hp->rot_dim, (long long)hp->head_dim);

    /* Multi-section rope: zero-padded to 4; [11, 11, 10, 0] when absent, as the newer converter
     * writes it (llama.cpp refuses a qwen35 file without the key). */
    static const int32_t def_sections[4] = {11, 11, 10, 0};
    memcpy(hp->sections, def_sections, sizeof def_sections);
    if (rp) {
        snprintf(key, sizeof key, "%s.mrope_section", rp);
        if (df_conv_has(c, key)) {
            int64_t *sec = NULL;
            size_t n = 0;
            DF_TRY(df_conv_int_array(c, key, &sec, &n));
            df_status st = DF_OK;
            if (n > 4)
                st = df_fail(DF_ERR_FORMAT, "%s: %s has %zu entries, at most 4 fit rope.dimension_sections", c->path,
                             df_conv_cfg_path(c, key, buf, sizeof buf), n);
            for (size_t i = 0; st == DF_OK && i < 4; i++) {
                int64_t v = i < n ? sec[i] : 0;
                if (v < 0 || v > INT32_MAX)
                    st = df_fail(DF_ERR_FORMAT, "%s: %s[%zu] is %lld", c->path, df_conv_cfg_path(c, key, buf, sizeof buf),
                                 i, (long long)v);
                else hp->sections[i] = (int32_t)v;
            }
            free(sec);
            if (st != DF_OK) return st;
        }
    }
    return DF_OK;
}

/* llama.cpp's qwen35 metadata can only say "every interval-th layer is full attention". Take
 * the interval from full_attention_interval, or derive it from layer_types; either way, when
 * layer_types is there it is the truth (transformers builds the model from it), and a pattern
 * the interval cannot express is refused rather than written wrong. */
static df_status read_layer_pattern(const df_conv_cfg *c, q35_hp *hp) {
    char buf[192];
    const bool has_interval = df_conv_has(c, "full_attention_interval");
    hp->interval = 4; /* llama.cpp's and transformers' default */
    if (has_interval) DF_TRY(positive_int(c, "full_attention_interval", &hp->interval));
    if (!df_conv_has(c, "layer_types")) return DF_OK;

    const char *where = df_conv_cfg_path(c, "layer_types", buf, sizeof buf);
    const char **types = NULL;
    size_t n = 0;
    DF_TRY(df_conv_str_array(c, "layer_types", &types, &n));
    df_status st = DF_OK;
    if ((int64_t)n != hp->n_layer)
        st = df_fail(DF_ERR_MISMATCH, "%s: %s lists %zu layers but num_hidden_layers is %lld", c->path, where, n,
                     (long long)hp->n_layer);
    int64_t first_full = -1;
    for (size_t i = 0; st == DF_OK && i < n; i++) {
        bool full = !strcmp(types[i], "full_attention");
        if (!full && strcmp(types[i], "linear_attention"))
            st = df_fail(DF_ERR_UNSUPPORTED, "%s: %s[%zu] is '%s', expected 'linear_attention' or 'full_attention'",
                         c->path, where, i, types[i]);
        else if (full && first_full < 0) first_full = (int64_t)i;
    }
    if (st == DF_OK && !has_interval)
        /* No full layer at all is the degenerate pattern with an interval past the last layer. */
        hp->interval = first_full >= 0 ? first_full + 1 : hp->n_layer + 1;
    for (size_t i = 0; st == DF_OK && i < n; i++) {
        bool full = !strcmp(types[i], "full_attention");
        if (full == q35_is_full(hp, (int64_t)i)) continue;
        if (has_interval)
            st = df_fail(DF_ERR_MISMATCH,
                         "%s: layer %zu is %s in %s, but full_attention_interval %lld makes it %s; the GGUF "
                         "would describe another model",
                         c->path, i, types[i], where, (long long)hp->interval,
                         full ? "linear_attention" : "full_attention");
        else
            st = df_fail(DF_ERR_UNSUPPORTED,
                         "%s: %s is not 'every Nth layer is full_attention' (all that qwen35 GGUF metadata can "
                         "express): with the first full_attention layer at %lld (interval %lld), layer %zu should "
                         "be %s but is %s",
                         c->path, where, (long long)first_full, (long long)hp->interval, i,
                         full ? "linear_attention" : "full_attention", types[i]);
    }
    free(types);
    return st;
}

static df_status read_hparams(const df_conv_cfg *c, q35_hp *hp) {
    char buf[192];
    memset(hp, 0, sizeof *hp);
    DF_TRY(positive_int(c, "num_hidden_layers", &hp->n_layer));
    DF_TRY(positive_int(c, "hidden_size", &hp->n_embd));
    DF_TRY(positive_int(c, "intermediate_size", &hp->n_ff));
    DF_TRY(positive_int(c, "num_attention_heads", &hp->n_head));
    DF_TRY(positive_int(c, "num_key_value_heads", &hp->n_head_kv));
    if (df_conv_has(c, "head_dim")) DF_TRY(positive_int(c, "head_dim", &hp->head_dim));
    else hp->head_dim = hp->n_embd / hp->n_head;
    if (hp->head_dim <= 0)
        return df_fail(DF_ERR_FORMAT, "%s: no head_dim, and hidden_size / num_attention_heads is 0", c->path);
    if (hp->n_head % hp->n_head_kv)
        return df_fail(DF_ERR_FORMAT, "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                       c->path, (long long)hp->n_head, (long long)hp->n_head_kv);

    static const char *const eps_keys[] = {"rms_norm_eps", "norm_eps"};
    const char *eps_key = first_present(c, eps_keys, 2);
    if (!eps_key)
        return df_fail(DF_ERR_NOT_FOUND, "%s: %s: missing", c->path, df_conv_cfg_path(c, "rms_norm_eps", buf, sizeof buf));
    DF_TRY(df_conv_float(c, eps_key, &hp->eps));
    if (!(hp->eps > 0.0)) return df_fail(DF_ERR_FORMAT, "%s: %s is %g, expected > 0", c->path, eps_key, hp->eps);

    static const char *const ctx_keys[] = {"max_position_embeddings", "n_ctx", "n_positions",
                                           "max_length", "max_sequence_length", "model_max_length"};
    const char *ctx_key = first_present(c, ctx_keys, sizeof ctx_keys / sizeof ctx_keys[0]);
    hp->n_ctx = -1;
    if (ctx_key) DF_TRY(positive_int(c, ctx_key, &hp->n_ctx));

    DF_TRY(positive_int(c, "linear_conv_kernel_dim", &hp->conv_kernel));
    DF_TRY(positive_int(c, "linear_key_head_dim", &hp->d_k));
    DF_TRY(positive_int(c, "linear_num_key_heads", &hp->n_k));
    DF_TRY(positive_int(c, "linear_num_value_heads", &hp->n_v));
    DF_TRY(positive_int(c, "linear_value_head_dim", &hp->d_v));
    if (hp->n_v % hp->n_k)
        return df_fail(DF_ERR_FORMAT, "%s: linear_num_value_heads %lld is not a multiple of linear_num_key_heads %lld",
                       c->path, (long long)hp->n_v, (long long)hp->n_k);

    hp->n_vocab = -1;
    if (df_conv_has(c, "vocab_size")) DF_TRY(positive_int(c, "vocab_size", &hp->n_vocab));
    bool tied = false;
    {
        char path[192];
        DF_TRY(df_config_get_bool_or(c->cfg, df_conv_cfg_path(c, "tie_word_embeddings", path, sizeof path), false, &tied));
    }
    hp->tied = tied;
    DF_TRY(read_rope(c, hp));
    DF_TRY(read_layer_pattern(c, hp));
    return DF_OK;
}

/* ---- metadata ------------------------------------------------------------------------------ */

df_status df_q35_write_metadata(df_gguf_writer *w, const q35_hp *hp, const char *model_name, df_convert_type type) {
    df_status st = df_gguf_writer_add_str(w, "general.architecture", ARCH);
    if (st == DF_OK) st = df_gguf_writer_add_str(w, "general.name", model_name);
    if (st == DF_OK) st = df_gguf_writer_add_u32(w, "general.file_type", df_convert_file_type(type));
    if (st == DF_OK) st = df_gguf_writer_add_u32(w, "general.quantization_version", 2);
#define U32(key, v) \
    if (st == DF_OK) st = df_gguf_writer_add_u32(w, ARCH "." key, (uint32_t)(v))
    U32("block_count", hp->n_layer);
    if (hp->n_ctx > 0) U32("context_length", hp->n_ctx);
    U32("embedding_length", hp->n_embd);
    U32("feed_forward_length", hp->n_ff);
    U32("attention.head_count", hp->n_head);
    U32("attention.head_count_kv", hp->n_head_kv);
    /* llama.cpp writes these only when config.json has head_dim and otherwise defaults them to
     * n_embd / n_head at load; writing the value we used is the same model, stated outright. */
    U32("attention.key_length", hp->head_dim);
    U32("attention.value_length", hp->head_dim);
    if (st == DF_OK) st = df_gguf_writer_add_f32(w, ARCH ".attention.layer_norm_rms_epsilon", (float)hp->eps);
    if (st == DF_OK) st = df_gguf_writer_add_f32(w, ARCH ".rope.freq_base", (float)hp->rope_theta);
    if (st == DF_OK)
        st = df_gguf_writer_add_arr(w, ARCH ".rope.dimension_sections", DF_GGUF_I32, hp->sections, 4);
    U32("rope.dimension_count", hp->rot_dim);
    U32("ssm.conv_kernel", hp->conv_kernel);
    U32("ssm.state_size", hp->d_k);
    U32("ssm.group_count", hp->n_k);
    U32("ssm.time_step_rank", hp->n_v);
    U32("ssm.inner_size", hp->d_v * hp->n_v);
    U32("full_attention_interval", hp->interval);
#undef U32
    return st;
}

/* ---- the tensor plan ----------------------------------------------------------------------- */

typedef struct q35_builder {
    const df_ckpt *ck;
    bool *used;          /* per checkpoint entry */
    const char *prefix;  /* "model." or "model.language_model." */
    df_conv_plan *plan;
} q35_builder;

static ptrdiff_t ckpt_index(const df_ckpt *ck, const char *name) {
    size_t lo = 0, hi = ck->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ck->entries[mid].tensor->name, name);
        if (c == 0) return (ptrdiff_t)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static void shape_str(char *buf, size_t cap, int n, const int64_t *d) {
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && at < cap; i++) at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

static df_status plan_one(void *ctx, int layer, const char *gguf_name, const q35_spec *s) {
    q35_builder *b = ctx;
    char hf[256];
    if (s->absolute) snprintf(hf, sizeof hf, "%s", s->hf);
    else if (layer >= 0) snprintf(hf, sizeof hf, "%slayers.%d.%s", b->prefix, layer, s->hf);
    else snprintf(hf, sizeof hf, "%s%s", b->prefix, s->hf);
    ptrdiff_t idx = ckpt_index(b->ck, hf);
    if (idx < 0)
        return df_fail(DF_ERR_NOT_FOUND, "%s: the checkpoint has no tensor '%s' (needed for %s)", b->ck->dir, hf,
                       gguf_name);
    const df_st_tensor *src = b->ck->entries[idx].tensor;
    if (!df_conv_src_dtype_ok(src->dtype))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; dflash converts F32, F16 and BF16 weights",
                       df_ckpt_shard_path(b->ck, (size_t)idx), hf, src->dtype_name);

    /* The source shape, with conv1d's middle 1 squeezed, must be the one the config implies. */
    int n = src->n_dims;
    int64_t shape[DF_ST_MAX_DIMS];
    memcpy(shape, src->shape, sizeof shape);
    int want_n = s->n;
    int64_t want[3] = {s->shape[0], s->shape[1], s->shape[2]};
    if (s->squeeze_mid) {
        if (n == 3 && shape[1] == 1) {
            shape[1] = shape[2];
            n = 2;
        }
        want[1] = want[2];
        want_n = 2;
    }
    bool same = n == want_n;
    for (int i = 0; same && i < n; i++) same = shape[i] == want[i];
    if (!same) {
        char got_s[96], want_s[96];
        shape_str(got_s, sizeof got_s, src->n_dims, src->shape);
        shape_str(want_s, sizeof want_s, s->n, s->shape);
        return df_fail(DF_ERR_MISMATCH, "%s: tensor '%s' has shape %s, but config.json implies %s", b->ck->dir, hf,
                       got_s, want_s);
    }

    df_conv_tensor t = {.src = src, .n_dims = n, .op = s->op, .rows = s->rows, .cols = s->cols, .layer = layer};
    snprintf(t.name, sizeof t.name, "%s", gguf_name);
    for (int d = 0; d < DF_GGUF_MAX_DIMS; d++) t.ne[d] = d < n ? shape[n - 1 - d] : 1;
    DF_TRY(df_conv_perm_check(&t.rows, df_conv_tensor_rows(&t), gguf_name));
    DF_TRY(df_conv_perm_check(&t.cols, t.ne[0], gguf_name));
    DF_TRY(df_conv_plan_add(b->plan, &t));
    b->used[idx] = true;
    return DF_OK;
}

#define SPEC(...) (&(q35_spec){__VA_ARGS__})

static df_status each_layer_tensor(const q35_hp *hp, int il, df_q35_tensor_fn fn, void *ctx) {
    const int64_t H = hp->n_embd, F = hp->n_ff;
    char g[DF_GGUF_MAX_NAME];
#define ADD(gguf_suffix, spec)                                           \
    do {                                                                 \
        snprintf(g, sizeof g, "blk.%d." gguf_suffix, il);                \
        DF_TRY(fn(ctx, il, g, spec));                                    \
    } while (0)

    ADD("attn_norm.weight", SPEC(.hf = "input_layernorm.weight", .n = 1, .shape = {H}, .op = DF_CONV_OP_PLUS_ONE));
    if (q35_is_full(hp, il)) {
        const int64_t D = hp->head_dim, q_rows = 2 * hp->n_head * D, kv_rows = hp->n_head_kv * D;
        /* q_proj keeps query and gate interleaved per head, exactly as HF lays them out. */
        ADD("attn_q.weight", SPEC(.hf = "self_attn.q_proj.weight", .n = 2, .shape = {q_rows, H}));
        ADD("attn_k.weight", SPEC(.hf = "self_attn.k_proj.weight", .n = 2, .shape = {kv_rows, H}));
        ADD("attn_v.weight", SPEC(.hf = "self_attn.v_proj.weight", .n = 2, .shape = {kv_rows, H}));
        ADD("attn_output.weight", SPEC(.hf = "self_attn.o_proj.weight", .n = 2, .shape = {H, hp->n_head * D}));
        ADD("attn_q_norm.weight", SPEC(.hf = "self_attn.q_norm.weight", .n = 1, .shape = {D}, .op = DF_CONV_OP_PLUS_ONE));
        ADD("attn_k_norm.weight", SPEC(.hf = "self_attn.k_norm.weight", .n = 1, .shape = {D}, .op = DF_CONV_OP_PLUS_ONE));
    } else {
        const int64_t Kd = hp->n_k * hp->d_k, Vd = hp->n_v * hp->d_v, C = 2 * Kd + Vd;
        /* The value-head reorder (nothing to do with as many value heads as key heads). */
        const int64_t nk = hp->n_v != hp->n_k ? hp->n_k : 0, R = hp->n_v / hp->n_k;
        const df_conv_perm v_rows = {.start = 2 * Kd, .nk = nk, .r = R, .hd = hp->d_v}; /* V part of q|k|v */
        const df_conv_perm heads_dv = {.start = 0, .nk = nk, .r = R, .hd = hp->d_v};
        const df_conv_perm heads_1 = {.start = 0, .nk = nk, .r = R, .hd = 1};
        ADD("attn_qkv.weight", SPEC(.hf = "linear_attn.in_proj_qkv.weight", .n = 2, .shape = {C, H}, .rows = v_rows));
        ADD("attn_gate.weight", SPEC(.hf = "linear_attn.in_proj_z.weight", .n = 2, .shape = {Vd, H}, .rows = heads_dv));
        ADD("ssm_beta.weight", SPEC(.hf = "linear_attn.in_proj_b.weight", .n = 2, .shape = {hp->n_v, H}, .rows = heads_1));
        ADD("ssm_alpha.weight", SPEC(.hf = "linear_attn.in_proj_a.weight", .n = 2, .shape = {hp->n_v, H}, .rows = heads_1));
        ADD("ssm_a", SPEC(.hf = "linear_attn.A_log", .n = 1, .shape = {hp->n_v}, .op = DF_CONV_OP_NEG_EXP, .cols = heads_1));
        ADD("ssm_dt.bias", SPEC(.hf = "linear_attn.dt_bias", .n = 1, .shape = {hp->n_v}, .cols = heads_1));
        ADD("ssm_conv1d.weight", SPEC(.hf = "linear_attn.conv1d.weight", .n = 3, .shape = {C, 1, hp->conv_kernel},
                                      .squeeze_mid = true, .rows = v_rows));
        /* The gated norm multiplies by plain w: no +1. */
        ADD("ssm_norm.weight", SPEC(.hf = "linear_attn.norm.weight", .n = 1, .shape = {hp->d_v}));
        ADD("ssm_out.weight", SPEC(.hf = "linear_attn.out_proj.weight", .n = 2, .shape = {H, Vd}, .cols = heads_dv));
    }
    ADD("post_attention_norm.weight",
        SPEC(.hf = "post_attention_layernorm.weight", .n = 1, .shape = {H}, .op = DF_CONV_OP_PLUS_ONE));
    ADD("ffn_gate.weight", SPEC(.hf = "mlp.gate_proj.weight", .n = 2, .shape = {F, H}));
    ADD("ffn_up.weight", SPEC(.hf = "mlp.up_proj.weight", .n = 2, .shape = {F, H}));
    ADD("ffn_down.weight", SPEC(.hf = "mlp.down_proj.weight", .n = 2, .shape = {H, F}));
#undef ADD
    return DF_OK;
}

void df_q35_spec_ne(const df_q35_spec *s, int *n_dims, int64_t ne[DF_GGUF_MAX_DIMS]) {
    int64_t shape[3] = {s->shape[0], s->shape[1], s->shape[2]};
    int n = s->n;
    if (s->squeeze_mid) { /* [C, 1, K] -> [C, K] */
        shape[1] = shape[2];
        n = 2;
    }
    for (int d = 0; d < DF_GGUF_MAX_DIMS; d++) ne[d] = d < n ? shape[n - 1 - d] : 1;
    *n_dims = n;
}

df_status df_q35_each_tensor(const df_q35_hparams *hp, bool with_output, df_q35_tensor_fn fn, void *ctx) {
    DF_TRY(fn(ctx, -1, "token_embd.weight", SPEC(.hf = "embed_tokens.weight", .n = 2, .shape = {hp->n_vocab, hp->n_embd})));
    for (int il = 0; il < (int)hp->n_layer; il++) DF_TRY(each_layer_tensor(hp, il, fn, ctx));
    DF_TRY(fn(ctx, -1, "output_norm.weight",
              SPEC(.hf = "norm.weight", .n = 1, .shape = {hp->n_embd}, .op = DF_CONV_OP_PLUS_ONE)));
    if (with_output)
        DF_TRY(fn(ctx, -1, "output.weight",
                  SPEC(.hf = "lm_head.weight", .absolute = true, .n = 2, .shape = {hp->n_vocab, hp->n_embd})));
    return DF_OK;
}

static bool starts_with(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

static df_status build_plan(q35_builder *b, q35_hp *hp, FILE *log) {
    const df_ckpt *ck = b->ck;
    /* A ConditionalGeneration checkpoint keeps the text model under model.language_model. */
    b->prefix = ckpt_index(ck, "model.language_model.embed_tokens.weight") >= 0 ? "model.language_model." : "model.";

    char name[160];
    snprintf(name, sizeof name, "%sembed_tokens.weight", b->prefix);
    ptrdiff_t emb = ckpt_index(ck, name);
    if (emb < 0) return df_fail(DF_ERR_NOT_FOUND, "%s: the checkpoint has no tensor '%s' (needed for token_embd.weight)", ck->dir, name);
    const df_st_tensor *e = ck->entries[emb].tensor;
    if (hp->n_vocab < 0) {
        /* No vocab_size in config.json: the embedding says it. */
        if (e->n_dims != 2 || e->shape[0] <= 0 || e->shape[0] > INT32_MAX)
            return df_fail(DF_ERR_MISMATCH, "%s: '%s' is not a [vocab, hidden] matrix", ck->dir, name);
        hp->n_vocab = e->shape[0];
    }

    /* Like llama.cpp: output.weight exactly when the checkpoint has lm_head.weight; without it
     * the runtime uses token_embd. */
    const bool has_lm_head = ckpt_index(ck, "lm_head.weight") >= 0;
    DF_TRY(df_q35_each_tensor(hp, has_lm_head, plan_one, b));
    if (!has_lm_head && !hp->tied) {
        return df_fail(DF_ERR_NOT_FOUND,
                       "%s: the checkpoint has no tensor 'lm_head.weight', and config.json does not tie the word "
                       "embeddings (tie_word_embeddings is false)",
                       ck->dir);
    }
    b->plan->n_layer = (int)hp->n_layer;

    /* Everything else must be a part we leave out on purpose. */
    size_t n_visual = 0, n_mtp = 0;
    for (size_t i = 0; i < ck->n_tensors; i++) {
        if (b->used[i]) continue;
        const char *nm = ck->entries[i].tensor->name;
        if (starts_with(nm, "model.visual.")) n_visual++;
        else if (starts_with(nm, "mtp.")) n_mtp++;
        else if (ends_with(nm, ".rotary_emb.inv_freq")) continue; /* a buffer old checkpoints saved */
        else
            return df_fail(DF_ERR_FORMAT,
                           "%s: unexpected tensor '%s' (in %s): not part of a qwen35 text model with %lld layers "
                           "as config.json describes it",
                           ck->dir, nm, df_ckpt_shard_path(ck, i), (long long)hp->n_layer);
    }
    if (n_visual)
        df_conv_note(log, "skipped %zu vision tensors (model.visual.*): the GGUF holds the text model only", n_visual);
    if (n_mtp)
        df_conv_note(log, "dropped %zu multi-token-prediction tensors (mtp.*), as llama.cpp's converter does", n_mtp);
    return DF_OK;
}

/* ---- the conversion ------------------------------------------------------------------------ */

static df_status check_architecture(const df_conv_cfg *c) {
    const char **archs = NULL;
    size_t n = 0;
    DF_TRY(df_conv_architectures(c, &archs, &n));
    bool ok = false;
    for (size_t i = 0; i < n && !ok; i++)
        ok = !strcmp(archs[i], "Qwen3_5ForCausalLM") || !strcmp(archs[i], "Qwen3_5ForConditionalGeneration");
    df_status st = ok ? DF_OK
                      : df_fail(DF_ERR_UNSUPPORTED,
                                "%s: architecture '%s' is not a Qwen3.5 model (expected Qwen3_5ForCausalLM or "
                                "Qwen3_5ForConditionalGeneration)",
                                c->path, archs[0]);
    free(archs);
    return st;
}

df_status df_convert_qwen35(const char *hf_dir, const char *out_path, const df_convert_opts *opts) {
    df_convert_opts defaults;
    if (!opts) {
        df_convert_opts_init(&defaults);
        opts = &defaults;
    }
    if (!hf_dir || !out_path) return df_fail(DF_ERR_INVALID, "convert: no input directory or output path");
    FILE *log = opts->log ? opts->log : stderr;

    df_conv_cfg c;
    df_ckpt *ck = NULL;
    df_conv_plan plan = {0};
    df_gguf_writer *w = NULL;
    bool *used = NULL;
    char *model_name = NULL, *real = NULL;
    q35_hp hp;

    DF_TRY(df_conv_cfg_open(hf_dir, &c));
    df_status st = check_architecture(&c);
    if (st == DF_OK) st = read_hparams(&c, &hp);
    if (st == DF_OK) st = df_ckpt_open(hf_dir, &ck);
    if (st != DF_OK) goto done;
    used = calloc(ck->n_tensors ? ck->n_tensors : 1, sizeof *used);
    if (!used) {
        st = df_fail(DF_ERR_NOMEM, "convert: out of memory");
        goto done;
    }
    q35_builder b = {.ck = ck, .used = used, .plan = &plan};
    st = build_plan(&b, &hp, log);
    if (st == DF_OK) st = df_conv_assign_types(&plan, opts->type, log);
    if (st != DF_OK) goto done;

    real = realpath(hf_dir, NULL);
    model_name = df_conv_model_name(real ? real : hf_dir);
    if (!model_name) {
        st = df_fail(DF_ERR_NOMEM, "convert: out of memory");
        goto done;
    }
    st = df_gguf_writer_create(out_path, &w);
    if (st == DF_OK) st = df_q35_write_metadata(w, &hp, model_name, opts->type);
    if (st == DF_OK) st = df_conv_add_tokenizer(&c, hp.n_vocab, w, log);
    if (st == DF_OK) st = df_conv_declare_tensors(&plan, w);
    if (st == DF_OK) st = df_gguf_writer_write_header(w);
    if (st == DF_OK) st = df_conv_write_tensors(&plan, w, opts);
    if (st == DF_OK) st = df_gguf_writer_finish(w);

done:
    df_gguf_writer_free(w);
    df_conv_plan_free(&plan);
    free(used);
    free(model_name);
    free(real);
    df_ckpt_close(ck);
    df_conv_cfg_close(&c);
    return st;
}
