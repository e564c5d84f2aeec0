/* dflash convert for DFlash drafters: a z-lab DFlashDraftModel directory -> a lucebox-style
 * "qwen35-dflash-draft" GGUF.
 *
 * The reference is the directory itself, loaded by df_dflash_draft_load_dir (which shares no
 * code with the converter's writing path): the GGUF loaded by df_dflash_draft_load_gguf must
 * give the same hyperparameters and the same weights, bit for bit at f32, within each type's
 * rounding bound at f16 / q8_0 / q4_k_m (bounds derived here from the formats, not from the
 * converter), and the same draft logits at f32 on a random embedding table and LM head.
 * Sources: the transformers-made fixtures tests/fixtures/dflash/{full2,swa2} (f32 weights),
 * a bf16 copy of full2 written by hand here, and configs edited here with Jansson for the
 * error cases (rope_theta resolution, mask token, capture count vs fc, causality, stray
 * tensors). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "base/rng.h"
#include "convert/convert.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "model/dflash_draft.h"
#include "quant/types.h"

#define FIXTURES DFLASH_SOURCE_DIR "/tests/fixtures/dflash"

/* ---- temp dirs and files ------------------------------------------------------------------- */

static char *make_tmpdir(void) {
    char tmpl[] = "/tmp/dflash_test_convert_dflash_XXXXXX";
    char *d = mkdtemp(tmpl);
    cr_assert_not_null(d, "mkdtemp failed");
    return strdup(d);
}

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* A converted file; the caller frees the path and removes the directory. */
static df_status convert_to(const char *src_dir, const char *out, df_convert_type type) {
    df_convert_opts o;
    df_convert_opts_init(&o);
    o.type = type;
    o.quiet = true;
    o.n_threads = 2;
    o.log = tmpfile();
    cr_assert_not_null(o.log);
    df_status st = df_convert(src_dir, out, &o);
    fclose(o.log);
    return st;
}

/* A drafter directory in tmp: the fixture's config.json edited by `edit` (may be NULL) and its
 * weights linked. */
typedef void (*config_edit)(json_t *cfg);

static void make_variant(const char *fixture, const char *dir, config_edit edit) {
    char src[1024], dst[1024];
    snprintf(src, sizeof src, "%s/%s/config.json", FIXTURES, fixture);
    json_error_t err;
    json_t *cfg = json_load_file(src, 0, &err);
    cr_assert_not_null(cfg, "%s: %s", src, err.text);
    if (edit) edit(cfg);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    cr_assert_eq(json_dump_file(cfg, dst, JSON_INDENT(2)), 0);
    json_decref(cfg);
    snprintf(src, sizeof src, "%s/%s/model.safetensors", FIXTURES, fixture);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    cr_assert_eq(symlink(src, dst), 0, "symlink %s", dst);
}

/* ---- loading and comparing ------------------------------------------------------------------ */

typedef struct pair {
    df_backend *be;
    df_gguf *g;
    df_dflash_draft *from_gguf, *from_dir;
} pair;

static void load_pair(pair *p, const char *gguf_path, const char *dir) {
    memset(p, 0, sizeof *p);
    cr_assert_eq(df_backend_cpu_create(2, &p->be), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_gguf_open(gguf_path, &p->g), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_dflash_draft_load_gguf(p->g, p->be, &p->from_gguf), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_dflash_draft_load_dir(dir, p->be, &p->from_dir), DF_OK, "%s", df_last_error());
}

static void free_pair(pair *p) {
    df_dflash_draft_free(p->from_gguf);
    df_dflash_draft_free(p->from_dir);
    df_gguf_close(p->g);
    df_backend_destroy(p->be);
}

/* Every hyperparameter, field by field. The GGUF has no key for the depth of the target the
 * drafter was trained against (lucebox's format does not carry it): the file gives 0
 * ("unknown") there, and the converter resolved the capture ids with it instead. */
static void expect_same_hparams(const df_dflash_hparams *g, const df_dflash_hparams *d) {
#define SAME(f) cr_expect_eq(g->f, d->f, #f ": gguf %lld, dir %lld", (long long)g->f, (long long)d->f)
    SAME(n_embd);
    SAME(n_layer);
    SAME(n_ff);
    SAME(n_head);
    SAME(n_head_kv);
    SAME(head_dim);
    SAME(n_ctx_train);
    SAME(block_size);
    SAME(mask_token_id);
    SAME(n_capture);
    SAME(n_layer_ids);
    SAME(n_vocab);
    SAME(sliding_window);
#undef SAME
    cr_expect(g->rms_eps == d->rms_eps, "rms_eps: gguf %g, dir %g", (double)g->rms_eps, (double)d->rms_eps);
    cr_expect(g->rope_theta == d->rope_theta, "rope_theta: gguf %g, dir %g", (double)g->rope_theta,
              (double)d->rope_theta);
    for (int i = 0; i < d->n_layer_ids && i < g->n_layer_ids; i++)
        cr_expect_eq(g->layer_ids[i], d->layer_ids[i], "layer_ids[%d]", i);
    for (int64_t l = 0; l < d->n_layer; l++) {
        cr_expect_eq(g->sliding[l], d->sliding[l], "sliding[%lld]", (long long)l);
        cr_expect_eq(g->causal[l], d->causal[l], "causal[%lld]", (long long)l);
    }
    cr_expect_eq(g->target_n_layer, 0, "the GGUF has no target depth key");
    cr_expect_gt(d->target_n_layer, 0, "the fixtures declare num_target_layers");
}

/* Every weight of a drafter in a fixed order, with a name for messages. */
static int weight_list(df_dflash_draft *d, df_weight **w, const char **names) {
    int n = 0;
    w[n] = &d->fc, names[n++] = "fc";
    w[n] = &d->hidden_norm, names[n++] = "hidden_norm";
    w[n] = &d->output_norm, names[n++] = "output_norm";
    static const char *const lnames[] = {"attn_norm", "ffn_norm", "wq", "wk", "wv", "wo",
                                         "q_norm", "k_norm", "ffn_gate", "ffn_up", "ffn_down"};
    for (int64_t l = 0; l < d->hp.n_layer; l++) {
        df_dflash_layer *L = &d->layers[l];
        df_weight *lw[] = {&L->attn_norm, &L->ffn_norm, &L->wq, &L->wk, &L->wv, &L->wo,
                           &L->q_norm, &L->k_norm, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
        for (int i = 0; i < 11; i++) w[n] = lw[i], names[n++] = lnames[i];
    }
    return n;
}

static float *dequant(const df_weight *w) {
    const int64_t n = w->ne[0] * w->ne[1];
    float *f = malloc((size_t)n * sizeof *f);
    cr_assert_not_null(f);
    const df_type_traits *tt = df_type_get(w->type);
    cr_assert(tt && tt->to_float, "%s: type %s", w->name, df_type_name(w->type));
    tt->to_float(w->data, f, n);
    return f;
}

/* The per-element error a type may add to a value x whose block (of the type's block size,
 * along a row) has largest magnitude amax; derived from the formats:
 *   f16: round to nearest, 11 significant bits (subnormals: absolute 2^-25);
 *   q8_0: d = amax / 127 stored as f16, q = round(x / d): |err| <= d/2 + 127 |d - f16(d)|;
 *   q5_0: d = extreme / -16 stored as f16, q clamped to 31: |err| <= |d| + 16 |d| 2^-11;
 *   f32 / bf16 from an f32 source: f32 exact, bf16 round to nearest with 8 bits. */
static double type_bound(df_type t, double x, double amax) {
    switch (t) {
    case DF_TYPE_F32: return 0.0;
    case DF_TYPE_F16: return fmax(fabs(x) * 0x1p-11, 0x1p-25);
    case DF_TYPE_BF16: return fmax(fabs(x) * 0x1p-8, 0x1p-133);
    case DF_TYPE_Q8_0: return amax / 127.0 * (0.5 + 127.0 * 0x1p-11) + 1e-12;
    case DF_TYPE_Q5_0: return amax / 16.0 * (1.0 + 16.0 * 0x1p-11) + 1e-12;
    default: cr_assert_fail("no bound for type %s", df_type_name(t)); return 0;
    }
}

/* The GGUF weights against the directory's: 1-D ones f32 and identical; matrices of type
 * want_matrix (or, when it is 0, DF_TYPE_F32 and byte-identical). */
static void expect_same_weights(df_dflash_draft *g, df_dflash_draft *d, df_type want_matrix) {
    df_weight *wg[256], *wd[256];
    const char *ng[256], *nd[256];
    int n = weight_list(g, wg, ng);
    cr_assert_eq(weight_list(d, wd, nd), n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(wg[i]->ne[0], wd[i]->ne[0], "%s ne0", ng[i]);
        cr_assert_eq(wg[i]->ne[1], wd[i]->ne[1], "%s ne1", ng[i]);
        const bool vec = wd[i]->ne[1] == 1;
        const df_type want = vec ? DF_TYPE_F32 : want_matrix;
        cr_expect_eq(wg[i]->type, want, "%s (%s): type %s, expected %s", ng[i], wg[i]->name,
                     df_type_name(wg[i]->type), df_type_name(want));
        float *a = dequant(wg[i]), *b = dequant(wd[i]);
        const int64_t ne0 = wd[i]->ne[0], rows = wd[i]->ne[1];
        if (want == DF_TYPE_F32) {
            cr_expect_eq(memcmp(a, b, (size_t)(ne0 * rows) * sizeof(float)), 0, "%s: f32 weights differ", wg[i]->name);
        } else {
            const int bs = df_type_get(want)->block_size;
            int64_t bad = 0, changed = 0;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c0 = 0; c0 < ne0; c0 += bs) {
                    double amax = 0;
                    for (int64_t c = c0; c < c0 + bs; c++) amax = fmax(amax, fabs(b[r * ne0 + c]));
                    for (int64_t c = c0; c < c0 + bs; c++) {
                        double x = b[r * ne0 + c], y = a[r * ne0 + c];
                        if (!(fabs(y - x) <= type_bound(want, x, amax))) bad++;
                        changed += y != x;
                    }
                }
            cr_expect_eq(bad, 0, "%s: %lld of %lld values outside the %s rounding bound", wg[i]->name,
                         (long long)bad, (long long)(ne0 * rows), df_type_name(want));
            cr_expect_gt(changed, 0, "%s: no value changed: was it really written as %s?", wg[i]->name,
                         df_type_name(want));
        }
        free(a), free(b);
    }
}

/* ---- forward ----------------------------------------------------------------------------------- */

typedef struct session {
    df_weight emb, head;
    df_dflash_state *s;
} session;

/* Random context features committed in two pieces, then one full block; logits copied out. */
static float *draft_logits(df_backend *be, const df_dflash_draft *d, const float *emb, const float *head,
                           int64_t V, const float *feat, int64_t rows, int32_t bonus) {
    const int64_t E = d->hp.n_embd, B = d->hp.block_size;
    df_weight e = {.type = DF_TYPE_F32, .ne = {E, V, 1, 1}, .data = emb, .size = (size_t)(V * E) * 4,
                   .name = "token_embd.weight"};
    df_weight h = e;
    h.data = head;
    h.name = "output.weight";
    session ss;
    cr_assert_eq(be->ops->bind_weight(be, &e, &ss.emb), DF_OK);
    cr_assert_eq(be->ops->bind_weight(be, &h, &ss.head), DF_OK);
    cr_assert_eq(df_dflash_state_create_with(d, &ss.emb, &ss.head, 64, 0, DF_KV_F32, &ss.s), DF_OK, "%s",
                 df_last_error());
    const int64_t width = d->hp.n_capture * E, first = rows / 3;
    cr_assert_eq(df_dflash_state_commit_packed(ss.s, feat, first), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_dflash_state_commit_packed(ss.s, feat + first * width, rows - first), DF_OK, "%s",
                 df_last_error());
    cr_assert_eq(df_dflash_state_draft(ss.s, bonus, B), DF_OK, "%s", df_last_error());
    const size_t n = (size_t)((B - 1) * V);
    float *out = malloc(n * sizeof *out);
    cr_assert_not_null(out);
    memcpy(out, ss.s->logits, n * sizeof *out);
    df_dflash_state_free(ss.s);
    return out;
}

/* max |a - b| / max |b| over the logits of both drafters; 0 means bit-identical values. */
static double compare_forward(pair *p, uint64_t seed, bool *identical) {
    const df_dflash_hparams *hp = &p->from_dir->hp;
    const int64_t E = hp->n_embd, V = hp->n_vocab, B = hp->block_size;
    const int64_t rows = 41; /* past swa2's window of 20: the ring wraps */
    df_rng r;
    df_rng_seed(&r, seed);
    float *emb = malloc((size_t)(V * E) * sizeof(float)), *head = malloc((size_t)(V * E) * sizeof(float));
    const int64_t width = hp->n_capture * E;
    float *feat = malloc((size_t)(rows * width) * sizeof(float));
    cr_assert(emb && head && feat);
    for (int64_t i = 0; i < V * E; i++) emb[i] = df_rng_normal(&r), head[i] = df_rng_normal(&r) / sqrtf((float)E);
    for (int64_t i = 0; i < rows * width; i++) feat[i] = 2.0f * df_rng_normal(&r);
    const int32_t bonus = (int32_t)df_rng_below(&r, (uint32_t)V);
    float *a = draft_logits(p->be, p->from_gguf, emb, head, V, feat, rows, bonus);
    float *b = draft_logits(p->be, p->from_dir, emb, head, V, feat, rows, bonus);
    const size_t n = (size_t)((B - 1) * V);
    *identical = memcmp(a, b, n * sizeof(float)) == 0;
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(isfinite(a[i]) && isfinite(b[i]), "logit %zu is not finite", i);
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    cr_assert_gt(den, 0.0);
    free(emb), free(head), free(feat), free(a), free(b);
    return num / den;
}

/* ---- conversions of the fixtures ---------------------------------------------------------------- */

static void check_fixture(const char *fixture, df_convert_type type, df_type want_matrix, double logit_tol) {
    char *tmp = make_tmpdir();
    char src[1024], out[1024];
    snprintf(src, sizeof src, "%s/%s", FIXTURES, fixture);
    snprintf(out, sizeof out, "%s/draft.gguf", tmp);
    cr_assert_eq(convert_to(src, out, type), DF_OK, "%s", df_last_error());
    pair p;
    load_pair(&p, out, src);
    cr_assert_str_eq(df_gguf_arch(p.g), DF_DFLASH_ARCH);
    expect_same_hparams(&p.from_gguf->hp, &p.from_dir->hp);
    expect_same_weights(p.from_gguf, p.from_dir, want_matrix);
    bool identical = false;
    double rel = compare_forward(&p, 1000 + (uint64_t)type, &identical);
    if (type == DF_CONVERT_F32) cr_expect(identical, "f32 logits differ (max relative %.3g)", rel);
    else cr_expect(rel <= logit_tol, "%s: logits differ by %.3g relative, more than %.3g", fixture, rel, logit_tol);
    free_pair(&p);
    rm_tree(tmp);
    free(tmp);
}

Test(convert_dflash, full2_f32_is_identical) { check_fixture("full2", DF_CONVERT_F32, DF_TYPE_F32, 0); }
Test(convert_dflash, swa2_f32_is_identical) { check_fixture("swa2", DF_CONVERT_F32, DF_TYPE_F32, 0); }
/* Logit tolerances (max |diff| / max |logit|): the weight rounding of each type grows through
 * two layers, attention and the quantized-activation matmuls; measured on these fixtures
 * about 6e-4 (f16), 4e-3 (bf16), 3e-2 (q8_0) and 0.2 (q5_0), the bounds are 3 to 9 times that.
 * A wrong weight layout or norm gives errors of order 1. The weights themselves are checked
 * element by element against their type's rounding bound above. */
Test(convert_dflash, full2_f16) { check_fixture("full2", DF_CONVERT_F16, DF_TYPE_F16, 5e-3); }
Test(convert_dflash, swa2_f16) { check_fixture("swa2", DF_CONVERT_F16, DF_TYPE_F16, 5e-3); }
Test(convert_dflash, full2_q8_0) { check_fixture("full2", DF_CONVERT_Q8_0, DF_TYPE_Q8_0, 0.1); }
Test(convert_dflash, swa2_q8_0) { check_fixture("swa2", DF_CONVERT_Q8_0, DF_TYPE_Q8_0, 0.1); }
/* q4_k_m: Q4_K for every matrix (lucebox's drafter recipe); the fixtures' rows (64..192) are
 * not whole 256-element super-blocks, so every matrix takes the fallback, Q5_0. */
Test(convert_dflash, full2_q4_k_m_falls_back_to_q5_0) {
    check_fixture("full2", DF_CONVERT_Q4_K_M, DF_TYPE_Q5_0, 0.6);
}
Test(convert_dflash, swa2_bf16) { check_fixture("swa2", DF_CONVERT_BF16, DF_TYPE_BF16, 3e-2); }

/* The lucebox keys, read back raw (not through our drafter reader). */
Test(convert_dflash, metadata_keys) {
    char *tmp = make_tmpdir();
    char out[1024];
    snprintf(out, sizeof out, "%s/swa2.gguf", tmp);
    cr_assert_eq(convert_to(FIXTURES "/swa2", out, DF_CONVERT_F16), DF_OK, "%s", df_last_error());
    df_gguf *g;
    cr_assert_eq(df_gguf_open(out, &g), DF_OK, "%s", df_last_error());
    static const struct { const char *key; int64_t v; } ints[] = {
        {"embedding_length", 64}, {"block_count", 2}, {"feed_forward_length", 96},
        {"attention.head_count", 2}, {"attention.head_count_kv", 1}, {"attention.key_length", 32},
        {"attention.value_length", 32}, {"context_length", 4096}, {"vocab_size", 384},
        {"dflash.n_target_layers", 2}, {"dflash.block_size", 16}, {"dflash.mask_token_id", 7},
        {"attention.sliding_window", 20},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        char key[128];
        snprintf(key, sizeof key, DF_DFLASH_ARCH ".%s", ints[i].key);
        uint32_t v = 0;
        cr_expect_eq(df_gguf_get_u32(g, key, &v), DF_OK, "%s: %s", key, df_last_error());
        cr_expect_eq((int64_t)v, ints[i].v, "%s", key);
    }
    float f = 0;
    cr_expect_eq(df_gguf_get_f32(g, DF_DFLASH_ARCH ".rope.freq_base", &f), DF_OK);
    cr_expect(f == 1e6f, "rope.freq_base %g", (double)f);
    cr_expect_eq(df_gguf_get_f32(g, DF_DFLASH_ARCH ".attention.layer_norm_rms_epsilon", &f), DF_OK);
    cr_expect(f == 1e-6f, "eps %g", (double)f);
    int32_t ids[4];
    size_t n = 0;
    cr_expect_eq(df_gguf_get_arr_i32(g, DF_DFLASH_ARCH ".dflash.target_layer_ids", ids, 4, &n), DF_OK);
    cr_expect(n == 2 && ids[0] == 2 && ids[1] == 0);
    df_gguf_value arr;
    cr_assert_eq(df_gguf_get_arr(g, DF_DFLASH_ARCH ".attention.sliding_window_pattern", &arr), DF_OK);
    cr_expect_eq(arr.elem_type, DF_GGUF_BOOL);
    cr_expect_eq(arr.count, 2);
    /* Tensor names and types: norms f32, matrices f16, shapes in ggml order. */
    const df_gguf_tensor *t = df_gguf_find_tensor(g, "dflash.fc.weight");
    cr_assert_not_null(t);
    cr_expect(t->type == DF_TYPE_F16 && t->ne[0] == 128 && t->ne[1] == 64);
    static const char *const norms[] = {"dflash.hidden_norm.weight", "output_norm.weight", "blk.1.attn_norm.weight",
                                        "blk.1.ffn_norm.weight", "blk.0.attn_q_norm.weight",
                                        "blk.0.attn_k_norm.weight"};
    for (size_t i = 0; i < sizeof norms / sizeof norms[0]; i++) {
        t = df_gguf_find_tensor(g, norms[i]);
        cr_assert_not_null(t, "%s", norms[i]);
        cr_expect_eq(t->type, DF_TYPE_F32, "%s", norms[i]);
    }
    t = df_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    cr_assert_not_null(t);
    cr_expect(t->type == DF_TYPE_F16 && t->ne[0] == 96 && t->ne[1] == 64);
    cr_expect_eq(df_gguf_n_tensors(g), 3 + 2 * 11);
    df_gguf_close(g);
    rm_tree(tmp);
    free(tmp);
}

/* ---- a bf16 checkpoint (as drafters are published) -------------------------------------------- */

/* Writes full2's weights as bf16 (the top 16 bits of each f32) into dir/model.safetensors,
 * plus `extra` (a stray tensor name) when given; returns nothing, the reference is computed
 * from the same bits by the caller. */
static void write_bf16_checkpoint(const char *dir, const char *extra) {
    df_st_file *f;
    cr_assert_eq(df_st_open(FIXTURES "/full2/model.safetensors", &f), DF_OK, "%s", df_last_error());
    json_t *hdr = json_object();
    size_t off = 0;
    const size_t n = f->n_tensors + (extra ? 1 : 0);
    for (size_t i = 0; i < n; i++) {
        const df_st_tensor *t = &f->tensors[i < f->n_tensors ? i : 0];
        json_t *shape = json_array();
        for (int k = 0; k < t->n_dims; k++) json_array_append_new(shape, json_integer(t->shape[k]));
        size_t bytes = t->n_elements * 2;
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", "BF16", "shape", shape, "data_offsets",
                              (json_int_t)off, (json_int_t)(off + bytes));
        json_object_set_new(hdr, i < f->n_tensors ? t->name : extra, e);
        off += bytes;
    }
    char *text = json_dumps(hdr, JSON_COMPACT);
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *o = fopen(path, "wb");
    cr_assert_not_null(o);
    uint64_t hl = padded;
    fwrite(&hl, 8, 1, o);
    fwrite(text, 1, len, o);
    for (size_t i = len; i < padded; i++) fputc(' ', o);
    for (size_t i = 0; i < n; i++) {
        const df_st_tensor *t = &f->tensors[i < f->n_tensors ? i : 0];
        for (uint64_t k = 0; k < t->n_elements; k++) {
            uint32_t bits;
            memcpy(&bits, t->data + 4 * k, 4);
            uint16_t b = (uint16_t)(bits >> 16);
            fwrite(&b, 2, 1, o);
        }
    }
    fclose(o);
    free(text);
    json_decref(hdr);
    df_st_close(f);
    char src[1024], dst[1024];
    snprintf(src, sizeof src, "%s/full2/config.json", FIXTURES);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    cr_assert_eq(symlink(src, dst), 0);
}

Test(convert_dflash, bf16_checkpoint) {
    char *tmp = make_tmpdir();
    write_bf16_checkpoint(tmp, NULL);
    char out[1024];
    /* --type f32: the bf16 values widened exactly; the directory loader keeps the matrices
     * bf16, so compare through dequantization (bf16 -> f32 is exact both ways). */
    snprintf(out, sizeof out, "%s/f32.gguf", tmp);
    cr_assert_eq(convert_to(tmp, out, DF_CONVERT_F32), DF_OK, "%s", df_last_error());
    pair p;
    load_pair(&p, out, tmp);
    expect_same_hparams(&p.from_gguf->hp, &p.from_dir->hp);
    cr_expect_eq(p.from_dir->fc.type, DF_TYPE_BF16, "the directory loader keeps bf16 matrices");
    df_weight *wg[64], *wd[64];
    const char *ng[64], *nd[64];
    int n = weight_list(p.from_gguf, wg, ng);
    cr_assert_eq(weight_list(p.from_dir, wd, nd), n);
    for (int i = 0; i < n; i++) {
        cr_expect_eq(wg[i]->type, DF_TYPE_F32, "%s", wg[i]->name);
        float *a = dequant(wg[i]), *b = dequant(wd[i]);
        cr_expect_eq(memcmp(a, b, (size_t)(wd[i]->ne[0] * wd[i]->ne[1]) * 4), 0, "%s", wg[i]->name);
        free(a), free(b);
    }
    bool identical = false;
    compare_forward(&p, 7, &identical);
    cr_expect(identical, "f32 from bf16: logits differ from the bf16 directory's");
    free_pair(&p);
    /* --type bf16: the matrices' bytes are the checkpoint's own. */
    snprintf(out, sizeof out, "%s/bf16.gguf", tmp);
    cr_assert_eq(convert_to(tmp, out, DF_CONVERT_BF16), DF_OK, "%s", df_last_error());
    load_pair(&p, out, tmp);
    n = weight_list(p.from_gguf, wg, ng);
    weight_list(p.from_dir, wd, nd);
    for (int i = 0; i < n; i++) {
        if (wd[i]->ne[1] == 1) continue;
        cr_expect_eq(wg[i]->type, DF_TYPE_BF16, "%s", wg[i]->name);
        cr_expect_eq(wg[i]->size, wd[i]->size, "%s", wg[i]->name);
        cr_expect_eq(memcmp(wg[i]->data, wd[i]->data, wd[i]->size), 0, "%s: bf16 bytes differ", wg[i]->name);
    }
    compare_forward(&p, 8, &identical);
    cr_expect(identical, "bf16: logits differ from the directory's");
    free_pair(&p);
    rm_tree(tmp);
    free(tmp);
}

Test(convert_dflash, stray_tensor_is_refused) {
    char *tmp = make_tmpdir();
    write_bf16_checkpoint(tmp, "lm_head.weight");
    char out[1024];
    snprintf(out, sizeof out, "%s/out.gguf", tmp);
    df_status st = convert_to(tmp, out, DF_CONVERT_F16);
    cr_expect_eq(st, DF_ERR_FORMAT, "%s", df_status_name(st));
    cr_expect(strstr(df_last_error(), "lm_head.weight") != NULL, "%s", df_last_error());
    cr_expect(!file_exists(out));
    rm_tree(tmp);
    free(tmp);
}

/* ---- config.json cases ----------------------------------------------------------------------- */

static void drop_nested_theta(json_t *c) { json_object_del(json_object_get(c, "rope_parameters"), "rope_theta"); }
static void no_theta(json_t *c) { drop_nested_theta(c); }
static void top_theta_only(json_t *c) {
    drop_nested_theta(c);
    json_object_set_new(c, "rope_theta", json_real(123456.0));
}
static void both_thetas(json_t *c) { json_object_set_new(c, "rope_theta", json_real(500000.0)); }
static void no_mask(json_t *c) { json_object_del(json_object_get(c, "dflash_config"), "mask_token_id"); }
static void two_ids(json_t *c) {
    json_object_set_new(json_object_get(c, "dflash_config"), "target_layer_ids", json_pack("[i, i]", 0, 1));
}
static void explicit_causal(json_t *c) { json_object_set_new(c, "is_causal", json_true()); }
static void ids_beyond_target(json_t *c) {
    json_object_set_new(json_object_get(c, "dflash_config"), "target_layer_ids", json_pack("[i, i, i]", 0, 1, 7));
}

/* Converts the edited fixture; returns the status, with the GGUF at out when it succeeded. */
static df_status convert_variant(const char *fixture, config_edit edit, char *tmp, char *out, size_t cap) {
    make_variant(fixture, tmp, edit);
    snprintf(out, cap, "%s/out.gguf", tmp);
    return convert_to(tmp, out, DF_CONVERT_F32);
}

static float gguf_theta(const char *path) {
    df_gguf *g;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    float f = 0;
    cr_assert_eq(df_gguf_get_f32(g, DF_DFLASH_ARCH ".rope.freq_base", &f), DF_OK);
    df_gguf_close(g);
    return f;
}

Test(convert_dflash, missing_rope_theta_is_refused_naming_the_file) {
    char *tmp = make_tmpdir();
    char out[1024];
    df_status st = convert_variant("full2", no_theta, tmp, out, sizeof out);
    cr_expect_eq(st, DF_ERR_NOT_FOUND, "%s", df_status_name(st));
    cr_expect(strstr(df_last_error(), "config.json") && strstr(df_last_error(), tmp), "%s", df_last_error());
    cr_expect(strstr(df_last_error(), "rope_parameters.rope_theta") && strstr(df_last_error(), "rope_theta"), "%s",
              df_last_error());
    cr_expect(!file_exists(out), "no file after a failure");
    rm_tree(tmp);
    free(tmp);
}

Test(convert_dflash, top_level_rope_theta_is_used) {
    char *tmp = make_tmpdir();
    char out[1024];
    cr_assert_eq(convert_variant("full2", top_theta_only, tmp, out, sizeof out), DF_OK, "%s", df_last_error());
    cr_expect(gguf_theta(out) == 123456.0f, "freq_base %g", (double)gguf_theta(out));
    rm_tree(tmp);
    free(tmp);
}

Test(convert_dflash, nested_rope_theta_wins_over_top_level) {
    char *tmp = make_tmpdir();
    char out[1024];
    cr_assert_eq(convert_variant("full2", both_thetas, tmp, out, sizeof out), DF_OK, "%s", df_last_error());
    cr_expect(gguf_theta(out) == 1e7f, "freq_base %g, expected the nested 1e7", (double)gguf_theta(out));
    rm_tree(tmp);
    free(tmp);
}

Test(convert_dflash, missing_mask_token_is_refused) {
    char *tmp = make_tmpdir();
    char out[1024];
    df_status st = convert_variant("full2", no_mask, tmp, out, sizeof out);
    cr_expect_eq(st, DF_ERR_NOT_FOUND, "%s", df_status_name(st));
    cr_expect(strstr(df_last_error(), "mask_token_id") != NULL, "%s", df_last_error());
    cr_expect(!file_exists(out));
    rm_tree(tmp);
    free(tmp);
}

Test(convert_dflash, capture_count_disagreeing_with_fc_is_refused) {
    char *tmp = make_tmpdir();
    char out[1024];
    df_status st = convert_variant("full2", two_ids, tmp, out, sizeof out);
    cr_expect_eq(st, DF_ERR_MISMATCH, "%s", df_status_name(st));
    cr_expect(strstr(df_last_error(), "fc.weight") && strstr(df_last_error(), "[64, 192]") &&
                  strstr(df_last_error(), "target_layer_ids"),
              "%s", df_last_error());
    cr_expect(!file_exists(out));
    rm_tree(tmp);
    free(tmp);
}

Test(convert_dflash, causality_the_gguf_cannot_say_is_refused) {
    char *tmp = make_tmpdir();
    char out[1024];
    df_status st = convert_variant("full2", explicit_causal, tmp, out, sizeof out);
    cr_expect_eq(st, DF_ERR_UNSUPPORTED, "%s", df_status_name(st));
    cr_expect(strstr(df_last_error(), "is_causal") != NULL, "%s", df_last_error());
    cr_expect(!file_exists(out));
    rm_tree(tmp);
    free(tmp);
}

Test(convert_dflash, capture_layer_beyond_the_target_is_refused) {
    char *tmp = make_tmpdir();
    char out[1024];
    df_status st = convert_variant("full2", ids_beyond_target, tmp, out, sizeof out);
    cr_expect_eq(st, DF_ERR_FORMAT, "%s", df_status_name(st));
    cr_expect(strstr(df_last_error(), "num_target_layers") != NULL, "%s", df_last_error());
    rm_tree(tmp);
    free(tmp);
}

/* An older config (no target_layer_ids, num_target_layers 8): the ids are resolved at
 * conversion, by z-lab's build_target_layer_ids(8, 2) = round(1 + i * (8 - 4) / 1) = [1, 5],
 * and written out, since the GGUF cannot say the target depth. */
static void older_ids(json_t *c) {
    json_object_del(json_object_get(c, "dflash_config"), "target_layer_ids");
    json_object_set_new(c, "num_target_layers", json_integer(8));
}

Test(convert_dflash, older_default_capture_layers_are_written_out) {
    char *tmp = make_tmpdir();
    char out[1024];
    cr_assert_eq(convert_variant("swa2", older_ids, tmp, out, sizeof out), DF_OK, "%s", df_last_error());
    pair p;
    load_pair(&p, out, tmp);
    cr_expect_eq(p.from_gguf->hp.n_layer_ids, 2);
    cr_expect(p.from_gguf->hp.layer_ids[0] == 1 && p.from_gguf->hp.layer_ids[1] == 5, "ids [%d, %d]",
              p.from_gguf->hp.layer_ids[0], p.from_gguf->hp.layer_ids[1]);
    expect_same_hparams(&p.from_gguf->hp, &p.from_dir->hp);
    free_pair(&p);
    rm_tree(tmp);
    free(tmp);
}

/* ---- the CLI ----------------------------------------------------------------------------------- */

static int run(const char *fmt, const char *a, const char *b) {
    char cmd[4096];
    char tail[3000];
    snprintf(tail, sizeof tail, fmt, a, b);
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>&1", DFLASH_CLI, tail);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(convert_dflash, cli_convert_and_inspect) {
    char *tmp = make_tmpdir();
    char out[1024];
    snprintf(out, sizeof out, "%s/swa2-q8_0.gguf", tmp);
    cr_assert_eq(run("convert %s %s --type q8_0 -q -t 2", FIXTURES "/swa2", out), 0);
    cr_assert(file_exists(out));
    cr_expect_eq(run("inspect %s%s", out, ""), 0);
    cr_expect_eq(run("inspect %s%s", out, " --tensors --json"), 0);
    df_gguf *g;
    cr_assert_eq(df_gguf_open(out, &g), DF_OK, "%s", df_last_error());
    cr_expect_eq(df_gguf_find_tensor(g, "blk.0.attn_q.weight")->type, DF_TYPE_Q8_0);
    df_gguf_close(g);
    rm_tree(tmp);
    free(tmp);
}
