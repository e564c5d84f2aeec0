/* The int8 small-batch matmul (cuda_mmq.cu) and the activation quantizer it reads
 * (cuda_quantize_act.cu).
 *
 * Quantized activations, written once per matmul call into the backend's qscratch buffer:
 * each token's row of n_in floats is cut into blocks of 32; block b of token t becomes 32
 * int8 q and a float pair {d, s}:
 *
 *     d = amax / 127 (amax = max |x| over the block),  q = roundf(x / d)  (0 when amax = 0),
 *     s = d * sum(q)       (what the formats with a min term need: sum(w) over the block
 *                           times the min is then one multiply)
 *
 * A block whose floats are not all finite gets d = s = NaN, so every output it feeds is NaN
 * (as f32 arithmetic would make it) instead of the non-finite value being rounded away.
 *
 * Layout (block-major, so that one warp load of a block for 8 tokens is 256 contiguous bytes):
 *     xq  [nb][ntp][32] int8         nb = n_in / 32, ntp = n_tok rounded up to 8
 *     xds [nb][ntp]     float2 {d, s}
 * Tokens n_tok..ntp-1 are written as zeros, so the matmul reads whole groups of 8 tokens with
 * no bounds checks. A token's values depend on that token's floats alone: how many tokens the
 * call has changes nothing (the batch invariance the verify step relies on). */
#ifndef DF_BACKEND_CUDA_MMQ_CUH
#define DF_BACKEND_CUDA_MMQ_CUH

#include "backend/cuda/cuda_internal.h"

/* Tokens per tensor-core column tile (the n of mma m16n8k32). */
#define CU_MMQ_TOK_TILE 8

static inline int cu_mmq_tok_pad(int n_tok) { return (n_tok + CU_MMQ_TOK_TILE - 1) / CU_MMQ_TOK_TILE * CU_MMQ_TOK_TILE; }

/* Quantizes x [n_tok][n_in] (n_in % 32 == 0, any alignment) into xq / xds as laid out above. */
df_status cu_quantize_act(cu_backend *cb, const float *x, int n_tok, int n_in, int8_t *xq, float2 *xds);

/* Whether cu_mmq computes this weight on this device: its type, sm_80 or newer (int8 tensor
 * cores), and data on a 16-byte boundary (the Q4_K / Q5_K loads are 16 and 8 bytes wide). */
bool cu_mmq_supported(const cu_backend *cb, const df_weight *w);

/* y [n_tok][n_out] = x [n_tok][n_in] W^T for 1 <= n_tok <= DF_CUDA_SMALL_BATCH; the caller has
 * checked the shapes and that the type is supported. */
df_status cu_mmq(cu_backend *cb, const float *x, int n_tok, const df_weight *w, size_t row_bytes, float *y);

/* The same in two steps, for several weights that read one x (matmul_many): the activations
 * quantized once (into the backend's qscratch, valid until the next quantize), then the
 * products y[i] = x W[i]^T, consecutive weights of one type in one launch. Each y[i] is what
 * cu_mmq computes for W[i] alone, bit for bit. */
typedef struct cu_mmq_act {
    int8_t *xq;
    float2 *xds;
    int n_tok, n_in;
    bool fresh; /* the quantizer is the last kernel on the stream (nothing launched since) */
} cu_mmq_act;
df_status cu_mmq_quantize(cu_backend *cb, const float *x, int n_tok, int n_in, cu_mmq_act *act);
df_status cu_mmq_run(cu_backend *cb, cu_mmq_act *act, int n, const df_weight *const *w,
                     const size_t *row_bytes, float *const *y);

/* Programmatic dependent launch (sm_90): a kernel launched with the attribute may start while
 * the previous kernel on the stream still runs; it must call cu_wait_for_producer before it
 * reads what that kernel wrote, and the previous kernel lets it start early with
 * cu_let_dependents_start. Both are no-ops below sm_90 and when not launched that way. */
__device__ __forceinline__ void cu_wait_for_producer(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void cu_let_dependents_start(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

#endif
