/* The short causal depthwise convolution in front of the Gated DeltaNet (kernel 4 in
 * Qwen3.5), with its rolling state and the optional per-token state capture.
 *
 * Input position i (relative to the first new token) reads x[i] for i >= 0 and the state row
 * K-1+i for i < 0, so the state is simply the K-1 inputs that precede the batch. Channels are
 * independent: each task takes a contiguous range of channels and owns those columns of the
 * state, which it rewrites only after its last token has read them. */
#include <string.h>

#include "backend/cpu/cpu_internal.h"

typedef struct {
    const float *x, *w;
    float *state, *out, *capture;
    int64_t x_stride, out_stride, n_tok, channels, kernel;
} conv_ctx;

/* The row of input i (relative to the first new token), from channel 0. */
static inline const float *conv_row(const conv_ctx *c, int64_t i) {
    return i >= 0 ? c->x + i * c->x_stride : c->state + (c->kernel - 1 + i) * c->channels;
}

/* acc[i] = sum over taps j of wt[j][i] * in[j][i], i < nb, tap by tap from 0: one multiply
 * and one add each, rounded separately, as the portable loop below is compiled on x86-64
 * (its baseline, which this file is built for, has no FMA); AVX2 (without FMA) computes 8
 * channels at once with the same roundings, so the bits do not depend on the level. The portable loop ran in its scalar form (its arrays defeated the
 * vectorizer), a tenth of the speed. */
#ifdef DF_CPU_HAVE_AVX2_BUILD
#include <immintrin.h>
__attribute__((target("avx2"))) static int64_t conv_taps_avx2(float *acc, const float *const *in,
                                                              const float *wt, int64_t wstride, int64_t taps,
                                                              int64_t nb) {
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
        __m256 a = _mm256_setzero_ps();
        for (int64_t j = 0; j < taps; j++)
            a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(wt + j * wstride + i), _mm256_loadu_ps(in[j] + i)));
        _mm256_storeu_ps(acc + i, a);
    }
    return i;
}
#endif

static void conv_taps(float *acc, const float *const *in, const float *wt, int64_t wstride, int64_t taps,
                      int64_t nb) {
    int64_t i0 = 0;
#ifdef DF_CPU_HAVE_AVX2_BUILD
    if (df_cpu_simd_get() >= DF_CPU_SIMD_AVX2) i0 = conv_taps_avx2(acc, in, wt, wstride, taps, nb);
#endif
    for (int64_t i = i0; i < nb; i++) acc[i] = 0.0f;
    for (int64_t j = 0; j < taps; j++)
        for (int64_t i = i0; i < nb; i++) acc[i] += wt[j * wstride + i] * in[j][i];
}

static void conv_task(void *p, int task, int n_tasks) {
    const conv_ctx *c = p;
    const df_cpu_kernels *K = df_cpu_kernels_get();
    const int64_t Kn = c->kernel, C = c->channels, keep = Kn - 1;
    int64_t lo, hi;
    df_cpu_task_range(C, task, n_tasks, &lo, &hi);
    /* channels per pass: keeps the strided x reads to whole cache lines, and the taps of a
     * pass, transposed to [tap][channel] so that every loop below runs along channels */
    enum { CB = 64 };
    float wt[64 * CB], acc[CB];
    for (int64_t c0 = lo; c0 < hi; c0 += CB) {
        const int64_t nb = hi - c0 < CB ? hi - c0 : CB;
        for (int64_t j = 0; j < Kn; j++)
            for (int64_t i = 0; i < nb; i++) wt[j * CB + i] = c->w[(c0 + i) * Kn + j];
        for (int64_t t = 0; t < c->n_tok; t++) {
            const float *in[64];
            for (int64_t j = 0; j < Kn; j++) in[j] = conv_row(c, t - keep + j) + c0;
            conv_taps(acc, in, wt, CB, Kn, nb);
            K->silu_mul_f32(c->out + t * c->out_stride + c0, acc, NULL, nb);
            if (c->capture) {
                float *cap = c->capture + t * keep * C;
                for (int64_t r = 0; r < keep; r++)
                    memcpy(cap + r * C + c0, conv_row(c, t - keep + 1 + r) + c0, (size_t)nb * sizeof(float));
            }
        }
        /* new state: the last K-1 inputs. Row r comes from input n_tok-keep+r, which is either
         * a new token or an older state row r' = r + n_tok > r: reading rows upward never
         * reads a row this loop has already overwritten. */
        for (int64_t r = 0; r < keep; r++)
            memmove(c->state + r * C + c0, conv_row(c, c->n_tok - keep + r) + c0, (size_t)nb * sizeof(float));
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
