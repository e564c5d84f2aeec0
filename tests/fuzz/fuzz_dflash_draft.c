/* libFuzzer target: the DFlash drafter's loaders on arbitrary bytes. Input that starts with
 * '{' is a config.json (df_dflash_read_hparams_config); anything else a GGUF, loaded fully
 * (hyperparameters, every tensor bound and shape-checked) on a one-thread CPU backend, then
 * checked against a target built from its own hyperparameters. An accepted drafter must
 * satisfy the invariants the forward pass relies on; a broken one traps. */
#include <stddef.h>
#include <stdint.h>

#include "format/config.h"
#include "format/gguf.h"
#include "model/dflash_draft.h"

static void check_hparams(const df_dflash_hparams *hp) {
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_layer > DF_DFLASH_MAX_LAYERS ||
        hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv || hp->head_dim <= 0 ||
        hp->head_dim % 2 || hp->block_size < 2 || hp->n_capture <= 0 ||
        hp->n_capture > DF_DFLASH_MAX_CAPTURE || hp->mask_token_id < 0 || !(hp->rope_theta > 0))
        __builtin_trap();
    if (hp->n_layer_ids != 0 && hp->n_layer_ids != hp->n_capture) __builtin_trap();
    for (int64_t l = 0; l < hp->n_layer; l++)
        if (hp->sliding[l] && hp->sliding_window <= 0) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static df_backend *be;
    if (!be && df_backend_cpu_create(1, &be) != DF_OK) __builtin_trap();
    df_dflash_hparams hp;
    if (size > 0 && data[0] == '{') {
        df_config *cfg;
        if (df_config_parse((const char *)data, size, "fuzz/config.json", &cfg) != DF_OK) return 0;
        if (df_dflash_read_hparams_config(cfg, &hp) == DF_OK) check_hparams(&hp);
        df_config_close(cfg);
        return 0;
    }
    df_gguf *g;
    if (df_gguf_open_memory(data, size, "fuzz.gguf", &g) != DF_OK) return 0;
    df_dflash_draft *d;
    if (df_dflash_draft_load_gguf(g, be, &d) == DF_OK) {
        check_hparams(&d->hp);
        if (d->fc.ne[0] != d->hp.n_capture * d->hp.n_embd || d->fc.ne[1] != d->hp.n_embd)
            __builtin_trap();
        df_qwen35_hparams t = {.n_embd = d->hp.n_embd, .n_vocab = d->hp.mask_token_id + 1,
                               .n_layer = 64};
        int32_t ids[DF_DFLASH_MAX_CAPTURE];
        if (df_dflash_draft_capture_layers(d, &t, ids) == DF_OK)
            for (int64_t i = 0; i < d->hp.n_capture; i++)
                if (ids[i] < 0 || ids[i] >= t.n_layer - 1) __builtin_trap();
        df_dflash_draft_free(d);
    }
    df_gguf_close(g);
    return 0;
}
