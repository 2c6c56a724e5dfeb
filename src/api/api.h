/* api.h: the HTTP/1.1 JSON API under /v1, on a unix socket (peer must be
 * the daemon's own user or root) and optionally on TCP (bearer tokens),
 * in clear or, with a TLS context, only over TLS.
 * The route table in api.c maps method + path to a handler and the action
 * the permission table in auth decides on. */
#ifndef PAASOPS_API_H
#define PAASOPS_API_H
#include <stdbool.h>
#include <uv.h>

struct store;
struct supervisor;
struct router;
struct deploy;
struct metrics;
struct logs;
struct alerts;
struct autoscale;
struct audit;
struct tls_ctx;
struct api;

struct api_config {
	uv_loop_t *loop;       /* borrowed */
	struct store *store;   /* borrowed */
	struct supervisor *sv; /* borrowed */
	struct router *router; /* borrowed; NULL when the router is off */
	struct deploy *deploy; /* borrowed */
	struct metrics *metrics; /* borrowed */
	bool metrics_public;     /* GET /metrics without a token (trusted networks only) */
	struct logs *logs;       /* borrowed */
	struct alerts *alerts;   /* borrowed; may be NULL */
	struct autoscale *autoscale; /* borrowed; may be NULL */
	struct audit *audit;     /* borrowed; runs GET /v1/audit/verify off the loop */
	const char *data_dir;  /* uploads go under DATA/uploads; GET /v1/doctor checks its files */
	const char *socket_path;
	const char *tcp_addr; /* "HOST:PORT" or NULL */
	/* Borrowed, outlives the api; NULL: plain HTTP on tcp_addr. With it,
	 * the TCP listener speaks only TLS. */
	struct tls_ctx *tls;
	const char *version;
};

/* Starts listening. NULL + *err (caller frees) on failure. */
struct api *api_start(const struct api_config *cfg, char **err);
/* Stops accepting and closes every connection; frees once closed. */
void api_stop(struct api *api);

#endif
