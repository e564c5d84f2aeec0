/* Partial rotary position embedding, NEOX pairing (element i with i + rot_dim / 2), in place.
 * The angle is the float product pos * inv_freq[i] and its cos / sin are taken in double and
 * rounded, as the CPU (cpu_rope.c) and HF do; one thread per (token, head, pair). */
#include "backend/cuda/cuda_internal.h"

__global__ void rope_kernel(cu_heads h, const int32_t *pos, const float *inv_freq, int half) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)h.n_tok * h.n_head * half) return;
    const int p = (int)(i % half);
    const int hd = (int)((i / half) % h.n_head);
    const int t = (int)(i / ((long long)half * h.n_head));
    const float angle = (float)pos[t] * inv_freq[p];
    const float c = (float)cos((double)angle), s = (float)sin((double)angle);
    float *a = cu_head_ptr(h, t, hd);
    const float x0 = a[p], x1 = a[p + half];
    a[p] = x0 * c - x1 * s;
    a[p + half] = x1 * c + x0 * s;
}

df_status cu_rope(df_backend *be, const df_heads *x, const int32_t *pos, const float *inv_freq,
                  int64_t rot_dim) {
    cu_backend *cb = cu_impl(be);
    DF_TRY(cu_check_heads("rope", "x", x));
    if (!pos || !inv_freq) return df_fail(DF_ERR_INVALID, "rope: pos or inv_freq is NULL");
    if (rot_dim <= 0 || rot_dim % 2 || rot_dim > x->dim || rot_dim > DF_CPU_ROPE_MAX_DIM)
        return df_fail(DF_ERR_INVALID, "rope: rot_dim %lld must be even, positive and at most the head dim "
                       "%lld (and %d)", (long long)rot_dim, (long long)x->dim, DF_CPU_ROPE_MAX_DIM);
    DF_TRY(cu_enter(cb, "rope"));
    const int64_t n = x->n_tok * x->n_head * (rot_dim / 2);
    rope_kernel<<<cu_blocks(n, 256), 256, 0, cb->stream>>>(cu_heads_of(x), pos, inv_freq, (int)(rot_dim / 2));
    return cu_check_launch(cb, "rope");
}
