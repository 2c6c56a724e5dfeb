/* cli_commands.c: the command table and one handler per command. A handler
 * builds the request, calls cli__call(), and prints either the server's JSON
 * (--json) or a human form: tables for lists, one sentence for changes. */
#include "cli/cli_internal.h"
#include "compat/http.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "spec/spec.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */

char *cli__app_path(const char *app, const char *suffix)
{
	char *enc = http_url_encode(app);
	char *p = xasprintf("/v1/apps/%s%s", enc, suffix);
	free(enc);
	return p;
}

void cli__query_add(struct strbuf *sb, const char *key, const char *value)
{
	char *enc = http_url_encode(value);
	strbuf_addf(sb, "%c%s=%s", strchr(sb->buf, '?') ? '&' : '?', key, enc);
	free(enc);
}

const char *cli__jstr(const struct json *o, const char *key, const char *fallback)
{
	const char *s = json_get_str(o, key);
	return s ? s : fallback;
}

static bool jint(const struct json *o, const char *key, int64_t *out)
{
	return json_get_int(json_get(o, key), out) == 0;
}

/* A timestamp from the API as text: strings as sent, numbers as epoch ms. */
static void time_text(const struct json *v, char *buf, size_t size)
{
	int64_t ms;
	if (json_str(v))
		strlcpy_s(buf, json_str(v), size);
	else if (json_get_int(v, &ms) == 0)
		time_format_iso(ms, buf, size);
	else
		strlcpy_s(buf, "-", size);
}

/* A timestamp from the API in epoch ms; false when absent or unparsable. */
static bool time_ms(const struct json *v, int64_t *ms)
{
	if (json_str(v))
		return cli__parse_time(json_str(v), ms) == 0;
	return json_get_int(v, ms) == 0;
}

/* "3d ago" / "in 29d". */
static void relative_text(int64_t then, char *buf, size_t size)
{
	char age[32];
	int64_t now = time_wall_ms();
	cli__format_age(then <= now ? now - then : then - now, age, sizeof(age));
	snprintf(buf, size, then <= now ? "%s ago" : "in %s", age);
}

/* Instance ids are APP.PROCESS.N; "web.1" is short for the app's own. */
static char *instance_id(const char *app, const char *arg)
{
	const char *dot = strchr(arg, '.');
	if (dot && !strchr(dot + 1, '.'))
		return xasprintf("%s.%s", app, arg);
	return xstrdup(arg);
}


/* "web=2 worker=1" from an app's processes. */
static void processes_text(const struct json *app, struct strbuf *sb)
{
	const struct json *procs = json_get(app, "processes");
	for (const struct json *p = json_first(procs); p; p = json_next(p)) {
		int64_t n = 0;
		jint(p, "instances", &n);
		if (json_true(json_get(p, "stopped"))) {
			strbuf_addf(sb, "%s%s=stopped", sb->len ? " " : "", cli__jstr(p, "name", "?"));
			continue;
		}
		strbuf_addf(sb, "%s%s=%lld", sb->len ? " " : "", cli__jstr(p, "name", "?"), (long long)n);
		const struct json *as = json_get(p, "autoscale");
		int64_t lo = 0, hi = 0;
		if (!as || !jint(as, "min", &lo) || !jint(as, "max", &hi))
			continue;
		/* "web=3(auto 1-3 inflight 2.5/2)": the range, then the value per
		 * instance against the target ("-" before the first evaluation),
		 * and " panic" while the autoscaler panics. */
		const struct json *v = json_get(as, "current_value");
		char val[32] = "-";
		if (json_is_number(v))
			snprintf(val, sizeof(val), "%.3g", json_num(v));
		strbuf_addf(sb, "(auto %lld-%lld %s %s/%g%s)", (long long)lo, (long long)hi,
			    cli__jstr(as, "metric", "?"), val, json_num(json_get(as, "target")),
			    json_true(json_get(as, "panic")) ? " panic" : "");
	}
}

/* ------------------------------------------------------------------------ */
/* Following (logs -f, events -f)                                           */

/* Set by SIGINT while following; the only mutable global of the CLI. */
static volatile sig_atomic_t follow_interrupted;

static void follow_on_sigint(int sig)
{
	(void)sig;
	follow_interrupted = 1;
}

/* Ctrl-C ends following with exit 0: blocking calls are interrupted (no
 * SA_RESTART) and the client gives up instead of retrying. */
static void follow_begin(struct cli *c)
{
	struct sigaction sa = {.sa_handler = follow_on_sigint};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	follow_interrupted = 0;
	c->client.stop = &follow_interrupted;
}

/* Sleeps one poll period; false when interrupted. */
static bool follow_wait(struct cli *c)
{
	fflush(c->out);
	if (follow_interrupted)
		return false;
	struct timespec ts = {.tv_sec = 0, .tv_nsec = CLI_FOLLOW_INTERVAL_MS * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !follow_interrupted)
		;
	return !follow_interrupted;
}

/* ------------------------------------------------------------------------ */
/* validate, apply                                                          */

/* -f FILE, a positional FILE, or paasops.yaml. */
static int spec_file(struct cli *c, const char **file)
{
	const char *f = cli__flag(c->inv, "file");
	if (f && c->inv->n_pos)
		return cli__usage_error(c, "give the spec file either as -f FILE or as an argument, "
					  "not both");
	*file = f ? f : c->inv->n_pos ? c->inv->pos[0] : "paasops.yaml";
	if (!**file)
		return cli__usage_error(c, "empty file name");
	return CLI_EXIT_OK;
}

static int cmd_validate(struct cli *c)
{
	const char *file;
	int rc = spec_file(c, &file);
	if (rc)
		return rc;
	char *err = NULL;
	struct spec *s = spec_parse_file(file, &err);
	if (!s) {
		if (!err || !*err)
			rc = cli__fail(c, "'%s' is not a valid spec", file);
		else
			rc = cli__fail_lines(c, err);
		free(err);
		return rc;
	}
	if (c->inv->json) {
		struct json *j = spec_to_json(s);
		cli__print_json(c, j, true);
		json_free(j);
	} else {
		struct strbuf names;
		strbuf_init(&names, 0);
		for (size_t i = 0; i < s->n_procs; i++)
			strbuf_addf(&names, "%s%s", i ? ", " : "", s->procs[i].name);
		fprintf(c->out, "%s: valid spec for app '%s' (processes: %s)\n", file, s->app,
			names.len ? names.buf : "none");
		strbuf_release(&names);
	}
	spec_free(s);
	return CLI_EXIT_OK;
}

/* Reads a whole spec file; the daemon refuses larger bodies anyway. */
static int read_spec(struct cli *c, const char *file, struct strbuf *out)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cli__fail(c, "cannot read '%s': %s", file, strerror(errno));
	char buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return cli__fail(c, "cannot read '%s': %s", file, strerror(e));
		}
		if (n == 0)
			break;
		strbuf_add(out, buf, (size_t)n);
		if (out->len > SPEC_MAX_BYTES) {
			close(fd);
			return cli__fail(c, "'%s' is larger than %d bytes", file, SPEC_MAX_BYTES);
		}
	}
	close(fd);
	if (memchr(out->buf, '\0', out->len))
		return cli__fail(c, "'%s' is not a text file (it contains NUL bytes)", file);
	return CLI_EXIT_OK;
}

/* The absolute directory holding file, symlinks in the directory part
 * resolved; caller frees. NULL with errno set on failure. */
static char *spec_dir(const char *file)
{
	const char *slash = strrchr(file, '/');
	char *dir = !slash ? xstrdup(".") : slash == file ? xstrdup("/")
							  : xstrndup(file, (size_t)(slash - file));
	char *abs = realpath(dir, NULL);
	free(dir);
	return abs;
}

static int cmd_apply(struct cli *c)
{
	const char *file;
	int rc = spec_file(c, &file);
	if (rc)
		return rc;
	struct strbuf text;
	strbuf_init(&text, 4096);
	rc = read_spec(c, file, &text);
	char *dir = rc ? NULL : spec_dir(file);
	if (!rc && !dir)
		rc = cli__fail(c, "cannot resolve the directory of '%s': %s", file, strerror(errno));
	if (rc) {
		strbuf_release(&text);
		return rc;
	}
	struct json *body = json_object();
	json_set_str(body, "spec", text.buf);
	json_set_str(body, "dir", dir);
	json_set_str(body, "filename", file);
	strbuf_release(&text);
	free(dir);

	struct cli_response res;
	rc = cli__call(c, "POST", "/v1/apps", body, &res);
	json_free(body);
	if (rc)
		return rc;
	if (c->inv->json)
		cli__print_json(c, res.json, true);
	else
		fprintf(c->out, "applied app '%s' (%s)\n", cli__jstr(res.json, "name", "?"),
			res.status == 201 ? "created" : "updated");
	if (json_get_str(res.json, "warning"))
		fprintf(c->err, "warning: %s\n", json_get_str(res.json, "warning"));
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* apps, ps                                                                 */

/* One word for an app: stopped, maintenance, idle (scaled to 0), running
 * (every wanted instance ready) or degraded. */
static const char *app_state(const struct json *app, int64_t ready, int64_t want)
{
	if (json_true(json_get(app, "stopped")))
		return "stopped";
	if (json_true(json_get(app, "maintenance")))
		return "maintenance";
	if (want == 0)
		return "idle";
	return ready >= want ? "running" : "degraded";
}

void cli__app_counts(const struct json *app, int64_t *ready, int64_t *want)
{
	*ready = *want = 0;
	for (const struct json *p = json_first(json_get(app, "processes")); p; p = json_next(p)) {
		int64_t n;
		if (json_true(json_get(p, "stopped")))
			continue; /* stopped on purpose: not wanted */
		if (json_get_int(json_get(p, "ready"), &n) == 0)
			*ready += n;
		if (json_get_int(json_get(p, "instances"), &n) == 0)
			*want += n;
	}
}

static int cmd_apps(struct cli *c)
{
	struct cli_response res;
	int rc = cli__call(c, "GET", "/v1/apps", NULL, &res);
	if (rc)
		return rc;
	if (c->inv->json) {
		cli__print_json(c, res.json, true);
		cli__response_release(&res);
		return CLI_EXIT_OK;
	}
	static const char *const headers[] = {"NAME", "PROCESSES", "READY", "STATE"};
	struct cli_table t;
	cli__table_init(&t, headers, ARRAY_SIZE(headers));
	const struct json *apps = json_get(res.json, "apps");
	for (const struct json *a = json_first(apps); a; a = json_next(a)) {
		int64_t ready, want;
		cli__app_counts(a, &ready, &want);
		struct strbuf procs;
		strbuf_init(&procs, 0);
		processes_text(a, &procs);
		cli__table_add(&t, json_get_str(a, "name"));
		cli__table_add(&t, procs.len ? procs.buf : "-");
		cli__table_addf(&t, "%lld/%lld", (long long)ready, (long long)want);
		cli__table_add(&t, app_state(a, ready, want));
		strbuf_release(&procs);
	}
	if (cli__table_rows(&t) == 0) {
		fprintf(c->err, "no apps yet: create one with 'paasops apply -f paasops.yaml'\n");
	} else {
		cli__table_print(c, &t);
	}
	cli__table_release(&t);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

static void ps_row(struct cli_table *t, const struct json *in, int64_t now)
{
	int64_t pid = 0, port = 0, restarts = 0, started, rss;
	bool has_pid = jint(in, "pid", &pid) && pid > 0;
	char buf[32];
	cli__table_add(t, json_get_str(in, "id"));
	cli__table_add(t, json_get_str(in, "state"));
	if (has_pid)
		cli__table_addf(t, "%lld", (long long)pid);
	else
		cli__table_add(t, NULL);
	if (jint(in, "port", &port) && port > 0)
		cli__table_addf(t, "%lld", (long long)port);
	else
		cli__table_add(t, NULL);
	if (has_pid && time_ms(json_get(in, "started_at"), &started)) {
		cli__format_age(now - started, buf, sizeof(buf));
		cli__table_add(t, buf);
	} else {
		cli__table_add(t, NULL);
	}
	jint(in, "restarts", &restarts);
	cli__table_addf(t, "%lld", (long long)restarts);
	const struct json *cpu = json_get(in, "cpu_percent");
	if (has_pid && json_is_number(cpu))
		cli__table_addf(t, "%.1f%%", json_num(cpu));
	else
		cli__table_add(t, NULL);
	if (has_pid && jint(in, "rss_bytes", &rss)) {
		cli__format_bytes(rss, buf, sizeof(buf));
		cli__table_add(t, buf);
	} else {
		cli__table_add(t, NULL);
	}
	const char *reason = json_get_str(in, "reason");
	cli__table_add(t, reason ? reason : "");
}

static int cmd_ps(struct cli *c)
{
	const char *app = c->inv->n_pos ? c->inv->pos[0] : NULL;
	char *path = app ? cli__app_path(app, "/instances") : xstrdup("/v1/instances");
	struct cli_response res;
	int rc = cli__get_or_show(c, path, &res);
	free(path);
	if (rc)
		return rc == CLI_SHOWN ? CLI_EXIT_OK : rc;
	static const char *const headers[] = {"INSTANCE", "STATE", "PID", "PORT", "UPTIME",
					      "RESTARTS", "CPU", "MEM", "REASON"};
	struct cli_table t;
	cli__table_init(&t, headers, ARRAY_SIZE(headers));
	int64_t now = time_wall_ms();
	for (const struct json *in = json_first(json_get(res.json, "instances")); in;
	     in = json_next(in))
		ps_row(&t, in, now);
	if (cli__table_rows(&t) == 0) {
		if (app)
			fprintf(c->err, "app '%s' has no instances\n", app);
		else
			fprintf(c->err, "no instances\n");
	} else {
		cli__table_print(c, &t);
	}
	cli__table_release(&t);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* stats                                                                    */

static void stats_row(struct cli_table *t, const char *name, const struct json *o)
{
	int64_t req = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, inflight = 0, retries = 0, cerr = 0;
	const struct json *st = json_get(o, "status");
	json_get_int(json_get(o, "requests"), &req);
	json_get_int(json_get(st, "2xx"), &s2);
	json_get_int(json_get(st, "3xx"), &s3);
	json_get_int(json_get(st, "4xx"), &s4);
	json_get_int(json_get(st, "5xx"), &s5);
	json_get_int(json_get(o, "inflight"), &inflight);
	json_get_int(json_get(o, "retries"), &retries);
	json_get_int(json_get(o, "connect_errors"), &cerr);
	cli__table_add(t, name);
	cli__table_addf(t, "%lld", (long long)req);
	cli__table_addf(t, "%lld/%lld/%lld/%lld", (long long)s2, (long long)s3, (long long)s4, (long long)s5);
	cli__table_addf(t, "%lld", (long long)inflight);
	const struct json *q[2] = {json_get(o, "p50_seconds"), json_get(o, "p99_seconds")};
	for (int k = 0; k < 2; k++) {
		double v = json_is_number(q[k]) ? json_num(q[k]) : -1;
		if (v < 0)
			cli__table_add(t, "-");
		else if (v >= 1)
			cli__table_addf(t, "%.3gs", v); /* 1.75s, not 1.75e+03ms */
		else
			cli__table_addf(t, "%.3gms", v * 1000);
	}
	cli__table_addf(t, "%lld", (long long)retries);
	cli__table_addf(t, "%lld", (long long)cerr);
}

static int cmd_stats(struct cli *c)
{
	char *path = cli__app_path(c->inv->pos[0], "/stats");
	struct cli_response res;
	int rc = cli__get_or_show(c, path, &res);
	free(path);
	if (rc)
		return rc == CLI_SHOWN ? CLI_EXIT_OK : rc;
	static const char *const headers[] = {"ROUTE", "REQUESTS", "2XX/3XX/4XX/5XX", "INFLIGHT",
					      "P50", "P99", "RETRIES", "CONNECT_ERRORS"};
	struct cli_table t;
	cli__table_init(&t, headers, ARRAY_SIZE(headers));
	for (const struct json *r = json_first(json_get(res.json, "routes")); r; r = json_next(r)) {
		char name[600];
		snprintf(name, sizeof(name), "%s %s", json_get_str(r, "process") ? json_get_str(r, "process") : "?",
			 json_get_str(r, "route") ? json_get_str(r, "route") : "?");
		stats_row(&t, name, r);
	}
	stats_row(&t, "total", res.json);
	cli__table_print(c, &t);
	cli__table_release(&t);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* scale, restart, stop, start, destroy                                     */

static int cmd_scale(struct cli *c)
{
	const char *app = c->inv->pos[0];
	struct json *body;
	char *err = NULL;
	if (cli__scale_parse(c->inv->pos + 1, c->inv->n_pos - 1, &body, &err) < 0) {
		int rc = cli__usage_error(c, "%s", err);
		free(err);
		return rc;
	}
	char *path = cli__app_path(app, "/scale");
	struct cli_response res;
	int rc = cli__call(c, "POST", path, body, &res);
	free(path);
	json_free(body);
	if (rc)
		return rc;
	if (c->inv->json) {
		cli__print_json(c, res.json, true);
	} else {
		struct strbuf procs;
		strbuf_init(&procs, 0);
		processes_text(res.json, &procs);
		fprintf(c->out, "scaled app '%s': %s\n", app, procs.buf);
		strbuf_release(&procs);
	}
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

static int cmd_restart(struct cli *c)
{
	const char *app = c->inv->pos[0];
	const char *target = c->inv->n_pos > 1 ? c->inv->pos[1] : NULL;
	struct json *body = json_object();
	if (target && strchr(target, '.')) {
		char *id = instance_id(app, target);
		json_set_str(body, "instance", id);
		free(id);
	} else if (target) {
		json_set_str(body, "process", target);
	}
	char *path = cli__app_path(app, "/restart");
	struct cli_response res;
	int rc = cli__call(c, "POST", path, body, &res);
	free(path);
	json_free(body);
	if (rc)
		return rc;
	if (c->inv->json) {
		cli__print_json(c, res.json, true);
		cli__response_release(&res);
		return CLI_EXIT_OK;
	}
	struct strbuf ids;
	strbuf_init(&ids, 0);
	const struct json *list = json_get(res.json, "restarted");
	for (const struct json *id = json_first(list); id; id = json_next(id))
		if (json_str(id))
			strbuf_addf(&ids, "%s%s", ids.len ? ", " : "", json_str(id));
	if (ids.len)
		fprintf(c->out, "restarted %s\n", ids.buf);
	else
		fprintf(c->out, "nothing to restart in app '%s'\n", app);
	strbuf_release(&ids);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

/* stop and start differ only in the endpoint and the word printed. */
static int stop_or_start(struct cli *c, const char *action, const char *done)
{
	const char *app = c->inv->pos[0];
	const char *proc = c->inv->n_pos > 1 ? c->inv->pos[1] : NULL;
	struct json *body = json_object();
	if (proc)
		json_set_str(body, "process", proc);
	char *suffix = xasprintf("/%s", action);
	char *path = cli__app_path(app, suffix);
	struct cli_response res;
	int rc = cli__call(c, "POST", path, body, &res);
	free(suffix);
	free(path);
	json_free(body);
	if (rc)
		return rc;
	if (c->inv->json)
		cli__print_json(c, res.json, true);
	else if (proc)
		fprintf(c->out, "%s process type '%s' of app '%s'\n", done, proc, app);
	else
		fprintf(c->out, "%s app '%s'\n", done, app);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

static int cmd_stop(struct cli *c)
{
	return stop_or_start(c, "stop", "stopped");
}

static int cmd_start(struct cli *c)
{
	return stop_or_start(c, "start", "started");
}

/* `maintenance APP [on|off]`: shows or sets the app's maintenance mode. */
static int cmd_maintenance(struct cli *c)
{
	const char *app = c->inv->pos[0];
	const char *want = c->inv->n_pos > 1 ? c->inv->pos[1] : NULL;
	if (want && !str_eq(want, "on") && !str_eq(want, "off"))
		return cli__usage_error(c, "invalid argument '%s': expected on or off", want);
	struct cli_response res;
	int rc;
	if (want) {
		struct json *body = json_object();
		json_set_bool(body, "enabled", str_eq(want, "on"));
		char *path = cli__app_path(app, "/maintenance");
		rc = cli__call(c, "POST", path, body, &res);
		free(path);
		json_free(body);
	} else {
		char *path = cli__app_path(app, "");
		rc = cli__call(c, "GET", path, NULL, &res);
		free(path);
	}
	if (rc)
		return rc;
	bool on = json_true(json_get(res.json, "maintenance"));
	if (c->inv->json)
		cli__print_json(c, res.json, true);
	else if (on)
		fprintf(c->out, "app '%s' is in maintenance: the router answers 503\n", app);
	else
		fprintf(c->out, "app '%s' is not in maintenance\n", app);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

/* Asks on the terminal; anything but y/yes declines. */
static bool confirm(struct cli *c, const char *question)
{
	fprintf(c->err, "%s [y/N] ", question);
	fflush(c->err);
	char line[64];
	if (!fgets(line, sizeof(line), c->in)) {
		fputc('\n', c->err);
		return false;
	}
	line[strcspn(line, "\r\n")] = '\0';
	return strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0;
}

static int cmd_destroy(struct cli *c)
{
	const char *app = c->inv->pos[0];
	if (!cli__flag(c->inv, "yes")) {
		if (!c->in_tty)
			return cli__usage_error(c, "not destroying app '%s' without confirmation: "
						  "stdin is not a terminal (pass --yes)",
					       app);
		char *q = xasprintf("destroy app '%s' and stop its instances?", app);
		bool ok = confirm(c, q);
		free(q);
		if (!ok) {
			fprintf(c->err, "aborted: app '%s' was not destroyed\n", app);
			return CLI_EXIT_FAILED;
		}
	}
	char *path = cli__app_path(app, "");
	struct cli_response res;
	int rc = cli__call(c, "DELETE", path, NULL, &res);
	free(path);
	if (rc)
		return rc;
	if (c->inv->json)
		cli__print_json(c, res.json, true);
	else
		fprintf(c->out, "destroyed app '%s'\n", app);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* events, logs                                                             */

/* -n N in [0, max]; *given false when absent. */
static int count_flag(struct cli *c, const char *flag, int64_t max, int64_t *n, bool *given)
{
	const char *v = cli__flag(c->inv, flag);
	*given = v != NULL;
	if (v && cli__parse_count(v, max, n) < 0)
		return cli__usage_error(c, "invalid --%s '%s': expected a whole number from 0 to %lld",
				       flag, v, (long long)max);
	return CLI_EXIT_OK;
}

/* "TIME SUBJECT WHAT: reason (pid N, exit status N, signal S)". */
static void print_event(struct cli *c, const struct json *ev)
{
	char when[64];
	time_text(json_get(ev, "time"), when, sizeof(when));
	const char *type = json_get_str(ev, "type");
	const char *state = json_get_str(ev, "state");
	const char *subject = json_get_str(ev, "instance");
	if (!subject)
		subject = json_get_str(ev, "app");
	const char *what = str_eq(type, "state") && state ? state : type;
	struct strbuf sb;
	strbuf_init(&sb, 0);
	strbuf_addf(&sb, "%s %s %s", when, subject ? subject : "-", what ? what : "event");
	const char *reason = json_get_str(ev, "reason");
	if (!reason)
		reason = json_get_str(ev, "message");
	if (reason)
		strbuf_addf(&sb, ": %s", reason);
	struct strbuf extra;
	strbuf_init(&extra, 0);
	int64_t v;
	if (jint(ev, "pid", &v))
		strbuf_addf(&extra, "%spid %lld", extra.len ? ", " : "", (long long)v);
	if (jint(ev, "exit_status", &v))
		strbuf_addf(&extra, "%sexit status %lld", extra.len ? ", " : "", (long long)v);
	const struct json *sig = json_get(ev, "signal");
	if (json_str(sig))
		strbuf_addf(&extra, "%ssignal %s", extra.len ? ", " : "", json_str(sig));
	else if (json_get_int(sig, &v) == 0)
		strbuf_addf(&extra, "%ssignal %lld", extra.len ? ", " : "", (long long)v);
	if (extra.len)
		strbuf_addf(&sb, " (%s)", extra.buf);
	fprintf(c->out, "%s\n", sb.buf);
	strbuf_release(&extra);
	strbuf_release(&sb);
}

/* Prints a batch of events (skipping all when quiet) and advances *last. */
static void print_events(struct cli *c, const struct json *events, bool quiet, int64_t *last)
{
	for (const struct json *ev = json_first(events); ev; ev = json_next(ev)) {
		int64_t id;
		if (jint(ev, "id", &id) && id > *last)
			*last = id;
		if (quiet)
			continue;
		if (c->inv->json)
			cli__print_json(c, ev, false);
		else
			print_event(c, ev);
	}
}

static int cmd_events(struct cli *c)
{
	const char *app = c->inv->n_pos ? c->inv->pos[0] : NULL;
	bool follow = cli__flag(c->inv, "follow") != NULL, given;
	int64_t limit = 100, last = 0;
	int rc = count_flag(c, "limit", 1000, &limit, &given);
	if (rc)
		return rc;
	if (follow)
		follow_begin(c);
	/* -n 0 shows nothing old: ask for one event to learn where to start. */
	bool quiet = given && limit == 0;
	for (bool first = true;; first = false) {
		struct strbuf path;
		strbuf_init(&path, 0);
		strbuf_adds(&path, "/v1/events");
		if (app)
			cli__query_add(&path, "app", app);
		if (first) {
			if (given) {
				char n[24];
				snprintf(n, sizeof(n), "%lld", (long long)(quiet ? 1 : limit));
				cli__query_add(&path, "limit", n);
			}
		} else {
			/* Polls ask for the most the API gives, so a burst is not
			 * cut to the default 100. */
			char n[24];
			snprintf(n, sizeof(n), "%lld", (long long)last);
			cli__query_add(&path, "after", n);
			cli__query_add(&path, "limit", "1000");
		}
		struct cli_response res;
		rc = cli__call(c, "GET", path.buf, NULL, &res);
		strbuf_release(&path);
		if (follow && follow_interrupted)
			return CLI_EXIT_OK;
		if (rc)
			return rc;
		if (c->inv->json && !follow)
			cli__print_json(c, res.json, true);
		else
			print_events(c, json_get(res.json, "events"), first && quiet, &last);
		bool none = first && !quiet && !json_size(json_get(res.json, "events"));
		cli__response_release(&res);
		if (none && !c->inv->json && (rc = cli__empty_for_app(c, app, "no events")))
			return rc;
		if (!follow || !follow_wait(c))
			return CLI_EXIT_OK;
	}
}

/* ------------------------------------------------------------------------ */
/* tokens                                                                   */

static int cmd_tokens_create(struct cli *c)
{
	static const char *const roles[] = {"admin", "deployer", "viewer"};
	const char *role = cli__flag(c->inv, "role");
	const char *expires = cli__flag(c->inv, "expires");
	const char *name = cli__flag(c->inv, "name");
	if (!role)
		return cli__usage_error(c, "missing --role (admin, deployer or viewer)");
	bool known = false;
	for (size_t i = 0; i < ARRAY_SIZE(roles); i++)
		known = known || strcmp(role, roles[i]) == 0;
	if (!known)
		return cli__usage_error(c, "invalid --role '%s': use admin, deployer or viewer", role);
	int64_t ms;
	if (expires && (duration_parse_with_unit(expires, &ms) < 0 || ms <= 0))
		return cli__usage_error(c, "invalid --expires '%s': use a duration like 12h or 30d",
				       expires);

	for (size_t i = 0; i < c->inv->n_vals; i++) {
		if (strcmp(c->inv->vals[i].opt->name, "app"))
			continue;
		const char *app = c->inv->vals[i].value;
		if (strcmp(role, "admin") == 0)
			return cli__usage_error(c, "--app is for deployer and viewer tokens: an admin "
						  "token cannot be scoped to apps");
		if (!spec_valid_name(app))
			return cli__usage_error(c, "invalid --app '%s': app names are lowercase letters, "
						  "digits and '-'",
					       app);
	}

	struct json *body = json_object();
	json_set_str(body, "role", role);
	struct json *apps = NULL;
	for (size_t i = 0; i < c->inv->n_vals; i++) {
		if (strcmp(c->inv->vals[i].opt->name, "app"))
			continue;
		const char *app = c->inv->vals[i].value;
		if (!apps)
			apps = json_set(body, "apps", json_array());
		bool seen = false; /* naming an app twice scopes the token to it once */
		for (const struct json *a = json_first(apps); a && !seen; a = json_next(a))
			seen = strcmp(json_str(a), app) == 0;
		if (!seen)
			json_append(apps, json_string(app));
	}
	if (expires)
		json_set_str(body, "expires", expires);
	if (name)
		json_set_str(body, "name", name);
	struct cli_response res;
	int rc = cli__call(c, "POST", "/v1/tokens", body, &res);
	json_free(body);
	if (rc)
		return rc;
	const char *secret = json_get_str(res.json, "token");
	if (c->inv->json)
		cli__print_json(c, res.json, true);
	else
		fprintf(c->out, "%s\n", secret ? secret : "");
	fprintf(c->err, "created token %s (role %s); this is the only time its secret is "
			"shown: store it now\n",
		cli__jstr(res.json, "id", "?"), role);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

static void token_row(struct cli_table *t, const struct json *tok)
{
	char buf[48];
	int64_t ms, now = time_wall_ms();
	cli__table_add(t, json_get_str(tok, "id"));
	cli__table_add(t, json_get_str(tok, "name"));
	cli__table_add(t, json_get_str(tok, "role"));
	struct strbuf apps;
	strbuf_init(&apps, 0);
	for (const struct json *a = json_first(json_get(tok, "apps")); a; a = json_next(a))
		if (json_str(a))
			strbuf_addf(&apps, "%s%s", apps.len ? "," : "", json_str(a));
	cli__table_add(t, apps.len ? apps.buf : "*");
	strbuf_release(&apps);

	const struct json *created = json_get(tok, "created_at");
	if (time_ms(created, &ms))
		relative_text(ms, buf, sizeof(buf));
	else
		time_text(created, buf, sizeof(buf));
	cli__table_add(t, buf);

	bool expired = false;
	if (time_ms(json_get(tok, "expires_at"), &ms)) {
		expired = ms <= now;
		relative_text(ms, buf, sizeof(buf));
	} else {
		strlcpy_s(buf, "never", sizeof(buf));
	}
	cli__table_add(t, buf);

	if (time_ms(json_get(tok, "last_used_at"), &ms))
		relative_text(ms, buf, sizeof(buf));
	else
		strlcpy_s(buf, "never", sizeof(buf));
	cli__table_add(t, buf);

	cli__table_add(t, json_true(json_get(tok, "revoked")) ? "revoked"
			 : expired                            ? "expired"
							      : "active");
}

static int cmd_tokens_list(struct cli *c)
{
	struct cli_response res;
	int rc = cli__call(c, "GET", "/v1/tokens", NULL, &res);
	if (rc)
		return rc;
	if (c->inv->json) {
		cli__print_json(c, res.json, true);
		cli__response_release(&res);
		return CLI_EXIT_OK;
	}
	static const char *const headers[] = {"ID",      "NAME",      "ROLE",  "APPS",
					      "CREATED", "EXPIRES", "LAST USED", "STATUS"};
	struct cli_table t;
	cli__table_init(&t, headers, ARRAY_SIZE(headers));
	for (const struct json *tok = json_first(json_get(res.json, "tokens")); tok;
	     tok = json_next(tok))
		token_row(&t, tok);
	if (cli__table_rows(&t) == 0) {
		fprintf(c->err, "no tokens\n");
	} else {
		cli__table_print(c, &t);
	}
	cli__table_release(&t);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

static int cmd_tokens_revoke(struct cli *c)
{
	if (!c->inv->pos[0][0])
		return cli__usage_error(c, "a token id is needed (tok_..., see 'paasops tokens list'), "
					  "or the token's secret");
	char *enc = http_url_encode(c->inv->pos[0]);
	char *path = xasprintf("/v1/tokens/%s", enc);
	free(enc);
	struct cli_response res;
	int rc = cli__call(c, "DELETE", path, NULL, &res);
	free(path);
	if (rc)
		return rc;
	if (c->inv->json)
		cli__print_json(c, res.json, true);
	else
		fprintf(c->out, "revoked token %s\n", cli__jstr(res.json, "revoked", "?"));
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* version, help                                                            */

/* The server's version is a bonus: failing to get it is not an error. */
static int cmd_version(struct cli *c)
{
	int rc = cli__resolve_server(c);
	if (rc)
		return rc;
	struct cli_response res = {0};
	char *err = NULL;
	const char *server = NULL;
	if (cli__client_request(&c->client, "GET", "/v1/version", NULL, 0, &res, &err) == 0) {
		server = json_get_str(res.json, "version");
		if (!server) {
			const char *msg = json_get_str(json_get(res.json, "error"), "message");
			err = msg ? xasprintf("%s", msg)
				  : xasprintf("HTTP %d %s", res.status, http_reason(res.status));
		}
	}
	if (c->inv->json) {
		struct json *j = json_object();
		json_set_str(j, "client", PAASOPS_VERSION);
		json_set_str(j, "server", server);
		cli__print_json(c, j, true);
		json_free(j);
	} else {
		fprintf(c->out, "client: %s\n", PAASOPS_VERSION);
		if (server)
			fprintf(c->out, "server: %s\n", server);
	}
	if (!server)
		fprintf(c->err, "server: unknown (%s)\n", err ? err : "no answer");
	free(err);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

static int cmd_help(struct cli *c)
{
	if (c->inv->n_pos == 0) {
		cli__print_help(c->out, NULL, NULL);
		return CLI_EXIT_OK;
	}
	char *name = c->inv->n_pos == 2 ? xasprintf("%s %s", c->inv->pos[0], c->inv->pos[1])
					: xstrdup(c->inv->pos[0]);
	size_t len = strlen(name);
	const struct cli_command *cmd = NULL;
	bool group = false;
	for (size_t i = 0; i < cli_n_commands; i++) {
		if (strcmp(cli_commands[i].name, name) == 0)
			cmd = &cli_commands[i];
		else if (strncmp(cli_commands[i].name, name, len) == 0 &&
			 cli_commands[i].name[len] == ' ')
			group = true;
	}
	int rc = CLI_EXIT_OK;
	if (cmd || group)
		cli__print_help(c->out, cmd, cmd ? NULL : name);
	else
		rc = cli__usage_error(c, "unknown command '%s'", name);
	free(name);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* The table                                                                */

static const struct cli_opt file_opts[] = {
	{"file", 'f', "FILE", false, "the spec file (default: paasops.yaml)"},
	{0},
};

static const struct cli_opt destroy_opts[] = {
	{"yes", 'y', NULL, false, "do not ask for confirmation"},
	{0},
};

static const struct cli_opt events_opts[] = {
	{"limit", 'n', "N", false, "show the newest N events (default 100, max 1000)"},
	{"follow", 'f', NULL, false, "keep printing new events until Ctrl-C"},
	{0},
};

static const struct cli_opt tokens_create_opts[] = {
	{"role", 0, "ROLE", false, "admin, deployer or viewer (required)"},
	{"app", 0, "NAME", true, "limit the token to this app (default: all apps)"},
	{"expires", 0, "DURATION", false, "expire after this long: 12h, 30d (default: never)"},
	{"name", 0, "NAME", false, "a label to recognise the token by"},
	{0},
};

const struct cli_command cli_commands[] = {
	{"validate", cmd_validate, "[-f FILE | FILE]", "check a spec file, without the daemon",
	 file_opts, 0, 1,
	 "Parses and validates the spec and prints every problem as FILE:LINE:COL: message.\n"
	 "Exits 1 when the spec is invalid.\n\n"
	 "examples:\n"
	 "  paasops validate\n"
	 "  paasops validate -f deploy/paasops.yaml\n"},
	{"apply", cmd_apply, "[-f FILE | FILE]", "create or update an app from its spec",
	 file_opts, 0, 1,
	 "Sends the spec to the daemon. The app's instances run in the directory that holds\n"
	 "the file. An invalid spec changes nothing; every problem is printed.\n\n"
	 "examples:\n"
	 "  paasops apply\n"
	 "  paasops apply -f /srv/shop/paasops.yaml\n"},
	{"deploy", cli__cmd_deploy, "[DIR|ARCHIVE] [-f FILE] [-m MESSAGE] [--wait] [--path] [--app NAME]",
	 "make a release from a directory and roll it out", cli__deploy_opts, 0, 1,
	 "Packs DIR (default: .) into a tar.gz, leaving out .git and what .paasopsignore\n"
	 "lists (one pattern per line, # comments), checks the spec locally, and uploads it\n"
	 "with its SHA-256. The daemon unpacks it, runs build: and release:, and rolls the\n"
	 "new release out. An ARCHIVE (tar, tar.gz) is uploaded as it is (needs --app).\n"
	 "--path deploys DIR where it is on the daemon's machine instead of uploading it.\n"
	 "With --wait, prints build and release output and progress until the deploy ends:\n"
	 "exit 0 only when the release is live, 1 when it failed or was rolled back.\n"
	 "See also 'deploy status APP' and 'deploy promote APP'.\n\n"
	 "examples:\n"
	 "  paasops deploy --wait -m 'fix checkout'\n"
	 "  paasops deploy ./shop -f deploy/paasops.yaml\n"
	 "  paasops deploy /srv/shop --path\n"},
	{"deploy status", cli__cmd_deploy_status, "APP", "show an app's current or last deploy",
	 NULL, 1, 1,
	 "Release, phase, rollout progress, the regression analysis' numbers, and the result\n"
	 "(running, succeeded, failed or rolled-back) with its reason.\n"},
	{"deploy promote", cli__cmd_deploy_promote, "APP",
	 "let a canary deploy continue to every instance", NULL, 1, 1,
	 "For strategy: canary with auto_promote: false, the rollout waits with its canary\n"
	 "instances beside the old ones until this command.\n"},
	{"releases", cli__cmd_releases, "APP [vN]", "list an app's releases, or show one", NULL, 1,
	 2,
	 "Statuses: active (live), superseded (was live), rolled-back (was live, rolled back\n"
	 "from by request), failed (never went live), and while deploying\n"
	 "pending, building, releasing or deploying.\n\n"
	 "examples:\n"
	 "  paasops releases shop\n"
	 "  paasops releases shop v12\n"},
	{"rollback", cli__cmd_rollback, "APP [vN] [--wait]",
	 "roll back to the previous or a named release", cli__rollback_opts, 1, 2,
	 "Rolls out the release before the live one (or vN) like a deploy, without a build.\n"
	 "Only releases that were live and kept their artifact (the newest 10) can be rolled\n"
	 "back to.\n\n"
	 "examples:\n"
	 "  paasops rollback shop --wait\n"
	 "  paasops rollback shop v7\n"},
	{"config", cli__cmd_config, "APP", "show an app's config vars (secrets masked)", NULL, 1,
	 1, "See also 'config set' and 'config unset'.\n"},
	{"config set", cli__cmd_config_set, "APP NAME=VALUE... [--secret] [--wait]",
	 "set config vars: a new release that rolls out", cli__config_set_opts, 2, -1,
	 "examples:\n"
	 "  paasops config set shop LOG_LEVEL=debug --wait\n"
	 "  paasops config set shop DATABASE_URL=postgres://... --secret\n"},
	{"config unset", cli__cmd_config_unset, "APP NAME... [--wait]",
	 "remove config vars: a new release that rolls out", cli__wait_opts, 2, -1, ""},
	{"apps", cmd_apps, "", "list apps", NULL, 0, 0,
	 "Shows each app's process types with their instance counts, how many instances\n"
	 "are ready out of those wanted, and a state: running, degraded (some wanted\n"
	 "instances are not ready), idle (scaled to zero), maintenance or stopped.\n"},
	{"ps", cmd_ps, "[APP]", "list instances, of one app or of all", NULL, 0, 1,
	 "examples:\n"
	 "  paasops ps\n"
	 "  paasops ps shop\n"},
	{"stats", cmd_stats, "APP", "show the router's request metrics for an app", NULL, 1, 1,
	 "Requests, status classes, in-flight requests, latency percentiles (bucket upper\n"
	 "bounds), retries and backend connect errors, per route and in total.\n\n"
	 "examples:\n"
	 "  paasops stats shop\n"
	 "  paasops stats shop --json\n"},
	{"scale", cmd_scale, "APP PROCESS=COUNT...", "set how many instances run", NULL, 2, -1,
	 "Counts are whole numbers from 0 to 10000. Nothing changes if any process type is\n"
	 "unknown.\n\n"
	 "examples:\n"
	 "  paasops scale shop web=3 worker=1\n"},
	{"restart", cmd_restart, "APP [PROCESS|INSTANCE]", "restart an app's instances", NULL, 1,
	 2,
	 "Restarts every instance of the app, of one process type, or one instance (an\n"
	 "argument with a dot: shop.web.1, or web.1 for short). Clears a crashed state.\n\n"
	 "examples:\n"
	 "  paasops restart shop\n"
	 "  paasops restart shop web\n"
	 "  paasops restart shop web.2\n"},
	{"stop", cmd_stop, "APP [PROCESS]", "stop an app or one process type", NULL, 1, 2,
	 "The app and its instance counts are kept; nothing runs until 'paasops start'.\n"},
	{"start", cmd_start, "APP [PROCESS]", "start what 'stop' stopped", NULL, 1, 2, ""},
	{"maintenance", cmd_maintenance, "APP [on|off]", "show or set an app's maintenance mode", NULL,
	 1, 2,
	 "In maintenance, the router answers every request for the app with '503 app is down\n"
	 "for maintenance' and Retry-After: 120, while its instances keep running: deploys,\n"
	 "scaling and 'paasops run' (a migration, say) work as usual. It lasts until 'off',\n"
	 "across daemon restarts and deploys. Without on or off, says which it is.\n\n"
	 "examples:\n"
	 "  paasops maintenance shop on\n"
	 "  paasops run shop -- ./manage.py migrate\n"
	 "  paasops maintenance shop off\n"},
	{"destroy", cmd_destroy, "APP [--yes]", "stop an app's instances and forget the app",
	 destroy_opts, 1, 1,
	 "Asks for confirmation on the terminal; without a terminal, --yes is required.\n"},
	{"alerts", cli__cmd_alerts, "[--rules]", "list firing and pending alerts", cli__alerts_opts,
	 0, 0,
	 "Active alerts: firing (clearing: no longer true, waiting out keep_firing_for) and\n"
	 "pending (true, waiting out 'for'). --rules lists every rule (built-in, from the\n"
	 "rules file and from app specs) with its condition, and the notifiers with their\n"
	 "delivery counts. See also 'alerts history' and 'alerts test'.\n\n"
	 "examples:\n"
	 "  paasops alerts\n"
	 "  paasops alerts --rules\n"},
	{"alerts history", cli__cmd_alerts_history, "[APP] [-n N]", "list resolved alerts",
	 cli__alerts_history_opts, 0, 1,
	 "Newest first, with when each resolved and how long it fired. The daemon keeps the\n"
	 "last 1000.\n\n"
	 "examples:\n"
	 "  paasops alerts history -n 50\n"
	 "  paasops alerts history shop\n"},
	{"alerts test", cli__cmd_alerts_test, "NOTIFIER",
	 "send a test notification through a notifier (admin)", NULL, 1, 1,
	 "Posts one test alert (PaasopsTest, severity info) through the notifier once and\n"
	 "says whether it was accepted. Notifiers are named by kind: alertmanager, webhook,\n"
	 "slack (then webhook-2, ...); 'paasops alerts --rules' lists them.\n\n"
	 "examples:\n"
	 "  paasops alerts test slack\n"},
	{"events", cmd_events, "[APP] [-n N] [-f]", "show instance state changes and API changes",
	 events_opts, 0, 1,
	 "examples:\n"
	 "  paasops events shop -n 20\n"
	 "  paasops events -f\n"},
	{"logs", cli__cmd_logs,
	 "APP [-f] [-n N] [-p PROCESS] [-i INSTANCE] [--since WHEN] [--until WHEN] [--grep QUERY]\n"
	 "       [--level LEVEL] [--stream STREAM]",
	 "show and search an app's logs", cli__logs_opts, 1, 1,
	 "Lines are printed oldest first as TIME INSTANCE: LINE (INSTANCE[stderr],\n"
	 "[router], [build], [release], [run] for the other streams), coloured on a terminal.\n"
	 "With -f, the newest N and then every new line until Ctrl-C; -n 0 -f prints\n"
	 "only new lines. --grep takes words, \"phrases\", AND/OR/NOT and field:value.\n\n"
	 "examples:\n"
	 "  paasops logs shop -n 50\n"
	 "  paasops logs shop -f -p web --level warn\n"
	 "  paasops logs shop --since 1h --grep 'timeout OR \"connection reset\"'\n"
	 "  paasops logs shop --grep 'status:500 -path:/healthz' --json\n"},
	{"run", cli__cmd_run, "APP [--timeout DURATION] [--tty|--no-tty] -- COMMAND [ARGS...]",
	 "run a one-off command in an app's live release", cli__run_opts, 2, -1,
	 "Runs COMMAND once with /bin/sh -c in the directory of the app's live release,\n"
	 "with the environment its instances get (spec env, config vars and secrets), for\n"
	 "migrations, maintenance tasks, checks, or a shell or console. Its output is\n"
	 "printed as it comes and its exit status is paasops' own (128+N when signal N\n"
	 "ended it). One word is run as written (shell syntax allowed); several are\n"
	 "quoted so each reaches the command as given. Put '--' before a command with\n"
	 "flags. From a terminal (or with --tty) the command gets a terminal of its own:\n"
	 "what you type, Ctrl-C included, and window sizes go to it. Otherwise stdin is\n"
	 "empty, and Ctrl-C or a lost connection kills it. --timeout always does. Its\n"
	 "output also goes to the app's log (stream run).\n\n"
	 "examples:\n"
	 "  paasops run shop -- ./manage.py migrate --noinput\n"
	 "  paasops run shop 'echo $DATABASE_URL | cut -d@ -f2'\n"
	 "  paasops run shop --timeout 10m -- ./bin/reindex\n"
	 "  paasops run shop bash\n"},
	{"tokens create", cmd_tokens_create,
	 "--role ROLE [--app NAME]... [--expires DURATION] [--name NAME]",
	 "create an API token (admin)", tokens_create_opts, 0, 0,
	 "Prints the secret on stdout; it is never shown again.\n\n"
	 "examples:\n"
	 "  paasops tokens create --role deployer --app shop --expires 30d --name ci\n"},
	{"tokens list", cmd_tokens_list, "", "list API tokens (admin)", NULL, 0, 0, ""},
	{"drains", cli__cmd_drains, "APP", "list an app's log drains (and the global ones)", NULL, 1,
	 1,
	 "Each drain forwards the app's log lines: syslog://HOST:PORT (RFC 5424 over TCP),\n"
	 "syslog+tls://HOST:PORT[?ca=FILE&cert=FILE&key=FILE] (the same over TLS) or\n"
	 "http(s)://... (NDJSON batches), with counters of what was sent, failed and dropped.\n\n"
	 "examples:\n"
	 "  paasops drains shop\n"},
	{"drains add", cli__cmd_drains_add, "APP URL", "forward an app's log lines to a drain", NULL,
	 2, 2,
	 "examples:\n"
	 "  paasops drains add shop syslog://logs.internal:514\n"
	 "  paasops drains add shop 'syslog+tls://logs.internal:6514?ca=/etc/ssl/logs-ca.pem'\n"
	 "  paasops drains add shop https://logs.example.com/ingest\n"},
	{"drains remove", cli__cmd_drains_remove, "APP ID", "stop forwarding to a drain", NULL, 2, 2,
	 "examples:\n"
	 "  paasops drains remove shop 3\n"},
	{"tokens revoke", cmd_tokens_revoke, "ID|SECRET", "revoke an API token (admin)", NULL, 1, 1,
	 "examples:\n"
	 "  paasops tokens revoke tok_0123abcd\n"},
	{"audit", cli__cmd_audit, "[--app APP] [-n N]", "show the audit log of API changes (admin)",
	 cli__audit_opts, 0, 0,
	 "Every call that changes something (or tried to, refused ones included) is recorded\n"
	 "before it is answered: when, who (a token id, 'local' on the unix socket, '-' when\n"
	 "not authenticated), method, path, the status answered, the app and a short summary\n"
	 "(config var names, never values). Oldest first. See also 'audit verify'.\n\n"
	 "examples:\n"
	 "  paasops audit -n 20\n"
	 "  paasops audit --app shop --json\n"},
	{"audit verify", cli__cmd_audit_verify, "[--anchor SEQ:HASH]", "check the audit log's hash chain (admin)",
	 cli__audit_verify_opts, 0, 0,
	 "Walks the whole log and checks that every entry still hashes to what it says and\n"
	 "links to the one before it. Prints the head as SEQ:HASH and exits 0 when intact;\n"
	 "names the first broken entry and exits 1 otherwise. Keep the head somewhere the\n"
	 "daemon's host cannot write and pass it back with --anchor: entries cut off the end,\n"
	 "or rewritten with fresh hashes, are only noticed against a head recorded earlier.\n\n"
	 "examples:\n"
	 "  paasops audit verify\n"
	 "  paasops audit verify --anchor 1042:5f0c2a...\n"},
	{"backup", cli__cmd_backup, "-o FILE [--logs] [--metrics]",
	 "save a consistent copy of the daemon's data (admin)", cli__backup_opts, 0, 0,
	 "The running daemon snapshots its state database (apps, releases, config and\n"
	 "secrets, tokens, events, the audit log) while it keeps working, and sends a\n"
	 "gzipped tar with it, the secrets key, the alert state and the unpacked release\n"
	 "code; --logs and --metrics add the log store and the metrics history. The file\n"
	 "holds the key that decrypts the secrets: keep it as safe as the server. FILE is\n"
	 "written as FILE.part and renamed once complete. Restore with 'paasops restore'.\n\n"
	 "examples:\n"
	 "  paasops backup -o /backups/paasops-$(date +%F).tar.gz\n"
	 "  paasops backup --logs -o - | ssh backup@vault 'cat > paasops.tar.gz'\n"},
	{"restore", cli__cmd_restore, "FILE DIR", "unpack a backup into a new data dir (offline)",
	 NULL, 2, 2,
	 "Unpacks a file made by 'paasops backup' into DIR, which must be new or empty,\n"
	 "and checks that it is one. Needs no daemon: start one on it with 'paasops serve\n"
	 "--data DIR' (stop the old one first if it uses the same ports). Releases made by\n"
	 "'apply -f' from a directory on the server are not in the backup: that directory\n"
	 "must exist on the new server too.\n\n"
	 "examples:\n"
	 "  paasops restore /backups/paasops-2026-11-30.tar.gz /var/lib/paasops\n"},
	{"doctor", cli__cmd_doctor, "", "check the installation's security and health (admin)", NULL,
	 0, 0,
	 "Runs the daemon's checks: file modes of the data dir, the secrets key and the API\n"
	 "socket; where the TCP API and a public /metrics listen; admin tokens without expiry\n"
	 "and expired ones; the audit log's hash chain; whether the daemon (and so every\n"
	 "instance) runs as root; whether memory and CPU limits can be enforced; free disk;\n"
	 "routed process types without a health check; crash loops; firing alerts. Prints\n"
	 "STATUS (ok, warn, fail), CHECK and SUMMARY, then what to do for each check that is\n"
	 "not ok. Exits 1 when any check fails (with --json too); warnings alone exit 0.\n"
	 "Every check is described in doc/doctor.md.\n\n"
	 "examples:\n"
	 "  paasops doctor\n"
	 "  paasops doctor --json\n"},
	{"metrics", cli__cmd_metrics, "APP [--since DURATION]",
	 "summarise an app's metrics history with sparklines", cli__metrics_opts, 1, 1,
	 "Requests per second, 5xx per second and error ratio, p50 and p95 latency, CPU\n"
	 "(1 = 100% of one core), memory, ready instances and restarts over the last hour\n"
	 "(or --since), from the daemon's built-in history: 60 points, each the value over\n"
	 "its step.\n\n"
	 "examples:\n"
	 "  paasops metrics shop\n"
	 "  paasops metrics shop --since 24h\n"},
	{"usage", cli__cmd_usage, "[APP] [--since DURATION] [--forecast DURATION]",
	 "report usage, forecast and cost per app", cli__usage_opts, 0, 1,
	 "Per app over the last 30 days (or --since, clamped to the history the daemon\n"
	 "holds): CPU core-hours, average and peak cores, memory GiB-hours, average and peak\n"
	 "memory, requests, 5xx ratio and cost (with the daemon's --price-* flags); then a\n"
	 "linear trend of daily (hourly with less than 3 days of history) CPU and memory,\n"
	 "projected --forecast ahead (default 30d). See doc/usage.md.\n\n"
	 "examples:\n"
	 "  paasops usage\n"
	 "  paasops usage shop --since 7d --forecast 90d\n"},
	{"top", cli__cmd_top, "[--once] [--sort cpu|mem|rps]",
	 "live view of apps and instances, refreshed every second", cli__top_opts, 0, 0,
	 "Apps with state, ready instances, CPU, memory, requests per second, 5xx ratio and\n"
	 "p95 latency over the last 10-30 s; then every instance. Keys: c, m, r sort by CPU,\n"
	 "memory or requests per second; q (or Ctrl-C) quits and restores the terminal.\n"
	 "When stdout is not a terminal, or with --once, prints one snapshot and exits.\n\n"
	 "examples:\n"
	 "  paasops top\n"
	 "  paasops top --once --sort mem\n"},
	{"export grafana", cli__cmd_export_grafana, "[-o FILE]",
	 "write a Grafana dashboard for paasops' metrics", cli__export_grafana_opts, 0, 0,
	 "The dashboard reads a Prometheus data source that scrapes paasops' /metrics\n"
	 "(see doc/metrics.md): per-app requests, errors and latency, instances, host and\n"
	 "daemon. Needs no daemon.\n\n"
	 "examples:\n"
	 "  paasops export grafana -o paasops-dashboard.json\n"},
	{"export kubernetes", cli__cmd_export_kubernetes,
	 "APP [--image IMAGE] [--namespace NS] [--dockerfile] [-o FILE]",
	 "write Kubernetes manifests for an app's live release", cli__export_kubernetes_opts, 1, 1,
	 "A multi-document YAML stream (a List with --json): a Deployment per process type,\n"
	 "a HorizontalPodAutoscaler for cpu/memory autoscaling, a Service per routed process\n"
	 "type, an Ingress for the routes, and a Secret with empty values to fill in when\n"
	 "the app has secret config vars. The image (default APP:vN) is yours to build and\n"
	 "push: --dockerfile prints a Dockerfile for it. What does not translate is listed\n"
	 "in each Deployment's paasops.io/not-translated annotation and in doc/export.md.\n\n"
	 "examples:\n"
	 "  paasops export kubernetes shop --image registry.example.com/shop:v12 -o shop.yaml\n"
	 "  paasops export kubernetes shop --namespace shop --json\n"
	 "  paasops export kubernetes shop --dockerfile -o Dockerfile\n"},
	{"version", cmd_version, "", "print the client's and the server's versions", NULL, 0, 0,
	 ""},
	{"help", cmd_help, "[COMMAND]", "show help", NULL, 0, 2, ""},
};

const size_t cli_n_commands = ARRAY_SIZE(cli_commands);
