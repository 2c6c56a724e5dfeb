/* cli_deploy.c: the commands that make and inspect releases. `deploy`
 * packs a directory (honouring .paasopsignore) into a temporary tar.gz,
 * checks the spec locally, and streams the archive with its SHA-256 to
 * POST /v1/apps/APP/releases; `--path` deploys a directory already on the
 * server instead, and `--wait` follows the deploy (GET /deploy and the
 * build/release lines of GET /logs, every 250 ms) until it ends, exiting 0
 * only when the new release is fully live. Also `deploy status`, `deploy
 * promote`, `releases`, `rollback` and `config` (show, set, unset), each of
 * which but `releases` and `config` can wait the same way. */
#include "cli/cli_internal.h"
#include "compat/archive.h"
#include "compat/crypto.h"
#include "compat/http.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "spec/spec.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define IGNORE_FILE ".paasopsignore"
#define IGNORE_MAX_BYTES (1024 * 1024)
/* Extraction of a big archive happens before the daemon answers. */
#define UPLOAD_TIMEOUT_MS (10 * 60 * 1000)

/* ------------------------------------------------------------------------ */
/* Pure parts (tested in tests/unit/test_cli.c)                             */

void cli__ignore_free(char **patterns)
{
	for (char **p = patterns; p && *p; p++)
		free(*p);
	free(patterns);
}

char **cli__ignore_parse(const char *text, size_t len, const char *file, char **err)
{
	char **out = NULL;
	size_t n = 0, alloc = 0;
	const char *p = text, *end = text + len;
	for (int line = 1; p < end; line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		const char *s = p;
		p = nl ? nl + 1 : end;
		while (s < e && isspace((unsigned char)*s))
			s++;
		while (e > s && isspace((unsigned char)e[-1]))
			e--;
		if (s == e || *s == '#')
			continue;
		if (*s == '!') {
			*err = xasprintf("%s:%d: negated patterns ('%.*s') are not supported", file, line,
					 (int)(e - s), s);
			cli__ignore_free(out);
			return NULL;
		}
		while (s < e && *s == '/')
			s++; /* anchored: relative to DIR, which is how patterns match anyway */
		if (s == e)
			continue;
		out = xgrow(out, sizeof(*out), n + 2, &alloc);
		out[n++] = xstrndup(s, (size_t)(e - s));
		out[n] = NULL; /* a list to free at every step */
	}
	out = xgrow(out, sizeof(*out), n + 1, &alloc);
	out[n] = NULL;
	return out;
}

char *cli__config_name_problem(const char *k, bool reserved_ok)
{
	bool ok = *k && (isalpha((unsigned char)*k) || *k == '_');
	for (const char *p = k; ok && *p; p++)
		ok = isalnum((unsigned char)*p) || *p == '_';
	if (!ok)
		return xasprintf("invalid config name '%s': use letters, digits and '_', not starting "
				 "with a digit",
				 k);
	if (strlen(k) > 256)
		return xasprintf("invalid config name '%.40s…': longer than 256 characters", k);
	if (!reserved_ok && (str_eq(k, "PORT") || str_eq(k, "HOST") ||
			     (str_starts_with(k, "PAASOPS_") && !str_starts_with(k, "PAASOPS_WEBHOOK_"))))
		return xasprintf("config name '%s' is reserved: paasops sets PORT, HOST and PAASOPS_* "
				 "itself",
				 k);
	return NULL;
}

bool cli__config_name_ok(const char *k)
{
	char *bad = cli__config_name_problem(k, false);
	free(bad);
	return !bad;
}

int cli__config_set_parse(const char *const *args, size_t n, bool secret, struct json **out,
			  char **err)
{
	struct json *body = json_object();
	struct json *set = json_set(body, "set", json_object());
	struct json *sec = secret ? json_set(body, "secret", json_array()) : NULL;
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(args[i], '=');
		if (!eq || eq == args[i]) {
			*err = xasprintf("invalid config argument '%s': expected NAME=VALUE, like "
					 "LOG_LEVEL=debug",
					 args[i]);
			goto fail;
		}
		char *name = xstrndup(args[i], (size_t)(eq - args[i]));
		char *bad = cli__config_name_problem(name, false);
		if (bad) {
			*err = bad;
			free(name);
			goto fail;
		}
		if (json_get(set, name)) {
			*err = xasprintf("config var '%s' is given more than once", name);
			free(name);
			goto fail;
		}
		json_set_str(set, name, eq + 1);
		if (sec)
			json_append(sec, json_string(name));
		free(name);
	}
	*out = body;
	return 0;
fail:
	json_free(body);
	return -EINVAL;
}


static int64_t jint(const struct json *o, const char *key, int64_t fallback)
{
	int64_t v;
	return json_get_int(json_get(o, key), &v) == 0 ? v : fallback;
}

/* "3m ago" for an RFC 3339 time from the API; "-" when absent. */
static void ago_text(const struct json *v, char *buf, size_t size)
{
	int64_t ms;
	if (!json_str(v) || cli__parse_time(json_str(v), &ms) < 0) {
		strlcpy_s(buf, "-", size);
		return;
	}
	char age[32];
	int64_t now = time_wall_ms();
	cli__format_age(now > ms ? now - ms : 0, age, sizeof(age));
	snprintf(buf, size, "%s ago", age);
}

/* "v3" or "3" → 3; -1 when not a release name. */
static int64_t version_arg(const char *s)
{
	if (s && (*s == 'v' || *s == 'V'))
		s++;
	int64_t v;
	if (cli__parse_count(s, 1000000000, &v) < 0 || v < 1)
		return -1;
	return v;
}



/* Reads a whole small text file into out; -errno on failure. */
static int read_small(const char *file, size_t max, struct strbuf *out)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		if (n == 0)
			break;
		strbuf_add(out, buf, (size_t)n);
		if (out->len > max) {
			close(fd);
			return -EFBIG;
		}
	}
	close(fd);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Following a deploy                                                       */

/* Set by SIGINT while waiting; waiting stops, the deploy goes on. */
static volatile sig_atomic_t wait_interrupted;

static void wait_on_sigint(int sig)
{
	(void)sig;
	wait_interrupted = 1;
}

/* Where waiting starts reading the app's durable log: lines logged from
 * now on (RFC 3339), so that only this deploy's phases are printed. It
 * works before the app has instances, on its first deploy, too. */
static int64_t log_cursor(struct cli *c, const char *app)
{
	(void)c;
	(void)app;
	return time_wall_ms();
}

/* What waiting has printed of the app's log. */
struct phase_cursor {
	int64_t since_ms; /* wall ms when waiting began */
	int64_t last_seq; /* the newest line printed */
};

/* Prints the build and release phases' lines logged after the cursor.
 * Errors are not reported: the status poll reports an unreachable daemon. */
static void print_phase_lines(struct cli *c, const char *app, struct phase_cursor *cur)
{
	char since[40];
	time_format_iso(cur->since_ms, since, sizeof(since));
	struct strbuf path;
	strbuf_init(&path, 0);
	strbuf_adds(&path, "/v1/logs");
	cli__query_add(&path, "app", app);
	cli__query_add(&path, "stream", "build,release");
	cli__query_add(&path, "since", since);
	cli__query_add(&path, "order", "asc");
	cli__query_add(&path, "limit", "10000");
	struct cli_response res = {0};
	char *err = NULL;
	if (cli__client_request(&c->client, "GET", path.buf, NULL, 0, &res, &err) == 0 &&
	    res.status == 200) {
		for (const struct json *l = json_first(json_get(res.json, "lines")); l; l = json_next(l)) {
			int64_t seq = jint(l, "seq", 0);
			const char *stream = json_get_str(l, "stream");
			if (seq <= cur->last_seq || !(str_eq(stream, "build") || str_eq(stream, "release")))
				continue;
			cur->last_seq = seq;
			fprintf(c->out, "%s: %s\n", cli__jstr(l, "stream", "?"), cli__jstr(l, "line", ""));
		}
	}
	free(err);
	strbuf_release(&path);
	cli__response_release(&res);
}

/* "rolling out: web: 1 of 2 new ready for 500ms, 1 old left". */
static void progress_text(const struct json *st, struct strbuf *sb)
{
	strbuf_adds(sb, cli__jstr(st, "phase", "?"));
	const char *ro = json_get_str(json_get(st, "rollout"), "phase");
	if (!ro)
		ro = json_get_str(json_get(json_get(st, "rollout"), "rollout"), "phase");
	if (ro && *ro)
		strbuf_addf(sb, ": %s", ro);
}

/* The end of a deploy that is no longer the app's current one: its
 * release's status says how it went. */
static int release_outcome(struct cli *c, const char *app, int64_t version, struct json **st)
{
	char suffix[48];
	snprintf(suffix, sizeof(suffix), "/releases/v%lld", (long long)version);
	char *path = cli__app_path(app, suffix);
	struct cli_response res;
	int rc = cli__call(c, "GET", path, NULL, &res);
	free(path);
	if (rc)
		return rc;
	const char *status = json_get_str(res.json, "status");
	const char *reason = json_get_str(res.json, "reason");
	struct json *o = json_object();
	json_set_int(o, "version", version);
	/* A release an automatic rollback left is failed, its reason ending
	 * "; rolled back to vN". */
	const char *back = reason ? strstr(reason, "; rolled back to v") : NULL;
	long long from = back ? atoll(back + strlen("; rolled back to v")) : 0;
	if (str_eq(status, "failed") && from > 0) {
		json_set_str(o, "result", "rolled-back");
		json_set_int(o, "from", from);
		char *why = xstrndup(reason, (size_t)(back - reason));
		json_set_str(o, "reason", why);
		free(why);
	} else {
		json_set_str(o, "result", str_eq(status, "active") || str_eq(status, "superseded")
						  ? "succeeded"
					  : str_eq(status, "rolled-back") ? "rolled-back"
									  : "failed");
		json_set_str(o, "reason", reason);
	}
	json_set_str(o, "release_status", status);
	*st = o;
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

/* Follows the app's deploy of `version` until it ends, printing phase
 * changes and build/release output (not with --json, which prints the
 * final status instead). 0 when it succeeded, 1 when it failed, was rolled
 * back or waiting was interrupted, 3 when the daemon went away. */
static int wait_deploy(struct cli *c, const char *app, int64_t version, int64_t log_after)
{
	struct sigaction sa = {.sa_handler = wait_on_sigint}, old;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old);
	wait_interrupted = 0;
	c->client.stop = &wait_interrupted;
	bool human = !c->inv->json;
	struct strbuf last;
	strbuf_init(&last, 0);
	char *path = cli__app_path(app, "/deploy");
	int rc = CLI_EXIT_OK;
	struct json *final = NULL;
	struct phase_cursor cur = {log_after, 0};
	for (;;) {
		if (human)
			print_phase_lines(c, app, &cur);
		struct cli_response res;
		rc = cli__call(c, "GET", path, NULL, &res);
		if (rc || wait_interrupted) {
			if (!rc)
				cli__response_release(&res);
			break;
		}
		if (jint(res.json, "version", 0) != version) {
			/* Ours ended and another one started (or none is known). */
			cli__response_release(&res);
			rc = release_outcome(c, app, version, &final);
			break;
		}
		const struct json *result = json_get(res.json, "result");
		if (result && !json_is_null(result)) {
			final = json_dup(res.json);
			cli__response_release(&res);
			break;
		}
		struct strbuf now;
		strbuf_init(&now, 0);
		progress_text(res.json, &now);
		if (human && strcmp(now.buf, last.buf ? last.buf : "") != 0)
			fprintf(c->out, "v%lld: %s\n", (long long)version, now.buf);
		strbuf_release(&last);
		last = now;
		cli__response_release(&res);
		fflush(c->out);
		struct timespec ts = {.tv_sec = 0, .tv_nsec = CLI_FOLLOW_INTERVAL_MS * 1000000L};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !wait_interrupted)
			;
		if (wait_interrupted)
			break;
	}
	free(path);
	strbuf_release(&last);
	sigaction(SIGINT, &old, NULL);
	c->client.stop = NULL;
	if (wait_interrupted && !final) {
		fprintf(c->err, "stopped waiting; the deploy of v%lld goes on (paasops deploy status %s)\n",
			(long long)version, app);
		return CLI_EXIT_FAILED;
	}
	if (!final)
		return rc ? rc : CLI_EXIT_FAILED;
	/* The log store commits lines every 250 ms: give the last ones time
	 * to arrive before the verdict is printed. */
	for (int k = 0; human && k < 3; k++) {
		if (k)
			nanosleep(&(struct timespec){0, 250 * 1000000L}, NULL);
		print_phase_lines(c, app, &cur);
	}
	const char *result = cli__jstr(final, "result", "failed");
	const char *reason = json_get_str(final, "reason");
	if (c->inv->json)
		cli__print_json(c, final, true);
	if (str_eq(result, "succeeded")) {
		if (human)
			fprintf(c->out, "v%lld of app '%s' is live\n", (long long)version, app);
		rc = CLI_EXIT_OK;
	} else if (str_eq(result, "rolled-back")) {
		int64_t from = jint(final, "from", 0);
		if (from > 0)
			fprintf(c->err, "error: v%lld of app '%s' was rolled back to v%lld: %s\n",
				(long long)version, app, (long long)from, reason ? reason : "no reason given");
		else
			fprintf(c->err, "error: v%lld of app '%s' was rolled back: %s\n", (long long)version,
				app, reason ? reason : "no reason given");
		rc = CLI_EXIT_FAILED;
	} else {
		fprintf(c->err, "error: the deploy of v%lld of app '%s' failed: %s\n", (long long)version,
			app, reason ? reason : "no reason given");
		rc = CLI_EXIT_FAILED;
	}
	json_free(final);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* deploy                                                                   */

/* Like cli__call, with the body streamed from a file. */
static int call_file(struct cli *c, const char *path, const char *file, const char *type,
		     const char *const *headers, struct cli_response *res)
{
	memset(res, 0, sizeof(*res));
	int rc = cli__resolve_server(c);
	if (rc)
		return rc;
	struct cli_client client = c->client;
	client.timeout_ms = UPLOAD_TIMEOUT_MS;
	char *err = NULL;
	int r = cli__client_request_file(&client, "POST", path, file, type, headers, res, &err);
	if (r < 0) {
		fprintf(c->err, "error: %s\n", err ? err : strerror(-r));
		free(err);
		return cli__exit_for_transport(r);
	}
	rc = cli__exit_for_status(res->status);
	if (rc) {
		const struct json *e = json_get(res->json, "error");
		const char *msg = json_get_str(e, "message");
		if (msg)
			fprintf(c->err, "error: %s\n", msg);
		else
			fprintf(c->err, "error: paasops answered %d %s\n", res->status,
				http_reason(res->status));
		const struct json *details = json_get(e, "details");
		for (const struct json *d = json_first(details); d && json_is_array(details); d = json_next(d))
			if (json_str(d))
				fprintf(c->err, "error: %s\n", json_str(d));
		if (res->status == 401 && !c->token)
			fprintf(c->err, "hint: pass --token or set PAASOPS_TOKEN\n");
	} else if (!json_is_object(res->json)) {
		fprintf(c->err, "error: unexpected answer from paasops at %s (HTTP %d, not a JSON "
				"object)\n",
			c->addr.display, res->status);
		rc = CLI_EXIT_FAILED;
	}
	if (rc)
		cli__response_release(res);
	return rc;
}

/* DIR/.paasopsignore as patterns; an absent file is an empty list. */
static int read_ignore(struct cli *c, const char *dir, char ***out)
{
	char *file = xasprintf("%s/%s", dir, IGNORE_FILE);
	struct strbuf text;
	strbuf_init(&text, 0);
	int r = read_small(file, IGNORE_MAX_BYTES, &text);
	int rc = CLI_EXIT_OK;
	*out = NULL;
	if (r == -ENOENT) {
		*out = xcalloc(1, sizeof(char *));
	} else if (r < 0) {
		rc = cli__fail(c, "cannot read '%s': %s", file,
			       r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
	} else {
		char *err = NULL;
		*out = cli__ignore_parse(text.buf ? text.buf : "", text.len, file, &err);
		if (!*out) {
			rc = cli__fail(c, "%s", err);
			free(err);
		}
	}
	strbuf_release(&text);
	free(file);
	return rc;
}

/* What `deploy` is sending: a directory packed here, a tarball as it is,
 * or a directory on the server. */
struct deploy_src {
	const char *arg;  /* DIR or FILE as given */
	const char *spec; /* path of the spec inside it */
	char *app;        /* owned */
	bool tarball;
};

/* Checks the spec locally (every error printed) and settles the app name. */
static int check_spec(struct cli *c, struct deploy_src *src)
{
	const char *want = cli__flag(c->inv, "app");
	if (want && !spec_valid_name(want))
		return cli__usage_error(c, "invalid --app '%s': app names are lowercase letters, "
					  "digits and '-'",
				       want);
	if (src->tarball) {
		if (!want)
			return cli__usage_error(c, "deploying the archive '%s' needs --app NAME",
					       src->arg);
		src->app = xstrdup(want);
		return CLI_EXIT_OK;
	}
	char *file = xasprintf("%s/%s", src->arg, src->spec);
	char *err = NULL;
	struct spec *s = spec_parse_file(file, &err);
	int rc = CLI_EXIT_OK;
	if (!s) {
		rc = err && *err ? cli__fail_lines(c, err) : cli__fail(c, "'%s' is not a valid spec", file);
	} else if (want && strcmp(want, s->app) != 0) {
		rc = cli__fail(c, "%s is the spec of app '%s', not '%s'", file, s->app, want);
	} else {
		src->app = xstrdup(s->app);
	}
	spec_free(s);
	free(err);
	free(file);
	return rc;
}

/* --path: POST /v1/apps with the spec and the directory as it is. */
static int deploy_in_place(struct cli *c, struct deploy_src *src, int64_t *version)
{
	char *abs = realpath(src->arg, NULL);
	if (!abs)
		return cli__fail(c, "cannot resolve '%s': %s", src->arg, strerror(errno));
	char *file = xasprintf("%s/%s", abs, src->spec);
	struct strbuf text;
	strbuf_init(&text, 4096);
	int r = read_small(file, SPEC_MAX_BYTES, &text);
	if (r < 0) {
		int rc = cli__fail(c, "cannot read '%s': %s", file, strerror(-r));
		strbuf_release(&text);
		free(file);
		free(abs);
		return rc;
	}
	/* Instances run in DIR, as they run in the root of an uploaded release. */
	char *dir = xstrdup(abs);
	struct json *body = json_object();
	json_set_str(body, "spec", text.buf ? text.buf : "");
	json_set_str(body, "dir", dir);
	json_set_str(body, "filename", src->spec);
	if (cli__flag(c->inv, "message"))
		json_set_str(body, "message", cli__flag(c->inv, "message"));
	strbuf_release(&text);
	struct cli_response res;
	int rc = cli__call(c, "POST", "/v1/apps", body, &res);
	json_free(body);
	if (!rc) {
		*version = jint(res.json, "release", 0);
		if (c->inv->json && !cli__flag(c->inv, "wait"))
			cli__print_json(c, res.json, true);
		else if (!c->inv->json)
			fprintf(c->out, "release v%lld of app '%s' created from %s on the server\n",
				(long long)*version, src->app, dir);
		cli__response_release(&res);
	}
	free(dir);
	free(file);
	free(abs);
	return rc;
}

/* Packs (unless a tarball was given), hashes and streams the archive. */
static int deploy_upload(struct cli *c, struct deploy_src *src, int64_t *version)
{
	char *tmp = NULL;
	const char *archive = src->arg;
	int rc;
	if (!src->tarball) {
		char **ignore;
		rc = read_ignore(c, src->arg, &ignore);
		if (rc)
			return rc;
		const char *tdir = getenv("TMPDIR");
		tmp = xasprintf("%s/paasops-deploy-XXXXXX.tar.gz", tdir && *tdir == '/' ? tdir : "/tmp");
		int fd = mkostemps(tmp, 7, O_CLOEXEC);
		if (fd < 0) {
			rc = cli__fail(c, "cannot create a temporary file in '%s': %s",
				       tdir && *tdir == '/' ? tdir : "/tmp", strerror(errno));
			cli__ignore_free(ignore);
			free(tmp);
			return rc;
		}
		close(fd);
		char *err = NULL;
		int r = archive_pack_dir(src->arg, (const char *const *)ignore, tmp, &err);
		cli__ignore_free(ignore);
		if (r < 0) {
			rc = cli__fail(c, "cannot pack '%s': %s", src->arg, err ? err : strerror(-r));
			free(err);
			unlink(tmp);
			free(tmp);
			return rc;
		}
		archive = tmp;
	}
	char sha[CRYPTO_SHA256_HEX];
	struct stat st;
	if (crypto_sha256_file(archive, sha) < 0 || stat(archive, &st) < 0) {
		rc = cli__fail(c, "cannot read '%s': %s", archive, strerror(errno));
		if (tmp)
			unlink(tmp);
		free(tmp);
		return rc;
	}
	struct strbuf path;
	strbuf_init(&path, 0);
	char *base = cli__app_path(src->app, "/releases");
	strbuf_adds(&path, base);
	free(base);
	cli__query_add(&path, "spec", src->spec);
	const char *msg = cli__flag(c->inv, "message");
	if (msg)
		cli__query_add(&path, "message", msg);
	char *sha_header = xasprintf("X-Content-SHA256: %s", sha);
	const char *headers[] = {sha_header, NULL};
	bool gz = str_ends_with(archive, ".gz") || str_ends_with(archive, ".tgz");
	struct cli_response res;
	rc = call_file(c, path.buf, archive, gz ? "application/gzip" : "application/x-tar", headers, &res);
	free(sha_header);
	strbuf_release(&path);
	if (tmp)
		unlink(tmp);
	free(tmp);
	if (rc)
		return rc;
	*version = jint(res.json, "version", 0);
	if (c->inv->json && !cli__flag(c->inv, "wait")) {
		cli__print_json(c, res.json, true);
	} else if (!c->inv->json) {
		char size[32];
		cli__format_bytes((int64_t)st.st_size, size, sizeof(size));
		fprintf(c->out, "release v%lld of app '%s' created from %s (%s, sha256 %.12s)\n",
			(long long)*version, src->app, src->arg, size, sha);
	}
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

int cli__cmd_deploy(struct cli *c)
{
	struct deploy_src src = {.arg = c->inv->n_pos ? c->inv->pos[0] : "."};
	src.spec = cli__flag(c->inv, "file");
	if (!src.spec)
		src.spec = "paasops.yaml";
	bool in_place = cli__flag(c->inv, "path") != NULL;
	bool wait = cli__flag(c->inv, "wait") != NULL;
	if (!*src.spec || src.spec[0] == '/' || strstr(src.spec, ".."))
		return cli__usage_error(c, "invalid -f '%s': give the spec's path inside DIR, "
					  "without '..'",
				       src.spec);
	struct stat st;
	if (!*src.arg)
		return cli__usage_error(c, "empty directory name");
	if (stat(src.arg, &st) < 0)
		return cli__fail(c, "cannot deploy '%s': %s", src.arg, strerror(errno));
	src.tarball = S_ISREG(st.st_mode);
	if (!src.tarball && !S_ISDIR(st.st_mode))
		return cli__fail(c, "cannot deploy '%s': not a directory or an archive", src.arg);
	if (src.tarball && in_place)
		return cli__usage_error(c, "--path deploys a directory, not the archive '%s'", src.arg);
	int rc = check_spec(c, &src);
	if (rc)
		return rc;
	int64_t after = wait ? log_cursor(c, src.app) : 0, version = 0;
	rc = in_place ? deploy_in_place(c, &src, &version) : deploy_upload(c, &src, &version);
	if (!rc && wait)
		rc = wait_deploy(c, src.app, version, after);
	else if (!rc && !c->inv->json)
		fprintf(c->err, "follow it with 'paasops deploy status %s'\n", src.app);
	free(src.app);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* deploy status, deploy promote                                            */

static void kv(struct cli *c, const char *key, const char *value)
{
	char *v = xstrdup(value && *value ? value : "-");
	cli__sanitize(v);
	fprintf(c->out, "%-9s %s\n", key, v);
	free(v);
}

int cli__cmd_deploy_status(struct cli *c)
{
	const char *app = c->inv->pos[0];
	char *path = cli__app_path(app, "/deploy");
	struct cli_response res;
	int rc = cli__get_or_show(c, path, &res);
	free(path);
	if (rc)
		return rc == CLI_SHOWN ? CLI_EXIT_OK : rc;
	const struct json *o = res.json;
	char buf[256];
	int64_t from = jint(o, "from", 0);
	if (from > 0)
		snprintf(buf, sizeof(buf), "v%lld (from v%lld)", (long long)jint(o, "version", 0), (long long)from);
	else
		snprintf(buf, sizeof(buf), "v%lld", (long long)jint(o, "version", 0));
	kv(c, "app:", app);
	kv(c, "release:", buf);
	const char *result = json_get_str(o, "result");
	kv(c, "result:", result ? result : "running");
	struct strbuf sb;
	strbuf_init(&sb, 0);
	progress_text(o, &sb);
	kv(c, "phase:", sb.buf);
	strbuf_release(&sb);
	ago_text(json_get(o, "started_at"), buf, sizeof(buf));
	kv(c, "started:", buf);
	if (json_str(json_get(o, "finished_at"))) {
		ago_text(json_get(o, "finished_at"), buf, sizeof(buf));
		kv(c, "finished:", buf);
	}
	const struct json *a = json_get(o, "analysis");
	if (a) {
		snprintf(buf, sizeof(buf), "new: %lld requests, %lld 5xx; old: %lld requests, %lld 5xx",
			 (long long)jint(a, "new_requests", 0), (long long)jint(a, "new_5xx", 0),
			 (long long)jint(a, "old_requests", 0), (long long)jint(a, "old_5xx", 0));
		kv(c, "analysis:", buf);
	}
	if (json_get_str(o, "reason"))
		kv(c, "reason:", json_get_str(o, "reason"));
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

int cli__cmd_deploy_promote(struct cli *c)
{
	const char *app = c->inv->pos[0];
	char *path = cli__app_path(app, "/deploy/promote");
	struct json *body = json_object();
	struct cli_response res;
	int rc = cli__call(c, "POST", path, body, &res);
	json_free(body);
	free(path);
	if (rc)
		return rc;
	if (c->inv->json)
		cli__print_json(c, res.json, true);
	else
		fprintf(c->out, "promoted the canary of app '%s' (v%lld): the rollout goes on\n", app,
			(long long)jint(res.json, "version", 0));
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* releases                                                                 */

static int release_show(struct cli *c, const char *app, int64_t v)
{
	char suffix[48];
	snprintf(suffix, sizeof(suffix), "/releases/v%lld", (long long)v);
	char *path = cli__app_path(app, suffix);
	struct cli_response res;
	int rc = cli__get_or_show(c, path, &res);
	free(path);
	if (rc)
		return rc == CLI_SHOWN ? CLI_EXIT_OK : rc;
	const struct json *o = res.json;
	char buf[256], ago[64];
	snprintf(buf, sizeof(buf), "v%lld", (long long)jint(o, "version", v));
	kv(c, "release:", buf);
	kv(c, "app:", app);
	kv(c, "status:", json_get_str(o, "status"));
	kv(c, "author:", json_get_str(o, "author"));
	ago_text(json_get(o, "created_at"), ago, sizeof(ago));
	snprintf(buf, sizeof(buf), "%s (%s)", cli__jstr(o, "created_at", "-"), ago);
	kv(c, "created:", buf);
	kv(c, "message:", json_get_str(o, "message"));
	kv(c, "reason:", json_get_str(o, "reason"));
	kv(c, "sha256:", json_get_str(o, "sha256"));
	snprintf(buf, sizeof(buf), "%s%s", cli__jstr(o, "dir", "-"),
		 json_true(json_get(o, "artifact")) ? "" : " (removed)");
	kv(c, "dir:", buf);
	const struct json *cfg = json_get(o, "config");
	if (json_size(cfg)) {
		fprintf(c->out, "config:\n");
		for (const struct json *e = json_first(cfg); e; e = json_next(e)) {
			char *v = xstrdup(json_str(e) ? json_str(e) : "");
			cli__sanitize(v);
			fprintf(c->out, "  %s=%s\n", json_key(e), v);
			free(v);
		}
	}
	const char *yaml = json_get_str(o, "spec_yaml");
	if (yaml) {
		fprintf(c->out, "spec:\n");
		for (const char *p = yaml; *p;) {
			const char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) : strlen(p);
			fprintf(c->out, "  %.*s\n", (int)n, p);
			p = nl ? nl + 1 : p + n;
		}
	}
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

int cli__cmd_releases(struct cli *c)
{
	const char *app = c->inv->pos[0];
	if (c->inv->n_pos > 1) {
		int64_t v = version_arg(c->inv->pos[1]);
		if (v < 0)
			return cli__usage_error(c, "invalid release '%s': use vN, like v3", c->inv->pos[1]);
		return release_show(c, app, v);
	}
	char *path = cli__app_path(app, "/releases");
	struct cli_response res;
	int rc = cli__get_or_show(c, path, &res);
	free(path);
	if (rc)
		return rc == CLI_SHOWN ? CLI_EXIT_OK : rc;
	static const char *const headers[] = {"VERSION", "STATUS", "AUTHOR", "AGE", "MESSAGE"};
	struct cli_table t;
	cli__table_init(&t, headers, ARRAY_SIZE(headers));
	for (const struct json *r = json_first(json_get(res.json, "releases")); r; r = json_next(r)) {
		char ago[64];
		cli__table_addf(&t, "v%lld", (long long)jint(r, "version", 0));
		cli__table_add(&t, json_get_str(r, "status"));
		cli__table_add(&t, json_get_str(r, "author"));
		ago_text(json_get(r, "created_at"), ago, sizeof(ago));
		cli__table_add(&t, ago);
		cli__table_add(&t, json_get_str(r, "message") ? json_get_str(r, "message") : "");
	}
	if (cli__table_rows(&t) == 0)
		fprintf(c->err, "app '%s' has no releases yet: make one with 'paasops deploy'\n", app);
	else
		cli__table_print(c, &t);
	cli__table_release(&t);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* rollback, config                                                         */

/* POSTs a change that makes a release (config set/unset, or a rollback
 * when done is NULL), prints what it did and waits with --wait. Takes
 * ownership of body. */
static int release_change(struct cli *c, const char *app, const char *suffix, struct json *body,
			  const char *done)
{
	const char *msg = cli__flag(c->inv, "message");
	if (msg)
		json_set_str(body, "message", msg);
	bool wait = cli__flag(c->inv, "wait") != NULL;
	int64_t after = wait ? log_cursor(c, app) : 0;
	char *path = cli__app_path(app, suffix);
	struct cli_response res;
	int rc = cli__call(c, "POST", path, body, &res);
	free(path);
	json_free(body);
	if (rc)
		return rc;
	const struct json *dep = json_get(res.json, "deploy");
	int64_t version = jint(dep, "version", jint(res.json, "version", 0));
	if (c->inv->json && !wait)
		cli__print_json(c, res.json, true);
	else if (!c->inv->json && done)
		fprintf(c->out, "%s on app '%s': release v%lld\n", done, app, (long long)version);
	else if (!c->inv->json)
		fprintf(c->out, "rolling back app '%s' from v%lld to v%lld\n", app,
			(long long)jint(dep, "from", 0), (long long)version);
	cli__response_release(&res);
	return wait ? wait_deploy(c, app, version, after) : CLI_EXIT_OK;
}

int cli__cmd_rollback(struct cli *c)
{
	const char *app = c->inv->pos[0];
	struct json *body = json_object();
	if (c->inv->n_pos > 1) {
		int64_t v = version_arg(c->inv->pos[1]);
		if (v < 0) {
			json_free(body);
			return cli__usage_error(c, "invalid release '%s': use vN, like v3", c->inv->pos[1]);
		}
		json_set_int(body, "version", v);
	} else {
		json_set(body, "version", json_null());
	}
	return release_change(c, app, "/rollback", body, NULL);
}

int cli__cmd_config(struct cli *c)
{
	const char *app = c->inv->pos[0];
	char *path = cli__app_path(app, "/config");
	struct cli_response res;
	int rc = cli__get_or_show(c, path, &res);
	free(path);
	if (rc)
		return rc == CLI_SHOWN ? CLI_EXIT_OK : rc;
	static const char *const headers[] = {"NAME", "VALUE"};
	struct cli_table t;
	cli__table_init(&t, headers, ARRAY_SIZE(headers));
	for (const struct json *e = json_first(json_get(res.json, "config")); e; e = json_next(e)) {
		cli__table_add(&t, json_key(e));
		cli__table_add(&t, json_str(e) ? json_str(e) : "");
	}
	if (cli__table_rows(&t) == 0)
		fprintf(c->err, "app '%s' has no config vars: set one with 'paasops config set %s "
				"NAME=VALUE'\n",
			app, app);
	else
		cli__table_print(c, &t);
	cli__table_release(&t);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

int cli__cmd_config_set(struct cli *c)
{
	struct json *body;
	char *err = NULL;
	bool secret = cli__flag(c->inv, "secret") != NULL;
	if (cli__config_set_parse(c->inv->pos + 1, c->inv->n_pos - 1, secret, &body, &err) < 0) {
		int rc = cli__usage_error(c, "%s", err);
		free(err);
		return rc;
	}
	struct strbuf names;
	strbuf_init(&names, 0);
	for (size_t i = 1; i < c->inv->n_pos; i++)
		strbuf_addf(&names, "%s%.*s", names.len ? ", " : "",
			    (int)(strchr(c->inv->pos[i], '=') - c->inv->pos[i]), c->inv->pos[i]);
	char *done = xasprintf("set %s%s", names.buf, secret ? " (secret)" : "");
	strbuf_release(&names);
	int rc = release_change(c, c->inv->pos[0], "/config", body, done);
	free(done);
	return rc;
}

int cli__cmd_config_unset(struct cli *c)
{
	struct json *body = json_object();
	struct json *list = json_set(body, "unset", json_array());
	struct strbuf names;
	strbuf_init(&names, 0);
	for (size_t i = 1; i < c->inv->n_pos; i++) {
		const char *k = c->inv->pos[i];
		char *bad = cli__config_name_problem(k, true);
		if (bad) {
			strbuf_release(&names);
			json_free(body);
			int rc = cli__usage_error(c, "%s", bad);
			free(bad);
			return rc;
		}
		json_append(list, json_string(k));
		strbuf_addf(&names, "%s%s", names.len ? ", " : "", k);
	}
	char *done = xasprintf("unset %s", names.buf);
	strbuf_release(&names);
	int rc = release_change(c, c->inv->pos[0], "/config", body, done);
	free(done);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Flags                                                                    */

const struct cli_opt cli__deploy_opts[] = {
	{"file", 'f', "FILE", false, "the spec's path inside DIR (default: paasops.yaml)"},
	{"message", 'm', "MESSAGE", false, "why: recorded with the release"},
	{"wait", 'w', NULL, false, "follow the deploy; exit 0 only when the release is live"},
	{"path", 0, NULL, false, "deploy DIR as it is on the daemon's machine (no upload)"},
	{"app", 'a', "NAME", false, "the app (default: the spec's; required for an archive)"},
	{0},
};

const struct cli_opt cli__rollback_opts[] = {
	{"message", 'm', "MESSAGE", false, "why: recorded with the deploy"},
	{"wait", 'w', NULL, false, "follow the rollout; exit 0 only when it is live"},
	{0},
};

const struct cli_opt cli__config_set_opts[] = {
	{"secret", 's', NULL, false, "mark these vars secret: masked when shown"},
	{"message", 'm', "MESSAGE", false, "why: recorded with the release"},
	{"wait", 'w', NULL, false, "follow the rollout; exit 0 only when it is live"},
	{0},
};

const struct cli_opt cli__wait_opts[] = {
	{"message", 'm', "MESSAGE", false, "why: recorded with the release"},
	{"wait", 'w', NULL, false, "follow the rollout; exit 0 only when it is live"},
	{0},
};
