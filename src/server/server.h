/* dflash serve: an OpenAI-compatible HTTP server over the public API (libmicrohttpd). */
#ifndef DF_SERVER_SERVER_H
#define DF_SERVER_SERVER_H

#include <stddef.h>

typedef struct df_server_config {
    const char *model_path;
    const char *draft_path;  /* NULL: no speculative decoding */
    const char *host;        /* numeric address to bind; default 127.0.0.1 */
    int port;                /* 0: any free port (printed at start) */
    const char *api_key;     /* NULL: no authentication */
    int n_ctx;               /* per session; 0: the engine's default */
    int parallel;            /* sessions generating at once */
    int queue;               /* requests that may wait for a session before 503 */
    size_t max_body;         /* bytes; larger bodies get 413 */
    int n_threads;           /* CPU threads; 0: all */
    const char *device;      /* "cpu" (NULL: the same), "cuda", "cuda:N" */
} df_server_config;

/* Loads the model, serves until SIGINT or SIGTERM, then shuts down cleanly. Returns the
 * process exit status; errors are printed to stderr. */
int df_server_run(const df_server_config *cfg);

#endif
