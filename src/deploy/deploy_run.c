/* deploy_run.c: one-off runs of a command in an app's live release (see
 * deploy.h), the way `heroku run` or `dokku run` start a migration or a
 * console task next to the app.
 *
 * A run owns a process and its two output pipes. Output goes to whoever
 * asked (callbacks) and to the app's log; the exit callback comes once both
 * pipes are closed and the process has exited, so nothing is lost. A run
 * that is cancelled (the client left) is killed and forgets its callbacks;
 * every run frees itself in the close callback of its last handle. Runs
 * are recorded like instances so that a daemon killed mid-run has the next
 * start stop what it left. */
#include "deploy/deploy_internal.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/runas.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "store/store.h"
#include "supervisor/supervisor.h"
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SETSID_PATH "/usr/bin/setsid" /* util-linux, on every Debian system */
#define RUN_DRAIN_MS 1000 /* a terminal's last output after its command exited */

struct deploy_run {
	struct deploy *d; /* NULL once the daemon stops: nothing is told */
	struct deploy_run *next, *prev;
	char *app, *id;
	int version;
	uv_process_t proc;
	uv_pipe_t pipes[2];
	uv_timer_t timeout;
	struct strbuf partial[2]; /* output not yet logged (no end of line yet) */
	bool cut[2];              /* for dp_log_lines */
	int open;        /* handles not yet closed */
	int pipes_open;  /* output pipes still read */
	bool exited, timed_out, paused;
	bool tty;             /* pipes[0] is the terminal's master side */
	size_t input_pending; /* input bytes written but not taken by the terminal yet */
	int64_t status, timeout_ms;
	int sig;
	struct deploy_run_cbs cbs;
	void *ctx; /* NULL: cancelled */
};

const char *deploy_run_id(const struct deploy_run *r)
{
	return r->id;
}

int deploy_run_pid(const struct deploy_run *r)
{
	return r->proc.pid;
}

int deploy_run_release(const struct deploy_run *r)
{
	return r->version;
}

/* Kills the run's process group, and the process itself in case it has
 * not made its group yet (a run with a terminal, just started). */
static void run_kill(struct deploy_run *r)
{
	kill(-r->proc.pid, SIGKILL);
	if (r->tty && !r->exited)
		kill(r->proc.pid, SIGKILL);
	if (r->tty) /* a shell's jobs have process groups of their own */
		proc_kill_session(r->proc.pid, SIGKILL);
}

static void run_unlink(struct deploy_run *r)
{
	if (!r->d)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else
		r->d->runs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->d->n_runs--;
	r->d = NULL;
}

static void run_closed(uv_handle_t *h)
{
	struct deploy_run *r = h->data;
	if (--r->open > 0)
		return;
	run_unlink(r);
	strbuf_release(&r->partial[0]);
	strbuf_release(&r->partial[1]);
	free(r->app);
	free(r->id);
	free(r);
}

/* The end, once the process is gone and both pipes are drained. */
static void run_finish(struct deploy_run *r)
{
	if (!r->exited || r->pipes_open > 0)
		return;
	char why[64] = "";
	if (r->timed_out) {
		char d[32];
		duration_format(r->timeout_ms, d, sizeof(d));
		snprintf(why, sizeof(why), "timed out after %s", d);
	}
	if (r->d) {
		char *msg = r->timed_out ? xasprintf("one-off run %s %s", r->id, why)
			    : r->sig	 ? xasprintf("one-off run %s killed by signal %d", r->id, r->sig)
					 : xasprintf("one-off run %s exited with status %d", r->id, (int)r->status);
		supervisor_note(r->d->cfg.sv, r->app, "run", msg);
		free(msg);
	}
	if (r->ctx && r->cbs.exit)
		r->cbs.exit(r->ctx, r->sig ? -1 : (int)r->status, r->sig, why[0] ? why : NULL);
	r->ctx = NULL;
	uv_close((uv_handle_t *)&r->timeout, run_closed);
	uv_close((uv_handle_t *)&r->proc, run_closed);
}

static void run_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	struct deploy_run *r = h->data;
	int k = (uv_pipe_t *)h == &r->pipes[1];
	strbuf_grow(&r->partial[k], 16384);
	buf->base = r->partial[k].buf + r->partial[k].len;
	buf->len = r->partial[k].alloc - r->partial[k].len - 1;
}

static void run_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* A run with a terminal whose command has exited: what the terminal still
 * holds has had its time to come out; whoever keeps it open (something
 * that left the session) does not hold the run up. */
static void run_drained(uv_timer_t *t)
{
	struct deploy_run *r = t->data;
	if (r->paused) /* its reader is slow: what is left is not given up */
		uv_timer_start(t, run_drained, RUN_DRAIN_MS, 0);
	else if (!uv_is_closing((uv_handle_t *)&r->pipes[0]))
		run_read((uv_stream_t *)&r->pipes[0], UV_EOF, &(uv_buf_t){0});
}

static void run_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct deploy_run *r = s->data;
	int k = (uv_pipe_t *)s == &r->pipes[1];
	struct strbuf *b = &r->partial[k];
	if (n > 0) {
		if (r->ctx && r->cbs.output)
			r->cbs.output(r->ctx, k + 1, b->buf + b->len, (size_t)n);
		b->len += (size_t)n;
		b->buf[b->len] = '\0';
	}
	if (n == 0)
		return;
	bool eof = n < 0;
	if (r->d)
		dp_log_lines(r->d->cfg.sv, r->app, NULL, SUPERVISOR_STREAM_RUN, b, eof, &r->cut[k]);
	else
		strbuf_reset(b);
	if (eof) {
		r->pipes_open--;
		uv_close((uv_handle_t *)s, run_closed);
		run_finish(r);
	}
}

static void run_exit(uv_process_t *h, int64_t status, int sig)
{
	struct deploy_run *r = h->data;
	run_kill(r); /* nothing of the run outlives it */
	if (r->d)
		store_proc_delete(r->d->cfg.store, h->pid);
	uv_timer_stop(&r->timeout);
	r->exited = true;
	r->status = status;
	r->sig = sig;
	if (r->tty && r->pipes_open)
		uv_timer_start(&r->timeout, run_drained, RUN_DRAIN_MS, 0);
	run_finish(r);
}

static void run_timeout(uv_timer_t *t)
{
	struct deploy_run *r = t->data;
	r->timed_out = true;
	run_kill(r);
}

/* A terminal for a run: *master for the daemon (close-on-exec), *slave
 * for the command. */
static int open_tty(const struct deploy_run_tty *tty, int *master, int *slave)
{
	struct winsize ws = {.ws_row = (unsigned short)tty->rows, .ws_col = (unsigned short)tty->cols};
	if (openpty(master, slave, NULL, NULL, &ws) < 0)
		return -errno;
	fcntl(*master, F_SETFD, FD_CLOEXEC);
	fcntl(*slave, F_SETFD, FD_CLOEXEC); /* the command gets it as 0, 1 and 2 */
	return 0;
}

int deploy_run_start(struct deploy *d, const char *app, const char *command, int64_t timeout_ms,
		     const struct deploy_run_tty *tty, const struct deploy_run_cbs *cbs, void *ctx,
		     struct deploy_run **out, char **err)
{
	if (!supervisor_has_app(d->cfg.sv, app)) {
		*err = xasprintf("app '%s' not found", app);
		return -ENOENT;
	}
	int version = dp_live_version(d, app);
	struct rel_copy rel = {0};
	if (version > 0)
		store_release_get(d->cfg.store, app, version, dp_copy_release, &rel);
	if (!rel.found) {
		*err = xasprintf("app '%s' has no live release to run in", app);
		return -ESRCH;
	}
	if (d->n_runs >= DEPLOY_MAX_RUNS) {
		dp_rel_copy_release(&rel);
		*err = xasprintf("%d one-off runs are going on already; try again when one ends", d->n_runs);
		return -EAGAIN;
	}
	int master = -1, slave = -1;
	if (tty) {
		int e = open_tty(tty, &master, &slave);
		if (e < 0) {
			dp_rel_copy_release(&rel);
			*err = xasprintf("cannot open a terminal for the command: %s", strerror(-e));
			return e;
		}
	}
	struct deploy_run *r = xcalloc(1, sizeof(*r));
	r->tty = tty != NULL;
	r->app = xstrdup(app);
	r->version = version;
	if (!d->run_seq_known) {
		/* Names go on from the last run an earlier start recorded, so
		 * that events and logs never name two runs alike. */
		char *last = NULL;
		store_event_last_reason(d->cfg.store, "run", &last);
		const char *n = last ? strstr(last, ".run.") : NULL;
		if (n)
			d->run_seq = atoi(n + 5);
		free(last);
		d->run_seq_known = true;
	}
	r->id = xasprintf("%s.run.%d", app, ++d->run_seq);
	r->timeout_ms = timeout_ms;
	r->cbs = *cbs;
	r->ctx = ctx;
	strbuf_init(&r->partial[0], 0);
	strbuf_init(&r->partial[1], 0);
	uv_pipe_init(d->cfg.loop, &r->pipes[0], 0);
	uv_pipe_init(d->cfg.loop, &r->pipes[1], 0);
	uv_timer_init(d->cfg.loop, &r->timeout);
	r->pipes[0].data = r->pipes[1].data = r->timeout.data = r->proc.data = r;
	r->open = 3;
	size_t ne;
	char **envp = dp_release_env(d, app, version, 2, &ne); /* + RUN, TERM */
	envp[ne++] = xasprintf("PAASOPS_RUN=%s", r->id);
	if (tty)
		envp[ne++] = xasprintf("TERM=%s", tty->term ? tty->term : "xterm");
	envp[ne] = NULL;
	char *args[] = {"/bin/sh", "-c", (char *)command, NULL};
	uv_stdio_container_t stdio[3] = {
		{.flags = UV_IGNORE},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->pipes[0]},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->pipes[1]},
	};
	uv_process_options_t o = {
		.file = "/bin/sh", .args = args, .env = envp, .cwd = rel.dir,
		.flags = UV_PROCESS_DETACHED, .exit_cb = run_exit, .stdio = stdio, .stdio_count = 3,
	};
	/* With a terminal, setsid(1) makes the command a session leader with
	 * the terminal as its controlling one (libuv cannot): it is not a
	 * group leader when it starts, so it execs in place and the pid stays
	 * the command's, as does the process group that is killed at the end. */
	char *tty_args[] = {"setsid", "--ctty", "/bin/sh", "-c", (char *)command, NULL};
	supervisor_spawn_as(d->cfg.sv, &o);
	const struct runas *ra = supervisor_run_as(d->cfg.sv);
	if (tty && ra && fchown(slave, ra->uid, ra->gid) < 0)
		log_warn("%s: cannot give the terminal to user '%s': %s", r->id, ra->user, strerror(errno));
	if (tty) {
		for (int k = 0; k < 3; k++)
			stdio[k] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = slave};
		o.file = SETSID_PATH;
		o.args = tty_args;
		o.flags &= ~(unsigned)UV_PROCESS_DETACHED;
	}
	int rc = uv_spawn(d->cfg.loop, &r->proc, &o);
	if (tty)
		close(slave);
	if (tty && rc == 0) {
		rc = uv_pipe_open(&r->pipes[0], master);
		if (rc < 0)
			kill(r->proc.pid, SIGKILL);
		else
			master = -1;
	}
	if (master >= 0)
		close(master);
	dp_env_free(envp, ne);
	dp_rel_copy_release(&rel);
	if (rc < 0) {
		*err = xasprintf("cannot start the command: %s", uv_strerror(rc));
		r->ctx = NULL;
		uv_close((uv_handle_t *)&r->proc, NULL);
		uv_close((uv_handle_t *)&r->pipes[0], run_closed);
		uv_close((uv_handle_t *)&r->pipes[1], run_closed);
		uv_close((uv_handle_t *)&r->timeout, run_closed);
		return rc;
	}
	r->open++;
	r->pipes_open = 2;
	if (tty) {
		uv_close((uv_handle_t *)&r->pipes[1], run_closed);
		r->pipes_open = 1;
	}
	r->d = d;
	r->next = d->runs;
	if (d->runs)
		d->runs->prev = r;
	d->runs = r;
	d->n_runs++;
	struct store_proc sp = {.instance = r->id, .pid = r->proc.pid,
				.start_ticks = proc_start_ticks(r->proc.pid)};
	store_proc_put(d->cfg.store, &sp);
	char *msg = xasprintf("one-off run %s of v%d started: %s", r->id, version, command);
	supervisor_note(d->cfg.sv, app, "run", msg);
	free(msg);
	uv_read_start((uv_stream_t *)&r->pipes[0], run_alloc, run_read);
	if (!tty)
		uv_read_start((uv_stream_t *)&r->pipes[1], run_alloc, run_read);
	if (timeout_ms > 0)
		uv_timer_start(&r->timeout, run_timeout, (uint64_t)timeout_ms, 0);
	*out = r;
	return 0;
}

struct deploy_run *deploy_run_find(struct deploy *d, const char *app, const char *id)
{
	for (struct deploy_run *r = d->runs; r; r = r->next)
		if (!r->exited && str_eq(r->app, app) && str_eq(r->id, id))
			return r;
	return NULL;
}

struct run_input {
	uv_write_t req;
	struct deploy_run *r;
	size_t len;
	char bytes[];
};

static void input_written(uv_write_t *w, int status)
{
	struct run_input *in = (struct run_input *)w;
	in->r->input_pending -= in->len;
	free(in);
}

int deploy_run_input(struct deploy_run *r, const char *data, size_t len, int rows, int cols)
{
	if (!r->tty)
		return -ENOTTY;
	uv_stream_t *s = (uv_stream_t *)&r->pipes[0];
	if (r->exited || uv_is_closing((uv_handle_t *)s))
		return -EPIPE;
	if (r->input_pending + len > DEPLOY_RUN_INPUT_MAX)
		return -ENOBUFS;
	if (len) {
		size_t done = 0;
		if (!uv_stream_get_write_queue_size(s)) {
			int n = uv_try_write(s, &(uv_buf_t){.base = (char *)data, .len = len}, 1);
			done = n > 0 ? (size_t)n : 0;
		}
		if (done < len) {
			struct run_input *in = xmalloc(sizeof(*in) + len - done);
			in->r = r;
			in->len = len - done;
			memcpy(in->bytes, data + done, in->len);
			uv_buf_t b = {.base = in->bytes, .len = in->len};
			if (uv_write(&in->req, s, &b, 1, input_written) < 0) {
				free(in);
				return -EPIPE;
			}
			r->input_pending += in->len;
		}
	}
	if (rows > 0 && cols > 0) {
		struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
		uv_os_fd_t fd;
		if (uv_fileno((uv_handle_t *)s, &fd) == 0)
			ioctl(fd, TIOCSWINSZ, &ws);
	}
	return 0;
}

void deploy_run_pause(struct deploy_run *r, bool pause)
{
	if (r->paused == pause)
		return;
	r->paused = pause;
	for (int k = 0; k < 2; k++) {
		if (uv_is_closing((uv_handle_t *)&r->pipes[k]))
			continue;
		if (pause)
			uv_read_stop((uv_stream_t *)&r->pipes[k]);
		else
			uv_read_start((uv_stream_t *)&r->pipes[k], run_alloc, run_read);
	}
}

void deploy_run_cancel(struct deploy_run *r)
{
	r->ctx = NULL;
	deploy_run_pause(r, false); /* whatever is left goes to the log */
	if (!r->exited)
		run_kill(r);
}

void dp_runs_free(struct deploy *d)
{
	while (d->runs) {
		struct deploy_run *r = d->runs;
		r->ctx = NULL;
		if (!r->exited) {
			run_kill(r);
			store_proc_delete(d->cfg.store, r->proc.pid);
		}
		run_unlink(r);
		uv_handle_t *hs[] = {(uv_handle_t *)&r->pipes[0], (uv_handle_t *)&r->pipes[1],
				     (uv_handle_t *)&r->timeout, (uv_handle_t *)&r->proc};
		for (size_t k = 0; k < ARRAY_SIZE(hs); k++)
			if (!uv_is_closing(hs[k]))
				uv_close(hs[k], run_closed);
	}
}
