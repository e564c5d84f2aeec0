/* DFlash drafters (z-lab DFlashDraftModel checkpoints: config.json + safetensors) -> the
 * lucebox "qwen35-dflash-draft" GGUF, following docs/DFLASH_DRAFTER.md §3 and its converter
 * plan, so that df_dflash_draft_load_gguf on the file gives the drafter that
 * df_dflash_draft_load_dir gives on the directory.
 *
 * The hyperparameters are read by the drafter's own config reader
 * (df_dflash_read_hparams_config), so the converter and the directory loader cannot disagree
 * on a default or on where a field lives; rope_theta in particular comes from
 * rope_parameters.rope_theta, then the top-level rope_theta, and is never defaulted (seed 004:
 * Qwen3.6 drafters publish 1e7 nested; a converter that missed it baked 1e6 and drafting
 * quietly collapsed). On top of that the converter refuses what the GGUF cannot carry:
 * in-block causality that differs from "sliding layers are causal, full ones not" (no key
 * says it), and values too large for the u32 keys.
 *
 * Weights: PyTorch [out, in] matrices become GGUF [ne0 = in, ne1 = out] with the same bytes
 * order (no transpose of data); norms are plain Qwen3 RMSNorm weights (x * w) and are written
 * unchanged as f32, never with the +1 of the Qwen3.5 target's zero-centred norms. Matrices take
 * --type; q4_k_m is Q4_K for every matrix, as lucebox's convert_modal_dflash_to_gguf.py
 * writes it (no Q6_K mix), with our row-length fallback (Q4_K -> Q5_0 -> F16) where lucebox
 * would stop. Writing reuses the target converter's streaming writer (convert_stream.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert_internal.h"
#include "model/dflash_draft.h"

#define ARCH DF_DFLASH_ARCH

/* ---- what the GGUF can say ----------------------------------------------------------------- */

static df_status check_expressible(const df_conv_cfg *c, const df_dflash_hparams *hp) {
    /* The GGUF reader makes sliding layers causal and full layers not; an explicit is_causal
     * that says otherwise for any layer would be lost. */
    for (int64_t l = 0; l < hp->n_layer; l++)
        if (hp->causal[l] != hp->sliding[l])
            return df_fail(DF_ERR_UNSUPPORTED,
                           "%s: is_causal makes %s layer %lld %scausal inside the block, which a " ARCH
                           " GGUF cannot express (it has no key for causality: sliding layers are causal, "
                           "full ones are not)",
                           c->path, hp->sliding[l] ? "sliding" : "full", (long long)l,
                           hp->causal[l] ? "" : "non-");
    if (hp->n_ctx_train > (int64_t)UINT32_MAX)
        return df_fail(DF_ERR_FORMAT, "%s: max_position_embeddings %lld does not fit " ARCH ".context_length (u32)",
                       c->path, (long long)hp->n_ctx_train);
    if (hp->n_vocab > (int64_t)UINT32_MAX)
        return df_fail(DF_ERR_FORMAT, "%s: vocab_size %lld does not fit " ARCH ".vocab_size (u32)", c->path,
                       (long long)hp->n_vocab);
    /* The GGUF keeps the capture ids but not the target depth: check the ids against the depth
     * now, while it is known. */
    if (hp->target_n_layer > 0)
        for (int i = 0; i < hp->n_layer_ids; i++)
            if (hp->layer_ids[i] >= hp->target_n_layer)
                return df_fail(DF_ERR_FORMAT, "%s: target layer id %d is beyond num_target_layers %lld", c->path,
                               hp->layer_ids[i], (long long)hp->target_n_layer);
    return DF_OK;
}

/* ---- metadata ------------------------------------------------------------------------------- */

static df_status write_metadata(df_gguf_writer *w, const df_dflash_hparams *hp, const char *model_name,
                                df_convert_type type) {
    df_status st = df_gguf_writer_add_str(w, "general.architecture", ARCH);
    if (st == DF_OK) st = df_gguf_writer_add_str(w, "general.name", model_name);
    if (st == DF_OK) st = df_gguf_writer_add_u32(w, "general.file_type", df_convert_file_type(type));
    if (st == DF_OK) st = df_gguf_writer_add_u32(w, "general.quantization_version", 2);
#define U32(key, v) \
    if (st == DF_OK) st = df_gguf_writer_add_u32(w, ARCH "." key, (uint32_t)(v))
    if (hp->n_ctx_train > 0) U32("context_length", hp->n_ctx_train);
    U32("embedding_length", hp->n_embd);
    U32("block_count", hp->n_layer);
    U32("feed_forward_length", hp->n_ff);
    U32("attention.head_count", hp->n_head);
    U32("attention.head_count_kv", hp->n_head_kv);
    /* Always written: in drafters n_head * head_dim is not the hidden size, so the reader's
     * n_embd / n_head fallback would be wrong. */
    U32("attention.key_length", hp->head_dim);
    U32("attention.value_length", hp->head_dim);
    if (hp->n_vocab > 0) U32("vocab_size", hp->n_vocab);
    if (st == DF_OK) st = df_gguf_writer_add_f32(w, ARCH ".attention.layer_norm_rms_epsilon", hp->rms_eps);
    if (st == DF_OK) st = df_gguf_writer_add_f32(w, ARCH ".rope.freq_base", hp->rope_theta);
    /* n_target_layers is the CAPTURE count (fc's width / hidden), as lucebox's reader takes it. */
    U32("dflash.n_target_layers", hp->n_capture);
    U32("dflash.block_size", hp->block_size);
    U32("dflash.mask_token_id", hp->mask_token_id);
    /* Always the explicit list: the file has no key for the target depth that the older
     * default (build_target_layer_ids) depends on, so it was resolved from num_target_layers. */
    if (st == DF_OK)
        st = df_gguf_writer_add_arr(w, ARCH ".dflash.target_layer_ids", DF_GGUF_I32, hp->layer_ids,
                                    (size_t)hp->n_layer_ids);
    bool any_sliding = false;
    for (int64_t l = 0; l < hp->n_layer; l++) any_sliding |= hp->sliding[l];
    if (any_sliding) {
        U32("attention.sliding_window", hp->sliding_window);
        if (st == DF_OK)
            st = df_gguf_writer_add_arr(w, ARCH ".attention.sliding_window_pattern", DF_GGUF_BOOL, hp->sliding,
                                        (size_t)hp->n_layer);
    }
#undef U32
    return st;
}

/* ---- the tensor plan ------------------------------------------------------------------------ */

typedef struct draft_builder {
    const df_ckpt *ck;
    const df_dflash_hparams *hp;
    df_conv_plan *plan;
} draft_builder;

static void shape_str(char *buf, size_t cap, const df_st_tensor *t) {
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->n_dims && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

/* One GGUF tensor from checkpoint tensor hf: a vector of ne0 (ne1 == 0) or a PyTorch
 * [ne1][ne0] matrix. `why` explains the expected shape when it does not match. */
static df_status plan_tensor(draft_builder *b, const char *gguf_name, const char *hf, int layer, int64_t ne0,
                             int64_t ne1, const char *why) {
    const df_st_tensor *src = df_ckpt_find(b->ck, hf);
    if (!src)
        return df_fail(DF_ERR_NOT_FOUND, "%s: the checkpoint has no tensor '%s' (needed for %s)", b->ck->dir, hf,
                       gguf_name);
    if (!df_conv_src_dtype_ok(src->dtype))
        return df_fail(DF_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; dflash converts F32, F16 and BF16 weights",
                       b->ck->dir, hf, src->dtype_name);
    const bool vec = ne1 == 0;
    const bool ok = vec ? src->n_dims == 1 && src->shape[0] == ne0
                        : src->n_dims == 2 && src->shape[0] == ne1 && src->shape[1] == ne0;
    if (!ok) {
        char got[96];
        shape_str(got, sizeof got, src);
        if (vec)
            return df_fail(DF_ERR_MISMATCH, "%s: tensor '%s' has shape %s, but config.json implies [%lld]%s%s",
                           b->ck->dir, hf, got, (long long)ne0, why ? ": " : "", why ? why : "");
        return df_fail(DF_ERR_MISMATCH, "%s: tensor '%s' has shape %s, but config.json implies [%lld, %lld]%s%s",
                       b->ck->dir, hf, got, (long long)ne1, (long long)ne0, why ? ": " : "", why ? why : "");
    }
    df_conv_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", gguf_name);
    t.src = src;
    t.n_dims = vec ? 1 : 2;
    t.ne[0] = ne0;
    t.ne[1] = vec ? 1 : ne1;
    t.ne[2] = t.ne[3] = 1;
    t.op = DF_CONV_OP_NONE; /* plain Qwen3 norms: stored as they are */
    t.layer = layer;
    return df_conv_plan_add(b->plan, &t);
}

/* In lucebox's order: the dflash.* singletons, output_norm, then each block with its tensors
 * sorted by GGUF name. */
static df_status build_plan(draft_builder *b) {
    const df_dflash_hparams *hp = b->hp;
    const int64_t E = hp->n_embd, D = hp->head_dim, F = hp->n_ff;
    const int64_t qd = hp->n_head * D, kvd = hp->n_head_kv * D;
    char why[200];
    snprintf(why, sizeof why, "%lld target layers (target_layer_ids) of hidden_size %lld feed fc",
             (long long)hp->n_capture, (long long)E);
    DF_TRY(plan_tensor(b, "dflash.fc.weight", "fc.weight", -1, hp->n_capture * E, E, why));
    DF_TRY(plan_tensor(b, "dflash.hidden_norm.weight", "hidden_norm.weight", -1, E, 0, NULL));
    DF_TRY(plan_tensor(b, "output_norm.weight", "norm.weight", -1, E, 0, NULL));
    static const struct {
        const char *gguf, *hf;
        char ne0, ne1; /* E, D, F, Q (n_head * head_dim), K (n_head_kv * head_dim), 0 */
    } per_layer[] = {
        {"attn_k.weight", "self_attn.k_proj.weight", 'E', 'K'},
        {"attn_k_norm.weight", "self_attn.k_norm.weight", 'D', 0},
        {"attn_norm.weight", "input_layernorm.weight", 'E', 0},
        {"attn_output.weight", "self_attn.o_proj.weight", 'Q', 'E'},
        {"attn_q.weight", "self_attn.q_proj.weight", 'E', 'Q'},
        {"attn_q_norm.weight", "self_attn.q_norm.weight", 'D', 0},
        {"attn_v.weight", "self_attn.v_proj.weight", 'E', 'K'},
        {"ffn_down.weight", "mlp.down_proj.weight", 'F', 'E'},
        {"ffn_gate.weight", "mlp.gate_proj.weight", 'E', 'F'},
        {"ffn_norm.weight", "post_attention_layernorm.weight", 'E', 0},
        {"ffn_up.weight", "mlp.up_proj.weight", 'E', 'F'},
    };
    for (int64_t l = 0; l < hp->n_layer; l++) {
        for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++) {
            int64_t ne[2];
            const char dims[2] = {per_layer[i].ne0, per_layer[i].ne1};
            for (int k = 0; k < 2; k++)
                ne[k] = dims[k] == 'E' ? E : dims[k] == 'D' ? D : dims[k] == 'F' ? F : dims[k] == 'Q' ? qd
                      : dims[k] == 'K' ? kvd : 0;
            char g[DF_GGUF_MAX_NAME], h[160];
            snprintf(g, sizeof g, "blk.%lld.%s", (long long)l, per_layer[i].gguf);
            snprintf(h, sizeof h, "layers.%lld.%s", (long long)l, per_layer[i].hf);
            DF_TRY(plan_tensor(b, g, h, (int)l, ne[0], ne[1], NULL));
        }
    }
    b->plan->n_layer = (int)hp->n_layer;

    /* Anything else would be dropped silently: refuse it, as df_dflash_draft_load_dir does. */
    for (size_t i = 0; i < df_ckpt_count(b->ck); i++) {
        const df_st_tensor *t = df_ckpt_tensor(b->ck, i);
        bool used = false;
        for (size_t k = 0; k < b->plan->n && !used; k++) used = b->plan->t[k].src == t;
        if (!used)
            return df_fail(DF_ERR_FORMAT, "%s: unexpected tensor '%s' (in %s) for a DFlashDraftModel of %lld layers",
                           b->ck->dir, t->name, df_ckpt_shard_path(b->ck, i), (long long)hp->n_layer);
    }
    return DF_OK;
}

/* ---- types ------------------------------------------------------------------------------------ */

/* f32 / f16 / bf16 / q8_0: the target converter's recipe (1-D tensors f32, matrices the choice,
 * q8_0 rows that are not whole blocks f16). q4_k_m: every matrix Q4_K, as lucebox writes its
 * drafters, falling back by row length; llama-quantize's Q6_K mix is for targets. */
static df_status assign_types(df_conv_plan *p, df_convert_type choice, FILE *log) {
    if (choice != DF_CONVERT_Q4_K_M) return df_conv_assign_types(p, choice, log);
    size_t n_fell = 0;
    df_type fell_to = DF_TYPE_F32;
    const char *first = NULL;
    for (size_t i = 0; i < p->n; i++) {
        df_conv_tensor *t = &p->t[i];
        t->wanted = t->n_dims < 2 ? DF_TYPE_F32 : DF_TYPE_Q4_K;
        t->type = df_recipe_fallback(t->wanted, t->ne[0]);
        if (t->type != t->wanted) {
            if (!first) first = t->name, fell_to = t->type;
            n_fell++;
        }
    }
    if (n_fell)
        df_conv_note(log, "%zu matri%s fell back from q4_K (rows not a multiple of 256), e.g. %s -> %s", n_fell,
                     n_fell == 1 ? "x" : "ces", first, df_type_name(fell_to));
    return DF_OK;
}

/* ---- the conversion ------------------------------------------------------------------------- */

df_status df_convert_dflash(const char *hf_dir, const char *out_path, const df_convert_opts *opts) {
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
    char *model_name = NULL, *real = NULL;
    df_dflash_hparams hp;

    DF_TRY(df_conv_cfg_open(hf_dir, &c));
    /* The drafter's own reader: the same hyperparameters as loading the directory. */
    df_status st = df_dflash_read_hparams_config(c.cfg, &hp);
    if (st == DF_OK) st = check_expressible(&c, &hp);
    if (st == DF_OK) st = df_ckpt_open(hf_dir, &ck);
    if (st != DF_OK) goto done;
    draft_builder b = {.ck = ck, .hp = &hp, .plan = &plan};
    st = build_plan(&b);
    if (st == DF_OK) st = assign_types(&plan, opts->type, log);
    if (st != DF_OK) goto done;

    {
        /* Say where theta came from: a wrong base is silent at run time (seed 004). */
        const char *theta_key =
            df_config_has(c.cfg, "rope_parameters.rope_theta") ? "rope_parameters.rope_theta" : "rope_theta";
        char ids[256] = "";
        for (int i = 0; i < hp.n_layer_ids; i++)
            snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", i ? ", " : "", hp.layer_ids[i]);
        df_conv_note(log, "DFlash drafter: %lld layers, capture layers [%s], block %lld, mask token %d, rope_theta %g "
                          "(%s)", (long long)hp.n_layer, ids, (long long)hp.block_size, hp.mask_token_id,
                     (double)hp.rope_theta, theta_key);
    }

    real = realpath(hf_dir, NULL);
    model_name = df_conv_model_name(real ? real : hf_dir);
    if (!model_name) {
        st = df_fail(DF_ERR_NOMEM, "convert: out of memory");
        goto done;
    }
    st = df_gguf_writer_create(out_path, &w);
    if (st == DF_OK) st = write_metadata(w, &hp, model_name, opts->type);
    if (st == DF_OK) st = df_conv_declare_tensors(&plan, w);
    if (st == DF_OK) st = df_gguf_writer_write_header(w);
    if (st == DF_OK) st = df_conv_write_tensors(&plan, w, opts);
    if (st == DF_OK) st = df_gguf_writer_finish(w);

done:
    df_gguf_writer_free(w);
    df_conv_plan_free(&plan);
    free(model_name);
    free(real);
    df_ckpt_close(ck);
    df_conv_cfg_close(&c);
    return st;
}
