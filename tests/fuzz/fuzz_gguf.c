/* libFuzzer target: the GGUF reader on arbitrary bytes. Every accepted file is walked the way a
 * consumer would: each KV through the typed getters, each array element (recursing into nested
 * arrays and strings), each tensor looked up by name with its first and last data byte read
 * (ASan flags any range outside the input). Broken invariants trap. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"

static volatile uint64_t sink;

static void walk_array(const df_gguf_value *arr, int depth) {
    if (depth > DF_GGUF_MAX_NESTING) __builtin_trap();
    df_gguf_iter it;
    df_gguf_value e;
    df_gguf_iter_init(&it, arr);
    uint64_t n = 0;
    const uint8_t *end = arr->data + arr->size;
    while (df_gguf_iter_next(&it, &e)) {
        if (e.data < arr->data || e.data + e.size > end) __builtin_trap();
        if (e.size) sink += e.data[0] + e.data[e.size - 1];
        if (e.type == DF_GGUF_ARRAY) walk_array(&e, depth + 1);
        df_gguf_value x;
        if (df_gguf_arr_elem(arr, n, &x) && (x.data != e.data || x.size != e.size)) __builtin_trap();
        n++;
    }
    if (n != arr->count) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    df_gguf *g;
    if (df_gguf_open_memory(data, size, "fuzz.gguf", &g) != DF_OK) return 0;
    if (df_gguf_data_offset(g) % df_gguf_alignment(g) != 0) __builtin_trap();
    for (uint64_t i = 0; i < df_gguf_n_kv(g); i++) {
        const df_gguf_kv *kv = df_gguf_kv_at(g, i);
        if (!kv || df_gguf_find_kv(g, kv->key) != kv || !kv->key[0]) __builtin_trap();
        const df_gguf_value *v = &kv->value;
        if (v->data < data || v->data + v->size > data + size) __builtin_trap();
        uint32_t u32; int32_t i32; uint64_t u64; int64_t i64; float f32; double f64; bool b;
        const char *s; size_t n;
        sink += df_gguf_get_u32(g, kv->key, &u32) + df_gguf_get_i32(g, kv->key, &i32) +
                df_gguf_get_u64(g, kv->key, &u64) + df_gguf_get_i64(g, kv->key, &i64) +
                df_gguf_get_f32(g, kv->key, &f32) + df_gguf_get_f64(g, kv->key, &f64) +
                df_gguf_get_bool(g, kv->key, &b) + df_gguf_get_str(g, kv->key, &s, &n);
        char *dup;
        if (df_gguf_get_strdup(g, kv->key, &dup) == DF_OK) {
            sink += strlen(dup);
            free(dup);
        }
        if (v->type == DF_GGUF_ARRAY) {
            walk_array(v, 1);
            int32_t buf[8];
            float fb[8];
            size_t got;
            sink += df_gguf_get_arr_i32(g, kv->key, buf, 8, &got) + df_gguf_get_arr_f32(g, kv->key, fb, 8, &got);
        } else if (v->size) {
            sink += v->data[0] + v->data[v->size - 1];
        }
    }
    for (uint64_t i = 0; i < df_gguf_n_tensors(g); i++) {
        const df_gguf_tensor *t = df_gguf_tensor_at(g, i);
        if (!t || df_gguf_find_tensor(g, t->name) != t) __builtin_trap();
        if (t->n_dims < 1 || t->n_dims > DF_GGUF_MAX_DIMS || t->size == 0) __builtin_trap();
        if (t->offset % df_gguf_alignment(g) != 0) __builtin_trap();
        const uint8_t *d = t->data;
        sink += d[0] + d[t->size - 1];
    }
    const char *arch = df_gguf_arch(g);
    if (arch) sink += strlen(arch);
    df_gguf_close(g);
    return 0;
}
