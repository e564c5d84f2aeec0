/* AVX-512 multi-token dots (see mdot.h), VNNI doing the integer products.
 *
 * Sixteen weight rows go side by side in the sixteen 32-bit lanes of a vector ("row lanes"):
 * a tile is 16 rows x up to 8 columns. The rows' bytes are transposed as they are read, so
 * that a vector holds the same four quant bytes of every row, and each such vector goes
 * straight to the tile's columns: one vpdpbusd per column per 4 elements of 16 rows, the
 * column's four activation bytes coming as a 32-bit broadcast from memory. Block scales are
 * applied to 16 rows at once. Compared with one row's elements in the lanes (mdot_avx2.c),
 * the per-block scale work (convert, multiply, accumulate) is shared by 16 rows instead of 8
 * lanes of one row, and no horizontal sum is left at the end: lane j holds row j's dot.
 *
 * vpdpbusd multiplies unsigned by signed bytes, and only its signed operand can be a broadcast,
 * so the weights are the unsigned side: Q8_0 quants get +128 (and the accumulator starts at
 * -128 * the sum of the block's activations, precomputed per column), Q4_0 nibbles are used as
 * 0..15 (the accumulator starts at -8 * that sum), K-quants are unsigned already. Integer sums
 * are exact; only the per-block scaling rounds.
 *
 * Batch invariance: lanes never mix, and every column runs the same float operations in the
 * same order whatever the number of columns in the tile (integer sums are exact, so their
 * order is free), so a (row, column) result depends on neither the other rows nor the other
 * columns. Row tails load a valid row again into the unused lanes and mask them off at the
 * store.
 *
 * Target attributes per function: the library still runs on CPUs without AVX-512, and mdot.c
 * hands these out only after checking the CPU and the OS. */
#include "quant/mdot.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <limits.h>
#include <string.h>

#include "base/alloc.h"
#include "quant/blocks.h"
#include "quant/kernels.h"

#define DF_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

enum {
    TILE_ROWS = 16,
    TILE_COLS = 8,    /* 8 columns x (sum + accumulator) + 8 transposed weight vectors: 32 zmm */
    LEGACY_CHUNK = 8, /* Q8_0 / Q4_0 blocks per step: 272 / 144 bytes, whole 4-byte groups */
    K_PREFETCH_BYTES = 24 << 10, /* packed K-quants: how far ahead to ask for the stream */
};

/* ---- shared helpers ----------------------------------------------------------------------- */

/* The 16 row pointers of a tile (rows past nr repeat the last row) and the matching byte
 * offsets for the gathers. */
typedef struct {
    const uint8_t *row[TILE_ROWS];
    __m512i offsets;
    size_t stride, row_bytes;
    __mmask16 valid;
    bool full; /* 16 rows: row j at row[0] + j * stride (no pointer table to load from) */
    /* K-quants packed (see "packed K-quants" below): the tile's bytes already transposed,
     * super-block i's 4-byte group g of the 16 rows at pk + i * pk_sb + 64 g; NULL: rows */
    const uint8_t *pk;
    size_t pk_sb;
} tile_rows;

ALWAYS_INLINE const uint8_t *row_at(const tile_rows *t, int j) {
    return t->full ? t->row[0] + (size_t)j * t->stride : t->row[j];
}

DF_AVX512 ALWAYS_INLINE void tile_rows_init(tile_rows *t, const uint8_t *w, size_t ws, int nr, size_t row_bytes) {
    int32_t off[TILE_ROWS];
    for (int j = 0; j < TILE_ROWS; j++) {
        const int src = j < nr ? j : nr - 1;
        t->row[j] = w + (size_t)src * ws;
        off[j] = (int32_t)((size_t)src * ws);
    }
    t->offsets = _mm512_loadu_si512((const void *)off);
    t->stride = ws;
    t->row_bytes = row_bytes;
    t->valid = (__mmask16)(nr >= TILE_ROWS ? 0xffff : (1u << nr) - 1);
    t->full = nr >= TILE_ROWS;
    t->pk = NULL;
    t->pk_sb = 0;
}

/* The 32-bit words at byte offset off of the 16 rows, lane j from row j. */
DF_AVX512 ALWAYS_INLINE __m512i gather_words(const tile_rows *t, size_t off) {
    return _mm512_i32gather_epi32(t->offsets, (const void *)(t->row[0] + off), 1);
}

/* The tile's rows are read in lockstep, 16 streams at once, which the hardware prefetchers
 * follow poorly (measured here: ~2/3 of the sequential read rate). So while a tile works
 * through the bytes [off, off + bytes) of its rows, it asks for the same share of the next
 * tile (the 16 rows after it, one contiguous region) as a sequential stream into L2: the next
 * tile then finds its rows there. Prefetches never fault, so addresses past the matrix are
 * harmless. */
DF_AVX512 ALWAYS_INLINE void tile_prefetch(const tile_rows *t, size_t off, size_t bytes) {
    const size_t tile = TILE_ROWS * t->stride;
    const size_t lo = tile * off / t->row_bytes, hi = tile * (off + bytes) / t->row_bytes;
    const char *next = (const char *)t->row[0] + tile;
    for (size_t o = lo & ~(size_t)63; o < hi; o += 64) _mm_prefetch(next + o, _MM_HINT_T1);
}

/* The first tile of a call has no predecessor to fetch it: ask for all of it up front. */
DF_AVX512 ALWAYS_INLINE void tile_prefetch_first(const tile_rows *t) {
    const size_t tile = TILE_ROWS * t->stride;
    for (size_t o = 0; o < tile; o += 64) _mm_prefetch((const char *)t->row[0] + o, _MM_HINT_T1);
}

/* Transpose of 32 bytes at offset off of the 16 rows: t[g] lane j = bytes 4g..4g+3 of row j. */
DF_AVX512 ALWAYS_INLINE void transpose_16x32(const tile_rows *t, size_t off, __m512i out[8]) {
    __m512i z[8], s[8];
    /* z[k]: 128-bit lanes [row k dwords 0-3, row k 4-7, row k+8 0-3, row k+8 4-7] */
    for (int k = 0; k < 8; k++)
        z[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(row_at(t, k) + off))),
                                  _mm256_loadu_si256((const __m256i *)(row_at(t, k + 8) + off)), 1);
    for (int m = 0; m < 4; m++) {
        s[2 * m] = _mm512_unpacklo_epi32(z[2 * m], z[2 * m + 1]);     /* [a0 b0 a1 b1] per lane */
        s[2 * m + 1] = _mm512_unpackhi_epi32(z[2 * m], z[2 * m + 1]); /* [a2 b2 a3 b3] */
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int d = 0; d < 4; d++) {
        /* dword d of rows 0-3 (128-bit lane 0), d + 4 of rows 0-3 (lane 1), the same for rows
         * 8-11 (lanes 2, 3); u1 the same for rows 4-7 and 12-15 */
        const int src = d / 2, hi64 = d % 2;
        const __m512i u0 = hi64 ? _mm512_unpackhi_epi64(s[src], s[src + 2]) : _mm512_unpacklo_epi64(s[src], s[src + 2]);
        const __m512i u1 = hi64 ? _mm512_unpackhi_epi64(s[src + 4], s[src + 6]) : _mm512_unpacklo_epi64(s[src + 4], s[src + 6]);
        out[d] = _mm512_permutex2var_epi64(u0, lo, u1);
        out[d + 4] = _mm512_permutex2var_epi64(u0, hi, u1);
    }
}

/* Transpose of 16 bytes at offset off of the 16 rows: out[g] lane j = bytes 4g..4g+3 of row j. */
DF_AVX512 ALWAYS_INLINE void transpose_16x16(const tile_rows *t, size_t off, __m512i out[4]) {
    __m512i z[4];
    /* z[k]: 128-bit lane m holds row k + 4m */
    for (int k = 0; k < 4; k++) {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(row_at(t, k) + off)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(row_at(t, k + 4) + off)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(row_at(t, k + 8) + off)), 2);
        z[k] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(row_at(t, k + 12) + off)), 3);
    }
    const __m512i s0 = _mm512_unpacklo_epi32(z[0], z[1]), s1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i s2 = _mm512_unpacklo_epi32(z[2], z[3]), s3 = _mm512_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm512_unpacklo_epi64(s0, s2);
    out[1] = _mm512_unpackhi_epi64(s0, s2);
    out[2] = _mm512_unpacklo_epi64(s1, s3);
    out[3] = _mm512_unpackhi_epi64(s1, s3);
}

/* fp16 values in the low (high false) or high 16 bits of each lane, as floats. */
DF_AVX512 ALWAYS_INLINE __m512 half_lanes_to_f32(__m512i v, bool high) {
    if (high) v = _mm512_srli_epi32(v, 16);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
}

/* A 32-bit broadcast from memory (the compiler folds it into the instruction using it). */
DF_AVX512 ALWAYS_INLINE __m512i bcast32(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

/* A vpshufb control applying the byte pattern ctl (byte indices 0..3 within a 32-bit lane,
 * 0x80 for zero) to every lane: vpshufb indexes 128-bit lanes, so dword k of each 128-bit
 * lane adds 4k to its indices (a 0x80 entry stays negative, i.e. zero). */
DF_AVX512 ALWAYS_INLINE __m512i lane_shuffle(uint32_t ctl) {
    return _mm512_add_epi8(_mm512_set1_epi32((int32_t)ctl), _mm512_set4_epi32(0x0c0c0c0c, 0x08080808, 0x04040404, 0));
}

/* Control that puts byte b of each lane in the lane's low byte, zeros above. */
DF_AVX512 ALWAYS_INLINE __m512i pick_byte(int b) { return lane_shuffle(0x80808000u | (uint32_t)b); }

/* Runs TILE(k, full) for every tile of 16 rows and every pass of k <= TILE_COLS columns; pf
 * says whether the pass prefetches (the first pass over a row tile does; 2: also the tile
 * itself, for the first tile of the call). The passes that matter for speed, decode (1
 * column) and the full passes of a verify or a prefill (8), get code unrolled for their
 * column count; any other shape runs the same operations per column through loops over a
 * run-time count (one copy of the code, not one per count: compile time and code size). */
#define FOR_EACH_TILE(TILE)                                                                  \
    for (int64_t r0 = 0; r0 < nr; r0 += TILE_ROWS)                                           \
    for (int c0 = 0; c0 < nc; c0 += TILE_COLS) {                                             \
        const uint8_t *wt = (const uint8_t *)w + (size_t)r0 * ws;                            \
        const int rows = nr - r0 < TILE_ROWS ? (int)(nr - r0) : TILE_ROWS;                   \
        const uint8_t *ag = (const uint8_t *)a + (size_t)c0 * as;                            \
        float *yg = y + (int64_t)c0 * ys + r0;                                               \
        const int pf = c0 > 0 ? 0 : r0 == 0 ? 2 : 1;                                         \
        const int cols = nc - c0 < TILE_COLS ? nc - c0 : TILE_COLS;                          \
        if (rows == TILE_ROWS && cols == TILE_COLS) TILE(TILE_COLS, true);                   \
        else if (rows == TILE_ROWS && cols == 1) TILE(1, true);                              \
        else TILE(cols, false);                                                              \
    }

/* The gathers take 32-bit offsets: rows further apart than that go to the AVX2 kernels
 * (every AVX-512 CPU has AVX2), chosen by the weight shape alone, so still batch invariant. */
static bool stride_too_large(size_t ws) { return ws > (size_t)INT32_MAX / TILE_ROWS; }

/* ---- Q8_0 and Q4_0 against Q8M / Q4M activations ------------------------------------- */

/* A chunk of LEGACY_CHUNK = 8 blocks is 272 bytes of a Q8_0 row (68 four-byte groups) and 144
 * bytes of a Q4_0 row (36): whole transposes, scales included, no gather. The activations
 * mirror the weight bytes (zeros facing the fp16 scales), so group i of the weights meets
 * group i of the activations, and each group holds quants of one block only: block k of a
 * chunk has its scale at byte k * bb (low half of its group if that is a multiple of 4, else
 * high half) and its quants in groups (k * bb + 2) / 4 .. (k * bb + bb - 1) / 4. A row whose
 * block count is not a multiple of 8 ends with single blocks, their scales gathered. */
enum { Q8_GROUPS = 68, Q4_GROUPS = 36 };

/* What each group of a chunk does besides its products, from the rule above: holds block
 * k's scale (k + 1; bit 7: in the high half of the group), starts block k's sums (k + 1),
 * ends them (k + 1); 0 for none. A table keeps the group loop a loop (the rule, unrolled
 * into constants, made this file a minute's compile). */
typedef struct {
    uint8_t scale, start, end;
} group_role;
static const group_role k_roles_q8_0[68] = {
    {1, 1, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0},
    {130, 0, 1}, {0, 2, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0},
    {0, 0, 2}, {3, 3, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0},
    {0, 0, 0}, {132, 0, 3}, {0, 4, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0},
    {0, 0, 0}, {0, 0, 4}, {5, 5, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0},
    {0, 0, 0}, {0, 0, 0}, {134, 0, 5}, {0, 6, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0},
    {0, 0, 0}, {0, 0, 0}, {0, 0, 6}, {7, 7, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0},
    {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {136, 0, 7}, {0, 8, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0},
    {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 8},
};
static const group_role k_roles_q4_0[36] = {
    {1, 1, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {130, 0, 1}, {0, 2, 0}, {0, 0, 0}, {0, 0, 0},
    {0, 0, 2}, {3, 3, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {132, 0, 3}, {0, 4, 0}, {0, 0, 0},
    {0, 0, 0}, {0, 0, 4}, {5, 5, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {134, 0, 5}, {0, 6, 0},
    {0, 0, 0}, {0, 0, 0}, {0, 0, 6}, {7, 7, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {136, 0, 7},
    {0, 8, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 8},
};

/* The Q8M / Q4M parts of a column (mdot.h). */
typedef struct {
    const uint8_t *lo, *hi; /* the mirrored quants (Q4M: the low- and high-nibble planes) */
    const float *d;
    const int32_t *corr;
} mirrored_view;

ALWAYS_INLINE mirrored_view mirrored_at(const uint8_t *a, int64_t n, bool q4) {
    const int64_t nb = n / DF_QK8_0;
    mirrored_view v;
    v.lo = a;
    v.hi = q4 ? a + 18 * nb : NULL;
    v.d = (const float *)(a + df_mdot_mirrored_scales_offset(n, q4 ? 2 : 1));
    v.corr = (const int32_t *)(v.d + nb);
    return v;
}

/* One transposed group v of weight bytes against the columns' bytes at offset aoff. */
DF_AVX512 ALWAYS_INLINE void legacy_group(bool q4, __m512i v, const mirrored_view *av, const int nc, size_t aoff,
                                          __m512i *s) {
    if (q4) {
        const __m512i low4 = _mm512_set1_epi8(15);
        const __m512i lo = _mm512_and_si512(v, low4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
        for (int c = 0; c < nc; c++) s[c] = _mm512_dpbusd_epi32(s[c], lo, bcast32(av[c].lo + aoff));
        for (int c = 0; c < nc; c++) s[c] = _mm512_dpbusd_epi32(s[c], hi, bcast32(av[c].hi + aoff));
    } else {
        const __m512i u = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
        for (int c = 0; c < nc; c++) s[c] = _mm512_dpbusd_epi32(s[c], u, bcast32(av[c].lo + aoff));
    }
}

DF_AVX512 ALWAYS_INLINE void legacy_block_start(const mirrored_view *av, const int nc, int64_t b, __m512i *s) {
    for (int c = 0; c < nc; c++) s[c] = _mm512_set1_epi32(av[c].corr[b]);
}

/* The block's exact sums, scaled by the rows' and the column's block scales, into acc. */
DF_AVX512 ALWAYS_INLINE void legacy_block_end(__m512 dx, const mirrored_view *av, const int nc, int64_t b,
                                              const __m512i *s, __m512 *acc) {
    for (int c = 0; c < nc; c++) {
        const __m512 dxy = _mm512_mul_ps(dx, _mm512_set1_ps(av[c].d[b]));
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[c]), dxy, acc[c]);
    }
}

DF_AVX512 ALWAYS_INLINE void legacy_tile(const uint8_t *w, size_t ws, int nr, bool full, bool q4, const uint8_t *a,
                                              size_t as, const int nc, int64_t n, float *y, int64_t ys, int pf) {
    const int64_t nb = n / DF_QK8_0;
    const int bb = q4 ? (int)sizeof(df_block_q4_0) : (int)sizeof(df_block_q8_0);
    const int groups = q4 ? Q4_GROUPS : Q8_GROUPS;
    tile_rows t;
    tile_rows_init(&t, w, ws, nr, (size_t)nb * (size_t)bb);
    t.full = full;
    if (pf == 2) tile_prefetch_first(&t);
    mirrored_view av[TILE_COLS];
    __m512 acc[TILE_COLS];
    __m512i s[TILE_COLS];
    for (int c = 0; c < nc; c++) {
        av[c] = mirrored_at(a + (size_t)c * as, n, q4);
        acc[c] = _mm512_setzero_ps();
        s[c] = _mm512_setzero_si512(); /* set at each block start; this only quiets the compiler */
    }
    int64_t b0 = 0;
    for (; b0 + LEGACY_CHUNK <= nb; b0 += LEGACY_CHUNK) {
        const size_t off = (size_t)b0 * (size_t)bb;
        if (pf) tile_prefetch(&t, off, LEGACY_CHUNK * (size_t)bb);
        /* a block's scale is read in its first group or its predecessor's last one, and used
         * at its own last group: at most two are pending at a time */
        __m512 dk[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int m = 0; m < groups; m += 8) {
            __m512i v[8];
            const bool whole = groups - m >= 8;
            if (whole) {
                transpose_16x32(&t, off + 4 * (size_t)m, v);
            } else {
                transpose_16x16(&t, off + 4 * (size_t)m, v);
                for (int g = 4; g < 8; g++) v[g] = _mm512_setzero_si512(); /* unused */
            }
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                if (!whole && g >= 4) break;
                const int i = m + g;
                const group_role r = (q4 ? k_roles_q4_0 : k_roles_q8_0)[i];
                if (r.scale) dk[((r.scale & 0x7f) - 1) % 2] = half_lanes_to_f32(v[g], r.scale & 0x80);
                if (r.start) legacy_block_start(av, nc, b0 + r.start - 1, s);
                legacy_group(q4, v[g], av, nc, off + 4 * (size_t)i, s);
                if (r.end) legacy_block_end(dk[(r.end - 1) % 2], av, nc, b0 + r.end - 1, s, acc);
            }
        }
    }
    for (int64_t b = b0; b < nb; b++) { /* the blocks after the last whole chunk */
        const size_t off = (size_t)b * (size_t)bb;
        const __m512 dx = half_lanes_to_f32(gather_words(&t, off), false);
        __m512i v[8];
        if (q4) transpose_16x16(&t, off + 2, v);
        else transpose_16x32(&t, off + 2, v);
        legacy_block_start(av, nc, b, s);
        for (int g = 0; g < (q4 ? 4 : 8); g++) legacy_group(q4, v[g], av, nc, off + 2 + 4 * (size_t)g, s);
        legacy_block_end(dx, av, nc, b, s, acc);
    }
    for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(y + c * ys, t.valid, acc[c]);
}

DF_AVX512 DF_MDOT_DECLARE(df_mdot_q8_0_avx512) {
    if (stride_too_large(ws)) {
        df_mdot_q8_0_avx2(w, ws, nr, a, as, nc, n, y, ys);
        return;
    }
#define TILE(k, full) legacy_tile(wt, ws, rows, full, false, ag, as, k, n, yg, ys, pf)
    FOR_EACH_TILE(TILE)
#undef TILE
}

DF_AVX512 DF_MDOT_DECLARE(df_mdot_q4_0_avx512) {
    if (stride_too_large(ws)) {
        df_mdot_q4_0_avx2(w, ws, nr, a, as, nc, n, y, ys);
        return;
    }
#define TILE(k, full) legacy_tile(wt, ws, rows, full, true, ag, as, k, n, yg, ys, pf)
    FOR_EACH_TILE(TILE)
#undef TILE
}

/* ---- K-quants against Q8KS activations ------------------------------------------------- */

/* The 4-byte groups of super-block i of the tile's 16 rows, starting at byte `local` of the
 * block (a multiple of 4), as vectors (lane j = row j): 4 of them (16 bytes) or 8 (32
 * bytes). Rows: a transpose; packed: plain loads. `packed` is a constant at every call. */
DF_AVX512 ALWAYS_INLINE void sb_words16(const tile_rows *t, bool packed, size_t bs, int64_t i, size_t local, __m512i out[4]) {
    if (packed) {
        const uint8_t *p = t->pk + (size_t)i * t->pk_sb + local / 4 * 64;
        for (int k = 0; k < 4; k++) out[k] = _mm512_loadu_si512(p + 64 * k);
    } else {
        transpose_16x16(t, (size_t)i * bs + local, out);
    }
}

DF_AVX512 ALWAYS_INLINE void sb_words32(const tile_rows *t, bool packed, size_t bs, int64_t i, size_t local, __m512i out[8]) {
    if (packed) {
        const uint8_t *p = t->pk + (size_t)i * t->pk_sb + local / 4 * 64;
        for (int k = 0; k < 8; k++) out[k] = _mm512_loadu_si512(p + 64 * k);
    } else {
        transpose_16x32(t, (size_t)i * bs + local, out);
    }
}

typedef struct {
    const int8_t *qs;
    const float *d;
    const int16_t *bsums; /* [nsb][16] */
    const int16_t *b32;   /* [nsb][8]: sums of 32 quants */
} q8ks_view;

ALWAYS_INLINE q8ks_view q8ks_at(const uint8_t *a, int64_t n) {
    const int64_t nsb = n / DF_QK_K;
    q8ks_view v;
    v.qs = (const int8_t *)a;
    v.d = (const float *)(a + n);
    v.bsums = (const int16_t *)(v.d + nsb);
    v.b32 = (const int16_t *)((const float *)(v.bsums + 16 * nsb) + 8 * nsb);
    return v;
}

/* Group g of a sub-block: the transposed weights w (4 elements of 16 rows) against each
 * column's quants at element e of super-block i, into the sub-block sums s. The weights are
 * made one group at a time and used at once: 8 columns' sums, 8 columns' super-block sums and
 * the 8 transposed source vectors already fill most of the 32 registers. */
DF_AVX512 ALWAYS_INLINE void k_group(__m512i w, int g, const q8ks_view *av, const int nc, int64_t i, int e, __m512i *s) {
    for (int c = 0; c < nc; c++)
        s[c] = _mm512_dpbusd_epi32(g ? s[c] : _mm512_setzero_si512(), w, bcast32(av[c].qs + i * DF_QK_K + e));
}

/* The end of a sub-block: its exact sums times the rows' sub-block scale sc, into isum. */
DF_AVX512 ALWAYS_INLINE void k_sub_end(const __m512i *s, __m512i sc, const int nc, __m512i *isum) {
    for (int c = 0; c < nc; c++) isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(s[c], sc));
}

/* Q4_K (five false) / Q5_K super-block i of the tile's rows against the columns: the exact
 * integer sums and the mins, then into acc. Layout: d, dmin (word 0), 12 scale bytes (words
 * 1..3), Q5_K's 32 qh bytes, then 128 qs bytes: chunk k of 32 bytes holds sub-block 2k in its
 * low nibbles and 2k+1 in its high nibbles (bit 2k / 2k+1 of qh on top for Q5_K). */
DF_AVX512 ALWAYS_INLINE void q45k_super_block(const tile_rows *t, bool packed, bool five, int64_t i, const q8ks_view *av,
                                              const int nc, __m512 *acc) {
    const size_t bs = five ? sizeof(df_block_q5_K) : sizeof(df_block_q4_K);
    const size_t qs_off = five ? 48 : 16;
    __m512i h[4];
    sb_words16(t, packed, bs, i, 0, h);
    const __m512 d = half_lanes_to_f32(h[0], false), dmin = half_lanes_to_f32(h[0], true);
    /* the 6-bit scales and mins, four per lane at a time (layout at df_k4_scale_min) */
    const __m512i m6 = _mm512_set1_epi8(0x3f), m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(0x03);
    const __m512i sc_lo = _mm512_and_si512(h[1], m6), mn_lo = _mm512_and_si512(h[2], m6);
    const __m512i sc_hi = _mm512_or_si512(_mm512_and_si512(h[3], m4),
                                          _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(h[1], 6), m2), 4));
    const __m512i mn_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(h[3], 4), m4),
                                          _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(h[2], 6), m2), 4));
    __m512i qh[8];
    if (five) sb_words32(t, packed, bs, i, 16, qh);
    __m512i isum[TILE_COLS];
    for (int c = 0; c < nc; c++) isum[c] = _mm512_setzero_si512();
    const __m512i low4 = _mm512_set1_epi8(15), sixteen = _mm512_set1_epi8(16);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m512i v[8], s[TILE_COLS];
        sb_words32(t, packed, bs, i, qs_off + 32 * (size_t)k, v);
        for (int half = 0; half < 2; half++) {
            const int j = 2 * k + half; /* the sub-block */
            for (int g = 0; g < 8; g++) {
                __m512i w = _mm512_and_si512(half ? _mm512_srli_epi16(v[g], 4) : v[g], low4);
                if (five) /* bit j of each qh byte is bit 4 of the quant */
                    w = _mm512_mask_add_epi8(w, _mm512_test_epi8_mask(qh[g], _mm512_set1_epi8((char)(1 << j))), w, sixteen);
                k_group(w, g, av, nc, i, 32 * j + 4 * g, s);
            }
            k_sub_end(s, _mm512_shuffle_epi8(j < 4 ? sc_lo : sc_hi, pick_byte(j % 4)), nc, isum);
        }
    }
    /* mins as 16-bit pairs (min 2p, min 2p+1) against the columns' 32-sums */
    const __m512i pair01 = lane_shuffle(0x80018000u), pair23 = lane_shuffle(0x80038002u);
    const __m512i mp[4] = {_mm512_shuffle_epi8(mn_lo, pair01), _mm512_shuffle_epi8(mn_lo, pair23),
                           _mm512_shuffle_epi8(mn_hi, pair01), _mm512_shuffle_epi8(mn_hi, pair23)};
    for (int c = 0; c < nc; c++) {
        const int16_t *b32 = av[c].b32 + 8 * i;
        __m512i m = _mm512_setzero_si512();
        for (int p = 0; p < 4; p++) m = _mm512_dpwssd_epi32(m, mp[p], bcast32(b32 + 2 * p));
        const __m512 dy = _mm512_set1_ps(av[c].d[i]);
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(d, dy), acc[c]);
        acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dmin, dy), acc[c]);
    }
}

/* Q6_K super-block i. Layout: ql[128], qh[64], 16 int8 scales, d. In half h, element l, l+32,
 * l+64, l+96 (l < 32) take the low nibble of ql[64h + l], of ql[64h + 32 + l], the high
 * nibble of ql[64h + l], of ql[64h + 32 + l], and bit pairs 0..3 of qh[32h + l] on top; the
 * quants are stored +32, which -32 * sum(scale_j * bsum_j) takes back, in the same exact sum. */
DF_AVX512 ALWAYS_INLINE void q6k_super_block(const tile_rows *t, bool packed, int64_t i, const q8ks_view *av, const int nc,
                                             __m512 *acc) {
    const size_t bs = sizeof(df_block_q6_K);
    __m512i sw[4];
    sb_words16(t, packed, bs, i, 192, sw); /* scales 4q..4q+3 in sw[q] */
    __m512 d;
    if (packed) {
        /* the block padded to 212 bytes: d is the low half of group 52 */
        d = half_lanes_to_f32(_mm512_loadu_si512(t->pk + (size_t)i * t->pk_sb + 52 * 64), false);
    } else {
        /* d is the block's last two bytes: the high half of the last word of the 16 bytes
         * that end there (a transpose: a gather costs as much as the rest of a block) */
        __m512i tail[4];
        transpose_16x16(t, (size_t)i * bs + 194, tail);
        d = half_lanes_to_f32(tail[3], true);
    }
    __m512i isum[TILE_COLS];
    for (int c = 0; c < nc; c++) isum[c] = _mm512_setzero_si512();
    for (int p = 0; p < 8; p++) {
        /* scales (2p, 2p + 1) as 16-bit pairs times -32, against bsums (2p, 2p + 1) */
        const uint32_t ctl = (uint32_t)(2 * (p % 2)) << 8 | (uint32_t)(2 * (p % 2) + 1) << 24 | 0x00800080u;
        const __m512i pr = _mm512_mullo_epi16(_mm512_srai_epi16(_mm512_shuffle_epi8(sw[p / 2], lane_shuffle(ctl)), 8),
                                              _mm512_set1_epi16(-32));
        for (int c = 0; c < nc; c++) isum[c] = _mm512_dpwssd_epi32(isum[c], pr, bcast32(av[c].bsums + 16 * i + 2 * p));
    }
    const __m512i low4 = _mm512_set1_epi8(15), bits45 = _mm512_set1_epi8(0x30);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i qh[8];
        sb_words32(t, packed, bs, i, 128 + 32 * (size_t)h, qh);
        for (int part = 0; part < 2; part++) { /* ql[64h..64h+31], then ql[64h+32..64h+63] */
            __m512i v[8];
            sb_words32(t, packed, bs, i, 64 * (size_t)h + 32 * (size_t)part, v);
            for (int nib = 0; nib < 2; nib++) { /* low nibbles, then high nibbles */
                /* quarter q of the half: elements 128h + 32q .. +31, top bits from bit pair q */
                const int q = 2 * nib + part;
                for (int sub = 0; sub < 2; sub++) {
                    const int j = 8 * h + 2 * q + sub; /* the 16-element sub-block */
                    __m512i s[TILE_COLS];
                    for (int g = 0; g < 4; g++) {
                        const __m512i x = v[4 * sub + g], hb = qh[4 * sub + g];
                        const __m512i top = q == 0 ? _mm512_slli_epi16(hb, 4) : q == 1 ? _mm512_slli_epi16(hb, 2)
                                          : q == 2 ? hb : _mm512_srli_epi16(hb, 2);
                        /* (low | top) with top confined to bits 4..5: ternary logic (a & c) | b */
                        const __m512i w = _mm512_ternarylogic_epi32(nib ? _mm512_srli_epi16(x, 4) : x,
                                                                    _mm512_and_si512(top, bits45), low4, 0xEC);
                        k_group(w, g, av, nc, i, 16 * j + 4 * g, s);
                    }
                    /* scale j, sign-extended: its byte to the top of the lane, then shifted down */
                    k_sub_end(s, _mm512_srai_epi32(_mm512_shuffle_epi8(sw[j / 4], lane_shuffle((uint32_t)(j % 4) << 24 | 0x808080u)), 24),
                              nc, isum);
                }
            }
        }
    }
    for (int c = 0; c < nc; c++)
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(d, _mm512_set1_ps(av[c].d[i])), acc[c]);
}

/* kind: 4 = Q4_K, 5 = Q5_K, 6 = Q6_K. packed: w is the tile's packed bytes (ws unused). */
DF_AVX512 ALWAYS_INLINE void k_tile(const uint8_t *w, size_t ws, int nr, bool full, int kind, bool packed,
                                    const uint8_t *a, size_t as, const int nc, int64_t n, float *y, int64_t ys, int pf) {
    const int64_t nsb = n / DF_QK_K;
    const size_t bs = kind == 6 ? sizeof(df_block_q6_K) : kind == 5 ? sizeof(df_block_q5_K) : sizeof(df_block_q4_K);
    tile_rows t;
    if (packed) {
        t.valid = (__mmask16)(nr >= TILE_ROWS ? 0xffff : (1u << nr) - 1);
        t.pk = w;
        t.pk_sb = TILE_ROWS * ((bs + 3) / 4 * 4);
        pf = 0;
    } else {
        tile_rows_init(&t, w, ws, nr, (size_t)nsb * bs);
        t.full = full;
    }
    if (pf == 2) tile_prefetch_first(&t);
    q8ks_view av[TILE_COLS];
    __m512 acc[TILE_COLS];
    for (int c = 0; c < nc; c++) {
        av[c] = q8ks_at(a + (size_t)c * as, n);
        acc[c] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < nsb; i++) {
        if (pf) tile_prefetch(&t, (size_t)i * bs, bs);
        /* packed: one sequential stream (tiles end to end), which the hardware prefetchers
         * alone follow too late from memory (measured: slower than the rows' kernel with its
         * prefetch); ask for the super-block ~24 KB ahead, into the next tile if need be
         * (measured on Q4_K / Q6_K from memory, one thread: 8 KB ahead 37 / 35 GB/s, 23 KB
         * ahead 45 / 34 GB/s, the rows' kernel 28 / 22 GB/s) */
        if (packed)
            for (size_t l = 0; l < t.pk_sb; l += 64)
                _mm_prefetch((const char *)t.pk + (size_t)i * t.pk_sb + K_PREFETCH_BYTES / t.pk_sb * t.pk_sb + l,
                             _MM_HINT_T0);
        if (kind == 6) q6k_super_block(&t, packed, i, av, nc, acc);
        else q45k_super_block(&t, packed, kind == 5, i, av, nc, acc);
    }
    for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(y + c * ys, t.valid, acc[c]);
}

DF_AVX512 DF_MDOT_DECLARE(df_mdot_q4_K_avx512) {
    if (stride_too_large(ws)) {
        df_mdot_q4_K_avx2(w, ws, nr, a, as, nc, n, y, ys);
        return;
    }
#define TILE(k, full) k_tile(wt, ws, rows, full, 4, false, ag, as, k, n, yg, ys, pf)
    FOR_EACH_TILE(TILE)
#undef TILE
}

DF_AVX512 DF_MDOT_DECLARE(df_mdot_q5_K_avx512) {
    if (stride_too_large(ws)) {
        df_mdot_q5_K_avx2(w, ws, nr, a, as, nc, n, y, ys);
        return;
    }
#define TILE(k, full) k_tile(wt, ws, rows, full, 5, false, ag, as, k, n, yg, ys, pf)
    FOR_EACH_TILE(TILE)
#undef TILE
}

DF_AVX512 DF_MDOT_DECLARE(df_mdot_q6_K_avx512) {
    if (stride_too_large(ws)) {
        df_mdot_q6_K_avx2(w, ws, nr, a, as, nc, n, y, ys);
        return;
    }
#define TILE(k, full) k_tile(wt, ws, rows, full, 6, false, ag, as, k, n, yg, ys, pf)
    FOR_EACH_TILE(TILE)
#undef TILE
}

/* ---- packed K-quants -------------------------------------------------------------------- */

/* Q4_K, Q5_K and Q6_K matrices packed for the kernels above (mdot.h, "packed weights"): the
 * tile of 16 rows stored as the transposes the kernel would make, so that the kernel loads
 * what it used to shuffle together. Tile t, super-block i: the block's bytes padded to a
 * multiple of 4 (Q6_K's 210 to 212), then 4-byte group g of the 16 rows as 64 bytes (row j
 * at 4j), for g = 0 .. padded / 4 - 1; super-blocks and tiles end to end. The kernels'
 * operations after the loads are the same, so the results are bitwise those of the rows. */
static size_t k_block_bytes(int kind) {
    return kind == 6 ? sizeof(df_block_q6_K) : kind == 5 ? sizeof(df_block_q5_K) : sizeof(df_block_q4_K);
}

static bool k_packed_bytes(int kind, int64_t n_rows, int64_t n, size_t w_stride, size_t *tile_bytes, size_t *total) {
    *tile_bytes = *total = 0;
    if (stride_too_large(w_stride) || n_rows <= 0 || n <= 0 || n % DF_QK_K) return false;
    const size_t sb = TILE_ROWS * ((k_block_bytes(kind) + 3) / 4 * 4);
    size_t tile;
    if (!df_mul_size((size_t)(n / DF_QK_K), sb, &tile)) return false;
    if (!df_mul_size(tile, (size_t)((n_rows + TILE_ROWS - 1) / TILE_ROWS), total)) return false;
    *tile_bytes = tile;
    return true;
}

static void k_pack(int kind, const void *w, size_t w_stride, int64_t n_rows, int64_t n, int64_t tile0, int64_t n_tiles,
                   void *out) {
    const size_t bs = k_block_bytes(kind), padded = (bs + 3) / 4 * 4, sb = TILE_ROWS * padded;
    const int64_t nsb = n / DF_QK_K;
    for (int64_t t = tile0; t < tile0 + n_tiles; t++)
        for (int j = 0; j < TILE_ROWS; j++) {
            const int64_t r = t * TILE_ROWS + j < n_rows ? t * TILE_ROWS + j : n_rows - 1;
            const uint8_t *row = (const uint8_t *)w + (size_t)r * w_stride;
            for (int64_t i = 0; i < nsb; i++) {
                uint8_t *o = (uint8_t *)out + ((size_t)t * (size_t)nsb + (size_t)i) * sb + 4 * (size_t)j;
                uint8_t blk[256];
                memcpy(blk, row + (size_t)i * bs, bs);
                memset(blk + bs, 0, padded - bs);
                for (size_t g = 0; g < padded / 4; g++) memcpy(o + 64 * g, blk + 4 * g, 4);
            }
        }
}

#define PACKED_K_ENTRY(name, kind)                                                                          \
    bool df_mdot_##name##_packed_bytes(int64_t n_rows, int64_t n, size_t w_stride, size_t *tile_bytes,        \
                                       size_t *total) {                                                     \
        return k_packed_bytes(kind, n_rows, n, w_stride, tile_bytes, total);                                \
    }                                                                                                       \
    void df_mdot_##name##_pack(const void *w, size_t w_stride, int64_t n_rows, int64_t n, int64_t tile0,     \
                               int64_t n_tiles, void *out) {                                                \
        k_pack(kind, w, w_stride, n_rows, n, tile0, n_tiles, out);                                          \
    }                                                                                                       \
    DF_AVX512 DF_MDOT_DECLARE(df_mdot_##name##_packed_avx512) {                                             \
        for (int64_t r0 = 0; r0 < nr; r0 += TILE_ROWS) {                                                    \
            const uint8_t *tile = (const uint8_t *)w + (size_t)(r0 / TILE_ROWS) * ws;                       \
            const int rows = nr - r0 < TILE_ROWS ? (int)(nr - r0) : TILE_ROWS;                              \
            /* passes of 8, 4, 2 and 1 columns, each unrolled for its count (a count known only   \
             * at run time keeps the sums in memory: measured 2-3x slower); the weights come  \
             * back from L1 for the later passes of a tile */                                               \
            for (int c0 = 0; c0 < nc;) {                                                                    \
                const uint8_t *ag = (const uint8_t *)a + (size_t)c0 * as;                                   \
                float *yg = y + (int64_t)c0 * ys + r0;                                                      \
                const int left = nc - c0;                                                                   \
                const int pass = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;                        \
                if (pass == 8) k_tile(tile, ws, rows, true, kind, true, ag, as, 8, n, yg, ys, 0);           \
                else if (pass == 4) k_tile(tile, ws, rows, true, kind, true, ag, as, 4, n, yg, ys, 0);      \
                else if (pass == 2) k_tile(tile, ws, rows, true, kind, true, ag, as, 2, n, yg, ys, 0);      \
                else k_tile(tile, ws, rows, true, kind, true, ag, as, 1, n, yg, ys, 0);                     \
                c0 += pass;                                                                                 \
            }                                                                                               \
        }                                                                                                   \
    }

PACKED_K_ENTRY(q4_K, 4)
PACKED_K_ENTRY(q5_K, 5)
PACKED_K_ENTRY(q6_K, 6)

#else /* not x86 */

/* Other architectures have no AVX-512 level (df_cpu_simd_set refuses it), so these entries
 * are never selected; they exist so that the kernel tables link everywhere. packed_bytes
 * answers false, so no weight is ever packed for them. */
static void no_kernel(float *y, int64_t nr, int nc, int64_t ys) {
    for (int c = 0; c < nc; c++)
        for (int64_t r = 0; r < nr; r++) y[c * ys + r] = 0.0f;
}
DF_MDOT_DECLARE(df_mdot_q8_0_avx512) { no_kernel(y, nr, nc, ys); }
DF_MDOT_DECLARE(df_mdot_q4_0_avx512) { no_kernel(y, nr, nc, ys); }
DF_MDOT_DECLARE(df_mdot_q4_K_avx512) { no_kernel(y, nr, nc, ys); }
DF_MDOT_DECLARE(df_mdot_q5_K_avx512) { no_kernel(y, nr, nc, ys); }
DF_MDOT_DECLARE(df_mdot_q6_K_avx512) { no_kernel(y, nr, nc, ys); }
#define NO_PACKED_LAYOUT(name)                                                                                  \
    bool df_mdot_##name##_packed_bytes(int64_t n_rows, int64_t n, size_t w_stride, size_t *tile_bytes,        \
                                       size_t *total) {                                                     \
        *tile_bytes = *total = 0;                                                                           \
        return false;                                                                                       \
    }                                                                                                       \
    void df_mdot_##name##_pack(const void *w, size_t w_stride, int64_t n_rows, int64_t n, int64_t tile0,     \
                               int64_t n_tiles, void *out) {}                                               \
    DF_MDOT_DECLARE(df_mdot_##name##_packed_avx512) { no_kernel(y, nr, nc, ys); }
NO_PACKED_LAYOUT(q4_K)
NO_PACKED_LAYOUT(q5_K)
NO_PACKED_LAYOUT(q6_K)

#endif
