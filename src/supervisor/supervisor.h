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
};

struct spec_process;

struct supervisor_config {
	const struct supervisor_hooks *hooks; /* borrowed, may be NULL */
	void *hooks_ctx;
	uv_loop_t *loop;        /* borrowed */
	struct store *store;    /* borrowed */
	const char *data_dir;   /* borrowed; names the cgroups */
	int port_min, port_max; /* instance ports, inclusive */
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

/* Creates or updates an app from a validated spec (takes ownership of
 * spec). Changed process types restart; removed ones stop; counts set by
 * scale survive unless the spec's count changed. */
int supervisor_apply(struct supervisor *sv, struct spec *spec, const char *yaml,
		     const char *filename, const char *dir, bool *created, char **err);
/* Sets desired counts; all-or-nothing. */
int supervisor_scale(struct supervisor *sv, const char *app, const char *const *procs,
		     const int *counts, int n, char **err);
/* Restarts an app, one process type or one instance (others NULL); clears
 * crash loops. Appends restarted ids to the JSON array ids. */
int supervisor_restart(struct supervisor *sv, const char *app, const char *proc,
		       const char *instance, struct json *ids, char **err);
/* Stops or starts an app or one of its process types, keeping counts. */
int supervisor_set_stopped(struct supervisor *sv, const char *app, const char *proc,
			   bool stopped, char **err);
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
/* Adds a router line (access log) to an instance's log, or the app's when
 * instance is NULL or gone. */
void supervisor_log_line(struct supervisor *sv, const char *app, const char *instance,
			 const char *line);

/* Records an event that is not an instance transition (API changes). */
void supervisor_note(struct supervisor *sv, const char *app, const char *type,
		     const char *reason);

typedef void (*supervisor_done_cb)(void *ctx);
/* Stops every instance (SIGTERM, SIGKILL after stop_timeout); calls done
 * once all have exited. Nothing restarts afterwards. */
void supervisor_shutdown(struct supervisor *sv, supervisor_done_cb done, void *ctx);

#endif
