/* Session state of a qwen35 target: the KV cache of each attention layer, the conv and
 * recurrent state of each GDN layer, and the activation buffers one forward call uses.
 * Everything is allocated here, once; forward calls never allocate. */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "model/graph_cache.h"
#include "model/qwen35.h"

static int64_t max3(int64_t a, int64_t b, int64_t c) {
    int64_t m = a > b ? a : b;
    return m > c ? m : c;
}

static df_status balloc(df_backend *be, int64_t n, size_t elem, void **out) {
    size_t bytes;
    if (n < 0 || !df_mul_size((size_t)n, elem, &bytes))
        return df_fail(DF_ERR_NOMEM, "qwen35 state: buffer size overflows");
    return be->ops->alloc(be, bytes ? bytes : 1, out);
}

#define ALLOC(ptr, n, elem) \
    do { st = balloc(be, (n), (elem), (void **)&(ptr)); if (st != DF_OK) goto fail; } while (0)

size_t df_qwen35_capture_bytes_per_token(const df_qwen35 *m, df_state_type type) {
    const df_qwen35_hparams *hp = &m->hp;
    size_t n_gdn = 0;
    for (int64_t l = 0; l < hp->n_layer; l++) n_gdn += hp->kind[l] == DF_LAYER_GDN;
    size_t elem = type == DF_STATE_F16 ? 2 : 4;
    size_t ssm = (size_t)(hp->n_v_head * hp->d_k * hp->d_v) * elem;
    size_t conv = (size_t)((hp->conv_kernel - 1) * df_qwen35_conv_channels(hp)) * sizeof(float);
    return n_gdn * (ssm + conv);
}

df_status df_qwen35_state_create(const df_qwen35 *m, int64_t n_ctx, int64_t max_batch,
                                 df_kv_type kv_type, df_qwen35_state **out) {
    *out = NULL;
    const df_qwen35_hparams *hp = &m->hp;
    if (n_ctx <= 0 || max_batch <= 0 || max_batch > n_ctx)
        return df_fail(DF_ERR_INVALID, "qwen35 state: need 0 < max_batch (%lld) <= n_ctx (%lld)",
                       (long long)max_batch, (long long)n_ctx);
    df_backend *be = m->be;
    df_qwen35_state *s = calloc(1, sizeof *s);
    if (!s) return df_fail(DF_ERR_NOMEM, "qwen35 state: out of memory");
    df_status st = DF_OK;
    s->m = m;
    s->n_ctx = n_ctx;
    s->max_batch = max_batch;
    s->kv_type = kv_type;
    s->gdn_chunked_min = DF_QWEN35_GDN_CHUNKED_MIN;
    s->kv = calloc((size_t)hp->n_layer, sizeof *s->kv);
    s->conv = calloc((size_t)hp->n_layer, sizeof *s->conv);
    s->ssm = calloc((size_t)hp->n_layer, sizeof *s->ssm);
    s->gdn_index = calloc((size_t)hp->n_layer, sizeof *s->gdn_index);
    if (!s->kv || !s->conv || !s->ssm || !s->gdn_index) {
        st = df_fail(DF_ERR_NOMEM, "qwen35 state: out of memory");
        goto fail;
    }
    const int64_t channels = df_qwen35_conv_channels(hp), conv_n = (hp->conv_kernel - 1) * channels;
    const size_t kv_elem = kv_type == DF_KV_F16 ? 2 : 4;
    int64_t n_gdn = 0;
    for (int64_t l = 0; l < hp->n_layer; l++) n_gdn += hp->kind[l] != DF_LAYER_ATTENTION;
    /* every GDN layer's conv state in one buffer, layer after layer: a speculative verify
     * saves them all with one copy (qwen35_forward.c) */
    if (n_gdn) ALLOC(s->conv_all, n_gdn * conv_n, sizeof(float));
    for (int64_t l = 0; l < hp->n_layer; l++) {
        s->gdn_index[l] = -1;
        if (hp->kind[l] == DF_LAYER_ATTENTION) {
            df_kv_cache *c = &s->kv[l];
            c->type = kv_type;
            c->n_ctx = n_ctx;
            c->n_kv_head = hp->n_head_kv;
            c->head_dim = hp->head_dim;
            ALLOC(c->k, n_ctx * hp->n_head_kv * hp->head_dim, kv_elem);
            ALLOC(c->v, n_ctx * hp->n_head_kv * hp->head_dim, kv_elem);
        } else {
            s->conv[l] = s->conv_all + s->n_gdn * conv_n;
            s->gdn_index[l] = s->n_gdn++;
            ALLOC(s->ssm[l], hp->n_v_head * hp->d_k * hp->d_v, sizeof(float));
        }
    }
    const int64_t B = max_batch;
    const int64_t q2 = hp->n_head * hp->head_dim * 2, kvd = hp->n_head_kv * hp->head_dim;
    const int64_t vd = hp->n_v_head * hp->d_v;
    ALLOC(s->ids, B, sizeof(int32_t));
    ALLOC(s->pos, B, sizeof(int32_t));
    ALLOC(s->x, B * hp->n_embd, sizeof(float));
    ALLOC(s->h, B * hp->n_embd, sizeof(float));
    ALLOC(s->proj, B * hp->n_embd, sizeof(float));
    ALLOC(s->wide_a, B * max3(channels, q2, hp->n_ff), sizeof(float));
    ALLOC(s->wide_b, B * max3(channels, kvd, hp->n_ff), sizeof(float));
    ALLOC(s->mid_a, B * max3(vd, kvd, 1), sizeof(float));
    ALLOC(s->mid_b, B * max3(vd, hp->n_head * hp->head_dim, 1), sizeof(float));
    ALLOC(s->gate_a, B * hp->n_v_head, sizeof(float));
    ALLOC(s->gate_b, B * hp->n_v_head, sizeof(float));
    ALLOC(s->g, B * hp->n_v_head, sizeof(float));
    ALLOC(s->beta, B * hp->n_v_head, sizeof(float));
    s->logit_rows = B < DF_QWEN35_MAX_LOGIT_ROWS ? B : DF_QWEN35_MAX_LOGIT_ROWS;
    ALLOC(s->logits, s->logit_rows * hp->n_vocab, sizeof(float));
    ALLOC(s->argmax, s->logit_rows, sizeof(int32_t));
    st = df_graph_cache_create(be, &s->graphs);
    if (st != DF_OK) goto fail;
    *out = s;
    return DF_OK;
fail:
    df_qwen35_state_free(s);
    return st;
}

void df_qwen35_state_free(df_qwen35_state *s) {
    if (!s) return;
    df_backend *be = s->m->be;
    df_graph_cache_free(s->graphs);
    void (*bfree)(df_backend *, void *) = be->ops->free;
    if (s->kv)
        for (int64_t l = 0; l < s->m->hp.n_layer; l++) {
            bfree(be, s->kv[l].k);
            bfree(be, s->kv[l].v);
        }
    bfree(be, s->conv_all);
    if (s->ssm)
        for (int64_t l = 0; l < s->m->hp.n_layer; l++) bfree(be, s->ssm[l]);
    void *bufs[] = {s->ids, s->pos, s->x, s->h, s->proj, s->wide_a, s->wide_b, s->mid_a,
                    s->mid_b, s->gate_a, s->gate_b, s->g, s->beta, s->logits, s->argmax};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) bfree(be, bufs[i]);
    free(s->kv);
    free(s->conv);
    free(s->ssm);
    free(s->gdn_index);
    free(s);
}

df_status df_qwen35_state_reset(df_qwen35_state *s) {
    const df_qwen35_hparams *hp = &s->m->hp;
    df_backend *be = s->m->be;
    const int64_t channels = df_qwen35_conv_channels(hp);
    s->n_past = 0;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        if (hp->kind[l] != DF_LAYER_GDN) continue;
        /* Zero through the backend: upload from a host block of zeros, in pieces. */
        static const float zeros[1024];
        size_t conv_bytes = (size_t)((hp->conv_kernel - 1) * channels) * sizeof(float);
        size_t ssm_bytes = (size_t)(hp->n_v_head * hp->d_k * hp->d_v) * sizeof(float);
        for (size_t off = 0; off < conv_bytes; off += sizeof zeros) {
            size_t n = conv_bytes - off < sizeof zeros ? conv_bytes - off : sizeof zeros;
            DF_TRY(be->ops->upload(be, (char *)s->conv[l] + off, zeros, n));
        }
        for (size_t off = 0; off < ssm_bytes; off += sizeof zeros) {
            size_t n = ssm_bytes - off < sizeof zeros ? ssm_bytes - off : sizeof zeros;
            DF_TRY(be->ops->upload(be, (char *)s->ssm[l] + off, zeros, n));
        }
    }
    return DF_OK;
}

df_status df_qwen35_state_truncate(df_qwen35_state *s, int64_t n) {
    if (n < 0 || n > s->n_past)
        return df_fail(DF_ERR_INVALID, "qwen35 state: cannot truncate %lld tokens to %lld",
                       (long long)s->n_past, (long long)n);
    s->n_past = n;
    return DF_OK;
}

size_t df_qwen35_recurrent_bytes(const df_qwen35 *m) {
    const df_qwen35_hparams *hp = &m->hp;
    size_t per_layer = (size_t)((hp->conv_kernel - 1) * df_qwen35_conv_channels(hp) +
                                hp->n_v_head * hp->d_k * hp->d_v) * sizeof(float);
    size_t n = 0;
    for (int64_t l = 0; l < hp->n_layer; l++) n += hp->kind[l] == DF_LAYER_GDN;
    return n * per_layer;
}

/* Walks the GDN layers' conv then recurrent buffers in layer order: one layout for save
 * and load. */
static df_status copy_recurrent(df_qwen35_state *s, void *host, size_t size, bool save) {
    const df_qwen35 *m = s->m;
    const df_qwen35_hparams *hp = &m->hp;
    df_backend *be = m->be;
    if (size != df_qwen35_recurrent_bytes(m))
        return df_fail(DF_ERR_INVALID, "qwen35 state: snapshot of %zu bytes, expected %zu", size,
                       df_qwen35_recurrent_bytes(m));
    size_t conv = (size_t)((hp->conv_kernel - 1) * df_qwen35_conv_channels(hp)) * sizeof(float);
    size_t ssm = (size_t)(hp->n_v_head * hp->d_k * hp->d_v) * sizeof(float);
    char *p = host;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        if (hp->kind[l] != DF_LAYER_GDN) continue;
        if (save) {
            DF_TRY(be->ops->download(be, p, s->conv[l], conv));
            DF_TRY(be->ops->download(be, p + conv, s->ssm[l], ssm));
        } else {
            DF_TRY(be->ops->upload(be, s->conv[l], p, conv));
            DF_TRY(be->ops->upload(be, s->ssm[l], p + conv, ssm));
        }
        p += conv + ssm;
    }
    return DF_OK;
}

df_status df_qwen35_state_save_recurrent(const df_qwen35_state *s, void *dst, size_t size) {
    return copy_recurrent((df_qwen35_state *)s, dst, size, true);
}

df_status df_qwen35_state_load_recurrent(df_qwen35_state *s, const void *src, size_t size) {
    return copy_recurrent(s, (void *)src, size, false);
}
