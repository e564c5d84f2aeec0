/* libFuzzer target: the server's request parser (JSON body -> validated request or an
 * OpenAI-style error). The first byte picks chat or completion; the rest is the body. A
 * body must either parse or give a 4xx/5xx error whose JSON form is valid JSON with a
 * message; nothing may crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef DFLASH_HAVE_MHD
#include "server/srv_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    srv_kind kind = (data[0] & 1) ? SRV_COMPLETION : SRV_CHAT;
    srv_request r;
    srv_error e;
    if (srv_request_parse((const char *)data + 1, size - 1, kind, "m", &r, &e)) {
        if (kind == SRV_CHAT && !json_is_array(r.messages)) __builtin_trap();
        if (kind == SRV_COMPLETION && !r.prompt) __builtin_trap();
        if (r.n_stop < 0 || r.n_stop > SRV_MAX_STOP) __builtin_trap();
        srv_request_free(&r);
    } else {
        if (e.status < 400 || e.status > 599 || !e.message[0]) __builtin_trap();
        char *s = srv_error_json(&e);
        json_t *back = s ? json_loads(s, 0, NULL) : NULL;
        if (!json_is_string(json_object_get(json_object_get(back, "error"), "message"))) __builtin_trap();
        json_decref(back);
        free(s);
    }
    return 0;
}
#else
/* Built without libmicrohttpd: there is no server to fuzz. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)data;
    (void)size;
    return 0;
}
#endif
