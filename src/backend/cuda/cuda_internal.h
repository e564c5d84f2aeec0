/* Shared by the CUDA backend's .cu files only: the backend object, error handling, launch
 * helpers, and the entry points of each kernel family (one file each).
 *
 * Conventions (the CPU kernels in backend/cpu/ are the reference for every op's meaning):
 * - One stream per backend; every kernel and copy goes on it, so ops are ordered exactly as
 *   the model calls them and no op waits for the host. Only download and sync wait.
 * - Host-side argument checks mirror the CPU ones and return DF_ERR_INVALID / MISMATCH with
 *   the op named; nothing aborts. A failed launch becomes a df_status naming the op and
 *   cudaGetErrorString; an error raised later by the device (an illegal address, say) is
 *   reported by the next download or sync, naming the last op launched.
 * - Ops never allocate except the backend's scratch buffers, which grow to the largest
 *   request seen and are then reused (the CPU backend does the same).
 * - Every op computes token t the same way whatever the number of tokens in the call, up to
 *   DF_CUDA_SMALL_BATCH tokens: a verify of B tokens reproduces B decode steps bit for bit. */
#ifndef DF_BACKEND_CUDA_INTERNAL_H
#define DF_BACKEND_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "backend/backend.h"
#include "base/status.h"
#include "quant/blocks.h"
}

/* Calls of at most this many tokens take the batch-invariant paths (weight-streaming matmul,
 * split attention); longer ones (prefill) take dequantize + cuBLAS GEMM (TF32) and one attention
 * block per (token, head). It matches DF_QWEN35_GDN_CHUNKED_MIN and the logits row limit. */
#define DF_CUDA_SMALL_BATCH 64

typedef struct cu_backend {
    df_backend base;
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    const char *last_op;       /* the last op launched, for errors the device reports later */
    void *scratch;             /* attention partials (split ranges) */
    size_t scratch_size;
    void *wscratch;            /* a dequantized chunk of weight rows (GEMM path) */
    size_t wscratch_size;
    void *qscratch;            /* activations quantized to int8 (cuda_mmq.cu) */
    size_t qscratch_size;
    int cc_major, n_sm;        /* compute capability (major) and multiprocessor count */
    /* upload progress (bind_weight) */
    uint64_t up_total, up_done;
    double up_t0;
    int up_last;               /* last permille (terminal) or tenth (log) printed */
    bool up_tty, up_active;
    char device_name[128];
    /* CUDA graphs (cuda_graph.cu): a recording is under way on this backend's stream; the
     * scratch generation counts reallocations of any scratch buffer, since a recording keeps
     * the addresses it saw. */
    bool capturing;
    uint64_t scratch_gen;
    struct cu_prof *prof;      /* DFLASH_CUDA_PROFILE=1 (cuda_profile.cu), else NULL */
} cu_backend;

static inline cu_backend *cu_impl(df_backend *be) { return (cu_backend *)be->impl; }

/* ---- errors and launches ---- */

/* df_fail with "cuda <op>: <what>: <cudaGetErrorString>". */
df_status cu_fail(cudaError_t e, const char *op, const char *what);
/* Checks the launch just made (cudaGetLastError) and records op as the last one. */
df_status cu_check_launch(cu_backend *cb, const char *op);
/* Makes this backend's device current on the calling thread (the server calls from several). */
df_status cu_enter(cu_backend *cb, const char *op);
/* Grows the general scratch buffer to at least size bytes (waits for the stream). */
df_status cu_scratch(cu_backend *cb, size_t size, const char *op, void **out);
df_status cu_wscratch(cu_backend *cb, size_t size, const char *op, void **out);
df_status cu_qscratch(cu_backend *cb, size_t size, const char *op, void **out);

static inline unsigned cu_blocks(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

/* The same checks as the CPU kernels' view check: data set, sizes positive, strides wide
 * enough that heads and tokens do not overlap. */
df_status cu_check_heads(const char *op, const char *name, const df_heads *h);

/* A heads view as kernels take it (pointer + int strides). */
typedef struct cu_heads {
    float *data;
    int n_tok, n_head, dim;
    long long tok_stride, head_stride;
} cu_heads;

static inline cu_heads cu_heads_of(const df_heads *h) {
    cu_heads v = {h->data, (int)h->n_tok, (int)h->n_head, (int)h->dim, (long long)h->tok_stride,
                  (long long)h->head_stride};
    return v;
}

__device__ __forceinline__ float *cu_head_ptr(const cu_heads &h, int t, int hd) {
    return h.data + (long long)t * h.tok_stride + (long long)hd * h.head_stride;
}

__device__ __forceinline__ float cu_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float cu_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* The same formulas as the CPU's df_sigmoidf / df_siluf (expf, not the fast intrinsic). */
__device__ __forceinline__ float cu_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float cu_silu(float x) { return x / (1.0f + expf(-x)); }

/* ---- ops, one family per file ---- */

/* cuda_dequant.cu */
bool cu_type_supported(df_type t);
df_status cu_get_rows(df_backend *be, const df_weight *table, const int32_t *ids, int64_t n, float *out);
/* Rows [row0, row0 + n_rows) of w as f32 into dst ([n_rows][ne0]); ne0 % 8 == 0. */
df_status cu_dequant_rows(cu_backend *cb, const df_weight *w, int64_t row0, int64_t n_rows, float *dst);

/* cuda_matmul.cu */
df_status cu_matmul(df_backend *be, const float *x, int64_t n_tok, const df_weight *w, float *y);
df_status cu_matmul_many(df_backend *be, const float *x, int64_t n_tok, int n, const df_weight *const *w,
                         float *const *y);

/* cuda_norm.cu */
df_status cu_rmsnorm(df_backend *be, const float *x, int64_t xs, float *y, int64_t ys, int64_t n_rows,
                     int64_t dim, const float *w, float eps);
df_status cu_rmsnorm_heads(df_backend *be, const df_heads *x, const float *w, float eps);
df_status cu_rmsnorm_gated(df_backend *be, const float *x, int64_t xs, const float *z, int64_t zs,
                           float *y, int64_t ys, int64_t n_rows, int64_t dim, const float *w, float eps);
df_status cu_l2norm_heads(df_backend *be, const df_heads *x, float eps);

/* cuda_elementwise.cu */
df_status cu_add(df_backend *be, const float *a, const float *b, float *y, int64_t n);
df_status cu_swiglu(df_backend *be, const float *gate, const float *up, float *y, int64_t n);
df_status cu_argmax_rows(df_backend *be, const float *x, int64_t n_rows, int64_t n, int64_t stride,
                         int32_t *out);
df_status cu_state_to_f32(df_backend *be, float *dst, const void *src, df_state_type type, int64_t n);

/* cuda_rope.cu */
df_status cu_rope(df_backend *be, const df_heads *x, const int32_t *pos, const float *inv_freq,
                  int64_t rot_dim);

/* cuda_attention.cu */
df_status cu_kv_write(df_backend *be, df_kv_cache *cache, const df_heads *k_new, const df_heads *v_new,
                      int64_t row0);
df_status cu_attention(df_backend *be, const df_attn_args *args);
df_status cu_attention_window(df_backend *be, const df_window_attn_args *args);
df_status cu_kv_write_ring(df_backend *be, df_kv_cache *cache, const df_heads *k_new, const df_heads *v_new,
                           const int32_t *pos);

/* cuda_conv.cu */
df_status cu_conv1d_silu(df_backend *be, const float *x, int64_t xs, int64_t n_tok, int64_t channels,
                         const float *w, int64_t kernel, float *state, float *out, int64_t os,
                         float *capture);

/* cuda_profile.cu: per-op kernel times when DFLASH_CUDA_PROFILE=1 (no-ops otherwise) */
typedef struct cu_prof cu_prof;
void cu_prof_init(cu_backend *cb);
void cu_prof_begin(cu_backend *cb);
void cu_prof_end(cu_backend *cb, const char *op);
void cu_prof_report(cu_backend *cb);

/* cuda_graph.cu: the op table's graph hooks */
df_status cu_graph_begin(df_backend *be);
df_status cu_graph_end(df_backend *be, void **graph);
df_status cu_graph_launch(df_backend *be, void *graph, bool *stale);
void cu_graph_free(df_backend *be, void *graph);

/* cuda_gdn.cu */
df_status cu_gdn_gates(df_backend *be, const float *a, const float *b, const float *dt_bias,
                       const float *ssm_a, int64_t n_tok, int64_t n_v_head, float *g, float *beta);
df_status cu_gdn_recurrent(df_backend *be, const df_gdn_args *args);
bool cu_gdn_recurrent_fixed(int64_t dk);
/* The argument checks of both GDN entries (q/k/v/out views, head counts, d_k <= 256, ...). */
df_status cu_gdn_check(const char *op, const df_gdn_args *a);
/* What both GDN kernels take of df_gdn_args, in device form (q_scale resolved). */
typedef struct cu_gdn_args {
    cu_heads q, k, v, out;
    const float *g, *beta;
    float *state;
    const float *state_in; /* NULL, or the state the call starts from (df_gdn_args) */
    float *state_save;     /* NULL, or where the starting state is also written */
    void *capture;
    int cap_f16;
    int tiled; /* head map: 1 tiled (h % n_k_head), 0 grouped (h / ratio) */
    float q_scale;
} cu_gdn_args;
cu_gdn_args cu_gdn_args_of(const df_gdn_args *a);

/* cuda_gdn_chunked.cu: the chunked form for calls of >= 64 tokens (prefill); shorter calls,
 * or DFLASH_CUDA_GDN_CHUNKED=0, go to cu_gdn_recurrent; so do key heads of 64 / 128, whose
 * fixed-shape recurrent kernel is the faster one, unless DFLASH_CUDA_GDN_CHUNKED=1 */
df_status cu_gdn_chunked(df_backend *be, const df_gdn_args *args);

#endif
