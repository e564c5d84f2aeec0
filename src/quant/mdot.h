/* Multi-token dot products: quantized weight rows against several activation columns at
 * once, so that the work of decoding a weight block (unpacking nibbles and high bits,
 * expanding sub-block scales, converting fp16 scales, transposing rows into vector lanes) is
 * done once per block and shared by every column instead of once per (block, token). This is
 * what makes a 16-token speculative verify cost a few decode steps instead of sixteen.
 *
 * Each kernel owns the layout of its activations: a column is quantized once per matmul call
 * with the kernel's own quantize function (the same integer quants and scales as the type's
 * vec_dot_type quantizer, Q8_0 or Q8_K, rearranged for the kernel's loads). Kernels exist for
 * Q8_0, Q4_0, Q4_K, Q5_K and Q6_K weights, in an AVX2 version and an AVX-512 (F, BW, VL,
 * VNNI) version, chosen at run time; the scalar traits table stays the reference.
 *
 * Batch invariance, the property speculative decoding rests on: the (row, column) result is a
 * function of that weight row and that column alone. It does not depend on how many columns
 * or rows the call has or on their positions, because every column goes through the same
 * float operations in the same order (integer sums are exact, so their order is free) and
 * vector lanes never mix (the kernels are compiled with -ffp-contract=off so that the
 * compiler cannot fuse some columns' multiply-adds and not others'). A one-token decode that
 * goes through the same kernel with one column therefore gives bitwise the result that the
 * same token gets inside a 16-token verify. */
#ifndef DF_QUANT_MDOT_H
#define DF_QUANT_MDOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum df_mdot_isa {
    DF_MDOT_AVX2 = 0,   /* AVX2 + FMA + F16C */
    DF_MDOT_AVX512 = 1, /* AVX-512 F, BW, VL, VNNI (and everything AVX2 needs) */
    DF_MDOT_ISA_COUNT
} df_mdot_isa;

/* y[c * y_stride + r] = dot(row r, column c) for r < n_rows and c < n_cols, rows of n
 * elements (a multiple of the type's block size) w_stride bytes apart. Column c's activations
 * start at a + c * a_stride, in the kernel's own layout (see quantize). Any n_rows, n_cols
 * >= 1; the kernel walks them in tiles. Row r's result does not depend on n_rows either (no
 * lane of a tile sees another lane). */
typedef void (*df_mdot_fn)(const void *w, size_t w_stride, int64_t n_rows, const void *a,
                           size_t a_stride, int n_cols, int64_t n, float *y, int64_t y_stride);
/* Converts one column of n floats to the kernel's activation layout. */
typedef void (*df_mdot_quant_fn)(const float *x, void *a, int64_t n);

typedef struct df_mdot {
    df_mdot_fn dot;
    df_mdot_quant_fn quantize;
    /* bytes of one quantized column of n elements, or false when n is not a whole number
     * of blocks or the size overflows */
    bool (*act_bytes)(int64_t n, size_t *out);
    /* Packed weights (optional: NULL where the kernel has none). A matrix that is used many
     * times can be rearranged once into a layout the kernel reads faster; dot_packed over
     * the packed copy gives bitwise the results of dot over the original.
     * packed_bytes: whether a matrix of n_rows rows of n elements, w_stride bytes apart, can
     *   be packed, and the sizes: rows are packed in tiles of 16 (*tile_bytes each, the
     *   last one padded) and *total bytes in all.
     * pack: writes tiles tile0 .. tile0 + n_tiles - 1 of the packed copy of w into out (the
     *   whole copy's buffer); separate tile ranges may be packed by separate threads.
     * dot_packed: dot's contract, with w the tile that holds the first row (so the first
     *   row must be a multiple of 16) and w_stride the tile size. */
    bool (*packed_bytes)(int64_t n_rows, int64_t n, size_t w_stride, size_t *tile_bytes, size_t *total);
    void (*pack)(const void *w, size_t w_stride, int64_t n_rows, int64_t n, int64_t tile0, int64_t n_tiles,
                 void *out);
    df_mdot_fn dot_packed;
} df_mdot;

/* The kernel for weights of type t at the given ISA, or NULL when there is none (other
 * types, or a CPU or build without the ISA). */
const df_mdot *df_mdot_get(df_type t, df_mdot_isa isa);
/* Whether this CPU (and OS) runs the ISA's kernels. */
bool df_mdot_isa_supported(df_mdot_isa isa);
/* The largest act_bytes over every ISA's kernel for t (0 when t has no kernel): what a caller
 * that may switch ISAs between calls allocates per column. False on a bad n. */
bool df_mdot_act_bytes_max(df_type t, int64_t n, size_t *out);

/* ---- internals shared by the mdot_*.c files ---------------------------------------- */

/* Activation layouts.
 *
 * Q8S (AVX2, Q8_0 and Q4_0 weights): the Q8_0 quants of the column as one int8 array
 *   qs[n], then the block scales as floats d[n / 32].
 * Q8M (AVX-512, Q8_0 weights): the quants in the byte layout of a Q8_0 row with zeros where
 *   the weights keep their fp16 scale (34 bytes per block: 0, 0, qs[0..31]), so that any
 *   4-byte group of a weight row meets the activations at the same offset; then d[nb]
 *   and the accumulator start of each block, -128 * sum(qs), c128[nb] (int32; the kernel
 *   gives the weights +128).
 * Q4M (AVX-512, Q4_0 weights): the same for Q4_0's 18-byte blocks, in two planes: the
 *   first holds 0, 0, qs[0..15] per block (the elements of the low nibbles), the second
 *   0, 0, qs[16..31] (the high nibbles); then d[nb] and -8 * sum(qs), c8[nb] (the nibbles
 *   are used as 0..15).
 * Q8KS (both ISAs, K-quant weights): the Q8_K quants qs[n], the super-block scales d[nsb],
 *   the group sums bsums[nsb][16] (int16, as in Q8_K), per 32-element sub-block the float
 *   d * (sum of its 32 quants), ysum[nsb][8], and the same sums as integers, b32[nsb][8]
 *   (int16): the Q4_K/Q5_K mins of the AVX2 and the AVX-512 kernels. */
/* Byte offset of d[] in a Q8M (planes 1) or Q4M (planes 2) column: after the mirrored quants,
 * rounded up to 4 bytes. */
static inline size_t df_mdot_mirrored_scales_offset(int64_t n, int planes) {
    const size_t q = (size_t)(n / 32) * (size_t)(planes == 1 ? 34 : 36);
    return (q + 3) / 4 * 4;
}
bool df_mdot_act_bytes_q8s(int64_t n, size_t *out);
bool df_mdot_act_bytes_q8m(int64_t n, size_t *out);
bool df_mdot_act_bytes_q4m(int64_t n, size_t *out);
bool df_mdot_act_bytes_q8ks(int64_t n, size_t *out);
void df_mdot_quant_q8s(const float *x, void *a, int64_t n);
void df_mdot_quant_q8m(const float *x, void *a, int64_t n);
void df_mdot_quant_q4m(const float *x, void *a, int64_t n);
void df_mdot_quant_q8ks(const float *x, void *a, int64_t n);
/* mdot_act_avx2.c: the same bytes, faster; valid only where AVX2 is (both ISAs have it). */
void df_mdot_quant_q8s_avx2(const float *x, void *a, int64_t n);
void df_mdot_quant_q8m_avx2(const float *x, void *a, int64_t n);
void df_mdot_quant_q4m_avx2(const float *x, void *a, int64_t n);
void df_mdot_quant_q8ks_avx2(const float *x, void *a, int64_t n);
/* mdot_act_avx512.c: the Q8M layout again, faster; valid only where AVX-512 F/BW/VL is. */
void df_mdot_quant_q8m_avx512(const float *x, void *a, int64_t n);

/* mdot_avx2.c / mdot_avx512.c: the kernels (valid only where the ISA is supported). */
#define DF_MDOT_DECLARE(name)                                                                     \
    void name(const void *w, size_t ws, int64_t nr, const void *a, size_t as, int nc, int64_t n, \
              float *y, int64_t ys)
DF_MDOT_DECLARE(df_mdot_q8_0_avx2);
DF_MDOT_DECLARE(df_mdot_q4_0_avx2);
DF_MDOT_DECLARE(df_mdot_q4_K_avx2);
DF_MDOT_DECLARE(df_mdot_q5_K_avx2);
DF_MDOT_DECLARE(df_mdot_q6_K_avx2);
DF_MDOT_DECLARE(df_mdot_q8_0_avx512);
DF_MDOT_DECLARE(df_mdot_q4_0_avx512);
DF_MDOT_DECLARE(df_mdot_q4_K_avx512);
DF_MDOT_DECLARE(df_mdot_q5_K_avx512);
DF_MDOT_DECLARE(df_mdot_q6_K_avx512);
bool df_cpu_has_avx512_vnni(void);

/* mdot_packed_avx512.c: Q8_0 packed for the AVX-512 kernel (layout described there). */
bool df_mdot_q8_0_packed_bytes(int64_t n_rows, int64_t n, size_t w_stride, size_t *tile_bytes, size_t *total);
void df_mdot_q8_0_pack(const void *w, size_t w_stride, int64_t n_rows, int64_t n, int64_t tile0, int64_t n_tiles,
                       void *out);
DF_MDOT_DECLARE(df_mdot_q8_0_packed_avx512);
/* mdot_avx512.c: Q4_K, Q5_K and Q6_K packed for their AVX-512 kernels (layout described there). */
#define DF_MDOT_DECLARE_PACKED(name)                                                                      \
    bool df_mdot_##name##_packed_bytes(int64_t n_rows, int64_t n, size_t w_stride, size_t *tile_bytes,   \
                                       size_t *total);                                                  \
    void df_mdot_##name##_pack(const void *w, size_t w_stride, int64_t n_rows, int64_t n, int64_t tile0, \
                               int64_t n_tiles, void *out);                                             \
    DF_MDOT_DECLARE(df_mdot_##name##_packed_avx512)
DF_MDOT_DECLARE_PACKED(q4_K);
DF_MDOT_DECLARE_PACKED(q5_K);
DF_MDOT_DECLARE_PACKED(q6_K);

#ifdef __cplusplus
}
#endif

#endif
