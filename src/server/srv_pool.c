/* Bounded job queue + worker threads. */
#include "server/srv_pool.h"

#include <stdlib.h>

struct srv_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_job **ring;
    int cap, head, count;
    bool closed;
    int n_workers, n_started;
    pthread_t *threads;
    srv_job **running; /* per worker; NULL when idle */
    srv_run_fn run;
    void *ctx;
    srv_metrics *metrics;
};

typedef struct worker_arg {
    srv_pool *p;
    int index;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg *w = arg;
    srv_pool *p = w->p;
    int index = w->index;
    free(w);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->closed && p->count == 0) pthread_cond_wait(&p->cv, &p->mu);
        if (p->count == 0) { /* closed and drained */
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        srv_job *j = p->ring[p->head];
        p->head = (p->head + 1) % p->cap;
        p->count--;
        p->running[index] = j;
        if (p->metrics) {
            srv_metrics_queue_depth(p->metrics, p->count);
            srv_metrics_busy(p->metrics, 1);
        }
        pthread_mutex_unlock(&p->mu);

        p->run(p->ctx, index, j);

        pthread_mutex_lock(&p->mu);
        p->running[index] = NULL;
        pthread_mutex_unlock(&p->mu);
        if (p->metrics) srv_metrics_busy(p->metrics, -1);
        srv_job_release(j);
    }
}

srv_pool *srv_pool_new(int n_workers, int capacity, srv_run_fn run, void *ctx, srv_metrics *metrics) {
    if (n_workers < 1 || capacity < 1) return NULL;
    srv_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->ring = calloc((size_t)capacity, sizeof *p->ring);
    p->threads = calloc((size_t)n_workers, sizeof *p->threads);
    p->running = calloc((size_t)n_workers, sizeof *p->running);
    if (!p->ring || !p->threads || !p->running || pthread_mutex_init(&p->mu, NULL) != 0) goto fail_alloc;
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        goto fail_alloc;
    }
    p->cap = capacity;
    p->n_workers = n_workers;
    p->run = run;
    p->ctx = ctx;
    p->metrics = metrics;
    for (int i = 0; i < n_workers; i++) {
        worker_arg *w = malloc(sizeof *w);
        if (!w) break;
        *w = (worker_arg){p, i};
        if (pthread_create(&p->threads[i], NULL, worker_main, w) != 0) {
            free(w);
            break;
        }
        p->n_started++;
    }
    if (p->n_started < n_workers) {
        srv_pool_shutdown(p);
        srv_pool_free(p);
        return NULL;
    }
    return p;
fail_alloc:
    free(p->ring);
    free(p->threads);
    free(p->running);
    free(p);
    return NULL;
}

bool srv_pool_submit(srv_pool *p, srv_job *j) {
    pthread_mutex_lock(&p->mu);
    bool ok = !p->closed && p->count < p->cap;
    if (ok) {
        p->ring[(p->head + p->count) % p->cap] = j;
        p->count++;
        if (p->metrics) srv_metrics_queue_depth(p->metrics, p->count);
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return ok;
}

int srv_pool_depth(srv_pool *p) {
    pthread_mutex_lock(&p->mu);
    int n = p->count;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void srv_pool_shutdown(srv_pool *p) {
    pthread_mutex_lock(&p->mu);
    p->closed = true;
    srv_error e;
    srv_fail(&e, 503, "server_error", "server_shutting_down", NULL, "the server is shutting down");
    while (p->count > 0) {
        srv_job *j = p->ring[p->head];
        p->head = (p->head + 1) % p->cap;
        p->count--;
        srv_job_fail(j, &e);
        srv_job_release(j);
    }
    for (int i = 0; i < p->n_workers; i++)
        if (p->running[i]) atomic_store(&p->running[i]->cancel, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->threads[i], NULL);
    p->n_started = 0;
    if (p->metrics) srv_metrics_queue_depth(p->metrics, 0);
}

void srv_pool_free(srv_pool *p) {
    if (!p) return;
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->ring);
    free(p->threads);
    free(p->running);
    free(p);
}
