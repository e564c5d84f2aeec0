/* Where one speculative iteration's time goes on the CPU: the embedded pair (or any pair)
 * decodes every prompt of a JSON-lines file AR and then speculatively, greedy, and every op
 * the backend runs is timed and filed under the phase it ran in (drafter step, target
 * verify, commit's state restore, the drafter's append_context) and a category (matmul,
 * LM head, GDN recurrence, conv, attention, ...). The CPU backend runs each op to the end
 * before it returns, so an op's wall time is its cost; what a phase spends outside ops is
 * host work (the engine's own code, uploads of ids and positions).
 *
 * Not part of the build or of the tests (timings are never asserted). Build by hand against
 * a Release build's core library:
 *
 *   cc -O2 -std=gnu11 -Isrc -Iinclude bench/bench_spec_step.c build-X/libdflash_core.a \
 *      -ljansson -lpcre2-8 -lpthread -lm -o /tmp/bench_spec_step
 *   /tmp/bench_spec_step [--threads 2] [--block 16] [-n 256] [--prompts FILE] [--max-prompts K]
 *                        [-m TARGET --draft DRAFTER] [--skip-ar 1]
 *
 * Defaults: the pair in models/, 2 threads, the drafter's block, 256 tokens, the held-out
 * prompts. --skip-ar 1 runs only the speculative part (for perf record; no token check).
 * The engine picks its rollback as on the CPU (the wrapped table keeps the name "cpu");
 * DFLASH_SPEC_ROLLBACK=capture|replay forces one. Uploads and downloads count as "other ops". */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/drafter_dflash.h"
#include "engine/spec.h"
#include "format/gguf.h"
#include "model/dflash_draft.h"
#include "model/qwen35.h"
#include "text/tokenizer.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { PH_PREFILL, PH_AR, PH_DRAFT, PH_VERIFY, PH_COMMIT, PH_APPEND, PH_N };
static const char *const phase_name[PH_N] = {"prefill", "AR step", "drafter propose", "target verify",
                                             "commit (state restore)", "drafter append_context"};
enum { C_MATMUL, C_LMHEAD, C_ARGMAX, C_GDN, C_CONV, C_GDN_SMALL, C_ATTN, C_NORM_ADD, C_COPY, C_STATE, C_OTHER, C_N };
static const char *const cat_name[C_N] = {"matmuls (not LM head)", "LM head matmul", "argmax",
                                          "GDN recurrence (+capture)", "GDN conv (+capture)",
                                          "GDN l2norm/gates/gated norm", "attention+rope+qk norm+kv write",
                                          "rmsnorm/add/swiglu/embed", "copies (features, restore)",
                                          "state_to_f32", "other ops"};

static int phase = PH_PREFILL;
static double phase_t0, phase_wall[PH_N], op_time[PH_N][C_N];
static long long op_calls[PH_N][C_N], phase_calls[PH_N];
static int64_t n_vocab;
static df_backend *inner;

static void set_phase(int p) {
    double t = now_s();
    phase_wall[phase] += t - phase_t0;
    phase_t0 = t;
    phase = p;
}

#define TIMED(cat, call)                                      \
    do {                                                      \
        double t0_ = now_s();                                 \
        df_status st_ = (call);                               \
        op_time[phase][cat] += now_s() - t0_;                 \
        op_calls[phase][cat]++;                               \
        return st_;                                           \
    } while (0)

static df_status w_get_rows(df_backend *be, const df_weight *t, const int32_t *ids, int64_t n, float *out) {
    TIMED(C_NORM_ADD, inner->ops->get_rows(inner, t, ids, n, out));
}
static df_status w_matmul(df_backend *be, const float *x, int64_t n, const df_weight *w, float *y) {
    TIMED(w->ne[1] == n_vocab ? C_LMHEAD : C_MATMUL, inner->ops->matmul(inner, x, n, w, y));
}
static df_status w_matmul_many(df_backend *be, const float *x, int64_t n, int k, const df_weight *const *w,
                               float *const *y) {
    TIMED(C_MATMUL, inner->ops->matmul_many(inner, x, n, k, w, y));
}
static df_status w_rmsnorm(df_backend *be, const float *x, int64_t xs, float *y, int64_t ys, int64_t r, int64_t d,
                           const float *w, float eps) {
    TIMED(C_NORM_ADD, inner->ops->rmsnorm(inner, x, xs, y, ys, r, d, w, eps));
}
static df_status w_rmsnorm_heads(df_backend *be, const df_heads *x, const float *w, float eps) {
    TIMED(C_ATTN, inner->ops->rmsnorm_heads(inner, x, w, eps));
}
static df_status w_rmsnorm_gated(df_backend *be, const float *x, int64_t xs, const float *z, int64_t zs, float *y,
                                 int64_t ys, int64_t r, int64_t d, const float *w, float eps) {
    TIMED(C_GDN_SMALL, inner->ops->rmsnorm_gated(inner, x, xs, z, zs, y, ys, r, d, w, eps));
}
static df_status w_l2norm_heads(df_backend *be, const df_heads *x, float eps) {
    TIMED(C_GDN_SMALL, inner->ops->l2norm_heads(inner, x, eps));
}
static df_status w_add(df_backend *be, const float *a, const float *b, float *y, int64_t n) {
    TIMED(C_NORM_ADD, inner->ops->add(inner, a, b, y, n));
}
static df_status w_swiglu(df_backend *be, const float *g, const float *u, float *y, int64_t n) {
    TIMED(C_NORM_ADD, inner->ops->swiglu(inner, g, u, y, n));
}
static df_status w_rope(df_backend *be, const df_heads *x, const int32_t *pos, const float *f, int64_t r) {
    TIMED(C_ATTN, inner->ops->rope(inner, x, pos, f, r));
}
static df_status w_attention(df_backend *be, const df_attn_args *a) {
    TIMED(C_ATTN, inner->ops->attention(inner, a));
}
static df_status w_conv(df_backend *be, const float *x, int64_t xs, int64_t n, int64_t c, const float *w, int64_t k,
                        float *state, float *out, int64_t os, float *cap) {
    TIMED(C_CONV, inner->ops->conv1d_silu(inner, x, xs, n, c, w, k, state, out, os, cap));
}
static df_status w_gates(df_backend *be, const float *a, const float *b, const float *dt, const float *sa, int64_t n,
                         int64_t h, float *g, float *beta) {
    TIMED(C_GDN_SMALL, inner->ops->gdn_gates(inner, a, b, dt, sa, n, h, g, beta));
}
static df_status w_gdn_rec(df_backend *be, const df_gdn_args *a) {
    TIMED(C_GDN, inner->ops->gdn_recurrent(inner, a));
}
static df_status w_gdn_chunked(df_backend *be, const df_gdn_args *a) {
    TIMED(C_GDN, inner->ops->gdn_chunked(inner, a));
}
static df_status w_state_to_f32(df_backend *be, float *d, const void *s, df_state_type t, int64_t n) {
    TIMED(C_STATE, inner->ops->state_to_f32(inner, d, s, t, n));
}
static df_status w_argmax(df_backend *be, const float *x, int64_t r, int64_t n, int64_t s, int32_t *out) {
    TIMED(C_ARGMAX, inner->ops->argmax_rows(inner, x, r, n, s, out));
}
static df_status w_copy(df_backend *be, void *d, const void *s, size_t n) {
    TIMED(C_COPY, inner->ops->copy(inner, d, s, n));
}
static df_status w_copy_2d(df_backend *be, void *d, size_t dp, const void *s, size_t sp, size_t w, size_t r) {
    TIMED(C_COPY, inner->ops->copy_2d(inner, d, dp, s, sp, w, r));
}
static df_status w_upload(df_backend *be, void *d, const void *s, size_t n) {
    TIMED(C_OTHER, inner->ops->upload(inner, d, s, n));
}
static df_status w_download(df_backend *be, void *d, const void *s, size_t n) {
    TIMED(C_OTHER, inner->ops->download(inner, d, s, n));
}
static df_status w_kv_write(df_backend *be, df_kv_cache *c, const df_heads *k, const df_heads *v, int64_t r) {
    TIMED(C_ATTN, inner->ops->kv_write(inner, c, k, v, r));
}
static df_status w_kv_write_ring(df_backend *be, df_kv_cache *c, const df_heads *k, const df_heads *v,
                                 const int32_t *pos) {
    TIMED(C_ATTN, inner->ops->kv_write_ring(inner, c, k, v, pos));
}
static df_status w_attention_window(df_backend *be, const df_window_attn_args *a) {
    TIMED(C_ATTN, inner->ops->attention_window(inner, a));
}
static df_status w_alloc(df_backend *be, size_t n, void **out) { return inner->ops->alloc(inner, n, out); }
static void w_free(df_backend *be, void *p) { inner->ops->free(inner, p); }
static df_status w_bind(df_backend *be, const df_weight *h, df_weight *out) {
    return inner->ops->bind_weight(inner, h, out);
}
static void w_unbind(df_backend *be, df_weight *w) { inner->ops->unbind_weight(inner, w); }
static df_status w_sync(df_backend *be) { return DF_OK; }
static void w_destroy(df_backend *be) {}

/* The CPU op table with a timer around every op; everything else passes through. Fields the
 * table has beyond these (optional hooks) stay NULL, so graph recording is off, as it is on
 * the CPU anyway. */
static df_backend_ops timed_ops;
static df_backend timed_be;

static void timed_init(df_backend *cpu) {
    inner = cpu;
    timed_ops = *cpu->ops;
    timed_ops.name = "cpu"; /* the engine makes its CPU choices by this name */
    timed_ops.destroy = w_destroy;
    timed_ops.alloc = w_alloc;
    timed_ops.free = w_free;
    timed_ops.upload = w_upload;
    timed_ops.download = w_download;
    timed_ops.copy = w_copy;
    timed_ops.copy_2d = w_copy_2d;
    timed_ops.bind_weight = w_bind;
    timed_ops.unbind_weight = w_unbind;
    timed_ops.sync = w_sync;
    timed_ops.get_rows = w_get_rows;
    timed_ops.matmul = w_matmul;
    timed_ops.rmsnorm = w_rmsnorm;
    timed_ops.rmsnorm_heads = w_rmsnorm_heads;
    timed_ops.rmsnorm_gated = w_rmsnorm_gated;
    timed_ops.l2norm_heads = w_l2norm_heads;
    timed_ops.add = w_add;
    timed_ops.swiglu = w_swiglu;
    timed_ops.rope = w_rope;
    timed_ops.attention = w_attention;
    timed_ops.conv1d_silu = w_conv;
    timed_ops.gdn_gates = w_gates;
    timed_ops.gdn_recurrent = w_gdn_rec;
    timed_ops.gdn_chunked = w_gdn_chunked;
    timed_ops.state_to_f32 = w_state_to_f32;
    timed_ops.argmax_rows = w_argmax;
    timed_ops.kv_write = w_kv_write;
    timed_ops.kv_write_ring = w_kv_write_ring;
    timed_ops.attention_window = w_attention_window;
    timed_ops.lane_create = NULL;
    timed_ops.lane_free = NULL;
    timed_ops.lane_bind = NULL;
    timed_ops.graph_begin = NULL;
    timed_ops.graph_end = NULL;
    timed_ops.graph_launch = NULL;
    timed_ops.graph_free = NULL;
    timed_ops.matmul_many = cpu->ops->matmul_many ? w_matmul_many : NULL;
    timed_be.ops = &timed_ops;
    timed_be.impl = cpu->impl;
}

/* The drafter's two entry points, wrapped to file their ops under their own phases. */
static df_status (*real_propose)(void *, int32_t, int, int32_t *);
static df_status (*real_append)(void *, float *const *, int64_t);

static df_status timed_propose(void *self, int32_t bonus, int n, int32_t *out) {
    int back = phase;
    set_phase(PH_DRAFT);
    df_status st = real_propose(self, bonus, n, out);
    set_phase(back);
    return st;
}

static df_status timed_append(void *self, float *const *f, int64_t n) {
    int back = phase;
    set_phase(PH_APPEND);
    df_status st = real_append(self, f, n);
    set_phase(back);
    return st;
}

static int die(const char *what) {
    fprintf(stderr, "bench_spec_step: %s: %s\n", what, df_last_error());
    return 1;
}

int main(int argc, char **argv) {
    int threads = 2, block = 0, n_gen = 256, max_prompts = 1 << 30, skip_ar = 0;
    const char *target_path = "models/dflash-code-25m-q8_0.gguf";
    const char *draft_path = "models/dflash-code-25m-drafter-q8_0.gguf";
    const char *prompts_path = "models/heldout_code_prompts.jsonl";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--block")) block = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-n")) n_gen = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prompts")) prompts_path = argv[i + 1];
        else if (!strcmp(argv[i], "--max-prompts")) max_prompts = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-m")) target_path = argv[i + 1];
        else if (!strcmp(argv[i], "--skip-ar")) skip_ar = atoi(argv[i + 1]); /* for perf: spec only */
        else if (!strcmp(argv[i], "--draft")) draft_path = argv[i + 1];
        else {
            fprintf(stderr, "bench_spec_step: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    df_gguf *g = NULL;
    df_backend *cpu = NULL;
    df_qwen35 *m = NULL;
    df_tokenizer *tok = NULL;
    df_dflash_draft *d = NULL;
    if (df_gguf_open(target_path, &g) != DF_OK) return die(target_path);
    if (df_backend_cpu_create(threads, &cpu) != DF_OK) return die("cpu backend");
    timed_init(cpu);
    if (df_qwen35_load(g, &timed_be, &m) != DF_OK) return die("target");
    if (df_tokenizer_from_gguf(g, &tok) != DF_OK) return die("tokenizer");
    if (df_dflash_draft_open(draft_path, &timed_be, &d) != DF_OK) return die(draft_path);
    n_vocab = m->hp.n_vocab;
    if (block <= 0) block = (int)d->hp.block_size;

    const int64_t n_ctx = 4096;
    df_qwen35_state *st_ar = NULL, *st_sp = NULL;
    df_dflash_drafter *dd = NULL;
    df_spec *sp = NULL;
    if (df_qwen35_state_create(m, n_ctx, 256, DF_KV_F16, &st_ar) != DF_OK) return die("state");
    if (df_qwen35_state_create(m, n_ctx, 256, DF_KV_F16, &st_sp) != DF_OK) return die("state");
    if (df_dflash_drafter_create(d, m, n_ctx, block, &dd) != DF_OK) return die("drafter");
    real_propose = dd->base.propose;
    real_append = dd->base.append_context;
    dd->base.propose = timed_propose;
    dd->base.append_context = timed_append;
    if (df_spec_create(st_sp, &dd->base, block, DF_STATE_F32, &sp) != DF_OK) return die("spec");

    FILE *f = fopen(prompts_path, "r");
    if (!f) {
        fprintf(stderr, "bench_spec_step: cannot open %s\n", prompts_path);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    int n_prompts = 0;
    long long tok_ar = 0, tok_sp = 0, n_verify = 0, mismatch = 0;
    double t_ar = 0, t_sp = 0;
    int32_t *ar_out = malloc((size_t)n_gen * sizeof(int32_t));
    phase_t0 = now_s();
    while (n_prompts < max_prompts && getline(&line, &cap, f) > 0) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        const char *text = j ? json_string_value(json_object_get(j, "text")) : NULL;
        if (!text) {
            json_decref(j);
            continue;
        }
        df_tokens ids = {0};
        if (df_tokenizer_encode(tok, NULL, text, strlen(text), DF_TOKENIZE_SPECIAL, &ids) != DF_OK)
            return die("tokenize");
        json_decref(j);
        n_prompts++;

        /* AR */
        set_phase(PH_PREFILL);
        if (df_qwen35_state_reset(st_ar) != DF_OK) return die("reset");
        if (df_qwen35_prefill(st_ar, ids.ids, ids.n, NULL, NULL, NULL) != DF_OK) return die("prefill");
        int32_t t;
        cpu->ops->download(cpu, &t, st_ar->argmax, sizeof t);
        set_phase(PH_AR);
        double t0 = now_s();
        for (int i = 0; i < n_gen; i++) {
            ar_out[i] = t;
            if (skip_ar) break;
            if (i + 1 == n_gen) break;
            phase_calls[PH_AR]++;
            if (df_qwen35_forward(st_ar, &t, 1, DF_LOGITS_LAST, NULL) != DF_OK) return die("forward");
            cpu->ops->download(cpu, &t, st_ar->argmax, sizeof t);
        }
        t_ar += now_s() - t0 + 1e-9;
        tok_ar += n_gen - 1;

        /* speculative, as engine/generate.c's decode_spec does it (no stop conditions) */
        set_phase(PH_PREFILL);
        if (df_qwen35_state_reset(st_sp) != DF_OK || dd->base.reset(dd->base.self) != DF_OK) return die("reset");
        if (df_spec_prefill(sp, ids.ids, ids.n) != DF_OK) return die("spec prefill");
        int32_t pending;
        cpu->ops->download(cpu, &pending, st_sp->argmax, sizeof pending);
        int got = 0;
        t0 = now_s();
        while (got < n_gen) {
            int n_match;
            set_phase(PH_VERIFY);
            phase_calls[PH_VERIFY]++;
            phase_calls[PH_DRAFT]++;
            if (df_spec_verify(sp, pending, &n_match) != DF_OK) return die("verify");
            /* tokens[0 .. n_match] are the target's own: emitted, then committed */
            int keep = 0;
            for (int j2 = 0; j2 <= n_match && got < n_gen; j2++, keep++, got++)
                if (!skip_ar && sp->tokens[j2] != ar_out[got]) mismatch++;
            set_phase(PH_COMMIT);
            phase_calls[PH_COMMIT]++;
            phase_calls[PH_APPEND]++;
            if (df_spec_commit(sp, keep) != DF_OK) return die("commit");
            set_phase(PH_PREFILL);
            n_verify++;
            pending = sp->target[n_match];
        }
        t_sp += now_s() - t0;
        tok_sp += n_gen - 1;
        df_tokens_free(&ids);
    }
    set_phase(PH_PREFILL);
    free(line);
    fclose(f);

    printf("%d prompts, %d tokens each, block %d, %d threads; output %s AR (%lld tokens differ)\n", n_prompts,
           n_gen, block, threads, mismatch ? "DIFFERS from" : "identical to", mismatch);
    printf("AR %.1f tok/s, speculative %.1f tok/s: %.3fx; acceptance %.3f over %lld verifies\n", tok_ar / t_ar,
           tok_sp / t_sp, t_ar / t_sp, (double)tok_sp / (double)n_verify, n_verify);
    printf("\nper call, microseconds (phase wall; ops by category; 'host' = wall - ops)\n");
    const int order[] = {PH_AR, PH_DRAFT, PH_VERIFY, PH_COMMIT, PH_APPEND};
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        int p = order[k];
        double n = (double)(phase_calls[p] ? phase_calls[p] : 1);
        double ops = 0;
        for (int c = 0; c < C_N; c++) ops += op_time[p][c];
        printf("%-26s %8.1f us  (%lld calls)\n", phase_name[p], 1e6 * phase_wall[p] / n, phase_calls[p]);
        for (int c = 0; c < C_N; c++)
            if (op_calls[p][c])
                printf("    %-34s %8.1f us  %5.1f ops/call\n", cat_name[c], 1e6 * op_time[p][c] / n,
                       (double)op_calls[p][c] / n);
        printf("    %-34s %8.1f us\n", "host (not in ops)", 1e6 * (phase_wall[p] - ops) / n);
    }
    double per_iter = 0;
    for (int p = PH_DRAFT; p <= PH_APPEND; p++) per_iter += phase_wall[p];
    printf("\nspeculative iteration %.1f us = %.2f AR steps; AR step %.1f us\n",
           1e6 * per_iter / (double)n_verify,
           (per_iter / (double)n_verify) / (phase_wall[PH_AR] / (double)phase_calls[PH_AR]),
           1e6 * phase_wall[PH_AR] / (double)phase_calls[PH_AR]);

    free(ar_out);
    df_spec_free(sp);
    df_dflash_drafter_free(dd);
    df_qwen35_state_free(st_sp);
    df_qwen35_state_free(st_ar);
    df_dflash_draft_free(d);
    df_tokenizer_free(tok);
    df_qwen35_free(m);
    df_backend_destroy(cpu);
    df_gguf_close(g);
    return mismatch ? 1 : 0;
}
