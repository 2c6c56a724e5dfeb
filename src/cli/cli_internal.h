/* cli_internal.h: what the CLI's files share with each other and with
 * tests/unit/test_cli.c. Not for other modules: they use cli.h.
 *
 * The CLI is split by noun: cli_args.c turns argv into a struct
 * cli_invocation using the command table; cli_client.c is a blocking HTTP/1.1
 * client for one request per connection; cli_table.c prints aligned tables and
 * human-readable units; cli_commands.c holds the command table and handlers;
 * cli.c ties them together (cli_main, help, error reporting). Functions
 * shared between these files are internal and named cli__x. */
#ifndef PAASOPS_CLI_INTERNAL_H
#define PAASOPS_CLI_INTERNAL_H
#include "core/strbuf.h"
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/version.h"

struct json;

enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAILED = 1,      /* the server reported an error; invalid spec; local I/O */
	CLI_EXIT_USAGE = 2,       /* bad command line */
	CLI_EXIT_UNREACHABLE = 3, /* cannot connect, or no answer in time */
};

#define CLI_TIMEOUT_MS 30000     /* connect, and each wait for data */
#define CLI_FOLLOW_INTERVAL_MS 250 /* logs -f and events -f poll period */
#define CLI_MAX_RESPONSE_HEAD (64 * 1024)
#define CLI_MAX_RESPONSE_BODY (256 * 1024 * 1024)
#define CLI_MAX_SCALE 10000 /* same bound as the API's scale endpoint */
#define CLI_MESSAGE_MAX 1000 /* a release message, as the daemon allows */

/* ------------------------------------------------------------------------ */
/* Server address (cli_client.c)                                            */

enum cli_addr_kind { CLI_ADDR_UNIX, CLI_ADDR_TCP };

/* A parsed --server value. All strings are owned by the struct. */
struct cli_addr {
	enum cli_addr_kind kind;
	char *path;    /* unix: socket path */
	char *host;    /* tcp: host name or address, IPv6 without brackets */
	char *port;    /* tcp: decimal port */
	bool tls;      /* tcp: https:// */
	char *display; /* canonical form for messages: "unix:/p", "http(s)://h:p" */
};

/* Parses "unix:/path/to.sock", "/path/to.sock", "http://HOST[:PORT][/]",
 * "https://HOST[:PORT][/]" (port 443 by default) or "HOST:PORT" (IPv6 hosts
 * in brackets). Returns 0 or -EINVAL with *err set
 * (caller frees). On success the caller releases out with cli__addr_release. */
int cli__addr_parse(const char *s, struct cli_addr *out, char **err);
void cli__addr_release(struct cli_addr *a);

/* ------------------------------------------------------------------------ */
/* HTTP client (cli_client.c)                                               */

struct tls_ctx;

struct cli_client {
	const struct cli_addr *addr; /* borrowed */
	struct tls_ctx *tls;         /* borrowed; set when addr->tls */
	const char *token;           /* borrowed; NULL: no Authorization header */
	int timeout_ms;
	/* Borrowed, may be NULL. A system call interrupted by a signal is
	 * retried unless *stop is set, in which case the request fails with
	 * -EINTR (how `logs -f` ends on Ctrl-C). */
	const volatile sig_atomic_t *stop;
};

/* One answer. json is the parsed body, or NULL when the body is empty or
 * not JSON. Release with cli__response_release. */
struct cli_response {
	int status;
	struct strbuf body;
	struct json *json;
};

/* Formats the request bytes: HTTP/1.1, Host, Authorization when a token is
 * set, Content-Type and Content-Length, Connection: close. */
void cli__request_format(struct strbuf *out, const struct cli_client *c, const char *method,
			const char *path, const char *body, size_t body_len);

/* Sends one request on a new connection and reads the whole answer. body may
 * be NULL. Returns 0 with *res filled (whatever the status), or a negative
 * errno with *err set (caller frees) and *res untouched:
 * connection failures and timeouts (-ETIMEDOUT) say "cannot reach" / "did not
 * answer", a malformed or truncated answer gives -EPROTO. */
int cli__client_request(const struct cli_client *c, const char *method, const char *path,
		       const char *body, size_t body_len, struct cli_response *res, char **err);
void cli__response_release(struct cli_response *r);
/* Sends method + path (with a JSON body when body is not NULL) and, when
 * the answer is 200, hands its body to cb as it comes
 * (chunked framing removed; cb returns non-zero to stop) until the server
 * ends it; waits for data without a deadline (c->stop ends it with
 * -EINTR). Any other answer is read whole into *res. Returns 0 with
 * res->status set, or a negative errno with *err set like
 * cli__client_request; -ECONNABORTED when the connection ended after a 200
 * head but before the end of its body (the daemon stopped or restarted:
 * see cli__stream_failed). */
typedef int (*cli_body_cb)(void *ctx, const char *data, size_t len);
int cli__client_stream(const struct cli_client *c, const char *method, const char *path,
		       const char *body, size_t body_len, cli_body_cb cb, void *ctx,
		       struct cli_response *res, char **err);
/* Like cli__client_request, with the body streamed from a file in chunks
 * (never read whole into memory) and sent with its Content-Length.
 * headers: extra "Name: value" lines, NULL-terminated, may be NULL. A file
 * that cannot be read gives -EIO with *err set. */
int cli__client_request_file(const struct cli_client *c, const char *method, const char *path,
			    const char *file, const char *content_type,
			    const char *const *headers, struct cli_response *res, char **err);
/* The request head alone, for a body of body_len bytes sent after it. */
void cli__request_format_head(struct strbuf *out, const struct cli_client *c, const char *method,
			     const char *path, const char *content_type, uint64_t body_len,
			     const char *const *headers);

/* Exit code for an HTTP status (2xx: 0, else 1) and for a negative errno
 * returned by cli__client_request (a bad answer: 1, else 3). */
int cli__exit_for_status(int status);
struct cli;
/* cli__exit_for_status, but a 400 with c->query_is_usage prints the
 * command's --help hint (after the server's message) and is a usage error. */
int cli__exit_for_answer(struct cli *c, int status);
int cli__exit_for_transport(int rc);

/* ------------------------------------------------------------------------ */
/* Arguments and the command table (cli_args.c)                             */

/* One flag a command accepts. A switch has no metavar. */
struct cli_opt {
	const char *name; /* long form without "--"; NULL ends a list */
	char short_name;  /* 0: none */
	const char *metavar;
	bool repeat; /* may be given several times (all values kept) */
	const char *help;
};

struct cli;
typedef int (*cli_run_cb)(struct cli *c);

struct cli_command {
	const char *name; /* "ps", or "tokens create" for a subcommand */
	cli_run_cb run;   /* returns an enum cli_exit value */
	const char *usage;   /* after the name: "APP [PROC|INSTANCE]" */
	const char *summary; /* one line for `paasops help` */
	const struct cli_opt *opts; /* NULL-name terminated, or NULL */
	int min_args, max_args;     /* positional arguments; max -1: unbounded */
	const char *help;           /* description and examples for `help CMD` */
};

struct cli_optval {
	const struct cli_opt *opt; /* borrowed from the command table */
	const char *value;         /* borrowed from argv; NULL for switches */
};

/* Parsed command line. Strings are borrowed from argv. */
struct cli_invocation {
	const struct cli_command *cmd; /* NULL for bare `paasops --help` */
	const char *group; /* "tokens" when only the group was named (with --help) */
	const char **pos;  /* positional arguments after the command */
	size_t n_pos, alloc_pos;
	struct cli_optval *vals; /* command flags in order of appearance */
	size_t n_vals, alloc_vals;
	const char *server, *token; /* global flags; NULL when not given */
	const char *cacert;         /* --cacert; NULL when not given */
	bool json, help;
};

extern const struct cli_opt cli_global_opts[];

/* Parses argv[1..argc) against the table. Global flags are accepted
 * anywhere, command flags after the command name; "--" ends flags. Checks the
 * number of positional arguments unless help was asked for. Returns 0, or
 * -EINVAL with *err set to one line (caller frees). Release inv either way. */
int cli__parse(int argc, char **argv, const struct cli_command *cmds, size_t n_cmds,
	      struct cli_invocation *inv, char **err);
void cli__invocation_release(struct cli_invocation *inv);
/* The last value of a flag, "" for a given switch, NULL when absent. */
const char *cli__flag(const struct cli_invocation *inv, const char *name);

/* Parses `scale` arguments ("web=3", "worker=0") into the request body
 * {"processes":{"web":3,...}}. Counts are whole numbers 0..CLI_MAX_SCALE;
 * each process type may appear once. Returns 0 with *out set (caller frees
 * with json_free), or -EINVAL with *err set. */
int cli__scale_parse(const char *const *args, size_t n, struct json **out, char **err);
/* Parses a non-negative whole number in [0, max] (digits only). */
int cli__parse_count(const char *s, int64_t max, int64_t *out);

/* ------------------------------------------------------------------------ */
/* Tables and units (cli_table.c)                                           */

/* Rows of cells, the first row being the header. Columns are separated by
 * two spaces and left-aligned; widths count UTF-8 code points; control
 * characters in cells are shown as spaces so a server string cannot move the
 * cursor. */
struct cli_table {
	size_t n_cols;
	char **cells;
	size_t n_cells, alloc_cells;
};

/* Control characters (newlines in a reason, escapes) become spaces: text
 * from the daemon never drives the terminal. */
void cli__sanitize(char *s);
void cli__table_init(struct cli_table *t, const char *const *headers, size_t n_cols);
void cli__table_release(struct cli_table *t);
/* Adds the next cell (row by row); NULL shows as "-". */
void cli__table_add(struct cli_table *t, const char *cell);
void cli__table_addf(struct cli_table *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
size_t cli__table_rows(const struct cli_table *t); /* data rows, without the header */
/* Appends the table; asserts that the last row is complete. */
void cli__table_render(const struct cli_table *t, struct strbuf *out);

/* "0s", "45s", "3m20s", "2h5m", "3d4h": the two largest units, truncated. */
void cli__format_age(int64_t ms, char *buf, size_t size);
/* "512B", "1.2K", "1.7M", "256M", "3.4G": binary units like `ls -h`. */
void cli__format_bytes(int64_t bytes, char *buf, size_t size);
/* Appends j with two-space indentation, one member per line. */
void cli__json_pretty(const struct json *j, struct strbuf *out);
/* Parses RFC 3339 "2026-11-29T22:57:15[.123][Z|+01:00]" into epoch ms. */
int cli__parse_time(const char *s, int64_t *ms);

/* ------------------------------------------------------------------------ */
/* Running a command (cli.c, cli_commands.c)                                */

/* What a handler gets: the parsed line, streams, and a lazily resolved
 * server address. */
struct cli {
	const struct cli_invocation *inv;
	FILE *in, *out, *err;
	bool in_tty; /* whether `in` is a terminal (for confirmations) */
	struct cli_addr addr;
	bool have_addr;
	struct cli_client client;
	struct tls_ctx *tls; /* for an https:// server; owned */
	char *token; /* owned copy of --token / PAASOPS_TOKEN, or NULL */
	/* The command's flags travel as query parameters that the daemon
	 * checks: its 400 is a bad flag value, a usage error (exit 2). */
	bool query_is_usage;
};

extern const struct cli_command cli_commands[];

/* cli_alerts.c: alerts, alerts history, alerts test. */
int cli__cmd_alerts(struct cli *c);
int cli__cmd_alerts_history(struct cli *c);
int cli__cmd_alerts_test(struct cli *c);
extern const struct cli_opt cli__alerts_opts[], cli__alerts_history_opts[];

/* cli_metrics.c: metrics, top, export grafana, and their flags. */
int cli__cmd_metrics(struct cli *c);
int cli__cmd_top(struct cli *c);
int cli__cmd_export_grafana(struct cli *c);
extern const struct cli_opt cli__metrics_opts[], cli__top_opts[], cli__export_grafana_opts[];

/* cli_usage.c */
int cli__cmd_usage(struct cli *c);
extern const struct cli_opt cli__usage_opts[];
extern const size_t cli_n_commands;

/* cli_export.c: export kubernetes, and the YAML writer it uses. */
int cli__cmd_export_kubernetes(struct cli *c);
extern const struct cli_opt cli__export_kubernetes_opts[];
/* Appends s as a YAML double-quoted scalar in JSON syntax (also valid
 * JSON); characters YAML does not allow raw are escaped as \uXXXX. */
void cli__yaml_quote(struct strbuf *out, const char *s);
/* Appends each element of the array items as one YAML document ("---"
 * first), block style, every string quoted by cli__yaml_quote. */
void cli__yaml_documents(struct strbuf *out, const struct json *items);
/* Writes text to file, or to c->out when file is NULL or "-". Returns
 * CLI_EXIT_OK, or prints "cannot write" and returns CLI_EXIT_FAILED. */
int cli__write_output(struct cli *c, const char *file, const char *text);

/* cli_logs.c: logs. */
int cli__cmd_logs(struct cli *c);
extern const struct cli_opt cli__logs_opts[];

/* cli_deploy.c: deploy, deploy status/promote, releases, rollback, config. */
int cli__cmd_deploy(struct cli *c);
int cli__cmd_deploy_status(struct cli *c);
int cli__cmd_deploy_promote(struct cli *c);
int cli__cmd_releases(struct cli *c);
int cli__cmd_rollback(struct cli *c);
int cli__cmd_config(struct cli *c);
int cli__cmd_config_set(struct cli *c);
int cli__cmd_config_unset(struct cli *c);
extern const struct cli_opt cli__deploy_opts[], cli__rollback_opts[], cli__config_set_opts[],
	cli__wait_opts[];

/* .paasopsignore: one fnmatch pattern per line; blank lines and lines
 * starting with '#' are skipped, surrounding blanks and a leading "/" are
 * dropped. Returns a NULL-terminated list (caller frees with
 * cli__ignore_free), or NULL with *err naming the line for a pattern the
 * packer cannot honour ("!negation"). */
char **cli__ignore_parse(const char *text, size_t len, const char *file, char **err);
void cli__ignore_free(char **patterns);
/* Parses `config set` arguments ("K=V", the value may be empty or contain
 * '=') into {"set": {K: V}, "secret": [K...] when secret}. Names are
 * letters, digits and '_', not starting with a digit; each once. Returns 0
 * with *out set (caller frees with json_free), or -EINVAL with *err set. */
int cli__config_set_parse(const char *const *args, size_t n, bool secret, struct json **out,
			  char **err);
/* What is wrong with a config var name (same rules as the daemon: letters,
 * digits and '_', not starting with a digit, at most 256 characters, and,
 * unless reserved_ok, not PORT, HOST or PAASOPS_* but PAASOPS_WEBHOOK_*):
 * a message the caller frees, or NULL. */
char *cli__config_name_problem(const char *name, bool reserved_ok);
/* Whether name may be set. */
bool cli__config_name_ok(const char *name);

/* cli_main with explicit streams, for tests. */
int cli__run(int argc, char **argv, FILE *in, FILE *out, FILE *err, bool in_tty);

/* Sends a request with an optional JSON body. On a 2xx answer with a JSON
 * object returns CLI_EXIT_OK with *res filled (caller releases). Otherwise
 * prints the error ("error: ...", every 422 detail, a hint for 401) and
 * returns the exit code, with *res released. */
int cli__call(struct cli *c, const char *method, const char *path, const struct json *body,
	     struct cli_response *res);
/* Resolves --server / PAASOPS_SERVER / the default socket. Returns
 * CLI_EXIT_OK or prints the error and returns CLI_EXIT_USAGE. */
int cli__resolve_server(struct cli *c);
/* Prints a JSON value pretty (or compact, one per line) on c->out. */
void cli__print_json(struct cli *c, const struct json *j, bool pretty);
/* Prints "error: MSG" and the --help hint for the current command; returns
 * CLI_EXIT_USAGE. */
int cli__usage_error(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* CLI_EXIT_OK when app exists; otherwise the server's "app 'x' not
 * found" is printed and its exit code returned. */
int cli__app_exists(struct cli *c, const char *app);
/* After an empty answer about app (may be NULL): the app's own "not
 * found" error and its exit code when it does not exist, else note on
 * c->err and CLI_EXIT_OK. */
int cli__empty_for_app(struct cli *c, const char *app, const char *note);
/* After cli__client_stream failed with r (not -EINTR): a stream the
 * daemon cut short (-ECONNABORTED) prints "error: CUT", which says what
 * ended with it, and is exit 3 like a daemon that cannot be reached; any
 * other failure prints err and gives cli__exit_for_transport(r). */
int cli__stream_failed(struct cli *c, int r, const char *err, const char *cut);
/* Prints "error: MSG" on c->err; returns CLI_EXIT_FAILED. */
int cli__fail(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints help for one command, a group ("tokens") or everything. */
void cli__print_help(FILE *f, const struct cli_command *cmd, const char *group);

/* Prints every line of a multi-line message as "error: LINE"; returns
 * CLI_EXIT_FAILED. */
int cli__fail_lines(struct cli *c, const char *text);
/* GETs path; with --json prints the answer and returns CLI_SHOWN (the
 * command is done), else fills res (caller releases). Other returns are
 * exit codes of failures. */
#define CLI_SHOWN (-1)
int cli__get_or_show(struct cli *c, const char *path, struct cli_response *res);
/* Renders a table to the command's output. */
void cli__table_print(struct cli *c, const struct cli_table *t);

/* cli_audit.c: audit, audit verify. */
int cli__cmd_audit(struct cli *c);
int cli__cmd_audit_verify(struct cli *c);
extern const struct cli_opt cli__audit_opts[];
extern const struct cli_opt cli__audit_verify_opts[];

/* cli_backup.c: backup, restore. */
int cli__cmd_backup(struct cli *c);
int cli__cmd_restore(struct cli *c);
extern const struct cli_opt cli__backup_opts[];

/* cli_run.c: run. */
int cli__cmd_run(struct cli *c);
extern const struct cli_opt cli__run_opts[];

/* cli_doctor.c: doctor. */
int cli__cmd_doctor(struct cli *c);

/* cli_drains.c */
int cli__cmd_drains(struct cli *c);
int cli__cmd_drains_add(struct cli *c);
int cli__cmd_drains_remove(struct cli *c);

/* "/v1/apps/NAME" + suffix, with NAME percent-encoded; caller frees. */
char *cli__app_path(const char *app, const char *suffix);
/* Appends "&key=value" (or "?key=value" first) with value encoded. */
void cli__query_add(struct strbuf *sb, const char *key, const char *value);
/* String member of o, or fallback when absent or not a string. */
const char *cli__jstr(const struct json *o, const char *key, const char *fallback);
/* An app's ready and wanted instances over its process types that are not
 * stopped (GET /v1/apps), for apps and top. */
void cli__app_counts(const struct json *app, int64_t *ready, int64_t *want);

#endif
