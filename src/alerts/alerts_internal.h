/* alerts_internal.h: what the alerts module's files share with each other
 * and with tests/unit/test_alerts.c: rules (alerts_rules.c), the evaluation
 * engine and its alerts (alerts.c) and notifiers (alerts_notify.c). Names
 * start with al_ (as the metrics module's start with mx_). Not for other modules:
 * use alerts.h. */
#ifndef PAASOPS_ALERTS_INTERNAL_H
#define PAASOPS_ALERTS_INTERNAL_H
#include "alerts/alerts.h"
#include "core/strbuf.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spec;
struct httpc;
struct webhooks;

/* ------------------------------------------------------------------------ */
/* Rules                                                                    */

enum al_source { AL_BUILTIN, AL_CONFIG, AL_SPEC };
/* METRIC rules evaluate expressions; HEALTH and DEPLOY rules read the
 * conditions that events set. */
enum al_kind { AL_METRIC, AL_HEALTH, AL_DEPLOY };
enum al_op { AL_GT, AL_GE, AL_LT, AL_LE, AL_EQ, AL_NE };

extern const char *const al_op_names[]; /* ">", ">=", ... by enum al_op */
extern const char *const al_source_names[];
bool al_op_holds(enum al_op op, double v, double threshold);
int al_op_parse(const char *s, enum al_op *op);

struct al_label {
	char *name, *value;
};

struct al_alert;

/* One rule. Every string is owned. */
struct al_rule {
	char *key;  /* unique: "builtin:crash_loop", "config:NAME", "spec:APP:NAME" */
	char *name; /* the alertname label */
	enum al_source source;
	enum al_kind kind;
	char *app; /* spec rules and config rules with app: only that app's series */
	/* METRIC: value = expr [/ divide_by] [then 1 - value when complement],
	 * kept only where only_if holds for the same labels. */
	char *expr, *divide_by, *only_if;
	enum al_op op, only_if_op;
	double value, only_if_value;
	bool complement;
	bool per_target; /* threshold per (app, process) from the targets table */
	int64_t window_ms; /* for {{ $window }}; 0: none */
	int64_t for_ms;
	int64_t keep_firing_ms; /* -1: the module's default */
	int64_t repeat_ms;      /* -1: the module's default */
	int64_t expire_ms;      /* DEPLOY: conditions clear by themselves after it; 0: never */
	char *severity, *summary, *description;
	struct al_label *labels; /* static labels added to every alert */
	size_t n_labels;
	bool enabled;
	/* Engine state. */
	char *error;             /* the last evaluation's error, or NULL */
	struct al_alert *alerts; /* this rule's active alerts (rnext list) */
	size_t n_alerts;
	bool keep; /* sync marker */
};

struct al_rule *al_rule_new(void);
void al_rule_free(struct al_rule *r);
/* A deep copy without engine state. */
struct al_rule *al_rule_dup(const struct al_rule *r);
/* Whether two rules evaluate the same thing (alerts may carry over). */
bool al_rule_same_expr(const struct al_rule *a, const struct al_rule *b);

/* What a rules file sets besides its rules; -1 where it is silent. */
struct al_settings {
	int64_t interval_ms, keep_firing_ms, repeat_ms, resend_ms;
	char *external_url;
};

/* A growable list of rules (owned). */
struct al_rules {
	struct al_rule **v;
	size_t n, alloc;
};
void al_rules_add(struct al_rules *l, struct al_rule *r);
void al_rules_release(struct al_rules *l);

/* Parses a rules file's text: settings, overrides of the built-in rules and
 * config rules. Appends the enabled built-in rules (tuned) and the config
 * rules to out. 0, or -EINVAL with *err listing every problem as
 * "FILE:LINE:COL: message" lines (caller frees). text NULL: no file (the
 * built-in rules with their defaults). */
int al_rules_parse(const char *text, size_t len, const char *filename, struct al_settings *set,
		   struct al_rules *out, char **err);
/* The rules of one app's spec (`alerts:`), appended to out. Rules that
 * cannot be turned into an expression are skipped with a warning in the
 * daemon's log (the spec parser has validated them already). */
void al_rules_from_spec(const char *app, const struct spec *s, struct al_rules *out);
/* The expression behind an app metric of a spec ("http_p95_seconds"),
 * with matchers (already joined: `app="shop",process="web"`) and window.
 * Sets *divide_by for ratios (caller frees both). -ENOENT when unknown. */
int al_alias_expr(const char *alias, const char *matchers, int64_t window_ms, char **expr,
		  char **divide_by);
/* Appends `name="value"` with the value escaped for metrics expressions. */
void al_matcher_add(struct strbuf *sb, const char *name, const char *value);

/* Renders an annotation template: {{ $value }}, {{ $percent }},
 * {{ $threshold }}, {{ $window }} and {{ $labels.NAME }} (from the alert's
 * labels, then extra). Unknown placeholders stay as written. */
void al_render(const char *tmpl, double value, double threshold, int64_t window_ms,
	       const struct al_label *labels, size_t n_labels, const struct al_label *extra,
	       size_t n_extra, struct strbuf *out);

/* ------------------------------------------------------------------------ */
/* Alerts                                                                   */

enum al_state { AL_PENDING, AL_FIRING, AL_RESOLVED };
extern const char *const al_state_names[];

/* One alert: a rule and one label set. Labels are sorted by name and
 * include alertname and severity. Owned by the engine's table while
 * active, by the history once resolved. */
struct al_alert {
	char *rule_key, *name, *severity;
	char *fp; /* rule key + labels: the identity */
	struct al_label *labels;
	size_t n_labels;
	char *summary, *description;
	enum al_state state;
	double value, threshold;
	int64_t active_at, fired_at, clear_since, last_sent, resolved_at; /* wall ms; 0: never */
	bool seen;
	struct al_rule *rule; /* NULL once resolved, or while restored and unclaimed */
	struct al_alert *hnext, *rnext;
};

void al_alert_free(struct al_alert *x);
/* The label's value, or NULL. */
const char *al_alert_label(const struct al_alert *x, const char *name);
/* JSON of an alert, for the API and the state file. */
struct json *al_alert_json(const struct al_alert *x, const char *external_url);

/* ------------------------------------------------------------------------ */
/* Notifiers                                                                */

enum al_notice_kind { AL_NOTE_FIRING, AL_NOTE_REMINDER, AL_NOTE_RESOLVED };
extern const char *const al_notice_names[];

struct al_note {
	enum al_notice_kind kind;
	const struct al_alert *alert; /* borrowed for the dispatch */
};

struct al_notifier {
	char *name; /* "alertmanager", "webhook", "slack", then "webhook-2", ... */
	enum alerts_notifier_kind kind;
	char *url;  /* as configured */
	char *post_url; /* where it posts (Alertmanager: .../api/v2/alerts) */
	struct webhooks *queue;
};

/* What a notifier posts for a batch of notes: a JSON body and the event
 * name (X-Paasops-Event). NULL when there is nothing to say (Alertmanager
 * and reminders). external_url: generatorURL's base. */
struct json *al_notify_body(const struct al_notifier *n, const struct al_note *notes, size_t n_notes,
			    const char *external_url, int64_t now_ms, int64_t valid_ms,
			    bool test, const char **event);
/* A one-line summary of a note (logs, Slack). Caller frees. */
char *al_note_line(const struct al_note *note);
/* Redacts a URL to scheme://host[:port] (Slack URLs are secrets). Caller frees. */
char *al_url_redact(const char *url);

#endif
