/* supervisor.c: the app → process type → slot tree, desired state changes
 * (apply, scale, restart, stop/start, destroy), reconciling slots to desired
 * counts, recovery after a daemon restart, and JSON views. The life of one
 * slot is in supervisor_inst.c. */
#include "compat/crypto.h"
#include "compat/json.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "spec/spec.h"
#include "store/store.h"
#include "supervisor/supervisor_internal.h"
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- lookups ---- */

/* Apps are kept in name order (see new_app), so a binary search finds the
 * first of that name; a destroyed app may still sit beside its successor. */
static struct sv_app *find_app(const struct supervisor *sv, const char *name)
{
	size_t lo = 0, hi = sv->n_apps;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(sv->apps[mid]->name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t k = lo; k < sv->n_apps && strcmp(sv->apps[k]->name, name) == 0; k++)
		if (!sv->apps[k]->destroying)
			return sv->apps[k];
	return NULL;
}

static struct sv_proc *find_proc(const struct sv_app *a, const char *name)
{
	for (size_t k = 0; k < a->n_procs; k++)
		if (!a->procs[k]->removed && strcmp(a->procs[k]->name, name) == 0)
			return a->procs[k];
	return NULL;
}

static struct sv_inst *find_inst(const struct sv_app *a, const char *id)
{
	for (size_t k = 0; k < a->n_procs; k++)
		for (size_t j = 0; j < a->procs[k]->n_insts; j++)
			if (strcmp(a->procs[k]->insts[j]->id, id) == 0)
				return a->procs[k]->insts[j];
	return NULL;
}

static struct sv_app *need_app(struct supervisor *sv, const char *name, char **err)
{
	struct sv_app *a = find_app(sv, name);
	if (!a)
		*err = xasprintf("app '%s' not found", name);
	return a;
}

/* ---- lifecycle of the tree ---- */

struct supervisor *supervisor_new(const struct supervisor_config *cfg)
{
	struct supervisor *sv = xcalloc(1, sizeof(*sv));
	sv->loop = cfg->loop;
	sv->store = cfg->store;
	if (cfg->hooks)
		sv->hooks = *cfg->hooks;
	sv->hooks_ctx = cfg->hooks_ctx;
	sv->data_dir = xstrdup(cfg->data_dir);
	sv->port_min = cfg->port_min;
	sv->port_max = cfg->port_max;
	sv->run_as = cfg->run_as;
	sv->port_used = xcalloc((size_t)(cfg->port_max - cfg->port_min + 1), 1);
	char hash[CRYPTO_SHA256_HEX];
	crypto_sha256_hex(cfg->data_dir, strlen(cfg->data_dir), hash);
	hash[12] = '\0';
	cgroup_sys_init(&sv->cgroups, hash);
	sv->gc = xcalloc(1, sizeof(*sv->gc));
	uv_timer_init(sv->loop, sv->gc);
	sv->gc->data = sv;
	if (sv->cgroups.mode == CGROUP_NONE)
		log_warn("resource limits will not be enforced: %s", sv->cgroups.why);
	else
		log_info("resource limits through cgroup %s", sv->cgroups.mode == CGROUP_V2 ? "v2" : "v1");
	return sv;
}

static void free_proc(struct sv_proc *p)
{
	free(p->insts);
	free(p->name);
	free(p->fingerprint);
	free(p);
}

static void free_app(struct sv_app *a)
{
	for (size_t k = 0; k < a->n_procs; k++)
		free_proc(a->procs[k]);
	free(a->procs);
	sv_release_unref(a->rel);
	sv_rollout_free(a->rollout);
	if (a->t_rollout)
		uv_close((uv_handle_t *)a->t_rollout, (uv_close_cb)free);
	sv_ring_release(&a->ring);
	free(a->name);
	free(a);
}

void supervisor_free(struct supervisor *sv)
{
	if (!sv)
		return;
	for (size_t k = 0; k < sv->n_apps; k++) {
		struct sv_app *a = sv->apps[k];
		for (size_t j = 0; j < a->n_procs; j++)
			while (a->procs[j]->n_insts)
				sv_inst_teardown(a->procs[j]->insts[0]);
	}
	/* Teardown closes handles; the loop must run once more to free slots. */
	uv_close((uv_handle_t *)sv->gc, (uv_close_cb)free);
	uv_run(sv->loop, UV_RUN_NOWAIT);
	for (size_t k = 0; k < sv->n_apps; k++)
		free_app(sv->apps[k]);
	free(sv->apps);
	cgroup_sys_release(&sv->cgroups);
	for (size_t k = 0; k < sv->n_statfds; k++)
		if (sv->statfds[k].fd >= 0)
			close(sv->statfds[k].fd);
	free(sv->statfds);
	free(sv->port_used);
	free(sv->data_dir);
	free(sv);
}

static void notify_changed(struct supervisor *sv)
{
	if (sv->hooks.changed)
		sv->hooks.changed(sv->hooks_ctx);
}

static void remove_app(struct supervisor *sv, struct sv_app *a)
{
	for (size_t k = 0; k < sv->n_apps; k++) {
		if (sv->apps[k] == a) {
			memmove(&sv->apps[k], &sv->apps[k + 1], (sv->n_apps - k - 1) * sizeof(*sv->apps));
			sv->n_apps--;
			break;
		}
	}
	free_app(a);
}

/* Frees removed process types and destroyed apps that have no slots left.
 * Runs from its own timer, never inside an operation that may still hold
 * pointers to them. */
static void collect_garbage(uv_timer_t *t)
{
	struct supervisor *sv = t->data;
	for (size_t k = 0; k < sv->n_apps;) {
		struct sv_app *a = sv->apps[k];
		for (size_t j = 0; j < a->n_procs;) {
			struct sv_proc *p = a->procs[j];
			if ((p->removed || a->destroying) && p->n_insts == 0) {
				memmove(&a->procs[j], &a->procs[j + 1], (a->n_procs - j - 1) * sizeof(*a->procs));
				a->n_procs--;
				free_proc(p);
				continue;
			}
			j++;
		}
		if (a->destroying && a->n_procs == 0) {
			remove_app(sv, a);
			continue;
		}
		k++;
	}
}

void sv_proc_slot_gone(struct sv_proc *p)
{
	struct supervisor *sv = p->app->sv;
	if ((p->removed || p->app->destroying) && p->n_insts == 0 && sv->gc)
		uv_timer_start(sv->gc, collect_garbage, 0, 0);
}

static struct sv_app *new_app(struct supervisor *sv, const char *name)
{
	struct sv_app *a = xcalloc(1, sizeof(*a));
	a->sv = sv;
	a->name = xstrdup(name);
	/* Kept in name order, the order they load in after a restart, so
	 * listings do not change order when the daemon restarts. */
	sv->apps = xgrow(sv->apps, sizeof(*sv->apps), sv->n_apps + 1, &sv->alloc_apps);
	size_t at = sv->n_apps;
	while (at > 0 && strcmp(sv->apps[at - 1]->name, name) > 0)
		at--;
	memmove(sv->apps + at + 1, sv->apps + at, (sv->n_apps - at) * sizeof(*sv->apps));
	sv->apps[at] = a;
	sv->n_apps++;
	return a;
}

static struct sv_proc *new_proc(struct sv_app *a, const char *name)
{
	struct sv_proc *p = xcalloc(1, sizeof(*p));
	p->app = a;
	p->name = xstrdup(name);
	a->procs = xgrow(a->procs, sizeof(*a->procs), a->n_procs + 1, &a->alloc_procs);
	a->procs[a->n_procs++] = p;
	return p;
}

/* ---- recovery ---- */

struct leftover {
	int pid;
	uint64_t ticks;
	char *instance;
	char *cgroup;
};

struct leftovers {
	struct leftover *v;
	size_t n, alloc;
};

static void collect_leftover(void *ctx, const struct store_proc *p)
{
	struct leftovers *l = ctx;
	l->v = xgrow(l->v, sizeof(*l->v), l->n + 1, &l->alloc);
	l->v[l->n++] = (struct leftover){p->pid, p->start_ticks, xstrdup(p->instance),
					 p->cgroup ? xstrdup(p->cgroup) : NULL};
}


void supervisor_cleanup_leftovers(struct supervisor *sv)
{
	struct leftovers l = {0};
	store_procs_each(sv->store, collect_leftover, &l);
	int signalled = 0;
	for (size_t k = 0; k < l.n; k++) {
		struct leftover *o = &l.v[k];
		if (o->pid > 1 && o->ticks && proc_start_ticks(o->pid) == o->ticks) {
			kill(-o->pid, SIGTERM);
			kill(o->pid, SIGTERM);
			signalled++;
		} else {
			o->ticks = 0; /* gone or reused: never touch that pid */
		}
	}
	/* Wait up to 5 s for them to go, then SIGKILL what is left. */
	for (int tries = 0; signalled && tries < 500; tries++) {
		int left = 0;
		for (size_t k = 0; k < l.n; k++)
			if (l.v[k].ticks && proc_start_ticks(l.v[k].pid) == l.v[k].ticks)
				left++;
		if (!left)
			break;
		usleep(10000);
	}
	for (size_t k = 0; k < l.n; k++) {
		struct leftover *o = &l.v[k];
		if (o->ticks && proc_start_ticks(o->pid) == o->ticks) {
			kill(-o->pid, SIGKILL);
			kill(o->pid, SIGKILL);
		}
		if (o->ticks) {
			char why[128];
			snprintf(why, sizeof(why), "stopped pid %d left over from a previous run", o->pid);
			char *app = xstrdup(o->instance);
			char *dot = strchr(app, '.');
			if (dot)
				*dot = '\0';
			sv_emit(sv, app, NULL, o->instance, "cleanup", NULL, why, o->pid, -1, 0);
			free(app);
		}
		if (o->cgroup)
			cgroup_destroy(o->cgroup);
		store_proc_delete(sv->store, o->pid);
		free(o->instance);
		free(o->cgroup);
	}
	free(l.v);
}

struct load_ctx {
	struct supervisor *sv;
	int errors;
};

static void load_scale(void *ctx, const struct store_scale *sc)
{
	struct sv_app *a = ctx;
	struct sv_proc *p = find_proc(a, sc->process);
	if (!p)
		return;
	p->desired = sc->instances;
	p->spec_instances = sc->spec_instances;
	p->stopped = sc->stopped;
}

/* Builds a release from its stored record; NULL (logged) when its spec no
 * longer parses. */
static struct sv_release *release_from_store(const struct store_release *r)
{
	char *err = NULL;
	struct spec *s = spec_parse_stored(r->spec_yaml, strlen(r->spec_yaml),
				    r->filename ? r->filename : "paasops.yaml", &err);
	if (!s) {
		log_error("app '%s' v%d: stored spec no longer valid: %s", r->app, r->version, err);
		free(err);
		return NULL;
	}
	struct sv_release *rel = xcalloc(1, sizeof(*rel));
	rel->refs = 1;
	rel->version = r->version;
	rel->spec = s;
	rel->yaml = xstrdup(r->spec_yaml);
	rel->filename = xstrdup(r->filename ? r->filename : "paasops.yaml");
	rel->dir = xstrdup(r->dir);
	struct json *cfg = json_parse(r->config ? r->config : "{}", strlen(r->config ? r->config : "{}"), NULL);
	for (struct json *e = json_first(cfg); e; e = json_next(e)) {
		if (!json_str(e))
			continue;
		rel->config = xrealloc(rel->config, (rel->n_config + 1) * sizeof(*rel->config));
		rel->config[rel->n_config++] = (struct spec_env){xstrdup(json_key(e)), xstrdup(json_str(e))};
	}
	json_free(cfg);
	return rel;
}

static void got_release(void *ctx, const struct store_release *r)
{
	struct sv_release **out = ctx;
	*out = release_from_store(r);
}

static void load_app(void *ctx, const struct store_app *sa)
{
	struct load_ctx *lc = ctx;
	struct sv_release *rel = NULL;
	store_release_get(lc->sv->store, sa->name, sa->release, got_release, &rel);
	if (!rel) {
		log_error("app '%s': its release v%d cannot be loaded", sa->name, sa->release);
		lc->errors++;
		return;
	}
	struct sv_app *a = new_app(lc->sv, sa->name);
	a->rel = rel;
	lc->sv->spec_gen++;
	a->live = rel->version;
	a->stopped = sa->stopped;
	a->maintenance = sa->maintenance;
	a->created_at = sa->created_at;
	a->updated_at = sa->updated_at;
	for (size_t k = 0; k < rel->spec->n_procs; k++) {
		struct sv_proc *p = new_proc(a, rel->spec->procs[k].name);
		p->sp = &rel->spec->procs[k];
		p->desired = p->spec_instances = p->sp->instances;
		p->fingerprint = sv_fingerprint(rel, p->sp);
	}
	store_scale_each(lc->sv->store, a->name, load_scale, a);
}

int supervisor_load(struct supervisor *sv, char **err)
{
	struct load_ctx lc = {sv, 0};
	if (store_apps_each(sv->store, load_app, &lc) < 0) {
		*err = xasprintf("cannot load apps: %s", store_errmsg(sv->store));
		return -EIO;
	}
	for (size_t k = 0; k < sv->n_apps; k++)
		sv_app_reconcile(sv->apps[k]);
	return 0;
}

/* ---- desired state changes ---- */


static bool routes_already(const struct sv_app *a, const struct spec_route *route)
{
	if (!a || !a->rel)
		return false;
	for (size_t j = 0; j < a->rel->spec->n_procs; j++) {
		const struct spec_process *p = &a->rel->spec->procs[j];
		for (size_t q = 0; q < p->n_routes; q++)
			if (str_eq(p->routes[q].host, route->host) && !strcmp(p->routes[q].path, route->path))
				return true;
	}
	return false;
}

static bool in_scope(char *const *scope, size_t n_scope, const char *app)
{
	if (!n_scope)
		return true;
	for (size_t k = 0; k < n_scope; k++)
		if (!strcmp(scope[k], app))
			return true;
	return false;
}

char *supervisor_route_conflict(const struct supervisor *sv, const struct spec *spec,
				char *const *scope, size_t n_scope)
{
	const struct sv_app *self = find_app(sv, spec->app);
	for (size_t k = 0; k < spec->n_procs; k++) {
		const struct spec_process *sp = &spec->procs[k];
		for (size_t r = 0; r < sp->n_routes; r++) {
			const struct spec_route *mine = &sp->routes[r];
			/* Whoever may change only some apps may not give theirs a
			 * new route on a host one of the others routes: a longer
			 * path there would take that app's requests. */
			bool guarded = n_scope && mine->host && !routes_already(self, mine);
			for (size_t a = 0; a < sv->n_apps; a++) {
				const struct sv_app *other = sv->apps[a];
				if (other->destroying || !strcmp(other->name, spec->app))
					continue;
				for (size_t j = 0; j < other->rel->spec->n_procs; j++) {
					const struct spec_process *op = &other->rel->spec->procs[j];
					for (size_t q = 0; q < op->n_routes; q++) {
						const struct spec_route *theirs = &op->routes[q];
						if (str_eq(mine->host, theirs->host) && !strcmp(mine->path, theirs->path))
							return xasprintf("route '%s%s' of process '%s' is already used by "
									 "process '%s' of app '%s'",
									 mine->host ? mine->host : "*", mine->path,
									 sp->name, op->name, other->name);
						if (guarded && str_eq(mine->host, theirs->host) &&
						    !in_scope(scope, n_scope, other->name))
							return xasprintf("route '%s%s' of process '%s' is on host '%s', which "
									 "app '%s' routes: a new route there needs a token "
									 "that may change '%s' too",
									 mine->host, mine->path, sp->name, mine->host,
									 other->name, other->name);
					}
				}
			}
		}
	}
	return NULL;
}

static struct sv_release *release_new(const struct supervisor_release *r)
{
	struct sv_release *rel = xcalloc(1, sizeof(*rel));
	rel->refs = 1;
	rel->version = r->version;
	rel->spec = r->spec;
	rel->yaml = xstrdup(r->yaml);
	rel->filename = xstrdup(r->filename ? r->filename : "paasops.yaml");
	rel->dir = xstrdup(r->dir);
	if (r->n_config) {
		rel->config = xcalloc(r->n_config, sizeof(*rel->config));
		for (size_t k = 0; k < r->n_config; k++)
			rel->config[k] = (struct spec_env){xstrdup(r->config[k].key), xstrdup(r->config[k].value)};
		rel->n_config = r->n_config;
	}
	return rel;
}

bool supervisor_shutting_down(const struct supervisor *sv)
{
	return sv->shutting_down;
}

/* Saves the app row and the desired counts of spec's process types (and
 * drops the others') in one transaction; a is NULL for a new app. */
static int persist_app(struct supervisor *sv, const struct sv_app *a, const struct store_app *sa,
		       const struct spec *spec, const int *desired)
{
	const char **keep = xcalloc(spec->n_procs ? spec->n_procs : 1, sizeof(char *));
	int r = store_begin(sv->store);
	if (r == 0)
		r = store_app_put(sv->store, sa);
	for (size_t k = 0; r == 0 && k < spec->n_procs; k++) {
		struct sv_proc *p = a ? find_proc(a, spec->procs[k].name) : NULL;
		struct store_scale sc = {sa->name, spec->procs[k].name, desired[k],
					 spec->procs[k].instances, p ? p->stopped : false};
		keep[k] = spec->procs[k].name;
		r = store_scale_put(sv->store, &sc);
	}
	if (r == 0)
		r = store_scale_prune(sv->store, sa->name, keep, (int)spec->n_procs);
	if (r == 0)
		r = store_commit(sv->store);
	if (r < 0)
		store_rollback(sv->store);
	free(keep);
	return r;
}

/* Makes rel the app's target release (takes ownership of the reference),
 * with desired[k] instances of its k-th process type: process types gone
 * from its spec stop and leave (their instances keep their own release
 * while they stop); unchanged ones adopt it in place. */
static void set_release(struct sv_app *a, struct sv_release *rel, const int *desired)
{
	const struct spec *spec = rel->spec;
	sv_release_unref(a->rel);
	a->rel = rel;
	a->sv->spec_gen++;
	for (size_t k = 0; k < a->n_procs; k++) {
		struct sv_proc *p = a->procs[k];
		if (!p->removed && !spec_process(spec, p->name)) {
			p->removed = true;
			p->sp = NULL;
		}
	}
	for (size_t k = 0; k < spec->n_procs; k++) {
		const struct spec_process *sp = &spec->procs[k];
		struct sv_proc *p = find_proc(a, sp->name);
		if (!p)
			p = new_proc(a, sp->name);
		p->sp = sp;
		p->desired = desired[k];
		p->spec_instances = sp->instances;
		free(p->fingerprint);
		p->fingerprint = sv_fingerprint(rel, sp);
		for (size_t j = 0; j < p->n_insts; j++) {
			struct sv_inst *i = p->insts[j];
			if (i->removing || i->rel == rel)
				continue;
			if (str_eq(i->fp, p->fingerprint)) {
				sv_release_unref(i->rel);
				i->rel = sv_release_ref(rel);
				i->sp = sp;
				i->adopted = true;
			}
		}
	}
}

/* The counts of a's process types as they are (NULL for a new app). Caller
 * frees with sv_counts_free(). */
static struct sv_counts *counts_of(const struct sv_app *a)
{
	if (!a->rel)
		return NULL;
	struct sv_counts *c = xcalloc(1, sizeof(*c));
	c->v = xcalloc(a->n_procs ? a->n_procs : 1, sizeof(*c->v));
	for (size_t k = 0; k < a->n_procs; k++) {
		const struct sv_proc *p = a->procs[k];
		if (p->removed)
			continue;
		c->v[c->n++] = (struct sv_count){xstrdup(p->name), p->desired, p->spec_instances, 0,
						 p->stopped};
	}
	return c;
}

void sv_counts_free(struct sv_counts *c)
{
	if (!c)
		return;
	for (size_t k = 0; k < c->n; k++)
		free(c->v[k].name);
	free(c->v);
	free(c);
}

int supervisor_rollout(struct supervisor *sv, const struct supervisor_release *r,
		       supervisor_rollout_cb done, void *ctx, bool *created, char **err)
{
	struct spec *spec = r->spec;
	if (sv->shutting_down) {
		*err = xstrdup("the daemon is stopping");
		spec_free(spec);
		return -ESHUTDOWN;
	}
	char *conflict = supervisor_route_conflict(sv, spec, r->scope, r->n_scope);
	if (conflict) {
		*err = conflict;
		spec_free(spec);
		return -EEXIST;
	}
	struct sv_app *a = find_app(sv, spec->app);
	if (a && a->rollout) {
		*err = xasprintf("app '%s' is already rolling out v%d; wait for it or abort it", spec->app,
				 a->rollout->to);
		spec_free(spec);
		return -EBUSY;
	}
	int64_t now = time_wall_ms();
	*created = a == NULL;
	int *desired = xcalloc(spec->n_procs ? spec->n_procs : 1, sizeof(int));
	for (size_t k = 0; k < spec->n_procs; k++) {
		const struct spec_process *sp = &spec->procs[k];
		struct sv_proc *p = a ? find_proc(a, sp->name) : NULL;
		desired[k] = (p && p->spec_instances == sp->instances) ? p->desired : sp->instances;
	}

	/* Persist desired counts first: on failure nothing in memory changed.
	 * The app's live release is persisted only once the rollout succeeds
	 * (a new app starts with it, since there is nothing older to serve). */
	struct store_app sa = {
		.name = spec->app, .spec_yaml = r->yaml, .filename = r->filename, .dir = r->dir,
		.stopped = a ? a->stopped : false, .created_at = a ? a->created_at : now,
		.updated_at = now, .release = a ? a->live : r->version,
	};
	if (persist_app(sv, a, &sa, spec, desired) < 0) {
		*err = xasprintf("cannot save app '%s': %s", spec->app, store_errmsg(sv->store));
		free(desired);
		spec_free(spec);
		return -EIO;
	}

	if (!a) {
		a = new_app(sv, spec->app);
		a->created_at = now;
		a->live = r->version;
	}
	int from = a->rel ? a->rel->version : 0;
	struct sv_counts *before = counts_of(a);
	struct sv_release *prev = a->rel ? sv_release_ref(a->rel) : NULL;
	set_release(a, release_new(r), desired);
	for (size_t k = 0; before && k < before->n; k++) {
		struct sv_proc *p = find_proc(a, before->v[k].name);
		before->v[k].applied = p ? p->desired : 0;
	}
	a->updated_at = now;
	char msg[200];
	snprintf(msg, sizeof(msg), "%s v%d", *created ? "app created with" : "applied", r->version);
	sv_emit(sv, a->name, NULL, NULL, "apply", NULL, msg, 0, -1, 0);
	sv_rollout_begin(a, from, prev, r->version, r->rollback, done, ctx, before);
	free(desired);
	notify_changed(sv);
	return 0;
}

void sv_app_go_back(struct sv_app *a, struct sv_release *live, const struct sv_counts *before)
{
	struct supervisor *sv = a->sv;
	const struct spec *spec = live->spec;
	int *desired = xcalloc(spec->n_procs ? spec->n_procs : 1, sizeof(int));
	for (size_t k = 0; k < spec->n_procs; k++) {
		const struct spec_process *sp = &spec->procs[k];
		struct sv_proc *p = find_proc(a, sp->name);
		const struct sv_count *c = NULL;
		for (size_t j = 0; before && j < before->n; j++)
			if (!strcmp(before->v[j].name, sp->name))
				c = &before->v[j];
		/* A count scaled during the rollout stays; the rest is as it was. */
		if (p && c && p->desired != c->applied)
			desired[k] = p->desired;
		else if (c && c->spec_instances == sp->instances)
			desired[k] = c->desired;
		else
			desired[k] = sp->instances;
	}
	struct store_app sa = {
		.name = a->name, .spec_yaml = live->yaml, .filename = live->filename, .dir = live->dir,
		.stopped = a->stopped, .created_at = a->created_at, .updated_at = time_wall_ms(),
		.release = a->live,
	};
	/* Only the counts are at stake: the live release is what the store
	 * already names, so a daemon restart would come back on it anyway. */
	if (persist_app(sv, a, &sa, spec, desired) < 0)
		log_error("app '%s': cannot save its counts on v%d: %s", a->name, live->version,
			  store_errmsg(sv->store));
	set_release(a, sv_release_ref(live), desired);
	for (size_t k = 0; before && k < before->n; k++) {
		struct sv_proc *p = find_proc(a, before->v[k].name);
		if (p)
			p->stopped = before->v[k].stopped;
	}
	free(desired);
	notify_changed(sv);
}

int supervisor_scale(struct supervisor *sv, const char *app, const char *const *procs,
		     const int *counts, int n, char **err)
{
	struct sv_app *a = need_app(sv, app, err);
	if (!a)
		return -ENOENT;
	for (int k = 0; k < n; k++) {
		if (!find_proc(a, procs[k])) {
			*err = xasprintf("app '%s' has no process type '%s'", app, procs[k]);
			return -ENOENT;
		}
		if (counts[k] < 0 || counts[k] > SPEC_MAX_INSTANCES) {
			*err = xasprintf("instances for '%s' must be between 0 and %d, not %d", procs[k],
					 SPEC_MAX_INSTANCES, counts[k]);
			return -EINVAL;
		}
	}
	int r = store_begin(sv->store);
	for (int k = 0; r == 0 && k < n; k++) {
		struct sv_proc *p = find_proc(a, procs[k]);
		struct store_scale sc = {app, procs[k], counts[k], p->spec_instances, p->stopped};
		r = store_scale_put(sv->store, &sc);
	}
	if (r == 0)
		r = store_commit(sv->store);
	if (r < 0) {
		store_rollback(sv->store);
		*err = xasprintf("cannot save scale of '%s': %s", app, store_errmsg(sv->store));
		return -EIO;
	}
	struct strbuf msg;
	strbuf_init(&msg, 64);
	for (int k = 0; k < n; k++) {
		struct sv_proc *p = find_proc(a, procs[k]);
		strbuf_addf(&msg, "%s%s: %d -> %d", k ? ", " : "scaled ", procs[k], p->desired, counts[k]);
		p->desired = counts[k];
	}
	sv_emit(sv, app, NULL, NULL, "scale", NULL, msg.buf, 0, -1, 0);
	strbuf_release(&msg);
	sv_app_reconcile(a);
	return 0;
}

int supervisor_restart(struct supervisor *sv, const char *app, const char *proc,
		       const char *instance, struct json *ids, char **err)
{
	struct sv_app *a = need_app(sv, app, err);
	if (!a)
		return -ENOENT;
	struct sv_proc *only = NULL;
	struct sv_inst *one = NULL;
	if (proc && !(only = find_proc(a, proc))) {
		*err = xasprintf("app '%s' has no process type '%s'", app, proc);
		return -ENOENT;
	}
	if (instance && !(one = find_inst(a, instance))) {
		*err = xasprintf("app '%s' has no instance '%s'", app, instance);
		return -ENOENT;
	}
	/* Nothing runs to restart: starting is what is asked for. */
	if (a->stopped) {
		*err = xasprintf("app '%s' is stopped; start it with paasops start %s", app, app);
		return -EBUSY;
	}
	struct sv_proc *held = one ? one->proc : only;
	bool any = false;
	for (size_t k = 0; !held && k < a->n_procs; k++)
		any |= !a->procs[k]->removed && !a->procs[k]->stopped;
	if (held ? held->stopped : !any) {
		*err = held ? xasprintf("process type '%s' of app '%s' is stopped; start it with paasops "
					"start %s %s", held->name, app, app, held->name)
			    : xasprintf("every process type of app '%s' is stopped; start it with paasops "
					"start %s", app, app);
		return -EBUSY;
	}
	char why[160];
	snprintf(why, sizeof(why), "restart of %s requested", instance ? instance : proc ? proc : app);
	sv_emit(sv, app, proc, instance, "restart", NULL, why, 0, -1, 0);
	if (one) {
		/* One named instance restarts in place. */
		json_append(ids, json_string(one->id));
		sv_inst_restart(one, "restart requested");
		return 0;
	}
	/* Instances that serve or are about to are replaced one step at a
	 * time by the rollout engine (new ones ready before old ones drain, as
	 * the process type's deploy settings allow); the others serve nothing
	 * and restart in place, which also ends a crash loop. A rollout in
	 * progress takes the restart over: it replaces whatever was started
	 * before it too. */
	bool rolling = false;
	for (size_t k = 0; k < a->n_procs; k++) {
		struct sv_proc *p = a->procs[k];
		if (p->removed || p->stopped || (only && p != only))
			continue;
		p->restart_gen++;
		size_t n;
		struct sv_inst **copy = sv_snapshot_insts(p, &n);
		for (size_t j = 0; j < n; j++) {
			struct sv_inst *i = copy[j];
			if (i->removing)
				continue;
			json_append(ids, json_string(i->id));
			bool serving = i->run && (i->state == SV_READY || i->state == SV_STARTING ||
						  i->state == SV_UNHEALTHY);
			if (serving && !a->stopped && !p->stopped) {
				rolling = true;
				continue;
			}
			i->gen = p->restart_gen;
			sv_inst_restart(i, "restart requested");
		}
		free(copy);
	}
	if (rolling && a->rollout)
		sv_rollout_kick(a);
	else if (rolling)
		sv_restart_begin(a);
	return 0;
}

int supervisor_set_maintenance(struct supervisor *sv, const char *app, bool on, char **err)
{
	struct sv_app *a = need_app(sv, app, err);
	if (!a)
		return -ENOENT;
	if (a->maintenance == on)
		return 0;
	if (store_app_set_maintenance(sv->store, app, on) < 0) {
		*err = xasprintf("cannot save app '%s': %s", app, store_errmsg(sv->store));
		return -EIO;
	}
	a->maintenance = on;
	sv_emit(sv, app, NULL, NULL, "maintenance", NULL,
		on ? "maintenance on: the router answers 503" : "maintenance off: the router serves the app again",
		0, -1, 0);
	notify_changed(sv);
	return 0;
}

bool supervisor_app_maintenance(const struct supervisor *sv, const char *app)
{
	const struct sv_app *a = find_app(sv, app);
	return a && a->maintenance;
}

int supervisor_set_stopped(struct supervisor *sv, const char *app, const char *proc,
			   bool stopped, char **err)
{
	struct sv_app *a = need_app(sv, app, err);
	if (!a)
		return -ENOENT;
	struct sv_proc *p = NULL;
	if (proc && !(p = find_proc(a, proc))) {
		*err = xasprintf("app '%s' has no process type '%s'", app, proc);
		return -ENOENT;
	}
	int r = store_begin(sv->store);
	if (r == 0 && p) {
		struct store_scale sc = {app, p->name, p->desired, p->spec_instances, stopped};
		r = store_scale_put(sv->store, &sc);
	}
	if (r == 0 && !p)
		r = store_app_set_stopped(sv->store, app, stopped);
	/* Starting an app starts its stopped process types too. */
	for (size_t k = 0; r == 0 && !p && !stopped && k < a->n_procs; k++) {
		struct sv_proc *q = a->procs[k];
		if (q->removed || !q->stopped)
			continue;
		struct store_scale sc = {app, q->name, q->desired, q->spec_instances, false};
		r = store_scale_put(sv->store, &sc);
	}
	if (r == 0)
		r = store_commit(sv->store);
	if (r < 0) {
		store_rollback(sv->store);
		*err = xasprintf("cannot save app '%s': %s", app, store_errmsg(sv->store));
		return -EIO;
	}
	if (p) {
		p->stopped = stopped;
	} else {
		a->stopped = stopped;
		for (size_t k = 0; !stopped && k < a->n_procs; k++)
			a->procs[k]->stopped = false;
	}
	char why[160];
	snprintf(why, sizeof(why), "%s %s", stopped ? "stop" : "start", proc ? proc : "all process types");
	sv_emit(sv, app, proc, NULL, stopped ? "stop" : "start", NULL, why, 0, -1, 0);
	/* Crashed or exited slots get a fresh start. */
	for (size_t k = 0; !stopped && k < a->n_procs; k++) {
		struct sv_proc *q = a->procs[k];
		if (p && q != p)
			continue;
		for (size_t j = 0; j < q->n_insts; j++) {
			struct sv_inst *i = q->insts[j];
			if (i->state == SV_CRASHED || i->state == SV_EXITED)
				sv_inst_restart(i, "start requested");
		}
	}
	sv_app_reconcile(a);
	return 0;
}

int supervisor_destroy(struct supervisor *sv, const char *app, char **err)
{
	struct sv_app *a = need_app(sv, app, err);
	if (!a)
		return -ENOENT;
	int r = store_begin(sv->store);
	if (r == 0)
		r = store_app_delete(sv->store, app);
	if (r == 0)
		r = store_commit(sv->store);
	if (r < 0) {
		store_rollback(sv->store);
		*err = xasprintf("cannot delete app '%s': %s", app, store_errmsg(sv->store));
		return -EIO;
	}
	sv_emit(sv, app, NULL, NULL, "destroy", NULL, "app destroyed", 0, -1, 0);
	a->destroying = true;
	sv->spec_gen++;
	notify_changed(sv);
	sv_app_reconcile(a);
	/* An app with no slots at all goes on the next loop turn. */
	uv_timer_start(sv->gc, collect_garbage, 0, 0);
	return 0;
}

bool supervisor_has_app(const struct supervisor *sv, const char *app)
{
	return find_app(sv, app) != NULL;
}

void supervisor_note(struct supervisor *sv, const char *app, const char *type, const char *reason)
{
	sv_emit(sv, app, NULL, NULL, type, NULL, reason, 0, -1, 0);
}

/* ---- JSON views ---- */

static const char *restart_name(enum spec_restart r)
{
	return r == SPEC_RESTART_NEVER ? "never" : r == SPEC_RESTART_ON_FAILURE ? "on-failure" : "always";
}

static struct json *app_json(struct sv_app *a, bool detail)
{
	struct json *o = json_object();
	json_set_str(o, "name", a->name);
	json_set_str(o, "dir", a->rel->dir);
	json_set_int(o, "release", a->live);
	if (a->rel->version != a->live || a->rollout)
		json_set_int(o, "target_release", a->rel->version);
	json_set_bool(o, "rolling_out", a->rollout != NULL);
	json_set_bool(o, "stopped", a->stopped);
	json_set_bool(o, "maintenance", a->maintenance);
	json_set_time(o, "created_at", a->created_at);
	json_set_time(o, "updated_at", a->updated_at);
	struct json *procs = json_set(o, "processes", json_array());
	for (size_t k = 0; k < a->n_procs; k++) {
		struct sv_proc *p = a->procs[k];
		if (p->removed)
			continue;
		int ready = 0, running = 0, crashed = 0;
		for (size_t j = 0; j < p->n_insts; j++) {
			ready += p->insts[j]->state == SV_READY;
			running += p->insts[j]->run != NULL;
			crashed += p->insts[j]->state == SV_CRASHED;
		}
		struct json *po = json_append(procs, json_object());
		json_set_str(po, "name", p->name);
		json_set_str(po, "command", p->sp->command);
		json_set_int(po, "instances", p->desired);
		json_set_int(po, "ready", ready);
		json_set_int(po, "running", running);
		json_set_int(po, "crashed", crashed);
		json_set_bool(po, "stopped", p->stopped);
		json_set_str(po, "restart", restart_name(p->sp->restart));
	}
	if (detail) {
		json_set(o, "spec", spec_to_json(a->rel->spec));
		json_set_str(o, "spec_yaml", a->rel->yaml);
	}
	return o;
}

struct json *supervisor_apps_json(struct supervisor *sv)
{
	struct json *arr = json_array();
	for (size_t k = 0; k < sv->n_apps; k++)
		if (!sv->apps[k]->destroying)
			json_append(arr, app_json(sv->apps[k], false));
	return arr;
}

struct json *supervisor_app_json(struct supervisor *sv, const char *app, bool detail)
{
	struct sv_app *a = find_app(sv, app);
	return a ? app_json(a, detail) : NULL;
}

/* CPU ticks and RSS pages summed over every process of a process group. */
struct pg_usage {
	int pgid;
	uint64_t ticks;
	uint64_t rss_pages;
};

struct usage_table {
	struct pg_usage *v;
	size_t n, alloc;
};

static void scan_proc(struct usage_table *t)
{
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		int pid = atoi(e->d_name);
		char buf[1024];
		const char *p = pid > 0 ? proc_stat_fields(pid, buf, sizeof(buf)) : NULL;
		int pgrp;
		unsigned long ut, st;
		long rss;
		if (!p || sscanf(p, "%*c %*d %d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %*u %*u %ld",
				 &pgrp, &ut, &st, &rss) != 4)
			continue;
		for (size_t k = 0; k < t->n; k++) {
			if (t->v[k].pgid == pgrp) {
				t->v[k].ticks += ut + st;
				t->v[k].rss_pages += (uint64_t)(rss > 0 ? rss : 0);
				break;
			}
		}
	}
	closedir(d);
}

static void inst_json(struct json *arr, struct sv_inst *i, const struct pg_usage *u)
{
	struct sv_proc *p = i->proc;
	struct json *o = json_append(arr, json_object());
	json_set_str(o, "id", i->id);
	json_set_str(o, "app", p->app->name);
	json_set_str(o, "process", p->name);
	json_set_int(o, "index", i->index);
	json_set_int(o, "release", i->rel->version);
	json_set_str(o, "state", sv_state_name(i->state));
	if (i->run) {
		json_set_int(o, "pid", i->run->pid);
		json_set_int(o, "port", i->port);
		json_set_time(o, "started_at", i->started_wall);
		json_set_int(o, "uptime_ms", time_mono_ms() - i->started_mono);
	} else {
		json_set(o, "pid", json_null());
		json_set(o, "port", json_null());
		json_set(o, "started_at", json_null());
		json_set(o, "uptime_ms", json_null());
	}
	json_set_int(o, "restarts", i->restarts);
	if (i->last_exit_status >= 0)
		json_set_int(o, "exit_status", i->last_exit_status);
	else
		json_set(o, "exit_status", json_null());
	if (i->last_signal)
		json_set_int(o, "signal", i->last_signal);
	else
		json_set(o, "signal", json_null());
	json_set_str(o, "reason", i->reason);
	if (u && i->run) {
		long hz = sysconf(_SC_CLK_TCK);
		long page = sysconf(_SC_PAGESIZE);
		int64_t now = time_mono_ms();
		double pct;
		if (i->cpu_time_prev && now > i->cpu_time_prev && u->ticks >= i->cpu_ticks_prev)
			pct = (double)(u->ticks - i->cpu_ticks_prev) / (double)hz * 1000.0 /
			      (double)(now - i->cpu_time_prev) * 100.0;
		else
			pct = now > i->started_mono ? (double)u->ticks / (double)hz * 1000.0 /
							      (double)(now - i->started_mono) * 100.0
						    : 0;
		i->cpu_ticks_prev = u->ticks;
		i->cpu_time_prev = now;
		json_set_num(o, "cpu_percent", (double)(int64_t)(pct * 10 + 0.5) / 10.0);
		json_set_num(o, "cpu_seconds", (double)u->ticks / (double)hz);
		json_set_int(o, "rss_bytes", (int64_t)u->rss_pages * page);
	} else {
		json_set(o, "cpu_percent", json_null());
		json_set(o, "rss_bytes", json_null());
	}
	const struct spec_resources *res = &i->sp->resources;
	if (res->memory_bytes)
		json_set_int(o, "memory_limit", res->memory_bytes);
	else
		json_set(o, "memory_limit", json_null());
	if (res->cpu > 0)
		json_set_num(o, "cpu_limit", res->cpu);
	else
		json_set(o, "cpu_limit", json_null());
	if (res->memory_bytes || res->cpu > 0)
		json_set_bool(o, "limits_enforced", i->run ? i->limits_enforced : p->app->sv->cgroups.mode != CGROUP_NONE);
	else
		json_set(o, "limits_enforced", json_null());
}

struct json *supervisor_instances_json(struct supervisor *sv, const char *app)
{
	struct sv_app *only = NULL;
	if (app && !(only = find_app(sv, app)))
		return NULL;
	struct usage_table t = {0};
	for (size_t k = 0; k < sv->n_apps; k++) {
		struct sv_app *a = sv->apps[k];
		if (only && a != only)
			continue;
		for (size_t j = 0; j < a->n_procs; j++)
			for (size_t m = 0; m < a->procs[j]->n_insts; m++) {
				struct sv_inst *i = a->procs[j]->insts[m];
				if (!i->run)
					continue;
				t.v = xgrow(t.v, sizeof(*t.v), t.n + 1, &t.alloc);
				t.v[t.n++] = (struct pg_usage){i->run->pid, 0, 0};
			}
	}
	if (t.n)
		scan_proc(&t);
	struct json *arr = json_array();
	size_t u = 0;
	for (size_t k = 0; k < sv->n_apps; k++) {
		struct sv_app *a = sv->apps[k];
		if (only && a != only)
			continue;
		for (size_t j = 0; j < a->n_procs; j++)
			for (size_t m = 0; m < a->procs[j]->n_insts; m++) {
				struct sv_inst *i = a->procs[j]->insts[m];
				inst_json(arr, i, i->run ? &t.v[u++] : NULL);
			}
	}
	free(t.v);
	return arr;
}

struct log_pick {
	const struct sv_line *l;
	const char *id;
};

static int log_pick_cmp(const void *x, const void *y)
{
	uint64_t a = ((const struct log_pick *)x)->l->seq, b = ((const struct log_pick *)y)->l->seq;
	return a < b ? -1 : a > b;
}

struct json *supervisor_logs_json(struct supervisor *sv, const char *app, const char *proc,
				  const char *instance, uint64_t after, int lines)
{
	struct sv_app *a = find_app(sv, app);
	if (!a)
		return NULL;
	/* Gather matching lines from every ring, order by seq, keep the newest. */
	struct log_pick *v = NULL;
	size_t n = 0, alloc = 0;
	for (size_t k = 0; k < a->n_procs; k++) {
		struct sv_proc *p = a->procs[k];
		if (proc && strcmp(p->name, proc) != 0)
			continue;
		for (size_t j = 0; j < p->n_insts; j++) {
			struct sv_inst *i = p->insts[j];
			if (instance && strcmp(i->id, instance) != 0)
				continue;
			for (size_t m = 0; m < i->ring.count; m++) {
				const struct sv_line *l = sv_ring_at(&i->ring, m);
				if (l->seq <= after)
					continue;
				v = xgrow(v, sizeof(*v), n + 1, &alloc);
				v[n++] = (struct log_pick){l, i->id};
			}
		}
	}
	if (!proc && !instance) {
		for (size_t m = 0; m < a->ring.count; m++) {
			const struct sv_line *l = sv_ring_at(&a->ring, m);
			if (l->seq <= after)
				continue;
			v = xgrow(v, sizeof(*v), n + 1, &alloc);
			v[n++] = (struct log_pick){l, NULL};
		}
	}
	struct json *out = json_object();
	struct json *arr = json_set(out, "lines", json_array());
	if (n > 1)
		qsort(v, n, sizeof(*v), log_pick_cmp);
	size_t from = (lines > 0 && n > (size_t)lines) ? n - (size_t)lines : 0;
	uint64_t next = after;
	for (size_t k = from; k < n; k++) {
		struct json *o = json_append(arr, json_object());
		json_set_int(o, "seq", (int64_t)v[k].l->seq);
		json_set_time(o, "time", v[k].l->time);
		json_set_str(o, "instance", v[k].id);
		static const char *const streams[] = {"stdout", "stderr", "router", "build", "release", "run"};
		json_set_str(o, "stream", streams[v[k].l->stream < 6 ? v[k].l->stream : 0]);
		json_set_str(o, "line", v[k].l->text);
	}
	if (n)
		next = v[n - 1].l->seq > next ? v[n - 1].l->seq : next;
	json_set_int(out, "next", (int64_t)next);
	free(v);
	return out;
}

/* ---- shutdown ---- */

void sv_check_shutdown_done(struct supervisor *sv)
{
	if (sv->shutting_down && sv->alive == 0 && sv->done) {
		supervisor_done_cb done = sv->done;
		sv->done = NULL;
		done(sv->done_ctx);
	}
}

void supervisor_shutdown(struct supervisor *sv, supervisor_done_cb done, void *ctx)
{
	sv->shutting_down = true;
	sv->done = done;
	sv->done_ctx = ctx;
	for (size_t k = 0; k < sv->n_apps; k++) {
		struct sv_app *a = sv->apps[k];
		for (size_t j = 0; j < a->n_procs; j++)
			for (size_t m = 0; m < a->procs[j]->n_insts; m++)
				sv_inst_stop(a->procs[j]->insts[m], "daemon stopping");
	}
	sv_check_shutdown_done(sv);
}

/* ---- for the router ---- */

void supervisor_each_pool(struct supervisor *sv, supervisor_pool_cb cb, void *ctx)
{
	const char **ids = NULL;
	int *ports = NULL;
	size_t alloc_ids = 0, alloc_ports = 0;
	for (size_t k = 0; k < sv->n_apps; k++) {
		struct sv_app *a = sv->apps[k];
		if (a->destroying)
			continue;
		for (size_t j = 0; j < a->n_procs; j++) {
			struct sv_proc *p = a->procs[j];
			if (p->removed)
				continue;
			size_t n = 0;
			for (size_t m = 0; m < p->n_insts; m++) {
				struct sv_inst *i = p->insts[m];
				if (i->state != SV_READY || !i->run)
					continue;
				ids = xgrow(ids, sizeof(*ids), n + 1, &alloc_ids);
				ports = xgrow(ports, sizeof(*ports), n + 1, &alloc_ports);
				ids[n] = i->id;
				ports[n] = i->port;
				n++;
			}
			cb(ctx, a->name, p->sp, ids, ports, n);
		}
	}
	free(ids);
	free(ports);
}

uint64_t supervisor_spec_generation(const struct supervisor *sv)
{
	return sv->spec_gen;
}

int supervisor_proc_state(const struct supervisor *sv, const char *app, const char *proc,
			  struct supervisor_proc_state *out)
{
	struct sv_app *a = find_app(sv, app);
	struct sv_proc *p = a ? find_proc(a, proc) : NULL;
	if (!p)
		return -ENOENT;
	out->instances = p->desired;
	out->ready = 0;
	for (size_t j = 0; j < p->n_insts; j++)
		out->ready += p->insts[j]->state == SV_READY;
	out->hold = a->stopped || a->rollout != NULL || p->stopped;
	return 0;
}

const char *supervisor_instance_state(const struct supervisor *sv, const char *app,
				      const char *instance)
{
	struct sv_app *a = find_app(sv, app);
	struct sv_inst *i = a ? find_inst(a, instance) : NULL;
	return i ? sv_state_name(i->state) : NULL;
}

void supervisor_each_spec(struct supervisor *sv, supervisor_spec_cb cb, void *ctx)
{
	for (size_t k = 0; k < sv->n_apps; k++) {
		struct sv_app *a = sv->apps[k];
		if (!a->destroying && a->rel)
			cb(ctx, a->name, a->rel->version, a->rel->spec);
	}
}

const char *supervisor_limits_how(const struct supervisor *sv, const char **why)
{
	const struct cgroup_sys *cs = &sv->cgroups;
	if (cs->mode == CGROUP_NONE) {
		*why = cs->why ? cs->why : "no cgroup hierarchy found";
		return NULL;
	}
	/* Found at start, but an administrator may have changed the hierarchy
	 * since: instances started from now on need to create groups here. */
	if (access(cs->mem_root, W_OK) < 0 || access(cs->cpu_root, W_OK) < 0) {
		*why = "the daemon's cgroups are no longer writable";
		return NULL;
	}
	return cs->mode == CGROUP_V2 ? "cgroup v2" : "cgroup v1";
}

void supervisor_each_crashed(struct supervisor *sv, supervisor_crashed_cb cb, void *ctx)
{
	for (size_t k = 0; k < sv->n_apps; k++) {
		struct sv_app *a = sv->apps[k];
		for (size_t p = 0; p < a->n_procs; p++)
			for (size_t n = 0; n < a->procs[p]->n_insts; n++) {
				const struct sv_inst *i = a->procs[p]->insts[n];
				if (i->state == SV_CRASHED)
					cb(ctx, a->name, i->id, i->reason);
			}
	}
}

void supervisor_log_line(struct supervisor *sv, const char *app, const char *instance,
			 enum supervisor_stream stream, const char *line)
{
	struct sv_app *a = find_app(sv, app);
	if (!a) {
		/* Not running yet (a first release building): the durable log
		 * still gets the line. */
		if (sv->hooks.log_line)
			sv->hooks.log_line(sv->hooks_ctx, time_wall_ms(), app, NULL, NULL, 0, (int)stream, line,
					   strlen(line));
		return;
	}
	if (instance) {
		struct sv_inst *i = find_inst(a, instance);
		if (i) {
			sv_ring_push(&i->ring, ++sv->log_seq, (int)stream, line, strlen(line));
			if (sv->hooks.log_line)
				sv->hooks.log_line(sv->hooks_ctx, time_wall_ms(), a->name, i->proc->name, i->id,
						   i->rel->version, (int)stream, line, strlen(line));
			return;
		}
	}
	sv_ring_push(&a->ring, ++sv->log_seq, (int)stream, line, strlen(line));
	if (sv->hooks.log_line)
		sv->hooks.log_line(sv->hooks_ctx, time_wall_ms(), a->name, NULL, NULL, a->rel ? a->rel->version : 0,
				   (int)stream, line, strlen(line));
}
