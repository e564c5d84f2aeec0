/* dflash serve: the OpenAI-compatible HTTP server (src/server/), when built with libmicrohttpd. */
#include <stdio.h>
#include <string.h>

#include "tools/cli_args.h"
#include "tools/cli_default_model.h"
#include "tools/commands.h"

#ifdef DFLASH_HAVE_MHD
#include "server/server.h"
#endif

#define CMD "serve"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dflash serve -m MODEL.gguf [options]\n"
            "  --draft PATH      DFlash drafter: speculative decoding for greedy requests\n"
            "  --host ADDR       numeric address to bind (default 127.0.0.1: this machine only)\n"
            "  --port N          TCP port (default 8080; 0: any free port, printed at start)\n"
            "  --api-key KEY     require 'Authorization: Bearer KEY' on every route but /health\n"
            "  --ctx N           context size of each session (default: min(training context, 4096))\n"
            "  --parallel N      sessions generating at once (default 1)\n"
            "  --queue N         requests that may wait for a session; more get 503 (default 16)\n"
            "  --max-body BYTES  largest request body; larger get 413 (default 1048576)\n"
            "  --threads N       CPU threads (default: all)\n"
            "  --device DEV      cpu (default), cuda or cuda:N\n"
            "Routes: GET /health, GET /v1/models, GET /metrics, POST /v1/chat/completions,\n"
            "POST /v1/completions (see docs/API.md).\n");
}

int cmd_serve(int argc, char **argv) {
    const char *model = NULL, *draft = NULL, *host = "127.0.0.1", *api_key = NULL, *device = "cpu";
    long long port = 8080, ctx = 0, parallel = 1, queue = 16, max_body = 1 << 20, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!(v = cli_value(CMD, argc, argv, &i))) {
            return 2;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            model = v;
        } else if (!strcmp(a, "--draft")) {
            draft = v;
        } else if (!strcmp(a, "--device")) {
            device = v;
        } else if (!strcmp(a, "--host")) {
            host = v;
        } else if (!strcmp(a, "--api-key")) {
            api_key = v;
            if (!*api_key) {
                fprintf(stderr, "dflash serve: --api-key: empty key\n");
                return 2;
            }
        } else if (!strcmp(a, "--port")) {
            if (!cli_int(CMD, a, v, 0, 65535, &port)) return 2;
        } else if (!strcmp(a, "--ctx")) {
            if (!cli_int(CMD, a, v, 16, 1 << 24, &ctx)) return 2;
        } else if (!strcmp(a, "--parallel")) {
            if (!cli_int(CMD, a, v, 1, 256, &parallel)) return 2;
        } else if (!strcmp(a, "--queue")) {
            if (!cli_int(CMD, a, v, 1, 1 << 16, &queue)) return 2;
        } else if (!strcmp(a, "--max-body")) {
            if (!cli_int(CMD, a, v, 1024, 1LL << 32, &max_body)) return 2;
        } else if (!strcmp(a, "--threads")) {
            if (!cli_int(CMD, a, v, 0, 1024, &threads)) return 2;
        } else {
            fprintf(stderr, "dflash serve: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!cli_default_pair(CMD, &model, &draft)) return 2;
#ifdef DFLASH_HAVE_MHD
    df_server_config cfg = {.model_path = model, .draft_path = draft, .host = host, .port = (int)port,
                            .api_key = api_key, .n_ctx = (int)ctx, .parallel = (int)parallel,
                            .queue = (int)queue, .max_body = (size_t)max_body, .n_threads = (int)threads,
                            .device = device};
    return df_server_run(&cfg);
#else
    (void)draft;
    (void)device;
    (void)host;
    (void)api_key;
    fprintf(stderr, "dflash serve: this dflash was built without libmicrohttpd; install libmicrohttpd-dev "
                    "and rebuild to get the server\n");
    return 1;
#endif
}
