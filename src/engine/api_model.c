/* dflash_model: a target GGUF mapped, its weights bound to a backend, its tokenizer. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "engine/engine.h"

const char *dflash_last_error(void) { return df_last_error(); }
const char *dflash_version(void) { return "0.1.0"; }

dflash_model_params dflash_model_default_params(void) {
    dflash_model_params p = {.path = NULL, .draft_path = NULL, .n_threads = 0, .device = "cpu"};
    return p;
}

/* "cpu" / NULL, "cuda", "cuda:N" -> the backend. */
static df_status create_backend(const dflash_model_params *p, const df_gguf *g, df_backend **out) {
    const char *dev = p->device ? p->device : "cpu";
    if (!strcmp(dev, "cpu")) return df_backend_cpu_create(p->n_threads, out);
    if (strncmp(dev, "cuda", 4) != 0 || (dev[4] != '\0' && dev[4] != ':'))
        return df_fail(DF_ERR_INVALID, "device '%s': expected cpu, cuda or cuda:N", dev);
    int index = 0;
    if (dev[4] == ':') {
        char *end;
        long v = strtol(dev + 5, &end, 10);
        if (end == dev + 5 || *end || v < 0 || v > 1024)
            return df_fail(DF_ERR_INVALID, "device '%s': expected cuda:N with N a device number", dev);
        index = (int)v;
    }
#ifdef DFLASH_HAVE_CUDA
    DF_TRY(df_backend_cuda_create(index, out));
    /* The weights about to be uploaded, for the progress bar. */
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < df_gguf_n_tensors(g); i++) bytes += df_gguf_tensor_at(g, i)->size;
    df_backend_cuda_expect_upload(*out, bytes);
    return DF_OK;
#else
    (void)g;
    (void)index;
    return df_fail(DF_ERR_UNSUPPORTED, "device '%s': this dflash was built without CUDA (rebuild where "
                   "nvcc is installed, with -DDFLASH_CUDA=ON)", dev);
#endif
}

static void add_eog(dflash_model *m, int32_t id) {
    if (id < 0 || m->n_eog >= DF_MAX_EOG) return;
    for (int i = 0; i < m->n_eog; i++)
        if (m->eog[i] == id) return;
    m->eog[m->n_eog++] = id;
}

/* EOS plus the chat end markers Qwen models stop on. */
static void find_eog(dflash_model *m) {
    uint32_t id;
    if (df_gguf_get_u32(m->gguf, "tokenizer.ggml.eos_token_id", &id) == DF_OK) add_eog(m, (int32_t)id);
    if (df_gguf_get_u32(m->gguf, "tokenizer.ggml.eot_token_id", &id) == DF_OK) add_eog(m, (int32_t)id);
    if (!m->tok) return;
    static const char *const markers[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>"};
    for (size_t i = 0; i < sizeof markers / sizeof markers[0]; i++)
        add_eog(m, df_tokenizer_find(m->tok, markers[i], strlen(markers[i])));
}

static uint64_t weight_bytes(const df_qwen35 *q) {
    uint64_t total = q->tok_embd.size / (uint64_t)q->hp.n_vocab * 1; /* one embedding row */
    total += q->output.size + q->output_norm.size;
    for (int64_t l = 0; l < q->hp.n_layer; l++)
        for (const df_weight *w = &q->layers[l].attn_norm; w <= &q->layers[l].ssm_out; w++)
            total += w->data ? w->size : 0;
    return total;
}

int dflash_model_load(const dflash_model_params *p, dflash_model **out) {
    *out = NULL;
    if (!p || !p->path) return df_fail(DF_ERR_INVALID, "dflash_model_load: no model path");
    dflash_model *m = calloc(1, sizeof *m);
    if (!m) return df_fail(DF_ERR_NOMEM, "dflash_model_load: out of memory");
    df_status st = df_gguf_open(p->path, &m->gguf);
    if (st == DF_OK) st = create_backend(p, m->gguf, &m->be);
    if (st == DF_OK) st = df_qwen35_load(m->gguf, m->be, &m->target);
#ifdef DFLASH_HAVE_CUDA
    if (st == DF_OK) df_backend_cuda_expect_upload(m->be, 0);
#endif
    if (st == DF_OK && df_gguf_has(m->gguf, "tokenizer.ggml.model")) {
        st = df_tokenizer_from_gguf(m->gguf, &m->tok);
        if (st != DF_OK) df_fail_context(st, "%s: tokenizer", p->path);
    }
    if (st == DF_OK && p->draft_path) {
        st = df_dflash_draft_open(p->draft_path, m->be, &m->draft);
        /* Refuse a drafter that cannot serve this target now, not at the first session. */
        if (st == DF_OK) st = df_dflash_draft_check_target(m->draft, &m->target->hp);
        if (st != DF_OK) df_fail_context(st, "drafter %s", p->draft_path);
    }
    if (st != DF_OK) {
        dflash_model_free(m);
        return (int)st;
    }
    find_eog(m);
    m->weight_bytes = weight_bytes(m->target);
    *out = m;
    return 0;
}

void dflash_model_free(dflash_model *m) {
    if (!m) return;
    df_dflash_draft_free(m->draft);
    df_qwen35_free(m->target);
    df_tokenizer_free(m->tok);
    df_backend_destroy(m->be);
    df_gguf_close(m->gguf);
    free(m);
}

int32_t dflash_model_n_vocab(const dflash_model *m) { return (int32_t)m->target->hp.n_vocab; }
int32_t dflash_model_n_ctx_train(const dflash_model *m) { return (int32_t)m->target->hp.n_ctx_train; }
uint64_t dflash_model_weight_bytes(const dflash_model *m) { return m->weight_bytes; }
bool dflash_model_has_tokenizer(const dflash_model *m) { return m->tok != NULL; }
bool dflash_model_has_drafter(const dflash_model *m) { return m->draft != NULL; }
int32_t dflash_model_draft_block(const dflash_model *m) {
    return m->draft ? (int32_t)m->draft->hp.block_size : 0;
}

bool dflash_model_is_eog(const dflash_model *m, int32_t token) {
    for (int i = 0; i < m->n_eog; i++)
        if (m->eog[i] == token) return true;
    return false;
}

int dflash_tokenize(const dflash_model *m, const char *text, size_t len, bool parse_special,
                    int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (!m->tok) return df_fail(DF_ERR_UNSUPPORTED, "this model has no tokenizer: pass token ids");
    df_tokens toks = {0};
    df_status st = df_tokenizer_encode(m->tok, NULL, text, len,
                                       parse_special ? DF_TOKENIZE_SPECIAL : 0, &toks);
    if (st != DF_OK) {
        df_tokens_free(&toks);
        return (int)st;
    }
    *ids = toks.ids;
    *n_ids = toks.n;
    return 0;
}
