/* deploy_internal.h: what the deploy pipeline (deploy.c) and one-off runs
 * (deploy_run.c) share. Control loop only. */
#ifndef PAASOPS_DEPLOY_INTERNAL_H
#define PAASOPS_DEPLOY_INTERNAL_H
#include "deploy/deploy.h"
#include <stdbool.h>
#include <stddef.h>

struct dp_job;
struct deploy_run;
struct store_release;
struct strbuf;

struct deploy {
	struct deploy_config cfg;
	char *data_dir;
	struct webhooks *hooks;
	struct dp_job **jobs;
	size_t n_jobs, alloc_jobs;
	struct deploy_run *runs; /* one-off runs whose process is alive */
	int n_runs, run_seq;
	bool run_seq_known; /* run_seq goes on from the last run of earlier starts */
	bool stopping; /* deploy_stop was called: no phase starts any more */
	/* Release directories of destroyed apps, removed once their
	 * instances are gone (deploy_destroy). */
	struct dp_doomed {
		char *app, *dir;
		int64_t since;
	} *doomed;
	size_t n_doomed, alloc_doomed;
	unsigned doomed_seq;
	uv_timer_t *reaper;
};

/* A copy of one release record (store_release_get's callback fills it);
 * dp_rel_copy_release() frees what it holds. */
struct rel_copy {
	bool found;
	int version;
	char *status, *yaml, *filename, *dir, *config, *secrets;
	bool owns_dir;
};
void dp_copy_release(void *ctx, const struct store_release *r);
void dp_rel_copy_release(struct rel_copy *c);

/* The app's live release version from the supervisor (0 when none). */
int dp_live_version(struct deploy *d, const char *app);

/* The environment a release's commands run with: PATH, HOME, USER, LANG,
 * TZ and TMPDIR from the daemon, the spec's top-level env, the config vars
 * (over the spec's env), PAASOPS_APP and PAASOPS_RELEASE. Returns a NULL
 * terminated array with room for extra more entries before the NULL, its
 * *n entries set; caller frees with dp_env_free(envp, n). */
char **dp_release_env(struct deploy *d, const char *app, int version, size_t extra, size_t *n);
void dp_env_free(char **envp, size_t n);

/* Adds the complete lines in b (and with flush, the rest) to the app's
 * log under stream, splitting lines longer than 10,000 bytes; consumes
 * what it logged. *cut (kept by the caller per stream, false at first)
 * says that the last line logged was split: a newline that comes next
 * only ends it. */
void dp_log_lines(struct supervisor *sv, const char *app, const char *instance, int stream,
		  struct strbuf *b, bool flush, bool *cut);

/* deploy_run.c: kills every run (the daemon is stopping). */
void dp_runs_free(struct deploy *d);

#endif
