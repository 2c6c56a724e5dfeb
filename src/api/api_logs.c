/* api_logs.c: the logs endpoints: search (GET /v1/logs), live tail
 * (GET /v1/logs/stream, chunked NDJSON or Server-Sent Events), counters
 * (GET /v1/logs/stats) and per-app drains. The app comes from the query
 * string here, so the handlers check the token's scope themselves: a
 * scoped token may name only its apps, and without app= it sees only them. */
#include "api/api_internal.h"
#include "compat/json.h"
#include "core/util.h"
#include "logs/logs.h"
#include "supervisor/supervisor.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool logs_on(struct api_req *req, struct api_resp *resp)
{
	if (req->api->logs)
		return true;
	api_error(resp, 409, "conflict", "log storage is off");
	return false;
}

/* Fills f from the query string and the caller's scope. false with an
 * error answer set when a value is invalid or an app is out of scope. */
static bool filter_from_query(struct api_req *req, struct api_resp *resp, struct logs_filter *f)
{
	static const char *const names[] = {"app", "process", "instance", "release", "stream",
					    "level", "since", "until", "q"};
	int64_t now = now_ns();
	for (size_t k = 0; k < ARRAY_SIZE(names); k++) {
		char *v = api_query(req, names[k]);
		if (!v)
			continue;
		if (v[0] == '\x01') {
			api_error(resp, 400, "bad_request", "query parameter '%s' is not valid percent-encoding",
				  names[k]);
			free(v);
			return false;
		}
		char *err = NULL;
		int r = *v || strcmp(names[k], "q") == 0 ? logs_filter_set(f, names[k], v, now, &err) : 0;
		free(v);
		if (r < 0) {
			api_error(resp, 400, "bad_request", "%s", err);
			free(err);
			return false;
		}
	}
	const struct auth_principal *who = req->who;
	if (f->apps) {
		for (size_t k = 0; k < f->n_apps; k++) {
			if (!auth_allows(who, AUTH_READ, f->apps[k])) {
				api_forbid_app(resp, who, AUTH_READ, f->apps[k]);
				return false;
			}
		}
	} else if (who && who->n_apps) {
		logs_filter_scope(f, who->apps, who->n_apps);
	}
	return true;
}

/* ---- search ---- */

static void query_answered(void *ctx, struct json *result, const char *err)
{
	struct api_pending *p = ctx;
	if (result) {
		api_pending_reply(p, 200, result);
		return;
	}
	struct api_resp r = {0};
	api_error(&r, 500, "internal", "the log query failed: %s", err ? err : "unknown error");
	api_pending_reply(p, 500, r.body);
}

void h_logs(struct api_req *req, struct api_resp *resp)
{
	if (!logs_on(req, resp))
		return;
	struct logs_query q = {0};
	logs_filter_init(&q.filter);
	int64_t limit;
	char *order = NULL, *cursor = NULL;
	if (api_query_int(req, resp, "limit", 100, 1, 10000, &limit) < 0 ||
	    !filter_from_query(req, resp, &q.filter))
		goto fail;
	q.limit = (int)limit;
	order = api_query(req, "order");
	if (order && *order) {
		if (strcmp(order, "asc") == 0 || strcmp(order, "oldest") == 0)
			q.ascending = true;
		else if (strcmp(order, "desc") != 0 && strcmp(order, "newest") != 0) {
			api_error(resp, 400, "bad_request", "'order' must be desc (newest first) or asc");
			goto fail;
		}
	}
	cursor = api_query(req, "cursor");
	if (cursor && *cursor) {
		uint64_t seq;
		if (logs_cursor_parse(cursor, &seq) < 0) {
			api_error(resp, 400, "bad_request", "invalid cursor '%s'", cursor);
			goto fail;
		}
		if (q.ascending)
			q.filter.after_seq = seq;
		else
			q.filter.before_seq = seq;
	}
	free(order);
	free(cursor);
	struct api_pending *p = api_defer(req, resp);
	logs_query_start(req->api->logs, &q, query_answered, p);
	return;
fail:
	free(order);
	free(cursor);
	logs_filter_release(&q.filter);
}

/* ---- live tail ---- */

struct tail_sub {
	struct api_stream *st;
	struct logs_tail *tail;
	bool sse;
	struct strbuf buf;
};

static int tail_line(void *ctx, const char *json, size_t len)
{
	struct tail_sub *s = ctx;
	strbuf_reset(&s->buf);
	if (s->sse) {
		strbuf_adds(&s->buf, "data: ");
		strbuf_add(&s->buf, json, len);
		strbuf_adds(&s->buf, "\n\n");
	} else {
		strbuf_add(&s->buf, json, len);
		strbuf_addc(&s->buf, '\n');
	}
	return api_stream_write(s->st, s->buf.buf, s->buf.len) < 0;
}

static void tail_closed(void *ctx)
{
	struct tail_sub *s = ctx;
	logs_tail_stop(s->tail);
	strbuf_release(&s->buf);
	free(s);
}

void h_logs_stream(struct api_req *req, struct api_resp *resp)
{
	if (!logs_on(req, resp))
		return;
	struct logs_filter f;
	logs_filter_init(&f);
	int64_t n;
	if (api_query_int(req, resp, "n", 100, 0, 10000, &n) < 0 || !filter_from_query(req, resp, &f)) {
		logs_filter_release(&f);
		return;
	}
	const char *accept = http_msg_header(req->msg, "Accept");
	struct tail_sub *s = xcalloc(1, sizeof(*s));
	s->sse = accept && strstr(accept, "text/event-stream");
	strbuf_init(&s->buf, 1024);
	s->st = api_stream_begin(req, resp, s->sse ? "text/event-stream" : "application/x-ndjson",
				 tail_closed, s);
	s->tail = logs_tail_start(req->api->logs, &f, (int)n, tail_line, s);
}

/* ---- counters ---- */

void h_logs_stats(struct api_req *req, struct api_resp *resp)
{
	if (!logs_on(req, resp))
		return;
	if (req->who && req->who->n_apps) {
		api_error(resp, 403, "forbidden", "a token scoped to apps may not read the installation's log counters");
		return;
	}
	resp->body = logs_stats_json(req->api->logs);
}

/* ---- drains ---- */

void h_log_drains_list(struct api_req *req, struct api_resp *resp)
{
	if (!logs_on(req, resp))
		return;
	if (!supervisor_has_app(req->api->sv, req->params[0])) {
		api_error(resp, 404, "not_found", "app '%s' not found", req->params[0]);
		return;
	}
	resp->body = logs_drains_json(req->api->logs, req->params[0]);
}

void h_log_drains_add(struct api_req *req, struct api_resp *resp)
{
	if (!logs_on(req, resp) || !api_body_object(req, resp, false))
		return;
	if (!supervisor_has_app(req->api->sv, req->params[0])) {
		api_error(resp, 404, "not_found", "app '%s' not found", req->params[0]);
		return;
	}
	const char *url = json_get_str(req->body, "url");
	if (!url) {
		api_error(resp, 400, "bad_request", "'url' must be a string (syslog://HOST:PORT or http(s)://...)");
		return;
	}
	char *err = NULL;
	struct json *out = NULL;
	int r = logs_drain_add(req->api->logs, req->params[0], url, &out, &err);
	if (r < 0) {
		api_error_errno(resp, r, err ? err : "cannot add the drain");
		free(err);
		return;
	}
	supervisor_note(req->api->sv, req->params[0], "drain", "log drain added");
	resp->status = 201;
	resp->body = out;
}

void h_log_drains_remove(struct api_req *req, struct api_resp *resp)
{
	if (!logs_on(req, resp))
		return;
	int64_t id;
	if (str_to_i64(req->params[1], &id) < 0 || id < 1) {
		api_error(resp, 404, "not_found", "no drain '%s' for app '%s'", req->params[1], req->params[0]);
		return;
	}
	int r = logs_drain_remove(req->api->logs, req->params[0], id);
	if (r == -ENOENT) {
		api_error(resp, 404, "not_found", "no drain %lld for app '%s'", (long long)id, req->params[0]);
		return;
	}
	if (r < 0) {
		api_error(resp, 500, "internal", "cannot remove the drain");
		return;
	}
	supervisor_note(req->api->sv, req->params[0], "drain", "log drain removed");
	resp->body = json_object();
	json_set_int(resp->body, "removed", id);
}
