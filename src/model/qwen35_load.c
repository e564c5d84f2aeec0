/* Loading a qwen35 GGUF: hyperparameters from the metadata, then every weight bound by name
 * with its shape checked. Names and shapes: docs/QWEN35_FORMAT.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/qwen35.h"

#define ARCH "qwen35"

static df_status get_i64(const df_gguf *g, const char *suffix, int64_t *out, bool required) {
    char key[128];
    snprintf(key, sizeof key, ARCH ".%s", suffix);
    df_status st = df_gguf_get_i64(g, key, out);
    if (st == DF_ERR_NOT_FOUND && !required) return DF_OK;
    return st;
}

static df_status get_f32(const df_gguf *g, const char *suffix, float *out, bool required) {
    char key[128];
    snprintf(key, sizeof key, ARCH ".%s", suffix);
    df_status st = df_gguf_get_f32(g, key, out);
    if (st == DF_ERR_NOT_FOUND && !required) return DF_OK;
    return st;
}

static df_status positive(const df_gguf *g, const char *what, int64_t v) {
    if (v > 0) return DF_OK;
    return df_fail(DF_ERR_FORMAT, "%s: %s.%s is %lld, expected a positive number",
                   df_gguf_name(g), ARCH, what, (long long)v);
}

df_status df_qwen35_read_hparams(const df_gguf *g, df_qwen35_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    const char *name = df_gguf_name(g);
    const char *arch;
    size_t arch_len;
    df_status st = df_gguf_get_str(g, "general.architecture", &arch, &arch_len);
    if (st != DF_OK) return st;
    if (arch_len != strlen(ARCH) || memcmp(arch, ARCH, arch_len) != 0)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: general.architecture is '%.*s', expected '" ARCH "'",
                       name, (int)(arch_len > 64 ? 64 : arch_len), arch);

    DF_TRY(get_i64(g, "block_count", &hp->n_layer, true));
    DF_TRY(get_i64(g, "embedding_length", &hp->n_embd, true));
    DF_TRY(get_i64(g, "feed_forward_length", &hp->n_ff, true));
    DF_TRY(get_i64(g, "attention.head_count", &hp->n_head, true));
    DF_TRY(get_i64(g, "attention.head_count_kv", &hp->n_head_kv, true));
    DF_TRY(get_i64(g, "attention.key_length", &hp->head_dim, true));
    DF_TRY(get_f32(g, "attention.layer_norm_rms_epsilon", &hp->rms_eps, true));
    DF_TRY(get_i64(g, "rope.dimension_count", &hp->rot_dim, true));
    hp->rope_theta = 10000.0f;
    DF_TRY(get_f32(g, "rope.freq_base", &hp->rope_theta, false));
    hp->n_ctx_train = 4096;
    DF_TRY(get_i64(g, "context_length", &hp->n_ctx_train, false));
    DF_TRY(get_i64(g, "ssm.conv_kernel", &hp->conv_kernel, true));
    DF_TRY(get_i64(g, "ssm.state_size", &hp->d_k, true));
    DF_TRY(get_i64(g, "ssm.group_count", &hp->n_k_head, true));
    DF_TRY(get_i64(g, "ssm.time_step_rank", &hp->n_v_head, true));
    int64_t inner = 0;
    DF_TRY(get_i64(g, "ssm.inner_size", &inner, true));
    hp->full_attn_interval = 4;
    DF_TRY(get_i64(g, "full_attention_interval", &hp->full_attn_interval, false));
    DF_TRY(get_i64(g, "nextn_predict_layers", &hp->n_nextn, false));

    DF_TRY(positive(g, "block_count", hp->n_layer));
    DF_TRY(positive(g, "embedding_length", hp->n_embd));
    DF_TRY(positive(g, "feed_forward_length", hp->n_ff));
    DF_TRY(positive(g, "attention.head_count", hp->n_head));
    DF_TRY(positive(g, "attention.head_count_kv", hp->n_head_kv));
    DF_TRY(positive(g, "attention.key_length", hp->head_dim));
    DF_TRY(positive(g, "ssm.conv_kernel", hp->conv_kernel));
    DF_TRY(positive(g, "ssm.state_size", hp->d_k));
    DF_TRY(positive(g, "ssm.group_count", hp->n_k_head));
    DF_TRY(positive(g, "ssm.time_step_rank", hp->n_v_head));
    DF_TRY(positive(g, "ssm.inner_size", inner));
    DF_TRY(positive(g, "full_attention_interval", hp->full_attn_interval));
    if (hp->n_layer > DF_QWEN35_MAX_LAYERS)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: %lld layers, at most %d supported", name,
                       (long long)hp->n_layer, DF_QWEN35_MAX_LAYERS);
    if (hp->n_nextn < 0 || hp->n_nextn >= hp->n_layer)
        return df_fail(DF_ERR_FORMAT, "%s: nextn_predict_layers %lld with %lld layers", name,
                       (long long)hp->n_nextn, (long long)hp->n_layer);
    if (hp->n_head % hp->n_head_kv)
        return df_fail(DF_ERR_FORMAT, "%s: %lld attention heads do not divide into %lld KV heads",
                       name, (long long)hp->n_head, (long long)hp->n_head_kv);
    if (hp->n_v_head % hp->n_k_head)
        return df_fail(DF_ERR_FORMAT, "%s: %lld value heads are not a multiple of %lld key heads",
                       name, (long long)hp->n_v_head, (long long)hp->n_k_head);
    if (inner % hp->n_v_head)
        return df_fail(DF_ERR_FORMAT, "%s: ssm.inner_size %lld is not a multiple of %lld value heads",
                       name, (long long)inner, (long long)hp->n_v_head);
    hp->d_v = inner / hp->n_v_head;
    if (hp->rot_dim <= 0 || hp->rot_dim > hp->head_dim || hp->rot_dim % 2)
        return df_fail(DF_ERR_FORMAT, "%s: rope.dimension_count %lld must be even and within the head dim %lld",
                       name, (long long)hp->rot_dim, (long long)hp->head_dim);
    if (hp->rot_dim > DF_CPU_ROPE_MAX_DIM)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: rope.dimension_count %lld is above %d", name,
                       (long long)hp->rot_dim, DF_CPU_ROPE_MAX_DIM);
    if (!(hp->rms_eps > 0.0f) || !(hp->rope_theta > 0.0f))
        return df_fail(DF_ERR_FORMAT, "%s: rms epsilon and rope.freq_base must be positive", name);
    /* The trunk's layers (MTP layers sit after them and are not run). */
    hp->n_layer -= hp->n_nextn;
    for (int64_t l = 0; l < hp->n_layer; l++)
        hp->kind[l] = (l + 1) % hp->full_attn_interval == 0 ? DF_LAYER_ATTENTION : DF_LAYER_GDN;

    const df_gguf_tensor *emb;
    DF_TRY(df_gguf_get_tensor(g, "token_embd.weight", &emb));
    hp->n_vocab = emb->ne[1];
    return DF_OK;
}

/* Binds one tensor, checking its shape (ne order; unused dims 0). */
static df_status bind(df_qwen35 *m, const df_gguf *g, const char *name, int64_t ne0, int64_t ne1,
                      df_weight *out, bool *used) {
    const df_gguf_tensor *t;
    df_status st = df_gguf_get_tensor(g, name, &t);
    if (st != DF_OK) return df_fail(DF_ERR_NOT_FOUND, "%s: tensor '%s' is missing", df_gguf_name(g), name);
    int64_t want1 = ne1 ? ne1 : 1;
    if (t->ne[0] != ne0 || t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1)
        return df_fail(DF_ERR_MISMATCH,
                       "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                       df_gguf_name(g), name, (long long)t->ne[0], (long long)t->ne[1],
                       (long long)t->ne[2], (long long)t->ne[3], (long long)ne0, (long long)want1);
    const df_type_traits *tt = df_type_get(t->type);
    if (!tt || !tt->to_float)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which dflash cannot compute with",
                       df_gguf_name(g), name, df_type_name(t->type));
    /* Vectors the kernels read as plain floats must be F32. */
    if (ne1 == 0 && t->type != DF_TYPE_F32)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; 1-D tensors must be f32",
                       df_gguf_name(g), name, df_type_name(t->type));
    df_weight host = {.type = (df_type)t->type, .ne = {t->ne[0], t->ne[1], 1, 1},
                      .data = t->data, .size = t->size, .name = t->name};
    DF_TRY(m->be->ops->bind_weight(m->be, &host, out));
    uint64_t idx = (uint64_t)(t - df_gguf_tensor_at(g, 0));
    used[idx] = true;
    return DF_OK;
}

static df_status bind_layer(df_qwen35 *m, const df_gguf *g, int64_t l, bool *used) {
    const df_qwen35_hparams *hp = &m->hp;
    df_qwen35_layer *L = &m->layers[l];
    char n[96];
#define B(suffix, ne0, ne1, field)                                      \
    do {                                                                \
        snprintf(n, sizeof n, "blk.%lld." suffix, (long long)l);        \
        DF_TRY(bind(m, g, n, (ne0), (ne1), &L->field, used));           \
    } while (0)
    const int64_t E = hp->n_embd;
    L->kind = hp->kind[l];
    B("attn_norm.weight", E, 0, attn_norm);
    B("post_attention_norm.weight", E, 0, post_attn_norm);
    B("ffn_gate.weight", E, hp->n_ff, ffn_gate);
    B("ffn_up.weight", E, hp->n_ff, ffn_up);
    B("ffn_down.weight", hp->n_ff, E, ffn_down);
    if (L->kind == DF_LAYER_ATTENTION) {
        const int64_t D = hp->head_dim;
        B("attn_q.weight", E, hp->n_head * D * 2, wq);
        B("attn_k.weight", E, hp->n_head_kv * D, wk);
        B("attn_v.weight", E, hp->n_head_kv * D, wv);
        B("attn_output.weight", hp->n_head * D, E, wo);
        B("attn_q_norm.weight", D, 0, q_norm);
        B("attn_k_norm.weight", D, 0, k_norm);
    } else {
        const int64_t vd = hp->n_v_head * hp->d_v;
        B("attn_qkv.weight", E, df_qwen35_conv_channels(hp), wqkv);
        B("attn_gate.weight", E, vd, wgate);
        B("ssm_beta.weight", E, hp->n_v_head, wbeta);
        B("ssm_alpha.weight", E, hp->n_v_head, walpha);
        B("ssm_conv1d.weight", hp->conv_kernel, df_qwen35_conv_channels(hp), conv1d);
        B("ssm_dt.bias", hp->n_v_head, 0, dt_bias);
        B("ssm_a", hp->n_v_head, 0, ssm_a);
        B("ssm_norm.weight", hp->d_v, 0, ssm_norm);
        B("ssm_out.weight", vd, E, ssm_out);
    }
#undef B
    if (L->conv1d.data && L->conv1d.type != DF_TYPE_F32)
        return df_fail(DF_ERR_UNSUPPORTED, "%s: blk.%lld.ssm_conv1d.weight must be f32, is %s",
                       df_gguf_name(g), (long long)l, df_type_name(L->conv1d.type));
    return DF_OK;
}

df_status df_qwen35_load(const df_gguf *g, df_backend *be, df_qwen35 **out) {
    *out = NULL;
    df_qwen35 *m = calloc(1, sizeof *m);
    if (!m) return df_fail(DF_ERR_NOMEM, "qwen35: out of memory");
    m->be = be;
    bool *used = NULL;
    df_status st = df_qwen35_read_hparams(g, &m->hp);
    if (st != DF_OK) goto fail;
    const df_qwen35_hparams *hp = &m->hp;
    const uint64_t n_tensors = df_gguf_n_tensors(g);
    used = calloc(n_tensors ? n_tensors : 1, sizeof *used);
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!used || !m->layers) {
        st = df_fail(DF_ERR_NOMEM, "qwen35: out of memory");
        goto fail;
    }
    st = bind(m, g, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->tok_embd, used);
    if (st != DF_OK) goto fail;
    st = bind(m, g, "output_norm.weight", hp->n_embd, 0, &m->output_norm, used);
    if (st != DF_OK) goto fail;
    if (df_gguf_find_tensor(g, "output.weight")) {
        st = bind(m, g, "output.weight", hp->n_embd, hp->n_vocab, &m->output, used);
        if (st != DF_OK) goto fail;
    } else {
        m->tied = true;
        m->output = m->tok_embd;
    }
    for (int64_t l = 0; l < hp->n_layer; l++) {
        st = bind_layer(m, g, l, used);
        if (st != DF_OK) {
            /* Most often the layer pattern from full_attention_interval does not match the
             * tensors present: say which kind the metadata made this layer. */
            df_fail_context(st, "layer %lld (%s by " ARCH ".full_attention_interval = %lld)",
                            (long long)l, hp->kind[l] == DF_LAYER_GDN ? "Gated DeltaNet" : "attention",
                            (long long)hp->full_attn_interval);
            goto fail;
        }
    }
    /* Everything else must be a known extra: the MTP blocks (blk.N for N >= the trunk). */
    for (uint64_t i = 0; i < n_tensors; i++) {
        if (used[i]) continue;
        const df_gguf_tensor *t = df_gguf_tensor_at(g, i);
        long long blk;
        int consumed = 0;
        if (sscanf(t->name, "blk.%lld.%n", &blk, &consumed) == 1 && consumed > 0 &&
            blk >= hp->n_layer && blk < hp->n_layer + hp->n_nextn)
            continue;
        st = df_fail(DF_ERR_FORMAT, "%s: unexpected tensor '%s' for a qwen35 model with %lld layers",
                     df_gguf_name(g), t->name, (long long)hp->n_layer);
        goto fail;
    }
    {
        float inv[DF_CPU_ROPE_MAX_DIM / 2];
        st = df_cpu_rope_inv_freq(hp->rope_theta, hp->rot_dim, inv);
        if (st != DF_OK) goto fail;
        size_t bytes = (size_t)(hp->rot_dim / 2) * sizeof(float);
        st = be->ops->alloc(be, bytes, (void **)&m->inv_freq);
        if (st != DF_OK) goto fail;
        st = be->ops->upload(be, m->inv_freq, inv, bytes);
        if (st != DF_OK) goto fail;
    }
    free(used);
    *out = m;
    return DF_OK;
fail:
    free(used);
    df_qwen35_free(m);
    return st;
}

void df_qwen35_free(df_qwen35 *m) {
    if (!m) return;
    df_backend *be = m->be;
    if (m->layers) {
        for (int64_t l = 0; l < m->hp.n_layer; l++)
            for (df_weight *w = &m->layers[l].attn_norm; w <= &m->layers[l].ssm_out; w++)
                if (w->data) be->ops->unbind_weight(be, w);
    }
    if (m->tok_embd.data) be->ops->unbind_weight(be, &m->tok_embd);
    if (m->output_norm.data) be->ops->unbind_weight(be, &m->output_norm);
    if (!m->tied && m->output.data) be->ops->unbind_weight(be, &m->output);
    if (m->inv_freq) be->ops->free(be, m->inv_freq);
    free(m->layers);
    free(m);
}
