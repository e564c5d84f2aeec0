/* GGUF reader and writer.
 *
 * Files come from two sources that share no code: a byte-by-byte little-endian builder in this
 * file (which encodes the format from the spec: ggml docs/gguf.md) and our writer. The reader
 * must parse the hand-built files exactly, and read back what the writer wrote. Type sizes and
 * block geometry used for expectations are written out here as constants, not taken from
 * quant/types.h. Every bad input must give the intended status and a message that names the
 * file and the problem. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/rng.h"
#include "format/gguf.h"
#include "format/gguf_write.h"

/* GGUF value type ids (docs/gguf.md). */
enum { T_U8 = 0, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 };
/* ggml tensor type ids and their geometry (ggml.h / ggml.c). */
enum { G_F32 = 0, G_F16 = 1, G_Q4_0 = 2, G_Q8_0 = 8, G_Q4_K = 12, G_Q6_K = 14, G_I32 = 26, G_BF16 = 30 };
static uint64_t ggml_bytes(int type, int64_t n) {
    switch (type) {
    case G_F32: case G_I32: return 4 * (uint64_t)n;
    case G_F16: case G_BF16: return 2 * (uint64_t)n;
    case G_Q4_0: return (uint64_t)n / 32 * 18;
    case G_Q8_0: return (uint64_t)n / 32 * 34;
    case G_Q4_K: return (uint64_t)n / 256 * 144;
    case G_Q6_K: return (uint64_t)n / 256 * 210;
    }
    cr_assert_fail("no size for type %d", type);
    return 0;
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* ---- an independent little-endian byte builder ------------------------------------------------ */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes;

static void by_raw(bytes *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void by_le(bytes *b, uint64_t v, int width) {
    uint8_t t[8];
    for (int i = 0; i < width; i++) t[i] = (uint8_t)(v >> (8 * i));
    by_raw(b, t, (size_t)width);
}
static void by_u8(bytes *b, uint8_t v) { by_le(b, v, 1); }
static void by_u16(bytes *b, uint16_t v) { by_le(b, v, 2); }
static void by_u32(bytes *b, uint32_t v) { by_le(b, v, 4); }
static void by_u64(bytes *b, uint64_t v) { by_le(b, v, 8); }
static void by_f32(bytes *b, float f) { uint32_t u; memcpy(&u, &f, 4); by_u32(b, u); }
static void by_f64(bytes *b, double f) { uint64_t u; memcpy(&u, &f, 8); by_u64(b, u); }
static void by_strn(bytes *b, const char *s, size_t n) { by_u64(b, n); by_raw(b, s, n); }
static void by_str(bytes *b, const char *s) { by_strn(b, s, strlen(s)); }
static void by_pad(bytes *b, size_t align) { while (b->len % align) by_u8(b, 0); }
static void by_free(bytes *b) { free(b->p); *b = (bytes){0}; }

static void gg_header(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    by_raw(b, "GGUF", 4);
    by_u32(b, version);
    by_u64(b, n_tensors);
    by_u64(b, n_kv);
}
static void gg_key(bytes *b, const char *key, uint32_t type) { by_str(b, key); by_u32(b, type); }
static void gg_tensor(bytes *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    by_str(b, name);
    by_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) by_u64(b, ne[i]);
    by_u32(b, type);
    by_u64(b, off);
}

/* ---- helpers ---------------------------------------------------------------------------------------- */

/* Opens an exact-size heap copy so that AddressSanitizer catches any read past the end. */
static df_status open_copy(const bytes *b, const char *name, df_gguf **g, uint8_t **copy) {
    *copy = malloc(b->len ? b->len : 1);
    cr_assert_not_null(*copy);
    if (b->len) memcpy(*copy, b->p, b->len);
    return df_gguf_open_memory(*copy, b->len, name, g);
}

/* Asserts the message contains every word of the NULL-terminated list. */
static void expect_words(const char *first, ...) {
    const char *msg = df_last_error();
    va_list ap;
    va_start(ap, first);
    for (const char *w = first; w; w = va_arg(ap, const char *))
        cr_expect(strstr(msg, w) != NULL, "message \"%s\" lacks \"%s\"", msg, w);
    va_end(ap);
}

/* The bytes must fail to open with status st and a message naming bad.gguf and the words. */
#define EXPECT_BAD(b, st, ...)                                                                    \
    do {                                                                                          \
        df_gguf *g_ = NULL;                                                                       \
        uint8_t *c_;                                                                              \
        df_clear_error();                                                                         \
        df_status s_ = open_copy((b), "bad.gguf", &g_, &c_);                                      \
        cr_expect_eq(s_, (st), "status %s, expected %s: %s", df_status_name(s_), df_status_name(st), \
                     df_last_error());                                                            \
        cr_expect_null(g_);                                                                       \
        expect_words("bad.gguf", __VA_ARGS__, NULL);                                              \
        df_gguf_close(g_);                                                                        \
        free(c_);                                                                                 \
    } while (0)

static void random_bytes(df_rng *r, uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)df_rng_u64(r);
}

static char g_tmpdir[256];
static void remove_tmpdir(void) { rmdir(g_tmpdir); }  /* empty by then: each test unlinks its files */

/* Paths in a per-process temporary directory; four rotating buffers, so that a test can hold
 * a few at once. */
static const char *tmp_path(const char *leaf) {
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];
    if (!g_tmpdir[0]) {
        snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/dflash_test_gguf_XXXXXX");
        cr_assert_not_null(mkdtemp(g_tmpdir));
        atexit(remove_tmpdir);
    }
    snprintf(path, sizeof paths[0], "%s/%s", g_tmpdir, leaf);
    return path;
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void read_whole(const char *path, bytes *out) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    uint8_t buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) by_raw(out, buf, n);
    fclose(f);
}

/* ---- a hand-built file ----------------------------------------------------------------------------- */

Test(gguf, reads_a_hand_built_file_exactly) {
    df_rng rng;
    df_rng_seed(&rng, 11);
    uint8_t u8 = (uint8_t)df_rng_u64(&rng) | 0x81;
    int8_t i8 = (int8_t)-(int)(df_rng_below(&rng, 100) + 1);
    uint16_t u16 = (uint16_t)df_rng_u64(&rng) | 0x8001;
    int16_t i16 = (int16_t)-(int)(df_rng_below(&rng, 30000) + 1);
    uint32_t u32 = (uint32_t)df_rng_u64(&rng) | 0x80000001u;
    int32_t i32 = -(int32_t)df_rng_below(&rng, 1u << 30) - 1;
    float f32 = df_rng_uniform(&rng, -1000, 1000);
    uint64_t u64 = df_rng_u64(&rng) | (1ull << 63);
    int64_t i64 = -(int64_t)(df_rng_u64(&rng) >> 2) - 1;
    double f64 = df_rng_f64(&rng) * 1e300;
    uint32_t arr_u32[5];
    for (int i = 0; i < 5; i++) arr_u32[i] = (uint32_t)df_rng_u64(&rng);
    const char *toks[3] = {"hello", "", "\xff\xfe not utf-8"};

    bytes b = {0};
    gg_header(&b, 3, 2, 14);
    gg_key(&b, "general.architecture", T_STR); by_str(&b, "qwen35");
    gg_key(&b, "k.u8", T_U8); by_u8(&b, u8);
    gg_key(&b, "k.i8", T_I8); by_u8(&b, (uint8_t)i8);
    gg_key(&b, "k.u16", T_U16); by_u16(&b, u16);
    gg_key(&b, "k.i16", T_I16); by_u16(&b, (uint16_t)i16);
    gg_key(&b, "k.u32", T_U32); by_u32(&b, u32);
    gg_key(&b, "k.i32", T_I32); by_u32(&b, (uint32_t)i32);
    gg_key(&b, "k.f32", T_F32); by_f32(&b, f32);
    gg_key(&b, "k.bool", T_BOOL); by_u8(&b, 1);
    gg_key(&b, "k.u64", T_U64); by_u64(&b, u64);
    gg_key(&b, "k.i64", T_I64); by_u64(&b, (uint64_t)i64);
    gg_key(&b, "k.f64", T_F64); by_f64(&b, f64);
    gg_key(&b, "k.arr_u32", T_ARR); by_u32(&b, T_U32); by_u64(&b, 5);
    for (int i = 0; i < 5; i++) by_u32(&b, arr_u32[i]);
    gg_key(&b, "k.nested", T_ARR); by_u32(&b, T_ARR); by_u64(&b, 2);
    by_u32(&b, T_STR); by_u64(&b, 3);
    for (int i = 0; i < 3; i++) by_str(&b, toks[i]);
    by_u32(&b, T_I16); by_u64(&b, 2); by_u16(&b, 7); by_u16(&b, (uint16_t)-9);

    uint64_t ne_a[2] = {8, 3}, ne_b[2] = {64, 2};
    uint64_t size_a = 8 * 3 * 4, size_b = ggml_bytes(G_Q8_0, 64 * 2);
    uint64_t off_b = pad_to(size_a, 32);
    gg_tensor(&b, "tok.weight", 2, ne_a, G_F32, 0);
    gg_tensor(&b, "q.weight", 2, ne_b, G_Q8_0, off_b);
    size_t infos_end = b.len;
    by_pad(&b, 32);
    size_t data_at = b.len;
    uint8_t *payload = malloc(off_b + size_b);
    random_bytes(&rng, payload, off_b + size_b);
    by_raw(&b, payload, off_b + size_b);

    df_gguf *g;
    uint8_t *copy;
    cr_assert_eq(open_copy(&b, "hand.gguf", &g, &copy), DF_OK, "%s", df_last_error());
    cr_expect_eq(df_gguf_version(g), 3);
    cr_expect_eq(df_gguf_alignment(g), 32);
    cr_expect_eq(df_gguf_data_offset(g), data_at);
    cr_expect_eq(df_gguf_data_offset(g), pad_to(infos_end, 32));
    cr_expect_eq(df_gguf_file_size(g), b.len);
    cr_expect_eq(df_gguf_n_kv(g), 14);
    cr_expect_eq(df_gguf_n_tensors(g), 2);
    cr_expect_str_eq(df_gguf_arch(g), "qwen35");
    cr_expect_str_eq(df_gguf_name(g), "hand.gguf");

    /* KVs keep file order and their offsets. */
    const df_gguf_kv *kv0 = df_gguf_kv_at(g, 0);
    cr_assert_not_null(kv0);
    cr_expect_str_eq(kv0->key, "general.architecture");
    cr_expect_eq(kv0->offset, 24);
    cr_expect_str_eq(df_gguf_kv_at(g, 13)->key, "k.nested");
    cr_expect_null(df_gguf_kv_at(g, 14));

    uint32_t xu32; int32_t xi32; uint64_t xu64; int64_t xi64; float xf32; double xf64; bool xb;
    cr_assert_eq(df_gguf_get_u32(g, "k.u8", &xu32), DF_OK); cr_expect_eq(xu32, u8);
    cr_assert_eq(df_gguf_get_i32(g, "k.i8", &xi32), DF_OK); cr_expect_eq(xi32, i8);
    cr_assert_eq(df_gguf_get_u32(g, "k.u16", &xu32), DF_OK); cr_expect_eq(xu32, u16);
    cr_assert_eq(df_gguf_get_i32(g, "k.i16", &xi32), DF_OK); cr_expect_eq(xi32, i16);
    cr_assert_eq(df_gguf_get_u32(g, "k.u32", &xu32), DF_OK); cr_expect_eq(xu32, u32);
    cr_assert_eq(df_gguf_get_i32(g, "k.i32", &xi32), DF_OK); cr_expect_eq(xi32, i32);
    cr_assert_eq(df_gguf_get_f32(g, "k.f32", &xf32), DF_OK); cr_expect(memcmp(&xf32, &f32, 4) == 0);
    cr_assert_eq(df_gguf_get_bool(g, "k.bool", &xb), DF_OK); cr_expect(xb);
    cr_assert_eq(df_gguf_get_u64(g, "k.u64", &xu64), DF_OK); cr_expect_eq(xu64, u64);
    cr_assert_eq(df_gguf_get_i64(g, "k.i64", &xi64), DF_OK); cr_expect_eq(xi64, i64);
    cr_assert_eq(df_gguf_get_f64(g, "k.f64", &xf64), DF_OK); cr_expect(memcmp(&xf64, &f64, 8) == 0);

    df_gguf_value arr, e;
    cr_assert_eq(df_gguf_get_arr(g, "k.arr_u32", &arr), DF_OK);
    cr_expect_eq(arr.elem_type, DF_GGUF_U32);
    cr_expect_eq(arr.count, 5);
    cr_expect_eq(arr.size, 20);
    for (int i = 0; i < 5; i++) {
        cr_assert(df_gguf_arr_elem(&arr, (uint64_t)i, &e));
        cr_expect(df_gguf_value_as_u64(&e, &xu64));
        cr_expect_eq(xu64, arr_u32[i]);
    }
    cr_expect(!df_gguf_arr_elem(&arr, 5, &e));

    cr_assert_eq(df_gguf_get_arr(g, "k.nested", &arr), DF_OK);
    cr_expect_eq(arr.elem_type, DF_GGUF_ARRAY);
    cr_expect_eq(arr.count, 2);
    cr_expect(!df_gguf_arr_elem(&arr, 0, &e), "variable-size elements have no O(1) access");
    df_gguf_iter it, it2;
    df_gguf_iter_init(&it, &arr);
    cr_assert(df_gguf_iter_next(&it, &e));
    cr_expect_eq(e.type, DF_GGUF_ARRAY);
    cr_expect_eq(e.elem_type, DF_GGUF_STRING);
    cr_expect_eq(e.count, 3);
    df_gguf_iter_init(&it2, &e);
    df_gguf_value s;
    for (int i = 0; i < 3; i++) {
        cr_assert(df_gguf_iter_next(&it2, &s));
        cr_expect_eq(s.type, DF_GGUF_STRING);
        cr_expect_eq(s.size, strlen(toks[i]));
        cr_expect(memcmp(s.data, toks[i], s.size) == 0);
    }
    cr_expect(!df_gguf_iter_next(&it2, &s));
    cr_assert(df_gguf_iter_next(&it, &e));
    cr_expect_eq(e.elem_type, DF_GGUF_I16);
    cr_expect_eq(e.count, 2);
    cr_assert(df_gguf_arr_elem(&e, 1, &s));
    cr_expect(df_gguf_value_as_i64(&s, &xi64));
    cr_expect_eq(xi64, -9);
    cr_expect(!df_gguf_iter_next(&it, &e));

    const df_gguf_tensor *t;
    cr_assert_eq(df_gguf_get_tensor(g, "tok.weight", &t), DF_OK);
    cr_expect_eq(t->type, G_F32);
    cr_expect_eq(t->n_dims, 2);
    cr_expect(t->ne[0] == 8 && t->ne[1] == 3 && t->ne[2] == 1 && t->ne[3] == 1);
    cr_expect_eq(t->n_elements, 24);
    cr_expect_eq(t->offset, 0);
    cr_expect_eq(t->size, size_a);
    cr_expect_eq((const uint8_t *)t->data, copy + data_at);
    cr_expect(memcmp(t->data, payload, size_a) == 0);
    cr_assert_eq(df_gguf_get_tensor(g, "q.weight", &t), DF_OK);
    cr_expect_eq(t->type, G_Q8_0);
    cr_expect_eq(t->offset, off_b);
    cr_expect_eq(t->size, size_b);
    cr_expect(memcmp(t->data, payload + off_b, size_b) == 0);
    cr_expect_eq(df_gguf_tensor_at(g, 1), t);
    cr_expect_null(df_gguf_tensor_at(g, 2));
    cr_expect_null(df_gguf_find_tensor(g, "q.weigh"));

    df_gguf_close(g);
    free(copy);
    free(payload);
    by_free(&b);
}

Test(gguf, accepts_version_2_and_no_tensors) {
    bytes b = {0};
    gg_header(&b, 2, 0, 1);
    gg_key(&b, "general.name", T_STR); by_str(&b, "v2");
    df_gguf *g;
    uint8_t *copy;
    cr_assert_eq(open_copy(&b, "v2.gguf", &g, &copy), DF_OK, "%s", df_last_error());
    cr_expect_eq(df_gguf_version(g), 2);
    cr_expect_eq(df_gguf_n_tensors(g), 0);
    cr_expect_null(df_gguf_arch(g));
    const char *s;
    size_t n;
    cr_assert_eq(df_gguf_get_str(g, "general.name", &s, &n), DF_OK);
    cr_expect(n == 2 && memcmp(s, "v2", 2) == 0);
    df_gguf_close(g);
    free(copy);
    by_free(&b);
}

Test(gguf, last_tensor_without_trailing_padding_loads) {
    /* A writer that skips the final padding still produces a readable file. */
    bytes b = {0};
    gg_header(&b, 3, 1, 0);
    uint64_t ne[1] = {3};
    gg_tensor(&b, "w", 1, ne, G_F32, 0);
    by_pad(&b, 32);
    by_f32(&b, 1.5f); by_f32(&b, -2.0f); by_f32(&b, 3.25f);
    df_gguf *g;
    uint8_t *copy;
    cr_assert_eq(open_copy(&b, "nopad.gguf", &g, &copy), DF_OK, "%s", df_last_error());
    const df_gguf_tensor *t = df_gguf_find_tensor(g, "w");
    cr_assert_not_null(t);
    float f[3];
    memcpy(f, t->data, 12);
    cr_expect(f[0] == 1.5f && f[1] == -2.0f && f[2] == 3.25f);
    df_gguf_close(g);
    free(copy);
    by_free(&b);
}

Test(gguf, nesting_of_eight_levels_loads_nine_does_not) {
    for (int levels = 8; levels <= 9; levels++) {
        bytes b = {0};
        gg_header(&b, 3, 0, 1);
        gg_key(&b, "deep", T_ARR);
        for (int i = 0; i < levels - 1; i++) { by_u32(&b, T_ARR); by_u64(&b, 1); }
        by_u32(&b, T_U8); by_u64(&b, 1); by_u8(&b, 42);
        if (levels == 8) {
            df_gguf *g;
            uint8_t *copy;
            cr_assert_eq(open_copy(&b, "deep.gguf", &g, &copy), DF_OK, "%s", df_last_error());
            df_gguf_value v, e;
            cr_assert_eq(df_gguf_get_arr(g, "deep", &v), DF_OK);
            for (int i = 0; i < levels - 1; i++) {
                df_gguf_iter it;
                df_gguf_iter_init(&it, &v);
                cr_assert(df_gguf_iter_next(&it, &e), "level %d", i);
                v = e;
            }
            cr_expect_eq(v.elem_type, DF_GGUF_U8);
            cr_expect_eq(v.data[0], 42);
            df_gguf_close(g);
            free(copy);
        } else {
            EXPECT_BAD(&b, DF_ERR_FORMAT, "deep", "nested deeper than 8");
        }
        by_free(&b);
    }
}

/* ---- writer round trip ----------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int type;
    int n_dims;
    int64_t ne[4];
} tdecl;

static const tdecl k_tensors[] = {
    {"token_embd.weight", G_F32, 2, {16, 5, 1, 1}},
    {"blk.0.attn_q.weight", G_Q8_0, 2, {64, 3, 1, 1}},
    {"blk.0.ffn_up.weight", G_Q4_K, 2, {256, 2, 1, 1}},
    {"blk.0.ssm_conv1d.weight", G_F16, 3, {4, 7, 3, 1}},
    {"blk.0.ssm_a", G_F32, 1, {7, 1, 1, 1}},
    {"blk.0.four_d", G_BF16, 4, {2, 3, 2, 3}},
    {"blk.0.q6k", G_Q6_K, 1, {512, 1, 1, 1}},
    {"blk.0.q40", G_Q4_0, 2, {32, 1, 1, 1}},
    {"ids", G_I32, 1, {9, 1, 1, 1}},
};
#define N_TENSORS (sizeof k_tensors / sizeof k_tensors[0])

/* Writes a file with every value kind and the tensors above; data is random, written in
 * chunks of random size. Returns the tensor payloads (caller frees). */
static uint8_t **write_everything(const char *path, uint32_t alignment, df_rng *rng) {
    df_gguf_writer *w;
    cr_assert_eq(df_gguf_writer_create(path, &w), DF_OK, "%s", df_last_error());
    if (alignment) cr_assert_eq(df_gguf_writer_add_u32(w, "general.alignment", alignment), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_gguf_writer_add_str(w, "general.architecture", "qwen35"), DF_OK);
    cr_assert_eq(df_gguf_writer_add_u8(w, "v.u8", 0xa5), DF_OK);
    cr_assert_eq(df_gguf_writer_add_i8(w, "v.i8", -77), DF_OK);
    cr_assert_eq(df_gguf_writer_add_u16(w, "v.u16", 0xbeef), DF_OK);
    cr_assert_eq(df_gguf_writer_add_i16(w, "v.i16", -12345), DF_OK);
    cr_assert_eq(df_gguf_writer_add_u32(w, "v.u32", 0xdeadbeefu), DF_OK);
    cr_assert_eq(df_gguf_writer_add_i32(w, "v.i32", -2000000000), DF_OK);
    cr_assert_eq(df_gguf_writer_add_f32(w, "v.f32", 1e-6f), DF_OK);
    cr_assert_eq(df_gguf_writer_add_bool(w, "v.bool", true), DF_OK);
    cr_assert_eq(df_gguf_writer_add_u64(w, "v.u64", 0xfedcba9876543210ull), DF_OK);
    cr_assert_eq(df_gguf_writer_add_i64(w, "v.i64", -9000000000000000000ll), DF_OK);
    cr_assert_eq(df_gguf_writer_add_f64(w, "v.f64", 1e-300), DF_OK);
    cr_assert_eq(df_gguf_writer_add_strn(w, "v.bin", "a\0b\xff", 4), DF_OK);

    uint8_t a_u8[3] = {1, 200, 3};
    int8_t a_i8[3] = {-1, 100, -128};
    uint16_t a_u16[2] = {65535, 7};
    int16_t a_i16[2] = {-32768, 32767};
    uint32_t a_u32[4] = {0, 1, 0xffffffffu, 12345};
    int32_t a_i32[4] = {-1, 2, -3, 2147483647};
    float a_f32[3] = {0.5f, -1.25f, 3e38f};
    bool a_bool[4] = {true, false, false, true};
    uint64_t a_u64[2] = {0xffffffffffffffffull, 42};
    int64_t a_i64[2] = {-1, 1ll << 62};
    double a_f64[2] = {-0.0, 6.02e23};
    cr_assert_eq(df_gguf_writer_add_arr(w, "a.u8", DF_GGUF_U8, a_u8, 3), DF_OK);
    cr_assert_eq(df_gguf_writer_add_arr(w, "a.i8", DF_GGUF_I8, a_i8, 3), DF_OK);
    cr_assert_eq(df_gguf_writer_add_arr(w, "a.u16", DF_GGUF_U16, a_u16, 2), DF_OK);
    cr_assert_eq(df_gguf_writer_add_arr(w, "a.i16", DF_GGUF_I16, a_i16, 2), DF_OK);
    cr_assert_eq(df_gguf_writer_add_arr(w, "a.u32", DF_GGUF_U32, a_u32, 4), DF_OK);
    cr_assert_eq(df_gguf_writer_add_arr(w, "a.i32", DF_GGUF_I32, a_i32, 4), DF_OK);
    cr_assert_eq(df_gguf_writer_add_arr(w, "a.f32", DF_GGUF_F32, a_f32, 3), DF_OK);
    cr_assert_eq(df_gguf_writer_add_arr(w, "a.bool", DF_GGUF_BOOL, a_bool, 4), DF_OK);
    cr_assert_eq(df_gguf_writer_add_arr(w, "a.u64", DF_GGUF_U64, a_u64, 2), DF_OK);
    cr_assert_eq(df_gguf_writer_add_arr(w, "a.i64", DF_GGUF_I64, a_i64, 2), DF_OK);
    cr_assert_eq(df_gguf_writer_add_arr(w, "a.f64", DF_GGUF_F64, a_f64, 2), DF_OK);
    cr_assert_eq(df_gguf_writer_add_arr(w, "a.empty", DF_GGUF_F32, NULL, 0), DF_OK);
    const char *strs[4] = {"Ġthe", "", "<|im_end|>", "\xe4\xb8\xad"};
    cr_assert_eq(df_gguf_writer_add_arr_str(w, "a.str", strs, NULL, 4), DF_OK);
    const char *bins[2] = {"x\0y", "zz"};
    size_t lens[2] = {3, 2};
    cr_assert_eq(df_gguf_writer_add_arr_str(w, "a.bin", bins, lens, 2), DF_OK);

    /* nested: [ [u32 x4], [str x2], [ [i8 x3], [] ], [] ] */
    cr_assert_eq(df_gguf_writer_begin_arr_of_arr(w, "a.nested", 4), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_gguf_writer_elem_arr(w, DF_GGUF_U32, a_u32, 4), DF_OK);
    cr_assert_eq(df_gguf_writer_elem_arr_str(w, strs, NULL, 2), DF_OK);
    cr_assert_eq(df_gguf_writer_elem_begin(w, 2), DF_OK);
    cr_assert_eq(df_gguf_writer_elem_arr(w, DF_GGUF_I8, a_i8, 3), DF_OK);
    cr_assert_eq(df_gguf_writer_elem_arr(w, DF_GGUF_F64, NULL, 0), DF_OK);
    cr_assert_eq(df_gguf_writer_elem_end(w), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_gguf_writer_elem_begin(w, 0), DF_OK);
    cr_assert_eq(df_gguf_writer_elem_end(w), DF_OK);
    cr_assert_eq(df_gguf_writer_end_arr_of_arr(w), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_gguf_writer_add_u32(w, "after.nested", 5), DF_OK);

    for (size_t i = 0; i < N_TENSORS; i++)
        cr_assert_eq(df_gguf_writer_add_tensor(w, k_tensors[i].name, (uint32_t)k_tensors[i].type, k_tensors[i].n_dims,
                                               k_tensors[i].ne),
                     DF_OK, "%s", df_last_error());
    cr_assert_null(df_gguf_writer_next_tensor(w));
    cr_assert_eq(df_gguf_writer_write_header(w), DF_OK, "%s", df_last_error());

    uint8_t **payloads = calloc(N_TENSORS, sizeof *payloads);
    for (size_t i = 0; i < N_TENSORS; i++) {
        const tdecl *d = &k_tensors[i];
        uint64_t n = ggml_bytes(d->type, d->ne[0] * d->ne[1] * d->ne[2] * d->ne[3]);
        payloads[i] = malloc(n);
        random_bytes(rng, payloads[i], n);
        cr_assert_str_eq(df_gguf_writer_next_tensor(w), d->name);
        if (i % 2 == 0) {
            cr_assert_eq(df_gguf_writer_write_tensor(w, d->name, payloads[i], n), DF_OK, "%s", df_last_error());
        } else {
            for (uint64_t done = 0; done < n;) {
                uint64_t k = 1 + df_rng_below(rng, 40);
                if (k > n - done) k = n - done;
                cr_assert_eq(df_gguf_writer_write(w, payloads[i] + done, k), DF_OK, "%s", df_last_error());
                done += k;
            }
        }
    }
    cr_assert_null(df_gguf_writer_next_tensor(w));
    cr_assert_eq(df_gguf_writer_finish(w), DF_OK, "%s", df_last_error());
    df_gguf_writer_free(w);
    cr_assert(file_exists(path));
    return payloads;
}

static void check_everything(const df_gguf *g, uint32_t alignment, uint8_t **payloads) {
    uint64_t align = alignment ? alignment : 32;
    cr_expect_eq(df_gguf_version(g), 3);
    cr_expect_eq(df_gguf_alignment(g), align);
    cr_expect_str_eq(df_gguf_arch(g), "qwen35");
    uint32_t u32; int32_t i32; uint64_t u64; int64_t i64; float f32; double f64; bool b;
    cr_expect(df_gguf_get_u32(g, "v.u8", &u32) == DF_OK && u32 == 0xa5);
    cr_expect(df_gguf_get_i32(g, "v.i8", &i32) == DF_OK && i32 == -77);
    cr_expect(df_gguf_get_u32(g, "v.u16", &u32) == DF_OK && u32 == 0xbeef);
    cr_expect(df_gguf_get_i32(g, "v.i16", &i32) == DF_OK && i32 == -12345);
    cr_expect(df_gguf_get_u32(g, "v.u32", &u32) == DF_OK && u32 == 0xdeadbeefu);
    cr_expect(df_gguf_get_i32(g, "v.i32", &i32) == DF_OK && i32 == -2000000000);
    cr_expect(df_gguf_get_f32(g, "v.f32", &f32) == DF_OK && f32 == 1e-6f);
    cr_expect(df_gguf_get_bool(g, "v.bool", &b) == DF_OK && b);
    cr_expect(df_gguf_get_u64(g, "v.u64", &u64) == DF_OK && u64 == 0xfedcba9876543210ull);
    cr_expect(df_gguf_get_i64(g, "v.i64", &i64) == DF_OK && i64 == -9000000000000000000ll);
    cr_expect(df_gguf_get_f64(g, "v.f64", &f64) == DF_OK && f64 == 1e-300);
    const df_gguf_kv *kv = df_gguf_find_kv(g, "v.u8");
    cr_assert_not_null(kv);
    cr_expect_eq(kv->value.type, DF_GGUF_U8, "the writer keeps the declared type");
    cr_expect_eq(df_gguf_find_kv(g, "v.i64")->value.type, DF_GGUF_I64);
    const char *s;
    size_t n;
    cr_expect(df_gguf_get_str(g, "v.bin", &s, &n) == DF_OK && n == 4 && memcmp(s, "a\0b\xff", 4) == 0);

    struct { const char *key; df_gguf_type t; uint64_t count; const char *hex; } arrs[] = {
        {"a.u8", DF_GGUF_U8, 3, "01c803"},
        {"a.i8", DF_GGUF_I8, 3, "ff6480"},
        {"a.u16", DF_GGUF_U16, 2, "ffff0700"},
        {"a.i16", DF_GGUF_I16, 2, "0080ff7f"},
        {"a.u32", DF_GGUF_U32, 4, "0000000001000000ffffffff39300000"},
        {"a.i32", DF_GGUF_I32, 4, "ffffffff02000000fdffffffffffff7f"},
        {"a.f32", DF_GGUF_F32, 3, "0000003f0000a0bfe6b1617f"},
        {"a.bool", DF_GGUF_BOOL, 4, "01000001"},
        {"a.u64", DF_GGUF_U64, 2, "ffffffffffffffff2a00000000000000"},
        {"a.i64", DF_GGUF_I64, 2, "ffffffffffffffff0000000000000040"},
        {"a.f64", DF_GGUF_F64, 2, "000000000000008061d3a8109fdedf44"},
        {"a.empty", DF_GGUF_F32, 0, ""},
    };
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) {
        df_gguf_value v;
        cr_assert_eq(df_gguf_get_arr(g, arrs[i].key, &v), DF_OK, "%s", df_last_error());
        cr_expect_eq(v.elem_type, arrs[i].t, "%s", arrs[i].key);
        cr_expect_eq(v.count, arrs[i].count, "%s", arrs[i].key);
        char hex[80] = {0};
        for (uint64_t k = 0; k < v.size && k < 39; k++) sprintf(hex + 2 * k, "%02x", v.data[k]);
        cr_expect_str_eq(hex, arrs[i].hex, "%s: little-endian encoding", arrs[i].key);
    }

    df_gguf_value v, e, e2;
    df_gguf_iter it, it2;
    const char *strs[4] = {"Ġthe", "", "<|im_end|>", "\xe4\xb8\xad"};
    cr_assert_eq(df_gguf_get_arr(g, "a.str", &v), DF_OK);
    cr_expect_eq(v.elem_type, DF_GGUF_STRING);
    df_gguf_iter_init(&it, &v);
    for (int i = 0; i < 4; i++) {
        cr_assert(df_gguf_iter_next(&it, &e));
        cr_expect(e.size == strlen(strs[i]) && memcmp(e.data, strs[i], e.size) == 0, "string %d", i);
    }
    cr_expect(!df_gguf_iter_next(&it, &e));
    cr_assert_eq(df_gguf_get_arr(g, "a.bin", &v), DF_OK);
    df_gguf_iter_init(&it, &v);
    cr_assert(df_gguf_iter_next(&it, &e));
    cr_expect(e.size == 3 && memcmp(e.data, "x\0y", 3) == 0);

    cr_assert_eq(df_gguf_get_arr(g, "a.nested", &v), DF_OK);
    cr_expect(v.elem_type == DF_GGUF_ARRAY && v.count == 4);
    df_gguf_iter_init(&it, &v);
    cr_assert(df_gguf_iter_next(&it, &e));
    cr_expect(e.elem_type == DF_GGUF_U32 && e.count == 4);
    cr_assert(df_gguf_arr_elem(&e, 2, &e2));
    cr_expect(df_gguf_value_as_u64(&e2, &u64) && u64 == 0xffffffffu);
    cr_assert(df_gguf_iter_next(&it, &e));
    cr_expect(e.elem_type == DF_GGUF_STRING && e.count == 2);
    df_gguf_iter_init(&it2, &e);
    cr_assert(df_gguf_iter_next(&it2, &e2));
    cr_expect(e2.size == strlen(strs[0]) && memcmp(e2.data, strs[0], e2.size) == 0);
    cr_assert(df_gguf_iter_next(&it, &e));
    cr_expect(e.elem_type == DF_GGUF_ARRAY && e.count == 2);
    df_gguf_iter_init(&it2, &e);
    cr_assert(df_gguf_iter_next(&it2, &e2));
    cr_expect(e2.elem_type == DF_GGUF_I8 && e2.count == 3 && (int8_t)e2.data[2] == -128);
    cr_assert(df_gguf_iter_next(&it2, &e2));
    cr_expect(e2.elem_type == DF_GGUF_F64 && e2.count == 0);
    cr_expect(!df_gguf_iter_next(&it2, &e2));
    cr_assert(df_gguf_iter_next(&it, &e));
    cr_expect(e.elem_type == DF_GGUF_ARRAY && e.count == 0);
    cr_expect(!df_gguf_iter_next(&it, &e));
    cr_expect(df_gguf_get_u32(g, "after.nested", &u32) == DF_OK && u32 == 5);

    /* Tensors: llama.cpp's layout, recomputed here from the declarations. */
    cr_assert_eq(df_gguf_n_tensors(g), N_TENSORS);
    uint64_t off = 0;
    for (size_t i = 0; i < N_TENSORS; i++) {
        const tdecl *d = &k_tensors[i];
        const df_gguf_tensor *t = df_gguf_find_tensor(g, d->name);
        cr_assert_not_null(t, "%s", d->name);
        cr_expect_eq(t, df_gguf_tensor_at(g, i), "declaration order is kept");
        cr_expect_eq(t->type, (uint32_t)d->type);
        cr_expect_eq(t->n_dims, d->n_dims);
        for (int k = 0; k < 4; k++) cr_expect_eq(t->ne[k], d->ne[k], "%s ne[%d]", d->name, k);
        uint64_t n = ggml_bytes(d->type, d->ne[0] * d->ne[1] * d->ne[2] * d->ne[3]);
        cr_expect_eq(t->size, n, "%s size", d->name);
        cr_expect_eq(t->offset, off, "%s offset", d->name);
        cr_expect_eq(t->offset % align, 0);
        cr_expect(memcmp(t->data, payloads[i], n) == 0, "%s data", d->name);
        /* padding after each tensor, the last included, is zero */
        const uint8_t *pad = (const uint8_t *)t->data + n;
        for (uint64_t k = n; k < pad_to(n, align); k++) cr_expect_eq(pad[k - n], 0, "%s padding byte %" PRIu64, d->name, k);
        off += pad_to(n, align);
    }
    cr_expect_eq(df_gguf_data_offset(g) % align, 0);
    cr_expect_eq(df_gguf_file_size(g), df_gguf_data_offset(g) + off, "the file ends after the last padding");
}

Test(gguf, writer_round_trip_every_value_type_and_tensor_default_alignment) {
    df_rng rng;
    df_rng_seed(&rng, 21);
    const char *path = tmp_path("rt32.gguf");
    uint8_t **payloads = write_everything(path, 0, &rng);
    cr_expect(!file_exists(tmp_path("rt32.gguf.partial")));
    df_gguf *g;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    bytes file = {0};
    read_whole(path, &file);
    check_everything(g, 0, payloads);
    cr_expect(!df_gguf_has(g, "general.alignment"));
    df_gguf_close(g);
    for (size_t i = 0; i < N_TENSORS; i++) free(payloads[i]);
    free(payloads);
    by_free(&file);
    unlink(path);
}

Test(gguf, writer_round_trip_custom_alignments) {
    uint32_t aligns[] = {1, 8, 64, 256, 4096};
    for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
        df_rng rng;
        df_rng_seed(&rng, 100 + a);
        const char *path = tmp_path("rta.gguf");
        uint8_t **payloads = write_everything(path, aligns[a], &rng);
        bytes file = {0};
        read_whole(path, &file);
        df_gguf *g;
        cr_assert_eq(df_gguf_open_memory(file.p, file.len, "rta.gguf", &g), DF_OK, "%s", df_last_error());
        check_everything(g, aligns[a], payloads);
        df_gguf_close(g);
        for (size_t i = 0; i < N_TENSORS; i++) free(payloads[i]);
        free(payloads);
        by_free(&file);
        unlink(path);
    }
}

Test(gguf, writer_header_bytes_follow_the_spec) {
    /* A small file compared byte for byte with the hand builder's encoding of the same content. */
    const char *path = tmp_path("spec.gguf");
    df_gguf_writer *w;
    cr_assert_eq(df_gguf_writer_create(path, &w), DF_OK);
    cr_assert_eq(df_gguf_writer_add_str(w, "general.architecture", "llama"), DF_OK);
    uint32_t sec[4] = {11, 22, 33, 44};
    cr_assert_eq(df_gguf_writer_add_arr(w, "x.sections", DF_GGUF_U32, sec, 4), DF_OK);
    cr_assert_eq(df_gguf_writer_add_bool(w, "x.flag", false), DF_OK);
    int64_t ne[2] = {2, 3};
    cr_assert_eq(df_gguf_writer_add_tensor(w, "a", G_F32, 2, ne), DF_OK);
    int64_t ne1 = 5;
    cr_assert_eq(df_gguf_writer_add_tensor(w, "b", G_F16, 1, &ne1), DF_OK);
    cr_assert_eq(df_gguf_writer_write_header(w), DF_OK);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t bb[5] = {0x3c00, 0x4000, 0x4200, 0x4400, 0x4500};
    cr_assert_eq(df_gguf_writer_write(w, a, sizeof a), DF_OK);
    cr_assert_eq(df_gguf_writer_write(w, bb, sizeof bb), DF_OK);
    cr_assert_eq(df_gguf_writer_finish(w), DF_OK, "%s", df_last_error());
    df_gguf_writer_free(w);

    bytes want = {0};
    gg_header(&want, 3, 2, 3);
    gg_key(&want, "general.architecture", T_STR); by_str(&want, "llama");
    gg_key(&want, "x.sections", T_ARR); by_u32(&want, T_U32); by_u64(&want, 4);
    for (int i = 0; i < 4; i++) by_u32(&want, sec[i]);
    gg_key(&want, "x.flag", T_BOOL); by_u8(&want, 0);
    uint64_t una[2] = {2, 3}, unb[1] = {5};
    gg_tensor(&want, "a", 2, una, G_F32, 0);
    gg_tensor(&want, "b", 1, unb, G_F16, 32);
    by_pad(&want, 32);
    for (int i = 0; i < 6; i++) by_f32(&want, a[i]);
    by_pad(&want, 32);
    for (int i = 0; i < 5; i++) by_u16(&want, bb[i]);
    by_pad(&want, 32);

    bytes got = {0};
    read_whole(path, &got);
    cr_assert_eq(got.len, want.len);
    for (size_t i = 0; i < got.len; i++) cr_assert_eq(got.p[i], want.p[i], "byte %zu", i);
    by_free(&want);
    by_free(&got);
    unlink(path);
}

Test(gguf, thousands_of_tensors_are_found_by_name) {
    const char *path = tmp_path("many.gguf");
    df_gguf_writer *w;
    cr_assert_eq(df_gguf_writer_create(path, &w), DF_OK);
    enum { N = 3000 };
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "blk.%d.w", i);
        int64_t ne = 1 + i % 5;
        cr_assert_eq(df_gguf_writer_add_tensor(w, name, G_I32, 1, &ne), DF_OK, "%s", df_last_error());
    }
    cr_assert_eq(df_gguf_writer_write_header(w), DF_OK);
    for (int i = 0; i < N; i++) {
        int32_t v[5];
        for (int k = 0; k < 5; k++) v[k] = i * 7 + k;
        cr_assert_eq(df_gguf_writer_write(w, v, (size_t)(1 + i % 5) * 4), DF_OK, "%s", df_last_error());
    }
    cr_assert_eq(df_gguf_writer_finish(w), DF_OK);
    df_gguf_writer_free(w);
    df_gguf *g;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    for (int i = N - 1; i >= 0; i--) {
        snprintf(name, sizeof name, "blk.%d.w", i);
        const df_gguf_tensor *t = df_gguf_find_tensor(g, name);
        cr_assert_not_null(t, "%s", name);
        cr_assert_eq(t, df_gguf_tensor_at(g, (uint64_t)i));
        int32_t last;
        memcpy(&last, (const uint8_t *)t->data + t->size - 4, 4);
        cr_assert_eq(last, i * 7 + i % 5);
    }
    cr_expect_null(df_gguf_find_tensor(g, "blk.3000.w"));
    const df_gguf_tensor *t;
    cr_expect_eq(df_gguf_get_tensor(g, "nope.weight", &t), DF_ERR_NOT_FOUND);
    expect_words(path, "tensor 'nope.weight' not found", NULL);
    df_gguf_close(g);
    unlink(path);
}

/* ---- typed getters ---------------------------------------------------------------------------------- */

Test(gguf, getters_coerce_safely_and_name_mistyped_keys) {
    bytes b = {0};
    gg_header(&b, 3, 0, 11);
    gg_key(&b, "small", T_U8); by_u8(&b, 200);
    gg_key(&b, "neg", T_I32); by_u32(&b, (uint32_t)-5);
    gg_key(&b, "big", T_U64); by_u64(&b, 1ull << 40);
    gg_key(&b, "huge", T_U64); by_u64(&b, 1ull << 63);
    gg_key(&b, "name", T_STR); by_str(&b, "qwen");
    gg_key(&b, "nul", T_STR); by_strn(&b, "a\0b", 3);
    gg_key(&b, "flag", T_BOOL); by_u8(&b, 0);
    gg_key(&b, "theta", T_F64); by_f64(&b, 1e7);
    gg_key(&b, "toobig", T_F64); by_f64(&b, 1e300);
    gg_key(&b, "ids", T_ARR); by_u32(&b, T_U8); by_u64(&b, 3); by_u8(&b, 1); by_u8(&b, 2); by_u8(&b, 255);
    gg_key(&b, "negs", T_ARR); by_u32(&b, T_I64); by_u64(&b, 2); by_u64(&b, (uint64_t)-1); by_u64(&b, 1ull << 40);
    df_gguf *g;
    uint8_t *copy;
    cr_assert_eq(open_copy(&b, "get.gguf", &g, &copy), DF_OK, "%s", df_last_error());

    uint32_t u32 = 77; int32_t i32; uint64_t u64; int64_t i64; float f32; double f64; bool bo;
    cr_expect(df_gguf_get_u32(g, "small", &u32) == DF_OK && u32 == 200);
    cr_expect(df_gguf_get_i64(g, "small", &i64) == DF_OK && i64 == 200);
    cr_expect(df_gguf_get_i32(g, "neg", &i32) == DF_OK && i32 == -5);
    cr_expect(df_gguf_get_i64(g, "neg", &i64) == DF_OK && i64 == -5);
    cr_expect(df_gguf_get_u64(g, "big", &u64) == DF_OK && u64 == (1ull << 40));
    cr_expect(df_gguf_get_f32(g, "small", &f32) == DF_OK && f32 == 200.0f, "integers read as floats");
    cr_expect(df_gguf_get_f32(g, "theta", &f32) == DF_OK && f32 == 1e7f);
    cr_expect(df_gguf_get_f64(g, "theta", &f64) == DF_OK && f64 == 1e7);
    cr_expect(df_gguf_get_bool(g, "flag", &bo) == DF_OK && !bo);

    u32 = 77;
    cr_expect_eq(df_gguf_get_u32(g, "neg", &u32), DF_ERR_FORMAT);
    expect_words("get.gguf", "'neg'", "-5", "i32", "does not fit in u32", NULL);
    cr_expect_eq(u32, 77, "output untouched on failure");
    cr_expect_eq(df_gguf_get_u32(g, "big", &u32), DF_ERR_FORMAT);
    expect_words("get.gguf", "'big'", "does not fit in u32", NULL);
    cr_expect_eq(df_gguf_get_i64(g, "huge", &i64), DF_ERR_FORMAT);
    expect_words("'huge'", "does not fit in i64", NULL);
    cr_expect_eq(df_gguf_get_u32(g, "name", &u32), DF_ERR_FORMAT);
    expect_words("get.gguf", "key 'name' has type string, expected u32", NULL);
    cr_expect_eq(df_gguf_get_bool(g, "small", &bo), DF_ERR_FORMAT);
    expect_words("key 'small' has type u8, expected bool", NULL);
    cr_expect_eq(df_gguf_get_i32(g, "flag", &i32), DF_ERR_FORMAT);
    expect_words("key 'flag' has type bool, expected i32", NULL);
    cr_expect_eq(df_gguf_get_f32(g, "toobig", &f32), DF_ERR_FORMAT);
    expect_words("'toobig'", "does not fit in f32", NULL);
    cr_expect_eq(df_gguf_get_str(g, "ids", &(const char *){0}, &(size_t){0}), DF_ERR_FORMAT);
    expect_words("key 'ids' has type array of u8, expected string", NULL);
    cr_expect_eq(df_gguf_get_u32(g, "missing.key", &u32), DF_ERR_NOT_FOUND);
    expect_words("get.gguf", "key 'missing.key' not found", NULL);
    cr_expect_eq(u32, 77);

    char *dup = NULL;
    cr_expect_eq(df_gguf_get_strdup(g, "name", &dup), DF_OK);
    cr_expect_str_eq(dup, "qwen");
    free(dup);
    cr_expect_eq(df_gguf_get_strdup(g, "nul", &dup), DF_ERR_FORMAT);
    expect_words("'nul'", "NUL", NULL);

    int32_t ids[4];
    int64_t ids64[4];
    float fl[4];
    size_t n = 0;
    cr_expect_eq(df_gguf_get_arr_i32(g, "ids", ids, 4, &n), DF_OK);
    cr_expect(n == 3 && ids[0] == 1 && ids[1] == 2 && ids[2] == 255);
    cr_expect_eq(df_gguf_get_arr_f32(g, "ids", fl, 4, &n), DF_OK);
    cr_expect(n == 3 && fl[2] == 255.0f);
    cr_expect_eq(df_gguf_get_arr_i32(g, "ids", ids, 2, &n), DF_ERR_FORMAT);
    expect_words("'ids'", "3 elements, at most 2", NULL);
    cr_expect_eq(df_gguf_get_arr_i32(g, "negs", ids, 4, &n), DF_ERR_FORMAT);
    expect_words("'negs'", "element 1", "i32", NULL);
    cr_expect_eq(df_gguf_get_arr_i64(g, "negs", ids64, 4, &n), DF_OK);
    cr_expect(n == 2 && ids64[0] == -1 && ids64[1] == (1ll << 40));
    cr_expect_eq(df_gguf_get_arr_i32(g, "name", ids, 4, &n), DF_ERR_FORMAT);
    expect_words("key 'name' has type string, expected array of i32", NULL);
    cr_expect_eq(df_gguf_get_arr(g, "small", &(df_gguf_value){0}), DF_ERR_FORMAT);
    expect_words("key 'small' has type u8, expected array", NULL);

    df_gguf_close(g);
    free(copy);
    by_free(&b);
}

/* ---- bad input --------------------------------------------------------------------------------------- */

Test(gguf, bad_header) {
    bytes b = {0};
    EXPECT_BAD(&b, DF_ERR_FORMAT, "truncated", "magic");
    by_raw(&b, "GGUF", 4); by_u32(&b, 3); by_u32(&b, 0);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "offset 8", "truncated", "tensor count");
    by_free(&b);

    by_raw(&b, "GGML", 4); by_u32(&b, 3); by_u64(&b, 0); by_u64(&b, 0);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "offset 0", "bad magic 'GGML'");
    by_free(&b);

    gg_header(&b, 1, 0, 0);
    EXPECT_BAD(&b, DF_ERR_UNSUPPORTED, "version 1 is not supported");
    by_free(&b);
    by_raw(&b, "GGUF", 4); by_u8(&b, 0); by_u8(&b, 0); by_u8(&b, 0); by_u8(&b, 3); by_u64(&b, 0); by_u64(&b, 0);
    EXPECT_BAD(&b, DF_ERR_UNSUPPORTED, "big-endian", "0x03000000");
    by_free(&b);
    gg_header(&b, 7, 0, 0);
    EXPECT_BAD(&b, DF_ERR_UNSUPPORTED, "unsupported GGUF version 7");
    by_free(&b);
    gg_header(&b, 0, 0, 0);
    EXPECT_BAD(&b, DF_ERR_UNSUPPORTED, "unsupported GGUF version 0");
    by_free(&b);

    gg_header(&b, 3, 0, 1000000000000ull);
    gg_key(&b, "a", T_U8); by_u8(&b, 1);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "offset 16", "n_kv = 1000000000000", "cannot fit");
    by_free(&b);
    gg_header(&b, 3, 1ull << 63, 0);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "offset 8", "n_tensors", "cannot fit");
    by_free(&b);
}

Test(gguf, bad_strings_and_keys) {
    bytes b = {0};
    gg_header(&b, 3, 0, 1);
    by_u64(&b, 1000); by_raw(&b, "abcdefghijklmn", 14);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "offset 24", "key 0", "string length 1000", "past the end");
    by_free(&b);

    gg_header(&b, 3, 0, 1);
    by_u64(&b, UINT64_MAX); by_raw(&b, "abcdefghijklmn", 14);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "offset 24", "string length 18446744073709551615");
    by_free(&b);

    gg_header(&b, 3, 0, 1);
    gg_key(&b, "s", T_STR);
    size_t at = b.len;
    by_u64(&b, 1ull << 60); by_raw(&b, "abcdefghijklmn", 14);
    char off[32];
    snprintf(off, sizeof off, "offset %zu", at);
    EXPECT_BAD(&b, DF_ERR_FORMAT, off, "string value of key 's'", "past the end");
    by_free(&b);

    gg_header(&b, 3, 0, 1);
    gg_key(&b, "", T_U8); by_u8(&b, 1); by_raw(&b, "padding.....", 12);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "offset 24", "key 0 is empty");
    by_free(&b);

    gg_header(&b, 3, 0, 1);
    by_strn(&b, "ab\0c", 4); by_u32(&b, T_U8); by_u8(&b, 1); by_raw(&b, "padding.....", 12);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "offset 24", "NUL byte");
    by_free(&b);

    gg_header(&b, 3, 0, 2);
    gg_key(&b, "dup.key", T_U8); by_u8(&b, 1);
    at = b.len;
    gg_key(&b, "dup.key", T_U32); by_u32(&b, 2);
    snprintf(off, sizeof off, "offset %zu", at);
    EXPECT_BAD(&b, DF_ERR_FORMAT, off, "duplicate key 'dup.key'", "first at offset 24");
    by_free(&b);
}

Test(gguf, bad_values_and_arrays) {
    bytes b = {0};
    char off[32];
    gg_header(&b, 3, 0, 1);
    by_str(&b, "weird");
    size_t at = b.len;
    by_u32(&b, 13); by_u64(&b, 0);
    snprintf(off, sizeof off, "offset %zu", at);
    EXPECT_BAD(&b, DF_ERR_FORMAT, off, "key 'weird'", "unknown value type 13");
    by_free(&b);

    gg_header(&b, 3, 0, 1);
    gg_key(&b, "arr", T_ARR); by_u32(&b, 42); by_u64(&b, 0); by_u64(&b, 0);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "key 'arr'", "unknown array element type 42");
    by_free(&b);

    gg_header(&b, 3, 0, 1);
    gg_key(&b, "arr", T_ARR); by_u32(&b, T_U64); by_u64(&b, 1ull << 62); by_u64(&b, 0); by_u64(&b, 0);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "key 'arr'", "array of 4611686018427387904 u64 elements", "past the end");
    by_free(&b);

    gg_header(&b, 3, 0, 1);
    gg_key(&b, "arr", T_ARR); by_u32(&b, T_U64); by_u64(&b, UINT64_MAX); by_u64(&b, 0);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "key 'arr'", "past the end");
    by_free(&b);

    gg_header(&b, 3, 0, 1);
    gg_key(&b, "toks", T_ARR); by_u32(&b, T_STR); by_u64(&b, 1000); by_str(&b, "a"); by_str(&b, "b");
    EXPECT_BAD(&b, DF_ERR_FORMAT, "key 'toks'", "array of 1000 string elements", "past the end");
    by_free(&b);

    /* the count fits the minimum size, but the strings' lengths do not */
    gg_header(&b, 3, 0, 1);
    gg_key(&b, "toks", T_ARR); by_u32(&b, T_STR); by_u64(&b, 3); by_str(&b, "a"); by_u64(&b, 500); by_u64(&b, 0);
    by_u64(&b, 0);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "string value of key 'toks'", "string length 500", "past the end");
    by_free(&b);

    gg_header(&b, 3, 0, 1);
    gg_key(&b, "v", T_U64); by_u32(&b, 0);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "truncated", "u64 value of key 'v'", "needs 8 bytes but only 4 remain");
    by_free(&b);
}

Test(gguf, bad_alignment) {
    struct { int type; uint64_t v; const char *words; } cases[] = {
        {T_U32, 0, "invalid general.alignment 0"},
        {T_U32, 48, "invalid general.alignment 48"},
        {T_U64, 32, "key 'general.alignment' has type u64, expected u32"},
    };
    for (size_t i = 0; i < 3; i++) {
        bytes b = {0};
        gg_header(&b, 3, 0, 1);
        gg_key(&b, "general.alignment", (uint32_t)cases[i].type);
        by_le(&b, cases[i].v, cases[i].type == T_U64 ? 8 : 4);
        EXPECT_BAD(&b, DF_ERR_FORMAT, "offset 24", cases[i].words);
        by_free(&b);
    }
}

/* One tensor info, then padding and data_bytes of data. */
static void one_tensor(bytes *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off,
                       size_t data_bytes) {
    gg_header(b, 3, 1, 0);
    gg_tensor(b, name, n_dims, ne, type, off);
    by_pad(b, 32);
    for (size_t i = 0; i < data_bytes; i++) by_u8(b, (uint8_t)(i * 37 + 1));
}

Test(gguf, bad_tensor_infos) {
    bytes b = {0};
    uint64_t ne[5] = {32, 2, 1, 1, 1};
    char off[32];

    one_tensor(&b, "w", 2, ne, 200, 0, 4096);
    EXPECT_BAD(&b, DF_ERR_UNSUPPORTED, "tensor 'w'", "unknown type id 200");
    by_free(&b);
    one_tensor(&b, "w", 2, ne, 4, 0, 4096);  /* Q4_2: retired */
    EXPECT_BAD(&b, DF_ERR_UNSUPPORTED, "tensor 'w'", "unknown type id 4");
    by_free(&b);

    gg_header(&b, 3, 1, 0);
    by_str(&b, "w");
    size_t at = b.len;
    by_u32(&b, 0); by_u32(&b, G_F32); by_u64(&b, 0); by_raw(&b, "0123456789abcdef", 16);
    snprintf(off, sizeof off, "offset %zu", at);
    EXPECT_BAD(&b, DF_ERR_FORMAT, off, "tensor 'w' has n_dims 0");
    by_free(&b);

    one_tensor(&b, "w", 5, ne, G_F32, 0, 4096);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "tensor 'w' has n_dims 5");
    by_free(&b);

    uint64_t zero[2] = {32, 0};
    one_tensor(&b, "w", 2, zero, G_F32, 0, 64);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "offset 45", "tensor 'w' dimension 1 is 0");
    by_free(&b);

    uint64_t negative[2] = {UINT64_MAX, 1};
    one_tensor(&b, "w", 2, negative, G_F32, 0, 64);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "tensor 'w' dimension 0 is -1");
    by_free(&b);

    uint64_t prod[2] = {1ull << 32, 1ull << 32};
    one_tensor(&b, "w", 2, prod, G_F32, 0, 64);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "tensor 'w'", "element count overflows");
    by_free(&b);

    uint64_t bytes_over[2] = {1ull << 31, 1ull << 31};
    one_tensor(&b, "w", 2, bytes_over, G_F32, 0, 64);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "tensor 'w'", "byte size overflows");
    by_free(&b);

    uint64_t odd[1] = {33};
    one_tensor(&b, "w", 1, odd, G_Q8_0, 0, 64);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "tensor 'w'", "33 elements", "not a multiple of the block size 32");
    by_free(&b);

    uint64_t sixteen[1] = {16};
    one_tensor(&b, "w", 1, sixteen, G_F32, 0, 63);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "tensor 'w'", "runs past the end of the file");
    by_free(&b);
    one_tensor(&b, "w", 1, sixteen, G_F32, UINT64_MAX - 31, 64);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "tensor 'w'", "runs past the end of the file");
    by_free(&b);

    one_tensor(&b, "w", 1, sixteen, G_F32, 8, 128);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "tensor 'w' data offset 8 is not a multiple of the alignment 32");
    by_free(&b);

    /* Infos that end where the file ends: no data section at all. */
    gg_header(&b, 3, 1, 0);
    gg_tensor(&b, "w", 1, sixteen, G_F32, 0);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "truncated", "data section");
    by_free(&b);

    gg_header(&b, 3, 2, 0);
    gg_tensor(&b, "a", 1, sixteen, G_F32, 0);
    gg_tensor(&b, "b", 1, sixteen, G_F32, 32);
    by_pad(&b, 32);
    for (int i = 0; i < 128; i++) by_u8(&b, (uint8_t)i);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "tensors 'a'", "'b'", "overlap");
    by_free(&b);

    gg_header(&b, 3, 2, 0);
    gg_tensor(&b, "same", 1, sixteen, G_F32, 0);
    at = b.len;
    gg_tensor(&b, "same", 1, sixteen, G_F32, 64);
    by_pad(&b, 32);
    for (int i = 0; i < 128; i++) by_u8(&b, (uint8_t)i);
    snprintf(off, sizeof off, "offset %zu", at);
    EXPECT_BAD(&b, DF_ERR_FORMAT, off, "duplicate tensor name 'same'");
    by_free(&b);

    gg_header(&b, 3, 1, 0);
    gg_tensor(&b, "", 1, sixteen, G_F32, 0);
    by_pad(&b, 32);
    for (int i = 0; i < 64; i++) by_u8(&b, (uint8_t)i);
    EXPECT_BAD(&b, DF_ERR_FORMAT, "offset 24", "name of tensor 0 is empty");
    by_free(&b);
}

Test(gguf, open_names_the_path) {
    const char *path = tmp_path("not_gguf.bin");
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs("PK\x03\x04 this is a zip, not a model", f);
    fclose(f);
    df_gguf *g = (df_gguf *)1;
    cr_expect_eq(df_gguf_open(path, &g), DF_ERR_FORMAT);
    cr_expect_null(g);
    expect_words(path, "bad magic", NULL);
    unlink(path);
    cr_expect_eq(df_gguf_open(tmp_path("does_not_exist.gguf"), &g), DF_ERR_IO);
    expect_words("does_not_exist.gguf", NULL);
    /* an empty file */
    f = fopen(path, "wb");
    fclose(f);
    cr_expect_eq(df_gguf_open(path, &g), DF_ERR_FORMAT);
    expect_words(path, "truncated", NULL);
    unlink(path);
}

/* ---- truncation sweep and random corruption -------------------------------------------------------- */

/* A small valid file with every kind of metadata, whose last tensor ends exactly on the
 * alignment, so that every proper prefix is invalid. */
static void small_valid_file(bytes *out) {
    const char *path = tmp_path("small.gguf");
    df_gguf_writer *w;
    cr_assert_eq(df_gguf_writer_create(path, &w), DF_OK);
    df_gguf_writer_add_str(w, "general.architecture", "qwen35");
    df_gguf_writer_add_u32(w, "general.alignment", 16);
    df_gguf_writer_add_f32(w, "f", 0.5f);
    df_gguf_writer_add_i64(w, "i", -3);
    const char *s[3] = {"a", "bc", ""};
    df_gguf_writer_add_arr_str(w, "s", s, NULL, 3);
    int16_t x[3] = {1, -2, 3};
    df_gguf_writer_add_arr(w, "x", DF_GGUF_I16, x, 3);
    df_gguf_writer_begin_arr_of_arr(w, "n", 2);
    df_gguf_writer_elem_arr_str(w, s, NULL, 2);
    df_gguf_writer_elem_begin(w, 1);
    df_gguf_writer_elem_arr(w, DF_GGUF_I16, x, 2);
    df_gguf_writer_elem_end(w);
    df_gguf_writer_end_arr_of_arr(w);
    int64_t ne_a[2] = {3, 2}, ne_b[1] = {32};
    df_gguf_writer_add_tensor(w, "a", G_F32, 2, ne_a);
    df_gguf_writer_add_tensor(w, "b", G_F16, 1, ne_b);  /* 64 bytes: ends aligned */
    df_gguf_writer_write_header(w);
    uint8_t data[64];
    for (int i = 0; i < 64; i++) data[i] = (uint8_t)(i * 13 + 5);
    df_gguf_writer_write(w, data, 24);
    df_gguf_writer_write(w, data, 64);
    cr_assert_eq(df_gguf_writer_finish(w), DF_OK, "%s", df_last_error());
    df_gguf_writer_free(w);
    read_whole(path, out);
    unlink(path);
}

/* Reads everything an opened file offers, as a consumer would. */
static void walk(const df_gguf *g) {
    volatile uint64_t sink = 0;
    for (uint64_t i = 0; i < df_gguf_n_kv(g); i++) {
        const df_gguf_kv *kv = df_gguf_kv_at(g, i);
        cr_assert_eq(df_gguf_find_kv(g, kv->key), kv);
        if (kv->value.type == DF_GGUF_ARRAY) {
            df_gguf_iter it;
            df_gguf_value e;
            df_gguf_iter_init(&it, &kv->value);
            uint64_t n = 0;
            while (df_gguf_iter_next(&it, &e)) {
                if (e.size) sink += e.data[0] + e.data[e.size - 1];
                n++;
            }
            cr_assert_eq(n, kv->value.count);
        } else if (kv->value.size) {
            sink += kv->value.data[kv->value.size - 1];
        }
    }
    for (uint64_t i = 0; i < df_gguf_n_tensors(g); i++) {
        const df_gguf_tensor *t = df_gguf_tensor_at(g, i);
        cr_assert_eq(df_gguf_find_tensor(g, t->name), t);
        const uint8_t *d = t->data;
        sink += d[0] + d[t->size - 1];
    }
    (void)sink;
}

Test(gguf, every_prefix_of_a_valid_file_fails_cleanly) {
    bytes full = {0};
    small_valid_file(&full);
    df_gguf *g;
    uint8_t *copy;
    cr_assert_eq(open_copy(&full, "full.gguf", &g, &copy), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_gguf_alignment(g), 16);
    walk(g);
    df_gguf_close(g);
    free(copy);
    for (size_t n = 0; n < full.len; n++) {
        bytes pre = {.p = full.p, .len = n, .cap = n};
        df_clear_error();
        df_status st = open_copy(&pre, "prefix.gguf", &g, &copy);
        cr_expect_eq(st, DF_ERR_FORMAT, "prefix of %zu bytes: %s (%s)", n, df_status_name(st), df_last_error());
        cr_expect_null(g);
        cr_expect(strstr(df_last_error(), "prefix.gguf") != NULL, "prefix %zu: %s", n, df_last_error());
        df_gguf_close(g);
        free(copy);
    }
    by_free(&full);
}

Test(gguf, random_corruption_never_crashes) {
    bytes full = {0};
    small_valid_file(&full);
    df_rng rng;
    df_rng_seed(&rng, 5);
    int opened = 0;
    for (int round = 0; round < 3000; round++) {
        bytes b = {0};
        by_raw(&b, full.p, full.len);
        int flips = 1 + (int)df_rng_below(&rng, 4);
        for (int k = 0; k < flips; k++) {
            size_t at = df_rng_below(&rng, (uint32_t)b.len);
            b.p[at] = (df_rng_below(&rng, 2) == 0) ? (uint8_t)df_rng_u64(&rng) : (uint8_t)(b.p[at] ^ 0x80);
        }
        df_gguf *g;
        uint8_t *copy;
        df_status st = open_copy(&b, "corrupt.gguf", &g, &copy);
        if (st == DF_OK) {
            walk(g);
            opened++;
        } else {
            cr_assert_null(g);
            cr_assert(strstr(df_last_error(), "corrupt.gguf") != NULL, "%s", df_last_error());
        }
        df_gguf_close(g);
        free(copy);
        by_free(&b);
    }
    cr_expect(opened > 0 && opened < 3000, "some corruptions (tensor data) are harmless, most are not: %d", opened);
    by_free(&full);
}

/* ---- writer misuse ------------------------------------------------------------------------------------ */

Test(gguf, writer_refuses_misuse_with_messages) {
    const char *path = tmp_path("misuse.gguf");
    df_gguf_writer *w;
    cr_assert_eq(df_gguf_writer_create(path, &w), DF_OK);
    cr_expect_eq(df_gguf_writer_add_u32(w, "general.alignment", 24), DF_ERR_INVALID);
    expect_words(path, "general.alignment 24", "power of two", NULL);
    df_gguf_writer_free(w);
    cr_expect(!file_exists(path) && !file_exists(tmp_path("misuse.gguf.partial")), "no partial file left");

    struct { int what; const char *words; } cases[] = {
        {0, "duplicate key 'k'"},
        {1, "duplicate tensor name 't'"},
        {2, "llama.cpp needs fewer than 64"},
        {3, "not a multiple of the q8_0 block size 32"},
        {4, "'general.alignment' must be a u32"},
        {5, "runs past its end"},
        {6, "incomplete"},
        {7, "written out of order"},
        {8, "dimension 1 is 0"},
        {9, "more elements than the count declared"},
        {10, "still open"},
        {11, "unknown type id 5"},
        {12, "nested deeper than 8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(df_gguf_writer_create(path, &w), DF_OK);
        int64_t ne[2] = {32, 2}, bad_ne[2] = {32, 0};
        df_status st = DF_OK;
        uint8_t data[512] = {1};
        switch (cases[i].what) {
        case 0: df_gguf_writer_add_u8(w, "k", 1); st = df_gguf_writer_add_str(w, "k", "x"); break;
        case 1:
            df_gguf_writer_add_tensor(w, "t", G_F32, 2, ne);
            st = df_gguf_writer_add_tensor(w, "t", G_F16, 2, ne);
            break;
        case 2:
            st = df_gguf_writer_add_tensor(w, "a_name_that_is_far_too_long_for_llama_cpp_to_accept_it_as_a_name.weight",
                                           G_F32, 2, ne);
            break;
        case 3: ne[0] = 48; st = df_gguf_writer_add_tensor(w, "t", G_Q8_0, 2, ne); break;
        case 4: st = df_gguf_writer_add_u64(w, "general.alignment", 64); break;
        case 5:
            df_gguf_writer_add_tensor(w, "t", G_F32, 1, ne);
            df_gguf_writer_write_header(w);
            st = df_gguf_writer_write(w, data, 129);
            break;
        case 6:
            df_gguf_writer_add_tensor(w, "t", G_F32, 1, ne);
            df_gguf_writer_add_tensor(w, "u", G_F32, 1, ne);
            df_gguf_writer_write_header(w);
            df_gguf_writer_write(w, data, 100);
            st = df_gguf_writer_finish(w);
            break;
        case 7:
            df_gguf_writer_add_tensor(w, "t", G_F32, 1, ne);
            df_gguf_writer_add_tensor(w, "u", G_F32, 1, ne);
            df_gguf_writer_write_header(w);
            st = df_gguf_writer_write_tensor(w, "u", data, 128);
            break;
        case 8: st = df_gguf_writer_add_tensor(w, "t", G_F32, 2, bad_ne); break;
        case 9:
            df_gguf_writer_begin_arr_of_arr(w, "n", 1);
            df_gguf_writer_elem_arr(w, DF_GGUF_U8, data, 3);
            st = df_gguf_writer_elem_arr(w, DF_GGUF_U8, data, 3);
            break;
        case 10:
            df_gguf_writer_begin_arr_of_arr(w, "n", 1);
            st = df_gguf_writer_add_u8(w, "other", 1);
            break;
        case 11: st = df_gguf_writer_add_tensor(w, "t", 5, 2, ne); break;
        case 12:
            df_gguf_writer_begin_arr_of_arr(w, "n", 1);
            for (int d = 0; d < 7; d++) cr_assert_eq(df_gguf_writer_elem_begin(w, 1), DF_OK, "%s", df_last_error());
            st = df_gguf_writer_elem_begin(w, 1);
            break;
        }
        cr_expect_eq(st, DF_ERR_INVALID, "case %d: %s", cases[i].what, df_last_error());
        expect_words(path, cases[i].words, NULL);
        /* errors are sticky: finish reports the first one again */
        cr_expect_eq(df_gguf_writer_finish(w), DF_ERR_INVALID, "case %d", cases[i].what);
        expect_words(cases[i].words, NULL);
        df_gguf_writer_free(w);
        cr_expect(!file_exists(path), "case %d left a file", cases[i].what);
        cr_expect(!file_exists(tmp_path("misuse.gguf.partial")), "case %d left a partial file", cases[i].what);
    }
}

Test(gguf, writer_metadata_only_file) {
    const char *path = tmp_path("meta.gguf");
    df_gguf_writer *w;
    cr_assert_eq(df_gguf_writer_create(path, &w), DF_OK);
    cr_assert_eq(df_gguf_writer_add_str(w, "general.architecture", "qwen35-dflash-draft"), DF_OK);
    cr_assert_eq(df_gguf_writer_finish(w), DF_OK, "%s", df_last_error());  /* writes the header itself */
    df_gguf_writer_free(w);
    df_gguf *g;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    cr_expect_str_eq(df_gguf_arch(g), "qwen35-dflash-draft");
    cr_expect_eq(df_gguf_n_tensors(g), 0);
    cr_expect_eq(df_gguf_file_size(g) % 32, 0, "padded to the alignment like llama.cpp");
    df_gguf_close(g);
    unlink(path);
}

/* ---- the fuzz seeds: written by an independent Python encoder (scripts/make_fuzz_seeds_gguf.py) -- */

static df_gguf *open_seed(const char *leaf) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/fuzz_gguf/%s", DFLASH_SOURCE_DIR, leaf);
    df_gguf *g;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    walk(g);
    return g;
}

Test(gguf, python_encoded_seeds_load) {
    df_gguf *g = open_seed("empty_v3.gguf");
    cr_expect(df_gguf_n_kv(g) == 0 && df_gguf_n_tensors(g) == 0 && df_gguf_data_offset(g) == 32);
    df_gguf_close(g);

    g = open_seed("scalars.gguf");
    int32_t i32; uint64_t u64; double f64; bool b;
    cr_expect(df_gguf_get_i32(g, "a.i32", &i32) == DF_OK && i32 == -2000000000);
    cr_expect(df_gguf_get_u64(g, "a.u64", &u64) == DF_OK && u64 == (1ull << 63) + 5);
    cr_expect(df_gguf_get_f64(g, "a.f64", &f64) == DF_OK && f64 == 1e7);
    cr_expect(df_gguf_get_bool(g, "a.bool", &b) == DF_OK && b);
    cr_expect_str_eq(df_gguf_arch(g), "qwen35");
    df_gguf_close(g);

    g = open_seed("arrays.gguf");
    int32_t sec[4];
    size_t n;
    cr_expect(df_gguf_get_arr_i32(g, "qwen35.rope.dimension_sections", sec, 4, &n) == DF_OK && n == 4 &&
              sec[0] == 11 && sec[2] == 10 && sec[3] == 0);
    df_gguf_value v, e;
    cr_assert_eq(df_gguf_get_arr(g, "tokenizer.ggml.tokens", &v), DF_OK);
    df_gguf_iter it;
    df_gguf_iter_init(&it, &v);
    cr_assert(df_gguf_iter_next(&it, &e));
    cr_expect(e.size == 13 && memcmp(e.data, "<|endoftext|>", 13) == 0);
    cr_assert(df_gguf_iter_next(&it, &e));
    cr_expect(e.size == 5 && memcmp(e.data, "\xc4\xa0the", 5) == 0);
    df_gguf_close(g);

    g = open_seed("tensors.gguf");
    const df_gguf_tensor *t = df_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    cr_assert_not_null(t);
    cr_expect(t->type == G_Q4_0 && t->n_dims == 4 && t->ne[3] == 2 && t->size == 36);
    cr_expect_eq(t->offset, 64 + 96 + 32, "running padded offsets: 48, 68 and 10 bytes padded to 32");
    df_gguf_close(g);

    g = open_seed("align64_v2.gguf");
    cr_expect(df_gguf_version(g) == 2 && df_gguf_alignment(g) == 64);
    t = df_gguf_find_tensor(g, "ids");
    cr_assert_not_null(t);
    cr_expect(t->offset == 64 && t->size == 28);
    df_gguf_close(g);

    g = open_seed("q4k.gguf");
    t = df_gguf_find_tensor(g, "blk.0.ffn_up.weight");
    cr_assert_not_null(t);
    cr_expect(t->type == G_Q4_K && t->size == 144);
    df_gguf_close(g);
}
