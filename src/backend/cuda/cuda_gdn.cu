/* The Gated DeltaNet gates and its recurrence (contract: df_cpu_gdn_recurrent in cpu_ops.h).
 *
 * Recurrence, per value head with state S [d_k][d_v], one token at a time:
 *   kv = S^T k;  delta = beta (v - decay kv);  S = decay S + k delta^T;  o = (S^T q) q_scale
 * Columns of S are independent, so a block owns 32 columns of one head and keeps them in
 * registers for the whole call: thread (column c, row group g) holds S[32g .. 32g+31][c].
 * The two sums over rows (kv and o) add each row group's partial sum in shared memory, in a
 * fixed order. The state is read from device memory once per call and written once at the
 * end; during a verify each token's state goes straight from registers into the capture
 * buffer (f32 or f16). Tokens are processed in order and each token's arithmetic does not
 * depend on how many follow it, so the op is batch-invariant. d_k <= 256. */
#include "backend/cuda/cuda_internal.h"

/* Thread (column c, row group g) holds rows 32g .. 32g+31 of column c. The inputs of up to
 * GDN_CHUNK tokens (k, q, the block's v columns, decay, beta) are first staged in shared
 * memory by the whole block in one pass, so the token loop waits on no device-memory load. */
enum { GDN_ROWS = 32, GDN_MAX_GROUPS = 8, GDN_CHUNK = 16 };

/* DK: the key head size when the template fixes it (64, 128: every row group full, so no
 * per-row predicates and no run-time index arithmetic in the token loop), 0 for any d_k <=
 * 256 (the last group may be partial). CAP: the per-token capture is compiled in. The
 * arithmetic per state element and the order of every sum are the same in every instance
 * (row i into partial sum i % 4, the groups added in order), and the op picks an instance
 * from the shape alone, so a verify equals its decode steps bit for bit. With d_k in the
 * template the 27B layer's 16-token call went 23.9 -> 11.5 us (ncu: the run-time form spent
 * ~600 instructions per token per warp around ~140 float operations). The block's threads
 * are exactly its row groups (blockDim.x = 32 x groups >= d_k). */
template <int DK, bool CAP>
__global__ void __launch_bounds__(DK ? DK : GDN_ROWS * GDN_MAX_GROUPS) gdn_recurrent_kernel(cu_gdn_args a) {
    constexpr int DKMAX = DK ? DK : GDN_ROWS * GDN_MAX_GROUPS, NGMAX = DKMAX / GDN_ROWS;
    __shared__ float red_kv[NGMAX][32];
    __shared__ float red_o[NGMAX][32];
    __shared__ __align__(16) float sk[GDN_CHUNK][DKMAX];
    __shared__ __align__(16) float sq[GDN_CHUNK][DKMAX];
    __shared__ float sv[GDN_CHUNK][32];
    __shared__ float sdecay[GDN_CHUNK], sbeta[GDN_CHUNK];
    const int lane = threadIdx.x % 32, grp = threadIdx.x / 32;
    const int dk = DK ? DK : a.k.dim, ng = DK ? DK / GDN_ROWS : (int)blockDim.x / 32;
    const int rows = DK ? GDN_ROWS : min(GDN_ROWS, dk - grp * GDN_ROWS);
    const int h = blockIdx.y, col0 = blockIdx.x * 32, col = col0 + lane;
    const int dv = a.v.dim, nv = a.v.n_head, nk = a.k.n_head;
    const int kh = a.tiled ? h % nk : h / (nv / nk);
    const bool live = col < dv;
    const long long hs = (long long)dk * dv;
    const long long own = (long long)h * hs + (long long)grp * GDN_ROWS * dv + col; /* this thread's column */
    float *S_g = a.state + own;
    const float *S_in = (a.state_in ? a.state_in : a.state) + own;

    float S[GDN_ROWS];
#pragma unroll
    for (int i = 0; i < GDN_ROWS; i++) S[i] = live && i < rows ? S_in[(long long)i * dv] : 0.0f;
    if (a.state_save && live) {
#pragma unroll
        for (int i = 0; i < GDN_ROWS; i++)
            if (i < rows) a.state_save[own + (long long)i * dv] = S[i];
    }

    for (int c0 = 0; c0 < a.v.n_tok; c0 += GDN_CHUNK) {
        const int nc = min(GDN_CHUNK, a.v.n_tok - c0);
        __syncthreads(); /* the previous chunk's inputs are no longer read */
        if ((int)threadIdx.x < dk)
            for (int t = 0; t < nc; t++) {
                sk[t][threadIdx.x] = cu_head_ptr(a.k, c0 + t, kh)[threadIdx.x];
                sq[t][threadIdx.x] = cu_head_ptr(a.q, c0 + t, kh)[threadIdx.x];
            }
        for (int i = threadIdx.x; i < nc * 32; i += blockDim.x) {
            const int t = i / 32, c = col0 + i % 32;
            sv[t][i % 32] = c < dv ? cu_head_ptr(a.v, c0 + t, h)[c] : 0.0f;
        }
        if ((int)threadIdx.x < nc) {
            sdecay[threadIdx.x] = expf(a.g[(long long)(c0 + threadIdx.x) * nv + h]);
            sbeta[threadIdx.x] = a.beta[(long long)(c0 + threadIdx.x) * nv + h];
        }
        __syncthreads();

        for (int tt = 0; tt < nc; tt++) {
            const float decay = sdecay[tt], beta = sbeta[tt];
            /* four rows at a time; rows past a partial group read staging they never use */
            const float4 *k4 = (const float4 *)&sk[tt][grp * GDN_ROWS];
            const float4 *q4 = (const float4 *)&sq[tt][grp * GDN_ROWS];
            /* Four partial sums (row i goes to sum i % 4): a chain of 8 dependent FMAs instead
             * of 32 on the token loop's critical path. */
            float p0 = 0.0f, p1 = 0.0f, p2 = 0.0f, p3 = 0.0f;
#pragma unroll
            for (int i = 0; i < GDN_ROWS; i += 4) {
                const float4 k = k4[i / 4];
                if (i < rows) p0 = fmaf(k.x, S[i], p0);
                if (i + 1 < rows) p1 = fmaf(k.y, S[i + 1], p1);
                if (i + 2 < rows) p2 = fmaf(k.z, S[i + 2], p2);
                if (i + 3 < rows) p3 = fmaf(k.w, S[i + 3], p3);
            }
            red_kv[grp][lane] = (p0 + p1) + (p2 + p3);
            __syncthreads();
            float kv = 0.0f;
#pragma unroll
            for (int g = 0; g < NGMAX; g++)
                if (g < ng) kv += red_kv[g][lane];

            const float delta = beta * (sv[tt][lane] - decay * kv);
            float o0 = 0.0f, o1 = 0.0f, o2 = 0.0f, o3 = 0.0f;
#pragma unroll
            for (int i = 0; i < GDN_ROWS; i += 4) {
                const float4 k = k4[i / 4], q = q4[i / 4];
                if (i < rows) {
                    S[i] = decay * S[i] + k.x * delta;
                    o0 = fmaf(q.x, S[i], o0);
                }
                if (i + 1 < rows) {
                    S[i + 1] = decay * S[i + 1] + k.y * delta;
                    o1 = fmaf(q.y, S[i + 1], o1);
                }
                if (i + 2 < rows) {
                    S[i + 2] = decay * S[i + 2] + k.z * delta;
                    o2 = fmaf(q.z, S[i + 2], o2);
                }
                if (i + 3 < rows) {
                    S[i + 3] = decay * S[i + 3] + k.w * delta;
                    o3 = fmaf(q.w, S[i + 3], o3);
                }
            }
            if (CAP && live) {
                const long long base = ((long long)(c0 + tt) * nv + h) * hs + (long long)grp * GDN_ROWS * dv + col;
                if (a.cap_f16) {
                    __half *c = (__half *)a.capture + base;
#pragma unroll
                    for (int i = 0; i < GDN_ROWS; i++)
                        if (i < rows) c[(long long)i * dv] = __float2half_rn(S[i]);
                } else {
                    float *c = (float *)a.capture + base;
#pragma unroll
                    for (int i = 0; i < GDN_ROWS; i++)
                        if (i < rows) c[(long long)i * dv] = S[i];
                }
            }
            red_o[grp][lane] = (o0 + o1) + (o2 + o3);
            __syncthreads();
            if (grp == 0 && live) {
                float o = 0.0f;
#pragma unroll
                for (int g = 0; g < NGMAX; g++)
                    if (g < ng) o += red_o[g][lane];
                cu_head_ptr(a.out, c0 + tt, h)[col] = o * a.q_scale;
            }
        }
    }

    if (live) {
#pragma unroll
        for (int i = 0; i < GDN_ROWS; i++)
            if (i < rows) S_g[(long long)i * dv] = S[i];
    }
}

/* Shared with cu_gdn_chunked (cuda_gdn_chunked.cu): the same checks for both entries. */
df_status cu_gdn_check(const char *op, const df_gdn_args *a) {
    if (!a) return df_fail(DF_ERR_INVALID, "%s: args is NULL", op);
    DF_TRY(cu_check_heads(op, "q", &a->q));
    DF_TRY(cu_check_heads(op, "k", &a->k));
    DF_TRY(cu_check_heads(op, "v", &a->v));
    DF_TRY(cu_check_heads(op, "out", &a->out));
    if (a->q.n_tok != a->k.n_tok || a->q.n_head != a->k.n_head || a->q.dim != a->k.dim)
        return df_fail(DF_ERR_MISMATCH, "%s: q [%lld][%lld][%lld] and k [%lld][%lld][%lld] differ", op,
                       (long long)a->q.n_tok, (long long)a->q.n_head, (long long)a->q.dim,
                       (long long)a->k.n_tok, (long long)a->k.n_head, (long long)a->k.dim);
    if (a->v.n_tok != a->q.n_tok)
        return df_fail(DF_ERR_MISMATCH, "%s: v has %lld tokens, q has %lld", op, (long long)a->v.n_tok,
                       (long long)a->q.n_tok);
    if (a->v.n_head % a->k.n_head)
        return df_fail(DF_ERR_MISMATCH, "%s: %lld value heads is not a multiple of %lld key heads", op,
                       (long long)a->v.n_head, (long long)a->k.n_head);
    if (a->out.n_tok != a->v.n_tok || a->out.n_head != a->v.n_head || a->out.dim != a->v.dim)
        return df_fail(DF_ERR_MISMATCH, "%s: out shape does not match v [%lld][%lld][%lld]", op,
                       (long long)a->v.n_tok, (long long)a->v.n_head, (long long)a->v.dim);
    if (a->k.dim > GDN_ROWS * GDN_MAX_GROUPS)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: key head dim %lld; the CUDA kernel takes at most %d", op,
                       (long long)a->k.dim, GDN_ROWS * GDN_MAX_GROUPS);
    if (a->v.dim > 4096 || a->v.n_head > 65535)
        return df_fail(DF_ERR_INVALID, "%s: %lld value heads of %lld exceed the limits", op,
                       (long long)a->v.n_head, (long long)a->v.dim);
    if (!a->g || !a->beta || !a->state) return df_fail(DF_ERR_INVALID, "%s: g, beta or state is NULL", op);
    if (a->capture && a->capture_type != DF_STATE_F32 && a->capture_type != DF_STATE_F16)
        return df_fail(DF_ERR_INVALID, "%s: unknown capture type %d", op, (int)a->capture_type);
    if (a->head_map != DF_GDN_HEADS_GROUPED && a->head_map != DF_GDN_HEADS_TILED)
        return df_fail(DF_ERR_INVALID, "%s: unknown head map %d", op, (int)a->head_map);
    if (!(a->q_scale >= 0.0f) || !isfinite(a->q_scale))
        return df_fail(DF_ERR_INVALID, "%s: q_scale %g is not a finite number >= 0", op, (double)a->q_scale);
    return DF_OK;
}

cu_gdn_args cu_gdn_args_of(const df_gdn_args *a) {
    cu_gdn_args k;
    k.q = cu_heads_of(&a->q);
    k.k = cu_heads_of(&a->k);
    k.v = cu_heads_of(&a->v);
    k.out = cu_heads_of(&a->out);
    k.g = a->g;
    k.beta = a->beta;
    k.state = a->state;
    k.state_in = a->state_in;
    k.state_save = a->state_save;
    k.capture = a->capture;
    k.cap_f16 = a->capture_type == DF_STATE_F16;
    k.tiled = a->head_map == DF_GDN_HEADS_TILED;
    k.q_scale = a->q_scale > 0.0f ? a->q_scale : (float)(1.0 / sqrt((double)a->k.dim));
    return k;
}

/* Whether gdn_recurrent_kernel has this key head size in its template (and that is not
 * switched off). */
bool cu_gdn_recurrent_fixed(int64_t dk) {
    static int fixed = -1; /* DFLASH_CUDA_GDN_FIXED=0: the run-time d_k instance for every shape (timings) */
    if (fixed < 0) {
        const char *e = getenv("DFLASH_CUDA_GDN_FIXED");
        fixed = !(e && *e && atoi(e) == 0);
    }
    return fixed && (dk == 64 || dk == 128);
}

df_status cu_gdn_recurrent(df_backend *be, const df_gdn_args *args) {
    cu_backend *cb = cu_impl(be);
    DF_TRY(cu_gdn_check("gdn_recurrent", args));
    DF_TRY(cu_enter(cb, "gdn_recurrent"));
    const df_gdn_args *a = args;
    const cu_gdn_args k = cu_gdn_args_of(a);
    const int groups = (int)((a->k.dim + GDN_ROWS - 1) / GDN_ROWS);
    dim3 grid(cu_blocks(a->v.dim, 32), (unsigned)a->v.n_head);
    const bool cap = k.capture != NULL, fixed = cu_gdn_recurrent_fixed(a->k.dim);
    const int dk = fixed ? (int)a->k.dim : 0, threads = 32 * groups;
    if (dk == 128 && cap) gdn_recurrent_kernel<128, true><<<grid, threads, 0, cb->stream>>>(k);
    else if (dk == 128) gdn_recurrent_kernel<128, false><<<grid, threads, 0, cb->stream>>>(k);
    else if (dk == 64 && cap) gdn_recurrent_kernel<64, true><<<grid, threads, 0, cb->stream>>>(k);
    else if (dk == 64) gdn_recurrent_kernel<64, false><<<grid, threads, 0, cb->stream>>>(k);
    else if (cap) gdn_recurrent_kernel<0, true><<<grid, threads, 0, cb->stream>>>(k);
    else gdn_recurrent_kernel<0, false><<<grid, threads, 0, cb->stream>>>(k);
    return cu_check_launch(cb, "gdn_recurrent");
}

/* ---- gates ---- */

__global__ void gdn_gates_kernel(const float *a, const float *b, const float *dt_bias, const float *ssm_a,
                                 long long n, int nv, float *g, float *beta) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int h = (int)(i % nv);
    const float x = a[i] + dt_bias[h];
    /* torch's softplus: linear above 20 */
    const float sp = x > 20.0f ? x : log1pf(expf(x));
    g[i] = ssm_a[h] * sp;
    beta[i] = cu_sigmoid(b[i]);
}

df_status cu_gdn_gates(df_backend *be, const float *a, const float *b, const float *dt_bias,
                       const float *ssm_a, int64_t n_tok, int64_t n_v_head, float *g, float *beta) {
    cu_backend *cb = cu_impl(be);
    if (!a || !b || !dt_bias || !ssm_a || !g || !beta)
        return df_fail(DF_ERR_INVALID, "gdn_gates: an input or output is NULL");
    if (n_tok <= 0 || n_v_head <= 0 || n_tok > ((int64_t)1 << 30) || n_v_head > ((int64_t)1 << 20))
        return df_fail(DF_ERR_INVALID, "gdn_gates: shape [%lld][%lld] is not positive", (long long)n_tok,
                       (long long)n_v_head);
    DF_TRY(cu_enter(cb, "gdn_gates"));
    const int64_t n = n_tok * n_v_head;
    gdn_gates_kernel<<<cu_blocks(n, 256), 256, 0, cb->stream>>>(a, b, dt_bias, ssm_a, n, (int)n_v_head, g, beta);
    return cu_check_launch(cb, "gdn_gates");
}
