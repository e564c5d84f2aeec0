/* The two ways speculative decoding rolls the GDN layers back (engine/spec.h) give the same
 * bits: replay (state saved before the verify, the accepted tokens' recurrence run again on
 * commit) and capture (every token's state written by the verify, one copied back).
 *
 * The reference for "the state after n tokens" is a plain forward of those n tokens, which
 * the batch-invariant ops make bitwise equal to the first n tokens of a longer call; it is
 * not computed by the code under test. Models: the tiny transformers fixtures (f32 GGUF).
 * Random prompts and random drafts (never zeros). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/rng.h"
#include "engine/spec.h"
#include "format/gguf.h"
#include "helpers/fixture_models.h"
#include "model/qwen35.h"

typedef test_model model;

static void random_ids(df_rng *r, const df_qwen35 *m, int32_t *ids, int n) {
    for (int i = 0; i < n; i++) ids[i] = (int32_t)df_rng_below(r, (uint32_t)m->hp.n_vocab);
}

/* The recurrent part of a state (every GDN layer's conv and recurrent state), host copy. */
static unsigned char *recurrent_copy(const df_qwen35_state *st) {
    const size_t n = df_qwen35_recurrent_bytes(st->m);
    unsigned char *p = malloc(n);
    cr_assert_not_null(p);
    cr_assert_eq(df_qwen35_state_save_recurrent(st, p, n), DF_OK, "%s", df_last_error());
    return p;
}

/* Nonzero bytes that differ: a state of zeros would make equal states meaningless. */
static void expect_same_state(const df_qwen35_state *a, const df_qwen35_state *b, const char *what) {
    const size_t n = df_qwen35_recurrent_bytes(a->m);
    unsigned char *pa = recurrent_copy(a), *pb = recurrent_copy(b);
    size_t n_diff = 0, n_nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        n_diff += pa[i] != pb[i];
        n_nonzero += pa[i] != 0;
    }
    cr_expect_eq(n_diff, 0, "%s: %zu of %zu state bytes differ", what, n_diff, n);
    cr_expect(n_nonzero > n / 4, "%s: the state is mostly zeros (%zu of %zu bytes set)", what, n_nonzero, n);
    free(pa);
    free(pb);
}

/* Per-GDN-layer buffers of a replay capture for up to T tokens, in one struct. */
typedef struct replay_bufs {
    df_backend *be;
    int n_gdn;
    float **arr[6];
    df_qwen35_capture cap;
} replay_bufs;

static void replay_bufs_init(replay_bufs *rb, const df_qwen35_state *st, int64_t T) {
    const df_qwen35_hparams *hp = &st->m->hp;
    const size_t C = (size_t)df_qwen35_conv_channels(hp), H = (size_t)hp->n_v_head;
    const size_t sizes[6] = {(size_t)(hp->n_v_head * hp->d_k * hp->d_v), (size_t)(hp->conv_kernel - 1) * C,
                             (size_t)T * C, (size_t)T * C, (size_t)T * H, (size_t)T * H};
    memset(rb, 0, sizeof *rb);
    rb->be = st->m->be;
    rb->n_gdn = st->n_gdn;
    for (int k = 0; k < 6; k++) {
        rb->arr[k] = calloc((size_t)st->n_gdn, sizeof(float *));
        for (int g = 0; g < st->n_gdn; g++)
            cr_assert_eq(rb->be->ops->alloc(rb->be, sizes[k] * sizeof(float), (void **)&rb->arr[k][g]), DF_OK);
    }
    rb->cap = (df_qwen35_capture){.replay = true, .ssm_before = rb->arr[0], .conv_before = rb->arr[1],
                                  .qkv_in = rb->arr[2], .qkv = rb->arr[3], .gate = rb->arr[4],
                                  .beta = rb->arr[5]};
}

static void replay_bufs_free(replay_bufs *rb) {
    for (int k = 0; k < 6; k++) {
        for (int g = 0; g < rb->n_gdn; g++) rb->be->ops->free(rb->be, rb->arr[k][g]);
        free(rb->arr[k]);
    }
}

/* After a forward of T tokens with a replay capture, df_qwen35_replay(n) leaves the GDN state
 * a forward of the first n tokens leaves, for every n, including where n < K-1 (the conv state
 * then keeps rows from before the call) and n = T. */
static void replay_matches_forward(const char *name) {
    model mo;
    test_model_load(&mo, name);
    df_rng r;
    df_rng_seed(&r, 7);
    const int T = 16, n_prompt = 11;
    int32_t prompt[16], block[16];
    random_ids(&r, mo.m, prompt, n_prompt);
    random_ids(&r, mo.m, block, T);
    df_qwen35_state *a, *b;
    cr_assert_eq(df_qwen35_state_create(mo.m, 128, 32, DF_KV_F32, &a), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_qwen35_state_create(mo.m, 128, 32, DF_KV_F32, &b), DF_OK, "%s", df_last_error());
    replay_bufs rb;
    replay_bufs_init(&rb, a, T);
    const size_t rec = df_qwen35_recurrent_bytes(mo.m);
    unsigned char *after_prompt = malloc(rec);
    cr_assert_eq(df_qwen35_forward(a, prompt, n_prompt, DF_LOGITS_LAST, NULL), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_qwen35_state_save_recurrent(a, after_prompt, rec), DF_OK);
    for (int n = 1; n <= T; n++) {
        /* a: the whole block with a replay capture, rewound to n tokens */
        cr_assert_eq(df_qwen35_state_load_recurrent(a, after_prompt, rec), DF_OK);
        cr_assert_eq(df_qwen35_state_truncate(a, n_prompt), DF_OK);
        cr_assert_eq(df_qwen35_forward(a, block, T, DF_LOGITS_ALL, &rb.cap), DF_OK, "%s", df_last_error());
        cr_assert_eq(df_qwen35_replay(a, &rb.cap, n), DF_OK, "%s", df_last_error());
        /* b: the prompt, then only the first n tokens */
        cr_assert_eq(df_qwen35_state_reset(b), DF_OK);
        cr_assert_eq(df_qwen35_forward(b, prompt, n_prompt, DF_LOGITS_LAST, NULL), DF_OK);
        cr_assert_eq(df_qwen35_forward(b, block, n, DF_LOGITS_LAST, NULL), DF_OK);
        char what[96];
        snprintf(what, sizeof what, "%s: replay of %d of %d tokens", name, n, T);
        expect_same_state(a, b, what);
    }
    free(after_prompt);
    replay_bufs_free(&rb);
    df_qwen35_state_free(a);
    df_qwen35_state_free(b);
    test_model_free(&mo);
}

Test(spec_rollback, replay_matches_forward_tiny_a, .timeout = 300) { replay_matches_forward("tiny_a"); }
Test(spec_rollback, replay_matches_forward_tiny_vh, .timeout = 300) { replay_matches_forward("tiny_vh"); }

/* ---- the engine: both rollbacks side by side -------------------------------------------- */

/* A drafter that proposes random tokens: how many are accepted is then mostly 0, so the
 * commits below choose n themselves (any n in 1..B is a valid commit). */
typedef struct rand_drafter {
    df_rng r;
    int32_t n_vocab;
} rand_drafter;

static df_status rd_reset(void *self) { return DF_OK; }
static df_status rd_append(void *self, float *const *f, int64_t n) { return DF_OK; }
static df_status rd_propose(void *self, int32_t bonus, int n, int32_t *out) {
    rand_drafter *d = self;
    for (int i = 0; i < n; i++) out[i] = (int32_t)df_rng_below(&d->r, (uint32_t)d->n_vocab);
    return DF_OK;
}

static df_drafter make_drafter(rand_drafter *rd, int block) {
    df_drafter d = {.self = rd, .block_size = block, .n_features = 1, .feature_layers = {0},
                    .reset = rd_reset, .append_context = rd_append, .propose = rd_propose};
    return d;
}

static df_spec *spec_with(df_qwen35_state *st, df_drafter *d, int block, const char *rollback) {
    cr_assert_eq(setenv("DFLASH_SPEC_ROLLBACK", rollback, 1), 0);
    df_spec *sp = NULL;
    cr_assert_eq(df_spec_create(st, d, block, DF_STATE_F32, &sp), DF_OK, "%s", df_last_error());
    unsetenv("DFLASH_SPEC_ROLLBACK");
    return sp;
}

/* Same drafts, same commits: the two sessions' states and the target's tokens stay equal
 * after every step, through commits of every size 1..B. */
static void engines_agree(const char *name, int block) {
    model mo;
    test_model_load(&mo, name);
    df_qwen35_state *sa, *sb;
    cr_assert_eq(df_qwen35_state_create(mo.m, 512, 32, DF_KV_F32, &sa), DF_OK);
    cr_assert_eq(df_qwen35_state_create(mo.m, 512, 32, DF_KV_F32, &sb), DF_OK);
    rand_drafter ra = {.n_vocab = (int32_t)mo.m->hp.n_vocab}, rb = ra;
    df_rng_seed(&ra.r, 3);
    df_rng_seed(&rb.r, 3);
    df_drafter da = make_drafter(&ra, block), db = make_drafter(&rb, block);
    df_spec *replay = spec_with(sa, &da, block, "replay"), *capture = spec_with(sb, &db, block, "capture");
    cr_assert_eq(replay->rollback, DF_ROLLBACK_REPLAY);
    cr_assert_eq(capture->rollback, DF_ROLLBACK_CAPTURE);
    df_rng r;
    df_rng_seed(&r, 11);
    int32_t prompt[9];
    random_ids(&r, mo.m, prompt, 9);
    cr_assert_eq(df_spec_prefill(replay, prompt, 9), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_spec_prefill(capture, prompt, 9), DF_OK, "%s", df_last_error());
    int32_t bonus = prompt[8];
    for (int step = 0; step < 2 * block; step++) {
        int ma, mb;
        cr_assert_eq(df_spec_verify(replay, bonus, &ma), DF_OK, "%s", df_last_error());
        cr_assert_eq(df_spec_verify(capture, bonus, &mb), DF_OK, "%s", df_last_error());
        cr_assert_eq(ma, mb);
        for (int i = 0; i < block; i++)
            cr_expect_eq(replay->target[i], capture->target[i], "%s B=%d step %d: target token %d differs", name,
                         block, step, i);
        const int n = 1 + step % block; /* every commit size, the whole block included */
        cr_assert_eq(df_spec_commit(replay, n), DF_OK, "%s", df_last_error());
        cr_assert_eq(df_spec_commit(capture, n), DF_OK, "%s", df_last_error());
        cr_expect_eq(sa->n_past, sb->n_past);
        char what[96];
        snprintf(what, sizeof what, "%s B=%d step %d (commit %d)", name, block, step, n);
        expect_same_state(sa, sb, what);
        bonus = replay->target[n - 1];
    }
    df_spec_free(replay);
    df_spec_free(capture);
    df_qwen35_state_free(sa);
    df_qwen35_state_free(sb);
    test_model_free(&mo);
}

Test(spec_rollback, engines_agree_tiny_a_b4, .timeout = 300) { engines_agree("tiny_a", 4); }
Test(spec_rollback, engines_agree_tiny_alt_b16, .timeout = 300) { engines_agree("tiny_alt", 16); }
Test(spec_rollback, engines_agree_tiny_vh_b7, .timeout = 300) { engines_agree("tiny_vh", 7); }

/* The CPU picks replay unless told otherwise; f16 states exist only as captures. */
Test(spec_rollback, default_choice, .timeout = 300) {
    model mo;
    test_model_load(&mo, "tiny_a");
    unsetenv("DFLASH_SPEC_ROLLBACK");
    df_qwen35_state *st;
    cr_assert_eq(df_qwen35_state_create(mo.m, 64, 16, DF_KV_F32, &st), DF_OK);
    rand_drafter rd = {.n_vocab = (int32_t)mo.m->hp.n_vocab};
    df_rng_seed(&rd.r, 5);
    df_drafter d = make_drafter(&rd, 8);
    df_spec *sp = NULL;
    cr_assert_eq(df_spec_create(st, &d, 8, DF_STATE_F32, &sp), DF_OK, "%s", df_last_error());
    cr_expect_eq(sp->rollback, DF_ROLLBACK_REPLAY);
    df_spec_free(sp);
    cr_assert_eq(df_spec_create(st, &d, 8, DF_STATE_F16, &sp), DF_OK, "%s", df_last_error());
    cr_expect_eq(sp->rollback, DF_ROLLBACK_CAPTURE);
    df_spec_free(sp);
    df_qwen35_state_free(st);
    test_model_free(&mo);
}

/* Bad calls are errors with a message, not crashes. */
Test(spec_rollback, bad_calls_fail_cleanly, .timeout = 300) {
    model mo;
    test_model_load(&mo, "tiny_a");
    df_qwen35_state *st;
    cr_assert_eq(df_qwen35_state_create(mo.m, 64, 32, DF_KV_F32, &st), DF_OK);
    replay_bufs rb;
    replay_bufs_init(&rb, st, 32);
    df_rng r;
    df_rng_seed(&r, 13);
    int32_t ids[8];
    random_ids(&r, mo.m, ids, 8);
    df_qwen35_capture none = {0};
    cr_expect_eq(df_qwen35_replay(st, &none, 1), DF_ERR_INVALID);
    cr_expect(strstr(df_last_error(), "replay") != NULL, "message: %s", df_last_error());
    cr_expect_eq(df_qwen35_replay(st, NULL, 1), DF_ERR_INVALID);
    cr_expect_eq(df_qwen35_replay(st, &rb.cap, 0), DF_ERR_INVALID);
    cr_expect_eq(df_qwen35_replay(st, &rb.cap, 33), DF_ERR_INVALID);
    /* a call long enough for the chunked GDN form cannot be replayed: refused up front */
    st->gdn_chunked_min = 4;
    cr_expect_eq(df_qwen35_forward(st, ids, 8, DF_LOGITS_LAST, &rb.cap), DF_ERR_INVALID);
    cr_expect(strstr(df_last_error(), "replay") != NULL, "message: %s", df_last_error());
    cr_expect_eq(st->n_past, 0, "a refused forward must not advance the state");
    /* both kinds of capture at once is a caller's mistake */
    st->gdn_chunked_min = 64;
    df_qwen35_capture both = rb.cap;
    both.gdn = true;
    cr_expect_eq(df_qwen35_forward(st, ids, 4, DF_LOGITS_LAST, &both), DF_ERR_INVALID);
    replay_bufs_free(&rb);
    df_qwen35_state_free(st);
    test_model_free(&mo);
}
