/* cli_backup.c: `paasops backup -o FILE` asks the running daemon for a
 * consistent copy of its data dir (POST /v1/backup) and saves it;
 * `paasops restore FILE DIR` unpacks one into a new data dir, offline, for
 * `paasops serve --data DIR`. */
#include "cli/cli_internal.h"
#include "compat/archive.h"
#include "compat/json.h"
#include "core/paths.h"
#include "core/strbuf.h"
#include "core/util.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const struct cli_opt cli__backup_opts[] = {
	{"output", 'o', "FILE", false, "write the backup to FILE ('-': stdout)"},
	{"logs", 0, NULL, false, "include the log store (logs.db)"},
	{"metrics", 0, NULL, false, "include the metrics history (metrics.tsdb)"},
	{NULL, 0, NULL, false, NULL},
};

struct sink {
	int fd;
	uint64_t bytes;
	int err; /* errno of a failed write */
};

static int on_body(void *ctx, const char *data, size_t len)
{
	struct sink *s = ctx;
	while (len) {
		ssize_t w = write(s->fd, data, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			s->err = errno;
			return -1;
		}
		data += w;
		len -= (size_t)w;
		s->bytes += (uint64_t)w;
	}
	return 0;
}

int cli__cmd_backup(struct cli *c)
{
	const char *out = cli__flag(c->inv, "output");
	if (!out || !*out)
		return cli__usage_error(c, "missing -o FILE (or -o - for stdout)");
	bool to_stdout = str_eq(out, "-");
	if (to_stdout && isatty(fileno(c->out)))
		return cli__usage_error(c, "not writing a backup to a terminal: give -o FILE");
	int rc = cli__resolve_server(c);
	if (rc != CLI_EXIT_OK)
		return rc;
	struct json *body = json_object();
	if (cli__flag(c->inv, "logs"))
		json_set_bool(body, "logs", true);
	if (cli__flag(c->inv, "metrics"))
		json_set_bool(body, "metrics", true);
	char *text = json_print(body, false);
	json_free(body);
	/* Written next to FILE and renamed at the end: a failed backup never
	 * leaves a truncated FILE, nor replaces a good one. */
	char *part = to_stdout ? NULL : xasprintf("%s.part", out);
	struct sink s = {.fd = -1};
	if (to_stdout) {
		fflush(c->out);
		s.fd = fileno(c->out);
	} else {
		s.fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (s.fd < 0) {
			rc = cli__fail(c, "cannot write '%s': %s", part, strerror(errno));
			free(text);
			free(part);
			return rc;
		}
	}
	struct cli_response res = {0};
	char *err = NULL;
	int r = cli__client_stream(&c->client, "POST", "/v1/backup", text, strlen(text), on_body, &s,
				   &res, &err);
	if (s.err) {
		rc = cli__fail(c, "cannot write '%s': %s", to_stdout ? "stdout" : part, strerror(s.err));
	} else if (r == -EPROTO) {
		rc = cli__fail(c, "%s", err);
	} else if (r < 0) {
		rc = cli__stream_failed(c, r, err,
					"the daemon closed the connection before the backup was complete "
					"(it stopped or restarted)");
	} else if (res.status != 200) {
		const char *msg = json_get_str(json_get(res.json, "error"), "message");
		fprintf(c->err, "error: %s\n", msg ? msg : "the daemon made no backup");
		rc = cli__exit_for_answer(c, res.status);
	} else if (!to_stdout && (fsync(s.fd) < 0 || close(s.fd) < 0)) {
		s.fd = -1;
		rc = cli__fail(c, "cannot write '%s': %s", part, strerror(errno));
	} else {
		if (!to_stdout)
			s.fd = -1;
		if (!to_stdout && rename(part, out) < 0) {
			rc = cli__fail(c, "cannot rename '%s' to '%s': %s", part, out, strerror(errno));
		} else {
			char size[32];
			cli__format_bytes((int64_t)s.bytes, size, sizeof(size));
			fprintf(c->err, "wrote a backup of %s to %s\n", size, to_stdout ? "stdout" : out);
			rc = CLI_EXIT_OK;
		}
	}
	if (!to_stdout && s.fd >= 0)
		close(s.fd);
	if (part && rc != CLI_EXIT_OK)
		unlink(part);
	if (r == 0)
		cli__response_release(&res);
	free(err);
	free(text);
	free(part);
	return rc;
}

/* ---- restore ---- */

static bool dir_empty(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return false;
	struct dirent *e;
	bool empty = true;
	while (empty && (e = readdir(d)))
		empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
	closedir(d);
	return empty;
}

static bool has_file(const char *dir, const char *name)
{
	char *p = xasprintf("%s/%s", dir, name);
	struct stat st;
	bool ok = stat(p, &st) == 0 && S_ISREG(st.st_mode);
	free(p);
	return ok;
}

int cli__cmd_restore(struct cli *c)
{
	const char *file = c->inv->pos[0];
	const char *dir = c->inv->pos[1];
	struct stat st;
	bool made = false;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode) || !dir_empty(dir))
			return cli__fail(c, "'%s' exists and is not an empty directory: restore into a new one", dir);
	} else if (errno == ENOENT) {
		int r = paths_mkdir_p(dir, 0700);
		if (r < 0)
			return cli__fail(c, "cannot create '%s': %s", dir, strerror(-r));
		made = true;
	} else {
		return cli__fail(c, "cannot use '%s': %s", dir, strerror(errno));
	}
	chmod(dir, 0700);
	struct archive_limits lim = {.max_bytes = 1LL << 40, .max_files = 10000000};
	char *err = NULL;
	int rc = CLI_EXIT_OK;
	if (archive_extract_safe(file, dir, &lim, &err) < 0) {
		rc = cli__fail(c, "cannot restore '%s': %s", file, err);
	} else {
		char *mpath = xasprintf("%s/BACKUP.json", dir);
		FILE *f = fopen(mpath, "re");
		struct strbuf sb;
		strbuf_init(&sb, 512);
		char buf[4096];
		size_t n;
		while (f && (n = fread(buf, 1, sizeof(buf), f)) > 0 && sb.len < 65536)
			strbuf_add(&sb, buf, n);
		if (f)
			fclose(f);
		struct json *m = sb.len ? json_parse(sb.buf, sb.len, NULL) : NULL;
		if (!m || !str_eq(json_get_str(m, "paasops_backup"), "1") || !has_file(dir, "state.db") ||
		    !has_file(dir, "secret.key")) {
			rc = cli__fail(c, "'%s' is not a paasops backup (no BACKUP.json, state.db and secret.key)",
				       file);
		} else {
			char *key = xasprintf("%s/secret.key", dir);
			chmod(key, 0600);
			free(key);
			fprintf(c->out, "restored the backup of %s (paasops %s) into %s\n",
				cli__jstr(m, "created_at", "?"), cli__jstr(m, "version", "?"), dir);
			fprintf(c->out, "start it with: paasops serve --data %s\n", dir);
		}
		json_free(m);
		strbuf_release(&sb);
		free(mpath);
	}
	free(err);
	if (rc != CLI_EXIT_OK) {
		/* Nothing half restored is left to be started by mistake. */
		if (made) {
			paths_remove_tree(dir);
		} else {
			DIR *d = opendir(dir);
			struct dirent *e;
			while (d && (e = readdir(d))) {
				if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
					continue;
				char *p = xasprintf("%s/%s", dir, e->d_name);
				if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
					paths_remove_tree(p);
				else
					unlink(p);
				free(p);
			}
			if (d)
				closedir(d);
		}
	}
	return rc;
}
