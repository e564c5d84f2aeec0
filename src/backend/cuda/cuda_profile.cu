/* DFLASH_CUDA_PROFILE=1: where a forward's GPU time goes, op by op, without a profiler.
 *
 * Each op's kernels are bracketed by two events (the first recorded when the op starts,
 * cu_enter; the second after each launch, cu_check_launch), and the stream is synchronised
 * after every launch. The first event is queued behind a kernel that spins for ~20 us, long
 * enough for the host to enqueue the op's kernel meanwhile, so an interval holds that kernel's
 * execution and nothing of the host's launch cost. The totals per op name are printed to stderr when the backend is destroyed.
 * Synchronising after every kernel makes everything slower and rules out CUDA graphs: this is
 * for finding the expensive op, not for timing a step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

enum { PROF_OPS = 48 };

struct cu_prof {
    cudaEvent_t mark, end;
    bool marked;
    struct {
        const char *op;
        long long calls;
        double ms;
    } row[PROF_OPS];
    int n;
};

void cu_prof_init(cu_backend *cb) {
    const char *env = getenv("DFLASH_CUDA_PROFILE");
    if (!env || strcmp(env, "1")) return;
    cu_prof *p = (cu_prof *)calloc(1, sizeof *p);
    if (!p) return;
    if (cudaEventCreate(&p->mark) != cudaSuccess || cudaEventCreate(&p->end) != cudaSuccess) {
        cudaGetLastError();
        free(p);
        return;
    }
    cb->prof = p;
    fprintf(stderr, "cuda: DFLASH_CUDA_PROFILE=1: timing every kernel (slow; no CUDA graphs)\n");
}

__global__ void prof_spin_kernel(long long cycles) {
    const long long t0 = clock64();
    while (clock64() - t0 < cycles) {
    }
}

void cu_prof_begin(cu_backend *cb) {
    cu_prof *p = cb->prof;
    if (!p || cb->capturing) return;
    prof_spin_kernel<<<1, 1, 0, cb->stream>>>(40000); /* ~20 us at 2 GHz */
    p->marked = cudaEventRecord(p->mark, cb->stream) == cudaSuccess;
}

void cu_prof_end(cu_backend *cb, const char *op) {
    cu_prof *p = cb->prof;
    if (!p || cb->capturing || !p->marked) return;
    float ms = 0.0f;
    if (cudaEventRecord(p->end, cb->stream) != cudaSuccess || cudaEventSynchronize(p->end) != cudaSuccess ||
        cudaEventElapsedTime(&ms, p->mark, p->end) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    int i = 0;
    while (i < p->n && strcmp(p->row[i].op, op)) i++;
    if (i == p->n && p->n < PROF_OPS) p->row[p->n++].op = op;
    if (i < PROF_OPS) {
        p->row[i].calls++;
        p->row[i].ms += ms;
    }
    /* the op's next launch (attention: write, attend, merge) is timed from a new mark */
    cu_prof_begin(cb);
}

void cu_prof_report(cu_backend *cb) {
    cu_prof *p = cb->prof;
    if (!p) return;
    double total = 0.0;
    for (int i = 0; i < p->n; i++) total += p->row[i].ms;
    fprintf(stderr, "\ncuda profile (%s): kernel time by op, %.3f ms in all\n", cb->device_name, total);
    fprintf(stderr, "%-24s %10s %12s %10s %7s\n", "op", "calls", "total ms", "mean us", "share");
    bool done[PROF_OPS] = {false};
    for (int k = 0; k < p->n; k++) {
        int best = -1;
        for (int i = 0; i < p->n; i++)
            if (!done[i] && (best < 0 || p->row[i].ms > p->row[best].ms)) best = i;
        done[best] = true;
        fprintf(stderr, "%-24s %10lld %12.3f %10.2f %6.1f%%\n", p->row[best].op, p->row[best].calls, p->row[best].ms,
                1e3 * p->row[best].ms / (double)p->row[best].calls, total > 0 ? 100.0 * p->row[best].ms / total : 0.0);
    }
    cudaEventDestroy(p->mark);
    cudaEventDestroy(p->end);
    free(p);
    cb->prof = NULL;
}
