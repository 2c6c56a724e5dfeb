/* logs.h: durable, searchable, bounded storage of every app's log lines,
 * with live tails and drains.
 *
 * Every captured line (instances' stdout and stderr, router access lines,
 * build and release output) comes in through logs_ingest() on the control
 * loop. A token bucket per source (instance, or app for app-level lines)
 * drops what exceeds the rate and later writes a marker line
 * "… 12,345 lines dropped …". Accepted lines go in batches to a writer
 * thread, which recognises JSON and logfmt (level, message, fields), and
 * keeps each app's lines in chunks: column-wise, gzip-compressed blocks
 * with a bloom filter of their words and fields, in DATA/logs.db. The open
 * chunk of an app is written as a small chunk at least every flush interval
 * (250 ms), so that at most that much is lost when the daemon is killed;
 * full chunks replace the small ones. Retention removes whole chunks: by
 * age, by size per app, by total size, and when the disk runs short.
 *
 * Queries (logs_query_start) run on the libuv thread pool: chunks are
 * skipped by attributes, time and bloom filter, the rest decoded and
 * matched line by line. Tails and drains see lines once they are committed,
 * so anything shown survives a crash of the daemon. See doc/logs.md. */
#ifndef PAASOPS_LOGS_H
#define PAASOPS_LOGS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct json;
struct logs;
struct logs_node;

#define LOGS_MAX_DRAINS 16

struct logs_config {
	uv_loop_t *loop;       /* borrowed */
	const char *data_dir;  /* borrowed; the database is DATA/logs.db */
	int64_t retention_ms;  /* oldest line kept (default 7 d) */
	int64_t max_bytes;     /* all apps (default 1 GiB) */
	int64_t app_max_bytes; /* each app (default 256 MiB) */
	int min_free_pct;      /* remove old chunks while the disk has less free (default 5) */
	double rate, burst;    /* lines/s per source, and burst (10,000 and 20,000) */
	int64_t flush_ms;      /* longest a line waits to be written (250 ms) */
	int64_t index_memory;  /* bloom filters kept in memory (128 MiB) */
	int64_t chunk_bytes;   /* text per sealed chunk (256 KiB) */
	const char *drains[LOGS_MAX_DRAINS]; /* global drain URLs, borrowed */
	size_t n_drains;
};

/* Fills the documented defaults. */
void logs_config_defaults(struct logs_config *cfg);
/* Applies one `paasops serve` flag: log-retention (duration), log-max-size,
 * log-app-max-size (sizes), log-min-free (percent), log-rate, log-burst
 * (lines), log-drain (URL, repeatable). value is borrowed. 0, or -EINVAL
 * with *err set (caller frees). */
int logs_config_parse(struct logs_config *cfg, const char *flag, const char *value, char **err);

/* The free-space floor in percent (--log-min-free): below it the store
 * deletes its oldest lines. */
int logs_min_free_pct(const struct logs *l);
/* Opens DATA/logs.db and starts the writer. NULL + *err (caller frees). */
struct logs *logs_new(const struct logs_config *cfg, char **err);
/* Writes what is pending and stops the writer and the drains; queries in
 * flight still answer. Ingest afterwards is ignored. */
void logs_stop(struct logs *l);
/* Frees everything; the loop must have run after logs_stop(). NULL: nothing. */
void logs_free(struct logs *l);

/* One captured line (the supervisor's log_line hook). text is any bytes
 * (borrowed). process and instance may be NULL, release 0. */
void logs_ingest(struct logs *l, const char *app, const char *process, const char *instance,
		 int release, int stream, const char *text, size_t len);

/* Whether the supervisor should pause reading an instance's output: the
 * writer is behind (16 MiB waiting) and still making progress, or the
 * instance ran out of its rate within the last 100 ms. Pausing makes a
 * flooding app wait on its pipe (at most 100 ms at a time) instead of
 * costing the daemon CPU for lines it drops. False once the writer has
 * made no progress for a second, so that no app waits on a stuck disk. */
bool logs_busy(struct logs *l, const char *app, const char *instance);

/* ---- filters, shared by queries, tails and drains ---- */

struct logs_filter {
	char **apps; /* NULL: every app */
	size_t n_apps;
	char *process, *instance;
	int release;     /* 0: any */
	unsigned streams; /* bit per stream; 0: any */
	int min_level;   /* 0: any */
	int64_t since_ns, until_ns; /* 0: open */
	uint64_t after_seq, before_seq; /* cursor bounds; 0: open */
	struct logs_node *q;
};

void logs_filter_init(struct logs_filter *f);
void logs_filter_release(struct logs_filter *f);
/* Sets one query parameter: app (comma-separated list), process, instance,
 * release, stream (comma-separated), level (minimum), since, until (RFC
 * 3339, or a duration meaning that long ago), q. value borrowed. 0, or
 * -EINVAL with *err (caller frees). now_ns: for relative times. */
int logs_filter_set(struct logs_filter *f, const char *name, const char *value, int64_t now_ns,
		    char **err);
/* Restricts to apps (the token's scope): intersects with f's list. */
void logs_filter_scope(struct logs_filter *f, char *const *apps, size_t n);

/* ---- queries ---- */

struct logs_query {
	struct logs_filter filter; /* taken over */
	int limit;                 /* 1..10000 */
	bool ascending;            /* oldest first; default newest first */
};

/* result: {"lines":[...], "cursor": "SEQ" or null, "chunks_scanned": N, ...}
 * taken over by the callback; NULL with err set on failure. Called on the
 * loop. */
typedef void (*logs_query_cb)(void *ctx, struct json *result, const char *err);
/* Runs q (taken over) on the thread pool. */
void logs_query_start(struct logs *l, struct logs_query *q, logs_query_cb cb, void *ctx);
/* Parses a cursor given back by a query. -EINVAL when malformed. */
int logs_cursor_parse(const char *s, uint64_t *seq);

/* ---- live tails ---- */

struct logs_tail;
/* One line for the subscriber (JSON text without newline, borrowed); return
 * non-zero when the subscriber cannot take more for now (the tail then
 * counts the line as skipped and later says so in a marker object). */
typedef int (*logs_tail_line_cb)(void *ctx, const char *json, size_t len);
/* Starts a tail of f (taken over): the newest `backlog` matching lines
 * (oldest first), then every new matching line. */
struct logs_tail *logs_tail_start(struct logs *l, struct logs_filter *f, int backlog,
				  logs_tail_line_cb cb, void *ctx);
/* Stops it; no callback afterwards. */
void logs_tail_stop(struct logs_tail *t);

/* ---- drains ---- */

/* Per-app drains (persisted in logs.db). 0, or -EINVAL with *err for a
 * bad URL, -EEXIST when a drain of app (or of every app) already goes to
 * url. Listings show urls with their credentials masked. */
int logs_drain_add(struct logs *l, const char *app, const char *url, struct json **out,
		   char **err);
int logs_drain_remove(struct logs *l, const char *app, int64_t id);
/* {"drains":[...]} for app (NULL: every drain, global ones included). */
struct json *logs_drains_json(struct logs *l, const char *app);

/* Exposes the counters as metrics in reg (borrowed; it must outlive l):
 * paasops_log_lines_total, paasops_log_lines_dropped_total{app,instance,
 * reason}, paasops_log_stored_bytes, paasops_log_stored_lines,
 * paasops_log_disk_bytes, paasops_log_drain_lines_total{drain,result},
 * updated every second on the loop. */
struct metrics_registry;
void logs_attach_metrics(struct logs *l, struct metrics_registry *reg);

/* Counters for `GET /v1/logs/stats` and the metrics: ingested, dropped
 * (by reason), stored bytes and chunks, drains. Caller frees. */
struct json *logs_stats_json(struct logs *l);

/* Flushes what is pending and waits for it (tests, benchmarks): lines
 * ingested before the call are committed when it returns; with retention,
 * retention has run too. Blocks. */
void logs_sync(struct logs *l, bool retention);

#endif
