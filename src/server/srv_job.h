/* One generation request on its way through the server: queued by the HTTP thread, run by a
 * worker, its output bytes (an SSE stream or one JSON body) handed back to the HTTP thread.
 *
 * The worker formats everything; the HTTP side only ships bytes. A job is shared by the two
 * threads and freed by whichever lets go last (a reference count). */
#ifndef DF_SERVER_SRV_JOB_H
#define DF_SERVER_SRV_JOB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "server/srv_error.h"
#include "server/srv_request.h"

typedef enum srv_job_state {
    SRV_JOB_QUEUED,
    SRV_JOB_STARTED, /* the prompt was accepted: the reply is a 200 from here on */
    SRV_JOB_DONE,    /* all output is in `out` (or `failed` with `err`) */
} srv_job_state;

typedef struct srv_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    srv_request req;
    srv_job_state state;
    bool failed;          /* before STARTED: the reply is err; after: the stream just ends */
    srv_error err;
    atomic_int cancel;    /* set by the HTTP side when the client went away */
    char *out;            /* bytes for the client not yet taken */
    size_t out_len, out_cap;
} srv_job;

/* A job owning *req (moved: *req is zeroed). Two references: the HTTP side's and the queue's. */
srv_job *srv_job_new(srv_request *req);
void srv_job_release(srv_job *j);

/* Worker side (they lock). append returns false when out of memory. */
bool srv_job_append(srv_job *j, const char *s, size_t len);
void srv_job_set_state(srv_job *j, srv_job_state st);
void srv_job_fail(srv_job *j, const srv_error *e);

/* HTTP side: waits until the state is at least `st` or `ms` milliseconds pass; returns the
 * state then. */
srv_job_state srv_job_wait(srv_job *j, srv_job_state st, int ms);
/* Moves up to max bytes of output into buf; *done is set when no more will ever come.
 * Waits at most ms milliseconds for output. Returns the byte count. */
size_t srv_job_take(srv_job *j, char *buf, size_t max, int ms, bool *done);

#endif
