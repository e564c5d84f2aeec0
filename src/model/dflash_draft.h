/* The DFlash drafter: a small Qwen3-style transformer that proposes a block of tokens in one
 * forward pass, conditioned on hidden states captured from the target. It has no embedding
 * and no LM head of its own: block tokens are embedded with the target's table and its
 * hidden states go through the target's LM head.
 *
 * One draft step (docs/DFLASH_DRAFTER.md has the sources and every detail):
 *
 *   context rows (committed positions 0 .. c-1, one per target token):
 *       f = hidden_norm(fc(concat of the target hidden states after layers target_layer_ids))
 *       per layer: K = rope(k_norm(wk f)), V = wv f       kept in the draft KV cache
 *   block (positions c .. c+B-1): tokens [bonus, MASK x (B-1)], x = target embedding
 *       per layer: h = attn_norm(x); q, k, v from h (q_norm, k_norm, rope at c + i)
 *                  x += wo(attention of q over [context K/V, block K/V])
 *                  x += down(silu(gate(ffn_norm(x))) * up(ffn_norm(x)))
 *       logits of block rows 1 .. B-1 = target LM head(output_norm(x))
 *
 * Full-attention layers see every context row and the whole block (no causal mask inside
 * the block); sliding-window layers see the last `sliding_window` positions and are causal
 * inside the block (unless the config says otherwise). The context features never go
 * through a layer's attn_norm.
 *
 * Files: a lucebox-style GGUF (arch "qwen35-dflash-draft") or a z-lab checkpoint directory
 * (config.json + model.safetensors, as published on Hugging Face). */
#ifndef DF_MODEL_DFLASH_DRAFT_H
#define DF_MODEL_DFLASH_DRAFT_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "format/config.h"
#include "format/gguf.h"
#include "model/qwen35.h"

#define DF_DFLASH_ARCH "qwen35-dflash-draft"
#define DF_DFLASH_MAX_LAYERS 64
#define DF_DFLASH_MAX_CAPTURE 64
/* The block size the reference code assumes when a file does not say (z-lab dflash). */
#define DF_DFLASH_DEFAULT_BLOCK 16
/* Context rows projected per internal batch of a commit (bounds the activation buffers). */
#define DF_DFLASH_COMMIT_CHUNK 64

typedef struct df_dflash_hparams {
    int64_t n_embd, n_layer, n_ff;
    int64_t n_head, n_head_kv, head_dim; /* RoPE rotates the whole head */
    float rms_eps;
    float rope_theta;
    int64_t n_ctx_train;     /* 0 when the file does not say */
    int64_t block_size;      /* the block the drafter was trained with */
    int32_t mask_token_id;   /* a token of the TARGET's vocabulary */
    int64_t n_capture;       /* target layers feeding fc: fc maps n_capture * n_embd -> n_embd */
    /* The target layers (0-based; the hidden state leaving that layer) in the order fc
     * concatenates them. n_layer_ids is 0 when the file names none: the reference default
     * (df_dflash_default_layer_ids) then depends on the target's depth. */
    int n_layer_ids;
    int32_t layer_ids[DF_DFLASH_MAX_CAPTURE];
    int64_t target_n_layer;  /* depth of the target it was trained against; 0 when unknown */
    int64_t n_vocab;         /* the target vocabulary it was trained for; 0 when unknown */
    int64_t sliding_window;  /* positions a sliding layer sees; 0 when no layer slides */
    bool sliding[DF_DFLASH_MAX_LAYERS];
    bool causal[DF_DFLASH_MAX_LAYERS]; /* causal inside the block */
} df_dflash_hparams;

typedef struct df_dflash_layer {
    df_weight attn_norm, ffn_norm;       /* [n_embd], plain RMSNorm weights (x * w) */
    df_weight wq, wk, wv, wo;            /* n_embd -> n_head*head_dim, n_head_kv*head_dim (x2),
                                            n_head*head_dim -> n_embd */
    df_weight q_norm, k_norm;            /* [head_dim] */
    df_weight ffn_gate, ffn_up, ffn_down;
} df_dflash_layer;

typedef struct df_dflash_draft {
    df_dflash_hparams hp;
    df_backend *be;
    char *source;            /* file or directory, for messages */
    df_weight fc;            /* n_capture * n_embd -> n_embd */
    df_weight hidden_norm, output_norm; /* [n_embd] */
    df_dflash_layer *layers; /* [n_layer] */
    float *inv_freq;         /* backend buffer, [head_dim / 2] */
    /* what the loader keeps alive for the weights */
    df_gguf *own_gguf;
    struct df_ckpt *ckpt;
    void **host;             /* host buffers bound as weights (converted vectors, copies) */
    int n_host, cap_host;
} df_dflash_draft;

/* ---- loading -------------------------------------------------------------------------- */

/* From a GGUF (general.architecture "qwen35-dflash-draft"); g must outlive the drafter. */
df_status df_dflash_draft_load_gguf(const df_gguf *g, df_backend *be, df_dflash_draft **out);
/* From a z-lab checkpoint directory: config.json + model.safetensors (or a sharded index). */
df_status df_dflash_draft_load_dir(const char *dir, df_backend *be, df_dflash_draft **out);
/* Either: a directory is a checkpoint, anything else is opened as a GGUF (kept open by the
 * drafter). */
df_status df_dflash_draft_open(const char *path, df_backend *be, df_dflash_draft **out);
void df_dflash_draft_free(df_dflash_draft *d);

/* Hyperparameters alone (the loaders call these first). */
df_status df_dflash_read_hparams_gguf(const df_gguf *g, df_dflash_hparams *hp);
df_status df_dflash_read_hparams_config(const df_config *cfg, df_dflash_hparams *hp);

/* rope_theta of a config.json: rope_parameters.rope_theta first (transformers 5, Qwen3.6
 * drafters), then the top-level rope_theta (older files); neither is an error naming the
 * file. A wrong theta is silent (the drafter just accepts less), hence no default. */
df_status df_dflash_config_rope_theta(const df_config *cfg, float *out);

/* The reference's choice of target layers when a drafter does not name them (z-lab
 * build_target_layer_ids): n == 1 gives [n_target / 2]; otherwise n values spread evenly
 * over [1, n_target - 3], rounded half to even as Python's round() does. */
df_status df_dflash_default_layer_ids(int64_t target_n_layer, int64_t n, int32_t *ids);

/* ---- the target it drafts for ---------------------------------------------------------- */

/* DF_ERR_MISMATCH with the reason when the drafter cannot serve this target: hidden size,
 * vocabulary (the mask token must be a target token; a declared vocabulary must match),
 * the depth it was trained against, a capture layer beyond the target's depth (or its last
 * layer, whose hidden state the reference takes after the final norm). */
df_status df_dflash_draft_check_target(const df_dflash_draft *d, const df_qwen35_hparams *target);
/* The target layers the engine must capture for this drafter (n_capture entries): the
 * file's list, or the reference default for this target's depth. Checks the fit first. */
df_status df_dflash_draft_capture_layers(const df_dflash_draft *d, const df_qwen35_hparams *target,
                                         int32_t *ids);

/* ---- state and forward ------------------------------------------------------------------ */

/* A drafting session: the draft KV cache of every committed context row (sliding layers
 * keep a ring of their window), the block buffers and the logits, all allocated once. */
typedef struct df_dflash_state {
    const df_dflash_draft *d;
    const df_weight *tok_embd;  /* the target's embedding table [n_vocab][n_embd] */
    const df_weight *lm_head;   /* the target's LM head [n_vocab][n_embd] */
    int64_t n_vocab;
    int64_t n_ctx;              /* most context rows that can be committed */
    int64_t block_size;         /* most block tokens per draft step */
    int64_t chunk;              /* context rows per internal commit batch */
    int64_t n_committed;        /* context rows in the cache = position of the next bonus */
    df_kv_type kv_type;
    df_kv_cache *kv;            /* [n_layer]; a ring of kv[l].n_ctx rows (position p in row
                                   p % n_ctx): n_ctx + block rows for full layers (never
                                   wraps), window + block for sliding layers */
    int32_t *ids, *pos;         /* [max(block, chunk)] */
    float *feat;                /* [chunk][n_capture * n_embd]: packed features (commit) */
    float *x, *h, *proj;        /* [rows][n_embd] */
    float *q, *k, *v, *attn;    /* [rows][heads * head_dim] */
    float *ff_a, *ff_b;         /* [block][n_ff] */
    float *logits;              /* [block - 1][n_vocab]: block rows 1 .. n-1 */
    int32_t *argmax;            /* [block - 1] */
    /* Recorded draft steps (model/graph_cache.h): NULL when the backend cannot record. */
    struct df_graph_cache *graphs;
} df_dflash_state;

/* block_size 0 means the drafter's own. Calls df_dflash_draft_check_target. The target
 * must outlive the state. */
df_status df_dflash_state_create(const df_dflash_draft *d, const df_qwen35 *target, int64_t n_ctx,
                                 int64_t block_size, df_kv_type kv_type, df_dflash_state **out);
/* The same with the embedding table and LM head given directly (tests, other targets);
 * both [n_vocab][n_embd] (ne[0] = n_embd), bound to the drafter's backend. */
df_status df_dflash_state_create_with(const df_dflash_draft *d, const df_weight *tok_embd,
                                      const df_weight *lm_head, int64_t n_ctx, int64_t block_size,
                                      df_kv_type kv_type, df_dflash_state **out);
void df_dflash_state_free(df_dflash_state *s);
/* Forget the context (n_committed = 0). */
void df_dflash_state_reset(df_dflash_state *s);

/* Appends n_rows context rows at positions n_committed ..: the target's hidden states of
 * the newly accepted tokens, one pointer per capture layer in layer_ids order, hidden[i]
 * being [n_rows][n_embd] in backend memory (the rows a df_qwen35_capture wrote, from row
 * 0). Only these rows are projected; rows drafted for block positions are never kept. */
df_status df_dflash_state_commit(df_dflash_state *s, const float *const *hidden, int64_t n_rows);
/* The same from packed rows: feat is [n_rows][n_capture * n_embd] in backend memory. */
df_status df_dflash_state_commit_packed(df_dflash_state *s, const float *feat, int64_t n_rows);

/* One draft step for the block [bonus, MASK x (n_block - 1)] at positions n_committed ..:
 * s->logits rows 0 .. n_block - 2 (block positions 1 .. n_block - 1) and their argmax in
 * s->argmax. 2 <= n_block <= s->block_size. Leaves the committed context as it was. */
df_status df_dflash_state_draft(df_dflash_state *s, int32_t bonus, int64_t n_block);

#endif
