/* api_run.c: POST /v1/apps/NAME/run, a one-off command in the app's live
 * release with its output streamed back as it comes.
 *
 * The answer is NDJSON: a first line naming the run, one line per piece
 * of output ({"stream":"stdout"|"stderr","data":TEXT}), and a last line
 * with how it ended ({"exit_status":N} or {"signal":N[,"error":WHY]}).
 * Output is text: a UTF-8 sequence cut by a read is held until the rest
 * comes, and bytes that are not UTF-8 (and NUL) become U+FFFD. A client that reads
 * slower than the command writes holds the command up (its pipe fills);
 * nothing is dropped. A client that goes away has the command killed. */
#include "api/api_internal.h"
#include "compat/json.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "deploy/deploy.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RUN_COMMAND_MAX 65536
#define RUN_RETRY_MS 20 /* how soon a stream that was full is tried again */

struct run_sub {
	struct api_stream *st;
	struct deploy_run *run; /* NULL once it ended or was cancelled */
	struct strbuf tail[2];  /* the start of a UTF-8 sequence cut by a read */
	struct strbuf held;     /* lines the stream would not take yet */
	uv_timer_t *retry;      /* frees the sub when closed */
	bool ended;             /* the last line is written or held */
	bool gone;              /* the stream is closed or ended */
};

static void sub_closed(uv_handle_t *h)
{
	struct run_sub *s = h->data;
	strbuf_release(&s->tail[0]);
	strbuf_release(&s->tail[1]);
	strbuf_release(&s->held);
	free(h);
	free(s);
}

static void sub_free(struct run_sub *s)
{
	s->gone = true;
	uv_close((uv_handle_t *)s->retry, sub_closed);
}

/* Writes what is held; once it is all out after the last line, the
 * answer ends and s is freed. */
static void sub_flush(struct run_sub *s);

static void retry_tick(uv_timer_t *t)
{
	sub_flush(t->data);
}

static void sub_flush(struct run_sub *s)
{
	if (s->gone)
		return;
	if (s->held.len) {
		int rc = api_stream_write(s->st, s->held.buf, s->held.len);
		if (rc == -ENOBUFS) {
			uv_timer_start(s->retry, retry_tick, RUN_RETRY_MS, 0);
			return;
		}
		strbuf_reset(&s->held);
		if (rc < 0)
			return; /* the client is gone: the closed callback follows */
	}
	if (s->ended) {
		api_stream_end(s->st);
		sub_free(s);
		return;
	}
	if (s->run)
		deploy_run_pause(s->run, false);
}

/* Queues one NDJSON line; a full stream holds the command up. */
static void sub_send(struct run_sub *s, struct json *line)
{
	char *text = json_print(line, false);
	json_free(line);
	size_t n = strlen(text) + 1;
	strbuf_adds(&s->held, text);
	strbuf_addc(&s->held, '\n');
	free(text);
	if (s->held.len > n || s->gone)
		return; /* lines were already waiting: the timer writes them */
	int rc = api_stream_write(s->st, s->held.buf, s->held.len);
	if (rc == -ENOBUFS) {
		if (s->run)
			deploy_run_pause(s->run, true);
		uv_timer_start(s->retry, retry_tick, RUN_RETRY_MS, 0);
		return;
	}
	strbuf_reset(&s->held);
}

/* Appends the text of len bytes at data to out: valid UTF-8 as it is,
 * any other byte, and NUL (JSON text here cannot hold it), as U+FFFD. Returns how many bytes at the end were kept
 * back because a sequence starts there that may go on in the next read. */
static size_t utf8_text(struct strbuf *out, const char *data, size_t len, bool final)
{
	const unsigned char *u = (const unsigned char *)data;
	size_t k = 0;
	while (k < len) {
		size_t q = u[k] ? utf8_seq(u + k, len - k) : 0;
		if (q) {
			strbuf_add(out, data + k, q);
			k += q;
			continue;
		}
		if (!final && len - k < 4 && u[k] >= 0xc2 && u[k] <= 0xf4) {
			bool prefix = true; /* a lead byte and only continuation bytes after it */
			for (size_t j = k + 1; j < len; j++)
				prefix = prefix && (u[j] & 0xc0) == 0x80;
			if (prefix)
				return len - k;
		}
		strbuf_adds(out, "\xEF\xBF\xBD");
		k++;
	}
	return 0;
}

static void emit_output(struct run_sub *s, int k, const char *data, size_t len, bool final)
{
	struct strbuf *t = &s->tail[k];
	strbuf_add(t, data, len);
	struct strbuf text;
	strbuf_init(&text, t->len + 16);
	size_t keep = utf8_text(&text, t->buf, t->len, final);
	strbuf_consume(t, t->len - keep);
	if (text.len) {
		struct json *line = json_object();
		json_set_str(line, "stream", k ? "stderr" : "stdout");
		json_set_str(line, "data", text.buf);
		sub_send(s, line);
	}
	strbuf_release(&text);
}

static void run_output(void *ctx, int fd, const char *data, size_t len)
{
	emit_output(ctx, fd == 2, data, len, false);
}

static void run_exit(void *ctx, int status, int sig, const char *why)
{
	struct run_sub *s = ctx;
	s->run = NULL; /* it ends after this call */
	for (int k = 0; k < 2; k++)
		if (s->tail[k].len)
			emit_output(s, k, "", 0, true);
	struct json *line = json_object();
	if (sig)
		json_set_int(line, "signal", sig);
	else
		json_set_int(line, "exit_status", status);
	if (why)
		json_set_str(line, "error", why);
	sub_send(s, line);
	s->ended = true;
	if (!s->held.len)
		sub_flush(s);
}

static void client_gone(void *ctx)
{
	struct run_sub *s = ctx;
	if (s->run)
		deploy_run_cancel(s->run);
	s->run = NULL;
	uv_timer_stop(s->retry);
	sub_free(s);
}

#define TTY_MAX_SIDE 1000

/* The "rows" and "cols" of o into *rows and *cols: both, from 1 to
 * TTY_MAX_SIDE (required: they must be there; otherwise both or neither). */
static bool tty_size(const struct json *o, struct api_resp *resp, int *rows, int *cols, bool required)
{
	const char *what = required ? "'tty'" : "the body";
	if (!json_is_object(o)) {
		api_error(resp, 400, "bad_request", "%s must be an object with 'rows' and 'cols'", what);
		return false;
	}
	struct json *r = json_get(o, "rows"), *c = json_get(o, "cols");
	if (!required && !r && !c)
		return true;
	int64_t rv, cv;
	if (!r || !c || json_get_int(r, &rv) < 0 || json_get_int(c, &cv) < 0 || rv < 1 ||
	    rv > TTY_MAX_SIDE || cv < 1 || cv > TTY_MAX_SIDE) {
		api_error(resp, 400, "bad_request", "%s needs 'rows' and 'cols', each a whole number from 1 to %d",
			  what, TTY_MAX_SIDE);
		return false;
	}
	*rows = (int)rv;
	*cols = (int)cv;
	return true;
}

/* POST /v1/apps/NAME/runs/RUN/input: {"data": TEXT} typed into a run's
 * terminal, and/or {"rows": R, "cols": C}, its new size. Part of the run,
 * which the audit log records once: not recorded itself. */
void h_run_input(struct api_req *req, struct api_resp *resp)
{
	if (!api_body_object(req, resp, false))
		return;
	for (struct json *m = json_first(req->body); m; m = json_next(m)) {
		const char *k = json_key(m);
		if (!str_eq(k, "data") && !str_eq(k, "rows") && !str_eq(k, "cols")) {
			api_error(resp, 400, "bad_request", "unknown field '%s' (data, rows, cols)", k);
			return;
		}
	}
	struct json *dj = json_get(req->body, "data");
	const char *data = dj ? json_str(dj) : "";
	if (!data) {
		api_error(resp, 400, "bad_request", "'data' must be a string");
		return;
	}
	int rows = 0, cols = 0;
	if (!tty_size(req->body, resp, &rows, &cols, false))
		return;
	struct deploy_run *r = deploy_run_find(req->api->deploy, req->params[0], req->params[1]);
	if (!r) {
		api_error(resp, 404, "not_found", "no run '%s' of app '%s' is going on", req->params[1],
			  req->params[0]);
		return;
	}
	int rc = deploy_run_input(r, data, strlen(data), rows, cols);
	if (rc == -ENOTTY)
		api_error(resp, 409, "conflict", "run '%s' has no terminal to type into", req->params[1]);
	else if (rc == -ENOBUFS)
		api_error(resp, 429, "too_much_input",
			  "run '%s' has not read the last %d bytes typed into it yet", req->params[1],
			  DEPLOY_RUN_INPUT_MAX);
	else if (rc < 0)
		api_error(resp, 409, "conflict", "run '%s' has ended", req->params[1]);
	else
		resp->body = json_object();
}

void h_app_run(struct api_req *req, struct api_resp *resp)
{
	if (!api_body_object(req, resp, false))
		return;
	static const char *const known[] = {"command", "timeout", "tty"};
	for (struct json *m = json_first(req->body); m; m = json_next(m)) {
		bool ok = false;
		for (size_t k = 0; k < ARRAY_SIZE(known); k++)
			ok = ok || str_eq(json_key(m), known[k]);
		if (!ok) {
			api_error(resp, 400, "bad_request", "unknown field '%s' (command, timeout, tty)",
				  json_key(m));
			return;
		}
	}
	const char *cmd = json_get_str(req->body, "command");
	if (!cmd || !*cmd) {
		api_error(resp, 400, "bad_request", "'command' must be a non-empty string");
		return;
	}
	if (strlen(cmd) > RUN_COMMAND_MAX) {
		api_error(resp, 400, "bad_request", "'command' is longer than %d bytes", RUN_COMMAND_MAX);
		return;
	}
	int64_t timeout = DEPLOY_RUN_TIMEOUT_DEFAULT_MS;
	struct json *tj = json_get(req->body, "timeout");
	if (tj) {
		const char *ts = json_str(tj);
		if (!ts || duration_parse(ts, &timeout) < 0 || timeout <= 0 ||
		    timeout > DEPLOY_RUN_TIMEOUT_MAX_MS) {
			api_error(resp, 400, "bad_request",
				  "'timeout' must be a duration such as \"30s\" or \"2h\", above 0 and at most 24h");
			return;
		}
	}
	struct deploy_run_tty tty = {0};
	struct json *tt = json_get(req->body, "tty");
	if (tt && !tty_size(tt, resp, &tty.rows, &tty.cols, true))
		return;
	if (tt) {
		struct json *term = json_get(tt, "term");
		tty.term = term ? json_str(term) : "xterm";
		if (!tty.term || !*tty.term || strlen(tty.term) > 64 ||
		    strspn(tty.term, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+") !=
			    strlen(tty.term)) {
			api_error(resp, 400, "bad_request",
				  "'tty.term' must be a terminal type such as \"xterm-256color\"");
			return;
		}
	}
	struct run_sub *s = xcalloc(1, sizeof(*s));
	strbuf_init(&s->tail[0], 0);
	strbuf_init(&s->tail[1], 0);
	strbuf_init(&s->held, 0);
	static const struct deploy_run_cbs cbs = {run_output, run_exit};
	char *err = NULL;
	int rc = deploy_run_start(req->api->deploy, req->params[0], cmd, timeout, tt ? &tty : NULL, &cbs,
				  s, &s->run, &err);
	if (rc < 0) {
		if (rc == -ENOENT)
			api_error(resp, 404, "not_found", "%s", err);
		else if (rc == -ESRCH)
			api_error(resp, 409, "conflict", "%s", err);
		else if (rc == -EAGAIN)
			api_error(resp, 429, "too_many_runs", "%s", err);
		else
			api_error(resp, 500, "internal", "%s", err);
		free(err);
		strbuf_release(&s->tail[0]);
		strbuf_release(&s->tail[1]);
		strbuf_release(&s->held);
		free(s);
		return;
	}
	s->retry = xcalloc(1, sizeof(*s->retry));
	uv_timer_init(req->api->loop, s->retry);
	s->retry->data = s;
	/* The audit log names the run, not the command: it may hold secrets. */
	resp->audit_detail = xstrdup(deploy_run_id(s->run));
	s->st = api_stream_begin(req, resp, "application/x-ndjson", client_gone, s);
	struct json *first = json_object();
	json_set_str(first, "run", deploy_run_id(s->run));
	json_set_int(first, "release", deploy_run_release(s->run));
	json_set_int(first, "pid", deploy_run_pid(s->run));
	sub_send(s, first);
}
