/* cuda_model_check: the qwen35 forward and speculative decoding on the CUDA backend, on the
 * committed fixtures (tests/fixtures/qwen35/, tests/fixtures/dflash/). A plain C program for
 * the GPU machine (no Criterion there); scripts/gpu-check.sh runs it.
 *
 *   cuda_model_check [WORK_DIR]     (WORK_DIR receives the converted GGUFs; default /tmp)
 *
 * Checks, each one row of the table:
 *   1. logits vs transformers (float64 reference logits of the fixtures), at the CPU tests'
 *      tolerances: f32 weights <= 1e-4 relative per row and every greedy token equal; q8_0
 *      <= 2e-2 and the decisive tokens equal; for a whole-prompt prefill + decode, a prefill
 *      in chunks of 7, and decode after rewinding (attention truncated, recurrent state
 *      restored from a host snapshot);
 *   2. a prefill longer than the small-batch limit (cuBLAS path, unsplit attention) against
 *      the CPU backend;
 *   3. a 16-token verify reproduces 16 decode steps bit for bit (logits);
 *   4. lossless speculative decoding driven by an oracle drafter that accepts 0..B-1 drafts
 *      in turn (every rollback length), blocks 2..16, f32 and f16 capture and the replay
 *      rollback (recorded per accepted count): output equals AR token for token, and (f32)
 *      the state left behind equals AR's bit for bit;
 *   5. the real DFlash drafter fixtures through the public API with device "cuda": the
 *      speculative output equals the AR output. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/backend.h"
#include "base/rng.h"
#include "common/oracle_drafter.h"
#include "dflash.h"
#include "engine/generate.h"
#include "engine/spec.h"
#include "format/gguf.h"
#include "model/graph_cache.h"
#include "model/qwen35.h"

#define MAX_SEQ 128
#define MAX_TOK 512

static int g_fail, g_rows;
static const char *g_work = "/tmp";

static void row(const char *what, const char *detail, double err, double tol, bool ok) {
    printf("%-44s %-40s %10.2e %9.1e  %s\n", what, detail, err, tol, ok ? "PASS" : "FAIL");
    fflush(stdout);
    g_rows++;
    if (!ok) g_fail++;
}

static void row_msg(const char *what, const char *detail, const char *msg, bool ok) {
    printf("%-44s %-40s %20s  %s\n", what, detail, msg, ok ? "PASS" : "FAIL");
    fflush(stdout);
    g_rows++;
    if (!ok) g_fail++;
}

#define TRY_OR(expr, what, detail, action)                                  \
    do {                                                                    \
        if ((expr) != DF_OK) {                                              \
            char m_[300];                                                   \
            snprintf(m_, sizeof m_, "%.290s", df_last_error());             \
            printf("%-44s %-40s error: %s  FAIL\n", what, detail, m_);      \
            g_rows++;                                                       \
            g_fail++;                                                       \
            action;                                                         \
        }                                                                   \
    } while (0)

/* ---- fixtures ---- */

static int convert(const char *name, const char *type, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s-%s.gguf", g_work, name, type);
    struct stat s;
    if (stat(path, &s) == 0) return 0;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' convert '%s/tests/fixtures/qwen35/%s' '%s' --type %s >/dev/null 2>&1", DFLASH_CLI,
             DFLASH_SOURCE_DIR, name, path, type);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct ref_case {
    int32_t seq[MAX_SEQ];
    int n_seq, n_prompt, n_vocab;
    float *logits; /* [n_seq - 1][n_vocab] */
} ref_case;

static bool read_case(const char *name, int index, ref_case *c) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/qwen35/%s/reference.json", DFLASH_SOURCE_DIR, name);
    json_error_t err;
    json_t *ref = json_load_file(path, 0, &err);
    if (!ref) return false;
    json_t *cs = json_array_get(json_object_get(ref, "cases"), (size_t)index);
    json_t *seq = json_object_get(cs, "sequence");
    c->n_seq = (int)json_array_size(seq);
    if (c->n_seq < 2 || c->n_seq > MAX_SEQ) {
        json_decref(ref);
        return false;
    }
    for (int i = 0; i < c->n_seq; i++) c->seq[i] = (int32_t)json_integer_value(json_array_get(seq, (size_t)i));
    c->n_prompt = (int)json_integer_value(json_object_get(cs, "n_prompt"));
    c->n_vocab = (int)json_integer_value(json_array_get(json_object_get(cs, "shape"), 1));
    snprintf(path, sizeof path, "%s/tests/fixtures/qwen35/%s/%s", DFLASH_SOURCE_DIR, name,
             json_string_value(json_object_get(cs, "logits")));
    json_decref(ref);
    const size_t n = (size_t)(c->n_seq - 1) * (size_t)c->n_vocab;
    c->logits = malloc(n * sizeof(float));
    FILE *f = fopen(path, "rb");
    if (!f || fread(c->logits, sizeof(float), n, f) != n) {
        if (f) fclose(f);
        free(c->logits);
        return false;
    }
    fclose(f);
    return true;
}

typedef struct model {
    df_gguf *g;
    df_backend *be;
    df_qwen35 *m;
} model;

static df_status open_model(const char *path, df_backend *be, model *mo) {
    memset(mo, 0, sizeof *mo);
    mo->be = be;
    DF_TRY(df_gguf_open(path, &mo->g));
    df_status st = df_qwen35_load(mo->g, be, &mo->m);
    if (st != DF_OK) df_gguf_close(mo->g);
    return st;
}

static void close_model(model *mo) {
    df_qwen35_free(mo->m);
    df_gguf_close(mo->g);
}

/* ---- 1. against transformers ---- */

typedef struct check {
    double tol, worst;
    bool all_tokens;
    int mismatches, checked, rows;
} check;

static double row_error(const float *a, const float *b, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= num)) num = d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num / den;
}

static df_status check_rows(df_qwen35_state *s, const ref_case *c, int first, int n_rows, check *ck) {
    df_backend *be = s->m->be;
    const size_t nv = (size_t)c->n_vocab;
    float *logits = malloc((size_t)n_rows * nv * sizeof(float));
    int32_t am[64];
    df_status st = be->ops->download(be, logits, s->logits, (size_t)n_rows * nv * sizeof(float));
    if (st == DF_OK) st = be->ops->download(be, am, s->argmax, (size_t)n_rows * sizeof(int32_t));
    for (int r = 0; st == DF_OK && r < n_rows; r++) {
        const int rr = first + r;
        const float *ref = c->logits + (size_t)rr * nv;
        const double e = row_error(logits + (size_t)r * nv, ref, c->n_vocab);
        if (!(e <= ck->worst)) ck->worst = e;
        ck->rows++;
        if (rr < c->n_prompt - 1) continue;
        double a = -INFINITY, b = -INFINITY, mx = 0;
        for (int i = 0; i < c->n_vocab; i++) {
            if (ref[i] > a) {
                b = a;
                a = ref[i];
            } else if (ref[i] > b) {
                b = ref[i];
            }
            if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
        }
        if (!ck->all_tokens && a - b <= 4.0 * ck->tol * mx) continue;
        ck->checked++;
        if (am[r] != c->seq[rr + 1]) ck->mismatches++;
    }
    free(logits);
    return st;
}

static df_status run_case(df_qwen35_state *s, const ref_case *c, int chunk, check *ck) {
    for (int t = 0; t < c->n_prompt; t += chunk) {
        const int n = c->n_prompt - t < chunk ? c->n_prompt - t : chunk;
        DF_TRY(df_qwen35_forward(s, c->seq + t, n, DF_LOGITS_ALL, NULL));
        DF_TRY(check_rows(s, c, t, n, ck));
    }
    for (int t = c->n_prompt; t < c->n_seq - 1; t++) {
        DF_TRY(df_qwen35_forward(s, c->seq + t, 1, DF_LOGITS_LAST, NULL));
        DF_TRY(check_rows(s, c, t, 1, ck));
    }
    return DF_OK;
}

static void report(const char *what, const char *detail, const check *ck) {
    const bool ok = ck->rows > 0 && ck->checked > 0 && ck->worst <= ck->tol && ck->mismatches == 0;
    char d[96];
    snprintf(d, sizeof d, "%s; %d/%d tokens", detail, ck->checked - ck->mismatches, ck->checked);
    row(what, d, ck->worst, ck->tol, ok);
}

static void check_transformers(df_backend *gpu, const char *name, const char *type, double tol) {
    char path[1024], what[96];
    snprintf(what, sizeof what, "vs transformers %s %s", name, type);
    if (convert(name, type, path, sizeof path)) {
        row_msg(what, "", "dflash convert failed", false);
        return;
    }
    model mo;
    TRY_OR(open_model(path, gpu, &mo), what, "load", return);
    check modes[3];
    for (int i = 0; i < 3; i++) modes[i] = (check){.tol = tol, .all_tokens = tol <= 1e-3};
    bool ok = true;
    for (int ci = 0; ci < 3 && ok; ci++) {
        ref_case c;
        if (!read_case(name, ci, &c)) {
            row_msg(what, "reference.json", "cannot read", false);
            ok = false;
            break;
        }
        df_qwen35_state *s = NULL;
        void *snap = NULL;
        TRY_OR(df_qwen35_state_create(mo.m, 96, 32, DF_KV_F32, &s), what, "state", ok = false);
        if (ok) TRY_OR(run_case(s, &c, c.n_prompt, &modes[0]), what, "prefill + decode", ok = false);
        if (ok) TRY_OR(df_qwen35_state_reset(s), what, "reset", ok = false);
        if (ok) TRY_OR(run_case(s, &c, 7, &modes[1]), what, "chunks of 7", ok = false);
        /* rewind: snapshot after the prompt, decode, truncate + restore, decode again */
        if (ok) {
            const size_t bytes = df_qwen35_recurrent_bytes(mo.m);
            snap = malloc(bytes);
            TRY_OR(df_qwen35_state_reset(s), what, "reset", ok = false);
            if (ok) TRY_OR(df_qwen35_forward(s, c.seq, c.n_prompt, DF_LOGITS_LAST, NULL), what, "prefill", ok = false);
            if (ok) TRY_OR(df_qwen35_state_save_recurrent(s, snap, bytes), what, "save", ok = false);
            for (int t = c.n_prompt; ok && t < c.n_seq - 1; t++)
                TRY_OR(df_qwen35_forward(s, c.seq + t, 1, DF_LOGITS_LAST, NULL), what, "decode", ok = false);
            if (ok) TRY_OR(df_qwen35_state_truncate(s, c.n_prompt), what, "truncate", ok = false);
            if (ok) TRY_OR(df_qwen35_state_load_recurrent(s, snap, bytes), what, "load", ok = false);
            for (int t = c.n_prompt; ok && t < c.n_seq - 1; t++) {
                TRY_OR(df_qwen35_forward(s, c.seq + t, 1, DF_LOGITS_LAST, NULL), what, "decode", ok = false);
                if (ok) TRY_OR(check_rows(s, &c, t, 1, &modes[2]), what, "rows", ok = false);
            }
        }
        free(snap);
        df_qwen35_state_free(s);
        free(c.logits);
    }
    if (ok) {
        char d[64];
        report(what, "prefill + decode", &modes[0]);
        report(what, "prefill in chunks of 7", &modes[1]);
        snprintf(d, sizeof d, "decode after rewind");
        report(what, d, &modes[2]);
    }
    close_model(&mo);
}

/* ---- 2. long prefill vs the CPU backend ---- */

static df_status logits_after(model *mo, const int32_t *ids, int n, int chunk, float *out) {
    df_qwen35_state *s;
    DF_TRY(df_qwen35_state_create(mo->m, 512, chunk, DF_KV_F16, &s));
    df_status st = df_qwen35_prefill(s, ids, (size_t)n, NULL, NULL, NULL);
    if (st == DF_OK)
        st = mo->be->ops->download(mo->be, out, s->logits, (size_t)mo->m->hp.n_vocab * sizeof(float));
    df_qwen35_state_free(s);
    return st;
}

static void check_long_prefill(df_backend *cpu, df_backend *gpu, const char *name, const char *type, double tol) {
    char path[1024], what[96];
    snprintf(what, sizeof what, "long prefill vs cpu %s %s", name, type);
    if (convert(name, type, path, sizeof path)) {
        row_msg(what, "", "dflash convert failed", false);
        return;
    }
    model mc, mg;
    TRY_OR(open_model(path, cpu, &mc), what, "load cpu", return);
    TRY_OR(open_model(path, gpu, &mg), what, "load cuda", close_model(&mc); return);
    const int n = 300;
    int32_t ids[300];
    df_rng rng;
    df_rng_seed(&rng, 7);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)df_rng_below(&rng, (uint32_t)mc.m->hp.n_vocab);
    const size_t nv = (size_t)mc.m->hp.n_vocab;
    float *lc = malloc(nv * sizeof(float)), *lg = malloc(nv * sizeof(float));
    bool ok = true;
    TRY_OR(logits_after(&mc, ids, n, 256, lc), what, "cpu", ok = false);
    if (ok) TRY_OR(logits_after(&mg, ids, n, 256, lg), what, "cuda", ok = false);
    if (ok) {
        const double e = row_error(lg, lc, (int)nv);
        row(what, "300 tokens in chunks of 256 and 44", e, tol, e <= tol);
    }
    free(lc);
    free(lg);
    close_model(&mg);
    close_model(&mc);
}

/* ---- 3. verify == decode, bit for bit ---- */

static void check_verify_bitwise(df_backend *gpu, const char *name, const char *type) {
    char path[1024], what[96];
    snprintf(what, sizeof what, "verify == decode %s %s", name, type);
    if (convert(name, type, path, sizeof path)) {
        row_msg(what, "", "dflash convert failed", false);
        return;
    }
    model mo;
    TRY_OR(open_model(path, gpu, &mo), what, "load", return);
    const int P = 23, B = 16;
    const size_t nv = (size_t)mo.m->hp.n_vocab;
    int32_t ids[39];
    df_rng rng;
    df_rng_seed(&rng, 11);
    for (int i = 0; i < P + B; i++) ids[i] = (int32_t)df_rng_below(&rng, (uint32_t)nv);
    float *lv = malloc((size_t)B * nv * sizeof(float)), *ld = malloc((size_t)B * nv * sizeof(float));
    df_qwen35_state *s = NULL;
    bool ok = true;
    TRY_OR(df_qwen35_state_create(mo.m, 128, 32, DF_KV_F16, &s), what, "state", ok = false);
    if (ok) TRY_OR(df_qwen35_forward(s, ids, P, DF_LOGITS_LAST, NULL), what, "prefill", ok = false);
    if (ok) TRY_OR(df_qwen35_forward(s, ids + P, B, DF_LOGITS_ALL, NULL), what, "verify", ok = false);
    if (ok) TRY_OR(gpu->ops->download(gpu, lv, s->logits, (size_t)B * nv * sizeof(float)), what, "download", ok = false);
    if (ok) TRY_OR(df_qwen35_state_reset(s), what, "reset", ok = false);
    if (ok) TRY_OR(df_qwen35_forward(s, ids, P, DF_LOGITS_LAST, NULL), what, "prefill", ok = false);
    for (int t = 0; ok && t < B; t++) {
        TRY_OR(df_qwen35_forward(s, ids + P + t, 1, DF_LOGITS_LAST, NULL), what, "decode", ok = false);
        if (ok) TRY_OR(gpu->ops->download(gpu, ld + (size_t)t * nv, s->logits, nv * sizeof(float)), what, "dl", ok = false);
    }
    if (ok) {
        long long diff = 0;
        for (size_t i = 0; i < (size_t)B * nv; i++) diff += memcmp(&lv[i], &ld[i], sizeof(float)) != 0;
        char d[96];
        snprintf(d, sizeof d, "16-token verify vs 16 steps: %lld differ", diff);
        row_msg(what, d, diff ? "DIFFER" : "bitwise", diff == 0);
    }
    df_qwen35_state_free(s);
    free(lv);
    free(ld);
    close_model(&mo);
}

/* ---- 3b. recorded forwards (CUDA graphs) == unrecorded, bit for bit ---- */

/* The same steps on two states of one model, one recording and replaying its forwards, the
 * other (DFLASH_GRAPHS=0 when it was created) running every op directly: a prefill, decode
 * steps, and 16-token verifies with state captures and rewinds as speculative decoding does
 * them. Every logits row must agree bit for bit, and the first state must have replayed. */
static void check_graphs(df_backend *gpu, const char *name, const char *type) {
    char path[1024], what[96];
    snprintf(what, sizeof what, "graphs == direct %s %s", name, type);
    if (convert(name, type, path, sizeof path)) {
        row_msg(what, "", "dflash convert failed", false);
        return;
    }
    model mo;
    TRY_OR(open_model(path, gpu, &mo), what, "load", return);
    const int P = 23, B = 16, STEPS = 40;
    const size_t nv = (size_t)mo.m->hp.n_vocab;
    int32_t ids[23 + 40 + 4 * 16];
    df_rng rng;
    df_rng_seed(&rng, 29);
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) ids[i] = (int32_t)df_rng_below(&rng, (uint32_t)nv);
    float *la = malloc((size_t)B * nv * sizeof(float)), *lb = malloc((size_t)B * nv * sizeof(float));
    df_qwen35_state *s[2] = {NULL, NULL};
    bool ok = true;
    TRY_OR(df_qwen35_state_create(mo.m, 256, 32, DF_KV_F16, &s[0]), what, "state", ok = false);
    setenv("DFLASH_GRAPHS", "0", 1);
    if (ok) TRY_OR(df_qwen35_state_create(mo.m, 256, 32, DF_KV_F16, &s[1]), what, "state", ok = false);
    unsetenv("DFLASH_GRAPHS");
    long long diff = 0, compared = 0;
    for (int k = 0; ok && k < 2; k++)
        TRY_OR(df_qwen35_forward(s[k], ids, P, DF_LOGITS_LAST, NULL), what, "prefill", ok = false);
    /* decode steps, then verifies that keep only part of their block (the rewind of n_past
     * is what a rejected draft does; the GDN state is left as the forward made it: both
     * states see the same sequence of operations, which is all this check needs) */
    int at = P;
    for (int step = 0; ok && step < STEPS + 4; step++) {
        const int T = step < STEPS ? 1 : B;
        const df_logits_mode mode = T == 1 ? DF_LOGITS_LAST : DF_LOGITS_ALL;
        for (int k = 0; ok && k < 2; k++) {
            TRY_OR(df_qwen35_forward(s[k], ids + at, T, mode, NULL), what, "forward", ok = false);
            if (ok) TRY_OR(gpu->ops->download(gpu, k ? lb : la, s[k]->logits, (size_t)T * nv * sizeof(float)),
                           what, "download", ok = false);
            if (ok && T == B) s[k]->n_past -= B - 3 - step % 5;
        }
        for (size_t i = 0; ok && i < (size_t)T * nv; i++) diff += memcmp(&la[i], &lb[i], sizeof(float)) != 0;
        compared += (long long)T * (long long)nv;
        at += T == B ? 3 + step % 5 : 1;
    }
    const int64_t replayed = s[0] ? df_graph_cache_replays(s[0]->graphs) : 0;
    const bool off = s[1] && !s[1]->graphs;
    if (ok) {
        char d[120];
        snprintf(d, sizeof d, "%lld of %lld logits differ; %lld replayed", diff, compared, (long long)replayed);
        row_msg(what, d, diff ? "DIFFER" : "bitwise", diff == 0 && off && replayed >= STEPS - 2);
    }
    for (int k = 0; k < 2; k++) df_qwen35_state_free(s[k]);
    free(la);
    free(lb);
    close_model(&mo);
}

/* ---- 4. lossless with an oracle drafter ---- */

/* The oracle drafter: tests/common/oracle_drafter.c (shared with test_spec_lossless.c). */

typedef struct collected {
    int32_t tok[MAX_TOK];
    int n;
} collected;

static int collect(void *user, int32_t token, const char *text, size_t len) {
    collected *c = user;
    if (token >= 0 && c->n < MAX_TOK) c->tok[c->n++] = token;
    return 0;
}

/* Generates n_predict tokens (AR when o is NULL); probe: logits after one more token. */
static df_status gen_run(model *mo, const int32_t *prompt, int n_prompt, int n_predict, test_oracle *o, int block,
                         df_state_type cap, collected *out, int64_t *n_past, float *probe) {
    df_qwen35_state *st;
    DF_TRY(df_qwen35_state_create(mo->m, 256, 32, DF_KV_F32, &st));
    df_spec *sp = NULL;
    df_drafter d = test_oracle_drafter(o);
    df_status rc = DF_OK;
    if (o) {
        rc = df_spec_create(st, &d, block, cap, &sp);
        test_oracle_reset(o);
    }
    dflash_gen_params p = dflash_gen_default_params();
    p.n_predict = n_predict;
    memset(out, 0, sizeof *out);
    df_gen_request r = {.prompt = prompt, .n_prompt = (size_t)n_prompt, .p = &p, .cb = collect, .user = out};
    dflash_gen_stats stats;
    if (rc == DF_OK) rc = df_generate(st, sp, &r, &stats);
    if (rc == DF_OK && o && stats.n_verify == 0) rc = df_fail(DF_ERR_INVALID, "no verify ran");
    *n_past = st->n_past;
    int32_t one = 1;
    if (rc == DF_OK && probe) rc = df_qwen35_forward(st, &one, 1, DF_LOGITS_LAST, NULL);
    if (rc == DF_OK && probe)
        rc = mo->be->ops->download(mo->be, probe, st->logits, (size_t)mo->m->hp.n_vocab * sizeof(float));
    df_spec_free(sp);
    df_qwen35_state_free(st);
    return rc;
}

/* The AR state over exactly the given tokens, fed one by one after the prompt; then the probe. */
static df_status ar_probe(model *mo, const int32_t *prompt, int n_prompt, const collected *g, int64_t n_past,
                          float *out) {
    df_qwen35_state *st;
    DF_TRY(df_qwen35_state_create(mo->m, 256, 32, DF_KV_F32, &st));
    df_status rc = df_qwen35_forward(st, prompt, n_prompt, DF_LOGITS_LAST, NULL);
    for (int64_t i = 0; rc == DF_OK && i < n_past - n_prompt; i++)
        rc = df_qwen35_forward(st, &g->tok[i], 1, DF_LOGITS_LAST, NULL);
    int32_t one = 1;
    if (rc == DF_OK) rc = df_qwen35_forward(st, &one, 1, DF_LOGITS_LAST, NULL);
    if (rc == DF_OK) rc = mo->be->ops->download(mo->be, out, st->logits, (size_t)mo->m->hp.n_vocab * sizeof(float));
    df_qwen35_state_free(st);
    return rc;
}

/* rollback: "capture" (per-token states of f32 or f16, cap) or "replay" (f32 only). */
static void check_lossless(df_backend *gpu, const char *name, df_state_type cap, const char *rollback) {
    char path[1024], what[96];
    snprintf(what, sizeof what, "spec == AR (oracle) %s %s %s", name, rollback, cap == DF_STATE_F16 ? "f16" : "f32");
    setenv("DFLASH_SPEC_ROLLBACK", rollback, 1);
    if (convert(name, "f32", path, sizeof path)) {
        row_msg(what, "", "dflash convert failed", false);
        return;
    }
    model mo;
    TRY_OR(open_model(path, gpu, &mo), what, "load", return);
    const size_t nv = (size_t)mo.m->hp.n_vocab;
    float *pg = malloc(nv * sizeof(float)), *pa = malloc(nv * sizeof(float));
    df_rng rng;
    df_rng_seed(&rng, 99);
    int runs = 0, token_fail = 0, state_fail = 0, bonus_fail = 0;
    bool ok = true;
    for (int pi = 0; pi < 3 && ok; pi++) {
        int32_t prompt[40];
        const int n_prompt = 3 + 11 * pi;
        for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)df_rng_below(&rng, (uint32_t)nv);
        collected ar, want, got;
        int64_t np;
        TRY_OR(gen_run(&mo, prompt, n_prompt, 60, NULL, 0, cap, &ar, &np, NULL), what, "AR", ok = false; break);
        int32_t seq[MAX_TOK + 64];
        int n_seq = 0;
        for (int i = 0; i < n_prompt; i++) seq[n_seq++] = prompt[i];
        for (int i = 0; i < ar.n; i++) seq[n_seq++] = ar.tok[i];
        static const int lengths[] = {1, 5, 37};
        for (int li = 0; li < 3 && ok; li++) {
            TRY_OR(gen_run(&mo, prompt, n_prompt, lengths[li], NULL, 0, cap, &want, &np, NULL), what, "AR", ok = false; break);
            for (int block = 2; block <= 16 && ok; block *= 2) {
                test_oracle o;
                test_oracle_init(&o, seq, n_seq, (int32_t)nv);
                TRY_OR(gen_run(&mo, prompt, n_prompt, lengths[li], &o, block, cap, &got, &np, pg), what, "spec",
                       ok = false; break);
                runs++;
                bonus_fail += o.bonus_mismatch != 0;
                token_fail += got.n != want.n || memcmp(got.tok, want.tok, (size_t)got.n * sizeof(int32_t)) != 0;
                if (cap == DF_STATE_F32) {
                    TRY_OR(ar_probe(&mo, prompt, n_prompt, &got, np, pa), what, "AR probe", ok = false; break);
                    state_fail += memcmp(pg, pa, nv * sizeof(float)) != 0;
                }
            }
        }
    }
    if (ok) {
        char d[96], m[64];
        snprintf(d, sizeof d, "%d runs, blocks 2..16, 0..B-1 accepted", runs);
        snprintf(m, sizeof m, "%d tok / %d state / %d bonus", token_fail, state_fail, bonus_fail);
        row_msg(what, d, m, runs > 0 && token_fail == 0 && state_fail == 0 && bonus_fail == 0);
    }
    free(pg);
    free(pa);
    close_model(&mo);
}

/* ---- 5. the real drafter through the public API ---- */

static int gen_public(const char *model_path, const char *draft, const char *device, int block, collected *out,
                      dflash_gen_stats *stats) {
    dflash_model_params mp = dflash_model_default_params();
    mp.path = model_path;
    mp.draft_path = draft;
    mp.device = device;
    mp.n_threads = 4;
    dflash_model *m;
    int rc = dflash_model_load(&mp, &m);
    if (rc) return rc;
    dflash_session_params sp = dflash_session_default_params();
    sp.n_ctx = 512;
    sp.block_size = block;
    dflash_session *s;
    rc = dflash_session_create(m, &sp, &s);
    if (!rc) {
        dflash_gen_params gp = dflash_gen_default_params();
        gp.n_predict = 48;
        gp.ignore_eos = true;
        memset(out, 0, sizeof *out);
        /* token ids: the GPU machine's build may lack PCRE2, and then the fixtures' GGUFs
         * carry no tokenizer */
        static const int32_t prompt[] = {35, 200, 17, 99, 301, 5, 64, 140, 12, 250, 7, 77};
        rc = dflash_generate(s, prompt, sizeof prompt / sizeof prompt[0], &gp, collect, out, stats);
        dflash_session_free(s);
    }
    dflash_model_free(m);
    return rc;
}

static void check_drafter(const char *draft_name, int block) {
    char path[1024], draft[1024], what[96], detail[96];
    snprintf(what, sizeof what, "spec == AR (drafter %s) tiny_a", draft_name);
    snprintf(detail, sizeof detail, "public API, device cuda, block %d", block);
    if (convert("tiny_a", "f32", path, sizeof path)) {
        row_msg(what, detail, "dflash convert failed", false);
        return;
    }
    snprintf(draft, sizeof draft, "%s/tests/fixtures/dflash/%s", DFLASH_SOURCE_DIR, draft_name);
    collected ar, sp, cpu;
    dflash_gen_stats st_ar, st_sp, st_cpu;
    if (gen_public(path, NULL, "cuda", 0, &ar, &st_ar) || gen_public(path, draft, "cuda", block, &sp, &st_sp) ||
        gen_public(path, draft, "cpu", block, &cpu, &st_cpu)) {
        row_msg(what, detail, dflash_last_error(), false);
        return;
    }
    const bool same = ar.n == sp.n && !memcmp(ar.tok, sp.tok, (size_t)ar.n * sizeof(int32_t));
    int agree = 0;
    for (int i = 0; i < ar.n && i < cpu.n; i++) agree += ar.tok[i] == cpu.tok[i];
    char m[96];
    snprintf(m, sizeof m, "%s, %lld verifies, AL %.2f (cpu %.2f), %d/%d = cpu", same ? "same" : "DIFFER",
             (long long)st_sp.n_verify, st_sp.mean_accept_len, st_cpu.mean_accept_len, agree, ar.n);
    row_msg(what, detail, m, same && st_sp.n_verify > 0 && ar.n == 48);
}

int main(int argc, char **argv) {
    if (argc > 1) g_work = argv[1];
    df_backend *cpu, *gpu;
    if (df_backend_cpu_create(0, &cpu) != DF_OK || df_backend_cuda_create(0, &gpu) != DF_OK) {
        fprintf(stderr, "cuda_model_check: %s\n", df_last_error());
        return 1;
    }
    printf("cuda_model_check on %s\n", df_backend_cuda_device_name(gpu));
    printf("%-44s %-40s %10s %9s  %s\n", "check", "detail", "error", "tol", "result");
    static const char *fixtures[] = {"tiny_a", "tiny_vh", "tiny_alt"};
    for (int i = 0; i < 3; i++) {
        check_transformers(gpu, fixtures[i], "f32", 1e-4);
        check_transformers(gpu, fixtures[i], "q8_0", 2e-2);
    }
    check_long_prefill(cpu, gpu, "tiny_a", "f32", 1e-4);
    check_long_prefill(cpu, gpu, "tiny_vh", "q8_0", 2e-2);
    for (int i = 0; i < 3; i++) check_verify_bitwise(gpu, fixtures[i], i == 1 ? "q8_0" : "f32");
    for (int i = 0; i < 3; i++) check_graphs(gpu, fixtures[i], i == 2 ? "q8_0" : "f32");
    for (int i = 0; i < 3; i++) check_lossless(gpu, fixtures[i], DF_STATE_F32, "capture");
    check_lossless(gpu, "tiny_a", DF_STATE_F16, "capture");
    for (int i = 0; i < 3; i++) check_lossless(gpu, fixtures[i], DF_STATE_F32, "replay");
    unsetenv("DFLASH_SPEC_ROLLBACK");
    check_drafter("full2", 16);
    check_drafter("full2", 4);
    check_drafter("swa2", 16);
    printf("\ncuda_model_check: %d of %d rows passed%s\n", g_rows - g_fail, g_rows, g_fail ? "" : " (all)");
    df_backend_destroy(gpu);
    df_backend_destroy(cpu);
    return g_fail ? 1 : 0;
}
