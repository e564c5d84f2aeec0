/* What the converters share: the config.json view (with llama.cpp's text_config merge), the
 * tensor plan (one entry per GGUF tensor: where its rows come from and how they change), the
 * per-tensor type recipe, the streaming writer of tensor data, the tokenizer keys and the
 * progress display. An architecture's converter (convert_<arch>.c) reads hyperparameters,
 * writes its metadata keys and fills a plan; everything after that is common. */
#ifndef DF_CONVERT_INTERNAL_H
#define DF_CONVERT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/status.h"
#include "convert/convert.h"
#include "format/checkpoint.h"
#include "format/config.h"
#include "format/gguf.h"
#include "format/gguf_write.h"
#include "quant/types.h"

/* ---- config.json ---------------------------------------------------------------------------
 * llama.cpp's TextModel merges "text_config" over the top level ({**hparams, **text_config}),
 * so a multimodal wrapper's text fields win. Here a field is looked up by its top-level
 * segment: "rope_parameters.rope_theta" reads text_config.rope_parameters.rope_theta when
 * text_config has "rope_parameters", else the top-level one (whole objects are replaced, as in
 * the merge, never mixed field by field). */
typedef struct df_conv_cfg {
    df_config *cfg;
    char *dir;     /* the model directory */
    char *path;    /* its config.json */
    bool has_text; /* config.json has a "text_config" object */
} df_conv_cfg;

df_status df_conv_cfg_open(const char *hf_dir, df_conv_cfg *c);
void df_conv_cfg_close(df_conv_cfg *c);

/* The field path after the merge ("text_config.hidden_size" or "hidden_size"), in buf. */
const char *df_conv_cfg_path(const df_conv_cfg *c, const char *key, char *buf, size_t cap);
bool df_conv_has(const df_conv_cfg *c, const char *key);
df_status df_conv_int(const df_conv_cfg *c, const char *key, int64_t *out);
df_status df_conv_int_or(const df_conv_cfg *c, const char *key, int64_t def, int64_t *out);
df_status df_conv_float(const df_conv_cfg *c, const char *key, double *out);
df_status df_conv_float_or(const df_conv_cfg *c, const char *key, double def, double *out);
/* Arrays: *out malloc'ed (free it); strings owned by the config. */
df_status df_conv_int_array(const df_conv_cfg *c, const char *key, int64_t **out, size_t *n);
df_status df_conv_str_array(const df_conv_cfg *c, const char *key, const char ***out, size_t *n);

/* config.json's top-level "architectures" (not merged: it names the checkpoint's class). */
df_status df_conv_architectures(const df_conv_cfg *c, const char ***out, size_t *n);

/* ---- small helpers ------------------------------------------------------------------------- */

char *df_conv_join(const char *dir, const char *name); /* malloc'ed "dir/name"; NULL when out of memory */
bool df_conv_is_file(const char *path);
/* The model's name for general.name: the last component of the directory path. */
char *df_conv_model_name(const char *dir);
/* One notice line on log: "dflash convert: ..." */
void df_conv_note(FILE *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the tensor plan ------------------------------------------------------------------------ */

/* An elementwise change applied after the rows are gathered. */
typedef enum df_conv_op {
    DF_CONV_OP_NONE = 0,
    DF_CONV_OP_PLUS_ONE, /* zero-centred RMSNorm weights: GGUF stores 1 + w */
    DF_CONV_OP_NEG_EXP,  /* A_log -> ssm_a = -exp(A_log) */
} df_conv_op;

/* The value-head reorder over one index (rows or columns). The span [start, start + nk*r*hd)
 * holds nk*r heads of hd entries in Hugging Face's grouped order (value head h belongs to key
 * head h / r); the GGUF wants them tiled, so that llama.cpp's broadcast of key head (p mod nk)
 * to value head p pairs the same heads: HF head h goes to position (h mod r)*nk + h/r. Entries
 * outside the span keep their place. nk == 0 means no reorder. */
typedef struct df_conv_perm {
    int64_t start, nk, r, hd;
} df_conv_perm;

typedef struct df_conv_tensor {
    char name[DF_GGUF_MAX_NAME];
    const df_st_tensor *src;       /* in the checkpoint, which outlives the plan; NULL when
                                      the rows come from elsewhere (mkmodel) */
    int n_dims;                    /* of the GGUF tensor */
    int64_t ne[DF_GGUF_MAX_DIMS];  /* GGUF order: ne[0] = the source's last (contiguous) dim */
    df_conv_op op;
    df_conv_perm rows, cols;       /* rows: over ne[1..] flattened; cols: within a row */
    int layer;                     /* block index; -1 outside the blocks */
    df_type type;                  /* set by df_conv_assign_types */
    df_type wanted;                /* the recipe's type before a row-length fallback */
} df_conv_tensor;

typedef struct df_conv_plan {
    df_conv_tensor *t;
    size_t n, cap;
    int n_layer; /* blocks in the file (the recipe's layer count) */
} df_conv_plan;

df_status df_conv_plan_add(df_conv_plan *p, const df_conv_tensor *t);
void df_conv_plan_free(df_conv_plan *p);
static inline int64_t df_conv_tensor_rows(const df_conv_tensor *t) {
    int64_t n = 1;
    for (int d = 1; d < t->n_dims; d++) n *= t->ne[d];
    return n;
}

/* ---- qwen35 (convert_qwen35.c) --------------------------------------------------------------
 * What a qwen35 file is, given its hyperparameters: the metadata keys and the list of tensors
 * (GGUF name, the Hugging Face tensor it comes from, shape, transform). The converter reads
 * the hyperparameters from config.json and binds each tensor to the checkpoint; `dflash
 * mkmodel` (mkmodel.c) fills them from a preset and generates the weights instead. */
typedef struct df_q35_hparams {
    int64_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab;
    int64_t n_ctx;               /* -1 when the config gives none */
    double eps, rope_theta, rotary_factor;
    int64_t rot_dim;             /* df_q35_rot_dim(head_dim, rotary_factor) */
    int32_t sections[4];
    int64_t conv_kernel, d_k, n_k, n_v, d_v;
    int64_t interval;            /* layer il is full attention iff (il + 1) % interval == 0 */
    bool tied;                   /* tie_word_embeddings */
} df_q35_hparams;

static inline bool df_q35_is_full(const df_q35_hparams *hp, int64_t il) { return (il + 1) % hp->interval == 0; }
/* llama.cpp's int(head_dim * partial_rotary_factor): truncation. */
static inline int64_t df_q35_rot_dim(int64_t head_dim, double factor) { return (int64_t)((double)head_dim * factor); }

/* Every qwen35.* / general.* key the converter writes (no tokenizer keys). */
df_status df_q35_write_metadata(df_gguf_writer *w, const df_q35_hparams *hp, const char *model_name,
                                df_convert_type type);

/* One GGUF tensor of the model, described by its Hugging Face source. */
typedef struct df_q35_spec {
    const char *hf;        /* HF name after the text prefix (or a full name when absolute) */
    bool absolute;         /* hf is not under the text prefix (lm_head.weight) */
    int n;                 /* expected PyTorch rank */
    int64_t shape[3];      /* expected PyTorch shape */
    bool squeeze_mid;      /* conv1d [C, 1, K] is stored as [C, K] */
    df_conv_op op;
    df_conv_perm rows, cols;
} df_q35_spec;

/* The GGUF shape of a spec (ne order, the squeezed conv1d as 2-D). */
void df_q35_spec_ne(const df_q35_spec *s, int *n_dims, int64_t ne[DF_GGUF_MAX_DIMS]);

/* Calls fn for every tensor of the file in file order: token_embd, the blocks in layer order,
 * output_norm, then output.weight when with_output. layer is -1 outside the blocks. Stops at
 * and returns the first failure. */
typedef df_status (*df_q35_tensor_fn)(void *ctx, int layer, const char *gguf_name, const df_q35_spec *s);
df_status df_q35_each_tensor(const df_q35_hparams *hp, bool with_output, df_q35_tensor_fn fn, void *ctx);

/* ---- transforms (tensor_transforms.c) ------------------------------------------------------ */

/* Source index for output index i under p (i itself outside the span or when p is none). */
int64_t df_conv_perm_src(const df_conv_perm *p, int64_t i);
/* Checks that p's span fits in len entries; what names the tensor for the message. */
df_status df_conv_perm_check(const df_conv_perm *p, int64_t len, const char *what);
/* True for the source dtypes a conversion reads (F32, F16, BF16). */
bool df_conv_src_dtype_ok(int dtype);
/* Row `row` of the source, viewed as rows of row_len elements, as floats. */
void df_conv_src_row(const df_st_tensor *src, int64_t row, int64_t row_len, float *dst);
void df_conv_apply_op(df_conv_op op, float *x, int64_t n);
/* Output row r of t (t->ne[0] floats) into dst; tmp is scratch of the same size. */
void df_conv_make_row(const df_conv_tensor *t, int64_t r, float *dst, float *tmp);

/* ---- types (quant_recipe.c) ---------------------------------------------------------------- */

/* llama.cpp's use_more_bits(i, n): the layers that Q4_K_M gives Q6_K. */
bool df_recipe_use_more_bits(int i, int n);
/* The type a row length that does not fit `type`'s blocks falls back to (llama.cpp's
 * tensor_type_fallback, then F16 when even that does not fit); `type` when it fits. */
df_type df_recipe_fallback(df_type type, int64_t ne0);
/* Sets every tensor's type for the choice and notes on log which ones fell back. The plan
 * must list blocks in increasing layer order (llama-quantize counts attn_v-like and ffn_down
 * tensors in that order). */
df_status df_conv_assign_types(df_conv_plan *p, df_convert_type choice, FILE *log);

/* ---- writing -------------------------------------------------------------------------------- */

/* Declares every planned tensor on w (before write_header). */
df_status df_conv_declare_tensors(const df_conv_plan *p, df_gguf_writer *w);
/* After write_header: converts and writes every tensor in plan order, in row chunks spread
 * over n_threads (rows from the checkpoint: df_conv_make_row). */
df_status df_conv_write_tensors(const df_conv_plan *p, df_gguf_writer *w, const df_convert_opts *o);

/* The same streaming writer with rows from anywhere: fn makes output row r of plan tensor
 * index i (t->ne[0] floats) into dst, with tmp as scratch of the same size. fn is called from
 * several threads at once, for distinct rows. label names the work on the progress display. */
typedef void (*df_conv_row_fn)(void *ctx, size_t i, const df_conv_tensor *t, int64_t r, float *dst, float *tmp);
df_status df_conv_write_rows(const df_conv_plan *p, df_gguf_writer *w, const df_convert_opts *o, const char *label,
                             df_conv_row_fn fn, void *ctx);

/* The tokenizer.ggml.* keys from hf_dir's tokenizer.json / tokenizer_config.json /
 * chat_template.jinja, padded to n_vocab; one notice and nothing written without a
 * tokenizer.json. */
df_status df_conv_add_tokenizer(const df_conv_cfg *c, int64_t n_vocab, df_gguf_writer *w, FILE *log);

/* ---- progress (progress.c) ------------------------------------------------------------------
 * On a terminal: one bar redrawn in place. Otherwise (logs, pipes): one line each time another
 * tenth of the work is done. */
typedef struct df_progress {
    FILE *f;
    bool enabled, tty;
    const char *label;
    uint64_t total, done;
    int last_tenth;   /* non-terminal: the last tenth reported */
    int last_permil;  /* terminal: the last drawn position, to redraw only on change */
    double t0;
} df_progress;

void df_progress_begin(df_progress *p, FILE *f, bool enabled, const char *label, uint64_t total);
void df_progress_add(df_progress *p, uint64_t amount, const char *what);
void df_progress_end(df_progress *p);

#endif
