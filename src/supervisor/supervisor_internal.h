/* supervisor_internal.h: the supervisor's tree, shared by its files only.
 *
 * Lifetimes: a struct sv_app owns its sv_procs, which own their sv_inst
 * slots. A slot owns two timers and is freed in their close callbacks once
 * torn down. Each start of a slot creates a struct sv_run (process handle and
 * output pipes) that frees itself when its handles are closed; a run outlives
 * its slot only to drain output, with run->inst set to NULL. A health check
 * in flight is a struct sv_check with the same detach rule. */
#ifndef PAASOPS_SUPERVISOR_INTERNAL_H
#define PAASOPS_SUPERVISOR_INTERNAL_H
#include "core/strbuf.h"
#include "supervisor/supervisor.h"
#include "supervisor/supervisor_cgroup.h"
#include "spec/spec.h"
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#define SV_RING_LINES 1000
#define SV_LINE_MAX 10000
#define SV_PARTIAL_MS 500 /* a last line without newline is taken after this */
#define SV_LOG_PAUSE_MS 5  /* recheck of a paused output (hooks.log_busy) */
#define SV_CRASH_STARTS 5
#define SV_CRASH_WINDOW_MS 10000
#define SV_BACKOFF_MIN_MS 100
#define SV_BACKOFF_MAX_MS 30000
#define SV_BACKOFF_RESET_MS 10000
#define SV_NOCHECK_READY_MS 1000
#define SV_BOOT_PROBE_MS 250

enum sv_state {
	SV_STOPPED,   /* not running and not wanted */
	SV_STARTING,  /* spawned, not yet passed its health check */
	SV_READY,     /* passing health checks; receives traffic */
	SV_UNHEALTHY, /* failed its checks; being restarted */
	SV_STOPPING,  /* SIGTERM sent, waiting for exit */
	SV_EXITED,    /* exited on its own and will not be restarted (policy) */
	SV_CRASHED,   /* crash loop: no restarts until restart/apply */
	SV_BACKOFF,   /* exited; waiting before the next start */
	SV_NSTATES
};

const char *sv_state_name(enum sv_state s);

struct sv_line {
	uint64_t seq;
	int64_t time;
	uint8_t stream; /* 0 stdout, 1 stderr, else enum supervisor_stream */
	char *text;
};

/* The newest SV_RING_LINES lines; the array grows on demand so that idle
 * instances cost almost nothing. */
struct sv_ring {
	struct sv_line *lines;
	size_t cap, head, count;
};

void sv_ring_push(struct sv_ring *r, uint64_t seq, int stream, const char *text, size_t n);
const struct sv_line *sv_ring_at(const struct sv_ring *r, size_t k);
void sv_ring_release(struct sv_ring *r);

struct sv_run {
	struct sv_inst *inst; /* NULL once the slot is gone */
	struct supervisor *sv;
	uv_process_t proc;
	uv_pipe_t pipes[2];
	struct strbuf partial[2];
	/* The last line taken from the stream ended without its newline (it
	 * waited SV_PARTIAL_MS, or was split at SV_LINE_MAX): a newline that
	 * comes next only ends it. */
	bool cut[2];
	uv_timer_t flush; /* takes a partial last line after SV_PARTIAL_MS */
	uv_timer_t resume; /* reads again once hooks.log_busy says no */
	bool paused;
	int open;
	int pid;
	bool exited;
	struct sv_run *next_draining; /* in inst->draining */
};

struct sv_check;

/* What instances run: a release's spec, directory and config vars.
 * Reference-counted: the app holds its target, each instance its own. */
struct sv_release {
	int refs;
	int version;
	struct spec *spec;
	char *yaml, *filename, *dir;
	struct spec_env *config;
	size_t n_config;
};

struct sv_release *sv_release_ref(struct sv_release *r);
void sv_release_unref(struct sv_release *r);
/* What, when it changes between two releases, replaces a process type's
 * instances. Caller frees. */
char *sv_fingerprint(const struct sv_release *rel, const struct spec_process *sp);
struct sv_proc;

struct sv_inst {
	struct sv_proc *proc;
	struct sv_release *rel;        /* the release it runs (a reference) */
	const struct spec_process *sp; /* its process type in rel->spec */
	char *fp;                      /* sv_fingerprint(rel, sp) */
	int index;
	char *id; /* "app.proc.N" */
	enum sv_state state;
	char reason[256];
	uv_timer_t t_state;  /* boot deadline, stop timeout or backoff delay */
	uv_timer_t t_health; /* next health check or no-check readiness */
	uv_timer_t t_drain;  /* polls the router while draining */
	int64_t drain_deadline;
	int open_handles;
	bool torn_down;
	bool removing;           /* free the slot once stopped */
	bool adopted;            /* took a new release over unchanged: already proven */
	bool restart_after_stop; /* start again once stopped */
	unsigned gen;            /* its process type's restart_gen when it was made */
	struct sv_run *run;      /* current process, or NULL */
	struct sv_run *draining; /* exited processes whose output is still being read */
	struct sv_check *check;  /* health check in flight, or NULL */
	int port;
	int ok_streak, fail_streak;
	int64_t starts[SV_CRASH_STARTS]; /* mono ms of recent starts, ring */
	int n_starts;
	int64_t backoff_ms;
	int64_t ready_since; /* mono ms, 0 when not ready */
	int64_t started_wall, started_mono;
	int restarts;
	int last_exit_status, last_signal; /* -1 / 0 when none */
	int last_pid;
	char *cgroup; /* current run's groups, or NULL */
	bool limits_enforced;
	uint64_t cpu_ticks_prev;
	int64_t cpu_time_prev;
	struct sv_ring ring;
};

struct sv_proc {
	struct sv_app *app;
	char *name;
	const struct spec_process *sp; /* in the app's target release; NULL once removed */
	char *fingerprint;             /* sv_fingerprint of the target release */
	int desired;
	int spec_instances;
	bool stopped;
	bool removed; /* no longer in the spec: stop and drop */
	unsigned restart_gen; /* instances made before the last restart have a lower gen */
	struct sv_inst **insts;
	size_t n_insts, alloc_insts;
};

/* A process type's counts before a rollout, to go back to after it fails. */
struct sv_count {
	char *name;
	int desired, spec_instances;
	int applied; /* desired as the rollout set it */
	bool stopped;
};

struct sv_counts {
	struct sv_count *v;
	size_t n;
};

void sv_counts_free(struct sv_counts *c);

/* A change of release in progress. */
struct sv_rollout {
	int from, to; /* versions */
	bool restart; /* replaces the instances of older gens, same release */
	bool back;    /* returns to the live release after a failed rollout */
	bool rollback; /* to a release that was live: no canary stage */
	struct sv_release *prev;   /* the app's release when it began (a reference), or NULL */
	struct sv_release *target; /* the release it rolls out (a reference) */
	struct sv_counts *before;  /* counts when it began (owned), or NULL */
	int64_t started, deadline; /* monotonic ms */
	supervisor_rollout_cb done;
	void *ctx;
	char phase[160]; /* what it waits for, for status */
	bool awaiting_promotion; /* every canary is ready; only a promotion is missing */
};

struct sv_app {
	struct supervisor *sv;
	char *name;
	struct sv_release *rel; /* the target release */
	int live;               /* the release fully rolled out (persisted) */
	struct sv_rollout *rollout;
	uv_timer_t *t_rollout;  /* heap: steps the rollout */
	bool promoted, auto_promote; /* canary */
	bool stopped;
	bool maintenance; /* the router answers 503 for it */
	bool destroying;
	int64_t created_at, updated_at;
	struct sv_ring ring; /* router lines not tied to an instance */
	struct sv_proc **procs;
	size_t n_procs, alloc_procs;
};

/* A process of an instance, as the metrics sampler last read it, with its
 * /proc/PID/statm kept open between samples (supervisor_metrics.c). */
struct sv_statfd {
	int pid;
	int fd;               /* /proc/PID/statm; -1 once taken */
	int pgid;             /* from the last full read of its stat */
	clockid_t clock;      /* its CPU-time clock */
	uint64_t child_ticks; /* cutime + cstime, from the last full read */
	int64_t threads;      /* from the last full read */
	int64_t fds;          /* open files counted last, -1 unknown */
	bool full;            /* a leader with reaped children or others in its group: its
			       * stat is read every sample */
};

struct supervisor {
	uv_loop_t *loop;
	struct sv_statfd *statfds; /* sorted by pid */
	size_t n_statfds;
	unsigned metrics_tick;
	uint64_t metrics_prev_ticks; /* CLOCK_BOOTTIME of the previous sample, in clock ticks */
	struct supervisor_hooks hooks;
	void *hooks_ctx;
	struct store *store;
	char *data_dir;
	struct cgroup_sys cgroups;
	int port_min, port_max, port_next;
	const struct runas *run_as; /* borrowed; NULL: the daemon's own user */
	uint8_t *port_used;
	struct sv_app **apps;
	size_t n_apps, alloc_apps;
	uint64_t spec_gen; /* bumped whenever an app's target spec changes or the app goes */
	uint64_t log_seq;
	int alive; /* running processes */
	bool shutting_down;
	uv_timer_t *gc; /* heap: frees removed process types and destroyed apps */
	supervisor_done_cb done;
	void *done_ctx;
};

/* supervisor_inst.c */
struct sv_inst *sv_inst_new(struct sv_proc *p, int index, struct sv_release *rel);
void sv_inst_start(struct sv_inst *i, const char *reason);
void sv_inst_stop(struct sv_inst *i, const char *reason);
/* Stops and then starts again; clears crash-loop state. */
void sv_inst_restart(struct sv_inst *i, const char *reason);
bool sv_inst_alive(const struct sv_inst *i);
/* Removes a stopped slot from its process and frees it asynchronously. */
void sv_inst_teardown(struct sv_inst *i);
void sv_emit(struct supervisor *sv, const char *app, const char *proc, const char *inst,
	     const char *type, const char *state, const char *reason, int pid, int exit_status,
	     int sig);

/* supervisor.c */
/* Brings the slots of p in line with its desired count and flags. */
void sv_proc_reconcile(struct sv_proc *p);
/* Called when a slot has gone; frees removed procs and destroyed apps. */
void sv_proc_slot_gone(struct sv_proc *p);
void sv_check_shutdown_done(struct supervisor *sv);
/* Makes live (borrowed) the app's target release again after a rollout
 * away from it failed, with the counts it had before (may be NULL) unless
 * they were scaled since; persists the counts. Starts nothing. */
void sv_app_go_back(struct sv_app *a, struct sv_release *live, const struct sv_counts *before);
/* supervisor_rollout.c */
/* Asks for a rollout step on the next loop turn (safe from any callback). */
void sv_rollout_kick(struct sv_app *a);
void sv_app_reconcile(struct sv_app *a);
/* Starts moving a (whose rel is already the target) from release `from`,
 * whose release was prev, with the counts before; takes ownership of both
 * (a reference to prev), either may be NULL. */
void sv_rollout_begin(struct sv_app *a, int from, struct sv_release *prev, int to, bool rollback,
		      supervisor_rollout_cb done, void *ctx, struct sv_counts *before);
/* Frees a rollout that has ended. */
void sv_rollout_free(struct sv_rollout *ro);
/* A rolling restart: instances of a gen below their process type's
 * restart_gen are replaced like those of an old release. */
void sv_restart_begin(struct sv_app *a);
/* A copy of p's instance list (caller frees), safe to walk while instances
 * start, stop or leave. */
struct sv_inst **sv_snapshot_insts(const struct sv_proc *p, size_t *n);

#endif
