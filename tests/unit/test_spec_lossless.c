/* Chain speculative decoding is lossless: under greedy decoding its output equals plain
 * autoregressive output token for token, and the state it leaves behind equals the state
 * of an AR run over the same tokens.
 *
 * A random drafter rarely agrees with the target, so the engine is driven by an oracle
 * drafter (tests/common/oracle_drafter.c): it knows the AR output and proposes it with
 * mistakes injected so that the number of accepted drafts cycles through every value
 * 0..B-1, exercising every rollback.
 * Models: the tiny transformers fixtures converted to f32 GGUF. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/rng.h"
#include "common/oracle_drafter.h"
#include "engine/generate.h"
#include "format/gguf.h"
#include "helpers/fixture_models.h"
#include "model/qwen35.h"

#define MAX_TOK 512

typedef test_model model;

/* ---- runs ---------------------------------------------------------------------------- */

typedef struct collected {
    int32_t tok[MAX_TOK];
    int n;
} collected;

static int collect(void *user, int32_t token, const char *text, size_t len) {
    collected *c = user;
    if (token >= 0 && c->n < MAX_TOK) c->tok[c->n++] = token;
    return 0;
}

typedef struct result {
    collected out;
    dflash_gen_stats stats;
    int64_t n_past;
    float *probe_logits; /* logits after feeding one more token to the final state */
} result;

static df_state_type g_capture_type = DF_STATE_F32;

static void run(model *mo, const int32_t *prompt, int n_prompt, int n_predict, const int32_t *eog,
                int n_eog, test_oracle *o, int block, result *res) {
    df_qwen35_state *st;
    cr_assert_eq(df_qwen35_state_create(mo->m, 256, 32, DF_KV_F32, &st), DF_OK, "%s", df_last_error());
    df_spec *sp = NULL;
    df_drafter d = test_oracle_drafter(o);
    if (o) {
        cr_assert_eq(df_spec_create(st, &d, block, g_capture_type, &sp), DF_OK, "%s", df_last_error());
        test_oracle_reset(o);
    }
    dflash_gen_params p = dflash_gen_default_params();
    p.n_predict = n_predict;
    memset(&res->out, 0, sizeof res->out);
    df_gen_request r = {.prompt = prompt, .n_prompt = (size_t)n_prompt, .p = &p, .cb = collect,
                        .user = &res->out, .eog = eog, .n_eog = n_eog};
    cr_assert_eq(df_generate(st, sp, &r, &res->stats), DF_OK, "%s", df_last_error());
    res->n_past = st->n_past;
    /* Probe the state: one more token, all logits of it. */
    int32_t probe = 1;
    cr_assert_eq(df_qwen35_forward(st, &probe, 1, DF_LOGITS_LAST, NULL), DF_OK);
    size_t nv = (size_t)mo->m->hp.n_vocab;
    res->probe_logits = malloc(nv * sizeof(float));
    memcpy(res->probe_logits, st->logits, nv * sizeof(float));
    df_spec_free(sp);
    df_qwen35_state_free(st);
}

/* The AR state after exactly the tokens the speculative state holds: prompt + generated
 * tokens fed one by one; then the same probe. */
static void ar_probe(model *mo, const int32_t *prompt, int n_prompt, const collected *gen,
                     int64_t n_past, float *out) {
    df_qwen35_state *st;
    cr_assert_eq(df_qwen35_state_create(mo->m, 256, 32, DF_KV_F32, &st), DF_OK);
    cr_assert_eq(df_qwen35_forward(st, prompt, n_prompt, DF_LOGITS_LAST, NULL), DF_OK);
    for (int64_t i = 0; i < n_past - n_prompt; i++)
        cr_assert_eq(df_qwen35_forward(st, &gen->tok[i], 1, DF_LOGITS_LAST, NULL), DF_OK);
    int32_t probe = 1;
    cr_assert_eq(df_qwen35_forward(st, &probe, 1, DF_LOGITS_LAST, NULL), DF_OK);
    memcpy(out, st->logits, (size_t)mo->m->hp.n_vocab * sizeof(float));
    df_qwen35_state_free(st);
}

/* Returns false when the case cannot be built (eos_inside on a model whose greedy output
 * repeats one token: no later token can be declared end-of-generation without also ending
 * the output at its start). */
static bool check_lossless(model *mo, const int32_t *prompt, int n_prompt, int n_predict,
                           bool eos_inside, const char *label) {
    /* AR reference, long enough to know every token the target would produce. */
    result ar;
    run(mo, prompt, n_prompt, n_predict + 20, NULL, 0, NULL, 0, &ar);
    free(ar.probe_logits);
    int32_t eog[1];
    int n_eog = 0;
    if (eos_inside) {
        /* Declare the first generated token from the 4th on that did not occur before it
         * end-of-generation: both runs must stop right before it, inside a block. */
        for (int i = 3; i < ar.out.n && !n_eog; i++) {
            bool seen = false;
            for (int j = 0; j < i; j++) seen |= ar.out.tok[j] == ar.out.tok[i];
            if (!seen) {
                eog[0] = ar.out.tok[i];
                n_eog = 1;
            }
        }
        if (!n_eog) return false;
    }
    int32_t seq[MAX_TOK + 64];
    int n_seq = 0;
    for (int i = 0; i < n_prompt; i++) seq[n_seq++] = prompt[i];
    for (int i = 0; i < ar.out.n; i++) seq[n_seq++] = ar.out.tok[i];

    result want;
    run(mo, prompt, n_prompt, n_predict, eog, n_eog, NULL, 0, &want);
    for (int block = 2; block <= 16; block *= 2) {
        test_oracle o;
        test_oracle_init(&o, seq, n_seq, (int32_t)mo->m->hp.n_vocab);
        result got;
        run(mo, prompt, n_prompt, n_predict, eog, n_eog, &o, block, &got);
        cr_expect_eq(o.bonus_mismatch, 0, "%s B=%d: the engine's bonus token left the AR sequence", label, block);
        cr_expect_eq(got.out.n, want.out.n, "%s B=%d n=%d: %d tokens, AR gave %d", label, block, n_predict,
                     got.out.n, want.out.n);
        int first_diff = -1;
        for (int i = 0; i < got.out.n && i < want.out.n; i++)
            if (got.out.tok[i] != want.out.tok[i]) {
                first_diff = i;
                break;
            }
        cr_expect_eq(first_diff, -1, "%s B=%d: token %d differs (%d vs AR %d)", label, block, first_diff,
                     first_diff >= 0 ? got.out.tok[first_diff] : 0, first_diff >= 0 ? want.out.tok[first_diff] : 0);
        cr_expect_eq(got.stats.stop, want.stats.stop, "%s B=%d: stop reason %d vs AR %d", label, block,
                     got.stats.stop, want.stats.stop);
        cr_expect(got.stats.n_verify > 0, "%s B=%d: no verify ran", label, block);
        /* The state left behind equals an AR state over the same tokens, bit for bit (with
         * f32 capture; f16 capture rounds the rolled-back state, so only tokens are compared). */
        if (g_capture_type != DF_STATE_F32) {
            free(got.probe_logits);
            continue;
        }
        float *ref = malloc((size_t)mo->m->hp.n_vocab * sizeof(float));
        ar_probe(mo, prompt, n_prompt, &got.out, got.n_past, ref);
        int n_diff = 0;
        for (int64_t v = 0; v < mo->m->hp.n_vocab; v++) n_diff += got.probe_logits[v] != ref[v];
        cr_expect_eq(n_diff, 0, "%s B=%d: %d logits of the committed state differ from AR's", label, block, n_diff);
        free(ref);
        free(got.probe_logits);
    }
    free(want.probe_logits);
    return true;
}

static void suite(const char *name, bool eos_case_required) {
    model mo;
    test_model_load(&mo, name);
    df_rng rng;
    df_rng_seed(&rng, 99);
    int n_eos_cases = 0;
    /* 4 prompts per model (x 3 models = 12): two of natural ids, two random, of varied length. */
    for (int pi = 0; pi < 4; pi++) {
        int32_t prompt[40];
        int n_prompt = 3 + 9 * pi;
        for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)df_rng_below(&rng, (uint32_t)mo.m->hp.n_vocab);
        static const int lengths[] = {1, 5, 37};
        for (int li = 0; li < 3; li++) {
            char label[128];
            snprintf(label, sizeof label, "%s prompt %d (%d tokens) n=%d", name, pi, n_prompt, lengths[li]);
            check_lossless(&mo, prompt, n_prompt, lengths[li], false, label);
        }
        char label[128];
        snprintf(label, sizeof label, "%s prompt %d with EOS inside a block", name, pi);
        n_eos_cases += check_lossless(&mo, prompt, n_prompt, 30, true, label);
    }
    if (eos_case_required) cr_expect(n_eos_cases > 0, "%s: no prompt gave an EOS-inside-a-block case", name);
    test_model_free(&mo);
}

Test(spec_lossless, tiny_a, .timeout = 600) { suite("tiny_a", true); }
/* tiny_vh's greedy output repeats its last prompt token, so it has no EOS case. */
Test(spec_lossless, tiny_vh, .timeout = 600) { suite("tiny_vh", false); }
Test(spec_lossless, tiny_alt, .timeout = 600) { suite("tiny_alt", true); }

/* f16 capture storage halves the rollback memory. The rolled-back recurrent state is then
 * rounded to f16, so states are not bit-identical to AR's; the greedy output must still be. */
Test(spec_lossless, tiny_a_f16_capture, .timeout = 600) {
    g_capture_type = DF_STATE_F16;
    suite("tiny_a", true);
}
Test(spec_lossless, tiny_alt_f16_capture, .timeout = 600) {
    g_capture_type = DF_STATE_F16;
    suite("tiny_alt", true);
}
