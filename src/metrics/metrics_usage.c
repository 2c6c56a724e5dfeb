/* metrics_usage.c: what each app used over a window of the history — CPU
 * core-hours, memory GiB-hours, instance-hours, requests, errors and bytes
 * sent — a linear trend of its CPU and memory projected ahead, and what
 * that costs at the daemon's prices (doc/usage.md). Everything is read
 * through the module's own queries (metrics_query), so it sees the same
 * tiers and points as GET /v1/metrics/query; the arithmetic is in small
 * pure functions the unit tests check. */
#include "metrics/metrics.h"
#include "core/timeutil.h"
#include "core/util.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define USAGE_DAY_MS (86400LL * 1000)
#define USAGE_HOUR_MS (3600LL * 1000)
#define USAGE_GIB (1024.0 * 1024.0 * 1024.0)
/* Periods of the forecast's averages, at most (older ones are left out). */
#define USAGE_MAX_PERIODS 4000
/* Steps of the query that finds peaks (the query allows 11,000). */
#define USAGE_PEAK_STEPS 10000

/* ------------------------------------------------------------------------ */
/* Pure arithmetic                                                          */

int metrics_trend_fit(const double *x, const double *y, size_t n, struct metrics_trend *out)
{
	memset(out, 0, sizeof(*out));
	if (n < 3)
		return -EINVAL;
	/* Centred sums: stable when x is far from 0. */
	double mx = 0, my = 0;
	for (size_t k = 0; k < n; k++) {
		mx += x[k];
		my += y[k];
	}
	mx /= (double)n;
	my /= (double)n;
	double sxx = 0, sxy = 0;
	for (size_t k = 0; k < n; k++) {
		sxx += (x[k] - mx) * (x[k] - mx);
		sxy += (x[k] - mx) * (y[k] - my);
	}
	if (!(sxx > 0))
		return -EINVAL;
	out->slope = sxy / sxx;
	out->intercept = my - out->slope * mx;
	out->n = n;
	return 0;
}

/* The forecast's periods: period k holds the times in
 * (to - (k + 1) * len, to - k * len]. */
struct usage_periods {
	int64_t to, len;
	size_t n;
};

static size_t period_of(const struct usage_periods *per, int64_t t)
{
	int64_t back = per->to - t;
	size_t k = back <= 0 ? 0 : (size_t)((back - 1) / per->len);
	return k < per->n ? k : per->n - 1;
}

/* metrics_counter_increase(), adding each increase to the period of the
 * point that ends it when per is not NULL. */
static double counter_walk(const struct metrics_point *p, size_t n, bool from_zero,
			   const struct usage_periods *per, double *acc)
{
	double inc = 0;
	for (size_t k = 0; k < n; k++) {
		double d;
		if (k == 0)
			d = from_zero && p[0].v > 0 ? p[0].v : 0;
		else
			d = p[k].v >= p[k - 1].v ? p[k].v - p[k - 1].v : p[k].v;
		if (!isfinite(d))
			continue;
		inc += d;
		if (per)
			acc[period_of(per, p[k].t_ms)] += d;
	}
	return inc;
}

double metrics_counter_increase(const struct metrics_point *p, size_t n, bool from_zero)
{
	return counter_walk(p, n, from_zero, NULL, NULL);
}

/* metrics_gauge_integral(), also adding the seconds the series existed to
 * *seconds, and each point's share to its period when per is not NULL. */
static double gauge_walk(const struct metrics_point *p, size_t n, int64_t res_ms,
			 const struct usage_periods *per, double *acc, double *seconds)
{
	double sum = 0, secs = 0;
	for (size_t k = 0; k < n; k++) {
		int64_t dt = k ? p[k].t_ms - p[k - 1].t_ms : res_ms;
		if (dt <= 0 || dt > 2 * res_ms)
			dt = res_ms;
		double s = (double)dt / 1000.0;
		if (!isfinite(p[k].v))
			continue;
		sum += p[k].v * s;
		secs += s;
		if (per)
			acc[period_of(per, p[k].t_ms)] += p[k].v * s;
	}
	if (seconds)
		*seconds += secs;
	return sum;
}

double metrics_gauge_integral(const struct metrics_point *p, size_t n, int64_t res_ms)
{
	return gauge_walk(p, n, res_ms, NULL, NULL, NULL);
}

double metrics_cost(const struct metrics_prices *pr, double core_hours, double gib_hours)
{
	return core_hours * pr->cpu_hour + gib_hours * pr->memory_gb_hour;
}

/* ------------------------------------------------------------------------ */
/* Reading the history                                                      */

/* The apps asked for, sorted, to find a series' app quickly. */
struct usage_index {
	const char **names;
	size_t *slot; /* names[k] is apps[slot[k]] */
	size_t n;
};

static int usage_index_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void usage_index_init(struct usage_index *ix, const char *const *apps, size_t n)
{
	ix->n = n;
	ix->names = xcalloc(n ? n : 1, sizeof(*ix->names));
	ix->slot = xcalloc(n ? n : 1, sizeof(*ix->slot));
	memcpy(ix->names, apps, n * sizeof(*apps));
	qsort(ix->names, n, sizeof(*ix->names), usage_index_cmp);
	for (size_t k = 0; k < n; k++)
		for (size_t j = 0; j < n; j++)
			if (ix->names[k] == apps[j])
				ix->slot[k] = j;
}

/* The slot of app in the order asked, or -1. */
static long usage_index_find(const struct usage_index *ix, const char *app)
{
	if (!app)
		return -1;
	const char **hit = bsearch(&app, ix->names, ix->n, sizeof(*ix->names), usage_index_cmp);
	return hit ? (long)ix->slot[hit - ix->names] : -1;
}

static bool usage_keep(void *ctx, const char *app)
{
	return usage_index_find(ctx, app) >= 0;
}

static const char *label(const struct metrics_result_series *rs, const char *name)
{
	for (size_t k = 0; k < rs->n_labels; k++)
		if (!strcmp(rs->names[k], name))
			return rs->values[k];
	return NULL;
}

/* Per-app accumulators while reading. */
struct usage_acc {
	double cpu_s, mem_bs, inst_s;
	double *cpu_per, *mem_per; /* [periods] */
};

enum usage_what { USAGE_CPU, USAGE_MEMORY, USAGE_REQUESTS, USAGE_BYTES };

static const struct {
	const char *name;
	enum usage_what what;
} usage_series[] = {
	{"paasops_instance_cpu_seconds_total", USAGE_CPU},
	{"paasops_instance_resident_memory_bytes", USAGE_MEMORY},
	{"paasops_http_requests_total", USAGE_REQUESTS},
	{"paasops_http_response_bytes_total", USAGE_BYTES},
};

static int usage_read(struct metrics *m, struct metrics_usage *u, const struct usage_index *ix,
		      const struct usage_periods *per, struct usage_acc *acc, char **err)
{
	for (size_t w = 0; w < ARRAY_SIZE(usage_series); w++) {
		struct metrics_query q = {
			.name = usage_series[w].name,
			.fn = METRICS_FN_RAW,
			.start_ms = u->covered_from_ms,
			.end_ms = u->to_ms,
			.step_ms = 1,
			.keep = usage_keep,
			.keep_ctx = (void *)ix,
		};
		struct metrics_result r;
		int rc = metrics_query(m, &q, &r, err);
		if (rc < 0)
			return rc;
		if (r.res_ms)
			u->res_ms = r.res_ms;
		int64_t res = u->res_ms;
		for (size_t k = 0; k < r.n_series; k++) {
			const struct metrics_result_series *rs = &r.series[k];
			long slot = usage_index_find(ix, label(rs, "app"));
			if (slot < 0 || !rs->n_points)
				continue;
			struct metrics_usage_app *a = &u->apps[slot];
			struct usage_acc *c = &acc[slot];
			/* A series that appears after the history began started inside
			 * the window: what it counted before its first point is usage too. */
			bool from_zero = rs->points[0].t_ms > u->covered_from_ms + 2 * res;
			switch (usage_series[w].what) {
			case USAGE_CPU:
				c->cpu_s += counter_walk(rs->points, rs->n_points, from_zero, per, c->cpu_per);
				break;
			case USAGE_MEMORY:
				c->mem_bs += gauge_walk(rs->points, rs->n_points, res, per, c->mem_per,
							&c->inst_s);
				break;
			case USAGE_REQUESTS: {
				double inc = metrics_counter_increase(rs->points, rs->n_points, from_zero);
				const char *code = label(rs, "code");
				a->requests += inc;
				if (code && !strcmp(code, "5xx"))
					a->requests_5xx += inc;
				break;
			}
			case USAGE_BYTES:
				a->bytes_sent += metrics_counter_increase(rs->points, rs->n_points, from_zero);
				break;
			}
		}
		metrics_result_release(&r);
	}
	return 0;
}

/* The highest per-app total of a gauge, from averages over steps. */
static int usage_peaks(struct metrics *m, struct metrics_usage *u, const struct usage_index *ix,
		       const char *name, size_t offset, char **err)
{
	int64_t span = u->to_ms - u->covered_from_ms;
	int64_t step = u->res_ms;
	if (span / step > USAGE_PEAK_STEPS)
		step = (span / USAGE_PEAK_STEPS + u->res_ms - 1) / u->res_ms * u->res_ms;
	if (span < step)
		return 0;
	static const char *const by[] = {"app"};
	struct metrics_query q = {
		.name = name,
		.fn = METRICS_FN_AVG,
		.start_ms = u->covered_from_ms + step,
		.end_ms = u->to_ms,
		.step_ms = step,
		.window_ms = step,
		.aggregate = true,
		.by = by,
		.n_by = 1,
		.keep = usage_keep,
		.keep_ctx = (void *)ix,
	};
	struct metrics_result r;
	int rc = metrics_query(m, &q, &r, err);
	if (rc < 0)
		return rc;
	for (size_t k = 0; k < r.n_series; k++) {
		long slot = usage_index_find(ix, label(&r.series[k], "app"));
		if (slot < 0)
			continue;
		double *peak = (double *)((char *)&u->apps[slot] + offset);
		for (size_t j = 0; j < r.series[k].n_points; j++)
			if (r.series[k].points[j].v > *peak)
				*peak = r.series[k].points[j].v;
	}
	metrics_result_release(&r);
	return 0;
}

/* Fits the per-period averages acc[k] / covered seconds of period k; a
 * period less than half covered by the history is left out. */
static void usage_forecast(const struct metrics_usage *u, const struct usage_periods *per,
			   const double *acc, double scale, struct metrics_forecast *f)
{
	memset(f, 0, sizeof(*f));
	double *x = xcalloc(per->n, sizeof(double)), *y = xcalloc(per->n, sizeof(double));
	size_t n = 0;
	for (size_t k = per->n; k-- > 0;) {
		int64_t end = per->to - (int64_t)k * per->len;
		int64_t start = end - per->len;
		if (start < u->covered_from_ms)
			start = u->covered_from_ms;
		int64_t covered = end - start;
		if (covered * 2 < per->len)
			continue;
		x[n] = (double)((start + end) / 2 - per->to) / (double)USAGE_DAY_MS;
		y[n++] = acc[k] / ((double)covered / 1000.0) * scale;
	}
	struct metrics_trend t;
	if (metrics_trend_fit(x, y, n, &t) == 0) {
		double days = (double)u->forecast_ms / (double)USAGE_DAY_MS;
		f->ok = true;
		f->points = n;
		f->current = t.intercept;
		f->slope_per_day = t.slope;
		f->projected = fmax(0, t.intercept + t.slope * days);
		f->mean = fmax(0, t.intercept + t.slope * days / 2);
	}
	free(x);
	free(y);
}

int metrics_usage_get(struct metrics *m, const char *const *apps, size_t n_apps,
		      int64_t since_ms, int64_t forecast_ms, struct metrics_usage *out,
		      char **err)
{
	memset(out, 0, sizeof(*out));
	if (since_ms <= 0 || forecast_ms <= 0) {
		*err = xstrdup("the window and the forecast must be positive durations");
		return -EINVAL;
	}
	struct metrics_status st;
	metrics_status_get(m, &st);
	out->to_ms = time_wall_ms();
	out->from_ms = out->to_ms - since_ms;
	int64_t oldest = metrics_history_oldest(m);
	out->covered_from_ms = !oldest ? out->to_ms : oldest > out->from_ms ? oldest : out->from_ms;
	if (out->covered_from_ms > out->to_ms)
		out->covered_from_ms = out->to_ms;
	out->forecast_ms = forecast_ms;
	out->res_ms = st.interval_ms;
	out->prices = st.prices;
	out->apps = xcalloc(n_apps ? n_apps : 1, sizeof(*out->apps));
	out->n_apps = n_apps;
	for (size_t k = 0; k < n_apps; k++)
		out->apps[k].app = xstrdup(apps[k]);

	int64_t span = out->to_ms - out->covered_from_ms;
	out->period_ms = span >= 3 * USAGE_DAY_MS ? USAGE_DAY_MS : USAGE_HOUR_MS;
	struct usage_periods per = {out->to_ms, out->period_ms,
				    (size_t)((span + out->period_ms - 1) / out->period_ms)};
	if (per.n > USAGE_MAX_PERIODS)
		per.n = USAGE_MAX_PERIODS;
	if (per.n == 0)
		per.n = 1;
	struct usage_index ix;
	usage_index_init(&ix, apps, n_apps);
	struct usage_acc *acc = xcalloc(n_apps ? n_apps : 1, sizeof(*acc));
	for (size_t k = 0; k < n_apps; k++) {
		acc[k].cpu_per = xcalloc(per.n, sizeof(double));
		acc[k].mem_per = xcalloc(per.n, sizeof(double));
	}
	int rc = 0;
	if (span > 0) {
		rc = usage_read(m, out, &ix, &per, acc, err);
		if (!rc)
			rc = usage_peaks(m, out, &ix, "paasops_instance_cpu_usage_ratio",
					 offsetof(struct metrics_usage_app, cpu_peak_cores), err);
		if (!rc)
			rc = usage_peaks(m, out, &ix, "paasops_instance_resident_memory_bytes",
					 offsetof(struct metrics_usage_app, memory_peak_bytes), err);
	}

	double span_s = (double)span / 1000.0;
	bool priced = out->prices.set;
	out->cost = priced ? 0 : NAN;
	out->forecast_cost = NAN;
	for (size_t k = 0; !rc && k < n_apps; k++) {
		struct metrics_usage_app *a = &out->apps[k];
		a->cpu_core_hours = acc[k].cpu_s / 3600.0;
		a->memory_gib_hours = acc[k].mem_bs / USAGE_GIB / 3600.0;
		a->instance_hours = acc[k].inst_s / 3600.0;
		a->cpu_avg_cores = span_s > 0 ? acc[k].cpu_s / span_s : 0;
		a->memory_avg_bytes = span_s > 0 ? acc[k].mem_bs / span_s : 0;
		/* Averages over whole steps can miss a short burst the integral saw. */
		a->cpu_peak_cores = fmax(a->cpu_peak_cores, a->cpu_avg_cores);
		a->memory_peak_bytes = fmax(a->memory_peak_bytes, a->memory_avg_bytes);
		usage_forecast(out, &per, acc[k].cpu_per, 1, &a->cpu);
		usage_forecast(out, &per, acc[k].mem_per, 1, &a->memory);
		a->cost = priced ? metrics_cost(&out->prices, a->cpu_core_hours, a->memory_gib_hours)
				 : NAN;
		a->forecast_cost = NAN;
		if (priced && a->cpu.ok && a->memory.ok) {
			double hours = (double)forecast_ms / (double)USAGE_HOUR_MS;
			a->forecast_cost = metrics_cost(&out->prices, a->cpu.mean * hours,
							a->memory.mean / USAGE_GIB * hours);
			out->forecast_cost = (isnan(out->forecast_cost) ? 0 : out->forecast_cost) +
					     a->forecast_cost;
		}
		if (priced)
			out->cost += a->cost;
	}

	for (size_t k = 0; k < n_apps; k++) {
		free(acc[k].cpu_per);
		free(acc[k].mem_per);
	}
	free(acc);
	free(ix.names);
	free(ix.slot);
	if (rc < 0)
		metrics_usage_release(out);
	return rc;
}

void metrics_usage_release(struct metrics_usage *u)
{
	for (size_t k = 0; k < u->n_apps; k++)
		free(u->apps[k].app);
	free(u->apps);
	memset(u, 0, sizeof(*u));
}
