#include "format/safetensors.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/fp16.h"

/* ---- dtypes ----------------------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} k_dtypes[DF_ST_DTYPE_COUNT] = {
    [DF_ST_BOOL] = {"BOOL", 1},       [DF_ST_U8] = {"U8", 1},
    [DF_ST_I8] = {"I8", 1},           [DF_ST_F8_E5M2] = {"F8_E5M2", 1},
    [DF_ST_F8_E4M3] = {"F8_E4M3", 1}, [DF_ST_F8_E8M0] = {"F8_E8M0", 1},
    [DF_ST_I16] = {"I16", 2},         [DF_ST_U16] = {"U16", 2},
    [DF_ST_F16] = {"F16", 2},         [DF_ST_BF16] = {"BF16", 2},
    [DF_ST_I32] = {"I32", 4},         [DF_ST_U32] = {"U32", 4},
    [DF_ST_F32] = {"F32", 4},         [DF_ST_F64] = {"F64", 8},
    [DF_ST_I64] = {"I64", 8},         [DF_ST_U64] = {"U64", 8},
};

const char *df_st_dtype_name(df_st_dtype d) {
    return (unsigned)d < DF_ST_DTYPE_COUNT ? k_dtypes[d].name : "unknown";
}

size_t df_st_dtype_size(df_st_dtype d) {
    return (unsigned)d < DF_ST_DTYPE_COUNT ? k_dtypes[d].size : 0;
}

int df_st_dtype_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < DF_ST_DTYPE_COUNT; i++)
        if (strcmp(name, k_dtypes[i].name) == 0) return i;
    return -1;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown JSON value";
}

static uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int cmp_by_offset(const void *a, const void *b) {
    const df_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_by_name(const void *a, const void *b) {
    const df_st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Copies s into the string block at *cursor and returns the copy. */
static const char *pack_string(char **cursor, const char *s) {
    size_t n = strlen(s) + 1;
    char *dst = *cursor;
    memcpy(dst, s, n);
    *cursor += n;
    return dst;
}

/* ---- one tensor entry ------------------------------------------------------------------- */

/* Reads "data_offsets" or a "shape" element: a non-negative JSON integer. */
static df_status get_u64(const char *file, const char *tensor, const char *field, size_t index,
                         const json_t *v, uint64_t *out) {
    if (!json_is_integer(v))
        return df_fail(DF_ERR_FORMAT, "%s: tensor '%s': %s[%zu] is %s, expected a non-negative integer",
                       file, tensor, field, index, json_kind(v));
    json_int_t x = json_integer_value(v);
    if (x < 0)
        return df_fail(DF_ERR_FORMAT, "%s: tensor '%s': %s[%zu] is negative (%lld)", file, tensor,
                       field, index, (long long)x);
    *out = (uint64_t)x;
    return DF_OK;
}

static df_status parse_tensor(const char *file, const char *name, const json_t *entry,
                              uint64_t buffer_size, df_st_tensor *t) {
    if (!json_is_object(entry))
        return df_fail(DF_ERR_FORMAT, "%s: tensor '%s': entry is %s, expected an object", file, name,
                       json_kind(entry));

    const json_t *dtype = json_object_get(entry, "dtype");
    if (!dtype) return df_fail(DF_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", file, name);
    if (!json_is_string(dtype))
        return df_fail(DF_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is %s, expected a string", file,
                       name, json_kind(dtype));
    int d = df_st_dtype_from_name(json_string_value(dtype));
    if (d < 0)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype \"%s\"", file, name,
                       json_string_value(dtype));
    t->dtype = (df_st_dtype)d;
    t->dtype_name = k_dtypes[d].name;

    const json_t *shape = json_object_get(entry, "shape");
    if (!shape) return df_fail(DF_ERR_FORMAT, "%s: tensor '%s': missing \"shape\"", file, name);
    if (!json_is_array(shape))
        return df_fail(DF_ERR_FORMAT, "%s: tensor '%s': \"shape\" is %s, expected an array", file,
                       name, json_kind(shape));
    size_t n_dims = json_array_size(shape);
    if (n_dims > DF_ST_MAX_DIMS)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: tensor '%s': shape has %zu dimensions, at most %d supported",
                       file, name, n_dims, DF_ST_MAX_DIMS);
    t->n_dims = (int)n_dims;
    uint64_t n_elements = 1;
    for (size_t i = 0; i < DF_ST_MAX_DIMS; i++) t->shape[i] = 1;
    for (size_t i = 0; i < n_dims; i++) {
        uint64_t dim;
        DF_TRY(get_u64(file, name, "shape", i, json_array_get(shape, i), &dim));
        t->shape[i] = (int64_t)dim; /* fits: came from a non-negative json_int_t */
        if (!df_mul_u64(n_elements, dim, &n_elements))
            return df_fail(DF_ERR_FORMAT, "%s: tensor '%s': the element count of the shape overflows 64 bits",
                           file, name);
    }
    t->n_elements = n_elements;

    const json_t *offs = json_object_get(entry, "data_offsets");
    if (!offs) return df_fail(DF_ERR_FORMAT, "%s: tensor '%s': missing \"data_offsets\"", file, name);
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return df_fail(DF_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" is %s, expected an array [begin, end]",
                       file, name, json_is_array(offs) ? "an array of the wrong length" : json_kind(offs));
    uint64_t begin, end;
    DF_TRY(get_u64(file, name, "data_offsets", 0, json_array_get(offs, 0), &begin));
    DF_TRY(get_u64(file, name, "data_offsets", 1, json_array_get(offs, 1), &end));
    if (begin > end)
        return df_fail(DF_ERR_FORMAT, "%s: tensor '%s': data_offsets begin %llu is after end %llu", file,
                       name, (unsigned long long)begin, (unsigned long long)end);
    if (end > buffer_size)
        return df_fail(DF_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets end %llu is past the end of the data buffer (%llu bytes)",
                       file, name, (unsigned long long)end, (unsigned long long)buffer_size);

    uint64_t expect;
    if (!df_mul_u64(n_elements, k_dtypes[d].size, &expect))
        return df_fail(DF_ERR_FORMAT, "%s: tensor '%s': the byte size of the shape overflows 64 bits", file,
                       name);
    if (expect != end - begin)
        return df_fail(DF_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets span %llu bytes, but %llu elements of %s need %llu bytes",
                       file, name, (unsigned long long)(end - begin), (unsigned long long)n_elements,
                       k_dtypes[d].name, (unsigned long long)expect);
    t->nbytes = (size_t)(end - begin); /* <= buffer_size, a size_t */
    t->offset = begin;                 /* made absolute by the caller */
    return DF_OK;
}

/* ---- the header ------------------------------------------------------------------------- */

static df_status parse_metadata(const char *file, const json_t *meta, size_t *n_meta, size_t *str_bytes) {
    if (json_is_null(meta)) return DF_OK;
    if (!json_is_object(meta))
        return df_fail(DF_ERR_FORMAT, "%s: __metadata__ is %s, expected an object of strings", file,
                       json_kind(meta));
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)meta, key, value) {
        if (!json_is_string(value))
            return df_fail(DF_ERR_FORMAT, "%s: __metadata__ key '%s' is %s, expected a string", file, key,
                           json_kind(value));
        *str_bytes += strlen(key) + 1 + json_string_length(value) + 1;
        (*n_meta)++;
    }
    return DF_OK;
}

static df_status parse_header(df_st_file *f, const json_t *root) {
    const char *file = f->path;
    uint64_t buffer_size = f->size - f->data_start;
    const json_t *meta = json_object_get(root, "__metadata__");
    size_t n_tensors = json_object_size(root) - (meta ? 1 : 0);
    size_t n_meta = 0, str_bytes = 0;
    if (meta) DF_TRY(parse_metadata(file, meta, &n_meta, &str_bytes));

    f->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *f->tensors);
    f->by_name = calloc(n_tensors ? n_tensors : 1, sizeof *f->by_name);
    f->meta = calloc(n_meta ? n_meta : 1, sizeof *f->meta);
    if (!f->tensors || !f->by_name || !f->meta)
        return df_fail(DF_ERR_NOMEM, "%s: out of memory for %zu tensors", file, n_tensors);

    /* First pass: validate every entry and size the string block. */
    const char *key;
    const json_t *value;
    size_t i = 0;
    json_object_foreach((json_t *)root, key, value) {
        if (strcmp(key, "__metadata__") == 0) continue;
        df_st_tensor *t = &f->tensors[i++];
        t->name = key; /* a borrowed pointer until the strings are packed below */
        DF_TRY(parse_tensor(file, key, value, buffer_size, t));
        str_bytes += strlen(key) + 1;
    }

    /* Second pass: copy names and metadata into one block the file owns. */
    f->strings = malloc(str_bytes ? str_bytes : 1);
    if (!f->strings) return df_fail(DF_ERR_NOMEM, "%s: out of memory for tensor names", file);
    char *cursor = f->strings;
    for (size_t k = 0; k < n_tensors; k++) {
        df_st_tensor *t = &f->tensors[k];
        t->name = pack_string(&cursor, t->name);
        t->offset += f->data_start;
        t->data = f->bytes + t->offset;
    }
    if (meta && json_is_object(meta)) {
        size_t m = 0;
        json_object_foreach((json_t *)meta, key, value) {
            f->meta[m].key = pack_string(&cursor, key);
            f->meta[m].value = pack_string(&cursor, json_string_value(value));
            m++;
        }
    }
    f->n_tensors = n_tensors;
    f->n_meta = n_meta;

    /* Ranges must not overlap: in offset order, each non-empty tensor starts at or after the
     * furthest end seen so far. Empty tensors occupy no bytes and overlap nothing. */
    qsort(f->tensors, n_tensors, sizeof *f->tensors, cmp_by_offset);
    const df_st_tensor *furthest = NULL;
    for (size_t k = 0; k < n_tensors; k++) {
        const df_st_tensor *t = &f->tensors[k];
        if (t->nbytes == 0) continue;
        if (furthest && t->offset < furthest->offset + furthest->nbytes)
            return df_fail(DF_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data buffer", file,
                           furthest->name, t->name);
        if (!furthest || t->offset + t->nbytes > furthest->offset + furthest->nbytes) furthest = t;
    }

    for (size_t k = 0; k < n_tensors; k++) f->by_name[k] = &f->tensors[k];
    qsort(f->by_name, n_tensors, sizeof *f->by_name, cmp_by_name);
    /* JSON_REJECT_DUPLICATES already refuses these; kept so the index stays sound whatever
     * the parser flags become. */
    for (size_t k = 1; k < n_tensors; k++)
        if (strcmp(f->by_name[k - 1]->name, f->by_name[k]->name) == 0)
            return df_fail(DF_ERR_FORMAT, "%s: duplicate tensor name '%s'", file, f->by_name[k]->name);
    return DF_OK;
}

static df_status parse_file(df_st_file *f) {
    const char *file = f->path;
    if (f->size < 8)
        return df_fail(DF_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
                       file, f->size);
    uint64_t n = read_le64(f->bytes);
    if (n > f->size - 8)
        return df_fail(DF_ERR_FORMAT, "%s: header length %llu is larger than the rest of the file (%zu bytes)",
                       file, (unsigned long long)n, f->size - 8);
    if (n > DF_ST_MAX_HEADER)
        return df_fail(DF_ERR_FORMAT, "%s: header length %llu is larger than the limit of %u bytes", file,
                       (unsigned long long)n, (unsigned)DF_ST_MAX_HEADER);
    f->data_start = 8 + n;

    json_error_t err;
    /* DECODE_ANY so that a scalar header gets our message rather than a parser complaint. */
    json_t *root = json_loadb((const char *)f->bytes + 8, (size_t)n,
                              JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!root)
        return df_fail(DF_ERR_FORMAT, "%s: header JSON, line %d column %d (file offset %llu): %s", file,
                       err.line, err.column, (unsigned long long)(8 + (err.position > 0 ? err.position : 0)),
                       err.text);
    df_status st;
    if (!json_is_object(root))
        st = df_fail(DF_ERR_FORMAT, "%s: header is %s, expected a JSON object", file, json_kind(root));
    else
        st = parse_header(f, root);
    json_decref(root);
    return st;
}

/* ---- public ----------------------------------------------------------------------------- */

static df_status open_common(df_st_file *f, df_st_file **out) {
    df_status st = parse_file(f);
    if (st != DF_OK) {
        df_st_close(f);
        return st;
    }
    *out = f;
    return DF_OK;
}

static df_st_file *new_file(const char *name) {
    df_st_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->path = strdup(name ? name : "<memory>");
    if (!f->path) {
        free(f);
        return NULL;
    }
    return f;
}

df_status df_st_open(const char *path, df_st_file **out) {
    *out = NULL;
    if (!path) return df_fail(DF_ERR_INVALID, "df_st_open: path is NULL");
    df_st_file *f = new_file(path);
    if (!f) return df_fail(DF_ERR_NOMEM, "%s: out of memory", path);
    df_status st = df_mapfile_open(path, &f->map);
    if (st != DF_OK) {
        df_st_close(f);
        return st;
    }
    f->bytes = f->map.data;
    f->size = f->map.size;
    return open_common(f, out);
}

df_status df_st_open_memory(const void *data, size_t size, const char *name, df_st_file **out) {
    *out = NULL;
    if (!data && size) return df_fail(DF_ERR_INVALID, "df_st_open_memory: data is NULL");
    df_st_file *f = new_file(name);
    if (!f) return df_fail(DF_ERR_NOMEM, "%s: out of memory", name ? name : "<memory>");
    f->bytes = data;
    f->size = size;
    return open_common(f, out);
}

void df_st_close(df_st_file *f) {
    if (!f) return;
    df_mapfile_close(&f->map);
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    free(f->strings);
    free(f->path);
    free(f);
}

const df_st_tensor *df_st_find(const df_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

df_status df_st_get(const df_st_file *f, const char *name, const df_st_tensor **out) {
    *out = df_st_find(f, name);
    if (!*out)
        return df_fail(DF_ERR_NOT_FOUND, "%s: no tensor named '%s'", f ? f->path : "<null>",
                       name ? name : "<null>");
    return DF_OK;
}

const char *df_st_meta_get(const df_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

df_status df_st_to_f32(const df_st_tensor *t, float *dst, size_t cap) {
    if (!t || (!dst && t->n_elements)) return df_fail(DF_ERR_INVALID, "df_st_to_f32: NULL argument");
    if (t->n_elements > cap)
        return df_fail(DF_ERR_INVALID, "tensor '%s': %llu elements do not fit in a buffer of %zu", t->name,
                       (unsigned long long)t->n_elements, cap);
    size_t n = (size_t)t->n_elements;
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case DF_ST_F32: /* little-endian in the file and on every host we build for */
        if (n) memcpy(dst, p, n * 4);
        return DF_OK;
    case DF_ST_F16:
    case DF_ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)); /* the format is little-endian */
            dst[i] = t->dtype == DF_ST_F16 ? df_fp16_to_f32(h) : df_bf16_to_f32(h);
        }
        return DF_OK;
    case DF_ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            /* Out-of-range double -> float conversion is undefined in C; saturate as IEEE does. */
            dst[i] = d > FLT_MAX ? INFINITY : d < -FLT_MAX ? -INFINITY : (float)d;
        }
        return DF_OK;
    default:
        return df_fail(DF_ERR_UNSUPPORTED, "tensor '%s': cannot convert dtype %s to f32", t->name,
                       t->dtype_name);
    }
}
