/* dflash mkmodel --preset NAME [--drafter] [--type T] [--seed S] OUT.gguf: a random-weight
 * qwen35 file in the shape of a published model, or (--drafter) the DFlash drafter that goes
 * with it, for benchmarks at real sizes (docs/MKMODEL.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/status.h"
#include "convert/mkmodel.h"
#include "tools/cli_args.h"
#include "tools/commands.h"

#define CMD "mkmodel"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dflash mkmodel --preset NAME [options] OUT.gguf\n"
            "       dflash mkmodel --preset NAME --drafter [options] DRAFT.gguf\n"
            "\n"
            "Writes a qwen35 GGUF with pseudo-random weights and the exact shapes of a published\n"
            "model (the metadata, tensors and type recipe of `dflash convert`; no tokenizer).\n"
            "For benchmarks: the forward pass gives finite logits, not meaningful text.\n"
            "With --drafter it writes, instead, the DFlash drafter for that target: the shape of\n"
            "the drafter published for the model (z-lab's, see --list), or a documented shape of\n"
            "our own where none is published. Make both with the same --preset and --set:\n"
            "    dflash mkmodel --preset qwen3.6-27b --type q4_k_m T.gguf\n"
            "    dflash mkmodel --preset qwen3.6-27b --type q4_k_m --drafter D.gguf\n"
            "    dflash bench -m T.gguf --draft D.gguf\n"
            "\n"
            "  --preset NAME     the shape (see --list)\n"
            "  --drafter         write the target's DFlash drafter instead of the target\n"
            "  --type T          f32 (default), f16, bf16, q8_0 or q4_k_m (a drafter's q4_k_m is\n"
            "                    Q4_K for every matrix, as `dflash convert` writes drafters)\n"
            "  --seed S          the random seed (default 0); same seed, same bytes\n"
            "  --set KEY=VALUE   change one config.json field of the preset (the target), e.g.\n"
            "                    --set num_hidden_layers=8 (repeatable); a drafter follows the\n"
            "                    target's hidden size, vocabulary and depth\n"
            "  --unique-rows     draw every row of every tensor (slow: bound by the quantizer);\n"
            "                    by default large tensors copy rows from pools of random rows\n"
            "                    quantized once, so writing is bound by the disk\n"
            "  -t, --threads N   threads (default: all CPUs)\n"
            "  -q, --quiet       no progress display\n"
            "  --dry-run         print the size of the file and write nothing\n"
            "  --list            list the presets and exit\n");
}

static void list_presets(FILE *f) {
    fprintf(f, "%-14s %-20s %7s %6s %6s %6s %4s %8s %6s %8s  %s\n", "preset", "shape of", "layers", "hidden", "ffn",
            "heads", "kv", "lin k/v", "tied", "params", "drafter");
    for (size_t i = 0; i < df_mkmodel_n_presets(); i++) {
        const df_mkmodel_config *c = df_mkmodel_preset_at(i);
        df_mkmodel_size sz;
        char params[32] = "?";
        if (df_mkmodel_estimate(c, DF_CONVERT_F32, &sz) == DF_OK)
            snprintf(params, sizeof params, "%.2f B", (double)sz.n_params / 1e9);
        else df_clear_error();
        char lin[24];
        snprintf(lin, sizeof lin, "%lld/%lld", (long long)c->linear_num_key_heads, (long long)c->linear_num_value_heads);
        df_mkmodel_drafter d;
        const char *drafter = "?";
        if (df_mkmodel_drafter_for(c, &d) == DF_OK) drafter = d.source ? d.source : "own shape";
        else df_clear_error();
        fprintf(f, "%-14s %-20s %7lld %6lld %6lld %6lld %4lld %8s %6s %8s  %s\n", c->name, c->source ? c->source : "-",
                (long long)c->num_hidden_layers, (long long)c->hidden_size, (long long)c->intermediate_size,
                (long long)c->num_attention_heads, (long long)c->num_key_value_heads, lin,
                c->tie_word_embeddings ? "yes" : "no", params, drafter);
    }
}

int cmd_mkmodel(int argc, char **argv) {
    df_mkmodel_opts o;
    df_mkmodel_opts_init(&o);
    const char *preset = NULL, *out = NULL;
    bool dry_run = false, drafter = false;
    /* --set applies after --preset whatever the order on the line: keep them until then. */
    const char **sets = calloc((size_t)argc, sizeof *sets);
    int n_sets = 0, rc = 2;
    if (!sets) {
        fprintf(stderr, "dflash %s: out of memory\n", CMD);
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "--list")) {
            list_presets(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "--drafter")) {
            drafter = true;
        } else if (!strcmp(a, "--unique-rows")) {
            o.unique_rows = true;
        } else if (!strcmp(a, "--dry-run")) {
            dry_run = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o.quiet = true;
        } else if (!strcmp(a, "--preset")) {
            if (!(preset = cli_value(CMD, argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--set")) {
            if (!(v = cli_value(CMD, argc, argv, &i))) goto done;
            sets[n_sets++] = v;
        } else if (!strcmp(a, "--type")) {
            if (!(v = cli_value(CMD, argc, argv, &i))) goto done;
            int t = df_convert_type_from_name(v);
            if (t < 0) {
                fprintf(stderr, "dflash %s: --type: '%s' is not one of f32, f16, bf16, q8_0, q4_k_m\n", CMD, v);
                goto done;
            }
            o.type = (df_convert_type)t;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || !cli_int(CMD, a, v, 0, INT64_MAX, &n)) goto done;
            o.seed = (uint64_t)n;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = cli_value(CMD, argc, argv, &i)) || !cli_int(CMD, a, v, 1, 1024, &n)) goto done;
            o.n_threads = (int)n;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "dflash %s: unknown option '%s'\n", CMD, a);
            usage(stderr);
            goto done;
        } else if (!out) {
            out = a;
        } else {
            fprintf(stderr, "dflash %s: unexpected argument '%s'\n", CMD, a);
            goto done;
        }
    }
    if (!preset || (!out && !dry_run)) {
        usage(stderr);
        goto done;
    }
    const df_mkmodel_config *base = df_mkmodel_preset(preset);
    if (!base) {
        fprintf(stderr, "dflash %s: --preset: no preset '%s'; these exist:\n", CMD, preset);
        list_presets(stderr);
        goto done;
    }
    df_mkmodel_config c = *base;
    for (int k = 0; k < n_sets; k++) {
        char key[64];
        const char *eq = strchr(sets[k], '=');
        if (!eq || eq == sets[k] || (size_t)(eq - sets[k]) >= sizeof key) {
            fprintf(stderr, "dflash %s: --set: '%s' is not KEY=VALUE\n", CMD, sets[k]);
            goto done;
        }
        memcpy(key, sets[k], (size_t)(eq - sets[k]));
        key[eq - sets[k]] = 0;
        if (df_mkmodel_set(&c, key, eq + 1) != DF_OK) {
            fprintf(stderr, "dflash %s: --set: %s\n", CMD, df_last_error());
            goto done;
        }
    }

    df_mkmodel_size sz;
    df_mkmodel_drafter d;
    if (drafter) {
        if (df_mkmodel_drafter_for(&c, &d) != DF_OK || df_mkmodel_drafter_estimate(&d, o.type, &sz) != DF_OK) {
            fprintf(stderr, "dflash %s: --drafter: %s\n", CMD, df_last_error());
            rc = 1;
            goto done;
        }
        fprintf(stderr, "dflash %s: drafter %s (%s) for %s %s: %zu tensors, %.3f B parameters, %.1f MiB of tensor "
                        "data\n", CMD, d.name, d.source ? d.source : "own shape", c.name, df_convert_type_name(o.type),
                sz.n_tensors, (double)sz.n_params / 1e9, (double)sz.data_bytes / (1024.0 * 1024.0));
    } else {
        if (df_mkmodel_estimate(&c, o.type, &sz) != DF_OK) {
            fprintf(stderr, "dflash %s: %s\n", CMD, df_last_error());
            rc = 1;
            goto done;
        }
        fprintf(stderr, "dflash %s: %s (%s) %s: %zu tensors, %.3f B parameters, %.1f MiB of tensor data\n", CMD,
                c.name, c.source ? c.source : "own shape", df_convert_type_name(o.type), sz.n_tensors,
                (double)sz.n_params / 1e9, (double)sz.data_bytes / (1024.0 * 1024.0));
    }
    if (dry_run) {
        rc = 0;
        goto done;
    }
    if ((drafter ? df_mkmodel_write_drafter(&d, &c, out, &o) : df_mkmodel_write(&c, out, &o)) != DF_OK) {
        fprintf(stderr, "dflash %s: %s\n", CMD, df_last_error());
        rc = 1;
        goto done;
    }
    struct stat sb;
    if (stat(out, &sb) == 0)
        fprintf(stderr, "dflash %s: wrote %s (%.1f MiB)\n", CMD, out, (double)sb.st_size / (1024.0 * 1024.0));
    rc = 0;
done:
    free(sets);
    return rc;
}
