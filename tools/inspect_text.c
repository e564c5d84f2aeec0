/* Text rendering of dflash inspect's JSON description, for people. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/inspect.h"

/* Strings longer than this (chat templates) are cut in the text view. */
#define TEXT_STRING_MAX 72

void inspect_human_bytes(double bytes, char *buf, size_t cap) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        u++;
    }
    snprintf(buf, cap, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
}

static void print_value(const json_t *v) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        putchar('"');
        for (size_t i = 0; i < n && i < TEXT_STRING_MAX; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '\n') fputs("\\n", stdout);
            else if (c < 0x20) printf("\\x%02x", c);
            else putchar(c);
        }
        printf(n > TEXT_STRING_MAX ? "\"... (%zu bytes)" : "\"", n);
        return;
    }
    if (json_is_object(v) && json_object_get(v, "array_of")) {
        printf("[%s x %lld: ", json_string_value(json_object_get(v, "array_of")),
               (long long)json_integer_value(json_object_get(v, "count")));
        const json_t *first = json_object_get(v, "first");
        size_t i;
        const json_t *e;
        json_array_foreach(first, i, e) {
            if (i) fputs(", ", stdout);
            print_value(e);
        }
        fputs(", ...]", stdout);
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(8));
    fputs(s ? s : "?", stdout);
    free(s);
}

static void print_object(const char *title, const json_t *obj) {
    if (!obj) return;
    printf("%s:\n", title);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        printf("  %-40s ", k);
        print_value(v);
        putchar('\n');
    }
}

void inspect_print_text(const json_t *info, const inspect_opts *o) {
    char size[32];
    inspect_human_bytes((double)json_integer_value(json_object_get(info, "file_size")), size, sizeof size);
    printf("%s: %s", json_string_value(json_object_get(info, "path")),
           json_string_value(json_object_get(info, "format")));
    if (json_object_get(info, "version"))
        printf(" v%lld", (long long)json_integer_value(json_object_get(info, "version")));
    printf(", %s\n", size);
    const json_t *arch = json_object_get(info, "architecture");
    printf("architecture: ");
    print_value(arch ? arch : json_null());
    putchar('\n');
    print_object("hyperparameters", json_object_get(info, "hparams"));
    print_object("config", json_object_get(info, "config"));
    const json_t *meta = json_object_get(info, "metadata");
    if (meta) {
        printf("metadata (%zu keys):\n", json_array_size(meta));
        size_t i;
        const json_t *kv;
        json_array_foreach(meta, i, kv) {
            printf("  %-40s %-7s ", json_string_value(json_object_get(kv, "key")),
                   json_string_value(json_object_get(kv, "type")));
            print_value(json_object_get(kv, "value"));
            putchar('\n');
        }
    }
    inspect_human_bytes((double)json_integer_value(json_object_get(info, "tensor_bytes")), size, sizeof size);
    printf("tensors: %lld, %s\n", (long long)json_integer_value(json_object_get(info, "n_tensors")), size);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(info, "bytes_by_type"), k, v) {
        inspect_human_bytes((double)json_integer_value(v), size, sizeof size);
        printf("  %-8s %s\n", k, size);
    }
    if (!o->tensors) return;
    size_t i;
    const json_t *t;
    json_array_foreach(json_object_get(info, "tensors"), i, t) {
        printf("  %-48s %-6s [", json_string_value(json_object_get(t, "name")),
               json_string_value(json_object_get(t, "type")));
        size_t d;
        const json_t *dim;
        json_array_foreach(json_object_get(t, "shape"), d, dim)
            printf("%s%lld", d ? ", " : "", (long long)json_integer_value(dim));
        printf("]\n");
    }
}
