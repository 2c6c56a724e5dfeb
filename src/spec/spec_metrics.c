/* spec_metrics.c: the catalogue of metric families (see spec_metrics.h).
 * The samplers' table (metrics_sample.c) and the modules that keep their own
 * counters (logs, alerts, autoscale) register families; this lists them all
 * once more by name and type so that a name can be judged where no registry
 * exists, and metrics_family_add() keeps the two in step. */
#include "spec/spec_metrics.h"
#include "core/strbuf.h"
#include "core/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define C METRICS_COUNTER
#define G METRICS_GAUGE
#define H METRICS_HISTOGRAM

static const struct {
	const char *name;
	enum metrics_type type;
} families[] = {
	/* Instances and process types (metrics_sample.c). */
	{"paasops_instance_cpu_seconds_total", C},
	{"paasops_instance_cpu_usage_ratio", G},
	{"paasops_instance_resident_memory_bytes", G},
	{"paasops_instance_memory_limit_bytes", G},
	{"paasops_instance_open_fds", G},
	{"paasops_instance_threads", G},
	{"paasops_instance_restarts_total", C},
	{"paasops_instance_uptime_seconds", G},
	{"paasops_instance_state", G},
	{"paasops_replicas_desired", G},
	{"paasops_replicas_ready", G},
	/* The router. */
	{"paasops_http_requests_total", C},
	{"paasops_http_request_duration_seconds", H},
	{"paasops_http_requests_in_flight", G},
	{"paasops_http_request_bytes_total", C},
	{"paasops_http_response_bytes_total", C},
	{"paasops_http_backend_connect_errors_total", C},
	{"paasops_http_retries_total", C},
	{"paasops_http_backend_ejections_total", C},
	{"paasops_router_workers", G},
	{"paasops_router_backend_connections_opened_total", C},
	{"paasops_router_backend_connections_reused_total", C},
	{"paasops_router_access_log_dropped_total", C},
	{"paasops_router_client_connections", G},
	{"paasops_router_connections_moved_total", C},
	{"paasops_router_tls_handshake_failures_total", C},
	/* The host and the daemon. */
	{"paasops_host_cpu_seconds_total", C},
	{"paasops_host_cpus", G},
	{"paasops_host_memory_total_bytes", G},
	{"paasops_host_memory_available_bytes", G},
	{"paasops_host_load1", G},
	{"paasops_host_load5", G},
	{"paasops_host_load15", G},
	{"paasops_host_disk_total_bytes", G},
	{"paasops_host_disk_free_bytes", G},
	{"paasops_host_network_receive_bytes_total", C},
	{"paasops_host_network_transmit_bytes_total", C},
	{"paasops_process_cpu_seconds_total", C},
	{"paasops_process_resident_memory_bytes", G},
	{"paasops_process_open_fds", G},
	{"paasops_process_start_time_seconds", G},
	{"paasops_loop_lag_seconds", G},
	{"paasops_build_info", G},
	/* The metrics module itself. */
	{"paasops_metrics_sample_duration_seconds", G},
	{"paasops_metrics_sample_cpu_seconds_total", C},
	{"paasops_metrics_scrapes_total", C},
	{"paasops_metrics_scrape_duration_seconds", G},
	{"paasops_metrics_series", G},
	{"paasops_metrics_history_series", G},
	{"paasops_metrics_history_memory_bytes", G},
	{"paasops_metrics_history_memory_budget_bytes", G},
	{"paasops_metrics_history_dropped_series_total", C},
	{"paasops_metrics_history_dropped_samples_total", C},
	{"paasops_metrics_history_evicted_chunks_total", C},
	{"paasops_metrics_history_saves_total", C},
	{"paasops_metrics_history_save_errors_total", C},
	/* Logs (logs.c). */
	{"paasops_log_lines_total", C},
	{"paasops_log_lines_dropped_total", C},
	{"paasops_log_stored_bytes", G},
	{"paasops_log_stored_lines", G},
	{"paasops_log_disk_bytes", G},
	{"paasops_log_drain_lines_total", C},
	/* Alerts (alerts.c). */
	{"paasops_alerts", G},
	{"paasops_alerts_evaluation_duration_seconds", G},
	{"paasops_alert_notifications_sent_total", C},
	{"paasops_alert_notifications_failed_total", C},
	{"paasops_alert_notifications_dropped_total", C},
	/* Autoscaling (autoscale.c). */
	{"paasops_autoscale_desired_instances", G},
	{"paasops_autoscale_value", G},
	{"paasops_autoscale_panic", G},
};

static const char *const type_names[] = {[METRICS_COUNTER] = "a counter",
					  [METRICS_GAUGE] = "a gauge",
					  [METRICS_HISTOGRAM] = "a histogram"};

int metrics_fn_parse(const char *s, enum metrics_fn *fn, double *quantile)
{
	static const struct {
		const char *name;
		enum metrics_fn fn;
		double q;
	} fns[] = {
		{"raw", METRICS_FN_RAW, 0},       {"rate", METRICS_FN_RATE, 0},
		{"avg", METRICS_FN_AVG, 0},       {"min", METRICS_FN_MIN, 0},
		{"max", METRICS_FN_MAX, 0},       {"sum", METRICS_FN_SUM, 0},
		{"p50", METRICS_FN_QUANTILE, 0.5}, {"p90", METRICS_FN_QUANTILE, 0.9},
		{"p95", METRICS_FN_QUANTILE, 0.95}, {"p99", METRICS_FN_QUANTILE, 0.99},
	};
	for (size_t k = 0; k < ARRAY_SIZE(fns); k++)
		if (!strcmp(s, fns[k].name)) {
			*fn = fns[k].fn;
			*quantile = fns[k].q;
			return 0;
		}
	if (str_starts_with(s, "quantile_")) {
		char *end;
		double q = strtod(s + 9, &end);
		if (end != s + 9 && !*end && q >= 0 && q <= 1) {
			*fn = METRICS_FN_QUANTILE;
			*quantile = q;
			return 0;
		}
	}
	return -EINVAL;
}

int metrics_family_type(const char *name, enum metrics_type *type)
{
	for (size_t k = 0; k < ARRAY_SIZE(families); k++)
		if (!strcmp(families[k].name, name)) {
			*type = families[k].type;
			return 0;
		}
	return -ENOENT;
}

/* The histogram whose stored stream name is (NAME_bucket, _count, _sum),
 * or NULL. */
static const char *histogram_of(const char *name, char *buf, size_t size)
{
	static const char *const suffixes[] = {"_bucket", "_count", "_sum"};
	enum metrics_type t;
	for (size_t k = 0; k < ARRAY_SIZE(suffixes); k++) {
		size_t n = strlen(name), s = strlen(suffixes[k]);
		if (n <= s || n - s >= size || strcmp(name + n - s, suffixes[k]))
			continue;
		memcpy(buf, name, n - s);
		buf[n - s] = '\0';
		if (metrics_family_type(buf, &t) == 0 && t == METRICS_HISTOGRAM)
			return buf;
	}
	return NULL;
}

/* A likely intended name for an unknown one, or NULL. */
static const char *likely_name(const char *name)
{
	const char *names[ARRAY_SIZE(families)];
	for (size_t k = 0; k < ARRAY_SIZE(families); k++)
		names[k] = families[k].name;
	return str_suggest(name, names, ARRAY_SIZE(names));
}

int metrics_name_check(const char *name, enum metrics_fn fn, char **err)
{
	enum metrics_type type;
	char buf[128];
	if (metrics_family_type(name, &type) < 0) {
		if (histogram_of(name, buf, sizeof(buf)))
			type = METRICS_COUNTER; /* a histogram's streams count up */
		else {
			const char *hint = likely_name(name);
			*err = hint ? xasprintf("unknown metric '%s' (did you mean '%s'?)", name, hint)
				    : xasprintf("unknown metric '%s' (doc/metrics.md lists them)", name);
			return -EINVAL;
		}
	}
	if (type == METRICS_HISTOGRAM && fn != METRICS_FN_QUANTILE) {
		*err = xasprintf("'%s' is a histogram: ask for a quantile of it (p50, p90, p95 or "
				 "p99), or for the series %s_count, %s_sum or %s_bucket",
				 name, name, name, name);
		return -EINVAL;
	}
	if (type != METRICS_HISTOGRAM && fn == METRICS_FN_QUANTILE) {
		*err = xasprintf("'%s' is %s: quantiles (p50, p90, p95, p99) need a histogram, "
				 "such as paasops_http_request_duration_seconds",
				 name, type_names[type]);
		return -EINVAL;
	}
	return 0;
}
