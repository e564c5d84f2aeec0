/* Partial rotary position embedding, NEOX (rotate_half) pairing: element i of the rotated
 * part pairs with element i + rot_dim/2, not with its neighbour.
 *
 * Angles are formed the way HF's Qwen3_5TextRotaryEmbedding forms them: a float32 product
 * of the position and a float32 inv_freq; cos/sin of that float angle are then taken in
 * double and rounded, which is what torch's float cos/sin return to within an ulp. Keeping
 * HF's rounding of the angle matters at large positions, where it dominates the error. */
#include <math.h>

#include "backend/cpu/cpu_internal.h"

df_status df_cpu_rope_inv_freq(float theta, int64_t rot_dim, float *inv_freq) {
    if (!inv_freq) return df_fail(DF_ERR_INVALID, "rope_inv_freq: inv_freq is NULL");
    if (!(theta > 0.0f) || !isfinite(theta))
        return df_fail(DF_ERR_INVALID, "rope_inv_freq: theta %g is not a positive number", (double)theta);
    if (rot_dim <= 0 || rot_dim % 2 || rot_dim > DF_CPU_ROPE_MAX_DIM)
        return df_fail(DF_ERR_INVALID, "rope_inv_freq: rot_dim %lld is not an even number in 2..%d",
                       (long long)rot_dim, DF_CPU_ROPE_MAX_DIM);
    for (int64_t i = 0; i < rot_dim / 2; i++) {
        const float e = (float)(2 * i) / (float)rot_dim;
        const float p = (float)pow((double)theta, (double)e);
        inv_freq[i] = 1.0f / p;
    }
    return DF_OK;
}

typedef struct {
    const df_cpu_heads *x;
    const int32_t *pos;
    const float *inv_freq;
    int64_t half;
} rope_ctx;

static void rope_task(void *p, int task, int n_tasks) {
    const rope_ctx *c = p;
    const df_cpu_heads *x = c->x;
    float cs[DF_CPU_ROPE_MAX_DIM / 2], sn[DF_CPU_ROPE_MAX_DIM / 2];
    int64_t lo, hi;
    df_cpu_task_range(x->n_tok, task, n_tasks, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        const float pos = (float)c->pos[t];
        for (int64_t i = 0; i < c->half; i++) {
            const float angle = pos * c->inv_freq[i];
            cs[i] = (float)cos((double)angle);
            sn[i] = (float)sin((double)angle);
        }
        for (int64_t h = 0; h < x->n_head; h++) {
            float *a = df_head_ptr(x, t, h), *b = a + c->half;
            for (int64_t i = 0; i < c->half; i++) {
                const float x0 = a[i], x1 = b[i];
                a[i] = x0 * cs[i] - x1 * sn[i];
                b[i] = x1 * cs[i] + x0 * sn[i];
            }
        }
    }
}

df_status df_cpu_rope(df_pool *pool, const df_cpu_heads *x, const int32_t *pos,
                      const float *inv_freq, int64_t rot_dim) {
    DF_TRY(df_cpu_check_heads("rope", "x", x));
    if (!pos || !inv_freq) return df_fail(DF_ERR_INVALID, "rope: pos or inv_freq is NULL");
    if (rot_dim <= 0 || rot_dim % 2 || rot_dim > x->dim || rot_dim > DF_CPU_ROPE_MAX_DIM)
        return df_fail(DF_ERR_INVALID, "rope: rot_dim %lld must be even, positive and at most "
                       "the head dim %lld (and %d)", (long long)rot_dim, (long long)x->dim,
                       DF_CPU_ROPE_MAX_DIM);
    rope_ctx c = {x, pos, inv_freq, rot_dim / 2};
    df_pool_run(pool, rope_task, &c,
                df_cpu_task_count(pool, x->n_tok, x->n_head * rot_dim * 3 + rot_dim * 40));
    return DF_OK;
}
