/* What the tokenizer's source files share: the tokenizer's fields, the builder both loaders
 * fill, and the parts (byte-level alphabet, BPE merge table, added-token matcher, regex
 * pre-tokenizer). Not part of the API. */
#ifndef DF_TEXT_TOKENIZER_INTERNAL_H
#define DF_TEXT_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/bytes.h"
#include "text/strmap.h"
#include "text/tokenizer.h"

/* ---- GPT-2's byte-level alphabet (byte_level.c) ------------------------------------------
 * Printable bytes stand for themselves; the other 68 bytes (controls, space, 0x7F-0xA0,
 * 0xAD) map to U+0100.. in byte order, so every byte becomes one visible character. */
uint32_t df_byte_to_cp(uint8_t b);
int df_cp_to_byte(uint32_t cp);  /* -1 when cp is not in the alphabet */
/* Appends the byte-level text of raw bytes (each byte as its UTF-8 alphabet character). */
df_status df_byte_level_encode(const uint8_t *p, size_t n, df_bytes *out);
/* Decodes byte-level text back to bytes; false (out unchanged) if a character is not in
 * the alphabet or the text is not well-formed UTF-8. */
bool df_byte_level_decode(const char *text, size_t len, df_bytes *out);

/* ---- BPE merges (bpe.c) ------------------------------------------------------------------- */

typedef struct df_merge_slot {
    uint64_t key;      /* (left id << 32) | right id, + 1 so that 0 means empty */
    int32_t rank;
    int32_t merged;    /* the id of left+right */
} df_merge_slot;

typedef struct df_merge_map {
    df_merge_slot *slots;
    size_t mask, count;
} df_merge_map;

df_status df_merge_map_init(df_merge_map *m, size_t expected);
void df_merge_map_free(df_merge_map *m);
/* Later puts of the same pair overwrite (as the Hugging Face loader does). */
df_status df_merge_map_put(df_merge_map *m, int32_t left, int32_t right, int32_t rank, int32_t merged);
const df_merge_slot *df_merge_map_get(const df_merge_map *m, int32_t left, int32_t right);

/* ---- pre-tokenizer (pretok.c) ------------------------------------------------------------- */

typedef struct df_pretok df_pretok;          /* a compiled pattern */
typedef struct df_pretok_state df_pretok_state;  /* per-thread match state */

df_status df_pretok_compile(const char *pattern, df_pretok **out);
void df_pretok_free(df_pretok *p);
df_status df_pretok_state_new(const df_pretok *p, df_pretok_state **out);
void df_pretok_state_free(df_pretok_state *s);

/* Calls piece() for each piece of text[0..n) (well-formed UTF-8) in order: every match of
 * the pattern and every stretch between matches ("Isolated" split behaviour). */
typedef df_status (*df_pretok_piece_fn)(void *ctx, const uint8_t *piece, size_t len);
df_status df_pretok_split(const df_pretok *p, df_pretok_state *s, const uint8_t *text, size_t n,
                          df_pretok_piece_fn piece, void *ctx);

/* ---- added tokens (added_tokens.c) ----------------------------------------------------------- */

enum { DF_ADDED_LSTRIP = 1, DF_ADDED_RSTRIP = 2 };

typedef struct df_trie_node {
    int32_t first_child, next_sibling;  /* -1 terminated */
    int32_t token;                      /* the token ending here, or -1 */
    uint8_t byte;
} df_trie_node;

typedef struct df_added_matcher {
    df_trie_node *nodes;
    size_t n_nodes, cap;
    uint8_t first_byte[256];  /* 1 when some added token starts with this byte */
} df_added_matcher;

df_status df_added_matcher_add(df_added_matcher *m, const char *text, size_t len, int32_t id);
void df_added_matcher_free(df_added_matcher *m);
/* The longest added token starting at p[0..n) that enabled() accepts: returns its length
 * (0 when none) and stores its id. */
size_t df_added_matcher_longest(const df_added_matcher *m, const df_tokenizer *tok, const uint8_t *p,
                                size_t n, bool special, int32_t *id);

/* ---- the tokenizer -------------------------------------------------------------------------- */

struct df_tokenizer {
    size_t n_tokens;
    df_bytes text_pool;       /* every token's stored text, NUL-separated */
    uint32_t *text_off, *text_len;
    df_bytes piece_pool;      /* every token's decoded bytes */
    uint32_t *piece_off, *piece_len;
    uint8_t *kind;            /* df_token_kind */
    uint8_t *added_flags;     /* DF_ADDED_* */
    df_strmap by_text;
    int32_t byte_to_id[256];

    df_merge_map merges;
    int32_t *merge_pairs;     /* 2 ids per merge, in rank order (for GGUF export) */
    size_t n_merges, merge_cap;

    df_added_matcher added;
    df_pretok *pretok;
    char *pattern;
    const char *pre_name;     /* "qwen2", "qwen35" or NULL */
    bool nfc;
    bool ignore_merges;       /* a piece that is itself a token is taken whole */

    int32_t bos, eos, pad;
    bool add_bos, add_eos;
};

/* Building (both loaders): begin, set every token, add merges in rank order, finish. */
df_status df_tok_build_begin(df_tokenizer **out, size_t n_tokens);
/* Tokens must be set in id order 0, 1, 2 ... (the pools are appended). */
df_status df_tok_build_token(df_tokenizer *t, int32_t id, const char *text, size_t len, df_token_kind kind,
                             unsigned added_flags);
/* After all tokens: the text index, byte table and decoded pieces. `where` names the source. */
df_status df_tok_build_index(df_tokenizer *t, const char *where);
/* Merge number `rank` of left + right (stored texts); `where` names it in messages. */
df_status df_tok_build_merge(df_tokenizer *t, const char *left, size_t left_len, const char *right,
                             size_t right_len, int32_t rank, const char *where);
/* Compiles the split pattern and the added-token matcher. */
df_status df_tok_build_finish(df_tokenizer *t, const char *pattern);

/* tokenizer.ggml.pre name of a pattern, or NULL. */
const char *df_tok_pre_name_of(const char *pattern);
/* The pattern of a tokenizer.ggml.pre name, or NULL. */
const char *df_tok_pattern_of(const char *pre_name);

#endif
