/* spec.h: paasops.yaml, parsed and validated into typed structs.
 *
 * A spec is immutable once parsed. Every string in it is owned by the spec
 * and freed by spec_free(). Unset optional values carry the documented
 * defaults (see doc/spec.md), so consumers never apply defaults themselves. */
#ifndef PAASOPS_SPEC_H
#define PAASOPS_SPEC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json;

#define SPEC_MAX_BYTES (1024 * 1024) /* larger files are refused */
#define SPEC_MAX_INSTANCES 10000     /* per process type */
#define SPEC_MAX_PROCESSES 64
#define SPEC_DEFAULT_MAX_BODY (100LL * 1024 * 1024) /* per route */

enum spec_health_kind { SPEC_HEALTH_NONE, SPEC_HEALTH_HTTP, SPEC_HEALTH_TCP, SPEC_HEALTH_CMD };
enum spec_restart { SPEC_RESTART_ALWAYS, SPEC_RESTART_ON_FAILURE, SPEC_RESTART_NEVER };

struct spec_env {
	char *key;
	char *value;
};

struct spec_health {
	enum spec_health_kind kind;
	char *target;            /* http: path ("/healthz"); cmd: shell command; tcp: NULL */
	int64_t interval_ms;     /* default 10s */
	int64_t timeout_ms;      /* default 1s */
	int healthy;             /* consecutive passes to become ready; default 1 */
	int unhealthy;           /* consecutive failures to become unhealthy; default 3 */
	int64_t boot_deadline_ms; /* default 60s ("boot_deadline" key) */
};

struct spec_resources {
	int64_t memory_bytes; /* 0: no limit */
	double cpu;           /* cores, 0: no limit */
};

struct spec_route {
	char *host; /* exact "shop.example.com", wildcard "*.example.com", or NULL = any */
	char *path; /* prefix, starts with '/'; default "/" */
	int64_t max_body; /* request body limit in bytes; default 100M */
	bool https_redirect; /* `https: redirect`: plain HTTP gets a 308 to HTTPS */
};

enum spec_balance { SPEC_BALANCE_P2C, SPEC_BALANCE_ROUND_ROBIN, SPEC_BALANCE_HASH };

struct spec_deploy {
	char *strategy; /* "rolling" (default) | "canary" | "recreate" */
	int max_surge;  /* default 1 */
	int max_unavailable; /* default 0 */
	int canary;          /* canary instances, default 1 */
	int64_t min_healthy_ms;      /* default 10s */
	int64_t healthy_deadline_ms; /* default 5m */
	bool auto_rollback;          /* default true */
	bool auto_promote;           /* canary: promote once healthy for min_healthy; default true */
	/* Regression check during a rollout: the new release is rolled back
	 * when its 5xx ratio > max(max_error_rate, max_error_factor x the
	 * old one's), or its p95 > max(max_latency_factor x old, old + 0.25 s). */
	double max_error_rate;     /* default 0.01 */
	double max_error_factor;   /* default 2 */
	double max_latency_factor; /* default 2 */
};

#define SPEC_PANIC_THRESHOLD 2.0

struct spec_autoscale {
	bool enabled; /* false when the key is absent */
	int min, max;
	char *metric; /* "rps" | "cpu" | "memory" | "inflight" | "p95" */
	double target;
	double panic_threshold; /* > 1, default SPEC_PANIC_THRESHOLD: x target over the panic window */
};

struct spec_process {
	char *name;    /* DNS-label rules */
	char *command; /* run with /bin/sh -c */
	int instances; /* default 1; 0..SPEC_MAX_INSTANCES */
	struct spec_env *env;
	size_t n_env;
	struct spec_health health;
	enum spec_restart restart; /* default always */
	int64_t stop_timeout_ms;   /* default 30s */
	struct spec_resources resources;
	struct spec_route *routes;
	size_t n_routes;
	struct spec_deploy deploy;
	struct spec_autoscale autoscale;
	enum spec_balance balance; /* default p2c */
	char *hash_on;             /* "header:NAME" or "cookie:NAME" with balance hash */
	int line; /* where the process was declared, for messages */
};

struct spec_alert {
	char *name;
	char *metric; /* an app metric (spec_alert_metrics) or a paasops_* series */
	char *op; /* ">", ">=", "<", "<=", "==", "!=" */
	double value;
	int64_t for_ms; /* default 0 */
	char *severity; /* "info" | "warning" | "critical"; default "warning" */
	char *fn;       /* paasops_* metrics only: raw, rate, avg, ...; NULL: raw */
	int64_t window_ms;      /* 0: the default (5m for functions over time) */
	struct spec_env *match; /* label = value matchers (key = label name) */
	size_t n_match;
	int64_t keep_firing_ms; /* -1: the daemon's default */
	char *summary, *description; /* annotation templates; NULL: none */
};

/* The app metrics an alert's `metric` may name besides paasops_* series
 * (their meaning is in doc/alerts.md). */
extern const char *const spec_alert_metrics[];
extern const size_t spec_n_alert_metrics;

struct spec {
	char *app; /* DNS label: [a-z0-9-], 1..63, not starting/ending with '-' */
	char *build;   /* optional */
	char *release; /* optional */
	struct spec_env *env;
	size_t n_env;
	struct spec_process *procs; /* in file order */
	size_t n_procs;
	struct spec_alert *alerts;
	size_t n_alerts;
};

/* Parses and validates len bytes of YAML. filename is used in messages.
 * On success returns the spec (caller frees with spec_free()). On failure
 * returns NULL and sets *err to every problem found, one per line, each
 * "FILE:LINE:COL: message" (caller frees). */
struct spec *spec_parse(const char *buf, size_t len, const char *filename, char **err);
/* The same for a spec stored with a release, which an earlier version may
 * have accepted: the checks added since (dot segments in paths, a
 * healthy_deadline no longer than min_healthy, metric names and functions
 * of alert rules, the app label in their match) are not made, so that
 * every release that ran before still loads, rolls back and takes config
 * changes. New specs (apply, deploy, validate) use spec_parse. */
struct spec *spec_parse_stored(const char *buf, size_t len, const char *filename, char **err);
/* Reads path (refusing files over SPEC_MAX_BYTES) and calls spec_parse. */
struct spec *spec_parse_file(const char *path, char **err);
void spec_free(struct spec *s);

/* Borrowed process by name, or NULL. */
const struct spec_process *spec_process(const struct spec *s, const char *name);
/* Whether name follows DNS-label rules (used for app and process names). */
bool spec_valid_name(const char *name);
/* The spec as JSON (durations in ms, sizes in bytes); caller frees. */
struct json *spec_to_json(const struct spec *s);

#endif
