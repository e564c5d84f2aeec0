/* Text -> token ids: added tokens, NFC, the regex split, BPE per piece (with a word cache). */
#include <stdlib.h>
#include <string.h>

#include "text/bpe.h"
#include "text/nfc.h"
#include "text/tokenizer_internal.h"
#include "text/utf8.h"

/* The word cache maps a piece's bytes to its ids. Text repeats its words, so most pieces are
 * found here and never reach BPE. Bounded: past these sizes it is simply emptied. */
enum {
    CACHE_MAX_WORD = 64,           /* longer pieces are rare and not worth keeping */
    CACHE_MAX_ENTRIES = 1 << 16,      /* at most ~17 MB of cached ids */
};

struct df_tok_scratch {
    const df_tokenizer *tok;
    df_pretok_state *pretok;
    df_bpe_work bpe;
    df_strmap cache;     /* piece bytes -> offset of [count, ids...] in cache_ids */
    df_tokens cache_ids;
    df_tokens word;      /* ids of the piece being encoded */
    df_bytes clean;      /* the input with ill-formed UTF-8 repaired */
    df_bytes norm;       /* the NFC form of one stretch */
    df_bytes spelled;    /* byte-level spelling of a piece (ignore_merges lookups) */
};

df_status df_tok_scratch_new(const df_tokenizer *tok, df_tok_scratch **out) {
    *out = NULL;
    df_tok_scratch *s = calloc(1, sizeof *s);
    if (!s) return df_fail(DF_ERR_NOMEM, "tokenizer: out of memory for scratch");
    s->tok = tok;
    df_status st = df_pretok_state_new(tok->pretok, &s->pretok);
    if (st == DF_OK) st = df_strmap_init(&s->cache, 4096);
    if (st != DF_OK) {
        df_tok_scratch_free(s);
        return st;
    }
    *out = s;
    return DF_OK;
}

void df_tok_scratch_free(df_tok_scratch *s) {
    if (!s) return;
    df_pretok_state_free(s->pretok);
    df_bpe_work_free(&s->bpe);
    df_strmap_free(&s->cache);
    df_tokens_free(&s->cache_ids);
    df_tokens_free(&s->word);
    df_bytes_free(&s->clean);
    df_bytes_free(&s->norm);
    df_bytes_free(&s->spelled);
    free(s);
}

typedef struct encode_ctx {
    const df_tokenizer *tok;
    df_tok_scratch *s;
    df_tokens *out;
} encode_ctx;

/* One piece of the pre-tokenizer -> ids. */
static df_status encode_piece(void *vctx, const uint8_t *p, size_t n) {
    encode_ctx *c = vctx;
    const df_tokenizer *t = c->tok;
    df_tok_scratch *s = c->s;
    if (n == 1) return df_tokens_push(c->out, t->byte_to_id[p[0]]);
    if (t->ignore_merges) {
        df_bytes_clear(&s->spelled);
        DF_TRY(df_byte_level_encode(p, n, &s->spelled));
        int32_t id = df_strmap_get(&t->by_text, s->spelled.data, s->spelled.len);
        if (id >= 0 && t->kind[id] == DF_TOKEN_NORMAL) return df_tokens_push(c->out, id);
    }
    bool cacheable = n <= CACHE_MAX_WORD;
    uint64_t h = 0;
    if (cacheable) {
        h = df_strmap_hash(p, n);
        int32_t off = df_strmap_get_h(&s->cache, p, n, h);
        if (off >= 0) return df_tokens_append(c->out, s->cache_ids.ids + off + 1, (size_t)s->cache_ids.ids[off]);
    }
    s->word.n = 0;
    DF_TRY(df_bpe_word(t, &s->bpe, p, n, &s->word));
    DF_TRY(df_tokens_append(c->out, s->word.ids, s->word.n));
    if (cacheable) {
        if (s->cache.count >= CACHE_MAX_ENTRIES || s->cache_ids.n > INT32_MAX / 2) {
            df_strmap_clear(&s->cache);
            s->cache_ids.n = 0;
        }
        int32_t off = (int32_t)s->cache_ids.n;
        DF_TRY(df_tokens_push(&s->cache_ids, (int32_t)s->word.n));
        DF_TRY(df_tokens_append(&s->cache_ids, s->word.ids, s->word.n));
        DF_TRY(df_strmap_put_h(&s->cache, p, n, h, off, NULL));
    }
    return DF_OK;
}

/* A stretch of plain text between added tokens: normalise, split, encode. */
static df_status encode_stretch(encode_ctx *c, const uint8_t *p, size_t n) {
    if (n == 0) return DF_OK;
    if (c->tok->nfc && !df_nfc_quick_check(p, n)) {
        df_bytes_clear(&c->s->norm);
        DF_TRY(df_nfc_append(p, n, &c->s->norm));
        p = (const uint8_t *)c->s->norm.data;
        n = c->s->norm.len;
    }
    return df_pretok_split(c->tok->pretok, c->s->pretok, p, n, encode_piece, c);
}

/* Unicode White_Space, what Hugging Face's lstrip / rstrip remove. */
static bool is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

static size_t trim_end(const uint8_t *p, size_t n) {
    while (n > 0) {
        size_t start = n - 1;
        while (start > 0 && (p[start] & 0xC0) == 0x80) start--;
        uint32_t cp;
        df_utf8_decode_valid(p + start, &cp);
        if (!is_white_space(cp)) break;
        n = start;
    }
    return n;
}

static size_t skip_start(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = df_utf8_decode_valid(p + i, &cp);
        if (!is_white_space(cp)) break;
        i += len;
    }
    return i;
}

df_status df_tokenizer_encode(const df_tokenizer *tok, df_tok_scratch *scratch, const char *text, size_t len,
                              unsigned flags, df_tokens *out) {
    df_tok_scratch *own = NULL;
    if (!scratch) {
        DF_TRY(df_tok_scratch_new(tok, &own));
        scratch = own;
    } else if (scratch->tok != tok) {
        return df_fail(DF_ERR_INVALID, "tokenize: the scratch belongs to another tokenizer");
    }
    const uint8_t *p = (const uint8_t *)text;
    df_status st = DF_OK;
    if (!df_utf8_valid(p, len)) {
        df_bytes_clear(&scratch->clean);
        st = df_utf8_sanitize(p, len, &scratch->clean);
        p = (const uint8_t *)scratch->clean.data;
        len = scratch->clean.len;
    }
    encode_ctx c = {tok, scratch, out};
    bool special = flags & DF_TOKENIZE_SPECIAL;
    if (st == DF_OK && (flags & DF_TOKENIZE_ADD_BOS_EOS) && tok->add_bos && tok->bos >= 0)
        st = df_tokens_push(out, tok->bos);

    size_t start = 0, i = 0;
    while (st == DF_OK && i < len) {
        int32_t id;
        size_t m = tok->added.first_byte[p[i]] ? df_added_matcher_longest(&tok->added, tok, p + i, len - i, special, &id)
                                               : 0;
        if (m == 0) {
            i++;
            continue;
        }
        size_t end = i;
        if (tok->added_flags[id] & DF_ADDED_LSTRIP) end = start + trim_end(p + start, i - start);
        st = encode_stretch(&c, p + start, end - start);
        if (st == DF_OK) st = df_tokens_push(out, id);
        i += m;
        if (tok->added_flags[id] & DF_ADDED_RSTRIP) i += skip_start(p + i, len - i);
        start = i;
    }
    if (st == DF_OK) st = encode_stretch(&c, p + start, len - start);
    if (st == DF_OK && (flags & DF_TOKENIZE_ADD_BOS_EOS) && tok->add_eos && tok->eos >= 0)
        st = df_tokens_push(out, tok->eos);
    df_tok_scratch_free(own);
    return st;
}
