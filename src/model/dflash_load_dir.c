/* Loading a z-lab drafter checkpoint directory (config.json + model.safetensors, as
 * published on Hugging Face, usually bf16): hyperparameters from config.json, then every
 * tensor bound by its checkpoint name with its shape checked.
 *
 * Matrices are used in place from the mapped file (f32, f16 and bf16 are all matmul
 * types), copied only when the file leaves them misaligned for their element size. The
 * vectors (norm weights) are converted to f32, the type the norm kernels read. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "format/checkpoint.h"
#include "model/dflash_internal.h"

typedef struct binder {
    df_dflash_draft *d;
    const df_ckpt *c;
    bool *used;
} binder;

static df_status mark_used(binder *b, const char *name) {
    /* entries are sorted by name: binary search */
    size_t lo = 0, hi = b->c->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(b->c->entries[mid].tensor->name, name);
        if (cmp == 0) {
            b->used[mid] = true;
            return DF_OK;
        }
        if (cmp < 0) lo = mid + 1;
        else hi = mid;
    }
    return DF_OK;
}

/* shape as PyTorch writes it: matrices [out][in] (ne1 = out, ne0 = in), vectors [n]. */
static df_status bind(binder *b, const char *name, int64_t ne0, int64_t ne1, df_weight *out) {
    df_dflash_draft *d = b->d;
    const df_st_tensor *t;
    DF_TRY(df_ckpt_get(b->c, name, &t));
    const bool vec = ne1 == 0;
    const bool shape_ok = vec ? (t->n_dims == 1 && t->shape[0] == ne0)
                              : (t->n_dims == 2 && t->shape[0] == ne1 && t->shape[1] == ne0);
    if (!shape_ok) {
        char got[96] = "";
        for (int i = 0; i < t->n_dims && i < 4; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "",
                     (long long)t->shape[i]);
        if (vec)
            return df_fail(DF_ERR_MISMATCH, "%s: tensor '%s' has shape [%s], expected [%lld]",
                           d->source, name, got, (long long)ne0);
        return df_fail(DF_ERR_MISMATCH, "%s: tensor '%s' has shape [%s], expected [%lld, %lld]",
                       d->source, name, got, (long long)ne1, (long long)ne0);
    }
    df_weight host = {.ne = {ne0, vec ? 1 : ne1, 1, 1}, .name = t->name};
    if (vec) {
        float *f = df_alloc_aligned((size_t)ne0 * sizeof(float));
        if (!f) return df_fail(DF_ERR_NOMEM, "%s: out of memory", d->source);
        df_status st = df_st_to_f32(t, f, (size_t)ne0);
        if (st != DF_OK) {
            df_free_aligned(f);
            return df_fail_context(st, "%s", d->source);
        }
        DF_TRY(df_dflash_keep_host(d, f));
        host.type = DF_TYPE_F32;
        host.data = f;
        host.size = (size_t)ne0 * sizeof(float);
    } else {
        size_t elem;
        switch (t->dtype) {
        case DF_ST_F32: host.type = DF_TYPE_F32; elem = 4; break;
        case DF_ST_F16: host.type = DF_TYPE_F16; elem = 2; break;
        case DF_ST_BF16: host.type = DF_TYPE_BF16; elem = 2; break;
        default:
            return df_fail(DF_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; expected F32, F16 or BF16",
                           d->source, name, t->dtype_name);
        }
        host.size = t->nbytes;
        host.data = t->data;
        if ((uintptr_t)t->data % elem) {
            void *copy = df_alloc_aligned(t->nbytes);
            if (!copy) return df_fail(DF_ERR_NOMEM, "%s: out of memory", d->source);
            memcpy(copy, t->data, t->nbytes);
            DF_TRY(df_dflash_keep_host(d, copy));
            host.data = copy;
        }
    }
    DF_TRY(d->be->ops->bind_weight(d->be, &host, out));
    return mark_used(b, name);
}

static df_status bind_layer(binder *b, int64_t l) {
    const df_dflash_hparams *hp = &b->d->hp;
    df_dflash_layer *L = &b->d->layers[l];
    const int64_t E = hp->n_embd, D = hp->head_dim, F = hp->n_ff;
    const int64_t qd = hp->n_head * D, kvd = hp->n_head_kv * D;
    char n[128];
#define B(suffix, ne0, ne1, field)                                    \
    do {                                                              \
        snprintf(n, sizeof n, "layers.%lld." suffix, (long long)l);   \
        DF_TRY(bind(b, n, (ne0), (ne1), &L->field));                  \
    } while (0)
    B("input_layernorm.weight", E, 0, attn_norm);
    B("post_attention_layernorm.weight", E, 0, ffn_norm);
    B("self_attn.q_proj.weight", E, qd, wq);
    B("self_attn.k_proj.weight", E, kvd, wk);
    B("self_attn.v_proj.weight", E, kvd, wv);
    B("self_attn.o_proj.weight", qd, E, wo);
    B("self_attn.q_norm.weight", D, 0, q_norm);
    B("self_attn.k_norm.weight", D, 0, k_norm);
    B("mlp.gate_proj.weight", E, F, ffn_gate);
    B("mlp.up_proj.weight", E, F, ffn_up);
    B("mlp.down_proj.weight", F, E, ffn_down);
#undef B
    return DF_OK;
}

static df_status bind_all(binder *b) {
    df_dflash_draft *d = b->d;
    const df_dflash_hparams *hp = &d->hp;
    const int64_t E = hp->n_embd;
    df_status st = bind(b, "fc.weight", hp->n_capture * E, E, &d->fc);
    if (st == DF_ERR_MISMATCH)
        return df_fail_context(st, "%lld capture layers (target_layer_ids) of %lld",
                               (long long)hp->n_capture, (long long)E);
    DF_TRY(st);
    DF_TRY(bind(b, "hidden_norm.weight", E, 0, &d->hidden_norm));
    DF_TRY(bind(b, "norm.weight", E, 0, &d->output_norm));
    for (int64_t l = 0; l < hp->n_layer; l++) DF_TRY(bind_layer(b, l));
    for (size_t i = 0; i < b->c->n_tensors; i++)
        if (!b->used[i])
            return df_fail(DF_ERR_FORMAT, "%s: unexpected tensor '%s' (in %s) for a DFlashDraftModel "
                           "of %lld layers", d->source, b->c->entries[i].tensor->name,
                           df_ckpt_shard_path(b->c, i), (long long)hp->n_layer);
    return DF_OK;
}

df_status df_dflash_draft_load_dir(const char *dir, df_backend *be, df_dflash_draft **out) {
    *out = NULL;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return df_fail(DF_ERR_INVALID, "%s: path too long", dir);
    df_config *cfg;
    DF_TRY(df_config_open(path, &cfg));
    df_dflash_hparams hp;
    df_status st = df_dflash_read_hparams_config(cfg, &hp);
    df_config_close(cfg);
    DF_TRY(st);
    df_ckpt *c;
    DF_TRY(df_ckpt_open(dir, &c));
    df_dflash_draft *d;
    st = df_dflash_alloc(be, dir, &hp, &d);
    if (st != DF_OK) {
        df_ckpt_close(c);
        return st;
    }
    d->ckpt = c;
    binder b = {d, c, calloc(c->n_tensors ? c->n_tensors : 1, sizeof(bool))};
    st = b.used ? bind_all(&b) : df_fail(DF_ERR_NOMEM, "%s: out of memory", dir);
    if (st == DF_OK) st = df_dflash_finish_load(d);
    free(b.used);
    if (st != DF_OK) {
        df_dflash_draft_free(d);
        return st;
    }
    *out = d;
    return DF_OK;
}
