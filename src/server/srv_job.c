/* Shared generation jobs: a mutex, a condition variable and an output buffer. */
#include "server/srv_job.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

srv_job *srv_job_new(srv_request *req) {
    srv_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        free(j);
        pthread_condattr_destroy(&ca);
        return NULL;
    }
    if (pthread_cond_init(&j->cv, &ca) != 0) {
        pthread_mutex_destroy(&j->mu);
        free(j);
        pthread_condattr_destroy(&ca);
        return NULL;
    }
    pthread_condattr_destroy(&ca);
    j->refs = 2;
    j->req = *req;
    memset(req, 0, sizeof *req);
    atomic_init(&j->cancel, 0);
    return j;
}

void srv_job_release(srv_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left > 0) return;
    srv_request_free(&j->req);
    free(j->out);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

bool srv_job_append(srv_job *j, const char *s, size_t len) {
    if (len == 0) return true;
    pthread_mutex_lock(&j->mu);
    bool ok = true;
    if (j->out_len + len > j->out_cap) {
        size_t cap = (j->out_len + len) * 2 + 256;
        char *p = realloc(j->out, cap);
        if (p) {
            j->out = p;
            j->out_cap = cap;
        } else {
            ok = false;
        }
    }
    if (ok) {
        memcpy(j->out + j->out_len, s, len);
        j->out_len += len;
        pthread_cond_broadcast(&j->cv);
    }
    pthread_mutex_unlock(&j->mu);
    return ok;
}

void srv_job_set_state(srv_job *j, srv_job_state st) {
    pthread_mutex_lock(&j->mu);
    if (st > j->state) j->state = st;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void srv_job_fail(srv_job *j, const srv_error *e) {
    pthread_mutex_lock(&j->mu);
    j->failed = true;
    j->err = *e;
    j->state = SRV_JOB_DONE;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void deadline(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

srv_job_state srv_job_wait(srv_job *j, srv_job_state st, int ms) {
    struct timespec ts;
    deadline(&ts, ms);
    pthread_mutex_lock(&j->mu);
    while (j->state < st && pthread_cond_timedwait(&j->cv, &j->mu, &ts) != ETIMEDOUT) {
    }
    srv_job_state now = j->state;
    pthread_mutex_unlock(&j->mu);
    return now;
}

size_t srv_job_take(srv_job *j, char *buf, size_t max, int ms, bool *done) {
    struct timespec ts;
    deadline(&ts, ms);
    pthread_mutex_lock(&j->mu);
    while (j->out_len == 0 && j->state != SRV_JOB_DONE &&
           pthread_cond_timedwait(&j->cv, &j->mu, &ts) != ETIMEDOUT) {
    }
    size_t n = j->out_len < max ? j->out_len : max;
    if (n) {
        memcpy(buf, j->out, n);
        memmove(j->out, j->out + n, j->out_len - n);
    }
    j->out_len -= n;
    *done = j->state == SRV_JOB_DONE && j->out_len == 0;
    pthread_mutex_unlock(&j->mu);
    return n;
}
