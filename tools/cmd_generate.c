/* dflash generate: autoregressive generation from a prompt, streamed to stdout. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dflash.h"
#include "tools/cli_args.h"
#include "tools/cli_default_model.h"
#include "tools/commands.h"

#define CMD "generate"
#define MAX_STOP 16

static void usage(FILE *f) {
    fprintf(f,
            "usage: dflash generate -m MODEL.gguf (-p TEXT | --tokens 1,2,3) [options]\n"
            "  -n N             tokens to generate (default 128; -1: until EOS)\n"
            "  --temp T         temperature (default 0: greedy)\n"
            "  --top-k K  --top-p P  --min-p P  --seed S\n"
            "  --stop TEXT      stop string (repeatable)\n"
            "  --ignore-eos     keep going past end-of-generation tokens\n"
            "  --draft PATH     DFlash drafter (GGUF or z-lab directory): speculative decoding\n"
            "  --block N        speculative block size (default: the drafter's; 4 on the CPU)\n"
            "  --capture-f16    roll back from per-token GDN states kept in f16 (the rounded\n"
            "                   state-capture rollback) instead of the default replay\n"
            "  --ctx N          context size (default: min(training context, 4096))\n"
            "  --threads N      CPU threads (default: all)\n"
            "  --device DEV     cpu (default), cuda or cuda:N\n"
            "  --json           print one JSON object at the end instead of streaming\n");
}

typedef struct out_state {
    bool json;
    char *text;
    size_t len, cap;
    int32_t *tokens;
    size_t n_tokens, cap_tokens;
    bool has_tokenizer;
} out_state;

static int on_token(void *user, int32_t token, const char *text, size_t len) {
    out_state *o = user;
    if (token >= 0) {
        if (o->n_tokens == o->cap_tokens) {
            size_t cap = o->cap_tokens ? o->cap_tokens * 2 : 64;
            int32_t *p = realloc(o->tokens, cap * sizeof *p);
            if (!p) return 1;
            o->tokens = p;
            o->cap_tokens = cap;
        }
        o->tokens[o->n_tokens++] = token;
    }
    if (o->len + len + 1 > o->cap) {
        size_t cap = (o->len + len + 1) * 2;
        char *p = realloc(o->text, cap);
        if (!p) return 1;
        o->text = p;
        o->cap = cap;
    }
    memcpy(o->text + o->len, text, len);
    o->len += len;
    o->text[o->len] = '\0';
    if (!o->json) {
        if (o->has_tokenizer) fwrite(text, 1, len, stdout);
        else if (token >= 0) printf("%s%d", o->n_tokens > 1 ? " " : "", token);
        fflush(stdout);
    }
    return 0;
}

static const char *stop_name(dflash_stop_reason r) {
    switch (r) {
    case DFLASH_STOP_LENGTH: return "length";
    case DFLASH_STOP_EOS: return "eos";
    case DFLASH_STOP_STRING: return "stop";
    case DFLASH_STOP_CONTEXT: return "context";
    case DFLASH_STOP_CALLBACK: return "callback";
    }
    return "unknown";
}

int cmd_generate(int argc, char **argv) {
    dflash_model_params mp = dflash_model_default_params();
    dflash_session_params sp = dflash_session_default_params();
    dflash_gen_params gp = dflash_gen_default_params();
    const char *prompt = NULL, *tokens_arg = NULL;
    const char *stops[MAX_STOP];
    int n_stop = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long long n;
        double f;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--ignore-eos")) {
            gp.ignore_eos = true;
        } else if (!strcmp(a, "--capture-f16")) {
            sp.capture_f16 = true;
        } else if (!(v = cli_value(CMD, argc, argv, &i))) {
            return 2;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            mp.path = v;
        } else if (!strcmp(a, "--draft")) {
            mp.draft_path = v;
        } else if (!strcmp(a, "--device")) {
            mp.device = v;
        } else if (!strcmp(a, "--block")) {
            if (!cli_int(CMD, a, v, 2, 64, &n)) return 2;
            sp.block_size = (int32_t)n;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            prompt = v;
        } else if (!strcmp(a, "--tokens")) {
            tokens_arg = v;
        } else if (!strcmp(a, "-n")) {
            if (!cli_int(CMD, a, v, -1, 1 << 30, &n)) return 2;
            gp.n_predict = (int32_t)n;
        } else if (!strcmp(a, "--temp")) {
            if (!cli_float(CMD, a, v, &f) || f < 0) return 2;
            gp.temperature = (float)f;
        } else if (!strcmp(a, "--top-k")) {
            if (!cli_int(CMD, a, v, 0, 1 << 30, &n)) return 2;
            gp.top_k = (int32_t)n;
        } else if (!strcmp(a, "--top-p")) {
            if (!cli_float(CMD, a, v, &f) || f <= 0 || f > 1) return 2;
            gp.top_p = (float)f;
        } else if (!strcmp(a, "--min-p")) {
            if (!cli_float(CMD, a, v, &f) || f < 0 || f > 1) return 2;
            gp.min_p = (float)f;
        } else if (!strcmp(a, "--seed")) {
            if (!cli_int(CMD, a, v, 0, INT64_MAX, &n)) return 2;
            gp.seed = (uint64_t)n;
        } else if (!strcmp(a, "--stop")) {
            if (n_stop == MAX_STOP) {
                fprintf(stderr, "dflash generate: at most %d stop strings\n", MAX_STOP);
                return 2;
            }
            stops[n_stop++] = v;
        } else if (!strcmp(a, "--ctx")) {
            if (!cli_int(CMD, a, v, 1, 1 << 24, &n)) return 2;
            sp.n_ctx = (int32_t)n;
        } else if (!strcmp(a, "--threads")) {
            if (!cli_int(CMD, a, v, 0, 1024, &n)) return 2;
            mp.n_threads = (int)n;
        } else {
            fprintf(stderr, "dflash generate: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!cli_default_pair(CMD, &mp.path, &mp.draft_path)) return 2;
    if (!prompt == !tokens_arg) {
        usage(stderr);
        return 2;
    }
    gp.stop = stops;
    gp.n_stop = n_stop;

    int32_t *ids = NULL;
    int n_ids = 0;
    if (tokens_arg && !cli_int_list(CMD, "--tokens", tokens_arg, &ids, &n_ids)) return 2;

    dflash_model *m = NULL;
    dflash_session *s = NULL;
    out_state o = {.json = json};
    dflash_gen_stats stats;
    int rc = dflash_model_load(&mp, &m);
    if (rc == 0) rc = dflash_session_create(m, &sp, &s);
    if (rc == 0) {
        o.has_tokenizer = dflash_model_has_tokenizer(m);
        rc = prompt ? dflash_generate_text(s, prompt, &gp, on_token, &o, &stats)
                    : dflash_generate(s, ids, (size_t)n_ids, &gp, on_token, &o, &stats);
    }
    int exit_code = 0;
    if (rc != 0) {
        fprintf(stderr, "%sdflash generate: %s\n", o.len || o.n_tokens ? "\n" : "", dflash_last_error());
        exit_code = 1;
    } else if (json) {
        json_t *tokens = json_array();
        for (size_t i = 0; i < o.n_tokens; i++) json_array_append_new(tokens, json_integer(o.tokens[i]));
        json_t *obj = json_pack("{s:s%, s:o, s:i, s:i, s:f, s:f, s:s}", "text", o.text ? o.text : "",
                                o.len, "tokens", tokens, "n_prompt", stats.n_prompt, "n_gen",
                                stats.n_gen, "prefill_tok_s", stats.prefill_tok_s, "decode_tok_s",
                                stats.decode_tok_s, "stop", stop_name(stats.stop));
        if (obj && stats.n_verify > 0) {
            json_object_set_new(obj, "n_verify", json_integer(stats.n_verify));
            json_object_set_new(obj, "mean_accept_len", json_real(stats.mean_accept_len));
        }
        char *dump = obj ? json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        if (dump) printf("%s\n", dump);
        else exit_code = 1;
        free(dump);
        json_decref(obj);
    } else {
        printf("\n");
        fprintf(stderr, "dflash: %d prompt tokens at %.1f tok/s, %d generated at %.1f tok/s (stop: %s)\n",
                stats.n_prompt, stats.prefill_tok_s, stats.n_gen, stats.decode_tok_s,
                stop_name(stats.stop));
        if (stats.n_verify > 0)
            fprintf(stderr, "dflash: speculative: %lld verifies, %.2f tokens each; draft %.3f s, verify %.3f s\n",
                    (long long)stats.n_verify, stats.mean_accept_len, stats.draft_s, stats.verify_s);
    }
    dflash_session_free(s);
    dflash_model_free(m);
    free(ids);
    free(o.text);
    free(o.tokens);
    return exit_code;
}
