#include "text/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

uint64_t df_strmap_hash(const void *key, size_t len) {
    /* FNV-1a, then a final avalanche so that linear probing sees well-spread low bits. */
    const uint8_t *p = key;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h ? h : 1;
}

static df_status alloc_slots(df_strmap *m, size_t cap) {
    size_t bytes;
    if (!df_mul_size(cap, sizeof *m->slots, &bytes)) return df_fail(DF_ERR_NOMEM, "hash map too large");
    m->slots = calloc(1, bytes);
    if (!m->slots) return df_fail(DF_ERR_NOMEM, "out of memory for a %zu-slot hash map", cap);
    m->mask = cap - 1;
    return DF_OK;
}

df_status df_strmap_init(df_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < expected * 2) {
        if (cap > ((size_t)1 << 40)) return df_fail(DF_ERR_NOMEM, "hash map too large");
        cap *= 2;
    }
    return alloc_slots(m, cap);
}

void df_strmap_free(df_strmap *m) {
    free(m->slots);
    free(m->pool);
    memset(m, 0, sizeof *m);
}

void df_strmap_clear(df_strmap *m) {
    if (m->slots) memset(m->slots, 0, (m->mask + 1) * sizeof *m->slots);
    m->count = 0;
    m->pool_len = 0;
}

int32_t df_strmap_get_h(const df_strmap *m, const void *key, size_t len, uint64_t hash) {
    for (size_t i = hash & m->mask;; i = (i + 1) & m->mask) {
        const df_strmap_slot *s = &m->slots[i];
        if (s->hash == 0) return -1;
        if (s->hash == hash && s->key_len == len && memcmp(m->pool + s->key_off, key, len) == 0)
            return s->value;
    }
}

int32_t df_strmap_get(const df_strmap *m, const void *key, size_t len) {
    return df_strmap_get_h(m, key, len, df_strmap_hash(key, len));
}

static df_status rehash(df_strmap *m) {
    df_strmap_slot *old = m->slots;
    size_t old_cap = m->mask + 1;
    DF_TRY(alloc_slots(m, old_cap * 2));
    for (size_t j = 0; j < old_cap; j++) {
        if (!old[j].hash) continue;
        size_t i = old[j].hash & m->mask;
        while (m->slots[i].hash) i = (i + 1) & m->mask;
        m->slots[i] = old[j];
    }
    free(old);
    return DF_OK;
}

df_status df_strmap_put_h(df_strmap *m, const void *key, size_t len, uint64_t hash, int32_t value,
                          int32_t *existing) {
    if (existing) *existing = -1;
    if ((m->count + 1) * 2 > m->mask + 1) DF_TRY(rehash(m));
    size_t i = hash & m->mask;
    for (;; i = (i + 1) & m->mask) {
        df_strmap_slot *s = &m->slots[i];
        if (s->hash == 0) break;
        if (s->hash == hash && s->key_len == len && memcmp(m->pool + s->key_off, key, len) == 0) {
            if (existing) *existing = s->value;
            return DF_OK;
        }
    }
    /* Offsets are 32-bit to keep slots small: 4 GiB of keys is far beyond any vocabulary. */
    size_t need;
    if (!df_add_size(m->pool_len, len, &need) || need > UINT32_MAX)
        return df_fail(DF_ERR_NOMEM, "hash map key pool exceeds 4 GiB");
    if (need > m->pool_cap) {
        size_t ncap = m->pool_cap ? m->pool_cap : 4096;
        while (ncap < need) ncap *= 2;
        char *np = realloc(m->pool, ncap);
        if (!np) return df_fail(DF_ERR_NOMEM, "out of memory for hash map keys");
        m->pool = np;
        m->pool_cap = ncap;
    }
    if (len) memcpy(m->pool + m->pool_len, key, len);
    m->slots[i] = (df_strmap_slot){hash, (uint32_t)m->pool_len, (uint32_t)len, value};
    m->pool_len = need;
    m->count++;
    return DF_OK;
}

df_status df_strmap_put(df_strmap *m, const void *key, size_t len, int32_t value, int32_t *existing) {
    return df_strmap_put_h(m, key, len, df_strmap_hash(key, len), value, existing);
}
