/* Errors are values. Every fallible function returns a df_status and, on failure, leaves a
 * human-readable message (naming the file, tensor, key or field, and what was expected) in a
 * thread-local buffer that df_last_error() returns until the next failure on that thread. */
#ifndef DF_BASE_STATUS_H
#define DF_BASE_STATUS_H

typedef enum df_status {
    DF_OK = 0,
    DF_ERR_IO,          /* open/read/write/mmap failed */
    DF_ERR_FORMAT,      /* the bytes do not follow the file format */
    DF_ERR_NOMEM,       /* an allocation failed or a size overflowed */
    DF_ERR_INVALID,     /* a caller passed a bad argument */
    DF_ERR_UNSUPPORTED, /* well-formed, but something we do not handle (type, version) */
    DF_ERR_NOT_FOUND,   /* a key, tensor or file that must exist does not */
    DF_ERR_MISMATCH,    /* two inputs that must agree do not (shapes, drafter vs target) */
} df_status;

/* Records a formatted message for the current thread and returns st, so that error paths
 * read `return df_fail(DF_ERR_FORMAT, "%s: offset %llu: ...", path, off);`. */
df_status df_fail(df_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends "context: " to the current message and returns st; for adding the outer layer's
 * view (e.g. the file name) to an error raised deeper down. */
df_status df_fail_context(df_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *df_last_error(void);
const char *df_status_name(df_status st);
void df_clear_error(void);

#define DF_TRY(expr)                          \
    do {                                      \
        df_status df_try_st_ = (expr);        \
        if (df_try_st_ != DF_OK) return df_try_st_; \
    } while (0)

#endif
