/* Growable buffers used across src/text: bytes (UTF-8 text, token pieces) and token ids.
 * A zero-initialised struct is an empty buffer; free with the matching *_free. */
#ifndef DF_TEXT_BYTES_H
#define DF_TEXT_BYTES_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef struct df_bytes {
    char *data;   /* NUL-terminated after every successful append (data[len] == 0) */
    size_t len;
    size_t cap;
} df_bytes;

df_status df_bytes_reserve(df_bytes *b, size_t extra);  /* room for extra more bytes + NUL */
df_status df_bytes_append(df_bytes *b, const void *p, size_t n);
df_status df_bytes_append_str(df_bytes *b, const char *s);
static inline void df_bytes_clear(df_bytes *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}
void df_bytes_free(df_bytes *b);

typedef struct df_tokens {
    int32_t *ids;
    size_t n;
    size_t cap;
} df_tokens;

df_status df_tokens_reserve(df_tokens *t, size_t extra);
df_status df_tokens_push(df_tokens *t, int32_t id);
df_status df_tokens_append(df_tokens *t, const int32_t *ids, size_t n);
void df_tokens_free(df_tokens *t);

#endif
