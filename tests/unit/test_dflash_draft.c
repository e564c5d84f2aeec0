/* The DFlash drafter: loading (lucebox GGUF and z-lab checkpoint directory), the errors a bad
 * file gets, rope_theta resolution, the fit against a target, and the forward pass.
 *
 * Drafters are random and written here by a builder of this file (GGUF through our writer,
 * config.json + model.safetensors by hand). The forward is checked against a plain-C
 * double-precision implementation of the published semantics written below, which shares
 * no code with src/model (docs/DFLASH_DRAFTER.md lists the semantics):
 *   - several context lengths, full and sliding-window layers, GQA, shorter blocks;
 *   - committing the context in uneven pieces with draft steps in between gives the same
 *     bits as committing it at once;
 *   - the GGUF and the checkpoint directory of one drafter give the same bits. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend.h"
#include "base/fp16.h"
#include "base/rng.h"
#include "format/config.h"
#include "format/gguf.h"
#include "format/gguf_write.h"
#include "model/dflash_draft.h"

#define MAXL 4

/* ---- a random drafter in host memory ------------------------------------------------------ */

typedef struct rlayer {
    float *an, *fn, *wq, *wk, *wv, *wo, *qn, *kn, *wg, *wu, *wd;
} rlayer;

typedef struct rdraft {
    int E, L, F, H, Hkv, D, ncap, B, V, mask, window, target_layers;
    bool sliding[MAXL];
    int causal; /* -1: the default (sliding layers causal); 0 / 1: is_causal for all */
    int32_t ids[8];
    float theta, eps;
    float *fc, *hn, *on;
    rlayer layer[MAXL];
    float *emb, *head; /* the target's embedding table and LM head, [V][E] */
} rdraft;

static float *rnd(df_rng *r, size_t n, float scale, float offset) {
    float *p = malloc(n * sizeof *p);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) p[i] = offset + scale * df_rng_normal(r);
    return p;
}

/* The default test drafter: layer 0 slides (window 12), layer 1 is full; GQA 4 / 2. */
static void rd_make(rdraft *d, uint64_t seed, bool sliding0) {
    memset(d, 0, sizeof *d);
    d->E = 32, d->L = 2, d->F = 48, d->H = 4, d->Hkv = 2, d->D = 16, d->ncap = 3, d->B = 8;
    d->V = 50, d->mask = 47, d->window = sliding0 ? 12 : 0, d->target_layers = 6;
    d->sliding[0] = sliding0;
    d->causal = -1;
    d->ids[0] = 1, d->ids[1] = 2, d->ids[2] = 4;
    d->theta = 10000.0f, d->eps = 1e-6f;
    df_rng r;
    df_rng_seed(&r, seed);
    const int E = d->E, qd = d->H * d->D, kvd = d->Hkv * d->D;
    d->fc = rnd(&r, (size_t)E * d->ncap * E, 1.0f / sqrtf((float)(d->ncap * E)), 0);
    d->hn = rnd(&r, E, 0.2f, 1.0f);
    d->on = rnd(&r, E, 0.2f, 1.0f);
    for (int l = 0; l < d->L; l++) {
        rlayer *L = &d->layer[l];
        L->an = rnd(&r, E, 0.2f, 1.0f);
        L->fn = rnd(&r, E, 0.2f, 1.0f);
        L->wq = rnd(&r, (size_t)qd * E, 1.0f / sqrtf((float)E), 0);
        L->wk = rnd(&r, (size_t)kvd * E, 1.0f / sqrtf((float)E), 0);
        L->wv = rnd(&r, (size_t)kvd * E, 1.0f / sqrtf((float)E), 0);
        L->wo = rnd(&r, (size_t)E * qd, 1.0f / sqrtf((float)qd), 0);
        L->qn = rnd(&r, d->D, 0.3f, 1.5f);
        L->kn = rnd(&r, d->D, 0.3f, 1.5f);
        L->wg = rnd(&r, (size_t)d->F * E, 1.0f / sqrtf((float)E), 0);
        L->wu = rnd(&r, (size_t)d->F * E, 1.0f / sqrtf((float)E), 0);
        L->wd = rnd(&r, (size_t)E * d->F, 1.0f / sqrtf((float)d->F), 0);
    }
    d->emb = rnd(&r, (size_t)d->V * E, 1.0f, 0);
    d->head = rnd(&r, (size_t)d->V * E, 1.0f / sqrtf((float)E), 0);
}

static void rd_free(rdraft *d) {
    free(d->fc), free(d->hn), free(d->on), free(d->emb), free(d->head);
    for (int l = 0; l < d->L; l++) {
        rlayer *L = &d->layer[l];
        float *p[] = {L->an, L->fn, L->wq, L->wk, L->wv, L->wo, L->qn, L->kn, L->wg, L->wu, L->wd};
        for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    }
}

/* Rounds every drafter weight to bf16 (for the bf16 checkpoint test). */
static void round_bf16(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = df_bf16_to_f32(df_f32_to_bf16(p[i]));
}

/* ---- the tensor list both file kinds are written from --------------------------------------- */

typedef struct tensor {
    char gguf[64], hf[96];
    int64_t ne0, ne1; /* ne1 == 0: a vector */
    const float *data;
} tensor;

static int tensor_list(const rdraft *d, tensor *t) {
    const int E = d->E, qd = d->H * d->D, kvd = d->Hkv * d->D;
    int n = 0;
#define T(g, h, a, b, p)                                                 \
    do {                                                                 \
        snprintf(t[n].gguf, sizeof t[n].gguf, "%s", g);                  \
        snprintf(t[n].hf, sizeof t[n].hf, "%s", h);                      \
        t[n].ne0 = (a), t[n].ne1 = (b), t[n].data = (p);                 \
        n++;                                                             \
    } while (0)
    T("dflash.fc.weight", "fc.weight", d->ncap * E, E, d->fc);
    T("dflash.hidden_norm.weight", "hidden_norm.weight", E, 0, d->hn);
    T("output_norm.weight", "norm.weight", E, 0, d->on);
    for (int l = 0; l < d->L; l++) {
        const rlayer *L = &d->layer[l];
        char g[64], h[96];
#define TL(gs, hs, a, b, p)                                              \
    do {                                                                 \
        snprintf(g, sizeof g, "blk.%d.%s", l, gs);                       \
        snprintf(h, sizeof h, "layers.%d.%s", l, hs);                    \
        T(g, h, a, b, p);                                                \
    } while (0)
        TL("attn_norm.weight", "input_layernorm.weight", E, 0, L->an);
        TL("ffn_norm.weight", "post_attention_layernorm.weight", E, 0, L->fn);
        TL("attn_q.weight", "self_attn.q_proj.weight", E, qd, L->wq);
        TL("attn_k.weight", "self_attn.k_proj.weight", E, kvd, L->wk);
        TL("attn_v.weight", "self_attn.v_proj.weight", E, kvd, L->wv);
        TL("attn_output.weight", "self_attn.o_proj.weight", qd, E, L->wo);
        TL("attn_q_norm.weight", "self_attn.q_norm.weight", d->D, 0, L->qn);
        TL("attn_k_norm.weight", "self_attn.k_norm.weight", d->D, 0, L->kn);
        TL("ffn_gate.weight", "mlp.gate_proj.weight", E, d->F, L->wg);
        TL("ffn_up.weight", "mlp.up_proj.weight", E, d->F, L->wu);
        TL("ffn_down.weight", "mlp.down_proj.weight", d->F, E, L->wd);
#undef TL
    }
#undef T
    return n;
}

static size_t t_elems(const tensor *t) { return (size_t)t->ne0 * (size_t)(t->ne1 ? t->ne1 : 1); }

/* ---- files ---------------------------------------------------------------------------------- */

static void tmp_path(char *buf, size_t cap, const char *leaf) {
    snprintf(buf, cap, "%s/dflash_draft_%d_%s", DFLASH_BINARY_DIR, (int)getpid(), leaf);
}

/* What to break in a GGUF. */
typedef struct gguf_opts {
    const char *arch;
    const char *drop_key;     /* a key suffix after "<arch>." */
    const char *drop_tensor;
    const char *extra_tensor;
    const char *bad_shape;    /* written one column wider */
    const char *f16_tensor;   /* written as f16 */
    const char *rename_from, *rename_to;
    int64_t n_target_layers;  /* > 0: written instead of the right count */
    int n_ids;                /* -1: no target_layer_ids; 0: the right list; > 0: that many */
    int pattern_len;          /* 0: L entries; > 0: that many */
    bool no_window;
} gguf_opts;

static const gguf_opts GGUF_OK = {.n_ids = 0};

static bool key_wanted(const gguf_opts *o, const char *suffix) {
    return !o->drop_key || strcmp(o->drop_key, suffix) != 0;
}

static void write_gguf(const rdraft *d, const char *path, const gguf_opts *o) {
    df_gguf_writer *w;
    cr_assert_eq(df_gguf_writer_create(path, &w), DF_OK, "%s", df_last_error());
    const char *arch = o->arch ? o->arch : DF_DFLASH_ARCH;
    char key[160];
#define U32(suffix, val)                                                            \
    do {                                                                            \
        if (key_wanted(o, suffix)) {                                                \
            snprintf(key, sizeof key, "%s.%s", arch, suffix);                       \
            df_gguf_writer_add_u32(w, key, (uint32_t)(val));                        \
        }                                                                           \
    } while (0)
    df_gguf_writer_add_str(w, "general.architecture", arch);
    U32("context_length", 4096);
    U32("embedding_length", d->E);
    U32("block_count", d->L);
    U32("feed_forward_length", d->F);
    U32("attention.head_count", d->H);
    U32("attention.head_count_kv", d->Hkv);
    U32("attention.key_length", d->D);
    U32("attention.value_length", d->D);
    U32("vocab_size", d->V);
    if (key_wanted(o, "attention.layer_norm_rms_epsilon")) {
        snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
        df_gguf_writer_add_f32(w, key, d->eps);
    }
    if (key_wanted(o, "rope.freq_base")) {
        snprintf(key, sizeof key, "%s.rope.freq_base", arch);
        df_gguf_writer_add_f32(w, key, d->theta);
    }
    U32("dflash.n_target_layers", o->n_target_layers > 0 ? o->n_target_layers : d->ncap);
    U32("dflash.block_size", d->B);
    U32("dflash.mask_token_id", d->mask);
    if (o->n_ids >= 0 && key_wanted(o, "dflash.target_layer_ids")) {
        int32_t ids[16];
        int n = o->n_ids > 0 ? o->n_ids : d->ncap;
        for (int i = 0; i < n; i++) ids[i] = i < d->ncap ? d->ids[i] : i;
        snprintf(key, sizeof key, "%s.dflash.target_layer_ids", arch);
        df_gguf_writer_add_arr(w, key, DF_GGUF_I32, ids, (size_t)n);
    }
    bool any = false;
    for (int l = 0; l < d->L; l++) any |= d->sliding[l];
    if (any) {
        if (!o->no_window) U32("attention.sliding_window", d->window);
        bool pat[16] = {0};
        for (int l = 0; l < d->L; l++) pat[l] = d->sliding[l];
        snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", arch);
        df_gguf_writer_add_arr(w, key, DF_GGUF_BOOL, pat, (size_t)(o->pattern_len ? o->pattern_len : d->L));
    }
#undef U32
    tensor t[64];
    int n = tensor_list(d, t);
    /* mutations */
    float *owned[4] = {0};
    int n_owned = 0;
    df_rng r;
    df_rng_seed(&r, 99);
    for (int i = 0; i < n; i++) {
        if (o->bad_shape && strcmp(t[i].gguf, o->bad_shape) == 0) {
            t[i].ne0 += 1;
            t[i].data = owned[n_owned++] = rnd(&r, t_elems(&t[i]), 1.0f, 0);
        }
        if (o->rename_from && strcmp(t[i].gguf, o->rename_from) == 0)
            snprintf(t[i].gguf, sizeof t[i].gguf, "%s", o->rename_to);
    }
    if (o->extra_tensor) {
        snprintf(t[n].gguf, sizeof t[n].gguf, "%s", o->extra_tensor);
        t[n].ne0 = d->E, t[n].ne1 = 0;
        t[n].data = owned[n_owned++] = rnd(&r, (size_t)d->E, 1.0f, 0);
        n++;
    }
    for (int i = 0; i < n; i++) {
        if (o->drop_tensor && strcmp(t[i].gguf, o->drop_tensor) == 0) continue;
        bool f16 = o->f16_tensor && strcmp(t[i].gguf, o->f16_tensor) == 0;
        int64_t ne[2] = {t[i].ne0, t[i].ne1};
        df_gguf_writer_add_tensor(w, t[i].gguf, f16 ? DF_TYPE_F16 : DF_TYPE_F32, t[i].ne1 ? 2 : 1, ne);
    }
    cr_assert_eq(df_gguf_writer_write_header(w), DF_OK, "%s", df_last_error());
    for (int i = 0; i < n; i++) {
        if (o->drop_tensor && strcmp(t[i].gguf, o->drop_tensor) == 0) continue;
        size_t ne = t_elems(&t[i]);
        if (o->f16_tensor && strcmp(t[i].gguf, o->f16_tensor) == 0) {
            df_fp16 *h = malloc(ne * sizeof *h);
            for (size_t j = 0; j < ne; j++) h[j] = df_f32_to_fp16(t[i].data[j]);
            df_gguf_writer_write_tensor(w, t[i].gguf, h, ne * sizeof *h);
            free(h);
        } else {
            df_gguf_writer_write_tensor(w, t[i].gguf, t[i].data, ne * sizeof(float));
        }
    }
    cr_assert_eq(df_gguf_writer_finish(w), DF_OK, "%s", df_last_error());
    df_gguf_writer_free(w);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
}

/* A growable string for config.json and the safetensors header. */
typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        cr_assert_not_null(b->s);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

typedef enum { ROPE_NESTED, ROPE_TOP, ROPE_BOTH, ROPE_NONE } rope_mode;

/* What to vary in a checkpoint directory. */
typedef struct dir_opts {
    rope_mode rope;
    const char *arch;        /* NULL: DFlashDraftModel */
    bool no_mask;
    bool no_ids;             /* no target_layer_ids (num_target_layers stays) */
    bool no_target_layers;   /* no num_target_layers */
    bool no_use_sliding;     /* layer_types keep sliding layers, use_sliding_window false */
    const char *extra;       /* more top-level JSON fields, e.g. "\"attention_bias\": true" */
    const char *drop_tensor;
    const char *extra_tensor;
    bool bf16;
    bool no_config;
    bool attention_bias;
} dir_opts;

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void write_dir(const rdraft *d, const char *dir, const dir_opts *o) {
    mkdir(dir, 0755);
    char path[1100];
    strbuf c = {0};
    sb_printf(&c, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"qwen3\",\n",
              o->arch ? o->arch : "DFlashDraftModel");
    sb_printf(&c, "  \"hidden_size\": %d, \"num_hidden_layers\": %d, \"intermediate_size\": %d,\n",
              d->E, d->L, d->F);
    sb_printf(&c, "  \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d,\n",
              d->H, d->Hkv, d->D);
    sb_printf(&c, "  \"rms_norm_eps\": %.9g, \"vocab_size\": %d, \"hidden_act\": \"silu\",\n",
              (double)d->eps, d->V);
    sb_printf(&c, "  \"attention_bias\": %s, \"tie_word_embeddings\": false,\n",
              o->attention_bias ? "true" : "false");
    if (o->rope == ROPE_NESTED || o->rope == ROPE_BOTH)
        sb_printf(&c, "  \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": %.9g},\n",
                  (double)d->theta);
    if (o->rope == ROPE_TOP) sb_printf(&c, "  \"rope_theta\": %.9g,\n", (double)d->theta);
    if (o->rope == ROPE_BOTH) sb_printf(&c, "  \"rope_theta\": %.9g,\n", (double)d->theta * 10);
    if (!o->no_target_layers) sb_printf(&c, "  \"num_target_layers\": %d,\n", d->target_layers);
    bool any = false;
    for (int l = 0; l < d->L; l++) any |= d->sliding[l];
    if (any) {
        sb_printf(&c, "  \"use_sliding_window\": %s, \"sliding_window\": %d,\n",
                  o->no_use_sliding ? "false" : "true", d->window);
    }
    sb_printf(&c, "  \"layer_types\": [");
    for (int l = 0; l < d->L; l++)
        sb_printf(&c, "%s\"%s\"", l ? ", " : "", d->sliding[l] ? "sliding_attention" : "full_attention");
    sb_printf(&c, "],\n");
    if (d->causal >= 0) sb_printf(&c, "  \"is_causal\": %s,\n", d->causal ? "true" : "false");
    if (o->extra) sb_printf(&c, "  %s,\n", o->extra);
    sb_printf(&c, "  \"dflash_config\": {\"block_size\": %d", d->B);
    if (!o->no_mask) sb_printf(&c, ", \"mask_token_id\": %d", d->mask);
    if (!o->no_ids) {
        sb_printf(&c, ", \"target_layer_ids\": [");
        for (int i = 0; i < d->ncap; i++) sb_printf(&c, "%s%d", i ? ", " : "", d->ids[i]);
        sb_printf(&c, "]");
    }
    sb_printf(&c, "}\n}\n");
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!o->no_config) write_file(path, c.s, c.len);
    free(c.s);

    /* model.safetensors: header JSON, padded with spaces to 8 bytes, then the data */
    tensor t[64];
    int n = tensor_list(d, t);
    float extra[64];
    if (o->extra_tensor) {
        for (int i = 0; i < d->E; i++) extra[i] = (float)i * 0.25f + 1.0f;
        snprintf(t[n].hf, sizeof t[n].hf, "%s", o->extra_tensor);
        t[n].ne0 = d->E, t[n].ne1 = 0, t[n].data = extra;
        n++;
    }
    strbuf h = {0};
    size_t off = 0, esz = o->bf16 ? 2 : 4;
    sb_printf(&h, "{");
    int written = 0;
    for (int i = 0; i < n; i++) {
        if (o->drop_tensor && strcmp(t[i].hf, o->drop_tensor) == 0) continue;
        size_t bytes = t_elems(&t[i]) * esz;
        if (t[i].ne1)
            sb_printf(&h, "%s\"%s\": {\"dtype\": \"%s\", \"shape\": [%lld, %lld], \"data_offsets\": [%zu, %zu]}",
                      written ? ", " : "", t[i].hf, o->bf16 ? "BF16" : "F32", (long long)t[i].ne1,
                      (long long)t[i].ne0, off, off + bytes);
        else
            sb_printf(&h, "%s\"%s\": {\"dtype\": \"%s\", \"shape\": [%lld], \"data_offsets\": [%zu, %zu]}",
                      written ? ", " : "", t[i].hf, o->bf16 ? "BF16" : "F32", (long long)t[i].ne0,
                      off, off + bytes);
        off += bytes;
        written++;
    }
    sb_printf(&h, "}");
    while (h.len % 8) sb_printf(&h, " ");
    uint8_t *file = malloc(8 + h.len + off);
    uint64_t hl = h.len;
    memcpy(file, &hl, 8);
    memcpy(file + 8, h.s, h.len);
    uint8_t *p = file + 8 + h.len;
    for (int i = 0; i < n; i++) {
        if (o->drop_tensor && strcmp(t[i].hf, o->drop_tensor) == 0) continue;
        for (size_t j = 0; j < t_elems(&t[i]); j++) {
            if (o->bf16) {
                df_bf16 b = df_f32_to_bf16(t[i].data[j]);
                memcpy(p, &b, 2);
            } else {
                memcpy(p, &t[i].data[j], 4);
            }
            p += esz;
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_file(path, file, 8 + h.len + off);
    free(file);
    free(h.s);
}

static void remove_dir(const char *dir) {
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

/* ---- loading helpers ------------------------------------------------------------------------ */

static df_backend *cpu(void) {
    df_backend *be;
    cr_assert_eq(df_backend_cpu_create(2, &be), DF_OK, "%s", df_last_error());
    return be;
}

/* Loads a GGUF written with opts; returns the status, leaves the message in df_last_error. */
static df_status try_gguf(const rdraft *d, const gguf_opts *o, const char *leaf) {
    char path[1024];
    tmp_path(path, sizeof path, leaf);
    write_gguf(d, path, o);
    df_backend *be = cpu();
    df_dflash_draft *dr = NULL;
    df_status st = df_dflash_draft_open(path, be, &dr);
    if (st == DF_OK) cr_assert_not_null(dr);
    else cr_assert_null(dr);
    df_dflash_draft_free(dr);
    df_backend_destroy(be);
    unlink(path);
    return st;
}

static df_status try_dir(const rdraft *d, const dir_opts *o, const char *leaf, df_dflash_hparams *hp) {
    char dir[1024];
    tmp_path(dir, sizeof dir, leaf);
    write_dir(d, dir, o);
    df_backend *be = cpu();
    df_dflash_draft *dr = NULL;
    df_status st = df_dflash_draft_load_dir(dir, be, &dr);
    if (st == DF_OK && hp) *hp = dr->hp;
    df_dflash_draft_free(dr);
    df_backend_destroy(be);
    remove_dir(dir);
    return st;
}

#define EXPECT_FAIL(expr, code, needle)                                                        \
    do {                                                                                       \
        df_status st_ = (expr);                                                                \
        cr_assert_eq(st_, code, "expected %s, got %s: %s", df_status_name(code),               \
                     df_status_name(st_), df_last_error());                                    \
        cr_assert_not_null(strstr(df_last_error(), needle), "message '%s' does not name '%s'", \
                           df_last_error(), needle);                                           \
    } while (0)

/* ---- GGUF loading errors -------------------------------------------------------------------- */

Test(dflash_gguf, loads_a_valid_file) {
    rdraft d;
    rd_make(&d, 1, true);
    cr_assert_eq(try_gguf(&d, &GGUF_OK, "ok.gguf"), DF_OK, "%s", df_last_error());
    rd_free(&d);
}

Test(dflash_gguf, wrong_architecture) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.arch = "qwen35"};
    EXPECT_FAIL(try_gguf(&d, &o, "arch.gguf"), DF_ERR_UNSUPPORTED, "general.architecture");
    rd_free(&d);
}

Test(dflash_gguf, missing_rope_freq_base_is_refused) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.drop_key = "rope.freq_base"};
    EXPECT_FAIL(try_gguf(&d, &o, "rope.gguf"), DF_ERR_NOT_FOUND, "rope.freq_base");
    rd_free(&d);
}

Test(dflash_gguf, missing_mask_token) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.drop_key = "dflash.mask_token_id"};
    EXPECT_FAIL(try_gguf(&d, &o, "mask.gguf"), DF_ERR_NOT_FOUND, "dflash.mask_token_id");
    rd_free(&d);
}

Test(dflash_gguf, missing_capture_count) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.drop_key = "dflash.n_target_layers", .n_ids = -1};
    EXPECT_FAIL(try_gguf(&d, &o, "ncap.gguf"), DF_ERR_NOT_FOUND, "dflash.n_target_layers");
    rd_free(&d);
}

Test(dflash_gguf, missing_head_count) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.drop_key = "attention.head_count"};
    EXPECT_FAIL(try_gguf(&d, &o, "heads.gguf"), DF_ERR_NOT_FOUND, "attention.head_count");
    rd_free(&d);
}

Test(dflash_gguf, missing_tensor) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.drop_tensor = "blk.1.attn_k.weight"};
    EXPECT_FAIL(try_gguf(&d, &o, "miss.gguf"), DF_ERR_NOT_FOUND, "blk.1.attn_k.weight");
    rd_free(&d);
}

Test(dflash_gguf, wrong_tensor_shape) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.bad_shape = "blk.0.ffn_up.weight"};
    EXPECT_FAIL(try_gguf(&d, &o, "shape.gguf"), DF_ERR_MISMATCH, "blk.0.ffn_up.weight");
    rd_free(&d);
}

Test(dflash_gguf, unexpected_tensor) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.extra_tensor = "blk.2.attn_norm.weight"};
    EXPECT_FAIL(try_gguf(&d, &o, "extra.gguf"), DF_ERR_FORMAT, "blk.2.attn_norm.weight");
    rd_free(&d);
}

Test(dflash_gguf, fc_width_disagrees_with_capture_count) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.n_target_layers = 4, .n_ids = -1};
    EXPECT_FAIL(try_gguf(&d, &o, "fc.gguf"), DF_ERR_MISMATCH, "dflash.fc.weight");
    cr_assert_not_null(strstr(df_last_error(), "n_target_layers"), "%s", df_last_error());
    rd_free(&d);
}

Test(dflash_gguf, layer_id_count_disagrees_with_capture_count) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.n_ids = 2};
    EXPECT_FAIL(try_gguf(&d, &o, "ids.gguf"), DF_ERR_MISMATCH, "target_layer_ids");
    rd_free(&d);
}

Test(dflash_gguf, sliding_pattern_of_wrong_length) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.pattern_len = 3};
    EXPECT_FAIL(try_gguf(&d, &o, "pat.gguf"), DF_ERR_FORMAT, "sliding_window_pattern");
    rd_free(&d);
}

Test(dflash_gguf, sliding_pattern_without_window) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.no_window = true};
    EXPECT_FAIL(try_gguf(&d, &o, "win.gguf"), DF_ERR_FORMAT, "attention.sliding_window");
    rd_free(&d);
}

Test(dflash_gguf, norm_weights_must_be_f32) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.f16_tensor = "blk.0.attn_q_norm.weight"};
    EXPECT_FAIL(try_gguf(&d, &o, "f16.gguf"), DF_ERR_UNSUPPORTED, "blk.0.attn_q_norm.weight");
    rd_free(&d);
}

Test(dflash_gguf, accepts_post_attention_norm_spelling) {
    rdraft d;
    rd_make(&d, 1, true);
    gguf_opts o = {.rename_from = "blk.1.ffn_norm.weight", .rename_to = "blk.1.post_attention_norm.weight"};
    cr_assert_eq(try_gguf(&d, &o, "alt.gguf"), DF_OK, "%s", df_last_error());
    rd_free(&d);
}

Test(dflash_gguf, reads_hyperparameters) {
    rdraft d;
    rd_make(&d, 1, true);
    char path[1024];
    tmp_path(path, sizeof path, "hp.gguf");
    write_gguf(&d, path, &GGUF_OK);
    df_gguf *g;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    df_dflash_hparams hp;
    cr_assert_eq(df_dflash_read_hparams_gguf(g, &hp), DF_OK, "%s", df_last_error());
    cr_expect_eq(hp.n_embd, d.E);
    cr_expect_eq(hp.n_layer, d.L);
    cr_expect_eq(hp.head_dim, d.D);
    cr_expect_eq(hp.n_capture, d.ncap);
    cr_expect_eq(hp.n_layer_ids, d.ncap);
    cr_expect_eq(hp.layer_ids[2], d.ids[2]);
    cr_expect_eq(hp.mask_token_id, d.mask);
    cr_expect_eq(hp.block_size, d.B);
    cr_expect_eq(hp.sliding_window, d.window);
    cr_expect(hp.sliding[0] && !hp.sliding[1]);
    cr_expect(hp.causal[0] && !hp.causal[1], "sliding layers causal, full layers not");
    cr_expect_eq(hp.rope_theta, d.theta);
    df_gguf_close(g);
    unlink(path);
    rd_free(&d);
}

/* ---- checkpoint directory loading errors ------------------------------------------------------ */

Test(dflash_dir, loads_a_valid_directory) {
    rdraft d;
    rd_make(&d, 2, true);
    dir_opts o = {0};
    df_dflash_hparams hp;
    cr_assert_eq(try_dir(&d, &o, "okdir", &hp), DF_OK, "%s", df_last_error());
    cr_expect_eq(hp.n_capture, 3);
    cr_expect_eq(hp.sliding_window, d.window);
    cr_expect_eq(hp.target_n_layer, d.target_layers);
    cr_expect_eq(hp.n_vocab, d.V);
    rd_free(&d);
}

Test(dflash_dir, missing_config) {
    rdraft d;
    rd_make(&d, 2, true);
    dir_opts o = {.no_config = true};
    EXPECT_FAIL(try_dir(&d, &o, "nocfg", NULL), DF_ERR_IO, "config.json");
    rd_free(&d);
}

Test(dflash_dir, no_rope_theta_is_refused_naming_the_file) {
    rdraft d;
    rd_make(&d, 2, true);
    dir_opts o = {.rope = ROPE_NONE};
    EXPECT_FAIL(try_dir(&d, &o, "norope", NULL), DF_ERR_NOT_FOUND, "config.json");
    cr_assert_not_null(strstr(df_last_error(), "rope_theta"), "%s", df_last_error());
    rd_free(&d);
}

Test(dflash_dir, missing_mask_token) {
    rdraft d;
    rd_make(&d, 2, true);
    dir_opts o = {.no_mask = true};
    EXPECT_FAIL(try_dir(&d, &o, "nomask", NULL), DF_ERR_NOT_FOUND, "mask_token_id");
    rd_free(&d);
}

Test(dflash_dir, other_architectures_are_refused) {
    rdraft d;
    rd_make(&d, 2, true);
    dir_opts o = {.arch = "DFlash2DraftModel"};
    EXPECT_FAIL(try_dir(&d, &o, "arch", NULL), DF_ERR_UNSUPPORTED, "DFlash2DraftModel");
    rd_free(&d);
}

Test(dflash_dir, attention_bias_is_refused) {
    rdraft d;
    rd_make(&d, 2, true);
    dir_opts o = {.attention_bias = true};
    EXPECT_FAIL(try_dir(&d, &o, "bias", NULL), DF_ERR_UNSUPPORTED, "attention_bias");
    rd_free(&d);
}

Test(dflash_dir, output_multiplier_is_refused) {
    rdraft d;
    rd_make(&d, 2, true);
    dir_opts o = {.extra = "\"output_multiplier\": 0.5"};
    EXPECT_FAIL(try_dir(&d, &o, "outmul", NULL), DF_ERR_UNSUPPORTED, "output_multiplier");
    rd_free(&d);
}

Test(dflash_dir, scaled_rope_is_refused) {
    rdraft d;
    rd_make(&d, 2, true);
    dir_opts o = {.rope = ROPE_TOP, .extra = "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}"};
    EXPECT_FAIL(try_dir(&d, &o, "yarn", NULL), DF_ERR_UNSUPPORTED, "rope_scaling");
    rd_free(&d);
}

Test(dflash_dir, sliding_layers_need_use_sliding_window) {
    rdraft d;
    rd_make(&d, 2, true);
    dir_opts o = {.no_use_sliding = true};
    EXPECT_FAIL(try_dir(&d, &o, "nosw", NULL), DF_ERR_FORMAT, "use_sliding_window");
    rd_free(&d);
}

Test(dflash_dir, capture_layers_must_be_named_somehow) {
    rdraft d;
    rd_make(&d, 2, true);
    dir_opts o = {.no_ids = true, .no_target_layers = true};
    EXPECT_FAIL(try_dir(&d, &o, "noids", NULL), DF_ERR_NOT_FOUND, "target_layer_ids");
    rd_free(&d);
}

Test(dflash_dir, missing_tensor) {
    rdraft d;
    rd_make(&d, 2, true);
    dir_opts o = {.drop_tensor = "layers.0.mlp.up_proj.weight"};
    EXPECT_FAIL(try_dir(&d, &o, "misst", NULL), DF_ERR_NOT_FOUND, "layers.0.mlp.up_proj.weight");
    rd_free(&d);
}

Test(dflash_dir, unexpected_tensor) {
    rdraft d;
    rd_make(&d, 2, true);
    dir_opts o = {.extra_tensor = "candidate_selector.hidden_projection.weight"};
    EXPECT_FAIL(try_dir(&d, &o, "extrat", NULL), DF_ERR_FORMAT, "candidate_selector.hidden_projection.weight");
    rd_free(&d);
}

Test(dflash_dir, fc_width_disagrees_with_layer_ids) {
    rdraft d;
    rd_make(&d, 2, true);
    char dir[1024], other[1024], from[1100], to[1100];
    dir_opts o = {0};
    tmp_path(dir, sizeof dir, "fcw");
    write_dir(&d, dir, &o); /* fc trained on 3 capture layers */
    d.ncap = 2;             /* a config.json that names only 2 */
    tmp_path(other, sizeof other, "fcw_cfg");
    write_dir(&d, other, &o);
    d.ncap = 3;
    snprintf(from, sizeof from, "%s/config.json", other);
    snprintf(to, sizeof to, "%s/config.json", dir);
    cr_assert_eq(rename(from, to), 0);
    remove_dir(other);
    df_backend *be = cpu();
    df_dflash_draft *dr = NULL;
    EXPECT_FAIL(df_dflash_draft_load_dir(dir, be, &dr), DF_ERR_MISMATCH, "fc.weight");
    cr_assert_null(dr);
    df_backend_destroy(be);
    remove_dir(dir);
    rd_free(&d);
}

/* ---- rope_theta resolution ------------------------------------------------------------------- */

static df_status theta_of(const char *json, float *out) {
    df_config *c;
    cr_assert_eq(df_config_parse(json, strlen(json), "drafter/config.json", &c), DF_OK, "%s", df_last_error());
    df_status st = df_dflash_config_rope_theta(c, out);
    df_config_close(c);
    return st;
}

Test(dflash_rope_theta, nested_rope_parameters_win) {
    float t = 0;
    cr_assert_eq(theta_of("{\"rope_theta\": 1000000, \"rope_parameters\": {\"rope_theta\": 10000000}}", &t), DF_OK);
    cr_expect_eq(t, 1e7f);
}

Test(dflash_rope_theta, top_level_when_not_nested) {
    float t = 0;
    cr_assert_eq(theta_of("{\"rope_theta\": 1000000, \"rope_parameters\": {\"rope_type\": \"default\"}}", &t), DF_OK);
    cr_expect_eq(t, 1e6f);
    cr_assert_eq(theta_of("{\"rope_theta\": 500000.0}", &t), DF_OK);
    cr_expect_eq(t, 5e5f);
}

Test(dflash_rope_theta, null_nested_falls_back) {
    float t = 0;
    cr_assert_eq(theta_of("{\"rope_theta\": 1000000, \"rope_parameters\": {\"rope_theta\": null}}", &t), DF_OK);
    cr_expect_eq(t, 1e6f);
}

Test(dflash_rope_theta, neither_is_an_error_naming_the_file) {
    float t = 42;
    EXPECT_FAIL(theta_of("{\"hidden_size\": 64}", &t), DF_ERR_NOT_FOUND, "drafter/config.json");
    cr_expect_eq(t, 42);
}

Test(dflash_rope_theta, non_numbers_and_non_positive_are_errors) {
    float t = 0;
    EXPECT_FAIL(theta_of("{\"rope_parameters\": {\"rope_theta\": \"big\"}}", &t), DF_ERR_FORMAT,
                "rope_parameters.rope_theta");
    EXPECT_FAIL(theta_of("{\"rope_theta\": -5}", &t), DF_ERR_FORMAT, "rope_theta");
}

Test(dflash_rope_theta, loader_uses_the_nested_value) {
    rdraft d;
    rd_make(&d, 3, true);
    d.theta = 1e7f; /* ROPE_BOTH writes 1e8 at the top level */
    dir_opts o = {.rope = ROPE_BOTH};
    df_dflash_hparams hp;
    cr_assert_eq(try_dir(&d, &o, "both", &hp), DF_OK, "%s", df_last_error());
    cr_expect_eq(hp.rope_theta, 1e7f);
    dir_opts o2 = {.rope = ROPE_TOP};
    d.theta = 1e6f;
    cr_assert_eq(try_dir(&d, &o2, "top", &hp), DF_OK, "%s", df_last_error());
    cr_expect_eq(hp.rope_theta, 1e6f);
    rd_free(&d);
}

/* ---- default capture layers and the fit against a target ------------------------------------- */

static void expect_ids(int64_t depth, int64_t n, const int32_t *want) {
    int32_t got[16];
    cr_assert_eq(df_dflash_default_layer_ids(depth, n, got), DF_OK, "%s", df_last_error());
    for (int64_t i = 0; i < n; i++)
        cr_expect_eq(got[i], want[i], "depth %lld, %lld layers: id %lld is %d, expected %d",
                     (long long)depth, (long long)n, (long long)i, got[i], want[i]);
}

Test(dflash_target, default_layer_ids_follow_the_reference) {
    /* values as z-lab's build_target_layer_ids gives them (Python round: ties to even) */
    expect_ids(64, 5, (int32_t[]){1, 16, 31, 46, 61});
    expect_ids(36, 5, (int32_t[]){1, 9, 17, 25, 33}); /* Qwen3-4B-DFlash-b16's published ids */
    expect_ids(24, 1, (int32_t[]){12});
    expect_ids(64, 2, (int32_t[]){1, 61});
    expect_ids(7, 3, (int32_t[]){1, 2, 4});           /* 2.5 rounds to 2 */
    expect_ids(9, 3, (int32_t[]){1, 4, 6});           /* 3.5 rounds to 4 */
    int32_t ids[4];
    cr_expect_eq(df_dflash_default_layer_ids(0, 3, ids), DF_ERR_INVALID);
    cr_expect_eq(df_dflash_default_layer_ids(10, 0, ids), DF_ERR_INVALID);
}

Test(dflash_target, config_without_ids_uses_the_default_for_num_target_layers) {
    rdraft d;
    rd_make(&d, 4, false);
    d.ncap = 2; /* == num_hidden_layers: the older z-lab code taps one target layer per draft layer */
    d.target_layers = 12;
    dir_opts o = {.no_ids = true};
    df_dflash_hparams hp;
    cr_assert_eq(try_dir(&d, &o, "defids", &hp), DF_OK, "%s", df_last_error());
    cr_expect_eq(hp.n_layer_ids, 2);
    cr_expect_eq(hp.layer_ids[0], 1);
    cr_expect_eq(hp.layer_ids[1], 9);
    d.ncap = 3;
    rd_free(&d);
}

typedef struct loaded {
    rdraft d;
    df_backend *be;
    df_dflash_draft *dr;
    char path[1024];
} loaded;

static void load_gguf(loaded *x, uint64_t seed, bool sliding, const gguf_opts *o, const char *leaf) {
    rd_make(&x->d, seed, sliding);
    tmp_path(x->path, sizeof x->path, leaf);
    write_gguf(&x->d, x->path, o);
    x->be = cpu();
    cr_assert_eq(df_dflash_draft_open(x->path, x->be, &x->dr), DF_OK, "%s", df_last_error());
}

static void unload(loaded *x) {
    df_dflash_draft_free(x->dr);
    df_backend_destroy(x->be);
    unlink(x->path);
    rd_free(&x->d);
}

static df_qwen35_hparams target_hp(const rdraft *d) {
    df_qwen35_hparams t;
    memset(&t, 0, sizeof t);
    t.n_embd = d->E;
    t.n_vocab = d->V;
    t.n_layer = d->target_layers;
    return t;
}

Test(dflash_target, a_fitting_target_passes) {
    loaded x;
    load_gguf(&x, 5, true, &GGUF_OK, "fit.gguf");
    df_qwen35_hparams t = target_hp(&x.d);
    cr_expect_eq(df_dflash_draft_check_target(x.dr, &t), DF_OK, "%s", df_last_error());
    int32_t ids[8];
    cr_assert_eq(df_dflash_draft_capture_layers(x.dr, &t, ids), DF_OK);
    cr_expect(ids[0] == 1 && ids[1] == 2 && ids[2] == 4);
    unload(&x);
}

Test(dflash_target, hidden_size_mismatch) {
    loaded x;
    load_gguf(&x, 5, true, &GGUF_OK, "fit_e.gguf");
    df_qwen35_hparams t = target_hp(&x.d);
    t.n_embd = 48;
    EXPECT_FAIL(df_dflash_draft_check_target(x.dr, &t), DF_ERR_MISMATCH, "hidden size");
    unload(&x);
}

Test(dflash_target, mask_token_outside_the_vocabulary) {
    loaded x;
    load_gguf(&x, 5, true, &GGUF_OK, "fit_m.gguf");
    df_qwen35_hparams t = target_hp(&x.d);
    t.n_vocab = 40; /* the mask token is 47 */
    x.dr->hp.n_vocab = 0; /* the declared vocabulary is checked separately below */
    EXPECT_FAIL(df_dflash_draft_check_target(x.dr, &t), DF_ERR_MISMATCH, "mask token 47");
    unload(&x);
}

Test(dflash_target, declared_vocabulary_mismatch) {
    loaded x;
    load_gguf(&x, 5, true, &GGUF_OK, "fit_v.gguf");
    df_qwen35_hparams t = target_hp(&x.d);
    t.n_vocab = 60;
    EXPECT_FAIL(df_dflash_draft_check_target(x.dr, &t), DF_ERR_MISMATCH, "vocabulary");
    unload(&x);
}

Test(dflash_target, capture_layer_beyond_the_target) {
    loaded x;
    load_gguf(&x, 5, true, &GGUF_OK, "fit_l.gguf");
    df_qwen35_hparams t = target_hp(&x.d);
    t.n_layer = 4; /* capture layer 4 does not exist */
    EXPECT_FAIL(df_dflash_draft_check_target(x.dr, &t), DF_ERR_MISMATCH, "capture layer 4");
    t.n_layer = 5; /* layer 4 is the last: its reference state is after the final norm */
    EXPECT_FAIL(df_dflash_draft_check_target(x.dr, &t), DF_ERR_UNSUPPORTED, "last layer");
    unload(&x);
}

Test(dflash_target, trained_target_depth_mismatch) {
    rdraft d;
    rd_make(&d, 6, true);
    char dir[1024];
    tmp_path(dir, sizeof dir, "depth");
    dir_opts o = {0};
    write_dir(&d, dir, &o);
    df_backend *be = cpu();
    df_dflash_draft *dr;
    cr_assert_eq(df_dflash_draft_load_dir(dir, be, &dr), DF_OK, "%s", df_last_error());
    df_qwen35_hparams t = target_hp(&d);
    cr_expect_eq(df_dflash_draft_check_target(dr, &t), DF_OK, "%s", df_last_error());
    t.n_layer = 8;
    EXPECT_FAIL(df_dflash_draft_check_target(dr, &t), DF_ERR_MISMATCH, "target of 6 layers");
    df_dflash_draft_free(dr);
    df_backend_destroy(be);
    remove_dir(dir);
    rd_free(&d);
}

Test(dflash_target, gguf_without_ids_uses_the_default_for_the_target) {
    loaded x;
    gguf_opts o = {.n_ids = -1};
    load_gguf(&x, 7, true, &o, "noids.gguf");
    cr_assert_eq(x.dr->hp.n_layer_ids, 0);
    df_qwen35_hparams t = target_hp(&x.d);
    t.n_layer = 64;
    int32_t ids[8];
    cr_assert_eq(df_dflash_draft_capture_layers(x.dr, &t, ids), DF_OK, "%s", df_last_error());
    cr_expect(ids[0] == 1 && ids[1] == 31 && ids[2] == 61, "got %d %d %d", ids[0], ids[1], ids[2]);
    unload(&x);
}

/* ---- the double-precision reference ---------------------------------------------------------- */

static void ref_rmsnorm(const double *x, int n, const float *w, double eps, double *y) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * r * w[i];
}

static void ref_matvec(const float *W, int n_out, int n_in, const double *x, double *y) {
    for (int o = 0; o < n_out; o++) {
        double s = 0;
        for (int i = 0; i < n_in; i++) s += (double)W[(size_t)o * n_in + i] * x[i];
        y[o] = s;
    }
}

static void ref_rope(double *x, int D, long pos, double theta) {
    int half = D / 2;
    for (int i = 0; i < half; i++) {
        double ang = (double)pos * pow(theta, -2.0 * i / D);
        double c = cos(ang), s = sin(ang), x0 = x[i], x1 = x[i + half];
        x[i] = x0 * c - x1 * s;
        x[i + half] = x1 * c + x0 * s;
    }
}

/* per-head norm then rope of n_heads heads of D */
static void ref_heads(double *x, int n_heads, int D, const float *w, double eps, long pos, double theta) {
    double tmp[256];
    for (int h = 0; h < n_heads; h++) {
        ref_rmsnorm(x + h * D, D, w, eps, tmp);
        memcpy(x + h * D, tmp, (size_t)D * sizeof(double));
        ref_rope(x + h * D, D, pos, theta);
    }
}

/* Logits [n - 1][V] of the block [bonus, MASK...] after a context of L feature rows. */
static void ref_draft(const rdraft *d, const float *feat, int L, int32_t bonus, int n, double *logits) {
    const int E = d->E, D = d->D, H = d->H, Hkv = d->Hkv, qd = H * D, kvd = Hkv * D, F = d->F;
    const int T = L + n, group = H / Hkv;
    const double eps = d->eps, theta = d->theta;
    double *c = calloc((size_t)L * E + 1, sizeof *c);
    double *tmp = calloc((size_t)(d->ncap * E + F + qd + 64), sizeof *tmp);
    for (int j = 0; j < L; j++) {
        double *f = tmp;
        for (int i = 0; i < d->ncap * E; i++) f[i] = feat[(size_t)j * d->ncap * E + i];
        double *y = tmp + d->ncap * E;
        ref_matvec(d->fc, E, d->ncap * E, f, y);
        ref_rmsnorm(y, E, d->hn, eps, c + (size_t)j * E);
    }
    double *x = calloc((size_t)n * E, sizeof *x), *h = calloc((size_t)n * E, sizeof *h);
    for (int i = 0; i < n; i++) {
        int tok = i == 0 ? bonus : d->mask;
        for (int e = 0; e < E; e++) x[i * E + e] = d->emb[(size_t)tok * E + e];
    }
    double *K = calloc((size_t)T * kvd, sizeof *K), *Vv = calloc((size_t)T * kvd, sizeof *Vv);
    double *Q = calloc((size_t)n * qd, sizeof *Q), *att = calloc((size_t)n * qd, sizeof *att);
    double *sc = calloc((size_t)T, sizeof *sc);
    for (int l = 0; l < d->L; l++) {
        const rlayer *Ly = &d->layer[l];
        const bool sliding = d->sliding[l];
        const bool causal = d->causal >= 0 ? d->causal : sliding;
        for (int j = 0; j < L; j++) { /* context rows: no attn_norm */
            ref_matvec(Ly->wk, kvd, E, c + (size_t)j * E, K + (size_t)j * kvd);
            ref_matvec(Ly->wv, kvd, E, c + (size_t)j * E, Vv + (size_t)j * kvd);
            ref_heads(K + (size_t)j * kvd, Hkv, D, Ly->kn, eps, j, theta);
        }
        for (int i = 0; i < n; i++) {
            ref_rmsnorm(x + i * E, E, Ly->an, eps, h + i * E);
            ref_matvec(Ly->wq, qd, E, h + i * E, Q + i * qd);
            ref_matvec(Ly->wk, kvd, E, h + i * E, K + (size_t)(L + i) * kvd);
            ref_matvec(Ly->wv, kvd, E, h + i * E, Vv + (size_t)(L + i) * kvd);
            ref_heads(Q + i * qd, H, D, Ly->qn, eps, L + i, theta);
            ref_heads(K + (size_t)(L + i) * kvd, Hkv, D, Ly->kn, eps, L + i, theta);
        }
        for (int i = 0; i < n; i++) {
            const long p = L + i;
            for (int hq = 0; hq < H; hq++) {
                const int kh = hq / group;
                double m = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++) {
                    bool vis = (!causal || j <= p) && (!sliding || p - j < d->window);
                    if (!vis) { sc[j] = NAN; continue; }
                    double s = 0;
                    for (int e = 0; e < D; e++) s += Q[i * qd + hq * D + e] * K[(size_t)j * kvd + kh * D + e];
                    sc[j] = s / sqrt((double)D);
                    if (sc[j] > m) m = sc[j];
                }
                double *o = att + i * qd + hq * D;
                memset(o, 0, (size_t)D * sizeof *o);
                for (int j = 0; j < T; j++) {
                    if (isnan(sc[j])) continue;
                    double w = exp(sc[j] - m);
                    sum += w;
                    for (int e = 0; e < D; e++) o[e] += w * Vv[(size_t)j * kvd + kh * D + e];
                }
                for (int e = 0; e < D; e++) o[e] /= sum;
            }
        }
        for (int i = 0; i < n; i++) {
            double *y = tmp;
            ref_matvec(Ly->wo, E, qd, att + i * qd, y);
            for (int e = 0; e < E; e++) x[i * E + e] += y[e];
            ref_rmsnorm(x + i * E, E, Ly->fn, eps, h + i * E);
            double *g = tmp, *u = tmp + F, *dn = tmp + 2 * F;
            ref_matvec(Ly->wg, F, E, h + i * E, g);
            ref_matvec(Ly->wu, F, E, h + i * E, u);
            for (int f = 0; f < F; f++) g[f] = g[f] / (1.0 + exp(-g[f])) * u[f];
            ref_matvec(Ly->wd, E, F, g, dn);
            for (int e = 0; e < E; e++) x[i * E + e] += dn[e];
        }
    }
    for (int i = 1; i < n; i++) {
        ref_rmsnorm(x + i * E, E, d->on, eps, h);
        for (int v = 0; v < d->V; v++) {
            double s = 0;
            for (int e = 0; e < E; e++) s += (double)d->head[(size_t)v * E + e] * h[e];
            logits[(size_t)(i - 1) * d->V + v] = s;
        }
    }
    free(c), free(tmp), free(x), free(h), free(K), free(Vv), free(Q), free(att), free(sc);
}

/* ---- forward tests ---------------------------------------------------------------------------- */

typedef struct session {
    df_weight emb, head;
    df_dflash_state *s;
} session;

static void open_session(session *ss, loaded *x, int64_t n_ctx, df_kv_type kv) {
    const rdraft *d = &x->d;
    df_weight e = {.type = DF_TYPE_F32, .ne = {d->E, d->V, 1, 1}, .data = d->emb,
                   .size = (size_t)d->V * d->E * 4, .name = "token_embd.weight"};
    df_weight h = e;
    h.data = d->head;
    h.name = "output.weight";
    cr_assert_eq(x->be->ops->bind_weight(x->be, &e, &ss->emb), DF_OK);
    cr_assert_eq(x->be->ops->bind_weight(x->be, &h, &ss->head), DF_OK);
    cr_assert_eq(df_dflash_state_create_with(x->dr, &ss->emb, &ss->head, n_ctx, 0, kv, &ss->s), DF_OK,
                 "%s", df_last_error());
}

static void close_session(session *ss) { df_dflash_state_free(ss->s); }

static float *features(int rows, int width, uint64_t seed) {
    df_rng r;
    df_rng_seed(&r, seed);
    return rnd(&r, (size_t)rows * width, 2.0f, 0.0f);
}

/* max |ours - ref| / max |ref| over rows 0 .. n-2, and the count of argmax disagreements on
 * rows whose reference top-2 gap is clear (>= 1e-3 of the row's scale). */
static void compare(const df_dflash_state *s, const double *ref, int n, int V, const char *what, double tol) {
    for (int r = 0; r < n - 1; r++) {
        const float *a = s->logits + (size_t)r * V;
        const double *b = ref + (size_t)r * V;
        double num = 0, den = 0, top = -INFINITY, second = -INFINITY;
        int best = 0;
        for (int v = 0; v < V; v++) {
            double dlt = fabs((double)a[v] - b[v]);
            if (!(dlt <= num)) num = dlt;
            if (fabs(b[v]) > den) den = fabs(b[v]);
            if (b[v] > top) second = top, top = b[v], best = v;
            else if (b[v] > second) second = b[v];
        }
        cr_expect(num / den <= tol, "%s: row %d: relative logit error %.3g > %.3g", what, r, num / den, tol);
        if (top - second >= 1e-3 * den)
            cr_expect_eq(s->argmax[r], best, "%s: row %d: draft token %d, reference %d", what, r,
                         s->argmax[r], best);
    }
}

static void check_contexts(loaded *x, df_kv_type kv, double tol) {
    const rdraft *d = &x->d;
    const int width = d->ncap * d->E;
    const int Ls[] = {1, 5, 13, 40, 70};
    float *feat = features(70, width, 1234);
    double *ref = malloc((size_t)d->B * d->V * sizeof *ref);
    session ss;
    open_session(&ss, x, 80, kv);
    for (size_t li = 0; li < sizeof Ls / sizeof Ls[0]; li++) {
        for (int n = d->B; n >= 3; n -= 5) { /* the full block and a shorter one */
            const int L = Ls[li];
            const int32_t bonus = (int32_t)((L * 7 + n) % d->V);
            df_dflash_state_reset(ss.s);
            cr_assert_eq(df_dflash_state_commit_packed(ss.s, feat, L), DF_OK, "%s", df_last_error());
            cr_assert_eq(df_dflash_state_draft(ss.s, bonus, n), DF_OK, "%s", df_last_error());
            ref_draft(d, feat, L, bonus, n, ref);
            char what[96];
            snprintf(what, sizeof what, "context %d, block %d", L, n);
            compare(ss.s, ref, n, d->V, what, tol);
            cr_expect_eq(ss.s->n_committed, L, "a draft step keeps the committed context");
        }
    }
    close_session(&ss);
    free(ref);
    free(feat);
}

Test(dflash_forward, sliding_and_full_layers_match_the_reference) {
    loaded x;
    load_gguf(&x, 11, true, &GGUF_OK, "fw1.gguf");
    check_contexts(&x, DF_KV_F32, 2e-4);
    unload(&x);
}

Test(dflash_forward, full_layers_only_match_the_reference) {
    loaded x;
    load_gguf(&x, 12, false, &GGUF_OK, "fw2.gguf");
    check_contexts(&x, DF_KV_F32, 2e-4);
    unload(&x);
}

Test(dflash_forward, f16_kv_cache_stays_close) {
    loaded x;
    load_gguf(&x, 13, true, &GGUF_OK, "fw3.gguf");
    check_contexts(&x, DF_KV_F16, 1e-2);
    unload(&x);
}

/* The context committed in uneven pieces, with a draft step after each piece (whose block
 * rows land in the caches and must not survive), equals committing it at once. */
Test(dflash_forward, incremental_commits_equal_a_fresh_context) {
    loaded x;
    load_gguf(&x, 14, true, &GGUF_OK, "fw4.gguf");
    const rdraft *d = &x.d;
    const int width = d->ncap * d->E;
    float *feat = features(100, width, 77);
    session inc, fresh;
    open_session(&inc, &x, 100, DF_KV_F32);
    open_session(&fresh, &x, 100, DF_KV_F32);
    const int pieces[] = {3, 1, 9, 20, 1, 7, 30, 29};
    int L = 0;
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        cr_assert_eq(df_dflash_state_commit_packed(inc.s, feat + (size_t)L * width, pieces[i]), DF_OK,
                     "%s", df_last_error());
        L += pieces[i];
        const int32_t bonus = (int32_t)((i * 13 + 5) % (size_t)d->V);
        cr_assert_eq(df_dflash_state_draft(inc.s, bonus, d->B), DF_OK, "%s", df_last_error());
        df_dflash_state_reset(fresh.s);
        cr_assert_eq(df_dflash_state_commit_packed(fresh.s, feat, L), DF_OK, "%s", df_last_error());
        cr_assert_eq(df_dflash_state_draft(fresh.s, bonus, d->B), DF_OK, "%s", df_last_error());
        size_t bytes = (size_t)(d->B - 1) * d->V * sizeof(float);
        cr_expect_eq(memcmp(inc.s->logits, fresh.s->logits, bytes), 0,
                     "context %d: incremental logits differ from a fresh commit", L);
        /* a second step on the same context gives the same result (block rows left over
         * from the first one are not read) */
        cr_assert_eq(df_dflash_state_draft(inc.s, bonus, d->B), DF_OK);
        cr_expect_eq(memcmp(inc.s->logits, fresh.s->logits, bytes), 0, "context %d: repeat step", L);
    }
    close_session(&inc);
    close_session(&fresh);
    free(feat);
    unload(&x);
}

/* Commit from per-layer capture buffers (the target's capture layout) = commit packed. */
Test(dflash_forward, commit_from_capture_buffers_equals_packed) {
    loaded x;
    load_gguf(&x, 15, true, &GGUF_OK, "fw5.gguf");
    const rdraft *d = &x.d;
    const int width = d->ncap * d->E, rows = 45;
    float *feat = features(rows, width, 5);
    float *per[3];
    for (int i = 0; i < d->ncap; i++) {
        per[i] = malloc((size_t)rows * d->E * sizeof(float));
        for (int r = 0; r < rows; r++)
            memcpy(per[i] + (size_t)r * d->E, feat + (size_t)r * width + i * d->E, (size_t)d->E * 4);
    }
    session a, b;
    open_session(&a, &x, 64, DF_KV_F32);
    open_session(&b, &x, 64, DF_KV_F32);
    cr_assert_eq(df_dflash_state_commit_packed(a.s, feat, rows), DF_OK);
    const float *const hidden[3] = {per[0], per[1], per[2]};
    cr_assert_eq(df_dflash_state_commit(b.s, hidden, 20), DF_OK, "%s", df_last_error());
    const float *const rest[3] = {per[0] + 20 * d->E, per[1] + 20 * d->E, per[2] + 20 * d->E};
    cr_assert_eq(df_dflash_state_commit(b.s, rest, rows - 20), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_dflash_state_draft(a.s, 9, d->B), DF_OK);
    cr_assert_eq(df_dflash_state_draft(b.s, 9, d->B), DF_OK);
    cr_expect_eq(memcmp(a.s->logits, b.s->logits, (size_t)(d->B - 1) * d->V * sizeof(float)), 0);
    close_session(&a);
    close_session(&b);
    for (int i = 0; i < d->ncap; i++) free(per[i]);
    free(feat);
    unload(&x);
}

/* One drafter as a GGUF and as a checkpoint directory (f32): the same bits. And a bf16
 * checkpoint of bf16-rounded weights against the reference. */
static void draft_dir(const rdraft *d, const dir_opts *o, const float *feat, int L, int32_t bonus,
                      float *logits_out, const char *leaf) {
    char dir[1024];
    tmp_path(dir, sizeof dir, leaf);
    write_dir(d, dir, o);
    loaded x;
    x.be = cpu();
    cr_assert_eq(df_dflash_draft_open(dir, x.be, &x.dr), DF_OK, "%s", df_last_error());
    x.d = *d;
    session ss;
    open_session(&ss, &x, 64, DF_KV_F32);
    cr_assert_eq(df_dflash_state_commit_packed(ss.s, feat, L), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_dflash_state_draft(ss.s, bonus, d->B), DF_OK, "%s", df_last_error());
    memcpy(logits_out, ss.s->logits, (size_t)(d->B - 1) * d->V * sizeof(float));
    close_session(&ss);
    df_dflash_draft_free(x.dr);
    df_backend_destroy(x.be);
    remove_dir(dir);
}

Test(dflash_forward, gguf_and_checkpoint_directory_agree) {
    loaded x;
    load_gguf(&x, 16, true, &GGUF_OK, "fw6.gguf");
    const rdraft *d = &x.d;
    float *feat = features(33, d->ncap * d->E, 8);
    session ss;
    open_session(&ss, &x, 64, DF_KV_F32);
    cr_assert_eq(df_dflash_state_commit_packed(ss.s, feat, 33), DF_OK);
    cr_assert_eq(df_dflash_state_draft(ss.s, 3, d->B), DF_OK);
    size_t n = (size_t)(d->B - 1) * d->V;
    float *from_dir = malloc(n * sizeof(float));
    dir_opts o = {0};
    draft_dir(d, &o, feat, 33, 3, from_dir, "agree");
    cr_expect_eq(memcmp(ss.s->logits, from_dir, n * sizeof(float)), 0);
    close_session(&ss);
    free(from_dir);
    free(feat);
    unload(&x);
}

Test(dflash_forward, bf16_checkpoint_matches_the_reference) {
    rdraft d;
    rd_make(&d, 17, true);
    round_bf16(d.fc, (size_t)d.E * d.ncap * d.E);
    for (int l = 0; l < d.L; l++) {
        rlayer *L = &d.layer[l];
        const size_t qd = (size_t)d.H * d.D, kvd = (size_t)d.Hkv * d.D;
        round_bf16(L->wq, qd * d.E), round_bf16(L->wk, kvd * d.E), round_bf16(L->wv, kvd * d.E);
        round_bf16(L->wo, qd * d.E), round_bf16(L->wg, (size_t)d.F * d.E);
        round_bf16(L->wu, (size_t)d.F * d.E), round_bf16(L->wd, (size_t)d.F * d.E);
        round_bf16(L->an, d.E), round_bf16(L->fn, d.E), round_bf16(L->qn, d.D), round_bf16(L->kn, d.D);
    }
    round_bf16(d.hn, d.E), round_bf16(d.on, d.E);
    float *feat = features(29, d.ncap * d.E, 9);
    size_t n = (size_t)(d.B - 1) * d.V;
    float *got = malloc(n * sizeof(float));
    dir_opts o = {.bf16 = true};
    draft_dir(&d, &o, feat, 29, 11, got, "bf16");
    double *ref = malloc(n * sizeof(double));
    ref_draft(&d, feat, 29, 11, d.B, ref);
    df_dflash_state fake = {.logits = got, .argmax = NULL};
    int32_t am[16];
    for (int r = 0; r < d.B - 1; r++) {
        int best = 0;
        for (int v = 1; v < d.V; v++)
            if (got[(size_t)r * d.V + v] > got[(size_t)r * d.V + best]) best = v;
        am[r] = best;
    }
    fake.argmax = am;
    compare(&fake, ref, d.B, d.V, "bf16 checkpoint", 2e-4);
    free(ref);
    free(got);
    free(feat);
    rd_free(&d);
}

Test(dflash_forward, causal_full_layers_from_is_causal) {
    rdraft d;
    rd_make(&d, 18, false);
    d.causal = 1; /* "is_causal": true in config.json: every layer causal inside the block */
    float *feat = features(21, d.ncap * d.E, 10);
    size_t n = (size_t)(d.B - 1) * d.V;
    float *got = malloc(n * sizeof(float));
    dir_opts o = {0};
    draft_dir(&d, &o, feat, 21, 4, got, "causal");
    double *ref = malloc(n * sizeof(double));
    ref_draft(&d, feat, 21, 4, d.B, ref);
    int32_t am[16];
    for (int r = 0; r < d.B - 1; r++) {
        int best = 0;
        for (int v = 1; v < d.V; v++)
            if (got[(size_t)r * d.V + v] > got[(size_t)r * d.V + best]) best = v;
        am[r] = best;
    }
    df_dflash_state fake = {.logits = got, .argmax = am};
    compare(&fake, ref, d.B, d.V, "is_causal drafter", 2e-4);
    /* and it really differs from the non-causal reading */
    d.causal = 0;
    double *ref_nc = malloc(n * sizeof(double));
    ref_draft(&d, feat, 21, 4, d.B, ref_nc);
    double diff = 0;
    for (size_t i = 0; i < n; i++) diff = fmax(diff, fabs(ref_nc[i] - ref[i]));
    cr_expect(diff > 1e-3, "causal and non-causal references should differ (%g)", diff);
    free(ref_nc);
    free(ref);
    free(got);
    free(feat);
    rd_free(&d);
}

Test(dflash_forward, bad_calls_are_refused) {
    loaded x;
    load_gguf(&x, 19, true, &GGUF_OK, "bad.gguf");
    const rdraft *d = &x.d;
    session ss;
    open_session(&ss, &x, 16, DF_KV_F32);
    float *feat = features(17, d->ncap * d->E, 11);
    EXPECT_FAIL(df_dflash_state_commit_packed(ss.s, feat, 17), DF_ERR_INVALID, "do not fit");
    cr_assert_eq(df_dflash_state_commit_packed(ss.s, feat, 16), DF_OK);
    EXPECT_FAIL(df_dflash_state_draft(ss.s, 0, d->B + 1), DF_ERR_INVALID, "block");
    EXPECT_FAIL(df_dflash_state_draft(ss.s, 0, 1), DF_ERR_INVALID, "block");
    EXPECT_FAIL(df_dflash_state_draft(ss.s, d->V, 4), DF_ERR_INVALID, "bonus token");
    cr_assert_eq(df_dflash_state_draft(ss.s, 1, d->B), DF_OK, "the context may be full for a draft");
    close_session(&ss);
    /* a sliding window narrower than the block */
    df_dflash_state *s = NULL;
    EXPECT_FAIL(df_dflash_state_create_with(x.dr, &ss.emb, &ss.head, 32, 13, DF_KV_F32, &s),
                DF_ERR_UNSUPPORTED, "sliding window");
    cr_assert_null(s);
    free(feat);
    unload(&x);
}

/* The window op refuses a ring that no longer holds what a query needs. */
Test(dflash_forward, window_attention_checks_the_ring) {
    df_backend *be = cpu();
    float k[8 * 4], v[8 * 4], q[4], out[4];
    for (int i = 0; i < 32; i++) k[i] = v[i] = (float)(i % 5) - 2.0f;
    for (int i = 0; i < 4; i++) q[i] = 0.5f * (float)i - 0.7f;
    df_kv_cache c = {.k = k, .v = v, .type = DF_KV_F32, .n_ctx = 8, .n_kv_head = 1, .head_dim = 4};
    df_window_attn_args a = {.q = {q, 1, 1, 4, 4, 4}, .cache = &c, .q_pos0 = 9, .kv_end = 10,
                             .causal = true, .window = 4, .out = {out, 1, 1, 4, 4, 4}};
    cr_expect_eq(be->ops->attention_window(be, &a), DF_OK, "%s", df_last_error());
    a.window = 0; /* needs position 0, the ring holds 2 .. 9 */
    EXPECT_FAIL(be->ops->attention_window(be, &a), DF_ERR_INVALID, "needs position 0");
    a.window = 4;
    a.q_pos0 = 10; /* a query beyond the written rows */
    EXPECT_FAIL(be->ops->attention_window(be, &a), DF_ERR_INVALID, "written end");
    df_backend_destroy(be);
}
