/* test_alerts.c: the alerts module (src/alerts) with a fake clock and a
 * fake evaluator standing in for the metrics history: the state machine
 * (pending → firing after `for`, flap damping, reminders, resolving),
 * label sets, ratios and guards, event rules, the state file across a
 * restart, the rules file's messages, spec rules, templates and the bodies
 * each notifier posts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "alerts/alerts_internal.h"
#include "compat/json.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "metrics/metrics.h"
#include "spec/spec.h"
#include "store/store.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S 1000 /* ms per second */

/* ------------------------------------------------------------------------ */
/* The fake world: a clock, series per expression, notices received         */

#define MAX_SERIES 8

struct fake_series {
	const char *labels[8]; /* name, value, ..., NULL */
	double v;
};

struct fake_expr {
	const char *expr;
	struct fake_series s[MAX_SERIES];
	size_t n;
};

struct world {
	int64_t now;
	struct fake_expr exprs[8];
	size_t n_exprs;
	char notices[64][160]; /* "status name fingerprint" */
	size_t n_notices;
	char dir[64];
};

static int64_t fake_clock(void *ctx)
{
	return ((struct world *)ctx)->now;
}

static int fake_eval(void *ctx, const char *expr, int64_t at, struct metrics_result *out,
		     char **err)
{
	struct world *w = ctx;
	memset(out, 0, sizeof(*out));
	for (size_t k = 0; k < w->n_exprs; k++) {
		struct fake_expr *e = &w->exprs[k];
		if (strcmp(e->expr, expr))
			continue;
		out->series = xcalloc(e->n ? e->n : 1, sizeof(*out->series));
		for (size_t i = 0; i < e->n; i++) {
			struct metrics_result_series *rs = &out->series[out->n_series++];
			size_t nl = 0;
			while (e->s[i].labels[nl * 2])
				nl++;
			rs->n_labels = nl;
			rs->names = xcalloc(nl ? nl : 1, sizeof(char *));
			rs->values = xcalloc(nl ? nl : 1, sizeof(char *));
			for (size_t l = 0; l < nl; l++) {
				rs->names[l] = xstrdup(e->s[i].labels[2 * l]);
				rs->values[l] = xstrdup(e->s[i].labels[2 * l + 1]);
			}
			rs->points = xcalloc(1, sizeof(*rs->points));
			rs->points[0] = (struct metrics_point){at, e->s[i].v};
			rs->n_points = 1;
		}
		return 0;
	}
	if (strstr(expr, "broken")) {
		*err = xstrdup("broken on purpose");
		return -EINVAL;
	}
	return 0;
}

static void on_notice(void *ctx, const struct alerts_notice *n)
{
	struct world *w = ctx;
	assert_true(w->n_notices < 64);
	snprintf(w->notices[w->n_notices++], sizeof(w->notices[0]), "%s %s", n->status, n->name);
}

/* Sets what expr evaluates to: one series per call of series_set. */
static struct fake_expr *expr_of(struct world *w, const char *expr)
{
	for (size_t k = 0; k < w->n_exprs; k++)
		if (!strcmp(w->exprs[k].expr, expr))
			return &w->exprs[k];
	struct fake_expr *e = &w->exprs[w->n_exprs++];
	e->expr = expr;
	e->n = 0;
	return e;
}

static void series_clear(struct world *w, const char *expr)
{
	expr_of(w, expr)->n = 0;
}

static void series_set(struct world *w, const char *expr, double v, const char *l1,
		       const char *v1, const char *l2, const char *v2)
{
	struct fake_expr *e = expr_of(w, expr);
	struct fake_series *s = NULL;
	for (size_t k = 0; k < e->n && !s; k++)
		if (str_eq(e->s[k].labels[0], l1) && str_eq(e->s[k].labels[1], v1) &&
		    str_eq(e->s[k].labels[2], l2) && str_eq(e->s[k].labels[3], v2))
			s = &e->s[k];
	if (!s) {
		s = &e->s[e->n++];
		memset(s, 0, sizeof(*s));
		s->labels[0] = l1;
		s->labels[1] = v1;
		s->labels[2] = l1 ? l2 : NULL;
		s->labels[3] = l1 ? v2 : NULL;
	}
	s->v = v;
}

static int setup(void **state)
{
	struct world *w = xcalloc(1, sizeof(*w));
	w->now = 1700000000000LL;
	snprintf(w->dir, sizeof(w->dir), "/tmp/test_alerts.XXXXXX");
	assert_non_null(mkdtemp(w->dir));
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", w->dir);
	assert_int_equal(system(cmd), 0);
	free(w);
	return 0;
}

/* An alerts module over the fake world with rules (YAML text). */
static struct alerts *start(struct world *w, const char *rules, bool persist)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/rules.yaml", w->dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(rules, f);
	fclose(f);
	struct alerts_config cfg;
	alerts_config_defaults(&cfg);
	cfg.rules_file = xstrdup(path);
	cfg.clock = fake_clock;
	cfg.eval = fake_eval;
	cfg.notice = on_notice;
	cfg.test_ctx = w;
	cfg.data_dir = persist ? w->dir : NULL;
	char *err = NULL;
	struct alerts *a = alerts_new(&cfg, &err);
	if (!a)
		fail_msg("alerts_new: %s", err);
	alerts_config_release(&cfg);
	return a;
}

/* Advances the clock to t seconds after the start and evaluates. */
static void at(struct world *w, struct alerts *a, double t)
{
	w->now = 1700000000000LL + (int64_t)(t * S);
	alerts_evaluate(a);
}

static void expect_notices(struct world *w, size_t n, ...)
{
	va_list ap;
	va_start(ap, n);
	if (w->n_notices != n) {
		struct strbuf sb;
		strbuf_init(&sb, 0);
		for (size_t k = 0; k < w->n_notices; k++)
			strbuf_addf(&sb, "  %s\n", w->notices[k]);
		fail_msg("expected %zu notices, got %zu:\n%s", n, w->n_notices, sb.buf);
	}
	for (size_t k = 0; k < n; k++)
		assert_string_equal(w->notices[k], va_arg(ap, const char *));
	va_end(ap);
}

/* The state of the single active alert named name ("" when none). */
static const char *state_of(struct alerts *a, const char *name, char *buf, size_t size)
{
	struct json *o = alerts_active_json(a, NULL, NULL);
	snprintf(buf, size, "%s", "");
	for (const struct json *x = json_first(json_get(o, "alerts")); x; x = json_next(x))
		if (str_eq(json_get_str(x, "name"), name))
			snprintf(buf, size, "%s%s", json_get_str(x, "state"),
				 json_str(json_get(x, "clearing_since")) ? " clearing" : "");
	json_free(o);
	return buf;
}

#define assert_state(a, name, want)                                                    \
	do {                                                                           \
		char b_[64];                                                           \
		assert_string_equal(state_of((a), (name), b_, sizeof(b_)), (want));    \
	} while (0)

static size_t history_len(struct alerts *a)
{
	struct json *o = alerts_history_json(a, NULL, 1000, NULL, NULL);
	size_t n = json_size(json_get(o, "alerts"));
	json_free(o);
	return n;
}

#define NO_BUILTINS                                                                          \
	"builtin:\n"                                                                         \
	"  crash_loop: {enabled: false}\n  health_check: {enabled: false}\n"                 \
	"  no_ready_instance: {enabled: false}\n  http_5xx_ratio: {enabled: false}\n"        \
	"  http_p95_target: {enabled: false}\n  instance_memory: {enabled: false}\n"         \
	"  data_disk: {enabled: false}\n  deploy_failed: {enabled: false}\n"

#define HIGH_RULE                                                                            \
	"rules:\n"                                                                           \
	"  - {name: High, expr: paasops_host_load1, op: \">\", value: 1, for: 10s, keep_firing_for: 5s,\n" \
	"     repeat_interval: 1m, summary: \"load is {{ $value }}\"}\n"

/* ------------------------------------------------------------------------ */
/* The state machine                                                        */

static void test_alerts__pending_then_firing_after_for(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, NO_BUILTINS HIGH_RULE, false);
	series_set(w, "paasops_host_load1", 2, NULL, NULL, NULL, NULL);
	at(w, a, 0);
	assert_state(a, "High", "pending");
	at(w, a, 9.9);
	assert_state(a, "High", "pending");
	expect_notices(w, 0);
	at(w, a, 10);
	assert_state(a, "High", "firing");
	expect_notices(w, 1, "firing High");
	at(w, a, 11);
	expect_notices(w, 1, "firing High");
	alerts_free(a);
}

static void test_alerts__pending_that_clears_is_dropped_silently(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, NO_BUILTINS HIGH_RULE, false);
	series_set(w, "paasops_host_load1", 2, NULL, NULL, NULL, NULL);
	at(w, a, 0);
	series_set(w, "paasops_host_load1", 0.5, NULL, NULL, NULL, NULL);
	at(w, a, 5);
	assert_state(a, "High", "");
	/* Back above: `for` starts again from here. */
	series_set(w, "paasops_host_load1", 2, NULL, NULL, NULL, NULL);
	at(w, a, 6);
	at(w, a, 15);
	assert_state(a, "High", "pending");
	at(w, a, 16);
	assert_state(a, "High", "firing");
	expect_notices(w, 1, "firing High");
	assert_int_equal(history_len(a), 0);
	alerts_free(a);
}

static void test_alerts__firing_resolves_only_after_staying_clear(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, NO_BUILTINS HIGH_RULE, false);
	series_set(w, "paasops_host_load1", 2, NULL, NULL, NULL, NULL);
	at(w, a, 0);
	at(w, a, 10);
	/* Clear for 3 s, back, clear again: the same alert keeps firing. */
	series_set(w, "paasops_host_load1", 0, NULL, NULL, NULL, NULL);
	at(w, a, 11);
	assert_state(a, "High", "firing clearing");
	at(w, a, 14);
	series_set(w, "paasops_host_load1", 3, NULL, NULL, NULL, NULL);
	at(w, a, 15);
	assert_state(a, "High", "firing");
	series_clear(w, "paasops_host_load1"); /* a series that disappears is clear too */
	at(w, a, 16);
	at(w, a, 20.9);
	assert_state(a, "High", "firing clearing");
	expect_notices(w, 1, "firing High");
	at(w, a, 21);
	assert_state(a, "High", "");
	expect_notices(w, 2, "firing High", "resolved High");
	assert_int_equal(history_len(a), 1);
	alerts_free(a);
}

static void test_alerts__reminds_every_repeat_interval_while_firing(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, NO_BUILTINS HIGH_RULE, false);
	series_set(w, "paasops_host_load1", 2, NULL, NULL, NULL, NULL);
	at(w, a, 0);
	at(w, a, 10);
	at(w, a, 69);
	expect_notices(w, 1, "firing High");
	at(w, a, 70);
	expect_notices(w, 2, "firing High", "reminder High");
	at(w, a, 71);
	at(w, a, 129);
	expect_notices(w, 2, "firing High", "reminder High");
	at(w, a, 130);
	expect_notices(w, 3, "firing High", "reminder High", "reminder High");
	alerts_free(a);
}

static void test_alerts__for_zero_fires_at_the_first_evaluation(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, NO_BUILTINS "keep_firing_for: 0s\n"
					     "rules:\n  - {name: Now, expr: paasops_host_load5, op: \">=\", value: 1}\n",
				 false);
	series_set(w, "paasops_host_load5", 1, NULL, NULL, NULL, NULL);
	at(w, a, 0);
	assert_state(a, "Now", "firing");
	series_set(w, "paasops_host_load5", 0, NULL, NULL, NULL, NULL);
	at(w, a, 1);
	expect_notices(w, 2, "firing Now", "resolved Now");
	alerts_free(a);
}

static void test_alerts__each_label_set_is_its_own_alert(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, NO_BUILTINS "keep_firing_for: 0s\n"
					     "rules:\n  - {name: Mem, expr: paasops_instance_resident_memory_bytes, op: \">\", value: 10,\n"
					     "     labels: {team: web}, summary: \"{{ $labels.instance }}\"}\n",
				 false);
	series_set(w, "paasops_instance_resident_memory_bytes", 20, "instance", "a.web.1", NULL, NULL);
	series_set(w, "paasops_instance_resident_memory_bytes", 30, "instance", "a.web.2", NULL, NULL);
	series_set(w, "paasops_instance_resident_memory_bytes", 5, "instance", "a.web.3", NULL, NULL);
	at(w, a, 0);
	expect_notices(w, 2, "firing Mem", "firing Mem");
	struct json *o = alerts_active_json(a, NULL, NULL);
	const struct json *alerts = json_get(o, "alerts");
	assert_int_equal(json_size(alerts), 2);
	const struct json *l = json_get(json_at(alerts, 0), "labels");
	assert_string_equal(json_get_str(l, "alertname"), "Mem");
	assert_string_equal(json_get_str(l, "severity"), "warning");
	assert_string_equal(json_get_str(l, "team"), "web");
	assert_string_equal(json_get_str(json_get(json_at(alerts, 0), "annotations"), "summary"),
			    json_get_str(l, "instance"));
	json_free(o);
	series_set(w, "paasops_instance_resident_memory_bytes", 1, "instance", "a.web.2", NULL, NULL);
	at(w, a, 1);
	expect_notices(w, 3, "firing Mem", "firing Mem", "resolved Mem");
	o = alerts_active_json(a, NULL, NULL);
	assert_int_equal(json_size(json_get(o, "alerts")), 1);
	assert_string_equal(
		json_get_str(json_get(json_at(json_get(o, "alerts"), 0), "labels"), "instance"),
		"a.web.1");
	json_free(o);
	alerts_free(a);
}

static void test_alerts__ratio_and_guard_join_on_labels(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, NO_BUILTINS "keep_firing_for: 0s\n"
					     "rules:\n"
					     "  - {name: Ratio, expr: paasops_replicas_ready, divide_by: paasops_replicas_desired, op: \">\", value: 0.05,\n"
					     "     only_if: {expr: paasops_host_cpus, op: \">\", value: 0},\n"
					     "     summary: \"{{ $percent }}\"}\n",
				 false);
	series_set(w, "paasops_replicas_ready", 1, "app", "a", NULL, NULL);
	series_set(w, "paasops_replicas_desired", 10, "app", "a", NULL, NULL);
	series_set(w, "paasops_host_cpus", 1, "app", "a", NULL, NULL);
	series_set(w, "paasops_replicas_ready", 1, "app", "b", NULL, NULL);
	series_set(w, "paasops_replicas_desired", 100, "app", "b", NULL, NULL); /* 1%: below */
	series_set(w, "paasops_host_cpus", 1, "app", "b", NULL, NULL);
	series_set(w, "paasops_replicas_ready", 5, "app", "c", NULL, NULL);
	series_set(w, "paasops_replicas_desired", 10, "app", "c", NULL, NULL);
	series_set(w, "paasops_host_cpus", 0, "app", "c", NULL, NULL); /* guarded off */
	series_set(w, "paasops_replicas_ready", 5, "app", "d", NULL, NULL);   /* no denominator: skipped */
	at(w, a, 0);
	struct json *o = alerts_active_json(a, NULL, NULL);
	const struct json *alerts = json_get(o, "alerts");
	assert_int_equal(json_size(alerts), 1);
	assert_string_equal(json_get_str(json_get(json_at(alerts, 0), "labels"), "app"), "a");
	assert_true(fabs(json_num(json_get(json_at(alerts, 0), "value")) - 0.1) < 1e-9);
	assert_string_equal(json_get_str(json_get(json_at(alerts, 0), "annotations"), "summary"),
			    "10.0%");
	json_free(o);
	alerts_free(a);
}

static void test_alerts__evaluation_errors_are_kept_on_the_rule(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, NO_BUILTINS "rules:\n  - {name: B, expr: \"paasops_build_info{version=\\\"broken\\\"}\", op: \">\", value: 1}\n",
				 false);
	at(w, a, 0);
	struct json *o = alerts_active_json(a, NULL, NULL);
	const struct json *r = json_at(json_get(o, "rules"), 0);
	assert_string_equal(json_get_str(r, "key"), "config:B");
	assert_string_equal(json_get_str(r, "error"), "broken on purpose");
	json_free(o);
	alerts_free(a);
}

/* ------------------------------------------------------------------------ */
/* Event rules and built-ins                                                */

static void test_alerts__failed_deploy_fires_until_a_deploy_succeeds(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, "keep_firing_for: 0s\n", false);
	alerts_on_deploy(a, "shop", 7, "rolled-back", "new instances fail their health check");
	at(w, a, 0);
	expect_notices(w, 1, "firing DeployFailed");
	struct json *o = alerts_active_json(a, NULL, NULL);
	const struct json *x = json_at(json_get(o, "alerts"), 0);
	assert_string_equal(json_get_str(json_get(x, "labels"), "app"), "shop");
	assert_null(json_get_str(json_get(x, "labels"), "version"));
	assert_string_equal(json_get_str(json_get(x, "annotations"), "summary"),
			    "deploy of shop v7 rolled-back");
	assert_string_equal(json_get_str(json_get(x, "annotations"), "description"),
			    "new instances fail their health check");
	json_free(o);
	alerts_on_deploy(a, "shop", 8, "succeeded", NULL);
	at(w, a, 1);
	expect_notices(w, 2, "firing DeployFailed", "resolved DeployFailed");
	alerts_free(a);
}

static void test_alerts__failed_deploy_alert_expires(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, "keep_firing_for: 0s\nbuiltin:\n  deploy_failed: {expire: 10m}\n",
				 false);
	alerts_on_deploy(a, "shop", 3, "failed", "build failed");
	at(w, a, 0);
	at(w, a, 599);
	expect_notices(w, 1, "firing DeployFailed");
	at(w, a, 600);
	expect_notices(w, 2, "firing DeployFailed", "resolved DeployFailed");
	alerts_free(a);
}

static void test_alerts__health_check_failing_follows_instance_events(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, "keep_firing_for: 0s\n", false);
	struct store_event ev = {.app = "shop", .process = "web", .instance = "shop.web.1",
				 .type = "state", .state = "unhealthy",
				 .reason = "health check failed 3 times: 503"};
	alerts_on_event(a, &ev);
	ev.state = "stopping";
	ev.reason = "restarting an unhealthy instance";
	alerts_on_event(a, &ev); /* still failing until it is ready again */
	at(w, a, 0);
	expect_notices(w, 1, "firing HealthCheckFailing");
	struct json *o = alerts_active_json(a, NULL, NULL);
	const struct json *x = json_at(json_get(o, "alerts"), 0);
	assert_string_equal(json_get_str(json_get(x, "labels"), "instance"), "shop.web.1");
	assert_string_equal(json_get_str(json_get(x, "annotations"), "description"),
			    "health check failed 3 times: 503");
	json_free(o);
	ev.state = "ready";
	ev.reason = "health check passed";
	alerts_on_event(a, &ev);
	at(w, a, 1);
	expect_notices(w, 2, "firing HealthCheckFailing", "resolved HealthCheckFailing");

	/* A failure shorter than the interval still fires once. */
	ev.state = "stopping";
	ev.reason = "health check did not pass within 1m; restarting";
	alerts_on_event(a, &ev);
	ev.state = "ready";
	alerts_on_event(a, &ev);
	at(w, a, 2);
	at(w, a, 3);
	expect_notices(w, 4, "firing HealthCheckFailing", "resolved HealthCheckFailing",
		       "firing HealthCheckFailing", "resolved HealthCheckFailing");

	/* Scaled down while failing: nothing left to alert about. */
	ev.state = "unhealthy";
	alerts_on_event(a, &ev);
	ev.state = "stopping";
	ev.reason = "scaled down";
	alerts_on_event(a, &ev);
	at(w, a, 4);
	at(w, a, 5);
	expect_notices(w, 6, "firing HealthCheckFailing", "resolved HealthCheckFailing",
		       "firing HealthCheckFailing", "resolved HealthCheckFailing",
		       "firing HealthCheckFailing", "resolved HealthCheckFailing");
	alerts_free(a);
}

static void test_alerts__builtins_can_be_tuned_and_turned_off(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w,
				 "builtin:\n"
				 "  http_5xx_ratio: {value: 0.2, window: 30s, for: 0s, severity: critical}\n"
				 "  data_disk: {enabled: false}\n",
				 false);
	struct json *o = alerts_active_json(a, NULL, NULL);
	bool disk = false, ratio = false;
	for (const struct json *r = json_first(json_get(o, "rules")); r; r = json_next(r)) {
		disk |= str_eq(json_get_str(r, "key"), "builtin:data_disk");
		if (str_eq(json_get_str(r, "key"), "builtin:http_5xx_ratio")) {
			ratio = true;
			assert_string_equal(json_get_str(r, "expr"),
					    "rate(paasops_http_requests_total{code=\"5xx\"}[30s]) by (app, process)");
			assert_string_equal(json_get_str(r, "severity"), "critical");
			assert_true(json_num(json_get(r, "value")) == 0.2);
		}
	}
	assert_false(disk);
	assert_true(ratio);
	json_free(o);
	/* 5 of 20 requests failed: 25% > 20%. */
	series_set(w, "rate(paasops_http_requests_total{code=\"5xx\"}[30s]) by (app, process)", 0.5,
		   "app", "shop", "process", "web");
	series_set(w, "rate(paasops_http_requests_total[30s]) by (app, process)", 2, "app", "shop",
		   "process", "web");
	at(w, a, 0);
	expect_notices(w, 1, "firing HighErrorRate");
	o = alerts_active_json(a, NULL, NULL);
	assert_string_equal(
		json_get_str(json_get(json_at(json_get(o, "alerts"), 0), "annotations"), "summary"),
		"shop web: 25.0% of requests failed with 5xx");
	json_free(o);
	alerts_free(a);
}

static void test_alerts__disk_rule_compares_the_used_fraction(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, "builtin:\n  data_disk: {for: 0s}\n", false);
	series_set(w, "paasops_host_disk_free_bytes", 5, "path", "/data", NULL, NULL);
	series_set(w, "paasops_host_disk_total_bytes", 100, "path", "/data", NULL, NULL);
	at(w, a, 0);
	expect_notices(w, 1, "firing DataDiskFull");
	struct json *o = alerts_active_json(a, NULL, NULL);
	assert_string_equal(
		json_get_str(json_get(json_at(json_get(o, "alerts"), 0), "annotations"), "summary"),
		"the data dir's file system is 95.0% full");
	json_free(o);
	alerts_free(a);
}

/* ------------------------------------------------------------------------ */
/* The state file                                                           */

static void test_alerts__restart_keeps_firing_alerts_without_announcing_them_again(void **state)
{
	struct world *w = *state;
	struct alerts *a = start(w, NO_BUILTINS HIGH_RULE, true);
	series_set(w, "paasops_host_load1", 2, NULL, NULL, NULL, NULL);
	at(w, a, 0);
	at(w, a, 10);
	expect_notices(w, 1, "firing High");
	alerts_stop(a); /* saves */
	alerts_free(a);

	a = start(w, NO_BUILTINS HIGH_RULE, true);
	at(w, a, 12);
	assert_state(a, "High", "firing");
	expect_notices(w, 1, "firing High");
	/* It resolves as usual once clear for keep_firing_for. */
	series_set(w, "paasops_host_load1", 0, NULL, NULL, NULL, NULL);
	at(w, a, 13);
	at(w, a, 18);
	expect_notices(w, 2, "firing High", "resolved High");
	alerts_stop(a);
	alerts_free(a);

	/* History survives too; an alert whose rule is gone resolves at once. */
	series_set(w, "paasops_host_load1", 2, NULL, NULL, NULL, NULL);
	a = start(w, NO_BUILTINS HIGH_RULE, true);
	assert_int_equal(history_len(a), 1);
	at(w, a, 20);
	at(w, a, 30);
	alerts_stop(a);
	alerts_free(a);
	a = start(w, NO_BUILTINS "rules: []\n", true);
	at(w, a, 31);
	expect_notices(w, 4, "firing High", "resolved High", "firing High", "resolved High");
	assert_int_equal(history_len(a), 2);
	alerts_free(a);
}

static void test_alerts__restart_keeps_a_failed_deploy_until_a_deploy_succeeds(void **state)
{
	struct world *w = *state;
	const char *rules = "keep_firing_for: 0s\nbuiltin:\n  deploy_failed: {expire: 10m}\n";
	struct alerts *a = start(w, rules, true);
	alerts_on_deploy(a, "shop", 3, "failed", "build failed");
	at(w, a, 0);
	expect_notices(w, 1, "firing DeployFailed");
	alerts_stop(a);
	/* What the shutdown itself reports is not remembered. */
	alerts_on_deploy(a, "cart", 2, "failed", "daemon stopping");
	alerts_free(a);

	a = start(w, rules, true);
	at(w, a, 1);
	at(w, a, 2);
	expect_notices(w, 1, "firing DeployFailed");
	struct json *o = alerts_active_json(a, NULL, NULL);
	assert_int_equal(json_size(json_get(o, "alerts")), 1);
	const struct json *x = json_at(json_get(o, "alerts"), 0);
	assert_string_equal(json_get_str(json_get(x, "labels"), "app"), "shop");
	assert_string_equal(json_get_str(json_get(x, "annotations"), "description"), "build failed");
	json_free(o);
	/* expire counts from the failure, not from the restart. */
	at(w, a, 599);
	expect_notices(w, 1, "firing DeployFailed");
	at(w, a, 600);
	expect_notices(w, 2, "firing DeployFailed", "resolved DeployFailed");
	alerts_stop(a);
	alerts_free(a);

	/* A deploy that succeeds after a restart resolves it. */
	a = start(w, rules, true);
	alerts_on_deploy(a, "shop", 4, "rolled-back", "new instances fail their health check");
	at(w, a, 601);
	alerts_stop(a);
	alerts_free(a);
	a = start(w, rules, true);
	at(w, a, 602);
	alerts_on_deploy(a, "shop", 5, "succeeded", NULL);
	at(w, a, 603);
	expect_notices(w, 4, "firing DeployFailed", "resolved DeployFailed", "firing DeployFailed",
		       "resolved DeployFailed");
	alerts_free(a);
}

static void test_alerts__damaged_state_file_is_set_aside(void **state)
{
	struct world *w = *state;
	char path[128];
	snprintf(path, sizeof(path), "%s/alerts.json", w->dir);
	FILE *f = fopen(path, "w");
	fputs("{not json", f);
	fclose(f);
	struct alerts *a = start(w, NO_BUILTINS, true);
	snprintf(path, sizeof(path), "%s/alerts.json.damaged", w->dir);
	assert_int_equal(access(path, F_OK), 0);
	alerts_free(a);
}

/* ------------------------------------------------------------------------ */
/* Rules from files and specs                                               */

static char *rules_err(const char *text)
{
	struct al_settings set;
	struct al_rules rules = {0};
	char *err = NULL;
	assert_int_equal(al_rules_parse(text, strlen(text), "alerts.yaml", &set, &rules, &err),
			 -EINVAL);
	assert_int_equal(rules.n, 0);
	return err;
}

static void assert_line(const char *text, const char *line)
{
	for (const char *p = text; p && *p;) {
		size_t n = strcspn(p, "\n");
		if (n == strlen(line) && !strncmp(p, line, n))
			return;
		p += n + (p[n] == '\n');
	}
	fail_msg("missing line:\n  %s\nin:\n%s", line, text);
}

static void test_alerts__rules_file_errors_name_the_place_and_a_likely_key(void **state)
{
	char *err = rules_err("evaluation_intervl: 1s\n"
			      "builtin:\n"
			      "  crash_lop: {enabled: false}\n"
			      "  crash_loop: {valu: 1, value: 2}\n"
			      "rules:\n"
			      "  - {name: a, expr: \"rate(x[5m]\", op: \">\", value: 1}\n"
			      "  - {name: a, metric: m, fn: rat, op: \"=\", value: x, severity: loud}\n"
			      "  - {metric: m, expr: m}\n"
			      "  - name: c\n"
			      "    metric: m\n"
			      "    op: >\n"
			      "    value: 1\n"
			      "    labels: {alertname: x}\n");
	assert_line(err, "alerts.yaml:1:1: unknown key 'evaluation_intervl' at the top level (did "
			 "you mean 'evaluation_interval'?)");
	assert_line(err, "alerts.yaml:3:3: unknown key 'crash_lop' in 'builtin' (did you mean "
			 "'crash_loop'?)");
	assert_line(err, "alerts.yaml:4:16: unknown key 'valu' in built-in rule 'crash_loop' (did "
			 "you mean 'value'?)");
	assert_line(err, "alerts.yaml:6:21: 'expr' in rule 'a': invalid expression 'rate(x[5m]': "
			 "expected ')' at offset 10");
	assert_line(err, "alerts.yaml:7:30: 'fn' in rule 'a' must be one of 'raw', 'rate', 'avg', "
			 "'min', 'max', 'sum', 'p50', 'p90', 'p95' or 'p99', found 'rat' (did you mean "
			 "'raw'?)");
	assert_line(err, "alerts.yaml:7:39: 'op' in rule 'a' must be one of '==', '!=', '>', '>=', "
			 "'<' or '<=', found '=' (did you mean '=='?)");
	assert_line(err, "alerts.yaml:7:51: 'value' in rule 'a' must be a number, found 'x'");
	assert_line(err, "alerts.yaml:7:64: 'severity' in rule 'a' must be one of 'info', "
			 "'warning' or 'critical', found 'loud'");
	assert_line(err, "alerts.yaml:7:12: duplicate rule name 'a'");
	assert_line(err, "alerts.yaml:8:5: use either 'expr' or 'metric' in rule 3");
	assert_line(err, "alerts.yaml:8:5: missing required key 'name' in rule 3");
	assert_line(err, "alerts.yaml:11:5: 'op' in rule 'c' is empty: quote the operator, e.g. "
			 "op: \">\"");
	assert_line(err, "alerts.yaml:13:14: label 'alertname' in 'labels' in rule 'c' is set by "
			 "the rule: use 'name'");
	free(err);
}

static void test_alerts__settings_below_their_minimum_say_the_minimum(void **state)
{
	char *err = rules_err("evaluation_interval: 10ms\nalertmanager_resend: 500ms\n");
	assert_line(err, "alerts.yaml:1:22: 'evaluation_interval' must be at least 100ms, found "
			 "'10ms'");
	assert_line(err, "alerts.yaml:2:22: 'alertmanager_resend' must be at least 1s, found "
			 "'500ms'");
	free(err);
}

static void test_alerts__rules_file_refuses_rules_that_can_never_fire(void **state)
{
	char *err = rules_err("rules:\n"
			      "  - {name: a, expr: paasops_http_request_duration_seconds, op: \">\", value: 1}\n"
			      "  - {name: b, expr: \"p95(paasops_host_load1[5m])\", op: \">\", value: 1}\n"
			      "  - {name: c, metric: nonexistent_metric, op: \">\", value: 1}\n"
			      "  - {name: d, metric: paasops_instance_open_fd, op: \">\", value: 1}\n"
			      "  - {name: e, metric: http_p95_second, op: \">\", value: 1}\n"
			      "  - {name: f, expr: paasops_replicas_ready, divide_by: nothing, op: \">\",\n"
			      "     value: 1}\n");
	assert_line(err, "alerts.yaml:2:21: 'expr' in rule 'a': "
			 "'paasops_http_request_duration_seconds' is a histogram: ask for a quantile of "
			 "it (p50, p90, p95 or p99), or for the series "
			 "paasops_http_request_duration_seconds_count, "
			 "paasops_http_request_duration_seconds_sum or "
			 "paasops_http_request_duration_seconds_bucket");
	assert_line(err, "alerts.yaml:3:21: 'expr' in rule 'b': 'paasops_host_load1' is a gauge: "
			 "quantiles (p50, p90, p95, p99) need a histogram, such as "
			 "paasops_http_request_duration_seconds");
	assert_line(err, "alerts.yaml:4:23: 'metric' in rule 'c': unknown metric "
			 "'nonexistent_metric' (doc/metrics.md lists them)");
	assert_line(err, "alerts.yaml:5:23: 'metric' in rule 'd': unknown metric "
			 "'paasops_instance_open_fd' (did you mean 'paasops_instance_open_fds'?)");
	assert_line(err, "alerts.yaml:6:23: 'metric' in rule 'e': unknown metric "
			 "'http_p95_second' (did you mean 'http_p95_seconds'?)");
	assert_line(err, "alerts.yaml:7:56: 'divide_by' in rule 'f': unknown metric 'nothing' "
			 "(doc/metrics.md lists them)");
	free(err);
}

static void test_alerts__rules_file_builds_expressions_from_metric_keys(void **state)
{
	const char *text = "rules:\n"
			   "  - {name: a, metric: paasops_instance_open_fds, fn: max, window: 1m,\n"
			   "     match: {process: \"w\\\"eb\"}, by: [app, process], op: \">\", value: 1}\n"
			   "  - {name: b, app: shop, metric: http_5xx_ratio, window: 2m, op: \">\", value: 1}\n"
			   "  - {name: c, metric: paasops_replicas_ready, op: \"<\", value: 1}\n";
	struct al_settings set;
	struct al_rules rules = {0};
	char *err = NULL;
	if (al_rules_parse(text, strlen(text), "x.yaml", &set, &rules, &err) < 0)
		fail_msg("%s", err);
	const struct al_rule *r = rules.v[rules.n - 3];
	assert_string_equal(r->expr, "max(paasops_instance_open_fds{process=\"w\\\"eb\"}[1m]) by "
				     "(app, process)");
	r = rules.v[rules.n - 2];
	assert_string_equal(r->expr, "rate(paasops_http_requests_total{app=\"shop\",code=\"5xx\"}[2m]) "
				     "by (app, process)");
	assert_string_equal(r->divide_by,
			    "rate(paasops_http_requests_total{app=\"shop\"}[2m]) by (app, process)");
	assert_string_equal(r->app, "shop");
	r = rules.v[rules.n - 1];
	assert_string_equal(r->expr, "paasops_replicas_ready");
	al_rules_release(&rules);
	free(set.external_url);
}

static void test_alerts__every_app_metric_of_the_spec_has_an_expression(void **state)
{
	for (size_t k = 0; k < spec_n_alert_metrics; k++) {
		char *expr = NULL, *div = NULL, *buf = NULL, *err = NULL;
		if (al_alias_expr(spec_alert_metrics[k], "app=\"a\"", 0, &expr, &div) < 0)
			fail_msg("no expression for '%s'", spec_alert_metrics[k]);
		if (metrics_expr_check(expr, &err) < 0)
			fail_msg("%s: %s", spec_alert_metrics[k], err);
		if (div && metrics_expr_check(div, &err) < 0)
			fail_msg("%s: %s", spec_alert_metrics[k], err);
		free(buf);
		free(expr);
		free(div);
	}
	/* The built-in rules' expressions can have values too. */
	struct al_settings set;
	struct al_rules rules = {0};
	char *err = NULL;
	assert_int_equal(al_rules_parse(NULL, 0, NULL, &set, &rules, &err), 0);
	for (size_t k = 0; k < rules.n; k++) {
		const struct al_rule *r = rules.v[k];
		const char *exprs[] = {r->expr, r->divide_by, r->only_if};
		for (size_t j = 0; j < ARRAY_SIZE(exprs); j++)
			if (exprs[j] && metrics_expr_check(exprs[j], &err) < 0)
				fail_msg("%s: %s", r->key, err);
	}
	al_rules_release(&rules);
	free(set.external_url);
}

static void test_alerts__spec_rules_imply_the_app(void **state)
{
	const char *yaml = "app: shop\n"
			   "processes:\n  web: {command: x}\n"
			   "alerts:\n"
			   "  - {name: slow, metric: http_p95_seconds, window: 1m, op: \">\", value: 0.5,\n"
			   "     for: 2m, severity: critical}\n"
			   "  - {name: fds, metric: paasops_instance_open_fds, fn: max, match: {process: web},\n"
			   "     op: \">\", value: 100, keep_firing_for: 0s}\n";
	char *err = NULL;
	struct spec *s = spec_parse(yaml, strlen(yaml), "paasops.yaml", &err);
	if (!s)
		fail_msg("%s", err);
	struct al_rules rules = {0};
	al_rules_from_spec("shop", s, &rules);
	assert_int_equal(rules.n, 2);
	assert_string_equal(rules.v[0]->key, "spec:shop:slow");
	assert_string_equal(rules.v[0]->expr,
			    "p95(paasops_http_request_duration_seconds{app=\"shop\"}[1m]) by (app, process)");
	assert_int_equal(rules.v[0]->for_ms, 120000);
	assert_string_equal(rules.v[0]->severity, "critical");
	assert_string_equal(rules.v[1]->expr,
			    "max(paasops_instance_open_fds{app=\"shop\",process=\"web\"}[5m])");
	assert_int_equal(rules.v[1]->keep_firing_ms, 0);
	assert_int_equal(rules.v[0]->keep_firing_ms, -1);
	al_rules_release(&rules);
	spec_free(s);
}

static void test_alerts__templates_fill_values_and_labels(void **state)
{
	struct al_label labels[] = {{"app", "shop"}, {"instance", "shop.web.1"}};
	struct al_label extra[] = {{"reason", "exit 3"}};
	struct strbuf sb;
	strbuf_init(&sb, 0);
	al_render("{{ $labels.instance }} at {{$value}} ({{ $percent }}, over {{ $threshold }} in "
		  "{{ $window }}): {{ $labels.reason }}{{ $labels.nope }} {{ $other }} {{ open",
		  0.25, 0.2, 300000, labels, 2, extra, 1, &sb);
	assert_string_equal(sb.buf, "shop.web.1 at 0.25 (25.0%, over 0.2 in 5m): exit 3 "
				    "{{ $other }} {{ open");
	strbuf_reset(&sb);
	al_render("{{ $value }}", 123456789, 0, 0, NULL, 0, NULL, 0, &sb);
	assert_string_equal(sb.buf, "123456789");
	strbuf_release(&sb);
}

/* ------------------------------------------------------------------------ */
/* Notifier bodies                                                          */

static void test_alerts__notifier_bodies(void **state)
{
	struct al_label labels[] = {{"alertname", "High"}, {"app", "shop"}, {"severity", "critical"}};
	struct al_alert x = {.rule_key = "config:High", .name = "High", .severity = "critical",
			     .fp = "fp", .labels = labels, .n_labels = 3, .summary = "load is 2",
			     .state = AL_FIRING, .value = 2, .fired_at = 1700000000000LL};
	struct al_alert y = x;
	y.state = AL_RESOLVED;
	y.resolved_at = 1700000060000LL;
	struct al_note notes[] = {{AL_NOTE_FIRING, &x}, {AL_NOTE_REMINDER, &x}, {AL_NOTE_RESOLVED, &y}};
	const char *event;

	struct al_notifier am = {.kind = ALERTS_ALERTMANAGER};
	struct json *b = al_notify_body(&am, notes, 3, "http://paas:7070", 1700000030000LL, 240000,
					false, &event);
	assert_string_equal(event, "alert.firing");
	assert_int_equal(json_size(b), 2); /* no reminders for Alertmanager */
	const struct json *f = json_at(b, 0);
	assert_string_equal(json_get_str(json_get(f, "labels"), "app"), "shop");
	assert_string_equal(json_get_str(json_get(f, "annotations"), "summary"), "load is 2");
	assert_string_equal(json_get_str(f, "startsAt"), "2023-11-14T22:13:20.000Z");
	assert_string_equal(json_get_str(f, "endsAt"), "2023-11-14T22:17:50.000Z");
	assert_string_equal(json_get_str(f, "generatorURL"), "http://paas:7070/v1/alerts");
	assert_string_equal(json_get_str(json_at(b, 1), "endsAt"), "2023-11-14T22:14:20.000Z");
	json_free(b);
	assert_null(al_notify_body(&am, &notes[1], 1, "http://p", 0, 1, false, &event));

	struct al_notifier wh = {.kind = ALERTS_WEBHOOK};
	b = al_notify_body(&wh, &notes[2], 1, "http://p", 1700000060000LL, 1, false, &event);
	assert_string_equal(event, "alert.resolved");
	assert_string_equal(json_get_str(b, "status"), "resolved");
	const struct json *wa = json_at(json_get(b, "alerts"), 0);
	assert_string_equal(json_get_str(wa, "status"), "resolved");
	assert_string_equal(json_get_str(wa, "endsAt"), "2023-11-14T22:14:20.000Z");
	assert_int_equal(strlen(json_get_str(wa, "fingerprint")), 16);
	json_free(b);

	struct al_notifier sl = {.kind = ALERTS_SLACK};
	b = al_notify_body(&sl, notes, 3, "http://p", 0, 1, false, &event);
	assert_string_equal(json_get_str(b, "text"),
			    "[FIRING] High (critical): load is 2\n"
			    "[STILL FIRING] High (critical): load is 2\n"
			    "[RESOLVED] High (critical): load is 2");
	json_free(b);

	char *u = al_url_redact("https://user:pw@hooks.slack.com/services/T0/B0/secret?x=1");
	assert_string_equal(u, "https://hooks.slack.com");
	free(u);
}

static void test_alerts__flags_are_checked(void **state)
{
	struct alerts_config cfg;
	alerts_config_defaults(&cfg);
	char *err = NULL;
	assert_int_equal(alerts_config_parse(&cfg, "alertmanager", "localhost:9093", &err), -EINVAL);
	assert_string_equal(err, "invalid --alertmanager 'localhost:9093' (an http:// or https:// URL)");
	free(err);
	assert_int_equal(alerts_config_parse(&cfg, "alert-interval", "10ms", &err), -EINVAL);
	free(err);
	assert_int_equal(alerts_config_parse(&cfg, "alert-rules", "/nonexistent/rules.yaml", &err),
			 -EINVAL);
	assert_string_equal(err, "cannot read alert rules '/nonexistent/rules.yaml': No such file or "
				 "directory");
	free(err);
	assert_int_equal(alerts_config_parse(&cfg, "alert-slack", "https://hooks.example/x", &err), 0);
	assert_int_equal(alerts_config_parse(&cfg, "alert-keep-firing-for", "0s", &err), 0);
	assert_int_equal(cfg.keep_firing_ms, 0);
	assert_int_equal(cfg.n_notifiers, 1);
	alerts_config_release(&cfg);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_alerts__pending_then_firing_after_for, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alerts__pending_that_clears_is_dropped_silently, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_alerts__firing_resolves_only_after_staying_clear,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_alerts__reminds_every_repeat_interval_while_firing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_alerts__for_zero_fires_at_the_first_evaluation, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_alerts__each_label_set_is_its_own_alert, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_alerts__ratio_and_guard_join_on_labels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alerts__evaluation_errors_are_kept_on_the_rule, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_alerts__failed_deploy_fires_until_a_deploy_succeeds,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_alerts__failed_deploy_alert_expires, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alerts__health_check_failing_follows_instance_events,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_alerts__builtins_can_be_tuned_and_turned_off, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_alerts__disk_rule_compares_the_used_fraction, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_alerts__restart_keeps_firing_alerts_without_announcing_them_again, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_alerts__restart_keeps_a_failed_deploy_until_a_deploy_succeeds, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_alerts__damaged_state_file_is_set_aside, setup, teardown),
		cmocka_unit_test(test_alerts__rules_file_errors_name_the_place_and_a_likely_key),
		cmocka_unit_test(test_alerts__settings_below_their_minimum_say_the_minimum),
		cmocka_unit_test(test_alerts__rules_file_refuses_rules_that_can_never_fire),
		cmocka_unit_test(test_alerts__rules_file_builds_expressions_from_metric_keys),
		cmocka_unit_test(test_alerts__every_app_metric_of_the_spec_has_an_expression),
		cmocka_unit_test(test_alerts__spec_rules_imply_the_app),
		cmocka_unit_test(test_alerts__templates_fill_values_and_labels),
		cmocka_unit_test(test_alerts__notifier_bodies),
		cmocka_unit_test(test_alerts__flags_are_checked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
