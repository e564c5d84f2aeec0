/* dflash bench: speed of a model on this machine.
 *
 * AR: prefill tok/s over a prompt, decode tok/s over n generated tokens, and the decode
 * weight bandwidth (bytes of weights read per token x tokens per second) next to this
 * machine's read bandwidth measured in the same run.
 * With --draft: the same generation again with speculative decoding, reported against the
 * AR run of this invocation (speedup, mean acceptance length, its histogram, time split), and
 * the cost of one drafter step and of one verify in AR decode steps (issue #7: "drafter step /
 * AR step"; a step of B-token speculation pays one of each). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "base/rng.h"
#include "dflash.h"
#include "engine/engine.h"
#include "tools/cli_args.h"
#include "tools/cli_default_model.h"
#include "tools/commands.h"
#include "tools/membw.h"

#define CMD "bench"
#define DEFAULT_PROMPT "def quicksort(arr):\n    \"\"\"Sort a list of numbers.\"\"\"\n"

static void usage(FILE *f) {
    fprintf(f, "usage: dflash bench -m MODEL.gguf [options]\n"
               "  --draft PATH   also measure speculative decoding with this drafter (its tok/s, then\n"
               "                 the drafter / verify / commit split from runs that wait for the\n"
               "                 device after each commit)\n"
               "  --block N      speculative block size (default: the drafter's; 4 on the CPU)\n"
               "  -P TEXT        prompt text (default: a code prompt; random ids without a tokenizer)\n"
               "  -p N           prompt tokens when the prompt is random (default 256)\n"
               "  -n N           tokens to decode (default 64)\n"
               "  --reps N       repetitions; the best is reported (default 3)\n"
               "  --threads N    CPU threads (default: all)\n"
               "  --device DEV   cpu (default), cuda or cuda:N\n"
               "  --membw-mib N  size of the bandwidth test buffer (default 1024)\n"
               "  --widths       also time one target forward of 1, 2, 4, 8 and 16 tokens: the cost\n"
               "                 of a speculative verify in decode steps\n"
               "  --json         one JSON object\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define N_WIDTHS 5
static const int k_widths[N_WIDTHS] = {1, 2, 4, 8, 16};

/* Best-of-reps time of one forward of each width after a 32-token context, rewinding the
 * attention rows between runs (the GDN state drifts, which does not change the cost). Two
 * untimed runs first: a backend that records forwards (CUDA graphs) records a shape on its
 * second run, and decoding replays it from then on. */
static int time_widths(dflash_model *m, int reps, double *ms) {
    df_qwen35_state *st;
    if (df_qwen35_state_create(m->target, 256, 32, DF_KV_F16, &st) != DF_OK) return 1;
    int32_t ids[48];
    for (int i = 0; i < 48; i++) ids[i] = (int32_t)(i * 7919 % dflash_model_n_vocab(m));
    int rc = df_qwen35_forward(st, ids, 32, DF_LOGITS_LAST, NULL) != DF_OK;
    for (int w = 0; w < N_WIDTHS && !rc; w++) {
        ms[w] = 1e30;
        for (int r = -2; r < reps && !rc; r++) {
            df_backend *be = m->be;
            rc = be->ops->sync(be) != DF_OK;
            double t0 = now_s();
            /* a GPU forward returns before its kernels finish: wait for them */
            if (!rc) rc = df_qwen35_forward(st, ids + 32, k_widths[w], DF_LOGITS_ALL, NULL) != DF_OK;
            if (!rc) rc = be->ops->sync(be) != DF_OK;
            double t = (now_s() - t0) * 1e3;
            if (r >= 0 && t < ms[w]) ms[w] = t;
            if (!rc) rc = df_qwen35_state_truncate(st, 32) != DF_OK;
        }
    }
    df_qwen35_state_free(st);
    return rc;
}

typedef struct run_result {
    double prefill_tok_s, decode_tok_s;
    dflash_gen_stats best; /* the repetition with the best decode speed */
} run_result;

static int measure(dflash_session *s, const int32_t *prompt, size_t n_prompt, int n_gen, int reps,
                   run_result *out) {
    dflash_gen_params gp = dflash_gen_default_params();
    gp.n_predict = n_gen;
    gp.ignore_eos = true;
    memset(out, 0, sizeof *out);
    for (int r = 0; r < reps; r++) {
        dflash_gen_stats st;
        if (dflash_session_reset(s) != 0) return 1;
        if (dflash_generate(s, prompt, n_prompt, &gp, NULL, NULL, &st) != 0) return 1;
        if (st.prefill_tok_s > out->prefill_tok_s) out->prefill_tok_s = st.prefill_tok_s;
        if (st.decode_tok_s > out->decode_tok_s) {
            out->decode_tok_s = st.decode_tok_s;
            out->best = st;
        }
    }
    return 0;
}

int cmd_bench(int argc, char **argv) {
    dflash_model_params mp = dflash_model_default_params();
    long long n_prompt = 256, n_gen = 64, reps = 3, membw_mib = 1024, block = 0;
    const char *prompt_text = NULL;
    bool json = false, widths = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if (!strcmp(a, "--widths")) {
            widths = true;
            continue;
        }
        if (!(v = cli_value(CMD, argc, argv, &i))) return 2;
        bool ok = true;
        if (!strcmp(a, "-m")) mp.path = v;
        else if (!strcmp(a, "--draft")) mp.draft_path = v;
        else if (!strcmp(a, "--device")) mp.device = v;
        else if (!strcmp(a, "-P")) prompt_text = v;
        else if (!strcmp(a, "--block")) ok = cli_int(CMD, a, v, 2, 64, &block);
        else if (!strcmp(a, "-p")) ok = cli_int(CMD, a, v, 1, 1 << 20, &n_prompt);
        else if (!strcmp(a, "-n")) ok = cli_int(CMD, a, v, 2, 1 << 20, &n_gen);
        else if (!strcmp(a, "--reps")) ok = cli_int(CMD, a, v, 1, 100, &reps);
        else if (!strcmp(a, "--membw-mib")) ok = cli_int(CMD, a, v, 16, 1 << 16, &membw_mib);
        else if (!strcmp(a, "--threads")) {
            long long n;
            ok = cli_int(CMD, a, v, 0, 1024, &n);
            mp.n_threads = (int)n;
        } else {
            fprintf(stderr, "dflash bench: unknown option '%s'\n", a);
            ok = false;
        }
        if (!ok) return 2;
    }
    if (!cli_default_pair(CMD, &mp.path, &mp.draft_path)) return 2;
    dflash_model *m;
    if (dflash_model_load(&mp, &m) != 0) {
        fprintf(stderr, "dflash bench: %s\n", dflash_last_error());
        return 1;
    }
    int32_t *prompt = NULL;
    size_t np = 0;
    int rc = 0;
    if (dflash_model_has_tokenizer(m)) {
        const char *text = prompt_text ? prompt_text : DEFAULT_PROMPT;
        rc = dflash_tokenize(m, text, strlen(text), true, &prompt, &np);
    } else {
        /* Random ids: AR speed does not depend on which tokens they are. */
        np = (size_t)n_prompt;
        prompt = malloc(np * sizeof *prompt);
        df_rng rng;
        df_rng_seed(&rng, 1234);
        for (size_t i = 0; i < np; i++) prompt[i] = (int32_t)df_rng_below(&rng, (uint32_t)dflash_model_n_vocab(m));
    }
    dflash_session_params sp = dflash_session_default_params();
    sp.n_ctx = (int32_t)(np + (size_t)n_gen + 64);
    sp.block_size = (int32_t)block;
    dflash_session *ar = NULL, *spec = NULL, *phased = NULL;
    run_result r_ar = {0}, r_spec = {0}, r_phase = {0};
    sp.no_spec = true;
    if (rc == 0) rc = dflash_session_create(m, &sp, &ar);
    if (rc == 0) rc = measure(ar, prompt, np, (int)n_gen, (int)reps, &r_ar);
    if (rc == 0 && dflash_model_has_drafter(m)) {
        sp.no_spec = false;
        rc = dflash_session_create(m, &sp, &spec);
        if (rc == 0) rc = measure(spec, prompt, np, (int)n_gen, (int)reps, &r_spec);
        /* The split into drafter, verify and the rest from runs that wait for the device after
         * each commit (on a GPU the commit is queued work that would otherwise be timed in
         * the next drafter step); the speculative tok/s above ran without the waits. */
        sp.sync_phases = true;
        if (rc == 0) rc = dflash_session_create(m, &sp, &phased);
        if (rc == 0) rc = measure(phased, prompt, np, (int)n_gen, (int)reps, &r_phase);
    }
    double width_ms[N_WIDTHS] = {0};
    if (rc == 0 && widths) rc = time_widths(m, (int)reps, width_ms);
    if (rc != 0) fprintf(stderr, "dflash bench: %s\n", dflash_last_error());
    /* The roofline's bandwidth is that of the memory the weights live in: the host's read
     * bandwidth on the CPU; on a GPU its copy bandwidth (bytes read + written per second:
     * what the memory can move, as the issue of record defines the GPU roofline). */
    membw_result bw = {0};
    const bool on_host = !strcmp(m->be->ops->name, "cpu");
    if (rc == 0 && (on_host ? membw_measure((size_t)membw_mib << 20, mp.n_threads, &bw)
                            : membw_measure_backend(m->be, (size_t)membw_mib << 20, &bw)) != 0) {
        fprintf(stderr, "dflash bench: cannot allocate the bandwidth test buffers\n");
        rc = 1;
    }
    if (rc == 0 && !on_host) bw.read_gbs = bw.copy_gbs;  /* the roofline's denominator */
    if (rc == 0) {
        double wbytes = (double)dflash_model_weight_bytes(m);
        double decode_gbs = wbytes * r_ar.decode_tok_s / 1e9;
        const dflash_gen_stats *ss = &r_phase.best;
        double speedup = r_ar.decode_tok_s > 0 ? r_spec.decode_tok_s / r_ar.decode_tok_s : 0;
        /* Per speculative step (one propose and one verify each), against the AR step of this
         * run (the time per decoded token of the best AR repetition). */
        const double ar_step_ms = r_ar.decode_tok_s > 0 ? 1e3 / r_ar.decode_tok_s : 0;
        const double draft_step_ms = ss->n_verify > 0 ? 1e3 * ss->draft_s / (double)ss->n_verify : 0;
        const double verify_step_ms = ss->n_verify > 0 ? 1e3 * ss->verify_s / (double)ss->n_verify : 0;
        const double draft_over_ar = ar_step_ms > 0 ? draft_step_ms / ar_step_ms : 0;
        const double verify_over_ar = ar_step_ms > 0 ? verify_step_ms / ar_step_ms : 0;
        if (json) {
            printf("{\"model\":\"%s\",\"n_prompt\":%zu,\"n_gen\":%lld,\"prefill_tok_s\":%.2f,"
                   "\"ar_tok_s\":%.2f,\"weight_bytes\":%.0f,\"decode_weight_gbs\":%.3f,"
                   "\"mem_read_gbs\":%.3f,\"mem_copy_gbs\":%.3f,\"roofline_fraction\":%.4f",
                   mp.path, np, n_gen, r_ar.prefill_tok_s, r_ar.decode_tok_s, wbytes, decode_gbs,
                   bw.read_gbs, bw.copy_gbs, decode_gbs / bw.read_gbs);
            if (spec)
                printf(",\"draft\":\"%s\",\"spec_tok_s\":%.2f,\"speedup\":%.3f,\"mean_accept_len\":%.3f,"
                       "\"n_verify\":%lld,\"draft_s\":%.4f,\"verify_s\":%.4f,\"decode_s\":%.4f,"
                       "\"ar_step_ms\":%.4f,\"draft_step_ms\":%.4f,\"verify_step_ms\":%.4f,"
                       "\"draft_over_ar_step\":%.4f,\"verify_over_ar_step\":%.4f",
                       mp.draft_path, r_spec.decode_tok_s, speedup, r_spec.best.mean_accept_len,
                       (long long)ss->n_verify, ss->draft_s, ss->verify_s, ss->decode_s, ar_step_ms,
                       draft_step_ms, verify_step_ms, draft_over_ar, verify_over_ar);
            if (widths) {
                printf(",\"forward_ms\":{");
                for (int w = 0; w < N_WIDTHS; w++) printf("%s\"%d\":%.3f", w ? "," : "", k_widths[w], width_ms[w]);
                printf("},\"verify16_over_step\":%.3f", width_ms[N_WIDTHS - 1] / width_ms[0]);
            }
            printf("}\n");
        } else {
            printf("model            %s\n", mp.path);
            printf("prefill          %.1f tok/s (%zu tokens)\n", r_ar.prefill_tok_s, np);
            printf("decode (AR)      %.1f tok/s (%lld tokens)\n", r_ar.decode_tok_s, n_gen);
            printf("weights/token    %.1f MiB\n", wbytes / (1 << 20));
            printf("decode reads     %.2f GB/s of weights\n", decode_gbs);
            if (on_host) {
                printf("memory read      %.2f GB/s (copy: %.2f GB/s, read + write)\n", bw.read_gbs, bw.copy_gbs);
                printf("roofline         %.1f%% of the read bandwidth\n", 100.0 * decode_gbs / bw.read_gbs);
            } else {
                printf("device memory    %.2f GB/s copy (read + write)\n", bw.copy_gbs);
                printf("roofline         %.1f%% of the copy bandwidth\n", 100.0 * decode_gbs / bw.copy_gbs);
            }
            if (widths) {
                printf("forward of n     ");
                for (int w = 0; w < N_WIDTHS; w++)
                    printf("%d: %.1f ms (%.2f steps)  ", k_widths[w], width_ms[w], width_ms[w] / width_ms[0]);
                printf("\n");
            }
            if (spec) {
                const dflash_gen_stats *sr = &r_spec.best;
                printf("decode (DFlash)  %.1f tok/s: %.2fx AR\n", r_spec.decode_tok_s, speedup);
                printf("acceptance       %.2f tokens per verify over %lld verifies\n", sr->mean_accept_len,
                       (long long)sr->n_verify);
                printf("histogram        ");
                for (int i = 0; i < 32; i++)
                    if (sr->accept_hist[i]) printf("%d:%lld ", i + 1, (long long)sr->accept_hist[i]);
                printf("(tokens committed: verifies)\n");
                printf("time             draft %.3f s, verify %.3f s, other %.3f s (a run that waits for the "
                       "device after each commit)\n", ss->draft_s,
                       ss->verify_s, ss->decode_s - ss->draft_s - ss->verify_s);
                printf("per step         drafter %.3f ms = %.2f AR steps, verify %.3f ms = %.2f AR steps "
                       "(AR step %.3f ms)\n", draft_step_ms, draft_over_ar, verify_step_ms, verify_over_ar,
                       ar_step_ms);
            }
        }
    }
    free(prompt);
    dflash_session_free(phased);
    dflash_session_free(spec);
    dflash_session_free(ar);
    dflash_model_free(m);
    return rc == 0 ? 0 : 1;
}
