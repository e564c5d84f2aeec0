/* Float-to-integer rounding for the quantizers, written so that no input (NaN, inf, huge
 * values from a corrupt tensor) reaches a C float->int conversion out of range, which is
 * undefined behaviour. Each helper clamps in the float domain first. */
#ifndef DF_QUANT_ROUND_H
#define DF_QUANT_ROUND_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Round to nearest, ties to even, for |x| < 2^22. Adding 1.5 * 2^23 leaves exactly the
 * integer part in the low mantissa bits (the FPU's round-to-nearest-even does the rounding);
 * subtracting 2^22 removes the bias. Any input gives a defined int; out-of-range inputs give
 * a meaningless one, so callers that cannot bound x use df_round_clamp. */
static inline int df_nearest_int(float x) {
    float v = x + 12582912.0f;
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return (int)(bits & 0x007fffffu) - 0x00400000;
}

/* df_nearest_int of x limited to [lo, hi]; NaN gives lo. */
static inline int df_round_clamp(float x, int lo, int hi) {
    if (!(x > (float)lo)) return lo;
    if (x >= (float)hi) return hi;
    return df_nearest_int(x);
}

/* roundf (ties away from zero) of x limited to [lo, hi]; NaN gives lo. */
static inline int df_round_away_clamp(float x, int lo, int hi) {
    if (!(x > (float)lo)) return lo;
    if (x >= (float)hi) return hi;
    return (int)roundf(x);
}

/* Truncation toward zero of x limited to [lo, hi] (lo >= 0, so this is floor); NaN gives lo.
 * The legacy quantizers round by truncating x + 0.5, and we keep that so their output follows
 * llama.cpp's reference quantizer rule for rule. */
static inline int df_trunc_clamp(float x, int lo, int hi) {
    if (!(x > (float)lo)) return lo;
    if (x >= (float)hi) return hi;
    return (int)x;
}

#endif
