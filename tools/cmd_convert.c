/* dflash convert HF_DIR OUT.gguf [--type T]: a Hugging Face checkpoint to a GGUF file. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/status.h"
#include "convert/convert.h"
#include "tools/cli_args.h"
#include "tools/commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dflash convert HF_DIR OUT.gguf [options]\n"
            "\n"
            "Converts a Hugging Face model directory (config.json, *.safetensors, tokenizer.json)\n"
            "into a GGUF file that dflash and llama.cpp load. Supported: Qwen3.5 / Qwen3.6 dense\n"
            "targets (Qwen3_5ForCausalLM, Qwen3_5ForConditionalGeneration) and DFlash drafters\n"
            "(DFlashDraftModel -> a lucebox-style qwen35-dflash-draft GGUF; q4_k_m is Q4_K for\n"
            "every drafter matrix).\n"
            "\n"
            "  --type T       f32 (default), f16, bf16, q8_0 or q4_k_m: the type of the weight\n"
            "                 matrices (norms, 1-D tensors and the conv kernels stay f32);\n"
            "                 q4_k_m is llama-quantize's Q4_K_M mix\n"
            "  -t, --threads N  threads for converting rows (default: all CPUs)\n"
            "  -q, --quiet    no progress display\n");
}

int cmd_convert(int argc, char **argv) {
    df_convert_opts o;
    df_convert_opts_init(&o);
    const char *paths[2] = {NULL, NULL};
    int n_paths = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--type") || !strncmp(a, "--type=", 7)) {
            const char *v = a[6] == '=' ? a + 7 : cli_value("convert", argc, argv, &i);
            if (!v) return 2;
            int t = df_convert_type_from_name(v);
            if (t < 0) {
                fprintf(stderr, "dflash convert: --type: '%s' is not one of f32, f16, bf16, q8_0, q4_k_m\n", v);
                return 2;
            }
            o.type = (df_convert_type)t;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            const char *v = cli_value("convert", argc, argv, &i);
            long long n;
            if (!v || !cli_int("convert", a, v, 1, 1024, &n)) return 2;
            o.n_threads = (int)n;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o.quiet = true;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "dflash convert: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (n_paths < 2) {
            paths[n_paths++] = a;
        } else {
            fprintf(stderr, "dflash convert: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (n_paths != 2) {
        usage(stderr);
        return 2;
    }
    df_status st = df_convert(paths[0], paths[1], &o);
    if (st != DF_OK) {
        fprintf(stderr, "dflash convert: %s (%s)\n", df_last_error(), df_status_name(st));
        return 1;
    }
    struct stat sb;
    if (stat(paths[1], &sb) == 0)
        fprintf(stderr, "dflash convert: wrote %s (%s, %.1f MiB)\n", paths[1], df_convert_type_name(o.type),
                (double)sb.st_size / (1024.0 * 1024.0));
    return 0;
}
