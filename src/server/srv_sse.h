/* Server-sent events and JSON helpers for responses: `data: {...}\n\n` events, the final
 * `data: [DONE]`, text made safe for JSON. */
#ifndef DF_SERVER_SRV_SSE_H
#define DF_SERVER_SRV_SSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "server/srv_job.h"

/* A JSON string of text[0..len) with ill-formed UTF-8 replaced by U+FFFD (a model can emit
 * any bytes; the wire must stay valid JSON). NULL when out of memory. */
json_t *srv_json_text(const char *text, size_t len);

/* Appends `data: <obj compact>\n\n` to the job's output and drops the reference to obj. */
bool srv_sse_event(srv_job *j, json_t *obj);
/* Appends `data: [DONE]\n\n`. */
bool srv_sse_done(srv_job *j);
/* Appends obj as the whole body (non-streaming replies) and drops the reference. */
bool srv_json_body(srv_job *j, json_t *obj);

#endif
