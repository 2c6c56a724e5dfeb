/* api_audit.c: reading the audit log (GET /v1/audit) and checking its hash
 * chain (GET /v1/audit/verify), both admin only. What is recorded, and
 * when, is api.c's dispatch; how, auth/audit.c. */
#include "api/api_internal.h"
#include "auth/audit.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "spec/spec.h"
#include <errno.h>
#include <stdlib.h>

#define AUDIT_LIMIT_DEFAULT 100
#define AUDIT_LIMIT_MAX 10000

void h_audit(struct api_req *req, struct api_resp *resp)
{
	int64_t limit, after;
	if (api_query_int(req, resp, "limit", AUDIT_LIMIT_DEFAULT, 1, AUDIT_LIMIT_MAX, &limit) < 0 ||
	    api_query_int(req, resp, "after", 0, 0, INT64_MAX, &after) < 0)
		return;
	char *app = api_query(req, "app");
	if (app && !spec_valid_name(app)) {
		api_error(resp, 400, "bad_request",
			  "query parameter 'app' must be an app name (lowercase letters, digits and '-')");
		free(app);
		return;
	}
	struct json *entries = audit_entries_json(req->api->store, app, after, limit);
	free(app);
	if (!entries) {
		api_error(resp, 500, "internal", "cannot read the audit log");
		return;
	}
	resp->body = json_object();
	json_set(resp->body, "entries", entries);
}

/* The verdict as GET /v1/audit/verify answers it (doc/api.md). */
static struct json *verdict_json(const struct audit_verdict *v, const struct audit_last *last)
{
	struct json *o = json_object();
	json_set_bool(o, "ok", v->ok);
	json_set_int(o, "entries", v->entries);
	if (v->broken) {
		json_set_int(o, "broken_at", v->broken_at);
	} else {
		json_set_str(o, "head", v->entries ? v->head : NULL);
	}
	if (v->reason)
		json_set_str(o, "reason", v->reason);
	if (v->keyed_from)
		json_set_int(o, "keyed_from", v->keyed_from);
	else
		json_set(o, "keyed_from", json_null());
	if (v->unchecked) {
		struct json *u = json_set(o, "unchecked", json_object());
		json_set_int(u, "entries", v->unchecked);
		json_set_int(u, "from", v->unchecked_from);
		json_set_int(u, "to", v->unchecked_to);
	}
	if (last && last->entries) {
		struct json *l = json_set(o, "last_verify", json_object());
		char ts[40];
		time_format_iso(last->at_ms, ts, sizeof(ts));
		json_set_str(l, "time", ts);
		json_set_int(l, "entries", last->entries);
		json_set_str(l, "head", last->head);
		if (!v->broken && v->entries >= last->entries)
			json_set_int(o, "new_entries", v->entries - last->entries);
	}
	return o;
}

static void verify_answered(void *ctx, int status, const struct audit_verdict *v,
			    const struct audit_last *last)
{
	struct api_pending *p = ctx;
	if (status < 0) {
		struct api_resp r = {0};
		if (status == -ECANCELED)
			api_error(&r, 503, "unavailable", "the audit verify was stopped: the daemon is shutting down");
		else
			api_error(&r, 500, "internal", "cannot read the audit log");
		api_pending_reply(p, r.status, r.body);
		return;
	}
	api_pending_reply(p, 200, verdict_json(v, last));
}

/* On the thread pool, one walk at a time: a request with the anchor of the
 * walk running (or none, like it) joins it; one with another anchor is
 * answered 409 at once. */
void h_audit_verify(struct api_req *req, struct api_resp *resp)
{
	struct audit_anchor anchor;
	char *a = api_query(req, "anchor"), *err = NULL;
	if (a && audit_anchor_parse(a, &anchor, &err) < 0) {
		api_error(resp, 400, "bad_request", "%s", err);
		free(err);
		free(a);
		return;
	}
	const struct audit_anchor *anchored = a ? &anchor : NULL;
	free(a);
	struct audit *au = req->api->audit;
	if (audit_verify_busy(au, anchored)) {
		api_error(resp, 409, "conflict",
			  "an audit verify with another anchor is running; try again when it has finished "
			  "(a request with the same anchor, or without one when the running one has none, "
			  "joins it)");
		return;
	}
	struct api_pending *p = api_defer(req, resp);
	int r = audit_verify_start(au, anchored, verify_answered, p);
	if (r < 0)
		verify_answered(p, r, NULL, NULL);
}
