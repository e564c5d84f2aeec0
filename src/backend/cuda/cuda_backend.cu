/* The CUDA implementation of the op table: device memory, one stream, weights uploaded once
 * (keeping their GGUF type), errors turned into df_status values. The kernels live in one
 * file per family (cuda_internal.h lists them). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "backend/cuda/cuda_internal.h"

extern "C" {
#include "base/alloc.h"
}

/* ---- errors ---------------------------------------------------------------------------- */

df_status cu_fail(cudaError_t e, const char *op, const char *what) {
    return df_fail(DF_ERR_INVALID, "cuda %s: %s: %s (%s)", op, what, cudaGetErrorString(e),
                   cudaGetErrorName(e));
}

df_status cu_check_launch(cu_backend *cb, const char *op) {
    cb->last_op = op;
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return cu_fail(e, op, "kernel launch");
    if (cb->prof) cu_prof_end(cb, op);
    return DF_OK;
}

df_status cu_enter(cu_backend *cb, const char *op) {
    if (cb->prof) cu_prof_begin(cb);
    /* A new host thread starts on device 0; only other devices need setting. */
    if (cb->device == 0) return DF_OK;
    int cur = -1;
    cudaError_t e = cudaGetDevice(&cur);
    if (e == cudaSuccess && cur != cb->device) e = cudaSetDevice(cb->device);
    if (e != cudaSuccess) return cu_fail(e, op, "cudaSetDevice");
    return DF_OK;
}

df_status cu_check_heads(const char *op, const char *name, const df_heads *h) {
    if (!h || !h->data) return df_fail(DF_ERR_INVALID, "%s: %s is NULL", op, name);
    if (h->n_tok <= 0 || h->n_head <= 0 || h->dim <= 0 || h->n_tok > ((int64_t)1 << 30) ||
        h->n_head > ((int64_t)1 << 20) || h->dim > ((int64_t)1 << 20))
        return df_fail(DF_ERR_INVALID, "%s: %s shape [%lld][%lld][%lld] is not valid", op, name,
                       (long long)h->n_tok, (long long)h->n_head, (long long)h->dim);
    if ((h->n_head > 1 && h->head_stride < h->dim) ||
        (h->n_tok > 1 && h->tok_stride < (h->n_head - 1) * h->head_stride + h->dim))
        return df_fail(DF_ERR_INVALID, "%s: %s strides (token %lld, head %lld) overlap [%lld][%lld]",
                       op, name, (long long)h->tok_stride, (long long)h->head_stride,
                       (long long)h->n_head, (long long)h->dim);
    return DF_OK;
}

/* ---- scratch ----------------------------------------------------------------------------- */

static df_status grow(cu_backend *cb, void **buf, size_t *cur, size_t size, const char *op) {
    if (size <= *cur) return DF_OK;
    /* Freeing inside a recording would break it, and the recording would keep the old
     * address; the engine runs a shape once unrecorded first, so this means a bug. */
    if (cb->capturing)
        return df_fail(DF_ERR_INVALID, "cuda %s: scratch must grow to %zu bytes while a CUDA graph is "
                       "being recorded", op, size);
    cb->scratch_gen++;
    /* Work queued on the stream may still read the old buffer; cudaFree waits for it. */
    if (*buf) cudaFree(*buf);
    *buf = NULL;
    *cur = 0;
    cudaError_t e = cudaMalloc(buf, size);
    if (e != cudaSuccess) {
        *buf = NULL;
        cudaGetLastError();
        return df_fail(DF_ERR_NOMEM, "cuda %s: cannot allocate %zu bytes of scratch: %s", op, size,
                       cudaGetErrorString(e));
    }
    *cur = size;
    return DF_OK;
}

df_status cu_scratch(cu_backend *cb, size_t size, const char *op, void **out) {
    DF_TRY(grow(cb, &cb->scratch, &cb->scratch_size, size, op));
    *out = cb->scratch;
    return DF_OK;
}

df_status cu_wscratch(cu_backend *cb, size_t size, const char *op, void **out) {
    DF_TRY(grow(cb, &cb->wscratch, &cb->wscratch_size, size, op));
    *out = cb->wscratch;
    return DF_OK;
}

df_status cu_qscratch(cu_backend *cb, size_t size, const char *op, void **out) {
    DF_TRY(grow(cb, &cb->qscratch, &cb->qscratch_size, size, op));
    *out = cb->qscratch;
    return DF_OK;
}

/* ---- memory ------------------------------------------------------------------------------ */

static void cu_destroy(df_backend *be) {
    cu_backend *cb = cu_impl(be);
    cu_enter(cb, "destroy");
    cudaStreamSynchronize(cb->stream);
    cu_prof_report(cb);
    if (cb->scratch) cudaFree(cb->scratch);
    if (cb->wscratch) cudaFree(cb->wscratch);
    if (cb->qscratch) cudaFree(cb->qscratch);
    if (cb->blas) cublasDestroy(cb->blas);
    cudaStreamDestroy(cb->stream);
    free(cb);
}

static df_status cu_alloc(df_backend *be, size_t size, void **out) {
    cu_backend *cb = cu_impl(be);
    *out = NULL;
    DF_TRY(cu_enter(cb, "alloc"));
    cudaError_t e = cudaMalloc(out, size ? size : 1);
    if (e != cudaSuccess) {
        *out = NULL;
        cudaGetLastError();
        return df_fail(DF_ERR_NOMEM, "cuda alloc: cannot allocate %zu bytes on %s: %s", size,
                       cb->device_name, cudaGetErrorString(e));
    }
    /* Zeroed, like the CPU backend's: states and caches start clean. */
    e = cudaMemsetAsync(*out, 0, size, cb->stream);
    if (e != cudaSuccess) {
        cudaFree(*out);
        *out = NULL;
        return cu_fail(e, "alloc", "cudaMemsetAsync");
    }
    return DF_OK;
}

static void cu_free(df_backend *be, void *p) {
    if (!p) return;
    cu_enter(cu_impl(be), "free");
    cudaFree(p);
}

static df_status cu_upload(df_backend *be, void *dst, const void *src, size_t size) {
    cu_backend *cb = cu_impl(be);
    if (!size) return DF_OK;
    if (!dst || !src) return df_fail(DF_ERR_INVALID, "cuda upload: NULL pointer");
    DF_TRY(cu_enter(cb, "upload"));
    /* From pageable memory the copy is staged before the call returns, so the caller may
     * reuse src at once (the model uploads token ids from stack buffers). */
    cudaError_t e = cudaMemcpyAsync(dst, src, size, cudaMemcpyHostToDevice, cb->stream);
    if (e != cudaSuccess) return cu_fail(e, "upload", "cudaMemcpyAsync");
    return DF_OK;
}

static df_status cu_download(df_backend *be, void *dst, const void *src, size_t size) {
    cu_backend *cb = cu_impl(be);
    if (!size) return DF_OK;
    if (!dst || !src) return df_fail(DF_ERR_INVALID, "cuda download: NULL pointer");
    DF_TRY(cu_enter(cb, "download"));
    cudaError_t e = cudaMemcpyAsync(dst, src, size, cudaMemcpyDeviceToHost, cb->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(cb->stream);
    if (e != cudaSuccess) {
        char what[160];
        snprintf(what, sizeof what, "cudaMemcpy to the host (after %s)", cb->last_op ? cb->last_op : "no op");
        return cu_fail(e, "download", what);
    }
    return DF_OK;
}

static df_status cu_copy(df_backend *be, void *dst, const void *src, size_t size) {
    cu_backend *cb = cu_impl(be);
    if (!size || dst == src) return DF_OK;
    if (!dst || !src) return df_fail(DF_ERR_INVALID, "cuda copy: NULL pointer");
    DF_TRY(cu_enter(cb, "copy"));
    cudaError_t e = cudaMemcpyAsync(dst, src, size, cudaMemcpyDeviceToDevice, cb->stream);
    if (e != cudaSuccess) return cu_fail(e, "copy", "cudaMemcpyAsync");
    cb->last_op = "copy";
    return DF_OK;
}

static df_status cu_copy_2d(df_backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                            size_t width, size_t rows) {
    cu_backend *cb = cu_impl(be);
    if (!rows || !width) return DF_OK;
    if (!dst || !src || dst_pitch < width || src_pitch < width)
        return df_fail(DF_ERR_INVALID, "cuda copy_2d: NULL buffer or a pitch (%zu, %zu) below the width %zu",
                       dst_pitch, src_pitch, width);
    DF_TRY(cu_enter(cb, "copy_2d"));
    cudaError_t e = cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, cudaMemcpyDeviceToDevice,
                                      cb->stream);
    if (e != cudaSuccess) return cu_fail(e, "copy_2d", "cudaMemcpy2DAsync");
    cb->last_op = "copy_2d";
    return DF_OK;
}

static df_status cu_sync(df_backend *be) {
    cu_backend *cb = cu_impl(be);
    DF_TRY(cu_enter(cb, "sync"));
    cudaError_t e = cudaStreamSynchronize(cb->stream);
    if (e != cudaSuccess) {
        char what[160];
        snprintf(what, sizeof what, "cudaStreamSynchronize (after %s)", cb->last_op ? cb->last_op : "no op");
        return cu_fail(e, "sync", what);
    }
    return DF_OK;
}

/* ---- weights ------------------------------------------------------------------------------ */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A terminal gets one bar redrawn in place; a log gets a line at each tenth. */
static void progress(cu_backend *cb, uint64_t add) {
    if (!cb->up_active) return;
    cb->up_done += add;
    if (cb->up_done > cb->up_total) cb->up_done = cb->up_total;
    const double mib = (double)(1 << 20);
    if (cb->up_tty) {
        const int permil = (int)(cb->up_done * 1000 / cb->up_total);
        if (permil != cb->up_last) {
            cb->up_last = permil;
            char bar[31];
            for (int i = 0; i < 30; i++) bar[i] = i < permil * 30 / 1000 ? '=' : ' ';
            bar[30] = 0;
            fprintf(stderr, "\rcuda: uploading weights to %s [%s] %3d%% %.0f/%.0f MiB", cb->device_name,
                    bar, permil / 10, (double)cb->up_done / mib, (double)cb->up_total / mib);
        }
    } else {
        const int tenth = (int)(cb->up_done * 10 / cb->up_total);
        if (tenth > cb->up_last) {
            cb->up_last = tenth;
            fprintf(stderr, "cuda: uploading weights to %s: %d%%\n", cb->device_name, tenth * 10);
        }
    }
    if (cb->up_done >= cb->up_total) {
        const double dt = now_s() - cb->up_t0;
        fprintf(stderr, "%scuda: %.1f MiB of weights on %s in %.1f s\n", cb->up_tty ? "\n" : "",
                (double)cb->up_total / mib, cb->device_name, dt);
        cb->up_active = false;
    }
    fflush(stderr);
}

static df_status cu_bind_weight(df_backend *be, const df_weight *host, df_weight *out) {
    cu_backend *cb = cu_impl(be);
    const char *name = host->name ? host->name : "weight";
    if (!cu_type_supported(host->type))
        return df_fail(DF_ERR_UNSUPPORTED, "cuda: tensor '%s' has type %s, which the CUDA backend "
                       "does not compute with (supported: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, "
                       "q8_0, q2_K, q3_K, q4_K, q5_K, q6_K)", name, df_type_name(host->type));
    if (!host->data && host->size)
        return df_fail(DF_ERR_INVALID, "cuda: tensor '%s' has no data", name);
    *out = *host;
    out->data = NULL;
    void *dev = NULL;
    DF_TRY(cu_enter(cb, "bind_weight"));
    cudaError_t e = cudaMalloc(&dev, host->size ? host->size : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return df_fail(DF_ERR_NOMEM, "cuda: cannot allocate %zu bytes on %s for tensor '%s': %s",
                       host->size, cb->device_name, name, cudaGetErrorString(e));
    }
    /* In pieces, so that the progress bar moves while a large tensor uploads. */
    const size_t piece = (size_t)64 << 20;
    for (size_t off = 0; off < host->size; off += piece) {
        const size_t n = host->size - off < piece ? host->size - off : piece;
        e = cudaMemcpy((char *)dev + off, (const char *)host->data + off, n, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            cudaFree(dev);
            return cu_fail(e, "bind_weight", name);
        }
        progress(cb, n);
    }
    out->data = dev;
    return DF_OK;
}

static void cu_unbind_weight(df_backend *be, df_weight *w) {
    if (w->data) {
        cu_enter(cu_impl(be), "unbind_weight");
        cudaFree((void *)w->data);
    }
    w->data = NULL;
}

/* ---- the table ---------------------------------------------------------------------------- */

static const df_backend_ops cuda_ops = {
    /* .name = */ "cuda",
    /* .destroy = */ cu_destroy,
    /* .alloc = */ cu_alloc,
    /* .free = */ cu_free,
    /* .upload = */ cu_upload,
    /* .download = */ cu_download,
    /* .copy = */ cu_copy,
    /* .copy_2d = */ cu_copy_2d,
    /* .bind_weight = */ cu_bind_weight,
    /* .unbind_weight = */ cu_unbind_weight,
    /* .sync = */ cu_sync,
    /* .get_rows = */ cu_get_rows,
    /* .matmul = */ cu_matmul,
    /* .rmsnorm = */ cu_rmsnorm,
    /* .rmsnorm_heads = */ cu_rmsnorm_heads,
    /* .rmsnorm_gated = */ cu_rmsnorm_gated,
    /* .l2norm_heads = */ cu_l2norm_heads,
    /* .add = */ cu_add,
    /* .swiglu = */ cu_swiglu,
    /* .rope = */ cu_rope,
    /* .attention = */ cu_attention,
    /* .conv1d_silu = */ cu_conv1d_silu,
    /* .gdn_gates = */ cu_gdn_gates,
    /* .gdn_recurrent = */ cu_gdn_recurrent,
    /* prefill (>= 64 tokens): tensor-core chunked form; DFLASH_CUDA_GDN_CHUNKED=0 maps it
     * back to the recurrent kernel */
    /* .gdn_chunked = */ cu_gdn_chunked,
    /* .state_to_f32 = */ cu_state_to_f32,
    /* .argmax_rows = */ cu_argmax_rows,
    /* .kv_write = */ cu_kv_write,
    /* .kv_write_ring = */ cu_kv_write_ring,
    /* .attention_window = */ cu_attention_window,
    /* lanes: none yet (one stream; sessions on a GPU take turns) */
    /* .lane_create = */ NULL,
    /* .lane_free = */ NULL,
    /* .lane_bind = */ NULL,
    /* .graph_begin = */ cu_graph_begin,
    /* .graph_end = */ cu_graph_end,
    /* .graph_launch = */ cu_graph_launch,
    /* .graph_free = */ cu_graph_free,
    /* .matmul_many = */ cu_matmul_many,
};

extern "C" df_status df_backend_cuda_create(int device, df_backend **out) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        const char *why = e != cudaSuccess ? cudaGetErrorString(e) : "no device found";
        cudaGetLastError();
        return df_fail(DF_ERR_UNSUPPORTED, "no CUDA device: %s", why);
    }
    if (device < 0 || device >= n)
        return df_fail(DF_ERR_INVALID, "cuda:%d: this machine has %d CUDA device%s (cuda:0..cuda:%d)",
                       device, n, n == 1 ? "" : "s", n - 1);
    e = cudaSetDevice(device);
    if (e != cudaSuccess) return cu_fail(e, "create", "cudaSetDevice");
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) return cu_fail(e, "create", "cudaGetDeviceProperties");
    if (prop.major < 7)
        return df_fail(DF_ERR_UNSUPPORTED, "cuda:%d (%s) has compute capability %d.%d; the CUDA "
                       "backend needs 7.0 or newer", device, prop.name, prop.major, prop.minor);
    cu_backend *cb = (cu_backend *)calloc(1, sizeof *cb);
    if (!cb) return df_fail(DF_ERR_NOMEM, "cuda backend: out of memory");
    cb->device = device;
    cb->cc_major = prop.major;
    cb->n_sm = prop.multiProcessorCount;
    snprintf(cb->device_name, sizeof cb->device_name, "cuda:%d (%s)", device, prop.name);
    e = cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        free(cb);
        return cu_fail(e, "create", "cudaStreamCreate");
    }
    cublasStatus_t bs = cublasCreate(&cb->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(cb->blas, cb->stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        if (cb->blas) cublasDestroy(cb->blas);
        cudaStreamDestroy(cb->stream);
        free(cb);
        return df_fail(DF_ERR_UNSUPPORTED, "cuda create: cuBLAS initialisation failed (%d)", (int)bs);
    }
    cu_prof_init(cb);
    cb->base.ops = &cuda_ops;
    cb->base.impl = cb;
    *out = &cb->base;
    return DF_OK;
}

extern "C" void df_backend_cuda_expect_upload(df_backend *be, uint64_t bytes) {
    if (!be || be->ops != &cuda_ops) return;
    cu_backend *cb = cu_impl(be);
    if (bytes == 0) {
        /* The end: some of the expected bytes (tensors the model does not use) never came. */
        if (cb->up_active) {
            cb->up_total = cb->up_done ? cb->up_done : 1;
            cb->up_done = 0;
            progress(cb, cb->up_total);
        }
        return;
    }
    cb->up_total = bytes;
    cb->up_done = 0;
    cb->up_last = -1;
    cb->up_t0 = now_s();
    cb->up_tty = isatty(2) != 0;
    cb->up_active = true;
    if (!cb->up_tty) cb->up_last = 0;
}

extern "C" const char *df_backend_cuda_device_name(df_backend *be) {
    if (!be || be->ops != &cuda_ops) return NULL;
    return cu_impl(be)->device_name;
}
