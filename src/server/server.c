/* dflash serve: start-up, the wait for a signal, and an orderly shutdown.
 *
 * Shutdown order matters: stop accepting connections, then close the queue (waiting
 * requests get 503, running generations are cancelled at their next token) and join the
 * workers, then stop the HTTP daemon (its connection threads see their jobs finished and
 * return), and only then free the sessions and the model they used. */
#include "server/server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/srv_http.h"

/* The name requests use for the model: the file name without directories and ".gguf". */
static void model_name(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, cap, "%s", base);
    size_t n = strlen(out);
    if (n > 5 && !strcmp(out + n - 5, ".gguf")) out[n - 5] = '\0';
}

int df_server_run(const df_server_config *cfg) {
    srv_server s;
    memset(&s, 0, sizeof s);
    s.cfg = *cfg;
    if (!s.cfg.host) s.cfg.host = "127.0.0.1";

    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    bool ipv6 = strchr(s.cfg.host, ':') != NULL;
    if (ipv6 ? inet_pton(AF_INET6, s.cfg.host, &a6.sin6_addr) != 1 : inet_pton(AF_INET, s.cfg.host, &a4.sin_addr) != 1) {
        fprintf(stderr, "dflash serve: --host '%s' is not a numeric IPv4 or IPv6 address\n", s.cfg.host);
        return 2;
    }
    a4.sin_family = AF_INET;
    a4.sin_port = htons((uint16_t)s.cfg.port);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((uint16_t)s.cfg.port);

    /* Signals go to this thread only (sigwait below): block them before any thread starts,
     * so every thread inherits the mask. SIGPIPE from a vanished client is not fatal. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    char name[256];
    model_name(cfg->model_path, name, sizeof name);
    dflash_model_params mp = dflash_model_default_params();
    mp.path = cfg->model_path;
    mp.draft_path = cfg->draft_path;
    mp.n_threads = cfg->n_threads;
    mp.device = cfg->device;
    dflash_session_params sp = dflash_session_default_params();
    sp.n_ctx = cfg->n_ctx;
    if (cfg->parallel > 1) {
        /* Each session gets its share of the CPU threads, so that they generate at once. */
        long cpus = cfg->n_threads > 0 ? cfg->n_threads : sysconf(_SC_NPROCESSORS_ONLN);
        sp.n_threads = cpus / cfg->parallel > 1 ? (int32_t)(cpus / cfg->parallel) : 1;
    }
    int code = 1;
    struct MHD_Daemon *d = NULL;
    if (!(s.metrics = srv_metrics_new())) {
        fprintf(stderr, "dflash serve: out of memory\n");
        goto done;
    }
    if (srv_engine_open(&s.engine, &mp, &sp, cfg->parallel, name, s.metrics) != 0) {
        fprintf(stderr, "dflash serve: %s\n", dflash_last_error());
        goto done;
    }
    if (!(s.pool = srv_pool_new(cfg->parallel, cfg->queue, srv_engine_run, &s.engine, s.metrics))) {
        fprintf(stderr, "dflash serve: could not start %d worker threads\n", cfg->parallel);
        goto done;
    }
    d = srv_http_start(&s, ipv6 ? (const struct sockaddr *)&a6 : (const struct sockaddr *)&a4, ipv6);
    if (!d) {
        fprintf(stderr, "dflash serve: could not listen on %s port %d (in use? not an address of this host?)\n",
                s.cfg.host, s.cfg.port);
        goto done;
    }
    fprintf(stderr, "dflash serve: model '%s' (%d sessions%s, context %d%s) listening on http://%s%s%s:%d\n", name,
            cfg->parallel, cfg->parallel == 1 ? "" : s.engine.independent ? " in parallel" : " taking turns",
            dflash_session_n_ctx(s.engine.sessions[0]),
            dflash_model_has_drafter(s.engine.model) ? ", speculative" : "", ipv6 ? "[" : "", s.cfg.host,
            ipv6 ? "]" : "", srv_http_port(d));
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "dflash serve: %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    MHD_quiesce_daemon(d);
    code = 0;
done:
    if (s.pool) srv_pool_shutdown(s.pool);
    if (d) MHD_stop_daemon(d);
    srv_pool_free(s.pool);
    srv_engine_close(&s.engine);
    srv_metrics_free(s.metrics);
    return code;
}
