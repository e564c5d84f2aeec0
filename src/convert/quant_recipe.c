/* Which GGUF type each tensor gets, per --type (docs/QWEN35_FORMAT.md §2.2 and §4).
 *
 * f32 / f16 / bf16 / q8_0 follow convert_hf_to_gguf.py: 1-D tensors, norms, ssm_conv1d and
 * names not ending in ".weight" are f32; every other matrix takes the chosen type, except
 * that q8_0 falls back to f16 for rows that are not whole 32-element blocks.
 *
 * q4_k_m follows llama-quantize (the category-based llama-quant.cpp): the same tensors stay
 * f32; the others start at Q4_K and then
 *   - output.weight, and token_embd.weight when there is no output.weight (tied): Q6_K, or
 *     Q8_0 when the row length is not a multiple of 256;
 *   - attn_v / attn_qkv (one per block, counted in block order): Q6_K where use_more_bits;
 *   - ffn_down (counted in block order, out of all blocks): Q6_K where use_more_bits;
 *   - then a row length that does not fill whole blocks falls back (Q4_K -> Q5_0,
 *     Q6_K -> Q8_0, ... and F16 when even that does not fit).
 * llama-quantize has no fallback for Q8_0 itself (it stops); we take F16, as the converter does. */
#include <stdlib.h>
#include <string.h>

#include "convert/convert_internal.h"

bool df_recipe_use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static bool fits(df_type type, int64_t ne0) {
    const df_type_traits *tt = df_type_get(type);
    return tt && ne0 % tt->block_size == 0;
}

df_type df_recipe_fallback(df_type type, int64_t ne0) {
    if (fits(type, ne0)) return type;
    df_type next;
    switch (type) {
    case DF_TYPE_Q2_K:
    case DF_TYPE_Q3_K: next = DF_TYPE_Q4_0; break;
    case DF_TYPE_Q4_K: next = DF_TYPE_Q5_0; break;
    case DF_TYPE_Q5_K: next = DF_TYPE_Q5_1; break;
    case DF_TYPE_Q6_K: next = DF_TYPE_Q8_0; break;
    case DF_TYPE_IQ4_XS: next = DF_TYPE_IQ4_NL; break;
    default: next = DF_TYPE_F16; break;
    }
    return fits(next, ne0) ? next : DF_TYPE_F16;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* Tensors that are never converted to the chosen type (both llama.cpp tools agree here). */
static bool stays_f32(const df_conv_tensor *t) {
    return t->n_dims < 2 || !ends_with(t->name, ".weight") || strstr(t->name, "_norm.weight") ||
           strstr(t->name, "ssm_conv1d");
}

typedef enum category {
    CAT_OUTPUT,
    CAT_TOKEN_EMBD,
    CAT_ATTN_V_LIKE, /* attn_qkv, attn_kv_b, attn_v: the tensors llama.cpp treats as attn_v */
    CAT_FFN_DOWN,
    CAT_OTHER,
} category;

/* Substring tests in llama-quant.cpp's order (attn_qkv before attn_v, and so on). */
static category category_of(const char *name) {
    if (!strcmp(name, "output.weight")) return CAT_OUTPUT;
    if (!strcmp(name, "token_embd.weight")) return CAT_TOKEN_EMBD;
    if (strstr(name, "attn_qkv.weight") || strstr(name, "attn_kv_b.weight") || strstr(name, "attn_v.weight"))
        return CAT_ATTN_V_LIKE;
    if (strstr(name, "attn_k.weight") || strstr(name, "attn_q.weight") || strstr(name, "attn_output.weight") ||
        strstr(name, "ffn_up") || strstr(name, "ffn_gate"))
        return CAT_OTHER;
    if (strstr(name, "ffn_down")) return CAT_FFN_DOWN;
    return CAT_OTHER;
}

typedef struct q4km_state {
    bool tied;       /* no output.weight: token_embd doubles as the LM head */
    int n_attn_v, i_attn_v;
    int n_ffn_down, i_ffn_down;
} q4km_state;

static df_type pick_q4_k_m(q4km_state *s, const df_conv_tensor *t) {
    df_type type = DF_TYPE_Q4_K;
    category cat = category_of(t->name);
    if (cat == CAT_OUTPUT || (s->tied && cat == CAT_TOKEN_EMBD)) {
        type = t->ne[0] % 256 ? DF_TYPE_Q8_0 : DF_TYPE_Q6_K;
    } else if (cat == CAT_ATTN_V_LIKE) {
        if (df_recipe_use_more_bits(s->i_attn_v, s->n_attn_v)) type = DF_TYPE_Q6_K;
        s->i_attn_v++;
    } else if (cat == CAT_FFN_DOWN) {
        if (df_recipe_use_more_bits(s->i_ffn_down, s->n_ffn_down)) type = DF_TYPE_Q6_K;
        s->i_ffn_down++;
    }
    return type;
}

static df_type base_type(df_convert_type choice) {
    switch (choice) {
    case DF_CONVERT_F16: return DF_TYPE_F16;
    case DF_CONVERT_BF16: return DF_TYPE_BF16;
    case DF_CONVERT_Q8_0: return DF_TYPE_Q8_0;
    case DF_CONVERT_Q4_K_M: return DF_TYPE_Q4_K;
    default: return DF_TYPE_F32;
    }
}

/* One notice line per kind of fallback (from, to, row length), naming every tensor. */
static void note_fallbacks(const df_conv_plan *p, FILE *log) {
    bool *done = calloc(p->n ? p->n : 1, sizeof *done);
    if (!done) return;
    for (size_t i = 0; i < p->n; i++) {
        const df_conv_tensor *a = &p->t[i];
        if (done[i] || a->type == a->wanted) continue;
        size_t count = 0, len = 0;
        for (size_t j = i; j < p->n; j++) {
            const df_conv_tensor *b = &p->t[j];
            if (!done[j] && b->type != b->wanted && b->wanted == a->wanted && b->type == a->type && b->ne[0] == a->ne[0]) {
                count++;
                len += strlen(b->name) + 2;
            }
        }
        char *names = malloc(len + 1);
        if (!names) break;
        names[0] = 0;
        size_t at = 0;
        for (size_t j = i; j < p->n; j++) {
            const df_conv_tensor *b = &p->t[j];
            if (!done[j] && b->type != b->wanted && b->wanted == a->wanted && b->type == a->type && b->ne[0] == a->ne[0]) {
                at += (size_t)sprintf(names + at, "%s%s", at ? ", " : "", b->name);
                done[j] = true;
            }
        }
        const df_type_traits *tt = df_type_get(a->wanted);
        df_conv_note(log, "%zu tensor%s fell back from %s to %s (row length %lld is not a multiple of %d): %s", count,
                     count == 1 ? "" : "s", df_type_name(a->wanted), df_type_name(a->type), (long long)a->ne[0],
                     tt ? tt->block_size : 0, names);
        free(names);
    }
    free(done);
}

df_status df_conv_assign_types(df_conv_plan *p, df_convert_type choice, FILE *log) {
    if ((int)choice < 0 || choice >= DF_CONVERT_TYPE_COUNT)
        return df_fail(DF_ERR_INVALID, "convert: unknown output type %d", (int)choice);
    q4km_state s = {.tied = true, .n_ffn_down = p->n_layer};
    for (size_t i = 0; i < p->n; i++) {
        category cat = category_of(p->t[i].name);
        if (cat == CAT_OUTPUT) s.tied = false;
        if (cat == CAT_ATTN_V_LIKE) s.n_attn_v++;
    }
    for (size_t i = 0; i < p->n; i++) {
        df_conv_tensor *t = &p->t[i];
        if (i > 0 && t->layer >= 0 && p->t[i - 1].layer > t->layer)
            return df_fail(DF_ERR_INVALID, "convert: the plan lists block %d after block %d", t->layer,
                           p->t[i - 1].layer);
        df_type want;
        if (choice == DF_CONVERT_F32 || stays_f32(t)) want = DF_TYPE_F32;
        else if (choice == DF_CONVERT_Q4_K_M) want = pick_q4_k_m(&s, t);
        else want = base_type(choice);
        t->wanted = want;
        t->type = df_recipe_fallback(want, t->ne[0]);
    }
    note_fallbacks(p, log);
    return DF_OK;
}
