#include "text/nfc.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "text/unicode_tables.h"
#include "text/utf8.h"

/* Hangul syllables are composed / decomposed by arithmetic (Unicode 3.12). */
enum {
    S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7,
    L_COUNT = 19, V_COUNT = 21, T_COUNT = 28,
    N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT,
};

enum { QC_YES = 0 };

static inline uint16_t props(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    return df_uni_stage2[(size_t)df_uni_stage1[cp >> 8] * 256 + (cp & 0xFF)];
}

uint8_t df_unicode_ccc(uint32_t cp) { return (uint8_t)(props(cp) & DF_UNI_CCC_MASK); }

const char *df_unicode_version(void) { return df_uni_version; }

bool df_nfc_quick_check(const uint8_t *p, size_t n) {
    uint8_t last_ccc = 0;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) { /* ASCII: a starter, NFC_QC=Yes */
            last_ccc = 0;
            i++;
            continue;
        }
        uint32_t cp;
        i += df_utf8_decode_valid(p + i, &cp);
        uint16_t pr = props(cp);
        uint8_t ccc = (uint8_t)(pr & DF_UNI_CCC_MASK);
        if (ccc != 0 && last_ccc > ccc) return false;          /* marks out of order */
        if (((pr & DF_UNI_QC_MASK) >> DF_UNI_QC_SHIFT) != QC_YES) return false;
        last_ccc = ccc;
    }
    return true;
}

/* A growable array of code points. */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} cp_buf;

static df_status cp_push(cp_buf *b, uint32_t cp) {
    if (b->n == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 64, bytes;
        if (!df_mul_size(ncap, sizeof *b->v, &bytes)) return df_fail(DF_ERR_NOMEM, "nfc: text too long");
        uint32_t *nv = realloc(b->v, bytes);
        if (!nv) return df_fail(DF_ERR_NOMEM, "nfc: out of memory");
        b->v = nv;
        b->cap = ncap;
    }
    b->v[b->n++] = cp;
    return DF_OK;
}

static bool find_decomposition(uint32_t cp, const uint32_t **seq, size_t *len) {
    size_t lo = 0, hi = df_uni_decomp_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (df_uni_decomp_cp[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo == df_uni_decomp_count || df_uni_decomp_cp[lo] != cp) return false;
    uint16_t ix = df_uni_decomp_index[lo];
    *seq = df_uni_decomp_pool + (ix >> 2);
    *len = ix & 3;
    return true;
}

/* Full canonical decomposition: the table holds one level; mappings can themselves
 * decompose (e.g. U+1E09 -> U+00E7 U+0301 -> U+0063 U+0327 U+0301), hence the recursion,
 * whose depth the data keeps below 5. */
static df_status decompose(uint32_t cp, cp_buf *out) {
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE;
        DF_TRY(cp_push(out, L_BASE + s / N_COUNT));
        DF_TRY(cp_push(out, V_BASE + (s % N_COUNT) / T_COUNT));
        if (s % T_COUNT) DF_TRY(cp_push(out, T_BASE + s % T_COUNT));
        return DF_OK;
    }
    const uint32_t *seq;
    size_t len;
    if (!(props(cp) & DF_UNI_HAS_DECOMP) || !find_decomposition(cp, &seq, &len))
        return cp_push(out, cp);
    for (size_t i = 0; i < len; i++) DF_TRY(decompose(seq[i], out));
    return DF_OK;
}

/* The primary composite of (a, b), or 0 when there is none. */
static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    uint64_t key = ((uint64_t)a << 21) | b;
    size_t lo = 0, hi = df_uni_comp_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (df_uni_comp_key[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo < df_uni_comp_count && df_uni_comp_key[lo] == key ? df_uni_comp_value[lo] : 0;
}

/* Canonical ordering: a stable sort of each run of non-starters by combining class.
 * Runs are almost always a handful of marks: insertion sort. A long run (hostile input: a
 * million alternating accents) goes through a stable counting sort instead, so that the
 * cost stays linear. tmp has room for n code points. */
static void sort_run(uint32_t *v, size_t n, uint32_t *tmp) {
    if (n <= 32) {
        for (size_t i = 1; i < n; i++) {
            uint32_t cp = v[i];
            uint8_t c = df_unicode_ccc(cp);
            size_t j = i;
            while (j > 0 && df_unicode_ccc(v[j - 1]) > c) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = cp;
        }
        return;
    }
    size_t start[257] = {0};
    for (size_t i = 0; i < n; i++) start[df_unicode_ccc(v[i]) + 1]++;
    for (int c = 0; c < 256; c++) start[c + 1] += start[c];
    for (size_t i = 0; i < n; i++) tmp[start[df_unicode_ccc(v[i])]++] = v[i];
    memcpy(v, tmp, n * sizeof *v);
}

static df_status canonical_order(uint32_t *v, size_t n) {
    uint32_t *tmp = NULL;
    for (size_t i = 0; i < n;) {
        if (df_unicode_ccc(v[i]) == 0) {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < n && df_unicode_ccc(v[j]) != 0) j++;
        if (j - i > 32 && !tmp && !(tmp = malloc(n * sizeof *tmp))) return df_fail(DF_ERR_NOMEM, "nfc: out of memory");
        sort_run(v + i, j - i, tmp);
        i = j;
    }
    free(tmp);
    return DF_OK;
}

/* Canonical composition (UAX #15, "Canonical Composition Algorithm"): each character C is
 * combined with the last starter S when C is not blocked from S, i.e. nothing between them
 * has a combining class of zero or >= ccc(C). Returns the new length. */
static size_t compose(uint32_t *v, size_t n) {
    if (n == 0) return 0;
    size_t starter = 0, out = 1;
    /* 256 > any class: a leading non-starter blocks everything after it from "starter". */
    int last_class = df_unicode_ccc(v[0]) ? 256 : 0;
    bool have_starter = last_class == 0;
    for (size_t i = 1; i < n; i++) {
        uint32_t c = v[i];
        int cc = df_unicode_ccc(c);
        if (have_starter && (last_class < cc || last_class == 0)) {
            uint32_t comp = compose_pair(v[starter], c);
            if (comp) {
                v[starter] = comp;
                continue;
            }
        }
        if (cc == 0) {
            starter = out;
            have_starter = true;
        }
        last_class = cc;
        v[out++] = c;
    }
    return out;
}

/* Normalises one region that starts at a starter and ends before a "safe" character. */
static df_status normalize_region(const uint8_t *p, size_t n, cp_buf *cps, df_bytes *out) {
    cps->n = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += df_utf8_decode_valid(p + i, &cp);
        DF_TRY(decompose(cp, cps));
    }
    DF_TRY(canonical_order(cps->v, cps->n));
    size_t m = compose(cps->v, cps->n);
    DF_TRY(df_bytes_reserve(out, m * 4));
    for (size_t i = 0; i < m; i++) {
        uint8_t enc[4];
        size_t len = df_utf8_encode(cps->v[i], enc);
        DF_TRY(df_bytes_append(out, enc, len));
    }
    return DF_OK;
}

/* Only the regions that fail the quick check are normalised; the rest is copied. A region
 * runs from the last starter before the offending character to the next character that is
 * a starter with NFC_QC=Yes: such a character never combines with what precedes it (only
 * NFC_QC=Maybe characters are second halves of compositions) and, being a starter, blocks
 * everything before it from composing with what follows. So NFC(text) is the
 * concatenation of the copied stretches and the normalised regions. */
df_status df_nfc_append(const uint8_t *p, size_t n, df_bytes *out) {
    cp_buf cps = {0};
    df_status st = DF_OK;
    size_t i = 0, copied = 0, last_starter = 0;
    uint8_t last_ccc = 0;
    while (i < n && st == DF_OK) {
        if (p[i] < 0x80) {
            last_starter = i++;
            last_ccc = 0;
            continue;
        }
        uint32_t cp;
        size_t len = df_utf8_decode_valid(p + i, &cp);
        uint16_t pr = props(cp);
        uint8_t ccc = (uint8_t)(pr & DF_UNI_CCC_MASK);
        bool yes = ((pr & DF_UNI_QC_MASK) >> DF_UNI_QC_SHIFT) == QC_YES;
        if (yes && (ccc == 0 || last_ccc <= ccc)) {
            if (ccc == 0) last_starter = i;
            last_ccc = ccc;
            i += len;
            continue;
        }
        size_t end = i + len;
        while (end < n) {
            uint32_t c2;
            size_t l2 = df_utf8_decode_valid(p + end, &c2);
            uint16_t p2 = props(c2);
            if ((p2 & DF_UNI_CCC_MASK) == 0 && ((p2 & DF_UNI_QC_MASK) >> DF_UNI_QC_SHIFT) == QC_YES) break;
            end += l2;
        }
        st = df_bytes_append(out, p + copied, last_starter - copied);
        if (st == DF_OK) st = normalize_region(p + last_starter, end - last_starter, &cps, out);
        copied = last_starter = i = end;
        last_ccc = 0;
    }
    if (st == DF_OK) st = df_bytes_append(out, p + copied, n - copied);
    free(cps.v);
    return st;
}
