/* The drafter object's life: allocation, what it keeps alive for its weights, the RoPE
 * table, opening by path, freeing. The two loaders (dflash_load_gguf.c, dflash_load_dir.c)
 * fill in the weights. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "format/checkpoint.h"
#include "model/dflash_internal.h"

df_status df_dflash_alloc(df_backend *be, const char *source, const df_dflash_hparams *hp,
                          df_dflash_draft **out) {
    *out = NULL;
    df_dflash_draft *d = calloc(1, sizeof *d);
    if (!d || !(d->source = strdup(source)) ||
        !(d->layers = calloc((size_t)hp->n_layer, sizeof *d->layers))) {
        if (d) free(d->source);
        free(d);
        return df_fail(DF_ERR_NOMEM, "%s: out of memory", source);
    }
    d->hp = *hp;
    d->be = be;
    *out = d;
    return DF_OK;
}

df_status df_dflash_keep_host(df_dflash_draft *d, void *p) {
    if (d->n_host == d->cap_host) {
        int cap = d->cap_host ? 2 * d->cap_host : 16;
        void **h = realloc(d->host, (size_t)cap * sizeof *h);
        if (!h) {
            df_free_aligned(p);
            return df_fail(DF_ERR_NOMEM, "%s: out of memory", d->source);
        }
        d->host = h;
        d->cap_host = cap;
    }
    d->host[d->n_host++] = p;
    return DF_OK;
}

df_status df_dflash_finish_load(df_dflash_draft *d) {
    df_backend *be = d->be;
    float inv[DF_CPU_ROPE_MAX_DIM / 2];
    /* Qwen3 rotates the whole head (no partial rotary factor). */
    DF_TRY(df_cpu_rope_inv_freq(d->hp.rope_theta, d->hp.head_dim, inv));
    size_t bytes = (size_t)(d->hp.head_dim / 2) * sizeof(float);
    DF_TRY(be->ops->alloc(be, bytes, (void **)&d->inv_freq));
    return be->ops->upload(be, d->inv_freq, inv, bytes);
}

static void unbind(df_backend *be, df_weight *w) {
    if (w->data) be->ops->unbind_weight(be, w);
}

void df_dflash_draft_free(df_dflash_draft *d) {
    if (!d) return;
    df_backend *be = d->be;
    if (d->layers)
        for (int64_t l = 0; l < d->hp.n_layer; l++)
            for (int i = 0; i < DF_DFLASH_LAYER_WEIGHTS; i++)
                unbind(be, df_dflash_layer_weight(&d->layers[l], i));
    unbind(be, &d->fc);
    unbind(be, &d->hidden_norm);
    unbind(be, &d->output_norm);
    if (d->inv_freq) be->ops->free(be, d->inv_freq);
    for (int i = 0; i < d->n_host; i++) df_free_aligned(d->host[i]);
    free(d->host);
    df_ckpt_close(d->ckpt);
    df_gguf_close(d->own_gguf);
    free(d->layers);
    free(d->source);
    free(d);
}

df_status df_dflash_draft_open(const char *path, df_backend *be, df_dflash_draft **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return df_fail(DF_ERR_IO, "%s: no such file or directory", path);
    if (S_ISDIR(sb.st_mode)) return df_dflash_draft_load_dir(path, be, out);
    df_gguf *g;
    DF_TRY(df_gguf_open(path, &g));
    df_status st = df_dflash_draft_load_gguf(g, be, out);
    if (st != DF_OK) {
        df_gguf_close(g);
        return st;
    }
    (*out)->own_gguf = g;
    return DF_OK;
}
