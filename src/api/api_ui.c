/* api_ui.c: GET /ui/FILE answers with the dashboard's files (src/ui), with
 * headers that keep the page to its own files (no inline script or style,
 * no framing) and let browsers revalidate it cheaply (ETag, 304). */
#include "api/api_internal.h"
#include "core/util.h"
#include "ui/ui.h"
#include <string.h>

#define UI_HEADERS                                                          \
	"Content-Security-Policy: default-src 'self'; frame-ancestors 'none'\r\n" \
	"X-Content-Type-Options: nosniff\r\n"                                 \
	"Referrer-Policy: no-referrer\r\n"

void h_ui(struct api_req *req, struct api_resp *resp)
{
	const char *file = req->params[0];
	if (!file && !req->trailing_slash) {
		/* The page names its files relative to /ui/. */
		resp->status = 308;
		resp->content_type = "text/plain; charset=utf-8";
		resp->raw = xstrdup("the dashboard is at /ui/\n");
		resp->raw_len = strlen(resp->raw);
		resp->headers = xstrdup("Location: /ui/\r\n" UI_HEADERS);
		return;
	}
	const struct ui_asset *a = file && req->trailing_slash ? NULL : ui_asset_find(file ? file : "");
	if (!a) {
		api_error(resp, 404, "not_found", "no such dashboard file: %s%s", req->path,
			  req->trailing_slash ? "/" : "");
		return;
	}
	char etag[UI_ETAG_MAX];
	ui_asset_etag(a, etag);
	resp->content_type = a->content_type;
	resp->cache_control = "no-cache";
	resp->headers = xasprintf("ETag: %s\r\n" UI_HEADERS, etag);
	if (ui_etag_matches(http_msg_header(req->msg, "If-None-Match"), etag)) {
		resp->status = 304;
		return;
	}
	resp->raw = xmalloc(a->len);
	memcpy(resp->raw, a->data, a->len);
	resp->raw_len = a->len;
}
