/* api_metrics.c: the metrics endpoints of doc/api.md and doc/metrics.md:
 * GET /metrics (Prometheus text 0.0.4 or OpenMetrics 1.0 by Accept, gzip by
 * Accept-Encoding), GET /v1/metrics (families and the history's state) and
 * GET /v1/metrics/query (functions over the history), and GET /v1/usage
 * (usage, forecast and cost per app, doc/usage.md). A token scoped to some
 * apps sees only series labelled with those apps. */
#include "api/api_internal.h"
#include "compat/gzip.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "metrics/metrics.h"
#include "supervisor/supervisor.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define API_MAX_MATCHERS 16
#define API_MAX_BY 16

/* A scoped token sees the series of its apps, and no installation-wide ones. */
static bool scope_keep(void *ctx, const char *app)
{
	const struct auth_principal *who = ctx;
	return app && auth_allows(who, AUTH_READ, app);
}

static bool scoped(const struct api_req *req)
{
	return req->who && req->who->n_apps;
}

/* Whether an Accept-Encoding value accepts gzip (q > 0). */
static bool accepts_gzip(const char *ae)
{
	for (const char *p = ae; p && *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t len = strcspn(p, ",");
		size_t tok = strcspn(p, ";, ");
		if ((tok == 4 && strncasecmp(p, "gzip", 4) == 0) || (tok == 1 && *p == '*')) {
			const char *q = memchr(p, '=', len);
			if (!q || strtod(q + 1, NULL) > 0)
				return true;
		}
		p += len;
	}
	return false;
}

void h_metrics(struct api_req *req, struct api_resp *resp)
{
	struct metrics *m = req->api->metrics;
	enum metrics_format fmt = metrics_negotiate(http_msg_header(req->msg, "Accept"));
	struct strbuf text;
	strbuf_init(&text, 0);
	metrics_render(m, fmt, scoped(req) ? scope_keep : NULL, req->who, &text);
	resp->content_type = metrics_content_type(fmt);
	if (accepts_gzip(http_msg_header(req->msg, "Accept-Encoding"))) {
		struct strbuf z;
		strbuf_init(&z, 0);
		if (gzip_compress(text.buf, text.len, 1, &z) == 0) {
			strbuf_release(&text);
			text = z;
			resp->content_encoding = "gzip";
		} else {
			strbuf_release(&z);
		}
	}
	resp->raw = strbuf_detach(&text, &resp->raw_len);
	resp->headers = xstrdup("Vary: Accept, Accept-Encoding\r\n");
}

/* ---- GET /v1/metrics ---- */

static void add_family(void *ctx, const char *name, enum metrics_type type, const char *help,
		       const char *const *labels, size_t n_labels)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};
	struct json *o = json_append(ctx, json_object());
	json_set_str(o, "name", name);
	json_set_str(o, "type", types[type]);
	json_set_str(o, "help", help);
	struct json *l = json_set(o, "labels", json_array());
	for (size_t k = 0; k < n_labels; k++)
		json_append(l, json_string(labels[k]));
}

void h_metrics_status(struct api_req *req, struct api_resp *resp)
{
	struct metrics *m = req->api->metrics;
	struct metrics_status st;
	metrics_status_get(m, &st);
	resp->body = json_object();
	struct json *h = json_set(resp->body, "history", json_object());
	json_set_num(h, "interval_seconds", (double)st.interval_ms / 1000.0);
	struct json *tiers = json_set(h, "tiers", json_array());
	for (size_t k = 0; k < st.n_tiers; k++) {
		struct json *t = json_append(tiers, json_object());
		json_set_num(t, "resolution_seconds", (double)st.tiers[k].res_ms / 1000.0);
		json_set_num(t, "retention_seconds", (double)st.tiers[k].retention_ms / 1000.0);
	}
	json_set_int(h, "series", (int64_t)st.history_series);
	json_set_int(h, "memory_bytes", st.memory_bytes);
	json_set_int(h, "memory_budget_bytes", st.memory_budget);
	json_set_int(h, "dropped_series", (int64_t)st.dropped_series);
	json_set_int(h, "dropped_samples", (int64_t)st.dropped_samples);
	json_set_int(h, "evicted_chunks", (int64_t)st.evicted_chunks);
	json_set_int(resp->body, "series", (int64_t)st.registry_series);
	metrics_families_each(m, add_family, json_set(resp->body, "metrics", json_array()));
}

/* ---- GET /v1/metrics/query ---- */

/* A time: unix seconds (fractions allowed), "now", or "now-DURATION" /
 * "-DURATION" relative to now. */
static int parse_when(const char *s, int64_t now, int64_t *out)
{
	if (!strcmp(s, "now")) {
		*out = now;
		return 0;
	}
	const char *rel = str_starts_with(s, "now-") ? s + 4 : s[0] == '-' ? s + 1 : NULL;
	int64_t d;
	if (rel) {
		if (duration_parse(rel, &d) < 0)
			return -EINVAL;
		*out = now - d;
		return 0;
	}
	char *end;
	double sec = strtod(s, &end);
	if (end == s || *end || !isfinite(sec) || sec < 0 || sec > 1e11)
		return -EINVAL;
	*out = (int64_t)llround(sec * 1000.0);
	return 0;
}

/* A step or window: a duration ("10s", "5m") or seconds ("15", "0.5"). */
static int parse_span(const char *s, int64_t *out)
{
	char *end;
	double sec = strtod(s, &end);
	if (end != s && !*end && isfinite(sec) && sec > 0 && sec < 1e9) {
		*out = (int64_t)llround(sec * 1000.0);
		return *out > 0 ? 0 : -EINVAL;
	}
	return duration_parse(s, out) == 0 && *out > 0 ? 0 : -EINVAL;
}

struct query_args {
	struct metrics_matcher match[API_MAX_MATCHERS];
	const char *by[API_MAX_BY];
	char *owned[API_MAX_MATCHERS * 2 + 1];
	size_t n_owned;
	char *by_text;
};

/* Collects match[LABEL]=VALUE parameters (every one, in order). */
static int collect_matchers(struct api_req *req, struct api_resp *resp, struct metrics_query *q,
			    struct query_args *a)
{
	for (const char *p = req->query; p && *p;) {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (eq) {
			char *key = xstrndup(p, (size_t)(eq - p));
			char *val = xstrndup(eq + 1, len - (size_t)(eq - p) - 1);
			bool ok = http_url_decode(key, true) == 0 && http_url_decode(val, true) == 0;
			size_t kl = strlen(key);
			if (ok && kl > 7 && !strncmp(key, "match[", 6) && key[kl - 1] == ']') {
				if (q->n_match == API_MAX_MATCHERS) {
					free(key);
					free(val);
					api_error(resp, 400, "bad_request", "at most %d match[] parameters",
						  API_MAX_MATCHERS);
					return -EINVAL;
				}
				key[kl - 1] = '\0';
				memmove(key, key + 6, kl - 6);
				a->match[q->n_match++] = (struct metrics_matcher){key, val};
				a->owned[a->n_owned++] = key;
				a->owned[a->n_owned++] = val;
			} else {
				/* Prometheus' match[]=SELECTOR, or a cut match[LABEL, would
				 * otherwise be ignored and match everything. */
				bool bad_match = ok && (!strcmp(key, "match") || str_starts_with(key, "match["));
				if (bad_match)
					api_error(resp, 400, "bad_request",
						  "malformed '%s' parameter (match[LABEL]=VALUE, like "
						  "match[app]=shop)",
						  key);
				free(key);
				free(val);
				if (bad_match)
					return -EINVAL;
				if (!ok) {
					api_error(resp, 400, "bad_request", "malformed query string");
					return -EINVAL;
				}
			}
		}
		p += len + (amp ? 1 : 0);
	}
	q->match = a->match;
	return 0;
}

static void points_json(struct json *arr, const struct metrics_result_series *rs)
{
	for (size_t k = 0; k < rs->n_points; k++) {
		struct json *pt = json_append(arr, json_array());
		json_append(pt, json_number((double)rs->points[k].t_ms / 1000.0));
		json_append(pt, isfinite(rs->points[k].v) ? json_number(rs->points[k].v) : json_null());
	}
}

void h_metrics_query(struct api_req *req, struct api_resp *resp)
{
	struct metrics *m = req->api->metrics;
	struct metrics_query q = {0};
	struct query_args a = {0};
	char *name = api_query(req, "name"), *fn = api_query(req, "fn"), *start = api_query(req, "start"),
	     *end = api_query(req, "end"), *step = api_query(req, "step"),
	     *window = api_query(req, "window"), *by = api_query(req, "by");
	int64_t now = time_wall_ms();
	if (!name || !*name) {
		api_error(resp, 400, "bad_request", "query parameter 'name' is required (a metric name)");
		goto out;
	}
	q.name = name;
	if (metrics_fn_parse(fn ? fn : "raw", &q.fn, &q.quantile) < 0) {
		api_error(resp, 400, "bad_request",
			  "'fn' must be raw, rate, avg, min, max, sum, p50, p90, p95, p99 or quantile_0.NN");
		goto out;
	}
	q.end_ms = now;
	if (end && parse_when(end, now, &q.end_ms) < 0) {
		api_error(resp, 400, "bad_request", "'end' must be unix seconds, 'now' or 'now-DURATION'");
		goto out;
	}
	q.start_ms = q.end_ms - 3600 * 1000;
	if (start && parse_when(start, now, &q.start_ms) < 0) {
		api_error(resp, 400, "bad_request", "'start' must be unix seconds, 'now' or 'now-DURATION'");
		goto out;
	}
	if (q.start_ms > q.end_ms) {
		api_error(resp, 400, "bad_request", "'start' is after 'end'");
		goto out;
	}
	struct metrics_status st;
	metrics_status_get(m, &st);
	/* About 300 points by default, never finer than the samples. */
	q.step_ms = (q.end_ms - q.start_ms) / 300;
	if (q.step_ms < st.interval_ms)
		q.step_ms = st.interval_ms;
	q.step_ms = (q.step_ms + 999) / 1000 * 1000;
	if (step && parse_span(step, &q.step_ms) < 0) {
		api_error(resp, 400, "bad_request", "'step' must be a duration like 10s or seconds");
		goto out;
	}
	if (window && parse_span(window, &q.window_ms) < 0) {
		api_error(resp, 400, "bad_request", "'window' must be a duration like 5m or seconds");
		goto out;
	}
	if (by) {
		q.aggregate = true;
		q.by = a.by;
		a.by_text = xstrdup(by);
		char *save = NULL;
		for (char *l = strtok_r(a.by_text, ", ", &save); l; l = strtok_r(NULL, ", ", &save)) {
			if (q.n_by == API_MAX_BY) {
				api_error(resp, 400, "bad_request", "at most %d labels in 'by'", API_MAX_BY);
				goto out;
			}
			a.by[q.n_by++] = l;
		}
	}
	if (collect_matchers(req, resp, &q, &a) < 0)
		goto out;
	if (scoped(req)) {
		q.keep = scope_keep;
		q.keep_ctx = req->who;
	}
	struct metrics_result r;
	char *err = NULL;
	if (metrics_query(m, &q, &r, &err) < 0) {
		api_error(resp, 400, "bad_request", "%s", err);
		free(err);
		goto out;
	}
	resp->body = json_object();
	json_set_str(resp->body, "name", name);
	json_set_str(resp->body, "fn", fn ? fn : "raw");
	json_set_num(resp->body, "start", (double)q.start_ms / 1000.0);
	json_set_num(resp->body, "end", (double)q.end_ms / 1000.0);
	json_set_num(resp->body, "step", (double)q.step_ms / 1000.0);
	json_set_num(resp->body, "window", (double)r.window_ms / 1000.0);
	json_set_num(resp->body, "resolution", (double)r.res_ms / 1000.0);
	struct json *series = json_set(resp->body, "series", json_array());
	for (size_t k = 0; k < r.n_series; k++) {
		struct json *s = json_append(series, json_object());
		struct json *labels = json_set(s, "labels", json_object());
		for (size_t j = 0; j < r.series[k].n_labels; j++)
			json_set_str(labels, r.series[k].names[j], r.series[k].values[j]);
		points_json(json_set(s, "points", json_array()), &r.series[k]);
	}
	metrics_result_release(&r);
out:
	for (size_t k = 0; k < a.n_owned; k++)
		free(a.owned[k]);
	free(a.by_text);
	free(name);
	free(fn);
	free(start);
	free(end);
	free(step);
	free(window);
	free(by);
}

/* ---- GET /v1/usage ---- */

#define API_USAGE_MAX_MS (3650LL * 86400 * 1000) /* the 400's message says 3650d */

/* A number, or null where there is none (NaN: no prices, no forecast). */
static void set_num_or_null(struct json *o, const char *key, double v)
{
	if (isfinite(v))
		json_set_num(o, key, v);
	else
		json_set(o, key, json_null());
}

static void set_time(struct json *o, const char *key, int64_t ms)
{
	char ts[40];
	time_format_iso(ms, ts, sizeof(ts));
	json_set_str(o, key, ts);
}

static void forecast_json(struct json *o, const char *key, const struct metrics_forecast *f)
{
	if (!f->ok) {
		json_set(o, key, json_null());
		return;
	}
	struct json *j = json_set(o, key, json_object());
	json_set_num(j, "current", f->current);
	json_set_num(j, "projected", f->projected);
	json_set_num(j, "slope_per_day", f->slope_per_day);
	json_set_int(j, "points", (int64_t)f->points);
}

/* A duration parameter (def when absent) within (0, 10 years]. */
static int usage_span(struct api_req *req, struct api_resp *resp, const char *name, int64_t def,
		      int64_t *out)
{
	char *v = api_query(req, name);
	*out = def;
	int rc = 0;
	if (v && (duration_parse(v, out) < 0 || *out <= 0 || *out > API_USAGE_MAX_MS)) {
		api_error(resp, 400, "bad_request",
			  "invalid '%s' '%s' (a positive duration of at most 3650d, like 30d or 12h)", name, v);
		rc = -EINVAL;
	}
	free(v);
	return rc;
}

void h_usage(struct api_req *req, struct api_resp *resp)
{
	int64_t since, forecast;
	if (usage_span(req, resp, "since", 30 * 86400000LL, &since) < 0 ||
	    usage_span(req, resp, "forecast", 30 * 86400000LL, &forecast) < 0)
		return;
	char *app = api_query(req, "app");
	struct json *list = NULL;
	const char **names = NULL;
	size_t n = 0;
	if (app) {
		if (req->who && !auth_allows(req->who, AUTH_READ, app)) {
			api_forbid_app(resp, req->who, AUTH_READ, app);
			goto out;
		}
		if (!supervisor_has_app(req->api->sv, app)) {
			api_error(resp, 404, "not_found", "app '%s' not found", app);
			goto out;
		}
		names = xmalloc(sizeof(*names));
		names[n++] = app;
	} else {
		list = supervisor_apps_json(req->api->sv);
		names = xcalloc(json_size(list) + 1, sizeof(*names));
		for (struct json *a = json_first(list); a; a = json_next(a)) {
			const char *name = json_get_str(a, "name");
			if (name && (!scoped(req) || auth_allows(req->who, AUTH_READ, name)))
				names[n++] = name;
		}
	}
	struct metrics_usage u;
	char *err = NULL;
	if (metrics_usage_get(req->api->metrics, names, n, since, forecast, &u, &err) < 0) {
		api_error(resp, 500, "internal", "%s", err);
		free(err);
		goto out;
	}
	resp->body = json_object();
	set_time(resp->body, "from", u.from_ms);
	set_time(resp->body, "covered_from", u.covered_from_ms);
	set_time(resp->body, "to", u.to_ms);
	json_set_num(resp->body, "covered_seconds", (double)(u.to_ms - u.covered_from_ms) / 1000.0);
	json_set_num(resp->body, "resolution_seconds", (double)u.res_ms / 1000.0);
	json_set_num(resp->body, "forecast_days", (double)u.forecast_ms / 86400000.0);
	json_set_str(resp->body, "forecast_period", u.period_ms >= 86400000 ? "day" : "hour");
	if (u.prices.set) {
		struct json *p = json_set(resp->body, "prices", json_object());
		json_set_num(p, "cpu_hour", u.prices.cpu_hour);
		json_set_num(p, "memory_gb_hour", u.prices.memory_gb_hour);
		if (u.prices.currency[0])
			json_set_str(p, "currency", u.prices.currency);
		else
			json_set(p, "currency", json_null());
	} else {
		json_set(resp->body, "prices", json_null());
	}
	struct json *arr = json_set(resp->body, "apps", json_array());
	for (size_t k = 0; k < u.n_apps; k++) {
		const struct metrics_usage_app *a = &u.apps[k];
		struct json *o = json_append(arr, json_object());
		json_set_str(o, "app", a->app);
		json_set_num(o, "cpu_core_hours", a->cpu_core_hours);
		json_set_num(o, "cpu_avg_cores", a->cpu_avg_cores);
		json_set_num(o, "cpu_peak_cores", a->cpu_peak_cores);
		json_set_num(o, "memory_gib_hours", a->memory_gib_hours);
		json_set_num(o, "memory_avg_bytes", a->memory_avg_bytes);
		json_set_num(o, "memory_peak_bytes", a->memory_peak_bytes);
		json_set_num(o, "instance_hours", a->instance_hours);
		json_set_num(o, "requests", a->requests);
		json_set_num(o, "requests_5xx", a->requests_5xx);
		set_num_or_null(o, "error_ratio", a->requests > 0 ? a->requests_5xx / a->requests : NAN);
		json_set_num(o, "bytes_sent", a->bytes_sent);
		set_num_or_null(o, "cost", a->cost);
		struct json *f = json_set(o, "forecast", json_object());
		forecast_json(f, "cpu_cores", &a->cpu);
		forecast_json(f, "memory_bytes", &a->memory);
		set_num_or_null(f, "cost", a->forecast_cost);
	}
	struct json *t = json_set(resp->body, "total", json_object());
	set_num_or_null(t, "cost", u.cost);
	set_num_or_null(t, "forecast_cost", u.forecast_cost);
	metrics_usage_release(&u);
out:
	free(names);
	json_free(list);
	free(app);
}
