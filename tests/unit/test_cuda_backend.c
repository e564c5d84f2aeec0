/* The CUDA backend, where there is one: a quick comparison with the CPU backend (matmul of
 * quantized and float weights, batch invariance of the matmul and of the GDN recurrence, a
 * norm, the device selection of the public API). On a machine without a GPU (CI), or in a
 * build without CUDA, every test is skipped with the reason; the full checks are
 * tests/gpu/cuda_ops_check.c and cuda_model_check.c, run by scripts/gpu-check.sh. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/rng.h"
#include "dflash.h"
#include "helpers/fixture_models.h"
#include "quant/types.h"

#ifdef DFLASH_HAVE_CUDA

static df_backend *g_cpu, *g_gpu;

/* Creates both backends, or skips the test with the reason there is no GPU. */
static void need_gpu(void) {
    if (df_backend_cuda_create(0, &g_gpu) != DF_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", df_last_error());
        cr_skip_test("%s", why); /* "no CUDA device: ..." on a machine without a GPU */
    }
    cr_assert_eq(df_backend_cpu_create(2, &g_cpu), DF_OK, "%s", df_last_error());
}

static void done(void) {
    df_backend_destroy(g_gpu);
    df_backend_destroy(g_cpu);
}

static void *put(df_backend *be, const void *host, size_t bytes) {
    void *p;
    cr_assert_eq(be->ops->alloc(be, bytes, &p), DF_OK, "%s", df_last_error());
    if (host) cr_assert_eq(be->ops->upload(be, p, host, bytes), DF_OK, "%s", df_last_error());
    return p;
}

static void matmul_on(df_backend *be, df_type t, const void *wq, size_t wbytes, int64_t n_in, int64_t n_out,
                      const float *x, int64_t n_tok, float *y) {
    df_weight host = {.type = t, .ne = {n_in, n_out, 1, 1}, .data = wq, .size = wbytes, .name = "w"}, w;
    cr_assert_eq(be->ops->bind_weight(be, &host, &w), DF_OK, "%s", df_last_error());
    float *dx = put(be, x, (size_t)(n_tok * n_in) * sizeof(float));
    float *dy = put(be, NULL, (size_t)(n_tok * n_out) * sizeof(float));
    cr_assert_eq(be->ops->matmul(be, dx, n_tok, &w, dy), DF_OK, "%s", df_last_error());
    cr_assert_eq(be->ops->download(be, y, dy, (size_t)(n_tok * n_out) * sizeof(float)), DF_OK, "%s",
                 df_last_error());
    be->ops->free(be, dx);
    be->ops->free(be, dy);
    be->ops->unbind_weight(be, &w);
}

Test(cuda_backend, matmul_matches_cpu_and_is_batch_invariant) {
    need_gpu();
    static const df_type types[] = {DF_TYPE_F32, DF_TYPE_F16, DF_TYPE_Q8_0, DF_TYPE_Q4_K, DF_TYPE_Q6_K};
    const int64_t n_in = 512, n_out = 200, T = 16;
    df_rng rng;
    df_rng_seed(&rng, 5);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const df_type t = types[ti];
        const df_type_traits *tt = df_type_get_scalar((uint32_t)t);
        size_t row;
        cr_assert(df_type_row_size(t, n_in, &row));
        char *wq = malloc(row * (size_t)n_out);
        float *w = malloc((size_t)(n_in * n_out) * sizeof(float)), *x = malloc((size_t)(T * n_in) * sizeof(float));
        for (int64_t i = 0; i < n_in * n_out; i++) w[i] = df_rng_uniform(&rng, -1, 1);
        for (int64_t i = 0; i < T * n_in; i++) x[i] = df_rng_uniform(&rng, -1, 1);
        for (int64_t r = 0; r < n_out; r++) tt->from_float(w + r * n_in, wq + (size_t)r * row, n_in);
        /* reference: the dequantized weights in double */
        float *deq = malloc((size_t)(n_in * n_out) * sizeof(float));
        for (int64_t r = 0; r < n_out; r++) tt->to_float(wq + (size_t)r * row, deq + r * n_in, n_in);
        float *yg = malloc((size_t)(T * n_out) * sizeof(float)), *y1 = malloc((size_t)n_out * sizeof(float));
        matmul_on(g_gpu, t, wq, row * (size_t)n_out, n_in, n_out, x, T, yg);
        double num = 0, den = 0;
        for (int64_t k = 0; k < T; k++)
            for (int64_t o = 0; o < n_out; o++) {
                double ref = 0;
                for (int64_t i = 0; i < n_in; i++) ref += (double)deq[o * n_in + i] * x[k * n_in + i];
                num = fmax(num, fabs(ref - yg[k * n_out + o]));
                den = fmax(den, fabs(ref));
            }
        cr_expect(num / den < 2e-5, "%s: relative error %g", tt->name, num / den);
        /* token 9 alone gives the same bits as inside the 16-token call */
        matmul_on(g_gpu, t, wq, row * (size_t)n_out, n_in, n_out, x + 9 * n_in, 1, y1);
        cr_expect(!memcmp(y1, yg + 9 * n_out, (size_t)n_out * sizeof(float)), "%s: not batch-invariant", tt->name);
        free(wq); free(w); free(x); free(deq); free(yg); free(y1);
    }
    done();
}

Test(cuda_backend, gdn_verify_equals_steps) {
    need_gpu();
    const int64_t T = 8, NK = 2, NV = 4, D = 128, C = 2 * NK * D + NV * D, hs = NV * D * D;
    df_rng rng;
    df_rng_seed(&rng, 9);
    float *qkv = malloc((size_t)(T * C) * sizeof(float)), *g = malloc((size_t)(T * NV) * sizeof(float));
    float *beta = malloc((size_t)(T * NV) * sizeof(float)), *s0 = malloc((size_t)hs * sizeof(float));
    for (int64_t i = 0; i < T * C; i++) qkv[i] = df_rng_uniform(&rng, -0.2f, 0.2f);
    for (int64_t i = 0; i < T * NV; i++) {
        g[i] = df_rng_uniform(&rng, -1.0f, -0.05f);
        beta[i] = df_rng_uniform(&rng, 0.1f, 0.9f);
    }
    for (int64_t i = 0; i < hs; i++) s0[i] = df_rng_uniform(&rng, -0.5f, 0.5f);
    float *out[3], *st[3];
    for (int run = 0; run < 3; run++) {
        /* run 0: CPU, all tokens; run 1: GPU, all tokens; run 2: GPU, one token per call */
        df_backend *be = run == 0 ? g_cpu : g_gpu;
        float *dqkv = put(be, qkv, (size_t)(T * C) * sizeof(float)), *dg = put(be, g, (size_t)(T * NV) * sizeof(float));
        float *db = put(be, beta, (size_t)(T * NV) * sizeof(float)), *ds = put(be, s0, (size_t)hs * sizeof(float));
        float *dout = put(be, NULL, (size_t)(T * NV * D) * sizeof(float));
        const int64_t step = run == 2 ? 1 : T;
        for (int64_t t0 = 0; t0 < T; t0 += step) {
            float *base = dqkv + t0 * C;
            df_gdn_args a = {.q = {base, step, NK, D, C, D}, .k = {base + NK * D, step, NK, D, C, D},
                             .v = {base + 2 * NK * D, step, NV, D, C, D}, .g = dg + t0 * NV, .beta = db + t0 * NV,
                             .state = ds, .out = {dout + t0 * NV * D, step, NV, D, NV * D, D},
                             .head_map = DF_GDN_HEADS_TILED};
            cr_assert_eq(be->ops->gdn_recurrent(be, &a), DF_OK, "%s", df_last_error());
        }
        out[run] = malloc((size_t)(T * NV * D) * sizeof(float));
        st[run] = malloc((size_t)hs * sizeof(float));
        cr_assert_eq(be->ops->download(be, out[run], dout, (size_t)(T * NV * D) * sizeof(float)), DF_OK);
        cr_assert_eq(be->ops->download(be, st[run], ds, (size_t)hs * sizeof(float)), DF_OK);
        void *bufs[] = {dqkv, dg, db, ds, dout};
        for (int i = 0; i < 5; i++) be->ops->free(be, bufs[i]);
    }
    double num = 0, den = 0;
    for (int64_t i = 0; i < T * NV * D; i++) {
        num = fmax(num, fabs((double)out[1][i] - out[0][i]));
        den = fmax(den, fabs((double)out[0][i]));
    }
    cr_expect(num / den < 1e-4, "gdn: cuda vs cpu relative error %g", num / den);
    cr_expect(!memcmp(out[1], out[2], (size_t)(T * NV * D) * sizeof(float)), "gdn outputs: batch of 8 != 8 steps");
    cr_expect(!memcmp(st[1], st[2], (size_t)hs * sizeof(float)), "gdn state: batch of 8 != 8 steps");
    for (int run = 0; run < 3; run++) {
        free(out[run]);
        free(st[run]);
    }
    free(qkv); free(g); free(beta); free(s0);
    done();
}

Test(cuda_backend, rmsnorm_matches_cpu) {
    need_gpu();
    const int64_t R = 5, N = 1000;
    df_rng rng;
    df_rng_seed(&rng, 3);
    float *x = malloc((size_t)(R * N) * sizeof(float)), *w = malloc((size_t)N * sizeof(float));
    for (int64_t i = 0; i < R * N; i++) x[i] = df_rng_uniform(&rng, -4, 4);
    for (int64_t i = 0; i < N; i++) w[i] = df_rng_uniform(&rng, 0.5f, 1.5f);
    float *y[2];
    df_backend *bes[2] = {g_cpu, g_gpu};
    for (int k = 0; k < 2; k++) {
        df_backend *be = bes[k];
        float *dx = put(be, x, (size_t)(R * N) * sizeof(float)), *dw = put(be, w, (size_t)N * sizeof(float));
        cr_assert_eq(be->ops->rmsnorm(be, dx, N, dx, N, R, N, dw, 1e-6f), DF_OK, "%s", df_last_error());
        y[k] = malloc((size_t)(R * N) * sizeof(float));
        cr_assert_eq(be->ops->download(be, y[k], dx, (size_t)(R * N) * sizeof(float)), DF_OK);
        be->ops->free(be, dx);
        be->ops->free(be, dw);
    }
    for (int64_t i = 0; i < R * N; i++) cr_assert(fabsf(y[0][i] - y[1][i]) <= 1e-5f * (1 + fabsf(y[0][i])), "element %lld", (long long)i);
    free(x); free(w); free(y[0]); free(y[1]);
    done();
}

#else

Test(cuda_backend, not_built) { cr_skip_test("built without CUDA (nvcc not found or -DDFLASH_CUDA=OFF)"); }

#endif

/* Whatever the build: a device string that means nothing is refused with a message naming
 * it; "cuda" either loads (a GPU is there), or is refused saying why (no device, or a build
 * without CUDA). */
Test(cuda_backend, device_strings) {
    char gguf[1024];
    cr_assert_eq(test_fixture_gguf("tiny_a", "f32", gguf, sizeof gguf), 0, "dflash convert failed");
    dflash_model_params mp = dflash_model_default_params();
    mp.path = gguf;
    dflash_model *m = NULL;
    static const char *bad[] = {"tpu", "cuda:x", "cuda:-1", "cudax", "cuda:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mp.device = bad[i];
        cr_expect_neq(dflash_model_load(&mp, &m), 0, "device '%s' accepted", bad[i]);
        cr_expect_null(m);
        cr_expect(strstr(dflash_last_error(), bad[i]) != NULL, "message does not name '%s': %s", bad[i],
                  dflash_last_error());
    }
    mp.device = "cuda";
    if (dflash_model_load(&mp, &m) == 0) {
        cr_expect_eq(dflash_model_n_vocab(m), 384);
        dflash_model_free(m);
    } else {
#ifdef DFLASH_HAVE_CUDA
        cr_expect(strstr(dflash_last_error(), "CUDA") != NULL, "%s", dflash_last_error());
#else
        cr_expect(strstr(dflash_last_error(), "without CUDA") != NULL, "%s", dflash_last_error());
#endif
    }
    mp.device = NULL; /* the CPU */
    cr_assert_eq(dflash_model_load(&mp, &m), 0, "%s", dflash_last_error());
    dflash_model_free(m);
}
