/* The CPU implementation of the op table: host memory, zero-copy weights (the mmapped GGUF
 * bytes are used in place), and the kernels of cpu_ops.h run on a persistent thread pool.
 *
 * Lanes: a pool runs one call at a time, so two sessions that share it must take turns. A
 * lane is a pool of its own plus its own scratch; a thread that binds a lane (lane_bind) runs
 * every op of this backend on it, so sessions bound to different lanes decode in parallel on
 * the same weights. A thread with no lane bound uses the backend's main lane. */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/alloc.h"

typedef struct cpu_lane {
    const df_backend *owner;
    df_pool *pool;
    void *scratch;        /* grown on demand, then reused: steady-state steps never allocate */
    size_t scratch_size;
} cpu_lane;

typedef struct cpu_backend {
    df_backend base;
    cpu_lane main;
} cpu_backend;

static _Thread_local cpu_lane *bound_lane;

/* The lane the calling thread runs this backend's ops on. */
static cpu_lane *lane_of(df_backend *be) {
    cpu_lane *l = bound_lane;
    return l && l->owner == be ? l : &((cpu_backend *)be->impl)->main;
}

static df_status scratch_reserve(cpu_lane *ln, size_t size) {
    if (size <= ln->scratch_size) return DF_OK;
    void *p = df_alloc_aligned(size);
    if (!p) return df_fail(DF_ERR_NOMEM, "cpu backend: cannot allocate %zu bytes of scratch", size);
    df_free_aligned(ln->scratch);
    ln->scratch = p;
    ln->scratch_size = size;
    return DF_OK;
}

static df_status lane_init(const df_backend *owner, int n_threads, cpu_lane *l) {
    l->owner = owner;
    return df_pool_create(n_threads, &l->pool);
}

static void lane_release(cpu_lane *l) {
    df_pool_destroy(l->pool);
    df_free_aligned(l->scratch);
}

static void cpu_destroy(df_backend *be) {
    cpu_backend *cb = (cpu_backend *)be->impl;
    lane_release(&cb->main);
    free(cb);
}

static df_status cpu_lane_create(df_backend *be, int n_threads, void **out) {
    *out = NULL;
    cpu_lane *l = calloc(1, sizeof *l);
    if (!l) return df_fail(DF_ERR_NOMEM, "cpu backend: out of memory");
    df_status st = lane_init(be, n_threads, l);
    if (st != DF_OK) {
        free(l);
        return st;
    }
    *out = l;
    return DF_OK;
}

static void cpu_lane_free(df_backend *be, void *lane) {
    if (!lane) return;
    if (bound_lane == lane) bound_lane = NULL;
    lane_release(lane);
    free(lane);
}

static void cpu_lane_bind(df_backend *be, void *lane) { bound_lane = lane; }

static df_status cpu_alloc(df_backend *be, size_t size, void **out) {
    *out = df_calloc_aligned(size);
    if (!*out) return df_fail(DF_ERR_NOMEM, "cpu backend: cannot allocate %zu bytes", size);
    return DF_OK;
}

static void cpu_free(df_backend *be, void *p) { df_free_aligned(p); }

static df_status cpu_memcpy(df_backend *be, void *dst, const void *src, size_t size) {
    if (size) memmove(dst, src, size);
    return DF_OK;
}

static df_status cpu_copy_2d(df_backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                             size_t width, size_t rows) {
    (void)be;
    if (!rows || !width) return DF_OK;
    if (!dst || !src || dst_pitch < width || src_pitch < width)
        return df_fail(DF_ERR_INVALID, "copy_2d: NULL buffer or a pitch (%zu, %zu) below the width %zu", dst_pitch,
                       src_pitch, width);
    for (size_t r = 0; r < rows; r++) memmove((char *)dst + r * dst_pitch, (const char *)src + r * src_pitch, width);
    return DF_OK;
}

/* Zero-copy: the op reads the host bytes (the mmapped GGUF) in place. Matrices the fastest
 * matmul kernel reads faster repacked also get a packed copy (cpu_pack.c), in impl. */
static df_status cpu_bind_weight(df_backend *be, const df_weight *host, df_weight *out) {
    *out = *host;
    out->impl = NULL;
    if (host->ne[1] > 1 && host->ne[2] == 1 && host->ne[3] == 1)
        out->impl = df_cpu_pack_weight(((cpu_backend *)be->impl)->main.pool, host->type, host->data,
                                       host->ne[0], host->ne[1]);
    return DF_OK;
}

static void cpu_unbind_weight(df_backend *be, df_weight *w) {
    df_cpu_packed_free(w->impl);
    w->impl = NULL;
    w->data = NULL;
}

static df_status cpu_sync(df_backend *be) { return DF_OK; }

static df_status cpu_get_rows(df_backend *be, const df_weight *table, const int32_t *ids,
                              int64_t n, float *out) {
    const df_type_traits *tt = df_type_get(table->type);
    size_t row_bytes;
    if (!tt || !tt->to_float || !df_type_row_size(table->type, table->ne[0], &row_bytes))
        return df_fail(DF_ERR_UNSUPPORTED, "get_rows: %s: cannot dequantize type %s",
                       table->name ? table->name : "table", df_type_name(table->type));
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= table->ne[1])
            return df_fail(DF_ERR_INVALID, "get_rows: token id %d outside the vocabulary of %lld",
                           ids[i], (long long)table->ne[1]);
        tt->to_float((const uint8_t *)table->data + (size_t)ids[i] * row_bytes,
                     out + i * table->ne[0], table->ne[0]);
    }
    return DF_OK;
}

static df_status cpu_matmul(df_backend *be, const float *x, int64_t n_tok, const df_weight *w,
                            float *y) {
    cpu_lane *ln = lane_of(be);
    DF_TRY(scratch_reserve(ln, df_cpu_matmul_scratch_size(w->type, n_tok, w->ne[0])));
    const df_cpu_matmul_out o = {.w = w->data, .wtype = w->type, .n_out = w->ne[1], .y = y, .packed = w->impl};
    df_status st = df_cpu_matmul_many(ln->pool, x, n_tok, w->ne[0], &o, 1, ln->scratch, ln->scratch_size);
    if (st != DF_OK && w->name) return df_fail_context(st, "%s", w->name);
    return st;
}

static df_status cpu_matmul_many(df_backend *be, const float *x, int64_t n_tok, int n,
                                 const df_weight *const *w, float *const *y) {
    if (n < 1 || n > DF_CPU_MATMUL_MANY_MAX)
        return df_fail(DF_ERR_INVALID, "matmul_many: %d weights (1..%d)", n, DF_CPU_MATMUL_MANY_MAX);
    df_cpu_matmul_out outs[DF_CPU_MATMUL_MANY_MAX];
    for (int i = 0; i < n; i++) {
        if (w[i]->ne[0] != w[0]->ne[0])
            return df_fail(DF_ERR_MISMATCH, "matmul_many: %s has rows of %lld, %s of %lld",
                           w[i]->name ? w[i]->name : "a weight", (long long)w[i]->ne[0],
                           w[0]->name ? w[0]->name : "the first", (long long)w[0]->ne[0]);
        outs[i] = (df_cpu_matmul_out){.w = w[i]->data, .wtype = w[i]->type, .n_out = w[i]->ne[1], .y = y[i],
                                      .packed = w[i]->impl};
    }
    cpu_lane *ln = lane_of(be);
    DF_TRY(scratch_reserve(ln, df_cpu_matmul_many_scratch_size(outs, n, n_tok, w[0]->ne[0])));
    df_status st = df_cpu_matmul_many(ln->pool, x, n_tok, w[0]->ne[0], outs, n, ln->scratch, ln->scratch_size);
    if (st != DF_OK && w[0]->name) return df_fail_context(st, "%s", w[0]->name);
    return st;
}

static df_status cpu_rmsnorm(df_backend *be, const float *x, int64_t xs, float *y, int64_t ys,
                             int64_t n_rows, int64_t dim, const float *w, float eps) {
    return df_cpu_rmsnorm(lane_of(be)->pool, x, xs, y, ys, n_rows, dim, w, eps);
}

static df_status cpu_rmsnorm_heads(df_backend *be, const df_heads *x, const float *w, float eps) {
    return df_cpu_rmsnorm_heads(lane_of(be)->pool, x, w, eps);
}

static df_status cpu_rmsnorm_gated(df_backend *be, const float *x, int64_t xs, const float *z,
                                   int64_t zs, float *y, int64_t ys, int64_t n_rows, int64_t dim,
                                   const float *w, float eps) {
    return df_cpu_rmsnorm_gated(lane_of(be)->pool, x, xs, z, zs, y, ys, n_rows, dim, w, eps);
}

static df_status cpu_l2norm_heads(df_backend *be, const df_heads *x, float eps) {
    return df_cpu_l2norm_heads(lane_of(be)->pool, x, eps);
}

static df_status cpu_add(df_backend *be, const float *a, const float *b, float *y, int64_t n) {
    return df_cpu_add(lane_of(be)->pool, a, b, y, n);
}

static df_status cpu_swiglu(df_backend *be, const float *gate, const float *up, float *y,
                            int64_t n) {
    return df_cpu_swiglu(lane_of(be)->pool, gate, up, y, n);
}

static df_status cpu_rope(df_backend *be, const df_heads *x, const int32_t *pos,
                          const float *inv_freq, int64_t rot_dim) {
    return df_cpu_rope(lane_of(be)->pool, x, pos, inv_freq, rot_dim);
}

static df_status cpu_attention(df_backend *be, const df_attn_args *args) {
    return df_cpu_attention(lane_of(be)->pool, args);
}

static df_status cpu_conv1d_silu(df_backend *be, const float *x, int64_t xs, int64_t n_tok,
                                 int64_t channels, const float *w, int64_t kernel, float *state,
                                 float *out, int64_t os, float *capture) {
    return df_cpu_conv1d_silu(lane_of(be)->pool, x, xs, n_tok, channels, w, kernel, state, out, os,
                              capture);
}

static df_status cpu_gdn_gates(df_backend *be, const float *a, const float *b,
                               const float *dt_bias, const float *ssm_a, int64_t n_tok,
                               int64_t n_v_head, float *g, float *beta) {
    return df_cpu_gdn_gates(a, b, dt_bias, ssm_a, n_tok, n_v_head, g, beta);
}

static df_status cpu_gdn_recurrent(df_backend *be, const df_gdn_args *args) {
    return df_cpu_gdn_recurrent(lane_of(be)->pool, args);
}

static df_status cpu_gdn_chunked(df_backend *be, const df_gdn_args *args) {
    cpu_lane *ln = lane_of(be);
    DF_TRY(scratch_reserve(ln, df_cpu_gdn_chunked_scratch_size(ln->pool, args->k.dim, args->v.dim)));
    return df_cpu_gdn_chunked(ln->pool, args, ln->scratch, ln->scratch_size);
}

static df_status cpu_state_to_f32(df_backend *be, float *dst, const void *src, df_state_type type,
                                  int64_t n) {
    if (type == DF_STATE_F32) memmove(dst, src, (size_t)n * sizeof(float));
    else df_fp16_to_f32_row(src, dst, (size_t)n);
    return DF_OK;
}

static df_status cpu_argmax_rows(df_backend *be, const float *x, int64_t n_rows, int64_t n,
                                 int64_t stride, int32_t *out) {
    /* the rows of a verify's logits shared out between the lane's threads */
    enum { CHUNK = 64 };
    int64_t best[CHUNK];
    for (int64_t r0 = 0; r0 < n_rows; r0 += CHUNK) {
        const int64_t m = n_rows - r0 < CHUNK ? n_rows - r0 : CHUNK;
        DF_TRY(df_cpu_argmax_rows(lane_of(be)->pool, x + r0 * stride, m, n, stride, best));
        for (int64_t r = 0; r < m; r++) out[r0 + r] = (int32_t)best[r];
    }
    return DF_OK;
}

static df_status cpu_kv_write(df_backend *be, df_kv_cache *cache, const df_heads *k_new,
                              const df_heads *v_new, int64_t row0) {
    return df_cpu_kv_write(lane_of(be)->pool, cache, k_new, v_new, row0);
}

/* The CPU reads the position at once (its buffers are host memory) and splits the rows
 * where the ring wraps. */
static df_status cpu_kv_write_ring(df_backend *be, df_kv_cache *cache, const df_heads *k_new,
                                   const df_heads *v_new, const int32_t *pos) {
    if (!cache || !k_new || !v_new || !pos)
        return df_fail(DF_ERR_INVALID, "kv_write_ring: cache, k_new, v_new or pos is NULL");
    const int64_t n = k_new->n_tok;
    if (pos[0] < 0 || cache->n_ctx <= 0 || n < 1 || n > cache->n_ctx || v_new->n_tok != n)
        return df_fail(DF_ERR_INVALID, "kv_write_ring: %lld rows at position %d do not fit a ring of %lld rows",
                       (long long)n, pos[0], (long long)cache->n_ctx);
    const int64_t row = pos[0] % cache->n_ctx, n1 = n < cache->n_ctx - row ? n : cache->n_ctx - row;
    df_heads k1 = *k_new, v1 = *v_new;
    k1.n_tok = v1.n_tok = n1;
    DF_TRY(cpu_kv_write(be, cache, &k1, &v1, row));
    if (n1 == n) return DF_OK;
    df_heads k2 = *k_new, v2 = *v_new;
    k2.data += n1 * k_new->tok_stride;
    v2.data += n1 * v_new->tok_stride;
    k2.n_tok = v2.n_tok = n - n1;
    return cpu_kv_write(be, cache, &k2, &v2, 0);
}

static df_status cpu_attention_window(df_backend *be, const df_window_attn_args *args) {
    return df_cpu_attention_window(lane_of(be)->pool, args);
}

static const df_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_memcpy,
    .copy_2d = cpu_copy_2d,
    .bind_weight = cpu_bind_weight,
    .unbind_weight = cpu_unbind_weight,
    .sync = cpu_sync,
    .get_rows = cpu_get_rows,
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .rmsnorm_heads = cpu_rmsnorm_heads,
    .rmsnorm_gated = cpu_rmsnorm_gated,
    .l2norm_heads = cpu_l2norm_heads,
    .add = cpu_add,
    .swiglu = cpu_swiglu,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .conv1d_silu = cpu_conv1d_silu,
    .gdn_gates = cpu_gdn_gates,
    .gdn_recurrent = cpu_gdn_recurrent,
    .gdn_chunked = cpu_gdn_chunked,
    .state_to_f32 = cpu_state_to_f32,
    .argmax_rows = cpu_argmax_rows,
    .kv_write = cpu_kv_write,
    .kv_write_ring = cpu_kv_write_ring,
    .attention_window = cpu_attention_window,
    .lane_create = cpu_lane_create,
    .lane_free = cpu_lane_free,
    .lane_bind = cpu_lane_bind,
    .matmul_many = cpu_matmul_many,
};

df_status df_backend_cpu_create(int n_threads, df_backend **out) {
    *out = NULL;
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb) return df_fail(DF_ERR_NOMEM, "cpu backend: out of memory");
    df_status st = lane_init(&cb->base, n_threads, &cb->main);
    if (st != DF_OK) {
        free(cb);
        return st;
    }
    cb->base.ops = &cpu_ops;
    cb->base.impl = cb;
    *out = &cb->base;
    return DF_OK;
}
