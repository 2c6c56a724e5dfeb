/* store_logs.c: the logs' database (see store_logs.h). Prepared statements
 * are cached per connection; every function returns 0 or a negative errno. */
#include "store/store_logs.h"
#include "core/log.h"
#include "core/util.h"
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
	S_ADD, S_ADD_DATA, S_DEL, S_DEL_DATA, S_EACH_ALL_D, S_EACH_ALL_A, S_EACH_APP_D, S_EACH_APP_A,
	S_GET_META, S_GET_BLOOM, S_GET_DATA, S_GET_BOTH, S_OLDER, S_OLDEST_ALL, S_OLDEST_APP, S_APPS,
	S_META_GET, S_META_SET, S_NSTMTS
};

static const char *const sqls[S_NSTMTS] = {
	[S_ADD] = "INSERT INTO chunk(app, sealed, seq_min, seq_max, t_min, t_max, n_lines, raw_bytes,"
		  " bytes, levels, streams) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
	[S_ADD_DATA] = "INSERT INTO chunk_data(id, bloom, data) VALUES(?,?,?)",
	[S_DEL] = "DELETE FROM chunk WHERE id = ?",
	[S_DEL_DATA] = "DELETE FROM chunk_data WHERE id = ?",
#define COLS "id, app, sealed, seq_min, seq_max, t_min, t_max, n_lines, raw_bytes, bytes, levels, streams"
	[S_EACH_ALL_D] = "SELECT " COLS " FROM chunk ORDER BY seq_max DESC",
	[S_EACH_ALL_A] = "SELECT " COLS " FROM chunk ORDER BY seq_min ASC",
	[S_EACH_APP_D] = "SELECT " COLS " FROM chunk WHERE app = ? ORDER BY seq_max DESC",
	[S_EACH_APP_A] = "SELECT " COLS " FROM chunk WHERE app = ? ORDER BY seq_min ASC",
	[S_GET_META] = "SELECT " COLS " FROM chunk WHERE id = ?",
	[S_GET_BLOOM] = "SELECT bloom FROM chunk_data WHERE id = ?",
	[S_GET_DATA] = "SELECT data FROM chunk_data WHERE id = ?",
	[S_GET_BOTH] = "SELECT bloom, data FROM chunk_data WHERE id = ?",
	[S_OLDER] = "SELECT " COLS " FROM chunk WHERE t_max < ? ORDER BY t_max ASC",
	[S_OLDEST_ALL] = "SELECT " COLS " FROM chunk WHERE sealed = 1 ORDER BY t_max ASC",
	[S_OLDEST_APP] = "SELECT " COLS " FROM chunk WHERE sealed = 1 AND app = ? ORDER BY t_max ASC",
	[S_APPS] = "SELECT app, SUM(bytes), COUNT(*), SUM(n_lines) FROM chunk GROUP BY app",
	[S_META_GET] = "SELECT value FROM meta WHERE key = ?",
	[S_META_SET] = "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
#undef COLS
};

struct store_logs {
	sqlite3 *db;
	char *path;
	bool reader;
	sqlite3_stmt *stmts[S_NSTMTS];
	sqlite3_blob *blob; /* the body open for store_logs_data_read */
};

static const char *const migrations[] = {
	"CREATE TABLE chunk(id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, sealed INTEGER NOT NULL,"
	" seq_min INTEGER NOT NULL, seq_max INTEGER NOT NULL, t_min INTEGER NOT NULL,"
	" t_max INTEGER NOT NULL, n_lines INTEGER NOT NULL, raw_bytes INTEGER NOT NULL,"
	" bytes INTEGER NOT NULL, levels INTEGER NOT NULL, streams INTEGER NOT NULL);"
	"CREATE INDEX chunk_app ON chunk(app, seq_max);"
	"CREATE INDEX chunk_seq ON chunk(seq_max);"
	"CREATE INDEX chunk_t ON chunk(t_max);"
	"CREATE TABLE chunk_data(id INTEGER PRIMARY KEY, bloom BLOB NOT NULL, data BLOB NOT NULL);"
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"CREATE TABLE drain(id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, url TEXT NOT NULL,"
	" created_at INTEGER NOT NULL);",
	/* 2: listing chunks (every query) reads the indexes alone. */
	"DROP INDEX chunk_app; DROP INDEX chunk_seq;"
	"CREATE INDEX chunk_app ON chunk(app, seq_max, id, sealed, seq_min, t_min, t_max, n_lines,"
	" raw_bytes, bytes, levels, streams);"
	"CREATE INDEX chunk_seq ON chunk(seq_max, id, app, sealed, seq_min, t_min, t_max, n_lines,"
	" raw_bytes, bytes, levels, streams);",
};

static int fail(struct store_logs *s, int rc)
{
	log_error("logs store: %s", sqlite3_errmsg(s->db));
	return rc == SQLITE_BUSY ? -EBUSY : rc == SQLITE_FULL ? -ENOSPC : -EIO;
}

static int exec(struct store_logs *s, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		log_error("logs store: %s", msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return rc == SQLITE_FULL ? -ENOSPC : -EIO;
	}
	return 0;
}

static sqlite3_stmt *stmt(struct store_logs *s, int k)
{
	if (!s->stmts[k] && sqlite3_prepare_v2(s->db, sqls[k], -1, &s->stmts[k], NULL) != SQLITE_OK) {
		log_error("logs store: %s", sqlite3_errmsg(s->db));
		abort(); /* a programming error: the SQL is ours */
	}
	sqlite3_reset(s->stmts[k]);
	sqlite3_clear_bindings(s->stmts[k]);
	return s->stmts[k];
}

static int migrate(struct store_logs *s, char **err)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		goto fail;
	int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	if (version > (int)ARRAY_SIZE(migrations)) {
		*err = xasprintf("logs database schema version %d is newer than this paasops (%zu)", version,
				 ARRAY_SIZE(migrations));
		return -EINVAL;
	}
	for (int v = version; v < (int)ARRAY_SIZE(migrations); v++) {
		char *sql = xasprintf("BEGIN; %s PRAGMA user_version = %d; COMMIT;", migrations[v], v + 1);
		int r = exec(s, sql);
		free(sql);
		if (r < 0) {
			exec(s, "ROLLBACK");
			goto fail;
		}
	}
	return 0;
fail:
	*err = xasprintf("cannot migrate logs database: %s", sqlite3_errmsg(s->db));
	return -EIO;
}

struct store_logs *store_logs_open(const char *path, bool reader, char **err)
{
	struct store_logs *s = xcalloc(1, sizeof(*s));
	s->path = xstrdup(path);
	s->reader = reader;
	/* A new database is the daemon's alone: SQLite gives its journal
	 * files the database file's mode. */
	int fd = reader ? -1 : open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		*err = xasprintf("cannot open logs database '%s': %s", path,
				 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		store_logs_close(s);
		return NULL;
	}
	sqlite3_busy_timeout(s->db, 10000);
	/* auto_vacuum only takes effect before the first table exists. */
	const char *setup = reader ? "PRAGMA query_only=1; PRAGMA cache_size=-16384;"
				   : "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL;"
				     " PRAGMA synchronous=NORMAL; PRAGMA cache_size=-8192;";
	if (exec(s, setup) < 0 || (!reader && migrate(s, err) < 0)) {
		if (!*err)
			*err = xasprintf("cannot configure logs database '%s': %s", path, sqlite3_errmsg(s->db));
		store_logs_close(s);
		return NULL;
	}
	return s;
}

void store_logs_close(struct store_logs *s)
{
	if (!s)
		return;
	store_logs_data_close(s);
	for (int k = 0; k < S_NSTMTS; k++)
		sqlite3_finalize(s->stmts[k]);
	sqlite3_close(s->db);
	free(s->path);
	free(s);
}

int store_logs_begin(struct store_logs *s)
{
	return exec(s, s->reader ? "BEGIN" : "BEGIN IMMEDIATE");
}

int store_logs_commit(struct store_logs *s)
{
	return exec(s, "COMMIT");
}

void store_logs_rollback(struct store_logs *s)
{
	if (!sqlite3_get_autocommit(s->db))
		exec(s, "ROLLBACK");
}

/* ---- chunks ---- */

int store_logs_chunk_add(struct store_logs *s, const struct store_logs_chunk *c, int64_t *id)
{
	sqlite3_stmt *st = stmt(s, S_ADD);
	sqlite3_bind_text(st, 1, c->app, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, c->sealed);
	sqlite3_bind_int64(st, 3, (int64_t)c->seq_min);
	sqlite3_bind_int64(st, 4, (int64_t)c->seq_max);
	sqlite3_bind_int64(st, 5, c->t_min);
	sqlite3_bind_int64(st, 6, c->t_max);
	sqlite3_bind_int64(st, 7, c->n_lines);
	sqlite3_bind_int64(st, 8, (int64_t)c->raw_bytes);
	sqlite3_bind_int64(st, 9, (int64_t)c->bytes);
	sqlite3_bind_int64(st, 10, c->levels);
	sqlite3_bind_int64(st, 11, c->streams);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return fail(s, rc);
	*id = sqlite3_last_insert_rowid(s->db);
	st = stmt(s, S_ADD_DATA);
	sqlite3_bind_int64(st, 1, *id);
	sqlite3_bind_blob(st, 2, c->bloom, (int)c->bloom_len, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, c->data, (int)c->data_len, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : fail(s, rc);
}

int store_logs_chunk_delete(struct store_logs *s, int64_t id)
{
	for (int k = S_DEL; k <= S_DEL_DATA; k++) {
		sqlite3_stmt *st = stmt(s, k);
		sqlite3_bind_int64(st, 1, id);
		int rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return fail(s, rc);
	}
	return 0;
}

static void read_meta(sqlite3_stmt *st, struct store_logs_chunk *c)
{
	memset(c, 0, sizeof(*c));
	c->id = sqlite3_column_int64(st, 0);
	c->app = (const char *)sqlite3_column_text(st, 1);
	c->sealed = sqlite3_column_int(st, 2) != 0;
	c->seq_min = (uint64_t)sqlite3_column_int64(st, 3);
	c->seq_max = (uint64_t)sqlite3_column_int64(st, 4);
	c->t_min = sqlite3_column_int64(st, 5);
	c->t_max = sqlite3_column_int64(st, 6);
	c->n_lines = (uint32_t)sqlite3_column_int64(st, 7);
	c->raw_bytes = (uint64_t)sqlite3_column_int64(st, 8);
	c->bytes = (uint64_t)sqlite3_column_int64(st, 9);
	c->levels = (uint32_t)sqlite3_column_int64(st, 10);
	c->streams = (uint32_t)sqlite3_column_int64(st, 11);
}

/* Steps st to the end calling cb with each row, filtered by sealed. */
static int run_each(struct store_logs *s, sqlite3_stmt *st, int sealed, store_logs_chunk_cb cb,
		    void *ctx)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_logs_chunk c;
		read_meta(st, &c);
		if (sealed >= 0 && (int)c.sealed != sealed)
			continue;
		if (cb(ctx, &c))
			break;
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(s, rc);
}

int store_logs_chunks_each(struct store_logs *s, const char *app, int sealed, bool newest_first,
			   store_logs_chunk_cb cb, void *ctx)
{
	sqlite3_stmt *st = stmt(s, app ? (newest_first ? S_EACH_APP_D : S_EACH_APP_A)
				       : (newest_first ? S_EACH_ALL_D : S_EACH_ALL_A));
	if (app)
		sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
	return run_each(s, st, sealed, cb, ctx);
}

int store_logs_chunk_get(struct store_logs *s, int64_t id, unsigned what, store_logs_chunk_cb cb,
			 void *ctx)
{
	sqlite3_stmt *st = stmt(s, S_GET_META);
	sqlite3_bind_int64(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return -ENOENT;
	}
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return fail(s, rc);
	}
	struct store_logs_chunk c;
	read_meta(st, &c);
	char *app = xstrdup(c.app);
	sqlite3_reset(st);
	c.app = app;
	if (what) {
		int k = what == STORE_LOGS_BLOOM ? S_GET_BLOOM : what == STORE_LOGS_DATA ? S_GET_DATA : S_GET_BOTH;
		st = stmt(s, k);
		sqlite3_bind_int64(st, 1, id);
		rc = sqlite3_step(st);
		if (rc != SQLITE_ROW) {
			sqlite3_reset(st);
			free(app);
			return rc == SQLITE_DONE ? -ENOENT : fail(s, rc);
		}
		int col = 0;
		if (what & STORE_LOGS_BLOOM) {
			c.bloom = sqlite3_column_blob(st, col);
			c.bloom_len = (size_t)sqlite3_column_bytes(st, col);
			col++;
		}
		if (what & STORE_LOGS_DATA) {
			c.data = sqlite3_column_blob(st, col);
			c.data_len = (size_t)sqlite3_column_bytes(st, col);
		}
	}
	cb(ctx, &c);
	if (what)
		sqlite3_reset(st);
	free(app);
	return 0;
}

int store_logs_data_open(struct store_logs *s, int64_t id, size_t *size)
{
	int rc;
	/* Moving an open handle to another row is cheaper than a new one. */
	if (s->blob) {
		rc = sqlite3_blob_reopen(s->blob, id);
		if (rc != SQLITE_OK)
			store_logs_data_close(s); /* a failed reopen leaves it aborted */
	} else {
		rc = sqlite3_blob_open(s->db, "main", "chunk_data", "data", id, 0, &s->blob);
		if (rc != SQLITE_OK) {
			sqlite3_blob_close(s->blob);
			s->blob = NULL;
		}
	}
	if (rc != SQLITE_OK)
		return rc == SQLITE_ERROR ? -ENOENT : fail(s, rc);
	*size = (size_t)sqlite3_blob_bytes(s->blob);
	return 0;
}

int store_logs_data_read(struct store_logs *s, void *buf, size_t len, size_t off)
{
	if (!s->blob || off > (size_t)sqlite3_blob_bytes(s->blob) ||
	    len > (size_t)sqlite3_blob_bytes(s->blob) - off)
		return -EINVAL;
	if (len == 0)
		return 0;
	int rc = sqlite3_blob_read(s->blob, buf, (int)len, (int)off);
	return rc == SQLITE_OK ? 0 : fail(s, rc);
}

void store_logs_data_close(struct store_logs *s)
{
	if (s->blob)
		sqlite3_blob_close(s->blob);
	s->blob = NULL;
}

int store_logs_chunks_older(struct store_logs *s, int64_t t_ns, store_logs_chunk_cb cb, void *ctx)
{
	sqlite3_stmt *st = stmt(s, S_OLDER);
	sqlite3_bind_int64(st, 1, t_ns);
	return run_each(s, st, -1, cb, ctx);
}

int store_logs_chunks_oldest(struct store_logs *s, const char *app, store_logs_chunk_cb cb,
			     void *ctx)
{
	sqlite3_stmt *st = stmt(s, app ? S_OLDEST_APP : S_OLDEST_ALL);
	if (app)
		sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
	return run_each(s, st, -1, cb, ctx);
}

int store_logs_apps_each(struct store_logs *s, store_logs_app_cb cb, void *ctx)
{
	sqlite3_stmt *st = stmt(s, S_APPS);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		cb(ctx, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
		   sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3));
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : fail(s, rc);
}

int store_logs_meta_get(struct store_logs *s, const char *key, int64_t *v)
{
	sqlite3_stmt *st = stmt(s, S_META_GET);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : fail(s, rc);
}

int store_logs_meta_set(struct store_logs *s, const char *key, int64_t v)
{
	sqlite3_stmt *st = stmt(s, S_META_SET);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : fail(s, rc);
}

int store_logs_vacuum(struct store_logs *s)
{
	/* incremental_vacuum returns a row per freed page: step it through. */
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "PRAGMA incremental_vacuum", -1, &st, NULL) != SQLITE_OK)
		return fail(s, SQLITE_ERROR);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail(s, rc);
	/* Keep the WAL from growing past what one checkpoint interval writes. */
	if (sqlite3_get_autocommit(s->db))
		sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	return 0;
}

int64_t store_logs_disk_bytes(struct store_logs *s)
{
	int64_t total = 0;
	struct stat stt;
	if (stat(s->path, &stt) == 0)
		total += stt.st_size;
	char *wal = xasprintf("%s-wal", s->path);
	if (stat(wal, &stt) == 0)
		total += stt.st_size;
	free(wal);
	return total;
}

/* ---- drains ---- */

int store_logs_drain_add(struct store_logs *s, const char *app, const char *url, int64_t now_ms,
			 int64_t *id)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "INSERT INTO drain(app, url, created_at) VALUES(?,?,?)", -1, &st,
			       NULL) != SQLITE_OK)
		return fail(s, SQLITE_ERROR);
	sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, url, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now_ms);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail(s, rc);
	*id = sqlite3_last_insert_rowid(s->db);
	return 0;
}

int store_logs_drain_delete(struct store_logs *s, const char *app, int64_t id)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "DELETE FROM drain WHERE id = ? AND app = ?", -1, &st, NULL) != SQLITE_OK)
		return fail(s, SQLITE_ERROR);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, app, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail(s, rc);
	return sqlite3_changes(s->db) ? 0 : -ENOENT;
}

int store_logs_drains_each(struct store_logs *s, store_logs_drain_cb cb, void *ctx)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "SELECT id, app, url FROM drain ORDER BY id", -1, &st, NULL) != SQLITE_OK)
		return fail(s, SQLITE_ERROR);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		cb(ctx, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
		   (const char *)sqlite3_column_text(st, 2));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : fail(s, rc);
}
