/* api_backup.c: POST /v1/backup, a consistent copy of the data dir as a
 * gzipped tar, made while the daemon keeps running.
 *
 * The archive holds BACKUP.json (what and when), state.db (a snapshot
 * taken through its own SQLite connection), secret.key, alerts.json, the
 * unpacked releases, and on request logs.db (a snapshot too) and
 * metrics.tsdb. It is built on the libuv thread pool in a staging
 * directory inside the data dir, then streamed to the client and removed.
 * One backup at a time. `paasops restore` unpacks one into a new data dir. */
#include "api/api_internal.h"
#include "compat/archive.h"
#include "compat/json.h"
#include "core/log.h"
#include "core/paths.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "core/version.h"
#include "store/store.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BACKUP_CHUNK (256 * 1024)
#define BACKUP_RETRY_MS 20

struct backup {
	uv_work_t work;
	struct api_pending *pending;
	struct api_stream *st;
	uv_timer_t *retry; /* frees the backup when closed */
	bool logs, metrics;
	char *data_dir, *stage, *out;
	char *err;
	int64_t created_ms;
	int fd;
	char *buf;
	bool gone;
};

static bool running; /* one backup at a time, on the control loop */

static void backup_closed(uv_handle_t *h)
{
	struct backup *b = h->data;
	free(h);
	free(b->buf);
	free(b->data_dir);
	free(b->stage);
	free(b->out);
	free(b->err);
	free(b);
}

/* Removes what is left on disk and frees b once its timer is closed. */
static void backup_done(struct backup *b)
{
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
	if (b->out)
		unlink(b->out);
	b->gone = true;
	running = false;
	/* A stopping daemon may have closed every handle (the build finished
	 * after the API stopped): the timer is its to free then. */
	if (!uv_is_closing((uv_handle_t *)b->retry))
		uv_close((uv_handle_t *)b->retry, backup_closed);
}

/* ---- building the archive (thread pool) ---- */

static int copy_in(struct backup *b, const char *name, bool optional)
{
	char *src = xasprintf("%s/%s", b->data_dir, name);
	char *dst = xasprintf("%s/%s", b->stage, name);
	int rc = paths_copy_file(src, dst, 0600);
	if (rc == -ENOENT && optional)
		rc = 0;
	else if (rc < 0)
		b->err = xasprintf("cannot copy '%s': %s", src, strerror(-rc));
	free(src);
	free(dst);
	return rc;
}

static int snapshot_in(struct backup *b, const char *name)
{
	char *src = xasprintf("%s/%s", b->data_dir, name);
	char *dst = xasprintf("%s/%s", b->stage, name);
	int rc = store_snapshot(src, dst, &b->err);
	if (rc == 0)
		chmod(dst, 0600);
	free(src);
	free(dst);
	return rc;
}

static int write_manifest(struct backup *b)
{
	char when[40];
	time_format_iso(b->created_ms, when, sizeof(when));
	struct json *m = json_object();
	json_set_str(m, "paasops_backup", "1");
	json_set_str(m, "version", PAASOPS_VERSION);
	json_set_str(m, "created_at", when);
	json_set_str(m, "data_dir", b->data_dir);
	json_set_bool(m, "logs", b->logs);
	json_set_bool(m, "metrics", b->metrics);
	char *text = json_print(m, true);
	json_free(m);
	char *path = xasprintf("%s/BACKUP.json", b->stage);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	size_t len = strlen(text);
	int rc = fd >= 0 && write(fd, text, len) == (ssize_t)len ? 0 : -EIO;
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		b->err = xasprintf("cannot write '%s'", path);
	free(path);
	free(text);
	return rc;
}

static void build(uv_work_t *w)
{
	struct backup *b = w->data;
	char *tmpl = xasprintf("%s/.backup-XXXXXX", b->data_dir);
	if (!mkdtemp(tmpl)) {
		b->err = xasprintf("cannot make a staging directory in '%s': %s", b->data_dir,
				   strerror(errno));
		free(tmpl);
		return;
	}
	b->stage = tmpl;
	b->out = xasprintf("%s.tar.gz", b->stage);
	int rc = write_manifest(b);
	if (rc == 0)
		rc = snapshot_in(b, "state.db");
	if (rc == 0 && b->logs)
		rc = snapshot_in(b, "logs.db");
	if (rc == 0)
		rc = copy_in(b, "secret.key", false);
	if (rc == 0)
		rc = copy_in(b, "alerts.json", true);
	if (rc == 0 && b->metrics)
		rc = copy_in(b, "metrics.tsdb", true);
	if (rc == 0) {
		char *releases = xasprintf("%s/releases", b->data_dir);
		struct stat st;
		struct archive_root roots[2] = {{b->stage, NULL, NULL}, {releases, "releases", NULL}};
		size_t n = stat(releases, &st) == 0 ? 2 : 1;
		char *err = NULL;
		if (archive_pack_roots(roots, n, b->out, &err) < 0) {
			b->err = err;
			unlink(b->out);
		}
		free(releases);
	}
	paths_remove_tree(b->stage);
}

/* ---- streaming it ---- */

static void pump(struct backup *b);

static void retry_tick(uv_timer_t *t)
{
	pump(t->data);
}

static void client_gone(void *ctx)
{
	struct backup *b = ctx;
	uv_timer_stop(b->retry);
	backup_done(b);
}

static void pump(struct backup *b)
{
	if (b->gone)
		return;
	for (;;) {
		ssize_t n = read(b->fd, b->buf, BACKUP_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			/* The client sees the answer end without its last chunk. */
			log_error("backup: cannot read '%s': %s", b->out, strerror(errno));
			api_stream_abort(b->st);
			backup_done(b);
			return;
		}
		if (n == 0) {
			api_stream_end(b->st);
			backup_done(b);
			return;
		}
		int rc = api_stream_write(b->st, b->buf, (size_t)n);
		if (rc == -ENOBUFS) {
			lseek(b->fd, -n, SEEK_CUR);
			uv_timer_start(b->retry, retry_tick, BACKUP_RETRY_MS, 0);
			return;
		}
		if (rc < 0)
			return; /* gone: client_gone follows */
	}
}

static void built(uv_work_t *w, int status)
{
	struct backup *b = w->data;
	if (status < 0 && !b->err)
		b->err = xstrdup("cancelled");
	if (!b->err && (b->fd = open(b->out, O_RDONLY | O_CLOEXEC)) < 0)
		b->err = xasprintf("cannot read '%s': %s", b->out, strerror(errno));
	if (b->err) {
		log_error("backup: %s", b->err);
		struct json *e = json_object();
		struct json *o = json_set(e, "error", json_object());
		json_set_str(o, "code", "internal");
		json_set_str(o, "message", b->err);
		api_pending_reply(b->pending, 500, e);
		backup_done(b);
		return;
	}
	b->st = api_pending_stream(b->pending, "application/gzip", client_gone, b);
	if (!b->st) {
		backup_done(b);
		return;
	}
	log_info("backup: %s ready, sending it", b->out);
	pump(b);
}

void h_backup(struct api_req *req, struct api_resp *resp)
{
	if (!api_body_object(req, resp, true))
		return;
	bool logs = false, metrics = false;
	for (struct json *m = json_first(req->body); m; m = json_next(m)) {
		const char *k = json_key(m);
		if (!str_eq(k, "logs") && !str_eq(k, "metrics")) {
			api_error(resp, 400, "bad_request", "unknown field '%s' (logs, metrics)", k);
			return;
		}
		if (!json_is_bool(m)) {
			api_error(resp, 400, "bad_request", "'%s' must be true or false", k);
			return;
		}
		if (str_eq(k, "logs"))
			logs = json_true(m);
		else
			metrics = json_true(m);
	}
	if (running) {
		api_error(resp, 409, "conflict", "a backup is being made already; try again when it is done");
		return;
	}
	struct backup *b = xcalloc(1, sizeof(*b));
	b->logs = logs;
	b->metrics = metrics;
	b->fd = -1;
	b->data_dir = xstrdup(req->api->data_dir);
	b->created_ms = time_wall_ms();
	b->buf = xmalloc(BACKUP_CHUNK);
	b->retry = xcalloc(1, sizeof(*b->retry));
	uv_timer_init(req->api->loop, b->retry);
	b->retry->data = b;
	b->work.data = b;
	resp->audit_detail = xasprintf("logs=%s metrics=%s", logs ? "yes" : "no", metrics ? "yes" : "no");
	b->pending = api_defer(req, resp);
	running = true;
	uv_queue_work(req->api->loop, &b->work, build, built);
}
