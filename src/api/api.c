/* api.c: the API's HTTP/1.1 server: listeners, connections with keep-alive
 * and pipelining, the route table, authentication and the permission check
 * before any handler runs, and the audit entry of every call that is not a
 * GET, written before its answer. Handlers are in api_handlers.c. */
#include "api/api_internal.h"
#include "auth/audit.h"
#include "compat/json.h"
#include "compat/tls.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/paths.h"
#include "core/runas.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "supervisor/supervisor.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define API_IDLE_MS 60000
/* A request's head must arrive whole within this long of its first byte
 * (of accepting the connection, for its first request), however slowly
 * it trickles in: the router's --header-timeout default. */
#define API_HEADER_MS 10000
/* Connections open at once, per listener: a flood of TCP clients cannot
 * lock the local user out of the unix socket. */
#define API_MAX_TCP_CONNS 512
#define API_MAX_UNIX_CONNS 128
/* A TLS client has as long to finish its handshake as the router gives a
 * client for its request headers, so a silent connection does not linger. */
#define API_HANDSHAKE_MS 10000
#define API_AUDIT_DETAIL_MAX 512 /* bytes of an audit entry's detail */

enum scope {
	SCOPE_NONE, /* not about one app; handlers filter by scope */
	SCOPE_PATH, /* the first path parameter is the app */
	SCOPE_BODY, /* the handler checks the app named in the body */
};

struct route {
	const char *method;
	const char *pattern; /* segments; ":x" matches one segment */
	api_handler_cb handler;
	enum auth_action action;
	enum scope scope;
};

/* Every endpoint, and the action each needs. */
static const struct route routes[] = {
	{"GET", "/healthz", h_healthz, AUTH_PUBLIC, SCOPE_NONE},
	{"GET", "/metrics", h_metrics, AUTH_READ, SCOPE_NONE}, /* public with --metrics-public */
	{"GET", "/v1/version", h_version, AUTH_READ, SCOPE_NONE},
	{"GET", "/v1/apps", h_apps_list, AUTH_READ, SCOPE_NONE},
	{"POST", "/v1/apps", h_apps_apply, AUTH_WRITE, SCOPE_BODY},
	{"GET", "/v1/apps/:app", h_app_show, AUTH_READ, SCOPE_PATH},
	{"DELETE", "/v1/apps/:app", h_app_delete, AUTH_WRITE, SCOPE_PATH},
	{"GET", "/v1/apps/:app/instances", h_app_instances, AUTH_READ, SCOPE_PATH},
	{"POST", "/v1/apps/:app/instances/:id/restart", h_instance_restart, AUTH_WRITE, SCOPE_PATH},
	{"POST", "/v1/apps/:app/scale", h_app_scale, AUTH_WRITE, SCOPE_PATH},
	{"POST", "/v1/apps/:app/restart", h_app_restart, AUTH_WRITE, SCOPE_PATH},
	{"POST", "/v1/apps/:app/stop", h_app_stop, AUTH_WRITE, SCOPE_PATH},
	{"POST", "/v1/apps/:app/start", h_app_start, AUTH_WRITE, SCOPE_PATH},
	{"POST", "/v1/apps/:app/maintenance", h_app_maintenance, AUTH_WRITE, SCOPE_PATH},
	{"GET", "/v1/apps/:app/logs", h_app_logs, AUTH_READ, SCOPE_PATH},
	{"GET", "/v1/apps/:app/stats", h_app_stats, AUTH_READ, SCOPE_PATH},
	{"POST", "/v1/apps/:app/releases", h_releases_upload, AUTH_WRITE, SCOPE_PATH},
	{"GET", "/v1/apps/:app/releases", h_releases_list, AUTH_READ, SCOPE_PATH},
	{"GET", "/v1/apps/:app/releases/:version", h_release_show, AUTH_READ, SCOPE_PATH},
	{"POST", "/v1/apps/:app/rollback", h_rollback, AUTH_WRITE, SCOPE_PATH},
	{"GET", "/v1/apps/:app/config", h_config_show, AUTH_READ, SCOPE_PATH},
	{"POST", "/v1/apps/:app/config", h_config_change, AUTH_WRITE, SCOPE_PATH},
	{"GET", "/v1/apps/:app/deploy", h_deploy_status, AUTH_READ, SCOPE_PATH},
	{"POST", "/v1/apps/:app/deploy/promote", h_deploy_promote, AUTH_WRITE, SCOPE_PATH},
	{"POST", "/v1/apps/:app/run", h_app_run, AUTH_WRITE, SCOPE_PATH},
	{"POST", "/v1/apps/:app/runs/:run/input", h_run_input, AUTH_WRITE, SCOPE_PATH},
	{"GET", "/v1/apps/:app/export/kubernetes", h_export_kubernetes, AUTH_READ, SCOPE_PATH},
	{"GET", "/v1/apps/:app/export/dockerfile", h_export_dockerfile, AUTH_READ, SCOPE_PATH},
	{"GET", "/v1/instances", h_instances, AUTH_READ, SCOPE_NONE},
	{"GET", "/v1/events", h_events, AUTH_READ, SCOPE_NONE},
	{"GET", "/v1/logs", h_logs, AUTH_READ, SCOPE_NONE},            /* app checked by the handler */
	{"GET", "/v1/logs/stream", h_logs_stream, AUTH_READ, SCOPE_NONE},
	{"GET", "/v1/logs/stats", h_logs_stats, AUTH_READ, SCOPE_NONE},
	{"GET", "/v1/alerts", h_alerts, AUTH_READ, SCOPE_NONE},
	{"GET", "/v1/alerts/history", h_alerts_history, AUTH_READ, SCOPE_NONE},
	{"POST", "/v1/alerts/test", h_alerts_test, AUTH_MANAGE, SCOPE_NONE},
	{"GET", "/v1/apps/:app/log-drains", h_log_drains_list, AUTH_READ, SCOPE_PATH},
	{"POST", "/v1/apps/:app/log-drains", h_log_drains_add, AUTH_WRITE, SCOPE_PATH},
	{"DELETE", "/v1/apps/:app/log-drains/:id", h_log_drains_remove, AUTH_WRITE, SCOPE_PATH},
	{"GET", "/v1/metrics", h_metrics_status, AUTH_READ, SCOPE_NONE},
	{"GET", "/v1/metrics/query", h_metrics_query, AUTH_READ, SCOPE_NONE},
	{"GET", "/v1/usage", h_usage, AUTH_READ, SCOPE_NONE}, /* app= checked by the handler */
	{"POST", "/v1/tokens", h_tokens_create, AUTH_MANAGE, SCOPE_NONE},
	{"GET", "/v1/tokens", h_tokens_list, AUTH_MANAGE, SCOPE_NONE},
	{"DELETE", "/v1/tokens/:id", h_tokens_revoke, AUTH_MANAGE, SCOPE_NONE},
	{"GET", "/v1/audit", h_audit, AUTH_MANAGE, SCOPE_NONE},
	{"GET", "/v1/audit/verify", h_audit_verify, AUTH_MANAGE, SCOPE_NONE},
	{"GET", "/v1/doctor", h_doctor, AUTH_MANAGE, SCOPE_NONE},
	{"POST", "/v1/backup", h_backup, AUTH_MANAGE, SCOPE_NONE},
	/* The dashboard's files: public, they hold no data. */
	{"GET", "/ui", h_ui, AUTH_PUBLIC, SCOPE_NONE},
	{"GET", "/ui/:file", h_ui, AUTH_PUBLIC, SCOPE_NONE},
};

struct api_conn {
	struct api *api;
	union {
		uv_stream_t stream;
		uv_pipe_t pipe;
		uv_tcp_t tcp;
	} h;
	uv_timer_t idle;
	/* On the TLS listener the session owns the TCP handle and h is unused:
	 * reading and writing go through conn_write() and conn_read_*(). */
	struct tls_stream *tls;
	bool is_unix;
	char remote[64]; /* the peer's address for the audit log, "unix" on the socket */
	bool closing;
	bool close_after_write;
	int pending_writes;
	int open;
	struct http_parser *parser;
	/* An upload streamed to a file instead of memory. */
	int upload_fd;
	char *upload_path;
	int64_t upload_bytes;
	/* An answer decided while reading the head (401/403 before an upload). */
	int early_status;
	char *early_code, *early_msg;
	/* The audit entry of an upload whose answer may come before its body
	 * is read whole (early, or when it is too large). */
	struct api_audit *head_audit;
	/* A request whose answer comes later; reading waits for it. */
	struct api_pending *pending;
	/* A streamed answer (chunked); the connection closes after it. */
	struct api_stream *stream;
	/* The token of the request being answered (NULL on the unix socket
	 * or before one authenticated), and when it expires (0: never):
	 * revoking it, or its expiry, ends a deferred or streamed answer. */
	char *token_id;
	int64_t token_expires;
	/* The request being read: in_msg from its first byte (from accepting,
	 * for the first) to its end; in_head until its head is whole, with
	 * the idle timer as its deadline; got_bytes once any byte came. */
	bool in_msg, in_head, got_bytes;
	struct strbuf stash; /* bytes read after a deferred request */
	char rbuf[65536];
	struct api_conn *next, *prev;
};

struct api_pending {
	struct api_conn *conn; /* NULL once the connection is gone */
	bool keep_alive;
	struct api_audit *audit; /* NULL for a GET */
};

/* An audit entry waiting for its status. */
struct api_audit {
	struct store *store; /* borrowed; open until after the loop's last callback */
	char *actor, *role, *method, *path, *remote;
	char *app, *detail; /* may be NULL */
};

struct api_stream {
	struct api_conn *conn; /* NULL once the connection is gone */
	api_stream_closed_cb closed;
	void *ctx;
};

static void conn_feed(struct api_conn *c, const char *p, size_t left);

struct api_write {
	uv_write_t req;
	struct api_conn *conn;
	char *data;
};

/* ---- responses ---- */

void api_error(struct api_resp *resp, int status, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	json_free(resp->body);
	resp->status = status;
	resp->body = json_object();
	struct json *e = json_set(resp->body, "error", json_object());
	json_set_str(e, "code", code);
	json_set_str(e, "message", msg);
	free(msg);
}

void api_error_errno(struct api_resp *resp, int err, const char *msg)
{
	switch (err) {
	case -ENOENT: api_error(resp, 404, "not_found", "%s", msg); break;
	case -EINVAL: api_error(resp, 400, "bad_request", "%s", msg); break;
	case -EEXIST:
	case -EBUSY: api_error(resp, 409, "conflict", "%s", msg); break;
	case -EACCES: api_error(resp, 403, "forbidden", "%s", msg); break;
	default: api_error(resp, 500, "internal", "%s", msg); break;
	}
}

static const char *role_article(enum auth_role role)
{
	return role == AUTH_ADMIN ? "an" : "a";
}

void api_forbid_app(struct api_resp *resp, const struct auth_principal *who, enum auth_action a,
		    const char *app)
{
	/* Blame the scope only when the role alone would allow the call. */
	bool by_scope = who->n_apps && auth_allows(who, a, NULL);
	api_error(resp, 403, "forbidden", "%s %s token%s may not %s app '%s'", role_article(who->role),
		  auth_role_name(who->role), by_scope ? " scoped to other apps" : "",
		  a == AUTH_READ ? "read" : "change", app);
}

char *api_query(const struct api_req *req, const char *name)
{
	if (!req->query)
		return NULL;
	size_t nlen = strlen(name);
	const char *p = req->query;
	while (*p) {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);
		if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			char *v = xstrndup(p + nlen + 1, len - nlen - 1);
			if (http_url_decode(v, true) < 0) {
				free(v);
				return xstrdup("\x01"); /* never a valid value */
			}
			return v;
		}
		if (len == nlen && strncmp(p, name, nlen) == 0)
			return xstrdup("");
		p += len + (amp ? 1 : 0);
	}
	return NULL;
}

int api_query_int(const struct api_req *req, struct api_resp *resp, const char *name, int64_t def,
		  int64_t min, int64_t max, int64_t *out)
{
	char *v = api_query(req, name);
	if (!v) {
		*out = def;
		return 0;
	}
	int64_t n;
	int r = str_to_i64(v, &n);
	free(v);
	if (r < 0 || n < min || n > max) {
		api_error(resp, 400, "bad_request", "query parameter '%s' must be an integer from %lld to %lld",
			  name, (long long)min, (long long)max);
		return -EINVAL;
	}
	*out = n;
	return 0;
}

bool api_body_object(struct api_req *req, struct api_resp *resp, bool optional)
{
	if (!req->body && optional) {
		req->body = json_object();
		return true;
	}
	if (!json_is_object(req->body)) {
		api_error(resp, 400, "bad_request", "the request body must be a JSON object");
		return false;
	}
	return true;
}

/* ---- the audit log ---- */

/* Names the caller: a token's id, "local" on the unix socket; "-" while
 * not (or not successfully) authenticated. */
static void audit_set_who(struct api_audit *a, const struct auth_principal *who)
{
	free(a->actor);
	free(a->role);
	a->actor = xstrdup(!who ? "-" : who->token_id ? who->token_id : "local");
	a->role = xstrdup(who ? auth_role_name(who->role) : "-");
}

/* who may be NULL (not authenticated), and app. */
static struct api_audit *call_audit_new(struct api_conn *c, const char *method, const char *path,
				   const char *app, const struct auth_principal *who)
{
	struct api_audit *a = xcalloc(1, sizeof(*a));
	a->store = c->api->store;
	audit_set_who(a, who);
	a->method = xstrdup(method);
	a->path = xstrdup(path);
	a->remote = xstrdup(c->remote);
	a->app = app ? xstrdup(app) : NULL;
	return a;
}

static void call_audit_free(struct api_audit *a)
{
	if (!a)
		return;
	free(a->actor);
	free(a->role);
	free(a->method);
	free(a->path);
	free(a->remote);
	free(a->app);
	free(a->detail);
	free(a);
}

/* Takes over what the handler said about the call. */
static void audit_take(struct api_audit *a, struct api_resp *resp)
{
	if (resp->audit_app) {
		free(a->app);
		a->app = resp->audit_app;
		resp->audit_app = NULL;
	}
	if (resp->audit_detail) {
		free(a->detail);
		a->detail = resp->audit_detail;
		resp->audit_detail = NULL;
		/* A summary, not a copy: long lists are cut, on a character boundary. */
		size_t len = strlen(a->detail);
		if (len > API_AUDIT_DETAIL_MAX) {
			size_t cut = API_AUDIT_DETAIL_MAX - 3;
			while (cut && ((unsigned char)a->detail[cut] & 0xc0) == 0x80)
				cut--;
			memcpy(a->detail + cut, "...", 4);
		}
	}
}

/* Appends the entry with the status about to be answered, and frees it. A
 * failure to append is logged; the call is answered all the same. */
static void audit_finish(struct api_audit *a, int status)
{
	struct audit_call call = {
		.actor = a->actor, .role = a->role, .method = a->method, .path = a->path,
		.app = a->app, .status = status, .remote = a->remote, .detail = a->detail,
	};
	char *err = NULL;
	if (audit_record(a->store, &call, &err) < 0) {
		log_error("audit: %s %s -> %d not recorded: %s", a->method, a->path, status, err);
		free(err);
	}
	call_audit_free(a);
}

/* ---- connections ---- */

/* Frees c once its handle (or TLS session) and its timer are closed. */
static void conn_release(struct api_conn *c)
{
	if (--c->open > 0)
		return;
	struct api *api = c->api;
	if (c->prev)
		c->prev->next = c->next;
	else
		api->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	http_parser_free(c->parser);
	if (c->upload_fd >= 0)
		close(c->upload_fd);
	if (c->upload_path) {
		unlink(c->upload_path);
		free(c->upload_path);
	}
	if (c->pending)
		c->pending->conn = NULL;
	if (c->stream) {
		struct api_stream *st = c->stream;
		c->stream = NULL;
		st->conn = NULL;
		if (st->closed)
			st->closed(st->ctx);
		free(st);
	}
	free(c->early_code);
	free(c->early_msg);
	free(c->token_id);
	if (c->is_unix)
		api->n_unix_conns--;
	else
		api->n_tcp_conns--;
	call_audit_free(c->head_audit); /* no answer went out */
	strbuf_release(&c->stash);
	free(c);
	if (--api->open == 0 && api->stopping) {
		free(api->version);
		free(api->socket_path);
		free(api->upload_dir);
		free(api->data_dir);
		free(api->tcp_addr);
		free(api);
	}
}

static void conn_closed(uv_handle_t *h)
{
	conn_release(h->data);
}

static void conn_tls_closed(void *data)
{
	conn_release(data);
}

static void conn_close(struct api_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->tls)
		tls_stream_close(c->tls, conn_tls_closed);
	else
		uv_close((uv_handle_t *)&c->h.stream, conn_closed);
	uv_close((uv_handle_t *)&c->idle, conn_closed);
}

static void conn_idle(uv_timer_t *t)
{
	conn_close(t->data);
}

static void send_error(struct api_conn *c, int status, const char *code, const char *msg, bool keep);
static void conn_read_stop(struct api_conn *c);

/* The head deadline passed: a request begun is answered 408; a connection
 * that sent nothing is closed without a word, as an idle one would be. */
static void conn_head_late(uv_timer_t *t)
{
	struct api_conn *c = t->data;
	if (c->closing || c->close_after_write)
		return;
	if (!c->got_bytes) {
		conn_close(c);
		return;
	}
	conn_read_stop(c);
	send_error(c, 408, "request_timeout", "request headers not received within 10 s", false);
}

/* A request starts: its head has API_HEADER_MS, which its bytes do not
 * extend. */
static void conn_msg_begin(struct api_conn *c)
{
	c->in_msg = c->in_head = true;
	c->got_bytes = false;
	uv_timer_start(&c->idle, conn_head_late, API_HEADER_MS, 0);
}

/* While an answer is worked on or streamed no idle deadline applies, but
 * the expiry of the token that asked for it ends it. */
static void conn_quiet(struct api_conn *c)
{
	uv_timer_stop(&c->idle);
	if (!c->token_expires)
		return;
	int64_t left = c->token_expires - time_wall_ms();
	uv_timer_start(&c->idle, conn_idle, left > 0 ? (uint64_t)left : 0, 0);
}

void api_close_token(struct api *api, const char *token_id, const struct api_conn *except)
{
	for (struct api_conn *c = api->conns; c; c = c->next)
		if (c != except && (c->pending || c->stream) && c->token_id &&
		    strcmp(c->token_id, token_id) == 0)
			conn_close(c);
}

static void write_finished(struct api_write *w, int status)
{
	struct api_conn *c = w->conn;
	free(w->data);
	free(w);
	c->pending_writes--;
	if ((status < 0 || c->close_after_write) && c->pending_writes == 0)
		conn_close(c);
}

static void write_done(uv_write_t *req, int status)
{
	write_finished(req->data, status);
}

static void tls_write_done(struct tls_stream *s, int status, void *arg)
{
	write_finished(arg, status);
}

/* The one way out to the peer: sends w->data (len bytes), in clear or
 * through the connection's TLS session, and takes w over. A write that
 * cannot even start closes the connection. */
static int conn_write(struct api_conn *c, struct api_write *w, size_t len)
{
	w->conn = c;
	w->req.data = w;
	uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
	c->pending_writes++;
	int r = c->tls ? tls_stream_write(c->tls, &b, 1, tls_write_done, w)
		       : uv_write(&w->req, &c->h.stream, &b, 1, write_done);
	if (r < 0) {
		free(w->data);
		free(w);
		c->pending_writes--;
		conn_close(c);
	}
	return r;
}

static void conn_read_stop(struct api_conn *c)
{
	if (c->tls)
		tls_stream_read_stop(c->tls);
	else
		uv_read_stop(&c->h.stream);
}

static size_t conn_write_queue_size(const struct api_conn *c)
{
	return c->tls ? tls_stream_write_queue_size(c->tls)
		      : uv_stream_get_write_queue_size(&c->h.stream);
}

/* Answers with body as JSON, and more header lines (each ending in "\r\n")
 * when headers is not NULL. An answer to HEAD carries the headers the GET
 * answer would have and no body, or the next pipelined answer would be read
 * as its body. */
static void conn_send_with(struct api_conn *c, int status, struct json *body, const char *headers,
			   bool keep_alive, bool head)
{
	char *text = body ? json_print(body, false) : xstrdup("{}");
	struct strbuf sb;
	strbuf_init(&sb, strlen(text) + 256);
	strbuf_addf(&sb,
		    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		    "Cache-Control: no-store\r\n%s%s\r\n",
		    status, http_reason(status), strlen(text) + 1, headers ? headers : "",
		    keep_alive ? "" : "Connection: close\r\n");
	if (!head)
		strbuf_addf(&sb, "%s\n", text);
	free(text);
	struct api_write *w = xcalloc(1, sizeof(*w));
	size_t len;
	w->data = strbuf_detach(&sb, &len);
	strbuf_release(&sb);
	if (!keep_alive)
		c->close_after_write = true;
	conn_write(c, w, len);
}

static void conn_send(struct api_conn *c, int status, struct json *body, bool keep_alive,
		      bool head)
{
	conn_send_with(c, status, body, NULL, keep_alive, head);
}

/* Answers with a handler's raw (non-JSON) body, e.g. GET /metrics. A 304
 * has neither body nor length. */
static void conn_send_raw(struct api_conn *c, const struct api_resp *resp, bool keep_alive,
			  bool head)
{
	bool no_body = resp->status == 304;
	struct strbuf sb;
	strbuf_init(&sb, resp->raw_len + 512);
	strbuf_addf(&sb, "HTTP/1.1 %d %s\r\n", resp->status, http_reason(resp->status));
	if (!no_body)
		strbuf_addf(&sb, "Content-Type: %s\r\nContent-Length: %zu\r\n", resp->content_type,
			    resp->raw_len);
	if (resp->content_encoding)
		strbuf_addf(&sb, "Content-Encoding: %s\r\n", resp->content_encoding);
	strbuf_addf(&sb, "Cache-Control: %s\r\n%s%s\r\n",
		    resp->cache_control ? resp->cache_control : "no-store",
		    resp->headers ? resp->headers : "", keep_alive ? "" : "Connection: close\r\n");
	if (!head && !no_body)
		strbuf_add(&sb, resp->raw, resp->raw_len);
	struct api_write *w = xcalloc(1, sizeof(*w));
	size_t len;
	w->data = strbuf_detach(&sb, &len);
	if (!keep_alive)
		c->close_after_write = true;
	conn_write(c, w, len);
}

static void send_error(struct api_conn *c, int status, const char *code, const char *msg, bool keep)
{
	struct api_resp resp = {0};
	api_error(&resp, status, code, "%s", msg);
	conn_send(c, status, resp.body, keep, false);
	json_free(resp.body);
}

/* True when a JSON text holds a NUL byte or a "\u0000" escape. Strings from
 * the JSON adapter are C strings, so such a value would silently end early
 * (a spec cut short, a different dir) instead of being refused. */
static bool json_text_has_nul(const char *s, size_t len)
{
	if (memchr(s, '\0', len))
		return true;
	for (size_t i = 0; i < len; i++) {
		size_t run = 0;
		while (i < len && s[i] == '\\') {
			run++;
			i++;
		}
		/* An odd run of backslashes escapes what follows. */
		if (run % 2 == 1 && len - i >= 5 && memcmp(s + i, "u0000", 5) == 0)
			return true;
	}
	return false;
}

/* Matches path against a pattern; fills params. */
static bool match(const char *pattern, const char *path, const char **params, char *scratch,
		  size_t scratch_len)
{
	int np = 0;
	size_t used = 0;
	while (*pattern && *path) {
		if (*pattern != '/' || *path != '/')
			return false;
		pattern++;
		path++;
		const char *pe = strchr(pattern, '/');
		const char *se = strchr(path, '/');
		size_t pl = pe ? (size_t)(pe - pattern) : strlen(pattern);
		size_t sl = se ? (size_t)(se - path) : strlen(path);
		if (pattern[0] == ':') {
			if (sl == 0 || np >= API_MAX_PARAMS || used + sl + 1 > scratch_len)
				return false;
			memcpy(scratch + used, path, sl);
			scratch[used + sl] = '\0';
			params[np++] = scratch + used;
			used += sl + 1;
		} else if (pl != sl || strncmp(pattern, path, pl) != 0) {
			return false;
		}
		pattern += pl;
		path += sl;
	}
	return *pattern == '\0' && *path == '\0';
}

static bool peer_allowed(struct api_conn *c)
{
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)&c->h.stream, &fd) < 0)
		return false;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	/* App code started as the run-as user must never get the daemon's
	 * authority, whatever the socket's mode and the daemon's uid. */
	const struct runas *ra = supervisor_run_as(c->api->sv);
	if (ra && cred.uid == ra->uid)
		return false;
	return cred.uid == 0 || cred.uid == getuid();
}

/* What makes a request's head unacceptable whatever it asks for, or NULL:
 * whitespace between a header's name and its colon, which RFC 9112 says
 * to refuse (a proxy may read the header, or not), and more than one
 * Authorization header, of which no one would know which counts. */
static const char *head_problem(const struct http_msg *m)
{
	int auths = 0;
	for (size_t i = 0; i < m->n_headers; i++) {
		const char *name = m->headers[i].name;
		size_t len = strlen(name);
		if (len && (name[len - 1] == ' ' || name[len - 1] == '\t'))
			return "whitespace between a header name and its colon";
		if (strcasecmp(name, "Authorization") == 0)
			auths++;
	}
	return auths > 1 ? "more than one Authorization header" : NULL;
}

/* The path as the audit log and the daemon's log show it: a segment that
 * is a token's secret (DELETE /v1/tokens/pso_...) is replaced, so that no
 * secret is ever written down. Caller frees. */
static char *path_shown(const char *path)
{
	struct strbuf sb;
	strbuf_init(&sb, strlen(path) + 1);
	const char *p = path;
	while (*p) {
		const char *end = strchr(p + 1, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (*p == '/' && auth_is_secret(p + 1))
			strbuf_adds(&sb, "/pso_(redacted)");
		else
			strbuf_add(&sb, p, len);
		p += len;
	}
	return strbuf_detach(&sb, NULL);
}

/* The "Allow" header line for a known path: the methods of every route
 * that matches it, HEAD with GET, and OPTIONS, which any path answers. */
static char *allow_header(const char *path)
{
	const char *params[API_MAX_PARAMS];
	char scratch[1024];
	struct strbuf sb;
	strbuf_init(&sb, 64);
	strbuf_adds(&sb, "Allow: ");
	for (size_t k = 0; k < ARRAY_SIZE(routes); k++) {
		if (!match(routes[k].pattern, path, params, scratch, sizeof(scratch)))
			continue;
		strbuf_addf(&sb, "%s, ", routes[k].method);
		if (strcmp(routes[k].method, "GET") == 0)
			strbuf_adds(&sb, "HEAD, ");
	}
	strbuf_adds(&sb, "OPTIONS\r\n");
	return strbuf_detach(&sb, NULL);
}

static void dispatch(struct api_conn *c, struct http_msg *m)
{
	struct api *api = c->api;
	struct api_req req = {.api = api, .msg = m, .method = m->method};
	const struct route *rt = NULL;
	struct api_resp resp = {.status = 200};
	struct auth_principal who;
	bool have_who = false;
	char *scratch = NULL, *shown = NULL;
	const char *problem;

	/* The whole request arrived: dispatch records its own entry. */
	call_audit_free(c->head_audit);
	c->head_audit = NULL;
	free(c->token_id);
	c->token_id = NULL;
	c->token_expires = 0;

	/* Split the target into path and query, and decode the path. */
	const char *target = m->url.buf;
	const char *q = strchr(target, '?');
	req.path = q ? xstrndup(target, (size_t)(q - target)) : xstrdup(target);
	req.query = q ? xstrdup(q + 1) : NULL;
	/* "%00" would end the decoded path early: "/v1/apps/a%00/x" is not "/v1/apps/a". */
	if (req.path[0] != '/' || strstr(req.path, "%00") || http_url_decode(req.path, false) < 0 ||
	    strstr(req.path, "/../")) {
		api_error(&resp, 400, "bad_request", "malformed request path");
		goto send;
	}
	size_t pl = strlen(req.path);
	if (pl > 1 && req.path[pl - 1] == '/') {
		req.path[pl - 1] = '\0';
		req.trailing_slash = true;
	}
	shown = path_shown(req.path);
	if ((problem = head_problem(m))) {
		api_error(&resp, 400, "bad_request", "%s", problem);
		goto send;
	}

	/* Parameters are never longer than the path they come from. */
	scratch = xmalloc(pl + 1);
	bool path_known = false;
	for (size_t k = 0; k < ARRAY_SIZE(routes); k++) {
		if (!match(routes[k].pattern, req.path, req.params, scratch, pl + 1))
			continue;
		path_known = true;
		if (strcmp(routes[k].method, m->method) == 0 ||
		    (strcmp(m->method, "HEAD") == 0 && strcmp(routes[k].method, "GET") == 0)) {
			rt = &routes[k];
			break;
		}
	}
	if (!rt) {
		if (!path_known) {
			api_error(&resp, 404, "not_found", "no such endpoint: %s %s", m->method, req.path);
			goto send;
		}
		resp.headers = allow_header(req.path);
		if (strcmp(m->method, "OPTIONS") == 0)
			resp.body = json_object();
		else
			api_error(&resp, 405, "method_not_allowed", "%s is not allowed on %s", m->method, req.path);
		goto send;
	}
	/* Every call that may change something is recorded, whatever its outcome. */
	/* (Typing into a run is part of the run, recorded once when it began.) */
	if (strcmp(rt->method, "GET") != 0 && rt->handler != h_run_input)
		req.audit = call_audit_new(c, m->method, shown, rt->scope == SCOPE_PATH ? req.params[0] : NULL,
				      NULL);

	/* Who is calling. */
	if (rt->action != AUTH_PUBLIC && !(api->metrics_public && rt->handler == h_metrics)) {
		if (c->is_unix) {
			auth_principal_local(&who);
		} else {
			char *err = NULL;
			if (auth_authenticate(api->store, http_msg_header(m, "Authorization"), &who, &err) < 0) {
				api_error(&resp, 401, "unauthorized", "%s", err);
				free(err);
				goto send;
			}
		}
		have_who = true;
		req.who = &who;
		if (who.token_id) {
			c->token_id = xstrdup(who.token_id);
			c->token_expires = who.expires_at;
		}
		if (req.audit)
			audit_set_who(req.audit, &who);
		const char *app = rt->scope == SCOPE_PATH ? req.params[0] : NULL;
		if (!auth_allows(&who, rt->action, app)) {
			if (app)
				api_forbid_app(&resp, &who, rt->action, app);
			else
				api_error(&resp, 403, "forbidden", "%s %s token may not call %s %s",
					  role_article(who.role), auth_role_name(who.role), m->method,
					  rt->pattern);
			goto send;
		}
	}

	/* The body, when there is one, must be JSON. */
	if (m->body.len) {
		char *err = NULL;
		if (json_text_has_nul(m->body.buf, m->body.len)) {
			api_error(&resp, 400, "bad_request",
				  "invalid JSON: the body holds a NUL character (\\u0000), which no "
				  "value may contain");
			goto send;
		}
		req.body = json_parse(m->body.buf, m->body.len, &err);
		if (!req.body) {
			api_error(&resp, 400, "bad_request", "%s", err);
			free(err);
			goto send;
		}
		/* One value per key: which of two would count is a guess. */
		const char *dup = json_duplicate_key(req.body);
		if (dup) {
			api_error(&resp, 400, "bad_request", "invalid JSON: key '%s' appears twice in an object",
				  dup);
			goto send;
		}
	}
	req.upload_path = c->upload_path;
	req.conn = c;
	rt->handler(&req, &resp);

send:
	if (c->upload_path) {
		/* The handler took the file over, or it is no longer needed. */
		if (!req.upload_taken)
			unlink(c->upload_path);
		free(c->upload_path);
		c->upload_path = NULL;
	}
	if (c->upload_fd >= 0) {
		close(c->upload_fd);
		c->upload_fd = -1;
	}
	if (resp.deferred) {
		log_info("api %s %s -> (deferred)", m->method, shown);
		if (req.audit) {
			/* Streamed: the 200 head is already out. */
			audit_take(req.audit, &resp);
			audit_finish(req.audit, 200);
		}
		free(resp.audit_app);
		free(resp.audit_detail);
		json_free(req.body);
		free(req.path);
		free(req.query);
		free(scratch);
		free(shown);
		if (have_who)
			auth_principal_release(&who);
		return;
	}
	/* In the audit log before the answer leaves. */
	if (req.audit) {
		audit_take(req.audit, &resp);
		audit_finish(req.audit, resp.status);
	}
	free(resp.audit_app);
	free(resp.audit_detail);
	if (resp.content_type && !resp.body) {
		conn_send_raw(c, &resp, m->keep_alive && !api->stopping, strcmp(m->method, "HEAD") == 0);
	} else {
		if (!resp.body)
			resp.body = json_object();
		conn_send_with(c, resp.status, resp.body, resp.headers, m->keep_alive && !api->stopping,
			       strcmp(m->method, "HEAD") == 0);
	}
	free(resp.raw);
	free(resp.headers);
	if (rt && strcmp(m->method, "GET") != 0 && strcmp(m->method, "HEAD") != 0)
		log_info("api %s %s -> %d%s%s", m->method, shown, resp.status,
			 have_who && who.token_id ? " by " : "", have_who && who.token_id ? who.token_id : "");
	json_free(resp.body);
	json_free(req.body);
	free(req.path);
	free(req.query);
	free(scratch);
	free(shown);
	if (have_who)
		auth_principal_release(&who);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct api_conn *c = h->data;
	buf->base = c->rbuf;
	buf->len = sizeof(c->rbuf);
}

/* What the peer sent, in clear: n bytes at base, or n < 0 at its end. */
static void conn_input(struct api_conn *c, ssize_t n, const char *base)
{
	if (n < 0) {
		if (!c->pending)
			conn_close(c);
		return;
	}
	if (n == 0 || c->closing || c->close_after_write || c->stream)
		return; /* while streaming, input is ignored; EOF ends the stream */
	if (c->pending) {
		strbuf_add(&c->stash, base, (size_t)n);
		return;
	}
	if (!c->in_head)
		uv_timer_again(&c->idle);
	conn_feed(c, base, (size_t)n);
}

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	conn_input(s->data, n, buf->base);
}

static void conn_tls_data(struct tls_stream *s, ssize_t n, const char *buf, void *data)
{
	conn_input(data, n, buf);
}

static void conn_tls_open(struct tls_stream *s, int status, const char *why, void *data)
{
	struct api_conn *c = data;
	if (status < 0) {
		log_debug("api: TLS handshake with %s failed: %s", c->remote, why);
		if (status == TLS_EPLAINHTTP) {
			static const char body[] =
				"{\"error\":{\"code\":\"plain_http\",\"message\":\"plain HTTP request sent to "
				"the HTTPS API; use https://\"}}\n";
			char head[256];
			int n = snprintf(head, sizeof(head),
					 "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
					 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
					 sizeof(body) - 1, body);
			if (n > 0 && (size_t)n < sizeof(head))
				tls_stream_write_clear(s, head, (size_t)n);
		}
		conn_close(c);
		return;
	}
	conn_msg_begin(c);
}

static void conn_read_start(struct api_conn *c)
{
	if (c->tls)
		tls_stream_read_start(c->tls);
	else
		uv_read_start(&c->h.stream, conn_alloc, conn_read);
}

static void conn_feed(struct api_conn *c, const char *p, size_t left)
{
	while (left && !c->close_after_write && !c->pending && !c->stream) {
		if (!c->in_msg)
			conn_msg_begin(c);
		c->got_bytes = true;
		size_t used;
		int r = http_parser_feed(c->parser, p, left, &used);
		if (r == HTTP_FEED_MORE)
			return;
		if (r == HTTP_FEED_COMPLETE) {
			c->in_msg = false;
			dispatch(c, http_parser_msg(c->parser));
			http_parser_reset(c->parser);
			p += used;
			left -= used;
			if (c->pending && left) {
				/* Pipelined after a deferred request: wait for its answer. */
				strbuf_add(&c->stash, p, left);
				conn_read_stop(c);
			}
			continue;
		}
		int status = 400;
		const char *code = "bad_request", *msg;
		if (r == -ECANCELED && c->early_status) {
			status = c->early_status;
			code = c->early_code;
			msg = c->early_msg;
		} else if (r == -ECANCELED) {
			status = 507;
			code = "insufficient_storage";
			msg = "cannot store the upload";
		} else if (r == -EMSGSIZE) {
			status = 431;
			code = "too_large";
			msg = "request headers are larger than 64 KiB";
		} else if (r == -EFBIG) {
			status = 413;
			code = "too_large";
			msg = c->upload_path ? "the upload is larger than 2 GiB"
					     : "request body is larger than 1 MiB";
		} else {
			msg = http_parser_error(c->parser);
		}
		if (c->head_audit) {
			audit_finish(c->head_audit, status);
			c->head_audit = NULL;
		}
		send_error(c, status, code, msg, false);
		conn_read_stop(c);
		return;
	}
}

/* ---- deferred answers ---- */

struct api_pending *api_defer(struct api_req *req, struct api_resp *resp)
{
	struct api_conn *c = req->conn;
	struct api_pending *p = xcalloc(1, sizeof(*p));
	p->conn = c;
	p->keep_alive = req->msg->keep_alive;
	p->audit = req->audit;
	req->audit = NULL;
	if (p->audit)
		audit_take(p->audit, resp);
	c->pending = p;
	resp->deferred = true;
	conn_quiet(c); /* the answer is being worked on: no idle deadline */
	return p;
}

bool api_pending_gone(const struct api_pending *p)
{
	return !p->conn;
}

void api_pending_reply(struct api_pending *p, int status, struct json *body)
{
	struct api_conn *c = p->conn;
	/* Recorded even when the client has left: the call took effect. */
	if (p->audit)
		audit_finish(p->audit, status);
	if (c) {
		c->pending = NULL;
		conn_send(c, status, body, p->keep_alive && !c->api->stopping, false);
		if (!c->closing && !c->close_after_write) {
			uv_timer_start(&c->idle, conn_idle, API_IDLE_MS, API_IDLE_MS);
			conn_read_start(c);
			if (c->stash.len) {
				struct strbuf rest = c->stash;
				strbuf_init(&c->stash, 0);
				conn_feed(c, rest.buf, rest.len);
				strbuf_release(&rest);
			}
		}
	}
	json_free(body);
	free(p);
}

/* ---- streamed answers ---- */

static struct api_stream *stream_open(struct api_conn *c, const char *content_type,
				      api_stream_closed_cb closed, void *ctx)
{
	struct api_stream *st = xcalloc(1, sizeof(*st));
	st->conn = c;
	st->closed = closed;
	st->ctx = ctx;
	c->stream = st;
	conn_quiet(c); /* a tail may be quiet for long */
	struct strbuf sb;
	strbuf_init(&sb, 256);
	strbuf_addf(&sb, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n"
			 "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n",
		    content_type);
	struct api_write *w = xcalloc(1, sizeof(*w));
	size_t len;
	w->data = strbuf_detach(&sb, &len);
	conn_write(c, w, len);
	return st;
}

struct api_stream *api_stream_begin(struct api_req *req, struct api_resp *resp,
				    const char *content_type, api_stream_closed_cb closed, void *ctx)
{
	resp->deferred = true;
	return stream_open(req->conn, content_type, closed, ctx);
}

struct api_stream *api_pending_stream(struct api_pending *p, const char *content_type,
				      api_stream_closed_cb closed, void *ctx)
{
	struct api_conn *c = p->conn;
	if (p->audit)
		audit_finish(p->audit, 200);
	free(p);
	if (!c)
		return NULL;
	c->pending = NULL;
	if (c->closing)
		return NULL;
	return stream_open(c, content_type, closed, ctx);
}

int api_stream_write(struct api_stream *st, const char *data, size_t len)
{
	struct api_conn *c = st->conn;
	if (!c || c->closing)
		return -EPIPE;
	if (len == 0)
		return 0;
	if (conn_write_queue_size(c) > API_STREAM_QUEUE_MAX)
		return -ENOBUFS;
	struct api_write *w = xcalloc(1, sizeof(*w));
	w->data = xmalloc(len + 32);
	int hl = snprintf(w->data, 32, "%zx\r\n", len);
	memcpy(w->data + hl, data, len);
	memcpy(w->data + hl + len, "\r\n", 2);
	return conn_write(c, w, (size_t)hl + len + 2) < 0 ? -EPIPE : 0;
}

void api_stream_end(struct api_stream *st)
{
	struct api_conn *c = st->conn;
	/* The connection frees st when it closes, without calling back. */
	st->closed = NULL;
	if (c->closing)
		return;
	struct api_write *w = xcalloc(1, sizeof(*w));
	w->data = xstrdup("0\r\n\r\n");
	c->close_after_write = true;
	conn_write(c, w, 5);
}

void api_stream_abort(struct api_stream *st)
{
	struct api_conn *c = st->conn;
	st->closed = NULL;
	if (c && !c->closing)
		conn_close(c);
}

/* ---- uploads: a release archive goes to a file as it arrives ---- */

static int upload_body(void *ctx, const char *data, size_t len)
{
	struct api_conn *c = ctx;
	while (len) {
		ssize_t w = write(c->upload_fd, data, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		data += w;
		len -= (size_t)w;
	}
	return 0;
}

static void early(struct api_conn *c, int status, const char *code, const char *msg)
{
	c->early_status = status;
	free(c->early_code);
	free(c->early_msg);
	c->early_code = xstrdup(code);
	c->early_msg = xstrdup(msg);
}

/* A client that sent "Expect: 100-continue" waits for this before it
 * sends the body: sent once the body is going to be read. */
static void conn_continue(struct api_conn *c, const struct http_msg *m)
{
	const char *expect = http_msg_header(m, "Expect");
	if (!expect || strcasecmp(expect, "100-continue") != 0)
		return;
	struct api_write *w = xcalloc(1, sizeof(*w));
	w->data = xstrdup("HTTP/1.1 100 Continue\r\n\r\n");
	conn_write(c, w, strlen(w->data));
}

/* Before the body: the head's deadline is met. Only POST
 * /v1/apps/APP/releases streams, and only for a caller allowed to deploy
 * APP, so nobody can fill the disk unauthenticated; any other body is read
 * into memory, up to API_MAX_BODY. */
static int conn_head(void *ctx, struct http_msg *m)
{
	struct api_conn *c = ctx;
	c->in_head = false;
	uv_timer_start(&c->idle, conn_idle, API_IDLE_MS, API_IDLE_MS);
	const char *q = strchr(m->url.buf, '?');
	char *path = q ? xstrndup(m->url.buf, (size_t)(q - m->url.buf)) : xstrdup(m->url.buf);
	const char *params[API_MAX_PARAMS];
	char scratch[1024];
	bool is_upload = strcmp(m->method, "POST") == 0 && !strstr(path, "%") &&
			 match("/v1/apps/:app/releases", path, params, scratch, sizeof(scratch));
	if (!is_upload) {
		free(path);
		/* Too large a body is refused by the parser without reading it. */
		const char *cl = http_msg_header(m, "Content-Length");
		int64_t len;
		if (!cl || (str_to_i64(cl, &len) == 0 && len <= API_MAX_BODY))
			conn_continue(c, m);
		return 0;
	}
	struct api *api = c->api;
	const char *problem = head_problem(m);
	if (problem) {
		free(path);
		early(c, 400, "bad_request", problem);
		return -1;
	}
	struct auth_principal who;
	call_audit_free(c->head_audit);
	c->head_audit = NULL;
	if (c->is_unix) {
		auth_principal_local(&who);
	} else {
		char *err = NULL;
		if (auth_authenticate(api->store, http_msg_header(m, "Authorization"), &who, &err) < 0) {
			c->head_audit = call_audit_new(c, m->method, path, params[0], NULL);
			free(path);
			early(c, 401, "unauthorized", err);
			free(err);
			return -1;
		}
	}
	c->head_audit = call_audit_new(c, m->method, path, params[0], &who);
	free(path);
	bool ok = auth_allows(&who, AUTH_WRITE, params[0]);
	if (!ok) {
		struct api_resp resp = {0};
		api_forbid_app(&resp, &who, AUTH_WRITE, params[0]);
		early(c, 403, "forbidden", json_get_str(json_get(resp.body, "error"), "message"));
		json_free(resp.body);
	}
	auth_principal_release(&who);
	if (!ok)
		return -1;
	paths_mkdir_p(api->upload_dir, 0700);
	char *tmpl = xasprintf("%s/upload-XXXXXX", api->upload_dir);
	int fd = mkstemp(tmpl);
	if (fd < 0) {
		char *msg = xasprintf("cannot store the upload: %s", strerror(errno));
		early(c, 507, "insufficient_storage", msg);
		free(msg);
		free(tmpl);
		return -1;
	}
	c->upload_fd = fd;
	c->upload_path = tmpl;
	http_parser_stream_body(c->parser, upload_body, c);
	http_parser_max_body(c->parser, 2ULL * 1024 * 1024 * 1024);
	conn_continue(c, m);
	return 0;
}

/* The peer's address, without its port, for the audit log. */
static void conn_remote(struct api_conn *c, const uv_tcp_t *tcp)
{
	strlcpy_s(c->remote, c->is_unix ? "unix" : "?", sizeof(c->remote));
	if (c->is_unix)
		return;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0)
		uv_ip_name((struct sockaddr *)&ss, c->remote, sizeof(c->remote));
}

/* A TLS connection's TCP handle, closed before a session took it over. */
static void conn_tcp_closed(uv_handle_t *h)
{
	struct api_conn *c = h->data;
	free(h);
	conn_release(c);
}

/* Hands an accepted TLS connection to a session; false when it is closed
 * instead. The handshake has API_HANDSHAKE_MS to finish. */
static bool conn_start_tls(struct api_conn *c, uv_stream_t *server)
{
	struct api *api = c->api;
	uv_tcp_t *tcp = xmalloc(sizeof(*tcp));
	uv_tcp_init(api->loop, tcp);
	tcp->data = c;
	if (uv_accept(server, (uv_stream_t *)tcp) == 0) {
		conn_remote(c, tcp);
		c->tls = tls_stream_server(api->tls, tcp, conn_tls_open, conn_tls_data, c);
	}
	if (!c->tls) {
		c->closing = true;
		uv_close((uv_handle_t *)tcp, conn_tcp_closed);
		uv_close((uv_handle_t *)&c->idle, conn_closed);
		return false;
	}
	uv_timer_start(&c->idle, conn_idle, API_HANDSHAKE_MS, API_IDLE_MS);
	return true;
}

static void refused_closed(uv_handle_t *h)
{
	free(h);
}

/* Takes a connection off a full listener's queue and closes it at once,
 * without reading from it; logs a warning at most once a minute. */
static void conn_refuse(struct api *api, uv_stream_t *server, bool is_unix)
{
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_pipe_t pipe;
		uv_tcp_t tcp;
	} *h = xmalloc(sizeof(*h));
	if (is_unix)
		uv_pipe_init(api->loop, &h->pipe, 0);
	else
		uv_tcp_init(api->loop, &h->tcp);
	uv_accept(server, &h->stream);
	uv_close(&h->handle, refused_closed);
	api->refused_conns++;
	int64_t now = time_mono_ms();
	if (!api->refused_logged_ms || now - api->refused_logged_ms >= 60000) {
		api->refused_logged_ms = now;
		log_warn("api: %d connections are open on the %s; new ones are closed at once (%llu so far)",
			 is_unix ? API_MAX_UNIX_CONNS : API_MAX_TCP_CONNS, is_unix ? "unix socket" : "TCP API",
			 (unsigned long long)api->refused_conns);
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	struct api *api = server->data;
	if (status < 0 || api->stopping)
		return;
	bool is_unix = server == (uv_stream_t *)&api->unix_listener;
	if (is_unix ? api->n_unix_conns >= API_MAX_UNIX_CONNS : api->n_tcp_conns >= API_MAX_TCP_CONNS) {
		conn_refuse(api, server, is_unix);
		return;
	}
	struct api_conn *c = xcalloc(1, sizeof(*c));
	c->api = api;
	c->is_unix = is_unix;
	if (is_unix)
		api->n_unix_conns++;
	else
		api->n_tcp_conns++;
	uv_timer_init(api->loop, &c->idle);
	c->idle.data = c;
	c->open = 2;
	api->open++;
	c->next = api->conns;
	if (api->conns)
		api->conns->prev = c;
	api->conns = c;
	c->parser = http_parser_new(HTTP_KIND_REQUEST, API_MAX_HEADER, API_MAX_BODY);
	c->upload_fd = -1;
	strbuf_init(&c->stash, 0);
	http_parser_on_head(c->parser, conn_head, c);
	if (!c->is_unix && api->tls) {
		conn_start_tls(c, server);
		return;
	}
	if (c->is_unix)
		uv_pipe_init(api->loop, &c->h.pipe, 0);
	else
		uv_tcp_init(api->loop, &c->h.tcp);
	c->h.stream.data = c;
	if (uv_accept(server, &c->h.stream) < 0) {
		conn_close(c);
		return;
	}
	conn_remote(c, &c->h.tcp);
	if (c->is_unix && !peer_allowed(c)) {
		send_error(c, 403, "forbidden", "only the daemon's user or root may use this socket", false);
		return;
	}
	conn_msg_begin(c);
	uv_read_start(&c->h.stream, conn_alloc, conn_read);
}

/* ---- listeners ---- */

static int parse_hostport(const char *s, char *host, size_t hlen, int *port)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || (size_t)(colon - s) >= hlen)
		return -EINVAL;
	int64_t p;
	if (str_to_i64(colon + 1, &p) < 0 || p < 0 || p > 65535)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	*port = (int)p;
	return 0;
}

static void listener_closed(uv_handle_t *h)
{
	struct api *api = h->data;
	if (--api->open == 0) {
		free(api->version);
		free(api->socket_path);
		free(api->upload_dir);
		free(api->data_dir);
		free(api->tcp_addr);
		free(api);
	}
}

struct api *api_start(const struct api_config *cfg, char **err)
{
	struct api *api = xcalloc(1, sizeof(*api));
	api->loop = cfg->loop;
	api->store = cfg->store;
	api->sv = cfg->sv;
	api->router = cfg->router;
	api->version = xstrdup(cfg->version);
	api->deploy = cfg->deploy;
	api->metrics = cfg->metrics;
	api->metrics_public = cfg->metrics_public;
	api->logs = cfg->logs;
	api->alerts = cfg->alerts;
	api->autoscale = cfg->autoscale;
	api->audit = cfg->audit;
	api->upload_dir = xasprintf("%s/uploads", cfg->data_dir);
	api->data_dir = xstrdup(cfg->data_dir);
	api->tls = cfg->tls;
	api->socket_path = xstrdup(cfg->socket_path);
	api->tcp_addr = cfg->tcp_addr ? xstrdup(cfg->tcp_addr) : NULL;

	uv_pipe_init(api->loop, &api->unix_listener, 0);
	api->unix_listener.data = api;
	api->open++;
	api->has_unix = true;
	unlink(cfg->socket_path); /* stale: the data-dir lock is ours */
	mode_t old = umask(0177);
	int r = uv_pipe_bind(&api->unix_listener, cfg->socket_path);
	umask(old);
	if (r == 0) {
		chmod(cfg->socket_path, 0600);
		r = uv_listen((uv_stream_t *)&api->unix_listener, 128, on_connection);
	}
	if (r < 0) {
		*err = xasprintf("cannot listen on '%s': %s", cfg->socket_path, uv_strerror(r));
		goto fail;
	}
	if (cfg->tcp_addr) {
		char host[256];
		int port;
		struct sockaddr_storage ss;
		if (parse_hostport(cfg->tcp_addr, host, sizeof(host), &port) < 0) {
			*err = xasprintf("invalid --api address '%s' (want HOST:PORT)", cfg->tcp_addr);
			goto fail;
		}
		if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) < 0 &&
		    uv_ip6_addr(host[0] == '[' ? host + 1 : host, port, (struct sockaddr_in6 *)&ss) < 0) {
			*err = xasprintf("invalid --api address '%s' (want an IP address and port)", cfg->tcp_addr);
			goto fail;
		}
		uv_tcp_init(api->loop, &api->tcp_listener);
		api->tcp_listener.data = api;
		api->open++;
		api->has_tcp = true;
		r = uv_tcp_bind(&api->tcp_listener, (struct sockaddr *)&ss, 0);
		if (r == 0)
			r = uv_listen((uv_stream_t *)&api->tcp_listener, 128, on_connection);
		if (r < 0) {
			*err = xasprintf("cannot listen on '%s': %s", cfg->tcp_addr, uv_strerror(r));
			goto fail;
		}
		if (!api->tls && !netaddr_is_loopback(cfg->tcp_addr))
			log_warn("api: %s is not a loopback address and the API there is plain HTTP: "
				 "tokens cross the network in clear (see --api-tls-cert)",
				 cfg->tcp_addr);
	}
	return api;
fail:
	api_stop(api);
	return NULL;
}

void api_stop(struct api *api)
{
	if (!api || api->stopping)
		return;
	api->stopping = true;
	if (api->has_unix) {
		uv_close((uv_handle_t *)&api->unix_listener, listener_closed);
		unlink(api->socket_path);
	}
	if (api->has_tcp)
		uv_close((uv_handle_t *)&api->tcp_listener, listener_closed);
	for (struct api_conn *c = api->conns; c; c = c->next)
		conn_close(c);
}
