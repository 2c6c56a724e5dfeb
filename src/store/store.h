/* store.h: the daemon's persisted truth in SQLite (WAL). The only module that
 * includes sqlite3.h. Holds desired state (apps, their specs and scale), the
 * processes the daemon started (for cleanup after a crash), events,
 * tokens and the audit log. Schema changes go through numbered migrations in store.c.
 *
 * All functions run on the control loop thread, except on a store opened
 * with store_open_reader, which belongs to the one thread that uses it.
 * Strings passed in are borrowed; strings handed to callbacks are valid
 * only during the call. */
#ifndef PAASOPS_STORE_H
#define PAASOPS_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include "compat/crypto.h"
#include <stdint.h>

struct store;

/* Opens (creating and migrating) the database at path. NULL + *err on error. */
struct store *store_open(const char *path, char **err);
/* Writes a consistent copy of the SQLite database at db_path to out_path
 * (which must not exist) through a connection of its own, so that it may
 * run on any thread while the daemon keeps writing. 0, or -EIO with *err
 * (caller frees). */
int store_snapshot(const char *db_path, const char *out_path, char **err);
/* The data dir moved from `from` to `to` (a restored backup): apps and
 * releases whose directory is under from/ now name the same place under
 * to/. 0 or -EIO with *err. */
int store_relocate(struct store *st, const char *from, const char *to, char **err);
/* A second, read-only connection to like's database, for walking large
 * tables on another thread while like keeps writing (WAL lets one reader
 * run beside the writer). Only like's path and key are read, both fixed at
 * store_open, so this may be called on any thread; the result is used
 * only by the thread that opened it. NULL + *err on error; caller frees
 * with store_close. */
struct store *store_open_reader(const struct store *like, char **err);
void store_close(struct store *st);
/* The schema version the database had when store_open found it (0: a new
 * database); migrations ran from there. */
#define STORE_SCHEMA_AUDIT_KEYS 6 /* the first version with the audit_keys table */
int store_opened_version(const struct store *st);
/* A key for one purpose, derived (HKDF-SHA256, info = purpose) from the
 * data dir's secret key, which itself never leaves the store. */
void store_key_derive(const struct store *st, const char *purpose, unsigned char out[CRYPTO_KEY_BYTES]);
int store_begin(struct store *st);
/* A read transaction: every query until store_commit sees the same
 * snapshot of the database. */
int store_begin_read(struct store *st);
int store_commit(struct store *st);
void store_rollback(struct store *st);
/* Message of the last failed call (borrowed). */
const char *store_errmsg(struct store *st);

/* ---- apps ---- */
struct store_app {
	const char *name;
	const char *spec_yaml;
	const char *filename;
	const char *dir;
	bool stopped;
	int64_t created_at, updated_at; /* wall ms */
	int release; /* the release instances should run */
	bool maintenance; /* read only: store_app_set_maintenance() sets it */
};
struct store_scale {
	const char *app, *process;
	int instances;      /* desired */
	int spec_instances; /* the spec's count when last applied */
	bool stopped;
};
int store_app_put(struct store *st, const struct store_app *app);
/* Removes the app with its scale and autoscale rows and its releases. */
int store_app_delete(struct store *st, const char *name);
int store_app_set_release(struct store *st, const char *name, int release);
int store_app_set_stopped(struct store *st, const char *name, bool stopped);
int store_app_set_maintenance(struct store *st, const char *name, bool on);
typedef void (*store_app_cb)(void *ctx, const struct store_app *app);
int store_apps_each(struct store *st, store_app_cb cb, void *ctx);

int store_scale_put(struct store *st, const struct store_scale *sc);
/* Removes scale rows of app whose process is not in keep (n names). */
int store_scale_prune(struct store *st, const char *app, const char *const *keep, int n);
typedef void (*store_scale_cb)(void *ctx, const struct store_scale *sc);
int store_scale_each(struct store *st, const char *app, store_scale_cb cb, void *ctx);

/* ---- autoscaler state that outlives a restart, per process type ---- */
struct store_autoscale {
	const char *app, *process;
	int64_t last_scaled_at; /* wall ms; 0: never */
	/* A lower count wanted since down_since (0: none), opened when the count
	 * was down_from; down_to is the highest count wanted since. */
	int64_t down_since;
	int down_from, down_to;
	/* In panic since panic_since (0: not panicking); calm since calm_since
	 * (0: the panic threshold is still reached). */
	int64_t panic_since, calm_since;
};
/* Inserts or replaces the row of (app, process). */
int store_autoscale_put(struct store *st, const struct store_autoscale *a);
/* Removes the row of (app, process), or every row of app when process is
 * NULL; removing what is not there is not an error. */
int store_autoscale_delete(struct store *st, const char *app, const char *process);
typedef void (*store_autoscale_cb)(void *ctx, const struct store_autoscale *a);
/* Every row, in app and process order. */
int store_autoscale_each(struct store *st, store_autoscale_cb cb, void *ctx);

/* ---- processes started by this data dir, for cleanup after a crash ---- */
struct store_proc {
	const char *instance;
	int pid;
	uint64_t start_ticks; /* /proc/PID/stat field 22 */
	const char *cgroup;   /* cgroup directories, ':'-joined, or NULL */
};
int store_proc_put(struct store *st, const struct store_proc *p);
int store_proc_delete(struct store *st, int pid);
typedef void (*store_proc_cb)(void *ctx, const struct store_proc *p);
int store_procs_each(struct store *st, store_proc_cb cb, void *ctx);
/* Forgets every process record (a restored backup's belong to the daemon
 * that made it, which may still be running them). */
int store_procs_clear(struct store *st);

/* ---- events ---- */
struct store_event {
	int64_t id;
	int64_t time; /* wall ms */
	const char *app, *process, *instance;
	const char *type;  /* "state", "apply", "scale", "restart", "stop", "start", "destroy", ... */
	const char *state; /* for "state" events */
	const char *reason;
	int pid;         /* 0: none */
	int exit_status; /* -1: none */
	int signal;      /* 0: none */
};
/* Appends; sets ev->id. Keeps at most the newest 100,000 events. */
int store_event_add(struct store *st, struct store_event *ev);
typedef void (*store_event_cb)(void *ctx, const struct store_event *ev);
/* Oldest first; app may be NULL; only ids > after; at most limit (the newest). */
int store_events_each(struct store *st, const char *app, int64_t after, int limit,
		      store_event_cb cb, void *ctx);
/* The reason of the newest event of this type, of any app, in *reason
 * (caller frees; NULL when there is none). */
int store_event_last_reason(struct store *st, const char *type, char **reason);

/* ---- releases ---- */
struct store_release {
	const char *app;
	int version;
	const char *status; /* pending building releasing deploying active superseded failed rolled-back */
	const char *spec_yaml, *filename, *dir;
	const char *config;  /* JSON object of config vars */
	const char *secrets; /* JSON array of names whose values are secret */
	const char *author, *message, *sha256, *reason;
	bool owns_dir; /* the artifact dir belongs to paasops (removed when pruned) */
	int64_t created_at, updated_at;
};
int store_release_put(struct store *st, const struct store_release *r);
int store_release_set_status(struct store *st, const char *app, int version, const char *status,
			     const char *reason, int64_t when);
typedef void (*store_release_cb)(void *ctx, const struct store_release *r);
/* -ENOENT when absent. */
int store_release_get(struct store *st, const char *app, int version, store_release_cb cb, void *ctx);
/* Newest first. */
int store_releases_each(struct store *st, const char *app, store_release_cb cb, void *ctx);
/* The next version number for app (1 for a new app), or a negative errno. */
int store_release_next_version(struct store *st, const char *app);
/* Marks deploys that were in progress when the daemon died as failed. */
int store_releases_interrupted(struct store *st, int64_t when);

/* ---- tokens ---- */
struct store_token {
	const char *id, *name, *hash, *role;
	const char *apps; /* JSON array text, "[]" = all apps */
	int64_t created_at, expires_at, last_used_at; /* 0: never */
	bool revoked;
};
int store_token_add(struct store *st, const struct store_token *t);
/* Calls cb with the token whose hash matches; -ENOENT when none. */
typedef void (*store_token_cb)(void *ctx, const struct store_token *t);
int store_token_by_hash(struct store *st, const char *hash, store_token_cb cb, void *ctx);
int store_tokens_each(struct store *st, store_token_cb cb, void *ctx);
/* -ENOENT when no such token. */
int store_token_revoke(struct store *st, const char *id);
int store_token_touch(struct store *st, const char *id, int64_t when);

/* ---- audit log ----
 * Append-only: triggers refuse UPDATE and DELETE of its rows, so the only
 * writer is store_audit_add. What the hash covers is auth/audit.c's concern. */
struct store_audit {
	int64_t seq;  /* 1, 2, 3, ... */
	int64_t time; /* wall ms */
	const char *actor, *role, *method, *path;
	const char *app; /* NULL: not about one app */
	int status;
	const char *remote;
	const char *detail; /* NULL: none */
	const char *prev, *hash; /* lowercase hex SHA-256 */
};
/* Inserts e as it is, seq included; -EEXIST when that seq is taken. */
int store_audit_add(struct store *st, const struct store_audit *e);
typedef void (*store_audit_cb)(void *ctx, const struct store_audit *e);
/* Oldest first; app may be NULL; only seqs > after; at most limit (the
 * newest), every row when limit < 0. */
int store_audit_each(struct store *st, const char *app, int64_t after, int64_t limit,
		     store_audit_cb cb, void *ctx);
/* Which entries are chained with a key: each row starts a run of entries
 * (from_seq on, up to the next row's from_seq) chained with the key named
 * key_id; a later row with the same from_seq replaces an earlier one.
 * Append-only like the log; what mac covers is auth/audit.c's concern. */
struct store_audit_key {
	int64_t from_seq;
	int64_t keyed_from; /* the first keyed entry of the whole log */
	const char *key_id, *mac;
};
int store_audit_key_add(struct store *st, const struct store_audit_key *k);
typedef void (*store_audit_key_cb)(void *ctx, const struct store_audit_key *k);
/* In the order they were added. */
int store_audit_keys_each(struct store *st, store_audit_key_cb cb, void *ctx);
/* The newest row's seq and hash (copied into hash, hash_size bytes at
 * most); -ENOENT when the log is empty. */
int store_audit_last(struct store *st, int64_t *seq, char *hash, size_t hash_size);

#endif
