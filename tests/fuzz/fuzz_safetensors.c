/* libFuzzer target: the safetensors reader on arbitrary bytes.
 *
 * Each input is tried twice: as is, and with its 8-byte length prefix rewritten to cover
 * exactly the JSON value that follows it (plus space padding, as writers pad). Without the
 * second form almost every mutation of the header text breaks the length prefix and never
 * reaches the tensor checks. Every accepted file is walked: each tensor's first and last byte
 * is read (ASan flags any range outside the input), looked up by name, and the metadata read. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "format/safetensors.h"

static void try_file(const uint8_t *data, size_t size) {
    df_st_file *f;
    if (df_st_open_memory(data, size, "fuzz.safetensors", &f) != DF_OK) return;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const df_st_tensor *t = &f->tensors[i];
        if (t->nbytes) sink ^= t->data[0] ^ t->data[t->nbytes - 1];
        if (t->data < data + f->data_start || t->data + t->nbytes > data + size) __builtin_trap();
        if (df_st_find(f, t->name) != t) __builtin_trap();
        if (t->n_dims < 0 || t->n_dims > DF_ST_MAX_DIMS) __builtin_trap();
        if (t->n_elements * df_st_dtype_size(t->dtype) != t->nbytes) __builtin_trap();
        if (t->n_elements <= 4096) {
            float buf[4096];
            (void)df_st_to_f32(t, buf, 4096);
        }
    }
    for (size_t i = 0; i < f->n_meta; i++)
        if (df_st_meta_get(f, f->meta[i].key) == NULL) __builtin_trap();
    (void)sink;
    df_st_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try_file(data, size);
    if (size < 8) return 0;

    json_error_t err;
    json_t *v = json_loadb((const char *)data + 8, size - 8, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &err);
    if (!v) return 0;
    json_decref(v);
    size_t n = (size_t)err.position;
    while (8 + n < size && data[8 + n] == ' ') n++;
    uint8_t *fixed = malloc(size); /* exact size, so ASan sees overreads */
    if (!fixed) return 0;
    memcpy(fixed, data, size);
    for (int i = 0; i < 8; i++) fixed[i] = (uint8_t)((uint64_t)n >> (8 * i));
    try_file(fixed, size);
    free(fixed);
    return 0;
}
