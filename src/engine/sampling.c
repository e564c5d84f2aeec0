#define _GNU_SOURCE /* qsort_r */
#include "engine/sampling.h"

#include <math.h>
#include <stdlib.h>

df_sampling_params df_sampling_default(void) {
    df_sampling_params p = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                            .seed = 0};
    return p;
}

df_status df_sampler_init(df_sampler *s, const df_sampling_params *p, int n_vocab) {
    s->p = *p;
    s->n_vocab = n_vocab;
    s->n_cand = 0;
    if (n_vocab <= 0) return df_fail(DF_ERR_INVALID, "sampler: vocabulary of %d tokens", n_vocab);
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return df_fail(DF_ERR_INVALID, "sampler: temperature %g is not a finite number >= 0",
                       (double)p->temperature);
    if (!(p->top_p > 0.0f)) return df_fail(DF_ERR_INVALID, "sampler: top_p %g must be > 0", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return df_fail(DF_ERR_INVALID, "sampler: min_p %g must be in [0, 1]", (double)p->min_p);
    df_rng_seed(&s->rng, p->seed);
    s->idx = malloc(sizeof *s->idx * (size_t)n_vocab);
    s->prob = malloc(sizeof *s->prob * (size_t)n_vocab);
    s->weight = malloc(sizeof *s->weight * (size_t)n_vocab);
    if (!s->idx || !s->prob || !s->weight) {
        df_sampler_free(s);
        return df_fail(DF_ERR_NOMEM, "sampler: out of memory for %d tokens", n_vocab);
    }
    return DF_OK;
}

void df_sampler_free(df_sampler *s) {
    free(s->idx);
    free(s->prob);
    free(s->weight);
    s->idx = NULL;
    s->prob = NULL;
    s->weight = NULL;
}

bool df_sampler_is_greedy(const df_sampler *s) { return s->p.temperature <= 0.0f; }

static df_status argmax(const float *x, int n, int32_t *out) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]) && (best < 0 || x[i] > x[best])) best = i;
    if (best < 0) return df_fail(DF_ERR_INVALID, "sampler: every logit is NaN");
    *out = best;
    return DF_OK;
}

/* Candidates sorted by weight, best first; ties by token id so results are deterministic.
 * The weights come through qsort_r's argument: sessions sample on several threads at once. */
static int cmp_desc(const void *a, const void *b, void *weights) {
    const float *w = weights;
    int32_t ia = *(const int32_t *)a, ib = *(const int32_t *)b;
    float pa = w[ia], pb = w[ib];
    if (pa != pb) return pa > pb ? -1 : 1;
    return ia < ib ? -1 : (ia > ib);
}

/* A min-heap on weight[idx[.]] of at most k entries: after a pass over all tokens it holds
 * the k heaviest. O(n log k) instead of sorting the whole vocabulary. */
static void heap_sift_down(int32_t *h, int n, int i, const float *w) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && cmp_desc(&h[l], &h[m], (void *)w) > 0) m = l;
        if (r < n && cmp_desc(&h[r], &h[m], (void *)w) > 0) m = r;
        if (m == i) return;
        int32_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int top_k_indices(int32_t *idx, int n, int k, const float *w) {
    /* idx is used as the heap; the root is the lightest of the kept ones. */
    for (int i = 0; i < k; i++) idx[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--) heap_sift_down(idx, k, i, w);
    for (int i = k; i < n; i++) {
        int32_t cand = i;
        if (cmp_desc(&cand, &idx[0], (void *)w) < 0) { /* heavier than the lightest kept */
            idx[0] = cand;
            heap_sift_down(idx, k, 0, w);
        }
    }
    return k;
}

df_status df_sampler_dist(df_sampler *s, const float *logits) {
    const int n = s->n_vocab;
    const float inv_t = 1.0f / s->p.temperature;
    float maxl = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > maxl) maxl = logits[i];
    if (!isfinite(maxl)) return df_fail(DF_ERR_INVALID, "sampler: logits have no finite maximum");
    float *w = s->weight;
    for (int i = 0; i < n; i++) {
        float l = logits[i];
        w[i] = isnan(l) ? 0.0f : expf((l - maxl) * inv_t);
    }
    int m;
    if (s->p.top_k > 0 && s->p.top_k < n) {
        m = top_k_indices(s->idx, n, s->p.top_k, w);
    } else {
        m = n;
        for (int i = 0; i < n; i++) s->idx[i] = i;
    }
    qsort_r(s->idx, (size_t)m, sizeof *s->idx, cmp_desc, w);
    double sum = 0.0;
    for (int i = 0; i < m; i++) sum += w[s->idx[i]];
    if (s->p.top_p < 1.0f) {
        double acc = 0.0;
        for (int i = 0; i < m; i++) {
            acc += w[s->idx[i]] / sum;
            if (acc >= s->p.top_p) {
                m = i + 1;
                break;
            }
        }
    }
    if (s->p.min_p > 0.0f) {
        float floor_w = s->p.min_p * w[s->idx[0]];
        int keep = 1;
        while (keep < m && w[s->idx[keep]] >= floor_w) keep++;
        m = keep;
    }
    double total = 0.0;
    for (int i = 0; i < m; i++) total += w[s->idx[i]];
    for (int i = 0; i < m; i++) s->prob[i] = (float)(w[s->idx[i]] / total);
    s->n_cand = m;
    return DF_OK;
}

int32_t df_sampler_draw(df_sampler *s) {
    double u = df_rng_f64(&s->rng), acc = 0.0;
    for (int i = 0; i < s->n_cand; i++) {
        acc += s->prob[i];
        if (u < acc) return s->idx[i];
    }
    return s->idx[s->n_cand - 1]; /* rounding left u past the last boundary */
}

df_status df_sampler_sample(df_sampler *s, const float *logits, int32_t *out) {
    if (df_sampler_is_greedy(s)) return argmax(logits, s->n_vocab, out);
    DF_TRY(df_sampler_dist(s, logits));
    *out = df_sampler_draw(s);
    return DF_OK;
}
