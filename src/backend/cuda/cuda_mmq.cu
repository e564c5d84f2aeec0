/* The small-batch matmul (1..DF_CUDA_SMALL_BATCH tokens) for Q4_K, Q5_K, Q6_K, Q8_0 and Q4_0
 * weights: int8 tensor cores on the activations quantized once per call (cuda_mmq.cuh).
 *
 * Tiles. A warp owns 16 weight rows (the m of mma.sync m16n8k32 / m16n8k16) and a contiguous
 * range of "units" along the row (a unit is 128 or 256 elements, by type); the tokens are the
 * n, 8 per column tile, all tiles of the call in the same pass, so each weight byte is read once
 * per call. A block is 8 warps: 8 / kw row tiles, each split along K over kw warps whose
 * partial sums are added in warp order at the end. kw is chosen from the matrix shape alone
 * (enough warps to keep the memory system busy: tall-thin matrices such as 17408 -> 5120 split
 * K 8 ways, the LM head not at all).
 *
 * Weights are read straight from their GGUF blocks into registers, each thread loading the
 * bytes of its own mma fragments (8 bytes at a time for Q4_K / Q5_K; Q6_K / Q8_0 / Q4_0 blocks
 * are only 2-byte aligned: 4 bytes where a Q6_K block happens to be 4-aligned, else 2), all of
 * a unit's loads issued before its arithmetic. The order of
 * the 32 elements inside a k-step is free (an integer dot product does not care), so each type
 * uses the order that makes its fragments contiguous bytes, and the activations are read in the
 * same order: "perm8" gives thread t of a quad elements 8t..8t+7 (one 8-byte load of Q4_K
 * nibbles or Q8_0 bytes), "natural" gives it 4t..4t+3 and 16+4t..16+4t+3 (Q4_0's low and
 * high nibbles of one 4-byte word; Q6_K's 16-element scale groups).
 *
 * Arithmetic per (row, token). Q8_0 / Q4_0, per block of 32, on activations quantized per
 * block of 32: isum = the exact int32 dot product of the int8 weights with the int8
 * activations, then acc = fma(d_w * d_x, isum, acc). K-quants, per unit, on activations
 * quantized per super-block of 256 (one d_x): the sub-block products times their integer
 * scales add up in int32 (is; Q4_K / Q5_K also im = sum of mins times activation sub-block
 * sums), then acc = fma(d * d_x, is, acc) and, with a min, acc = fma(-(dmin * d_x), im, acc):
 * two float steps per 256 weights where blocks of 32 would need sixteen, the issue slots the
 * kernel is short of. All with explicit _rn intrinsics, so the compiler can neither fuse nor
 * reorder them.
 *
 * Batch invariance (a 16-token verify equals 16 decode steps bit for bit): the integer sums are
 * exact (their conversion to float rounds above 2^24, the same way in every call); the float
 * sequence of (row, token) is the list above over the warp's units in order,
 * then the kw partials added in warp order; kw, the unit ranges and the tile shape depend on
 * the matrix alone. Which column tile the token sits in, and how many tiles the call has, change
 * only which thread does that arithmetic.
 *
 * Speed (H100, Qwen3.6-27B Q4_K_M shapes; docs/PERF.md has the table): 53% of the copy
 * bandwidth over a token's matmuls (large Q4_K 60-64%, the Q6_K LM head 73%), 16 tokens 1.35x
 * the time of one. */
#include <stdlib.h>

#include "backend/cuda/cuda_mmq.cuh"
#include "backend/cuda/cuda_quant.cuh"

enum { MMQ_WARPS = 8, MMQ_ROWS = 16 };

typedef struct mmq_args {
    const uint8_t *w;
    size_t row_bytes;
    int n_out, n_units, nb; /* units and 32-element blocks per row */
    int kw;                 /* warps sharing a row tile (K split) */
    int ntp, nt, n_tok;     /* padded tokens, column tiles of 8, real tokens */
    int al4;                /* rows start on 4-byte boundaries (Q6_K: even blocks are 4-aligned) */
    const int8_t *xq;       /* the activations in the form the type reads (cuda_mmq.cuh): */
    const float2 *xds;      /* blocks of 32 (Q8_0, Q4_0) */
    const float *xd;        /* super-blocks of 256 (K-quants): d, */
    const uint4 *xbs;       /* and the 8 sub-block sums (int16) */
    float *y;
} mmq_args;

/* ---- loads ---- */

/* 4 bytes at a 2-byte aligned address (Q6_K, Q8_0, Q4_0 blocks sit at any even offset). */
__device__ __forceinline__ uint32_t ld32_a2(const uint8_t *p) {
    const uint16_t *q = (const uint16_t *)p;
    return (uint32_t)__ldg(q) | (uint32_t)__ldg(q + 1) << 16;
}
template <bool AL4> __device__ __forceinline__ uint32_t ld32(const uint8_t *p) {
    return AL4 ? __ldg((const uint32_t *)p) : ld32_a2(p);
}

/* Loads that only the lanes with `on` make (a predicated ld, not a branch: the unit stays one
 * basic block, so the compiler can still issue all of a unit's loads up front); 0 elsewhere. */
__device__ __forceinline__ uint2 ld_if_u2(const void *p, bool on) {
    uint2 v = make_uint2(0u, 0u);
    asm("{\n\t.reg .pred q;\n\tsetp.ne.u32 q, %3, 0;\n\t@q ld.global.nc.v2.u32 {%0, %1}, [%2];\n\t}"
        : "+r"(v.x), "+r"(v.y)
        : "l"(p), "r"((unsigned)on));
    return v;
}
__device__ __forceinline__ uint32_t ld_if_u1(const void *p, bool on) {
    uint32_t v = 0u;
    asm("{\n\t.reg .pred q;\n\tsetp.ne.u32 q, %2, 0;\n\t@q ld.global.nc.u32 %0, [%1];\n\t}"
        : "+r"(v)
        : "l"(p), "r"((unsigned)on));
    return v;
}
__device__ __forceinline__ float2 ld_if_f2(const void *p, bool on) {
    float2 v = make_float2(0.0f, 0.0f);
    asm("{\n\t.reg .pred q;\n\tsetp.ne.u32 q, %3, 0;\n\t@q ld.global.nc.v2.f32 {%0, %1}, [%2];\n\t}"
        : "+f"(v.x), "+f"(v.y)
        : "l"(p), "r"((unsigned)on));
    return v;
}
__device__ __forceinline__ uint4 ld_if_u4(const void *p, bool on) {
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    asm("{\n\t.reg .pred q;\n\tsetp.ne.u32 q, %5, 0;\n\t@q ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n\t}"
        : "+r"(v.x), "+r"(v.y), "+r"(v.z), "+r"(v.w)
        : "l"(p), "r"((unsigned)on));
    return v;
}
__device__ __forceinline__ float4 ld_if_f4(const void *p, bool on) {
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    asm("{\n\t.reg .pred q;\n\tsetp.ne.u32 q, %5, 0;\n\t@q ld.global.nc.v4.f32 {%0, %1, %2, %3}, [%4];\n\t}"
        : "+f"(v.x), "+f"(v.y), "+f"(v.z), "+f"(v.w)
        : "l"(p), "r"((unsigned)on));
    return v;
}

/* Activations of token tok, block blk: 8 or 4 int8 at byte off; {d, s} of tokens tok2, tok2+1.
 * The padding tokens past n_tok are zeros in memory too, but are not loaded: a 1-token call
 * would otherwise read 8 times the activation bytes it uses, and those L1 misses queue with
 * the weights'. Same values either way. */
__device__ __forceinline__ uint2 act8(const mmq_args &a, int blk, int tok, int off) {
    return ld_if_u2(a.xq + ((size_t)blk * a.ntp + tok) * 32 + off, tok < a.n_tok);
}
__device__ __forceinline__ uint32_t act4(const mmq_args &a, int blk, int tok, int off) {
    return ld_if_u1(a.xq + ((size_t)blk * a.ntp + tok) * 32 + off, tok < a.n_tok);
}
__device__ __forceinline__ float4 act_ds(const mmq_args &a, int blk, int tok2) {
    return ld_if_f4(a.xds + (size_t)blk * a.ntp + tok2, tok2 < a.n_tok);
}
/* Super-blocks: d of tokens tok2, tok2 + 1; the 8 sub-block sums of token tok. */
__device__ __forceinline__ float2 act_d2(const mmq_args &a, int sb, int tok2) {
    return ld_if_f2(a.xd + (size_t)sb * a.ntp + tok2, tok2 < a.n_tok);
}
__device__ __forceinline__ uint4 act_bs(const mmq_args &a, int sb, int tok) {
    return ld_if_u4(a.xbs + (size_t)sb * a.ntp + tok, tok < a.n_tok);
}

/* ---- tensor cores: C (16 x 8, int32) = A (16 x K, int8, row) B (K x 8, int8, col) ----
 * Thread (g = lane / 4, t = lane % 4) holds A rows g and g + 8, B column g, C rows g and g + 8
 * of columns 2t and 2t + 1 (c[0], c[1] row g; c[2], c[3] row g + 8). k32: a0 / a1 = k 4t..4t+3
 * of rows g / g+8, a2 / a3 = k 16+4t..16+4t+3; b0 = k 4t.., b1 = k 16+4t... k16: a0 / a1 and b0
 * only. The callers never launch these below sm_80 (cu_mmq_supported). */
__device__ __forceinline__ void mma_k32(int c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                        uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%10,%10,%10};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
#else
    c[0] = c[1] = c[2] = c[3] = 0;
#endif
}

__device__ __forceinline__ void mma_k16(int c[4], uint32_t a0, uint32_t a1, uint32_t b0) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%7,%7,%7};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(0));
#else
    c[0] = c[1] = c[2] = c[3] = 0;
#endif
}

/* Bytes q (each 0..127) minus k, as int8: no borrow crosses a byte with bit 7 set first. */
__device__ __forceinline__ uint32_t sub_bytes(uint32_t q, uint32_t k) {
    return ((q | 0x80808080u) - k * 0x01010101u) ^ 0x80808080u;
}

__device__ __forceinline__ uint32_t byte_of(uint32_t w, int i) { return w >> (8 * i) & 0xffu; }
__device__ __forceinline__ int sbyte_of(uint32_t w, int i) { return (int)(int8_t)(uint8_t)(w >> (8 * i)); }

/* The float steps of one 32-element block into a C fragment (see the top of the file). dw[r]:
 * weight scale of row g (r = 0) / g + 8 (r = 1); ds = {d, s} of token 2t, then 2t + 1. */
__device__ __forceinline__ void acc_scale(float acc[4], const int c[4], const float dw[2], float4 ds) {
    acc[0] = __fmaf_rn(__fmul_rn(dw[0], ds.x), __int2float_rn(c[0]), acc[0]);
    acc[1] = __fmaf_rn(__fmul_rn(dw[0], ds.z), __int2float_rn(c[1]), acc[1]);
    acc[2] = __fmaf_rn(__fmul_rn(dw[1], ds.x), __int2float_rn(c[2]), acc[2]);
    acc[3] = __fmaf_rn(__fmul_rn(dw[1], ds.z), __int2float_rn(c[3]), acc[3]);
}

/* ---- one type each: the registers of a unit (load) and its arithmetic (dot) ----
 * row[0] / row[1]: the thread's two weight rows (g, g + 8); u: the unit; the n-loop runs over
 * the call's NT column tiles of 8 tokens. */

template <int T> struct mmq_type;

/* The Q4_K / Q5_K 6-bit scales and mins of a row's 8 sub-blocks as bytes (df_k4_scale_min):
 * sc[0] / mn[0] hold sub-blocks 0..3, sc[1] / mn[1] sub-blocks 4..7. */
__device__ __forceinline__ void k4_scales(uint4 h, float *d, float *dmin, uint32_t sc[2], uint32_t mn[2]) {
    *d = cu_f16((uint16_t)h.x);
    *dmin = cu_f16((uint16_t)(h.x >> 16));
    sc[0] = h.y & 0x3f3f3f3fu;
    mn[0] = h.z & 0x3f3f3f3fu;
    sc[1] = (h.w & 0x0f0f0f0fu) | (h.y >> 2 & 0x30303030u);
    mn[1] = (h.w >> 4 & 0x0f0f0f0fu) | (h.z >> 2 & 0x30303030u);
}

/* A unit's integer sums start at zero, per column tile and C-fragment element. */
template <int NT> __device__ __forceinline__ void zero_tiles(int (&v)[NT][4]) {
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) v[n][e] = 0;
}

/* The float steps of a K-quant unit into a C fragment, after its integer sums: is[e] the
 * weight-scaled integer dot product, d[r] the weight's f32 scale for row g (r = 0) / g + 8,
 * dx = the super-block's activation d of tokens 2t, 2t + 1. */
__device__ __forceinline__ void acc_sb(float acc[4], const int is[4], const float d[2], float2 dx) {
    acc[0] = __fmaf_rn(__fmul_rn(d[0], dx.x), __int2float_rn(is[0]), acc[0]);
    acc[1] = __fmaf_rn(__fmul_rn(d[0], dx.y), __int2float_rn(is[1]), acc[1]);
    acc[2] = __fmaf_rn(__fmul_rn(d[1], dx.x), __int2float_rn(is[2]), acc[2]);
    acc[3] = __fmaf_rn(__fmul_rn(d[1], dx.y), __int2float_rn(is[3]), acc[3]);
}

/* The arithmetic of a Q4_K or Q5_K unit (the same but for the fifth bit): h = each row's d,
 * dmin and scales, q = its nibbles as laid out below (perm8), qh = Q5_K's high bits. The
 * activations are in super-blocks (one d per 256), so for each (row, token)
 *     is = sum_j sc_j * isum_j     (isum_j: sub-block j's int8 product; |is| < 2^25)
 *     im = sum_j mn_j * bsum_j     (bsum_j: sub-block j's sum of activation q; dp2a)
 * are exact integers and the floats are two FMAs per 256 weights:
 *     acc = fma(d * d_x, is, acc);  acc = fma(-(dmin * d_x), im, acc). */
template <int NT, bool Q5>
__device__ __forceinline__ void k45_dot(const uint4 h[2], const uint2 q[2][4], const uint2 *qh, int u,
                                        const mmq_args &a, int g, int t, float (&acc)[NT][4]) {
    float d[2], dmin[2];
    uint32_t sc[2][2], mn[2][2];
#pragma unroll
    for (int r = 0; r < 2; r++) k4_scales(h[r], &d[r], &dmin[r], sc[r], mn[r]);
    int is[NT][4];
    zero_tiles(is);
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const int c = j / 2, sh = 4 * (j % 2);
        uint32_t ax[2], ay[2];
        int s[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            ax[r] = q[r][c].x >> sh & 0x0f0f0f0fu;
            ay[r] = q[r][c].y >> sh & 0x0f0f0f0fu;
            if (Q5) {
                ax[r] |= (qh[r].x >> j & 0x01010101u) << 4;
                ay[r] |= (qh[r].y >> j & 0x01010101u) << 4;
            }
            s[r] = (int)byte_of(sc[r][j / 4], j % 4);
        }
        const int blk = u * 8 + j;
#pragma unroll
        for (int n = 0; n < NT; n++) {
            const uint2 b = act8(a, blk, 8 * n + g, 8 * t);
            int cc[4];
            mma_k32(cc, ax[0], ax[1], ay[0], ay[1], b.x, b.y);
#pragma unroll
            for (int e = 0; e < 4; e++) is[n][e] += s[e / 2] * cc[e];
        }
    }
    const float mdx[2] = {-dmin[0], -dmin[1]};
#pragma unroll
    for (int n = 0; n < NT; n++) {
        const float2 dx = act_d2(a, u, 8 * n + 2 * t);
        const uint4 bs[2] = {act_bs(a, u, 8 * n + 2 * t), act_bs(a, u, 8 * n + 2 * t + 1)};
        int im[4];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const uint4 b = bs[e % 2];
            const uint32_t *m = mn[e / 2];
            int v = __dp2a_lo((int)b.x, (int)m[0], 0);
            v = __dp2a_hi((int)b.y, (int)m[0], v);
            v = __dp2a_lo((int)b.z, (int)m[1], v);
            im[e] = __dp2a_hi((int)b.w, (int)m[1], v);
        }
        acc_sb(acc[n], is[n], d, dx);
        acc_sb(acc[n], im, mdx, dx);
    }
}

/* Q4_K (144-byte blocks: d, dmin, 12 bytes of scales, 128 of nibbles): unit = a block. Sub-block
 * 2c + hi is the low (hi = 0) or high nibbles of bytes 32c..32c+31; perm8, so thread t takes
 * bytes 32c + 8t..32c+8t+7 of both rows: one 8-byte load feeds two k-steps. */
template <> struct mmq_type<DF_TYPE_Q4_K> {
    enum { UNIT = 256 };
    struct frag {
        uint4 h[2];
        uint2 q[2][4];
    };
    static __device__ __forceinline__ void load(frag &f, const uint8_t *const row[2], int u, int t,
                                                const mmq_args &a) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const uint8_t *b = row[r] + (size_t)u * 144;
            f.h[r] = __ldg((const uint4 *)b);
#pragma unroll
            for (int c = 0; c < 4; c++) f.q[r][c] = __ldg((const uint2 *)(b + 16 + 32 * c + 8 * t));
        }
    }
    template <int NT>
    static __device__ __forceinline__ void dot(const frag &f, int u, const mmq_args &a, int g, int t,
                                               float (&acc)[NT][4]) {
        k45_dot<NT, false>(f.h, f.q, NULL, u, a, g, t, acc);
    }
};

/* Q5_K (176 bytes: d, dmin, scales, 32 bytes qh, 128 of nibbles): Q4_K plus bit j of qh[l] as
 * the fifth bit of element l of sub-block j; perm8 makes that qh bytes 8t..8t+7 for every j. */
template <> struct mmq_type<DF_TYPE_Q5_K> {
    enum { UNIT = 256 };
    struct frag {
        uint4 h[2];
        uint2 qh[2];
        uint2 q[2][4];
    };
    static __device__ __forceinline__ void load(frag &f, const uint8_t *const row[2], int u, int t,
                                                const mmq_args &a) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const uint8_t *b = row[r] + (size_t)u * 176;
            f.h[r] = __ldg((const uint4 *)b);
            f.qh[r] = __ldg((const uint2 *)(b + 16 + 8 * t));
#pragma unroll
            for (int c = 0; c < 4; c++) f.q[r][c] = __ldg((const uint2 *)(b + 48 + 32 * c + 8 * t));
        }
    }
    template <int NT>
    static __device__ __forceinline__ void dot(const frag &f, int u, const mmq_args &a, int g, int t,
                                               float (&acc)[NT][4]) {
        k45_dot<NT, true>(f.h, f.q, f.qh, u, a, g, t, acc);
    }
};

/* Q6_K (210 bytes: 128 ql, 64 qh, 16 int8 scales, d): unit = half a block (128 elements,
 * h = u % 2). Element 32j + l of the half (l < 32) is the low (j < 2) or high nibble of
 * ql[64h + 32(j & 1) + l] with bits 2j..2j+1 of qh[32h + l] above, minus 32; its scale is
 * scales[8h + 2j + l / 16]. One k16 step per 16-element group, natural order (thread t takes
 * l % 16 = 4t..4t+3); the two groups of a 32-block are combined in integers (|sum| < 2^24). */
template <> struct mmq_type<DF_TYPE_Q6_K> {
    enum { UNIT = 128 };
    struct frag {
        uint32_t ql[2][4]; /* [row][2 * (j & 1) + half] */
        uint32_t qh[2][2]; /* [row][half] */
        uint32_t sc[2][2]; /* scales 8h..8h+7 */
        uint32_t d[2];
    };
    static __device__ __forceinline__ void load(frag &f, const uint8_t *const row[2], int u, int t,
                                                const mmq_args &a) {
        /* 210-byte blocks: with 4-aligned rows, the even ones are 4-aligned (one 32-bit load
         * per word instead of two 16-bit ones); the test is the same for the whole warp. */
        if (a.al4 && (u / 2) % 2 == 0) load_as<true>(f, row, u / 2, u % 2, t);
        else load_as<false>(f, row, u / 2, u % 2, t);
    }
    template <bool AL4>
    static __device__ __forceinline__ void load_as(frag &f, const uint8_t *const row[2], int sb, int h, int t) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const uint8_t *b = row[r] + (size_t)sb * 210;
#pragma unroll
            for (int i = 0; i < 4; i++) f.ql[r][i] = ld32<AL4>(b + 64 * h + 16 * i + 4 * t);
#pragma unroll
            for (int i = 0; i < 2; i++) f.qh[r][i] = ld32<AL4>(b + 128 + 32 * h + 16 * i + 4 * t);
            f.sc[r][0] = ld32<AL4>(b + 192 + 8 * h);
            f.sc[r][1] = ld32<AL4>(b + 196 + 8 * h);
            f.d[r] = __ldg((const uint16_t *)(b + 208));
        }
    }
    /* Activations in super-blocks: the 16-element groups' products times their int8 scales
     * add up in integers over the whole unit (|sum| < 2^27), then one FMA per (row, token). */
    template <int NT>
    static __device__ __forceinline__ void dot(const frag &f, int u, const mmq_args &a, int g, int t,
                                               float (&acc)[NT][4]) {
        float d[2];
#pragma unroll
        for (int r = 0; r < 2; r++) d[r] = cu_f16((uint16_t)f.d[r]);
        int is[NT][4];
        zero_tiles(is);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint32_t aq[2][2]; /* [half][row] */
            int s[2][2];       /* [half][row] */
#pragma unroll
            for (int hf = 0; hf < 2; hf++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    const uint32_t l = f.ql[r][2 * (j & 1) + hf];
                    const uint32_t nib = (j < 2 ? l : l >> 4) & 0x0f0f0f0fu;
                    const uint32_t hb = (f.qh[r][hf] >> (2 * j) & 0x03030303u) << 4;
                    aq[hf][r] = sub_bytes(nib | hb, 32);
                    s[hf][r] = sbyte_of(f.sc[r][j / 2], 2 * (j % 2) + hf);
                }
            const int blk = u * 4 + j;
#pragma unroll
            for (int n = 0; n < NT; n++) {
                const uint32_t b0 = act4(a, blk, 8 * n + g, 4 * t), b1 = act4(a, blk, 8 * n + g, 16 + 4 * t);
                int c0[4], c1[4];
                mma_k16(c0, aq[0][0], aq[0][1], b0);
                mma_k16(c1, aq[1][0], aq[1][1], b1);
#pragma unroll
                for (int e = 0; e < 4; e++) is[n][e] += s[0][e / 2] * c0[e] + s[1][e / 2] * c1[e];
            }
        }
#pragma unroll
        for (int n = 0; n < NT; n++) acc_sb(acc[n], is[n], d, act_d2(a, u / 2, 8 * n + 2 * t));
    }
};

/* Q8_0 (34 bytes: d, 32 int8): unit = 4 blocks (the last unit of a row may be short); perm8,
 * thread t takes bytes 8t..8t+7. */
template <> struct mmq_type<DF_TYPE_Q8_0> {
    enum { UNIT = 128 };
    struct frag {
        uint32_t q[2][4][2];
        uint32_t d[2][4];
    };
    static __device__ __forceinline__ void load(frag &f, const uint8_t *const row[2], int u, int t,
                                                const mmq_args &a) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int blk = u * 4 + i;
#pragma unroll
            for (int r = 0; r < 2; r++) {
                if (blk < a.nb) {
                    const uint8_t *b = row[r] + (size_t)blk * 34;
                    f.d[r][i] = __ldg((const uint16_t *)b);
                    f.q[r][i][0] = ld32_a2(b + 2 + 8 * t);
                    f.q[r][i][1] = ld32_a2(b + 6 + 8 * t);
                } else {
                    f.d[r][i] = f.q[r][i][0] = f.q[r][i][1] = 0;
                }
            }
        }
    }
    template <int NT>
    static __device__ __forceinline__ void dot(const frag &f, int u, const mmq_args &a, int g, int t,
                                               float (&acc)[NT][4]) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int blk = u * 4 + i;
            if (blk >= a.nb) break;
            const float dw[2] = {cu_f16((uint16_t)f.d[0][i]), cu_f16((uint16_t)f.d[1][i])};
#pragma unroll
            for (int n = 0; n < NT; n++) {
                const uint2 b = act8(a, blk, 8 * n + g, 8 * t);
                const float4 ds = act_ds(a, blk, 8 * n + 2 * t);
                int cc[4];
                mma_k32(cc, f.q[0][i][0], f.q[1][i][0], f.q[0][i][1], f.q[1][i][1], b.x, b.y);
                acc_scale(acc[n], cc, dw, ds);
            }
        }
    }
};

/* Q4_0 (18 bytes: d, 16 bytes of nibbles, element j < 16 low nibble of byte j, j >= 16 high
 * nibble of byte j - 16, minus 8): unit = 4 blocks; natural order, so thread t's 4-byte word
 * 4t..4t+3 gives k 4t.. (low nibbles) and k 16+4t.. (high). */
template <> struct mmq_type<DF_TYPE_Q4_0> {
    enum { UNIT = 128 };
    struct frag {
        uint32_t q[2][4];
        uint32_t d[2][4];
    };
    static __device__ __forceinline__ void load(frag &f, const uint8_t *const row[2], int u, int t,
                                                const mmq_args &a) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int blk = u * 4 + i;
#pragma unroll
            for (int r = 0; r < 2; r++) {
                if (blk < a.nb) {
                    const uint8_t *b = row[r] + (size_t)blk * 18;
                    f.d[r][i] = __ldg((const uint16_t *)b);
                    f.q[r][i] = ld32_a2(b + 2 + 4 * t);
                } else {
                    f.d[r][i] = f.q[r][i] = 0;
                }
            }
        }
    }
    template <int NT>
    static __device__ __forceinline__ void dot(const frag &f, int u, const mmq_args &a, int g, int t,
                                               float (&acc)[NT][4]) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int blk = u * 4 + i;
            if (blk >= a.nb) break;
            const float dw[2] = {cu_f16((uint16_t)f.d[0][i]), cu_f16((uint16_t)f.d[1][i])};
            uint32_t lo[2], hi[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                lo[r] = sub_bytes(f.q[r][i] & 0x0f0f0f0fu, 8);
                hi[r] = sub_bytes(f.q[r][i] >> 4 & 0x0f0f0f0fu, 8);
            }
#pragma unroll
            for (int n = 0; n < NT; n++) {
                const uint32_t b0 = act4(a, blk, 8 * n + g, 4 * t), b1 = act4(a, blk, 8 * n + g, 16 + 4 * t);
                const float4 ds = act_ds(a, blk, 8 * n + 2 * t);
                int cc[4];
                mma_k32(cc, lo[0], lo[1], hi[0], hi[1], b0, b1);
                acc_scale(acc[n], cc, dw, ds);
            }
        }
    }
};

/* ---- the kernel ---- */

/* Up to MMQ_MAX_FUSED weights of one type reading the same activations, in one launch (the
 * projections of a matmul_many): weight i owns blocks first[i] .. first[i + 1] - 1, with its
 * own rows and K split, so each output is what a launch of its own computes. One launch
 * instead of several saves the launch gaps and the ramp and tail of each (the small GDN beta /
 * alpha and attention k / v matrices cost ~8 us a call on their own). */
enum { MMQ_MAX_FUSED = 4 };
typedef struct mmq_launch {
    mmq_args a[MMQ_MAX_FUSED];
    int first[MMQ_MAX_FUSED + 1];
    int n;
    int warps; /* per block: MMQ_WARPS, or half that where every K split is <= 2 (run_fused) */
} mmq_launch;

/* NT is the call's exact number of column tiles: no branch on it inside a unit, so a unit's
 * activation loads can all be issued before its arithmetic waits on any of them. One tile:
 * three blocks per SM (<= 80 registers), so every split shape of the 27B model fits in one
 * wave on 132 SMs. Two or more: two blocks (<= 128 registers). Measured (H100, 27B shapes):
 * three blocks beat two by 10% at 1 token; at 9-16 tokens three blocks spilled (Q4_K / Q5_K
 * / Q6_K at 80 registers), and two took the 27B's 16-token forward from 1.37 to 1.27 decode
 * steps (verify 1.41 -> 1.31, drafter 0.147 -> 0.140), although a few shapes alone then run
 * 1.2 waves; loading the next unit into a second register set while computing the current
 * one was 15% slower. */
template <int T, int NT, int W>
__global__ void __launch_bounds__(W * 32, (NT <= 1 ? 3 : 2) * MMQ_WARPS / W) mmq_kernel(const mmq_launch L) {
    typedef mmq_type<T> K;
    __shared__ float red[W][NT * 4][32];
    /* this block's weight, picked with constant indices (a run-time index into the parameters
     * would copy them to local memory) */
    mmq_args a = L.a[0];
    int first = 0;
#pragma unroll
    for (int i = 1; i < MMQ_MAX_FUSED; i++)
        if (i < L.n && (int)blockIdx.x >= L.first[i]) {
            a = L.a[i];
            first = L.first[i];
        }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int kw = a.kw, ks = warp % kw;
    const int row0 = (((int)blockIdx.x - first) * (W / kw) + warp / kw) * MMQ_ROWS;
    /* rows past the end read the last row (valid memory) and store nothing */
    const uint8_t *row[2] = {a.w + (size_t)min(row0 + g, a.n_out - 1) * a.row_bytes,
                             a.w + (size_t)min(row0 + g + 8, a.n_out - 1) * a.row_bytes};
    const int u0 = (int)((long long)a.n_units * ks / kw), u1 = (int)((long long)a.n_units * (ks + 1) / kw);
    float acc[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[n][e] = 0.0f;
    /* The first unit's weights are loaded before waiting for the kernel that wrote the
     * activations (the quantizer): launched as its programmatic dependent (launch_fused), this
     * kernel starts while the quantizer runs, and those loads hide its own start. */
    typename K::frag f;
    if (u0 < u1) K::load(f, row, u0, t, a);
    cu_wait_for_producer();
    for (int u = u0; u < u1; u++) {
        if (u > u0) K::load(f, row, u, t, a);
        K::template dot<NT>(f, u, a, g, t, acc);
    }
    if (kw > 1) {
        /* the K split's partial sums, added in warp order by the row tile's first warp */
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) red[warp][n * 4 + e][lane] = acc[n][e];
        __syncthreads();
        if (ks) return;
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float v = acc[n][e];
                for (int k = 1; k < kw; k++) v = __fadd_rn(v, red[warp + k][n * 4 + e][lane]);
                acc[n][e] = v;
            }
    }
#pragma unroll
    for (int n = 0; n < NT; n++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int r = row0 + g + 8 * (e / 2), tok = 8 * n + 2 * t + e % 2;
            if (r < a.n_out && tok < a.n_tok) a.y[(size_t)tok * a.n_out + r] = acc[n][e];
        }
    }
}

/* ---- host side ---- */

/* Switches for before / after timings, each on unless its variable is 0, read once:
 * DFLASH_CUDA_MMQ (this path at all; off, the f32 kernel of cuda_matmul.cu takes these types
 * again), DFLASH_CUDA_FUSE (one launch for the weights of one type in a matmul_many),
 * DFLASH_CUDA_PDL (the matmul a programmatic dependent of its quantizer), DFLASH_CUDA_HALF_BLOCKS
 * (4-warp blocks where every K split is <= 2). */
typedef struct mmq_switches {
    bool mmq, fuse, pdl, half_blocks;
} mmq_switches;

static bool env_on(const char *name) {
    const char *e = getenv(name);
    return !(e && *e && atoi(e) == 0);
}

static const mmq_switches *switches(void) {
    static mmq_switches sw;
    static bool read = false;
    if (!read) {
        sw = (mmq_switches){env_on("DFLASH_CUDA_MMQ"), env_on("DFLASH_CUDA_FUSE"), env_on("DFLASH_CUDA_PDL"),
                            env_on("DFLASH_CUDA_HALF_BLOCKS")};
        read = true;
    }
    return &sw;
}

bool cu_mmq_supported(const cu_backend *cb, const df_weight *w) {
    if (!switches()->mmq || cb->cc_major < 8 || (uintptr_t)w->data % 16) return false;
    switch (w->type) {
    case DF_TYPE_Q4_K: case DF_TYPE_Q5_K: case DF_TYPE_Q6_K: case DF_TYPE_Q8_0: case DF_TYPE_Q4_0:
        return true;
    default:
        return false;
    }
}

/* Warps per row tile: the fewest (1, 2, 4, 8) that give the GPU about 16 warps per SM, while
 * each keeps two units or more. From the shape and the device alone, never from n_tok.
 * Measured (H100, 27B shapes): aiming at 8 warps per SM was 15% slower, at 32 the same. */
static int k_split(const cu_backend *cb, int n_out, int n_units) {
    const long long tiles = (n_out + MMQ_ROWS - 1) / MMQ_ROWS, want = (long long)cb->n_sm * 16;
    int kw = 1;
    while (kw < MMQ_WARPS && tiles * kw < want && n_units >= 4 * kw) kw *= 2;
    return kw;
}

/* pdl: launched as a programmatic dependent of the previous kernel on the stream (sm_90), so
 * it may start before that one ends; the kernel waits (cu_wait_for_producer) before it reads
 * the activations. */
template <int T, int NT, int W>
static cudaError_t launch_w(const mmq_launch &l, bool pdl, cudaStream_t s) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)l.first[l.n]);
    cfg.blockDim = dim3(W * 32);
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, mmq_kernel<T, NT, W>, l);
}

template <int T, int NT>
static cudaError_t launch(const mmq_launch &l, bool pdl, cudaStream_t s) {
    return l.warps == MMQ_WARPS / 2 ? launch_w<T, NT, MMQ_WARPS / 2>(l, pdl, s) : launch_w<T, NT, MMQ_WARPS>(l, pdl, s);
}

template <int T>
static cudaError_t launch_nt(const mmq_launch &l, bool pdl, cudaStream_t s) {
    switch (l.a[0].nt) {
    case 1: return launch<T, 1>(l, pdl, s);
    case 2: return launch<T, 2>(l, pdl, s);
    case 3: return launch<T, 3>(l, pdl, s);
    case 4: return launch<T, 4>(l, pdl, s);
    case 5: return launch<T, 5>(l, pdl, s);
    case 6: return launch<T, 6>(l, pdl, s);
    case 7: return launch<T, 7>(l, pdl, s);
    default: return launch<T, 8>(l, pdl, s);
    }
}

df_status cu_mmq_prepare(cu_backend *cb, const float *x, int n_tok, int n_in, cu_mmq_act *act) {
    const int ntp = cu_mmq_tok_pad(n_tok), nb = n_in / 32, nsb = n_in % 256 ? 0 : n_in / 256;
    /* Both forms, one after the other: xq (n_in * ntp bytes: a multiple of 256), {d, s} pairs;
     * the super-block xq, d, sums. Every part is a multiple of 16 bytes long, so each starts
     * 16-byte aligned for the kernels' vector loads. */
    const size_t xq_bytes = (size_t)ntp * (size_t)n_in, ds_bytes = (size_t)ntp * (size_t)nb * sizeof(float2);
    const size_t sb_bytes = nsb ? xq_bytes : 0, d_bytes = (size_t)ntp * (size_t)nsb * sizeof(float);
    const size_t bs_bytes = (size_t)ntp * (size_t)nsb * 8 * sizeof(int16_t);
    char *buf;
    DF_TRY(cu_qscratch(cb, xq_bytes + ds_bytes + sb_bytes + d_bytes + bs_bytes, "matmul", (void **)&buf));
    act->x = x;
    act->n_tok = n_tok;
    act->n_in = n_in;
    act->xq = (int8_t *)buf;
    act->xds = (float2 *)(buf + xq_bytes);
    act->xq_sb = nsb ? (int8_t *)(buf + xq_bytes + ds_bytes) : NULL;
    act->xd_sb = nsb ? (float *)(buf + xq_bytes + ds_bytes + sb_bytes) : NULL;
    act->xbs_sb = nsb ? (int16_t *)(buf + xq_bytes + ds_bytes + sb_bytes + d_bytes) : NULL;
    act->has_blocks = act->has_sb = false;
    act->fresh = false;
    return DF_OK;
}

static bool is_k_quant(df_type t) { return t == DF_TYPE_Q4_K || t == DF_TYPE_Q5_K || t == DF_TYPE_Q6_K; }

/* x in the form weights of type t read, quantized now if no weight of the call asked before. */
static df_status ensure_form(cu_backend *cb, cu_mmq_act *act, df_type t) {
    if (is_k_quant(t)) {
        if (act->has_sb) return DF_OK;
        if (!act->xq_sb)
            return df_fail(DF_ERR_INVALID, "matmul: rows of %d elements are not whole super-blocks of 256",
                           act->n_in);
        DF_TRY(cu_quantize_act_sb(cb, act->x, act->n_tok, act->n_in, act->xq_sb, act->xd_sb, act->xbs_sb));
        act->has_sb = true;
    } else {
        if (act->has_blocks) return DF_OK;
        DF_TRY(cu_quantize_act(cb, act->x, act->n_tok, act->n_in, act->xq, act->xds));
        act->has_blocks = true;
    }
    act->fresh = true;
    return DF_OK;
}

static int unit_of(df_type t) {
    switch (t) {
    case DF_TYPE_Q6_K: return mmq_type<DF_TYPE_Q6_K>::UNIT;
    case DF_TYPE_Q8_0: return mmq_type<DF_TYPE_Q8_0>::UNIT;
    case DF_TYPE_Q4_0: return mmq_type<DF_TYPE_Q4_0>::UNIT;
    default: return 256;
    }
}

/* One launch for w[0..n-1] (n <= MMQ_MAX_FUSED, one type, rows of act->n_in); pdl: right
 * after the quantizer that wrote act (see launch). */
static df_status run_fused(cu_backend *cb, const cu_mmq_act *act, int n, const df_weight *const *w,
                           const size_t *row_bytes, float *const *y, bool pdl) {
    const int n_in = act->n_in, unit = unit_of(w[0]->type), ntp = cu_mmq_tok_pad(act->n_tok);
    mmq_launch l;
    l.n = n;
    for (int i = 0; i < n; i++) {
        mmq_args &a = l.a[i];
        a.w = (const uint8_t *)w[i]->data;
        a.row_bytes = row_bytes[i];
        a.n_out = (int)w[i]->ne[1];
        a.n_units = (n_in + unit - 1) / unit;
        a.nb = n_in / 32;
        a.kw = k_split(cb, a.n_out, a.n_units);
        a.ntp = ntp;
        a.nt = ntp / CU_MMQ_TOK_TILE;
        a.n_tok = act->n_tok;
        a.al4 = row_bytes[i] % 4 == 0 && (uintptr_t)w[i]->data % 4 == 0;
        const bool sb = is_k_quant(w[i]->type);
        a.xq = sb ? act->xq_sb : act->xq;
        a.xds = act->xds;
        a.xd = act->xd_sb;
        a.xbs = (const uint4 *)act->xbs_sb;
        a.y = y[i];
    }
    /* Blocks of half the warps where no weight splits K more than 2 ways (the tall FFN gate /
     * up): twice the blocks spread more evenly over the SMs. Where K splits 4 or 8 ways the
     * full block measured faster (H100, 27B shapes: docs/PERF.md). The results do not depend
     * on it: each row tile's K split is the same. */
    l.warps = switches()->half_blocks ? MMQ_WARPS / 2 : MMQ_WARPS;
    for (int i = 0; i < n; i++)
        if (l.a[i].kw > 2) l.warps = MMQ_WARPS;
    l.first[0] = 0;
    for (int i = 0; i < n; i++) {
        const long long tiles = (l.a[i].n_out + MMQ_ROWS - 1) / MMQ_ROWS, per_block = l.warps / l.a[i].kw;
        l.first[i + 1] = l.first[i] + (int)((tiles + per_block - 1) / per_block);
    }
    for (int i = n; i < MMQ_MAX_FUSED; i++) {
        l.a[i] = l.a[0];
        l.first[i + 1] = l.first[n];
    }
    cudaError_t e;
    switch (w[0]->type) {
    case DF_TYPE_Q4_K: e = launch_nt<DF_TYPE_Q4_K>(l, pdl, cb->stream); break;
    case DF_TYPE_Q5_K: e = launch_nt<DF_TYPE_Q5_K>(l, pdl, cb->stream); break;
    case DF_TYPE_Q6_K: e = launch_nt<DF_TYPE_Q6_K>(l, pdl, cb->stream); break;
    case DF_TYPE_Q8_0: e = launch_nt<DF_TYPE_Q8_0>(l, pdl, cb->stream); break;
    case DF_TYPE_Q4_0: e = launch_nt<DF_TYPE_Q4_0>(l, pdl, cb->stream); break;
    default:
        return df_fail(DF_ERR_UNSUPPORTED, "matmul: %s: no int8 kernel for %s", w[0]->name ? w[0]->name : "weight",
                       df_type_name(w[0]->type));
    }
    if (e != cudaSuccess) return cu_fail(e, "matmul (int8)", "kernel launch");
    return cu_check_launch(cb, "matmul (int8)");
}

df_status cu_mmq_run(cu_backend *cb, cu_mmq_act *act, int n, const df_weight *const *w,
                     const size_t *row_bytes, float *const *y) {
    for (int i = 0; i < n; i++)
        if (w[i]->ne[0] != act->n_in)
            return df_fail(DF_ERR_INVALID, "matmul: %s: rows of %lld elements, activations of %d",
                           w[i]->name ? w[i]->name : "weight", (long long)w[i]->ne[0], act->n_in);
    /* runs of consecutive weights of one type share a launch */
    const int fuse = switches()->fuse ? MMQ_MAX_FUSED : 1;
    const bool pdl = switches()->pdl && cb->cc_major >= 9;
    for (int i = 0; i < n;) {
        int k = 1;
        while (i + k < n && k < fuse && w[i + k]->type == w[i]->type) k++;
        /* only the launch right after the quantizer overlaps it (the quantizer lets it start) */
        DF_TRY(ensure_form(cb, act, w[i]->type));
        DF_TRY(run_fused(cb, act, k, w + i, row_bytes + i, y + i, pdl && act->fresh));
        act->fresh = false;
        i += k;
    }
    return DF_OK;
}

df_status cu_mmq(cu_backend *cb, const float *x, int n_tok, const df_weight *w, size_t row_bytes, float *y) {
    cu_mmq_act act;
    DF_TRY(cu_mmq_prepare(cb, x, n_tok, (int)w->ne[0], &act));
    return cu_mmq_run(cb, &act, 1, &w, &row_bytes, &y);
}
