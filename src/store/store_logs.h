/* store_logs.h: the logs' SQLite database, DATA/logs.db, apart from
 * state.db so that the writer thread's batches never hold the lock that the
 * control loop's state changes need, and so that its size can be bounded
 * and given back (auto_vacuum=INCREMENTAL) on its own.
 *
 * Tables: chunk (metadata of every chunk: app, seq and time bounds, line
 * count, sizes, level and stream masks), chunk_data (its bloom filter and
 * compressed body, apart so that listing chunks reads small rows only),
 * meta (counters that must survive restarts), drain (per-app drains).
 *
 * A struct store_logs is one connection: use it from one thread at a time.
 * The writer thread has one, each query borrows a reader. Strings and blobs
 * handed to callbacks are valid during the call only. */
#ifndef PAASOPS_STORE_LOGS_H
#define PAASOPS_STORE_LOGS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store_logs;

/* Opens (creating and migrating) path. reader: a query-only connection.
 * NULL + *err (caller frees) on error. */
struct store_logs *store_logs_open(const char *path, bool reader, char **err);
void store_logs_close(struct store_logs *s);
/* BEGIN IMMEDIATE on a writer, BEGIN (a read snapshot) on a reader. */
int store_logs_begin(struct store_logs *s);
int store_logs_commit(struct store_logs *s);
void store_logs_rollback(struct store_logs *s);

struct store_logs_chunk {
	int64_t id;
	const char *app;
	bool sealed;
	uint64_t seq_min, seq_max;
	int64_t t_min, t_max;
	uint32_t n_lines;
	uint64_t raw_bytes, bytes; /* bytes: what the chunk takes on disk */
	uint32_t levels, streams;
	const void *bloom; /* with STORE_LOGS_BLOOM */
	size_t bloom_len;
	const void *data; /* with STORE_LOGS_DATA */
	size_t data_len;
};

enum { STORE_LOGS_BLOOM = 1, STORE_LOGS_DATA = 2 };

/* Adds a chunk (c->id is ignored); *id gets its id. */
int store_logs_chunk_add(struct store_logs *s, const struct store_logs_chunk *c, int64_t *id);
int store_logs_chunk_delete(struct store_logs *s, int64_t id);

/* Return non-zero to stop the iteration. */
typedef int (*store_logs_chunk_cb)(void *ctx, const struct store_logs_chunk *c);
/* Chunks of app (NULL: all) by seq, newest first or oldest first; sealed:
 * -1 any, 0 open ones only, 1 sealed only. Metadata only. */
int store_logs_chunks_each(struct store_logs *s, const char *app, int sealed, bool newest_first,
			   store_logs_chunk_cb cb, void *ctx);
/* One chunk with what (STORE_LOGS_BLOOM | STORE_LOGS_DATA). -ENOENT when
 * it is gone. */
int store_logs_chunk_get(struct store_logs *s, int64_t id, unsigned what, store_logs_chunk_cb cb,
			 void *ctx);
/* Opens chunk id's stored body (chunk_data.data) for reading parts of it
 * with store_logs_data_read, without reading the rest: *size gets its
 * length. One body at a time per connection: opening another closes the
 * previous one. -ENOENT when the chunk is gone. Inside a read transaction
 * (store_logs_begin), close it with store_logs_data_close before it ends. */
int store_logs_data_open(struct store_logs *s, int64_t id, size_t *size);
/* Copies len bytes at off of the open body into buf. -EINVAL when out of
 * range, -EIO on a read error. */
int store_logs_data_read(struct store_logs *s, void *buf, size_t len, size_t off);
void store_logs_data_close(struct store_logs *s);
/* Chunks whose newest line is older than t_ns, oldest first (retention by
 * age), metadata only. */
int store_logs_chunks_older(struct store_logs *s, int64_t t_ns, store_logs_chunk_cb cb, void *ctx);
/* Oldest chunks first (by t_max) of app (NULL: all), metadata only. */
int store_logs_chunks_oldest(struct store_logs *s, const char *app, store_logs_chunk_cb cb,
			     void *ctx);

/* Per-app totals. */
typedef void (*store_logs_app_cb)(void *ctx, const char *app, int64_t bytes, int64_t chunks,
				  int64_t lines);
int store_logs_apps_each(struct store_logs *s, store_logs_app_cb cb, void *ctx);

int store_logs_meta_get(struct store_logs *s, const char *key, int64_t *v);
int store_logs_meta_set(struct store_logs *s, const char *key, int64_t v);

/* Gives free pages back to the file system. */
int store_logs_vacuum(struct store_logs *s);
/* Size of the database file and its WAL in bytes. */
int64_t store_logs_disk_bytes(struct store_logs *s);

/* ---- drains ---- */
int store_logs_drain_add(struct store_logs *s, const char *app, const char *url, int64_t now_ms,
			 int64_t *id);
/* -ENOENT when app has no such drain. */
int store_logs_drain_delete(struct store_logs *s, const char *app, int64_t id);
typedef void (*store_logs_drain_cb)(void *ctx, int64_t id, const char *app, const char *url);
int store_logs_drains_each(struct store_logs *s, store_logs_drain_cb cb, void *ctx);

#endif
