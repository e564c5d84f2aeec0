/* Byte-pair encoding of one pre-tokenized piece, and the merge table it consults.
 *
 * The piece starts as one symbol per byte (each byte's byte-level token). Repeatedly the
 * adjacent pair with the lowest merge rank is replaced by its merged token; among equal
 * ranks the leftmost pair goes first. This is the rule of the Hugging Face BPE model.
 *
 * Done naively (rescan all pairs after every merge) a piece of n bytes costs O(n^2); a
 * 100 KB run of one letter would take minutes. Instead the candidate pairs sit in a binary
 * heap keyed by (rank, position); each merge changes two neighbours, so it pushes at most two
 * new candidates, and entries that a merge made stale are recognised and dropped when
 * popped. O(n log n) overall. */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "text/bpe.h"
#include "text/tokenizer_internal.h"

/* ---- the merge table: (left, right) -> (rank, merged) ---------------------------------- */

static inline uint64_t merge_key(int32_t left, int32_t right) {
    return (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
}

static inline size_t merge_slot(uint64_t key, size_t mask) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & mask;
}

df_status df_merge_map_init(df_merge_map *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t cap = 16, bytes;
    while (cap < expected * 2) cap *= 2;
    if (!df_mul_size(cap, sizeof *m->slots, &bytes)) return df_fail(DF_ERR_NOMEM, "merge table too large");
    m->slots = calloc(1, bytes);
    if (!m->slots) return df_fail(DF_ERR_NOMEM, "out of memory for %zu merges", expected);
    m->mask = cap - 1;
    return DF_OK;
}

void df_merge_map_free(df_merge_map *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

df_status df_merge_map_put(df_merge_map *m, int32_t left, int32_t right, int32_t rank, int32_t merged) {
    if ((m->count + 1) * 2 > m->mask + 1) {
        df_merge_map bigger;
        DF_TRY(df_merge_map_init(&bigger, (m->mask + 1)));
        for (size_t j = 0; j <= m->mask; j++) {
            if (!m->slots[j].key) continue;
            size_t i = merge_slot(m->slots[j].key, bigger.mask);
            while (bigger.slots[i].key) i = (i + 1) & bigger.mask;
            bigger.slots[i] = m->slots[j];
        }
        bigger.count = m->count;
        free(m->slots);
        *m = bigger;
    }
    uint64_t key = merge_key(left, right);
    size_t i = merge_slot(key, m->mask);
    while (m->slots[i].key && m->slots[i].key != key) i = (i + 1) & m->mask;
    if (!m->slots[i].key) m->count++;
    m->slots[i] = (df_merge_slot){key, rank, merged};
    return DF_OK;
}

const df_merge_slot *df_merge_map_get(const df_merge_map *m, int32_t left, int32_t right) {
    uint64_t key = merge_key(left, right);
    for (size_t i = merge_slot(key, m->mask);; i = (i + 1) & m->mask) {
        const df_merge_slot *s = &m->slots[i];
        if (s->key == key) return s;
        if (!s->key) return NULL;
    }
}

/* ---- encoding one piece ------------------------------------------------------------------ */

typedef struct bpe_symbol {
    int32_t id;
    int32_t prev, next;  /* neighbours in the live chain, -1 at the ends */
    int32_t len;         /* bytes covered; 0 once merged into its left neighbour */
} bpe_symbol;

typedef struct bpe_cand {
    int32_t rank;
    int32_t pos;            /* the left symbol */
    int32_t left, right;    /* the pair's ids when pushed: a changed pair is a stale entry */
    int32_t merged;
} bpe_cand;

static inline bool cand_before(const bpe_cand *a, const bpe_cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static df_status heap_push(df_bpe_work *w, bpe_cand c) {
    if (w->n_heap == w->heap_cap) {
        size_t ncap = w->heap_cap ? w->heap_cap * 2 : 64, bytes;
        if (!df_mul_size(ncap, sizeof(bpe_cand), &bytes)) return df_fail(DF_ERR_NOMEM, "bpe: piece too long");
        void *p = realloc(w->heap, bytes);
        if (!p) return df_fail(DF_ERR_NOMEM, "bpe: out of memory");
        w->heap = p;
        w->heap_cap = ncap;
    }
    bpe_cand *h = w->heap;
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_before(&c, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = c;
    return DF_OK;
}

static bpe_cand heap_pop(df_bpe_work *w) {
    bpe_cand *h = w->heap;
    bpe_cand top = h[0], last = h[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_before(&h[c + 1], &h[c])) c++;
        if (!cand_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

static df_status push_pair(const df_tokenizer *t, df_bpe_work *w, int32_t left) {
    if (left < 0) return DF_OK;
    bpe_symbol *s = w->sym;
    int32_t right = s[left].next;
    if (right < 0) return DF_OK;
    const df_merge_slot *m = df_merge_map_get(&t->merges, s[left].id, s[right].id);
    if (!m) return DF_OK;
    return heap_push(w, (bpe_cand){m->rank, left, s[left].id, s[right].id, m->merged});
}

/* Short pieces (most words): the same rule on plain arrays. rank[i] belongs to the pair
 * (id[i], id[i+1]); a merge at i only changes the pairs at i-1 and i, so each merge costs two
 * lookups and a scan of a few entries. */
enum { SHORT_PIECE = 48 };

static void pair_rank(const df_tokenizer *t, const int32_t *id, int32_t *rank, int32_t *merged, size_t i) {
    const df_merge_slot *m = df_merge_map_get(&t->merges, id[i], id[i + 1]);
    rank[i] = m ? m->rank : INT32_MAX;
    merged[i] = m ? m->merged : -1;
}

static df_status bpe_short(const df_tokenizer *t, const uint8_t *p, size_t n, df_tokens *out) {
    int32_t id[SHORT_PIECE], rank[SHORT_PIECE], merged[SHORT_PIECE];
    for (size_t i = 0; i < n; i++) id[i] = t->byte_to_id[p[i]];
    for (size_t i = 0; i + 1 < n; i++) pair_rank(t, id, rank, merged, i);
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[best]) best = i;   /* strict: the leftmost among equals */
        if (rank[best] == INT32_MAX) break;
        id[best] = merged[best];
        /* drop symbol best+1 and the pair that started at it */
        memmove(id + best + 1, id + best + 2, (n - best - 2) * sizeof *id);
        memmove(rank + best + 1, rank + best + 2, (n > best + 3 ? n - best - 3 : 0) * sizeof *rank);
        memmove(merged + best + 1, merged + best + 2, (n > best + 3 ? n - best - 3 : 0) * sizeof *merged);
        n--;
        if (best > 0) pair_rank(t, id, rank, merged, best - 1);
        if (best + 1 < n) pair_rank(t, id, rank, merged, best);
    }
    return df_tokens_append(out, id, n);
}

df_status df_bpe_word(const df_tokenizer *t, df_bpe_work *w, const uint8_t *p, size_t n, df_tokens *out) {
    if (n == 0) return DF_OK;
    if (n == 1) return df_tokens_push(out, t->byte_to_id[p[0]]);
    if (n <= SHORT_PIECE) return bpe_short(t, p, n, out);
    if (n > INT32_MAX) return df_fail(DF_ERR_INVALID, "bpe: a %zu-byte piece is too long", n);
    if (n > w->sym_cap) {
        size_t bytes;
        if (!df_mul_size(n, sizeof(bpe_symbol), &bytes)) return df_fail(DF_ERR_NOMEM, "bpe: piece too long");
        void *q = realloc(w->sym, bytes);
        if (!q) return df_fail(DF_ERR_NOMEM, "bpe: out of memory for a %zu-byte piece", n);
        w->sym = q;
        w->sym_cap = n;
    }
    bpe_symbol *s = w->sym;
    for (size_t i = 0; i < n; i++)
        s[i] = (bpe_symbol){t->byte_to_id[p[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, 1};
    w->n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++) DF_TRY(push_pair(t, w, (int32_t)i));

    while (w->n_heap) {
        bpe_cand c = heap_pop(w);
        bpe_symbol *left = &s[c.pos];
        if (left->len == 0 || left->next < 0) continue;           /* merged away meanwhile */
        bpe_symbol *right = &s[left->next];
        if (left->id != c.left || right->id != c.right) continue;  /* the pair has changed */
        left->id = c.merged;
        left->len += right->len;
        right->len = 0;
        left->next = right->next;
        if (right->next >= 0) s[right->next].prev = c.pos;
        DF_TRY(push_pair(t, w, left->prev));
        DF_TRY(push_pair(t, w, c.pos));
    }
    DF_TRY(df_tokens_reserve(out, n));
    for (int32_t i = 0; i >= 0; i = s[i].next) out->ids[out->n++] = s[i].id;
    return DF_OK;
}

void df_bpe_work_free(df_bpe_work *w) {
    free(w->sym);
    free(w->heap);
    memset(w, 0, sizeof *w);
}
