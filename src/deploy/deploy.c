/* deploy.c: releases and the deploy pipeline (see deploy.h):
 *
 *   upload → extract (thread pool, checked) → build → release phase →
 *   rollout (supervisor) → analysis → active | failed → rolled back
 *
 * A job per app tracks the current (or last) deploy. Release records are
 * written before anything serves them; the app's live release changes only
 * when a rollout succeeds, so a daemon killed mid-deploy comes back on the
 * old release with the interrupted one marked failed. */
#include "deploy/deploy.h"
#include "deploy/deploy_internal.h"
#include "deploy/deploy_webhook.h"
#include "compat/archive.h"
#include "compat/crypto.h"
#include "compat/json.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/paths.h"
#include "core/runas.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "router/router.h"
#include "spec/spec.h"
#include "store/store.h"
#include "supervisor/supervisor.h"
#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <strings.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_KEEP 10
#define DEFAULT_BUILD_TIMEOUT_MS (10 * 60 * 1000)
#define ARCHIVE_MAX_BYTES (2LL * 1024 * 1024 * 1024)
#define ARCHIVE_MAX_FILES 200000
#define ANALYSIS_TICK_MS 500
#define ANALYSIS_MIN_REQUESTS 20
/* The reason a release left by `paasops rollback` is recorded with. */
#define ROLLED_BACK_BY_REQUEST "rolled back by request"
/* As the next start records a deploy a dead daemon left (store.c). */
#define DEPLOY_INTERRUPTED "interrupted: the daemon stopped during the deploy"
/* A destroyed app's releases/APP directory is renamed to this prefix at
 * once (so that the name is free), and removed once its instances are gone. */
#define DESTROYED_PREFIX ".destroyed-"
#define REAPER_TICK_MS 250
#define REAPER_MAX_WAIT_MS (10LL * 60 * 1000)
/* A build or release phase stopped with the daemon gets SIGTERM, then SIGKILL. */
#define PHASE_STOP_GRACE_MS 5000

enum dp_phase { PH_EXTRACTING, PH_BUILDING, PH_RELEASING, PH_ROLLING_OUT, PH_ROLLING_BACK, PH_DONE };
static const char *const phase_names[] = {"extracting", "building", "releasing", "rolling out",
					  "rolling back", "done"};

struct dp_sample {
	char *id;
	struct router_instance_stats last;
};

struct dp_job {
	struct deploy *d;
	char *app;
	int version, from;
	enum dp_phase phase;
	char *result; /* NULL while running: "succeeded", "failed", "rolled-back" */
	char *reason;
	bool auto_rollback;
	bool skip_build;
	bool is_rollback; /* asked for by rollback: the release left is "rolled-back" */
	bool has_release; /* its release record exists (version is taken) */
	bool destroyed; /* the app was destroyed while this deploy ran */
	int64_t started, finished;
	char *yaml, *filename, *dir;
	char *author, *message;
	char **scope; /* the caller's apps, as in struct deploy_who */
	size_t n_scope;
	/* extraction */
	uv_work_t work;
	char *archive, *tmpdir, *spec_name, *sha_expected;
	char *sha, *work_err;
	char **work_details;
	size_t n_work_details;
	int work_status;
	deploy_reply_cb reply;
	void *reply_ctx;
	/* analysis: counters per instance, summed by release */
	uv_timer_t *tick;
	struct dp_sample *samples;
	size_t n_samples, alloc_samples;
	uint64_t n_req, n_err, o_req, o_err;
	uint64_t n_hist[ROUTER_HIST_BUCKETS + 1], o_hist[ROUTER_HIST_BUCKETS + 1];
	bool phase_running;
	struct dp_proc *proc; /* the build or release phase running, or NULL */
	int rollout_rc; /* why the supervisor refused the rollout, if it did */
	double err_rate, err_factor, lat_factor; /* regression thresholds */
};


/* ---- jobs ---- */

static void job_free(struct dp_job *j)
{
	if (!j)
		return;
	free(j->app);
	free(j->result);
	free(j->reason);
	free(j->yaml);
	free(j->filename);
	free(j->dir);
	free(j->author);
	free(j->message);
	for (size_t k = 0; k < j->n_scope; k++)
		free(j->scope[k]);
	free(j->scope);
	free(j->archive);
	free(j->tmpdir);
	free(j->spec_name);
	free(j->sha_expected);
	free(j->sha);
	free(j->work_err);
	for (size_t k = 0; k < j->n_work_details; k++)
		free(j->work_details[k]);
	free(j->work_details);
	for (size_t k = 0; k < j->n_samples; k++)
		free(j->samples[k].id);
	free(j->samples);
	if (j->tick)
		uv_close((uv_handle_t *)j->tick, (uv_close_cb)free);
	free(j);
}

static struct dp_job *job_find(struct deploy *d, const char *app)
{
	for (size_t k = 0; k < d->n_jobs; k++)
		if (!strcmp(d->jobs[k]->app, app))
			return d->jobs[k];
	return NULL;
}

static bool busy(struct deploy *d, const char *app)
{
	struct dp_job *j = job_find(d, app);
	return j && !j->result;
}

/* A new job replaces the app's last finished one. */
static struct dp_job *job_new(struct deploy *d, const char *app, const struct deploy_who *who)
{
	struct dp_job *old = job_find(d, app);
	struct dp_job *j = xcalloc(1, sizeof(*j));
	j->d = d;
	j->app = xstrdup(app);
	j->started = time_wall_ms();
	j->author = who && who->author ? xstrdup(who->author) : NULL;
	j->message = who && who->message ? xstrdup(who->message) : NULL;
	if (who && who->n_apps) {
		j->scope = xcalloc(who->n_apps, sizeof(*j->scope));
		for (size_t k = 0; k < who->n_apps; k++)
			j->scope[k] = xstrdup(who->apps[k]);
		j->n_scope = who->n_apps;
	}
	j->auto_rollback = true;
	if (old) {
		for (size_t k = 0; k < d->n_jobs; k++)
			if (d->jobs[k] == old)
				d->jobs[k] = j;
		job_free(old);
	} else {
		d->jobs = xgrow(d->jobs, sizeof(*d->jobs), d->n_jobs + 1, &d->alloc_jobs);
		d->jobs[d->n_jobs++] = j;
	}
	return j;
}

static void note(struct dp_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct dp_job *j, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	supervisor_note(j->d->cfg.sv, j->app, "deploy", msg);
	supervisor_log_line(j->d->cfg.sv, j->app, NULL, SUPERVISOR_STREAM_BUILD, msg);
	free(msg);
}

static struct json *job_json(struct dp_job *j);

struct app_hook {
	char *url, *secret, *format;
};

static void find_hook(void *ctx, const struct store_release *r)
{
	struct app_hook *h = ctx;
	struct json *cfg = json_parse(r->config, strlen(r->config), NULL);
	const char *u = json_get_str(cfg, "PAASOPS_WEBHOOK_URL");
	const char *sec = json_get_str(cfg, "PAASOPS_WEBHOOK_SECRET");
	const char *fmt = json_get_str(cfg, "PAASOPS_WEBHOOK_FORMAT");
	h->url = u ? xstrdup(u) : NULL;
	h->secret = sec ? xstrdup(sec) : NULL;
	h->format = fmt ? xstrdup(fmt) : NULL;
	json_free(cfg);
}

/* Tells the global webhooks and the app's own about a deploy event. */
static void emit(struct dp_job *j, const char *event, const char *summary)
{
	struct deploy *d = j->d;
	struct app_hook h = {0};
	store_release_get(d->cfg.store, j->app, j->version, find_hook, &h);
	if (!d->cfg.n_webhooks && !h.url) {
		free(h.secret);
		free(h.format);
		return;
	}
	struct json *o = json_object();
	json_set_str(o, "event", event);
	json_set_str(o, "summary", summary);
	char ts[40];
	time_format_iso(time_wall_ms(), ts, sizeof(ts));
	json_set_str(o, "time", ts);
	json_set(o, "deploy", job_json(j));
	for (size_t k = 0; k < d->cfg.n_webhooks; k++)
		webhooks_send(d->hooks, &d->cfg.webhooks[k], event, o, summary);
	if (h.url) {
		struct webhook_target t = {h.url, h.secret, h.format && !strcmp(h.format, "slack")};
		webhooks_send(d->hooks, &t, event, o, summary);
	}
	json_free(o);
	free(h.url);
	free(h.secret);
	free(h.format);
}

static void set_status(struct dp_job *j, int version, const char *status, const char *reason)
{
	store_release_set_status(j->d->cfg.store, j->app, version, status, reason, time_wall_ms());
}

static void job_finish(struct dp_job *j, const char *result, const char *reason)
{
	j->phase = PH_DONE;
	free(j->result);
	j->result = xstrdup(result);
	free(j->reason);
	j->reason = reason ? xstrdup(reason) : NULL;
	j->finished = time_wall_ms();
	if (j->tick)
		uv_timer_stop(j->tick);
	/* Refused before its release was recorded (a bad upload or spec): the
	 * caller has its error, no version was taken, nothing is alerted. */
	char *msg = j->has_release
			    ? xasprintf("%s: deploy of v%d %s%s%s", j->app, j->version, result,
					reason ? ": " : "", reason ? reason : "")
			    : xasprintf("%s: deploy %s before a release was made%s%s", j->app, result,
					reason ? ": " : "", reason ? reason : "");
	note(j, "%s", msg + strlen(j->app) + 2);
	char event[64];
	snprintf(event, sizeof(event), "deploy.%s", !strcmp(result, "rolled-back") ? "rolled_back" : result);
	emit(j, event, msg);
	free(msg);
	if (j->d->cfg.on_result && j->has_release)
		j->d->cfg.on_result(j->d->cfg.result_ctx, j->app, j->version, j->result, j->reason);
}

/* Announces a phase change. */
static void phase(struct dp_job *j, enum dp_phase ph);

/* ---- release records ---- */

void dp_copy_release(void *ctx, const struct store_release *r)
{
	struct rel_copy *c = ctx;
	c->found = true;
	c->version = r->version;
	c->status = xstrdup(r->status);
	c->yaml = xstrdup(r->spec_yaml);
	c->filename = xstrdup(r->filename ? r->filename : "paasops.yaml");
	c->dir = xstrdup(r->dir);
	c->config = xstrdup(r->config ? r->config : "{}");
	c->secrets = xstrdup(r->secrets ? r->secrets : "[]");
	c->owns_dir = r->owns_dir;
}

void dp_rel_copy_release(struct rel_copy *c)
{
	free(c->status);
	free(c->yaml);
	free(c->filename);
	free(c->dir);
	free(c->config);
	free(c->secrets);
	memset(c, 0, sizeof(*c));
}

/* The app's live release version from the supervisor (0 when none). */
int dp_live_version(struct deploy *d, const char *app)
{
	struct json *st = supervisor_rollout_json(d->cfg.sv, app);
	int64_t v = 0;
	if (st)
		json_get_int(json_get(st, "live"), &v);
	json_free(st);
	return (int)v;
}

static struct json *release_to_json(const struct store_release *r, bool detail)
{
	struct json *o = json_object();
	json_set_str(o, "app", r->app);
	json_set_int(o, "version", r->version);
	json_set_str(o, "status", r->status);
	json_set_str(o, "author", r->author);
	json_set_str(o, "message", r->message);
	json_set_str(o, "reason", r->reason);
	char ts[40];
	time_format_iso(r->created_at, ts, sizeof(ts));
	json_set_str(o, "created_at", ts);
	time_format_iso(r->updated_at, ts, sizeof(ts));
	json_set_str(o, "updated_at", ts);
	json_set_str(o, "sha256", r->sha256);
	struct stat st;
	json_set_bool(o, "artifact", stat(r->dir, &st) == 0);
	if (detail) {
		json_set_str(o, "dir", r->dir);
		json_set_str(o, "spec_yaml", r->spec_yaml);
		struct json *cfg = json_parse(r->config, strlen(r->config), NULL);
		struct json *sec = json_parse(r->secrets, strlen(r->secrets), NULL);
		struct json *shown = json_object();
		for (struct json *e = json_first(cfg); e; e = json_next(e)) {
			bool secret = false;
			for (struct json *s = json_first(sec); s; s = json_next(s))
				secret = secret || str_eq(json_str(s), json_key(e));
			json_set_str(shown, json_key(e), secret ? "********" : json_str(e));
		}
		json_set(o, "config", shown);
		json_free(cfg);
		json_free(sec);
	}
	return o;
}

static void add_release_json(void *ctx, const struct store_release *r)
{
	json_append(ctx, release_to_json(r, false));
}

static void one_release_json(void *ctx, const struct store_release *r)
{
	*(struct json **)ctx = release_to_json(r, true);
}

struct json *deploy_releases_json(struct deploy *d, const char *app)
{
	struct json *arr = json_array();
	store_releases_each(d->cfg.store, app, add_release_json, arr);
	return arr;
}

struct json *deploy_release_json(struct deploy *d, const char *app, int version)
{
	struct json *o = NULL;
	store_release_get(d->cfg.store, app, version, one_release_json, &o);
	return o;
}

/* ---- pruning old artifacts ---- */

struct prune {
	int seen;
	int keep;
	char **keep_dirs;
	size_t n_keep, alloc_keep;
	char **drop;
	size_t n_drop, alloc_drop;
};

static void prune_each(void *ctx, const struct store_release *r)
{
	struct prune *p = ctx;
	if (p->seen++ < p->keep || !strcmp(r->status, "active")) {
		p->keep_dirs = xgrow(p->keep_dirs, sizeof(char *), p->n_keep + 1, &p->alloc_keep);
		p->keep_dirs[p->n_keep++] = xstrdup(r->dir);
	} else if (r->owns_dir) {
		p->drop = xgrow(p->drop, sizeof(char *), p->n_drop + 1, &p->alloc_drop);
		p->drop[p->n_drop++] = xstrdup(r->dir);
	}
}

static void prune(struct deploy *d, const char *app)
{
	struct prune p = {.keep = d->cfg.keep_releases > 0 ? d->cfg.keep_releases : DEFAULT_KEEP};
	store_releases_each(d->cfg.store, app, prune_each, &p);
	for (size_t k = 0; k < p.n_drop; k++) {
		bool kept = false;
		for (size_t m = 0; m < p.n_keep; m++)
			kept = kept || !strcmp(p.keep_dirs[m], p.drop[k]);
		struct stat st;
		if (!kept && stat(p.drop[k], &st) == 0) {
			paths_remove_tree(p.drop[k]);
			log_info("app '%s': removed old release artifact %s", app, p.drop[k]);
		}
		free(p.drop[k]);
	}
	for (size_t m = 0; m < p.n_keep; m++)
		free(p.keep_dirs[m]);
	free(p.keep_dirs);
	free(p.drop);
}

/* ---- analysis: the new release against the old one ---- */

static struct dp_sample *sample_for(struct dp_job *j, const char *id)
{
	for (size_t k = 0; k < j->n_samples; k++)
		if (!strcmp(j->samples[k].id, id))
			return &j->samples[k];
	j->samples = xgrow(j->samples, sizeof(*j->samples), j->n_samples + 1, &j->alloc_samples);
	struct dp_sample *s = &j->samples[j->n_samples++];
	memset(s, 0, sizeof(*s));
	s->id = xstrdup(id);
	return s;
}

/* Adds what each instance answered since the last look to its release's sums. */
static void collect(struct dp_job *j, struct json *ids, bool fresh, bool count)
{
	for (struct json *e = json_first(ids); e; e = json_next(e)) {
		struct router_instance_stats now;
		router_instance_stats(j->d->cfg.router, json_str(e), &now);
		struct dp_sample *s = sample_for(j, json_str(e));
		if (count && now.answered >= s->last.answered) {
			uint64_t *req = fresh ? &j->n_req : &j->o_req, *err = fresh ? &j->n_err : &j->o_err;
			uint64_t *hist = fresh ? j->n_hist : j->o_hist;
			*req += now.answered - s->last.answered;
			*err += now.errors_5xx - s->last.errors_5xx;
			for (int b = 0; b <= ROUTER_HIST_BUCKETS; b++)
				hist[b] += now.hist[b] - s->last.hist[b];
		}
		s->last = now;
	}
}

static double p95_of(const uint64_t *hist, uint64_t total)
{
	if (!total)
		return 0;
	uint64_t need = (uint64_t)((double)total * 0.95 + 0.999), acc = 0;
	for (int b = 0; b <= ROUTER_HIST_BUCKETS; b++) {
		acc += hist[b];
		if (acc >= need)
			return b < ROUTER_HIST_BUCKETS ? router_hist_bounds[b] : router_hist_bounds[ROUTER_HIST_BUCKETS - 1] * 2;
	}
	return 0;
}

static void analysis_tick(uv_timer_t *t)
{
	struct dp_job *j = t->data;
	if (j->phase != PH_ROLLING_OUT || !j->d->cfg.router)
		return;
	struct json *news = json_array(), *olds = json_array();
	supervisor_release_instances(j->d->cfg.sv, j->app, j->version, news, olds);
	collect(j, news, true, true);
	collect(j, olds, false, true);
	json_free(news);
	json_free(olds);
	if (j->n_req < ANALYSIS_MIN_REQUESTS)
		return;
	double nr = (double)j->n_err / (double)j->n_req;
	double orr = j->o_req ? (double)j->o_err / (double)j->o_req : 0;
	double limit = orr * j->err_factor > j->err_rate ? orr * j->err_factor : j->err_rate;
	char why[300] = "";
	if (nr > limit)
		snprintf(why, sizeof(why),
			 "regression: v%d answered 5xx to %.1f%% of %llu requests, v%d to %.1f%% of %llu (limit %.1f%%)",
			 j->version, nr * 100, (unsigned long long)j->n_req, j->from, orr * 100,
			 (unsigned long long)j->o_req, limit * 100);
	double np = p95_of(j->n_hist, j->n_req), op = p95_of(j->o_hist, j->o_req);
	if (!why[0] && j->o_req >= ANALYSIS_MIN_REQUESTS && np > op * j->lat_factor && np > op + 0.25)
		snprintf(why, sizeof(why), "regression: v%d p95 latency %.3fs over %llu requests, v%d %.3fs over %llu",
			 j->version, np, (unsigned long long)j->n_req, j->from, op,
			 (unsigned long long)j->o_req);
	if (why[0])
		supervisor_rollout_abort(j->d->cfg.sv, j->app, why);
}

/* ---- rollout ---- */

static void on_rollout_done(void *ctx, const char *app, int version, bool ok, const char *reason);

/* Hands a release to the supervisor. 0 or a negative errno with *err. */
static int roll_to(struct dp_job *j, const struct rel_copy *r, char **err)
{
	char *perr = NULL;
	struct spec *spec = spec_parse_stored(r->yaml, strlen(r->yaml), r->filename, &perr);
	if (!spec) {
		*err = xasprintf("release v%d's spec no longer parses: %s", r->version, perr);
		free(perr);
		return -EINVAL;
	}
	struct json *cfg = json_parse(r->config, strlen(r->config), NULL);
	size_t n = json_size(cfg), k = 0;
	struct spec_env *env = xcalloc(n ? n : 1, sizeof(*env));
	for (struct json *e = json_first(cfg); e; e = json_next(e))
		if (json_str(e))
			env[k++] = (struct spec_env){(char *)json_key(e), (char *)json_str(e)};
	struct supervisor_release sr = {
		.version = r->version, .spec = spec, .yaml = r->yaml, .filename = r->filename,
		.dir = r->dir, .config = env, .n_config = k,
		.scope = j->scope, .n_scope = j->n_scope,
		.rollback = j->is_rollback || j->phase == PH_ROLLING_BACK,
	};
	bool created;
	int rc = supervisor_rollout(j->d->cfg.sv, &sr, on_rollout_done, j, &created, err);
	free(env);
	json_free(cfg);
	return rc;
}

static void start_rollback(struct dp_job *j, const char *why)
{
	struct rel_copy prev = {0};
	store_release_get(j->d->cfg.store, j->app, j->from, dp_copy_release, &prev);
	char *err = NULL;
	/* The failure is recorded first: the rollback's rollout may end, and
	 * on_rollout_done mark the release rolled back, before roll_to returns. */
	char *reason = xstrdup(why);
	free(j->reason);
	j->reason = reason;
	set_status(j, j->version, "failed", reason);
	phase(j, PH_ROLLING_BACK);
	note(j, "v%d failed (%s); rolling back to v%d", j->version, reason, j->from);
	if (!prev.found || roll_to(j, &prev, &err) < 0) {
		char *msg = xasprintf("%s; rollback to v%d impossible: %s", reason, j->from,
				      err ? err : "release not found");
		job_finish(j, "failed", msg);
		free(msg);
		free(err);
	}
	dp_rel_copy_release(&prev);
}

static void on_rollout_done(void *ctx, const char *app, int version, bool ok, const char *reason)
{
	struct dp_job *j = ctx;
	struct deploy *d = j->d;
	if (j->phase == PH_ROLLING_BACK) {
		if (ok) {
			/* The release rolled back from never went live: it stays
			 * "failed", so that only releases that were live are
			 * offered by a rollback. */
			set_status(j, j->from, "active", NULL);
			char *why = xasprintf("%s; rolled back to v%d", j->reason ? j->reason : "rollout failed", j->from);
			set_status(j, j->version, "failed", why);
			free(why);
			why = xstrdup(j->reason ? j->reason : "rollout failed");
			job_finish(j, "rolled-back", why);
			free(why);
		} else {
			char *why = xasprintf("%s; the rollback to v%d failed too: %s",
					      j->reason ? j->reason : "rollout failed", j->from, reason);
			job_finish(j, "failed", why);
			free(why);
		}
		return;
	}
	if (ok) {
		if (j->from && j->from != j->version)
			set_status(j, j->from, j->is_rollback ? "rolled-back" : "superseded",
				   j->is_rollback ? ROLLED_BACK_BY_REQUEST : NULL);
		set_status(j, j->version, "active", NULL);
		job_finish(j, "succeeded", NULL);
		prune(d, j->app);
		return;
	}
	/* No rollback when the daemon is stopping or the app was destroyed:
	 * the next start serves the live release anyway. */
	if (j->auto_rollback && j->from && j->from != j->version &&
	    !supervisor_shutting_down(d->cfg.sv) && supervisor_has_app(d->cfg.sv, j->app)) {
		start_rollback(j, reason ? reason : "rollout failed");
		return;
	}
	set_status(j, j->version, "failed", reason);
	job_finish(j, "failed", reason);
}

/* The last step: the supervisor takes over. */
static void begin_rollout(struct dp_job *j)
{
	if (j->destroyed) {
		job_finish(j, "failed", "app destroyed");
		return;
	}
	struct rel_copy r = {0};
	store_release_get(j->d->cfg.store, j->app, j->version, dp_copy_release, &r);
	phase(j, PH_ROLLING_OUT);
	set_status(j, j->version, "deploying", NULL);
	char *err = NULL;
	int rc = r.found ? roll_to(j, &r, &err) : -ENOENT;
	dp_rel_copy_release(&r);
	if (rc < 0) {
		j->rollout_rc = rc;
		set_status(j, j->version, "failed", err ? err : "release not found");
		job_finish(j, "failed", err ? err : "release not found");
		free(err);
		return;
	}
	if (j->d->cfg.router && j->phase == PH_ROLLING_OUT && !j->result) {
		if (!j->tick) {
			j->tick = xcalloc(1, sizeof(*j->tick));
			uv_timer_init(j->d->cfg.loop, j->tick);
			j->tick->data = j;
		}
		/* Baseline: what instances answered before the rollout began. */
		struct json *news = json_array(), *olds = json_array();
		supervisor_release_instances(j->d->cfg.sv, j->app, j->version, news, olds);
		collect(j, news, true, false);
		collect(j, olds, false, false);
		json_free(news);
		json_free(olds);
		uv_timer_start(j->tick, analysis_tick, ANALYSIS_TICK_MS, ANALYSIS_TICK_MS);
	}
}

/* ---- build and release phases ---- */

void dp_log_lines(struct supervisor *sv, const char *app, const char *instance, int stream,
		  struct strbuf *b, bool flush, bool *cut)
{
	size_t start = 0;
	for (;;) {
		if (*cut && start < b->len) {
			*cut = false;
			if (b->buf[start] == '\n' && ++start == b->len)
				break;
		}
		char *nl = memchr(b->buf + start, '\n', b->len - start);
		size_t n = nl ? (size_t)(nl - (b->buf + start)) : b->len - start;
		if (!nl && n < 10000 && !(flush && n))
			break;
		if (n > 10000) {
			n = 10000;
			nl = NULL;
		}
		char *line = xstrndup(b->buf + start, n);
		supervisor_log_line(sv, app, instance, (enum supervisor_stream)stream, line);
		free(line);
		*cut = !nl;
		start += n + (nl ? 1 : 0);
		if (start >= b->len)
			break;
	}
	strbuf_consume(b, start);
}

char **dp_release_env(struct deploy *d, const char *app, int version, size_t extra, size_t *n)
{
	static const char *const passed[] = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR"};
	struct rel_copy r = {0};
	store_release_get(d->cfg.store, app, version, dp_copy_release, &r);
	struct spec *spec = r.found ? spec_parse_stored(r.yaml, strlen(r.yaml), r.filename, NULL) : NULL;
	struct json *cfg = r.found ? json_parse(r.config, strlen(r.config), NULL) : NULL;
	size_t cap = ARRAY_SIZE(passed) + (spec ? spec->n_env : 0) + json_size(cfg) + 2 + extra + 1;
	char **envp = xcalloc(cap, sizeof(*envp));
	size_t ne = 0;
	for (size_t k = 0; k < ARRAY_SIZE(passed); k++) {
		const char *v = supervisor_spawn_env(d->cfg.sv, passed[k]);
		if (v)
			envp[ne++] = xasprintf("%s=%s", passed[k], v);
	}
	/* Config vars win over the spec's env; the daemon's own names over both. */
	for (size_t k = 0; spec && k < spec->n_env; k++)
		if (!json_str(json_get(cfg, spec->env[k].key)) && !deploy_config_name_reserved(spec->env[k].key))
			envp[ne++] = xasprintf("%s=%s", spec->env[k].key, spec->env[k].value);
	for (struct json *e = json_first(cfg); e; e = json_next(e))
		if (json_str(e) && !deploy_config_name_reserved(json_key(e)))
			envp[ne++] = xasprintf("%s=%s", json_key(e), json_str(e));
	envp[ne++] = xasprintf("PAASOPS_APP=%s", app);
	envp[ne++] = xasprintf("PAASOPS_RELEASE=v%d", version);
	envp[ne] = NULL;
	json_free(cfg);
	spec_free(spec);
	dp_rel_copy_release(&r);
	*n = ne;
	return envp;
}

void dp_env_free(char **envp, size_t n)
{
	for (size_t k = 0; k < n; k++)
		free(envp[k]);
	free(envp);
}


struct dp_proc {
	struct dp_job *j;
	uv_process_t proc;
	uv_pipe_t pipes[2];
	uv_timer_t timeout;
	struct strbuf partial[2];
	bool cut[2]; /* for dp_log_lines */
	int open;
	bool timed_out;
	bool interrupted; /* the daemon is stopping: it was told to stop */
	enum supervisor_stream stream;
	void (*next)(struct dp_job *j);
	const char *what;
};

static void proc_closed(uv_handle_t *h)
{
	struct dp_proc *p = h->data;
	if (--p->open > 0)
		return;
	strbuf_release(&p->partial[0]);
	strbuf_release(&p->partial[1]);
	free(p);
}

static void proc_lines(struct dp_proc *p, int k, bool flush)
{
	dp_log_lines(p->j->d->cfg.sv, p->j->app, NULL, p->stream, &p->partial[k], flush, &p->cut[k]);
}

static void proc_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
	struct dp_proc *p = h->data;
	int k = (uv_pipe_t *)h == &p->pipes[1];
	strbuf_grow(&p->partial[k], 16384);
	buf->base = p->partial[k].buf + p->partial[k].len;
	buf->len = p->partial[k].alloc - p->partial[k].len - 1;
}

static void proc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct dp_proc *p = s->data;
	int k = (uv_pipe_t *)s == &p->pipes[1];
	if (n > 0) {
		p->partial[k].len += (size_t)n;
		p->partial[k].buf[p->partial[k].len] = '\0';
		proc_lines(p, k, false);
	} else if (n < 0) {
		proc_lines(p, k, true);
		uv_close((uv_handle_t *)s, proc_closed);
	}
}

static void proc_timeout(uv_timer_t *t)
{
	struct dp_proc *p = t->data;
	p->timed_out = !p->interrupted;
	kill(-p->proc.pid, SIGKILL);
}

/* Ends a deploy because the daemon stops, as the next start would. */
static void interrupted(struct dp_job *j)
{
	set_status(j, j->version, "failed", DEPLOY_INTERRUPTED);
	job_finish(j, "failed", DEPLOY_INTERRUPTED);
}

static void proc_exit(uv_process_t *h, int64_t status, int sig)
{
	struct dp_proc *p = h->data;
	struct dp_job *j = p->j;
	kill(-h->pid, SIGKILL); /* nothing of the phase outlives it */
	store_proc_delete(j->d->cfg.store, h->pid);
	uv_timer_stop(&p->timeout);
	uv_close((uv_handle_t *)&p->timeout, proc_closed);
	uv_close((uv_handle_t *)h, proc_closed);
	j->phase_running = false;
	j->proc = NULL;
	if (j->destroyed) {
		job_finish(j, "failed", "app destroyed");
		return;
	}
	if (p->interrupted || j->d->stopping) {
		interrupted(j);
		return;
	}
	if (status == 0 && sig == 0 && !p->timed_out) {
		note(j, "%s of v%d finished", p->what, j->version);
		p->next(j);
		return;
	}
	char *why = p->timed_out ? xasprintf("%s timed out", p->what)
		    : sig	     ? xasprintf("%s killed by signal %d", p->what, sig)
				     : xasprintf("%s failed with exit status %d", p->what, (int)status);
	set_status(j, j->version, "failed", why);
	job_finish(j, "failed", why);
	free(why);
}


/* Runs cmd in the release directory, its output into the app's log. */
static void run_phase(struct dp_job *j, const char *what, const char *cmd, enum supervisor_stream stream,
		      void (*next)(struct dp_job *))
{
	struct deploy *d = j->d;
	if (j->destroyed) {
		job_finish(j, "failed", "app destroyed");
		return;
	}
	if (d->stopping) {
		interrupted(j);
		return;
	}
	struct dp_proc *p = xcalloc(1, sizeof(*p));
	p->j = j;
	p->stream = stream;
	p->next = next;
	p->what = what;
	strbuf_init(&p->partial[0], 0);
	strbuf_init(&p->partial[1], 0);
	uv_pipe_init(d->cfg.loop, &p->pipes[0], 0);
	uv_pipe_init(d->cfg.loop, &p->pipes[1], 0);
	uv_timer_init(d->cfg.loop, &p->timeout);
	p->pipes[0].data = p->pipes[1].data = p->timeout.data = p->proc.data = p;
	p->open = 3;
	/* Environment: the daemon's basics, the spec's env and config vars. */
	size_t ne;
	char **envp = dp_release_env(d, j->app, j->version, 0, &ne);
	char *args[] = {"/bin/sh", "-c", (char *)cmd, NULL};
	uv_stdio_container_t stdio[3] = {
		{.flags = UV_IGNORE},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->pipes[0]},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->pipes[1]},
	};
	uv_process_options_t o = {
		.file = "/bin/sh", .args = args, .env = envp, .cwd = j->dir,
		.flags = UV_PROCESS_DETACHED, .exit_cb = proc_exit, .stdio = stdio, .stdio_count = 3,
	};
	supervisor_spawn_as(d->cfg.sv, &o);
	note(j, "%s of v%d: %s", what, j->version, cmd);
	int rc = uv_spawn(d->cfg.loop, &p->proc, &o);
	dp_env_free(envp, ne);
	if (rc < 0) {
		uv_close((uv_handle_t *)&p->proc, NULL);
		uv_close((uv_handle_t *)&p->pipes[0], proc_closed);
		uv_close((uv_handle_t *)&p->pipes[1], proc_closed);
		uv_close((uv_handle_t *)&p->timeout, proc_closed);
		char *why = xasprintf("cannot start the %s: %s", what, uv_strerror(rc));
		set_status(j, j->version, "failed", why);
		job_finish(j, "failed", why);
		free(why);
		return;
	}
	p->open++;
	j->phase_running = true;
	j->proc = p;
	/* Recorded like an instance, so that a daemon killed mid-build has the
	 * next start stop what it left (supervisor_cleanup_leftovers). */
	char *id = xasprintf("%s.%s", j->app, stream == SUPERVISOR_STREAM_BUILD ? "build" : "release");
	struct store_proc sp = {.instance = id, .pid = p->proc.pid, .start_ticks = proc_start_ticks(p->proc.pid)};
	store_proc_put(d->cfg.store, &sp);
	free(id);
	uv_read_start((uv_stream_t *)&p->pipes[0], proc_alloc, proc_read);
	uv_read_start((uv_stream_t *)&p->pipes[1], proc_alloc, proc_read);
	uv_timer_start(&p->timeout, proc_timeout,
		       (uint64_t)(d->cfg.build_timeout_ms > 0 ? d->cfg.build_timeout_ms : DEFAULT_BUILD_TIMEOUT_MS), 0);
}

static void after_release_phase(struct dp_job *j)
{
	begin_rollout(j);
}

static void release_phase(struct dp_job *j)
{
	struct spec *spec = spec_parse_stored(j->yaml, strlen(j->yaml), j->filename, NULL);
	if (spec && spec->release) {
		phase(j, PH_RELEASING);
		set_status(j, j->version, "releasing", NULL);
		run_phase(j, "release phase", spec->release, SUPERVISOR_STREAM_RELEASE, after_release_phase);
	} else {
		begin_rollout(j);
	}
	spec_free(spec);
}

static void pipeline(struct dp_job *j)
{
	struct spec *spec = spec_parse_stored(j->yaml, strlen(j->yaml), j->filename, NULL);
	j->err_rate = 0.01;
	j->err_factor = j->lat_factor = 2;
	if (spec) {
		j->auto_rollback = true;
		/* The strictest process type decides for the app. */
		for (size_t k = 0; k < spec->n_procs; k++) {
			const struct spec_deploy *dp = &spec->procs[k].deploy;
			j->auto_rollback = j->auto_rollback && dp->auto_rollback;
			if (k == 0 || dp->max_error_rate < j->err_rate)
				j->err_rate = dp->max_error_rate;
			if (k == 0 || dp->max_error_factor < j->err_factor)
				j->err_factor = dp->max_error_factor;
			if (k == 0 || dp->max_latency_factor < j->lat_factor)
				j->lat_factor = dp->max_latency_factor;
		}
	}
	if (spec && spec->build && !j->skip_build) {
		phase(j, PH_BUILDING);
		set_status(j, j->version, "building", NULL);
		run_phase(j, "build", spec->build, SUPERVISOR_STREAM_BUILD, release_phase);
	} else {
		release_phase(j);
	}
	spec_free(spec);
}

/* Stores a new release record for the job and starts its pipeline. */
static int create_release(struct dp_job *j, const char *config, const char *secrets, bool owns_dir,
			  const char *sha, char **err)
{
	int64_t now = time_wall_ms();
	struct store_release r = {
		.app = j->app, .version = j->version, .status = "pending", .spec_yaml = j->yaml,
		.filename = j->filename, .dir = j->dir, .config = config, .secrets = secrets,
		.author = j->author, .message = j->message, .sha256 = sha, .owns_dir = owns_dir,
		.created_at = now, .updated_at = now,
	};
	if (store_release_put(j->d->cfg.store, &r) < 0) {
		*err = xasprintf("cannot save the release: %s", store_errmsg(j->d->cfg.store));
		return -EIO;
	}
	j->has_release = true;
	note(j, "release v%d created%s%s", j->version, j->message ? ": " : "", j->message ? j->message : "");
	char *msg = xasprintf("%s: deploy of v%d started%s%s", j->app, j->version, j->message ? ": " : "",
			      j->message ? j->message : "");
	emit(j, "deploy.started", msg);
	free(msg);
	return 0;
}

/* ---- public entry points ---- */

struct deploy *deploy_new(const struct deploy_config *cfg)
{
	struct deploy *d = xcalloc(1, sizeof(*d));
	d->cfg = *cfg;
	d->data_dir = xstrdup(cfg->data_dir);
	d->cfg.data_dir = d->data_dir;
	d->hooks = webhooks_new(cfg->loop);
	return d;
}

void deploy_free(struct deploy *d)
{
	if (!d)
		return;
	dp_runs_free(d);
	for (size_t k = 0; k < d->n_jobs; k++)
		job_free(d->jobs[k]);
	free(d->jobs);
	for (size_t k = 0; k < d->n_doomed; k++) {
		free(d->doomed[k].app);
		free(d->doomed[k].dir);
	}
	free(d->doomed);
	if (d->reaper)
		uv_close((uv_handle_t *)d->reaper, (uv_close_cb)free);
	webhooks_free(d->hooks);
	free(d->data_dir);
	free(d);
}

/* SIGTERM to the job's build or release phase, SIGKILL after a grace. */
static void phase_stop(struct dp_job *j, const char *why)
{
	struct dp_proc *p = j->proc;
	if (!p || p->interrupted)
		return;
	p->interrupted = true;
	kill(-p->proc.pid, SIGTERM);
	uv_timer_stop(&p->timeout);
	uv_timer_start(&p->timeout, proc_timeout, PHASE_STOP_GRACE_MS, 0);
	note(j, "%s of v%d stopped: %s", p->what, j->version, why);
}

void deploy_stop(struct deploy *d)
{
	d->stopping = true;
	for (size_t k = 0; k < d->n_jobs; k++)
		phase_stop(d->jobs[k], "the daemon is stopping");
	if (d->reaper)
		uv_timer_stop(d->reaper); /* the next start removes what is left */
}

void deploy_recover(struct deploy *d)
{
	store_releases_interrupted(d->cfg.store, time_wall_ms());
	char *root = xasprintf("%s/releases", d->data_dir);
	DIR *apps = opendir(root);
	struct dirent *a;
	while (apps && (a = readdir(apps))) {
		if (str_starts_with(a->d_name, DESTROYED_PREFIX)) {
			char *t = xasprintf("%s/%s", root, a->d_name);
			paths_remove_tree(t);
			log_info("removed the releases of a destroyed app: %s", t);
			free(t);
			continue;
		}
		if (a->d_name[0] == '.')
			continue;
		char *adir = xasprintf("%s/%s", root, a->d_name);
		DIR *vs = opendir(adir);
		struct dirent *v;
		while (vs && (v = readdir(vs))) {
			if (str_ends_with(v->d_name, ".tmp")) {
				char *t = xasprintf("%s/%s", adir, v->d_name);
				paths_remove_tree(t);
				log_info("removed a half unpacked release: %s", t);
				free(t);
			}
		}
		if (vs)
			closedir(vs);
		free(adir);
	}
	if (apps)
		closedir(apps);
	free(root);
}

int deploy_apply(struct deploy *d, const char *yaml, const char *filename, const char *dir,
		 const struct deploy_who *who, struct json **out, char **err)
{
	char *perr = NULL;
	struct spec *spec = spec_parse(yaml, strlen(yaml), filename, &perr);
	if (!spec) {
		*err = perr;
		return -EINVAL;
	}
	/* A server directory is used as it is: the run-as user must be able to
	 * read it, or app code would reach through the daemon's own entry
	 * (the working directory is entered before the user is taken on) what
	 * the user itself cannot. */
	const struct runas *ra = supervisor_run_as(d->cfg.sv);
	char *bad = NULL;
	if (ra && runas_reach(ra, dir, R_OK | X_OK, &bad) < 0) {
		*err = xasprintf("user '%s', which app code runs as, cannot read '%s': make it readable and "
				 "searchable by that user, or deploy by upload",
				 ra->user, bad);
		free(bad);
		spec_free(spec);
		return -EINVAL;
	}
	free(bad);
	char *app = xstrdup(spec->app);
	spec_free(spec);
	if (busy(d, app)) {
		*err = xasprintf("app '%s' is already deploying; wait for it (paasops deploy status %s)", app, app);
		free(app);
		return -EBUSY;
	}
	int version = store_release_next_version(d->cfg.store, app);
	if (version < 0) {
		*err = xasprintf("cannot number the release: %s", store_errmsg(d->cfg.store));
		free(app);
		return -EIO;
	}
	int live = dp_live_version(d, app);
	struct rel_copy cur = {0};
	if (live)
		store_release_get(d->cfg.store, app, live, dp_copy_release, &cur);
	struct dp_job *j = job_new(d, app, who);
	j->version = version;
	j->from = live;
	j->yaml = xstrdup(yaml);
	j->filename = xstrdup(filename);
	j->dir = xstrdup(dir);
	int rc = create_release(j, cur.found ? cur.config : "{}", cur.found ? cur.secrets : "[]", false, NULL, err);
	dp_rel_copy_release(&cur);
	if (rc < 0) {
		job_finish(j, "failed", *err);
		free(app);
		return rc;
	}
	bool created = !supervisor_has_app(d->cfg.sv, app);
	pipeline(j);
	if (j->rollout_rc < 0) {
		/* Refused at once (a route of another app): nothing changed. */
		*err = xstrdup(j->reason ? j->reason : "rollout refused");
		free(app);
		return j->rollout_rc;
	}
	struct json *o = supervisor_app_json(d->cfg.sv, app, false);
	if (!o) {
		o = json_object();
		json_set_str(o, "name", app);
	}
	json_set_bool(o, "created", created);
	json_set_int(o, "release", version);
	json_set(o, "deploy", job_json(j));
	*out = o;
	free(app);
	return 0;
}

/* s with every occurrence of from replaced by to; caller frees. */
static char *str_replace_all(const char *s, const char *from, const char *to)
{
	struct strbuf sb;
	strbuf_init(&sb, strlen(s) + 1);
	size_t n = strlen(from);
	for (const char *p; n && (p = strstr(s, from)); s = p + n) {
		strbuf_add(&sb, s, (size_t)(p - s));
		strbuf_add(&sb, to, strlen(to));
	}
	strbuf_add(&sb, s, strlen(s));
	return strbuf_detach(&sb, NULL);
}

/* Extraction, off the loop. */
static void extract_work(uv_work_t *w)
{
	struct dp_job *j = w->data;
	char sha[CRYPTO_SHA256_HEX];
	if (crypto_sha256_file(j->archive, sha) < 0) {
		j->work_status = 400;
		j->work_err = xstrdup("cannot read the uploaded archive");
		return;
	}
	j->sha = xstrdup(sha);
	if (j->sha_expected && strcasecmp(j->sha_expected, sha) != 0) {
		j->work_status = 400;
		j->work_err = xasprintf("the archive's SHA-256 is %s, not %s as announced: the upload was damaged",
					sha, j->sha_expected);
		return;
	}
	struct archive_limits lim = {ARCHIVE_MAX_BYTES, ARCHIVE_MAX_FILES};
	char *err = NULL;
	if (archive_extract_safe(j->archive, j->tmpdir, &lim, &err) < 0) {
		j->work_status = 400;
		j->work_err = err;
		return;
	}
	char *spec_path = xasprintf("%s/%s", j->tmpdir, j->spec_name);
	struct spec *spec = spec_parse_file(spec_path, &err);
	if (!spec) {
		/* The spec as the archive names it: the server's paths are
		 * nobody else's business. */
		j->work_status = 422;
		j->work_err = str_replace_all(err ? err : "cannot read the spec", spec_path, j->spec_name);
		free(err);
		free(spec_path);
		return;
	}
	free(spec_path);
	if (strcmp(spec->app, j->app) != 0) {
		j->work_status = 422;
		j->work_err = xasprintf("%s: the spec is for app '%s', not '%s'", j->spec_name, spec->app, j->app);
		spec_free(spec);
		return;
	}
	spec_free(spec);
	/* The tree as unpacked is the run-as user's: its build writes there,
	 * its instances run there. */
	const struct runas *ra = supervisor_run_as(j->d->cfg.sv);
	int rc = ra ? runas_chown_tree(ra, j->tmpdir) : 0;
	if (rc < 0) {
		j->work_status = 500;
		j->work_err = xasprintf("cannot give the release to user '%s': %s", ra->user, strerror(-rc));
		return;
	}
	char *yaml_path = xasprintf("%s/%s", j->tmpdir, j->spec_name);
	FILE *f = fopen(yaml_path, "re");
	free(yaml_path);
	struct strbuf sb;
	strbuf_init(&sb, 4096);
	char buf[8192];
	size_t n;
	while (f && (n = fread(buf, 1, sizeof(buf), f)) > 0)
		strbuf_add(&sb, buf, n);
	if (f)
		fclose(f);
	j->yaml = strbuf_detach(&sb, NULL);
	j->work_status = 0;
}

static void reply_error(struct dp_job *j, int status, const char *msg)
{
	struct json *o = json_object();
	struct json *e = json_set(o, "error", json_object());
	json_set_str(e, "code", status == 422 ? "invalid_spec" : status == 409 ? "conflict" :
				status == 507 ? "insufficient_storage" : status == 500 ? "internal" : "bad_request");
	if (status == 422) {
		json_set_str(e, "message", "the release's spec has errors");
		struct json *details = json_set(e, "details", json_array());
		char *copy = xstrdup(msg), *save = NULL;
		for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			json_append(details, json_string(line));
		free(copy);
	} else {
		json_set_str(e, "message", msg);
	}
	j->reply(j->reply_ctx, status, o);
}

/* Removes the app's releases/ directory when nothing is left in it. */
static void remove_empty_app_dir(struct deploy *d, const char *app)
{
	char *adir = xasprintf("%s/releases/%s", d->data_dir, app);
	rmdir(adir);
	free(adir);
}

/* A refused upload: nothing of it stays. dir (may be NULL) is removed too. */
static void extract_refuse(struct dp_job *j, const char *dir, int status, const char *why)
{
	paths_remove_tree(j->tmpdir);
	if (dir)
		paths_remove_tree(dir);
	if (!j->destroyed)
		remove_empty_app_dir(j->d, j->app);
	reply_error(j, status, why);
	job_finish(j, "failed", why);
}

static void extract_done(uv_work_t *w, int status)
{
	struct dp_job *j = w->data;
	unlink(j->archive);
	if (j->destroyed) {
		char *why = xasprintf("app '%s' was destroyed during the upload", j->app);
		extract_refuse(j, NULL, 409, why);
		free(why);
		return;
	}
	if (j->work_status) {
		extract_refuse(j, NULL, j->work_status, j->work_err);
		return;
	}
	/* A route another app has is refused before a release is made. */
	struct spec *spec = spec_parse(j->yaml, strlen(j->yaml), j->spec_name, NULL);
	char *conflict = spec ? supervisor_route_conflict(j->d->cfg.sv, spec, j->scope, j->n_scope) : NULL;
	spec_free(spec);
	if (conflict) {
		extract_refuse(j, NULL, 409, conflict);
		free(conflict);
		return;
	}
	char *final = xstrndup(j->tmpdir, strlen(j->tmpdir) - 4); /* drop ".tmp" */
	int rc = rename(j->tmpdir, final);
	if (rc < 0 && (errno == ENOTEMPTY || errno == EEXIST)) {
		/* Left by an app of that name destroyed long ago: no release
		 * record has this version, so nothing uses the directory. */
		log_warn("app '%s': replacing %s, which no release uses", j->app, final);
		paths_remove_tree(final);
		rc = rename(j->tmpdir, final);
	}
	if (rc < 0) {
		char *why = xasprintf("cannot move the release into place: %s", strerror(errno));
		log_error("app '%s': %s", j->app, why);
		extract_refuse(j, NULL, 500, why);
		free(why);
		free(final);
		return;
	}
	j->dir = final;
	j->filename = xstrdup(j->spec_name);
	int live = dp_live_version(j->d, j->app);
	j->from = live;
	struct rel_copy cur = {0};
	if (live)
		store_release_get(j->d->cfg.store, j->app, live, dp_copy_release, &cur);
	char *err = NULL;
	rc = create_release(j, cur.found ? cur.config : "{}", cur.found ? cur.secrets : "[]", true, j->sha, &err);
	dp_rel_copy_release(&cur);
	if (rc < 0) {
		reply_error(j, 500, err);
		job_finish(j, "failed", err);
		free(err);
		return;
	}
	struct json *o = deploy_release_json(j->d, j->app, j->version);
	if (!o)
		o = json_object();
	json_set(o, "deploy", job_json(j));
	j->reply(j->reply_ctx, 202, o);
	pipeline(j);
}

void deploy_archive(struct deploy *d, const char *app, const char *archive_path,
		    const char *spec_name, const char *sha256, const struct deploy_who *who,
		    deploy_reply_cb reply, void *ctx)
{
	struct json *o = json_object();
	struct json *e = json_set(o, "error", json_object());
	if (busy(d, app)) {
		json_set_str(e, "code", "conflict");
		char *msg = xasprintf("app '%s' is already deploying; wait for it (paasops deploy status %s)", app, app);
		json_set_str(e, "message", msg);
		free(msg);
		unlink(archive_path);
		reply(ctx, 409, o);
		return;
	}
	struct stat st;
	long long free_bytes = paths_free_bytes(d->data_dir);
	if (stat(archive_path, &st) == 0 && free_bytes >= 0 &&
	    free_bytes < (long long)st.st_size * 4 + 64LL * 1024 * 1024) {
		json_set_str(e, "code", "insufficient_storage");
		char *msg = xasprintf("not enough disk space in '%s' for this release (%lld bytes free, archive %lld bytes)",
				      d->data_dir, free_bytes, (long long)st.st_size);
		json_set_str(e, "message", msg);
		free(msg);
		unlink(archive_path);
		reply(ctx, 507, o);
		return;
	}
	json_free(o);
	if (spec_name && (spec_name[0] == '/' || strstr(spec_name, ".."))) {
		o = json_object();
		e = json_set(o, "error", json_object());
		json_set_str(e, "code", "bad_request");
		json_set_str(e, "message", "the spec path must be relative to the archive, without '..'");
		unlink(archive_path);
		reply(ctx, 400, o);
		return;
	}
	int version = store_release_next_version(d->cfg.store, app);
	struct dp_job *j = job_new(d, app, who);
	j->version = version;
	j->phase = PH_EXTRACTING;
	j->archive = xstrdup(archive_path);
	j->spec_name = xstrdup(spec_name ? spec_name : "paasops.yaml");
	j->sha_expected = sha256 && *sha256 ? xstrdup(sha256) : NULL;
	j->reply = reply;
	j->reply_ctx = ctx;
	char *adir = xasprintf("%s/releases/%s", d->data_dir, app);
	paths_mkdir_p(adir, 0711); /* searchable: the run-as user reaches its release by name */
	j->tmpdir = xasprintf("%s/v%d.tmp", adir, version);
	free(adir);
	paths_remove_tree(j->tmpdir);
	mkdir(j->tmpdir, 0755); /* given to the run-as user once unpacked */
	j->work.data = j;
	uv_queue_work(d->cfg.loop, &j->work, extract_work, extract_done);
}

bool deploy_config_name_reserved(const char *name)
{
	return str_eq(name, "PORT") || str_eq(name, "HOST") ||
	       (str_starts_with(name, "PAASOPS_") && !str_starts_with(name, "PAASOPS_WEBHOOK_"));
}

/* What is wrong with a config var's name (a message the caller frees), or
 * NULL. reserved_ok: a name the daemon sets is fine (unsetting one). */
static char *config_name_problem(const char *k, bool reserved_ok)
{
	if (!k)
		return xstrdup("config names must be strings");
	bool ok = *k && (isalpha((unsigned char)*k) || *k == '_');
	for (const char *p = k; ok && *p; p++)
		ok = isalnum((unsigned char)*p) || *p == '_';
	if (!ok)
		return xasprintf("invalid config name '%s': use letters, digits and '_', not starting with a digit", k);
	if (strlen(k) > DEPLOY_CONFIG_NAME_MAX)
		return xasprintf("invalid config name '%.40s…': longer than %d characters", k, DEPLOY_CONFIG_NAME_MAX);
	if (!reserved_ok && deploy_config_name_reserved(k))
		return xasprintf("config name '%s' is reserved: paasops sets PORT, HOST and PAASOPS_* itself", k);
	return NULL;
}

int deploy_config_change(struct deploy *d, const char *app, const struct json *set,
			 const struct json *secret, const struct json *unset,
			 const struct deploy_who *who, struct json **out, char **err)
{
	int live = dp_live_version(d, app);
	if (!supervisor_has_app(d->cfg.sv, app) || !live) {
		*err = xasprintf("app '%s' not found", app);
		return -ENOENT;
	}
	/* Check everything before changing anything. */
	if (set && !json_is_object(set)) {
		*err = xstrdup("'set' must be an object of NAME: \"value\"");
		return -EINVAL;
	}
	for (struct json *e = json_first(set); e; e = json_next(e)) {
		char *bad = config_name_problem(json_key(e), false);
		if (bad) {
			*err = bad;
			return -EINVAL;
		}
		if (!json_str(e)) {
			*err = xasprintf("the value of '%s' must be a string", json_key(e));
			return -EINVAL;
		}
		if (strlen(json_str(e)) > 65536) {
			*err = xasprintf("the value of '%s' is longer than 64 KiB", json_key(e));
			return -EINVAL;
		}
	}
	const struct json *lists[2] = {secret, unset};
	for (int k = 0; k < 2; k++) {
		if (lists[k] && !json_is_array(lists[k])) {
			*err = xstrdup("'secret' and 'unset' must be arrays of names");
			return -EINVAL;
		}
		for (struct json *e = json_first(lists[k]); e; e = json_next(e)) {
			char *bad = config_name_problem(json_str(e), k == 1);
			if (bad) {
				*err = bad;
				return -EINVAL;
			}
		}
	}
	if (!json_size(set) && !json_size(unset) && !json_size(secret)) {
		*err = xstrdup("nothing to change: give 'set', 'secret' or 'unset'");
		return -EINVAL;
	}
	struct rel_copy cur = {0};
	store_release_get(d->cfg.store, app, live, dp_copy_release, &cur);
	if (!cur.found) {
		*err = xasprintf("app '%s' has no live release", app);
		return -ENOENT;
	}
	struct json *cfg = json_parse(cur.config, strlen(cur.config), NULL);
	struct json *sec = json_parse(cur.secrets, strlen(cur.secrets), NULL);
	if (!cfg)
		cfg = json_object();
	if (!sec)
		sec = json_array();
	char *bad = NULL;
	int bad_rc = -EINVAL;
	for (struct json *e = json_first(unset); e && !bad; e = json_next(e))
		if (!json_get(cfg, json_str(e))) {
			bad = xasprintf("config var '%s' is not set", json_str(e));
			bad_rc = -ENOENT;
		}
	/* secret marks names being set or already set (and not unset now). */
	bool marks_new = false;
	for (struct json *e = json_first(secret); e && !bad; e = json_next(e)) {
		const char *n = json_str(e);
		bool unsetting = false;
		for (struct json *u = json_first(unset); u; u = json_next(u))
			unsetting = unsetting || str_eq(json_str(u), n);
		if (unsetting || (!json_get(set, n) && !json_get(cfg, n))) {
			bad = xasprintf("cannot mark '%s' secret: it is not set (give its value in 'set')", n);
			break;
		}
		bool was = false;
		for (struct json *s2 = json_first(sec); s2; s2 = json_next(s2))
			was = was || str_eq(json_str(s2), n);
		marks_new = marks_new || !was;
	}
	if (!bad && !json_size(set) && !json_size(unset) && !marks_new)
		bad = xstrdup("nothing to change: every name given is secret already");
	if (!bad && busy(d, app)) {
		bad = xasprintf("app '%s' is already deploying; wait for it", app);
		bad_rc = -EBUSY;
	}
	if (bad) {
		*err = bad;
		json_free(cfg);
		json_free(sec);
		dp_rel_copy_release(&cur);
		return bad_rc;
	}
	for (struct json *e = json_first(unset); e; e = json_next(e))
		json_remove(cfg, json_str(e));
	for (struct json *e = json_first(set); e; e = json_next(e)) {
		json_remove(cfg, json_key(e));
		json_set_str(cfg, json_key(e), json_str(e));
	}
	/* Secrets: names marked now, plus earlier ones still set. */
	struct json *nsec = json_array();
	for (struct json *e = json_first(sec); e; e = json_next(e))
		if (json_get(cfg, json_str(e)))
			json_append(nsec, json_string(json_str(e)));
	for (struct json *e = json_first(secret); e; e = json_next(e)) {
		bool have = false;
		for (struct json *s = json_first(nsec); s; s = json_next(s))
			have = have || str_eq(json_str(s), json_str(e));
		if (!have && json_get(cfg, json_str(e)))
			json_append(nsec, json_string(json_str(e)));
	}
	char *cfg_text = json_print(cfg, false), *sec_text = json_print(nsec, false);
	json_free(cfg);
	json_free(sec);
	json_free(nsec);
	struct dp_job *j = job_new(d, app, who);
	j->version = store_release_next_version(d->cfg.store, app);
	j->from = live;
	j->yaml = xstrdup(cur.yaml);
	j->filename = xstrdup(cur.filename);
	j->dir = xstrdup(cur.dir);
	j->skip_build = true;
	if (!j->message)
		j->message = xstrdup("config change");
	dp_rel_copy_release(&cur);
	int rc = create_release(j, cfg_text, sec_text, false, NULL, err);
	free(cfg_text);
	free(sec_text);
	if (rc < 0) {
		job_finish(j, "failed", *err);
		return rc;
	}
	pipeline(j);
	*out = deploy_release_json(d, app, j->version);
	if (*out)
		json_set(*out, "deploy", job_json(j));
	return 0;
}

struct json *deploy_config_json(struct deploy *d, const char *app)
{
	int live = dp_live_version(d, app);
	if (!live)
		return NULL;
	struct json *r = deploy_release_json(d, app, live);
	if (!r)
		return NULL;
	struct json *o = json_object();
	json_set_str(o, "app", app);
	json_set_int(o, "release", live);
	struct json *cfg = json_get(r, "config");
	json_set(o, "config", cfg ? json_dup(cfg) : json_object());
	json_free(r);
	return o;
}

static void live_release_json(void *ctx, const struct store_release *r)
{
	struct json *o = json_object();
	json_set_int(o, "version", r->version);
	json_set_str(o, "spec_yaml", r->spec_yaml);
	json_set_str(o, "filename", r->filename ? r->filename : "paasops.yaml");
	json_set_str(o, "dir", r->dir);
	struct json *cfg = json_parse(r->config ? r->config : "{}", strlen(r->config ? r->config : "{}"), NULL);
	struct json *sec = r->secrets ? json_parse(r->secrets, strlen(r->secrets), NULL) : NULL;
	struct json *plain = json_set(o, "config", json_object());
	struct json *names = json_set(o, "secrets", json_array());
	for (struct json *e = json_first(cfg); e; e = json_next(e)) {
		bool secret = false;
		for (struct json *n = json_first(sec); n; n = json_next(n))
			secret = secret || str_eq(json_str(n), json_key(e));
		if (secret)
			json_append(names, json_string(json_key(e)));
		else
			json_set_str(plain, json_key(e), json_str(e));
	}
	json_free(cfg);
	json_free(sec);
	*(struct json **)ctx = o;
}

struct json *deploy_live_release_json(struct deploy *d, const char *app)
{
	int live = dp_live_version(d, app);
	struct json *o = NULL;
	if (live)
		store_release_get(d->cfg.store, app, live, live_release_json, &o);
	return o;
}

struct prev_find {
	int below;
	int found;
};

/* Whether a release was ever live: active now, replaced by a newer deploy,
 * or rolled back from by request. A release an automatic rollback left is
 * "failed" (records from before that say "rolled-back" with the failure
 * as their reason). */
static bool was_live(const char *status, const char *reason)
{
	return str_eq(status, "active") || str_eq(status, "superseded") ||
	       (str_eq(status, "rolled-back") && str_eq(reason, ROLLED_BACK_BY_REQUEST));
}

static void find_prev(void *ctx, const struct store_release *r)
{
	struct prev_find *p = ctx;
	struct stat st;
	if (p->found || r->version >= p->below)
		return;
	if (was_live(r->status, r->reason) && stat(r->dir, &st) == 0)
		p->found = r->version;
}

struct live_check {
	bool found, live;
	char *status;
};

static void check_live(void *ctx, const struct store_release *r)
{
	struct live_check *c = ctx;
	c->found = true;
	c->live = was_live(r->status, r->reason);
	c->status = xstrdup(r->status);
}

int deploy_rollback(struct deploy *d, const char *app, int version, const struct deploy_who *who,
		    struct json **out, char **err)
{
	int live = dp_live_version(d, app);
	if (!supervisor_has_app(d->cfg.sv, app) || !live) {
		*err = xasprintf("app '%s' not found", app);
		return -ENOENT;
	}
	if (busy(d, app)) {
		*err = xasprintf("app '%s' is already deploying; wait for it", app);
		return -EBUSY;
	}
	if (version == 0) {
		struct prev_find p = {live, 0};
		store_releases_each(d->cfg.store, app, find_prev, &p);
		if (!p.found) {
			*err = xasprintf("app '%s' has no earlier release to roll back to", app);
			return -ENOENT;
		}
		version = p.found;
	}
	if (version == live) {
		*err = xasprintf("v%d is already live", version);
		return -EINVAL;
	}
	struct rel_copy r = {0};
	store_release_get(d->cfg.store, app, version, dp_copy_release, &r);
	struct stat st;
	if (!r.found) {
		*err = xasprintf("app '%s' has no release v%d", app, version);
		return -ENOENT;
	}
	struct live_check lc = {0};
	store_release_get(d->cfg.store, app, version, check_live, &lc);
	if (!lc.live) {
		*err = xasprintf("v%d never went live (its status is '%s'): only a release that was live "
				 "can be rolled back to",
				 version, lc.status ? lc.status : "unknown");
		free(lc.status);
		dp_rel_copy_release(&r);
		return -EEXIST;
	}
	free(lc.status);
	if (stat(r.dir, &st) < 0) {
		*err = xasprintf("the artifact of v%d was removed (only the newest releases keep theirs)", version);
		dp_rel_copy_release(&r);
		return -EEXIST;
	}
	struct dp_job *j = job_new(d, app, who);
	j->version = version;
	j->from = live;
	j->yaml = xstrdup(r.yaml);
	j->filename = xstrdup(r.filename);
	j->dir = xstrdup(r.dir);
	j->auto_rollback = false;
	j->is_rollback = true;
	j->has_release = true; /* the release it goes back to */
	dp_rel_copy_release(&r);
	note(j, "rollback from v%d to v%d requested", live, version);
	j->phase = PH_ROLLING_OUT;
	struct rel_copy again = {0};
	store_release_get(d->cfg.store, app, version, dp_copy_release, &again);
	int rc = roll_to(j, &again, err);
	dp_rel_copy_release(&again);
	if (rc < 0) {
		job_finish(j, "failed", *err);
		return rc;
	}
	/* The release left behind becomes "rolled-back" once the rollout is done. */
	*out = deploy_release_json(d, app, version);
	if (*out)
		json_set(*out, "deploy", job_json(j));
	return 0;
}

/* ---- destroying an app ---- */

/* Whether anything may still use the app's old release directory: one of
 * its instances (stopping), or a deploy's process or extraction. */
static bool app_dir_in_use(struct deploy *d, const char *app)
{
	struct dp_job *j = job_find(d, app);
	if (j && !j->result && (j->proc || j->phase == PH_EXTRACTING))
		return true;
	struct json *insts = supervisor_instances_json(d->cfg.sv, NULL);
	bool used = false;
	for (struct json *e = json_first(insts); e && !used; e = json_next(e))
		used = str_eq(json_get_str(e, "app"), app);
	json_free(insts);
	return used;
}

static void reap(uv_timer_t *t)
{
	struct deploy *d = t->data;
	int64_t now = time_wall_ms();
	for (size_t k = 0; k < d->n_doomed;) {
		struct dp_doomed *x = &d->doomed[k];
		/* A new app of that name never runs in the renamed directory:
		 * after long enough, its instances do not hold it up. */
		if (app_dir_in_use(d, x->app) && now - x->since < REAPER_MAX_WAIT_MS) {
			k++;
			continue;
		}
		paths_remove_tree(x->dir);
		log_info("app '%s': removed its releases (%s)", x->app, x->dir);
		free(x->app);
		free(x->dir);
		d->doomed[k] = d->doomed[--d->n_doomed];
	}
	if (!d->n_doomed)
		uv_timer_stop(t);
}

/* Moves DATA/releases/APP out of the way (the name is free for a new app at
 * once) and removes it once nothing uses it. */
static void doom_app_dir(struct deploy *d, const char *app)
{
	char *adir = xasprintf("%s/releases/%s", d->data_dir, app);
	struct stat st;
	if (lstat(adir, &st) < 0) {
		free(adir);
		return;
	}
	char *dest = xasprintf("%s/releases/" DESTROYED_PREFIX "%s.%lld.%u", d->data_dir, app,
			       (long long)time_wall_ms(), ++d->doomed_seq);
	if (rename(adir, dest) < 0) {
		log_warn("app '%s': cannot move %s away: %s", app, adir, strerror(errno));
		free(dest);
		free(adir);
		return;
	}
	free(adir);
	d->doomed = xgrow(d->doomed, sizeof(*d->doomed), d->n_doomed + 1, &d->alloc_doomed);
	d->doomed[d->n_doomed++] = (struct dp_doomed){xstrdup(app), dest, time_wall_ms()};
	if (!d->reaper) {
		d->reaper = xcalloc(1, sizeof(*d->reaper));
		uv_timer_init(d->cfg.loop, d->reaper);
		d->reaper->data = d;
		uv_unref((uv_handle_t *)d->reaper); /* a stopping daemon does not wait for it */
	}
	uv_timer_start(d->reaper, reap, 0, REAPER_TICK_MS);
}

static void count_release(void *ctx, const struct store_release *r)
{
	(*(int *)ctx)++;
}

int deploy_destroy(struct deploy *d, const char *app, char **err)
{
	struct dp_job *j = job_find(d, app);
	bool deploying = j && !j->result;
	int n_releases = 0;
	store_releases_each(d->cfg.store, app, count_release, &n_releases);
	if (supervisor_has_app(d->cfg.sv, app)) {
		int rc = supervisor_destroy(d->cfg.sv, app, err);
		if (rc < 0)
			return rc;
	} else if (n_releases || deploying) {
		/* Its first deploy failed or still runs: only records to forget. */
		if (store_app_delete(d->cfg.store, app) < 0) {
			*err = xasprintf("cannot delete app '%s': %s", app, store_errmsg(d->cfg.store));
			return -EIO;
		}
		log_info("app '%s' destroyed (it never went live)", app);
	} else {
		*err = xasprintf("app '%s' not found", app);
		return -ENOENT;
	}
	if (deploying) {
		j->destroyed = true;
		phase_stop(j, "the app was destroyed");
	}
	doom_app_dir(d, app);
	return 0;
}

int deploy_promote(struct deploy *d, const char *app, char **err)
{
	return supervisor_rollout_promote(d->cfg.sv, app, err);
}

static struct json *job_json(struct dp_job *j)
{
	struct json *o = json_object();
	json_set_str(o, "app", j->app);
	if (j->has_release)
		json_set_int(o, "version", j->version);
	else
		json_set(o, "version", json_null());
	json_set_int(o, "from", j->from);
	json_set_str(o, "phase", phase_names[j->phase]);
	json_set_str(o, "result", j->result);
	json_set_str(o, "reason", j->reason);
	char ts[40];
	time_format_iso(j->started, ts, sizeof(ts));
	json_set_str(o, "started_at", ts);
	if (j->finished) {
		time_format_iso(j->finished, ts, sizeof(ts));
		json_set_str(o, "finished_at", ts);
	} else {
		json_set_str(o, "finished_at", NULL);
	}
	if (j->phase == PH_ROLLING_OUT || j->phase == PH_ROLLING_BACK) {
		struct json *st = supervisor_rollout_json(j->d->cfg.sv, j->app);
		if (st)
			json_set(o, "rollout", st);
	}
	if (j->n_req || j->o_req) {
		struct json *a = json_set(o, "analysis", json_object());
		json_set_int(a, "new_requests", (int64_t)j->n_req);
		json_set_int(a, "new_5xx", (int64_t)j->n_err);
		json_set_int(a, "old_requests", (int64_t)j->o_req);
		json_set_int(a, "old_5xx", (int64_t)j->o_err);
	}
	return o;
}

struct json *deploy_status_json(struct deploy *d, const char *app)
{
	struct dp_job *j = job_find(d, app);
	if (j)
		return job_json(j);
	if (!supervisor_has_app(d->cfg.sv, app))
		return NULL;
	struct json *o = json_object();
	json_set_str(o, "app", app);
	json_set_int(o, "version", dp_live_version(d, app));
	json_set_str(o, "phase", "done");
	json_set_str(o, "result", "succeeded");
	return o;
}

static const char *const phase_events[] = {"deploy.extracting", "deploy.building", "deploy.releasing",
					   "deploy.rolling_out", "deploy.rolling_back", "deploy.done"};

static void phase(struct dp_job *j, enum dp_phase ph)
{
	j->phase = ph;
	char *msg = xasprintf("%s: v%d %s", j->app, j->version, phase_names[ph]);
	emit(j, phase_events[ph], msg);
	free(msg);
}

struct json *deploy_webhooks_json(struct deploy *d)
{
	return webhooks_stats_json(d->hooks);
}
