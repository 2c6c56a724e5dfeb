/* router.c: the control side of the router: worker threads and their
 * listeners, building and publishing routing snapshots, draining, stats and
 * the access log hand-off to the control loop. The request path is in
 * router_proxy.c. */
#include "router/router_internal.h"
#include "router/router_metrics.h"
#include "compat/crypto.h"
#include "compat/json.h"
#include "core/hist.h"
#include "core/log.h"
#include "core/util.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

const double rt_hist_bounds[RT_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
						0.25,  0.5,    1,     2.5,  5,     10,  30};

const double router_hist_bounds[ROUTER_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
							0.25,  0.5,    1,     2.5,  5,     10,  30};

int64_t rt_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void router_config_defaults(struct router_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen = "127.0.0.1:8080";
	cfg->connect_timeout_ms = 5000;
	cfg->header_timeout_ms = 10000;
	cfg->response_timeout_ms = 30000;
	cfg->idle_timeout_ms = 60000;
	cfg->max_header_bytes = 64 * 1024;
	cfg->access_sample = 1.0;
}

/* ---- references ---- */

void rt_backend_ref(struct rt_backend *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void rt_backend_unref(struct rt_backend *b)
{
	if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
		return;
	free(b->instance);
	free(b);
}

void rt_snapshot_ref(struct rt_snapshot *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

static void snapshot_free(struct rt_snapshot *s)
{
	for (size_t k = 0; k < s->n_pools; k++) {
		struct rt_pool *p = &s->pools[k];
		for (size_t j = 0; j < p->n_be; j++)
			rt_backend_unref(p->be[j]);
		free(p->be);
		free(p->app);
		free(p->process);
		free(p->hash_name);
	}
	free(s->pools);
	for (size_t k = 0; k < s->n_routes; k++) {
		free(s->routes[k].host);
		free(s->routes[k].path);
	}
	free(s->routes);
	for (size_t k = 0; k < s->n_pending; k++)
		free(s->pending[k].instance);
	free(s->pending);
	free(s);
}

void rt_snapshot_unref(struct rt_snapshot *s)
{
	if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		snapshot_free(s);
}

/* ---- tables ---- */

struct router_table *router_table_new(void)
{
	struct rt_snapshot *s = xcalloc(1, sizeof(*s));
	atomic_init(&s->refs, 1);
	return (struct router_table *)s;
}

void router_table_free(struct router_table *t)
{
	if (t)
		snapshot_free((struct rt_snapshot *)t);
}

int router_table_pool(struct router_table *t, const char *app, const char *process,
		      enum router_balance balance, const char *hash_on)
{
	struct rt_snapshot *s = (struct rt_snapshot *)t;
	s->pools = xgrow(s->pools, sizeof(*s->pools), s->n_pools + 1, &s->alloc_pools);
	struct rt_pool *p = &s->pools[s->n_pools];
	memset(p, 0, sizeof(*p));
	p->app = xstrdup(app);
	p->process = xstrdup(process);
	p->balance = balance;
	if (balance == ROUTER_HASH && hash_on) {
		p->hash_cookie = str_starts_with(hash_on, "cookie:");
		const char *colon = strchr(hash_on, ':');
		p->hash_name = xstrdup(colon ? colon + 1 : hash_on);
	}
	return (int)s->n_pools++;
}

void router_table_maintenance(struct router_table *t, int pool)
{
	((struct rt_snapshot *)t)->pools[pool].maintenance = true;
}

void router_table_backend(struct router_table *t, int pool, const char *instance, int port)
{
	struct rt_snapshot *s = (struct rt_snapshot *)t;
	s->pending = xgrow(s->pending, sizeof(*s->pending), s->n_pending + 1, &s->alloc_pending);
	s->pending[s->n_pending++] = (struct rt_pending){pool, xstrdup(instance), port};
}

int router_table_route(struct router_table *t, const char *host, const char *path, int pool,
		       int64_t max_body)
{
	struct rt_snapshot *s = (struct rt_snapshot *)t;
	s->routes = xgrow(s->routes, sizeof(*s->routes), s->n_routes + 1, &s->alloc_routes);
	struct rt_route *rt = &s->routes[s->n_routes++];
	memset(rt, 0, sizeof(*rt));
	rt->host = host ? xstrdup(host) : NULL;
	rt->wildcard = host && str_starts_with(host, "*.");
	rt->path = xstrdup(path ? path : "/");
	rt->path_len = strlen(rt->path);
	rt->pool = pool;
	rt->max_body = max_body > 0 ? max_body : RT_DEFAULT_MAX_BODY;
	return (int)(s->n_routes - 1);
}

void router_table_route_https_redirect(struct router_table *t, int route)
{
	struct rt_snapshot *s = (struct rt_snapshot *)t;
	s->routes[route].https_redirect = true;
}

/* Most specific first: exact host, then wildcards (longest first), then
 * any host; within each, the longest path prefix. */
static int route_rank(const struct rt_route *r)
{
	return !r->host ? 2 : r->wildcard ? 1 : 0;
}

static int route_cmp(const void *a, const void *b)
{
	const struct rt_route *x = a, *y = b;
	int rx = route_rank(x), ry = route_rank(y);
	if (rx != ry)
		return rx - ry;
	if (rx == 1) {
		size_t lx = strlen(x->host), ly = strlen(y->host);
		if (lx != ly)
			return lx > ly ? -1 : 1;
	}
	if (x->path_len != y->path_len)
		return x->path_len > y->path_len ? -1 : 1;
	return 0;
}

static struct rt_stats *stats_for(struct router *r, const char *app, const char *process,
				  const char *route)
{
	for (size_t k = 0; k < r->n_stats; k++) {
		struct rt_stats *st = r->stats[k];
		if (!strcmp(st->app, app) && !strcmp(st->process, process) && !strcmp(st->route, route))
			return st;
	}
	struct rt_stats *st = xcalloc(1, sizeof(*st));
	st->app = xstrdup(app);
	st->process = xstrdup(process);
	st->route = xstrdup(route);
	st->w = xcalloc((size_t)r->n_workers, sizeof(*st->w));
	uv_mutex_lock(&r->stats_lock);
	r->stats = xgrow(r->stats, sizeof(*r->stats), r->n_stats + 1, &r->alloc_stats);
	r->stats[r->n_stats++] = st;
	uv_mutex_unlock(&r->stats_lock);
	return st;
}

static struct rt_backend *backend_for(struct router *r, const char *instance, int port)
{
	for (size_t k = 0; k < r->n_known; k++) {
		struct rt_backend *b = r->known[k];
		if (b->port == port && !strcmp(b->instance, instance))
			return b;
	}
	struct rt_backend *b = xcalloc(1, sizeof(*b));
	atomic_init(&b->refs, 1); /* the known list's reference */
	b->instance = xstrdup(instance);
	b->port = port;
	b->addr.sin_family = AF_INET;
	b->addr.sin_port = htons((uint16_t)port);
	b->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->known = xgrow(r->known, sizeof(*r->known), r->n_known + 1, &r->alloc_known);
	r->known[r->n_known++] = b;
	return b;
}

void router_publish(struct router *r, struct router_table *t)
{
	struct rt_snapshot *s = (struct rt_snapshot *)t;
	s->gen = ++r->gen;
	for (size_t k = 0; k < r->n_known; k++)
		r->known[k]->removed_gen = r->known[k]->removed_gen ? r->known[k]->removed_gen : -1;
	for (size_t k = 0; k < s->n_pending; k++) {
		struct rt_pending *pd = &s->pending[k];
		struct rt_pool *p = &s->pools[pd->pool];
		struct rt_backend *b = backend_for(r, pd->instance, pd->port);
		b->removed_gen = 0;
		rt_backend_ref(b);
		p->be = xgrow(p->be, sizeof(*p->be), p->n_be + 1, &p->alloc_be);
		p->be[p->n_be++] = b;
		free(pd->instance);
	}
	s->n_pending = 0;
	/* Backends no longer routed remember when they left; those nobody
	 * references any more are forgotten. */
	size_t w = 0;
	for (size_t k = 0; k < r->n_known; k++) {
		struct rt_backend *b = r->known[k];
		if (b->removed_gen == -1)
			b->removed_gen = s->gen;
		if (b->removed_gen && atomic_load(&b->refs) == 1 && atomic_load(&b->inflight) == 0) {
			rt_backend_unref(b);
			continue;
		}
		r->known[w++] = b;
	}
	r->n_known = w;
	for (size_t k = 0; k < r->n_stats; k++)
		r->stats[k]->routed = false;
	for (size_t k = 0; k < s->n_routes; k++) {
		struct rt_route *rt = &s->routes[k];
		struct rt_pool *p = &s->pools[rt->pool];
		char key[600];
		snprintf(key, sizeof(key), "%s%s", rt->host ? rt->host : "*", rt->path);
		rt->stats = stats_for(r, p->app, p->process, key);
		rt->stats->routed = true;
	}
	if (s->n_routes > 1)
		qsort(s->routes, s->n_routes, sizeof(*s->routes), route_cmp);
	uv_mutex_lock(&r->lock);
	struct rt_snapshot *old = r->current;
	r->current = s;
	uv_mutex_unlock(&r->lock);
	rt_snapshot_unref(old);
	for (int k = 0; k < r->n_workers; k++)
		uv_async_send(&r->workers[k].wake);
}

bool router_drained(struct router *r, const char *instance)
{
	for (int k = 0; k < r->n_workers; k++)
		if (atomic_load(&r->workers[k].gen_seen) < r->gen)
			return false;
	for (size_t k = 0; k < r->n_known; k++) {
		struct rt_backend *b = r->known[k];
		if (strcmp(b->instance, instance) != 0)
			continue;
		if (!b->removed_gen || atomic_load(&b->inflight) > 0)
			return false;
	}
	return true;
}

void router_instance_stats(struct router *r, const char *instance, struct router_instance_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t k = 0; k < r->n_known; k++) {
		struct rt_backend *b = r->known[k];
		if (strcmp(b->instance, instance) != 0)
			continue;
		out->answered += atomic_load(&b->answered);
		out->errors_5xx += atomic_load(&b->errors_5xx);
		for (int i = 0; i <= RT_HIST_BUCKETS; i++)
			out->hist[i] += atomic_load(&b->hist[i]);
	}
}

void router_backend_healthy(struct router *r, const char *instance)
{
	for (size_t k = 0; k < r->n_known; k++) {
		struct rt_backend *b = r->known[k];
		if (strcmp(b->instance, instance) == 0 && atomic_load(&b->ejected_until)) {
			atomic_store(&b->ejected_until, 0);
			atomic_store(&b->fails, 0);
		}
	}
}

/* ---- stats ---- */

static void add_counters(struct json *o, struct router *r, struct rt_stats **list, size_t n)
{
	uint64_t req = 0, st[6] = {0}, hist[RT_HIST_BUCKETS + 1] = {0}, lat = 0, bin = 0, bout = 0;
	uint64_t cerr = 0, retries = 0, ej = 0;
	int64_t inflight = 0;
	for (size_t k = 0; k < n; k++) {
		for (int w = 0; w < r->n_workers; w++) {
			struct rt_counters *c = &list[k]->w[w];
			req += RT_GET(c->requests);
			for (int i = 0; i < 6; i++)
				st[i] += RT_GET(c->status[i]);
			for (int i = 0; i <= RT_HIST_BUCKETS; i++)
				hist[i] += RT_GET(c->hist[i]);
			lat += RT_GET(c->latency_us);
			bin += RT_GET(c->bytes_in);
			bout += RT_GET(c->bytes_out);
			cerr += RT_GET(c->connect_errors);
			retries += RT_GET(c->retries);
			ej += RT_GET(c->ejections);
			inflight += RT_GET(c->inflight);
		}
	}
	json_set_int(o, "requests", (int64_t)req);
	struct json *sc = json_set(o, "status", json_object());
	static const char *const names[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
	for (int i = 0; i < 6; i++)
		json_set_int(sc, names[i], (int64_t)st[i]);
	json_set_int(o, "inflight", inflight);
	json_set_int(o, "bytes_in", (int64_t)bin);
	json_set_int(o, "bytes_out", (int64_t)bout);
	json_set_int(o, "connect_errors", (int64_t)cerr);
	json_set_int(o, "retries", (int64_t)retries);
	json_set_int(o, "ejections", (int64_t)ej);
	json_set_num(o, "latency_seconds_sum", (double)lat / 1e6);
	struct json *h = json_set(o, "latency_histogram", json_array());
	uint64_t cum = 0;
	for (int i = 0; i <= RT_HIST_BUCKETS; i++) {
		cum += hist[i];
		struct json *b = json_append(h, json_object());
		if (i < RT_HIST_BUCKETS)
			json_set_num(b, "le", rt_hist_bounds[i]);
		else
			json_set_str(b, "le", "+Inf");
		json_set_int(b, "count", (int64_t)cum);
	}
	/* p50/p95/p99 estimated from the buckets like the metrics' pNN(). */
	static const struct {
		const char *name;
		double q;
	} qs[] = {{"p50_seconds", 0.5}, {"p95_seconds", 0.95}, {"p99_seconds", 0.99}};
	for (size_t k = 0; k < ARRAY_SIZE(qs); k++) {
		if (!req) {
			json_set(o, qs[k].name, json_null());
			continue;
		}
		json_set_num(o, qs[k].name, hist_quantile_counts(qs[k].q, rt_hist_bounds, hist, RT_HIST_BUCKETS));
	}
}

struct json *router_stats_json(struct router *r, const char *app)
{
	struct json *out = json_object();
	uv_mutex_lock(&r->stats_lock);
	size_t n = r->n_stats;
	struct rt_stats **list = xmalloc((n ? n : 1) * sizeof(*list));
	if (n) /* r->stats is NULL until the first route is published */
		memcpy(list, r->stats, n * sizeof(*list));
	uv_mutex_unlock(&r->stats_lock);
	struct rt_stats **mine = xmalloc((n ? n : 1) * sizeof(*mine));
	size_t m = 0;
	for (size_t k = 0; k < n; k++)
		if (!app || !strcmp(list[k]->app, app))
			mine[m++] = list[k];
	add_counters(out, r, mine, m);
	struct json *procs = json_set(out, "processes", json_object());
	struct json *routes = json_set(out, "routes", json_array());
	for (size_t k = 0; k < m; k++) {
		struct json *ro = json_append(routes, json_object());
		json_set_str(ro, "app", mine[k]->app);
		json_set_str(ro, "process", mine[k]->process);
		json_set_str(ro, "route", mine[k]->route);
		add_counters(ro, r, &mine[k], 1);
		if (json_get(procs, mine[k]->process))
			continue;
		struct rt_stats **same = xmalloc(m * sizeof(*same));
		size_t s = 0;
		for (size_t j = 0; j < m; j++)
			if (!strcmp(mine[j]->process, mine[k]->process) && !strcmp(mine[j]->app, mine[k]->app))
				same[s++] = mine[j];
		add_counters(json_set(procs, mine[k]->process, json_object()), r, same, s);
		free(same);
	}
	uint64_t fresh = 0, reused = 0, dropped = 0;
	for (int w = 0; w < r->n_workers; w++) {
		fresh += atomic_load(&r->workers[w].new_backend_conns);
		reused += atomic_load(&r->workers[w].reused_backend_conns);
		dropped += atomic_load(&r->workers[w].access_dropped);
	}
	struct json *rt = json_set(out, "router", json_object());
	json_set_int(rt, "workers", r->n_workers);
	json_set_int(rt, "backend_connections_opened", (int64_t)fresh);
	json_set_int(rt, "backend_connections_reused", (int64_t)reused);
	json_set_int(rt, "access_log_dropped", (int64_t)dropped);
	struct router_metrics_global g;
	router_metrics_global(r, &g);
	json_set_int(rt, "client_connections", g.connections);
	json_set_int(rt, "connections_moved", (int64_t)g.connections_moved);
	struct json *per = json_set(rt, "client_connections_per_worker", json_array());
	for (int w = 0; w < r->n_workers; w++)
		json_append(per, json_int(router_metrics_worker_connections(r, w)));
	json_set_int(rt, "tls_handshake_failures", (int64_t)router_tls_handshake_failures(r));
	free(mine);
	free(list);
	return out;
}

/* ---- access log hand-off ---- */

void rt_access_push(struct rt_worker *w, char *entry)
{
	uv_mutex_lock(&w->qlock);
	if (w->qn >= RT_ACCESS_QUEUE_MAX) {
		uv_mutex_unlock(&w->qlock);
		RT_ADD(w->access_dropped, 1);
		free(entry);
		return;
	}
	w->queue = xgrow(w->queue, sizeof(*w->queue), w->qn + 1, &w->qalloc);
	w->queue[w->qn++] = (struct rt_access){entry};
	bool kick = w->qn == 1 || w->qn == RT_ACCESS_KICK;
	uv_mutex_unlock(&w->qlock);
	if (kick)
		uv_async_send(w->r->access_async);
}

/* The control loop collects the lines RT_ACCESS_EVERY_MS after a worker
 * queued its first one, or at once when a worker has RT_ACCESS_KICK
 * waiting: collecting at every first line cost two thread switches per
 * handful of requests, and an idle router wakes nobody. */
static void access_drain(struct router *r)
{
	for (int k = 0; k < r->n_workers; k++) {
		struct rt_worker *w = &r->workers[k];
		uv_mutex_lock(&w->qlock);
		struct rt_access *q = w->queue;
		size_t n = w->qn;
		w->queue = NULL;
		w->qn = w->qalloc = 0;
		uv_mutex_unlock(&w->qlock);
		for (size_t j = 0; j < n; j++) {
			const char *app = q[j].entry;
			const char *instance = app + strlen(app) + 1;
			const char *line = instance + strlen(instance) + 1;
			if (r->cfg.access_cb)
				r->cfg.access_cb(r->cfg.access_ctx, app, *instance ? instance : NULL, line);
			free(q[j].entry);
		}
		free(q);
	}
}

static void access_tick(uv_timer_t *t);

static void access_kicked(uv_async_t *a)
{
	struct router *r = a->data;
	if (!r)
		return;
	bool full = false;
	for (int k = 0; k < r->n_workers && !full; k++) {
		uv_mutex_lock(&r->workers[k].qlock);
		full = r->workers[k].qn >= RT_ACCESS_KICK;
		uv_mutex_unlock(&r->workers[k].qlock);
	}
	if (full) {
		uv_timer_stop(r->access_timer);
		access_drain(r);
	} else if (!uv_is_active((uv_handle_t *)r->access_timer)) {
		uv_timer_start(r->access_timer, access_tick, RT_ACCESS_EVERY_MS, 0);
	}
}

static void access_tick(uv_timer_t *t)
{
	if (t->data)
		access_drain(t->data);
}

/* ---- workers ---- */

static void worker_wake(uv_async_t *a)
{
	struct rt_worker *w = a->data;
	struct router *r = w->r;
	if (w->stopping) {
		uv_close((uv_handle_t *)&w->listen_poll, NULL);
		if (r->https_listen)
			uv_close((uv_handle_t *)&w->tls_listen_poll, NULL);
		uv_close((uv_handle_t *)&w->listen_pause, NULL);
		uv_mutex_lock(&w->alock);
		w->adopt_closed = true; /* no worker hands over from now on */
		uv_mutex_unlock(&w->alock);
		uv_close((uv_handle_t *)&w->adopt, NULL);
		uv_close((uv_handle_t *)&w->wake, NULL);
		uv_close((uv_handle_t *)&w->flusher, NULL);
		uv_close((uv_handle_t *)&w->preflusher, NULL);
		rt_worker_close_all(w);
		return;
	}
	uv_mutex_lock(&r->lock);
	struct rt_snapshot *s = r->current;
	if (s)
		rt_snapshot_ref(s);
	uv_mutex_unlock(&r->lock);
	struct rt_snapshot *old = w->snap;
	w->snap = s;
	if (s)
		atomic_store(&w->gen_seen, s->gen);
	rt_snapshot_unref(old);
}

/* The output of a loop turn is written after its I/O callbacks (check), and
 * what timers and write callbacks queued before the loop blocks (prepare). */
static void worker_flush(uv_check_t *h)
{
	rt_proxy_flush(h->data);
}

static void worker_preflush(uv_prepare_t *h)
{
	rt_proxy_flush(h->data);
}

static void worker_main(void *arg)
{
	struct rt_worker *w = arg;
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* probe: check first that no other process listens on the address. flag
 * names the option the address came from in messages. */
static int listen_socket(const char *addr, const char *flag, struct sockaddr_storage *ss, bool probe,
			 char **err)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	int64_t port;
	if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(host) ||
	    str_to_i64(colon + 1, &port) < 0 || port < 0 || port > 65535) {
		*err = xasprintf("invalid %s address '%s' (want HOST:PORT)", flag, addr);
		return -EINVAL;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) < 0) {
		char *h = host;
		size_t hl = strlen(h);
		if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
			h[hl - 1] = '\0';
			h++;
		}
		if (uv_ip6_addr(h, (int)port, (struct sockaddr_in6 *)ss) < 0) {
			*err = xasprintf("invalid %s address '%s' (want an IP address and port)", flag, addr);
			return -EINVAL;
		}
	}
	socklen_t len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	if (probe && port != 0) {
		/* The workers share the port through SO_REUSEPORT, which would
		 * just as well let them join another process's listeners (another
		 * daemon, as the same user): a plain bind first finds it taken. */
		int pfd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int one = 1;
		if (pfd >= 0)
			setsockopt(pfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (pfd >= 0 && bind(pfd, (struct sockaddr *)ss, len) < 0) {
			int e = errno;
			close(pfd);
			*err = xasprintf("cannot listen on '%s': %s", addr, strerror(e));
			return -e;
		}
		if (pfd >= 0)
			close(pfd);
	}
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = xasprintf("cannot create socket: %s", strerror(errno));
		return -errno;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)ss, len) < 0 || listen(fd, 1024) < 0) {
		int e = errno;
		*err = xasprintf("cannot listen on '%s': %s", addr, strerror(e));
		close(fd);
		return -e;
	}
	/* A port-0 listen: the other workers must bind the port it got. */
	getsockname(fd, (struct sockaddr *)ss, &len);
	return fd;
}

/* n listening sockets on addr sharing its port (SO_REUSEPORT), one per
 * worker, into fds; 0, or a negative errno with *err set and nothing open. */
static int listen_all(const char *listen, const char *flag, int n, int *fds, char **err)
{
	struct sockaddr_storage ss;
	for (int k = 0; k < n; k++) {
		char *addr = NULL;
		if (k > 0) {
			char host[INET6_ADDRSTRLEN + 2] = "";
			int port = 0;
			if (ss.ss_family == AF_INET) {
				struct sockaddr_in *in = (struct sockaddr_in *)&ss;
				inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
				port = ntohs(in->sin_port);
				addr = xasprintf("%s:%d", host, port);
			} else {
				struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
				inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
				port = ntohs(in6->sin6_port);
				addr = xasprintf("[%s]:%d", host, port);
			}
		}
		int fd = listen_socket(addr ? addr : listen, flag, &ss, k == 0, err);
		free(addr);
		if (fd < 0) {
			for (int j = 0; j < k; j++)
				close(fds[j]);
			return fd;
		}
		fds[k] = fd;
	}
	return 0;
}

struct router *router_start(const struct router_config *cfg, char **err)
{
	struct router *r = xcalloc(1, sizeof(*r));
	r->loop = cfg->loop;
	r->cfg = *cfg;
	r->listen = xstrdup(cfg->listen);
	r->cfg.listen = r->listen;
	r->n_workers = cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (r->n_workers < 1)
		r->n_workers = 1;
	if (r->n_workers > 64)
		r->n_workers = 64;
	uv_mutex_init(&r->lock);
	uv_mutex_init(&r->stats_lock);
	crypto_random(&r->access_seed, sizeof(r->access_seed));
	r->workers = xcalloc((size_t)r->n_workers, sizeof(*r->workers));
	int fds[64], tls_fds[64];
	if (listen_all(cfg->listen, "--http", r->n_workers, fds, err) < 0)
		goto fail;
	if (cfg->https_listen) {
		if (listen_all(cfg->https_listen, "--https", r->n_workers, tls_fds, err) < 0) {
			for (int j = 0; j < r->n_workers; j++)
				close(fds[j]);
			goto fail;
		}
		r->https_listen = xstrdup(cfg->https_listen);
		r->cfg.https_listen = r->https_listen;
	}
	r->access_async = xcalloc(1, sizeof(*r->access_async));
	uv_async_init(r->loop, r->access_async, access_kicked);
	r->access_async->data = r;
	r->access_timer = xcalloc(1, sizeof(*r->access_timer));
	uv_timer_init(r->loop, r->access_timer);
	r->access_timer->data = r;
	uv_unref((uv_handle_t *)r->access_timer);
	for (int k = 0; k < r->n_workers; k++) {
		struct rt_worker *w = &r->workers[k];
		w->r = r;
		w->index = k;
		crypto_random(&w->rng, sizeof(w->rng));
		w->rng |= 1;
		uv_mutex_init(&w->qlock);
		uv_loop_init(&w->loop);
		w->loop.data = w;
		w->rbuf = xmalloc(RT_READ_BUF);
		uv_async_init(&w->loop, &w->wake, worker_wake);
		w->wake.data = w;
		uv_check_init(&w->loop, &w->flusher);
		w->flusher.data = w;
		uv_check_start(&w->flusher, worker_flush);
		uv_prepare_init(&w->loop, &w->preflusher);
		w->preflusher.data = w;
		uv_prepare_start(&w->preflusher, worker_preflush);
		uv_mutex_init(&w->alock);
		uv_async_init(&w->loop, &w->adopt, rt_proxy_adopt_all);
		w->adopt.data = w;
		w->listen_fd = fds[k];
		uv_poll_init_socket(&w->loop, &w->listen_poll, fds[k]);
		w->listen_poll.data = w;
		uv_poll_start(&w->listen_poll, UV_READABLE, rt_proxy_listen_ready);
		w->tls_listen_fd = -1;
		if (r->https_listen) {
			w->tls_listen_fd = tls_fds[k];
			uv_poll_init_socket(&w->loop, &w->tls_listen_poll, tls_fds[k]);
			w->tls_listen_poll.data = w;
			uv_poll_start(&w->tls_listen_poll, UV_READABLE, rt_proxy_listen_ready);
		}
		uv_timer_init(&w->loop, &w->listen_pause);
		w->listen_pause.data = w;
	}
	/* Redirects name the HTTPS port; the workers start once it is known. */
	r->https_port = r->https_listen ? router_https_port(r) : 0;
	for (int k = 0; k < r->n_workers; k++)
		uv_thread_create(&r->workers[k].thread, worker_main, &r->workers[k]);
	if (r->https_listen)
		log_info("router listening on http://%s and https://%s with %d worker%s", cfg->listen,
			 cfg->https_listen, r->n_workers, r->n_workers == 1 ? "" : "s");
	else
		log_info("router listening on http://%s with %d worker%s", cfg->listen, r->n_workers,
			 r->n_workers == 1 ? "" : "s");
	return r;
fail:
	free(r->workers);
	free(r->listen);
	uv_mutex_destroy(&r->lock);
	uv_mutex_destroy(&r->stats_lock);
	free(r);
	return NULL;
}

int router_port(const struct router *r)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(r->workers[0].listen_fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

int router_https_port(const struct router *r)
{
	if (!r->https_listen)
		return -ENOENT;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(r->workers[0].tls_listen_fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

uint64_t router_tls_handshake_failures(struct router *r)
{
	uint64_t n = 0;
	for (int w = 0; w < r->n_workers; w++)
		n += RT_GET(r->workers[w].tls_handshake_failures);
	return n;
}

void router_free(struct router *r)
{
	if (!r)
		return;
	for (int k = 0; k < r->n_workers; k++) {
		r->workers[k].stopping = true;
		uv_async_send(&r->workers[k].wake);
	}
	for (int k = 0; k < r->n_workers; k++) {
		struct rt_worker *w = &r->workers[k];
		uv_thread_join(&w->thread);
		uv_run(&w->loop, UV_RUN_DEFAULT);
		uv_loop_close(&w->loop);
		close(w->listen_fd);
		if (w->tls_listen_fd >= 0)
			close(w->tls_listen_fd);
		for (size_t j = 0; j < w->n_handoffs; j++) /* handed over as it stopped */
			close(w->handoffs[j].fd);
		free(w->handoffs);
		rt_proxy_worker_free(w);
		rt_snapshot_unref(w->snap);
		free(w->rbuf);
	}
	/* The workers are gone: their last lines are delivered now, not lost. */
	access_drain(r);
	for (int k = 0; k < r->n_workers; k++) {
		uv_mutex_destroy(&r->workers[k].qlock);
		uv_mutex_destroy(&r->workers[k].alock);
	}
	r->access_async->data = NULL;
	uv_close((uv_handle_t *)r->access_async, (uv_close_cb)free);
	r->access_timer->data = NULL;
	uv_close((uv_handle_t *)r->access_timer, (uv_close_cb)free);
	rt_snapshot_unref(r->current);
	for (size_t k = 0; k < r->n_known; k++)
		rt_backend_unref(r->known[k]);
	free(r->known);
	for (size_t k = 0; k < r->n_stats; k++) {
		free(r->stats[k]->app);
		free(r->stats[k]->process);
		free(r->stats[k]->route);
		free(r->stats[k]->w);
		free(r->stats[k]);
	}
	free(r->stats);
	free(r->workers);
	free(r->listen);
	free(r->https_listen);
	uv_mutex_destroy(&r->lock);
	uv_mutex_destroy(&r->stats_lock);
	free(r);
}
