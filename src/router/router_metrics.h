/* router_metrics.h: read-only accessors that the metrics samplers use to
 * pull the router's request metrics. Counters are read lock-free from each
 * worker's own copy and summed; the numbers are totals since the router
 * started (counters in the Prometheus sense). Call on the control loop. */
#ifndef PAASOPS_ROUTER_METRICS_H
#define PAASOPS_ROUTER_METRICS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct router;

#define ROUTER_METRICS_BUCKETS 14

/* Upper bounds (seconds) of the latency histogram's finite buckets. */
const double *router_metrics_bounds(size_t *n);

/* One process type's totals, summed over its routes and the workers. */
struct router_metrics_proc {
	const char *app, *process; /* borrowed for the call */
	uint64_t requests;
	uint64_t status[6]; /* [0] no status sent, [1] 1xx ... [5] 5xx */
	uint64_t hist[ROUTER_METRICS_BUCKETS + 1]; /* per bucket, the last is +Inf */
	double latency_sum; /* seconds */
	int64_t inflight;
	uint64_t bytes_in, bytes_out; /* from clients, to clients */
	uint64_t connect_errors, retries, ejections;
};

typedef void (*router_metrics_proc_cb)(void *ctx, const struct router_metrics_proc *p);
/* Calls cb once per (app, process) the router has seen traffic rules for,
 * in a stable order. */
void router_metrics_each(struct router *r, router_metrics_proc_cb cb, void *ctx);

/* One process type's totals, as router_metrics_each would report them,
 * without walking the others' order; false (and zeros) when the router has
 * no traffic rules for it. app and process are borrowed into out. */
bool router_metrics_get(struct router *r, const char *app, const char *process,
			struct router_metrics_proc *out);

struct router_metrics_global {
	int workers;
	uint64_t backend_opened, backend_reused, access_log_dropped;
	int64_t connections;      /* client connections open now, all workers */
	uint64_t connections_moved; /* accepted by one worker, served by another */
	bool https;                      /* an HTTPS listener runs */
	uint64_t tls_handshake_failures; /* on it */
};
/* Client connections open now on worker k (0 <= k < workers). */
int64_t router_metrics_worker_connections(struct router *r, int k);
void router_metrics_global(struct router *r, struct router_metrics_global *out);

#endif
