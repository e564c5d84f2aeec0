/* SSE events and JSON bodies written into a job's output. */
#include "server/srv_sse.h"

#include <stdlib.h>
#include <string.h>

#include "text/bytes.h"
#include "text/utf8.h"

json_t *srv_json_text(const char *text, size_t len) {
    if (len == 0) return json_string("");
    if (df_utf8_valid((const uint8_t *)text, len)) return json_stringn(text, len);
    df_bytes b = {0};
    json_t *s = NULL;
    if (df_utf8_sanitize((const uint8_t *)text, len, &b) == DF_OK) s = json_stringn(b.data, b.len);
    df_bytes_free(&b);
    return s;
}

static bool append_dump(srv_job *j, json_t *obj, const char *pre, const char *post) {
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!s) return false;
    bool ok = srv_job_append(j, pre, strlen(pre)) && srv_job_append(j, s, strlen(s)) &&
              srv_job_append(j, post, strlen(post));
    free(s);
    return ok;
}

bool srv_sse_event(srv_job *j, json_t *obj) { return append_dump(j, obj, "data: ", "\n\n"); }

bool srv_sse_done(srv_job *j) {
    static const char done[] = "data: [DONE]\n\n";
    return srv_job_append(j, done, sizeof done - 1);
}

bool srv_json_body(srv_job *j, json_t *obj) { return append_dump(j, obj, "", "\n"); }
