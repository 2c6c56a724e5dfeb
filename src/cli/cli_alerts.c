/* cli_alerts.c: `alerts` (active alerts; with --rules the rules and
 * notifiers), `alerts history` (resolved alerts, newest first) and `alerts
 * test NOTIFIER`. They read the daemon only through /v1/alerts. */
#include "cli/cli_internal.h"
#include "compat/http.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct cli_opt cli__alerts_opts[] = {
	{"rules", 0, NULL, false, "show the rules and notifiers instead"},
	{0},
};

const struct cli_opt cli__alerts_history_opts[] = {
	{"limit", 'n', "N", false, "at most N alerts (default 20, at most 1000)"},
	{0},
};

/* What an alert is about: its instance, app and process, app, or path. */
static void subject(const struct json *labels, char *buf, size_t size)
{
	const char *inst = json_get_str(labels, "instance");
	const char *app = json_get_str(labels, "app");
	const char *proc = json_get_str(labels, "process");
	const char *path = json_get_str(labels, "path");
	if (inst)
		snprintf(buf, size, "%s", inst);
	else if (app && proc)
		snprintf(buf, size, "%s.%s", app, proc);
	else if (app)
		snprintf(buf, size, "%s", app);
	else if (path)
		snprintf(buf, size, "%s", path);
	else
		snprintf(buf, size, "-");
}

static void age_of(const struct json *v, char *buf, size_t size)
{
	int64_t ms;
	if (!json_str(v) || cli__parse_time(json_str(v), &ms) < 0) {
		snprintf(buf, size, "-");
		return;
	}
	int64_t now = time_wall_ms();
	cli__format_age(now > ms ? now - ms : 0, buf, size);
}

static const char *summary_of(const struct json *a)
{
	const char *s = json_get_str(json_get(a, "annotations"), "summary");
	return s ? s : "";
}

static void print_active(struct cli *c, const struct json *alerts)
{
	if (!json_size(alerts)) {
		fprintf(c->err, "no active alerts\n");
		return;
	}
	static const char *const head[] = {"ALERT", "STATE", "SEVERITY", "SINCE", "SUBJECT", "SUMMARY"};
	struct cli_table t;
	cli__table_init(&t, head, ARRAY_SIZE(head));
	for (const struct json *a = json_first(alerts); a; a = json_next(a)) {
		char since[32], subj[160];
		const char *state = json_get_str(a, "state");
		bool firing = str_eq(state, "firing");
		age_of(json_get(a, firing ? "fired_at" : "active_at"), since, sizeof(since));
		subject(json_get(a, "labels"), subj, sizeof(subj));
		cli__table_add(&t, json_get_str(a, "name"));
		if (firing && json_str(json_get(a, "clearing_since")))
			cli__table_add(&t, "firing (clearing)");
		else
			cli__table_add(&t, state);
		cli__table_add(&t, json_get_str(a, "severity"));
		cli__table_add(&t, since);
		cli__table_add(&t, subj);
		cli__table_add(&t, summary_of(a));
	}
	cli__table_print(c, &t);
	cli__table_release(&t);
}

static void print_rules(struct cli *c, const struct json *doc)
{
	static const char *const head[] = {"RULE", "SOURCE", "SEVERITY", "CONDITION", "FOR", "ACTIVE"};
	struct cli_table t;
	cli__table_init(&t, head, ARRAY_SIZE(head));
	for (const struct json *r = json_first(json_get(doc, "rules")); r; r = json_next(r)) {
		const char *kind = json_get_str(r, "kind");
		struct strbuf cond;
		strbuf_init(&cond, 128);
		if (str_eq(kind, "health"))
			strbuf_adds(&cond, "an instance fails its health check");
		else if (str_eq(kind, "deploy"))
			strbuf_adds(&cond, "a deploy failed or was rolled back");
		else {
			const char *div = json_get_str(r, "divide_by");
			bool comp = json_true(json_get(r, "complement"));
			strbuf_addf(&cond, "%s%s%s%s%s%s", comp ? "1 - " : "", div ? "(" : "",
				    json_get_str(r, "expr") ? json_get_str(r, "expr") : "?", div ? ") / (" : "",
				    div ? div : "", div ? ")" : "");
			const struct json *v = json_get(r, "value");
			if (json_str(v))
				strbuf_addf(&cond, " %s %s", json_get_str(r, "op"), json_str(v));
			else
				strbuf_addf(&cond, " %s %g", json_get_str(r, "op"), json_num(v));
			if (json_get_str(r, "only_if"))
				strbuf_addf(&cond, " if %s", json_get_str(r, "only_if"));
		}
		if (json_get_str(r, "error"))
			strbuf_addf(&cond, "  [error: %s]", json_get_str(r, "error"));
		int64_t for_ms = 0, active = 0;
		json_get_int(json_get(r, "for_ms"), &for_ms);
		json_get_int(json_get(r, "active"), &active);
		char f[32];
		duration_format(for_ms, f, sizeof(f));
		cli__table_add(&t, json_get_str(r, "key"));
		cli__table_add(&t, json_get_str(r, "source"));
		cli__table_add(&t, json_get_str(r, "severity"));
		cli__table_add(&t, cond.buf);
		cli__table_add(&t, f);
		cli__table_addf(&t, "%lld", (long long)active);
		strbuf_release(&cond);
	}
	struct strbuf out;
	strbuf_init(&out, 0);
	cli__table_render(&t, &out);
	cli__table_release(&t);
	const struct json *ns = json_get(doc, "notifiers");
	if (json_size(ns)) {
		static const char *const nhead[] = {"NOTIFIER", "KIND", "URL", "SENT", "FAILED",
						    "DROPPED", "QUEUED"};
		cli__table_init(&t, nhead, ARRAY_SIZE(nhead));
		for (const struct json *n = json_first(ns); n; n = json_next(n)) {
			cli__table_add(&t, json_get_str(n, "name"));
			cli__table_add(&t, json_get_str(n, "kind"));
			cli__table_add(&t, json_get_str(n, "url"));
			static const char *const counts[] = {"sent", "failed", "dropped", "queued"};
			for (size_t k = 0; k < ARRAY_SIZE(counts); k++) {
				int64_t v = 0;
				json_get_int(json_get(n, counts[k]), &v);
				cli__table_addf(&t, "%lld", (long long)v);
			}
		}
		strbuf_addc(&out, '\n');
		cli__table_render(&t, &out);
		cli__table_release(&t);
	} else {
		strbuf_adds(&out, "\nno notifiers (see --alertmanager, --alert-webhook, --alert-slack)\n");
	}
	fputs(out.buf, c->out);
	strbuf_release(&out);
}

int cli__cmd_alerts(struct cli *c)
{
	struct cli_response res;
	int rc = cli__call(c, "GET", "/v1/alerts", NULL, &res);
	if (rc)
		return rc;
	bool rules = cli__flag(c->inv, "rules") != NULL;
	if (c->inv->json)
		cli__print_json(c, rules ? res.json : json_get(res.json, "alerts"), true);
	else if (rules)
		print_rules(c, res.json);
	else
		print_active(c, json_get(res.json, "alerts"));
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

int cli__cmd_alerts_history(struct cli *c)
{
	const char *app = c->inv->n_pos ? c->inv->pos[0] : NULL;
	const char *n = cli__flag(c->inv, "limit");
	int64_t limit = 20;
	if (n && (cli__parse_count(n, 1000, &limit) < 0 || limit == 0))
		return cli__usage_error(c, "invalid --limit '%s': expected a whole number from 1 to 1000",
					n);
	struct strbuf path;
	strbuf_init(&path, 64);
	strbuf_addf(&path, "/v1/alerts/history?limit=%lld", (long long)limit);
	if (app) {
		char *e = http_url_encode(app);
		strbuf_addf(&path, "&app=%s", e);
		free(e);
	}
	struct cli_response res;
	int rc = cli__call(c, "GET", path.buf, NULL, &res);
	strbuf_release(&path);
	if (rc)
		return rc;
	const struct json *alerts = json_get(res.json, "alerts");
	if (c->inv->json) {
		cli__print_json(c, alerts, true);
	} else if (!json_size(alerts)) {
		fprintf(c->err, "no resolved alerts\n");
	} else {
		static const char *const head[] = {"RESOLVED", "ALERT", "SEVERITY", "LASTED", "SUBJECT",
						   "SUMMARY"};
		struct cli_table t;
		cli__table_init(&t, head, ARRAY_SIZE(head));
		for (const struct json *a = json_first(alerts); a; a = json_next(a)) {
			char subj[160], lasted[32] = "-";
			int64_t from, to;
			subject(json_get(a, "labels"), subj, sizeof(subj));
			const char *fired = json_get_str(a, "fired_at"), *res_at = json_get_str(a, "resolved_at");
			if (fired && res_at && cli__parse_time(fired, &from) == 0 &&
			    cli__parse_time(res_at, &to) == 0)
				cli__format_age(to > from ? to - from : 0, lasted, sizeof(lasted));
			cli__table_add(&t, res_at);
			cli__table_add(&t, json_get_str(a, "name"));
			cli__table_add(&t, json_get_str(a, "severity"));
			cli__table_add(&t, lasted);
			cli__table_add(&t, subj);
			cli__table_add(&t, summary_of(a));
		}
		cli__table_print(c, &t);
		cli__table_release(&t);
	}
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

int cli__cmd_alerts_test(struct cli *c)
{
	const char *name = c->inv->pos[0];
	struct json *body = json_object();
	json_set_str(body, "notifier", name);
	struct cli_response res;
	int rc = cli__call(c, "POST", "/v1/alerts/test", body, &res);
	json_free(body);
	if (rc)
		return rc;
	if (c->inv->json) {
		cli__print_json(c, res.json, true);
	} else {
		int64_t status = 0;
		json_get_int(json_get(res.json, "status"), &status);
		fprintf(c->out, "sent a test notification through '%s' (HTTP %lld)\n", name,
			(long long)status);
	}
	cli__response_release(&res);
	return CLI_EXIT_OK;
}
