/* The short causal depthwise convolution in front of the Gated DeltaNet (kernel 4 in
 * Qwen3.5), with its rolling state and the optional per-token state capture.
 *
 * Input position i (relative to the first new token) reads x[i] for i >= 0 and the state row
 * K-1+i for i < 0, so the state is simply the K-1 inputs that precede the batch. Channels are
 * independent: each task takes a contiguous range of channels and owns those columns of the
 * state, which it rewrites only after its last token has read them. */
#include "backend/cpu/cpu_internal.h"

typedef struct {
    const float *x, *w;
    float *state, *out, *capture;
    int64_t x_stride, out_stride, n_tok, channels, kernel;
} conv_ctx;

static inline float conv_in(const conv_ctx *c, int64_t i, int64_t ch) {
    return i >= 0 ? c->x[i * c->x_stride + ch] : c->state[(c->kernel - 1 + i) * c->channels + ch];
}

static void conv_task(void *p, int task, int n_tasks) {
    const conv_ctx *c = p;
    const int64_t K = c->kernel, C = c->channels, keep = K - 1;
    int64_t lo, hi;
    df_cpu_task_range(C, task, n_tasks, &lo, &hi);
    enum { CB = 64 }; /* channels per pass: keeps the strided x reads to whole cache lines */
    for (int64_t c0 = lo; c0 < hi; c0 += CB) {
        const int64_t c1 = hi - c0 < CB ? hi : c0 + CB;
        for (int64_t t = 0; t < c->n_tok; t++) {
            float *o = c->out + t * c->out_stride;
            for (int64_t ch = c0; ch < c1; ch++) {
                const float *w = c->w + ch * K;
                float s = 0.0f;
                for (int64_t j = 0; j < K; j++) s += w[j] * conv_in(c, t - keep + j, ch);
                o[ch] = df_siluf(s);
            }
            if (c->capture) {
                float *cap = c->capture + t * keep * C;
                for (int64_t r = 0; r < keep; r++)
                    for (int64_t ch = c0; ch < c1; ch++) cap[r * C + ch] = conv_in(c, t - keep + 1 + r, ch);
            }
        }
        /* new state: the last K-1 inputs. Row r comes from input n_tok-keep+r, which is either
         * a new token or an older state row r' = r + n_tok > r: reading rows upward never
         * reads a row this loop has already overwritten. */
        for (int64_t r = 0; r < keep; r++)
            for (int64_t ch = c0; ch < c1; ch++)
                c->state[r * C + ch] = conv_in(c, c->n_tok - keep + r, ch);
    }
}

df_status df_cpu_conv1d_silu(df_pool *pool, const float *x, int64_t x_stride, int64_t n_tok,
                             int64_t channels, const float *w, int64_t kernel, float *state,
                             float *out, int64_t out_stride, float *capture) {
    if (!x || !w || !out) return df_fail(DF_ERR_INVALID, "conv1d: x, w or out is NULL");
    if (n_tok <= 0 || channels <= 0 || channels > ((int64_t)1 << 31))
        return df_fail(DF_ERR_INVALID, "conv1d: %lld tokens of %lld channels is not a valid shape",
                       (long long)n_tok, (long long)channels);
    if (kernel < 1 || kernel > 64)
        return df_fail(DF_ERR_INVALID, "conv1d: kernel size %lld is not in 1..64", (long long)kernel);
    if (kernel > 1 && !state) return df_fail(DF_ERR_INVALID, "conv1d: state is NULL");
    if (n_tok > 1 && (x_stride < channels || out_stride < channels))
        return df_fail(DF_ERR_INVALID, "conv1d: strides %lld / %lld are smaller than %lld channels",
                       (long long)x_stride, (long long)out_stride, (long long)channels);
    conv_ctx c = {x, w, state, out, capture, x_stride, out_stride, n_tok, channels, kernel};
    df_pool_run(pool, conv_task, &c,
                df_cpu_task_count(pool, channels, n_tok * (2 * kernel + 20 + (capture ? kernel : 0))));
    return DF_OK;
}
