/* Recorded forwards: a model keeps running a few shapes of forward (the decode step, the
 * verify of a block, the drafter's step), and a backend with graph hooks (CUDA) can record
 * each shape once and replay it from then on, one launch instead of hundreds.
 *
 * A recording is only correct if everything that differs between two runs of one shape is
 * read from buffers when the work runs (token ids, positions: attention and the KV write take
 * the position from a buffer, df_attn_args.pos). Whatever the recording bakes in (token
 * count, logits mode, buffer addresses) must be in the key the caller passes. A shape is
 * recorded the second time it comes: the first run, unrecorded, lets the backend grow its
 * scratch buffers to the shape (a recording must not allocate), and shapes that come once
 * (odd prefill chunks) are never recorded. */
#ifndef DF_MODEL_GRAPH_CACHE_H
#define DF_MODEL_GRAPH_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"

/* Recordings kept (least recently used replaced). A speculative session keeps ~20 shapes
 * busy: its verify, the rollback after each number of accepted tokens (1..B-1), the decode
 * step, prompt chunks. */
enum { DF_GRAPH_KEY_WORDS = 24, DF_GRAPH_CACHE_SLOTS = 48 };

typedef struct df_graph_cache df_graph_cache;

/* *out = NULL (and DF_OK) when the backend cannot record or the environment variable
 * DFLASH_GRAPHS is "0" (to measure what recording gains); callers then run directly. */
df_status df_graph_cache_create(df_backend *be, df_graph_cache **out);
void df_graph_cache_free(df_graph_cache *gc);

/* Runs body(ctx) directly, or records it, or replays its recording, by key (words past n_key
 * count as 0; n_key <= DF_GRAPH_KEY_WORDS). gc may be NULL: body runs directly. */
df_status df_graph_cache_run(df_graph_cache *gc, const uintptr_t *key, int n_key,
                             df_status (*body)(void *ctx), void *ctx);

/* Forwards replayed so far (0 for a NULL cache). */
int64_t df_graph_cache_replays(const df_graph_cache *gc);

#endif
