/* cli_logs.c: `paasops logs`. Without -f it asks GET /v1/logs for the
 * newest N matching lines and prints them oldest first; with -f it reads
 * GET /v1/logs/stream (chunked NDJSON: the newest N, then every new line)
 * until Ctrl-C or the daemon ends it. Lines print as
 * "TIME INSTANCE[STREAM]: LINE" ([STREAM] for all but stdout), coloured by
 * stream and level on a terminal (unless NO_COLOR is set), plain when
 * piped; on a terminal control characters show as \xNN so that a line
 * cannot move the cursor. --json prints the server's answer (-f: one JSON
 * object per line). */
#include "cli/cli_internal.h"
#include "compat/http.h"
#include "compat/json.h"
#include "core/util.h"
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct cli_opt cli__logs_opts[] = {
	{"lines", 'n', "N", false, "the newest N lines (default 100, max 10000; -f -n 0: only new ones)"},
	{"follow", 'f', NULL, false, "keep printing new lines until Ctrl-C"},
	{"process", 'p', "PROCESS", false, "only this process type"},
	{"instance", 'i', "INSTANCE", false, "only this instance (shop.web.1 or web.1)"},
	{"since", 0, "WHEN", false, "lines from then on: 1h (ago) or 2026-11-29T22:00:00Z"},
	{"until", 0, "WHEN", false, "lines before then"},
	{"grep", 'g', "QUERY", false, "words, \"phrases\", AND/OR/NOT, field:value (see doc/logs.md)"},
	{"level", 'l', "LEVEL", false, "this level or worse: debug, info, warn, error, fatal"},
	{"stream", 's', "STREAM", false, "stdout, stderr, router, build, release or run (comma-separated)"},
	{0},
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

struct printer {
	struct cli *c;
	bool color, json;
	struct strbuf pending; /* a partial NDJSON line */
	struct strbuf out;
};

static const char *stream_color(const char *stream)
{
	if (str_eq(stream, "stderr"))
		return "\033[31m";
	if (str_eq(stream, "router"))
		return "\033[36m";
	if (str_eq(stream, "build") || str_eq(stream, "release") || str_eq(stream, "run"))
		return "\033[35m";
	return "\033[32m";
}

static const char *level_color(const char *level)
{
	if (str_eq(level, "error") || str_eq(level, "fatal"))
		return "\033[1;31m";
	if (str_eq(level, "warn"))
		return "\033[33m";
	if (str_eq(level, "debug") || str_eq(level, "trace"))
		return "\033[2m";
	return NULL;
}

/* Control characters as \xNN (the server already escaped invalid UTF-8). */
static void add_safe(struct strbuf *sb, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
			char e[4] = {'\\', 'x', hex[*p >> 4], hex[*p & 15]};
			strbuf_add(sb, e, 4);
		} else {
			strbuf_addc(sb, (char)*p);
		}
	}
}

static void print_line(struct printer *pr, const struct json *l)
{
	struct cli *c = pr->c;
	if (pr->json) {
		cli__print_json(c, l, false);
		return;
	}
	const char *t = json_get_str(l, "time");
	char when[32] = "-";
	if (t) {
		/* 2026-11-29T22:57:15.123456789Z -> ...15.123Z */
		strlcpy_s(when, t, sizeof(when));
		char *dot = strchr(when, '.');
		if (dot && strlen(dot) > 5) {
			dot[4] = 'Z';
			dot[5] = '\0';
		}
	}
	const char *inst = json_get_str(l, "instance");
	if (!inst)
		inst = json_get_str(l, "app");
	const char *stream = json_get_str(l, "stream");
	const char *level = json_get_str(l, "level");
	const char *line = json_get_str(l, "line");
	bool tag = stream && !str_eq(stream, "stdout");
	struct strbuf *o = &pr->out;
	strbuf_reset(o);
	if (pr->color) {
		const char *lc = level_color(level);
		strbuf_addf(o, "\033[2m%s\033[0m %s%s%s%s%s\033[0m: %s", when, stream_color(stream),
			    inst ? inst : "-", tag ? "[" : "", tag ? stream : "", tag ? "]" : "", lc ? lc : "");
		add_safe(o, line ? line : "");
		strbuf_adds(o, lc ? "\033[0m\n" : "\n");
	} else {
		strbuf_addf(o, "%s %s%s%s%s: ", when, inst ? inst : "-", tag ? "[" : "", tag ? stream : "",
			    tag ? "]" : "");
		strbuf_adds(o, line ? line : "");
		strbuf_addc(o, '\n');
	}
	fwrite(o->buf, 1, o->len, c->out);
}

/* NDJSON from the stream: whole lines are printed, the rest kept. */
static int on_stream(void *ctx, const char *data, size_t len)
{
	struct printer *pr = ctx;
	strbuf_add(&pr->pending, data, len);
	size_t start = 0;
	for (;;) {
		char *nl = memchr(pr->pending.buf + start, '\n', pr->pending.len - start);
		if (!nl)
			break;
		size_t n = (size_t)(nl - (pr->pending.buf + start));
		if (n) {
			struct json *l = json_parse(pr->pending.buf + start, n, NULL);
			if (l && !json_get(l, "marker"))
				print_line(pr, l);
			else if (l && !pr->json)
				fprintf(pr->c->err, "%s\n", json_get_str(l, "line") ? json_get_str(l, "line") : "");
			else if (l)
				cli__print_json(pr->c, l, false);
			json_free(l);
		}
		start += n + 1;
	}
	strbuf_consume(&pr->pending, start);
	fflush(pr->c->out);
	return ferror(pr->c->out) ? -1 : 0; /* a closed pipe ends it */
}


int cli__cmd_logs(struct cli *c)
{
	const char *app = c->inv->pos[0];
	const char *v = cli__flag(c->inv, "lines");
	int64_t lines = 100;
	if (v && cli__parse_count(v, 10000, &lines) < 0)
		return cli__usage_error(c, "invalid --lines '%s': expected a whole number from 0 to 10000", v);
	bool follow = cli__flag(c->inv, "follow") != NULL;
	struct strbuf path;
	strbuf_init(&path, 128);
	strbuf_adds(&path, follow ? "/v1/logs/stream" : "/v1/logs");
	cli__query_add(&path, "app", app);
	char n[24];
	snprintf(n, sizeof(n), "%lld", (long long)(follow ? lines : lines ? lines : 1));
	cli__query_add(&path, follow ? "n" : "limit", n);
	const char *proc = cli__flag(c->inv, "process");
	if (proc)
		cli__query_add(&path, "process", proc);
	const char *inst = cli__flag(c->inv, "instance");
	if (inst) {
		const char *dot = strchr(inst, '.');
		char *id = dot && !strchr(dot + 1, '.') ? xasprintf("%s.%s", app, inst) : xstrdup(inst);
		cli__query_add(&path, "instance", id);
		free(id);
	}
	static const char *const passthrough[][2] = {
		{"since", "since"}, {"until", "until"}, {"grep", "q"}, {"level", "level"}, {"stream", "stream"},
	};
	for (size_t k = 0; k < ARRAY_SIZE(passthrough); k++) {
		const char *fv = cli__flag(c->inv, passthrough[k][0]);
		if (fv)
			cli__query_add(&path, passthrough[k][1], fv);
	}
	/* The daemon checks the filter values (one parser for the API and
	 * the CLI): its 400 is a bad flag, exit 2. */
	c->query_is_usage = true;
	const char *nc = getenv("NO_COLOR");
	const char *term = getenv("TERM");
	struct printer pr = {
		.c = c, .json = c->inv->json,
		.color = !c->inv->json && isatty(fileno(c->out)) && !(nc && *nc) && !str_eq(term, "dumb"),
	};
	strbuf_init(&pr.pending, 0);
	strbuf_init(&pr.out, 256);
	int rc;
	if (!follow) {
		struct cli_response res;
		rc = cli__call(c, "GET", path.buf, NULL, &res);
		if (rc == CLI_EXIT_OK) {
			if (c->inv->json) {
				cli__print_json(c, res.json, true);
			} else if (lines > 0) {
				const struct json *arr = json_get(res.json, "lines");
				for (size_t k = json_size(arr); k-- > 0;)
					print_line(&pr, json_at(arr, k));
				if (!json_size(arr))
					rc = cli__empty_for_app(c, app, "no log lines");
			}
			cli__response_release(&res);
		}
	} else {
		rc = cli__resolve_server(c);
		if (rc == CLI_EXIT_OK) {
			struct sigaction sa = {.sa_handler = on_sigint};
			sigemptyset(&sa.sa_mask);
			sigaction(SIGINT, &sa, NULL);
			interrupted = 0;
			c->client.stop = &interrupted;
			struct cli_response res = {0};
			char *err = NULL;
			int r = cli__client_stream(&c->client, "GET", path.buf, NULL, 0, on_stream, &pr, &res,
						   &err);
			if (r == -EINTR || interrupted) {
				rc = CLI_EXIT_OK;
			} else if (r < 0) {
				rc = cli__stream_failed(c, r, err,
							"the daemon closed the live tail (it stopped or restarted)");
			} else if (res.status != 200) {
				const char *msg = json_get_str(json_get(res.json, "error"), "message");
				fprintf(c->err, "error: %s\n", msg ? msg : "the daemon refused the stream");
				rc = cli__exit_for_answer(c, res.status);
			}
			free(err);
			if (r == 0)
				cli__response_release(&res);
		}
	}
	strbuf_release(&path);
	strbuf_release(&pr.pending);
	strbuf_release(&pr.out);
	return rc;
}
