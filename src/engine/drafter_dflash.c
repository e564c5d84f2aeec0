#include "engine/drafter_dflash.h"

#include <stdlib.h>

static df_status dd_reset(void *self) {
    df_dflash_state_reset(((df_dflash_drafter *)self)->st);
    return DF_OK;
}

static df_status dd_append(void *self, float *const *features, int64_t n_rows) {
    return df_dflash_state_commit(((df_dflash_drafter *)self)->st, (const float *const *)features, n_rows);
}

static df_status dd_propose(void *self, int32_t bonus, int n, int32_t *out) {
    df_dflash_drafter *dd = self;
    DF_TRY(df_dflash_state_draft(dd->st, bonus, n + 1));
    return dd->be->ops->download(dd->be, out, dd->st->argmax, (size_t)n * sizeof(int32_t));
}

df_status df_dflash_drafter_create(const df_dflash_draft *d, const df_qwen35 *target, int64_t n_ctx,
                                   int64_t block_size, df_dflash_drafter **out) {
    *out = NULL;
    int32_t ids[DF_DFLASH_MAX_CAPTURE];
    DF_TRY(df_dflash_draft_capture_layers(d, &target->hp, ids));
    if (d->hp.n_capture > DF_SPEC_MAX_FEATURES)
        return df_fail(DF_ERR_UNSUPPORTED, "drafter reads %lld target layers; at most %d supported",
                       (long long)d->hp.n_capture, DF_SPEC_MAX_FEATURES);
    df_dflash_drafter *dd = calloc(1, sizeof *dd);
    if (!dd) return df_fail(DF_ERR_NOMEM, "drafter: out of memory");
    df_status st = df_dflash_state_create(d, target, n_ctx, block_size, DF_KV_F16, &dd->st);
    if (st != DF_OK) {
        free(dd);
        return st;
    }
    dd->be = d->be;
    dd->base.self = dd;
    dd->base.block_size = (int)dd->st->block_size;
    dd->base.n_features = (int)d->hp.n_capture;
    for (int i = 0; i < dd->base.n_features; i++) dd->base.feature_layers[i] = ids[i];
    dd->base.reset = dd_reset;
    dd->base.append_context = dd_append;
    dd->base.propose = dd_propose;
    *out = dd;
    return DF_OK;
}

void df_dflash_drafter_free(df_dflash_drafter *dd) {
    if (!dd) return;
    df_dflash_state_free(dd->st);
    free(dd);
}
