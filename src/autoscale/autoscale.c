/* autoscale.c: the autoscaler's timer, its controllers (one per autoscaled
 * process type, keyed by app and process name) and the decision function.
 *
 * A tick first lists the process types to evaluate from the supervisor's
 * specs, then reads the router's counters once for all of them, then for
 * each one measures, decides and, when the count changes, scales. Rates and
 * the p95 are deltas between two ticks, so a controller's first tick only
 * takes its baselines. */
#include "autoscale/autoscale.h"
#include "compat/json.h"
#include "core/hist.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "metrics/metrics.h"
#include "router/router_metrics.h"
#include "spec/spec.h"
#include "supervisor/supervisor.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum as_metric { AS_RPS, AS_CPU, AS_MEMORY, AS_INFLIGHT, AS_P95, AS_NMETRICS };

static const char *const metric_names[AS_NMETRICS] = {"rps", "cpu", "memory", "inflight", "p95"};

/* One autoscaled process type. */
struct as_ctl {
	char *app, *proc;
	bool seen; /* in this tick's list */
	/* from the spec, refreshed every tick */
	enum as_metric metric;
	int min, max;
	double target;
	/* router baselines of the previous tick */
	bool have_base;
	uint64_t base_requests;
	uint64_t base_hist[ROUTER_METRICS_BUCKETS + 1];
	int64_t base_ms; /* monotonic */
	/* this tick's router reading */
	bool have_now;
	uint64_t now_requests;
	uint64_t now_hist[ROUTER_METRICS_BUCKETS + 1];
	int64_t now_inflight;
	/* status */
	bool have_value;
	double value; /* per ready instance, in the metric's unit */
	int desired;  /* -1 until decided once */
	int64_t last_scaled_wall; /* 0: never */
	/* scale-down window */
	int64_t below_since; /* monotonic ms; 0 when no window is open */
	int window_max;      /* highest count wanted during the window */
	int window_from;     /* the current count the window was opened for */
};

struct autoscale {
	struct autoscale_config cfg;
	uv_timer_t timer;
	bool started, stopped;
	struct as_ctl **ctls;
	size_t n_ctls, alloc_ctls;
	struct metrics_family *g_desired, *g_value;
};

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */

void autoscale_config_defaults(struct autoscale_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->interval_ms = 10000;
	cfg->scale_down_delay_ms = 300000;
	cfg->metrics_interval_ms = 1000;
}

int autoscale_config_parse(struct autoscale_config *cfg, const char *flag, const char *value,
			   char **err)
{
	int64_t ms;
	bool interval = strcmp(flag, "autoscale-interval") == 0;
	if (!interval && strcmp(flag, "autoscale-scale-down-delay") != 0) {
		*err = xasprintf("unknown autoscale flag '%s'", flag);
		return -EINVAL;
	}
	if (duration_parse(value, &ms) < 0 || ms < 0 || (interval && ms == 0)) {
		*err = xasprintf("invalid --%s '%s' (a duration like %s)", flag, value,
				 interval ? "10s" : "5m; 0 scales down at once");
		return -EINVAL;
	}
	if (interval)
		cfg->interval_ms = ms;
	else
		cfg->scale_down_delay_ms = ms;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The decision                                                             */

static int clamp(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

int autoscale_desired(int current, int ready, double value, double target, int min, int max)
{
	if (max < min)
		max = min;
	if (ready <= 0) {
		if (current <= 0 && value > 0)
			return clamp(1 > min ? 1 : min, min, max);
		return clamp(current, min, max);
	}
	if (!(target > 0) || !isfinite(value) || value < 0)
		return clamp(current, min, max);
	double ratio = value / target;
	if (current > 0 && fabs(ratio - 1.0) <= AUTOSCALE_TOLERANCE)
		return clamp(current, min, max);
	/* A hair below an integer is that integer: 3 * 200 / 200 is 3, not 4. */
	double want = ceil((double)ready * ratio - 1e-9);
	if (want > (double)max)
		return max;
	if (want < (double)min)
		return min;
	return (int)want;
}

/* ------------------------------------------------------------------------ */
/* Controllers                                                              */

static struct as_ctl *ctl_find(struct autoscale *as, const char *app, const char *proc)
{
	for (size_t k = 0; k < as->n_ctls; k++)
		if (!strcmp(as->ctls[k]->app, app) && !strcmp(as->ctls[k]->proc, proc))
			return as->ctls[k];
	return NULL;
}

static void ctl_free(struct as_ctl *c)
{
	free(c->app);
	free(c->proc);
	free(c);
}

static enum as_metric metric_of(const char *name)
{
	for (int k = 0; k < AS_NMETRICS; k++)
		if (name && !strcmp(metric_names[k], name))
			return (enum as_metric)k;
	return AS_RPS; /* the spec allows no other value */
}

static void on_spec(void *ctx, const char *app, int release, const struct spec *spec)
{
	struct autoscale *as = ctx;
	for (size_t k = 0; k < spec->n_procs; k++) {
		const struct spec_process *sp = &spec->procs[k];
		if (!sp->autoscale.enabled)
			continue;
		struct as_ctl *c = ctl_find(as, app, sp->name);
		if (!c) {
			c = xcalloc(1, sizeof(*c));
			c->app = xstrdup(app);
			c->proc = xstrdup(sp->name);
			c->desired = -1;
			as->ctls = xgrow(as->ctls, sizeof(*as->ctls), as->n_ctls + 1, &as->alloc_ctls);
			as->ctls[as->n_ctls++] = c;
		}
		enum as_metric m = metric_of(sp->autoscale.metric);
		if (m != c->metric || c->target != sp->autoscale.target) {
			c->have_value = false; /* another question: the old answer means nothing */
			c->below_since = 0;
		}
		c->metric = m;
		c->min = sp->autoscale.min;
		c->max = sp->autoscale.max;
		c->target = sp->autoscale.target;
		c->seen = true;
	}
}

static void on_router(void *ctx, const struct router_metrics_proc *p)
{
	struct autoscale *as = ctx;
	struct as_ctl *c = ctl_find(as, p->app, p->process);
	if (!c)
		return;
	c->have_now = true;
	c->now_requests = p->requests;
	memcpy(c->now_hist, p->hist, sizeof(c->now_hist));
	c->now_inflight = p->inflight;
}

/* Drops the controllers of process types that no longer autoscale. */
static void sweep(struct autoscale *as)
{
	size_t keep = 0;
	for (size_t k = 0; k < as->n_ctls; k++) {
		struct as_ctl *c = as->ctls[k];
		if (c->seen) {
			as->ctls[keep++] = c;
			continue;
		}
		if (as->g_desired)
			metrics_set(metrics_series_get(as->g_desired,
						       (const char *const[]){c->app, c->proc}), 0);
		ctl_free(c);
	}
	as->n_ctls = keep;
}

/* The average of the newest point of every instance's series of a
 * per-instance gauge over the last window; false when there is none. */
static bool instance_average(struct autoscale *as, const struct as_ctl *c, const char *name,
			     double *out)
{
	if (!as->cfg.metrics)
		return false;
	int64_t window = as->cfg.interval_ms;
	if (window < 2 * as->cfg.metrics_interval_ms)
		window = 2 * as->cfg.metrics_interval_ms;
	char w[32];
	duration_format(window, w, sizeof(w));
	char *expr = xasprintf("avg(%s{app=\"%s\",process=\"%s\"}[%s])", name, c->app, c->proc, w);
	struct metrics_result res;
	char *err = NULL;
	int r = metrics_eval(as->cfg.metrics, expr, time_wall_ms(), &res, &err);
	free(expr);
	if (r < 0) {
		log_warn("autoscale: cannot read %s of '%s.%s': %s", name, c->app, c->proc, err);
		free(err);
		return false;
	}
	double sum = 0;
	size_t n = 0;
	for (size_t k = 0; k < res.n_series; k++) {
		if (res.series[k].n_points == 0)
			continue;
		sum += res.series[k].points[res.series[k].n_points - 1].v;
		n++;
	}
	metrics_result_release(&res);
	if (n == 0)
		return false;
	*out = sum / (double)n;
	return true;
}

static void format_value(enum as_metric m, double v, char *buf, size_t size)
{
	if (m == AS_MEMORY || v >= 100)
		snprintf(buf, size, "%.0f", v);
	else
		snprintf(buf, size, "%.3g", v);
}

static void set_gauges(struct autoscale *as, const struct as_ctl *c)
{
	if (as->g_desired && c->desired >= 0)
		metrics_set(metrics_series_get(as->g_desired, (const char *const[]){c->app, c->proc}),
			    c->desired);
	if (as->g_value && c->have_value)
		metrics_set(metrics_series_get(as->g_value, (const char *const[]){
							   c->app, c->proc, metric_names[c->metric]}),
			    c->value);
}

/* Applies count; the reason is recorded as an "autoscale" event. */
static void scale_to(struct autoscale *as, struct as_ctl *c, int from, int to, const char *why)
{
	const char *procs[] = {c->proc};
	char *err = NULL;
	if (supervisor_scale(as->cfg.sv, c->app, procs, &to, 1, &err) < 0) {
		log_warn("autoscale: cannot scale '%s.%s' to %d: %s", c->app, c->proc, to, err);
		free(err);
		return;
	}
	char reason[400];
	snprintf(reason, sizeof(reason), "%s %d -> %d: %s", c->proc, from, to, why);
	supervisor_note(as->cfg.sv, c->app, "autoscale", reason);
	log_info("autoscale: %s: %s", c->app, reason);
	c->last_scaled_wall = time_wall_ms();
	c->below_since = 0;
}

/* Reads the app's view of the process type: wanted and ready counts and
 * whether it may be scaled now. False for an unknown app or process. */
static bool proc_state(struct autoscale *as, const struct as_ctl *c, int *current, int *ready,
		       bool *hold)
{
	struct json *a = supervisor_app_json(as->cfg.sv, c->app, false);
	if (!a)
		return false;
	bool found = false;
	*hold = json_true(json_get(a, "stopped")) || json_true(json_get(a, "rolling_out"));
	for (struct json *p = json_first(json_get(a, "processes")); p; p = json_next(p)) {
		const char *name = json_get_str(p, "name");
		if (!name || strcmp(name, c->proc))
			continue;
		int64_t n = 0, r = 0;
		json_get_int(json_get(p, "instances"), &n);
		json_get_int(json_get(p, "ready"), &r);
		*current = (int)n;
		*ready = (int)r;
		*hold = *hold || json_true(json_get(p, "stopped"));
		found = true;
	}
	json_free(a);
	return found;
}

static void evaluate(struct autoscale *as, struct as_ctl *c, int64_t now)
{
	int current = 0, ready = 0;
	bool hold = false;
	double secs = c->have_base ? (double)(now - c->base_ms) / 1000.0 : 0;
	uint64_t dreq = 0;
	uint64_t dhist[ROUTER_METRICS_BUCKETS + 1] = {0};
	bool have_delta = c->have_base && c->have_now && secs > 0 &&
			  c->now_requests >= c->base_requests;
	if (have_delta) {
		dreq = c->now_requests - c->base_requests;
		for (size_t k = 0; k <= ROUTER_METRICS_BUCKETS; k++)
			dhist[k] = c->now_hist[k] >= c->base_hist[k] ? c->now_hist[k] - c->base_hist[k] : 0;
	}
	if (c->have_now) {
		c->have_base = true;
		c->base_requests = c->now_requests;
		memcpy(c->base_hist, c->now_hist, sizeof(c->base_hist));
		c->base_ms = now;
	}
	if (!proc_state(as, c, &current, &ready, &hold))
		return;
	if (hold) {
		c->below_since = 0;
		return;
	}
	if (c->below_since && current != c->window_from)
		c->below_since = 0; /* scaled by hand meanwhile: start over from that count */

	/* What is measured: per ready instance, or the demand with none ready. */
	double value = 0;
	bool have = false;
	int per = ready > 0 ? ready : 1;
	switch (c->metric) {
	case AS_RPS:
		have = have_delta;
		value = have ? (double)dreq / secs / per : 0;
		break;
	case AS_INFLIGHT:
		have = c->have_now;
		value = have ? (double)(c->now_inflight > 0 ? c->now_inflight : 0) / per : 0;
		break;
	case AS_P95: {
		size_t nb;
		const double *bounds = router_metrics_bounds(&nb);
		have = have_delta;
		value = have ? hist_quantile_counts(0.95, bounds, dhist, nb) : 0;
		if (isnan(value))
			value = 0; /* no request in the window */
		break;
	}
	case AS_CPU:
		have = instance_average(as, c, "paasops_instance_cpu_usage_ratio", &value);
		break;
	case AS_MEMORY:
		have = instance_average(as, c, "paasops_instance_resident_memory_bytes", &value);
		break;
	case AS_NMETRICS:
		break;
	}
	if (ready == 0) {
		/* No value per instance: what wakes a process type scaled to zero
		 * is any request at all. */
		if (current == 0 && have_delta && dreq > 0) {
			int to = autoscale_desired(0, 0, (double)dreq, c->target, c->min, c->max);
			c->desired = to;
			set_gauges(as, c);
			if (to > 0) {
				char why[200];
				snprintf(why, sizeof(why), "%llu requests while scaled to zero",
					 (unsigned long long)dreq);
				scale_to(as, c, 0, to, why);
			}
			return;
		}
		if (current > 0 || !have)
			return; /* starting: nothing to measure yet */
	}
	if (!have)
		return;
	c->have_value = ready > 0;
	c->value = value;
	int want = autoscale_desired(current, ready, ready > 0 ? value : 0, c->target, c->min, c->max);
	c->desired = want;
	set_gauges(as, c);

	char v[40], t[40], why[200];
	format_value(c->metric, value, v, sizeof(v));
	format_value(c->metric, c->target, t, sizeof(t));
	if (want > current) {
		if (current < c->min)
			snprintf(why, sizeof(why), "below min %d", c->min);
		else
			snprintf(why, sizeof(why), "%s %s/instance above target %s",
				 metric_names[c->metric], v, t);
		scale_to(as, c, current, want, why);
		return;
	}
	if (want == current) {
		c->below_since = 0;
		return;
	}
	if (current > c->max) {
		snprintf(why, sizeof(why), "above max %d", c->max);
		scale_to(as, c, current, want, why);
		return;
	}
	if (!c->below_since) {
		c->below_since = now;
		c->window_max = want;
		c->window_from = current;
	} else if (want > c->window_max) {
		c->window_max = want;
	}
	if (now - c->below_since < as->cfg.scale_down_delay_ms)
		return;
	char delay[32];
	duration_format(as->cfg.scale_down_delay_ms, delay, sizeof(delay));
	snprintf(why, sizeof(why), "%s %s/instance below target %s for %s", metric_names[c->metric],
		 v, t, delay);
	scale_to(as, c, current, c->window_max, why);
}

static void on_tick(uv_timer_t *t)
{
	struct autoscale *as = t->data;
	if (as->stopped || supervisor_shutting_down(as->cfg.sv))
		return;
	for (size_t k = 0; k < as->n_ctls; k++) {
		as->ctls[k]->seen = false;
		as->ctls[k]->have_now = false;
	}
	supervisor_each_spec(as->cfg.sv, on_spec, as);
	sweep(as);
	if (as->n_ctls == 0)
		return;
	if (as->cfg.router)
		router_metrics_each(as->cfg.router, on_router, as);
	int64_t now = time_mono_ms();
	for (size_t k = 0; k < as->n_ctls; k++)
		evaluate(as, as->ctls[k], now);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */

struct autoscale *autoscale_new(const struct autoscale_config *cfg)
{
	struct autoscale *as = xcalloc(1, sizeof(*as));
	as->cfg = *cfg;
	uv_timer_init(cfg->loop, &as->timer);
	as->timer.data = as;
	if (cfg->metrics) {
		struct metrics_registry *reg = metrics_registry_of(cfg->metrics);
		static const char *const pl[] = {"app", "process"};
		static const char *const vl[] = {"app", "process", "metric"};
		as->g_desired = metrics_family_add(
			reg, "paasops_autoscale_desired_instances",
			"Instances the autoscaler wants for the process type at its last evaluation.",
			METRICS_GAUGE, pl, 2, NULL, 0, false);
		as->g_value = metrics_family_add(
			reg, "paasops_autoscale_value",
			"The autoscaled metric per ready instance at the last evaluation, in its unit.",
			METRICS_GAUGE, vl, 3, NULL, 0, false);
	}
	return as;
}

void autoscale_start(struct autoscale *as)
{
	as->started = true;
	uv_timer_start(&as->timer, on_tick, as->cfg.interval_ms, as->cfg.interval_ms);
}

void autoscale_stop(struct autoscale *as)
{
	if (!as || as->stopped)
		return;
	as->stopped = true;
	as->cfg.sv = NULL;
	as->cfg.router = NULL;
	as->cfg.metrics = NULL;
	as->g_desired = as->g_value = NULL;
	uv_timer_stop(&as->timer);
	if (!uv_is_closing((uv_handle_t *)&as->timer))
		uv_close((uv_handle_t *)&as->timer, NULL);
}

void autoscale_free(struct autoscale *as)
{
	if (!as)
		return;
	for (size_t k = 0; k < as->n_ctls; k++)
		ctl_free(as->ctls[k]);
	free(as->ctls);
	free(as);
}

/* ------------------------------------------------------------------------ */
/* Status                                                                   */

void autoscale_decorate(struct autoscale *as, struct json *app)
{
	if (!as || !app)
		return;
	const char *name = json_get_str(app, "name");
	if (!name)
		return;
	if (as->cfg.sv) /* a process type applied since the last tick shows at once */
		supervisor_each_spec(as->cfg.sv, on_spec, as);
	for (struct json *p = json_first(json_get(app, "processes")); p; p = json_next(p)) {
		const char *proc = json_get_str(p, "name");
		struct as_ctl *c = proc ? ctl_find(as, name, proc) : NULL;
		if (!c)
			continue;
		struct json *o = json_set(p, "autoscale", json_object());
		json_set_int(o, "min", c->min);
		json_set_int(o, "max", c->max);
		json_set_str(o, "metric", metric_names[c->metric]);
		json_set_num(o, "target", c->target);
		if (c->have_value)
			json_set_num(o, "current_value", c->value);
		else
			json_set(o, "current_value", json_null());
		if (c->desired >= 0)
			json_set_int(o, "desired", c->desired);
		else
			json_set(o, "desired", json_null());
		if (c->last_scaled_wall) {
			char ts[40];
			time_format_iso(c->last_scaled_wall, ts, sizeof(ts));
			json_set_str(o, "last_scaled_at", ts);
		} else {
			json_set(o, "last_scaled_at", json_null());
		}
	}
}
