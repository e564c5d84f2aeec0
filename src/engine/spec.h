/* Chain speculative decoding with fast rollback.
 *
 * One step: the drafter proposes B-1 tokens after the pending token (the "bonus", chosen but
 * not yet in the target's state); the target runs [bonus, d1 .. d(B-1)] in one forward,
 * capturing the hidden states the drafter reads and the GDN state after every token; the
 * caller accepts the longest prefix of drafts that equal the target's own argmax and commits
 * n tokens: attention rows are truncated to n, the recurrent and conv state of token n-1 are
 * copied back from the capture (no second target pass), and the drafter's context grows by
 * the n committed rows only. The target's token after the last committed one is the next
 * bonus.
 *
 * Every target op is batch-invariant (backend.h), so greedy output is byte-identical to
 * plain autoregressive decoding.
 *
 * Capture memory (allocated once): per GDN layer B x (n_v_head x d_k x d_v x (4 or 2 bytes)
 * + (K-1) x conv channels x 4 bytes), plus max_batch x n_embd x 4 bytes per feature layer. */
#ifndef DF_ENGINE_SPEC_H
#define DF_ENGINE_SPEC_H

#include "model/qwen35.h"

#define DF_SPEC_MAX_BLOCK 32
#define DF_SPEC_MAX_FEATURES 16

/* What the engine needs from a drafter. */
typedef struct df_drafter {
    void *self;
    int block_size;                 /* the largest B it drafts for */
    int n_features;                 /* target layers whose hidden states it reads */
    int feature_layers[DF_SPEC_MAX_FEATURES];
    /* Forget the context (a new sequence starts). */
    df_status (*reset)(void *self);
    /* Hidden states of newly committed positions: features[i] is [n_rows][n_embd] in
     * backend memory, after target layer feature_layers[i]. */
    df_status (*append_context)(void *self, float *const *features, int64_t n_rows);
    /* n draft tokens that follow bonus (which sits right after the context). */
    df_status (*propose)(void *self, int32_t bonus, int n, int32_t *out);
} df_drafter;

typedef struct df_spec_stats {
    int64_t n_verify;                           /* verify forwards */
    int64_t n_accepted;                         /* drafts accepted, summed */
    int64_t accept_hist[DF_SPEC_MAX_BLOCK];     /* verifies by number of drafts accepted */
    double t_draft, t_verify, t_commit;         /* seconds */
} df_spec_stats;

typedef struct df_spec {
    df_qwen35_state *st;
    df_drafter *d;
    int block;                                  /* B for this session */
    df_state_type state_type;
    float *hidden[DF_SPEC_MAX_FEATURES];        /* [max_batch][n_embd] each */
    void **gdn_state;                           /* [n_gdn] x [B][n_v_head][d_k][d_v] */
    float **conv_state;                         /* [n_gdn] x [B][K-1][channels] */
    df_qwen35_capture cap_features, cap_verify;
    /* the last verify */
    int64_t verify_base;                        /* n_past before it */
    int32_t tokens[DF_SPEC_MAX_BLOCK];          /* what it ran: bonus, drafts */
    int32_t target[DF_SPEC_MAX_BLOCK];          /* the target's argmax after each */
    df_spec_stats stats;
} df_spec;

/* block <= the drafter's block size and <= the state's max_batch, >= 2. */
df_status df_spec_create(df_qwen35_state *st, df_drafter *d, int block, df_state_type state_type,
                         df_spec **out);
void df_spec_free(df_spec *sp);

/* Target prefill (chunks of max_batch) that also feeds the drafter the prompt's features;
 * leaves the last token's logits and argmax in the state, like an AR prefill. */
df_status df_spec_prefill(df_spec *sp, const int32_t *ids, size_t n);

/* Drafts and verifies after bonus. Returns in *n_match how many drafts equal the target's
 * argmax (0..B-1); sp->tokens / sp->target hold the block. Nothing is committed yet: the
 * state holds all B tokens until df_spec_commit. */
df_status df_spec_verify(df_spec *sp, int32_t bonus, int *n_match);

/* Keeps the first n tokens (1..B) of the last verify in the target state and hands their
 * features to the drafter. */
df_status df_spec_commit(df_spec *sp, int n);

#endif
