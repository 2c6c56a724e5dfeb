/* supervisor_rollout.c: bringing each process type's instances in line with
 * its desired count and the app's target release, and moving from one
 * release to the next without dropping a request:
 *
 *   rolling   start up to max_surge new instances; each that has been ready
 *             for min_healthy lets one old instance drain and stop, keeping
 *             at least instances - max_unavailable ready throughout;
 *   canary    start `canary` new instances beside the old ones; promotion
 *             (by hand, or once they have been healthy for min_healthy)
 *             continues as rolling;
 *   recreate  stop every old instance, then start the new ones (downtime).
 *
 * A rollout fails when it does not finish by healthy_deadline or a new
 * instance crash-loops. Process types whose definition did not change
 * adopt the new release without a restart. */
#include "compat/json.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "spec/spec.h"
#include "store/store.h"
#include "supervisor/supervisor_internal.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROLLOUT_TICK_MS 100

struct sv_release *sv_release_ref(struct sv_release *r)
{
	r->refs++;
	return r;
}

void sv_release_unref(struct sv_release *r)
{
	if (!r || --r->refs > 0)
		return;
	spec_free(r->spec);
	free(r->yaml);
	free(r->filename);
	free(r->dir);
	for (size_t k = 0; k < r->n_config; k++) {
		free(r->config[k].key);
		free(r->config[k].value);
	}
	free(r->config);
	free(r);
}

char *sv_fingerprint(const struct sv_release *rel, const struct spec_process *sp)
{
	const struct spec *s = rel->spec;
	struct strbuf b;
	strbuf_init(&b, 256);
	strbuf_addf(&b, "dir=%s\ncmd=%s\nrestart=%d\nstop=%lld\n", rel->dir, sp->command, sp->restart,
		    (long long)sp->stop_timeout_ms);
	for (size_t k = 0; k < s->n_env; k++)
		strbuf_addf(&b, "appenv %s=%s\n", s->env[k].key, s->env[k].value);
	for (size_t k = 0; k < sp->n_env; k++)
		strbuf_addf(&b, "env %s=%s\n", sp->env[k].key, sp->env[k].value);
	for (size_t k = 0; k < rel->n_config; k++)
		strbuf_addf(&b, "config %s=%s\n", rel->config[k].key, rel->config[k].value);
	const struct spec_health *h = &sp->health;
	strbuf_addf(&b, "health=%d %s %lld %lld %d %d %lld\n", h->kind, h->target ? h->target : "",
		    (long long)h->interval_ms, (long long)h->timeout_ms, h->healthy, h->unhealthy,
		    (long long)h->boot_deadline_ms);
	strbuf_addf(&b, "res=%lld %.6f\n", (long long)sp->resources.memory_bytes, sp->resources.cpu);
	return strbuf_detach(&b, NULL);
}

/* ---- small views of a process type ---- */

/* Runs the target release, and was started since the last restart. */
static bool is_target(const struct sv_inst *i)
{
	return i->rel == i->proc->app->rel && i->gen >= i->proc->restart_gen;
}

/* Running or about to run again, and not on its way out. */
static bool alive(const struct sv_inst *i)
{
	return !i->removing && (i->state == SV_STARTING || i->state == SV_READY ||
				i->state == SV_UNHEALTHY || i->state == SV_BACKOFF ||
				(i->state == SV_STOPPING && i->restart_after_stop));
}

static int lowest_free_index(const struct sv_proc *p)
{
	for (int idx = 1;; idx++) {
		bool used = false;
		for (size_t k = 0; k < p->n_insts && !used; k++)
			used = p->insts[k]->index == idx;
		if (!used)
			return idx;
	}
}

struct sv_inst **sv_snapshot_insts(const struct sv_proc *p, size_t *n)
{
	*n = p->n_insts;
	struct sv_inst **copy = xmalloc((*n ? *n : 1) * sizeof(*copy));
	if (*n)
		memcpy(copy, p->insts, *n * sizeof(*copy));
	return copy;
}

static void retire(struct sv_inst *i, const char *why)
{
	i->removing = true;
	sv_inst_stop(i, why);
}

static void start_new(struct sv_proc *p, const char *why)
{
	struct sv_inst *i = sv_inst_new(p, lowest_free_index(p), p->app->rel);
	sv_inst_start(i, why);
}

/* ---- reconciling without a rollout ---- */

static void plain_reconcile(struct sv_proc *p);

void sv_proc_reconcile(struct sv_proc *p)
{
	struct sv_app *a = p->app;
	if (a->rollout && !p->removed && !a->destroying && !a->sv->shutting_down && !a->stopped &&
	    !p->stopped) {
		sv_rollout_kick(a);
		return;
	}
	plain_reconcile(p);
}

/* Reconciling outside a rollout (or for a stopped process type). */
static void plain_reconcile(struct sv_proc *p)
{
	struct sv_app *a = p->app;
	bool run = !a->stopped && !a->destroying && !p->stopped && !p->removed && !a->sv->shutting_down;
	int want = (p->removed || a->destroying) ? 0 : p->desired;
	size_t n;
	struct sv_inst **copy = sv_snapshot_insts(p, &n);
	/* Instances of another release than the live one are replaced. */
	int kept = 0;
	for (size_t k = 0; k < n; k++) {
		struct sv_inst *i = copy[k];
		if (i->removing)
			continue;
		if (i->rel != a->rel && !p->removed && !a->destroying && !a->sv->shutting_down && a->live == a->rel->version) {
			retire(i, "replaced by the current release");
			continue;
		}
		kept++;
	}
	/* Too many: those that serve nothing go first, then the highest
	 * indexes. */
	while (kept > want) {
		struct sv_inst *worst = NULL;
		for (size_t k = 0; k < n; k++) {
			struct sv_inst *i = copy[k];
			if (i->removing)
				continue;
			bool ready = i->state == SV_READY, worst_ready = worst && worst->state == SV_READY;
			if (!worst || (worst_ready && !ready) ||
			    (worst_ready == ready && i->index > worst->index))
				worst = i;
		}
		retire(worst, a->destroying ? "app destroyed" : p->removed ? "process type removed" : "scaled down");
		kept--;
	}
	/* Stopped or started as the flags say. */
	for (size_t k = 0; k < n; k++) {
		struct sv_inst *i = copy[k];
		if (i->removing)
			continue;
		if (run && i->state == SV_STOPPING)
			i->restart_after_stop = true; /* started again while stopping */
		else if (run && i->state == SV_STOPPED && !i->run)
			sv_inst_start(i, "starting to meet the desired count");
		else if (!run && i->state != SV_STOPPED)
			sv_inst_stop(i, a->stopped || p->stopped ? "stop requested" : "daemon stopping");
	}
	free(copy);
	/* Too few: new instances of the target release. */
	for (; kept < want; kept++) {
		struct sv_inst *i = sv_inst_new(p, lowest_free_index(p), a->rel);
		if (run)
			sv_inst_start(i, "starting to meet the desired count");
	}
}

void sv_app_reconcile(struct sv_app *a)
{
	size_t n = a->n_procs;
	struct sv_proc **copy = xmalloc((n ? n : 1) * sizeof(*copy));
	if (n)
		memcpy(copy, a->procs, n * sizeof(*copy));
	for (size_t k = 0; k < n; k++)
		sv_proc_reconcile(copy[k]);
	free(copy);
}

/* ---- rollouts ---- */

static void rollout_tick(uv_timer_t *t);

void sv_rollout_kick(struct sv_app *a)
{
	if (a->rollout && a->t_rollout)
		uv_timer_start(a->t_rollout, rollout_tick, 0, ROLLOUT_TICK_MS);
}

void sv_rollout_free(struct sv_rollout *ro)
{
	if (!ro)
		return;
	sv_release_unref(ro->prev);
	sv_release_unref(ro->target);
	sv_counts_free(ro->before);
	free(ro);
}

static void begin(struct sv_app *a, struct sv_rollout *ro);

static void rollout_end(struct sv_app *a, bool ok, const char *reason)
{
	struct sv_rollout *ro = a->rollout;
	a->rollout = NULL;
	uv_timer_stop(a->t_rollout);
	struct supervisor *sv = a->sv;
	if (ok) {
		a->live = ro->to;
		store_app_set_release(sv->store, a->name, ro->to);
	}
	char msg[400];
	if (ro->restart)
		snprintf(msg, sizeof(msg), "restart %s%s%s", ok ? "finished" : "failed", reason ? ": " : "",
			 reason ? reason : "");
	else if (ro->back)
		snprintf(msg, sizeof(msg), "return to v%d %s%s%s", ro->to, ok ? "finished" : "failed",
			 reason ? ": " : "", reason ? reason : "");
	else
		snprintf(msg, sizeof(msg), "rollout to v%d %s%s%s", ro->to, ok ? "finished" : "failed",
			 reason ? ": " : "", reason ? reason : "");
	sv_emit(sv, a->name, NULL, NULL, ok ? "rollout-finished" : "rollout-failed", NULL, msg, 0, -1, 0);
	if (ro->done)
		ro->done(ro->ctx, a->name, ro->to, ok, reason);
	/* A failed rollout leaves the live release in charge, unless done began
	 * another rollout (an automatic rollback) or changed the target: the
	 * failed release's instances drain while the live release's are brought
	 * back to their counts, as a rollout of its own. */
	bool back = !ok && !ro->back && !ro->restart && !a->rollout && a->rel == ro->target &&
		    ro->prev && ro->prev != ro->target && ro->prev->version == a->live &&
		    !sv->shutting_down && !a->destroying;
	if (back) {
		sv_app_go_back(a, ro->prev, ro->before);
		struct sv_rollout *b = xcalloc(1, sizeof(*b));
		b->from = ro->to;
		b->to = a->live;
		b->back = true;
		b->target = sv_release_ref(a->rel);
		sv_rollout_free(ro);
		begin(a, b);
		return;
	}
	sv_rollout_free(ro);
	/* Whatever was left half-way goes back to plain reconciling: instances
	 * of any release but the live one stop, and counts are met again. */
	sv_app_reconcile(a);
}

/* One step of one process type. Returns true when it is done. */
static bool step_proc(struct sv_app *a, struct sv_proc *p, char *why, size_t why_size)
{
	const struct spec_deploy *d = &p->sp->deploy;
	if (a->stopped || p->stopped) {
		/* Nothing to roll: it runs nothing until started again. */
		plain_reconcile(p);
		return true;
	}
	int want = p->desired;
	int64_t now = time_mono_ms();
	/* min_healthy protects the old release; a first release has none, and
	 * a restart or a return to the live release runs the release that has
	 * already proven itself. */
	bool restart = a->rollout->restart;
	int64_t min_healthy = a->rollout->from == 0 || restart || a->rollout->back ? 0 : d->min_healthy_ms;
	size_t n;
	struct sv_inst **copy = sv_snapshot_insts(p, &n);
	int news = 0, stable = 0, olds = 0, olds_ready = 0;
	for (size_t k = 0; k < n; k++) {
		struct sv_inst *i = copy[k];
		if (!alive(i))
			continue;
		if (is_target(i)) {
			news++;
			if (i->state == SV_READY && (i->adopted || now - i->ready_since >= min_healthy))
				stable++;
		} else {
			olds++;
			olds_ready += i->state == SV_READY;
		}
	}
	/* Crashed new instances are not alive; catch them too. */
	for (size_t k = 0; k < n; k++) {
		struct sv_inst *i = copy[k];
		if (!i->removing && is_target(i) && i->state == SV_CRASHED) {
			snprintf(why, why_size, "instance %s of the new release crash-looped: %s", i->id, i->reason);
			free(copy);
			return false;
		}
	}
	bool recreate = d->strategy && !strcmp(d->strategy, "recreate");
	bool canary = d->strategy && !strcmp(d->strategy, "canary") && !a->promoted && !restart &&
		      !a->rollout->back && !a->rollout->rollback;
	int surge = d->max_surge, unavailable = d->max_unavailable;
	if (surge + unavailable <= 0)
		surge = 1;
	if (recreate) {
		for (size_t k = 0; k < n; k++)
			if (alive(copy[k]) && !is_target(copy[k]))
				retire(copy[k], "replaced by the new release (recreate)");
		if (olds == 0)
			while (news < want) {
				start_new(p, "new release (recreate)");
				news++;
			}
	} else if (canary && olds > 0) {
		int c = d->canary > 0 ? d->canary : 1;
		while (news < c) {
			start_new(p, "canary of the new release");
			news++;
		}
		if (stable >= c && a->auto_promote) {
			a->promoted = true;
			sv_emit(a->sv, a->name, p->name, NULL, "rollout", NULL, "canary healthy; promoted", 0, -1, 0);
		}
		a->rollout->awaiting_promotion &= stable >= c && !a->promoted;
		snprintf(a->rollout->phase, sizeof(a->rollout->phase),
			 "canary: %d of %d ready for %lldms; waiting for promotion", stable, c,
			 (long long)d->min_healthy_ms);
		free(copy);
		return false;
	} else {
		/* Drain old ones while enough stable new ones carry the load;
		 * old ones that are not ready carry nothing and go first. */
		for (int pass = 0; pass < 2; pass++) {
			for (size_t k = 0; k < n && olds > 0; k++) {
				struct sv_inst *i = copy[k];
				if (!alive(i) || is_target(i) || (pass == 0) == (i->state == SV_READY))
					continue;
				bool ready = i->state == SV_READY;
				if (ready && stable + olds_ready - 1 < want - unavailable)
					break;
				retire(i, restart ? "restarted (replaced)"
				   : a->rollout->back ? "replaced by the live release"
						      : "replaced by the new release");
				olds--;
				olds_ready -= ready;
			}
		}
		while (news < want && news + olds < want + surge) {
			start_new(p, restart ? "restart" : a->rollout->back ? "live release" : "new release");
			news++;
		}
		/* Too many new ones (scaled down during the rollout). */
		for (size_t k = n; k-- > 0 && news > want;) {
			if (alive(copy[k]) && is_target(copy[k])) {
				retire(copy[k], "scaled down");
				news--;
			}
		}
	}
	free(copy);
	snprintf(a->rollout->phase, sizeof(a->rollout->phase), "%s: %d of %d new ready for %lldms, %d old left",
		 p->name, stable, want, (long long)min_healthy, olds);
	bool done = stable >= want && olds == 0;
	a->rollout->awaiting_promotion &= done;
	return done;
}

static void rollout_step(struct sv_app *a)
{
	struct sv_rollout *ro = a->rollout;
	if (!ro)
		return;
	if (a->sv->shutting_down || a->destroying) {
		rollout_end(a, false, a->destroying ? "app destroyed" : "daemon stopping");
		return;
	}
	char why[400] = "";
	bool all = true;
	ro->awaiting_promotion = true; /* until a process type waits for anything else */
	char phase[160] = "";
	size_t n = a->n_procs;
	struct sv_proc **copy = xmalloc((n ? n : 1) * sizeof(*copy));
	if (n)
		memcpy(copy, a->procs, n * sizeof(*copy));
	for (size_t k = 0; k < n && !why[0]; k++) {
		struct sv_proc *p = copy[k];
		if (p->removed) {
			sv_proc_reconcile(p);
			continue;
		}
		if (!step_proc(a, p, why, sizeof(why))) {
			if (all)
				strlcpy_s(phase, ro->phase, sizeof(phase));
			all = false;
		}
	}
	free(copy);
	if (!a->rollout)
		return;
	if (why[0]) {
		rollout_end(a, false, why);
		return;
	}
	if (all) {
		rollout_end(a, true, NULL);
		return;
	}
	strlcpy_s(ro->phase, phase, sizeof(ro->phase));
	if (time_mono_ms() > ro->deadline) {
		char d[32];
		duration_format(ro->deadline - ro->started, d, sizeof(d));
		if (ro->awaiting_promotion)
			snprintf(why, sizeof(why),
				 "the canary was not promoted within healthy_deadline (%s): it waited for "
				 "'paasops deploy promote %s'; %s",
				 d, a->name, ro->phase);
		else
			snprintf(why, sizeof(why), "not healthy within healthy_deadline (%s); %s", d, ro->phase);
		rollout_end(a, false, why);
	}
}

static void rollout_tick(uv_timer_t *t)
{
	rollout_step(t->data);
}

/* Starts rollout ro of a (takes ownership). */
static void begin(struct sv_app *a, struct sv_rollout *ro)
{
	ro->started = time_mono_ms();
	int64_t deadline = 0;
	for (size_t k = 0; k < a->rel->spec->n_procs; k++)
		if (a->rel->spec->procs[k].deploy.healthy_deadline_ms > deadline)
			deadline = a->rel->spec->procs[k].deploy.healthy_deadline_ms;
	ro->deadline = ro->started + (deadline ? deadline : 300000);
	a->rollout = ro;
	a->promoted = false;
	a->auto_promote = false;
	for (size_t k = 0; k < a->rel->spec->n_procs; k++)
		a->auto_promote = a->auto_promote || a->rel->spec->procs[k].deploy.auto_promote;
	if (!a->t_rollout) {
		a->t_rollout = xcalloc(1, sizeof(*a->t_rollout));
		uv_timer_init(a->sv->loop, a->t_rollout);
		a->t_rollout->data = a;
	}
	char msg[160];
	if (ro->restart)
		snprintf(msg, sizeof(msg), "restart of v%d started, instance by instance", ro->to);
	else if (ro->back)
		snprintf(msg, sizeof(msg), "v%d stays live: the instances of v%d are replaced by its own",
			 ro->to, ro->from);
	else
		snprintf(msg, sizeof(msg), "rollout from v%d to v%d started", ro->from, ro->to);
	sv_emit(a->sv, a->name, NULL, NULL, "rollout-started", NULL, msg, 0, -1, 0);
	/* A rollout with nothing to replace ends here, calling done before
	 * supervisor_rollout() returns; callers must be ready for that. */
	rollout_step(a);
	if (a->rollout == ro)
		sv_rollout_kick(a);
}

void sv_rollout_begin(struct sv_app *a, int from, struct sv_release *prev, int to, bool rollback,
		      supervisor_rollout_cb done, void *ctx, struct sv_counts *before)
{
	struct sv_rollout *ro = xcalloc(1, sizeof(*ro));
	ro->rollback = rollback;
	ro->from = from;
	ro->to = to;
	ro->prev = prev;
	ro->target = sv_release_ref(a->rel);
	ro->before = before;
	ro->done = done;
	ro->ctx = ctx;
	begin(a, ro);
}

void sv_restart_begin(struct sv_app *a)
{
	struct sv_rollout *ro = xcalloc(1, sizeof(*ro));
	ro->from = ro->to = a->live;
	ro->restart = true;
	ro->target = sv_release_ref(a->rel);
	begin(a, ro);
}

int supervisor_rollout_abort(struct supervisor *sv, const char *app, const char *reason)
{
	for (size_t k = 0; k < sv->n_apps; k++) {
		struct sv_app *a = sv->apps[k];
		if (!a->destroying && !strcmp(a->name, app) && a->rollout) {
			rollout_end(a, false, reason);
			return 0;
		}
	}
	return -ENOENT;
}

/* Whether a's rollout runs a canary that has not been promoted yet. */
static bool canary_waits(const struct sv_app *a)
{
	const struct sv_rollout *ro = a->rollout;
	if (!ro || ro->restart || ro->back || ro->rollback || a->promoted)
		return false;
	for (size_t k = 0; k < a->n_procs; k++) {
		const struct sv_proc *p = a->procs[k];
		const char *strategy = p->sp ? p->sp->deploy.strategy : NULL;
		if (!p->removed && !p->stopped && strategy && !strcmp(strategy, "canary"))
			return true;
	}
	return false;
}

int supervisor_rollout_promote(struct supervisor *sv, const char *app, char **err)
{
	for (size_t k = 0; k < sv->n_apps; k++) {
		struct sv_app *a = sv->apps[k];
		if (a->destroying || strcmp(a->name, app) != 0)
			continue;
		if (!canary_waits(a) || a->stopped) {
			*err = xasprintf("app '%s' has no canary waiting for promotion", app);
			return -EBUSY;
		}
		a->promoted = true;
		sv_emit(sv, a->name, NULL, NULL, "rollout", NULL, "canary promoted", 0, -1, 0);
		sv_rollout_kick(a);
		return 0;
	}
	*err = xasprintf("app '%s' not found", app);
	return -ENOENT;
}

struct json *supervisor_rollout_json(struct supervisor *sv, const char *app)
{
	for (size_t k = 0; k < sv->n_apps; k++) {
		struct sv_app *a = sv->apps[k];
		if (a->destroying || strcmp(a->name, app) != 0)
			continue;
		struct json *o = json_object();
		json_set_str(o, "app", a->name);
		json_set_int(o, "live", a->live);
		json_set_int(o, "target", a->rel->version);
		if (!a->rollout) {
			json_set(o, "rollout", json_null());
			return o;
		}
		struct json *r = json_set(o, "rollout", json_object());
		json_set_int(r, "from", a->rollout->from);
		json_set_int(r, "to", a->rollout->to);
		json_set_int(r, "elapsed_ms", time_mono_ms() - a->rollout->started);
		json_set_int(r, "deadline_ms", a->rollout->deadline - a->rollout->started);
		json_set_str(r, "phase", a->rollout->phase);
		json_set_bool(r, "promoted", a->promoted);
		return o;
	}
	return NULL;
}

int supervisor_release_instances(struct supervisor *sv, const char *app, int version,
				 struct json *news, struct json *olds)
{
	for (size_t k = 0; k < sv->n_apps; k++) {
		struct sv_app *a = sv->apps[k];
		if (a->destroying || strcmp(a->name, app) != 0)
			continue;
		for (size_t j = 0; j < a->n_procs; j++)
			for (size_t m = 0; m < a->procs[j]->n_insts; m++) {
				struct sv_inst *i = a->procs[j]->insts[m];
				json_append(i->rel->version == version ? news : olds, json_string(i->id));
			}
		return 0;
	}
	return -ENOENT;
}
