/* cli_run.c: `paasops run APP [--timeout D] -- COMMAND [ARGS...]`, a
 * one-off command in the app's live release (POST /v1/apps/NAME/run).
 * The command's stdout and stderr come back as they are written and go to
 * ours; its exit status becomes ours. Ctrl-C (or losing the connection)
 * has the daemon kill it. */
#include "cli/cli_internal.h"
#include "compat/json.h"
#include "core/strbuf.h"
#include "core/util.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct cli_opt cli__run_opts[] = {
	{"timeout", 0, "DURATION", false, "kill the command after this long (default 1h, at most 24h)"},
	{NULL, 0, NULL, false, NULL},
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

struct run_out {
	struct cli *c;
	struct strbuf pending; /* an NDJSON line not complete yet */
	bool ended;
	int status; /* the exit code to give: the command's, 128+signal */
	char *error;
};

static int on_line(struct run_out *o, const char *text, size_t n)
{
	struct json *l = json_parse(text, n, NULL);
	if (!l)
		return 0;
	if (o->c->inv->json) {
		cli__print_json(o->c, l, false);
	} else if (json_get(l, "data")) {
		FILE *f = str_eq(json_get_str(l, "stream"), "stderr") ? o->c->err : o->c->out;
		const char *d = json_get_str(l, "data");
		fputs(d ? d : "", f);
		fflush(f);
	}
	int64_t v;
	if (json_get_int(json_get(l, "exit_status"), &v) == 0) {
		o->ended = true;
		o->status = (int)(v & 0xff);
	} else if (json_get_int(json_get(l, "signal"), &v) == 0) {
		o->ended = true;
		o->status = 128 + (int)(v & 0x7f);
	}
	const char *why = json_get_str(l, "error");
	if (why) {
		free(o->error);
		o->error = xstrdup(why);
	}
	json_free(l);
	return ferror(o->c->out) ? -1 : 0;
}

static int on_body(void *ctx, const char *data, size_t len)
{
	struct run_out *o = ctx;
	strbuf_add(&o->pending, data, len);
	size_t start = 0;
	int rc = 0;
	for (;;) {
		char *nl = memchr(o->pending.buf + start, '\n', o->pending.len - start);
		if (!nl)
			break;
		size_t n = (size_t)(nl - (o->pending.buf + start));
		if (n && rc == 0)
			rc = on_line(o, o->pending.buf + start, n);
		start += n + 1;
	}
	strbuf_consume(&o->pending, start);
	return rc;
}

/* Whether a word needs quoting to reach the shell as one word. */
static bool needs_quotes(const char *w)
{
	if (!*w)
		return true;
	for (const char *p = w; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%", *p))
			return true;
	return false;
}

/* One word: the command line as written (shell syntax and all); several:
 * each word quoted where needed, so that each reaches the command as it
 * was given. */
static char *command_line(const char *const *words, size_t n)
{
	if (n == 1)
		return xstrdup(words[0]);
	struct strbuf sb;
	strbuf_init(&sb, 64);
	for (size_t k = 0; k < n; k++) {
		if (k)
			strbuf_addc(&sb, ' ');
		if (!needs_quotes(words[k])) {
			strbuf_adds(&sb, words[k]);
			continue;
		}
		strbuf_addc(&sb, '\'');
		for (const char *p = words[k]; *p; p++) {
			if (*p == '\'')
				strbuf_adds(&sb, "'\\''");
			else
				strbuf_addc(&sb, *p);
		}
		strbuf_addc(&sb, '\'');
	}
	return strbuf_detach(&sb, NULL);
}

int cli__cmd_run(struct cli *c)
{
	const char *app = c->inv->pos[0];
	char *cmd = command_line(c->inv->pos + 1, c->inv->n_pos - 1);
	struct json *body = json_object();
	json_set_str(body, "command", cmd);
	free(cmd);
	const char *timeout = cli__flag(c->inv, "timeout");
	if (timeout)
		json_set_str(body, "timeout", timeout);
	char *text = json_print(body, false);
	json_free(body);
	char *path = cli__app_path(app, "/run");
	int rc = cli__resolve_server(c);
	if (rc != CLI_EXIT_OK) {
		free(text);
		free(path);
		return rc;
	}
	struct sigaction sa = {.sa_handler = on_sigint};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	interrupted = 0;
	c->client.stop = &interrupted;
	struct run_out o = {.c = c};
	strbuf_init(&o.pending, 0);
	struct cli_response res = {0};
	char *err = NULL;
	int r = cli__client_stream(&c->client, "POST", path, text, strlen(text), on_body, &o, &res, &err);
	if (r == -EINTR || interrupted) {
		fprintf(c->err, "interrupted: the command was stopped\n");
		rc = 130;
	} else if (r < 0) {
		fprintf(c->err, "error: %s\n", err);
		rc = cli__exit_for_transport(r);
	} else if (res.status != 200) {
		const char *msg = json_get_str(json_get(res.json, "error"), "message");
		fprintf(c->err, "error: %s\n", msg ? msg : "the daemon refused to run the command");
		/* The daemon checks the command and --timeout: its 400 is a usage error. */
		c->query_is_usage = true;
		rc = cli__exit_for_answer(c, res.status);
	} else if (!o.ended) {
		fprintf(c->err, "error: the connection to the daemon ended before the command did\n");
		rc = CLI_EXIT_UNREACHABLE;
	} else {
		if (o.error && !c->inv->json)
			fprintf(c->err, "error: the command %s\n", o.error);
		rc = o.status;
	}
	if (r == 0)
		cli__response_release(&res);
	free(err);
	free(o.error);
	strbuf_release(&o.pending);
	free(text);
	free(path);
	return rc;
}
