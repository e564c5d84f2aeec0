#include "tools/cli_args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cli_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi,
             long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "dflash %s: %s: '%s' is not an integer in [%lld, %lld]\n", cmd, opt, s, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_float(const char *cmd, const char *opt, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        fprintf(stderr, "dflash %s: %s: '%s' is not a number\n", cmd, opt, s);
        return false;
    }
    *out = v;
    return true;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "dflash %s: %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

bool cli_int_list(const char *cmd, const char *opt, const char *s, int32_t **out, int *n) {
    *out = NULL;
    *n = 0;
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return false;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "dflash %s: %s: '%s' is not a comma-separated list of token ids\n", cmd, opt, s);
            free(v);
            return false;
        }
        v[(*n)++] = (int32_t)x;
        if (!*end) break;
        p = end + 1;
    }
    *out = v;
    return true;
}
