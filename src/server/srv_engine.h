/* The model side of the server: one loaded model, a session per worker, the chat template,
 * and the job runner the worker pool calls (render, tokenize, generate, format). */
#ifndef DF_SERVER_SRV_ENGINE_H
#define DF_SERVER_SRV_ENGINE_H

#include <pthread.h>

#include "dflash.h"
#include "server/srv_job.h"
#include "server/srv_metrics.h"
#include "text/jinja.h"

typedef struct srv_engine {
    dflash_model *model;
    dflash_session **sessions; /* one per worker */
    int n_sessions;
    df_jinja_template *tmpl;   /* the GGUF's chat template, or a plain ChatML one */
    char *model_name;          /* what /v1/models lists and requests may name */
    srv_metrics *metrics;
    /* On the CPU each session has threads of its own (a backend lane) and sessions generate
     * at the same time: independent. Elsewhere (a GPU backend) sessions share the backend,
     * which runs one forward at a time, so workers take turns: a ticket lock held while a
     * session computes and passed on at every emitted token, so N streams advance in round
     * robin, token by token, and none starves. */
    bool independent;
    pthread_mutex_t turn_mu;
    pthread_cond_t turn_cv;
    unsigned long long turn_next, turn_serving;
    bool turn_ready;
} srv_engine;

/* Loads what a server needs; prints nothing. Returns 0 or a dflash status (message in
 * dflash_last_error()). */
int srv_engine_open(srv_engine *e, const dflash_model_params *mp, const dflash_session_params *sp, int n_sessions,
                    const char *model_name, srv_metrics *metrics);
void srv_engine_close(srv_engine *e);

/* srv_run_fn: runs job j on session `worker`. */
void srv_engine_run(void *engine, int worker, srv_job *j);

#endif
