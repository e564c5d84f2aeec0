/* Writing the planned tensors: each tensor goes out in chunks of whole rows; the rows of a
 * chunk are built (gather, transform) and converted to the tensor's type by the pool's
 * threads, each with its own two row buffers; then the chunk is appended to the file. Memory
 * is one chunk plus two rows per thread, whatever the model size. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/threadpool.h"
#include "convert/convert_internal.h"

/* Target bytes of converted data per chunk: large enough to keep writes efficient and the
 * threads busy, small enough to be no concern for memory. */
#define CHUNK_BYTES ((size_t)16 << 20)

df_status df_conv_declare_tensors(const df_conv_plan *p, df_gguf_writer *w) {
    for (size_t i = 0; i < p->n; i++) {
        const df_conv_tensor *t = &p->t[i];
        DF_TRY(df_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne));
    }
    return DF_OK;
}

/* The source pages of a tensor are read once: hand them back to the kernel when done, so that
 * a conversion's resident size stays at its buffers instead of growing to the whole
 * checkpoint (they are file pages of a read-only mapping; reading again would reload them). */
static void release_source(const df_st_tensor *src) {
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || !src->data || src->nbytes == 0) return;
    uintptr_t a = ((uintptr_t)src->data + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t b = ((uintptr_t)src->data + src->nbytes) & ~((uintptr_t)page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

typedef struct chunk_job {
    const df_conv_tensor *t;
    size_t index;    /* of t in the plan */
    df_conv_row_fn make_row;
    void *make_ctx;
    df_quant_fn quantize;
    int64_t row0, n_rows;
    size_t row_size;
    uint8_t *out;
    float **scratch; /* per task: 2 * ne0 floats */
} chunk_job;

static void convert_rows(void *ctx, int task, int n_tasks) {
    chunk_job *j = ctx;
    int64_t a = j->n_rows * task / n_tasks, b = j->n_rows * (task + 1) / n_tasks;
    const int64_t ne0 = j->t->ne[0];
    float *row = j->scratch[task], *tmp = row + ne0;
    for (int64_t i = a; i < b; i++) {
        j->make_row(j->make_ctx, j->index, j->t, j->row0 + i, row, tmp);
        j->quantize(row, j->out + (size_t)i * j->row_size, ne0);
    }
}

static void checkpoint_row(void *ctx, size_t i, const df_conv_tensor *t, int64_t r, float *dst, float *tmp) {
    (void)ctx;
    (void)i;
    df_conv_make_row(t, r, dst, tmp);
}

df_status df_conv_write_tensors(const df_conv_plan *p, df_gguf_writer *w, const df_convert_opts *o) {
    return df_conv_write_rows(p, w, o, "converting", checkpoint_row, NULL);
}

df_status df_conv_write_rows(const df_conv_plan *p, df_gguf_writer *w, const df_convert_opts *o, const char *label,
                             df_conv_row_fn fn, void *ctx) {
    df_status st = DF_OK;
    df_pool *pool = NULL;
    uint8_t *buf = NULL;
    float **scratch = NULL;
    int n_threads = 0;

    /* Sizes first: the largest chunk and the longest row decide the buffers. */
    size_t buf_size = 0;
    int64_t max_ne0 = 1;
    uint64_t total = 0;
    for (size_t i = 0; i < p->n; i++) {
        const df_conv_tensor *t = &p->t[i];
        const df_type_traits *tt = df_type_get(t->type);
        size_t row_size;
        if (!tt || !tt->from_float || !df_type_row_size(t->type, t->ne[0], &row_size))
            return df_fail(DF_ERR_UNSUPPORTED, "convert: %s: cannot write type %s with rows of %lld", t->name,
                           df_type_name(t->type), (long long)t->ne[0]);
        int64_t rows = df_conv_tensor_rows(t);
        size_t chunk_rows = row_size >= CHUNK_BYTES ? 1 : CHUNK_BYTES / row_size;
        if ((int64_t)chunk_rows > rows) chunk_rows = (size_t)rows;
        if (chunk_rows * row_size > buf_size) buf_size = chunk_rows * row_size;
        if (t->ne[0] > max_ne0) max_ne0 = t->ne[0];
        total += (uint64_t)rows * (uint64_t)t->ne[0];
    }

    st = df_pool_create(o->n_threads, &pool);
    if (st != DF_OK) return st;
    n_threads = df_pool_size(pool);
    buf = df_alloc_aligned(buf_size ? buf_size : 1);
    scratch = calloc((size_t)n_threads, sizeof *scratch);
    if (!buf || !scratch) {
        st = df_fail(DF_ERR_NOMEM, "convert: out of memory for a %zu-byte chunk buffer", buf_size);
        goto done;
    }
    for (int i = 0; i < n_threads; i++) {
        scratch[i] = df_alloc_aligned((size_t)max_ne0 * 2 * sizeof(float));
        if (!scratch[i]) {
            st = df_fail(DF_ERR_NOMEM, "convert: out of memory for row buffers of %lld floats", (long long)max_ne0);
            goto done;
        }
    }

    df_progress prog;
    df_progress_begin(&prog, o->log, !o->quiet, label, total);
    for (size_t i = 0; i < p->n && st == DF_OK; i++) {
        const df_conv_tensor *t = &p->t[i];
        size_t row_size;
        df_type_row_size(t->type, t->ne[0], &row_size);
        const int64_t rows = df_conv_tensor_rows(t);
        const int64_t chunk_rows = (int64_t)(buf_size / row_size);
        chunk_job job = {.t = t, .index = i, .make_row = fn, .make_ctx = ctx,
                         .quantize = df_type_get(t->type)->from_float, .row_size = row_size, .out = buf,
                         .scratch = scratch};
        for (int64_t r = 0; r < rows && st == DF_OK; r += chunk_rows) {
            job.row0 = r;
            job.n_rows = rows - r < chunk_rows ? rows - r : chunk_rows;
            int n_tasks = job.n_rows < n_threads ? (int)job.n_rows : n_threads;
            df_pool_run(pool, convert_rows, &job, n_tasks);
            st = df_gguf_writer_write(w, buf, (size_t)job.n_rows * row_size);
            df_progress_add(&prog, (uint64_t)job.n_rows * (uint64_t)t->ne[0], t->name);
        }
        if (t->src) release_source(t->src);
    }
    if (st == DF_OK) df_progress_end(&prog);
    else if (prog.tty) fputc('\n', prog.f);

done:
    if (scratch)
        for (int i = 0; i < n_threads; i++) df_free_aligned(scratch[i]);
    free(scratch);
    df_free_aligned(buf);
    df_pool_destroy(pool);
    return st;
}
