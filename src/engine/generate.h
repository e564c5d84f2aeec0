/* The generation loop: prefill, then either one token per forward (autoregressive) or a
 * block per verify (speculative, when a df_spec is given and sampling is greedy), with
 * end-of-generation tokens, stop strings, max tokens and the streaming detokenizer applied
 * token by token, so both paths end the output at exactly the same place. */
#ifndef DF_ENGINE_GENERATE_H
#define DF_ENGINE_GENERATE_H

#include "dflash.h"
#include "engine/spec.h"
#include "model/qwen35.h"
#include "text/tokenizer.h"

typedef struct df_gen_request {
    const int32_t *prompt;
    size_t n_prompt;
    const dflash_gen_params *p;
    dflash_token_fn cb;
    void *user;
    const df_tokenizer *tok;   /* NULL: no text */
    const int32_t *eog;        /* end-of-generation ids */
    int n_eog;
} df_gen_request;

/* spec may be NULL (plain AR). Speculative decoding is used only for greedy requests;
 * sampled ones run AR. stats->spec_* fields are filled when it was used. */
df_status df_generate(df_qwen35_state *st, df_spec *spec, const df_gen_request *r,
                      dflash_gen_stats *stats);

#endif
