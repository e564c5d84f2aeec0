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
 * scalar level uses the scalar traits table for everything: the plain reference. */
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "base/alloc.h"
#include "quant/mdot.h"

enum { MM_TOKEN_BLOCK = 16, MM_ROW_BLOCK_BYTES = 256 * 1024, MM_ROW_GROUP = 16 };

typedef struct {
    const float *x;
    const char *w;
    float *y;
    int64_t n_tok, n_in, n_out;
    size_t w_row_bytes;
    df_type wtype;
    df_vec_dot_fn vec_dot;   /* quantized path, one token at a time */
    const df_mdot *mdot;     /* quantized path, many tokens at a time (NULL: use vec_dot) */
    const char *xq;          /* quantized activations, xq_stride bytes per token */
    size_t xq_stride;
    const df_type_traits *act; /* vec_dot_type traits for the quantize step */
} mm_ctx;

static size_t round_up64(size_t n) { return (n + 63) / 64 * 64; }

static void quantize_task(void *p, int task, int n_tasks) {
    const mm_ctx *c = p;
    int64_t lo, hi;
    df_cpu_task_range(c->n_tok, task, n_tasks, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        void *dst = (void *)(c->xq + (size_t)t * c->xq_stride);
        if (c->mdot) c->mdot->quantize(c->x + t * c->n_in, dst, c->n_in);
        else c->act->from_float(c->x + t * c->n_in, dst, c->n_in);
    }
}

static bool own_float_type(df_type t) {
    return t == DF_TYPE_F32 || t == DF_TYPE_F16 || t == DF_TYPE_BF16;
}

/* Float weights: tiles of 4 rows x 2 tokens (df_cpu_kernels.mm_tile), so a W vector is loaded
 * once per token pair and eight FMA chains run side by side. */
static void matmul_float_rows(const mm_ctx *c, const df_cpu_kernels *K, int64_t lo, int64_t hi,
                              int64_t t0, int64_t t1) {
    for (int64_t r = lo; r < hi; r += 4) {
        const int nr = hi - r < 4 ? (int)(hi - r) : 4;
        const char *wr = c->w + (size_t)r * c->w_row_bytes;
        for (int64_t t = t0; t < t1; t += 2) {
            const int nt = t1 - t < 2 ? (int)(t1 - t) : 2;
            K->mm_tile(c->wtype, wr, c->w_row_bytes, nr, c->x + t * c->n_in, c->n_in, nt, c->n_in,
                       c->y + t * c->n_out + r, c->n_out);
        }
    }
}

static void matmul_task(void *p, int task, int n_tasks) {
    const mm_ctx *c = p;
    const df_cpu_kernels *K = df_cpu_kernels_get();
    /* rows in whole groups of MM_ROW_GROUP where possible: the AVX-512 kernels work on tiles
     * of 16 rows (a cut elsewhere costs a partial tile, never a different result) */
    int64_t lo, hi;
    df_cpu_task_range((c->n_out + MM_ROW_GROUP - 1) / MM_ROW_GROUP, task, n_tasks, &lo, &hi);
    lo = lo * MM_ROW_GROUP < c->n_out ? lo * MM_ROW_GROUP : c->n_out;
    hi = hi * MM_ROW_GROUP < c->n_out ? hi * MM_ROW_GROUP : c->n_out;
    for (int64_t t0 = 0; t0 < c->n_tok; t0 += MM_TOKEN_BLOCK) {
        const int64_t t1 = c->n_tok - t0 < MM_TOKEN_BLOCK ? c->n_tok : t0 + MM_TOKEN_BLOCK;
        if (own_float_type(c->wtype)) {
            matmul_float_rows(c, K, lo, hi, t0, t1);
            continue;
        }
        if (c->mdot) {
            if (hi > lo)
                c->mdot->dot(c->w + (size_t)lo * c->w_row_bytes, c->w_row_bytes, hi - lo,
                             c->xq + (size_t)t0 * c->xq_stride, c->xq_stride, (int)(t1 - t0), c->n_in,
                             c->y + t0 * c->n_out + lo, c->n_out);
            continue;
        }
        for (int64_t r = lo; r < hi; r++) {
            const void *wr = c->w + (size_t)r * c->w_row_bytes;
            float *y = c->y + r;
            if (c->xq) {
                for (int64_t t = t0; t < t1; t++)
                    y[t * c->n_out] = c->vec_dot(wr, c->xq + (size_t)t * c->xq_stride, c->n_in);
            } else {
                for (int64_t t = t0; t < t1; t++) y[t * c->n_out] = c->vec_dot(wr, c->x + t * c->n_in, c->n_in);
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

df_status df_cpu_matmul(df_pool *pool, const float *x, int64_t n_tok, int64_t n_in,
                        const void *w, df_type wtype, int64_t n_out, float *y, void *scratch,
                        size_t scratch_size) {
    if (!x || !w || !y) return df_fail(DF_ERR_INVALID, "matmul: x, w or y is NULL");
    if (n_tok <= 0 || n_in <= 0 || n_out <= 0 || n_in > ((int64_t)1 << 31) || n_out > ((int64_t)1 << 31))
        return df_fail(DF_ERR_INVALID, "matmul: shape x [%lld][%lld], W [%lld][%lld] is not valid",
                       (long long)n_tok, (long long)n_in, (long long)n_out, (long long)n_in);
    const df_type_traits *wt = traits_for(wtype);
    if (!wt) return df_fail(DF_ERR_UNSUPPORTED, "matmul: unknown weight type id %d", (int)wtype);
    if (!own_float_type(wtype) && !wt->vec_dot)
        return df_fail(DF_ERR_UNSUPPORTED, "matmul: no dot product for weights of type %s", wt->name);
    size_t w_row;
    if (!df_type_row_size(wtype, n_in, &w_row))
        return df_fail(DF_ERR_INVALID, "matmul: a row of %lld elements is not a whole number of %s blocks (%d)",
                       (long long)n_in, wt->name, wt->block_size);
    size_t xq_row;
    if (!act_row_bytes(wtype, n_in, &xq_row))
        return df_fail(DF_ERR_INVALID, "matmul: %lld elements do not fit the activation type of %s",
                       (long long)n_in, wt->name);

    mm_ctx c = {.x = x, .w = w, .y = y, .n_tok = n_tok, .n_in = n_in, .n_out = n_out,
                .w_row_bytes = w_row, .wtype = wtype, .vec_dot = wt->vec_dot, .xq_stride = xq_row};
    if (xq_row) {
        const df_type_traits *act = traits_for(wt->vec_dot_type);
        if (!act || !act->from_float)
            return df_fail(DF_ERR_UNSUPPORTED, "matmul: cannot convert activations to %s for %s weights",
                           df_type_name(wt->vec_dot_type), wt->name);
        const size_t need = df_cpu_matmul_scratch_size(wtype, n_tok, n_in);
        if (!scratch || scratch_size < need)
            return df_fail(DF_ERR_INVALID, "matmul: %s weights need %zu bytes of scratch, got %zu",
                           wt->name, need, scratch ? scratch_size : (size_t)0);
        if ((uintptr_t)scratch % 16)
            return df_fail(DF_ERR_INVALID, "matmul: scratch must be 16-byte aligned");
        c.act = act;
        c.mdot = mdot_for(wtype);
        c.xq = scratch;
        df_pool_run(pool, quantize_task, &c, df_cpu_task_count(pool, n_tok, n_in * 4));
    }

    int n_tasks = df_cpu_task_count(pool, n_out, n_tok * n_in * 2);
    if (n_tok > MM_TOKEN_BLOCK) {
        /* keep each task's rows small enough to stay in L2 across token blocks */
        const double w_bytes = (double)w_row * (double)n_out;
        double want = w_bytes / MM_ROW_BLOCK_BYTES + 1.0;
        if (want > (double)n_out) want = (double)n_out;
        if ((double)n_tasks < want) n_tasks = (int)want;
    }
    const int64_t groups = (n_out + MM_ROW_GROUP - 1) / MM_ROW_GROUP;
    if (n_tasks > groups) n_tasks = (int)groups;
    df_pool_run(pool, matmul_task, &c, n_tasks);
    return DF_OK;
}
