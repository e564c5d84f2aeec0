/* Byte-level BPE tokenizer and detokenizer, as the Qwen family uses them (GPT-2's byte
 * alphabet, merges by rank, a regex pre-tokenizer, NFC normalisation, added tokens).
 *
 * Encoding runs the Hugging Face `tokenizers` pipeline:
 *   1. added tokens are found in the raw text, leftmost first, longest at a position;
 *      control tokens (`special: true` in tokenizer.json, CONTROL in GGUF) only with
 *      DF_TOKENIZE_SPECIAL, user-defined ones (`special: false`) always; lstrip / rstrip
 *      flags eat the white space beside a match;
 *   2. each stretch of text between them is NFC-normalised,
 *   3. split by the pre-tokenizer regex (PCRE2, Unicode properties),
 *   4. each piece's bytes become byte-level symbols, merged by rank (lowest first, leftmost
 *      among equals) until no listed merge applies.
 * Ill-formed UTF-8 input is first repaired (each maximal ill-formed subpart -> U+FFFD).
 *
 * Sources: a Hugging Face tokenizer.json, or the tokenizer.ggml.* keys of a GGUF file
 * (model "gpt2", pre-tokenizer "qwen2" or "qwen35"). df_tokenizer_write_gguf converts the
 * first into the second.
 *
 * Threads: a df_tokenizer is immutable once loaded. Encoding needs a df_tok_scratch (word
 * cache, regex match state, buffers) that belongs to one thread at a time; pass NULL to use
 * a temporary one. */
#ifndef DF_TEXT_TOKENIZER_H
#define DF_TEXT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "text/bytes.h"
#include "text/utf8.h"

typedef struct df_tokenizer df_tokenizer;
typedef struct df_tok_scratch df_tok_scratch;
struct df_gguf;
struct df_gguf_writer;

/* Token kinds, numbered as GGUF's tokenizer.ggml.token_type (llama.cpp's llama_token_type). */
typedef enum df_token_kind {
    DF_TOKEN_UNDEFINED = 0,
    DF_TOKEN_NORMAL = 1,
    DF_TOKEN_UNKNOWN = 2,
    DF_TOKEN_CONTROL = 3,       /* special: <|im_start|>, <|endoftext|> ... */
    DF_TOKEN_USER_DEFINED = 4,  /* added but not special: <think>, <tool_call> ... */
    DF_TOKEN_UNUSED = 5,        /* padding entries ([PAD123]) */
    DF_TOKEN_BYTE = 6,
} df_token_kind;

/* The pre-tokenizer split patterns, as written in the models' tokenizer.json files; GGUF's
 * tokenizer.ggml.pre names them. qwen35 differs from qwen2 by \p{M}: combining marks stay
 * with the letters before them instead of joining punctuation runs. */
#define DF_PRE_QWEN2_PATTERN                                                              \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define DF_PRE_QWEN35_PATTERN                                                               \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| "             \
    "?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* ---- loading ------------------------------------------------------------------------- */

/* From a Hugging Face tokenizer.json (model BPE over the byte-level alphabet; normalizer
 * NFC or none; pre_tokenizer Split(regex, Isolated) + ByteLevel(use_regex false)). Anything
 * else is refused with a message naming the field. */
df_status df_tokenizer_load_json(const char *path, df_tokenizer **out);
df_status df_tokenizer_from_json(const char *json, size_t len, const char *name, df_tokenizer **out);

/* From a GGUF file's tokenizer.ggml.* keys. */
df_status df_tokenizer_from_gguf(const struct df_gguf *g, df_tokenizer **out);

void df_tokenizer_free(df_tokenizer *tok);  /* NULL is fine */

/* ---- facts --------------------------------------------------------------------------- */

size_t df_tokenizer_n_tokens(const df_tokenizer *tok);
df_token_kind df_tokenizer_kind(const df_tokenizer *tok, int32_t id);  /* UNDEFINED if out of range */
/* The token's text as the vocabulary stores it (byte-level alphabet for normal tokens). */
const char *df_tokenizer_text(const df_tokenizer *tok, int32_t id, size_t *len);
/* The id whose stored text is exactly text[0..len), or -1. */
int32_t df_tokenizer_find(const df_tokenizer *tok, const char *text, size_t len);
int32_t df_tokenizer_bos(const df_tokenizer *tok);  /* -1 when unset */
int32_t df_tokenizer_eos(const df_tokenizer *tok);
int32_t df_tokenizer_pad(const df_tokenizer *tok);
/* "qwen2" / "qwen35" when the split pattern is one of those, NULL for another pattern. */
const char *df_tokenizer_pre_name(const df_tokenizer *tok);
const char *df_tokenizer_pattern(const df_tokenizer *tok);

/* ---- encoding ------------------------------------------------------------------------ */

enum {
    DF_TOKENIZE_SPECIAL = 1u << 0,  /* match control tokens in the text */
    DF_TOKENIZE_ADD_BOS_EOS = 1u << 1,  /* add BOS / EOS where the tokenizer asks for them */
};

df_status df_tok_scratch_new(const df_tokenizer *tok, df_tok_scratch **out);
void df_tok_scratch_free(df_tok_scratch *s);

/* Appends the ids of text[0..len) to out. */
df_status df_tokenizer_encode(const df_tokenizer *tok, df_tok_scratch *scratch, const char *text,
                              size_t len, unsigned flags, df_tokens *out);

/* ---- decoding ------------------------------------------------------------------------ */

enum {
    DF_DETOK_SPECIAL = 1u << 0,  /* show control / unused tokens' text (else they are empty) */
};

/* The bytes one token stands for (may be part of a UTF-8 sequence). DF_ERR_INVALID for an
 * id outside the vocabulary. */
df_status df_tokenizer_piece(const df_tokenizer *tok, int32_t id, unsigned flags, const char **data,
                             size_t *len);

/* Appends the bytes of ids to out, as they are (a cut in the middle of a character stays cut). */
df_status df_tokenizer_decode(const df_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
                              df_bytes *out);

/* Streaming detokenizer: push ids as they are generated; only whole, well-formed UTF-8 ever
 * reaches out. Incomplete trailing bytes wait for the next token; bytes that can no longer
 * become a character turn into U+FFFD; flush emits what is left (U+FFFD for an unfinished
 * character). Plain struct: no allocation, no free. */
typedef struct df_detok_stream {
    const df_tokenizer *tok;
    unsigned flags;
    df_utf8_stream utf8;  /* the bytes of an unfinished character */
} df_detok_stream;

void df_detok_stream_init(df_detok_stream *s, const df_tokenizer *tok, unsigned flags);
df_status df_detok_stream_push(df_detok_stream *s, int32_t id, df_bytes *out);
df_status df_detok_stream_flush(df_detok_stream *s, df_bytes *out);

/* ---- conversion to GGUF metadata ------------------------------------------------------- */

/* What tokenizer.json does not say, taken from tokenizer_config.json / config.json. */
typedef struct df_tok_gguf_opts {
    int64_t n_vocab;            /* pad with "[PAD<i>]" UNUSED tokens up to this; 0: no padding */
    int32_t bos_id, eos_id, pad_id;  /* -1: not written */
    int add_bos, add_eos;       /* -1: not written; else 0 / 1 */
    const char *pre;            /* NULL: from the pattern (refused unless qwen2 / qwen35) */
    const char *chat_template;  /* NULL: not written */
} df_tok_gguf_opts;

void df_tok_gguf_opts_init(df_tok_gguf_opts *o);  /* all "not written" */

/* Adds tokenizer.ggml.{model,pre,tokens,token_type,merges,bos_token_id,eos_token_id,
 * padding_token_id,add_bos_token,add_eos_token} and tokenizer.chat_template to w, the way
 * llama.cpp's converter writes them. o may be NULL (nothing optional written). */
df_status df_tokenizer_write_gguf(const df_tokenizer *tok, struct df_gguf_writer *w,
                                  const df_tok_gguf_opts *o);

/* The fields of a tokenizer_config.json that the conversion needs. Strings malloc'd (NULL
 * when absent); add_* are -1 when absent. */
typedef struct df_tokenizer_config {
    char *bos_token, *eos_token, *pad_token;
    int add_bos_token, add_eos_token;
    char *chat_template;
} df_tokenizer_config;

df_status df_tokenizer_config_load(const char *path, df_tokenizer_config *out);
void df_tokenizer_config_free(df_tokenizer_config *c);
/* Fills bos/eos/pad ids and add_* of o from c, resolving token strings against tok;
 * a token string tok does not know is an error naming the field. */
df_status df_tok_gguf_opts_from_config(const df_tokenizer *tok, const df_tokenizer_config *c,
                                       df_tok_gguf_opts *o);

#endif
