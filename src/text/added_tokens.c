/* Finding added tokens (<|im_start|>, <think>, ...) in raw text: a byte trie walked from each
 * position, remembering the longest token that ends on the way. Scanning left to right and
 * taking the longest match at the first position that has one is the Hugging Face rule
 * (leftmost-longest). A table of possible first bytes lets most positions be skipped at once. */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "text/tokenizer_internal.h"

static df_status new_node(df_added_matcher *m, uint8_t byte, int32_t *out) {
    if (m->n_nodes == m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64, bytes;
        if (ncap > INT32_MAX || !df_mul_size(ncap, sizeof *m->nodes, &bytes))
            return df_fail(DF_ERR_NOMEM, "added tokens: trie too large");
        df_trie_node *p = realloc(m->nodes, bytes);
        if (!p) return df_fail(DF_ERR_NOMEM, "added tokens: out of memory");
        m->nodes = p;
        m->cap = ncap;
    }
    m->nodes[m->n_nodes] = (df_trie_node){-1, -1, -1, byte};
    *out = (int32_t)m->n_nodes++;
    return DF_OK;
}

df_status df_added_matcher_add(df_added_matcher *m, const char *text, size_t len, int32_t id) {
    if (len == 0) return df_fail(DF_ERR_FORMAT, "added token %d has empty content", (int)id);
    int32_t node;
    if (m->n_nodes == 0) DF_TRY(new_node(m, 0, &node)); /* the root */
    node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)text[i];
        int32_t child = m->nodes[node].first_child;
        while (child >= 0 && m->nodes[child].byte != b) child = m->nodes[child].next_sibling;
        if (child < 0) {
            DF_TRY(new_node(m, b, &child));
            m->nodes[child].next_sibling = m->nodes[node].first_child;
            m->nodes[node].first_child = child;
        }
        node = child;
    }
    /* Two added tokens with the same content: the first one keeps it. */
    if (m->nodes[node].token < 0) m->nodes[node].token = id;
    m->first_byte[(uint8_t)text[0]] = 1;
    return DF_OK;
}

void df_added_matcher_free(df_added_matcher *m) {
    free(m->nodes);
    memset(m, 0, sizeof *m);
}

size_t df_added_matcher_longest(const df_added_matcher *m, const df_tokenizer *tok, const uint8_t *p,
                                size_t n, bool special, int32_t *id) {
    if (m->n_nodes == 0 || n == 0 || !m->first_byte[p[0]]) return 0;
    size_t best = 0;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t child = m->nodes[node].first_child;
        while (child >= 0 && m->nodes[child].byte != p[i]) child = m->nodes[child].next_sibling;
        if (child < 0) break;
        node = child;
        int32_t t = m->nodes[node].token;
        if (t < 0) continue;
        uint8_t kind = tok->kind[t];
        /* Control and unknown tokens are text unless the caller asked for special tokens;
         * user-defined ones are always matched (llama.cpp and Hugging Face agree). */
        if (!special && (kind == DF_TOKEN_CONTROL || kind == DF_TOKEN_UNKNOWN)) continue;
        best = i + 1;
        *id = t;
    }
    return best;
}
