/* The rows of a random file, and the streaming writer that puts them in the file.
 *
 * Why a pool of rows. Drawing a normal and quantizing it costs ~60 ns per weight on one core
 * (the Q4_K/Q6_K quantizers search for the best scales), so drawing every row of a 27B model
 * took 285 s on 16 cores while writing its 16 GB takes a fraction of that. A large tensor
 * therefore takes its rows from a pool: POOL_ROWS rows (fewer for long rows, so a pool stays
 * near POOL_BYTES) drawn and quantized once per (type, row length, initializer), and each row
 * of the tensor is a copy of a pool row picked by a hash of (seed, tensor, row). For a
 * benchmark this changes nothing that matters: every tensor has its real type, shape, offset
 * and byte size; every block holds a real scale and real quants made by the real quantizer
 * (a llama.cpp reader sees valid blocks), and a matmul reads every row from its own address,
 * so the memory traffic is that of the real file. What differs is only that a tensor's rows
 * repeat (its rank is at most the pool size), which the speed of a forward does not see and
 * which the statistics of the values do not show (each row is still N(0, scale^2)).
 * `--unique-rows` (opts.unique_rows) draws every row instead, as before.
 *
 * Tensors whose pool would serve no more than twice its own rows (norms, biases, the GDN's
 * per-head vectors: all the tensors of one key together are that small) get rows of their
 * own: for them a pool would cost as much as the rows.
 * The bytes of a file depend on the seed only: a pool row is drawn from a stream seeded by
 * (seed, pool key, row), an own row from (seed, tensor index, row), and the choice of pool row
 * from (seed, tensor index, row), so thread count and chunking do not matter. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/rng.h"
#include "base/threadpool.h"
#include "convert/mkmodel_internal.h"

#define POOL_ROWS 1024                  /* rows per pool, at most */
#define POOL_MIN_ROWS 64                /* ... and at least */
#define POOL_BYTES ((size_t)16 << 20)   /* ... and about this many bytes */
#define CHUNK_BYTES ((size_t)16 << 20)  /* bytes handed to the file at a time */

/* ---- drawing one row ------------------------------------------------------------------------- */

/* Uniform in (0, 1): 24 random bits, centred in their cell, so log() never sees 0. */
static inline float unit_open(uint64_t bits) { return ((float)(bits >> 40) + 0.5f) * 0x1.0p-24f; }

/* Standard normals times scale, two per Box-Muller draw (df_rng_normal keeps one of each
 * pair and works in double; both halves and floats are enough here). */
static void fill_normal(df_rng *r, float *x, int64_t n, float scale) {
    int64_t i = 0;
    for (; i + 1 < n; i += 2) {
        float u1 = unit_open(df_rng_u64(r)), u2 = unit_open(df_rng_u64(r));
        float rad = sqrtf(-2.0f * logf(u1)) * scale, ang = 6.2831853f * u2;
        x[i] = rad * cosf(ang);
        x[i + 1] = rad * sinf(ang);
    }
    if (i < n) {
        float u1 = unit_open(df_rng_u64(r)), u2 = unit_open(df_rng_u64(r));
        x[i] = sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2) * scale;
    }
}

void mk_draw_row(const mk_init *in, df_conv_op op, uint64_t stream, float *dst, int64_t n) {
    df_rng rng;
    df_rng_seed(&rng, stream);
    switch (in->kind) {
    case MK_INIT_NORMAL:
    case MK_INIT_NORM_ZERO:
        fill_normal(&rng, dst, n, in->scale);
        break;
    case MK_INIT_NORM_ONE:
        fill_normal(&rng, dst, n, in->scale);
        for (int64_t i = 0; i < n; i++) dst[i] += 1.0f;
        break;
    case MK_INIT_A_LOG:
        for (int64_t i = 0; i < n; i++) dst[i] = logf(1.0f + 15.0f * unit_open(df_rng_u64(&rng)));
        break;
    case MK_INIT_DT_BIAS:
        for (int64_t i = 0; i < n; i++) {
            const float lo = logf(1e-3f), hi = logf(1e-1f);
            float dt = expf(lo + (hi - lo) * unit_open(df_rng_u64(&rng)));
            dst[i] = dt + logf(-expm1f(-dt)); /* softplus^-1(dt) = log(exp(dt) - 1), stably */
        }
        break;
    }
    df_conv_apply_op(op, dst, n);
}

/* The stream of an own row: (seed, tensor, row), as mkmodel has always drawn them. */
static uint64_t own_stream(uint64_t seed, size_t ti, int64_t r) {
    return mk_mix64(mk_mix64(seed ^ mk_mix64((uint64_t)ti + 1)) + (uint64_t)r);
}

/* ---- pools ----------------------------------------------------------------------------------- */

typedef struct row_pool {
    df_type type;
    int64_t ne0;
    mk_init init;
    df_conv_op op;
    uint64_t key;     /* hash of the above: seeds the pool's rows */
    int64_t n_rows;
    size_t row_size;
    int64_t rows_served; /* rows of all the tensors that would read it */
    uint8_t *data;    /* n_rows converted rows; NULL until first used and after last use */
    size_t last_user; /* plan index of the last tensor that reads it */
} row_pool;

static uint64_t pool_key(df_type type, int64_t ne0, const mk_init *in, df_conv_op op) {
    uint32_t scale_bits;
    memcpy(&scale_bits, &in->scale, sizeof scale_bits);
    uint64_t h = mk_mix64((uint64_t)type + 0x9e3779b97f4a7c15ull);
    h = mk_mix64(h ^ (uint64_t)ne0);
    h = mk_mix64(h ^ (uint64_t)in->kind);
    h = mk_mix64(h ^ scale_bits);
    return mk_mix64(h ^ (uint64_t)op);
}

static int64_t pool_rows_for(size_t row_size) {
    size_t n = POOL_BYTES / (row_size ? row_size : 1);
    if (n > POOL_ROWS) n = POOL_ROWS;
    if (n < POOL_MIN_ROWS) n = POOL_MIN_ROWS;
    return (int64_t)n;
}

/* ---- the work handed to the threads ------------------------------------------------------------ */

typedef struct rows_job {
    const df_conv_tensor *t;
    const mk_init *init;
    df_conv_op op;
    df_quant_fn quantize;
    size_t row_size;
    int64_t n_rows;
    uint8_t *out;
    float **scratch;         /* per task: ne0 floats */
    /* own rows of tensor ti from row0, or pool rows (pool != NULL) */
    uint64_t seed;
    size_t ti;
    int64_t row0;
    const row_pool *pool;
    bool building_pool;      /* drawing the pool's own rows (row index = pool row) */
} rows_job;

static void run_rows(void *ctx, int task, int n_tasks) {
    const rows_job *j = ctx;
    const int64_t a = j->n_rows * task / n_tasks, b = j->n_rows * (task + 1) / n_tasks;
    const int64_t ne0 = j->t->ne[0];
    float *row = j->scratch[task];
    for (int64_t i = a; i < b; i++) {
        uint8_t *dst = j->out + (size_t)i * j->row_size;
        if (j->pool && !j->building_pool) {
            /* A copy of a pool row chosen by (seed, tensor, row): a different salt from the
             * own-row stream, so the choice is unrelated to any drawn value. */
            uint64_t h = mk_mix64(mk_mix64(j->seed ^ 0x243f6a8885a308d3ull ^ mk_mix64((uint64_t)j->ti + 1)) +
                                  (uint64_t)(j->row0 + i));
            memcpy(dst, j->pool->data + (size_t)(h % (uint64_t)j->pool->n_rows) * j->row_size, j->row_size);
            continue;
        }
        uint64_t stream = j->building_pool ? mk_mix64(mk_mix64(j->seed ^ j->pool->key) + (uint64_t)i)
                                           : own_stream(j->seed, j->ti, j->row0 + i);
        mk_draw_row(j->init, j->op, stream, row, ne0);
        j->quantize(row, dst, ne0);
    }
}

static int tasks_for(const df_pool *pool, int64_t n_rows) {
    int n = df_pool_size(pool);
    return n_rows < n ? (int)n_rows : n;
}

/* ---- the writer -------------------------------------------------------------------------------- */

df_status mk_write_rows(const df_conv_plan *p, const mk_init *init, df_gguf_writer *w, const df_mkmodel_opts *o,
                        FILE *log) {
    df_status st = DF_OK;
    df_pool *threads = NULL;
    uint8_t *buf = NULL;
    float **scratch = NULL;
    row_pool *pools = NULL;
    int *pool_of = NULL; /* per tensor: its pool, or -1 */
    size_t n_pools = 0;
    int n_threads = 0;

    size_t buf_size = 0;
    int64_t max_ne0 = 1;
    uint64_t total = 0, pooled_bytes = 0, all_bytes = 0;
    size_t n_pooled = 0;
    pool_of = malloc((p->n ? p->n : 1) * sizeof *pool_of);
    pools = calloc(p->n ? p->n : 1, sizeof *pools);
    if (!pool_of || !pools) {
        st = df_fail(DF_ERR_NOMEM, "mkmodel: out of memory for the row pools");
        goto done;
    }
    for (size_t i = 0; i < p->n; i++) {
        const df_conv_tensor *t = &p->t[i];
        const df_type_traits *tt = df_type_get(t->type);
        size_t row_size;
        if (!tt || !tt->from_float || !df_type_row_size(t->type, t->ne[0], &row_size)) {
            st = df_fail(DF_ERR_UNSUPPORTED, "mkmodel: %s: cannot write type %s with rows of %lld", t->name,
                         df_type_name(t->type), (long long)t->ne[0]);
            goto done;
        }
        const int64_t rows = df_conv_tensor_rows(t);
        size_t chunk_rows = row_size >= CHUNK_BYTES ? 1 : CHUNK_BYTES / row_size;
        if ((int64_t)chunk_rows > rows) chunk_rows = (size_t)rows;
        if (chunk_rows * row_size > buf_size) buf_size = chunk_rows * row_size;
        if (t->ne[0] > max_ne0) max_ne0 = t->ne[0];
        total += (uint64_t)rows * (uint64_t)t->ne[0];
        all_bytes += (uint64_t)rows * row_size;

        pool_of[i] = -1;
        if (o->unique_rows) continue;
        const uint64_t key = pool_key(t->type, t->ne[0], &init[i], t->op);
        size_t k = 0;
        while (k < n_pools && pools[k].key != key) k++;
        if (k == n_pools) {
            pools[n_pools++] = (row_pool){.type = t->type, .ne0 = t->ne[0], .init = init[i], .op = t->op,
                                          .key = key, .n_rows = pool_rows_for(row_size), .row_size = row_size};
        }
        pools[k].rows_served += rows;
        pools[k].last_user = i;
        pool_of[i] = (int)k;
    }
    /* A pool pays when it serves more than twice its own rows (over all the tensors that share
     * it: the ffn_down of 24 layers, say); the tensors of a pool that does not pay keep rows of
     * their own, and the pool is never drawn. */
    for (size_t i = 0; i < p->n; i++) {
        if (pool_of[i] < 0) continue;
        const row_pool *pool = &pools[pool_of[i]];
        if (pool->rows_served <= 2 * pool->n_rows) {
            pool_of[i] = -1;
            continue;
        }
        size_t row_size;
        df_type_row_size(p->t[i].type, p->t[i].ne[0], &row_size);
        n_pooled++;
        pooled_bytes += (uint64_t)df_conv_tensor_rows(&p->t[i]) * row_size;
    }
    size_t n_used_pools = 0;
    for (size_t k = 0; k < n_pools; k++) n_used_pools += pools[k].rows_served > 2 * pools[k].n_rows;

    st = df_pool_create(o->n_threads, &threads);
    if (st != DF_OK) goto done;
    n_threads = df_pool_size(threads);
    buf = df_alloc_aligned(buf_size ? buf_size : 1);
    scratch = calloc((size_t)n_threads, sizeof *scratch);
    if (!buf || !scratch) {
        st = df_fail(DF_ERR_NOMEM, "mkmodel: out of memory for a %zu-byte chunk buffer", buf_size);
        goto done;
    }
    for (int i = 0; i < n_threads; i++) {
        if (!(scratch[i] = df_alloc_aligned((size_t)max_ne0 * sizeof(float)))) {
            st = df_fail(DF_ERR_NOMEM, "mkmodel: out of memory for row buffers of %lld floats", (long long)max_ne0);
            goto done;
        }
    }
    if (n_pooled)
        fprintf(log, "dflash mkmodel: %zu of %zu tensors (%.0f%% of the data) take their rows from %zu pools of up "
                     "to %d rows (--unique-rows draws every row)\n",
                n_pooled, p->n, 100.0 * (double)pooled_bytes / (double)(all_bytes ? all_bytes : 1), n_used_pools,
                POOL_ROWS);

    df_progress prog;
    df_progress_begin(&prog, log, !o->quiet, "generating", total);
    for (size_t i = 0; i < p->n && st == DF_OK; i++) {
        const df_conv_tensor *t = &p->t[i];
        row_pool *pool = pool_of[i] >= 0 ? &pools[pool_of[i]] : NULL;
        rows_job job = {.t = t, .init = &init[i], .op = t->op, .quantize = df_type_get(t->type)->from_float,
                        .scratch = scratch, .seed = o->seed, .ti = i, .pool = pool};
        df_type_row_size(t->type, t->ne[0], &job.row_size);
        if (pool && !pool->data) {
            pool->data = df_alloc_aligned((size_t)pool->n_rows * pool->row_size);
            if (!pool->data) {
                st = df_fail(DF_ERR_NOMEM, "mkmodel: out of memory for a pool of %lld rows of %s",
                             (long long)pool->n_rows, t->name);
                break;
            }
            rows_job build = job;
            build.building_pool = true;
            build.n_rows = pool->n_rows;
            build.out = pool->data;
            df_pool_run(threads, run_rows, &build, tasks_for(threads, pool->n_rows));
        }
        const int64_t rows = df_conv_tensor_rows(t);
        const int64_t chunk_rows = (int64_t)(buf_size / job.row_size);
        job.out = buf;
        for (int64_t r = 0; r < rows && st == DF_OK; r += chunk_rows) {
            job.row0 = r;
            job.n_rows = rows - r < chunk_rows ? rows - r : chunk_rows;
            df_pool_run(threads, run_rows, &job, tasks_for(threads, job.n_rows));
            st = df_gguf_writer_write(w, buf, (size_t)job.n_rows * job.row_size);
            df_progress_add(&prog, (uint64_t)job.n_rows * (uint64_t)t->ne[0], t->name);
        }
        if (pool && pool->last_user == i) {
            df_free_aligned(pool->data);
            pool->data = NULL;
        }
    }
    if (st == DF_OK) df_progress_end(&prog);
    else if (prog.tty) fputc('\n', prog.f);

done:
    for (size_t k = 0; k < n_pools; k++) df_free_aligned(pools[k].data);
    free(pools);
    free(pool_of);
    if (scratch)
        for (int i = 0; i < n_threads; i++) df_free_aligned(scratch[i]);
    free(scratch);
    df_free_aligned(buf);
    df_pool_destroy(threads);
    return st;
}
