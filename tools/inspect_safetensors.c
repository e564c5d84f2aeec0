/* The safetensors / Hugging Face directory view of dflash inspect. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "format/checkpoint.h"
#include "tools/inspect.h"

#define ARRAY_FULL 16

/* config.json's scalar fields (and short arrays), with text_config's nested beside them. */
static json_t *config_summary(const json_t *cfg) {
    json_t *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)cfg, key, v) {
        if (json_is_object(v)) {
            if (!strcmp(key, "text_config") || !strcmp(key, "rope_parameters"))
                json_object_set_new(out, key, config_summary(v));
            continue;
        }
        if (json_is_array(v) && json_array_size(v) > ARRAY_FULL) {
            json_object_set_new(out, key, json_pack("{s:I}", "array_count", (json_int_t)json_array_size(v)));
            continue;
        }
        json_object_set(out, key, v);
    }
    return out;
}

static void add_config(const char *dir, json_t *out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t err;
    json_t *cfg = json_load_file(path, 0, &err);
    if (!cfg) {
        struct stat st;
        if (stat(path, &st) == 0)
            json_object_set_new(out, "config_error",
                                json_sprintf("%s:%d:%d: %s", path, err.line, err.column, err.text));
        return;
    }
    if (json_is_object(cfg)) {
        json_object_set(out, "architecture", json_object_get(cfg, "architectures"));
        json_object_set_new(out, "config", config_summary(cfg));
    }
    json_decref(cfg);
}

int inspect_safetensors(const char *path, const inspect_opts *o, json_t *out) {
    df_ckpt *c;
    if (df_ckpt_open(path, &c) != DF_OK) {
        fprintf(stderr, "dflash inspect: %s\n", df_last_error());
        return 1;
    }
    struct stat st;
    bool is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    json_object_set_new(out, "path", json_string(path));
    json_object_set_new(out, "format", json_string(is_dir ? "huggingface directory" : "safetensors"));
    if (is_dir) add_config(path, out);
    uint64_t file_size = 0;
    for (size_t i = 0; i < c->n_shards; i++) file_size += c->shards[i]->size;
    json_object_set_new(out, "file_size", json_integer((json_int_t)file_size));
    json_object_set_new(out, "n_shards", json_integer((json_int_t)c->n_shards));

    uint64_t by_dtype[DF_ST_DTYPE_COUNT] = {0}, total = 0;
    json_t *list = o->tensors ? json_array() : NULL;
    for (size_t i = 0; i < df_ckpt_count(c); i++) {
        const df_st_tensor *t = df_ckpt_tensor(c, i);
        by_dtype[t->dtype] += t->nbytes;
        total += t->nbytes;
        if (!list) continue;
        json_t *shape = json_array();
        for (int d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_array_append_new(list, json_pack("{s:s, s:s, s:o, s:I}", "name", t->name, "type",
                                              t->dtype_name, "shape", shape, "bytes",
                                              (json_int_t)t->nbytes));
    }
    json_t *types = json_object();
    for (int d = 0; d < DF_ST_DTYPE_COUNT; d++)
        if (by_dtype[d]) json_object_set_new(types, df_st_dtype_name((df_st_dtype)d), json_integer((json_int_t)by_dtype[d]));
    json_object_set_new(out, "n_tensors", json_integer((json_int_t)df_ckpt_count(c)));
    json_object_set_new(out, "tensor_bytes", json_integer((json_int_t)total));
    json_object_set_new(out, "bytes_by_type", types);
    if (list) json_object_set_new(out, "tensors", list);
    df_ckpt_close(c);
    return 0;
}
