/* Server counters, rendered in the Prometheus text exposition format for GET /metrics. */
#ifndef DF_SERVER_SRV_METRICS_H
#define DF_SERVER_SRV_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_METRICS_MAX_SERIES 64

typedef struct srv_metrics srv_metrics;

srv_metrics *srv_metrics_new(void);
void srv_metrics_free(srv_metrics *m);

/* One HTTP request answered: route is a fixed string ("/v1/chat/completions", "other"). */
void srv_metrics_request(srv_metrics *m, const char *route, int status);
/* One generation finished (cancelled: its client left or the server is stopping). n_verify
 * == 0 when it was not speculative. */
void srv_metrics_generation(srv_metrics *m, int64_t n_prompt, int64_t n_gen, double prefill_s, double decode_s,
                            int64_t n_verify, double mean_accept_len, bool cancelled);
void srv_metrics_queue_depth(srv_metrics *m, int64_t depth);
void srv_metrics_busy(srv_metrics *m, int delta);

/* The exposition text, malloc'd (free() it); NULL when out of memory. */
char *srv_metrics_render(srv_metrics *m, int parallel, int queue_capacity);

#endif
