/* The chunked (WY / UT transform) form of the Gated DeltaNet for long calls (prefill).
 * Contract: df_cpu_gdn_chunked in cpu_ops.h; formulas as in cpu_gdn_chunked.c. For a chunk of
 * C tokens with cumulative log decay c_i (within the chunk) and the state S0 on entry:
 *
 *   X  = diag(beta) (V - diag(e^c) K S0)
 *   (I + A) Vn = X,   A[i][j] = beta_i (k_i . k_j) e^{c_i - c_j}  (j < i)
 *   o_i = e^{c_i} q_i^T S0 + sum_{j<=i} (q_i . k_j) e^{c_i - c_j} vn_j
 *   S   = e^{c_C} S0 + sum_j e^{c_C - c_j} k_j vn_j^T
 *
 * which is the CPU's U - W S0 with the triangular solve moved after the product (one solve
 * over the block's value columns instead of two, and no W). The columns of S (value columns)
 * are independent, so a block owns 64 value columns of one head (grid: column tiles x heads)
 * and walks the chunks in order, its state tile in shared memory for the whole call.
 *
 * The products (K K^T, Q K^T, K S0, Q S0, the masked Q K^T times Vn, and the state update
 * K^T Vn) run on the tensor cores through WMMA in TF32 with the operands split in two
 * (x = hi + lo, three products: lo*hi + hi*lo + hi*hi), which keeps them at float32
 * accuracy (~2^-21 per product instead of TF32's 2^-11): the state is carried across the
 * whole prompt and into every later decode step, and the CPU reference is float32.
 * DFLASH_CUDA_GDN_TF32=1 drops the split (single TF32 products, ~3x fewer tensor-core
 * instructions; its error, expected near 1e-3, is not checked) only to measure what the
 * split costs. The solve (row i needs every row before it) is plain f32: one thread per
 * value column, the column in registers.
 *
 * Chunks are 64 tokens for key heads of up to 128 (190 KB of shared memory) and 32 for
 * wider ones (up to 256: 172 KB). Rows beyond d_k, columns beyond d_v and tokens beyond
 * the last one are zero in shared memory (beta = 0, g = 0 there), so every tile is full
 * and the padding contributes nothing. The cumulative decay is kept in double, as on the
 * CPU: every exponent is a difference c_i - c_j <= 0, nothing overflows.
 *
 * The inputs are staged with cp.async (16-byte copies where rows are aligned), the next
 * chunk's V and Q while this chunk's later steps run: with one block of 8 warps per
 * multiprocessor, loads issued one loop iteration at a time kept the kernel waiting on
 * memory. Measured on an H100 (27B layer, 16/48 heads of 128, 1024 tokens in one call): the
 * recurrent kernel 1.42 ms; this one with plain load loops 1.09 ms; as it is now 0.80 ms
 * (0.56 ms with DFLASH_CUDA_GDN_TF32=1). That is still ~50 us per 64-token chunk per block,
 * several times what its ~7,000 mma instructions need (docs/PERF.md).
 *
 * capture: the states inside a chunk are rebuilt from Vn one rank-1 update per token
 * (S_t = e^{g_t} S_{t-1} + k_t vn_t^T), as the CPU does, instead of the state product.
 *
 * Calls of fewer than GC_MIN_TOK tokens (the forward never sends them: verify and decode
 * take gdn_recurrent), devices without the shared memory, and DFLASH_CUDA_GDN_CHUNKED=0 go
 * to cu_gdn_recurrent. */
#include <mma.h>
#include <stdlib.h>

#include "backend/cuda/cuda_internal.h"

using namespace nvcuda;

enum { GC_THREADS = 256, GC_WARPS = GC_THREADS / 32, GC_BV = 64, GC_MIN_TOK = 64 };

/* Float offsets into dynamic shared memory, each a multiple of 8 floats (the 32-byte
 * alignment that wmma's loads and stores want). Rows are padded by 4 floats against bank
 * conflicts; with 8-row steps every fragment pointer stays 32-byte aligned. */
struct gc_layout {
    int dkp;                 /* d_k rounded up to 16 */
    int ldk, lds, ldv, ldc;  /* row strides: K/Q [C][dkp], S [dkp][64], V/P/O [C][64], A/H [C][C] */
    int k, q, s, v, p, o, a, hq, cum, beta, graw, ec, kd, gx, el;
    int total;
};

static gc_layout gc_make_layout(int C, int dkp) {
    gc_layout L;
    L.dkp = dkp;
    L.ldk = dkp + 4;
    L.lds = GC_BV + 4;
    L.ldv = GC_BV + 4;
    L.ldc = C + 4;
    int at = 0;
    auto take = [&at](int n) {
        const int off = at;
        at += (n + 7) / 8 * 8;
        return off;
    };
    L.k = take(C * L.ldk);
    L.q = take(C * L.ldk);
    L.s = take(dkp * L.lds);
    L.v = take(C * L.ldv);
    L.p = take(C * L.ldv);
    L.o = take(C * L.ldv);
    L.a = take(C * L.ldc);
    L.hq = take(C * L.ldc);
    L.cum = take(2 * C); /* doubles */
    L.beta = take(C);
    L.graw = take(C);
    L.ec = take(C);
    L.kd = take(C);
    L.gx = take(C);
    L.el = take(1);
    L.total = at;
    return L;
}

struct gc_args {
    cu_gdn_args p; /* the views, gates, state and capture (cuda_gdn.cu) */
    int vec;       /* q, k, v rows 16-byte aligned, dims % 4 == 0: 16-byte copies */
    gc_layout lay;
};

typedef wmma::fragment<wmma::accumulator, 16, 16, 8, float> gc_acc;

/* x = hi + lo, both TF32; x keeps hi */
template <typename F> __device__ __forceinline__ void gc_split(F &x, F &lo) {
#pragma unroll
    for (int i = 0; i < x.num_elements; i++) {
        const float v = x.x[i], hi = wmma::__float_to_tf32(v);
        x.x[i] = hi;
        lo.x[i] = wmma::__float_to_tf32(v - hi);
    }
}

template <typename F> __device__ __forceinline__ void gc_round(F &x) {
#pragma unroll
    for (int i = 0; i < x.num_elements; i++) x.x[i] = wmma::__float_to_tf32(x.x[i]);
}

/* acc += A B over k_steps steps of 8: A 16 x 8k (layout LA, stride lda, a_step floats per
 * step), B 8k x 16 (layout LB, ldb, b_step). */
template <bool SPLIT, typename LA, typename LB>
__device__ __forceinline__ void gc_mma(gc_acc &acc, const float *A, int lda, int a_step, const float *B, int ldb,
                                       int b_step, int k_steps) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LA> a, a_lo;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LB> b, b_lo;
    /* The two correction products go to their own accumulators: three independent chains
     * of mma instead of one three times as long (each waits for the previous result). */
    gc_acc c1, c2;
    if (SPLIT) {
        wmma::fill_fragment(c1, 0.0f);
        wmma::fill_fragment(c2, 0.0f);
    }
    for (int s = 0; s < k_steps; s++) {
        wmma::load_matrix_sync(a, A + s * a_step, lda);
        wmma::load_matrix_sync(b, B + s * b_step, ldb);
        if (SPLIT) {
            gc_split(a, a_lo);
            gc_split(b, b_lo);
            wmma::mma_sync(c1, a_lo, b, c1);
            wmma::mma_sync(c2, a, b_lo, c2);
        } else {
            gc_round(a);
            gc_round(b);
        }
        wmma::mma_sync(acc, a, b, acc);
    }
    if (SPLIT) {
#pragma unroll
        for (int i = 0; i < acc.num_elements; i++) acc.x[i] += c1.x[i] + c2.x[i];
    }
}

/* cp.async: global -> shared without a register round trip; all of a stage's copies are in
 * flight at once (a plain load loop waits one memory latency per iteration). */
__device__ __forceinline__ void gc_cp4(float *dst, const float *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src));
}
__device__ __forceinline__ void gc_cp16(float *dst, const float *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src));
}
__device__ __forceinline__ void gc_cp_wait(void) {
    asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
}

/* Rows t < C of a chunk into dst ([C][ld]): dim floats of x's head `head` starting at
 * column `col` of token t0 + t, zero after them up to width and for t >= n. One warp per
 * row at a time; the copies complete at gc_cp_wait. */
__device__ __forceinline__ void gc_stage_rows(float *dst, int ld, int C, const cu_heads &x, int t0, int n, int head,
                                              int col, int dim, int width, bool vec) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int t = warp; t < C; t += GC_WARPS) {
        float *d = dst + t * ld;
        int done = 0;
        if (t < n) {
            const float *src = cu_head_ptr(x, t0 + t, head) + col;
            if (vec)
                for (int r = 4 * lane; r < dim; r += 128) gc_cp16(d + r, src + r);
            else
                for (int r = lane; r < dim; r += 32) gc_cp4(d + r, src + r);
            done = dim;
        }
        for (int r = done + lane; r < width; r += 32) d[r] = 0.0f;
    }
}

/* The t-th tile (bi, bj) of the lower triangle of an nb x nb tile grid, bj <= bi. */
__device__ __forceinline__ void gc_tri(int t, int *bi, int *bj) {
    int i = 0;
    while (t > i) {
        t -= i + 1;
        i++;
    }
    *bi = i;
    *bj = t;
}

template <int C, bool SPLIT>
__global__ void __launch_bounds__(GC_THREADS, 1) gdn_chunked_kernel(gc_args a) {
    extern __shared__ __align__(128) float sm[];
    const gc_layout &L = a.lay;
    float *sK = sm + L.k, *sQ = sm + L.q, *sS = sm + L.s, *sV = sm + L.v, *sP = sm + L.p, *sO = sm + L.o;
    float *sgraw = sm + L.graw;
    float *sA = sm + L.a, *sH = sm + L.hq;
    double *scum = (double *)(sm + L.cum);
    float *sbeta = sm + L.beta, *sec = sm + L.ec, *skd = sm + L.kd, *sgx = sm + L.gx, *sel = sm + L.el;
    const int ldk = L.ldk, lds = L.lds, ldv = L.ldv, ldc = L.ldc, dkp = L.dkp;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int h = blockIdx.y, col0 = blockIdx.x * GC_BV;
    const int dk = a.p.k.dim, dv = a.p.v.dim, nv = a.p.v.n_head, nk = a.p.k.n_head, n_tok = a.p.v.n_tok;
    const int kh = a.p.tiled ? h % nk : h / (nv / nk);
    const long long hs = (long long)dk * dv;
    float *S_g = a.p.state + (long long)h * hs;
    const bool capture = a.p.capture != NULL;
    constexpr int NB = C / 16, NTRI = NB * (NB + 1) / 2, NBC = GC_BV / 16;

    for (int i = tid; i < dkp * GC_BV; i += GC_THREADS) {
        const int r = i / GC_BV, c = i % GC_BV, col = col0 + c;
        sS[r * lds + c] = (r < dk && col < dv) ? S_g[(long long)r * dv + col] : 0.0f;
    }

    const int vcols = min(GC_BV, dv - col0);
    const bool vec = a.vec;
    /* a chunk's g and beta (warp 0; zero past the end) */
    auto stage_gates = [&](int t0, int n) {
        if (warp != 0) return;
        for (int t = lane; t < C; t += 32) {
            const long long gi = (long long)(t0 + t) * nv + h;
            sgraw[t] = t < n ? a.p.g[gi] : 0.0f;
            sbeta[t] = t < n ? a.p.beta[gi] : 0.0f;
        }
    };
    gc_stage_rows(sK, ldk, C, a.p.k, 0, min(C, n_tok), kh, 0, dk, dkp, vec);
    gc_stage_rows(sQ, ldk, C, a.p.q, 0, min(C, n_tok), kh, 0, dk, dkp, vec);
    gc_stage_rows(sV, ldv, C, a.p.v, 0, min(C, n_tok), h, col0, vcols, GC_BV, vec);
    stage_gates(0, min(C, n_tok));
    gc_cp_wait();
    __syncthreads();

    /* Each chunk starts with its K, Q, V, g and beta staged. The next chunk's Q is copied
     * while this one's steps 3-5 run (Q is last read in step 2), its V into sP while steps
     * 4-5 run (P is last read in step 3; then sV and sP swap), its K after step 5. */
    for (int t0 = 0; t0 < n_tok; t0 += C) {
        const int n = min(C, n_tok - t0), t1 = t0 + C, n1 = max(0, min(C, n_tok - t1));

        /* 1. the cumulative decay, in double */
        if (warp == 0) {
            constexpr int PER = C / 32;
            double loc[PER];
            double run = 0.0;
#pragma unroll
            for (int p = 0; p < PER; p++) {
                run += sgraw[lane * PER + p];
                loc[p] = run;
            }
            double incl = run;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const double y = __shfl_up_sync(0xffffffffu, incl, o);
                if (lane >= o) incl += y;
            }
            double excl = __shfl_up_sync(0xffffffffu, incl, 1);
            if (lane == 0) excl = 0.0;
            const double last = __shfl_sync(0xffffffffu, incl, 31);
#pragma unroll
            for (int p = 0; p < PER; p++) {
                const int t = lane * PER + p;
                const double c = excl + loc[p];
                scum[t] = c;
                sec[t] = expf((float)c);
                skd[t] = expf((float)(last - c));
                sgx[t] = expf(sgraw[t]);
            }
            if (lane == 0) sel[0] = expf((float)last);
        }
        __syncthreads();

        /* 2. G = K K^T (upper tiles), H = Q K^T (lower tiles), P = K S0 */
        {
            const int ks = dkp / 8, jobs = 2 * NTRI + NB * NBC;
            for (int j = warp; j < jobs; j += GC_WARPS) {
                gc_acc acc;
                wmma::fill_fragment(acc, 0.0f);
                if (j < 2 * NTRI) {
                    int bi, bj;
                    gc_tri(j % NTRI, &bi, &bj);
                    if (j < NTRI) { /* G tile (bj, bi): rows of block bj against block bi */
                        gc_mma<SPLIT, wmma::row_major, wmma::col_major>(acc, sK + bj * 16 * ldk, ldk, 8,
                                                                        sK + bi * 16 * ldk, ldk, 8, ks);
                        wmma::store_matrix_sync(sA + bj * 16 * ldc + bi * 16, acc, ldc, wmma::mem_row_major);
                    } else {
                        gc_mma<SPLIT, wmma::row_major, wmma::col_major>(acc, sQ + bi * 16 * ldk, ldk, 8,
                                                                        sK + bj * 16 * ldk, ldk, 8, ks);
                        wmma::store_matrix_sync(sH + bi * 16 * ldc + bj * 16, acc, ldc, wmma::mem_row_major);
                    }
                } else {
                    const int u = j - 2 * NTRI, bi = u / NBC, bc = u % NBC;
                    gc_mma<SPLIT, wmma::row_major, wmma::row_major>(acc, sK + bi * 16 * ldk, ldk, 8, sS + bc * 16, lds,
                                                                    8 * lds, ks);
                    wmma::store_matrix_sync(sP + bi * 16 * ldv + bc * 16, acc, ldv, wmma::mem_row_major);
                }
            }
        }
        __syncthreads();

        /* 3. decays: sA becomes A^T (strictly upper), sH the masked Q K^T; X in sV; Q rows
         * *= e^{c_i} q_scale; for the state product, K rows *= e^{c_C - c_j} */
        for (int i = tid; i < C * C; i += GC_THREADS) {
            const int r = i / C, c = i % C, hi = max(r, c), lo = min(r, c);
            const float dec = expf((float)(scum[hi] - scum[lo]));
            sA[r * ldc + c] = c > r ? sbeta[c] * sA[r * ldc + c] * dec : 0.0f;
            sH[r * ldc + c] = c <= r ? sH[r * ldc + c] * (dec * a.p.q_scale) : 0.0f;
        }
        for (int i = tid; i < C * GC_BV; i += GC_THREADS) {
            const int t = i / GC_BV, c = i % GC_BV;
            const float e = sec[t];
            sV[t * ldv + c] = sbeta[t] * (sV[t * ldv + c] - e * sP[t * ldv + c]);
        }
        for (int t = warp; t < C; t += GC_WARPS) {
            const float eq = sec[t] * a.p.q_scale, ek = skd[t];
            for (int r = lane; r < dkp; r += 32) {
                sQ[t * ldk + r] *= eq;
                if (!capture) sK[t * ldk + r] *= ek;
            }
        }
        __syncthreads();
        if (n1 > 0) gc_stage_rows(sP, ldv, C, a.p.v, t1, n1, h, col0, vcols, GC_BV, vec);

        /* 4. (I + A) Vn = X, one thread per value column (the first two warps), in place in
         * sV; meanwhile the other warps compute O = (e^c q_scale Q) S0, which needs no Vn */
        static_assert(GC_BV == 64, "the solve takes warps 0-1, one thread per column");
        if (warp >= 2) {
            const int ks = dkp / 8;
            for (int j = warp - 2; j < NB * NBC; j += GC_WARPS - 2) {
                const int bi = j / NBC, bc = j % NBC;
                gc_acc acc;
                wmma::fill_fragment(acc, 0.0f);
                gc_mma<SPLIT, wmma::row_major, wmma::row_major>(acc, sQ + bi * 16 * ldk, ldk, 8, sS + bc * 16, lds,
                                                                8 * lds, ks);
                wmma::store_matrix_sync(sO + bi * 16 * ldv + bc * 16, acc, ldv, wmma::mem_row_major);
            }
        } else {
            float x[C];
#pragma unroll
            for (int i = 0; i < C; i++) x[i] = sV[i * ldv + tid];
#pragma unroll
            for (int j = 0; j < C - 1; j++) {
                const float vj = x[j];
                const float4 *row = (const float4 *)(sA + j * ldc);
#pragma unroll
                for (int m = (j + 1) / 4; m < C / 4; m++) {
                    const float4 q = row[m];
                    if (4 * m + 0 > j) x[4 * m + 0] = fmaf(-q.x, vj, x[4 * m + 0]);
                    if (4 * m + 1 > j) x[4 * m + 1] = fmaf(-q.y, vj, x[4 * m + 1]);
                    if (4 * m + 2 > j) x[4 * m + 2] = fmaf(-q.z, vj, x[4 * m + 2]);
                    if (4 * m + 3 > j) x[4 * m + 3] = fmaf(-q.w, vj, x[4 * m + 3]);
                }
            }
#pragma unroll
            for (int i = 0; i < C; i++) sV[i * ldv + tid] = x[i];
        }
        __syncthreads();
        if (n1 > 0) gc_stage_rows(sQ, ldk, C, a.p.q, t1, n1, kh, 0, dk, dkp, vec);

        /* 5. O += Hm Vn; S = e^{c_C} S + Kd^T Vn (or, with capture, the per-token rank-1 updates) */
        {
            const int o_jobs = NB * NBC, jobs = o_jobs + (capture ? 0 : (dkp / 16) * NBC);
            for (int j = warp; j < jobs; j += GC_WARPS) {
                gc_acc acc;
                if (j < o_jobs) {
                    const int bi = j / NBC, bc = j % NBC;
                    float *dst = sO + bi * 16 * ldv + bc * 16;
                    wmma::load_matrix_sync(acc, dst, ldv, wmma::mem_row_major);
                    gc_mma<SPLIT, wmma::row_major, wmma::row_major>(acc, sH + bi * 16 * ldc, ldc, 8, sV + bc * 16, ldv,
                                                                    8 * ldv, (bi + 1) * 2);
                    wmma::store_matrix_sync(dst, acc, ldv, wmma::mem_row_major);
                } else {
                    const int u = j - o_jobs, br = u / NBC, bc = u % NBC;
                    float *dst = sS + br * 16 * lds + bc * 16;
                    wmma::load_matrix_sync(acc, dst, lds, wmma::mem_row_major);
                    const float el = sel[0];
#pragma unroll
                    for (int i = 0; i < acc.num_elements; i++) acc.x[i] *= el;
                    gc_mma<SPLIT, wmma::col_major, wmma::row_major>(acc, sK + br * 16, ldk, 8 * ldk, sV + bc * 16, ldv,
                                                                    8 * ldv, C / 8);
                    wmma::store_matrix_sync(dst, acc, lds, wmma::mem_row_major);
                }
            }
            if (capture) {
                /* each thread owns the same elements for every token: no barrier inside */
                const int cols = min(GC_BV, dv - col0);
                for (int t = 0; t < n; t++) {
                    const float d = sgx[t];
                    const long long base = ((long long)(t0 + t) * nv + h) * hs + col0;
                    for (int i = tid; i < dk * GC_BV; i += GC_THREADS) {
                        const int r = i / GC_BV, c = i % GC_BV;
                        if (c >= cols) continue;
                        const float s = d * sS[r * lds + c] + sK[t * ldk + r] * sV[t * ldv + c];
                        sS[r * lds + c] = s;
                        const long long at = base + (long long)r * dv + c;
                        if (a.p.cap_f16) ((__half *)a.p.capture)[at] = __float2half_rn(s);
                        else ((float *)a.p.capture)[at] = s;
                    }
                }
            }
        }
        __syncthreads();

        /* 6. the chunk's outputs; the next chunk's K, g and beta */
        for (int i = tid; i < C * GC_BV; i += GC_THREADS) {
            const int t = i / GC_BV, c = i % GC_BV, col = col0 + c;
            if (t < n && col < dv) cu_head_ptr(a.p.out, t0 + t, h)[col] = sO[t * ldv + c];
        }
        if (n1 > 0) {
            gc_stage_rows(sK, ldk, C, a.p.k, t1, n1, kh, 0, dk, dkp, vec);
            stage_gates(t1, n1);
            float *sw = sV;
            sV = sP;
            sP = sw;
        }
        gc_cp_wait();
        __syncthreads();
    }

    for (int i = tid; i < dk * GC_BV; i += GC_THREADS) {
        const int r = i / GC_BV, c = i % GC_BV, col = col0 + c;
        if (col < dv) S_g[(long long)r * dv + col] = sS[r * lds + c];
    }
}

/* Read once: DFLASH_CUDA_GDN_CHUNKED=0 sends gdn_chunked to the recurrent kernel (to compare
 * both in one process); DFLASH_CUDA_GDN_TF32=1 drops the operand split. */
static bool env_flag(const char *name, bool dflt) {
    const char *e = getenv(name);
    if (!e || !*e) return dflt;
    return strcmp(e, "0") != 0;
}

template <int C, bool SPLIT> static cudaError_t gc_launch(const gc_args &k, dim3 grid, size_t bytes, cudaStream_t s) {
    cudaError_t e = cudaFuncSetAttribute(gdn_chunked_kernel<C, SPLIT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)bytes);
    if (e != cudaSuccess) return e;
    gdn_chunked_kernel<C, SPLIT><<<grid, GC_THREADS, bytes, s>>>(k);
    return cudaSuccess;
}

df_status cu_gdn_chunked(df_backend *be, const df_gdn_args *args) {
    static const bool enabled = env_flag("DFLASH_CUDA_GDN_CHUNKED", true);
    static const bool forced = getenv("DFLASH_CUDA_GDN_CHUNKED") && env_flag("DFLASH_CUDA_GDN_CHUNKED", false);
    static const bool split = !env_flag("DFLASH_CUDA_GDN_TF32", false);
    DF_TRY(cu_gdn_check("gdn_chunked", args));
    if (!enabled || args->v.n_tok < GC_MIN_TOK) return cu_gdn_recurrent(be, args);
    /* Where the recurrent kernel has its fixed-shape form (key heads of 64 / 128) it is the
     * faster one (H100, 27B layer: 608 against 799 us at 1,024 tokens, 2,419 against 3,161 at
     * 4,096): one pass over the tokens with the state in registers beats the chunks' extra
     * arithmetic. DFLASH_CUDA_GDN_CHUNKED=1 keeps the chunked form for every shape. */
    if (!forced && cu_gdn_recurrent_fixed(args->k.dim)) return cu_gdn_recurrent(be, args);
    if (args->state_in || args->state_save) {
        /* the rollback's starting-state arguments (never set by a prefill): plain copies here */
        cu_backend *cb = cu_impl(be);
        const size_t bytes = (size_t)(args->v.n_head * args->k.dim * args->v.dim) * sizeof(float);
        const float *from = args->state_in ? args->state_in : args->state;
        if (args->state_save && args->state_save != from &&
            cudaMemcpyAsync(args->state_save, from, bytes, cudaMemcpyDeviceToDevice, cb->stream) != cudaSuccess)
            return cu_fail(cudaGetLastError(), "gdn_chunked", "cudaMemcpyAsync");
        if (from != args->state &&
            cudaMemcpyAsync(args->state, from, bytes, cudaMemcpyDeviceToDevice, cb->stream) != cudaSuccess)
            return cu_fail(cudaGetLastError(), "gdn_chunked", "cudaMemcpyAsync");
    }
    cu_backend *cb = cu_impl(be);
    const int dkp = (int)((args->k.dim + 15) / 16 * 16);
    const int C = dkp <= 128 ? 64 : 32;
    const gc_layout lay = gc_make_layout(C, dkp);
    const size_t bytes = (size_t)lay.total * sizeof(float);
    int optin = 0;
    if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, cb->device) != cudaSuccess ||
        (size_t)optin < bytes) {
        cudaGetLastError();
        return cu_gdn_recurrent(be, args);
    }
    DF_TRY(cu_enter(cb, "gdn_chunked"));
    const df_gdn_args *a = args;
    gc_args k;
    k.p = cu_gdn_args_of(a);
    k.lay = lay;
    k.vec = 1;
    const df_heads *views[3] = {&a->q, &a->k, &a->v};
    for (int i = 0; i < 3; i++)
        if ((uintptr_t)views[i]->data % 16 || views[i]->tok_stride % 4 || views[i]->head_stride % 4 || views[i]->dim % 4)
            k.vec = 0;
    const dim3 grid(cu_blocks(a->v.dim, GC_BV), (unsigned)a->v.n_head);
    cudaError_t e;
    if (C == 64) e = split ? gc_launch<64, true>(k, grid, bytes, cb->stream) : gc_launch<64, false>(k, grid, bytes, cb->stream);
    else e = split ? gc_launch<32, true>(k, grid, bytes, cb->stream) : gc_launch<32, false>(k, grid, bytes, cb->stream);
    if (e != cudaSuccess) return cu_fail(e, "gdn_chunked", "cudaFuncSetAttribute");
    return cu_check_launch(cb, "gdn_chunked");
}
