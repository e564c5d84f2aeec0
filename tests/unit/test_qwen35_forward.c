/* The qwen35 forward pass against transformers.
 *
 * Each fixture under tests/fixtures/qwen35/ is a tiny random Qwen3_5ForCausalLM checkpoint
 * with the logits transformers computed for it in float64 (scripts/make_fixtures.py). Here
 * the checkpoint goes through `dflash convert`, the GGUF through our loader and forward, and
 * every logit row is compared with the reference:
 *   - f32 weights: max relative error <= 1e-4 (per row, max |ours - ref| / max |ref|), and
 *     the same greedy tokens at every step;
 *   - q8_0 weights: <= 2e-2, and the same greedy tokens wherever the reference is decisive,
 *     i.e. its top-1/top-2 gap is larger than twice the error the tolerance allows (4 x tol
 *     x max |logit|). A quantized model cannot be asked to break near-ties the way the
 *     float64 reference does; at decisive steps a different token is a real error.
 * for a whole-prompt prefill, a prefill in uneven chunks, a prefill through the chunked GDN
 * form, and decode after rewinding (attention rows truncated, GDN state restored). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "format/gguf.h"
#include "helpers/fixture_models.h"
#include "model/qwen35.h"

#define MAX_SEQ 128

typedef struct ref_case {
    int32_t seq[MAX_SEQ];
    int n_seq, n_prompt;
    int n_vocab;
    float *logits; /* [n_seq - 1][n_vocab] */
} ref_case;

typedef struct fixture {
    char gguf[1024];
    char dir[1024];
    df_gguf *g;
    df_backend *be;
    df_qwen35 *m;
} fixture;

static void read_case(const char *fixture_dir, int index, ref_case *c) {
    char path[600];
    snprintf(path, sizeof path, "%s/reference.json", fixture_dir);
    json_error_t err;
    json_t *ref = json_load_file(path, 0, &err);
    cr_assert_not_null(ref, "%s: %s", path, err.text);
    json_t *cs = json_array_get(json_object_get(ref, "cases"), (size_t)index);
    cr_assert_not_null(cs);
    json_t *seq = json_object_get(cs, "sequence");
    c->n_seq = (int)json_array_size(seq);
    cr_assert(c->n_seq > 1 && c->n_seq <= MAX_SEQ);
    for (int i = 0; i < c->n_seq; i++) c->seq[i] = (int32_t)json_integer_value(json_array_get(seq, (size_t)i));
    c->n_prompt = (int)json_integer_value(json_object_get(cs, "n_prompt"));
    json_t *shape = json_object_get(cs, "shape");
    cr_assert_eq(json_integer_value(json_array_get(shape, 0)), c->n_seq - 1);
    c->n_vocab = (int)json_integer_value(json_array_get(shape, 1));
    snprintf(path, sizeof path, "%s/%s", fixture_dir, json_string_value(json_object_get(cs, "logits")));
    size_t n = (size_t)(c->n_seq - 1) * (size_t)c->n_vocab;
    c->logits = malloc(n * sizeof(float));
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fread(c->logits, sizeof(float), n, f), n, "%s: short", path);
    fclose(f);
    json_decref(ref);
}

static void open_fixture(fixture *fx, const char *name, const char *type) {
    test_fixture_dir(name, fx->dir, sizeof fx->dir);
    cr_assert_eq(test_fixture_gguf(name, type, fx->gguf, sizeof fx->gguf), 0,
                 "dflash convert failed for %s --type %s", name, type);
    cr_assert_eq(df_gguf_open(fx->gguf, &fx->g), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_backend_cpu_create(2, &fx->be), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_qwen35_load(fx->g, fx->be, &fx->m), DF_OK, "%s", df_last_error());
}

static void close_fixture(fixture *fx) {
    df_qwen35_free(fx->m);
    df_backend_destroy(fx->be);
    df_gguf_close(fx->g);
}

/* max |a - b| / max |b| over one row */
static double row_error(const float *a, const float *b, int n) {
    double num = 0.0, den = 0.0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= num)) num = d; /* NaN propagates as a failure */
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num / den;
}

typedef struct check {
    double tol;
    bool all_tokens;     /* every greedy token must match (else only decisive ones) */
    double worst;
    int token_mismatches;
    int tokens_checked;
    int rows;
} check;

/* Top-1 minus top-2 of a reference row, and its largest magnitude. */
static void ref_gap(const float *row, int n, double *gap, double *maxabs) {
    double a = -INFINITY, b = -INFINITY, m = 0.0;
    for (int i = 0; i < n; i++) {
        double v = row[i];
        if (v > a) {
            b = a;
            a = v;
        } else if (v > b) {
            b = v;
        }
        if (fabs(v) > m) m = fabs(v);
    }
    *gap = a - b;
    *maxabs = m;
}

static void check_rows(df_qwen35_state *s, const ref_case *c, int first_row, int n_rows,
                       check *ck) {
    for (int r = 0; r < n_rows; r++) {
        int ref_row = first_row + r;
        double e = row_error(s->logits + (size_t)r * (size_t)c->n_vocab,
                             c->logits + (size_t)ref_row * (size_t)c->n_vocab, c->n_vocab);
        if (!(e <= ck->worst)) ck->worst = e;
        ck->rows++;
        /* Rows before the last prompt token predict prompt tokens, not greedy ones. */
        if (ref_row < c->n_prompt - 1) continue;
        const float *ref = c->logits + (size_t)ref_row * (size_t)c->n_vocab;
        double gap, maxabs;
        ref_gap(ref, c->n_vocab, &gap, &maxabs);
        if (!ck->all_tokens && gap <= 4.0 * ck->tol * maxabs) continue;
        ck->tokens_checked++;
        if (s->argmax[r] != c->seq[ref_row + 1]) ck->token_mismatches++;
    }
}

/* Prefill the prompt in pieces of `chunk` tokens (all logits), then decode the rest of the
 * reference sequence one token at a time. */
static void run_case(df_qwen35_state *s, const ref_case *c, int chunk, check *ck) {
    for (int t = 0; t < c->n_prompt; t += chunk) {
        int n = c->n_prompt - t < chunk ? c->n_prompt - t : chunk;
        cr_assert_eq(df_qwen35_forward(s, c->seq + t, n, DF_LOGITS_ALL, NULL), DF_OK, "%s",
                     df_last_error());
        check_rows(s, c, t, n, ck);
    }
    for (int t = c->n_prompt; t < c->n_seq - 1; t++) {
        cr_assert_eq(df_qwen35_forward(s, c->seq + t, 1, DF_LOGITS_LAST, NULL), DF_OK, "%s",
                     df_last_error());
        check_rows(s, c, t, 1, ck);
    }
}

static void expect(const check *ck, const char *what, bool tokens_must_match) {
    cr_assert(ck->rows > 0);
    /* A check that compared no token would prove nothing. */
    cr_expect(ck->tokens_checked > 0, "%s: no decisive greedy step to compare", what);
    cr_expect(ck->worst <= ck->tol, "%s: max relative logit error %.3g > %.3g over %d rows", what,
              ck->worst, ck->tol, ck->rows);
    if (tokens_must_match)
        cr_expect_eq(ck->token_mismatches, 0, "%s: %d of %d greedy tokens differ from transformers",
                     what, ck->token_mismatches, ck->tokens_checked);
}

static void run_fixture(const char *name, const char *type, double tol) {
    fixture fx;
    open_fixture(&fx, name, type);
    for (int ci = 0; ci < 3; ci++) {
        ref_case c;
        read_case(fx.dir, ci, &c);
        cr_assert_eq(c.n_vocab, fx.m->hp.n_vocab);
        df_qwen35_state *s;
        cr_assert_eq(df_qwen35_state_create(fx.m, 96, 32, DF_KV_F32, &s), DF_OK, "%s", df_last_error());
        char what[160];

        /* 1. whole prompt, then decode */
        check ck = {.tol = tol, .all_tokens = tol <= 1e-3};
        run_case(s, &c, c.n_prompt, &ck);
        snprintf(what, sizeof what, "%s/%s case %d (prefill + decode)", name, type, ci);
        expect(&ck, what, true);

        /* 2. uneven prefill chunks */
        cr_assert_eq(df_qwen35_state_reset(s), DF_OK);
        check ck2 = {.tol = tol, .all_tokens = tol <= 1e-3};
        run_case(s, &c, 7, &ck2);
        snprintf(what, sizeof what, "%s/%s case %d (prefill in chunks of 7)", name, type, ci);
        expect(&ck2, what, true);

        /* 3. the chunked GDN form for the prompt */
        cr_assert_eq(df_qwen35_state_reset(s), DF_OK);
        s->gdn_chunked_min = 8;
        check ck3 = {.tol = tol, .all_tokens = tol <= 1e-3};
        run_case(s, &c, c.n_prompt, &ck3);
        s->gdn_chunked_min = DF_QWEN35_GDN_CHUNKED_MIN;
        snprintf(what, sizeof what, "%s/%s case %d (chunked GDN prefill)", name, type, ci);
        expect(&ck3, what, true);

        /* 4. rewind: decode 5 tokens, truncate back to the prompt, restore the GDN state
         *    saved after the prompt, and decode everything again */
        cr_assert_eq(df_qwen35_state_reset(s), DF_OK);
        cr_assert_eq(df_qwen35_forward(s, c.seq, c.n_prompt, DF_LOGITS_LAST, NULL), DF_OK);
        size_t rb = df_qwen35_recurrent_bytes(fx.m);
        void *snap = malloc(rb);
        cr_assert_eq(df_qwen35_state_save_recurrent(s, snap, rb), DF_OK);
        for (int t = c.n_prompt; t < c.n_prompt + 5; t++)
            cr_assert_eq(df_qwen35_forward(s, c.seq + t, 1, DF_LOGITS_LAST, NULL), DF_OK);
        cr_assert_eq(df_qwen35_state_truncate(s, c.n_prompt), DF_OK);
        cr_assert_eq(df_qwen35_state_load_recurrent(s, snap, rb), DF_OK);
        check ck4 = {.tol = tol, .all_tokens = tol <= 1e-3};
        for (int t = c.n_prompt; t < c.n_seq - 1; t++) {
            cr_assert_eq(df_qwen35_forward(s, c.seq + t, 1, DF_LOGITS_LAST, NULL), DF_OK);
            check_rows(s, &c, t, 1, &ck4);
        }
        snprintf(what, sizeof what, "%s/%s case %d (decode after truncation)", name, type, ci);
        expect(&ck4, what, true);
        free(snap);
        df_qwen35_state_free(s);
        free(c.logits);
    }
    close_fixture(&fx);
}

Test(qwen35_forward, tiny_a_f32) { run_fixture("tiny_a", "f32", 1e-4); }
Test(qwen35_forward, tiny_vh_f32) { run_fixture("tiny_vh", "f32", 1e-4); }
Test(qwen35_forward, tiny_alt_f32) { run_fixture("tiny_alt", "f32", 1e-4); }
Test(qwen35_forward, tiny_a_q8_0) { run_fixture("tiny_a", "q8_0", 2e-2); }
Test(qwen35_forward, tiny_vh_q8_0) { run_fixture("tiny_vh", "q8_0", 2e-2); }
Test(qwen35_forward, tiny_alt_q8_0) { run_fixture("tiny_alt", "q8_0", 2e-2); }

/* The f16 KV cache (the default) keeps the greedy tokens of the f32 weights. */
Test(qwen35_forward, f16_kv_cache_keeps_tokens) {
    fixture fx;
    open_fixture(&fx, "tiny_vh", "f32");
    ref_case c;
    read_case(fx.dir, 0, &c);
    df_qwen35_state *s;
    cr_assert_eq(df_qwen35_state_create(fx.m, 96, 32, DF_KV_F16, &s), DF_OK, "%s", df_last_error());
    check ck = {.tol = 5e-3, .all_tokens = true};
    run_case(s, &c, c.n_prompt, &ck);
    expect(&ck, "tiny_vh/f32 with an f16 KV cache", true);
    df_qwen35_state_free(s);
    free(c.logits);
    close_fixture(&fx);
}
Test(qwen35_forward, tiny_alt_bf16) { run_fixture("tiny_alt", "bf16", 2e-2); }
