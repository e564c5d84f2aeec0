/* safetensors reader and sharded checkpoints. Files are written here by a small builder of
 * our own (the header as a JSON string, the data as raw bytes) that shares no code with the
 * reader, so a mistake in one is not mirrored by the other. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/rng.h"
#include "format/checkpoint.h"
#include "format/safetensors.h"

/* ---- a growable string -------------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t len, cap;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        cr_assert_not_null(b->s);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ---- the builder -------------------------------------------------------------------------- */

typedef struct {
    strbuf header;  /* the entries, without the enclosing braces */
    int n_entries;
    uint8_t *data;
    size_t data_len;
} builder;

static void b_sep(builder *b) {
    if (b->n_entries++) sb_printf(&b->header, ", ");
}

/* Appends a raw "name": value entry (value is JSON text, possibly malformed on purpose). */
static void b_raw(builder *b, const char *name, const char *value_json) {
    b_sep(b);
    sb_printf(&b->header, "\"%s\": %s", name, value_json);
}

static void b_append_data(builder *b, const void *bytes, size_t n) {
    b->data = realloc(b->data, b->data_len + n + 1);
    cr_assert_not_null(b->data);
    if (n) memcpy(b->data + b->data_len, bytes, n);
    b->data_len += n;
}

/* Appends a well-formed tensor whose bytes follow the data written so far. */
static void b_tensor(builder *b, const char *name, const char *dtype, int n_dims, const int64_t *shape,
                     const void *bytes, size_t nbytes) {
    b_sep(b);
    sb_printf(&b->header, "\"%s\": {\"dtype\": \"%s\", \"shape\": [", name, dtype);
    for (int i = 0; i < n_dims; i++) sb_printf(&b->header, "%s%lld", i ? ", " : "", (long long)shape[i]);
    sb_printf(&b->header, "], \"data_offsets\": [%zu, %zu]}", b->data_len, b->data_len + nbytes);
    b_append_data(b, bytes, nbytes);
}

/* The whole file: 8-byte little-endian length, "{entries}", data. */
static uint8_t *b_finish(builder *b, size_t *size) {
    strbuf h = {0};
    sb_printf(&h, "{%s}", b->header.s ? b->header.s : "");
    size_t n = 8 + h.len + b->data_len;
    uint8_t *f = malloc(n);
    cr_assert_not_null(f);
    for (int i = 0; i < 8; i++) f[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    memcpy(f + 8, h.s, h.len);
    if (b->data_len) memcpy(f + 8 + h.len, b->data, b->data_len);
    free(h.s);
    *size = n;
    return f;
}

static void b_free(builder *b) {
    free(b->header.s);
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* A file whose header is exactly the given text, followed by data_len random bytes. */
static uint8_t *raw_file(const char *header, size_t data_len, size_t *size) {
    size_t h = strlen(header);
    uint8_t *f = malloc(8 + h + data_len + 1);
    cr_assert_not_null(f);
    for (int i = 0; i < 8; i++) f[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(f + 8, header, h);
    for (size_t i = 0; i < data_len; i++) f[8 + h + i] = (uint8_t)(i * 37 + 11);
    *size = 8 + h + data_len;
    return f;
}

static void fill_random(df_rng *r, uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)df_rng_u64(r);
}

static void expect_error(df_status st, df_status want, const char *const *words) {
    cr_assert_eq(st, want, "status %s (%d), expected %s; message: %s", df_status_name(st), st,
                 df_status_name(want), df_last_error());
    for (int i = 0; words[i]; i++)
        cr_assert(strstr(df_last_error(), words[i]) != NULL, "message \"%s\" lacks \"%s\"", df_last_error(),
                  words[i]);
}
#define EXPECT_ERROR(st, want, ...) expect_error((st), (want), (const char *const[]){__VA_ARGS__, NULL})

static void write_file(const char *path, const void *bytes, size_t n) {
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp, "cannot create %s", path);
    cr_assert_eq(fwrite(bytes, 1, n, fp), n);
    cr_assert_eq(fclose(fp), 0);
}

/* ---- round trips ---------------------------------------------------------------------------- */

typedef struct {
    const char *dtype;
    df_st_dtype id;
    size_t size;
} dtype_case;

/* Element sizes from the format's definition, not from the reader's table. */
static const dtype_case k_cases[] = {
    {"F64", DF_ST_F64, 8},         {"F32", DF_ST_F32, 4},         {"F16", DF_ST_F16, 2},
    {"BF16", DF_ST_BF16, 2},       {"I64", DF_ST_I64, 8},         {"I32", DF_ST_I32, 4},
    {"I16", DF_ST_I16, 2},         {"I8", DF_ST_I8, 1},           {"U8", DF_ST_U8, 1},
    {"BOOL", DF_ST_BOOL, 1},       {"F8_E4M3", DF_ST_F8_E4M3, 1}, {"F8_E5M2", DF_ST_F8_E5M2, 1},
    {"U16", DF_ST_U16, 2},         {"U32", DF_ST_U32, 4},         {"U64", DF_ST_U64, 8},
};
enum { N_CASES = sizeof k_cases / sizeof k_cases[0] };

typedef struct {
    char name[64];
    int n_dims;
    int64_t shape[DF_ST_MAX_DIMS];
    size_t nbytes;
    uint8_t *bytes;
} expected_tensor;

/* Builds a file holding one random tensor of every dtype (random ranks and shapes). */
static uint8_t *build_all_dtypes(df_rng *r, expected_tensor *exp, size_t *size) {
    builder b = {0};
    for (int c = 0; c < N_CASES; c++) {
        expected_tensor *e = &exp[c];
        snprintf(e->name, sizeof e->name, "model.layers.%d.%s.weight", c, k_cases[c].dtype);
        e->n_dims = 1 + (int)df_rng_below(r, 4);
        size_t n = 1;
        for (int d = 0; d < e->n_dims; d++) {
            e->shape[d] = 1 + df_rng_below(r, 5);
            n *= (size_t)e->shape[d];
        }
        e->nbytes = n * k_cases[c].size;
        e->bytes = malloc(e->nbytes);
        fill_random(r, e->bytes, e->nbytes);
        b_tensor(&b, e->name, k_cases[c].dtype, e->n_dims, e->shape, e->bytes, e->nbytes);
    }
    uint8_t *f = b_finish(&b, size);
    b_free(&b);
    return f;
}

static void check_all_dtypes(const df_st_file *f, const expected_tensor *exp) {
    cr_assert_eq(f->n_tensors, (size_t)N_CASES);
    for (int c = 0; c < N_CASES; c++) {
        const df_st_tensor *t = df_st_find(f, exp[c].name);
        cr_assert_not_null(t, "tensor %s not found", exp[c].name);
        cr_assert_str_eq(t->name, exp[c].name);
        cr_assert_eq(t->dtype, k_cases[c].id, "%s: dtype %d", exp[c].name, t->dtype);
        cr_assert_str_eq(t->dtype_name, k_cases[c].dtype);
        cr_assert_eq(df_st_dtype_size(t->dtype), k_cases[c].size);
        cr_assert_eq(t->n_dims, exp[c].n_dims);
        for (int d = 0; d < t->n_dims; d++) cr_assert_eq(t->shape[d], exp[c].shape[d]);
        cr_assert_eq(t->nbytes, exp[c].nbytes);
        cr_assert_eq(memcmp(t->data, exp[c].bytes, exp[c].nbytes), 0, "%s: data differs", exp[c].name);
    }
    /* Data order: each tensor starts where the previous one ended (the builder's layout). */
    for (size_t i = 1; i < f->n_tensors; i++)
        cr_assert_eq(f->tensors[i].offset, f->tensors[i - 1].offset + f->tensors[i - 1].nbytes);
}

Test(safetensors, every_dtype_round_trips_from_memory) {
    df_rng r;
    df_rng_seed(&r, 1234);
    expected_tensor exp[N_CASES];
    size_t size;
    uint8_t *bytes = build_all_dtypes(&r, exp, &size);
    df_st_file *f;
    cr_assert_eq(df_st_open_memory(bytes, size, "mem.safetensors", &f), DF_OK, "%s", df_last_error());
    check_all_dtypes(f, exp);
    df_st_close(f);
    free(bytes);
    for (int c = 0; c < N_CASES; c++) free(exp[c].bytes);
}

Test(safetensors, every_dtype_round_trips_from_a_file) {
    df_rng r;
    df_rng_seed(&r, 99);
    expected_tensor exp[N_CASES];
    size_t size;
    uint8_t *bytes = build_all_dtypes(&r, exp, &size);
    char path[] = "/tmp/dflash-st-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_file(path, bytes, size);
    df_st_file *f;
    df_status st = df_st_open(path, &f);
    unlink(path);
    cr_assert_eq(st, DF_OK, "%s", df_last_error());
    cr_assert_str_eq(f->path, path);
    check_all_dtypes(f, exp);
    df_st_close(f);
    free(bytes);
    for (int c = 0; c < N_CASES; c++) free(exp[c].bytes);
}

Test(safetensors, float_values_survive) {
    /* F32 values written as little-endian IEEE bits read back as the same floats. */
    df_rng r;
    df_rng_seed(&r, 7);
    float vals[24];
    uint8_t raw[sizeof vals];
    for (int i = 0; i < 24; i++) {
        vals[i] = df_rng_normal(&r);
        uint32_t u;
        memcpy(&u, &vals[i], 4);
        for (int k = 0; k < 4; k++) raw[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
    builder b = {0};
    b_tensor(&b, "w", "F32", 2, (int64_t[]){4, 6}, raw, sizeof raw);
    size_t size;
    uint8_t *bytes = b_finish(&b, &size);
    df_st_file *f;
    cr_assert_eq(df_st_open_memory(bytes, size, "v", &f), DF_OK, "%s", df_last_error());
    const df_st_tensor *t;
    cr_assert_eq(df_st_get(f, "w", &t), DF_OK);
    cr_assert_eq(t->n_elements, 24u);
    for (int i = 0; i < 24; i++) {
        float v;
        memcpy(&v, t->data + 4 * i, 4);
        cr_assert_eq(v, vals[i]);
    }
    df_st_close(f);
    free(bytes);
    b_free(&b);
}

/* IEEE half decoded from its definition with ldexp, independent of base/fp16.h. */
static float half_by_definition(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
    double v;
    if (exp == 0) v = ldexp(man, -24);
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexp(1024 + man, exp - 25);
    return (float)(sign ? -v : v);
}

Test(safetensors, to_f32_converts_float_dtypes) {
    df_rng r;
    df_rng_seed(&r, 31337);
    enum { N = 257 }; /* odd, so the tensors after the first are not 4-byte aligned */
    uint8_t f16[2 * N], bf16[2 * N], f64[8 * N], pad[1] = {0x5a};
    float want16[N], wantb[N], want64[N];
    for (int i = 0; i < N; i++) {
        uint16_t h;
        do h = (uint16_t)df_rng_u64(&r);
        while (((h >> 10) & 31) == 31); /* no inf/nan: compared with == below */
        f16[2 * i] = (uint8_t)h;
        f16[2 * i + 1] = (uint8_t)(h >> 8);
        want16[i] = half_by_definition(h);
        uint16_t b = (uint16_t)df_rng_u64(&r) & 0xbfff; /* clear the top exponent bit: finite */
        bf16[2 * i] = (uint8_t)b;
        bf16[2 * i + 1] = (uint8_t)(b >> 8);
        uint32_t bits = (uint32_t)b << 16;
        memcpy(&wantb[i], &bits, 4);
        double d = df_rng_normal(&r) * 1000.0;
        memcpy(f64 + 8 * i, &d, 8);
        want64[i] = (float)d;
    }
    builder b = {0};
    b_tensor(&b, "pad", "U8", 1, (int64_t[]){1}, pad, 1);
    b_tensor(&b, "h", "F16", 1, (int64_t[]){N}, f16, sizeof f16);
    b_tensor(&b, "b", "BF16", 1, (int64_t[]){N}, bf16, sizeof bf16);
    b_tensor(&b, "d", "F64", 1, (int64_t[]){N}, f64, sizeof f64);
    size_t size;
    uint8_t *bytes = b_finish(&b, &size);
    df_st_file *f;
    cr_assert_eq(df_st_open_memory(bytes, size, "conv", &f), DF_OK, "%s", df_last_error());
    float out[N];
    cr_assert_eq(df_st_to_f32(df_st_find(f, "h"), out, N), DF_OK, "%s", df_last_error());
    for (int i = 0; i < N; i++) cr_assert_eq(out[i], want16[i], "f16 %d: %g vs %g", i, out[i], want16[i]);
    cr_assert_eq(df_st_to_f32(df_st_find(f, "b"), out, N), DF_OK);
    for (int i = 0; i < N; i++) cr_assert_eq(out[i], wantb[i], "bf16 %d", i);
    cr_assert_eq(df_st_to_f32(df_st_find(f, "d"), out, N), DF_OK);
    for (int i = 0; i < N; i++) cr_assert_eq(out[i], want64[i], "f64 %d", i);
    EXPECT_ERROR(df_st_to_f32(df_st_find(f, "d"), out, N - 1), DF_ERR_INVALID, "'d'", "do not fit");
    EXPECT_ERROR(df_st_to_f32(df_st_find(f, "pad"), out, N), DF_ERR_UNSUPPORTED, "'pad'", "U8");
    df_st_close(f);
    free(bytes);
    b_free(&b);
}

Test(safetensors, scalars_empty_tensors_metadata_and_order) {
    builder b = {0};
    /* Listed in the header out of data order, to see the reader sort by offset. */
    b_raw(&b, "second", "{\"dtype\": \"I32\", \"shape\": [2], \"data_offsets\": [4, 12]}");
    b_raw(&b, "__metadata__", "{\"format\": \"pt\", \"note\": \"hello\"}");
    b_raw(&b, "scalar", "{\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]}");
    b_raw(&b, "empty", "{\"dtype\": \"BF16\", \"shape\": [0, 7], \"data_offsets\": [12, 12]}");
    uint8_t data[12] = {0x00, 0x00, 0x80, 0x3f, 5, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff};
    b_append_data(&b, data, sizeof data);
    size_t size;
    uint8_t *bytes = b_finish(&b, &size);
    df_st_file *f;
    cr_assert_eq(df_st_open_memory(bytes, size, "mix", &f), DF_OK, "%s", df_last_error());
    cr_assert_eq(f->n_tensors, 3u);
    cr_assert_str_eq(f->tensors[0].name, "scalar");
    cr_assert_str_eq(f->tensors[1].name, "second");
    cr_assert_str_eq(f->tensors[2].name, "empty");

    const df_st_tensor *s = df_st_find(f, "scalar");
    cr_assert_eq(s->n_dims, 0);
    cr_assert_eq(s->n_elements, 1u);
    float one;
    memcpy(&one, s->data, 4);
    cr_assert_eq(one, 1.0f);

    const df_st_tensor *i32 = df_st_find(f, "second");
    int32_t v[2];
    memcpy(v, i32->data, 8);
    cr_assert_eq(v[0], 5);
    cr_assert_eq(v[1], -2);

    const df_st_tensor *e = df_st_find(f, "empty");
    cr_assert_eq(e->n_elements, 0u);
    cr_assert_eq(e->nbytes, 0u);
    cr_assert_eq(e->shape[0], 0);
    cr_assert_eq(e->shape[1], 7);

    cr_assert_eq(f->n_meta, 2u);
    cr_assert_str_eq(df_st_meta_get(f, "format"), "pt");
    cr_assert_str_eq(df_st_meta_get(f, "note"), "hello");
    cr_assert_null(df_st_meta_get(f, "absent"));
    cr_assert_null(df_st_find(f, "__metadata__"));
    cr_assert_null(df_st_find(f, "secon"));

    const df_st_tensor *t;
    EXPECT_ERROR(df_st_get(f, "nope.weight", &t), DF_ERR_NOT_FOUND, "mix", "nope.weight");
    df_st_close(f);
    free(bytes);
    b_free(&b);
}

Test(safetensors, lookup_among_many) {
    df_rng r;
    df_rng_seed(&r, 4242);
    builder b = {0};
    enum { N = 300 };
    uint8_t vals[N];
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", (i * 7919) % N);
        vals[(i * 7919) % N] = (uint8_t)df_rng_u64(&r);
        b_tensor(&b, name, "U8", 1, (int64_t[]){1}, &vals[(i * 7919) % N], 1);
    }
    size_t size;
    uint8_t *bytes = b_finish(&b, &size);
    df_st_file *f;
    cr_assert_eq(df_st_open_memory(bytes, size, "many", &f), DF_OK, "%s", df_last_error());
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", i);
        const df_st_tensor *t = df_st_find(f, name);
        cr_assert_not_null(t, "%s", name);
        cr_assert_eq(t->data[0], vals[i]);
    }
    cr_assert_null(df_st_find(f, "t300"));
    df_st_close(f);
    free(bytes);
    b_free(&b);
}

Test(safetensors, dtype_names) {
    for (int c = 0; c < N_CASES; c++) {
        cr_assert_eq(df_st_dtype_from_name(k_cases[c].dtype), (int)k_cases[c].id);
        cr_assert_str_eq(df_st_dtype_name(k_cases[c].id), k_cases[c].dtype);
    }
    cr_assert_eq(df_st_dtype_from_name("f32"), -1);
    cr_assert_eq(df_st_dtype_from_name("Q4_K"), -1);
    cr_assert_str_eq(df_st_dtype_name((df_st_dtype)999), "unknown");
}

/* ---- validation ------------------------------------------------------------------------------ */

/* Opens a file made of the given header (and data_len bytes of data); expects the error. */
static void header_case(const char *header, size_t data_len, df_status want, const char *const *words) {
    size_t size;
    uint8_t *bytes = raw_file(header, data_len, &size);
    df_st_file *f = (df_st_file *)1;
    df_status st = df_st_open_memory(bytes, size, "bad.safetensors", &f);
    cr_assert_null(f);
    expect_error(st, want, words);
    free(bytes);
}
#define HEADER_CASE(h, n, want, ...) header_case((h), (n), (want), (const char *const[]){__VA_ARGS__, NULL})

Test(safetensors, rejects_short_files_and_bad_lengths) {
    uint8_t tiny[5] = {1, 2, 3, 4, 5};
    df_st_file *f;
    EXPECT_ERROR(df_st_open_memory(tiny, sizeof tiny, "tiny", &f), DF_ERR_FORMAT, "tiny", "too short");
    EXPECT_ERROR(df_st_open_memory(tiny, 0, "zero", &f), DF_ERR_FORMAT, "zero", "too short");

    /* Claims 100 header bytes; 20 follow. */
    uint8_t buf[28] = {100};
    memcpy(buf + 8, "{}                  ", 20);
    EXPECT_ERROR(df_st_open_memory(buf, sizeof buf, "longhdr", &f), DF_ERR_FORMAT, "longhdr",
                 "header length 100", "larger than the rest of the file");
    /* All 64 bits set: must not wrap around. */
    memset(buf, 0xff, 8);
    EXPECT_ERROR(df_st_open_memory(buf, sizeof buf, "huge", &f), DF_ERR_FORMAT, "huge", "header length");
}

Test(safetensors, rejects_an_absurd_header_length) {
    /* A sparse file just over the limit: the header length fits in the file but exceeds
     * 100 MB. No page of it is ever read, so it costs no disk or memory. */
    char path[] = "/tmp/dflash-st-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    uint64_t n = DF_ST_MAX_HEADER + 1ull;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(n >> (8 * i));
    cr_assert_eq(write(fd, len, 8), 8);
    cr_assert_eq(ftruncate(fd, (off_t)(n + 64)), 0);
    close(fd);
    df_st_file *f;
    df_status st = df_st_open(path, &f);
    unlink(path);
    EXPECT_ERROR(st, DF_ERR_FORMAT, path, "larger than the limit");
}

Test(safetensors, rejects_headers_that_are_not_objects) {
    HEADER_CASE("[1, 2]", 0, DF_ERR_FORMAT, "bad.safetensors", "an array", "expected a JSON object");
    HEADER_CASE("\"text\"", 0, DF_ERR_FORMAT, "bad.safetensors", "a string", "expected a JSON object");
    HEADER_CASE("", 0, DF_ERR_FORMAT, "bad.safetensors", "header JSON", "line");
    /* The syntax error sits on line 3: line and column must be reported. */
    HEADER_CASE("{\n \"a\": {\"dtype\": \"F32\",\n  \"shape\": [1,, 2]}}", 0, DF_ERR_FORMAT, "bad.safetensors",
                "header JSON", "line 3 column");
    HEADER_CASE("{\"a\": 1} trailing", 0, DF_ERR_FORMAT, "bad.safetensors", "header JSON");
    /* Invalid UTF-8 in a name. */
    HEADER_CASE("{\"\xff\xfe\": {}}", 0, DF_ERR_FORMAT, "bad.safetensors", "header JSON");
}

Test(safetensors, rejects_bad_tensor_entries) {
#define T(rest) "{\"w.0\": " rest "}"
    HEADER_CASE(T("[1]"), 4, DF_ERR_FORMAT, "bad.safetensors", "w.0", "expected an object");
    HEADER_CASE(T("{\"shape\": [1], \"data_offsets\": [0, 4]}"), 4, DF_ERR_FORMAT, "w.0", "missing \"dtype\"");
    HEADER_CASE(T("{\"dtype\": 5, \"shape\": [1], \"data_offsets\": [0, 4]}"), 4, DF_ERR_FORMAT, "w.0",
                "\"dtype\" is an integer", "expected a string");
    HEADER_CASE(T("{\"dtype\": \"F33\", \"shape\": [1], \"data_offsets\": [0, 4]}"), 4, DF_ERR_UNSUPPORTED,
                "bad.safetensors", "w.0", "unknown dtype", "F33");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"data_offsets\": [0, 4]}"), 4, DF_ERR_FORMAT, "w.0", "missing \"shape\"");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"shape\": 1, \"data_offsets\": [0, 4]}"), 4, DF_ERR_FORMAT, "w.0",
                "\"shape\" is an integer", "expected an array");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"shape\": [\"1\"], \"data_offsets\": [0, 4]}"), 4, DF_ERR_FORMAT,
                "w.0", "shape[0] is a string");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]}"), 4, DF_ERR_FORMAT,
                "w.0", "shape[1] is negative");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"shape\": [1.0], \"data_offsets\": [0, 4]}"), 4, DF_ERR_FORMAT,
                "w.0", "shape[0] is a real number");
    HEADER_CASE(T("{\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 1]}"), 1,
                DF_ERR_UNSUPPORTED, "w.0", "9 dimensions");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"shape\": [1]}"), 4, DF_ERR_FORMAT, "w.0", "missing \"data_offsets\"");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}"), 4, DF_ERR_FORMAT, "w.0",
                "data_offsets", "[begin, end]");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": {\"a\": 1}}"), 4, DF_ERR_FORMAT,
                "w.0", "data_offsets", "an object");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, \"4\"]}"), 4, DF_ERR_FORMAT,
                "w.0", "data_offsets[1] is a string");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}"), 4, DF_ERR_FORMAT,
                "w.0", "data_offsets[0] is negative");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 0]}"), 4, DF_ERR_FORMAT, "w.0",
                "begin 4 is after end 0");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}"), 4, DF_ERR_FORMAT,
                "bad.safetensors", "w.0", "end 8 is past the end", "4 bytes");
    HEADER_CASE(T("{\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}"), 8, DF_ERR_FORMAT, "w.0",
                "span 8 bytes", "3 elements of F32 need 12 bytes");
    HEADER_CASE(T("{\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [0, 4]}"), 8, DF_ERR_FORMAT,
                "w.0", "need 8 bytes");
    /* 2^32 * 2^32 wraps to 0 in 64 bits; must be refused, not read as an empty tensor. */
    HEADER_CASE(T("{\"dtype\": \"U8\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 0]}"), 0,
                DF_ERR_FORMAT, "w.0", "overflows");
    /* 2^62 elements fit, 2^62 * 8 bytes do not. */
    HEADER_CASE(T("{\"dtype\": \"F64\", \"shape\": [4611686018427387904], \"data_offsets\": [0, 0]}"), 0,
                DF_ERR_FORMAT, "w.0", "byte size", "overflows");
    /* A number beyond int64: the JSON parser refuses it. */
    HEADER_CASE(T("{\"dtype\": \"U8\", \"shape\": [99999999999999999999], \"data_offsets\": [0, 0]}"), 0,
                DF_ERR_FORMAT, "header JSON");
#undef T
}

Test(safetensors, rejects_overlaps_duplicates_and_bad_metadata) {
    HEADER_CASE("{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
                " \"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [3, 7]}}",
                8, DF_ERR_FORMAT, "bad.safetensors", "'a'", "'b'", "overlap");
    /* Containment, with a gap-free neighbour between: the long tensor is the one to blame. */
    HEADER_CASE("{\"long\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]},"
                " \"x\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [2, 2]},"
                " \"inner\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [5, 7]}}",
                8, DF_ERR_FORMAT, "'long'", "'inner'", "overlap");
    /* Same range twice (aliasing) is an overlap too. */
    HEADER_CASE("{\"a\": {\"dtype\": \"I16\", \"shape\": [2], \"data_offsets\": [0, 4]},"
                " \"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]}}",
                4, DF_ERR_FORMAT, "overlap");
    HEADER_CASE("{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
                " \"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}",
                2, DF_ERR_FORMAT, "bad.safetensors", "duplicate", "a");
    HEADER_CASE("{\"__metadata__\": [\"x\"]}", 0, DF_ERR_FORMAT, "bad.safetensors", "__metadata__",
                "an array", "expected an object");
    HEADER_CASE("{\"__metadata__\": {\"format\": \"pt\", \"step\": 10}}", 0, DF_ERR_FORMAT, "__metadata__",
                "'step'", "an integer", "expected a string");
    HEADER_CASE("{\"__metadata__\": {\"a\": \"1\", \"a\": \"2\"}}", 0, DF_ERR_FORMAT, "duplicate");
}

Test(safetensors, accepts_null_metadata_gaps_and_padding) {
    /* Writers pad the header with spaces to align the data; gaps between tensors and a null
     * __metadata__ are not errors either. */
    size_t size;
    uint8_t *bytes = raw_file("{\"__metadata__\": null, \"a\": {\"dtype\": \"U8\", \"shape\": [2], "
                              "\"data_offsets\": [4, 6]}}      ",
                              8, &size);
    df_st_file *f;
    cr_assert_eq(df_st_open_memory(bytes, size, "pad", &f), DF_OK, "%s", df_last_error());
    cr_assert_eq(f->n_meta, 0u);
    const df_st_tensor *a = df_st_find(f, "a");
    cr_assert_not_null(a);
    cr_assert_eq(a->data, bytes + f->data_start + 4);
    cr_assert_eq(a->data[0], (uint8_t)(4 * 37 + 11));
    df_st_close(f);
    free(bytes);
}

/* ---- robustness sweeps ---------------------------------------------------------------------- */

static uint8_t *small_valid_file(size_t *size) {
    df_rng r;
    df_rng_seed(&r, 5);
    uint8_t d[64];
    fill_random(&r, d, sizeof d);
    builder b = {0};
    b_raw(&b, "__metadata__", "{\"format\": \"pt\"}");
    b_tensor(&b, "embed", "BF16", 2, (int64_t[]){4, 3}, d, 24);
    b_tensor(&b, "norm", "F32", 1, (int64_t[]){4}, d + 24, 16);
    b_tensor(&b, "ids", "I64", 1, (int64_t[]){3}, d + 40, 24);
    uint8_t *f = b_finish(&b, size);
    b_free(&b);
    return f;
}

Test(safetensors, every_truncation_is_refused_cleanly) {
    size_t size;
    uint8_t *full = small_valid_file(&size);
    df_st_file *f;
    cr_assert_eq(df_st_open_memory(full, size, "full", &f), DF_OK, "%s", df_last_error());
    df_st_close(f);
    for (size_t n = 0; n < size; n++) {
        /* An exact-size copy, so that ASan sees any read past the prefix. */
        uint8_t *prefix = malloc(n ? n : 1);
        memcpy(prefix, full, n);
        df_status st = df_st_open_memory(prefix, n, "cut", &f);
        cr_assert_neq(st, DF_OK, "prefix of %zu of %zu bytes was accepted", n, size);
        cr_assert_null(f);
        cr_assert(strstr(df_last_error(), "cut") != NULL, "%s", df_last_error());
        free(prefix);
    }
    free(full);
}

Test(safetensors, every_byte_flip_is_survived) {
    /* Not every corruption is detectable (data bytes are opaque); none may crash, and an
     * accepted file's tensors must stay inside the buffer. */
    size_t size;
    uint8_t *full = small_valid_file(&size);
    uint8_t *copy = malloc(size);
    const uint8_t flips[] = {0x01, 0x80, 0xff, 0x20};
    for (size_t i = 0; i < size; i++) {
        for (size_t k = 0; k < sizeof flips; k++) {
            memcpy(copy, full, size);
            copy[i] ^= flips[k];
            df_st_file *f;
            if (df_st_open_memory(copy, size, "flip", &f) != DF_OK) continue;
            for (size_t t = 0; t < f->n_tensors; t++) {
                const df_st_tensor *x = &f->tensors[t];
                cr_assert(x->data >= copy + f->data_start && x->data + x->nbytes <= copy + size);
            }
            df_st_close(f);
        }
    }
    free(copy);
    free(full);
}

Test(safetensors, open_reports_missing_files) {
    df_st_file *f;
    EXPECT_ERROR(df_st_open("/nonexistent/dir/model.safetensors", &f), DF_ERR_IO,
                 "/nonexistent/dir/model.safetensors");
    cr_assert_null(f);
}

Test(safetensors, reads_the_python_written_seed_files) {
    /* The fuzz seeds come from scripts/make_fuzz_seeds_safetensors.py (Python's json and
     * struct): a second, independent writer. */
    static const struct {
        const char *file;
        size_t n_tensors;
        const char *probe, *dtype;
        int n_dims;
        int64_t d0;
    } k_seeds[] = {
        {"one_f32", 1, "w", "F32", 2, 2},
        {"mixed_dtypes", 10, "f", "F8_E4M3", 1, 1},
        {"scalar_and_empty", 2, "z", "BF16", 2, 0},
        {"empty_header", 0, NULL, NULL, 0, 0},
        {"model_like", 3, "model.layers.0.input_layernorm.weight", "F32", 1, 4},
    };
    for (size_t i = 0; i < sizeof k_seeds / sizeof k_seeds[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus/fuzz_safetensors/%s.safetensors", DFLASH_SOURCE_DIR,
                 k_seeds[i].file);
        df_st_file *f;
        cr_assert_eq(df_st_open(path, &f), DF_OK, "%s", df_last_error());
        cr_assert_eq(f->n_tensors, k_seeds[i].n_tensors, "%s", path);
        cr_assert_eq(f->data_start % 8, 0u, "%s: the writer pads the header to 8 bytes", path);
        if (k_seeds[i].probe) {
            const df_st_tensor *t = df_st_find(f, k_seeds[i].probe);
            cr_assert_not_null(t, "%s: %s", path, k_seeds[i].probe);
            cr_assert_str_eq(t->dtype_name, k_seeds[i].dtype);
            cr_assert_eq(t->n_dims, k_seeds[i].n_dims);
            cr_assert_eq(t->shape[0], k_seeds[i].d0);
        }
        if (strcmp(k_seeds[i].file, "model_like") == 0) {
            cr_assert_str_eq(df_st_meta_get(f, "format"), "pt");
            cr_assert_str_eq(df_st_meta_get(f, "note"), "x");
        }
        df_st_close(f);
    }
}

/* ---- sharded checkpoints -------------------------------------------------------------------- */

static char g_dir[64];

static void remove_dir(void) {
    if (!g_dir[0]) return;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(g_dir);
    g_dir[0] = '\0';
}

static void make_dir(void) {
    strcpy(g_dir, "/tmp/dflash-ckpt-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
}

static void write_in_dir(const char *name, const void *bytes, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    write_file(p, bytes, n);
}

/* A shard holding U8 tensors named names[i], each of 3 bytes seeded by its name. */
static void write_shard(const char *file, const char *const *names, int n) {
    builder b = {0};
    for (int i = 0; i < n; i++) {
        uint8_t d[3] = {(uint8_t)names[i][0], (uint8_t)strlen(names[i]), (uint8_t)(names[i][strlen(names[i]) - 1])};
        b_tensor(&b, names[i], "U8", 1, (int64_t[]){3}, d, 3);
    }
    size_t size;
    uint8_t *bytes = b_finish(&b, &size);
    write_in_dir(file, bytes, size);
    free(bytes);
    b_free(&b);
}

static void write_index(const char *weight_map_body) {
    strbuf s = {0};
    sb_printf(&s, "{\"metadata\": {\"total_size\": 12}, \"weight_map\": {%s}}", weight_map_body);
    write_in_dir("model.safetensors.index.json", s.s, s.len);
    free(s.s);
}

static const char *const k_shard1[] = {"model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight"};
static const char *const k_shard2[] = {"lm_head.weight", "model.norm.weight", "model.layers.1.x"};
#define GOOD_MAP                                                                               \
    "\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\", "                    \
    "\"model.layers.0.mlp.up_proj.weight\": \"model-00001-of-00002.safetensors\", "            \
    "\"model.layers.1.x\": \"model-00002-of-00002.safetensors\", "                             \
    "\"lm_head.weight\": \"model-00002-of-00002.safetensors\", "                               \
    "\"model.norm.weight\": \"model-00002-of-00002.safetensors\""

static void write_good_shards(void) {
    write_shard("model-00001-of-00002.safetensors", k_shard1, 2);
    write_shard("model-00002-of-00002.safetensors", k_shard2, 3);
}

TestSuite(checkpoint, .init = make_dir, .fini = remove_dir);

Test(checkpoint, sharded_directory) {
    write_good_shards();
    write_index(GOOD_MAP);
    df_ckpt *c;
    cr_assert_eq(df_ckpt_open(g_dir, &c), DF_OK, "%s", df_last_error());
    cr_assert_eq(c->n_shards, 2u);
    cr_assert_eq(df_ckpt_count(c), 5u);
    const char *const sorted[] = {"lm_head.weight", "model.embed_tokens.weight",
                                  "model.layers.0.mlp.up_proj.weight", "model.layers.1.x", "model.norm.weight"};
    for (size_t i = 0; i < 5; i++) {
        const df_st_tensor *t = df_ckpt_tensor(c, i);
        cr_assert_str_eq(t->name, sorted[i]);
        cr_assert_eq(df_ckpt_find(c, sorted[i]), t);
        cr_assert_eq(t->data[0], (uint8_t)sorted[i][0]);
        cr_assert_eq(t->data[1], (uint8_t)strlen(sorted[i]));
        const char *want_shard = i == 1 || i == 2 ? "model-00001-of-00002.safetensors"
                                                  : "model-00002-of-00002.safetensors";
        cr_assert(strstr(df_ckpt_shard_path(c, i), want_shard), "%s", df_ckpt_shard_path(c, i));
    }
    cr_assert_null(df_ckpt_tensor(c, 5));
    cr_assert_null(df_ckpt_find(c, "model.layers.2.x"));
    const df_st_tensor *t;
    EXPECT_ERROR(df_ckpt_get(c, "model.layers.2.x", &t), DF_ERR_NOT_FOUND, "model.layers.2.x", g_dir);
    df_ckpt_close(c);
}

Test(checkpoint, single_file_directory_and_direct_file) {
    write_shard("model.safetensors", k_shard2, 3);
    df_ckpt *c;
    cr_assert_eq(df_ckpt_open(g_dir, &c), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_ckpt_count(c), 3u);
    cr_assert_not_null(df_ckpt_find(c, "model.norm.weight"));
    df_ckpt_close(c);

    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", g_dir);
    cr_assert_eq(df_ckpt_open(p, &c), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_ckpt_count(c), 3u);
    cr_assert_str_eq(df_ckpt_tensor(c, 0)->name, "lm_head.weight");
    df_ckpt_close(c);
}

Test(checkpoint, empty_directory_is_not_found) {
    df_ckpt *c;
    EXPECT_ERROR(df_ckpt_open(g_dir, &c), DF_ERR_NOT_FOUND, g_dir, "model.safetensors");
    cr_assert_null(c);
    EXPECT_ERROR(df_ckpt_open("/nonexistent/model/dir", &c), DF_ERR_NOT_FOUND, "/nonexistent/model/dir");
}

Test(checkpoint, index_names_a_missing_shard) {
    write_shard("model-00001-of-00002.safetensors", k_shard1, 2);
    write_index(GOOD_MAP);
    df_ckpt *c;
    EXPECT_ERROR(df_ckpt_open(g_dir, &c), DF_ERR_NOT_FOUND, "model.safetensors.index.json",
                 "model-00002-of-00002.safetensors", "missing");
    cr_assert_null(c);
}

Test(checkpoint, index_maps_a_tensor_the_shard_lacks) {
    write_good_shards();
    write_index(GOOD_MAP ", \"model.layers.9.ghost\": \"model-00001-of-00002.safetensors\"");
    df_ckpt *c;
    EXPECT_ERROR(df_ckpt_open(g_dir, &c), DF_ERR_MISMATCH, "model.layers.9.ghost",
                 "model-00001-of-00002.safetensors", "does not contain");
}

Test(checkpoint, index_points_at_the_wrong_shard) {
    write_good_shards();
    write_index("\"model.embed_tokens.weight\": \"model-00002-of-00002.safetensors\", "
                "\"model.layers.0.mlp.up_proj.weight\": \"model-00001-of-00002.safetensors\", "
                "\"model.layers.1.x\": \"model-00002-of-00002.safetensors\", "
                "\"lm_head.weight\": \"model-00002-of-00002.safetensors\", "
                "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"");
    df_ckpt *c;
    EXPECT_ERROR(df_ckpt_open(g_dir, &c), DF_ERR_MISMATCH, "model.embed_tokens.weight", "does not contain");
}

Test(checkpoint, tensor_in_two_shards) {
    const char *const again[] = {"model.norm.weight", "lm_head.weight", "model.layers.1.x"};
    write_shard("model-00002-of-00002.safetensors", again, 3);
    const char *const dup[] = {"model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight",
                               "model.norm.weight"};
    write_shard("model-00001-of-00002.safetensors", dup, 3);
    write_index(GOOD_MAP);
    df_ckpt *c;
    EXPECT_ERROR(df_ckpt_open(g_dir, &c), DF_ERR_MISMATCH, "model.norm.weight", "two shards",
                 "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
}

Test(checkpoint, shard_holds_an_unlisted_tensor) {
    write_good_shards();
    write_index("\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\", "
                "\"model.layers.0.mlp.up_proj.weight\": \"model-00001-of-00002.safetensors\", "
                "\"lm_head.weight\": \"model-00002-of-00002.safetensors\", "
                "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"");
    df_ckpt *c;
    EXPECT_ERROR(df_ckpt_open(g_dir, &c), DF_ERR_MISMATCH, "model.layers.1.x", "does not list");
}

Test(checkpoint, bad_index_files) {
    df_ckpt *c;
    write_good_shards();
    write_index("\"a\": \"../model-00001-of-00002.safetensors\"");
    EXPECT_ERROR(df_ckpt_open(g_dir, &c), DF_ERR_FORMAT, "'a'", "inside the model directory");
    write_index("\"a\": \"/etc/passwd\"");
    EXPECT_ERROR(df_ckpt_open(g_dir, &c), DF_ERR_FORMAT, "/etc/passwd");
    write_index("\"a\": 3");
    EXPECT_ERROR(df_ckpt_open(g_dir, &c), DF_ERR_FORMAT, "weight_map entry 'a'", "not a string");
    write_in_dir("model.safetensors.index.json", "{\"metadata\": {}}", 16);
    EXPECT_ERROR(df_ckpt_open(g_dir, &c), DF_ERR_FORMAT, "missing \"weight_map\"");
    write_in_dir("model.safetensors.index.json", "{\"weight_map\":\n {,}}", 20);
    EXPECT_ERROR(df_ckpt_open(g_dir, &c), DF_ERR_FORMAT, "model.safetensors.index.json", "line 2");
    /* A corrupt shard is reported with the shard's own path. */
    write_index(GOOD_MAP);
    write_in_dir("model-00002-of-00002.safetensors", "\x02\0\0\0\0\0\0\0[]", 10);
    EXPECT_ERROR(df_ckpt_open(g_dir, &c), DF_ERR_FORMAT, "model-00002-of-00002.safetensors",
                 "expected a JSON object");
    cr_assert_null(c);
}
