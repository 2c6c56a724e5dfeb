/* cli.c: the entry point of every command but `serve`. Parses the command
 * line against the table in cli_commands.c, resolves the server address and
 * token, runs the handler, and owns the shared ways of reporting: usage
 * errors (exit 2), server errors (exit 1), unreachable daemon (exit 3), help
 * text and --json output. */
#include "cli/cli.h"
#include "core/paths.h"
#include "cli/cli_internal.h"
#include "compat/http.h"
#include "compat/json.h"
#include "compat/tls.h"
#include "core/util.h"
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Reporting                                                                */

/* The --help hint names what the user was typing: a command, a group or
 * paasops itself. */
static void print_hint(struct cli *c)
{
	const struct cli_invocation *inv = c->inv;
	if (inv && inv->cmd && strcmp(inv->cmd->name, "help") != 0)
		fprintf(c->err, "run 'paasops %s --help' for usage\n", inv->cmd->name);
	else if (inv && inv->group)
		fprintf(c->err, "run 'paasops %s --help' for usage\n", inv->group);
	else
		fprintf(c->err, "run 'paasops --help' for usage\n");
}

int cli__usage_error(struct cli *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	fprintf(c->err, "error: %s\n", msg);
	free(msg);
	print_hint(c);
	return CLI_EXIT_USAGE;
}

int cli__exit_for_answer(struct cli *c, int status)
{
	if (status == 400 && c->query_is_usage) {
		print_hint(c);
		return CLI_EXIT_USAGE;
	}
	return cli__exit_for_status(status);
}

int cli__stream_failed(struct cli *c, int r, const char *err, const char *cut)
{
	if (r == -ECONNABORTED) {
		fprintf(c->err, "error: %s\n", cut);
		return CLI_EXIT_UNREACHABLE;
	}
	fprintf(c->err, "error: %s\n", err);
	return cli__exit_for_transport(r);
}

int cli__fail(struct cli *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	fprintf(c->err, "error: %s\n", msg);
	free(msg);
	return CLI_EXIT_FAILED;
}

int cli__app_exists(struct cli *c, const char *app)
{
	char *path = cli__app_path(app, "");
	struct cli_response res;
	int rc = cli__call(c, "GET", path, NULL, &res);
	free(path);
	if (rc == CLI_EXIT_OK)
		cli__response_release(&res);
	return rc;
}

int cli__empty_for_app(struct cli *c, const char *app, const char *note)
{
	/* Nothing for an app that does not exist is a typo, not silence. */
	int rc = app ? cli__app_exists(c, app) : CLI_EXIT_OK;
	if (rc)
		return rc;
	fprintf(c->err, "%s\n", note);
	return CLI_EXIT_OK;
}

void cli__print_json(struct cli *c, const struct json *j, bool pretty)
{
	if (!pretty) {
		char *s = json_print(j, false);
		fprintf(c->out, "%s\n", s);
		free(s);
		return;
	}
	struct strbuf sb;
	strbuf_init(&sb, 1024);
	cli__json_pretty(j, &sb);
	fprintf(c->out, "%s\n", sb.buf);
	strbuf_release(&sb);
}

/* error.message, then every error.details entry (the spec's
 * file:line:col lines on 422), each as "error: ...". */
static void print_server_error(struct cli *c, const struct cli_response *res)
{
	const struct json *e = json_get(res->json, "error");
	const char *msg = json_get_str(e, "message");
	if (msg)
		fprintf(c->err, "error: %s\n", msg);
	else
		fprintf(c->err, "error: paasops answered %d %s\n", res->status,
			http_reason(res->status));
	const struct json *details = json_get(e, "details");
	for (const struct json *d = json_first(details); d && json_is_array(details);
	     d = json_next(d))
		if (json_str(d))
			fprintf(c->err, "error: %s\n", json_str(d));
	if (res->status == 401 && !c->token)
		fprintf(c->err, "hint: pass --token or set PAASOPS_TOKEN\n");
}

/* ------------------------------------------------------------------------ */
/* Talking to the daemon                                                    */

/* The TLS context for an https:// server: the system's CAs, or only the
 * one in --cacert / PAASOPS_CACERT. */
static int load_tls(struct cli *c)
{
	const char *ca = c->inv->cacert, *from = "--cacert";
	if (ca && !*ca)
		return cli__usage_error(c, "--cacert is empty: give a PEM file");
	if (!ca) {
		ca = getenv("PAASOPS_CACERT");
		from = "PAASOPS_CACERT";
		if (ca && !*ca)
			ca = NULL;
	}
	struct tls_config cfg = {.ca_file = ca};
	char *err = NULL;
	c->tls = tls_client_ctx_new(&cfg, &err);
	if (!c->tls) {
		int r = ca ? cli__usage_error(c, "%s (from %s)", err, from) : cli__usage_error(c, "%s", err);
		free(err);
		return r;
	}
	c->client.tls = c->tls;
	return CLI_EXIT_OK;
}

int cli__resolve_server(struct cli *c)
{
	if (c->have_addr)
		return CLI_EXIT_OK;
	const char *s = c->inv->server, *from = "--server";
	if (s && !*s)
		return cli__usage_error(c, "--server is empty: give unix:/path/to.sock or http(s)://HOST:PORT");
	if (!s) {
		s = getenv("PAASOPS_SERVER");
		from = "PAASOPS_SERVER";
	}
	char *def = NULL;
	if (!s || !*s) {
		char *dir = paths_default_data_dir();
		if (!dir)
			return cli__usage_error(c, "cannot find the default socket: no home directory; "
						  "pass --server or set PAASOPS_SERVER");
		def = xasprintf("unix:%s/paasops.sock", dir);
		free(dir);
		s = def;
		from = NULL;
	}
	char *err = NULL;
	int r = cli__addr_parse(s, &c->addr, &err);
	free(def);
	if (r < 0) {
		r = from ? cli__usage_error(c, "%s (from %s)", err, from)
			 : cli__usage_error(c, "%s", err);
		free(err);
		return r;
	}
	c->have_addr = true;
	c->client.addr = &c->addr;
	if (c->addr.tls)
		return load_tls(c);
	return CLI_EXIT_OK;
}

int cli__call(struct cli *c, const char *method, const char *path, const struct json *body,
	     struct cli_response *res)
{
	memset(res, 0, sizeof(*res));
	int rc = cli__resolve_server(c);
	if (rc != CLI_EXIT_OK)
		return rc;
	char *text = body ? json_print(body, false) : NULL;
	char *err = NULL;
	int r = cli__client_request(&c->client, method, path, text, text ? strlen(text) : 0, res,
				   &err);
	free(text);
	if (r < 0) {
		/* -EINTR only happens when the user asked to stop (Ctrl-C during
		 * -f): nothing to report. */
		if (r != -EINTR)
			fprintf(c->err, "error: %s\n", err);
		free(err);
		return r == -EINTR ? CLI_EXIT_FAILED : cli__exit_for_transport(r);
	}
	rc = cli__exit_for_status(res->status);
	if (rc != CLI_EXIT_OK) {
		print_server_error(c, res);
		rc = cli__exit_for_answer(c, res->status);
	} else if (!json_is_object(res->json)) {
		fprintf(c->err, "error: unexpected answer from paasops at %s (HTTP %d, not a JSON "
				"object)\n",
			c->addr.display, res->status);
		rc = CLI_EXIT_FAILED;
	}
	if (rc != CLI_EXIT_OK)
		cli__response_release(res);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Help                                                                     */

static void print_opts(FILE *f, const struct cli_opt *opts)
{
	for (; opts && opts->name; opts++) {
		char left[64];
		char shortf[8] = "    ";
		if (opts->short_name)
			snprintf(shortf, sizeof(shortf), "-%c, ", opts->short_name);
		snprintf(left, sizeof(left), "%s--%s%s%s", shortf, opts->name,
			 opts->metavar ? " " : "", opts->metavar ? opts->metavar : "");
		fprintf(f, "  %-24s %s%s\n", left, opts->help, opts->repeat ? " (repeatable)" : "");
	}
}

static void print_command_list(FILE *f, const char *group)
{
	size_t glen = group ? strlen(group) : 0;
	for (size_t i = 0; i < cli_n_commands; i++) {
		const struct cli_command *cmd = &cli_commands[i];
		if (group && (strncmp(cmd->name, group, glen) || cmd->name[glen] != ' '))
			continue;
		fprintf(f, "  %-15s %s\n", cmd->name, cmd->summary);
	}
}

void cli__print_help(FILE *f, const struct cli_command *cmd, const char *group)
{
	if (cmd) {
		fprintf(f, "usage: paasops %s%s%s\n\n%c%s.\n", cmd->name, cmd->usage[0] ? " " : "",
			cmd->usage, toupper((unsigned char)cmd->summary[0]), cmd->summary + 1);
		if (cmd->help && cmd->help[0])
			fprintf(f, "\n%s", cmd->help);
		if (cmd->opts && cmd->opts->name) {
			fprintf(f, "\nflags:\n");
			print_opts(f, cmd->opts);
		}
		fprintf(f, "\nglobal flags:\n");
		print_opts(f, cli_global_opts);
		return;
	}
	if (group) {
		fprintf(f, "usage: paasops %s COMMAND [ARGS]\n\ncommands:\n", group);
		print_command_list(f, group);
		fprintf(f, "\nrun 'paasops help %s COMMAND' for a command's flags and examples\n",
			group);
		return;
	}
	fprintf(f, "paasops: run and operate apps on your own servers\n\n"
		   "usage: paasops [--server ADDR] [--token TOKEN] [--cacert FILE] [--json] COMMAND [ARGS]\n\n"
		   "commands:\n"
		   "  %-15s %s\n",
		"serve", "run the daemon (see 'paasops serve --help')");
	print_command_list(f, NULL);
	fprintf(f, "\nglobal flags (anywhere on the line):\n");
	print_opts(f, cli_global_opts);
	fprintf(f, "\nenvironment:\n"
		   "  PAASOPS_SERVER  daemon address when --server is not given (default: the\n"
		   "                  socket in the data dir, e.g. ~/.local/share/paasops/paasops.sock)\n"
		   "  PAASOPS_TOKEN   bearer token when --token is not given\n"
		   "  PAASOPS_CACERT  CA file for https:// servers when --cacert is not given\n"
		   "                  (default: the system's CA store)\n"
		   "\nexit codes:\n"
		   "  0  success\n"
		   "  1  the operation failed (the server reported an error, an invalid spec)\n"
		   "  2  usage error\n"
		   "  3  the daemon cannot be reached\n"
		   "\nrun 'paasops help COMMAND' for a command's flags and examples\n");
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                             */

/* A token goes into a header line: refuse anything that could break it. */
static bool token_ok(const char *t)
{
	for (; *t; t++)
		if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
			return false;
	return true;
}

static int run_command(struct cli *c)
{
	const char *token = c->inv->token;
	const char *from = "--token";
	if (!token) {
		token = getenv("PAASOPS_TOKEN");
		from = "PAASOPS_TOKEN";
	}
	if (token && *token) {
		if (!token_ok(token))
			return cli__usage_error(c, "invalid token from %s: it contains spaces or "
						  "control characters",
					       from);
		c->token = xstrdup(token);
	}
	c->client.token = c->token;
	c->client.timeout_ms = CLI_TIMEOUT_MS;
	/* -m, wherever a command takes it: the daemon's limit, checked first. */
	const char *m = cli__flag(c->inv, "message");
	size_t n = 0;
	for (const char *p = m; p && *p; p++)
		n += ((unsigned char)*p & 0xC0) != 0x80;
	if (n > CLI_MESSAGE_MAX)
		return cli__usage_error(c, "the message (-m) is longer than %d characters", CLI_MESSAGE_MAX);
	return c->inv->cmd->run(c);
}

int cli__run(int argc, char **argv, FILE *in, FILE *out, FILE *err, bool in_tty)
{
	struct cli_invocation inv;
	struct cli c = {.inv = &inv, .in = in, .out = out, .err = err, .in_tty = in_tty};
	char *msg = NULL;
	int rc;
	if (cli__parse(argc, argv, cli_commands, cli_n_commands, &inv, &msg) < 0) {
		rc = cli__usage_error(&c, "%s", msg);
		free(msg);
	} else if (inv.help) {
		cli__print_help(out, inv.cmd, inv.group);
		rc = CLI_EXIT_OK;
	} else {
		rc = run_command(&c);
	}
	if (fflush(out) != 0 || ferror(out)) {
		fprintf(err, "error: cannot write output: %s\n", strerror(errno));
		if (rc == CLI_EXIT_OK)
			rc = CLI_EXIT_FAILED;
	}
	fflush(err);
	if (c.have_addr)
		cli__addr_release(&c.addr);
	tls_ctx_free(c.tls);
	free(c.token);
	cli__invocation_release(&inv);
	return rc;
}

int cli_main(int argc, char **argv)
{
	return cli__run(argc, argv, stdin, stdout, stderr, isatty(STDIN_FILENO));
}

int cli__fail_lines(struct cli *c, const char *text)
{
	const char *p = text;
	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (n)
			fprintf(c->err, "error: %.*s\n", (int)n, p);
		p = nl ? nl + 1 : NULL;
	}
	return CLI_EXIT_FAILED;
}

void cli__table_print(struct cli *c, const struct cli_table *t)
{
	struct strbuf out;
	strbuf_init(&out, 0);
	cli__table_render(t, &out);
	fputs(out.buf, c->out);
	strbuf_release(&out);
}

int cli__get_or_show(struct cli *c, const char *path, struct cli_response *res)
{
	int rc = cli__call(c, "GET", path, NULL, res);
	if (rc)
		return rc;
	if (c->inv->json) {
		cli__print_json(c, res->json, true);
		cli__response_release(res);
		return CLI_SHOWN;
	}
	return 0;
}
