/* Stop strings over streamed text: text that could still become a stop string is held
 * back, so the caller never emits the start of a stop string and then has to take it back. */
#ifndef DF_ENGINE_STOP_STRINGS_H
#define DF_ENGINE_STOP_STRINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/status.h"

typedef struct df_stop_matcher {
    const char *const *stop;
    int n_stop;
    char *pending;      /* text received but not yet released */
    size_t len, cap;
    char *out;          /* what the last call released */
    size_t out_cap;
} df_stop_matcher;

void df_stop_init(df_stop_matcher *m, const char *const *stop, int n_stop);
void df_stop_free(df_stop_matcher *m);

/* Appends text; sets *release / *release_len to the text that is now safe to emit (valid
 * until the next call) and *hit when a stop string was found (the release then ends just
 * before it, and the rest is dropped). */
df_status df_stop_push(df_stop_matcher *m, const char *text, size_t len, const char **release,
                       size_t *release_len, bool *hit);

/* Everything still held back (at the end of a generation). */
void df_stop_flush(df_stop_matcher *m, const char **release, size_t *release_len);

#endif
