/* api_alerts.c: the alerts endpoints of doc/api.md: GET /v1/alerts (active
 * alerts, rules and notifiers), GET /v1/alerts/history (resolved alerts)
 * and POST /v1/alerts/test (one notification through one notifier,
 * answered once it was delivered or failed). A token scoped to some apps
 * sees only alerts and rules of those apps. */
#include "alerts/alerts.h"
#include "api/api_internal.h"
#include "compat/json.h"
#include "core/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool scope_keep(void *ctx, const char *app)
{
	const struct auth_principal *who = ctx;
	return app && auth_allows(who, AUTH_READ, app);
}

static bool scoped(const struct api_req *req)
{
	return req->who && req->who->n_apps;
}

static bool have_alerts(struct api_req *req, struct api_resp *resp)
{
	if (req->api->alerts)
		return true;
	api_error(resp, 503, "unavailable", "alerts are not running");
	return false;
}

void h_alerts(struct api_req *req, struct api_resp *resp)
{
	if (!have_alerts(req, resp))
		return;
	resp->body = alerts_active_json(req->api->alerts, scoped(req) ? scope_keep : NULL, req->who);
}

void h_alerts_history(struct api_req *req, struct api_resp *resp)
{
	int64_t limit;
	if (!have_alerts(req, resp) ||
	    api_query_int(req, resp, "limit", 100, 1, ALERTS_HISTORY_MAX, &limit) < 0)
		return;
	char *app = api_query(req, "app");
	if (app && *app && !auth_allows(req->who, AUTH_READ, app)) {
		api_forbid_app(resp, req->who, AUTH_READ, app);
		free(app);
		return;
	}
	resp->body = alerts_history_json(req->api->alerts, app && *app ? app : NULL, (int)limit,
					 scoped(req) ? scope_keep : NULL, req->who);
	free(app);
}

struct test_ctx {
	struct api_pending *pending;
	char *notifier;
};

static void test_done(void *ctx, int status, const char *err)
{
	struct test_ctx *t = ctx;
	struct json *o = json_object();
	if (status >= 200 && status < 300) {
		json_set_str(o, "notifier", t->notifier);
		json_set_int(o, "status", status);
		api_pending_reply(t->pending, 200, o);
	} else {
		struct json *e = json_set(o, "error", json_object());
		json_set_str(e, "code", "notifier_failed");
		char *msg = status > 0 ? xasprintf("notifier '%s' answered HTTP %d", t->notifier, status)
				       : xasprintf("notifier '%s' could not be reached: %s", t->notifier,
						   err ? err : "no answer");
		json_set_str(e, "message", msg);
		free(msg);
		api_pending_reply(t->pending, 502, o);
	}
	free(t->notifier);
	free(t);
}

void h_alerts_test(struct api_req *req, struct api_resp *resp)
{
	if (!have_alerts(req, resp) || !api_body_object(req, resp, false))
		return;
	const char *name = json_get_str(req->body, "notifier");
	if (!name || !*name) {
		api_error(resp, 400, "bad_request", "'notifier' must name a notifier (see GET /v1/alerts)");
		return;
	}
	struct test_ctx *t = xcalloc(1, sizeof(*t));
	t->notifier = xstrdup(name);
	char *err = NULL;
	int r = alerts_test(req->api->alerts, name, test_done, t, &err);
	if (r < 0) {
		api_error_errno(resp, r, err);
		free(err);
		free(t->notifier);
		free(t);
		return;
	}
	t->pending = api_defer(req, resp);
}
