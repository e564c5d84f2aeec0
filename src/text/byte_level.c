/* GPT-2's reversible map between bytes and printable characters (`bytes_to_unicode` in
 * GPT-2's encoder.py, reused by Hugging Face's ByteLevel pre-tokenizer and decoder). */
#include <pthread.h>

#include "text/tokenizer_internal.h"
#include "text/utf8.h"

/* The bytes that stand for themselves: '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF. */
static bool is_direct(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* The alphabet has 256 characters, all below U+0144 (256 + 68 shifted bytes). */
enum { MAX_CP = 0x144 };
static uint16_t g_byte_cp[256];
static int16_t g_cp_byte[MAX_CP];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
    unsigned shifted = 0;
    for (unsigned cp = 0; cp < MAX_CP; cp++) g_cp_byte[cp] = -1;
    for (unsigned b = 0; b < 256; b++) {
        uint16_t cp = is_direct(b) ? (uint16_t)b : (uint16_t)(256 + shifted++);
        g_byte_cp[b] = cp;
        g_cp_byte[cp] = (int16_t)b;
    }
}

uint32_t df_byte_to_cp(uint8_t b) {
    pthread_once(&g_once, build_tables);
    return g_byte_cp[b];
}

int df_cp_to_byte(uint32_t cp) {
    pthread_once(&g_once, build_tables);
    return cp < MAX_CP ? g_cp_byte[cp] : -1;
}

df_status df_byte_level_encode(const uint8_t *p, size_t n, df_bytes *out) {
    DF_TRY(df_bytes_reserve(out, n * 2));
    for (size_t i = 0; i < n; i++) {
        uint8_t enc[4];
        size_t len = df_utf8_encode(df_byte_to_cp(p[i]), enc);
        DF_TRY(df_bytes_append(out, enc, len));
    }
    return DF_OK;
}

bool df_byte_level_decode(const char *text, size_t len, df_bytes *out) {
    const uint8_t *p = (const uint8_t *)text;
    size_t start = out->len;
    for (size_t i = 0; i < len;) {
        size_t n;
        if (df_utf8_check(p + i, len - i, &n) != DF_UTF8_OK) goto reject;
        uint32_t cp;
        df_utf8_decode_valid(p + i, &cp);
        int b = df_cp_to_byte(cp);
        if (b < 0) goto reject;
        uint8_t byte = (uint8_t)b;
        if (df_bytes_append(out, &byte, 1) != DF_OK) goto reject;
        i += n;
    }
    return true;
reject:
    out->len = start;
    if (out->data) out->data[start] = 0;
    return false;
}
