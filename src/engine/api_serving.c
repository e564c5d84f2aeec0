/* Small accessors the server needs: the GGUF's chat template and a session's context size. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

char *dflash_model_chat_template(const dflash_model *m) {
    const char *s;
    size_t len;
    if (!m || df_gguf_get_str(m->gguf, "tokenizer.chat_template", &s, &len) != DF_OK) return NULL;
    char *out = malloc(len + 1);
    if (!out) return NULL;
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

int32_t dflash_session_n_ctx(const dflash_session *s) { return s ? (int32_t)s->st->n_ctx : 0; }
