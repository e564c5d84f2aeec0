#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_level = -1; /* -1: not yet read from the environment */

static df_log_level level_from_env(void) {
    const char *s = getenv("DFLASH_LOG");
    if (!s) return DF_LOG_INFO;
    if (!strcmp(s, "error")) return DF_LOG_ERROR;
    if (!strcmp(s, "warn")) return DF_LOG_WARN;
    if (!strcmp(s, "debug")) return DF_LOG_DEBUG;
    return DF_LOG_INFO;
}

void df_log_set_level(df_log_level level) { g_level = (int)level; }

df_log_level df_log_get_level(void) {
    if (g_level < 0) g_level = (int)level_from_env();
    return (df_log_level)g_level;
}

void df_log(df_log_level level, const char *fmt, ...) {
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if ((int)level > (int)df_log_get_level()) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so that lines from different threads do not interleave. */
    fprintf(stderr, "dflash: %s: %s\n", names[level], line);
}
