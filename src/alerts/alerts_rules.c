/* alerts_rules.c: where rules come from. The built-in rules (a table, each
 * tunable from the rules file), the rules file itself (YAML through the
 * compat/yaml adapter, every problem reported as FILE:LINE:COL with a "did
 * you mean" for unknown keys), the `alerts:` of app specs, the app metrics a
 * spec may name ("http_p95_seconds") and the annotation templates. */
#include "alerts/alerts_internal.h"
#include "compat/yaml.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "metrics/metrics.h"
#include "spec/spec.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_WINDOW_MS (5 * 60 * 1000)

const char *const al_op_names[] = {[AL_GT] = ">", [AL_GE] = ">=", [AL_LT] = "<",
				   [AL_LE] = "<=", [AL_EQ] = "==", [AL_NE] = "!="};
const char *const al_source_names[] = {[AL_BUILTIN] = "builtin", [AL_CONFIG] = "config",
				       [AL_SPEC] = "spec"};
static const char *const severities[] = {"info", "warning", "critical"};
/* "==" first: the likeliest meaning of a lone "=". */
static const char *const op_choices[] = {"==", "!=", ">", ">=", "<", "<="};
static const char *const fn_names[] = {"raw", "rate", "avg", "min", "max", "sum",
				       "p50", "p90", "p95", "p99"};

bool al_op_holds(enum al_op op, double v, double t)
{
	switch (op) {
	case AL_GT: return v > t;
	case AL_GE: return v >= t;
	case AL_LT: return v < t;
	case AL_LE: return v <= t;
	case AL_EQ: return v == t;
	case AL_NE: return v != t;
	}
	return false;
}

int al_op_parse(const char *s, enum al_op *op)
{
	for (size_t k = 0; k < ARRAY_SIZE(al_op_names); k++) {
		if (!strcmp(s, al_op_names[k])) {
			*op = (enum al_op)k;
			return 0;
		}
	}
	return -EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Rules and lists                                                          */

struct al_rule *al_rule_new(void)
{
	struct al_rule *r = xcalloc(1, sizeof(*r));
	r->keep_firing_ms = -1;
	r->repeat_ms = -1;
	r->enabled = true;
	r->severity = xstrdup("warning");
	return r;
}

static void labels_free(struct al_label *l, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		free(l[k].name);
		free(l[k].value);
	}
	free(l);
}

void al_rule_free(struct al_rule *r)
{
	if (!r)
		return;
	free(r->key);
	free(r->name);
	free(r->app);
	free(r->expr);
	free(r->divide_by);
	free(r->only_if);
	free(r->severity);
	free(r->summary);
	free(r->description);
	labels_free(r->labels, r->n_labels);
	free(r->error);
	free(r);
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

struct al_rule *al_rule_dup(const struct al_rule *r)
{
	struct al_rule *d = xcalloc(1, sizeof(*d));
	*d = *r;
	d->key = dup_or_null(r->key);
	d->name = dup_or_null(r->name);
	d->app = dup_or_null(r->app);
	d->expr = dup_or_null(r->expr);
	d->divide_by = dup_or_null(r->divide_by);
	d->only_if = dup_or_null(r->only_if);
	d->severity = dup_or_null(r->severity);
	d->summary = dup_or_null(r->summary);
	d->description = dup_or_null(r->description);
	d->labels = xcalloc(r->n_labels ? r->n_labels : 1, sizeof(*d->labels));
	for (size_t k = 0; k < r->n_labels; k++) {
		d->labels[k].name = xstrdup(r->labels[k].name);
		d->labels[k].value = xstrdup(r->labels[k].value);
	}
	d->error = NULL;
	d->alerts = NULL;
	d->n_alerts = 0;
	d->keep = false;
	return d;
}

bool al_rule_same_expr(const struct al_rule *a, const struct al_rule *b)
{
	return a->kind == b->kind && str_eq(a->expr, b->expr) && str_eq(a->divide_by, b->divide_by) &&
	       str_eq(a->only_if, b->only_if) && a->complement == b->complement &&
	       a->per_target == b->per_target;
}

void al_rules_add(struct al_rules *l, struct al_rule *r)
{
	l->v = xgrow(l->v, sizeof(*l->v), l->n + 1, &l->alloc);
	l->v[l->n++] = r;
}

void al_rules_release(struct al_rules *l)
{
	for (size_t k = 0; k < l->n; k++)
		al_rule_free(l->v[k]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* ------------------------------------------------------------------------ */
/* Expressions                                                              */

void al_matcher_add(struct strbuf *sb, const char *name, const char *value)
{
	if (sb->len)
		strbuf_addc(sb, ',');
	strbuf_addf(sb, "%s=\"", name);
	for (const char *p = value; *p; p++) {
		if (*p == '"' || *p == '\\')
			strbuf_addc(sb, '\\');
		if (*p == '\n') {
			strbuf_adds(sb, "\\n");
			continue;
		}
		strbuf_addc(sb, *p);
	}
	strbuf_addc(sb, '"');
}

static char *window_text(int64_t ms)
{
	char w[32];
	duration_format(ms, w, sizeof(w));
	return xstrdup(w);
}

/* fn(metric{matchers}[window]) by (by) — each part only when given. */
static char *expr_build(const char *fn, const char *metric, const char *matchers,
			int64_t window_ms, const char *by)
{
	struct strbuf sb;
	strbuf_init(&sb, 128);
	bool call = fn && strcmp(fn, "raw") != 0;
	if (call)
		strbuf_addf(&sb, "%s(", fn);
	strbuf_adds(&sb, metric);
	if (matchers && *matchers)
		strbuf_addf(&sb, "{%s}", matchers);
	if (call || window_ms > 0) {
		char *w = window_text(window_ms > 0 ? window_ms : DEFAULT_WINDOW_MS);
		strbuf_addf(&sb, "[%s]", w);
		free(w);
	}
	if (call)
		strbuf_addc(&sb, ')');
	if (by)
		strbuf_addf(&sb, " by (%s)", by);
	return strbuf_detach(&sb, NULL);
}

/* The app metrics a spec's `metric` may name, beside paasops_* series. */
struct al_alias {
	const char *name;
	const char *metric;
	const char *fn;    /* NULL: raw */
	const char *extra; /* another matcher, or NULL */
	const char *by;    /* NULL: every series */
	const char *over;  /* a ratio: this alias divided by that one */
};

static const struct al_alias aliases[] = {
	{"http_requests_per_second", "paasops_http_requests_total", "rate", NULL, "app, process", NULL},
	{"http_5xx_per_second", "paasops_http_requests_total", "rate", "5xx", "app, process", NULL},
	{"http_5xx_ratio", "paasops_http_requests_total", "rate", "5xx", "app, process",
	 "http_requests_per_second"},
	{"http_p50_seconds", "paasops_http_request_duration_seconds", "p50", NULL, "app, process", NULL},
	{"http_p90_seconds", "paasops_http_request_duration_seconds", "p90", NULL, "app, process", NULL},
	{"http_p95_seconds", "paasops_http_request_duration_seconds", "p95", NULL, "app, process", NULL},
	{"http_p99_seconds", "paasops_http_request_duration_seconds", "p99", NULL, "app, process", NULL},
	{"http_requests_in_flight", "paasops_http_requests_in_flight", NULL, NULL, NULL, NULL},
	{"instances_ready", "paasops_replicas_ready", NULL, NULL, NULL, NULL},
	{"instance_memory_bytes", "paasops_instance_resident_memory_bytes", NULL, NULL, NULL, NULL},
	{"instance_memory_ratio", "paasops_instance_resident_memory_bytes", NULL, NULL, NULL,
	 "instance_memory_limit"},
	{"instance_cpu_ratio", "paasops_instance_cpu_usage_ratio", NULL, NULL, NULL, NULL},
	{"instance_restarts_per_second", "paasops_instance_restarts_total", "rate", NULL, NULL, NULL},
	/* Only as the denominator of instance_memory_ratio. */
	{"instance_memory_limit", "paasops_instance_memory_limit_bytes", NULL, NULL, NULL, NULL},
};

static const struct al_alias *alias_find(const char *name)
{
	for (size_t k = 0; k < ARRAY_SIZE(aliases); k++)
		if (!strcmp(aliases[k].name, name))
			return &aliases[k];
	return NULL;
}

/* A likely intended app metric for an unknown name, or NULL. */
static const char *alias_suggest(const char *name)
{
	const char *names[ARRAY_SIZE(aliases)];
	for (size_t k = 0; k < ARRAY_SIZE(aliases); k++)
		names[k] = aliases[k].name;
	return str_suggest(name, names, ARRAY_SIZE(names));
}

static char *alias_one(const struct al_alias *al, const char *matchers, int64_t window_ms)
{
	struct strbuf m;
	strbuf_init(&m, 64);
	strbuf_adds(&m, matchers ? matchers : "");
	if (al->extra)
		al_matcher_add(&m, "code", al->extra);
	char *e = expr_build(al->fn, al->metric, m.buf, al->fn ? window_ms : 0, al->by);
	strbuf_release(&m);
	return e;
}

int al_alias_expr(const char *name, const char *matchers, int64_t window_ms, char **expr,
		  char **divide_by)
{
	const struct al_alias *al = alias_find(name);
	if (!al)
		return -ENOENT;
	*expr = alias_one(al, matchers, window_ms);
	*divide_by = al->over ? alias_one(alias_find(al->over), matchers, window_ms) : NULL;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Built-in rules                                                           */

struct al_builtin {
	const char *key;  /* under builtin: in the rules file */
	const char *name; /* alertname */
	enum al_kind kind;
	const char *expr, *divide_by; /* %s: the window */
	const char *only_if;
	enum al_op only_if_op;
	double only_if_value;
	bool complement, per_target;
	enum al_op op;
	double value;
	int64_t for_ms, window_ms, expire_ms;
	const char *severity, *summary, *description;
};

static const struct al_builtin builtins[] = {
	{"crash_loop", "InstanceCrashLooping", AL_METRIC,
	 "paasops_instance_state{state=\"crashed\"} by (app, process, instance)", NULL, NULL, 0, 0,
	 false, false, AL_GT, 0, 0, 0, 0, "critical", "{{ $labels.instance }} is crash-looping",
	 "It exited 5 times within 10 s and is not restarted until `paasops restart` or a new "
	 "deploy."},
	{"health_check", "HealthCheckFailing", AL_HEALTH, NULL, NULL, NULL, 0, 0, false, false, AL_GT,
	 0, 0, 0, 0, "warning", "{{ $labels.instance }} fails its health check",
	 "{{ $labels.reason }}"},
	{"no_ready_instance", "NoReadyInstance", AL_METRIC, "paasops_replicas_ready", NULL,
	 "paasops_replicas_desired", AL_GT, 0, false, false, AL_LT, 1, 30000, 0, 0, "critical",
	 "{{ $labels.app }} {{ $labels.process }} has no ready instance",
	 "None of its wanted instances passes its health check; requests to it fail."},
	{"http_5xx_ratio", "HighErrorRate", AL_METRIC,
	 "rate(paasops_http_requests_total{code=\"5xx\"}[%s]) by (app, process)",
	 "rate(paasops_http_requests_total[%s]) by (app, process)", NULL, 0, 0, false, false, AL_GT,
	 0.05, 60000, DEFAULT_WINDOW_MS, 0, "warning",
	 "{{ $labels.app }} {{ $labels.process }}: {{ $percent }} of requests failed with 5xx",
	 "More than {{ $threshold }} of its requests over {{ $window }} answered 5xx."},
	{"http_p95_target", "HighLatency", AL_METRIC,
	 "p95(paasops_http_request_duration_seconds[%s]) by (app, process)", NULL, NULL, 0, 0, false,
	 true, AL_GT, 0, 5 * 60000, DEFAULT_WINDOW_MS, 0, "warning",
	 "{{ $labels.app }} {{ $labels.process }}: p95 latency {{ $value }}s is above its target "
	 "{{ $threshold }}s",
	 "The 95th percentile of its response times over {{ $window }} exceeds the target its spec "
	 "declares (autoscale metric p95)."},
	{"instance_memory", "InstanceMemoryHigh", AL_METRIC, "paasops_instance_resident_memory_bytes",
	 "paasops_instance_memory_limit_bytes", NULL, 0, 0, false, false, AL_GT, 0.9, 60000, 0, 0,
	 "warning", "{{ $labels.instance }} uses {{ $percent }} of its memory limit",
	 "Near its limit the kernel reclaims its memory and then kills it."},
	{"data_disk", "DataDiskFull", AL_METRIC, "paasops_host_disk_free_bytes",
	 "paasops_host_disk_total_bytes", NULL, 0, 0, true, false, AL_GT, 0.9, 60000, 0, 0,
	 "critical", "the data dir's file system is {{ $percent }} full",
	 "{{ $labels.path }}: the store, logs and metrics history need room to write."},
	{"deploy_failed", "DeployFailed", AL_DEPLOY, NULL, NULL, NULL, 0, 0, false, false, AL_GT, 0,
	 0, 0, 3600000, "warning", "deploy of {{ $labels.app }} v{{ $labels.version }} {{ $labels.result }}",
	 "{{ $labels.reason }}"},
};

static struct al_rule *builtin_rule(const struct al_builtin *b, int64_t window_ms)
{
	struct al_rule *r = al_rule_new();
	r->key = xasprintf("builtin:%s", b->key);
	r->name = xstrdup(b->name);
	r->source = AL_BUILTIN;
	r->kind = b->kind;
	char *w = window_text(window_ms ? window_ms : DEFAULT_WINDOW_MS);
	if (b->expr)
		r->expr = xasprintf(b->expr, w);
	if (b->divide_by)
		r->divide_by = xasprintf(b->divide_by, w);
	free(w);
	r->only_if = dup_or_null(b->only_if);
	r->only_if_op = b->only_if_op;
	r->only_if_value = b->only_if_value;
	r->complement = b->complement;
	r->per_target = b->per_target;
	r->op = b->op;
	r->value = b->value;
	r->for_ms = b->for_ms;
	r->window_ms = window_ms;
	r->expire_ms = b->expire_ms;
	free(r->severity);
	r->severity = xstrdup(b->severity);
	r->summary = xstrdup(b->summary);
	r->description = xstrdup(b->description);
	return r;
}

/* ------------------------------------------------------------------------ */
/* Reading YAML with messages                                               */

struct rerr {
	int line, col;
	size_t seq;
	char *msg;
};

/* Problems are collected and reported in file order. */
struct rctx {
	const char *file;
	struct rerr *errs;
	size_t n_errs, alloc_errs;
};

static void rfail(struct rctx *c, const struct yaml_value *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void rfail(struct rctx *c, const struct yaml_value *at, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	c->errs = xgrow(c->errs, sizeof(*c->errs), c->n_errs + 1, &c->alloc_errs);
	c->errs[c->n_errs] = (struct rerr){at->line, at->col, c->n_errs, msg};
	c->n_errs++;
}

static int rerr_cmp(const void *p, const void *q)
{
	const struct rerr *a = p, *b = q;
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	if (a->col != b->col)
		return a->col < b->col ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Every problem, one "FILE:LINE:COL: message" per line; frees them. */
static char *rerrs_take(struct rctx *c)
{
	qsort(c->errs, c->n_errs, sizeof(*c->errs), rerr_cmp);
	struct strbuf sb;
	strbuf_init(&sb, 256);
	for (size_t k = 0; k < c->n_errs; k++) {
		strbuf_addf(&sb, "%s%s:%d:%d: %s", k ? "\n" : "", c->file, c->errs[k].line,
			    c->errs[k].col, c->errs[k].msg);
		free(c->errs[k].msg);
	}
	free(c->errs);
	c->errs = NULL;
	c->n_errs = 0;
	return strbuf_detach(&sb, NULL);
}

/* How a value looks in a message: 'text' or "a mapping". */
static const char *shown(const struct yaml_value *v, char *buf, size_t size)
{
	if (v->kind != YAML_VALUE_SCALAR)
		return v->kind == YAML_VALUE_MAPPING ? "a mapping" : "a list";
	snprintf(buf, size, "'%.60s%s'", v->str, strlen(v->str) > 60 ? "..." : "");
	return buf;
}

/* Walks the mapping m whose keys are keys[0..n): unknown keys (with a
 * likely one), non-scalar and duplicate keys are reported; found[i] is the
 * pair of keys[i] or NULL. */
static bool rfields(struct rctx *c, const struct yaml_value *m, const char *where,
		    const char *const *keys, size_t n, const struct yaml_pair **found)
{
	for (size_t i = 0; i < n; i++)
		found[i] = NULL;
	if (m->kind != YAML_VALUE_MAPPING) {
		char b[96];
		rfail(c, m, "expected a mapping%s, found %s", where, shown(m, b, sizeof(b)));
		return false;
	}
	for (size_t i = 0; i < m->n_pairs; i++) {
		const struct yaml_value *k = m->pairs[i].key;
		if (k->kind != YAML_VALUE_SCALAR) {
			rfail(c, k, "keys must be strings%s", where);
			continue;
		}
		size_t j;
		for (j = 0; j < n && strcmp(keys[j], k->str); j++)
			;
		if (j == n) {
			const char *hint = str_suggest(k->str, keys, n);
			rfail(c, k, "unknown key '%s'%s%s%s%s", k->str, where,
			      hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
			continue;
		}
		if (found[j]) {
			rfail(c, k, "duplicate key '%s'%s (first at %d:%d)", k->str, where,
			      found[j]->key->line, found[j]->key->col);
			continue;
		}
		found[j] = &m->pairs[i];
	}
	return true;
}

static bool rscalar(struct rctx *c, const struct yaml_pair *f, const char *where, const char *what)
{
	if (yaml_value_is_null(f->value) && f->value->plain) {
		rfail(c, f->key, "'%s'%s has no value (expected %s)", f->key->str, where, what);
		return false;
	}
	if (f->value->kind != YAML_VALUE_SCALAR || strlen(f->value->str) != f->value->len) {
		char b[96];
		rfail(c, f->value, "'%s'%s must be %s, found %s", f->key->str, where, what,
		      shown(f->value, b, sizeof(b)));
		return false;
	}
	return true;
}

static bool rstring(struct rctx *c, const struct yaml_pair *f, const char *where, char **out)
{
	if (!f || !rscalar(c, f, where, "a string"))
		return false;
	if (!*f->value->str) {
		rfail(c, f->value, "'%s'%s is empty", f->key->str, where);
		return false;
	}
	free(*out);
	*out = xstrdup(f->value->str);
	return true;
}

static bool rnumber(struct rctx *c, const struct yaml_pair *f, const char *where, double *out)
{
	if (!f || !rscalar(c, f, where, "a number"))
		return false;
	const char *s = f->value->str;
	char *end = NULL;
	double d = strtod(s, &end);
	if (!f->value->plain || end == s || *end || !isfinite(d) ||
	    strspn(s, "0123456789+-.eE") != strlen(s)) {
		char b[96];
		rfail(c, f->value, "'%s'%s must be a number, found %s", f->key->str, where,
		      shown(f->value, b, sizeof(b)));
		return false;
	}
	*out = d;
	return true;
}

static bool rduration(struct rctx *c, const struct yaml_pair *f, const char *where,
		      int64_t min_ms, int64_t *out)
{
	if (!f || !rscalar(c, f, where, "a duration"))
		return false;
	int64_t ms;
	char b[96];
	if (duration_parse(f->value->str, &ms) < 0) {
		rfail(c, f->value,
		      "'%s'%s is not a valid duration: found %s (use 500ms, 10s, 5m, 2h, 1d)",
		      f->key->str, where, shown(f->value, b, sizeof(b)));
		return false;
	}
	if (ms < min_ms) {
		char m[48];
		duration_min_text(min_ms, m, sizeof(m));
		rfail(c, f->value, "'%s'%s must be %s, found %s", f->key->str, where, m,
		      shown(f->value, b, sizeof(b)));
		return false;
	}
	*out = ms;
	return true;
}

static bool rbool(struct rctx *c, const struct yaml_pair *f, const char *where, bool *out)
{
	if (!f || !rscalar(c, f, where, "true or false"))
		return false;
	const char *s = f->value->str;
	if (f->value->plain && (!strcmp(s, "true") || !strcmp(s, "false"))) {
		*out = s[0] == 't';
		return true;
	}
	char b[96];
	rfail(c, f->value, "'%s'%s must be true or false, found %s", f->key->str, where,
	      shown(f->value, b, sizeof(b)));
	return false;
}

static bool rchoice(struct rctx *c, const struct yaml_pair *f, const char *where,
		    const char *const *choices, size_t n, const char **out)
{
	if (!f)
		return false;
	struct strbuf list;
	strbuf_init(&list, 64);
	for (size_t i = 0; i < n; i++)
		strbuf_addf(&list, "%s'%s'", i == 0 ? "" : i + 1 == n ? " or " : ", ", choices[i]);
	bool ok = false;
	if (rscalar(c, f, where, "a string")) {
		for (size_t i = 0; i < n && !ok; i++)
			if (!strcmp(choices[i], f->value->str)) {
				*out = choices[i];
				ok = true;
			}
		if (!ok && !f->value->plain && !*f->value->str && !strcmp(f->key->str, "op")) {
			rfail(c, f->key, "'op'%s is empty: quote the operator, e.g. op: \">\"", where);
		} else if (!ok) {
			const char *hint = str_suggest(f->value->str, choices, n);
			char b[96];
			rfail(c, f->value, "'%s'%s must be one of %s, found %s%s%s%s", f->key->str, where,
			      list.buf, shown(f->value, b, sizeof(b)), hint ? " (did you mean '" : "",
			      hint ? hint : "", hint ? "'?)" : "");
		}
	}
	strbuf_release(&list);
	return ok;
}

static bool label_name_ok(const char *s)
{
	if (!*s || (*s >= '0' && *s <= '9') || !strncmp(s, "__", 2))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '_'))
			return false;
	return true;
}

/* A mapping of label names to strings. */
static void rlabels(struct rctx *c, const struct yaml_pair *f, const char *where,
		    struct al_label **out, size_t *n_out)
{
	if (!f)
		return;
	const struct yaml_value *m = f->value;
	char b[96];
	if (m->kind != YAML_VALUE_MAPPING) {
		rfail(c, m, "'%s'%s must be a mapping of label names to values, found %s", f->key->str,
		      where, shown(m, b, sizeof(b)));
		return;
	}
	*out = xcalloc(m->n_pairs ? m->n_pairs : 1, sizeof(**out));
	for (size_t i = 0; i < m->n_pairs; i++) {
		const struct yaml_value *k = m->pairs[i].key, *v = m->pairs[i].value;
		if (k->kind != YAML_VALUE_SCALAR || !label_name_ok(k->str)) {
			rfail(c, k, "invalid label name %s in '%s'%s: use letters, digits and '_', not "
				    "starting with a digit or '__'",
			      shown(k, b, sizeof(b)), f->key->str, where);
			continue;
		}
		if (!strcmp(k->str, "alertname") || !strcmp(k->str, "severity")) {
			rfail(c, k, "label '%s' in '%s'%s is set by the rule: use %s", k->str,
			      f->key->str, where, k->str[0] == 'a' ? "'name'" : "'severity'");
			continue;
		}
		bool dup = false;
		for (size_t j = 0; j < *n_out && !dup; j++)
			dup = !strcmp((*out)[j].name, k->str);
		if (dup) {
			rfail(c, k, "duplicate label '%s' in '%s'%s", k->str, f->key->str, where);
			continue;
		}
		if (v->kind != YAML_VALUE_SCALAR || strlen(v->str) != v->len) {
			rfail(c, v, "label '%s' in '%s'%s must be a string, found %s", k->str,
			      f->key->str, where, shown(v, b, sizeof(b)));
			continue;
		}
		(*out)[*n_out].name = xstrdup(k->str);
		(*out)[*n_out].value = xstrdup(v->str);
		(*n_out)++;
	}
}

/* An expression that metrics_expr_check() accepts: one that can have a
 * value. */
static bool rexpr(struct rctx *c, const struct yaml_pair *f, const char *where, char **out)
{
	char *e = NULL;
	if (!rstring(c, f, where, &e))
		return false;
	char *err = NULL;
	if (metrics_expr_check(e, &err) < 0) {
		rfail(c, f->value, "'%s'%s: %s", f->key->str, where, err);
		free(err);
		free(e);
		return false;
	}
	free(*out);
	*out = e;
	return true;
}

static bool alert_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr("_.-", *s)))
			return false;
	return true;
}

/* ------------------------------------------------------------------------ */
/* The rules file                                                           */

static const char *const top_keys[] = {"evaluation_interval", "keep_firing_for",
				       "repeat_interval",     "alertmanager_resend",
				       "external_url",        "builtin",
				       "rules"};
enum { T_INTERVAL, T_KEEP, T_REPEAT, T_RESEND, T_URL, T_BUILTIN, T_RULES, T_N };

static const char *const tune_keys[] = {"enabled", "value",  "for",    "keep_firing_for",
					"repeat_interval", "severity", "window", "expire",
					"labels",  "summary", "description"};
enum { B_ENABLED, B_VALUE, B_FOR, B_KEEP, B_REPEAT, B_SEVERITY, B_WINDOW, B_EXPIRE, B_LABELS,
       B_SUMMARY, B_DESCRIPTION, B_N };

static const char *const rule_keys[] = {
	"name", "app", "expr", "metric", "fn", "window", "match", "by", "divide_by", "only_if",
	"op", "value", "for", "keep_firing_for", "repeat_interval", "severity", "labels",
	"summary", "description"};
enum { R_NAME, R_APP, R_EXPR, R_METRIC, R_FN, R_WINDOW, R_MATCH, R_BY, R_DIVIDE, R_ONLY_IF,
       R_OP, R_VALUE, R_FOR, R_KEEP, R_REPEAT, R_SEVERITY, R_LABELS, R_SUMMARY, R_DESCRIPTION,
       R_N };

/* Keys both rules and tuned built-ins have. */
static void rcommon(struct rctx *c, const char *where, const struct yaml_pair *f_for,
		    const struct yaml_pair *f_keep, const struct yaml_pair *f_repeat,
		    const struct yaml_pair *f_sev, const struct yaml_pair *f_labels,
		    const struct yaml_pair *f_sum, const struct yaml_pair *f_desc, struct al_rule *r)
{
	rduration(c, f_for, where, 0, &r->for_ms);
	rduration(c, f_keep, where, 0, &r->keep_firing_ms);
	rduration(c, f_repeat, where, 0, &r->repeat_ms);
	const char *sev;
	if (rchoice(c, f_sev, where, severities, ARRAY_SIZE(severities), &sev)) {
		free(r->severity);
		r->severity = xstrdup(sev);
	}
	if (f_labels) {
		labels_free(r->labels, r->n_labels);
		r->labels = NULL;
		r->n_labels = 0;
		rlabels(c, f_labels, where, &r->labels, &r->n_labels);
	}
	rstring(c, f_sum, where, &r->summary);
	rstring(c, f_desc, where, &r->description);
}

static void parse_builtins(struct rctx *c, const struct yaml_pair *bf, struct al_rules *out)
{
	const struct yaml_pair *tuned[ARRAY_SIZE(builtins)] = {0};
	if (bf) {
		const char *keys[ARRAY_SIZE(builtins)];
		for (size_t k = 0; k < ARRAY_SIZE(builtins); k++)
			keys[k] = builtins[k].key;
		rfields(c, bf->value, " in 'builtin'", keys, ARRAY_SIZE(builtins), tuned);
	}
	for (size_t k = 0; k < ARRAY_SIZE(builtins); k++) {
		const struct al_builtin *b = &builtins[k];
		const struct yaml_pair *f[B_N] = {0};
		char where[96];
		snprintf(where, sizeof(where), " in built-in rule '%s'", b->key);
		if (tuned[k] && !rfields(c, tuned[k]->value, where, tune_keys, B_N, f))
			continue;
		int64_t window = b->window_ms;
		if (f[B_WINDOW]) {
			if (!b->window_ms)
				rfail(c, f[B_WINDOW]->key, "'window'%s: this rule has no window", where);
			else
				rduration(c, f[B_WINDOW], where, 1, &window);
		}
		struct al_rule *r = builtin_rule(b, window);
		rbool(c, f[B_ENABLED], where, &r->enabled);
		if (f[B_VALUE] && (b->kind != AL_METRIC || b->per_target))
			rfail(c, f[B_VALUE]->key, "'value'%s: this rule has no threshold%s", where,
			      b->per_target ? " (it is each app's target)" : "");
		else
			rnumber(c, f[B_VALUE], where, &r->value);
		if (f[B_EXPIRE] && b->kind != AL_DEPLOY)
			rfail(c, f[B_EXPIRE]->key, "'expire'%s: only deploy_failed expires", where);
		else
			rduration(c, f[B_EXPIRE], where, 0, &r->expire_ms);
		rcommon(c, where, f[B_FOR], f[B_KEEP], f[B_REPEAT], f[B_SEVERITY], f[B_LABELS],
			f[B_SUMMARY], f[B_DESCRIPTION], r);
		if (r->enabled)
			al_rules_add(out, r);
		else
			al_rule_free(r);
	}
}

/* "by: [app, process]" or "by: app" into "app, process". */
static bool rby(struct rctx *c, const struct yaml_pair *f, const char *where, char **out)
{
	const struct yaml_value *v = f->value;
	struct strbuf sb;
	strbuf_init(&sb, 32);
	size_t n = v->kind == YAML_VALUE_SEQUENCE ? v->n_items : 1;
	bool ok = true;
	for (size_t i = 0; i < n && ok; i++) {
		const struct yaml_value *it = v->kind == YAML_VALUE_SEQUENCE ? v->items[i] : v;
		char b[96];
		if (it->kind != YAML_VALUE_SCALAR || !label_name_ok(it->str)) {
			rfail(c, it, "'by'%s must be a list of label names, found %s", where,
			      shown(it, b, sizeof(b)));
			ok = false;
			break;
		}
		strbuf_addf(&sb, "%s%s", i ? ", " : "", it->str);
	}
	if (ok)
		*out = strbuf_detach(&sb, NULL);
	strbuf_release(&sb);
	return ok;
}

static void parse_only_if(struct rctx *c, const struct yaml_pair *f, const char *where,
			  struct al_rule *r)
{
	static const char *const keys[] = {"expr", "op", "value"};
	const struct yaml_pair *g[3];
	char in[160];
	snprintf(in, sizeof(in), " in 'only_if'%.140s", where);
	if (!rfields(c, f->value, in, keys, 3, g))
		return;
	for (size_t k = 0; k < 3; k++)
		if (!g[k])
			rfail(c, f->value, "missing required key '%s'%s", keys[k], in);
	const char *op;
	rexpr(c, g[0], in, &r->only_if);
	if (rchoice(c, g[1], in, op_choices, ARRAY_SIZE(op_choices), &op))
		al_op_parse(op, &r->only_if_op);
	rnumber(c, g[2], in, &r->only_if_value);
}

static struct al_rule *parse_rule(struct rctx *c, const struct yaml_value *item, size_t idx)
{
	char where[128];
	const struct yaml_value *nv = yaml_value_get(item, "name");
	if (nv && nv->kind == YAML_VALUE_SCALAR && *nv->str)
		snprintf(where, sizeof(where), " in rule '%.60s'", nv->str);
	else
		snprintf(where, sizeof(where), " in rule %zu", idx + 1);
	const struct yaml_pair *f[R_N];
	if (!rfields(c, item, where, rule_keys, R_N, f))
		return NULL;
	struct al_rule *r = al_rule_new();
	r->source = AL_CONFIG;
	r->kind = AL_METRIC;
	static const int required[] = {R_NAME, R_OP, R_VALUE};
	for (size_t k = 0; k < ARRAY_SIZE(required); k++)
		if (!f[required[k]])
			rfail(c, item, "missing required key '%s'%s", rule_keys[required[k]], where);
	if (rstring(c, f[R_NAME], where, &r->name) && !alert_name_ok(r->name))
		rfail(c, f[R_NAME]->value,
		      "invalid rule name '%s': use 1-63 letters, digits, '_', '.' and '-'", r->name);
	if (r->name)
		r->key = xasprintf("config:%s", r->name);
	if (rstring(c, f[R_APP], where, &r->app) && !spec_valid_name(r->app))
		rfail(c, f[R_APP]->value, "invalid app name '%s'%s", r->app, where);

	/* What it evaluates: expr, or metric with fn, window, match and by. */
	if (!f[R_EXPR] == !f[R_METRIC])
		rfail(c, item, "%s'expr' or 'metric'%s", f[R_EXPR] ? "use either " : "missing ", where);
	if (f[R_EXPR]) {
		static const int exclusive[] = {R_FN, R_WINDOW, R_MATCH, R_BY};
		for (size_t k = 0; k < ARRAY_SIZE(exclusive); k++)
			if (f[exclusive[k]])
				rfail(c, f[exclusive[k]]->key,
				      "'%s'%s goes with 'metric', not 'expr' (write it into the expression)",
				      rule_keys[exclusive[k]], where);
		rexpr(c, f[R_EXPR], where, &r->expr);
		if (r->app && r->expr)
			rfail(c, f[R_APP]->key, "'app'%s goes with 'metric', not 'expr'", where);
	} else if (f[R_METRIC]) {
		char *metric = NULL, *by = NULL;
		const char *fn = NULL;
		int64_t window = 0;
		struct al_label *match = NULL;
		size_t n_match = 0;
		rstring(c, f[R_METRIC], where, &metric);
		rchoice(c, f[R_FN], where, fn_names, ARRAY_SIZE(fn_names), &fn);
		rduration(c, f[R_WINDOW], where, 1, &window);
		rlabels(c, f[R_MATCH], where, &match, &n_match);
		if (f[R_BY])
			rby(c, f[R_BY], where, &by);
		struct strbuf m;
		strbuf_init(&m, 64);
		if (r->app)
			al_matcher_add(&m, "app", r->app);
		for (size_t k = 0; k < n_match; k++)
			al_matcher_add(&m, match[k].name, match[k].value);
		if (metric && alias_find(metric)) {
			if (fn || by)
				rfail(c, f[fn ? R_FN : R_BY]->key,
				      "'%s'%s cannot be used with the app metric '%s'", fn ? "fn" : "by",
				      where, metric);
			al_alias_expr(metric, m.buf, window, &r->expr, &r->divide_by);
		} else if (metric) {
			r->expr = expr_build(fn, metric, m.buf, window, by);
			char *err = NULL;
			const char *hint = str_starts_with(metric, "paasops_") ? NULL : alias_suggest(metric);
			if (hint) {
				rfail(c, f[R_METRIC]->value,
				      "'metric'%s: unknown metric '%s' (did you mean '%s'?)", where, metric,
				      hint);
			} else if (metrics_expr_check(r->expr, &err) < 0) {
				rfail(c, f[R_METRIC]->value, "'metric'%s: %s", where, err);
				free(err);
			}
		}
		r->window_ms = window ? window : fn && strcmp(fn, "raw") ? DEFAULT_WINDOW_MS : 0;
		strbuf_release(&m);
		labels_free(match, n_match);
		free(metric);
		free(by);
	}
	if (f[R_DIVIDE])
		rexpr(c, f[R_DIVIDE], where, &r->divide_by);
	if (f[R_ONLY_IF])
		parse_only_if(c, f[R_ONLY_IF], where, r);
	const char *op;
	if (rchoice(c, f[R_OP], where, op_choices, ARRAY_SIZE(op_choices), &op))
		al_op_parse(op, &r->op);
	rnumber(c, f[R_VALUE], where, &r->value);
	rcommon(c, where, f[R_FOR], f[R_KEEP], f[R_REPEAT], f[R_SEVERITY], f[R_LABELS],
		f[R_SUMMARY], f[R_DESCRIPTION], r);
	return r;
}

static void parse_rules(struct rctx *c, const struct yaml_pair *lf, struct al_rules *out)
{
	const struct yaml_value *l = lf->value;
	if (yaml_value_is_null(l) && l->plain)
		return;
	if (l->kind != YAML_VALUE_SEQUENCE) {
		char b[96];
		rfail(c, l, "'rules' must be a list of rules, found %s", shown(l, b, sizeof(b)));
		return;
	}
	size_t first = out->n;
	for (size_t i = 0; i < l->n_items; i++) {
		struct al_rule *r = parse_rule(c, l->items[i], i);
		if (!r)
			continue;
		for (size_t k = first; k < out->n && r->name; k++) {
			if (str_eq(out->v[k]->name, r->name)) {
				const struct yaml_value *nv = yaml_value_get(l->items[i], "name");
				rfail(c, nv, "duplicate rule name '%s'", r->name);
				break;
			}
		}
		al_rules_add(out, r);
	}
}

int al_rules_parse(const char *text, size_t len, const char *filename, struct al_settings *set,
		   struct al_rules *out, char **err)
{
	set->interval_ms = set->keep_firing_ms = set->repeat_ms = set->resend_ms = -1;
	set->external_url = NULL;
	struct rctx c = {.file = filename ? filename : "alerts.yaml"};
	struct yaml_value *root = NULL;
	const struct yaml_pair *f[T_N] = {0};
	if (text) {
		root = yaml_value_load(text, len, c.file, err);
		if (!root)
			return -EINVAL;
		if (!(yaml_value_is_null(root) && root->plain))
			rfields(&c, root, " at the top level", top_keys, T_N, f);
	}
	rduration(&c, f[T_INTERVAL], "", 100, &set->interval_ms);
	rduration(&c, f[T_KEEP], "", 0, &set->keep_firing_ms);
	rduration(&c, f[T_REPEAT], "", 0, &set->repeat_ms);
	rduration(&c, f[T_RESEND], "", 1000, &set->resend_ms);
	if (rstring(&c, f[T_URL], "", &set->external_url) &&
	    !str_starts_with(set->external_url, "http://") &&
	    !str_starts_with(set->external_url, "https://"))
		rfail(&c, f[T_URL]->value, "'external_url' must start with http:// or https://");
	struct al_rules got = {0};
	parse_builtins(&c, f[T_BUILTIN], &got);
	if (f[T_RULES])
		parse_rules(&c, f[T_RULES], &got);
	yaml_value_free(root);
	if (c.n_errs) {
		al_rules_release(&got);
		free(set->external_url);
		set->external_url = NULL;
		*err = rerrs_take(&c);
		return -EINVAL;
	}
	for (size_t k = 0; k < got.n; k++)
		al_rules_add(out, got.v[k]);
	free(got.v);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* App specs                                                                */

void al_rules_from_spec(const char *app, const struct spec *s, struct al_rules *out)
{
	for (size_t k = 0; k < s->n_alerts; k++) {
		const struct spec_alert *sa = &s->alerts[k];
		enum al_op op;
		if (!sa->name || !sa->metric || !sa->op || al_op_parse(sa->op, &op) < 0)
			continue;
		struct strbuf m;
		strbuf_init(&m, 64);
		al_matcher_add(&m, "app", app);
		for (size_t j = 0; j < sa->n_match; j++)
			al_matcher_add(&m, sa->match[j].key, sa->match[j].value);
		struct al_rule *r = al_rule_new();
		if (al_alias_expr(sa->metric, m.buf, sa->window_ms, &r->expr, &r->divide_by) < 0)
			r->expr = expr_build(sa->fn, sa->metric, m.buf, sa->window_ms, NULL);
		strbuf_release(&m);
		char *err = NULL;
		if (metrics_expr_check(r->expr, &err) < 0) {
			log_warn("app '%s': alert '%s' skipped: %s", app, sa->name, err);
			free(err);
			al_rule_free(r);
			continue;
		}
		r->key = xasprintf("spec:%s:%s", app, sa->name);
		r->name = xstrdup(sa->name);
		r->source = AL_SPEC;
		r->kind = AL_METRIC;
		r->app = xstrdup(app);
		r->op = op;
		r->value = sa->value;
		r->for_ms = sa->for_ms;
		r->keep_firing_ms = sa->keep_firing_ms;
		const struct al_alias *al = alias_find(sa->metric);
		r->window_ms = sa->window_ms ? sa->window_ms
			       : (al ? al->fn != NULL : sa->fn && strcmp(sa->fn, "raw")) ? DEFAULT_WINDOW_MS
											: 0;
		free(r->severity);
		r->severity = xstrdup(sa->severity ? sa->severity : "warning");
		r->summary = sa->summary ? xstrdup(sa->summary)
					 : xasprintf("%s: %s is {{ $value }} (%s %g)", app, sa->metric,
						     sa->op, sa->value);
		r->description = dup_or_null(sa->description);
		al_rules_add(out, r);
	}
}

/* ------------------------------------------------------------------------ */
/* Templates                                                                */

static void add_value(struct strbuf *out, double v)
{
	if (isnan(v))
		strbuf_adds(out, "NaN");
	else if (fabs(v) >= 1e4 && fabs(v) < 1e15)
		strbuf_addf(out, "%.0f", v);
	else
		strbuf_addf(out, "%.4g", v);
}

static const char *label_in(const struct al_label *l, size_t n, const char *name, size_t len)
{
	for (size_t k = 0; k < n; k++)
		if (strlen(l[k].name) == len && !strncmp(l[k].name, name, len))
			return l[k].value;
	return NULL;
}

void al_render(const char *tmpl, double value, double threshold, int64_t window_ms,
	       const struct al_label *labels, size_t n_labels, const struct al_label *extra,
	       size_t n_extra, struct strbuf *out)
{
	const char *p = tmpl;
	while (*p) {
		const char *open = strstr(p, "{{");
		const char *close = open ? strstr(open + 2, "}}") : NULL;
		if (!open || !close) {
			strbuf_adds(out, p);
			return;
		}
		strbuf_add(out, p, (size_t)(open - p));
		const char *s = open + 2, *e = close;
		while (s < e && *s == ' ')
			s++;
		while (e > s && e[-1] == ' ')
			e--;
		size_t n = (size_t)(e - s);
		const char *lv = NULL;
		if (n == 6 && !strncmp(s, "$value", 6)) {
			add_value(out, value);
		} else if (n == 8 && !strncmp(s, "$percent", 8)) {
			strbuf_addf(out, "%.1f%%", value * 100);
		} else if (n == 10 && !strncmp(s, "$threshold", 10)) {
			add_value(out, threshold);
		} else if (n == 7 && !strncmp(s, "$window", 7)) {
			char w[32];
			duration_format(window_ms, w, sizeof(w));
			strbuf_adds(out, window_ms ? w : "-");
		} else if (n > 8 && !strncmp(s, "$labels.", 8)) {
			lv = label_in(labels, n_labels, s + 8, n - 8);
			if (!lv)
				lv = label_in(extra, n_extra, s + 8, n - 8);
			strbuf_adds(out, lv ? lv : "");
		} else {
			strbuf_add(out, open, (size_t)(close + 2 - open));
		}
		p = close + 2;
	}
}
