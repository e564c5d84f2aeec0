/* The CPU matmul's fast paths against the plain ones, bit for bit: Q8_0 weights packed for the
 * AVX-512 kernel (cpu_pack.c, quant/mdot_packed_avx512.c), several matrices in one call
 * (df_cpu_matmul_many), the AVX-512 activation quantizer, and the packed copies the CPU
 * backend makes when it binds weights. A fast path that changed one bit would break the
 * byte-identity of speculative and plain decoding, so every comparison here is exact. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dflash.h"
#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"
#include "base/alloc.h"
#include "base/rng.h"
#include "quant/blocks.h"
#include "quant/mdot.h"
#include "helpers/pools.h"

static void teardown(void) {
    test_pools_destroy();
    df_cpu_simd_set(df_cpu_simd_best());
}
TestSuite(cpu_packed, .init = test_pools_create, .fini = teardown);

static bool have_avx512(void) { return df_cpu_simd_best() >= DF_CPU_SIMD_AVX512; }

/* A [n_out][n_in] matrix of type t quantized from random normals of random row scales. */
static uint8_t *random_matrix(df_rng *rng, df_type t, int64_t n_in, int64_t n_out) {
    size_t row;
    cr_assert(df_type_row_size(t, n_in, &row));
    uint8_t *w = df_alloc_aligned(row * (size_t)n_out);
    float *x = malloc(sizeof(float) * (size_t)n_in);
    const df_type_traits *tr = df_type_get((uint32_t)t);
    for (int64_t r = 0; r < n_out; r++) {
        const float scale = expf(df_rng_normal(rng));
        for (int64_t i = 0; i < n_in; i++) x[i] = df_rng_normal(rng) * scale;
        tr->from_float(x, w + (size_t)r * row, n_in);
    }
    /* a few extreme quants: -128 is legal in files even if our quantizer never writes it */
    if (t == DF_TYPE_Q8_0) ((df_block_q8_0 *)w)[0].qs[3] = -128;
    free(x);
    return w;
}

static float *random_floats(df_rng *rng, size_t n) {
    float *x = df_alloc_aligned(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = df_rng_normal(rng) * expf(df_rng_normal(rng));
    return x;
}

/* Packed and unpacked weights give the same bits (Q8_0, and the K-quants whose packed
 * layout is the rows' own transposes), for row counts that leave partial tiles and odd tile
 * counts, every column count the kernels unroll differently, with one and two threads. */
static void packed_equals_unpacked(df_type type, const int64_t (*shapes)[2], size_t n_shapes) {
    cr_assert_eq(df_cpu_simd_set(DF_CPU_SIMD_AVX512), DF_OK);
    df_rng rng;
    df_rng_seed(&rng, 4242 + (uint64_t)type);
    for (size_t s = 0; s < n_shapes; s++) {
        const int64_t n_in = shapes[s][0], n_out = shapes[s][1], max_tok = 19;
        uint8_t *w = random_matrix(&rng, type, n_in, n_out);
        df_cpu_packed *pk = df_cpu_pack_weight(g_pool2, type, w, n_in, n_out);
        cr_assert_not_null(pk, "a %lld x %lld %s matrix was not packed", (long long)n_out, (long long)n_in,
                           df_type_name(type));
        float *x = random_floats(&rng, (size_t)(max_tok * n_in));
        float *y0 = df_alloc_aligned(sizeof(float) * (size_t)(max_tok * n_out));
        float *y1 = df_alloc_aligned(sizeof(float) * (size_t)(max_tok * n_out));
        const size_t ss = df_cpu_matmul_scratch_size(type, max_tok, n_in);
        void *scratch = df_alloc_aligned(ss);
        for (int64_t n_tok = 1; n_tok <= max_tok; n_tok++) {
            df_cpu_matmul_out plain = {.w = w, .wtype = type, .n_out = n_out, .y = y0};
            df_cpu_matmul_out packed = plain;
            packed.y = y1;
            packed.packed = pk;
            cr_assert_eq(df_cpu_matmul_many(g_pool1, x, n_tok, n_in, &plain, 1, scratch, ss), DF_OK);
            cr_assert_eq(df_cpu_matmul_many(n_tok % 2 ? g_pool2 : g_pool1, x, n_tok, n_in, &packed, 1, scratch, ss),
                         DF_OK);
            cr_assert(memcmp(y0, y1, sizeof(float) * (size_t)(n_tok * n_out)) == 0,
                      "packed %s differs: %lld x %lld, %lld tokens", df_type_name(type), (long long)n_out,
                      (long long)n_in, (long long)n_tok);
        }
        /* a non-zero reference value, so that the comparison above cannot pass on zeros */
        bool any = false;
        for (int64_t i = 0; i < n_out; i++) any |= y0[i] != 0.0f;
        cr_assert(any);
        df_cpu_packed_free(pk);
        df_free_aligned(w);
        df_free_aligned(x);
        df_free_aligned(y0);
        df_free_aligned(y1);
        df_free_aligned(scratch);
    }
}

Test(cpu_packed, q8_0_packed_equals_unpacked) {
    if (!have_avx512()) {
        cr_log_info("no AVX-512 here: nothing packed to compare");
        return;
    }
    const int64_t shapes[][2] = {{512, 48}, {96, 70}, {64, 16}, {1024, 33}, {32, 1}, {256, 97}};
    packed_equals_unpacked(DF_TYPE_Q8_0, shapes, sizeof shapes / sizeof shapes[0]);
}

Test(cpu_packed, k_quants_packed_equal_unpacked) {
    if (!have_avx512()) return;
    const int64_t shapes[][2] = {{512, 48}, {256, 70}, {768, 16}, {256, 1}, {1024, 33}};
    const df_type types[] = {DF_TYPE_Q4_K, DF_TYPE_Q5_K, DF_TYPE_Q6_K};
    for (size_t t = 0; t < 3; t++) packed_equals_unpacked(types[t], shapes, sizeof shapes / sizeof shapes[0]);
}

/* The packed kernel called directly on a row range that starts at a later tile (how a
 * matmul task calls it) equals the unpacked kernel on the same rows. */
Test(cpu_packed, q8_0_packed_kernel_row_ranges) {
    if (!have_avx512()) return;
    df_rng rng;
    df_rng_seed(&rng, 99);
    const df_mdot *k = df_mdot_get(DF_TYPE_Q8_0, DF_MDOT_AVX512);
    cr_assert(k && k->dot_packed && k->pack && k->packed_bytes);
    const int64_t n = 160, rows = 83;
    size_t row_bytes, tile, total, ab;
    cr_assert(df_type_row_size(DF_TYPE_Q8_0, n, &row_bytes));
    cr_assert(k->packed_bytes(rows, n, row_bytes, &tile, &total));
    cr_assert_eq(tile, (size_t)(n / 32) * 544);
    cr_assert_eq(total, tile * 6);
    uint8_t *w = random_matrix(&rng, DF_TYPE_Q8_0, n, rows);
    uint8_t *p = df_alloc_aligned(total);
    k->pack(w, row_bytes, rows, n, 0, 2, p); /* two calls, as two threads would */
    k->pack(w, row_bytes, rows, n, 2, 4, p);
    cr_assert(k->act_bytes(n, &ab));
    ab = (ab + 63) / 64 * 64;
    uint8_t *a = df_alloc_aligned(ab * 9);
    float *x = random_floats(&rng, (size_t)n);
    for (int c = 0; c < 9; c++) {
        for (int64_t i = 0; i < n; i++) x[i] = df_rng_normal(&rng);
        k->quantize(x, a + (size_t)c * ab, n);
    }
    float y0[9 * 83], y1[9 * 83];
    for (int nc = 1; nc <= 9; nc++)
        for (int64_t r0 = 0; r0 < rows; r0 += 16) {
            const int64_t nr = rows - r0;
            k->dot(w + (size_t)r0 * row_bytes, row_bytes, nr, a, ab, nc, n, y0, rows);
            k->dot_packed(p + (size_t)(r0 / 16) * tile, tile, nr, a, ab, nc, n, y1, rows);
            for (int c = 0; c < nc; c++)
                cr_assert(memcmp(y0 + c * rows, y1 + c * rows, sizeof(float) * (size_t)nr) == 0,
                          "rows %lld.. column %d of %d", (long long)r0, c, nc);
        }
    /* shapes it must refuse */
    cr_assert_not(k->packed_bytes(rows, 100, row_bytes, &tile, &total)); /* not whole blocks */
    cr_assert_not(k->packed_bytes(0, n, row_bytes, &tile, &total));
    cr_assert_not(k->packed_bytes(rows, n, (size_t)1 << 31, &tile, &total)); /* stride the kernel hands to AVX2 */
    df_free_aligned(w);
    df_free_aligned(p);
    df_free_aligned(a);
    df_free_aligned(x);
}

/* Only types with a packed layout are packed, and DFLASH_CPU_PACK=0 turns packing off. */
Test(cpu_packed, what_gets_packed) {
    df_rng rng;
    df_rng_seed(&rng, 5);
    uint8_t *w = random_matrix(&rng, DF_TYPE_Q5_0, 256, 16);
    cr_assert_null(df_cpu_pack_weight(g_pool1, DF_TYPE_Q5_0, w, 256, 16), "Q5_0 has no packed layout");
    cr_assert_null(df_cpu_pack_weight(g_pool1, DF_TYPE_Q8_0, NULL, 256, 16));
    df_free_aligned(w);
    if (!have_avx512()) return;
    w = random_matrix(&rng, DF_TYPE_Q8_0, 256, 16);
    df_cpu_packed *p = df_cpu_pack_weight(g_pool1, DF_TYPE_Q8_0, w, 256, 16);
    cr_assert_not_null(p);
    df_cpu_packed_free(p);
    cr_assert_null(df_cpu_pack_weight(g_pool1, DF_TYPE_Q8_0, w, 100, 16), "100 is not a whole number of blocks");
    setenv("DFLASH_CPU_PACK", "0", 1);
    cr_assert_null(df_cpu_pack_weight(g_pool1, DF_TYPE_Q8_0, w, 256, 16));
    unsetenv("DFLASH_CPU_PACK");
    df_free_aligned(w);
}

/* Several matrices in one call equal one call each, at every SIMD level: matrices that share
 * an activation layout (Q8_0 twice; Q4_K with Q6_K), and a mix that does not (Q8_0 and F16),
 * with the 32-token blocks of a prefill too. */
Test(cpu_packed, matmul_many_equals_separate_calls) {
    df_rng rng;
    df_rng_seed(&rng, 31);
    const struct {
        int n;
        df_type t[3];
        int64_t n_in;
    } groups[] = {
        {3, {DF_TYPE_Q8_0, DF_TYPE_Q8_0, DF_TYPE_Q8_0}, 512},
        {2, {DF_TYPE_Q4_K, DF_TYPE_Q6_K}, 512},
        {3, {DF_TYPE_Q8_0, DF_TYPE_F16, DF_TYPE_Q4_0}, 256},
    };
    const int64_t outs_n[3] = {40, 8, 129};
    for (int level = DF_CPU_SIMD_SCALAR; level <= (int)df_cpu_simd_best(); level++) {
        cr_assert_eq(df_cpu_simd_set((df_cpu_simd)level), DF_OK);
        for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
            const int64_t n_in = groups[g].n_in, toks[] = {1, 5, 16, 37};
            uint8_t *w[3];
            df_cpu_packed *pk[3];
            for (int i = 0; i < groups[g].n; i++) {
                w[i] = random_matrix(&rng, groups[g].t[i], n_in, outs_n[i]);
                pk[i] = df_cpu_pack_weight(g_pool2, groups[g].t[i], w[i], n_in, outs_n[i]);
            }
            for (size_t ti = 0; ti < 4; ti++) {
                const int64_t n_tok = toks[ti];
                float *x = random_floats(&rng, (size_t)(n_tok * n_in));
                df_cpu_matmul_out many[3];
                float *ya[3], *yb[3];
                size_t ss = 0;
                for (int i = 0; i < groups[g].n; i++) {
                    ya[i] = df_alloc_aligned(sizeof(float) * (size_t)(n_tok * outs_n[i]));
                    yb[i] = df_alloc_aligned(sizeof(float) * (size_t)(n_tok * outs_n[i]));
                    many[i] = (df_cpu_matmul_out){.w = w[i], .wtype = groups[g].t[i], .n_out = outs_n[i], .y = ya[i],
                                                  .packed = pk[i]};
                }
                ss = df_cpu_matmul_many_scratch_size(many, groups[g].n, n_tok, n_in);
                void *scratch = df_alloc_aligned(ss);
                cr_assert_eq(df_cpu_matmul_many(g_pool2, x, n_tok, n_in, many, groups[g].n, scratch, ss), DF_OK,
                             "%s", df_last_error());
                for (int i = 0; i < groups[g].n; i++) {
                    cr_assert_eq(df_cpu_matmul(g_pool1, x, n_tok, n_in, w[i], groups[g].t[i], outs_n[i], yb[i], scratch, ss),
                                 DF_OK);
                    cr_assert(memcmp(ya[i], yb[i], sizeof(float) * (size_t)(n_tok * outs_n[i])) == 0,
                              "level %d group %zu matrix %d (%s), %lld tokens", level, g, i,
                              df_type_name(groups[g].t[i]), (long long)n_tok);
                    df_free_aligned(ya[i]);
                    df_free_aligned(yb[i]);
                }
                df_free_aligned(scratch);
                df_free_aligned(x);
            }
            for (int i = 0; i < groups[g].n; i++) {
                df_cpu_packed_free(pk[i]);
                df_free_aligned(w[i]);
            }
        }
    }
    /* bad calls */
    float x[32] = {0}, y[32];
    df_cpu_matmul_out o = {.w = x, .wtype = DF_TYPE_F32, .n_out = 1, .y = y};
    cr_assert_eq(df_cpu_matmul_many(NULL, x, 1, 32, &o, 0, NULL, 0), DF_ERR_INVALID);
    cr_assert_eq(df_cpu_matmul_many(NULL, x, 1, 32, &o, DF_CPU_MATMUL_MANY_MAX + 1, NULL, 0), DF_ERR_INVALID);
    cr_assert_eq(df_cpu_matmul_many(NULL, NULL, 1, 32, &o, 1, NULL, 0), DF_ERR_INVALID);
    o.n_out = 0;
    cr_assert_eq(df_cpu_matmul_many(NULL, x, 1, 32, &o, 1, NULL, 0), DF_ERR_INVALID);
    o.n_out = 1;
    o.wtype = DF_TYPE_Q8_0;
    cr_assert_eq(df_cpu_matmul_many(NULL, x, 1, 32, &o, 1, NULL, 0), DF_ERR_INVALID, "no scratch for Q8_0");
}

/* The AVX-512 Q8M quantizer writes the bytes of the scalar definition (mdot_act.c), on data
 * with exact halves of the step, zeros, NaNs, infinities, tiny and huge scales, and a block
 * count that is not a multiple of 16 (the scales are computed 16 blocks at a time). */
Test(cpu_packed, q8m_avx512_quantizer_matches_scalar) {
    if (!have_avx512()) return;
    df_rng rng;
    df_rng_seed(&rng, 8);
    const int64_t n = 32 * 37;
    float *x = malloc(sizeof(float) * (size_t)n);
    size_t bytes;
    cr_assert(df_mdot_act_bytes_q8m(n, &bytes));
    uint8_t *ra = malloc(bytes), *fa = malloc(bytes);
    for (int trial = 0; trial < 300; trial++) {
        for (int64_t i = 0; i < n; i++) x[i] = df_rng_normal(&rng) * expf(3.0f * df_rng_normal(&rng));
        for (int64_t b = 0; b < n / 32; b++) {
            float *xb = x + b * 32;
            const int j = (int)df_rng_below(&rng, 32), k = (int)df_rng_below(&rng, 32);
            switch (df_rng_below(&rng, 9)) {
            case 0:
                xb[0] = 127.0f, xb[j] = 63.5f, xb[k] = -0.5f; /* step 1: exact halves */
                for (int e = 1; e < 32; e++)
                    if (e != j && e != k) xb[e] = (float)((int)df_rng_below(&rng, 253) - 126) * 0.5f;
                break;
            case 1: xb[j] = 9.0f, xb[k] = -9.0f; break;
            case 2: memset(xb, 0, sizeof(float) * 32); break;
            case 3: xb[j] = NAN; break;
            case 4: xb[j] = -INFINITY; break;
            case 5: xb[j] = 1e-30f, xb[k] = -1e-38f; for (int e = 0; e < 32; e++) if (e != j && e != k) xb[e] *= 1e-33f; break;
            case 6: xb[j] = 3e6f; break; /* a scale past the fp16 range */
            case 7: for (int e = 0; e < 32; e++) xb[e] = NAN; break;
            default: break;
            }
        }
        memset(ra, 0xa5, bytes);
        memset(fa, 0x5a, bytes);
        df_mdot_quant_q8m(x, ra, n);
        df_mdot_quant_q8m_avx512(x, fa, n);
        for (size_t i = 0; i < bytes; i++)
            cr_assert_eq(ra[i], fa[i], "trial %d: byte %zu is %u, the scalar quantizer wrote %u", trial, i, fa[i], ra[i]);
    }
    free(x);
    free(ra);
    free(fa);
}

/* Through the op table: a weight bound by the CPU backend (packed where it can be) gives
 * the matmul and matmul_many results of the plain kernel, and unbinding releases the copy
 * (the sanitizer build checks for the leak). */
Test(cpu_packed, backend_binds_packed_weights) {
    df_backend *be;
    cr_assert_eq(df_backend_cpu_create(2, &be), DF_OK);
    df_rng rng;
    df_rng_seed(&rng, 77);
    const int64_t n_in = 384, n_out[2] = {80, 35}, n_tok = 6;
    uint8_t *w[2];
    df_weight host[2], bound[2];
    size_t row;
    cr_assert(df_type_row_size(DF_TYPE_Q8_0, n_in, &row));
    for (int i = 0; i < 2; i++) {
        w[i] = random_matrix(&rng, DF_TYPE_Q8_0, n_in, n_out[i]);
        host[i] = (df_weight){.type = DF_TYPE_Q8_0, .ne = {n_in, n_out[i], 1, 1}, .data = w[i],
                              .size = row * (size_t)n_out[i], .name = i ? "w1" : "w0"};
        cr_assert_eq(be->ops->bind_weight(be, &host[i], &bound[i]), DF_OK);
        cr_assert_eq(bound[i].data, w[i], "the CPU binds weights in place");
        if (have_avx512() && !getenv("DFLASH_CPU_PACK")) cr_assert_not_null(bound[i].impl);
    }
    float *x = random_floats(&rng, (size_t)(n_tok * n_in));
    float *y[2], *ref[2];
    for (int i = 0; i < 2; i++) {
        y[i] = df_alloc_aligned(sizeof(float) * (size_t)(n_tok * n_out[i]));
        ref[i] = df_alloc_aligned(sizeof(float) * (size_t)(n_tok * n_out[i]));
        const size_t ss = df_cpu_matmul_scratch_size(DF_TYPE_Q8_0, n_tok, n_in);
        void *scratch = df_alloc_aligned(ss);
        cr_assert_eq(df_cpu_matmul(g_pool1, x, n_tok, n_in, w[i], DF_TYPE_Q8_0, n_out[i], ref[i], scratch, ss), DF_OK);
        df_free_aligned(scratch);
        cr_assert_eq(be->ops->matmul(be, x, n_tok, &bound[i], y[i]), DF_OK);
        cr_assert(memcmp(y[i], ref[i], sizeof(float) * (size_t)(n_tok * n_out[i])) == 0, "matmul of w%d", i);
    }
    cr_assert_not_null(be->ops->matmul_many);
    const df_weight *ws[2] = {&bound[0], &bound[1]};
    for (int i = 0; i < 2; i++) memset(y[i], 0, sizeof(float) * (size_t)(n_tok * n_out[i]));
    cr_assert_eq(be->ops->matmul_many(be, x, n_tok, 2, ws, y), DF_OK);
    for (int i = 0; i < 2; i++)
        cr_assert(memcmp(y[i], ref[i], sizeof(float) * (size_t)(n_tok * n_out[i])) == 0, "matmul_many, w%d", i);
    /* rows of different lengths cannot share x */
    df_weight odd = bound[1];
    odd.ne[0] = 256;
    const df_weight *bad[2] = {&bound[0], &odd};
    cr_assert_eq(be->ops->matmul_many(be, x, n_tok, 2, bad, y), DF_ERR_MISMATCH);
    cr_assert_eq(be->ops->matmul_many(be, x, n_tok, 0, bad, y), DF_ERR_INVALID);
    for (int i = 0; i < 2; i++) {
        be->ops->unbind_weight(be, &bound[i]);
        cr_assert_null(bound[i].impl);
        df_free_aligned(w[i]);
        df_free_aligned(y[i]);
        df_free_aligned(ref[i]);
    }
    df_free_aligned(x);
    df_backend_destroy(be);
}

/* End to end on the embedded pair (Q8_0: every matrix packed on an AVX-512 CPU): speculative
 * decoding at several block sizes writes exactly the tokens of plain AR decoding, with the
 * packed kernels serving one-token steps, verifies of 2..16 tokens and the drafter alike. */
typedef struct {
    int32_t tok[64];
    int n;
} token_list;

static int collect(void *user, int32_t token, const char *text, size_t len) {
    token_list *l = user;
    if (l->n < 64) l->tok[l->n++] = token;
    return 0;
}

static void generate(dflash_model *m, bool spec, int block, const char *prompt, token_list *out) {
    dflash_session_params sp = dflash_session_default_params();
    sp.n_ctx = 256;
    sp.no_spec = !spec;
    sp.block_size = block;
    dflash_session *s;
    cr_assert_eq(dflash_session_create(m, &sp, &s), 0, "%s", dflash_last_error());
    dflash_gen_params gp = dflash_gen_default_params();
    gp.n_predict = 64;
    gp.ignore_eos = true;
    out->n = 0;
    cr_assert_eq(dflash_generate_text(s, prompt, &gp, collect, out, NULL), 0, "%s", dflash_last_error());
    cr_assert_eq(out->n, 64);
    dflash_session_free(s);
}

Test(cpu_packed, embedded_pair_speculative_equals_ar) {
    dflash_model_params mp = dflash_model_default_params();
    mp.path = DFLASH_SOURCE_DIR "/models/dflash-code-25m-q8_0.gguf";
    mp.draft_path = DFLASH_SOURCE_DIR "/models/dflash-code-25m-drafter-q8_0.gguf";
    mp.n_threads = 2;
    dflash_model *m;
    cr_assert_eq(dflash_model_load(&mp, &m), 0, "%s", dflash_last_error());
    const char *prompts[] = {"def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
                             "import argparse\n\nparser = argparse.ArgumentParser("};
    const int blocks[] = {2, 5, 8, 16};
    for (int p = 0; p < 2; p++) {
        token_list ar, sp;
        generate(m, false, 0, prompts[p], &ar);
        for (int b = 0; b < 4; b++) {
            generate(m, true, blocks[b], prompts[p], &sp);
            cr_assert_arr_eq(sp.tok, ar.tok, sizeof ar.tok, "prompt %d, block %d: speculative differs from AR", p,
                             blocks[b]);
        }
    }
    dflash_model_free(m);
}
