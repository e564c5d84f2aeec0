/* IEEE binary16 and bfloat16 <-> binary32 conversion, exact and round-to-nearest-even,
 * written from the formats' bit layouts (no hardware instructions needed). */
#ifndef DF_BASE_FP16_H
#define DF_BASE_FP16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint16_t df_fp16; /* raw bits of an IEEE half */
typedef uint16_t df_bf16; /* raw bits of a bfloat16 */

static inline uint32_t df_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float df_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float df_fp16_to_f32(df_fp16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) return df_bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return df_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline df_fp16 df_f32_to_fp16(float f) {
    uint32_t x = df_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan (keep nan quiet and non-zero) */
        return (df_fp16)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 | ((absx >> 13) & 0x3ff) : 0));
    if (absx >= 0x477ff000u) return (df_fp16)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (absx < 0x38800000u) {
        /* result is subnormal or zero: scale so that the integer part is the mantissa */
        float a = df_bits_f32(absx);
        float scaled = a * 16777216.0f; /* 2^24 */
        /* round to nearest even using the float adder */
        uint32_t m = (uint32_t)scaled;
        float rem = scaled - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1))) m++;
        return (df_fp16)(sign | m);
    }
    uint32_t mant = absx & 0x7fffff;
    uint32_t exp = (absx >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t round = mant & 0x1fff;
    if (round > 0x1000 || (round == 0x1000 && (h & 1))) h++;
    return (df_fp16)(sign | h);
}

static inline float df_bf16_to_f32(df_bf16 b) { return df_bits_f32((uint32_t)b << 16); }

static inline df_bf16 df_f32_to_bf16(float f) {
    uint32_t x = df_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (df_bf16)((x >> 16) | 0x40); /* quiet nan */
    uint32_t lsb = (x >> 16) & 1;
    x += 0x7fff + lsb;
    return (df_bf16)(x >> 16);
}

void df_fp16_to_f32_row(const df_fp16 *src, float *dst, size_t n);
void df_f32_to_fp16_row(const float *src, df_fp16 *dst, size_t n);
void df_bf16_to_f32_row(const df_bf16 *src, float *dst, size_t n);
void df_f32_to_bf16_row(const float *src, df_bf16 *dst, size_t n);

#endif
