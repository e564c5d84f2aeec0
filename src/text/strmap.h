/* A string -> int32 hash map that owns copies of its keys (open addressing, linear probing,
 * load factor <= 1/2). Used for the vocabulary (token text -> id) and the BPE word cache. */
#ifndef DF_TEXT_STRMAP_H
#define DF_TEXT_STRMAP_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef struct df_strmap_slot {
    uint64_t hash;     /* 0 marks an empty slot (hashes are forced non-zero) */
    uint32_t key_off;  /* into the key pool */
    uint32_t key_len;
    int32_t value;
} df_strmap_slot;

typedef struct df_strmap {
    df_strmap_slot *slots;
    size_t mask;       /* capacity - 1; capacity is a power of two */
    size_t count;
    char *pool;        /* the keys, back to back */
    size_t pool_len, pool_cap;
} df_strmap;

df_status df_strmap_init(df_strmap *m, size_t expected);
void df_strmap_free(df_strmap *m);
void df_strmap_clear(df_strmap *m);  /* keeps the memory */

uint64_t df_strmap_hash(const void *key, size_t len);

/* The value for key, or -1 when absent. */
int32_t df_strmap_get(const df_strmap *m, const void *key, size_t len);
int32_t df_strmap_get_h(const df_strmap *m, const void *key, size_t len, uint64_t hash);

/* Inserts key -> value. When the key is already present nothing changes and *existing (if
 * not NULL) receives the value already there, else -1. */
df_status df_strmap_put(df_strmap *m, const void *key, size_t len, int32_t value, int32_t *existing);
df_status df_strmap_put_h(df_strmap *m, const void *key, size_t len, uint64_t hash, int32_t value,
                          int32_t *existing);

#endif
