/* api_handlers.c: one function per endpoint of doc/api.md. Each validates
 * its input completely before it changes anything, so a bad request leaves
 * the state as it was. */
#include "api/api_internal.h"
#include "autoscale/autoscale.h"
#include "compat/json.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "spec/spec.h"
#include "store/store.h"
#include "deploy/deploy.h"
#include "router/router.h"
#include "supervisor/supervisor.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tokens live at most ten years: any longer is "never" in disguise. */
#define TOKEN_EXPIRES_MAX_MS (3650LL * 86400 * 1000)

void h_healthz(struct api_req *req, struct api_resp *resp)
{
	resp->body = json_object();
	json_set_str(resp->body, "status", "ok");
}

void h_version(struct api_req *req, struct api_resp *resp)
{
	resp->body = json_object();
	json_set_str(resp->body, "version", req->api->version);
}

/* Drops array entries whose "app" the caller may not read. */
static struct json *filter_scope(struct api_req *req, struct json *arr, const char *key)
{
	if (!req->who || req->who->n_apps == 0)
		return arr;
	struct json *out = json_array();
	for (struct json *e = json_first(arr); e; e = json_next(e))
		if (auth_allows(req->who, AUTH_READ, json_get_str(e, key)))
			json_append(out, json_dup(e));
	json_free(arr);
	return out;
}

void h_apps_list(struct api_req *req, struct api_resp *resp)
{
	resp->body = json_object();
	struct json *apps = supervisor_apps_json(req->api->sv);
	for (struct json *a = json_first(apps); a; a = json_next(a))
		autoscale_decorate(req->api->autoscale, a);
	json_set(resp->body, "apps", filter_scope(req, apps, "name"));
}

/* Who made a release: the token's id, or "local" on the unix socket. */
static const char *author_of(const struct api_req *req)
{
	return req->who && req->who->token_id ? req->who->token_id : "local";
}

/* A release's message: a string (or null) of at most DEPLOY_MESSAGE_MAX
 * characters; else a 400 in resp. */
static bool message_ok(struct api_req *req, struct api_resp *resp, const struct json *m)
{
	if (m && !json_is_null(m) && !json_is_string(m)) {
		api_error(resp, 400, "bad_request", "'message' must be a string");
		return false;
	}
	const char *s = json_str(m);
	size_t n = 0;
	for (const char *p = s; p && *p; p++)
		n += ((unsigned char)*p & 0xC0) != 0x80; /* characters, not bytes */
	if (n > DEPLOY_MESSAGE_MAX) {
		api_error(resp, 400, "bad_request", "'message' is longer than %d characters", DEPLOY_MESSAGE_MAX);
		return false;
	}
	return true;
}

static struct deploy_who who_of(const struct api_req *req, const char *message)
{
	struct deploy_who who = {author_of(req), message, NULL, 0};
	if (req->who) {
		who.apps = req->who->apps;
		who.n_apps = req->who->n_apps;
	}
	return who;
}

void h_apps_apply(struct api_req *req, struct api_resp *resp)
{
	if (!api_body_object(req, resp, false))
		return;
	struct json *js = json_get(req->body, "spec");
	struct json *jd = json_get(req->body, "dir");
	struct json *jf = json_get(req->body, "filename");
	if (!json_is_string(js)) {
		api_error(resp, 400, "bad_request", "'spec' must be a string holding paasops.yaml");
		return;
	}
	if (jd && !json_is_null(jd) && !json_is_string(jd)) {
		api_error(resp, 400, "bad_request", "'dir' must be a string");
		return;
	}
	if (jf && !json_is_null(jf) && !json_is_string(jf)) {
		api_error(resp, 400, "bad_request", "'filename' must be a string");
		return;
	}
	if (!message_ok(req, resp, json_get(req->body, "message")))
		return;
	const char *yaml = json_str(js);
	const char *filename = json_str(jf) ? json_str(jf) : "paasops.yaml";
	char cwd[4096];
	const char *dir = json_str(jd);
	if (!dir)
		dir = getcwd(cwd, sizeof(cwd)) ? cwd : "/";
	if (dir[0] != '/') {
		api_error(resp, 400, "bad_request", "'dir' must be an absolute path, not '%s'", dir);
		return;
	}
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, X_OK) != 0) {
		api_error(resp, 400, "bad_request", "'dir' '%s' is not an accessible directory", dir);
		return;
	}
	char *err = NULL;
	struct spec *spec = spec_parse(yaml, strlen(yaml), filename, &err);
	if (!spec) {
		api_error(resp, 422, "invalid_spec", "%s has errors", filename);
		struct json *e = json_get(resp->body, "error");
		struct json *details = json_set(e, "details", json_array());
		char *save = NULL;
		for (char *line = strtok_r(err, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			json_append(details, json_string(line));
		free(err);
		return;
	}
	resp->audit_app = xstrdup(spec->app);
	if (!auth_allows(req->who, AUTH_WRITE, spec->app)) {
		api_forbid_app(resp, req->who, AUTH_WRITE, spec->app);
		spec_free(spec);
		return;
	}
	struct deploy_who who = who_of(req, json_get_str(req->body, "message"));
	char *conflict = supervisor_route_conflict(req->api->sv, spec, who.apps, who.n_apps);
	spec_free(spec);
	if (conflict) {
		api_error(resp, 409, "conflict", "%s", conflict);
		free(conflict);
		return;
	}
	struct json *out = NULL;
	int r = deploy_apply(req->api->deploy, yaml, filename, dir, &who, &out, &err);
	if (r < 0) {
		api_error_errno(resp, r, err);
		free(err);
		return;
	}
	resp->status = json_true(json_get(out, "created")) ? 201 : 200;
	resp->body = out;
}

static bool need_app(struct api_req *req, struct api_resp *resp)
{
	if (supervisor_has_app(req->api->sv, req->params[0]))
		return true;
	api_error(resp, 404, "not_found", "app '%s' not found", req->params[0]);
	return false;
}

void h_app_show(struct api_req *req, struct api_resp *resp)
{
	if (!need_app(req, resp))
		return;
	resp->body = supervisor_app_json(req->api->sv, req->params[0], true);
	autoscale_decorate(req->api->autoscale, resp->body);
}

void h_app_delete(struct api_req *req, struct api_resp *resp)
{
	char *err = NULL;
	int r = deploy_destroy(req->api->deploy, req->params[0], &err);
	if (r < 0) {
		api_error_errno(resp, r, err);
		free(err);
		return;
	}
	resp->body = json_object();
	json_set_str(resp->body, "deleted", req->params[0]);
}

void h_app_instances(struct api_req *req, struct api_resp *resp)
{
	if (!need_app(req, resp))
		return;
	resp->body = json_object();
	json_set(resp->body, "instances", supervisor_instances_json(req->api->sv, req->params[0]));
}

void h_instances(struct api_req *req, struct api_resp *resp)
{
	resp->body = json_object();
	json_set(resp->body, "instances", filter_scope(req, supervisor_instances_json(req->api->sv, NULL), "app"));
}

static void do_restart(struct api_req *req, struct api_resp *resp, const char *proc, const char *inst)
{
	char *err = NULL;
	struct json *ids = json_array();
	int r = supervisor_restart(req->api->sv, req->params[0], proc, inst, ids, &err);
	if (r < 0) {
		api_error_errno(resp, r, err);
		free(err);
		json_free(ids);
		return;
	}
	resp->body = json_object();
	json_set(resp->body, "restarted", ids);
}

void h_instance_restart(struct api_req *req, struct api_resp *resp)
{
	do_restart(req, resp, NULL, req->params[1]);
}

/* Reads the optional string member key; false (400 set) when it is not a string. */
static bool opt_string(struct api_req *req, struct api_resp *resp, const char *key, const char **out)
{
	struct json *v = json_get(req->body, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return true;
	if (!json_is_string(v) || !*json_str(v)) {
		api_error(resp, 400, "bad_request", "'%s' must be a non-empty string", key);
		return false;
	}
	*out = json_str(v);
	return true;
}

void h_app_restart(struct api_req *req, struct api_resp *resp)
{
	const char *proc, *inst;
	if (!api_body_object(req, resp, true) || !opt_string(req, resp, "process", &proc) ||
	    !opt_string(req, resp, "instance", &inst))
		return;
	if (proc && inst) {
		api_error(resp, 400, "bad_request", "give 'process' or 'instance', not both");
		return;
	}
	do_restart(req, resp, proc, inst);
}

void h_app_scale(struct api_req *req, struct api_resp *resp)
{
	if (!api_body_object(req, resp, false))
		return;
	struct json *procs = json_get(req->body, "processes");
	if (!json_is_object(procs) || json_size(procs) == 0) {
		api_error(resp, 400, "bad_request", "'processes' must be an object like {\"web\": 3}");
		return;
	}
	int n = (int)json_size(procs);
	if (n > SPEC_MAX_PROCESSES) {
		api_error(resp, 400, "bad_request", "too many process types in one request");
		return;
	}
	const char **names = xcalloc((size_t)n, sizeof(*names));
	int *counts = xcalloc((size_t)n, sizeof(*counts));
	int k = 0;
	for (struct json *e = json_first(procs); e; e = json_next(e), k++) {
		int64_t v;
		if (json_get_int(e, &v) < 0 || v < 0 || v > SPEC_MAX_INSTANCES) {
			api_error(resp, 400, "bad_request",
				  "instances for '%s' must be an integer from 0 to %d", json_key(e),
				  SPEC_MAX_INSTANCES);
			goto out;
		}
		names[k] = json_key(e);
		counts[k] = (int)v;
	}
	char *err = NULL;
	int r = supervisor_scale(req->api->sv, req->params[0], names, counts, n, &err);
	if (r < 0) {
		api_error_errno(resp, r, err);
		free(err);
		goto out;
	}
	struct strbuf detail;
	strbuf_init(&detail, 64);
	for (k = 0; k < n; k++)
		strbuf_addf(&detail, "%s%s=%d", k ? " " : "", names[k], counts[k]);
	resp->audit_detail = strbuf_detach(&detail, NULL);
	resp->body = supervisor_app_json(req->api->sv, req->params[0], false);
out:
	free(names);
	free(counts);
}

static void stop_start(struct api_req *req, struct api_resp *resp, bool stop)
{
	const char *proc;
	if (!api_body_object(req, resp, true) || !opt_string(req, resp, "process", &proc))
		return;
	char *err = NULL;
	int r = supervisor_set_stopped(req->api->sv, req->params[0], proc, stop, &err);
	if (r < 0) {
		api_error_errno(resp, r, err);
		free(err);
		return;
	}
	resp->body = supervisor_app_json(req->api->sv, req->params[0], false);
}

void h_app_stop(struct api_req *req, struct api_resp *resp)
{
	stop_start(req, resp, true);
}

void h_app_start(struct api_req *req, struct api_resp *resp)
{
	stop_start(req, resp, false);
}

void h_app_maintenance(struct api_req *req, struct api_resp *resp)
{
	if (!api_body_object(req, resp, false))
		return;
	const struct json *on = json_get(req->body, "enabled");
	for (struct json *m = json_first(req->body); m; m = json_next(m)) {
		if (!str_eq(json_key(m), "enabled")) {
			api_error(resp, 400, "bad_request", "unknown field '%s' (enabled)", json_key(m));
			return;
		}
	}
	if (!json_is_bool(on)) {
		api_error(resp, 400, "bad_request", "'enabled' must be true or false");
		return;
	}
	char *err = NULL;
	int r = supervisor_set_maintenance(req->api->sv, req->params[0], json_true(on), &err);
	if (r < 0) {
		api_error_errno(resp, r, err);
		free(err);
		return;
	}
	resp->audit_detail = xstrdup(json_true(on) ? "on" : "off");
	resp->body = supervisor_app_json(req->api->sv, req->params[0], false);
}

void h_app_logs(struct api_req *req, struct api_resp *resp)
{
	int64_t lines, after;
	if (api_query_int(req, resp, "lines", 100, 1, 10000, &lines) < 0 ||
	    api_query_int(req, resp, "after", 0, 0, INT64_MAX, &after) < 0)
		return;
	char *proc = api_query(req, "process");
	char *inst = api_query(req, "instance");
	resp->body = supervisor_logs_json(req->api->sv, req->params[0], proc, inst, (uint64_t)after, (int)lines);
	if (!resp->body)
		api_error(resp, 404, "not_found", "app '%s' not found", req->params[0]);
	free(proc);
	free(inst);
}

void h_app_stats(struct api_req *req, struct api_resp *resp)
{
	if (!need_app(req, resp))
		return;
	if (!req->api->router) {
		api_error(resp, 409, "conflict", "the router is off (paasops serve --http off)");
		return;
	}
	resp->body = router_stats_json(req->api->router, req->params[0]);
	json_set_str(resp->body, "app", req->params[0]);
}

static void set_ts(struct json *o, const char *key, int64_t ms)
{
	char ts[40];
	time_format_iso(ms, ts, sizeof(ts));
	json_set_str(o, key, ts);
}

struct events_ctx {
	struct api_req *req;
	struct json *arr;
};

static void on_event(void *ctx, const struct store_event *ev)
{
	struct events_ctx *ec = ctx;
	/* A scoped token sees its apps' events only, not installation-wide ones
	 * (tokens created and revoked). */
	if (ec->req->who && ec->req->who->n_apps &&
	    (!ev->app || !auth_allows(ec->req->who, AUTH_READ, ev->app)))
		return;
	struct json *o = json_append(ec->arr, json_object());
	json_set_int(o, "id", ev->id);
	set_ts(o, "time", ev->time);
	json_set_str(o, "app", ev->app);
	json_set_str(o, "process", ev->process);
	json_set_str(o, "instance", ev->instance);
	json_set_str(o, "type", ev->type);
	json_set_str(o, "state", ev->state);
	json_set_str(o, "reason", ev->reason);
	if (ev->pid)
		json_set_int(o, "pid", ev->pid);
	else
		json_set(o, "pid", json_null());
	if (ev->exit_status >= 0)
		json_set_int(o, "exit_status", ev->exit_status);
	else
		json_set(o, "exit_status", json_null());
	if (ev->signal)
		json_set_int(o, "signal", ev->signal);
	else
		json_set(o, "signal", json_null());
}

void h_events(struct api_req *req, struct api_resp *resp)
{
	int64_t limit, after;
	if (api_query_int(req, resp, "limit", 100, 1, 1000, &limit) < 0 ||
	    api_query_int(req, resp, "after", 0, 0, INT64_MAX, &after) < 0)
		return;
	char *app = api_query(req, "app");
	if (app && !auth_allows(req->who, AUTH_READ, app)) {
		api_forbid_app(resp, req->who, AUTH_READ, app);
		free(app);
		return;
	}
	struct events_ctx ec = {req, json_array()};
	store_events_each(req->api->store, app && *app ? app : NULL, after, (int)limit, on_event, &ec);
	resp->body = json_object();
	json_set(resp->body, "events", ec.arr);
	free(app);
}

void h_tokens_create(struct api_req *req, struct api_resp *resp)
{
	if (!api_body_object(req, resp, false))
		return;
	for (struct json *m = json_first(req->body); m; m = json_next(m)) {
		const char *k = json_key(m);
		if (!str_eq(k, "role") && !str_eq(k, "apps") && !str_eq(k, "expires") && !str_eq(k, "name")) {
			api_error(resp, 400, "bad_request", "unknown field '%s' (role, apps, expires, name)", k);
			return;
		}
	}
	enum auth_role role;
	const char *rs = json_get_str(req->body, "role");
	if (!rs || auth_role_parse(rs, &role) < 0) {
		api_error(resp, 400, "bad_request", "'role' must be one of admin, deployer, viewer");
		return;
	}
	struct json *apps = json_get(req->body, "apps");
	if (json_is_null(apps))
		apps = NULL;
	int64_t expires = 0;
	struct json *je = json_get(req->body, "expires");
	if (je && !json_is_null(je)) {
		const char *s = json_is_string(je) ? json_str(je) : "";
		if (duration_parse_with_unit(s, &expires) < 0 || expires <= 0) {
			api_error(resp, 400, "bad_request", "'expires' must be a duration with a unit like '30d' or '12h'");
			return;
		}
		if (expires > TOKEN_EXPIRES_MAX_MS) {
			api_error(resp, 400, "bad_request", "'expires' must be at most 3650d (ten years), not '%s'", s);
			return;
		}
	}
	struct json *jn = json_get(req->body, "name");
	if (jn && !json_is_null(jn) && !json_is_string(jn)) {
		api_error(resp, 400, "bad_request", "'name' must be a string");
		return;
	}
	char *err = NULL;
	struct json *out = NULL;
	int r = auth_token_create(req->api->store, role, apps, expires, json_str(jn), &out, &err);
	if (r < 0) {
		api_error_errno(resp, r, err);
		free(err);
		return;
	}
	supervisor_note(req->api->sv, NULL, "token", "token created");
	struct strbuf detail;
	strbuf_init(&detail, 64);
	strbuf_addf(&detail, "id=%s role=%s apps=", json_get_str(out, "id"), auth_role_name(role));
	for (size_t k = 0; k < json_size(apps); k++)
		strbuf_addf(&detail, "%s%s", k ? "," : "", json_str(json_at(apps, k)));
	if (!json_size(apps))
		strbuf_addc(&detail, '*');
	if (json_str(jn))
		strbuf_addf(&detail, " name=%s", json_str(jn));
	resp->audit_detail = strbuf_detach(&detail, NULL);
	resp->status = 201;
	resp->body = out;
}

void h_tokens_list(struct api_req *req, struct api_resp *resp)
{
	resp->body = json_object();
	json_set(resp->body, "tokens", auth_tokens_json(req->api->store));
}

/* DELETE /v1/tokens/REF: REF is the token's id, or its secret for a caller
 * that holds only that; the answer and the audit log name the id. */
void h_tokens_revoke(struct api_req *req, struct api_resp *resp)
{
	char *err = NULL, *id = NULL;
	int r = auth_token_revoke(req->api->store, req->params[0], &id, &err);
	if (r < 0) {
		api_error_errno(resp, r, err);
		free(err);
		return;
	}
	char why[128];
	snprintf(why, sizeof(why), "token %s revoked", id);
	supervisor_note(req->api->sv, NULL, "token", why);
	api_close_token(req->api, id, req->conn);
	resp->audit_detail = xstrdup(id);
	resp->body = json_object();
	json_set_str(resp->body, "revoked", id);
	free(id);
}

/* ---- releases and deploys ---- */

static void upload_answer(void *ctx, int status, struct json *body)
{
	api_pending_reply(ctx, status, body);
}

void h_releases_upload(struct api_req *req, struct api_resp *resp)
{
	if (!req->upload_path) {
		api_error(resp, 400, "bad_request", "upload a release archive (tar or tar.gz) as the body");
		return;
	}
	if (!spec_valid_name(req->params[0])) {
		api_error(resp, 400, "bad_request", "invalid app name '%s'", req->params[0]);
		return;
	}
	char *spec_name = api_query(req, "spec");
	char *message = api_query(req, "message");
	struct json *jm = message ? json_string(message) : NULL;
	bool ok = message_ok(req, resp, jm);
	json_free(jm);
	if (!ok) {
		free(spec_name);
		free(message);
		return;
	}
	const char *sha = http_msg_header(req->msg, "X-Content-SHA256");
	struct deploy_who who = who_of(req, message);
	struct api_pending *p = api_defer(req, resp);
	req->upload_taken = true;
	deploy_archive(req->api->deploy, req->params[0], req->upload_path, spec_name ? spec_name : "paasops.yaml",
		       sha, &who, upload_answer, p);
	free(spec_name);
	free(message);
}

void h_releases_list(struct api_req *req, struct api_resp *resp)
{
	resp->body = json_object();
	struct json *list = deploy_releases_json(req->api->deploy, req->params[0]);
	if (json_size(list) == 0 && !supervisor_has_app(req->api->sv, req->params[0])) {
		json_free(list);
		api_error(resp, 404, "not_found", "app '%s' not found", req->params[0]);
		return;
	}
	json_set(resp->body, "releases", list);
}

/* "v3" or "3". */
static int parse_version(const char *s)
{
	if (s && (*s == 'v' || *s == 'V'))
		s++;
	int64_t v;
	if (str_to_i64(s, &v) < 0 || v < 1 || v > 1000000000)
		return -1;
	return (int)v;
}

void h_release_show(struct api_req *req, struct api_resp *resp)
{
	int v = parse_version(req->params[1]);
	if (v < 0) {
		api_error(resp, 400, "bad_request", "a release is named like v3, not '%s'", req->params[1]);
		return;
	}
	resp->body = deploy_release_json(req->api->deploy, req->params[0], v);
	if (!resp->body)
		api_error(resp, 404, "not_found", "app '%s' has no release v%d", req->params[0], v);
}

void h_rollback(struct api_req *req, struct api_resp *resp)
{
	if (!api_body_object(req, resp, true))
		return;
	int v = 0;
	struct json *jv = json_get(req->body, "version");
	if (jv && !json_is_null(jv)) {
		int64_t n;
		if (json_is_string(jv))
			v = parse_version(json_str(jv));
		else
			v = json_get_int(jv, &n) == 0 && n > 0 && n < 1000000000 ? (int)n : -1;
		if (v < 0) {
			api_error(resp, 400, "bad_request", "'version' must be a release like 3 or \"v3\"");
			return;
		}
	}
	if (!message_ok(req, resp, json_get(req->body, "message")))
		return;
	struct deploy_who who = who_of(req, json_get_str(req->body, "message"));
	char *err = NULL;
	int r = deploy_rollback(req->api->deploy, req->params[0], v, &who, &resp->body, &err);
	if (r < 0) {
		api_error_errno(resp, r, err);
		free(err);
		return;
	}
	resp->status = 202;
}

void h_config_show(struct api_req *req, struct api_resp *resp)
{
	resp->body = deploy_config_json(req->api->deploy, req->params[0]);
	if (!resp->body)
		api_error(resp, 404, "not_found", "app '%s' not found", req->params[0]);
}

/* "set A, B (secret); unset C": the names a config change touched, never
 * their values. Only for a change that was accepted: the names are valid. */
static char *config_detail(const struct json *body)
{
	const struct json *secret = json_get(body, "secret");
	struct strbuf sb;
	strbuf_init(&sb, 64);
	const char *sep = "set ";
	for (const struct json *e = json_first(json_get(body, "set")); e; e = json_next(e)) {
		bool is_secret = false;
		for (const struct json *n = json_first(secret); n; n = json_next(n))
			is_secret = is_secret || str_eq(json_str(n), json_key(e));
		strbuf_addf(&sb, "%s%s%s", sep, json_key(e), is_secret ? " (secret)" : "");
		sep = ", ";
	}
	sep = sb.len ? "; unset " : "unset ";
	for (const struct json *e = json_first(json_get(body, "unset")); e; e = json_next(e)) {
		strbuf_addf(&sb, "%s%s", sep, json_str(e));
		sep = ", ";
	}
	return strbuf_detach(&sb, NULL);
}

void h_config_change(struct api_req *req, struct api_resp *resp)
{
	if (!api_body_object(req, resp, false))
		return;
	for (struct json *m = json_first(req->body); m; m = json_next(m)) {
		const char *k = json_key(m);
		if (!str_eq(k, "set") && !str_eq(k, "secret") && !str_eq(k, "unset") && !str_eq(k, "message")) {
			api_error(resp, 400, "bad_request", "unknown field '%s' (set, secret, unset, message)", k);
			return;
		}
	}
	if (!message_ok(req, resp, json_get(req->body, "message")))
		return;
	struct deploy_who who = who_of(req, json_get_str(req->body, "message"));
	char *err = NULL;
	int r = deploy_config_change(req->api->deploy, req->params[0], json_get(req->body, "set"),
				     json_get(req->body, "secret"), json_get(req->body, "unset"), &who,
				     &resp->body, &err);
	if (r < 0) {
		api_error_errno(resp, r, err);
		free(err);
		return;
	}
	resp->audit_detail = config_detail(req->body);
	resp->status = 202;
}

void h_deploy_status(struct api_req *req, struct api_resp *resp)
{
	resp->body = deploy_status_json(req->api->deploy, req->params[0]);
	if (!resp->body)
		api_error(resp, 404, "not_found", "app '%s' not found", req->params[0]);
}

void h_deploy_promote(struct api_req *req, struct api_resp *resp)
{
	char *err = NULL;
	int rc = deploy_promote(req->api->deploy, req->params[0], &err);
	if (rc < 0) {
		api_error_errno(resp, rc, err);
		free(err);
		return;
	}
	resp->status = 202;
	resp->body = deploy_status_json(req->api->deploy, req->params[0]);
}
