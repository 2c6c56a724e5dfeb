/* api_export.c: GET /v1/apps/NAME/export/kubernetes and
 * GET /v1/apps/NAME/export/dockerfile (doc/api.md, doc/export.md). They
 * translate the app's live release; secret values are never read here. */
#include "api/api_internal.h"
#include "compat/json.h"
#include "core/util.h"
#include "deploy/deploy.h"
#include "export/export.h"
#include "spec/spec.h"
#include "supervisor/supervisor.h"
#include <stdlib.h>
#include <string.h>

/* What an export reads: the live release and its parsed spec. */
struct export_src {
	struct json *rel;
	struct spec *spec;
	struct export_release r;
};

static void export_src_release(struct export_src *s)
{
	spec_free(s->spec);
	json_free(s->rel);
}

/* Loads the app's live release into s; false with the error answer set. */
static bool export_src_load(struct api_req *req, struct api_resp *resp, struct export_src *s)
{
	const char *app = req->params[0];
	memset(s, 0, sizeof(*s));
	s->rel = supervisor_has_app(req->api->sv, app) ? deploy_live_release_json(req->api->deploy, app)
						       : NULL;
	if (!s->rel) {
		/* An app whose first deploy failed has releases but nothing live. */
		struct json *rels = deploy_releases_json(req->api->deploy, app);
		bool any = json_size(rels) > 0;
		json_free(rels);
		if (!any) {
			api_error(resp, 404, "not_found", "app '%s' not found", app);
			return false;
		}
		api_error(resp, 409, "conflict",
			  "app '%s' has no live release to export: deploy it first", app);
		return false;
	}
	const char *yaml = json_get_str(s->rel, "spec_yaml");
	char *err = NULL;
	s->spec = yaml ? spec_parse_stored(yaml, strlen(yaml), json_get_str(s->rel, "filename"), &err) : NULL;
	if (!s->spec) {
		/* The spec was valid when the release was made; a newer daemon
		 * with stricter rules may refuse it. */
		api_error(resp, 409, "conflict", "the spec of app '%s''s live release no longer parses: %s",
			  app, err ? err : "empty");
		free(err);
		json_free(s->rel);
		s->rel = NULL;
		return false;
	}
	int64_t v = 0;
	json_get_int(json_get(s->rel, "version"), &v);
	s->r = (struct export_release){
		.app = app,
		.version = (int)v,
		.spec = s->spec,
		.config = json_get(s->rel, "config"),
		.secrets = json_get(s->rel, "secrets"),
		.dir = json_get_str(s->rel, "dir"),
	};
	return true;
}

/* The optional ?image= parameter; false with a 400 set when it is bad.
 * *out is NULL when absent (caller frees). */
static bool image_param(struct api_req *req, struct api_resp *resp, char **out)
{
	*out = api_query(req, "image");
	if (*out && !export_image_ok(*out)) {
		api_error(resp, 400, "bad_request",
			  "invalid image '%s': it must be non-empty, at most 512 bytes, without spaces or control characters",
			  *out);
		free(*out);
		*out = NULL;
		return false;
	}
	return true;
}

void h_export_kubernetes(struct api_req *req, struct api_resp *resp)
{
	char *image = NULL, *ns = api_query(req, "namespace");
	if (ns && !export_namespace_ok(ns)) {
		api_error(resp, 400, "bad_request",
			  "invalid namespace '%s': use 1-63 characters a-z, 0-9 and '-', starting and ending with a letter or digit",
			  ns);
		free(ns);
		return;
	}
	if (!image_param(req, resp, &image)) {
		free(ns);
		return;
	}
	struct export_src s;
	if (export_src_load(req, resp, &s)) {
		resp->body = export_kubernetes(&s.r, image, ns);
		export_src_release(&s);
	}
	free(image);
	free(ns);
}

void h_export_dockerfile(struct api_req *req, struct api_resp *resp)
{
	char *image = NULL;
	if (!image_param(req, resp, &image))
		return;
	struct export_src s;
	if (export_src_load(req, resp, &s)) {
		char *text = export_dockerfile(&s.r, image);
		resp->body = json_object();
		json_set_str(resp->body, "app", s.r.app);
		json_set_int(resp->body, "release", s.r.version);
		char *img = image ? xstrdup(image) : xasprintf("%s:v%d", s.r.app, s.r.version);
		json_set_str(resp->body, "image", img);
		free(img);
		json_set_str(resp->body, "context", s.r.dir);
		json_set_str(resp->body, "dockerfile", text);
		free(text);
		export_src_release(&s);
	}
	free(image);
}
