/* Shared converter pieces: the merged config.json view, paths and notices, the plan container,
 * and the tokenizer keys. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/mapfile.h"
#include "convert/convert_internal.h"
#include "text/tokenizer.h"

/* ---- helpers -------------------------------------------------------------------------------- */

char *df_conv_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (a > 0 && dir[a - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

bool df_conv_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *df_conv_model_name(const char *dir) {
    size_t end = strlen(dir);
    while (end > 1 && dir[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && dir[start - 1] != '/') start--;
    size_t len = end - start;
    char *s = malloc(len + 1);
    if (!s) return NULL;
    memcpy(s, dir + start, len);
    s[len] = 0;
    return s;
}

void df_conv_note(FILE *log, const char *fmt, ...) {
    FILE *f = log ? log : stderr;
    va_list ap;
    va_start(ap, fmt);
    fputs("dflash convert: ", f);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    va_end(ap);
    fflush(f);
}

/* ---- config.json ---------------------------------------------------------------------------- */

df_status df_conv_cfg_open(const char *hf_dir, df_conv_cfg *c) {
    memset(c, 0, sizeof *c);
    c->dir = strdup(hf_dir);
    c->path = df_conv_join(hf_dir, "config.json");
    if (!c->dir || !c->path) {
        df_conv_cfg_close(c);
        return df_fail(DF_ERR_NOMEM, "convert: out of memory");
    }
    if (!df_conv_is_file(c->path)) {
        df_status st = df_fail(DF_ERR_NOT_FOUND, "%s: no config.json: not a Hugging Face model directory", hf_dir);
        df_conv_cfg_close(c);
        return st;
    }
    df_status st = df_config_open(c->path, &c->cfg);
    if (st != DF_OK) {
        df_conv_cfg_close(c);
        return st;
    }
    c->has_text = df_config_has(c->cfg, "text_config");
    return DF_OK;
}

void df_conv_cfg_close(df_conv_cfg *c) {
    df_config_close(c->cfg);
    free(c->dir);
    free(c->path);
    memset(c, 0, sizeof *c);
}

const char *df_conv_cfg_path(const df_conv_cfg *c, const char *key, char *buf, size_t cap) {
    if (c->has_text) {
        const char *dot = strchr(key, '.');
        size_t seg = dot ? (size_t)(dot - key) : strlen(key);
        char probe[160];
        snprintf(probe, sizeof probe, "text_config.%.*s", (int)seg, key);
        if (df_config_has(c->cfg, probe)) {
            snprintf(buf, cap, "text_config.%s", key);
            return buf;
        }
    }
    snprintf(buf, cap, "%s", key);
    return buf;
}

bool df_conv_has(const df_conv_cfg *c, const char *key) {
    char buf[192];
    return df_config_has(c->cfg, df_conv_cfg_path(c, key, buf, sizeof buf));
}

df_status df_conv_int(const df_conv_cfg *c, const char *key, int64_t *out) {
    char buf[192];
    return df_config_get_int(c->cfg, df_conv_cfg_path(c, key, buf, sizeof buf), out);
}

df_status df_conv_int_or(const df_conv_cfg *c, const char *key, int64_t def, int64_t *out) {
    char buf[192];
    return df_config_get_int_or(c->cfg, df_conv_cfg_path(c, key, buf, sizeof buf), def, out);
}

df_status df_conv_float(const df_conv_cfg *c, const char *key, double *out) {
    char buf[192];
    return df_config_get_float(c->cfg, df_conv_cfg_path(c, key, buf, sizeof buf), out);
}

df_status df_conv_float_or(const df_conv_cfg *c, const char *key, double def, double *out) {
    char buf[192];
    return df_config_get_float_or(c->cfg, df_conv_cfg_path(c, key, buf, sizeof buf), def, out);
}

df_status df_conv_int_array(const df_conv_cfg *c, const char *key, int64_t **out, size_t *n) {
    char buf[192];
    return df_config_get_int_array(c->cfg, df_conv_cfg_path(c, key, buf, sizeof buf), out, n);
}

df_status df_conv_str_array(const df_conv_cfg *c, const char *key, const char ***out, size_t *n) {
    char buf[192];
    return df_config_get_str_array(c->cfg, df_conv_cfg_path(c, key, buf, sizeof buf), out, n);
}

df_status df_conv_architectures(const df_conv_cfg *c, const char ***out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!df_config_has(c->cfg, "architectures"))
        return df_fail(DF_ERR_NOT_FOUND, "%s: architectures: missing (it names the model class, e.g. Qwen3_5ForCausalLM)",
                       c->path);
    DF_TRY(df_config_get_str_array(c->cfg, "architectures", out, n));
    if (*n == 0) {
        free(*out);
        *out = NULL;
        return df_fail(DF_ERR_FORMAT, "%s: architectures is an empty list", c->path);
    }
    return DF_OK;
}

/* ---- the plan ------------------------------------------------------------------------------- */

df_status df_conv_plan_add(df_conv_plan *p, const df_conv_tensor *t) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        df_conv_tensor *nt = realloc(p->t, cap * sizeof *nt);
        if (!nt) return df_fail(DF_ERR_NOMEM, "convert: out of memory for the tensor plan");
        p->t = nt;
        p->cap = cap;
    }
    p->t[p->n++] = *t;
    return DF_OK;
}

void df_conv_plan_free(df_conv_plan *p) {
    free(p->t);
    memset(p, 0, sizeof *p);
}

/* ---- tokenizer ------------------------------------------------------------------------------ */

/* gguf-py's SpecialVocab takes an id from config.json ("<kind>_token_id", top level, then
 * text_config) when tokenizer_config.json did not name that token; only plain integers inside
 * the vocabulary count (Qwen configs sometimes list several eos ids: ignored, as there). */
static void id_from_config(const df_conv_cfg *c, const char *kind, int64_t n_vocab, int32_t *id) {
    if (*id >= 0) return;
    char key[64];
    const char *paths[2];
    char text_key[80];
    snprintf(key, sizeof key, "%s_token_id", kind);
    snprintf(text_key, sizeof text_key, "text_config.%s_token_id", kind);
    paths[0] = key;
    paths[1] = text_key;
    for (int i = 0; i < 2; i++) {
        if (!df_config_has(c->cfg, paths[i])) continue;
        int64_t v;
        if (df_config_get_int(c->cfg, paths[i], &v) != DF_OK) {
            df_clear_error();
            return;
        }
        if (v >= 0 && v < n_vocab) *id = (int32_t)v;
        return;
    }
}

df_status df_conv_add_tokenizer(const df_conv_cfg *c, int64_t n_vocab, df_gguf_writer *w, FILE *log) {
    df_status st = DF_OK;
    df_tokenizer *tok = NULL;
    df_tokenizer_config tc;
    memset(&tc, 0, sizeof tc);
    tc.add_bos_token = tc.add_eos_token = -1;
    char *template_text = NULL;
    char *json_path = df_conv_join(c->dir, "tokenizer.json");
    char *cfg_path = df_conv_join(c->dir, "tokenizer_config.json");
    char *jinja_path = df_conv_join(c->dir, "chat_template.jinja");
    if (!json_path || !cfg_path || !jinja_path) {
        st = df_fail(DF_ERR_NOMEM, "convert: out of memory");
        goto done;
    }
    if (!df_conv_is_file(json_path)) {
        df_conv_note(log, "warning: %s has no tokenizer.json; the GGUF gets no tokenizer", c->dir);
        goto done;
    }
    /* A tokenizer we cannot represent (another pre-tokenizer, another model type) costs the
     * file its tokenizer, not its weights: say so on one line and go on. */
    st = df_tokenizer_load_json(json_path, &tok);
    if (st == DF_ERR_UNSUPPORTED) {
        df_conv_note(log, "warning: %s; the GGUF gets no tokenizer", df_last_error());
        st = DF_OK;
        goto done;
    }
    if (st != DF_OK) goto done;
    if (!df_tokenizer_pre_name(tok)) {
        df_conv_note(log, "warning: %s: the split pattern is neither qwen2's nor qwen35's, so no tokenizer.ggml.pre "
                          "names it; the GGUF gets no tokenizer", json_path);
        goto done;
    }

    df_tok_gguf_opts o;
    df_tok_gguf_opts_init(&o);
    o.n_vocab = n_vocab;
    if (df_conv_is_file(cfg_path)) {
        st = df_tokenizer_config_load(cfg_path, &tc);
        if (st == DF_OK) st = df_tok_gguf_opts_from_config(tok, &tc, &o);
        if (st != DF_OK) {
            df_fail_context(st, "%s", cfg_path);
            goto done;
        }
    }
    if (!o.chat_template && df_conv_is_file(jinja_path)) {
        size_t size;
        st = df_read_file(jinja_path, (size_t)16 << 20, &template_text, &size);
        if (st != DF_OK) goto done;
        o.chat_template = template_text;
    }
    id_from_config(c, "bos", n_vocab, &o.bos_id);
    id_from_config(c, "eos", n_vocab, &o.eos_id);
    id_from_config(c, "pad", n_vocab, &o.pad_id);
    st = df_tokenizer_write_gguf(tok, w, &o);
    if (st != DF_OK) df_fail_context(st, "%s", json_path);
done:
    df_tokenizer_free(tok);
    df_tokenizer_config_free(&tc);
    free(template_text);
    free(json_path);
    free(cfg_path);
    free(jinja_path);
    return st;
}
