/* api_doctor.c: GET /v1/doctor, the posture report (admin only: it names
 * tokens, paths and apps across the installation). The checks are in
 * src/doctor; this file only gathers what they look at. */
#include "api/api_internal.h"
#include "auth/audit.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "doctor/doctor.h"
#include "logs/logs.h"
#include <errno.h>
#include <stdlib.h>

struct doctor_req {
	struct api *api;
	struct api_pending *pending;
};

/* The audit walk ended: the other checks are quick and run on the loop. */
static void audit_walked(void *ctx, int status, const struct audit_verdict *v,
			 const struct audit_last *last)
{
	struct doctor_req *dr = ctx;
	struct api_pending *p = dr->pending;
	struct api *api = dr->api;
	free(dr);
	if (api_pending_gone(p) || status < 0) {
		struct api_resp r = {0};
		if (status == -ECANCELED)
			api_error(&r, 503, "unavailable", "the doctor report was stopped: the daemon is shutting down");
		else
			api_error(&r, 500, "internal", "cannot read the audit log");
		api_pending_reply(p, r.status, r.body);
		return;
	}
	struct doctor_input in = {
		.data_dir = api->data_dir,
		.socket_path = api->socket_path,
		.tcp_addr = api->tcp_addr,
		.tcp_tls = api->tls != NULL,
		.metrics_public = api->metrics_public,
		.log_min_free_pct = logs_min_free_pct(api->logs),
		.store = api->store,
		.audit = v,
		.sv = api->sv,
		.alerts = api->alerts,
		.now_ms = time_wall_ms(),
	};
	struct doctor_report r;
	doctor_run(&in, &r);
	api_pending_reply(p, 200, doctor_report_json(&r));
	doctor_report_release(&r);
}

/* The audit-chain check's walk runs off the loop first (joining a verify
 * that runs), then every check on the loop. */
void h_doctor(struct api_req *req, struct api_resp *resp)
{
	struct doctor_req *dr = xcalloc(1, sizeof(*dr));
	dr->api = req->api;
	dr->pending = api_defer(req, resp);
	int r = audit_verify_join(req->api->audit, audit_walked, dr);
	if (r < 0)
		audit_walked(dr, r, NULL, NULL);
}
