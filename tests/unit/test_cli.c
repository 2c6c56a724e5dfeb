/* test_cli.c: the CLI (src/cli). Pure parts are tested directly: argument
 * parsing, `scale` arguments, --server addresses, tables and units, exit
 * codes, the default data dir. The HTTP client and whole commands run
 * against a fake daemon: a forked child on a unix socket that answers with
 * canned responses and reports the requests it received. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli/cli.h"
#include "core/paths.h"
#include "cli/cli_internal.h"
#include "compat/archive.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

#define ARGV(...) ((char *[]){"paasops", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"paasops", __VA_ARGS__}) / sizeof(char *)))

/* Parses a command line that must be valid. */
#define PARSE_OK(inv, ...)                                                                    \
	do {                                                                                  \
		char *err_ = NULL;                                                            \
		int r_ = cli__parse(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), cli_commands,        \
				   cli_n_commands, (inv), &err_);                             \
		if (r_ < 0)                                                                   \
			fail_msg("unexpected parse error: %s", err_);                         \
	} while (0)

/* Parses a command line that must fail; returns the message (caller frees). */
static char *parse_err(int argc, char **argv)
{
	struct cli_invocation inv;
	char *err = NULL;
	assert_int_equal(cli__parse(argc, argv, cli_commands, cli_n_commands, &inv, &err), -EINVAL);
	cli__invocation_release(&inv);
	assert_non_null(err);
	return err;
}
#define PARSE_ERR(...) parse_err(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__))

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("expected to find \"%s\" in:\n%s", needle, hay);
}

/* A fake daemon: a temporary unix socket served by a child process that
 * answers each connection with the next canned answer, then exits. The
 * requests it read come back through a pipe, separated by "\n----\n". */
struct fake {
	char dir[64];
	char sock[128];
	char addr[140];
	pid_t pid;
	int pipe_rd;
	int listen_fd;
};

static int fake_listen(struct fake *f)
{
	strlcpy_s(f->dir, "/tmp/paasops-test-cli-XXXXXX", sizeof(f->dir));
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/paasops.sock", f->dir);
	snprintf(f->addr, sizeof(f->addr), "unix:%s", f->sock);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	strlcpy_s(sun.sun_path, f->sock, sizeof(sun.sun_path));
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 16), 0);
	f->listen_fd = fd;
	return fd;
}

/* Reads one request: the head, then Content-Length bytes of body. */
static void fake_read_request(int fd, struct strbuf *req)
{
	char buf[4096];
	size_t need = (size_t)-1;
	while (req->len < need) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return;
		strbuf_add(req, buf, (size_t)n);
		char *end = strstr(req->buf, "\r\n\r\n");
		if (end && need == (size_t)-1) {
			char *cl = strcasestr(req->buf, "\r\ncontent-length:");
			size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
			need = (size_t)(end + 4 - req->buf) + body;
		}
	}
}

static void fake_start(struct fake *f, const char *const *answers, size_t n)
{
	int fd = fake_listen(f);
	int p[2];
	assert_int_equal(pipe(p), 0);
	f->pid = fork();
	assert_true(f->pid >= 0);
	if (f->pid == 0) {
		close(p[0]);
		alarm(10); /* never outlive a broken test */
		for (size_t i = 0; i < n; i++) {
			int c = accept(fd, NULL, NULL);
			if (c < 0)
				_exit(1);
			struct strbuf req;
			strbuf_init(&req, 0);
			fake_read_request(c, &req);
			strbuf_adds(&req, "\n----\n");
			if (write(p[1], req.buf, req.len) != (ssize_t)req.len)
				_exit(1);
			strbuf_release(&req);
			size_t len = strlen(answers[i]);
			if (send(c, answers[i], len, MSG_NOSIGNAL) != (ssize_t)len)
				_exit(1);
			close(c);
		}
		_exit(0);
	}
	close(p[1]);
	close(fd);
	f->pipe_rd = p[0];
}

/* Waits for the child and returns the requests it saw (caller frees). */
static char *fake_finish(struct fake *f)
{
	struct strbuf all;
	strbuf_init(&all, 0);
	char buf[4096];
	ssize_t n;
	while ((n = read(f->pipe_rd, buf, sizeof(buf))) > 0)
		strbuf_add(&all, buf, (size_t)n);
	close(f->pipe_rd);
	int status;
	assert_int_equal(waitpid(f->pid, &status, 0), f->pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	unlink(f->sock);
	rmdir(f->dir);
	return strbuf_detach(&all, NULL);
}

/* A whole answer with a JSON body. */
static char *answer(int status, const char *json)
{
	return xasprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			 status, status == 200 ? "OK" : "Whatever", strlen(json), json);
}

/* Runs the CLI with captured streams. */
struct run {
	int rc;
	char *out, *err;
};

static struct run run_cli(const char *stdin_text, bool tty, int argc, char **argv)
{
	struct run r;
	size_t out_len, err_len;
	FILE *out = open_memstream(&r.out, &out_len);
	FILE *err = open_memstream(&r.err, &err_len);
	FILE *in = fmemopen((void *)(stdin_text ? stdin_text : ""), stdin_text ? strlen(stdin_text) : 0,
			    "r");
	assert_non_null(out);
	assert_non_null(err);
	assert_non_null(in);
	r.rc = cli__run(argc, argv, in, out, err, tty);
	fclose(out);
	fclose(err);
	fclose(in);
	return r;
}
#define RUN(...) run_cli(NULL, false, ARGC(__VA_ARGS__), ARGV(__VA_ARGS__))

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

static int setup(void **state)
{
	(void)state;
	unsetenv("PAASOPS_TOKEN");
	unsetenv("PAASOPS_SERVER");
	return 0;
}

/* ------------------------------------------------------------- scale args */

static void test_cli_yaml__quotes_strings_as_json_that_yaml_reads_alike(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"plain", "\"plain\""},
		{"a: b # c", "\"a: b # c\""},
		{"say \"hi\" \\ 'x'", "\"say \\\"hi\\\" \\\\ 'x'\""},
		{"l1\nl2\tt\r", "\"l1\\nl2\\tt\\r\""},
		{"\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\""},
		{"caf\xc3\xa9 \xe2\x82\xac", "\"caf\xc3\xa9 \xe2\x82\xac\""}, /* printable UTF-8 stays */
		{"\xc2\x85\xc2\x9f\xef\xbb\xbf", "\"\\u0085\\u009f\\ufeff\""}, /* C1 controls and BOM */
		{"", "\"\""},
	};
	for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
		struct strbuf sb;
		strbuf_init(&sb, 0);
		cli__yaml_quote(&sb, cases[k].in);
		assert_string_equal(sb.buf, cases[k].out);
		/* The same text is a JSON string holding the input. */
		char *err = NULL;
		struct json *j = json_parse(sb.buf, sb.len, &err);
		assert_non_null(j);
		assert_string_equal(json_str(j), cases[k].in);
		json_free(j);
		strbuf_release(&sb);
	}
}

static void test_cli_yaml__writes_block_documents(void **state)
{
	const char *in = "[{\"kind\":\"A\",\"n\":3,\"ok\":true,\"none\":null,\"e\":{},\"l\":[],"
			 "\"list\":[\"x\",{\"k\":1,\"m\":[[1]]}]},{\"kind\":\"B\"}]";
	struct json *items = json_parse(in, strlen(in), NULL);
	assert_non_null(items);
	struct strbuf sb;
	strbuf_init(&sb, 0);
	cli__yaml_documents(&sb, items);
	assert_string_equal(sb.buf, "---\n"
				    "\"kind\": \"A\"\n"
				    "\"n\": 3\n"
				    "\"ok\": true\n"
				    "\"none\": null\n"
				    "\"e\": {}\n"
				    "\"l\": []\n"
				    "\"list\":\n"
				    "- \"x\"\n"
				    "- \"k\": 1\n"
				    "  \"m\":\n"
				    "  - - 1\n"
				    "---\n"
				    "\"kind\": \"B\"\n");
	strbuf_release(&sb);
	json_free(items);
}

static void test_cli_scale__builds_processes_body(void **state)
{
	(void)state;
	const char *args[] = {"web=3", "worker=0"};
	struct json *body = NULL;
	char *err = NULL;
	assert_int_equal(cli__scale_parse(args, 2, &body, &err), 0);
	char *s = json_print(body, false);
	assert_string_equal(s, "{\"processes\":{\"web\":3,\"worker\":0}}");
	free(s);
	json_free(body);
}

static void test_cli_scale__rejects_bad_arguments(void **state)
{
	(void)state;
	static const struct {
		const char *arg;
		const char *msg;
	} cases[] = {
		{"web=abc", "invalid scale argument 'web=abc': the count must be a whole number "
			    "from 0 to 10000"},
		{"web=", "invalid scale argument 'web=': the count must be"},
		{"web=-1", "invalid scale argument 'web=-1': the count must be"},
		{"web=+1", "invalid scale argument 'web=+1': the count must be"},
		{"web= 3", "invalid scale argument 'web= 3': the count must be"},
		{"web=10001", "invalid scale argument 'web=10001': the count must be"},
		{"web=99999999999999999999", "the count must be"},
		{"web", "invalid scale argument 'web': expected PROCESS=COUNT, like web=3"},
		{"=3", "invalid scale argument '=3': expected PROCESS=COUNT"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct json *body = NULL;
		char *err = NULL;
		assert_int_equal(cli__scale_parse(&cases[i].arg, 1, &body, &err), -EINVAL);
		assert_null(body);
		assert_contains(err, cases[i].msg);
		free(err);
	}
	const char *dup[] = {"web=1", "worker=2", "web=3"};
	struct json *body = NULL;
	char *err = NULL;
	assert_int_equal(cli__scale_parse(dup, 3, &body, &err), -EINVAL);
	assert_string_equal(err, "process type 'web' is given more than once");
	free(err);
}

static void test_cli_scale__accepts_the_bounds(void **state)
{
	(void)state;
	const char *args[] = {"web=0", "worker=10000"};
	struct json *body = NULL;
	char *err = NULL;
	assert_int_equal(cli__scale_parse(args, 2, &body, &err), 0);
	int64_t v;
	assert_int_equal(json_get_int(json_get(json_get(body, "processes"), "worker"), &v), 0);
	assert_int_equal(v, 10000);
	json_free(body);
}

/* ------------------------------------------------------------- addresses */

static void test_cli_addr__parses_unix_forms(void **state)
{
	(void)state;
	static const struct {
		const char *in, *path, *display;
	} cases[] = {
		{"unix:/var/lib/paasops/paasops.sock", "/var/lib/paasops/paasops.sock",
		 "unix:/var/lib/paasops/paasops.sock"},
		{"unix:///run/p.sock", "/run/p.sock", "unix:/run/p.sock"},
		{"/tmp/p.sock", "/tmp/p.sock", "unix:/tmp/p.sock"},
		{"unix:rel.sock", "rel.sock", "unix:rel.sock"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct cli_addr a;
		char *err = NULL;
		assert_int_equal(cli__addr_parse(cases[i].in, &a, &err), 0);
		assert_int_equal(a.kind, CLI_ADDR_UNIX);
		assert_string_equal(a.path, cases[i].path);
		assert_string_equal(a.display, cases[i].display);
		cli__addr_release(&a);
	}
}

static void test_cli_addr__parses_http_forms(void **state)
{
	(void)state;
	static const struct {
		const char *in, *host, *port, *display;
	} cases[] = {
		{"http://127.0.0.1:7070", "127.0.0.1", "7070", "http://127.0.0.1:7070"},
		{"http://paas.example.com/", "paas.example.com", "80", "http://paas.example.com:80"},
		{"http://[::1]:9000", "::1", "9000", "http://[::1]:9000"},
		{"localhost:7070", "localhost", "7070", "http://localhost:7070"},
		{"[::1]:1", "::1", "1", "http://[::1]:1"},
		{"https://127.0.0.1:7443", "127.0.0.1", "7443", "https://127.0.0.1:7443"},
		{"https://paas.example.com/", "paas.example.com", "443", "https://paas.example.com:443"},
		{"https://[::1]:9443", "::1", "9443", "https://[::1]:9443"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct cli_addr a;
		char *err = NULL;
		if (cli__addr_parse(cases[i].in, &a, &err) < 0)
			fail_msg("'%s': %s", cases[i].in, err);
		assert_int_equal(a.kind, CLI_ADDR_TCP);
		assert_string_equal(a.host, cases[i].host);
		assert_string_equal(a.port, cases[i].port);
		assert_string_equal(a.display, cases[i].display);
		assert_int_equal(a.tls, strncmp(cases[i].in, "https://", 8) == 0);
		cli__addr_release(&a);
	}
}

static void test_cli_addr__rejects_bad_addresses(void **state)
{
	(void)state;
	static const struct {
		const char *in, *msg;
	} cases[] = {
		{"", "empty server address"},
		{"unix:", "invalid server address 'unix:': missing socket path"},
		{"https://x:0", "port from 1 to 65535"},
		{"https://x/v1", "a path is not allowed"},
		{"ftp://x", "use unix:/path/to.sock or http(s)://HOST:PORT"},
		{"paasops", "invalid server address 'paasops': use unix:/path/to.sock"},
		{"http://h:0", "port from 1 to 65535"},
		{"http://h:65536", "port from 1 to 65535"},
		{"http://h:x", "port from 1 to 65535"},
		{"http://h:", "port from 1 to 65535"},
		{"h:80x", "port from 1 to 65535"},
		{"http://h:80/v1", "a path is not allowed"},
		{"http://:80", "missing host"},
		{"http://[::1", "unterminated '['"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct cli_addr a;
		char *err = NULL;
		assert_int_equal(cli__addr_parse(cases[i].in, &a, &err), -EINVAL);
		assert_contains(err, cases[i].msg);
		free(err);
	}
}

/* ------------------------------------------------------------- argv */

static void test_cli_parse__global_flags_before_and_after_the_command(void **state)
{
	(void)state;
	struct cli_invocation inv;
	PARSE_OK(&inv, "--json", "ps", "shop", "--server", "unix:/s.sock", "--token=t0k");
	assert_string_equal(inv.cmd->name, "ps");
	assert_int_equal(inv.n_pos, 1);
	assert_string_equal(inv.pos[0], "shop");
	assert_true(inv.json);
	assert_string_equal(inv.server, "unix:/s.sock");
	assert_string_equal(inv.token, "t0k");
	cli__invocation_release(&inv);
}

static void test_cli_parse__short_flags_cluster_and_take_values(void **state)
{
	(void)state;
	struct cli_invocation inv;
	PARSE_OK(&inv, "logs", "shop", "-fn5", "-p", "web", "--instance=web.1");
	assert_string_equal(inv.cmd->name, "logs");
	assert_string_equal(cli__flag(&inv, "follow"), "");
	assert_string_equal(cli__flag(&inv, "lines"), "5");
	assert_string_equal(cli__flag(&inv, "process"), "web");
	assert_string_equal(cli__flag(&inv, "instance"), "web.1");
	assert_null(cli__flag(&inv, "nope"));
	cli__invocation_release(&inv);

	PARSE_OK(&inv, "logs", "-n", "20", "shop");
	assert_string_equal(cli__flag(&inv, "lines"), "20");
	assert_string_equal(inv.pos[0], "shop");
	cli__invocation_release(&inv);
}

static void test_cli_parse__subcommands_and_repeated_flags(void **state)
{
	(void)state;
	struct cli_invocation inv;
	PARSE_OK(&inv, "tokens", "create", "--role", "deployer", "--app", "shop", "--app=blog");
	assert_string_equal(inv.cmd->name, "tokens create");
	assert_int_equal(inv.n_vals, 3);
	assert_string_equal(inv.vals[1].opt->name, "app");
	assert_string_equal(inv.vals[1].value, "shop");
	assert_string_equal(inv.vals[2].value, "blog");
	cli__invocation_release(&inv);
}

static void test_cli_parse__double_dash_ends_flags(void **state)
{
	(void)state;
	struct cli_invocation inv;
	PARSE_OK(&inv, "ps", "--", "-odd");
	assert_string_equal(inv.pos[0], "-odd");
	cli__invocation_release(&inv);
}

static void test_cli_parse__reports_usage_errors_in_one_line(void **state)
{
	(void)state;
	const struct {
		char **argv;
		int argc;
		const char *msg;
	} cases[] = {
		{ARGV("sclae"), ARGC("sclae"), "unknown command 'sclae' (did you mean 'scale'?)"},
		{ARGV("frobnicate"), ARGC("frobnicate"), "unknown command 'frobnicate'"},
		{ARGV("logs", "shop", "--folow"), ARGC("logs", "shop", "--folow"),
		 "unknown flag '--folow' for 'logs' (did you mean '--follow'?)"},
		{ARGV("ps", "-z"), ARGC("ps", "-z"), "unknown flag '-z' for 'ps'"},
		{ARGV("-f", "x", "apply"), ARGC("-f", "x", "apply"), "unknown flag '-f' for 'paasops'"},
		{ARGV("ps", "--server"), ARGC("ps", "--server"), "flag '--server' needs a value (ADDR)"},
		{ARGV("logs", "shop", "-n"), ARGC("logs", "shop", "-n"), "flag '-n' needs a value (N)"},
		{ARGV("--json=yes", "ps"), ARGC("--json=yes", "ps"),
		 "flag '--json' does not take a value"},
		{ARGV("ps", "a", "b"), ARGC("ps", "a", "b"),
		 "unexpected argument 'b': usage: paasops ps [APP]"},
		{ARGV("scale", "shop"), ARGC("scale", "shop"),
		 "missing arguments: usage: paasops scale APP PROCESS=COUNT..."},
		{ARGV("tokens"), ARGC("tokens"), "'tokens' needs a subcommand: create, list, revoke"},
		{ARGV("tokens", "lst"), ARGC("tokens", "lst"),
		 "unknown command 'tokens lst' (choose one of: create, list, revoke)"},
		{ARGV("--json"), ARGC("--json"), "missing command"},
		{ARGV("--", "apps"), ARGC("--", "apps"),
		 "'--' must come after the command: paasops apps -- ARGS"},
		{ARGV("--", "x"), ARGC("--", "x"), "missing command before '--' (found 'x' after it)"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *err = parse_err(cases[i].argc, cases[i].argv);
		assert_string_equal(err, cases[i].msg);
		assert_null(strchr(err, '\n'));
		free(err);
	}
}

static void test_cli_parse__help_skips_argument_checks(void **state)
{
	(void)state;
	struct cli_invocation inv;
	PARSE_OK(&inv, "scale", "--help");
	assert_true(inv.help);
	assert_string_equal(inv.cmd->name, "scale");
	cli__invocation_release(&inv);
	PARSE_OK(&inv, "tokens", "-h");
	assert_true(inv.help);
	assert_null(inv.cmd);
	assert_string_equal(inv.group, "tokens");
	cli__invocation_release(&inv);
}

static void test_cli_parse_count__accepts_digits_only(void **state)
{
	(void)state;
	int64_t v;
	assert_int_equal(cli__parse_count("0", 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(cli__parse_count("10", 10, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(cli__parse_count("11", 10, &v), -ERANGE);
	assert_int_equal(cli__parse_count("-1", 10, &v), -EINVAL);
	assert_int_equal(cli__parse_count("1.5", 10, &v), -EINVAL);
	assert_int_equal(cli__parse_count("", 10, &v), -EINVAL);
}

/* ------------------------------------------------------------- output */

static void test_cli_table__aligns_columns_and_trims_line_ends(void **state)
{
	(void)state;
	static const char *const headers[] = {"NAME", "STATE", "REASON"};
	struct cli_table t;
	cli__table_init(&t, headers, 3);
	cli__table_add(&t, "shop");
	cli__table_add(&t, "running");
	cli__table_add(&t, "");
	cli__table_add(&t, "blog-backend");
	cli__table_add(&t, NULL);
	cli__table_add(&t, "line1\nline2\x1b[31m");
	cli__table_add(&t, "caf\xc3\xa9");
	cli__table_addf(&t, "%d", 7);
	cli__table_add(&t, "ok");
	assert_int_equal(cli__table_rows(&t), 3);
	struct strbuf sb;
	strbuf_init(&sb, 0);
	cli__table_render(&t, &sb);
	assert_string_equal(sb.buf, "NAME          STATE    REASON\n"
				    "shop          running\n"
				    "blog-backend  -        line1 line2 [31m\n"
				    "caf\xc3\xa9          7        ok\n");
	strbuf_release(&sb);
	cli__table_release(&t);
}

static void test_cli_format_age__shows_two_largest_units(void **state)
{
	(void)state;
	static const struct {
		int64_t ms;
		const char *out;
	} cases[] = {
		{-5, "0s"},         {999, "0s"},          {1000, "1s"},
		{45000, "45s"},     {200000, "3m20s"},    {3600000, "1h"},
		{7500000, "2h5m"},  {7530000, "2h5m"},    {86400000, "1d"},
		{360000000, "4d4h"}, {86400000 * 400LL, "400d"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char buf[32];
		cli__format_age(cases[i].ms, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].out);
	}
}

static void test_cli_format_bytes__uses_binary_units(void **state)
{
	(void)state;
	static const struct {
		int64_t b;
		const char *out;
	} cases[] = {
		{0, "0B"},
		{512, "512B"},
		{1023, "1023B"},
		{1024, "1.0K"},
		{1229, "1.2K"},
		{1826816, "1.7M"},
		{268435456, "256M"},
		{10433331, "9.9M"},
		{10480517, "10M"},
		{1048575, "1.0M"},
		{3650722201LL, "3.4G"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char buf[32];
		cli__format_bytes(cases[i].b, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].out);
	}
}

static void test_cli_parse_time__reads_rfc3339(void **state)
{
	(void)state;
	int64_t ms;
	assert_int_equal(cli__parse_time("1970-01-01T00:00:01Z", &ms), 0);
	assert_int_equal(ms, 1000);
	assert_int_equal(cli__parse_time("2026-11-29T22:57:15.123Z", &ms), 0);
	assert_int_equal(ms, 1795993035123LL);
	assert_int_equal(cli__parse_time("2026-11-29T23:57:15.1234+01:00", &ms), 0);
	assert_int_equal(ms, 1795993035123LL);
	assert_int_equal(cli__parse_time("2026-11-29T22:57:15", &ms), -EINVAL);
	assert_int_equal(cli__parse_time("2026-13-29T22:57:15Z", &ms), -EINVAL);
	assert_int_equal(cli__parse_time("yesterday", &ms), -EINVAL);
	assert_int_equal(cli__parse_time("2026-11-29T22:57:15Zjunk", &ms), -EINVAL);
}

static void test_cli_json_pretty__indents_like_jq(void **state)
{
	(void)state;
	const char *in = "{\"a\":[1,{\"b\":\"x\\ny\"},[]],\"c\":{},\"d\":null}";
	struct json *j = json_parse(in, strlen(in), NULL);
	assert_non_null(j);
	struct strbuf sb;
	strbuf_init(&sb, 0);
	cli__json_pretty(j, &sb);
	assert_string_equal(sb.buf, "{\n"
				    "  \"a\": [\n"
				    "    1,\n"
				    "    {\n"
				    "      \"b\": \"x\\ny\"\n"
				    "    },\n"
				    "    []\n"
				    "  ],\n"
				    "  \"c\": {},\n"
				    "  \"d\": null\n"
				    "}");
	strbuf_release(&sb);
	json_free(j);
}

/* ------------------------------------------------------------- exit codes */

static void test_cli_exit__maps_statuses_and_transport_errors(void **state)
{
	(void)state;
	assert_int_equal(cli__exit_for_status(200), 0);
	assert_int_equal(cli__exit_for_status(201), 0);
	assert_int_equal(cli__exit_for_status(400), 1);
	assert_int_equal(cli__exit_for_status(401), 1);
	assert_int_equal(cli__exit_for_status(404), 1);
	assert_int_equal(cli__exit_for_status(422), 1);
	assert_int_equal(cli__exit_for_status(500), 1);
	assert_int_equal(cli__exit_for_transport(-ENOENT), 3);
	assert_int_equal(cli__exit_for_transport(-ECONNREFUSED), 3);
	assert_int_equal(cli__exit_for_transport(-ETIMEDOUT), 3);
	assert_int_equal(cli__exit_for_transport(-EACCES), 3);
	assert_int_equal(cli__exit_for_transport(-EPROTO), 1);
}

/* ------------------------------------------------------------- data dir */

/* Checks the non-root rules; returns a description of the first mismatch. */
static const char *check_user_data_dir(void)
{
	static const char *fail;
	char *d;
	setenv("XDG_DATA_HOME", "/xdg", 1);
	d = paths_default_data_dir();
	fail = d && strcmp(d, "/xdg/paasops") == 0 ? NULL : "XDG_DATA_HOME not used";
	free(d);
	if (fail)
		return fail;
	setenv("XDG_DATA_HOME", "relative", 1);
	setenv("HOME", "/home/u", 1);
	d = paths_default_data_dir();
	fail = d && strcmp(d, "/home/u/.local/share/paasops") == 0 ? NULL
								   : "relative XDG_DATA_HOME not ignored";
	free(d);
	if (fail)
		return fail;
	unsetenv("XDG_DATA_HOME");
	d = paths_default_data_dir();
	fail = d && strcmp(d, "/home/u/.local/share/paasops") == 0 ? NULL : "HOME not used";
	free(d);
	return fail;
}

static void test_cli_default_data_dir__root_and_users(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		const char *fail = check_user_data_dir();
		if (fail)
			fail_msg("%s", fail);
		return;
	}
	char *d = paths_default_data_dir();
	assert_string_equal(d, "/var/lib/paasops");
	free(d);
	/* As root, prove the user rules in a child that drops to nobody. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setresuid(65534, 65534, 65534) < 0)
			_exit(2);
		const char *fail = check_user_data_dir();
		if (fail)
			fprintf(stderr, "%s\n", fail);
		_exit(fail ? 1 : 0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ------------------------------------------------------------- client */

static void test_cli_client__sends_request_and_reads_answer(void **state)
{
	(void)state;
	struct fake f;
	char *a = answer(200, "{\"name\":\"shop\"}");
	const char *answers[] = {a};
	fake_start(&f, answers, 1);

	struct cli_addr addr;
	char *err = NULL;
	assert_int_equal(cli__addr_parse(f.addr, &addr, &err), 0);
	struct cli_client c = {.addr = &addr, .token = "pso_abc", .timeout_ms = 5000};
	struct cli_response res;
	const char *body = "{\"processes\":{\"web\":3}}";
	assert_int_equal(
		cli__client_request(&c, "POST", "/v1/apps/shop/scale", body, strlen(body), &res, &err),
		0);
	assert_int_equal(res.status, 200);
	assert_string_equal(json_get_str(res.json, "name"), "shop");
	cli__response_release(&res);

	char *reqs = fake_finish(&f);
	assert_true(str_starts_with(reqs, "POST /v1/apps/shop/scale HTTP/1.1\r\n"));
	assert_contains(reqs, "\r\nAuthorization: Bearer pso_abc\r\n");
	assert_contains(reqs, "\r\nContent-Type: application/json\r\n");
	assert_contains(reqs, "\r\nContent-Length: 23\r\n");
	assert_contains(reqs, "\r\nConnection: close\r\n\r\n{\"processes\":{\"web\":3}}\n----\n");
	free(reqs);
	free(a);
	cli__addr_release(&addr);
}

static void test_cli_client__reads_answer_ended_by_close(void **state)
{
	(void)state;
	struct fake f;
	const char *answers[] = {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"ok\":true}"};
	fake_start(&f, answers, 1);
	struct cli_addr addr;
	char *err = NULL;
	assert_int_equal(cli__addr_parse(f.addr, &addr, &err), 0);
	struct cli_client c = {.addr = &addr, .timeout_ms = 5000};
	struct cli_response res;
	assert_int_equal(cli__client_request(&c, "GET", "/v1/apps", NULL, 0, &res, &err), 0);
	assert_true(json_true(json_get(res.json, "ok")));
	cli__response_release(&res);
	char *reqs = fake_finish(&f);
	assert_contains(reqs, "GET /v1/apps HTTP/1.1\r\n");
	assert_contains(reqs, "\r\nContent-Length: 0\r\n");
	assert_null(strstr(reqs, "Authorization"));
	free(reqs);
	cli__addr_release(&addr);
}

static void test_cli_client__reports_missing_socket(void **state)
{
	(void)state;
	struct cli_addr addr;
	char *err = NULL;
	assert_int_equal(cli__addr_parse("unix:/nonexistent/paasops.sock", &addr, &err), 0);
	struct cli_client c = {.addr = &addr, .timeout_ms = 5000};
	struct cli_response res;
	int r = cli__client_request(&c, "GET", "/v1/apps", NULL, 0, &res, &err);
	assert_int_equal(r, -ENOENT);
	assert_int_equal(cli__exit_for_transport(r), 3);
	assert_string_equal(err, "cannot reach paasops at unix:/nonexistent/paasops.sock: No such "
				 "file or directory");
	free(err);
	cli__addr_release(&addr);
}

static void test_cli_client__times_out_when_the_daemon_is_silent(void **state)
{
	(void)state;
	struct fake f;
	int fd = fake_listen(&f); /* listens, never accepts or answers */
	struct cli_addr addr;
	char *err = NULL;
	assert_int_equal(cli__addr_parse(f.addr, &addr, &err), 0);
	struct cli_client c = {.addr = &addr, .timeout_ms = 1000};
	struct cli_response res;
	int r = cli__client_request(&c, "GET", "/v1/apps", NULL, 0, &res, &err);
	assert_int_equal(r, -ETIMEDOUT);
	assert_int_equal(cli__exit_for_transport(r), 3);
	assert_contains(err, "did not answer within 1s");
	free(err);
	cli__addr_release(&addr);
	close(fd);
	unlink(f.sock);
	rmdir(f.dir);
}

static void test_cli_client__rejects_a_malformed_answer(void **state)
{
	(void)state;
	struct fake f;
	const char *answers[] = {"SSH-2.0-OpenSSH_9.6\r\n\r\n"};
	fake_start(&f, answers, 1);
	struct cli_addr addr;
	char *err = NULL;
	assert_int_equal(cli__addr_parse(f.addr, &addr, &err), 0);
	struct cli_client c = {.addr = &addr, .timeout_ms = 5000};
	struct cli_response res;
	int r = cli__client_request(&c, "GET", "/v1/apps", NULL, 0, &res, &err);
	assert_int_equal(r, -EPROTO);
	assert_int_equal(cli__exit_for_transport(r), 1);
	assert_contains(err, "bad answer from paasops at unix:");
	free(err);
	free(fake_finish(&f));
	cli__addr_release(&addr);
}

/* ------------------------------------------------------------- commands */

static void test_cli_run__usage_error_exits_2_with_a_hint(void **state)
{
	(void)state;
	struct run r = RUN("scale", "shop", "web=abc");
	assert_int_equal(r.rc, 2);
	assert_string_equal(r.err, "error: invalid scale argument 'web=abc': the count must be a "
				   "whole number from 0 to 10000\n"
				   "run 'paasops scale --help' for usage\n");
	assert_string_equal(r.out, "");
	run_free(&r);

	r = RUN("nope");
	assert_int_equal(r.rc, 2);
	assert_string_equal(r.err, "error: unknown command 'nope'\nrun 'paasops --help' for usage\n");
	run_free(&r);
}

static void test_cli_run__unreachable_daemon_exits_3(void **state)
{
	(void)state;
	struct run r = RUN("--server", "unix:/x/paasops.sock", "apps");
	assert_int_equal(r.rc, 3);
	assert_string_equal(r.err, "error: cannot reach paasops at unix:/x/paasops.sock: No such "
				   "file or directory\n");
	run_free(&r);

	setenv("PAASOPS_SERVER", "unix:/y/paasops.sock", 1);
	r = RUN("ps");
	assert_int_equal(r.rc, 3);
	assert_contains(r.err, "unix:/y/paasops.sock");
	run_free(&r);
	unsetenv("PAASOPS_SERVER");
}

static void test_cli_run__bad_server_address_is_a_usage_error(void **state)
{
	(void)state;
	setenv("PAASOPS_SERVER", "ftp://x:1", 1);
	struct run r = RUN("apps");
	assert_int_equal(r.rc, 2);
	assert_contains(r.err, "(from PAASOPS_SERVER)\n");
	run_free(&r);
	/* An empty --server is a mistake, not a reason to use PAASOPS_SERVER. */
	setenv("PAASOPS_SERVER", "unix:/y/paasops.sock", 1);
	r = RUN("--server", "", "apps");
	assert_int_equal(r.rc, 2);
	assert_contains(r.err, "error: --server is empty");
	run_free(&r);
	unsetenv("PAASOPS_SERVER");
}

static void test_cli_run__apps_prints_a_table(void **state)
{
	(void)state;
	struct fake f;
	char *a = answer(200, "{\"apps\":["
			      "{\"name\":\"shop\",\"stopped\":false,\"processes\":["
			      "{\"name\":\"web\",\"instances\":2,\"ready\":2},"
			      "{\"name\":\"worker\",\"instances\":1,\"ready\":0}]},"
			      "{\"name\":\"blog\",\"stopped\":true,\"processes\":["
			      "{\"name\":\"web\",\"instances\":1,\"ready\":0}]},"
			      "{\"name\":\"api\",\"stopped\":false,\"processes\":["
			      "{\"name\":\"web\",\"instances\":1,\"ready\":1}]}]}");
	const char *answers[] = {a};
	fake_start(&f, answers, 1);
	struct run r = RUN("apps", "--server", f.addr);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "NAME  PROCESSES       READY  STATE\n"
				   "shop  web=2 worker=1  2/3    degraded\n"
				   "blog  web=1           0/1    stopped\n"
				   "api   web=1           1/1    running\n");
	free(fake_finish(&f));
	free(a);
	run_free(&r);
}

static void test_cli_run__ps_prints_human_units(void **state)
{
	(void)state;
	struct fake f;
	char started[40], body[1024];
	time_format_iso(time_wall_ms() - 200500, started, sizeof(started));
	snprintf(body, sizeof(body),
		 "{\"instances\":["
		 "{\"id\":\"shop.web.1\",\"state\":\"ready\",\"pid\":4242,\"port\":20001,"
		 "\"started_at\":\"%s\",\"restarts\":0,\"cpu_percent\":0.3,"
		 "\"rss_bytes\":1826816,\"reason\":\"health check passed\"},"
		 "{\"id\":\"shop.web.2\",\"state\":\"backoff\",\"pid\":null,\"port\":null,"
		 "\"started_at\":null,\"restarts\":4,\"cpu_percent\":null,\"rss_bytes\":null,"
		 "\"reason\":\"exited with status 1\"}]}",
		 started);
	char *a = answer(200, body);
	const char *answers[] = {a};
	fake_start(&f, answers, 1);
	struct run r = RUN("--server", f.addr, "ps", "shop");
	assert_int_equal(r.rc, 0);
	assert_string_equal(
		r.out,
		"INSTANCE    STATE    PID   PORT   UPTIME  RESTARTS  CPU   MEM   REASON\n"
		"shop.web.1  ready    4242  20001  3m20s   0         0.3%  1.7M  health check passed\n"
		"shop.web.2  backoff  -     -      -       4         -     -     exited with status 1\n");
	char *reqs = fake_finish(&f);
	assert_true(str_starts_with(reqs, "GET /v1/apps/shop/instances HTTP/1.1\r\n"));
	free(reqs);
	free(a);
	run_free(&r);
}

static void test_cli_run__apply_sends_spec_and_prints_422_details(void **state)
{
	(void)state;
	char dir[] = "/tmp/paasops-test-apply-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *file = xasprintf("%s/paasops.yaml", dir);
	FILE *fp = fopen(file, "w");
	assert_non_null(fp);
	fputs("app: shop\n", fp);
	fclose(fp);

	struct fake f;
	char *a1 = answer(201, "{\"name\":\"shop\"}");
	char *a2 = answer(422, "{\"error\":{\"code\":\"invalid_spec\",\"message\":\"the spec has "
			       "2 errors\",\"details\":[\"paasops.yaml:3:5: unknown key 'comand' "
			       "(did you mean 'command'?)\",\"paasops.yaml:1:1: missing key "
			       "'processes'\"]}}");
	const char *answers[] = {a1, a2};
	fake_start(&f, answers, 2);

	struct run r = RUN("--server", f.addr, "apply", "-f", file);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "applied app 'shop' (created)\n");
	run_free(&r);

	r = RUN("--server", f.addr, "apply", "-f", file);
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.out, "");
	assert_string_equal(r.err, "error: the spec has 2 errors\n"
				   "error: paasops.yaml:3:5: unknown key 'comand' (did you mean "
				   "'command'?)\n"
				   "error: paasops.yaml:1:1: missing key 'processes'\n");
	run_free(&r);

	char *reqs = fake_finish(&f);
	char *want = xasprintf("{\"spec\":\"app: shop\\n\",\"dir\":\"%s\",\"filename\":\"%s\"}",
			       dir, file);
	assert_contains(reqs, "POST /v1/apps HTTP/1.1\r\n");
	assert_contains(reqs, want);
	free(want);
	free(reqs);
	free(a1);
	free(a2);
	unlink(file);
	rmdir(dir);
	free(file);
}

static void test_cli_run__apply_of_missing_file_fails_without_daemon(void **state)
{
	(void)state;
	struct run r = RUN("--server", "unix:/x.sock", "apply", "-f", "/nonexistent/p.yaml");
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err,
			    "error: cannot read '/nonexistent/p.yaml': No such file or directory\n");
	run_free(&r);
}

static void test_cli_run__destroy_asks_unless_yes(void **state)
{
	(void)state;
	/* No terminal and no --yes: refused before any request (no daemon). */
	struct run r = RUN("--server", "unix:/x.sock", "destroy", "shop");
	assert_int_equal(r.rc, 2);
	assert_contains(r.err, "stdin is not a terminal (pass --yes)");
	run_free(&r);

	/* A terminal answering no: nothing is sent. */
	r = run_cli("n\n", true, ARGC("--server", "unix:/x.sock", "destroy", "shop"),
		    ARGV("--server", "unix:/x.sock", "destroy", "shop"));
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "destroy app 'shop' and stop its instances? [y/N] "
				   "aborted: app 'shop' was not destroyed\n");
	run_free(&r);

	/* A terminal answering yes, then --yes without one. */
	struct fake f;
	char *a = answer(200, "{\"deleted\":\"shop\"}");
	const char *answers[] = {a, a};
	fake_start(&f, answers, 2);
	r = run_cli("y\n", true, ARGC("--server", f.addr, "destroy", "shop"),
		    ARGV("--server", f.addr, "destroy", "shop"));
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "destroyed app 'shop'\n");
	run_free(&r);
	r = RUN("--server", f.addr, "destroy", "shop", "--yes");
	assert_int_equal(r.rc, 0);
	run_free(&r);
	char *reqs = fake_finish(&f);
	assert_true(str_starts_with(reqs, "DELETE /v1/apps/shop HTTP/1.1\r\n"));
	free(reqs);
	free(a);
}

static void test_cli_run__restart_with_dot_targets_an_instance(void **state)
{
	(void)state;
	struct fake f;
	char *a = answer(200, "{\"restarted\":[\"shop.web.2\"]}");
	const char *answers[] = {a, a, a};
	fake_start(&f, answers, 3);
	struct run r = RUN("--server", f.addr, "restart", "shop", "web.2");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "restarted shop.web.2\n");
	run_free(&r);
	r = RUN("--server", f.addr, "restart", "shop", "shop.web.2");
	run_free(&r);
	r = RUN("--server", f.addr, "restart", "shop", "web");
	run_free(&r);
	char *reqs = fake_finish(&f);
	assert_contains(reqs, "\r\n\r\n{\"instance\":\"shop.web.2\"}\n----\n");
	assert_contains(reqs, "\r\n\r\n{\"instance\":\"shop.web.2\"}\n----\nPOST");
	assert_contains(reqs, "\r\n\r\n{\"process\":\"web\"}\n----\n");
	free(reqs);
	free(a);
}

static void test_cli_run__server_errors_exit_1_with_message_and_token_hint(void **state)
{
	(void)state;
	struct fake f;
	char *a1 = answer(404, "{\"error\":{\"code\":\"not_found\",\"message\":\"app 'shop' not "
			       "found\"}}");
	char *a2 = answer(401, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"missing "
			       "token\"}}");
	char *a3 = answer(502, "<html>bad gateway</html>");
	const char *answers[] = {a1, a2, a3};
	fake_start(&f, answers, 3);
	struct run r = RUN("--server", f.addr, "ps", "shop");
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "error: app 'shop' not found\n");
	run_free(&r);
	r = RUN("--server", f.addr, "apps");
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "error: missing token\nhint: pass --token or set PAASOPS_TOKEN\n");
	run_free(&r);
	r = RUN("--server", f.addr, "apps");
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "error: paasops answered 502 Bad Gateway\n");
	run_free(&r);
	free(fake_finish(&f));
	free(a1);
	free(a2);
	free(a3);
}

static void test_cli_run__tokens_create_prints_secret_once(void **state)
{
	(void)state;
	struct fake f;
	char *a = answer(201, "{\"id\":\"tok_1\",\"token\":\"pso_s3cret\",\"role\":\"deployer\","
			      "\"apps\":[\"shop\"],\"expires_at\":null}");
	const char *answers[] = {a};
	fake_start(&f, answers, 1);
	setenv("PAASOPS_TOKEN", "pso_admin", 1);
	struct run r = RUN("--server", f.addr, "tokens", "create", "--role", "deployer", "--app",
			   "shop", "--app", "blog", "--expires", "30d", "--name", "ci");
	unsetenv("PAASOPS_TOKEN");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "pso_s3cret\n");
	assert_contains(r.err, "tok_1");
	assert_contains(r.err, "only time");
	run_free(&r);
	char *reqs = fake_finish(&f);
	assert_contains(reqs, "POST /v1/tokens HTTP/1.1\r\n");
	assert_contains(reqs, "\r\nAuthorization: Bearer pso_admin\r\n");
	assert_contains(reqs, "{\"role\":\"deployer\",\"apps\":[\"shop\",\"blog\"],\"expires\":"
			      "\"30d\",\"name\":\"ci\"}");
	free(reqs);
	free(a);
}

static void test_cli_run__logs_passes_filters_and_prints_lines(void **state)
{
	(void)state;
	struct fake f;
	/* GET /v1/logs answers newest first; the CLI prints oldest first. */
	char *a = answer(200, "{\"lines\":["
			      "{\"seq\":2,\"time\":\"2026-11-29T22:57:16.000456789Z\",\"instance\":"
			      "\"shop.web.1\",\"stream\":\"stderr\",\"line\":\"oops\"},"
			      "{\"seq\":1,\"time\":\"2026-11-29T22:57:15.123Z\",\"instance\":"
			      "\"shop.web.1\",\"stream\":\"stdout\",\"line\":\"listening\"}],\"cursor\":null}");
	const char *answers[] = {a};
	fake_start(&f, answers, 1);
	struct run r = RUN("--server", f.addr, "logs", "shop", "-n", "2", "-i", "web.1");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "2026-11-29T22:57:15.123Z shop.web.1: listening\n"
				   "2026-11-29T22:57:16.000Z shop.web.1[stderr]: oops\n");
	run_free(&r);
	char *reqs = fake_finish(&f);
	assert_true(str_starts_with(reqs, "GET /v1/logs?app=shop&limit=2&instance=shop.web.1 "));
	free(reqs);
	free(a);
}

static void test_cli_run__json_prints_the_server_answer(void **state)
{
	(void)state;
	struct fake f;
	char *a = answer(200, "{\"restarted\":[]}");
	const char *answers[] = {a};
	fake_start(&f, answers, 1);
	struct run r = RUN("--server", f.addr, "restart", "shop", "--json");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "{\n  \"restarted\": []\n}\n");
	run_free(&r);
	char *reqs = fake_finish(&f);
	assert_contains(reqs, "\r\n\r\n{}\n----\n");
	free(reqs);
	free(a);
}

static void test_cli_run__version_without_daemon_still_exits_0(void **state)
{
	(void)state;
	struct run r = RUN("--server", "unix:/x/paasops.sock", "version");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "client: " PAASOPS_VERSION "\n");
	assert_contains(r.err, "server: unknown (cannot reach paasops at unix:/x/paasops.sock");
	run_free(&r);
}

static void test_cli_run__help_lists_every_command(void **state)
{
	(void)state;
	struct run r = RUN("--help");
	assert_int_equal(r.rc, 0);
	for (size_t i = 0; i < cli_n_commands; i++)
		assert_contains(r.out, cli_commands[i].name);
	run_free(&r);
	r = RUN("help", "logs");
	assert_int_equal(r.rc, 0);
	assert_true(str_starts_with(r.out, "usage: paasops logs APP [-f]"));
	assert_contains(r.out, "-f, --follow");
	run_free(&r);
}

/* ------------------------------------------------------------- deploy */

/* Like fake_finish, for requests with binary bodies: the bytes as they
 * came, and a copy with NUL bytes shown as '.' for string checks. */
static struct strbuf fake_finish_raw(struct fake *f, char **text)
{
	struct strbuf all;
	strbuf_init(&all, 0);
	char buf[4096];
	ssize_t n;
	while ((n = read(f->pipe_rd, buf, sizeof(buf))) > 0)
		strbuf_add(&all, buf, (size_t)n);
	close(f->pipe_rd);
	int status;
	assert_int_equal(waitpid(f->pid, &status, 0), f->pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	unlink(f->sock);
	rmdir(f->dir);
	*text = xmalloc(all.len + 1);
	for (size_t i = 0; i < all.len; i++)
		(*text)[i] = all.buf[i] ? all.buf[i] : '.';
	(*text)[all.len] = '\0';
	return all;
}

static char **ignore_ok(const char *text)
{
	char *err = NULL;
	char **p = cli__ignore_parse(text, strlen(text), ".paasopsignore", &err);
	if (!p)
		fail_msg("unexpected error: %s", err);
	return p;
}

static void test_cli_ignore__reads_patterns_skipping_comments_and_blanks(void **state)
{
	(void)state;
	char **p = ignore_ok("# build output\n\nnode_modules/\n  *.log  \r\n/tmp\n#x\ndist/*.map");
	assert_string_equal(p[0], "node_modules/");
	assert_string_equal(p[1], "*.log");
	assert_string_equal(p[2], "tmp");
	assert_string_equal(p[3], "dist/*.map");
	assert_null(p[4]);
	cli__ignore_free(p);
	p = ignore_ok("");
	assert_null(p[0]);
	cli__ignore_free(p);
	p = ignore_ok("a\nb"); /* no final newline */
	assert_string_equal(p[1], "b");
	assert_null(p[2]);
	cli__ignore_free(p);
}

static void test_cli_ignore__refuses_negation_naming_the_line(void **state)
{
	(void)state;
	char *err = NULL;
	const char *text = "*.log\n# keep this one\n!keep.log\n";
	assert_null(cli__ignore_parse(text, strlen(text), "app/.paasopsignore", &err));
	assert_string_equal(err, "app/.paasopsignore:3: negated patterns ('!keep.log') are not "
				 "supported");
	free(err);
}

static void test_cli_config_set__builds_set_and_secret(void **state)
{
	(void)state;
	const char *args[] = {"A=1", "DATABASE_URL=postgres://u:p@h/db?x=y", "EMPTY="};
	struct json *body = NULL;
	char *err = NULL;
	assert_int_equal(cli__config_set_parse(args, 3, false, &body, &err), 0);
	char *s = json_print(body, false);
	assert_string_equal(s, "{\"set\":{\"A\":\"1\",\"DATABASE_URL\":\"postgres://u:p@h/db?x=y\","
			       "\"EMPTY\":\"\"}}");
	free(s);
	json_free(body);
	assert_int_equal(cli__config_set_parse(args, 1, true, &body, &err), 0);
	s = json_print(body, false);
	assert_string_equal(s, "{\"set\":{\"A\":\"1\"},\"secret\":[\"A\"]}");
	free(s);
	json_free(body);
}

static void test_cli_config_set__rejects_bad_arguments(void **state)
{
	(void)state;
	static const struct {
		const char *arg, *msg;
	} bad[] = {
		{"NOEQUALS", "invalid config argument 'NOEQUALS': expected NAME=VALUE"},
		{"=v", "invalid config argument '=v'"},
		{"1A=v", "invalid config name '1A'"},
		{"A-B=v", "invalid config name 'A-B'"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct json *body = NULL;
		char *err = NULL;
		const char *args[] = {bad[i].arg};
		assert_int_equal(cli__config_set_parse(args, 1, false, &body, &err), -EINVAL);
		assert_null(body);
		assert_contains(err, bad[i].msg);
		free(err);
	}
	const char *dup[] = {"A=1", "A=2"};
	struct json *body = NULL;
	char *err = NULL;
	assert_int_equal(cli__config_set_parse(dup, 2, false, &body, &err), -EINVAL);
	assert_string_equal(err, "config var 'A' is given more than once");
	free(err);
	assert_true(cli__config_name_ok("_X9"));
	assert_false(cli__config_name_ok(""));
	assert_false(cli__config_name_ok("PORT"));
	assert_false(cli__config_name_ok("PAASOPS_APP"));
	assert_true(cli__config_name_ok("PAASOPS_WEBHOOK_URL"));
	char *why = cli__config_name_problem("HOST", false);
	assert_contains(why, "config name 'HOST' is reserved");
	free(why);
	assert_null(cli__config_name_problem("HOST", true)); /* unsetting it is fine */
	char longname[300];
	memset(longname, 'A', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	why = cli__config_name_problem(longname, false);
	assert_contains(why, "longer than 256 characters");
	free(why);
}

static void test_cli_parse__a_command_that_is_also_a_group(void **state)
{
	(void)state;
	struct cli_invocation inv;
	PARSE_OK(&inv, "deploy");
	assert_string_equal(inv.cmd->name, "deploy");
	assert_int_equal(inv.n_pos, 0);
	cli__invocation_release(&inv);
	PARSE_OK(&inv, "deploy", "./shop", "--wait");
	assert_string_equal(inv.cmd->name, "deploy");
	assert_string_equal(inv.pos[0], "./shop");
	assert_non_null(cli__flag(&inv, "wait"));
	cli__invocation_release(&inv);
	PARSE_OK(&inv, "deploy", "-m", "fix", "shop");
	assert_string_equal(inv.cmd->name, "deploy");
	assert_string_equal(cli__flag(&inv, "message"), "fix");
	assert_string_equal(inv.pos[0], "shop");
	cli__invocation_release(&inv);
	PARSE_OK(&inv, "deploy", "status", "shop");
	assert_string_equal(inv.cmd->name, "deploy status");
	assert_string_equal(inv.pos[0], "shop");
	cli__invocation_release(&inv);
	PARSE_OK(&inv, "--json", "config", "shop");
	assert_string_equal(inv.cmd->name, "config");
	cli__invocation_release(&inv);
	PARSE_OK(&inv, "config", "set", "shop", "A=1", "--secret");
	assert_string_equal(inv.cmd->name, "config set");
	assert_int_equal(inv.n_pos, 2);
	cli__invocation_release(&inv);
	PARSE_OK(&inv, "deploy", "--help");
	assert_true(inv.help);
	assert_string_equal(inv.cmd->name, "deploy");
	cli__invocation_release(&inv);
	char *err = PARSE_ERR("deploy", "status");
	assert_contains(err, "missing arguments: usage: paasops deploy status APP");
	free(err);
	err = PARSE_ERR("config");
	assert_contains(err, "missing arguments: usage: paasops config APP");
	free(err);
}

/* A fake daemon for one upload: answers with the body's length and a
 * checksum, so a body larger than a pipe can be checked. */
static void fake_sum_start(struct fake *f)
{
	int fd = fake_listen(f);
	f->pid = fork();
	assert_true(f->pid >= 0);
	if (f->pid == 0) {
		alarm(10);
		int c = accept(fd, NULL, NULL);
		struct strbuf req;
		strbuf_init(&req, 0);
		fake_read_request(c, &req);
		char *end = strstr(req.buf, "\r\n\r\n");
		char *cl = strcasestr(req.buf, "\r\ncontent-length:");
		unsigned long long sum = 0;
		size_t off = end ? (size_t)(end + 4 - req.buf) : req.len;
		for (size_t i = off; i < req.len; i++)
			sum = sum * 31 + (unsigned char)req.buf[i];
		char json[200];
		snprintf(json, sizeof(json), "{\"len\":%zu,\"declared\":%lu,\"sum\":\"%llx\",\"sha\":%s}",
			 req.len - off, cl ? strtoul(cl + 17, NULL, 10) : 0UL, sum,
			 strcasestr(req.buf, "\r\nX-Content-SHA256: abc\r\n") ? "true" : "false");
		char *a = answer(202, json);
		if (send(c, a, strlen(a), MSG_NOSIGNAL) < 0)
			_exit(1);
		_exit(0);
	}
	close(fd);
	f->pipe_rd = -1;
}

static void test_cli_client__streams_a_file_body_with_its_length(void **state)
{
	(void)state;
	char path[] = "/tmp/paasops-test-upload-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t size = 300 * 1024 + 17; /* several chunks, the last one partial */
	unsigned long long sum = 0;
	char *data = xmalloc(size);
	for (size_t i = 0; i < size; i++) {
		data[i] = (char)(i * 7 + i / 1000);
		sum = sum * 31 + (unsigned char)data[i];
	}
	assert_int_equal(write(fd, data, size), (ssize_t)size);
	close(fd);
	free(data);

	struct fake f;
	fake_sum_start(&f);
	struct cli_addr addr;
	char *err = NULL;
	assert_int_equal(cli__addr_parse(f.addr, &addr, &err), 0);
	struct cli_client c = {.addr = &addr, .timeout_ms = 5000};
	struct cli_response res;
	const char *headers[] = {"X-Content-SHA256: abc", NULL};
	assert_int_equal(cli__client_request_file(&c, "POST", "/v1/apps/shop/releases", path,
						  "application/gzip", headers, &res, &err),
			 0);
	assert_int_equal(res.status, 202);
	int64_t n;
	assert_int_equal(json_get_int(json_get(res.json, "len"), &n), 0);
	assert_int_equal(n, (int64_t)size);
	assert_int_equal(json_get_int(json_get(res.json, "declared"), &n), 0);
	assert_int_equal(n, (int64_t)size);
	char want[32];
	snprintf(want, sizeof(want), "%llx", sum);
	assert_string_equal(json_get_str(res.json, "sum"), want);
	assert_true(json_true(json_get(res.json, "sha")));
	cli__response_release(&res);
	int status;
	assert_int_equal(waitpid(f.pid, &status, 0), f.pid);
	unlink(f.sock);
	rmdir(f.dir);

	/* A file that cannot be read is a local failure, not an unreachable daemon. */
	unlink(path);
	assert_int_equal(cli__client_request_file(&c, "POST", "/x", path, NULL, NULL, &res, &err),
			 -EIO);
	assert_contains(err, "cannot read '/tmp/paasops-test-upload-");
	assert_int_equal(cli__exit_for_transport(-EIO), 1);
	free(err);
	cli__addr_release(&addr);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_cli_run__deploy_packs_honouring_paasopsignore_and_uploads(void **state)
{
	(void)state;
	char dir[] = "/tmp/paasops-test-deploy-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *p = xasprintf("%s/paasops.yaml", dir);
	write_file(p, "app: shop\nprocesses:\n  web:\n    command: ./server\n");
	free(p);
	p = xasprintf("%s/server", dir);
	write_file(p, "#!/bin/sh\n");
	free(p);
	p = xasprintf("%s/debug.log", dir);
	write_file(p, "noise\n");
	free(p);
	p = xasprintf("%s/.paasopsignore", dir);
	write_file(p, "# logs\n*.log\n");
	free(p);
	p = xasprintf("%s/.git", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	free(p);
	p = xasprintf("%s/.git/HEAD", dir);
	write_file(p, "ref\n");
	free(p);

	struct fake f;
	char *a = answer(202, "{\"version\":3,\"status\":\"pending\",\"deploy\":{\"version\":3}}");
	const char *answers[] = {a};
	fake_start(&f, answers, 1);
	struct run r = RUN("--server", f.addr, "deploy", dir, "-m", "fix it");
	assert_int_equal(r.rc, 0);
	assert_contains(r.out, "release v3 of app 'shop' created from /tmp/paasops-test-deploy-");
	run_free(&r);
	char *reqs;
	struct strbuf raw = fake_finish_raw(&f, &reqs);
	assert_true(str_starts_with(reqs, "POST /v1/apps/shop/releases?spec=paasops.yaml&"
					  "message=fix%20it HTTP/1.1\r\n"));
	assert_contains(reqs, "\r\nContent-Type: application/gzip\r\n");
	assert_contains(reqs, "\r\nX-Content-SHA256: ");

	/* What was sent unpacks to the directory minus .git and *.log. */
	size_t off = (size_t)(strstr(reqs, "\r\n\r\n") + 4 - reqs);
	size_t len = strtoul(strcasestr(reqs, "\r\ncontent-length:") + 17, NULL, 10);
	assert_int_equal(off + len + 6, raw.len); /* then "\n----\n" */
	const char *body = raw.buf + off;
	char tgz[] = "/tmp/paasops-test-deploy-tgz-XXXXXX";
	int fd = mkstemp(tgz);
	assert_int_equal(write(fd, body, len), (ssize_t)len);
	close(fd);
	char out[] = "/tmp/paasops-test-deploy-out-XXXXXX";
	assert_non_null(mkdtemp(out));
	struct archive_limits lim = {1 << 20, 100};
	char *err = NULL;
	assert_int_equal(archive_extract_safe(tgz, out, &lim, &err), 0);
	struct stat st;
	char *q = xasprintf("%s/paasops.yaml", out);
	assert_int_equal(stat(q, &st), 0);
	free(q);
	q = xasprintf("%s/server", out);
	assert_int_equal(stat(q, &st), 0);
	free(q);
	q = xasprintf("%s/.paasopsignore", out);
	assert_int_equal(stat(q, &st), 0);
	free(q);
	q = xasprintf("%s/debug.log", out);
	assert_int_equal(stat(q, &st), -1);
	free(q);
	q = xasprintf("%s/.git", out);
	assert_int_equal(stat(q, &st), -1);
	free(q);
	unlink(tgz);
	paths_remove_tree(out);
	paths_remove_tree(dir);
	strbuf_release(&raw);
	free(reqs);
	free(a);
}

static void test_cli_run__deploy_checks_the_spec_before_sending(void **state)
{
	(void)state;
	char dir[] = "/tmp/paasops-test-deploy-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *p = xasprintf("%s/paasops.yaml", dir);
	write_file(p, "app: shop\nprocesses:\n  web:\n    comand: ./server\n");
	free(p);
	/* No daemon at all: nothing is sent, the spec's errors are printed. */
	struct run r = RUN("--server", "unix:/nonexistent/paasops.sock", "deploy", dir);
	assert_int_equal(r.rc, 1);
	assert_contains(r.err, "paasops.yaml:4:5: unknown key 'comand'");
	assert_string_equal(r.out, "");
	run_free(&r);
	r = RUN("--server", "unix:/nonexistent/paasops.sock", "deploy", dir, "-f", "../x.yaml");
	assert_int_equal(r.rc, 2);
	run_free(&r);
	p = xasprintf("%s/paasops.yaml", dir);
	write_file(p, "app: shop\nprocesses:\n  web:\n    command: ./server\n");
	free(p);
	r = RUN("--server", "unix:/nonexistent/paasops.sock", "deploy", dir, "--app", "blog");
	assert_int_equal(r.rc, 1);
	assert_contains(r.err, "is the spec of app 'shop', not 'blog'");
	run_free(&r);
	paths_remove_tree(dir);
}

static void test_cli_run__deploy_wait_prints_output_and_fails_on_rollback(void **state)
{
	(void)state;
	char dir[] = "/tmp/paasops-test-deploy-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *p = xasprintf("%s/paasops.yaml", dir);
	write_file(p, "app: shop\nprocesses:\n  web:\n    command: ./server\n");
	free(p);
	char *a[] = {
		answer(202, "{\"version\":3,\"deploy\":{\"version\":3}}"),
		answer(200, "{\"lines\":[{\"seq\":6,\"stream\":\"stdout\",\"line\":\"GET /\"},"
			    "{\"seq\":7,\"stream\":\"build\",\"line\":\"compiling\"}],\"next\":7}"),
		answer(200, "{\"version\":3,\"phase\":\"building\",\"result\":null}"),
		answer(200, "{\"lines\":[],\"next\":7}"),
		answer(200, "{\"version\":3,\"from\":2,\"phase\":\"done\",\"result\":\"rolled-back\","
			    "\"reason\":\"regression: v3 answered 5xx to 20.0% of 40 requests\"}"),
		answer(200, "{\"lines\":[{\"seq\":8,\"stream\":\"release\",\"line\":\"migrated\"}],"
			    "\"next\":8}"),
	};
	struct fake f;
	fake_start(&f, (const char *const *)a, ARRAY_SIZE(a));
	struct run r = RUN("--server", f.addr, "deploy", dir, "--wait");
	assert_int_equal(r.rc, 1);
	assert_contains(r.out, "build: compiling\nv3: building\nrelease: migrated\n");
	assert_true(!strstr(r.out, "GET /"));
	assert_string_equal(r.err, "error: v3 of app 'shop' was rolled back to v2: regression: v3 "
				   "answered 5xx to 20.0% of 40 requests\n");
	run_free(&r);
	char *reqs;
	struct strbuf raw = fake_finish_raw(&f, &reqs);
	strbuf_release(&raw);
	assert_true(str_starts_with(reqs, "POST /v1/apps/shop/releases"));
	/* The durable log: it has the lines before the app has instances. */
	assert_contains(reqs, "GET /v1/logs?app=shop&stream=build%2Crelease&since=");
	assert_contains(reqs, "GET /v1/apps/shop/deploy ");
	free(reqs);
	for (size_t i = 0; i < ARRAY_SIZE(a); i++)
		free(a[i]);
	paths_remove_tree(dir);
}

static void test_cli_run__config_set_and_releases(void **state)
{
	(void)state;
	char *a[] = {
		answer(202, "{\"version\":5,\"deploy\":{\"version\":5,\"from\":4}}"),
		answer(200, "{\"releases\":[{\"version\":5,\"status\":\"deploying\",\"author\":\"ci\","
			    "\"message\":\"config change\",\"created_at\":\"2020-01-01T00:00:00Z\"},"
			    "{\"version\":4,\"status\":\"active\",\"author\":null,\"message\":null}]}"),
	};
	struct fake f;
	fake_start(&f, (const char *const *)a, ARRAY_SIZE(a));
	struct run r = RUN("--server", f.addr, "config", "set", "shop", "A=1", "B=x=y", "--secret");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "set A, B (secret) on app 'shop': release v5\n");
	run_free(&r);
	r = RUN("--server", f.addr, "releases", "shop");
	assert_int_equal(r.rc, 0);
	assert_true(str_starts_with(r.out, "VERSION  STATUS     AUTHOR  AGE"));
	assert_contains(r.out, "\nv5       deploying  ci      ");
	assert_contains(r.out, "config change\nv4       active     -       -");
	run_free(&r);
	char *reqs = fake_finish(&f);
	assert_contains(reqs, "POST /v1/apps/shop/config HTTP/1.1\r\n");
	assert_contains(reqs, "{\"set\":{\"A\":\"1\",\"B\":\"x=y\"},\"secret\":[\"A\",\"B\"]}");
	free(reqs);
	for (size_t i = 0; i < ARRAY_SIZE(a); i++)
		free(a[i]);
	r = RUN("--server", "unix:/nonexistent/paasops.sock", "releases", "shop", "x3");
	assert_int_equal(r.rc, 2);
	run_free(&r);
	r = RUN("--server", "unix:/nonexistent/paasops.sock", "config", "set", "shop", "9=x");
	assert_int_equal(r.rc, 2);
	run_free(&r);
}

int main(void)
{
	/* A fake daemon that dies must not kill the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cli_scale__builds_processes_body),
		cmocka_unit_test(test_cli_scale__rejects_bad_arguments),
		cmocka_unit_test(test_cli_scale__accepts_the_bounds),
		cmocka_unit_test(test_cli_addr__parses_unix_forms),
		cmocka_unit_test(test_cli_addr__parses_http_forms),
		cmocka_unit_test(test_cli_addr__rejects_bad_addresses),
		cmocka_unit_test(test_cli_parse__global_flags_before_and_after_the_command),
		cmocka_unit_test(test_cli_parse__short_flags_cluster_and_take_values),
		cmocka_unit_test(test_cli_parse__subcommands_and_repeated_flags),
		cmocka_unit_test(test_cli_parse__double_dash_ends_flags),
		cmocka_unit_test(test_cli_parse__reports_usage_errors_in_one_line),
		cmocka_unit_test(test_cli_parse__help_skips_argument_checks),
		cmocka_unit_test(test_cli_parse_count__accepts_digits_only),
		cmocka_unit_test(test_cli_table__aligns_columns_and_trims_line_ends),
		cmocka_unit_test(test_cli_format_age__shows_two_largest_units),
		cmocka_unit_test(test_cli_format_bytes__uses_binary_units),
		cmocka_unit_test(test_cli_parse_time__reads_rfc3339),
		cmocka_unit_test(test_cli_json_pretty__indents_like_jq),
		cmocka_unit_test(test_cli_exit__maps_statuses_and_transport_errors),
		cmocka_unit_test(test_cli_default_data_dir__root_and_users),
		cmocka_unit_test(test_cli_client__sends_request_and_reads_answer),
		cmocka_unit_test(test_cli_client__reads_answer_ended_by_close),
		cmocka_unit_test(test_cli_client__reports_missing_socket),
		cmocka_unit_test(test_cli_client__times_out_when_the_daemon_is_silent),
		cmocka_unit_test(test_cli_client__rejects_a_malformed_answer),
		cmocka_unit_test_setup(test_cli_run__usage_error_exits_2_with_a_hint, setup),
		cmocka_unit_test_setup(test_cli_run__unreachable_daemon_exits_3, setup),
		cmocka_unit_test_setup(test_cli_run__bad_server_address_is_a_usage_error, setup),
		cmocka_unit_test_setup(test_cli_run__apps_prints_a_table, setup),
		cmocka_unit_test_setup(test_cli_run__ps_prints_human_units, setup),
		cmocka_unit_test_setup(test_cli_run__apply_sends_spec_and_prints_422_details, setup),
		cmocka_unit_test_setup(test_cli_run__apply_of_missing_file_fails_without_daemon,
				       setup),
		cmocka_unit_test_setup(test_cli_run__destroy_asks_unless_yes, setup),
		cmocka_unit_test_setup(test_cli_run__restart_with_dot_targets_an_instance, setup),
		cmocka_unit_test_setup(test_cli_run__server_errors_exit_1_with_message_and_token_hint,
				       setup),
		cmocka_unit_test_setup(test_cli_run__tokens_create_prints_secret_once, setup),
		cmocka_unit_test_setup(test_cli_run__logs_passes_filters_and_prints_lines, setup),
		cmocka_unit_test_setup(test_cli_run__json_prints_the_server_answer, setup),
		cmocka_unit_test_setup(test_cli_run__version_without_daemon_still_exits_0, setup),
		cmocka_unit_test_setup(test_cli_run__help_lists_every_command, setup),
		cmocka_unit_test(test_cli_ignore__reads_patterns_skipping_comments_and_blanks),
		cmocka_unit_test(test_cli_ignore__refuses_negation_naming_the_line),
		cmocka_unit_test(test_cli_config_set__builds_set_and_secret),
		cmocka_unit_test(test_cli_yaml__quotes_strings_as_json_that_yaml_reads_alike),
		cmocka_unit_test(test_cli_yaml__writes_block_documents),
		cmocka_unit_test(test_cli_config_set__rejects_bad_arguments),
		cmocka_unit_test(test_cli_parse__a_command_that_is_also_a_group),
		cmocka_unit_test(test_cli_client__streams_a_file_body_with_its_length),
		cmocka_unit_test_setup(test_cli_run__deploy_packs_honouring_paasopsignore_and_uploads,
				       setup),
		cmocka_unit_test_setup(test_cli_run__deploy_checks_the_spec_before_sending, setup),
		cmocka_unit_test_setup(test_cli_run__deploy_wait_prints_output_and_fails_on_rollback,
				       setup),
		cmocka_unit_test_setup(test_cli_run__config_set_and_releases, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
