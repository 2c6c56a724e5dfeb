/* metrics.h: the metrics module: a registry of metric families, samplers
 * that fill it every interval on the control loop, Prometheus/OpenMetrics
 * exposition, and a built-in history (time-series store) with a query layer.
 *
 * Invariants and threads:
 * - Everything here runs on the control loop thread. Request-path counters
 *   stay per worker inside the router and are summed by the samplers through
 *   router_metrics.h; the registry itself takes no lock.
 * - A family's label names are fixed when it is registered; every series of
 *   the family has exactly those labels, in that order.
 * - The history keeps one stream per exposed series (a histogram is stored as
 *   its _bucket, _sum and _count streams, as Prometheus does), in tiers of
 *   decreasing resolution (default 1 s for 1 h, 10 s for 1 d, 5 min for 30 d).
 *   Its memory never exceeds the configured budget: series that do not fit
 *   are dropped and counted (paasops_metrics_history_dropped_series_total).
 *
 * Query layer (for the API and for a later alerts module): metrics_query()
 * evaluates fn(name{label="value",...}[window]) at regular steps over the
 * history; metrics_eval() does the same for one instant from a text
 * expression, which is what an alert rule evaluates:
 *
 *     rate(paasops_http_requests_total{app="shop",code="5xx"}[5m])
 *     p95(paasops_http_request_duration_seconds{app="shop"}[5m]) by (app)
 *     max(paasops_instance_resident_memory_bytes{app="shop"}[1m])
 *     paasops_replicas_ready{app="shop"}             (raw: the newest value)
 *
 * See doc/metrics.md for every metric name and the exact semantics of each
 * function. */
#ifndef PAASOPS_METRICS_H
#define PAASOPS_METRICS_H
#include "core/strbuf.h"
#include "spec/spec_metrics.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct supervisor;
struct router;
struct metrics;
struct metrics_registry;
struct metrics_family;
struct metrics_series;

/* ------------------------------------------------------------------------ */
/* Configuration and lifecycle                                              */

#define METRICS_MAX_TIERS 4

/* One tier of the history: points res_ms apart, kept for retention_ms.
 * Tier 0 holds every sample (its res_ms is the sampling interval); coarser
 * tiers hold the average (gauges) or the last value (counters) of each
 * res_ms bucket. */
struct metrics_tier {
	int64_t res_ms, retention_ms;
};

/* What resources cost, for usage reports (doc/usage.md): per core-hour of
 * CPU and per GiB-hour of resident memory, in currency (may be empty). */
struct metrics_prices {
	bool set; /* a price flag was given */
	double cpu_hour, memory_gb_hour;
	char currency[8];
};

struct metrics_config {
	uv_loop_t *loop;        /* borrowed */
	struct supervisor *sv;  /* borrowed; may be NULL (no instance metrics) */
	struct router *router;  /* borrowed; may be NULL (router off) */
	const char *data_dir;   /* borrowed; disk metrics and the history file; NULL: none */
	const char *version;    /* borrowed; paasops_build_info */
	int64_t interval_ms;    /* sampling period; tier 0's resolution */
	struct metrics_tier tiers[METRICS_MAX_TIERS];
	size_t n_tiers;
	int64_t memory_budget;    /* bytes the history may use */
	int64_t save_interval_ms; /* how often the history is written to disk */
	struct metrics_prices prices;
};

/* Fills the documented defaults: 1 s samples; 1 h at 1 s, 1 d at 10 s,
 * 30 d at 5 min; 256 MiB; saved every 60 s. */
void metrics_config_defaults(struct metrics_config *cfg);
/* Applies one `paasops serve` flag: "metrics-interval" (a duration),
 * "metrics-retention" ("1h,10s:1d,5m:30d": tier 0's retention, then
 * RES:RETENTION for each coarser tier), "metrics-memory" (a size),
 * "price-cpu-hour", "price-memory-gb-hour" (amounts >= 0) or
 * "price-currency" (up to 7 printable characters, like EUR).
 * Returns 0, or -EINVAL with *err set (caller frees). */
int metrics_config_parse(struct metrics_config *cfg, const char *flag, const char *value,
			 char **err);

/* Creates the module, registers every family and loads the history saved
 * in DATA/metrics.tsdb (a damaged file is logged and set aside). NULL + *err
 * (caller frees) on a bad configuration. */
struct metrics *metrics_new(const struct metrics_config *cfg, char **err);
/* Starts sampling: one sample at once, then every interval. */
void metrics_start(struct metrics *m);
/* Stops sampling, forgets the supervisor and router (they may be freed
 * next) and writes the history one last time on the thread pool; the loop
 * keeps running until that write has finished. */
void metrics_stop(struct metrics *m);
/* Frees everything. The loop must have run after metrics_stop() or after
 * its handles were closed. metrics_free(NULL) does nothing. */
void metrics_free(struct metrics *m);

/* Takes one sample now (tests and benchmarks; the timer does this). */
void metrics_sample_now(struct metrics *m);
/* The registry, for modules that keep their own counters. Borrowed. */
struct metrics_registry *metrics_registry_of(struct metrics *m);

/* ------------------------------------------------------------------------ */
/* Registry                                                                 */

struct metrics_registry *metrics_registry_new(void);
void metrics_registry_free(struct metrics_registry *reg);

/* Registers a family. name must match [a-zA-Z_:][a-zA-Z0-9_:]*, counters
 * must end in "_total", label names must match [a-zA-Z_][a-zA-Z0-9_]* and
 * not start with "__" or be "le"; histograms need strictly increasing finite
 * bounds (the +Inf bucket is implied). expire: series not set since the
 * previous metrics_registry_sweep() are removed by it (what samplers want:
 * a stopped instance's series disappear). Returns NULL when any of this
 * does not hold or the name is taken. The family lives as long as reg. */
struct metrics_family *metrics_family_add(struct metrics_registry *reg, const char *name,
					  const char *help, enum metrics_type type,
					  const char *const *labels, size_t n_labels,
					  const double *bounds, size_t n_bounds, bool expire);
/* The series with these label values (n_labels of them, any UTF-8), created
 * at 0 when new. Borrowed, valid until a sweep removes it or reg is freed. */
struct metrics_series *metrics_series_get(struct metrics_family *f, const char *const *values);
/* Gauges: set. Counters: set to an absolute, externally counted total. */
void metrics_set(struct metrics_series *s, double v);
void metrics_add(struct metrics_series *s, double v);
double metrics_value(const struct metrics_series *s);
/* Histograms: one observation, or the whole state at once (per-bucket,
 * non-cumulative counts: n_bounds + 1 of them, the last being +Inf). */
void metrics_observe(struct metrics_series *s, double v);
void metrics_histogram_set(struct metrics_series *s, const uint64_t *counts, double sum);
/* Removes stale series of expiring families and starts a new generation. */
void metrics_registry_sweep(struct metrics_registry *reg);
size_t metrics_registry_series(const struct metrics_registry *reg);

/* ------------------------------------------------------------------------ */
/* Exposition                                                               */

enum metrics_format {
	METRICS_TEXT_004,    /* text/plain; version=0.0.4 */
	METRICS_OPENMETRICS, /* application/openmetrics-text; version=1.0.0 */
};

/* Decides whether a series labelled app=APP may be shown (APP is NULL for a
 * series without an app label). NULL filter: everything. */
typedef bool (*metrics_app_filter_cb)(void *ctx, const char *app);

/* Appends every family with at least one series (that passes the filter). */
void metrics_expose(const struct metrics_registry *reg, enum metrics_format fmt,
		    metrics_app_filter_cb keep, void *ctx, struct strbuf *out);
/* The Content-Type for a format. */
const char *metrics_content_type(enum metrics_format fmt);
/* Picks the format for an Accept header (NULL: text 0.0.4): OpenMetrics
 * when it is acceptable and preferred at least as much as text/plain. */
enum metrics_format metrics_negotiate(const char *accept);
/* Renders the module's registry for a scrape and counts it. */
void metrics_render(struct metrics *m, enum metrics_format fmt, metrics_app_filter_cb keep,
		    void *ctx, struct strbuf *out);

/* ------------------------------------------------------------------------ */
/* History queries                                                          */

struct metrics_matcher {
	const char *label, *value; /* exact match; value "" matches an absent label */
};

struct metrics_query {
	const char *name; /* a stored series name; for QUANTILE the histogram's name */
	const struct metrics_matcher *match;
	size_t n_match;
	enum metrics_fn fn;
	double quantile;         /* QUANTILE: 0..1 */
	int64_t start_ms, end_ms; /* wall ms, inclusive */
	int64_t step_ms;          /* > 0; ignored by RAW ranges */
	int64_t window_ms;        /* 0: max(step, 4 x the tier's resolution) */
	/* Group and sum the results (after fn) by these labels; n_by = 0 with
	 * aggregate set sums everything into one series. QUANTILE groups its
	 * buckets by them instead of by every label but le. */
	bool aggregate;
	const char *const *by;
	size_t n_by;
	metrics_app_filter_cb keep; /* may be NULL */
	void *keep_ctx;
};

struct metrics_point {
	int64_t t_ms;
	double v;
};

struct metrics_result_series {
	size_t n_labels;
	char **names, **values; /* owned */
	struct metrics_point *points; /* owned; no point where there is no value */
	size_t n_points;
};

struct metrics_result {
	struct metrics_result_series *series;
	size_t n_series;
	int64_t res_ms;    /* resolution of the tier that answered */
	int64_t window_ms; /* the window used */
};

/* Runs q over the history. Returns 0 with *out filled (release it), or
 * -EINVAL with *err set (caller frees): a name or function that
 * metrics_name_check refuses, too many points (more than 11,000 steps), bad
 * times. */
int metrics_query(struct metrics *m, const struct metrics_query *q, struct metrics_result *out,
		  char **err);
void metrics_result_release(struct metrics_result *r);

/* Parses "fn(name{l=\"v\",...}[window]) [by (l1, l2)]" or "name{...}"
 * (fn: raw, rate, avg, min, max, sum, p50, p90, p95, p99 or quantile_0.NN;
 * window: a duration like 30s or 5m) into q, for an evaluation at at_ms.
 * Strings in q point into the returned storage *buf (caller frees *buf after
 * q). Returns 0 or -EINVAL with *err set. */
int metrics_expr_parse(const char *expr, int64_t at_ms, struct metrics_query *q, char **buf,
		       char **err);
/* Parses an expression and checks that its function may be asked of its
 * name (metrics_name_check): what alert rules are checked with when they are
 * read. 0 or -EINVAL + *err (caller frees). */
int metrics_expr_check(const char *expr, char **err);
/* Evaluates an expression at one instant (what alert rules need): *out gets
 * one series per match, each with zero or one point. 0 or -EINVAL + *err. */
int metrics_eval(struct metrics *m, const char *expr, int64_t at_ms, struct metrics_result *out,
		 char **err);

/* State of the history, for GET /v1/metrics. */
struct metrics_status {
	size_t registry_series, history_series;
	int64_t memory_bytes, memory_budget;
	uint64_t dropped_series, dropped_samples, evicted_chunks;
	int64_t interval_ms;
	struct metrics_tier tiers[METRICS_MAX_TIERS];
	size_t n_tiers;
	struct metrics_prices prices;
};
void metrics_status_get(struct metrics *m, struct metrics_status *st);
/* Wall ms of the oldest point the history holds (any series, any tier);
 * 0 while it is empty. Reads every series: not for a hot path. */
int64_t metrics_history_oldest(struct metrics *m);
/* Calls cb for every registered family (name, type, help, label names). */
typedef void (*metrics_family_cb)(void *ctx, const char *name, enum metrics_type type,
				  const char *help, const char *const *labels, size_t n_labels);
void metrics_families_each(struct metrics *m, metrics_family_cb cb, void *ctx);

/* ------------------------------------------------------------------------ */
/* Usage, forecasts and cost (metrics_usage.c, doc/usage.md)                */

/* A least-squares straight line y = intercept + slope * x through n points. */
struct metrics_trend {
	double intercept, slope;
	size_t n;
};
/* Fits the line; -EINVAL (no trend) with fewer than 3 points or when every
 * x is the same. */
int metrics_trend_fit(const double *x, const double *y, size_t n, struct metrics_trend *out);
/* Increase of a counter over its points (oldest first), a drop being a
 * reset to 0 (the new value is the increase). from_zero: the series began
 * inside the window, so its first value counts as an increase too. */
double metrics_counter_increase(const struct metrics_point *p, size_t n, bool from_zero);
/* Integral over time (value x seconds) of a gauge's points: each point
 * stands for the time since the previous point of the series, at most
 * 2 x res_ms (a gap means the series was absent), and a first point for
 * res_ms. With every value 1 it is the time the series existed. */
double metrics_gauge_integral(const struct metrics_point *p, size_t n, int64_t res_ms);
/* core_hours x cpu_hour + gib_hours x memory_gb_hour. */
double metrics_cost(const struct metrics_prices *pr, double core_hours, double gib_hours);

/* A linear trend of one resource, from per-period averages. */
struct metrics_forecast {
	bool ok;          /* false: fewer than 3 periods, no trend */
	size_t points;    /* periods used */
	double current;   /* the trend's value now */
	double projected; /* its value forecast_ms from now, never below 0 */
	double slope_per_day;
	double mean;      /* its average over the next forecast_ms, never below 0 */
};

struct metrics_usage_app {
	char *app; /* owned */
	double cpu_core_hours, cpu_avg_cores, cpu_peak_cores;
	double memory_gib_hours, memory_avg_bytes, memory_peak_bytes;
	double instance_hours;
	double requests, requests_5xx, bytes_sent;
	struct metrics_forecast cpu, memory; /* cores, bytes */
	double cost, forecast_cost;          /* NAN without prices or a forecast */
};

struct metrics_usage {
	int64_t from_ms;         /* asked for: now - since */
	int64_t covered_from_ms; /* what the history really covers, >= from_ms */
	int64_t to_ms;
	int64_t forecast_ms;
	int64_t period_ms;       /* of the forecast's averages: a day, or an hour */
	int64_t res_ms;          /* resolution of the tier that answered */
	struct metrics_prices prices;
	struct metrics_usage_app *apps; /* owned, in the order asked */
	size_t n_apps;
	double cost, forecast_cost; /* totals; NAN without prices */
};

/* Usage of each of apps (n_apps names, borrowed) over the last since_ms,
 * clamped to what the history holds, with a trend projected forecast_ms
 * ahead. Returns 0 with *out filled (release it), or -EINVAL + *err. */
int metrics_usage_get(struct metrics *m, const char *const *apps, size_t n_apps,
		      int64_t since_ms, int64_t forecast_ms, struct metrics_usage *out,
		      char **err);
void metrics_usage_release(struct metrics_usage *u);

#endif
