/* A request body (JSON) turned into a validated request, or an OpenAI-style error naming the
 * field. Pure: no HTTP and no model, so it is unit-tested and fuzzed on its own. */
#ifndef DF_SERVER_SRV_REQUEST_H
#define DF_SERVER_SRV_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/srv_error.h"

#define SRV_MAX_STOP 16

typedef enum srv_kind { SRV_CHAT, SRV_COMPLETION } srv_kind;

typedef struct srv_request {
    srv_kind kind;
    json_t *messages;      /* chat: array of messages, content flattened to strings */
    json_t *tools;         /* chat: NULL or a non-empty array (NULL when tool_choice is "none") */
    json_t *template_kwargs; /* chat_template_kwargs: NULL or an object */
    char *prompt;          /* completion */
    bool stream;
    bool include_usage;    /* stream_options.include_usage */
    int32_t max_tokens;    /* -1: until end of generation or the context is full */
    float temperature;     /* default 1 as in OpenAI; 0: greedy */
    float top_p;           /* default 1 (off) */
    int32_t top_k;         /* default 0 (off) */
    float min_p;           /* default 0 (off) */
    bool has_seed;
    uint64_t seed;
    bool ignore_eos;       /* vLLM's extension: generate past end-of-generation tokens */
    char *stop[SRV_MAX_STOP];
    int n_stop;
} srv_request;

/* Parses body[0..len) as a `kind` request. served_model: the one model name this server
 * answers to; a request naming another gets a 404 model_not_found. On failure *r holds
 * nothing to free and *e says why. */
bool srv_request_parse(const char *body, size_t len, srv_kind kind, const char *served_model,
                       srv_request *r, srv_error *e);
void srv_request_free(srv_request *r);

#endif
