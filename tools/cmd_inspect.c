/* dflash inspect PATH: what a model file holds. PATH is a .gguf file, a .safetensors file or
 * a Hugging Face model directory (config.json + safetensors weights). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/cli_default_model.h"
#include "tools/commands.h"
#include "tools/inspect.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dflash inspect PATH [--tensors] [--json]\n"
               "  PATH       a .gguf file, a .safetensors file or a Hugging Face model directory\n"
               "  --tensors  list every tensor with its type and shape\n"
               "  --json     print one JSON object instead of text\n");
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* GGUF files start with "GGUF"; anything else is treated as safetensors. */
static bool looks_like_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return ends_with(path, ".gguf");
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

int cmd_inspect(int argc, char **argv) {
    inspect_opts o = {0};
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tensors")) o.tensors = true;
        else if (!strcmp(argv[i], "--json")) o.json = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "dflash inspect: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!cli_default_pair("inspect", &path, NULL)) return 2;
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "dflash inspect: %s: no such file or directory\n", path);
        return 1;
    }
    json_t *info = json_object();
    if (!info) return 1;
    int rc = (!S_ISDIR(st.st_mode) && looks_like_gguf(path)) ? inspect_gguf(path, &o, info)
                                                             : inspect_safetensors(path, &o, info);
    if (rc == 0) {
        if (o.json) {
            char *s = json_dumps(info, JSON_INDENT(1) | JSON_ENSURE_ASCII);
            if (s) printf("%s\n", s);
            else rc = 1;
            free(s);
        } else {
            inspect_print_text(info, &o);
        }
    }
    json_decref(info);
    return rc;
}
