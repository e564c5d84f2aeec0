/* Known-answer tests for src/quant: blocks built byte by byte, decoded by the library, and
 * compared with values computed here straight from each format's definition (ggml-common.h's
 * layouts and ggml-quants.c's reference decoders, restated per element rather than in the
 * library's loop order). Scales use fp16 bit patterns whose values are exact (written next to
 * them), so the expected floats are exact too.
 *
 * The last tests pin the legacy and activation quantizers to llama.cpp's reference rounding
 * rules on inputs where those rules give a unique answer (ties included). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/types.h"

static void le16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Deterministic filler for the bulk quant bytes (every bit pattern shows up over a block). */
static uint8_t filler(int i, int salt) { return (uint8_t)((i * 167 + salt * 59 + 13) ^ (i >> 3)); }

/* The IQ4_NL / IQ4_XS grid, as listed in ggml-common.h (kvalues_iq4nl). */
static const int k_iq4_grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void expect_decode(df_type t, const uint8_t *bytes, int64_t n, const float *want) {
    const df_type_traits *tr = df_type_get(t);
    cr_assert(tr && tr->to_float, "%s decodes", df_type_name(t));
    float got[512];
    cr_assert(n <= 512);
    tr->to_float(bytes, got, n);
    for (int64_t e = 0; e < n; e++)
        cr_expect_float_eq(got[e], want[e], 1e-6f * fabsf(want[e]) + 1e-30f, "%s element %lld: got %.9g want %.9g",
                           tr->name, (long long)e, got[e], want[e]);
    /* the scalar table decodes identically */
    float again[512];
    df_type_get_scalar(t)->to_float(bytes, again, n);
    cr_expect_eq(memcmp(got, again, (size_t)n * sizeof(float)), 0, "%s: dispatched and scalar decoders agree", tr->name);
}

/* ---- plain floats ----------------------------------------------------------------------- */

Test(quant_kat, f16) {
    const uint16_t bits[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0x8000, 0x7C00, 0xFC00, 0x3555};
    const float want[] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-08f, 6.097555160522461e-05f,
                          6.103515625e-05f, -0.0f, INFINITY, -INFINITY, 0.333251953125f};
    uint8_t bytes[20];
    for (int i = 0; i < 10; i++) le16(bytes + 2 * i, bits[i]);
    float got[10];
    df_type_get(DF_TYPE_F16)->to_float(bytes, got, 10);
    for (int i = 0; i < 10; i++) cr_expect_eq(got[i], want[i], "f16 %04x: %g", bits[i], got[i]);
    cr_expect(signbit(got[6]), "-0 keeps its sign");
    le16(bytes, 0x7E00);
    df_type_get(DF_TYPE_F16)->to_float(bytes, got, 1);
    cr_expect(isnan(got[0]));
}

Test(quant_kat, bf16) {
    const uint16_t bits[] = {0x3F80, 0xC040, 0x4049, 0x0001, 0x7F80, 0xFF7F};
    const float want[] = {1.0f, -3.0f, 3.140625f, 9.18354961579912e-41f, INFINITY, -3.3895313892515355e38f};
    uint8_t bytes[12];
    for (int i = 0; i < 6; i++) le16(bytes + 2 * i, bits[i]);
    float got[6];
    df_type_get(DF_TYPE_BF16)->to_float(bytes, got, 6);
    for (int i = 0; i < 6; i++) cr_expect_eq(got[i], want[i], "bf16 %04x: %g", bits[i], got[i]);
}

Test(quant_kat, f64_and_f32) {
    const double d[] = {1.5, -2.25, 1e300, -1e300, 1e-300, 0.1};
    const float want[] = {1.5f, -2.25f, INFINITY, -INFINITY, 0.0f, 0.1f};
    float got[6];
    df_type_get(DF_TYPE_F64)->to_float(d, got, 6);
    for (int i = 0; i < 6; i++) cr_expect_eq(got[i], want[i], "f64 %g: %g", d[i], got[i]);
    const float f[] = {3.5f, -0.0f, 1e-45f};
    df_type_get(DF_TYPE_F32)->to_float(f, got, 3);
    cr_expect_eq(memcmp(f, got, sizeof f), 0);
}

/* ---- legacy 32-element formats ------------------------------------------------------------ */

/* The nibble of element e (0..31) in a 16-byte qs: low nibbles are elements 0..15, high
 * nibbles elements 16..31. */
static int nibble(const uint8_t *qs, int e) { return e < 16 ? qs[e] & 15 : qs[e - 16] >> 4; }

Test(quant_kat, q4_0) {
    uint8_t b[2 * 18];
    le16(b, 0x2E00);      /* d = 0.09375 */
    le16(b + 18, 0xB800); /* d = -0.5 */
    const uint8_t qs0[16] = {0x08, 0x7F, 0x80, 0x0F, 0xF0, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF1, 0x00, 0xFF, 0xA5};
    memcpy(b + 2, qs0, 16);
    for (int j = 0; j < 16; j++) b[20 + j] = filler(j, 1);
    const float d[2] = {0.09375f, -0.5f};
    float want[64];
    for (int blk = 0; blk < 2; blk++)
        for (int e = 0; e < 32; e++) want[32 * blk + e] = d[blk] * (float)(nibble(b + 18 * blk + 2, e) - 8);
    expect_decode(DF_TYPE_Q4_0, b, 64, want);
    cr_expect_eq(want[0], 0.0f, "qs[0] = 0x08: low nibble 8 decodes to zero");
    cr_expect_eq(want[16], -0.75f, "qs[0] = 0x08: high nibble 0 is -8 * d");
    cr_expect_eq(want[18], 0.0f, "qs[2] = 0x80: high nibble 8");
}

Test(quant_kat, q4_1) {
    uint8_t b[2 * 20];
    le16(b, 0x3400);      /* d = 0.25 */
    le16(b + 2, 0xB800);  /* m = -0.5 */
    le16(b + 20, 0x0200); /* d = 2^-15 (subnormal) */
    le16(b + 22, 0x4100); /* m = 2.5 */
    for (int j = 0; j < 16; j++) {
        b[4 + j] = filler(j, 2);
        b[24 + j] = filler(j, 3);
    }
    const float d[2] = {0.25f, 3.0517578125e-05f}, m[2] = {-0.5f, 2.5f};
    float want[64];
    for (int blk = 0; blk < 2; blk++)
        for (int e = 0; e < 32; e++) want[32 * blk + e] = d[blk] * (float)nibble(b + 20 * blk + 4, e) + m[blk];
    expect_decode(DF_TYPE_Q4_1, b, 64, want);
}

/* Fifth bit of element e: bit e of the 4-byte little-endian mask, i.e. bit e%8 of byte e/8. */
static int fifth_bit(const uint8_t *qh, int e) { return (qh[e / 8] >> (e % 8)) & 1; }

Test(quant_kat, q5_0) {
    uint8_t b[2 * 22];
    le16(b, 0x3800); /* d = 0.5 */
    const uint8_t qh0[4] = {0xA5, 0x3C, 0x0F, 0xF0};
    memcpy(b + 2, qh0, 4);
    for (int j = 0; j < 16; j++) b[6 + j] = filler(j, 4);
    le16(b + 22, 0x2C00); /* d = 0.0625 */
    const uint8_t qh1[4] = {0xFF, 0x00, 0x81, 0x7E};
    memcpy(b + 24, qh1, 4);
    for (int j = 0; j < 16; j++) b[28 + j] = filler(j, 5);
    const float d[2] = {0.5f, 0.0625f};
    float want[64];
    for (int blk = 0; blk < 2; blk++) {
        const uint8_t *base = b + 22 * blk;
        for (int e = 0; e < 32; e++) want[32 * blk + e] = d[blk] * (float)((nibble(base + 6, e) | fifth_bit(base + 2, e) << 4) - 16);
    }
    expect_decode(DF_TYPE_Q5_0, b, 64, want);
}

Test(quant_kat, q5_1) {
    uint8_t b[24];
    le16(b, 0x3400);     /* d = 0.25 */
    le16(b + 2, 0xBC00); /* m = -1 */
    const uint8_t qh[4] = {0x5A, 0xC3, 0x01, 0x80};
    memcpy(b + 4, qh, 4);
    for (int j = 0; j < 16; j++) b[8 + j] = filler(j, 6);
    float want[32];
    for (int e = 0; e < 32; e++) want[e] = 0.25f * (float)(nibble(b + 8, e) | fifth_bit(b + 4, e) << 4) - 1.0f;
    expect_decode(DF_TYPE_Q5_1, b, 32, want);
}

Test(quant_kat, q8_0_and_q8_1) {
    const int8_t qs[32] = {0, 1, -1, 127, -128, -127, 64, -64, 3, -3, 100, -100, 17, -17, 42, -42,
                           5, 6, 7, 8, -9, -10, -11, -12, 90, 91, 92, 93, -94, -95, -96, -97};
    uint8_t b8[34], b9[36];
    le16(b8, 0x2C00);     /* d = 0.0625 */
    le16(b9, 0x3A00);     /* d = 0.75 */
    le16(b9 + 2, 0x3C00); /* s: not used by decoding */
    memcpy(b8 + 2, qs, 32);
    memcpy(b9 + 4, qs, 32);
    float want8[32], want9[32];
    for (int e = 0; e < 32; e++) {
        want8[e] = 0.0625f * (float)qs[e];
        want9[e] = 0.75f * (float)qs[e];
    }
    expect_decode(DF_TYPE_Q8_0, b8, 32, want8);
    expect_decode(DF_TYPE_Q8_1, b9, 32, want9);
}

/* ---- K-quants -------------------------------------------------------------------------------- */

/* Low two bits of element e in a Q2_K/Q3_K qs: 128-element halves use 32 bytes each; within
 * a half, element 32k + l is bit pair k of byte l. */
static int two_bits(const uint8_t *qs, int e) {
    const int half = e / 128, r = e % 128;
    return (qs[32 * half + r % 32] >> (2 * (r / 32))) & 3;
}

Test(quant_kat, q2_K) {
    uint8_t b[84];
    const uint8_t scales[16] = {0x00, 0x0F, 0xF0, 0xFF, 0x12, 0x21, 0x3C, 0xC3, 0x7A, 0xA7, 0x59, 0x95, 0x01, 0x10, 0xE8, 0x8E};
    memcpy(b, scales, 16);
    for (int i = 0; i < 64; i++) b[16 + i] = filler(i, 7);
    le16(b + 80, 0x3400); /* d = 0.25 */
    le16(b + 82, 0x2C00); /* dmin = 0.0625 */
    float want[256];
    for (int e = 0; e < 256; e++) {
        const int sc = scales[e / 16] & 15, mn = scales[e / 16] >> 4;
        want[e] = 0.25f * (float)sc * (float)two_bits(b + 16, e) - 0.0625f * (float)mn;
    }
    expect_decode(DF_TYPE_Q2_K, b, 256, want);
}

Test(quant_kat, q3_K) {
    uint8_t b[110];
    for (int i = 0; i < 32; i++) b[i] = filler(i, 8);       /* hmask */
    for (int i = 0; i < 64; i++) b[32 + i] = filler(i, 9);  /* low two bits */
    const uint8_t scales[12] = {0x10, 0x2F, 0xF3, 0x84, 0x00, 0xFF, 0x5A, 0xA5, 0x1B, 0xE4, 0x72, 0xC9};
    memcpy(b + 96, scales, 12);
    le16(b + 108, 0x3800); /* d = 0.5 */
    float want[256];
    for (int e = 0; e < 256; e++) {
        const int j = e / 16; /* 16 sub-blocks of 16 */
        /* 6-bit scale: low 4 bits are nibble (j / 8) of byte j % 8, top 2 bits are bit pair
         * j / 4 of byte 8 + j % 4; stored with +32 */
        const int low4 = (scales[j % 8] >> (4 * (j / 8))) & 15;
        const int top2 = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        const int sc = (low4 + 16 * top2) - 32;
        /* high bit of element e: bit e / 32 of hmask byte e % 32; clear means subtract 4 */
        const int hbit = (b[e % 32] >> (e / 32)) & 1;
        const int q = two_bits(b + 32, e) - (hbit ? 0 : 4);
        want[e] = 0.5f * (float)sc * (float)q;
    }
    expect_decode(DF_TYPE_Q3_K, b, 256, want);
}

/* Q4_K / Q5_K sub-block j (of 8): the 6-bit scale and min from the 12 packed bytes. The first
 * four keep both in the low 6 bits of bytes j and j + 4; the last four keep their low 4 bits
 * as the nibbles of byte j + 4 (scale low, min high) and their top 2 bits in the top 2 bits
 * of bytes j - 4 (scale) and j (min). */
static void k4_scale(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] % 64;
        *mn = s[j + 4] % 64;
    } else {
        *sc = (s[j + 4] % 16) + 16 * (s[j - 4] / 64);
        *mn = (s[j + 4] / 16) + 16 * (s[j] / 64);
    }
}

/* 4-bit quant of element e in a Q4_K/Q5_K qs: 64-element chunks use 32 bytes; the first 32
 * elements of a chunk are low nibbles, the next 32 the high nibbles of the same bytes. */
static int k4_nibble(const uint8_t *qs, int e) {
    const int chunk = e / 64, r = e % 64;
    const uint8_t byte = qs[32 * chunk + r % 32];
    return r < 32 ? byte & 15 : byte >> 4;
}

Test(quant_kat, q4_K) {
    uint8_t b[144];
    le16(b, 0x2C00);     /* d = 0.0625 */
    le16(b + 2, 0x3400); /* dmin = 0.25 */
    const uint8_t scales[12] = {0xC5, 0x7F, 0x81, 0x3A, 0xD2, 0x4B, 0xE0, 0x19, 0x9C, 0x27, 0xF3, 0x6E};
    memcpy(b + 4, scales, 12);
    for (int i = 0; i < 128; i++) b[16 + i] = filler(i, 10);
    float want[256];
    for (int e = 0; e < 256; e++) {
        int sc, mn;
        k4_scale(scales, e / 32, &sc, &mn);
        want[e] = 0.0625f * (float)sc * (float)k4_nibble(b + 16, e) - 0.25f * (float)mn;
    }
    expect_decode(DF_TYPE_Q4_K, b, 256, want);
    /* spot checks of the scale packing itself, worked out by hand from the bytes above */
    int sc, mn;
    k4_scale(scales, 0, &sc, &mn);
    cr_expect(sc == 5 && mn == 18, "sub-block 0: 0xC5 & 63 = 5, 0xD2 & 63 = 18");
    k4_scale(scales, 4, &sc, &mn);
    cr_expect(sc == 0xC + 16 * 3 && mn == 0x9 + 16 * 3, "sub-block 4: byte 8 = 0x9C, tops of 0xC5, 0xD2");
    k4_scale(scales, 7, &sc, &mn);
    cr_expect(sc == 0xE + 16 * 0 && mn == 0x6 + 16 * 0, "sub-block 7: byte 11 = 0x6E, tops of 0x3A, 0x19");
}

Test(quant_kat, q5_K) {
    uint8_t b[176];
    le16(b, 0x3400);     /* d = 0.25 */
    le16(b + 2, 0x2E00); /* dmin = 0.09375 */
    const uint8_t scales[12] = {0x3F, 0xC0, 0x55, 0xAA, 0x0F, 0xF0, 0x96, 0x69, 0x11, 0x22, 0x44, 0x88};
    memcpy(b + 4, scales, 12);
    for (int i = 0; i < 32; i++) b[16 + i] = filler(i, 11);  /* qh */
    for (int i = 0; i < 128; i++) b[48 + i] = filler(i, 12); /* qs */
    float want[256];
    for (int e = 0; e < 256; e++) {
        int sc, mn;
        k4_scale(scales, e / 32, &sc, &mn);
        /* fifth bit: bit 2*chunk (first 32 of the chunk) or 2*chunk+1 (last 32) of qh[e % 32] */
        const int chunk = e / 64, upper = (e % 64) >= 32;
        const int hb = (b[16 + e % 32] >> (2 * chunk + upper)) & 1;
        want[e] = 0.25f * (float)sc * (float)(k4_nibble(b + 48, e) + 16 * hb) - 0.09375f * (float)mn;
    }
    expect_decode(DF_TYPE_Q5_K, b, 256, want);
}

Test(quant_kat, q6_K) {
    uint8_t b[210];
    for (int i = 0; i < 128; i++) b[i] = filler(i, 13);      /* ql */
    for (int i = 0; i < 64; i++) b[128 + i] = filler(i, 14); /* qh */
    const int8_t scales[16] = {1, -1, 127, -128, 0, 5, -7, 33, -64, 12, 99, -3, 2, -100, 50, 8};
    memcpy(b + 192, scales, 16);
    le16(b + 208, 0x1C00); /* d = 2^-8 */
    float want[256];
    for (int e = 0; e < 256; e++) {
        /* halves of 128: ql bytes 64*half.., qh bytes 32*half..; quarter k of a half (32
         * elements each) takes the low nibble of ql[l + 32*(k%2)] for k < 2, the high nibble
         * for k >= 2, and bit pair k of qh[l] on top; stored +32 */
        const int half = e / 128, k = (e % 128) / 32, l = e % 32;
        const uint8_t qlb = b[64 * half + l + 32 * (k % 2)];
        const int low4 = k < 2 ? qlb & 15 : qlb >> 4;
        const int top2 = (b[128 + 32 * half + l] >> (2 * k)) & 3;
        want[e] = 0.00390625f * (float)scales[e / 16] * (float)((low4 | top2 << 4) - 32);
    }
    expect_decode(DF_TYPE_Q6_K, b, 256, want);
}

Test(quant_kat, q8_K) {
    uint8_t b[292];
    const float d = -0.375f;
    memcpy(b, &d, 4);
    for (int i = 0; i < 256; i++) b[4 + i] = filler(i, 15);
    memset(b + 260, 0, 32); /* bsums do not enter decoding */
    float want[256];
    for (int e = 0; e < 256; e++) want[e] = -0.375f * (float)(int8_t)b[4 + e];
    expect_decode(DF_TYPE_Q8_K, b, 256, want);
}

/* ---- IQ4 ------------------------------------------------------------------------------------- */

Test(quant_kat, iq4_nl) {
    uint8_t b[36];
    le16(b, 0x3800);      /* d = 0.5 */
    le16(b + 18, 0xBC00); /* d = -1 */
    const uint8_t qs[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xF0, 0xE1, 0xD2, 0xC3, 0xB4, 0xA5, 0x96, 0x87};
    memcpy(b + 2, qs, 16);
    for (int j = 0; j < 16; j++) b[20 + j] = filler(j, 16);
    const float d[2] = {0.5f, -1.0f};
    float want[64];
    for (int blk = 0; blk < 2; blk++)
        for (int e = 0; e < 32; e++) want[32 * blk + e] = d[blk] * (float)k_iq4_grid[nibble(b + 18 * blk + 2, e)];
    expect_decode(DF_TYPE_IQ4_NL, b, 64, want);
    cr_expect_eq(want[0], -52.0f, "qs[0] = 0x01: element 0 is grid[1] * 0.5");
    cr_expect_eq(want[16], -63.5f, "qs[0] = 0x01: element 16 is grid[0] * 0.5");
}

Test(quant_kat, iq4_xs) {
    uint8_t b[136];
    le16(b, 0x2C00);     /* d = 0.0625 */
    le16(b + 2, 0xB1E4); /* scales_h: 2-bit tops, sub-block ib at bits 2ib..2ib+1 */
    const uint8_t scales_l[4] = {0x0F, 0xF0, 0x5A, 0x3C};
    memcpy(b + 4, scales_l, 4);
    for (int i = 0; i < 128; i++) b[8 + i] = filler(i, 17);
    const uint16_t scales_h = 0xB1E4;
    float want[256];
    for (int e = 0; e < 256; e++) {
        const int ib = e / 32;
        const int ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | ((scales_h >> (2 * ib)) & 3) << 4;
        /* each 32-element sub-block has its own 16 nibble bytes */
        want[e] = 0.0625f * (float)(ls - 32) * (float)k_iq4_grid[nibble(b + 8 + 16 * ib, e % 32)];
    }
    expect_decode(DF_TYPE_IQ4_XS, b, 256, want);
}

/* ---- quantizers on inputs with a unique reference answer ------------------------------------ */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Q4_0 reference: d = (value of largest magnitude) / -8, q = min(15, trunc(x / d + 8.5)). With
 * x_j = (j - 16) / 4, x_0 = -4 is the extreme, d = 0.5 and q_j = min(15, trunc(j/2 + 0.5)). */
Test(quant_kat, quantize_q4_0) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) * 0.25f;
    uint8_t b[18];
    df_type_get(DF_TYPE_Q4_0)->from_float(x, b, 32);
    cr_expect_eq(rd16(b), 0x3800, "d = 0.5, got %04x", rd16(b));
    for (int j = 0; j < 16; j++) {
        const int lo = (j + 1) / 2, hi = (j + 16 + 1) / 2 > 15 ? 15 : (j + 16 + 1) / 2;
        cr_expect_eq(b[2 + j], lo | hi << 4, "qs[%d] = %02x", j, b[2 + j]);
    }
}

/* Q4_1 reference: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5)).
 * min = -2 and max = 1.75 give d = 0.25; interior values sit 0, 1/4, 1/2 and 3/4 of a step
 * above a grid point, so the half step rounds up. */
Test(quant_kat, quantize_q4_1) {
    float x[32];
    int want_q[32];
    for (int j = 0; j < 30; j++) {
        const int k = j % 15, f = j % 4;
        x[j] = -2.0f + 0.25f * (float)k + 0.0625f * (float)f;
        want_q[j] = k + (f >= 2);
    }
    x[30] = -2.0f;
    want_q[30] = 0;
    x[31] = 1.75f;
    want_q[31] = 15;
    uint8_t b[20];
    df_type_get(DF_TYPE_Q4_1)->from_float(x, b, 32);
    cr_expect_eq(rd16(b), 0x3400, "d = 0.25");
    cr_expect_eq(rd16(b + 2), 0xC000, "m = -2");
    for (int e = 0; e < 32; e++) cr_expect_eq(nibble(b + 4, e), want_q[e], "element %d", e);
}

/* Q5_0 reference: d = extreme / -16, q = min(31, trunc(x / d + 16.5)). x_j = (j - 16) / 8
 * gives d = 0.125 (0x3000) and q_j = j: the upper half of the block has its fifth bit set. */
Test(quant_kat, quantize_q5_0) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) * 0.125f;
    uint8_t b[22];
    df_type_get(DF_TYPE_Q5_0)->from_float(x, b, 32);
    cr_expect_eq(rd16(b), 0x3000);
    const uint8_t qh[4] = {0x00, 0x00, 0xFF, 0xFF};
    cr_expect_eq(memcmp(b + 2, qh, 4), 0, "qh %02x %02x %02x %02x", b[2], b[3], b[4], b[5]);
    for (int j = 0; j < 16; j++) cr_expect_eq(b[6 + j], j | j << 4, "qs[%d]", j);
}

/* Q5_1 reference: d = (max - min) / 31. x_j = -2 + j/8 gives d = 0.125, m = -2, q_j = j. */
Test(quant_kat, quantize_q5_1) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = -2.0f + 0.125f * (float)j;
    uint8_t b[24];
    df_type_get(DF_TYPE_Q5_1)->from_float(x, b, 32);
    cr_expect_eq(rd16(b), 0x3000);
    cr_expect_eq(rd16(b + 2), 0xC000);
    const uint8_t qh[4] = {0x00, 0x00, 0xFF, 0xFF};
    cr_expect_eq(memcmp(b + 4, qh, 4), 0);
    for (int j = 0; j < 16; j++) cr_expect_eq(b[8 + j], j | j << 4, "qs[%d]", j);
}

/* Q8_0 / Q8_1 reference: d = absmax / 127, q = roundf(x / d) (halves away from zero). The
 * extreme -127/16 makes d = 1/16 exactly, and the other inputs are v/16 for the v below. */
static const float k_q8_v[32] = {3, -2.5f, 2.5f, 0.5f, -0.5f, -127, 126.5f, 1.25f, -1.75f, 0, 64, -64, 99.5f, -99.5f, 7, -7,
                                 10.5f, 11.5f, -12.5f, 13.49f, 0.01f, -0.01f, 100, 101, -102, 103, 104.5f, -105.5f, 0.75f, -0.75f, 120, -121};
static const int k_q8_q[32] = {3, -3, 3, 1, -1, -127, 127, 1, -2, 0, 64, -64, 100, -100, 7, -7,
                               11, 12, -13, 13, 0, 0, 100, 101, -102, 103, 105, -106, 1, -1, 120, -121};

Test(quant_kat, quantize_q8_0_and_q8_1) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = k_q8_v[j] / 16.0f;
    uint8_t b8[34], b9[36];
    df_type_get(DF_TYPE_Q8_0)->from_float(x, b8, 32);
    df_type_get(DF_TYPE_Q8_1)->from_float(x, b9, 32);
    cr_expect_eq(rd16(b8), 0x2C00, "d = 1/16");
    cr_expect_eq(rd16(b9), 0x2C00, "d = 1/16");
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        cr_expect_eq((int8_t)b8[2 + j], k_q8_q[j], "q8_0 element %d (%g): %d", j, k_q8_v[j], (int8_t)b8[2 + j]);
        cr_expect_eq((int8_t)b9[4 + j], k_q8_q[j], "q8_1 element %d", j);
        sum += k_q8_q[j];
    }
    /* s = d * sum(q), stored as fp16; sum = 225 so s = 14.0625, exact in fp16 (0x4B08) */
    cr_expect_eq(sum, 225);
    cr_expect_eq(rd16(b9 + 2), 0x4B08, "s = %04x", rd16(b9 + 2));
}

/* Q8_K reference: iscale = -127 / (value of largest magnitude), q = nearest-even(iscale * x)
 * capped at 127, d = 1 / iscale as a float, bsums = sums of 16-quant groups. With the extreme
 * at -127/8, iscale = 8 and d = 0.125; halves round to even. */
Test(quant_kat, quantize_q8_K) {
    float x[256];
    int want[256];
    for (int e = 0; e < 256; e++) {
        want[e] = (e % 51) - 25;
        x[e] = (float)want[e] / 8.0f;
    }
    const float ties[8] = {0.5f, 1.5f, -2.5f, 3.5f, -0.5f, 126.5f, -126.5f, 2.5f};
    const int tie_q[8] = {0, 2, -2, 4, 0, 126, -126, 2};
    for (int k = 0; k < 8; k++) {
        x[10 + 20 * k] = ties[k] / 8.0f;
        want[10 + 20 * k] = tie_q[k];
    }
    x[200] = -127.0f / 8.0f;
    want[200] = -127;
    uint8_t b[292];
    df_type_get(DF_TYPE_Q8_K)->from_float(x, b, 256);
    float d;
    memcpy(&d, b, 4);
    cr_expect_eq(d, 0.125f, "d = %g", d);
    for (int e = 0; e < 256; e++) cr_expect_eq((int8_t)b[4 + e], want[e], "element %d", e);
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += want[16 * g + l];
        int16_t bs;
        memcpy(&bs, b + 260 + 2 * g, 2);
        cr_expect_eq(bs, s, "bsums[%d]", g);
    }
}

/* A block that lies exactly on the IQ4_NL grid (scaled by 0.5, extreme value -127 * 0.5) must
 * come back exactly: the first candidate scale already hits every grid point. */
Test(quant_kat, quantize_iq4_nl_on_grid) {
    float x[32], back[32];
    for (int j = 0; j < 32; j++) x[j] = 0.5f * (float)k_iq4_grid[(j * 7) % 16];
    x[5] = -63.5f;
    uint8_t b[18];
    df_type_get(DF_TYPE_IQ4_NL)->from_float(x, b, 32);
    cr_expect_eq(rd16(b), 0x3800, "d = 0.5, got %04x", rd16(b));
    for (int e = 0; e < 32; e++) cr_expect_eq((float)k_iq4_grid[nibble(b + 2, e)] * 0.5f, x[e], "element %d", e);
    df_type_get(DF_TYPE_IQ4_NL)->to_float(b, back, 32);
    cr_expect_eq(memcmp(x, back, sizeof x), 0);
}
