/* alerts.c: the evaluation engine (see alerts.h). Every interval: sync the
 * rules of app specs with the supervisor's current releases, evaluate each
 * rule into a set of (labels, value) samples, step each alert through the
 * state table, then hand the batch of notifications to every notifier.
 * Also: event conditions, the history ring, the state file and the JSON
 * views of the API. */
#include "alerts/alerts_internal.h"
#include "compat/crypto.h"
#include "compat/httpc.h"
#include "compat/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "deploy/deploy_webhook.h"
#include "metrics/metrics.h"
#include "spec/spec.h"
#include "store/store.h"
#include "supervisor/supervisor.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_INTERVAL_MS 1000
#define DEFAULT_KEEP_FIRING_MS 30000
#define DEFAULT_REPEAT_MS (4 * 3600 * 1000LL)
#define DEFAULT_RESEND_MS 60000
#define RESOLVED_RESEND_MS (15 * 60 * 1000) /* Alertmanager hears of resolved alerts this long */
#define SAVE_EVERY_MS 5000
#define TEST_TIMEOUT_MS 10000
#define STATE_VERSION 1

const char *const al_state_names[] = {[AL_PENDING] = "pending", [AL_FIRING] = "firing",
				      [AL_RESOLVED] = "resolved"};
const char *const al_notice_names[] = {[AL_NOTE_FIRING] = "firing",
				       [AL_NOTE_REMINDER] = "reminder",
				       [AL_NOTE_RESOLVED] = "resolved"};

/* A condition an event set, read by HEALTH and DEPLOY rules. */
struct al_cond {
	enum al_kind kind;
	char *key; /* the instance (HEALTH) or the app (DEPLOY) */
	struct al_label *labels, *extra;
	size_t n_labels, n_extra;
	int64_t since;
	double value;
	/* An evaluation saw it; cleared: it no longer holds, and goes once seen
	 * (so that a failure shorter than the interval still fires). */
	bool seen, cleared;
	bool restored; /* from the state file, not yet checked against the supervisor */
	struct al_cond *next;
};

/* An app's p95 target, from its spec. */
struct al_target {
	char *app, *process;
	double seconds;
};

struct al_app {
	char *name;
	const void *spec; /* compared, never dereferenced */
	int release;
	bool seen;
};

struct alerts {
	uv_loop_t *loop;
	struct metrics *metrics;
	struct supervisor *sv;
	char *state_path, *external_url, *secret;
	int64_t interval_ms, keep_firing_ms, repeat_ms, resend_ms;
	int64_t (*clock)(void *ctx);
	int (*eval)(void *ctx, const char *expr, int64_t at_ms, struct metrics_result *out,
		    char **err);
	alerts_notice_cb notice;
	void *test_ctx;

	struct al_rules rules;
	struct al_alert **table; /* by fp, chained through hnext */
	size_t n_buckets, n_active;
	struct al_alert *restored; /* from the state file, until the first evaluation */
	bool restored_attached;
	struct al_alert **history; /* ring of ALERTS_HISTORY_MAX, oldest at hist_head */
	size_t hist_head, hist_n;
	struct al_alert *graveyard; /* no longer referenced once the batch is out */
	struct al_cond *conds;
	struct al_target *targets;
	size_t n_targets, alloc_targets;
	struct al_app *apps;
	size_t n_apps, alloc_apps;
	struct al_note *notes;
	size_t n_notes, alloc_notes;

	struct al_notifier notifiers[ALERTS_MAX_NOTIFIERS];
	size_t n_notifiers;
	struct httpc *http; /* test notifications */
	uv_timer_t *timer;
	struct save_job *job; /* the state file write in flight */
	int64_t last_resend;
	bool dirty, saving, save_again, stopped;
	int64_t last_save;
	uint64_t evaluations;
	double last_eval_seconds;
	/* The module's own metrics (NULL without a metrics module). */
	struct metrics_series *m_firing, *m_pending, *m_eval;
	struct metrics_family *m_sent, *m_failed, *m_dropped;
};

static void self_metrics_register(struct alerts *a);
static void self_metrics_update(struct alerts *a);

static int64_t wall_clock(void *ctx)
{
	return time_wall_ms();
}

static int64_t now_ms(struct alerts *a)
{
	return a->clock(a->test_ctx);
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */

static char *read_file(const char *path, size_t *len, char **err)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		*err = xasprintf("cannot read alert rules '%s': %s", path, strerror(errno));
		return NULL;
	}
	struct strbuf sb;
	strbuf_init(&sb, 4096);
	char buf[16384];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && sb.len <= SPEC_MAX_BYTES)
		strbuf_add(&sb, buf, n);
	fclose(f);
	if (sb.len > SPEC_MAX_BYTES) {
		strbuf_release(&sb);
		*err = xasprintf("alert rules '%s' are larger than %d bytes", path, SPEC_MAX_BYTES);
		return NULL;
	}
	return strbuf_detach(&sb, len);
}

void alerts_config_defaults(struct alerts_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->interval_ms = cfg->keep_firing_ms = cfg->repeat_ms = cfg->resend_ms = -1;
}

void alerts_config_release(struct alerts_config *cfg)
{
	free(cfg->rules_file);
	free(cfg->external_url);
	free(cfg->secret);
	for (size_t k = 0; k < cfg->n_notifiers; k++)
		free(cfg->notifiers[k].url);
	alerts_config_defaults(cfg);
}

static bool http_url(const char *s)
{
	return (str_starts_with(s, "http://") && s[7]) || (str_starts_with(s, "https://") && s[8]);
}

int alerts_config_parse(struct alerts_config *cfg, const char *flag, const char *value,
			char **err)
{
	static const struct {
		const char *flag;
		enum alerts_notifier_kind kind;
	} urls[] = {{"alertmanager", ALERTS_ALERTMANAGER},
		    {"alert-webhook", ALERTS_WEBHOOK},
		    {"alert-slack", ALERTS_SLACK}};
	for (size_t k = 0; k < ARRAY_SIZE(urls); k++) {
		if (strcmp(flag, urls[k].flag))
			continue;
		if (!http_url(value)) {
			*err = xasprintf("invalid --%s '%s' (an http:// or https:// URL)", flag, value);
			return -EINVAL;
		}
		if (cfg->n_notifiers == ALERTS_MAX_NOTIFIERS) {
			*err = xasprintf("too many notifiers (at most %d)", ALERTS_MAX_NOTIFIERS);
			return -EINVAL;
		}
		cfg->notifiers[cfg->n_notifiers].kind = urls[k].kind;
		cfg->notifiers[cfg->n_notifiers++].url = xstrdup(value);
		return 0;
	}
	if (!strcmp(flag, "alert-rules")) {
		/* Checked now, so that a bad file stops the daemon before it starts anything. */
		size_t len;
		char *text = read_file(value, &len, err);
		if (!text)
			return -EINVAL;
		struct al_settings set;
		struct al_rules rules = {0};
		int r = al_rules_parse(text, len, value, &set, &rules, err);
		free(text);
		free(set.external_url);
		al_rules_release(&rules);
		if (r < 0)
			return r;
		free(cfg->rules_file);
		cfg->rules_file = xstrdup(value);
		return 0;
	}
	if (!strcmp(flag, "alert-external-url")) {
		if (!http_url(value)) {
			*err = xasprintf("invalid --alert-external-url '%s' (an http:// or https:// URL)",
					 value);
			return -EINVAL;
		}
		free(cfg->external_url);
		cfg->external_url = xstrdup(value);
		return 0;
	}
	if (!strcmp(flag, "alert-secret-file")) {
		FILE *f = fopen(value, "re");
		char buf[4096];
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
		if (f)
			fclose(f);
		buf[n] = '\0';
		buf[strcspn(buf, "\r\n")] = '\0';
		if (!*buf) {
			*err = xasprintf("cannot read a secret from --alert-secret-file '%s'", value);
			return -EINVAL;
		}
		free(cfg->secret);
		cfg->secret = xstrdup(buf);
		return 0;
	}
	static const char *const durations[] = {"alert-interval", "alert-keep-firing-for",
						"alert-repeat-interval"};
	int64_t *fields[] = {&cfg->interval_ms, &cfg->keep_firing_ms, &cfg->repeat_ms};
	for (size_t k = 0; k < ARRAY_SIZE(durations); k++) {
		if (strcmp(flag, durations[k]))
			continue;
		int64_t ms;
		int64_t min = k == 0 ? 100 : 0;
		if (duration_parse(value, &ms) < 0 || ms < min) {
			*err = xasprintf("invalid --%s '%s' (a duration like 500ms, 10s, 5m%s)", flag,
					 value, k == 0 ? "; at least 100ms" : "");
			return -EINVAL;
		}
		*fields[k] = ms;
		return 0;
	}
	*err = xasprintf("unknown alerts flag '%s'", flag);
	return -EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Alerts and the table                                                     */

void al_alert_free(struct al_alert *x)
{
	if (!x)
		return;
	free(x->rule_key);
	free(x->name);
	free(x->severity);
	free(x->fp);
	for (size_t k = 0; k < x->n_labels; k++) {
		free(x->labels[k].name);
		free(x->labels[k].value);
	}
	free(x->labels);
	free(x->summary);
	free(x->description);
	free(x);
}

const char *al_alert_label(const struct al_alert *x, const char *name)
{
	for (size_t k = 0; k < x->n_labels; k++)
		if (!strcmp(x->labels[k].name, name))
			return x->labels[k].value;
	return NULL;
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ULL;
	return h;
}

static void table_grow(struct alerts *a)
{
	size_t nb = a->n_buckets ? a->n_buckets * 2 : 64;
	struct al_alert **t = xcalloc(nb, sizeof(*t));
	for (size_t k = 0; k < a->n_buckets; k++) {
		for (struct al_alert *x = a->table[k], *next; x; x = next) {
			next = x->hnext;
			size_t b = hash_str(x->fp) & (nb - 1);
			x->hnext = t[b];
			t[b] = x;
		}
	}
	free(a->table);
	a->table = t;
	a->n_buckets = nb;
}

static struct al_alert *table_find(struct alerts *a, const char *fp)
{
	if (!a->n_buckets)
		return NULL;
	for (struct al_alert *x = a->table[hash_str(fp) & (a->n_buckets - 1)]; x; x = x->hnext)
		if (!strcmp(x->fp, fp))
			return x;
	return NULL;
}

/* Makes x active under rule r. */
static void table_add(struct alerts *a, struct al_rule *r, struct al_alert *x)
{
	if (a->n_active >= a->n_buckets)
		table_grow(a);
	size_t b = hash_str(x->fp) & (a->n_buckets - 1);
	x->hnext = a->table[b];
	a->table[b] = x;
	a->n_active++;
	x->rule = r;
	x->rnext = r->alerts;
	r->alerts = x;
	r->n_alerts++;
}

/* Takes x out of the table and its rule's list (it is then the caller's). */
static void table_remove(struct alerts *a, struct al_alert *x)
{
	for (struct al_alert **p = &a->table[hash_str(x->fp) & (a->n_buckets - 1)]; *p;
	     p = &(*p)->hnext) {
		if (*p == x) {
			*p = x->hnext;
			break;
		}
	}
	a->n_active--;
	if (x->rule) {
		for (struct al_alert **p = &x->rule->alerts; *p; p = &(*p)->rnext) {
			if (*p == x) {
				*p = x->rnext;
				break;
			}
		}
		x->rule->n_alerts--;
	}
	x->rule = NULL;
	x->hnext = x->rnext = NULL;
}

static void history_push(struct alerts *a, struct al_alert *x)
{
	if (!a->history)
		a->history = xcalloc(ALERTS_HISTORY_MAX, sizeof(*a->history));
	if (a->hist_n == ALERTS_HISTORY_MAX) {
		struct al_alert *old = a->history[a->hist_head];
		old->hnext = a->graveyard; /* a note of this batch may still point at it */
		a->graveyard = old;
		a->history[a->hist_head] = x;
		a->hist_head = (a->hist_head + 1) % ALERTS_HISTORY_MAX;
		return;
	}
	a->history[(a->hist_head + a->hist_n) % ALERTS_HISTORY_MAX] = x;
	a->hist_n++;
}

static void note_add(struct alerts *a, enum al_notice_kind kind, struct al_alert *x)
{
	a->notes = xgrow(a->notes, sizeof(*a->notes), a->n_notes + 1, &a->alloc_notes);
	a->notes[a->n_notes++] = (struct al_note){kind, x};
	a->dirty = true;
}

/* ------------------------------------------------------------------------ */
/* The state machine                                                        */

static int64_t keep_firing_of(struct alerts *a, const struct al_alert *x)
{
	return x->rule && x->rule->keep_firing_ms >= 0 ? x->rule->keep_firing_ms : a->keep_firing_ms;
}

static int64_t repeat_of(struct alerts *a, const struct al_alert *x)
{
	return x->rule && x->rule->repeat_ms >= 0 ? x->rule->repeat_ms : a->repeat_ms;
}

static void fire(struct alerts *a, struct al_alert *x, int64_t now)
{
	x->state = AL_FIRING;
	x->fired_at = now;
	x->last_sent = now;
	x->clear_since = 0;
	note_add(a, AL_NOTE_FIRING, x);
}

/* Firing → resolved: into the history, announced. */
static void resolve(struct alerts *a, struct al_alert *x, int64_t now)
{
	table_remove(a, x);
	x->state = AL_RESOLVED;
	x->resolved_at = now;
	history_push(a, x);
	note_add(a, AL_NOTE_RESOLVED, x);
}

/* Pending → inactive: forgotten without a word, as Prometheus does. */
static void drop(struct alerts *a, struct al_alert *x, int64_t now)
{
	table_remove(a, x);
	al_alert_free(x);
	a->dirty = true;
}

static void pending_true(struct alerts *a, struct al_alert *x, int64_t now)
{
	if (now - x->active_at >= (x->rule ? x->rule->for_ms : 0))
		fire(a, x, now);
}

static void firing_true(struct alerts *a, struct al_alert *x, int64_t now)
{
	x->clear_since = 0;
	int64_t repeat = repeat_of(a, x);
	if (repeat > 0 && now - x->last_sent >= repeat) {
		x->last_sent = now;
		note_add(a, AL_NOTE_REMINDER, x);
	}
}

/* Flap damping: a firing alert resolves only after staying clear for
 * keep_firing_for; coming back meanwhile continues the same alert. */
static void firing_false(struct alerts *a, struct al_alert *x, int64_t now)
{
	if (!x->clear_since)
		x->clear_since = now;
	if (now - x->clear_since >= keep_firing_of(a, x))
		resolve(a, x, now);
}

typedef void (*al_step_fn)(struct alerts *a, struct al_alert *x, int64_t now);

/* What an evaluation does to an alert: steps[state][condition holds]. */
static const al_step_fn steps[2][2] = {
	[AL_PENDING] = {[false] = drop, [true] = pending_true},
	[AL_FIRING] = {[false] = firing_false, [true] = firing_true},
};

static void step(struct alerts *a, struct al_alert *x, bool holds, int64_t now)
{
	steps[x->state][holds](a, x, now);
}

/* ------------------------------------------------------------------------ */
/* Samples: one label set and value of a rule                               */

static int label_cmp(const void *p, const void *q)
{
	return strcmp(((const struct al_label *)p)->name, ((const struct al_label *)q)->name);
}

/* Adds or replaces a label in a growable array. */
static void labels_set(struct al_label **l, size_t *n, size_t *alloc, const char *name,
		       const char *value)
{
	for (size_t k = 0; k < *n; k++) {
		if (!strcmp((*l)[k].name, name)) {
			free((*l)[k].value);
			(*l)[k].value = xstrdup(value);
			return;
		}
	}
	*l = xgrow(*l, sizeof(**l), *n + 1, alloc);
	(*l)[*n].name = xstrdup(name);
	(*l)[*n].value = xstrdup(value);
	(*n)++;
}

/* "name=value\x1f..." of labels sorted by name. */
static char *labels_key(const char *const *names, const char *const *values, size_t n)
{
	size_t *order = xmalloc((n ? n : 1) * sizeof(*order));
	for (size_t k = 0; k < n; k++)
		order[k] = k;
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(names[order[j]], names[order[j - 1]]) < 0; j--) {
			size_t t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	struct strbuf sb;
	strbuf_init(&sb, 64);
	for (size_t k = 0; k < n; k++)
		strbuf_addf(&sb, "%s=%s\x1f", names[order[k]], values[order[k]]);
	free(order);
	return strbuf_detach(&sb, NULL);
}

static void render(struct al_alert *x, const struct al_rule *r, const struct al_label *extra,
		   size_t n_extra)
{
	struct strbuf sb;
	strbuf_init(&sb, 128);
	free(x->summary);
	x->summary = NULL;
	if (r->summary) {
		al_render(r->summary, x->value, x->threshold, r->window_ms, x->labels, x->n_labels,
			  extra, n_extra, &sb);
		x->summary = strbuf_detach(&sb, NULL);
	}
	free(x->description);
	x->description = NULL;
	if (r->description) {
		al_render(r->description, x->value, x->threshold, r->window_ms, x->labels,
			  x->n_labels, extra, n_extra, &sb);
		x->description = strbuf_detach(&sb, NULL);
	}
	strbuf_release(&sb);
}

/* A sample of rule r whose condition holds: finds or makes its alert and
 * steps it. names/values are the series' labels. */
static void observe(struct alerts *a, struct al_rule *r, const char *const *names,
		    const char *const *values, size_t n, const struct al_label *extra,
		    size_t n_extra, double value, double threshold, int64_t now)
{
	struct al_label *l = NULL;
	size_t nl = 0, alloc = 0;
	for (size_t k = 0; k < n; k++)
		labels_set(&l, &nl, &alloc, names[k], values[k]);
	if (r->app)
		labels_set(&l, &nl, &alloc, "app", r->app);
	for (size_t k = 0; k < r->n_labels; k++)
		labels_set(&l, &nl, &alloc, r->labels[k].name, r->labels[k].value);
	labels_set(&l, &nl, &alloc, "alertname", r->name);
	labels_set(&l, &nl, &alloc, "severity", r->severity);
	qsort(l, nl, sizeof(*l), label_cmp);
	struct strbuf fp;
	strbuf_init(&fp, 128);
	strbuf_addf(&fp, "%s\x1e", r->key);
	for (size_t k = 0; k < nl; k++)
		strbuf_addf(&fp, "%s=%s\x1f", l[k].name, l[k].value);
	struct al_alert *x = table_find(a, fp.buf);
	if (x) {
		strbuf_release(&fp);
		for (size_t k = 0; k < nl; k++) {
			free(l[k].name);
			free(l[k].value);
		}
		free(l);
	} else {
		x = xcalloc(1, sizeof(*x));
		x->fp = strbuf_detach(&fp, NULL);
		x->rule_key = xstrdup(r->key);
		x->name = xstrdup(r->name);
		x->severity = xstrdup(r->severity);
		x->labels = l;
		x->n_labels = nl;
		x->state = AL_PENDING;
		x->active_at = now;
		table_add(a, r, x);
		a->dirty = true;
	}
	x->seen = true;
	x->value = value;
	x->threshold = threshold;
	render(x, r, extra, n_extra);
	step(a, x, true, now);
}

/* ------------------------------------------------------------------------ */
/* Evaluating rules                                                         */

static int eval_expr(struct alerts *a, const char *expr, int64_t now, struct metrics_result *out,
		     char **err)
{
	if (a->eval)
		return a->eval(a->test_ctx, expr, now, out, err);
	memset(out, 0, sizeof(*out));
	if (!a->metrics)
		return 0;
	return metrics_eval(a->metrics, expr, now, out, err);
}

/* One value per label set of an expression's result, for joining. */
struct keyed {
	char *key;
	double v;
};

static int keyed_cmp(const void *p, const void *q)
{
	return strcmp(((const struct keyed *)p)->key, ((const struct keyed *)q)->key);
}

static char *series_key(const struct metrics_result_series *s)
{
	return labels_key((const char *const *)s->names, (const char *const *)s->values, s->n_labels);
}

static int keyed_eval(struct alerts *a, const char *expr, int64_t now, struct keyed **out,
		      size_t *n, char **err)
{
	struct metrics_result res;
	*out = NULL;
	*n = 0;
	if (eval_expr(a, expr, now, &res, err) < 0)
		return -EINVAL;
	*out = xcalloc(res.n_series ? res.n_series : 1, sizeof(**out));
	for (size_t k = 0; k < res.n_series; k++) {
		if (!res.series[k].n_points)
			continue;
		(*out)[*n].key = series_key(&res.series[k]);
		(*out)[(*n)++].v = res.series[k].points[0].v;
	}
	qsort(*out, *n, sizeof(**out), keyed_cmp);
	metrics_result_release(&res);
	return 0;
}

static void keyed_free(struct keyed *k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(k[i].key);
	free(k);
}

static const struct keyed *keyed_find(const struct keyed *k, size_t n, const char *key)
{
	struct keyed probe = {(char *)key, 0};
	return n ? bsearch(&probe, k, n, sizeof(*k), keyed_cmp) : NULL;
}

static const char *series_label(const struct metrics_result_series *s, const char *name)
{
	for (size_t k = 0; k < s->n_labels; k++)
		if (!strcmp(s->names[k], name))
			return s->values[k];
	return NULL;
}

static bool target_of(struct alerts *a, const char *app, const char *process, double *t)
{
	for (size_t k = 0; k < a->n_targets; k++) {
		if (str_eq(a->targets[k].app, app) && str_eq(a->targets[k].process, process)) {
			*t = a->targets[k].seconds;
			return true;
		}
	}
	return false;
}

static void rule_error(struct al_rule *r, char *err)
{
	if (!str_eq(r->error, err) && err)
		log_warn("alert rule '%s': %s", r->key, err);
	free(r->error);
	r->error = err;
}

static void eval_metric_rule(struct alerts *a, struct al_rule *r, int64_t now)
{
	if (r->per_target && !a->n_targets)
		return;
	struct metrics_result res;
	struct keyed *div = NULL, *guard = NULL;
	size_t n_div = 0, n_guard = 0;
	char *err = NULL;
	/* The divisor and the guard first: when either has no series, no
	 * series of the expression can match (the memory rule divides by
	 * limits most instances do not have), so it is not evaluated. */
	if ((r->divide_by && keyed_eval(a, r->divide_by, now, &div, &n_div, &err) < 0) ||
	    (r->only_if && keyed_eval(a, r->only_if, now, &guard, &n_guard, &err) < 0)) {
		keyed_free(div, n_div);
		rule_error(r, err);
		return;
	}
	if ((div && !n_div) || (guard && !n_guard)) {
		keyed_free(div, n_div);
		keyed_free(guard, n_guard);
		rule_error(r, NULL);
		return;
	}
	if (eval_expr(a, r->expr, now, &res, &err) < 0) {
		keyed_free(div, n_div);
		keyed_free(guard, n_guard);
		rule_error(r, err);
		return;
	}
	rule_error(r, NULL);
	for (size_t k = 0; k < res.n_series; k++) {
		const struct metrics_result_series *s = &res.series[k];
		if (!s->n_points)
			continue;
		double v = s->points[0].v;
		if (div || guard) {
			char *key = series_key(s);
			const struct keyed *d = div ? keyed_find(div, n_div, key) : NULL;
			const struct keyed *g = guard ? keyed_find(guard, n_guard, key) : NULL;
			free(key);
			if (div)
				v = d && d->v != 0 ? v / d->v : NAN;
			if (guard && !(g && al_op_holds(r->only_if_op, g->v, r->only_if_value)))
				continue;
		}
		if (isnan(v))
			continue;
		if (r->complement)
			v = 1 - v;
		double threshold = r->value;
		if (r->per_target &&
		    !target_of(a, series_label(s, "app"), series_label(s, "process"), &threshold))
			continue;
		if (al_op_holds(r->op, v, threshold))
			observe(a, r, (const char *const *)s->names, (const char *const *)s->values,
				s->n_labels, NULL, 0, v, threshold, now);
	}
	metrics_result_release(&res);
	keyed_free(div, n_div);
	keyed_free(guard, n_guard);
}

static void cond_free(struct al_cond *c)
{
	for (size_t k = 0; k < c->n_labels; k++) {
		free(c->labels[k].name);
		free(c->labels[k].value);
	}
	for (size_t k = 0; k < c->n_extra; k++) {
		free(c->extra[k].name);
		free(c->extra[k].value);
	}
	free(c->labels);
	free(c->extra);
	free(c->key);
	free(c);
}

static void eval_event_rule(struct alerts *a, struct al_rule *r, int64_t now)
{
	for (struct al_cond **p = &a->conds; *p;) {
		struct al_cond *c = *p;
		if (c->kind != r->kind) {
			p = &c->next;
			continue;
		}
		if ((c->cleared && c->seen) || (r->expire_ms > 0 && now - c->since >= r->expire_ms)) {
			*p = c->next;
			cond_free(c);
			continue;
		}
		c->seen = true;
		const char *names[8], *values[8];
		size_t n = 0;
		for (size_t k = 0; k < c->n_labels && n < 8; k++, n++) {
			names[n] = c->labels[k].name;
			values[n] = c->labels[k].value;
		}
		observe(a, r, names, values, n, c->extra, c->n_extra, c->value, r->value, now);
		p = &c->next;
	}
}

static void eval_rule(struct alerts *a, struct al_rule *r, int64_t now)
{
	for (struct al_alert *x = r->alerts; x; x = x->rnext)
		x->seen = false;
	if (r->kind == AL_METRIC)
		eval_metric_rule(a, r, now);
	else
		eval_event_rule(a, r, now);
	for (struct al_alert *x = r->alerts, *next; x; x = next) {
		next = x->rnext;
		if (!x->seen)
			step(a, x, false, now);
	}
}

/* ------------------------------------------------------------------------ */
/* Rules of app specs                                                       */

/* Resolves the firing alerts of r, forgets its pending ones, frees it. */
static void rule_retire(struct alerts *a, struct al_rule *r, int64_t now)
{
	while (r->alerts) {
		struct al_alert *x = r->alerts;
		if (x->state == AL_FIRING)
			resolve(a, x, now);
		else
			drop(a, x, now);
	}
	al_rule_free(r);
}

static struct al_rule *rule_find(struct alerts *a, const char *key, size_t *idx)
{
	for (size_t k = 0; k < a->rules.n; k++) {
		if (!strcmp(a->rules.v[k]->key, key)) {
			if (idx)
				*idx = k;
			return a->rules.v[k];
		}
	}
	return NULL;
}

static void rule_drop_at(struct alerts *a, size_t idx, int64_t now)
{
	struct al_rule *r = a->rules.v[idx];
	memmove(&a->rules.v[idx], &a->rules.v[idx + 1], (a->rules.n - idx - 1) * sizeof(*a->rules.v));
	a->rules.n--;
	rule_retire(a, r, now);
}

/* Replaces the spec rules and targets of app with those of spec (NULL: the
 * app is gone). A rule that keeps its key and expression keeps its alerts. */
static void app_rules_set(struct alerts *a, const char *app, const struct spec *spec, int64_t now)
{
	struct al_rules fresh = {0};
	if (spec)
		al_rules_from_spec(app, spec, &fresh);
	for (size_t k = 0; k < fresh.n; k++) {
		struct al_rule *nr = fresh.v[k];
		size_t idx;
		struct al_rule *old = rule_find(a, nr->key, &idx);
		if (old && al_rule_same_expr(old, nr)) {
			nr->alerts = old->alerts;
			nr->n_alerts = old->n_alerts;
			for (struct al_alert *x = nr->alerts; x; x = x->rnext)
				x->rule = nr;
			old->alerts = NULL;
			old->n_alerts = 0;
			al_rule_free(old);
			a->rules.v[idx] = nr;
		} else {
			if (old)
				rule_drop_at(a, idx, now);
			al_rules_add(&a->rules, nr);
		}
		nr->keep = true;
	}
	free(fresh.v);
	for (size_t k = a->rules.n; k-- > 0;) {
		struct al_rule *r = a->rules.v[k];
		if (r->source == AL_SPEC && str_eq(r->app, app) && !r->keep)
			rule_drop_at(a, k, now);
	}
	for (size_t k = 0; k < a->rules.n; k++)
		a->rules.v[k]->keep = false;

	for (size_t k = a->n_targets; k-- > 0;) {
		if (!strcmp(a->targets[k].app, app)) {
			free(a->targets[k].app);
			free(a->targets[k].process);
			a->targets[k] = a->targets[--a->n_targets];
		}
	}
	for (size_t k = 0; spec && k < spec->n_procs; k++) {
		const struct spec_process *p = &spec->procs[k];
		if (!p->autoscale.enabled || !str_eq(p->autoscale.metric, "p95"))
			continue;
		a->targets = xgrow(a->targets, sizeof(*a->targets), a->n_targets + 1, &a->alloc_targets);
		a->targets[a->n_targets++] =
			(struct al_target){xstrdup(app), xstrdup(p->name), p->autoscale.target};
	}
}

struct sync_ctx {
	struct alerts *a;
	int64_t now;
};

static void sync_app(void *ctx, const char *app, int release, const struct spec *spec)
{
	struct sync_ctx *sc = ctx;
	struct alerts *a = sc->a;
	struct al_app *ap = NULL;
	for (size_t k = 0; k < a->n_apps && !ap; k++)
		if (!strcmp(a->apps[k].name, app))
			ap = &a->apps[k];
	if (!ap) {
		a->apps = xgrow(a->apps, sizeof(*a->apps), a->n_apps + 1, &a->alloc_apps);
		ap = &a->apps[a->n_apps++];
		*ap = (struct al_app){xstrdup(app), NULL, -1, false};
	}
	ap->seen = true;
	if (ap->spec == spec && ap->release == release)
		return;
	ap->spec = spec;
	ap->release = release;
	app_rules_set(a, app, spec, sc->now);
}

static void sync_specs(struct alerts *a, int64_t now)
{
	if (!a->sv)
		return;
	for (size_t k = 0; k < a->n_apps; k++)
		a->apps[k].seen = false;
	struct sync_ctx sc = {a, now};
	supervisor_each_spec(a->sv, sync_app, &sc);
	for (size_t k = a->n_apps; k-- > 0;) {
		if (a->apps[k].seen)
			continue;
		app_rules_set(a, a->apps[k].name, NULL, now);
		free(a->apps[k].name);
		a->apps[k] = a->apps[--a->n_apps];
	}
}

static const char *cond_label(const struct al_cond *c, const char *name)
{
	for (size_t k = 0; k < c->n_labels; k++)
		if (!strcmp(c->labels[k].name, name))
			return c->labels[k].value;
	return NULL;
}

/* Whether a condition kept over a daemon restart still holds. A failed
 * deploy stays the app's last deploy. A failing health check holds through
 * the restart of its instance, and a daemon restart restarted every
 * instance: it holds while the new process has not become ready, as after
 * any other restart; an instance that is ready, stopped or gone clears it.
 * No rule reads it any more (turned off): gone too. */
static bool cond_still_holds(struct alerts *a, const struct al_cond *c)
{
	bool read = false;
	for (size_t k = 0; k < a->rules.n && !read; k++)
		read = a->rules.v[k]->kind == c->kind;
	if (!read)
		return false;
	if (c->kind != AL_HEALTH || !a->sv)
		return true;
	const char *st = supervisor_instance_state(a->sv, cond_label(c, "app"), c->key);
	return st && strcmp(st, "ready") && strcmp(st, "stopped") && strcmp(st, "exited");
}

/* After the first sync: restored conditions are checked, restored alerts
 * rejoin their rules (and resolve through the usual damping unless they
 * still hold); those whose rule is gone resolve now. */
static void attach_restored(struct alerts *a, int64_t now)
{
	a->restored_attached = true;
	for (struct al_cond **p = &a->conds; *p;) {
		struct al_cond *c = *p;
		if (c->restored && !cond_still_holds(a, c)) {
			*p = c->next;
			cond_free(c);
			continue;
		}
		c->restored = false;
		p = &c->next;
	}
	while (a->restored) {
		struct al_alert *x = a->restored;
		a->restored = x->hnext;
		x->hnext = NULL;
		struct al_rule *r = rule_find(a, x->rule_key, NULL);
		if (r && !table_find(a, x->fp)) {
			table_add(a, r, x);
			continue;
		}
		if (x->state == AL_FIRING) {
			x->state = AL_RESOLVED;
			x->resolved_at = now;
			history_push(a, x);
			note_add(a, AL_NOTE_RESOLVED, x);
		} else {
			al_alert_free(x);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* Notifications                                                            */

static void post(struct alerts *a, struct al_notifier *n, const struct al_note *notes, size_t cnt,
		 int64_t now)
{
	if (!n->queue)
		return;
	const char *event = NULL;
	int64_t valid = 4 * (a->resend_ms > a->interval_ms ? a->resend_ms : a->interval_ms);
	struct json *body = al_notify_body(n, notes, cnt, a->external_url, now, valid, false, &event);
	if (!body)
		return;
	char *summary = al_note_line(&notes[0]);
	struct webhook_target t = {n->post_url, n->kind == ALERTS_WEBHOOK ? a->secret : NULL, false};
	webhooks_send(n->queue, &t, event, body, summary);
	free(summary);
	json_free(body);
}

static void dispatch(struct alerts *a, int64_t now)
{
	for (size_t k = 0; k < a->n_notes; k++) {
		const struct al_note *nt = &a->notes[k];
		const struct al_alert *x = nt->alert;
		char *line = al_note_line(nt);
		log_info("alert %s", line);
		free(line);
		if (a->notice) {
			char fp[CRYPTO_SHA256_HEX];
			crypto_sha256_hex(x->fp, strlen(x->fp), fp);
			fp[16] = '\0';
			struct alerts_notice an = {al_notice_names[nt->kind], x->name, x->severity, fp,
						   x->summary, x->value, x->fired_at, x->resolved_at};
			a->notice(a->test_ctx, &an);
		}
	}
	if (a->n_notes)
		for (size_t k = 0; k < a->n_notifiers; k++)
			post(a, &a->notifiers[k], a->notes, a->n_notes, now);
	a->n_notes = 0;
	while (a->graveyard) {
		struct al_alert *x = a->graveyard;
		a->graveyard = x->hnext;
		al_alert_free(x);
	}
}

/* Alertmanager forgets an alert whose endsAt passed: every resend interval
 * it hears again of every firing alert, and of those resolved lately. */
static void resend(struct alerts *a, int64_t now)
{
	bool any = false;
	for (size_t k = 0; k < a->n_notifiers && !any; k++)
		any = a->notifiers[k].kind == ALERTS_ALERTMANAGER;
	if (!any || now - a->last_resend < a->resend_ms)
		return;
	a->last_resend = now;
	struct al_note *notes = NULL;
	size_t n = 0, alloc = 0;
	for (size_t b = 0; b < a->n_buckets; b++)
		for (struct al_alert *x = a->table[b]; x; x = x->hnext)
			if (x->state == AL_FIRING) {
				notes = xgrow(notes, sizeof(*notes), n + 1, &alloc);
				notes[n++] = (struct al_note){AL_NOTE_FIRING, x};
			}
	for (size_t k = 0; k < a->hist_n; k++) {
		struct al_alert *x = a->history[(a->hist_head + k) % ALERTS_HISTORY_MAX];
		if (now - x->resolved_at < RESOLVED_RESEND_MS) {
			notes = xgrow(notes, sizeof(*notes), n + 1, &alloc);
			notes[n++] = (struct al_note){AL_NOTE_RESOLVED, x};
		}
	}
	for (size_t k = 0; n && k < a->n_notifiers; k++)
		if (a->notifiers[k].kind == ALERTS_ALERTMANAGER)
			post(a, &a->notifiers[k], notes, n, now);
	free(notes);
}

/* ------------------------------------------------------------------------ */
/* The state file                                                           */

static struct json *alert_state_json(const struct al_alert *x)
{
	struct json *o = json_object();
	json_set_str(o, "rule", x->rule_key);
	json_set_str(o, "name", x->name);
	json_set_str(o, "severity", x->severity);
	json_set_str(o, "fp", x->fp);
	json_set_str(o, "state", al_state_names[x->state]);
	struct json *l = json_set(o, "labels", json_object());
	for (size_t k = 0; k < x->n_labels; k++)
		json_set_str(l, x->labels[k].name, x->labels[k].value);
	json_set_str(o, "summary", x->summary);
	json_set_str(o, "description", x->description);
	json_set_num(o, "value", isfinite(x->value) ? x->value : 0);
	json_set_num(o, "threshold", isfinite(x->threshold) ? x->threshold : 0);
	json_set_int(o, "active_at", x->active_at);
	json_set_int(o, "fired_at", x->fired_at);
	json_set_int(o, "clear_since", x->clear_since);
	json_set_int(o, "last_sent", x->last_sent);
	json_set_int(o, "resolved_at", x->resolved_at);
	return o;
}

static int64_t jint(const struct json *o, const char *key)
{
	int64_t v = 0;
	json_get_int(json_get(o, key), &v);
	return v;
}

static struct al_alert *alert_from_state(const struct json *o)
{
	const char *rule = json_get_str(o, "rule"), *name = json_get_str(o, "name");
	const char *sev = json_get_str(o, "severity"), *fp = json_get_str(o, "fp");
	const char *st = json_get_str(o, "state");
	const struct json *l = json_get(o, "labels");
	if (!rule || !name || !sev || !fp || !st || !json_is_object(l))
		return NULL;
	struct al_alert *x = xcalloc(1, sizeof(*x));
	x->state = !strcmp(st, "firing") ? AL_FIRING : !strcmp(st, "pending") ? AL_PENDING : AL_RESOLVED;
	x->rule_key = xstrdup(rule);
	x->name = xstrdup(name);
	x->severity = xstrdup(sev);
	x->fp = xstrdup(fp);
	size_t alloc = 0;
	for (const struct json *m = json_first(l); m; m = json_next(m))
		if (json_str(m))
			labels_set(&x->labels, &x->n_labels, &alloc, json_key(m), json_str(m));
	qsort(x->labels, x->n_labels, sizeof(*x->labels), label_cmp);
	const char *s = json_get_str(o, "summary"), *d = json_get_str(o, "description");
	x->summary = s ? xstrdup(s) : NULL;
	x->description = d ? xstrdup(d) : NULL;
	x->value = json_num(json_get(o, "value"));
	x->threshold = json_num(json_get(o, "threshold"));
	x->active_at = jint(o, "active_at");
	x->fired_at = jint(o, "fired_at");
	x->clear_since = jint(o, "clear_since");
	x->last_sent = jint(o, "last_sent");
	x->resolved_at = jint(o, "resolved_at");
	return x;
}

static const char *const cond_kinds[] = {[AL_HEALTH] = "health", [AL_DEPLOY] = "deploy"};

static struct json *labels_json(const struct al_label *l, size_t n)
{
	struct json *o = json_object();
	for (size_t k = 0; k < n; k++)
		json_set_str(o, l[k].name, l[k].value);
	return o;
}

static void labels_from_json(const struct json *o, struct al_label **l, size_t *n)
{
	size_t alloc = 0;
	for (const struct json *m = json_is_object(o) ? json_first(o) : NULL; m; m = json_next(m))
		if (json_str(m))
			labels_set(l, n, &alloc, json_key(m), json_str(m));
}

/* Conditions are kept with the alerts: what set them (a failed deploy, a
 * failing health check) happened before the restart and no event will
 * tell it again. */
static struct json *cond_state_json(const struct al_cond *c)
{
	struct json *o = json_object();
	json_set_str(o, "kind", cond_kinds[c->kind]);
	json_set_str(o, "key", c->key);
	json_set(o, "labels", labels_json(c->labels, c->n_labels));
	json_set(o, "extra", labels_json(c->extra, c->n_extra));
	json_set_int(o, "since", c->since);
	json_set_num(o, "value", isfinite(c->value) ? c->value : 0);
	json_set_bool(o, "seen", c->seen);
	json_set_bool(o, "cleared", c->cleared);
	return o;
}

static struct al_cond *cond_from_state(const struct json *o)
{
	const char *kind = json_get_str(o, "kind"), *key = json_get_str(o, "key");
	if (!kind || !key)
		return NULL;
	struct al_cond *c = xcalloc(1, sizeof(*c));
	if (!strcmp(kind, "health"))
		c->kind = AL_HEALTH;
	else if (!strcmp(kind, "deploy"))
		c->kind = AL_DEPLOY;
	else {
		free(c);
		return NULL;
	}
	c->key = xstrdup(key);
	labels_from_json(json_get(o, "labels"), &c->labels, &c->n_labels);
	labels_from_json(json_get(o, "extra"), &c->extra, &c->n_extra);
	c->since = jint(o, "since");
	c->value = json_num(json_get(o, "value"));
	c->seen = json_true(json_get(o, "seen"));
	c->cleared = json_true(json_get(o, "cleared"));
	c->restored = true;
	return c;
}

static char *state_text(struct alerts *a)
{
	struct json *o = json_object();
	json_set_int(o, "version", STATE_VERSION);
	struct json *act = json_set(o, "active", json_array());
	for (size_t b = 0; b < a->n_buckets; b++)
		for (struct al_alert *x = a->table[b]; x; x = x->hnext)
			json_append(act, alert_state_json(x));
	for (struct al_alert *x = a->restored; x; x = x->hnext)
		json_append(act, alert_state_json(x));
	struct json *hist = json_set(o, "history", json_array());
	for (size_t k = 0; k < a->hist_n; k++)
		json_append(hist, alert_state_json(a->history[(a->hist_head + k) % ALERTS_HISTORY_MAX]));
	struct json *conds = json_set(o, "conditions", json_array());
	for (const struct al_cond *c = a->conds; c; c = c->next)
		if (!(c->cleared && c->seen))
			json_append(conds, cond_state_json(c));
	char *text = json_print(o, false);
	json_free(o);
	return text;
}

struct save_job {
	uv_work_t work;
	struct alerts *a;
	char *path, *text;
	int rc;
};

/* tmp, fsync, rename: a crash leaves the old file or the new one. */
static int write_file(const char *path, const char *text)
{
	char *tmp = xasprintf("%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc = fd < 0 ? -errno : 0;
	size_t len = strlen(text), off = 0;
	while (rc == 0 && off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0)
			rc = -errno;
		else
			off += (size_t)w;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

static void save_work(uv_work_t *w)
{
	struct save_job *j = w->data;
	j->rc = write_file(j->path, j->text);
}

static void save(struct alerts *a);

static void save_done(uv_work_t *w, int status)
{
	struct save_job *j = w->data;
	struct alerts *a = j->a;
	if (j->rc < 0)
		log_warn("cannot write '%s': %s", j->path, strerror(-j->rc));
	free(j->path);
	free(j->text);
	free(j);
	if (!a) /* freed meanwhile */
		return;
	a->saving = false;
	a->job = NULL;
	if (a->save_again) {
		a->save_again = false;
		save(a);
	}
}

/* Writes the state file: on the thread pool when there is a loop. */
static void save(struct alerts *a)
{
	if (!a->state_path)
		return;
	if (a->saving) {
		a->save_again = true;
		return;
	}
	a->dirty = false;
	a->last_save = now_ms(a);
	char *text = state_text(a);
	if (!a->loop) {
		int rc = write_file(a->state_path, text);
		if (rc < 0)
			log_warn("cannot write '%s': %s", a->state_path, strerror(-rc));
		free(text);
		return;
	}
	struct save_job *j = xcalloc(1, sizeof(*j));
	j->a = a;
	j->path = xstrdup(a->state_path);
	j->text = text;
	j->work.data = j;
	a->saving = true;
	a->job = j;
	uv_queue_work(a->loop, &j->work, save_work, save_done);
}

static void load(struct alerts *a)
{
	FILE *f = fopen(a->state_path, "re");
	if (!f)
		return;
	struct strbuf sb;
	strbuf_init(&sb, 4096);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		strbuf_add(&sb, buf, n);
	fclose(f);
	char *err = NULL;
	struct json *o = json_parse(sb.buf, sb.len, &err);
	strbuf_release(&sb);
	int64_t version = jint(o, "version");
	if (!o || version != STATE_VERSION || !json_is_array(json_get(o, "active")) ||
	    !json_is_array(json_get(o, "history"))) {
		char *aside = xasprintf("%s.damaged", a->state_path);
		log_warn("'%s' is damaged (%s); moved to '%s', alerts start empty", a->state_path,
			 err ? err : "unexpected content", aside);
		if (rename(a->state_path, aside) < 0)
			log_warn("cannot rename '%s': %s", a->state_path, strerror(errno));
		free(aside);
		free(err);
		json_free(o);
		return;
	}
	struct al_alert **tail = &a->restored;
	for (const struct json *e = json_first(json_get(o, "active")); e; e = json_next(e)) {
		struct al_alert *x = alert_from_state(e);
		if (!x)
			continue;
		if (x->state == AL_RESOLVED) {
			al_alert_free(x);
			continue;
		}
		*tail = x;
		tail = &x->hnext;
	}
	for (const struct json *e = json_first(json_get(o, "history")); e; e = json_next(e)) {
		struct al_alert *x = alert_from_state(e);
		if (x) {
			x->state = AL_RESOLVED;
			history_push(a, x);
		}
	}
	while (a->graveyard) {
		struct al_alert *x = a->graveyard;
		a->graveyard = x->hnext;
		al_alert_free(x);
	}
	struct al_cond **ctail = &a->conds;
	for (const struct json *e = json_first(json_get(o, "conditions")); e; e = json_next(e)) {
		struct al_cond *c = cond_from_state(e);
		if (c) {
			*ctail = c;
			ctail = &c->next;
		}
	}
	json_free(o);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */

static const char *const kind_names[] = {[ALERTS_WEBHOOK] = "webhook", [ALERTS_SLACK] = "slack",
					 [ALERTS_ALERTMANAGER] = "alertmanager"};

static void add_notifier(struct alerts *a, enum alerts_notifier_kind kind, const char *url)
{
	struct al_notifier *n = &a->notifiers[a->n_notifiers++];
	int same = 0;
	for (size_t k = 0; k + 1 < a->n_notifiers; k++)
		same += a->notifiers[k].kind == kind;
	n->name = same ? xasprintf("%s-%d", kind_names[kind], same + 1) : xstrdup(kind_names[kind]);
	n->kind = kind;
	n->url = xstrdup(url);
	if (kind == ALERTS_ALERTMANAGER && !strstr(url, "/api/v2/alerts")) {
		size_t len = strlen(url);
		n->post_url = xasprintf("%.*s/api/v2/alerts", (int)(len && url[len - 1] == '/' ? len - 1 : len), url);
	} else {
		n->post_url = xstrdup(url);
	}
	if (a->loop)
		n->queue = webhooks_new(a->loop);
}

static int64_t pick(int64_t flag, int64_t file, int64_t def)
{
	return flag >= 0 ? flag : file >= 0 ? file : def;
}

struct alerts *alerts_new(const struct alerts_config *cfg, char **err)
{
	struct al_settings set;
	struct al_rules rules = {0};
	char *text = NULL;
	size_t len = 0;
	if (cfg->rules_file && !(text = read_file(cfg->rules_file, &len, err)))
		return NULL;
	int r = al_rules_parse(text, len, cfg->rules_file, &set, &rules, err);
	free(text);
	if (r < 0)
		return NULL;
	struct alerts *a = xcalloc(1, sizeof(*a));
	a->loop = cfg->loop;
	a->metrics = cfg->metrics;
	a->sv = cfg->sv;
	a->clock = cfg->clock ? cfg->clock : wall_clock;
	a->eval = cfg->eval;
	a->notice = cfg->notice;
	a->test_ctx = cfg->test_ctx;
	a->rules = rules;
	a->interval_ms = pick(cfg->interval_ms, set.interval_ms, DEFAULT_INTERVAL_MS);
	a->keep_firing_ms = pick(cfg->keep_firing_ms, set.keep_firing_ms, DEFAULT_KEEP_FIRING_MS);
	a->repeat_ms = pick(cfg->repeat_ms, set.repeat_ms, DEFAULT_REPEAT_MS);
	a->resend_ms = pick(cfg->resend_ms, set.resend_ms, DEFAULT_RESEND_MS);
	if (cfg->external_url) {
		a->external_url = xstrdup(cfg->external_url);
		free(set.external_url);
	} else if (set.external_url) {
		a->external_url = set.external_url;
	} else {
		char host[256] = "localhost";
		gethostname(host, sizeof(host) - 1);
		a->external_url = xasprintf("http://%s", host);
	}
	size_t ul = strlen(a->external_url);
	if (ul && a->external_url[ul - 1] == '/')
		a->external_url[ul - 1] = '\0';
	a->secret = cfg->secret ? xstrdup(cfg->secret) : NULL;
	for (size_t k = 0; k < cfg->n_notifiers; k++)
		add_notifier(a, cfg->notifiers[k].kind, cfg->notifiers[k].url);
	if (a->loop) {
		a->http = httpc_new(a->loop);
		a->timer = xcalloc(1, sizeof(*a->timer));
		uv_timer_init(a->loop, a->timer);
		a->timer->data = a;
	}
	if (cfg->data_dir) {
		a->state_path = xasprintf("%s/alerts.json", cfg->data_dir);
		load(a);
	}
	a->last_resend = now_ms(a);
	if (a->metrics)
		self_metrics_register(a);
	return a;
}

/* paasops_alerts{state}, the evaluation's duration and each notifier's
 * delivery counts, in the metrics registry (doc/metrics.md). */
static void self_metrics_register(struct alerts *a)
{
	struct metrics_registry *reg = metrics_registry_of(a->metrics);
	static const char *const state[] = {"state"}, *const notifier[] = {"notifier"};
	struct metrics_family *f = metrics_family_add(
		reg, "paasops_alerts", "Active alerts, by state (firing, pending).", METRICS_GAUGE,
		state, 1, NULL, 0, false);
	if (!f)
		return; /* registered already (a second module on the same metrics) */
	a->m_firing = metrics_series_get(f, (const char *const[]){"firing"});
	a->m_pending = metrics_series_get(f, (const char *const[]){"pending"});
	f = metrics_family_add(reg, "paasops_alerts_evaluation_duration_seconds",
			       "Wall time of the last evaluation of every alert rule.", METRICS_GAUGE,
			       NULL, 0, NULL, 0, false);
	a->m_eval = f ? metrics_series_get(f, NULL) : NULL;
	a->m_sent = metrics_family_add(reg, "paasops_alert_notifications_sent_total",
				       "Deliveries a notifier accepted.", METRICS_COUNTER, notifier,
				       1, NULL, 0, false);
	a->m_failed = metrics_family_add(reg, "paasops_alert_notifications_failed_total",
					 "Deliveries given up after every attempt failed.",
					 METRICS_COUNTER, notifier, 1, NULL, 0, false);
	a->m_dropped = metrics_family_add(reg, "paasops_alert_notifications_dropped_total",
					  "Deliveries dropped because a notifier's queue was full.",
					  METRICS_COUNTER, notifier, 1, NULL, 0, false);
}

static void self_metrics_update(struct alerts *a)
{
	if (!a->metrics || !a->m_firing)
		return;
	size_t firing = 0;
	for (size_t b = 0; b < a->n_buckets; b++)
		for (struct al_alert *x = a->table[b]; x; x = x->hnext)
			firing += x->state == AL_FIRING;
	metrics_set(a->m_firing, (double)firing);
	metrics_set(a->m_pending, (double)(a->n_active - firing));
	if (a->m_eval)
		metrics_set(a->m_eval, a->last_eval_seconds);
	for (size_t k = 0; k < a->n_notifiers; k++) {
		const struct al_notifier *n = &a->notifiers[k];
		if (!n->queue)
			continue;
		struct json *st = webhooks_stats_json(n->queue);
		const char *v[] = {n->name};
		struct metrics_family *fams[] = {a->m_sent, a->m_failed, a->m_dropped};
		static const char *const keys[] = {"sent", "failed", "dropped"};
		for (size_t j = 0; j < ARRAY_SIZE(fams); j++) {
			int64_t c = 0;
			json_get_int(json_get(st, keys[j]), &c);
			if (fams[j])
				metrics_set(metrics_series_get(fams[j], v), (double)c);
		}
		json_free(st);
	}
}

static void on_timer(uv_timer_t *t)
{
	alerts_evaluate(t->data);
}

void alerts_start(struct alerts *a)
{
	if (a->timer)
		uv_timer_start(a->timer, on_timer, (uint64_t)a->interval_ms, (uint64_t)a->interval_ms);
	log_info("alerts: %zu rules, evaluated every %lldms; %zu notifiers", a->rules.n,
		 (long long)a->interval_ms, a->n_notifiers);
}

void alerts_stop(struct alerts *a)
{
	if (!a || a->stopped)
		return;
	a->stopped = true;
	if (a->timer)
		uv_timer_stop(a->timer);
	a->metrics = NULL;
	a->sv = NULL;
	save(a);
}

void alerts_free(struct alerts *a)
{
	if (!a)
		return;
	if (a->job)
		a->job->a = NULL;
	for (size_t k = 0; k < a->rules.n; k++) {
		struct al_rule *r = a->rules.v[k];
		while (r->alerts) {
			struct al_alert *x = r->alerts;
			table_remove(a, x);
			al_alert_free(x);
		}
	}
	al_rules_release(&a->rules);
	free(a->table);
	while (a->restored) {
		struct al_alert *x = a->restored;
		a->restored = x->hnext;
		al_alert_free(x);
	}
	for (size_t k = 0; k < a->hist_n; k++)
		al_alert_free(a->history[(a->hist_head + k) % ALERTS_HISTORY_MAX]);
	free(a->history);
	while (a->graveyard) {
		struct al_alert *x = a->graveyard;
		a->graveyard = x->hnext;
		al_alert_free(x);
	}
	while (a->conds) {
		struct al_cond *c = a->conds;
		a->conds = c->next;
		cond_free(c);
	}
	for (size_t k = 0; k < a->n_targets; k++) {
		free(a->targets[k].app);
		free(a->targets[k].process);
	}
	free(a->targets);
	for (size_t k = 0; k < a->n_apps; k++)
		free(a->apps[k].name);
	free(a->apps);
	free(a->notes);
	for (size_t k = 0; k < a->n_notifiers; k++) {
		webhooks_free(a->notifiers[k].queue);
		free(a->notifiers[k].name);
		free(a->notifiers[k].url);
		free(a->notifiers[k].post_url);
	}
	httpc_free(a->http);
	if (a->timer)
		uv_close((uv_handle_t *)a->timer, (uv_close_cb)free);
	free(a->state_path);
	free(a->external_url);
	free(a->secret);
	free(a);
}

void alerts_evaluate(struct alerts *a)
{
	if (a->stopped)
		return;
	uint64_t t0 = uv_hrtime();
	int64_t now = now_ms(a);
	sync_specs(a, now);
	if (!a->restored_attached)
		attach_restored(a, now);
	for (size_t k = 0; k < a->rules.n; k++)
		eval_rule(a, a->rules.v[k], now);
	dispatch(a, now);
	resend(a, now);
	if (a->dirty && (now - a->last_save >= SAVE_EVERY_MS || !a->loop))
		save(a);
	a->evaluations++;
	a->last_eval_seconds = (double)(uv_hrtime() - t0) / 1e9;
	self_metrics_update(a);
}

/* ------------------------------------------------------------------------ */
/* Event conditions                                                         */

static struct al_cond **cond_find(struct alerts *a, enum al_kind kind, const char *key)
{
	struct al_cond **p = &a->conds;
	for (; *p; p = &(*p)->next)
		if ((*p)->kind == kind && !strcmp((*p)->key, key))
			break;
	return p;
}

static void cond_clear(struct alerts *a, enum al_kind kind, const char *key)
{
	struct al_cond *c = *cond_find(a, kind, key);
	if (c)
		c->cleared = true;
}

/* Sets (or refreshes) a condition; labels and extra are name, value pairs
 * ending with NULL. */
static void cond_set(struct alerts *a, enum al_kind kind, const char *key, double value,
		     const char *const *labels, const char *const *extra)
{
	struct al_cond **p = cond_find(a, kind, key);
	struct al_cond *c = *p;
	if (!c) {
		c = *p = xcalloc(1, sizeof(*c));
		c->kind = kind;
		c->key = xstrdup(key);
		c->since = now_ms(a);
	}
	c->cleared = false;
	size_t alloc = c->n_labels;
	for (size_t k = 0; labels[k]; k += 2)
		if (labels[k + 1])
			labels_set(&c->labels, &c->n_labels, &alloc, labels[k], labels[k + 1]);
	alloc = c->n_extra;
	for (size_t k = 0; extra[k]; k += 2)
		labels_set(&c->extra, &c->n_extra, &alloc, extra[k], extra[k + 1] ? extra[k + 1] : "");
	c->value = value;
}

/* Events after alerts_stop come from the shutdown itself (every instance
 * stopped, a rollout in flight failed by it): they say nothing about the
 * apps and must not reach the state file. */
void alerts_on_event(struct alerts *a, const struct store_event *ev)
{
	if (!a || a->stopped || !ev->app)
		return;
	if (!strcmp(ev->type, "destroy")) {
		for (struct al_cond **p = &a->conds; *p;) {
			const char *app = NULL;
			for (size_t k = 0; k < (*p)->n_labels; k++)
				if (!strcmp((*p)->labels[k].name, "app"))
					app = (*p)->labels[k].value;
			if (str_eq(app, ev->app)) {
				struct al_cond *c = *p;
				*p = c->next;
				cond_free(c);
			} else {
				p = &(*p)->next;
			}
		}
		return;
	}
	if (strcmp(ev->type, "state") || !ev->instance || !ev->state)
		return;
	/* Failing: unhealthy, or stopped for missing the boot deadline. It
	 * holds through the restart that follows, until the instance is ready
	 * again or stopped for another reason (scaled down, app stopped). */
	bool stopping = !strcmp(ev->state, "stopping");
	const char *why = ev->reason ? ev->reason : "";
	if (!strcmp(ev->state, "unhealthy") || (stopping && str_starts_with(why, "health check"))) {
		const char *labels[] = {"app", ev->app, "process", ev->process, "instance",
					ev->instance, NULL};
		const char *extra[] = {"reason", ev->reason, NULL};
		cond_set(a, AL_HEALTH, ev->instance, 1, labels, extra);
	} else if (!strcmp(ev->state, "ready") ||
		   (stopping && !str_starts_with(why, "restarting an unhealthy"))) {
		cond_clear(a, AL_HEALTH, ev->instance);
	}
}

void alerts_on_deploy(struct alerts *a, const char *app, int version, const char *result,
		      const char *reason)
{
	if (!a || a->stopped)
		return;
	if (!strcmp(result, "failed") || !strcmp(result, "rolled-back")) {
		char v[16];
		snprintf(v, sizeof(v), "%d", version);
		const char *labels[] = {"app", app, NULL};
		const char *extra[] = {"version", v, "result", result, "reason", reason, NULL};
		cond_set(a, AL_DEPLOY, app, version, labels, extra);
	} else if (!strcmp(result, "succeeded")) {
		cond_clear(a, AL_DEPLOY, app);
	}
}

/* ------------------------------------------------------------------------ */
/* Views                                                                    */

struct json *al_alert_json(const struct al_alert *x, const char *external_url)
{
	struct json *o = json_object();
	json_set_str(o, "name", x->name);
	json_set_str(o, "state", al_state_names[x->state]);
	json_set_str(o, "severity", x->severity);
	struct json *l = json_set(o, "labels", json_object());
	for (size_t k = 0; k < x->n_labels; k++)
		json_set_str(l, x->labels[k].name, x->labels[k].value);
	struct json *an = json_set(o, "annotations", json_object());
	if (x->summary)
		json_set_str(an, "summary", x->summary);
	if (x->description)
		json_set_str(an, "description", x->description);
	if (isfinite(x->value))
		json_set_num(o, "value", x->value);
	else
		json_set(o, "value", json_null());
	json_set_time(o, "active_at", x->active_at);
	json_set_time(o, "fired_at", x->fired_at);
	json_set_time(o, "resolved_at", x->resolved_at);
	json_set_time(o, "clearing_since", x->state == AL_FIRING ? x->clear_since : 0);
	json_set_str(o, "rule", x->rule_key);
	char fp[CRYPTO_SHA256_HEX];
	crypto_sha256_hex(x->fp, strlen(x->fp), fp);
	fp[16] = '\0';
	json_set_str(o, "fingerprint", fp);
	char *url = xasprintf("%s/v1/alerts", external_url);
	json_set_str(o, "generator_url", url);
	free(url);
	return o;
}

static bool visible(const char *app, alerts_filter_cb keep, void *ctx)
{
	return !keep || keep(ctx, app);
}

static int alert_order(const void *p, const void *q)
{
	const struct al_alert *x = *(const struct al_alert *const *)p;
	const struct al_alert *y = *(const struct al_alert *const *)q;
	if (x->state != y->state)
		return x->state == AL_FIRING ? -1 : 1;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->fp, y->fp);
}

static struct json *rule_json(const struct al_rule *r)
{
	struct json *o = json_object();
	json_set_str(o, "key", r->key);
	json_set_str(o, "name", r->name);
	json_set_str(o, "source", al_source_names[r->source]);
	json_set_str(o, "app", r->app);
	static const char *const kinds[] = {"metric", "health", "deploy"};
	json_set_str(o, "kind", kinds[r->kind]);
	json_set_str(o, "expr", r->expr);
	json_set_str(o, "divide_by", r->divide_by);
	if (r->only_if) {
		char *g = xasprintf("%s %s %g", r->only_if, al_op_names[r->only_if_op], r->only_if_value);
		json_set_str(o, "only_if", g);
		free(g);
	}
	json_set_bool(o, "complement", r->complement);
	json_set_str(o, "op", al_op_names[r->op]);
	if (r->per_target)
		json_set_str(o, "value", "target");
	else if (r->kind == AL_METRIC)
		json_set_num(o, "value", r->value);
	else
		json_set(o, "value", json_null());
	json_set_int(o, "for_ms", r->for_ms);
	if (r->keep_firing_ms >= 0)
		json_set_int(o, "keep_firing_for_ms", r->keep_firing_ms);
	if (r->repeat_ms >= 0)
		json_set_int(o, "repeat_interval_ms", r->repeat_ms);
	if (r->kind == AL_DEPLOY)
		json_set_int(o, "expire_ms", r->expire_ms);
	json_set_str(o, "severity", r->severity);
	json_set_int(o, "active", (int64_t)r->n_alerts);
	json_set_str(o, "error", r->error);
	return o;
}

struct json *alerts_active_json(struct alerts *a, alerts_filter_cb keep, void *ctx)
{
	struct al_alert **v = xmalloc((a->n_active ? a->n_active : 1) * sizeof(*v));
	size_t n = 0;
	for (size_t b = 0; b < a->n_buckets; b++)
		for (struct al_alert *x = a->table[b]; x; x = x->hnext)
			if (visible(al_alert_label(x, "app"), keep, ctx))
				v[n++] = x;
	qsort(v, n, sizeof(*v), alert_order);
	struct json *o = json_object();
	struct json *arr = json_set(o, "alerts", json_array());
	for (size_t k = 0; k < n; k++)
		json_append(arr, al_alert_json(v[k], a->external_url));
	free(v);
	struct json *rules = json_set(o, "rules", json_array());
	for (size_t k = 0; k < a->rules.n; k++)
		if (keep ? a->rules.v[k]->app && keep(ctx, a->rules.v[k]->app) : true)
			json_append(rules, rule_json(a->rules.v[k]));
	struct json *ns = json_set(o, "notifiers", json_array());
	for (size_t k = 0; !keep && k < a->n_notifiers; k++) {
		const struct al_notifier *nf = &a->notifiers[k];
		struct json *no = nf->queue ? webhooks_stats_json(nf->queue) : json_object();
		json_set_str(no, "name", nf->name);
		json_set_str(no, "kind", kind_names[nf->kind]);
		char *u = al_url_redact(nf->url);
		json_set_str(no, "url", u);
		free(u);
		json_append(ns, no);
	}
	json_set_int(o, "evaluation_interval_ms", a->interval_ms);
	json_set_int(o, "keep_firing_for_ms", a->keep_firing_ms);
	json_set_int(o, "repeat_interval_ms", a->repeat_ms);
	json_set_int(o, "evaluations", (int64_t)a->evaluations);
	json_set_num(o, "last_evaluation_seconds", a->last_eval_seconds);
	return o;
}

struct json *alerts_history_json(struct alerts *a, const char *app, int limit,
				 alerts_filter_cb keep, void *ctx)
{
	struct json *o = json_object();
	struct json *arr = json_set(o, "alerts", json_array());
	int n = 0;
	for (size_t k = a->hist_n; k-- > 0 && n < limit;) {
		const struct al_alert *x = a->history[(a->hist_head + k) % ALERTS_HISTORY_MAX];
		const char *xa = al_alert_label(x, "app");
		if ((app && !str_eq(app, xa)) || !visible(xa, keep, ctx))
			continue;
		json_append(arr, al_alert_json(x, a->external_url));
		n++;
	}
	return o;
}

/* ------------------------------------------------------------------------ */
/* Test notifications                                                       */

struct test_req {
	alerts_test_cb done;
	void *ctx;
};

static void test_done(void *ctx, int status, const char *err)
{
	struct test_req *t = ctx;
	t->done(t->ctx, status, err);
	free(t);
}

int alerts_test(struct alerts *a, const char *notifier, alerts_test_cb done, void *ctx,
		char **err)
{
	struct al_notifier *n = NULL;
	for (size_t k = 0; k < a->n_notifiers && !n; k++)
		if (!strcmp(a->notifiers[k].name, notifier))
			n = &a->notifiers[k];
	if (!n || !a->http) {
		struct strbuf sb;
		strbuf_init(&sb, 64);
		for (size_t k = 0; k < a->n_notifiers; k++)
			strbuf_addf(&sb, "%s'%s'", k ? ", " : "", a->notifiers[k].name);
		*err = a->n_notifiers ? xasprintf("no notifier '%s' (there are %s)", notifier, sb.buf)
				      : xasprintf("no notifier '%s': none is configured (see "
						  "--alertmanager, --alert-webhook, --alert-slack)",
						  notifier);
		strbuf_release(&sb);
		return -ENOENT;
	}
	int64_t now = now_ms(a);
	struct al_label labels[] = {{"alertname", "PaasopsTest"}, {"severity", "info"}};
	struct al_alert x = {.rule_key = "test", .name = "PaasopsTest", .severity = "info",
			     .fp = "test", .labels = labels, .n_labels = 2,
			     .summary = "test notification from paasops",
			     .description = "Sent by `paasops alerts test`; nothing is wrong.",
			     .state = AL_FIRING, .active_at = now, .fired_at = now};
	struct al_note note = {AL_NOTE_FIRING, &x};
	const char *event = NULL;
	struct json *body = al_notify_body(n, &note, 1, a->external_url, now, 60000, true, &event);
	char *text = json_print(body, false);
	json_free(body);
	char ev[96], sig[128] = "X-Paasops-Signature:";
	snprintf(ev, sizeof(ev), "X-Paasops-Event: %s", event);
	if (n->kind == ALERTS_WEBHOOK && a->secret) {
		char mac[CRYPTO_SHA256_HEX];
		crypto_hmac_sha256_hex(a->secret, strlen(a->secret), text, strlen(text), mac);
		snprintf(sig, sizeof(sig), "X-Paasops-Signature: sha256=%s", mac);
	}
	const char *headers[] = {"Content-Type: application/json", ev, sig, NULL};
	struct test_req *t = xcalloc(1, sizeof(*t));
	t->done = done;
	t->ctx = ctx;
	int r = httpc_post(a->http, n->post_url, headers, text, strlen(text), TEST_TIMEOUT_MS,
			   test_done, t);
	free(text);
	if (r < 0) {
		free(t);
		*err = xasprintf("cannot start a request to notifier '%s'", notifier);
		return -EIO;
	}
	return 0;
}
