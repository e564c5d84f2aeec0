/* dflash convert: Hugging Face checkpoints -> qwen35 GGUF.
 *
 * Expected values come from the inputs, never from the converter: config.json is read here
 * with Jansson, the weights with the safetensors reader, and every transform (the +1 on norms,
 * -exp(A_log), the value-head reorder new_index(h) = (h mod R)*nk + h/R, the Q4_K_M type
 * schedule) is recomputed here from docs/QWEN35_FORMAT.md. Sources: the transformers-made
 * fixtures under tests/fixtures/qwen35 (with their Qwen-style tokenizers), and small synthetic
 * checkpoints written by this file (ConditionalGeneration layout, f16/bf16 weights, 256-wide
 * rows for real K-quants, config defaults, a hand-made tokenizer, and broken inputs). */
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
#include "base/fp16.h"
#include "base/rng.h"
#include "convert/convert.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "model/qwen35.h"
#include "quant/types.h"
#include "text/tokenizer.h"

#define FIXTURES DFLASH_SOURCE_DIR "/tests/fixtures/qwen35"

static const char *const k_type_names[] = {"f32", "f16", "bf16", "q8_0", "q4_k_m"};
static const uint32_t k_file_types[] = {0, 1, 32, 7, 15}; /* LLAMA_FTYPE_* per --type */

/* ---- temp dirs and files ------------------------------------------------------------------- */

static char *make_tmpdir(void) {
    char tmpl[] = "/tmp/dflash_test_convert_XXXXXX";
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
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static char *path_join(const char *a, const char *b) {
    char *p = malloc(strlen(a) + strlen(b) + 2);
    cr_assert_not_null(p);
    sprintf(p, "%s/%s", a, b);
    return p;
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void write_json(const char *path, json_t *j) {
    cr_assert_eq(json_dump_file(j, path, JSON_INDENT(1)), 0, "cannot write %s", path);
}

/* The notices a conversion wrote to its log. */
static char *read_log(FILE *f) {
    fflush(f);
    long n = ftell(f);
    cr_assert(n >= 0);
    char *s = calloc((size_t)n + 1, 1);
    cr_assert_not_null(s);
    rewind(f);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    return s;
}

static size_t count_lines_with(const char *log, const char *needle) {
    size_t n = 0;
    for (const char *line = log; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *copy = strndup(line, len);
        if (strstr(copy, needle)) n++;
        free(copy);
        line += len + (end ? 1 : 0);
    }
    return n;
}

/* Runs a conversion with its notices captured in *log_out (may be NULL). */
static df_status convert_logged(const char *dir, const char *out, int type, char **log_out) {
    df_convert_opts o;
    df_convert_opts_init(&o);
    o.type = (df_convert_type)type;
    o.quiet = true;
    o.n_threads = 2;
    o.log = tmpfile();
    cr_assert_not_null(o.log);
    df_status st = df_convert(dir, out, &o);
    char *log = read_log(o.log);
    fclose(o.log);
    if (log_out) *log_out = log;
    else free(log);
    return st;
}

/* ---- config.json as llama.cpp merges it (text_config over the top level) ------------------ */

static json_t *cfg_get(json_t *root, const char *key) {
    json_t *tc = json_object_get(root, "text_config");
    if (json_is_object(tc) && json_object_get(tc, key)) return json_object_get(tc, key);
    return json_object_get(root, key);
}

static int64_t cfg_int(json_t *root, const char *key) {
    json_t *v = cfg_get(root, key);
    cr_assert(json_is_integer(v), "config field %s is not an integer", key);
    return json_integer_value(v);
}

static double cfg_num(json_t *root, const char *key) {
    json_t *v = cfg_get(root, key);
    cr_assert(json_is_number(v), "config field %s is not a number", key);
    return json_number_value(v);
}

/* What the tests need of a qwen35 config. */
typedef struct hp {
    int64_t n_layer, H, F, nh, nkv, hd, nk, nv, dk, dv, K, vocab, interval;
    bool full[64];
} hp;

static hp read_hp(json_t *cfg) {
    hp h = {0};
    h.n_layer = cfg_int(cfg, "num_hidden_layers");
    h.H = cfg_int(cfg, "hidden_size");
    h.F = cfg_int(cfg, "intermediate_size");
    h.nh = cfg_int(cfg, "num_attention_heads");
    h.nkv = cfg_int(cfg, "num_key_value_heads");
    h.hd = cfg_int(cfg, "head_dim");
    h.nk = cfg_int(cfg, "linear_num_key_heads");
    h.nv = cfg_int(cfg, "linear_num_value_heads");
    h.dk = cfg_int(cfg, "linear_key_head_dim");
    h.dv = cfg_int(cfg, "linear_value_head_dim");
    h.K = cfg_int(cfg, "linear_conv_kernel_dim");
    h.vocab = cfg_int(cfg, "vocab_size");
    cr_assert(h.n_layer <= 64);
    json_t *lt = cfg_get(cfg, "layer_types");
    cr_assert(json_is_array(lt) && (int64_t)json_array_size(lt) == h.n_layer);
    h.interval = 0;
    for (int64_t i = 0; i < h.n_layer; i++) {
        h.full[i] = !strcmp(json_string_value(json_array_get(lt, (size_t)i)), "full_attention");
        if (h.full[i] && !h.interval) h.interval = i + 1;
    }
    return h;
}

/* ---- the expected GGUF --------------------------------------------------------------------- */

typedef enum xform {
    X_COPY,
    X_PLUS1,      /* norm: 1 + w */
    X_NEGEXP,     /* A_log: -exp, value heads reordered */
    X_VEC_HEADS,  /* dt_bias: value heads reordered */
    X_ROWS_V,     /* in_proj_qkv / conv1d: rows of the V part reordered by heads of dv */
    X_ROWS_DV,    /* in_proj_z: all rows, heads of dv */
    X_ROWS_1,     /* in_proj_a / in_proj_b: all rows, heads of 1 */
    X_COLS_DV,    /* out_proj: columns, heads of dv */
} xform;

typedef struct want_tensor {
    char gguf[64];
    char hf[160];
    int n_dims;
    int64_t ne[3];
    xform x;
    int layer;
} want_tensor;

static int build_want(const hp *h, const char *prefix, bool has_lm_head, want_tensor *w) {
    int n = 0;
#define W(gname, hname, nd, e0, e1, xf, il)                                   \
    do {                                                                      \
        want_tensor *t = &w[n++];                                             \
        memset(t, 0, sizeof *t);                                              \
        snprintf(t->gguf, sizeof t->gguf, "%s", gname);                       \
        snprintf(t->hf, sizeof t->hf, "%s", hname);                           \
        t->n_dims = nd;                                                       \
        t->ne[0] = e0;                                                        \
        t->ne[1] = e1;                                                        \
        t->x = xf;                                                            \
        t->layer = il;                                                        \
    } while (0)
    char g[64], f[160];
    snprintf(f, sizeof f, "%sembed_tokens.weight", prefix);
    W("token_embd.weight", f, 2, h->H, h->vocab, X_COPY, -1);
    snprintf(f, sizeof f, "%snorm.weight", prefix);
    W("output_norm.weight", f, 1, h->H, 0, X_PLUS1, -1);
    if (has_lm_head) W("output.weight", "lm_head.weight", 2, h->H, h->vocab, X_COPY, -1);
    const int64_t Kd = h->nk * h->dk, Vd = h->nv * h->dv, C = 2 * Kd + Vd;
    for (int il = 0; il < h->n_layer; il++) {
#define L(gs, hs, nd, e0, e1, xf)                                          \
    do {                                                                   \
        snprintf(g, sizeof g, "blk.%d.%s", il, gs);                        \
        snprintf(f, sizeof f, "%slayers.%d.%s", prefix, il, hs);           \
        W(g, f, nd, e0, e1, xf, il);                                       \
    } while (0)
        L("attn_norm.weight", "input_layernorm.weight", 1, h->H, 0, X_PLUS1);
        L("post_attention_norm.weight", "post_attention_layernorm.weight", 1, h->H, 0, X_PLUS1);
        L("ffn_gate.weight", "mlp.gate_proj.weight", 2, h->H, h->F, X_COPY);
        L("ffn_up.weight", "mlp.up_proj.weight", 2, h->H, h->F, X_COPY);
        L("ffn_down.weight", "mlp.down_proj.weight", 2, h->F, h->H, X_COPY);
        if (h->full[il]) {
            L("attn_q.weight", "self_attn.q_proj.weight", 2, h->H, 2 * h->nh * h->hd, X_COPY);
            L("attn_k.weight", "self_attn.k_proj.weight", 2, h->H, h->nkv * h->hd, X_COPY);
            L("attn_v.weight", "self_attn.v_proj.weight", 2, h->H, h->nkv * h->hd, X_COPY);
            L("attn_output.weight", "self_attn.o_proj.weight", 2, h->nh * h->hd, h->H, X_COPY);
            L("attn_q_norm.weight", "self_attn.q_norm.weight", 1, h->hd, 0, X_PLUS1);
            L("attn_k_norm.weight", "self_attn.k_norm.weight", 1, h->hd, 0, X_PLUS1);
        } else {
            L("attn_qkv.weight", "linear_attn.in_proj_qkv.weight", 2, h->H, C, X_ROWS_V);
            L("attn_gate.weight", "linear_attn.in_proj_z.weight", 2, h->H, Vd, X_ROWS_DV);
            L("ssm_beta.weight", "linear_attn.in_proj_b.weight", 2, h->H, h->nv, X_ROWS_1);
            L("ssm_alpha.weight", "linear_attn.in_proj_a.weight", 2, h->H, h->nv, X_ROWS_1);
            L("ssm_a", "linear_attn.A_log", 1, h->nv, 0, X_NEGEXP);
            L("ssm_dt.bias", "linear_attn.dt_bias", 1, h->nv, 0, X_VEC_HEADS);
            L("ssm_conv1d.weight", "linear_attn.conv1d.weight", 2, h->K, C, X_ROWS_V);
            L("ssm_norm.weight", "linear_attn.norm.weight", 1, h->dv, 0, X_COPY);
            L("ssm_out.weight", "linear_attn.out_proj.weight", 2, Vd, h->H, X_COLS_DV);
        }
#undef L
    }
#undef W
    return n;
}

/* The reorder, as the brief and docs/QWEN35_FORMAT.md §2.3 state it. */
static int64_t new_index(const hp *h, int64_t head) {
    int64_t R = h->nv / h->nk;
    return (head % R) * h->nk + head / R;
}

/* The GGUF tensor's values as they should be, in its memory order. */
static float *expected_values(const hp *h, const df_st_tensor *src, const want_tensor *w, int64_t *count) {
    size_t n = (size_t)src->n_elements;
    float *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    cr_assert(in && out);
    cr_assert_eq(df_st_to_f32(src, in, n), DF_OK, "%s", df_last_error());
    const int64_t ne0 = w->ne[0], rows = (int64_t)n / ne0;
    const int64_t Kd = h->nk * h->dk;
    memcpy(out, in, n * sizeof *out);
    switch (w->x) {
    case X_COPY:
        break;
    case X_PLUS1:
        for (size_t i = 0; i < n; i++) out[i] = in[i] + 1.0f;
        break;
    case X_NEGEXP:
        for (int64_t v = 0; v < h->nv; v++) out[new_index(h, v)] = (float)-exp((double)in[v]);
        break;
    case X_VEC_HEADS:
        for (int64_t v = 0; v < h->nv; v++) out[new_index(h, v)] = in[v];
        break;
    case X_ROWS_V:
    case X_ROWS_DV:
    case X_ROWS_1: {
        const int64_t start = w->x == X_ROWS_V ? 2 * Kd : 0, hs = w->x == X_ROWS_1 ? 1 : h->dv;
        for (int64_t head = 0; head < h->nv; head++)
            for (int64_t d = 0; d < hs; d++) {
                int64_t from = start + head * hs + d, to = start + new_index(h, head) * hs + d;
                cr_assert(from < rows && to < rows);
                memcpy(out + to * ne0, in + from * ne0, (size_t)ne0 * sizeof *out);
            }
        break;
    }
    case X_COLS_DV:
        for (int64_t r = 0; r < rows; r++)
            for (int64_t head = 0; head < h->nv; head++)
                for (int64_t d = 0; d < h->dv; d++)
                    out[r * ne0 + new_index(h, head) * h->dv + d] = in[r * ne0 + head * h->dv + d];
        break;
    }
    free(in);
    *count = (int64_t)n;
    return out;
}

static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static bool has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* The type docs/QWEN35_FORMAT.md §2.2 / §4 give a tensor for a --type. */
static uint32_t expected_type(const want_tensor *w, int choice, bool tied, int n_layer) {
    if (w->n_dims < 2 || strstr(w->gguf, "_norm.weight") || strstr(w->gguf, "ssm_conv1d") ||
        !has_suffix(w->gguf, ".weight") || choice == 0)
        return DF_TYPE_F32;
    const int64_t ne0 = w->ne[0];
    switch (choice) {
    case 1: return DF_TYPE_F16;
    case 2: return DF_TYPE_BF16;
    case 3: return ne0 % 32 ? DF_TYPE_F16 : DF_TYPE_Q8_0;
    default: break;
    }
    uint32_t t = DF_TYPE_Q4_K;
    bool is_out = !strcmp(w->gguf, "output.weight") || (tied && !strcmp(w->gguf, "token_embd.weight"));
    if (is_out) t = ne0 % 256 ? DF_TYPE_Q8_0 : DF_TYPE_Q6_K;
    else if (strstr(w->gguf, "attn_qkv.weight") || strstr(w->gguf, "attn_v.weight") || strstr(w->gguf, "ffn_down"))
        t = more_bits(w->layer, n_layer) ? DF_TYPE_Q6_K : DF_TYPE_Q4_K;
    if (ne0 % 256 && t == DF_TYPE_Q4_K) t = DF_TYPE_Q5_0;
    if (ne0 % 256 && t == DF_TYPE_Q6_K) t = DF_TYPE_Q8_0;
    if (ne0 % 32 && (t == DF_TYPE_Q5_0 || t == DF_TYPE_Q8_0)) t = DF_TYPE_F16;
    return t;
}

/* Relative RMS error a type's rounding may leave on random data (a wrong row or column
 * order leaves about 1.4). */
static double rms_bound(uint32_t type) {
    switch (type) {
    case DF_TYPE_Q8_0: return 0.012;
    case DF_TYPE_Q6_K: return 0.03;
    case DF_TYPE_Q5_0: return 0.07;
    case DF_TYPE_Q4_K: return 0.12;
    default: return 0.0;
    }
}

static void check_values(const df_gguf_tensor *t, const float *want, int64_t n, const char *where) {
    const df_type_traits *tt = df_type_get(t->type);
    cr_assert(tt && tt->to_float, "%s: type %u cannot be read back", where, t->type);
    float *got = malloc((size_t)n * sizeof *got);
    cr_assert_not_null(got);
    size_t row_size;
    cr_assert(df_type_row_size((df_type)t->type, t->ne[0], &row_size));
    const int64_t rows = n / t->ne[0];
    cr_assert_eq((uint64_t)rows * row_size, t->size, "%s: %llu bytes for %lld rows of %zu", where,
                 (unsigned long long)t->size, (long long)rows, row_size);
    for (int64_t r = 0; r < rows; r++) tt->to_float((const uint8_t *)t->data + r * row_size, got + r * t->ne[0], t->ne[0]);
    if (t->type == DF_TYPE_F32 || t->type == DF_TYPE_F16 || t->type == DF_TYPE_BF16) {
        /* f32: exact (-exp to one rounding); f16/bf16: one rounding of the exact value. */
        double rel = t->type == DF_TYPE_F32 ? 2e-7 : t->type == DF_TYPE_F16 ? 1.0 / 2048 : 1.0 / 256;
        for (int64_t i = 0; i < n; i++) {
            double tol = rel * fabs(want[i]) + (t->type == DF_TYPE_F16 ? 6e-8 : 0.0);
            cr_assert(fabs((double)got[i] - want[i]) <= tol, "%s[%lld]: got %.9g, want %.9g (%s)", where, (long long)i,
                      got[i], want[i], df_type_name(t->type));
        }
    } else {
        double err = 0, ref = 0;
        for (int64_t i = 0; i < n; i++) {
            err += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
            ref += (double)want[i] * want[i];
        }
        double e = sqrt(err / (ref > 0 ? ref : 1));
        cr_assert(e <= rms_bound(t->type), "%s: relative RMS error %.4f over %s's bound %.3f", where, e,
                  df_type_name(t->type), rms_bound(t->type));
    }
    free(got);
}

static void expect_u32(const df_gguf *g, const char *key, uint32_t want) {
    const df_gguf_kv *kv = df_gguf_find_kv(g, key);
    cr_assert_not_null(kv, "key %s is missing", key);
    cr_assert_eq(kv->value.type, DF_GGUF_U32, "key %s has type %s, expected u32", key, df_gguf_type_name(kv->value.type));
    uint32_t v = 0;
    cr_assert_eq(df_gguf_get_u32(g, key, &v), DF_OK);
    cr_assert_eq(v, want, "key %s = %u, expected %u", key, v, want);
}

static void expect_f32(const df_gguf *g, const char *key, float want) {
    const df_gguf_kv *kv = df_gguf_find_kv(g, key);
    cr_assert_not_null(kv, "key %s is missing", key);
    cr_assert_eq(kv->value.type, DF_GGUF_F32, "key %s has type %s, expected f32", key, df_gguf_type_name(kv->value.type));
    float v = 0;
    cr_assert_eq(df_gguf_get_f32(g, key, &v), DF_OK);
    cr_assert_eq(v, want, "key %s = %g, expected %g", key, v, want);
}

static void expect_str(const df_gguf *g, const char *key, const char *want) {
    const char *s;
    size_t len;
    cr_assert_eq(df_gguf_get_str(g, key, &s, &len), DF_OK, "key %s: %s", key, df_last_error());
    cr_assert(len == strlen(want) && !memcmp(s, want, len), "key %s = '%.*s', expected '%s'", key, (int)len, s, want);
}

/* The id tokenizer.json gives a token's text (added tokens first, then the BPE vocabulary). */
static int64_t token_id(json_t *tok, const char *text) {
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(tok, "added_tokens"), i, a) {
        if (!strcmp(json_string_value(json_object_get(a, "content")), text))
            return json_integer_value(json_object_get(a, "id"));
    }
    json_t *v = json_object_get(json_object_get(json_object_get(tok, "model"), "vocab"), text);
    return v ? json_integer_value(v) : -1;
}

/* With a tokenizer.json in the Qwen layout: the tokenizer keys, padded to vocab_size, the
 * specials named by tokenizer_config.json. */
static void check_tokenizer_keys(const char *hf_dir, const df_gguf *g, int64_t vocab) {
    char *tp = path_join(hf_dir, "tokenizer.json"), *cp = path_join(hf_dir, "tokenizer_config.json");
    json_error_t jerr;
    json_t *tok = json_load_file(tp, 0, &jerr), *tc = json_load_file(cp, 0, &jerr);
    cr_assert(tok && tc, "%s / %s", tp, cp);
    json_t *split = json_array_get(json_object_get(json_object_get(tok, "pre_tokenizer"), "pretokenizers"), 0);
    const char *regex = json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex"));
    cr_assert_not_null(regex);
    expect_str(g, "tokenizer.ggml.model", "gpt2");
    expect_str(g, "tokenizer.ggml.pre", !strcmp(regex, DF_PRE_QWEN35_PATTERN) ? "qwen35" : "qwen2");
    df_gguf_value toks;
    cr_assert_eq(df_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks), DF_OK);
    cr_assert_eq(toks.count, (uint64_t)vocab, "%llu tokens, vocab_size %lld", (unsigned long long)toks.count,
                 (long long)vocab);
    static const char *const kinds[][2] = {{"eos_token", "tokenizer.ggml.eos_token_id"},
                                           {"pad_token", "tokenizer.ggml.padding_token_id"},
                                           {"bos_token", "tokenizer.ggml.bos_token_id"}};
    for (int k = 0; k < 3; k++) {
        json_t *v = json_object_get(tc, kinds[k][0]);
        if (!json_is_string(v)) continue;
        uint32_t id;
        cr_assert_eq(df_gguf_get_u32(g, kinds[k][1], &id), DF_OK, "%s: %s", kinds[k][1], df_last_error());
        cr_assert_eq((int64_t)id, token_id(tok, json_string_value(v)), "%s", kinds[k][1]);
    }
    json_t *add_bos = json_object_get(tc, "add_bos_token");
    if (json_is_boolean(add_bos)) {
        bool b;
        cr_assert_eq(df_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), DF_OK);
        cr_assert_eq(b, json_is_true(add_bos));
    }
    json_decref(tok);
    json_decref(tc);
    free(tp);
    free(cp);
}

/* Everything about one converted file, against its checkpoint and config. */
static void check_converted(const char *hf_dir, const char *gguf_path, int choice) {
    char *cfg_path = path_join(hf_dir, "config.json");
    json_error_t jerr;
    json_t *cfg = json_load_file(cfg_path, 0, &jerr);
    cr_assert_not_null(cfg, "%s: %s", cfg_path, jerr.text);
    hp h = read_hp(cfg);

    char *st_path = path_join(hf_dir, "model.safetensors");
    df_st_file *sf;
    cr_assert_eq(df_st_open(st_path, &sf), DF_OK, "%s", df_last_error());
    const char *prefix = df_st_find(sf, "model.language_model.embed_tokens.weight") ? "model.language_model." : "model.";
    const bool has_lm_head = df_st_find(sf, "lm_head.weight") != NULL;
    df_gguf *g;
    cr_assert_eq(df_gguf_open(gguf_path, &g), DF_OK, "%s", df_last_error());

    /* metadata */
    expect_str(g, "general.architecture", "qwen35");
    const char *base = strrchr(hf_dir, '/');
    expect_str(g, "general.name", base ? base + 1 : hf_dir);
    expect_u32(g, "general.file_type", k_file_types[choice]);
    expect_u32(g, "general.quantization_version", 2);
    expect_u32(g, "qwen35.block_count", (uint32_t)h.n_layer);
    expect_u32(g, "qwen35.context_length", (uint32_t)cfg_int(cfg, "max_position_embeddings"));
    expect_u32(g, "qwen35.embedding_length", (uint32_t)h.H);
    expect_u32(g, "qwen35.feed_forward_length", (uint32_t)h.F);
    expect_u32(g, "qwen35.attention.head_count", (uint32_t)h.nh);
    expect_u32(g, "qwen35.attention.head_count_kv", (uint32_t)h.nkv);
    expect_u32(g, "qwen35.attention.key_length", (uint32_t)h.hd);
    expect_u32(g, "qwen35.attention.value_length", (uint32_t)h.hd);
    expect_f32(g, "qwen35.attention.layer_norm_rms_epsilon", (float)cfg_num(cfg, "rms_norm_eps"));
    json_t *rp = cfg_get(cfg, "rope_parameters");
    expect_f32(g, "qwen35.rope.freq_base", (float)json_number_value(json_object_get(rp, "rope_theta")));
    double prf = json_is_number(cfg_get(cfg, "partial_rotary_factor")) ? cfg_num(cfg, "partial_rotary_factor") : 0.25;
    expect_u32(g, "qwen35.rope.dimension_count", (uint32_t)(int64_t)((double)h.hd * prf));
    expect_u32(g, "qwen35.ssm.conv_kernel", (uint32_t)h.K);
    expect_u32(g, "qwen35.ssm.state_size", (uint32_t)h.dk);
    expect_u32(g, "qwen35.ssm.group_count", (uint32_t)h.nk);
    expect_u32(g, "qwen35.ssm.time_step_rank", (uint32_t)h.nv);
    expect_u32(g, "qwen35.ssm.inner_size", (uint32_t)(h.nv * h.dv));
    expect_u32(g, "qwen35.full_attention_interval", (uint32_t)h.interval);
    {
        df_gguf_value arr;
        cr_assert_eq(df_gguf_get_arr(g, "qwen35.rope.dimension_sections", &arr), DF_OK, "%s", df_last_error());
        cr_assert_eq(arr.elem_type, DF_GGUF_I32, "dimension_sections holds %s", df_gguf_type_name(arr.elem_type));
        cr_assert_eq(arr.count, 4);
        int32_t want_sec[4] = {11, 11, 10, 0}, got_sec[4];
        json_t *ms = json_object_get(rp, "mrope_section");
        for (size_t i = 0; ms && i < 4; i++)
            want_sec[i] = i < json_array_size(ms) ? (int32_t)json_integer_value(json_array_get(ms, i)) : 0;
        size_t n;
        cr_assert_eq(df_gguf_get_arr_i32(g, "qwen35.rope.dimension_sections", got_sec, 4, &n), DF_OK);
        for (int i = 0; i < 4; i++) cr_assert_eq(got_sec[i], want_sec[i], "dimension_sections[%d]", i);
    }

    char *tok_path = path_join(hf_dir, "tokenizer.json"), *tc_path = path_join(hf_dir, "tokenizer_config.json");
    if (file_exists(tok_path) && file_exists(tc_path)) check_tokenizer_keys(hf_dir, g, h.vocab);
    free(tok_path);
    free(tc_path);

    /* tensors: exactly the expected set, each with its shape, type and values */
    want_tensor *want = calloc(32 + 20 * (size_t)h.n_layer, sizeof *want);
    cr_assert_not_null(want);
    int n_want = build_want(&h, prefix, has_lm_head, want);
    cr_assert_eq(df_gguf_n_tensors(g), (uint64_t)n_want, "%s: %llu tensors, expected %d", gguf_path,
                 (unsigned long long)df_gguf_n_tensors(g), n_want);
    for (int i = 0; i < n_want; i++) {
        const want_tensor *w = &want[i];
        const df_gguf_tensor *t = df_gguf_find_tensor(g, w->gguf);
        cr_assert_not_null(t, "%s: tensor %s is missing", gguf_path, w->gguf);
        cr_assert_eq(t->n_dims, w->n_dims, "%s: %d dims", w->gguf, t->n_dims);
        cr_assert_eq(t->ne[0], w->ne[0], "%s: ne[0] %lld, expected %lld", w->gguf, (long long)t->ne[0], (long long)w->ne[0]);
        if (w->n_dims == 2)
            cr_assert_eq(t->ne[1], w->ne[1], "%s: ne[1] %lld, expected %lld", w->gguf, (long long)t->ne[1],
                         (long long)w->ne[1]);
        uint32_t want_type = expected_type(w, choice, !has_lm_head, (int)h.n_layer);
        cr_assert_eq(t->type, want_type, "%s (%s): type %s, expected %s", w->gguf, k_type_names[choice],
                     df_type_name(t->type), df_type_name(want_type));
        const df_st_tensor *src = df_st_find(sf, w->hf);
        cr_assert_not_null(src, "checkpoint lacks %s", w->hf);
        int64_t n;
        float *vals = expected_values(&h, src, w, &n);
        cr_assert_eq(n, t->n_elements, "%s: %lld elements, expected %lld", w->gguf, (long long)t->n_elements, (long long)n);
        char where[128];
        snprintf(where, sizeof where, "%s %s", k_type_names[choice], w->gguf);
        check_values(t, vals, n, where);
        free(vals);
    }
    if (!has_lm_head) cr_assert_null(df_gguf_find_tensor(g, "output.weight"), "a tied model got output.weight");

    /* and the model loader takes it */
    df_backend *be;
    cr_assert_eq(df_backend_cpu_create(1, &be), DF_OK);
    df_qwen35 *m = NULL;
    cr_assert_eq(df_qwen35_load(g, be, &m), DF_OK, "%s: the loader refused it: %s", gguf_path, df_last_error());
    cr_assert_eq(m->tied, !has_lm_head);
    df_qwen35_free(m);
    df_backend_destroy(be);

    free(want);
    df_gguf_close(g);
    df_st_close(sf);
    json_decref(cfg);
    free(st_path);
    free(cfg_path);
}

/* ---- the transformers fixtures -------------------------------------------------------------- */

static void convert_fixture_all_types(const char *name) {
    char *dir = make_tmpdir();
    char src[512];
    snprintf(src, sizeof src, "%s/%s", FIXTURES, name);
    for (int choice = 0; choice < 5; choice++) {
        char out[600];
        snprintf(out, sizeof out, "%s/%s-%s.gguf", dir, name, k_type_names[choice]);
        df_status st = convert_logged(src, out, choice, NULL);
        cr_assert_eq(st, DF_OK, "%s --type %s: %s", name, k_type_names[choice], df_last_error());
        check_converted(src, out, choice);
        unlink(out);
    }
    rm_tree(dir);
    free(dir);
}

Test(convert, tiny_a_every_type) { convert_fixture_all_types("tiny_a"); }
Test(convert, tiny_vh_every_type) { convert_fixture_all_types("tiny_vh"); }
Test(convert, tiny_alt_every_type) { convert_fixture_all_types("tiny_alt"); }

/* The value-head reorder spelled out on tiny_vh (nk = 2, nv = 6): every moved row and column,
 * and the q / k rows that must not move, compared bit for bit with the checkpoint. */
Test(convert, tiny_vh_value_head_reorder_exact) {
    char *dir = make_tmpdir();
    char *out = path_join(dir, "vh.gguf");
    const char *src_dir = FIXTURES "/tiny_vh";
    cr_assert_eq(convert_logged(src_dir, out, 0, NULL), DF_OK, "%s", df_last_error());
    df_gguf *g;
    df_st_file *sf;
    cr_assert_eq(df_gguf_open(out, &g), DF_OK);
    cr_assert_eq(df_st_open(FIXTURES "/tiny_vh/model.safetensors", &sf), DF_OK);
    const int nk = 2, nv = 6, R = 3, dk = 16, dv = 16, H = 96, Kd = nk * dk, K = 4;
    for (int il = 0; il < 8; il++) {
        if ((il + 1) % 4 == 0) continue;
        char gn[64], hn[128];
        /* in_proj_qkv: rows [0, 2Kd) in place, V rows by head */
        snprintf(gn, sizeof gn, "blk.%d.attn_qkv.weight", il);
        snprintf(hn, sizeof hn, "model.layers.%d.linear_attn.in_proj_qkv.weight", il);
        const df_gguf_tensor *t = df_gguf_find_tensor(g, gn);
        const df_st_tensor *s = df_st_find(sf, hn);
        cr_assert(t && s && t->type == DF_TYPE_F32);
        const float *gd = t->data;
        float *hd = malloc((size_t)s->n_elements * sizeof(float));
        df_st_to_f32(s, hd, (size_t)s->n_elements);
        for (int r = 0; r < 2 * Kd; r++)
            cr_assert(!memcmp(gd + r * H, hd + r * H, H * sizeof(float)), "%s: q/k row %d moved", gn, r);
        for (int h = 0; h < nv; h++) {
            int to = (h % R) * nk + h / R;
            for (int d = 0; d < dv; d++)
                cr_assert(!memcmp(gd + (2 * Kd + to * dv + d) * H, hd + (2 * Kd + h * dv + d) * H, H * sizeof(float)),
                          "%s: HF V head %d row %d is not at head %d", gn, h, d, to);
        }
        free(hd);
        /* conv1d: [C, 1, K] -> ne {K, C}; V channels by head */
        snprintf(gn, sizeof gn, "blk.%d.ssm_conv1d.weight", il);
        snprintf(hn, sizeof hn, "model.layers.%d.linear_attn.conv1d.weight", il);
        t = df_gguf_find_tensor(g, gn);
        s = df_st_find(sf, hn);
        cr_assert(t && s && t->ne[0] == K && t->ne[1] == 2 * Kd + nv * dv);
        gd = t->data;
        hd = malloc((size_t)s->n_elements * sizeof(float));
        df_st_to_f32(s, hd, (size_t)s->n_elements);
        for (int c = 0; c < 2 * Kd; c++) cr_assert(!memcmp(gd + c * K, hd + c * K, K * sizeof(float)));
        for (int h = 0; h < nv; h++)
            for (int d = 0; d < dv; d++) {
                int to = (h % R) * nk + h / R;
                cr_assert(!memcmp(gd + (2 * Kd + to * dv + d) * K, hd + (2 * Kd + h * dv + d) * K, K * sizeof(float)),
                          "%s: channel of V head %d", gn, h);
            }
        free(hd);
        /* out_proj: columns by head */
        snprintf(gn, sizeof gn, "blk.%d.ssm_out.weight", il);
        snprintf(hn, sizeof hn, "model.layers.%d.linear_attn.out_proj.weight", il);
        t = df_gguf_find_tensor(g, gn);
        s = df_st_find(sf, hn);
        cr_assert(t && s && t->ne[0] == nv * dv && t->ne[1] == H);
        gd = t->data;
        hd = malloc((size_t)s->n_elements * sizeof(float));
        df_st_to_f32(s, hd, (size_t)s->n_elements);
        for (int r = 0; r < H; r++)
            for (int h = 0; h < nv; h++)
                for (int d = 0; d < dv; d++) {
                    int to = (h % R) * nk + h / R;
                    cr_assert_eq(gd[r * nv * dv + to * dv + d], hd[r * nv * dv + h * dv + d], "%s: row %d, head %d", gn, r, h);
                }
        free(hd);
        /* A_log -> ssm_a, dt_bias: element h to new_index(h) */
        snprintf(hn, sizeof hn, "model.layers.%d.linear_attn.A_log", il);
        s = df_st_find(sf, hn);
        snprintf(gn, sizeof gn, "blk.%d.ssm_a", il);
        t = df_gguf_find_tensor(g, gn);
        cr_assert(s && t);
        float alog[6], dtb[6];
        df_st_to_f32(s, alog, 6);
        snprintf(hn, sizeof hn, "model.layers.%d.linear_attn.dt_bias", il);
        df_st_to_f32(df_st_find(sf, hn), dtb, 6);
        snprintf(gn, sizeof gn, "blk.%d.ssm_dt.bias", il);
        const df_gguf_tensor *tdt = df_gguf_find_tensor(g, gn);
        cr_assert_not_null(tdt);
        for (int h = 0; h < nv; h++) {
            int to = (h % R) * nk + h / R;
            double want = -exp((double)alog[h]);
            cr_assert(fabs(((const float *)t->data)[to] - want) <= 2e-7 * fabs(want), "ssm_a[%d]", to);
            cr_assert_eq(((const float *)tdt->data)[to], dtb[h], "ssm_dt.bias[%d]", to);
        }
    }
    df_st_close(sf);
    df_gguf_close(g);
    rm_tree(dir);
    free(dir);
    free(out);
}

/* ---- synthetic checkpoints ----------------------------------------------------------------- */

typedef struct synth {
    int H, F, n_layer, nh, nkv, hd, nk, nv, dk, dv, K, vocab;
    bool tied;     /* no lm_head.weight, tie_word_embeddings true */
    bool condgen;  /* Qwen3_5ForConditionalGeneration layout */
    int n_visual, n_mtp;
    const char *layer_types[16]; /* NULL: every 4th layer full */
} synth;

typedef struct st_entry {
    char name[160];
    int dtype; /* DF_ST_F32, DF_ST_F16, DF_ST_BF16 */
    int nd;
    int64_t shape[3];
} st_entry;

typedef struct st_list {
    st_entry e[512];
    int n;
} st_list;

static void st_add(st_list *l, int dtype, const char *name, int nd, int64_t a, int64_t b, int64_t c) {
    cr_assert(l->n < 512);
    st_entry *e = &l->e[l->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->dtype = dtype;
    e->nd = nd;
    e->shape[0] = a;
    e->shape[1] = b;
    e->shape[2] = c;
}

static st_entry *st_lookup(st_list *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->e[i].name, name)) return &l->e[i];
    return NULL;
}

static void st_remove(st_list *l, const char *name) {
    st_entry *e = st_lookup(l, name);
    cr_assert_not_null(e, "no tensor %s to remove", name);
    *e = l->e[--l->n];
}

/* Writes a safetensors file: the header made with Jansson, random N(0, 0.3^2) values. */
static void st_write(const char *path, const st_list *l, uint64_t seed) {
    json_t *hdr = json_object();
    uint64_t off = 0;
    for (int i = 0; i < l->n; i++) {
        const st_entry *e = &l->e[i];
        uint64_t n = 1;
        json_t *shape = json_array();
        for (int d = 0; d < e->nd; d++) {
            n *= (uint64_t)e->shape[d];
            json_array_append_new(shape, json_integer(e->shape[d]));
        }
        uint64_t bytes = n * (e->dtype == DF_ST_F32 ? 4 : 2);
        json_t *ent = json_object();
        json_object_set_new(ent, "dtype", json_string(e->dtype == DF_ST_F32 ? "F32" : e->dtype == DF_ST_F16 ? "F16" : "BF16"));
        json_object_set_new(ent, "shape", shape);
        json_t *offs = json_array();
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + bytes)));
        json_object_set_new(ent, "data_offsets", offs);
        json_object_set_new(hdr, e->name, ent);
        off += bytes;
    }
    char *text = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    size_t hlen = strlen(text), padded = (hlen + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    uint64_t n8 = padded;
    fwrite(&n8, 8, 1, f);
    fwrite(text, 1, hlen, f);
    for (size_t i = hlen; i < padded; i++) fputc(' ', f);
    free(text);
    df_rng rng;
    df_rng_seed(&rng, seed);
    for (int i = 0; i < l->n; i++) {
        const st_entry *e = &l->e[i];
        uint64_t n = 1;
        for (int d = 0; d < e->nd; d++) n *= (uint64_t)e->shape[d];
        for (uint64_t k = 0; k < n; k++) {
            float v = 0.3f * df_rng_normal(&rng);
            if (e->dtype == DF_ST_F32) fwrite(&v, 4, 1, f);
            else {
                uint16_t h = e->dtype == DF_ST_F16 ? df_f32_to_fp16(v) : df_f32_to_bf16(v);
                fwrite(&h, 2, 1, f);
            }
        }
    }
    fclose(f);
}

static bool synth_full(const synth *s, int il) {
    if (s->layer_types[0]) return !strcmp(s->layer_types[il], "full_attention");
    return (il + 1) % 4 == 0;
}

/* The HF tensors of a synthetic model; dtypes cycle through F32, F16 and BF16. */
static void synth_tensors(const synth *s, st_list *l) {
    const char *p = s->condgen ? "model.language_model." : "model.";
    int k = 0;
    const int dts[3] = {DF_ST_F32, DF_ST_F16, DF_ST_BF16};
    char n[160];
#define T(nd, a, b, c, ...)                                    \
    do {                                                       \
        snprintf(n, sizeof n, __VA_ARGS__);                    \
        st_add(l, dts[k++ % 3], n, nd, a, b, c);               \
    } while (0)
    T(2, s->vocab, s->H, 0, "%sembed_tokens.weight", p);
    T(1, s->H, 0, 0, "%snorm.weight", p);
    if (!s->tied) T(2, s->vocab, s->H, 0, "lm_head.weight");
    const int Kd = s->nk * s->dk, Vd = s->nv * s->dv, C = 2 * Kd + Vd;
    for (int il = 0; il < s->n_layer; il++) {
        T(1, s->H, 0, 0, "%slayers.%d.input_layernorm.weight", p, il);
        T(1, s->H, 0, 0, "%slayers.%d.post_attention_layernorm.weight", p, il);
        T(2, s->F, s->H, 0, "%slayers.%d.mlp.gate_proj.weight", p, il);
        T(2, s->F, s->H, 0, "%slayers.%d.mlp.up_proj.weight", p, il);
        T(2, s->H, s->F, 0, "%slayers.%d.mlp.down_proj.weight", p, il);
        if (synth_full(s, il)) {
            T(2, 2 * s->nh * s->hd, s->H, 0, "%slayers.%d.self_attn.q_proj.weight", p, il);
            T(2, s->nkv * s->hd, s->H, 0, "%slayers.%d.self_attn.k_proj.weight", p, il);
            T(2, s->nkv * s->hd, s->H, 0, "%slayers.%d.self_attn.v_proj.weight", p, il);
            T(2, s->H, s->nh * s->hd, 0, "%slayers.%d.self_attn.o_proj.weight", p, il);
            T(1, s->hd, 0, 0, "%slayers.%d.self_attn.q_norm.weight", p, il);
            T(1, s->hd, 0, 0, "%slayers.%d.self_attn.k_norm.weight", p, il);
        } else {
            T(2, C, s->H, 0, "%slayers.%d.linear_attn.in_proj_qkv.weight", p, il);
            T(2, Vd, s->H, 0, "%slayers.%d.linear_attn.in_proj_z.weight", p, il);
            T(2, s->nv, s->H, 0, "%slayers.%d.linear_attn.in_proj_b.weight", p, il);
            T(2, s->nv, s->H, 0, "%slayers.%d.linear_attn.in_proj_a.weight", p, il);
            T(1, s->nv, 0, 0, "%slayers.%d.linear_attn.A_log", p, il);
            T(1, s->nv, 0, 0, "%slayers.%d.linear_attn.dt_bias", p, il);
            T(3, C, 1, s->K, "%slayers.%d.linear_attn.conv1d.weight", p, il);
            T(1, s->dv, 0, 0, "%slayers.%d.linear_attn.norm.weight", p, il);
            T(2, s->H, Vd, 0, "%slayers.%d.linear_attn.out_proj.weight", p, il);
        }
    }
    for (int i = 0; i < s->n_visual; i++) T(2, 8, 8, 0, "model.visual.blocks.%d.mlp.weight", i);
    for (int i = 0; i < s->n_mtp; i++) T(1, s->H, 0, 0, "mtp.layers.0.part%d.weight", i);
#undef T
}

static json_t *synth_config(const synth *s) {
    json_t *t = json_object();
    json_object_set_new(t, "hidden_size", json_integer(s->H));
    json_object_set_new(t, "intermediate_size", json_integer(s->F));
    json_object_set_new(t, "num_hidden_layers", json_integer(s->n_layer));
    json_object_set_new(t, "num_attention_heads", json_integer(s->nh));
    json_object_set_new(t, "num_key_value_heads", json_integer(s->nkv));
    json_object_set_new(t, "head_dim", json_integer(s->hd));
    json_object_set_new(t, "linear_num_key_heads", json_integer(s->nk));
    json_object_set_new(t, "linear_num_value_heads", json_integer(s->nv));
    json_object_set_new(t, "linear_key_head_dim", json_integer(s->dk));
    json_object_set_new(t, "linear_value_head_dim", json_integer(s->dv));
    json_object_set_new(t, "linear_conv_kernel_dim", json_integer(s->K));
    json_object_set_new(t, "vocab_size", json_integer(s->vocab));
    json_object_set_new(t, "max_position_embeddings", json_integer(8192));
    json_object_set_new(t, "rms_norm_eps", json_real(1e-6));
    json_object_set_new(t, "tie_word_embeddings", json_boolean(s->tied));
    json_t *rp = json_object();
    json_object_set_new(rp, "rope_theta", json_real(10000000.0));
    json_object_set_new(rp, "partial_rotary_factor", json_real(0.25));
    json_t *ms = json_array();
    json_array_append_new(ms, json_integer(3));
    json_array_append_new(ms, json_integer(2));
    json_array_append_new(ms, json_integer(3));
    json_object_set_new(rp, "mrope_section", ms);
    json_object_set_new(t, "rope_parameters", rp);
    json_t *lt = json_array();
    for (int i = 0; i < s->n_layer; i++)
        json_array_append_new(lt, json_string(synth_full(s, i) ? "full_attention" : "linear_attention"));
    json_object_set_new(t, "layer_types", lt);
    json_t *arch = json_array();
    json_array_append_new(arch, json_string(s->condgen ? "Qwen3_5ForConditionalGeneration" : "Qwen3_5ForCausalLM"));
    if (!s->condgen) {
        json_object_set_new(t, "architectures", arch);
        return t;
    }
    /* The wrapper: text fields under text_config; top-level decoys that the merge must hide. */
    json_t *top = json_object();
    json_object_set_new(top, "architectures", arch);
    json_object_set_new(top, "text_config", t);
    json_object_set_new(top, "num_hidden_layers", json_integer(99));
    json_object_set_new(top, "hidden_size", json_integer(7));
    json_object_set_new(top, "tie_word_embeddings", json_boolean(s->tied));
    json_object_set_new(top, "vision_config", json_pack("{s:i}", "depth", 2));
    return top;
}

/* A model directory: config.json (possibly edited by the caller) and model.safetensors. */
static void write_model(const char *dir, json_t *cfg, const st_list *l, uint64_t seed) {
    char *cp = path_join(dir, "config.json"), *sp = path_join(dir, "model.safetensors");
    write_json(cp, cfg);
    st_write(sp, l, seed);
    free(cp);
    free(sp);
}

/* Small and quick: every row length a multiple of 32. */
static synth small_synth(void) {
    return (synth){.H = 64, .F = 96, .n_layer = 4, .nh = 2, .nkv = 1, .hd = 32, .nk = 2, .nv = 4,
                   .dk = 16, .dv = 16, .K = 4, .vocab = 40};
}

/* A subdirectory named like a model, so that general.name is predictable. */
static char *model_dir(const char *root, const char *name) {
    char *d = path_join(root, name);
    cr_assert_eq(mkdir(d, 0755), 0);
    return d;
}

/* Q4_K_M on rows of 256: real Q6_K / Q4_K choices, the use_more_bits schedule over 8 blocks
 * ({0, 3, 6, 7} get Q6_K), untied (output Q6_K, token_embd Q4_K) and tied (token_embd Q6_K).
 * The weights are stored as f32, f16 and bf16 in turn. */
static void q4_k_m_schedule(bool tied) {
    char *root = make_tmpdir();
    char *dir = model_dir(root, tied ? "wide_tied" : "wide");
    synth s = {.H = 256, .F = 256, .n_layer = 8, .nh = 2, .nkv = 1, .hd = 128, .nk = 2, .nv = 4,
               .dk = 64, .dv = 64, .K = 4, .vocab = 48, .tied = tied};
    st_list *l = calloc(1, sizeof *l);
    synth_tensors(&s, l);
    json_t *cfg = synth_config(&s);
    write_model(dir, cfg, l, 5);
    char *out = path_join(root, "out.gguf");
    char *log = NULL;
    cr_assert_eq(convert_logged(dir, out, 4, &log), DF_OK, "%s", df_last_error());
    cr_assert_eq(count_lines_with(log, "fell back"), 0, "unexpected fallbacks: %s", log);
    df_gguf *g;
    cr_assert_eq(df_gguf_open(out, &g), DF_OK);
    static const bool six[8] = {true, false, false, true, false, false, true, true};
    for (int il = 0; il < 8; il++) {
        char n[64];
        snprintf(n, sizeof n, (il + 1) % 4 == 0 ? "blk.%d.attn_v.weight" : "blk.%d.attn_qkv.weight", il);
        const df_gguf_tensor *t = df_gguf_find_tensor(g, n);
        cr_assert_not_null(t);
        cr_assert_eq(t->type, six[il] ? DF_TYPE_Q6_K : DF_TYPE_Q4_K, "%s is %s", n, df_type_name(t->type));
        snprintf(n, sizeof n, "blk.%d.ffn_down.weight", il);
        t = df_gguf_find_tensor(g, n);
        cr_assert_eq(t->type, six[il] ? DF_TYPE_Q6_K : DF_TYPE_Q4_K, "%s is %s", n, df_type_name(t->type));
        static const char *const q4[] = {"ffn_gate.weight", "ffn_up.weight", "attn_gate.weight", "ssm_out.weight",
                                         "ssm_alpha.weight", "ssm_beta.weight", "attn_q.weight", "attn_k.weight",
                                         "attn_output.weight"};
        for (size_t k = 0; k < sizeof q4 / sizeof q4[0]; k++) {
            snprintf(n, sizeof n, "blk.%d.%s", il, q4[k]);
            t = df_gguf_find_tensor(g, n);
            if (t) cr_assert_eq(t->type, DF_TYPE_Q4_K, "%s is %s", n, df_type_name(t->type));
        }
    }
    cr_assert_eq(df_gguf_find_tensor(g, "token_embd.weight")->type, tied ? DF_TYPE_Q6_K : DF_TYPE_Q4_K);
    if (!tied) cr_assert_eq(df_gguf_find_tensor(g, "output.weight")->type, DF_TYPE_Q6_K);
    else cr_assert_null(df_gguf_find_tensor(g, "output.weight"));
    df_gguf_close(g);
    /* and all the values, for every type (f16 / bf16 sources included) */
    for (int choice = 0; choice < 5; choice++) {
        cr_assert_eq(convert_logged(dir, out, choice, NULL), DF_OK, "%s", df_last_error());
        check_converted(dir, out, choice);
    }
    free(log);
    free(out);
    json_decref(cfg);
    free(l);
    rm_tree(root);
    free(root);
    free(dir);
}

Test(convert, q4_k_m_schedule_untied) { q4_k_m_schedule(false); }
Test(convert, q4_k_m_schedule_tied) { q4_k_m_schedule(true); }

Test(convert, conditional_generation_layout) {
    char *root = make_tmpdir();
    char *dir = model_dir(root, "Qwen3.5-tiny-VL");
    synth s = small_synth();
    s.condgen = true;
    s.n_visual = 3;
    s.n_mtp = 2;
    st_list *l = calloc(1, sizeof *l);
    synth_tensors(&s, l);
    json_t *cfg = synth_config(&s);
    write_model(dir, cfg, l, 9);
    char *out = path_join(root, "vl.gguf");
    char *log = NULL;
    cr_assert_eq(convert_logged(dir, out, 0, &log), DF_OK, "%s", df_last_error());
    cr_assert_eq(count_lines_with(log, "3 vision tensors"), 1, "log: %s", log);
    cr_assert_eq(count_lines_with(log, "vision"), 1, "log: %s", log);
    cr_assert_eq(count_lines_with(log, "2 multi-token-prediction tensors"), 1, "log: %s", log);
    cr_assert_eq(count_lines_with(log, "no tokenizer"), 1, "one warning for the missing tokenizer.json: %s", log);
    check_converted(dir, out, 0);
    df_gguf *g;
    cr_assert_eq(df_gguf_open(out, &g), DF_OK);
    cr_assert(!df_gguf_has(g, "tokenizer.ggml.model"), "tokenizer keys without a tokenizer.json");
    cr_assert(!df_gguf_has(g, "qwen35.nextn_predict_layers"));
    df_gguf_close(g);
    free(log);
    free(out);
    json_decref(cfg);
    free(l);
    rm_tree(root);
    free(root);
    free(dir);
}

/* A Qwen-style tokenizer: qwen35 split pattern, vocabulary padded to vocab_size, specials and
 * the chat template from tokenizer_config.json / chat_template.jinja. */
Test(convert, tokenizer_keys) {
    char *root = make_tmpdir();
    char *dir = model_dir(root, "tok");
    synth s = small_synth();
    s.vocab = 300; /* 261 tokens, padded to 300 */
    st_list *l = calloc(1, sizeof *l);
    synth_tensors(&s, l);
    json_t *cfg = synth_config(&s);
    write_model(dir, cfg, l, 3);

    /* GPT-2's byte alphabet: printable bytes stand for themselves, the rest for U+0100 on. */
    json_t *vocab = json_object();
    for (int b = 0, extra = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)extra++;
        char u[4];
        if (cp < 0x80) {
            u[0] = (char)cp;
            u[1] = 0;
        } else {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
            u[2] = 0;
        }
        json_object_set_new(vocab, u, json_integer(b));
    }
    json_object_set_new(vocab, "ab", json_integer(256));
    json_object_set_new(vocab, "abc", json_integer(257));
    json_t *tok = json_object();
    json_object_set_new(tok, "version", json_string("1.0"));
    json_t *added = json_array();
    const char *specials[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    for (int i = 0; i < 3; i++)
        json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", 258 + i, "content", specials[i],
                                               "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
    json_object_set_new(tok, "added_tokens", added);
    json_object_set_new(tok, "normalizer", json_pack("{s:s}", "type", "NFC"));
    json_object_set_new(tok, "pre_tokenizer",
                        json_pack("{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b,s:b}]}", "type", "Sequence",
                                  "pretokenizers", "type", "Split", "pattern", "Regex", DF_PRE_QWEN35_PATTERN,
                                  "behavior", "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0,
                                  "trim_offsets", 0, "use_regex", 0));
    json_object_set_new(tok, "decoder", json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                                                  "trim_offsets", 0, "use_regex", 0));
    json_object_set_new(tok, "model",
                        json_pack("{s:s,s:n,s:n,s:b,s:b,s:o,s:[s,s]}", "type", "BPE", "dropout", "unk_token",
                                  "fuse_unk", 0, "byte_fallback", 0, "vocab", vocab, "merges", "a b", "ab c"));
    char *p = path_join(dir, "tokenizer.json");
    write_json(p, tok);
    free(p);
    p = path_join(dir, "tokenizer_config.json");
    json_t *tc = json_pack("{s:s,s:s,s:b,s:n}", "eos_token", "<|im_end|>", "pad_token", "<|endoftext|>",
                           "add_bos_token", 0, "bos_token");
    write_json(p, tc);
    free(p);
    const char *tmpl = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
    p = path_join(dir, "chat_template.jinja");
    write_text(p, tmpl);
    free(p);

    char *out = path_join(root, "tok.gguf");
    cr_assert_eq(convert_logged(dir, out, 3, NULL), DF_OK, "%s", df_last_error());
    df_gguf *g;
    cr_assert_eq(df_gguf_open(out, &g), DF_OK);
    expect_str(g, "tokenizer.ggml.model", "gpt2");
    expect_str(g, "tokenizer.ggml.pre", "qwen35");
    expect_str(g, "tokenizer.chat_template", tmpl);
    uint32_t id;
    cr_assert_eq(df_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &id), DF_OK);
    cr_assert_eq(id, 260);
    cr_assert_eq(df_gguf_get_u32(g, "tokenizer.ggml.padding_token_id", &id), DF_OK);
    cr_assert_eq(id, 258);
    cr_assert(!df_gguf_has(g, "tokenizer.ggml.bos_token_id"));
    df_gguf_value toks, types;
    cr_assert_eq(df_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks), DF_OK);
    cr_assert_eq(toks.count, (uint64_t)s.vocab, "the vocabulary is padded to vocab_size");
    cr_assert_eq(df_gguf_get_arr(g, "tokenizer.ggml.token_type", &types), DF_OK);
    df_gguf_value e;
    cr_assert(df_gguf_arr_elem(&types, (uint64_t)s.vocab - 1, &e));
    int64_t kind;
    cr_assert(df_gguf_value_as_i64(&e, &kind));
    cr_assert_eq(kind, DF_TOKEN_UNUSED);
    cr_assert(df_gguf_arr_elem(&types, 260, &e) && df_gguf_value_as_i64(&e, &kind));
    cr_assert_eq(kind, DF_TOKEN_CONTROL);
    /* the tokenizer round-trips through the file */
    df_tokenizer *t;
    cr_assert_eq(df_tokenizer_from_gguf(g, &t), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_tokenizer_eos(t), 260);
    df_tokens ids = {0};
    cr_assert_eq(df_tokenizer_encode(t, NULL, "abc ab", 6, 0, &ids), DF_OK, "%s", df_last_error());
    cr_assert_eq(ids.n, 3, "abc | Ġ a b -> [abc, Ġ, ab]: got %zu ids", ids.n);
    cr_assert_eq(ids.ids[0], 257);
    cr_assert_eq(ids.ids[2], 256);
    df_tokens_free(&ids);
    df_tokenizer_free(t);
    df_gguf_close(g);
    free(out);
    json_decref(tok);
    json_decref(tc);
    json_decref(cfg);
    free(l);
    rm_tree(root);
    free(root);
    free(dir);
}

/* What the converter assumes when config.json leaves things out: head_dim = hidden / heads,
 * interval 4 without layer_types, rope_theta at the top level, factor 0.25, sections
 * [11, 11, 10, 0], no context length. */
Test(convert, config_defaults) {
    char *root = make_tmpdir();
    char *dir = model_dir(root, "defaults");
    synth s = small_synth();
    st_list *l = calloc(1, sizeof *l);
    synth_tensors(&s, l);
    json_t *cfg = synth_config(&s);
    json_object_del(cfg, "head_dim");
    json_object_del(cfg, "layer_types");
    json_object_del(cfg, "rope_parameters");
    json_object_del(cfg, "max_position_embeddings");
    json_object_set_new(cfg, "rope_theta", json_real(500000.0));
    write_model(dir, cfg, l, 21);
    char *out = path_join(root, "d.gguf");
    cr_assert_eq(convert_logged(dir, out, 2, NULL), DF_OK, "%s", df_last_error());
    df_gguf *g;
    cr_assert_eq(df_gguf_open(out, &g), DF_OK);
    expect_u32(g, "qwen35.attention.key_length", (uint32_t)(s.H / s.nh));
    expect_u32(g, "qwen35.full_attention_interval", 4);
    expect_u32(g, "qwen35.rope.dimension_count", (uint32_t)(s.H / s.nh / 4));
    expect_f32(g, "qwen35.rope.freq_base", 500000.0f);
    cr_assert(!df_gguf_has(g, "qwen35.context_length"));
    int32_t sec[4];
    size_t n;
    cr_assert_eq(df_gguf_get_arr_i32(g, "qwen35.rope.dimension_sections", sec, 4, &n), DF_OK);
    cr_assert(n == 4 && sec[0] == 11 && sec[1] == 11 && sec[2] == 10 && sec[3] == 0);
    cr_assert_not_null(df_gguf_find_tensor(g, "blk.3.attn_q.weight"));
    cr_assert_not_null(df_gguf_find_tensor(g, "blk.2.attn_qkv.weight"));
    df_gguf_close(g);
    free(out);
    json_decref(cfg);
    free(l);
    rm_tree(root);
    free(root);
    free(dir);
}

/* ---- refusals ------------------------------------------------------------------------------- */

typedef void (*edit_fn)(json_t *cfg, st_list *l);

/* Builds the small model, lets edit break it, converts, and checks the status, the words in
 * the message and that no output file was left behind. */
static void expect_refusal(edit_fn edit, df_status want, const char *const *words) {
    char *root = make_tmpdir();
    char *dir = model_dir(root, "broken");
    synth s = small_synth();
    st_list *l = calloc(1, sizeof *l);
    synth_tensors(&s, l);
    json_t *cfg = synth_config(&s);
    edit(cfg, l);
    write_model(dir, cfg, l, 17);
    char *out = path_join(root, "out.gguf");
    df_status st = convert_logged(dir, out, 3, NULL);
    cr_assert_eq(st, want, "status %s, expected %s: %s", df_status_name(st), df_status_name(want), df_last_error());
    for (int i = 0; words[i]; i++)
        cr_assert(strstr(df_last_error(), words[i]), "message \"%s\" lacks \"%s\"", df_last_error(), words[i]);
    cr_assert(!file_exists(out), "a failed conversion left %s", out);
    char *partial = path_join(root, "out.gguf.partial");
    cr_assert(!file_exists(partial));
    free(partial);
    free(out);
    json_decref(cfg);
    free(l);
    rm_tree(root);
    free(root);
    free(dir);
}
#define EXPECT_REFUSAL(edit, want, ...) expect_refusal(edit, want, (const char *const[]){__VA_ARGS__, NULL})

static void set_layer_types(json_t *cfg, const char *const *types, int n) {
    json_t *lt = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(lt, json_string(types[i]));
    json_object_set_new(cfg, "layer_types", lt);
}

static void edit_non_periodic(json_t *cfg, st_list *l) {
    (void)l;
    static const char *const t[4] = {"linear_attention", "full_attention", "linear_attention", "linear_attention"};
    set_layer_types(cfg, t, 4);
}

Test(convert, refuses_non_periodic_layer_types) {
    EXPECT_REFUSAL(edit_non_periodic, DF_ERR_UNSUPPORTED, "layer_types", "layer 3", "config.json");
}

static void edit_interval_disagrees(json_t *cfg, st_list *l) {
    (void)l;
    json_object_set_new(cfg, "full_attention_interval", json_integer(2));
}

Test(convert, refuses_interval_that_contradicts_layer_types) {
    EXPECT_REFUSAL(edit_interval_disagrees, DF_ERR_MISMATCH, "full_attention_interval", "layer 1");
}

static void edit_unknown_layer_type(json_t *cfg, st_list *l) {
    (void)l;
    static const char *const t[4] = {"linear_attention", "linear_attention", "sliding_attention", "full_attention"};
    set_layer_types(cfg, t, 4);
}

Test(convert, refuses_unknown_layer_type) {
    EXPECT_REFUSAL(edit_unknown_layer_type, DF_ERR_UNSUPPORTED, "sliding_attention", "layer_types");
}

static void edit_no_rope_theta(json_t *cfg, st_list *l) {
    (void)l;
    json_object_del(json_object_get(cfg, "rope_parameters"), "rope_theta");
    json_object_del(cfg, "rope_theta");
}

Test(convert, refuses_missing_rope_theta) {
    EXPECT_REFUSAL(edit_no_rope_theta, DF_ERR_NOT_FOUND, "rope_theta", "config.json");
}

static void edit_unknown_arch(json_t *cfg, st_list *l) {
    (void)l;
    json_object_set_new(cfg, "architectures", json_pack("[s]", "LlamaForCausalLM"));
}

Test(convert, refuses_unknown_architecture) {
    EXPECT_REFUSAL(edit_unknown_arch, DF_ERR_UNSUPPORTED, "LlamaForCausalLM");
}

static void edit_missing_field(json_t *cfg, st_list *l) {
    (void)l;
    json_object_del(cfg, "linear_num_value_heads");
}

Test(convert, refuses_missing_config_field) {
    EXPECT_REFUSAL(edit_missing_field, DF_ERR_NOT_FOUND, "linear_num_value_heads", "config.json");
}

static void edit_missing_tensor(json_t *cfg, st_list *l) {
    (void)cfg;
    st_remove(l, "model.layers.1.linear_attn.A_log");
}

Test(convert, refuses_missing_tensor) {
    EXPECT_REFUSAL(edit_missing_tensor, DF_ERR_NOT_FOUND, "model.layers.1.linear_attn.A_log", "blk.1.ssm_a");
}

static void edit_extra_tensor(json_t *cfg, st_list *l) {
    (void)cfg;
    st_add(l, DF_ST_F32, "model.layers.2.self_attn.q_proj.bias", 1, 64, 0, 0);
}

Test(convert, refuses_unexpected_tensor) {
    EXPECT_REFUSAL(edit_extra_tensor, DF_ERR_FORMAT, "model.layers.2.self_attn.q_proj.bias");
}

static void edit_wrong_shape(json_t *cfg, st_list *l) {
    (void)cfg;
    st_entry *e = st_lookup(l, "model.layers.0.linear_attn.in_proj_z.weight");
    cr_assert_not_null(e);
    e->shape[0] += 16;
}

Test(convert, refuses_wrong_shape) {
    EXPECT_REFUSAL(edit_wrong_shape, DF_ERR_MISMATCH, "model.layers.0.linear_attn.in_proj_z.weight", "[80, 64]");
}

static void edit_untied_without_lm_head(json_t *cfg, st_list *l) {
    (void)cfg;
    st_remove(l, "lm_head.weight");
}

Test(convert, refuses_untied_model_without_lm_head) {
    EXPECT_REFUSAL(edit_untied_without_lm_head, DF_ERR_NOT_FOUND, "lm_head.weight", "tie_word_embeddings");
}

Test(convert, qwen35_converter_refuses_other_architectures_directly) {
    char *root = make_tmpdir();
    char *dir = model_dir(root, "llama");
    synth s = small_synth();
    st_list *l = calloc(1, sizeof *l);
    synth_tensors(&s, l);
    json_t *cfg = synth_config(&s);
    json_object_set_new(cfg, "architectures", json_pack("[s]", "Qwen3NextForCausalLM"));
    write_model(dir, cfg, l, 1);
    char *out = path_join(root, "x.gguf");
    df_convert_opts o;
    df_convert_opts_init(&o);
    o.quiet = true;
    o.log = tmpfile();
    df_status st = df_convert_qwen35(dir, out, &o);
    fclose(o.log);
    cr_assert_eq(st, DF_ERR_UNSUPPORTED);
    cr_assert(strstr(df_last_error(), "Qwen3NextForCausalLM"), "%s", df_last_error());
    free(out);
    json_decref(cfg);
    free(l);
    rm_tree(root);
    free(root);
    free(dir);
}

/* ---- the CLI ------------------------------------------------------------------------------- */

static int run_cli(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s convert %s >/dev/null 2>&1", DFLASH_CLI, args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(convert, cli) {
    char *dir = make_tmpdir();
    char args[1024];
    snprintf(args, sizeof args, "%s/tiny_a %s/a.gguf --type q8_0 --threads 2", FIXTURES, dir);
    cr_assert_eq(run_cli(args), 0);
    char *out = path_join(dir, "a.gguf");
    df_gguf *g;
    cr_assert_eq(df_gguf_open(out, &g), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_gguf_find_tensor(g, "blk.0.ffn_up.weight")->type, DF_TYPE_Q8_0);
    df_gguf_close(g);
    snprintf(args, sizeof args, "%s/tiny_a %s/b.gguf --type q3_k", FIXTURES, dir);
    cr_assert_eq(run_cli(args), 2, "an unknown --type is a usage error");
    snprintf(args, sizeof args, "%s/tiny_a", FIXTURES);
    cr_assert_eq(run_cli(args), 2, "a missing output path is a usage error");
    snprintf(args, sizeof args, "%s/nonexistent %s/c.gguf", FIXTURES, dir);
    cr_assert_eq(run_cli(args), 1, "a missing model directory is a failure");
    free(out);
    rm_tree(dir);
    free(dir);
}

/* ---- the pieces on their own ---------------------------------------------------------------- */

Test(convert, type_names_and_file_types) {
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(df_convert_type_from_name(k_type_names[i]), i);
        cr_assert_str_eq(df_convert_type_name((df_convert_type)i), k_type_names[i]);
        cr_assert_eq(df_convert_file_type((df_convert_type)i), k_file_types[i]);
    }
    cr_assert_eq(df_convert_type_from_name("Q4_K_M"), DF_CONVERT_Q4_K_M);
    cr_assert_eq(df_convert_type_from_name("q4_k"), -1);
    cr_assert_eq(df_convert_type_from_name(""), -1);
}
