/* metrics_query.c: functions over the history: raw points, rate, avg, min,
 * max and sum over a sliding window, and quantiles from histogram buckets
 * (Prometheus' histogram_quantile over the rate of each bucket), evaluated
 * at regular steps; optional sum by labels; and the small expression
 * language that alert rules use, fn(name{label="value"}[window]) by (a, b). */
#include "metrics/metrics_internal.h"
#include "core/timeutil.h"
#include "core/util.h"
#include <errno.h>
#include "core/hist.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MX_MAX_STEPS 11000

/* ------------------------------------------------------------------------ */
/* Functions over one window                                                */

/* Increase of a counter over pts[lo..hi], a drop being a reset to 0. */
static double increase(const struct metrics_point *p, size_t lo, size_t hi)
{
	double inc = 0;
	for (size_t k = lo + 1; k <= hi; k++) {
		double d = p[k].v - p[k - 1].v;
		inc += d >= 0 ? d : p[k].v;
	}
	return inc;
}

/* fn over the points with t - w < t_k <= t, which are pts[lo..hi]. */
static double window_value(enum metrics_fn fn, const struct metrics_point *p, size_t lo, size_t hi)
{
	double v;
	switch (fn) {
	case METRICS_FN_RAW:
		return p[hi].v;
	case METRICS_FN_RATE:
	case METRICS_FN_QUANTILE:
		if (hi == lo || p[hi].t_ms == p[lo].t_ms)
			return NAN;
		return increase(p, lo, hi) / ((double)(p[hi].t_ms - p[lo].t_ms) / 1000.0);
	case METRICS_FN_AVG:
	case METRICS_FN_SUM:
		v = 0;
		for (size_t k = lo; k <= hi; k++)
			v += p[k].v;
		return fn == METRICS_FN_AVG ? v / (double)(hi - lo + 1) : v;
	case METRICS_FN_MIN:
	case METRICS_FN_MAX:
		v = p[lo].v;
		for (size_t k = lo + 1; k <= hi; k++)
			if (fn == METRICS_FN_MIN ? p[k].v < v : p[k].v > v)
				v = p[k].v;
		return v;
	}
	return NAN;
}

/* ------------------------------------------------------------------------ */
/* Series selection and grouping                                            */

static const char *label_of(const struct mx_tseries *s, const char *name)
{
	for (size_t k = 0; k < s->n_labels; k++)
		if (!strcmp(s->lnames[k], name))
			return mx_tseries_lvalues(s)[k];
	return NULL;
}

/* name is the interned copy (mx_tsdb_str), so comparing pointers will do. */
static bool selected(const struct mx_tseries *s, const char *name, const struct metrics_query *q)
{
	if (s->name != name)
		return false;
	for (size_t k = 0; k < q->n_match; k++) {
		const char *v = label_of(s, q->match[k].label);
		if (strcmp(v ? v : "", q->match[k].value) != 0)
			return false;
	}
	return !q->keep || q->keep(q->keep_ctx, label_of(s, "app"));
}

/* A group of series summed (or, for quantiles, one histogram). */
struct group {
	char *key;
	size_t n_labels;
	char **names, **values;
	double *sum;     /* [steps], NaN where no member has a value */
	/* quantiles: per distinct bound, the summed bucket rate per step */
	double *bounds;
	double **rates; /* [n_bounds][steps] */
	size_t n_bounds;
};

struct grouping {
	struct mx_map map;
	struct group **v;
	size_t n, alloc;
	size_t steps;
};

/* The group of series s: by q->by when aggregating, else every label but
 * skip (le for quantiles). A by label s does not have (or has empty) is
 * left out of the group's labels, as in Prometheus, where an empty label
 * is no label. */
static struct group *group_of(struct grouping *g, const struct metrics_query *q,
			      const struct mx_tseries *s, const char *skip)
{
	struct strbuf key;
	strbuf_init(&key, 64);
	const char *names[64], *values[64];
	size_t n = 0;
	if (q->aggregate) {
		for (size_t k = 0; k < q->n_by && n < 64; k++) {
			const char *v = label_of(s, q->by[k]);
			if (!v || !*v)
				continue;
			names[n] = q->by[k];
			values[n++] = v;
		}
	} else {
		for (size_t k = 0; k < s->n_labels && n < 64; k++) {
			if (skip && !strcmp(s->lnames[k], skip))
				continue;
			names[n] = s->lnames[k];
			values[n++] = mx_tseries_lvalues(s)[k];
		}
	}
	for (size_t k = 0; k < n; k++) {
		strbuf_adds(&key, names[k]);
		strbuf_addc(&key, '\xff');
		strbuf_adds(&key, values[k]);
		strbuf_addc(&key, '\xff');
	}
	struct group *gr = mx_map_get(&g->map, key.buf, key.len);
	if (gr) {
		strbuf_release(&key);
		return gr;
	}
	gr = xcalloc(1, sizeof(*gr));
	gr->n_labels = n;
	gr->names = xcalloc(n ? n : 1, sizeof(char *));
	gr->values = xcalloc(n ? n : 1, sizeof(char *));
	for (size_t k = 0; k < n; k++) {
		gr->names[k] = xstrdup(names[k]);
		gr->values[k] = xstrdup(values[k]);
	}
	gr->sum = xmalloc((g->steps ? g->steps : 1) * sizeof(double));
	for (size_t k = 0; k < g->steps; k++)
		gr->sum[k] = NAN;
	mx_map_put(&g->map, key.buf, key.len, gr);
	gr->key = strbuf_detach(&key, NULL);
	g->v = xgrow(g->v, sizeof(*g->v), g->n + 1, &g->alloc);
	g->v[g->n++] = gr;
	return gr;
}

static double *group_bound(struct group *gr, double bound, size_t steps)
{
	for (size_t k = 0; k < gr->n_bounds; k++)
		if (gr->bounds[k] == bound)
			return gr->rates[k];
	gr->bounds = xrealloc(gr->bounds, (gr->n_bounds + 1) * sizeof(double));
	gr->rates = xrealloc(gr->rates, (gr->n_bounds + 1) * sizeof(double *));
	gr->bounds[gr->n_bounds] = bound;
	double *r = xmalloc((steps ? steps : 1) * sizeof(double));
	for (size_t k = 0; k < steps; k++)
		r[k] = NAN;
	gr->rates[gr->n_bounds++] = r;
	return r;
}

static void grouping_release(struct grouping *g)
{
	for (size_t k = 0; k < g->n; k++) {
		struct group *gr = g->v[k];
		for (size_t j = 0; j < gr->n_labels; j++) {
			free(gr->names[j]);
			free(gr->values[j]);
		}
		free(gr->names);
		free(gr->values);
		free(gr->sum);
		for (size_t j = 0; j < gr->n_bounds; j++)
			free(gr->rates[j]);
		free(gr->rates);
		free(gr->bounds);
		free(gr->key);
		free(gr);
	}
	free(g->v);
	mx_map_release(&g->map);
}

static void add_into(double *acc, double v)
{
	*acc = isnan(*acc) ? v : *acc + v;
}

/* ------------------------------------------------------------------------ */
/* Results                                                                  */

static struct metrics_result_series *result_add(struct metrics_result *out, size_t *alloc,
						size_t n_labels, char *const *names,
						char *const *values)
{
	out->series = xgrow(out->series, sizeof(*out->series), out->n_series + 1, alloc);
	struct metrics_result_series *rs = &out->series[out->n_series++];
	memset(rs, 0, sizeof(*rs));
	rs->n_labels = n_labels;
	rs->names = xcalloc(n_labels ? n_labels : 1, sizeof(char *));
	rs->values = xcalloc(n_labels ? n_labels : 1, sizeof(char *));
	for (size_t k = 0; k < n_labels; k++) {
		rs->names[k] = xstrdup(names[k]);
		rs->values[k] = xstrdup(values[k]);
	}
	return rs;
}

static void result_point(struct metrics_result_series *rs, size_t *alloc, int64_t t, double v)
{
	rs->points = xgrow(rs->points, sizeof(*rs->points), rs->n_points + 1, alloc);
	rs->points[rs->n_points++] = (struct metrics_point){t, v};
}

static void result_series_release(struct metrics_result_series *rs)
{
	for (size_t j = 0; j < rs->n_labels; j++) {
		free(rs->names[j]);
		free(rs->values[j]);
	}
	free(rs->names);
	free(rs->values);
	free(rs->points);
}

/* Takes back the series result_add() added last when it got no point. */
static void result_drop_if_empty(struct metrics_result *out)
{
	if (out->n_series && !out->series[out->n_series - 1].n_points)
		result_series_release(&out->series[--out->n_series]);
}

void metrics_result_release(struct metrics_result *r)
{
	for (size_t k = 0; k < r->n_series; k++)
		result_series_release(&r->series[k]);
	free(r->series);
	memset(r, 0, sizeof(*r));
}

static int series_cmp(const void *a, const void *b)
{
	const struct metrics_result_series *x = a, *y = b;
	size_t n = x->n_labels < y->n_labels ? x->n_labels : y->n_labels;
	for (size_t k = 0; k < n; k++) {
		int c = strcmp(x->names[k], y->names[k]);
		if (!c)
			c = strcmp(x->values[k], y->values[k]);
		if (c)
			return c;
	}
	return (x->n_labels > y->n_labels) - (x->n_labels < y->n_labels);
}

/* ------------------------------------------------------------------------ */
/* The query                                                                */

int mx_query(const struct mx_tsdb *db, const struct metrics_query *q, int64_t now,
	     struct metrics_result *out, char **err)
{
	memset(out, 0, sizeof(*out));
	if (!q->name || !*q->name) {
		*err = xstrdup("a metric name is required");
		return -EINVAL;
	}
	if (q->end_ms < q->start_ms) {
		*err = xstrdup("end is before start");
		return -EINVAL;
	}
	bool range_raw = q->fn == METRICS_FN_RAW && q->end_ms > q->start_ms;
	if (range_raw && q->aggregate) {
		*err = xstrdup("'by' needs a function: raw points are not aligned in time");
		return -EINVAL;
	}
	if (!range_raw && q->step_ms <= 0) {
		*err = xstrdup("step must be positive");
		return -EINVAL;
	}
	if (q->fn == METRICS_FN_QUANTILE && !(q->quantile >= 0 && q->quantile <= 1)) {
		*err = xstrdup("the quantile must be from 0 to 1");
		return -EINVAL;
	}
	size_t steps = range_raw ? 0 : (size_t)((q->end_ms - q->start_ms) / q->step_ms) + 1;
	if (steps > MX_MAX_STEPS) {
		*err = xasprintf("%zu steps is more than %d: use a larger step", steps, MX_MAX_STEPS);
		return -EINVAL;
	}
	if (db->n_tiers == 0)
		return 0;

	/* The finest tier that still covers the start of the first window. */
	size_t tier = db->n_tiers - 1;
	int64_t w = 0;
	for (size_t t = 0; t < db->n_tiers; t++) {
		int64_t res = db->tiers[t].res_ms;
		int64_t wt = q->window_ms ? q->window_ms : (q->step_ms > 4 * res ? q->step_ms : 4 * res);
		if (range_raw)
			wt = 0;
		if (q->start_ms - wt >= now - db->tiers[t].retention_ms || t == db->n_tiers - 1) {
			tier = t;
			w = wt;
			break;
		}
	}
	out->res_ms = db->tiers[tier].res_ms;
	out->window_ms = w;

	const char *name = q->name;
	char *bucket_name = NULL;
	if (q->fn == METRICS_FN_QUANTILE)
		name = bucket_name = xasprintf("%s_bucket", q->name);

	struct grouping g = {.steps = steps};
	bool grouped = q->aggregate || q->fn == METRICS_FN_QUANTILE;
	size_t alloc_series = 0;
	struct metrics_point *pts = NULL;
	size_t alloc_pts = 0, matched = 0;
	double *vals = xmalloc((steps ? steps : 1) * sizeof(double));

	const char *iname = mx_tsdb_str(db, name);
	for (size_t k = 0; iname && k < db->n; k++) {
		const struct mx_tseries *s = db->all[k];
		if (!selected(s, iname, q))
			continue;
		matched++;
		size_t n = 0;
		mx_tsdb_read(db, s, tier, range_raw ? q->start_ms : q->start_ms - w + 1, q->end_ms, &pts,
			     &n, &alloc_pts);
		if (range_raw) {
			if (!n)
				continue;
			struct metrics_result_series *rs =
				result_add(out, &alloc_series, s->n_labels, s->lnames,
					   mx_tseries_lvalues(s));
			rs->points = pts;
			rs->n_points = n;
			pts = NULL;
			alloc_pts = 0;
			continue;
		}
		/* Slide (t - w, t] over the points. */
		size_t lo = 0, hi = 0, have = 0;
		for (size_t i = 0; i < steps; i++) {
			int64_t t = q->start_ms + (int64_t)i * q->step_ms;
			while (hi < n && pts[hi].t_ms <= t)
				hi++;
			while (lo < hi && pts[lo].t_ms <= t - w)
				lo++;
			vals[i] = lo < hi ? window_value(q->fn, pts, lo, hi - 1) : NAN;
			have += !isnan(vals[i]);
		}
		if (q->fn == METRICS_FN_QUANTILE) {
			const char *le = label_of(s, "le");
			if (!le)
				continue;
			double bound = !strcmp(le, "+Inf") ? INFINITY : strtod(le, NULL);
			struct group *gr = group_of(&g, q, s, "le");
			double *r = group_bound(gr, bound, steps);
			for (size_t i = 0; i < steps; i++)
				if (!isnan(vals[i]))
					add_into(&r[i], vals[i]);
		} else if (grouped) {
			struct group *gr = group_of(&g, q, s, NULL);
			for (size_t i = 0; i < steps; i++)
				if (!isnan(vals[i]))
					add_into(&gr->sum[i], vals[i]);
		} else if (have) {
			struct metrics_result_series *rs =
				result_add(out, &alloc_series, s->n_labels, s->lnames,
					   mx_tseries_lvalues(s));
			size_t pa = 0;
			for (size_t i = 0; i < steps; i++)
				if (!isnan(vals[i]))
					result_point(rs, &pa, q->start_ms + (int64_t)i * q->step_ms, vals[i]);
		}
	}

	for (size_t k = 0; k < g.n; k++) {
		struct group *gr = g.v[k];
		struct metrics_result_series *rs =
			result_add(out, &alloc_series, gr->n_labels, gr->names, gr->values);
		size_t pa = 0;
		if (q->fn != METRICS_FN_QUANTILE) {
			for (size_t i = 0; i < steps; i++)
				if (!isnan(gr->sum[i]))
					result_point(rs, &pa, q->start_ms + (int64_t)i * q->step_ms, gr->sum[i]);
			result_drop_if_empty(out);
			continue;
		}
		/* Sort the bounds (insertion: a handful of buckets). */
		for (size_t a = 1; a < gr->n_bounds; a++)
			for (size_t b = a; b > 0 && gr->bounds[b] < gr->bounds[b - 1]; b--) {
				double tb = gr->bounds[b];
				gr->bounds[b] = gr->bounds[b - 1];
				gr->bounds[b - 1] = tb;
				double *tr = gr->rates[b];
				gr->rates[b] = gr->rates[b - 1];
				gr->rates[b - 1] = tr;
			}
		double *cum = xmalloc((gr->n_bounds ? gr->n_bounds : 1) * sizeof(double));
		for (size_t i = 0; i < steps; i++) {
			bool any = false;
			for (size_t b = 0; b < gr->n_bounds; b++) {
				cum[b] = gr->rates[b][i];
				any |= !isnan(cum[b]);
				if (isnan(cum[b]))
					cum[b] = 0;
			}
			if (!any)
				continue;
			double v = hist_quantile(q->quantile, gr->bounds, cum, gr->n_bounds);
			if (!isnan(v))
				result_point(rs, &pa, q->start_ms + (int64_t)i * q->step_ms, v);
		}
		free(cum);
		result_drop_if_empty(out);
	}
	grouping_release(&g);
	free(pts);
	free(vals);

	if (!matched && q->fn != METRICS_FN_QUANTILE) {
		/* A histogram asked for without a quantile: say what to ask instead. */
		char *b = xasprintf("%s_bucket", q->name);
		bool hist = false;
		for (size_t k = 0; k < db->n && !hist; k++)
			hist = !strcmp(db->all[k]->name, b);
		free(b);
		if (hist) {
			free(bucket_name);
			metrics_result_release(out);
			*err = xasprintf("'%s' is a histogram: use fn=p50, p90, p95 or p99, or the series "
					 "%s_count, %s_sum or %s_bucket",
					 q->name, q->name, q->name, q->name);
			return -EINVAL;
		}
	}
	free(bucket_name);
	if (out->n_series > 1)
		qsort(out->series, out->n_series, sizeof(*out->series), series_cmp);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Expressions                                                              */

#define EXPR_MAX_MATCH 16
#define EXPR_MAX_BY 16

/* What a parsed expression's query points into: one allocation. */
struct expr_store {
	struct metrics_matcher match[EXPR_MAX_MATCH];
	const char *by[EXPR_MAX_BY];
	char arena[];
};

struct expr_parser {
	const char *p, *start;
	char *arena;
	size_t used;
	const char *what; /* what was expected when parsing failed */
};

static void skip_ws(struct expr_parser *ep)
{
	while (*ep->p == ' ' || *ep->p == '\t' || *ep->p == '\n')
		ep->p++;
}

static char *arena_add(struct expr_parser *ep, const char *s, size_t n)
{
	char *d = ep->arena + ep->used;
	memcpy(d, s, n);
	d[n] = '\0';
	ep->used += n + 1;
	return d;
}

static bool ident_char(char c, bool first, bool metric)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       (!first && c >= '0' && c <= '9') || (metric && (c == ':' || (!first && c == '.')));
}

/* An identifier (metric names may hold ':', function names '.'), copied. */
static char *ident(struct expr_parser *ep, bool metric)
{
	skip_ws(ep);
	const char *s = ep->p;
	while (ident_char(*ep->p, ep->p == s, metric))
		ep->p++;
	if (ep->p == s)
		return NULL;
	char *out = arena_add(ep, s, (size_t)(ep->p - s));
	skip_ws(ep);
	return out;
}

/* A double-quoted string with \\, \" and \n escapes, copied unescaped. */
static char *quoted(struct expr_parser *ep)
{
	skip_ws(ep);
	if (*ep->p != '"')
		return NULL;
	ep->p++;
	char *out = ep->arena + ep->used, *w = out;
	while (*ep->p && *ep->p != '"') {
		if (*ep->p == '\\' && ep->p[1]) {
			ep->p++;
			*w++ = *ep->p == 'n' ? '\n' : *ep->p;
			ep->p++;
			continue;
		}
		*w++ = *ep->p++;
	}
	if (*ep->p != '"')
		return NULL;
	ep->p++;
	*w = '\0';
	ep->used += (size_t)(w - out) + 1;
	skip_ws(ep);
	return out;
}

static bool expect(struct expr_parser *ep, char c, const char *what)
{
	skip_ws(ep);
	if (*ep->p != c) {
		ep->what = what;
		return false;
	}
	ep->p++;
	skip_ws(ep);
	return true;
}

int metrics_expr_parse(const char *expr, int64_t at_ms, struct metrics_query *q, char **buf,
		       char **err)
{
	size_t len = strlen(expr);
	struct expr_store *st = xcalloc(1, sizeof(*st) + 2 * len + 16);
	memset(q, 0, sizeof(*q));
	q->start_ms = q->end_ms = at_ms;
	q->step_ms = 1000;
	q->match = st->match;
	q->by = st->by;
	struct expr_parser ep = {expr, expr, st->arena, 0, NULL};
	bool call = false;
	char *id = ident(&ep, true);
	if (!id) {
		ep.what = "a function or metric name";
		goto fail;
	}
	if (*ep.p == '(') {
		call = true;
		if (metrics_fn_parse(id, &q->fn, &q->quantile) < 0) {
			*err = xasprintf("unknown function '%s' (raw, rate, avg, min, max, sum, p50, p90, "
					 "p95, p99, quantile_0.NN)",
					 id);
			free(st);
			return -EINVAL;
		}
		ep.p++;
		if (!(id = ident(&ep, true))) {
			ep.what = "a metric name";
			goto fail;
		}
	}
	q->name = id;
	if (*ep.p == '{') {
		ep.p++;
		skip_ws(&ep);
		while (*ep.p != '}') {
			char *l = ident(&ep, false), *v;
			if (!l || !expect(&ep, '=', "'='") || !(v = quoted(&ep))) {
				ep.what = ep.what ? ep.what : "label=\"value\"";
				goto fail;
			}
			if (q->n_match == EXPR_MAX_MATCH) {
				ep.what = "at most 16 label matchers";
				goto fail;
			}
			st->match[q->n_match++] = (struct metrics_matcher){l, v};
			if (*ep.p == ',')
				ep.p++;
			else if (*ep.p != '}') {
				ep.what = "',' or '}'";
				goto fail;
			}
			skip_ws(&ep);
		}
		ep.p++;
		skip_ws(&ep);
	}
	if (*ep.p == '[') {
		const char *s = ++ep.p;
		while (*ep.p && *ep.p != ']')
			ep.p++;
		if (*ep.p != ']') {
			ep.what = "']'";
			goto fail;
		}
		char *d = arena_add(&ep, s, (size_t)(ep.p - s));
		ep.p++;
		if (duration_parse(d, &q->window_ms) < 0 || q->window_ms <= 0) {
			*err = xasprintf("invalid window '%s' (like 30s, 5m, 1h)", d);
			free(st);
			return -EINVAL;
		}
		skip_ws(&ep);
	}
	if (call && !expect(&ep, ')', "')'"))
		goto fail;
	if (!strncmp(ep.p, "by", 2) && (ep.p[2] == ' ' || ep.p[2] == '(')) {
		ep.p += 2;
		if (!expect(&ep, '(', "'(' after by"))
			goto fail;
		q->aggregate = true;
		while (*ep.p != ')') {
			char *l = ident(&ep, false);
			if (!l || q->n_by == EXPR_MAX_BY) {
				ep.what = "label names";
				goto fail;
			}
			st->by[q->n_by++] = l;
			if (*ep.p == ',')
				ep.p++;
			else if (*ep.p != ')') {
				ep.what = "',' or ')'";
				goto fail;
			}
			skip_ws(&ep);
		}
		ep.p++;
		skip_ws(&ep);
	}
	if (*ep.p) {
		ep.what = "the end of the expression";
		goto fail;
	}
	*buf = (char *)st;
	return 0;
fail:
	*err = xasprintf("invalid expression '%s': expected %s at offset %td", expr, ep.what,
			 ep.p - ep.start);
	free(st);
	return -EINVAL;
}

int metrics_expr_check(const char *expr, char **err)
{
	struct metrics_query q;
	char *buf = NULL;
	int r = metrics_expr_parse(expr, 0, &q, &buf, err);
	if (r == 0)
		r = metrics_name_check(q.name, q.fn, err);
	free(buf);
	return r;
}
