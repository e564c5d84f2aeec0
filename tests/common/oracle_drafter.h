/* The oracle drafter, shared by the Criterion tests (tests/unit/test_spec_lossless.c) and the
 * GPU checks (tests/gpu/cuda_model_check.c): a df_drafter that knows the target's greedy
 * continuation in advance (from an AR run) and proposes it with mistakes injected, so that
 * the number of accepted drafts cycles through every value 0 .. n and every rollback length
 * of speculative decoding is exercised. A random drafter rarely agrees with the target; this
 * one makes "speculative output == AR output" a test of the engine alone.
 *
 *     test_oracle o;
 *     test_oracle_init(&o, seq, n_seq, n_vocab);       // seq = prompt + AR continuation
 *     df_drafter d = test_oracle_drafter(&o);
 *     df_spec_create(st, &d, block, capture_type, &sp);
 *     test_oracle_reset(&o);
 *     ... df_generate(st, sp, ...); then o.bonus_mismatch must be 0 */
#ifndef DF_TEST_ORACLE_DRAFTER_H
#define DF_TEST_ORACLE_DRAFTER_H

#include <stdint.h>

#include "engine/spec.h"

typedef struct test_oracle {
    const int32_t *seq; /* prompt + the target's greedy continuation */
    int64_t n_seq;
    int64_t pos;        /* committed tokens: the bonus sits at seq[pos] */
    int64_t step;       /* propose calls since the last reset */
    int32_t vocab;
    int bonus_mismatch; /* times the engine's bonus differed from seq[pos] */
} test_oracle;

void test_oracle_init(test_oracle *o, const int32_t *seq, int64_t n_seq, int32_t vocab);

/* The df_drafter callbacks (self is a test_oracle). */
df_status test_oracle_reset(void *self);
df_status test_oracle_append(void *self, float *const *features, int64_t n_rows);
/* Right for the first `accept` drafts and wrong after, accept = step mod (n + 1). */
df_status test_oracle_propose(void *self, int32_t bonus, int n, int32_t *out);

/* A df_drafter over o (block size 16, one feature layer, 0, whose rows it ignores); o may be
 * NULL for a drafter that is never used. */
df_drafter test_oracle_drafter(test_oracle *o);

#endif
