/* The qwen35 target: Qwen3.5 / Qwen3.6 hybrid models (Gated DeltaNet layers with a full
 * gated-attention layer every few layers), loaded from GGUF files as llama.cpp's converter
 * (and ours) writes them, and its forward pass written against the backend op table.
 *
 * docs/QWEN35_FORMAT.md lists the metadata keys, tensor names, shapes and the transforms the
 * converters apply; this file only uses GGUF conventions (norm weights already hold 1 + w,
 * ssm_a = -exp(A_log), value heads in tiled order when they outnumber key heads). */
#ifndef DF_MODEL_QWEN35_H
#define DF_MODEL_QWEN35_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "format/gguf.h"

#define DF_QWEN35_MAX_LAYERS 256
/* Most rows of logits one forward returns: a verify needs block-size rows; a long prefill
 * needs one. Bounds the logits buffer (rows x vocabulary floats). */
#define DF_QWEN35_MAX_LOGIT_ROWS 64
/* Prefill calls at least this long use the chunked GDN form. Decode and verify calls stay
 * below it, so a verify of B tokens computes exactly what B decode steps compute. */
#define DF_QWEN35_GDN_CHUNKED_MIN 64
/* Forwards of at most this many tokens are recorded for replay (decode steps, verifies). */
#define DF_QWEN35_GRAPH_MAX_TOKENS 32

typedef enum df_layer_kind { DF_LAYER_GDN = 0, DF_LAYER_ATTENTION = 1 } df_layer_kind;

typedef struct df_qwen35_hparams {
    int64_t n_vocab;
    int64_t n_embd;
    int64_t n_layer;
    int64_t n_ff;
    int64_t n_ctx_train;
    float rms_eps;
    /* gated attention */
    int64_t n_head, n_head_kv, head_dim;
    int64_t rot_dim;            /* rotary dims per head (head_dim / 4 in released models) */
    float rope_theta;
    /* Gated DeltaNet */
    int64_t conv_kernel;        /* K of the causal depthwise conv */
    int64_t n_k_head, d_k;      /* key heads (ssm.group_count) and their dim (ssm.state_size) */
    int64_t n_v_head, d_v;      /* value heads (ssm.time_step_rank) and their dim */
    int64_t full_attn_interval; /* every interval-th layer (1-based) is attention */
    int64_t n_nextn;            /* MTP layers at the end (loaded, not used) */
    df_layer_kind kind[DF_QWEN35_MAX_LAYERS];
} df_qwen35_hparams;

/* Channels of the GDN conv: q, k (n_k_head * d_k each) and v (n_v_head * d_v). */
static inline int64_t df_qwen35_conv_channels(const df_qwen35_hparams *hp) {
    return 2 * hp->n_k_head * hp->d_k + hp->n_v_head * hp->d_v;
}

typedef struct df_qwen35_layer {
    df_layer_kind kind;
    df_weight attn_norm, post_attn_norm;
    df_weight ffn_gate, ffn_up, ffn_down;
    /* attention layers */
    df_weight wq;      /* [n_embd] -> n_head * head_dim * 2: per head [q | gate] */
    df_weight wk, wv, wo, q_norm, k_norm;
    /* GDN layers */
    df_weight wqkv;    /* [n_embd] -> conv channels */
    df_weight wgate;   /* [n_embd] -> n_v_head * d_v (z) */
    df_weight wbeta, walpha; /* [n_embd] -> n_v_head */
    df_weight conv1d;  /* [channels][K] */
    df_weight dt_bias, ssm_a; /* [n_v_head] */
    df_weight ssm_norm;       /* [d_v] */
    df_weight ssm_out;        /* n_v_head * d_v -> n_embd */
} df_qwen35_layer;

typedef struct df_qwen35 {
    df_qwen35_hparams hp;
    df_backend *be;
    df_weight tok_embd, output_norm, output; /* output aliases tok_embd when tied */
    bool tied;
    df_qwen35_layer *layers;  /* [n_layer] */
    float *inv_freq;          /* backend buffer, [rot_dim / 2] */
} df_qwen35;

/* Reads hyperparameters and binds every weight; the GGUF must outlive the model. A
 * missing, extra or wrongly shaped tensor, or metadata that disagrees with the tensors, is
 * an error naming it. */
df_status df_qwen35_load(const df_gguf *g, df_backend *be, df_qwen35 **out);
void df_qwen35_free(df_qwen35 *m);

/* Hyperparameters alone (the loader calls this first; `inspect` and tests use it too). */
df_status df_qwen35_read_hparams(const df_gguf *g, df_qwen35_hparams *hp);


/* ---- state and forward ----------------------------------------------------------------- */

/* What one forward may capture for speculative decoding. Buffers belong to the caller
 * (backend memory) and hold up to the state's max_batch tokens. */
typedef struct df_qwen35_capture {
    /* Hidden states after these layers (0-based; the residual stream leaving the layer),
     * hidden[i] is [n_tok][n_embd]. */
    int n_hidden;
    const int *hidden_layers;
    float **hidden;
    /* Per GDN layer g (in layer order, df_qwen35_state.gdn_index maps layer -> g):
     * gdn_state[g] is [n_tok][n_v_head][d_k][d_v] of state_type, the recurrent state after
     * each token; conv_state[g] is [n_tok][K-1][channels], the conv state after each token. */
    bool gdn;
    void **gdn_state;
    float **conv_state;
    df_state_type state_type;
    /* Replay, the alternative to gdn (set one or neither): per GDN layer g the forward keeps
     * the state from before the call, ssm_before[g] [n_v_head][d_k][d_v] and conv_before[g]
     * [K-1][channels], and writes the recurrence inputs of every token straight into
     * qkv_in[g] (the conv's input) and qkv[g] (its output, q and k l2-normed), both
     * [n_tok][channels], and gate[g] / beta[g] [n_tok][n_v_head], in place of its scratch.
     * df_qwen35_replay then rebuilds the state after any prefix of the call by running that
     * prefix's recurrence again: a few KiB per token kept instead of a whole state per token
     * (on a CPU the per-token states of a 16-token verify leave the cache; on a GPU they are
     * cheap, and a fixed kernel sequence suits its recorded graphs). */
    bool replay;
    float **ssm_before, **conv_before, **qkv_in, **qkv, **gate, **beta;
} df_qwen35_capture;

typedef struct df_qwen35_state {
    const df_qwen35 *m;
    int64_t n_ctx;       /* KV capacity in tokens */
    int64_t max_batch;   /* most tokens per forward call */
    int64_t n_past;      /* tokens already in the caches */
    int64_t gdn_chunked_min; /* calls of at least this many tokens use the chunked GDN form
                                (default DF_QWEN35_GDN_CHUNKED_MIN); shorter ones the
                                batch-invariant recurrent form */
    df_kv_type kv_type;
    df_kv_cache *kv;     /* [n_layer]; used for attention layers only */
    float **conv;        /* [n_layer]; GDN layers: [K-1][channels], slices of conv_all */
    float *conv_all;     /* [n_gdn][K-1][channels], in GDN layer order */
    float **ssm;         /* [n_layer]; GDN layers: [n_v_head][d_k][d_v] */
    int *gdn_index;      /* [n_layer]: index among GDN layers, -1 for attention layers */
    int n_gdn;
    /* per-call activations (backend memory), each sized for max_batch tokens */
    int32_t *ids, *pos;
    float *x, *h, *proj;  /* [n_embd] per token: residual stream, normed input, layer output */
    float *wide_a;        /* GDN qkv | attention q+gate | FFN gate */
    float *wide_b;        /* GDN conv output | attention k | FFN up */
    float *mid_a;         /* GDN z | attention v */
    float *mid_b;         /* GDN core output | attention output */
    float *gate_a, *gate_b, *g, *beta; /* [n_v_head] per token */
    int64_t logit_rows;   /* capacity of logits: min(max_batch, DF_QWEN35_MAX_LOGIT_ROWS) */
    float *logits;        /* [logit_rows][n_vocab] */
    int32_t *argmax;      /* [logit_rows] */
    /* Recorded forwards of up to DF_QWEN35_GRAPH_MAX_TOKENS tokens, on backends that can
     * replay them (model/graph_cache.h); NULL when off. */
    struct df_graph_cache *graphs;
} df_qwen35_state;

df_status df_qwen35_state_create(const df_qwen35 *m, int64_t n_ctx, int64_t max_batch,
                                 df_kv_type kv_type, df_qwen35_state **out);
void df_qwen35_state_free(df_qwen35_state *s);
/* Forget everything: n_past = 0, conv and recurrent states zeroed. */
df_status df_qwen35_state_reset(df_qwen35_state *s);
/* Drop attention rows at positions >= n (n <= n_past). The GDN states cannot be rewound
 * this way: the caller restores them (from a capture or a snapshot) to match. */
df_status df_qwen35_state_truncate(df_qwen35_state *s, int64_t n);
/* The recurrent part of the state (every GDN layer's conv and recurrent state), for
 * snapshots: copy it out to host memory and back. Attention rows are rewound with
 * df_qwen35_state_truncate instead. */
size_t df_qwen35_recurrent_bytes(const df_qwen35 *m);
df_status df_qwen35_state_save_recurrent(const df_qwen35_state *s, void *dst, size_t size);
df_status df_qwen35_state_load_recurrent(df_qwen35_state *s, const void *src, size_t size);
/* Bytes of one token's GDN capture across all GDN layers (recurrent + conv), for sizing. */
size_t df_qwen35_capture_bytes_per_token(const df_qwen35 *m, df_state_type type);

typedef enum df_logits_mode {
    DF_LOGITS_NONE = 0, /* no LM head (prefill chunks before the last) */
    DF_LOGITS_LAST,     /* logits of the last token only, in s->logits row 0 */
    DF_LOGITS_ALL,      /* logits of every token, s->logits rows 0..n_tok-1 */
} df_logits_mode;

/* Runs n_tok tokens (ids in host memory) at positions n_past.., appends them to the state
 * and computes logits as asked (s->logits, [rows][n_vocab]) and their argmax (s->argmax).
 * capture may be NULL. n_tok <= max_batch and n_past + n_tok <= n_ctx. */
df_status df_qwen35_forward(df_qwen35_state *s, const int32_t *ids, int64_t n_tok,
                            df_logits_mode mode, const df_qwen35_capture *capture);

/* After a forward of n_tok tokens that ran with a replay capture (cap->replay): sets every
 * GDN layer's recurrent and conv state to what it was after the first n of those tokens
 * (1 <= n <= n_tok), by restoring the saved state and running the recurrence of tokens
 * 0..n-1 again with the same kernel on the same inputs, so the result is bitwise what the
 * forward computed. Attention rows are not touched (set n_past or truncate). Without graphs
 * the saved recurrent state is restored by exchanging buffers: s->ssm[l] and
 * cap->ssm_before[g] trade places (both are backend buffers of one state's size; whoever
 * holds one at the end frees it); with graphs (whose recordings hold the state's addresses)
 * it is copied back. Run it once per forward; the next forward with the capture saves again.
 * Recorded per n where the backend records (s->graphs). */
df_status df_qwen35_replay(df_qwen35_state *s, df_qwen35_capture *cap, int64_t n);
/* After a forward of n_tok tokens that ran with a per-token capture (cap->gdn): sets every
 * GDN layer's recurrent and conv state to the captured one after token n-1 (1 <= n <=
 * n_tok). Recorded per n like the replay. */
df_status df_qwen35_restore_capture(df_qwen35_state *s, df_qwen35_capture *cap, int64_t n);

/* A prompt of any length: forwards of up to max_batch tokens, logits (DF_LOGITS_LAST) only
 * for the last one. With a capture, on_chunk(ctx, n) runs after each forward of n tokens, while
 * the capture buffers hold that chunk (the speculative engine feeds its drafter there). */
df_status df_qwen35_prefill(df_qwen35_state *s, const int32_t *ids, size_t n,
                            const df_qwen35_capture *capture,
                            df_status (*on_chunk)(void *ctx, int64_t n_tokens), void *ctx);

#endif
