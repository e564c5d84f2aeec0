/* Random-weight qwen35 GGUF files with the exact shapes of published models, for measuring
 * speed at real sizes without downloading anything (docs/MKMODEL.md).
 *
 *     df_mkmodel_config c = *df_mkmodel_preset("qwen3.5-0.8b");
 *     df_mkmodel_set(&c, "num_hidden_layers", "8");        // optional overrides
 *     df_mkmodel_opts o;
 *     df_mkmodel_opts_init(&o);
 *     o.type = DF_CONVERT_Q4_K_M;
 *     o.seed = 7;
 *     st = df_mkmodel_write(&c, "/tmp/q35-0.8b-q4_k_m.gguf", &o);
 *
 * The file holds what the converter writes for a checkpoint with this config.json (the same
 * metadata keys, tensor list and per-tensor type recipe; convert_internal.h), with no
 * tokenizer keys. Weights are pseudo-random from the seed; a large tensor copies its rows from
 * a pool of rows quantized once (so writing is bound by the disk, not by the quantizer), a
 * small one gets rows of its own; everything is streamed to the file, so memory stays at a
 * few chunk buffers and pools whatever the model size. The same config, type and seed give
 * the same bytes on any machine and thread count.
 *
 * df_mkmodel_drafter_for / df_mkmodel_write_drafter write the matching DFlash drafter (arch
 * "qwen35-dflash-draft", the layout `dflash convert` writes for a z-lab checkpoint) in the
 * shape of the drafter published for the preset's model. */
#ifndef DF_CONVERT_MKMODEL_H
#define DF_CONVERT_MKMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/status.h"
#include "convert/convert.h"

/* A model's shape, in config.json's own words (text_config of the published checkpoint). */
typedef struct df_mkmodel_config {
    char name[64];                  /* the preset's name; general.name of the file */
    const char *source;             /* the checkpoint the shape is taken from ("Qwen/Qwen3.5-9B"), or
                                       NULL for a shape of our own */
    int64_t num_hidden_layers;
    int64_t hidden_size;
    int64_t intermediate_size;
    int64_t num_attention_heads;
    int64_t num_key_value_heads;
    int64_t head_dim;
    int64_t vocab_size;
    int64_t max_position_embeddings;
    int64_t linear_num_key_heads;
    int64_t linear_num_value_heads;
    int64_t linear_key_head_dim;
    int64_t linear_value_head_dim;
    int64_t linear_conv_kernel_dim;
    int64_t full_attention_interval;
    double rope_theta;
    double partial_rotary_factor;
    double rms_norm_eps;
    bool tie_word_embeddings;
} df_mkmodel_config;

/* The presets, in the order `dflash mkmodel --list` prints them. */
size_t df_mkmodel_n_presets(void);
const df_mkmodel_config *df_mkmodel_preset_at(size_t i);
/* By name, case-insensitively; NULL when there is none. */
const df_mkmodel_config *df_mkmodel_preset(const char *name);

/* Sets one field by its config.json key ("num_hidden_layers", "rope_theta",
 * "tie_word_embeddings", ...) from text. An unknown key or a value that does not parse is an
 * error naming it; whether the whole config makes sense is df_mkmodel_check's job. */
df_status df_mkmodel_set(df_mkmodel_config *c, const char *key, const char *value);
/* Every field in range and the shapes consistent (head counts divide, rotary dims even and
 * inside the head, ...). df_mkmodel_write checks this first. */
df_status df_mkmodel_check(const df_mkmodel_config *c);

typedef struct df_mkmodel_opts {
    df_convert_type type; /* f32 (default), f16, bf16, q8_0, q4_k_m: as `dflash convert --type` */
    uint64_t seed;        /* default 0 */
    int n_threads;        /* 0 = every online CPU */
    FILE *log;            /* notices and progress; NULL = stderr */
    bool quiet;           /* no progress display */
    bool unique_rows;     /* draw every row of every tensor (slow; the default copies the rows
                             of large tensors from pools, mkmodel_rows.c says why) */
} df_mkmodel_opts;

void df_mkmodel_opts_init(df_mkmodel_opts *o);

/* What a file would hold, without writing it. */
typedef struct df_mkmodel_size {
    size_t n_tensors;
    uint64_t n_params;   /* elements of every tensor */
    uint64_t data_bytes; /* tensor data, after the type recipe (the file adds its header and padding) */
} df_mkmodel_size;

df_status df_mkmodel_estimate(const df_mkmodel_config *c, df_convert_type type, df_mkmodel_size *out);

/* Writes the file (as "<path>.partial", renamed when complete). opts may be NULL. */
df_status df_mkmodel_write(const df_mkmodel_config *c, const char *out_path, const df_mkmodel_opts *opts);

/* ---- the DFlash drafter of a target ---------------------------------------------------------
 * A z-lab DFlashDraftModel (a small Qwen3 stack reading the target's hidden states) in the
 * words of its config.json. It has no embedding or LM head: it uses the target's. */
#define DF_MKMODEL_MAX_DRAFT_LAYERS 64 /* the loader's DF_DFLASH_MAX_LAYERS */
#define DF_MKMODEL_MAX_CAPTURE 64      /* the loader's DF_DFLASH_MAX_CAPTURE */

typedef struct df_mkmodel_drafter {
    char name[80];             /* general.name of the file */
    const char *source;        /* the published drafter whose shape this is ("z-lab/Qwen3.6-27B-DFlash"),
                                  or NULL for a shape of our own (mkmodel_presets.c says which) */
    int64_t num_hidden_layers;
    int64_t hidden_size;       /* the target's */
    int64_t intermediate_size;
    int64_t num_attention_heads, num_key_value_heads, head_dim;
    int64_t vocab_size;        /* the target's */
    int64_t max_position_embeddings;
    double rope_theta, rms_norm_eps;
    int64_t block_size;
    int64_t mask_token_id;     /* a token of the target's vocabulary */
    int n_capture;             /* target layers feeding fc ... */
    int32_t target_layer_ids[DF_MKMODEL_MAX_CAPTURE]; /* ... these, 0-based */
    int64_t sliding_window;    /* positions a sliding layer sees; 0 when none slides */
    bool sliding[DF_MKMODEL_MAX_DRAFT_LAYERS];
} df_mkmodel_drafter;

/* The drafter for a target config: the published drafter of the preset it was made from
 * (found by c->name), with the hidden size and vocabulary of c as it is now (after --set);
 * the published capture layers when c keeps the published depth, else the reference default
 * (df_dflash_default_layer_ids) for c's depth with as many layers. Targets without a published
 * drafter get our own documented shape. Then df_mkmodel_drafter_check. */
df_status df_mkmodel_drafter_for(const df_mkmodel_config *target, df_mkmodel_drafter *out);
/* Every field in range and the drafter usable with this target (hidden size, vocabulary,
 * mask token, capture layers inside the target and not its last layer, head counts, ...). */
df_status df_mkmodel_drafter_check(const df_mkmodel_drafter *d, const df_mkmodel_config *target);
/* What the drafter file would hold (matrices as `dflash convert --type` writes a drafter:
 * q4_k_m is Q4_K for every matrix). */
df_status df_mkmodel_drafter_estimate(const df_mkmodel_drafter *d, df_convert_type type, df_mkmodel_size *out);
/* Writes the drafter GGUF (checked against target first). opts may be NULL. */
df_status df_mkmodel_write_drafter(const df_mkmodel_drafter *d, const df_mkmodel_config *target,
                                   const char *out_path, const df_mkmodel_opts *opts);

#endif
