/* Shared by the drafter's loader files only. */
#ifndef DF_MODEL_DFLASH_INTERNAL_H
#define DF_MODEL_DFLASH_INTERNAL_H

#include "model/dflash_draft.h"

/* Range and consistency checks common to both file kinds; source names the file. */
df_status df_dflash_validate_hparams(const df_dflash_hparams *hp, const char *source);

/* A drafter with its source name and layer array, ready for binding. */
df_status df_dflash_alloc(df_backend *be, const char *source, const df_dflash_hparams *hp,
                          df_dflash_draft **out);
/* Takes ownership of a host buffer (df_alloc_aligned) that a bound weight points into. */
df_status df_dflash_keep_host(df_dflash_draft *d, void *p);
/* The last step of a load: the RoPE table. */
df_status df_dflash_finish_load(df_dflash_draft *d);

/* Every weight of the drafter, for walking (unbinding, counting). */
#define DF_DFLASH_LAYER_WEIGHTS 11
static inline df_weight *df_dflash_layer_weight(df_dflash_layer *L, int i) {
    df_weight *w[DF_DFLASH_LAYER_WEIGHTS] = {&L->attn_norm, &L->ffn_norm, &L->wq, &L->wk,
                                             &L->wv, &L->wo, &L->q_norm, &L->k_norm,
                                             &L->ffn_gate, &L->ffn_up, &L->ffn_down};
    return w[i];
}

#endif
