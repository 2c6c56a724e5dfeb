/* router_internal.h: the router's snapshot, backend, stats and worker types,
 * shared by router.c (control side), router_balance.c and router_proxy.c
 * (worker side).
 *
 * Threads: everything reachable from a published snapshot is immutable
 * except fields marked "atomic". Counters in struct rt_counters are written
 * only by their own worker (relaxed load + store, no locked instruction)
 * and read by anyone. */
#ifndef PAASOPS_ROUTER_INTERNAL_H
#define PAASOPS_ROUTER_INTERNAL_H
#include "router/router.h"
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define RT_DEFAULT_MAX_BODY (100LL * 1024 * 1024)
#define RT_HIST_BUCKETS 14
#define RT_ACCESS_QUEUE_MAX 20000
#define RT_ACCESS_KICK 1024       /* queued lines that wake the control loop at once */
#define RT_ACCESS_EVERY_MS 100    /* otherwise it collects them this often */
#define RT_EJECT_AFTER 3          /* consecutive failures */
#define RT_EJECT_BASE_MS 1000     /* doubles per ejection */
#define RT_EJECT_MAX_MS 30000
#define RT_POOL_IDLE_MAX 64       /* idle backend connections per worker */
#define RT_READ_BUF (128 * 1024)  /* the worker's read buffer */
#define RT_SPARE_REQS 128         /* finished requests kept for reuse per worker */

extern const double rt_hist_bounds[RT_HIST_BUCKETS]; /* seconds, upper bounds */

#define RT_ADD(field, n) \
	atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n), \
			      memory_order_relaxed)
#define RT_GET(field) atomic_load_explicit(&(field), memory_order_relaxed)

struct rt_counters {
	_Atomic uint64_t requests;
	_Atomic uint64_t status[6]; /* by class: [1]=1xx … [5]=5xx; [0] = no status */
	_Atomic uint64_t hist[RT_HIST_BUCKETS + 1];
	_Atomic uint64_t latency_us;
	_Atomic uint64_t bytes_in, bytes_out;
	_Atomic uint64_t connect_errors, retries, ejections;
	_Atomic int64_t inflight;
	char pad[64];
};

/* Metrics of one route of one process type; lives as long as the router. */
struct rt_stats {
	char *app, *process, *route;
	struct rt_counters *w; /* [n_workers] */
	bool routed; /* in the latest published table (control loop only) */
};

struct rt_backend {
	atomic_int refs;
	char *instance;
	int port;
	struct sockaddr_in addr;
	atomic_int inflight;
	atomic_int fails;       /* consecutive connect failures or 5xx */
	atomic_int eject_level;
	_Atomic int64_t ejected_until; /* monotonic ms */
	int64_t removed_gen;    /* control loop: generation that dropped it, 0 while routed */
	/* Answers from this instance, for comparing releases (atomic adds). */
	_Atomic uint64_t answered, errors_5xx;
	_Atomic uint64_t hist[RT_HIST_BUCKETS + 1];
};

struct rt_pool {
	char *app, *process;
	enum router_balance balance;
	char *hash_name; /* header or cookie name */
	bool hash_cookie;
	struct rt_backend **be;
	size_t n_be, alloc_be;
	atomic_uint rr;
	struct rt_stats *stats; /* pool-level stats when no route matched it (unused) */
	bool maintenance;       /* every request gets 503, Retry-After */
};

struct rt_route {
	char *host; /* NULL: any */
	bool wildcard;
	char *path;
	size_t path_len;
	int pool;
	int64_t max_body;
	bool https_redirect; /* plain requests get a 308 to the HTTPS listener */
	struct rt_stats *stats;
};

/* Both the builder (router_table) and the published snapshot. */
struct rt_snapshot {
	atomic_int refs;
	int64_t gen;
	struct rt_pool *pools;
	size_t n_pools, alloc_pools;
	struct rt_route *routes;
	size_t n_routes, alloc_routes;
	/* builder only: backends by name before they are resolved */
	struct rt_pending {
		int pool;
		char *instance;
		int port;
	} *pending;
	size_t n_pending, alloc_pending;
};

/* One access log line: "app\0instance\0line" in one allocation (an empty
 * instance: none). */
struct rt_access {
	char *entry;
};

struct rt_client;
struct rt_upstream;
struct rt_req;

struct rt_worker {
	struct router *r;
	int index;
	uv_thread_t thread;
	uv_loop_t loop; /* loop.data is the worker */
	int listen_fd;            /* the worker's SO_REUSEPORT listener */
	uv_poll_t listen_poll;    /* accepts by hand: the fd may go to another worker */
	int tls_listen_fd;        /* the HTTPS listener, when the router has one */
	uv_poll_t tls_listen_poll;
	uv_timer_t listen_pause;  /* out of descriptors: listening resumes after a pause */
	int64_t accept_warned_ms; /* when the last accept failure was logged */
	_Atomic int64_t n_clients; /* open client connections, read by the other workers */
	_Atomic uint64_t moved_in; /* connections another worker accepted and handed over */
	uv_async_t adopt;          /* wakes the worker for handed-over connections */
	uv_mutex_t alock;          /* guards the three below */
	struct rt_handoff *handoffs;
	size_t n_handoffs, alloc_handoffs;
	bool adopt_closed;         /* no more hand-overs: the worker is stopping */
	char *rbuf; /* RT_READ_BUF bytes: every read of the worker lands here */
	uv_async_t wake;
	struct rt_snapshot *snap; /* the worker's own reference */
	_Atomic int64_t gen_seen;
	struct rt_upstream *idle; /* pooled backend connections */
	int n_idle;
	struct rt_client *clients;
	uv_check_t flusher;                  /* rt_proxy_flush after the loop's I/O phase, */
	uv_prepare_t preflusher;             /* and before it (timers, write callbacks) */
	struct rt_client *dirty_clients;     /* output to write at the end of the turn */
	struct rt_upstream *dirty_upstreams;
	struct rt_req *free_reqs; /* spare requests, with their buffers */
	int n_free_reqs;
	uint64_t rng;
	bool stopping;
	uv_mutex_t qlock;
	struct rt_access *queue;
	size_t qn, qalloc;
	_Atomic uint64_t access_dropped;
	int64_t ts_sec;     /* the second ts_prefix shows */
	char ts_prefix[64]; /* "2026-11-29T23:18:42." for access log lines */
	_Atomic uint64_t new_backend_conns, reused_backend_conns;
	_Atomic uint64_t tls_handshake_failures;
};

struct router {
	uv_loop_t *loop;
	struct router_config cfg;
	char *listen;
	char *https_listen; /* NULL: no HTTPS listener */
	int https_port;     /* its port once bound (redirects name it) */
	struct rt_worker *workers;
	int n_workers;
	uv_mutex_t lock; /* guards current */
	struct rt_snapshot *current;
	int64_t gen;
	struct rt_backend **known; /* control loop: every backend still referenced */
	size_t n_known, alloc_known;
	uv_mutex_t stats_lock; /* guards the stats list (appended by control loop) */
	struct rt_stats **stats;
	size_t n_stats, alloc_stats;
	uv_async_t *access_async; /* heap: outlives the router until closed */
	uv_timer_t *access_timer; /* heap, likewise */
	uint64_t access_seed;
};

/* router.c */
void rt_snapshot_ref(struct rt_snapshot *s);
void rt_snapshot_unref(struct rt_snapshot *s);
void rt_backend_ref(struct rt_backend *b);
void rt_backend_unref(struct rt_backend *b);
/* Worker side: queues an access log line for the control loop (takes ownership of line). */
/* Takes ownership of entry (see struct rt_access). */
void rt_access_push(struct rt_worker *w, char *entry);
int64_t rt_now_ms(void);

/* router_balance.c */
const struct rt_route *rt_route_match(const struct rt_snapshot *s, const char *host, const char *path);
/* Picks a backend of pool, skipping ejected ones and `avoid`; NULL if none. */
struct rt_backend *rt_balance_pick(struct rt_worker *w, struct rt_pool *pool, const char *hash_key,
				   const struct rt_backend *avoid);
uint64_t rt_rand(struct rt_worker *w);
void rt_backend_result(struct rt_backend *b, bool failed, struct rt_counters *c);

/* router_proxy.c */
/* A connection accepted by one worker for another (or itself). */
struct rt_handoff {
	int fd;
	bool tls; /* from the HTTPS listener */
	struct sockaddr_storage peer;
};
/* A listener (plain or HTTPS) is readable: accepts what is queued, keeping
 * each connection or handing it to the worker with the fewest. */
void rt_proxy_listen_ready(uv_poll_t *p, int status, int events);
/* Takes the connections handed over to w (its adopt handle fired). */
void rt_proxy_adopt_all(uv_async_t *a);
void rt_proxy_flush(struct rt_worker *w);
void rt_worker_close_all(struct rt_worker *w);
/* Frees what the worker keeps for reuse; after its loop has ended. */
void rt_proxy_worker_free(struct rt_worker *w);

#endif
