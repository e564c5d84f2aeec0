/* dflash mkmodel --drafter: a DFlash drafter GGUF with random weights, in the shape of the
 * drafter published for the preset's model (mkmodel_presets.c has the shapes and sources).
 *
 * The file is what `dflash convert` writes for a z-lab DFlashDraftModel checkpoint
 * (convert_dflash.c, docs/DFLASH_DRAFTER.md §3): arch "qwen35-dflash-draft", the same keys,
 * the same tensor list in the same order, the same type rule (1-D tensors f32; q4_k_m is Q4_K
 * for every matrix, falling back by row length). convert_dflash.c keeps its metadata writer
 * and type rule private, so the few lines of each are repeated here; the tests load the
 * result with df_dflash_draft_load_gguf next to the target, which is what has to agree.
 *
 * Values, as for the target (mkmodel.c): matrices N(0, 1/fan_in), the two that write the
 * residual stream (attn_output, ffn_down) another 1/sqrt(2 n_layer); fc N(0, 1/fan_in) with
 * fan_in = n_capture * hidden; norms 1 + N(0, 0.02^2) (the drafter's are plain x * w norms). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert/mkmodel_internal.h"
#include "model/dflash_draft.h"

#define ARCH DF_DFLASH_ARCH

/* ---- checks ----------------------------------------------------------------------------------- */

df_status df_mkmodel_drafter_check(const df_mkmodel_drafter *d, const df_mkmodel_config *t) {
    if (!d || !t) return df_fail(DF_ERR_INVALID, "mkmodel drafter: no drafter or target config");
    const char *n = d->name;
    const struct {
        const char *key;
        int64_t v, lo, hi;
    } ranges[] = {
        {"num_hidden_layers", d->num_hidden_layers, 1, DF_MKMODEL_MAX_DRAFT_LAYERS},
        {"hidden_size", d->hidden_size, 1, 1 << 17},
        {"intermediate_size", d->intermediate_size, 1, 1 << 20},
        {"num_attention_heads", d->num_attention_heads, 1, 1024},
        {"num_key_value_heads", d->num_key_value_heads, 1, 1024},
        {"head_dim", d->head_dim, 2, 1024},
        {"block_size", d->block_size, 2, 1024},
        {"target_layer_ids (count)", d->n_capture, 1, DF_MKMODEL_MAX_CAPTURE},
        {"max_position_embeddings", d->max_position_embeddings, 0, UINT32_MAX},
        {"sliding_window", d->sliding_window, 0, 1 << 30},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (ranges[i].v < ranges[i].lo || ranges[i].v > ranges[i].hi)
            return df_fail(DF_ERR_INVALID, "mkmodel drafter %s: %s is %lld, expected %lld .. %lld", n,
                           ranges[i].key, (long long)ranges[i].v, (long long)ranges[i].lo, (long long)ranges[i].hi);
    if (d->num_attention_heads % d->num_key_value_heads)
        return df_fail(DF_ERR_INVALID, "mkmodel drafter %s: num_attention_heads %lld is not a multiple of "
                       "num_key_value_heads %lld", n, (long long)d->num_attention_heads,
                       (long long)d->num_key_value_heads);
    if (d->head_dim % 2)
        return df_fail(DF_ERR_INVALID, "mkmodel drafter %s: head_dim %lld is odd; RoPE rotates pairs", n,
                       (long long)d->head_dim);
    if (!(d->rope_theta > 0.0) || !isfinite(d->rope_theta) || !(d->rms_norm_eps > 0.0) || d->rms_norm_eps >= 1.0)
        return df_fail(DF_ERR_INVALID, "mkmodel drafter %s: rope_theta (%g) must be > 0 and rms_norm_eps (%g) in "
                       "(0, 1)", n, d->rope_theta, d->rms_norm_eps);
    bool any_sliding = false;
    for (int64_t l = 0; l < d->num_hidden_layers; l++) any_sliding |= d->sliding[l];
    if (any_sliding && d->sliding_window < 1)
        return df_fail(DF_ERR_INVALID, "mkmodel drafter %s: sliding layers need a sliding_window >= 1", n);
    /* Against the target: what df_dflash_draft_check_target will ask when the pair loads. */
    if (d->hidden_size != t->hidden_size)
        return df_fail(DF_ERR_MISMATCH, "mkmodel drafter %s: hidden_size %lld, target %s has %lld: the drafter "
                       "reads the target's hidden states and embeddings", n, (long long)d->hidden_size, t->name,
                       (long long)t->hidden_size);
    if (d->vocab_size != t->vocab_size)
        return df_fail(DF_ERR_MISMATCH, "mkmodel drafter %s: vocab_size %lld, target %s has %lld", n,
                       (long long)d->vocab_size, t->name, (long long)t->vocab_size);
    if (d->mask_token_id < 0 || d->mask_token_id >= t->vocab_size)
        return df_fail(DF_ERR_MISMATCH, "mkmodel drafter %s: mask_token_id %lld is outside the target's vocabulary "
                       "of %lld tokens", n, (long long)d->mask_token_id, (long long)t->vocab_size);
    for (int i = 0; i < d->n_capture; i++) {
        /* The last layer is refused as df_dflash_draft_check_target refuses it: the reference
         * reads that layer's hidden state after the final norm. */
        if (d->target_layer_ids[i] < 0 || d->target_layer_ids[i] > t->num_hidden_layers - 2)
            return df_fail(DF_ERR_MISMATCH, "mkmodel drafter %s: target layer id %d (target_layer_ids[%d]) is "
                           "outside 0 .. %lld, the layers of the %lld-layer target %s before its last", n,
                           d->target_layer_ids[i], i, (long long)t->num_hidden_layers - 2,
                           (long long)t->num_hidden_layers, t->name);
    }
    return DF_OK;
}

/* ---- the plan ----------------------------------------------------------------------------------- */

typedef struct draft_plan {
    df_conv_plan plan;
    mk_init *init;
} draft_plan;

static void draft_plan_free(draft_plan *dp) {
    df_conv_plan_free(&dp->plan);
    free(dp->init);
    memset(dp, 0, sizeof *dp);
}

static df_status add(draft_plan *dp, size_t cap, const char *name, int layer, int64_t ne0, int64_t ne1, mk_init in) {
    if (dp->plan.n >= cap) return df_fail(DF_ERR_INVALID, "mkmodel drafter: more tensors than planned");
    df_conv_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.n_dims = ne1 ? 2 : 1;
    t.ne[0] = ne0;
    t.ne[1] = ne1 ? ne1 : 1;
    t.ne[2] = t.ne[3] = 1;
    t.op = DF_CONV_OP_NONE;
    t.layer = layer;
    dp->init[dp->plan.n] = in;
    return df_conv_plan_add(&dp->plan, &t);
}

static mk_init normal(int64_t fan_in, double extra) {
    return (mk_init){MK_INIT_NORMAL, (float)(extra / sqrt((double)fan_in))};
}

/* The converter's order: fc, hidden_norm, output_norm, then each block's tensors sorted by
 * name; q4_k_m is Q4_K for every matrix, as lucebox writes drafters (no Q6_K mix). */
static df_status build_plan(const df_mkmodel_drafter *d, df_convert_type type, FILE *log, draft_plan *dp) {
    memset(dp, 0, sizeof *dp);
    if ((int)type < 0 || type >= DF_CONVERT_TYPE_COUNT)
        return df_fail(DF_ERR_INVALID, "mkmodel drafter: unknown output type %d", (int)type);
    const int64_t E = d->hidden_size, D = d->head_dim, F = d->intermediate_size, L = d->num_hidden_layers;
    const int64_t qd = d->num_attention_heads * D, kvd = d->num_key_value_heads * D;
    const size_t cap = 3 + 11 * (size_t)L;
    if (!(dp->init = calloc(cap, sizeof *dp->init))) return df_fail(DF_ERR_NOMEM, "mkmodel drafter: out of memory");
    const mk_init norm = {MK_INIT_NORM_ONE, 0.02f};
    const double resid = 1.0 / sqrt(2.0 * (double)L);
    df_status st = add(dp, cap, "dflash.fc.weight", -1, d->n_capture * E, E, normal(d->n_capture * E, 1.0));
    if (st == DF_OK) st = add(dp, cap, "dflash.hidden_norm.weight", -1, E, 0, norm);
    if (st == DF_OK) st = add(dp, cap, "output_norm.weight", -1, E, 0, norm);
    for (int64_t l = 0; l < L && st == DF_OK; l++) {
        const struct {
            const char *name;
            int64_t ne0, ne1;
            double extra; /* 0: a norm */
        } per_layer[] = {
            {"attn_k.weight", E, kvd, 1.0},  {"attn_k_norm.weight", D, 0, 0}, {"attn_norm.weight", E, 0, 0},
            {"attn_output.weight", qd, E, resid}, {"attn_q.weight", E, qd, 1.0}, {"attn_q_norm.weight", D, 0, 0},
            {"attn_v.weight", E, kvd, 1.0},  {"ffn_down.weight", F, E, resid}, {"ffn_gate.weight", E, F, 1.0},
            {"ffn_norm.weight", E, 0, 0},    {"ffn_up.weight", E, F, 1.0},
        };
        for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0] && st == DF_OK; i++) {
            char name[DF_GGUF_MAX_NAME];
            snprintf(name, sizeof name, "blk.%lld.%s", (long long)l, per_layer[i].name);
            mk_init in = per_layer[i].extra ? normal(per_layer[i].ne0, per_layer[i].extra) : norm;
            st = add(dp, cap, name, (int)l, per_layer[i].ne0, per_layer[i].ne1, in);
        }
    }
    dp->plan.n_layer = (int)L;
    if (st == DF_OK && type != DF_CONVERT_Q4_K_M) st = df_conv_assign_types(&dp->plan, type, log);
    if (st == DF_OK && type == DF_CONVERT_Q4_K_M) {
        size_t n_fell = 0;
        for (size_t i = 0; i < dp->plan.n; i++) {
            df_conv_tensor *t = &dp->plan.t[i];
            t->wanted = t->n_dims < 2 ? DF_TYPE_F32 : DF_TYPE_Q4_K;
            t->type = df_recipe_fallback(t->wanted, t->ne[0]);
            n_fell += t->type != t->wanted;
        }
        if (n_fell)
            fprintf(log, "dflash mkmodel: %zu drafter matri%s fell back from q4_K (rows not a multiple of 256)\n",
                    n_fell, n_fell == 1 ? "x" : "ces");
    }
    if (st != DF_OK) draft_plan_free(dp);
    return st;
}

df_status df_mkmodel_drafter_estimate(const df_mkmodel_drafter *d, df_convert_type type, df_mkmodel_size *out) {
    memset(out, 0, sizeof *out);
    if (!d) return df_fail(DF_ERR_INVALID, "mkmodel drafter: no drafter");
    draft_plan dp;
    FILE *devnull = fopen("/dev/null", "w");
    df_status st = build_plan(d, type, devnull ? devnull : stderr, &dp);
    if (devnull) fclose(devnull);
    if (st != DF_OK) return st;
    out->n_tensors = dp.plan.n;
    for (size_t i = 0; i < dp.plan.n; i++) {
        const df_conv_tensor *t = &dp.plan.t[i];
        size_t row = 0;
        df_type_row_size(t->type, t->ne[0], &row);
        const uint64_t rows = (uint64_t)df_conv_tensor_rows(t);
        out->n_params += rows * (uint64_t)t->ne[0];
        out->data_bytes += rows * (uint64_t)row;
    }
    draft_plan_free(&dp);
    return DF_OK;
}

/* ---- metadata ----------------------------------------------------------------------------------- */

/* The keys convert_dflash.c writes, with the same types (u32 counts, f32 reals, an i32 id
 * array, a bool pattern only when a layer slides). */
static df_status write_metadata(df_gguf_writer *w, const df_mkmodel_drafter *d, df_convert_type type,
                                uint64_t seed) {
    char desc[224];
    snprintf(desc, sizeof desc, "random weights (dflash mkmodel --drafter, seed %llu) in the shape of %s",
             (unsigned long long)seed, d->source ? d->source : "a DFlash drafter of our own (no published one)");
    df_status st = df_gguf_writer_add_str(w, "general.architecture", ARCH);
    if (st == DF_OK) st = df_gguf_writer_add_str(w, "general.name", d->name);
    if (st == DF_OK) st = df_gguf_writer_add_str(w, "general.description", desc);
    if (st == DF_OK) st = df_gguf_writer_add_u32(w, "general.file_type", df_convert_file_type(type));
    if (st == DF_OK) st = df_gguf_writer_add_u32(w, "general.quantization_version", 2);
#define U32(key, v) \
    if (st == DF_OK) st = df_gguf_writer_add_u32(w, ARCH "." key, (uint32_t)(v))
    if (d->max_position_embeddings > 0) U32("context_length", d->max_position_embeddings);
    U32("embedding_length", d->hidden_size);
    U32("block_count", d->num_hidden_layers);
    U32("feed_forward_length", d->intermediate_size);
    U32("attention.head_count", d->num_attention_heads);
    U32("attention.head_count_kv", d->num_key_value_heads);
    U32("attention.key_length", d->head_dim);
    U32("attention.value_length", d->head_dim);
    U32("vocab_size", d->vocab_size);
    if (st == DF_OK) st = df_gguf_writer_add_f32(w, ARCH ".attention.layer_norm_rms_epsilon", (float)d->rms_norm_eps);
    if (st == DF_OK) st = df_gguf_writer_add_f32(w, ARCH ".rope.freq_base", (float)d->rope_theta);
    U32("dflash.n_target_layers", d->n_capture);
    U32("dflash.block_size", d->block_size);
    U32("dflash.mask_token_id", d->mask_token_id);
    if (st == DF_OK)
        st = df_gguf_writer_add_arr(w, ARCH ".dflash.target_layer_ids", DF_GGUF_I32, d->target_layer_ids,
                                    (size_t)d->n_capture);
    bool any_sliding = false;
    for (int64_t l = 0; l < d->num_hidden_layers; l++) any_sliding |= d->sliding[l];
    if (any_sliding) {
        U32("attention.sliding_window", d->sliding_window);
        if (st == DF_OK)
            st = df_gguf_writer_add_arr(w, ARCH ".attention.sliding_window_pattern", DF_GGUF_BOOL, d->sliding,
                                        (size_t)d->num_hidden_layers);
    }
#undef U32
    return st;
}

/* ---- the file ----------------------------------------------------------------------------------- */

df_status df_mkmodel_write_drafter(const df_mkmodel_drafter *d, const df_mkmodel_config *target,
                                   const char *out_path, const df_mkmodel_opts *opts) {
    df_mkmodel_opts defaults;
    if (!opts) {
        df_mkmodel_opts_init(&defaults);
        opts = &defaults;
    }
    if (!d || !target || !out_path) return df_fail(DF_ERR_INVALID, "mkmodel drafter: no drafter, target or path");
    DF_TRY(df_mkmodel_check(target));
    DF_TRY(df_mkmodel_drafter_check(d, target));
    FILE *log = opts->log ? opts->log : stderr;
    draft_plan dp;
    DF_TRY(build_plan(d, opts->type, log, &dp));
    df_gguf_writer *w = NULL;
    df_status st = df_gguf_writer_create(out_path, &w);
    if (st == DF_OK) st = write_metadata(w, d, opts->type, opts->seed);
    if (st == DF_OK) st = df_conv_declare_tensors(&dp.plan, w);
    if (st == DF_OK) st = df_gguf_writer_write_header(w);
    if (st == DF_OK) {
        char ids[256] = "";
        for (int i = 0; i < d->n_capture; i++)
            snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", i ? ", " : "", d->target_layer_ids[i]);
        fprintf(log, "dflash mkmodel: drafter %s (%s), %s, seed %llu: %lld layers, capture layers [%s], block "
                     "%lld, mask token %lld\n", d->name, d->source ? d->source : "own shape",
                df_convert_type_name(opts->type), (unsigned long long)opts->seed, (long long)d->num_hidden_layers,
                ids, (long long)d->block_size, (long long)d->mask_token_id);
        st = mk_write_rows(&dp.plan, dp.init, w, opts, log);
    }
    if (st == DF_OK) st = df_gguf_writer_finish(w);
    df_gguf_writer_free(w);
    draft_plan_free(&dp);
    return st;
}
