/* The recorded-forward cache (model/graph_cache.c) against a fake backend whose graph hooks
 * only count: which calls run the body directly, which record it, which replay, and what
 * happens when a recording goes stale or fails. (That a replay computes what the direct run
 * computes is checked on a GPU by tests/gpu/cuda_model_check.c.) */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "model/graph_cache.h"

typedef struct fake {
    df_backend be;
    int begins, ends, launches, frees, live;
    bool recording;
    bool fail_end;       /* graph_end fails */
    bool stale_next;     /* the next launch finds the recording stale */
    int body_runs_recorded, body_runs_direct;
} fake;

static fake *F(df_backend *be) { return (fake *)be->impl; }

static df_status f_begin(df_backend *be) {
    F(be)->begins++;
    F(be)->recording = true;
    return DF_OK;
}
static df_status f_end(df_backend *be, void **graph) {
    fake *f = F(be);
    f->ends++;
    f->recording = false;
    *graph = NULL;
    if (f->fail_end) return df_fail(DF_ERR_INVALID, "fake: recording failed");
    *graph = malloc(1);
    f->live++;
    return DF_OK;
}
static df_status f_launch(df_backend *be, void *graph, bool *stale) {
    fake *f = F(be);
    cr_assert_not_null(graph);
    *stale = f->stale_next;
    f->stale_next = false;
    if (!*stale) f->launches++;
    return DF_OK;
}
static void f_free(df_backend *be, void *graph) {
    F(be)->frees++;
    F(be)->live--;
    free(graph);
}

static const df_backend_ops fake_ops = {
    .name = "fake", .graph_begin = f_begin, .graph_end = f_end, .graph_launch = f_launch, .graph_free = f_free,
};

static void fake_init(fake *f) {
    *f = (fake){0};
    f->be.ops = &fake_ops;
    f->be.impl = f;
}

static df_status body(void *ctx) {
    fake *f = ctx;
    if (f->recording) f->body_runs_recorded++;
    else f->body_runs_direct++;
    return DF_OK;
}

static df_status run(df_graph_cache *gc, fake *f, uintptr_t k) {
    const uintptr_t key[2] = {k, 7};
    return df_graph_cache_run(gc, key, 2, body, f);
}

Test(graph_cache, first_direct_second_recorded_then_replayed) {
    fake f;
    fake_init(&f);
    df_graph_cache *gc;
    cr_assert_eq(df_graph_cache_create(&f.be, &gc), DF_OK);
    cr_assert_not_null(gc);
    cr_assert_eq(run(gc, &f, 1), DF_OK);
    cr_assert_eq(f.body_runs_direct, 1);
    cr_assert_eq(f.begins, 0);
    cr_assert_eq(run(gc, &f, 1), DF_OK);
    cr_assert_eq(f.begins, 1);
    cr_assert_eq(f.body_runs_recorded, 1);
    cr_assert_eq(f.launches, 1, "a new recording runs at once");
    for (int i = 0; i < 5; i++) cr_assert_eq(run(gc, &f, 1), DF_OK);
    cr_assert_eq(f.launches, 6);
    cr_assert_eq(f.begins, 1);
    cr_assert_eq(f.body_runs_direct + f.body_runs_recorded, 2);
    cr_assert_eq(df_graph_cache_replays(gc), 5);
    /* another shape starts over */
    cr_assert_eq(run(gc, &f, 2), DF_OK);
    cr_assert_eq(f.body_runs_direct, 2);
    df_graph_cache_free(gc);
    cr_assert_eq(f.live, 0, "free releases every recording");
}

Test(graph_cache, stale_recording_is_recorded_again) {
    fake f;
    fake_init(&f);
    df_graph_cache *gc;
    cr_assert_eq(df_graph_cache_create(&f.be, &gc), DF_OK);
    run(gc, &f, 3);
    run(gc, &f, 3);
    f.stale_next = true;
    cr_assert_eq(run(gc, &f, 3), DF_OK);
    cr_assert_eq(f.begins, 2, "recorded again without a direct run first");
    cr_assert_eq(f.frees, 1);
    cr_assert_eq(f.launches, 2);
    cr_assert_eq(f.live, 1);
    df_graph_cache_free(gc);
    cr_assert_eq(f.live, 0);
}

Test(graph_cache, failed_recording_runs_directly_from_then_on) {
    fake f;
    fake_init(&f);
    f.fail_end = true;
    df_graph_cache *gc;
    cr_assert_eq(df_graph_cache_create(&f.be, &gc), DF_OK);
    run(gc, &f, 4);
    cr_assert_eq(run(gc, &f, 4), DF_OK, "a failed recording is not an error");
    cr_assert_eq(f.body_runs_recorded, 1);
    cr_assert_eq(f.body_runs_direct, 2, "the shape ran directly after the recording failed");
    for (int i = 0; i < 3; i++) run(gc, &f, 4);
    cr_assert_eq(f.begins, 1, "never tried again");
    cr_assert_eq(f.body_runs_direct, 5);
    df_graph_cache_free(gc);
}

Test(graph_cache, least_recently_used_shape_is_evicted) {
    fake f;
    fake_init(&f);
    df_graph_cache *gc;
    cr_assert_eq(df_graph_cache_create(&f.be, &gc), DF_OK);
    /* record one shape more than the cache holds, keeping shape 100 in use */
    for (uintptr_t k = 100; k < 100 + DF_GRAPH_CACHE_SLOTS + 1; k++) {
        run(gc, &f, k);
        run(gc, &f, k);
        run(gc, &f, 100);
    }
    cr_assert_eq(f.live, DF_GRAPH_CACHE_SLOTS);
    const int begins = f.begins;
    run(gc, &f, 100);
    cr_assert_eq(f.begins, begins, "the shape in use stayed recorded");
    run(gc, &f, 101);
    cr_assert_eq(f.begins, begins, "101 was evicted: it runs directly again, unrecorded");
    df_graph_cache_free(gc);
    cr_assert_eq(f.live, 0);
}

Test(graph_cache, off_without_hooks_or_when_disabled) {
    df_backend_ops none = {.name = "none"};
    df_backend be = {.ops = &none, .impl = NULL};
    df_graph_cache *gc = (df_graph_cache *)1;
    cr_assert_eq(df_graph_cache_create(&be, &gc), DF_OK);
    cr_assert_null(gc);
    fake f;
    fake_init(&f);
    setenv("DFLASH_GRAPHS", "0", 1);
    cr_assert_eq(df_graph_cache_create(&f.be, &gc), DF_OK);
    unsetenv("DFLASH_GRAPHS");
    cr_assert_null(gc);
    for (int i = 0; i < 3; i++) cr_assert_eq(run(NULL, &f, 1), DF_OK);
    cr_assert_eq(f.body_runs_direct, 3);
    cr_assert_eq(f.begins, 0);
    const uintptr_t key[1] = {0};
    cr_assert_eq(df_graph_cache_create(&f.be, &gc), DF_OK);
    cr_assert_eq(df_graph_cache_run(gc, key, DF_GRAPH_KEY_WORDS + 1, body, &f), DF_ERR_INVALID);
    df_graph_cache_free(gc);
}
