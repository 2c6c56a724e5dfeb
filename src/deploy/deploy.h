/* deploy.h: releases and deploys. A release is an immutable, numbered
 * snapshot of an app: code directory + spec + config vars + who made it and
 * why. Deploying makes a release (from an uploaded archive, a directory on
 * the server, or a config change), runs its build and release phases, and
 * has the supervisor roll out to it; a failed rollout rolls back to the
 * previous release when the spec asks for it (the default), and so does a
 * release whose instances answer clearly worse than the old ones.
 *
 * One deploy per app at a time: a second one is refused with -EBUSY. All
 * functions run on the control loop; long work (extraction, builds) runs
 * off it and finishes through callbacks. */
#ifndef PAASOPS_DEPLOY_H
#define PAASOPS_DEPLOY_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct json;
struct store;
struct webhook_target;
struct supervisor;
struct router;
struct deploy;

struct deploy_config {
	uv_loop_t *loop;
	struct store *store;
	struct supervisor *sv;
	struct router *router; /* may be NULL: no regression analysis */
	const char *data_dir;
	int keep_releases; /* artifacts kept on disk; 0 = 10 */
	int64_t build_timeout_ms; /* 0 = 10 minutes */
	/* Webhooks for every app's deploy events (borrowed, may be empty);
	 * an app adds its own with the config vars PAASOPS_WEBHOOK_URL,
	 * PAASOPS_WEBHOOK_SECRET and PAASOPS_WEBHOOK_FORMAT (json|slack). */
	const struct webhook_target *webhooks;
	size_t n_webhooks;
	/* Told when a deploy ends (may be NULL): result is "succeeded",
	 * "failed" or "rolled-back"; reason may be NULL. */
	void (*on_result)(void *ctx, const char *app, int version, const char *result,
			  const char *reason);
	void *result_ctx;
};

struct deploy *deploy_new(const struct deploy_config *cfg);
void deploy_free(struct deploy *d);
/* After a restart: deploys that were in flight are marked failed and half
 * unpacked release directories are removed. */
void deploy_recover(struct deploy *d);
/* The daemon is stopping: a running build or release phase gets SIGTERM
 * to its process group (SIGKILL after 5 s) and its deploy is recorded as
 * interrupted, as the next start would; no phase starts any more. */
void deploy_stop(struct deploy *d);

/* The longest message a release may carry, in characters. */
#define DEPLOY_MESSAGE_MAX 1000

/* Who asks and why, recorded with the release. Borrowed. */
struct deploy_who {
	const char *author;
	const char *message;
	/* The apps the caller may change (n_apps 0: every app): a new route on
	 * a host another app routes needs that app in it. */
	char *const *apps;
	size_t n_apps;
};

/* Called once when an asynchronous deploy step has an answer for the
 * caller: status is an HTTP status, body the JSON answer (taken over). */
typedef void (*deploy_reply_cb)(void *ctx, int status, struct json *body);

/* A new release from a spec and a directory on the server (not copied).
 * Answers with the release once its rollout started (or an error). */
int deploy_apply(struct deploy *d, const char *yaml, const char *filename, const char *dir,
		 const struct deploy_who *who, struct json **out, char **err);
/* A new release from an uploaded archive (tar, optionally gzip), which this
 * call takes over and removes. spec_name: the spec's path inside the
 * archive. Extraction is checked and runs off the loop; reply is called
 * once the release exists (202) or the upload is refused (4xx). */
void deploy_archive(struct deploy *d, const char *app, const char *archive_path,
		    const char *spec_name, const char *sha256, const struct deploy_who *who,
		    deploy_reply_cb reply, void *ctx);
/* Config vars: set (a JSON object of strings), mark secret (JSON array of
 * names, may be NULL) or unset (JSON array of names); each makes a release. */
int deploy_config_change(struct deploy *d, const char *app, const struct json *set,
			 const struct json *secret, const struct json *unset,
			 const struct deploy_who *who, struct json **out, char **err);
/* The longest config var name. */
#define DEPLOY_CONFIG_NAME_MAX 256
/* PORT, HOST and PAASOPS_* (but the PAASOPS_WEBHOOK_* settings): the
 * daemon sets these, config may not. */
bool deploy_config_name_reserved(const char *name);
/* The app's config with secrets masked; NULL for an unknown app. */
struct json *deploy_config_json(struct deploy *d, const char *app);
/* The live release of app, for exporting it to another platform:
 * {"version", "spec_yaml", "filename", "dir", "config": {NAME: value},
 * "secrets": [NAME, ...]}. Secret vars are named in "secrets" and left out
 * of "config": their values never leave the daemon. NULL when the app has
 * no live release. Caller frees. */
struct json *deploy_live_release_json(struct deploy *d, const char *app);
/* Rolls back to version (0: the release before the live one). */
int deploy_rollback(struct deploy *d, const char *app, int version, const struct deploy_who *who,
		    struct json **out, char **err);
int deploy_promote(struct deploy *d, const char *app, char **err);
/* Destroys app: its instances stop and it is forgotten (supervisor_destroy),
 * with its release records; an app whose first deploy failed or still runs
 * has only those to forget, and a build or release phase of it is stopped.
 * DATA/releases/APP is removed once its instances are gone (the name is
 * free for a new app at once). -ENOENT: no such app. */
int deploy_destroy(struct deploy *d, const char *app, char **err);
struct json *deploy_releases_json(struct deploy *d, const char *app);
/* NULL when unknown. */
struct json *deploy_release_json(struct deploy *d, const char *app, int version);
/* The current or last deploy of an app, with its phase; NULL when unknown. */
struct json *deploy_status_json(struct deploy *d, const char *app);
/* Webhook delivery counters; caller frees. */
struct json *deploy_webhooks_json(struct deploy *d);


/* ---- one-off runs (paasops run) ---- */

/* At most this many one-off runs at once, over all apps. */
#define DEPLOY_MAX_RUNS 32
/* The longest a run may last, and the default. */
#define DEPLOY_RUN_TIMEOUT_MAX_MS (24LL * 3600 * 1000)
#define DEPLOY_RUN_TIMEOUT_DEFAULT_MS (3600LL * 1000)

struct deploy_run;
struct deploy_run_cbs {
	/* Output as it comes: fd 1 (stdout) or 2 (stderr); data borrowed. */
	void (*output)(void *ctx, int fd, const char *data, size_t len);
	/* Once, after the process exited and all its output was delivered:
	 * the exit status (-1 when a signal ended it), the signal, and why it
	 * was stopped ("timed out after 1h", or NULL). */
	void (*exit)(void *ctx, int status, int sig, const char *why);
};
/* A terminal for a run: its size and $TERM (NULL: "xterm"). */
struct deploy_run_tty {
	int rows, cols;
	const char *term;
};
/* Runs command once under /bin/sh -c, in the directory of app's live
 * release with that release's environment (as its release phase gets it),
 * stdin from /dev/null, in its own process group. With tty, the command
 * gets a pseudo-terminal of that size instead, as stdin, stdout and stderr
 * and as its session's controlling terminal (so that Ctrl-C typed into it
 * reaches the program); its output is then all fd 1. Its output goes to cbs
 * and, line by line, to the app's log (stream "run"); events say when it
 * started and how it ended. timeout_ms (> 0) kills the group after that
 * long. Returns 0 and the run in *out, or -ENOENT (no such app), -ESRCH
 * (no live release), -EAGAIN (DEPLOY_MAX_RUNS running), or a spawn error,
 * each with *err (caller frees). */
int deploy_run_start(struct deploy *d, const char *app, const char *command, int64_t timeout_ms,
		     const struct deploy_run_tty *tty, const struct deploy_run_cbs *cbs, void *ctx,
		     struct deploy_run **out, char **err);
/* The live run named id ("APP.run.N") of app, or NULL. */
struct deploy_run *deploy_run_find(struct deploy *d, const char *app, const char *id);
/* Typing into a run's terminal: len bytes of input, then, when rows > 0,
 * a new size (the program gets SIGWINCH). -ENOTTY: the run has no
 * terminal; -EPIPE: it has ended; -ENOBUFS: more than
 * DEPLOY_RUN_INPUT_MAX bytes wait to be read by the program. */
#define DEPLOY_RUN_INPUT_MAX (1 << 20)
int deploy_run_input(struct deploy_run *r, const char *data, size_t len, int rows, int cols);
/* "APP.run.N", the pid, and the release version of a run that is alive
 * (a run must not be used after its exit callback or a cancel). */
const char *deploy_run_id(const struct deploy_run *r);
int deploy_run_pid(const struct deploy_run *r);
int deploy_run_release(const struct deploy_run *r);
/* Stops reading the run's output while its reader catches up (the
 * process then blocks on a full pipe), or reads again. */
void deploy_run_pause(struct deploy_run *r, bool pause);
/* Whoever asked is gone: the process group is killed and no callback is
 * called any more; the run cleans up after itself. */
void deploy_run_cancel(struct deploy_run *r);

#endif
