/* GGUF reader. One pass over the header validates every structure against the file size
 * (counts, string lengths, array sizes, nesting, tensor shapes, types, offsets) before any
 * pointer is handed out; after that, the accessors only index validated memory.
 *
 * Memory: the df_gguf, its kv and tensor records, one arena of NUL-terminated copies of keys
 * and tensor names, and two open-addressing hash indexes (key -> kv, name -> tensor). Values
 * and tensor data are never copied. */
#include "format/gguf.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/mapfile.h"
#include "quant/types.h"

/* Keys and tensor names longer than this are refused as corrupt: real ones are < 100 bytes,
 * and the limit keeps messages and hashing of hostile input cheap. */
#define GGUF_MAX_KEY_LEN 65536

/* Smallest encodings, used to refuse counts that cannot fit in the bytes that remain before
 * allocating anything for them. A KV: key length + 1 key byte + type + a 1-byte value. A
 * tensor info: name length + 1 byte + n_dims + one dim + type + offset. */
#define GGUF_MIN_KV_BYTES (8 + 1 + 4 + 1)
#define GGUF_MIN_TENSOR_INFO_BYTES (8 + 1 + 4 + 8 + 4 + 8)

/* ---- little-endian loads (unaligned, independent of the host's byte order) ---------------- */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

/* ---- types ---------------------------------------------------------------------------------- */

static const char *const k_type_names[DF_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};
static const uint8_t k_type_sizes[DF_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *df_gguf_type_name(uint32_t type) {
    return type < DF_GGUF_TYPE_COUNT ? k_type_names[type] : "invalid";
}

size_t df_gguf_type_size(uint32_t type) { return type < DF_GGUF_TYPE_COUNT ? k_type_sizes[type] : 0; }

static bool type_is_int(df_gguf_type t) {
    switch (t) {
    case DF_GGUF_U8: case DF_GGUF_I8: case DF_GGUF_U16: case DF_GGUF_I16: case DF_GGUF_U32:
    case DF_GGUF_I32: case DF_GGUF_U64: case DF_GGUF_I64: return true;
    default: return false;
    }
}

/* ---- the name index: FNV-1a + linear probing over records whose first field is a name --- */

typedef struct name_index {
    uint64_t *slots;      /* record index + 1; 0 = empty */
    uint64_t mask;
    const uint8_t *items; /* the records */
    size_t stride;        /* sizeof one record */
    size_t name_field;    /* offsetof the const char * name in a record */
} name_index;

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static const char *ix_name(const name_index *ix, uint64_t i) {
    const char *s;
    memcpy(&s, ix->items + i * ix->stride + ix->name_field, sizeof s);
    return s;
}

static bool ix_init(name_index *ix, uint64_t n, const void *items, size_t stride, size_t name_field) {
    uint64_t cap = 8;
    while (cap < 2 * n) cap *= 2;  /* n is bounded by the file size, so this cannot run away */
    ix->slots = calloc(cap, sizeof *ix->slots);
    ix->mask = cap - 1;
    ix->items = items;
    ix->stride = stride;
    ix->name_field = name_field;
    return ix->slots != NULL;
}

static int64_t ix_find(const name_index *ix, const char *s) {
    if (!ix->slots) return -1;
    for (uint64_t h = hash_name(s) & ix->mask;; h = (h + 1) & ix->mask) {
        uint64_t v = ix->slots[h];
        if (v == 0) return -1;
        if (strcmp(ix_name(ix, v - 1), s) == 0) return (int64_t)(v - 1);
    }
}

/* Adds record i; returns the index of an earlier record with the same name, or -1. */
static int64_t ix_insert(name_index *ix, uint64_t i) {
    const char *s = ix_name(ix, i);
    for (uint64_t h = hash_name(s) & ix->mask;; h = (h + 1) & ix->mask) {
        uint64_t v = ix->slots[h];
        if (v == 0) {
            ix->slots[h] = i + 1;
            return -1;
        }
        if (strcmp(ix_name(ix, v - 1), s) == 0) return (int64_t)(v - 1);
    }
}

/* ---- the object ------------------------------------------------------------------------------ */

/* A name as it lies in the file, before it is copied into the arena. */
typedef struct raw_str {
    const uint8_t *p;
    uint64_t len;
    uint64_t offset; /* of its length field */
} raw_str;

struct df_gguf {
    char *name;
    df_mapfile map;
    const uint8_t *base;
    uint64_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    uint64_t n_kv, n_tensors;
    df_gguf_kv *kvs;
    df_gguf_tensor *tensors;
    char *strings;  /* arena: keys then tensor names, NUL-terminated */
    char *arch;
    name_index kv_index, tensor_index;
};

void df_gguf_close(df_gguf *g) {
    if (!g) return;
    df_mapfile_close(&g->map);
    free(g->kv_index.slots);
    free(g->tensor_index.slots);
    free(g->kvs);
    free(g->tensors);
    free(g->strings);
    free(g->arch);
    free(g->name);
    free(g);
}

/* ---- the parser's cursor and its messages --------------------------------------------------- */

typedef struct reader {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    const char *name;
} reader;

/* "NAME: offset OFF: <problem>" */
static df_status bad_at(const reader *r, df_status st, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static df_status bad_at(const reader *r, df_status st, uint64_t off, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return df_fail(st, "%s: offset %" PRIu64 ": %s", r->name, off, msg);
}

static uint64_t remaining(const reader *r) { return r->size - r->pos; }

/* Checks that n bytes remain for `what`; the message says how many are missing. */
static df_status need(const reader *r, uint64_t n, const char *what) {
    if (n <= remaining(r)) return DF_OK;
    return bad_at(r, DF_ERR_FORMAT, r->pos,
                  "truncated: %s needs %" PRIu64 " bytes but only %" PRIu64 " remain (file size %" PRIu64 ")",
                  what, n, remaining(r), r->size);
}

static df_status read_u32(reader *r, const char *what, uint32_t *out) {
    DF_TRY(need(r, 4, what));
    *out = le32(r->base + r->pos);
    r->pos += 4;
    return DF_OK;
}

static df_status read_u64(reader *r, const char *what, uint64_t *out) {
    DF_TRY(need(r, 8, what));
    *out = le64(r->base + r->pos);
    r->pos += 8;
    return DF_OK;
}

/* A gguf string: u64 length + bytes. Returns a view into the file. */
static df_status read_str(reader *r, const char *what, raw_str *out) {
    out->offset = r->pos;
    uint64_t len;
    DF_TRY(read_u64(r, what, &len));
    if (len > remaining(r))
        return bad_at(r, DF_ERR_FORMAT, out->offset,
                      "%s: string length %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes remain)",
                      what, len, remaining(r));
    out->p = r->base + r->pos;
    out->len = len;
    r->pos += len;
    return DF_OK;
}

/* Keys and tensor names become C strings: they must be non-empty, NUL-free and sane. */
static df_status check_name(const reader *r, const raw_str *s, const char *what) {
    if (s->len == 0) return bad_at(r, DF_ERR_FORMAT, s->offset, "%s is empty", what);
    if (s->len > GGUF_MAX_KEY_LEN)
        return bad_at(r, DF_ERR_FORMAT, s->offset, "%s is %" PRIu64 " bytes long (limit %d)", what,
                      s->len, GGUF_MAX_KEY_LEN);
    if (memchr(s->p, 0, s->len))
        return bad_at(r, DF_ERR_FORMAT, s->offset, "%s '%.*s...' contains a NUL byte", what,
                      (int)strnlen((const char *)s->p, 64), (const char *)s->p);
    return DF_OK;
}

/* ---- values ------------------------------------------------------------------------------------ */

static df_status check_value_type(const reader *r, uint64_t off, uint32_t type, const raw_str *key,
                                  const char *role) {
    if (type < DF_GGUF_TYPE_COUNT) return DF_OK;
    return bad_at(r, DF_ERR_FORMAT, off, "key '%.*s': unknown %s type %" PRIu32 " (valid: 0..%d)",
                  (int)(key->len > 128 ? 128 : key->len), (const char *)key->p, role, type,
                  DF_GGUF_TYPE_COUNT - 1);
}

static df_status parse_array(reader *r, const raw_str *key, int depth, df_gguf_value *out);

/* Validates and skips one value of the given (already checked) type. The common case (it
 * fits) is checked inline: a vocabulary is an array of 150k strings, and the description for
 * the message is only built on the way to a failure. */
static df_status parse_value(reader *r, const raw_str *key, uint32_t type, int depth, df_gguf_value *out) {
    out->type = (df_gguf_type)type;
    out->elem_type = DF_GGUF_TYPE_COUNT;
    if (type == DF_GGUF_ARRAY) return parse_array(r, key, depth, out);
    int klen = (int)(key->len > 128 ? 128 : key->len);
    const char *kp = (const char *)key->p;
    char what[200];
    if (type == DF_GGUF_STRING) {
        if (remaining(r) >= 8) {
            uint64_t len = le64(r->base + r->pos);
            if (len <= remaining(r) - 8) {
                out->data = r->base + r->pos + 8;
                out->size = out->count = len;
                r->pos += 8 + len;
                return DF_OK;
            }
        }
        raw_str s;
        snprintf(what, sizeof what, "string value of key '%.*s'", klen, kp);
        return read_str(r, what, &s);  /* fails, with the message */
    }
    size_t w = k_type_sizes[type];
    if (w > remaining(r)) {
        snprintf(what, sizeof what, "%s value of key '%.*s'", k_type_names[type], klen, kp);
        return need(r, w, what);
    }
    out->data = r->base + r->pos;
    out->size = w;
    out->count = 1;
    r->pos += w;
    return DF_OK;
}

/* An array: u32 element type, u64 count, elements. depth counts the arrays around this one. */
static df_status parse_array(reader *r, const raw_str *key, int depth, df_gguf_value *out) {
    int klen = (int)(key->len > 128 ? 128 : key->len);
    const char *kp = (const char *)key->p;
    uint64_t start = r->pos;
    if (depth >= DF_GGUF_MAX_NESTING)
        return bad_at(r, DF_ERR_FORMAT, start, "key '%.*s': arrays nested deeper than %d levels", klen, kp,
                      DF_GGUF_MAX_NESTING);
    char what[200];
    snprintf(what, sizeof what, "array header of key '%.*s'", klen, kp);
    uint32_t et;
    uint64_t count;
    DF_TRY(read_u32(r, what, &et));
    DF_TRY(check_value_type(r, start, et, key, "array element"));
    DF_TRY(read_u64(r, what, &count));
    out->type = DF_GGUF_ARRAY;
    out->elem_type = (df_gguf_type)et;
    out->count = count;
    out->data = r->base + r->pos;
    uint64_t elems_at = r->pos;

    /* Refuse counts that cannot fit before walking (or multiplying) anything. */
    uint64_t min_elem = et == DF_GGUF_STRING ? 8 : et == DF_GGUF_ARRAY ? 12 : k_type_sizes[et];
    if (count > remaining(r) / min_elem)
        return bad_at(r, DF_ERR_FORMAT, start,
                      "key '%.*s': array of %" PRIu64 " %s elements runs past the end of the file (%" PRIu64
                      " bytes remain, at least %" PRIu64 " per element)",
                      klen, kp, count, k_type_names[et], remaining(r), min_elem);
    if (et != DF_GGUF_STRING && et != DF_GGUF_ARRAY) {
        r->pos += count * min_elem;
    } else {
        for (uint64_t i = 0; i < count; i++) {
            df_gguf_value elem;
            DF_TRY(parse_value(r, key, et, depth + 1, &elem));
        }
    }
    out->size = r->pos - elems_at;
    return DF_OK;
}

/* ---- tensor infos ------------------------------------------------------------------------------ */

static df_status parse_tensor_info(reader *r, uint64_t i, raw_str *name, df_gguf_tensor *t) {
    char what[160];
    snprintf(what, sizeof what, "name of tensor %" PRIu64, i);
    DF_TRY(read_str(r, what, name));
    DF_TRY(check_name(r, name, what));
    int nl = (int)(name->len > 128 ? 128 : name->len);
    const char *np = (const char *)name->p;
    snprintf(what, sizeof what, "info of tensor '%.*s'", nl, np);

    uint64_t dims_at = r->pos;
    uint32_t n_dims;
    DF_TRY(read_u32(r, what, &n_dims));
    if (n_dims == 0 || n_dims > DF_GGUF_MAX_DIMS)
        return bad_at(r, DF_ERR_FORMAT, dims_at, "tensor '%.*s' has n_dims %" PRIu32 " (expected 1..%d)", nl, np,
                      n_dims, DF_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    int64_t n_el = 1;
    for (int d = 0; d < DF_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= (int)n_dims) continue;
        uint64_t at = r->pos, v;
        DF_TRY(read_u64(r, what, &v));
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return bad_at(r, DF_ERR_FORMAT, at, "tensor '%.*s' dimension %d is %" PRId64 " (must be positive)", nl,
                          np, d, (int64_t)v);
        t->ne[d] = (int64_t)v;
        if (__builtin_mul_overflow(n_el, t->ne[d], &n_el))
            return bad_at(r, DF_ERR_FORMAT, at, "tensor '%.*s': the element count overflows 64 bits", nl, np);
    }
    t->n_elements = n_el;

    uint64_t type_at = r->pos;
    DF_TRY(read_u32(r, what, &t->type));
    const df_type_traits *tr = df_type_get(t->type);
    if (!tr)
        return bad_at(r, DF_ERR_UNSUPPORTED, type_at, "tensor '%.*s' has unknown type id %" PRIu32, nl, np, t->type);
    if (t->ne[0] % tr->block_size != 0)
        return bad_at(r, DF_ERR_FORMAT, dims_at,
                      "tensor '%.*s' of type %s has rows of %" PRId64 " elements, not a multiple of the block size %d",
                      nl, np, tr->name, t->ne[0], tr->block_size);
    uint64_t size = (uint64_t)(t->ne[0] / tr->block_size);
    bool ok = df_mul_u64(size, tr->type_size, &size);
    for (int d = 1; d < DF_GGUF_MAX_DIMS && ok; d++) ok = df_mul_u64(size, (uint64_t)t->ne[d], &size);
    if (!ok) return bad_at(r, DF_ERR_FORMAT, dims_at, "tensor '%.*s': byte size overflows 64 bits", nl, np);
    t->size = size;

    DF_TRY(read_u64(r, what, &t->offset));
    return DF_OK;
}

typedef struct span {
    uint64_t begin, end, index;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* ---- open ------------------------------------------------------------------------------------------- */

static df_status check_version(const reader *r, uint32_t v) {
    if (v == 2 || v == 3) return DF_OK;
    if (v == 1)
        return bad_at(r, DF_ERR_UNSUPPORTED, 4,
                      "GGUF version 1 is not supported (only versions 2 and 3); re-convert the model with a "
                      "current converter");
    /* A version written big-endian reads as 0x02000000 / 0x03000000 here. */
    if (v != 0 && (v & 0xffffu) == 0)
        return bad_at(r, DF_ERR_UNSUPPORTED, 4,
                      "version field reads 0x%08" PRIx32 ", which is version %" PRIu32
                      " byte-swapped: a big-endian GGUF file; only little-endian files are supported",
                      v, __builtin_bswap32(v));
    return bad_at(r, DF_ERR_UNSUPPORTED, 4, "unsupported GGUF version %" PRIu32 " (supported: 2 and 3)", v);
}

/* Parses everything up to the end of the tensor infos, whose offset goes to *infos_end. */
static df_status parse_all(df_gguf *g, raw_str **kv_names_out, raw_str **tensor_names_out, uint64_t *infos_end) {
    reader rd = {g->base, g->size, 0, g->name};
    reader *r = &rd;

    DF_TRY(need(r, 4, "the magic"));
    if (memcmp(g->base, DF_GGUF_MAGIC, 4) != 0) {
        char shown[5];
        for (int i = 0; i < 4; i++) shown[i] = (g->base[i] >= 32 && g->base[i] < 127) ? (char)g->base[i] : '?';
        shown[4] = 0;
        return bad_at(r, DF_ERR_FORMAT, 0, "bad magic '%s' (bytes %02x %02x %02x %02x): not a GGUF file", shown,
                      g->base[0], g->base[1], g->base[2], g->base[3]);
    }
    r->pos = 4;
    DF_TRY(read_u32(r, "the version", &g->version));
    DF_TRY(check_version(r, g->version));
    DF_TRY(read_u64(r, "the tensor count", &g->n_tensors));
    DF_TRY(read_u64(r, "the key/value count", &g->n_kv));
    if (g->n_kv > remaining(r) / GGUF_MIN_KV_BYTES)
        return bad_at(r, DF_ERR_FORMAT, 16,
                      "n_kv = %" PRIu64 " key/value pairs cannot fit in the %" PRIu64 " bytes that remain",
                      g->n_kv, remaining(r));
    if (g->n_tensors > remaining(r) / GGUF_MIN_TENSOR_INFO_BYTES)
        return bad_at(r, DF_ERR_FORMAT, 8,
                      "n_tensors = %" PRIu64 " tensor infos cannot fit in the %" PRIu64 " bytes that remain",
                      g->n_tensors, remaining(r));

    /* Counts are now bounded by the file size, so these products cannot overflow. */
    g->kvs = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kvs);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    raw_str *kv_names = calloc(g->n_kv ? g->n_kv : 1, sizeof *kv_names);
    raw_str *tn_names = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *tn_names);
    *kv_names_out = kv_names;
    *tensor_names_out = tn_names;
    if (!g->kvs || !g->tensors || !kv_names || !tn_names)
        return df_fail(DF_ERR_NOMEM, "%s: out of memory for %" PRIu64 " keys and %" PRIu64 " tensors", g->name,
                       g->n_kv, g->n_tensors);

    for (uint64_t i = 0; i < g->n_kv; i++) {
        char what[64];
        snprintf(what, sizeof what, "key %" PRIu64, i);
        DF_TRY(read_str(r, what, &kv_names[i]));
        DF_TRY(check_name(r, &kv_names[i], what));
        g->kvs[i].offset = kv_names[i].offset;
        uint64_t type_at = r->pos;
        uint32_t type;
        snprintf(what, sizeof what, "value type of key %" PRIu64, i);
        DF_TRY(read_u32(r, what, &type));
        DF_TRY(check_value_type(r, type_at, type, &kv_names[i], "value"));
        DF_TRY(parse_value(r, &kv_names[i], type, 0, &g->kvs[i].value));
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) DF_TRY(parse_tensor_info(r, i, &tn_names[i], &g->tensors[i]));
    *infos_end = r->pos;
    return DF_OK;
}

static df_status copy_names(df_gguf *g, const raw_str *kv_names, const raw_str *tn_names) {
    uint64_t total = 1;
    for (uint64_t i = 0; i < g->n_kv; i++) total += kv_names[i].len + 1;
    for (uint64_t i = 0; i < g->n_tensors; i++) total += tn_names[i].len + 1;
    if (total > SIZE_MAX || !(g->strings = malloc((size_t)total)))
        return df_fail(DF_ERR_NOMEM, "%s: out of memory for %" PRIu64 " bytes of names", g->name, total);
    char *p = g->strings;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        memcpy(p, kv_names[i].p, kv_names[i].len);
        p[kv_names[i].len] = 0;
        g->kvs[i].key = p;
        p += kv_names[i].len + 1;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        memcpy(p, tn_names[i].p, tn_names[i].len);
        p[tn_names[i].len] = 0;
        g->tensors[i].name = p;
        p += tn_names[i].len + 1;
    }
    return DF_OK;
}

static df_status build_indexes(df_gguf *g, const raw_str *kv_names, const raw_str *tn_names) {
    if (!ix_init(&g->kv_index, g->n_kv, g->kvs, sizeof *g->kvs, offsetof(df_gguf_kv, key)) ||
        !ix_init(&g->tensor_index, g->n_tensors, g->tensors, sizeof *g->tensors, offsetof(df_gguf_tensor, name)))
        return df_fail(DF_ERR_NOMEM, "%s: out of memory for the name indexes", g->name);
    reader r = {g->base, g->size, 0, g->name};
    for (uint64_t i = 0; i < g->n_kv; i++) {
        int64_t prev = ix_insert(&g->kv_index, i);
        if (prev >= 0)
            return bad_at(&r, DF_ERR_FORMAT, kv_names[i].offset, "duplicate key '%s' (first at offset %" PRIu64 ")",
                          g->kvs[i].key, kv_names[prev].offset);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        int64_t prev = ix_insert(&g->tensor_index, i);
        if (prev >= 0)
            return bad_at(&r, DF_ERR_FORMAT, tn_names[i].offset,
                          "duplicate tensor name '%s' (tensors %" PRId64 " and %" PRIu64 ")", g->tensors[i].name, prev,
                          i);
    }
    return DF_OK;
}

static df_status resolve_layout(df_gguf *g, const raw_str *tn_names, uint64_t infos_end) {
    reader r = {g->base, g->size, 0, g->name};
    g->alignment = DF_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = ix_find(&g->kv_index, "general.alignment");
    if (ai >= 0) {
        const df_gguf_kv *kv = &g->kvs[ai];
        if (kv->value.type != DF_GGUF_U32)
            return bad_at(&r, DF_ERR_FORMAT, kv->offset, "key 'general.alignment' has type %s, expected u32",
                          df_gguf_type_name(kv->value.type));
        uint32_t a = le32(kv->value.data);
        if (a == 0 || (a & (a - 1)) != 0)
            return bad_at(&r, DF_ERR_FORMAT, kv->offset,
                          "invalid general.alignment %" PRIu32 ": must be a non-zero power of two", a);
        g->alignment = a;
    }
    /* The data section starts at the first aligned offset after the tensor infos.
     * infos_end <= size and alignment < 2^32: no wrap. */
    g->data_offset = df_align_up(infos_end, g->alignment);
    if (g->n_tensors == 0) return DF_OK;
    if (g->data_offset > g->size)
        return bad_at(&r, DF_ERR_FORMAT, infos_end,
                      "truncated: the data section would start at offset %" PRIu64 " but the file has %" PRIu64
                      " bytes",
                      g->data_offset, g->size);
    uint64_t data_size = g->size - g->data_offset;

    span *spans = malloc(g->n_tensors * sizeof *spans);
    if (!spans) return df_fail(DF_ERR_NOMEM, "%s: out of memory", g->name);
    df_status st = DF_OK;
    for (uint64_t i = 0; i < g->n_tensors && st == DF_OK; i++) {
        df_gguf_tensor *t = &g->tensors[i];
        /* tensor info offset field = name length field + 8 + name + 4 + 8*n_dims + 4 */
        uint64_t off_at = tn_names[i].offset + 8 + tn_names[i].len + 4 + 8 * (uint64_t)t->n_dims + 4;
        if (t->offset % g->alignment != 0)
            st = bad_at(&r, DF_ERR_FORMAT, off_at,
                        "tensor '%s' data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64, t->name,
                        t->offset, g->alignment);
        else if (t->offset > data_size || t->size > data_size - t->offset)
            st = bad_at(&r, DF_ERR_FORMAT, off_at,
                        "tensor '%s' data (%" PRIu64 " bytes at data offset %" PRIu64 ", file offset %" PRIu64
                        ") runs past the end of the file (%" PRIu64 " bytes)",
                        t->name, t->size, t->offset, g->data_offset + t->offset, g->size);
        else
            t->data = g->base + g->data_offset + t->offset;
        spans[i] = (span){t->offset, t->offset + t->size, i};
    }
    if (st == DF_OK) {
        qsort(spans, g->n_tensors, sizeof *spans, span_cmp);
        for (uint64_t i = 1; i < g->n_tensors; i++) {
            if (spans[i].begin < spans[i - 1].end) {
                const df_gguf_tensor *a = &g->tensors[spans[i - 1].index], *b = &g->tensors[spans[i].index];
                st = bad_at(&r, DF_ERR_FORMAT, g->data_offset + b->offset,
                            "tensors '%s' (data offset %" PRIu64 ", %" PRIu64 " bytes) and '%s' (data offset %" PRIu64
                            ") overlap",
                            a->name, a->offset, a->size, b->name, b->offset);
                break;
            }
        }
    }
    free(spans);
    return st;
}

static df_status open_image(df_gguf *g) {
    raw_str *kv_names = NULL, *tn_names = NULL;
    uint64_t infos_end = 0;
    df_status st = parse_all(g, &kv_names, &tn_names, &infos_end);
    if (st == DF_OK) st = copy_names(g, kv_names, tn_names);
    if (st == DF_OK) st = build_indexes(g, kv_names, tn_names);
    if (st == DF_OK) st = resolve_layout(g, tn_names, infos_end);
    if (st == DF_OK) {
        int64_t ai = ix_find(&g->kv_index, "general.architecture");
        const df_gguf_value *v = ai >= 0 ? &g->kvs[ai].value : NULL;
        if (v && v->type == DF_GGUF_STRING && !memchr(v->data, 0, v->size)) {
            g->arch = malloc(v->size + 1);
            if (!g->arch) {
                st = df_fail(DF_ERR_NOMEM, "%s: out of memory", g->name);
            } else {
                memcpy(g->arch, v->data, v->size);
                g->arch[v->size] = 0;
            }
        }
    }
    free(kv_names);
    free(tn_names);
    return st;
}

static df_gguf *new_gguf(const char *name) {
    df_gguf *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->name = strdup(name ? name : "<memory>");
    if (!g->name) {
        free(g);
        return NULL;
    }
    return g;
}

df_status df_gguf_open_memory(const void *data, size_t size, const char *name, df_gguf **out) {
    *out = NULL;
    if (!data && size) return df_fail(DF_ERR_INVALID, "df_gguf_open_memory: NULL data with size %zu", size);
    df_gguf *g = new_gguf(name);
    if (!g) return df_fail(DF_ERR_NOMEM, "%s: out of memory", name ? name : "<memory>");
    static const uint8_t empty[1];
    g->base = data ? data : empty;
    g->size = size;
    df_status st = open_image(g);
    if (st != DF_OK) {
        df_gguf_close(g);
        return st;
    }
    *out = g;
    return DF_OK;
}

df_status df_gguf_open(const char *path, df_gguf **out) {
    *out = NULL;
    df_gguf *g = new_gguf(path);
    if (!g) return df_fail(DF_ERR_NOMEM, "%s: out of memory", path);
    df_status st = df_mapfile_open(path, &g->map);
    if (st == DF_OK) {
        static const uint8_t empty[1];
        g->base = g->map.data ? g->map.data : empty;
        g->size = g->map.size;
        st = open_image(g);
    }
    if (st != DF_OK) {
        df_gguf_close(g);
        return st;
    }
    *out = g;
    return DF_OK;
}

/* ---- header facts --------------------------------------------------------------------------- */

const char *df_gguf_name(const df_gguf *g) { return g->name; }
uint32_t df_gguf_version(const df_gguf *g) { return g->version; }
uint64_t df_gguf_alignment(const df_gguf *g) { return g->alignment; }
uint64_t df_gguf_data_offset(const df_gguf *g) { return g->data_offset; }
uint64_t df_gguf_file_size(const df_gguf *g) { return g->size; }
const uint8_t *df_gguf_file_data(const df_gguf *g) { return g->base; }
uint64_t df_gguf_n_kv(const df_gguf *g) { return g->n_kv; }
uint64_t df_gguf_n_tensors(const df_gguf *g) { return g->n_tensors; }
const char *df_gguf_arch(const df_gguf *g) { return g->arch; }

/* ---- KV access ---------------------------------------------------------------------------------- */

const df_gguf_kv *df_gguf_kv_at(const df_gguf *g, uint64_t i) { return i < g->n_kv ? &g->kvs[i] : NULL; }

const df_gguf_kv *df_gguf_find_kv(const df_gguf *g, const char *key) {
    int64_t i = ix_find(&g->kv_index, key);
    return i >= 0 ? &g->kvs[i] : NULL;
}

bool df_gguf_has(const df_gguf *g, const char *key) { return df_gguf_find_kv(g, key) != NULL; }

bool df_gguf_value_as_i64(const df_gguf_value *v, int64_t *out) {
    const uint8_t *p = v->data;
    switch (v->type) {
    case DF_GGUF_U8: *out = p[0]; return true;
    case DF_GGUF_I8: *out = (int8_t)p[0]; return true;
    case DF_GGUF_U16: *out = le16(p); return true;
    case DF_GGUF_I16: *out = (int16_t)le16(p); return true;
    case DF_GGUF_U32: *out = le32(p); return true;
    case DF_GGUF_I32: *out = (int32_t)le32(p); return true;
    case DF_GGUF_I64: *out = (int64_t)le64(p); return true;
    case DF_GGUF_U64: {
        uint64_t u = le64(p);
        if (u > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)u;
        return true;
    }
    default: return false;
    }
}

bool df_gguf_value_as_u64(const df_gguf_value *v, uint64_t *out) {
    if (v->type == DF_GGUF_U64) {
        *out = le64(v->data);
        return true;
    }
    int64_t i;
    if (!df_gguf_value_as_i64(v, &i) || i < 0) return false;
    *out = (uint64_t)i;
    return true;
}

bool df_gguf_value_as_f64(const df_gguf_value *v, double *out) {
    if (v->type == DF_GGUF_F32) {
        uint32_t b = le32(v->data);
        float f;
        memcpy(&f, &b, 4);
        *out = f;
        return true;
    }
    if (v->type == DF_GGUF_F64) {
        uint64_t b = le64(v->data);
        memcpy(out, &b, 8);
        return true;
    }
    if (v->type == DF_GGUF_U64) {
        *out = (double)le64(v->data);
        return true;
    }
    int64_t i;
    if (!df_gguf_value_as_i64(v, &i)) return false;
    *out = (double)i;
    return true;
}

bool df_gguf_value_as_bool(const df_gguf_value *v, bool *out) {
    if (v->type != DF_GGUF_BOOL) return false;
    *out = v->data[0] != 0;
    return true;
}

/* Finds key or explains why not. */
static df_status find_value(const df_gguf *g, const char *key, const df_gguf_value **v) {
    const df_gguf_kv *kv = df_gguf_find_kv(g, key);
    if (!kv) return df_fail(DF_ERR_NOT_FOUND, "%s: key '%s' not found", g->name, key);
    *v = &kv->value;
    return DF_OK;
}

static df_status mistyped(const df_gguf *g, const char *key, const df_gguf_value *v, const char *expected) {
    if (v->type == DF_GGUF_ARRAY)
        return df_fail(DF_ERR_FORMAT, "%s: key '%s' has type array of %s, expected %s", g->name, key,
                       df_gguf_type_name(v->elem_type), expected);
    return df_fail(DF_ERR_FORMAT, "%s: key '%s' has type %s, expected %s", g->name, key, df_gguf_type_name(v->type),
                   expected);
}

static df_status get_int(const df_gguf *g, const char *key, const char *expected, int64_t lo, uint64_t hi,
                         uint64_t *bits, bool *negative) {
    const df_gguf_value *v = NULL;
    DF_TRY(find_value(g, key, &v));
    if (!type_is_int(v->type)) return mistyped(g, key, v, expected);
    if (v->type == DF_GGUF_U64) {
        uint64_t u = le64(v->data);
        if (u > hi)
            return df_fail(DF_ERR_FORMAT, "%s: key '%s' = %" PRIu64 " (u64) does not fit in %s", g->name, key, u,
                           expected);
        *bits = u;
        *negative = false;
        return DF_OK;
    }
    int64_t i;
    df_gguf_value_as_i64(v, &i);
    if (i < lo || (i >= 0 && (uint64_t)i > hi))
        return df_fail(DF_ERR_FORMAT, "%s: key '%s' = %" PRId64 " (%s) does not fit in %s", g->name, key, i,
                       df_gguf_type_name(v->type), expected);
    *bits = (uint64_t)i;
    *negative = i < 0;
    return DF_OK;
}

df_status df_gguf_get_u32(const df_gguf *g, const char *key, uint32_t *out) {
    uint64_t b;
    bool neg;
    DF_TRY(get_int(g, key, "u32", 0, UINT32_MAX, &b, &neg));
    *out = (uint32_t)b;
    return DF_OK;
}

df_status df_gguf_get_i32(const df_gguf *g, const char *key, int32_t *out) {
    uint64_t b;
    bool neg;
    DF_TRY(get_int(g, key, "i32", INT32_MIN, INT32_MAX, &b, &neg));
    *out = (int32_t)(int64_t)b;
    return DF_OK;
}

df_status df_gguf_get_u64(const df_gguf *g, const char *key, uint64_t *out) {
    uint64_t b;
    bool neg;
    DF_TRY(get_int(g, key, "u64", 0, UINT64_MAX, &b, &neg));
    *out = b;
    return DF_OK;
}

df_status df_gguf_get_i64(const df_gguf *g, const char *key, int64_t *out) {
    uint64_t b;
    bool neg;
    DF_TRY(get_int(g, key, "i64", INT64_MIN, INT64_MAX, &b, &neg));
    *out = (int64_t)b;
    return DF_OK;
}

df_status df_gguf_get_f64(const df_gguf *g, const char *key, double *out) {
    const df_gguf_value *v = NULL;
    DF_TRY(find_value(g, key, &v));
    if (!df_gguf_value_as_f64(v, out)) return mistyped(g, key, v, "f64 (or any number)");
    return DF_OK;
}

df_status df_gguf_get_f32(const df_gguf *g, const char *key, float *out) {
    const df_gguf_value *v = NULL;
    double d;
    DF_TRY(find_value(g, key, &v));
    if (!df_gguf_value_as_f64(v, &d)) return mistyped(g, key, v, "f32 (or any number)");
    if (isfinite(d) && fabs(d) > FLT_MAX)
        return df_fail(DF_ERR_FORMAT, "%s: key '%s' = %g does not fit in f32", g->name, key, d);
    *out = (float)d;
    return DF_OK;
}

df_status df_gguf_get_bool(const df_gguf *g, const char *key, bool *out) {
    const df_gguf_value *v = NULL;
    DF_TRY(find_value(g, key, &v));
    if (!df_gguf_value_as_bool(v, out)) return mistyped(g, key, v, "bool");
    return DF_OK;
}

df_status df_gguf_get_str(const df_gguf *g, const char *key, const char **s, size_t *len) {
    const df_gguf_value *v = NULL;
    DF_TRY(find_value(g, key, &v));
    if (v->type != DF_GGUF_STRING) return mistyped(g, key, v, "string");
    *s = (const char *)v->data;
    *len = (size_t)v->size;
    return DF_OK;
}

df_status df_gguf_get_strdup(const df_gguf *g, const char *key, char **out) {
    const char *s = NULL;
    size_t n = 0;
    DF_TRY(df_gguf_get_str(g, key, &s, &n));
    if (memchr(s, 0, n))
        return df_fail(DF_ERR_FORMAT, "%s: key '%s': the string contains a NUL byte", g->name, key);
    char *c = malloc(n + 1);
    if (!c) return df_fail(DF_ERR_NOMEM, "%s: key '%s': out of memory for %zu bytes", g->name, key, n + 1);
    memcpy(c, s, n);
    c[n] = 0;
    *out = c;
    return DF_OK;
}

df_status df_gguf_get_arr(const df_gguf *g, const char *key, df_gguf_value *out) {
    const df_gguf_value *v = NULL;
    DF_TRY(find_value(g, key, &v));
    if (v->type != DF_GGUF_ARRAY) return mistyped(g, key, v, "array");
    *out = *v;
    return DF_OK;
}

/* Shared by the array copy helpers: the array, checked for element kind and capacity. */
static df_status get_numeric_arr(const df_gguf *g, const char *key, bool allow_float, const char *expected,
                                 size_t cap, df_gguf_value *arr) {
    const df_gguf_value *v = NULL;
    DF_TRY(find_value(g, key, &v));
    bool ok = v->type == DF_GGUF_ARRAY &&
              (type_is_int(v->elem_type) ||
               (allow_float && (v->elem_type == DF_GGUF_F32 || v->elem_type == DF_GGUF_F64)));
    if (!ok) {
        if (v->type == DF_GGUF_ARRAY)
            return df_fail(DF_ERR_FORMAT, "%s: key '%s' has type array of %s, expected %s", g->name, key,
                           df_gguf_type_name(v->elem_type), expected);
        return mistyped(g, key, v, expected);
    }
    if (v->count > cap)
        return df_fail(DF_ERR_FORMAT, "%s: key '%s' has %" PRIu64 " elements, at most %zu expected", g->name, key,
                       v->count, cap);
    *arr = *v;
    return DF_OK;
}

static df_status get_arr_int(const df_gguf *g, const char *key, const char *expected, int64_t lo, int64_t hi,
                             size_t cap, int64_t *tmp_or_dst, int32_t *dst32, size_t *n) {
    df_gguf_value arr;
    DF_TRY(get_numeric_arr(g, key, false, expected, cap, &arr));
    for (uint64_t i = 0; i < arr.count; i++) {
        df_gguf_value e = {0};
        int64_t x = 0;
        df_gguf_arr_elem(&arr, i, &e);
        if (!df_gguf_value_as_i64(&e, &x) || x < lo || x > hi)
            return df_fail(DF_ERR_FORMAT, "%s: key '%s': element %" PRIu64 " does not fit in %s", g->name, key, i,
                           expected);
        if (dst32) dst32[i] = (int32_t)x;
        else tmp_or_dst[i] = x;
    }
    *n = (size_t)arr.count;
    return DF_OK;
}

df_status df_gguf_get_arr_i32(const df_gguf *g, const char *key, int32_t *dst, size_t cap, size_t *n) {
    return get_arr_int(g, key, "array of i32", INT32_MIN, INT32_MAX, cap, NULL, dst, n);
}

df_status df_gguf_get_arr_i64(const df_gguf *g, const char *key, int64_t *dst, size_t cap, size_t *n) {
    return get_arr_int(g, key, "array of i64", INT64_MIN, INT64_MAX, cap, dst, NULL, n);
}

df_status df_gguf_get_arr_f32(const df_gguf *g, const char *key, float *dst, size_t cap, size_t *n) {
    df_gguf_value arr;
    DF_TRY(get_numeric_arr(g, key, true, "array of f32", cap, &arr));
    for (uint64_t i = 0; i < arr.count; i++) {
        df_gguf_value e = {0};
        double x = 0;
        df_gguf_arr_elem(&arr, i, &e);
        df_gguf_value_as_f64(&e, &x);  /* cannot fail: get_numeric_arr checked the element type */
        dst[i] = (float)x;
    }
    *n = (size_t)arr.count;
    return DF_OK;
}

/* ---- arrays --------------------------------------------------------------------------------------- */

bool df_gguf_arr_elem(const df_gguf_value *arr, uint64_t i, df_gguf_value *out) {
    if (arr->type != DF_GGUF_ARRAY || i >= arr->count) return false;
    size_t w = df_gguf_type_size(arr->elem_type);
    if (w == 0) return false;
    *out = (df_gguf_value){.type = arr->elem_type, .elem_type = DF_GGUF_TYPE_COUNT, .count = 1,
                           .data = arr->data + i * w, .size = w};
    return true;
}

void df_gguf_iter_init(df_gguf_iter *it, const df_gguf_value *arr) {
    bool ok = arr->type == DF_GGUF_ARRAY;
    it->elem_type = arr->elem_type;
    it->remaining = ok ? arr->count : 0;
    it->p = ok ? arr->data : NULL;
    it->end = ok ? arr->data + arr->size : NULL;
}

/* Byte size of one encoded element of the given type at p, bounded by end; false if it does
 * not fit (only possible for a hand-made value: opened files were validated). */
static bool elem_size(const uint8_t *p, const uint8_t *end, uint32_t type, int depth, uint64_t *size) {
    uint64_t avail = (uint64_t)(end - p);
    if (type < DF_GGUF_TYPE_COUNT && k_type_sizes[type]) {
        *size = k_type_sizes[type];
        return *size <= avail;
    }
    if (type == DF_GGUF_STRING) {
        if (avail < 8) return false;
        uint64_t n = le64(p);
        if (n > avail - 8) return false;
        *size = 8 + n;
        return true;
    }
    if (type != DF_GGUF_ARRAY || depth >= DF_GGUF_MAX_NESTING || avail < 12) return false;
    uint32_t et = le32(p);
    uint64_t count = le64(p + 4), pos = 12;
    if (et >= DF_GGUF_TYPE_COUNT) return false;
    if (k_type_sizes[et]) {
        uint64_t bytes;
        if (!df_mul_u64(count, k_type_sizes[et], &bytes) || bytes > avail - pos) return false;
        *size = pos + bytes;
        return true;
    }
    for (uint64_t i = 0; i < count; i++) {
        uint64_t s;
        if (!elem_size(p + pos, end, et, depth + 1, &s)) return false;
        pos += s;
    }
    *size = pos;
    return true;
}

bool df_gguf_iter_next(df_gguf_iter *it, df_gguf_value *out) {
    if (it->remaining == 0 || !it->p) return false;
    uint64_t size;
    if (!elem_size(it->p, it->end, it->elem_type, 1, &size)) {
        it->remaining = 0;
        return false;
    }
    const uint8_t *p = it->p;
    if (it->elem_type == DF_GGUF_STRING) {
        *out = (df_gguf_value){.type = DF_GGUF_STRING, .elem_type = DF_GGUF_TYPE_COUNT, .count = size - 8,
                               .data = p + 8, .size = size - 8};
    } else if (it->elem_type == DF_GGUF_ARRAY) {
        *out = (df_gguf_value){.type = DF_GGUF_ARRAY, .elem_type = (df_gguf_type)le32(p), .count = le64(p + 4),
                               .data = p + 12, .size = size - 12};
    } else {
        *out = (df_gguf_value){.type = it->elem_type, .elem_type = DF_GGUF_TYPE_COUNT, .count = 1, .data = p,
                               .size = size};
    }
    it->p += size;
    it->remaining--;
    return true;
}

/* ---- tensors -------------------------------------------------------------------------------------- */

const df_gguf_tensor *df_gguf_tensor_at(const df_gguf *g, uint64_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const df_gguf_tensor *df_gguf_find_tensor(const df_gguf *g, const char *name) {
    int64_t i = ix_find(&g->tensor_index, name);
    return i >= 0 ? &g->tensors[i] : NULL;
}

df_status df_gguf_get_tensor(const df_gguf *g, const char *name, const df_gguf_tensor **out) {
    const df_gguf_tensor *t = df_gguf_find_tensor(g, name);
    if (!t) return df_fail(DF_ERR_NOT_FOUND, "%s: tensor '%s' not found", g->name, name);
    *out = t;
    return DF_OK;
}
