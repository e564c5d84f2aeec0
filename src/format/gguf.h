/* GGUF reader: a zero-copy view of a GGUF v2/v3 file (the format of ggml / llama.cpp).
 *
 * Layout of a file (all little-endian):
 *     "GGUF" u32 version  u64 n_tensors  u64 n_kv
 *     n_kv ×      { key: gguf string, u32 value type, value }
 *     n_tensors × { name: gguf string, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }
 *     zero padding to `general.alignment` (default 32)
 *     the data section: tensor data at the offsets above (relative to the section start)
 * where a gguf string is a u64 byte length and the bytes (no terminator).
 *
 * Use:
 *     df_gguf *g;
 *     DF_TRY(df_gguf_open("model.gguf", &g));          // mmap, validates everything
 *     uint32_t n_layer;
 *     st = df_gguf_get_u32(g, "qwen35.block_count", &n_layer);
 *     const df_gguf_tensor *t;
 *     st = df_gguf_get_tensor(g, "token_embd.weight", &t);
 *     // t->data is t->size bytes of type t->type, shape ne[0] (contiguous) × ne[1] × ...
 *     df_gguf_close(g);
 *
 * Everything is checked at open: once df_gguf_open succeeds, every key, value, array element,
 * tensor info and tensor byte range is known to lie inside the file, so the accessors below
 * never read out of bounds. Failures name the file, the byte offset and the problem.
 *
 * Lifetime: every pointer handed out (keys, names, string bytes, array elements, tensor
 * data, the df_gguf_kv / df_gguf_tensor records) stays valid until df_gguf_close(g). String
 * VALUES point into the file and are NOT NUL-terminated (use the length, or df_gguf_get_strdup);
 * keys and tensor names are NUL-terminated copies.
 *
 * Where this reader and llama.cpp's (ggml/src/gguf.cpp) differ, on purpose:
 *   - we refuse n_dims 0 and zero-sized dimensions (llama.cpp accepts them; no model has them);
 *   - we accept tensors at any aligned, non-overlapping offsets (llama.cpp wants each tensor
 *     exactly where the previous one's padded end puts it, which our writer produces);
 *   - we accept arrays of arrays up to DF_GGUF_MAX_NESTING (llama.cpp refuses any), and tensor
 *     names of 64 bytes or more (llama.cpp refuses those; our writer does too).
 *
 * Not thread-hostile: a df_gguf is immutable after open; concurrent readers need no lock. */
#ifndef DF_FORMAT_GGUF_H
#define DF_FORMAT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#define DF_GGUF_MAGIC "GGUF"
#define DF_GGUF_VERSION 3               /* the version we write; we read 2 and 3 */
#define DF_GGUF_DEFAULT_ALIGNMENT 32
#define DF_GGUF_MAX_DIMS 4
#define DF_GGUF_MAX_NESTING 8           /* arrays of arrays deeper than this are refused */
#define DF_GGUF_MAX_NAME 64             /* llama.cpp refuses tensor names of 64 bytes or more;
                                           the writer enforces it, the reader does not */

/* Value type ids, numbered as in the file. */
typedef enum df_gguf_type {
    DF_GGUF_U8 = 0,
    DF_GGUF_I8 = 1,
    DF_GGUF_U16 = 2,
    DF_GGUF_I16 = 3,
    DF_GGUF_U32 = 4,
    DF_GGUF_I32 = 5,
    DF_GGUF_F32 = 6,
    DF_GGUF_BOOL = 7,   /* one byte, 0 or not 0 */
    DF_GGUF_STRING = 8,
    DF_GGUF_ARRAY = 9,
    DF_GGUF_U64 = 10,
    DF_GGUF_I64 = 11,
    DF_GGUF_F64 = 12,
    DF_GGUF_TYPE_COUNT = 13,
} df_gguf_type;

const char *df_gguf_type_name(uint32_t type);  /* "u32", "string", ...; "invalid" otherwise */
size_t df_gguf_type_size(uint32_t type);       /* bytes of a fixed-size scalar; 0 for string,
                                                  array and invalid ids */

/* A view of one value (a KV's value, or an element of an array).
 *   scalars: data points at the encoded bytes (little-endian, possibly unaligned), size is
 *            the width, count is 1. Decode with df_gguf_value_as_*.
 *   STRING:  data points at the bytes (no terminator), size = count = byte length.
 *   ARRAY:   elem_type, count elements; data points at the first element's encoding and
 *            size is the byte length of all elements. Fixed-size elements are packed (index
 *            with df_gguf_arr_elem); walk strings and nested arrays with df_gguf_iter. */
typedef struct df_gguf_value {
    df_gguf_type type;
    df_gguf_type elem_type;  /* ARRAY only */
    uint64_t count;
    const uint8_t *data;
    uint64_t size;
} df_gguf_value;

typedef struct df_gguf_kv {
    const char *key;      /* NUL-terminated, non-empty */
    uint64_t offset;      /* byte offset of the KV (its key length) in the file */
    df_gguf_value value;
} df_gguf_kv;

typedef struct df_gguf_tensor {
    const char *name;     /* NUL-terminated */
    uint32_t type;        /* a df_type id (quant/types.h) */
    int n_dims;           /* 1..4, as stored */
    int64_t ne[DF_GGUF_MAX_DIMS];  /* ne[0] is the contiguous dimension; padded with 1s */
    int64_t n_elements;
    uint64_t offset;      /* relative to the data section; a multiple of the alignment */
    uint64_t size;        /* bytes */
    const void *data;     /* offset bytes past the start of the data section. Opened from a
                             file (mmap: page-aligned base) it is aligned to the file's
                             alignment; from memory, only as well as the buffer allows. A
                             file may declare an alignment as small as 1, so a consumer whose
                             kernels need more must check (uintptr_t)data itself. */
} df_gguf_tensor;

typedef struct df_gguf df_gguf;

/* ---- open / close ------------------------------------------------------------------ */

/* Maps the file read-only and validates it. */
df_status df_gguf_open(const char *path, df_gguf **out);
/* Reads a GGUF image already in memory, without copying: data must outlive the df_gguf.
 * name is used in messages (copied). */
df_status df_gguf_open_memory(const void *data, size_t size, const char *name, df_gguf **out);
void df_gguf_close(df_gguf *g);  /* NULL is fine */

/* ---- header facts -------------------------------------------------------------------- */

const char *df_gguf_name(const df_gguf *g);      /* the path or the name given at open */
uint32_t df_gguf_version(const df_gguf *g);
uint64_t df_gguf_alignment(const df_gguf *g);
uint64_t df_gguf_data_offset(const df_gguf *g);  /* start of the data section in the file */
uint64_t df_gguf_file_size(const df_gguf *g);
const uint8_t *df_gguf_file_data(const df_gguf *g);  /* the whole image */
uint64_t df_gguf_n_kv(const df_gguf *g);
uint64_t df_gguf_n_tensors(const df_gguf *g);

/* ---- key/value pairs --------------------------------------------------------------- */

const df_gguf_kv *df_gguf_kv_at(const df_gguf *g, uint64_t i);        /* NULL past the end */
const df_gguf_kv *df_gguf_find_kv(const df_gguf *g, const char *key); /* NULL if absent */
bool df_gguf_has(const df_gguf *g, const char *key);

/* Typed getters. DF_ERR_NOT_FOUND when the key is absent; DF_ERR_FORMAT when it holds a
 * type that cannot be read as the one asked for, or a value out of range; both with a
 * message naming the file, the key, the type found and the type expected. On failure *out
 * is left untouched, so it may hold a default:
 *     uint32_t n = 4;  st = df_gguf_get_u32(g, key, &n);  if (st == DF_ERR_NOT_FOUND) ...
 * Coercions: integer getters accept any integer type whose value fits; float getters accept
 * f32, f64 and any integer type; bool accepts bool only; str accepts string only. */
df_status df_gguf_get_u32(const df_gguf *g, const char *key, uint32_t *out);
df_status df_gguf_get_i32(const df_gguf *g, const char *key, int32_t *out);
df_status df_gguf_get_u64(const df_gguf *g, const char *key, uint64_t *out);
df_status df_gguf_get_i64(const df_gguf *g, const char *key, int64_t *out);
df_status df_gguf_get_f32(const df_gguf *g, const char *key, float *out);
df_status df_gguf_get_f64(const df_gguf *g, const char *key, double *out);
df_status df_gguf_get_bool(const df_gguf *g, const char *key, bool *out);
/* *s points into the file, *len bytes, not NUL-terminated. */
df_status df_gguf_get_str(const df_gguf *g, const char *key, const char **s, size_t *len);
/* A NUL-terminated malloc'd copy; free() it. Refuses strings with an embedded NUL. */
df_status df_gguf_get_strdup(const df_gguf *g, const char *key, char **out);
/* Any array. */
df_status df_gguf_get_arr(const df_gguf *g, const char *key, df_gguf_value *out);
/* An array of integers (any integer element type, each value in range) copied into dst,
 * which has room for cap elements; *n gets the count. More than cap elements is an error. */
df_status df_gguf_get_arr_i32(const df_gguf *g, const char *key, int32_t *dst, size_t cap, size_t *n);
df_status df_gguf_get_arr_i64(const df_gguf *g, const char *key, int64_t *dst, size_t cap, size_t *n);
/* An array of numbers (float or integer elements) as f32. */
df_status df_gguf_get_arr_f32(const df_gguf *g, const char *key, float *dst, size_t cap, size_t *n);

/* general.architecture as a NUL-terminated string; NULL if absent or not a string. */
const char *df_gguf_arch(const df_gguf *g);

/* ---- decoding values ----------------------------------------------------------------- */

/* Scalar views as numbers; false (out untouched) when the type does not convert or the
 * value does not fit. as_i64/as_u64 take integer types; as_f64 takes any integer or float;
 * as_bool takes bool only. */
bool df_gguf_value_as_i64(const df_gguf_value *v, int64_t *out);
bool df_gguf_value_as_u64(const df_gguf_value *v, uint64_t *out);
bool df_gguf_value_as_f64(const df_gguf_value *v, double *out);
bool df_gguf_value_as_bool(const df_gguf_value *v, bool *out);

/* Element i of an array of fixed-size scalars, O(1); false for an out-of-range index or an
 * array of strings / arrays (walk those with df_gguf_iter). */
bool df_gguf_arr_elem(const df_gguf_value *arr, uint64_t i, df_gguf_value *out);

/* Sequential walk over any array's elements (the only way through strings and nested
 * arrays, whose elements have variable size):
 *     df_gguf_iter it;  df_gguf_value e;
 *     df_gguf_iter_init(&it, &arr);
 *     while (df_gguf_iter_next(&it, &e)) { ... e.data, e.size ... } */
typedef struct df_gguf_iter {
    df_gguf_type elem_type;
    uint64_t remaining;
    const uint8_t *p, *end;
} df_gguf_iter;
void df_gguf_iter_init(df_gguf_iter *it, const df_gguf_value *arr);
bool df_gguf_iter_next(df_gguf_iter *it, df_gguf_value *out);

/* ---- tensors --------------------------------------------------------------------------- */

const df_gguf_tensor *df_gguf_tensor_at(const df_gguf *g, uint64_t i);          /* NULL past the end */
const df_gguf_tensor *df_gguf_find_tensor(const df_gguf *g, const char *name);  /* NULL if absent; O(1) */
/* Like find, but an absent tensor is DF_ERR_NOT_FOUND with a message naming file and tensor. */
df_status df_gguf_get_tensor(const df_gguf *g, const char *name, const df_gguf_tensor **out);

#endif
