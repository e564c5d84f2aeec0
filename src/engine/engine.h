/* The engine's view of a loaded model and a session; the public API (include/dflash.h) is a
 * thin layer over these. */
#ifndef DF_ENGINE_ENGINE_H
#define DF_ENGINE_ENGINE_H

#include "dflash.h"
#include "engine/drafter_dflash.h"
#include "engine/sampling.h"
#include "format/gguf.h"
#include "model/qwen35.h"
#include "text/tokenizer.h"

#define DF_MAX_EOG 8

struct dflash_model {
    df_gguf *gguf;
    df_backend *be;
    df_qwen35 *target;
    df_tokenizer *tok;       /* NULL for models without tokenizer metadata */
    df_dflash_draft *draft;  /* NULL without a drafter */
    int32_t eog[DF_MAX_EOG]; /* end-of-generation ids */
    int n_eog;
    uint64_t weight_bytes;
};

struct dflash_session {
    dflash_model *m;
    df_qwen35_state *st;
    df_dflash_drafter *drafter; /* NULL: plain AR */
    df_spec *spec;
    void *lane;                 /* the backend lane of its own threads; NULL: the model's */
};

#endif
