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
 * config.json has no mrope_section, and those are the published values too. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "convert/mkmodel.h"

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
