/* cuda_ops_check: every op of the CUDA backend against the CPU backend (the reference
 * implementation) on random data, never zeros. A plain C program (the GPU machine has no
 * Criterion); scripts/gpu-check.sh runs it, also under compute-sanitizer.
 *
 *   cuda_ops_check [--quick] [--bench | --bench-only | --bench-27b | --bench-gdn]   exit 0 when all rows pass
 *   (--quick: fewer matmul sizes; --bench: then time the ops at a Qwen3.5-0.8B layer's shapes,
 *   and the matmuls at the Qwen3.6-27B shapes against the copy bandwidth; --bench-only: the
 *   timings alone; --bench-27b: the 27B matmul table alone; --bench-gdn: the GDN recurrence
 *   at the 27B layer shape, 1024 and 4096 tokens, recurrent vs chunked, alone)
 *
 * Each row of the table: op, shape, the CUDA result's error and the CPU result's error
 * against the reference, the tolerance, PASS/FAIL. Errors are max |x - ref| / max |ref|
 * over the whole output. The reference is an independent float64 computation where one is
 * cheap (matmul: the dequantized weights dotted in double); elsewhere it is the CPU backend
 * (its column then reads "ref"). Rows marked "bitwise" check the batch-invariance property:
 * a token's result inside a batch equals, bit for bit, its result computed alone. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/fp16.h"
#include "base/rng.h"
#include "quant/types.h"

static df_rng g_rng;
static int g_fail, g_rows;
static bool g_quick, g_bench, g_bench_only, g_bench_27b, g_bench_gdn;

/* ---- reporting ---- */

static void row(const char *op, const char *shape, double cuda_err, double cpu_err, double tol, bool ok) {
    char cpu[32];
    if (cpu_err < 0) snprintf(cpu, sizeof cpu, "%10s", "ref");
    else snprintf(cpu, sizeof cpu, "%10.2e", cpu_err);
    printf("%-28s %-34s %10.2e %s %9.1e  %s\n", op, shape, cuda_err, cpu, tol, ok ? "PASS" : "FAIL");
    fflush(stdout);
    g_rows++;
    if (!ok) g_fail++;
}

static void row_bitwise(const char *op, const char *shape, bool same, long long n_diff) {
    printf("%-28s %-34s %10s %10s %9s  %s", op, shape, same ? "bitwise" : "DIFFER", "-", "0", same ? "PASS" : "FAIL");
    if (!same) printf(" (%lld values differ)", n_diff);
    printf("\n");
    fflush(stdout);
    g_rows++;
    if (!same) g_fail++;
}

static void row_error(const char *op, const char *shape, const char *msg) {
    printf("%-28s %-34s error: %s  FAIL\n", op, shape, msg);
    fflush(stdout);
    g_rows++;
    g_fail++;
}

/* max |a - ref| / max |ref|; NaN anywhere gives +inf (a failure) */
static double rel_err(const float *a, const float *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)ref[i]);
        if (!(d == d) || isinf(d)) return INFINITY;
        if (d > num) num = d;
        if (fabs((double)ref[i]) > den) den = fabs((double)ref[i]);
    }
    return den > 0 ? num / den : num;
}

static double rel_err_d(const float *a, const double *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - ref[i]);
        if (!(d == d) || isinf(d)) return INFINITY;
        if (d > num) num = d;
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return den > 0 ? num / den : num;
}

static long long count_diff(const void *a, const void *b, size_t bytes, size_t elem) {
    long long n = 0;
    for (size_t i = 0; i < bytes; i += elem) n += memcmp((const char *)a + i, (const char *)b + i, elem) != 0;
    return n;
}

/* ---- data ---- */

static float *rnd(size_t n, float lo, float hi) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = df_rng_uniform(&g_rng, lo, hi);
    return p;
}

static float *fzero(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* ---- backend buffers: allocate + upload, download, free everything at the end ---- */

typedef struct bset {
    df_backend *be;
    void *p[64];
    int n;
    bool bad;
    char err[512];
} bset;

static void bset_fail(bset *b, const char *what) {
    if (!b->bad) snprintf(b->err, sizeof b->err, "%s: %s", what, df_last_error());
    b->bad = true;
}

static void *bput(bset *b, const void *host, size_t bytes) {
    void *p = NULL;
    if (b->bad) return NULL;
    if (b->be->ops->alloc(b->be, bytes, &p) != DF_OK) {
        bset_fail(b, "alloc");
        return NULL;
    }
    b->p[b->n++] = p;
    if (host && b->be->ops->upload(b->be, p, host, bytes) != DF_OK) bset_fail(b, "upload");
    return p;
}

static void bget(bset *b, void *host, const void *dev, size_t bytes) {
    if (b->bad) return;
    if (b->be->ops->download(b->be, host, dev, bytes) != DF_OK) bset_fail(b, "download");
}

static void bcheck(bset *b, df_status st, const char *what) {
    if (st != DF_OK) bset_fail(b, what);
}

static void bfree(bset *b) {
    for (int i = 0; i < b->n; i++) b->be->ops->free(b->be, b->p[i]);
    b->n = 0;
}

static df_heads heads(float *data, int64_t n_tok, int64_t n_head, int64_t dim, int64_t ts, int64_t hs) {
    df_heads h = {data, n_tok, n_head, dim, ts, hs};
    return h;
}

static df_backend *g_cpu, *g_cuda;

/* ---- matmul ---- */

typedef struct wmat {
    df_type type;
    int64_t n_in, n_out;
    void *q;          /* host bytes of the type */
    size_t bytes;
    float *deq;       /* dequantized, [n_out][n_in] */
} wmat;

static bool make_weight(df_type t, int64_t n_in, int64_t n_out, wmat *w) {
    const df_type_traits *tt = df_type_get_scalar((uint32_t)t);
    size_t row;
    if (!tt || !tt->from_float || !tt->to_float || !df_type_row_size(t, n_in, &row)) return false;
    w->type = t;
    w->n_in = n_in;
    w->n_out = n_out;
    w->bytes = row * (size_t)n_out;
    w->q = malloc(w->bytes);
    w->deq = malloc((size_t)(n_in * n_out) * sizeof(float));
    float *src = rnd((size_t)n_in, -1, 1);
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t i = 0; i < n_in; i++) src[i] = df_rng_uniform(&g_rng, -1, 1);
        tt->from_float(src, (char *)w->q + (size_t)r * row, n_in);
        tt->to_float((char *)w->q + (size_t)r * row, w->deq + r * n_in, n_in);
    }
    free(src);
    return true;
}

static void free_weight(wmat *w) {
    free(w->q);
    free(w->deq);
}

/* y = x W^T on a backend; x_off shifts x by that many floats inside its buffer (alignment). */
static bool run_matmul(df_backend *be, const wmat *w, const float *x, int64_t n_tok, int x_off, float *y,
                       char *err, size_t errcap) {
    bset b = {.be = be};
    df_weight host = {.type = w->type, .ne = {w->n_in, w->n_out, 1, 1}, .data = w->q, .size = w->bytes,
                      .name = "test.weight"};
    df_weight bound;
    if (be->ops->bind_weight(be, &host, &bound) != DF_OK) {
        snprintf(err, errcap, "bind_weight: %s", df_last_error());
        return false;
    }
    const size_t xn = (size_t)(n_tok * w->n_in);
    float *xs = fzero(xn + (size_t)x_off);
    memcpy(xs + x_off, x, xn * sizeof(float));
    float *dx = bput(&b, xs, (xn + (size_t)x_off) * sizeof(float));
    float *dy = bput(&b, NULL, (size_t)(n_tok * w->n_out) * sizeof(float));
    if (!b.bad) bcheck(&b, be->ops->matmul(be, dx + x_off, n_tok, &bound, dy), "matmul");
    bget(&b, y, dy, (size_t)(n_tok * w->n_out) * sizeof(float));
    free(xs);
    bfree(&b);
    be->ops->unbind_weight(be, &bound);
    if (b.bad) snprintf(err, errcap, "%s", b.err);
    return !b.bad;
}

/* The types whose small-batch matmul quantizes the activations to int8 (cuda_mmq.cu). */
static bool int8_path(df_type t, int64_t n_tok) {
    return n_tok <= 64 && (t == DF_TYPE_Q4_K || t == DF_TYPE_Q5_K || t == DF_TYPE_Q6_K || t == DF_TYPE_Q8_0 ||
                           t == DF_TYPE_Q4_0);
}

/* x after the int8 path's rounding (cuda_quantize_act.cu, written again here): per block of 32
 * (Q8_0, Q4_0) or super-block of 256 (K-quants), d = amax / 127 and q = roundf(x / d), both in
 * float as the device does them, so the products d * q are exactly the values the tensor
 * cores see. */
static void q8_round(df_type t, const float *x, int64_t n, double *out) {
    const int64_t blk = t == DF_TYPE_Q4_K || t == DF_TYPE_Q5_K || t == DF_TYPE_Q6_K ? 256 : 32;
    for (int64_t b = 0; b < n; b += blk) {
        float amax = 0.0f;
        for (int64_t i = 0; i < blk; i++) amax = fmaxf(amax, fabsf(x[b + i]));
        const float d = amax / 127.0f;
        for (int64_t i = 0; i < blk; i++) out[b + i] = amax == 0.0f ? 0.0 : (double)d * (double)roundf(x[b + i] / d);
    }
}

static void check_matmul(df_type t, int64_t n_in, int64_t n_out, int64_t n_tok, int x_off) {
    char op[64], shape[64], err[512];
    snprintf(op, sizeof op, "matmul %s", df_type_name(t));
    snprintf(shape, sizeof shape, "%lld x [%lld -> %lld]%s", (long long)n_tok, (long long)n_in, (long long)n_out,
             x_off ? " x+1" : "");
    wmat w;
    if (!make_weight(t, n_in, n_out, &w)) {
        row_error(op, shape, "cannot quantize test data for this type");
        return;
    }
    float *x = rnd((size_t)(n_tok * n_in), -1, 1);
    const size_t ny = (size_t)(n_tok * n_out);
    float *yc = fzero(ny), *yg = fzero(ny);
    const bool q8 = int8_path(t, n_tok); /* then n_in is whole blocks of 32 */
    double *ref = malloc(ny * sizeof *ref), *refq = malloc(ny * sizeof *refq);
    double *xr = malloc((size_t)(n_tok * n_in) * sizeof *xr);
    if (q8) q8_round(t, x, n_tok * n_in, xr);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0.0, sq = 0.0;
            for (int64_t i = 0; i < n_in; i++) {
                s += (double)w.deq[o * n_in + i] * (double)x[t * n_in + i];
                if (q8) sq += (double)w.deq[o * n_in + i] * xr[t * n_in + i];
            }
            ref[t * n_out + o] = s;
            refq[t * n_out + o] = sq;
        }
    bool ok_cpu = run_matmul(g_cpu, &w, x, n_tok, x_off, yc, err, sizeof err);
    bool ok_gpu = ok_cpu && run_matmul(g_cuda, &w, x, n_tok, x_off, yg, err, sizeof err);
    if (!ok_cpu || !ok_gpu) {
        row_error(op, shape, err);
    } else {
        /* f32 FMA over dequantized weights up to the small-batch limit; cuBLAS TF32 beyond
         * (f32 weights stay exact f32). The int8 path rounds each activation to 1/254 of its
         * block's largest magnitude: an error of rms amax/440 per element, so about
         * 1/(440 * rms(w)) ~ 4e-3 of the largest output on these uniform rows (3.1e-3..4.2e-3
         * simulated on the shapes below; the CPU's q8_K / q8_0 dots, which round the same way,
         * show the same in the cpu column). 1e-2 leaves 2.5x; a wrong scale, nibble or
         * sub-block costs O(1). The second row is the sharp check: against the same float64
         * sum over x rounded exactly as the device rounds it, only f32 accumulation remains. */
        const double tol = q8 ? 1e-2 : n_tok > 64 && t != DF_TYPE_F32 ? 5e-3 : 2e-5;
        const double e = rel_err_d(yg, ref, ny);
        row(op, shape, e, rel_err_d(yc, ref, ny), tol, e <= tol);
        if (q8) {
            char op2[80];
            snprintf(op2, sizeof op2, "%s int8 x", op);
            const double e2 = rel_err_d(yg, refq, ny);
            row(op2, shape, e2, -1, 2e-5, e2 <= 2e-5);
        }
    }
    free(x);
    free(yc);
    free(yg);
    free(ref);
    free(refq);
    free(xr);
    free_weight(&w);
}

/* Token t of an n-token call equals, bit for bit, the same token in calls of other sizes: a
 * 64-token call against sub-calls of 1..64 tokens at odd offsets, which between them take every
 * column-tile count of the int8 kernel (1, 2, 3..4, 5..8 tiles of 8) and put tokens in every
 * place of a tile. */
static void check_matmul_invariance(df_type t, int64_t n_in, int64_t n_out) {
    char op[64], shape[64], err[512];
    snprintf(op, sizeof op, "matmul %s", df_type_name(t));
    snprintf(shape, sizeof shape, "n_tok 64 vs 1..64 [%lld -> %lld]", (long long)n_in, (long long)n_out);
    wmat w;
    if (!make_weight(t, n_in, n_out, &w)) {
        row_error(op, shape, "cannot quantize test data for this type");
        return;
    }
    const int N = 64;
    float *x = rnd((size_t)(N * n_in), -1, 1);
    float *yn = fzero((size_t)(N * n_out)), *ys = fzero((size_t)(N * n_out));
    bool ok = run_matmul(g_cuda, &w, x, N, 0, yn, err, sizeof err);
    long long diff = 0;
    static const int cuts[][2] = {{0, 1}, {1, 7}, {8, 9}, {17, 16}, {33, 31}, {63, 1}, {5, 59}, {3, 20}, {0, 64},
                                  {40, 2}, {61, 3}};
    for (size_t c = 0; ok && c < sizeof cuts / sizeof cuts[0]; c++) {
        const int t0 = cuts[c][0], n = cuts[c][1];
        ok = run_matmul(g_cuda, &w, x + (size_t)t0 * n_in, n, 0, ys, err, sizeof err);
        if (ok) diff += count_diff(ys, yn + (size_t)t0 * n_out, (size_t)(n * n_out) * sizeof(float), sizeof(float));
    }
    if (!ok) row_error(op, shape, err);
    else row_bitwise(op, shape, diff == 0, diff);
    free(x);
    free(yn);
    free(ys);
    free_weight(&w);
}

/* matmul_many (one activation quantization for several weights; consecutive weights of one
 * type in one launch, at most 4 to a launch) equals one matmul per weight, bit for bit. */
enum { MANY_MAX = 8 };
static void check_matmul_many(int64_t n_in, int64_t n_tok, int n, const df_type *types, const int64_t *outs) {
    char shape[160], err[512] = "";
    int len = snprintf(shape, sizeof shape, "%lld x [%lld ->", (long long)n_tok, (long long)n_in);
    for (int i = 0; i < n && len > 0 && (size_t)len < sizeof shape; i++)
        len += snprintf(shape + len, sizeof shape - (size_t)len, " %lld %s", (long long)outs[i], df_type_name(types[i]));
    if (len > 0 && (size_t)len < sizeof shape) snprintf(shape + len, sizeof shape - (size_t)len, "]");
    df_backend *be = g_cuda;
    wmat w[MANY_MAX];
    df_weight host[MANY_MAX], bound[MANY_MAX];
    const df_weight *wp[MANY_MAX];
    float *dy[MANY_MAX];
    bset b = {.be = be};
    int made = 0, bound_n = 0;
    for (; made < n && make_weight(types[made], n_in, outs[made], &w[made]); made++) {}
    if (made < n) snprintf(err, sizeof err, "cannot quantize test data");
    for (int i = 0; i < made && !err[0]; i++) {
        host[i] = (df_weight){.type = w[i].type, .ne = {n_in, outs[i], 1, 1}, .data = w[i].q, .size = w[i].bytes,
                              .name = "test.weight"};
        if (be->ops->bind_weight(be, &host[i], &bound[i]) != DF_OK) snprintf(err, sizeof err, "bind: %s", df_last_error());
        else wp[bound_n++] = &bound[i];
    }
    float *x = rnd((size_t)(n_tok * n_in), -1, 1);
    float *dx = bput(&b, x, (size_t)(n_tok * n_in) * sizeof(float));
    long long diff = 0;
    if (!err[0]) {
        for (int i = 0; i < n; i++) dy[i] = bput(&b, NULL, (size_t)(n_tok * outs[i]) * sizeof(float));
        if (!b.bad) bcheck(&b, be->ops->matmul_many(be, dx, n_tok, n, wp, dy), "matmul_many");
        for (int i = 0; i < n && !b.bad; i++) {
            const size_t ny = (size_t)(n_tok * outs[i]);
            float *y1 = fzero(ny), *y2 = fzero(ny);
            bget(&b, y1, dy[i], ny * sizeof(float));
            if (!b.bad) bcheck(&b, be->ops->matmul(be, dx, n_tok, wp[i], dy[i]), "matmul");
            bget(&b, y2, dy[i], ny * sizeof(float));
            diff += count_diff(y1, y2, ny * sizeof(float), sizeof(float));
            free(y1);
            free(y2);
        }
        if (b.bad) snprintf(err, sizeof err, "%s", b.err);
    }
    if (err[0]) row_error("matmul_many", shape, err);
    else row_bitwise("matmul_many", shape, diff == 0, diff);
    free(x);
    bfree(&b);
    for (int i = 0; i < bound_n; i++) be->ops->unbind_weight(be, &bound[i]);
    for (int i = 0; i < made; i++) free_weight(&w[i]);
}

static void check_matmul_many_cases(void) {
    /* a GDN layer's shape of calls: one type run of 4, one of 2, a lone one; then a run of 6 of
     * one type (two launches), all types of the int8 path, and rows that take every K split */
    static const df_type t1[] = {DF_TYPE_Q4_K, DF_TYPE_Q4_K, DF_TYPE_Q4_K, DF_TYPE_Q4_K,
                                 DF_TYPE_Q6_K, DF_TYPE_Q6_K, DF_TYPE_Q8_0};
    static const int64_t o1[] = {300, 48, 48, 2000, 77, 45, 45};
    static const df_type t2[] = {DF_TYPE_Q4_K, DF_TYPE_Q4_K, DF_TYPE_Q4_K, DF_TYPE_Q4_K, DF_TYPE_Q4_K, DF_TYPE_Q4_K};
    static const int64_t o2[] = {16, 17, 5000, 31, 300, 8};
    static const df_type t3[] = {DF_TYPE_Q5_K, DF_TYPE_Q5_K, DF_TYPE_Q4_0, DF_TYPE_Q4_0, DF_TYPE_Q8_0};
    static const int64_t o3[] = {100, 33, 64, 65, 129};
    for (int64_t n = 1; n <= 16; n *= 2) check_matmul_many(512, n, 7, t1, o1);
    check_matmul_many(1280, 3, 6, t2, o2);
    check_matmul_many(1280, 9, 6, t2, o2);
    check_matmul_many(768, 1, 5, t3, o3);
    check_matmul_many(768, 24, 5, t3, o3);
}

/* ---- get_rows ---- */

static void check_get_rows(df_type t, int64_t ne0) {
    char op[64], shape[64];
    snprintf(op, sizeof op, "get_rows %s", df_type_name(t));
    snprintf(shape, sizeof shape, "9 of [%lld][%lld]", 50LL, (long long)ne0);
    wmat w;
    if (!make_weight(t, ne0, 50, &w)) {
        row_error(op, shape, "cannot quantize test data for this type");
        return;
    }
    int32_t ids[9];
    for (int i = 0; i < 9; i++) ids[i] = (int32_t)df_rng_below(&g_rng, 50);
    float *out[2] = {fzero((size_t)(9 * ne0)), fzero((size_t)(9 * ne0))};
    df_backend *bes[2] = {g_cpu, g_cuda};
    char err[512] = "";
    bool ok = true;
    for (int k = 0; k < 2 && ok; k++) {
        df_backend *be = bes[k];
        bset b = {.be = be};
        df_weight host = {.type = t, .ne = {ne0, 50, 1, 1}, .data = w.q, .size = w.bytes, .name = "emb"}, bound;
        if (be->ops->bind_weight(be, &host, &bound) != DF_OK) {
            snprintf(err, sizeof err, "bind: %s", df_last_error());
            ok = false;
            break;
        }
        int32_t *dids = bput(&b, ids, sizeof ids);
        float *d = bput(&b, NULL, (size_t)(9 * ne0) * sizeof(float));
        if (!b.bad) bcheck(&b, be->ops->get_rows(be, &bound, dids, 9, d), "get_rows");
        bget(&b, out[k], d, (size_t)(9 * ne0) * sizeof(float));
        bfree(&b);
        be->ops->unbind_weight(be, &bound);
        if (b.bad) {
            snprintf(err, sizeof err, "%s", b.err);
            ok = false;
        }
    }
    if (!ok) row_error(op, shape, err);
    else {
        const double e = rel_err(out[1], out[0], (size_t)(9 * ne0));
        row(op, shape, e, -1, 0.0, e == 0.0);
    }
    free(out[0]);
    free(out[1]);
    free_weight(&w);
}

/* ---- norms and elementwise ---- */

typedef enum { N_RMS, N_RMS_NOW, N_GATED, N_HEADS, N_L2, E_ADD, E_SWIGLU, E_GATES, E_STATE16, E_STATE32 } simple_op;

/* Runs one of the simple ops on a backend; inputs a, b, z (host), output into y. */
static bool run_simple(df_backend *be, simple_op op, int64_t rows, int64_t dim, const float *a, const float *bb,
                       const float *w, float *y, float *y2, char *err, size_t cap) {
    bset b = {.be = be};
    const int64_t xs = dim + 3; /* strided rows */
    const size_t n = (size_t)(rows * xs);
    float *da = bput(&b, a, n * sizeof(float));
    float *db = bput(&b, bb, n * sizeof(float));
    float *dw = bput(&b, w, (size_t)dim * sizeof(float));
    float *dy = bput(&b, NULL, n * sizeof(float));
    float *dy2 = bput(&b, NULL, n * sizeof(float));
    if (!b.bad) {
        df_status st = DF_OK;
        switch (op) {
        case N_RMS: st = be->ops->rmsnorm(be, da, xs, dy, xs, rows, dim, dw, 1e-6f); break;
        case N_RMS_NOW: st = be->ops->rmsnorm(be, da, xs, da, xs, rows, dim, NULL, 1e-5f); break;
        case N_GATED: st = be->ops->rmsnorm_gated(be, da, xs, db, xs, dy, xs, rows, dim, dw, 1e-6f); break;
        case N_HEADS: {
            df_heads h = heads(da, rows, 3, dim / 3, xs, dim / 3);
            st = be->ops->rmsnorm_heads(be, &h, dw, 1e-6f);
            break;
        }
        case N_L2: {
            df_heads h = heads(da, rows, 3, dim / 3, xs, dim / 3);
            st = be->ops->l2norm_heads(be, &h, 1e-6f);
            break;
        }
        case E_ADD: st = be->ops->add(be, da, db, dy, (int64_t)n); break;
        case E_SWIGLU: st = be->ops->swiglu(be, da, db, dy, (int64_t)n); break;
        case E_GATES: st = be->ops->gdn_gates(be, da, db, dw, dw, rows, dim, dy, dy2); break;
        case E_STATE16: {
            df_fp16 *h = malloc(n * sizeof *h);
            df_f32_to_fp16_row(a, h, n);
            void *dh = bput(&b, h, n * sizeof *h);
            free(h);
            if (!b.bad) st = be->ops->state_to_f32(be, dy, dh, DF_STATE_F16, (int64_t)n);
            break;
        }
        case E_STATE32: st = be->ops->state_to_f32(be, dy, da, DF_STATE_F32, (int64_t)n); break;
        }
        bcheck(&b, st, "op");
    }
    const bool in_place = op == N_RMS_NOW || op == N_HEADS || op == N_L2;
    bget(&b, y, in_place ? da : dy, n * sizeof(float));
    if (y2) bget(&b, y2, dy2, n * sizeof(float));
    bfree(&b);
    if (b.bad) snprintf(err, cap, "%s", b.err);
    return !b.bad;
}

static void check_simple(const char *name, simple_op op, int64_t rows, int64_t dim, double tol) {
    char shape[64], err[512];
    snprintf(shape, sizeof shape, "[%lld][%lld] stride %lld", (long long)rows, (long long)dim, (long long)dim + 3);
    const size_t n = (size_t)(rows * (dim + 3));
    float *a = rnd(n, -3, 3), *bb = rnd(n, -3, 3), *w = rnd((size_t)dim, 0.5f, 1.5f);
    if (op == E_GATES) for (int64_t i = 0; i < dim; i++) w[i] = -w[i]; /* ssm_a < 0 */
    float *yc = fzero(n), *yg = fzero(n), *yc2 = fzero(n), *yg2 = fzero(n);
    const bool two = op == E_GATES;
    bool ok = run_simple(g_cpu, op, rows, dim, a, bb, w, yc, two ? yc2 : NULL, err, sizeof err) &&
              run_simple(g_cuda, op, rows, dim, a, bb, w, yg, two ? yg2 : NULL, err, sizeof err);
    if (!ok) row_error(name, shape, err);
    else {
        double e = rel_err(yg, yc, n);
        if (two) {
            const double e2 = rel_err(yg2, yc2, n);
            if (e2 > e) e = e2;
        }
        row(name, shape, e, -1, tol, e <= tol);
    }
    free(a); free(bb); free(w); free(yc); free(yg); free(yc2); free(yg2);
}

static void check_rope(void) {
    const int64_t T = 7, H = 5, D = 64, rot = 16, ts = H * D * 2, hs = D * 2;
    char err[512] = "";
    const size_t n = (size_t)(T * ts);
    float *x = rnd(n, -2, 2), *inv = malloc((size_t)rot / 2 * sizeof(float));
    df_cpu_rope_inv_freq(1e7f, rot, inv);
    int32_t pos[7] = {0, 1, 17, 255, 1000, 4097, 65000};
    float *y[2] = {fzero(n), fzero(n)};
    df_backend *bes[2] = {g_cpu, g_cuda};
    bool ok = true;
    for (int k = 0; k < 2 && ok; k++) {
        bset b = {.be = bes[k]};
        float *dx = bput(&b, x, n * sizeof(float));
        int32_t *dp = bput(&b, pos, sizeof pos);
        float *di = bput(&b, inv, (size_t)rot / 2 * sizeof(float));
        df_heads h = heads(dx, T, H, D, ts, hs);
        if (!b.bad) bcheck(&b, bes[k]->ops->rope(bes[k], &h, dp, di, rot), "rope");
        bget(&b, y[k], dx, n * sizeof(float));
        bfree(&b);
        if (b.bad) {
            snprintf(err, sizeof err, "%s", b.err);
            ok = false;
        }
    }
    if (!ok) row_error("rope", "7 tok x 5 heads x 64, rot 16", err);
    else {
        const double e = rel_err(y[1], y[0], n);
        row("rope", "7 tok x 5 heads x 64, rot 16", e, -1, 1e-6, e <= 1e-6);
    }
    free(x); free(inv); free(y[0]); free(y[1]);
}

static void check_argmax(void) {
    const int64_t R = 6, N = 5000, S = 5003;
    float *x = rnd((size_t)(R * S), -1, 1);
    /* ties (the first must win), a NaN, a row of -inf but one */
    x[0 * S + 100] = 7.0f; x[0 * S + 4000] = 7.0f;
    x[1 * S + 3] = NAN; x[1 * S + 2] = 9.0f; x[1 * S + 4999] = 9.0f;
    for (int64_t i = 0; i < N; i++) x[2 * S + i] = -INFINITY;
    x[2 * S + 4321] = -1e30f;
    x[3 * S + 4999] = 5.0f;
    int32_t out[2][6];
    df_backend *bes[2] = {g_cpu, g_cuda};
    char err[512] = "";
    bool ok = true;
    for (int k = 0; k < 2 && ok; k++) {
        bset b = {.be = bes[k]};
        float *dx = bput(&b, x, (size_t)(R * S) * sizeof(float));
        int32_t *d = bput(&b, NULL, sizeof out[k]);
        if (!b.bad) bcheck(&b, bes[k]->ops->argmax_rows(bes[k], dx, R, N, S, d), "argmax_rows");
        bget(&b, out[k], d, sizeof out[k]);
        bfree(&b);
        if (b.bad) {
            snprintf(err, sizeof err, "%s", b.err);
            ok = false;
        }
    }
    if (!ok) row_error("argmax_rows", "6 x 5000, ties, NaN, -inf", err);
    else row_bitwise("argmax_rows", "6 x 5000, ties, NaN, -inf", !memcmp(out[0], out[1], sizeof out[0]),
                     count_diff(out[0], out[1], sizeof out[0], sizeof(int32_t)));
    free(x);
}

/* ---- attention ---- */

typedef struct attn_case {
    int64_t n_tok, n_head, n_kv, dim, n_ctx, pos0;
    df_kv_type kv;
    bool causal, gate;
} attn_case;

/* Fills rows [0, pos0) with random K/V through kv_write, then runs attention (with k_new). */
static bool run_attention(df_backend *be, const attn_case *c, const float *ctx_k, const float *ctx_v,
                          const float *q, const float *g, const float *kn, const float *vn, float *out,
                          char *err, size_t cap) {
    bset b = {.be = be};
    const size_t kv_bytes = (size_t)(c->n_ctx * c->n_kv * c->dim) * (c->kv == DF_KV_F16 ? 2 : 4);
    df_kv_cache cache = {bput(&b, NULL, kv_bytes), bput(&b, NULL, kv_bytes), c->kv, c->n_ctx, c->n_kv, c->dim};
    const int64_t qd = c->n_head * c->dim, kvd = c->n_kv * c->dim;
    if (c->pos0 > 0) {
        float *dk = bput(&b, ctx_k, (size_t)(c->pos0 * kvd) * sizeof(float));
        float *dv = bput(&b, ctx_v, (size_t)(c->pos0 * kvd) * sizeof(float));
        df_heads hk = heads(dk, c->pos0, c->n_kv, c->dim, kvd, c->dim), hv = heads(dv, c->pos0, c->n_kv, c->dim, kvd, c->dim);
        if (!b.bad) bcheck(&b, be->ops->kv_write(be, &cache, &hk, &hv, 0), "kv_write");
    }
    /* q and gate interleaved per head like the target's q projection: [q | gate] */
    float *dq = bput(&b, q, (size_t)(c->n_tok * qd * 2) * sizeof(float));
    float *dkn = bput(&b, kn, (size_t)(c->n_tok * kvd) * sizeof(float));
    float *dvn = bput(&b, vn, (size_t)(c->n_tok * kvd) * sizeof(float));
    float *dout = bput(&b, NULL, (size_t)(c->n_tok * qd) * sizeof(float));
    (void)g;
    if (!b.bad) {
        df_heads hq = heads(dq, c->n_tok, c->n_head, c->dim, 2 * qd, 2 * c->dim);
        df_heads hg = heads(dq + c->dim, c->n_tok, c->n_head, c->dim, 2 * qd, 2 * c->dim);
        df_heads hk = heads(dkn, c->n_tok, c->n_kv, c->dim, kvd, c->dim);
        df_heads hv = heads(dvn, c->n_tok, c->n_kv, c->dim, kvd, c->dim);
        df_attn_args a = {.q = hq, .gate = c->gate ? &hg : NULL, .k_new = &hk, .v_new = &hv, .cache = &cache,
                          .pos0 = c->pos0, .causal = c->causal, .scale = 0.0f,
                          .out = heads(dout, c->n_tok, c->n_head, c->dim, qd, c->dim)};
        bcheck(&b, be->ops->attention(be, &a), "attention");
    }
    bget(&b, out, dout, (size_t)(c->n_tok * qd) * sizeof(float));
    bfree(&b);
    if (b.bad) snprintf(err, cap, "%s", b.err);
    return !b.bad;
}

static void check_attention(attn_case c) {
    char op[64], shape[96], err[512];
    snprintf(op, sizeof op, "attention %s%s%s", c.kv == DF_KV_F16 ? "f16" : "f32", c.causal ? " causal" : "",
             c.gate ? " gated" : "");
    snprintf(shape, sizeof shape, "%lld tok @%lld, %lld/%lld heads x %lld", (long long)c.n_tok, (long long)c.pos0,
             (long long)c.n_head, (long long)c.n_kv, (long long)c.dim);
    const int64_t qd = c.n_head * c.dim, kvd = c.n_kv * c.dim;
    float *ck = rnd((size_t)(c.pos0 * kvd + 1), -1, 1), *cv = rnd((size_t)(c.pos0 * kvd + 1), -1, 1);
    float *q = rnd((size_t)(c.n_tok * qd * 2), -1, 1);
    float *kn = rnd((size_t)(c.n_tok * kvd), -1, 1), *vn = rnd((size_t)(c.n_tok * kvd), -1, 1);
    const size_t no = (size_t)(c.n_tok * qd);
    float *oc = fzero(no), *og = fzero(no);
    bool ok = run_attention(g_cpu, &c, ck, cv, q, NULL, kn, vn, oc, err, sizeof err) &&
              run_attention(g_cuda, &c, ck, cv, q, NULL, kn, vn, og, err, sizeof err);
    if (!ok) row_error(op, shape, err);
    else {
        const double e = rel_err(og, oc, no);
        row(op, shape, e, -1, 1e-5, e <= 1e-5);
    }
    /* batch invariance: token t of the call == the same token attended alone (causal only) */
    if (ok && c.causal && c.n_tok > 1 && c.n_tok <= 64) {
        long long diff = 0;
        float *o1 = fzero((size_t)qd);
        float *ctx_k = malloc((size_t)((c.pos0 + c.n_tok) * kvd) * sizeof(float));
        float *ctx_v = malloc((size_t)((c.pos0 + c.n_tok) * kvd) * sizeof(float));
        memcpy(ctx_k, ck, (size_t)(c.pos0 * kvd) * sizeof(float));
        memcpy(ctx_v, cv, (size_t)(c.pos0 * kvd) * sizeof(float));
        memcpy(ctx_k + c.pos0 * kvd, kn, (size_t)(c.n_tok * kvd) * sizeof(float));
        memcpy(ctx_v + c.pos0 * kvd, vn, (size_t)(c.n_tok * kvd) * sizeof(float));
        for (int64_t t = 0; t < c.n_tok && ok; t++) {
            attn_case one = c;
            one.n_tok = 1;
            one.pos0 = c.pos0 + t;
            ok = run_attention(g_cuda, &one, ctx_k, ctx_v, q + t * qd * 2, NULL, kn + t * kvd, vn + t * kvd, o1, err,
                               sizeof err);
            diff += count_diff(o1, og + t * qd, (size_t)qd * sizeof(float), sizeof(float));
        }
        char shape2[96];
        snprintf(shape2, sizeof shape2, "%lld tok vs 1 at a time @%lld", (long long)c.n_tok, (long long)c.pos0);
        if (!ok) row_error(op, shape2, err);
        else row_bitwise(op, shape2, diff == 0, diff);
        free(o1);
        free(ctx_k);
        free(ctx_v);
    }
    free(ck); free(cv); free(q); free(kn); free(vn); free(oc); free(og);
}

/* The drafter's windowed attention over a ring: rows for positions [kv_end - n_ctx, kv_end)
 * are written (ring order) with kv_write, then n_tok queries at q_pos0 attend. */
static void check_attention_window(int64_t n_ctx, int64_t kv_end, int64_t n_tok, int64_t window, bool causal,
                                   df_kv_type kvt) {
    const int64_t H = 4, HKV = 2, D = 32, kvd = HKV * D, qd = H * D;
    char op[64], shape[96], err[512] = "";
    snprintf(op, sizeof op, "attention_window %s%s", kvt == DF_KV_F16 ? "f16" : "f32", causal ? " causal" : "");
    snprintf(shape, sizeof shape, "%lld tok, ring %lld, end %lld, win %lld", (long long)n_tok, (long long)n_ctx,
             (long long)kv_end, (long long)window);
    float *kr = rnd((size_t)(n_ctx * kvd), -1, 1), *vr = rnd((size_t)(n_ctx * kvd), -1, 1);
    float *q = rnd((size_t)(n_tok * qd), -1, 1);
    float *o[2] = {fzero((size_t)(n_tok * qd)), fzero((size_t)(n_tok * qd))};
    df_backend *bes[2] = {g_cpu, g_cuda};
    bool ok = true;
    for (int k = 0; k < 2 && ok; k++) {
        df_backend *be = bes[k];
        bset b = {.be = be};
        const size_t kv_bytes = (size_t)(n_ctx * kvd) * (kvt == DF_KV_F16 ? 2 : 4);
        df_kv_cache cache = {bput(&b, NULL, kv_bytes), bput(&b, NULL, kv_bytes), kvt, n_ctx, HKV, D};
        float *dk = bput(&b, kr, (size_t)(n_ctx * kvd) * sizeof(float));
        float *dv = bput(&b, vr, (size_t)(n_ctx * kvd) * sizeof(float));
        float *dq = bput(&b, q, (size_t)(n_tok * qd) * sizeof(float));
        float *dout = bput(&b, NULL, (size_t)(n_tok * qd) * sizeof(float));
        if (!b.bad) {
            df_heads hk = heads(dk, n_ctx, HKV, D, kvd, D), hv = heads(dv, n_ctx, HKV, D, kvd, D);
            bcheck(&b, be->ops->kv_write(be, &cache, &hk, &hv, 0), "kv_write");
        }
        if (!b.bad) {
            df_window_attn_args a = {.q = heads(dq, n_tok, H, D, qd, D), .cache = &cache, .q_pos0 = kv_end - n_tok,
                                     .kv_end = kv_end, .causal = causal, .window = window, .scale = 0.0f,
                                     .out = heads(dout, n_tok, H, D, qd, D)};
            bcheck(&b, be->ops->attention_window(be, &a), "attention_window");
        }
        bget(&b, o[k], dout, (size_t)(n_tok * qd) * sizeof(float));
        bfree(&b);
        if (b.bad) {
            snprintf(err, sizeof err, "%s", b.err);
            ok = false;
        }
    }
    if (!ok) row_error(op, shape, err);
    else {
        const double e = rel_err(o[1], o[0], (size_t)(n_tok * qd));
        row(op, shape, e, -1, 1e-5, e <= 1e-5);
    }
    free(kr); free(vr); free(q); free(o[0]); free(o[1]);
}

static void check_kv_write(df_kv_type kvt) {
    const int64_t n_ctx = 40, HKV = 3, D = 24, T = 9, row0 = 30, ts = HKV * D + 5;
    char op[64];
    snprintf(op, sizeof op, "kv_write %s", kvt == DF_KV_F16 ? "f16" : "f32");
    const size_t elem = kvt == DF_KV_F16 ? 2 : 4, bytes = (size_t)(n_ctx * HKV * D) * elem;
    float *src = rnd((size_t)(T * ts), -100, 100);
    char *out[2] = {calloc(1, 2 * bytes), calloc(1, 2 * bytes)};
    df_backend *bes[2] = {g_cpu, g_cuda};
    char err[512] = "";
    bool ok = true;
    for (int k = 0; k < 2 && ok; k++) {
        bset b = {.be = bes[k]};
        df_kv_cache cache = {bput(&b, NULL, bytes), bput(&b, NULL, bytes), kvt, n_ctx, HKV, D};
        float *d = bput(&b, src, (size_t)(T * ts) * sizeof(float));
        df_heads hk = heads(d, T, HKV, D, ts, D), hv = heads(d + 2, T, HKV, D, ts, D);
        if (!b.bad) bcheck(&b, bes[k]->ops->kv_write(bes[k], &cache, &hk, &hv, row0), "kv_write");
        bget(&b, out[k], cache.k, bytes);
        bget(&b, out[k] + bytes, cache.v, bytes);
        bfree(&b);
        if (b.bad) {
            snprintf(err, sizeof err, "%s", b.err);
            ok = false;
        }
    }
    if (!ok) row_error(op, "9 rows at 30 of 40, 3 x 24", err);
    else row_bitwise(op, "9 rows at 30 of 40, 3 x 24", !memcmp(out[0], out[1], 2 * bytes),
                     count_diff(out[0], out[1], 2 * bytes, elem));
    free(src); free(out[0]); free(out[1]);
}

/* ---- conv ---- */

static void check_conv(int64_t n_tok, int64_t C, int64_t K, bool capture) {
    char shape[96], err[512] = "";
    snprintf(shape, sizeof shape, "%lld tok x %lld ch, K %lld%s", (long long)n_tok, (long long)C, (long long)K,
             capture ? ", capture" : "");
    const int64_t xs = C + 7, keep = K - 1;
    float *x = rnd((size_t)(n_tok * xs), -2, 2), *w = rnd((size_t)(C * K), -1, 1);
    float *st0 = rnd((size_t)(keep * C + 1), -2, 2);
    const size_t no = (size_t)(n_tok * xs), ncap = (size_t)(n_tok * keep * C + 1);
    float *out[2] = {fzero(no), fzero(no)}, *st[2] = {fzero((size_t)(keep * C + 1)), fzero((size_t)(keep * C + 1))};
    float *cap[2] = {fzero(ncap), fzero(ncap)};
    df_backend *bes[2] = {g_cpu, g_cuda};
    bool ok = true;
    for (int k = 0; k < 2 && ok; k++) {
        bset b = {.be = bes[k]};
        float *dx = bput(&b, x, (size_t)(n_tok * xs) * sizeof(float));
        float *dw = bput(&b, w, (size_t)(C * K) * sizeof(float));
        float *ds = bput(&b, st0, (size_t)(keep * C + 1) * sizeof(float));
        float *dout = bput(&b, NULL, no * sizeof(float));
        float *dcap = bput(&b, NULL, ncap * sizeof(float));
        if (!b.bad)
            bcheck(&b, bes[k]->ops->conv1d_silu(bes[k], dx, xs, n_tok, C, dw, K, ds, dout, xs, capture ? dcap : NULL),
                   "conv1d_silu");
        bget(&b, out[k], dout, no * sizeof(float));
        bget(&b, st[k], ds, (size_t)(keep * C + 1) * sizeof(float));
        bget(&b, cap[k], dcap, ncap * sizeof(float));
        bfree(&b);
        if (b.bad) {
            snprintf(err, sizeof err, "%s", b.err);
            ok = false;
        }
    }
    if (!ok) row_error("conv1d_silu", shape, err);
    else {
        double e = rel_err(out[1], out[0], no);
        const double es = rel_err(st[1], st[0], (size_t)(keep * C + 1)), ec = rel_err(cap[1], cap[0], ncap);
        if (es > e) e = es;
        if (ec > e) e = ec;
        row("conv1d_silu", shape, e, -1, 1e-6, e <= 1e-6);
    }
    for (int k = 0; k < 2; k++) {
        free(out[k]);
        free(st[k]);
        free(cap[k]);
    }
    free(x); free(w); free(st0);
}

/* ---- Gated DeltaNet ---- */

typedef struct gdn_case {
    int64_t n_tok, nk, nv, dk, dv;
    df_state_type cap;
    df_gdn_head_map map;
    bool capture, chunked;
    int64_t pad;   /* floats between the heads of q, k and v (head stride = dim + pad) */
    int64_t split; /* > 0: the CUDA side runs tokens [0, split) and [split, n_tok) as two calls */
} gdn_case;

typedef struct gdn_data {
    float *qkv;   /* [n_tok][nk (dk + pad) q | nk (dk + pad) k | nv (dv + pad) v], q and k L2-normalised */
    float *g, *beta, *state;
} gdn_data;

static int64_t gdn_row(const gdn_case *c) { return 2 * c->nk * (c->dk + c->pad) + c->nv * (c->dv + c->pad); }

static void make_gdn(const gdn_case *c, gdn_data *d) {
    const int64_t C = gdn_row(c);
    d->qkv = rnd((size_t)(c->n_tok * C), -1, 1);
    for (int64_t t = 0; t < c->n_tok; t++)
        for (int64_t h = 0; h < 2 * c->nk; h++) {
            float *v = d->qkv + t * C + h * (c->dk + c->pad);
            double s = 0;
            for (int64_t i = 0; i < c->dk; i++) s += (double)v[i] * v[i];
            for (int64_t i = 0; i < c->dk; i++) v[i] = (float)(v[i] / sqrt(s + 1e-6));
        }
    d->g = rnd((size_t)(c->n_tok * c->nv), -1.0f, -0.01f);
    d->beta = rnd((size_t)(c->n_tok * c->nv), 0.05f, 0.95f);
    d->state = rnd((size_t)(c->nv * c->dk * c->dv), -0.5f, 0.5f);
}

static void free_gdn(gdn_data *d) {
    free(d->qkv); free(d->g); free(d->beta); free(d->state);
}

/* Runs tokens [t0, t0 + n) of the case from `state` (host, updated), out and capture rows
 * land at those tokens of the host arrays. */
static bool run_gdn(df_backend *be, const gdn_case *c, const gdn_data *d, int64_t t0, int64_t n, float *state,
                    float *out, void *cap, char *err, size_t errcap) {
    bset b = {.be = be};
    const int64_t C = gdn_row(c), qk = c->nk * (c->dk + c->pad), vd = c->nv * c->dv;
    const size_t hs = (size_t)(c->nv * c->dk * c->dv), celem = c->cap == DF_STATE_F16 ? 2 : 4;
    float *dqkv = bput(&b, d->qkv + t0 * C, (size_t)(n * C) * sizeof(float));
    float *dg = bput(&b, d->g + t0 * c->nv, (size_t)(n * c->nv) * sizeof(float));
    float *db = bput(&b, d->beta + t0 * c->nv, (size_t)(n * c->nv) * sizeof(float));
    float *ds = bput(&b, state, hs * sizeof(float));
    float *dout = bput(&b, NULL, (size_t)(n * vd) * sizeof(float));
    void *dcap = bput(&b, NULL, (size_t)n * hs * celem);
    if (!b.bad) {
        df_gdn_args a = {.q = heads(dqkv, n, c->nk, c->dk, C, c->dk + c->pad),
                         .k = heads(dqkv + qk, n, c->nk, c->dk, C, c->dk + c->pad),
                         .v = heads(dqkv + 2 * qk, n, c->nv, c->dv, C, c->dv + c->pad), .g = dg, .beta = db, .state = ds,
                         .out = heads(dout, n, c->nv, c->dv, vd, c->dv), .capture = c->capture ? dcap : NULL,
                         .capture_type = c->cap, .head_map = c->map, .q_scale = 0.0f};
        bcheck(&b, c->chunked ? be->ops->gdn_chunked(be, &a) : be->ops->gdn_recurrent(be, &a), "gdn");
    }
    bget(&b, state, ds, hs * sizeof(float));
    bget(&b, out + t0 * vd, dout, (size_t)(n * vd) * sizeof(float));
    if (c->capture) bget(&b, (char *)cap + (size_t)t0 * hs * celem, dcap, (size_t)n * hs * celem);
    bfree(&b);
    if (b.bad) snprintf(err, errcap, "%s", b.err);
    return !b.bad;
}

static void cap_to_f32(const gdn_case *c, const void *cap, float *f, size_t n) {
    if (c->cap == DF_STATE_F16) df_fp16_to_f32_row(cap, f, n);
    else memcpy(f, cap, n * sizeof(float));
}

/* The largest of the errors of out, the final state and the capture (rel_err each). */
static double gdn_err(const gdn_case *c, const float *out, const float *ref_out, const float *st, const float *ref_st,
                      const void *cap, const void *ref_cap) {
    const size_t hs = (size_t)(c->nv * c->dk * c->dv), ncap = (size_t)c->n_tok * hs;
    double e = rel_err(out, ref_out, (size_t)(c->n_tok * c->nv * c->dv));
    const double es = rel_err(st, ref_st, hs);
    if (es > e) e = es;
    if (c->capture) {
        float *f0 = malloc(ncap * sizeof(float)), *f1 = malloc(ncap * sizeof(float));
        cap_to_f32(c, ref_cap, f0, ncap);
        cap_to_f32(c, cap, f1, ncap);
        const double ec = rel_err(f1, f0, ncap);
        if (ec > e) e = ec;
        free(f0);
        free(f1);
    }
    return e;
}

/* Tolerances, as max |x - ref| / max |ref| over out, the final state and the capture:
 * - f32: both sides compute in float32 (the CUDA chunked form's tensor-core products split
 *   each operand into two TF32 halves: ~2^-21 per product); they differ in summation order,
 *   in where the chunked form's rounding falls (the CPU measured its chunked against its
 *   recurrent form at <= 6e-7 of the scale) and, for chunked vs recurrent, in the algebra.
 *   Over <= 1024 tokens of carried state with decays <= e^-0.01 that stays ~1e-6; 1e-4 leaves
 *   room while a wrong index (O(1)), a dropped chunk or token, or a plain TF32 product
 *   (2^-11 per operand: ~1e-3) fails.
 * - f16 capture: one f16 ulp is 2^-11 of a value; states that differ in their last f32
 *   bits can round to neighbouring halves, up to ~1e-3 of the largest value: 2e-3. */
static double gdn_tol(const gdn_case *c) { return c->capture && c->cap == DF_STATE_F16 ? 2e-3 : 1e-4; }

static void check_gdn(gdn_case c) {
    char op[64], shape[96], err[512] = "";
    snprintf(op, sizeof op, "%s%s", c.chunked ? "gdn_chunked" : "gdn_recurrent",
             c.capture ? (c.cap == DF_STATE_F16 ? " cap f16" : " cap f32") : "");
    snprintf(shape, sizeof shape, "%lld tok, %lld/%lld heads %lldx%lld %s%s%s", (long long)c.n_tok, (long long)c.nk,
             (long long)c.nv, (long long)c.dk, (long long)c.dv, c.map == DF_GDN_HEADS_TILED ? "tiled" : "grouped",
             c.pad ? " pad" : "", c.split ? " 2 calls" : "");
    gdn_data d;
    make_gdn(&c, &d);
    const size_t hs = (size_t)(c.nv * c.dk * c.dv), vd = (size_t)(c.nv * c.dv), celem = c.cap == DF_STATE_F16 ? 2 : 4;
    const size_t ncap = (size_t)c.n_tok * hs;
    /* [0] CPU, same op; [1] CUDA; [2] CPU recurrent (chunked cases) */
    float *state[3], *out[3];
    void *cap[3];
    for (int k = 0; k < 3; k++) {
        state[k] = malloc(hs * sizeof(float));
        memcpy(state[k], d.state, hs * sizeof(float));
        out[k] = fzero((size_t)c.n_tok * vd);
        cap[k] = calloc(c.capture ? ncap : 1, celem);
    }
    bool ok = run_gdn(g_cpu, &c, &d, 0, c.n_tok, state[0], out[0], cap[0], err, sizeof err);
    if (ok && c.split > 0 && c.split < c.n_tok)
        ok = run_gdn(g_cuda, &c, &d, 0, c.split, state[1], out[1], cap[1], err, sizeof err) &&
             run_gdn(g_cuda, &c, &d, c.split, c.n_tok - c.split, state[1], out[1], cap[1], err, sizeof err);
    else if (ok) ok = run_gdn(g_cuda, &c, &d, 0, c.n_tok, state[1], out[1], cap[1], err, sizeof err);
    if (!ok) row_error(op, shape, err);
    else {
        const double e = gdn_err(&c, out[1], out[0], state[1], state[0], cap[1], cap[0]), tol = gdn_tol(&c);
        row(op, shape, e, -1, tol, e <= tol);
    }
    /* the chunked form against the CPU recurrence as well: the CPU reference of the same
     * op could share a mistake of the chunked algebra; the recurrence is the definition */
    if (ok && c.chunked) {
        gdn_case r = c;
        r.chunked = false;
        char op2[80];
        snprintf(op2, sizeof op2, "%s vs recur", op);
        if (!run_gdn(g_cpu, &r, &d, 0, c.n_tok, state[2], out[2], cap[2], err, sizeof err)) row_error(op2, shape, err);
        else {
            const double e = gdn_err(&c, out[1], out[2], state[1], state[2], cap[1], cap[2]), tol = gdn_tol(&c);
            row(op2, shape, e, -1, tol, e <= tol);
        }
    }
    /* batch invariance: the same tokens one call each give the same bits */
    if (ok && c.n_tok > 1 && !c.chunked) {
        float *s1 = malloc(hs * sizeof(float)), *o1 = fzero((size_t)c.n_tok * vd);
        void *c1 = calloc(ncap, celem);
        memcpy(s1, d.state, hs * sizeof(float));
        for (int64_t t = 0; t < c.n_tok && ok; t++) ok = run_gdn(g_cuda, &c, &d, t, 1, s1, o1, c1, err, sizeof err);
        char shape2[96];
        snprintf(shape2, sizeof shape2, "%lld tok vs 1 at a time", (long long)c.n_tok);
        if (!ok) row_error(op, shape2, err);
        else {
            long long diff = count_diff(o1, out[1], (size_t)c.n_tok * vd * sizeof(float), sizeof(float)) +
                             count_diff(s1, state[1], hs * sizeof(float), sizeof(float));
            if (c.capture) diff += count_diff(c1, cap[1], ncap * celem, celem);
            row_bitwise(op, shape2, diff == 0, diff);
        }
        free(s1);
        free(o1);
        free(c1);
    }
    for (int k = 0; k < 3; k++) {
        free(state[k]);
        free(out[k]);
        free(cap[k]);
    }
    free_gdn(&d);
}

/* The rollback's starting-state arguments on the device: a call from state_in into a state
 * buffer of garbage, saving the start to state_save, against the same call in place from the
 * same start; bitwise (the same kernel either way). */
static void check_gdn_state_args(gdn_case c) {
    char shape[96], err[512] = "";
    snprintf(shape, sizeof shape, "%lld tok, %lldx%lld, state_in + state_save%s", (long long)c.n_tok,
             (long long)c.dk, (long long)c.dv, c.chunked ? " (chunked op)" : "");
    const char *op = c.chunked ? "gdn_chunked" : "gdn_recurrent";
    gdn_data d;
    make_gdn(&c, &d);
    const size_t hs = (size_t)(c.nv * c.dk * c.dv), no = (size_t)(c.n_tok * c.nv * c.dv);
    const int64_t C = gdn_row(&c), qk = c.nk * (c.dk + c.pad);
    float *ref_st = malloc(hs * sizeof(float)), *st = malloc(hs * sizeof(float)), *save = malloc(hs * sizeof(float));
    float *in_after = malloc(hs * sizeof(float)), *ref_out = malloc(no * sizeof(float)), *out = malloc(no * sizeof(float));
    float *junk = malloc(hs * sizeof(float));
    for (size_t i = 0; i < hs; i++) junk[i] = 1e30f;
    bset b = {.be = g_cuda};
    float *dqkv = bput(&b, d.qkv, (size_t)(c.n_tok * C) * sizeof(float));
    float *dg = bput(&b, d.g, (size_t)(c.n_tok * c.nv) * sizeof(float));
    float *db = bput(&b, d.beta, (size_t)(c.n_tok * c.nv) * sizeof(float));
    float *ds_ref = bput(&b, d.state, hs * sizeof(float)), *ds_in = bput(&b, d.state, hs * sizeof(float));
    float *ds = bput(&b, junk, hs * sizeof(float)), *dsave = bput(&b, junk, hs * sizeof(float));
    float *dout_ref = bput(&b, NULL, no * sizeof(float)), *dout = bput(&b, NULL, no * sizeof(float));
    if (!b.bad) {
        df_gdn_args a = {.q = heads(dqkv, c.n_tok, c.nk, c.dk, C, c.dk + c.pad),
                         .k = heads(dqkv + qk, c.n_tok, c.nk, c.dk, C, c.dk + c.pad),
                         .v = heads(dqkv + 2 * qk, c.n_tok, c.nv, c.dv, C, c.dv + c.pad), .g = dg, .beta = db,
                         .state = ds_ref, .out = heads(dout_ref, c.n_tok, c.nv, c.dv, c.nv * c.dv, c.dv),
                         .head_map = c.map};
        df_backend *be = g_cuda;
        bcheck(&b, c.chunked ? be->ops->gdn_chunked(be, &a) : be->ops->gdn_recurrent(be, &a), "gdn");
        a.state = ds;
        a.state_in = ds_in;
        a.state_save = dsave;
        a.out = heads(dout, c.n_tok, c.nv, c.dv, c.nv * c.dv, c.dv);
        bcheck(&b, c.chunked ? be->ops->gdn_chunked(be, &a) : be->ops->gdn_recurrent(be, &a), "gdn state_in");
    }
    bget(&b, ref_st, ds_ref, hs * sizeof(float));
    bget(&b, st, ds, hs * sizeof(float));
    bget(&b, save, dsave, hs * sizeof(float));
    bget(&b, in_after, ds_in, hs * sizeof(float));
    bget(&b, ref_out, dout_ref, no * sizeof(float));
    bget(&b, out, dout, no * sizeof(float));
    bfree(&b);
    if (b.bad) {
        snprintf(err, sizeof err, "%s", b.err);
        row_error(op, shape, err);
    } else {
        const long long diff = count_diff(st, ref_st, hs * sizeof(float), sizeof(float)) +
                               count_diff(out, ref_out, no * sizeof(float), sizeof(float)) +
                               count_diff(save, d.state, hs * sizeof(float), sizeof(float)) +
                               count_diff(in_after, d.state, hs * sizeof(float), sizeof(float));
        row_bitwise(op, shape, diff == 0, diff);
    }
    free(ref_st); free(st); free(save); free(in_after); free(ref_out); free(out); free(junk);
    free_gdn(&d);
}

/* ---- bad input is refused with a message, not a crash ---- */

static void check_errors(void) {
    df_backend *be = g_cuda;
    int refused = 0, total = 0;
    float *buf = NULL;
    if (be->ops->alloc(be, 4096, (void **)&buf) != DF_OK) {
        row_error("bad arguments", "refused with a message", df_last_error());
        return;
    }
    df_weight host = {.type = DF_TYPE_IQ2_XXS, .ne = {256, 4, 1, 1}, .data = buf, .size = 66 * 4, .name = "w"}, bound;
    total++, refused += be->ops->bind_weight(be, &host, &bound) == DF_ERR_UNSUPPORTED;
    df_weight fw = {.type = DF_TYPE_F32, .ne = {16, 16, 1, 1}, .data = buf, .size = 1024, .name = "w"};
    total++, refused += be->ops->matmul(be, buf, 0, &fw, buf) == DF_ERR_INVALID;
    total++, refused += be->ops->rmsnorm(be, buf, 4, buf, 4, 3, 8, NULL, 1e-6f) == DF_ERR_INVALID;
    df_heads h = heads(buf, 2, 2, 8, 4, 8);
    total++, refused += be->ops->l2norm_heads(be, &h, 1e-6f) == DF_ERR_INVALID;
    total++, refused += be->ops->conv1d_silu(be, buf, 8, 2, 8, buf, 100, buf, buf, 8, NULL) == DF_ERR_INVALID;
    total++, refused += be->ops->argmax_rows(be, buf, 2, 10, 5, (int32_t *)buf) == DF_ERR_INVALID;
    total++, refused += be->ops->state_to_f32(be, buf, buf, (df_state_type)7, 4) == DF_ERR_INVALID;
    be->ops->free(be, buf);
    char shape[64];
    snprintf(shape, sizeof shape, "%d bad calls", total);
    printf("%-28s %-34s %10d %10s %9s  %s\n", "bad arguments", shape, refused, "-", "-", refused == total ? "PASS" : "FAIL");
    g_rows++;
    if (refused != total) g_fail++;
}

/* ---- --bench: time per call of the ops at the shapes of a Qwen3.5-0.8B layer ---- */

#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wall time per call over `reps` back-to-back calls ended by one sync: the GPU time of the
 * op when it is longer than a launch, the host's launch cost otherwise. */
#define TIME_OP(label, bytes, CALL)                                                         \
    do {                                                                                    \
        df_status st_ = DF_OK;                                                              \
        for (int r_ = 0; r_ < 3 && st_ == DF_OK; r_++) st_ = (CALL);                        \
        if (st_ == DF_OK) st_ = be->ops->sync(be);                                          \
        const double t0_ = now_s();                                                         \
        for (int r_ = 0; r_ < reps && st_ == DF_OK; r_++) st_ = (CALL);                     \
        if (st_ == DF_OK) st_ = be->ops->sync(be);                                          \
        const double us_ = (now_s() - t0_) / reps * 1e6;                                    \
        if (st_ != DF_OK) printf("%-44s error: %s\n", label, df_last_error());              \
        else if ((bytes) > 0) printf("%-44s %9.1f us %8.1f GB/s\n", label, us_, (double)(bytes) / us_ * 1e-3); \
        else printf("%-44s %9.1f us\n", label, us_);                                       \
    } while (0)

/* ---- --bench, the Qwen3.6-27B shapes (hidden 5120, FFN 17408, vocab 248320; 64 layers, 48 of
 * them Gated DeltaNet, 16 attention with 24 / 4 heads of 256), types as llama.cpp's Q4_K_M
 * recipe gives them (src/convert/quant_recipe.c): Q4_K, with Q6_K for the LM head and for about
 * half of ffn_down and of attn_qkv / attn_v (use_more_bits). ----
 * Each matrix is bound several times over (>= 512 MiB in all) and the calls rotate through
 * the copies, so that no call finds its weights in the 50 MB L2, as in a real forward. GB/s
 * counts weight bytes at 1 token; the copy bandwidth (device-to-device, bytes read + written)
 * is measured in the same run. "per token" weighs each shape by its calls per forward. */

static double time_calls(df_backend *be, const df_weight *ws, int nw, const float *x, int64_t n, float *y, int reps) {
    df_status st = DF_OK;
    for (int r = 0; r < 3 && st == DF_OK; r++) st = be->ops->matmul(be, x, n, &ws[r % nw], y);
    if (st == DF_OK) st = be->ops->sync(be);
    const double t0 = now_s();
    for (int r = 0; r < reps && st == DF_OK; r++) st = be->ops->matmul(be, x, n, &ws[r % nw], y);
    if (st == DF_OK) st = be->ops->sync(be);
    if (st != DF_OK) {
        printf("matmul error: %s\n", df_last_error());
        return -1;
    }
    return (now_s() - t0) / reps * 1e6;
}

static double copy_bandwidth(df_backend *be) {
    const size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    double gbs = -1;
    if (be->ops->alloc(be, bytes, &a) == DF_OK && be->ops->alloc(be, bytes, &b) == DF_OK) {
        df_status st = be->ops->copy(be, b, a, bytes);
        if (st == DF_OK) st = be->ops->sync(be);
        const double t0 = now_s();
        for (int r = 0; r < 10 && st == DF_OK; r++) st = be->ops->copy(be, r % 2 ? a : b, r % 2 ? b : a, bytes);
        if (st == DF_OK) st = be->ops->sync(be);
        if (st == DF_OK) gbs = 2.0 * (double)bytes * 10 / (now_s() - t0) * 1e-9;
    }
    be->ops->free(be, a);
    be->ops->free(be, b);
    return gbs;
}

static void bench_27b(float *x, float *y) {
    df_backend *be = g_cuda;
    {
        float *h = rnd((size_t)16 * 17408, -1, 1); /* fresh activations: the ops above wrote x */
        be->ops->upload(be, x, h, (size_t)16 * 17408 * sizeof(float));
        free(h);
    }
    const double bw = copy_bandwidth(be);
    printf("\n---- Qwen3.6-27B shapes, Q4_K_M types (copy bandwidth %.0f GB/s, read + write) ----\n", bw);
    printf("%-28s %8s %9s %9s %9s %9s %7s %6s %6s\n", "matmul", "MB", "n=1 us", "n=8 us", "n=16 us", "GB/s@1",
           "%copy", "16/1", "calls");
    static const struct { df_type t; int64_t n_in, n_out; int calls; const char *what; } mm[] = {
        {DF_TYPE_Q4_K, 5120, 17408, 128, "ffn gate, up"},      {DF_TYPE_Q4_K, 17408, 5120, 32, "ffn down q4_K"},
        {DF_TYPE_Q6_K, 17408, 5120, 32, "ffn down q6_K"},      {DF_TYPE_Q4_K, 5120, 10240, 24, "gdn qkv q4_K"},
        {DF_TYPE_Q6_K, 5120, 10240, 24, "gdn qkv q6_K"},       {DF_TYPE_Q4_K, 5120, 6144, 48, "gdn z"},
        {DF_TYPE_Q4_K, 6144, 5120, 64, "gdn out, attn out"},   {DF_TYPE_Q4_K, 5120, 12288, 16, "attn q + gate"},
        {DF_TYPE_Q4_K, 5120, 1024, 24, "attn k, v q4_K"},      {DF_TYPE_Q6_K, 5120, 1024, 8, "attn v q6_K"},
        {DF_TYPE_Q4_K, 5120, 48, 96, "gdn beta, alpha"},       {DF_TYPE_Q6_K, 5120, 248320, 1, "LM head"},
    };
    double tot_bytes = 0, tot_us[3] = {0, 0, 0};
    for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) {
        wmat w;
        if (!make_weight(mm[i].t, mm[i].n_in, 64, &w)) continue;
        size_t row;
        df_type_row_size(mm[i].t, mm[i].n_in, &row);
        const size_t bytes = row * (size_t)mm[i].n_out;
        /* 64 quantized random rows, repeated: the kernel's speed does not depend on the values */
        char *q = malloc(bytes);
        for (int64_t r = 0; r < mm[i].n_out; r++) memcpy(q + (size_t)r * row, (char *)w.q + (size_t)(r % 64) * row, row);
        df_weight host = {.type = mm[i].t, .ne = {mm[i].n_in, mm[i].n_out, 1, 1}, .data = q, .size = bytes, .name = "w"};
        df_weight ws[8];
        int nw = 0;
        const size_t want = (size_t)512 << 20;
        while (nw < 8 && (nw == 0 || (size_t)nw * bytes < want) && be->ops->bind_weight(be, &host, &ws[nw]) == DF_OK) nw++;
        free(q);
        free_weight(&w);
        if (!nw) continue;
        const int reps = bytes > ((size_t)256 << 20) ? 20 : 200;
        static const int64_t ns[3] = {1, 8, 16};
        double us[3];
        for (int j = 0; j < 3; j++) us[j] = time_calls(be, ws, nw, x, ns[j], y, reps);
        for (int k = 0; k < nw; k++) be->ops->unbind_weight(be, &ws[k]);
        const double gbs = (double)bytes / us[0] * 1e-3;
        printf("%-13s %5lld->%-6lld %8.1f %9.1f %9.1f %9.1f %9.0f %6.1f%% %6.2f %6d\n", mm[i].what,
               (long long)mm[i].n_in, (long long)mm[i].n_out, (double)bytes / 1e6, us[0], us[1], us[2], gbs,
               bw > 0 ? 100.0 * gbs / bw : 0.0, us[2] / us[0], mm[i].calls);
        tot_bytes += (double)bytes * mm[i].calls;
        for (int j = 0; j < 3; j++) tot_us[j] += us[j] * mm[i].calls;
    }
    printf("per token: %.2f GB of matmul weights; %.2f ms at 1 token (%.0f GB/s, %.1f%% of copy), "
           "%.2f ms at 8, %.2f ms at 16 (16/1 = %.2f)\n",
           tot_bytes * 1e-9, tot_us[0] * 1e-3, tot_bytes / tot_us[0] * 1e-3,
           bw > 0 ? 100.0 * tot_bytes / tot_us[0] * 1e-3 / bw : 0.0, tot_us[1] * 1e-3, tot_us[2] * 1e-3,
           tot_us[2] / tot_us[0]);
}

/* A Qwen3.6-27B GDN layer's recurrence at prefill lengths (16 key / 48 value heads of 128,
 * no capture): the recurrent kernel against the chunked one, on random data (g < 0). */
static void bench_gdn_prefill(void) {
    df_backend *be = g_cuda;
    const int64_t NK = 16, NV = 48, D = 128, C = 2 * NK * D + NV * D, NMAX = 4096;
    printf("\n---- GDN, 27B layer (16/48 heads of 128), per call ----\n");
    float *qkv = NULL, *g = NULL, *beta = NULL, *state = NULL, *out = NULL;
    bool ok = be->ops->alloc(be, (size_t)(NMAX * C) * sizeof(float), (void **)&qkv) == DF_OK &&
              be->ops->alloc(be, (size_t)(NMAX * NV) * sizeof(float), (void **)&g) == DF_OK &&
              be->ops->alloc(be, (size_t)(NMAX * NV) * sizeof(float), (void **)&beta) == DF_OK &&
              be->ops->alloc(be, (size_t)(NV * D * D) * sizeof(float), (void **)&state) == DF_OK &&
              be->ops->alloc(be, (size_t)(NMAX * NV * D) * sizeof(float), (void **)&out) == DF_OK;
    if (ok) {
        float *h = rnd((size_t)(NMAX * C), -0.1f, 0.1f);
        be->ops->upload(be, qkv, h, (size_t)(NMAX * C) * sizeof(float));
        free(h);
        h = rnd((size_t)(NMAX * NV), -1.0f, -0.01f);
        be->ops->upload(be, g, h, (size_t)(NMAX * NV) * sizeof(float));
        free(h);
        h = rnd((size_t)(NMAX * NV), 0.05f, 0.95f);
        be->ops->upload(be, beta, h, (size_t)(NMAX * NV) * sizeof(float));
        free(h);
        h = rnd((size_t)(NV * D * D), -0.5f, 0.5f);
        be->ops->upload(be, state, h, (size_t)(NV * D * D) * sizeof(float));
        free(h);
        /* 1 and 16 tokens: a decode step's and a verify's call (the recurrent kernel only) */
        static const int64_t lens[] = {1, 16, 1024, 4096};
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t n = lens[li];
            const int reps = n < 64 ? 200 : 5;
            df_gdn_args a = {.q = {qkv, n, NK, D, C, D}, .k = {qkv + NK * D, n, NK, D, C, D},
                             .v = {qkv + 2 * NK * D, n, NV, D, C, D}, .g = g, .beta = beta, .state = state,
                             .out = {out, n, NV, D, NV * D, D}, .head_map = DF_GDN_HEADS_TILED};
            char label[96];
            snprintf(label, sizeof label, "gdn_recurrent 16/48x128 n=%lld", (long long)n);
            TIME_OP(label, 0, be->ops->gdn_recurrent(be, &a));
            if (n < 64) continue;
            snprintf(label, sizeof label, "gdn_chunked   16/48x128 n=%lld", (long long)n);
            TIME_OP(label, 0, be->ops->gdn_chunked(be, &a));
        }
    } else {
        printf("gdn prefill bench: alloc: %s\n", df_last_error());
    }
    be->ops->free(be, qkv);
    be->ops->free(be, g);
    be->ops->free(be, beta);
    be->ops->free(be, state);
    be->ops->free(be, out);
}

static void bench(void) {
    df_backend *be = g_cuda;
    const int reps = 50;
    printf("\n---- per-call times (wall clock over %d calls, then sync) ----\n", reps);
    float *x, *y, *big;
    be->ops->alloc(be, (size_t)64 * 17408 * sizeof(float), (void **)&x);
    be->ops->alloc(be, (size_t)64 * 248320 * sizeof(float), (void **)&y);
    be->ops->alloc(be, (size_t)64 << 20, (void **)&big);
    {
        float *h = rnd((size_t)64 * 17408, -1, 1);
        be->ops->upload(be, x, h, (size_t)64 * 17408 * sizeof(float));
        free(h);
    }
    TIME_OP("add of 1 element (launch cost)", 0, be->ops->add(be, x, x, y, 1));
    static const struct { df_type t; int64_t n_in, n_out; const char *what; } mm[] = {
        {DF_TYPE_Q4_K, 1024, 6144, "gdn qkv"}, {DF_TYPE_Q4_K, 1024, 2048, "gdn z"},
        {DF_TYPE_Q4_K, 1024, 16, "gdn beta"}, {DF_TYPE_Q4_K, 2048, 1024, "gdn out"},
        {DF_TYPE_Q4_K, 1024, 3584, "ffn gate/up"}, {DF_TYPE_Q6_K, 3584, 1024, "ffn down (q6_K)"},
        {DF_TYPE_Q4_K, 3584, 1024, "ffn down (q4_K)"}, {DF_TYPE_Q6_K, 1024, 248320, "LM head (q6_K)"},
        {DF_TYPE_Q8_0, 1024, 6144, "q8_0 1024x6144"}, {DF_TYPE_F16, 1024, 6144, "f16 1024x6144"},
    };
    for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) {
        wmat w;
        if (!make_weight(mm[i].t, mm[i].n_in, mm[i].n_out, &w)) continue;
        df_weight host = {.type = w.type, .ne = {w.n_in, w.n_out, 1, 1}, .data = w.q, .size = w.bytes, .name = "w"}, bw;
        if (be->ops->bind_weight(be, &host, &bw) != DF_OK) continue;
        static const int64_t ns[] = {1, 2, 4, 8, 16, 32, 64};
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++) {
            char label[96];
            snprintf(label, sizeof label, "matmul %-6s %-16s n=%lld", df_type_name(mm[i].t), mm[i].what, (long long)ns[j]);
            TIME_OP(label, w.bytes, be->ops->matmul(be, x, ns[j], &bw, y));
        }
        be->ops->unbind_weight(be, &bw);
        free_weight(&w);
    }
    /* a GDN layer's recurrence, attention over 300 rows, the conv, norms, argmax */
    const int64_t NV = 16, D = 128, C = 2 * 16 * 128 + 16 * 128;
    float *qkv = x, *g = y, *beta = y + 1024, *state = big, *out = y + 4096;
    void *cap = big + NV * D * D;
    be->ops->upload(be, g, (float[16]){0}, 16);
    for (int64_t n = 1; n <= 16; n *= 4) {
        df_gdn_args a = {.q = {qkv, n, 16, D, C, D}, .k = {qkv + 16 * D, n, 16, D, C, D}, .v = {qkv + 32 * D, n, NV, D, C, D},
                         .g = g, .beta = beta, .state = state, .out = {out, n, NV, D, NV * D, D}, .capture = cap,
                         .capture_type = DF_STATE_F32, .head_map = DF_GDN_HEADS_TILED};
        char label[96];
        snprintf(label, sizeof label, "gdn_recurrent 16x128x128 capture n=%lld", (long long)n);
        TIME_OP(label, (double)NV * D * D * 4 * (2 + n), be->ops->gdn_recurrent(be, &a));
        snprintf(label, sizeof label, "conv1d_silu 6144 ch capture n=%lld", (long long)n);
        TIME_OP(label, 0, be->ops->conv1d_silu(be, qkv, C, n, C, x, 4, big, out, C, big + 100000));
        snprintf(label, sizeof label, "rmsnorm 1024 n=%lld", (long long)n);
        TIME_OP(label, 0, be->ops->rmsnorm(be, x, 1024, y, 1024, n, 1024, x, 1e-6f));
    }
    df_kv_cache kc = {big, big + (4 << 20), DF_KV_F16, 4096, 2, 256};
    for (int64_t n = 1; n <= 16; n *= 4)
        for (int64_t ctx = 300; ctx <= 4000; ctx *= 13) {
            df_attn_args a = {.q = {x, n, 8, 256, 8 * 512, 512}, .gate = NULL, .k_new = NULL, .v_new = NULL, .cache = &kc,
                              .pos0 = ctx, .causal = true, .out = {y, n, 8, 256, 8 * 256, 256}};
            char label[96];
            snprintf(label, sizeof label, "attention 8/2x256 f16 ctx %lld n=%lld", (long long)ctx, (long long)n);
            TIME_OP(label, 0, be->ops->attention(be, &a));
        }
    /* the 27B's attention layers (24 / 4 heads of 256): a decode step and a verify */
    for (int64_t n = 1; n <= 16; n *= 16)
        for (int64_t ctx = 300; ctx <= 4000; ctx = ctx * 10 / 3 + 1) {
            df_attn_args a = {.q = {x, n, 24, 256, 24 * 512, 512}, .gate = NULL, .k_new = NULL, .v_new = NULL,
                              .cache = &kc, .pos0 = ctx, .causal = true, .out = {y, n, 24, 256, 24 * 256, 256}};
            kc.n_kv_head = 4;
            char label[96];
            snprintf(label, sizeof label, "attention 24/4x256 f16 ctx %lld n=%lld", (long long)ctx, (long long)n);
            TIME_OP(label, 0, be->ops->attention(be, &a));
        }
    int32_t *am = (int32_t *)big;
    TIME_OP("argmax_rows 1 x 248320", 0, be->ops->argmax_rows(be, y, 1, 248320, 248320, am));
    TIME_OP("argmax_rows 16 x 248320", 0, be->ops->argmax_rows(be, y, 16, 248320, 248320, am));
    bench_27b(x, y);
    bench_gdn_prefill();
    be->ops->free(be, x);
    be->ops->free(be, y);
    be->ops->free(be, big);
}

int main(int argc, char **argv) {
    /* The gdn_chunked rows test the chunked kernel itself: the op otherwise hands key heads of
     * 64 / 128 to the (faster) recurrent kernel, which has rows of its own. */
    setenv("DFLASH_CUDA_GDN_CHUNKED", "1", 0);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) g_quick = true;
        else if (!strcmp(argv[i], "--bench")) g_bench = true;
        else if (!strcmp(argv[i], "--bench-only")) g_bench = g_bench_only = true;
        else if (!strcmp(argv[i], "--bench-27b")) g_bench = g_bench_only = g_bench_27b = true;
        else if (!strcmp(argv[i], "--bench-gdn")) g_bench = g_bench_only = g_bench_gdn = true;
        else {
            fprintf(stderr, "usage: cuda_ops_check [--quick] [--bench | --bench-only | --bench-27b | --bench-gdn]\n");
            return 2;
        }
    }
    df_rng_seed(&g_rng, 20261123);
    if (df_backend_cpu_create(0, &g_cpu) != DF_OK) {
        fprintf(stderr, "cuda_ops_check: cpu backend: %s\n", df_last_error());
        return 1;
    }
    if (df_backend_cuda_create(0, &g_cuda) != DF_OK) {
        fprintf(stderr, "cuda_ops_check: %s\n", df_last_error());
        df_backend_destroy(g_cpu);
        return 1;
    }
    printf("cuda_ops_check on %s\n", df_backend_cuda_device_name(g_cuda));
    printf("%-28s %-34s %10s %10s %9s  %s\n", "op", "shape", "cuda err", "cpu err", "tol", "result");

    if (g_bench_only) {
        if (g_bench_gdn) {
            bench_gdn_prefill();
        } else if (g_bench_27b) {
            float *x = NULL, *y = NULL;
            if (g_cuda->ops->alloc(g_cuda, (size_t)16 * 17408 * sizeof(float), (void **)&x) == DF_OK &&
                g_cuda->ops->alloc(g_cuda, (size_t)16 * 248320 * sizeof(float), (void **)&y) == DF_OK)
                bench_27b(x, y);
            g_cuda->ops->free(g_cuda, x);
            g_cuda->ops->free(g_cuda, y);
        } else {
            bench();
        }
        df_backend_destroy(g_cuda);
        df_backend_destroy(g_cpu);
        return 0;
    }
    static const df_type types[] = {DF_TYPE_F32, DF_TYPE_F16, DF_TYPE_BF16, DF_TYPE_Q8_0, DF_TYPE_Q4_0,
                                    DF_TYPE_Q4_1, DF_TYPE_Q5_0, DF_TYPE_Q5_1, DF_TYPE_Q2_K, DF_TYPE_Q3_K,
                                    DF_TYPE_Q4_K, DF_TYPE_Q5_K, DF_TYPE_Q6_K};
    static const int64_t toks[] = {1, 2, 7, 16, 32, 64, 100};
    const size_t nt = sizeof types / sizeof types[0];
    for (size_t i = 0; i < nt; i++) {
        for (size_t j = 0; j < sizeof toks / sizeof toks[0]; j++) {
            if (g_quick && toks[j] != 1 && toks[j] != 16 && toks[j] != 100) continue;
            check_matmul(types[i], 512, 300, toks[j], 0);
        }
        check_matmul_invariance(types[i], 512, 300);
        check_get_rows(types[i], 512);
    }
    /* many rows (no K split), a K split 8 ways with several units per warp, rows of an odd
     * number of Q6_K blocks (2-byte aligned rows) and of partial int8 units (Q8_0 19 blocks,
     * Q4_0 25), a misaligned x, float rows not a multiple of 8 */
    check_matmul(DF_TYPE_Q4_K, 256, 5000, 16, 0);
    check_matmul(DF_TYPE_Q6_K, 256, 17000, 3, 0);
    check_matmul_invariance(DF_TYPE_Q6_K, 256, 17000);
    check_matmul(DF_TYPE_Q4_K, 4096, 320, 16, 0);
    check_matmul(DF_TYPE_Q6_K, 4096, 200, 9, 1);
    check_matmul_invariance(DF_TYPE_Q4_K, 4096, 320);
    check_matmul(DF_TYPE_Q6_K, 768, 77, 33, 0);
    check_matmul_invariance(DF_TYPE_Q6_K, 768, 77);
    check_matmul(DF_TYPE_Q8_0, 608, 45, 64, 0);
    check_matmul(DF_TYPE_Q4_0, 800, 45, 24, 1);
    check_matmul_invariance(DF_TYPE_Q8_0, 608, 45);
    check_matmul_many_cases();
    check_matmul(DF_TYPE_Q8_0, 512, 77, 5, 1);
    check_matmul(DF_TYPE_F32, 100, 33, 3, 0);
    check_matmul(DF_TYPE_F16, 100, 33, 70, 0);
    check_matmul(DF_TYPE_BF16, 36, 33, 9, 1);
    check_matmul(DF_TYPE_F32, 100, 33, 70, 0);
    check_get_rows(DF_TYPE_F16, 100);

    check_simple("rmsnorm", N_RMS, 37, 1024, 1e-6);
    check_simple("rmsnorm (no w, in place)", N_RMS_NOW, 5, 100, 1e-6);
    check_simple("rmsnorm_gated", N_GATED, 64, 128, 1e-6);
    check_simple("rmsnorm_heads", N_HEADS, 9, 96, 1e-6);
    check_simple("l2norm_heads", N_L2, 9, 384, 1e-6);
    check_simple("add", E_ADD, 7, 1000, 0.0);
    check_simple("swiglu", E_SWIGLU, 7, 1000, 1e-6);
    check_simple("gdn_gates", E_GATES, 16, 48, 1e-6);
    check_simple("state_to_f32 f16", E_STATE16, 4, 333, 0.0);
    check_simple("state_to_f32 f32", E_STATE32, 4, 333, 0.0);
    check_rope();
    check_argmax();

    check_kv_write(DF_KV_F16);
    check_kv_write(DF_KV_F32);
    const attn_case ac[] = {
        {1, 8, 2, 256, 64, 0, DF_KV_F16, true, true},
        {16, 8, 2, 256, 1200, 37, DF_KV_F16, true, true},
        {16, 8, 2, 256, 2048, 1500, DF_KV_F16, true, true},
        {7, 4, 2, 16, 300, 200, DF_KV_F32, true, false},
        {5, 6, 1, 64, 200, 100, DF_KV_F32, false, true},
        {100, 4, 2, 128, 800, 600, DF_KV_F16, true, true},
        {3, 2, 2, 48, 5000, 4900, DF_KV_F16, true, false},
        /* the grouped kernel (2 or more tokens; 2, 4, 6, 8 query heads per KV head): the 27B's
         * verify at 300 and 3,300 rows (split partials), 8 heads a group, head dim 64 */
        {16, 24, 4, 256, 400, 300, DF_KV_F16, true, true},
        {16, 24, 4, 256, 4200, 3300, DF_KV_F16, true, true},
        {9, 16, 2, 128, 600, 500, DF_KV_F32, true, false},
        {12, 4, 2, 64, 100, 50, DF_KV_F16, true, false},
    };
    for (size_t i = 0; i < sizeof ac / sizeof ac[0]; i++) check_attention(ac[i]);
    check_attention_window(36, 36, 16, 20, true, DF_KV_F16);
    check_attention_window(36, 100, 16, 20, true, DF_KV_F16);
    check_attention_window(320, 300, 16, 0, false, DF_KV_F32);
    check_attention_window(600, 600, 16, 0, true, DF_KV_F32);
    check_attention_window(2100, 5000, 16, 2048, true, DF_KV_F16);

    check_conv(1, 300, 4, true);
    check_conv(16, 6144, 4, true);
    check_conv(9, 50, 3, false);
    const gdn_case gc[] = {
        {1, 16, 16, 128, 128, DF_STATE_F32, DF_GDN_HEADS_TILED, true, false, 0, 0},
        {16, 16, 16, 128, 128, DF_STATE_F32, DF_GDN_HEADS_TILED, true, false, 0, 0},
        {16, 4, 12, 128, 128, DF_STATE_F16, DF_GDN_HEADS_TILED, true, false, 0, 0},
        {7, 2, 6, 64, 48, DF_STATE_F32, DF_GDN_HEADS_GROUPED, true, false, 0, 0},
        {5, 1, 3, 16, 16, DF_STATE_F32, DF_GDN_HEADS_GROUPED, false, false, 0, 0},
        {9, 2, 4, 200, 40, DF_STATE_F32, DF_GDN_HEADS_TILED, false, false, 0, 0},
        /* the kernels for d_k = 128 / 64: a 27B verify (no capture), several staged chunks of
         * 16 with a partial column block and padded heads, f16 capture at d_k 64 */
        {16, 16, 48, 128, 128, DF_STATE_F32, DF_GDN_HEADS_TILED, false, false, 0, 0},
        {40, 2, 6, 128, 100, DF_STATE_F32, DF_GDN_HEADS_GROUPED, false, false, 4, 0},
        {33, 4, 8, 64, 64, DF_STATE_F16, DF_GDN_HEADS_TILED, true, false, 0, 0},
        /* chunked (CUDA: 64-token chunks for d_k <= 128, 32 above; < 64 tokens go to the
         * recurrent kernel), each against the CPU chunked form and the CPU recurrence, state
         * carried in (random) and out */
        {64, 16, 48, 128, 128, DF_STATE_F32, DF_GDN_HEADS_TILED, false, true, 0, 0},    /* 27B layer, one chunk */
        {100, 2, 4, 128, 128, DF_STATE_F32, DF_GDN_HEADS_TILED, false, true, 0, 0},
        {257, 2, 6, 128, 128, DF_STATE_F32, DF_GDN_HEADS_GROUPED, true, true, 8, 0},    /* padded heads */
        {257, 2, 4, 128, 128, DF_STATE_F16, DF_GDN_HEADS_TILED, true, true, 0, 100},    /* state across 2 calls */
        {1024, 16, 48, 128, 128, DF_STATE_F32, DF_GDN_HEADS_TILED, false, true, 0, 0},  /* 27B prefill */
        {1024, 16, 32, 128, 128, DF_STATE_F32, DF_GDN_HEADS_GROUPED, false, true, 0, 500},
        {130, 1, 2, 256, 256, DF_STATE_F32, DF_GDN_HEADS_TILED, true, true, 0, 0},      /* widest heads */
        {200, 2, 4, 200, 40, DF_STATE_F16, DF_GDN_HEADS_GROUPED, true, true, 3, 0},     /* odd dims */
        {70, 1, 3, 16, 16, DF_STATE_F32, DF_GDN_HEADS_GROUPED, false, true, 0, 0},
        {9, 2, 4, 64, 48, DF_STATE_F32, DF_GDN_HEADS_TILED, true, true, 0, 0},          /* the fallback */
    };
    for (size_t i = 0; i < sizeof gc / sizeof gc[0]; i++) check_gdn(gc[i]);
    check_gdn_state_args((gdn_case){16, 16, 48, 128, 128, DF_STATE_F32, DF_GDN_HEADS_TILED, false, false, 0, 0});
    check_gdn_state_args((gdn_case){9, 2, 4, 200, 40, DF_STATE_F32, DF_GDN_HEADS_TILED, false, false, 0, 0});
    check_gdn_state_args((gdn_case){100, 2, 4, 128, 128, DF_STATE_F32, DF_GDN_HEADS_GROUPED, false, true, 0, 0});
    check_errors();

    if (g_bench) bench();
    printf("\ncuda_ops_check: %d of %d rows passed%s\n", g_rows - g_fail, g_rows, g_fail ? "" : " (all)");
    df_backend_destroy(g_cuda);
    df_backend_destroy(g_cpu);
    return g_fail ? 1 : 0;
}
