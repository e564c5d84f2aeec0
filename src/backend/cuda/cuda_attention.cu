/* Softmax attention of a few query tokens over a KV cache (f16 or f32), flash-decoding style,
 * for both the target's causal attention (linear cache) and the drafter's windowed attention
 * (ring cache): contracts in cpu_ops.h (df_cpu_attention) and cpu_draft_ops.h.
 *
 * Query token t at position p sees positions [lo, hi): lo = max(0, p - window + 1) with a
 * window (else 0), hi = p + 1 when causal (else kv_end); position p is cache row p % rows.
 * The range is cut into splits of `chunk` positions, chunk a function of the range length
 * alone (at least ATTN_CHUNK_MIN, at most ATTN_MAX_SPLIT splits). One block of ATTN_WARPS
 * warps takes one (split, token) and one query head, or (calls of several tokens) all the
 * query heads of one KV head (attn_kernel): its warps walk the split's rows in tiles of
 * ATTN_TILE, each row's score a warp-wide dot product, with a running maximum and sum
 * (online softmax); the warps' results merge in shared memory in warp order. A range that
 * fits one split is finished in place; otherwise each split leaves (max, sum, unnormalised
 * output) in scratch and a second kernel merges the splits in order.
 *
 * Batch invariance: the splits, the rows each warp visits and every merge order depend only
 * on the token's position range, so a token attends the same way in a decode step and inside
 * a verify. Calls of more than DF_CUDA_SMALL_BATCH tokens (prefill) use one split per token:
 * enough blocks already, and no scratch proportional to the prompt.
 *
 * Positions from a buffer: when the target's attention is given its tokens' positions in
 * device memory (df_attn_args.pos), the kernels read the first position there, the KV write
 * too, and the grid is sized for the longest range the cache can hold (blocks past a token's
 * splits return at once). Nothing in the launch then depends on the step, so a CUDA graph
 * recorded at one position replays at any other (cuda_graph.cu). */
#include "backend/cuda/cuda_internal.h"

/* Splits of at least ATTN_CHUNK_MIN positions, at most ATTN_MAX_SPLIT of them: a decode step
 * over a few hundred rows still spreads over several blocks per head (a block is latency-
 * bound: each warp waits one memory round trip per tile). */
enum { ATTN_WARPS = 4, ATTN_TILE = 4, ATTN_MAX_SPLIT = 16, ATTN_CHUNK_MIN = 64, ATTN_MAX_DIM = 512 };

struct attn_params {
    cu_heads q, out, gate;
    int has_gate;
    const void *kc, *vc;
    int f16;
    long long ring;       /* rows of the cache */
    int n_kv_head, dim, group;
    long long q_pos0, kv_end, window;
    int causal;
    float scale;
    int max_split;        /* 1: no splitting */
    float *part;          /* [n_tok][n_head][max_split][dim + 2] */
    const int32_t *pos_dev; /* non-NULL: q_pos0 = pos_dev[0] (and kv_end = q_pos0 + n_tok) */
    int vec;              /* dim % E == 0: rows can be loaded E elements at a time */
};

__device__ __forceinline__ void pos_range(const attn_params &a, int t, long long *lo, long long *hi) {
    const long long p0 = a.pos_dev ? (long long)a.pos_dev[0] : a.q_pos0;
    const long long p = p0 + t;
    *lo = a.window > 0 ? max(0LL, p - a.window + 1) : 0;
    *hi = a.causal ? p + 1 : a.pos_dev ? p0 + a.q.n_tok : a.kv_end;
}

__host__ __device__ __forceinline__ long long split_chunk(long long len, int max_split) {
    if (max_split <= 1) return len;
    long long c = (len + max_split - 1) / max_split;
    return c < (long long)ATTN_CHUNK_MIN ? (long long)ATTN_CHUNK_MIN : c;
}

/* E elements of a cache row starting at element e0 (zeros past dim). */
template <int E>
__device__ __forceinline__ void load_row(const attn_params &a, const void *base, long long off, int e0, float v[E]) {
    if (a.f16) {
        const __half *p = (const __half *)base + off + e0;
        if (a.vec && E == 8 && e0 + E <= a.dim) {
            const uint4 u = *(const uint4 *)p;
            const __half2 *h2 = (const __half2 *)&u;
#pragma unroll
            for (int i = 0; i < E / 2; i++) {
                const float2 f = __half22float2(h2[i]);
                v[2 * i] = f.x;
                v[2 * i + 1] = f.y;
            }
            return;
        }
#pragma unroll
        for (int i = 0; i < E; i++) v[i] = e0 + i < a.dim ? __half2float(p[i]) : 0.0f;
    } else {
        const float *p = (const float *)base + off + e0;
        if (a.vec && E >= 4 && e0 + E <= a.dim) {
#pragma unroll
            for (int i = 0; i < E; i += 4) {
                const float4 f = *(const float4 *)(p + i);
                v[i] = f.x;
                v[i + 1] = f.y;
                v[i + 2] = f.z;
                v[i + 3] = f.w;
            }
            return;
        }
#pragma unroll
        for (int i = 0; i < E; i++) v[i] = e0 + i < a.dim ? p[i] : 0.0f;
    }
}

/* One block takes one (split, token) and G query heads h0 .. h0+G-1 of one KV head (h0 =
 * blockIdx.y * G): its warps walk the split's rows in tiles of ATTN_TILE (warp w: tiles w,
 * w + ATTN_WARPS, ...), load each tile's K and V rows once, before any score is known (one
 * memory round trip per tile instead of two), and use them for all G heads: per head a
 * warp-wide dot product per row, a running maximum and sum (online softmax). Then each head's
 * warps merge in shared memory in warp order; a range of one split is finished in place,
 * otherwise (max, sum, unnormalised output) go to scratch for attn_merge_kernel.
 *
 * G = 1 is a block per query head (a decode step: G times as many blocks spread a few hundred
 * rows over more of the GPU); G = the call's group reads each K/V tile once for all the
 * heads that share it, where G = 1 read it G times (a 27B verify, 24 query / 4 KV heads at
 * 16 tokens: 54 -> 51 us a layer at 300 rows, 148 -> 97 at 1,000, 433 -> 257 at 3,300).
 * Each head's operations and their order do not depend on G, so a head's output is the same
 * bits either way (cuda_ops_check compares calls of n tokens, grouped, with n one-token
 * calls, G = 1). */
template <int E, int G>
__global__ void __launch_bounds__(ATTN_WARPS * 32) attn_kernel(attn_params a) {
    __shared__ float sm_m[G][ATTN_WARPS], sm_l[G][ATTN_WARPS];
    __shared__ float sm_o[ATTN_WARPS][ATTN_MAX_DIM];
    const int s = blockIdx.x, h0 = blockIdx.y * G, t = blockIdx.z, kvh = h0 / a.group;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    long long lo, hi;
    pos_range(a, t, &lo, &hi);
    const long long len = hi - lo, chunk = split_chunk(len, a.max_split);
    const int nsplit = (int)((len + chunk - 1) / chunk);
    if (s >= nsplit) return;
    const long long r0 = lo + (long long)s * chunk, r1 = min(hi, r0 + chunk);

    const int e0 = lane * E;
    float q[G][E], o[G][E], m[G], l[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
        const float *qp = cu_head_ptr(a.q, t, h0 + g);
#pragma unroll
        for (int i = 0; i < E; i++) {
            q[g][i] = e0 + i < a.dim ? qp[e0 + i] : 0.0f;
            o[g][i] = 0.0f;
        }
        m[g] = -INFINITY;
        l[g] = 0.0f;
    }
    const long long row_stride = (long long)a.n_kv_head * a.dim;
    const long long head_off = (long long)kvh * a.dim;

    for (long long p0 = r0 + (long long)warp * ATTN_TILE; p0 < r1; p0 += (long long)ATTN_WARPS * ATTN_TILE) {
        float kt[ATTN_TILE][E], vt[ATTN_TILE][E];
#pragma unroll
        for (int j = 0; j < ATTN_TILE; j++) {
            if (p0 + j < r1) {
                const long long off = ((p0 + j) % a.ring) * row_stride + head_off;
                load_row<E>(a, a.kc, off, e0, kt[j]);
                load_row<E>(a, a.vc, off, e0, vt[j]);
            } else {
#pragma unroll
                for (int i = 0; i < E; i++) kt[j][i] = vt[j][i] = 0.0f;
            }
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
            float sc[ATTN_TILE];
#pragma unroll
            for (int j = 0; j < ATTN_TILE; j++) {
                float part = 0.0f;
#pragma unroll
                for (int i = 0; i < E; i++) part = fmaf(q[g][i], kt[j][i], part);
                sc[j] = part;
            }
#pragma unroll
            for (int j = 0; j < ATTN_TILE; j++) sc[j] = __shfl_sync(0xffffffffu, cu_warp_sum(sc[j]), 0) * a.scale;
            float mt = -INFINITY;
#pragma unroll
            for (int j = 0; j < ATTN_TILE; j++)
                if (p0 + j < r1) mt = fmaxf(mt, sc[j]);
            if (mt > m[g]) {
                const float corr = expf(m[g] - mt);
#pragma unroll
                for (int i = 0; i < E; i++) o[g][i] *= corr;
                l[g] *= corr;
                m[g] = mt;
            }
#pragma unroll
            for (int j = 0; j < ATTN_TILE; j++) {
                if (p0 + j >= r1) break;
                const float pw = expf(sc[j] - m[g]);
                l[g] += pw;
#pragma unroll
                for (int i = 0; i < E; i++) o[g][i] = fmaf(pw, vt[j][i], o[g][i]);
            }
        }
    }

    if (lane == 0) {
#pragma unroll
        for (int g = 0; g < G; g++) {
            sm_m[g][warp] = m[g];
            sm_l[g][warp] = l[g];
        }
    }
    /* each head's warps merged in warp order, one head at a time through sm_o */
#pragma unroll
    for (int g = 0; g < G; g++) {
        const int h = h0 + g;
#pragma unroll
        for (int i = 0; i < E; i++)
            if (e0 + i < a.dim) sm_o[warp][e0 + i] = o[g][i];
        __syncthreads();
        float M = -INFINITY;
        for (int w = 0; w < ATTN_WARPS; w++) M = fmaxf(M, sm_m[g][w]);
        float L = 0.0f, f[ATTN_WARPS];
        for (int w = 0; w < ATTN_WARPS; w++) {
            f[w] = sm_l[g][w] > 0.0f ? expf(sm_m[g][w] - M) : 0.0f;
            L += sm_l[g][w] * f[w];
        }
        if (nsplit == 1) {
            const float inv = 1.0f / L;
            float *out = cu_head_ptr(a.out, t, h);
            const float *gt = a.has_gate ? cu_head_ptr(a.gate, t, h) : NULL;
            for (int e = threadIdx.x; e < a.dim; e += ATTN_WARPS * 32) {
                float acc = 0.0f;
                for (int w = 0; w < ATTN_WARPS; w++) acc += sm_o[w][e] * f[w];
                float y = acc * inv;
                if (gt) y *= cu_sigmoid(gt[e]);
                out[e] = y;
            }
        } else {
            float *pp = a.part + (((long long)t * a.q.n_head + h) * a.max_split + s) * (a.dim + 2);
            if (threadIdx.x == 0) {
                pp[0] = M;
                pp[1] = L;
            }
            for (int e = threadIdx.x; e < a.dim; e += ATTN_WARPS * 32) {
                float acc = 0.0f;
                for (int w = 0; w < ATTN_WARPS; w++) acc += sm_o[w][e] * f[w];
                pp[2 + e] = acc;
            }
        }
        __syncthreads(); /* sm_o is the next head's */
    }
}

/* Merges the splits of tokens whose range needed more than one, in split order. */
__global__ void attn_merge_kernel(attn_params a) {
    const int h = blockIdx.x, t = blockIdx.y;
    long long lo, hi;
    pos_range(a, t, &lo, &hi);
    const long long len = hi - lo, chunk = split_chunk(len, a.max_split);
    const int nsplit = (int)((len + chunk - 1) / chunk);
    if (nsplit <= 1) return;
    const float *pp = a.part + ((long long)t * a.q.n_head + h) * a.max_split * (a.dim + 2);
    float M = -INFINITY;
    for (int s = 0; s < nsplit; s++) M = fmaxf(M, pp[(long long)s * (a.dim + 2)]);
    float L = 0.0f;
    for (int s = 0; s < nsplit; s++) {
        const float *q = pp + (long long)s * (a.dim + 2);
        L += q[1] * expf(q[0] - M);
    }
    const float inv = 1.0f / L;
    float *out = cu_head_ptr(a.out, t, h);
    const float *g = a.has_gate ? cu_head_ptr(a.gate, t, h) : NULL;
    for (int e = threadIdx.x; e < a.dim; e += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < nsplit; s++) {
            const float *q = pp + (long long)s * (a.dim + 2);
            acc += q[2 + e] * expf(q[0] - M);
        }
        float y = acc * inv;
        if (g) y *= cu_sigmoid(g[e]);
        out[e] = y;
    }
}

static int elems_per_lane(int64_t dim) {
    const int64_t e = (dim + 31) / 32;
    return e <= 1 ? 1 : e <= 2 ? 2 : e <= 4 ? 4 : e <= 8 ? 8 : 16;
}

static df_status check_cache(const char *op, const df_kv_cache *c) {
    if (!c || !c->k || !c->v) return df_fail(DF_ERR_INVALID, "%s: cache or its K/V buffer is NULL", op);
    if (c->type != DF_KV_F16 && c->type != DF_KV_F32)
        return df_fail(DF_ERR_INVALID, "%s: unknown cache type %d", op, (int)c->type);
    if (c->n_ctx <= 0 || c->n_kv_head <= 0 || c->head_dim <= 0 || c->n_ctx > ((int64_t)1 << 31) ||
        c->n_kv_head > 4096 || c->head_dim > 65536)
        return df_fail(DF_ERR_INVALID, "%s: cache shape [%lld][%lld][%lld] is not valid", op,
                       (long long)c->n_ctx, (long long)c->n_kv_head, (long long)c->head_dim);
    if (c->head_dim > ATTN_MAX_DIM)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: head dim %lld; the CUDA kernel takes at most %d", op,
                       (long long)c->head_dim, ATTN_MAX_DIM);
    return DF_OK;
}

static bool same_shape(const df_heads *a, const df_heads *b) {
    return a->n_tok == b->n_tok && a->n_head == b->n_head && a->dim == b->dim;
}

static df_status check_q_out(const char *op, const df_heads *q, const df_heads *out, const df_kv_cache *c) {
    DF_TRY(cu_check_heads(op, "q", q));
    DF_TRY(cu_check_heads(op, "out", out));
    if (!same_shape(q, out))
        return df_fail(DF_ERR_MISMATCH, "%s: out [%lld][%lld][%lld] does not match q [%lld][%lld][%lld]", op,
                       (long long)out->n_tok, (long long)out->n_head, (long long)out->dim,
                       (long long)q->n_tok, (long long)q->n_head, (long long)q->dim);
    if (q->dim != c->head_dim)
        return df_fail(DF_ERR_MISMATCH, "%s: q head dim %lld, cache head dim %lld", op, (long long)q->dim,
                       (long long)c->head_dim);
    if (q->n_head % c->n_kv_head)
        return df_fail(DF_ERR_MISMATCH, "%s: %lld query heads is not a multiple of %lld KV heads", op,
                       (long long)q->n_head, (long long)c->n_kv_head);
    if (q->n_tok > 65535 || q->n_head > 65535)
        return df_fail(DF_ERR_INVALID, "%s: %lld tokens x %lld heads exceed one launch", op,
                       (long long)q->n_tok, (long long)q->n_head);
    return DF_OK;
}

static void launch_per_head(cu_backend *cb, const attn_params &a, int E, dim3 grid) {
    switch (E) {
    case 1: attn_kernel<1, 1><<<grid, ATTN_WARPS * 32, 0, cb->stream>>>(a); break;
    case 2: attn_kernel<2, 1><<<grid, ATTN_WARPS * 32, 0, cb->stream>>>(a); break;
    case 4: attn_kernel<4, 1><<<grid, ATTN_WARPS * 32, 0, cb->stream>>>(a); break;
    case 8: attn_kernel<8, 1><<<grid, ATTN_WARPS * 32, 0, cb->stream>>>(a); break;
    default: attn_kernel<16, 1><<<grid, ATTN_WARPS * 32, 0, cb->stream>>>(a); break;
    }
}

template <int E>
static bool launch_group_of(cu_backend *cb, const attn_params &a, dim3 grid) {
    switch (a.group) {
    case 2: attn_kernel<E, 2><<<grid, ATTN_WARPS * 32, 0, cb->stream>>>(a); return true;
    case 4: attn_kernel<E, 4><<<grid, ATTN_WARPS * 32, 0, cb->stream>>>(a); return true;
    case 6: attn_kernel<E, 6><<<grid, ATTN_WARPS * 32, 0, cb->stream>>>(a); return true;
    case 8: attn_kernel<E, 8><<<grid, ATTN_WARPS * 32, 0, cb->stream>>>(a); return true;
    default: return false;
    }
}

/* Calls of several tokens whose head size and group have a grouped kernel (head dims of 64,
 * 128 and 256; 2, 4, 6 or 8 query heads per KV head: the Qwen3.5 / 3.6 shapes); false: the
 * caller launches attn_kernel with G = 1. One token keeps G = 1, whose G times as many blocks
 * spread a decode step's few hundred rows over more of the GPU. Measured (H100, 27B shape,
 * 16 tokens): 53 -> 51 us at 300 rows, 148 -> 97 at 1,000, 433 -> 257 at 3,300; 4 tokens
 * lose (18 -> 23 us at 300 rows), but a recorded verify cannot pick by the position it will
 * replay at, and the 27B verify at 256 rows of context came out even (a 0.9% slower verify,
 * a 5% faster drafter step). DFLASH_CUDA_ATTN_GROUP=0 turns this off (timings). */
static bool launch_grouped(cu_backend *cb, const attn_params &a, int E, int grid_splits, int64_t n_tok) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("DFLASH_CUDA_ATTN_GROUP");
        on = !(e && *e && atoi(e) == 0);
    }
    if (!on || a.group < 2) return false;
    dim3 grid((unsigned)grid_splits, (unsigned)a.n_kv_head, (unsigned)n_tok);
    switch (E) {
    case 2: return launch_group_of<2>(cb, a, grid);
    case 4: return launch_group_of<4>(cb, a, grid);
    case 8: return launch_group_of<8>(cb, a, grid);
    default: return false;
    }
}

/* Fills the kernel parameters and launches (plus the merge when a range needs splits). */
static df_status run_attention(cu_backend *cb, const char *op, const df_heads *q, const df_heads *gate,
                               const df_kv_cache *c, int64_t q_pos0, const int32_t *pos_dev, int64_t kv_end,
                               bool causal, int64_t window, float scale, const df_heads *out) {
    attn_params a;
    memset(&a, 0, sizeof a);
    a.q = cu_heads_of(q);
    a.out = cu_heads_of(out);
    if (gate) {
        a.gate = cu_heads_of(gate);
        a.has_gate = 1;
    }
    a.kc = c->k;
    a.vc = c->v;
    a.f16 = c->type == DF_KV_F16;
    a.ring = c->n_ctx;
    a.n_kv_head = (int)c->n_kv_head;
    a.dim = (int)c->head_dim;
    a.group = (int)(q->n_head / c->n_kv_head);
    a.q_pos0 = q_pos0;
    a.kv_end = kv_end;
    a.window = window;
    a.causal = causal;
    a.scale = scale > 0.0f ? scale : (float)(1.0 / sqrt((double)c->head_dim));
    const int E = elems_per_lane(c->head_dim);
    a.vec = c->head_dim % E == 0;
    a.max_split = q->n_tok <= DF_CUDA_SMALL_BATCH ? ATTN_MAX_SPLIT : 1;
    a.pos_dev = pos_dev;

    /* the most splits any token of the call needs: its longest range is the first or last;
     * with positions in a buffer, the longest range the cache holds */
    int grid_splits = 1;
    if (pos_dev) {
        /* a range of len rows has at most min(max_split, ceil(len / ATTN_CHUNK_MIN)) splits */
        const int64_t most = (c->n_ctx + ATTN_CHUNK_MIN - 1) / ATTN_CHUNK_MIN;
        grid_splits = (int)(most < a.max_split ? most : a.max_split);
    }
    for (int end = 0; end < 2 && !pos_dev; end++) {
        const int64_t p = q_pos0 + (end ? q->n_tok - 1 : 0);
        const int64_t lo = window > 0 ? (p - window + 1 > 0 ? p - window + 1 : 0) : 0;
        const int64_t len = (causal ? p + 1 : kv_end) - lo;
        const int64_t chunk = split_chunk(len, a.max_split);
        const int ns = (int)((len + chunk - 1) / chunk);
        if (ns > grid_splits) grid_splits = ns;
    }
    if (grid_splits > 1) {
        void *buf;
        const size_t bytes = (size_t)q->n_tok * (size_t)q->n_head * ATTN_MAX_SPLIT * (size_t)(a.dim + 2) * sizeof(float);
        DF_TRY(cu_scratch(cb, bytes, op, &buf));
        a.part = (float *)buf;
    }
    if (q->n_tok < 2 || !launch_grouped(cb, a, E, grid_splits, q->n_tok))
        launch_per_head(cb, a, E, dim3((unsigned)grid_splits, (unsigned)q->n_head, (unsigned)q->n_tok));
    DF_TRY(cu_check_launch(cb, op));
    if (grid_splits > 1) {
        dim3 mg((unsigned)q->n_head, (unsigned)q->n_tok);
        attn_merge_kernel<<<mg, 128, 0, cb->stream>>>(a);
        DF_TRY(cu_check_launch(cb, op));
    }
    return DF_OK;
}

/* ---- writing rows ---- */

/* Row of token t: (row0 + t) % ring, row0 read from row0_dev when given. A linear cache's
 * rows never reach the ring's end (the host checks), so the modulo only wraps ring writes. */
__global__ void kv_write_kernel(void *kc, void *vc, int f16, cu_heads k, cu_heads v, long long row0,
                                const int32_t *row0_dev, long long ring, int n_kv_head) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (row0_dev) row0 = row0_dev[0];
    const int d = k.dim;
    if (i >= (long long)k.n_tok * k.n_head * d) return;
    const int e = (int)(i % d), h = (int)((i / d) % k.n_head), t = (int)(i / ((long long)d * k.n_head));
    const long long off = (((row0 + t) % ring) * n_kv_head + h) * d + e;
    const float kx = cu_head_ptr(k, t, h)[e], vx = cu_head_ptr(v, t, h)[e];
    if (f16) {
        ((__half *)kc)[off] = __float2half_rn(kx);
        ((__half *)vc)[off] = __float2half_rn(vx);
    } else {
        ((float *)kc)[off] = kx;
        ((float *)vc)[off] = vx;
    }
}

static df_status kv_write(cu_backend *cb, df_kv_cache *cache, const df_heads *k_new, const df_heads *v_new,
                          int64_t row0, const int32_t *row0_dev) {
    DF_TRY(cu_check_heads("kv_write", "k_new", k_new));
    DF_TRY(cu_check_heads("kv_write", "v_new", v_new));
    if (k_new->n_head != cache->n_kv_head || k_new->dim != cache->head_dim || v_new->n_head != cache->n_kv_head ||
        v_new->dim != cache->head_dim || v_new->n_tok != k_new->n_tok)
        return df_fail(DF_ERR_MISMATCH, "kv_write: k_new [%lld][%lld][%lld] / v_new [%lld][%lld][%lld] do not "
                       "match the cache's %lld heads of %lld",
                       (long long)k_new->n_tok, (long long)k_new->n_head, (long long)k_new->dim,
                       (long long)v_new->n_tok, (long long)v_new->n_head, (long long)v_new->dim,
                       (long long)cache->n_kv_head, (long long)cache->head_dim);
    if (row0_dev ? k_new->n_tok > cache->n_ctx : (row0 < 0 || row0 > cache->n_ctx - k_new->n_tok))
        return df_fail(DF_ERR_INVALID, "kv_write: rows %lld..%lld do not fit a cache of %lld rows",
                       (long long)row0, (long long)(row0 + k_new->n_tok - 1), (long long)cache->n_ctx);
    DF_TRY(cu_enter(cb, "kv_write"));
    const int64_t n = k_new->n_tok * k_new->n_head * k_new->dim;
    kv_write_kernel<<<cu_blocks(n, 256), 256, 0, cb->stream>>>(cache->k, cache->v, cache->type == DF_KV_F16,
                                                               cu_heads_of(k_new), cu_heads_of(v_new), row0,
                                                               row0_dev, (long long)cache->n_ctx,
                                                               (int)cache->n_kv_head);
    return cu_check_launch(cb, "kv_write");
}

df_status cu_kv_write(df_backend *be, df_kv_cache *cache, const df_heads *k_new, const df_heads *v_new,
                      int64_t row0) {
    DF_TRY(check_cache("kv_write", cache));
    return kv_write(cu_impl(be), cache, k_new, v_new, row0, NULL);
}

df_status cu_kv_write_ring(df_backend *be, df_kv_cache *cache, const df_heads *k_new, const df_heads *v_new,
                           const int32_t *pos) {
    DF_TRY(check_cache("kv_write_ring", cache));
    if (!pos) return df_fail(DF_ERR_INVALID, "kv_write_ring: pos is NULL");
    return kv_write(cu_impl(be), cache, k_new, v_new, 0, pos);
}

/* ---- the two ops ---- */

df_status cu_attention(df_backend *be, const df_attn_args *args) {
    cu_backend *cb = cu_impl(be);
    static const char *op = "attention";
    if (!args) return df_fail(DF_ERR_INVALID, "attention: args is NULL");
    const df_attn_args *a = args;
    DF_TRY(check_cache(op, a->cache));
    DF_TRY(check_q_out(op, &a->q, &a->out, a->cache));
    const df_kv_cache *kc = a->cache;
    if (a->gate) {
        DF_TRY(cu_check_heads(op, "gate", a->gate));
        if (!same_shape(a->gate, &a->q)) return df_fail(DF_ERR_MISMATCH, "attention: gate shape does not match q");
    }
    if (a->pos0 < 0 || a->pos0 > kc->n_ctx - a->q.n_tok)
        return df_fail(DF_ERR_INVALID, "attention: tokens at rows %lld..%lld do not fit a cache of %lld rows",
                       (long long)a->pos0, (long long)(a->pos0 + a->q.n_tok - 1), (long long)kc->n_ctx);
    if (!(a->scale >= 0.0f) || !isfinite(a->scale))
        return df_fail(DF_ERR_INVALID, "attention: scale %g is not a finite number >= 0", (double)a->scale);
    if ((a->k_new == NULL) != (a->v_new == NULL))
        return df_fail(DF_ERR_INVALID, "attention: k_new and v_new must be given together");
    DF_TRY(cu_enter(cb, op));
    if (a->k_new) {
        if (a->k_new->n_tok != a->q.n_tok)
            return df_fail(DF_ERR_MISMATCH, "attention: %lld new K rows for %lld query tokens",
                           (long long)a->k_new->n_tok, (long long)a->q.n_tok);
    }
    /* Positions from the buffer only for the batch-invariant path (prefill keeps one split per
     * token and is never recorded). The caller promises pos[0] == pos0 (device memory: not
     * checked here; the host checks above hold for pos0). */
    const int32_t *pos_dev = a->q.n_tok <= DF_CUDA_SMALL_BATCH ? a->pos : NULL;
    if (a->k_new) DF_TRY(kv_write(cb, a->cache, a->k_new, a->v_new, a->pos0, pos_dev));
    /* Rows are positions here (a linear cache never wraps): the window form with no window. */
    return run_attention(cb, op, &a->q, a->gate, kc, a->pos0, pos_dev, a->pos0 + a->q.n_tok, a->causal, 0,
                         a->scale, &a->out);
}

df_status cu_attention_window(df_backend *be, const df_window_attn_args *args) {
    cu_backend *cb = cu_impl(be);
    static const char *op = "attention_window";
    if (!args) return df_fail(DF_ERR_INVALID, "%s: args is NULL", op);
    const df_window_attn_args *a = args;
    DF_TRY(check_cache(op, a->cache));
    DF_TRY(check_q_out(op, &a->q, &a->out, a->cache));
    const df_kv_cache *c = a->cache;
    if (a->window < 0 || a->window > ((int64_t)1 << 31))
        return df_fail(DF_ERR_INVALID, "%s: window %lld is not in 0..2^31", op, (long long)a->window);
    if (a->q_pos0 < 0 || a->kv_end > ((int64_t)1 << 40) || a->q_pos0 > a->kv_end - a->q.n_tok)
        return df_fail(DF_ERR_INVALID, "%s: queries at positions %lld..%lld are not all below the written end %lld",
                       op, (long long)a->q_pos0, (long long)(a->q_pos0 + a->q.n_tok - 1), (long long)a->kv_end);
    if (!(a->scale >= 0.0f) || !isfinite(a->scale))
        return df_fail(DF_ERR_INVALID, "%s: scale %g is not a finite number >= 0", op, (double)a->scale);
    const int64_t lo = a->window > 0 ? (a->q_pos0 - a->window + 1 > 0 ? a->q_pos0 - a->window + 1 : 0) : 0;
    if (lo < a->kv_end - c->n_ctx)
        return df_fail(DF_ERR_INVALID, "%s: the query at position %lld needs position %lld, but a ring of %lld "
                       "rows written up to %lld holds only %lld..", op, (long long)a->q_pos0, (long long)lo,
                       (long long)c->n_ctx, (long long)a->kv_end, (long long)(a->kv_end - c->n_ctx));
    DF_TRY(cu_enter(cb, op));
    /* Positions from the buffer (the caller promises pos[0] == q_pos0, kv_end == q_pos0 +
     * n_tok) on the batch-invariant path, as in cu_attention. */
    const int32_t *pos_dev = a->q.n_tok <= DF_CUDA_SMALL_BATCH ? a->pos : NULL;
    return run_attention(cb, op, &a->q, NULL, c, a->q_pos0, pos_dev, a->kv_end, a->causal, a->window, a->scale,
                         &a->out);
}
