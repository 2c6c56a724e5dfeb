/* supervisor.h: keeps every app's instances running as its spec says.
 *
 * The supervisor owns the in-memory tree apps → process types → instance
 * slots ("shop.web.1"), spawns instances in their own process group (and
 * cgroup when limits are set), runs health checks, applies the restart
 * policy with backoff and crash-loop detection, captures output into a ring
 * per instance, and records every transition as an event in the store.
 *
 * Desired state is persisted by the caller-facing functions below before
 * they change anything in memory; on failure nothing changes. Errors are
 * negative errno values with a message in *err (caller frees):
 * -ENOENT unknown app/process/instance, -EINVAL bad argument, -EIO store. */
#ifndef PAASOPS_SUPERVISOR_H
#define PAASOPS_SUPERVISOR_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct store;
struct store_event;
struct spec;
struct json;
struct supervisor;

/* What the supervisor tells, and asks, the rest of the daemon (the router).
 * Every member may be NULL. */
struct supervisor_hooks {
	/* The set of ready instances or the apps' routes changed. */
	void (*changed)(void *ctx);
	/* Whether a stopping instance has no requests left in flight. */
	bool (*drained)(void *ctx, const char *instance);
	/* An active health check of the instance passed. */
	void (*check_passed)(void *ctx, const char *instance);
	/* Every captured log line: instances' stdout (stream 0) and stderr (1),
	 * and the enum supervisor_stream ones. process, instance and release
	 * may be NULL/0 for app-level lines. text is not NUL-terminated and is
	 * borrowed for the call. */
	void (*log_line)(void *ctx, int64_t time_ms, const char *app, const char *process,
			 const char *instance, int release, int stream, const char *text, size_t len);
	/* Every event once it is recorded (instance transitions, API changes);
	 * ev is borrowed for the call. */
	void (*event)(void *ctx, const struct store_event *ev);
	/* Whether log_line cannot take more lines of this instance for now (the
	 * store is behind, or the instance is over its rate). Reading its output
	 * then pauses, rechecked every SV_LOG_PAUSE_MS, so that the app's writes
	 * wait; the log store says no again after a bounded wait, so that no app
	 * blocks for long. */
	bool (*log_busy)(void *ctx, const char *app, const char *instance);
};

struct spec_process;
struct runas;

struct supervisor_config {
	const struct supervisor_hooks *hooks; /* borrowed, may be NULL */
	void *hooks_ctx;
	uv_loop_t *loop;        /* borrowed */
	struct store *store;    /* borrowed */
	const char *data_dir;   /* borrowed; names the cgroups */
	int port_min, port_max; /* instance ports, inclusive */
	/* Borrowed, outlives the supervisor; NULL: app code runs as the
	 * daemon's own user. */
	const struct runas *run_as;
};

struct supervisor *supervisor_new(const struct supervisor_config *cfg);
/* Frees everything; every instance must have exited (see supervisor_shutdown). */
void supervisor_free(struct supervisor *sv);

/* Stops processes recorded by an earlier run of this data dir that are still
 * alive (same pid and start time), and forgets the records. Blocks up to a
 * few seconds; call before the loop runs. */
void supervisor_cleanup_leftovers(struct supervisor *sv);
/* Loads desired state from the store and starts what should run. */
int supervisor_load(struct supervisor *sv, char **err);

/* A release to run. */
struct supervisor_release {
	int version;
	struct spec *spec; /* ownership taken */
	const char *yaml, *filename, *dir;
	const struct spec_env *config; /* copied */
	size_t n_config;
	char *const *scope; /* apps the caller may change; n_scope 0: every app */
	size_t n_scope;
	/* Back to a release that was live (a rollback): no canary stage. */
	bool rollback;
};

/* Called once when a rollout ends: ok, or why it failed. */
typedef void (*supervisor_rollout_cb)(void *ctx, const char *app, int version, bool ok,
				      const char *reason);

/* Makes rel the app's release, creating the app if needed, and rolls out
 * to it: process types whose definition did not change keep running;
 * changed ones are replaced per their deploy strategy (rolling, canary,
 * recreate); removed ones stop. Counts set by scale survive unless the
 * spec's count changed. done (may be NULL) is called when the rollout
 * ends; the release is persisted as the app's live release only on
 * success. When it fails and done does not begin another rollout, the app
 * goes back to its live release: the failed release's instances are
 * replaced by the live one's, as a rollout without a callback. -EEXIST when another app has one of its routes, -EBUSY when a
 * rollout is already running. Takes ownership of rel->spec in every case. */
int supervisor_rollout(struct supervisor *sv, const struct supervisor_release *rel,
		       supervisor_rollout_cb done, void *ctx, bool *created, char **err);
/* When another app already routes one of spec's host and path prefixes,
 * or when spec adds a route on a host another app routes and that app is
 * not among the n_scope apps the caller may change (n_scope 0: every app):
 * a message saying which (caller frees); else NULL. */
char *supervisor_route_conflict(const struct supervisor *sv, const struct spec *spec,
				char *const *scope, size_t n_scope);
bool supervisor_shutting_down(const struct supervisor *sv);
/* Fails the app's rollout (it calls done with ok=false). -ENOENT when none. */
int supervisor_rollout_abort(struct supervisor *sv, const char *app, const char *reason);
/* Promotes a canary rollout to a rolling one. -ENOENT for an unknown app,
 * -EBUSY when no canary waits for promotion (no rollout, a rollout of
 * another strategy, a restart, or a canary already promoted). */
int supervisor_rollout_promote(struct supervisor *sv, const char *app, char **err);
/* The app's live and target releases and its rollout, or NULL for an unknown app. */
struct json *supervisor_rollout_json(struct supervisor *sv, const char *app);
/* Instance ids of the app by release: ids of instances running version v
 * (new) and of the others (old), for comparing them. Arrays are JSON. */
int supervisor_release_instances(struct supervisor *sv, const char *app, int version,
				 struct json *news, struct json *olds);
/* Sets desired counts; all-or-nothing. */
int supervisor_scale(struct supervisor *sv, const char *app, const char *const *procs,
		     const int *counts, int n, char **err);
/* Restarts an app, one process type or one instance (others NULL); clears
 * crash loops. Appends restarted ids to the JSON array ids. -EBUSY when
 * what would restart is stopped (stopped process types of an app are left
 * alone). */
int supervisor_restart(struct supervisor *sv, const char *app, const char *proc,
		       const char *instance, struct json *ids, char **err);
/* Stops or starts an app or one of its process types, keeping counts. */
int supervisor_set_stopped(struct supervisor *sv, const char *app, const char *proc,
			   bool stopped, char **err);
/* Maintenance mode: the router answers the app's requests with 503 while
 * its instances keep running (one-off runs work as before). Persisted;
 * an event says who turned it which way. Setting it as it is is a no-op. */
int supervisor_set_maintenance(struct supervisor *sv, const char *app, bool on, char **err);
bool supervisor_app_maintenance(const struct supervisor *sv, const char *app);
/* Stops all instances and forgets the app. */
int supervisor_destroy(struct supervisor *sv, const char *app, char **err);

bool supervisor_has_app(const struct supervisor *sv, const char *app);
/* JSON views (caller frees). app_json returns NULL for an unknown app. */
struct json *supervisor_apps_json(struct supervisor *sv);
struct json *supervisor_app_json(struct supervisor *sv, const char *app, bool detail);
/* app NULL: every instance. NULL for an unknown app. */
struct json *supervisor_instances_json(struct supervisor *sv, const char *app);
/* Newest `lines` log lines with seq > after, oldest first, filtered by
 * process and/or instance (NULL = any). NULL for an unknown app. */
struct json *supervisor_logs_json(struct supervisor *sv, const char *app, const char *proc,
				  const char *instance, uint64_t after, int lines);

/* Calls cb once per process type of every app with its ready instances
 * (ids and ports, borrowed for the call). */
typedef void (*supervisor_pool_cb)(void *ctx, const char *app, const struct spec_process *sp,
				   const char *const *instances, const int *ports, size_t n);
void supervisor_each_pool(struct supervisor *sv, supervisor_pool_cb cb, void *ctx);
/* Streams of an app's log besides the instances' stdout and stderr. */
enum supervisor_stream {
	SUPERVISOR_STREAM_ROUTER = 2,
	SUPERVISOR_STREAM_BUILD = 3,
	SUPERVISOR_STREAM_RELEASE = 4,
	SUPERVISOR_STREAM_RUN = 5, /* one-off runs (paasops run) */
};
/* Adds a line (access log, build output) to an instance's log, or the
 * app's when instance is NULL or gone. */
void supervisor_log_line(struct supervisor *sv, const char *app, const char *instance,
			 enum supervisor_stream stream, const char *line);

/* Records an event that is not an instance transition (API changes). */
void supervisor_note(struct supervisor *sv, const char *app, const char *type,
		     const char *reason);

/* The line an instance of a process with this command runs under
 * `/bin/sh -c`: a simple command (no shell syntax, not a builtin) gets an
 * `exec ` in front so that it replaces the shell and signals and the exit
 * status are the app's own; anything else is kept as written. Caller frees. */
char *supervisor_command_line(const char *command);

typedef void (*supervisor_done_cb)(void *ctx);
/* Calls cb for every app with its target release's number and spec
 * (borrowed for the call). */
typedef void (*supervisor_spec_cb)(void *ctx, const char *app, int release,
				   const struct spec *spec);
void supervisor_each_spec(struct supervisor *sv, supervisor_spec_cb cb, void *ctx);
/* A number that changes whenever what supervisor_each_spec would report
 * may have changed (an app loaded, applied or destroyed), so that a
 * reader can skip walking every app while it stays the same. */
uint64_t supervisor_spec_generation(const struct supervisor *sv);

/* One process type's counts, without building its JSON. */
struct supervisor_proc_state {
	int instances; /* wanted */
	int ready;
	bool hold;     /* the app or the process type is stopped, or the app rolling out */
};
/* Fills out for app's process proc; -ENOENT when either is unknown. */
int supervisor_proc_state(const struct supervisor *sv, const char *app, const char *proc,
			  struct supervisor_proc_state *out);
/* The state of app's instance ("starting", "ready", ...; static), or NULL
 * when there is no such instance. */
const char *supervisor_instance_state(const struct supervisor *sv, const char *app,
				      const char *instance);

/* How instances' memory and CPU limits are enforced: "cgroup v2" or
 * "cgroup v1" (static), or NULL with *why (borrowed, valid while sv lives)
 * saying why they are not. Checks that the daemon's groups are still
 * writable, not only what was found at start. */
const char *supervisor_limits_how(const struct supervisor *sv, const char **why);

/* ---- starting app code ---- */

/* The user app code runs as (--run-as), or NULL when it runs as the
 * daemon's own user. Borrowed, valid while sv lives. */
const struct runas *supervisor_run_as(const struct supervisor *sv);
/* Makes o start its process as the run-as user, if any: its uid and group,
 * and no supplementary groups (libuv drops them whenever it changes ids).
 * Every process that runs app code goes through here: instances, health
 * check commands, one-off runs and build and release phases. */
void supervisor_spawn_as(const struct supervisor *sv, uv_process_options_t *o);
/* The value of the daemon's environment variable name that app code gets
 * (NULL: none): HOME, USER and LOGNAME are the run-as user's. Borrowed,
 * valid while sv lives and the environment is unchanged. */
const char *supervisor_spawn_env(const struct supervisor *sv, const char *name);
/* Calls cb for every instance stopped in a crash loop (state crashed);
 * strings are borrowed for the call. */
typedef void (*supervisor_crashed_cb)(void *ctx, const char *app, const char *instance,
				      const char *reason);
void supervisor_each_crashed(struct supervisor *sv, supervisor_crashed_cb cb, void *ctx);

/* Stops every instance (SIGTERM, SIGKILL after stop_timeout); calls done
 * once all have exited. Nothing restarts afterwards. */
void supervisor_shutdown(struct supervisor *sv, supervisor_done_cb done, void *ctx);

#endif
