/* libFuzzer target: loading a tokenizer.json from arbitrary bytes. An accepted file is used:
 * a fixed multilingual text (with added-token look-alikes) is encoded both ways and decoded,
 * and every id's piece and text are read (ASan flags any read outside the pools). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer.h"

static const char k_text[] = "Hello the world, it's <|im_start|>user\n<think> caf\xC3\xA9 cafe\xCC\x81 "
                             "\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\xA6\x99 12345  \t\r\n x\xFF";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    df_tokenizer *tok = NULL;
    if (df_tokenizer_from_json((const char *)data, size, "fuzz.json", &tok) != DF_OK) {
        if (tok) __builtin_trap();  /* failure must leave no tokenizer */
        return 0;
    }
    df_tokens ids = {0};
    df_bytes out = {0};
    for (unsigned flags = 0; flags < 2; flags++) {
        ids.n = 0;
        if (df_tokenizer_encode(tok, NULL, k_text, sizeof k_text - 1, flags, &ids) != DF_OK) continue;
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || (size_t)ids.ids[i] >= df_tokenizer_n_tokens(tok)) __builtin_trap();
        df_bytes_clear(&out);
        if (df_tokenizer_decode(tok, ids.ids, ids.n, DF_DETOK_SPECIAL, &out) != DF_OK) __builtin_trap();
    }
    size_t n = df_tokenizer_n_tokens(tok);
    for (size_t id = 0; id < n && id < 4096; id++) {
        const char *p;
        size_t len;
        if (df_tokenizer_piece(tok, (int32_t)id, DF_DETOK_SPECIAL, &p, &len) != DF_OK) __builtin_trap();
        volatile char sink = len ? p[len - 1] : 0;
        (void)sink;
        const char *t = df_tokenizer_text(tok, (int32_t)id, &len);
        if (!t || df_tokenizer_find(tok, t, len) != (int32_t)id) __builtin_trap();
    }
    df_tokens_free(&ids);
    df_bytes_free(&out);
    df_tokenizer_free(tok);
    return 0;
}
