/* What the two kinds of random file (the qwen35 target, mkmodel.c; the DFlash drafter,
 * mkmodel_drafter.c) share: how a row of random values is drawn, and the writer that fills a
 * planned file with such rows (mkmodel_rows.c). */
#ifndef DF_CONVERT_MKMODEL_INTERNAL_H
#define DF_CONVERT_MKMODEL_INTERNAL_H

#include <stdint.h>

#include "convert/convert_internal.h"
#include "convert/mkmodel.h"

/* How the values of one tensor are drawn (as the Hugging Face tensor holds them; the plan
 * entry's op, +1 or -exp, is applied after). */
typedef enum mk_init_kind {
    MK_INIT_NORMAL,    /* N(0, scale^2) */
    MK_INIT_NORM_ONE,  /* 1 + N(0, scale^2): a plain norm weight */
    MK_INIT_NORM_ZERO, /* N(0, scale^2): a zero-centred norm; the +1 op makes it ~1 */
    MK_INIT_A_LOG,     /* log U(1, 16); -exp makes ssm_a = -A */
    MK_INIT_DT_BIAS,   /* softplus^-1(dt), log dt ~ U(log 1e-3, log 1e-1) */
} mk_init_kind;

typedef struct mk_init {
    mk_init_kind kind;
    float scale;
} mk_init;

/* splitmix64's finalizer: a bijective mix, so distinct inputs give unrelated streams. */
static inline uint64_t mk_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* n values of kind `in` from the generator seeded with stream, then t's op; dst holds n. */
void mk_draw_row(const mk_init *in, df_conv_op op, uint64_t stream, float *dst, int64_t n);

/* Writes the data of every tensor of p (types assigned, declared on w, header written), the
 * values of tensor i drawn per init[i]. The rows of a large tensor come from a pool of rows
 * quantized once per (type, row length, initializer), picked pseudo-randomly per row; small
 * tensors, and every tensor when o->unique_rows, get rows of their own (mkmodel_rows.c says
 * why a pool is fine). The bytes depend on o->seed, never on the thread count. */
df_status mk_write_rows(const df_conv_plan *p, const mk_init *init, df_gguf_writer *w, const df_mkmodel_opts *o,
                        FILE *log);

#endif
