/* The cache of recorded forwards (graph_cache.h): a few slots, least recently used replaced. */
#include "model/graph_cache.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"

enum { GRAPH_SLOTS = DF_GRAPH_CACHE_SLOTS };

typedef struct graph_slot {
    uintptr_t key[DF_GRAPH_KEY_WORDS];
    bool used;
    bool seen;        /* ran once unrecorded */
    bool broken;      /* recording failed once: this shape always runs directly */
    void *graph;
    uint64_t last_use;
} graph_slot;

struct df_graph_cache {
    df_backend *be;
    graph_slot slot[GRAPH_SLOTS];
    uint64_t tick;
    int64_t n_replayed;
};

df_status df_graph_cache_create(df_backend *be, df_graph_cache **out) {
    *out = NULL;
    const df_backend_ops *ops = be->ops;
    if (!ops->graph_begin || !ops->graph_end || !ops->graph_launch || !ops->graph_free) return DF_OK;
    const char *env = getenv("DFLASH_GRAPHS");
    if (env && !strcmp(env, "0")) return DF_OK;
    df_graph_cache *gc = calloc(1, sizeof *gc);
    if (!gc) return df_fail(DF_ERR_NOMEM, "graph cache: out of memory");
    gc->be = be;
    *out = gc;
    return DF_OK;
}

static void drop(df_backend *be, graph_slot *g) {
    if (g->graph) be->ops->graph_free(be, g->graph);
    memset(g, 0, sizeof *g);
}

void df_graph_cache_free(df_graph_cache *gc) {
    if (!gc) return;
    for (int i = 0; i < GRAPH_SLOTS; i++) drop(gc->be, &gc->slot[i]);
    free(gc);
}

int64_t df_graph_cache_replays(const df_graph_cache *gc) { return gc ? gc->n_replayed : 0; }

static graph_slot *find_slot(df_graph_cache *gc, const uintptr_t key[DF_GRAPH_KEY_WORDS]) {
    graph_slot *lru = &gc->slot[0];
    for (int i = 0; i < GRAPH_SLOTS; i++) {
        graph_slot *g = &gc->slot[i];
        if (g->used && !memcmp(g->key, key, sizeof g->key)) return g;
        if (!g->used) lru = g;
        else if (lru->used && g->last_use < lru->last_use) lru = g;
    }
    drop(gc->be, lru);
    memcpy(lru->key, key, sizeof lru->key);
    lru->used = true;
    return lru;
}

df_status df_graph_cache_run(df_graph_cache *gc, const uintptr_t *key_in, int n_key,
                             df_status (*body)(void *ctx), void *ctx) {
    if (!gc) return body(ctx);
    if (n_key < 0 || n_key > DF_GRAPH_KEY_WORDS)
        return df_fail(DF_ERR_INVALID, "graph cache: a key of %d words (at most %d)", n_key, DF_GRAPH_KEY_WORDS);
    df_backend *be = gc->be;
    uintptr_t key[DF_GRAPH_KEY_WORDS] = {0};
    memcpy(key, key_in, (size_t)n_key * sizeof key[0]);
    graph_slot *g = find_slot(gc, key);
    g->last_use = ++gc->tick;
    if (g->broken) return body(ctx);
    if (g->graph) {
        bool stale;
        DF_TRY(be->ops->graph_launch(be, g->graph, &stale));
        if (!stale) {
            gc->n_replayed++;
            return DF_OK;
        }
        /* A scratch buffer grew for another shape; this one's needs were met before. */
        be->ops->graph_free(be, g->graph);
        g->graph = NULL;
    } else if (!g->seen) {
        g->seen = true;
        return body(ctx);
    }
    if (be->ops->graph_begin(be) != DF_OK) {
        DF_WARN("cannot record a forward (%s); that shape runs unrecorded", df_last_error());
        g->broken = true;
        return body(ctx);
    }
    df_status rc = body(ctx);
    void *graph = NULL;
    df_status end = be->ops->graph_end(be, &graph);
    if (rc != DF_OK) {
        /* An op refused its arguments while recording: nothing ran, the error is the op's. */
        if (graph) be->ops->graph_free(be, graph);
        return rc;
    }
    if (end != DF_OK) {
        DF_WARN("recording a forward failed (%s); that shape runs unrecorded from now on", df_last_error());
        g->broken = true;
        return body(ctx);
    }
    g->graph = graph;
    bool stale;
    DF_TRY(be->ops->graph_launch(be, g->graph, &stale));
    if (stale) return df_fail(DF_ERR_INVALID, "graph cache: a scratch buffer moved while a forward was recorded");
    return DF_OK;
}
