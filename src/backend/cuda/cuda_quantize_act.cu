/* Activations to int8 blocks of 32 with an f32 scale (and the scaled block sum), once per
 * matmul call; cuda_mmq.cuh describes the format and the layout. One warp per (block, token):
 * lane i takes element i, so the warp reads 128 contiguous bytes of x whatever x's alignment,
 * and writes 32 contiguous bytes of xq. */
#include <float.h>

#include "backend/cuda/cuda_mmq.cuh"

enum { QA_WARPS = 8 };

__global__ void __launch_bounds__(QA_WARPS * 32)
quantize_act_kernel(const float *__restrict__ x, int n_tok, int n_in, int ntp, int8_t *__restrict__ xq,
                    float2 *__restrict__ xds) {
    /* the matmul that reads xq may start now: it loads its first weights, then waits for
     * this kernel to finish (cuda_mmq.cu) */
    cu_let_dependents_start();
    const long long w = (long long)blockIdx.x * QA_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32, nb = n_in / 32;
    if (w >= (long long)nb * ntp) return; /* the whole warp leaves together */
    const int blk = (int)(w / ntp), tok = (int)(w % ntp);
    const float v = tok < n_tok ? x[(size_t)tok * n_in + (size_t)blk * 32 + lane] : 0.0f;
    const float av = fabsf(v);
    /* fmaxf drops NaN, so non-finite input is detected separately and poisons the scale. */
    const bool finite = __all_sync(0xffffffffu, av <= FLT_MAX);
    const float amax = cu_warp_max(av);
    /* IEEE division and roundf (half away from zero): the host can reproduce these exactly,
     * which is how tests/gpu/cuda_ops_check.c checks the integer path to f32 rounding. */
    const float d = amax / 127.0f;
    const int q = amax == 0.0f || !finite ? 0 : (int)roundf(v / d);
    int sum = q;
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const size_t at = (size_t)blk * ntp + tok;
    xq[at * 32 + lane] = (int8_t)q;
    if (lane == 0) {
        const float nan = __int_as_float(0x7fc00000);
        xds[at] = finite ? make_float2(d, d * (float)sum) : make_float2(nan, nan);
    }
}

df_status cu_quantize_act(cu_backend *cb, const float *x, int n_tok, int n_in, int8_t *xq, float2 *xds) {
    const int ntp = cu_mmq_tok_pad(n_tok);
    const long long warps = (long long)(n_in / 32) * ntp;
    quantize_act_kernel<<<(unsigned)((warps + QA_WARPS - 1) / QA_WARPS), QA_WARPS * 32, 0, cb->stream>>>(
        x, n_tok, n_in, ntp, xq, xds);
    return cu_check_launch(cb, "matmul (quantize activations)");
}
