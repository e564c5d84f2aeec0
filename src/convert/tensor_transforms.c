/* The value changes a conversion makes (docs/QWEN35_FORMAT.md §2.2, §2.3), applied one output
 * row at a time so that no tensor is ever held whole:
 *   - gather: output row r comes from source row perm_src(rows, r), and within it output
 *     column j from source column perm_src(cols, j) (the value-head reorder);
 *   - then an elementwise op: +1 for the zero-centred RMSNorm weights, -exp for A_log.
 *
 * Everything is computed in fp32 from the source value widened exactly to fp32. That equals
 * llama.cpp for f32 and bf16 checkpoints (it widens bf16 to fp32 first); for f16 ones it
 * computes +1 / -exp in f16, and we keep fp32, which is what transformers does at run time. */
#include <math.h>
#include <string.h>

#include "base/fp16.h"
#include "convert/convert_internal.h"

int64_t df_conv_perm_src(const df_conv_perm *p, int64_t i) {
    if (p->nk <= 0 || p->r <= 1 || i < p->start) return i;
    int64_t rel = i - p->start;
    int64_t heads = p->nk * p->r;
    if (rel >= heads * p->hd) return i;
    /* Output position q = j*nk + g holds HF head g*r + j (key head g, j-th of its r value heads). */
    int64_t q = rel / p->hd, d = rel % p->hd;
    int64_t g = q % p->nk, j = q / p->nk;
    return p->start + (g * p->r + j) * p->hd + d;
}

df_status df_conv_perm_check(const df_conv_perm *p, int64_t len, const char *what) {
    if (p->nk == 0) return DF_OK;
    int64_t span = 0;
    if (p->nk < 0 || p->r < 1 || p->hd < 1 || p->start < 0 || __builtin_mul_overflow(p->nk, p->r, &span) ||
        __builtin_mul_overflow(span, p->hd, &span) || span > len || p->start > len - span)
        return df_fail(DF_ERR_MISMATCH,
                       "%s: value-head reorder of %lld x %lld heads of %lld from index %lld does not fit in %lld",
                       what, (long long)p->nk, (long long)p->r, (long long)p->hd, (long long)p->start,
                       (long long)len);
    return DF_OK;
}

bool df_conv_src_dtype_ok(int dtype) {
    return dtype == DF_ST_F32 || dtype == DF_ST_F16 || dtype == DF_ST_BF16;
}

/* Safetensors data is not promised to be aligned: every element is read through memcpy. */
void df_conv_src_row(const df_st_tensor *src, int64_t row, int64_t row_len, float *dst) {
    const size_t esz = df_st_dtype_size(src->dtype);
    const uint8_t *p = src->data + (size_t)row * (size_t)row_len * esz;
    switch (src->dtype) {
    case DF_ST_F32:
        memcpy(dst, p, (size_t)row_len * sizeof(float));
        break;
    case DF_ST_F16:
        for (int64_t i = 0; i < row_len; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = df_fp16_to_f32(h);
        }
        break;
    case DF_ST_BF16:
        for (int64_t i = 0; i < row_len; i++) {
            uint16_t b;
            memcpy(&b, p + 2 * i, 2);
            dst[i] = df_bf16_to_f32(b);
        }
        break;
    default: /* refused when the plan was made */
        memset(dst, 0, (size_t)row_len * sizeof(float));
        break;
    }
}

void df_conv_apply_op(df_conv_op op, float *x, int64_t n) {
    switch (op) {
    case DF_CONV_OP_NONE:
        break;
    case DF_CONV_OP_PLUS_ONE:
        /* GGUF norms multiply by the stored weight; HF's Qwen3_5RMSNorm multiplies by 1 + w. */
        for (int64_t i = 0; i < n; i++) x[i] = x[i] + 1.0f;
        break;
    case DF_CONV_OP_NEG_EXP:
        /* In double, then rounded once: the fp32 value nearest to -exp(x). */
        for (int64_t i = 0; i < n; i++) x[i] = (float)-exp((double)x[i]);
        break;
    }
}

void df_conv_make_row(const df_conv_tensor *t, int64_t r, float *dst, float *tmp) {
    const int64_t n = t->ne[0];
    const int64_t src_row = df_conv_perm_src(&t->rows, r);
    if (t->cols.nk > 0) {
        df_conv_src_row(t->src, src_row, n, tmp);
        for (int64_t j = 0; j < n; j++) dst[j] = tmp[df_conv_perm_src(&t->cols, j)];
    } else {
        df_conv_src_row(t->src, src_row, n, dst);
    }
    df_conv_apply_op(t->op, dst, n);
}
