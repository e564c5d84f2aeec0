/* The op table: everything the model forward passes ask of a compute device. The qwen35
 * target and the DFlash drafter are written once against this table; the CPU backend
 * (backend/cpu/) and the CUDA backend (backend/cuda/) each implement every entry.
 *
 * Memory: activations, caches and states live in buffers the backend allocates (host memory
 * on the CPU, device memory on a GPU); pointers passed to ops are such buffers. Weights are
 * bound once with bind_weight (zero-copy from the mmapped GGUF on the CPU, an upload on a GPU).
 *
 * The argument structs (heads views, attention and GDN arguments) are the ones the CPU
 * kernels define in backend/cpu/cpu_ops.h; they describe shapes and strides, not where the
 * memory is, so they serve every backend. */
#ifndef DF_BACKEND_BACKEND_H
#define DF_BACKEND_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/cpu_draft_ops.h"
#include "backend/cpu/cpu_ops.h"
#include "base/status.h"
#include "quant/types.h"

typedef df_cpu_heads df_heads;
typedef df_cpu_kv_cache df_kv_cache;
typedef df_cpu_attn_args df_attn_args;
typedef df_cpu_gdn_args df_gdn_args;
typedef df_cpu_window_attn_args df_window_attn_args;

/* A weight matrix (or vector) as the backend holds it: ne[0] is the contiguous dimension
 * (the input features of a matrix), ne[1] the rows (output features). */
typedef struct df_weight {
    df_type type;
    int64_t ne[4];
    const void *data;   /* backend memory */
    size_t size;        /* bytes */
    const char *name;   /* the GGUF tensor name, for messages */
    /* The backend's own extra data for this weight, set by bind_weight and released by
     * unbind_weight (the CPU: a copy repacked for its fastest kernel); NULL when none.
     * Copies of a bound weight share it; unbind exactly one of them. */
    void *impl;
} df_weight;

typedef struct df_backend df_backend;

typedef struct df_backend_ops {
    const char *name;
    void (*destroy)(df_backend *be);

    /* memory */
    df_status (*alloc)(df_backend *be, size_t size, void **out);  /* zeroed */
    void (*free)(df_backend *be, void *p);
    df_status (*upload)(df_backend *be, void *dst, const void *src, size_t size);
    df_status (*download)(df_backend *be, void *dst, const void *src, size_t size);
    df_status (*copy)(df_backend *be, void *dst, const void *src, size_t size);
    /* rows rows of width bytes each, src_pitch and dst_pitch bytes apart (>= width): one call
     * where copying row by row would be one launch per row on a GPU. */
    df_status (*copy_2d)(df_backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                         size_t width, size_t rows);
    /* Makes host weight bytes usable by the ops; out keeps src's type and shape. */
    df_status (*bind_weight)(df_backend *be, const df_weight *host, df_weight *out);
    void (*unbind_weight)(df_backend *be, df_weight *w);
    df_status (*sync)(df_backend *be);

    /* ops (shapes as in backend/cpu/cpu_ops.h) */
    df_status (*get_rows)(df_backend *be, const df_weight *table, const int32_t *ids,
                          int64_t n, float *out);
    df_status (*matmul)(df_backend *be, const float *x, int64_t n_tok, const df_weight *w,
                        float *y);
    df_status (*rmsnorm)(df_backend *be, const float *x, int64_t x_stride, float *y,
                         int64_t y_stride, int64_t n_rows, int64_t dim, const float *w, float eps);
    df_status (*rmsnorm_heads)(df_backend *be, const df_heads *x, const float *w, float eps);
    df_status (*rmsnorm_gated)(df_backend *be, const float *x, int64_t x_stride, const float *z,
                               int64_t z_stride, float *y, int64_t y_stride, int64_t n_rows,
                               int64_t dim, const float *w, float eps);
    df_status (*l2norm_heads)(df_backend *be, const df_heads *x, float eps);
    df_status (*add)(df_backend *be, const float *a, const float *b, float *y, int64_t n);
    df_status (*swiglu)(df_backend *be, const float *gate, const float *up, float *y, int64_t n);
    df_status (*rope)(df_backend *be, const df_heads *x, const int32_t *pos,
                      const float *inv_freq, int64_t rot_dim);
    df_status (*attention)(df_backend *be, const df_attn_args *args);
    df_status (*conv1d_silu)(df_backend *be, const float *x, int64_t x_stride, int64_t n_tok,
                             int64_t channels, const float *w, int64_t kernel, float *state,
                             float *out, int64_t out_stride, float *capture);
    df_status (*gdn_gates)(df_backend *be, const float *a, const float *b, const float *dt_bias,
                           const float *ssm_a, int64_t n_tok, int64_t n_v_head, float *g,
                           float *beta);
    /* The recurrent form is batch-invariant (token t's result does not depend on how many
     * tokens share the call), which verify needs to match decode bit for bit; the chunked
     * form is faster for long prefills. */
    df_status (*gdn_recurrent)(df_backend *be, const df_gdn_args *args);
    df_status (*gdn_chunked)(df_backend *be, const df_gdn_args *args);
    /* dst = src as f32 (src f32 or f16): restores a captured state into a live one. */
    df_status (*state_to_f32)(df_backend *be, float *dst, const void *src, df_state_type type,
                              int64_t n);
    df_status (*argmax_rows)(df_backend *be, const float *x, int64_t n_rows, int64_t n,
                             int64_t stride, int32_t *out);

    /* For the DFlash drafter (model/dflash_*.c). kv_write stores K/V rows without attending
     * (the drafter projects committed context rows into its cache ahead of any query);
     * attention_window attends over a ring cache with per-query position ranges (causal,
     * sliding window): backend/cpu/cpu_draft_ops.h. */
    df_status (*kv_write)(df_backend *be, df_kv_cache *cache, const df_heads *k_new,
                          const df_heads *v_new, int64_t row0);
    /* The same into a ring at positions read from a buffer when the work runs (so that a
     * recording replays at any position): the rows of positions pos[0] .. pos[0] + n - 1,
     * position p in row p % cache->n_ctx (n <= n_ctx; the rows may wrap). */
    df_status (*kv_write_ring)(df_backend *be, df_kv_cache *cache, const df_heads *k_new,
                               const df_heads *v_new, const int32_t *pos);
    df_status (*attention_window)(df_backend *be, const df_window_attn_args *args);

    /* Optional (NULL where a backend has none): lanes let several threads run ops on one
     * backend at once. lane_create makes an execution lane of n_threads (the CPU: its own
     * thread pool and scratch); lane_bind(be, lane) makes the calling thread run this
     * backend's ops on that lane until it binds another (NULL: the backend's main lane). */
    df_status (*lane_create)(df_backend *be, int n_threads, void **lane);
    void (*lane_free)(df_backend *be, void *lane);
    void (*lane_bind)(df_backend *be, void *lane);

    /* Optional (NULL where a backend has none): recorded replay (CUDA graphs). graph_begin
     * makes the ops the calling thread issues be recorded instead of run; graph_end stops and
     * returns the recording in *graph (on failure NULL: the ops issued in between did not
     * run). graph_launch runs a recording again: the same kernels with the same arguments on
     * the same buffers, reading what those buffers hold now (so whatever changes from one run
     * to the next, token ids and positions, must live in buffers). It sets *stale and runs
     * nothing when the backend has since moved a buffer the recording uses (a scratch buffer
     * grew): the caller records again. */
    df_status (*graph_begin)(df_backend *be);
    df_status (*graph_end)(df_backend *be, void **graph);
    df_status (*graph_launch)(df_backend *be, void *graph, bool *stale);
    void (*graph_free)(df_backend *be, void *graph);
    /* Optional (NULL: call matmul once per weight): y[i] = x W[i]^T for n <= 8 weights that
     * read the same x (the q/k/v or gate/up projections of a layer; every W[i]->ne[0] is the
     * row length of x). Each y[i] is bitwise what matmul gives for W[i] alone; the CPU
     * converts x once and shares all the matrices' rows out in one parallel pass. */
    df_status (*matmul_many)(df_backend *be, const float *x, int64_t n_tok, int n,
                             const df_weight *const *w, float *const *y);
} df_backend_ops;

struct df_backend {
    const df_backend_ops *ops;
    void *impl;
};

/* The CPU backend on a pool of n_threads (0: one per online CPU). */
df_status df_backend_cpu_create(int n_threads, df_backend **out);

#ifdef DFLASH_HAVE_CUDA
/* The CUDA backend on device `device` (backend/cuda/). DF_ERR_UNSUPPORTED with "no CUDA
 * device: ..." when the machine has none (a build with CUDA running where there is no GPU). */
df_status df_backend_cuda_create(int device, df_backend **out);
/* Tells a CUDA backend how many bytes of weights bind_weight is about to upload, so that it
 * shows a progress bar on stderr; 0 ends the bar (the model is loaded). Ignored by other
 * backends. */
void df_backend_cuda_expect_upload(df_backend *be, uint64_t bytes);
/* "cuda:N (device name)" for a CUDA backend, NULL for others. */
const char *df_backend_cuda_device_name(df_backend *be);
#endif

/* y[i] = x W[i]^T for k weights that read the same x: one matmul_many call where the backend
 * has it (the CPU converts x once and runs all the matrices' rows in one parallel pass), else
 * one matmul each. The results are the same either way. */
static inline df_status df_backend_matmuls(df_backend *be, const float *x, int64_t n_tok, int k,
                                           const df_weight *const *w, float *const *y) {
    if (be->ops->matmul_many) return be->ops->matmul_many(be, x, n_tok, k, w, y);
    for (int i = 0; i < k; i++) DF_TRY(be->ops->matmul(be, x, n_tok, w[i], y[i]));
    return DF_OK;
}

static inline void df_backend_destroy(df_backend *be) {
    if (be) be->ops->destroy(be);
}

#endif
