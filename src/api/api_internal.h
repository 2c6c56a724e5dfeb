/* api_internal.h: what the API's server and its handlers share. */
#ifndef PAASOPS_API_INTERNAL_H
#define PAASOPS_API_INTERNAL_H
#include "api/api.h"
#include "auth/auth.h"
#include "compat/http.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json;

#define API_MAX_BODY (1024 * 1024)
#define API_MAX_HEADER (64 * 1024)
#define API_MAX_PARAMS 4

struct api {
	uv_loop_t *loop;
	struct store *store;
	struct supervisor *sv;
	struct router *router; /* may be NULL */
	struct deploy *deploy;
	struct metrics *metrics;
	struct logs *logs;
	struct alerts *alerts; /* may be NULL */
	struct autoscale *autoscale; /* may be NULL */
	struct audit *audit;
	bool metrics_public;
	char *upload_dir;
	char *data_dir;
	char *version;
	struct tls_ctx *tls; /* borrowed; NULL: TCP is plain HTTP */
	char *socket_path;
	char *tcp_addr; /* --api HOST:PORT, or NULL */
	uv_pipe_t unix_listener;
	uv_tcp_t tcp_listener;
	bool has_unix, has_tcp;
	bool stopping;
	int open; /* listeners + connections */
	struct api_conn *conns;
	int n_tcp_conns, n_unix_conns; /* open, each below its cap */
	uint64_t refused_conns;         /* closed at once: their listener was full */
	int64_t refused_logged_ms;      /* when the last warning about it was logged */
};

struct api_req {
	struct api *api;
	const struct http_msg *msg;
	const char *method;
	char *path;  /* decoded path, without the query */
	char *query; /* raw query string, or NULL */
	bool trailing_slash; /* the path ended in '/', which path no longer has */
	const char *params[API_MAX_PARAMS]; /* ":name" segments in route order */
	struct auth_principal *who;
	struct json *body; /* parsed JSON body or NULL */
	const char *upload_path; /* POST .../releases: the uploaded file */
	bool upload_taken;       /* the handler took the file over */
	struct api_conn *conn;
	/* The audit entry of a call that changes something, recorded with the
	 * status when the answer goes out; api_defer() takes it over. */
	struct api_audit *audit;
};

struct api_resp {
	int status;
	struct json *body; /* taken over by the server */
	bool deferred;     /* answered later through api_pending_reply() */
	/* A non-JSON answer (GET /metrics, the dashboard's files) instead of
	 * body, with any status; it is sent when content_type is set and body
	 * is not (an error after all). */
	char *raw;                    /* taken over by the server; NULL: no body */
	size_t raw_len;
	const char *content_type;     /* static */
	const char *content_encoding; /* static, or NULL */
	const char *cache_control;    /* static, or NULL for "no-store" */
	char *headers; /* more header lines, each ending in "\r\n", or NULL; taken over */
	/* For the audit log, both taken over by the server and set before any
	 * api_defer(): the app when it is not the path's (POST /v1/apps names it
	 * in the spec), and a short summary of the change that holds names and
	 * counts, never values or secrets. */
	char *audit_app;
	char *audit_detail;
};

/* Answering later: api_defer() from a handler, api_pending_reply() (which
 * takes over body) once the answer is known; the connection reads nothing
 * else meanwhile. A reply after the client left is dropped. */
struct api_pending;
struct api_pending *api_defer(struct api_req *req, struct api_resp *resp);
void api_pending_reply(struct api_pending *p, int status, struct json *body);
/* Whether the client of p has left (the API may be stopping, too): then
 * the reply is dropped, and the struct api must not be touched. */
bool api_pending_gone(const struct api_pending *p);

/* Streaming an answer (GET /v1/logs/stream): api_stream_begin() from a
 * handler sends a 200 head with chunked encoding; each api_stream_write()
 * is one chunk; api_stream_end() sends the last chunk and closes. The
 * connection reads nothing else meanwhile. closed is called once when the
 * client goes away or the API stops, unless api_stream_end() came first;
 * the stream must not be used after either. api_stream_write returns
 * -ENOBUFS while more than API_STREAM_QUEUE_MAX bytes wait to be sent (the
 * caller drops or waits) and -EPIPE once the client is gone. */
#define API_STREAM_QUEUE_MAX (4 * 1024 * 1024)
struct api_stream;
typedef void (*api_stream_closed_cb)(void *ctx);
struct api_stream *api_stream_begin(struct api_req *req, struct api_resp *resp,
				    const char *content_type, api_stream_closed_cb closed, void *ctx);
/* A deferred request answered with a stream after all (the same 200 head);
 * NULL when the client has gone meanwhile. Takes p over either way. */
struct api_stream *api_pending_stream(struct api_pending *p, const char *content_type,
				      api_stream_closed_cb closed, void *ctx);
int api_stream_write(struct api_stream *s, const char *data, size_t len);
void api_stream_end(struct api_stream *s);
/* Ends a stream without its last chunk, so that the client knows the
 * answer is incomplete; closed is not called. */
void api_stream_abort(struct api_stream *s);

typedef void (*api_handler_cb)(struct api_req *req, struct api_resp *resp);

/* Sets an error answer. */
void api_error(struct api_resp *resp, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Ends the deferred and streamed answers (a log tail, a run) of every
 * connection but except whose request was authenticated by token_id, as
 * once it is revoked. */
void api_close_token(struct api *api, const char *token_id, const struct api_conn *except);
/* Refuses a call about app with 403, in the one wording every endpoint
 * uses: "a viewer token may not change app 'shop'", or "a deployer token
 * scoped to other apps may not read app 'shop'" when only the scope is in
 * the way. who is the caller that auth_allows(who, a, app) refused. */
void api_forbid_app(struct api_resp *resp, const struct auth_principal *who, enum auth_action a,
		    const char *app);
/* Maps a negative errno from a module to status + code, with msg. */
void api_error_errno(struct api_resp *resp, int err, const char *msg);
/* Decoded query parameter (caller frees), or NULL. */
char *api_query(const struct api_req *req, const char *name);
/* Parses an integer query parameter within [min,max]; def when absent. -EINVAL + error set on bad values. */
int api_query_int(const struct api_req *req, struct api_resp *resp, const char *name, int64_t def,
		  int64_t min, int64_t max, int64_t *out);
/* Requires a JSON object body; false (with a 400 set) otherwise. An absent
 * body is accepted as {} when optional is true. */
bool api_body_object(struct api_req *req, struct api_resp *resp, bool optional);

/* api_handlers.c */
void h_healthz(struct api_req *, struct api_resp *);
void h_version(struct api_req *, struct api_resp *);
void h_apps_list(struct api_req *, struct api_resp *);
void h_apps_apply(struct api_req *, struct api_resp *);
void h_app_show(struct api_req *, struct api_resp *);
void h_app_delete(struct api_req *, struct api_resp *);
void h_app_instances(struct api_req *, struct api_resp *);
void h_instances(struct api_req *, struct api_resp *);
void h_instance_restart(struct api_req *, struct api_resp *);
void h_app_scale(struct api_req *, struct api_resp *);
void h_app_restart(struct api_req *, struct api_resp *);
void h_app_stop(struct api_req *, struct api_resp *);
void h_app_start(struct api_req *, struct api_resp *);
void h_app_maintenance(struct api_req *, struct api_resp *);
void h_app_logs(struct api_req *, struct api_resp *);
void h_app_stats(struct api_req *, struct api_resp *);
void h_releases_upload(struct api_req *, struct api_resp *);
void h_releases_list(struct api_req *, struct api_resp *);
void h_release_show(struct api_req *, struct api_resp *);
void h_rollback(struct api_req *, struct api_resp *);
void h_config_show(struct api_req *, struct api_resp *);
void h_config_change(struct api_req *, struct api_resp *);
void h_deploy_status(struct api_req *, struct api_resp *);
void h_deploy_promote(struct api_req *, struct api_resp *);
void h_events(struct api_req *, struct api_resp *);
/* api_backup.c */
void h_backup(struct api_req *, struct api_resp *);
/* api_run.c */
void h_app_run(struct api_req *, struct api_resp *);
void h_run_input(struct api_req *, struct api_resp *);
/* api_alerts.c */
void h_alerts(struct api_req *, struct api_resp *);
void h_alerts_history(struct api_req *, struct api_resp *);
void h_alerts_test(struct api_req *, struct api_resp *);
/* api_logs.c */
void h_logs(struct api_req *, struct api_resp *);
void h_logs_stream(struct api_req *, struct api_resp *);
void h_logs_stats(struct api_req *, struct api_resp *);
void h_log_drains_list(struct api_req *, struct api_resp *);
void h_log_drains_add(struct api_req *, struct api_resp *);
void h_log_drains_remove(struct api_req *, struct api_resp *);
/* api_metrics.c */
void h_metrics(struct api_req *, struct api_resp *);
void h_metrics_status(struct api_req *, struct api_resp *);
void h_metrics_query(struct api_req *, struct api_resp *);
void h_usage(struct api_req *, struct api_resp *);
void h_tokens_create(struct api_req *, struct api_resp *);
void h_tokens_list(struct api_req *, struct api_resp *);
void h_tokens_revoke(struct api_req *, struct api_resp *);
/* api_export.c */
void h_export_kubernetes(struct api_req *, struct api_resp *);
void h_export_dockerfile(struct api_req *, struct api_resp *);
/* api_audit.c */
void h_audit(struct api_req *, struct api_resp *);
void h_audit_verify(struct api_req *, struct api_resp *);
/* api_ui.c */
void h_ui(struct api_req *, struct api_resp *);
/* api_doctor.c */
void h_doctor(struct api_req *, struct api_resp *);

#endif
