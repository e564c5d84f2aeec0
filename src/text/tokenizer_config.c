/* tokenizer_config.json: the facts a conversion to GGUF needs that tokenizer.json lacks
 * (which added tokens are BOS / EOS / padding, whether BOS / EOS are added, the chat
 * template). A token may be given as a string or as an AddedToken object {"content": ...}. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/mapfile.h"
#include "text/tokenizer_internal.h"

static df_status token_field(json_t *root, const char *key, const char *path, char **out) {
    *out = NULL;
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return DF_OK;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return df_fail(DF_ERR_FORMAT, "%s: %s is neither a string nor an object with \"content\"", path, key);
    *out = strdup(json_string_value(v));
    return *out ? DF_OK : df_fail(DF_ERR_NOMEM, "%s: out of memory", path);
}

static df_status flag_field(json_t *root, const char *key, const char *path, int *out) {
    json_t *v = json_object_get(root, key);
    *out = -1;
    if (!v || json_is_null(v)) return DF_OK;
    if (!json_is_boolean(v)) return df_fail(DF_ERR_FORMAT, "%s: %s is not a boolean", path, key);
    *out = json_is_true(v);
    return DF_OK;
}

df_status df_tokenizer_config_load(const char *path, df_tokenizer_config *out) {
    memset(out, 0, sizeof *out);
    out->add_bos_token = out->add_eos_token = -1;
    char *buf;
    size_t size;
    DF_TRY(df_read_file(path, (size_t)64 << 20, &buf, &size));
    json_error_t err;
    json_t *root = json_loadb(buf, size, 0, &err);
    free(buf);
    if (!root) return df_fail(DF_ERR_FORMAT, "%s: line %d, column %d: %s", path, err.line, err.column, err.text);
    df_status st = json_is_object(root) ? DF_OK : df_fail(DF_ERR_FORMAT, "%s: the top level is not an object", path);
    if (st == DF_OK) st = token_field(root, "bos_token", path, &out->bos_token);
    if (st == DF_OK) st = token_field(root, "eos_token", path, &out->eos_token);
    if (st == DF_OK) st = token_field(root, "pad_token", path, &out->pad_token);
    if (st == DF_OK) st = flag_field(root, "add_bos_token", path, &out->add_bos_token);
    if (st == DF_OK) st = flag_field(root, "add_eos_token", path, &out->add_eos_token);
    if (st == DF_OK) {
        json_t *tpl = json_object_get(root, "chat_template");
        /* A list of named templates ([{name, template}]) is a newer form: take "default". */
        if (json_is_array(tpl)) {
            size_t i;
            json_t *e, *found = NULL;
            json_array_foreach(tpl, i, e) {
                json_t *name = json_object_get(e, "name");
                if (json_is_string(name) && !strcmp(json_string_value(name), "default")) found = json_object_get(e, "template");
            }
            tpl = found;
        }
        if (tpl && !json_is_null(tpl)) {
            if (!json_is_string(tpl)) st = df_fail(DF_ERR_FORMAT, "%s: chat_template is not a string", path);
            else if (!(out->chat_template = strdup(json_string_value(tpl))))
                st = df_fail(DF_ERR_NOMEM, "%s: out of memory", path);
        }
    }
    json_decref(root);
    if (st != DF_OK) df_tokenizer_config_free(out);
    return st;
}

void df_tokenizer_config_free(df_tokenizer_config *c) {
    free(c->bos_token);
    free(c->eos_token);
    free(c->pad_token);
    free(c->chat_template);
    memset(c, 0, sizeof *c);
    c->add_bos_token = c->add_eos_token = -1;
}

static df_status resolve(const df_tokenizer *tok, const char *field, const char *text, int32_t *id) {
    if (!text) return DF_OK;
    int32_t found = df_tokenizer_find(tok, text, strlen(text));
    if (found < 0) return df_fail(DF_ERR_NOT_FOUND, "tokenizer_config: %s \"%s\" is not a token of the vocabulary", field, text);
    *id = found;
    return DF_OK;
}

df_status df_tok_gguf_opts_from_config(const df_tokenizer *tok, const df_tokenizer_config *c, df_tok_gguf_opts *o) {
    DF_TRY(resolve(tok, "bos_token", c->bos_token, &o->bos_id));
    DF_TRY(resolve(tok, "eos_token", c->eos_token, &o->eos_id));
    DF_TRY(resolve(tok, "pad_token", c->pad_token, &o->pad_id));
    if (c->add_bos_token >= 0) o->add_bos = c->add_bos_token;
    if (c->add_eos_token >= 0) o->add_eos = c->add_eos_token;
    if (c->chat_template) o->chat_template = c->chat_template;
    return DF_OK;
}
