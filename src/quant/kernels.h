/* The row kernels behind the traits table (types.c), one family per source file. Everything
 * here follows the df_dequant_fn / df_quant_fn / df_vec_dot_fn contracts in types.h.
 * Consumers should go through df_type_get(); tests and benchmarks call these directly. */
#ifndef DF_QUANT_KERNELS_H
#define DF_QUANT_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- quant_float.c: F32, F16, BF16, F64 ------------------------------------------------ */
void df_dequant_f32(const void *src, float *dst, int64_t n);
void df_dequant_f16(const void *src, float *dst, int64_t n);
void df_dequant_bf16(const void *src, float *dst, int64_t n);
void df_dequant_f64(const void *src, float *dst, int64_t n);
void df_quant_f32(const float *src, void *dst, int64_t n);
void df_quant_f16(const float *src, void *dst, int64_t n);
void df_quant_bf16(const float *src, void *dst, int64_t n);
float df_dot_f32_f32(const void *x, const void *y, int64_t n);
float df_dot_f16_f32(const void *x, const void *y, int64_t n);
float df_dot_bf16_f32(const void *x, const void *y, int64_t n);
float df_dot_f64_f32(const void *x, const void *y, int64_t n);

/* ---- quant_legacy.c: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 -------------------------------- */
void df_dequant_q4_0(const void *src, float *dst, int64_t n);
void df_dequant_q4_1(const void *src, float *dst, int64_t n);
void df_dequant_q5_0(const void *src, float *dst, int64_t n);
void df_dequant_q5_1(const void *src, float *dst, int64_t n);
void df_dequant_q8_0(const void *src, float *dst, int64_t n);
void df_dequant_q8_1(const void *src, float *dst, int64_t n);
void df_quant_q4_0(const float *src, void *dst, int64_t n);
void df_quant_q4_1(const float *src, void *dst, int64_t n);
void df_quant_q5_0(const float *src, void *dst, int64_t n);
void df_quant_q5_1(const float *src, void *dst, int64_t n);
void df_quant_q8_0(const float *src, void *dst, int64_t n);
void df_quant_q8_1(const float *src, void *dst, int64_t n);
float df_dot_q4_0_q8_0(const void *x, const void *y, int64_t n);
float df_dot_q4_1_q8_0(const void *x, const void *y, int64_t n);
float df_dot_q5_0_q8_0(const void *x, const void *y, int64_t n);
float df_dot_q5_1_q8_0(const void *x, const void *y, int64_t n);
float df_dot_q8_0_q8_0(const void *x, const void *y, int64_t n);

/* ---- quant_k.c: decoding and dots of Q2_K..Q6_K, Q8_K ---------------------------------- */
void df_dequant_q2_K(const void *src, float *dst, int64_t n);
void df_dequant_q3_K(const void *src, float *dst, int64_t n);
void df_dequant_q4_K(const void *src, float *dst, int64_t n);
void df_dequant_q5_K(const void *src, float *dst, int64_t n);
void df_dequant_q6_K(const void *src, float *dst, int64_t n);
void df_dequant_q8_K(const void *src, float *dst, int64_t n);
float df_dot_q2_K_q8_K(const void *x, const void *y, int64_t n);
float df_dot_q3_K_q8_K(const void *x, const void *y, int64_t n);
float df_dot_q4_K_q8_K(const void *x, const void *y, int64_t n);
float df_dot_q5_K_q8_K(const void *x, const void *y, int64_t n);
float df_dot_q6_K_q8_K(const void *x, const void *y, int64_t n);

/* The 6-bit scale/min pair of sub-block j (0..7) of a Q4_K/Q5_K block's 12 scale bytes. */
/* Q4_K / Q5_K scales: sub-blocks 0..3 keep scale and min in the low 6 bits of bytes j and
 * j + 4; sub-blocks 4..7 keep their low 4 bits in the nibbles of byte j + 4 and their top 2
 * bits in the spare top bits of bytes j - 4 (scale) and j (min). Inline: the dot products
 * unpack 8 of these per 256 weights. */
static inline void df_k4_scale_min(const uint8_t *s, int j, uint8_t *scale, uint8_t *min) {
    if (j < 4) {
        *scale = s[j] & 63;
        *min = s[j + 4] & 63;
    } else {
        *scale = (uint8_t)((s[j + 4] & 15) | (s[j - 4] >> 6) << 4);
        *min = (uint8_t)((s[j + 4] >> 4) | (s[j] >> 6) << 4);
    }
}

/* ---- quant_k_quantize.c: the K-quant quantizers ----------------------------------------- */
void df_quant_q2_K(const float *src, void *dst, int64_t n);
void df_quant_q3_K(const float *src, void *dst, int64_t n);
void df_quant_q4_K(const float *src, void *dst, int64_t n);
void df_quant_q5_K(const float *src, void *dst, int64_t n);
void df_quant_q6_K(const float *src, void *dst, int64_t n);
void df_quant_q8_K(const float *src, void *dst, int64_t n);

/* ---- quant_iq.c: IQ4_NL, IQ4_XS -------------------------------------------------------- */
void df_dequant_iq4_nl(const void *src, float *dst, int64_t n);
void df_dequant_iq4_xs(const void *src, float *dst, int64_t n);
void df_quant_iq4_nl(const float *src, void *dst, int64_t n);
void df_quant_iq4_xs(const float *src, void *dst, int64_t n);
float df_dot_iq4_nl_q8_0(const void *x, const void *y, int64_t n);
float df_dot_iq4_xs_q8_K(const void *x, const void *y, int64_t n);

/* ---- dot_avx2.c: AVX2+FMA+F16C versions, valid only where df_cpu_has_avx2_fma() -------- */
bool df_cpu_has_avx2_fma(void);
float df_dot_f32_f32_avx2(const void *x, const void *y, int64_t n);
float df_dot_f16_f32_avx2(const void *x, const void *y, int64_t n);
float df_dot_q4_0_q8_0_avx2(const void *x, const void *y, int64_t n);
float df_dot_q8_0_q8_0_avx2(const void *x, const void *y, int64_t n);
float df_dot_q4_K_q8_K_avx2(const void *x, const void *y, int64_t n);
float df_dot_q5_K_q8_K_avx2(const void *x, const void *y, int64_t n);
float df_dot_q6_K_q8_K_avx2(const void *x, const void *y, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
