/* autoscale.c: the autoscaler's timer, its controllers (one per autoscaled
 * process type, keyed by app and process name) and the decision functions.
 *
 * A tick lists the process types to evaluate from the supervisor's specs
 * only when those changed, then for each one takes a sample into its ring,
 * measures the stable and panic windows from the ring, decides and, when
 * the count changes, scales. Counters (requests, the latency histogram) are
 * kept cumulative in the ring, so a window's rate or p95 is the difference
 * between its newest sample and the one at its start, over the time that
 * really passed between them; gauges (in flight, CPU, memory) are averaged
 * over the samples in the window. */
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
#include "store/store.h"
#include "supervisor/supervisor.h"
#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum as_metric { AS_RPS, AS_CPU, AS_MEMORY, AS_INFLIGHT, AS_P95, AS_NMETRICS };

static const char *const metric_names[AS_NMETRICS] = {"rps", "cpu", "memory", "inflight", "p95"};

/* One sample of a process type, taken at each tick. Counters are the
 * router's totals; gauges are totals over the instances, so that a window
 * that spans a scale divides by the ready count it is decided at. */
struct as_sample {
	int64_t t; /* monotonic ms */
	bool routed;
	uint64_t requests;
	uint64_t hist[ROUTER_METRICS_BUCKETS + 1];
	double inflight;
	bool have_res;
	double res; /* cpu or memory summed over the ready instances */
};

/* A moment kept on both clocks: monotonic for how long ago, wall for
 * showing and storing. wall is 0 when unset. */
struct as_time {
	int64_t mono, wall;
};

/* What the store holds for a controller, to write only on a change. */
struct as_saved {
	int64_t last_scaled, down_since, panic_since, calm_since; /* wall ms, 0: none */
	int down_from, down_to;
};

/* One autoscaled process type. */
struct as_ctl {
	char *app, *proc;
	bool seen; /* in the latest listing */
	/* from the spec, refreshed when the specs change */
	enum as_metric metric;
	int min, max;
	double target;
	double panic_threshold; /* x target over the panic window: panic */
	/* the ring of samples, oldest first from head */
	struct as_sample *ring;
	size_t cap, n, head;
	int last_ready;
	int64_t ready_since; /* monotonic ms since which `ready` has been last_ready */
	/* status */
	bool have_value, have_panic_value;
	double value, panic_value; /* per ready instance, in the metric's unit */
	int desired;               /* -1 until decided once */
	int64_t last_scaled_wall;  /* 0: never */
	/* scale-down window: a lower count wanted since down_since */
	struct as_time down_since; /* wall 0: no window open */
	int down_to;               /* highest count wanted during the window */
	int down_from;             /* the current count the window was opened for */
	/* panic, on the monotonic clock; the wall times for status and store */
	struct autoscale_panic panic;
	int64_t panic_wall, calm_wall;
	struct as_saved saved;
};

struct autoscale {
	struct autoscale_config cfg;
	uv_timer_t timer;
	bool started, stopped;
	bool listed;       /* the specs have been listed once */
	uint64_t spec_gen; /* the supervisor's generation at the last listing */
	struct as_ctl **ctls;
	size_t n_ctls, alloc_ctls;
	/* rows read from the store at start, until the first listing adopts them */
	struct store_autoscale *rows;
	size_t n_rows, alloc_rows;
	struct metrics_family *g_desired, *g_value, *g_panic;
};

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */

void autoscale_config_defaults(struct autoscale_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->interval_ms = 1000;
	cfg->stable_window_ms = 60000;
	cfg->scale_down_delay_ms = 300000;
	cfg->metrics_interval_ms = 1000;
}

int autoscale_config_parse(struct autoscale_config *cfg, const char *flag, const char *value,
			   char **err)
{
	static const struct {
		const char *flag;
		size_t offset;
		bool zero_ok;
		const char *example;
	} flags[] = {
		{"autoscale-interval", offsetof(struct autoscale_config, interval_ms), false, "1s"},
		{"autoscale-stable-window", offsetof(struct autoscale_config, stable_window_ms), false,
		 "60s"},
		{"autoscale-scale-down-delay", offsetof(struct autoscale_config, scale_down_delay_ms),
		 true, "5m; 0 scales down at once"},
	};
	for (size_t k = 0; k < ARRAY_SIZE(flags); k++) {
		if (strcmp(flag, flags[k].flag))
			continue;
		int64_t ms;
		if (duration_parse(value, &ms) < 0 || ms < 0 || (!flags[k].zero_ok && ms == 0)) {
			*err = xasprintf("invalid --%s '%s' (a duration like %s)", flag, value,
					 flags[k].example);
			return -EINVAL;
		}
		*(int64_t *)((char *)cfg + flags[k].offset) = ms;
		return 0;
	}
	*err = xasprintf("unknown autoscale flag '%s'", flag);
	return -EINVAL;
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

struct autoscale_panic autoscale_panic_next(struct autoscale_panic p, int ready, double value,
					    double target, double threshold, int64_t now,
					    int64_t stable_window_ms)
{
	if (ready <= 0 || !(target > 0) || !isfinite(value))
		return p;
	bool over = value >= threshold * target;
	if (!p.active) {
		if (over)
			p = (struct autoscale_panic){.active = true, .since = now};
		return p;
	}
	if (over) {
		p.calm = false;
		return p;
	}
	if (!p.calm) {
		p.calm = true;
		p.calm_since = now;
	}
	if (now - p.calm_since >= stable_window_ms)
		p = (struct autoscale_panic){0};
	return p;
}

int autoscale_desired_in_panic(int current, int ready, double stable_value, double panic_value,
			       double target, int min, int max)
{
	if (max < min)
		max = min;
	int want = clamp(current, min, max);
	int s = autoscale_desired(current, ready, stable_value, target, min, max);
	int p = autoscale_desired(current, ready, panic_value, target, min, max);
	if (s > want)
		want = s;
	if (p > want)
		want = p;
	return want;
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
	free(c->ring);
	free(c);
}

static enum as_metric metric_of(const char *name)
{
	for (int k = 0; k < AS_NMETRICS; k++)
		if (name && !strcmp(metric_names[k], name))
			return (enum as_metric)k;
	return AS_RPS; /* the spec allows no other value */
}

static int64_t stable_window(const struct autoscale *as)
{
	return as->cfg.stable_window_ms > as->cfg.interval_ms ? as->cfg.stable_window_ms
							      : as->cfg.interval_ms;
}

/* A tenth of the stable window, but never less than one interval. */
static int64_t panic_window(const struct autoscale *as)
{
	int64_t w = stable_window(as) / 10;
	return w > as->cfg.interval_ms ? w : as->cfg.interval_ms;
}

/* The monotonic time of a wall time read back from the store. */
static struct as_time time_from_wall(int64_t wall)
{
	return (struct as_time){.mono = time_mono_ms() - (time_wall_ms() - wall), .wall = wall};
}

/* Takes over the state an earlier run stored for c, if any. */
static void ctl_adopt(struct autoscale *as, struct as_ctl *c)
{
	for (size_t k = 0; k < as->n_rows; k++) {
		struct store_autoscale *r = &as->rows[k];
		if (!r->app || strcmp(r->app, c->app) || strcmp(r->process, c->proc))
			continue;
		c->last_scaled_wall = r->last_scaled_at;
		if (r->down_since) {
			c->down_since = time_from_wall(r->down_since);
			c->down_from = r->down_from;
			c->down_to = r->down_to;
		}
		if (r->panic_since) {
			c->panic.active = true;
			c->panic.since = time_from_wall(r->panic_since).mono;
			c->panic_wall = r->panic_since;
			if (r->calm_since) {
				c->panic.calm = true;
				c->panic.calm_since = time_from_wall(r->calm_since).mono;
				c->calm_wall = r->calm_since;
			}
		}
		c->saved = (struct as_saved){r->last_scaled_at, r->down_since, r->panic_since,
					     r->calm_since, r->down_from, r->down_to};
		free((char *)r->app);
		free((char *)r->process);
		r->app = r->process = NULL;
		return;
	}
}

/* Writes c's state to the store when it differs from what is there. */
static void ctl_save(struct autoscale *as, struct as_ctl *c)
{
	struct as_saved now = {
		.last_scaled = c->last_scaled_wall,
		.down_since = c->down_since.wall,
		.down_from = c->down_since.wall ? c->down_from : 0,
		.down_to = c->down_since.wall ? c->down_to : 0,
		.panic_since = c->panic.active ? c->panic_wall : 0,
		.calm_since = c->panic.active && c->panic.calm ? c->calm_wall : 0,
	};
	if (!memcmp(&now, &c->saved, sizeof(now)) || !as->cfg.store)
		return;
	struct store_autoscale row = {
		.app = c->app, .process = c->proc, .last_scaled_at = now.last_scaled,
		.down_since = now.down_since, .down_from = now.down_from, .down_to = now.down_to,
		.panic_since = now.panic_since, .calm_since = now.calm_since,
	};
	if (store_autoscale_put(as->cfg.store, &row) < 0) {
		log_warn("autoscale: cannot save the state of '%s.%s': %s", c->app, c->proc,
			 store_errmsg(as->cfg.store));
		return;
	}
	c->saved = now;
}

/* Forgets what was measured: the spec asks another question. */
static void ctl_reset(struct as_ctl *c)
{
	c->n = c->head = 0;
	c->have_value = c->have_panic_value = false;
	c->down_since = (struct as_time){0};
	c->panic = (struct autoscale_panic){0};
}

static struct as_sample *ring_push(struct as_ctl *c);

/* A new controller's first sample: the router's counts now, so that the
 * first tick already has a difference. Counts the router took before the
 * autoscaler's first listing since start, or before it routed the process
 * type at all, are all demand it has not seen: the baseline is zero. */
static void ctl_baseline(struct autoscale *as, struct as_ctl *c)
{
	struct router_metrics_proc rp;
	bool routed = router_metrics_get(as->cfg.router, c->app, c->proc, &rp);
	struct as_sample *s = ring_push(c);
	s->t = time_mono_ms();
	s->routed = as->cfg.router != NULL;
	if (routed && as->listed) {
		s->requests = rp.requests;
		memcpy(s->hist, rp.hist, sizeof(s->hist));
	}
}

static void on_spec(void *ctx, const char *app, int release, const struct spec *spec)
{
	struct autoscale *as = ctx;
	for (size_t k = 0; k < spec->n_procs; k++) {
		const struct spec_process *sp = &spec->procs[k];
		if (!sp->autoscale.enabled)
			continue;
		enum as_metric m = metric_of(sp->autoscale.metric);
		struct as_ctl *c = ctl_find(as, app, sp->name);
		if (!c) {
			c = xcalloc(1, sizeof(*c));
			c->app = xstrdup(app);
			c->proc = xstrdup(sp->name);
			c->desired = -1;
			c->last_ready = -1;
			int64_t cap = stable_window(as) / as->cfg.interval_ms + 2;
			c->cap = (size_t)(cap < 4096 ? cap : 4096);
			c->ring = xcalloc(c->cap, sizeof(*c->ring));
			c->metric = m;
			c->target = sp->autoscale.target;
			ctl_adopt(as, c);
			ctl_baseline(as, c);
			as->ctls = xgrow(as->ctls, sizeof(*as->ctls), as->n_ctls + 1, &as->alloc_ctls);
			as->ctls[as->n_ctls++] = c;
		} else if (m != c->metric || c->target != sp->autoscale.target) {
			ctl_reset(c);
		}
		c->metric = m;
		c->min = sp->autoscale.min;
		c->max = sp->autoscale.max;
		c->target = sp->autoscale.target;
		c->panic_threshold = sp->autoscale.panic_threshold;
		c->seen = true;
	}
}

static void zero_gauges(struct autoscale *as, const struct as_ctl *c)
{
	const char *const l[] = {c->app, c->proc};
	if (as->g_desired)
		metrics_set(metrics_series_get(as->g_desired, l), 0);
	if (as->g_panic)
		metrics_set(metrics_series_get(as->g_panic, l), 0);
}

/* Lists the autoscaled process types again when the specs changed since
 * the last listing: new ones get a controller, and the controllers (and
 * stored state) of those that no longer autoscale go. */
static void refresh(struct autoscale *as)
{
	if (!as->cfg.sv)
		return;
	uint64_t gen = supervisor_spec_generation(as->cfg.sv);
	if (as->listed && gen == as->spec_gen)
		return;
	for (size_t k = 0; k < as->n_ctls; k++)
		as->ctls[k]->seen = false;
	supervisor_each_spec(as->cfg.sv, on_spec, as);
	size_t keep = 0;
	for (size_t k = 0; k < as->n_ctls; k++) {
		struct as_ctl *c = as->ctls[k];
		if (c->seen) {
			as->ctls[keep++] = c;
			continue;
		}
		zero_gauges(as, c);
		if (as->cfg.store)
			store_autoscale_delete(as->cfg.store, c->app, c->proc);
		ctl_free(c);
	}
	as->n_ctls = keep;
	if (!as->listed) {
		/* Rows no controller took belong to process types that are gone. */
		for (size_t k = 0; k < as->n_rows; k++) {
			struct store_autoscale *r = &as->rows[k];
			if (r->app && as->cfg.store)
				store_autoscale_delete(as->cfg.store, r->app, r->process);
			free((char *)r->app);
			free((char *)r->process);
		}
		free(as->rows);
		as->rows = NULL;
		as->n_rows = as->alloc_rows = 0;
	}
	as->listed = true;
	as->spec_gen = gen;
}

/* ------------------------------------------------------------------------ */
/* Sampling and windows                                                     */

static struct as_sample *ring_at(struct as_ctl *c, size_t i) /* 0: oldest */
{
	return &c->ring[(c->head + i) % c->cap];
}

static struct as_sample *ring_push(struct as_ctl *c)
{
	struct as_sample *s;
	if (c->n < c->cap) {
		s = ring_at(c, c->n);
		c->n++;
	} else {
		s = &c->ring[c->head];
		c->head = (c->head + 1) % c->cap;
	}
	memset(s, 0, sizeof(*s));
	return s;
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

/* Takes this tick's sample. A counter that went back (the router's entry
 * was replaced) empties the ring first: no difference spans it. */
static void sample(struct autoscale *as, struct as_ctl *c, int64_t now, int ready)
{
	struct router_metrics_proc rp;
	bool routed = router_metrics_get(as->cfg.router, c->app, c->proc, &rp);
	if (c->n > 0) {
		const struct as_sample *last = ring_at(c, c->n - 1);
		if (last->routed && routed && rp.requests < last->requests)
			c->n = c->head = 0;
	}
	struct as_sample *s = ring_push(c);
	s->t = now;
	s->routed = routed;
	s->requests = rp.requests;
	memcpy(s->hist, rp.hist, sizeof(s->hist));
	s->inflight = (double)rp.inflight;
	if (ready > 0 && (c->metric == AS_CPU || c->metric == AS_MEMORY)) {
		double v;
		const char *name = c->metric == AS_CPU ? "paasops_instance_cpu_usage_ratio"
						       : "paasops_instance_resident_memory_bytes";
		if (instance_average(as, c, name, &v)) {
			s->have_res = true;
			s->res = v * ready;
		}
	}
}

/* The value per ready instance (of `ready`, > 0) over the last window_ms,
 * from the samples taken since `from` (monotonic ms) at the earliest.
 * Counters need a sample at the window's start and one at its end; gauges
 * average the samples inside it. False when there is too little. */
static bool window_value(struct as_ctl *c, int64_t now, int64_t window_ms, int64_t interval_ms,
			 int64_t from, int ready, double *out)
{
	if (c->n == 0)
		return false;
	const struct as_sample *last = ring_at(c, c->n - 1);
	/* Timers fire a little late or early: half an interval of slack puts
	 * the sample a window ago at the start (counters), and keeps it out of
	 * the window's average (gauges). */
	int64_t slack = interval_ms / 2;
	const struct as_sample *base = NULL;
	double sum = 0;
	size_t n = 0;
	for (size_t i = 0; i < c->n; i++) {
		const struct as_sample *s = ring_at(c, i);
		if (s->t < from)
			continue;
		if (!base && now - s->t <= window_ms + slack)
			base = s;
		if (now - s->t <= window_ms - slack) {
			if (c->metric == AS_INFLIGHT && s->routed) {
				sum += s->inflight;
				n++;
			} else if ((c->metric == AS_CPU || c->metric == AS_MEMORY) && s->have_res) {
				sum += s->res;
				n++;
			}
		}
	}
	switch (c->metric) {
	case AS_RPS:
	case AS_P95: {
		if (!base || base == last || !base->routed || !last->routed || last->t <= base->t)
			return false;
		if (c->metric == AS_RPS) {
			double secs = (double)(last->t - base->t) / 1000.0;
			*out = (double)(last->requests - base->requests) / secs / ready;
			return true;
		}
		uint64_t d[ROUTER_METRICS_BUCKETS + 1];
		for (size_t k = 0; k <= ROUTER_METRICS_BUCKETS; k++)
			d[k] = last->hist[k] >= base->hist[k] ? last->hist[k] - base->hist[k] : 0;
		size_t nb;
		const double *bounds = router_metrics_bounds(&nb);
		double v = hist_quantile_counts(0.95, bounds, d, nb);
		*out = isnan(v) ? 0 : v; /* no request in the window */
		return true;
	}
	case AS_INFLIGHT:
	case AS_CPU:
	case AS_MEMORY:
		if (n == 0)
			return false;
		*out = sum / (double)n / ready;
		return true;
	case AS_NMETRICS:
		break;
	}
	return false;
}

/* ------------------------------------------------------------------------ */
/* Deciding and applying                                                    */

static void format_value(enum as_metric m, double v, char *buf, size_t size)
{
	if (m == AS_MEMORY || v >= 100)
		snprintf(buf, size, "%.0f", v);
	else
		snprintf(buf, size, "%.3g", v);
}

static void set_gauges(struct autoscale *as, const struct as_ctl *c)
{
	const char *const l[] = {c->app, c->proc};
	if (as->g_desired && c->desired >= 0)
		metrics_set(metrics_series_get(as->g_desired, l), c->desired);
	if (as->g_value && c->have_value)
		metrics_set(metrics_series_get(as->g_value, (const char *const[]){
							   c->app, c->proc, metric_names[c->metric]}),
			    c->value);
	if (as->g_panic)
		metrics_set(metrics_series_get(as->g_panic, l), c->panic.active ? 1 : 0);
}

static void note(struct autoscale *as, struct as_ctl *c, const char *reason)
{
	supervisor_note(as->cfg.sv, c->app, "autoscale", reason);
	log_info("autoscale: %s: %s", c->app, reason);
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
	note(as, c, reason);
	c->last_scaled_wall = time_wall_ms();
	c->down_since = (struct as_time){0};
}

/* Moves the panic state on with this evaluation's panic-window value and
 * records the start and the end of a panic as events. */
static void step_panic(struct autoscale *as, struct as_ctl *c, int64_t now, int ready)
{
	struct autoscale_panic was = c->panic;
	c->panic = autoscale_panic_next(was, ready, c->panic_value, c->target, c->panic_threshold,
					now, stable_window(as));
	if (c->panic.calm && !was.calm)
		c->calm_wall = time_wall_ms() - (now - c->panic.calm_since);
	if (c->panic.active == was.active)
		return;
	char v[40], t[40], pw[32], sw[32], reason[400];
	format_value(c->metric, c->panic_value, v, sizeof(v));
	format_value(c->metric, c->target, t, sizeof(t));
	duration_format(panic_window(as), pw, sizeof(pw));
	duration_format(stable_window(as), sw, sizeof(sw));
	if (c->panic.active) {
		c->panic_wall = time_wall_ms();
		c->down_since = (struct as_time){0};
		snprintf(reason, sizeof(reason),
			 "%s entered panic: %s %s/instance over %s is at least %gx target %s",
			 c->proc, metric_names[c->metric], v, pw, c->panic_threshold, t);
	} else {
		c->panic_wall = c->calm_wall = 0;
		snprintf(reason, sizeof(reason),
			 "%s left panic: %s over %s stayed below %gx target %s for %s", c->proc,
			 metric_names[c->metric], pw, c->panic_threshold, t, sw);
	}
	note(as, c, reason);
}

static void evaluate(struct autoscale *as, struct as_ctl *c, int64_t now)
{
	struct supervisor_proc_state ps;
	if (supervisor_proc_state(as->cfg.sv, c->app, c->proc, &ps) < 0)
		return;
	int current = ps.instances, ready = ps.ready;
	if (ready != c->last_ready) {
		c->last_ready = ready;
		c->ready_since = now;
	}
	sample(as, c, now, ready);
	if (ps.hold) {
		c->down_since = (struct as_time){0};
		ctl_save(as, c);
		return;
	}
	if (c->down_since.wall && current != c->down_from)
		c->down_since = (struct as_time){0}; /* scaled by hand meanwhile: start over */

	if (ready == 0) {
		/* No value per instance: what wakes a process type scaled to zero
		 * is any request since the previous sample. */
		const struct as_sample *a = c->n >= 2 ? ring_at(c, c->n - 2) : NULL;
		const struct as_sample *b = ring_at(c, c->n - 1);
		uint64_t dreq = a && a->routed && b->routed ? b->requests - a->requests : 0;
		if (current == 0 && dreq > 0) {
			int to = autoscale_desired(0, 0, (double)dreq, c->target, c->min, c->max);
			c->desired = to;
			set_gauges(as, c);
			if (to > 0) {
				char why[200];
				snprintf(why, sizeof(why), "%llu requests while scaled to zero",
					 (unsigned long long)dreq);
				scale_to(as, c, 0, to, why);
			}
		}
		ctl_save(as, c);
		return; /* starting, or asleep: nothing to measure per instance */
	}

	/* A latency is not a quantity per instance: it is measured only since
	 * the ready count last changed, or the requests before a scale would
	 * keep asking for more. */
	int64_t from = c->metric == AS_P95 ? c->ready_since : INT64_MIN;
	int64_t iv = as->cfg.interval_ms;
	double sv = 0, pv = 0;
	if (!window_value(c, now, stable_window(as), iv, from, ready, &sv)) {
		ctl_save(as, c);
		return;
	}
	c->have_value = true;
	c->value = sv;
	c->have_panic_value = window_value(c, now, panic_window(as), iv, from, ready, &pv);
	c->panic_value = c->have_panic_value ? pv : sv;
	if (c->have_panic_value)
		step_panic(as, c, now, ready);

	int want_stable = autoscale_desired(current, ready, sv, c->target, c->min, c->max);
	int want = c->panic.active ? autoscale_desired_in_panic(current, ready, sv, c->panic_value,
								 c->target, c->min, c->max)
				   : want_stable;
	c->desired = want;
	set_gauges(as, c);

	char v[40], t[40], why[200];
	format_value(c->metric, c->target, t, sizeof(t));
	if (want > current) {
		bool by_panic = c->panic.active &&
				autoscale_desired(current, ready, c->panic_value, c->target, c->min,
						  c->max) >= want_stable;
		format_value(c->metric, by_panic ? c->panic_value : sv, v, sizeof(v));
		char pw[32];
		duration_format(panic_window(as), pw, sizeof(pw));
		if (current < c->min && want == c->min && !by_panic)
			snprintf(why, sizeof(why), "below min %d", c->min);
		else if (by_panic)
			snprintf(why, sizeof(why), "%s %s/instance above target %s (panic, over %s)",
				 metric_names[c->metric], v, t, pw);
		else
			snprintf(why, sizeof(why), "%s %s/instance above target %s",
				 metric_names[c->metric], v, t);
		scale_to(as, c, current, want, why);
	} else if (want == current) {
		c->down_since = (struct as_time){0};
	} else if (current > c->max) {
		snprintf(why, sizeof(why), "above max %d", c->max);
		scale_to(as, c, current, want, why);
	} else if (!c->down_since.wall) {
		c->down_since = (struct as_time){.mono = now, .wall = time_wall_ms()};
		c->down_to = want;
		c->down_from = current;
	} else {
		if (want > c->down_to)
			c->down_to = want;
		if (now - c->down_since.mono >= as->cfg.scale_down_delay_ms) {
			char delay[32];
			duration_format(as->cfg.scale_down_delay_ms, delay, sizeof(delay));
			format_value(c->metric, sv, v, sizeof(v));
			snprintf(why, sizeof(why), "%s %s/instance below target %s for %s",
				 metric_names[c->metric], v, t, delay);
			scale_to(as, c, current, c->down_to, why);
		}
	}
	ctl_save(as, c);
}

static void on_tick(uv_timer_t *t)
{
	struct autoscale *as = t->data;
	if (as->stopped || supervisor_shutting_down(as->cfg.sv))
		return;
	refresh(as);
	if (as->n_ctls == 0)
		return;
	int64_t now = time_mono_ms();
	for (size_t k = 0; k < as->n_ctls; k++)
		evaluate(as, as->ctls[k], now);
}

/* ------------------------------------------------------------------------ */
/* Start-up state                                                           */

static void on_row(void *ctx, const struct store_autoscale *r)
{
	struct autoscale *as = ctx;
	as->rows = xgrow(as->rows, sizeof(*as->rows), as->n_rows + 1, &as->alloc_rows);
	struct store_autoscale *copy = &as->rows[as->n_rows++];
	*copy = *r;
	copy->app = xstrdup(r->app);
	copy->process = xstrdup(r->process);
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
			"The autoscaled metric per ready instance over the stable window at the last "
			"evaluation, in its unit.",
			METRICS_GAUGE, vl, 3, NULL, 0, false);
		as->g_panic = metrics_family_add(
			reg, "paasops_autoscale_panic",
			"1 while the autoscaler is in panic mode for the process type, else 0.",
			METRICS_GAUGE, pl, 2, NULL, 0, false);
	}
	return as;
}

void autoscale_start(struct autoscale *as)
{
	as->started = true;
	if (as->cfg.store && store_autoscale_each(as->cfg.store, on_row, as) < 0)
		log_warn("autoscale: cannot read the saved state: %s", store_errmsg(as->cfg.store));
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
	as->g_desired = as->g_value = as->g_panic = NULL;
	as->cfg.store = NULL;
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
	for (size_t k = 0; k < as->n_rows; k++) {
		free((char *)as->rows[k].app);
		free((char *)as->rows[k].process);
	}
	free(as->rows);
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
	refresh(as); /* a process type applied since the last tick shows at once */
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
		json_set_num(o, "panic_threshold", c->panic_threshold);
		if (c->have_value)
			json_set_num(o, "current_value", c->value);
		else
			json_set(o, "current_value", json_null());
		if (c->have_value)
			json_set_num(o, "panic_value", c->panic_value);
		else
			json_set(o, "panic_value", json_null());
		if (c->desired >= 0)
			json_set_int(o, "desired", c->desired);
		else
			json_set(o, "desired", json_null());
		json_set_time(o, "last_scaled_at", c->last_scaled_wall);
		json_set_bool(o, "panic", c->panic.active);
		json_set_time(o, "panic_since", c->panic.active ? c->panic_wall : 0);
		json_set_time(o, "scale_down_since", c->down_since.wall);
		if (c->down_since.wall)
			json_set_int(o, "scale_down_to", c->down_to);
		else
			json_set(o, "scale_down_to", json_null());
	}
}
