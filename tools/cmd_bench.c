/* dflash bench: speed of a model on this machine, AR decoding.
 *
 * Prefill tok/s over a prompt of random tokens, decode tok/s over n generated tokens, and
 * the decode weight bandwidth (bytes of weights read per token x tokens per second) next to
 * this machine's read bandwidth measured in the same run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "dflash.h"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/membw.h"

#define CMD "bench"

static void usage(FILE *f) {
    fprintf(f, "usage: dflash bench -m MODEL.gguf [options]\n"
               "  -p N         prompt tokens for the prefill measurement (default 256)\n"
               "  -n N         tokens to decode (default 64)\n"
               "  --reps N     repetitions; the best is reported (default 3)\n"
               "  --threads N  CPU threads (default: all)\n"
               "  --membw-mib N  size of the bandwidth test buffer (default 1024)\n"
               "  --json       one JSON object\n");
}

int cmd_bench(int argc, char **argv) {
    dflash_model_params mp = dflash_model_default_params();
    long long n_prompt = 256, n_gen = 64, reps = 3, membw_mib = 1024;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if (!(v = cli_value(CMD, argc, argv, &i))) return 2;
        long long n;
        if (!strcmp(a, "-m")) mp.path = v;
        else if (!strcmp(a, "-p") && cli_int(CMD, a, v, 1, 1 << 20, &n)) n_prompt = n;
        else if (!strcmp(a, "-n") && cli_int(CMD, a, v, 2, 1 << 20, &n)) n_gen = n;
        else if (!strcmp(a, "--reps") && cli_int(CMD, a, v, 1, 100, &n)) reps = n;
        else if (!strcmp(a, "--threads") && cli_int(CMD, a, v, 0, 1024, &n)) mp.n_threads = (int)n;
        else if (!strcmp(a, "--membw-mib") && cli_int(CMD, a, v, 16, 1 << 16, &n)) membw_mib = n;
        else {
            if (strcmp(a, "-p") && strcmp(a, "-n") && strcmp(a, "--reps") && strcmp(a, "--threads") &&
                strcmp(a, "--membw-mib"))
                fprintf(stderr, "dflash bench: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!mp.path) {
        usage(stderr);
        return 2;
    }
    dflash_model *m;
    if (dflash_model_load(&mp, &m) != 0) {
        fprintf(stderr, "dflash bench: %s\n", dflash_last_error());
        return 1;
    }
    dflash_session_params sp = dflash_session_default_params();
    sp.n_ctx = (int32_t)(n_prompt + n_gen + 8);
    dflash_session *s;
    if (dflash_session_create(m, &sp, &s) != 0) {
        fprintf(stderr, "dflash bench: %s\n", dflash_last_error());
        dflash_model_free(m);
        return 1;
    }
    /* Random prompt tokens: speed does not depend on which tokens they are. */
    int32_t *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    df_rng rng;
    df_rng_seed(&rng, 1234);
    for (long long i = 0; i < n_prompt; i++) prompt[i] = (int32_t)df_rng_below(&rng, (uint32_t)dflash_model_n_vocab(m));
    dflash_gen_params gp = dflash_gen_default_params();
    gp.n_predict = (int32_t)n_gen;
    gp.ignore_eos = true;
    double best_pp = 0, best_tg = 0;
    int rc = 0;
    for (long long r = 0; r < reps && rc == 0; r++) {
        dflash_gen_stats st;
        rc = dflash_session_reset(s);
        if (rc == 0) rc = dflash_generate(s, prompt, (size_t)n_prompt, &gp, NULL, NULL, &st);
        if (rc == 0) {
            if (st.prefill_tok_s > best_pp) best_pp = st.prefill_tok_s;
            if (st.decode_tok_s > best_tg) best_tg = st.decode_tok_s;
        }
    }
    if (rc != 0) fprintf(stderr, "dflash bench: %s\n", dflash_last_error());
    membw_result bw = {0};
    if (rc == 0 && membw_measure((size_t)membw_mib << 20, mp.n_threads, &bw) != 0) {
        fprintf(stderr, "dflash bench: cannot allocate the bandwidth test buffers\n");
        rc = 1;
    }
    if (rc == 0) {
        double wbytes = (double)dflash_model_weight_bytes(m);
        double decode_gbs = wbytes * best_tg / 1e9;
        if (json) {
            printf("{\"model\":\"%s\",\"mode\":\"ar\",\"n_prompt\":%lld,\"n_gen\":%lld,"
                   "\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f,\"weight_bytes\":%.0f,"
                   "\"decode_weight_gbs\":%.3f,\"mem_read_gbs\":%.3f,\"mem_copy_gbs\":%.3f,"
                   "\"roofline_fraction\":%.4f}\n",
                   mp.path, n_prompt, n_gen, best_pp, best_tg, wbytes, decode_gbs, bw.read_gbs,
                   bw.copy_gbs, decode_gbs / bw.read_gbs);
        } else {
            printf("model            %s\n", mp.path);
            printf("prefill          %.1f tok/s (%lld tokens)\n", best_pp, n_prompt);
            printf("decode           %.1f tok/s (%lld tokens)\n", best_tg, n_gen);
            printf("weights/token    %.1f MiB\n", wbytes / (1 << 20));
            printf("decode reads     %.2f GB/s of weights\n", decode_gbs);
            printf("memory read      %.2f GB/s (copy: %.2f GB/s, read + write)\n", bw.read_gbs, bw.copy_gbs);
            printf("roofline         %.1f%% of the read bandwidth\n", 100.0 * decode_gbs / bw.read_gbs);
        }
    }
    free(prompt);
    dflash_session_free(s);
    dflash_model_free(m);
    return rc == 0 ? 0 : 1;
}
