/* The chunked (WY representation / UT transform) form of the Gated DeltaNet, following HF's
 * torch_chunk_gated_delta_rule. For a chunk of L tokens with cumulative log decay
 * c_i = g_0 + ... + g_i (within the chunk) and the state S0 on entry:
 *
 *   A[i][j] = beta_i (k_i . k_j) exp(c_i - c_j)           for j < i (strictly lower)
 *   (I + A) U = diag(beta) V          -> u_i = beta_i v_i - sum_{j<i} A[i][j] u_j
 *   (I + A) W = diag(beta e^c) K      -> w_i = beta_i e^{c_i} k_i - sum_{j<i} A[i][j] w_j
 *   Vn = U - W S0                        (the corrected values, "v_new")
 *   o_i = e^{c_i} q_i^T S0 + sum_{j<=i} (q_i . k_j) exp(c_i - c_j) vn_j
 *   S  = e^{c_{L-1}} S0 + sum_j exp(c_{L-1} - c_j) k_j vn_j^T
 *
 * Every exponent is <= 0 (g <= 0), so nothing overflows; no ratio of exponentials is formed.
 * The cumulative decay is kept in double: over a chunk it reaches magnitudes of ~50, where a
 * float's ulp (4e-6) would make every exp(c_i - c_j) wrong by that much relative, which was
 * the largest error of this form against the recurrent one.
 * The last chunk is simply shorter (no padding). Row i of U and W depends only on rows
 * j < i, so the same formulas give the state after any token t of a chunk:
 *   S_t = e^{g_t} S_{t-1} + k_t vn_t^T
 * which is how capture rebuilds the per-token states (one rank-1 update each, the same
 * traffic as the final state update it replaces).
 *
 * Heads are independent. Each task owns one scratch slot and a contiguous range of value
 * heads; a slot holds one chunk's working matrices for one head. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

enum { CH = DF_CPU_GDN_CHUNK };

/* Floats of one slot, rounded up to a cache line. */
static size_t slot_floats(int64_t dk, int64_t dv) {
    const size_t n = (size_t)CH * (size_t)dk * 4  /* Q, Kc, W, KdT */
                     + (size_t)CH * (size_t)dv    /* U / Vn */
                     + (size_t)CH * CH * 2        /* A, QK */
                     + 2 * CH;                    /* cumulative decay, in double */
    return (n + 15) / 16 * 16;
}

static int slot_count(df_pool *pool, int64_t n_v_head) {
    const int n = df_pool_size(pool);
    return n_v_head < n ? (int)n_v_head : n;
}

size_t df_cpu_gdn_chunked_scratch_size(df_pool *pool, int64_t d_k, int64_t d_v) {
    if (d_k <= 0 || d_v <= 0 || d_k > 4096 || d_v > 4096) return 0;
    return (size_t)df_pool_size(pool) * slot_floats(d_k, d_v) * sizeof(float);
}

typedef struct {
    const df_cpu_gdn_args *a;
    float q_scale;
    float *scratch;
    size_t slot;
} chunk_ctx;

static void chunk_head(const chunk_ctx *c, const df_cpu_kernels *K, float *buf, int64_t h) {
    const df_cpu_gdn_args *a = c->a;
    const int64_t nv = a->v.n_head, dk = a->k.dim, dv = a->v.dim, kh = df_gdn_key_head(a, h);
    const bool cap_f16 = a->capture_type == DF_STATE_F16;
    const size_t cap_elem = cap_f16 ? sizeof(df_fp16) : sizeof(float);
    double *cum = (double *)buf; /* first, so that it keeps the slot's 8-byte alignment */
    float *Q = buf + 2 * CH, *Kc = Q + CH * dk, *W = Kc + CH * dk, *KdT = W + CH * dk;
    float *U = KdT + CH * dk, *A = U + CH * dv, *QK = A + CH * CH;
    float *S = a->state + h * dk * dv;
    const int64_t ldo = a->out.tok_stride;

    for (int64_t t0 = 0; t0 < a->v.n_tok; t0 += CH) {
        const int64_t L = a->v.n_tok - t0 < CH ? a->v.n_tok - t0 : CH;

        /* gather the chunk: scaled queries, keys, beta-weighted values, cumulative decay */
        double run = 0.0;
        for (int64_t i = 0; i < L; i++) {
            const int64_t t = t0 + i, gi = t * nv + h;
            const float *q = df_head_ptr(&a->q, t, kh), *k = df_head_ptr(&a->k, t, kh);
            const float *v = df_head_ptr(&a->v, t, h);
            for (int64_t r = 0; r < dk; r++) Q[i * dk + r] = q[r] * c->q_scale;
            memcpy(Kc + i * dk, k, (size_t)dk * sizeof(float));
            const float b = a->beta[gi];
            for (int64_t j = 0; j < dv; j++) U[i * dv + j] = v[j] * b;
            run += a->g[gi];
            cum[i] = run;
        }

        /* A (strictly lower), QK (lower with diagonal, zero above), W's right-hand side */
        for (int64_t i = 0; i < L; i++) {
            const float bi = a->beta[(t0 + i) * nv + h];
            for (int64_t j = 0; j < L; j++) {
                const float dec = j <= i ? (float)exp(cum[i] - cum[j]) : 0.0f;
                A[i * CH + j] = j < i ? bi * K->dot_f32(Kc + i * dk, Kc + j * dk, dk) * dec : 0.0f;
                QK[i * CH + j] = j <= i ? K->dot_f32(Q + i * dk, Kc + j * dk, dk) * dec : 0.0f;
            }
            const float wi = bi * (float)exp(cum[i]);
            for (int64_t r = 0; r < dk; r++) W[i * dk + r] = Kc[i * dk + r] * wi;
        }

        /* forward substitution through the unit lower triangular I + A */
        for (int64_t i = 1; i < L; i++) {
            K->gemm_f32(1, dv, i, -1.0f, A + i * CH, CH, U, dv, U + i * dv, dv);
            K->gemm_f32(1, dk, i, -1.0f, A + i * CH, CH, W, dk, W + i * dk, dk);
        }

        /* Vn = U - W S0 (in place in U) */
        K->gemm_f32(L, dv, dk, -1.0f, W, dk, S, dv, U, dv);

        /* outputs: e^{c_i} q_i^T S0 plus the intra-chunk part */
        float *o0 = df_head_ptr(&a->out, t0, h);
        for (int64_t i = 0; i < L; i++) {
            memset(o0 + i * ldo, 0, (size_t)dv * sizeof(float));
            K->scale_f32(Q + i * dk, (float)exp(cum[i]), dk);
        }
        K->gemm_f32(L, dv, dk, 1.0f, Q, dk, S, dv, o0, ldo);
        K->gemm_f32(L, dv, L, 1.0f, QK, CH, U, dv, o0, ldo);

        /* the state after the chunk (or after each of its tokens) */
        if (a->capture) {
            for (int64_t i = 0; i < L; i++) {
                void *cap = (char *)a->capture + (size_t)((t0 + i) * nv + h) * (size_t)(dk * dv) * cap_elem;
                K->rank1_decay(S, dk, dv, Kc + i * dk, U + i * dv, expf(a->g[(t0 + i) * nv + h]), cap, cap_f16);
            }
        } else {
            const double last = cum[L - 1];
            for (int64_t j = 0; j < L; j++) {
                const float dec = (float)exp(last - cum[j]);
                for (int64_t r = 0; r < dk; r++) KdT[r * CH + j] = Kc[j * dk + r] * dec;
            }
            K->scale_f32(S, (float)exp(last), dk * dv);
            K->gemm_f32(dk, dv, L, 1.0f, KdT, CH, U, dv, S, dv);
        }
    }
}

static void chunk_task(void *p, int task, int n_tasks) {
    const chunk_ctx *c = p;
    const df_cpu_kernels *K = df_cpu_kernels_get();
    float *buf = c->scratch + (size_t)task * c->slot;
    int64_t lo, hi;
    df_cpu_task_range(c->a->v.n_head, task, n_tasks, &lo, &hi);
    for (int64_t h = lo; h < hi; h++) chunk_head(c, K, buf, h);
}

df_status df_cpu_gdn_chunked(df_pool *pool, const df_cpu_gdn_args *args, void *scratch,
                             size_t scratch_size) {
    DF_TRY(df_cpu_gdn_check("gdn_chunked", args));
    if (!scratch) return df_fail(DF_ERR_INVALID, "gdn_chunked: scratch is NULL");
    const int64_t nv = args->v.n_head, dk = args->k.dim, dv = args->v.dim;
    const size_t slot = slot_floats(dk, dv);
    int n_tasks = df_cpu_task_count(pool, nv, args->v.n_tok * dk * dv * 4);
    const int max_slots = slot_count(pool, nv);
    if (n_tasks > max_slots) n_tasks = max_slots;
    const size_t need = (size_t)n_tasks * slot * sizeof(float);
    if (scratch_size < need)
        return df_fail(DF_ERR_INVALID, "gdn_chunked: scratch of %zu bytes, need %zu "
                       "(df_cpu_gdn_chunked_scratch_size)", scratch_size, need);
    if ((uintptr_t)scratch % sizeof(double))
        return df_fail(DF_ERR_INVALID, "gdn_chunked: scratch is not 8-byte aligned");
    df_cpu_gdn_state_begin(args, 0, nv);
    chunk_ctx c = {args, df_gdn_q_scale(args), scratch, slot};
    df_pool_run(pool, chunk_task, &c, n_tasks);
    return DF_OK;
}
