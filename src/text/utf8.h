/* UTF-8 helpers shared by the normaliser, the tokenizer and the streaming detokenizer.
 *
 * Well-formedness follows the Unicode Standard, table 3-7: no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF. Ill-formed input is replaced by U+FFFD one
 * "maximal subpart" at a time (Unicode 3.9, "U+FFFD Substitution of Maximal Subparts"), the
 * practice of the WHATWG decoder (node, browsers) and of Python's errors="replace". */
#ifndef DF_TEXT_UTF8_H
#define DF_TEXT_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "text/bytes.h"

typedef enum df_utf8_check_result {
    DF_UTF8_OK,          /* *len = length of a complete, well-formed sequence */
    DF_UTF8_INCOMPLETE,  /* all n bytes are a well-formed prefix of a longer sequence */
    DF_UTF8_INVALID,     /* *len = bytes of the maximal ill-formed subpart (>= 1) */
} df_utf8_check_result;

/* Classifies the sequence starting at p (n >= 1 bytes available). */
df_utf8_check_result df_utf8_check(const uint8_t *p, size_t n, size_t *len);

/* True when all n bytes are well-formed UTF-8. */
bool df_utf8_valid(const uint8_t *p, size_t n);

/* Appends p[0..n) to out with every ill-formed subpart (a truncated tail included) replaced
 * by U+FFFD. */
df_status df_utf8_sanitize(const uint8_t *p, size_t n, df_bytes *out);

/* Decodes one code point from well-formed input (callers validated it); returns its length. */
static inline size_t df_utf8_decode_valid(const uint8_t *p, uint32_t *cp) {
    uint8_t b = p[0];
    if (b < 0x80) { *cp = b; return 1; }
    if (b < 0xE0) { *cp = ((uint32_t)(b & 0x1F) << 6) | (p[1] & 0x3F); return 2; }
    if (b < 0xF0) {
        *cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
          ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
    return 4;
}

/* Encodes a scalar value (<= U+10FFFF, not a surrogate) into out[0..4); returns the length. */
static inline size_t df_utf8_encode(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* A push-style decoder that only ever emits whole, well-formed sequences: an incomplete
 * tail is held back until more bytes arrive, and becomes U+FFFD only when it is provably
 * ill-formed or when the stream is flushed. */
typedef struct df_utf8_stream {
    uint8_t pending[4];
    uint8_t n_pending;
} df_utf8_stream;

void df_utf8_stream_init(df_utf8_stream *s);
df_status df_utf8_stream_push(df_utf8_stream *s, const uint8_t *p, size_t n, df_bytes *out);
df_status df_utf8_stream_flush(df_utf8_stream *s, df_bytes *out);

#endif
