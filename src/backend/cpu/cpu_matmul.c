/* y = x W^T for a weight matrix of any type the quant traits table can dot.
 *
 * Decode and verify are bound by reading W, so the loop is arranged for W to leave memory
 * once per call: each task owns a contiguous block of output rows and, for every row, dots
 * it with all tokens of a token block while the row sits in L1. Activations are converted
 * once per call to the weight type's vec_dot_type (quantized into scratch), never per row.
 * For long prefills the tokens are cut into blocks of MM_TOKEN_BLOCK so that one block's
 * activations stay in L2, and row blocks are kept small enough to stay in L2 across token
 * blocks.
 *
 * F32, F16 and BF16 weights use this backend's own dot loops against the float activations
 * (they follow df_cpu_simd_set like every other loop here). Q8_0, Q4_0, Q4_K, Q5_K and Q6_K
 * weights use the multi-token dots of quant/mdot.h at the AVX2 and AVX-512 levels: a weight
 * block is decoded once for a pass of several tokens (4 with AVX2; 8, on tiles of 16 rows,
 * with AVX-512) instead of once per token, which is what makes a 16-token verify cost a few
 * decode steps rather than sixteen. Decode (one token)
 * goes through the same kernels with one column, so a token's result is bitwise the same
 * whatever batch it is in. Other types use the traits table's vec_dot per token, and the
 * scalar level uses the scalar traits table for everything: the plain reference.
 *
 * At the AVX-512 level a matrix the backend packed when it bound it (cpu_pack.c: Q8_0 and
 * the K-quants, rearranged so the kernel loads what it would otherwise transpose) is read
 * from its packed copy, with bitwise the same results. Several matrices that read the same
 * x (df_cpu_matmul_many) share one conversion of x and one parallel run over all their rows:
 * fewer meetings of the threads, and no idle thread while a small matrix finishes. */
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "base/alloc.h"
#include "quant/mdot.h"

enum { MM_TOKEN_BLOCK = 16, MM_ROW_BLOCK_BYTES = 256 * 1024, MM_ROW_GROUP = 16 };

/* One weight matrix of a call and its share of the call's tasks. */
typedef struct {
    const char *w;
    float *y;
    int64_t n_out;
    size_t w_row_bytes;
    df_type wtype;
    df_vec_dot_fn vec_dot;   /* quantized path, one token at a time */
    const df_mdot *mdot;     /* quantized path, many tokens at a time (NULL: use vec_dot) */
    const df_cpu_packed *packed; /* the packed copy mdot->dot_packed reads, or NULL */
    int task0, n_tasks;      /* tasks task0 .. task0 + n_tasks - 1 of the run are this matrix's */
} mm_mat;

typedef struct {
    const float *x;
    int64_t n_tok, n_in;
    const char *xq;          /* quantized activations, xq_stride bytes per token */
    size_t xq_stride;
    const df_type_traits *act; /* vec_dot_type traits for the quantize step */
    const df_mdot *qmdot;      /* the multi-token layout to quantize to (NULL: act's) */
    int n_mats;
    mm_mat mats[DF_CPU_MATMUL_MANY_MAX];
} mm_ctx;

static size_t round_up64(size_t n) { return (n + 63) / 64 * 64; }

static void quantize_task(void *p, int task, int n_tasks) {
    const mm_ctx *c = p;
    int64_t lo, hi;
    df_cpu_task_range(c->n_tok, task, n_tasks, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        void *dst = (void *)(c->xq + (size_t)t * c->xq_stride);
        if (c->qmdot) c->qmdot->quantize(c->x + t * c->n_in, dst, c->n_in);
        else c->act->from_float(c->x + t * c->n_in, dst, c->n_in);
    }
}

static bool own_float_type(df_type t) {
    return t == DF_TYPE_F32 || t == DF_TYPE_F16 || t == DF_TYPE_BF16;
}

/* Float weights: tiles of 4 rows x 2 tokens (df_cpu_kernels.mm_tile), so a W vector is loaded
 * once per token pair and eight FMA chains run side by side. */
static void matmul_float_rows(const mm_ctx *c, const mm_mat *m, const df_cpu_kernels *K, int64_t lo,
                              int64_t hi, int64_t t0, int64_t t1) {
    for (int64_t r = lo; r < hi; r += 4) {
        const int nr = hi - r < 4 ? (int)(hi - r) : 4;
        const char *wr = m->w + (size_t)r * m->w_row_bytes;
        for (int64_t t = t0; t < t1; t += 2) {
            const int nt = t1 - t < 2 ? (int)(t1 - t) : 2;
            K->mm_tile(m->wtype, wr, m->w_row_bytes, nr, c->x + t * c->n_in, c->n_in, nt, c->n_in,
                       m->y + t * m->n_out + r, m->n_out);
        }
    }
}

static void matmul_task(void *p, int task, int n_tasks) {
    const mm_ctx *c = p;
    const mm_mat *m = c->mats;
    while (task >= m->task0 + m->n_tasks) m++;
    task -= m->task0;
    n_tasks = m->n_tasks;
    const df_cpu_kernels *K = df_cpu_kernels_get();
    /* rows in whole groups of MM_ROW_GROUP where possible: the AVX-512 kernels work on tiles
     * of 16 rows (a cut elsewhere costs a partial tile, never a different result) */
    int64_t lo, hi;
    df_cpu_task_range((m->n_out + MM_ROW_GROUP - 1) / MM_ROW_GROUP, task, n_tasks, &lo, &hi);
    lo = lo * MM_ROW_GROUP < m->n_out ? lo * MM_ROW_GROUP : m->n_out;
    hi = hi * MM_ROW_GROUP < m->n_out ? hi * MM_ROW_GROUP : m->n_out;
    for (int64_t t0 = 0; t0 < c->n_tok; t0 += MM_TOKEN_BLOCK) {
        const int64_t t1 = c->n_tok - t0 < MM_TOKEN_BLOCK ? c->n_tok : t0 + MM_TOKEN_BLOCK;
        if (own_float_type(m->wtype)) {
            matmul_float_rows(c, m, K, lo, hi, t0, t1);
            continue;
        }
        if (m->packed) {
            /* lo is a whole number of tiles (MM_ROW_GROUP = the packed tile height) */
            if (hi > lo)
                m->mdot->dot_packed((const char *)m->packed->data + (size_t)(lo / MM_ROW_GROUP) * m->packed->tile_bytes,
                                    m->packed->tile_bytes, hi - lo, c->xq + (size_t)t0 * c->xq_stride,
                                    c->xq_stride, (int)(t1 - t0), c->n_in, m->y + t0 * m->n_out + lo, m->n_out);
            continue;
        }
        if (m->mdot) {
            if (hi > lo)
                m->mdot->dot(m->w + (size_t)lo * m->w_row_bytes, m->w_row_bytes, hi - lo,
                             c->xq + (size_t)t0 * c->xq_stride, c->xq_stride, (int)(t1 - t0), c->n_in,
                             m->y + t0 * m->n_out + lo, m->n_out);
            continue;
        }
        for (int64_t r = lo; r < hi; r++) {
            const void *wr = m->w + (size_t)r * m->w_row_bytes;
            float *y = m->y + r;
            if (c->xq) {
                for (int64_t t = t0; t < t1; t++)
                    y[t * m->n_out] = m->vec_dot(wr, c->xq + (size_t)t * c->xq_stride, c->n_in);
            } else {
                for (int64_t t = t0; t < t1; t++) y[t * m->n_out] = m->vec_dot(wr, c->x + t * c->n_in, c->n_in);
            }
        }
    }
}

static const df_type_traits *traits_for(df_type t) {
    return df_cpu_simd_get() == DF_CPU_SIMD_SCALAR ? df_type_get_scalar((uint32_t)t)
                                                   : df_type_get((uint32_t)t);
}

/* The multi-token kernel of the current level for weights of type t, or NULL. */
static const df_mdot *mdot_for(df_type t) {
    switch (df_cpu_simd_get()) {
    case DF_CPU_SIMD_AVX2: return df_mdot_get(t, DF_MDOT_AVX2);
    case DF_CPU_SIMD_AVX512: return df_mdot_get(t, DF_MDOT_AVX512);
    default: return NULL;
    }
}

/* Bytes per token of converted activations; 0 when the float activations are used as they are.
 * The largest over every level's layout, so that a scratch buffer sized once serves any
 * level df_cpu_simd_set picks later. */
static bool act_row_bytes(df_type wtype, int64_t n_in, size_t *out) {
    *out = 0;
    if (own_float_type(wtype)) return true;
    const df_type_traits *tr = df_type_get_scalar((uint32_t)wtype);
    if (!tr || !tr->vec_dot) return false;
    if (tr->vec_dot_type == DF_TYPE_F32) return true;
    size_t row, multi;
    if (!df_type_row_size(tr->vec_dot_type, n_in, &row) || !df_mdot_act_bytes_max(wtype, n_in, &multi))
        return false;
    *out = round_up64(row > multi ? row : multi);
    return true;
}

size_t df_cpu_matmul_scratch_size(df_type wtype, int64_t n_tok, int64_t n_in) {
    size_t row, total;
    if (n_tok <= 0 || n_in <= 0 || !act_row_bytes(wtype, n_in, &row)) return 0;
    if (!df_mul_size(row, (size_t)n_tok, &total)) return 0;
    return total;
}

size_t df_cpu_matmul_many_scratch_size(const df_cpu_matmul_out *outs, int n, int64_t n_tok, int64_t n_in) {
    size_t most = 0;
    for (int i = 0; i < n; i++) {
        const size_t s = df_cpu_matmul_scratch_size(outs[i].wtype, n_tok, n_in);
        if (s > most) most = s;
    }
    return most;
}

/* Checks one matrix and fills its part of the context (all but the task split). */
static df_status mat_init(const df_cpu_matmul_out *o, int64_t n_in, mm_mat *m, size_t *xq_row,
                          const df_type_traits **act) {
    if (!o->w || !o->y) return df_fail(DF_ERR_INVALID, "matmul: w or y is NULL");
    if (o->n_out <= 0 || o->n_out > ((int64_t)1 << 31))
        return df_fail(DF_ERR_INVALID, "matmul: shape W [%lld][%lld] is not valid", (long long)o->n_out,
                       (long long)n_in);
    const df_type_traits *wt = traits_for(o->wtype);
    if (!wt) return df_fail(DF_ERR_UNSUPPORTED, "matmul: unknown weight type id %d", (int)o->wtype);
    if (!own_float_type(o->wtype) && !wt->vec_dot)
        return df_fail(DF_ERR_UNSUPPORTED, "matmul: no dot product for weights of type %s", wt->name);
    size_t w_row;
    if (!df_type_row_size(o->wtype, n_in, &w_row))
        return df_fail(DF_ERR_INVALID, "matmul: a row of %lld elements is not a whole number of %s blocks (%d)",
                       (long long)n_in, wt->name, wt->block_size);
    if (!act_row_bytes(o->wtype, n_in, xq_row))
        return df_fail(DF_ERR_INVALID, "matmul: %lld elements do not fit the activation type of %s",
                       (long long)n_in, wt->name);
    *act = NULL;
    if (*xq_row) {
        *act = traits_for(wt->vec_dot_type);
        if (!*act || !(*act)->from_float)
            return df_fail(DF_ERR_UNSUPPORTED, "matmul: cannot convert activations to %s for %s weights",
                           df_type_name(wt->vec_dot_type), wt->name);
    }
    *m = (mm_mat){.w = o->w, .y = o->y, .n_out = o->n_out, .w_row_bytes = w_row, .wtype = o->wtype,
                  .vec_dot = wt->vec_dot, .mdot = *xq_row ? mdot_for(o->wtype) : NULL};
    /* the packed copy serves the kernel it was packed for: AVX-512's (cpu_pack.c) */
    if (o->packed && m->mdot && m->mdot->dot_packed && df_cpu_simd_get() == DF_CPU_SIMD_AVX512)
        m->packed = o->packed;
    return DF_OK;
}

/* Whether two matrices read the same converted activations. */
static bool same_activations(const mm_mat *a, size_t a_row, const df_type_traits *a_act, const mm_mat *b,
                             size_t b_row, const df_type_traits *b_act) {
    if (!a_row || !b_row) return !a_row && !b_row;
    if (a->mdot || b->mdot) return a->mdot && b->mdot && a->mdot->quantize == b->mdot->quantize;
    return a_act == b_act;
}

/* Splits the run's tasks between the matrices, by rows, in whole groups. */
static int split_tasks(df_pool *pool, mm_ctx *c) {
    int64_t rows = 0;
    for (int i = 0; i < c->n_mats; i++) rows += c->mats[i].n_out;
    const int total = df_cpu_task_count(pool, rows, c->n_tok * c->n_in * 2);
    int next = 0;
    for (int i = 0; i < c->n_mats; i++) {
        mm_mat *m = &c->mats[i];
        int n = (int)(((int64_t)total * m->n_out + rows - 1) / rows);
        if (c->n_tok > MM_TOKEN_BLOCK) {
            /* keep each task's rows small enough to stay in L2 across token blocks */
            double want = (double)m->w_row_bytes * (double)m->n_out / MM_ROW_BLOCK_BYTES + 1.0;
            if (want > (double)m->n_out) want = (double)m->n_out;
            if ((double)n < want) n = (int)want;
        }
        const int64_t groups = (m->n_out + MM_ROW_GROUP - 1) / MM_ROW_GROUP;
        if (n > groups) n = (int)groups;
        if (n < 1) n = 1;
        m->task0 = next;
        m->n_tasks = n;
        next += n;
    }
    return next;
}

df_status df_cpu_matmul_many(df_pool *pool, const float *x, int64_t n_tok, int64_t n_in,
                             const df_cpu_matmul_out *outs, int n, void *scratch, size_t scratch_size) {
    if (!x || !outs) return df_fail(DF_ERR_INVALID, "matmul: x or the outputs are NULL");
    if (n < 1 || n > DF_CPU_MATMUL_MANY_MAX)
        return df_fail(DF_ERR_INVALID, "matmul: %d weight matrices in one call (1..%d)", n, DF_CPU_MATMUL_MANY_MAX);
    if (n_tok <= 0 || n_in <= 0 || n_in > ((int64_t)1 << 31))
        return df_fail(DF_ERR_INVALID, "matmul: shape x [%lld][%lld] is not valid", (long long)n_tok,
                       (long long)n_in);
    mm_ctx c = {.x = x, .n_tok = n_tok, .n_in = n_in, .n_mats = n};
    size_t rows[DF_CPU_MATMUL_MANY_MAX] = {0};
    const df_type_traits *acts[DF_CPU_MATMUL_MANY_MAX] = {0};
    bool shared = true;
    for (int i = 0; i < n; i++) {
        DF_TRY(mat_init(&outs[i], n_in, &c.mats[i], &rows[i], &acts[i]));
        if (i > 0 && !same_activations(&c.mats[0], rows[0], acts[0], &c.mats[i], rows[i], acts[i]))
            shared = false;
    }
    if (!shared) {
        /* different activation layouts: one matrix at a time (rare: mixed float and
         * quantized weights, or quant types with different companion types) */
        for (int i = 0; i < n; i++) DF_TRY(df_cpu_matmul_many(pool, x, n_tok, n_in, &outs[i], 1, scratch, scratch_size));
        return DF_OK;
    }
    if (rows[0]) {
        const size_t need = df_cpu_matmul_many_scratch_size(outs, n, n_tok, n_in);
        if (!scratch || scratch_size < need)
            return df_fail(DF_ERR_INVALID, "matmul: %s weights need %zu bytes of scratch, got %zu",
                           df_type_name(outs[0].wtype), need, scratch ? scratch_size : (size_t)0);
        if ((uintptr_t)scratch % 16) return df_fail(DF_ERR_INVALID, "matmul: scratch must be 16-byte aligned");
        c.act = acts[0];
        c.qmdot = c.mats[0].mdot;
        c.xq = scratch;
        c.xq_stride = rows[0];
        df_pool_run(pool, quantize_task, &c, df_cpu_task_count(pool, n_tok, n_in * 16));
    }
    df_pool_run(pool, matmul_task, &c, split_tasks(pool, &c));
    return DF_OK;
}

df_status df_cpu_matmul(df_pool *pool, const float *x, int64_t n_tok, int64_t n_in,
                        const void *w, df_type wtype, int64_t n_out, float *y, void *scratch,
                        size_t scratch_size) {
    if (!x || !w || !y) return df_fail(DF_ERR_INVALID, "matmul: x, w or y is NULL");
    if (n_tok <= 0 || n_in <= 0 || n_out <= 0 || n_in > ((int64_t)1 << 31) || n_out > ((int64_t)1 << 31))
        return df_fail(DF_ERR_INVALID, "matmul: shape x [%lld][%lld], W [%lld][%lld] is not valid",
                       (long long)n_tok, (long long)n_in, (long long)n_out, (long long)n_in);
    const df_cpu_matmul_out o = {.w = w, .wtype = wtype, .n_out = n_out, .y = y};
    return df_cpu_matmul_many(pool, x, n_tok, n_in, &o, 1, scratch, scratch_size);
}
