/* GGUF writer. Metadata is encoded into a byte buffer as it is added (its final form: the
 * file's KV section), tensor declarations into a table; write_header lays out the offsets and
 * writes both; tensor data then streams through to the file. */
#include "format/gguf_write.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "quant/types.h"

#define WRITER_MAX_KEY_LEN 65536  /* the reader's limit */

typedef struct wtensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[DF_GGUF_MAX_DIMS];
    uint64_t size, offset;
} wtensor;

enum writer_state { DEFINING, WRITING_DATA, FINISHED };

struct df_gguf_writer {
    char *path, *tmp_path;
    FILE *f;
    enum writer_state state;
    df_status err;          /* sticky: the first failure */
    char err_msg[1024];

    uint64_t alignment;

    uint8_t *meta;          /* encoded KV pairs */
    size_t meta_len, meta_cap;
    uint64_t n_kv;
    char **keys;            /* for duplicate checks; n_kv of them (+1 while an array of arrays is open) */
    size_t keys_cap;

    wtensor *tensors;
    uint64_t n_tensors;
    size_t tensors_cap;
    uint64_t *tensor_slots; /* open-addressing set of tensor index + 1, by name */
    uint64_t tensor_slots_cap;

    /* Arrays of arrays being written: remaining elements at each open level. */
    uint64_t frames[DF_GGUF_MAX_NESTING];
    int depth;

    /* Data phase. */
    uint64_t cur;           /* tensor due next */
    uint64_t cur_written;   /* bytes of it written so far */
    uint64_t file_pos;
};

/* ---- errors ---------------------------------------------------------------------------------- */

static df_status wfail(df_gguf_writer *w, df_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static df_status wfail(df_gguf_writer *w, df_status st, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    df_fail(st, "%s: %s", w->path, msg);
    if (w->err == DF_OK) {
        w->err = st;
        snprintf(w->err_msg, sizeof w->err_msg, "%s", df_last_error());
    }
    return st;
}

/* Returns the sticky failure (restating its message) or DF_OK. */
static df_status sticky(df_gguf_writer *w) {
    if (w->err == DF_OK) return DF_OK;
    return df_fail(w->err, "%s", w->err_msg);
}

/* ---- the metadata buffer ------------------------------------------------------------------------ */

static df_status meta_reserve(df_gguf_writer *w, size_t extra) {
    size_t need;
    if (!df_add_size(w->meta_len, extra, &need)) return wfail(w, DF_ERR_NOMEM, "metadata size overflows");
    if (need <= w->meta_cap) return DF_OK;
    size_t cap = w->meta_cap ? w->meta_cap : 4096;
    while (cap < need) {
        if (!df_mul_size(cap, 2, &cap)) return wfail(w, DF_ERR_NOMEM, "metadata size overflows");
    }
    uint8_t *p = realloc(w->meta, cap);
    if (!p) return wfail(w, DF_ERR_NOMEM, "out of memory for %zu bytes of metadata", cap);
    w->meta = p;
    w->meta_cap = cap;
    return DF_OK;
}

/* Callers reserve first; these then cannot fail. */
static void put_bytes(df_gguf_writer *w, const void *p, size_t n) {
    if (n) memcpy(w->meta + w->meta_len, p, n);
    w->meta_len += n;
}
static void put_le(df_gguf_writer *w, uint64_t v, int width) {
    for (int i = 0; i < width; i++) w->meta[w->meta_len++] = (uint8_t)(v >> (8 * i));
}

static df_status put_str(df_gguf_writer *w, const char *s, size_t len) {
    DF_TRY(meta_reserve(w, 8 + len));
    put_le(w, len, 8);
    put_bytes(w, s, len);
    return DF_OK;
}

/* Encodes count scalars of a fixed-size type from their C representation. */
static df_status put_scalars(df_gguf_writer *w, df_gguf_type t, const void *elems, size_t count) {
    size_t width = df_gguf_type_size(t), bytes;
    if (!df_mul_size(width, count, &bytes)) return wfail(w, DF_ERR_NOMEM, "array size overflows");
    DF_TRY(meta_reserve(w, bytes));
    const uint8_t *src = elems;
    for (size_t i = 0; i < count; i++) {
        uint64_t v = 0;
        switch (t) {
        case DF_GGUF_BOOL: v = ((const bool *)elems)[i] ? 1 : 0; break;
        case DF_GGUF_U8: case DF_GGUF_I8: v = src[i]; break;
        case DF_GGUF_U16: case DF_GGUF_I16: { uint16_t x; memcpy(&x, src + 2 * i, 2); v = x; break; }
        case DF_GGUF_U32: case DF_GGUF_I32: case DF_GGUF_F32: { uint32_t x; memcpy(&x, src + 4 * i, 4); v = x; break; }
        default: memcpy(&v, src + 8 * i, 8); break;  /* u64, i64, f64 */
        }
        put_le(w, v, (int)width);
    }
    return DF_OK;
}

static df_status put_str_elems(df_gguf_writer *w, const char *const *strs, const size_t *lens, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (!strs[i] && !(lens && lens[i] == 0))
            return wfail(w, DF_ERR_INVALID, "string %zu of an array is NULL", i);
        DF_TRY(put_str(w, strs[i] ? strs[i] : "", lens ? lens[i] : strlen(strs[i])));
    }
    return DF_OK;
}

/* ---- create / free ----------------------------------------------------------------------------- */

df_status df_gguf_writer_create(const char *path, df_gguf_writer **out) {
    *out = NULL;
    if (!path || !*path) return df_fail(DF_ERR_INVALID, "df_gguf_writer_create: empty path");
    df_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return df_fail(DF_ERR_NOMEM, "%s: out of memory", path);
    w->alignment = DF_GGUF_DEFAULT_ALIGNMENT;
    w->path = strdup(path);
    size_t n = strlen(path);
    w->tmp_path = malloc(n + sizeof ".partial");
    if (!w->path || !w->tmp_path) {
        df_gguf_writer_free(w);
        return df_fail(DF_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(w->tmp_path, path, n);
    memcpy(w->tmp_path + n, ".partial", sizeof ".partial");
    w->f = fopen(w->tmp_path, "wb");
    if (!w->f) {
        df_status st = df_fail(DF_ERR_IO, "%s: cannot create: %s", w->tmp_path, strerror(errno));
        df_gguf_writer_free(w);
        return st;
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    *out = w;
    return DF_OK;
}

void df_gguf_writer_free(df_gguf_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        unlink(w->tmp_path);  /* unfinished: leave no partial file behind */
    }
    for (uint64_t i = 0; i < w->n_kv + (w->depth > 0); i++) free(w->keys[i]);
    free(w->keys);
    for (uint64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->tensor_slots);
    free(w->meta);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

/* ---- KV pairs ------------------------------------------------------------------------------------ */

/* Checks the writer can take a new KV under key, records the key, and writes it. */
static df_status begin_kv(df_gguf_writer *w, const char *key) {
    DF_TRY(sticky(w));
    if (w->state != DEFINING)
        return wfail(w, DF_ERR_INVALID, "key '%s' added after the header was written", key ? key : "(null)");
    if (w->depth > 0)
        return wfail(w, DF_ERR_INVALID, "key '%s' added while the array of arrays '%s' is still open",
                     key ? key : "(null)", w->keys[w->n_kv]);
    if (!key || !*key) return wfail(w, DF_ERR_INVALID, "a key is empty");
    size_t len = strlen(key);
    if (len > WRITER_MAX_KEY_LEN) return wfail(w, DF_ERR_INVALID, "key of %zu bytes is too long", len);
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0) return wfail(w, DF_ERR_INVALID, "duplicate key '%s'", key);
    if (w->n_kv + 1 > w->keys_cap) {
        size_t cap = w->keys_cap ? 2 * w->keys_cap : 32;
        char **k = realloc(w->keys, cap * sizeof *k);
        if (!k) return wfail(w, DF_ERR_NOMEM, "out of memory");
        w->keys = k;
        w->keys_cap = cap;
    }
    /* Stored at keys[n_kv] but counted only when the KV is complete. */
    if (!(w->keys[w->n_kv] = strdup(key))) return wfail(w, DF_ERR_NOMEM, "out of memory");
    df_status st = put_str(w, key, len);
    if (st != DF_OK) {
        free(w->keys[w->n_kv]);
        w->keys[w->n_kv] = NULL;
    }
    return st;
}

/* Rolls back a KV whose value failed to encode, so that the buffer stays well-formed. */
static df_status abort_kv(df_gguf_writer *w, size_t meta_mark, df_status st) {
    w->meta_len = meta_mark;
    free(w->keys[w->n_kv]);
    w->keys[w->n_kv] = NULL;
    return st;
}

static df_status add_scalar(df_gguf_writer *w, const char *key, df_gguf_type t, const void *v) {
    if (key && strcmp(key, "general.alignment") == 0 && t != DF_GGUF_U32)
        return wfail(w, DF_ERR_INVALID, "key 'general.alignment' must be a u32, not %s", df_gguf_type_name(t));
    size_t mark = w->meta_len;
    DF_TRY(begin_kv(w, key));
    df_status st = meta_reserve(w, 4);
    if (st == DF_OK) {
        put_le(w, t, 4);
        st = put_scalars(w, t, v, 1);
    }
    if (st != DF_OK) return abort_kv(w, mark, st);
    w->n_kv++;
    return DF_OK;
}

df_status df_gguf_writer_add_u8(df_gguf_writer *w, const char *key, uint8_t v) { return add_scalar(w, key, DF_GGUF_U8, &v); }
df_status df_gguf_writer_add_i8(df_gguf_writer *w, const char *key, int8_t v) { return add_scalar(w, key, DF_GGUF_I8, &v); }
df_status df_gguf_writer_add_u16(df_gguf_writer *w, const char *key, uint16_t v) { return add_scalar(w, key, DF_GGUF_U16, &v); }
df_status df_gguf_writer_add_i16(df_gguf_writer *w, const char *key, int16_t v) { return add_scalar(w, key, DF_GGUF_I16, &v); }
df_status df_gguf_writer_add_i32(df_gguf_writer *w, const char *key, int32_t v) { return add_scalar(w, key, DF_GGUF_I32, &v); }
df_status df_gguf_writer_add_f32(df_gguf_writer *w, const char *key, float v) { return add_scalar(w, key, DF_GGUF_F32, &v); }
df_status df_gguf_writer_add_bool(df_gguf_writer *w, const char *key, bool v) { return add_scalar(w, key, DF_GGUF_BOOL, &v); }
df_status df_gguf_writer_add_u64(df_gguf_writer *w, const char *key, uint64_t v) { return add_scalar(w, key, DF_GGUF_U64, &v); }
df_status df_gguf_writer_add_i64(df_gguf_writer *w, const char *key, int64_t v) { return add_scalar(w, key, DF_GGUF_I64, &v); }
df_status df_gguf_writer_add_f64(df_gguf_writer *w, const char *key, double v) { return add_scalar(w, key, DF_GGUF_F64, &v); }

df_status df_gguf_writer_add_u32(df_gguf_writer *w, const char *key, uint32_t v) {
    bool is_alignment = key && strcmp(key, "general.alignment") == 0;
    if (is_alignment && (v == 0 || (v & (v - 1)) != 0)) {
        DF_TRY(sticky(w));
        return wfail(w, DF_ERR_INVALID, "general.alignment %" PRIu32 " is not a power of two", v);
    }
    DF_TRY(add_scalar(w, key, DF_GGUF_U32, &v));
    if (is_alignment) w->alignment = v;
    return DF_OK;
}

df_status df_gguf_writer_add_strn(df_gguf_writer *w, const char *key, const char *s, size_t len) {
    if (key && strcmp(key, "general.alignment") == 0)
        return wfail(w, DF_ERR_INVALID, "key 'general.alignment' must be a u32, not string");
    if (!s && len) return wfail(w, DF_ERR_INVALID, "key '%s': NULL string", key ? key : "(null)");
    size_t mark = w->meta_len;
    DF_TRY(begin_kv(w, key));
    df_status st = meta_reserve(w, 4);
    if (st == DF_OK) {
        put_le(w, DF_GGUF_STRING, 4);
        st = put_str(w, s ? s : "", len);
    }
    if (st != DF_OK) return abort_kv(w, mark, st);
    w->n_kv++;
    return DF_OK;
}

df_status df_gguf_writer_add_str(df_gguf_writer *w, const char *key, const char *s) {
    if (!s) return wfail(w, DF_ERR_INVALID, "key '%s': NULL string", key ? key : "(null)");
    return df_gguf_writer_add_strn(w, key, s, strlen(s));
}

static bool fixed_type(df_gguf_type t) { return df_gguf_type_size(t) != 0; }

/* An array header (element type + count) inside the KV section. */
static df_status put_arr_header(df_gguf_writer *w, df_gguf_type et, uint64_t count) {
    DF_TRY(meta_reserve(w, 12));
    put_le(w, et, 4);
    put_le(w, count, 8);
    return DF_OK;
}

df_status df_gguf_writer_add_arr(df_gguf_writer *w, const char *key, df_gguf_type elem_type, const void *elems,
                                 size_t count) {
    if (key && strcmp(key, "general.alignment") == 0)
        return wfail(w, DF_ERR_INVALID, "key 'general.alignment' must be a u32, not an array");
    if (!fixed_type(elem_type))
        return wfail(w, DF_ERR_INVALID, "key '%s': add_arr takes fixed-size scalars, not %s", key ? key : "(null)",
                     df_gguf_type_name(elem_type));
    if (!elems && count) return wfail(w, DF_ERR_INVALID, "key '%s': NULL elements", key ? key : "(null)");
    size_t mark = w->meta_len;
    DF_TRY(begin_kv(w, key));
    df_status st = meta_reserve(w, 4);
    if (st == DF_OK) {
        put_le(w, DF_GGUF_ARRAY, 4);
        st = put_arr_header(w, elem_type, count);
    }
    if (st == DF_OK) st = put_scalars(w, elem_type, elems, count);
    if (st != DF_OK) return abort_kv(w, mark, st);
    w->n_kv++;
    return DF_OK;
}

df_status df_gguf_writer_add_arr_str(df_gguf_writer *w, const char *key, const char *const *strs,
                                     const size_t *lens, size_t count) {
    if (key && strcmp(key, "general.alignment") == 0)
        return wfail(w, DF_ERR_INVALID, "key 'general.alignment' must be a u32, not an array");
    if (!strs && count) return wfail(w, DF_ERR_INVALID, "key '%s': NULL strings", key ? key : "(null)");
    size_t mark = w->meta_len;
    DF_TRY(begin_kv(w, key));
    df_status st = meta_reserve(w, 4);
    if (st == DF_OK) {
        put_le(w, DF_GGUF_ARRAY, 4);
        st = put_arr_header(w, DF_GGUF_STRING, count);
    }
    if (st == DF_OK) st = put_str_elems(w, strs, lens, count);
    if (st != DF_OK) return abort_kv(w, mark, st);
    w->n_kv++;
    return DF_OK;
}

/* ---- arrays of arrays ------------------------------------------------------------------------------ */

df_status df_gguf_writer_begin_arr_of_arr(df_gguf_writer *w, const char *key, size_t count) {
    if (key && strcmp(key, "general.alignment") == 0)
        return wfail(w, DF_ERR_INVALID, "key 'general.alignment' must be a u32, not an array");
    size_t mark = w->meta_len;
    DF_TRY(begin_kv(w, key));
    df_status st = meta_reserve(w, 4);
    if (st == DF_OK) {
        put_le(w, DF_GGUF_ARRAY, 4);
        st = put_arr_header(w, DF_GGUF_ARRAY, count);
    }
    if (st != DF_OK) return abort_kv(w, mark, st);
    w->frames[0] = count;
    w->depth = 1;
    return DF_OK;
}

/* Claims one element slot of the innermost open array; the new element will be an array at
 * nesting level `depth`, which the reader allows only below DF_GGUF_MAX_NESTING. */
static df_status claim_elem(df_gguf_writer *w, const char *what) {
    DF_TRY(sticky(w));
    if (w->depth == 0) return wfail(w, DF_ERR_INVALID, "%s without an open array of arrays", what);
    const char *key = w->keys[w->n_kv];
    if (w->frames[w->depth - 1] == 0)
        return wfail(w, DF_ERR_INVALID, "key '%s': %s: more elements than the count declared", key, what);
    if (w->depth >= DF_GGUF_MAX_NESTING)
        return wfail(w, DF_ERR_INVALID, "key '%s': %s: arrays nested deeper than %d levels", key, what,
                     DF_GGUF_MAX_NESTING);
    w->frames[w->depth - 1]--;
    return DF_OK;
}

df_status df_gguf_writer_elem_arr(df_gguf_writer *w, df_gguf_type elem_type, const void *elems, size_t count) {
    DF_TRY(claim_elem(w, "elem_arr"));
    if (!fixed_type(elem_type))
        return wfail(w, DF_ERR_INVALID, "key '%s': elem_arr takes fixed-size scalars, not %s", w->keys[w->n_kv],
                     df_gguf_type_name(elem_type));
    if (!elems && count) return wfail(w, DF_ERR_INVALID, "key '%s': NULL elements", w->keys[w->n_kv]);
    DF_TRY(put_arr_header(w, elem_type, count));
    return put_scalars(w, elem_type, elems, count);
}

df_status df_gguf_writer_elem_arr_str(df_gguf_writer *w, const char *const *strs, const size_t *lens, size_t count) {
    DF_TRY(claim_elem(w, "elem_arr_str"));
    if (!strs && count) return wfail(w, DF_ERR_INVALID, "key '%s': NULL strings", w->keys[w->n_kv]);
    DF_TRY(put_arr_header(w, DF_GGUF_STRING, count));
    return put_str_elems(w, strs, lens, count);
}

df_status df_gguf_writer_elem_begin(df_gguf_writer *w, size_t count) {
    DF_TRY(claim_elem(w, "elem_begin"));
    DF_TRY(put_arr_header(w, DF_GGUF_ARRAY, count));
    w->frames[w->depth++] = count;
    return DF_OK;
}

static df_status close_frame(df_gguf_writer *w, const char *what) {
    if (w->frames[w->depth - 1] != 0)
        return wfail(w, DF_ERR_INVALID, "key '%s': %s with %" PRIu64 " declared elements still missing",
                     w->keys[w->n_kv], what, w->frames[w->depth - 1]);
    w->depth--;
    return DF_OK;
}

df_status df_gguf_writer_elem_end(df_gguf_writer *w) {
    DF_TRY(sticky(w));
    if (w->depth < 2) return wfail(w, DF_ERR_INVALID, "elem_end without a matching elem_begin");
    return close_frame(w, "elem_end");
}

df_status df_gguf_writer_end_arr_of_arr(df_gguf_writer *w) {
    DF_TRY(sticky(w));
    if (w->depth != 1)
        return wfail(w, DF_ERR_INVALID, "end_arr_of_arr %s", w->depth == 0 ? "without begin_arr_of_arr"
                                                                           : "while an elem_begin is still open");
    DF_TRY(close_frame(w, "end_arr_of_arr"));
    w->n_kv++;
    return DF_OK;
}

/* ---- tensors ------------------------------------------------------------------------------------------- */

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Finds name in the tensor set; returns the slot where it is or would go. */
static uint64_t *tensor_slot(df_gguf_writer *w, const char *name) {
    uint64_t mask = w->tensor_slots_cap - 1;
    for (uint64_t h = hash_name(name) & mask;; h = (h + 1) & mask) {
        uint64_t *s = &w->tensor_slots[h];
        if (*s == 0 || strcmp(w->tensors[*s - 1].name, name) == 0) return s;
    }
}

static bool grow_tensor_set(df_gguf_writer *w) {
    uint64_t cap = w->tensor_slots_cap ? w->tensor_slots_cap * 2 : 64;
    uint64_t *old = w->tensor_slots, old_cap = w->tensor_slots_cap;
    w->tensor_slots = calloc(cap, sizeof *w->tensor_slots);
    if (!w->tensor_slots) {
        w->tensor_slots = old;
        return false;
    }
    w->tensor_slots_cap = cap;
    for (uint64_t i = 0; i < old_cap; i++)
        if (old[i]) *tensor_slot(w, w->tensors[old[i] - 1].name) = old[i];
    free(old);
    return true;
}

df_status df_gguf_writer_add_tensor(df_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                                    const int64_t *ne) {
    DF_TRY(sticky(w));
    if (w->state != DEFINING)
        return wfail(w, DF_ERR_INVALID, "tensor '%s' added after the header was written", name ? name : "(null)");
    if (!name || !*name) return wfail(w, DF_ERR_INVALID, "a tensor name is empty");
    size_t len = strlen(name);
    if (len >= DF_GGUF_MAX_NAME)
        return wfail(w, DF_ERR_INVALID, "tensor name '%s' is %zu bytes; llama.cpp needs fewer than %d", name, len,
                     DF_GGUF_MAX_NAME);
    const df_type_traits *tr = df_type_get(type);
    if (!tr) return wfail(w, DF_ERR_INVALID, "tensor '%s': unknown type id %" PRIu32, name, type);
    if (n_dims < 1 || n_dims > DF_GGUF_MAX_DIMS || !ne)
        return wfail(w, DF_ERR_INVALID, "tensor '%s': n_dims %d (expected 1..%d)", name, n_dims, DF_GGUF_MAX_DIMS);
    wtensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    uint64_t n_el = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0)
            return wfail(w, DF_ERR_INVALID, "tensor '%s': dimension %d is %" PRId64 " (must be positive)", name, d,
                         ne[d]);
        if (!df_mul_u64(n_el, (uint64_t)ne[d], &n_el) || n_el > (uint64_t)INT64_MAX)
            return wfail(w, DF_ERR_INVALID, "tensor '%s': element count overflows", name);
        t.ne[d] = ne[d];
    }
    if (t.ne[0] % tr->block_size != 0)
        return wfail(w, DF_ERR_INVALID, "tensor '%s': rows of %" PRId64 " elements are not a multiple of the %s block size %d",
                     name, t.ne[0], tr->name, tr->block_size);
    uint64_t size = (uint64_t)(t.ne[0] / tr->block_size);
    bool ok = df_mul_u64(size, tr->type_size, &size);
    for (int d = 1; d < DF_GGUF_MAX_DIMS && ok; d++) ok = df_mul_u64(size, (uint64_t)t.ne[d], &size);
    if (!ok || size > UINT64_MAX / 2) return wfail(w, DF_ERR_INVALID, "tensor '%s': byte size overflows", name);
    t.size = size;

    if (2 * (w->n_tensors + 1) > w->tensor_slots_cap && !grow_tensor_set(w))
        return wfail(w, DF_ERR_NOMEM, "out of memory");
    uint64_t *slot = tensor_slot(w, name);
    if (*slot) return wfail(w, DF_ERR_INVALID, "duplicate tensor name '%s'", name);
    if (w->n_tensors + 1 > w->tensors_cap) {
        size_t cap = w->tensors_cap ? 2 * w->tensors_cap : 64;
        wtensor *p = realloc(w->tensors, cap * sizeof *p);
        if (!p) return wfail(w, DF_ERR_NOMEM, "out of memory");
        w->tensors = p;
        w->tensors_cap = cap;
    }
    if (!(t.name = strdup(name))) return wfail(w, DF_ERR_NOMEM, "out of memory");
    w->tensors[w->n_tensors++] = t;
    *slot = w->n_tensors;
    return DF_OK;
}

/* ---- output ------------------------------------------------------------------------------------------ */

static df_status out_bytes(df_gguf_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n)
        return wfail(w, DF_ERR_IO, "write failed at offset %" PRIu64 ": %s", w->file_pos, strerror(errno));
    w->file_pos += n;
    return DF_OK;
}

static df_status out_zeros(df_gguf_writer *w, uint64_t n) {
    static const uint8_t zeros[256];
    while (n > 0) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        DF_TRY(out_bytes(w, zeros, k));
        n -= k;
    }
    return DF_OK;
}

static df_status out_le(df_gguf_writer *w, uint64_t v, int width) {
    uint8_t b[8];
    for (int i = 0; i < width; i++) b[i] = (uint8_t)(v >> (8 * i));
    return out_bytes(w, b, (size_t)width);
}

df_status df_gguf_writer_write_header(df_gguf_writer *w) {
    DF_TRY(sticky(w));
    if (w->state != DEFINING) return wfail(w, DF_ERR_INVALID, "the header was already written");
    if (w->depth > 0)
        return wfail(w, DF_ERR_INVALID, "the array of arrays '%s' is still open", w->keys[w->n_kv]);

    /* Same layout as llama.cpp: running offsets, each tensor padded to the alignment. */
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        w->tensors[i].offset = off;
        uint64_t padded = df_align_up(w->tensors[i].size, w->alignment);
        if (padded < w->tensors[i].size || !df_add_u64(off, padded, &off))
            return wfail(w, DF_ERR_INVALID, "the data section size overflows");
    }

    DF_TRY(out_bytes(w, DF_GGUF_MAGIC, 4));
    DF_TRY(out_le(w, DF_GGUF_VERSION, 4));
    DF_TRY(out_le(w, w->n_tensors, 8));
    DF_TRY(out_le(w, w->n_kv, 8));
    DF_TRY(out_bytes(w, w->meta, w->meta_len));
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        size_t len = strlen(t->name);
        DF_TRY(out_le(w, len, 8));
        DF_TRY(out_bytes(w, t->name, len));
        DF_TRY(out_le(w, (uint64_t)t->n_dims, 4));
        for (int d = 0; d < t->n_dims; d++) DF_TRY(out_le(w, (uint64_t)t->ne[d], 8));
        DF_TRY(out_le(w, t->type, 4));
        DF_TRY(out_le(w, t->offset, 8));
    }
    DF_TRY(out_zeros(w, df_align_up(w->file_pos, w->alignment) - w->file_pos));
    w->state = WRITING_DATA;
    w->cur = 0;
    w->cur_written = 0;
    return DF_OK;
}

df_status df_gguf_writer_write(df_gguf_writer *w, const void *data, size_t n) {
    DF_TRY(sticky(w));
    if (w->state != WRITING_DATA)
        return wfail(w, DF_ERR_INVALID, "tensor data written %s",
                     w->state == DEFINING ? "before the header" : "after finish");
    const uint8_t *p = data;
    if (n && !p) return wfail(w, DF_ERR_INVALID, "NULL tensor data");
    if (n == 0) return DF_OK;
    if (w->cur >= w->n_tensors)
        return wfail(w, DF_ERR_INVALID, "%zu bytes of tensor data past the last tensor", n);
    const wtensor *t = &w->tensors[w->cur];
    uint64_t left = t->size - w->cur_written;
    if (n > left)
        return wfail(w, DF_ERR_INVALID,
                     "tensor '%s': a chunk of %zu bytes runs past its end (%" PRIu64 " of %" PRIu64 " bytes left)",
                     t->name, n, left, t->size);
    DF_TRY(out_bytes(w, p, n));
    w->cur_written += n;
    if (w->cur_written == t->size) {
        DF_TRY(out_zeros(w, df_align_up(t->size, w->alignment) - t->size));
        w->cur++;
        w->cur_written = 0;
    }
    return DF_OK;
}

df_status df_gguf_writer_write_tensor(df_gguf_writer *w, const char *name, const void *data, size_t size) {
    DF_TRY(sticky(w));
    const char *next = df_gguf_writer_next_tensor(w);
    if (!next || !name || strcmp(next, name) != 0 || w->cur_written != 0)
        return wfail(w, DF_ERR_INVALID, "tensor '%s' written out of order (due next: %s)", name ? name : "(null)",
                     next ? next : "none");
    if (size != w->tensors[w->cur].size)
        return wfail(w, DF_ERR_INVALID, "tensor '%s': %zu bytes given, %" PRIu64 " expected", name, size,
                     w->tensors[w->cur].size);
    return df_gguf_writer_write(w, data, size);
}

const char *df_gguf_writer_next_tensor(const df_gguf_writer *w) {
    if (w->state != WRITING_DATA || w->cur >= w->n_tensors) return NULL;
    return w->tensors[w->cur].name;
}

df_status df_gguf_writer_finish(df_gguf_writer *w) {
    DF_TRY(sticky(w));
    if (w->state == FINISHED) return DF_OK;
    if (w->state == DEFINING) DF_TRY(df_gguf_writer_write_header(w));
    if (w->cur < w->n_tensors)
        return wfail(w, DF_ERR_INVALID, "finished with tensor '%s' incomplete (%" PRIu64 " of %" PRIu64
                     " bytes written) and %" PRIu64 " tensors after it unwritten",
                     w->tensors[w->cur].name, w->cur_written, w->tensors[w->cur].size, w->n_tensors - w->cur - 1);
    FILE *f = w->f;
    w->f = NULL;
    if (fflush(f) != 0 || ferror(f)) {
        int e = errno;
        fclose(f);
        unlink(w->tmp_path);
        return wfail(w, DF_ERR_IO, "write failed: %s", strerror(e));
    }
    if (fclose(f) != 0) {
        unlink(w->tmp_path);
        return wfail(w, DF_ERR_IO, "close failed: %s", strerror(errno));
    }
    if (rename(w->tmp_path, w->path) != 0) {
        int e = errno;
        unlink(w->tmp_path);
        return wfail(w, DF_ERR_IO, "cannot rename %s into place: %s", w->tmp_path, strerror(e));
    }
    w->state = FINISHED;
    return DF_OK;
}
