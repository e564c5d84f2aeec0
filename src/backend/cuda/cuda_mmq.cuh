/* The int8 small-batch matmul (cuda_mmq.cu) and the activation quantizer it reads
 * (cuda_quantize_act.cu).
 *
 * Quantized activations, written once per matmul call into the backend's qscratch buffer, in
 * one of two forms (a call may need both: each is made the first time a weight asks for it).
 *
 * Blocks of 32 (Q8_0, Q4_0: their weights have a scale per 32 elements): each token's row of
 * n_in floats is cut into blocks of 32; block b of token t becomes 32 int8 q and a float pair:
 *
 *     d = amax / 127 (amax = max |x| over the block),  q = roundf(x / d)  (0 when amax = 0),
 *     s = d * sum(q)       (the min term of a format with one is then one multiply)
 *
 * Super-blocks of 256 (Q4_K, Q5_K, Q6_K): the same rounding with one d per 256 elements, and
 * the integer sum of q over each of its eight 32-element sub-blocks (int16: |sum| <= 32 * 127).
 * One scale per super-block is what lets the matmul add a K-quant's eight sub-block products
 * (each times its 6- or 8-bit integer scale) in integers and do its float arithmetic once per
 * 256 weights instead of once per 32; the CPU's K-quant dots round x the same way (q8_K).
 *
 * A block whose floats are not all finite gets d = s = NaN (and sums 0), so every output it
 * feeds is NaN (as f32 arithmetic would make it) instead of the non-finite value being rounded
 * away.
 *
 * Layout (block-major, so that one warp load of a 32-block for 8 tokens is 256 contiguous
 * bytes), nb = n_in / 32, nsb = n_in / 256, ntp = n_tok rounded up to 8:
 *     xq  [nb][ntp][32] int8         (both forms; the super-block form's own copy)
 *     xds [nb][ntp]     float2 {d, s}                    blocks of 32
 *     xd  [nsb][ntp]    float d                          super-blocks
 *     xbs [nsb][ntp][8] int16 sub-block sums of q        super-blocks
 * Tokens n_tok..ntp-1 are written as zeros. A token's values depend on that token's floats
 * alone: how many tokens the call has changes nothing (the batch invariance the verify step
 * relies on). */
#ifndef DF_BACKEND_CUDA_MMQ_CUH
#define DF_BACKEND_CUDA_MMQ_CUH

#include "backend/cuda/cuda_internal.h"

/* Tokens per tensor-core column tile (the n of mma m16n8k32). */
#define CU_MMQ_TOK_TILE 8

static inline int cu_mmq_tok_pad(int n_tok) { return (n_tok + CU_MMQ_TOK_TILE - 1) / CU_MMQ_TOK_TILE * CU_MMQ_TOK_TILE; }

/* Quantizes x [n_tok][n_in] (n_in % 32 == 0, any alignment) into xq / xds (blocks of 32). */
df_status cu_quantize_act(cu_backend *cb, const float *x, int n_tok, int n_in, int8_t *xq, float2 *xds);
/* The same into xq / xd / xbs (super-blocks of 256; n_in % 256 == 0). */
df_status cu_quantize_act_sb(cu_backend *cb, const float *x, int n_tok, int n_in, int8_t *xq, float *xd,
                             int16_t *xbs);

/* Whether cu_mmq computes this weight on this device: its type, sm_80 or newer (int8 tensor
 * cores), and data on a 16-byte boundary (the Q4_K / Q5_K loads are 16 and 8 bytes wide). */
bool cu_mmq_supported(const cu_backend *cb, const df_weight *w);

/* y [n_tok][n_out] = x [n_tok][n_in] W^T for 1 <= n_tok <= DF_CUDA_SMALL_BATCH; the caller has
 * checked the shapes and that the type is supported. */
df_status cu_mmq(cu_backend *cb, const float *x, int n_tok, const df_weight *w, size_t row_bytes, float *y);

/* The same in two steps, for several weights that read one x (matmul_many): cu_mmq_prepare
 * takes the scratch for the quantized activations (the backend's qscratch, valid until the
 * next prepare), then cu_mmq_run computes y[i] = x W[i]^T, quantizing x into the form the
 * weights need the first time they need it, consecutive weights of one type in one launch.
 * Each y[i] is what cu_mmq computes for W[i] alone, bit for bit. */
typedef struct cu_mmq_act {
    const float *x;
    int n_tok, n_in;
    int8_t *xq;      /* blocks of 32 */
    float2 *xds;
    int8_t *xq_sb;   /* super-blocks of 256 (NULL when n_in % 256) */
    float *xd_sb;
    int16_t *xbs_sb;
    bool has_blocks, has_sb; /* which forms are written */
    bool fresh;              /* a quantizer is the last kernel on the stream (nothing launched since) */
} cu_mmq_act;
df_status cu_mmq_prepare(cu_backend *cb, const float *x, int n_tok, int n_in, cu_mmq_act *act);
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
