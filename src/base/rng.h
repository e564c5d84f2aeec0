/* A small seeded RNG (xoshiro256**, seeded through splitmix64): reproducible test data and
 * sampling. Not for anything that needs to be unpredictable. */
#ifndef DF_BASE_RNG_H
#define DF_BASE_RNG_H

#include <stdint.h>

typedef struct df_rng { uint64_t s[4]; } df_rng;

void df_rng_seed(df_rng *r, uint64_t seed);
uint64_t df_rng_u64(df_rng *r);
double df_rng_f64(df_rng *r);            /* uniform in [0, 1) */
float df_rng_uniform(df_rng *r, float lo, float hi);
float df_rng_normal(df_rng *r);          /* standard normal (Box-Muller) */
uint32_t df_rng_below(df_rng *r, uint32_t n); /* uniform in [0, n), n > 0, unbiased */

#endif
