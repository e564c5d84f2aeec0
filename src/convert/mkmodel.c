/* dflash mkmodel: a qwen35 GGUF with random weights, built from the converter's own pieces.
 *
 * The converter's qwen35 code lists the tensors of a model from its hyperparameters
 * (df_q35_each_tensor) and writes the metadata (df_q35_write_metadata); its recipe assigns
 * each tensor's type (df_conv_assign_types). The one thing that differs is where a row comes
 * from: here it is drawn at random, and mkmodel_rows.c streams the rows to the file as the
 * converter's writer does (large tensors copy rows from a pool quantized once, small ones get
 * rows of their own), so the bytes depend on the seed only.
 *
 * A row is drawn as the Hugging Face tensor would hold it and then goes through the same
 * transform the converter applies (+1 for the zero-centred norms, -exp for A_log). Scales are
 * chosen so that a forward pass stays finite and the logits spread out, not to mimic any
 * trained model:
 *   - matrices: N(0, 1/fan_in), fan_in = the row length (GGUF ne[0]); the three that write
 *     into the residual stream (attn_output, ssm_out, ffn_down) get another 1/sqrt(2 n_layer)
 *     so that the residual grows slowly with depth (GPT-2's scaled init);
 *   - token_embd / output: N(0, 1/n_embd), so tied logits of a normalized state are O(1);
 *   - norms: 1 + N(0, 0.02^2) as stored (zero-centred ones drawn as N(0, 0.02^2), then +1);
 *   - ssm_a = -A with A ~ U(1, 16) (transformers draws A_log = log U(0, 16));
 *   - ssm_dt.bias = softplus^-1(dt) with log dt ~ U(log 1e-3, log 1e-1) (transformers' init);
 *   - ssm_conv1d: N(0, 1/K), K the kernel width (its fan-in per channel). */
#include "convert/mkmodel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert/mkmodel_internal.h"

void df_mkmodel_opts_init(df_mkmodel_opts *o) {
    memset(o, 0, sizeof *o);
    o->type = DF_CONVERT_F32;
}

static void to_hparams(const df_mkmodel_config *c, df_q35_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    hp->n_layer = c->num_hidden_layers;
    hp->n_embd = c->hidden_size;
    hp->n_ff = c->intermediate_size;
    hp->n_head = c->num_attention_heads;
    hp->n_head_kv = c->num_key_value_heads;
    hp->head_dim = c->head_dim;
    hp->n_vocab = c->vocab_size;
    hp->n_ctx = c->max_position_embeddings;
    hp->eps = c->rms_norm_eps;
    hp->rope_theta = c->rope_theta;
    hp->rotary_factor = c->partial_rotary_factor;
    hp->rot_dim = df_q35_rot_dim(c->head_dim, c->partial_rotary_factor);
    /* What the converter writes when config.json has no mrope_section; also the published value. */
    hp->sections[0] = 11;
    hp->sections[1] = 11;
    hp->sections[2] = 10;
    hp->sections[3] = 0;
    hp->conv_kernel = c->linear_conv_kernel_dim;
    hp->d_k = c->linear_key_head_dim;
    hp->n_k = c->linear_num_key_heads;
    hp->n_v = c->linear_num_value_heads;
    hp->d_v = c->linear_value_head_dim;
    hp->interval = c->full_attention_interval;
    hp->tied = c->tie_word_embeddings;
}

/* ---- the plan: the converter's tensor list, with an initializer per tensor -------------------- */

typedef struct mk_plan {
    df_conv_plan plan;
    mk_init *init; /* parallel to plan.t */
    size_t init_cap;
    const df_q35_hparams *hp;
} mk_plan;

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

static mk_init pick_init(const df_q35_hparams *hp, const df_q35_spec *s, const int64_t *ne) {
    if (ends_with(s->hf, "A_log")) return (mk_init){MK_INIT_A_LOG, 0};
    if (ends_with(s->hf, "dt_bias")) return (mk_init){MK_INIT_DT_BIAS, 0};
    if (ends_with(s->hf, "norm.weight"))
        return (mk_init){s->op == DF_CONV_OP_PLUS_ONE ? MK_INIT_NORM_ZERO : MK_INIT_NORM_ONE, 0.02f};
    if (ends_with(s->hf, "conv1d.weight")) return (mk_init){MK_INIT_NORMAL, (float)(1.0 / sqrt((double)ne[0]))};
    if (!strcmp(s->hf, "embed_tokens.weight") || !strcmp(s->hf, "lm_head.weight"))
        return (mk_init){MK_INIT_NORMAL, (float)(1.0 / sqrt((double)hp->n_embd))};
    double scale = 1.0 / sqrt((double)ne[0]);
    if (ends_with(s->hf, "o_proj.weight") || ends_with(s->hf, "out_proj.weight") || ends_with(s->hf, "down_proj.weight"))
        scale /= sqrt(2.0 * (double)hp->n_layer);
    return (mk_init){MK_INIT_NORMAL, (float)scale};
}

static df_status plan_tensor(void *ctx, int layer, const char *gguf_name, const df_q35_spec *s) {
    mk_plan *mp = ctx;
    df_conv_tensor t = {.src = NULL, .op = s->op, .layer = layer};
    snprintf(t.name, sizeof t.name, "%s", gguf_name);
    df_q35_spec_ne(s, &t.n_dims, t.ne);
    /* No value-head reorder: the rows are random, and drawing them in GGUF order is the same
     * distribution. */
    if (mp->plan.n == mp->init_cap) {
        size_t cap = mp->init_cap ? mp->init_cap * 2 : 64;
        mk_init *ni = realloc(mp->init, cap * sizeof *ni);
        if (!ni) return df_fail(DF_ERR_NOMEM, "mkmodel: out of memory for the tensor plan");
        mp->init = ni;
        mp->init_cap = cap;
    }
    mp->init[mp->plan.n] = pick_init(mp->hp, s, t.ne);
    return df_conv_plan_add(&mp->plan, &t);
}

static void mk_plan_free(mk_plan *mp) {
    df_conv_plan_free(&mp->plan);
    free(mp->init);
    memset(mp, 0, sizeof *mp);
}

static df_status build_plan(const df_mkmodel_config *c, df_q35_hparams *hp, df_convert_type type, FILE *log,
                            mk_plan *mp) {
    memset(mp, 0, sizeof *mp);
    DF_TRY(df_mkmodel_check(c));
    if ((int)type < 0 || type >= DF_CONVERT_TYPE_COUNT)
        return df_fail(DF_ERR_INVALID, "mkmodel: unknown output type %d", (int)type);
    to_hparams(c, hp);
    mp->hp = hp;
    df_status st = df_q35_each_tensor(hp, !hp->tied, plan_tensor, mp);
    mp->plan.n_layer = (int)hp->n_layer;
    if (st == DF_OK) st = df_conv_assign_types(&mp->plan, type, log);
    if (st != DF_OK) mk_plan_free(mp);
    return st;
}

df_status df_mkmodel_estimate(const df_mkmodel_config *c, df_convert_type type, df_mkmodel_size *out) {
    memset(out, 0, sizeof *out);
    df_q35_hparams hp;
    mk_plan mp;
    /* The fallback notices go nowhere here: an estimate is a question, not a conversion. */
    FILE *devnull = fopen("/dev/null", "w");
    df_status st = build_plan(c, &hp, type, devnull, &mp);
    if (devnull) fclose(devnull);
    if (st != DF_OK) return st;
    out->n_tensors = mp.plan.n;
    for (size_t i = 0; i < mp.plan.n && st == DF_OK; i++) {
        const df_conv_tensor *t = &mp.plan.t[i];
        size_t row;
        if (!df_type_row_size(t->type, t->ne[0], &row)) {
            st = df_fail(DF_ERR_INVALID, "mkmodel: %s: rows of %lld do not fit type %s", t->name, (long long)t->ne[0],
                         df_type_name(t->type));
            break;
        }
        uint64_t rows = (uint64_t)df_conv_tensor_rows(t);
        out->n_params += rows * (uint64_t)t->ne[0];
        out->data_bytes += rows * (uint64_t)row;
    }
    mk_plan_free(&mp);
    return st;
}

/* ---- the file -------------------------------------------------------------------------------- */

df_status df_mkmodel_write(const df_mkmodel_config *c, const char *out_path, const df_mkmodel_opts *opts) {
    df_mkmodel_opts defaults;
    if (!opts) {
        df_mkmodel_opts_init(&defaults);
        opts = &defaults;
    }
    if (!c || !out_path) return df_fail(DF_ERR_INVALID, "mkmodel: no config or output path");
    FILE *log = opts->log ? opts->log : stderr;

    df_q35_hparams hp;
    mk_plan mp;
    DF_TRY(build_plan(c, &hp, opts->type, log, &mp));

    char desc[192];
    snprintf(desc, sizeof desc, "random weights (dflash mkmodel, seed %llu) in the shape of %s",
             (unsigned long long)opts->seed, c->source ? c->source : c->name);
    df_gguf_writer *w = NULL;
    df_status st = df_gguf_writer_create(out_path, &w);
    if (st == DF_OK) st = df_q35_write_metadata(w, &hp, c->name, opts->type);
    if (st == DF_OK) st = df_gguf_writer_add_str(w, "general.description", desc);
    if (st == DF_OK) st = df_conv_declare_tensors(&mp.plan, w);
    if (st == DF_OK) st = df_gguf_writer_write_header(w);
    if (st == DF_OK) {
        fprintf(log, "dflash mkmodel: %s, %s, seed %llu: no tokenizer in the file (pass token ids; bench does)\n",
                c->name, df_convert_type_name(opts->type), (unsigned long long)opts->seed);
        st = mk_write_rows(&mp.plan, mp.init, w, opts, log);
    }
    if (st == DF_OK) st = df_gguf_writer_finish(w);
    df_gguf_writer_free(w);
    mk_plan_free(&mp);
    return st;
}
