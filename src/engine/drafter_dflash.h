/* The DFlash drafter behind the engine's df_drafter interface. */
#ifndef DF_ENGINE_DRAFTER_DFLASH_H
#define DF_ENGINE_DRAFTER_DFLASH_H

#include "engine/spec.h"
#include "model/dflash_draft.h"

typedef struct df_dflash_drafter {
    df_drafter base;        /* what the engine calls; base.self points here */
    df_dflash_state *st;
    df_backend *be;
} df_dflash_drafter;

/* A drafting state for this target (n_ctx rows of context, blocks of up to block_size). */
df_status df_dflash_drafter_create(const df_dflash_draft *d, const df_qwen35 *target, int64_t n_ctx,
                                   int64_t block_size, df_dflash_drafter **out);
void df_dflash_drafter_free(df_dflash_drafter *dd);

#endif
