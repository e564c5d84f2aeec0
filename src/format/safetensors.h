/* Reader for Hugging Face safetensors files.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of a UTF-8 JSON object, then the
 * data buffer. The object maps each tensor name to {"dtype": "F32", "shape": [..],
 * "data_offsets": [begin, end]} (offsets relative to the start of the data buffer); an
 * optional "__metadata__" entry maps strings to strings.
 *
 * The file is mmapped and never copied: a tensor's data pointer points into the mapping and
 * lives as long as the df_st_file. Every number in the header is checked before use (header
 * length against the file, offsets against the buffer, byte size against dtype x shape with
 * overflow checks, ranges against each other), so a hostile file gives an error, never an
 * out-of-bounds read.
 *
 * Data pointers are NOT guaranteed to be aligned to the element size (the format does not
 * promise it); read elements with memcpy or check alignment before casting. */
#ifndef DF_FORMAT_SAFETENSORS_H
#define DF_FORMAT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/mapfile.h"
#include "base/status.h"

/* The largest header accepted; the same limit as the reference implementation. */
#define DF_ST_MAX_HEADER (100u * 1000u * 1000u)
#define DF_ST_MAX_DIMS 8

typedef enum df_st_dtype {
    DF_ST_BOOL = 0,
    DF_ST_U8,
    DF_ST_I8,
    DF_ST_F8_E5M2,
    DF_ST_F8_E4M3,
    DF_ST_F8_E8M0,
    DF_ST_I16,
    DF_ST_U16,
    DF_ST_F16,
    DF_ST_BF16,
    DF_ST_I32,
    DF_ST_U32,
    DF_ST_F32,
    DF_ST_F64,
    DF_ST_I64,
    DF_ST_U64,
    DF_ST_DTYPE_COUNT,
} df_st_dtype;

/* "F32", "BF16", ... as written in the file; "unknown" for an out-of-range value. */
const char *df_st_dtype_name(df_st_dtype d);
/* Bytes per element (BOOL is one byte); 0 for an out-of-range value. */
size_t df_st_dtype_size(df_st_dtype d);
/* Exact, case-sensitive match against the names the format uses; -1 if unknown. */
int df_st_dtype_from_name(const char *name);

typedef struct df_st_tensor {
    const char *name;          /* owned by the df_st_file */
    df_st_dtype dtype;
    const char *dtype_name;    /* static string, e.g. "BF16" */
    int n_dims;                /* 0 (a scalar) .. DF_ST_MAX_DIMS */
    int64_t shape[DF_ST_MAX_DIMS]; /* outermost first (PyTorch order); unused entries are 1 */
    uint64_t n_elements;
    size_t nbytes;
    uint64_t offset;           /* of the data from the start of the file */
    const uint8_t *data;       /* into the mapping; NULL when nbytes == 0 */
} df_st_tensor;

typedef struct df_st_meta {
    const char *key;
    const char *value;
} df_st_meta;

typedef struct df_st_file {
    char *path;                /* the file name used in messages */
    df_mapfile map;            /* empty when opened from memory */
    const uint8_t *bytes;      /* the whole file */
    size_t size;
    uint64_t data_start;       /* 8 + header length */
    size_t n_tensors;
    df_st_tensor *tensors;     /* in data order (by offset, then name) */
    df_st_tensor **by_name;    /* the same tensors sorted by name, for binary search */
    size_t n_meta;
    df_st_meta *meta;          /* __metadata__ pairs, in the file's order */
    char *strings;             /* one block holding every name, key and value */
} df_st_file;

/* Maps and validates the file at path. On failure *out is NULL and the message names the
 * file, the tensor and the problem. */
df_status df_st_open(const char *path, df_st_file **out);

/* Same checks on bytes already in memory (tests, fuzzing). The bytes are not copied and must
 * outlive the returned file; name is used in messages. */
df_status df_st_open_memory(const void *data, size_t size, const char *name, df_st_file **out);

void df_st_close(df_st_file *f); /* NULL is fine */

/* NULL if the file has no tensor of that name. */
const df_st_tensor *df_st_find(const df_st_file *f, const char *name);
/* Like df_st_find, but a missing tensor is a DF_ERR_NOT_FOUND naming file and tensor. */
df_status df_st_get(const df_st_file *f, const char *name, const df_st_tensor **out);

/* Converts a floating-point tensor (F32, F16, BF16, F64) to floats; cap is the room in dst,
 * which must be at least t->n_elements. Reads through memcpy, so unaligned data is fine.
 * Other dtypes are DF_ERR_UNSUPPORTED, naming the tensor and its dtype. */
df_status df_st_to_f32(const df_st_tensor *t, float *dst, size_t cap);

/* A __metadata__ value, or NULL when absent. */
const char *df_st_meta_get(const df_st_file *f, const char *key);

#endif
