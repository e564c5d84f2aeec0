/* Q8_0 weights repacked for the AVX-512 kernel (see mdot.h, "packed weights").
 *
 * The kernel of mdot_avx512.c reads 16 rows of the GGUF layout in lockstep and transposes
 * their bytes as it goes: 24 shuffles per 64 weights of each row pass, and 16 read streams
 * that the hardware prefetchers follow poorly. A matrix used many times (every decode step
 * and verify) can pay for that once, at load time: the packed copy stores each tile of 16
 * rows block by block, already transposed, so the kernel's inner loop is a plain 64-byte
 * load and one vpdpbusd per column, and a tile is one sequential stream.
 *
 * Packed layout, tile t = rows 16t .. 16t+15 (past the last row, the last row again), blocks
 * b = 0 .. n/32 - 1, 544 bytes each, tiles and blocks end to end:
 *   bytes 0..31     the 16 rows' fp16 scales of block b (row j at 2j)
 *   bytes 32..543   8 groups of 64 bytes: group g holds quants 4g..4g+3 of row j at 4j,
 *                   each +128 (stored as q ^ 0x80: vpdpbusd wants the weights unsigned)
 * The same 544 bytes per 16 blocks as the GGUF rows: the weights' memory traffic is unchanged.
 *
 * Bitwise the results of df_mdot_q8_0_avx512: the same integer sums (exact), then per block
 * the same float operations in the same order, acc += float(sum) * (dx * dy). The unit test
 * holds the two kernels to that. */
#include "quant/mdot.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <limits.h>
#include <string.h>

#include "base/alloc.h"
#include "quant/blocks.h"

#define DF_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

enum {
    PK_ROWS = 16,
    PK_SCALES = PK_ROWS * 2,
    PK_BLOCK = PK_SCALES + PK_ROWS * DF_QK8_0, /* 544 */
    PK_COLS = 8,                               /* columns per pass, as in mdot_avx512.c */
    PK_PREFETCH = 32,                          /* blocks ahead (17 KB), for passes that stream */
};

bool df_mdot_q8_0_packed_bytes(int64_t n_rows, int64_t n, size_t w_stride, size_t *tile_bytes, size_t *total) {
    *tile_bytes = *total = 0;
    /* rows further apart than this make df_mdot_q8_0_avx512 hand over to the AVX2 kernel,
     * whose results differ: such matrices stay unpacked */
    if (w_stride > (size_t)INT32_MAX / PK_ROWS) return false;
    if (n_rows <= 0 || n <= 0 || n % DF_QK8_0) return false;
    size_t tile;
    if (!df_mul_size((size_t)(n / DF_QK8_0), PK_BLOCK, &tile)) return false;
    if (!df_mul_size(tile, (size_t)((n_rows + PK_ROWS - 1) / PK_ROWS), total)) return false;
    *tile_bytes = tile;
    return true;
}

void df_mdot_q8_0_pack(const void *w, size_t w_stride, int64_t n_rows, int64_t n, int64_t tile0, int64_t n_tiles,
                       void *out) {
    const int64_t nb = n / DF_QK8_0;
    for (int64_t t = tile0; t < tile0 + n_tiles; t++) {
        uint8_t *tile = (uint8_t *)out + (size_t)t * (size_t)nb * PK_BLOCK;
        for (int j = 0; j < PK_ROWS; j++) {
            const int64_t r = t * PK_ROWS + j < n_rows ? t * PK_ROWS + j : n_rows - 1;
            const df_block_q8_0 *row = (const df_block_q8_0 *)((const uint8_t *)w + (size_t)r * w_stride);
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *o = tile + (size_t)b * PK_BLOCK;
                memcpy(o + 2 * j, &row[b].d, 2);
                /* four quants at a time, each +128 (the sign bit flipped) */
                for (int g = 0; g < DF_QK8_0 / 4; g++) {
                    uint32_t q;
                    memcpy(&q, row[b].qs + 4 * g, 4);
                    q ^= 0x80808080u;
                    memcpy(o + PK_SCALES + 64 * g + 4 * j, &q, 4);
                }
            }
        }
    }
}

DF_AVX512 ALWAYS_INLINE __m512i bcast32(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

/* One tile against nc <= 8 columns of Q8M activations (mdot.h): column c's quants of block b,
 * group g sit at 34b + 2 + 4g, its scale at d[b], the -128 correction at corr[b]. */
DF_AVX512 ALWAYS_INLINE void packed_tile(const uint8_t *tile, int64_t nb, const uint8_t *a, size_t as, const int nc,
                                         int64_t n, float *y, int64_t ys, __mmask16 valid, bool prefetch) {
    const float *d[PK_COLS];
    const int32_t *corr[PK_COLS];
    __m512 acc[PK_COLS];
    __m512i s[PK_COLS];
    for (int c = 0; c < nc; c++) {
        d[c] = (const float *)(a + (size_t)c * as + df_mdot_mirrored_scales_offset(n, 1));
        corr[c] = (const int32_t *)(d[c] + nb);
        acc[c] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *o = tile + (size_t)b * PK_BLOCK;
        if (prefetch)
            for (int l = 0; l < PK_BLOCK; l += 64) _mm_prefetch((const char *)o + PK_PREFETCH * PK_BLOCK + l, _MM_HINT_T0);
        const __m512 dx = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)o));
        for (int c = 0; c < nc; c++) s[c] = _mm512_set1_epi32(corr[c][b]);
        const uint8_t *ab = a + 34 * (size_t)b + 2;
#pragma GCC unroll 8
        for (int g = 0; g < DF_QK8_0 / 4; g++) {
            const __m512i wv = _mm512_loadu_si512(o + PK_SCALES + 64 * g);
            for (int c = 0; c < nc; c++) s[c] = _mm512_dpbusd_epi32(s[c], wv, bcast32(ab + (size_t)c * as + 4 * g));
        }
        for (int c = 0; c < nc; c++) {
            const __m512 dxy = _mm512_mul_ps(dx, _mm512_set1_ps(d[c][b]));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[c]), dxy, acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(y + c * ys, valid, acc[c]);
}

/* Two tiles (32 rows) against nc <= 4 columns: each column's 4-byte broadcast feeds two
 * vpdpbusd instead of one. With the weights already transposed, what bounds the one-tile
 * loop is the load ports (a broadcast per vpdpbusd, plus the weights); sharing each
 * broadcast between two tiles ran 1.2x (8 columns) to 1.8x (4 columns) faster. 4 columns x
 * 2 tiles x (sum + accumulator) + 2 weight vectors fit the 32 registers. The arithmetic of
 * each (row, column) is the one-tile loop's, operation for operation. */
DF_AVX512 ALWAYS_INLINE void packed_tile2(const uint8_t *t0, const uint8_t *t1, int64_t nb, const uint8_t *a, size_t as,
                                          const int nc, int64_t n, float *y, int64_t ys, bool prefetch) {
    const float *d[4];
    const int32_t *corr[4];
    __m512 acc0[4], acc1[4];
    __m512i s0[4], s1[4];
    for (int c = 0; c < nc; c++) {
        d[c] = (const float *)(a + (size_t)c * as + df_mdot_mirrored_scales_offset(n, 1));
        corr[c] = (const int32_t *)(d[c] + nb);
        acc0[c] = acc1[c] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *o0 = t0 + (size_t)b * PK_BLOCK, *o1 = t1 + (size_t)b * PK_BLOCK;
        if (prefetch)
            for (int l = 0; l < PK_BLOCK; l += 64) {
                _mm_prefetch((const char *)o0 + PK_PREFETCH * PK_BLOCK + l, _MM_HINT_T0);
                _mm_prefetch((const char *)o1 + PK_PREFETCH * PK_BLOCK + l, _MM_HINT_T0);
            }
        const __m512 dx0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)o0));
        const __m512 dx1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)o1));
        for (int c = 0; c < nc; c++) s0[c] = s1[c] = _mm512_set1_epi32(corr[c][b]);
        const uint8_t *ab = a + 34 * (size_t)b + 2;
#pragma GCC unroll 8
        for (int g = 0; g < DF_QK8_0 / 4; g++) {
            const __m512i w0 = _mm512_loadu_si512(o0 + PK_SCALES + 64 * g), w1 = _mm512_loadu_si512(o1 + PK_SCALES + 64 * g);
            for (int c = 0; c < nc; c++) {
                const __m512i x = bcast32(ab + (size_t)c * as + 4 * g);
                s0[c] = _mm512_dpbusd_epi32(s0[c], w0, x);
                s1[c] = _mm512_dpbusd_epi32(s1[c], w1, x);
            }
        }
        for (int c = 0; c < nc; c++) {
            const __m512 dy = _mm512_set1_ps(d[c][b]);
            acc0[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0[c]), _mm512_mul_ps(dx0, dy), acc0[c]);
            acc1[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1[c]), _mm512_mul_ps(dx1, dy), acc1[c]);
        }
    }
    for (int c = 0; c < nc; c++) {
        _mm512_storeu_ps(y + c * ys, acc0[c]);
        _mm512_storeu_ps(y + c * ys + PK_ROWS, acc1[c]);
    }
}

DF_AVX512 DF_MDOT_DECLARE(df_mdot_q8_0_packed_avx512) {
    const int64_t nb = n / DF_QK8_0;
    int64_t r0 = 0;
    /* pairs of full tiles, for batches of more than one column (decode reads each weight
     * once whatever the tile count, and is bound by memory: the one-tile loop below) */
    if (nc > 1)
        for (; r0 + 2 * PK_ROWS <= nr; r0 += 2 * PK_ROWS) {
            const uint8_t *t0 = (const uint8_t *)w + (size_t)(r0 / PK_ROWS) * ws, *t1 = t0 + ws;
            for (int c0 = 0; c0 < nc; c0 += 4) {
                const uint8_t *ac = (const uint8_t *)a + (size_t)c0 * as;
                float *yc = y + (int64_t)c0 * ys + r0;
                const int cols = nc - c0 < 4 ? nc - c0 : 4;
                /* the first pass over a pair streams it from memory as two streams, which
                 * the hardware prefetchers alone follow too late: ask for them ahead */
                const bool pf = c0 == 0;
                /* one copy per column count: with a count known only at run time the
                 * compiler keeps the sums in memory, and such a pass ran ~2x slower */
                switch (cols) {
                case 4: packed_tile2(t0, t1, nb, ac, as, 4, n, yc, ys, pf); break;
                case 3: packed_tile2(t0, t1, nb, ac, as, 3, n, yc, ys, pf); break;
                case 2: packed_tile2(t0, t1, nb, ac, as, 2, n, yc, ys, pf); break;
                default: packed_tile2(t0, t1, nb, ac, as, 1, n, yc, ys, pf); break;
                }
            }
        }
    for (; r0 < nr; r0 += PK_ROWS) {
        const uint8_t *tile = (const uint8_t *)w + (size_t)(r0 / PK_ROWS) * ws;
        const __mmask16 valid = (__mmask16)(nr - r0 >= PK_ROWS ? 0xffff : (1u << (nr - r0)) - 1);
        for (int c0 = 0; c0 < nc; c0 += PK_COLS) {
            const uint8_t *ac = (const uint8_t *)a + (size_t)c0 * as;
            float *yc = y + (int64_t)c0 * ys + r0;
            const int cols = nc - c0 < PK_COLS ? nc - c0 : PK_COLS;
            /* the passes that matter get code unrolled for their column count (see
             * FOR_EACH_TILE in mdot_avx512.c); a memory-bound pass prefetches ahead */
            if (cols == PK_COLS) packed_tile(tile, nb, ac, as, PK_COLS, n, yc, ys, valid, false);
            else if (cols == 1) packed_tile(tile, nb, ac, as, 1, n, yc, ys, valid, true);
            else packed_tile(tile, nb, ac, as, cols, n, yc, ys, valid, cols <= 2);
        }
    }
}

#else /* not x86 */

bool df_mdot_q8_0_packed_bytes(int64_t n_rows, int64_t n, size_t w_stride, size_t *tile_bytes, size_t *total) {
    *tile_bytes = *total = 0;
    return false;
}
void df_mdot_q8_0_pack(const void *w, size_t w_stride, int64_t n_rows, int64_t n, int64_t tile0, int64_t n_tiles,
                       void *out) {}
DF_MDOT_DECLARE(df_mdot_q8_0_packed_avx512) {
    for (int c = 0; c < nc; c++)
        for (int64_t r = 0; r < nr; r++) y[c * ys + r] = 0.0f;
}

#endif
