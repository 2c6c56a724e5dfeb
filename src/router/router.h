/* router.h: the built-in HTTP load balancer, the single ingress to apps.
 *
 * N worker threads each run their own libuv loop with an SO_REUSEPORT
 * listener. The control loop describes what to route in a router_table and
 * publishes it; the router turns it into an immutable, reference-counted
 * snapshot that workers swap in between requests, so the request path
 * takes no lock. Counters are per worker and summed on read. */
#ifndef PAASOPS_ROUTER_H
#define PAASOPS_ROUTER_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct json;
struct router;
struct tls_ctx;
struct router_table;

enum router_balance { ROUTER_P2C, ROUTER_ROUND_ROBIN, ROUTER_HASH };

/* One access log line, delivered on the control loop. Borrowed. */
typedef void (*router_access_cb)(void *ctx, const char *app, const char *instance,
				 const char *line);

struct router_config {
	uv_loop_t *loop;    /* the control loop; borrowed */
	const char *listen; /* "HOST:PORT" */
	const char *https_listen; /* "HOST:PORT" for HTTPS, or NULL */
	struct tls_ctx *tls; /* its certificates; borrowed, outlives the router */
	int workers;        /* 0: one per core */
	int64_t connect_timeout_ms, header_timeout_ms, response_timeout_ms, idle_timeout_ms;
	int64_t max_header_bytes;
	double access_sample; /* fraction of requests logged, 0..1 */
	router_access_cb access_cb;
	void *access_ctx;
};

/* Fills the documented defaults. */
void router_config_defaults(struct router_config *cfg);
/* Binds and starts the workers. NULL + *err (caller frees) on failure. */
struct router *router_start(const struct router_config *cfg, char **err);
/* Stops the workers (open connections are closed) and frees everything. */
void router_free(struct router *r);
/* The TCP port the router listens on: the one it was given, or the one the
 * kernel chose for a "HOST:0" listen address; a negative errno on failure. */
int router_port(const struct router *r);
/* Likewise for the HTTPS listener; -ENOENT when there is none. */
int router_https_port(const struct router *r);
/* TLS handshakes on the HTTPS listener that failed or did not finish in
 * the header timeout, summed over workers. */
uint64_t router_tls_handshake_failures(struct router *r);

/* ---- what to route ---- */
struct router_table *router_table_new(void);
void router_table_free(struct router_table *t);
/* Adds a pool of backends for one process type; returns its index.
 * hash_on: "header:NAME" or "cookie:NAME" for ROUTER_HASH, else NULL. */
int router_table_pool(struct router_table *t, const char *app, const char *process,
		      enum router_balance balance, const char *hash_on);
void router_table_backend(struct router_table *t, int pool, const char *instance, int port);
/* The pool's app is in maintenance: its requests get 503 with Retry-After. */
void router_table_maintenance(struct router_table *t, int pool);
/* host: exact ("shop.example.com"), wildcard ("*.example.com") or NULL for
 * any host; path: prefix starting with '/'. max_body: bytes, 0 = default.
 * Returns the route's index. */
int router_table_route(struct router_table *t, const char *host, const char *path, int pool,
		       int64_t max_body);
/* Route `route` answers requests on the plain listener with a 308 to the
 * same URL over HTTPS. */
void router_table_route_https_redirect(struct router_table *t, int route);
/* Swaps the table in (takes ownership). */
void router_publish(struct router *r, struct router_table *t);

/* ---- draining and health ---- */
/* Whether an instance no longer gets new requests from any worker and has
 * none in flight. */
bool router_drained(struct router *r, const char *instance);
/* An active health check passed: lift any passive ejection. */
void router_backend_healthy(struct router *r, const char *instance);

/* Answers from one instance since it started (all its runs): requests,
 * 5xx answers and a latency histogram over router_hist_bounds. */
#define ROUTER_HIST_BUCKETS 14
extern const double router_hist_bounds[ROUTER_HIST_BUCKETS];
struct router_instance_stats {
	uint64_t answered, errors_5xx;
	uint64_t hist[ROUTER_HIST_BUCKETS + 1];
};
void router_instance_stats(struct router *r, const char *instance, struct router_instance_stats *out);

/* Request metrics of one app (NULL: all), summed over workers; caller frees. */
struct json *router_stats_json(struct router *r, const char *app);

#endif
