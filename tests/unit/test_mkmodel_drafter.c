/* dflash mkmodel --drafter: random-weight DFlash drafters that go with the mkmodel targets.
 *
 * Expected values are written here, not taken from the code under test: the published drafter
 * shapes are transcribed again from the sources mkmodel_presets.c cites, the reference capture
 * layers and the parameter counts are worked out by hand, and the weight statistics follow
 * from the initialization docs/MKMODEL.md promises. Only small shapes are written to disk. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "base/rng.h"
#include "convert/mkmodel.h"
#include "dflash.h"
#include "format/gguf.h"
#include "model/dflash_draft.h"
#include "model/qwen35.h"
#include "quant/types.h"

#define ARCH "qwen35-dflash-draft"

/* ---- temp files ------------------------------------------------------------------------------ */

static char g_dir[64];

static void make_dir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/dflash_test_mkdraft_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir), "mkdtemp failed");
}

static void remove_dir(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *e;
    char p[256];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(g_dir);
}

static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", g_dir, name); }

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static df_mkmodel_opts quiet_opts(df_convert_type type, uint64_t seed, int threads) {
    df_mkmodel_opts o;
    df_mkmodel_opts_init(&o);
    o.type = type;
    o.seed = seed;
    o.n_threads = threads;
    o.quiet = true;
    o.log = fopen("/dev/null", "w");
    cr_assert_not_null(o.log);
    return o;
}

/* A small target: tiny-bench with overrides, as `--set` gives them. Its drafter is our own
 * shape (tiny-bench has no published drafter). */
static df_mkmodel_config small_target(void) {
    df_mkmodel_config c = *df_mkmodel_preset("tiny-bench");
    static const char *const sets[][2] = {
        {"num_hidden_layers", "8"},      {"hidden_size", "256"},          {"intermediate_size", "512"},
        {"vocab_size", "1000"},          {"linear_num_value_heads", "4"}, {"linear_value_head_dim", "64"},
        {"tie_word_embeddings", "false"},
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        cr_assert_eq(df_mkmodel_set(&c, sets[i][0], sets[i][1]), DF_OK, "%s", df_last_error());
    return c;
}

static void write_pair(const df_mkmodel_config *c, const char *target, const char *draft, df_convert_type type,
                       uint64_t seed) {
    df_mkmodel_opts o = quiet_opts(type, seed, 2);
    cr_assert_eq(df_mkmodel_write(c, target, &o), DF_OK, "target: %s", df_last_error());
    df_mkmodel_drafter d;
    cr_assert_eq(df_mkmodel_drafter_for(c, &d), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_mkmodel_write_drafter(&d, c, draft, &o), DF_OK, "drafter: %s", df_last_error());
    fclose(o.log);
}

/* ---- the published shapes -------------------------------------------------------------------- */

typedef struct want_drafter {
    const char *target, *source;
    int64_t hidden, ffn;
    int32_t ids[5];
    const char *pattern; /* S / F per layer; NULL all full */
} want_drafter;

/* From the transcriptions mkmodel_presets.c cites (z-lab config.json files). */
static const want_drafter k_published[] = {
    {"qwen3.5-4b", "z-lab/Qwen3.5-4B-DFlash", 2560, 9728, {1, 8, 15, 22, 29}, NULL},
    {"qwen3.5-9b", "z-lab/Qwen3.5-9B-DFlash", 4096, 12288, {1, 8, 15, 22, 29}, NULL},
    {"qwen3.6-27b", "z-lab/Qwen3.6-27B-DFlash", 5120, 17408, {1, 16, 31, 46, 61}, "SSSSF"},
};

Test(mkmodel_drafter, published_shapes) {
    for (size_t i = 0; i < sizeof k_published / sizeof k_published[0]; i++) {
        const want_drafter *w = &k_published[i];
        const df_mkmodel_config *c = df_mkmodel_preset(w->target);
        cr_assert_not_null(c);
        df_mkmodel_drafter d;
        cr_assert_eq(df_mkmodel_drafter_for(c, &d), DF_OK, "%s: %s", w->target, df_last_error());
        cr_assert_not_null(d.source, "%s", w->target);
        cr_assert_str_eq(d.source, w->source);
        cr_assert_eq(d.num_hidden_layers, 5, "%s", w->target);
        cr_assert_eq(d.hidden_size, w->hidden, "%s", w->target);
        cr_assert_eq(d.intermediate_size, w->ffn, "%s", w->target);
        cr_assert_eq(d.num_attention_heads, 32, "%s", w->target);
        cr_assert_eq(d.num_key_value_heads, 8, "%s", w->target);
        cr_assert_eq(d.head_dim, 128, "%s", w->target);
        cr_assert_eq(d.vocab_size, 248320, "%s", w->target);
        cr_assert_eq(d.block_size, 16, "%s", w->target);
        cr_assert_eq(d.mask_token_id, 248070, "%s", w->target);
        cr_assert_eq(d.max_position_embeddings, 262144, "%s", w->target);
        cr_assert_float_eq(d.rope_theta, 1e7, 1e-3, "%s", w->target);
        cr_assert_float_eq(d.rms_norm_eps, 1e-6, 1e-15, "%s", w->target);
        cr_assert_eq(d.n_capture, 5, "%s", w->target);
        for (int k = 0; k < 5; k++) cr_assert_eq(d.target_layer_ids[k], w->ids[k], "%s id %d", w->target, k);
        for (int l = 0; l < 5; l++)
            cr_assert_eq(d.sliding[l], w->pattern && w->pattern[l] == 'S', "%s layer %d", w->target, l);
        cr_assert_eq(d.sliding_window, w->pattern ? 2048 : 0, "%s", w->target);
    }
}

Test(mkmodel_drafter, own_shapes_follow_the_target) {
    /* Qwen3.5-0.8B: no published drafter; its attention and FFN, 5 taps at the reference
     * default for 24 layers: 1 + i * 20 / 4 = 1, 6, 11, 16, 21. */
    df_mkmodel_drafter d;
    cr_assert_eq(df_mkmodel_drafter_for(df_mkmodel_preset("qwen3.5-0.8b"), &d), DF_OK, "%s", df_last_error());
    cr_assert_null(d.source);
    cr_assert_eq(d.num_hidden_layers, 5);
    cr_assert_eq(d.hidden_size, 1024);
    cr_assert_eq(d.intermediate_size, 3584);
    cr_assert(d.num_attention_heads == 8 && d.num_key_value_heads == 2 && d.head_dim == 256);
    const int32_t ids[5] = {1, 6, 11, 16, 21};
    for (int k = 0; k < 5; k++) cr_assert_eq(d.target_layer_ids[k], ids[k]);
    cr_assert_eq(d.mask_token_id, 248070);
    cr_assert_eq(d.sliding_window, 0);
    /* A published shape with another depth: the taps move to the reference default for it
     * (10 layers: 1 + i * 6 / 4 = 1, 2.5 -> 2 (half to even), 4, 5.5 -> 6, 7), and a smaller
     * vocabulary moves the mask token to its last token. */
    df_mkmodel_config c = *df_mkmodel_preset("qwen3.6-27b");
    cr_assert_eq(df_mkmodel_set(&c, "num_hidden_layers", "10"), DF_OK);
    cr_assert_eq(df_mkmodel_set(&c, "vocab_size", "5000"), DF_OK);
    cr_assert_eq(df_mkmodel_set(&c, "hidden_size", "512"), DF_OK);
    cr_assert_eq(df_mkmodel_drafter_for(&c, &d), DF_OK, "%s", df_last_error());
    const int32_t ids10[5] = {1, 2, 4, 6, 7};
    for (int k = 0; k < 5; k++) cr_assert_eq(d.target_layer_ids[k], ids10[k], "id %d is %d", k, d.target_layer_ids[k]);
    cr_assert_eq(d.mask_token_id, 4999);
    cr_assert_eq(d.hidden_size, 512);
    cr_assert_eq(d.vocab_size, 5000);
    cr_assert_eq(d.intermediate_size, 17408); /* the published drafter's own width stays */
}

Test(mkmodel_drafter, sizes) {
    /* Qwen3.6-27B's drafter by hand: fc 5H x H; per layer q, o 2 x H x 4096, k, v 2 x H x 1024,
     * FFN 3 x H x F; vectors: hidden_norm, output_norm, per layer 2 x H + 2 x 128. */
    const int64_t H = 5120, F = 17408, L = 5;
    const int64_t matrices = 5 * H * H + L * (2 * H * 4096 + 2 * H * 1024 + 3 * H * F);
    const int64_t vectors = 2 * H + L * (2 * H + 2 * 128);
    df_mkmodel_drafter d;
    cr_assert_eq(df_mkmodel_drafter_for(df_mkmodel_preset("qwen3.6-27b"), &d), DF_OK);
    df_mkmodel_size sz;
    cr_assert_eq(df_mkmodel_drafter_estimate(&d, DF_CONVERT_F16, &sz), DF_OK, "%s", df_last_error());
    cr_assert_eq(sz.n_tensors, 3 + 11 * 5);
    cr_assert_eq((int64_t)sz.n_params, matrices + vectors);
    cr_assert_eq((int64_t)sz.data_bytes, 2 * matrices + 4 * vectors);
    /* The published F16 file is 3310.7 MiB with its metadata: the tensors are a little less. */
    const double mib = (double)sz.data_bytes / (1024.0 * 1024.0);
    cr_assert(mib > 3250 && mib < 3310.7, "%.1f MiB", mib);
    /* q4_k_m: every matrix Q4_K (4.5 bits), vectors f32. */
    cr_assert_eq(df_mkmodel_drafter_estimate(&d, DF_CONVERT_Q4_K_M, &sz), DF_OK);
    cr_assert_eq((int64_t)sz.data_bytes, matrices / 256 * 144 + 4 * vectors);
}

/* ---- a small pair, written and loaded together ------------------------------------------------- */

static uint32_t u32_key(const df_gguf *g, const char *key) {
    uint32_t v = 0;
    cr_assert_eq(df_gguf_get_u32(g, key, &v), DF_OK, "%s: %s", key, df_last_error());
    return v;
}

static void moments(const float *x, int64_t n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        q += (double)x[i] * x[i];
    }
    *mean = s / (double)n;
    *sd = sqrt(q / (double)n - *mean * *mean);
}

static const df_gguf_tensor *tensor(const df_gguf *g, const char *name, int64_t ne0, int64_t ne1) {
    const df_gguf_tensor *t = df_gguf_find_tensor(g, name);
    cr_assert_not_null(t, "no tensor %s", name);
    cr_assert(t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == 1 && t->ne[3] == 1,
              "%s is [%lld, %lld], expected [%lld, %lld]", name, (long long)t->ne[0], (long long)t->ne[1],
              (long long)ne0, (long long)ne1);
    return t;
}

Test(mkmodel_drafter, small_pair_metadata_shapes_and_values, .timeout = 600) {
    make_dir();
    char tp[128], dp[128];
    path_in(tp, sizeof tp, "target.gguf");
    path_in(dp, sizeof dp, "draft.gguf");
    df_mkmodel_config c = small_target();
    write_pair(&c, tp, dp, DF_CONVERT_F32, 3);
    df_gguf *g;
    cr_assert_eq(df_gguf_open(dp, &g), DF_OK, "%s", df_last_error());
    const char *s;
    size_t len;
    cr_assert_eq(df_gguf_get_str(g, "general.architecture", &s, &len), DF_OK);
    cr_assert(len == strlen(ARCH) && !memcmp(s, ARCH, len));
    cr_assert_eq(u32_key(g, "general.file_type"), 0);
    /* Our own shape for this target: 5 layers of its attention (4 / 2 heads of 128) and FFN
     * (512), taps at the reference default for 8 layers: 1 + i * 4 / 4 = 1 .. 5; the mask is
     * the last of its 1000 tokens. */
    cr_assert_eq(u32_key(g, ARCH ".embedding_length"), 256);
    cr_assert_eq(u32_key(g, ARCH ".block_count"), 5);
    cr_assert_eq(u32_key(g, ARCH ".feed_forward_length"), 512);
    cr_assert_eq(u32_key(g, ARCH ".attention.head_count"), 4);
    cr_assert_eq(u32_key(g, ARCH ".attention.head_count_kv"), 2);
    cr_assert_eq(u32_key(g, ARCH ".attention.key_length"), 128);
    cr_assert_eq(u32_key(g, ARCH ".attention.value_length"), 128);
    cr_assert_eq(u32_key(g, ARCH ".vocab_size"), 1000);
    cr_assert_eq(u32_key(g, ARCH ".context_length"), 4096);
    cr_assert_eq(u32_key(g, ARCH ".dflash.n_target_layers"), 5);
    cr_assert_eq(u32_key(g, ARCH ".dflash.block_size"), 16);
    cr_assert_eq(u32_key(g, ARCH ".dflash.mask_token_id"), 999);
    float theta = 0;
    cr_assert_eq(df_gguf_get_f32(g, ARCH ".rope.freq_base", &theta), DF_OK);
    cr_assert_float_eq(theta, 1e7f, 1.0f);
    int32_t ids[8];
    size_t n = 0;
    cr_assert_eq(df_gguf_get_arr_i32(g, ARCH ".dflash.target_layer_ids", ids, 8, &n), DF_OK);
    cr_assert(n == 5 && ids[0] == 1 && ids[1] == 2 && ids[2] == 3 && ids[3] == 4 && ids[4] == 5);
    cr_assert(!df_gguf_has(g, ARCH ".attention.sliding_window"));
    /* The tensors: 3 + 11 per layer, named and shaped as `dflash convert` writes them. */
    cr_assert_eq(df_gguf_n_tensors(g), 3 + 11 * 5);
    const df_gguf_tensor *fc = tensor(g, "dflash.fc.weight", 5 * 256, 256);
    tensor(g, "dflash.hidden_norm.weight", 256, 1);
    tensor(g, "output_norm.weight", 256, 1);
    for (int l = 0; l < 5; l++) {
        char name[64];
        const struct {
            const char *suffix;
            int64_t ne0, ne1;
        } want[] = {
            {"attn_q", 256, 512}, {"attn_k", 256, 256}, {"attn_v", 256, 256}, {"attn_output", 512, 256},
            {"attn_q_norm", 128, 1}, {"attn_k_norm", 128, 1}, {"attn_norm", 256, 1}, {"ffn_norm", 256, 1},
            {"ffn_gate", 256, 512}, {"ffn_up", 256, 512}, {"ffn_down", 512, 256},
        };
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, want[k].suffix);
            const df_gguf_tensor *t = tensor(g, name, want[k].ne0, want[k].ne1);
            cr_assert_eq(t->type, DF_TYPE_F32, "%s", name);
        }
    }
    /* The values: random, not zero, of the documented scales. */
    double mean, sd;
    moments(fc->data, fc->n_elements, &mean, &sd);
    cr_assert(fabs(mean) < 0.002 && fabs(sd - 1.0 / sqrt(1280.0)) < 0.002, "fc: mean %g sd %g", mean, sd);
    const df_gguf_tensor *t = df_gguf_find_tensor(g, "blk.2.attn_output.weight");
    moments(t->data, t->n_elements, &mean, &sd);
    cr_assert(fabs(sd - 1.0 / sqrt(512.0 * 10.0)) < 0.002, "attn_output: sd %g", sd);
    t = df_gguf_find_tensor(g, "blk.1.ffn_up.weight");
    moments(t->data, t->n_elements, &mean, &sd);
    cr_assert(fabs(sd - 1.0 / 16.0) < 0.003, "ffn_up: sd %g", sd);
    t = df_gguf_find_tensor(g, "blk.4.attn_norm.weight");
    moments(t->data, t->n_elements, &mean, &sd);
    cr_assert(fabs(mean - 1.0) < 0.01 && sd > 0.01 && sd < 0.03, "attn_norm: mean %g sd %g", mean, sd);
    const df_gguf_tensor *u0 = df_gguf_find_tensor(g, "blk.0.ffn_up.weight"), *u1 = df_gguf_find_tensor(g, "blk.1.ffn_up.weight");
    cr_assert(memcmp(u0->data, u1->data, u0->size), "two layers got the same weights");
    df_gguf_close(g);
    remove_dir();
}

Test(mkmodel_drafter, small_pair_loads_and_drafts, .timeout = 600) {
    make_dir();
    char tp[128], dp[128];
    path_in(tp, sizeof tp, "target.gguf");
    path_in(dp, sizeof dp, "draft.gguf");
    df_mkmodel_config c = small_target();
    write_pair(&c, tp, dp, DF_CONVERT_Q8_0, 9);
    df_gguf *tg, *dg;
    df_backend *be;
    df_qwen35 *m;
    df_dflash_draft *d;
    cr_assert_eq(df_gguf_open(tp, &tg), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_gguf_open(dp, &dg), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_backend_cpu_create(2, &be), DF_OK);
    cr_assert_eq(df_qwen35_load(tg, be, &m), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_dflash_draft_load_gguf(dg, be, &d), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_dflash_draft_check_target(d, &m->hp), DF_OK, "%s", df_last_error());
    /* One draft step on random context features: finite logits of order one. */
    df_dflash_state *s;
    cr_assert_eq(df_dflash_state_create(d, m, 64, 0, DF_KV_F32, &s), DF_OK, "%s", df_last_error());
    const int64_t rows = 7, E = 256;
    float *feat[5];
    df_rng rng;
    df_rng_seed(&rng, 5);
    for (int k = 0; k < 5; k++) {
        feat[k] = malloc((size_t)(rows * E) * sizeof(float));
        for (int64_t i = 0; i < rows * E; i++) feat[k][i] = df_rng_normal(&rng);
    }
    cr_assert_eq(df_dflash_state_commit(s, (const float *const *)feat, rows), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_dflash_state_draft(s, 42, 16), DF_OK, "%s", df_last_error());
    for (int r = 0; r < 15; r++) {
        const float *row = s->logits + (size_t)r * 1000;
        double mean, sd;
        for (int i = 0; i < 1000; i++) cr_assert(isfinite(row[i]), "row %d logit %d", r, i);
        moments(row, 1000, &mean, &sd);
        cr_assert(sd > 0.05 && sd < 100.0, "row %d: logit spread %g", r, sd);
        cr_assert(s->argmax[r] >= 0 && s->argmax[r] < 1000);
    }
    for (int k = 0; k < 5; k++) free(feat[k]);
    df_dflash_state_free(s);
    df_dflash_draft_free(d);
    df_qwen35_free(m);
    df_backend_destroy(be);
    df_gguf_close(dg);
    df_gguf_close(tg);

    /* Through the public API, as `dflash bench -m T --draft D` loads them. */
    dflash_model_params mp = dflash_model_default_params();
    mp.path = tp;
    mp.draft_path = dp;
    mp.n_threads = 2;
    dflash_model *pm;
    cr_assert_eq(dflash_model_load(&mp, &pm), 0, "%s", dflash_last_error());
    cr_assert(dflash_model_has_drafter(pm));
    cr_assert_eq(dflash_model_draft_block(pm), 16);
    dflash_session_params sp = dflash_session_default_params();
    sp.n_ctx = 128;
    dflash_session *ss;
    cr_assert_eq(dflash_session_create(pm, &sp, &ss), 0, "%s", dflash_last_error());
    dflash_gen_params gp = dflash_gen_default_params();
    gp.n_predict = 24;
    gp.ignore_eos = true;
    const int32_t prompt[6] = {3, 14, 159, 265, 358, 979};
    dflash_gen_stats st;
    cr_assert_eq(dflash_generate(ss, prompt, 6, &gp, NULL, NULL, &st), 0, "%s", dflash_last_error());
    cr_assert_eq(st.n_gen, 24);
    cr_assert(st.n_verify > 0, "no speculative step ran");
    dflash_session_free(ss);
    dflash_model_free(pm);
    remove_dir();
}

/* The Qwen3.6 drafters' sliding layers (4 sliding + 1 full, window 2048) survive the file:
 * the reader sees the pattern and the window, makes the sliding layers causal, and drafts. */
Test(mkmodel_drafter, sliding_layers_round_trip, .timeout = 600) {
    make_dir();
    char tp[128], dp[128];
    path_in(tp, sizeof tp, "target.gguf");
    path_in(dp, sizeof dp, "draft.gguf");
    df_mkmodel_config c = small_target();
    df_mkmodel_drafter d;
    cr_assert_eq(df_mkmodel_drafter_for(&c, &d), DF_OK);
    for (int l = 0; l < 4; l++) d.sliding[l] = true;
    d.sliding_window = 2048;
    df_mkmodel_opts o = quiet_opts(DF_CONVERT_Q8_0, 6, 2);
    cr_assert_eq(df_mkmodel_write(&c, tp, &o), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_mkmodel_write_drafter(&d, &c, dp, &o), DF_OK, "%s", df_last_error());
    fclose(o.log);
    df_gguf *tg, *dg;
    cr_assert_eq(df_gguf_open(tp, &tg), DF_OK);
    cr_assert_eq(df_gguf_open(dp, &dg), DF_OK);
    df_dflash_hparams hp;
    cr_assert_eq(df_dflash_read_hparams_gguf(dg, &hp), DF_OK, "%s", df_last_error());
    cr_assert_eq(hp.sliding_window, 2048);
    for (int l = 0; l < 5; l++) {
        cr_assert_eq(hp.sliding[l], l < 4, "layer %d", l);
        cr_assert_eq(hp.causal[l], l < 4, "layer %d", l);
    }
    df_backend *be;
    df_qwen35 *m;
    df_dflash_draft *dr;
    df_dflash_state *s;
    cr_assert_eq(df_backend_cpu_create(2, &be), DF_OK);
    cr_assert_eq(df_qwen35_load(tg, be, &m), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_dflash_draft_load_gguf(dg, be, &dr), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_dflash_state_create(dr, m, 32, 8, DF_KV_F32, &s), DF_OK, "%s", df_last_error());
    float *feat[5];
    for (int k = 0; k < 5; k++) {
        feat[k] = malloc(3 * 256 * sizeof(float));
        for (int i = 0; i < 3 * 256; i++) feat[k][i] = (float)((i * 37 + k * 11) % 17) / 8.0f - 1.0f;
    }
    cr_assert_eq(df_dflash_state_commit(s, (const float *const *)feat, 3), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_dflash_state_draft(s, 5, 8), DF_OK, "%s", df_last_error());
    for (int i = 0; i < 7 * 1000; i++) cr_assert(isfinite(s->logits[i]));
    for (int k = 0; k < 5; k++) free(feat[k]);
    df_dflash_state_free(s);
    df_dflash_draft_free(dr);
    df_qwen35_free(m);
    df_backend_destroy(be);
    df_gguf_close(dg);
    df_gguf_close(tg);
    remove_dir();
}

Test(mkmodel_drafter, types) {
    make_dir();
    char tp[128], dp[128];
    path_in(tp, sizeof tp, "target.gguf");
    path_in(dp, sizeof dp, "draft.gguf");
    df_mkmodel_config c = small_target();
    df_mkmodel_drafter d;
    cr_assert_eq(df_mkmodel_drafter_for(&c, &d), DF_OK);
    const df_convert_type types[] = {DF_CONVERT_F16, DF_CONVERT_Q8_0, DF_CONVERT_Q4_K_M};
    const df_type matrix[] = {DF_TYPE_F16, DF_TYPE_Q8_0, DF_TYPE_Q4_K};
    const uint32_t file_type[] = {1, 7, 15};
    for (size_t i = 0; i < 3; i++) {
        df_mkmodel_opts o = quiet_opts(types[i], 1, 2);
        cr_assert_eq(df_mkmodel_write_drafter(&d, &c, dp, &o), DF_OK, "%s", df_last_error());
        fclose(o.log);
        df_gguf *g;
        cr_assert_eq(df_gguf_open(dp, &g), DF_OK, "%s", df_last_error());
        cr_assert_eq(u32_key(g, "general.file_type"), file_type[i]);
        for (uint64_t k = 0; k < df_gguf_n_tensors(g); k++) {
            const df_gguf_tensor *t = df_gguf_tensor_at(g, k);
            df_type want = t->n_dims < 2 ? DF_TYPE_F32 : matrix[i];
            cr_assert_eq(t->type, want, "%s is %s", t->name, df_type_name(t->type));
        }
        /* The quantized rows are real blocks: they decode to finite values of the scale. */
        const df_gguf_tensor *t = df_gguf_find_tensor(g, "blk.3.ffn_gate.weight");
        float *row = malloc(256 * sizeof(float));
        double sq = 0;
        size_t row_size;
        cr_assert(df_type_row_size(t->type, 256, &row_size));
        for (int r = 0; r < 512; r++) {
            df_type_get(t->type)->to_float((const uint8_t *)t->data + (size_t)r * row_size, row, 256);
            for (int e = 0; e < 256; e++) {
                cr_assert(isfinite(row[e]));
                sq += (double)row[e] * row[e];
            }
        }
        double sd = sqrt(sq / (512.0 * 256.0));
        cr_assert(fabs(sd - 1.0 / 16.0) < 0.006, "%s: decoded sd %g", df_type_name(t->type), sd);
        free(row);
        df_gguf_close(g);
        unlink(dp);
    }
    remove_dir();
}

/* ---- determinism ------------------------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *b = malloc((size_t)len);
    cr_assert_not_null(b);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

Test(mkmodel_drafter, same_seed_same_bytes) {
    make_dir();
    char a[128], b[128], e[128];
    path_in(a, sizeof a, "a.gguf");
    path_in(b, sizeof b, "b.gguf");
    path_in(e, sizeof e, "e.gguf");
    df_mkmodel_config c = small_target();
    df_mkmodel_drafter d;
    cr_assert_eq(df_mkmodel_drafter_for(&c, &d), DF_OK);
    const struct {
        const char *path;
        uint64_t seed;
        int threads;
    } runs[] = {{a, 8, 1}, {b, 8, 2}, {e, 9, 2}};
    for (size_t i = 0; i < 3; i++) {
        df_mkmodel_opts o = quiet_opts(DF_CONVERT_Q4_K_M, runs[i].seed, runs[i].threads);
        cr_assert_eq(df_mkmodel_write_drafter(&d, &c, runs[i].path, &o), DF_OK, "%s", df_last_error());
        fclose(o.log);
    }
    size_t na, nb, ne;
    unsigned char *A = slurp(a, &na), *B = slurp(b, &nb), *E = slurp(e, &ne);
    cr_assert(na == nb && !memcmp(A, B, na), "the same seed on 1 and 2 threads gave different files");
    df_gguf *ga, *ge;
    cr_assert_eq(df_gguf_open(a, &ga), DF_OK);
    cr_assert_eq(df_gguf_open(e, &ge), DF_OK);
    for (uint64_t i = 0; i < df_gguf_n_tensors(ga); i++) {
        const df_gguf_tensor *ta = df_gguf_tensor_at(ga, i), *te = df_gguf_tensor_at(ge, i);
        cr_assert(ta->size == te->size && memcmp(ta->data, te->data, ta->size), "%s equal under seeds 8 and 9",
                  ta->name);
    }
    df_gguf_close(ga);
    df_gguf_close(ge);
    free(A);
    free(B);
    free(E);
    remove_dir();
}

/* ---- bad combinations -------------------------------------------------------------------------- */

static void expect_bad(const df_mkmodel_drafter *d, const df_mkmodel_config *c, const char *needle) {
    cr_assert_neq(df_mkmodel_drafter_check(d, c), DF_OK, "accepted (expected a complaint about %s)", needle);
    cr_assert(strstr(df_last_error(), needle), "message '%s' does not name %s", df_last_error(), needle);
    make_dir();
    char p[128];
    path_in(p, sizeof p, "bad.gguf");
    df_mkmodel_opts o = quiet_opts(DF_CONVERT_F32, 0, 1);
    cr_assert_neq(df_mkmodel_write_drafter(d, c, p, &o), DF_OK);
    fclose(o.log);
    cr_assert(!file_exists(p), "a file was written for a bad drafter");
    remove_dir();
}

Test(mkmodel_drafter, bad_combinations) {
    const df_mkmodel_config c = small_target();
    df_mkmodel_drafter good, d;
    cr_assert_eq(df_mkmodel_drafter_for(&c, &good), DF_OK, "%s", df_last_error());
    d = good, d.hidden_size = 512;
    expect_bad(&d, &c, "hidden_size");
    d = good, d.vocab_size = 2000;
    expect_bad(&d, &c, "vocab_size");
    d = good, d.mask_token_id = 1000;
    expect_bad(&d, &c, "mask_token_id");
    d = good, d.target_layer_ids[3] = 7; /* the target's last layer */
    expect_bad(&d, &c, "target layer id 7");
    d = good, d.target_layer_ids[0] = -1;
    expect_bad(&d, &c, "target layer id -1");
    d = good, d.num_key_value_heads = 3;
    expect_bad(&d, &c, "num_key_value_heads");
    d = good, d.head_dim = 127;
    expect_bad(&d, &c, "head_dim");
    d = good, d.num_hidden_layers = 65;
    expect_bad(&d, &c, "num_hidden_layers");
    d = good, d.block_size = 1;
    expect_bad(&d, &c, "block_size");
    d = good, d.n_capture = 0;
    expect_bad(&d, &c, "target_layer_ids");
    d = good, d.sliding[2] = true, d.sliding_window = 0;
    expect_bad(&d, &c, "sliding_window");
    d = good, d.rope_theta = 0;
    expect_bad(&d, &c, "rope_theta");

    /* A target too shallow for 5 taps before its last layer. */
    df_mkmodel_config shallow = c;
    cr_assert_eq(df_mkmodel_set(&shallow, "num_hidden_layers", "2"), DF_OK);
    cr_assert_neq(df_mkmodel_drafter_for(&shallow, &d), DF_OK);
    cr_assert(strstr(df_last_error(), "target layer id"), "%s", df_last_error());
    /* An inconsistent target is refused before any drafter is made. */
    df_mkmodel_config broken = c;
    cr_assert_eq(df_mkmodel_set(&broken, "num_key_value_heads", "3"), DF_OK);
    cr_assert_neq(df_mkmodel_drafter_for(&broken, &d), DF_OK);
    cr_assert(strstr(df_last_error(), "num_key_value_heads"), "%s", df_last_error());
    cr_assert_neq(df_mkmodel_drafter_for(NULL, &d), DF_OK);
}

/* ---- the commands ------------------------------------------------------------------------------ */

static int run(const char *cmdline, const char *out_name, char *out, size_t cap) {
    char cmd[2048], path[128];
    path_in(path, sizeof path, out_name);
    snprintf(cmd, sizeof cmd, "%s >%s 2>&1", cmdline, path);
    int rc = system(cmd);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(out, 1, cap - 1, f) : 0;
    out[n] = 0;
    if (f) fclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* A number after "key": in one line of JSON; -1 when absent. */
static double json_number(const char *json, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    return p ? strtod(p + strlen(pat), NULL) : -1.0;
}

Test(mkmodel_drafter, cli_mkmodel_and_bench, .timeout = 600) {
    make_dir();
    char out[8192], cmd[1536], tp[128], dp[128];
    path_in(tp, sizeof tp, "t.gguf");
    path_in(dp, sizeof dp, "d.gguf");
    const char *sets = "--set num_hidden_layers=8 --set hidden_size=256 --set intermediate_size=512 "
                       "--set vocab_size=1000 --set linear_num_value_heads=4 --set linear_value_head_dim=64";
    /* Bad combinations are usage or input errors with a message that names the problem. */
    snprintf(cmd, sizeof cmd, "%s mkmodel --preset tiny-bench --drafter --set num_hidden_layers=2 --dry-run",
             DFLASH_CLI);
    cr_assert_eq(run(cmd, "o.txt", out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "drafter") && strstr(out, "target layer id"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s mkmodel --drafter %s", DFLASH_CLI, dp);
    cr_assert_eq(run(cmd, "o.txt", out, sizeof out), 2, "%s", out);
    cr_assert(!file_exists(dp));
    /* The 27B drafter's size, without writing it. */
    snprintf(cmd, sizeof cmd, "%s mkmodel --preset qwen3.6-27b --drafter --type q4_k_m --dry-run", DFLASH_CLI);
    cr_assert_eq(run(cmd, "o.txt", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "z-lab/Qwen3.6-27B-DFlash") && strstr(out, "58 tensors") && strstr(out, "1.730 B"), "%s",
              out);
    /* A small pair by the command, then the library's drafter byte for byte. */
    snprintf(cmd, sizeof cmd, "%s mkmodel --preset tiny-bench %s --type q8_0 --seed 4 -t 2 -q %s", DFLASH_CLI, sets,
             tp);
    cr_assert_eq(run(cmd, "o.txt", out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s mkmodel --preset tiny-bench %s --type q8_0 --seed 4 -t 2 -q --drafter %s",
             DFLASH_CLI, sets, dp);
    cr_assert_eq(run(cmd, "o.txt", out, sizeof out), 0, "%s", out);
    df_mkmodel_config c = *df_mkmodel_preset("tiny-bench");
    cr_assert_eq(df_mkmodel_set(&c, "num_hidden_layers", "8"), DF_OK);
    cr_assert_eq(df_mkmodel_set(&c, "hidden_size", "256"), DF_OK);
    cr_assert_eq(df_mkmodel_set(&c, "intermediate_size", "512"), DF_OK);
    cr_assert_eq(df_mkmodel_set(&c, "vocab_size", "1000"), DF_OK);
    cr_assert_eq(df_mkmodel_set(&c, "linear_num_value_heads", "4"), DF_OK);
    cr_assert_eq(df_mkmodel_set(&c, "linear_value_head_dim", "64"), DF_OK);
    df_mkmodel_drafter d;
    cr_assert_eq(df_mkmodel_drafter_for(&c, &d), DF_OK);
    char lib[128];
    path_in(lib, sizeof lib, "lib.gguf");
    df_mkmodel_opts o = quiet_opts(DF_CONVERT_Q8_0, 4, 1);
    cr_assert_eq(df_mkmodel_write_drafter(&d, &c, lib, &o), DF_OK, "%s", df_last_error());
    fclose(o.log);
    size_t n1, n2;
    unsigned char *x = slurp(dp, &n1), *y = slurp(lib, &n2);
    cr_assert(n1 == n2 && !memcmp(x, y, n1), "the command and the library wrote different drafters");
    free(x);
    free(y);

    /* bench with the pair: the drafter step and its ratio to an AR step are reported. */
    snprintf(cmd, sizeof cmd, "%s bench -m %s --draft %s --threads 2 -p 8 -n 16 --reps 1 --membw-mib 16 --json",
             DFLASH_CLI, tp, dp);
    cr_assert_eq(run(cmd, "bench.json", out, sizeof out), 0, "%s", out);
    const char *json = strchr(out, '{');
    cr_assert_not_null(json, "%s", out);
    const double n_verify = json_number(json, "n_verify"), draft_s = json_number(json, "draft_s");
    const double ar_tok_s = json_number(json, "ar_tok_s"), step = json_number(json, "draft_step_ms");
    const double ratio = json_number(json, "draft_over_ar_step");
    cr_assert(n_verify > 0 && draft_s > 0 && ar_tok_s > 0, "%s", json);
    cr_assert(step > 0 && ratio > 0, "no drafter step in %s", json);
    /* The fields agree with each other (printed to 4 decimals, so within rounding). */
    cr_assert(fabs(step - 1e3 * draft_s / n_verify) <= 0.01 + 1e-3 * step, "%s", json);
    cr_assert(fabs(ratio - step * ar_tok_s / 1e3) <= 0.01 + 0.01 * ratio, "%s", json);
    cr_assert(json_number(json, "verify_over_ar_step") > 0, "%s", json);
    snprintf(cmd, sizeof cmd, "%s bench -m %s --draft %s --threads 2 -p 8 -n 16 --reps 1 --membw-mib 16", DFLASH_CLI,
             tp, dp);
    cr_assert_eq(run(cmd, "bench.txt", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "per step") && strstr(out, "AR steps"), "%s", out);
    remove_dir();
}
