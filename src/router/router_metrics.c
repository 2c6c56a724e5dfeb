/* router_metrics.c: the router's request metrics for the metrics module,
 * summed per (app, process) over routes and workers without a lock on the
 * request path (see router_metrics.h). */
#include "router/router_metrics.h"
#include "router/router_internal.h"
#include "core/util.h"
#include <stdlib.h>
#include <string.h>

_Static_assert(ROUTER_METRICS_BUCKETS == RT_HIST_BUCKETS, "bucket counts differ");

const double *router_metrics_bounds(size_t *n)
{
	*n = RT_HIST_BUCKETS;
	return rt_hist_bounds;
}

static int stats_cmp(const void *a, const void *b)
{
	const struct rt_stats *x = *(const struct rt_stats *const *)a;
	const struct rt_stats *y = *(const struct rt_stats *const *)b;
	int c = strcmp(x->app, y->app);
	return c ? c : strcmp(x->process, y->process);
}

static void add_worker(struct router_metrics_proc *p, const struct rt_counters *c)
{
	p->requests += RT_GET(c->requests);
	for (int i = 0; i < 6; i++)
		p->status[i] += RT_GET(c->status[i]);
	for (int i = 0; i <= RT_HIST_BUCKETS; i++)
		p->hist[i] += RT_GET(c->hist[i]);
	p->latency_sum += (double)RT_GET(c->latency_us) / 1e6;
	p->inflight += RT_GET(c->inflight);
	p->bytes_in += RT_GET(c->bytes_in);
	p->bytes_out += RT_GET(c->bytes_out);
	p->connect_errors += RT_GET(c->connect_errors);
	p->retries += RT_GET(c->retries);
	p->ejections += RT_GET(c->ejections);
}

void router_metrics_each(struct router *r, router_metrics_proc_cb cb, void *ctx)
{
	if (!r)
		return;
	/* The list only grows, appended by the control loop (this thread);
	 * each entry lives as long as the router. */
	uv_mutex_lock(&r->stats_lock);
	size_t n = r->n_stats;
	struct rt_stats **list = xmalloc((n ? n : 1) * sizeof(*list));
	if (n)
		memcpy(list, r->stats, n * sizeof(*list));
	uv_mutex_unlock(&r->stats_lock);
	qsort(list, n, sizeof(*list), stats_cmp);
	for (size_t k = 0; k < n;) {
		struct router_metrics_proc p = {.app = list[k]->app, .process = list[k]->process};
		size_t j = k;
		bool routed = false;
		for (; j < n && stats_cmp(&list[k], &list[j]) == 0; j++) {
			routed |= list[j]->routed;
			for (int w = 0; w < r->n_workers; w++)
				add_worker(&p, &list[j]->w[w]);
		}
		if (p.inflight < 0)
			p.inflight = 0; /* workers' counts are read at slightly different times */
		/* A process no route leads to any more (its app destroyed, its
		 * routes removed) has its series dropped once its last request
		 * is done; they continue if it is routed again. */
		if (routed || p.inflight > 0)
			cb(ctx, &p);
		k = j;
	}
	free(list);
}

bool router_metrics_get(struct router *r, const char *app, const char *process,
			struct router_metrics_proc *out)
{
	memset(out, 0, sizeof(*out));
	out->app = app;
	out->process = process;
	if (!r)
		return false;
	uv_mutex_lock(&r->stats_lock);
	size_t n = r->n_stats;
	struct rt_stats **list = r->stats;
	uv_mutex_unlock(&r->stats_lock);
	/* Only the control loop (this thread) grows the list, so it cannot
	 * move while it is walked here. */
	bool found = false;
	for (size_t k = 0; k < n; k++) {
		if (strcmp(list[k]->app, app) || strcmp(list[k]->process, process))
			continue;
		for (int w = 0; w < r->n_workers; w++)
			add_worker(out, &list[k]->w[w]);
		found = true;
	}
	if (out->inflight < 0)
		out->inflight = 0;
	return found;
}

void router_metrics_global(struct router *r, struct router_metrics_global *out)
{
	memset(out, 0, sizeof(*out));
	if (!r)
		return;
	out->workers = r->n_workers;
	for (int w = 0; w < r->n_workers; w++) {
		out->backend_opened += RT_GET(r->workers[w].new_backend_conns);
		out->backend_reused += RT_GET(r->workers[w].reused_backend_conns);
		out->access_log_dropped += RT_GET(r->workers[w].access_dropped);
		out->connections += router_metrics_worker_connections(r, w);
		out->connections_moved += RT_GET(r->workers[w].moved_in);
	}
	out->https = r->https_listen != NULL;
	out->tls_handshake_failures = router_tls_handshake_failures(r);
}

int64_t router_metrics_worker_connections(struct router *r, int k)
{
	int64_t n = RT_GET(r->workers[k].n_clients);
	return n > 0 ? n : 0; /* a hand-over in flight is counted before it lands */
}
