/* Weight matrices repacked for the fastest matmul kernel (quant/mdot.h, "packed weights"),
 * once, when the model binds them. A packed copy gives bitwise the results of the original,
 * so whether a matrix is packed changes speed only; the original stays where it is (mapped
 * from the GGUF file) for get_rows and for the other SIMD levels.
 *
 * The copy costs as much memory as the matrix itself. Packing stops once the copies of the
 * whole process would pass a quarter of the machine's memory (the remaining matrices run
 * unpacked), and DFLASH_CPU_PACK=0 in the environment turns it off.
 *
 * The copies live in 2 MiB-aligned chunks marked for transparent huge pages: a decode step
 * streams every weight once, and with 4 KiB pages each page costs a TLB miss (the 25 MiB
 * embedded model alone spans more pages than the TLB holds); measured on a 71 MB matrix,
 * huge pages moved a one-thread stream from 38 to 41 GB/s. Small copies share a chunk; a
 * chunk is freed with its last copy. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/cpu/cpu_internal.h"
#include "base/alloc.h"
#include "quant/mdot.h"

enum { HUGE_PAGE = 2 << 20, CHUNK_MIN = 32 << 20, COPY_ALIGN = 64 };

typedef struct pack_chunk {
    uint8_t *base;
    size_t size, used;
    int live; /* copies still in it */
} pack_chunk;

static pthread_mutex_t g_chunk_mu = PTHREAD_MUTEX_INITIALIZER;
static pack_chunk *g_open; /* the chunk new small copies go to, or NULL */

static pack_chunk *chunk_new(size_t size) {
    size = (size + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    pack_chunk *c = malloc(sizeof *c);
    if (!c) return NULL;
    c->base = aligned_alloc(HUGE_PAGE, size);
    if (!c->base) {
        free(c);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    madvise(c->base, size, MADV_HUGEPAGE); /* a hint: without it the pages are 4 KiB, no harm */
#endif
    c->size = size;
    c->used = 0;
    c->live = 0;
    return c;
}

static void chunk_free(pack_chunk *c) {
    free(c->base);
    free(c);
}

/* size bytes for a copy, 64-byte aligned; *chunk receives its chunk. */
static void *chunk_alloc(size_t size, pack_chunk **chunk) {
    size = (size + COPY_ALIGN - 1) / COPY_ALIGN * COPY_ALIGN;
    pthread_mutex_lock(&g_chunk_mu);
    pack_chunk *c = g_open;
    if (!c || c->size - c->used < size) {
        /* a copy of at least a chunk gets a chunk of its own; otherwise a new open chunk
         * (the old one is freed with its last copy) */
        c = chunk_new(size > CHUNK_MIN ? size : CHUNK_MIN);
        if (c && size <= CHUNK_MIN) {
            if (g_open && g_open->live == 0) chunk_free(g_open);
            g_open = c;
        }
    }
    void *p = NULL;
    if (c) {
        p = c->base + c->used;
        c->used += size;
        c->live++;
    }
    pthread_mutex_unlock(&g_chunk_mu);
    *chunk = c;
    return p;
}

static void chunk_release(pack_chunk *c) {
    pthread_mutex_lock(&g_chunk_mu);
    if (--c->live == 0) {
        if (c == g_open) g_open = NULL;
        chunk_free(c);
    }
    pthread_mutex_unlock(&g_chunk_mu);
}

static atomic_size_t g_packed_bytes; /* all packed copies alive in this process */

static size_t pack_budget(void) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0) return (size_t)1 << 30;
    return (size_t)pages / 4 * (size_t)page;
}

static bool pack_enabled(void) {
    const char *v = getenv("DFLASH_CPU_PACK");
    return !v || strcmp(v, "0") != 0;
}

typedef struct {
    const df_mdot *k;
    const void *w;
    size_t w_stride;
    int64_t n_rows, n, n_tiles;
    void *out;
} pack_ctx;

static void pack_task(void *p, int task, int n_tasks) {
    const pack_ctx *c = p;
    int64_t lo, hi;
    df_cpu_task_range(c->n_tiles, task, n_tasks, &lo, &hi);
    if (hi > lo) c->k->pack(c->w, c->w_stride, c->n_rows, c->n, lo, hi - lo, c->out);
}

df_cpu_packed *df_cpu_pack_weight(df_pool *pool, df_type type, const void *w, int64_t n_in, int64_t n_out) {
    const df_mdot *k = df_mdot_get(type, DF_MDOT_AVX512);
    size_t row_bytes, tile_bytes, total;
    if (!w || !k || !k->pack || !pack_enabled() || n_in <= 0 || n_out <= 0) return NULL;
    if (!df_type_row_size(type, n_in, &row_bytes) || !k->packed_bytes(n_out, n_in, row_bytes, &tile_bytes, &total))
        return NULL;
    const size_t before = atomic_fetch_add(&g_packed_bytes, total);
    df_cpu_packed *p = NULL;
    if (before + total <= pack_budget() && (p = malloc(sizeof *p)) && (p->data = chunk_alloc(total, &p->chunk))) {
        p->tile_bytes = p->bytes = 0;
        pack_ctx c = {k, w, row_bytes, n_out, n_in, (n_out + 15) / 16, p->data};
        df_pool_run(pool, pack_task, &c, df_cpu_task_count(pool, c.n_tiles, (int64_t)tile_bytes * 4));
        p->tile_bytes = tile_bytes;
        p->bytes = total;
        return p;
    }
    /* over the budget or out of memory: this matrix stays unpacked */
    free(p);
    atomic_fetch_sub(&g_packed_bytes, total);
    return NULL;
}

void df_cpu_packed_free(df_cpu_packed *p) {
    if (!p) return;
    atomic_fetch_sub(&g_packed_bytes, p->bytes);
    chunk_release(p->chunk);
    free(p);
}
