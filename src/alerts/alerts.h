/* alerts.h: alert rules, their evaluation on the control loop, and the
 * notifiers that tell people (doc/alerts.md).
 *
 * Rules come from three places: built-in rules (crash loop, failing health
 * checks, no ready instance, 5xx ratio, p95 above target, memory near the
 * limit, data disk full, failed deploys), the daemon's rules file
 * (--alert-rules) and app specs (`alerts:`, with app=NAME implied). Every
 * interval each rule is evaluated over the metrics history (metrics_eval)
 * or, for event rules, over conditions that supervisor events and deploy
 * results set. Each alert (one rule and one label set) moves through the
 * states Prometheus uses:
 *
 *   inactive → pending (true, waiting for `for`) → firing
 *   firing → (false for keep_firing_for: flap damping) → resolved
 *
 * A firing alert is announced to every notifier once, reminded every
 * repeat_interval (webhook and Slack; Alertmanager gets periodic resends and
 * dedupes itself) and announced again when resolved. Notifiers post off the
 * loop with retries from bounded queues. Active alerts, the history and the
 * conditions of event rules are kept in DATA/alerts.json, so a daemon
 * restart neither forgets a firing alert, nor announces it twice, nor
 * resolves one that still holds.
 *
 * Everything here runs on the control loop thread. */
#ifndef PAASOPS_ALERTS_H
#define PAASOPS_ALERTS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct json;
struct metrics;
struct metrics_result;
struct supervisor;
struct store_event;
struct alerts;

#define ALERTS_MAX_NOTIFIERS 16
#define ALERTS_HISTORY_MAX 1000 /* resolved alerts kept */

enum alerts_notifier_kind { ALERTS_WEBHOOK, ALERTS_SLACK, ALERTS_ALERTMANAGER };

/* What a notification says about one alert, for alerts_notice_cb. Borrowed
 * for the call. */
struct alerts_notice {
	const char *status; /* "firing", "reminder" or "resolved" */
	const char *name, *severity, *fingerprint, *summary;
	double value;
	int64_t fired_at, resolved_at; /* wall ms; resolved_at 0 while firing */
};
typedef void (*alerts_notice_cb)(void *ctx, const struct alerts_notice *n);

struct alerts_config {
	uv_loop_t *loop;          /* borrowed; NULL: no timer, no notifiers (tests) */
	struct metrics *metrics;  /* borrowed; NULL: metric rules see no series */
	struct supervisor *sv;    /* borrowed; NULL: no rules from app specs */
	const char *data_dir;     /* borrowed; DATA/alerts.json; NULL: not persisted */
	/* -1: from the rules file, else the documented default. */
	int64_t interval_ms;     /* evaluation period; default 1 s */
	int64_t keep_firing_ms;  /* default flap damping; 30 s */
	int64_t repeat_ms;       /* reminders of firing alerts; 4 h; 0: none */
	int64_t resend_ms;       /* Alertmanager resends of active alerts; 1 m */
	char *rules_file;        /* owned; NULL: built-in rules only */
	char *external_url;      /* owned; base of generatorURL; NULL: http://HOSTNAME */
	char *secret;            /* owned; HMAC key of webhook deliveries; NULL: unsigned */
	struct {
		enum alerts_notifier_kind kind;
		char *url; /* owned */
	} notifiers[ALERTS_MAX_NOTIFIERS];
	size_t n_notifiers;
	/* Tests: a clock (wall ms), an evaluator standing in for metrics_eval
	 * (same contract), and a callback that sees every notification. */
	int64_t (*clock)(void *ctx);
	int (*eval)(void *ctx, const char *expr, int64_t at_ms, struct metrics_result *out,
		    char **err);
	alerts_notice_cb notice;
	void *test_ctx;
};

/* Fills the defaults: everything -1 or empty. */
void alerts_config_defaults(struct alerts_config *cfg);
/* Applies one `paasops serve` flag: "alert-rules" (a file), "alertmanager",
 * "alert-webhook", "alert-slack" (URLs, repeatable), "alert-secret-file",
 * "alert-interval", "alert-keep-firing-for", "alert-repeat-interval"
 * (durations) or "alert-external-url". 0, or -EINVAL with *err (caller
 * frees). */
int alerts_config_parse(struct alerts_config *cfg, const char *flag, const char *value,
			char **err);
void alerts_config_release(struct alerts_config *cfg);

/* Creates the module: reads the rules file (errors as FILE:LINE:COL, every
 * problem on its own line), sets up notifiers and restores DATA/alerts.json
 * (a damaged file is set aside). NULL + *err (caller frees). cfg's strings
 * are copied. */
struct alerts *alerts_new(const struct alerts_config *cfg, char **err);
/* Evaluates every interval from now on. */
void alerts_start(struct alerts *a);
/* Stops evaluating (so that a shutdown, which stops every instance, does not
 * resolve alerts), forgets the metrics and supervisor, and saves the state
 * on the thread pool; the loop runs until the write is done. */
void alerts_stop(struct alerts *a);
/* Frees everything, cancelling deliveries in flight. alerts_free(NULL) does
 * nothing. */
void alerts_free(struct alerts *a);

/* One evaluation now (the timer calls this). */
void alerts_evaluate(struct alerts *a);

/* Feeds event rules: every supervisor event (instances becoming unhealthy
 * or ready, apps destroyed) and every deploy's end ("succeeded", "failed",
 * "rolled-back"). Cheap; called from hooks. */
void alerts_on_event(struct alerts *a, const struct store_event *ev);
void alerts_on_deploy(struct alerts *a, const char *app, int version, const char *result,
		      const char *reason);

/* Whether an alert labelled app=APP may be shown (APP NULL: no app label). */
typedef bool (*alerts_filter_cb)(void *ctx, const char *app);

/* {"alerts": [active...], "rules": [...], "notifiers": [...], ...}; caller
 * frees. keep may be NULL (everything). */
struct json *alerts_active_json(struct alerts *a, alerts_filter_cb keep, void *ctx);
/* {"alerts": [resolved, newest first]}: at most limit, of app when not NULL. */
struct json *alerts_history_json(struct alerts *a, const char *app, int limit,
				 alerts_filter_cb keep, void *ctx);

/* Sends a test notification through one notifier, once, without retries:
 * done gets the HTTP status (or a negative value and why). -ENOENT (with
 * *err naming the notifiers there are) when there is no such notifier;
 * done is then not called. */
typedef void (*alerts_test_cb)(void *ctx, int status, const char *err);
int alerts_test(struct alerts *a, const char *notifier, alerts_test_cb done, void *ctx,
		char **err);

#endif
