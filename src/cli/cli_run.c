/* cli_run.c: `paasops run APP [--timeout D] -- COMMAND [ARGS...]`, a
 * one-off command in the app's live release (POST /v1/apps/NAME/run).
 * The command's stdout and stderr come back as they are written and go to
 * ours; its exit status becomes ours. Ctrl-C (or losing the connection)
 * has the daemon kill it.
 *
 * When our stdin and stdout are a terminal (or with --tty), the command
 * gets a terminal of its own on the daemon's side: ours is put in raw
 * mode, and a second thread sends what is typed (Ctrl-C included: it is
 * the remote terminal's to turn into a signal) and each new window size
 * to POST /v1/apps/NAME/runs/RUN/input, while this one prints what comes
 * back. The terminal is restored however the run ends. */
#include "cli/cli_internal.h"
#include "compat/json.h"
#include "core/strbuf.h"
#include "core/util.h"
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

const struct cli_opt cli__run_opts[] = {
	{"timeout", 0, "DURATION", false, "kill the command after this long (default 1h, at most 24h)"},
	{"tty", 't', NULL, false, "give the command a terminal (the default when ours is one)"},
	{"no-tty", 'T', NULL, false, "no terminal, even when ours is one"},
	{NULL, 0, NULL, false, NULL},
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	interrupted = sig; /* SIGINT, or SIGTERM and SIGHUP with a terminal */
}

/* The terminal's settings before raw mode, restored on the way out. */
static struct termios saved_tty;
static volatile sig_atomic_t tty_raw, resized;

static void tty_restore(void)
{
	if (tty_raw) {
		tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_tty);
		tty_raw = 0;
	}
}

static void on_sigwinch(int sig)
{
	(void)sig;
	resized = 1;
}

static void window_size(int *rows, int *cols)
{
	struct winsize ws = {0};
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0 || !ws.ws_row || !ws.ws_col)
		ws = (struct winsize){.ws_row = 24, .ws_col = 80};
	*rows = ws.ws_row;
	*cols = ws.ws_col;
}

/* The typing side of a run with a terminal. */
struct run_input {
	struct cli_client client; /* a copy: this thread's requests are its own */
	char *path;               /* POST .../runs/RUN/input, once the run is named */
	pthread_mutex_t lock;
	pthread_cond_t named;
	bool stop;
	pthread_t main;   /* the thread reading the run's answer */
	bool escapes;     /* our stdin is a terminal: "~." at a line's start leaves */
	bool line_start;  /* the last byte typed ended a line (or none was) */
	bool tilde;       /* a '~' at a line's start, held back */
};

/* Typed bytes as they go to the command, with ssh's escape taken out: "~."
 * at the start of a line leaves the run (the daemon then stops it), "~~"
 * sends one '~'. Returns false when the user asked to leave. */
static bool escape_filter(struct run_input *in, const char *buf, size_t n, struct strbuf *out)
{
	for (size_t k = 0; k < n; k++) {
		char b = buf[k];
		if (in->tilde) {
			in->tilde = false;
			if (b == '.')
				return false;
			strbuf_addc(out, '~');
			if (b == '~') {
				in->line_start = false;
				continue;
			}
		} else if (in->line_start && b == '~') {
			in->tilde = true;
			continue;
		}
		strbuf_addc(out, b);
		in->line_start = b == '\r' || b == '\n';
	}
	return true;
}

static bool input_stopped(struct run_input *in)
{
	pthread_mutex_lock(&in->lock);
	bool stop = in->stop;
	pthread_mutex_unlock(&in->lock);
	return stop;
}

/* Sends typed bytes and/or the window size. NUL cannot be sent (the API
 * takes text); a command that has not read what came before holds the
 * typing up (429) until it has. */
static void input_post(struct run_input *in, const char *data, size_t len, bool size)
{
	struct json *b = json_object();
	if (len) {
		char *text = xmalloc(len + 1);
		size_t n = 0;
		for (size_t k = 0; k < len; k++)
			if (data[k])
				text[n++] = data[k];
		text[n] = '\0';
		json_set_str(b, "data", text);
		free(text);
	}
	if (size) {
		int rows, cols;
		window_size(&rows, &cols);
		json_set_int(b, "rows", rows);
		json_set_int(b, "cols", cols);
	}
	char *body = json_print(b, false);
	json_free(b);
	struct cli_response res = {0};
	char *err = NULL;
	/* The run's own answer says how it ended; a keystroke lost as it
	 * ends is not worth a message of its own. */
	for (;;) {
		int rc = cli__client_request(&in->client, "POST", in->path, body, strlen(body), &res, &err);
		free(err);
		err = NULL;
		if (rc < 0)
			break;
		int status = res.status;
		cli__response_release(&res);
		if (status != 429 || input_stopped(in))
			break;
		poll(NULL, 0, 50);
	}
	free(body);
}

/* Leaves the run as sig sent to us would: the answer's read is
 * interrupted and the connection closed, so the daemon stops the command
 * (sent again until it is: the signal may come between two reads). */
static void leave(struct run_input *in, int sig)
{
	while (!input_stopped(in)) {
		pthread_kill(in->main, sig);
		poll(NULL, 0, 100);
	}
}

static void *input_main(void *arg)
{
	struct run_input *in = arg;
	/* Signals are for the thread reading the answer: they must interrupt
	 * its read. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGWINCH);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	pthread_mutex_lock(&in->lock);
	while (!in->path && !in->stop)
		pthread_cond_wait(&in->named, &in->lock);
	bool stop = in->stop;
	pthread_mutex_unlock(&in->lock);
	char buf[4096];
	char last = '\n'; /* the last byte sent */
	while (!stop) {
		struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
		int n = poll(&p, 1, 200);
		if (resized) {
			resized = 0;
			input_post(in, "", 0, true);
		}
		if (n > 0) {
			ssize_t got = read(STDIN_FILENO, buf, sizeof(buf));
			if (got <= 0 && in->escapes) {
				/* Our terminal is gone: as if it had hung up on us. */
				leave(in, SIGHUP);
				break;
			}
			if (got <= 0) {
				/* Our input ended (a file or a pipe: a terminal's
				 * Ctrl-D is a byte, sent as typed): the command's
				 * terminal says so the way a typed Ctrl-D does, after
				 * one more that hands over a last line without its
				 * end. */
				input_post(in, "\x04\x04", last == '\n' ? 1 : 2, false);
				break;
			}
			last = buf[got - 1];
			if (!in->escapes) {
				input_post(in, buf, (size_t)got, false);
			} else {
				struct strbuf typed;
				strbuf_init(&typed, (size_t)got + 1);
				bool stay = escape_filter(in, buf, (size_t)got, &typed);
				if (typed.len)
					input_post(in, typed.buf, typed.len, false);
				strbuf_release(&typed);
				if (!stay) {
					leave(in, SIGINT);
					break;
				}
			}
		}
		stop = input_stopped(in);
	}
	return NULL;
}

struct run_out {
	struct cli *c;
	struct run_input *in; /* NULL without a terminal */
	const char *app;
	bool named; /* the run's first line came */
	struct strbuf pending; /* an NDJSON line not complete yet */
	bool ended;
	int status; /* the exit code to give: the command's, 128+signal */
	char *error;
};

static int on_line(struct run_out *o, const char *text, size_t n)
{
	struct json *l = json_parse(text, n, NULL);
	if (!l)
		return 0;
	const char *run = json_get_str(l, "run");
	if (run)
		o->named = true;
	if (run && o->in) {
		char *tail = xasprintf("/runs/%s/input", run);
		pthread_mutex_lock(&o->in->lock);
		free(o->in->path);
		o->in->path = cli__app_path(o->app, tail);
		pthread_cond_signal(&o->in->named);
		pthread_mutex_unlock(&o->in->lock);
		free(tail);
	}
	if (o->c->inv->json) {
		cli__print_json(o->c, l, false);
	} else if (json_get(l, "data")) {
		FILE *f = str_eq(json_get_str(l, "stream"), "stderr") ? o->c->err : o->c->out;
		const char *d = json_get_str(l, "data");
		fputs(d ? d : "", f);
		fflush(f);
	}
	int64_t v;
	if (json_get_int(json_get(l, "exit_status"), &v) == 0) {
		o->ended = true;
		o->status = (int)(v & 0xff);
	} else if (json_get_int(json_get(l, "signal"), &v) == 0) {
		o->ended = true;
		o->status = 128 + (int)(v & 0x7f);
	}
	const char *why = json_get_str(l, "error");
	if (why) {
		free(o->error);
		o->error = xstrdup(why);
	}
	json_free(l);
	return ferror(o->c->out) ? -1 : 0;
}

static int on_body(void *ctx, const char *data, size_t len)
{
	struct run_out *o = ctx;
	strbuf_add(&o->pending, data, len);
	size_t start = 0;
	int rc = 0;
	for (;;) {
		char *nl = memchr(o->pending.buf + start, '\n', o->pending.len - start);
		if (!nl)
			break;
		size_t n = (size_t)(nl - (o->pending.buf + start));
		if (n && rc == 0)
			rc = on_line(o, o->pending.buf + start, n);
		start += n + 1;
	}
	strbuf_consume(&o->pending, start);
	return rc;
}

/* Whether a word needs quoting to reach the shell as one word. */
static bool needs_quotes(const char *w)
{
	if (!*w)
		return true;
	for (const char *p = w; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%", *p))
			return true;
	return false;
}

/* One word: the command line as written (shell syntax and all); several:
 * each word quoted where needed, so that each reaches the command as it
 * was given. */
static char *command_line(const char *const *words, size_t n)
{
	if (n == 1)
		return xstrdup(words[0]);
	struct strbuf sb;
	strbuf_init(&sb, 64);
	for (size_t k = 0; k < n; k++) {
		if (k)
			strbuf_addc(&sb, ' ');
		if (!needs_quotes(words[k])) {
			strbuf_adds(&sb, words[k]);
			continue;
		}
		strbuf_addc(&sb, '\'');
		for (const char *p = words[k]; *p; p++) {
			if (*p == '\'')
				strbuf_adds(&sb, "'\\''");
			else
				strbuf_addc(&sb, *p);
		}
		strbuf_addc(&sb, '\'');
	}
	return strbuf_detach(&sb, NULL);
}

int cli__cmd_run(struct cli *c)
{
	const char *app = c->inv->pos[0];
	char *cmd = command_line(c->inv->pos + 1, c->inv->n_pos - 1);
	struct json *body = json_object();
	json_set_str(body, "command", cmd);
	free(cmd);
	const char *timeout = cli__flag(c->inv, "timeout");
	if (timeout)
		json_set_str(body, "timeout", timeout);
	bool tty = cli__flag(c->inv, "tty") ||
		   (!cli__flag(c->inv, "no-tty") && !c->inv->json && isatty(STDIN_FILENO) &&
		    isatty(STDOUT_FILENO));
	if (tty) {
		struct json *t = json_set(body, "tty", json_object());
		int rows, cols;
		window_size(&rows, &cols);
		json_set_int(t, "rows", rows);
		json_set_int(t, "cols", cols);
		const char *term = getenv("TERM");
		if (term && *term && strlen(term) <= 64 &&
		    strspn(term, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+") ==
			    strlen(term))
			json_set_str(t, "term", term);
	}
	char *text = json_print(body, false);
	json_free(body);
	char *path = cli__app_path(app, "/run");
	int rc = cli__resolve_server(c);
	if (rc != CLI_EXIT_OK) {
		free(text);
		free(path);
		return rc;
	}
	struct sigaction sa = {.sa_handler = on_sigint};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	interrupted = 0;
	c->client.stop = &interrupted;
	struct run_out o = {.c = c, .app = app};
	strbuf_init(&o.pending, 0);
	struct run_input in = {.client = c->client};
	pthread_t typing;
	bool typing_started = false;
	if (tty) {
		in.client.stop = NULL;
		pthread_mutex_init(&in.lock, NULL);
		pthread_cond_init(&in.named, NULL);
		o.in = &in;
		struct sigaction ws = {.sa_handler = on_sigwinch};
		sigemptyset(&ws.sa_mask);
		sigaction(SIGWINCH, &ws, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
		if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tty) == 0) {
			struct termios raw = saved_tty;
			cfmakeraw(&raw); /* the command's terminal does the line ends, */
			if (c->inv->json) /* but not those of our own NDJSON lines */
				raw.c_oflag |= OPOST | ONLCR;
			if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) == 0) {
				tty_raw = 1;
				atexit(tty_restore);
			}
		}
		in.main = pthread_self();
		in.escapes = tty_raw;
		in.line_start = true;
		typing_started = pthread_create(&typing, NULL, input_main, &in) == 0;
	}
	struct cli_response res = {0};
	char *err = NULL;
	int r = cli__client_stream(&c->client, "POST", path, text, strlen(text), on_body, &o, &res, &err);
	if (tty) {
		tty_restore();
		pthread_mutex_lock(&in.lock);
		in.stop = true;
		pthread_cond_signal(&in.named);
		pthread_mutex_unlock(&in.lock);
		if (typing_started)
			pthread_join(typing, NULL);
		free(in.path);
		pthread_mutex_destroy(&in.lock);
		pthread_cond_destroy(&in.named);
	}
	if (r == -EINTR || interrupted) {
		fprintf(c->err, "interrupted: the command was stopped\n");
		rc = 128 + (interrupted ? (int)interrupted : SIGINT);
	} else if (r < 0 && ferror(c->out)) {
		rc = CLI_EXIT_FAILED; /* said on the way out: cannot write output */
	} else if (r < 0) {
		/* The daemon may go away in the middle (it stopped, say). */
		rc = cli__stream_failed(c, r, err, "the connection to the daemon ended before the command did");
	} else if (res.status != 200) {
		const char *msg = json_get_str(json_get(res.json, "error"), "message");
		fprintf(c->err, "error: %s\n", msg ? msg : "the daemon refused to run the command");
		/* The daemon checks the command and --timeout: its 400 is a usage error. */
		c->query_is_usage = true;
		rc = cli__exit_for_answer(c, res.status);
	} else if (!o.ended) {
		fprintf(c->err, "error: the connection to the daemon ended before the command did\n");
		rc = CLI_EXIT_UNREACHABLE;
	} else {
		if (o.error && !c->inv->json)
			fprintf(c->err, "error: the command %s\n", o.error);
		rc = o.status;
	}
	if (r == 0)
		cli__response_release(&res);
	free(err);
	free(o.error);
	strbuf_release(&o.pending);
	free(text);
	free(path);
	return rc;
}
