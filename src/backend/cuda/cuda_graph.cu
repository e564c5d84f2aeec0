/* CUDA graphs: a forward's kernels recorded once and replayed as one launch.
 *
 * A decode step of a small model is ~500 kernels of a few microseconds each, and the CPU
 * spends about as long launching each one: replaying a recorded graph removes that cost.
 * The model records a step the second time it sees its shape (the first run, unrecorded,
 * has grown every scratch buffer to its size) and then only uploads the token ids and
 * positions and launches the graph. Everything that changes between steps lives in device
 * buffers that the kernels read when they run (ids, positions: attention and the KV write
 * take the position from a buffer too, cuda_attention.cu), so one recording serves every
 * step of its shape.
 *
 * Recording uses the thread-local capture mode: other threads (other server sessions on
 * other backends) may keep calling CUDA while this one records. A recording keeps the
 * addresses of the scratch buffers it saw; when one of them has since been reallocated
 * (cb->scratch_gen moved on), launch reports it stale and the model records again. */
#include <stdlib.h>

#include "backend/cuda/cuda_internal.h"

typedef struct cu_graph {
    cudaGraphExec_t exec;
    uint64_t scratch_gen;
} cu_graph;

df_status cu_graph_begin(df_backend *be) {
    cu_backend *cb = cu_impl(be);
    if (cb->capturing) return df_fail(DF_ERR_INVALID, "cuda graph: a recording is already under way");
    if (cb->prof) return df_fail(DF_ERR_UNSUPPORTED, "cuda graph: DFLASH_CUDA_PROFILE times every kernel");
    DF_TRY(cu_enter(cb, "graph_begin"));
    cudaError_t e = cudaStreamBeginCapture(cb->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) return cu_fail(e, "graph_begin", "cudaStreamBeginCapture");
    cb->capturing = true;
    return DF_OK;
}

df_status cu_graph_end(df_backend *be, void **out) {
    cu_backend *cb = cu_impl(be);
    *out = NULL;
    if (!cb->capturing) return df_fail(DF_ERR_INVALID, "cuda graph: no recording is under way");
    cb->capturing = false;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(cb->stream, &g);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (g) cudaGraphDestroy(g);
        return cu_fail(e, "graph_end", "cudaStreamEndCapture");
    }
    cu_graph *r = (cu_graph *)calloc(1, sizeof *r);
    if (!r) {
        cudaGraphDestroy(g);
        return df_fail(DF_ERR_NOMEM, "cuda graph: out of memory");
    }
    e = cudaGraphInstantiate(&r->exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        cudaGetLastError();
        free(r);
        return cu_fail(e, "graph_end", "cudaGraphInstantiate");
    }
    r->scratch_gen = cb->scratch_gen;
    *out = r;
    return DF_OK;
}

df_status cu_graph_launch(df_backend *be, void *graph, bool *stale) {
    cu_backend *cb = cu_impl(be);
    cu_graph *r = (cu_graph *)graph;
    *stale = false;
    if (!r) return df_fail(DF_ERR_INVALID, "cuda graph: launch of a NULL recording");
    if (r->scratch_gen != cb->scratch_gen) {
        *stale = true;
        return DF_OK;
    }
    DF_TRY(cu_enter(cb, "graph_launch"));
    cudaError_t e = cudaGraphLaunch(r->exec, cb->stream);
    if (e != cudaSuccess) return cu_fail(e, "graph_launch", "cudaGraphLaunch");
    cb->last_op = "a recorded forward (CUDA graph)";
    return DF_OK;
}

void cu_graph_free(df_backend *be, void *graph) {
    cu_graph *r = (cu_graph *)graph;
    if (!r) return;
    cu_enter(cu_impl(be), "graph_free");
    cudaGraphExecDestroy(r->exec);
    free(r);
}
