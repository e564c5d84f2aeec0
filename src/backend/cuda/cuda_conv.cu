/* The GDN short causal depthwise convolution + SiLU with its rolling state and the per-token
 * state capture (contract: df_cpu_conv1d_silu). Input position i (relative to the first new token) is x[i] for i >= 0 and state row
 * K-1+i before that, exactly as on the CPU (cpu_conv.c), and the state is rewritten only
 * after every token has read it. */
#include "backend/cuda/cuda_internal.h"

struct conv_args {
    const float *x, *w;
    float *state, *out, *capture;
    long long x_stride, out_stride;
    int n_tok, channels, kernel;
};

__device__ __forceinline__ float conv_in(const conv_args &a, int i, int ch) {
    return i >= 0 ? a.x[(long long)i * a.x_stride + ch] : a.state[(long long)(a.kernel - 1 + i) * a.channels + ch];
}

/* A block owns CONV_CH channels and all tokens: its threads take (channel, token) pairs, since
 * an output reads only inputs (x and the old state), never earlier outputs. Every reader of
 * a channel's old state is in the channel's block, so one barrier separates the reads from
 * the state rewrite. Each output is the same sum in the same order as the one-token case. */
enum { CONV_CH = 32, CONV_TOK = 8 };

__global__ void conv1d_silu_kernel(conv_args a) {
    const int ch = blockIdx.x * CONV_CH + threadIdx.x % CONV_CH;
    const int tl = threadIdx.x / CONV_CH;
    const bool live = ch < a.channels;
    const int K = a.kernel, keep = K - 1;
    if (live) {
        const float *w = a.w + (long long)ch * K;
        for (int t = tl; t < a.n_tok; t += CONV_TOK) {
            float s = 0.0f;
            for (int j = 0; j < K; j++) s += w[j] * conv_in(a, t - keep + j, ch);
            a.out[(long long)t * a.out_stride + ch] = cu_silu(s);
            if (a.capture) {
                float *cap = a.capture + (long long)t * keep * a.channels;
                for (int r = 0; r < keep; r++) cap[(long long)r * a.channels + ch] = conv_in(a, t - keep + 1 + r, ch);
            }
        }
    }
    /* The new state: the last K-1 inputs, read (old state rows included) before any write. */
    float keep_v[64 / CONV_TOK + 1];
    int nk = 0;
    if (live)
        for (int r = tl; r < keep; r += CONV_TOK) keep_v[nk++] = conv_in(a, a.n_tok - keep + r, ch);
    __syncthreads();
    nk = 0;
    if (live)
        for (int r = tl; r < keep; r += CONV_TOK) a.state[(long long)r * a.channels + ch] = keep_v[nk++];
}

df_status cu_conv1d_silu(df_backend *be, const float *x, int64_t xs, int64_t n_tok, int64_t channels,
                         const float *w, int64_t kernel, float *state, float *out, int64_t os,
                         float *capture) {
    cu_backend *cb = cu_impl(be);
    if (!x || !w || !out) return df_fail(DF_ERR_INVALID, "conv1d: x, w or out is NULL");
    if (n_tok <= 0 || channels <= 0 || channels > ((int64_t)1 << 30) || n_tok > ((int64_t)1 << 30))
        return df_fail(DF_ERR_INVALID, "conv1d: %lld tokens of %lld channels is not a valid shape",
                       (long long)n_tok, (long long)channels);
    if (kernel < 1 || kernel > 64)
        return df_fail(DF_ERR_INVALID, "conv1d: kernel size %lld is not in 1..64", (long long)kernel);
    if (kernel > 1 && !state) return df_fail(DF_ERR_INVALID, "conv1d: state is NULL");
    if (n_tok > 1 && (xs < channels || os < channels))
        return df_fail(DF_ERR_INVALID, "conv1d: strides %lld / %lld are smaller than %lld channels",
                       (long long)xs, (long long)os, (long long)channels);
    DF_TRY(cu_enter(cb, "conv1d_silu"));
    conv_args a = {x, w, state, out, capture, xs, os, (int)n_tok, (int)channels, (int)kernel};
    conv1d_silu_kernel<<<cu_blocks(channels, CONV_CH), CONV_CH * CONV_TOK, 0, cb->stream>>>(a);
    return cu_check_launch(cb, "conv1d_silu");
}
