/* The plain floating-point types: F32, F16 (IEEE half), BF16 and F64 (dequantize only).
 * Their dots take F32 activations, so no activation precision is lost; the scalar versions
 * accumulate in double, which makes them a good reference for the SIMD ones. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/kernels.h"

void df_dequant_f32(const void *src, float *dst, int64_t n) {
    if (n > 0) memmove(dst, src, (size_t)n * sizeof(float));
}

void df_dequant_f16(const void *src, float *dst, int64_t n) {
    const df_fp16 *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = df_fp16_to_f32(h[i]);
}

void df_dequant_bf16(const void *src, float *dst, int64_t n) {
    const df_bf16 *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = df_bf16_to_f32(h[i]);
}

/* Narrowing a double beyond float's range is undefined in ISO C, so saturate to +-inf by
 * hand (what IEEE hardware would do anyway). NaN converts as NaN. */
static inline float f64_to_f32(double v) {
    if (v > (double)FLT_MAX) return INFINITY;
    if (v < -(double)FLT_MAX) return -INFINITY;
    return (float)v;
}

void df_dequant_f64(const void *src, float *dst, int64_t n) {
    const double *d = src;
    for (int64_t i = 0; i < n; i++) dst[i] = f64_to_f32(d[i]);
}

void df_quant_f32(const float *src, void *dst, int64_t n) {
    if (n > 0) memmove(dst, src, (size_t)n * sizeof(float));
}

void df_quant_f16(const float *src, void *dst, int64_t n) {
    df_fp16 *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = df_f32_to_fp16(src[i]);
}

void df_quant_bf16(const float *src, void *dst, int64_t n) {
    df_bf16 *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = df_f32_to_bf16(src[i]);
}

float df_dot_f32_f32(const void *vx, const void *vy, int64_t n) {
    const float *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * (double)y[i];
    return f64_to_f32(sum);
}

float df_dot_f16_f32(const void *vx, const void *vy, int64_t n) {
    const df_fp16 *x = vx;
    const float *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)df_fp16_to_f32(x[i]) * (double)y[i];
    return f64_to_f32(sum);
}

float df_dot_bf16_f32(const void *vx, const void *vy, int64_t n) {
    const df_bf16 *x = vx;
    const float *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)df_bf16_to_f32(x[i]) * (double)y[i];
    return f64_to_f32(sum);
}

float df_dot_f64_f32(const void *vx, const void *vy, int64_t n) {
    const double *x = vx;
    const float *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += x[i] * (double)y[i];
    return f64_to_f32(sum);
}
