/* Chain speculative decoding with fast rollback.
 *
 * One step: the drafter proposes B-1 tokens after the pending token (the "bonus", chosen but
 * not yet in the target's state); the target runs [bonus, d1 .. d(B-1)] in one forward,
 * capturing the hidden states the drafter reads and what the GDN layers need to roll back;
 * the caller accepts the longest prefix of drafts that equal the target's own argmax and
 * commits n tokens: attention rows are truncated to n, the recurrent and conv state are set
 * to those after token n-1 (no second target pass), and the drafter's context grows by the n
 * committed rows only. The target's token after the last committed one is the next bonus.
 *
 * Every target op is batch-invariant (backend.h), so greedy output is byte-identical to
 * plain autoregressive decoding.
 *
 * Two ways to roll the GDN layers back (df_spec_rollback): capture (the verify writes every
 * token's recurrent state, commit copies one back) and replay (the verify keeps the state from
 * before it and each token's small recurrence inputs, commit re-runs the accepted tokens'
 * recurrence). Replay is the default wherever states are f32: on a CPU the embedded pair's
 * 16-token verify would otherwise write 12 MiB of states per step, which leave the cache,
 * where re-running ~4 accepted tokens reads 768 KiB that are still in it; on an H100 the
 * 27B's 16-token capture writes 2.4 GB per verify (~0.8 ms) where the replay moves ~0.6 GB
 * (docs/PERF.md). Both are recorded as graphs per accepted count on backends that record
 * (df_qwen35_replay, df_qwen35_restore_capture). Replay and an f32 capture give the same bits
 * (an f16 capture rounds the restored state; it is the only choice for f16 states).
 *
 * Memory (allocated once), per GDN layer: capture B x (n_v_head x d_k x d_v x (4 or 2 bytes)
 * + (K-1) x conv channels x 4 bytes); replay n_v_head x d_k x d_v x 4 + (K-1 + 2B) x conv
 * channels x 4 + 2B x n_v_head x 4 bytes; plus max_batch x n_embd x 4 bytes per feature
 * layer. */
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

typedef enum df_spec_rollback {
    DF_ROLLBACK_CAPTURE = 0,    /* per-token states written by the verify */
    DF_ROLLBACK_REPLAY = 1,     /* saved state + recurrence inputs, re-run on commit */
} df_spec_rollback;

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
    df_spec_rollback rollback;
    bool sync_phases;                           /* commit waits for the device (timings) */
    float *hidden[DF_SPEC_MAX_FEATURES];        /* [max_batch][n_embd] each */
    /* capture: */
    void **gdn_state;                           /* [n_gdn] x [B][n_v_head][d_k][d_v] */
    float **conv_state;                         /* [n_gdn] x [B][K-1][channels] */
    /* replay: [n_gdn] x the buffers of df_qwen35_capture's replay fields */
    float **rp_ssm, **rp_conv, **rp_qkv_in, **rp_qkv, **rp_gate, **rp_beta;
    df_qwen35_capture cap_features, cap_verify;
    /* the last verify */
    int64_t verify_base;                        /* n_past before it */
    int32_t tokens[DF_SPEC_MAX_BLOCK];          /* what it ran: bonus, drafts */
    int32_t target[DF_SPEC_MAX_BLOCK];          /* the target's argmax after each */
    df_spec_stats stats;
} df_spec;

/* The block a session takes when none is asked for: the drafter's own, but at most
 * DF_SPEC_CPU_BLOCK on the CPU, where a verify of B tokens costs more than one decode step
 * per few tokens (compute-bound matmuls) and a drafter step grows with B too, so the extra
 * acceptance of a long block does not pay for it: over the held-out prompts on a 2-core CPU,
 * B = 4 beat 2, 3, 5, 6, 8 and 16 (docs/PERF.md, "CPU: where a speculative step's time
 * goes"). */
#define DF_SPEC_CPU_BLOCK 4
int df_spec_default_block(const df_backend *be, int drafter_block);

/* block <= the drafter's block size and <= the state's max_batch, >= 2. The rollback is
 * chosen here: capture when state_type is f16 (a choice only capture has), replay otherwise;
 * the environment variable DFLASH_SPEC_ROLLBACK=capture or =replay overrides it
 * (measurements, tests). */
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
