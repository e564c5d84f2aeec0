/* A Hugging Face checkpoint: the safetensors weights of one model directory, whether saved as
 * one `model.safetensors` or as shards listed by `model.safetensors.index.json`
 * ({"metadata": {...}, "weight_map": {tensor name: shard file name}}).
 *
 * Opening checks that the index and the shards agree: every shard the index names exists,
 * every tensor the index maps is in that shard, no tensor is in two shards, and no shard
 * holds a tensor the index does not list (a stale index would otherwise hide weights). */
#ifndef DF_FORMAT_CHECKPOINT_H
#define DF_FORMAT_CHECKPOINT_H

#include <stddef.h>

#include "base/status.h"
#include "format/safetensors.h"

#define DF_CKPT_SINGLE_FILE "model.safetensors"
#define DF_CKPT_INDEX_FILE "model.safetensors.index.json"

typedef struct df_ckpt_entry {
    const df_st_tensor *tensor;
    size_t shard; /* index into df_ckpt.shards */
} df_ckpt_entry;

typedef struct df_ckpt {
    char *dir;              /* as given to df_ckpt_open */
    size_t n_shards;
    df_st_file **shards;    /* sorted by file name; one entry for a single-file checkpoint */
    size_t n_tensors;
    df_ckpt_entry *entries; /* every tensor of every shard, sorted by name */
} df_ckpt;

/* Opens a checkpoint. path is a model directory (the index is preferred over
 * model.safetensors when both exist) or a single .safetensors file. */
df_status df_ckpt_open(const char *path, df_ckpt **out);
void df_ckpt_close(df_ckpt *c); /* NULL is fine */

/* NULL when no shard holds a tensor of that name. */
const df_st_tensor *df_ckpt_find(const df_ckpt *c, const char *name);
/* Like df_ckpt_find, but a missing tensor is a DF_ERR_NOT_FOUND naming the checkpoint. */
df_status df_ckpt_get(const df_ckpt *c, const char *name, const df_st_tensor **out);

/* Iteration in name order (strcmp), stable across runs and shardings: i in [0, n_tensors). */
static inline size_t df_ckpt_count(const df_ckpt *c) { return c->n_tensors; }
static inline const df_st_tensor *df_ckpt_tensor(const df_ckpt *c, size_t i) {
    return i < c->n_tensors ? c->entries[i].tensor : NULL;
}
/* The shard file that holds tensor i (for messages). */
const char *df_ckpt_shard_path(const df_ckpt *c, size_t i);

#endif
