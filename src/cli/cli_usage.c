/* cli_usage.c: `paasops usage [APP]`, the capacity planner's report: per
 * app what it used over a window (CPU core-hours, memory GiB-hours,
 * requests, errors, cost) and where its CPU and memory are heading. The
 * daemon computes everything (GET /v1/usage); this file only prints it. */
#include "cli/cli_internal.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double jnum(const struct json *o, const char *key)
{
	const struct json *v = json_get(o, key);
	return json_is_number(v) ? json_num(v) : NAN;
}

static void fmt_bytes(double v, char *buf, size_t size)
{
	if (isnan(v))
		snprintf(buf, size, "-");
	else
		cli__format_bytes((int64_t)llround(v), buf, size);
}

/* An amount with its currency ("12.34 EUR"), or "-" without prices. */
static void fmt_cost(double v, const char *currency, char *buf, size_t size)
{
	if (isnan(v))
		snprintf(buf, size, "-");
	else
		snprintf(buf, size, "%.2f%s%s", v, currency ? " " : "", currency ? currency : "");
}

/* "cpu 0.42 -> 0.61 cores in 30d (+0.006/day, 12 points)" for one resource. */
static void forecast_text(struct strbuf *sb, const char *what, const struct json *f,
			  bool bytes, const char *in)
{
	strbuf_addf(sb, "%s ", what);
	if (!json_is_object(f)) {
		strbuf_adds(sb, "no trend yet");
		return;
	}
	double cur = jnum(f, "current"), proj = jnum(f, "projected"), slope = jnum(f, "slope_per_day");
	long long n = (long long)jnum(f, "points");
	if (bytes) {
		char a[32], b[32], s[32];
		fmt_bytes(fmax(cur, 0), a, sizeof(a));
		fmt_bytes(proj, b, sizeof(b));
		fmt_bytes(fabs(slope), s, sizeof(s));
		strbuf_addf(sb, "%s -> %s in %s (%s%s/day, %lld points)", a, b, in, slope < 0 ? "-" : "+",
			    s, n);
	} else {
		strbuf_addf(sb, "%.2f -> %.2f cores in %s (%+.3g/day, %lld points)", fmax(cur, 0), proj,
			    in, slope, n);
	}
}

int cli__cmd_usage(struct cli *c)
{
	const char *app = c->inv->n_pos ? c->inv->pos[0] : NULL;
	const char *since_s = cli__flag(c->inv, "since"), *forecast_s = cli__flag(c->inv, "forecast");
	int64_t v;
	if (since_s && (duration_parse(since_s, &v) < 0 || v <= 0))
		return cli__usage_error(c, "invalid --since '%s' (a duration like 7d or 12h)", since_s);
	if (forecast_s && (duration_parse(forecast_s, &v) < 0 || v <= 0))
		return cli__usage_error(c, "invalid --forecast '%s' (a duration like 30d)", forecast_s);

	struct strbuf path;
	strbuf_init(&path, 128);
	strbuf_adds(&path, "/v1/usage");
	const char *keys[] = {"since", "forecast", "app"};
	const char *vals[] = {since_s, forecast_s, app};
	for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
		if (vals[k])
			cli__query_add(&path, keys[k], vals[k]);
	}
	struct cli_response res;
	c->query_is_usage = true; /* the daemon checks the durations' range: its 400 is a bad flag */
	int rc = cli__call(c, "GET", path.buf, NULL, &res);
	strbuf_release(&path);
	if (rc)
		return rc;
	if (c->inv->json) {
		cli__print_json(c, res.json, true);
		cli__response_release(&res);
		return CLI_EXIT_OK;
	}

	const struct json *prices = json_get(res.json, "prices");
	const char *currency = json_get_str(prices, "currency");
	char in[32];
	duration_format((int64_t)llround(jnum(res.json, "forecast_days") * 86400000.0), in, sizeof(in));
	char span[32];
	duration_format((int64_t)llround(jnum(res.json, "covered_seconds")) * 1000, span, sizeof(span));
	fprintf(c->out, "usage from %s to %s (%s of history)\n\n",
		json_get_str(res.json, "covered_from"), json_get_str(res.json, "to"), span);

	static const char *const headers[] = {"APP",     "CPU CORE-H", "AVG CORES", "PEAK CORES",
					      "MEM GIB-H", "AVG MEM",   "PEAK MEM",  "REQUESTS",
					      "5XX %",   "COST"};
	struct cli_table t;
	cli__table_init(&t, headers, ARRAY_SIZE(headers));
	struct strbuf fc;
	strbuf_init(&fc, 256);
	const struct json *apps = json_get(res.json, "apps");
	for (const struct json *a = json_first(apps); a; a = json_next(a)) {
		char b1[32], b2[32], cost[48];
		cli__table_add(&t, json_get_str(a, "app"));
		cli__table_addf(&t, "%.3f", jnum(a, "cpu_core_hours"));
		cli__table_addf(&t, "%.2f", jnum(a, "cpu_avg_cores"));
		cli__table_addf(&t, "%.2f", jnum(a, "cpu_peak_cores"));
		cli__table_addf(&t, "%.3f", jnum(a, "memory_gib_hours"));
		fmt_bytes(jnum(a, "memory_avg_bytes"), b1, sizeof(b1));
		fmt_bytes(jnum(a, "memory_peak_bytes"), b2, sizeof(b2));
		cli__table_add(&t, b1);
		cli__table_add(&t, b2);
		cli__table_addf(&t, "%.0f", jnum(a, "requests"));
		double er = jnum(a, "error_ratio");
		if (isnan(er))
			cli__table_add(&t, "-");
		else
			cli__table_addf(&t, "%.2f", er * 100);
		fmt_cost(jnum(a, "cost"), currency, cost, sizeof(cost));
		cli__table_add(&t, cost);

		const struct json *f = json_get(a, "forecast");
		strbuf_addf(&fc, "%s: ", json_get_str(a, "app"));
		forecast_text(&fc, "cpu", json_get(f, "cpu_cores"), false, in);
		strbuf_adds(&fc, "; ");
		forecast_text(&fc, "memory", json_get(f, "memory_bytes"), true, in);
		double fcost = jnum(f, "cost");
		if (!isnan(fcost)) {
			fmt_cost(fcost, currency, cost, sizeof(cost));
			strbuf_addf(&fc, "; cost over %s %s", in, cost);
		}
		strbuf_addc(&fc, '\n');
	}
	if (cli__table_rows(&t) == 0) {
		fprintf(c->err, "no apps yet: create one with 'paasops apply -f paasops.yaml'\n");
	} else {
		cli__table_print(c, &t);
		const char *per = json_get_str(res.json, "forecast_period");
		fprintf(c->out, "\nforecast (linear trend of %s averages):\n%s",
			per && !strcmp(per, "day") ? "daily" : "hourly", fc.buf);
		const struct json *total = json_get(res.json, "total");
		if (json_is_object(prices)) {
			char a[48], b[48];
			fmt_cost(jnum(total, "cost"), currency, a, sizeof(a));
			fmt_cost(jnum(total, "forecast_cost"), currency, b, sizeof(b));
			fprintf(c->out, "\ntotal cost %s; forecast for the next %s %s\n", a, in, b);
		}
	}
	strbuf_release(&fc);
	cli__table_release(&t);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

const struct cli_opt cli__usage_opts[] = {
	{"since", 0, "DURATION", false, "how far back (default 30d; clamped to the history held)"},
	{"forecast", 0, "DURATION", false, "how far ahead to project the trend (default 30d)"},
	{0},
};
