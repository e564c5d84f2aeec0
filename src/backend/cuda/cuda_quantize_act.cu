/* Activations to int8 with an f32 scale per block of 32 or per super-block of 256, once per
 * matmul call; cuda_mmq.cuh describes the two forms and their layout. */
#include <float.h>

#include "backend/cuda/cuda_mmq.cuh"

enum { QA_WARPS = 8 };

/* Blocks of 32: one warp per (block, token); lane i takes element i, so the warp reads 128
 * contiguous bytes of x whatever x's alignment, and writes 32 contiguous bytes of xq. */

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

/* Super-blocks of 256: one warp per (super-block, token); lane i takes elements 8i..8i+7, which
 * are bytes 8(i % 4).. of 32-block i / 4, so its quad of lanes holds one sub-block and adds its
 * sum with two shuffles. x is read with scalar loads (any alignment); the warp's loads cover
 * the same 1 KiB, so the L1 serves all but the first. */
__global__ void __launch_bounds__(QA_WARPS * 32)
quantize_act_sb_kernel(const float *__restrict__ x, int n_tok, int n_in, int ntp, int8_t *__restrict__ xq,
                       float *__restrict__ xd, int16_t *__restrict__ xbs) {
    cu_let_dependents_start();
    const long long w = (long long)blockIdx.x * QA_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32, nsb = n_in / 256;
    if (w >= (long long)nsb * ntp) return; /* the whole warp leaves together */
    const int sb = (int)(w / ntp), tok = (int)(w % ntp);
    float v[8];
    float av = 0.0f;
    bool finite = true;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        v[i] = tok < n_tok ? x[(size_t)tok * n_in + (size_t)sb * 256 + 8 * lane + i] : 0.0f;
        finite = finite && fabsf(v[i]) <= FLT_MAX;
        av = fmaxf(av, fabsf(v[i]));
    }
    finite = __all_sync(0xffffffffu, finite);
    const float amax = cu_warp_max(av);
    /* the same float steps as the blocks of 32 (and as the host's copy in cuda_ops_check.c) */
    const float d = amax / 127.0f;
    uint32_t packed[2] = {0u, 0u};
    int sum = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int q = amax == 0.0f || !finite ? 0 : (int)roundf(v[i] / d);
        sum += q;
        packed[i / 4] |= (uint32_t)(uint8_t)(int8_t)q << (8 * (i % 4));
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const size_t at = (size_t)sb * ntp + tok;
    *(uint2 *)(xq + ((size_t)(sb * 8 + lane / 4) * ntp + tok) * 32 + 8 * (lane % 4)) =
        make_uint2(packed[0], packed[1]);
    if (lane % 4 == 0) xbs[at * 8 + lane / 4] = (int16_t)sum;
    if (lane == 0) xd[at] = finite ? d : __int_as_float(0x7fc00000);
}

df_status cu_quantize_act_sb(cu_backend *cb, const float *x, int n_tok, int n_in, int8_t *xq, float *xd,
                             int16_t *xbs) {
    const int ntp = cu_mmq_tok_pad(n_tok);
    const long long warps = (long long)(n_in / 256) * ntp;
    quantize_act_sb_kernel<<<(unsigned)((warps + QA_WARPS - 1) / QA_WARPS), QA_WARPS * 32, 0, cb->stream>>>(
        x, n_tok, n_in, ntp, xq, xd, xbs);
    return cu_check_launch(cb, "matmul (quantize activations)");
}
