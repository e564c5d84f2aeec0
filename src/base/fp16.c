#include "base/fp16.h"

void df_fp16_to_f32_row(const df_fp16 *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = df_fp16_to_f32(src[i]);
}
void df_f32_to_fp16_row(const float *src, df_fp16 *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = df_f32_to_fp16(src[i]);
}
void df_bf16_to_f32_row(const df_bf16 *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = df_bf16_to_f32(src[i]);
}
void df_f32_to_bf16_row(const float *src, df_bf16 *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = df_f32_to_bf16(src[i]);
}
