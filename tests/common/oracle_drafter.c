/* The oracle drafter (oracle_drafter.h). */
#include "common/oracle_drafter.h"

#include <string.h>

void test_oracle_init(test_oracle *o, const int32_t *seq, int64_t n_seq, int32_t vocab) {
    memset(o, 0, sizeof *o);
    o->seq = seq;
    o->n_seq = n_seq;
    o->vocab = vocab;
}

df_status test_oracle_reset(void *self) {
    test_oracle *o = self;
    o->pos = 0;
    o->step = 0;
    return DF_OK;
}

df_status test_oracle_append(void *self, float *const *features, int64_t n_rows) {
    (void)features;
    ((test_oracle *)self)->pos += n_rows;
    return DF_OK;
}

df_status test_oracle_propose(void *self, int32_t bonus, int n, int32_t *out) {
    test_oracle *o = self;
    if (o->pos < o->n_seq && o->seq[o->pos] != bonus) o->bonus_mismatch++;
    const int accept = (int)(o->step++ % (n + 1));
    for (int i = 0; i < n; i++) {
        const int64_t idx = o->pos + 1 + i;
        const int32_t tok = idx < o->n_seq ? o->seq[idx] : 0;
        out[i] = i < accept ? tok : (tok + 1) % o->vocab;
    }
    return DF_OK;
}

df_drafter test_oracle_drafter(test_oracle *o) {
    df_drafter d = {.self = o, .block_size = 16, .n_features = 1, .feature_layers = {0},
                    .reset = test_oracle_reset, .append_context = test_oracle_append,
                    .propose = test_oracle_propose};
    return d;
}
