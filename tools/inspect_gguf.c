/* The GGUF view of dflash inspect. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "format/gguf.h"
#include "model/qwen35.h"
#include "quant/types.h"
#include "tools/inspect.h"

/* Arrays longer than this are summarised: type, count and the first few elements. */
#define ARRAY_SHOWN 8
#define ARRAY_FULL 16

static json_t *scalar_json(const df_gguf_value *v) {
    int64_t i;
    uint64_t u;
    double f;
    bool b;
    switch (v->type) {
    case DF_GGUF_BOOL:
        return df_gguf_value_as_bool(v, &b) ? json_boolean(b) : json_null();
    case DF_GGUF_F32:
    case DF_GGUF_F64:
        return df_gguf_value_as_f64(v, &f) ? json_real(f) : json_null();
    case DF_GGUF_STRING:
        return json_stringn_nocheck((const char *)v->data, (size_t)v->size);
    case DF_GGUF_U64:
        if (df_gguf_value_as_u64(v, &u) && u <= INT64_MAX) return json_integer((json_int_t)u);
        return json_real((double)(df_gguf_value_as_u64(v, &u) ? u : 0));
    default:
        return df_gguf_value_as_i64(v, &i) ? json_integer(i) : json_null();
    }
}

static json_t *value_json(const df_gguf_value *v, int depth) {
    if (v->type != DF_GGUF_ARRAY) return scalar_json(v);
    json_t *items = json_array();
    df_gguf_iter it;
    df_gguf_value e;
    df_gguf_iter_init(&it, v);
    uint64_t shown = v->count > ARRAY_FULL ? ARRAY_SHOWN : v->count;
    for (uint64_t k = 0; k < shown && df_gguf_iter_next(&it, &e); k++)
        json_array_append_new(items, depth < 4 ? value_json(&e, depth + 1) : json_null());
    if (v->count <= ARRAY_FULL) return items;
    return json_pack("{s:s, s:I, s:o}", "array_of", df_gguf_type_name(v->elem_type), "count",
                     (json_int_t)v->count, "first", items);
}

static json_t *qwen35_hparams_json(const df_gguf *g) {
    df_qwen35_hparams hp;
    if (df_qwen35_read_hparams(g, &hp) != DF_OK)
        return json_pack("{s:s}", "error", df_last_error());
    char pattern[DF_QWEN35_MAX_LAYERS + 1];
    for (int64_t l = 0; l < hp.n_layer; l++) pattern[l] = hp.kind[l] == DF_LAYER_GDN ? 'D' : 'A';
    pattern[hp.n_layer] = '\0';
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:s}",
                     "n_vocab", (json_int_t)hp.n_vocab, "n_embd", (json_int_t)hp.n_embd,
                     "n_layer", (json_int_t)hp.n_layer, "n_ff", (json_int_t)hp.n_ff,
                     "n_head", (json_int_t)hp.n_head, "n_head_kv", (json_int_t)hp.n_head_kv,
                     "head_dim", (json_int_t)hp.head_dim, "rot_dim", (json_int_t)hp.rot_dim,
                     "rope_theta", (double)hp.rope_theta, "rms_eps", (double)hp.rms_eps,
                     "gdn_key_heads", (json_int_t)hp.n_k_head, "gdn_key_dim", (json_int_t)hp.d_k,
                     "gdn_value_heads", (json_int_t)hp.n_v_head, "gdn_value_dim", (json_int_t)hp.d_v,
                     "conv_kernel", (json_int_t)hp.conv_kernel, "nextn_layers", (json_int_t)hp.n_nextn,
                     "layers (D = Gated DeltaNet, A = attention)", pattern);
}

int inspect_gguf(const char *path, const inspect_opts *o, json_t *out) {
    df_gguf *g;
    if (df_gguf_open(path, &g) != DF_OK) {
        fprintf(stderr, "dflash inspect: %s\n", df_last_error());
        return 1;
    }
    const char *arch = df_gguf_arch(g);
    json_object_set_new(out, "path", json_string(path));
    json_object_set_new(out, "format", json_string("gguf"));
    json_object_set_new(out, "version", json_integer(df_gguf_version(g)));
    json_object_set_new(out, "file_size", json_integer((json_int_t)df_gguf_file_size(g)));
    json_object_set_new(out, "alignment", json_integer((json_int_t)df_gguf_alignment(g)));
    json_object_set_new(out, "architecture", arch ? json_string(arch) : json_null());
    if (arch && !strcmp(arch, "qwen35")) json_object_set_new(out, "hparams", qwen35_hparams_json(g));

    json_t *meta = json_array();
    for (uint64_t i = 0; i < df_gguf_n_kv(g); i++) {
        const df_gguf_kv *kv = df_gguf_kv_at(g, i);
        const char *type = kv->value.type == DF_GGUF_ARRAY ? "array" : df_gguf_type_name(kv->value.type);
        json_array_append_new(meta, json_pack("{s:s, s:s, s:o}", "key", kv->key, "type", type,
                                              "value", value_json(&kv->value, 0)));
    }
    json_object_set_new(out, "metadata", meta);

    uint64_t by_type[DF_TYPE_COUNT] = {0}, total = 0;
    json_t *list = o->tensors ? json_array() : NULL;
    for (uint64_t i = 0; i < df_gguf_n_tensors(g); i++) {
        const df_gguf_tensor *t = df_gguf_tensor_at(g, i);
        if (t->type < DF_TYPE_COUNT) by_type[t->type] += t->size;
        total += t->size;
        if (!list) continue;
        json_t *shape = json_array();
        for (int d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->ne[d]));
        json_array_append_new(list, json_pack("{s:s, s:s, s:o, s:I, s:I}", "name", t->name, "type",
                                              df_type_name(t->type), "shape", shape, "bytes",
                                              (json_int_t)t->size, "offset", (json_int_t)t->offset));
    }
    json_t *types = json_object();
    for (int t = 0; t < DF_TYPE_COUNT; t++)
        if (by_type[t]) json_object_set_new(types, df_type_name((uint32_t)t), json_integer((json_int_t)by_type[t]));
    json_object_set_new(out, "n_tensors", json_integer((json_int_t)df_gguf_n_tensors(g)));
    json_object_set_new(out, "tensor_bytes", json_integer((json_int_t)total));
    json_object_set_new(out, "bytes_by_type", types);
    if (list) json_object_set_new(out, "tensors", list);
    df_gguf_close(g);
    return 0;
}
