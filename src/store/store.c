/* store.c: SQLite schema, migrations and typed queries (see store.h). */
#include "store/store.h"
#include "compat/crypto.h"
#include "compat/json.h"
#include "core/log.h"
#include "core/util.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

struct store {
	sqlite3 *db;
	char *path;
	int64_t events_added;
	int opened_version; /* PRAGMA user_version before migrating */
	unsigned char key[CRYPTO_KEY_BYTES]; /* seals secret config values */
};

/* Each entry moves the schema from version i to i+1. Never edit a released
 * entry; append a new one. */
static const char *const migrations[] = {
	"CREATE TABLE apps(name TEXT PRIMARY KEY, spec_yaml TEXT NOT NULL, filename TEXT,"
	" dir TEXT NOT NULL, stopped INTEGER NOT NULL DEFAULT 0,"
	" created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
	"CREATE TABLE scale(app TEXT NOT NULL, process TEXT NOT NULL, instances INTEGER NOT NULL,"
	" spec_instances INTEGER NOT NULL, stopped INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY(app, process));"
	"CREATE TABLE procs(pid INTEGER PRIMARY KEY, instance TEXT NOT NULL,"
	" start_ticks INTEGER NOT NULL, cgroup TEXT);"
	"CREATE TABLE events(id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL,"
	" app TEXT, process TEXT, instance TEXT, type TEXT NOT NULL, state TEXT, reason TEXT,"
	" pid INTEGER, exit_status INTEGER, signal INTEGER);"
	"CREATE INDEX events_app ON events(app, id);"
	"CREATE TABLE tokens(id TEXT PRIMARY KEY, name TEXT, hash TEXT NOT NULL UNIQUE,"
	" role TEXT NOT NULL, apps TEXT NOT NULL, created_at INTEGER NOT NULL,"
	" expires_at INTEGER NOT NULL DEFAULT 0, revoked INTEGER NOT NULL DEFAULT 0,"
	" last_used_at INTEGER NOT NULL DEFAULT 0);",
	/* 2: releases; every app gets its spec as release v1. */
	"CREATE TABLE releases(app TEXT NOT NULL, version INTEGER NOT NULL, status TEXT NOT NULL,"
	" spec_yaml TEXT NOT NULL, filename TEXT, dir TEXT NOT NULL, config TEXT NOT NULL DEFAULT '{}',"
	" secrets TEXT NOT NULL DEFAULT '[]', author TEXT, message TEXT, sha256 TEXT,"
	" owns_dir INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL, reason TEXT, PRIMARY KEY(app, version));"
	"ALTER TABLE apps ADD COLUMN release INTEGER NOT NULL DEFAULT 0;"
	"INSERT INTO releases(app, version, status, spec_yaml, filename, dir, created_at, updated_at)"
	" SELECT name, 1, 'active', spec_yaml, filename, dir, created_at, updated_at FROM apps;"
	"UPDATE apps SET release = 1;",
	/* 3: the audit log. seq is given by the writer, which hashes it; the
	 * triggers keep rows from being changed or removed by paasops itself. */
	"CREATE TABLE audit(seq INTEGER PRIMARY KEY, time INTEGER NOT NULL, actor TEXT NOT NULL,"
	" role TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, app TEXT,"
	" status INTEGER NOT NULL, remote TEXT NOT NULL, detail TEXT, prev TEXT NOT NULL,"
	" hash TEXT NOT NULL);"
	"CREATE INDEX audit_app ON audit(app, seq);"
	"CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
	" BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
	"CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
	" BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
	/* 4: maintenance mode: the router answers 503 for the app. */
	"ALTER TABLE apps ADD COLUMN maintenance INTEGER NOT NULL DEFAULT 0;",
	/* 5: what the autoscaler must not forget across a restart. Times are
	 * wall ms, 0 for none. */
	"CREATE TABLE autoscale(app TEXT NOT NULL, process TEXT NOT NULL,"
	" last_scaled_at INTEGER NOT NULL DEFAULT 0, down_since INTEGER NOT NULL DEFAULT 0,"
	" down_from INTEGER NOT NULL DEFAULT 0, down_to INTEGER NOT NULL DEFAULT 0,"
	" panic_since INTEGER NOT NULL DEFAULT 0, calm_since INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY(app, process));",
	/* 6: which audit entries are chained with a key, and with which. Rows
	 * are written by auth/audit.c, which also MACs them; append-only like
	 * the log itself. */
	"CREATE TABLE audit_keys(id INTEGER PRIMARY KEY, from_seq INTEGER NOT NULL,"
	" keyed_from INTEGER NOT NULL, key_id TEXT NOT NULL, mac TEXT NOT NULL);"
	"CREATE TRIGGER audit_keys_no_update BEFORE UPDATE ON audit_keys"
	" BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
	"CREATE TRIGGER audit_keys_no_delete BEFORE DELETE ON audit_keys"
	" BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
};

#define EVENTS_KEPT 100000

static int fail(struct store *st, int rc)
{
	log_error("store: %s", sqlite3_errmsg(st->db));
	return rc == SQLITE_BUSY ? -EBUSY : rc == SQLITE_CONSTRAINT ? -EEXIST : -EIO;
}

static int exec(struct store *st, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		log_error("store: %s", msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

static int migrate(struct store *st, char **err)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		goto fail;
	int version = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
	sqlite3_finalize(s);
	st->opened_version = version;
	if (version > (int)ARRAY_SIZE(migrations)) {
		*err = xasprintf("database schema version %d is newer than this paasops (%zu)",
				 version, ARRAY_SIZE(migrations));
		return -EINVAL;
	}
	for (int v = version; v < (int)ARRAY_SIZE(migrations); v++) {
		char *sql = xasprintf("BEGIN; %s PRAGMA user_version = %d; COMMIT;", migrations[v], v + 1);
		int r = exec(st, sql);
		free(sql);
		if (r < 0) {
			exec(st, "ROLLBACK");
			goto fail;
		}
	}
	return 0;
fail:
	*err = xasprintf("cannot migrate database: %s", sqlite3_errmsg(st->db));
	return -EIO;
}

/* The key that seals secrets lives beside the database, readable by the
 * daemon's user only; it is made on first use. */
static int load_key(struct store *st, const char *db_path, char **err)
{
	char *copy = xstrdup(db_path);
	char *path = xasprintf("%s/secret.key", dirname(copy));
	free(copy);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		unsigned char k[CRYPTO_KEY_BYTES];
		if (crypto_random(k, sizeof(k)) < 0) {
			*err = xstrdup("no randomness for the secrets key");
			free(path);
			return -EIO;
		}
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0) {
			ssize_t w = write(fd, k, sizeof(k));
			fsync(fd);
			close(fd);
			if (w != (ssize_t)sizeof(k)) {
				unlink(path);
				*err = xasprintf("cannot write '%s'", path);
				free(path);
				return -EIO;
			}
		}
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0) {
		*err = xasprintf("cannot open '%s': %s", path, strerror(errno));
		free(path);
		return -EIO;
	}
	ssize_t n = read(fd, st->key, sizeof(st->key));
	close(fd);
	if (n != (ssize_t)sizeof(st->key)) {
		*err = xasprintf("'%s' is not a valid secrets key", path);
		free(path);
		return -EINVAL;
	}
	free(path);
	return 0;
}

struct store *store_open(const char *path, char **err)
{
	struct store *st = xcalloc(1, sizeof(*st));
	st->path = xstrdup(path);
	/* A new database is the daemon's alone: SQLite gives its journal
	 * files the database file's mode. */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	int rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK) {
		*err = xasprintf("cannot open database '%s': %s", path,
				 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		store_close(st);
		return NULL;
	}
	sqlite3_busy_timeout(st->db, 5000);
	if (exec(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;") < 0) {
		*err = xasprintf("cannot configure database '%s': %s", path, sqlite3_errmsg(st->db));
		store_close(st);
		return NULL;
	}
	if (migrate(st, err) < 0 || load_key(st, path, err) < 0) {
		store_close(st);
		return NULL;
	}
	return st;
}

struct store *store_open_reader(const struct store *like, char **err)
{
	struct store *st = xcalloc(1, sizeof(*st));
	st->path = xstrdup(like->path);
	st->opened_version = like->opened_version;
	memcpy(st->key, like->key, sizeof(st->key));
	int rc = sqlite3_open_v2(st->path, &st->db, SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		*err = xasprintf("cannot open database '%s' for reading: %s", st->path,
				 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		store_close(st);
		return NULL;
	}
	sqlite3_busy_timeout(st->db, 5000);
	return st;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	sqlite3_close_v2(st->db);
	explicit_bzero(st->key, sizeof(st->key));
	free(st->path);
	free(st);
}

int store_opened_version(const struct store *st) { return st->opened_version; }

void store_key_derive(const struct store *st, const char *purpose, unsigned char out[CRYPTO_KEY_BYTES])
{
	crypto_hkdf_sha256(st->key, sizeof(st->key), purpose, out, CRYPTO_KEY_BYTES);
}

int store_begin(struct store *st) { return exec(st, "BEGIN IMMEDIATE"); }
int store_begin_read(struct store *st) { return exec(st, "BEGIN DEFERRED"); }
int store_commit(struct store *st) { return exec(st, "COMMIT"); }
void store_rollback(struct store *st) { exec(st, "ROLLBACK"); }
const char *store_errmsg(struct store *st) { return sqlite3_errmsg(st->db); }

/* ---- statement helpers ---- */

/* Prepares sql and binds args described by fmt: 's' text (NULL → null),
 * 'i' int, 'I' int64, 'b' bool. */
static sqlite3_stmt *prep(struct store *st, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
		log_error("store: prepare: %s", sqlite3_errmsg(st->db));
		return NULL;
	}
	va_list ap;
	va_start(ap, fmt);
	for (int i = 1; fmt && *fmt; fmt++, i++) {
		switch (*fmt) {
		case 's': {
			const char *v = va_arg(ap, const char *);
			if (v)
				sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
			else
				sqlite3_bind_null(s, i);
			break;
		}
		case 'i': sqlite3_bind_int(s, i, va_arg(ap, int)); break;
		case 'I': sqlite3_bind_int64(s, i, va_arg(ap, int64_t)); break;
		case 'b': sqlite3_bind_int(s, i, va_arg(ap, int) ? 1 : 0); break;
		default: abort();
		}
	}
	va_end(ap);
	return s;
}

/* Steps a statement that returns no rows and finalizes it. */
static int run(struct store *st, sqlite3_stmt *s)
{
	if (!s)
		return -EIO;
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return fail(st, rc);
	return 0;
}

static const char *col_text(sqlite3_stmt *s, int i)
{
	return (const char *)sqlite3_column_text(s, i);
}

/* ---- apps ---- */

int store_app_put(struct store *st, const struct store_app *a)
{
	return run(st, prep(st,
			    "INSERT INTO apps(name, spec_yaml, filename, dir, stopped, created_at, updated_at, release)"
			    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(name) DO UPDATE SET"
			    " spec_yaml = ?2, filename = ?3, dir = ?4, stopped = ?5, updated_at = ?7, release = ?8",
			    "ssssbIIi", a->name, a->spec_yaml, a->filename, a->dir, a->stopped,
			    a->created_at, a->updated_at, a->release));
}

int store_app_delete(struct store *st, const char *name)
{
	int r = run(st, prep(st, "DELETE FROM scale WHERE app = ?", "s", name));
	if (r == 0)
		r = store_autoscale_delete(st, name, NULL);
	if (r == 0)
		r = run(st, prep(st, "DELETE FROM releases WHERE app = ?", "s", name));
	if (r == 0)
		r = run(st, prep(st, "DELETE FROM apps WHERE name = ?", "s", name));
	return r;
}

int store_app_set_release(struct store *st, const char *name, int release)
{
	return run(st, prep(st, "UPDATE apps SET release = ?2 WHERE name = ?1", "si", name, release));
}

int store_app_set_stopped(struct store *st, const char *name, bool stopped)
{
	return run(st, prep(st, "UPDATE apps SET stopped = ?2 WHERE name = ?1", "sb", name, stopped));
}

int store_app_set_maintenance(struct store *st, const char *name, bool on)
{
	return run(st, prep(st, "UPDATE apps SET maintenance = ?2 WHERE name = ?1", "sb", name, on));
}

int store_apps_each(struct store *st, store_app_cb cb, void *ctx)
{
	sqlite3_stmt *s = prep(st,
			       "SELECT name, spec_yaml, filename, dir, stopped, created_at, updated_at, release,"
			       " maintenance FROM apps ORDER BY name",
			       NULL);
	if (!s)
		return -EIO;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_app a = {
			.name = col_text(s, 0),
			.spec_yaml = col_text(s, 1),
			.filename = col_text(s, 2),
			.dir = col_text(s, 3),
			.stopped = sqlite3_column_int(s, 4) != 0,
			.created_at = sqlite3_column_int64(s, 5),
			.updated_at = sqlite3_column_int64(s, 6),
			.release = sqlite3_column_int(s, 7),
			.maintenance = sqlite3_column_int(s, 8) != 0,
		};
		cb(ctx, &a);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : fail(st, rc);
}

int store_scale_put(struct store *st, const struct store_scale *sc)
{
	return run(st, prep(st,
			    "INSERT INTO scale(app, process, instances, spec_instances, stopped)"
			    " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(app, process) DO UPDATE SET"
			    " instances = ?3, spec_instances = ?4, stopped = ?5",
			    "ssiib", sc->app, sc->process, sc->instances, sc->spec_instances, sc->stopped));
}

int store_scale_prune(struct store *st, const char *app, const char *const *keep, int n)
{
	sqlite3_stmt *s = prep(st, "SELECT process FROM scale WHERE app = ?", "s", app);
	if (!s)
		return -EIO;
	char **gone = NULL;
	size_t n_gone = 0, alloc = 0;
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *p = col_text(s, 0);
		bool kept = false;
		for (int i = 0; i < n; i++)
			kept = kept || strcmp(keep[i], p) == 0;
		if (!kept) {
			gone = xgrow(gone, sizeof(*gone), n_gone + 1, &alloc);
			gone[n_gone++] = xstrdup(p);
		}
	}
	sqlite3_finalize(s);
	int r = 0;
	for (size_t i = 0; i < n_gone; i++) {
		if (r == 0)
			r = run(st, prep(st, "DELETE FROM scale WHERE app = ? AND process = ?", "ss", app,
					 gone[i]));
		free(gone[i]);
	}
	free(gone);
	return r;
}

/* ---- autoscale ---- */

int store_autoscale_put(struct store *st, const struct store_autoscale *a)
{
	return run(st, prep(st,
			    "INSERT INTO autoscale(app, process, last_scaled_at, down_since, down_from,"
			    " down_to, panic_since, calm_since) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
			    " ON CONFLICT(app, process) DO UPDATE SET last_scaled_at = ?3,"
			    " down_since = ?4, down_from = ?5, down_to = ?6, panic_since = ?7,"
			    " calm_since = ?8",
			    "ssIIiiII", a->app, a->process, a->last_scaled_at, a->down_since,
			    a->down_from, a->down_to, a->panic_since, a->calm_since));
}

int store_autoscale_delete(struct store *st, const char *app, const char *process)
{
	if (!process)
		return run(st, prep(st, "DELETE FROM autoscale WHERE app = ?", "s", app));
	return run(st, prep(st, "DELETE FROM autoscale WHERE app = ? AND process = ?", "ss", app,
			    process));
}

int store_autoscale_each(struct store *st, store_autoscale_cb cb, void *ctx)
{
	sqlite3_stmt *s = prep(st,
			       "SELECT app, process, last_scaled_at, down_since, down_from, down_to,"
			       " panic_since, calm_since FROM autoscale ORDER BY app, process",
			       NULL);
	if (!s)
		return -EIO;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_autoscale a = {
			.app = col_text(s, 0),
			.process = col_text(s, 1),
			.last_scaled_at = sqlite3_column_int64(s, 2),
			.down_since = sqlite3_column_int64(s, 3),
			.down_from = sqlite3_column_int(s, 4),
			.down_to = sqlite3_column_int(s, 5),
			.panic_since = sqlite3_column_int64(s, 6),
			.calm_since = sqlite3_column_int64(s, 7),
		};
		cb(ctx, &a);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : fail(st, rc);
}

int store_scale_each(struct store *st, const char *app, store_scale_cb cb, void *ctx)
{
	sqlite3_stmt *s = prep(st,
			       "SELECT app, process, instances, spec_instances, stopped FROM scale"
			       " WHERE app = ?",
			       "s", app);
	if (!s)
		return -EIO;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_scale sc = {
			.app = col_text(s, 0),
			.process = col_text(s, 1),
			.instances = sqlite3_column_int(s, 2),
			.spec_instances = sqlite3_column_int(s, 3),
			.stopped = sqlite3_column_int(s, 4) != 0,
		};
		cb(ctx, &sc);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : fail(st, rc);
}

/* ---- procs ---- */

int store_proc_put(struct store *st, const struct store_proc *p)
{
	return run(st, prep(st,
			    "INSERT OR REPLACE INTO procs(instance, pid, start_ticks, cgroup)"
			    " VALUES(?, ?, ?, ?)",
			    "siIs", p->instance, p->pid, (int64_t)p->start_ticks, p->cgroup));
}

int store_proc_delete(struct store *st, int pid)
{
	return run(st, prep(st, "DELETE FROM procs WHERE pid = ?", "i", pid));
}

int store_procs_each(struct store *st, store_proc_cb cb, void *ctx)
{
	sqlite3_stmt *s = prep(st, "SELECT instance, pid, start_ticks, cgroup FROM procs", NULL);
	if (!s)
		return -EIO;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_proc p = {
			.instance = col_text(s, 0),
			.pid = sqlite3_column_int(s, 1),
			.start_ticks = (uint64_t)sqlite3_column_int64(s, 2),
			.cgroup = col_text(s, 3),
		};
		cb(ctx, &p);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : fail(st, rc);
}

/* ---- events ---- */

int store_event_add(struct store *st, struct store_event *ev)
{
	sqlite3_stmt *s = prep(st,
			       "INSERT INTO events(time, app, process, instance, type, state, reason,"
			       " pid, exit_status, signal) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			       "Issssssiii", ev->time, ev->app, ev->process, ev->instance, ev->type,
			       ev->state, ev->reason, ev->pid, ev->exit_status, ev->signal);
	int r = run(st, s);
	if (r < 0)
		return r;
	ev->id = sqlite3_last_insert_rowid(st->db);
	/* Trim in batches, not on every insert. */
	if (++st->events_added % 1000 == 0)
		run(st, prep(st, "DELETE FROM events WHERE id <= ?", "I", ev->id - EVENTS_KEPT));
	return 0;
}

int store_events_each(struct store *st, const char *app, int64_t after, int limit,
		      store_event_cb cb, void *ctx)
{
	sqlite3_stmt *s = prep(st,
			       "SELECT * FROM (SELECT id, time, app, process, instance, type, state,"
			       " reason, pid, exit_status, signal FROM events"
			       " WHERE (?1 IS NULL OR app = ?1) AND id > ?2 ORDER BY id DESC LIMIT ?3)"
			       " ORDER BY id",
			       "sIi", app, after, limit);
	if (!s)
		return -EIO;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_event ev = {
			.id = sqlite3_column_int64(s, 0),
			.time = sqlite3_column_int64(s, 1),
			.app = col_text(s, 2),
			.process = col_text(s, 3),
			.instance = col_text(s, 4),
			.type = col_text(s, 5),
			.state = col_text(s, 6),
			.reason = col_text(s, 7),
			.pid = sqlite3_column_int(s, 8),
			.exit_status = sqlite3_column_type(s, 9) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 9),
			.signal = sqlite3_column_int(s, 10),
		};
		cb(ctx, &ev);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : fail(st, rc);
}

int store_event_last_reason(struct store *st, const char *type, char **reason)
{
	*reason = NULL;
	sqlite3_stmt *s =
		prep(st, "SELECT reason FROM events WHERE type = ? ORDER BY id DESC LIMIT 1", "s", type);
	if (!s)
		return -EIO;
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && col_text(s, 0))
		*reason = xstrdup(col_text(s, 0));
	sqlite3_finalize(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(st, rc);
}

/* ---- tokens ---- */

int store_token_add(struct store *st, const struct store_token *t)
{
	return run(st, prep(st,
			    "INSERT INTO tokens(id, name, hash, role, apps, created_at, expires_at)"
			    " VALUES(?, ?, ?, ?, ?, ?, ?)",
			    "sssssII", t->id, t->name, t->hash, t->role, t->apps, t->created_at,
			    t->expires_at));
}

static int tokens_query(struct store *st, sqlite3_stmt *s, store_token_cb cb, void *ctx)
{
	if (!s)
		return -EIO;
	int rc, found = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_token t = {
			.id = col_text(s, 0),
			.name = col_text(s, 1),
			.hash = col_text(s, 2),
			.role = col_text(s, 3),
			.apps = col_text(s, 4),
			.created_at = sqlite3_column_int64(s, 5),
			.expires_at = sqlite3_column_int64(s, 6),
			.revoked = sqlite3_column_int(s, 7) != 0,
			.last_used_at = sqlite3_column_int64(s, 8),
		};
		found++;
		cb(ctx, &t);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return fail(st, rc);
	return found;
}

#define TOKEN_COLS "id, name, hash, role, apps, created_at, expires_at, revoked, last_used_at"

int store_token_by_hash(struct store *st, const char *hash, store_token_cb cb, void *ctx)
{
	int r = tokens_query(st, prep(st, "SELECT " TOKEN_COLS " FROM tokens WHERE hash = ?", "s", hash),
			     cb, ctx);
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int store_tokens_each(struct store *st, store_token_cb cb, void *ctx)
{
	int r = tokens_query(st, prep(st, "SELECT " TOKEN_COLS " FROM tokens ORDER BY created_at, id", NULL),
			     cb, ctx);
	return r < 0 ? r : 0;
}

int store_token_revoke(struct store *st, const char *id)
{
	int r = run(st, prep(st, "UPDATE tokens SET revoked = 1 WHERE id = ?", "s", id));
	if (r == 0 && sqlite3_changes(st->db) == 0)
		return -ENOENT;
	return r;
}

int store_token_touch(struct store *st, const char *id, int64_t when)
{
	return run(st, prep(st, "UPDATE tokens SET last_used_at = ? WHERE id = ?", "Is", when, id));
}

/* ---- releases ---- */

#define RELEASE_COLS "app, version, status, spec_yaml, filename, dir, config, secrets, author," \
		     " message, sha256, owns_dir, created_at, updated_at, reason"

/* Seals (or opens) the values of config whose names are in secrets. */
static char *transform_secrets(struct store *st, const char *config, const char *secrets, bool seal)
{
	struct json *cfg = json_parse(config ? config : "{}", strlen(config ? config : "{}"), NULL);
	struct json *sec = json_parse(secrets ? secrets : "[]", strlen(secrets ? secrets : "[]"), NULL);
	if (!cfg || !json_size(sec)) {
		json_free(cfg);
		json_free(sec);
		return xstrdup(config ? config : "{}");
	}
	struct json *out = json_object();
	for (struct json *e = json_first(cfg); e; e = json_next(e)) {
		bool secret = false;
		for (struct json *n = json_first(sec); n; n = json_next(n))
			secret = secret || str_eq(json_str(n), json_key(e));
		const char *v = json_str(e);
		if (!secret || !v) {
			json_set(out, json_key(e), json_dup(e));
			continue;
		}
		char *t = seal ? crypto_seal(st->key, v) : crypto_open(st->key, v);
		json_set_str(out, json_key(e), t ? t : "");
		free(t);
	}
	char *text = json_print(out, false);
	json_free(out);
	json_free(cfg);
	json_free(sec);
	return text;
}

int store_release_put(struct store *st, const struct store_release *r0)
{
	struct store_release copy = *r0;
	char *sealed = transform_secrets(st, r0->config, r0->secrets, true);
	copy.config = sealed;
	const struct store_release *r = &copy;
	int rc = run(st, prep(st,
			    "INSERT INTO releases(" RELEASE_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
			    " ?9, ?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT(app, version) DO UPDATE SET"
			    " status = ?3, spec_yaml = ?4, filename = ?5, dir = ?6, config = ?7, secrets = ?8,"
			    " author = ?9, message = ?10, sha256 = ?11, owns_dir = ?12, updated_at = ?14,"
			    " reason = ?15",
			    "sisssssssssbIIs", r->app, r->version, r->status, r->spec_yaml, r->filename,
			    r->dir, r->config ? r->config : "{}", r->secrets ? r->secrets : "[]", r->author,
			    r->message, r->sha256, r->owns_dir, r->created_at, r->updated_at, r->reason));
	free(sealed);
	return rc;
}

int store_release_set_status(struct store *st, const char *app, int version, const char *status,
			     const char *reason, int64_t when)
{
	return run(st, prep(st,
			    "UPDATE releases SET status = ?3, reason = COALESCE(?4, reason), updated_at = ?5"
			    " WHERE app = ?1 AND version = ?2",
			    "sissI", app, version, status, reason, when));
}

static int releases_query(struct store *st, sqlite3_stmt *s, store_release_cb cb, void *ctx)
{
	if (!s)
		return -EIO;
	int rc, found = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_release r = {
			.app = col_text(s, 0),
			.version = sqlite3_column_int(s, 1),
			.status = col_text(s, 2),
			.spec_yaml = col_text(s, 3),
			.filename = col_text(s, 4),
			.dir = col_text(s, 5),
			.config = col_text(s, 6),
			.secrets = col_text(s, 7),
			.author = col_text(s, 8),
			.message = col_text(s, 9),
			.sha256 = col_text(s, 10),
			.owns_dir = sqlite3_column_int(s, 11) != 0,
			.created_at = sqlite3_column_int64(s, 12),
			.updated_at = sqlite3_column_int64(s, 13),
			.reason = col_text(s, 14),
		};
		char *open_cfg = transform_secrets(st, r.config, r.secrets, false);
		r.config = open_cfg;
		found++;
		cb(ctx, &r);
		free(open_cfg);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? found : fail(st, rc);
}

int store_release_get(struct store *st, const char *app, int version, store_release_cb cb, void *ctx)
{
	int r = releases_query(st, prep(st, "SELECT " RELEASE_COLS " FROM releases WHERE app = ? AND version = ?",
					"si", app, version), cb, ctx);
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int store_releases_each(struct store *st, const char *app, store_release_cb cb, void *ctx)
{
	int r = releases_query(st, prep(st, "SELECT " RELEASE_COLS " FROM releases WHERE app = ?"
					" ORDER BY version DESC", "s", app), cb, ctx);
	return r < 0 ? r : 0;
}

int store_release_next_version(struct store *st, const char *app)
{
	sqlite3_stmt *s = prep(st, "SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app = ?", "s", app);
	if (!s)
		return -EIO;
	int v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -EIO;
	sqlite3_finalize(s);
	return v;
}

int store_releases_interrupted(struct store *st, int64_t when)
{
	return run(st, prep(st, "UPDATE releases SET status = 'failed', reason = 'interrupted: the daemon"
			    " stopped during the deploy', updated_at = ? WHERE status IN ('pending', 'building',"
			    " 'releasing', 'deploying')", "I", when));
}

/* ---- audit log ---- */

int store_audit_add(struct store *st, const struct store_audit *e)
{
	return run(st, prep(st,
			    "INSERT INTO audit(seq, time, actor, role, method, path, app, status, remote,"
			    " detail, prev, hash) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			    "IIsssssissss", e->seq, e->time, e->actor, e->role, e->method, e->path, e->app,
			    e->status, e->remote, e->detail, e->prev, e->hash));
}

int store_audit_each(struct store *st, const char *app, int64_t after, int64_t limit,
		     store_audit_cb cb, void *ctx)
{
	sqlite3_stmt *s = prep(st,
			       "SELECT * FROM (SELECT seq, time, actor, role, method, path, app, status,"
			       " remote, detail, prev, hash FROM audit"
			       " WHERE (?1 IS NULL OR app = ?1) AND seq > ?2 ORDER BY seq DESC LIMIT ?3)"
			       " ORDER BY seq",
			       "sII", app, after, limit < 0 ? (int64_t)-1 : limit);
	if (!s)
		return -EIO;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_audit e = {
			.seq = sqlite3_column_int64(s, 0),
			.time = sqlite3_column_int64(s, 1),
			.actor = col_text(s, 2),
			.role = col_text(s, 3),
			.method = col_text(s, 4),
			.path = col_text(s, 5),
			.app = col_text(s, 6),
			.status = sqlite3_column_int(s, 7),
			.remote = col_text(s, 8),
			.detail = col_text(s, 9),
			.prev = col_text(s, 10),
			.hash = col_text(s, 11),
		};
		cb(ctx, &e);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : fail(st, rc);
}

int store_audit_key_add(struct store *st, const struct store_audit_key *k)
{
	return run(st, prep(st, "INSERT INTO audit_keys(from_seq, keyed_from, key_id, mac) VALUES(?, ?, ?, ?)",
			    "IIss", k->from_seq, k->keyed_from, k->key_id, k->mac));
}

int store_audit_keys_each(struct store *st, store_audit_key_cb cb, void *ctx)
{
	sqlite3_stmt *s = prep(st, "SELECT from_seq, keyed_from, key_id, mac FROM audit_keys ORDER BY id",
			       NULL);
	if (!s)
		return -EIO;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_audit_key k = {
			.from_seq = sqlite3_column_int64(s, 0),
			.keyed_from = sqlite3_column_int64(s, 1),
			.key_id = col_text(s, 2),
			.mac = col_text(s, 3),
		};
		cb(ctx, &k);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : fail(st, rc);
}

int store_audit_last(struct store *st, int64_t *seq, char *hash, size_t hash_size)
{
	sqlite3_stmt *s = prep(st, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", NULL);
	if (!s)
		return -EIO;
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*seq = sqlite3_column_int64(s, 0);
		const char *h = col_text(s, 1);
		strlcpy_s(hash, h ? h : "", hash_size);
	}
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : fail(st, rc);
}

int store_snapshot(const char *db_path, const char *out_path, char **err)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL);
	sqlite3_stmt *s = NULL;
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, 10000);
		rc = sqlite3_prepare_v2(db, "VACUUM INTO ?", -1, &s, NULL);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 1, out_path, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
	if (rc != SQLITE_OK)
		*err = xasprintf("cannot copy '%s': %s", db_path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	sqlite3_finalize(s);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -EIO;
}

int store_relocate(struct store *st, const char *from, const char *to, char **err)
{
	/* dir = to || what follows from, for every dir under from/ (the
	 * prefix test by substr: LIKE would read '_' and '%' in a path). */
	static const char *const tables[] = {"apps", "releases"};
	int r = store_begin(st);
	for (size_t k = 0; r == 0 && k < ARRAY_SIZE(tables); k++) {
		char *sql = xasprintf("UPDATE %s SET dir = ?2 || substr(dir, length(?1) + 1)"
				      " WHERE substr(dir, 1, length(?1) + 1) = ?1 || '/'",
				      tables[k]);
		r = run(st, prep(st, sql, "ss", from, to));
		free(sql);
	}
	if (r == 0)
		r = store_commit(st);
	if (r < 0) {
		*err = xasprintf("cannot update release directories: %s", sqlite3_errmsg(st->db));
		store_rollback(st);
	}
	return r;
}

int store_procs_clear(struct store *st)
{
	return run(st, prep(st, "DELETE FROM procs", NULL));
}
