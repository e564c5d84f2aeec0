/* The mkmodel presets: published model shapes, plus one small shape of our own, and the
 * config.json-style setters and checks for them.
 *
 * Where each number comes from. The official Hugging Face config.json files were not in the
 * searchable index, so each preset is taken from public files that transcribe them, and each
 * field from at least one of the sources listed for it (docs/MKMODEL.md has the same table):
 *
 *   qwen3.5-0.8b  (Qwen/Qwen3.5-0.8B)
 *     THUDM/slime scripts/models/qwen3.5-0.8B.sh (commit f8879db2): 24 layers, hidden 1024,
 *       ffn 3584, 8 heads / 2 KV groups, kv-channels 256, rotary-percent 0.25, rotary-base
 *       1e7, norm-epsilon 1e-6, vocab 248320, tied embeddings (no --untie flag, which the
 *       same repository's 27B script sets).
 *     huggingface.co/oopere/Qwen3.5-0.65B-Base-Rearchitected config.json (a pruned derivative
 *       that keeps the 0.8B's widths): linear 16 key / 16 value heads of 128, conv kernel 4,
 *       full_attention_interval 4, max_position_embeddings 262144.
 *   qwen3.5-2b    (Qwen/Qwen3.5-2B)
 *     awesomeagents.ai/models/qwen-3-5-2b and apxml.com/models/qwen35-2b (transcriptions of
 *       the model card): 24 layers, hidden 2048, FFN 6144, 6 x (3 x DeltaNet + 1 x attention),
 *       DeltaNet 16 V / 16 QK heads of 128, attention 8 Q / 2 KV heads of 256, RoPE dim 64,
 *       RoPE theta 1e7, vocab 248320, context 262144.
 *     tie_word_embeddings: NOT found in a source; true is inferred (the text model is 1.9 B
 *       parameters tied, 2.4 B untied; the family's 0.8B and 4B are tied). Flagged in the docs.
 *     conv kernel 4 and rms_norm_eps 1e-6: every Qwen3.5 config read (all sizes) has them.
 *   qwen3.5-4b    (Qwen/Qwen3.5-4B)
 *     hu-op1/Foothold models/qwen3_5_4b.py (commit 45c0e2de): hidden 2560, 32 layers,
 *       16 heads / 4 KV, head_dim 256, rope_dim 64 (0.25 x 256), intermediate 9216, linear
 *       16 key / 32 value heads of 128, tied, vocab 248320, max_model_len 262144.
 *     huggingface.co/halen214/st01 config.json (a 4B-shaped Qwen3_5ForCausalLM): conv kernel 4,
 *       full_attention_interval 4, the same widths.
 *   qwen3.5-9b    (Qwen/Qwen3.5-9B)
 *     hu-op1/Foothold models/qwen3_5_9b.py (commit b20180ff, "dims verified against the
 *       Qwen/Qwen3.5-9B config.json"): hidden 4096, 32 layers, 16 / 4 heads, head_dim 256,
 *       intermediate 12288, linear 16 x 128 / 32 x 128, conv kernel 4, partial_rotary_factor
 *       0.25, untied, vocab 248320, full_attention_interval 4.
 *     lzwjava.github.io/qwen3-5-9b-hybrid-review-en (GGUF metadata of the released model):
 *       freq_base 1e7, 64 rope dims.
 *   qwen3.6-27b   (Qwen/Qwen3.6-27B)
 *     hu-op1/Foothold models/qwen3_6_27b.py (commit 45c0e2de): hidden 5120, 64 layers,
 *       24 / 4 heads, head_dim 256, rope_dim 64, intermediate 17408, linear 16 x 128 /
 *       48 x 128, untied, vocab 248320, full_attention_interval 4.
 *     THUDM/slime scripts/models/qwen3.5-27B.sh (the same widths): rotary-base 1e7,
 *       norm-epsilon 1e-6.
 *   tiny-bench    (no published model): ~100 M parameters in the family's proportions
 *       (head dims 128 / 128, twice as many value heads as key heads, so the value-head
 *       reorder is exercised), small enough to write in tests.
 *
 * rope.dimension_sections is not a field here: the converter writes [11, 11, 10, 0] when
 * config.json has no mrope_section, and those are the published values too.
 *
 * The DFlash drafters (`mkmodel --drafter`). z-lab publishes drafters for Qwen3.5-4B, 9B, 27B
 * and 35B-A3B and for Qwen3.6-27B (z-lab/dflash README, "Supported Models"); their config.json
 * files are not in the searchable index either, so each shape is taken from public code that
 * transcribes them:
 *
 *   qwen3.5-4b    z-lab/Qwen3.5-4B-DFlash
 *     a Rust DFlash runtime's test `default_matches_upstream_z_lab_qwen35_4b_dflash` (its
 *       defaults "pinned to the upstream Python dataclass"): hidden 2560, intermediate 9728,
 *       5 layers, 32 heads / 8 KV of head_dim 128, rms_norm_eps 1e-6, vocab 248320,
 *       max_position_embeddings 262144, rope_theta 1e7, block_size 16, mask_token_id 248070.
 *     mlxcel's Qwen3.5 speculative path: capture layers [1, 8, 15, 22, 29], "the only currently
 *       published DFlash drafter checkpoint (z-lab/Qwen3.5-4B-DFlash)".
 *   qwen3.5-9b    z-lab/Qwen3.5-9B-DFlash
 *     a Rust DFlash loader's test `parses_qwen35_9b_dflash_config`: hidden 4096, intermediate
 *       12288, 5 layers, 32 / 8 heads of 128, max_position_embeddings 262144, rope_theta 1e7
 *       (top level), rms_norm_eps 1e-6, block_size 16, num_target_layers 32,
 *       dflash_config {mask_token_id 248070, target_layer_ids [1, 8, 15, 22, 29]}.
 *     the card of guglxni/Qwen3.5-9B-abliterated-DFlash (a fine-tune of it): 5 layers, 32
 *       heads, hidden 4096, block 16, target layers [1, 8, 15, 22, 29], mask 248070.
 *   qwen3.6-27b   z-lab/Qwen3.6-27B-DFlash
 *     an inference server's test config for it (`Qwen3DFlashConfigTest`): hidden 5120,
 *       intermediate 17408, 5 layers, 32 / 8 heads of 128, vocab 248320, block_size 16,
 *       sliding_window 2048, layer_types [sliding x 4, full], dflash_config {mask_token_id
 *       248070, target_layer_ids [1, 16, 31, 46, 61]}, rope_parameters.rope_theta 1e7.
 *     Luce-Org/lucebox-hub pull request #94 ("support Qwen3.6-27B-DFlash draft (SWA
 *       layers)"): layer_types [swa, swa, swa, swa, full], sliding_window 2048, tensor names
 *       and shapes as the 3.5 drafter's (whose layers are all full attention).
 *     size check: its F16 GGUF is 3310.7 MiB (Ardenzard/Qwen3.6-27B-DFlash-GGUF); these widths
 *       give 1.730 B parameters = 3300 MiB in f16, the rest being the file's metadata.
 *     seed 004 of this project: Qwen3.6 drafters publish rope_theta 1e7 under rope_parameters.
 *   Every drafter above taps 5 target layers, and each published list equals the reference
 *   default (z-lab build_target_layer_ids) for its target's depth (32 -> 1, 8, 15, 22, 29;
 *   64 -> 1, 16, 31, 46, 61).
 *
 *   tiny-bench, qwen3.5-0.8b, qwen3.5-2b: z-lab publishes no drafter for them, so they get our
 *     own shape: the family's 5 layers, block 16 and 5 capture layers at the reference default
 *     for the target's depth, and the target's own attention (heads, KV heads, head_dim) and
 *     FFN widths, rope_theta and rms_norm_eps; all layers full attention. (A third-party
 *     drafter for Qwen3.5-0.8B, Moonlight556/Qwen3.5-0.8B-DFlash, also has 5 layers and
 *     block 16; its widths are not published in what we could read.)
 *   In every case the mask token is 248070, the family's <|MASK|>, or the last token when a
 *   --set vocabulary is smaller than that. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "convert/mkmodel.h"
#include "model/dflash_draft.h"

#define QWEN35_FAMILY                                                                              \
    .head_dim = 256, .vocab_size = 248320, .max_position_embeddings = 262144, .linear_key_head_dim = 128, \
    .linear_value_head_dim = 128, .linear_conv_kernel_dim = 4, .full_attention_interval = 4,          \
    .rope_theta = 10000000.0, .partial_rotary_factor = 0.25, .rms_norm_eps = 1e-6

static const df_mkmodel_config g_presets[] = {
    {.name = "tiny-bench", .source = NULL, .num_hidden_layers = 12, .hidden_size = 768, .intermediate_size = 2048,
     .num_attention_heads = 4, .num_key_value_heads = 2, .head_dim = 128, .vocab_size = 16384,
     .max_position_embeddings = 4096, .linear_num_key_heads = 4, .linear_num_value_heads = 8,
     .linear_key_head_dim = 128, .linear_value_head_dim = 128, .linear_conv_kernel_dim = 4,
     .full_attention_interval = 4, .rope_theta = 10000000.0, .partial_rotary_factor = 0.25, .rms_norm_eps = 1e-6,
     .tie_word_embeddings = true},
    {.name = "qwen3.5-0.8b", .source = "Qwen/Qwen3.5-0.8B", QWEN35_FAMILY, .num_hidden_layers = 24,
     .hidden_size = 1024, .intermediate_size = 3584, .num_attention_heads = 8, .num_key_value_heads = 2,
     .linear_num_key_heads = 16, .linear_num_value_heads = 16, .tie_word_embeddings = true},
    {.name = "qwen3.5-2b", .source = "Qwen/Qwen3.5-2B", QWEN35_FAMILY, .num_hidden_layers = 24,
     .hidden_size = 2048, .intermediate_size = 6144, .num_attention_heads = 8, .num_key_value_heads = 2,
     .linear_num_key_heads = 16, .linear_num_value_heads = 16, .tie_word_embeddings = true /* inferred */},
    {.name = "qwen3.5-4b", .source = "Qwen/Qwen3.5-4B", QWEN35_FAMILY, .num_hidden_layers = 32,
     .hidden_size = 2560, .intermediate_size = 9216, .num_attention_heads = 16, .num_key_value_heads = 4,
     .linear_num_key_heads = 16, .linear_num_value_heads = 32, .tie_word_embeddings = true},
    {.name = "qwen3.5-9b", .source = "Qwen/Qwen3.5-9B", QWEN35_FAMILY, .num_hidden_layers = 32,
     .hidden_size = 4096, .intermediate_size = 12288, .num_attention_heads = 16, .num_key_value_heads = 4,
     .linear_num_key_heads = 16, .linear_num_value_heads = 32, .tie_word_embeddings = false},
    {.name = "qwen3.6-27b", .source = "Qwen/Qwen3.6-27B", QWEN35_FAMILY, .num_hidden_layers = 64,
     .hidden_size = 5120, .intermediate_size = 17408, .num_attention_heads = 24, .num_key_value_heads = 4,
     .linear_num_key_heads = 16, .linear_num_value_heads = 48, .tie_word_embeddings = false},
};

size_t df_mkmodel_n_presets(void) { return sizeof g_presets / sizeof g_presets[0]; }

const df_mkmodel_config *df_mkmodel_preset_at(size_t i) { return i < df_mkmodel_n_presets() ? &g_presets[i] : NULL; }

const df_mkmodel_config *df_mkmodel_preset(const char *name) {
    for (size_t i = 0; name && i < df_mkmodel_n_presets(); i++)
        if (!strcasecmp(name, g_presets[i].name)) return &g_presets[i];
    return NULL;
}

/* ---- setting fields by config.json key ------------------------------------------------------ */

typedef enum { F_INT, F_FLOAT, F_BOOL } field_kind;

#define INT_FIELD(k) {#k, F_INT, offsetof(df_mkmodel_config, k)}
#define FLOAT_FIELD(k) {#k, F_FLOAT, offsetof(df_mkmodel_config, k)}

static const struct {
    const char *key;
    field_kind kind;
    size_t offset;
} g_fields[] = {
    INT_FIELD(num_hidden_layers),      INT_FIELD(hidden_size),           INT_FIELD(intermediate_size),
    INT_FIELD(num_attention_heads),    INT_FIELD(num_key_value_heads),   INT_FIELD(head_dim),
    INT_FIELD(vocab_size),             INT_FIELD(max_position_embeddings), INT_FIELD(linear_num_key_heads),
    INT_FIELD(linear_num_value_heads), INT_FIELD(linear_key_head_dim),   INT_FIELD(linear_value_head_dim),
    INT_FIELD(linear_conv_kernel_dim), INT_FIELD(full_attention_interval), FLOAT_FIELD(rope_theta),
    FLOAT_FIELD(partial_rotary_factor), FLOAT_FIELD(rms_norm_eps),
    {"tie_word_embeddings", F_BOOL, offsetof(df_mkmodel_config, tie_word_embeddings)},
};

df_status df_mkmodel_set(df_mkmodel_config *c, const char *key, const char *value) {
    if (!key || !value) return df_fail(DF_ERR_INVALID, "mkmodel: a setting needs a key and a value");
    for (size_t i = 0; i < sizeof g_fields / sizeof g_fields[0]; i++) {
        if (strcmp(key, g_fields[i].key)) continue;
        char *at = (char *)c + g_fields[i].offset, *end = NULL;
        errno = 0;
        switch (g_fields[i].kind) {
        case F_INT: {
            long long v = strtoll(value, &end, 10);
            if (errno || end == value || *end)
                return df_fail(DF_ERR_INVALID, "mkmodel: %s: '%s' is not an integer", key, value);
            int64_t v64 = v;
            memcpy(at, &v64, sizeof v64);
            return DF_OK;
        }
        case F_FLOAT: {
            double v = strtod(value, &end);
            if (errno || end == value || *end || !isfinite(v))
                return df_fail(DF_ERR_INVALID, "mkmodel: %s: '%s' is not a number", key, value);
            memcpy(at, &v, sizeof v);
            return DF_OK;
        }
        case F_BOOL: {
            bool v;
            if (!strcmp(value, "true") || !strcmp(value, "1")) v = true;
            else if (!strcmp(value, "false") || !strcmp(value, "0")) v = false;
            else return df_fail(DF_ERR_INVALID, "mkmodel: %s: '%s' is not true or false", key, value);
            memcpy(at, &v, sizeof v);
            return DF_OK;
        }
        }
    }
    char known[1024] = "";
    for (size_t i = 0; i < sizeof g_fields / sizeof g_fields[0]; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", g_fields[i].key);
    return df_fail(DF_ERR_INVALID, "mkmodel: unknown setting '%s' (known: %s)", key, known);
}

/* ---- checks ---------------------------------------------------------------------------------- */

/* Counts go to u32 metadata keys; 2^24 keeps every product of two of them far from overflow. */
#define MAX_DIM ((int64_t)1 << 24)

df_status df_mkmodel_check(const df_mkmodel_config *c) {
    const struct {
        const char *key;
        int64_t v, max;
    } counts[] = {
        {"num_hidden_layers", c->num_hidden_layers, 4096},
        {"hidden_size", c->hidden_size, MAX_DIM},
        {"intermediate_size", c->intermediate_size, MAX_DIM},
        {"num_attention_heads", c->num_attention_heads, 4096},
        {"num_key_value_heads", c->num_key_value_heads, 4096},
        {"head_dim", c->head_dim, 65536},
        {"vocab_size", c->vocab_size, MAX_DIM},
        {"max_position_embeddings", c->max_position_embeddings, INT32_MAX},
        {"linear_num_key_heads", c->linear_num_key_heads, 4096},
        {"linear_num_value_heads", c->linear_num_value_heads, 4096},
        {"linear_key_head_dim", c->linear_key_head_dim, 65536},
        {"linear_value_head_dim", c->linear_value_head_dim, 65536},
        {"linear_conv_kernel_dim", c->linear_conv_kernel_dim, 64},
        {"full_attention_interval", c->full_attention_interval, 4096},
    };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        if (counts[i].v < 1 || counts[i].v > counts[i].max)
            return df_fail(DF_ERR_INVALID, "mkmodel %s: %s is %lld, expected 1 .. %lld", c->name, counts[i].key,
                           (long long)counts[i].v, (long long)counts[i].max);
    if (c->num_attention_heads % c->num_key_value_heads)
        return df_fail(DF_ERR_INVALID, "mkmodel %s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                       c->name, (long long)c->num_attention_heads, (long long)c->num_key_value_heads);
    if (c->linear_num_value_heads % c->linear_num_key_heads)
        return df_fail(DF_ERR_INVALID,
                       "mkmodel %s: linear_num_value_heads %lld is not a multiple of linear_num_key_heads %lld", c->name,
                       (long long)c->linear_num_value_heads, (long long)c->linear_num_key_heads);
    /* Products that size whole rows: q|gate per attention head, and q|k|v of the GDN conv. */
    if (2 * c->num_attention_heads * c->head_dim > MAX_DIM ||
        2 * c->linear_num_key_heads * c->linear_key_head_dim + c->linear_num_value_heads * c->linear_value_head_dim >
            MAX_DIM)
        return df_fail(DF_ERR_INVALID, "mkmodel %s: the attention or linear-attention projections are wider than %lld",
                       c->name, (long long)MAX_DIM);
    if (!(c->partial_rotary_factor > 0.0 && c->partial_rotary_factor <= 1.0))
        return df_fail(DF_ERR_INVALID, "mkmodel %s: partial_rotary_factor is %g, expected (0, 1]", c->name,
                       c->partial_rotary_factor);
    const int64_t rot = (int64_t)((double)c->head_dim * c->partial_rotary_factor);
    if (rot < 2 || rot % 2)
        return df_fail(DF_ERR_INVALID,
                       "mkmodel %s: head_dim %lld x partial_rotary_factor %g gives %lld rotary dims, expected an "
                       "even number >= 2",
                       c->name, (long long)c->head_dim, c->partial_rotary_factor, (long long)rot);
    if (!(c->rope_theta > 0.0) || !(c->rms_norm_eps > 0.0) || c->rms_norm_eps >= 1.0)
        return df_fail(DF_ERR_INVALID, "mkmodel %s: rope_theta (%g) must be > 0 and rms_norm_eps (%g) in (0, 1)",
                       c->name, c->rope_theta, c->rms_norm_eps);
    return DF_OK;
}

/* ---- the DFlash drafters ---------------------------------------------------------------------- */

#define FAMILY_MASK_TOKEN 248070 /* <|MASK|> of the Qwen3.5 vocabulary */
#define FAMILY_DRAFT_LAYERS 5
#define FAMILY_DRAFT_BLOCK 16
#define FAMILY_CAPTURE 5

/* Published drafter shapes, by target preset (the sources are at the top of this file). */
static const struct drafter_shape {
    const char *target, *source;
    int64_t layers, ffn, heads, kv, head_dim;
    int64_t target_depth;   /* the depth the capture layers were published for */
    int32_t ids[FAMILY_CAPTURE];
    const char *pattern;    /* one letter per layer: S sliding, F full; NULL: all full */
    int64_t window;
} g_drafters[] = {
    {"qwen3.5-4b", "z-lab/Qwen3.5-4B-DFlash", 5, 9728, 32, 8, 128, 32, {1, 8, 15, 22, 29}, NULL, 0},
    {"qwen3.5-9b", "z-lab/Qwen3.5-9B-DFlash", 5, 12288, 32, 8, 128, 32, {1, 8, 15, 22, 29}, NULL, 0},
    {"qwen3.6-27b", "z-lab/Qwen3.6-27B-DFlash", 5, 17408, 32, 8, 128, 64, {1, 16, 31, 46, 61}, "SSSSF", 2048},
};

df_status df_mkmodel_drafter_for(const df_mkmodel_config *c, df_mkmodel_drafter *out) {
    memset(out, 0, sizeof *out);
    if (!c) return df_fail(DF_ERR_INVALID, "mkmodel: no target config for the drafter");
    DF_TRY(df_mkmodel_check(c));
    const struct drafter_shape *ds = NULL;
    for (size_t i = 0; i < sizeof g_drafters / sizeof g_drafters[0] && !ds; i++)
        if (!strcasecmp(c->name, g_drafters[i].target)) ds = &g_drafters[i];
    df_mkmodel_drafter *d = out;
    snprintf(d->name, sizeof d->name, "%s-dflash", c->name);
    d->hidden_size = c->hidden_size;
    d->vocab_size = c->vocab_size;
    d->max_position_embeddings = c->max_position_embeddings;
    d->block_size = FAMILY_DRAFT_BLOCK;
    d->mask_token_id = FAMILY_MASK_TOKEN < c->vocab_size ? FAMILY_MASK_TOKEN : c->vocab_size - 1;
    d->n_capture = FAMILY_CAPTURE;
    if (ds) {
        d->source = ds->source;
        d->num_hidden_layers = ds->layers;
        d->intermediate_size = ds->ffn;
        d->num_attention_heads = ds->heads;
        d->num_key_value_heads = ds->kv;
        d->head_dim = ds->head_dim;
        d->rope_theta = 1e7;
        d->rms_norm_eps = 1e-6;
        for (int64_t l = 0; ds->pattern && l < ds->layers; l++) d->sliding[l] = ds->pattern[l] == 'S';
        d->sliding_window = ds->pattern ? ds->window : 0;
    } else {
        d->source = NULL;
        d->num_hidden_layers = FAMILY_DRAFT_LAYERS;
        d->intermediate_size = c->intermediate_size;
        d->num_attention_heads = c->num_attention_heads;
        d->num_key_value_heads = c->num_key_value_heads;
        d->head_dim = c->head_dim;
        d->rope_theta = c->rope_theta;
        d->rms_norm_eps = c->rms_norm_eps;
    }
    if (ds && c->num_hidden_layers == ds->target_depth) {
        memcpy(d->target_layer_ids, ds->ids, sizeof ds->ids);
    } else {
        /* Another depth (an own shape, or --set num_hidden_layers): where the reference puts
         * 5 taps in a target this deep, as the published lists are for theirs. */
        df_status st = df_dflash_default_layer_ids(c->num_hidden_layers, d->n_capture, d->target_layer_ids);
        if (st != DF_OK)
            return df_fail_context(st, "mkmodel %s: no capture layers for the drafter", c->name);
    }
    return df_mkmodel_drafter_check(d, c);
}
