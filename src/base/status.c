#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { DF_ERROR_CAP = 1024 };
static _Thread_local char g_error[DF_ERROR_CAP];

df_status df_fail(df_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    return st;
}

df_status df_fail_context(df_status st, const char *fmt, ...) {
    char prefix[DF_ERROR_CAP / 2];
    char old[DF_ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_error, sizeof old);
    /* Truncation is acceptable here: the message is for people, and stays terminated. */
    size_t n = strlen(prefix);
    memcpy(g_error, prefix, n);
    size_t room = sizeof g_error - n;
    if (room > 2) {
        g_error[n] = ':';
        g_error[n + 1] = ' ';
        size_t m = strnlen(old, room - 3);
        memcpy(g_error + n + 2, old, m);
        g_error[n + 2 + m] = '\0';
    } else {
        g_error[n] = '\0';
    }
    return st;
}

const char *df_last_error(void) { return g_error[0] ? g_error : "no error"; }

void df_clear_error(void) { g_error[0] = '\0'; }

const char *df_status_name(df_status st) {
    switch (st) {
    case DF_OK: return "ok";
    case DF_ERR_IO: return "i/o error";
    case DF_ERR_FORMAT: return "format error";
    case DF_ERR_NOMEM: return "out of memory";
    case DF_ERR_INVALID: return "invalid argument";
    case DF_ERR_UNSUPPORTED: return "unsupported";
    case DF_ERR_NOT_FOUND: return "not found";
    case DF_ERR_MISMATCH: return "mismatch";
    }
    return "unknown status";
}
