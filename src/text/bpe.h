/* Byte-pair encoding of one pre-tokenized piece (bpe.c). Internal. */
#ifndef DF_TEXT_BPE_H
#define DF_TEXT_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "text/bytes.h"

struct df_tokenizer;

/* Reusable working memory (zero-initialise; free with df_bpe_work_free). */
typedef struct df_bpe_work {
    void *sym;
    size_t sym_cap;
    void *heap;
    size_t n_heap, heap_cap;
} df_bpe_work;

/* Appends the token ids of the raw bytes p[0..n) (one piece) to out. */
df_status df_bpe_word(const struct df_tokenizer *t, df_bpe_work *w, const uint8_t *p, size_t n, df_tokens *out);
void df_bpe_work_free(df_bpe_work *w);

#endif
