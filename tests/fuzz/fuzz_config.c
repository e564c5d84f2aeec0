/* libFuzzer target: config.json parsing and the getters. The input's first line (up to 256
 * bytes) is a field path, the rest the JSON text; every getter is tried on that path and on
 * a few fixed ones. */
#include <stdlib.h>
#include <string.h>

#include "format/config.h"

static void probe(const df_config *cfg, const char *path) {
    int64_t i;
    double d;
    bool b;
    const char *s;
    size_t n;
    int64_t *ia;
    double *da;
    const char **sa;
    (void)df_config_has(cfg, path);
    (void)df_config_get_int(cfg, path, &i);
    (void)df_config_get_float(cfg, path, &d);
    (void)df_config_get_bool(cfg, path, &b);
    if (df_config_get_str(cfg, path, &s) == DF_OK && strlen(s) == (size_t)-1) __builtin_trap();
    (void)df_config_get_int_or(cfg, path, 1, &i);
    (void)df_config_get_float_or(cfg, path, 1.0, &d);
    (void)df_config_get_bool_or(cfg, path, true, &b);
    (void)df_config_get_str_or(cfg, path, "x", &s);
    (void)df_config_array_len(cfg, path, &n);
    if (df_config_get_int_array(cfg, path, &ia, &n) == DF_OK) free(ia);
    if (df_config_get_float_array(cfg, path, &da, &n) == DF_OK) free(da);
    if (df_config_get_str_array(cfg, path, &sa, &n) == DF_OK) {
        for (size_t k = 0; k < n; k++)
            if (!sa[k]) __builtin_trap();
        free(sa);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nl = memchr(data, '\n', size < 256 ? size : 256);
    size_t path_len = nl ? (size_t)(nl - data) : 0;
    char path[257];
    memcpy(path, data, path_len);
    path[path_len] = '\0';
    const char *text = nl ? (const char *)nl + 1 : (const char *)data;
    size_t len = nl ? size - path_len - 1 : size;

    df_config *cfg;
    if (df_config_parse(text, len, "fuzz.json", &cfg) != DF_OK) return 0;
    probe(cfg, path);
    static const char *const fixed[] = {"a", "a.b", "a.0", "text_config.hidden_size", "x.1.y", "0"};
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++) probe(cfg, fixed[k]);
    df_config_close(cfg);
    return 0;
}
