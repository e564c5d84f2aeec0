/* dflash tokenize: text on stdin -> token ids as a JSON array (or back with --decode). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/status.h"
#include "format/gguf.h"
#include "format/gguf_write.h"
#include "text/tokenizer.h"
#include "tools/cli_default_model.h"
#include "tools/commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dflash tokenize (-m MODEL.gguf | --tokenizer tokenizer.json) [options] [FILE...]\n"
            "\n"
            "Reads text on stdin (or each FILE in turn) and prints its token ids as a JSON array\n"
            "(one array per FILE, or per line with --lines).\n"
            "\n"
            "  -m, --model FILE     take the tokenizer from a GGUF file's metadata\n"
            "  --tokenizer FILE     take it from a Hugging Face tokenizer.json\n"
            "  --special            match special tokens (<|im_start|> ...) in the text; with\n"
            "                       --decode, show them in the output\n"
            "  --lines              encode each input line on its own (without its newline),\n"
            "                       one JSON array per line\n"
            "  --decode             read a JSON array of ids (per FILE), print the text they stand for\n"
            "  --stream             with --decode: go through the streaming detokenizer (only\n"
            "                       whole characters, U+FFFD for broken ones)\n"
            "  --write-gguf OUT     write a GGUF holding only the tokenizer's metadata and exit\n"
            "  --config FILE        with --write-gguf: a tokenizer_config.json for BOS / EOS /\n"
            "                       padding ids, add_bos / add_eos and the chat template\n"
            "  --bench N            time encoding the input: best of N rounds, with a fresh word\n"
            "                       cache and with a warm one, in MB/s\n");
}

static int fail(const char *what, df_status st) {
    fprintf(stderr, "dflash tokenize: %s: %s (%s)\n", what, df_last_error(), df_status_name(st));
    return 1;
}

static int read_all(FILE *in, char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return -1;
    for (;;) {
        if (n == cap) {
            char *nb = cap > ((size_t)1 << 40) ? NULL : realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return -1;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, in);
        n += got;
        if (got == 0) break;
    }
    if (ferror(in)) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void print_ids(const int32_t *ids, size_t n) {
    putchar('[');
    for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", (int)ids[i]);
    fputs("]\n", stdout);
}

static int do_write_gguf(const df_tokenizer *tok, const char *out_path, const char *config_path) {
    df_tok_gguf_opts opts;
    df_tok_gguf_opts_init(&opts);
    df_tokenizer_config cfg = {0};
    df_status st;
    if (config_path) {
        if ((st = df_tokenizer_config_load(config_path, &cfg)) != DF_OK) return fail("reading the config", st);
        if ((st = df_tok_gguf_opts_from_config(tok, &cfg, &opts)) != DF_OK) {
            df_tokenizer_config_free(&cfg);
            return fail("reading the config", st);
        }
    }
    df_gguf_writer *w = NULL;
    st = df_gguf_writer_create(out_path, &w);
    if (st == DF_OK) st = df_tokenizer_write_gguf(tok, w, &opts);
    if (st == DF_OK) st = df_gguf_writer_write_header(w);
    if (st == DF_OK) st = df_gguf_writer_finish(w);
    df_gguf_writer_free(w);
    df_tokenizer_config_free(&cfg);
    return st == DF_OK ? 0 : fail(out_path, st);
}

static int do_decode(const df_tokenizer *tok, const char *in, size_t len, unsigned flags, bool stream) {
    json_error_t err;
    json_t *arr = json_loadb(in, len, 0, &err);
    if (!json_is_array(arr)) {
        fprintf(stderr, "dflash tokenize: --decode expects a JSON array of ids on stdin (%s)\n",
                arr ? "got another JSON value" : err.text);
        json_decref(arr);
        return 1;
    }
    size_t n = json_array_size(arr);
    df_tokens ids = {0};
    df_bytes text = {0};
    df_status st = df_tokens_reserve(&ids, n);
    for (size_t i = 0; st == DF_OK && i < n; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            st = df_fail(DF_ERR_INVALID, "element %zu is not a token id", i);
        else
            ids.ids[ids.n++] = (int32_t)json_integer_value(v);
    }
    json_decref(arr);
    if (st == DF_OK && stream) {
        df_detok_stream ds;
        df_detok_stream_init(&ds, tok, flags);
        for (size_t i = 0; st == DF_OK && i < ids.n; i++) st = df_detok_stream_push(&ds, ids.ids[i], &text);
        if (st == DF_OK) st = df_detok_stream_flush(&ds, &text);
    } else if (st == DF_OK) {
        st = df_tokenizer_decode(tok, ids.ids, ids.n, flags, &text);
    }
    if (st == DF_OK) fwrite(text.data, 1, text.len, stdout);
    df_tokens_free(&ids);
    df_bytes_free(&text);
    return st == DF_OK ? 0 : fail("decode", st);
}

static int do_encode(const df_tokenizer *tok, const char *in, size_t len, unsigned flags, bool lines, int bench) {
    df_tok_scratch *scratch;
    df_status st = df_tok_scratch_new(tok, &scratch);
    if (st != DF_OK) return fail("encode", st);
    df_tokens ids = {0};
    if (bench > 0) {
        /* Best of N rounds (a shared machine is noisy). Each round encodes twice with a new
         * scratch: the first pass fills the word cache ("fresh"), the second finds it full. */
        double best_fresh = 1e30, best_warm = 1e30;
        for (int r = 0; st == DF_OK && r < bench; r++) {
            df_tok_scratch *fresh;
            st = df_tok_scratch_new(tok, &fresh);
            double t[3];
            for (int pass = 0; st == DF_OK && pass < 2; pass++) {
                t[pass] = now_seconds();
                ids.n = 0;
                st = df_tokenizer_encode(tok, fresh, in, len, flags, &ids);
                t[pass + 1] = now_seconds();
            }
            df_tok_scratch_free(fresh);
            if (st == DF_OK && t[1] - t[0] < best_fresh) best_fresh = t[1] - t[0];
            if (st == DF_OK && t[2] - t[1] < best_warm) best_warm = t[2] - t[1];
        }
        if (st == DF_OK)
            printf("{\"bytes\":%zu,\"tokens\":%zu,\"rounds\":%d,\"fresh_MB_per_s\":%.1f,\"warm_MB_per_s\":%.1f}\n", len,
                   ids.n, bench, (double)len / best_fresh / 1e6, (double)len / best_warm / 1e6);
    } else if (lines) {
        size_t start = 0;
        while (st == DF_OK && start < len) {
            const char *nl = memchr(in + start, '\n', len - start);
            size_t end = nl ? (size_t)(nl - in) : len;
            ids.n = 0;
            st = df_tokenizer_encode(tok, scratch, in + start, end - start, flags, &ids);
            if (st == DF_OK) print_ids(ids.ids, ids.n);
            start = end + 1;
        }
    } else {
        st = df_tokenizer_encode(tok, scratch, in, len, flags, &ids);
        if (st == DF_OK) print_ids(ids.ids, ids.n);
    }
    df_tokens_free(&ids);
    df_tok_scratch_free(scratch);
    return st == DF_OK ? 0 : fail("encode", st);
}

/* files has room for argc entries (the inputs named on the command line). */
static int run(int argc, char **argv, const char **files) {
    const char *model = NULL, *json = NULL, *write_gguf = NULL, *config = NULL;
    int n_files = 0;
    bool special = false, decode = false, lines = false, stream = false;
    int bench = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has_value) {
            model = argv[++i];
        } else if (!strcmp(a, "--tokenizer") && has_value) {
            json = argv[++i];
        } else if (!strcmp(a, "--write-gguf") && has_value) {
            write_gguf = argv[++i];
        } else if (!strcmp(a, "--config") && has_value) {
            config = argv[++i];
        } else if (!strcmp(a, "--bench") && has_value) {
            bench = atoi(argv[++i]);
            if (bench <= 0) {
                fprintf(stderr, "dflash tokenize: --bench needs a positive count\n");
                return 2;
            }
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "--decode")) {
            decode = true;
        } else if (!strcmp(a, "--lines")) {
            lines = true;
        } else if (!strcmp(a, "--stream")) {
            stream = true;
        } else if (a[0] != '-' || !strcmp(a, "-")) {
            files[n_files++] = a;
        } else {
            fprintf(stderr, "dflash tokenize: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model && !json && !cli_default_pair("tokenize", &model, NULL)) return 2;
    if (!model == !json) {
        fprintf(stderr, "dflash tokenize: give exactly one of -m MODEL.gguf or --tokenizer tokenizer.json\n\n");
        usage(stderr);
        return 2;
    }
    if (config && !write_gguf) {
        fprintf(stderr, "dflash tokenize: --config only goes with --write-gguf\n");
        return 2;
    }

    df_tokenizer *tok = NULL;
    df_status st;
    if (json) {
        st = df_tokenizer_load_json(json, &tok);
    } else {
        df_gguf *g = NULL;
        st = df_gguf_open(model, &g);
        if (st == DF_OK) st = df_tokenizer_from_gguf(g, &tok);
        df_gguf_close(g);  /* the tokenizer keeps its own copies */
    }
    if (st != DF_OK) return fail(json ? json : model, st);

    int rc = 0;
    if (write_gguf) {
        rc = do_write_gguf(tok, write_gguf, config);
    } else {
        /* stdin, or each file in turn: one tokenizer load for many inputs. */
        int n_inputs = n_files ? n_files : 1;
        for (int k = 0; k < n_inputs && rc == 0; k++) {
            const char *name = n_files ? files[k] : "stdin";
            FILE *in = n_files ? fopen(name, "rb") : stdin;
            char *text = NULL;
            size_t len = 0;
            int bad = !in || read_all(in, &text, &len) != 0;
            if (in && in != stdin) fclose(in);
            if (bad) {
                fprintf(stderr, "dflash tokenize: cannot read %s\n", name);
                rc = 1;
                break;
            }
            if (decode) rc = do_decode(tok, text, len, special ? DF_DETOK_SPECIAL : 0, stream);
            else rc = do_encode(tok, text, len, special ? DF_TOKENIZE_SPECIAL : 0, lines, bench);
            free(text);
        }
    }
    df_tokenizer_free(tok);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "dflash tokenize: writing stdout failed\n");
        rc = 1;
    }
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char **files = calloc((size_t)argc, sizeof *files);
    if (!files) {
        fprintf(stderr, "dflash tokenize: out of memory\n");
        return 1;
    }
    int rc = run(argc, argv, files);
    free(files);
    return rc;
}
