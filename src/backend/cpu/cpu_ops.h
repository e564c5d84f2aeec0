/* The float kernels of the Qwen3.5 (`qwen35`) forward pass on the CPU: norms, elementwise
 * activations, partial RoPE, gated attention over a KV cache, the GDN short convolution, the
 * Gated DeltaNet recurrence (step and chunked forms, with per-token state capture for
 * speculative rollback) and the weight matmul.
 *
 * Conventions shared by every kernel here:
 * - Row-major float32 tensors. Sizes and strides are counted in elements, never bytes.
 * - A NULL pool runs everything on the calling thread; kernels split work into tasks only
 *   where it is large enough to pay for waking the workers.
 * - Kernels never allocate. The few that need working memory take a caller-owned scratch
 *   buffer whose size a df_cpu_*_scratch_size() function returns.
 * - Bad arguments return DF_ERR_INVALID with a message naming the kernel and the argument;
 *   nothing aborts.
 * - Results for one token never depend on how many other tokens share the batch (except
 *   the chunked GDN form, see there): a 16-token verify computes token t exactly as a
 *   one-token decode step would, which keeps greedy speculative decoding byte-identical
 *   to plain autoregressive decoding.
 *
 * Semantics follow transformers' Qwen3_5 classes (modeling_qwen3_5.py), with the GGUF
 * conventions of llama.cpp's converter noted where they differ. */
#ifndef DF_BACKEND_CPU_OPS_H
#define DF_BACKEND_CPU_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/fp16.h"
#include "base/status.h"
#include "base/threadpool.h"
#include "quant/types.h"

/* ---- SIMD level ---------------------------------------------------------------------- */

/* The hot loops have a portable scalar version and an AVX2+FMA+F16C version. The best
 * supported level is picked at first use; tests force each level to compare them. The
 * AVX-512 level (F, BW, VL, VNNI) is the AVX2 one with AVX-512 quantized matmul kernels;
 * levels are ordered, and a CPU that supports one supports those below it. */
typedef enum df_cpu_simd {
    DF_CPU_SIMD_SCALAR = 0,
    DF_CPU_SIMD_AVX2 = 1,
    DF_CPU_SIMD_AVX512 = 2,
} df_cpu_simd;

df_cpu_simd df_cpu_simd_best(void);             /* what this CPU supports */
df_cpu_simd df_cpu_simd_get(void);              /* what the kernels use now */
df_status df_cpu_simd_set(df_cpu_simd level);   /* DF_ERR_UNSUPPORTED if the CPU lacks it */
const char *df_cpu_simd_name(df_cpu_simd level);

/* ---- a view of per-head vectors -------------------------------------------------------- */

/* [n_tok][n_head][dim] floats where consecutive tokens are tok_stride apart and consecutive
 * heads head_stride apart (dim <= head_stride). This describes both packed tensors and views
 * into fused projections without copying, e.g. the query part of the attention q_proj output
 * (per head [q | gate]: head_stride = 2 * head_dim) or the q/k/v parts of the GDN conv
 * output (tok_stride = conv channels). Kernels that only read a view do not write through it. */
typedef struct df_cpu_heads {
    float *data;
    int64_t n_tok, n_head, dim;
    int64_t tok_stride, head_stride;
} df_cpu_heads;

/* A packed [n_tok][n_head][dim] view. */
df_cpu_heads df_cpu_heads_packed(float *data, int64_t n_tok, int64_t n_head, int64_t dim);

/* ---- norms (cpu_norm.c) ---------------------------------------------------------------- */

/* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for n_rows rows of dim elements.
 * w may be NULL (no weight). y may equal x (same stride). This is the plain form; the HF
 * Qwen3.5 RMSNorm computes x * (1 + w) and converters (llama.cpp's and ours) store 1 + w. */
df_status df_cpu_rmsnorm(df_pool *pool, const float *x, int64_t x_stride, float *y,
                         int64_t y_stride, int64_t n_rows, int64_t dim, const float *w, float eps);

/* The same RMSNorm applied in place to every head of a view (attention q_norm / k_norm:
 * one weight vector of head dim shared by all heads). */
df_status df_cpu_rmsnorm_heads(df_pool *pool, const df_cpu_heads *x, const float *w, float eps);

/* The GDN output norm: y = x / sqrt(mean(x^2) + eps) * w * silu(z), per row of dim
 * (dim = head_v_dim, rows = tokens * value heads). No (1 + w) offset on this one, in HF
 * and in GGUF files alike. y may equal x. */
df_status df_cpu_rmsnorm_gated(df_pool *pool, const float *x, int64_t x_stride, const float *z,
                               int64_t z_stride, float *y, int64_t y_stride, int64_t n_rows,
                               int64_t dim, const float *w, float eps);

/* In place, per head: x = x / sqrt(sum(x^2) + eps), as HF's l2norm (eps 1e-6) does.
 * llama.cpp's ggml_l2_norm divides by max(norm, eps) instead (eps = rms_norm_eps); the two
 * agree to ~eps / (2 * sum(x^2)) relative, far below float resolution for real activations. */
df_status df_cpu_l2norm_heads(df_pool *pool, const df_cpu_heads *x, float eps);

/* ---- elementwise (cpu_elementwise.c) ----------------------------------------------------- */

/* y = a + b (the residual add); y may equal a or b. */
df_status df_cpu_add(df_pool *pool, const float *a, const float *b, float *y, int64_t n);
/* y = silu(x) = x * sigmoid(x); y may equal x. */
df_status df_cpu_silu(df_pool *pool, const float *x, float *y, int64_t n);
/* y = silu(gate) * up (SwiGLU); y may equal gate or up. */
df_status df_cpu_swiglu(df_pool *pool, const float *gate, const float *up, float *y, int64_t n);
/* y = 1 / (1 + exp(-x)); y may equal x. */
df_status df_cpu_sigmoid(df_pool *pool, const float *x, float *y, int64_t n);
/* y = log(1 + exp(x)), and x itself above 20 (torch's default threshold); y may equal x. */
df_status df_cpu_softplus(df_pool *pool, const float *x, float *y, int64_t n);
/* In place, per row: x = exp(x - max) / sum(exp(x - max)). -inf entries get probability 0;
 * a row that is all -inf or contains NaN or +inf is refused. */
df_status df_cpu_softmax_rows(df_pool *pool, float *x, int64_t n_rows, int64_t n, int64_t stride);

/* Index of the largest element; the first one wins ties; NaN entries are skipped. A row of
 * only NaN (or n <= 0) is refused: it means the forward pass went wrong upstream. */
df_status df_cpu_argmax(const float *x, int64_t n, int64_t *out);
/* argmax of each of n_rows rows (stride apart) into out[n_rows]. */
df_status df_cpu_argmax_rows(df_pool *pool, const float *x, int64_t n_rows, int64_t n,
                             int64_t stride, int64_t *out);

/* The GDN gates from the projections a (ssm_alpha) and b (ssm_beta), both [n_tok][n_v_head]:
 *   g[t][h]    = ssm_a[h] * softplus(a[t][h] + dt_bias[h])   (log of the per-step decay)
 *   beta[t][h] = sigmoid(b[t][h])
 * ssm_a is the GGUF tensor, -exp(A_log) of the HF checkpoint. */
df_status df_cpu_gdn_gates(const float *a, const float *b, const float *dt_bias, const float *ssm_a,
                           int64_t n_tok, int64_t n_v_head, float *g, float *beta);

/* ---- rotary position embedding (cpu_rope.c) ----------------------------------------------- */

/* inv_freq[i] = theta^(-2i / rot_dim) for i < rot_dim / 2, rounded to float as HF does. */
df_status df_cpu_rope_inv_freq(float theta, int64_t rot_dim, float *inv_freq);

/* Largest rot_dim df_cpu_rope accepts (it keeps one token's cos/sin table on the stack). */
#define DF_CPU_ROPE_MAX_DIM 1024

/* In place, NEOX (rotate_half) style on the first rot_dim elements of every head; the rest
 * of the head passes through (Qwen3.5: rot_dim = head_dim / 4). For i < rot_dim / 2 and
 * angle = pos[t] * inv_freq[i] (a float product, as HF computes it):
 *   x[i]            = x[i] * cos - x[i + rot_dim/2] * sin
 *   x[i + rot_dim/2] = x[i + rot_dim/2] * cos + x[i] * sin
 * For text, Qwen3.5's interleaved multi-section RoPE has equal positions in every section
 * and reduces to exactly this. pos has one entry per token of the view. */
df_status df_cpu_rope(df_pool *pool, const df_cpu_heads *x, const int32_t *pos,
                      const float *inv_freq, int64_t rot_dim);

/* ---- attention over a KV cache (cpu_attention.c) ------------------------------------------- */

typedef enum df_kv_type {
    DF_KV_F16 = 0, /* the default: half the memory, and what llama.cpp keeps */
    DF_KV_F32 = 1,
} df_kv_type;

/* K and V of one attention layer: each [n_ctx][n_kv_head][head_dim] of kv_type. */
typedef struct df_cpu_kv_cache {
    void *k, *v;
    df_kv_type type;
    int64_t n_ctx, n_kv_head, head_dim;
} df_cpu_kv_cache;

/* Writes k_new / v_new ([n_tok][n_kv_head][head_dim] views) to cache rows pos0 ..
 * pos0 + n_tok - 1, converting to the cache type. */
df_status df_cpu_kv_write(df_pool *pool, df_cpu_kv_cache *cache, const df_cpu_heads *k_new,
                          const df_cpu_heads *v_new, int64_t pos0);

typedef struct df_cpu_attn_args {
    df_cpu_heads q;          /* [n_tok][n_head][head_dim], already normed and rotated */
    const df_cpu_heads *gate;/* NULL, or [n_tok][n_head][head_dim]: out *= sigmoid(gate) */
    const df_cpu_heads *k_new, *v_new; /* NULL, or rows to write first (df_cpu_kv_write) */
    df_cpu_kv_cache *cache;
    int64_t pos0;            /* cache row of the first token */
    /* Optional: the tokens' positions in backend memory (pos[0] == pos0). A backend that
     * records work for replay (the CUDA graphs) reads the rows from here when the work runs,
     * so one recording serves every step; others use pos0. */
    const int32_t *pos;
    bool causal;             /* token i sees rows <= pos0 + i; else all rows < pos0 + n_tok */
    float scale;             /* 0 means 1 / sqrt(head_dim) */
    df_cpu_heads out;        /* [n_tok][n_head][head_dim]; must not overlap q or gate */
} df_cpu_attn_args;

/* softmax(q K^T * scale) V per (token, head) with an online (running max) softmax, then the
 * optional sigmoid gate. Query head h reads KV head h / (n_head / n_kv_head), the
 * repeat_interleave grouping of HF's repeat_kv. The cache rows are read in increasing
 * order whatever the batch, so a token's result does not depend on n_tok. Threaded over
 * (token, head). No scratch. */
df_status df_cpu_attention(df_pool *pool, const df_cpu_attn_args *args);

/* ---- GDN short convolution (cpu_conv.c) ---------------------------------------------------- */

/* Causal depthwise conv1d over the concatenated q|k|v channels, then SiLU:
 *   out[t][c] = silu(sum_j w[c][j] * win_t[j][c]),  win_t = the last K inputs up to t
 * where the inputs before token 0 come from state ([K-1][channels], oldest row first),
 * w is [channels][K] (HF conv1d.weight squeezed; the GGUF ssm_conv1d layout), and w[c][K-1]
 * weighs the current token. state is then replaced by the last K-1 inputs.
 * capture (NULL, or [n_tok][K-1][channels]) receives the state after every token, so a
 * speculative verify can roll back to any accepted token without re-running anything.
 * x ([n_tok][x_stride]) and out ([n_tok][out_stride]) must not overlap. */
df_status df_cpu_conv1d_silu(df_pool *pool, const float *x, int64_t x_stride, int64_t n_tok,
                             int64_t channels, const float *w, int64_t kernel, float *state,
                             float *out, int64_t out_stride, float *capture);

/* ---- Gated DeltaNet (cpu_gdn.c, cpu_gdn_chunked.c) ----------------------------------------- */

/* Which key head a value head reads when there are more value heads than key heads
 * (r = n_v_head / n_k_head):
 * - GROUPED: value head h uses key head h / r. HF checkpoints (repeat_interleave: each
 *   key head serves r consecutive value heads).
 * - TILED: value head h uses key head h % n_k_head. GGUF files from llama.cpp's converter,
 *   which permutes the value heads (in_proj_qkv V rows, in_proj_z, in_proj_a/b, A_log,
 *   dt_bias, conv1d V channels, out_proj columns) from grouped to tiled order so that ggml
 *   can broadcast instead of interleave. */
typedef enum df_gdn_head_map {
    DF_GDN_HEADS_GROUPED = 0,
    DF_GDN_HEADS_TILED = 1,
} df_gdn_head_map;

typedef enum df_state_type {
    DF_STATE_F32 = 0,
    DF_STATE_F16 = 1,
} df_state_type;

typedef struct df_cpu_gdn_args {
    df_cpu_heads q, k;      /* [n_tok][n_k_head][d_k], L2-normalized already */
    df_cpu_heads v;         /* [n_tok][n_v_head][d_v] */
    const float *g;         /* [n_tok][n_v_head]: log of the decay (<= 0) */
    const float *beta;      /* [n_tok][n_v_head]: in (0, 1) */
    float *state;           /* [n_v_head][d_k][d_v], updated in place */
    df_cpu_heads out;       /* [n_tok][n_v_head][d_v]; must not overlap the inputs */
    void *capture;          /* NULL, or [n_tok][n_v_head][d_k][d_v]: the state after each token */
    df_state_type capture_type;
    df_gdn_head_map head_map;
    float q_scale;          /* 0 means 1 / sqrt(d_k), as HF scales the query */
    /* For the speculative rollback (both may be NULL, either may equal state): */
    const float *state_in;  /* the state the call starts from, where not state (the result
                               still goes to state) */
    float *state_save;      /* also receives the state the call starts from */
} df_cpu_gdn_args;

/* Heads [h0, h1) of a call: state_save gets the starting state, state gets state_in. Each
 * recurrence runs it before it reads a head's state. */
void df_cpu_gdn_state_begin(const df_cpu_gdn_args *a, int64_t h0, int64_t h1);

/* The recurrence, one token at a time, per value head with state S [d_k][d_v]:
 *   S = S * exp(g_t);  delta = beta_t * (v_t - S^T k_t);  S = S + k_t delta^T;
 *   o_t = S^T (q_t * q_scale)
 * capture[t] = S after token t. Threaded over value heads; no scratch; batch-invariant
 * (token t's output and state do not depend on n_tok). */
df_status df_cpu_gdn_recurrent(df_pool *pool, const df_cpu_gdn_args *args);

/* The chunked (WY / UT transform) form of the same recurrence, as HF's
 * torch_chunk_gated_delta_rule computes it, over chunks of DF_CPU_GDN_CHUNK tokens (the
 * last one may be shorter; no padding). Equal to the recurrent form up to float rounding
 * (measured: <= 6e-7 of the tensors' scale; both are ~1e-7 from a double reference), not
 * bit for bit, and its rounding depends on where chunk boundaries fall: use the recurrent
 * form where a result must match a one-token decode step exactly (speculative verify).
 * capture works as in the recurrent form (the states inside a chunk are rebuilt from the
 * chunk's corrected values, one rank-1 update per token). scratch:
 * df_cpu_gdn_chunked_scratch_size(pool, ...), enough for that pool's thread count.
 *
 * Measured (bench/bench_cpu_gdn.c; a Qwen3.5-27B layer: 16 key / 48 value heads of 128;
 * 16-core virtualized Xeon with AVX2, two runs): a 16-token verify takes 0.33-0.41 ms
 * recurrent vs 0.25-0.36 ms chunked on 16 threads (2.9-3.3 vs 2.1-2.8 ms on one); with an
 * f32 capture 0.58-0.61 vs 0.49-0.69 ms; with an f16 capture 0.63-0.77 vs 0.64-0.76 ms.
 * At 512 tokens the two are within 15% either way. The chunked form buys little on the
 * CPU, and nothing once states are captured; verify should use the recurrent one. */
#define DF_CPU_GDN_CHUNK 64
size_t df_cpu_gdn_chunked_scratch_size(df_pool *pool, int64_t d_k, int64_t d_v);
df_status df_cpu_gdn_chunked(df_pool *pool, const df_cpu_gdn_args *args, void *scratch,
                             size_t scratch_size);

/* ---- matmul (cpu_matmul.c) ------------------------------------------------------------------ */

/* y[t][o] = sum_i x[t][i] * W[o][i] for a row-major W [n_out][n_in] of type wtype
 * (y = x W^T, the nn.Linear / ggml_mul_mat convention). F32, F16 and BF16 weights are
 * dotted against the float activations directly, in register tiles of 4 rows x 2 tokens;
 * other types need a companion activation type (vec_dot_type) and a vec_dot in the quant
 * traits table: the activations are quantized once per call into scratch. Threaded over
 * blocks of output rows, so each W row is read from memory once per call for all n_tok
 * tokens. Which path a type takes never depends on n_tok, and each (row, token) pair is
 * computed the same way in every tile shape: results are batch-invariant.
 *
 * Measured (bench/bench_cpu_matmul.c, 5120 -> 17408, 16-core Xeon): per token, a 16-token
 * batch costs 0.41x a 1-token call for F16 weights, but ~0.6-0.7x for Q8_0/Q4_K/Q6_K,
 * whose per-pair vec_dot re-decodes each W block for every token (compute-bound): a
 * multi-token vec_dot in src/quant is what would make quantized verify cheap. */
size_t df_cpu_matmul_scratch_size(df_type wtype, int64_t n_tok, int64_t n_in);
df_status df_cpu_matmul(df_pool *pool, const float *x, int64_t n_tok, int64_t n_in,
                        const void *w, df_type wtype, int64_t n_out, float *y, void *scratch,
                        size_t scratch_size);

/* Several matrices that read the same x (the q/k/v or gate/up projections of a layer): each
 * out[i].y = x W_i^T, bitwise what df_cpu_matmul gives for W_i alone. x is converted once
 * (when the weights' types share an activation layout, else each matrix goes on its own)
 * and the rows of all the matrices are shared out in one parallel run, so the threads meet
 * once instead of once per matrix. */
#define DF_CPU_MATMUL_MANY_MAX 8

/* A weight matrix repacked once for the fastest kernel of this CPU (cpu_pack.c: Q8_0 at the
 * AVX-512 level). Used in place of the original where that kernel runs, with bitwise the
 * same results. df_cpu_pack_weight returns NULL when the type has no packed layout, the CPU
 * lacks the kernel, packing is off (DFLASH_CPU_PACK=0) or over its memory budget. */
typedef struct df_cpu_packed {
    void *data;
    size_t tile_bytes; /* bytes per tile of 16 rows */
    size_t bytes;
    struct pack_chunk *chunk; /* the memory it lives in (cpu_pack.c) */
} df_cpu_packed;
df_cpu_packed *df_cpu_pack_weight(df_pool *pool, df_type type, const void *w, int64_t n_in, int64_t n_out);
void df_cpu_packed_free(df_cpu_packed *p);

typedef struct df_cpu_matmul_out {
    const void *w;   /* [n_out][n_in] of type wtype */
    df_type wtype;
    int64_t n_out;
    float *y;        /* [n_tok][n_out] */
    const df_cpu_packed *packed; /* w packed (df_cpu_pack_weight), or NULL */
} df_cpu_matmul_out;
size_t df_cpu_matmul_many_scratch_size(const df_cpu_matmul_out *outs, int n, int64_t n_tok, int64_t n_in);
df_status df_cpu_matmul_many(df_pool *pool, const float *x, int64_t n_tok, int64_t n_in,
                             const df_cpu_matmul_out *outs, int n, void *scratch, size_t scratch_size);

#endif
