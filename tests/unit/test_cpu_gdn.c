/* Gated DeltaNet: the recurrent form against a double-precision transcription of HF's
 * torch_recurrent_gated_delta_rule; the chunked form against the recurrent one (several
 * lengths around the chunk size, head counts with more value than key heads, both head
 * maps); the per-token state capture against running fewer tokens; the equivalence of the
 * GGUF (tiled) and HF (grouped) head orders under the converter's permutation. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "base/alloc.h"
#include "base/rng.h"
#include "helpers/pools.h"

TestSuite(cpu_gdn, .init = test_pools_create, .fini = test_pools_destroy);

static int simd_levels(df_cpu_simd out[2]) {
    out[0] = DF_CPU_SIMD_SCALAR;
    if (df_cpu_simd_best() >= DF_CPU_SIMD_AVX2) {
        out[1] = DF_CPU_SIMD_AVX2;
        return 2;
    }
    return 1;
}

/* One problem: inputs shaped as the conv output is ([n_tok][q | k | v] rows), gates, and an
 * initial state. */
typedef struct {
    int64_t n_tok, nk, nv, dk, dv;
    df_gdn_head_map map;
    float *qkv;  /* [n_tok][2 nk dk + nv dv] */
    float *g, *beta;
    float *state0; /* [nv][dk][dv] */
} gdn_problem;

static int64_t row_width(const gdn_problem *p) { return 2 * p->nk * p->dk + p->nv * p->dv; }

static void l2_normalize(float *x, int64_t n) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const double s = 1.0 / sqrt(ss + 1e-6);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] * s);
}

static void problem_init(gdn_problem *p, int64_t n_tok, int64_t nk, int64_t nv, int64_t dk, int64_t dv,
                         df_gdn_head_map map, uint64_t seed) {
    *p = (gdn_problem){n_tok, nk, nv, dk, dv, map, NULL, NULL, NULL, NULL};
    df_rng r;
    df_rng_seed(&r, seed);
    const int64_t w = row_width(p);
    p->qkv = malloc(sizeof(float) * (size_t)(n_tok * w));
    for (int64_t i = 0; i < n_tok * w; i++) p->qkv[i] = df_rng_normal(&r);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t h = 0; h < 2 * nk; h++) l2_normalize(p->qkv + t * w + h * dk, dk); /* q and k heads */
    p->g = malloc(sizeof(float) * (size_t)(n_tok * nv));
    p->beta = malloc(sizeof(float) * (size_t)(n_tok * nv));
    for (int64_t i = 0; i < n_tok * nv; i++) {
        /* mostly mild decay, sometimes a near-reset, as -exp(A_log) * softplus(.) produces */
        const float u = df_rng_uniform(&r, 0.0f, 1.0f);
        p->g[i] = u < 0.05f ? -df_rng_uniform(&r, 5.0f, 40.0f) : -df_rng_uniform(&r, 0.001f, 1.5f);
        p->beta[i] = df_rng_uniform(&r, 0.02f, 0.98f);
    }
    p->state0 = malloc(sizeof(float) * (size_t)(nv * dk * dv));
    for (int64_t i = 0; i < nv * dk * dv; i++) p->state0[i] = df_rng_normal(&r) * 0.3f;
}

static void problem_free(gdn_problem *p) {
    free(p->qkv);
    free(p->g);
    free(p->beta);
    free(p->state0);
}

/* Args over the first n_tok tokens of p starting at token t0, writing to out / state. */
static df_cpu_gdn_args problem_args(const gdn_problem *p, int64_t t0, int64_t n_tok, float *state, float *out,
                                    void *capture, df_state_type cap_type) {
    const int64_t w = row_width(p);
    float *base = p->qkv + t0 * w;
    df_cpu_gdn_args a = {
        .q = {base, n_tok, p->nk, p->dk, w, p->dk},
        .k = {base + p->nk * p->dk, n_tok, p->nk, p->dk, w, p->dk},
        .v = {base + 2 * p->nk * p->dk, n_tok, p->nv, p->dv, w, p->dv},
        .g = p->g + t0 * p->nv,
        .beta = p->beta + t0 * p->nv,
        .state = state,
        .out = df_cpu_heads_packed(out, n_tok, p->nv, p->dv),
        .capture = capture,
        .capture_type = cap_type,
        .head_map = p->map,
    };
    return a;
}

static float *state_copy(const gdn_problem *p) {
    float *s = malloc(sizeof(float) * (size_t)(p->nv * p->dk * p->dv));
    memcpy(s, p->state0, sizeof(float) * (size_t)(p->nv * p->dk * p->dv));
    return s;
}

/* HF's torch_recurrent_gated_delta_rule in double, with the head map spelled out. */
static void ref_recurrent(const gdn_problem *p, double *out, double *state) {
    const int64_t w = row_width(p), dk = p->dk, dv = p->dv, per = p->nv / p->nk;
    for (int64_t i = 0; i < p->nv * dk * dv; i++) state[i] = p->state0[i];
    double *kv = malloc(sizeof(double) * (size_t)dv);
    for (int64_t t = 0; t < p->n_tok; t++)
        for (int64_t h = 0; h < p->nv; h++) {
            const int64_t kh = p->map == DF_GDN_HEADS_TILED ? h % p->nk : h / per;
            const float *q = p->qkv + t * w + kh * dk, *k = p->qkv + t * w + p->nk * dk + kh * dk;
            const float *v = p->qkv + t * w + 2 * p->nk * dk + h * dv;
            double *S = state + h * dk * dv;
            const double decay = exp((double)p->g[t * p->nv + h]), beta = p->beta[t * p->nv + h];
            for (int64_t i = 0; i < dk * dv; i++) S[i] *= decay;
            for (int64_t j = 0; j < dv; j++) {
                kv[j] = 0.0;
                for (int64_t r = 0; r < dk; r++) kv[j] += S[r * dv + j] * k[r];
            }
            for (int64_t r = 0; r < dk; r++)
                for (int64_t j = 0; j < dv; j++) S[r * dv + j] += k[r] * (v[j] - kv[j]) * beta;
            const double scale = 1.0 / sqrt((double)dk);
            for (int64_t j = 0; j < dv; j++) {
                double o = 0.0;
                for (int64_t r = 0; r < dk; r++) o += S[r * dv + j] * q[r] * scale;
                out[(t * p->nv + h) * dv + j] = o;
            }
        }
    free(kv);
}

static double max_abs_d(const double *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static double max_abs_f(const float *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

/* max |a - b| / max |b|: the error relative to the tensor's scale */
static double rel_err_fd(const float *a, const double *b, size_t n) {
    double e = 0.0;
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - b[i]));
    return e / fmax(max_abs_d(b, n), 1e-30);
}

static double rel_err_ff(const float *a, const float *b, size_t n) {
    double e = 0.0;
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - (double)b[i]));
    return e / fmax(max_abs_f(b, n), 1e-30);
}

Test(cpu_gdn, recurrent_matches_reference) {
    const int64_t cfg[][5] = {{7, 1, 1, 16, 16}, {5, 2, 4, 32, 24}, {9, 2, 6, 128, 128}, {3, 3, 3, 20, 40}};
    df_cpu_simd levels[2];
    const int nl = simd_levels(levels);
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++)
        for (int map = 0; map < 2; map++) {
            gdn_problem p;
            problem_init(&p, cfg[c][0], cfg[c][1], cfg[c][2], cfg[c][3], cfg[c][4], (df_gdn_head_map)map, 30 + c);
            const size_t no = (size_t)(p.n_tok * p.nv * p.dv), ns = (size_t)(p.nv * p.dk * p.dv);
            double *ro = malloc(sizeof(double) * no), *rs = malloc(sizeof(double) * ns);
            ref_recurrent(&p, ro, rs);
            float *o_scalar = malloc(sizeof(float) * no);
            for (int l = 0; l < nl; l++) {
                cr_assert_eq(df_cpu_simd_set(levels[l]), DF_OK);
                float *s1 = state_copy(&p), *s2 = state_copy(&p);
                float *o1 = malloc(sizeof(float) * no), *o2 = malloc(sizeof(float) * no);
                df_cpu_gdn_args a1 = problem_args(&p, 0, p.n_tok, s1, o1, NULL, DF_STATE_F32);
                df_cpu_gdn_args a2 = problem_args(&p, 0, p.n_tok, s2, o2, NULL, DF_STATE_F32);
                cr_assert_eq(df_cpu_gdn_recurrent(g_pool1, &a1), DF_OK, "%s", df_last_error());
                cr_assert_eq(df_cpu_gdn_recurrent(g_pool2, &a2), DF_OK);
                cr_assert(memcmp(o1, o2, sizeof(float) * no) == 0 && memcmp(s1, s2, sizeof(float) * ns) == 0,
                          "pools of 1 and 2 threads disagree");
                const double eo = rel_err_fd(o1, ro, no), es = rel_err_fd(s1, rs, ns);
                cr_assert(eo < 2e-6 && es < 2e-6, "config %zu map %d %s: output error %.3g, state error %.3g",
                          c, map, df_cpu_simd_name(levels[l]), eo, es);
                /* the two SIMD levels agree with each other (to rounding, not bit for bit) */
                if (l == 0) memcpy(o_scalar, o1, sizeof(float) * no);
                else cr_assert(rel_err_ff(o1, o_scalar, no) < 1e-6, "scalar and avx2 disagree: %.3g", rel_err_ff(o1, o_scalar, no));
                free(s1); free(s2); free(o1); free(o2);
            }
            free(o_scalar);
            free(ro);
            free(rs);
            problem_free(&p);
        }
}

static void *chunked_scratch(df_pool *pool, const gdn_problem *p, size_t *size) {
    *size = df_cpu_gdn_chunked_scratch_size(pool, p->dk, p->dv);
    cr_assert(*size > 0);
    return df_alloc_aligned(*size);
}

/* The chunked form against the recurrent one, to 1e-5 of the tensors' scale (measured:
 * ~6e-7 at worst), and against the double-precision reference. */
Test(cpu_gdn, chunked_matches_recurrent) {
    const int64_t lens[] = {1, 5, 16, 63, 64, 65, 130, 200};
    const int64_t heads[][4] = {{1, 1, 16, 16}, {2, 4, 32, 24}, {2, 6, 64, 64}, {1, 2, 128, 128}};
    df_cpu_simd levels[2];
    const int nl = simd_levels(levels);
    double worst = 0.0;
    for (size_t hi = 0; hi < sizeof heads / sizeof heads[0]; hi++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t n_tok = lens[li];
            if (heads[hi][2] == 128 && n_tok > 65 && n_tok != 130) continue; /* keep ASan runs short */
            const df_gdn_head_map map = (li % 2) ? DF_GDN_HEADS_TILED : DF_GDN_HEADS_GROUPED;
            gdn_problem p;
            problem_init(&p, n_tok, heads[hi][0], heads[hi][1], heads[hi][2], heads[hi][3], map, 500 + hi * 31 + li);
            const size_t no = (size_t)(p.n_tok * p.nv * p.dv), ns = (size_t)(p.nv * p.dk * p.dv);
            double *ro = malloc(sizeof(double) * no), *rs = malloc(sizeof(double) * ns);
            ref_recurrent(&p, ro, rs);
            for (int l = 0; l < nl; l++) {
                cr_assert_eq(df_cpu_simd_set(levels[l]), DF_OK);
                float *sr = state_copy(&p), *sc1 = state_copy(&p), *sc2 = state_copy(&p);
                float *or_ = malloc(sizeof(float) * no), *oc1 = malloc(sizeof(float) * no), *oc2 = malloc(sizeof(float) * no);
                df_cpu_gdn_args ar = problem_args(&p, 0, n_tok, sr, or_, NULL, DF_STATE_F32);
                cr_assert_eq(df_cpu_gdn_recurrent(g_pool2, &ar), DF_OK);
                size_t ss1, ss2;
                void *scr1 = chunked_scratch(g_pool1, &p, &ss1), *scr2 = chunked_scratch(g_pool2, &p, &ss2);
                df_cpu_gdn_args a1 = problem_args(&p, 0, n_tok, sc1, oc1, NULL, DF_STATE_F32);
                df_cpu_gdn_args a2 = problem_args(&p, 0, n_tok, sc2, oc2, NULL, DF_STATE_F32);
                cr_assert_eq(df_cpu_gdn_chunked(g_pool1, &a1, scr1, ss1), DF_OK, "%s", df_last_error());
                cr_assert_eq(df_cpu_gdn_chunked(g_pool2, &a2, scr2, ss2), DF_OK, "%s", df_last_error());
                cr_assert(memcmp(oc1, oc2, sizeof(float) * no) == 0 && memcmp(sc1, sc2, sizeof(float) * ns) == 0,
                          "chunked: pools of 1 and 2 threads disagree");
                const double eo = rel_err_ff(oc1, or_, no), es = rel_err_ff(sc1, sr, ns);
                worst = fmax(worst, fmax(eo, es));
                cr_assert(eo <= 1e-5 && es <= 1e-5,
                          "n_tok %lld, heads %lld/%lld, dims %lld/%lld, %s: chunked vs recurrent output %.3g, state %.3g",
                          (long long)n_tok, (long long)p.nk, (long long)p.nv, (long long)p.dk, (long long)p.dv,
                          df_cpu_simd_name(levels[l]), eo, es);
                /* and it is as close to the exact recurrence as the step form is */
                const double ro_err = rel_err_fd(oc1, ro, no), rs_err = rel_err_fd(sc1, rs, ns);
                cr_assert(ro_err <= 2e-6 && rs_err <= 2e-6, "n_tok %lld: chunked vs reference output %.3g, state %.3g",
                          (long long)n_tok, ro_err, rs_err);
                free(sr); free(sc1); free(sc2); free(or_); free(oc1); free(oc2);
                df_free_aligned(scr1);
                df_free_aligned(scr2);
            }
            free(ro);
            free(rs);
            problem_free(&p);
        }
    cr_log_info("chunked vs recurrent: worst relative error %.3g", worst);
}

/* capture[t] = the state after token t = the state left by running tokens 0..t alone. */
Test(cpu_gdn, capture_is_state_after_each_token) {
    gdn_problem p;
    problem_init(&p, 19, 2, 4, 32, 16, DF_GDN_HEADS_TILED, 77);
    const int64_t hs = p.nv * p.dk * p.dv;
    const size_t no = (size_t)(p.n_tok * p.nv * p.dv);
    df_cpu_simd levels[2];
    const int nl = simd_levels(levels);
    for (int l = 0; l < nl; l++) {
        cr_assert_eq(df_cpu_simd_set(levels[l]), DF_OK);
        float *s = state_copy(&p), *o = malloc(sizeof(float) * no);
        /* 64-byte aligned: the AVX2 step streams f32 captures with non-temporal stores */
        float *cap = df_alloc_aligned(sizeof(float) * (size_t)(p.n_tok * hs));
        df_fp16 *cap16 = malloc(sizeof(df_fp16) * (size_t)(p.n_tok * hs));
        df_cpu_gdn_args a = problem_args(&p, 0, p.n_tok, s, o, cap, DF_STATE_F32);
        cr_assert_eq(df_cpu_gdn_recurrent(g_pool2, &a), DF_OK);
        float *s16 = state_copy(&p), *o16 = malloc(sizeof(float) * no);
        df_cpu_gdn_args a16 = problem_args(&p, 0, p.n_tok, s16, o16, cap16, DF_STATE_F16);
        cr_assert_eq(df_cpu_gdn_recurrent(g_pool1, &a16), DF_OK);
        /* capturing changes nothing else, and the f16 capture is the f32 one rounded */
        cr_assert(memcmp(o, o16, sizeof(float) * no) == 0 && memcmp(s, s16, sizeof(float) * (size_t)hs) == 0);
        for (int64_t i = 0; i < p.n_tok * hs; i++)
            cr_assert_eq(cap16[i], df_f32_to_fp16(cap[i]), "f16 capture element %lld", (long long)i);
        for (int64_t t = 0; t < p.n_tok; t++) {
            float *st = state_copy(&p), *ot = malloc(sizeof(float) * (size_t)((t + 1) * p.nv * p.dv));
            df_cpu_gdn_args at = problem_args(&p, 0, t + 1, st, ot, NULL, DF_STATE_F32);
            cr_assert_eq(df_cpu_gdn_recurrent(g_pool1, &at), DF_OK);
            cr_assert(memcmp(st, cap + t * hs, sizeof(float) * (size_t)hs) == 0,
                      "recurrent capture[%lld] differs from the state after %lld tokens", (long long)t, (long long)t + 1);
            /* resuming from the captured state gives the same continuation as the full batch */
            if (t + 1 < p.n_tok) {
                float *sr = malloc(sizeof(float) * (size_t)hs);
                memcpy(sr, cap + t * hs, sizeof(float) * (size_t)hs);
                const int64_t rest = p.n_tok - t - 1;
                float *orest = malloc(sizeof(float) * (size_t)(rest * p.nv * p.dv));
                df_cpu_gdn_args ar = problem_args(&p, t + 1, rest, sr, orest, NULL, DF_STATE_F32);
                cr_assert_eq(df_cpu_gdn_recurrent(NULL, &ar), DF_OK);
                cr_assert(memcmp(orest, o + (t + 1) * p.nv * p.dv, sizeof(float) * (size_t)(rest * p.nv * p.dv)) == 0,
                          "resuming after token %lld differs from the full batch", (long long)t);
                cr_assert(memcmp(sr, s, sizeof(float) * (size_t)hs) == 0);
                free(sr);
                free(orest);
            }
            free(st);
            free(ot);
        }
        /* the chunked form's capture agrees with the recurrent one */
        size_t ss;
        void *scr = chunked_scratch(g_pool2, &p, &ss);
        float *sc = state_copy(&p), *oc = malloc(sizeof(float) * no);
        /* deliberately misaligned by one float: the plain-store path */
        float *capc_mem = df_alloc_aligned(sizeof(float) * (size_t)(p.n_tok * hs + 1)), *capc = capc_mem + 1;
        df_cpu_gdn_args ac = problem_args(&p, 0, p.n_tok, sc, oc, capc, DF_STATE_F32);
        cr_assert_eq(df_cpu_gdn_chunked(g_pool2, &ac, scr, ss), DF_OK);
        for (int64_t t = 0; t < p.n_tok; t++) {
            const double e = rel_err_ff(capc + t * hs, cap + t * hs, (size_t)hs);
            cr_assert(e <= 1e-5, "chunked capture[%lld] differs from the recurrent one by %.3g", (long long)t, e);
        }
        cr_assert(rel_err_ff(sc, s, (size_t)hs) <= 1e-5);
        cr_assert(memcmp(sc, capc + (p.n_tok - 1) * hs, sizeof(float) * (size_t)hs) == 0);
        cr_assert(rel_err_ff(oc, o, no) <= 1e-5);
        /* and the other way round: chunked into an aligned buffer, recurrent into a misaligned one */
        float *cap_a = df_alloc_aligned(sizeof(float) * (size_t)(p.n_tok * hs));
        float *cap_m_mem = df_alloc_aligned(sizeof(float) * (size_t)(p.n_tok * hs + 1)), *cap_m = cap_m_mem + 1;
        float *s_a = state_copy(&p), *s_m = state_copy(&p);
        df_cpu_gdn_args aa = problem_args(&p, 0, p.n_tok, s_a, oc, cap_a, DF_STATE_F32);
        cr_assert_eq(df_cpu_gdn_chunked(g_pool1, &aa, scr, ss), DF_OK);
        cr_assert(memcmp(cap_a, capc, sizeof(float) * (size_t)(p.n_tok * hs)) == 0, "chunked capture depends on alignment");
        df_cpu_gdn_args am = problem_args(&p, 0, p.n_tok, s_m, oc, cap_m, DF_STATE_F32);
        cr_assert_eq(df_cpu_gdn_recurrent(g_pool1, &am), DF_OK);
        cr_assert(memcmp(cap_m, cap, sizeof(float) * (size_t)(p.n_tok * hs)) == 0, "recurrent capture depends on alignment");
        df_free_aligned(cap_a); df_free_aligned(cap_m_mem); free(s_a); free(s_m);
        df_free_aligned(scr);
        free(sc); free(oc); df_free_aligned(capc_mem);
        free(s); free(o); df_free_aligned(cap); free(cap16); free(s16); free(o16);
    }
    problem_free(&p);
}

/* llama.cpp's converter moves value head (key head kh, j-th of its group) from grouped
 * position kh * r + j to tiled position j * nk + kh. Running the tiled map on permuted value
 * heads must reproduce the grouped run exactly, head for head. */
/* state_in / state_save (the speculative rollback's): a call that starts from state_in and
 * saves its starting state gives bitwise what a call starting from that state in place
 * gives, leaves state_in untouched, and state_save holds the starting state; either may be
 * the state buffer itself. Recurrent and chunked, one thread and two. */
Test(cpu_gdn, starting_state_from_another_buffer_and_saved) {
    gdn_problem p;
    problem_init(&p, 70, 2, 4, 32, 24, DF_GDN_HEADS_TILED, 77);
    const size_t no = (size_t)(p.n_tok * p.nv * p.dv), ns = (size_t)(p.nv * p.dk * p.dv);
    df_pool *pools[2] = {g_pool1, g_pool2};
    for (int chunked = 0; chunked < 2; chunked++)
        for (int pi = 0; pi < 2; pi++) {
            float *ref_state = state_copy(&p), *ref_out = calloc(no, sizeof(float));
            float *in = state_copy(&p), *state = calloc(ns, sizeof(float)), *save = calloc(ns, sizeof(float));
            float *out = calloc(no, sizeof(float));
            for (size_t i = 0; i < ns; i++) state[i] = 1e30f; /* must be overwritten, never read */
            df_cpu_gdn_args ra = problem_args(&p, 0, p.n_tok, ref_state, ref_out, NULL, DF_STATE_F32);
            df_cpu_gdn_args a = problem_args(&p, 0, p.n_tok, state, out, NULL, DF_STATE_F32);
            a.state_in = in;
            a.state_save = save;
            size_t scratch_size;
            void *scratch = chunked_scratch(pools[pi], &p, &scratch_size);
            if (chunked) {
                cr_assert_eq(df_cpu_gdn_chunked(pools[pi], &ra, scratch, scratch_size), DF_OK, "%s", df_last_error());
                cr_assert_eq(df_cpu_gdn_chunked(pools[pi], &a, scratch, scratch_size), DF_OK, "%s", df_last_error());
            } else {
                cr_assert_eq(df_cpu_gdn_recurrent(pools[pi], &ra), DF_OK, "%s", df_last_error());
                cr_assert_eq(df_cpu_gdn_recurrent(pools[pi], &a), DF_OK, "%s", df_last_error());
            }
            cr_expect_eq(memcmp(out, ref_out, no * sizeof(float)), 0, "chunked %d, pool %d: outputs", chunked, pi);
            cr_expect_eq(memcmp(state, ref_state, ns * sizeof(float)), 0, "chunked %d, pool %d: state", chunked, pi);
            cr_expect_eq(memcmp(save, p.state0, ns * sizeof(float)), 0, "chunked %d, pool %d: saved", chunked, pi);
            cr_expect_eq(memcmp(in, p.state0, ns * sizeof(float)), 0, "chunked %d, pool %d: state_in changed", chunked, pi);
            /* state_save over the state being updated: the save is the starting state */
            memcpy(state, p.state0, ns * sizeof(float));
            a.state_in = NULL;
            a.state_save = save;
            memset(save, 0, ns * sizeof(float));
            cr_assert_eq(df_cpu_gdn_recurrent(pools[pi], &a), DF_OK);
            cr_expect_eq(memcmp(save, p.state0, ns * sizeof(float)), 0, "in place: saved");
            df_free_aligned(scratch);
            free(ref_state); free(ref_out); free(in); free(state); free(save); free(out);
        }
    problem_free(&p);
}

Test(cpu_gdn, tiled_map_is_grouped_map_under_the_converter_permutation) {
    gdn_problem pg, pt;
    const int64_t nk = 2, nv = 6, r = nv / nk;
    problem_init(&pg, 10, nk, nv, 16, 8, DF_GDN_HEADS_GROUPED, 88);
    problem_init(&pt, 10, nk, nv, 16, 8, DF_GDN_HEADS_TILED, 89);
    const int64_t w = row_width(&pg), dk = pg.dk, dv = pg.dv;
    memcpy(pt.qkv, pg.qkv, sizeof(float) * (size_t)(pg.n_tok * w)); /* q, k as they are */
    for (int64_t kh = 0; kh < nk; kh++)
        for (int64_t j = 0; j < r; j++) {
            const int64_t hg = kh * r + j, ht = j * nk + kh;
            for (int64_t t = 0; t < pg.n_tok; t++) {
                memcpy(pt.qkv + t * w + 2 * nk * dk + ht * dv, pg.qkv + t * w + 2 * nk * dk + hg * dv, sizeof(float) * (size_t)dv);
                pt.g[t * nv + ht] = pg.g[t * nv + hg];
                pt.beta[t * nv + ht] = pg.beta[t * nv + hg];
            }
            memcpy(pt.state0 + ht * dk * dv, pg.state0 + hg * dk * dv, sizeof(float) * (size_t)(dk * dv));
        }
    const size_t no = (size_t)(pg.n_tok * nv * dv);
    float *sg = state_copy(&pg), *st = state_copy(&pt), *og = malloc(sizeof(float) * no), *ot = malloc(sizeof(float) * no);
    df_cpu_gdn_args ag = problem_args(&pg, 0, pg.n_tok, sg, og, NULL, DF_STATE_F32);
    df_cpu_gdn_args at = problem_args(&pt, 0, pt.n_tok, st, ot, NULL, DF_STATE_F32);
    cr_assert_eq(df_cpu_gdn_recurrent(NULL, &ag), DF_OK);
    cr_assert_eq(df_cpu_gdn_recurrent(NULL, &at), DF_OK);
    for (int64_t kh = 0; kh < nk; kh++)
        for (int64_t j = 0; j < r; j++) {
            const int64_t hg = kh * r + j, ht = j * nk + kh;
            for (int64_t t = 0; t < pg.n_tok; t++)
                cr_assert(memcmp(ot + (t * nv + ht) * dv, og + (t * nv + hg) * dv, sizeof(float) * (size_t)dv) == 0,
                          "value head %lld (grouped) / %lld (tiled) differ at token %lld", (long long)hg, (long long)ht, (long long)t);
        }
    /* and the maps do differ: grouped order under the tiled map is a different model */
    float *sx = state_copy(&pg), *ox = malloc(sizeof(float) * no);
    df_cpu_gdn_args ax = problem_args(&pg, 0, pg.n_tok, sx, ox, NULL, DF_STATE_F32);
    ax.head_map = DF_GDN_HEADS_TILED;
    cr_assert_eq(df_cpu_gdn_recurrent(NULL, &ax), DF_OK);
    cr_assert(memcmp(ox, og, sizeof(float) * no) != 0);
    free(sg); free(st); free(og); free(ot); free(sx); free(ox);
    problem_free(&pg);
    problem_free(&pt);
}

Test(cpu_gdn, bad_arguments_are_refused) {
    gdn_problem p;
    problem_init(&p, 4, 2, 4, 16, 16, DF_GDN_HEADS_GROUPED, 5);
    float *s = state_copy(&p), *o = malloc(sizeof(float) * (size_t)(4 * 4 * 16));
    df_cpu_gdn_args a = problem_args(&p, 0, 4, s, o, NULL, DF_STATE_F32);
    a.v.n_head = 3;
    a.out.n_head = 3;
    cr_assert_eq(df_cpu_gdn_recurrent(NULL, &a), DF_ERR_MISMATCH);
    cr_assert(strstr(df_last_error(), "value heads") != NULL, "%s", df_last_error());
    a = problem_args(&p, 0, 4, s, o, NULL, DF_STATE_F32);
    a.g = NULL;
    cr_assert_eq(df_cpu_gdn_recurrent(NULL, &a), DF_ERR_INVALID);
    a = problem_args(&p, 0, 4, s, o, NULL, DF_STATE_F32);
    a.head_map = (df_gdn_head_map)9;
    cr_assert_eq(df_cpu_gdn_recurrent(NULL, &a), DF_ERR_INVALID);
    a = problem_args(&p, 0, 4, s, o, NULL, DF_STATE_F32);
    a.k.n_tok = 3;
    cr_assert_eq(df_cpu_gdn_chunked(NULL, &a, o, 16), DF_ERR_MISMATCH);
    a = problem_args(&p, 0, 4, s, o, NULL, DF_STATE_F32);
    uint8_t small[64] __attribute__((aligned(16)));
    cr_assert_eq(df_cpu_gdn_chunked(NULL, &a, small, sizeof small), DF_ERR_INVALID);
    cr_assert(strstr(df_last_error(), "scratch") != NULL);
    cr_assert_eq(df_cpu_gdn_chunked(NULL, &a, NULL, 0), DF_ERR_INVALID);
    cr_assert_eq(df_cpu_gdn_chunked_scratch_size(NULL, 0, 16), 0);
    free(s);
    free(o);
    problem_free(&p);
}
