/* libFuzzer target: the tokenizer's text path on arbitrary bytes (UTF-8 repair, added-token
 * matching, NFC, the regex split, BPE) and the detokenizers. A small byte-level tokenizer
 * with the qwen35 split is built once. Invariants that trap:
 *   - decode(encode(x)) == NFC(repair(x))  (no control tokens are matched without the flag);
 *   - NFC is idempotent;
 *   - the streaming detokenizer, fed the same ids, emits only well-formed UTF-8 at every step
 *     and in total the repair of the plain decode. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/nfc.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

static df_tokenizer *g_tok;

static size_t put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;  /* the byte-level alphabet stays below U+0800 */
}

static uint32_t byte_char(int b) {
    int shifted = 0;
    for (int x = 0; x <= b; x++) {
        bool direct = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
        if (x == b) return direct ? (uint32_t)b : 256 + (uint32_t)shifted;
        if (!direct) shifted++;
    }
    return 0;
}

static void build(void) {
    json_t *vocab = json_object(), *merges = json_array();
    char ch[256][4];
    for (int b = 0; b < 256; b++) {
        ch[b][put_utf8(ch[b], byte_char(b))] = 0;
        json_object_set_new(vocab, ch[b], json_integer(b));
    }
    int next = 256;
    const char *pairs[][2] = {{"t", "h"}, {"th", "e"}, {ch[' '], "the"}, {"i", "n"}, {ch[' '], ch[' ']},
                              {"e", "r"}, {ch[0xC3], ch[0xA9]}, {ch[0xE4], ch[0xBD]}};
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        char joined[32];
        snprintf(joined, sizeof joined, "%s%s", pairs[i][0], pairs[i][1]);
        if (!json_object_get(vocab, joined)) json_object_set_new(vocab, joined, json_integer(next++));
        json_array_append_new(merges, json_pack("[s, s]", pairs[i][0], pairs[i][1]));
    }
    json_t *root = json_pack(
        "{s:[{s:i, s:s, s:b}], s:{s:s}, s:{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}]}, s:{s:s, s:o, s:o}}",
        "added_tokens", "id", next, "content", "<|im_start|>", "special", 1, "normalizer", "type", "NFC",
        "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex",
        DF_PRE_QWEN35_PATTERN, "behavior", "Isolated", "type", "ByteLevel", "model", "type", "BPE", "vocab", vocab,
        "merges", merges);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text || df_tokenizer_from_json(text, strlen(text), "fuzz", &g_tok) != DF_OK) __builtin_trap();
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) build();
    df_tokens ids = {0};
    df_bytes plain = {0}, repaired = {0}, want = {0}, again = {0}, streamed = {0};
    if (df_tokenizer_encode(g_tok, NULL, (const char *)data, size, DF_TOKENIZE_SPECIAL, &ids) != DF_OK) __builtin_trap();
    ids.n = 0;
    if (df_tokenizer_encode(g_tok, NULL, (const char *)data, size, 0, &ids) != DF_OK) __builtin_trap();
    if (df_tokenizer_decode(g_tok, ids.ids, ids.n, DF_DETOK_SPECIAL, &plain) != DF_OK) __builtin_trap();

    if (df_utf8_sanitize(data, size, &repaired) != DF_OK) __builtin_trap();
    if (df_nfc_append((const uint8_t *)repaired.data, repaired.len, &want) != DF_OK) __builtin_trap();
    if (plain.len != want.len || (want.len && memcmp(plain.data, want.data, want.len))) __builtin_trap();
    if (df_nfc_append((const uint8_t *)want.data, want.len, &again) != DF_OK) __builtin_trap();
    if (again.len != want.len || (want.len && memcmp(again.data, want.data, want.len))) __builtin_trap();

    df_detok_stream ds;
    df_detok_stream_init(&ds, g_tok, DF_DETOK_SPECIAL);
    for (size_t i = 0; i < ids.n; i++) {
        size_t before = streamed.len;
        if (df_detok_stream_push(&ds, ids.ids[i], &streamed) != DF_OK) __builtin_trap();
        if (!df_utf8_valid((const uint8_t *)streamed.data + before, streamed.len - before)) __builtin_trap();
    }
    if (df_detok_stream_flush(&ds, &streamed) != DF_OK) __builtin_trap();
    if (streamed.len != plain.len || (plain.len && memcmp(streamed.data, plain.data, plain.len))) __builtin_trap();

    df_tokens_free(&ids);
    df_bytes_free(&plain);
    df_bytes_free(&repaired);
    df_bytes_free(&want);
    df_bytes_free(&again);
    df_bytes_free(&streamed);
    return 0;
}
