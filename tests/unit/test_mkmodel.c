/* dflash mkmodel: random-weight qwen35 files in published shapes.
 *
 * Expected values are written here, not taken from the code under test: the preset numbers
 * are transcribed again from the sources docs/MKMODEL.md cites, the tiny-bench table from
 * that document, and the weight statistics from the initialization the document promises.
 * Files are written to a temporary directory; only tiny-bench (~100 M parameters) and smaller
 * shapes are written, to keep the test quick on a 2-core machine. */
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
#include "convert/mkmodel.h"
#include "format/gguf.h"
#include "model/qwen35.h"
#include "quant/types.h"

/* ---- temp files ------------------------------------------------------------------------------ */

static char g_dir[64];

static void make_dir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/dflash_test_mkmodel_XXXXXX");
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

static void write_model(const df_mkmodel_config *c, const char *path, df_convert_type type, uint64_t seed,
                        int threads) {
    df_mkmodel_opts o;
    df_mkmodel_opts_init(&o);
    o.type = type;
    o.seed = seed;
    o.n_threads = threads;
    o.quiet = true;
    o.log = fopen("/dev/null", "w");
    df_status st = df_mkmodel_write(c, path, &o);
    fclose(o.log);
    cr_assert_eq(st, DF_OK, "mkmodel %s: %s", c->name, df_last_error());
}

/* A small custom shape: tiny-bench with overrides, as `--set` gives them. Untied (so
 * output.weight is written) and with as many value heads as key heads. */
static df_mkmodel_config small_config(void) {
    const df_mkmodel_config *base = df_mkmodel_preset("tiny-bench");
    cr_assert_not_null(base);
    df_mkmodel_config c = *base;
    static const char *const sets[][2] = {
        {"num_hidden_layers", "4"},      {"hidden_size", "256"},           {"intermediate_size", "512"},
        {"vocab_size", "1000"},          {"linear_num_value_heads", "4"},  {"linear_value_head_dim", "64"},
        {"tie_word_embeddings", "false"}, {"rope_theta", "500000"},
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        cr_assert_eq(df_mkmodel_set(&c, sets[i][0], sets[i][1]), DF_OK, "%s", df_last_error());
    return c;
}

/* ---- reading a file back --------------------------------------------------------------------- */

static uint32_t u32_key(const df_gguf *g, const char *key) {
    uint32_t v = 0;
    cr_assert_eq(df_gguf_get_u32(g, key, &v), DF_OK, "%s: %s", key, df_last_error());
    return v;
}

static float f32_key(const df_gguf *g, const char *key) {
    float v = 0;
    cr_assert_eq(df_gguf_get_f32(g, key, &v), DF_OK, "%s: %s", key, df_last_error());
    return v;
}

/* The metadata of a qwen35 file, against the numbers of a shape (written out by the caller). */
typedef struct shape {
    uint32_t layers, embd, ff, heads, kv, head_dim, rot, conv, d_k, n_k, n_v, inner, interval, ctx, vocab;
    float theta, eps;
    bool tied;
} shape;

static void check_metadata(const df_gguf *g, const shape *s, const char *name, uint32_t file_type) {
    const char *arch;
    size_t len;
    cr_assert_eq(df_gguf_get_str(g, "general.architecture", &arch, &len), DF_OK);
    cr_assert(len == 6 && !memcmp(arch, "qwen35", 6));
    cr_assert_eq(df_gguf_get_str(g, "general.name", &arch, &len), DF_OK);
    cr_assert(len == strlen(name) && !memcmp(arch, name, len), "general.name");
    cr_assert_eq(u32_key(g, "general.file_type"), file_type);
    cr_assert_eq(u32_key(g, "qwen35.block_count"), s->layers);
    cr_assert_eq(u32_key(g, "qwen35.embedding_length"), s->embd);
    cr_assert_eq(u32_key(g, "qwen35.feed_forward_length"), s->ff);
    cr_assert_eq(u32_key(g, "qwen35.attention.head_count"), s->heads);
    cr_assert_eq(u32_key(g, "qwen35.attention.head_count_kv"), s->kv);
    cr_assert_eq(u32_key(g, "qwen35.attention.key_length"), s->head_dim);
    cr_assert_eq(u32_key(g, "qwen35.attention.value_length"), s->head_dim);
    cr_assert_eq(u32_key(g, "qwen35.rope.dimension_count"), s->rot);
    cr_assert_eq(u32_key(g, "qwen35.ssm.conv_kernel"), s->conv);
    cr_assert_eq(u32_key(g, "qwen35.ssm.state_size"), s->d_k);
    cr_assert_eq(u32_key(g, "qwen35.ssm.group_count"), s->n_k);
    cr_assert_eq(u32_key(g, "qwen35.ssm.time_step_rank"), s->n_v);
    cr_assert_eq(u32_key(g, "qwen35.ssm.inner_size"), s->inner);
    cr_assert_eq(u32_key(g, "qwen35.full_attention_interval"), s->interval);
    cr_assert_eq(u32_key(g, "qwen35.context_length"), s->ctx);
    cr_assert_float_eq(f32_key(g, "qwen35.rope.freq_base"), s->theta, s->theta * 1e-6f);
    cr_assert_float_eq(f32_key(g, "qwen35.attention.layer_norm_rms_epsilon"), s->eps, 1e-12f);
    int32_t sec[4];
    size_t n = 0;
    cr_assert_eq(df_gguf_get_arr_i32(g, "qwen35.rope.dimension_sections", sec, 4, &n), DF_OK);
    cr_assert(n == 4 && sec[0] == 11 && sec[1] == 11 && sec[2] == 10 && sec[3] == 0);
    /* No tokenizer: not a single tokenizer.* key. */
    for (uint64_t i = 0; i < df_gguf_n_kv(g); i++)
        cr_assert(strncmp(df_gguf_kv_at(g, i)->key, "tokenizer.", 10), "unexpected key %s", df_gguf_kv_at(g, i)->key);
    const df_gguf_tensor *emb = df_gguf_find_tensor(g, "token_embd.weight");
    cr_assert_not_null(emb);
    cr_assert(emb->ne[0] == s->embd && emb->ne[1] == s->vocab);
    cr_assert_eq(df_gguf_find_tensor(g, "output.weight") == NULL, s->tied);
    /* Per layer: 10 + 4 tensors for Gated DeltaNet layers, 7 + 4 for attention ones (the
     * attn_norm counted in the first number, post_attention_norm and the FFN in the second); plus
     * token_embd, output_norm and (untied) output. */
    uint64_t want = 2 + (s->tied ? 0 : 1);
    for (uint32_t l = 0; l < s->layers; l++) want += (l + 1) % s->interval ? 14 : 11;
    cr_assert_eq(df_gguf_n_tensors(g), want);
}

static const shape k_tiny_bench = {
    .layers = 12, .embd = 768, .ff = 2048, .heads = 4, .kv = 2, .head_dim = 128, .rot = 32, .conv = 4,
    .d_k = 128, .n_k = 4, .n_v = 8, .inner = 1024, .interval = 4, .ctx = 4096, .vocab = 16384,
    .theta = 1e7f, .eps = 1e-6f, .tied = true,
};

static const shape k_small = {
    .layers = 4, .embd = 256, .ff = 512, .heads = 4, .kv = 2, .head_dim = 128, .rot = 32, .conv = 4,
    .d_k = 128, .n_k = 4, .n_v = 4, .inner = 256, .interval = 4, .ctx = 4096, .vocab = 1000,
    .theta = 5e5f, .eps = 1e-6f, .tied = false,
};

/* Loads the file, runs a few tokens and checks the logits are finite and spread out. */
static void check_forward(const char *path, const shape *s) {
    df_gguf *g;
    df_backend *be;
    df_qwen35 *m;
    df_qwen35_state *st;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_backend_cpu_create(2, &be), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_qwen35_load(g, be, &m), DF_OK, "%s", df_last_error());
    cr_assert_eq(m->hp.n_vocab, s->vocab);
    cr_assert_eq(m->tied, s->tied);
    cr_assert_eq(df_qwen35_state_create(m, 32, 8, DF_KV_F32, &st), DF_OK, "%s", df_last_error());
    const int32_t ids[6] = {1, (int32_t)s->vocab - 1, 17, 400, 3, 99};
    cr_assert_eq(df_qwen35_forward(st, ids, 6, DF_LOGITS_ALL, NULL), DF_OK, "%s", df_last_error());
    for (int r = 0; r < 6; r++) {
        const float *row = st->logits + (size_t)r * (size_t)s->vocab;
        double sum = 0, sq = 0;
        for (uint32_t i = 0; i < s->vocab; i++) {
            cr_assert(isfinite(row[i]), "row %d logit %u is %g", r, i, (double)row[i]);
            sum += row[i];
            sq += (double)row[i] * row[i];
        }
        double mean = sum / s->vocab, sd = sqrt(sq / s->vocab - mean * mean);
        /* Random weights of the documented scales give logits of order one, not a flat row. */
        cr_assert(sd > 0.05 && sd < 100.0, "row %d: logit spread %g", r, sd);
    }
    /* One more token on its own: the decode path too. */
    cr_assert_eq(df_qwen35_forward(st, ids, 1, DF_LOGITS_LAST, NULL), DF_OK, "%s", df_last_error());
    for (uint32_t i = 0; i < s->vocab; i++) cr_assert(isfinite(st->logits[i]));
    df_qwen35_state_free(st);
    df_qwen35_free(m);
    df_backend_destroy(be);
    df_gguf_close(g);
}

static void check_types(const df_gguf *g, df_type matrix_type) {
    for (uint64_t i = 0; i < df_gguf_n_tensors(g); i++) {
        const df_gguf_tensor *t = df_gguf_tensor_at(g, i);
        bool stays_f32 = t->n_dims < 2 || strstr(t->name, "ssm_conv1d");
        if (stays_f32) cr_assert_eq(t->type, DF_TYPE_F32, "%s is %s", t->name, df_type_name(t->type));
        else cr_assert_eq(t->type, matrix_type, "%s is %s", t->name, df_type_name(t->type));
    }
}

/* ---- presets --------------------------------------------------------------------------------- */

typedef struct want_preset {
    const char *name;
    int64_t layers, hidden, ffn, heads, kv, lin_k, lin_v;
    bool tied;
} want_preset;

/* Transcribed from the sources docs/MKMODEL.md cites for each model (config.json text_config). */
static const want_preset k_published[] = {
    {"qwen3.5-0.8b", 24, 1024, 3584, 8, 2, 16, 16, true},
    {"qwen3.5-2b", 24, 2048, 6144, 8, 2, 16, 16, true},
    {"qwen3.5-4b", 32, 2560, 9216, 16, 4, 16, 32, true},
    {"qwen3.5-9b", 32, 4096, 12288, 16, 4, 16, 32, false},
    {"qwen3.6-27b", 64, 5120, 17408, 24, 4, 16, 48, false},
};

Test(mkmodel, presets_match_the_published_configs) {
    for (size_t i = 0; i < sizeof k_published / sizeof k_published[0]; i++) {
        const want_preset *w = &k_published[i];
        const df_mkmodel_config *c = df_mkmodel_preset(w->name);
        cr_assert_not_null(c, "no preset %s", w->name);
        cr_assert_eq(c->num_hidden_layers, w->layers, "%s", w->name);
        cr_assert_eq(c->hidden_size, w->hidden, "%s", w->name);
        cr_assert_eq(c->intermediate_size, w->ffn, "%s", w->name);
        cr_assert_eq(c->num_attention_heads, w->heads, "%s", w->name);
        cr_assert_eq(c->num_key_value_heads, w->kv, "%s", w->name);
        cr_assert_eq(c->linear_num_key_heads, w->lin_k, "%s", w->name);
        cr_assert_eq(c->linear_num_value_heads, w->lin_v, "%s", w->name);
        cr_assert_eq(c->tie_word_embeddings, w->tied, "%s", w->name);
        /* Shared by the whole family in every source read. */
        cr_assert_eq(c->head_dim, 256);
        cr_assert_eq(c->vocab_size, 248320);
        cr_assert_eq(c->linear_key_head_dim, 128);
        cr_assert_eq(c->linear_value_head_dim, 128);
        cr_assert_eq(c->linear_conv_kernel_dim, 4);
        cr_assert_eq(c->full_attention_interval, 4);
        cr_assert_eq(c->max_position_embeddings, 262144);
        cr_assert_float_eq(c->rope_theta, 1e7, 1e-3);
        cr_assert_float_eq(c->partial_rotary_factor, 0.25, 1e-12);
        cr_assert_float_eq(c->rms_norm_eps, 1e-6, 1e-15);
        cr_assert_eq(df_mkmodel_check(c), DF_OK, "%s: %s", w->name, df_last_error());
    }
    /* Lookup is by name, case-insensitively, and nothing else. */
    cr_assert_not_null(df_mkmodel_preset("QWEN3.5-9B"));
    cr_assert_null(df_mkmodel_preset("qwen3.5-9"));
    cr_assert_null(df_mkmodel_preset(NULL));
    cr_assert_null(df_mkmodel_preset_at(df_mkmodel_n_presets()));
}

Test(mkmodel, preset_sizes) {
    /* Parameter counts of the text model, from the shapes by hand:
     * embed V*H (+ V*H untied) + H + per layer 2H + 3*H*F
     *   + GDN: H*(2*nk*dk + nv*dv) + 2*H*nv*dv ... computed here independently. */
    for (size_t i = 0; i < sizeof k_published / sizeof k_published[0]; i++) {
        const want_preset *w = &k_published[i];
        const int64_t H = w->hidden, F = w->ffn, V = 248320, hd = 256, dk = 128, K = 4;
        const int64_t Kd = w->lin_k * dk, Vd = w->lin_v * dk, C = 2 * Kd + Vd;
        int64_t gdn = H * C + H * Vd + 2 * H * w->lin_v + 2 * w->lin_v + C * K + dk + Vd * H;
        int64_t att = H * 2 * w->heads * hd + 2 * H * w->kv * hd + w->heads * hd * H + 2 * hd;
        int64_t per_layer = 2 * H + 3 * H * F;
        int64_t total = V * H * (w->tied ? 1 : 2) + H;
        for (int64_t l = 0; l < w->layers; l++) total += per_layer + ((l + 1) % 4 ? gdn : att);
        df_mkmodel_size sz;
        cr_assert_eq(df_mkmodel_estimate(df_mkmodel_preset(w->name), DF_CONVERT_F32, &sz), DF_OK, "%s", df_last_error());
        cr_assert_eq((int64_t)sz.n_params, total, "%s: %llu parameters, expected %lld", w->name,
                     (unsigned long long)sz.n_params, (long long)total);
        cr_assert_eq(sz.data_bytes, 4 * sz.n_params);
    }
    /* The 27B in q4_k_m is the ~16 GB file the GPU benchmark needs: between 4 and 5 bits a
     * weight on average (Q4_K is 4.5 bits, Q6_K 6.56, the f32 norms negligible). */
    df_mkmodel_size sz;
    cr_assert_eq(df_mkmodel_estimate(df_mkmodel_preset("qwen3.6-27b"), DF_CONVERT_Q4_K_M, &sz), DF_OK);
    double bits = 8.0 * (double)sz.data_bytes / (double)sz.n_params;
    cr_assert(bits > 4.5 && bits < 5.5, "27B q4_k_m: %.2f bits per weight", bits);
    /* tiny-bench is "about 100 M parameters". */
    cr_assert_eq(df_mkmodel_estimate(df_mkmodel_preset("tiny-bench"), DF_CONVERT_F32, &sz), DF_OK);
    cr_assert(sz.n_params > 80000000 && sz.n_params < 130000000, "tiny-bench: %llu", (unsigned long long)sz.n_params);
}

/* ---- tiny-bench written, loaded and run -------------------------------------------------------- */

static void tiny_bench(df_convert_type type, uint32_t file_type, df_type matrix_type) {
    make_dir();
    char path[128];
    path_in(path, sizeof path, "tiny.gguf");
    write_model(df_mkmodel_preset("tiny-bench"), path, type, 11, 2);
    df_gguf *g;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    check_metadata(g, &k_tiny_bench, "tiny-bench", file_type);
    check_types(g, matrix_type);
    df_gguf_close(g);
    check_forward(path, &k_tiny_bench);
    remove_dir();
}

Test(mkmodel, tiny_bench_f32, .timeout = 600) { tiny_bench(DF_CONVERT_F32, 0, DF_TYPE_F32); }
Test(mkmodel, tiny_bench_q8_0, .timeout = 600) { tiny_bench(DF_CONVERT_Q8_0, 7, DF_TYPE_Q8_0); }

Test(mkmodel, small_override_every_type, .timeout = 600) {
    make_dir();
    df_mkmodel_config c = small_config();
    const df_convert_type types[] = {DF_CONVERT_F32, DF_CONVERT_F16, DF_CONVERT_BF16, DF_CONVERT_Q8_0, DF_CONVERT_Q4_K_M};
    const uint32_t file_types[] = {0, 1, 32, 7, 15};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char path[128];
        path_in(path, sizeof path, "small.gguf");
        write_model(&c, path, types[i], 5, 2);
        df_gguf *g;
        cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
        check_metadata(g, &k_small, "tiny-bench", file_types[i]);
        if (types[i] == DF_CONVERT_Q8_0) check_types(g, DF_TYPE_Q8_0);
        if (types[i] == DF_CONVERT_F16) check_types(g, DF_TYPE_F16);
        df_gguf_close(g);
        check_forward(path, &k_small);
        unlink(path);
    }
    remove_dir();
}

/* ---- the weights ------------------------------------------------------------------------------- */

static void moments(const float *x, int64_t n, double *mean, double *sd, double *lo, double *hi) {
    double s = 0, q = 0;
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        q += (double)x[i] * x[i];
        if (x[i] < *lo) *lo = x[i];
        if (x[i] > *hi) *hi = x[i];
    }
    *mean = s / (double)n;
    *sd = sqrt(q / (double)n - *mean * *mean);
}

Test(mkmodel, weights_have_the_documented_scales, .timeout = 600) {
    make_dir();
    df_mkmodel_config c = small_config();
    char path[128];
    path_in(path, sizeof path, "f32.gguf");
    write_model(&c, path, DF_CONVERT_F32, 21, 2);
    df_gguf *g;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    double mean, sd, lo, hi;
    const df_gguf_tensor *t;
    /* A matrix reading the hidden state: N(0, 1/256). */
    t = df_gguf_find_tensor(g, "blk.0.ffn_up.weight");
    moments(t->data, t->n_elements, &mean, &sd, &lo, &hi);
    cr_assert(fabs(mean) < 0.002 && fabs(sd - 1.0 / 16.0) < 0.002, "ffn_up: mean %g sd %g", mean, sd);
    /* A matrix writing the residual: N(0, 1/(512 * 2 * 4 layers)). */
    t = df_gguf_find_tensor(g, "blk.1.ffn_down.weight");
    moments(t->data, t->n_elements, &mean, &sd, &lo, &hi);
    cr_assert(fabs(sd - 1.0 / sqrt(512.0 * 8.0)) < 0.001, "ffn_down: sd %g", sd);
    /* Embedding and head: N(0, 1/n_embd). */
    t = df_gguf_find_tensor(g, "output.weight");
    moments(t->data, t->n_elements, &mean, &sd, &lo, &hi);
    cr_assert(fabs(sd - 1.0 / 16.0) < 0.002, "output: sd %g", sd);
    /* Norms near 1, the +1 ones included. */
    const char *norms[] = {"blk.0.attn_norm.weight", "blk.3.attn_q_norm.weight", "blk.2.ssm_norm.weight",
                           "output_norm.weight"};
    for (size_t i = 0; i < 4; i++) {
        t = df_gguf_find_tensor(g, norms[i]);
        cr_assert_not_null(t, "%s", norms[i]);
        moments(t->data, t->n_elements, &mean, &sd, &lo, &hi);
        cr_assert(fabs(mean - 1.0) < 0.01 && sd > 0.005 && sd < 0.05 && lo > 0.8 && hi < 1.2, "%s: mean %g sd %g",
                  norms[i], mean, sd);
    }
    /* ssm_a = -A, A in [1, 16]; dt_bias = softplus^-1(dt), dt in [1e-3, 1e-1]. */
    for (int l = 0; l < 3; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.ssm_a", l);
        t = df_gguf_find_tensor(g, name);
        const float *a = t->data;
        for (int64_t i = 0; i < t->n_elements; i++) cr_assert(a[i] <= -1.0f && a[i] >= -16.0f, "%s[%lld] = %g", name, (long long)i, (double)a[i]);
        snprintf(name, sizeof name, "blk.%d.ssm_dt.bias", l);
        t = df_gguf_find_tensor(g, name);
        const float *b = t->data;
        for (int64_t i = 0; i < t->n_elements; i++) {
            double dt = log1p(exp((double)b[i]));
            cr_assert(dt > 0.99e-3 && dt < 1.01e-1, "%s[%lld]: softplus = %g", name, (long long)i, dt);
        }
        /* The conv kernel: N(0, 1/4), "small" next to the unit-scale activations. */
        snprintf(name, sizeof name, "blk.%d.ssm_conv1d.weight", l);
        t = df_gguf_find_tensor(g, name);
        moments(t->data, t->n_elements, &mean, &sd, &lo, &hi);
        cr_assert(fabs(sd - 0.5) < 0.03, "%s: sd %g", name, sd);
    }
    /* Tensors of the same shape are not copies of each other. */
    const df_gguf_tensor *u0 = df_gguf_find_tensor(g, "blk.0.ffn_up.weight"), *u1 = df_gguf_find_tensor(g, "blk.1.ffn_up.weight");
    const df_gguf_tensor *gt = df_gguf_find_tensor(g, "blk.0.ffn_gate.weight");
    cr_assert(memcmp(u0->data, u1->data, u0->size) && memcmp(u0->data, gt->data, u0->size));
    df_gguf_close(g);
    remove_dir();
}

/* ---- row pools ---------------------------------------------------------------------------------- */

static size_t g_row_size; /* for cmp_rows (qsort has no context argument) */
static int cmp_rows(const void *a, const void *b) { return memcmp(a, b, g_row_size); }

/* Distinct rows among the first `rows` rows of t, by sorting a copy. */
static size_t distinct_rows(const df_gguf_tensor *t, int64_t rows, size_t row_size) {
    unsigned char *copy = malloc((size_t)rows * row_size);
    cr_assert_not_null(copy);
    memcpy(copy, t->data, (size_t)rows * row_size);
    g_row_size = row_size;
    qsort(copy, (size_t)rows, row_size, cmp_rows);
    size_t n = rows > 0;
    for (int64_t i = 1; i < rows; i++) n += memcmp(copy + (size_t)i * row_size, copy + (size_t)(i - 1) * row_size, row_size) != 0;
    free(copy);
    return n;
}

/* A vocabulary of 20000: the embedding and the LM head are large enough for the row pools
 * (docs/MKMODEL.md: at most 1024 distinct rows per pool), and the rows still have the
 * documented statistics; --unique-rows (opts.unique_rows) gives every row its own draw. */
Test(mkmodel, large_tensors_copy_rows_from_a_pool, .timeout = 600) {
    make_dir();
    df_mkmodel_config c = small_config();
    cr_assert_eq(df_mkmodel_set(&c, "vocab_size", "20000"), DF_OK);
    shape s = k_small;
    s.vocab = 20000;
    for (int unique = 0; unique < 2; unique++) {
        char path[128];
        path_in(path, sizeof path, unique ? "unique.gguf" : "pooled.gguf");
        df_mkmodel_opts o;
        df_mkmodel_opts_init(&o);
        o.seed = 2;
        o.n_threads = 2;
        o.quiet = true;
        o.unique_rows = unique;
        o.log = fopen("/dev/null", "w");
        cr_assert_eq(df_mkmodel_write(&c, path, &o), DF_OK, "%s", df_last_error());
        fclose(o.log);
        df_gguf *g;
        cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
        const df_gguf_tensor *out = df_gguf_find_tensor(g, "output.weight");
        cr_assert(out && out->type == DF_TYPE_F32 && out->ne[1] == 20000);
        size_t n = distinct_rows(out, 20000, 256 * sizeof(float));
        if (unique) cr_assert_eq(n, 20000, "--unique-rows: %zu distinct rows of 20000", n);
        else cr_assert(n > 900 && n <= 1024, "pooled: %zu distinct rows of 20000", n);
        double mean, sd, lo, hi;
        moments(out->data, out->n_elements, &mean, &sd, &lo, &hi);
        cr_assert(fabs(mean) < 0.002 && fabs(sd - 1.0 / 16.0) < 0.002, "output: mean %g sd %g", mean, sd);
        /* Two tensors served by one pool are still different tensors. */
        const df_gguf_tensor *e = df_gguf_find_tensor(g, "token_embd.weight");
        cr_assert(memcmp(e->data, out->data, out->size), "token_embd == output");
        df_gguf_close(g);
        check_forward(path, &s);
        unlink(path);
    }
    /* Quantized pools hold real blocks: the Q6_K head decodes to the same statistics. */
    char path[128];
    path_in(path, sizeof path, "q4km.gguf");
    write_model(&c, path, DF_CONVERT_Q4_K_M, 2, 2);
    df_gguf *g;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    const df_gguf_tensor *out = df_gguf_find_tensor(g, "output.weight");
    cr_assert_eq(out->type, DF_TYPE_Q6_K);
    size_t row_size;
    cr_assert(df_type_row_size(out->type, 256, &row_size));
    cr_assert(distinct_rows(out, 20000, row_size) <= 1024);
    float row[256];
    double sq = 0;
    for (int r = 0; r < 20000; r += 7) {
        df_type_get(out->type)->to_float((const uint8_t *)out->data + (size_t)r * row_size, row, 256);
        for (int i = 0; i < 256; i++) {
            cr_assert(isfinite(row[i]));
            sq += (double)row[i] * row[i];
        }
    }
    double sd = sqrt(sq / (double)((20000 + 6) / 7 * 256));
    cr_assert(fabs(sd - 1.0 / 16.0) < 0.004, "q6_K output decodes with sd %g", sd);
    df_gguf_close(g);
    check_forward(path, &s);
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

Test(mkmodel, same_seed_same_bytes_other_seed_other_bytes, .timeout = 600) {
    make_dir();
    df_mkmodel_config c = small_config();
    const df_convert_type types[] = {DF_CONVERT_Q8_0, DF_CONVERT_Q4_K_M};
    for (size_t k = 0; k < 2; k++) {
        char a[128], b[128], d[128];
        path_in(a, sizeof a, "a.gguf");
        path_in(b, sizeof b, "b.gguf");
        path_in(d, sizeof d, "d.gguf");
        write_model(&c, a, types[k], 42, 1);
        write_model(&c, b, types[k], 42, 2); /* another thread count: still the same bytes */
        write_model(&c, d, types[k], 43, 2);
        size_t na, nb, nd;
        unsigned char *A = slurp(a, &na), *B = slurp(b, &nb), *D = slurp(d, &nd);
        cr_assert_eq(na, nb);
        cr_assert(!memcmp(A, B, na), "seed 42 twice gave different files");
        /* A different seed: same layout, other weights (the description names the seed, so
         * compare the tensor data, which starts at the same offset). */
        cr_assert_eq(na, nd);
        df_gguf *ga, *gd;
        cr_assert_eq(df_gguf_open(a, &ga), DF_OK);
        cr_assert_eq(df_gguf_open(d, &gd), DF_OK);
        for (uint64_t i = 0; i < df_gguf_n_tensors(ga); i++) {
            const df_gguf_tensor *ta = df_gguf_tensor_at(ga, i), *td = df_gguf_tensor_at(gd, i);
            cr_assert_eq(ta->size, td->size);
            cr_assert(memcmp(ta->data, td->data, ta->size), "%s is the same under seeds 42 and 43", ta->name);
        }
        df_gguf_close(ga);
        df_gguf_close(gd);
        free(A);
        free(B);
        free(D);
    }
    remove_dir();
}

/* ---- bad input --------------------------------------------------------------------------------- */

static void expect_check_fails(const char *key, const char *value, const char *needle) {
    df_mkmodel_config c = *df_mkmodel_preset("tiny-bench");
    cr_assert_eq(df_mkmodel_set(&c, key, value), DF_OK, "%s", df_last_error());
    cr_assert_neq(df_mkmodel_check(&c), DF_OK, "%s=%s accepted", key, value);
    cr_assert(strstr(df_last_error(), needle), "message '%s' does not name %s", df_last_error(), needle);
    /* And nothing is written. */
    make_dir();
    char path[128];
    path_in(path, sizeof path, "bad.gguf");
    df_mkmodel_opts o;
    df_mkmodel_opts_init(&o);
    o.quiet = true;
    cr_assert_neq(df_mkmodel_write(&c, path, &o), DF_OK);
    cr_assert(!file_exists(path));
    remove_dir();
}

Test(mkmodel, refuses_inconsistent_shapes) {
    expect_check_fails("num_key_value_heads", "3", "num_key_value_heads");
    expect_check_fails("linear_num_value_heads", "6", "linear_num_value_heads");
    expect_check_fails("partial_rotary_factor", "0.2", "rotary"); /* 128 * 0.2 = 25.6 -> 25: odd */
    expect_check_fails("head_dim", "12", "rotary");              /* 12 * 0.25 = 3: odd */
    expect_check_fails("hidden_size", "0", "hidden_size");
    expect_check_fails("num_hidden_layers", "-3", "num_hidden_layers");
    expect_check_fails("rms_norm_eps", "0", "rms_norm_eps");
    expect_check_fails("rope_theta", "-1", "rope_theta");
    expect_check_fails("partial_rotary_factor", "1.5", "partial_rotary_factor");
}

Test(mkmodel, refuses_bad_settings) {
    df_mkmodel_config c = *df_mkmodel_preset("tiny-bench");
    cr_assert_neq(df_mkmodel_set(&c, "hidden", "8"), DF_OK);
    cr_assert(strstr(df_last_error(), "hidden") && strstr(df_last_error(), "hidden_size"), "%s", df_last_error());
    cr_assert_neq(df_mkmodel_set(&c, "hidden_size", "12x"), DF_OK);
    cr_assert(strstr(df_last_error(), "12x"), "%s", df_last_error());
    cr_assert_neq(df_mkmodel_set(&c, "rope_theta", "nan"), DF_OK);
    cr_assert_neq(df_mkmodel_set(&c, "tie_word_embeddings", "maybe"), DF_OK);
    cr_assert_neq(df_mkmodel_set(&c, NULL, "1"), DF_OK);
    /* Nothing changed by the failures. */
    cr_assert_eq(c.hidden_size, 768);
    cr_assert_eq(df_mkmodel_set(&c, "tie_word_embeddings", "0"), DF_OK);
    cr_assert(!c.tie_word_embeddings);
}

/* ---- the command ------------------------------------------------------------------------------- */

static int run_cli(const char *args, char *err, size_t cap) {
    char cmd[1024];
    char errpath[128];
    path_in(errpath, sizeof errpath, "stderr.txt");
    snprintf(cmd, sizeof cmd, "%s mkmodel %s >/dev/null 2>%s", DFLASH_CLI, args, errpath);
    int rc = system(cmd);
    FILE *f = fopen(errpath, "r");
    size_t n = f ? fread(err, 1, cap - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(mkmodel, cli, .timeout = 600) {
    make_dir();
    char err[4096], path[128], args[512];
    /* --drafter needs a preset like the target does (test_mkmodel_drafter.c tests the rest). */
    cr_assert_eq(run_cli("--drafter x.gguf", err, sizeof err), 2);
    cr_assert(strstr(err, "--drafter"), "%s", err);
    cr_assert_eq(run_cli("--preset no-such-model x.gguf", err, sizeof err), 2);
    cr_assert(strstr(err, "no-such-model") && strstr(err, "qwen3.6-27b"), "%s", err);
    cr_assert_eq(run_cli("--preset tiny-bench --type q3_k x.gguf", err, sizeof err), 2);
    cr_assert_eq(run_cli("--preset tiny-bench --set hidden_size x.gguf", err, sizeof err), 2);
    cr_assert_eq(run_cli("--preset tiny-bench --set num_key_value_heads=3 --dry-run", err, sizeof err), 1);
    cr_assert(strstr(err, "num_key_value_heads"), "%s", err);
    cr_assert_eq(run_cli("--preset qwen3.6-27b --type q4_k_m --dry-run", err, sizeof err), 0);
    cr_assert(strstr(err, "851 tensors"), "%s", err);
    path_in(path, sizeof path, "cli.gguf");
    snprintf(args, sizeof args,
             "--preset tiny-bench --set num_hidden_layers=4 --set hidden_size=256 --set intermediate_size=512 "
             "--set vocab_size=1000 --set linear_num_value_heads=4 --set linear_value_head_dim=64 "
             "--set tie_word_embeddings=false --set rope_theta=500000 --type q8_0 --seed 5 -t 2 -q %s",
             path);
    cr_assert_eq(run_cli(args, err, sizeof err), 0, "%s", err);
    /* The command and the library agree byte for byte. */
    char lib[128];
    path_in(lib, sizeof lib, "lib.gguf");
    df_mkmodel_config c = small_config();
    write_model(&c, lib, DF_CONVERT_Q8_0, 5, 1);
    size_t n1, n2;
    unsigned char *a = slurp(path, &n1), *b = slurp(lib, &n2);
    cr_assert(n1 == n2 && !memcmp(a, b, n1));
    free(a);
    free(b);
    remove_dir();
}
