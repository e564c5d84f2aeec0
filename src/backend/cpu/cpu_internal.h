/* Shared by the CPU kernel files only: the table of inner loops that have a scalar and an
 * AVX2 version, argument checks, and how work is cut into pool tasks. */
#ifndef DF_BACKEND_CPU_INTERNAL_H
#define DF_BACKEND_CPU_INTERNAL_H

#include <math.h>
#include <stdbool.h>

#include "backend/cpu/cpu_ops.h"

/* The inner loops the kernels are built from. Each exists as a plain C version
 * (cpu_simd.c) and an AVX2+FMA+F16C version (cpu_simd_avx2.c), a few also as an AVX-512
 * version (cpu_simd_avx512.c); df_cpu_kernels_get() returns the table of the level
 * currently selected. */
typedef struct df_cpu_kernels {
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    float (*dot_f16)(const df_fp16 *a, const float *b, int64_t n);  /* half row . float row */
    float (*dot_bf16)(const df_bf16 *a, const float *b, int64_t n);
    void (*axpy_f32)(float *y, float a, const float *x, int64_t n);    /* y += a * x */
    void (*axpy_f16)(float *y, float a, const df_fp16 *x, int64_t n);
    void (*scale_f32)(float *y, float a, int64_t n);                   /* y *= a */
    float (*sumsq_f32)(const float *x, int64_t n);
    /* y = x * s * w (w NULL: y = x * s); the apply half of an RMSNorm. y may equal x. */
    void (*scale_mul_f32)(float *y, const float *x, float s, const float *w, int64_t n);
    /* C[M][N] += alpha * A[M][K] B[K][N], all row-major with leading dims lda, ldb, ldc. */
    void (*gemm_f32)(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float *C, int64_t ldc);
    /* One GDN token for one head, state S [dk][dv] in place (see cpu_gdn.c):
     *   S = decay*S + k (beta (v - decay S^T k))^T;  o = S^T q
     * cap, if not NULL, receives the new S as f32 (cap_f16 false) or f16. */
    void (*gdn_step)(float *S, int64_t dk, int64_t dv, const float *q, const float *k,
                     const float *v, float decay, float beta, float *o, void *cap, bool cap_f16);
    /* A tile of a float-weight matmul: y[t * y_stride + r] = W_r . x_t for nr <= 4 rows of W
     * (w_row_bytes apart, of type wt: F32, F16 or BF16) and nt <= 2 tokens of x. Each (row,
     * token) pair is computed with the same arithmetic whatever nr and nt are, so a token's
     * result does not depend on the batch it is in. */
    void (*mm_tile)(df_type wt, const void *w, size_t w_row_bytes, int nr, const float *x,
                    int64_t x_stride, int nt, int64_t n, float *y, int64_t y_stride);
    /* S [dk][dv] = decay * S + k u^T in place; cap as in gdn_step. */
    void (*rank1_decay)(float *S, int64_t dk, int64_t dv, const float *k, const float *u,
                        float decay, void *cap, bool cap_f16);
    /* y = silu(a) * b, or silu(a) when b is NULL; y may equal a or b. Every element goes
     * through the same arithmetic wherever it sits in the array (the SIMD version runs its
     * tail through the vector code too), so splitting n into pieces never changes a bit. */
    void (*silu_mul_f32)(float *y, const float *a, const float *b, int64_t n);
    /* y = sigmoid(a) * b, or sigmoid(a) when b is NULL; as silu_mul_f32 otherwise. */
    void (*sigmoid_mul_f32)(float *y, const float *a, const float *b, int64_t n);
    /* The index of the first largest element, NaNs skipped; -1 when all n are NaN. */
    int64_t (*argmax_f32)(const float *x, int64_t n);
    /* One block of an online-softmax attention for one query row: df_attn_online_block below
     * says what it computes. The SIMD version does per element exactly the operations of that
     * loop over dot_f16 / dot_f32 and axpy_f16 / axpy_f32, in the same order, but in one
     * function and with the accumulator row held in registers across the block's rows (one
     * axpy per cache row stored the row and loaded it back every time), so its results are
     * the same bits. */
    void (*attn_block)(const float *q, int64_t d, float scale, bool f16, const void *kbase, const void *vbase,
                       const int64_t *off, int64_t nb, float *s, float *m, float *l, float *o);
} df_cpu_kernels;

const df_cpu_kernels *df_cpu_kernels_get(void);

/* The scalar GDN step restricted to columns [j_begin, j_end) of S (the AVX2 step hands it
 * the columns that do not fill a vector). */
void df_cpu_gdn_cols_scalar(float *S, int64_t dk, int64_t dv, int64_t j_begin, int64_t j_end,
                            const float *q, const float *k, const float *v, float decay,
                            float beta, float *o, void *cap, bool cap_f16);
extern const df_cpu_kernels df_cpu_kernels_scalar;
#if defined(__x86_64__) || defined(__i386__)
#define DF_CPU_HAVE_AVX2_BUILD 1
extern const df_cpu_kernels df_cpu_kernels_avx2;
/* The AVX2 table with the loops of cpu_simd_avx512.c in place of their AVX2 versions. */
extern const df_cpu_kernels df_cpu_kernels_avx512;
void df_cpu_gdn_step_avx512(float *S, int64_t dk, int64_t dv, const float *q, const float *k,
                            const float *v, float decay, float beta, float *o, void *cap, bool cap_f16);
void df_cpu_silu_mul_f32_avx512(float *y, const float *a, const float *b, int64_t n);
void df_cpu_sigmoid_mul_f32_avx512(float *y, const float *a, const float *b, int64_t n);
#endif

/* ---- argument checks ---- */

/* A view is usable: data set, sizes positive, strides wide enough that heads and tokens do
 * not overlap. name is the argument's name for the message. */
df_status df_cpu_check_heads(const char *kernel, const char *name, const df_cpu_heads *h);

static inline float *df_head_ptr(const df_cpu_heads *h, int64_t t, int64_t hd) {
    return h->data + t * h->tok_stride + hd * h->head_stride;
}

/* Checks a GDN call's shapes and pointers (cpu_gdn.c); shared by both forms. */
df_status df_cpu_gdn_check(const char *kernel, const df_cpu_gdn_args *a);

/* The key head that value head h reads (see df_gdn_head_map). */
static inline int64_t df_gdn_key_head(const df_cpu_gdn_args *a, int64_t h) {
    const int64_t nk = a->k.n_head, per = a->v.n_head / nk;
    return a->head_map == DF_GDN_HEADS_TILED ? h % nk : h / per;
}

static inline float df_gdn_q_scale(const df_cpu_gdn_args *a) {
    return a->q_scale > 0.0f ? a->q_scale : (float)(1.0 / sqrt((double)a->k.dim));
}

/* ---- splitting work into tasks ---- */

/* How many tasks to cut `items` items into, when each item costs about `cost_per_item`
 * scalar operations: one task below ~64k operations (waking workers costs more than that),
 * else enough tasks to keep every thread busy and balance uneven finishing times. */
int df_cpu_task_count(df_pool *pool, int64_t items, int64_t cost_per_item);

/* The half-open item range [*lo, *hi) of task `task` of n_tasks over n items. */
static inline void df_cpu_task_range(int64_t n, int task, int n_tasks, int64_t *lo, int64_t *hi) {
    *lo = n * task / n_tasks;
    *hi = n * (task + 1) / n_tasks;
}

/* One block of an online (running-max) softmax attention for one query row, shared by the
 * causal attention and the drafter's windowed attention so both compute a block the same way:
 * the scores of the nb cache rows at element offsets off[0..nb) (into the K and V caches,
 * f16 or f32) go to s, the running maximum *m and sum *l move, and o accumulates
 * sum(exp(score - m) * v). */
static inline void df_attn_online_block(const df_cpu_kernels *K, const float *q, int64_t d, float scale,
                                        bool f16, const void *kbase, const void *vbase, const int64_t *off,
                                        int64_t nb, float *s, float *m, float *l, float *o) {
    K->attn_block(q, d, scale, f16, kbase, vbase, off, nb, s, m, l, o);
}

/* The definition of a block, over a table's dot and axpy loops (the scalar table's attn_block,
 * and the reference the SIMD one is tested against). */
static inline void df_attn_block_ref(const df_cpu_kernels *K, const float *q, int64_t d, float scale,
                                     bool f16, const void *kbase, const void *vbase, const int64_t *off,
                                     int64_t nb, float *s, float *m, float *l, float *o) {
    const df_fp16 *k16 = kbase, *v16 = vbase;
    const float *k32 = kbase, *v32 = vbase;
    float mb = -INFINITY;
    for (int64_t b = 0; b < nb; b++) {
        s[b] = (f16 ? K->dot_f16(k16 + off[b], q, d) : K->dot_f32(k32 + off[b], q, d)) * scale;
        if (s[b] > mb) mb = s[b];
    }
    if (mb > *m) {
        if (*l > 0.0f) {
            const float r = expf(*m - mb);
            K->scale_f32(o, r, d);
            *l *= r;
        }
        *m = mb;
    }
    for (int64_t b = 0; b < nb; b++) {
        const float pw = expf(s[b] - *m);
        *l += pw;
        if (f16) K->axpy_f16(o, pw, v16 + off[b], d);
        else K->axpy_f32(o, pw, v32 + off[b], d);
    }
}

static inline float df_sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline float df_siluf(float x) { return x / (1.0f + expf(-x)); }

#endif
