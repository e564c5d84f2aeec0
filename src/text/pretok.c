/* The regex pre-tokenizer: PCRE2 with UTF and UCP, so that \p{L}, \p{N}, \p{M} and \s have
 * their Unicode meanings, JIT-compiled when the library can.
 *
 * Semantics of the Hugging Face Split pre-tokenizer with behaviour "Isolated": every match
 * is a piece, and so is every stretch of text between matches. The Qwen patterns match every
 * character, so in practice the pieces are the matches.
 *
 * Known, accepted differences from Hugging Face's engine (Oniguruma) come only from Unicode
 * tables of different versions, and from \s: PCRE2's \s also matches U+180E. */
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_internal.h"

#ifdef DFLASH_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

struct df_pretok {
    pcre2_code *code;
    bool jit;
};

struct df_pretok_state {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
};

df_status df_pretok_compile(const char *pattern, df_pretok **out) {
    *out = NULL;
    int err;
    PCRE2_SIZE erroff;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                     &err, &erroff, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return df_fail(DF_ERR_FORMAT, "pre-tokenizer pattern: %s at offset %zu of \"%s\"", (const char *)msg,
                       (size_t)erroff, pattern);
    }
    df_pretok *p = calloc(1, sizeof *p);
    if (!p) {
        pcre2_code_free(code);
        return df_fail(DF_ERR_NOMEM, "pre-tokenizer: out of memory");
    }
    p->code = code;
    /* JIT is an optimisation: without it (unsupported CPU, no executable memory) the
     * interpreter gives the same matches, slower. */
    p->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    *out = p;
    return DF_OK;
}

void df_pretok_free(df_pretok *p) {
    if (!p) return;
    pcre2_code_free(p->code);
    free(p);
}

df_status df_pretok_state_new(const df_pretok *p, df_pretok_state **out) {
    *out = NULL;
    df_pretok_state *s = calloc(1, sizeof *s);
    if (!s) return df_fail(DF_ERR_NOMEM, "pre-tokenizer: out of memory");
    s->md = pcre2_match_data_create_from_pattern(p->code, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    /* The Qwen patterns match megabytes of one character class within PCRE2's default
     * 32 KiB JIT stack (repeats of a single class do not stack), but a pattern from some
     * other tokenizer.json may nest deeper; 8 MiB of headroom, touched only as needed. */
    if (p->jit) s->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!s->md || !s->mctx || (p->jit && !s->jit_stack)) {
        df_pretok_state_free(s);
        return df_fail(DF_ERR_NOMEM, "pre-tokenizer: out of memory for match state");
    }
    if (s->jit_stack) pcre2_jit_stack_assign(s->mctx, NULL, s->jit_stack);
    *out = s;
    return DF_OK;
}

void df_pretok_state_free(df_pretok_state *s) {
    if (!s) return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit_stack);
    free(s);
}

df_status df_pretok_split(const df_pretok *p, df_pretok_state *s, const uint8_t *text, size_t n,
                          df_pretok_piece_fn piece, void *ctx) {
    size_t pos = 0, emitted = 0;
    while (pos < n) {
        /* The text was validated by the caller: skip PCRE2's own UTF-8 check, which would
         * otherwise rescan the rest of the text at every match (quadratic). */
        int rc = pcre2_match(p->code, (PCRE2_SPTR)text, n, pos, PCRE2_NO_UTF_CHECK, s->md, s->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return df_fail(DF_ERR_UNSUPPORTED, "pre-tokenizer: matching at byte %zu of %zu: %s", pos, n,
                           (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        size_t start = ov[0], end = ov[1];
        if (start > emitted) DF_TRY(piece(ctx, text + emitted, start - emitted));
        if (end > start) {
            DF_TRY(piece(ctx, text + start, end - start));
            emitted = pos = end;
        } else {
            /* An empty match: move on by one character, leaving it to the next stretch. */
            emitted = start;
            pos = start + 1;
            while (pos < n && (text[pos] & 0xC0) == 0x80) pos++;
        }
    }
    if (emitted < n) DF_TRY(piece(ctx, text + emitted, n - emitted));
    return DF_OK;
}

#else /* !DFLASH_HAVE_PCRE2 */

struct df_pretok { int unused; };
struct df_pretok_state { int unused; };

df_status df_pretok_compile(const char *pattern, df_pretok **out) {
    (void)pattern;
    *out = NULL;
    return df_fail(DF_ERR_UNSUPPORTED, "the tokenizer needs PCRE2: this build has none (install libpcre2-dev and reconfigure)");
}
void df_pretok_free(df_pretok *p) { (void)p; }
df_status df_pretok_state_new(const df_pretok *p, df_pretok_state **out) {
    (void)p;
    *out = NULL;
    return df_fail(DF_ERR_UNSUPPORTED, "the tokenizer needs PCRE2: this build has none");
}
void df_pretok_state_free(df_pretok_state *s) { (void)s; }
df_status df_pretok_split(const df_pretok *p, df_pretok_state *s, const uint8_t *text, size_t n,
                          df_pretok_piece_fn piece, void *ctx) {
    (void)p, (void)s, (void)text, (void)n, (void)piece, (void)ctx;
    return df_fail(DF_ERR_UNSUPPORTED, "the tokenizer needs PCRE2: this build has none");
}

#endif
