/* api_doctor.c: GET /v1/doctor, the posture report (admin only: it names
 * tokens, paths and apps across the installation). The checks are in
 * src/doctor; this file only gathers what they look at. */
#include "api/api_internal.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "doctor/doctor.h"
#include "logs/logs.h"

void h_doctor(struct api_req *req, struct api_resp *resp)
{
	struct api *api = req->api;
	struct doctor_input in = {
		.data_dir = api->data_dir,
		.socket_path = api->socket_path,
		.tcp_addr = api->tcp_addr,
		.tcp_tls = api->tls != NULL,
		.metrics_public = api->metrics_public,
		.log_min_free_pct = logs_min_free_pct(api->logs),
		.store = api->store,
		.sv = api->sv,
		.alerts = api->alerts,
		.now_ms = time_wall_ms(),
	};
	struct doctor_report r;
	doctor_run(&in, &r);
	resp->body = doctor_report_json(&r);
	doctor_report_release(&r);
}
