/* supervisor_inst.c: the life of one instance slot: spawn into its own
 * process group, capture output, health checks, restart policy with backoff
 * and crash-loop detection, graceful stop. Every state change goes through
 * set_state(), which checks it against the transition table and records an
 * event. */
#include "compat/http.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/runas.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "spec/spec.h"
#include "store/store.h"
#include "supervisor/supervisor_internal.h"
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern char **environ;

static const char *const state_names[SV_NSTATES] = {
	[SV_STOPPED] = "stopped",   [SV_STARTING] = "starting", [SV_READY] = "ready",
	[SV_UNHEALTHY] = "unhealthy", [SV_STOPPING] = "stopping", [SV_EXITED] = "exited",
	[SV_CRASHED] = "crashed",   [SV_BACKOFF] = "backoff",
};

const char *sv_state_name(enum sv_state s)
{
	return s < SV_NSTATES ? state_names[s] : "unknown";
}

/* allowed[from][to]: every legal transition, in one place. */
static const bool allowed[SV_NSTATES][SV_NSTATES] = {
	[SV_STOPPED] = {[SV_STARTING] = true},
	[SV_STARTING] = {[SV_READY] = true, [SV_STOPPING] = true, [SV_EXITED] = true,
			 [SV_BACKOFF] = true, [SV_CRASHED] = true, [SV_STARTING] = true},
	[SV_READY] = {[SV_UNHEALTHY] = true, [SV_STOPPING] = true, [SV_EXITED] = true,
		      [SV_BACKOFF] = true, [SV_CRASHED] = true, [SV_STARTING] = true},
	[SV_UNHEALTHY] = {[SV_STOPPING] = true, [SV_EXITED] = true, [SV_BACKOFF] = true,
			  [SV_CRASHED] = true, [SV_STARTING] = true},
	[SV_STOPPING] = {[SV_STOPPED] = true, [SV_STARTING] = true},
	[SV_EXITED] = {[SV_STARTING] = true, [SV_STOPPED] = true},
	[SV_CRASHED] = {[SV_STARTING] = true, [SV_STOPPED] = true},
	[SV_BACKOFF] = {[SV_STARTING] = true, [SV_STOPPED] = true, [SV_CRASHED] = true},
};

struct sv_check {
	struct sv_inst *inst; /* NULL once cancelled */
	uv_tcp_t tcp;
	uv_connect_t conn;
	uv_write_t wr;
	uv_process_t proc;
	uv_timer_t timeout;
	struct http_parser *parser;
	char *request;
	char rbuf[4096];
	int open;
	bool done;
};

void sv_emit(struct supervisor *sv, const char *app, const char *proc, const char *inst,
	     const char *type, const char *state, const char *reason, int pid, int exit_status,
	     int sig)
{
	struct store_event ev = {
		.time = time_wall_ms(),
		.app = app,
		.process = proc,
		.instance = inst,
		.type = type,
		.state = state,
		.reason = reason,
		.pid = pid,
		.exit_status = exit_status,
		.signal = sig,
	};
	store_event_add(sv->store, &ev);
	if (sv->hooks.event)
		sv->hooks.event(sv->hooks_ctx, &ev);
	log_info("%s%s%s%s: %s", inst ? inst : app, state ? " " : "", state ? state : "",
		 reason && *reason ? "" : "", reason ? reason : type);
}

static void set_state(struct sv_inst *i, enum sv_state to, const char *reason, int exit_status,
		      int sig)
{
	if (!allowed[i->state][to]) {
		log_error("%s: refused transition %s -> %s", i->id, sv_state_name(i->state),
			  sv_state_name(to));
		return;
	}
	bool routed_before = i->state == SV_READY;
	i->state = to;
	strlcpy_s(i->reason, reason ? reason : "", sizeof(i->reason));
	struct sv_proc *p = i->proc;
	struct supervisor *sv = p->app->sv;
	if (routed_before != (to == SV_READY) && sv->hooks.changed)
		sv->hooks.changed(sv->hooks_ctx);
	if (p->app->rollout)
		sv_rollout_kick(p->app);
	sv_emit(p->app->sv, p->app->name, p->name, i->id, "state", sv_state_name(to), reason,
		i->run ? i->run->pid : i->last_pid, exit_status, sig);
}

/* ---- logs ---- */

void sv_ring_push(struct sv_ring *r, uint64_t seq, int stream, const char *text, size_t n)
{
	struct sv_line *l;
	if (r->count == SV_RING_LINES) {
		l = &r->lines[r->head];
		free(l->text);
		r->head = (r->head + 1) % SV_RING_LINES;
	} else {
		if (r->count == r->cap) {
			r->cap = r->cap ? r->cap * 2 : 16;
			if (r->cap > SV_RING_LINES)
				r->cap = SV_RING_LINES;
			r->lines = xrealloc(r->lines, r->cap * sizeof(*r->lines));
		}
		l = &r->lines[r->count++];
	}
	l->seq = seq;
	l->time = time_wall_ms();
	l->stream = (uint8_t)stream;
	l->text = xstrndup(text, n);
}

const struct sv_line *sv_ring_at(const struct sv_ring *r, size_t k)
{
	return &r->lines[(r->head + k) % (r->count == SV_RING_LINES ? SV_RING_LINES : r->cap)];
}

void sv_ring_release(struct sv_ring *r)
{
	for (size_t k = 0; k < r->count; k++)
		free(sv_ring_at(r, k)->text);
	free(r->lines);
	memset(r, 0, sizeof(*r));
}

static void ring_push(struct sv_inst *i, int stream, const char *text, size_t n)
{
	struct supervisor *sv = i->proc->app->sv;
	sv_ring_push(&i->ring, ++sv->log_seq, stream, text, n);
	if (sv->hooks.log_line)
		sv->hooks.log_line(sv->hooks_ctx, time_wall_ms(), i->proc->app->name, i->proc->name, i->id,
				   i->rel->version, stream, text, n);
}

/* Splits buffered output into lines (over SV_LINE_MAX bytes: split). */
static void take_lines(struct sv_run *run, int stream, bool flush)
{
	struct strbuf *b = &run->partial[stream];
	size_t start = 0;
	for (;;) {
		if (run->cut[stream] && start < b->len) {
			run->cut[stream] = false;
			if (b->buf[start] == '\n' && ++start == b->len)
				break;
		}
		char *nl = memchr(b->buf + start, '\n', b->len - start);
		size_t n = nl ? (size_t)(nl - (b->buf + start)) : b->len - start;
		if (!nl && n < SV_LINE_MAX && !(flush && n > 0))
			break;
		if (n > SV_LINE_MAX) {
			n = SV_LINE_MAX;
			nl = NULL;
		}
		if (run->inst)
			ring_push(run->inst, stream, b->buf + start, n);
		run->cut[stream] = !nl;
		start += n + (nl ? 1 : 0);
		if (start >= b->len)
			break;
	}
	strbuf_consume(b, start);
}

/* ---- runs: one spawned process ---- */

static void run_handle_closed(uv_handle_t *h)
{
	struct sv_run *run = h->data;
	if (--run->open > 0)
		return;
	if (run->inst) {
		struct sv_run **p = &run->inst->draining;
		while (*p && *p != run)
			p = &(*p)->next_draining;
		if (*p)
			*p = run->next_draining;
	}
	strbuf_release(&run->partial[0]);
	strbuf_release(&run->partial[1]);
	free(run);
}

static void pipe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct sv_run *run = h->data;
	int stream = (uv_pipe_t *)h == &run->pipes[1];
	struct strbuf *b = &run->partial[stream];
	strbuf_grow(b, 16384);
	buf->base = b->buf + b->len;
	buf->len = b->alloc - b->len - 1;
}

/* Output that ends without a newline (a prompt, a crash mid-line) is taken
 * as a line once it has waited SV_PARTIAL_MS. */
static void flush_partial(uv_timer_t *t)
{
	struct sv_run *run = t->data;
	take_lines(run, 0, true);
	take_lines(run, 1, true);
}

static void pipe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* Reads output again after a pause for the log store. */
static void run_resume(struct sv_run *run)
{
	run->paused = false;
	uv_timer_stop(&run->resume);
	for (int k = 0; k < 2; k++)
		if (!uv_is_closing((uv_handle_t *)&run->pipes[k]))
			uv_read_start((uv_stream_t *)&run->pipes[k], pipe_alloc, pipe_read);
}

static void resume_check(uv_timer_t *t)
{
	struct sv_run *run = t->data;
	struct supervisor *sv = run->sv;
	if (!run->inst || !sv->hooks.log_busy(sv->hooks_ctx, run->inst->proc->app->name, run->inst->id))
		run_resume(run);
}

static void pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct sv_run *run = s->data;
	int stream = (uv_pipe_t *)s == &run->pipes[1];
	if (n > 0) {
		struct strbuf *b = &run->partial[stream];
		b->len += (size_t)n;
		b->buf[b->len] = '\0';
		take_lines(run, stream, false);
		if (b->len && !uv_is_active((uv_handle_t *)&run->flush))
			uv_timer_start(&run->flush, flush_partial, SV_PARTIAL_MS, 0);
		struct supervisor *sv = run->sv;
		if (!run->paused && !run->exited && run->inst && sv->hooks.log_busy &&
		    sv->hooks.log_busy(sv->hooks_ctx, run->inst->proc->app->name, run->inst->id)) {
			run->paused = true;
			uv_read_stop((uv_stream_t *)&run->pipes[0]);
			uv_read_stop((uv_stream_t *)&run->pipes[1]);
			uv_timer_start(&run->resume, resume_check, SV_LOG_PAUSE_MS, SV_LOG_PAUSE_MS);
		}
	} else if (n < 0) {
		take_lines(run, stream, true);
		uv_read_stop(s);
		uv_close((uv_handle_t *)s, run_handle_closed);
	}
}

/* ---- health checks ---- */

static void check_closed(uv_handle_t *h)
{
	struct sv_check *c = h->data;
	if (--c->open > 0)
		return;
	http_parser_free(c->parser);
	free(c->request);
	free(c);
}

static void check_close_all(struct sv_check *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->timeout))
		uv_close((uv_handle_t *)&c->timeout, check_closed);
	if (c->tcp.data && !uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, check_closed);
	/* A command check's process handle closes from its exit callback. */
}

static void schedule_check(struct sv_inst *i);
static void on_unhealthy(struct sv_inst *i, const char *why);

static void check_result(struct sv_check *c, bool ok, const char *why)
{
	if (c->done)
		return;
	c->done = true;
	uv_timer_stop(&c->timeout);
	struct sv_inst *i = c->inst;
	if (c->proc.data && c->open && !ok)
		uv_process_kill(&c->proc, SIGKILL);
	check_close_all(c);
	if (!i)
		return;
	i->check = NULL;
	c->inst = NULL;
	const struct spec_health *h = &i->sp->health;
	if (ok) {
		struct supervisor *sv = i->proc->app->sv;
		if (sv->hooks.check_passed)
			sv->hooks.check_passed(sv->hooks_ctx, i->id);
		i->fail_streak = 0;
		i->ok_streak++;
		if (i->state == SV_STARTING && i->ok_streak >= h->healthy) {
			uv_timer_stop(&i->t_state);
			i->ready_since = time_mono_ms();
			set_state(i, SV_READY, "health check passed", -1, 0);
		}
	} else {
		i->ok_streak = 0;
		i->fail_streak++;
		if (i->state == SV_READY && i->fail_streak >= h->unhealthy) {
			char msg[200];
			snprintf(msg, sizeof(msg), "health check failed %d times: %s", i->fail_streak,
				 why);
			on_unhealthy(i, msg);
			return;
		}
	}
	schedule_check(i);
}

static void check_timeout(uv_timer_t *t)
{
	check_result(t->data, false, "timed out");
}

static void check_http_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct sv_check *c = s->data;
	if (c->done)
		return;
	int r;
	if (n > 0) {
		size_t used;
		r = http_parser_feed(c->parser, buf->base, (size_t)n, &used);
		if (r == HTTP_FEED_MORE)
			return;
	} else if (n < 0) {
		r = http_parser_finish(c->parser);
	} else {
		return;
	}
	if (r == HTTP_FEED_COMPLETE) {
		int status = http_parser_msg(c->parser)->status;
		char why[64];
		snprintf(why, sizeof(why), "status %d", status);
		check_result(c, status >= 200 && status < 400, why);
	} else {
		check_result(c, false, n < 0 ? "connection closed before a response" : "malformed response");
	}
}

static void check_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct sv_check *c = h->data;
	buf->base = c->rbuf;
	buf->len = sizeof(c->rbuf);
}

static void check_written(uv_write_t *w, int status)
{
	struct sv_check *c = w->data;
	if (status < 0)
		check_result(c, false, uv_strerror(status));
}

static void check_connected(uv_connect_t *req, int status)
{
	struct sv_check *c = req->data;
	if (c->done)
		return;
	if (status < 0) {
		check_result(c, false, uv_strerror(status));
		return;
	}
	if (!c->request) {
		check_result(c, true, "connected");
		return;
	}
	uv_buf_t b = uv_buf_init(c->request, (unsigned)strlen(c->request));
	c->wr.data = c;
	uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, check_written);
	uv_read_start((uv_stream_t *)&c->tcp, check_alloc, check_http_read);
}

static void check_cmd_exit(uv_process_t *p, int64_t status, int sig)
{
	struct sv_check *c = p->data;
	uv_close((uv_handle_t *)p, check_closed);
	char why[64];
	snprintf(why, sizeof(why), sig ? "killed by signal %d" : "exit status %d", sig ? sig : (int)status);
	check_result(c, status == 0 && sig == 0, why);
}

static char **build_env(struct sv_inst *i);
static void free_env(char **env);

static void run_check(uv_timer_t *t)
{
	struct sv_inst *i = t->data;
	const struct spec_health *h = &i->sp->health;
	struct supervisor *sv = i->proc->app->sv;
	if (!i->run || i->check)
		return;
	struct sv_check *c = xcalloc(1, sizeof(*c));
	c->inst = i;
	i->check = c;
	uv_timer_init(sv->loop, &c->timeout);
	c->timeout.data = c;
	c->open = 1;
	uv_timer_start(&c->timeout, check_timeout, (uint64_t)h->timeout_ms, 0);
	if (h->kind == SPEC_HEALTH_CMD) {
		char *args[] = {"/bin/sh", "-c", h->target, NULL};
		char **env = build_env(i);
		uv_process_options_t o = {
			.file = "/bin/sh",
			.args = args,
			.env = env,
			.cwd = i->rel->dir,
			.flags = UV_PROCESS_DETACHED,
			.exit_cb = check_cmd_exit,
		};
		supervisor_spawn_as(sv, &o);
		uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = UV_IGNORE}};
		o.stdio = stdio;
		o.stdio_count = 3;
		c->proc.data = c;
		int r = uv_spawn(sv->loop, &c->proc, &o);
		free_env(env);
		if (r < 0) {
			c->proc.data = NULL;
			uv_close((uv_handle_t *)&c->proc, NULL);
			check_result(c, false, uv_strerror(r));
			return;
		}
		c->open++;
		return;
	}
	uv_tcp_init(sv->loop, &c->tcp);
	c->tcp.data = c;
	c->open++;
	if (h->kind == SPEC_HEALTH_HTTP) {
		c->request = xasprintf("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: paasops-health\r\n"
				       "Connection: close\r\n\r\n",
				       h->target, i->port);
		c->parser = http_parser_new(HTTP_KIND_RESPONSE, 65536, 0);
		http_parser_stream_body(c->parser, NULL, NULL);
	}
	struct sockaddr_in addr;
	uv_ip4_addr("127.0.0.1", i->port, &addr);
	c->conn.data = c;
	int r = uv_tcp_connect(&c->conn, &c->tcp, (struct sockaddr *)&addr, check_connected);
	if (r < 0)
		check_result(c, false, uv_strerror(r));
}

static void check_cancel(struct sv_inst *i)
{
	struct sv_check *c = i->check;
	if (!c)
		return;
	i->check = NULL;
	c->inst = NULL;
	if (!c->done) {
		c->done = true;
		uv_timer_stop(&c->timeout);
		if (c->proc.data && !uv_is_closing((uv_handle_t *)&c->proc))
			uv_process_kill(&c->proc, SIGKILL);
		check_close_all(c);
	}
}

static void noncheck_ready(uv_timer_t *t)
{
	struct sv_inst *i = t->data;
	if (i->state == SV_STARTING) {
		uv_timer_stop(&i->t_state);
		i->ready_since = time_mono_ms();
		set_state(i, SV_READY, "running for 1s (no health check)", -1, 0);
	}
}

static void schedule_check(struct sv_inst *i)
{
	const struct spec_health *h = &i->sp->health;
	if (!i->run || i->run->exited || (i->state != SV_STARTING && i->state != SV_READY))
		return;
	if (h->kind == SPEC_HEALTH_NONE) {
		if (i->state == SV_STARTING)
			uv_timer_start(&i->t_health, noncheck_ready, SV_NOCHECK_READY_MS, 0);
		return;
	}
	int64_t delay = h->interval_ms;
	if (i->state == SV_STARTING && delay > SV_BOOT_PROBE_MS)
		delay = SV_BOOT_PROBE_MS;
	uv_timer_start(&i->t_health, run_check, (uint64_t)delay, 0);
}

/* ---- spawning ---- */

static bool port_free(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

static int port_take(struct supervisor *sv)
{
	int span = sv->port_max - sv->port_min + 1;
	for (int k = 0; k < span; k++) {
		int port = sv->port_min + (sv->port_next + k) % span;
		if (sv->port_used[port - sv->port_min])
			continue;
		if (!port_free(port))
			continue;
		sv->port_used[port - sv->port_min] = 1;
		sv->port_next = (port - sv->port_min + 1) % span;
		return port;
	}
	return -EADDRINUSE;
}

static void port_release(struct supervisor *sv, int port)
{
	if (port >= sv->port_min && port <= sv->port_max)
		sv->port_used[port - sv->port_min] = 0;
}

static const char *const passed_env[] = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"};

const struct runas *supervisor_run_as(const struct supervisor *sv)
{
	return sv->run_as;
}

void supervisor_spawn_as(const struct supervisor *sv, uv_process_options_t *o)
{
	if (!sv->run_as)
		return;
	o->uid = sv->run_as->uid;
	o->gid = sv->run_as->gid;
	o->flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
}

const char *supervisor_spawn_env(const struct supervisor *sv, const char *name)
{
	if (sv->run_as && !strcmp(name, "HOME"))
		return sv->run_as->home;
	if (sv->run_as && (!strcmp(name, "USER") || !strcmp(name, "LOGNAME")))
		return sv->run_as->user;
	return getenv(name);
}

static void env_put(char ***env, size_t *n, size_t *alloc, const char *k, const char *v)
{
	size_t klen = strlen(k);
	for (size_t j = 0; j < *n; j++) {
		if (strncmp((*env)[j], k, klen) == 0 && (*env)[j][klen] == '=') {
			free((*env)[j]);
			(*env)[j] = xasprintf("%s=%s", k, v);
			return;
		}
	}
	*env = xgrow(*env, sizeof(**env), *n + 2, alloc);
	(*env)[(*n)++] = xasprintf("%s=%s", k, v);
	(*env)[*n] = NULL;
}

/* The environment of an instance: a few variables of the daemon's, the
 * app's env, the process type's env, then PORT, HOST and identity. */
static char **build_env(struct sv_inst *i)
{
	struct sv_proc *p = i->proc;
	const struct spec *s = i->rel->spec;
	char **env = NULL;
	size_t n = 0, alloc = 0;
	for (size_t k = 0; k < ARRAY_SIZE(passed_env); k++) {
		const char *v = supervisor_spawn_env(p->app->sv, passed_env[k]);
		if (v)
			env_put(&env, &n, &alloc, passed_env[k], v);
	}
	if (!getenv("PATH"))
		env_put(&env, &n, &alloc, "PATH", "/usr/local/bin:/usr/bin:/bin");
	for (size_t k = 0; k < s->n_env; k++)
		env_put(&env, &n, &alloc, s->env[k].key, s->env[k].value);
	for (size_t k = 0; k < i->sp->n_env; k++)
		env_put(&env, &n, &alloc, i->sp->env[k].key, i->sp->env[k].value);
	for (size_t k = 0; k < i->rel->n_config; k++)
		if (!str_starts_with(i->rel->config[k].key, "PAASOPS_WEBHOOK_")) /* the platform's, not the app's */
			env_put(&env, &n, &alloc, i->rel->config[k].key, i->rel->config[k].value);
	char port[16];
	snprintf(port, sizeof(port), "%d", i->port);
	env_put(&env, &n, &alloc, "PORT", port);
	env_put(&env, &n, &alloc, "HOST", "127.0.0.1");
	env_put(&env, &n, &alloc, "PAASOPS_APP", p->app->name);
	env_put(&env, &n, &alloc, "PAASOPS_PROCESS", p->name);
	env_put(&env, &n, &alloc, "PAASOPS_INSTANCE", i->id);
	return env;
}

static void free_env(char **env)
{
	for (char **e = env; e && *e; e++)
		free(*e);
	free(env);
}


/* Shell builtins cannot be exec'd. */
static const char *const builtins[] = {
	"exit", "cd", "export", "set", "unset", "trap", "wait", ".", "eval", "exec", "read",
	"shift", "return", "break", "continue", "alias", "readonly", "umask", "ulimit", "local",
	"getopts", "hash", "jobs", "fg", "bg", "command", "type", "times", "source",
};

char *supervisor_command_line(const char *command)
{
	if (strpbrk(command, ";&|<>()$`\\\"'*?[]#~=%{}\n"))
		return xstrdup(command);
	size_t n = strcspn(command, " \t");
	for (size_t k = 0; k < ARRAY_SIZE(builtins); k++)
		if (strlen(builtins[k]) == n && strncmp(command, builtins[k], n) == 0)
			return xstrdup(command);
	return xasprintf("exec %s", command);
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int sig);
static void state_timer_boot(uv_timer_t *t);

static bool crash_looping(struct sv_inst *i)
{
	if (i->n_starts < SV_CRASH_STARTS)
		return false;
	/* starts[] is a ring; the oldest of the last SV_CRASH_STARTS is at n_starts % N. */
	int64_t oldest = i->starts[i->n_starts % SV_CRASH_STARTS];
	return time_mono_ms() - oldest < SV_CRASH_WINDOW_MS;
}

static void spawn_failed(struct sv_inst *i, const char *why);

void sv_inst_start(struct sv_inst *i, const char *reason)
{
	struct sv_proc *p = i->proc;
	struct supervisor *sv = p->app->sv;
	if (i->run || sv->shutting_down)
		return;
	uv_timer_stop(&i->t_state);
	uv_timer_stop(&i->t_health);
	i->ok_streak = i->fail_streak = 0;
	i->ready_since = 0;
	i->starts[i->n_starts % SV_CRASH_STARTS] = time_mono_ms();
	i->n_starts++;
	int port = port_take(sv);
	if (port < 0) {
		spawn_failed(i, "no free port in the instance port range");
		return;
	}
	i->port = port;

	struct sv_run *run = xcalloc(1, sizeof(*run));
	run->inst = i;
	run->sv = sv;
	strbuf_init(&run->partial[0], 0);
	strbuf_init(&run->partial[1], 0);
	uv_pipe_init(sv->loop, &run->pipes[0], 0);
	uv_pipe_init(sv->loop, &run->pipes[1], 0);
	run->pipes[0].data = run->pipes[1].data = run->proc.data = run;
	run->open = 2;

	/* A simple command replaces the shell, so that signals and the exit
	 * status are the app's own. */
	char *cmd = supervisor_command_line(i->sp->command);
	char *args[] = {"/bin/sh", "-c", cmd, NULL};
	char **env = build_env(i);
	uv_stdio_container_t stdio[3] = {
		{.flags = UV_IGNORE},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&run->pipes[0]},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&run->pipes[1]},
	};
	uv_process_options_t o = {
		.file = "/bin/sh",
		.args = args,
		.env = env,
		.cwd = i->rel->dir,
		.flags = UV_PROCESS_DETACHED,
		.exit_cb = on_exit_cb,
		.stdio = stdio,
		.stdio_count = 3,
	};
	supervisor_spawn_as(sv, &o);
	int r = uv_spawn(sv->loop, &run->proc, &o);
	free_env(env);
	free(cmd);
	if (r < 0) {
		uv_close((uv_handle_t *)&run->proc, NULL);
		run->inst = NULL;
		uv_close((uv_handle_t *)&run->pipes[0], run_handle_closed);
		uv_close((uv_handle_t *)&run->pipes[1], run_handle_closed);
		port_release(sv, i->port);
		char why[300];
		snprintf(why, sizeof(why), "cannot start in '%s': %s", i->rel->dir, uv_strerror(r));
		spawn_failed(i, why);
		return;
	}
	run->open++;
	uv_timer_init(sv->loop, &run->flush);
	run->flush.data = run;
	run->open++;
	uv_timer_init(sv->loop, &run->resume);
	run->resume.data = run;
	run->open++;
	run->pid = run->proc.pid;
	i->run = run;
	i->last_pid = run->pid;
	sv->alive++;
	uv_read_start((uv_stream_t *)&run->pipes[0], pipe_alloc, pipe_read);
	uv_read_start((uv_stream_t *)&run->pipes[1], pipe_alloc, pipe_read);

	/* Limits. */
	free(i->cgroup);
	i->cgroup = NULL;
	i->limits_enforced = false;
	const struct spec_resources *res = &i->sp->resources;
	if (res->memory_bytes > 0 || res->cpu > 0) {
		char name[300];
		snprintf(name, sizeof(name), "%s.%d", i->id, run->pid);
		i->cgroup = cgroup_create(&sv->cgroups, name, res->memory_bytes, res->cpu);
		if (i->cgroup && cgroup_attach(i->cgroup, run->pid) == 0)
			i->limits_enforced = true;
	}
	struct store_proc rec = {
		.instance = i->id,
		.pid = run->pid,
		.start_ticks = proc_start_ticks(run->pid),
		.cgroup = i->cgroup,
	};
	store_proc_put(sv->store, &rec);

	/* Many starts can happen in one loop turn (an apply of 1,000
	 * instances): timers must count from now, not the loop's cached time. */
	uv_update_time(sv->loop);
	i->started_wall = time_wall_ms();
	i->started_mono = time_mono_ms();
	set_state(i, SV_STARTING, reason, -1, 0);
	uv_timer_start(&i->t_state, state_timer_boot, (uint64_t)i->sp->health.boot_deadline_ms, 0);
	schedule_check(i);
}

/* ---- stopping and exits ---- */

static void kill_group(int pid, int sig)
{
	if (pid > 0)
		kill(-pid, sig);
}

static void stop_timer_kill(uv_timer_t *t)
{
	struct sv_inst *i = t->data;
	if (i->run && !i->run->exited) {
		char why[128];
		snprintf(why, sizeof(why), "did not exit within stop_timeout; sending SIGKILL");
		log_warn("%s: %s", i->id, why);
		kill_group(i->run->pid, SIGKILL);
	}
}

static void send_term(struct sv_inst *i)
{
	uv_timer_stop(&i->t_drain);
	if (!i->run || i->run->exited)
		return;
	kill_group(i->run->pid, SIGTERM);
	uv_timer_start(&i->t_state, stop_timer_kill, (uint64_t)i->sp->stop_timeout_ms, 0);
}

static void drain_poll(uv_timer_t *t)
{
	struct sv_inst *i = t->data;
	struct supervisor *sv = i->proc->app->sv;
	if (i->state != SV_STOPPING) {
		uv_timer_stop(t);
		return;
	}
	if (sv->hooks.drained(sv->hooks_ctx, i->id) || time_mono_ms() >= i->drain_deadline)
		send_term(i);
}

/* Stopping an instance that took traffic first drains it: the router stops
 * sending it new requests at once (it is no longer ready), and SIGTERM goes
 * out only when its in-flight requests are done or stop_timeout passed. */
static void begin_stop(struct sv_inst *i, const char *reason)
{
	struct supervisor *sv = i->proc->app->sv;
	bool routed = i->state == SV_READY || i->state == SV_UNHEALTHY;
	uv_timer_stop(&i->t_health);
	uv_timer_stop(&i->t_state);
	check_cancel(i);
	set_state(i, SV_STOPPING, reason, -1, 0);
	if (routed && sv->hooks.drained) {
		i->drain_deadline = time_mono_ms() + i->sp->stop_timeout_ms;
		uv_timer_start(&i->t_drain, drain_poll, 0, 10);
		return;
	}
	send_term(i);
}

static void on_unhealthy(struct sv_inst *i, const char *why)
{
	set_state(i, SV_UNHEALTHY, why, -1, 0);
	i->restart_after_stop = true;
	begin_stop(i, "restarting an unhealthy instance");
}

static void state_timer_boot(uv_timer_t *t)
{
	struct sv_inst *i = t->data;
	if (i->state != SV_STARTING)
		return;
	char why[160], d[32];
	duration_format(i->sp->health.boot_deadline_ms, d, sizeof(d));
	snprintf(why, sizeof(why), "health check did not pass within %s; restarting", d);
	i->restart_after_stop = true;
	begin_stop(i, why);
}

void sv_inst_stop(struct sv_inst *i, const char *reason)
{
	i->restart_after_stop = false;
	if (i->run && !i->run->exited) {
		if (i->state != SV_STOPPING)
			begin_stop(i, reason);
		return;
	}
	uv_timer_stop(&i->t_state);
	uv_timer_stop(&i->t_health);
	if (i->state != SV_STOPPED && i->state != SV_STOPPING)
		set_state(i, SV_STOPPED, reason, -1, 0);
	if (i->removing && !i->run)
		sv_inst_teardown(i);
}

bool sv_inst_alive(const struct sv_inst *i)
{
	return i->run != NULL;
}

static void backoff_fire(uv_timer_t *t)
{
	struct sv_inst *i = t->data;
	if (i->state == SV_BACKOFF)
		sv_inst_start(i, "restarting after backoff");
}

/* Whether the slot should run. Its index says nothing: after a rollout
 * the instances of a process type may be numbered 3 and 4 of 2; slots
 * beyond the desired count are retired by reconciling instead. */
static bool wanted(const struct sv_inst *i)
{
	const struct sv_proc *p = i->proc;
	return !i->removing && !p->removed && !p->stopped && !p->app->stopped &&
	       !p->app->destroying && !p->app->sv->shutting_down;
}

/* The restart policy: called after an exit that nobody asked for. */
static void apply_policy(struct sv_inst *i, int status, int sig, const char *what)
{
	bool failed = status != 0 || sig != 0;
	enum spec_restart pol = i->sp->restart;
	if (pol == SPEC_RESTART_NEVER || (pol == SPEC_RESTART_ON_FAILURE && !failed)) {
		set_state(i, SV_EXITED, what, status, sig);
		return;
	}
	if (crash_looping(i)) {
		char why[300];
		snprintf(why, sizeof(why),
			 "%s; %d starts within %ds: not restarting until the next restart or apply",
			 what, SV_CRASH_STARTS, SV_CRASH_WINDOW_MS / 1000);
		set_state(i, SV_CRASHED, why, status, sig);
		return;
	}
	i->restarts++;
	int64_t delay = i->backoff_ms;
	i->backoff_ms = i->backoff_ms ? i->backoff_ms * 2 : SV_BACKOFF_MIN_MS;
	if (i->backoff_ms > SV_BACKOFF_MAX_MS)
		i->backoff_ms = SV_BACKOFF_MAX_MS;
	if (delay == 0) {
		char why[300];
		snprintf(why, sizeof(why), "%s; restarting now", what);
		set_state(i, SV_EXITED, why, status, sig);
		sv_inst_start(i, "restarting");
		return;
	}
	char why[300], d[32];
	duration_format(delay, d, sizeof(d));
	snprintf(why, sizeof(why), "%s; restarting in %s", what, d);
	set_state(i, SV_BACKOFF, why, status, sig);
	uv_timer_start(&i->t_state, backoff_fire, (uint64_t)delay, 0);
}

static void spawn_failed(struct sv_inst *i, const char *why)
{
	log_error("%s: %s", i->id, why);
	/* Every attempt passes through starting (a retry after a backoff too),
	 * from where the restart policy takes over. */
	i->state = SV_STARTING;
	apply_policy(i, 127, 0, why);
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
	struct sv_run *run = proc->data;
	struct supervisor *sv = run->sv;
	run->exited = true;
	sv->alive--;
	/* No member of the group may outlive its leader. */
	kill_group(run->pid, SIGKILL);
	store_proc_delete(sv->store, run->pid);
	uv_close((uv_handle_t *)proc, run_handle_closed);
	uv_close((uv_handle_t *)&run->flush, run_handle_closed);
	if (run->paused)
		run_resume(run); /* the rest of the output, up to EOF */
	uv_close((uv_handle_t *)&run->resume, run_handle_closed);
	struct sv_inst *i = run->inst;
	if (!i) {
		sv_check_shutdown_done(sv);
		return;
	}
	i->run = NULL;
	/* Its pipes are read up to EOF into the instance's log: a process that
	 * left the group may hold them open longer than the slot lives. */
	run->next_draining = i->draining;
	i->draining = run;
	i->last_exit_status = sig ? -1 : (int)status;
	i->last_signal = sig;
	if (i->cgroup) {
		cgroup_destroy(i->cgroup);
		free(i->cgroup);
		i->cgroup = NULL;
	}
	port_release(sv, i->port);
	uv_timer_stop(&i->t_health);
	uv_timer_stop(&i->t_state);
	uv_timer_stop(&i->t_drain);
	check_cancel(i);
	char what[96];
	if (sig)
		snprintf(what, sizeof(what), "killed by signal %d (%s)", sig, strsignal(sig));
	else
		snprintf(what, sizeof(what), "exited with status %d", (int)status);

	if (i->ready_since && time_mono_ms() - i->ready_since >= SV_BACKOFF_RESET_MS)
		i->backoff_ms = 0;
	i->ready_since = 0;

	if (i->state == SV_STOPPING) {
		bool again = i->restart_after_stop && wanted(i);
		i->restart_after_stop = false;
		set_state(i, SV_STOPPED, what, sig ? -1 : (int)status, sig);
		if (again)
			sv_inst_start(i, "restarted");
		else if (i->removing)
			sv_inst_teardown(i);
	} else if (!wanted(i)) {
		set_state(i, SV_EXITED, what, sig ? -1 : (int)status, sig);
		if (i->removing)
			sv_inst_teardown(i);
	} else {
		apply_policy(i, sig ? -1 : (int)status, sig, what);
	}
	sv_check_shutdown_done(sv);
}

void sv_inst_restart(struct sv_inst *i, const char *reason)
{
	i->n_starts = 0;
	i->backoff_ms = 0;
	if (i->run && !i->run->exited) {
		if (i->state != SV_STOPPING)
			begin_stop(i, reason);
		i->restart_after_stop = true;
		return;
	}
	uv_timer_stop(&i->t_state);
	if (i->state == SV_EXITED || i->state == SV_CRASHED || i->state == SV_BACKOFF)
		set_state(i, SV_STOPPED, reason, -1, 0);
	if (wanted(i))
		sv_inst_start(i, reason);
}

/* ---- slots ---- */

static void inst_handle_closed(uv_handle_t *h)
{
	struct sv_inst *i = h->data;
	if (--i->open_handles > 0)
		return;
	sv_ring_release(&i->ring);
	sv_release_unref(i->rel);
	free(i->fp);
	free(i->cgroup);
	free(i->id);
	free(i);
}

struct sv_inst *sv_inst_new(struct sv_proc *p, int index, struct sv_release *rel)
{
	struct supervisor *sv = p->app->sv;
	struct sv_inst *i = xcalloc(1, sizeof(*i));
	i->proc = p;
	i->rel = sv_release_ref(rel);
	i->sp = spec_process(rel->spec, p->name);
	i->fp = sv_fingerprint(rel, i->sp);
	i->index = index;
	i->gen = p->restart_gen;
	i->id = xasprintf("%s.%s.%d", p->app->name, p->name, index);
	i->state = SV_STOPPED;
	i->last_exit_status = -1;
	uv_timer_init(sv->loop, &i->t_state);
	uv_timer_init(sv->loop, &i->t_health);
	uv_timer_init(sv->loop, &i->t_drain);
	i->t_state.data = i->t_health.data = i->t_drain.data = i;
	i->open_handles = 3;
	p->insts = xgrow(p->insts, sizeof(*p->insts), p->n_insts + 1, &p->alloc_insts);
	p->insts[p->n_insts++] = i;
	return i;
}

void sv_inst_teardown(struct sv_inst *i)
{
	if (i->torn_down)
		return;
	i->torn_down = true;
	check_cancel(i);
	if (i->run) {
		/* Still running: detach; its exit is only accounted, not acted on. */
		i->run->inst = NULL;
		kill_group(i->run->pid, SIGKILL);
		i->run = NULL;
	}
	for (struct sv_run *r = i->draining; r; r = r->next_draining)
		r->inst = NULL;
	i->draining = NULL;
	if (i->cgroup) {
		cgroup_destroy(i->cgroup);
	}
	struct sv_proc *p = i->proc;
	for (size_t k = 0; k < p->n_insts; k++) {
		if (p->insts[k] == i) {
			memmove(&p->insts[k], &p->insts[k + 1], (p->n_insts - k - 1) * sizeof(*p->insts));
			p->n_insts--;
			break;
		}
	}
	uv_close((uv_handle_t *)&i->t_state, inst_handle_closed);
	uv_close((uv_handle_t *)&i->t_health, inst_handle_closed);
	uv_close((uv_handle_t *)&i->t_drain, inst_handle_closed);
	sv_proc_slot_gone(p);
}
