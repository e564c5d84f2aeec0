/* Token sampling from logits: greedy, or temperature with top-k, top-p and min-p filters.
 *
 * The filters shape a distribution over the vocabulary; df_sampler_dist exposes it so that
 * speculative decoding can do rejection sampling against the same distribution that plain
 * sampling draws from (which is what keeps sampled speculative decoding lossless).
 * Order, as in transformers' logits processors: temperature, top-k, top-p, min-p. */
#ifndef DF_ENGINE_SAMPLING_H
#define DF_ENGINE_SAMPLING_H

#include <stdbool.h>
#include <stdint.h>

#include "base/rng.h"
#include "base/status.h"

typedef struct df_sampling_params {
    float temperature; /* <= 0: greedy (argmax) */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1: off */
    float min_p;       /* <= 0: off */
    uint64_t seed;
} df_sampling_params;

df_sampling_params df_sampling_default(void); /* greedy */

typedef struct df_sampler {
    df_sampling_params p;
    df_rng rng;
    int n_vocab;
    int32_t *idx;  /* [n_vocab] candidate token ids, best first after filtering */
    float *prob;   /* [n_vocab] their probabilities (prob[i] is that of idx[i]) */
    float *weight; /* [n_vocab] scratch: unnormalised weight by token id */
    int n_cand;    /* candidates left after the last df_sampler_dist */
} df_sampler;

df_status df_sampler_init(df_sampler *s, const df_sampling_params *p, int n_vocab);
void df_sampler_free(df_sampler *s);
bool df_sampler_is_greedy(const df_sampler *s);

/* Greedy: the first maximum. Otherwise a draw from df_sampler_dist. */
df_status df_sampler_sample(df_sampler *s, const float *logits, int32_t *out);

/* Fills s->idx / s->prob / s->n_cand with the filtered, renormalised distribution (best
 * first). Not for greedy samplers. */
df_status df_sampler_dist(df_sampler *s, const float *logits);

/* A draw from the distribution left by the last df_sampler_dist. */
int32_t df_sampler_draw(df_sampler *s);

#endif
